package sfu

import (
	"context"
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ICERestart is the SFU's side of an ICE restart its client asked for:
// fresh credentials and the candidates gathered with them.
type ICERestart struct {
	Ufrag, Pwd string
	// Mid and Media name the first media section (the bundle's), which is
	// where a trickle-ice-sdpfrag puts the candidates; Media is its m=
	// line without "m=".
	Mid, Media string
	// Candidates are "candidate:..." attribute values.
	Candidates []string
}

// RestartClientICE restarts ICE on a transport whose client made the
// offer (a WHIP publisher, a WHEP viewer), when the client sends only its
// new credentials rather than a whole new offer (RFC 9725's PATCH): the
// client's last offer is set again with the credentials replaced, which
// makes the PeerConnection restart its ICE agent, and the answer to it
// carries the SFU's new credentials. Media keeps flowing on the old path
// until the new one is checked, so a client that roams (Wi-Fi to mobile
// data) loses no more than the switch.
func (t *WebRTCTransport) RestartClientICE(ctx context.Context, ufrag, pwd string) (*ICERestart, error) {
	if t.pc == nil {
		return nil, fmt.Errorf("transport %s has no peer connection: %w", t.id, ErrInvalidState)
	}
	if ufrag == "" || pwd == "" {
		return nil, fmt.Errorf("%w: an ICE restart needs both ice-ufrag and ice-pwd", ErrBadSDP)
	}
	// RFC 8839: ufrag 4-256 and pwd 22-256 ice-chars.
	if len(ufrag) < 4 || len(ufrag) > 256 || len(pwd) < 22 || len(pwd) > 256 || !iceChars(ufrag) || !iceChars(pwd) {
		return nil, fmt.Errorf("%w: ice-ufrag must be 4-256 and ice-pwd 22-256 characters of A-Z a-z 0-9 + /", ErrBadSDP)
	}
	t.negMu.Lock()
	defer t.negMu.Unlock()
	if t.isClosed() {
		return nil, fmt.Errorf("transport %s: %w", t.id, ErrClosed)
	}
	rd := t.pc.CurrentRemoteDescription()
	if rd == nil || rd.Type != webrtc.SDPTypeOffer || t.pc.SignalingState() != webrtc.SignalingStateStable {
		return nil, fmt.Errorf("transport %s: no settled client offer to restart from: %w", t.id, ErrInvalidState)
	}
	offer := &sdp.SessionDescription{}
	if err := offer.UnmarshalString(rd.SDP); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	offer.Attributes = withCredentials(offer.Attributes, ufrag, pwd)
	for _, md := range offer.MediaDescriptions {
		md.Attributes = withCredentials(md.Attributes, ufrag, pwd)
	}
	raw, err := offer.Marshal()
	if err != nil {
		return nil, err
	}
	if err := t.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(raw)}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	answer, err := t.pc.CreateAnswer(nil)
	if err != nil {
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(t.pc)
	if err := t.pc.SetLocalDescription(answer); err != nil {
		return nil, err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, fmt.Errorf("gather ice candidates: %w", ctx.Err())
	}
	ld := t.pc.LocalDescription()
	if ld == nil {
		return nil, fmt.Errorf("transport %s has no local description: %w", t.id, ErrInvalidState)
	}
	return restartOf(ld.SDP)
}

// withCredentials replaces a section's ice-ufrag and ice-pwd where it
// has them: the offer carries them at session level, per media section,
// or both, and keeps that shape.
func withCredentials(attrs []sdp.Attribute, ufrag, pwd string) []sdp.Attribute {
	for i, a := range attrs {
		switch a.Key {
		case "ice-ufrag":
			attrs[i] = sdp.NewAttribute("ice-ufrag", ufrag)
		case "ice-pwd":
			attrs[i] = sdp.NewAttribute("ice-pwd", pwd)
		}
	}
	return attrs
}

// restartOf reads the new credentials and candidates out of the SFU's
// answer.
func restartOf(raw string) (*ICERestart, error) {
	d := &sdp.SessionDescription{}
	if err := d.UnmarshalString(raw); err != nil {
		return nil, err
	}
	r := &ICERestart{}
	r.Ufrag, _ = d.Attribute("ice-ufrag")
	r.Pwd, _ = d.Attribute("ice-pwd")
	if len(d.MediaDescriptions) == 0 {
		return nil, fmt.Errorf("answer has no media section: %w", ErrInvalidState)
	}
	md := d.MediaDescriptions[0]
	if v, ok := md.Attribute("ice-ufrag"); ok {
		r.Ufrag = v
	}
	if v, ok := md.Attribute("ice-pwd"); ok {
		r.Pwd = v
	}
	r.Mid, _ = md.Attribute("mid")
	m := md.MediaName
	r.Media = fmt.Sprintf("%s %d %s %s", m.Media, m.Port.Value, strings.Join(m.Protos, "/"), strings.Join(m.Formats, " "))
	for _, a := range md.Attributes {
		if a.Key == "candidate" {
			r.Candidates = append(r.Candidates, "candidate:"+a.Value)
		}
	}
	if r.Ufrag == "" || r.Pwd == "" {
		return nil, fmt.Errorf("answer has no ICE credentials: %w", ErrInvalidState)
	}
	return r, nil
}

func iceChars(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}
