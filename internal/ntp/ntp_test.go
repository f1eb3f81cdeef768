package ntp

import (
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	for _, want := range []time.Time{
		time.Unix(1000, 5e8),
		time.Unix(1_800_000_000, 123_456_789),
		time.Unix(0, 0),
	} {
		got := Time(From(want))
		// The fraction's unit is 2^-32 s (0.23 ns); each way truncates.
		if d := got.Sub(want); d.Abs() > time.Nanosecond {
			t.Errorf("%v → %v (off by %v)", want, got, d)
		}
	}
	// Half a second is exactly the top bit of the fraction.
	if ts := From(time.Unix(1000, 5e8)); ts != uint64(1000+unixOffset)<<32|1<<31 {
		t.Errorf("From(1000.5 s) = %#x", ts)
	}
}
