// Package bwe estimates one subscriber's available bandwidth. It wraps
// pion's GCC (delay-gradient and loss based, fed by transport-wide
// congestion control feedback) and adds what GCC alone lacks for a fast
// climb: probe clusters. A probe sends padding at a higher rate for a
// short window; if the feedback shows it was delivered at that rate
// without loss, the estimate jumps to the delivered rate instead of
// creeping up at GCC's 8% per second. Any congestion signal GCC raises
// (its estimate falling) or heavy receiver-report loss drops that floor
// again.
package bwe

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

const transportCCURI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

// Estimator implements cc.BandwidthEstimator.
type Estimator struct {
	gcc *gcc.SendSideBWE

	mu       sync.Mutex
	sent     [4096]sentPacket // by TWCC sequence number mod 4096
	floor    int              // from the last successful probe
	lastGCC  int
	rrLoss   float64 // fraction lost in the latest receiver report
	probe    *probe
	lastEval ProbeResult
	onChange func(int)
}

type sentPacket struct {
	seq  uint16
	size int
	at   time.Time
	ok   bool
}

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

// New returns an estimator starting at initial bits per second.
func New(initial, minRate, maxRate int) (*Estimator, error) {
	g, err := gcc.NewSendSideBWE(
		gcc.SendSideBWEInitialBitrate(initial),
		gcc.SendSideBWEMinBitrate(minRate),
		gcc.SendSideBWEMaxBitrate(maxRate),
		// Pacing is left to the SFU: pion's pacer would cap probes at
		// 1.5 times GCC's own estimate, defeating them.
		gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
	)
	if err != nil {
		return nil, err
	}
	e := &Estimator{gcc: g, lastGCC: initial}
	g.OnTargetBitrateChange(e.gccChanged)
	return e, nil
}

// AddStream implements cc.BandwidthEstimator: it records each packet's
// TWCC sequence number, size and send time.
func (e *Estimator) AddStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	var id uint8
	for _, x := range info.RTPHeaderExtensions {
		if x.URI == transportCCURI {
			id = uint8(x.ID)
		}
	}
	inner := e.gcc.AddStream(info, writer)
	if info.SSRCRetransmission != 0 {
		// Retransmissions on the repair stream go through the same chain
		// (their sender writes them to the media stream's writer), so the
		// pacer must know that SSRC too; they are stamped and counted
		// like any packet, as the congestion controller wants.
		rtx := *info
		rtx.SSRC = info.SSRCRetransmission
		e.gcc.AddStream(&rtx, writer)
	}
	// GCC makes an attributes map for every packet that comes without
	// one (pion's track writer passes nil) just to note the TWCC header
	// id in it. One map per stream does: a stream's packets are written
	// one at a time (its consumer's lock), and nothing keeps the map.
	attrs := interceptor.Attributes{}
	if id == 0 {
		return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
			if a == nil {
				a = attrs
			}
			return inner.Write(h, payload, a)
		})
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if a == nil {
			a = attrs
		}
		n, err := inner.Write(h, payload, a)
		if err == nil {
			if b := h.GetExtension(id); len(b) >= 2 {
				seq := uint16(b[0])<<8 | uint16(b[1])
				e.mu.Lock()
				e.sent[seq%4096] = sentPacket{seq: seq, size: n, at: time.Now(), ok: true}
				e.mu.Unlock()
			}
		}
		return n, err
	})
}

// WriteRTCP implements cc.BandwidthEstimator.
func (e *Estimator) WriteRTCP(pkts []rtcp.Packet, a interceptor.Attributes) error {
	err := e.gcc.WriteRTCP(pkts, a)
	for _, p := range pkts {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			e.onFeedback(fb, time.Now())
		}
	}
	return err
}

// GetTargetBitrate implements cc.BandwidthEstimator: GCC's estimate, or
// the probe floor when that is higher, reduced by receiver-report loss.
func (e *Estimator) GetTargetBitrate() int {
	g := e.gcc.GetTargetBitrate()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.combine(g)
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

// OnTargetBitrateChange implements cc.BandwidthEstimator.
func (e *Estimator) OnTargetBitrateChange(f func(int)) {
	e.mu.Lock()
	e.onChange = f
	e.mu.Unlock()
}

// GetStats implements cc.BandwidthEstimator.
func (e *Estimator) GetStats() map[string]any {
	st := e.gcc.GetStats()
	e.mu.Lock()
	st["probeFloor"] = e.floor
	st["receiverReportLoss"] = e.rrLoss
	e.mu.Unlock()
	return st
}

// Close implements cc.BandwidthEstimator.
func (e *Estimator) Close() error { return e.gcc.Close() }

// gccChanged sees every GCC update; a fall means congestion, which voids
// the probe floor.
func (e *Estimator) gccChanged(rate int) {
	e.mu.Lock()
	if rate < e.lastGCC*95/100 {
		e.floor = 0
	}
	e.lastGCC = rate
	f := e.onChange
	r := e.combine(rate)
	e.mu.Unlock()
	if f != nil {
		f(r)
	}
}

// OnReceiverReport takes the fraction of packets a receiver report says
// were lost (0..1): a second congestion signal, independent of TWCC.
func (e *Estimator) OnReceiverReport(fractionLost float64) {
	e.mu.Lock()
	e.rrLoss = fractionLost
	if fractionLost > 0.1 {
		e.floor = 0
	}
	e.mu.Unlock()
}

// StartProbe begins a probe at rate bits per second lasting d; the caller
// sends padding so the total reaches rate. It reports false while another
// probe is running or being evaluated.
func (e *Estimator) StartProbe(rate int, d time.Duration, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
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

// LastProbe returns the outcome of the latest evaluated probe.
func (e *Estimator) LastProbe() ProbeResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastEval
}

// onFeedback matches a TWCC report to sent packets and, once a probe's
// window is covered, evaluates it.
func (e *Estimator) onFeedback(fb *rtcp.TransportLayerCC, now time.Time) {
	acks := parseFeedback(fb)
	e.mu.Lock()
	defer e.mu.Unlock()
	pr := e.probe
	if pr == nil {
		return
	}
	for i := range acks {
		sp := e.sent[acks[i].seq%4096]
		if !sp.ok || sp.seq != acks[i].seq {
			continue
		}
		if sp.at.Before(pr.start) || sp.at.After(pr.end) {
			continue
		}
		pr.account(sp, acks[i])
	}
	if now.Before(pr.evalAt) {
		return
	}
	res := pr.result(now)
	e.lastEval = res
	e.probe = nil
	if res.Success && res.Delivered*95/100 > e.floor {
		e.floor = res.Delivered * 95 / 100
	}
}

func (pr *probe) account(sp sentPacket, a ack) {
	s := pr
	if !a.received {
		s.lost++
		return
	}
	s.got++
	s.bytes += sp.size
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
