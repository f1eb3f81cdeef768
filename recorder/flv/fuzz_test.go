package flv

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader reads an FLV stream (seed: the start of a file ffmpeg made,
// H.264 and AAC, in testdata/fuzz). Tags written back with AppendTag read
// the same, and AVC and AAC bodies parse to what their builders rebuild
// byte for byte.
func FuzzReader(f *testing.F) {
	f.Add(AppendTag(AppendHeader(nil, true, true), Tag{Type: TagVideo, Timestamp: 1 << 25, Data: AVCFrame(true, -40, []byte{0, 0, 0, 1, 0x65})}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		var tags []Tag
		for {
			tg, err := r.Next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("stream ended by %v", err)
				}
				break
			}
			if len(tg.Data)+11 > len(b) {
				t.Fatalf("tag of %d bytes from %d bytes", len(tg.Data), len(b))
			}
			tags = append(tags, tg)
			checkBody(t, tg)
		}
		out := AppendHeader(nil, r.Video, r.Audio)
		for _, tg := range tags {
			out = AppendTag(out, tg)
		}
		r2, err := NewReader(bytes.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		if r2.Video != r.Video || r2.Audio != r.Audio {
			t.Fatal("header flags changed")
		}
		for i, want := range tags {
			got, err := r2.Next()
			if err != nil || got.Type != want.Type || got.Timestamp != want.Timestamp || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("tag %d rewritten reads %+v (%v), want %+v", i, got, err, want)
			}
		}
		if _, err := r2.Next(); err != io.EOF {
			t.Fatalf("after the last tag: %v, want EOF", err)
		}
	})
}

func checkBody(t *testing.T, tg Tag) {
	switch tg.Type {
	case TagVideo:
		v, err := ParseVideo(tg.Data)
		if err != nil {
			return
		}
		if v.CTS < -1<<23 || v.CTS >= 1<<23 {
			t.Fatalf("composition time %d out of 24 bits", v.CTS)
		}
		if ft := tg.Data[0] >> 4; v.PacketType == AVCNALU && (ft == 1 || ft == 2) {
			if again := AVCFrame(v.Key, v.CTS, v.Data); !bytes.Equal(again, tg.Data) {
				t.Fatalf("video body %x rebuilt as %x", tg.Data, again)
			}
		}
	case TagAudio:
		a, err := ParseAudio(tg.Data)
		if err != nil {
			return
		}
		if a.PacketType == AACRaw && tg.Data[0] == aacFlags {
			if again := AACFrame(a.Data); !bytes.Equal(again, tg.Data) {
				t.Fatalf("audio body %x rebuilt as %x", tg.Data, again)
			}
		}
	}
}
