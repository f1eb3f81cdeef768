package bwe

import (
	"testing"
	"time"
	"unsafe"

	"github.com/pion/rtcp"
)

// feedback builds a TWCC report for count packets from base, 1 ms apart,
// with the given ones lost.
func feedback(base uint16, count int, lost map[int]bool) *rtcp.TransportLayerCC {
	fb := &rtcp.TransportLayerCC{BaseSequenceNumber: base, PacketStatusCount: uint16(count), ReferenceTime: 10}
	syms := make([]uint16, 0, count)
	for i := 0; i < count; i++ {
		if lost[i] {
			syms = append(syms, rtcp.TypeTCCPacketNotReceived)
			continue
		}
		syms = append(syms, rtcp.TypeTCCPacketReceivedSmallDelta)
		fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 1000})
	}
	for i := 0; i < len(syms); i += 7 {
		end := min(i+7, len(syms))
		fb.PacketChunks = append(fb.PacketChunks, &rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: syms[i:end]})
	}
	return fb
}

// newTestEstimator is an estimator starting at 300 kbit/s, closed with
// the test.
func newTestEstimator(t *testing.T) *Estimator {
	t.Helper()
	e, err := New(300_000, 50_000, 10_000_000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// probeBurst starts a probe aiming at target at now and sends it: 100
// packets of 250 bytes from seq, 1 ms apart (2 Mbit/s).
func probeBurst(t *testing.T, e *Estimator, target int, seq uint16, now time.Time) {
	t.Helper()
	if !e.StartProbe(target, 100*time.Millisecond, now) {
		t.Fatal("probe refused")
	}
	for i := 0; i < 100; i++ {
		e.OnSent(seq+uint16(i), 250, now.Add(time.Duration(i)*time.Millisecond))
	}
}

func TestParseFeedback(t *testing.T) {
	acks := appendAcks(nil, feedback(65530, 10, map[int]bool{3: true}))
	if len(acks) != 10 {
		t.Fatalf("%d acks", len(acks))
	}
	if acks[0].seq != 65530 || acks[9].seq != 3 {
		t.Fatalf("sequence numbers %d..%d", acks[0].seq, acks[9].seq)
	}
	if acks[3].received || !acks[4].received {
		t.Fatal("loss not where reported")
	}
	if d := acks[5].arrival.Sub(acks[4].arrival); d != time.Millisecond {
		t.Fatalf("arrival step %v", d)
	}
	run := &rtcp.TransportLayerCC{BaseSequenceNumber: 1, PacketStatusCount: 3, PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 3}}}
	for _, a := range appendAcks(nil, run) {
		if a.received {
			t.Fatal("run of losses parsed as received")
		}
	}
}

func TestProbeRaisesAndCongestionDropsTheFloor(t *testing.T) {
	e := newTestEstimator(t)
	now := time.Now()
	if !e.StartProbe(2_000_000, 100*time.Millisecond, now) {
		t.Fatal("probe refused")
	}
	if e.StartProbe(2_000_000, 100*time.Millisecond, now) {
		t.Fatal("second concurrent probe accepted")
	}
	// 100 packets of 250 bytes in the window, delivered 1 ms apart: 2 Mbit/s.
	for i := 0; i < 100; i++ {
		e.OnSent(uint16(i), 250, now.Add(time.Duration(i)*time.Millisecond))
	}
	e.OnFeedback(feedback(0, 100, nil), now.Add(time.Second))
	res := e.LastProbe()
	if !res.Success || res.Delivered < 1_900_000 {
		t.Fatalf("probe result %+v", res)
	}
	if got := e.GetTargetBitrate(); got < 1_800_000 {
		t.Fatalf("estimate after probe %d, want ≥ 1.8M", got)
	}
	e.gccChanged(200_000) // GCC saw congestion
	if got := e.GetTargetBitrate(); got > 300_000 {
		t.Fatalf("estimate after congestion %d", got)
	}
	// A lossy probe fails.
	now = now.Add(2 * time.Second)
	probeBurst(t, e, 2_000_000, 200, now)
	lost := map[int]bool{}
	for i := 0; i < 100; i += 5 {
		lost[i] = true
	}
	e.OnFeedback(feedback(200, 100, lost), now.Add(time.Second))
	if res := e.LastProbe(); res.Success {
		t.Fatalf("lossy probe succeeded: %+v", res)
	}
}

// TestFailedProbeLowersAFloorAboveIt: a floor an earlier probe set above
// what the link then carries comes down to what a failed probe delivered.
func TestFailedProbeLowersAFloorAboveIt(t *testing.T) {
	e := newTestEstimator(t)
	now := time.Now()
	probeBurst(t, e, 2_000_000, 0, now)
	e.OnFeedback(feedback(0, 100, nil), now.Add(time.Second))
	if res := e.LastProbe(); !res.Success {
		t.Fatalf("first probe failed: %+v", res)
	}
	e.mu.Lock()
	high := e.floor
	e.mu.Unlock()
	// The next probe asks for 4 Mbit/s and gets 1 Mbit/s through: 50
	// packets of 250 bytes 2 ms apart.
	now = now.Add(2 * time.Second)
	e.StartProbe(4_000_000, 100*time.Millisecond, now)
	for i := 0; i < 50; i++ {
		e.OnSent(uint16(200+i), 250, now.Add(time.Duration(i)*2*time.Millisecond))
	}
	fb := feedback(200, 50, nil)
	for _, d := range fb.RecvDeltas {
		d.Delta = 2000
	}
	e.OnFeedback(fb, now.Add(time.Second))
	res := e.LastProbe()
	if res.Success || res.Delivered >= high {
		t.Fatalf("second probe %+v against a floor of %d", res, high)
	}
	e.mu.Lock()
	floor := e.floor
	e.mu.Unlock()
	if floor != res.Delivered*95/100 {
		t.Fatalf("floor %d after a failed probe delivering %d (was %d)", floor, res.Delivered, high)
	}
}

