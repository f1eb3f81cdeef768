package server_test

import (
	"context"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/server/servertest"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder"
	"github.com/matinee-dev/matinee/recorder/flv"
	"github.com/matinee-dev/matinee/recorder/rtmp"
	"github.com/matinee-dev/matinee/server"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/webrtc/v4"
)

// startRTMP runs a server with its RTMP side on a loopback port and
// returns the HTTP base URL.
func startRTMP(t *testing.T) (srv *server.Server, base, rtmpURL, dataDir string) {
	t.Helper()
	return startRTMPWith(t, nil)
}

// startRTMPWith is startRTMP with edit applied to the configuration.
func startRTMPWith(t *testing.T, edit func(*config.Config)) (srv *server.Server, base, rtmpURL, dataDir string) {
	t.Helper()
	opts := []servertest.Option{servertest.WithRTMP()}
	if edit != nil {
		opts = append(opts, servertest.WithConfig(edit))
	}
	s := servertest.Start(t, opts...)
	return s.Server, s.URL, s.RTMPURL, s.Config.DataDir
}

// h264Viewer is a pion WHEP viewer that reassembles H.264 access units.
type h264Viewer struct {
	pc *webrtc.PeerConnection
	wg sync.WaitGroup

	mu        sync.Mutex
	keyframes int
	frames    int
	withSPS   int // keyframes with an SPS and PPS in front
	opus      int // Opus packets with a payload
	arrivals  []arrival
}

// arrival is when a whole access unit reached the viewer.
type arrival struct {
	ts  uint32
	at  time.Time
	key bool
}

