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
		{"within twice the estimate", 500_000, 1_500_000, 1_500_000, bwe.ProbeResult{}, 2_120_000},
		{"after a success", 500_000, 1_500_000, 1_500_000, bwe.ProbeResult{Success: true, Delivered: 1_000_000, At: now}, 2_120_000},
		{"failed above the estimate: bounded", 500_000, 1_500_000, 1_500_000, bwe.ProbeResult{Delivered: 1_600_000, At: now.Add(-time.Second)}, 1_760_000},
		{"failed below the estimate: a stall, not bounded", 500_000, 1_500_000, 1_500_000, bwe.ProbeResult{Delivered: 900_000, At: now.Add(-time.Second)}, 2_120_000},
		{"failed long ago", 500_000, 1_500_000, 1_500_000, bwe.ProbeResult{Delivered: 1_600_000, At: now.Add(-probeMemory - time.Second)}, 2_120_000},
	} {
		if got := probeTarget(tc.media, tc.wantMore, tc.est, tc.lp, now); got != tc.want {
			t.Errorf("%s: target %d, want %d", tc.name, got, tc.want)
		}
	}
}
