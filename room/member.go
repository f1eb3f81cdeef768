package room

import (
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/matinee-dev/matinee/sfu"
)

// JoinOptions are what a client gives when joining.
type JoinOptions struct {
	Name     string
	Password string
	Token    string
}

// JoinResult is what a joining client learns about the room.
type JoinResult struct {
	PeerID     string         `json:"peerId"`
	Room       string         `json:"room"`
	Role       string         `json:"role"`
	Peers      []PeerInfo     `json:"peers"`
	Producers  []ProducerInfo `json:"producers"`
	ICEServers []any          `json:"iceServers"`
}

// Member is one peer in a room: one client connection.
type Member struct {
	id   string
	name string
	room *Room
	n    Notifier

	mu     sync.Mutex
	role   string
	send   *sfu.Transport
	recv   *sfu.Transport
	gone   bool
	reason string
}

// Join puts a new member in room id (creating it when open rooms are on).
func (m *Manager) Join(id string, o JoinOptions, n Notifier) (*Member, *JoinResult, error) {
	name := strings.TrimSpace(o.Name)
	if name == "" || utf8.RuneCountInString(name) > 64 {
		return nil, nil, errorf(-32602, `invalid params: "name" must be 1-64 characters`)
	}
	r, err := m.open(id)
	if err != nil {
		return nil, nil, err
	}
	mb := &Member{id: newPeerID(), name: name, room: r, n: n, role: RoleGuest}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, nil, errorf(CodeNotFound, "room %q has ended", id)
	}
	if len(r.members) >= r.maxPeers {
		r.mu.Unlock()
		return nil, nil, errorf(CodeRoomFull, "room %q is full (%d peers)", id, r.maxPeers)
	}
	if len(r.members) == 0 {
		mb.role = RoleHost
	}
	peers := make([]PeerInfo, 0, len(r.order))
	for _, pid := range r.order {
		peers = append(peers, r.members[pid].info())
	}
	r.members[mb.id] = mb
	r.order = append(r.order, mb.id)
	r.mu.Unlock()
	r.log.Info("peer joined", "peer", mb.id, "name", name, "role", mb.role)
	r.broadcast(mb.id, "peerJoined", map[string]any{"peer": mb.info()})
	res := &JoinResult{PeerID: mb.id, Room: r.id, Role: mb.role, Peers: peers, Producers: r.Producers(), ICEServers: []any{}}
	return mb, res, nil
}

func newPeerID() string { return "pe-" + randHex(6) }

// ID returns the member's peer id.
func (mb *Member) ID() string { return mb.id }

// Room returns the member's room.
func (mb *Member) Room() *Room { return mb.room }

func (mb *Member) info() PeerInfo {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return PeerInfo{ID: mb.id, Name: mb.name, Role: mb.role}
}

// Leave removes the member: its media closes and the others are told.
func (mb *Member) Leave() { mb.remove("") }

