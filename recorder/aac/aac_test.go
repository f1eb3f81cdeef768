package aac

import (
	"bytes"
	"testing"
)

func TestConfigAndADTS(t *testing.T) {
	c := Config{ObjectType: 2, SampleRate: 48000, Channels: 2}
	asc, err := c.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// 48 kHz stereo AAC-LC is 0x11 0x90 in every FLV and MP4.
	if !bytes.Equal(asc, []byte{0x11, 0x90}) {
		t.Fatalf("asc = % x", asc)
	}
	back, err := ParseConfig(asc)
	if err != nil || back != c {
		t.Fatalf("parse: %+v %v", back, err)
	}
	var stream []byte
	frames := [][]byte{bytes.Repeat([]byte{1}, 300), bytes.Repeat([]byte{2}, 5), bytes.Repeat([]byte{3}, 2000)}
	for _, f := range frames {
		if stream, err = c.AppendADTS(stream, f); err != nil {
			t.Fatal(err)
		}
	}
	got, raw, err := SplitADTS(stream)
	if err != nil || got != c || len(raw) != 3 || !bytes.Equal(raw[2], frames[2]) {
		t.Fatalf("split: %+v %d %v", got, len(raw), err)
	}
	if _, _, err := SplitADTS(stream[:10]); err == nil {
		t.Error("truncated ADTS accepted")
	}
	if _, err := (Config{ObjectType: 2, SampleRate: 12345, Channels: 2}).Bytes(); err == nil {
		t.Error("odd sample rate accepted")
	}
}