// A receiver report that may cover time before a successful probe does
// not undo it: the link just recovered. One received a second later does.
func TestReceiverReportOlderThanAProbe(t *testing.T) {
	e := newTestEstimator(t)
	now := time.Now()
	e.OnReceiverReport(0.5, now) // the link was losing half
	if got := e.GetTargetBitrate(); got >= 300_000 {
		t.Fatalf("estimate %d with half lost, want cut", got)
	}
	probeBurst(t, e, 2_000_000, 0, now)
	evaluated := now.Add(time.Second)
	e.OnFeedback(feedback(0, 100, nil), evaluated)
	if res := e.LastProbe(); !res.Success {
		t.Fatalf("probe result %+v", res)
	}
	e.OnReceiverReport(0.5, evaluated.Add(500*time.Millisecond))
	if got := e.GetTargetBitrate(); got < 1_800_000 {
		t.Fatalf("estimate %d after a successful probe and an older report, want ≥ 1.8M", got)
	}
	e.OnReceiverReport(0.5, evaluated.Add(1500*time.Millisecond))
	if got := e.GetTargetBitrate(); got >= 300_000 {
		t.Fatalf("estimate %d with half lost again, want cut", got)
	}
}

// A probe on a transport that then sends nothing gets no later feedback:
// the next probe evaluates it instead of waiting for ever.
func TestProbeEvaluatedWithoutLaterFeedback(t *testing.T) {
	e := newTestEstimator(t)
	now := time.Now()
	probeBurst(t, e, 2_000_000, 0, now)
	// The probe's feedback, before its evaluation is due.
	e.OnFeedback(feedback(0, 100, nil), now.Add(200*time.Millisecond))
	if e.StartProbe(2_000_000, 100*time.Millisecond, now.Add(300*time.Millisecond)) {
		t.Fatal("second probe started before the first was evaluated")
	}
	if !e.StartProbe(3_000_000, 100*time.Millisecond, now.Add(time.Second)) {
		t.Fatal("no probe possible after one whose evaluation was due")
	}
	if res := e.LastProbe(); !res.Success || res.Rate != 2_000_000 {
		t.Fatalf("first probe's result %+v, want a success at 2 Mbit/s", res)
	}
}

// EvaluateProbe, called on the allocator's tick, leaves a probe to the
// feedback until its evaluation is overdue, then evaluates it.
func TestEvaluateProbeWhenOverdue(t *testing.T) {
	e := newTestEstimator(t)
	now := time.Now()
	probeBurst(t, e, 2_000_000, 0, now)
	e.OnFeedback(feedback(0, 100, nil), now.Add(200*time.Millisecond))
	due := now.Add(100*time.Millisecond + 300*time.Millisecond)
	e.EvaluateProbe(due.Add(probeOverdue / 2))
	if !e.LastProbe().At.IsZero() {
		t.Fatal("evaluated before it was overdue")
	}
	e.EvaluateProbe(due.Add(probeOverdue))
	if res := e.LastProbe(); !res.Success {
		t.Fatalf("overdue probe not evaluated as a success: %+v", res)
	}
}

// The ring of sent packets is most of an estimator's memory, one per
// subscriber: an entry stays 16 bytes.
func TestSentPacketSize(t *testing.T) {
	if n := unsafe.Sizeof(sentPacket{}); n != 16 {
		t.Fatalf("sentPacket is %d bytes, want 16", n)
	}
}

// TestStallAfterProbeCutsFromTheProbedRate: GCC alone had reached 300
// kbit/s when a probe measured 2 Mbit/s. Feedback then stops for a second
// (a busy receiver): the estimate falls by one stall's cut from what was
// being sent, not to a fraction of GCC's own 300 kbit/s (the e2e temporal
// test's estimate fell from 1.73 to 0.25 Mbit/s so).
func TestStallAfterProbeCutsFromTheProbedRate(t *testing.T) {
	e := newTestEstimator(t)
	now := time.Now()
	probeBurst(t, e, 2_000_000, 0, now)
	now = now.Add(time.Second)
	e.OnFeedback(feedback(0, 100, nil), now)
	probed := e.GetTargetBitrate()
	if res := e.LastProbe(); !res.Success || probed < 1_800_000 {
		t.Fatalf("probe %+v, estimate %d", res, probed)
	}
	// Packets go out for 1.2 s and no feedback comes back.
	for i := 0; i < 120; i++ {
		now = now.Add(10 * time.Millisecond)
		e.OnSent(uint16(100+i), 250, now)
	}
	got := e.GetTargetBitrate()
	t.Logf("estimate %d after the probe, %d after a 1.2 s feedback stall", probed, got)
	if got > probed*9/10 {
		t.Fatalf("estimate %d after a feedback stall, from %d: not cut", got, probed)
	}
	if float64(got) < float64(probed)*stallFactor*0.95 {
		t.Fatalf("estimate %d after one stall, from %d: cut to less than %.0f%%", got, probed, 100*stallFactor)
	}
}
