package recorder

import (
	"errors"
	"fmt"
	ntptime "github.com/matinee-dev/matinee/internal/ntp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/codecs"
	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/recorder/transcode"
	"github.com/matinee-dev/matinee/sfu"
	"github.com/pion/rtp"
)

// How long a track holds its first packets waiting for the publisher's
// first sender report (browsers send audio reports every 5 s) before it
// places them by arrival time instead.
const srWait = 6 * time.Second

// maxLead is how far before the epoch's origin a video track's first
// frames may be and still be kept (moved to the origin): the spread of the
// capture times of tracks that start together.
const maxLead = 500 * time.Millisecond

// queueSize bounds the packets waiting for a track's goroutine; when full,
// packets are dropped and the track recovers at the next keyframe.
const queueSize = 4096

// codecOf returns the codec of a producer the recorder can record.
func codecOf(p *sfu.Producer) (codecs.Codec, error) {
	mime, _ := p.Codec()
	switch c := codecs.FromMime(mime); c {
	case codecs.H264, codecs.VP8, codecs.VP9, codecs.Opus:
		return c, nil
	}
	return codecs.Unknown, fmt.Errorf("producer %s: codec %s cannot be recorded", p.ID(), mime)
}

type packet struct {
	seq     uint16
	ts      uint32
	marker  bool
	payload []byte
	at      time.Time
}

// track is one consumer of the recording: it turns the consumer's RTP
// into frames on the timeline and hands them to the mux goroutine.
type track struct {
	id       int
	rec      *Recording
	ep       *epoch
	producer *sfu.Producer
	consumer *sfu.Consumer
	codec    codecs.Codec
	rung     int
	rungs    int
	main     bool

	in       chan packet
	inOnce   sync.Once
	done     chan struct{}
	overflow atomic.Uint64

	// Owned by the track goroutine.
	offered  bool      // its first frame's time went to the epoch
	wall     time.Time // that time
	placed   bool
	pending  []packet
	base     time.Duration // timeline position of the first packet
	clock    rtpClock
	depack   *h264.Depacketizer
	params   h264.ParamSets
	vpx      *codecs.FrameAssembler
	xc       *transcode.Transcoder
	xcOffset time.Duration // RTP time of the first frame given to ffmpeg
	xcFailed bool
	lastKey  time.Duration
	lastReq  time.Time
	// The last timestamp emitted; touched only by whichever goroutine
	// emits this track's frames (the track's own, or its transcoder's).
	emitted bool
	lastPTS time.Duration
}

// WriteRTP is the consumer's PacketWriter: it copies the packet and queues
// it without blocking.
func (t *track) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	p := packet{seq: h.SequenceNumber, ts: h.Timestamp, marker: h.Marker, payload: append([]byte(nil), payload...), at: time.Now()}
	select {
	case t.in <- p:
	default:
		t.overflow.Add(1)
	}
	return len(payload), nil
}

func (t *track) closeInput() { t.inOnce.Do(func() { close(t.in) }) }

// run processes packets until the consumer closes, then flushes.
func (t *track) run() {
	for p := range t.in {
		t.handle(p)
	}
	if t.xc != nil {
		if err := t.xc.Close(); err != nil {
			t.rec.log.Warn("transcoder", "producer", t.producer.ID(), "err", err)
		}
	}
}

func (t *track) handle(p packet) {
	if t.placed {
		t.process(p)
		return
	}
	t.pending = append(t.pending, p)
	first := t.pending[0]
	full := len(t.pending) >= queueSize
	if !t.offered {
		ntpTS, srTS, ok := t.consumer.SenderReport()
		if !ok && p.at.Sub(first.at) < srWait && !full {
			return
		}
		t.wall = first.at
		if ok {
			off := time.Duration(int64(int32(first.ts-srTS))) * time.Second / time.Duration(t.clock.rate)
			t.wall = ntptime.Time(ntpTS).Add(off)
		}
		t.offered = true
		t.ep.offer(t.wall, p.at)
	}
	base, ok := t.ep.place(t.wall, p.at, full)
	if !ok {
		return
	}
	t.base = base
	t.clock.since(first.ts)
	t.placed = true
	pend := t.pending
	t.pending = nil
	for _, q := range pend {
		t.process(q)
	}
}

func (t *track) pts(ts uint32) time.Duration { return t.base + t.clock.since(ts) }

