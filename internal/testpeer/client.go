package testpeer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// RPCError is a JSON-RPC error response.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// Data is the error's data, e.g. 1010's {node, url}.
	Data json.RawMessage `json:"data,omitempty"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("rpc error %d: %s", e.Code, e.Message) }

// Event is a server notification.
type Event struct {
	Method string
	Params json.RawMessage
}

// Producer is the protocol's producer object.
type Producer struct {
	ID      string         `json:"id"`
	PeerID  string         `json:"peerId"`
	Kind    string         `json:"kind"`
	Mid     string         `json:"mid"`
	AppData map[string]any `json:"appData"`
}

// Consumer is the protocol's consumer object.
type Consumer struct {
	ID         string `json:"id"`
	ProducerID string `json:"producerId"`
	Kind       string `json:"kind"`
	Mid        string `json:"mid"`
}

// Client is a Matinee protocol client driving real pion PeerConnections.
type Client struct {
	API  *webrtc.API
	Conn *websocket.Conn

	wmu     sync.Mutex
	mu      sync.Mutex
	nextID  int
	pending map[int]chan json.RawMessage
	errs    map[int]*RPCError

	// Events receives every notification except iceCandidate and
	// transportOffer, which the client handles itself.
	Events chan Event
	// OnTrack is called for each track of the receive transport, with
	// the consumer it belongs to.
	OnTrack func(*webrtc.TrackRemote, Consumer)

	PeerID string
	// ICEServers are the join result's, used by the transports made after
	// the join, as a browser would; ICETransportPolicy is theirs too
	// (webrtc.ICETransportPolicyRelay forces TURN).
	ICEServers         []webrtc.ICEServer
	ICETransportPolicy webrtc.ICETransportPolicy

	Send   *webrtc.PeerConnection
	Recv   *webrtc.PeerConnection
	sendID string
	recvID string

	consumersByMid map[string]Consumer
	remoteCands    []string
	// Candidates that arrived before their transport's remote
	// description, and the transports that have one.
	pendingCands map[string][]webrtc.ICECandidateInit
	ready        map[string]bool
	offers       chan Event
	done         chan struct{}
	wg           sync.WaitGroup
}

// Dial connects to a Matinee /ws URL.
func Dial(ctx context.Context, url string, api *webrtc.API) (*Client, error) {
	return DialWith(ctx, websocket.DefaultDialer, url, api)
}

// DialWith is Dial with a WebSocket dialer of the caller's, e.g. one that
// trusts a test CA for wss:// URLs.
func DialWith(ctx context.Context, d *websocket.Dialer, url string, api *webrtc.API) (*Client, error) {
	conn, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	c := &Client{
		API: api, Conn: conn,
		pending:        map[int]chan json.RawMessage{},
		errs:           map[int]*RPCError{},
		Events:         make(chan Event, 1024),
		consumersByMid: map[string]Consumer{},
		pendingCands:   map[string][]webrtc.ICECandidateInit{},
		ready:          map[string]bool{},
		offers:         make(chan Event, 64),
		done:           make(chan struct{}),
	}
	c.wg.Add(2)
	go c.readLoop()
	go c.offerLoop()
	return c, nil
}

func (c *Client) readLoop() {
	defer c.wg.Done()
	defer close(c.done)
	for {
		_, data, err := c.Conn.ReadMessage()
		if err != nil {
			return
		}
		var m struct {
			ID     *int            `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			Result json.RawMessage `json:"result"`
			Error  *RPCError       `json:"error"`
		}
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		if m.ID != nil {
			c.mu.Lock()
			ch := c.pending[*m.ID]
			delete(c.pending, *m.ID)
			if m.Error != nil {
				c.errs[*m.ID] = m.Error
			}
			c.mu.Unlock()
			if ch != nil {
				ch <- m.Result
			}
			continue
		}
		switch m.Method {
		case "transportOffer":
			c.offers <- Event{m.Method, m.Params}
		case "iceCandidate":
			var p struct {
				TransportID string                   `json:"transportId"`
				Candidate   *webrtc.ICECandidateInit `json:"candidate"`
			}
			if json.Unmarshal(m.Params, &p) == nil && p.Candidate != nil {
				c.mu.Lock()
				c.remoteCands = append(c.remoteCands, p.Candidate.Candidate)
				var pc *webrtc.PeerConnection
				if c.ready[p.TransportID] {
					pc = c.Send
					if p.TransportID == c.recvID {
						pc = c.Recv
					}
				} else {
					// Before the remote description pion refuses
					// candidates: keep them, as a browser client does.
					c.pendingCands[p.TransportID] = append(c.pendingCands[p.TransportID], *p.Candidate)
				}
				c.mu.Unlock()
				if pc != nil {
					_ = pc.AddICECandidate(*p.Candidate)
				}
			}
		default:
			select {
			case c.Events <- Event{m.Method, m.Params}:
			default:
			}
		}
	}
}

