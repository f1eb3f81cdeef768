package bwe

import (
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// A simulated path, in virtual time: a sender pacing 1,200-byte packets
// at the estimate, a bottleneck of some capacity with a drop-tail FIFO,
// propagation delay both ways, and a receiver sending TWCC feedback every
// fbEvery, marshalled and parsed back as a real RTCP packet.

const simPacketSize = 1200

type simPacket struct {
	seq    uint16
	arrive time.Duration // at the receiver, on the sender's time line
	lost   bool
}

type simFeedback struct {
	at time.Duration // when the sender gets it
	fb *rtcp.TransportLayerCC
}

type sim struct {
	t        *testing.T
	e        *Estimator
	base     time.Time
	now      time.Duration
	seq      uint16
	budget   float64
	capacity func(now time.Duration) float64 // bits/s
	prop     time.Duration
	maxQueue time.Duration
	loss     float64
	rng      *rand.Rand
	busy     time.Duration // when the bottleneck is done with what it holds
	fbEvery  time.Duration
	lastFB   time.Duration
	fbCount  uint8

	inflight []simPacket // sent, not yet reported
	feedback []simFeedback

	// What happened.
	estimates []int           // every 100 ms
	queue     []time.Duration // each delivered packet's queueing delay
	queueAt   []time.Duration // and when it was sent
	sent      int
	dropped   int
	trace     func(now time.Duration) bool // log the estimator's state every 100 ms when true
	noFB      func(now time.Duration) bool // feedback is lost when true
	idle      func(now time.Duration) bool // the sender sends nothing when true

	// A media sender instead of one pacing at the estimate: frames of
	// media/30 bits, 30 a second, each sent in one burst.
	media   int
	pending []time.Duration // intended departures not sent yet

	// CPU stalls, not the network's doing. The sender's: what it would
	// send in a stall leaves when the stall ends, recorded as leaving then
	// or, with stampIntended, when it was meant to (the estimator told
	// of a packet before it really left). The receiver's: what arrives in
	// a stall is read, stamped and reported only when the stall ends,
	// back to back.
	sendStalls, recvStalls []span
	stampIntended          bool
	readCost               time.Duration // the receiver's time per packet read
	recvFree               time.Duration // when it can read the next
}

// span is a time interval [from, to).
type span struct{ from, to time.Duration }

// within returns the span of spans (sorted) that holds t.
func within(spans []span, t time.Duration) (span, bool) {
	i := sort.Search(len(spans), func(i int) bool { return spans[i].to > t })
	if i < len(spans) && spans[i].from <= t {
		return spans[i], true
	}
	return span{}, false
}

// stalls makes a deterministic pattern of CPU stalls over [0, until):
// each lasts between minDur and maxDur, with minGap to maxGap between.
func stalls(seed int64, until, minDur, maxDur, minGap, maxGap time.Duration) []span {
	rng := rand.New(rand.NewSource(seed))
	between := func(a, b time.Duration) time.Duration { return a + time.Duration(rng.Int63n(int64(b-a)+1)) }
	var out []span
	for t := between(minGap, maxGap); t < until; {
		d := between(minDur, maxDur)
		out = append(out, span{t, t + d})
		t += d + between(minGap, maxGap)
	}
	return out
}

func newSim(t *testing.T, initial int, capacity func(time.Duration) float64) *sim {
	e, err := New(initial, 50_000, 20_000_000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return &sim{
		t: t, e: e,
		base:     time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		seq:      65000, // wraps early on
		capacity: capacity,
		prop:     20 * time.Millisecond,
		maxQueue: 300 * time.Millisecond,
		rng:      rand.New(rand.NewSource(1)),
		fbEvery:  50 * time.Millisecond,
	}
}

// run advances the simulation to until, in 1 ms steps.
func (s *sim) run(until time.Duration) {
	const step = time.Millisecond
	for s.now < until {
		s.now += step
		s.sendStep(step)
		if _, stalled := within(s.recvStalls, s.now); !stalled && s.now-s.lastFB >= s.fbEvery {
			s.lastFB = s.now
			s.report()
		}
		for len(s.feedback) > 0 && s.feedback[0].at <= s.now {
			s.e.OnFeedback(s.feedback[0].fb, s.base.Add(s.now))
			s.feedback = s.feedback[1:]
		}
		if s.now%(100*time.Millisecond) == 0 {
			s.estimates = append(s.estimates, s.e.GetTargetBitrate())
			if s.trace != nil && s.trace(s.now) {
				st := s.e.GetStats()
				s.t.Logf("%6.1f s est %8d delay %8d loss %8d acked %8d usage %-8v state %-8v trend %6.1f thr %5.1f lossfrac %.2f rtt %3.0f q %v",
					s.now.Seconds(), st["targetBitrate"], st["delayTargetBitrate"], st["lossTargetBitrate"], st["ackedBitrate"], st["usage"], st["state"],
					st["delayEstimate"], st["delayThreshold"], st["averageLoss"], st["rtt"], max(0, s.busy-s.now))
			}
		}
	}
}

// sendStep sends what is due in the step that ends at s.now: paced at
// the estimate, or the media's frames.
func (s *sim) sendStep(step time.Duration) {
	if s.media > 0 {
		frame := time.Second / 30
		if s.now%frame < step {
			n := (s.media/8/30 + simPacketSize - 1) / simPacketSize
			for range n {
				s.pending = append(s.pending, s.now)
			}
		}
	} else {
		rate := s.e.GetTargetBitrate()
		if s.idle != nil && s.idle(s.now) {
			rate, s.budget = 0, 0
		}
		s.budget += float64(rate) * step.Seconds() / 8
		for s.budget >= simPacketSize {
			s.budget -= simPacketSize
			s.pending = append(s.pending, s.now)
		}
	}
	if _, stalled := within(s.sendStalls, s.now); stalled {
		return
	}
	for _, at := range s.pending {
		s.send(at)
	}
	s.pending = s.pending[:0]
}

// send sends one packet now that was meant to leave at intended.
func (s *sim) send(intended time.Duration) {
	stamp := s.now
	if s.stampIntended {
		stamp = intended
	}
	s.e.OnSent(s.seq, simPacketSize, s.base.Add(stamp))
	p := simPacket{seq: s.seq}
	s.seq++
	s.sent++
	start := max(s.now, s.busy)
	switch {
	case s.loss > 0 && s.rng.Float64() < s.loss:
		p.lost = true
	case start-s.now > s.maxQueue:
		p.lost = true
		s.dropped++
	default:
		s.busy = start + time.Duration(float64(simPacketSize*8)/s.capacity(s.now)*float64(time.Second))
		p.arrive = s.busy + s.prop
		if st, ok := within(s.recvStalls, p.arrive); ok {
			p.arrive = st.to // read once the stall is over…
		}
		// …after what came before it, readCost each.
		p.arrive = max(p.arrive, s.recvFree)
		s.recvFree = p.arrive + s.readCost
		s.queue = append(s.queue, start-s.now)
		s.queueAt = append(s.queueAt, s.now)
	}
	s.inflight = append(s.inflight, p)
}

// report sends feedback for every packet up to the newest one arrived.
func (s *sim) report() {
	k := -1
	for i, p := range s.inflight {
		if !p.lost && p.arrive <= s.now {
			k = i
		}
	}
	if k < 0 {
		return
	}
	fb := buildTWCC(s.t, s.inflight[:k+1], s.fbCount)
	s.fbCount++
	s.inflight = s.inflight[k+1:]
	if s.noFB != nil && s.noFB(s.now) {
		return
	}
	s.feedback = append(s.feedback, simFeedback{at: s.now + s.prop, fb: fb})
}

// buildTWCC makes the transport-wide CC report for pkts (consecutive
// sequence numbers, at least one received), round-tripped through the
// wire format.
func buildTWCC(t testing.TB, pkts []simPacket, count uint8) *rtcp.TransportLayerCC {
	const tick = 250 * time.Microsecond
	recvClock := func(d time.Duration) time.Duration { return d + 1000*time.Second }
	var first time.Duration
	for _, p := range pkts {
		if !p.lost {
			first = recvClock(p.arrive)
			break
		}
	}
	ref := first / (64 * time.Millisecond)
	fb := &rtcp.TransportLayerCC{
		SenderSSRC:         1,
		MediaSSRC:          2,
		BaseSequenceNumber: pkts[0].seq,
		PacketStatusCount:  uint16(len(pkts)),
		ReferenceTime:      uint32(ref),
		FbPktCount:         count,
	}
	prev := int64(ref * 256)
	syms := make([]uint16, 0, len(pkts))
	for _, p := range pkts {
		if p.lost {
			syms = append(syms, rtcp.TypeTCCPacketNotReceived)
			continue
		}
		ticks := int64(recvClock(p.arrive) / tick)
		d := ticks - prev
		prev = ticks
		typ := uint16(rtcp.TypeTCCPacketReceivedSmallDelta)
		if d < 0 || d > 255 {
			typ = rtcp.TypeTCCPacketReceivedLargeDelta
		}
		syms = append(syms, typ)
		fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: typ, Delta: d * 250})
	}
	for i := 0; i < len(syms); i += 7 {
		fb.PacketChunks = append(fb.PacketChunks, &rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: syms[i:min(i+7, len(syms))]})
	}
	size := fb.MarshalSize()
	raw := 20 + 2*len(fb.PacketChunks)
	for _, d := range fb.RecvDeltas {
		raw += 1 + int(d.Type-rtcp.TypeTCCPacketReceivedSmallDelta)
	}
	fb.Header = rtcp.Header{Padding: size != raw, Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback, Length: uint16(size/4 - 1)}
	buf, err := fb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pkts2, err := rtcp.Unmarshal(buf)
	if err != nil {
		t.Fatalf("unmarshal own feedback: %v", err)
	}
	back, ok := pkts2[0].(*rtcp.TransportLayerCC)
	if !ok || back.BaseSequenceNumber != fb.BaseSequenceNumber || back.PacketStatusCount != fb.PacketStatusCount || len(back.RecvDeltas) != len(fb.RecvDeltas) {
		t.Fatalf("feedback did not round-trip: %v", pkts2[0])
	}
	return back
}

