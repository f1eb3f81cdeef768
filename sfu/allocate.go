package sfu

import (
	"sort"
	"time"

	"github.com/matinee-dev/matinee/sfu/bwe"
)

// Layer allocation: every tick, each subscriber transport's bandwidth
// estimate is shared among its consumers — audio first, then video by
// priority (screen shares before cameras) — and each video consumer gets
// the best simulcast layer that fits, within the subscriber's preferred
// maximum. Going down is immediate; going up needs the headroom to last
// upHold, so a noisy estimate cannot make layers flap, unless a probe has
// just measured it. When even the
// lowest layer does not fit, the video is suspended (audio keeps flowing).
//
// With VP8 temporal layers, a choice is a (spatial, temporal) pair. The
// candidates run from the best down: each spatial layer with all its
// frames, then with its top temporal layer dropped (half the frame rate),
// then the next spatial layer down; the lowest spatial layer also offers
// its base layer alone. So a budget a little short of a layer keeps its
// resolution at half the frame rate, and a budget far short goes down in
// resolution before the picture becomes a slideshow. The hold and
// headroom rules apply to the pair.
//
// A video on its lowest choice (a one-encoding video is always there) can
// only be paused, and a short estimate alone is no reason to: estimates
// dip on a busy machine, and a video the link does carry would be lost
// for nothing. It is paused on evidence that lasts pauseHold: the
// subscriber acknowledges clearly less than is sent, with loss or an
// estimate far below the video's rate. (A receiver whose CPU is too busy
// to read its socket in time loses packets too, but gets them again by
// NACK and acknowledges what is sent: that is not the link.) A paused video is probed for every resumeEvery and
// resumes as soon as a probe shows the link carries it.
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
	// Going up makes the publisher send a keyframe of the new layer, a
	// burst several frames large, and the estimate dips while the
	// bottleneck's queue drains it. For upGrace after going up, a
	// shortfall of up to half is held for downHold too, instead of
	// undoing the switch at once.
	upGrace         = 2 * time.Second
	upGraceTolerate = 0.5
	// The evidence that pauses a video on its lowest choice: for
	// pauseHold on end, the subscriber acknowledges less than pauseAcked
	// of what is sent, and pauseLoss of the packets are lost or the
	// estimate is under pauseFar of the video's rate.
	pauseHold  = 3 * time.Second
	pauseLoss  = 0.10
	pauseFar   = 0.5
	pauseAcked = 0.8
	// A paused video is probed for every resumeEvery, briefly (on a link
	// that still cannot carry it, the overshoot is short), at
	// resumeOvershoot of what resuming needs: a success sets the estimate
	// to 95% of what was delivered, which must still cover it.
	resumeEvery     = time.Second
	resumeProbe     = 100 * time.Millisecond
	resumeOvershoot = 1.15
	resumeCatchUp   = 4 // padding steps a late tick makes up (padding.go)
	// A probe is short and at most twice the estimate, so that on a link
	// that cannot carry it the overshoot fits in the bottleneck's queue
	// instead of turning into loss.
	probeDuration   = 200 * time.Millisecond
	probeBackoff    = time.Second
	probeAgain      = 300 * time.Millisecond
	probeMaxBackoff = 4 * time.Second
	probeMaxFactor  = 2.0
	probeMargin     = 0.06
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
	nextResume time.Time
}

// linkState is what the estimator says about a subscriber's link beyond
// its estimate: the evidence a pause needs.
type linkState struct {
	loss       float64 // fraction lost, latest figure
	delivering bool    // the subscriber acknowledges about what is sent
	// A probe has just succeeded: the estimate is a fresh measurement of
	// the link, not a drift that a hold must confirm.
	measured bool
}

// cannotCarry reports whether the link shows it cannot carry rate on a
// budget that does not fit it.
func (l linkState) cannotCarry(budget, rate int) bool {
	return !l.delivering && (l.loss >= pauseLoss || float64(budget) < pauseFar*float64(rate))
}

