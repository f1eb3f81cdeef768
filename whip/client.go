package whip

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ClientSession is a WHIP or WHEP session as a client sees it. Tests and
// the load generator use it; it is a plain HTTP client of the protocol.
type ClientSession struct {
	// Answer is the server's SDP answer.
	Answer string
	// Location is the session's URL, ETag its ICE session tag, Links the
	// Link header values (ICE servers).
	Location string
	ETag     string
	Links    []string

	hc    *http.Client
	token string
}

// StatusError is a response other than the one the protocol expects.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("http %d: %s", e.Code, strings.TrimSpace(e.Body))
}

// Offer posts an SDP offer to a WHIP or WHEP endpoint and returns the
// session it created. hc nil means http.DefaultClient.
func Offer(ctx context.Context, hc *http.Client, endpoint, token, offer string) (*ClientSession, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ContentTypeSDP)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, &StatusError{Code: resp.StatusCode, Body: string(body)}
	}
	// A relative Location is the resource on the server that answered,
	// which a 307 (a cluster's placement) may have made another.
	base := resp.Request.URL
	loc, err := base.Parse(resp.Header.Get("Location"))
	if err != nil {
		return nil, fmt.Errorf("location %q: %w", resp.Header.Get("Location"), err)
	}
	return &ClientSession{
		Answer:   string(body),
		Location: loc.String(),
		ETag:     resp.Header.Get("ETag"),
		Links:    resp.Header.Values("Link"),
		hc:       hc,
		token:    token,
	}, nil
}

// Trickle sends a trickle-ice-sdpfrag body to the session.
func (s *ClientSession) Trickle(ctx context.Context, frag string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, s.Location, strings.NewReader(frag))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentTypeSDPFrag)
	if s.ETag != "" {
		req.Header.Set("If-Match", s.ETag)
	}
	return s.do(req, http.StatusNoContent)
}

// RestartICE restarts ICE on pc, the PeerConnection of this session, the
// way RFC 9725 section 4.4 has a client do it: a new local offer with
// fresh credentials, only those credentials (and the local candidates)
// sent in a PATCH, and the server's new credentials and candidates from
// the 200 response applied to the session's answer.
func (s *ClientSession) RestartICE(ctx context.Context, pc *webrtc.PeerConnection) error {
	offer, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return ctx.Err()
	}
	local := &sdp.SessionDescription{}
	if err := local.UnmarshalString(pc.LocalDescription().SDP); err != nil {
		return err
	}
	var b strings.Builder
	ufrag, _ := local.Attribute("ice-ufrag")
	pwd, _ := local.Attribute("ice-pwd")
	if len(local.MediaDescriptions) > 0 {
		md := local.MediaDescriptions[0]
		if v, ok := md.Attribute("ice-ufrag"); ok {
			ufrag = v
		}
		if v, ok := md.Attribute("ice-pwd"); ok {
			pwd = v
		}
		fmt.Fprintf(&b, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", ufrag, pwd)
		mid, _ := md.Attribute("mid")
		m := md.MediaName
		fmt.Fprintf(&b, "m=%s %d %s %s\r\na=mid:%s\r\n", m.Media, m.Port.Value, strings.Join(m.Protos, "/"), strings.Join(m.Formats, " "), mid)
		for _, a := range md.Attributes {
			if a.Key == "candidate" {
				fmt.Fprintf(&b, "a=candidate:%s\r\n", a.Value)
			}
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, s.Location, strings.NewReader(b.String()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentTypeSDPFrag)
	req.Header.Set("If-Match", "*")
	body, hdr, err := s.exchange(req, http.StatusOK)
	if err != nil {
		return err
	}
	f, err := parseSDPFrag(string(body))
	if err != nil {
		return err
	}
	if f.ufrag == "" || f.pwd == "" {
		return fmt.Errorf("ice restart answer without credentials: %q", body)
	}
	s.ETag = hdr.Get("ETag")
	// The answer is the last one with the server's new credentials and
	// candidates in place of the old.
	ans := &sdp.SessionDescription{}
	if err := ans.UnmarshalString(pc.RemoteDescription().SDP); err != nil {
		return err
	}
	ans.Attributes = swapICE(ans.Attributes, f, false)
	for i, md := range ans.MediaDescriptions {
		md.Attributes = swapICE(md.Attributes, f, i == 0)
	}
	raw, err := ans.Marshal()
	if err != nil {
		return err
	}
	s.Answer = string(raw)
	return pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.Answer})
}

// swapICE puts a restart's credentials in place of a section's old ones
// and, in the bundle's section, its candidates in place of the old.
func swapICE(attrs []sdp.Attribute, f *sdpFrag, bundle bool) []sdp.Attribute {
	out := make([]sdp.Attribute, 0, len(attrs)+len(f.candidates))
	for _, a := range attrs {
		switch a.Key {
		case "ice-ufrag":
			out = append(out, sdp.NewAttribute("ice-ufrag", f.ufrag))
		case "ice-pwd":
			out = append(out, sdp.NewAttribute("ice-pwd", f.pwd))
		case "candidate", "end-of-candidates":
		default:
			out = append(out, a)
		}
	}
	if bundle {
		for _, c := range f.candidates {
			out = append(out, sdp.NewAttribute("candidate", strings.TrimPrefix(c.candidate, "candidate:")))
		}
		out = append(out, sdp.NewPropertyAttribute("end-of-candidates"))
	}
	return out
}

// Delete ends the session.
func (s *ClientSession) Delete(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.Location, nil)
	if err != nil {
		return err
	}
	return s.do(req, http.StatusOK)
}

func (s *ClientSession) do(req *http.Request, want int) error {
	_, _, err := s.exchange(req, want)
	return err
}

// exchange sends req with the session's token and returns the answer's
// body and headers, or a StatusError when its status is not want.
func (s *ClientSession) exchange(req *http.Request, want int) ([]byte, http.Header, error) {
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != want {
		return nil, nil, &StatusError{Code: resp.StatusCode, Body: string(body)}
	}
	return body, resp.Header, nil
}