// at returns the estimate sampled at d.
func (s *sim) at(d time.Duration) int { return s.estimates[int(d/(100*time.Millisecond))-1] }

// firstAt returns when the estimate first met ok, after from.
func (s *sim) firstAt(from time.Duration, ok func(int) bool) time.Duration {
	for i := int(from / (100 * time.Millisecond)); i < len(s.estimates); i++ {
		if ok(s.estimates[i]) {
			return time.Duration(i+1) * 100 * time.Millisecond
		}
	}
	return -1
}

// queueQuantile is the q-quantile of the queueing delay of packets sent
// in [from, to).
func (s *sim) queueQuantile(from, to time.Duration, q float64) time.Duration {
	var ds []time.Duration
	for i, at := range s.queueAt {
		if at >= from && at < to {
			ds = append(ds, s.queue[i])
		}
	}
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[int(q*float64(len(ds)-1))]
}

func constant(bps float64) func(time.Duration) float64 {
	return func(time.Duration) float64 { return bps }
}

func TestGCCClimbsToCapacity(t *testing.T) {
	const c = 2_500_000
	s := newSim(t, 1_000_000, constant(c))
	s.run(30 * time.Second)
	reached := s.firstAt(0, func(r int) bool { return r >= 0.7*c })
	t.Logf("≥ 0.7·C at %v; estimate at 10/15/20/30 s: %d %d %d %d; queue p50/p95/max after 10 s: %v %v %v; dropped %d of %d",
		reached, s.at(10*time.Second), s.at(15*time.Second), s.at(20*time.Second), s.at(30*time.Second),
		s.queueQuantile(10*time.Second, 30*time.Second, 0.5), s.queueQuantile(10*time.Second, 30*time.Second, 0.95),
		s.queueQuantile(10*time.Second, 30*time.Second, 1), s.dropped, s.sent)
	if reached < 0 || reached > 15*time.Second {
		t.Fatalf("estimate reached 0.7·C at %v, want within 15 s", reached)
	}
	above := 0
	sum := 0
	tail := s.estimates[100:]
	for _, r := range tail {
		sum += r
		if r > 1.2*c {
			above++
		}
	}
	if mean := sum / len(tail); mean > 1.1*c || mean < 0.7*c {
		t.Fatalf("mean estimate over 10–30 s %d, want 0.7–1.1·C", mean)
	}
	if frac := float64(above) / float64(len(tail)); frac > 0.1 {
		t.Fatalf("estimate above 1.2·C %.0f%% of the time over 10–30 s", 100*frac)
	}
	if q := s.queueQuantile(10*time.Second, 30*time.Second, 0.95); q > 150*time.Millisecond {
		t.Fatalf("queueing delay p95 %v", q)
	}
}

