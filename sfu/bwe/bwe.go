// Package bwe estimates one subscriber's available bandwidth with
// Matinee's own Google Congestion Control (draft-ietf-rmcat-gcc-02, in
// libwebrtc's send-side form), fed by transport-wide congestion control
// feedback: a delay-based estimate (delay.go) and a loss-based one
// (rates.go), the lower of which is GCC's rate. Recording a sent packet
// costs one slot of a fixed ring, without allocating.
//
// On top of GCC it adds what GCC alone lacks for a fast climb: probe
// clusters. A probe sends padding at a higher rate for a short window; if
// the feedback shows it was delivered at that rate without loss, the
// estimate jumps to the delivered rate instead of creeping up at GCC's 8%
// per second. Any congestion signal GCC raises (its rate falling) or heavy
// receiver-report loss drops that floor again.
package bwe

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

const transportCCURI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

// Without feedback for stallTimeout while sending, GCC's rate is cut to
// stallFactor of itself, and again every stallTimeout.
const (
	stallTimeout = time.Second
	stallFactor  = 0.8
)

// ringSize is how many sent packets are remembered, by TWCC sequence
// number: over 3 s at 6 Mbit/s (a top layer probed at twice its rate),
// where feedback comes every 100 ms or so. One ring per subscriber: 32 KB.
const ringSize = 2048

// Estimator implements cc.BandwidthEstimator.
type Estimator struct {
	mu       sync.Mutex
	epoch    time.Time            // sentPacket times count from it
	sent     [ringSize]sentPacket // by TWCC sequence number mod ringSize
	acks     []ack                // reused by every feedback
	minRate  float64
	maxRate  float64
	delay    delayDetector
	rc       rateControl
	acked    ackedRate
	loss     lossBased
	rtt      time.Duration // smoothed, from feedback; 0 until known
	lastSent time.Time     // the newest packet's departure
	unacked  time.Time     // the first departure since the latest feedback
	stalls   int           // cuts made since feedback stopped
	floor    int           // from the last successful probe
	lastGCC  int           // GCC's rate: min(delay-based, loss-based)
	rrLoss   float64       // fraction lost in the latest receiver report
	probeOK  time.Time     // when the latest successful probe was evaluated
	probe    *probe
	lastEval ProbeResult
	onChange func(int)
	closed   bool
}

// It is 16 bytes, a time.Time alone being 24: the ring is most of an
// estimator's memory, and there is one per subscriber.
type sentPacket struct {
	at       int64  // departure: nanoseconds since the estimator's epoch
	size     uint16 // bytes, header and payload
	seq      uint16
	ok       bool
	reported bool // some feedback has told its fate
	acked    bool // some feedback has reported it received
}

// sentAt is when sp left.
func (e *Estimator) sentAt(sp *sentPacket) time.Time { return e.epoch.Add(time.Duration(sp.at)) }

type probe struct {
	start, end time.Time
	rate       int
	evalAt     time.Time

	// What the feedback acknowledged of the packets sent in the window.
	bytes, lost, got        int
	firstArrive, lastArrive time.Time
}

// ProbeResult is the outcome of the latest probe.
type ProbeResult struct {
	Rate      int // bits per second asked for
	Delivered int // bits per second that arrived
	Loss      float64
	Success   bool
	At        time.Time
}

// New returns an estimator starting at initial bits per second, kept
// within [minRate, maxRate].
func New(initial, minRate, maxRate int) (*Estimator, error) {
	if minRate <= 0 || maxRate < minRate {
		return nil, fmt.Errorf("bwe: bad bounds [%d, %d]", minRate, maxRate)
	}
	initial = max(minRate, min(maxRate, initial))
	e := &Estimator{
		epoch:   time.Now(),
		acks:    make([]ack, 0, 256),
		minRate: float64(minRate),
		maxRate: float64(maxRate),
		delay:   newDelayDetector(),
		rc:      rateControl{rate: float64(initial), min: float64(minRate), max: float64(maxRate)},
		loss:    lossBased{rate: float64(maxRate)},
		lastGCC: initial,
	}
	return e, nil
}

// OnSent records a packet leaving: its transport-wide sequence number, its
// size in bytes (header and payload) and when it left. O(1), no
// allocation.
func (e *Estimator) OnSent(seq uint16, size int, at time.Time) {
	e.mu.Lock()
	e.sent[seq%ringSize] = sentPacket{at: int64(at.Sub(e.epoch)), size: uint16(min(size, math.MaxUint16)), seq: seq, ok: true}
	e.lastSent = at
	if e.unacked.IsZero() {
		e.unacked = at
	}
	e.mu.Unlock()
}