func watchH264(t *testing.T, base, roomID, token string) *h264Viewer {
	t.Helper()
	api, err := mediatest.H264API()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		t.Fatal(err)
	}
	v := &h264Viewer{pc: pc}
	t.Cleanup(func() {
		_ = pc.Close()
		v.wg.Wait()
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			d := h264.NewDepacketizer()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if tr.Kind() == webrtc.RTPCodecTypeAudio {
					v.mu.Lock()
					if tr.Codec().MimeType == webrtc.MimeTypeOpus && len(pkt.Payload) > 2 {
						v.opus++
					}
					v.mu.Unlock()
					continue
				}
				au, err := d.Push(pkt.SequenceNumber, pkt.Timestamp, pkt.Marker, pkt.Payload)
				if err != nil || au == nil {
					continue
				}
				v.mu.Lock()
				v.frames++
				v.arrivals = append(v.arrivals, arrival{ts: au.Timestamp, at: time.Now(), key: au.Key})
				if au.Key {
					v.keyframes++
					if len(au.NALUs) > 2 && h264.Type(au.NALUs[0]) == 7 && h264.Type(au.NALUs[1]) == 8 {
						v.withSPS++
					}
				}
				v.mu.Unlock()
			}
		}()
	})
	offer, err := testpeer.GatheredOffer(pc, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := whip.Offer(ctx, nil, base+"/whep/"+roomID, token, offer)
	if err != nil {
		t.Fatalf("whep offer: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sess.Answer}); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *h264Viewer) counts() (frames, keyframes, withSPS, opus int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.frames, v.keyframes, v.withSPS, v.opus
}

// publishRTMP runs ffmpeg publishing a test clip (30 fps, a keyframe a
// second) for the given time.
func publishRTMP(t *testing.T, url, bf, seconds string) *exec.Cmd {
	t.Helper()
	ff, _ := mediatest.RequireFFmpeg(t)
	cmd := exec.Command(ff, "-hide_banner", "-nostdin", "-v", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine",
		"-t", seconds, "-c:v", "libx264", "-bf", bf, "-g", "30", "-c:a", "aac", "-f", "flv", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

type streamKey struct {
	ID, URL, StreamKey, Room string
}

func roomProducers(t *testing.T, srv *server.Server, id string) int {
	r, ok := srv.Rooms().Room(id)
	if !ok {
		return 0
	}
	return len(r.Producers())
}

// TestRTMPIngest: a host makes a stream key; ffmpeg publishes H.264 with
// it over RTMP with AAC; a WHEP viewer of the room receives keyframes
// with their SPS and PPS, and the audio as Opus. A second publisher on the live key, a wrong key, B-frames
// and a revoked key are refused (the metric counts them, no room is
// made), and killing the publisher closes its producer.
func TestRTMPIngest(t *testing.T) {
	// A killed publisher's stage waits out the resume grace
	// (TestRTMPResume): a short one here.
	srv, base, rtmpURL, _ := startRTMPWith(t, func(c *config.Config) { c.RTMPResumeGrace = 300 * time.Millisecond })
	key := srv.APIKey()
	if code := api(t, base, key, "POST", "/api/rooms", `{"id":"tv","name":"TV"}`, nil); code != http.StatusCreated {
		t.Fatalf("create room: %d", code)
	}
	var tok struct{ Token string }
	if code := api(t, base, key, "POST", "/api/rooms/tv/tokens", `{"identity":"h","role":"host"}`, &tok); code != http.StatusCreated {
		t.Fatalf("host token: %d", code)
	}
	var guest struct{ Token string }
	api(t, base, key, "POST", "/api/rooms/tv/tokens", `{"identity":"g","role":"guest"}`, &guest)
	if code := api(t, base, guest.Token, "POST", "/api/rooms/tv/ingests", `{"type":"rtmp"}`, nil); code != http.StatusForbidden {
		t.Errorf("a guest made a stream key: %d", code)
	}
	var sk streamKey
	if code := api(t, base, tok.Token, "POST", "/api/rooms/tv/ingests", `{"type":"rtmp"}`, &sk); code != http.StatusCreated || sk.StreamKey == "" || !strings.HasSuffix(sk.URL, ":"+rtmpURL[strings.LastIndex(rtmpURL, ":")+1:]) {
		t.Fatalf("stream key: %d %+v", code, sk)
	}
	if code := api(t, base, tok.Token, "POST", "/api/rooms/tv/ingests", `{}`, nil); code != http.StatusForbidden {
		t.Errorf("a host started a plain-RTP ingest: %d", code)
	}

	pub := publishRTMP(t, rtmpURL+"/"+sk.StreamKey, "0", "30")
	testenv.Eventually(t, 15*time.Second, "the RTMP producers in the room", func() bool { return roomProducers(t, srv, "tv") == 2 })
	v := watchH264(t, base, "tv", tok.Token)
	testenv.Eventually(t, 15*time.Second, "keyframes and Opus at the WHEP viewer", func() bool {
		f, k, s, o := v.counts()
		return f > 30 && k >= 2 && s >= 2 && o > 50
	})
	f, k, sps, o := v.counts()
	t.Logf("viewer: %d frames, %d keyframes (%d with SPS/PPS), %d Opus packets", f, k, sps, o)

	refusedBefore := scrape(t, base)
	second := publishRTMP(t, rtmpURL+"/"+sk.StreamKey, "0", "5")
	if err := second.Wait(); err == nil {
		t.Error("a second publisher on a live key was taken")
	}
	wrong := publishRTMP(t, rtmpURL+"/live_wrong", "0", "5")
	if err := wrong.Wait(); err == nil {
		t.Error("a wrong key was taken")
	}
	m := scrape(t, base)
	if m[`matinee_rtmp_refused_total{reason="live"}`] != refusedBefore[`matinee_rtmp_refused_total{reason="live"}`]+1 ||
		m[`matinee_rtmp_refused_total{reason="bad_key"}`] != 1 {
		t.Errorf("refusal metrics: %v", m)
	}
	if n := len(srv.Rooms().Rooms()); n != 1 {
		t.Errorf("%d rooms after refusals, want 1", n)
	}

	// Killing the publisher closes its producer.
	_ = pub.Process.Kill()
	testenv.Eventually(t, 15*time.Second, "the producer to close", func() bool { return roomProducers(t, srv, "tv") == 0 })

	// B-frames: refused once video arrives, with the producer gone again.
	bf := publishRTMP(t, rtmpURL+"/"+sk.StreamKey, "2", "10")
	if err := bf.Wait(); err == nil {
		t.Error("B-frames were taken")
	}
	testenv.Eventually(t, 15*time.Second, "the B-frame producer to close", func() bool { return roomProducers(t, srv, "tv") == 0 })
	if m := scrape(t, base); m[`matinee_rtmp_refused_total{reason="video"}`] != 1 {
		t.Errorf("B-frames were not counted: %v", m)
	}

	// Revoked: the key publishes no more.
	if code := api(t, base, tok.Token, "DELETE", "/api/rooms/tv/ingests/"+sk.ID, "", nil); code != http.StatusOK {
		t.Fatalf("revoke: %d", code)
	}
	revoked := publishRTMP(t, rtmpURL+"/"+sk.StreamKey, "0", "5")
	if err := revoked.Wait(); err == nil {
		t.Error("a revoked key was taken")
	}
	if m := scrape(t, base); m[`matinee_rtmp_refused_total{reason="bad_key"}`] != 2 {
		t.Errorf("a revoked key was not counted: %v", m)
	}
	if code := api(t, base, tok.Token, "DELETE", "/api/rooms/tv/ingests/"+sk.ID, "", nil); code != http.StatusNotFound {
		t.Errorf("revoking twice: %d", code)
	}
}

// TestRTMPLatency measures what the server adds between an RTMP publisher
// and a WebRTC viewer: this package's RTMP client sends a 30 fps clip in
// real time (a keyframe a second) and a pion WHEP viewer timestamps each
// whole frame. Encoder and decoder are left out: it is the ingest's own
// delay (RTMP reading, repacketising, the SFU).
func TestRTMPLatency(t *testing.T) {
	srv, base, rtmpURL, _ := startRTMP(t)
	key := srv.APIKey()
	api(t, base, key, "POST", "/api/rooms", `{"id":"lat","name":"Lat"}`, nil)
	var sk streamKey
	if code := api(t, base, key, "POST", "/api/rooms/lat/ingests", `{"type":"rtmp"}`, &sk); code != http.StatusCreated {
		t.Fatalf("stream key: %d", code)
	}
	var tok struct{ Token string }
	api(t, base, key, "POST", "/api/rooms/lat/tokens", `{"identity":"v","role":"viewer"}`, &tok)
	clip := t.TempDir() + "/clip.h264"
	mediatest.Run(t, "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "5", "-c:v", "libx264", "-bf", "0", "-g", "30", "-pix_fmt", "yuv420p", clip)
	aus := mediatest.ReadH264(t, clip)

	c, err := rtmp.Dial(context.Background(), rtmpURL+"/"+sk.StreamKey, rtmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ps h264.ParamSets
	sent := map[uint32]time.Time{} // ms → when sent
	var v *h264Viewer
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for i, au := range aus {
		<-tick.C // real time, as a live encoder sends
		ms := uint32(i * 1000 / 30)
		nalus := h264.SplitAnnexB(au)
		if cfg, _ := ps.Update(nalus); cfg != nil {
			if err := c.WriteTag(flv.Tag{Type: flv.TagVideo, Timestamp: ms, Data: flv.AVCSequenceHeader(cfg.Record())}); err != nil {
				t.Fatal(err)
			}
		}
		sent[ms] = time.Now()
		if err := c.WriteTag(flv.Tag{Type: flv.TagVideo, Timestamp: ms, Data: flv.AVCFrame(h264.IsKey(nalus), 0, h264.AVCC(nalus))}); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			v = watchH264(t, base, "lat", tok.Token)
		}
	}
	testenv.Eventually(t, 10*time.Second, "frames at the viewer", func() bool { f, _, _, _ := v.counts(); return f >= 60 })

	v.mu.Lock()
	arr := append([]arrival(nil), v.arrivals...)
	v.mu.Unlock()
	// The viewer's first frame is a keyframe: the latest one sent before
	// it arrived (the delay is far below the second between keyframes)
	// ties the viewer's RTP clock to the sender's milliseconds.
	var keyMS uint32
	for ms, at := range sent {
		if ms%1000 == 0 && at.Before(arr[0].at) && ms >= keyMS {
			keyMS = ms
		}
	}
	var delays []time.Duration
	for _, a := range arr {
		ms := keyMS + (a.ts-arr[0].ts)/90
		// Timestamps of 1000/30 ms round: take the frame sent nearest.
		for _, d := range []uint32{0, 1, ^uint32(0)} {
			if at, ok := sent[ms+d]; ok {
				delays = append(delays, a.at.Sub(at))
				break
			}
		}
	}
	if len(delays) < 60 {
		t.Fatalf("%d frames matched of %d received", len(delays), len(arr))
	}
	slices.Sort(delays)
	med, p95 := delays[len(delays)/2], delays[len(delays)*95/100]
	t.Logf("RTMP publish to WebRTC viewer, %d frames: median %v, 95th percentile %v, max %v", len(delays), med, p95, delays[len(delays)-1])
	if delays[0] < 0 || med > 200*time.Millisecond {
		t.Errorf("delays from %v, median %v: want none negative and a median under 200ms", delays[0], med)
	}
}

// TestRTMPRecording records an RTMP ingest (the recorder follows it as a
// screen share): the FLV is H.264 and AAC (from the Opus the ingest made
// of the publisher's AAC) and decodes without an error.
func TestRTMPRecording(t *testing.T) {
	srv, base, rtmpURL, dataDir := startRTMP(t)
	key := srv.APIKey()
	api(t, base, key, "POST", "/api/rooms", `{"id":"rec","name":"Rec"}`, nil)
	var sk streamKey
	if code := api(t, base, key, "POST", "/api/rooms/rec/ingests", `{"type":"rtmp"}`, &sk); code != http.StatusCreated {
		t.Fatalf("stream key: %d", code)
	}
	publishRTMP(t, rtmpURL+"/"+sk.StreamKey, "0", "30")
	testenv.Eventually(t, 15*time.Second, "the RTMP producers", func() bool { return roomProducers(t, srv, "rec") == 2 })
	var info recorder.Info
	if code := api(t, base, key, "POST", "/api/rooms/rec/recordings", `{"formats":["flv"]}`, &info); code != http.StatusCreated {
		t.Fatalf("start recording: %d", code)
	}
	waitRecording(t, base, key, "rec", info.ID, 20*time.Second, func(in recorder.Info) bool { return in.Duration >= 4 })
	var final recorder.Info
	if code := api(t, base, key, "DELETE", "/api/rooms/rec/recordings/"+info.ID, "", &final); code != 200 || final.Error != "" {
		t.Fatalf("stop: %d %+v", code, final)
	}
	path := filepath.Join(dataDir, "recordings", "rec", info.ID, recorder.FLVName)
	p := mediatest.ProbeFile(t, path)
	if p.Codecs() != "h264+aac" || p.Duration() < 3.5 {
		t.Fatalf("recording: %s, %.2f s", p.Codecs(), p.Duration())
	}
	if e := mediatest.DecodeErrors(t, path); e != "" {
		t.Fatalf("decode errors: %s", e)
	}
}