func TestGCCFollowsCapacityDrop(t *testing.T) {
	const drop = 15 * time.Second
	s := newSim(t, 3_000_000, func(now time.Duration) float64 {
		if now < drop {
			return 5_000_000
		}
		return 400_000
	})
	if testing.Verbose() {
		s.trace = func(now time.Duration) bool { return now > drop-time.Second && now < drop+4*time.Second }
	}
	s.run(drop + 10*time.Second)
	down := s.firstAt(drop, func(r int) bool { return r <= 500_000 })
	t.Logf("estimate before the drop %d; ≤ 500k %v after it; at +2/+5/+10 s: %d %d %d; queue p95 over +5..+10 s %v",
		s.at(drop), down-drop, s.at(drop+2*time.Second), s.at(drop+5*time.Second), s.at(drop+10*time.Second),
		s.queueQuantile(drop+5*time.Second, drop+10*time.Second, 0.95))
	if s.at(drop) < 3_500_000 {
		t.Fatalf("estimate before the drop %d, want ≥ 3.5M on a 5M link", s.at(drop))
	}
	if down < 0 || down-drop > 2*time.Second {
		t.Fatalf("estimate ≤ 500k %v after the drop, want within 2 s", down-drop)
	}
	for d := drop + 5*time.Second; d <= drop+10*time.Second; d += time.Second {
		if r := s.at(d); r > 600_000 {
			t.Fatalf("estimate %d at %v after the drop", r, d-drop)
		}
	}
}

