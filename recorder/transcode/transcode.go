// Package transcode runs ffmpeg as a child process to turn what WebRTC
// sends into what FLV and HLS carry: Opus audio into AAC, and VP8 or VP9
// video into H.264. Frames go in on ffmpeg's stdin (Ogg for Opus, IVF for
// VP8/VP9, timestamped from RTP) and come back on its stdout as FLV tags,
// with timestamps counted from the first frame written.
package transcode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/recorder/aac"
	"github.com/matinee-dev/matinee/recorder/flv"
)

// ErrNoFFmpeg is returned when ffmpeg cannot be found.
var ErrNoFFmpeg = errors.New("ffmpeg not found")

// Find returns the path of ffmpeg: path itself when it names a file, else
// "ffmpeg" looked up in $PATH.
func Find(path string) (string, error) {
	if path == "" {
		path = "ffmpeg"
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("%w (%q): install it (Debian/Ubuntu: apt install ffmpeg) or set --ffmpeg", ErrNoFFmpeg, path)
	}
	return p, nil
}

// VideoFrame is one H.264 access unit out of ffmpeg; PTS counts from the
// first frame written.
type VideoFrame struct {
	PTS    time.Duration
	Key    bool
	NALUs  [][]byte
	Config *h264.Config
}

// AudioFrame is one raw AAC frame out of ffmpeg. Its PTS accounts for
// the encoder's priming samples, so the first frame's is negative.
type AudioFrame struct {
	PTS    time.Duration
	Data   []byte
	Config aac.Config
}

// Options configures a transcoder.
type Options struct {
	// FFmpeg is the path of the binary (see Find).
	FFmpeg string
	// Preset is libx264's speed preset for video (default "veryfast").
	Preset string
	// AudioBitrate is the AAC bitrate in bit/s (default 128000).
	AudioBitrate int
	// OnVideo and OnAudio receive ffmpeg's output on the transcoder's
	// reading goroutine.
	OnVideo func(VideoFrame)
	OnAudio func(AudioFrame)
}

// Transcoder is one ffmpeg process for one stream.
type Transcoder struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	done   chan struct{}
	cancel context.CancelFunc

	mu     sync.Mutex
	err    error
	closed bool
	frames int

	ogg *oggOpusWriter
	ivf *ivfWriter
}

func start(o Options, args []string) (*Transcoder, error) {
	ff, err := Find(o.FFmpeg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	base := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-probesize", "32", "-analyzeduration", "0"}
	cmd := exec.CommandContext(ctx, ff, append(base, args...)...)
	t := &Transcoder{cmd: cmd, stderr: &tailBuffer{max: 4096}, done: make(chan struct{}), cancel: cancel}
	cmd.Stderr = t.stderr
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", ff, err)
	}
	t.stdin = stdin
	go t.read(stdout, o)
	return t, nil
}

// NewOpus starts ffmpeg to turn Opus packets (48 kHz) into 48 kHz stereo
// AAC-LC. Gaps in the RTP timestamps become silence.
func NewOpus(o Options) (*Transcoder, error) {
	br := o.AudioBitrate
	if br <= 0 {
		br = 128000
	}
	t, err := start(o, []string{"-f", "ogg", "-i", "pipe:0", "-map", "0:a",
		"-af", "aresample=async=1:first_pts=0", "-c:a", "aac", "-b:a", fmt.Sprint(br), "-ar", "48000", "-ac", "2",
		"-f", "flv", "-flush_packets", "1", "pipe:1"})
	if err != nil {
		return nil, err
	}
	if t.ogg, err = newOggOpusWriter(t.stdin, 2); err != nil {
		t.Close()
		return nil, t.failure(err)
	}
	return t, nil
}

// NewVideo starts ffmpeg to turn VP8 or VP9 frames into H.264 with no
// B-frames and a keyframe wherever the source has one. codec is "vp8" or
// "vp9".
func NewVideo(o Options, codec string) (*Transcoder, error) {
	fourcc := "VP80"
	if strings.EqualFold(codec, "vp9") {
		fourcc = "VP90"
	}
	preset := o.Preset
	if preset == "" {
		preset = "veryfast"
	}
	t, err := start(o, []string{"-f", "ivf", "-i", "pipe:0", "-map", "0:v",
		"-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-bf", "0",
		"-force_key_frames", "source", "-fps_mode", "passthrough",
		"-f", "flv", "-flush_packets", "1", "pipe:1"})
	if err != nil {
		return nil, err
	}
	if t.ivf, err = newIVFWriter(t.stdin, fourcc, 0, 0); err != nil {
		t.Close()
		return nil, t.failure(err)
	}
	return t, nil
}

