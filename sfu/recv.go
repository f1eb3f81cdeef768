package sfu

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/matinee-dev/matinee/sfu/dtlskeys"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// RecvTransport carries consumers to a WebRTC client: Consume adds a
// track and the SFU offers (TransportOptions.OnOffer), the client answers
// (HandleAnswer). Its consumers' packets leave through the SFU's own SRTP
// path (srtpout.go) when the connection allows, through pion's otherwise;
// its subscriber's bandwidth is estimated (bwe) and shared among its
// consumers by the router's allocator (allocate.go).
type RecvTransport struct {
	*WebRTCTransport

	// answered are the codecs of each m-section (by mid) of the client's
	// latest answer, under Transport.mu.
	answered map[string][]webrtc.RTPCodecParameters

	// Under negMu.
	offerPending bool
	renegotiate  bool
	iceRestart   bool

	// The SFU's own SRTP path (srtpout.go): the DTLS keys as the
	// handshake reveals them, the path once chosen (nil: pion sends),
	// and whether the choice was made (under Transport.mu).
	capture    *dtlskeys.Capture
	out        atomic.Pointer[srtpOut]
	outDecided bool
	// in takes the subscriber's SRTCP off the socket when out is set
	// (srtcpin.go); sinks are the handlers of that feedback.
	in    atomic.Pointer[srtcpIn]
	sinks atomic.Pointer[[]rtcpSink]
}

// NewRecvTransport creates a transport in this router that sends media to
// a client.
func (r *Router) NewRecvTransport(opts TransportOptions) (*RecvTransport, error) {
	capt := &dtlskeys.Capture{}
	w, err := newWebRTCTransport(r, Recv, opts, capt)
	if err != nil {
		return nil, err
	}
	t := &RecvTransport{WebRTCTransport: w, capture: capt}
	t.role = t
	w.onConnect = t.setupOut
	if err := w.register(); err != nil {
		return nil, err
	}
	return t, nil
}

// consumerRemoved stops the feedback for a consumer that closed and, while
// the transport lives, takes its track out and renegotiates.
func (t *RecvTransport) consumerRemoved(c *Consumer, closing bool) {
	t.removeSink(c)
	if closing {
		return
	}
	t.negMu.Lock()
	if c.sender != nil {
		if err := t.pc.RemoveTrack(c.sender); err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
			t.log.Debug("remove track", "err", err)
		}
	}
	t.negMu.Unlock()
	t.negotiate(false)
}

func (t *RecvTransport) beginClose() {
	t.stopTimer()
	if in := t.in.Load(); in != nil {
		in.unregister(t.router.w.intake)
	}
}

func (t *RecvTransport) endClose() { t.closePC() }

// Consume starts forwarding producer p to this Recv transport's client.
// The consumer's track reaches the client with the next OnOffer.
func (t *RecvTransport) Consume(p *Producer, paused bool) (*Consumer, error) {
	if p.transport.opts.Owner == t.opts.Owner && t.opts.Owner != "" {
		return nil, fmt.Errorf("consume own producer %s: %w", p.id, ErrInvalidState)
	}
	if p.transport.router != t.router {
		return nil, fmt.Errorf("producer %s is in another router: %w", p.id, ErrNotFound)
	}
	// Until the producer's first packet, every format it may send is
	// offered, so the consumer can follow whichever it turns out to be.
	prefs := routerCodecsFor(p.possibleFormats())
	if len(prefs) == 0 {
		return nil, fmt.Errorf("producer %s codec %s: %w", p.id, p.format().MimeType, ErrInvalidState)
	}
	c := newConsumer(t.Transport, p, paused)
	t.negMu.Lock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.negMu.Unlock()
		return nil, ErrClosed
	}
	t.mu.Unlock()
	// AddTrack reuses an m-section a closed consumer left inactive, so the
	// subscriber's SDP does not grow with every share that comes and goes.
	sender, err := t.pc.AddTrack(consumerTrack{c, t})
	if err != nil {
		t.negMu.Unlock()
		return nil, fmt.Errorf("add track: %w", err)
	}
	var tr *webrtc.RTPTransceiver
	for _, x := range t.pc.GetTransceivers() {
		if x.Sender() == sender {
			tr = x
		}
	}
	if tr == nil {
		_ = t.pc.RemoveTrack(sender)
		t.negMu.Unlock()
		return nil, fmt.Errorf("consume %s: transceiver not found", p.id)
	}
	prefs, err = settablePreferences(tr, prefs)
	c.offered = prefs
	if err != nil {
		_ = t.pc.RemoveTrack(tr.Sender())
		t.negMu.Unlock()
		return nil, fmt.Errorf("codec preferences: %w", err)
	}
	c.transceiver = tr
	c.sender = sender
	t.mu.Lock()
	t.consumers[c.id] = c
	t.wg.Add(1)
	t.mu.Unlock()
	t.addSink(c)
	go func() {
		defer t.wg.Done()
		c.readRTCP(sender)
	}()
	t.negMu.Unlock()
	if err := p.addConsumer(c); err != nil {
		c.Close()
		return nil, err
	}
	t.negotiate(false)
	return c, nil
}