// remove takes the member out of its room; a non-empty reason is sent to
// its client before the connection ends.
func (mb *Member) remove(reason string) {
	mb.mu.Lock()
	if mb.gone {
		mb.mu.Unlock()
		return
	}
	mb.gone = true
	send, recv := mb.send, mb.recv
	wasHost := mb.role == RoleHost
	mb.mu.Unlock()
	r := mb.room
	if recv != nil {
		recv.Close()
	}
	if send != nil {
		send.Close() // closes producers: others get producerClosed
	}
	r.mu.Lock()
	delete(r.members, mb.id)
	for i, id := range r.order {
		if id == mb.id {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
	var newHost *Member
	if wasHost {
		for _, id := range r.order {
			newHost = r.members[id]
			break
		}
	}
	r.mu.Unlock()
	r.log.Info("peer left", "peer", mb.id, "reason", reason)
	r.broadcast(mb.id, "peerLeft", map[string]any{"peerId": mb.id})
	if newHost != nil {
		newHost.mu.Lock()
		newHost.role = RoleHost
		newHost.mu.Unlock()
		r.broadcast("", "peerUpdated", map[string]any{"peer": newHost.info()})
	}
	if reason != "" {
		mb.n.Notify("disconnected", map[string]any{"reason": reason})
		mb.n.Disconnect(reason)
	}
	r.m.closeIfEmpty(r)
}

func (mb *Member) check() error {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.gone {
		return errorf(CodeNotJoined, "not in a room")
	}
	return nil
}

// CreateTransport makes the member's send or receive transport.
func (mb *Member) CreateTransport(direction string) (string, error) {
	var dir sfu.Direction
	switch direction {
	case "send":
		dir = sfu.Send
	case "recv":
		dir = sfu.Recv
	default:
		return "", errorf(-32602, `invalid params: "direction" must be "send" or "recv"`)
	}
	if err := mb.check(); err != nil {
		return "", err
	}
	mb.mu.Lock()
	if (dir == sfu.Send && mb.send != nil) || (dir == sfu.Recv && mb.recv != nil) {
		mb.mu.Unlock()
		return "", errorf(CodeInvalidState, "a %s transport exists already", direction)
	}
	mb.mu.Unlock()
	var t *sfu.Transport
	t, err := mb.room.router.NewWebRTCTransport(sfu.TransportOptions{
		Direction: dir,
		Owner:     mb.id,
		OnICECandidate: func(c *sfu.ICECandidate) {
			var cand any
			if c != nil {
				cand = map[string]any{"candidate": c.Candidate, "sdpMid": c.SDPMid, "sdpMLineIndex": c.SDPMLineIndex, "usernameFragment": c.UsernameFragment}
			}
			mb.n.Notify("iceCandidate", map[string]any{"transportId": t.ID(), "candidate": cand})
		},
		OnOffer: func(sdp string, cs []*sfu.Consumer) {
			infos := make([]ConsumerInfo, 0, len(cs))
			for _, c := range cs {
				infos = append(infos, consumerInfo(c))
			}
			mb.n.Notify("transportOffer", map[string]any{"transportId": t.ID(), "sdp": sdp, "consumers": infos})
		},
		OnFailed: func(reason string) {
			mb.n.Notify("transportClosed", map[string]any{"transportId": t.ID(), "reason": reason})
			go mb.remove(reason)
		},
	})
	if err != nil {
		return "", fromSFU(err)
	}
	mb.mu.Lock()
	if mb.gone {
		mb.mu.Unlock()
		t.Close()
		return "", errorf(CodeNotJoined, "not in a room")
	}
	if dir == sfu.Send {
		mb.send = t
	} else {
		mb.recv = t
	}
	mb.mu.Unlock()
	return t.ID(), nil
}

func (mb *Member) transport(id string) (*sfu.Transport, error) {
	if err := mb.check(); err != nil {
		return nil, err
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.send != nil && mb.send.ID() == id {
		return mb.send, nil
	}
	if mb.recv != nil && mb.recv.ID() == id {
		return mb.recv, nil
	}
	return nil, errorf(CodeNotFound, "unknown transport %q", id)
}

// TrackParams is the appData of one published m-section.
type TrackParams struct {
	Mid     string
	AppData any
}

// Publish applies an offer to the member's send transport.
func (mb *Member) Publish(transportID, offer string, tracks []TrackParams) (string, []ProducerInfo, error) {
	t, err := mb.transport(transportID)
	if err != nil {
		return "", nil, err
	}
	if mb.Role() == RoleViewer {
		return "", nil, errorf(CodeForbidden, "viewers cannot publish")
	}
	ti := map[string]sfu.TrackInfo{}
	for _, tp := range tracks {
		ti[tp.Mid] = sfu.TrackInfo{AppData: tp.AppData}
	}
	answer, added, err := t.Publish(offer, ti)
	if err != nil {
		return "", nil, fromSFU(err)
	}
	infos := make([]ProducerInfo, 0, len(added))
	for _, p := range added {
		p := p
		info := producerInfo(p)
		infos = append(infos, info)
		p.OnClose(func() {
			mb.room.broadcast("", "producerClosed", map[string]any{"producerId": p.ID()})
		})
		mb.room.broadcast(mb.id, "producerAdded", map[string]any{"producer": info})
	}
	return answer, infos, nil
}

// Role returns the member's role.
func (mb *Member) Role() string {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.role
}

// ownProducer finds one of the member's producers.
func (mb *Member) ownProducer(id string) (*sfu.Producer, error) {
	if err := mb.check(); err != nil {
		return nil, err
	}
	p, err := mb.room.router.Producer(id)
	if err != nil || p.Owner() != mb.id {
		return nil, errorf(CodeNotFound, "unknown producer %q", id)
	}
	return p, nil
}

// CloseProducer closes one of the member's producers.
func (mb *Member) CloseProducer(id string) error {
	p, err := mb.ownProducer(id)
	if err != nil {
		return err
	}
	p.Close()
	return nil
}

// PauseProducer mutes (pause=true) or unmutes one of the member's producers.
func (mb *Member) PauseProducer(id string, pause bool) error {
	p, err := mb.ownProducer(id)
	if err != nil {
		return err
	}
	if pause {
		p.Pause()
		mb.room.broadcast("", "producerPaused", map[string]any{"producerId": id})
	} else {
		p.Resume()
		mb.room.broadcast("", "producerResumed", map[string]any{"producerId": id})
	}
	return nil
}

// Subscribe forwards a producer to the member's receive transport.
func (mb *Member) Subscribe(producerID string) (ConsumerInfo, error) {
	if err := mb.check(); err != nil {
		return ConsumerInfo{}, err
	}
	p, err := mb.room.router.Producer(producerID)
	if err != nil {
		return ConsumerInfo{}, errorf(CodeNotFound, "unknown producer %q", producerID)
	}
	if p.Owner() == mb.id {
		return ConsumerInfo{}, errorf(CodeInvalidState, "cannot subscribe to your own producer %q", producerID)
	}
	mb.mu.Lock()
	recv := mb.recv
	mb.mu.Unlock()
	if recv == nil {
		return ConsumerInfo{}, errorf(CodeInvalidState, "create a recv transport first")
	}
	c, err := recv.Consume(p, false)
	if err != nil {
		return ConsumerInfo{}, fromSFU(err)
	}
	c.OnClose(func() {
		mb.mu.Lock()
		gone := mb.gone
		mb.mu.Unlock()
		if !gone {
			mb.n.Notify("consumerClosed", map[string]any{"consumerId": c.ID(), "producerId": producerID})
		}
	})
	return consumerInfo(c), nil
}

func (mb *Member) consumer(id string) (*sfu.Consumer, error) {
	if err := mb.check(); err != nil {
		return nil, err
	}
	mb.mu.Lock()
	recv := mb.recv
	mb.mu.Unlock()
	if recv != nil {
		for _, c := range recv.Consumers() {
			if c.ID() == id {
				return c, nil
			}
		}
	}
	return nil, errorf(CodeNotFound, "unknown consumer %q", id)
}

// Unsubscribe closes one of the member's consumers.
func (mb *Member) Unsubscribe(id string) error {
	c, err := mb.consumer(id)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// PauseConsumer pauses (pause=true) or resumes one of the member's consumers.
func (mb *Member) PauseConsumer(id string, pause bool) error {
	c, err := mb.consumer(id)
	if err != nil {
		return err
	}
	if pause {
		c.Pause()
	} else {
		c.Resume()
	}
	return nil
}

// TransportAnswer applies the client's answer on its receive transport.
func (mb *Member) TransportAnswer(transportID, answer string) error {
	t, err := mb.transport(transportID)
	if err != nil {
		return err
	}
	return fromSFU(t.HandleAnswer(answer))
}

// RestartICE restarts ICE on the member's receive transport.
func (mb *Member) RestartICE(transportID string) error {
	t, err := mb.transport(transportID)
	if err != nil {
		return err
	}
	return fromSFU(t.RestartICE())
}

// AddICECandidate trickles a client candidate into a transport.
func (mb *Member) AddICECandidate(transportID string, c *sfu.ICECandidate) error {
	t, err := mb.transport(transportID)
	if err != nil {
		return err
	}
	if err := t.AddICECandidate(c); err != nil {
		return errorf(-32602, "invalid params: candidate: %v", err)
	}
	return nil
}
