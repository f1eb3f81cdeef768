package recorder

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/codecs"
	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/sfu"
)

// Recording states.
const (
	StateRecording = "recording"
	StateStopped   = "stopped"
	StateFailed    = "failed"
	// StateInterrupted is a recording found on disk that never finished
	// (the server was killed): its FLV is readable up to where it stopped.
	StateInterrupted = "interrupted"
)

// Options says what to record and where to.
type Options struct {
	// Formats are "flv" and/or "hls".
	Formats []string `json:"formats"`
	// RTMP lists rtmp:// or rtmps:// URLs to push the FLV stream to.
	RTMP []string `json:"rtmp,omitempty"`
	// Producers, when set, records these producers (one video, one audio)
	// instead of following the stage.
	Producers []string `json:"producers,omitempty"`
	// NoAudio records video only (then ffmpeg is needed only for VP8/VP9).
	NoAudio bool `json:"noAudio,omitempty"`
	// HLSTarget is the HLS segment duration (default 2 s).
	HLSTarget time.Duration `json:"-"`
	// Preset is libx264's preset when video must be transcoded.
	Preset string `json:"-"`
}

func (o Options) has(format string) bool {
	for _, f := range o.Formats {
		if f == format {
			return true
		}
	}
	return false
}

// Recording records one room.
type Recording struct {
	id     string
	room   string
	dir    string
	router Source
	opts   Options
	ffmpeg string
	log    *slog.Logger
	// keyEvery is how often video needs a keyframe (HLS segments).
	keyEvery time.Duration
	m        *Manager

	frames chan *Frame // tracks → mux
	ctl    chan muxCtl // control → mux
	wake   chan struct{}
	stopCh chan string
	done   chan struct{}

	// Owned by the control goroutine.
	cur         *current
	nextTrack   int
	cancelObs   func()
	cancelStage func()
	pending     *pendingStage

	// The cancels of watchClose's hooks, called when the recording
	// finishes (unwatched).
	watchMu   sync.Mutex
	unwatch   []func()
	unwatched bool

	// stage is the room's stage as last told (OnStage).
	stageMu sync.Mutex
	stage   selection

	mu        sync.Mutex
	state     string
	err       error
	reason    string
	startedAt time.Time
	stoppedAt time.Time
	firstPTS  time.Duration
	lastPTS   time.Duration
	wrote     bool
	sinks     []Sink
	hls       *hlsSink
	stopOnce  sync.Once
}

// current is the epoch being recorded and its tracks.
type current struct {
	sel        selection
	ep         *epoch
	tracks     []*track
	audioTrack *track
}

// pendingStage is a video source waiting to show its simulcast layers.
type pendingStage struct {
	sel   selection
	since time.Time
	first time.Time
}

// muxCtl is a message from the control goroutine (or a finished track)
// to the mux goroutine.
type muxCtl struct {
	kind     int
	addTrack int
	endTrack int
	endEpoch chan time.Duration
	stop     chan struct{}
}

const (
	ctlAdd = iota + 1
	ctlEnd
	ctlEpoch
	ctlDiscont
	ctlStop
)

func (r *Recording) setError(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.log.Warn("recording error", "err", err)
}

// ID returns the recording's identifier.
func (r *Recording) ID() string { return r.id }

// Room returns the recorded room's id.
func (r *Recording) Room() string { return r.room }

// Done is closed once the recording has stopped and its files are final.
func (r *Recording) Done() <-chan struct{} { return r.done }

// Stop finishes the recording (reason says why, for its info) and waits
// until its files are final.
func (r *Recording) Stop(reason string) {
	r.stopOnce.Do(func() { r.stopCh <- reason })
	<-r.done
}

// requestStop asks the control goroutine to stop without waiting (from
// the mux goroutine, which the stop waits for).
func (r *Recording) requestStop(reason string) {
	go r.stopOnce.Do(func() { r.stopCh <- reason })
}

func (r *Recording) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// start subscribes to the room's media and starts the goroutines.
func (r *Recording) start() {
	r.cancelObs = r.router.OnNewProducer(func(p *sfu.Producer) {
		r.watchClose(p)
		r.poke()
	})
	for _, p := range r.router.Producers() {
		r.watchClose(p)
	}
	if len(r.opts.Producers) == 0 {
		r.cancelStage = r.router.OnStage(r.followStage)
	}
	go r.mux()
	go r.control()
}

