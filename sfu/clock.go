package sfu

import "time"

// Clock is the time a Worker's producers pace keyframe requests by
// (WorkerConfig.Clock). The system's clock serves in production; a test
// that must see a whole keyframe interval pass moves a clock of its own
// instead of sleeping through it.
//
// Keyframe arrivals are stamped with the system's time on the packet path,
// so a test clock should start at time.Now() and a test that feeds real
// media should keep the system's clock.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not happened yet, and reports
	// whether it did so.
	Stop() bool
}

// systemClock is the operating system's clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// DefaultKeyframeInterval is WorkerConfig.KeyframeInterval's default.
const DefaultKeyframeInterval = 500 * time.Millisecond