// offerLoop answers the receive transport's offers in order.
func (c *Client) offerLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case ev := <-c.offers:
			var p struct {
				TransportID string     `json:"transportId"`
				SDP         string     `json:"sdp"`
				Consumers   []Consumer `json:"consumers"`
			}
			if json.Unmarshal(ev.Params, &p) != nil || c.Recv == nil {
				continue
			}
			c.mu.Lock()
			for _, co := range p.Consumers {
				c.consumersByMid[co.Mid] = co
			}
			c.mu.Unlock()
			if err := c.Recv.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: p.SDP}); err != nil {
				continue
			}
			c.remoteDescriptionSet(p.TransportID, c.Recv)
			ans, err := c.Recv.CreateAnswer(nil)
			if err != nil {
				continue
			}
			if err := c.Recv.SetLocalDescription(ans); err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = c.Call(ctx, "transportAnswer", map[string]any{"transportId": p.TransportID, "sdp": ans.SDP}, nil)
			cancel()
		}
	}
}

// Call sends a request and waits for its response.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	ch := make(chan json.RawMessage, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	msg := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if err := c.WriteJSON(msg); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return errors.New("connection closed")
	case raw := <-ch:
		c.mu.Lock()
		rerr := c.errs[id]
		delete(c.errs, id)
		c.mu.Unlock()
		if rerr != nil {
			return rerr
		}
		if result != nil {
			return json.Unmarshal(raw, result)
		}
		return nil
	}
}

// WriteJSON writes one message.
func (c *Client) WriteJSON(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.WriteJSON(v)
}

// Done is closed when the WebSocket has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Join joins a room and returns the producers already there.
func (c *Client) Join(ctx context.Context, room, name string) ([]Producer, error) {
	var res struct {
		PeerID     string             `json:"peerId"`
		Producers  []Producer         `json:"producers"`
		ICEServers []webrtc.ICEServer `json:"iceServers"`
	}
	if err := c.Call(ctx, "join", map[string]any{"room": room, "name": name}, &res); err != nil {
		return nil, err
	}
	c.PeerID = res.PeerID
	c.ICEServers = res.ICEServers
	return res.Producers, nil
}

func (c *Client) newPC(ctx context.Context, dir string) (*webrtc.PeerConnection, string, error) {
	var res struct {
		TransportID string `json:"transportId"`
	}
	if err := c.Call(ctx, "createTransport", map[string]any{"direction": dir}, &res); err != nil {
		return nil, "", err
	}
	pc, err := c.API.NewPeerConnection(webrtc.Configuration{
		BundlePolicy:       webrtc.BundlePolicyMaxBundle,
		ICEServers:         c.ICEServers,
		ICETransportPolicy: c.ICETransportPolicy,
	})
	if err != nil {
		return nil, "", err
	}
	id := res.TransportID
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		_ = c.WriteJSON(map[string]any{"jsonrpc": "2.0", "method": "iceCandidate", "params": map[string]any{"transportId": id, "candidate": cand.ToJSON()}})
	})
	return pc, id, nil
}

// Track is a local track to publish, with its appData.
type Track struct {
	Track   webrtc.TrackLocal
	AppData map[string]any
	// Sender is set by Publish.
	Sender *webrtc.RTPSender
}

// Publish creates the send transport (once) and publishes tracks.
func (c *Client) Publish(ctx context.Context, tracks ...*Track) ([]Producer, error) {
	if c.Send == nil {
		pc, id, err := c.newPC(ctx, "send")
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.Send, c.sendID = pc, id
		c.mu.Unlock()
	}
	for _, t := range tracks {
		tr, err := c.Send.AddTransceiverFromTrack(t.Track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, err
		}
		t.Sender = tr.Sender()
	}
	offer, err := c.Send.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	if err := c.Send.SetLocalDescription(offer); err != nil {
		return nil, err
	}
	var infos []map[string]any
	for _, tr := range c.Send.GetTransceivers() {
		for _, t := range tracks {
			if tr.Sender() == t.Sender {
				infos = append(infos, map[string]any{"mid": tr.Mid(), "appData": t.AppData})
			}
		}
	}
	var res struct {
		SDP       string     `json:"sdp"`
		Producers []Producer `json:"producers"`
	}
	if err := c.Call(ctx, "publish", map[string]any{"transportId": c.sendID, "sdp": offer.SDP, "tracks": infos}, &res); err != nil {
		return nil, err
	}
	if err := c.Send.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDP}); err != nil {
		return nil, err
	}
	c.remoteDescriptionSet(c.sendID, c.Send)
	return res.Producers, nil
}

