package sfu

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/codecs"
	"github.com/matinee-dev/matinee/sfu/packetcache"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Kind is audio or video.
type Kind string

// Media kinds.
const (
	KindAudio Kind = "audio"
	KindVideo Kind = "video"
)

// maxLayers is the number of simulcast layers a producer tracks.
const maxLayers = 3

// Producer is one track a client sends: audio, or video with up to three
// simulcast layers.
type Producer struct {
	id   string
	kind Kind
	// codec is the format the publisher sends. When its answer allowed
	// several (formats), the first is assumed until the first packet's
	// payload type tells (resolveCodec).
	codec   atomic.Pointer[webrtc.RTPCodecCapability]
	kfCodec atomic.Uint32 // codecs.Codec of codec
	formats []webrtc.RTPCodecCapability
	// resolved is set once codec is known for sure; until then the
	// router's observers are not told of the producer (announce).
	resolved  atomic.Bool
	announce  []func()
	appData   any
	stream    string
	transport *Transport
	in        *inbound
	stats     *Stats // its worker's; nil for a producer made without one

	mu        sync.Mutex
	consumers atomic.Pointer[[]*Consumer]
	layers    [maxLayers]layer
	closed    bool
	onClose   []closeHook // in registration order
	nextHook  int

	paused     atomic.Bool
	closedFlag atomic.Bool
	// priority orders video when bandwidth is short (screen before camera).
	priority int
	// onLayers, when set, is told which encodings subscribers need
	// (dynacast); wanted is what it was last told.
	onLayers func(active [maxLayers]bool)
	wanted   [maxLayers]bool

	// sim, for SSRC-based simulcast (ssrcsim.go), lists the encodings
	// lowest first: an SSRC's place in it is its layer.
	sim []simStream

	// pipes are the pipes to other routers that carry this producer
	// (pipe.go), copy on write under mu.
	pipes atomic.Pointer[[]*pipeOut]

	// writePLI sends a keyframe request upstream; a field so tests can
	// count requests without a PeerConnection.
	writePLI func(ssrc uint32) error
	// writeRTCP sends feedback to the publisher (nil without a
	// PeerConnection).
	writeRTCP func([]rtcp.Packet) error
}

// layer is one simulcast encoding (or the only one).
type layer struct {
	rid    string
	ssrc   atomic.Uint32
	active atomic.Bool

	// kf coalesces subscribers' keyframe requests
	// (WorkerConfig.KeyframeInterval); relayKF those arriving from pipes,
	// which all reach kf through it (pipe.go).
	kf           kfGate
	relayKF      kfGate
	lastKeyframe atomic.Int64 // unix nanoseconds

	srMu    sync.Mutex
	srNTP   uint64
	srRTP   uint32
	srValid bool

	// Live statistics: counters bumped per packet, rates computed by the
	// router's tick.
	bytes      atomic.Uint64
	frames     atomic.Uint64
	lastPacket atomic.Int64 // unix nanoseconds
	width      atomic.Uint32
	height     atomic.Uint32
	rate       atomic.Int64 // bits per second, smoothed
	fps        atomic.Int64 // frames per second ×100
	lastBytes  uint64
	lastFrames uint64
	// pausedByUs is set while dynacast has asked the publisher to stop
	// this encoding because no subscriber needs it.
	pausedByUs atomic.Bool
	unwanted   time.Time
	resumedAt  time.Time

	// cache keeps the layer's recent packets for retransmission to every
	// consumer (video; made on the first packet).
	cache atomic.Pointer[packetcache.Cache]
	// temporal counts VP8 temporal layers within this one (temporal.go).
	temporal temporalStats
}

