package play

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/internal/mediatest"
)

func TestProbeAndArgs(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.mp4")
	high := filepath.Join(dir, "high.mp4")
	mediatest.Run(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine", "-t", "1",
		"-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-c:a", "aac", base)
	mediatest.Run(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "1", "-c:v", "libx264", "-profile:v", "high", "-bf", "2", "-pix_fmt", "yuv420p", high)
	s, err := Probe(context.Background(), "", base)
	if err != nil {
		t.Fatal(err)
	}
	if !s.HasVideo || !s.HasAudio || !s.CopyVideo || s.CopyAudio || s.Width != 320 {
		t.Fatalf("base: %+v", s)
	}
	h, err := Probe(context.Background(), "", high)
	if err != nil || h.CopyVideo || h.HasAudio {
		t.Fatalf("high: %+v %v", h, err)
	}
	v := &Target{IP: "127.0.0.1", Port: 5004, PayloadType: 96, SSRC: 7}
	a := &Target{IP: "::1", Port: 5006, PayloadType: 111, SSRC: 8}
	args := strings.Join(Args(base, s, v, a, Options{}), " ")
	for _, want := range []string{"-c:v copy -bsf:v h264_mp4toannexb", "-payload_type 96 -ssrc 7 rtp://127.0.0.1:5004?rtcpport=5004", "-c:a libopus", "rtp://[::1]:5006"} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q: %s", want, args)
		}
	}
	if args := strings.Join(Args(high, h, v, a, Options{Loop: true}), " "); !strings.Contains(args, "-c:v libx264 -profile:v baseline") || strings.Contains(args, "0:a:0") || !strings.Contains(args, "-stream_loop -1") {
		t.Errorf("high args: %s", args)
	}
	if _, err := Probe(context.Background(), "", filepath.Join(dir, "missing.mp4")); err == nil {
		t.Error("missing file probed")
	}
}
