package vp8

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseMinimal(t *testing.T) {
	// No X bit: one byte, S=1, PID=0, then the VP8 frame tag.
	var d Descriptor
	if err := Parse([]byte{0x10, 0x9d}, &d); err != nil {
		t.Fatal(err)
	}
	if !d.Start || d.PartID != 0 || d.HasPictureID || d.HasTID || d.Size != 1 {
		t.Fatalf("got %+v", d)
	}
}

func TestParseAllFields(t *testing.T) {
	// X=1 N=1 S=1 PID=2; I L T K; M=1 picture id 0x1234; TL0PICIDX 0xfe;
	// TID=2 Y=1 KEYIDX=5; then one payload byte.
	p := []byte{0xb2, 0xf0, 0x92, 0x34, 0xfe, 0x80 | 0x20 | 0x05, 0xaa}
	var d Descriptor
	if err := Parse(p, &d); err != nil {
		t.Fatal(err)
	}
	want := Descriptor{Start: true, NonRef: true, PartID: 2,
		HasPictureID: true, LongPictureID: true, PictureID: 0x1234,
		HasTL0PICIDX: true, TL0PICIDX: 0xfe,
		HasTID: true, TID: 2, LayerSync: true,
		HasKeyIdx: true, KeyIdx: 5, Size: 6, picOff: 2, tl0Off: 4}
	if d != want {
		t.Fatalf("got  %+v\nwant %+v", d, want)
	}
}

func TestParseShortPictureIDAndTIDOnly(t *testing.T) {
	// I with M=0 (7-bit id 0x55), T without L or K: TID=1 Y=0.
	p := []byte{0x90, 0xa0, 0x55, 0x40, 0x00}
	var d Descriptor
	if err := Parse(p, &d); err != nil {
		t.Fatal(err)
	}
	if !d.HasPictureID || d.LongPictureID || d.PictureID != 0x55 || d.HasTL0PICIDX ||
		!d.HasTID || d.TID != 1 || d.LayerSync || d.HasKeyIdx || d.Size != 4 {
		t.Fatalf("got %+v", d)
	}
	if d.PictureIDMask() != 0x7f {
		t.Fatalf("mask %#x", d.PictureIDMask())
	}
}

func TestParseKeyIdxWithoutTID(t *testing.T) {
	// K alone still takes the TID/Y/KEYIDX byte; TID must not be read.
	p := []byte{0x90, 0x10, 0xc7, 0x00}
	var d Descriptor
	if err := Parse(p, &d); err != nil {
		t.Fatal(err)
	}
	if d.HasTID || !d.HasKeyIdx || d.KeyIdx != 7 || d.Size != 3 {
		t.Fatalf("got %+v", d)
	}
}

func TestParseShort(t *testing.T) {
	full := []byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0x40}
	for n := 0; n < len(full); n++ {
		var d Descriptor
		if err := Parse(full[:n], &d); !errors.Is(err, ErrShort) {
			t.Errorf("%d bytes: err %v, want ErrShort", n, err)
		}
	}
	var d Descriptor
	if err := Parse(full, &d); err != nil || d.Size != 6 {
		t.Fatalf("full: %v %+v", err, d)
	}
}

func TestRewrite(t *testing.T) {
	p := []byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0x40, 0xaa, 0xbb}
	orig := append([]byte(nil), p...)
	var d Descriptor
	if err := Parse(p, &d); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(p))
	copy(buf, p)
	d.SetPictureID(buf, 0x8001) // wraps to 15 bits
	d.SetTL0PICIDX(buf, 0x99)
	if !bytes.Equal(p, orig) {
		t.Fatal("the source payload changed")
	}
	var e Descriptor
	if err := Parse(buf, &e); err != nil {
		t.Fatal(err)
	}
	if e.PictureID != 0x0001 || !e.LongPictureID || e.TL0PICIDX != 0x99 || e.TID != 1 || e.Size != d.Size {
		t.Fatalf("rewritten: %+v", e)
	}
	if !bytes.Equal(buf[d.Size:], p[d.Size:]) {
		t.Fatal("the VP8 bitstream changed")
	}

	// A 7-bit id stays 7 bits wide and wraps there.
	s := []byte{0x90, 0x80, 0x7f, 0x00}
	if err := Parse(s, &d); err != nil {
		t.Fatal(err)
	}
	d.SetPictureID(s, 0x80)
	d.SetTL0PICIDX(s, 5) // absent: must not write anywhere
	if !bytes.Equal(s, []byte{0x90, 0x80, 0x00, 0x00}) {
		t.Fatalf("7-bit rewrite: % x", s)
	}
}

func TestAppendRoundTrip(t *testing.T) {
	cases := []Descriptor{
		{Start: true},
		{Start: true, HasPictureID: true, LongPictureID: true, PictureID: 0x7abc, HasTL0PICIDX: true, TL0PICIDX: 3, HasTID: true, TID: 2, LayerSync: true},
		{PartID: 1, NonRef: true, HasPictureID: true, PictureID: 0x12, HasTID: true, TID: 1},
		{HasKeyIdx: true, KeyIdx: 31},
	}
	for _, c := range cases {
		b := Append(nil, &c)
		var d Descriptor
		if err := Parse(b, &d); err != nil {
			t.Fatal(err)
		}
		d.Size, d.picOff, d.tl0Off = 0, 0, 0
		if d != c {
			t.Errorf("round trip of %+v gave %+v", c, d)
		}
	}
}

func TestParseAllocates(t *testing.T) {
	p := []byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0x40, 0xaa}
	buf := make([]byte, len(p))
	var d Descriptor
	n := testing.AllocsPerRun(100, func() {
		_ = Parse(p, &d)
		copy(buf, p)
		d.SetPictureID(buf, d.PictureID+1)
		d.SetTL0PICIDX(buf, d.TL0PICIDX+1)
	})
	if n != 0 {
		t.Fatalf("%v allocations per parse and rewrite", n)
	}
}

func BenchmarkParse(b *testing.B) {
	p := []byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0x40, 0xaa}
	var d Descriptor
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := Parse(p, &d); err != nil || d.TID != 1 {
			b.Fatal(err)
		}
	}
}