func newProducer(t *Transport, in *inbound, kind Kind, codec webrtc.RTPCodecCapability, appData any, stream string) *Producer {
	p := &Producer{
		id:        newID("pr"),
		kind:      kind,
		formats:   []webrtc.RTPCodecCapability{codec},
		appData:   appData,
		stream:    stream,
		transport: t,
		in:        in,
	}
	if t != nil && t.router != nil && t.router.w != nil {
		p.stats = t.router.w.stats
	}
	p.setCodec(codec)
	p.resolved.Store(true)
	empty := []*Consumer{}
	p.consumers.Store(&empty)
	// The publisher's connection takes feedback; plain RTP and pipes set
	// their own.
	write := t.writeRTCP
	p.writeRTCP = write
	p.writePLI = func(ssrc uint32) error {
		if write == nil {
			return nil
		}
		return write([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	}
	return p
}

// ID returns the producer's identifier.
func (p *Producer) ID() string { return p.id }

// Kind returns audio or video.
func (p *Producer) Kind() Kind { return p.kind }

// Codec returns the negotiated codec's mime type and fmtp line.
func (p *Producer) Codec() (mime, fmtp string) {
	c := p.format()
	return c.MimeType, c.SDPFmtpLine
}

// format returns the format the producer sends (or, before its first
// packet, is assumed to send).
func (p *Producer) format() webrtc.RTPCodecCapability { return *p.codec.Load() }

func (p *Producer) setCodec(c webrtc.RTPCodecCapability) {
	p.codec.Store(&c)
	p.kfCodec.Store(uint32(codecs.FromMime(c.MimeType)))
}

// setFormats records every format the publisher's answer allows, in the
// answer's order; with more than one, which is sent is known only from
// the first packet.
func (p *Producer) setFormats(formats []webrtc.RTPCodecCapability) {
	p.formats = formats
	p.setCodec(formats[0])
	p.resolved.Store(len(formats) < 2)
}

// possibleFormats lists what the producer may send: its codec once
// known, every format its answer allows until then.
func (p *Producer) possibleFormats() []webrtc.RTPCodecCapability {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resolved.Load() {
		return []webrtc.RTPCodecCapability{p.format()}
	}
	return p.formats
}

// whenResolved runs f once the producer's codec is known (now, if it is).
func (p *Producer) whenResolved(f func()) {
	p.mu.Lock()
	if !p.resolved.Load() {
		p.announce = append(p.announce, f)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	f()
}

// resolveCodec fixes the producer's codec from what the first packet
// carries (actual, from its payload type), before that packet is
// forwarded. Consumers negotiated with the assumed format switch their
// payload type to the actual one.
func (p *Producer) resolveCodec(actual webrtc.RTPCodecCapability) {
	if p.resolved.Load() {
		return
	}
	p.mu.Lock()
	if p.resolved.Load() {
		p.mu.Unlock()
		return
	}
	changed := false
	if actual.MimeType != "" && !sameCodec(actual, p.format()) {
		f := actual
		for _, x := range p.formats {
			if sameCodec(x, actual) {
				f = x // the format as answered
				break
			}
		}
		p.setCodec(f)
		changed = true
	}
	p.resolved.Store(true)
	fs := p.announce
	p.announce = nil
	cs := *p.consumers.Load()
	p.mu.Unlock()
	if changed {
		for _, c := range cs {
			c.codecChanged()
		}
	}
	for _, f := range fs {
		f()
	}
}

// AppData returns the data given with the track at Publish.
func (p *Producer) AppData() any { return p.appData }

// Owner returns the owner of the producer's transport.
func (p *Producer) Owner() string { return p.transport.opts.Owner }

// Mid returns the m-section the producer arrives on.
func (p *Producer) Mid() string { return p.in.mid }

// Paused reports whether the producer is paused.
func (p *Producer) Paused() bool { return p.paused.Load() }

// Pause stops forwarding the producer to every consumer.
func (p *Producer) Pause() { p.paused.Store(true) }

// Resume forwards the producer again; video consumers wait for a keyframe.
func (p *Producer) Resume() {
	if !p.paused.Swap(false) {
		return
	}
	for _, c := range *p.consumers.Load() {
		c.restart()
	}
}

// OnClose registers f to run once when the producer closes. An observer
// that goes away before the producer (a WHEP viewer following a stage)
// calls cancel: f, and all it references, is otherwise kept for as long
// as the producer lives.
func (p *Producer) OnClose(f func()) (cancel func()) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		f()
		return func() {}
	}
	id := p.nextHook
	p.nextHook++
	p.onClose = append(p.onClose, closeHook{id: id, f: f})
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for i, h := range p.onClose {
			if h.id == id {
				p.onClose = slices.Delete(p.onClose, i, i+1)
				return
			}
		}
	}
}

// closeHook is one OnClose callback, with the id its cancel looks for.
type closeHook struct {
	id int
	f  func()
}

func (p *Producer) addConsumer(c *Consumer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("producer %s: %w", p.id, ErrClosed)
	}
	old := *p.consumers.Load()
	next := make([]*Consumer, len(old), len(old)+1)
	copy(next, old)
	next = append(next, c)
	p.consumers.Store(&next)
	return nil
}

func (p *Producer) removeConsumer(c *Consumer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.consumers.Load()
	next := make([]*Consumer, 0, len(old))
	for _, o := range old {
		if o != c {
			next = append(next, o)
		}
	}
	p.consumers.Store(&next)
}

