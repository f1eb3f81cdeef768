package sfu

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/sfu/rtpmunge"
	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Consumer forwards one producer to one subscriber, with its own SSRC and
// its own continuous sequence numbers and timestamps. It implements
// webrtc.TrackLocal so pion binds it to the negotiated sender.
type Consumer struct {
	id          string
	producer    *Producer
	transport   *Transport
	transceiver *webrtc.RTPTransceiver
	sender      *webrtc.RTPSender

	// mu guards the write state below: packets of different simulcast
	// layers arrive from different read loops.
	mu sync.Mutex
	// writer is the consumer's way out (egress.go), nil until bound (and
	// again once unbound or closed); pionOut and srtpOut hold the WebRTC
	// ones, so that binding allocates nothing.
	writer  egress
	pionOut pionEgress
	srtpOut srtpEgress
	ssrc    uint32
	pt      uint8
	current int // layer being forwarded, -1 while waiting for a keyframe
	target  int // layer wanted
	munger  rtpmunge.Munger
	// tlTarget is the highest VP8 temporal layer wanted of the target
	// layer (maxTemporal: every frame); tl drops the frames above it.
	tlTarget int
	tl       temporalFilter
	// payloadBuf holds a payload whose descriptor tl rewrote (the
	// producer's packet is shared by all its consumers); made on the
	// first rewrite, which a subscriber that never changes layers never
	// needs.
	payloadBuf []byte
	hdr        rtp.Header
	ext        [4]rtp.Extension
	closed     bool
	onClose    []func()

	paused atomic.Bool
	// pinned, when >= 0, is the highest layer the subscriber wants.
	maxLayer atomic.Int32

	packets atomic.Uint64
	bytes   atomic.Uint64

	// alloc is the layer allocator's memory (router tick goroutine only).
	alloc consumerAlloc
	// onLayer is told the layers now forwarded (-1: video suspended).
	onLayer atomic.Pointer[func(spatial, temporal int)]
	// Retransmission (retransmit.go), under mu: what went out, by
	// sequence number (video only), and the repair stream.
	sent     []sentPacket
	sentMask uint16
	born     time.Time
	rtxSSRC  uint32
	rtxPT    uint8
	rtxSeq   uint16
	// codecs are the formats negotiated with the subscriber for this
	// track, with its payload types, and negRTX the repair SSRC pion
	// gave the sender (0: none): pt and rtxPT are chosen among them for
	// the producer's codec (applyCodec), under mu.
	codecs []webrtc.RTPCodecParameters
	negRTX uint32
	// offered are the formats the SFU offered for the track (Consume).
	offered []webrtc.RTPCodecParameters
	// twccID is the transport-wide sequence number extension's id in
	// this consumer's m-section, 0 when the subscriber did not negotiate
	// it there (srtpout.go stamps only then).
	twccID uint8

	retransmits atomic.Uint64
	nackMisses  atomic.Uint64

	// What the next sender report says (senderreport.go), under mu.
	srTS      uint32
	srAt      time.Time
	srPackets uint32
	srOctets  uint32
}

func newConsumer(t *Transport, p *Producer, paused bool) *Consumer {
	var seed [6]byte
	_, _ = rand.Read(seed[:])
	c := &Consumer{
		id:        newID("co"),
		producer:  p,
		transport: t,
		current:   -1,
		target:    -1,
		tlTarget:  maxTemporal,
	}
	c.tl.reset()
	c.maxLayer.Store(maxLayers - 1)
	c.munger.Reset(p.clockRate(), binary.BigEndian.Uint16(seed[:2]), binary.BigEndian.Uint32(seed[2:]))
	c.paused.Store(paused)
	if p.kind == KindVideo {
		n := history(t)
		c.sent = make([]sentPacket, n)
		c.sentMask = uint16(n - 1)
		c.born = time.Now()
		c.rtxSeq = binary.BigEndian.Uint16(seed[2:4])
	}
	return c
}

// ID returns the consumer's identifier.
func (c *Consumer) ID() string { return c.id }

// Producer returns the producer being forwarded.
func (c *Consumer) Producer() *Producer { return c.producer }

// Kind returns audio or video.
func (c *Consumer) Kind() Kind { return c.producer.kind }

