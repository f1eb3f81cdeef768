package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// fakeClock is a Clock that moves only when the test says so.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	at   time.Time
	f    func()
	done bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	stopped := !t.done
	t.done = true
	return stopped
}

// Advance moves the clock by d, calling each timer that falls due on the
// way, in order, with the clock at its time.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.done && !t.at.After(end) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			break
		}
		next.done = true
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

// clockedProducer is a video producer whose worker paces keyframe
// requests by clock, every interval; its PLIs are returned by sent.
func clockedProducer(t *testing.T, clock Clock, interval time.Duration, ssrc uint32) (p *Producer, sent func() []time.Time) {
	w := &Worker{cfg: WorkerConfig{Clock: clock, KeyframeInterval: interval}}
	p = newProducer(&Transport{router: &Router{w: w}}, &inbound{}, KindVideo, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, nil, "s")
	p.layers[0].ssrc.Store(ssrc)
	var mu sync.Mutex
	var at []time.Time
	p.writePLI = func(got uint32) error {
		if got != ssrc {
			t.Errorf("PLI for ssrc %d, want %d", got, ssrc)
		}
		mu.Lock()
		at = append(at, clock.Now())
		mu.Unlock()
		return nil
	}
	t.Cleanup(p.Close)
	return p, func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), at...)
	}
}

// TestKeyframeRequestsCoalesced: 100 subscribers ask 12 ms apart (1.2 s
// in all); the publisher gets one PLI per interval, the first at once and
// the last one interval after the one before, so no request is lost.
func TestKeyframeRequestsCoalesced(t *testing.T) {
	for _, interval := range []time.Duration{DefaultKeyframeInterval, 300 * time.Millisecond} {
		clock := newFakeClock()
		start := clock.Now()
		p, sent := clockedProducer(t, clock, interval, 42)
		for range 100 {
			p.RequestKeyframe(0)
			clock.Advance(12 * time.Millisecond)
		}
		clock.Advance(interval)
		got := sent()
		// Requests until 1188 ms: PLIs at 0, interval, 2×interval, … and
		// one more after the last request inside an interval.
		var want []time.Duration
		for at := time.Duration(0); at <= 1188*time.Millisecond+interval; at += interval {
			want = append(want, at)
			if at > 1188*time.Millisecond {
				break
			}
		}
		if len(got) != len(want) {
			t.Fatalf("interval %v: %d PLIs at %v, want %d at %v", interval, len(got), offsets(start, got), len(want), want)
		}
		for i := range want {
			if d := got[i].Sub(start); d != want[i] {
				t.Fatalf("interval %v: PLIs at %v, want %v", interval, offsets(start, got), want)
			}
		}
	}
}

func offsets(start time.Time, ts []time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Sub(start)
	}
	return out
}

// TestKeyframeRequestSkippedWhenKeyframeArrived: a request deferred to the
// end of the interval is dropped when a keyframe arrived meanwhile, and
// sent when none did.
func TestKeyframeRequestSkippedWhenKeyframeArrived(t *testing.T) {
	clock := newFakeClock()
	p, sent := clockedProducer(t, clock, DefaultKeyframeInterval, 7)
	p.RequestKeyframe(0) // sent
	p.RequestKeyframe(0) // deferred
	clock.Advance(time.Millisecond)
	p.layers[0].lastKeyframe.Store(clock.Now().UnixNano())
	clock.Advance(DefaultKeyframeInterval)
	if n := len(sent()); n != 1 {
		t.Fatalf("%d PLIs, want 1: the deferred one is moot after a keyframe", n)
	}
	p.RequestKeyframe(0) // an interval after the first: sent at once
	p.RequestKeyframe(0) // deferred, and no keyframe comes
	clock.Advance(DefaultKeyframeInterval)
	if n := len(sent()); n != 3 {
		t.Fatalf("%d PLIs, want 3: a deferred request with no keyframe since is sent", n)
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
	time.Sleep(DefaultKeyframeInterval + 100*time.Millisecond) // a deferred request fires or is dropped
	before := count()
	run(keyframeRetry + 300*time.Millisecond)
	if n := count(); n != before {
		t.Fatalf("%d keyframe requests while forwarding", n-before)
	}
	if len(w.pkts) < 90 {
		t.Fatalf("%d packets forwarded after the keyframe, want ≥ 90", len(w.pkts))
	}
}
