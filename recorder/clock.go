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
//
// The origin is the earliest first frame of the source's tracks, not the
// first track to be placed: their consumers start a few tens of ms apart
// and their first reports come up to a second apart, and a video
// keyframe before an audio-fixed origin had to be moved onto it (a new
// sharer's first flash 106 ms after its beep, under load). So each track
// offers its first frame's time and waits (its packets held) until every
// track of the source has, or settleWait has passed.
type epoch struct {
	start time.Duration

	mu       sync.Mutex
	members  int       // tracks of this source
	offered  int       // tracks that gave their first frame's time
	firstAt  time.Time // when the first offer came
	earliest time.Time // the origin, once settled
	settled  bool
}

// settleWait bounds how long a source's tracks wait for each other's
// first frame (publishers report about every second).
const settleWait = 1500 * time.Millisecond

func newEpoch(start time.Duration) *epoch { return &epoch{start: start} }

// join counts a track of the source.
func (e *epoch) join() {
	e.mu.Lock()
	e.members++
	e.mu.Unlock()
}

// offer gives, once per track, the wall time of its first frame; now is
// when the track learnt it.
func (e *epoch) offer(wall, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.offered == 0 {
		e.firstAt = now
	}
	e.offered++
	if !e.settled && (e.earliest.IsZero() || wall.Before(e.earliest)) {
		e.earliest = wall
	}
}

// place returns where a track's first frame, captured at wall, goes on
// the timeline, once the origin is settled (force settles it: a track
// cannot hold more packets); ok is false before.
func (e *epoch) place(wall, now time.Time, force bool) (at time.Duration, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.settled && (force || e.offered >= e.members || now.Sub(e.firstAt) >= settleWait) {
		e.settled = true
	}
	if !e.settled {
		return 0, false
	}
	return e.start + wall.Sub(e.earliest), true
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
