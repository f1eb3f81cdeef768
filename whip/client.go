package whip

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
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
	base, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
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

// Delete ends the session.
func (s *ClientSession) Delete(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.Location, nil)
	if err != nil {
		return err
	}
	return s.do(req, http.StatusOK)
}

func (s *ClientSession) do(req *http.Request, want int) error {
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != want {
		return &StatusError{Code: resp.StatusCode, Body: string(body)}
	}
	return nil
}
