package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/matinee-dev/matinee/config"
)

const convertUsage = `Usage: matinee convert [flags] in.mp4

Turns a video into HLS (an index.m3u8 playlist and short segments) with
ffmpeg, for smooth seeking in synced playback. Put the result in the media
folder (--media-dir) and pick its index.m3u8 in the room.

  --out DIR       where the playlist and segments go (default: <in>-hls next to the input)
  --segment SECS  segment length in seconds, each starting on a keyframe (default 4)
  --copy          keep the codecs (no re-encode; segments follow the input's keyframes)
  --ffmpeg PATH   the ffmpeg binary (default "ffmpeg")

--ffmpeg also reads MATINEE_FFMPEG.
`

// runConvert runs "matinee convert".
func runConvert(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("matinee convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, convertUsage) }
	out := fs.String("out", "", "output folder")
	segment := fs.Int("segment", 4, "segment length in seconds")
	copyCodecs := fs.Bool("copy", false, "keep the codecs")
	ffmpeg := fs.String("ffmpeg", "ffmpeg", "the ffmpeg binary")
	// The input may come before the flags too.
	var in string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		in, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := config.ApplyEnv(fs, envOnly("ffmpeg")); err != nil {
		return err
	}
	if in == "" && fs.NArg() > 0 {
		in = fs.Arg(0)
	}
	if in == "" || fs.NArg() > 1 || (fs.NArg() == 1 && fs.Arg(0) != in) {
		fmt.Fprint(stderr, convertUsage)
		return errors.New("convert: give exactly one input file")
	}
	if *segment < 1 || *segment > 60 {
		return fmt.Errorf("convert: --segment %d: must be 1-60 seconds", *segment)
	}
	if fi, err := os.Stat(in); err != nil || fi.IsDir() {
		return fmt.Errorf("convert: input %q is not a readable file", in)
	}
	if _, err := exec.LookPath(*ffmpeg); err != nil {
		return fmt.Errorf("convert: ffmpeg not found (%s): install it (Debian: apt install ffmpeg) or give --ffmpeg", *ffmpeg)
	}
	dir := *out
	if dir == "" {
		base := strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))
		dir = filepath.Join(filepath.Dir(in), base+"-hls")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	playlist := filepath.Join(dir, "index.m3u8")
	seg := strconv.Itoa(*segment)
	argv := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", in,
		"-map", "0:v:0", "-map", "0:a:0?"}
	if *copyCodecs {
		argv = append(argv, "-c", "copy")
	} else {
		// H.264 + AAC play everywhere HLS does; a keyframe at every
		// segment start makes each segment a clean seek point.
		argv = append(argv,
			"-c:v", "libx264", "-preset", "veryfast", "-crf", "21", "-pix_fmt", "yuv420p",
			"-force_key_frames", "expr:gte(t,n_forced*"+seg+")", "-sc_threshold", "0",
			"-c:a", "aac", "-b:a", "160k", "-ac", "2")
	}
	argv = append(argv, "-f", "hls", "-hls_time", seg, "-hls_playlist_type", "vod",
		"-hls_segment_filename", filepath.Join(dir, "seg%05d.ts"), playlist)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cmd := exec.CommandContext(ctx, *ffmpeg, argv...)
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("convert: ffmpeg: %w", err)
	}
	segments, _ := filepath.Glob(filepath.Join(dir, "seg*.ts"))
	res, _ := json.MarshalIndent(map[string]any{"playlist": playlist, "segments": len(segments)}, "", "  ")
	_, err := fmt.Fprintf(stdout, "%s\n", res)
	return err
}
