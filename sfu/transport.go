package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/sfu/bwe"
	"github.com/matinee-dev/matinee/sfu/dtlskeys"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Direction says which way media flows on a transport, seen from the
// client: a Send transport carries the client's producers to the SFU, a
// Recv transport carries consumers to the client.
type Direction int

// Transport directions.
const (
	Send Direction = iota
	Recv
)

func (d Direction) String() string {
	if d == Send {
		return "send"
	}
	return "recv"
}

// ICECandidate is a trickled ICE candidate, as in RTCIceCandidateInit.
type ICECandidate struct {
	Candidate        string
	SDPMid           *string
	SDPMLineIndex    *uint16
	UsernameFragment *string
}

// TransportOptions configures a new WebRTC transport. The callbacks are
// called from pion's goroutines and must not block.
type TransportOptions struct {
	Direction Direction
	// Owner identifies the peer; a transport never consumes producers of
	// the same owner.
	Owner string
	// OnICECandidate receives each local candidate, then nil when
	// gathering is complete.
	OnICECandidate func(*ICECandidate)
	// OnOffer receives every SDP offer of a Recv transport, with the
	// consumers it carries; the client answers through HandleAnswer.
	OnOffer func(sdp string, consumers []*Consumer)
	// OnFailed is called once when the transport did not connect within
	// the worker's ConnectTimeout (first connection, or after a failure).
	OnFailed func(reason string)
}

// Transport is one WebRTC PeerConnection carrying media in one direction.
type Transport struct {
	id     string
	router *Router
	opts   TransportOptions
	pc     *webrtc.PeerConnection
	log    *slog.Logger

	mu        sync.Mutex
	producers map[string]*Producer
	inbound   map[string]*inbound // by mid, Send transports
	consumers map[string]*Consumer
	// pendingCa holds candidates trickled before the client's description
	// was applied; haveRemote is set (with them taken) by flushCandidates
	// once it was. Tracked here, not asked of pion under t.mu: pion holds
	// its own lock while applying an answer, during which consumers bind
	// and take t.mu (a candidate arriving then deadlocked the two).
	pendingCa  []webrtc.ICECandidateInit
	haveRemote bool
	// answered are the codecs of each m-section (by mid) of the client's
	// latest answer, Recv transports.
	answered map[string][]webrtc.RTPCodecParameters
	closed   bool
	timer    *time.Timer
	failed   bool

	negMu        sync.Mutex
	offerPending bool
	renegotiate  bool
	iceRestart   bool

	connected atomic.Bool
	wg        sync.WaitGroup
	// direct transports have no PeerConnection (see NewDirectTransport).
	direct bool
	// bwe estimates the subscriber's bandwidth (Recv transports).
	bwe *bwe.Estimator
	// alloc is the layer allocator's state, owned by the router's tick.
	alloc allocState
	// lastReports is when the consumers' sender reports last went out
	// (router tick only).
	lastReports time.Time

	// The SFU's own SRTP path (srtpout.go), Recv transports: the DTLS
	// keys as the handshake reveals them, the path once chosen (nil:
	// pion sends), and whether the choice was made (under mu).
	capture    *dtlskeys.Capture
	out        atomic.Pointer[srtpOut]
	outDecided bool
	// in takes the subscriber's SRTCP off the socket when out is set
	// (srtcpin.go); sinks are the handlers of that feedback.
	in    atomic.Pointer[srtcpIn]
	sinks atomic.Pointer[[]rtcpSink]

	// waits cancels the SSRC-simulcast encodings still waiting for pion
	// to let go of their streams (pionlog.go), under mu.
	waits []func()
}

