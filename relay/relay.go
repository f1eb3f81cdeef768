// Package relay is the control plane of relaying a room's media between
// the nodes of a cluster (docs/cluster.md, "Relaying"): a node that has
// WHEP viewers of a room whose origin is another node holds an edge copy
// of the room and asks the origin, over Redis, for a pipe of the room's
// media; the origin opens it and describes its producers. One pipe per
// (room, edge node), whatever the number of viewers there. An origin
// that sends --relay-max-pipes already names, when it refuses, edges it
// feeds that may pipe the room on: a second level (origin → sub-origin →
// edge; docs/cluster.md, "A second level"). The media of a pipe is the
// media core's (sfu/pipe.go, through room's Pipe).
package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/room"
)

// Bus is how this node reaches the others: the cluster's Redis.
type Bus interface {
	// ID is this node's id.
	ID() string
	// Send publishes msg to node's inbox.
	Send(ctx context.Context, node string, msg []byte) error
	// Alive reports whether node's lease is renewed.
	Alive(ctx context.Context, node string) (bool, error)
	// Holder names the live node holding room's lease ("" for none).
	Holder(ctx context.Context, room string) (string, error)
}

// Options configure the relay.
type Options struct {
	Rooms *room.Manager
	Bus   Bus
	// Inbox delivers the messages other nodes sent this node.
	Inbox <-chan []byte
	// IP is the address pipe ends listen on and announce to the origin;
	// it must reach the other nodes.
	IP netip.Addr
	// IdleGrace is how long an edge with no viewers keeps its pipe.
	IdleGrace time.Duration
	// Renew is how often each end repeats its state and checks its peer's
	// lease (TTL is the cluster's lease time, kept for reference).
	Renew, TTL time.Duration
	// MaxPipes bounds the pipes this node sends to edges, as an origin
	// and as a sub-origin together; an edge asking for more is refused
	// (an origin names its edges that may pipe the room on; without one,
	// the viewer goes to the origin).
	MaxPipes int
	// OpenTimeout bounds how long a viewer waits for the origin to open
	// a pipe (default 3 s).
	OpenTimeout time.Duration
	Logger      *slog.Logger
}

// ErrUnavailable is a pipe that could not be opened: the viewer goes to
// the origin instead.
var ErrUnavailable = errors.New("relay unavailable")

// Stats are the relay's figures for metrics.
type Stats struct {
	// PipesIn are edges fed by another node; PipesOut pipes to edges.
	PipesIn, PipesOut int
	// Pipe counters, every pipe since start by direction (in: edge ends).
	In, Out room.PipeStats
}

// Relay is this node's relay control plane, as an origin and as an edge.
type Relay struct {
	opt Options
	log *slog.Logger
	bus Bus

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	out    *outbox

	// openMu serialises finding or opening an edge, so that viewers
	// arriving together share one pipe.
	openMu sync.Mutex

	mu      sync.Mutex
	edges   map[string]*edge   // by room
	origins map[string]*origin // by pipe id
	closed  bool
	doneIn  room.PipeStats // counters of closed pipes
	doneOut room.PipeStats
}

// edge is this node's copy of a room of another node, fed by one pipe:
// from the room's node (its origin), or from a sub-origin, an edge of the
// room on a third node that the origin named when it was full.
type edge struct {
	room, origin string // origin: the node holding the room
	e            *room.Edge
	ready        chan struct{} // closed when the first pipe is fed (or the edge closed)
	readyOnce    sync.Once

	// Under Relay.mu. A sub-origin that dies or closes a pipe it fed is
	// replaced (repipe): the edge, its router and its viewers stay, a new
	// pipe end is asked for.
	from      string     // the node feeding the pipe: origin or a sub-origin
	pipeID    string     // the current pipe's id
	pipe      *room.Pipe // the current pipe's end
	fed       bool       // the current pipe described its producers (ready, sync)
	via       []string   // sub-origins the origin named, still to ask
	lost      string     // a sub-origin that died under the edge: not asked again
	pending   int        // viewers being set up
	idleSince time.Time  // zero while it has viewers or sub-pipes
	missing   time.Time  // since when the feeding node seems gone (zero: it is there)
	closed    bool
}

