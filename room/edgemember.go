package room

import (
	"context"
	"sync"

	"github.com/matinee-dev/matinee/sfu"
)

// EdgeMember is the local half of a member of another node's room (its
// origin) who joined through this node (docs/cluster.md, "Members on
// several nodes"): the member itself, its role, the chat and the playback
// live at the origin; only what it receives is here, one receive
// transport on the room's edge copy, whose producers the relay's pipe
// brings under the origin's ids. Closing it closes its transport.
type EdgeMember struct {
	r    *Room
	peer string
	n    Notifier

	mu     sync.Mutex
	recv   *sfu.RecvTransport
	closed bool
}

// NewEdgeMember makes the local half of member peerID of room id, whose
// edge must be open here; what its transport says goes to n. While it
// lives it counts as a viewer of the edge (the edge stays open).
func (m *Manager) NewEdgeMember(id, peerID string, n Notifier) (*EdgeMember, error) {
	m.mu.Lock()
	r := m.edges[id]
	m.mu.Unlock()
	if r == nil {
		return nil, errorf(KindUnavailable, "room %q has no edge on this node (its node stopped relaying it): join again", id)
	}
	r.viewers.Add(1)
	return &EdgeMember{r: r, peer: peerID, n: n}, nil
}

// CreateRecv makes the member's receive transport on the edge.
func (em *EdgeMember) CreateRecv() (string, error) {
	em.mu.Lock()
	switch {
	case em.closed:
		em.mu.Unlock()
		return "", errorf(KindNotJoined, "not in a room")
	case em.recv != nil:
		em.mu.Unlock()
		return "", errorf(KindInvalidState, "a recv transport exists already")
	}
	em.mu.Unlock()
	n := em.n
	var id string
	t, err := em.r.router.NewRecvTransport(transportOptions(em.peer, n, &id, nil))
	if err != nil {
		return "", fromSFU(err)
	}
	id = t.ID()
	em.mu.Lock()
	defer em.mu.Unlock()
	if em.closed || em.recv != nil {
		t.Close()
		return "", errorf(KindInvalidState, "a recv transport exists already")
	}
	em.recv = t
	return t.ID(), nil
}

// Owns reports whether transportID is the member's transport here (else
// it is one of the origin's).
func (em *EdgeMember) Owns(transportID string) bool {
	em.mu.Lock()
	defer em.mu.Unlock()
	return em.recv != nil && em.recv.ID() == transportID
}

func (em *EdgeMember) transport(id string) (*sfu.SendTransport, *sfu.RecvTransport, error) {
	em.mu.Lock()
	defer em.mu.Unlock()
	if em.closed {
		return nil, nil, errorf(KindNotJoined, "not in a room")
	}
	if em.recv == nil || em.recv.ID() != id {
		return nil, nil, errorf(KindNotFound, "unknown transport %q", id)
	}
	return nil, em.recv, nil
}

// Subscribe forwards the edge's copy of the origin's producer to the
// member. The producer may reach the edge a little after the origin
// announced it (the pipe's messages and the members' travel apart): it
// waits for it until ctx ends.
func (em *EdgeMember) Subscribe(ctx context.Context, producerID string) (ConsumerInfo, error) {
	em.mu.Lock()
	recv, closed := em.recv, em.closed
	em.mu.Unlock()
	switch {
	case closed:
		return ConsumerInfo{}, errorf(KindNotJoined, "not in a room")
	case recv == nil:
		return ConsumerInfo{}, errorf(KindInvalidState, "create a recv transport first")
	}
	p, err := em.awaitProducer(ctx, producerID)
	if err != nil {
		return ConsumerInfo{}, err
	}
	if p.Owner() == em.peer {
		return ConsumerInfo{}, errorf(KindInvalidState, "cannot subscribe to your own producer %q", producerID)
	}
	c, err := recv.Consume(p, false)
	if err != nil {
		return ConsumerInfo{}, fromSFU(err)
	}
	n := em.n
	c.OnClose(func() {
		em.mu.Lock()
		closed := em.closed
		em.mu.Unlock()
		if !closed {
			n.Notify("consumerClosed", map[string]any{"consumerId": c.ID(), "producerId": producerID})
		}
	})
	c.OnLayerChange(func(spatial, temporal int) {
		n.Notify("layerChanged", map[string]any{"consumerId": c.ID(), "spatialLayer": spatial, "temporalLayer": temporal})
	})
	return consumerInfo(c), nil
}

// awaitProducer finds the edge's producer of the origin's id, waiting
// for the pipe to make it.
func (em *EdgeMember) awaitProducer(ctx context.Context, id string) (*sfu.Producer, error) {
	router := em.r.router
	if p, err := router.Producer(id); err == nil {
		return p, nil
	}
	made := make(chan struct{}, 1)
	cancel := router.OnNewProducer(func(p *sfu.Producer) {
		if p.ID() == id {
			select {
			case made <- struct{}{}:
			default:
			}
		}
	})
	defer cancel()
	if p, err := router.Producer(id); err == nil {
		return p, nil
	}
	select {
	case <-made:
		if p, err := router.Producer(id); err == nil {
			return p, nil
		}
	case <-ctx.Done():
	}
	return nil, errorf(KindNotFound, "unknown producer %q (not relayed to this node)", id)
}

func (em *EdgeMember) consumer(id string) (*sfu.Consumer, error) {
	em.mu.Lock()
	recv, closed := em.recv, em.closed
	em.mu.Unlock()
	if closed {
		recv = nil
	}
	return findConsumer(recv, id)
}

// Unsubscribe closes one of the member's consumers.
func (em *EdgeMember) Unsubscribe(id string) error {
	return unsubscribe(em, id)
}

// PauseConsumer pauses (pause=true) or resumes one of its consumers.
func (em *EdgeMember) PauseConsumer(id string, pause bool) error {
	return pauseConsumer(em, id, pause)
}

// SetPreferredLayer caps the simulcast layer one of its consumers gets.
func (em *EdgeMember) SetPreferredLayer(consumerID string, layer int) error {
	return setPreferredLayer(em, consumerID, layer)
}

// TransportAnswer applies the client's answer on the receive transport.
func (em *EdgeMember) TransportAnswer(transportID, answer string) error {
	return transportAnswer(em, transportID, answer)
}

// RestartICE restarts ICE on the receive transport.
func (em *EdgeMember) RestartICE(transportID string) error {
	return restartICE(em, transportID)
}

// AddICECandidate trickles a client candidate into the receive transport.
func (em *EdgeMember) AddICECandidate(transportID string, c *ICECandidate) error {
	return addICECandidate(em, transportID, c)
}

// Close closes the member's transport here; it no longer counts as a
// viewer of the edge.
func (em *EdgeMember) Close() {
	em.mu.Lock()
	if em.closed {
		em.mu.Unlock()
		return
	}
	em.closed = true
	recv := em.recv
	em.mu.Unlock()
	em.r.viewers.Add(-1)
	if recv != nil {
		recv.Close()
	}
}