// NewWebRTCTransport creates a transport in this router.
func (r *Router) NewWebRTCTransport(opts TransportOptions) (*Transport, error) {
	var capt *dtlskeys.Capture
	if opts.Direction == Recv {
		capt = &dtlskeys.Capture{}
	}
	pc, est, err := r.w.newPeerConnection(opts.Direction, capt)
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	t := &Transport{
		id:        newID("tr"),
		router:    r,
		opts:      opts,
		pc:        pc,
		capture:   capt,
		producers: map[string]*Producer{},
		inbound:   map[string]*inbound{},
		consumers: map[string]*Consumer{},
	}
	if e, ok := est.(*bwe.Estimator); ok {
		t.bwe = e
	}
	t.log = r.log.With("transport", t.id, "direction", opts.Direction.String())
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if t.opts.OnICECandidate == nil {
			return
		}
		if c == nil {
			t.opts.OnICECandidate(nil)
			return
		}
		init := c.ToJSON()
		t.opts.OnICECandidate(&ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment})
	})
	pc.OnConnectionStateChange(t.onConnectionState)
	if opts.Direction == Send {
		pc.OnTrack(t.onTrack)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = pc.Close()
		return nil, ErrClosed
	}
	r.transports[t.id] = t
	r.mu.Unlock()
	return t, nil
}

// ID returns the transport's identifier.
func (t *Transport) ID() string { return t.id }

// Direction returns which way media flows.
func (t *Transport) Direction() Direction { return t.opts.Direction }

// Owner returns the owner given at creation.
func (t *Transport) Owner() string { return t.opts.Owner }

// Connected reports whether ICE and DTLS are up.
func (t *Transport) Connected() bool { return t.connected.Load() }

func (t *Transport) onConnectionState(s webrtc.PeerConnectionState) {
	t.log.Debug("connection state", "state", s.String())
	switch s {
	case webrtc.PeerConnectionStateConnected:
		t.setupOut()
		t.connected.Store(true)
		t.mu.Lock()
		if t.timer != nil {
			t.timer.Stop()
			t.timer = nil
		}
		cs := t.consumerList()
		t.mu.Unlock()
		for _, c := range cs {
			c.restart()
		}
	case webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateFailed:
		t.connected.Store(false)
		t.armTimer()
	}
}

// armTimer starts the connect timeout unless it runs already or the
// transport is connected.
func (t *Transport) armTimer() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.timer != nil || t.connected.Load() {
		return
	}
	t.timer = time.AfterFunc(t.router.w.cfg.ConnectTimeout, func() {
		t.mu.Lock()
		fire := !t.closed && !t.connected.Load() && !t.failed
		t.timer = nil
		if fire {
			t.failed = true
		}
		t.mu.Unlock()
		if fire && t.opts.OnFailed != nil {
			t.log.Info("transport did not connect in time", "timeout", t.router.w.cfg.ConnectTimeout)
			t.opts.OnFailed(fmt.Sprintf("ICE/DTLS did not complete within %s", t.router.w.cfg.ConnectTimeout))
		}
	})
}

// AddICECandidate adds a remote candidate; nil (end of candidates) is
// accepted and ignored. Candidates that arrive before the remote
// description are kept until it is set.
func (t *Transport) AddICECandidate(c *ICECandidate) error {
	if c == nil || c.Candidate == "" {
		return nil
	}
	init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	if !t.haveRemote {
		t.pendingCa = append(t.pendingCa, init)
		t.mu.Unlock()
		return nil
	}
	t.mu.Unlock()
	if h := testHookCandidateToPion; h != nil {
		h(t)
	}
	if err := t.pc.AddICECandidate(init); err != nil {
		return fmt.Errorf("add ice candidate: %w", err)
	}
	return nil
}

// Test hooks (nil outside tests) at the two ends of a lock-order
// hazard: a candidate going to pion, and a consumer binding inside pion.
var (
	testHookCandidateToPion func(*Transport)
	testHookBind            func(*Consumer)
)

// flushCandidates is called after each client description is applied:
// it adds what was trickled before, and lets later candidates go to pion
// directly.
func (t *Transport) flushCandidates() {
	t.mu.Lock()
	pend := t.pendingCa
	t.pendingCa = nil
	t.haveRemote = true
	t.mu.Unlock()
	for _, c := range pend {
		if err := t.pc.AddICECandidate(c); err != nil {
			t.log.Debug("buffered candidate rejected", "err", err)
		}
	}
}

