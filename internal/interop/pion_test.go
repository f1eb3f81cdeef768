package interop_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/webrtc/v4"
)

// pionViewer is a WHEP viewer on pion's default codecs and interceptors
// (ICE on loopback), counting what it receives.
type pionViewer struct {
	pc *webrtc.PeerConnection
	wg sync.WaitGroup

	mu        sync.Mutex
	packets   map[string]int
	keyframes int
	mime      map[string]string
}

// watchPion starts a pion WHEP viewer with pion's default codec list.
func watchPion(t *testing.T, ctx context.Context, url, token string) *pionViewer {
	t.Helper()
	api, err := testpeer.NewAPI(testpeer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	v := &pionViewer{pc: pc, packets: map[string]int{}, mime: map[string]string{}}
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
			v.read(tr)
		}()
	})
	offer, err := testpeer.GatheredOffer(pc, 10*time.Second)
	if err != nil {
		t.Fatalf("pion viewer: %v", err)
	}
	sess, err := whip.Offer(ctx, nil, url, token, offer)
	if err != nil {
		t.Fatalf("pion viewer: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sess.Answer}); err != nil {
		t.Fatalf("pion viewer: %v", err)
	}
	return v
}

func (v *pionViewer) read(tr *webrtc.TrackRemote) {
	kind := tr.Kind().String()
	mime := tr.Codec().MimeType
	codec := codecs.FromMime(mime)
	v.mu.Lock()
	v.mime[kind] = mime
	v.mu.Unlock()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if len(pkt.Payload) == 0 {
			continue // the SFU's padding probes
		}
		key := kind == "video" && codecs.IsKeyframe(codec, pkt.Payload)
		v.mu.Lock()
		v.packets[kind]++
		if key {
			v.keyframes++
		}
		v.mu.Unlock()
	}
}

// got returns video packets, video keyframes and audio packets so far.
func (v *pionViewer) got() (video, keys, audio int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.packets["video"], v.keyframes, v.packets["audio"]
}

func (v *pionViewer) String() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := fmt.Sprintf("pion viewer: packets %v, %d keyframes, codecs %v", v.packets, v.keyframes, v.mime)
	if v.mime["audio"] != "" && v.mime["video"] == "" {
		s += " (audio without a video track: the video's payload type is not one the WHEP answer declared, issue 21 point 2)"
	}
	return s
}

// waitPion waits until the pion viewer has a video keyframe, video and
// audio.
func waitPion(t *testing.T, v *pionViewer, d time.Duration) {
	t.Helper()
	waitFor(t, d, "the pion viewer's keyframe, video and audio", func() bool {
		video, keys, audio := v.got()
		return keys >= 1 && video >= 30 && audio >= 25
	}, func() string { return "" }, v)
}
