package vp9

import (
	"testing"

	"github.com/pion/rtp/codecs"
)

// FuzzParse reads a VP9 payload descriptor (seeds: pion's VP9 payloader
// over ffmpeg's frames, in testdata/fuzz, and descriptors of every
// shape below). Parse accepts exactly what pion's VP9Packet.Unmarshal
// accepts and reads the same fields and the same payload; IsKeyframe
// agrees with what Parse reads.
func FuzzParse(f *testing.F) {
	for _, p := range descriptorShapes {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var d Descriptor
		err := Parse(p, &d)
		var pp codecs.VP9Packet
		payload, perr := pp.Unmarshal(p)
		if (err == nil) != (perr == nil) {
			t.Fatalf("Parse(%x): %v, pion: %v", p, err, perr)
		}
		if err != nil {
			return
		}
		if d.Size > len(p) || len(payload) != len(p)-d.Size {
			t.Fatalf("Parse(%x): descriptor of %d bytes, pion's payload starts at %d", p, d.Size, len(p)-len(payload))
		}
		same := d.HasPictureID == pp.I && d.Inter == pp.P && d.HasLayers == pp.L && d.Flexible == pp.F &&
			d.Start == pp.B && d.End == pp.E && d.HasSS == pp.V && d.NotRef == pp.Z &&
			d.PictureID == pp.PictureID && d.TID == pp.TID && d.SwitchUp == pp.U && d.SID == pp.SID &&
			d.InterLayer == pp.D && d.TL0PICIDX == pp.TL0PICIDX && d.NumPDiff == len(pp.PDiff)
		for i := 0; same && i < d.NumPDiff; i++ {
			same = d.PDiff[i] == pp.PDiff[i]
		}
		if d.HasSS {
			same = same && d.NumSS == int(pp.NS)+1 && d.HasSizes == pp.Y
			for i := 0; same && d.HasSizes && i < d.NumSS; i++ {
				same = d.Width[i] == pp.Width[i] && d.Height[i] == pp.Height[i]
			}
		}
		if !same {
			t.Fatalf("Parse(%x) = %+v, pion reads %+v", p, d, pp)
		}
		wantKey := d.Start && !d.Inter && (!d.HasLayers || d.SID == 0)
		if IsKeyframe(p) != wantKey {
			t.Fatalf("IsKeyframe(%x) = %v, Parse says %v", p, !wantKey, wantKey)
		}
	})
}

// descriptorShapes: one descriptor of each shape RFC 9628 allows.
var descriptorShapes = [][]byte{
	{0x08, 0xaa},                         // B only: keyframe start, no ids
	{0x88, 0x17, 0xaa},                   // 7-bit picture id
	{0xac, 0x81, 0x23, 0x40, 0x07},       // 15-bit picture id, layers (TID 2), TL0PICIDX, B E
	{0xb8, 0x85, 0x00, 0x22},             // flexible, layers SID 1
	{0xf8, 0x05, 0x20, 0x03, 0x04, 0xaa}, // flexible inter frame, two P_DIFFs
	// Scalability structure: 2 spatial layers with sizes, 1 picture group
	// with one reference.
	{0x8a, 0x01, 0x38, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68, 0x01, 0x04, 0x01, 0xaa},
}

func TestParseShapes(t *testing.T) {
	var d Descriptor
	if err := Parse(descriptorShapes[2], &d); err != nil {
		t.Fatal(err)
	}
	if !d.LongPictureID || d.PictureID != 0x123 || d.TID != 2 || d.TL0PICIDX != 7 || !d.Start || !d.End || d.Size != 5 {
		t.Errorf("15-bit id, layers: %+v", d)
	}
	if err := Parse(descriptorShapes[4], &d); err != nil {
		t.Fatal(err)
	}
	if d.NumPDiff != 2 || d.PDiff[0] != 1 || d.PDiff[1] != 2 || d.Size != 5 {
		t.Errorf("flexible references: %+v", d)
	}
	if err := Parse(descriptorShapes[5], &d); err != nil {
		t.Fatal(err)
	}
	if !d.HasSS || d.NumSS != 2 || d.Width[0] != 320 || d.Height[0] != 180 || d.Width[1] != 640 || d.Height[1] != 360 || d.Size != 14 {
		t.Errorf("scalability structure: %+v", d)
	}
	for _, short := range [][]byte{nil, {0x80}, {0x80, 0x81}, {0x20}, {0x20, 0x00}, {0x50}, {0x02}, {0x02, 0x10, 0x01}} {
		if err := Parse(short, &d); err == nil {
			t.Errorf("Parse(%x) accepted a truncated descriptor", short)
		}
	}
	if err := Parse([]byte{0x30, 0x0a}, &d); err != ErrLayers {
		t.Errorf("spatial layer 5: %v, want ErrLayers", err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Parse(descriptorShapes[5], &d) }); n != 0 {
		t.Errorf("%v allocations per Parse", n)
	}
}

func BenchmarkParse(b *testing.B) {
	p := descriptorShapes[2]
	var d Descriptor
	b.ReportAllocs()
	for b.Loop() {
		if err := Parse(p, &d); err != nil {
			b.Fatal(err)
		}
	}
}