// TrackInfo describes a track the client announces in Publish.
type TrackInfo struct {
	// AppData is opaque to the SFU and travels with the producer.
	AppData any
}

// mediaSection is what Publish needs from one m-section of an offer.
type mediaSection struct {
	mid     string
	kind    string
	sending bool
	stream  string
	codecs  []webrtc.RTPCodecCapability
	// sim lists the encodings of SSRC-based simulcast, lowest first.
	sim []simStream
}

func parseOffer(raw string) (*sdp.SessionDescription, []mediaSection, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	if err := checkUnifiedPlan(&sd); err != nil {
		return nil, nil, err
	}
	var out []mediaSection
	bundled := bundledMids(&sd)
	for _, md := range sd.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		ms := mediaSection{kind: kind, sending: !sectionRejected(md, bundled)}
		ms.mid, _ = md.Attribute("mid")
		if ms.mid == "" {
			return nil, nil, fmt.Errorf("%w: m-section %d has no a=mid", ErrBadSDP, len(out))
		}
		for _, a := range md.Attributes {
			switch a.Key {
			case "recvonly", "inactive":
				ms.sending = false
			case "msid":
				ms.stream, _, _ = strings.Cut(a.Value, " ")
			}
		}
		ms.codecs = sectionCodecs(md, kind)
		if kind == "video" {
			ms.sim = ssrcSimulcast(md)
		}
		out = append(out, ms)
	}
	return &sd, out, nil
}

// checkUnifiedPlan refuses Plan B: an m-section that carries more than
// one track, i.e. SSRCs that no ssrc-group ties together (FID and FEC-FR
// pair a repair stream with its media, SIM the encodings of one track).
// Matinee speaks Unified Plan only, one track per m-section. With
// a=simulcast, the SSRCs are the encodings of the one track.
func checkUnifiedPlan(sd *sdp.SessionDescription) error {
	for i, md := range sd.MediaDescriptions {
		if _, ok := md.Attribute("simulcast"); ok {
			continue
		}
		var ssrcs []string
		seen := map[string]bool{}
		tied := map[string]bool{} // SSRCs that are not a track of their own
		for _, a := range md.Attributes {
			switch a.Key {
			case "ssrc":
				id, _, _ := strings.Cut(a.Value, " ")
				if !seen[id] {
					seen[id] = true
					ssrcs = append(ssrcs, id)
				}
			case "ssrc-group":
				f := strings.Fields(a.Value)
				if len(f) > 2 {
					for _, id := range f[2:] {
						tied[id] = true // repair streams and further encodings
					}
				}
			}
		}
		tracks := 0
		for _, id := range ssrcs {
			if !tied[id] {
				tracks++
			}
		}
		if tracks > 1 {
			mid, _ := md.Attribute("mid")
			return fmt.Errorf("%w: m-section %d (mid=%s) carries %d tracks (a=ssrc lines not tied by a=ssrc-group): Plan B SDP is not supported, send one track per m-section (Unified Plan)", ErrBadSDP, i, mid, tracks)
		}
	}
	return nil
}