// consumerAlloc is a consumer's allocator memory between ticks.
type consumerAlloc struct {
	upSince     time.Time
	upAt        time.Time // when the consumer last went up
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
			if t.opts.Direction == Recv {
				t.sendReports(now)
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
			l.temporal.update(now, dt, false)
			continue
		}
		l.temporal.update(now, dt, true)
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
	t.bwe.EvaluateProbe(now)
	est := t.bwe.GetTargetBitrate()
	if est < t.alloc.lastEst*95/100 {
		t.alloc.fellAt = now
	}
	t.alloc.lastEst = est
	budget := est
	acked := t.bwe.Acked()
	lp := t.bwe.LastProbe()
	link := linkState{
		loss:       t.bwe.Loss(),
		delivering: t.alloc.mediaRate > 0 && float64(acked) >= pauseAcked*float64(t.alloc.mediaRate),
		measured:   lp.Success && lp.At.After(t.alloc.lastResult),
	}
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
	resume := 0   // what a paused video needs to resume
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
		used, more, paused := c.allocate(budget, link, now)
		budget -= used
		media += used
		if paused && resume == 0 {
			resume = more
		}
		if more > 0 && wantMore == 0 {
			wantMore = more
		}
	}
	t.alloc.mediaRate = media
	// Schedule the next probe from the latest result: soon after a
	// success (the link may carry still more), later and later after
	// failures.
	if !lp.At.IsZero() && lp.At.After(t.alloc.lastResult) {
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
	if resume > 0 {
		// A paused video: probe for all of it, steadily, whatever the
		// estimate did lately; a partial probe cannot resume it.
		target := int(float64(media+resume) * resumeOvershoot)
		if !now.Before(t.alloc.nextResume) && target > est && t.bwe.StartProbe(target, resumeProbe, now) {
			t.log.Debug("probing to resume a paused video", "target", target, "estimate", est, "last", t.bwe.LastProbe())
			t.alloc.probeRate = target
			// Half a tick early, so the tick a period later takes it.
			t.alloc.nextResume = now.Add(resumeEvery - tickInterval/2)
			t.startPadding(target, media, resumeProbe, resumeCatchUp)
		}
		return
	}
	if wantMore > 0 && !now.Before(t.alloc.nextProbe) && now.Sub(t.alloc.fellAt) > probeQuiet {
		target := probeTarget(media, wantMore, est, t.bwe.LastProbe(), now)
		if target > est && t.bwe.StartProbe(target, probeDuration, now) {
			t.log.Debug("probing for more", "target", target, "estimate", est, "media", media, "want", wantMore, "last", t.bwe.LastProbe(), "backoff", t.alloc.backoff)
			t.alloc.probeRate = target
			t.startPadding(target, media, probeDuration, 1)
			// Until its result is in; the result reschedules.
			t.alloc.nextProbe = now.Add(probeDuration + probeMaxBackoff)
		}
	}
}

// probeTarget is the rate to probe at for wantMore bits per second above
// the media's, given the estimate and the latest probe's result.
func probeTarget(media, wantMore, est int, lp bwe.ProbeResult, now time.Time) int {
	// A successful probe sets the estimate to bwe.ProbeKeepPercent of what
	// it delivered: aiming at exactly what the better layer needs would
	// leave the estimate short of it, and GCC cannot climb further on its
	// own (its increase is bounded by what is actually sent). So aim at
	// need ÷ ProbeKeepPercent, plus probeMargin: a probe delivers its
	// target only to within a few percent, and one that lands a hair short
	// would leave the estimate a hair short too, probe after probe (the
	// layer then took several seconds longer to reach). More than that
	// would only overshoot a link that cannot carry the layer.
	target := int(float64(media+wantMore) * 100 / bwe.ProbeKeepPercent * (1 + probeMargin))
	if m := int(float64(est) * probeMaxFactor); target > m {
		target = m
	}
	// A failed probe measured the link: for a while, probe only 10% above
	// what it delivered. A link that has grown since is found at the
	// first such probe that succeeds (the next is not bounded); one that
	// has not is overshot too little for its queue to delay the media,
	// which would make GCC cut the estimate and the layer flap.
	//
	// Unless it delivered less than the estimate the media already flows
	// at: then it did not measure the link but a stall (the sender's, or
	// the receiver's under a burst of load), and a bound below the
	// estimate would stop every probe for probeMemory. GCC lowers the
	// estimate itself if the link did shrink, and the bound applies again
	// once it is below.
	if !lp.Success && lp.Delivered > 0 && now.Sub(lp.At) < probeMemory {
		if b := lp.Delivered * 11 / 10; b > est {
			target = min(target, b)
		}
	}
	return target
}

