package server_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/synth"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/webrtc/v4"
)

// TestWHEPChurnKeepsNoMemory: WHEP viewers that come and go while the
// publisher stays leave nothing behind. Each cycle connects a real pion
// viewer, waits for its first video packet, DELETEs the session and closes
// the peer; after 200 cycles the heap in use (after GC) must be back
// within a few MiB of where it was. An ended session's transport (with
// its bandwidth estimator, ~440 KiB) used to stay referenced until the
// publisher left.
func TestWHEPChurnKeepsNoMemory(t *testing.T) {
	const (
		cycles = 200
		slack  = 6 << 20 // pools, caches and the publisher's own churn
	)
	srv, url := start(t, nil)
	base := httpBase(url)
	key := srv.APIKey()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	publishWHIPWith(t, ctx, base, "churn", key, 1, []synth.LayerSpec{{Bitrate: 500_000, Width: 640, Height: 360}})

	cycle := func(i int) {
		pc := newPC(t)
		defer pc.Close()
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				t.Fatal(err)
			}
		}
		video := make(chan struct{})
		// Readers of the tracks that arrived; none starts once the peer
		// is closed, so waiting for them after Close is final.
		var (
			mu      sync.Mutex
			closed  bool
			readers sync.WaitGroup
		)
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			mu.Lock()
			defer mu.Unlock()
			if closed {
				return
			}
			first := tr.Kind() == webrtc.RTPCodecTypeVideo
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					if _, _, err := tr.ReadRTP(); err != nil {
						return
					}
					if first {
						close(video)
						first = false
					}
				}
			}()
		})
		sess, err := whip.Offer(ctx, nil, base+"/whep/churn", key, offerGathered(t, pc))
		if err != nil {
			t.Fatalf("cycle %d: whep offer: %v", i, err)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sess.Answer}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-video:
		case <-ctx.Done():
			t.Fatalf("cycle %d: no video", i)
		}
		if err := sess.Delete(ctx); err != nil {
			t.Fatalf("cycle %d: delete: %v", i, err)
		}
		if err := pc.Close(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		closed = true
		mu.Unlock()
		readers.Wait()
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	// Warm up: one-time allocations (pools, codec tables, the first
	// keyframe in the cache) belong to the baseline.
	for i := range 10 {
		cycle(i)
	}
	before := heap()
	began := time.Now()
	for i := range cycles {
		cycle(i)
	}
	took := time.Since(began)
	// What a closing transport still releases on its own goroutines
	// (pion's, ours) ends within moments: poll, bounded.
	after := heap()
	for deadline := time.Now().Add(10 * time.Second); after > before+slack && time.Now().Before(deadline); after = heap() {
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d WHEP cycles in %v: heap in use %.1f → %.1f MiB", cycles, took.Round(time.Millisecond), float64(before)/(1<<20), float64(after)/(1<<20))
	if after > before+slack {
		t.Errorf("heap in use grew %.1f MiB over %d WHEP cycles (%.0f KiB a viewer), want at most %d MiB",
			float64(after-before)/(1<<20), cycles, float64(after-before)/1024/cycles, slack>>20)
	}
	if m := scrape(t, base); m["matinee_whip_sessions"] != 1 || m["matinee_whep_sessions"] != 0 {
		t.Errorf("after the churn: %v WHIP and %v WHEP sessions, want the publisher's 1 and none",
			m["matinee_whip_sessions"], m["matinee_whep_sessions"])
	}
}
