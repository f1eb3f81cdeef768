package bwe

import (
	"math"
	"time"
)

// The delay-based half of Google Congestion Control
// (draft-ietf-rmcat-gcc-02, with the send-side refinements of libwebrtc):
// acknowledged packets are grouped into bursts by departure time, each
// group's arrival is compared with its departure against the group before
// (the delay variation), the accumulated variation is smoothed and its
// slope over the last groups fitted by least squares (the trend), and the
// trend is compared with an adaptive threshold to tell overuse (the queue
// grows), underuse (it drains) and normal. An AIMD controller turns that
// signal into a rate.

const (
	groupSpan       = 5 * time.Millisecond   // departures this close form one group
	burstGap        = 5 * time.Millisecond   // arrivals this close continue a burst
	maxBurst        = 100 * time.Millisecond // a burst spans at most this much arrival time
	maxClockJump    = 3 * time.Second        // a larger delay variation resets the trend
	trendWindow     = 20                     // groups in the least-squares fit
	trendSmoothing  = 0.9                    // of the accumulated delay
	trendGain       = 4.0                    // the modified trend is slope·min(n, 60)·gain
	trendMaxDeltas  = 60                     // groups that count in the modified trend
	overuseTimeMs   = 10.0                   // trend above threshold this long means overuse
	startThreshold  = 12.5                   // ms
	thresholdUp     = 0.0087                 // threshold gain when the trend is above it
	thresholdDown   = 0.039                  // and when it is below
	minThreshold    = 6.0                    // ms
	maxThreshold    = 600.0                  // ms
	maxAdaptOffset  = 15.0                   // a trend this far above is an outlier: not adapted to
	maxAdaptStepMs  = 100.0                  // a threshold update spans at most this much time
	increasePerSec  = 1.08                   // multiplicative increase
	decreaseFactor  = 0.85                   // of the acknowledged rate on overuse
	minAdditiveRate = 4000.0                 // bits/s per second
	ackedHeadroom   = 1.5                    // increases stop at this times the acked rate…
	ackedSlack      = 10_000.0               // …plus this many bits/s
	maxReduceEvery  = 200 * time.Millisecond // a congested link is cut at most this often…
	minReduceEvery  = 10 * time.Millisecond  // …and at least this far apart (bounds the RTT)
)

// usage is the overuse detector's signal.
type usage int8

const (
	usageNormal usage = iota
	usageOver
	usageUnder
)

func (u usage) String() string {
	switch u {
	case usageOver:
		return "overuse"
	case usageUnder:
		return "underuse"
	}
	return "normal"
}

// rcState is the rate controller's state.
type rcState int8

const (
	rcIncrease rcState = iota
	rcHold
	rcDecrease
)

func (s rcState) String() string {
	switch s {
	case rcHold:
		return "hold"
	case rcDecrease:
		return "decrease"
	}
	return "increase"
}

// group is a burst of packets sent within groupSpan of its first one.
type group struct {
	firstSend, lastSend     time.Time
	firstArrive, lastArrive time.Time
	ok                      bool
}

// delayDetector turns acknowledged packets into an overuse signal.
type delayDetector struct {
	cur, prev group

	// Trendline over the last trendWindow groups.
	origin      time.Time // arrival time of the first group, the x axis' zero
	accumulated float64   // ms
	smoothed    float64   // ms
	xs, ys      [trendWindow]float64
	n, next     int // points held, slot for the next one
	deltas      int // groups seen since the last reset, capped
	trend       float64
	prevTrend   float64
	variation   float64 // the latest group's delay variation, ms

	// Overuse detector.
	threshold     float64
	lastThreshold time.Time
	overMs        float64 // time the trend has been above the threshold; -1 when not
	overCount     int
	usage         usage
}

func newDelayDetector() delayDetector {
	return delayDetector{threshold: startThreshold, overMs: -1}
}

// packet takes one acknowledged packet, in feedback order.
func (d *delayDetector) packet(send, arrive time.Time) {
	c := &d.cur
	if !c.ok {
		*c = group{firstSend: send, lastSend: send, firstArrive: arrive, lastArrive: arrive, ok: true}
		return
	}
	if send.Before(c.firstSend) {
		return // sent before the group began: reordered, left out
	}
	if d.sameGroup(send, arrive) {
		if send.After(c.lastSend) {
			c.lastSend = send
		}
		if arrive.After(c.lastArrive) {
			c.lastArrive = arrive
		}
		return
	}
	if d.prev.ok {
		d.compare(&d.prev, c)
	}
	d.prev = *c
	*c = group{firstSend: send, lastSend: send, firstArrive: arrive, lastArrive: arrive, ok: true}
}

