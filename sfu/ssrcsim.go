package sfu

// SSRC-based simulcast: an m-section that declares its encodings as
// a=ssrc-group:SIM (lowest first), each optionally paired with an RTX SSRC
// by a=ssrc-group:FID, with no rid and often no mid header extension.
// GStreamer- and OBS-style senders and munged legacy Chrome send it.
//
// pion v4.2.20 cannot take such an offer as it is: it reads FID groups
// but ignores SIM, so each encoding's a=ssrc lines look like a track of
// its own, and several tracks in one m-section make it treat the offer as
// Plan B, which a Unified Plan PeerConnection refuses to answer. So pion
// is shown the first encoding only (hideSimulcastEncodings): it answers,
// starts the m-section's receiver with that SSRC and its RTX, and fires
// OnTrack. The other encodings' packets reach pion as undeclared SSRCs;
// its heuristics give up on them (the m-section declares an SSRC, and
// they carry no mid and rid) and leave their SRTP streams open and
// unread, so nothing is lost.
//
// When OnTrack brings the first encoding, SRTP is up, and the SFU gives
// every other encoding a receiver of its own: a recv-only transceiver of
// the same PeerConnection, whose Receive opens the SRTP stream pion left
// (the packets that arrived meanwhile are read first). A transceiver's
// receiver, unlike a standalone RTPReceiver, has the negotiated codec and
// header-extension ids (TWCC, abs-send-time), so pion's interceptors
// (NACK generation, receiver reports, TWCC feedback) treat each encoding
// as they treat the first, RTX is unwrapped per encoding, and ReadRTCP
// yields each encoding's sender reports. The transceiver gets a mid no
// client uses, so pion never pairs it with an m-section of a later offer
// and never puts it in an answer. A re-offer makes pion stop receivers
// whose SSRC it was not shown; Publish then restarts them
// (rearmSSRCSimulcast). The PeerConnection's Close stops them all.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/matinee-dev/matinee/sfu/nackgen"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// simStream is one encoding of SSRC-based simulcast: its media SSRC and
// the RTX SSRC an FID group pairs with it (0 without).
type simStream struct{ ssrc, rtx uint32 }

// ssrcSimulcast returns the encodings of an m-section's
// a=ssrc-group:SIM, lowest first, or nil when there is none (or the
// section uses rid simulcast, which takes precedence). Beyond maxLayers,
// the lowest encodings are kept.
func ssrcSimulcast(md *sdp.MediaDescription) []simStream {
	var sim []uint32
	rtx := map[uint32]uint32{}
	for _, a := range md.Attributes {
		switch a.Key {
		case "rid":
			return nil
		case "ssrc-group":
			f := strings.Fields(a.Value)
			if len(f) < 2 {
				continue
			}
			ssrcs := make([]uint32, 0, len(f)-1)
			for _, v := range f[1:] {
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					return nil
				}
				ssrcs = append(ssrcs, uint32(n))
			}
			switch f[0] {
			case "SIM":
				if sim == nil {
					sim = ssrcs
				}
			case "FID":
				if len(ssrcs) == 2 {
					rtx[ssrcs[0]] = ssrcs[1]
				}
			}
		}
	}
	if len(sim) < 2 {
		return nil
	}
	sim = sim[:min(len(sim), maxLayers)]
	out := make([]simStream, len(sim))
	for i, s := range sim {
		out[i] = simStream{ssrc: s, rtx: rtx[s]}
	}
	return out
}

