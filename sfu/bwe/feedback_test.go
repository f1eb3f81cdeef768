package bwe

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// feedbackPackets builds real reports with pion's TWCC recorder (what
// pion subscribers send): random loss, arrival gaps small and large,
// reordering that makes deltas negative, sequence numbers that wrap.
func feedbackPackets(t testing.TB, seed uint64) [][]byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	r := twcc.NewRecorder(0x5555)
	var out [][]byte
	seq := uint16(65000 + rng.IntN(500))
	at := int64(1_000_000)
	for round := 0; round < 40; round++ {
		for k := 0; k < 5+rng.IntN(60); k++ {
			seq++
			switch x := rng.IntN(100); {
			case x < 10: // lost
				continue
			case x < 15:
				at += int64(rng.IntN(20_000)) // a gap (large delta)
			case x < 18:
				at -= int64(rng.IntN(3_000)) // reordered: negative delta
			default:
				at += int64(rng.IntN(1_000))
			}
			r.Record(0x7777, seq, at)
		}
		for _, p := range r.BuildFeedbackPacket() {
			if _, ok := p.(*rtcp.TransportLayerCC); !ok {
				continue
			}
			b, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

// TestAcksRawMatchPion: the raw parse gives exactly what pion/rtcp's
// parse gives, for realistic reports and for reports pion builds by hand
// with every chunk kind.
func TestAcksRawMatchPion(t *testing.T) {
	pkts := feedbackPackets(t, 1)
	hand := &rtcp.TransportLayerCC{
		SenderSSRC: 1, MediaSSRC: 2, BaseSequenceNumber: 65534, PacketStatusCount: 24, ReferenceTime: 0x7fffff, FbPktCount: 3,
		PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 3},
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeOneBit, SymbolList: []uint16{1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1}},
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: []uint16{2, 1, 0, 2, 1, 0, 2}},
		},
		RecvDeltas: []*rtcp.RecvDelta{
			{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250}, {Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 0},
			{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 63750},
			{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 500}, {Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 750},
			{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 1000}, {Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 1250},
			{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 1500},
			{Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: -8000}, {Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250},
			{Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: 8_000_000}, {Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250},
			{Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: -250},
		},
	}
	// pion marshals the header it is given, as its recorder sets it.
	hand.Header = rtcp.Header{Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback, Length: uint16(hand.MarshalSize()/4 - 1)}
	b, err := hand.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pkts = append(pkts, b)
	if len(pkts) < 30 {
		t.Fatalf("only %d reports built", len(pkts))
	}
	var lostSeen, negSeen bool
	for n, b := range pkts {
		var fb rtcp.TransportLayerCC
		if err := fb.Unmarshal(b); err != nil {
			t.Fatalf("report %d: pion: %v", n, err)
		}
		want := appendAcks(nil, &fb)
		got, err := appendAcksRaw(nil, b)
		if err != nil {
			t.Fatalf("report %d: %v", n, err)
		}
		if len(got) != len(want) {
			t.Fatalf("report %d: %d acks, pion's parse %d", n, len(got), len(want))
		}
		for i := range want {
			if got[i].seq != want[i].seq || got[i].received != want[i].received || !got[i].arrival.Equal(want[i].arrival) {
				t.Fatalf("report %d ack %d: %+v, pion's parse %+v", n, i, got[i], want[i])
			}
			if !want[i].received {
				lostSeen = true
			}
			if i > 0 && want[i].received && want[i-1].received && want[i].arrival.Before(want[i-1].arrival) {
				negSeen = true
			}
		}
	}
	if !lostSeen || !negSeen {
		t.Fatalf("the reports lacked losses (%v) or negative deltas (%v)", lostSeen, negSeen)
	}
}

// TestAcksRawMalformed: truncated and lying reports are refused or cut
// short, never read past.
func TestAcksRawMalformed(t *testing.T) {
	b := feedbackPackets(t, 2)[0]
	for cut := 0; cut < len(b); cut++ {
		short := append([]byte(nil), b[:cut]...)
		if _, err := appendAcksRaw(nil, short); err == nil && cut < 20 {
			t.Fatalf("a %d-byte report was accepted", cut)
		}
	}
	// A status count far beyond the chunks there are.
	lying := append([]byte(nil), b...)
	lying[14], lying[15] = 0xff, 0xff
	if _, err := appendAcksRaw(nil, lying); err == nil {
		t.Fatal("a report claiming 65,535 statuses without the chunks was accepted")
	}
}

func BenchmarkFeedbackRaw(b *testing.B) {
	pkts := feedbackPackets(b, 3)
	acks := make([]ack, 0, ringSize)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		acks, _ = appendAcksRaw(acks[:0], pkts[i%len(pkts)])
	}
}

func BenchmarkFeedbackPion(b *testing.B) {
	pkts := feedbackPackets(b, 3)
	acks := make([]ack, 0, ringSize)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var fb rtcp.TransportLayerCC
		if err := fb.Unmarshal(pkts[i%len(pkts)]); err != nil {
			b.Fatal(err)
		}
		acks = appendAcks(acks[:0], &fb)
	}
}

// TestFeedbackRawShortLength: a buffer long enough for the fixed fields
// whose RTCP length field says less is refused, not sliced past.
func TestFeedbackRawShortLength(t *testing.T) {
	b := feedbackPackets(t, 4)[0]
	for words := range 5 { // lengths 4..20 bytes: all shorter than the fixed fields
		short := append([]byte(nil), b...)
		short[2], short[3] = 0, byte(words)
		e, err := New(1_000_000, 100_000, 10_000_000)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.OnFeedbackRaw(short, time.Now()); err == nil {
			t.Fatalf("a %d-byte buffer whose length field says %d bytes was accepted", len(short), (words+1)*4)
		}
	}
}

// FuzzOnFeedbackRaw: no report, however malformed, panics the estimator
// or yields more acks than the ring holds.
func FuzzOnFeedbackRaw(f *testing.F) {
	for _, b := range feedbackPackets(f, 5)[:8] {
		f.Add(b)
	}
	short := append([]byte(nil), feedbackPackets(f, 6)[0]...)
	short[2], short[3] = 0, 1 // the length field says 8 bytes
	f.Add(short)
	// One estimator for every input, as one subscriber's takes every
	// report: state left by one input must not break the next.
	e, err := New(1_000_000, 100_000, 10_000_000)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = e.OnFeedbackRaw(b, time.Now())
		acks, err := appendAcksRaw(nil, b)
		if err == nil && len(acks) > ringSize {
			t.Fatalf("%d acks from one report, more than the %d the ring holds", len(acks), ringSize)
		}
	})
}