// sameGroup reports whether a packet belongs to the current group: sent
// within groupSpan of its start, or arriving in a burst with it (queued
// behind it and delivered back to back, faster than it was sent).
func (d *delayDetector) sameGroup(send, arrive time.Time) bool {
	c := &d.cur
	if send.Sub(c.firstSend) <= groupSpan {
		return true
	}
	arrDelta := arrive.Sub(c.lastArrive)
	sendDelta := send.Sub(c.lastSend)
	return arrDelta-sendDelta < 0 && arrDelta <= burstGap && arrive.Sub(c.firstArrive) < maxBurst
}

// compare feeds the delay variation between two consecutive groups to the
// trendline.
func (d *delayDetector) compare(prev, cur *group) {
	sendDelta := cur.lastSend.Sub(prev.lastSend)
	arrDelta := cur.lastArrive.Sub(prev.lastArrive)
	v := arrDelta - sendDelta
	if arrDelta < 0 || v > maxClockJump || v < -maxClockJump {
		d.resetTrend() // the receiver's clock jumped (or wrapped)
		return
	}
	d.variation = ms(v)
	d.addDelay(d.variation, cur.lastArrive, ms(sendDelta))
}

func (d *delayDetector) resetTrend() {
	d.accumulated, d.smoothed = 0, 0
	d.n, d.next, d.deltas = 0, 0, 0
	d.trend, d.prevTrend = 0, 0
	d.overMs, d.overCount = -1, 0
	d.usage = usageNormal
	d.origin = time.Time{}
}

// addDelay adds one group's delay variation (ms) at its arrival time;
// sendDeltaMs is the time between the groups' departures.
func (d *delayDetector) addDelay(variation float64, arrive time.Time, sendDeltaMs float64) {
	if d.deltas < 1000 {
		d.deltas++
	}
	d.accumulated += variation
	d.smoothed = trendSmoothing*d.smoothed + (1-trendSmoothing)*d.accumulated
	if d.origin.IsZero() {
		d.origin = arrive
	}
	d.xs[d.next] = ms(arrive.Sub(d.origin))
	d.ys[d.next] = d.smoothed
	d.next = (d.next + 1) % trendWindow
	if d.n < trendWindow {
		d.n++
	}
	if d.n == trendWindow {
		if s, ok := slope(&d.xs, &d.ys); ok {
			d.trend = s
		}
	}
	modified := float64(min(d.deltas, trendMaxDeltas)) * d.trend * trendGain
	d.detect(modified, sendDeltaMs, arrive)
}

// slope is the least-squares slope of ys over xs.
func slope(xs, ys *[trendWindow]float64) (float64, bool) {
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= trendWindow
	my /= trendWindow
	var num, den float64
	for i := range xs {
		dx := xs[i] - mx
		num += dx * (ys[i] - my)
		den += dx * dx
	}
	if den == 0 {
		return 0, false
	}
	return num / den, true
}

// detect compares the modified trend with the threshold.
func (d *delayDetector) detect(trend, dtMs float64, now time.Time) {
	if d.deltas < 2 {
		d.usage = usageNormal
		return
	}
	switch {
	case trend > d.threshold:
		if d.overMs < 0 {
			d.overMs = dtMs / 2
		} else {
			d.overMs += dtMs
		}
		d.overCount++
		if d.overMs > overuseTimeMs && d.overCount > 1 && trend >= d.prevTrend {
			d.overMs, d.overCount = 0, 0
			d.usage = usageOver
		}
	case trend < -d.threshold:
		d.overMs, d.overCount = -1, 0
		d.usage = usageUnder
	default:
		d.overMs, d.overCount = -1, 0
		d.usage = usageNormal
	}
	d.prevTrend = trend
	d.adapt(trend, now)
}

// adapt moves the threshold towards the trend: quickly down, slowly up,
// so that it follows the delay's noise but not a sudden queue.
func (d *delayDetector) adapt(trend float64, now time.Time) {
	if d.lastThreshold.IsZero() {
		d.lastThreshold = now
	}
	a := math.Abs(trend)
	if a > d.threshold+maxAdaptOffset {
		d.lastThreshold = now
		return
	}
	k := thresholdUp
	if a < d.threshold {
		k = thresholdDown
	}
	dt := math.Min(ms(now.Sub(d.lastThreshold)), maxAdaptStepMs)
	d.threshold += k * (a - d.threshold) * dt
	d.threshold = math.Max(minThreshold, math.Min(maxThreshold, d.threshold))
	d.lastThreshold = now
}

// rateControl is the AIMD controller driven by the detector's signal.
type rateControl struct {
	rate         float64 // bits/s
	min, max     float64
	state        rcState
	lastUpdate   time.Time
	lastDecrease time.Time
	capacity     capacityEstimate
}

