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
folder (--media-dir) and pick its index.m3u8 in the room. Text subtitle
streams of the input (SubRip, ASS, mov_text, WebVTT) are kept as WebVTT
files beside the playlist (index.<language>.vtt), which the room lists
with it; picture subtitles (DVD, Blu-ray) cannot be and are skipped. This
needs ffprobe (beside ffmpeg, or on the PATH).

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
	subs, err := convertSubtitles(ctx, *ffmpeg, in, dir, stderr)
	if err != nil {
		return err
	}
	segments, _ := filepath.Glob(filepath.Join(dir, "seg*.ts"))
	res, _ := json.MarshalIndent(map[string]any{"playlist": playlist, "segments": len(segments), "subtitles": subs}, "", "  ")
	_, err = fmt.Fprintf(stdout, "%s\n", res)
	return err
}

// textSubtitleCodecs are the subtitle codecs ffmpeg can write as WebVTT.
var textSubtitleCodecs = map[string]bool{"subrip": true, "srt": true, "ass": true, "ssa": true, "mov_text": true, "webvtt": true, "text": true}

// subtitleStream is one subtitle stream of the input, as ffprobe sees it.
type subtitleStream struct {
	Index int    `json:"index"`
	Codec string `json:"codec_name"`
	Tags  struct {
		Language string `json:"language"`
	} `json:"tags"`
}

// convertSubtitles writes every text subtitle stream of in as
// dir/index.<lang>.vtt and returns the files written.
func convertSubtitles(ctx context.Context, ffmpeg, in, dir string, stderr io.Writer) ([]string, error) {
	ffprobe, err := findFFprobe(ffmpeg)
	if err != nil {
		fmt.Fprintf(stderr, "convert: subtitles not kept: %v\n", err)
		return []string{}, nil
	}
	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-select_streams", "s",
		"-show_entries", "stream=index,codec_name:stream_tags=language", "-of", "json", in).Output()
	if err != nil {
		return nil, fmt.Errorf("convert: ffprobe %s: %w", in, err)
	}
	var probe struct {
		Streams []subtitleStream `json:"streams"`
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		return nil, fmt.Errorf("convert: ffprobe %s: %w", in, err)
	}
	written := []string{}
	used := map[string]int{}
	for n, st := range probe.Streams {
		if !textSubtitleCodecs[st.Codec] {
			fmt.Fprintf(stderr, "convert: subtitle stream %d (%s) is pictures, not text: skipped\n", st.Index, st.Codec)
			continue
		}
		name := subtitleName(st.Tags.Language, n)
		if used[name]++; used[name] > 1 {
			name = fmt.Sprintf("%s-%d", name, used[name])
		}
		file := filepath.Join(dir, "index."+name+".vtt")
		cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", in,
			"-map", "0:"+strconv.Itoa(st.Index), "-c:s", "webvtt", "-f", "webvtt", file)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("convert: subtitle stream %d to WebVTT: %w", st.Index, err)
		}
		written = append(written, file)
	}
	return written, nil
}

// subtitleName is a stream's language tag ("eng"), or "track<n>" when it
// has none (or one that would not make a file name).
func subtitleName(lang string, n int) string {
	ok := lang != "" && lang != "und" && len(lang) <= 8 && !strings.ContainsFunc(lang, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-')
	})
	if ok {
		return lang
	}
	return "track" + strconv.Itoa(n+1)
}

// findFFprobe looks for ffprobe beside ffmpeg, then on the PATH.
func findFFprobe(ffmpeg string) (string, error) {
	if p, err := exec.LookPath(ffmpeg); err == nil {
		cand := filepath.Join(filepath.Dir(p), "ffprobe")
		if _, err := exec.LookPath(cand); err == nil {
			return cand, nil
		}
	}
	p, err := exec.LookPath("ffprobe")
	if err != nil {
		return "", errors.New("no ffprobe beside ffmpeg or on the PATH")
	}
	return p, nil
}