func TestGCCLoss(t *testing.T) {
	const initial = 4_000_000
	for _, tc := range []struct {
		loss float64
		ok   func(int) bool
		want string
	}{
		{0.20, func(r int) bool { return r < initial/2 }, "< half the start"},
		{0.01, func(r int) bool { return r >= initial }, "≥ the start"},
	} {
		s := newSim(t, initial, constant(100_000_000))
		s.loss = tc.loss
		s.run(10 * time.Second)
		got := s.at(10 * time.Second)
		t.Logf("%.0f%% loss: estimate at 2/5/10 s %d %d %d", 100*tc.loss, s.at(2*time.Second), s.at(5*time.Second), got)
		if !tc.ok(got) {
			t.Fatalf("%.0f%% loss: estimate %d after 10 s, want %s", 100*tc.loss, got, tc.want)
		}
	}
}

// The estimate reacts to feedback only, but evolves with the time between
// feedbacks: two reports a second apart raise it more than two 50 ms apart.
func TestGCCIncreaseFollowsTime(t *testing.T) {
	grow := func(gap time.Duration) int {
		s := newSim(t, 1_000_000, constant(100_000_000))
		s.run(time.Second)
		before := s.e.GetTargetBitrate()
		s.fbEvery = gap
		s.lastFB = s.now
		s.run(s.now + 2*gap + 50*time.Millisecond)
		return s.e.GetTargetBitrate() - before
	}
	short, long := grow(50*time.Millisecond), grow(time.Second)
	if long <= 2*short {
		t.Fatalf("increase over 2 s between feedbacks %d, over 100 ms %d", long, short)
	}
}

