package room

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/matinee-dev/matinee/sfu"
)

// Relaying a room's media between nodes (docs/cluster.md): the room's
// node (its origin) pipes the router's producers to each other node that
// has viewers of it (an edge), once per node. On the edge the room has a
// local copy, an Edge: no members, no chat, only a router whose
// producers come from the pipe, so that WHEP's stage viewer works there
// as on the origin. The control plane that decides when to pipe lives in
// the relay package; this file gives it the media core in room's words.

// Pipe descriptions and keys are the media core's own (sfu/pipe.go).
type (
	PipeKey       = sfu.PipeKey
	PipedProducer = sfu.PipedProducer
	PipedLayer    = sfu.PipedLayer
	PipeStats     = sfu.PipeStats
	MediaKind     = sfu.Kind
)

// NewPipeKey returns a fresh random key for one direction of a pipe.
func NewPipeKey() PipeKey { return sfu.NewPipeKey() }

// PipeOptions configures one end of a pipe (sfu.PipeOptions).
type PipeOptions struct {
	// Listen is the local UDP address, "ip:port".
	Listen string
	// Remote is the edge's address (origin only).
	Remote           netip.AddrPort
	SendKey, RecvKey PipeKey
	// OnProducer and OnProducerClosed (origin only) are told of each
	// producer the pipe starts carrying and of each that closed; they
	// must not block.
	OnProducer       func(PipedProducer)
	OnProducerClosed func(id string)
}

func (o PipeOptions) sfu() sfu.PipeOptions {
	return sfu.PipeOptions{Listen: o.Listen, Remote: o.Remote, SendKey: o.SendKey, RecvKey: o.RecvKey,
		OnProducer: o.OnProducer, OnProducerClosed: o.OnProducerClosed}
}

// Pipe is one end of a pipe. On an edge it keeps the producers it made by
// their origin ids.
type Pipe struct {
	t *sfu.PipeTransport

	mu   sync.Mutex
	made map[string]*sfu.Producer
}

func newPipe(t *sfu.PipeTransport) *Pipe { return &Pipe{t: t, made: map[string]*sfu.Producer{}} }

// LocalAddr is where the pipe end listens.
func (p *Pipe) LocalAddr() netip.AddrPort { return p.t.LocalAddr() }

// Stats are the pipe end's counters.
func (p *Pipe) Stats() PipeStats { return p.t.Stats() }

// Producers describes what an origin carries now.
func (p *Pipe) Producers() []PipedProducer { return p.t.Producers() }

// OnClose registers f to run once the pipe end has closed (with its
// router, its context or Close).
func (p *Pipe) OnClose(f func()) { p.t.OnClose(f) }

// Close closes the pipe end (an edge's producers with it).
func (p *Pipe) Close() { p.t.Close() }

// Produce re-creates on an edge a producer the origin carries; one it
// made already is left as it is.
func (p *Pipe) Produce(d PipedProducer) error {
	p.mu.Lock()
	_, made := p.made[d.ID]
	p.mu.Unlock()
	if made {
		return nil
	}
	pr, err := p.t.Produce(d)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.made[d.ID] = pr
	p.mu.Unlock()
	pr.OnClose(func() {
		p.mu.Lock()
		if p.made[d.ID] == pr {
			delete(p.made, d.ID)
		}
		p.mu.Unlock()
	})
	return nil
}

// End closes the edge's copy of the origin's producer id, if any.
func (p *Pipe) End(id string) {
	p.mu.Lock()
	pr := p.made[id]
	p.mu.Unlock()
	if pr != nil {
		pr.Close()
	}
}

// Sync makes the edge's producers exactly ds: it produces those missing
// and ends the others (what a lost message left behind).
func (p *Pipe) Sync(ds []PipedProducer) error {
	want := make(map[string]bool, len(ds))
	var first error
	for _, d := range ds {
		want[d.ID] = true
		if err := p.Produce(d); err != nil && first == nil {
			first = err
		}
	}
	p.mu.Lock()
	var stale []*sfu.Producer
	for id, pr := range p.made {
		if !want[id] {
			stale = append(stale, pr)
		}
	}
	p.mu.Unlock()
	for _, pr := range stale {
		pr.Close()
	}
	return first
}

// Made lists the origin ids of the producers an edge made, for tests and
// logs.
func (p *Pipe) Made() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.made))
	for id := range p.made {
		ids = append(ids, id)
	}
	return ids
}

// PipeTo opens the origin end of a pipe of room id, which must be here:
// every producer of the room, now and to come, goes to o.Remote until
// the pipe, ctx or the room ends.
func (m *Manager) PipeTo(ctx context.Context, id string, o PipeOptions) (*Pipe, error) {
	r, ok := m.Room(id)
	if !ok {
		return nil, errorf(KindNotFound, "room %q is not on this node", id)
	}
	t, err := r.router.PipeTo(ctx, o.sfu())
	if err != nil {
		return nil, fmt.Errorf("pipe room %s: %w", id, err)
	}
	return newPipe(t), nil
}

