package flv

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder/aac"
	"github.com/matinee-dev/matinee/recorder/amf0"
)

func TestTagRoundTrip(t *testing.T) {
	b := AppendHeader(nil, true, true)
	tags := []Tag{
		{TagVideo, 0, AVCSequenceHeader([]byte{1, 2, 3})},
		{TagVideo, 40, AVCFrame(true, -2, []byte{0, 0, 0, 1, 0x65})},
		{TagAudio, 0x01020304, AACFrame([]byte{9, 9})},
	}
	for _, tg := range tags {
		b = AppendTag(b, tg)
	}
	r, err := NewReader(bytes.NewReader(b))
	if err != nil || !r.Video || !r.Audio {
		t.Fatalf("reader: %v %+v", err, r)
	}
	for i, want := range tags {
		got, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got.Type != want.Type || got.Timestamp != want.Timestamp || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("tag %d: got %+v want %+v", i, got, want)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after last tag: %v", err)
	}
	v, err := ParseVideo(tags[1].Data)
	if err != nil || !v.Key || v.CTS != -2 || v.PacketType != AVCNALU {
		t.Fatalf("parse video: %+v %v", v, err)
	}
	a, err := ParseAudio(tags[2].Data)
	if err != nil || a.PacketType != AACRaw || !bytes.Equal(a.Data, []byte{9, 9}) {
		t.Fatalf("parse audio: %+v %v", a, err)
	}
	// Cut inside the last tag: the reader says so.
	r, _ = NewReader(bytes.NewReader(b[:len(b)-3]))
	var last error
	for last == nil {
		_, last = r.Next()
	}
	if !errors.Is(last, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", last)
	}
}

// TestFileWithFFmpegMedia muxes real H.264 and AAC and has ffprobe and
// ffmpeg check the result, including a copy cut in the middle of a tag.
func TestFileWithFFmpegMedia(t *testing.T) {
	dir := t.TempDir()
	vid, _ := mediatest.FlashBeep(t, dir, 320, 180, 3)
	adts := filepath.Join(dir, "a.aac")
	mediatest.Run(t, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "3", "-ac", "2", "-c:a", "aac", "-f", "adts", adts)
	raw, err := os.ReadFile(adts)
	if err != nil {
		t.Fatal(err)
	}
	acfg, frames, err := aac.SplitADTS(raw)
	if err != nil {
		t.Fatal(err)
	}
	asc, _ := acfg.Bytes()

	path := filepath.Join(dir, "out.flv")
	f, err := Create(path, true, true, amf0.ECMAArray{{Key: "videocodecid", Value: 7.0}, {Key: "audiocodecid", Value: 10.0}})
	if err != nil {
		t.Fatal(err)
	}
	var ps h264.ParamSets
	aus := mediatest.ReadH264(t, vid)
	ai := 0
	if err := f.WriteTag(Tag{Type: TagAudio, Data: AACSequenceHeader(asc)}); err != nil {
		t.Fatal(err)
	}
	for i, au := range aus {
		ms := uint32(i * 1000 / 30)
		nalus := h264.SplitAnnexB(au)
		if cfg, err := ps.Update(nalus); err != nil {
			t.Fatal(err)
		} else if cfg != nil {
			if err := f.WriteTag(Tag{Type: TagVideo, Timestamp: ms, Data: AVCSequenceHeader(cfg.Record())}); err != nil {
				t.Fatal(err)
			}
		}
		for ai < len(frames) && ai*1024*1000/48000 <= int(ms) {
			if err := f.WriteTag(Tag{Type: TagAudio, Timestamp: uint32(ai * 1024 * 1000 / 48000), Data: AACFrame(frames[ai])}); err != nil {
				t.Fatal(err)
			}
			ai++
		}
		if err := f.WriteTag(Tag{Type: TagVideo, Timestamp: ms, Data: AVCFrame(h264.IsKey(nalus), 0, h264.AVCC(nalus))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	p := mediatest.ProbeFile(t, path)
	if p.Codecs() != "h264+aac" || math.Abs(p.Duration()-3) > 0.2 {
		t.Fatalf("ffprobe: %s, %.2fs", p.Codecs(), p.Duration())
	}
	if v := p.Video(); v.Width != 320 || v.Height != 180 {
		t.Errorf("size %dx%d", v.Width, v.Height)
	}
	if e := mediatest.DecodeErrors(t, path); e != "" {
		t.Fatalf("decode errors:\n%s", e)
	}

	// A file cut inside a tag (as by a crash of the machine) still probes.
	full, _ := os.ReadFile(path)
	cut := filepath.Join(dir, "cut.flv")
	if err := os.WriteFile(cut, full[:len(full)*2/3+7], 0o644); err != nil {
		t.Fatal(err)
	}
	if p := mediatest.ProbeFile(t, cut); p.Codecs() != "h264+aac" {
		t.Fatalf("cut file: %s", p.Codecs())
	}
}

// TestReaderTruncatedBigTag: a stream that announces a tag of almost
// 16 MiB and ends after its header is an unexpected EOF, and reading it
// costs what arrived, not what was announced.
func TestReaderTruncatedBigTag(t *testing.T) {
	b := AppendHeader(nil, true, false)
	b = append(b, TagVideo, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Next: %v, want unexpected EOF", err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("reading a %d-byte stream allocated %d bytes", len(b), got)
	}
}