// Feedback that stops while packets keep going out is congestion too:
// the estimate falls every second until feedback returns. A sender that
// merely paused is not cut.
func TestGCCFallsWhenFeedbackStops(t *testing.T) {
	s := newSim(t, 2_000_000, constant(100_000_000))
	s.noFB = func(now time.Duration) bool { return now >= 5*time.Second && now < 8*time.Second }
	s.run(5 * time.Second)
	before := s.e.GetTargetBitrate()
	s.run(8 * time.Second)
	during := s.e.GetTargetBitrate()
	s.run(12 * time.Second)
	after := s.e.GetTargetBitrate()
	t.Logf("estimate %d before feedback stops, %d 3 s later, %d 4 s after it returns", before, during, after)
	if during > before*6/10 {
		t.Fatalf("estimate %d after 3 s without feedback, from %d", during, before)
	}
	if after <= during {
		t.Fatalf("estimate %d 4 s after feedback returned, %d before", after, during)
	}

	p := newSim(t, 2_000_000, constant(100_000_000))
	p.idle = func(now time.Duration) bool { return now >= 5*time.Second && now < 10*time.Second }
	p.run(5 * time.Second)
	before = p.e.GetTargetBitrate()
	p.run(10*time.Second + 500*time.Millisecond)
	if got := p.e.GetTargetBitrate(); got < before {
		t.Fatalf("estimate %d after a 5 s pause in sending, %d before", got, before)
	}
}

func TestOnFeedbackAcrossWrap(t *testing.T) {
	e, err := New(1_000_000, 50_000, 20_000_000)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var pkts []simPacket
	seq := uint16(65436)
	for i := 0; i < 200; i++ {
		e.OnSent(seq, 1000, base.Add(time.Duration(i)*time.Millisecond))
		pkts = append(pkts, simPacket{seq: seq, arrive: time.Duration(i)*time.Millisecond + 30*time.Millisecond, lost: i == 150})
		seq++
	}
	e.OnFeedback(buildTWCC(t, pkts[:120], 0), base.Add(150*time.Millisecond))
	e.OnFeedback(buildTWCC(t, pkts[120:], 1), base.Add(250*time.Millisecond))
	n, lost := 0, 0
	for i := range e.sent {
		if sp := e.sent[i]; sp.ok && sp.reported {
			n++
			if !sp.acked {
				lost++
			}
		}
	}
	if n != 200 || lost != 1 {
		t.Fatalf("%d packets matched (%d lost), want 200 (1)", n, lost)
	}
	// 199 kB in 200 ms: 8 Mbit/s.
	if r := e.acked.rate(); r < 7_500_000 || r > 8_500_000 {
		t.Fatalf("acked rate %.0f", r)
	}
	if rtt := e.rtt; rtt < 30*time.Millisecond || rtt > 60*time.Millisecond {
		t.Fatalf("rtt %v", rtt)
	}
}

// A receiver clock that starts at zero (pion's does), with a first
// arrival just before the reference time.
func TestFeedbackNearClockZero(t *testing.T) {
	e, _ := New(1_000_000, 50_000, 20_000_000)
	base := time.Now()
	fb := &rtcp.TransportLayerCC{BaseSequenceNumber: 0, PacketStatusCount: 40, ReferenceTime: 0}
	syms := make([]uint16, 0, 40)
	for i := 0; i < 40; i++ {
		e.OnSent(uint16(i), 1200, base.Add(time.Duration(i)*5*time.Millisecond))
		d := int64(5000)
		typ := uint16(rtcp.TypeTCCPacketReceivedSmallDelta)
		if i == 0 {
			d, typ = -30000, rtcp.TypeTCCPacketReceivedLargeDelta
		}
		syms = append(syms, typ)
		fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: typ, Delta: d})
	}
	for i := 0; i < len(syms); i += 7 {
		fb.PacketChunks = append(fb.PacketChunks, &rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: syms[i:min(i+7, len(syms))]})
	}
	e.OnFeedback(fb, base.Add(300*time.Millisecond))
	if r := e.acked.rate(); r < 1_800_000 || r > 2_100_000 {
		t.Fatalf("acked rate %.0f, want about 1.9M (1,200 bytes every 5 ms)", r)
	}
}

