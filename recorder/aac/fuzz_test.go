package aac

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzParseConfig: an AudioSpecificConfig that parses (seed: ffmpeg's, in
// testdata/fuzz) is written back by Bytes to one that parses the same.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte{0x11, 0x90})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if c.ObjectType < 1 || c.ObjectType > 30 || c.Channels < 0 || c.Channels > 15 {
			t.Fatalf("config %+v", c)
		}
		enc, err := c.Bytes()
		if err != nil {
			t.Fatalf("Bytes: %v", err)
		}
		back, err := ParseConfig(enc)
		if err != nil || back != c {
			t.Fatalf("%+v written as %x reads %+v (%v)", c, enc, back, err)
		}
	})
}

// FuzzSplitADTS splits ADTS frames (seeds: ffmpeg's AAC at 48 and
// 22.05 kHz, in testdata/fuzz). The frames lie within the input, and
// framing them again with AppendADTS splits to the same frames and
// configuration.
func FuzzSplitADTS(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, frames, err := SplitADTS(b)
		if err != nil || len(frames) == 0 {
			return
		}
		total := 0
		for _, fr := range frames {
			total += len(fr) + ADTSHeaderSize
		}
		if total > len(b) {
			t.Fatalf("%d bytes of frames and headers from %d bytes", total, len(b))
		}
		var out []byte
		for _, fr := range frames {
			if out, err = cfg.AppendADTS(out, fr); err != nil {
				t.Fatalf("AppendADTS: %v", err)
			}
		}
		cfg2, frames2, err := SplitADTS(out)
		if err != nil || cfg2 != cfg || !slices.EqualFunc(frames, frames2, bytes.Equal) {
			t.Fatalf("ADTS round trip: %+v became %+v (%v)", cfg, cfg2, err)
		}
	})
}