// AddStream implements cc.BandwidthEstimator: it records each packet's
// TWCC sequence number, size and send time once it has been written.
// Retransmissions on the repair stream are written to the media stream's
// writer, so they are seen and counted too, as the controller wants.
func (e *Estimator) AddStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	var id uint8
	for _, x := range info.RTPHeaderExtensions {
		if x.URI == transportCCURI {
			id = uint8(x.ID)
		}
	}
	if id == 0 {
		return writer
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		n, err := writer.Write(h, payload, a)
		if err == nil {
			if b := h.GetExtension(id); len(b) >= 2 {
				e.OnSent(uint16(b[0])<<8|uint16(b[1]), h.MarshalSize()+len(payload), time.Now())
			}
		}
		return n, err
	})
}

// WriteRTCP implements cc.BandwidthEstimator.
func (e *Estimator) WriteRTCP(pkts []rtcp.Packet, _ interceptor.Attributes) error {
	for _, p := range pkts {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			e.OnFeedback(fb, time.Now())
		}
	}
	return nil
}

// OnFeedback takes a TWCC report received at now: it matches the report
// to the packets sent, runs the delay-based and loss-based estimates, and
// evaluates a probe whose window the feedback has covered.
func (e *Estimator) OnFeedback(fb *rtcp.TransportLayerCC, now time.Time) {
	e.mu.Lock()
	e.acks = appendAcks(e.acks[:0], fb)
	e.onAcks(now)
}

// OnFeedbackRaw is OnFeedback for a report as it came off the wire: one
// RTCP transport-wide CC packet, header included, which it parses without
// allocating. A report that does not parse changes nothing.
func (e *Estimator) OnFeedbackRaw(fb []byte, now time.Time) error {
	e.mu.Lock()
	acks, err := appendAcksRaw(e.acks[:0], fb)
	e.acks = acks
	if err != nil {
		e.mu.Unlock()
		return err
	}
	e.onAcks(now)
	return nil
}

// onAcks evaluates the report in e.acks. Called with e.mu held, which it
// releases.
func (e *Estimator) onAcks(now time.Time) {
	pr := e.probe
	lost, total := 0, 0
	var latest time.Time // departure of the newest packet reported received
	for i := range e.acks {
		a := &e.acks[i]
		sp := &e.sent[a.seq%ringSize]
		if !sp.ok || sp.seq != a.seq {
			continue
		}
		first := !sp.reported
		sp.reported = true
		at := e.sentAt(sp)
		if pr != nil && first && !at.Before(pr.start) && !at.After(pr.end) {
			pr.account(sp, a)
		}
		if first {
			total++
			if !a.received {
				lost++
			}
		}
		if !a.received || sp.acked {
			continue
		}
		sp.acked = true
		e.acked.add(a.arrival, int(sp.size))
		e.delay.packet(at, a.arrival)
		if at.After(latest) {
			latest = at
		}
	}
	if !latest.IsZero() {
		if s := now.Sub(latest); s > 0 {
			if e.rtt == 0 {
				e.rtt = s
			} else {
				e.rtt = (7*e.rtt + s) / 8
			}
		}
	}
	var f func(int)
	var r int
	changed := false
	if total > 0 {
		e.unacked, e.stalls = time.Time{}, 0
	}
	if total > 0 && !e.closed {
		acked := e.acked.rate()
		e.rc.update(e.delay.usage, acked, e.rtt, now)
		e.loss.update(lost, total, e.rc.rate, acked, e.rtt, now, e.minRate, e.maxRate)
		g := int(math.Max(e.minRate, math.Min(e.maxRate, math.Min(e.rc.rate, e.loss.rate))))
		f, r, changed = e.setGCC(g)
	}
	if pr != nil && !now.Before(pr.evalAt) {
		e.evalProbe(now)
	}
	e.mu.Unlock()
	if changed && f != nil {
		f(r)
	}
}

// ProbeKeepPercent is the share of a probe's delivered rate the estimate
// keeps: a little under it, as the delivered rate is measured over a short
// burst. A caller aiming a probe at a rate the estimate must reach aims at
// that rate ÷ ProbeKeepPercent%, plus a margin for the measurement's noise.
const ProbeKeepPercent = 95

