package mpegts

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder/aac"
)

func TestPacketsAreWellFormed(t *testing.T) {
	var buf bytes.Buffer
	m := NewMuxer(&buf, true, true)
	if err := m.WriteTables(); err != nil {
		t.Fatal(err)
	}
	// Every payload size around the packet boundaries.
	for n := 1; n < 600; n++ {
		if err := m.WriteVideo(90000, n%7 == 0, bytes.Repeat([]byte{0xab}, n)); err != nil {
			t.Fatal(err)
		}
		if err := m.WriteAudio(90000, bytes.Repeat([]byte{0xcd}, n)); err != nil {
			t.Fatal(err)
		}
	}
	b := buf.Bytes()
	if len(b)%PacketSize != 0 {
		t.Fatalf("%d bytes is not whole packets", len(b))
	}
	cc := map[int]int{}
	for i := 0; i < len(b); i += PacketSize {
		p := b[i : i+PacketSize]
		if p[0] != 0x47 {
			t.Fatalf("packet %d: no sync byte", i/PacketSize)
		}
		pid := int(p[1]&0x1f)<<8 | int(p[2])
		c := int(p[3] & 0xf)
		if prev, ok := cc[pid]; ok && c != (prev+1)&0xf {
			t.Fatalf("pid %x: continuity %d after %d", pid, c, prev)
		}
		cc[pid] = c
		if p[3]&0x20 != 0 && int(p[4]) > 183 {
			t.Fatalf("adaptation field of %d bytes", p[4])
		}
	}
}

// TestSegmentWithFFmpegMedia muxes real H.264 and AAC into a transport
// stream that ffprobe and ffmpeg must accept.
func TestSegmentWithFFmpegMedia(t *testing.T) {
	dir := t.TempDir()
	vid, _ := mediatest.FlashBeep(t, dir, 640, 360, 2)
	adts := filepath.Join(dir, "a.aac")
	mediatest.Run(t, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2", "-ac", "2", "-c:a", "aac", "-f", "adts", adts)
	raw, _ := os.ReadFile(adts)
	cfg, frames, err := aac.SplitADTS(raw)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	m := NewMuxer(&buf, true, true)
	if err := m.WriteTables(); err != nil {
		t.Fatal(err)
	}
	ai := 0
	aud := []byte{0x09, 0xf0}
	for i, au := range mediatest.ReadH264(t, vid) {
		pts := int64(90000 + i*3000)
		for ai < len(frames) && int64(90000+ai*1024*90000/48000) <= pts {
			b, _ := cfg.AppendADTS(nil, frames[ai])
			if err := m.WriteAudio(int64(90000+ai*1024*90000/48000), b); err != nil {
				t.Fatal(err)
			}
			ai++
		}
		nalus := append([][]byte{aud}, h264.SplitAnnexB(au)...)
		if err := m.WriteVideo(pts, h264.IsKey(nalus), h264.AnnexB(nalus)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "seg.ts")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	p := mediatest.ProbeFile(t, path)
	if p.Codecs() != "h264+aac" || math.Abs(p.Duration()-2) > 0.15 {
		t.Fatalf("ffprobe: %s %.3fs", p.Codecs(), p.Duration())
	}
	if e := mediatest.DecodeErrors(t, path); e != "" {
		t.Fatalf("decode errors:\n%s", e)
	}
}

func BenchmarkWriteVideo(b *testing.B) {
	m := NewMuxer(discard{}, true, true)
	au := bytes.Repeat([]byte{1}, 16000) // 4 Mbit/s at 30 fps
	b.SetBytes(int64(len(au)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = m.WriteVideo(int64(i)*3000, false, au)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