// WriteOpus feeds one Opus packet with its RTP timestamp.
func (t *Transcoder) WriteOpus(ts uint32, payload []byte) error {
	if err := t.ogg.WritePacket(ts, payload); err != nil {
		return t.failure(err)
	}
	return nil
}

// WriteFrame feeds one whole VP8/VP9 frame with its RTP timestamp.
func (t *Transcoder) WriteFrame(ts uint32, frame []byte) error {
	if err := t.ivf.WriteFrame(ts, frame); err != nil {
		return t.failure(err)
	}
	return nil
}

// failure wraps err with what ffmpeg said.
func (t *Transcoder) failure(err error) error {
	if msg := t.stderr.String(); msg != "" {
		return fmt.Errorf("ffmpeg: %w: %s", err, msg)
	}
	return fmt.Errorf("ffmpeg: %w", err)
}

// Err returns the error that stopped ffmpeg, if any.
func (t *Transcoder) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Done is closed when ffmpeg's output has ended.
func (t *Transcoder) Done() <-chan struct{} { return t.done }

// read parses ffmpeg's FLV output until it ends.
func (t *Transcoder) read(stdout io.Reader, o Options) {
	defer close(t.done)
	r, err := flv.NewReader(stdout)
	if err != nil {
		t.setErr(err)
		_, _ = io.Copy(io.Discard, stdout)
		return
	}
	var vcfg *h264.Config
	var acfg *aac.Config
	for {
		tag, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.setErr(err)
			}
			_, _ = io.Copy(io.Discard, stdout)
			return
		}
		pts := time.Duration(tag.Timestamp) * time.Millisecond
		switch tag.Type {
		case flv.TagVideo:
			v, err := flv.ParseVideo(tag.Data)
			if err != nil {
				continue
			}
			switch v.PacketType {
			case flv.AVCSequence:
				if c, err := h264.ParseRecord(v.Data); err == nil {
					vcfg = c
				}
			case flv.AVCNALU:
				nalus, ok := h264.SplitAVCC(v.Data)
				if !ok || vcfg == nil || o.OnVideo == nil {
					continue
				}
				t.count()
				o.OnVideo(VideoFrame{PTS: pts + time.Duration(v.CTS)*time.Millisecond, Key: v.Key || h264.IsKey(nalus), NALUs: nalus, Config: vcfg})
			}
		case flv.TagAudio:
			a, err := flv.ParseAudio(tag.Data)
			if err != nil {
				continue
			}
			switch a.PacketType {
			case flv.AACSequence:
				if c, err := aac.ParseConfig(a.Data); err == nil {
					acfg = &c
				}
			case flv.AACRaw:
				if acfg == nil || o.OnAudio == nil {
					continue
				}
				t.count()
				// ffmpeg's FLV keeps the encoder's priming frame: the
				// decoded sound is late by one frame unless moved back.
				prime := time.Duration(aac.SamplesPerFrame) * time.Second / time.Duration(acfg.SampleRate)
				o.OnAudio(AudioFrame{PTS: pts - prime, Data: a.Data, Config: *acfg})
			}
		}
	}
}

func (t *Transcoder) count() {
	t.mu.Lock()
	t.frames++
	t.mu.Unlock()
}

// Frames returns how many frames came out so far.
func (t *Transcoder) Frames() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.frames
}

func (t *Transcoder) setErr(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.mu.Unlock()
}

// Close ends ffmpeg's input, waits (up to 5 s) for the frames still in it
// to come out, and reaps the process.
func (t *Transcoder) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return t.Err()
	}
	t.closed = true
	t.mu.Unlock()
	_ = t.stdin.Close()
	select {
	case <-t.done:
	case <-time.After(5 * time.Second):
		t.setErr(errors.New("ffmpeg did not finish within 5s"))
		t.cancel()
		<-t.done
	}
	err := t.cmd.Wait()
	t.cancel()
	if err != nil && t.Err() == nil {
		t.setErr(t.failure(err))
	}
	return t.Err()
}

// tailBuffer keeps the last bytes ffmpeg wrote to stderr.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if t.b.Len() > t.max {
		keep := t.b.Bytes()[t.b.Len()-t.max:]
		t.b = *bytes.NewBuffer(append([]byte(nil), keep...))
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(t.b.String())
}
