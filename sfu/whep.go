package sfu

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/matinee-dev/matinee/sfu/rtpmunge"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ViewerOptions configures a viewer transport. The callbacks are called
// from pion's goroutines and must not block.
type ViewerOptions struct {
	// Owner identifies the viewer, as TransportOptions.Owner.
	Owner string
	// OnFailed is called once when the transport did not connect within
	// the worker's ConnectTimeout.
	OnFailed func(reason string)
	// OnClosed is called once when the transport's connection has closed,
	// whoever closed it (Close, the router closing, the worker closing).
	OnClosed func()
}

// Viewer is a receive transport negotiated the other way round, as WHEP
// does it: the client offers (receive-only audio and video), the SFU
// answers once, and no renegotiation ever follows. It carries at most one
// audio and one video track. What each track shows is chosen with
// SetSource and can change at any time: the viewer's consumers are
// swapped underneath, and the client sees one continuous RTP stream (same
// SSRC, sequence numbers and timestamps that carry on), the new source
// starting on a keyframe.
//
// A viewer's consumers are ordinary consumers of its transport, so the
// router's bandwidth allocator picks their simulcast layers as it does
// for every other subscriber.
type Viewer struct {
	t     *RecvTransport
	opts  ViewerOptions
	slots map[Kind]*viewerSlot

	closeOnce sync.Once
}

// viewerSlot is one of the viewer's two tracks.
type viewerSlot struct {
	v    *Viewer
	kind Kind

	// switchMu serialises SetSource on the slot.
	switchMu sync.Mutex

	mu     sync.Mutex
	writer PacketWriter // nil until pion binds the track
	ssrc   uint32
	// rtxSSRC is the repair stream's SSRC, 0 when none was negotiated.
	rtxSSRC uint32
	// twccID is the TWCC extension's id in the slot's m-section, or 0.
	twccID uint8
	codecs []webrtc.RTPCodecParameters // negotiated, with the client's payload types
	cur    *Consumer
	// last is the renumbering state of the previous consumer, so the next
	// one continues its stream.
	last    rtpmunge.Munger
	hasLast bool
}

// NewViewer creates a viewer transport in this router. Call Answer with
// the client's offer next.
func (r *Router) NewViewer(opts ViewerOptions) (*Viewer, error) {
	t, err := r.NewRecvTransport(TransportOptions{Owner: opts.Owner, OnFailed: opts.OnFailed})
	if err != nil {
		return nil, err
	}
	v := &Viewer{t: t, opts: opts, slots: map[Kind]*viewerSlot{}}
	// The SFU never offers on a viewer: with an offer marked outstanding
	// for good, removing a consumer (a source switch) starts no
	// renegotiation.
	t.negMu.Lock()
	t.offerPending = true
	t.negMu.Unlock()
	t.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		t.onConnectionState(s)
		if s == webrtc.PeerConnectionStateClosed {
			v.closed()
		}
	})
	return v, nil
}

// Transport returns the viewer's transport (for its id, ICE candidates
// and connection state).
func (v *Viewer) Transport() *RecvTransport { return v.t }

// Kinds reports which tracks the viewer receives.
func (v *Viewer) Kinds() (audio, video bool) {
	return v.slots[KindAudio] != nil, v.slots[KindVideo] != nil
}

func (v *Viewer) closed() {
	v.closeOnce.Do(func() {
		if v.opts.OnClosed != nil {
			v.opts.OnClosed()
		}
	})
}

// Close ends the viewer: its consumers, then its connection.
func (v *Viewer) Close() { v.t.Close() }

