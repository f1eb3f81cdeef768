// Package interop_test runs clients this project did not write against a
// real Matinee server: GStreamer's webrtcbin (through gstwebrtc.py, beside
// this file) publishing over WHIP and watching over WHEP, ffmpeg into the
// plain-RTP ingest, and pion on its defaults. docs/whip-whep.md's
// compatibility table names the test of each cell.
package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/rest"
	"github.com/matinee-dev/matinee/room"
)

// Enough decoded media to show the stream plays: one second of video at
// 30 fps, half a second of 20 ms Opus.
const (
	wantFrames = 30
	wantAudio  = 25
)

// An HLS segment lasts 2 s or more; a publisher whose encoder runs at a
// steady 30 fps (GStreamer, ffmpeg, pion) fills it with 60 frames, a
// browser only with what its CPU allows (a share of a still screen on a
// loaded machine: a frame or two a second).
const (
	steadyFrames  = 30
	browserFrames = 1
)

// TestGStreamerWHIP publishes with webrtcbin (max-bundle, so its audio
// section has port 0) in H.264, VP8 and VP9, with Opus, and watches the
// room with every viewer of the matrix (watchAll).
func TestGStreamerWHIP(t *testing.T) {
	for _, codec := range []string{"h264", "vp8", "vp9"} {
		t.Run(codec, func(t *testing.T) {
			requireGStreamer(t)
			srv, base := startServer(t)
			key := srv.APIKey()

			pub := runGst(t, "gst publisher", "publish", base+"/whip/party", "--token", key, "--video", codec, "--audio")
			waitFor(t, 20*time.Second, "the publisher's audio and video producers", func() bool {
				return scrape(t, base, `matinee_producers{kind="audio"}`) >= 1 && scrape(t, base, `matinee_producers{kind="video"}`) >= 1
			}, clientFailed(pub), pub)
			offer := pub.sdp(t, "offer")
			if !strings.Contains(offer, "\nm=audio 0 ") {
				t.Errorf("webrtcbin's max-bundle offer no longer has a port-0 audio section; the test no longer covers it:\n%s", offer)
			}
			loopbackCandidates(t, "publisher's offer", offer)
			loopbackCandidates(t, "answer to the publisher", pub.sdp(t, "answer"))

			watchAll(t, newChromium(t), base, key, steadyFrames, clientFailed(pub))
			if n := scrape(t, base, `matinee_producers{kind="audio"}`); n < 1 {
				t.Errorf(`matinee_producers{kind="audio"} = %v, want ≥ 1`, n)
			}
		})
	}
}

// watchAll watches room "party" with every viewer of the matrix, each
// in a subtest of its own: webrtcbin, pion and a Chromium page over WHEP,
// a Chromium room member (tabs of browser), and the room's live HLS read
// by ffprobe, whose first segment must decode to hlsFrames frames or more.
// failed ends the waits early when the publisher has failed.
func watchAll(t *testing.T, browser context.Context, base, key string, hlsFrames int, failed func() string) {
	t.Helper()
	startHLS(t, base, key, "party")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pv := watchPion(t, ctx, base+"/whep/party", key)
	start := time.Now()
	gv := runGst(t, "gst viewer", "watch", base+"/whep/party", "--token", key)
	cv := watchChromium(t, browser, base+"/whep/party", key)
	cm := joinChromium(t, browser, base, "party")
	t.Run("webrtcbin-whep", func(t *testing.T) {
		waitFor(t, 20*time.Second, "decoded video and audio at the webrtcbin viewer", func() bool {
			f, _ := gv.state()
			return f["video"] >= wantFrames && f["audio"] >= wantAudio
		}, func() string {
			if msg := failed(); msg != "" {
				return msg
			}
			return clientFailed(gv)()
		}, gv)
		t.Logf("%d frames and %d audio buffers decoded %v after the viewer started; %s",
			wantFrames, wantAudio, time.Since(start).Round(time.Millisecond), gv.since(start))
		loopbackCandidates(t, "viewer's offer", gv.sdp(t, "offer"))
		loopbackCandidates(t, "answer to the viewer", gv.sdp(t, "answer"))
	})
	t.Run("pion-whep", func(t *testing.T) {
		waitPion(t, pv, 10*time.Second)
		t.Log(pv)
	})
	t.Run("chromium-whep", func(t *testing.T) {
		t.Logf("%+v", waitChromium(t, cv, 15*time.Second))
	})
	t.Run("chromium-member", func(t *testing.T) {
		t.Logf("%+v", waitChromium(t, cm, 15*time.Second))
	})
	t.Run("hls-ffprobe", func(t *testing.T) {
		checkHLS(t, base, key, "party", hlsFrames, 20*time.Second)
	})
}

// TestFFmpegIngest sends H.264 and Opus from ffmpeg into a room's
// plain-RTP ingest (what `matinee play` sets up) and watches it with
// every viewer of the matrix (watchAll).
func TestFFmpegIngest(t *testing.T) {
	ff := requireFFmpeg(t)
	requireGStreamer(t)
	srv, base := startServer(t)
	key := srv.APIKey()

	ing := startIngest(t, base, key, "party")
	var video, audio *room.Endpoint
	for i := range ing.Endpoints {
		switch e := &ing.Endpoints[i]; e.Kind {
		case "video":
			video = e
		case "audio":
			audio = e
		}
	}
	if video == nil || audio == nil {
		t.Fatalf("ingest endpoints %+v: want video and audio", ing.Endpoints)
	}
	for _, e := range ing.Endpoints {
		if e.IP != "127.0.0.1" {
			t.Fatalf("ingest endpoint %+v is not on loopback", e)
		}
	}
	// Bounded by -t: ffmpeg ends on its own if the test does not stop it.
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "45",
		"-map", "0:v", "-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-bf", "0", "-g", "30",
		"-f", "rtp", "-payload_type", strconv.Itoa(int(video.PayloadType)), "-ssrc", strconv.FormatUint(uint64(video.SSRC), 10), rtpURL(video),
		"-map", "1:a", "-c:a", "libopus", "-ac", "2", "-b:a", "64k", "-frame_duration", "20",
		"-f", "rtp", "-payload_type", strconv.Itoa(int(audio.PayloadType)), "-ssrc", strconv.FormatUint(uint64(audio.SSRC), 10), rtpURL(audio),
	}
	cmd := exec.Command(ff, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	watchAll(t, newChromium(t), base, key, steadyFrames, func() string {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Sprintf("ffmpeg exited: %v %s", err, stderr.String())
		default:
			return ""
		}
	})
}

func startIngest(t *testing.T, base, key, room string) rest.IngestResponse {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/api/rooms/"+room+"/ingests", strings.NewReader(`{"name":"ffmpeg"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST ingests: %d %s", resp.StatusCode, b)
	}
	var r rest.IngestResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("ingest reply %s: %v", b, err)
	}
	return r
}

// rtpURL is ffmpeg's RTP output for an endpoint; RTCP goes to the same
// port (the ingest multiplexes it).
func rtpURL(e *room.Endpoint) string {
	return fmt.Sprintf("rtp://%s:%d?rtcpport=%d&pkt_size=1200", e.IP, e.Port, e.Port)
}