// origin is one pipe this node sends to an edge.
type origin struct {
	pipeID, room, edgeNode string
	pipe                   *room.Pipe
	// sub: the pipe goes on from this node's edge of the room (this node
	// is a sub-origin), not from the room itself.
	sub     bool
	missing time.Time // under Relay.mu: since when the edge's node seems gone
	closed  bool      // under Relay.mu
}

// New starts the relay; Close stops it.
func New(ctx context.Context, opt Options) *Relay {
	if opt.OpenTimeout <= 0 {
		opt.OpenTimeout = 3 * time.Second
	}
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Relay{opt: opt, log: log.With("component", "relay"), bus: opt.Bus,
		edges: map[string]*edge{}, origins: map[string]*origin{}}
	r.ctx, r.cancel = context.WithCancel(ctx)
	r.out = newOutbox(opt.Bus, r.log)
	r.wg.Add(3)
	go func() { defer r.wg.Done(); r.out.run(r.ctx) }()
	go func() { defer r.wg.Done(); r.receive() }()
	go func() { defer r.wg.Done(); r.tick() }()
	return r
}

// Close drops every pipe (telling the other ends) and stops.
func (r *Relay) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	edges := make([]*edge, 0, len(r.edges))
	for _, e := range r.edges {
		edges = append(edges, e)
	}
	origins := make([]*origin, 0, len(r.origins))
	for _, o := range r.origins {
		origins = append(origins, o)
	}
	r.mu.Unlock()
	for _, e := range edges {
		r.dropEdge(e, "node shutting down", true)
	}
	for _, o := range origins {
		r.dropOrigin(o, "node shutting down", true)
	}
	r.out.flush(time.Second)
	r.cancel()
	r.wg.Wait()
}

// Stats reads the relay's figures.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	s := Stats{PipesIn: len(r.edges), PipesOut: len(r.origins), In: r.doneIn, Out: r.doneOut}
	pipes := make([]*room.Pipe, 0, len(r.edges))
	for _, e := range r.edges {
		pipes = append(pipes, e.pipe)
	}
	nIn := len(pipes)
	for _, o := range r.origins {
		pipes = append(pipes, o.pipe)
	}
	r.mu.Unlock()
	for i, p := range pipes {
		if i < nIn {
			add(&s.In, p.Stats())
		} else {
			add(&s.Out, p.Stats())
		}
	}
	return s
}

func add(to *room.PipeStats, s room.PipeStats) {
	to.PacketsSent += s.PacketsSent
	to.PacketsReceived += s.PacketsReceived
	to.Retransmits += s.Retransmits
	to.NACKs += s.NACKs
	to.KeyframeRequests += s.KeyframeRequests
}

// Watch readies this node to serve a viewer of room, whose origin is
// node origin: it opens the edge and its pipe if there is none, and waits
// (until ctx ends or OpenTimeout) for the origin to answer. The caller
// calls release once the viewer is set up (or failed): until then the
// edge does not count as idle.
func (r *Relay) Watch(ctx context.Context, roomID, originNode string) (release func(), err error) {
	e, err := r.edgeFor(roomID, originNode)
	if err != nil {
		return nil, err
	}
	release = func() {
		r.mu.Lock()
		e.pending--
		r.mu.Unlock()
	}
	t := time.NewTimer(r.opt.OpenTimeout)
	defer t.Stop()
	select {
	case <-e.ready:
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	case <-t.C:
		release()
		r.dropEdge(e, "the origin did not answer", true)
		return nil, fmt.Errorf("%w: node %s did not open a pipe of room %s within %s", ErrUnavailable, originNode, roomID, r.opt.OpenTimeout)
	}
	r.mu.Lock()
	closed := e.closed
	r.mu.Unlock()
	if closed {
		release()
		return nil, fmt.Errorf("%w: the pipe of room %s from node %s closed", ErrUnavailable, roomID, originNode)
	}
	return release, nil
}

// edgeFor returns the room's edge fed by originNode (opening it), with
// one more pending viewer.
func (r *Relay) edgeFor(roomID, originNode string) (*edge, error) {
	r.openMu.Lock()
	defer r.openMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: shutting down", ErrUnavailable)
	}
	e := r.edges[roomID]
	if e != nil && e.origin == originNode && !e.closed {
		e.pending++
		r.mu.Unlock()
		return e, nil
	}
	r.mu.Unlock()
	if e != nil {
		r.dropEdge(e, "the room moved to node "+originNode, true)
	}
	return r.openEdge(roomID, originNode)
}

