package sfu

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs/vp8"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// capturedPacket is what a subscriber would receive, with the descriptor
// fields that matter for decoding.
type capturedPacket struct {
	seq    uint16
	ts     uint32
	marker bool
	d      vp8.Descriptor
}

// recordingWriter keeps what a consumer sends.
type recordingWriter struct{ pkts []capturedPacket }

func (w *recordingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	sp := capturedPacket{seq: h.SequenceNumber, ts: h.Timestamp, marker: h.Marker}
	if err := vp8.Parse(payload, &sp.d); err != nil {
		return 0, err
	}
	w.pkts = append(w.pkts, sp)
	return len(payload) + 12, nil
}

func (w *recordingWriter) Write(b []byte) (int, error) { return len(b), nil }

// l1t3 publishes synthetic VP8 frames on one layer of a producer, in the
// L1T3 pattern TID 0,2,1,2 with 15-bit picture ids, as libwebrtc does.
type l1t3 struct {
	p     *Producer
	idx   int
	seq   uint16
	ts    uint32
	pic   uint16
	tl0   uint8
	frame int
	// sync decides the layer-sync bit of a TID 1 or 2 frame.
	sync func(frame int) bool
	// shared keeps every payload handed to the producer, to check that no
	// consumer wrote into them.
	shared [][]byte
	copies [][]byte
}

var l1t3Pattern = [4]uint8{0, 2, 1, 2}

func (g *l1t3) send(key bool) {
	tid := l1t3Pattern[g.frame%4]
	if key {
		tid = 0
	}
	if tid == 0 {
		g.tl0++
	}
	d := vp8.Descriptor{HasPictureID: true, LongPictureID: true, PictureID: g.pic & 0x7fff,
		HasTL0PICIDX: true, TL0PICIDX: g.tl0, HasTID: true, TID: tid,
		LayerSync: tid > 0 && g.sync != nil && g.sync(g.frame)}
	g.ts += 3000
	for i := 0; i < 3; i++ {
		d.Start = i == 0
		b := vp8.Append(nil, &d)
		if i == 0 {
			if key {
				b = append(b, 0x00, 0, 0, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00)
			} else {
				b = append(b, 0x01, 0, 0)
			}
		}
		b = append(b, bytes.Repeat([]byte{byte(i)}, 100)...)
		g.shared = append(g.shared, b)
		g.copies = append(g.copies, append([]byte(nil), b...))
		g.p.forward(g.idx, &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: g.seq, Timestamp: g.ts, Marker: i == 2}, Payload: b})
		g.seq++
	}
	g.pic++
	g.frame++
}

func (g *l1t3) run(t *testing.T, frames int) {
	t.Helper()
	for i := 0; i < frames; i++ {
		g.send(false)
	}
}

func (g *l1t3) checkShared(t *testing.T) {
	t.Helper()
	for i := range g.shared {
		if !bytes.Equal(g.shared[i], g.copies[i]) {
			t.Fatalf("packet %d: a consumer wrote into the producer's payload", i)
		}
	}
}

// temporalRig is a VP8 producer with layers layers and one consumer that
// records what it sends, without PeerConnections.
func temporalRig(t *testing.T, layers int) (*Producer, *Consumer, *recordingWriter) {
	t.Helper()
	tr := &Transport{opts: transportOpts{Direction: Recv}, log: slog.New(slog.DiscardHandler)}
	tr.connected.Store(true)
	p := newProducer(tr, &inbound{}, KindVideo, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, nil, "s")
	p.writePLI = func(uint32) error { return nil }
	for i := 0; i < layers; i++ {
		p.layers[i].active.Store(true)
		p.layers[i].ssrc.Store(uint32(100 + i))
		// As the router's tick finds for an L1T3 publisher.
		p.layers[i].temporal.highest.Store(maxTemporal)
	}
	c := newConsumer(tr, p, false)
	w := &recordingWriter{}
	c.writer = directEgress{w}
	c.ssrc, c.pt, c.target = 1, 96, 0
	next := []*Consumer{c}
	p.consumers.Store(&next)
	t.Cleanup(func() {
		for i := range p.layers {
			p.layers[i].kf.stop()
		}
	})
	return p, c, w
}

// checkContinuous fails unless the packets sent form a stream without
// gaps: sequence numbers, picture ids per frame, TL0PICIDX per base frame.
func checkContinuous(t *testing.T, pkts []capturedPacket) {
	t.Helper()
	for i := 1; i < len(pkts); i++ {
		a, b := pkts[i-1], pkts[i]
		if b.seq != a.seq+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, b.seq, a.seq)
		}
		if b.ts == a.ts {
			if b.d.PictureID != a.d.PictureID {
				t.Fatalf("packet %d: picture id %d within a frame of %d", i, b.d.PictureID, a.d.PictureID)
			}
			continue
		}
		if b.d.PictureID != (a.d.PictureID+1)&0x7fff {
			t.Fatalf("packet %d: picture id %d after %d", i, b.d.PictureID, a.d.PictureID)
		}
		wantTL0 := a.d.TL0PICIDX
		if b.d.TID == 0 {
			wantTL0++
		}
		if b.d.HasTL0PICIDX && b.d.TL0PICIDX != wantTL0 {
			t.Fatalf("packet %d (TID %d): TL0PICIDX %d after %d", i, b.d.TID, b.d.TL0PICIDX, a.d.TL0PICIDX)
		}
	}
}