func (t *track) process(p packet) {
	switch t.codec {
	case codecs.H264:
		au, err := t.depack.Push(p.seq, p.ts, p.marker, p.payload)
		if errors.Is(err, h264.ErrLoss) {
			t.consumer.RequestKeyframe()
		}
		if au == nil {
			return
		}
		if _, err := t.params.Update(au.NALUs); err != nil {
			t.rec.log.Debug("unreadable sps", "producer", t.producer.ID(), "err", err)
		}
		cur := t.params.Current()
		if cur == nil {
			t.consumer.RequestKeyframe()
			return
		}
		pts := t.pts(au.Timestamp)
		t.keyframeDue(pts, au.Key)
		t.emit(&Frame{Video: true, PTS: pts, Key: au.Key, NALUs: au.NALUs, H264: cur})
	case codecs.VP8, codecs.VP9:
		frame, key, lost := t.vpx.Push(p.seq, p.ts, p.marker, p.payload)
		if lost {
			t.consumer.RequestKeyframe()
		}
		if frame == nil || t.xcFailed {
			return
		}
		if t.xc == nil {
			if !t.startTranscoder() {
				return
			}
			t.xcOffset = t.clock.since(p.ts)
		}
		t.keyframeDue(t.pts(p.ts), key)
		if err := t.xc.WriteFrame(p.ts, frame); err != nil {
			t.fail(err)
		}
	case codecs.Opus:
		if t.xcFailed {
			return
		}
		if t.xc == nil {
			if !t.startTranscoder() {
				return
			}
			t.xcOffset = t.clock.since(p.ts)
		}
		if err := t.xc.WriteOpus(p.ts, p.payload); err != nil {
			t.fail(err)
		}
	}
}

// keyframeDue asks for a keyframe when HLS needs one to cut a segment and
// the publisher has sent none for a target duration.
func (t *track) keyframeDue(pts time.Duration, key bool) {
	if key {
		t.lastKey = pts
		return
	}
	every := t.rec.keyEvery
	if every <= 0 || pts-t.lastKey < every || time.Since(t.lastReq) < every/2 {
		return
	}
	t.lastReq = time.Now()
	t.consumer.RequestKeyframe()
}

func (t *track) startTranscoder() bool {
	o := transcode.Options{FFmpeg: t.rec.ffmpeg, Preset: t.rec.opts.Preset}
	var err error
	if t.codec == codecs.Opus {
		o.OnAudio = func(f transcode.AudioFrame) {
			pts := t.base + t.xcOffset + f.PTS
			if pts < t.ep.start {
				return
			}
			t.emit(&Frame{PTS: pts, AAC: f.Data, AACConfig: f.Config})
		}
		t.xc, err = transcode.NewOpus(o)
	} else {
		o.OnVideo = func(f transcode.VideoFrame) {
			pts := t.base + t.xcOffset + f.PTS
			t.emit(&Frame{Video: true, PTS: pts, Key: f.Key, NALUs: f.NALUs, H264: f.Config})
		}
		codec := "vp8"
		if t.codec == codecs.VP9 {
			codec = "vp9"
		}
		t.xc, err = transcode.NewVideo(o, codec)
	}
	if err != nil {
		t.fail(err)
		return false
	}
	return true
}

func (t *track) fail(err error) {
	t.xcFailed = true
	t.rec.setError(fmt.Errorf("producer %s: %w", t.producer.ID(), err))
}

func (t *track) emit(f *Frame) {
	if f.PTS < t.ep.start {
		// A track that came after the origin settled can have frames
		// before it. Audio before the origin is trimmed; but video that
		// starts on a keyframe just before it starts at the origin
		// instead, or the rung would wait for the publisher's next
		// keyframe (seconds away: an HLS rung lost its first segment that
		// way).
		if !f.Video || (!t.emitted && !f.Key) || t.ep.start-f.PTS > maxLead {
			return
		}
		f.PTS = t.ep.start
	}
	// Muxers need strictly increasing timestamps per stream; an encoder or
	// a source can repeat one (two frames with the same RTP timestamp, or
	// ffmpeg rounding to milliseconds). Nudge such a frame by 1 ms.
	if t.emitted && f.PTS <= t.lastPTS {
		f.PTS = t.lastPTS + time.Millisecond
	}
	t.emitted, t.lastPTS = true, f.PTS
	f.Track = t.id
	f.Rung, f.Rungs, f.Main = t.rung, t.rungs, t.main
	t.rec.frames <- f
}