// layerIndex maps a rid to a layer: q/h/f (or l/m/h, 0/1/2) in order of
// size; an unknown rid takes the first free slot. In SSRC simulcast the
// SSRC's place in the SIM group is the layer, and an SSRC outside it has
// none.
func (p *Producer) layerIndex(rid string, ssrc uint32) int {
	idx := -1
	switch rid {
	case "", "q", "l", "0", "low":
		idx = 0
	case "h", "m", "1", "mid":
		idx = 1
	case "f", "2", "high":
		idx = 2
	}
	if rid == "" && len(p.sim) > 0 {
		if idx = p.simLayer(ssrc); idx < 0 {
			return -1
		}
	}
	p.mu.Lock()
	if idx < 0 {
		for i := range p.layers {
			if p.layers[i].rid == rid || p.layers[i].ssrc.Load() == 0 {
				idx = i
				break
			}
		}
		if idx < 0 {
			p.mu.Unlock()
			return -1
		}
	}
	p.mu.Unlock()
	p.claimLayer(idx, rid, ssrc)
	return idx
}

// claimLayer gives layer idx its rid and SSRC; a layer new to them may be
// better than what consumers get now.
func (p *Producer) claimLayer(idx int, rid string, ssrc uint32) {
	p.mu.Lock()
	l := &p.layers[idx]
	l.rid = rid
	fresh := l.ssrc.Swap(ssrc) != ssrc
	if fresh {
		l.active.Store(true)
	}
	p.mu.Unlock()
	if fresh {
		for _, c := range *p.consumers.Load() {
			c.layersChanged()
		}
	}
}

// topLayer returns the highest active layer, or -1.
func (p *Producer) topLayer() int {
	for i := maxLayers - 1; i >= 0; i-- {
		if p.layers[i].active.Load() {
			return i
		}
	}
	return -1
}

// keyframePacing returns the worker's clock and keyframe interval
// (WorkerConfig), or the defaults where a test made the producer, or its
// worker, without NewWorker.
func (p *Producer) keyframePacing() (Clock, time.Duration) {
	var clock Clock = systemClock{}
	interval := DefaultKeyframeInterval
	if t := p.transport; t != nil && t.router != nil && t.router.w != nil {
		if c := t.router.w.cfg.Clock; c != nil {
			clock = c
		}
		if d := t.router.w.cfg.KeyframeInterval; d > 0 {
			interval = d
		}
	}
	return clock, interval
}

// RequestKeyframe asks the publisher for a keyframe on a layer, at most
// once per keyframe interval (WorkerConfig.KeyframeInterval): the
// subscribers' PLIs and FIRs within it are coalesced into one, since each
// keyframe costs the publisher a burst of bits and every subscriber
// benefits from it. A request inside the interval is sent when it ends,
// unless a keyframe arrived meanwhile.
func (p *Producer) RequestKeyframe(idx int) {
	if p.kind != KindVideo || idx < 0 || idx >= maxLayers {
		return
	}
	l := &p.layers[idx]
	_, interval := p.keyframePacing()
	l.kf.request(p, idx, interval, func() { p.sendPLI(l) })
}

// kfGate lets keyframe requests for one layer through at most once per
// interval.
type kfGate struct {
	mu      sync.Mutex
	last    time.Time
	pending bool
	timer   Timer
}

// request runs send now if the gate's interval has passed since the last
// one, else once when it ends, unless the layer's keyframe arrived
// meanwhile or the producer closed.
func (g *kfGate) request(p *Producer, idx int, every time.Duration, send func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p.isClosed() {
		return
	}
	clock, _ := p.keyframePacing()
	now := clock.Now()
	since := now.Sub(g.last)
	if since >= every {
		// Send now; a deferred request is covered by this one.
		if g.timer != nil {
			g.timer.Stop()
		}
		g.pending = false
		g.last = now
		send()
		return
	}
	if g.pending {
		return
	}
	g.pending = true
	asked := now
	g.timer = clock.AfterFunc(every-since, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if !g.pending {
			return // a request went out meanwhile
		}
		g.pending = false
		if p.isClosed() || p.layers[idx].lastKeyframe.Load() > asked.UnixNano() {
			return
		}
		g.last = clock.Now()
		send()
	})
}

// stop cancels a deferred request.
func (g *kfGate) stop() {
	g.mu.Lock()
	if g.timer != nil {
		g.timer.Stop()
	}
	g.pending = false
	g.mu.Unlock()
}