// StartReceiving creates the receive transport.
func (c *Client) StartReceiving(ctx context.Context) error {
	pc, id, err := c.newPC(ctx, "recv")
	if err != nil {
		return err
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		var mid string
		for _, t := range pc.GetTransceivers() {
			if t.Receiver() == recv {
				mid = t.Mid()
			}
		}
		c.mu.Lock()
		co := c.consumersByMid[mid]
		f := c.OnTrack
		c.mu.Unlock()
		if f != nil {
			f(tr, co)
		}
	})
	c.mu.Lock()
	c.Recv, c.recvID = pc, id
	c.mu.Unlock()
	return nil
}

// Subscribe consumes a producer.
func (c *Client) Subscribe(ctx context.Context, producerID string) (Consumer, error) {
	var co Consumer
	err := c.Call(ctx, "subscribe", map[string]any{"producerId": producerID}, &co)
	return co, err
}

// WaitEvent waits for a notification with the given method.
func (c *Client) WaitEvent(ctx context.Context, method string) (Event, error) {
	for {
		select {
		case <-ctx.Done():
			return Event{}, fmt.Errorf("waiting for %s: %w", method, ctx.Err())
		case ev := <-c.Events:
			if ev.Method == method {
				return ev, nil
			}
		}
	}
}

// Close leaves the room (a socket that just closes leaves its member
// away for the server's grace period), closes the peer connections and
// the WebSocket and waits for the client's goroutines. Drop closes
// without leaving.
func (c *Client) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = c.Call(ctx, "leave", nil, nil) // not joined: an error, no matter
	cancel()
	c.Drop()
}

// Drop closes the connections without leaving, as a lost network does.
func (c *Client) Drop() {
	c.wmu.Lock()
	_ = c.Conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	_ = c.Conn.Close()
	c.wg.Wait()
	if c.Send != nil {
		_ = c.Send.Close()
	}
	if c.Recv != nil {
		_ = c.Recv.Close()
	}
}

// SelectedPair returns the candidate pair pc's ICE transport selected, or
// nil before one is.
func SelectedPair(pc *webrtc.PeerConnection) *webrtc.ICECandidatePair {
	if pc == nil || pc.SCTP() == nil {
		return nil
	}
	p, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil {
		return nil
	}
	return p
}

// RemoteCandidates returns the candidate lines the server trickled so far,
// for both transports.
func (c *Client) RemoteCandidates() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.remoteCands...)
}

// remoteDescriptionSet adds the candidates that waited for transport id's
// remote description, and lets later ones through at once.
func (c *Client) remoteDescriptionSet(id string, pc *webrtc.PeerConnection) {
	c.mu.Lock()
	c.ready[id] = true
	pending := c.pendingCands[id]
	delete(c.pendingCands, id)
	c.mu.Unlock()
	for _, cand := range pending {
		_ = pc.AddICECandidate(cand)
	}
}

// PublishRunning publishes a test video and/or audio source with appData
// {"source": source} and sends media until stop is closed; wait returns
// once the senders have stopped. The ids are the producers' ("" for a
// kind not published).
func (c *Client) PublishRunning(ctx context.Context, stop <-chan struct{}, source string, video, audio bool) (videoID, audioID string, wait func(), err error) {
	var tracks []*Track
	var runs []func()
	if video {
		s, err := NewVideoSource(source+"-video", source)
		if err != nil {
			return "", "", nil, err
		}
		tr := &Track{Track: s.Track, AppData: map[string]any{"source": source}}
		tracks = append(tracks, tr)
		runs = append(runs, func() { go s.ServeRTCP(tr.Sender); s.Run(stop, 30) })
	}
	if audio {
		s, err := NewAudioSource(source+"-audio", source)
		if err != nil {
			return "", "", nil, err
		}
		tr := &Track{Track: s.Track, AppData: map[string]any{"source": source}}
		tracks = append(tracks, tr)
		runs = append(runs, func() {
			go func() {
				for {
					if _, _, err := tr.Sender.ReadRTCP(); err != nil {
						return
					}
				}
			}()
			s.Run(stop)
		})
	}
	ps, err := c.Publish(ctx, tracks...)
	if err != nil {
		return "", "", nil, err
	}
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	for _, p := range ps {
		if p.Kind == "video" {
			videoID = p.ID
		} else {
			audioID = p.ID
		}
	}
	return videoID, audioID, wg.Wait, nil
}