// openEdge makes the edge copy of a room and asks its origin for a pipe;
// openMu is held.
func (r *Relay) openEdge(roomID, originNode string) (*edge, error) {
	re, err := r.opt.Rooms.OpenEdge(roomID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	pipe, open, err := r.acceptPipe(re, roomID)
	if err != nil {
		re.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	e := &edge{room: roomID, origin: originNode, from: originNode, pipeID: open.Pipe, e: re, pipe: pipe,
		ready: make(chan struct{}), pending: 1}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		pipe.Close()
		re.Close()
		return nil, fmt.Errorf("%w: shutting down", ErrUnavailable)
	}
	r.edges[roomID] = e
	r.mu.Unlock()
	pipe.OnClose(func() { r.pipeClosed(e, pipe) })
	r.log.Info("relay: edge opened; asking the origin for the room's media", "room", roomID, "origin", originNode, "pipe", open.Pipe, "addr", pipe.LocalAddr())
	r.send(originNode, open)
	return e, nil
}

// acceptPipe opens a new edge end of a pipe of roomID on re, with fresh
// keys, and the open message that asks a node for it.
func (r *Relay) acceptPipe(re *room.Edge, roomID string) (*room.Pipe, Message, error) {
	toOrigin, toEdge := room.NewPipeKey(), room.NewPipeKey()
	pipe, err := re.AcceptPipe(r.ctx, room.PipeOptions{Listen: r.listen(), SendKey: toOrigin, RecvKey: toEdge})
	if err != nil {
		return nil, Message{}, err
	}
	return pipe, Message{Type: typeOpen, Pipe: newPipeID(), Room: roomID, Addr: pipe.LocalAddr().String(),
		ToOrigin: keyOf(toOrigin), ToEdge: keyOf(toEdge)}, nil
}

// pipeClosed: an edge's pipe end closed by itself (its router or the
// relay's context ended); a pipe the edge replaced says nothing.
func (r *Relay) pipeClosed(e *edge, p *room.Pipe) {
	r.mu.Lock()
	current := e.pipe == p
	r.mu.Unlock()
	if current {
		r.dropEdge(e, "pipe closed", true)
	}
}

// repipe replaces edge e's pipe pipeID (unless it was replaced already)
// with a new one asked of node, keeping the edge, its router and its
// viewers: their stage empties while the old pipe's producers close and
// fills again with the new pipe's (WHEP viewers follow the stage without
// renegotiating). It reports false when e is gone or moved on.
func (r *Relay) repipe(e *edge, pipeID, node, why string) bool {
	pipe, open, err := r.acceptPipe(e.e, e.room)
	if err != nil {
		r.dropEdge(e, "no new pipe end: "+err.Error(), true)
		return false
	}
	r.mu.Lock()
	if e.closed || e.pipeID != pipeID {
		r.mu.Unlock()
		pipe.Close()
		return false
	}
	old, oldFrom := e.pipe, e.from
	add(&r.doneIn, old.Stats())
	e.pipe, e.pipeID, e.from, e.fed, e.missing = pipe, open.Pipe, node, false, time.Time{}
	r.mu.Unlock()
	pipe.OnClose(func() { r.pipeClosed(e, pipe) })
	// The old end, if it still exists there, goes too (a close for a pipe
	// an end no longer has is ignored).
	r.send(oldFrom, Message{Type: typeClose, Pipe: pipeID, Room: e.room, Reason: why})
	old.Close()
	r.log.Info("relay: edge asks another node for the room's media", "room", e.room, "origin", e.origin,
		"from", node, "was", oldFrom, "pipe", open.Pipe, "why", why)
	r.send(node, open)
	return true
}

// listen is where a pipe end listens: the relay's IP, any port.
func (r *Relay) listen() string {
	return net.JoinHostPort(r.opt.IP.String(), "0")
}

// dropEdge closes an edge (its viewers' sessions end) and, when tell,
// tells the node feeding it to close its end. The sub-pipes this node
// sends from the edge close too, telling their edges (which ask the
// origin again).
func (r *Relay) dropEdge(e *edge, reason string, tell bool) {
	r.mu.Lock()
	if e.closed {
		r.mu.Unlock()
		return
	}
	e.closed = true
	if r.edges[e.room] == e {
		delete(r.edges, e.room)
	}
	add(&r.doneIn, e.pipe.Stats())
	pipe, pipeID, from := e.pipe, e.pipeID, e.from
	var subs []*origin
	for _, o := range r.origins {
		if o.sub && o.room == e.room {
			subs = append(subs, o)
		}
	}
	r.mu.Unlock()
	e.readyOnce.Do(func() { close(e.ready) })
	if tell {
		r.send(from, Message{Type: typeClose, Pipe: pipeID, Room: e.room, Reason: reason})
	}
	for _, o := range subs {
		r.dropOrigin(o, "the sub-origin's edge closed: "+reason, true)
	}
	pipe.Close()
	e.e.Close()
	r.log.Info("relay: edge closed", "room", e.room, "origin", e.origin, "from", from, "pipe", pipeID, "reason", reason)
}

// dropOrigin closes a pipe to an edge and, when tell, tells the edge.
func (r *Relay) dropOrigin(o *origin, reason string, tell bool) {
	r.mu.Lock()
	if o.closed {
		r.mu.Unlock()
		return
	}
	o.closed = true
	if r.origins[o.pipeID] == o {
		delete(r.origins, o.pipeID)
	}
	add(&r.doneOut, o.pipe.Stats())
	r.mu.Unlock()
	if tell {
		r.send(o.edgeNode, Message{Type: typeClosed, Pipe: o.pipeID, Room: o.room, Reason: reason})
	}
	o.pipe.Close()
	r.log.Info("relay: pipe to an edge closed", "room", o.room, "edge", o.edgeNode, "pipe", o.pipeID, "reason", reason)
}

// send queues m for node (never blocks).
func (r *Relay) send(node string, m Message) {
	m.From = r.bus.ID()
	b, err := Encode(m)
	if err != nil {
		r.log.Error("relay: message not sent", "type", m.Type, "room", m.Room, "to", node, "err", err)
		return
	}
	r.out.post(node, b)
}

// receive handles the messages of other nodes until the inbox closes or
// the relay stops.
func (r *Relay) receive() {
	for {
		select {
		case <-r.ctx.Done():
			return
		case b, ok := <-r.opt.Inbox:
			if !ok {
				return
			}
			m, err := Decode(b)
			if err != nil {
				r.log.Warn("relay: message refused", "err", err)
				continue
			}
			r.handle(m)
		}
	}
}

func (r *Relay) handle(m Message) {
	switch m.Type {
	case typeOpen:
		r.openOrigin(m)
	case typeKeep, typeClose:
		r.mu.Lock()
		o := r.origins[m.Pipe]
		if o != nil && o.edgeNode == m.From {
			o.missing = time.Time{}
		}
		r.mu.Unlock()
		switch {
		case o == nil || o.edgeNode != m.From:
			if m.Type == typeKeep {
				r.send(m.From, Message{Type: typeClosed, Pipe: m.Pipe, Room: m.Room, Reason: "no such pipe here"})
			}
		case m.Type == typeClose:
			r.dropOrigin(o, "the edge closed it: "+m.Reason, false)
		}
	default:
		r.atEdge(m)
	}
}

// openOrigin opens the origin end of a pipe an edge asked for: from the
// room, when it is here, else from this node's edge of it (a sub-origin).
func (r *Relay) openOrigin(m Message) {
	r.mu.Lock()
	o, dup := r.origins[m.Pipe]
	closed, full := r.closed, len(r.origins) >= r.opt.MaxPipes
	var gone *origin
	if full && !dup {
		gone = r.goneEdgeLocked()
	}
	r.mu.Unlock()
	if closed {
		return
	}
	if gone != nil {
		// Its node's record has been missing from the registry (it died)
		// while a live node asks for the slot: the pipe would be dropped
		// within a renewal anyway.
		r.dropOrigin(gone, "the edge's node is gone and another asks for its pipe", true)
		full = false
	}
	if full && !dup {
		r.send(m.From, Message{Type: typeClosed, Pipe: m.Pipe, Room: m.Room, Via: r.subOrigins(m.Room, m.From),
			Reason: fmt.Sprintf("node %s sends its %d pipes (--relay-max-pipes)", r.bus.ID(), r.opt.MaxPipes)})
		return
	}
	if dup {
		if o.edgeNode == m.From {
			r.sendProducers(o, typeReady)
		}
		return
	}
	remote, _ := netip.ParseAddrPort(m.Addr) // checked by Decode
	edgeNode, pipeID, roomID := m.From, m.Pipe, m.Room
	pipeTo := func(ctx context.Context, o room.PipeOptions) (*room.Pipe, error) {
		return r.opt.Rooms.PipeTo(ctx, roomID, o)
	}
	var from *edge // this node's edge the pipe goes on from (a sub-origin)
	if _, here := r.opt.Rooms.Room(roomID); !here {
		e, err := r.subOriginOf(roomID, edgeNode)
		if err != nil {
			r.log.Info("relay: sub-pipe refused", "room", roomID, "edge", edgeNode, "err", err)
			r.send(edgeNode, Message{Type: typeClosed, Pipe: pipeID, Room: roomID, Reason: err.Error()})
			return
		}
		pipeTo, from = e.e.PipeTo, e
	}
	pipe, err := pipeTo(r.ctx, room.PipeOptions{
		Listen: r.listen(), Remote: remote, SendKey: m.ToEdge.pipeKey(), RecvKey: m.ToOrigin.pipeKey(),
		OnProducer: func(d room.PipedProducer) {
			p, err := describe(d)
			if err != nil {
				r.log.Warn("relay: producer not described", "room", roomID, "err", err)
				return
			}
			r.send(edgeNode, Message{Type: typeProducer, Pipe: pipeID, Room: roomID, Producers: []Producer{p}})
		},
		OnProducerClosed: func(id string) {
			r.send(edgeNode, Message{Type: typeEnded, Pipe: pipeID, Room: roomID, Producer: id})
		},
	})
	if err != nil {
		r.log.Info("relay: pipe refused", "room", roomID, "edge", edgeNode, "err", err)
		r.send(edgeNode, Message{Type: typeClosed, Pipe: pipeID, Room: roomID, Reason: err.Error()})
		return
	}
	sub := from != nil
	o = &origin{pipeID: pipeID, room: roomID, edgeNode: edgeNode, pipe: pipe, sub: sub}
	r.mu.Lock()
	if r.closed || sub && from.closed {
		// Closing, or the edge it pipes from closed meanwhile.
		r.mu.Unlock()
		pipe.Close()
		r.send(edgeNode, Message{Type: typeClosed, Pipe: pipeID, Room: roomID, Reason: "the room's edge here closed"})
		return
	}
	r.origins[pipeID] = o
	r.mu.Unlock()
	pipe.OnClose(func() { r.dropOrigin(o, "the room ended here", true) })
	r.log.Info("relay: piping a room to an edge", "room", roomID, "edge", edgeNode, "pipe", pipeID, "to", remote, "sub_origin", sub)
	r.sendProducers(o, typeReady)
}

// subOriginOf is this node's edge of roomID when it may pipe the room on
// to node asker: it is fed, and fed by the room's origin itself. So a
// sub-origin's edges are never sub-origins (two levels at most) and an
// edge never pipes from a node that pipes from it.
func (r *Relay) subOriginOf(roomID, asker string) (*edge, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.edges[roomID]
	switch {
	case e == nil || e.closed:
		return nil, fmt.Errorf("room %s is not on node %s", roomID, r.bus.ID())
	case e.from != e.origin:
		return nil, fmt.Errorf("node %s is fed by a sub-origin itself", r.bus.ID())
	case e.origin == asker || e.from == asker:
		return nil, fmt.Errorf("node %s is fed by the asker", r.bus.ID())
	case !e.fed:
		return nil, fmt.Errorf("node %s has no media of room %s yet", r.bus.ID(), roomID)
	}
	return e, nil
}

// subOrigins names, for an edge this node refuses for lack of pipes, the
// nodes that may pipe the room on: the edges this node feeds the room
// to directly and whose node is there, in random order (sub-edges spread
// over them), at most maxVia. Each may refuse when full itself; the
// asker then tries the next.
func (r *Relay) subOrigins(roomID, asker string) []string {
	if _, here := r.opt.Rooms.Room(roomID); !here {
		return nil
	}
	r.mu.Lock()
	var via []string
	for _, o := range r.origins {
		if o.room == roomID && !o.sub && o.edgeNode != asker && o.missing.IsZero() && !slices.Contains(via, o.edgeNode) {
			via = append(via, o.edgeNode)
		}
	}
	r.mu.Unlock()
	mrand.Shuffle(len(via), func(i, j int) { via[i], via[j] = via[j], via[i] })
	if len(via) > maxVia {
		via = via[:maxVia]
	}
	return via
}

// goneEdgeLocked returns a pipe whose edge's node has seemed gone at the
// last renewal, if any; r.mu is held.
func (r *Relay) goneEdgeLocked() *origin {
	for _, o := range r.origins {
		if !o.missing.IsZero() {
			return o
		}
	}
	return nil
}

// sendProducers sends every producer the pipe carries (ready, sync).
func (r *Relay) sendProducers(o *origin, typ string) {
	ds := o.pipe.Producers()
	ps := make([]Producer, 0, len(ds))
	for _, d := range ds {
		p, err := describe(d)
		if err != nil {
			r.log.Warn("relay: producer not described", "room", o.room, "err", err)
			continue
		}
		ps = append(ps, p)
	}
	r.send(o.edgeNode, Message{Type: typ, Pipe: o.pipeID, Room: o.room, Producers: ps})
}

// atEdge handles what an origin says about a pipe this node receives.
func (r *Relay) atEdge(m Message) {
	r.mu.Lock()
	e := r.edges[m.Room]
	if e != nil && (e.pipeID != m.Pipe || e.from != m.From) {
		e = nil
	}
	var pipe *room.Pipe
	if e != nil {
		e.missing = time.Time{}
		pipe = e.pipe
		if m.Type == typeReady || m.Type == typeSync {
			e.fed = true
		}
	}
	r.mu.Unlock()
	if e == nil {
		if m.Type != typeClosed {
			// A pipe this node no longer wants (its close was lost).
			r.send(m.From, Message{Type: typeClose, Pipe: m.Pipe, Room: m.Room, Reason: "no such edge here"})
		}
		return
	}
	switch m.Type {
	case typeClosed:
		r.closedAtEdge(e, m)
	case typeEnded:
		pipe.End(m.Producer)
	case typeProducer:
		if err := pipe.Produce(m.Producers[0].piped()); err != nil {
			r.log.Warn("relay: producer not made", "room", e.room, "producer", m.Producers[0].ID, "err", err)
		}
	case typeReady, typeSync:
		ds := make([]room.PipedProducer, len(m.Producers))
		for i, p := range m.Producers {
			ds[i] = p.piped()
		}
		if err := pipe.Sync(ds); err != nil {
			r.log.Warn("relay: producers not made", "room", e.room, "err", err)
		}
		e.readyOnce.Do(func() { close(e.ready) })
	}
}

// closedAtEdge handles the closing of edge e's pipe by the node feeding
// it. An origin that refused for lack of pipes names sub-origins: the
// edge asks each in turn until one pipes; a sub-origin that closes a pipe
// it fed (its own edge closed) sends the edge back to the origin. Else
// the edge closes (a viewer being set up goes to the origin, 307).
func (r *Relay) closedAtEdge(e *edge, m Message) {
	r.mu.Lock()
	if m.From == e.origin && !e.fed && len(m.Via) > 0 {
		e.via = nil
		for _, n := range m.Via {
			if n != r.bus.ID() && n != e.origin && n != e.lost {
				e.via = append(e.via, n)
			}
		}
	}
	var next string
	switch {
	case e.fed && e.from != e.origin:
		next = e.origin
	case !e.fed && len(e.via) > 0:
		next, e.via = e.via[0], e.via[1:]
	}
	r.mu.Unlock()
	why := fmt.Sprintf("node %s closed the pipe: %s", m.From, m.Reason)
	if next == "" || !r.repipe(e, m.Pipe, next, why) {
		r.dropEdge(e, why, false)
	}
}

// tick repeats each end's state every Renew, checks the peers, and drops
// edges idle past the grace.
func (r *Relay) tick() {
	renew := time.NewTicker(r.opt.Renew)
	defer renew.Stop()
	idleEvery := min(max(r.opt.IdleGrace/4, 50*time.Millisecond), time.Second)
	idle := time.NewTicker(idleEvery)
	defer idle.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-idle.C:
			r.dropIdle()
		case <-renew.C:
			r.renew()
		}
	}
}

