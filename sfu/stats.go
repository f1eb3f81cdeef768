package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// Stats counts what a Worker's media did, for metrics. The counters are
// plain atomics bumped where the event happens (RTCP feedback, a consumer
// closing), never a lock on the per-packet path; live values are gathered
// only when Snapshot is called.
type Stats struct {
	nacksIn  atomic.Uint64 // NACK messages from subscribers (we retransmit)
	nacksOut atomic.Uint64 // NACK messages to publishers (we ask for a resend)
	plisIn   atomic.Uint64 // PLI and FIR from subscribers
	plisOut  atomic.Uint64 // PLI and FIR sent to publishers, after coalescing
	// layerSwitches counts video consumers starting another simulcast
	// layer, or being suspended for want of bandwidth.
	layerSwitches atomic.Uint64

	// Packets and bytes of consumers that have closed, so the totals keep
	// growing when subscribers leave.
	retiredPackets atomic.Uint64
	retiredBytes   atomic.Uint64

	// forward is how long packets took from being read to their last
	// copy handed to the kernel (forwardAt).
	forward forwardHist

	// last holds the totals last reported: a consumer counted as live by
	// one snapshot and retired just after must not make the total dip.
	mu        sync.Mutex
	lastPkts  uint64
	lastBytes uint64
}

func newStats() *Stats { return &Stats{} }

// retireConsumer keeps a closing consumer's counts in its worker's totals.
func retireConsumer(c *Consumer) {
	st := workerStats(c)
	if st == nil {
		return
	}
	pk, by := c.Stats()
	st.retiredPackets.Add(pk)
	st.retiredBytes.Add(by)
}

// countLayerSwitch notes that a consumer changed layers.
func countLayerSwitch(c *Consumer) {
	if st := workerStats(c); st != nil {
		st.layerSwitches.Add(1)
	}
}

func workerStats(c *Consumer) *Stats {
	t := c.transport
	if t == nil || t.router == nil || t.router.w == nil {
		return nil
	}
	return t.router.w.stats
}

// ForwardBuckets are the upper bounds, in seconds, of the forwarding
// time histogram: from a published packet being read to its last copy
// handed to the kernel. A fan-out to N subscribers costs N copies of a
// few microseconds, and a packet read while the previous one fans out
// waits for it: at 200 subscribers, milliseconds.
var ForwardBuckets = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}

// forwardHist counts forwarding times in ForwardBuckets (and one bucket
// above them), lock-free: one atomic add per bucket count and one for the
// sum, per packet, not per copy.
type forwardHist struct {
	counts [len(ForwardBuckets) + 1]atomic.Uint64
	sumNs  atomic.Uint64
}

// forwardBounds are ForwardBuckets as durations, for the per-packet
// comparison.
var forwardBounds = func() (b [len(ForwardBuckets)]time.Duration) {
	for i, s := range ForwardBuckets {
		b[i] = time.Duration(s * float64(time.Second))
	}
	return b
}()