// Mid returns the m-section of the receive transport carrying the
// consumer, or "" before the first offer.
func (c *Consumer) Mid() string {
	if c.transceiver == nil {
		return ""
	}
	return c.transceiver.Mid()
}

// Paused reports whether the consumer is paused.
func (c *Consumer) Paused() bool { return c.paused.Load() }

// Stats returns the packets and bytes forwarded so far.
func (c *Consumer) Stats() (packets, bytes uint64) { return c.packets.Load(), c.bytes.Load() }

// Pause stops forwarding to this subscriber.
func (c *Consumer) Pause() { c.paused.Store(true) }

// Resume forwards again, from the next keyframe for video.
func (c *Consumer) Resume() {
	if c.paused.Swap(false) {
		c.restart()
	}
}

// SetMaxLayer caps the simulcast layer (0 = lowest) this subscriber gets.
func (c *Consumer) SetMaxLayer(l int) {
	if l < 0 {
		l = 0
	}
	if l >= maxLayers {
		l = maxLayers - 1
	}
	c.maxLayer.Store(int32(l))
	c.layersChanged()
}

// OnClose registers f to run once when the consumer closes.
func (c *Consumer) OnClose(f func()) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		f()
		return
	}
	c.onClose = append(c.onClose, f)
	c.mu.Unlock()
}

// restart makes the consumer wait for a keyframe (and ask for one) before
// forwarding again: after a pause, a reconnection or a renegotiation.
func (c *Consumer) restart() {
	c.mu.Lock()
	c.current = -1
	if c.transport.bwe == nil || c.target < 0 {
		c.target = c.pickLayer()
		if c.transport.bwe != nil {
			c.target = c.lowestLayer()
		}
	}
	t := c.target
	c.mu.Unlock()
	c.producer.RequestKeyframe(t)
}

// lowestLayer is where a bandwidth-managed consumer starts: the allocator
// climbs from there as the estimate allows.
func (c *Consumer) lowestLayer() int {
	for i := 0; i < maxLayers; i++ {
		if c.producer.layers[i].active.Load() || c.producer.layers[i].ssrc.Load() != 0 {
			return i
		}
	}
	return -1
}

// layersChanged re-evaluates the target layer when the producer's layers
// or the subscriber's cap change.
func (c *Consumer) layersChanged() {
	c.mu.Lock()
	if c.transport.bwe != nil && c.target >= 0 {
		// The allocator decides; it sees the new layer at its next tick.
		c.mu.Unlock()
		return
	}
	t := c.pickLayer()
	if c.transport.bwe != nil {
		t = c.lowestLayer()
	}
	changed := t != c.target
	c.target = t
	c.mu.Unlock()
	if changed {
		c.producer.RequestKeyframe(t)
	}
}

// pickLayer returns the best active layer within the subscriber's cap.
func (c *Consumer) pickLayer() int {
	max := int(c.maxLayer.Load())
	best := -1
	for i := 0; i <= max && i < maxLayers; i++ {
		if c.producer.layers[i].active.Load() {
			best = i
		}
	}
	if best < 0 {
		// Nothing within the cap: fall back to the lowest layer there is.
		for i := 0; i < maxLayers; i++ {
			if c.producer.layers[i].active.Load() {
				return i
			}
		}
	}
	return best
}

// OnLayerChange registers f to be told (on a media goroutine; it must not
// block) each time the consumer starts forwarding another simulcast
// layer or another VP8 temporal layer: spatial is the simulcast layer,
// temporal the highest temporal layer forwarded (0 for a stream without
// temporal layers). Both are -1 when bandwidth suspends its video.
func (c *Consumer) OnLayerChange(f func(spatial, temporal int)) { c.onLayer.Store(&f) }

// notifyLayer tells OnLayerChange's function; spatialSwitch counts the
// change in the worker's layer switches, which are simulcast ones only.
func (c *Consumer) notifyLayer(spatial, temporal int, spatialSwitch bool) {
	if spatialSwitch {
		countLayerSwitch(c) // stats.go
	}
	if f := c.onLayer.Load(); f != nil {
		(*f)(spatial, temporal)
	}
}

// Layer returns the simulcast layer being forwarded (-1 if none) and the
// one wanted next.
func (c *Consumer) Layer() (current, target int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current, c.target
}