// evalProbe ends the probe with what the feedback has told of it. Called
// with e.mu held.
func (e *Estimator) evalProbe(now time.Time) {
	res := e.probe.result(now)
	e.lastEval = res
	e.probe = nil
	if res.Success {
		e.probeOK = now
		e.rrLoss = 0 // the probe is newer news than the report
	}
	switch {
	case res.Success && res.Delivered*ProbeKeepPercent/100 > e.floor:
		e.floor = res.Delivered * ProbeKeepPercent / 100
	case !res.Success && res.Delivered > 0 && res.Delivered < e.floor:
		// The link carried less than the floor claims: an earlier
		// probe rode a burst allowance. Left there, the floor would
		// also sit above every later probe's aim (the allocator
		// bounds those by what this one delivered) and stop them.
		e.floor = res.Delivered * ProbeKeepPercent / 100
	}
}

// GetTargetBitrate implements cc.BandwidthEstimator: GCC's rate, or the
// probe floor when that is higher, reduced by receiver-report loss.
func (e *Estimator) GetTargetBitrate() int {
	e.mu.Lock()
	f, r, changed := e.checkStall()
	res := e.combine(e.lastGCC)
	e.mu.Unlock()
	if changed && f != nil {
		f(r)
	}
	return res
}

// checkStall cuts GCC's rate by a fifth for every second packets have
// been sent without any feedback coming back: the feedback itself may be
// what the congestion loses.
func (e *Estimator) checkStall() (func(int), int, bool) {
	if e.unacked.IsZero() || e.closed {
		return nil, 0, false
	}
	n := min(int(e.lastSent.Sub(e.unacked)/stallTimeout), 20)
	if n <= e.stalls {
		return nil, 0, false
	}
	// The cut is from what is being sent: the probe floor when it is
	// above GCC's own rate, which on a link that probes keep full stays
	// where GCC climbed to alone (a stall on a busy machine took an
	// estimate of 1.73 Mbit/s on a 1.8 Mbit/s link to 0.25 so). The
	// floor is then voided: the cut is the estimate now.
	if f := float64(e.floor); f > e.rc.rate {
		e.rc.rate = e.rc.clamp(f)
	}
	e.floor = 0
	for ; e.stalls < n; e.stalls++ {
		e.rc.rate = e.rc.clamp(e.rc.rate * stallFactor)
	}
	e.rc.state = rcHold
	e.loss.rate = math.Min(e.loss.rate, e.rc.rate)
	return e.setGCC(int(math.Max(e.minRate, e.rc.rate)))
}

func (e *Estimator) combine(g int) int {
	r := g
	if e.floor > r {
		r = e.floor
	}
	if e.rrLoss > 0.1 {
		r = int(float64(r) * (1 - 0.5*e.rrLoss))
	}
	return r
}

// Loss is the latest loss figure: the larger of the transport-wide
// feedback's and the receiver report's fractions lost (0..1).
func (e *Estimator) Loss() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return math.Max(e.loss.fraction, e.rrLoss)
}

// Acked is the rate, in bits per second, at which the receiver has
// acknowledged packets over the last 500 ms (0 while not known).
func (e *Estimator) Acked() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return int(e.acked.rate())
}

// OnTargetBitrateChange implements cc.BandwidthEstimator: f is called,
// on the goroutine that delivered the feedback and outside the
// estimator's lock, whenever GCC's rate changes.
func (e *Estimator) OnTargetBitrateChange(f func(int)) {
	e.mu.Lock()
	e.onChange = f
	e.mu.Unlock()
}

// GetStats implements cc.BandwidthEstimator.
func (e *Estimator) GetStats() map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	return map[string]any{
		"targetBitrate":      e.combine(e.lastGCC),
		"gccBitrate":         e.lastGCC,
		"delayTargetBitrate": int(e.rc.rate),
		"lossTargetBitrate":  int(math.Min(e.loss.rate, e.maxRate)),
		"ackedBitrate":       int(e.acked.rate()),
		"delayMeasurement":   e.delay.variation,      // ms, the latest group's delay variation
		"delayEstimate":      e.delay.prevTrend,      // ms, the modified trend
		"delayThreshold":     e.delay.threshold,      // ms
		"usage":              e.delay.usage.String(), // normal, overuse, underuse
		"state":              e.rc.state.String(),    // increase, hold, decrease
		"averageLoss":        e.loss.fraction,        // the latest TWCC loss figure
		"rtt":                e.rtt.Seconds() * 1000, // ms
		"probeFloor":         e.floor,
		"receiverReportLoss": e.rrLoss,
	}
}

