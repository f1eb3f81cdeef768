package nackgen

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func nacked(pairs []rtcp.NackPair) []uint16 {
	var out []uint16
	for _, p := range pairs {
		p.Range(func(s uint16) bool { out = append(out, s); return true })
	}
	return out
}

// TestLog: a gap is asked for once it has had time to be mere
// reordering, again after Retry while still missing, at most
// Tries times, and never again once it (or its repair) arrives.
func TestLog(t *testing.T) {
	var l Log
	t0 := time.Unix(100, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	l.Received(65530, at(0))
	l.Received(65531, at(1))
	l.Received(2, at(2)) // 65532..1 missing, across the wrap
	if got := l.Due(at(3)); got != nil {
		t.Fatalf("asked at once: %v", nacked(got))
	}
	l.Received(65533, at(4)) // reordered, not lost
	got := nacked(l.Due(at(30)))
	want := []uint16{65532, 65534, 65535, 0, 1}
	if len(got) != len(want) {
		t.Fatalf("first NACK %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("first NACK %v, want %v", got, want)
		}
	}
	l.Received(65532, at(40)) // repaired
	l.Received(0, at(41))
	if got := l.Due(at(60)); got != nil {
		t.Fatalf("asked again before Retry: %v", nacked(got))
	}
	if got := nacked(l.Due(at(140))); len(got) != 3 || got[0] != 65534 || got[2] != 1 {
		t.Fatalf("second NACK %v, want the three still missing", got)
	}
	if got := nacked(l.Due(at(250))); len(got) != 3 {
		t.Fatalf("third NACK %v", got)
	}
	if got := l.Due(at(400)); got != nil {
		t.Fatalf("a fourth NACK after %d tries: %v", Tries, nacked(got))
	}
	// A jump (a restarted stream) asks for nothing in between.
	l.Received(30000, at(500))
	if got := l.Due(at(600)); got != nil {
		t.Fatalf("NACK after a jump: %v", nacked(got))
	}
}

func TestAppendPairs(t *testing.T) {
	pairs := appendPairs(nil, []uint16{65535, 0, 16, 17, 40})
	if len(pairs) != 3 || pairs[0].PacketID != 65535 || pairs[1].PacketID != 16 || pairs[2].PacketID != 40 {
		t.Fatalf("pairs %+v", pairs)
	}
	if got := nacked(pairs); len(got) != 5 {
		t.Fatalf("packed %v", got)
	}
}

// A copy of a packet the stream has (a late packet's repair, Chromium's
// RTX probes repeating the last packets) is not new; a packet that fills
// a hole is, even once its requests are spent, and across the wrap.
func TestLogTellsCopies(t *testing.T) {
	var l Log
	base := time.Now()
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	for i, c := range []struct {
		seq  uint16
		ms   int
		want bool
	}{
		{65534, 0, true},
		{65534, 1, false}, // the same again
		{65535, 2, true},
		{65535, 3, false},
		{2, 4, true},      // 0 and 1 missing, across the wrap
		{0, 5, true},      // late, fills a hole
		{0, 6, false},     // its repair, a copy
		{65535, 7, false}, // an RTX probe of an old packet
	} {
		if got := l.Received(c.seq, at(c.ms)); got != c.want {
			t.Fatalf("step %d: received(%d) = %v, want %v", i, c.seq, got, c.want)
		}
	}
	// 1 is asked for until its requests are spent; its repair is new.
	for ms := 10; ms < 1000; ms += int(Scan / time.Millisecond) {
		l.Due(at(ms))
	}
	if len(l.missing) != 0 {
		t.Fatalf("still asking for %v", l.missing)
	}
	if !l.Received(1, at(1000)) || l.Received(1, at(1001)) {
		t.Fatal("a repair after the last request: want new once, then a copy")
	}
	// Packets a window or more behind are not forwarded.
	for s := uint16(3); s < 3+Window; s++ {
		l.Received(s, at(1100))
	}
	if l.Received(2, at(1200)) {
		t.Fatal("a packet as old as the window counted as new")
	}
}

// BenchmarkReceived is the log's cost per packet of a stream that loses
// one packet in a hundred, asked for again on time: what the read loop
// pays for every video packet.
func BenchmarkReceived(b *testing.B) {
	var l Log
	now := time.Unix(100, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(time.Millisecond)
		if i%100 != 99 {
			l.Received(uint16(i), now)
		}
		l.Due(now)
	}
}
