package rtpmunge

import (
	"testing"
	"time"
)

func TestContinuousAcrossSync(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := New(90000, 100, 5000)
	if _, _, ok := m.Map(7, 1, t0); ok {
		t.Fatal("Map before Sync must not forward")
	}
	m.Sync(65530, 4_000_000_000, t0)
	var seqs []uint16
	var tss []uint32
	for i := uint16(0); i < 10; i++ { // crosses the uint16 wrap upstream
		s, ts, ok := m.Map(65530+i, 4_000_000_000+uint32(i)*3000, t0.Add(time.Duration(i)*33*time.Millisecond))
		if !ok {
			t.Fatalf("packet %d dropped", i)
		}
		seqs, tss = append(seqs, s), append(tss, ts)
	}
	if seqs[0] != 100 || tss[0] != 5000 {
		t.Fatalf("first out = %d/%d, want 100/5000", seqs[0], tss[0])
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 || tss[i]-tss[i-1] != 3000 {
			t.Fatalf("discontinuity at %d: %d/%d after %d/%d", i, seqs[i], tss[i], seqs[i-1], tss[i-1])
		}
	}
	// Switch to an unrelated source 100 ms later: numbering continues,
	// timestamp advances by the elapsed wall time.
	at := t0.Add(9*33*time.Millisecond + 100*time.Millisecond)
	m.Sync(17, 123, at)
	s, ts, ok := m.Map(17, 123, at)
	if !ok || s != seqs[9]+1 {
		t.Fatalf("after switch seq = %d ok=%v, want %d", s, ok, seqs[9]+1)
	}
	if want := tss[9] + 9000; ts != want {
		t.Fatalf("after switch ts = %d, want %d", ts, want)
	}
	// A straggler from the old source is dropped.
	if _, _, ok := m.Map(65535, 1, at); ok {
		t.Fatal("packet older than the sync point was forwarded")
	}
}

func TestReorderAndDrop(t *testing.T) {
	t0 := time.Unix(0, 0)
	m := New(48000, 0, 0)
	m.Sync(10, 0, t0)
	m.Map(10, 0, t0)
	m.Map(12, 1920, t0)
	// 11 arrives late: it keeps its slot, and Last stays at 12's.
	s, _, ok := m.Map(11, 960, t0)
	if !ok || s != 1 {
		t.Fatalf("late packet mapped to %d ok=%v, want 1", s, ok)
	}
	if ls, _ := m.Last(); ls != 2 {
		t.Fatalf("Last = %d, want 2", ls)
	}
	m.Drop(13) // padding
	s, _, _ = m.Map(14, 3840, t0)
	if s != 3 {
		t.Fatalf("after a dropped packet seq = %d, want 3 (no gap)", s)
	}
	m.Drop(20) // out of order: ignored, the gap stays
	s, _, _ = m.Map(16, 4800, t0)
	if s != 5 {
		t.Fatalf("seq = %d, want 5", s)
	}
}

func BenchmarkMap(b *testing.B) {
	t0 := time.Unix(0, 0)
	m := New(90000, 0, 0)
	m.Sync(0, 0, t0)
	var seq uint16
	for b.Loop() {
		seq++
		m.Map(seq, uint32(seq)*3000, t0)
	}
}

// TestLongStream: a stream that runs for hours without a layer switch goes
// round the 16-bit sequence space many times; every packet must still map,
// late ones included, and the output must stay contiguous.
func TestLongStream(t *testing.T) {
	m := New(90000, 100, 5000)
	now := time.Now()
	in := uint16(65000)
	m.Sync(in, 1, now)
	if _, _, ok := m.Map(in-1, 0, now); ok {
		t.Fatal("a packet from before the sync point was mapped")
	}
	want := uint16(100)
	for i := 0; i < 300_000; i++ {
		seq := in + uint16(i)
		if i%1000 == 999 {
			// Reordered: i arrives after i+1.
			a, _, okA := m.Map(seq+1, 0, now)
			b, _, okB := m.Map(seq, 0, now)
			if !okA || !okB || b != want || a != want+1 {
				t.Fatalf("packet %d (reordered): out %d/%d ok %v/%v, want %d", i, b, a, okB, okA, want)
			}
			want += 2
			i++
			continue
		}
		out, _, ok := m.Map(seq, 0, now)
		if !ok || out != want {
			t.Fatalf("packet %d (seq %d): out %d ok %v, want %d", i, seq, out, ok, want)
		}
		want++
	}
	// A stray from long ago is still refused.
	if _, _, ok := m.Map(in+uint16(300_000%65536)-5000, 0, now); ok {
		t.Error("a packet 5000 behind the newest was mapped")
	}
}

// A source that restarts its numbering on the same SSRC (far below or far
// above the old stream) is followed once the packet after the jump
// confirms it: the output goes on without a gap in sequence numbers and
// with its clock advanced by the time that passed. A lone stray far away
// is dropped and changes nothing.
func TestMapFollowsRestartedSource(t *testing.T) {
	for _, newBase := range []uint16{100, 40000} {
		m := New(48000, 1000, 5000)
		now := time.Unix(0, 0)
		m.Sync(20000, 900000, now)
		var last uint16
		for i := uint16(0); i < 5000; i++ {
			out, _, ok := m.Map(20000+i, 900000+uint32(i)*960, now.Add(time.Duration(i)*20*time.Millisecond))
			if !ok {
				t.Fatalf("base %d: packet %d refused", newBase, i)
			}
			last = out
		}
		lastTS := 5000 + 4999*960
		at := now.Add(5000 * 20 * time.Millisecond)
		// A stray far away: dropped, and the stream goes on.
		if _, _, ok := m.Map(newBase+7, 123, at); ok {
			t.Fatalf("base %d: a lone far packet was mapped", newBase)
		}
		if out, _, ok := m.Map(25000, 900000+5000*960, at); !ok || out != last+1 {
			t.Fatalf("base %d: after the stray, %d %v, want %d", newBase, out, ok, last+1)
		}
		last++
		lastTS += 960
		// The restart: its first packet is lost, the second continues.
		at = at.Add(time.Second)
		if _, _, ok := m.Map(newBase, 777, at); ok {
			t.Fatalf("base %d: the jump's first packet was mapped", newBase)
		}
		out, ts, ok := m.Map(newBase+1, 777+960, at)
		if !ok || out != last+1 {
			t.Fatalf("base %d: restart mapped to %d %v, want %d", newBase, out, ok, last+1)
		}
		if adv := ts - uint32(lastTS); adv < 47000 || adv > 49000 {
			t.Fatalf("base %d: clock advanced %d ticks over a second, want about 48000", newBase, adv)
		}
		if out2, ts2, ok := m.Map(newBase+2, 777+2*960, at); !ok || out2 != out+1 || ts2 != ts+960 {
			t.Fatalf("base %d: after the restart %d %d %v", newBase, out2, ts2, ok)
		}
	}
}