// hideSimulcastEncodings returns the offer as pion should see it: in
// every m-section with SSRC simulcast, only the first encoding's a=ssrc
// lines and FID group, no SIM group, and no rid header extensions (the
// section has no rids; without them negotiated, pion's heuristics give up
// on the other encodings before reading from their streams). Offers
// without SSRC simulcast are returned unchanged.
func hideSimulcastEncodings(sd *sdp.SessionDescription, offer string) (string, error) {
	changed := false
	for _, md := range sd.MediaDescriptions {
		sim := ssrcSimulcast(md)
		if sim == nil {
			continue
		}
		changed = true
		hidden := map[uint32]bool{}
		for _, e := range sim[1:] {
			hidden[e.ssrc] = true
			if e.rtx != 0 {
				hidden[e.rtx] = true
			}
		}
		// Encodings beyond maxLayers are not received at all.
		for _, v := range simGroup(md)[len(sim):] {
			hidden[v] = true
		}
		kept := md.Attributes[:0:0]
		for _, a := range md.Attributes {
			switch a.Key {
			case "ssrc":
				v, _, _ := strings.Cut(a.Value, " ")
				if n, err := strconv.ParseUint(v, 10, 32); err == nil && hidden[uint32(n)] {
					continue
				}
			case "ssrc-group":
				f := strings.Fields(a.Value)
				if len(f) > 1 && (f[0] == "SIM" || f[0] == "FID" && slices.ContainsFunc(f[1:], func(v string) bool {
					n, err := strconv.ParseUint(v, 10, 32)
					return err == nil && hidden[uint32(n)]
				})) {
					continue
				}
			case "extmap":
				if strings.Contains(a.Value, sdp.SDESRTPStreamIDURI) || strings.Contains(a.Value, sdp.SDESRepairRTPStreamIDURI) {
					continue
				}
			}
			kept = append(kept, a)
		}
		md.Attributes = kept
	}
	if !changed {
		return offer, nil
	}
	out, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	return string(out), nil
}

// simGroup returns the SSRCs of an m-section's first SIM group.
func simGroup(md *sdp.MediaDescription) []uint32 {
	for _, a := range md.Attributes {
		f := strings.Fields(a.Value)
		if a.Key != "ssrc-group" || len(f) < 2 || f[0] != "SIM" {
			continue
		}
		out := make([]uint32, 0, len(f)-1)
		for _, v := range f[1:] {
			if n, err := strconv.ParseUint(v, 10, 32); err == nil {
				out = append(out, uint32(n))
			}
		}
		return out
	}
	return nil
}

// simReceiver is the transceiver the SFU opened for one SIM encoding and
// the receiver its read loops run on.
type simReceiver struct {
	tr   *webrtc.RTPTransceiver
	recv *webrtc.RTPReceiver
	enc  simStream
	// nacks is the encoding's missing-packet log, kept across a restart
	// of its receiver: the packets between the old read loop's last and
	// the new one's first (those pion read while probing the reopened
	// stream for a rid) are then asked for again like any other loss,
	// instead of reaching subscribers as a hole nobody can repair.
	// loopDone closes when the read loop using it has returned.
	nacks    nackgen.Log
	loopDone chan struct{}
}

// simLayer returns the layer of an SSRC in SSRC simulcast, or -1.
func (p *Producer) simLayer(ssrc uint32) int {
	for i, s := range p.sim {
		if s.ssrc == ssrc {
			return i
		}
	}
	return -1
}

// receiveSSRCSimulcast starts the SIM encodings of in that pion was not
// shown, once pion's own receiver (on main, with SSRC first) runs.
func (t *SendTransport) receiveSSRCSimulcast(in *inbound, main *webrtc.RTPTransceiver, first uint32) {
	t.mu.Lock()
	isSim := len(in.sim) > 0
	t.mu.Unlock()
	if main == nil || !isSim {
		return
	}
	// Serialised with Publish: both change the PeerConnection's
	// transceivers.
	t.negMu.Lock()
	defer t.negMu.Unlock()
	t.mu.Lock()
	sim := in.sim
	if t.closed || in.simStarted || len(sim) == 0 || sim[0].ssrc != first {
		t.mu.Unlock()
		return
	}
	in.simStarted = true
	t.mu.Unlock()
	codecs := main.Receiver().GetParameters().Codecs
	for i, enc := range sim[1:] {
		tr, err := t.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		if err != nil {
			t.log.Warn("ssrc simulcast: add transceiver", "mid", in.mid, "err", err)
			return
		}
		if err := tr.SetMid(fmt.Sprintf("%s~sim%d", in.mid, i+1)); err != nil {
			t.log.Warn("ssrc simulcast: set mid", "mid", in.mid, "err", err)
			_ = tr.Stop()
			continue
		}
		if err := tr.SetCodecPreferences(codecs); err != nil {
			t.log.Warn("ssrc simulcast: codec preferences", "mid", in.mid, "err", err)
			_ = tr.Stop()
			continue
		}
		sr := &simReceiver{tr: tr, enc: enc}
		t.mu.Lock()
		in.simRecv = append(in.simRecv, sr)
		t.mu.Unlock()
		t.awaitEncoding(in, sr)
	}
}

