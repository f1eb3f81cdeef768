package sfu

import (
	"sort"
	"time"
)

// Layer allocation: every tick, each subscriber transport's bandwidth
// estimate is shared among its consumers — audio first, then video by
// priority (screen shares before cameras) — and each video consumer gets
// the best simulcast layer that fits, within the subscriber's preferred
// maximum. Going down is immediate; going up needs the headroom to last
// upHold, so a noisy estimate cannot make layers flap. When even the
// lowest layer does not fit, the video is suspended (audio keeps flowing).
// When a better layer is wanted but the estimate is short, the transport
// probes with padding to find out whether the link can carry more.
const (
	tickInterval = 250 * time.Millisecond
	upHold       = 1500 * time.Millisecond
	upHeadroom   = 1.10 // a higher layer must fit with 10% to spare
	// A shortfall under 25% must last downHold before the layer drops: a
	// keyframe burst makes the estimate dip for a moment on any link. A
	// bigger one drops the layer at once.
	downHold     = time.Second
	downTolerate = 0.75
	// Video is suspended only after the lowest layer has not fitted for
	// this long.
	suspendHold = 2 * time.Second
	// A probe is short and at most twice the estimate, so that on a link
	// that cannot carry it the overshoot fits in the bottleneck's queue
	// instead of turning into loss.
	probeDuration   = 200 * time.Millisecond
	probeBackoff    = time.Second
	probeAgain      = 300 * time.Millisecond
	probeMaxBackoff = 4 * time.Second
	probeMaxFactor  = 2.0
	// No probing for this long after the estimate fell: the link just
	// said it is full.
	probeQuiet = 3 * time.Second
	// How long a failed probe's delivered rate bounds later probes.
	probeMemory  = 20 * time.Second
	layerTimeout = time.Second
	dynacastHold = 3 * time.Second
)

// allocState is a transport's allocator memory between ticks.
type allocState struct {
	lastEst    int
	fellAt     time.Time
	nextProbe  time.Time
	lastResult time.Time
	backoff    time.Duration
	probeRate  int
	mediaRate  int
}

// consumerAlloc is a consumer's allocator memory between ticks.
type consumerAlloc struct {
	upLayer     int
	upSince     time.Time
	downSince   time.Time
	starveSince time.Time
	waitSince   time.Time // since when the consumer waits for a keyframe
}

// lowestAvailable returns the lowest layer that can be chosen, or -1.
func (p *Producer) lowestAvailable(maxL int) int {
	for i := 0; i <= maxL && i < maxLayers; i++ {
		if p.available(i) {
			return i
		}
	}
	return -1
}

// run ticks the router's allocator until the router closes.
func (r *Router) run() {
	defer close(r.done)
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-r.quit:
			return
		case now := <-t.C:
			r.tick(now, now.Sub(last))
			last = now
		}
	}
}

func (r *Router) tick(now time.Time, dt time.Duration) {
	r.mu.Lock()
	ps := make([]*Producer, 0, len(r.producers))
	for _, p := range r.producers {
		ps = append(ps, p)
	}
	ts := make([]*Transport, 0, len(r.transports))
	for _, t := range r.transports {
		ts = append(ts, t)
	}
	r.mu.Unlock()
	for _, p := range ps {
		p.updateRates(now, dt)
	}
	for _, t := range ts {
		if t.bwe != nil && t.connected.Load() {
			t.allocate(now)
		}
		if t.connected.Load() {
			for _, c := range t.Consumers() {
				c.awaitKeyframe(now)
			}
		}
	}
	for _, p := range ps {
		p.dynacast(now)
	}
}

// updateRates turns the per-packet counters into smoothed rates and
// notices layers that stopped.
func (p *Producer) updateRates(now time.Time, dt time.Duration) {
	if dt <= 0 {
		return
	}
	for i := range p.layers {
		l := &p.layers[i]
		if l.ssrc.Load() == 0 {
			continue
		}
		b, f := l.bytes.Load(), l.frames.Load()
		prevBytes := l.lastBytes
		inst := float64(b-l.lastBytes) * 8 / dt.Seconds()
		fps := float64(f-l.lastFrames) / dt.Seconds()
		l.lastBytes, l.lastFrames = b, f
		live := now.UnixNano()-l.lastPacket.Load() < int64(layerTimeout)
		if !live {
			// The last rate is kept: it is what the layer will cost when
			// it resumes, and a layer that is neither live nor paused by
			// dynacast is not available anyway.
			l.fps.Store(0)
			l.active.Store(false)
			continue
		}
		l.active.Store(true)
		if b == prevBytes || l.pausedByUs.Load() || now.Sub(l.resumedAt) < time.Second {
			// Pausing or just resumed: this tick's count says nothing
			// about what the layer costs when it flows.
			continue
		}
		old := float64(l.rate.Load())
		if old == 0 {
			old = inst
		}
		// About a second of memory at 4 ticks a second.
		l.rate.Store(int64(0.75*old + 0.25*inst))
		oldFPS := float64(l.fps.Load()) / 100
		if oldFPS == 0 {
			oldFPS = fps
		}
		l.fps.Store(int64(100 * (0.75*oldFPS + 0.25*fps)))
	}
}