// choice is what the allocator gives a video consumer: a spatial layer
// (-1: none) and the highest temporal layer of it (maxTemporal: all).
type choice struct{ s, t int }

// rank orders choices: spatial first, then temporal.
func (ch choice) rank() int {
	if ch.s < 0 {
		return -1
	}
	return ch.s*(maxTemporal+1) + ch.t
}

// maxCandidates bounds the choices one producer offers.
const maxCandidates = maxLayers * (maxTemporal + 1)

// candidates lists the choices within the subscriber's cap, best first,
// with what each costs; see the comment at the top of this file.
func (c *Consumer) candidates(maxL int, out *[maxCandidates]choice, rates *[maxCandidates]int) int {
	p := c.producer
	lowest := p.lowestAvailable(maxL)
	n := 0
	for s := min(maxL, maxLayers-1); s >= 0; s-- {
		if !p.available(s) {
			continue
		}
		ts := &p.layers[s].temporal
		top := ts.top()
		floor := max(top-1, 0)
		if s == lowest {
			floor = 0
		}
		for t := top; t >= floor; t-- {
			ch := choice{s, t}
			if t == top {
				// All of the layer: frames of a temporal layer that
				// appears later are not dropped.
				ch.t = maxTemporal
			}
			out[n] = ch
			rates[n] = max(int(float64(p.layerRate(s))*ts.share(t, top)), 30_000)
			n++
		}
	}
	return n
}