// Answer applies the client's offer and returns the SFU's answer, with
// every ICE candidate in it (a WHEP client cannot receive trickled ones):
// it waits for candidate gathering, bounded by ctx. The offer must
// receive audio, video or both, in codecs the router knows; every other
// m-section is rejected.
func (v *Viewer) Answer(ctx context.Context, offer string) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	if err := checkUnifiedPlan(&sd); err != nil {
		return "", err
	}
	want := map[Kind][]webrtc.RTPCodecParameters{}
	bundled := bundledMids(&sd)
	for i, md := range sd.MediaDescriptions {
		kind := Kind(md.MediaName.Media)
		if kind != KindAudio && kind != KindVideo || want[kind] != nil || sectionRejected(md, bundled) {
			continue
		}
		if mid, _ := md.Attribute("mid"); mid == "" {
			return "", fmt.Errorf("%w: m-section %d has no a=mid", ErrBadSDP, i)
		}
		if _, ok := md.Attribute("sendonly"); ok {
			continue
		}
		if _, ok := md.Attribute("inactive"); ok {
			continue
		}
		// The answer carries exactly the offered formats the router
		// forwards, with the viewer's own payload types.
		offered := sectionPayloadCodecs(md, string(kind))
		acc := acceptedCodecs(offered)
		if len(acc) == 0 {
			// Refused rather than answered without this kind: the
			// viewer would wait for a track that never comes.
			var fs []webrtc.RTPCodecCapability
			for _, c := range offered {
				fs = append(fs, c.RTPCodecCapability)
			}
			return "", fmt.Errorf("%w: the %s m-section offers no codec the router forwards (it offers %s; forwarded: %s)", ErrBadSDP, kind, describeFormats(fs), acceptedText)
		}
		want[kind] = acc
	}
	if len(want) == 0 {
		return "", fmt.Errorf("%w: the offer receives neither audio nor video", ErrBadSDP)
	}

	t := v.t
	t.negMu.Lock()
	if t.isClosed() {
		t.negMu.Unlock()
		return "", ErrClosed
	}
	if t.pc.RemoteDescription() != nil {
		t.negMu.Unlock()
		return "", fmt.Errorf("viewer answered already: %w", ErrInvalidState)
	}
	trs := map[Kind]*webrtc.RTPTransceiver{}
	for _, kind := range []Kind{KindAudio, KindVideo} {
		if want[kind] == nil {
			continue
		}
		s := &viewerSlot{v: v, kind: kind}
		tr, err := t.pc.AddTransceiverFromTrack(viewerTrack{s}, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			t.negMu.Unlock()
			return "", fmt.Errorf("add %s transceiver: %w", kind, err)
		}
		if err := tr.SetCodecPreferences(want[kind]); err != nil {
			t.negMu.Unlock()
			return "", fmt.Errorf("%s codec preferences: %w", kind, err)
		}
		trs[kind] = tr
		v.slots[kind] = s
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			t.negMu.Unlock()
			return "", ErrClosed
		}
		t.wg.Add(1)
		t.mu.Unlock()
		t.addSink(s)
		go func(sender *webrtc.RTPSender) {
			defer t.wg.Done()
			s.readRTCP(sender)
		}(tr.Sender())
	}
	if err := t.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.negMu.Unlock()
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	ans, err := t.pc.CreateAnswer(nil)
	if err != nil {
		t.negMu.Unlock()
		if errors.Is(err, webrtc.ErrIncorrectSDPSemantics) {
			return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
		}
		return "", fmt.Errorf("create answer: %w", err)
	}
	// Payload types are taken from the answer itself, so what is sent is
	// always what the viewer was told.
	if err := v.noteAnswered(ans.SDP, trs); err != nil {
		t.negMu.Unlock()
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(t.pc)
	if err := t.pc.SetLocalDescription(ans); err != nil {
		t.negMu.Unlock()
		return "", fmt.Errorf("set local description: %w", err)
	}
	t.negMu.Unlock()
	t.flushCandidates()
	t.armTimer()
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("gather ice candidates: %w", ctx.Err())
	}
	return t.pc.LocalDescription().SDP, nil
}

// noteAnswered gives each slot the codecs its m-section of the answer
// carries.
func (v *Viewer) noteAnswered(answer string, trs map[Kind]*webrtc.RTPTransceiver) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return fmt.Errorf("parse own answer: %w", err)
	}
	for kind, tr := range trs {
		var codecs []webrtc.RTPCodecParameters
		for _, md := range sd.MediaDescriptions {
			if mid, _ := md.Attribute("mid"); mid == tr.Mid() && md.MediaName.Port.Value != 0 {
				codecs = sectionPayloadCodecs(md, string(kind))
			}
		}
		s := v.slots[kind]
		s.mu.Lock()
		s.codecs = codecs
		s.mu.Unlock()
	}
	return nil
}

// Carries reports whether the viewer's track of p's kind negotiated a
// format that can carry p's codec (false when it has no such track).
func (v *Viewer) Carries(p *Producer) bool {
	s := v.slots[p.kind]
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range p.possibleFormats() {
		if _, _, ok := payloadTypeFor(s.codecs, f); ok {
			return true
		}
	}
	return false
}