// dropIdle closes the edges that had no viewers for IdleGrace; an edge
// that feeds sub-pipes is in use.
func (r *Relay) dropIdle() {
	now := time.Now()
	var idle []*edge
	r.mu.Lock()
	subs := map[string]bool{}
	for _, o := range r.origins {
		if o.sub {
			subs[o.room] = true
		}
	}
	for _, e := range r.edges {
		switch {
		case e.pending > 0 || e.e.Viewers() > 0 || subs[e.room]:
			e.idleSince = time.Time{}
		case e.idleSince.IsZero():
			e.idleSince = now
		case now.Sub(e.idleSince) >= r.opt.IdleGrace:
			idle = append(idle, e)
		}
	}
	r.mu.Unlock()
	for _, e := range idle {
		r.dropEdge(e, "no viewers", true)
	}
}

// renew sends each end's state to the other and checks that the other
// is there: an origin drops a pipe whose edge's node has no record in the
// registry (its lease ran out) for goneAfter, an edge drops itself when
// its room's lease names another node, or no live node for goneAfter
// with no word from the origin meanwhile. A failed check says nothing:
// while Redis is away (or just back, the nodes not yet registered again)
// media already flowing keeps flowing.
func (r *Relay) renew() {
	r.mu.Lock()
	edges := make([]*edge, 0, len(r.edges))
	for _, e := range r.edges {
		edges = append(edges, e)
	}
	origins := make([]*origin, 0, len(r.origins))
	for _, o := range r.origins {
		origins = append(origins, o)
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.ctx, r.opt.Renew)
	defer cancel()
	for _, o := range origins {
		r.sendProducers(o, typeSync)
		alive, err := r.bus.Alive(ctx, o.edgeNode)
		if r.gone(&o.missing, err == nil && !alive) {
			r.dropOrigin(o, "the edge's node is gone", false)
		}
	}
	for _, e := range edges {
		r.mu.Lock()
		from, pipeID := e.from, e.pipeID
		r.mu.Unlock()
		r.send(from, Message{Type: typeKeep, Pipe: pipeID, Room: e.room})
		holder, err := r.bus.Holder(ctx, e.room)
		if err == nil && holder != "" && holder != e.origin {
			r.dropEdge(e, "the room moved to node "+holder, true)
			continue
		}
		if from == e.origin {
			if r.gone(&e.missing, err == nil && holder == "") {
				r.dropEdge(e, "the origin is gone", false)
			}
			continue
		}
		alive, err := r.bus.Alive(ctx, from)
		if r.gone(&e.missing, err == nil && !alive) {
			r.subOriginGone(e, pipeID, from)
		}
	}
}

// subOriginGone: the sub-origin feeding edge e (or asked to) is gone. The
// edge asks the next sub-origin the origin named, else the origin again,
// and never that node again.
func (r *Relay) subOriginGone(e *edge, pipeID, from string) {
	r.mu.Lock()
	e.lost = from
	next := e.origin
	if !e.fed && len(e.via) > 0 {
		next, e.via = e.via[0], e.via[1:]
	}
	r.mu.Unlock()
	r.repipe(e, pipeID, next, "the sub-origin's node "+from+" is gone")
}

// goneAfter is how long in a row a peer must seem gone to be dropped, in
// renewals: a node whose record Redis lost (a restart) writes it again
// within one.
const goneAfter = 2

// gone tracks, in *since, how long a peer has seemed gone (absent now)
// and reports whether that is past goneAfter renewals.
func (r *Relay) gone(since *time.Time, absent bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !absent {
		*since = time.Time{}
		return false
	}
	if since.IsZero() {
		*since = time.Now()
	}
	// Half a renewal of slack: the checks of one round do not all start
	// on the tick.
	return time.Since(*since) >= goneAfter*r.opt.Renew-r.opt.Renew/2
}

func newPipeID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
