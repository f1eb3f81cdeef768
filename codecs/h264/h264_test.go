package h264

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtp/codecs"
)

// Parameter sets made with ffmpeg/libx264 (baseline, and high 1080p with
// cropping).
var spsVectors = []struct {
	hex  string
	w, h int
	prof uint8
}{
	{"6742c01fd9005005bb0110000003001000000303c0f1832480", 1280, 720, 66},
	{"6742c01ed900a02ff970110000030001000003003c0f162e48", 640, 360, 66},
	{"6742c00dd901419f9f0110000003001000000303c0f142a480", 320, 180, 66},
	{"6742c028d900780227e5c044000003000400000300f03c60c920", 1920, 1080, 66},
	{"67640028acd940780227e5c044000003000400000300f03c60c658", 1920, 1080, 100},
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSPS(t *testing.T) {
	for _, v := range spsVectors {
		s, err := ParseSPS(unhex(t, v.hex))
		if err != nil {
			t.Fatalf("%s: %v", v.hex, err)
		}
		if s.Width != v.w || s.Height != v.h || s.Profile != v.prof {
			t.Errorf("%s: got %dx%d profile %d, want %dx%d profile %d", v.hex, s.Width, s.Height, s.Profile, v.w, v.h, v.prof)
		}
	}
	if _, err := ParseSPS([]byte{0x67, 0x42}); err == nil {
		t.Error("short sps accepted")
	}
	if _, err := ParseSPS(unhex(t, "68cb83cb20")); err == nil {
		t.Error("pps accepted as sps")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	var ps ParamSets
	sps, pps := unhex(t, spsVectors[4].hex), unhex(t, "68ebe3cb22c0")
	cfg, err := ps.Update([][]byte{sps, pps, {0x65, 1, 2}})
	if err != nil || cfg == nil {
		t.Fatalf("update: %v %v", cfg, err)
	}
	if again, _ := ps.Update([][]byte{sps, pps}); again != nil {
		t.Error("unchanged parameter sets reported as new")
	}
	rec := cfg.Record()
	back, err := ParseRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.SPS, sps) || !bytes.Equal(back.PPS, pps) || back.Info.Width != 1920 {
		t.Fatalf("round trip differs: %+v", back)
	}
	if rec[1] != 100 || len(rec) != 6+2+len(sps)+3+len(pps)+4 {
		t.Errorf("high-profile record lacks its extension: % x", rec)
	}
}

func TestFraming(t *testing.T) {
	nalus := [][]byte{{0x67, 1, 2, 3}, {0x68, 4}, {0x65, 0, 0, 1, 9}}
	got, ok := SplitAVCC(AVCC(nalus))
	if !ok || len(got) != 3 || !bytes.Equal(got[2], nalus[2]) {
		t.Fatalf("avcc round trip: %v %v", got, ok)
	}
	ab := SplitAnnexB(AnnexB([][]byte{{0x67, 1}, {0x68, 2}, {0x65, 3, 4}}))
	if len(ab) != 3 || !bytes.Equal(ab[2], []byte{0x65, 3, 4}) {
		t.Fatalf("annex b round trip: %x", ab)
	}
	if _, ok := SplitAVCC([]byte{0, 0, 0, 9, 1}); ok {
		t.Error("truncated avcc accepted")
	}
}

type pkt struct {
	seq    uint16
	ts     uint32
	marker bool
	pl     []byte
}

// packetize splits access units the way a WebRTC sender does (STAP-A for
// SPS+PPS, FU-A for large NAL units).
func packetize(aus [][][]byte, mtu uint16) []pkt {
	var pay codecs.H264Payloader
	var out []pkt
	seq := uint16(65530)
	ts := uint32(1 << 31)
	for _, au := range aus {
		var payloads [][]byte
		for _, p := range pay.Payload(mtu, AnnexB(au)) {
			payloads = append(payloads, append([]byte(nil), p...))
		}
		for i, p := range payloads {
			out = append(out, pkt{seq, ts, i == len(payloads)-1, p})
			seq++
		}
		ts += 3000
	}
	return out
}

func testAUs(n int) [][][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	sps, pps := []byte{0x67, 0x42, 0xc0, 0x1f, 0xd9, 0}, []byte{0x68, 0xcb, 0x83, 0xcb, 0x20}
	var aus [][][]byte
	for i := 0; i < n; i++ {
		size := 200 + r.IntN(3000)
		slice := make([]byte, size)
		for j := range slice {
			slice[j] = byte(r.UintN(256))
		}
		if i%10 == 0 {
			slice[0] = 0x65
			aus = append(aus, [][]byte{sps, pps, slice})
		} else {
			slice[0] = 0x41
			aus = append(aus, [][]byte{slice})
		}
	}
	return aus
}

func TestDepacketizeRoundTrip(t *testing.T) {
	aus := testAUs(40)
	d := NewDepacketizer()
	var got []*AccessUnit
	for _, p := range packetize(aus, 1200) {
		au, err := d.Push(p.seq, p.ts, p.marker, p.pl)
		if err != nil {
			t.Fatal(err)
		}
		if au != nil {
			got = append(got, au)
		}
	}
	if len(got) != len(aus) {
		t.Fatalf("got %d access units, want %d", len(got), len(aus))
	}
	for i, au := range got {
		if len(au.NALUs) != len(aus[i]) {
			t.Fatalf("unit %d: %d NAL units, want %d", i, len(au.NALUs), len(aus[i]))
		}
		for j := range au.NALUs {
			if !bytes.Equal(au.NALUs[j], aus[i][j]) {
				t.Fatalf("unit %d nal %d differs", i, j)
			}
		}
		if au.Key != (i%10 == 0) {
			t.Errorf("unit %d key=%v", i, au.Key)
		}
	}
}

func TestDepacketizeLossWaitsForKeyframe(t *testing.T) {
	aus := testAUs(25)
	pkts := packetize(aus, 1200)
	// Drop one packet of unit 3 (a delta frame).
	var drop int
	for i, p := range pkts {
		if p.ts == uint32(1<<31)+3*3000 {
			drop = i
			break
		}
	}
	pkts = append(pkts[:drop:drop], pkts[drop+1:]...)
	d := NewDepacketizer()
	var got []uint32
	lost := false
	for _, p := range pkts {
		au, err := d.Push(p.seq, p.ts, p.marker, p.pl)
		if errors.Is(err, ErrLoss) {
			lost = true
		}
		if au != nil {
			got = append(got, (au.Timestamp-uint32(1<<31))/3000)
		}
	}
	if !lost {
		t.Fatal("loss not reported")
	}
	// Units 0-2 decode; 3-9 are dropped; from the keyframe at 10 on all.
	want := []uint32{0, 1, 2}
	for i := uint32(10); i < 25; i++ {
		want = append(want, i)
	}
	if len(got) != len(want) {
		t.Fatalf("got units %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got units %v, want %v", got, want)
		}
	}
}