func (h *forwardHist) observe(d time.Duration) {
	i := 0
	for i < len(forwardBounds) && d > forwardBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

// ForwardTimes is the forwarding time histogram at one instant.
type ForwardTimes struct {
	// Counts[i] packets took at most ForwardBuckets[i] (not cumulative);
	// the last entry counts those above every bucket.
	Counts [len(ForwardBuckets) + 1]uint64
	Sum    time.Duration
}

// Count is the number of packets observed.
func (f ForwardTimes) Count() uint64 {
	var n uint64
	for _, c := range f.Counts {
		n += c
	}
	return n
}

func (h *forwardHist) snapshot() ForwardTimes {
	var f ForwardTimes
	for i := range h.counts {
		f.Counts[i] = h.counts[i].Load()
	}
	f.Sum = time.Duration(h.sumNs.Load())
	return f
}

// Snapshot is a worker's state and counters at one instant.
type Snapshot struct {
	Routers    int
	Transports map[Direction]int
	// OwnSRTP counts the receive transports whose RTP takes the SFU's
	// own SRTP path rather than pion's (srtpout.go).
	OwnSRTP int
	// RTCPIntake counts the subscribers' compound RTCP packets the SFU's
	// own intake served (srtcpin.go) rather than pion.
	RTCPIntake uint64
	Producers  map[Kind]int
	Consumers  map[Kind]int

	// ForwardedPackets and ForwardedBytes are what every consumer has
	// forwarded since the worker started (RTP payload plus header, before
	// SRTP), including consumers that have closed.
	ForwardedPackets, ForwardedBytes uint64
	// NACKsIn are NACK messages received from subscribers; NACKsOut those
	// sent to publishers.
	NACKsIn, NACKsOut uint64
	// PLIsIn are keyframe requests (PLI or FIR) from subscribers; PLIsOut
	// those sent to publishers after coalescing.
	PLIsIn, PLIsOut uint64
	// LayerSwitches counts video consumers changing simulcast layer
	// (including suspension and resumption).
	LayerSwitches uint64
	// Estimates are the bandwidth estimates, in bits per second, of every
	// connected subscriber transport that has an estimator.
	Estimates []int
	// Forward is how long published packets that had somewhere to go took
	// from being read to their last copy sent.
	Forward ForwardTimes
}

// Snapshot walks the worker's routers and reads every live count. It takes
// each object's own lock briefly and is meant for a metrics scrape, not for
// the media path.
func (w *Worker) Snapshot() Snapshot {
	s := Snapshot{
		Transports: map[Direction]int{},
		Producers:  map[Kind]int{},
		Consumers:  map[Kind]int{},
	}
	w.mu.Lock()
	rs := make([]*Router, 0, len(w.routers))
	for _, r := range w.routers {
		rs = append(rs, r)
	}
	w.mu.Unlock()
	s.Routers = len(rs)
	if w.intake != nil {
		s.RTCPIntake = w.intake.taken.Load()
	}
	var pkts, bytes uint64
	for _, r := range rs {
		r.mu.Lock()
		ts := make([]*Transport, 0, len(r.transports))
		for _, t := range r.transports {
			ts = append(ts, t)
		}
		ps := make([]*Producer, 0, len(r.producers))
		for _, p := range r.producers {
			ps = append(ps, p)
		}
		r.mu.Unlock()
		for _, t := range ts {
			s.Transports[t.opts.Direction]++
			if rt, ok := t.role.(*RecvTransport); ok && rt.OwnSRTP() {
				s.OwnSRTP++
			}
			if t.bwe != nil && t.connected.Load() {
				s.Estimates = append(s.Estimates, t.bwe.GetTargetBitrate())
			}
		}
		for _, p := range ps {
			s.Producers[p.kind]++
			for _, c := range *p.consumers.Load() {
				s.Consumers[p.kind]++
				pk, by := c.Stats()
				pkts += pk
				bytes += by
			}
		}
	}
	st := w.stats
	if st == nil {
		s.ForwardedPackets, s.ForwardedBytes = pkts, bytes
		return s
	}
	pkts += st.retiredPackets.Load()
	bytes += st.retiredBytes.Load()
	st.mu.Lock()
	st.lastPkts = max(st.lastPkts, pkts)
	st.lastBytes = max(st.lastBytes, bytes)
	s.ForwardedPackets, s.ForwardedBytes = st.lastPkts, st.lastBytes
	st.mu.Unlock()
	s.NACKsIn, s.NACKsOut = st.nacksIn.Load(), st.nacksOut.Load()
	s.PLIsIn, s.PLIsOut = st.plisIn.Load(), st.plisOut.Load()
	s.LayerSwitches = st.layerSwitches.Load()
	s.Forward = st.forward.snapshot()
	return s
}

// NewInterceptor makes Stats a pion interceptor factory. Registered first,
// its RTCP reader and writer sit next to the wire, so it sees every
// feedback message a peer connection sends or receives, whichever
// interceptor or caller produced it — except subscribers' feedback that
// the SFU's own intake takes, which Transport.onFeedback counts.
func (s *Stats) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &statsInterceptor{s: s}, nil
}

type statsInterceptor struct {
	interceptor.NoOp
	s *Stats
}

func (i *statsInterceptor) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err != nil {
			return n, a, err
		}
		if a == nil {
			a = interceptor.Attributes{}
		}
		pkts, perr := a.GetRTCPPackets(b[:n])
		if perr == nil {
			i.s.count(pkts, &i.s.nacksIn, &i.s.plisIn)
		}
		return n, a, err
	})
}

func (i *statsInterceptor) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		i.s.count(pkts, &i.s.nacksOut, &i.s.plisOut)
		return w.Write(pkts, a)
	})
}

func (s *Stats) count(pkts []rtcp.Packet, nacks, plis *atomic.Uint64) {
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.TransportLayerNack:
			nacks.Add(1)
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			plis.Add(1)
		}
	}
}