// Formats describes the formats the viewer's track of kind negotiated.
func (v *Viewer) Formats(kind Kind) string {
	s := v.slots[kind]
	if s == nil {
		return "none"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var fs []webrtc.RTPCodecCapability
	for _, c := range s.codecs {
		fs = append(fs, c.RTPCodecCapability)
	}
	return describeFormats(fs)
}

// SetSource makes the viewer's track of kind show producer p (nil: show
// nothing). It returns at once; video starts at p's next keyframe, which
// is requested. A viewer that does not receive kind ignores the call.
func (v *Viewer) SetSource(kind Kind, p *Producer) error {
	s := v.slots[kind]
	if s == nil {
		return nil
	}
	if p != nil {
		if p.kind != kind {
			return fmt.Errorf("producer %s is %s, not %s: %w", p.id, p.kind, kind, ErrInvalidState)
		}
		if p.transport.router != v.t.router {
			return fmt.Errorf("producer %s is in another router: %w", p.id, ErrNotFound)
		}
	}
	s.switchMu.Lock()
	defer s.switchMu.Unlock()
	s.mu.Lock()
	old := s.cur
	if old != nil && old.producer == p {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	if old != nil {
		old.Close() // its OnClose keeps its renumbering state in s.last
	}
	if p == nil {
		return nil
	}
	c := newConsumer(v.t.Transport, p, false)
	s.mu.Lock()
	if s.hasLast {
		c.munger = s.last
	}
	c.codecs, c.negRTX = s.codecs, s.rtxSSRC
	if s.writer != nil {
		if _, ok := c.applyCodec(); ok {
			c.ssrc = s.ssrc
			c.bindWebRTC(s.writer, s.twccID, s.v.t.out.Load())
		}
	}
	s.cur = c
	s.mu.Unlock()
	c.OnClose(func() { s.consumerClosed(c) })
	t := v.t
	if err := t.addConsumer(c); err != nil {
		c.Close()
		return err
	}
	if err := p.addConsumer(c); err != nil {
		c.Close()
		return err
	}
	// The producer's codec may have become known meanwhile.
	c.mu.Lock()
	c.applyCodec()
	c.mu.Unlock()
	if t.connected.Load() {
		c.restart()
	}
	return nil
}

// Source returns the producer the viewer's track of kind shows, or nil.
func (v *Viewer) Source(kind Kind) *Producer {
	s := v.slots[kind]
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	return s.cur.producer
}

// Consumer returns the consumer currently behind the track of kind, or nil.
func (v *Viewer) Consumer(kind Kind) *Consumer {
	s := v.slots[kind]
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// consumerClosed notes that the slot's consumer ended (switched away from,
// or its producer closed) and keeps where its stream stopped.
func (s *viewerSlot) consumerClosed(c *Consumer) {
	c.mu.Lock()
	m := c.munger
	c.mu.Unlock()
	s.mu.Lock()
	if m.Started() {
		s.last, s.hasLast = m, true
	}
	if s.cur == c {
		s.cur = nil
	}
	s.mu.Unlock()
}

// bind is called when pion has negotiated the track.
func (s *viewerSlot) bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	s.mu.Lock()
	prim := primaryCodecs(s.codecs)
	if len(prim) == 0 {
		s.mu.Unlock()
		return webrtc.RTPCodecParameters{}, fmt.Errorf("viewer %s track: no codec in common: %w", s.kind, webrtc.ErrUnsupportedCodec)
	}
	s.writer = ctx.WriteStream()
	s.ssrc = uint32(ctx.SSRC())
	s.rtxSSRC = uint32(ctx.SSRCRetransmission())
	s.twccID = twccExtensionID(ctx)
	c := s.cur
	chosen := prim[0]
	if c != nil {
		c.mu.Lock()
		c.codecs, c.negRTX = s.codecs, s.rtxSSRC
		if cp, ok := c.applyCodec(); ok {
			c.ssrc = s.ssrc
			c.bindWebRTC(s.writer, s.twccID, s.v.t.out.Load())
			chosen = cp
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	if c != nil && s.v.t.connected.Load() {
		c.restart()
	}
	return chosen, nil
}

func (s *viewerSlot) unbind() {
	s.mu.Lock()
	s.writer = nil
	if c := s.cur; c != nil {
		c.mu.Lock()
		c.writer = nil
		c.mu.Unlock()
	}
	s.mu.Unlock()
}

// readRTCP reads the client's feedback that pion delivers to the slot's
// sender (see Consumer.readRTCP).
func (s *viewerSlot) readRTCP(sender *webrtc.RTPSender) {
	buf := make([]byte, rtcpMTU)
	for {
		pkts, err := readSenderRTCP(sender, buf)
		if err != nil {
			return
		}
		s.onRTCP(pkts)
	}
}

// onRTCP serves the client's feedback for the slot through whichever
// consumer is current.
func (s *viewerSlot) onRTCP(pkts []rtcp.Packet) {
	s.mu.Lock()
	c, ssrc := s.cur, s.ssrc
	s.mu.Unlock()
	if c != nil {
		c.serveRTCP(pkts, ssrc)
	}
}

// viewerTrack is a viewer slot as pion sees it: a webrtc.TrackLocal.
type viewerTrack struct{ s *viewerSlot }

func (vt viewerTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	return vt.s.bind(ctx)
}

func (vt viewerTrack) Unbind(webrtc.TrackLocalContext) error {
	vt.s.unbind()
	return nil
}

func (vt viewerTrack) ID() string { return "stage-" + string(vt.s.kind) }

func (vt viewerTrack) RID() string { return "" }

// StreamID puts both tracks in one MediaStream, so players sync them.
func (vt viewerTrack) StreamID() string { return "stage" }

func (vt viewerTrack) Kind() webrtc.RTPCodecType {
	if vt.s.kind == KindAudio {
		return webrtc.RTPCodecTypeAudio
	}
	return webrtc.RTPCodecTypeVideo
}
