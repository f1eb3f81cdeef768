package bwe

import (
	"math"
	"time"
)

const (
	ackedBin     = 25 * time.Millisecond // the acked rate's resolution…
	ackedBins    = 20                    // …and window (500 ms)
	minAckedSpan = 100 * time.Millisecond

	lossHigh        = 0.10 // above: cut the rate
	lossLow         = 0.02 // below: let it grow
	lossMinPackets  = 50   // a loss figure covers at least this many packets…
	lossMaxWait     = time.Second
	lossFewPackets  = 10 // …or this many when lossMaxWait has passed
	lossReduceEvery = 300 * time.Millisecond
)

// ackedRate measures the acknowledged bitrate: bytes that arrived over the
// last 500 ms of the receiver's clock, in fixed bins.
type ackedRate struct {
	bins        [ackedBins]int
	head        int64 // bin number of the newest arrival
	first, last time.Time
	ok          bool
}

func (a *ackedRate) add(arrive time.Time, size int) {
	idx := arrive.UnixNano() / int64(ackedBin)
	if !a.ok || idx < a.head-100*ackedBins {
		// First packet, or the receiver's clock jumped back.
		*a = ackedRate{head: idx, first: arrive, last: arrive, ok: true}
	}
	switch {
	case idx > a.head:
		if idx-a.head >= ackedBins {
			a.bins = [ackedBins]int{}
		} else {
			for i := a.head + 1; i <= idx; i++ {
				a.bins[binSlot(i)] = 0
			}
		}
		a.head = idx
	case idx <= a.head-ackedBins:
		return // older than the window
	}
	a.bins[binSlot(idx)] += size
	if arrive.After(a.last) {
		a.last = arrive
	}
}

// rate is the acknowledged bitrate over the whole window, 0 while less
// than minAckedSpan has been seen.
func (a *ackedRate) rate() float64 { return a.over(ackedBins) }

func (a *ackedRate) over(bins int64) float64 {
	if !a.ok {
		return 0
	}
	start := time.Unix(0, (a.head-bins+1)*int64(ackedBin))
	if a.first.After(start) {
		start = a.first
	}
	span := a.last.Sub(start)
	if span < minAckedSpan {
		return 0
	}
	sum := 0
	for i := a.head - bins + 1; i <= a.head; i++ {
		sum += a.bins[binSlot(i)]
	}
	return float64(sum*8) / span.Seconds()
}

// binSlot is bin number i's place in the ring. Bin numbers can be
// negative: the receiver's clock starts anywhere, even just before zero.
func binSlot(i int64) int {
	return int((i%ackedBins + ackedBins) % ackedBins)
}

// lossBased is the loss-based estimate: it falls by half the loss
// fraction when more than 10% of the packets are lost, grows like the
// delay-based one below 2%, and holds in between.
type lossBased struct {
	rate         float64
	lost, total  int
	since        time.Time // when the current count began
	lastUpdate   time.Time
	lastDecrease time.Time
	fraction     float64 // the latest loss figure
}

// update counts one feedback's packets and, once there are enough,
// adjusts the rate; delay is the delay-based rate, acked the acknowledged
// one.
func (l *lossBased) update(lost, total int, delay, acked float64, rtt time.Duration, now time.Time, minRate, maxRate float64) {
	if l.since.IsZero() {
		l.since, l.lastUpdate = now, now
	}
	l.lost += lost
	l.total += total
	if l.total < lossMinPackets && (now.Sub(l.since) < lossMaxWait || l.total < lossFewPackets) {
		return
	}
	l.fraction = float64(l.lost) / float64(l.total)
	l.lost, l.total, l.since = 0, 0, now
	dt := math.Max(0, math.Min(now.Sub(l.lastUpdate).Seconds(), 1))
	l.lastUpdate = now
	switch {
	case l.fraction > lossHigh:
		if !l.lastDecrease.IsZero() && now.Sub(l.lastDecrease) < lossReduceEvery+rtt {
			return
		}
		// Cut from the rate the losses happened at, which the delay-based
		// estimate may already have cut below: the acknowledged rate
		// plus what was lost. When nearly everything was lost, from the
		// delay-based rate.
		from := delay
		if acked > 0 && l.fraction < 0.95 {
			from = acked / (1 - l.fraction)
		}
		l.rate = math.Min(l.rate, from) * (1 - 0.5*l.fraction)
		l.lastDecrease = now
	case l.fraction < lossLow:
		l.rate = l.rate*math.Pow(increasePerSec, dt) + 1000*dt
	}
	l.rate = math.Max(minRate, math.Min(maxRate, l.rate))
}