// followStage keeps the room's stage while it is the show. A stage that
// is only the fallback of a room where nobody shows anything (its newest
// camera and microphone) is not recorded: a recording is of the show,
// and people's faces are recorded only when chosen by id (Producers).
func (r *Recording) followStage(video, audio *sfu.Producer, show bool) {
	var sel selection
	if show {
		sel = selection{video: video, audio: audio}
	}
	r.stageMu.Lock()
	r.stage = sel
	r.stageMu.Unlock()
	r.poke()
}

func (r *Recording) control() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastDisk := time.Now()
	for {
		select {
		case reason := <-r.stopCh:
			r.finish(reason)
			return
		case <-r.wake:
		case <-tick.C:
		}
		if r.router.IsClosed() {
			r.finish("room closed")
			return
		}
		if time.Since(lastDisk) >= 2*time.Second {
			lastDisk = time.Now()
			if err := r.m.checkDisk(r.m.cfg.StopFreeBytes); err != nil {
				r.setError(err)
				r.finish("disk full")
				return
			}
		}
		r.reconsider()
	}
}

// reconsider compares what should be recorded with what is, and switches.
func (r *Recording) reconsider() {
	var want selection
	if len(r.opts.Producers) > 0 {
		want = pickChosen(r.router.Producers(), r.opts.Producers)
	} else {
		r.stageMu.Lock()
		want = r.stage
		r.stageMu.Unlock()
	}
	if r.opts.NoAudio {
		want.audio = nil
	}
	if len(r.opts.Producers) == 0 && want.video == nil {
		want.audio = nil // the stage is video; its audio alone is not recorded
	}
	if r.cur != nil && r.cur.sel.video == want.video && (want.video != nil || r.cur.sel.audio == want.audio) {
		// Same source: maybe its audio appeared (published just after).
		if want.audio != nil && want.audio != r.cur.sel.audio {
			if old := r.cur.audioTrack; old != nil {
				old.consumer.Close()
				<-old.done
			}
			r.addAudio(want.audio)
		}
		r.pending = nil
		return
	}
	if want.video == nil && want.audio == nil {
		r.pending = nil
		r.endEpoch()
		return
	}
	// A new source. H.264 with HLS may be simulcast: wait (briefly) until
	// its layers show before choosing the ladder.
	if r.pending == nil || r.pending.sel != want {
		r.pending = &pendingStage{sel: want, since: time.Now()}
	}
	rungs := r.ladder(want.video)
	if rungs == 0 {
		return // wait
	}
	r.pending = nil
	r.endEpoch()
	r.startEpoch(want, rungs)
}

// ladder decides how many rungs an epoch's video gets: one, or one per
// simulcast layer of an H.264 source when HLS is recorded. 0 means wait.
func (r *Recording) ladder(v *sfu.Producer) int {
	if v == nil || r.hls == nil {
		return 1
	}
	if c, _ := codecOf(v); c != codecs.H264 {
		return 1
	}
	active := 0
	for _, l := range v.Layers() {
		if l.Active {
			active++
		}
	}
	p := r.pending
	waited := time.Since(p.since)
	if active > 0 && p.first.IsZero() {
		p.first = time.Now()
	}
	switch {
	case active >= 3:
		return 3
	case active > 0 && time.Since(p.first) >= 500*time.Millisecond:
		return active
	case waited >= 3*time.Second:
		return max(active, 1)
	}
	return 0
}

func (r *Recording) newTrack(p *sfu.Producer, ep *epoch) (*track, error) {
	codec, err := codecOf(p)
	if err != nil {
		return nil, err
	}
	r.nextTrack++
	t := &track{
		id:       r.nextTrack,
		rec:      r,
		ep:       ep,
		producer: p,
		codec:    codec,
		rungs:    1,
		main:     true,
		in:       make(chan packet, queueSize),
		done:     make(chan struct{}),
	}
	t.clock.rate = p.ClockRate()
	if t.clock.rate == 0 {
		t.clock.rate = 90000
		if p.Kind() == sfu.KindAudio {
			t.clock.rate = 48000
		}
	}
	ep.join()
	switch codec {
	case codecs.H264:
		t.depack = h264.NewDepacketizer()
	case codecs.VP8:
		t.vpx = codecs.NewFrameAssembler(codecs.VP8)
	case codecs.VP9:
		t.vpx = codecs.NewFrameAssembler(codecs.VP9)
	}
	return t, nil
}