func framesByTID(pkts []capturedPacket) (n [maxTemporal + 1]int) {
	for _, p := range pkts {
		if p.marker {
			n[p.d.TID]++
		}
	}
	return n
}

func TestTemporalDropKeepsStreamContinuous(t *testing.T) {
	p, c, w := temporalRig(t, 1)
	c.tlTarget = 1
	g := &l1t3{p: p, pic: 32760, tl0: 250} // both wrap during the test
	g.send(true)
	g.run(t, 63)
	n := framesByTID(w.pkts)
	if n != [3]int{16, 16, 0} {
		t.Fatalf("frames sent by TID %v, want 16 T0, 16 T1, no T2", n)
	}
	checkContinuous(t, w.pkts)
	g.checkShared(t)
	if cur, tgt := c.TemporalLayer(); cur != 1 || tgt != 1 {
		t.Fatalf("TemporalLayer() = %d, %d; want 1, 1", cur, tgt)
	}
}

func TestTemporalUpNeedsLayerSync(t *testing.T) {
	p, c, w := temporalRig(t, 1)
	c.tlTarget = 0
	// Only every fourth T2 frame (frames 5, 21, 37, …) is a sync point;
	// every T1 frame is one.
	g := &l1t3{p: p, pic: 7, sync: func(f int) bool { return f%4 == 2 || f%16 == 5 }}
	var events [][2]int
	c.OnLayerChange(func(s, tl int) { events = append(events, [2]int{s, tl}) })
	g.send(true)
	g.run(t, 7) // frames 1..7
	if n := framesByTID(w.pkts); n != [3]int{2, 0, 0} {
		t.Fatalf("at T0: frames by TID %v", n)
	}
	c.mu.Lock()
	c.tlTarget = 2
	c.mu.Unlock()
	before := len(w.pkts)
	g.run(t, 1) // frame 8: T0
	g.run(t, 1) // frame 9: T2 without sync: T1 is not forwarded yet
	g.run(t, 1) // frame 10: T1 with sync: T1 starts
	if n := framesByTID(w.pkts[before:]); n != [3]int{1, 1, 0} {
		t.Fatalf("frames 8-10 by TID %v, want T0 and T1 only", n)
	}
	g.run(t, 10) // frames 11-20: T2 frames have no sync
	if n := framesByTID(w.pkts[before:]); n[2] != 0 {
		t.Fatalf("T2 forwarded without a sync frame (%v)", n)
	}
	before = len(w.pkts)
	g.run(t, 1) // frame 21: T2 with sync
	g.run(t, 3)
	if n := framesByTID(w.pkts[before:]); n != [3]int{1, 1, 2} {
		t.Fatalf("frames 21-24 by TID %v, want all of them", n)
	}
	if !w.pkts[before].d.LayerSync {
		t.Fatal("T2 started on a frame without the sync bit")
	}
	// Down is at once, at the next frame.
	c.mu.Lock()
	c.tlTarget = 0
	c.mu.Unlock()
	before = len(w.pkts)
	g.run(t, 8)
	if n := framesByTID(w.pkts[before:]); n != [3]int{2, 0, 0} {
		t.Fatalf("after going down: frames by TID %v", n)
	}
	checkContinuous(t, w.pkts)
	g.checkShared(t)
	want := [][2]int{{0, 0}, {0, 1}, {0, 2}, {0, 0}}
	if len(events) != len(want) {
		t.Fatalf("layer changes %v, want %v", events, want)
	}
	for i := range want {
		if events[i] != want[i] {
			t.Fatalf("layer changes %v, want %v", events, want)
		}
	}
}

func TestTemporalSpatialSwitchContinuesIDs(t *testing.T) {
	p, c, w := temporalRig(t, 2)
	c.tlTarget = 1
	lo := &l1t3{p: p, idx: 0, pic: 100, tl0: 10}
	hi := &l1t3{p: p, idx: 1, pic: 20000, tl0: 200, ts: 1 << 30}
	lo.send(true)
	hi.send(true) // not taken: the consumer is on layer 0
	for i := 0; i < 10; i++ {
		lo.send(false)
		hi.send(false)
	}
	c.mu.Lock()
	c.target, c.tlTarget = 1, maxTemporal
	c.mu.Unlock()
	lo.send(false)
	hi.send(true) // the switch
	lo.send(false)
	for i := 0; i < 10; i++ {
		hi.send(false)
		lo.send(false)
	}
	if cur, _ := c.Layer(); cur != 1 {
		t.Fatalf("on layer %d, want 1", cur)
	}
	checkContinuous(t, w.pkts)
	n := framesByTID(w.pkts)
	// Layer 0 at T1: frames 0-11 less the T2 ones (6); layer 1: all 11.
	if n[0]+n[1]+n[2] != 6+11 {
		t.Fatalf("frames by TID %v, want 17 in all", n)
	}
	lo.checkShared(t)
	hi.checkShared(t)
}

