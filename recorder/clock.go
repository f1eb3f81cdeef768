package recorder

import (
	"sync"
	"time"
)

// epoch is one continuous source on the recording's timeline: the share of
// one sharer. Each track places its first frame on the timeline by the
// wall-clock time of its RTP timestamp (from the publisher's sender
// reports), so audio and video that were captured together line up; after
// that each track counts its own RTP clock, so no jitter creeps in.
type epoch struct {
	start time.Duration

	mu     sync.Mutex
	ref    time.Time
	hasRef bool
}

func newEpoch(start time.Duration) *epoch { return &epoch{start: start} }

// place returns where a track's first frame, captured at wall time t, goes
// on the timeline. The first track to ask fixes the epoch's origin.
func (e *epoch) place(t time.Time) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.hasRef {
		e.ref, e.hasRef = t, true
	}
	return e.start + t.Sub(e.ref)
}

// ntpEpochOffset is the number of seconds from 1900 (NTP) to 1970 (Unix).
const ntpEpochOffset = 2208988800

// ntpTime converts a 64-bit NTP timestamp to a time.
func ntpTime(ntp uint64) time.Time {
	secs := int64(ntp>>32) - ntpEpochOffset
	frac := int64(ntp & 0xffffffff)
	return time.Unix(secs, frac*1e9>>32)
}

// rtpClock turns a stream's RTP timestamps into durations since its first
// one, across wrap-arounds.
type rtpClock struct {
	rate    uint32
	started bool
	prev    uint32
	ext     int64
}

func (c *rtpClock) since(ts uint32) time.Duration {
	if !c.started {
		c.started, c.prev = true, ts
	}
	c.ext += int64(int32(ts - c.prev))
	c.prev = ts
	return time.Duration(c.ext) * time.Second / time.Duration(c.rate)
}