// available reports whether layer i can be chosen: it is sending, or it
// was paused by dynacast and will resume on demand.
func (p *Producer) available(i int) bool {
	l := &p.layers[i]
	return l.ssrc.Load() != 0 && (l.active.Load() || l.pausedByUs.Load())
}

// layerRate is a layer's cost in bits per second, with a floor so a layer
// that just started is not thought free.
func (p *Producer) layerRate(i int) int {
	r := int(p.layers[i].rate.Load())
	if r < 30_000 {
		r = 30_000
	}
	return r
}

func (t *Transport) allocate(now time.Time) {
	est := t.bwe.GetTargetBitrate()
	if est < t.alloc.lastEst*95/100 {
		t.alloc.fellAt = now
	}
	t.alloc.lastEst = est
	budget := est
	cs := t.Consumers()
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i].producer, cs[j].producer
		if (a.kind == KindAudio) != (b.kind == KindAudio) {
			return a.kind == KindAudio
		}
		if a.priority != b.priority {
			return a.priority > b.priority
		}
		return cs[i].id < cs[j].id
	})
	media := 0
	wantMore := 0 // bits per second a better layer would need
	for _, c := range cs {
		if c.paused.Load() || c.producer.paused.Load() {
			continue
		}
		if c.producer.kind == KindAudio {
			r := int(c.producer.layers[0].rate.Load())
			budget -= r
			media += r
			continue
		}
		used, more := c.allocate(budget, now)
		budget -= used
		media += used
		if more > 0 && wantMore == 0 {
			wantMore = more
		}
	}
	t.alloc.mediaRate = media
	// Schedule the next probe from the latest result: soon after a
	// success (the link may carry still more), later and later after
	// failures.
	if lp := t.bwe.LastProbe(); !lp.At.IsZero() && lp.At.After(t.alloc.lastResult) {
		t.alloc.lastResult = lp.At
		switch {
		case lp.Success:
			// The link took it: look for more right away.
			t.alloc.backoff = probeAgain
		case t.alloc.backoff < probeBackoff:
			t.alloc.backoff = probeBackoff
		case t.alloc.backoff < probeMaxBackoff:
			t.alloc.backoff *= 2
		}
		t.alloc.nextProbe = lp.At.Add(t.alloc.backoff)
	}
	if wantMore > 0 && !now.Before(t.alloc.nextProbe) && now.Sub(t.alloc.fellAt) > probeQuiet {
		target := media + wantMore
		if max := int(float64(est) * probeMaxFactor); target > max {
			target = max
		}
		// A failed probe measured the link: for a while, probe only a
		// quarter above what it delivered. A link that has grown since is
		// still found, step by step, without overshooting one that has not.
		if lp := t.bwe.LastProbe(); !lp.Success && lp.Delivered > 0 && now.Sub(lp.At) < probeMemory {
			target = min(target, lp.Delivered*5/4)
		}
		if target > est && t.bwe.StartProbe(target, probeDuration, now) {
			t.alloc.probeRate = target
			t.startPadding(target, media)
			// Until its result is in; the result reschedules.
			t.alloc.nextProbe = now.Add(probeDuration + probeMaxBackoff)
		}
	}
}

