package interop_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// TestPionWHIP publishes over WHIP with pion as a Go program gets it
// (webrtc.Configuration{} and pion's default codecs and interceptors),
// one encoding of real H.264 or VP8 made by ffmpeg, with Opus, and
// watches the room with every viewer of the matrix.
func TestPionWHIP(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	ogg := filepath.Join(dir, "tone.ogg")
	mediatest.Run(t, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2", "-ac", "2", "-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20", ogg)
	packets := mediatest.ReadOgg(t, ogg)
	for _, c := range []struct {
		name  string
		codec webrtc.RTPCodecCapability
		read  func(t *testing.T) [][]byte
	}{
		{"h264", mediatest.H264Codec, func(t *testing.T) [][]byte {
			f := filepath.Join(dir, "ball.h264")
			// A keyframe every second: the file loops on a keyframe.
			mediatest.Run(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "2", "-c:v", "libx264", "-profile:v", "baseline",
				"-preset", "veryfast", "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p", f)
			return mediatest.ReadH264(t, f)
		}},
		{"vp8", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, func(t *testing.T) [][]byte {
			f := filepath.Join(dir, "ball.ivf")
			mediatest.Run(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "2", "-c:v", "libvpx", "-b:v", "500k", "-g", "30",
				"-deadline", "realtime", "-cpu-used", "8", f)
			return readIVF(t, f)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, base := startServer(t)
			key := srv.APIKey()
			publishPion(t, base+"/whip/party", key, c.codec, c.read(t), packets)
			waitFor(t, 10*time.Second, "the publisher's audio and video producers", func() bool {
				return scrape(t, base, `matinee_producers{kind="audio"}`) >= 1 && scrape(t, base, `matinee_producers{kind="video"}`) >= 1
			}, func() string { return "" })
			watchAll(t, newChromium(t), base, key, steadyFrames, func() string { return "" })
		})
	}
}

// publishPion publishes frames (30 fps) and Opus packets (20 ms), looped,
// until the test ends.
func publishPion(t *testing.T, url, token string, codec webrtc.RTPCodecCapability, frames, packets [][]byte) {
	t.Helper()
	api, err := testpeer.NewAPI(testpeer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	video, err := webrtc.NewTrackLocalStaticSample(codec, "video", "pion")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticSample(mediatest.OpusCodec, "audio", "pion")
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []webrtc.TrackLocal{video, audio} {
		sender, err := pc.AddTrack(tr)
		if err != nil {
			t.Fatalf("pion publisher: add %s track: %v", tr.Kind(), err)
		}
		// Read RTCP so the interceptors see the SFU's reports and PLIs.
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 1500)
			for {
				if _, _, err := sender.Read(buf); err != nil {
					return
				}
			}
		}()
		t.Cleanup(func() {
			_ = pc.Close()
			<-done
		})
	}
	offer, err := testpeer.GatheredOffer(pc, 10*time.Second)
	if err != nil {
		t.Fatalf("pion publisher: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := whip.Offer(ctx, nil, url, token, offer)
	if err != nil {
		t.Fatalf("pion publisher: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sess.Answer}); err != nil {
		t.Fatalf("pion publisher: %v", err)
	}
	stop := (&mediatest.Loop{Video: video, Audio: audio, AUs: frames, Packets: packets}).Start()
	t.Cleanup(stop)
}

// readIVF returns the frames of an IVF file.
func readIVF(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var frames [][]byte
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		frames = append(frames, frame)
	}
}