// allocate picks this video consumer's layers within budget. It returns
// the bitrate the choice uses and, when a better choice exists but does
// not fit, how much more it would need; paused reports a paused video,
// more then being what resuming needs.
func (c *Consumer) allocate(budget int, link linkState, now time.Time) (used, more int, paused bool) {
	var cands [maxCandidates]choice
	var rates [maxCandidates]int
	maxL := int(c.maxLayer.Load())
	n := c.candidates(maxL, &cands, &rates)
	c.mu.Lock()
	cur := choice{c.target, c.tlTarget}
	c.mu.Unlock()
	curRate := -1
	best := -1
	for i := 0; i < n; i++ {
		need := rates[i]
		if cands[i] == cur {
			curRate = need
		}
		if cands[i].rank() > cur.rank() && cur.s >= 0 {
			// Up needs headroom; resuming does not: the probe that
			// allows it has just measured the link.
			need = int(float64(need) * upHeadroom)
		}
		if need <= budget {
			best = i
			break
		}
		tolerate := downTolerate
		if now.Sub(c.alloc.upAt) < upGrace {
			tolerate = upGraceTolerate
		}
		if cands[i] == cur && float64(budget) >= tolerate*float64(need) {
			// Slightly short on the current choice: hold it for a while.
			if c.alloc.downSince.IsZero() {
				c.alloc.downSince = now
			}
			if now.Sub(c.alloc.downSince) < downHold {
				best = i
				break
			}
		}
	}
	if best < 0 || cands[best] != cur || (curRate >= 0 && curRate <= budget) {
		c.alloc.downSince = time.Time{}
	}
	if n == 0 {
		return 0, 0, false // nothing to forward yet
	}
	if best >= 0 || cur.s < 0 {
		c.alloc.starveSince = time.Time{}
	}
	lowest := n - 1
	switch {
	case best < 0 && cur.s >= 0:
		// Even the cheapest choice does not fit: down to it at once.
		// Pause the video only on evidence that lasts (see the top of
		// this file): a frozen picture is worse than a late one, and a
		// busy machine or a keyframe makes estimates dip.
		if cands[lowest].rank() < cur.rank() {
			c.setTarget(cands[lowest])
		}
		if !link.cannotCarry(budget, rates[lowest]) {
			c.alloc.starveSince = time.Time{}
			// Probe: the link may well carry it, and the estimate
			// should know.
			return rates[lowest], max(rates[lowest]/10, 1), false
		}
		if c.alloc.starveSince.IsZero() {
			c.alloc.starveSince = now
		}
		if now.Sub(c.alloc.starveSince) < pauseHold {
			return rates[lowest], 0, false
		}
		c.transport.log.Debug("video paused", "consumer", c.id, "budget", budget, "rate", rates[lowest], "loss", link.loss, "delivering", link.delivering)
		c.setTarget(choice{-1, 0})
		c.alloc.upSince = time.Time{}
		return 0, rates[lowest], true
	case best < 0:
		c.alloc.upSince = time.Time{}
		return 0, rates[lowest], true
	case cands[best].rank() <= cur.rank():
		c.alloc.upSince = time.Time{}
		if cands[best] != cur {
			c.setTarget(cands[best])
		}
	default: // better than now: up, once the headroom has lasted
		if cur.s < 0 {
			c.transport.log.Debug("video resumes", "consumer", c.id, "budget", budget, "rate", rates[best])
			c.setTarget(cands[best]) // resuming from suspension: no wait
			break
		}
		// The hold runs from when something better first fitted, and
		// then goes to the best that fits: a probe that succeeds lifts
		// the estimate in steps, and a hold per step would keep a link
		// that carries the top layer on a middle one for seconds.
		if c.alloc.upSince.IsZero() {
			c.alloc.upSince = now
		}
		if now.Sub(c.alloc.upSince) >= upHold || link.measured {
			c.setTarget(cands[best])
			c.alloc.upSince = time.Time{}
			c.alloc.upAt = now
		} else {
			// Hold the current choice; what it costs is what is used.
			best = -1
			for i := 0; i < n; i++ {
				if cands[i] == cur {
					best = i
					break
				}
			}
			if best < 0 {
				return max(curRate, 0), 0, false
			}
		}
	}
	if best > 0 {
		// Probe for the best choice wanted, not just the next one: a
		// link that carries it is found in one step.
		more = int(float64(rates[0])*upHeadroom) - rates[best]
	}
	return rates[best], more, false
}

// setTarget changes the layers the consumer forwards: a new spatial layer
// at its next keyframe, a new temporal layer at the next frame that
// allows it. A spatial layer of -1 suspends the video.
func (c *Consumer) setTarget(ch choice) {
	c.mu.Lock()
	if c.target == ch.s && (ch.s < 0 || c.tlTarget == ch.t) {
		c.mu.Unlock()
		return
	}
	spatial := c.target != ch.s
	c.target = ch.s
	if ch.s < 0 {
		c.current = -1
	} else {
		c.tlTarget = ch.t
	}
	c.mu.Unlock()
	if ch.s < 0 {
		c.notifyLayer(-1, -1, true)
		return
	}
	if spatial {
		c.producer.RequestKeyframe(ch.s)
	}
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
	// Other routers' needs, as their pipes report them (pipe.go).
	if ps := p.pipes.Load(); ps != nil {
		for _, o := range *ps {
			m := o.need.Load()
			for i := range need {
				need[i] = need[i] || m&(1<<i) != 0
			}
		}
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
