package sfu

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// SendTransport carries a WebRTC client's producers to the SFU: the client
// offers (Publish), the SFU answers, and every sending m-section becomes a
// producer whose packets enter the router through Producer.ingress
// (forward.go).
type SendTransport struct {
	*WebRTCTransport

	// Under Transport.mu: inbound are the receiving m-sections, by mid;
	// waits cancels the SSRC-simulcast encodings still waiting for pion
	// to let go of their streams (pionlog.go).
	inbound map[string]*inbound
	waits   []func()
}

// NewSendTransport creates a transport in this router that receives a
// client's media.
func (r *Router) NewSendTransport(opts TransportOptions) (*SendTransport, error) {
	w, err := newWebRTCTransport(r, Send, opts, nil)
	if err != nil {
		return nil, err
	}
	t := &SendTransport{WebRTCTransport: w, inbound: map[string]*inbound{}}
	t.role = t
	w.pc.OnTrack(t.onTrack)
	if err := w.register(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *SendTransport) consumerRemoved(*Consumer, bool) {}

func (t *SendTransport) beginClose() {
	t.stopTimer()
	t.mu.Lock()
	waits := t.waits
	t.waits = nil
	t.mu.Unlock()
	for _, cancel := range waits {
		cancel()
	}
}

func (t *SendTransport) endClose() { t.closePC() }

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
func (t *SendTransport) Publish(offer string, tracks map[string]TrackInfo) (answer string, added []*Producer, err error) {
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
			p := newProducer(t.Transport, in, kind, formats[0], tracks[ms.mid].AppData, t.opts.Owner+"/"+ms.stream)
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
		t.addProducer(p)
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

func (t *SendTransport) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
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