// sendPadding sends n bytes of padding-only packets on this consumer's
// stream, for a bandwidth probe. The subscriber discards them; their
// sequence numbers are taken from the stream so it sees no gap. On the own
// SRTP path the packets are queued in b, which the caller flushes.
func (c *Consumer) sendPadding(b *udpbatch.Batch, n int) int {
	sent := 0
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writer == nil || c.closed {
		return 0
	}
	for sent < n {
		h := &c.hdr
		seq, ts := c.munger.Pad()
		c.notePad(seq, ts)
		*h = rtp.Header{Version: 2, Padding: true, PayloadType: c.pt, SequenceNumber: seq, Timestamp: ts, SSRC: c.ssrc, Extensions: c.ext[:0]}
		w, err := c.write(b, h, padPayload[:])
		if err != nil {
			break
		}
		sent += w
	}
	return sent
}

// consumerTrack is the consumer as pion sees it: a webrtc.TrackLocal on
// its receive transport t.
type consumerTrack struct {
	c *Consumer
	t *RecvTransport
}

// Bind is called by pion once the subscriber has answered, with the
// negotiated codecs. Only formats the SFU offered for this track and the
// subscriber kept in its m-section of the answer count: pion's list is
// per kind, not per m-section.
func (ct consumerTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	c, t := ct.c, ct.t
	if h := testHookBind; h != nil {
		h(c)
	}
	negotiated := ctx.CodecParameters()
	if c.transceiver != nil {
		t.mu.Lock()
		if a, ok := t.answered[c.transceiver.Mid()]; ok {
			negotiated = a
		}
		t.mu.Unlock()
	}
	c.mu.Lock()
	var codecs []webrtc.RTPCodecParameters
	for _, cp := range negotiated {
		for _, o := range c.offered {
			if o.PayloadType == cp.PayloadType {
				codecs = append(codecs, cp)
				break
			}
		}
	}
	c.codecs, c.negRTX = codecs, uint32(ctx.SSRCRetransmission())
	chosen, ok := c.applyCodec()
	if !ok {
		c.mu.Unlock()
		return webrtc.RTPCodecParameters{}, fmt.Errorf("consumer %s: subscriber does not accept %s: %w", c.id, c.producer.format().MimeType, webrtc.ErrUnsupportedCodec)
	}
	c.ssrc = uint32(ctx.SSRC())
	c.bindWebRTC(ctx.WriteStream(), twccExtensionID(ctx), t.out.Load())
	c.mu.Unlock()
	if c.transport.connected.Load() {
		c.restart()
	}
	return chosen, nil
}

// applyCodec chooses, with c.mu held, the payload types (media and RTX)
// that carry the producer's codec among those negotiated, and returns
// the chosen format.
func (c *Consumer) applyCodec() (webrtc.RTPCodecParameters, bool) {
	pt, rtxPT, ok := payloadTypeFor(c.codecs, c.producer.format())
	if !ok {
		return webrtc.RTPCodecParameters{}, false
	}
	c.pt = pt
	c.rtxSSRC, c.rtxPT = 0, 0
	if rtxPT != 0 && c.negRTX != 0 {
		c.rtxSSRC, c.rtxPT = c.negRTX, rtxPT
	}
	for _, cp := range c.codecs {
		if uint8(cp.PayloadType) == pt {
			return cp, true
		}
	}
	return webrtc.RTPCodecParameters{}, false
}

// codecChanged follows the producer's codec once its first packet told
// it: the payload types change to the ones negotiated for it; a
// subscriber that negotiated none gets nothing.
func (c *Consumer) codecChanged() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.codecs == nil {
		return // not bound yet: Bind chooses
	}
	if _, ok := c.applyCodec(); !ok {
		c.writer = nil
		c.transport.log.Info("subscriber did not negotiate the codec the publisher sends", "consumer", c.id, "codec", c.producer.format().MimeType)
	}
}

func (ct consumerTrack) Unbind(webrtc.TrackLocalContext) error {
	c := ct.c
	c.mu.Lock()
	c.writer = nil
	c.mu.Unlock()
	return nil
}

// ID is the consumer id, which the subscriber sees as the track id.
func (ct consumerTrack) ID() string { return ct.c.id }

// RID is empty: a consumer sends a single stream.
func (ct consumerTrack) RID() string { return "" }