func TestTemporalNoTIDForwardsEverything(t *testing.T) {
	// A VP8 stream without temporal layers is forwarded untouched, even
	// when the allocator wants a lower temporal layer.
	p, c, w := temporalRig(t, 1)
	p.layers[0].temporal.highest.Store(0)
	c.tlTarget = 0
	payload := []byte{0x10, 0x00, 0, 0, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00}
	for i := 0; i < 10; i++ {
		p.forward(0, &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), Marker: true}, Payload: payload})
		payload = []byte{0x90, 0x80, byte(i + 1), 0x01, 0, 0}
	}
	if len(w.pkts) != 10 {
		t.Fatalf("sent %d of 10 packets", len(w.pkts))
	}
	checkContinuous(t, w.pkts)
	if cur, _ := c.TemporalLayer(); cur != 0 {
		t.Fatalf("temporal layer %d reported for a stream without any", cur)
	}
}

// setRates gives a producer's layers measured bitrates: total per spatial
// layer, split 40/25/35 % among T0/T1/T2 when temporal.
func setRates(p *Producer, now time.Time, temporal bool, totals ...int) {
	for i, r := range totals {
		l := &p.layers[i]
		l.rate.Store(int64(r))
		if temporal {
			for t, share := range []float64{0.40, 0.25, 0.35} {
				l.temporal.rate[t].Store(int64(float64(r) * share))
				l.temporal.lastSeen[t].Store(now.UnixNano())
			}
			l.temporal.update(now, time.Second, true)
			for t, share := range []float64{0.40, 0.25, 0.35} {
				l.temporal.rate[t].Store(int64(float64(r) * share))
			}
		}
	}
}

func TestAllocatePrefersFrameRateBeforeResolution(t *testing.T) {
	p, c, _ := temporalRig(t, 3)
	now := time.Now()
	setRates(p, now, true, 150_000, 500_000, 2_000_000)
	var cands [maxCandidates]choice
	var rates [maxCandidates]int
	n := c.candidates(maxLayers-1, &cands, &rates)
	want := []choice{{2, 2}, {2, 1}, {1, 2}, {1, 1}, {0, 2}, {0, 1}, {0, 0}}
	if n != len(want) {
		t.Fatalf("%d candidates %v, want %v", n, cands[:n], want)
	}
	for i := range want {
		if cands[i] != want[i] {
			t.Fatalf("candidates %v, want %v", cands[:n], want)
		}
	}
	if rates[1] != 1_300_000 || rates[6] != 60_000 {
		t.Fatalf("rates %v: want f at T1 1.3 Mbit/s and q at T0 60 kbit/s", rates[:n])
	}

	// On f with all frames, the budget falls to 1.5 Mbit/s: f at half
	// the frame rate, not h.
	c.target, c.tlTarget = 2, maxTemporal
	c.current = 2
	c.alloc.downSince = now.Add(-2 * downHold)
	c.allocate(1_500_000, linkState{}, now)
	if c.target != 2 || c.tlTarget != 1 {
		t.Fatalf("at 1.5 Mbit/s: target %d/%d, want f at T1", c.target, c.tlTarget)
	}
	// Far short of f: down to h, all frames.
	c.allocate(700_000, linkState{}, now)
	if c.target != 1 || c.tlTarget != maxTemporal {
		t.Fatalf("at 700 kbit/s: target %d/%d, want h with all frames", c.target, c.tlTarget)
	}
	// Back up: f at T1 needs headroom held for upHold.
	c.allocate(1_500_000, linkState{}, now)
	if c.target != 1 {
		t.Fatalf("went up at once to %d/%d", c.target, c.tlTarget)
	}
	c.allocate(1_500_000, linkState{}, now.Add(upHold))
	if c.target != 2 || c.tlTarget != 1 {
		t.Fatalf("after the hold: target %d/%d, want f at T1", c.target, c.tlTarget)
	}

	// A layer paused by dynacast keeps its temporal layers: the
	// allocator can still choose f at T1 for a subscriber on h.
	for i := range p.layers {
		p.layers[i].temporal.update(now.Add(time.Minute), time.Second, false)
	}
	if n := c.candidates(maxLayers-1, &cands, &rates); n != len(want) {
		t.Fatalf("paused: %d candidates %v", n, cands[:n])
	}

	// Without temporal layers the choices are the three layers, as before.
	for i := range p.layers {
		p.layers[i].temporal.update(now.Add(time.Minute), time.Second, true)
	}
	n = c.candidates(maxLayers-1, &cands, &rates)
	if n != 3 || cands[0] != (choice{2, maxTemporal}) || cands[2] != (choice{0, maxTemporal}) || rates[0] != 2_000_000 {
		t.Fatalf("without temporal layers: %v %v", cands[:n], rates[:n])
	}
}
