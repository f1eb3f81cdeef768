package transcode

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder/flv"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOggPagesReadBack(t *testing.T) {
	var buf bytes.Buffer
	w, err := newOggOpusWriter(&buf, 2)
	if err != nil {
		t.Fatal(err)
	}
	pkt := []byte{0xfc, 1, 2, 3} // CELT 20 ms, one frame
	for i := 0; i < 5; i++ {
		ts := uint32(4294967000 + i*960) // wraps
		if i >= 3 {
			ts += 960 * 2 // a gap
		}
		if err := w.WritePacket(ts, pkt); err != nil {
			t.Fatal(err)
		}
	}
	r, hdr, err := oggreader.NewWith(bytes.NewReader(buf.Bytes())) // checks CRCs
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Channels != 2 || hdr.PreSkip != 0 || hdr.SampleRate != 48000 {
		t.Fatalf("head %+v", hdr)
	}
	var granules []uint64
	for {
		_, ph, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		granules = append(granules, ph.GranulePosition)
	}
	want := []uint64{0, 960, 1920, 2880, 5760, 6720}[:6]
	if len(granules) != len(want) {
		t.Fatalf("granules %v, want %v", granules, want)
	}
	for i := range want {
		if granules[i] != want[i] {
			t.Fatalf("granules %v, want %v", granules, want)
		}
	}
	for _, c := range []struct {
		p []byte
		n int
	}{{[]byte{0x08}, 960}, {[]byte{0x00}, 480}, {[]byte{0x19}, 5760}, {[]byte{0xfb, 0x03}, 2880}, {[]byte{0x78}, 960}} {
		if got := opusSamples(c.p); got != c.n {
			t.Errorf("opusSamples(% x) = %d, want %d", c.p, got, c.n)
		}
	}
}

func TestIVFHeader(t *testing.T) {
	var buf bytes.Buffer
	w, err := newIVFWriter(&buf, "VP80", 640, 360)
	if err != nil {
		t.Fatal(err)
	}
	_ = w.WriteFrame(1000, []byte{1, 2, 3})
	_ = w.WriteFrame(4000, []byte{4})
	r, h, err := ivfreader.NewWith(bytes.NewReader(buf.Bytes()))
	if err != nil || h.FourCC != "VP80" || h.TimebaseDenominator != 90000 {
		t.Fatalf("header %+v %v", h, err)
	}
	_, fh, _ := r.ParseNextFrame()
	_, fh2, err := r.ParseNextFrame()
	// pion reports timestamps scaled by the time base; only the ratio
	// between frames matters here.
	if err != nil || fh.Timestamp != 0 || fh2.Timestamp == 0 {
		t.Fatalf("timestamps %d %d %v", fh.Timestamp, fh2.Timestamp, err)
	}
}

func TestOpusToAAC(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	_, ogg := mediatest.FlashBeep(t, dir, 160, 90, 3)
	pkts := mediatest.ReadOgg(t, ogg)
	var mu sync.Mutex
	var frames []AudioFrame
	tr, err := NewOpus(Options{OnAudio: func(f AudioFrame) {
		mu.Lock()
		frames = append(frames, f)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ts := uint32(123456)
	for _, p := range pkts {
		if err := tr.WriteOpus(ts, p); err != nil {
			t.Fatal(err)
		}
		ts += 960
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(frames) < 3*48000/1024-2 {
		t.Fatalf("%d AAC frames for 3 s", len(frames))
	}
	if frames[0].Config.SampleRate != 48000 || frames[0].Config.Channels != 2 {
		t.Fatalf("config %+v", frames[0].Config)
	}
	if frames[0].PTS > 0 || frames[0].PTS < -30*time.Millisecond {
		t.Errorf("first frame at %v", frames[0].PTS)
	}
	// Write them to an FLV and check the beeps are still on the second.
	path := filepath.Join(dir, "a.flv")
	f, err := flv.Create(path, false, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	asc, _ := frames[0].Config.Bytes()
	_ = f.WriteTag(flv.Tag{Type: flv.TagAudio, Data: flv.AACSequenceHeader(asc)})
	for _, fr := range frames[1:] {
		_ = f.WriteTag(flv.Tag{Type: flv.TagAudio, Timestamp: uint32(fr.PTS / time.Millisecond), Data: flv.AACFrame(fr.Data)})
	}
	_ = f.Close()
	beeps := mediatest.Beeps(t, path)
	if len(beeps) < 2 {
		t.Fatalf("beeps %v", beeps)
	}
	for _, b := range beeps {
		if b > 2.9 {
			continue // the end of the file
		}
		// Opus's own look-ahead delays the sound by 6.5 ms.
		if d := b - math.Round(b); math.Abs(d) > 0.02 {
			t.Errorf("beep at %.3f s, %.0f ms off the second", b, d*1000)
		}
	}
}

func TestVP8ToH264(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "v.ivf")
	mediatest.Run(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "2", "-c:v", "libvpx", "-g", "30", "-b:v", "300k", src)
	data, _ := os.ReadFile(src)
	r, _, err := ivfreader.NewWith(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out []VideoFrame
	tr, err := NewVideo(Options{OnVideo: func(f VideoFrame) {
		mu.Lock()
		out = append(out, f)
		mu.Unlock()
	}}, "vp8")
	if err != nil {
		t.Fatal(err)
	}
	n, keys := 0, 0
	for {
		frame, _, err := r.ParseNextFrame()
		if err != nil {
			break
		}
		if frame[0]&1 == 0 {
			keys++
		}
		if err := tr.WriteFrame(uint32(n*3000+77), frame); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(out) != n {
		t.Fatalf("%d H.264 frames out of %d VP8 frames", len(out), n)
	}
	gotKeys := 0
	for i, f := range out {
		if f.Key {
			gotKeys++
		}
		if want := time.Duration(i) * time.Second / 30; absDur(f.PTS-want) > 2*time.Millisecond {
			t.Fatalf("frame %d at %v, want %v", i, f.PTS, want)
		}
	}
	if !out[0].Key || gotKeys != keys || out[0].Config.Info.Width != 320 {
		t.Fatalf("keys %d (source %d), first key %v, width %d", gotKeys, keys, out[0].Key, out[0].Config.Info.Width)
	}
	if !h264.IsKey(out[0].NALUs) {
		t.Error("first frame has no IDR")
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestMissingFFmpeg(t *testing.T) {
	_, err := NewOpus(Options{FFmpeg: "/nonexistent/ffmpeg"})
	if !errors.Is(err, ErrNoFFmpeg) {
		t.Fatalf("err = %v", err)
	}
}