// awaitEncoding starts an encoding once pion has let go of its stream
// (pionlog.go explains why it must not start before).
func (t *SendTransport) awaitEncoding(in *inbound, sr *simReceiver) {
	if !t.hold() {
		return
	}
	cancel := t.router.w.ssrcs.await(sr.enc.ssrc, func(start bool) {
		if !start {
			t.wg.Done()
			return
		}
		go func() {
			defer t.wg.Done()
			t.negMu.Lock()
			defer t.negMu.Unlock()
			if !t.isClosed() {
				t.startEncoding(in, sr)
			}
		}()
	})
	t.mu.Lock()
	t.waits = append(t.waits, cancel)
	t.mu.Unlock()
}

// startEncoding receives one SIM encoding on its transceiver's current
// receiver and starts its read loops. Called with negMu held.
func (t *SendTransport) startEncoding(in *inbound, sr *simReceiver) {
	recv := sr.tr.Receiver()
	enc := webrtc.RTPDecodingParameters{RTPCodingParameters: webrtc.RTPCodingParameters{SSRC: webrtc.SSRC(sr.enc.ssrc)}}
	enc.RTX.SSRC = webrtc.SSRC(sr.enc.rtx)
	if err := recv.Receive(webrtc.RTPReceiveParameters{Encodings: []webrtc.RTPDecodingParameters{enc}}); err != nil {
		t.log.Warn("ssrc simulcast: encoding not received", "mid", in.mid, "ssrc", sr.enc.ssrc, "err", err)
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return // the PeerConnection's Close stops the receiver
	}
	sr.recv = recv
	t.wg.Add(2)
	prev := sr.loopDone
	done := make(chan struct{})
	sr.loopDone = done
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		defer close(done)
		// The replaced receiver was stopped by pion, so its loop is
		// returning; it must let go of sr.nacks first.
		if prev != nil {
			<-prev
		}
		readLoop(in, recv.Track(), &sr.nacks)
	}()
	go func() {
		defer t.wg.Done()
		rtcpLoop(in, recv, "")
	}()
}

// rearmSSRCSimulcast restarts the SIM encodings whose receivers pion
// replaced while applying a re-offer: it stops every receiver whose SSRC
// the offer it was shown does not declare, which hideSimulcastEncodings
// made true of them. Their SRTP streams reopen on the next packet and
// wait, unread, for the new receiver. Only m-sections still sending (by
// mid) are restarted. Called by Publish with negMu held.
func (t *SendTransport) rearmSSRCSimulcast(sending map[string]bool) {
	t.mu.Lock()
	var stale []*simReceiver
	var ins []*inbound
	for mid, in := range t.inbound {
		if !sending[mid] {
			continue
		}
		for _, sr := range in.simRecv {
			if sr.recv != nil && sr.tr.Receiver() != sr.recv {
				stale = append(stale, sr)
				ins = append(ins, in)
			}
		}
	}
	t.mu.Unlock()
	for i, sr := range stale {
		t.awaitEncoding(ins[i], sr)
	}
}
