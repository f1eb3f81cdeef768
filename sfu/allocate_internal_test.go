package sfu

import (
	"testing"
	"time"

	"github.com/matinee-dev/matinee/sfu/bwe"
)

// TestProbeTarget: a failed probe bounds later ones to 10% above what it
// delivered, for probeMemory, but never below the estimate (a stall is
// not a measurement of the link: that bound would stop every probe).
func TestProbeTarget(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name                 string
		media, wantMore, est int
		lp                   bwe.ProbeResult
		want                 int
	}{
		{"no probe yet", 500_000, 1_500_000, 600_000, bwe.ProbeResult{}, 1_200_000},
		{"within twice the estimate", 500_000, 1_500_000, 1_500_000, bwe.ProbeResult{}, 2_231_578},
		{"after a success", 500_000, 1_500_000, 1_500_000, bwe.ProbeResult{Success: true, Delivered: 1_000_000, At: now}, 2_231_578},
		{"failed above the estimate: bounded", 500_000, 1_500_000, 1_500_000, bwe.ProbeResult{Delivered: 1_600_000, At: now.Add(-time.Second)}, 1_760_000},
		{"failed below the estimate: a stall, not bounded", 500_000, 1_500_000, 1_500_000, bwe.ProbeResult{Delivered: 900_000, At: now.Add(-time.Second)}, 2_231_578},
		{"failed long ago", 500_000, 1_500_000, 1_500_000, bwe.ProbeResult{Delivered: 1_600_000, At: now.Add(-probeMemory - time.Second)}, 2_231_578},
	} {
		if got := probeTarget(tc.media, tc.wantMore, tc.est, tc.lp, now); got != tc.want {
			t.Errorf("%s: target %d, want %d", tc.name, got, tc.want)
		}
	}
}

// A probe that delivers a little less than its target (they land within
// a few percent) still leaves an estimate that covers what it was for:
// otherwise the better layer waits for a probe that lands high by luck.
func TestProbeTargetLeavesEnoughEstimate(t *testing.T) {
	for _, need := range []int{300_000, 1_200_000, 2_318_000, 6_000_000} {
		target := probeTarget(0, need, need, bwe.ProbeResult{}, time.Now())
		delivered := target * 97 / 100
		if est := delivered * bwe.ProbeKeepPercent / 100; est < need {
			t.Errorf("need %d: probe at %d delivering 97%% leaves an estimate of %d", need, target, est)
		}
	}
}

// A one-encoding video has no lower layer: a short estimate alone does
// not pause it, nor does loss that the subscriber repairs (it still
// acknowledges what is sent); loss or an estimate far below its rate
// while the subscriber acknowledges clearly less does, once it has
// lasted pauseHold; and a budget that covers it resumes it at once.
func TestPauseNeedsEvidence(t *testing.T) {
	const rate = 2_000_000
	tick := func(c *Consumer, budget int, link linkState, from time.Time, d time.Duration) (used, more int, paused bool) {
		for at := from; !at.After(from.Add(d)); at = at.Add(tickInterval) {
			used, more, paused = c.allocate(budget, link, at)
		}
		return used, more, paused
	}
	for _, tc := range []struct {
		name   string
		budget int
		link   linkState
		pause  bool
	}{
		{"estimate short, link delivering", rate * 45 / 100, linkState{delivering: true}, false},
		{"estimate somewhat short, not delivering", rate * 60 / 100, linkState{}, false},
		{"estimate far below, not delivering", rate * 45 / 100, linkState{}, true},
		{"loss, not delivering", rate * 70 / 100, linkState{loss: 0.3}, true},
		{"loss, delivering", rate * 45 / 100, linkState{loss: 0.5, delivering: true}, false},
		{"a little loss", rate * 70 / 100, linkState{loss: 0.05}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c, _ := temporalRig(t, 1)
			p.layers[0].temporal.highest.Store(0) // no temporal layers
			now := time.Now()
			setRates(p, now, false, rate)
			// Held for a little less than pauseHold: never paused.
			used, more, paused := tick(c, tc.budget, tc.link, now, pauseHold-2*tickInterval)
			if paused || c.target != 0 || used != rate {
				t.Fatalf("before pauseHold: target %d, used %d, paused %v", c.target, used, paused)
			}
			if !tc.pause && more <= 0 {
				t.Fatalf("kept while the estimate is short, but no probe asked for")
			}
			_, more, paused = tick(c, tc.budget, tc.link, now.Add(pauseHold-tickInterval), 10*time.Second)
			if paused != tc.pause || (c.target < 0) != tc.pause {
				t.Fatalf("after 10 s: target %d, paused %v; want paused %v", c.target, paused, tc.pause)
			}
			if !tc.pause {
				return
			}
			if more != rate {
				t.Fatalf("paused, resuming needs %d, want %d", more, rate)
			}
			// A probe's result covers the rate, without headroom: on at once.
			if _, _, paused = c.allocate(rate, linkState{}, now.Add(time.Minute)); paused || c.target != 0 {
				t.Fatalf("budget %d for a %d video: still paused (target %d)", rate, rate, c.target)
			}
		})
	}
}

// Up needs the headroom held for upHold, from when anything better first
// fitted, and then takes the best that fits (not one hold per layer);
// a probe that has just succeeded measured the link, and needs no hold.
func TestUpHoldAndMeasuredUp(t *testing.T) {
	p, c, _ := temporalRig(t, 3)
	now := time.Now()
	setRates(p, now, false, 150_000, 500_000, 2_000_000)
	c.target, c.tlTarget = 0, maxTemporal
	c.current = 0

	// h fits; a second later f fits too: at the end of the hold, f.
	c.allocate(600_000, linkState{}, now)
	c.allocate(2_300_000, linkState{}, now.Add(time.Second))
	if c.target != 0 {
		t.Fatalf("went up before the hold: %d", c.target)
	}
	c.allocate(2_300_000, linkState{}, now.Add(upHold))
	if c.target != 2 {
		t.Fatalf("after the hold on a budget for f: layer %d, want f", c.target)
	}

	// Back on q; nothing better fits, then a probe succeeds: f at once.
	c.alloc = consumerAlloc{}
	c.target = 0
	at := now.Add(time.Minute)
	c.allocate(200_000, linkState{}, at)
	c.allocate(2_300_000, linkState{}, at.Add(tickInterval))
	if c.target != 0 {
		t.Fatalf("up at once without a probe: %d", c.target)
	}
	c.allocate(2_300_000, linkState{measured: true}, at.Add(2*tickInterval))
	if c.target != 2 {
		t.Fatalf("after a successful probe: layer %d, want f at once", c.target)
	}
}