// update runs the controller once per feedback; acked is the acknowledged
// bitrate over the acked window (0 when not known yet), rtt the round-trip
// time (0 when not known).
//
// An overuse cuts from the whole window's rate, as libwebrtc's does, not
// from a shorter one that would see a real drop a little sooner (400 ms
// rather than 600 ms to follow 5 to 0.4 Mbit/s in TestGCCFollowsCapacityDrop):
// a CPU stall at either end empties part of a short window, which then
// reads a fraction of what the link carries, and a cut from it took a
// 2 Mbit/s stream on a free link to 0.5 Mbit/s (TestCPUStallsAreNotCongestion,
// "heavy" cases).
func (r *rateControl) update(u usage, acked float64, rtt time.Duration, now time.Time) {
	if r.lastUpdate.IsZero() {
		r.lastUpdate = now
	}
	switch u {
	case usageOver:
		if r.timeToReduce(acked, rtt, now) {
			r.decrease(acked, now)
		}
		return
	case usageUnder:
		r.state = rcHold
	default:
		if r.state != rcIncrease {
			r.state = rcIncrease
			r.lastUpdate = now // the hold does not count as time to grow
		}
	}
	if r.state == rcHold {
		r.lastUpdate = now
		return
	}
	r.increase(acked, rtt, now)
}

func (r *rateControl) timeToReduce(acked float64, rtt time.Duration, now time.Time) bool {
	every := max(minReduceEvery, min(maxReduceEvery, rtt))
	if rtt == 0 {
		every = maxReduceEvery
	}
	if r.lastDecrease.IsZero() || now.Sub(r.lastDecrease) >= every {
		return true
	}
	// Far above what gets through: no need to wait.
	return acked > 0 && r.rate/2 > acked
}

func (r *rateControl) increase(acked float64, rtt time.Duration, now time.Time) {
	dt := now.Sub(r.lastUpdate).Seconds()
	dt = math.Max(0, math.Min(dt, 1))
	r.lastUpdate = now
	if acked > 0 && r.capacity.ok && acked > r.capacity.upper() {
		r.capacity.reset() // the link got better than it was known to be
	}
	var next float64
	if r.capacity.ok {
		next = r.rate + additiveRate(r.rate, rtt)*dt
	} else {
		next = r.rate * math.Pow(increasePerSec, dt)
	}
	if acked > 0 {
		// Do not run away from what is actually being sent.
		if limit := ackedHeadroom*acked + ackedSlack; next > limit {
			next = math.Max(r.rate, limit)
		}
	}
	r.rate = r.clamp(next)
}

// additiveRate is the near-convergence increase in bits/s per second:
// about one packet per response time.
func additiveRate(rate float64, rtt time.Duration) float64 {
	bitsPerFrame := rate / 30
	packets := math.Max(1, math.Ceil(bitsPerFrame/(1200*8)))
	resp := (rtt + 100*time.Millisecond).Seconds()
	return math.Max(minAdditiveRate, bitsPerFrame/packets/resp)
}

// decrease cuts the rate on overuse to 0.85 times the acknowledged rate.
func (r *rateControl) decrease(acked float64, now time.Time) {
	next := decreaseFactor * r.rate
	if acked > 0 {
		if r.capacity.ok && acked < r.capacity.lower() {
			r.capacity.reset() // the link got worse than it was known to be
		}
		r.capacity.update(acked)
		// Below what gets through, or kept: the rate is already under
		// what the queue is being drained at.
		next = math.Min(r.rate, decreaseFactor*acked)
	}
	r.rate = r.clamp(next)
	r.state = rcHold
	r.lastDecrease = now
	r.lastUpdate = now
}

func (r *rateControl) clamp(v float64) float64 {
	return math.Max(r.min, math.Min(r.max, v))
}

// capacityEstimate is the acknowledged rate seen at overuse: the link's
// capacity, once known, and how far it varies (kbit/s).
type capacityEstimate struct {
	est, dev float64
	ok       bool
}

func (c *capacityEstimate) update(bps float64) {
	s := bps / 1000
	if !c.ok {
		c.est, c.dev, c.ok = s, 0.4, true
		return
	}
	const alpha = 0.05
	c.est = (1-alpha)*c.est + alpha*s
	e := c.est - s
	c.dev = (1-alpha)*c.dev + alpha*e*e/math.Max(c.est, 1)
	c.dev = math.Max(0.4, math.Min(2.5, c.dev))
}

func (c *capacityEstimate) reset() { *c = capacityEstimate{} }

func (c *capacityEstimate) spread() float64 { return 3 * math.Sqrt(c.dev*c.est) }

func (c *capacityEstimate) upper() float64 { return (c.est + c.spread()) * 1000 }

func (c *capacityEstimate) lower() float64 { return math.Max(0, c.est-c.spread()) * 1000 }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
