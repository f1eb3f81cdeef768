package recorder

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder/transcode"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// The recording benchmarks measure the CPU one 1080p30 screen share at
// 4 Mbit/s costs, as a share of one core in real time ("%core"): H.264
// remuxed to FLV and HLS, and VP8 transcoded to H.264 by ffmpeg (plus
// Opus to AAC, which every recording with sound pays). Run them with
//
//	go test -run '^$' -bench Recording -benchtime 3x ./recorder/
const benchSeconds = 4

func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

type benchPkt struct {
	seq    uint16
	ts     uint32
	marker bool
	pl     []byte
}

var benchMedia struct {
	once   sync.Once
	h264   []benchPkt
	vp8    [][]byte
	opus   [][]byte
	bitsV  int
	failed bool
}

func loadBenchMedia(b *testing.B) {
	benchMedia.once.Do(func() {
		dir, err := os.MkdirTemp("", "matinee-bench")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		h := filepath.Join(dir, "v.h264")
		v := filepath.Join(dir, "v.ivf")
		src := []string{"-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", "4"}
		mediatest.Run(b, append(src, "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "baseline", "-bf", "0", "-g", "60",
			"-b:v", "4M", "-maxrate", "4M", "-bufsize", "4M", "-pix_fmt", "yuv420p", h)...)
		mediatest.Run(b, append(src, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-g", "60", "-b:v", "4M", v)...)
		_, ogg := mediatest.FlashBeep(b, dir, 64, 64, benchSeconds)
		benchMedia.opus = mediatest.ReadOgg(b, ogg)
		var pay codecs.H264Payloader
		seq, ts := uint16(0), uint32(0)
		for _, au := range mediatest.ReadH264(b, h) {
			pls := pay.Payload(1200, au)
			for i, p := range pls {
				benchMedia.h264 = append(benchMedia.h264, benchPkt{seq, ts, i == len(pls)-1, append([]byte(nil), p...)})
				benchMedia.bitsV += 8 * len(p)
				seq++
			}
			ts += 3000
		}
		data, _ := os.ReadFile(v)
		r, _, err := ivfreader.NewWith(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		for {
			f, _, err := r.ParseNextFrame()
			if err != nil {
				break
			}
			benchMedia.vp8 = append(benchMedia.vp8, f)
		}
	})
}

func report(b *testing.B, cpu time.Duration) {
	media := time.Duration(b.N) * benchSeconds * time.Second
	b.ReportMetric(100*cpu.Seconds()/media.Seconds(), "%core")
	b.ReportMetric(0, "ns/op")
}

// audio transcodes benchSeconds of Opus to AAC.
func benchAudio(b *testing.B) {
	tr, err := transcode.NewOpus(transcode.Options{OnAudio: func(transcode.AudioFrame) {}})
	if err != nil {
		b.Fatal(err)
	}
	ts := uint32(0)
	for _, p := range benchMedia.opus {
		_ = tr.WriteOpus(ts, p)
		ts += 960
	}
	if err := tr.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRecordingRemuxH264 depacketizes 1080p30 H.264 at 4 Mbit/s and
// writes it to FLV and HLS, with the sound transcoded.
func BenchmarkRecordingRemuxH264(b *testing.B) {
	mediatest.RequireFFmpeg(b)
	loadBenchMedia(b)
	b.Logf("video %.1f Mbit/s", float64(benchMedia.bitsV)/benchSeconds/1e6)
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		fs, err := newFLVSink(filepath.Join(dir, FLVName), true)
		if err != nil {
			b.Fatal(err)
		}
		hs, err := newHLSSink(filepath.Join(dir, HLSDir), 2*time.Second, false)
		if err != nil {
			b.Fatal(err)
		}
		d := h264.NewDepacketizer()
		var ps h264.ParamSets
		for _, p := range benchMedia.h264 {
			au, _ := d.Push(p.seq, p.ts, p.marker, p.pl)
			if au == nil {
				continue
			}
			_, _ = ps.Update(au.NALUs)
			f := &Frame{Video: true, Main: true, Rungs: 1, PTS: time.Duration(au.Timestamp) * time.Second / 90000, Key: au.Key, NALUs: au.NALUs, H264: ps.Current()}
			if err := fs.WriteFrame(f); err != nil {
				b.Fatal(err)
			}
			if err := hs.WriteFrame(f); err != nil {
				b.Fatal(err)
			}
		}
		_ = fs.Close()
		_ = hs.Close()
		benchAudio(b)
	}
	report(b, cpuTime()-start)
}

// BenchmarkRecordingTranscodeVP8 transcodes 1080p30 VP8 at 4 Mbit/s to
// H.264 with ffmpeg (libx264 veryfast), with the sound.
func BenchmarkRecordingTranscodeVP8(b *testing.B) {
	mediatest.RequireFFmpeg(b)
	loadBenchMedia(b)
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		n := 0
		tr, err := transcode.NewVideo(transcode.Options{OnVideo: func(transcode.VideoFrame) { n++ }}, "vp8")
		if err != nil {
			b.Fatal(err)
		}
		for k, f := range benchMedia.vp8 {
			if err := tr.WriteFrame(uint32(k*3000), f); err != nil {
				b.Fatal(err)
			}
		}
		if err := tr.Close(); err != nil {
			b.Fatal(err)
		}
		if n < len(benchMedia.vp8)-2 {
			b.Fatalf("%d of %d frames transcoded", n, len(benchMedia.vp8))
		}
		benchAudio(b)
	}
	report(b, cpuTime()-start)
}

// BenchmarkRecordingAudioOnly is the sound's share of both.
func BenchmarkRecordingAudioOnly(b *testing.B) {
	mediatest.RequireFFmpeg(b)
	loadBenchMedia(b)
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		benchAudio(b)
	}
	report(b, cpuTime()-start)
}
