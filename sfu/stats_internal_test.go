package sfu

import (
	"testing"
	"time"
)

// Forwarding times land in the bucket whose bound is the first at or
// above them, the rest above every bound; the sum is kept in full.
func TestForwardHistogram(t *testing.T) {
	var h forwardHist
	for _, d := range []time.Duration{0, 50 * time.Microsecond, 100 * time.Microsecond, 101 * time.Microsecond, 3 * time.Millisecond, 100 * time.Millisecond, time.Second} {
		h.observe(d)
	}
	f := h.snapshot()
	want := [len(ForwardBuckets) + 1]uint64{0: 3, 1: 1, 5: 1, 9: 1, 10: 1}
	if f.Counts != want {
		t.Errorf("counts %v, want %v", f.Counts, want)
	}
	if f.Count() != 7 || f.Sum != 1*time.Second+100*time.Millisecond+3*time.Millisecond+251*time.Microsecond {
		t.Errorf("count %d sum %v", f.Count(), f.Sum)
	}
}