// Publish applies a client's offer to a Send transport and returns the
// answer. Every sending m-section becomes a producer (new ones are
// returned); producers whose m-section stopped sending are closed.
func (t *Transport) Publish(offer string, tracks map[string]TrackInfo) (answer string, added []*Producer, err error) {
	if t.opts.Direction != Send {
		return "", nil, fmt.Errorf("publish on a %s transport: %w", t.opts.Direction, ErrInvalidState)
	}
	sd, sections, err := parseOffer(offer)
	if err != nil {
		return "", nil, err
	}
	// pion is shown only the first encoding of an SSRC simulcast
	// (ssrcsim.go); the SFU receives the others itself.
	forPion, err := hideSimulcastEncodings(sd, offer)
	if err != nil {
		return "", nil, err
	}
	for _, ms := range sections {
		if !ms.sending {
			continue
		}
		ok := false
		for _, c := range ms.codecs {
			if codecRank(c) >= 0 {
				ok = true
				break
			}
		}
		if !ok {
			return "", nil, fmt.Errorf("%w: m-section mid=%s offers no codec the router forwards (it offers %s; forwarded: %s)", ErrBadSDP, ms.mid, describeFormats(ms.codecs), acceptedText)
		}
	}
	t.negMu.Lock()
	defer t.negMu.Unlock()
	if t.isClosed() {
		return "", nil, ErrClosed
	}
	if err := t.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: forPion}); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	t.flushCandidates()
	trs := map[string]*webrtc.RTPTransceiver{}
	for _, tr := range t.pc.GetTransceivers() {
		trs[tr.Mid()] = tr
	}
	var toClose []*Producer
	for _, ms := range sections {
		tr := trs[ms.mid]
		t.mu.Lock()
		in := t.inbound[ms.mid]
		if in == nil {
			in = &inbound{mid: ms.mid}
			t.inbound[ms.mid] = in
		}
		cur := in.producer.Load()
		t.mu.Unlock()
		switch {
		case !ms.sending && cur != nil:
			toClose = append(toClose, cur)
		case ms.sending && cur == nil && tr != nil:
			// The answer carries every offered format the router
			// forwards: the publisher sends whichever it has, and the
			// first packet tells which (Producer.resolveCodec).
			prefs := acceptedCodecs(tr.Receiver().GetParameters().Codecs)
			if len(prefs) == 0 {
				return "", nil, fmt.Errorf("%w: m-section mid=%s: no codec the router forwards was negotiated (offered %s; forwarded: %s)", ErrBadSDP, ms.mid, describeFormats(ms.codecs), acceptedText)
			}
			if err := tr.SetCodecPreferences(prefs); err != nil {
				return "", nil, fmt.Errorf("%w: codec for mid=%s: %v", ErrBadSDP, ms.mid, err)
			}
			var formats []webrtc.RTPCodecCapability
			for _, c := range primaryCodecs(prefs) {
				formats = append(formats, c.RTPCodecCapability)
			}
			kind := KindAudio
			if ms.kind == "video" {
				kind = KindVideo
			}
			p := newProducer(t, in, kind, formats[0], tracks[ms.mid].AppData, t.opts.Owner+"/"+ms.stream)
			p.setFormats(formats)
			p.sim = ms.sim
			t.mu.Lock()
			in.sim, in.simStarted, in.simRecv = ms.sim, false, nil
			t.mu.Unlock()
			added = append(added, p)
		}
	}
	ans, err := t.pc.CreateAnswer(nil)
	if err != nil {
		if errors.Is(err, webrtc.ErrIncorrectSDPSemantics) {
			return "", nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
		}
		return "", nil, fmt.Errorf("create answer: %w", err)
	}
	if err := t.pc.SetLocalDescription(ans); err != nil {
		return "", nil, fmt.Errorf("set local description: %w", err)
	}
	sending := map[string]bool{}
	for _, ms := range sections {
		sending[ms.mid] = ms.sending && len(ms.sim) > 0
	}
	t.rearmSSRCSimulcast(sending)
	for _, p := range added {
		if err := t.router.addProducer(p); err != nil {
			return "", nil, err
		}
		t.mu.Lock()
		t.producers[p.id] = p
		p.in.producer.Store(p)
		t.mu.Unlock()
	}
	t.armTimer()
	for _, p := range toClose {
		p.Close()
	}
	return withStartBitrate(ans.SDP, t.router.w.cfg.PublisherStartBitrate/1000), added, nil
}

// inbound is one receiving m-section of a Send transport. The read loops
// of its tracks deliver to whichever producer is attached; a closed
// producer detaches. (Browsers never re-send on a stopped m-section; a
// new share arrives on a new one.)
type inbound struct {
	mid      string
	producer atomic.Pointer[Producer]
	// sim is the m-section's SSRC simulcast (nil without); simStarted is
	// set once its encodings have receivers, simRecv. All under
	// Transport.mu.
	sim        []simStream
	simStarted bool
	simRecv    []*simReceiver
}