// Close implements cc.BandwidthEstimator. The estimator runs no goroutine;
// after Close, feedback no longer changes the rate or calls back.
func (e *Estimator) Close() error {
	e.mu.Lock()
	e.closed = true
	e.onChange = nil
	e.mu.Unlock()
	return nil
}

// gccChanged sets GCC's rate as if the estimate had produced it.
func (e *Estimator) gccChanged(rate int) {
	e.mu.Lock()
	f, r, changed := e.setGCC(rate)
	e.mu.Unlock()
	if changed && f != nil {
		f(r)
	}
}

// setGCC records a new GCC rate; a fall of more than 5% means congestion,
// which voids the probe floor. It returns the callback to call (outside
// the lock) with the combined estimate.
func (e *Estimator) setGCC(rate int) (func(int), int, bool) {
	if rate == e.lastGCC {
		return nil, 0, false
	}
	if rate < e.lastGCC*95/100 {
		e.floor = 0
	}
	e.lastGCC = rate
	return e.onChange, e.combine(rate), true
}

// rrSpan is how much time a receiver report's loss figure covers, at
// most: the interval between reports (a second, for pion and browsers).
const rrSpan = time.Second

// OnReceiverReport takes the fraction of packets a receiver report
// received at now says were lost (0..1): a second congestion signal,
// independent of TWCC. A report that may cover time before the latest
// successful probe is older news than the probe, and ignored: a link
// that just recovered would otherwise void the probe's result with the
// losses of before (a paused video could not resume).
func (e *Estimator) OnReceiverReport(fractionLost float64, now time.Time) {
	e.mu.Lock()
	if !e.probeOK.IsZero() && now.Sub(e.probeOK) < rrSpan {
		e.mu.Unlock()
		return
	}
	e.rrLoss = fractionLost
	if fractionLost > 0.1 {
		e.floor = 0
	}
	e.mu.Unlock()
}

// StartProbe begins a probe at rate bits per second lasting d; the caller
// sends padding so the total reaches rate. It reports false while another
// probe is running or being evaluated. A probe whose evaluation is due is
// evaluated first, feedback or not: on a transport that sends nothing
// but probes (a paused video, no audio) no feedback comes after one, and
// it would block every later probe.
func (e *Estimator) StartProbe(rate int, d time.Duration, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.probe != nil && !now.Before(e.probe.evalAt) {
		e.evalProbe(now)
	}
	if e.probe != nil {
		return false
	}
	e.probe = &probe{start: now, end: now.Add(d), rate: rate, evalAt: now.Add(d + 300*time.Millisecond)}
	return true
}

// Probing reports whether a probe's sending window is open.
func (e *Estimator) Probing(now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.probe != nil && now.Before(e.probe.end)
}

// probeOverdue is how long after its evaluation was due a probe is
// evaluated without feedback (EvaluateProbe): feedback that arrives by
// then does it, with the probe's last packets counted.
const probeOverdue = 200 * time.Millisecond

// EvaluateProbe evaluates the running probe if its evaluation is overdue
// at now: on a transport that sends nothing but probes (a paused video,
// no audio), no feedback follows one to do it.
func (e *Estimator) EvaluateProbe(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.probe != nil && !now.Before(e.probe.evalAt.Add(probeOverdue)) {
		e.evalProbe(now)
	}
}

// LastProbe returns the outcome of the latest evaluated probe.
func (e *Estimator) LastProbe() ProbeResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastEval
}

func (pr *probe) account(sp *sentPacket, a *ack) {
	s := pr
	if !a.received {
		s.lost++
		return
	}
	s.got++
	s.bytes += int(sp.size)
	if s.firstArrive.IsZero() || a.arrival.Before(s.firstArrive) {
		s.firstArrive = a.arrival
	}
	if a.arrival.After(s.lastArrive) {
		s.lastArrive = a.arrival
	}
}

func (pr *probe) result(now time.Time) ProbeResult {
	s := pr
	res := ProbeResult{Rate: pr.rate, At: now}
	total := s.got + s.lost
	if total > 0 {
		res.Loss = float64(s.lost) / float64(total)
	}
	span := s.lastArrive.Sub(s.firstArrive)
	if minSpan := pr.end.Sub(pr.start) / 2; span < minSpan {
		span = minSpan
	}
	if s.got > 1 && span > 0 {
		res.Delivered = int(float64(s.bytes*8) / span.Seconds())
	}
	res.Success = s.got >= 10 && res.Loss < 0.05 && res.Delivered >= pr.rate*80/100
	return res
}

var _ cc.BandwidthEstimator = (*Estimator)(nil)