// launch connects a track to its producer through a direct consumer.
func (r *Recording) launch(t *track, cap int) error {
	r.ctl <- muxCtl{kind: ctlAdd, addTrack: t.id}
	dt, err := r.router.NewDirectTransport("recorder-" + r.id)
	if err != nil {
		r.ctl <- muxCtl{kind: ctlEnd, endTrack: t.id}
		return err
	}
	c, err := dt.Consume(t.producer, t)
	if err != nil {
		dt.Close()
		r.ctl <- muxCtl{kind: ctlEnd, endTrack: t.id}
		return err
	}
	t.consumer = c
	if cap >= 0 {
		c.SetMaxLayer(cap)
	}
	c.OnClose(func() {
		t.closeInput()
		go dt.Close()
	})
	go func() {
		t.run()
		r.ctl <- muxCtl{kind: ctlEnd, endTrack: t.id}
		close(t.done)
	}()
	return nil
}

func (r *Recording) startEpoch(sel selection, rungs int) {
	r.mu.Lock()
	start := r.lastPTS
	if r.wrote {
		start += 40 * time.Millisecond
	}
	wrote := r.wrote
	r.mu.Unlock()
	if wrote {
		r.ctl <- muxCtl{kind: ctlDiscont}
	}
	ep := newEpoch(start)
	r.cur = &current{sel: sel, ep: ep}
	if sel.video != nil {
		r.log.Info("recording source", "video", sel.video.ID(), "owner", sel.video.Owner(), "rungs", rungs)
		for i := 0; i < rungs; i++ {
			t, err := r.newTrack(sel.video, ep)
			if err != nil {
				r.setError(err)
				break
			}
			t.rung, t.rungs, t.main = i, rungs, i == rungs-1
			cap := -1
			if rungs > 1 {
				cap = 1
				switch i {
				case 0:
					cap = 0
				case rungs - 1:
					cap = 2
				}
			}
			if err := r.launch(t, cap); err != nil {
				r.setError(fmt.Errorf("record %s: %w", sel.video.ID(), err))
				continue
			}
			r.cur.tracks = append(r.cur.tracks, t)
		}
	}
	if sel.audio != nil {
		r.addAudio(sel.audio)
	}
}

func (r *Recording) addAudio(p *sfu.Producer) {
	r.cur.sel.audio = p
	t, err := r.newTrack(p, r.cur.ep)
	if err != nil {
		r.setError(err)
		return
	}
	if err := r.launch(t, -1); err != nil {
		r.setError(fmt.Errorf("record %s: %w", p.ID(), err))
		return
	}
	r.cur.audioTrack = t
	r.cur.tracks = append(r.cur.tracks, t)
}

// endEpoch closes the current source's consumers, waits for their frames
// to be written, and returns the timeline position reached.
func (r *Recording) endEpoch() {
	if r.cur == nil {
		return
	}
	for _, t := range r.cur.tracks {
		if t.consumer != nil {
			t.consumer.Close()
		}
	}
	for _, t := range r.cur.tracks {
		<-t.done
	}
	reply := make(chan time.Duration)
	r.ctl <- muxCtl{kind: ctlEpoch, endEpoch: reply}
	<-reply
	r.cur = nil
}

// watchClose pokes the control goroutine when p closes, until the
// recording finishes: the room's producers outlive it, and a hook left on
// one would hold the finished recording, buffers and all, for as long as
// the sharer stays (every recording of a long party).
func (r *Recording) watchClose(p *sfu.Producer) {
	cancel := p.OnClose(r.poke)
	r.watchMu.Lock()
	if r.unwatched {
		r.watchMu.Unlock()
		cancel()
		return
	}
	r.unwatch = append(r.unwatch, cancel)
	r.watchMu.Unlock()
}

