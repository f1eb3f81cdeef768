package sfu

import (
	"sync"
	"time"

	"github.com/matinee-dev/matinee/sfu/udpbatch"
)

// A probe's padding goes in steps of padStep, making up at most
// padCatchUp steps at once.
const (
	padStep    = 10 * time.Millisecond
	padCatchUp = 8
)

// padBatches are the send batches of running probes (100 KB each: kept
// for the next probe rather than made for each).
var padBatches = sync.Pool{New: func() any { return new(udpbatch.Batch) }}

// startPadding fills the gap between the media rate and a probe's target
// rate with padding for d, in 10 ms steps so the probe is a
// steady stream rather than a burst the estimator would read as a queue.
func (t *Transport) startPadding(target, media int, d time.Duration) {
	var carrier *Consumer
	for _, c := range t.Consumers() {
		if c.producer.kind == KindVideo {
			if cur, _ := c.Layer(); cur >= 0 || carrier == nil {
				carrier = c
			}
		}
	}
	if carrier == nil || target <= media {
		return
	}
	perSec := float64(target-media) / 8 // bytes
	if !t.hold() {
		return
	}
	go func() {
		defer t.wg.Done()
		// Each step's packets leave in one sendmmsg on the own SRTP
		// path, as forwarded copies do.
		b := padBatches.Get().(*udpbatch.Batch)
		defer padBatches.Put(b)
		tick := time.NewTicker(padStep)
		defer tick.Stop()
		start := time.Now()
		sent := 0
		// What is due by now: a tick that came late (a busy machine) is
		// made up for, or the probe would measure the scheduler instead
		// of the link; but at most padCatchUp steps at once, so it stays
		// a stream. The first step goes at once, the last at the end.
		send := func(now time.Time) {
			due := int(perSec * min(now.Sub(start)+padStep, d).Seconds())
			if n := min(due-sent, int(perSec*(padCatchUp*padStep).Seconds())); n > 0 {
				sent += carrier.sendPadding(b, n)
				b.Flush()
			}
		}
		send(start)
		for now := range tick.C {
			if t.isClosed() {
				return
			}
			send(now)
			if now.Sub(start)+padStep >= d {
				return
			}
		}
	}()
}
