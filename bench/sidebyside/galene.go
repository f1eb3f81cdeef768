package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// galeneDebug prints the server's messages (SIDEBYSIDE_DEBUG=1).
var galeneDebug = os.Getenv("SIDEBYSIDE_DEBUG") != ""

// galeneMsg is a message of Galene's WebSocket protocol (version 2,
// galene-protocol.md in its repository): the fields a viewer uses.
type galeneMsg struct {
	Type        string                   `json:"type"`
	Version     []string                 `json:"version,omitempty"`
	Kind        string                   `json:"kind,omitempty"`
	Error       string                   `json:"error,omitempty"`
	ID          string                   `json:"id,omitempty"`
	Group       string                   `json:"group,omitempty"`
	Username    *string                  `json:"username,omitempty"`
	Password    string                   `json:"password,omitempty"`
	Value       any                      `json:"value,omitempty"`
	SDP         string                   `json:"sdp,omitempty"`
	Candidate   *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Request     map[string][]string      `json:"request,omitempty"`
	Permissions []string                 `json:"permissions,omitempty"`
}

// galeneViewer is a minimal client of Galene's protocol that only
// receives: it joins a group, asks for every stream's audio and video,
// answers the server's offers (one PeerConnection per stream) and
// trickles ICE candidates both ways.
type galeneViewer struct {
	api     *webrtc.API
	ws      *websocket.Conn
	onTrack func(*webrtc.TrackRemote)

	wmu sync.Mutex // one writer at a time on the socket

	mu  sync.Mutex
	pcs map[string]*webrtc.PeerConnection

	joined chan error // the join's outcome, once
	done   chan struct{}
}

// dialGalene connects, joins group as username and requests the streams;
// it returns once the server has accepted the join.
func dialGalene(ctx context.Context, api *webrtc.API, url, group, username string, onTrack func(*webrtc.TrackRemote)) (*galeneViewer, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("galene ws %s: %w", url, err)
	}
	c := &galeneViewer{api: api, ws: ws, onTrack: onTrack, pcs: map[string]*webrtc.PeerConnection{},
		joined: make(chan error, 1), done: make(chan struct{})}
	go c.readLoop()
	user := username
	for _, m := range []galeneMsg{
		{Type: "handshake", Version: []string{"2"}, ID: randomHex(8)},
		{Type: "join", Kind: "join", Group: group, Username: &user},
	} {
		if err := c.write(m); err != nil {
			c.close()
			return nil, err
		}
	}
	select {
	case err = <-c.joined:
	case <-time.After(10 * time.Second):
		err = errors.New("no answer to join in 10 s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("galene join %s as %s: %w", group, username, err)
	}
	return c, nil
}

func (c *galeneViewer) write(m galeneMsg) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteJSON(m)
}

// readLoop handles the server's messages until the socket closes.
func (c *galeneViewer) readLoop() {
	defer close(c.done)
	for {
		var m galeneMsg
		if err := c.ws.ReadJSON(&m); err != nil {
			select {
			case c.joined <- fmt.Errorf("socket closed: %w", err):
			default:
			}
			return
		}
		if galeneDebug {
			fmt.Fprintf(os.Stderr, "%s galene → %s %s %s %v\n", time.Now().Format("15:04:05.000"), m.Type, m.Kind, m.ID, m.Value)
		}
		err := c.handle(m)
		if err != nil && galeneDebug {
			fmt.Fprintf(os.Stderr, "galene %s: %v\n", m.Type, err)
		}
		if m.Type == "joined" && m.Kind == "join" || err != nil {
			// The join's outcome (later errors find the channel full).
			select {
			case c.joined <- err:
			default:
			}
		}
	}
}

func (c *galeneViewer) handle(m galeneMsg) error {
	switch m.Type {
	case "joined":
		switch m.Kind {
		case "join":
			// Every stream, whatever its label: audio and the full video.
			return c.write(galeneMsg{Type: "request", Request: map[string][]string{"": {"audio", "video"}}})
		case "fail":
			return fmt.Errorf("refused: %v (%s)", m.Value, m.Error)
		}
	case "ping":
		return c.write(galeneMsg{Type: "pong"})
	case "offer":
		return c.answer(m)
	case "ice":
		if pc := c.pc(m.ID); pc != nil && m.Candidate != nil {
			return pc.AddICECandidate(*m.Candidate)
		}
	case "close":
		c.mu.Lock()
		pc := c.pcs[m.ID]
		delete(c.pcs, m.ID)
		c.mu.Unlock()
		if pc != nil {
			_ = pc.Close()
		}
	case "usermessage":
		if m.Kind == "error" {
			return fmt.Errorf("server error: %v", m.Value)
		}
	}
	return nil
}

func (c *galeneViewer) pc(id string) *webrtc.PeerConnection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pcs[id]
}

// answer answers an offer: a new stream gets a PeerConnection with pion's
// defaults, a known one is renegotiated.
func (c *galeneViewer) answer(m galeneMsg) error {
	pc := c.pc(m.ID)
	if pc == nil {
		var err error
		pc, err = c.api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return err
		}
		id := m.ID
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { c.onTrack(tr) })
		pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
			if cand == nil {
				return
			}
			init := cand.ToJSON()
			_ = c.write(galeneMsg{Type: "ice", ID: id, Candidate: &init})
		})
		c.mu.Lock()
		c.pcs[id] = pc
		c.mu.Unlock()
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
		return fmt.Errorf("galene offer %s: %w", m.ID, err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		return err
	}
	return c.write(galeneMsg{Type: "answer", ID: m.ID, SDP: ans.SDP})
}

// close leaves: the socket, then every PeerConnection.
func (c *galeneViewer) close() {
	_ = c.ws.Close()
	<-c.done
	c.mu.Lock()
	pcs := c.pcs
	c.pcs = map[string]*webrtc.PeerConnection{}
	c.mu.Unlock()
	for _, pc := range pcs {
		_ = pc.Close()
	}
}
