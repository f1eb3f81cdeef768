package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

func TestKeyframeRequestsCoalesced(t *testing.T) {
	tr := &Transport{router: &Router{}}
	p := newProducer(tr, &inbound{}, KindVideo, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, nil, "s")
	p.layers[0].ssrc.Store(42)
	var mu sync.Mutex
	var sent []time.Time
	p.writePLI = func(ssrc uint32) error {
		if ssrc != 42 {
			t.Errorf("PLI for ssrc %d", ssrc)
		}
		mu.Lock()
		sent = append(sent, time.Now())
		mu.Unlock()
		return nil
	}
	// 100 subscribers ask within 1.2 s.
	start := time.Now()
	for i := 0; i < 100; i++ {
		p.RequestKeyframe(0)
		time.Sleep(12 * time.Millisecond)
	}
	time.Sleep(KeyframeInterval + 100*time.Millisecond)
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	// However slowly the requests came (a loaded machine stretches the
	// sleeps), at most one PLI per interval, plus the first and the last.
	elapsed := sent[len(sent)-1].Sub(start)
	if limit := int(elapsed/KeyframeInterval) + 2; len(sent) < 2 || len(sent) > limit {
		t.Fatalf("%d PLIs sent for 100 requests over %v, want 2-%d", len(sent), elapsed, limit)
	}
	for i := 1; i < len(sent); i++ {
		if gap := sent[i].Sub(sent[i-1]); gap < KeyframeInterval-10*time.Millisecond {
			t.Fatalf("PLIs %v apart, want ≥ %v", gap, KeyframeInterval)
		}
	}
	// The last request was not dropped: a PLI follows it.
	if sent[len(sent)-1].Before(start.Add(time.Second)) {
		t.Fatal("requests at the end of the burst were lost")
	}
}

func TestKeyframeRequestSkippedWhenKeyframeArrived(t *testing.T) {
	p := newProducer(&Transport{router: &Router{}}, &inbound{}, KindVideo, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, nil, "s")
	p.layers[0].ssrc.Store(7)
	var mu sync.Mutex
	n := 0
	p.writePLI = func(uint32) error { mu.Lock(); n++; mu.Unlock(); return nil }
	p.RequestKeyframe(0) // sent
	p.RequestKeyframe(0) // deferred
	p.layers[0].lastKeyframe.Store(time.Now().Add(time.Millisecond).UnixNano())
	time.Sleep(KeyframeInterval + 100*time.Millisecond)
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	if n != 1 {
		t.Fatalf("%d PLIs, want 1: the deferred one is moot after a keyframe", n)
	}
}

// TestWaitingConsumerAsksAgain: a consumer whose keyframe request went
// unanswered (the request or the keyframe lost, or the keyframe's start
// missed) asks again on the router's ticks while it waits, and stops once
// it forwards. A recording's consumers, which no allocator manages, rely
// on it as much as a subscriber's.
func TestWaitingConsumerAsksAgain(t *testing.T) {
	p, c, w := temporalRig(t, 1)
	var mu sync.Mutex
	plis := 0
	p.writePLI = func(uint32) error { mu.Lock(); plis++; mu.Unlock(); return nil }
	count := func() int { mu.Lock(); defer mu.Unlock(); return plis }
	c.current = -1
	g := &l1t3{p: p}
	// Delta frames at 30 fps and the router's tick every 250 ms: nothing
	// to forward, and a request every keyframeRetry.
	run := func(d time.Duration) {
		start, lastTick := time.Now(), time.Now()
		for time.Since(start) < d {
			g.send(false)
			if now := time.Now(); now.Sub(lastTick) >= tickInterval {
				c.awaitKeyframe(now)
				lastTick = now
			}
			time.Sleep(33 * time.Millisecond)
		}
	}
	run(3*keyframeRetry + 300*time.Millisecond)
	if n := count(); n < 2 {
		t.Fatalf("%d keyframe requests while waiting %v, want ≥ 2", n, 3*keyframeRetry+300*time.Millisecond)
	}
	if len(w.pkts) != 0 {
		t.Fatalf("%d packets forwarded before a keyframe", len(w.pkts))
	}
	g.send(true)
	time.Sleep(KeyframeInterval + 100*time.Millisecond) // a deferred request fires or is dropped
	before := count()
	run(keyframeRetry + 300*time.Millisecond)
	if n := count(); n != before {
		t.Fatalf("%d keyframe requests while forwarding", n-before)
	}
	if len(w.pkts) < 90 {
		t.Fatalf("%d packets forwarded after the keyframe, want ≥ 90", len(w.pkts))
	}
}
