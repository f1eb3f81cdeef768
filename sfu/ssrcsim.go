package sfu

// SSRC-based simulcast: an m-section that declares its encodings as
// a=ssrc-group:SIM (lowest first), each optionally paired with an RTX SSRC
// by a=ssrc-group:FID, with no rid and often no mid header extension.
// GStreamer- and OBS-style senders and munged legacy Chrome send it.
//
// Why the SFU receives these encodings itself: pion v4.2.20 reads FID
// groups but ignores SIM. Every other a=ssrc line becomes a track of its
// own, only the first of them gets the m-section's RTPReceiver (and
// OnTrack), and the rest are merely "declared": pion's undeclared-SSRC
// handler returns at once for them, leaving their SRTP streams unread. The
// SFU cannot start the receiver with all encodings itself either, since
// RTPReceiver.Receive needs SRTP, which exists only once DTLS is up, and
// by then pion has started the receiver with the first SSRC.
//
// So when OnTrack brings the first SIM track (SRTP is up then), the SFU
// gives every other encoding a receiver of its own: a recv-only
// transceiver of the same PeerConnection. Such a receiver has what a
// standalone RTPReceiver lacks: the negotiated codec and header-extension
// ids (TWCC, abs-send-time), so pion's interceptors (NACK generation,
// receiver reports, TWCC feedback) treat each encoding as they treat the
// first, RTX is unwrapped per encoding, and ReadRTCP yields each
// encoding's sender reports. The packets that arrived meanwhile wait in
// the stream pion already opened and are read first. The transceiver gets
// a mid no client uses, so pion never pairs it with an m-section of a
// later offer and never lists it in an answer. When a re-offer no longer
// declares the SSRCs, pion stops these receivers as it stops the first,
// and when the PeerConnection closes, with the rest.

import (
	"fmt"
	"strconv"
	"strings"

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

// simLayer returns the layer of an SSRC in SSRC simulcast, or -1.
func (p *Producer) simLayer(ssrc uint32) int {
	for i, s := range p.sim {
		if s.ssrc == ssrc {
			return i
		}
	}
	return -1
}

// receiveSSRCSimulcast starts the SIM encodings of in that pion left
// unread, once pion's own receiver (on main, with SSRC first) runs.
func (t *Transport) receiveSSRCSimulcast(in *inbound, main *webrtc.RTPTransceiver, first uint32) {
	if main == nil {
		return
	}
	// Serialised with Publish: both change the PeerConnection's
	// transceivers.
	t.negMu.Lock()
	defer t.negMu.Unlock()
	t.mu.Lock()
	sim := in.sim
	if t.closed || in.simStarted || len(sim) == 0 {
		t.mu.Unlock()
		return
	}
	in.simStarted = true
	t.mu.Unlock()
	codecs := main.Receiver().GetParameters().Codecs
	for i, s := range sim {
		if s.ssrc == first {
			continue
		}
		recv, err := t.receiveEncoding(fmt.Sprintf("%s~sim%d", in.mid, i), codecs, s)
		if err != nil {
			t.log.Warn("ssrc simulcast: encoding not received", "mid", in.mid, "ssrc", s.ssrc, "err", err)
			continue
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return // the PeerConnection's Close stops the receiver
		}
		t.wg.Add(2)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			readLoop(in, recv.Track())
		}()
		go func() {
			defer t.wg.Done()
			rtcpLoop(in, recv, "")
		}()
	}
}

// receiveEncoding opens a recv-only transceiver, with mid as its private
// mid, that receives one SIM encoding and its RTX.
func (t *Transport) receiveEncoding(mid string, codecs []webrtc.RTPCodecParameters, s simStream) (*webrtc.RTPReceiver, error) {
	tr, err := t.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	if err != nil {
		return nil, fmt.Errorf("add transceiver: %w", err)
	}
	fail := func(err error) (*webrtc.RTPReceiver, error) {
		_ = tr.Stop()
		return nil, err
	}
	if err := tr.SetMid(mid); err != nil {
		return fail(fmt.Errorf("set mid %s: %w", mid, err))
	}
	if err := tr.SetCodecPreferences(codecs); err != nil {
		return fail(fmt.Errorf("codec preferences: %w", err))
	}
	enc := webrtc.RTPDecodingParameters{RTPCodingParameters: webrtc.RTPCodingParameters{SSRC: webrtc.SSRC(s.ssrc)}}
	enc.RTX.SSRC = webrtc.SSRC(s.rtx)
	if err := tr.Receiver().Receive(webrtc.RTPReceiveParameters{Encodings: []webrtc.RTPDecodingParameters{enc}}); err != nil {
		return fail(fmt.Errorf("receive ssrc %d: %w", s.ssrc, err))
	}
	return tr.Receiver(), nil
}