// allocate picks this video consumer's layer within budget. It returns the
// bitrate the choice uses and, when a better layer exists but does not
// fit, how much more it would need.
func (c *Consumer) allocate(budget int, now time.Time) (used, more int) {
	p := c.producer
	maxL := int(c.maxLayer.Load())
	c.mu.Lock()
	cur := c.target
	c.mu.Unlock()
	best := -1
	top := -1
	for i := min(maxL, maxLayers-1); i >= 0; i-- {
		if !p.available(i) {
			continue
		}
		if top < 0 {
			top = i
		}
		need := p.layerRate(i)
		if i > cur {
			need = int(float64(need) * upHeadroom)
		}
		if need <= budget {
			best = i
			break
		}
		if i == cur && float64(budget) >= downTolerate*float64(need) {
			// Slightly short on the current layer: hold it for a while.
			if c.alloc.downSince.IsZero() {
				c.alloc.downSince = now
			}
			if now.Sub(c.alloc.downSince) < downHold {
				best = i
				break
			}
		}
	}
	if best != cur || p.layerRate(max(cur, 0)) <= budget {
		c.alloc.downSince = time.Time{}
	}
	if top < 0 {
		return 0, 0 // nothing to forward yet
	}
	if best >= 0 || cur < 0 {
		c.alloc.starveSince = time.Time{}
	}
	switch {
	case best < 0 && cur >= 0:
		// Even the lowest layer does not fit. Suspend the video only if
		// that lasts: a frozen picture is worse than a late one, and a
		// busy machine or a keyframe makes estimates dip briefly.
		if c.alloc.starveSince.IsZero() {
			c.alloc.starveSince = now
		}
		low := p.lowestAvailable(maxL)
		if now.Sub(c.alloc.starveSince) < suspendHold && low >= 0 {
			if low < cur {
				c.setTarget(low)
			}
			return p.layerRate(low), 0
		}
		c.setTarget(-1)
		c.alloc.upSince = time.Time{}
		return 0, p.layerRate(0)
	case best < 0:
		c.alloc.upSince = time.Time{}
		return 0, p.layerRate(0)
	case best <= cur:
		c.alloc.upSince = time.Time{}
		if best < cur {
			c.setTarget(best)
		}
	default: // best > cur: up, once the headroom has lasted
		if cur < 0 {
			c.setTarget(best) // resuming from suspension: no wait
			break
		}
		if c.alloc.upSince.IsZero() || c.alloc.upLayer != best {
			c.alloc.upSince, c.alloc.upLayer = now, best
		}
		if now.Sub(c.alloc.upSince) >= upHold {
			c.setTarget(best)
			c.alloc.upSince = time.Time{}
		} else {
			best = cur
		}
	}
	if best < top {
		// Probe for the best layer wanted, not just the next one: a
		// link that carries it is found in one step.
		base := 0
		if best >= 0 {
			base = p.layerRate(best)
		}
		more = int(float64(p.layerRate(top))*upHeadroom) - base
	}
	if best < 0 {
		return 0, more
	}
	return p.layerRate(best), more
}

// setTarget changes the layer the consumer switches to at its next
// keyframe (or, with -1, suspends its video).
func (c *Consumer) setTarget(l int) {
	c.mu.Lock()
	if c.target == l {
		c.mu.Unlock()
		return
	}
	c.target = l
	if l < 0 {
		c.current = -1
	}
	c.mu.Unlock()
	if l < 0 {
		c.notifyLayer(-1)
		return
	}
	c.producer.RequestKeyframe(l)
}

// dynacast tells the publisher which encodings someone needs: a layer no
// consumer targets or forwards for dynacastHold is paused; a wanted one
// resumes at once.
func (p *Producer) dynacast(now time.Time) {
	p.mu.Lock()
	onLayers := p.onLayers
	p.mu.Unlock()
	// SSRC simulcast has no rids, so a publisher could not be told which
	// encoding to pause (setParameters works on rids): all keep flowing.
	if p.kind != KindVideo || onLayers == nil || len(p.sim) > 0 {
		return
	}
	seen := 0
	for i := range p.layers {
		if p.layers[i].ssrc.Load() != 0 {
			seen++
		}
	}
	if seen < 2 {
		return // not simulcast
	}
	var need [maxLayers]bool
	for _, c := range *p.consumers.Load() {
		c.mu.Lock()
		if c.target >= 0 {
			need[c.target] = true
		}
		if c.current >= 0 {
			need[c.current] = true
		}
		c.mu.Unlock()
	}
	var next [maxLayers]bool
	for i := range p.layers {
		l := &p.layers[i]
		if need[i] {
			l.unwanted = time.Time{}
			next[i] = true
			continue
		}
		if l.unwanted.IsZero() {
			l.unwanted = now
		}
		next[i] = now.Sub(l.unwanted) < dynacastHold
	}
	if next == p.wanted {
		return
	}
	p.wanted = next
	for i := range p.layers {
		l := &p.layers[i]
		paused := !next[i] && l.ssrc.Load() != 0
		if l.pausedByUs.Swap(paused) && !paused {
			l.resumedAt = now
		}
	}
	onLayers(next)
}

// keyframeRetry is how often a consumer waiting to start (or to switch
// layers) asks again for the keyframe it needs: the keyframe the last
// request brought may have been lost, or gone out before this consumer
// could take it.
const keyframeRetry = time.Second

// awaitKeyframe re-requests a keyframe for a consumer that has been
// waiting for one too long.
func (c *Consumer) awaitKeyframe(now time.Time) {
	if c.paused.Load() || c.producer.kind != KindVideo {
		return
	}
	c.mu.Lock()
	waiting := c.writer != nil && c.target >= 0 && c.current != c.target
	if !waiting {
		c.alloc.waitSince = time.Time{}
		c.mu.Unlock()
		return
	}
	if c.alloc.waitSince.IsZero() {
		c.alloc.waitSince = now
	}
	due := now.Sub(c.alloc.waitSince) >= keyframeRetry
	if due {
		c.alloc.waitSince = now
	}
	t := c.target
	c.mu.Unlock()
	if due {
		c.producer.RequestKeyframe(t)
	}
}