// settablePreferences sets the codec preferences of tr to prefs, or to
// those of them (each with its RTX) that the PeerConnection can still
// offer: once a kind is negotiated, pion offers only codecs negotiated
// before, so a subscriber whose first video carried H.264 alone cannot be
// offered VP9 later. It returns what was set.
func settablePreferences(tr *webrtc.RTPTransceiver, prefs []webrtc.RTPCodecParameters) ([]webrtc.RTPCodecParameters, error) {
	err := tr.SetCodecPreferences(prefs)
	if err == nil {
		return prefs, nil
	}
	var kept []webrtc.RTPCodecParameters
	for _, c := range primaryCodecs(prefs) {
		group := []webrtc.RTPCodecParameters{c}
		for _, r := range prefs {
			if isRTXFor(r, uint8(c.PayloadType)) {
				group = append(group, r)
			}
		}
		if tr.SetCodecPreferences(group) == nil {
			kept = append(kept, group...)
		}
	}
	if len(kept) == 0 {
		return nil, err
	}
	return kept, tr.SetCodecPreferences(kept)
}

// negotiate makes a new offer on a Recv transport, or remembers to make
// one when the client answers the offer outstanding.
func (t *RecvTransport) negotiate(iceRestart bool) {
	t.negMu.Lock()
	defer t.negMu.Unlock()
	if iceRestart {
		t.iceRestart = true
	}
	if t.isClosed() {
		return
	}
	if t.offerPending {
		t.renegotiate = true
		return
	}
	offer, err := t.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: t.iceRestart})
	if err != nil {
		t.log.Warn("create offer", "err", err)
		return
	}
	if err := t.pc.SetLocalDescription(offer); err != nil {
		t.log.Warn("set local offer", "err", err)
		return
	}
	t.iceRestart = false
	t.offerPending = true
	t.armTimer()
	t.mu.Lock()
	cs := t.consumerList()
	t.mu.Unlock()
	if t.cb.OnOffer != nil {
		t.cb.OnOffer(offer.SDP, cs)
	}
}

// RestartICE renegotiates a Recv transport with fresh ICE credentials.
func (t *RecvTransport) RestartICE() error {
	t.negotiate(true)
	return nil
}

// HandleAnswer applies the client's answer to the Recv transport's offer.
func (t *RecvTransport) HandleAnswer(answer string) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	t.negMu.Lock()
	if !t.offerPending {
		t.negMu.Unlock()
		return fmt.Errorf("no offer outstanding: %w", ErrInvalidState)
	}
	// Consumers bind while the answer is applied, and take their payload
	// types from their own m-section of it (pion's list is per kind).
	answered := map[string][]webrtc.RTPCodecParameters{}
	for _, md := range sd.MediaDescriptions {
		if mid, _ := md.Attribute("mid"); mid != "" && md.MediaName.Port.Value != 0 {
			answered[mid] = sectionPayloadCodecs(md, md.MediaName.Media)
		}
	}
	t.mu.Lock()
	t.answered = answered
	t.mu.Unlock()
	if err := t.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.negMu.Unlock()
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	t.offerPending = false
	again := t.renegotiate
	t.renegotiate = false
	t.negMu.Unlock()
	t.flushCandidates()
	if again {
		t.negotiate(false)
	}
	return nil
}