func TestOnSentAndOnFeedbackDoNotAllocate(t *testing.T) {
	e, _ := New(1_000_000, 50_000, 20_000_000)
	base := time.Now()
	var pkts []simPacket
	for i := 0; i < 100; i++ {
		pkts = append(pkts, simPacket{seq: uint16(i), arrive: time.Duration(i) * time.Millisecond})
	}
	fb := buildTWCC(t, pkts, 0)
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		e.OnSent(uint16(i), 1200, base.Add(time.Duration(i)*time.Millisecond))
		i++
	}); n != 0 {
		t.Fatalf("OnSent: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { e.OnFeedback(fb, base.Add(time.Second)) }); n != 0 {
		t.Fatalf("OnFeedback: %v allocations", n)
	}
}

func BenchmarkOnSent(b *testing.B) {
	e, _ := New(1_000_000, 50_000, 20_000_000)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.OnSent(uint16(i), 1200, now)
	}
}

func BenchmarkOnFeedback(b *testing.B) {
	e, _ := New(1_000_000, 50_000, 20_000_000)
	base := time.Now()
	var pkts []simPacket
	for i := 0; i < 100; i++ {
		e.OnSent(uint16(i), 1200, base.Add(time.Duration(i)*time.Millisecond))
		pkts = append(pkts, simPacket{seq: uint16(i), arrive: time.Duration(i) * time.Millisecond})
	}
	fb := buildTWCC(b, pkts, 0)
	b.ReportAllocs()
	for b.Loop() {
		e.OnFeedback(fb, base.Add(time.Second))
	}
}

// BenchmarkStreamWrite is the whole per-packet cost on the forwarding
// path: the writer AddStream returns, around a writer that does nothing.
func BenchmarkStreamWrite(b *testing.B) {
	e, _ := New(1_000_000, 50_000, 20_000_000)
	info := &interceptor.StreamInfo{SSRC: 1, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: transportCCURI, ID: 3}}}
	w := e.AddStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		return h.MarshalSize() + len(p), nil
	}))
	h := &rtp.Header{Version: 2, SSRC: 1}
	if err := h.SetExtension(3, []byte{0, 0}); err != nil {
		b.Fatal(err)
	}
	ext := h.GetExtension(3)
	payload := make([]byte, 1100)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ext[0], ext[1] = byte(i>>8), byte(i)
		if _, err := w.Write(h, payload, nil); err != nil {
			b.Fatal(err)
		}
	}
	if sp := e.sent[5]; !sp.ok || int(sp.size) != h.MarshalSize()+1100 {
		b.Fatalf("packet not recorded: %+v", sp)
	}
}

