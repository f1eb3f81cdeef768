// Package hls writes HTTP Live Streaming (RFC 8216) media playlists of
// MPEG-TS segments cut on keyframes, and master playlists over them.
//
// While live a media playlist is an EVENT playlist that only grows; when
// the stream ends it becomes a VOD playlist with #EXT-X-ENDLIST. A change
// of source is marked with #EXT-X-DISCONTINUITY. Playlists are replaced
// atomically (write, then rename), so a server in front never reads half
// of one; a segment appears in the playlist only once it is complete.
package hls

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/recorder/aac"
	"github.com/matinee-dev/matinee/recorder/mpegts"
)

// PlaylistName is the file name of every playlist Matinee writes (the
// master at the top, the media playlist in each variant directory).
const PlaylistName = "index.m3u8"

// ptsOffset keeps transport stream timestamps (and the PCR just before
// them) positive.
const ptsOffset = 90000

// Options configures a variant.
type Options struct {
	// TargetDuration is the segment length aimed at; segments are cut on
	// the first keyframe after it (audio-only: on the first frame).
	TargetDuration time.Duration
	// Video and Audio say which streams the segments carry.
	Video, Audio bool
}

type segment struct {
	name     string
	dur      time.Duration
	discont  bool
	size     int64
	startPTS time.Duration
}

// Variant is one media playlist and its segments, in one directory.
type Variant struct {
	dir  string
	opts Options

	file    *os.File
	bw      *bufio.Writer
	mux     *mpegts.Muxer
	cur     segment
	open    bool
	counter *countWriter

	segments   []segment
	nextIndex  int
	discont    bool
	lastPTS    time.Duration
	lastVideo  time.Duration
	frameDur   time.Duration
	cfg        *h264.Config
	maxBitrate float64
	closed     bool
	err        error // the write error that stopped it
}