func (t *Transport) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	var mid string
	var trans *webrtc.RTPTransceiver
	for _, tr := range t.pc.GetTransceivers() {
		if tr.Receiver() == recv {
			mid, trans = tr.Mid(), tr
		}
	}
	t.mu.Lock()
	in := t.inbound[mid]
	if in == nil || t.closed {
		t.mu.Unlock()
		t.log.Warn("track on an unannounced m-section", "mid", mid)
		return
	}
	t.wg.Add(2)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		readLoop(in, track, nil)
	}()
	go func() {
		defer t.wg.Done()
		rtcpLoop(in, recv, track.RID())
	}()
	if track.RID() == "" {
		t.receiveSSRCSimulcast(in, trans, uint32(track.SSRC()))
	}
}

// Consume starts forwarding producer p to this Recv transport's client.
// The consumer's track reaches the client with the next OnOffer.
func (t *Transport) Consume(p *Producer, paused bool) (*Consumer, error) {
	if t.opts.Direction != Recv {
		return nil, fmt.Errorf("consume on a %s transport: %w", t.opts.Direction, ErrInvalidState)
	}
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
	c := newConsumer(t, p, paused)
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
	sender, err := t.pc.AddTrack(consumerTrack{c})
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
func (t *Transport) negotiate(iceRestart bool) {
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
	if t.opts.OnOffer != nil {
		t.opts.OnOffer(offer.SDP, cs)
	}
}

// RestartICE renegotiates a Recv transport with fresh ICE credentials.
func (t *Transport) RestartICE() error {
	if t.opts.Direction != Recv {
		return fmt.Errorf("restart ice on a send transport (re-offer instead): %w", ErrInvalidState)
	}
	t.negotiate(true)
	return nil
}

// HandleAnswer applies the client's answer to the Recv transport's offer.
func (t *Transport) HandleAnswer(answer string) error {
	if t.opts.Direction != Recv {
		return fmt.Errorf("answer on a send transport: %w", ErrInvalidState)
	}
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

func (t *Transport) consumerList() []*Consumer {
	out := make([]*Consumer, 0, len(t.consumers))
	for _, c := range t.consumers {
		out = append(out, c)
	}
	return out
}

// Consumers returns the transport's live consumers.
func (t *Transport) Consumers() []*Consumer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.consumerList()
}

// Producers returns the transport's live producers.
func (t *Transport) Producers() []*Producer {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*Producer, 0, len(t.producers))
	for _, p := range t.producers {
		out = append(out, p)
	}
	return out
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// hold counts one more piece of work that Close waits for (t.wg), unless
// the transport is closed already; the caller calls t.wg.Done when it ends.
func (t *Transport) hold() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

// removeConsumer detaches a closed consumer and renegotiates.
func (t *Transport) removeConsumer(c *Consumer) {
	t.mu.Lock()
	_, ok := t.consumers[c.id]
	delete(t.consumers, c.id)
	closed := t.closed
	t.mu.Unlock()
	if ok {
		t.removeSink(c)
	}
	if !ok || closed || t.direct {
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

func (t *Transport) removeProducer(p *Producer) {
	t.mu.Lock()
	delete(t.producers, p.id)
	if p.in.producer.Load() == p {
		p.in.producer.Store(nil)
	}
	t.mu.Unlock()
}

// Close closes the transport's producers and consumers, then its
// PeerConnection, and waits for its goroutines.
func (t *Transport) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	ps := make([]*Producer, 0, len(t.producers))
	for _, p := range t.producers {
		ps = append(ps, p)
	}
	cs := t.consumerList()
	waits := t.waits
	t.waits = nil
	t.mu.Unlock()
	if in := t.in.Load(); in != nil {
		in.unregister(t.router.w.intake)
	}
	for _, cancel := range waits {
		cancel()
	}
	for _, p := range ps {
		p.Close()
	}
	for _, c := range cs {
		c.Close()
	}
	if t.pc != nil {
		if err := t.pc.Close(); err != nil {
			t.log.Debug("close peer connection", "err", err)
		}
	}
	t.wg.Wait()
	t.router.removeTransport(t)
}