// CPU stalls are not congestion. On a free link (100 Mbit/s, no loss, no
// queue of its own), a 2 Mbit/s video sent in frame bursts while the
// sender's or the receiver's CPU stalls for 10–50 ms at a time, about a
// fifth of the time: the delay of some packets jumps by tens of
// milliseconds, but no queue stands, so the estimate stays at or above
// the stream's rate throughout. With stalls of 100-400 ms (a machine
// loaded several times over; an in-process test's links, SFU and
// subscribers all stall together) it stays above half of it.
func TestCPUStallsAreNotCongestion(t *testing.T) {
	const media = 2_000_000
	const until = 40 * time.Second
	pattern := func(seed int64) []span {
		return stalls(seed, until, 10*time.Millisecond, 50*time.Millisecond, 30*time.Millisecond, 250*time.Millisecond)
	}
	heavy := func(seed int64) []span {
		return stalls(seed, until, 100*time.Millisecond, 400*time.Millisecond, 100*time.Millisecond, 500*time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		set  func(s *sim)
		// What the estimate must stay at or above: the stream's rate,
		// or for stalls of 100-400 ms (a machine loaded several times
		// over) half of it, under which a one-encoding video may be
		// paused (sfu's pauseFar).
		floor int
	}{
		{"receiver", func(s *sim) { s.recvStalls = pattern(1) }, media},
		{"sender", func(s *sim) { s.sendStalls = pattern(2) }, media},
		// The estimator told of a departure before the packet really
		// left: each stall is pure extra delay on the packets in it.
		{"sender-stamped-early", func(s *sim) { s.sendStalls, s.stampIntended = pattern(3), true }, media},
		{"both", func(s *sim) { s.sendStalls, s.recvStalls, s.stampIntended = pattern(4), pattern(5), true }, media},
		{"receiver-slow-reads", func(s *sim) { s.recvStalls, s.readCost = pattern(7), 500*time.Microsecond }, media},
		{"sender-early-slow-reads", func(s *sim) { s.sendStalls, s.stampIntended, s.readCost = pattern(8), true, 1500*time.Microsecond }, media},
		{"receiver-r2", func(s *sim) { s.recvStalls, s.readCost = pattern(9), 2*time.Millisecond }, media},
		{"receiver-r3", func(s *sim) { s.recvStalls, s.readCost = pattern(10), 3*time.Millisecond }, media},
		{"receiver-r3-long", func(s *sim) {
			s.recvStalls, s.readCost = stalls(11, until, 10*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond, 1000*time.Millisecond), 3*time.Millisecond
		}, media},
		{"receiver-dense", func(s *sim) {
			s.recvStalls, s.readCost = stalls(12, until, 40*time.Millisecond, 50*time.Millisecond, 15*time.Millisecond, 40*time.Millisecond), time.Millisecond
		}, media},
		{"sender-early-dense", func(s *sim) {
			s.sendStalls, s.stampIntended = stalls(13, until, 40*time.Millisecond, 50*time.Millisecond, 1*time.Millisecond, 20*time.Millisecond), true
		}, media},
		{"receiver-short-gaps", func(s *sim) {
			s.recvStalls = stalls(6, until, 10*time.Millisecond, 50*time.Millisecond, 5*time.Millisecond, 60*time.Millisecond)
		}, media},
		{"heavy-receiver", func(s *sim) { s.recvStalls = heavy(21) }, media / 2},
		{"heavy-both", func(s *sim) { s.sendStalls, s.recvStalls, s.stampIntended = heavy(22), heavy(23), true }, media / 2},
		{"heavy-receiver-slow-reads", func(s *sim) {
			s.recvStalls, s.readCost = stalls(24, until, 50*time.Millisecond, 150*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond), 2*time.Millisecond
		}, media / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, media, constant(100_000_000))
			s.media = media
			tc.set(s)
			overuse := 0
			maxTrend := 0.0
			s.trace = func(time.Duration) bool {
				st := s.e.GetStats()
				if st["usage"] == "overuse" {
					overuse++
				}
				maxTrend = max(maxTrend, st["delayEstimate"].(float64))
				return false
			}
			s.run(until)
			low, lowAt := s.estimates[0], time.Duration(0)
			for i, r := range s.estimates {
				if r < low {
					low, lowAt = r, time.Duration(i+1)*100*time.Millisecond
				}
			}
			var stalled time.Duration
			for _, sp := range append(append([]span(nil), s.sendStalls...), s.recvStalls...) {
				stalled += sp.to - sp.from
			}
			t.Logf("stalled %v of %v; estimate lowest %d (at %v), at 10/20/40 s %d %d %d; overuse in %d of %d samples, highest trend %.1f",
				stalled, until, low, lowAt, s.at(10*time.Second), s.at(20*time.Second), s.at(until), overuse, len(s.estimates), maxTrend)
			if low < tc.floor {
				t.Fatalf("estimate fell to %d at %v, below %d (the stream is %d), on a free link", low, lowAt, tc.floor, media)
			}
		})
	}
}
