package sfu

import (
	"sync"
	"time"

	"github.com/matinee-dev/matinee/sfu/udpbatch"
)

// A probe's padding goes in steps of padStep.
const padStep = 10 * time.Millisecond

// padBatches are the send batches of probes' steps (100 KB each: kept for
// the next step rather than made for each). A probe takes one only for
// the moment a step is queued and sent, not for its whole window, and no
// more than padSteps steps are under way at once: with subscribers
// joining on a busy machine, dozens of probes run at once, and a batch
// each (or each of those preempted mid-step) would cost more than the
// subscribers themselves.
var (
	padBatches = sync.Pool{New: func() any { return new(udpbatch.Batch) }}
	padSteps   = make(chan struct{}, 4)
)

// padPayload is the payload of every padding packet: all padding, its
// last byte the padding's length (RFC 3550). Shared by every consumer, it
// is only ever read.
var padPayload = func() (p [255]byte) {
	p[len(p)-1] = byte(len(p))
	return p
}()

// startPadding fills the gap between the media rate and a probe's target
// rate with padding for d, in 10 ms steps so the probe is a steady stream
// rather than a burst the estimator would read as a queue. With catchUp
// above 1, a step that came late (a busy machine) is made up for, up to
// catchUp steps at once: the probe then measures the link, not the
// scheduler. A probe to resume a paused video does that: nothing else
// flows to be queued behind the burst, and all of it must arrive for the
// video to resume.
func (t *Transport) startPadding(target, media int, d time.Duration, catchUp int) {
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
		tick := time.NewTicker(padStep)
		defer tick.Stop()
		start := time.Now()
		end := start.Add(d)
		sent := 0
		for now := range tick.C {
			if now.After(end) || t.isClosed() {
				return
			}
			due := int(perSec * now.Sub(start).Seconds())
			if n := min(due-sent, int(perSec*(time.Duration(catchUp)*padStep).Seconds())); n > 0 {
				sent += padStepOut(carrier, n)
			}
		}
	}()
}

// padStepOut sends one step's n bytes of padding on c and returns the
// bytes sent: in one sendmmsg on the own SRTP path, as forwarded copies
// leave.
func padStepOut(c *Consumer, n int) int {
	padSteps <- struct{}{}
	defer func() { <-padSteps }()
	b := padBatches.Get().(*udpbatch.Batch)
	defer padBatches.Put(b)
	sent := c.sendPadding(b, n)
	b.Flush()
	return sent
}