func TestDepacketizeStartsOnKeyframeAndRejectsJunk(t *testing.T) {
	aus := testAUs(12)
	pkts := packetize(aus, 1200)
	d := NewDepacketizer()
	n := 0
	// Start in the middle of unit 1: nothing before unit 10 comes out.
	start := 0
	for i, p := range pkts {
		if p.ts == uint32(1<<31)+3000 {
			start = i + 1
			break
		}
	}
	for _, p := range pkts[start:] {
		au, _ := d.Push(p.seq, p.ts, p.marker, p.pl)
		if au != nil {
			if n == 0 && !au.Key {
				t.Fatal("first unit is not a keyframe")
			}
			n++
		}
	}
	if n != 2 {
		t.Fatalf("got %d units, want 2", n)
	}
	for _, junk := range [][]byte{nil, {0x7c}, {0x78, 0, 9, 1}, {0x7d, 0x85}} {
		_, _ = d.Push(pkts[0].seq, 5, true, junk) // must not panic
	}
}

// TestDepacketizeMarkerlessUnitNotLost: a unit that ends without a
// marker (the sender sets none, or sets it only on the last unit of a
// burst) is closed by the next unit's new timestamp. When that next unit
// is a single packet with the marker, both are complete at once: the
// earlier comes out first, the later with the next packet, none is lost.
func TestDepacketizeMarkerlessUnitNotLost(t *testing.T) {
	sps := []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8}
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	idr, p1, p2 := []byte{0x65, 0x88, 0x84}, []byte{0x41, 0x9a, 0x02}, []byte{0x41, 0x9a, 0x04}
	d := NewDepacketizer()
	var got [][]byte
	for i, pk := range []struct {
		ts     uint32
		marker bool
		pl     []byte
	}{
		{1000, false, sps}, {1000, false, pps}, {1000, false, idr}, // no marker
		{4000, true, p1},
		{7000, true, p2},
	} {
		au, err := d.Push(uint16(100+i), pk.ts, pk.marker, pk.pl)
		if err != nil {
			t.Fatal(err)
		}
		if au != nil {
			got = append(got, au.NALUs[len(au.NALUs)-1])
		}
	}
	if len(got) != 2 || !bytes.Equal(got[0], idr) || !bytes.Equal(got[1], p1) {
		t.Fatalf("got units ending in %x, want the IDR then the first P frame (the second waits)", got)
	}
}