func (p *Producer) sendPLI(l *layer) {
	ssrc := l.ssrc.Load()
	if ssrc == 0 {
		return
	}
	if err := p.writePLI(ssrc); err != nil {
		p.transport.log.Debug("send pli", "err", err)
	}
}

func (p *Producer) isClosed() bool { return p.closedFlag.Load() }

// Close closes the producer and all its consumers.
func (p *Producer) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.closedFlag.Store(true)
	cs := *p.consumers.Load()
	empty := []*Consumer{}
	p.consumers.Store(&empty)
	cbs := p.onClose
	p.onClose = nil
	p.mu.Unlock()
	for i := range p.layers {
		p.layers[i].kf.stop()
		p.layers[i].relayKF.stop()
	}
	for _, c := range cs {
		c.Close()
	}
	p.transport.removeProducer(p)
	p.transport.router.removeProducer(p)
	for _, h := range cbs {
		h.f()
	}
}

// payloadType is the router's payload type for the producer's codec, used
// by consumers that choose their own (direct and plain RTP).
func (p *Producer) payloadType() webrtc.PayloadType {
	if main, _, ok := routerCodecFor(p.format()); ok {
		return main.PayloadType
	}
	return 96
}

// PayloadType returns the payload type a direct consumer's packets carry.
func (p *Producer) PayloadType() uint8 { return uint8(p.payloadType()) }

// ClockRate returns the RTP clock rate of the producer's codec.
func (p *Producer) ClockRate() uint32 { return p.format().ClockRate }

// Channels returns the audio channel count of the codec (0 for video).
func (p *Producer) Channels() uint16 { return p.format().Channels }

// noteSenderReport records a publisher's RTCP sender report: the mapping
// from a layer's RTP timestamps to wall-clock (NTP) time, which lets
// recorders line audio and video up.
func (p *Producer) noteSenderReport(ssrc uint32, ntp uint64, rtpTS uint32) {
	for i := range p.layers {
		l := &p.layers[i]
		if l.ssrc.Load() == ssrc {
			l.srMu.Lock()
			l.srNTP, l.srRTP, l.srValid = ntp, rtpTS, true
			l.srMu.Unlock()
			return
		}
	}
}

func newSSRC() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// rtcpLoop reads the RTCP a publisher sends for one incoming track (sender
// reports, mostly) until the track ends.
func rtcpLoop(in *inbound, recv *webrtc.RTPReceiver, rid string) {
	for {
		var pkts []rtcp.Packet
		var err error
		if rid != "" {
			pkts, _, err = recv.ReadSimulcastRTCP(rid)
		} else {
			pkts, _, err = recv.ReadRTCP()
		}
		if err != nil {
			return
		}
		p := in.producer.Load()
		if p == nil {
			continue
		}
		for _, pkt := range pkts {
			if sr, ok := pkt.(*rtcp.SenderReport); ok {
				p.noteSenderReport(sr.SSRC, sr.NTPTime, sr.RTPTime)
			}
		}
	}
}

// OnLayers registers f to be told which simulcast encodings subscribers
// need (dynacast): the publisher should pause the others. f runs on the
// router's tick goroutine and must not block.
func (p *Producer) OnLayers(f func(active [3]bool)) {
	p.mu.Lock()
	p.onLayers = f
	p.mu.Unlock()
}

// SetPriority orders this producer's video among a subscriber's consumers
// when bandwidth is short: higher goes first (screen shares above cameras).
func (p *Producer) SetPriority(n int) {
	p.mu.Lock()
	p.priority = n
	p.mu.Unlock()
}

// LayerStats describes one simulcast layer as the SFU receives it.
type LayerStats struct {
	RID           string
	Active        bool
	PausedByUs    bool
	Bitrate       int // bits per second
	FPS           float64
	Width, Height int
	// Frames counts the frames received on the layer since it began.
	Frames uint64
}

// Layers returns live statistics of the producer's layers (index 0 is the
// lowest).
func (p *Producer) Layers() []LayerStats {
	out := make([]LayerStats, 0, maxLayers)
	for i := range p.layers {
		l := &p.layers[i]
		if l.ssrc.Load() == 0 {
			continue
		}
		p.mu.Lock()
		rid := l.rid
		p.mu.Unlock()
		out = append(out, LayerStats{
			RID: rid, Active: l.active.Load(), PausedByUs: l.pausedByUs.Load(),
			Bitrate: int(l.rate.Load()), FPS: float64(l.fps.Load()) / 100,
			Width: int(l.width.Load()), Height: int(l.height.Load()),
			Frames: l.frames.Load(),
		})
	}
	return out
}