// StreamID groups a publisher's tracks of one source (a screen share's
// video and audio) into one MediaStream, so the browser syncs them.
func (ct consumerTrack) StreamID() string { return ct.c.producer.stream }

func (ct consumerTrack) Kind() webrtc.RTPCodecType {
	if ct.c.producer.kind == KindAudio {
		return webrtc.RTPCodecTypeAudio
	}
	return webrtc.RTPCodecTypeVideo
}

// readRTCP reads the subscriber's feedback that pion delivers to the
// consumer's sender (all of it when the transport is on pion's path; when
// the SFU's own intake takes it, the share left to pion, see srtcpin.go).
// It ends when the sender stops.
func (c *Consumer) readRTCP(s *webrtc.RTPSender) {
	buf := make([]byte, rtcpMTU)
	for {
		pkts, err := readSenderRTCP(s, buf)
		if err != nil {
			return
		}
		c.onRTCP(pkts)
	}
}

// onRTCP serves the subscriber's feedback about the consumer's stream.
func (c *Consumer) onRTCP(pkts []rtcp.Packet) {
	c.mu.Lock()
	ssrc := c.ssrc
	c.mu.Unlock()
	c.serveRTCP(pkts, ssrc)
}

// serveRTCP serves the feedback about the stream the subscriber knows as
// ssrc, which the consumer sends: keyframe requests go to the producer;
// NACKs are answered from the producer's packet cache; loss reports go to
// the bandwidth estimator.
func (c *Consumer) serveRTCP(pkts []rtcp.Packet, ssrc uint32) {
	for _, pkt := range pkts {
		switch pk := pkt.(type) {
		case *rtcp.TransportLayerNack:
			if pk.MediaSSRC == ssrc {
				c.handleNACK(pk)
			}
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			if names(pkt, ssrc) {
				c.RequestKeyframe()
			}
		case *rtcp.ReceiverReport:
			if c.transport.bwe == nil || c.producer.kind != KindVideo {
				continue
			}
			for _, rr := range pk.Reports {
				if rr.SSRC == ssrc {
					c.transport.bwe.OnReceiverReport(float64(rr.FractionLost)/256, time.Now())
				}
			}
		}
	}
}

// rtcpMTU bounds one compound RTCP packet read from a subscriber.
const rtcpMTU = 1500

// readSenderRTCP reads a subscriber's next compound RTCP packet into buf
// and returns what the interceptors already parsed of it (the stats
// interceptor parses every one): pion's RTPSender.ReadRTCP would
// allocate a buffer and parse it all again, once per feedback message
// per subscriber. A packet that does not parse is skipped (nil, nil): it
// must not end the subscriber's feedback. The error is the sender's.
func readSenderRTCP(s *webrtc.RTPSender, buf []byte) ([]rtcp.Packet, error) {
	n, a, err := s.Read(buf)
	if err != nil {
		return nil, err
	}
	if a == nil {
		a = interceptor.Attributes{}
	}
	pkts, perr := a.GetRTCPPackets(buf[:n])
	if perr != nil {
		return nil, nil
	}
	return pkts, nil
}

// Close stops forwarding and removes the consumer from its transport.
func (c *Consumer) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.writer = nil
	cbs := c.onClose
	c.onClose = nil
	c.mu.Unlock()
	c.producer.removeConsumer(c)
	retireConsumer(c) // keep its counts in the worker's totals (stats.go)
	c.transport.removeConsumer(c)
	for _, f := range cbs {
		f()
	}
}

// SenderReport returns the publisher's latest mapping of this consumer's
// outgoing RTP timestamps to NTP time (RFC 3550 §6.4.1), for the layer
// being forwarded; ok is false until one has arrived.
func (c *Consumer) SenderReport() (ntp uint64, rtpTS uint32, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current < 0 {
		return 0, 0, false
	}
	l := &c.producer.layers[c.current]
	l.srMu.Lock()
	defer l.srMu.Unlock()
	if !l.srValid {
		return 0, 0, false
	}
	return l.srNTP, l.srRTP + c.munger.TSOffset(), true
}

// RequestKeyframe asks the publisher for a keyframe of the layer this
// consumer forwards (coalesced with other requests).
func (c *Consumer) RequestKeyframe() {
	c.mu.Lock()
	t := c.target
	c.mu.Unlock()
	c.producer.RequestKeyframe(t)
}