func BenchmarkDepacketize(b *testing.B) {
	pkts := packetize(testAUs(300), 1200)
	bytes := 0
	for _, p := range pkts {
		bytes += len(p.pl)
	}
	b.SetBytes(int64(bytes))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		d := NewDepacketizer()
		base := uint16(i * len(pkts))
		for _, p := range pkts {
			_, _ = d.Push(p.seq+base, p.ts, p.marker, p.pl)
		}
	}
}

// TestDimensionsFromPayload: the SFU's reading of a keyframe's picture
// size (an SPS alone, or first in a STAP-A) agrees with ParseSPS and
// allocates nothing.
func TestDimensionsFromPayload(t *testing.T) {
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	for _, v := range spsVectors {
		sps := unhex(t, v.hex)
		stap := append([]byte{0x78, byte(len(sps) >> 8), byte(len(sps))}, sps...)
		stap = append(stap, 0, byte(len(pps)))
		stap = append(stap, pps...)
		for _, p := range [][]byte{sps, stap} {
			w, h, ok := Dimensions(p)
			if !ok || w != v.w || h != v.h {
				t.Errorf("Dimensions(%x) = %dx%d %v, want %dx%d", p, w, h, ok, v.w, v.h)
			}
			if n := testing.AllocsPerRun(50, func() { Dimensions(p) }); n != 0 {
				t.Errorf("Dimensions(%x): %v allocations", p, n)
			}
		}
	}
	for _, p := range [][]byte{nil, {0x67}, {0x65, 0x88, 0x84}, pps, {0x78, 0, 9, 0x67, 0x42}} {
		if _, _, ok := Dimensions(p); ok {
			t.Errorf("Dimensions(%x) gave a picture", p)
		}
	}
}

// TestParseSPSEmulationPrevention: an SPS whose RBSP holds runs of zero
// bytes, escaped with 03 as an encoder must, reads as the RBSP says (the
// reader steps over the escapes, in the fields before the picture size).
func TestParseSPSEmulationPrevention(t *testing.T) {
	var w rbspWriter
	w.ue(0)         // seq_parameter_set_id
	w.ue(0)         // log2_max_frame_num_minus4
	w.ue(0)         // pic_order_cnt_type
	w.ue(0)         // log2_max_pic_order_cnt_lsb_minus4
	w.ue(1<<30 - 1) // max_num_ref_frames: 30 zero bits, 1, 30 zero bits
	w.u(1, 0)       // gaps_in_frame_num_value_allowed_flag
	w.ue(1280/16 - 1)
	w.ue(720/16 - 1)
	w.u(1, 1) // frame_mbs_only_flag
	w.u(1, 1) // direct_8x8_inference_flag
	w.u(1, 0) // frame_cropping_flag
	w.u(1, 0) // vui_parameters_present_flag
	w.u(1, 1) // rbsp_stop_one_bit
	rbsp := w.bytes()
	nalu := append([]byte{0x67, 66, 0xc0, 31}, escape(rbsp)...)
	if len(nalu) == 4+len(rbsp) {
		t.Fatalf("RBSP %x needs no escape: the test proves nothing", rbsp)
	}
	s, err := ParseSPS(nalu)
	if err != nil {
		t.Fatalf("ParseSPS(%x): %v", nalu, err)
	}
	if s.Width != 1280 || s.Height != 720 {
		t.Fatalf("ParseSPS(%x) = %dx%d, want 1280x720", nalu, s.Width, s.Height)
	}
	if w, h, ok := Dimensions(nalu); !ok || w != 1280 || h != 720 {
		t.Fatalf("Dimensions = %dx%d %v, want 1280x720", w, h, ok)
	}
}

// rbspWriter writes bits and Exp-Golomb codes, as an encoder does.
type rbspWriter struct {
	b []byte
	n int // bits written
}

func (w *rbspWriter) u(n int, v uint) {
	for i := n - 1; i >= 0; i-- {
		if w.n%8 == 0 {
			w.b = append(w.b, 0)
		}
		w.b[len(w.b)-1] |= byte(v>>i&1) << (7 - w.n%8)
		w.n++
	}
}

func (w *rbspWriter) ue(v uint) {
	n := 0
	for x := v + 1; x > 1; x >>= 1 {
		n++
	}
	w.u(n, 0)
	w.u(n+1, v+1)
}

func (w *rbspWriter) bytes() []byte { return w.b }

// escape inserts emulation-prevention bytes: 03 after 00 00 when the
// next byte is 00 to 03 (H.264 §7.4.1).
func escape(rbsp []byte) []byte {
	var out []byte
	zeros := 0
	for _, c := range rbsp {
		if zeros >= 2 && c <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}