func (r *Recording) finish(reason string) {
	if r.cancelObs != nil {
		r.cancelObs()
	}
	r.watchMu.Lock()
	r.unwatched = true
	unwatch := r.unwatch
	r.unwatch = nil
	r.watchMu.Unlock()
	for _, cancel := range unwatch {
		cancel()
	}
	if r.cancelStage != nil {
		r.cancelStage()
	}
	r.endEpoch()
	// The reserve gives back its space now, for what finishing writes (the
	// last segment, playlists, recording.json) even on a full disk.
	r.freeReserve()
	stopped := make(chan struct{})
	r.ctl <- muxCtl{kind: ctlStop, stop: stopped}
	<-stopped
	r.mu.Lock()
	r.stoppedAt = time.Now()
	if r.reason == "" {
		r.reason = reason
	}
	r.state = StateStopped
	if r.err != nil && !r.wrote {
		r.state = StateFailed
	}
	r.mu.Unlock()
	if err := r.m.persist(r); err != nil {
		// The API still reports it, from memory, and recording.json is
		// written when the disk takes it again.
		r.m.keepUnsaved(r)
	}
	in := r.Info()
	r.log.Info("recording stopped", "reason", in.Reason, "duration", in.Duration, "err", in.Error)
	close(r.done)
	r.m.forget(r)
}

// mux is the one goroutine that writes the sinks.
func (r *Recording) mux() {
	il := newInterleaver(3 * time.Second)
	// After a write error nothing more is written to any sink: the
	// recording stops, and its files end on the frames written whole.
	broken := false
	write := func(fs []*Frame) {
		for _, f := range fs {
			if broken {
				return
			}
			for _, s := range r.sinks {
				if err := s.WriteFrame(f); err != nil {
					broken = true
					r.setError(fmt.Errorf("write: %w", err))
					r.requestStop(writeFailReason(err))
				}
			}
			if broken {
				return // this frame did not make it: not in the duration
			}
			r.mu.Lock()
			if !r.wrote {
				r.firstPTS = f.PTS
			}
			r.wrote = true
			r.lastPTS = max(r.lastPTS, f.PTS)
			r.mu.Unlock()
		}
	}
	for {
		// Control messages go first: a track's "add" must be seen before
		// its frames.
		var c muxCtl
		select {
		case c = <-r.ctl:
		default:
			select {
			case f := <-r.frames:
				write(il.push(f))
				continue
			case c = <-r.ctl:
			}
		}
		{
			switch c.kind {
			case ctlAdd:
				il.add(c.addTrack)
			case ctlEnd:
				// Frames the track sent before it ended are in r.frames.
				r.drainFrames(il, write)
				il.remove(c.endTrack)
				write(il.ready(false))
			case ctlEpoch:
				r.drainFrames(il, write)
				write(il.flush())
				r.mu.Lock()
				last := r.lastPTS
				r.mu.Unlock()
				c.endEpoch <- last
			case ctlDiscont:
				for _, s := range r.sinks {
					s.Discontinuity()
				}
			case ctlStop:
				r.drainFrames(il, write)
				write(il.flush())
				var errs []error
				for _, s := range r.sinks {
					if err := s.Close(); err != nil {
						errs = append(errs, err)
					}
				}
				if err := errors.Join(errs...); err != nil {
					r.setError(fmt.Errorf("finish: %w", err))
				}
				// A finished recording may still be held for its info
				// (when recording.json could not be saved): the sinks'
				// buffers (256 KB an HLS variant) go now.
				r.sinks = nil
				close(c.stop)
				return
			}
		}
	}
}

func (r *Recording) drainFrames(il *interleaver, write func([]*Frame)) {
	for {
		select {
		case f := <-r.frames:
			write(il.push(f))
		default:
			return
		}
	}
}

// writeFailReason is a stopped recording's reason for a write error.
func writeFailReason(err error) string {
	if noSpace(err) {
		return "disk full"
	}
	return "write failed"
}

// reserveName is the file that holds space for finishing a recording.
const reserveName = ".reserve"

// makeReserve writes n bytes to the recording's reserve file: space that
// finishing is sure to find (freeReserve gives it back) when a full disk
// stopped the recording.
func (r *Recording) makeReserve(n int64) error {
	if n <= 0 {
		return nil
	}
	path := filepath.Join(r.dir, reserveName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	// Real bytes, not a sparse file: the space must be taken now.
	buf := make([]byte, min(n, 256<<10))
	for left := n; left > 0 && err == nil; left -= int64(len(buf)) {
		_, err = f.Write(buf[:min(left, int64(len(buf)))])
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

func (r *Recording) freeReserve() {
	if err := os.Remove(filepath.Join(r.dir, reserveName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("free the recording's reserve", "err", err)
	}
}
