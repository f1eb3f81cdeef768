// Package mediatest makes test media with ffmpeg and checks recordings
// with ffprobe and ffmpeg: what streams a file has, whether it decodes
// without error, and how far its flashes and beeps are apart.
package mediatest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// RequireFFmpeg returns the paths of ffmpeg and ffprobe, or skips the
// test when they are missing (never under CI=true, where it fails).
func RequireFFmpeg(t testing.TB) (ffmpeg, ffprobe string) {
	t.Helper()
	a, err1 := exec.LookPath("ffmpeg")
	b, err2 := exec.LookPath("ffprobe")
	if err1 == nil && err2 == nil {
		return a, b
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("ffmpeg/ffprobe not found; install the Debian package ffmpeg (scripts/test does)")
	}
	t.Skip("ffmpeg/ffprobe not found: install the Debian package ffmpeg to run this test")
	return "", ""
}

// Run runs ffmpeg with args and fails the test on error.
func Run(t testing.TB, args ...string) {
	t.Helper()
	ff, _ := RequireFFmpeg(t)
	cmd := exec.Command(ff, append([]string{"-hide_banner", "-nostdin", "-v", "error", "-y"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// FlashBeep makes dur seconds of H.264 (Annex B, constrained baseline,
// keyframe every second, no B-frames) and Opus (Ogg, 20 ms packets) in
// which the picture turns white for one frame and a 1 kHz beep sounds for
// 50 ms at the start of every second. It returns the two file names.
func FlashBeep(t testing.TB, dir string, width, height int, dur float64) (h264, ogg string) {
	t.Helper()
	h264 = filepath.Join(dir, fmt.Sprintf("flash-%dx%d.h264", width, height))
	ogg = filepath.Join(dir, "beep.ogg")
	d := strconv.FormatFloat(dur, 'f', -1, 64)
	Run(t, "-f", "lavfi", "-i", fmt.Sprintf("color=c=0x202020:size=%dx%d:rate=30,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t\\,1)\\,0.02)'", width, height),
		"-t", d, "-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-g", "30", "-bf", "0",
		"-pix_fmt", "yuv420p", "-b:v", "800k", h264)
	Run(t, "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000,volume=volume=0:enable='gte(mod(t\\,1)\\,0.05)'",
		"-t", d, "-ac", "2", "-c:a", "libopus", "-b:a", "96k", "-frame_duration", "20", ogg)
	return h264, ogg
}

// Stream is one stream as ffprobe describes it.
type Stream struct {
	CodecType string `json:"codec_type"`
	CodecName string `json:"codec_name"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Profile   string `json:"profile"`
}

// Probe is ffprobe's description of a file.
type Probe struct {
	Streams []Stream `json:"streams"`
	Format  struct {
		Duration string `json:"duration"`
		Name     string `json:"format_name"`
	} `json:"format"`
}

// Duration returns the container's duration in seconds.
func (p *Probe) Duration() float64 {
	d, _ := strconv.ParseFloat(p.Format.Duration, 64)
	return d
}

// Codecs returns "h264+aac"-style names of the streams, sorted video
// first.
func (p *Probe) Codecs() string {
	var v, a []string
	for _, s := range p.Streams {
		switch s.CodecType {
		case "video":
			v = append(v, s.CodecName)
		case "audio":
			a = append(a, s.CodecName)
		}
	}
	return strings.Join(append(v, a...), "+")
}

// Video returns the first video stream.
func (p *Probe) Video() *Stream {
	for i := range p.Streams {
		if p.Streams[i].CodecType == "video" {
			return &p.Streams[i]
		}
	}
	return nil
}

// ProbeFile runs ffprobe on path.
func ProbeFile(t testing.TB, path string) *Probe {
	t.Helper()
	_, fp := RequireFFmpeg(t)
	out, err := exec.Command(fp, "-v", "error", "-print_format", "json", "-show_streams", "-show_format", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var p Probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	return &p
}

// DecodeErrors decodes the whole file with "ffmpeg -v error -i path -f
// null -" and returns what it printed: empty when the file is clean.
func DecodeErrors(t testing.TB, path string) string {
	t.Helper()
	ff, _ := RequireFFmpeg(t)
	// Keep the file's own timing: by default the null output re-times
	// video to a guessed constant frame rate, and a variable-rate source
	// (a browser's screen capture sends frames when the screen changes)
	// then shows two close frames as a timestamp error the file does not
	// have.
	out, err := exec.Command(ff, "-nostdin", "-v", "error", "-i", path, "-fps_mode", "passthrough", "-enc_time_base:v", "-1", "-f", "null", "-").CombinedOutput()
	if err != nil && len(out) == 0 {
		return err.Error()
	}
	return strings.TrimSpace(string(out))
}

var (
	reFrame   = regexp.MustCompile(`pts_time:([0-9.]+)`)
	reYAvg    = regexp.MustCompile(`lavfi\.signalstats\.YAVG=([0-9.]+)`)
	reSilence = regexp.MustCompile(`silence_end: ([0-9.]+)`)
)

// Flashes returns the times (s) at which the picture turns bright.
func Flashes(t testing.TB, path string) []float64 {
	t.Helper()
	ff, _ := RequireFFmpeg(t)
	out, err := exec.Command(ff, "-nostdin", "-v", "error", "-i", path, "-an",
		"-vf", "signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("find flashes in %s: %v\n%s", path, err, out)
	}
	var times []float64
	var cur float64
	bright := false
	for _, line := range strings.Split(string(out), "\n") {
		if m := reFrame.FindStringSubmatch(line); m != nil {
			cur, _ = strconv.ParseFloat(m[1], 64)
			continue
		}
		if m := reYAvg.FindStringSubmatch(line); m != nil {
			y, _ := strconv.ParseFloat(m[1], 64)
			if y > 128 && !bright {
				times = append(times, cur)
			}
			bright = y > 128
		}
	}
	return times
}

// Beeps returns the times (s) at which a beep starts. A gap of 30 ms
// already counts as silence: at a change of source the old source's last
// beep and the new one's first can be only ~100 ms apart, and a longer
// minimum would merge them into one.
func Beeps(t testing.TB, path string) []float64 {
	t.Helper()
	ff, _ := RequireFFmpeg(t)
	out, err := exec.Command(ff, "-nostdin", "-v", "info", "-i", path, "-vn",
		"-af", "silencedetect=n=-30dB:d=0.03", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("find beeps in %s: %v\n%s", path, err, bytes.TrimSpace(out))
	}
	var times []float64
	for _, m := range reSilence.FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		times = append(times, v)
	}
	return times
}

// SyncOffsets pairs every flash with the nearest beep and returns the
// offsets (beep minus flash, seconds), sorted by flash time.
func SyncOffsets(t testing.TB, path string) []float64 {
	t.Helper()
	flashes, beeps := Flashes(t, path), Beeps(t, path)
	sort.Float64s(beeps)
	var out []float64
	for _, f := range flashes {
		best := math.Inf(1)
		for _, b := range beeps {
			if math.Abs(b-f) < math.Abs(best) {
				best = b - f
			}
		}
		if !math.IsInf(best, 0) && math.Abs(best) < 0.5 {
			out = append(out, best)
		}
	}
	return out
}

// Monotonic checks that every stream's packet timestamps (DTS) never go
// back.
func Monotonic(t testing.TB, path string) error {
	t.Helper()
	_, fp := RequireFFmpeg(t)
	out, err := exec.Command(fp, "-v", "error", "-show_entries", "packet=stream_index,dts_time", "-of", "csv=p=0", path).Output()
	if err != nil {
		return fmt.Errorf("ffprobe packets: %w", err)
	}
	last := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		idx, v, ok := strings.Cut(strings.TrimSpace(line), ",")
		if !ok || v == "N/A" {
			continue
		}
		d, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		if prev, ok := last[idx]; ok && d < prev {
			return fmt.Errorf("stream %s goes back from %.3f to %.3f", idx, prev, d)
		}
		last[idx] = d
	}
	return nil
}

// VideoSizes returns the picture sizes the decoded video goes through, in
// order ("640x360", ...).
func VideoSizes(t testing.TB, path string) []string {
	t.Helper()
	_, fp := RequireFFmpeg(t)
	out, err := exec.Command(fp, "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=width,height", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe frames of %s: %v", path, err)
	}
	var sizes []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		s := strings.Replace(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), ",")), ",", "x", 1)
		if s != "" && (len(sizes) == 0 || sizes[len(sizes)-1] != s) {
			sizes = append(sizes, s)
		}
	}
	return sizes
}