// Edge is this node's copy of a room whose origin is another node.
type Edge struct {
	r   *Room
	key string // its router's id, and its entry in m.closing
}

// edgeRouterID names an edge's router apart from a room of the same id
// (a room may move here while its edge closes).
func edgeRouterID(id string) string { return "edge:" + id }

// OpenEdge makes the edge copy of room id, which must not be here (its
// origin is another node) nor have an edge already.
func (m *Manager) OpenEdge(id string) (*Edge, error) {
	if !ValidID(id) {
		return nil, errorf(KindNotFound, "room %q: ids are 1-64 characters of A-Z a-z 0-9 _ -", id)
	}
	key := edgeRouterID(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.waitClosedLocked(key)
	switch {
	case m.closed:
		return nil, errorf(KindInvalidState, "server is shutting down")
	case m.rooms[id] != nil:
		return nil, errorf(KindInvalidState, "room %q is on this node, not on another", id)
	case m.edges[id] != nil:
		return nil, errorf(KindInvalidState, "room %q has an edge here already", id)
	}
	router, err := m.worker.NewRouter(key)
	if err != nil {
		return nil, fmt.Errorf("edge of room %s: %w", id, err)
	}
	// The edge's stage is picked by the same rule from the producers the
	// pipe makes, as the origin's is from its own.
	r := &Room{id: id, m: m, router: router, stage: newStage(router), createdAt: m.now(), log: m.log.With("room", id, "edge", true),
		members: map[string]*Member{}, closed: false}
	if m.edges == nil {
		m.edges = map[string]*Room{}
	}
	m.edges[id] = r
	return &Edge{r: r, key: key}, nil
}

// AcceptPipe opens the edge end of the pipe that feeds the edge.
func (e *Edge) AcceptPipe(ctx context.Context, o PipeOptions) (*Pipe, error) {
	t, err := e.r.router.AcceptPipe(ctx, o.sfu())
	if err != nil {
		return nil, fmt.Errorf("edge of room %s: %w", e.r.id, err)
	}
	return newPipe(t), nil
}

// PipeTo opens the origin end of a pipe from the edge's own producers to
// another node's edge (a second level: origin → this edge → that one,
// docs/cluster.md): what the edge's pipe makes, now and to come, goes
// on to o.Remote until the pipe, ctx or the edge ends.
func (e *Edge) PipeTo(ctx context.Context, o PipeOptions) (*Pipe, error) {
	t, err := e.r.router.PipeTo(ctx, o.sfu())
	if err != nil {
		return nil, fmt.Errorf("pipe on the edge of room %s: %w", e.r.id, err)
	}
	return newPipe(t), nil
}

// Viewers counts the edge's stage viewers (those being set up included).
func (e *Edge) Viewers() int { return int(e.r.viewers.Load()) }

// Close ends the edge: its router closes, and with it the pipe and the
// stage viewers' connections (their WHEP sessions end).
func (e *Edge) Close() {
	m := e.r.m
	m.mu.Lock()
	if m.edges[e.r.id] != e.r {
		m.mu.Unlock()
		return
	}
	delete(m.edges, e.r.id)
	ch := make(chan struct{})
	m.closing[e.key] = ch
	m.mu.Unlock()
	e.r.stage.stop()
	e.r.router.Close()
	m.mu.Lock()
	if m.closing[e.key] == ch {
		delete(m.closing, e.key)
	}
	m.mu.Unlock()
	close(ch)
	e.r.log.Info("edge closed")
}

// Watchable returns the room whose stage a viewer here watches: the room
// itself, else its edge copy.
func (m *Manager) Watchable(id string) (*Room, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.rooms[id]; r != nil {
		return r, true
	}
	r := m.edges[id]
	return r, r != nil
}

// closeEdges closes every edge (the manager is closing).
func (m *Manager) closeEdges() {
	m.mu.Lock()
	es := make([]*Edge, 0, len(m.edges))
	for id, r := range m.edges {
		es = append(es, &Edge{r: r, key: edgeRouterID(id)})
	}
	m.mu.Unlock()
	for _, e := range es {
		e.Close()
	}
}

// Carried lists the rooms whose media is on this node, edges first, then
// the rooms here (for the cluster's registry), and counts their stage
// viewers (WHEP viewers and edge members).
func (m *Manager) Carried() (ids []string, viewers int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids = make([]string, 0, len(m.edges)+len(m.rooms))
	for id, r := range m.edges {
		ids = append(ids, id)
		viewers += int(r.viewers.Load())
	}
	for id, r := range m.rooms {
		ids = append(ids, id)
		viewers += int(r.viewers.Load())
	}
	return ids, viewers
}