// NewVariant creates dir (if needed) for a variant's playlist and
// segments.
func NewVariant(dir string, opts Options) (*Variant, error) {
	if opts.TargetDuration <= 0 {
		opts.TargetDuration = 2 * time.Second
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &Variant{dir: dir, opts: opts, frameDur: time.Second / 30}, nil
}

type countWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Discontinuity marks the next segment as the start of a new source: the
// current segment ends at the next frame.
func (v *Variant) Discontinuity() { v.discont = true }

// NeedsKeyframe reports whether the open segment has reached its target
// duration without a keyframe to cut it (the recorder then asks the
// publisher for one).
func (v *Variant) NeedsKeyframe() bool {
	return v.opts.Video && (!v.open || v.lastPTS-v.cur.startPTS >= v.opts.TargetDuration)
}

func (v *Variant) startSegment(pts time.Duration) error {
	if v.open {
		if err := v.finishSegment(pts); err != nil {
			return err
		}
	}
	name := fmt.Sprintf("seg-%05d.ts", v.nextIndex)
	// Written under a temporary name, renamed when complete: a segment
	// that can be fetched never changes.
	f, err := os.OpenFile(filepath.Join(v.dir, "."+name+".part"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return v.fail(err)
	}
	v.nextIndex++
	v.file = f
	v.bw = bufio.NewWriterSize(f, 256<<10)
	v.counter = &countWriter{w: v.bw}
	v.mux = mpegts.NewMuxer(v.counter, v.opts.Video, v.opts.Audio)
	v.cur = segment{name: name, startPTS: pts, discont: v.discont && len(v.segments) > 0}
	v.discont = false
	v.open = true
	return v.check(v.mux.WriteTables())
}

// check passes err on, first dropping the open segment when there is one.
func (v *Variant) check(err error) error {
	if err != nil {
		return v.fail(err)
	}
	return nil
}

// fail handles a write error (a full disk): the open segment is
// incomplete, so it is dropped, and the variant takes no more frames. Its
// playlist keeps the segments written whole; Close finishes it.
func (v *Variant) fail(err error) error {
	if v.open {
		v.open = false
		_ = v.file.Close()
		_ = os.Remove(filepath.Join(v.dir, "."+v.cur.name+".part"))
	}
	if v.err == nil {
		v.err = err
	}
	return err
}

// finishSegment closes the open segment, ending at end, and rewrites the
// playlist.
func (v *Variant) finishSegment(end time.Duration) error {
	if err := v.bw.Flush(); err != nil {
		return v.fail(err)
	}
	v.open = false
	err := v.file.Close()
	if err == nil {
		err = os.Rename(filepath.Join(v.dir, "."+v.cur.name+".part"), filepath.Join(v.dir, v.cur.name))
	}
	if err != nil {
		_ = os.Remove(filepath.Join(v.dir, "."+v.cur.name+".part"))
		return v.fail(err)
	}
	v.cur.dur = max(end-v.cur.startPTS, time.Millisecond)
	v.cur.size = v.counter.n
	if br := float64(v.cur.size*8) / v.cur.dur.Seconds(); v.cur.dur >= v.opts.TargetDuration/2 && br > v.maxBitrate {
		v.maxBitrate = br
	}
	v.segments = append(v.segments, v.cur)
	return v.writePlaylist(false)
}

var aud = []byte{0x09, 0xf0}

// WriteVideo adds an access unit; cfg is the stream's current parameter
// sets, put in front of keyframes that lack them.
func (v *Variant) WriteVideo(pts time.Duration, key bool, nalus [][]byte, cfg *h264.Config) error {
	if v.closed {
		return os.ErrClosed
	}
	if v.err != nil {
		return v.err
	}
	if cfg != nil {
		v.cfg = cfg
	}
	if (!v.open || v.discont) && !key {
		return nil // a segment starts on a keyframe
	}
	if v.lastVideo > 0 && pts <= v.lastVideo {
		pts = v.lastVideo + time.Millisecond // frames sent together: keep order
	}
	if key && (!v.open || v.discont || pts-v.cur.startPTS >= v.opts.TargetDuration-v.frameDur/2) {
		if err := v.startSegment(pts); err != nil {
			return err
		}
	}
	if pts > v.lastVideo && v.lastVideo > 0 {
		if d := pts - v.lastVideo; d >= 5*time.Millisecond && d < time.Second {
			v.frameDur = d
		}
	}
	v.lastVideo = pts
	v.lastPTS = max(v.lastPTS, pts)
	all := make([][]byte, 0, len(nalus)+3)
	all = append(all, aud)
	if key && v.cfg != nil && h264.Type(nalus[0]) != h264.TypeSPS {
		has := false
		for _, n := range nalus {
			if h264.Type(n) == h264.TypeSPS {
				has = true
			}
		}
		if !has {
			all = append(all, v.cfg.SPS, v.cfg.PPS)
		}
	}
	for _, n := range nalus {
		if h264.Type(n) != h264.TypeAUD {
			all = append(all, n)
		}
	}
	return v.check(v.mux.WriteVideo(int64(pts*90000/time.Second)+ptsOffset, key, h264.AnnexB(all)))
}

// WriteAudio adds one raw AAC frame.
func (v *Variant) WriteAudio(pts time.Duration, raw []byte, cfg aac.Config) error {
	if v.closed {
		return os.ErrClosed
	}
	if v.err != nil {
		return v.err
	}
	if v.opts.Video {
		if !v.open || v.discont {
			return nil // audio waits for the segment's first keyframe
		}
	} else if !v.open || v.discont || pts-v.cur.startPTS >= v.opts.TargetDuration {
		if err := v.startSegment(pts); err != nil {
			return err
		}
	}
	v.lastPTS = max(v.lastPTS, pts)
	b, err := cfg.AppendADTS(nil, raw)
	if err != nil {
		return err
	}
	return v.check(v.mux.WriteAudio(int64(pts*90000/time.Second)+ptsOffset, b))
}

// Close ends the last segment and turns the playlist into a finished VOD
// playlist. After a write error, or when the last segment cannot be
// written whole, the playlist ends with the last segment that was.
func (v *Variant) Close() error {
	if v.closed {
		return nil
	}
	v.closed = true
	var err error
	if v.open {
		err = v.finishSegment(v.lastPTS + v.frameDur)
	}
	if perr := v.writePlaylist(true); perr != nil {
		return errors.Join(err, perr)
	}
	return err
}

// Duration returns the total duration of the finished segments.
func (v *Variant) Duration() time.Duration {
	var d time.Duration
	for _, s := range v.segments {
		d += s.dur
	}
	return d
}

// Segments returns the number of finished segments.
func (v *Variant) Segments() int { return len(v.segments) }

// Info describes the variant for a master playlist: its peak segment
// bitrate and, once known, its picture size and codecs.
func (v *Variant) Info() VariantInfo {
	vi := VariantInfo{Bandwidth: int(v.maxBitrate)}
	var codecs []string
	if v.opts.Video && v.cfg != nil {
		vi.Width, vi.Height = v.cfg.Info.Width, v.cfg.Info.Height
		codecs = append(codecs, fmt.Sprintf("avc1.%02x%02x%02x", v.cfg.SPS[1], v.cfg.SPS[2], v.cfg.SPS[3]))
	}
	if v.opts.Audio {
		codecs = append(codecs, "mp4a.40.2")
	}
	vi.Codecs = strings.Join(codecs, ",")
	return vi
}

func (v *Variant) targetDuration() int {
	td := int(math.Ceil(v.opts.TargetDuration.Seconds()))
	for _, s := range v.segments {
		if r := int(math.Round(s.dur.Seconds())); r > td {
			td = r
		}
	}
	return td
}

func (v *Variant) writePlaylist(final bool) error {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n")
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:0\n", v.targetDuration())
	if final {
		b.WriteString("#EXT-X-PLAYLIST-TYPE:VOD\n")
	} else {
		b.WriteString("#EXT-X-PLAYLIST-TYPE:EVENT\n")
	}
	for _, s := range v.segments {
		if s.discont {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		fmt.Fprintf(&b, "#EXTINF:%.3f,\n%s\n", s.dur.Seconds(), s.name)
	}
	if final {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return WriteFileAtomic(filepath.Join(v.dir, PlaylistName), []byte(b.String()))
}

// VariantInfo is one variant as a master playlist lists it.
type VariantInfo struct {
	URI           string
	Bandwidth     int
	Width, Height int
	Codecs        string
}

// WriteMaster writes a master playlist listing the variants.
func WriteMaster(path string, variants []VariantInfo) error {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n")
	for _, v := range variants {
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d", max(v.Bandwidth, 1))
		if v.Width > 0 {
			fmt.Fprintf(&b, ",RESOLUTION=%dx%d", v.Width, v.Height)
		}
		if v.Codecs != "" {
			fmt.Fprintf(&b, ",CODECS=%q", v.Codecs)
		}
		fmt.Fprintf(&b, "\n%s\n", v.URI)
	}
	return WriteFileAtomic(path, []byte(b.String()))
}

// WriteFileAtomic replaces path with data through a temporary file and a
// rename, so readers see the old or the new content, never a mix.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// AddQuery returns the playlist b with query added to each of its URIs
// (the lines that are not tags or comments), so that what a player
// fetches next carries the same credential as the playlist's own URL.
func AddQuery(b []byte, query string) []byte {
	var out strings.Builder
	for _, line := range strings.SplitAfter(string(b), "\n") {
		uri := strings.TrimRight(line, "\r\n")
		if uri == "" || strings.HasPrefix(uri, "#") {
			out.WriteString(line)
			continue
		}
		sep := "?"
		if strings.Contains(uri, "?") {
			sep = "&"
		}
		out.WriteString(uri + sep + query + line[len(uri):])
	}
	return []byte(out.String())
}
