package recorder

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/recorder/amf0"
	"github.com/matinee-dev/matinee/recorder/flv"
	"github.com/matinee-dev/matinee/recorder/rtmp"
)

// rtmpSink pushes the FLV stream to an RTMP server from its own
// goroutine, so a slow or absent server never holds the recording back:
// when its queue is full, or the connection drops, it skips to the next
// keyframe (with fresh sequence headers) and reconnects with backoff.
type rtmpSink struct {
	url   string
	audio bool
	log   *slog.Logger

	t      flvTagger
	queue  chan flv.Tag
	resync atomic.Bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

const rtmpQueue = 1024

func newRTMPSink(url string, audio bool, log *slog.Logger) *rtmpSink {
	ctx, cancel := context.WithCancel(context.Background())
	s := &rtmpSink{url: url, audio: audio, log: log.With("rtmp", RedactURL(url)), queue: make(chan flv.Tag, rtmpQueue), ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.run()
	return s
}

func (s *rtmpSink) WriteFrame(f *Frame) error {
	if s.resync.Swap(false) {
		s.t = flvTagger{}
	}
	_ = s.t.tags(f, func(tag flv.Tag) error {
		select {
		case s.queue <- tag:
		default:
			s.resync.Store(true) // the server is too slow: skip ahead
		}
		return nil
	})
	return nil
}

func (s *rtmpSink) Discontinuity() { s.t.discontinuity() }

// Close sends what is queued (for up to 5 s) and disconnects.
func (s *rtmpSink) Close() error {
	close(s.queue)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cancel()
		<-done
	}
	s.cancel()
	return nil
}

func (s *rtmpSink) run() {
	defer s.wg.Done()
	backoff := time.Second
	var c *rtmp.Conn
	defer func() {
		if c != nil {
			_ = c.Close()
		}
	}()
	for tag := range s.queue {
		if c == nil {
			var err error
			c, err = rtmp.Dial(s.ctx, s.url, rtmp.Options{})
			if err != nil {
				s.log.Warn("rtmp connect failed", "err", err, "retry", backoff)
				s.skipFor(backoff)
				backoff = min(backoff*2, 30*time.Second)
				continue
			}
			s.log.Info("rtmp connected")
			backoff = time.Second
			meta := amf0.ECMAArray{{Key: "videocodecid", Value: 7.0}, {Key: "encoder", Value: "matinee"}}
			if s.audio {
				meta = append(meta, amf0.Property{Key: "audiocodecid", Value: 10.0})
			}
			if b, err := flv.Metadata(meta); err == nil {
				_ = c.WriteTag(flv.Tag{Type: flv.TagScript, Data: b})
			}
			if !isSequenceHeader(tag) {
				// Start the stream cleanly: sequence headers, then a keyframe.
				s.resync.Store(true)
				continue
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteTag(tag); err != nil {
			s.log.Warn("rtmp send failed, reconnecting", "err", err)
			_ = c.Close()
			c = nil
			s.resync.Store(true)
		}
	}
}

// skipFor drops queued tags for d (or until closed), then asks for a
// fresh start.
func (s *rtmpSink) skipFor(d time.Duration) {
	deadline := time.After(d)
	for {
		select {
		case _, ok := <-s.queue:
			if !ok {
				return
			}
		case <-deadline:
			s.resync.Store(true)
			return
		case <-s.ctx.Done():
			return
		}
	}
}

func isSequenceHeader(t flv.Tag) bool {
	switch t.Type {
	case flv.TagVideo:
		v, err := flv.ParseVideo(t.Data)
		return err == nil && v.PacketType == flv.AVCSequence
	case flv.TagAudio:
		a, err := flv.ParseAudio(t.Data)
		return err == nil && a.PacketType == flv.AACSequence
	}
	return false
}
