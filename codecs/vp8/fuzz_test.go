package vp8

import (
	"bytes"
	"testing"
)

// FuzzParse reads a VP8 payload descriptor (seeds: pion's VP8 payloader
// over ffmpeg's frames, in testdata/fuzz). A descriptor that parses lies
// within the payload, Append writes it back to something that parses to
// the same fields, and the setters change only their own field. The
// keyframe test, which only skips the descriptor, agrees with Parse and
// finds the bitstream where Parse does.
func FuzzParse(f *testing.F) {
	f.Add([]byte{0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x9d})
	f.Fuzz(func(t *testing.T, p []byte) {
		var d Descriptor
		err := Parse(p, &d)
		wantKey := err == nil && d.Size < len(p) && d.Start && d.PartID&0x07 == 0 && p[d.Size]&1 == 0
		got := keyframeStart(p)
		if wantKey && got != d.Size || !wantKey && got != -1 {
			t.Fatalf("keyframeStart(%x) = %d; Parse says keyframe %v at %d (%v)", p, got, wantKey, d.Size, err)
		}
		if IsKeyframe(p) != wantKey {
			t.Fatalf("IsKeyframe(%x) = %v, Parse says %v", p, !wantKey, wantKey)
		}
		if err != nil {
			return
		}
		if d.Size < 1 || d.Size > len(p) {
			t.Fatalf("descriptor of %d bytes in a %d-byte payload", d.Size, len(p))
		}
		enc := Append(nil, &d)
		var back Descriptor
		if err := Parse(enc, &back); err != nil {
			t.Fatalf("Append wrote %x, which does not parse: %v", enc, err)
		}
		// Append leaves out an extension byte that announces nothing.
		canon := d
		canon.Size = len(enc)
		if back != canon || len(enc) > d.Size {
			t.Fatalf("%+v written as %x reads %+v", d, enc, back)
		}

		q := bytes.Clone(p)
		d.SetPictureID(q, d.PictureID+1000)
		d.SetTL0PICIDX(q, d.TL0PICIDX+7)
		var set Descriptor
		if err := Parse(q, &set); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(q[d.Size:], p[d.Size:]) {
			t.Fatal("a setter wrote past the descriptor")
		}
		want := d
		if d.HasPictureID {
			want.PictureID = (d.PictureID + 1000) & d.PictureIDMask()
		}
		if d.HasTL0PICIDX {
			want.TL0PICIDX = d.TL0PICIDX + 7
		}
		if set != want {
			t.Fatalf("after the setters %+v, want %+v", set, want)
		}
	})
}
