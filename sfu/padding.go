package sfu

import (
	"sync"
	"time"

	"github.com/matinee-dev/matinee/sfu/udpbatch"
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
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		end := start.Add(d)
		sent := 0
		for now := range tick.C {
			if now.After(end) || t.isClosed() {
				return
			}
			// What is due by now: a tick that came late (a busy
			// machine) is made up for, or the probe would measure the
			// scheduler instead of the link. At most four steps at
			// once, so it stays a stream.
			due := int(perSec * now.Sub(start).Seconds())
			n := min(due-sent, int(4*perSec/100))
			if n > 0 {
				sent += carrier.sendPadding(b, n)
				b.Flush()
			}
		}
	}()
}
