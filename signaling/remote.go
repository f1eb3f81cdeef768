package signaling

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/room"
)

// Members on several nodes (cluster mode, docs/cluster.md): a WebSocket
// member who reaches node B (an edge) for a room whose node is A (its
// origin) stays on B. The origin stays the one authority of the room's
// party: B forwards the member's requests to A, where a session like a
// socket's runs them as if the member were there, and A's answers and
// notifications come back, in A's order, to B, which writes them to the
// socket. Only what the member receives is served on B, from the room's
// edge copy that the relay's pipe feeds (room.EdgeMember): its receive
// transport, its consumers. A member's send transport (a share) is on
// A, where the room's router is; the browser connects to A for it.
//
// The messages travel on Redis pub/sub (remote_msg.go), which may lose
// some: each direction of a session is numbered, and a gap ends the
// session (the socket closes; the client reconnects and resumes, which
// brings the whole state again). Every renewal each end names the
// sessions it holds with the other (keep); a session not named for the
// lease time is gone at the other end (its node died): the origin drops
// the member (it waits its grace, as after a dropped socket), the edge
// closes the socket.

// RemoteBus is how this node reaches the others' party channels.
type RemoteBus interface {
	// ID is this node's id.
	ID() string
	// Send publishes msg to node's party channel.
	Send(ctx context.Context, node string, msg []byte) error
}

// RemoteOptions turn on members of other nodes' rooms (Server.StartRemote).
type RemoteOptions struct {
	Bus RemoteBus
	// Inbox delivers the messages other nodes sent to this node's party
	// channel; it is read until it closes or Server.Close.
	Inbox <-chan []byte
	// Watch readies this node's edge copy of room, whose origin is node,
	// for a member (the relay's pipe); release once the member's link
	// ends. An error keeps the member off: it is sent to the origin.
	Watch func(ctx context.Context, room, node string) (release func(), err error)
	// Place says where a member of room (whose node is origin) who
	// reached this node is served (the cluster's placement of viewers):
	// elsewhere true sends it to node at url (1010), as a node without
	// headroom does when another carries the room or has room for a new
	// edge. Nil: always here.
	Place func(ctx context.Context, room, origin string) (node, url string, elsewhere bool)
	// Renew is how often each end names its sessions to the other; TTL
	// how long a session not named lives.
	Renew, TTL time.Duration
	// MaxMessage is the largest message on the bus; MaxMembers the most
	// members of other nodes this node serves as an origin (past it they
	// are sent here, error 1010).
	MaxMessage, MaxMembers int
	// AnswerTimeout bounds how long an edge waits for the origin's answer
	// to a join (default 5 s); past it the member is sent there (1010),
	// or told to retry (1011) if the origin stopped renewing (Answering).
	AnswerTimeout time.Duration
	// Answering reports whether node still renews its place in the
	// cluster. A join whose origin did not serve it (no pipe, no join
	// result in time) is sent there only if it does: a member sent to a
	// dead node would be stranded, so it is told to retry here (1011)
	// until the room's lease runs out and a live node takes the room.
	// Nil: always sent there.
	Answering func(ctx context.Context, node string) bool
}

// remote is this node's part in members on several nodes: as an edge
// (links, one per socket of a member of another node's room) and as an
// origin (remote sessions, one per such member of a room here).
type remote struct {
	srv *Server
	opt RemoteOptions
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	links map[string]*link // by session id (edge)
	// refused are the sockets of links whose join the origin refused, by
	// session id, for a TTL: the origin may close such a socket after its
	// answer (a password guesser that insists), as a local one would be.
	refused map[string]refusedLink
	// sessions are the origin's remote sessions, by edge node and id.
	sessions map[remoteKey]*session
	// given up are sessions whose edge gave up on their join before
	// their first request came (messages may overtake each other), until
	// when a late join of theirs is refused.
	givenUp map[remoteKey]time.Time
	// clients are the edges' sockets' limits (room.Client), by edge node
	// and socket, kept while a session uses them and a while after.
	clients map[remoteKey]*remoteClient
	// out sends what those sessions write, batched per node.
	out *fanout
}

type remoteKey struct{ node, sess string }

type refusedLink struct {
	node  string
	ss    *session
	until time.Time
}

// link is one socket's membership of a room of another node, at the edge.
type link struct {
	id, node, roomID string
	ss               *session
	moved            error // the join's error had the member gone there: the fallback
	release          func()

	mu        sync.Mutex
	seqOut    uint64 // the last req sent
	seqIn     uint64 // the last out received
	joinID    json.RawMessage
	leaveID   json.RawMessage
	joinTimer *time.Timer
	gaveUp    bool   // the join went unanswered: the origin is told to drop the member for good
	peer      string // the member's peer id, once joined
	em        *room.EdgeMember
	heard     time.Time // the origin last spoke of this session
	ended     bool
}

// StartRemote turns on members of other nodes' rooms; Close stops it.
func (s *Server) StartRemote(ctx context.Context, opt RemoteOptions) {
	if opt.AnswerTimeout <= 0 {
		opt.AnswerTimeout = 5 * time.Second
	}
	rm := &remote{srv: s, opt: opt, log: s.log.With("component", "member-relay"),
		links: map[string]*link{}, refused: map[string]refusedLink{}, sessions: map[remoteKey]*session{}, givenUp: map[remoteKey]time.Time{}, clients: map[remoteKey]*remoteClient{}}
	rm.ctx, rm.cancel = context.WithCancel(ctx)
	rm.out = newFanout(rm)
	s.mu.Lock()
	s.remote = rm
	s.mu.Unlock()
	rm.wg.Add(3)
	go func() { defer rm.wg.Done(); rm.receive() }()
	go func() { defer rm.wg.Done(); rm.tick() }()
	go func() { defer rm.wg.Done(); rm.out.run(rm.ctx) }()
}

// close stops the goroutines; the sessions have ended before, and what
// they said last (closed) goes out first.
func (rm *remote) close() {
	rm.out.flush(time.Second)
	rm.cancel()
	rm.wg.Wait()
}

// RemoteStats are the figures of members on several nodes.
type RemoteStats struct {
	// Links are sockets here of members of other nodes' rooms; Remote
	// are members of rooms here whose sockets are on other nodes.
	Links, Remote int
}

// RemoteStats reads the figures (zero when off).
func (s *Server) RemoteStats() RemoteStats {
	rm := s.remoteOrNil()
	if rm == nil {
		return RemoteStats{}
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return RemoteStats{Links: len(rm.links), Remote: len(rm.sessions)}
}

func (s *Server) remoteOrNil() *remote {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remote
}

// send posts m to node; an error is Redis's.
func (rm *remote) send(node string, m remoteMsg) error {
	m.From = rm.opt.Bus.ID()
	b, err := encodeRemote(m)
	if err != nil {
		return err
	}
	if len(b) > rm.opt.MaxMessage {
		return fmt.Errorf("%s message to node %s: %d bytes, at most %d (--relay-member-max-message)", m.Type, node, len(b), rm.opt.MaxMessage)
	}
	ctx, cancel := context.WithTimeout(rm.ctx, 2*time.Second)
	defer cancel()
	return rm.opt.Bus.Send(ctx, node, b)
}

// receive handles the other nodes' messages until the inbox closes or
// the server stops.
func (rm *remote) receive() {
	for {
		select {
		case <-rm.ctx.Done():
			return
		case b, ok := <-rm.opt.Inbox:
			if !ok {
				return
			}
			m, err := decodeRemote(b)
			if err != nil {
				rm.log.Warn("member relay: message refused", "err", err)
				continue
			}
			switch m.Type {
			case msgReq, msgBye:
				rm.atOrigin(m)
			case msgOut, msgClosed:
				rm.atEdgeAll(m)
			case msgBatch:
				for _, b := range m.Batch {
					item, _ := decodeRemote(b) // checked with the batch
					rm.atEdgeAll(item)
				}
			case msgKeep:
				rm.kept(m)
			}
		}
	}
}

// tick names each end's sessions to the other every renewal and ends
// those the other end stopped naming.
func (rm *remote) tick() {
	t := time.NewTicker(rm.opt.Renew)
	defer t.Stop()
	for {
		select {
		case <-rm.ctx.Done():
			return
		case <-t.C:
			rm.renew()
		}
	}
}

func (rm *remote) renew() {
	now := time.Now()
	asEdge, asOrigin := map[string][]string{}, map[string][]string{}
	var silentLinks []*link
	var silentSessions []*session
	rm.mu.Lock()
	for _, l := range rm.links {
		l.mu.Lock()
		// A link the origin has not answered yet is not named: its keep
		// might overtake its first request (they leave on different
		// connections) and be refused as unknown. Its join has its own
		// timeout.
		if l.seqIn > 0 {
			asEdge[l.node] = append(asEdge[l.node], l.id)
		}
		if now.Sub(l.heard) > rm.opt.TTL {
			silentLinks = append(silentLinks, l)
		}
		l.mu.Unlock()
	}
	for id, r := range rm.refused {
		if now.After(r.until) {
			delete(rm.refused, id)
		}
	}
	for k, until := range rm.givenUp {
		if now.After(until) {
			delete(rm.givenUp, k)
		}
	}
	for k, c := range rm.clients {
		if c.users == 0 && now.After(c.until) {
			delete(rm.clients, k)
		}
	}
	for k, ss := range rm.sessions {
		asOrigin[k.node] = append(asOrigin[k.node], k.sess)
		if now.Sub(ss.remoteHeard()) > rm.opt.TTL {
			silentSessions = append(silentSessions, ss)
		}
	}
	rm.mu.Unlock()
	rm.sendKeeps(asEdge, false)
	rm.sendKeeps(asOrigin, true)
	for _, l := range silentLinks {
		// As when the client's own node dies: the socket just ends (no
		// "disconnected", which clients take for a removal), and the
		// client reconnects and resumes.
		rm.log.Info("member relay: the room's node stopped answering; closing the socket", "room", l.roomID, "node", l.node, "session", l.id)
		l.ss.Disconnect("the room's node stopped answering")
	}
	for _, ss := range silentSessions {
		rm.log.Info("member relay: the member's node stopped naming it; dropping the member", "edge", ss.rs.key.node, "session", ss.rs.key.sess)
		ss.Disconnect("")
	}
}

// sendKeeps names the sessions held with each node.
func (rm *remote) sendKeeps(byNode map[string][]string, origin bool) {
	for node, ids := range byNode {
		for len(ids) > 0 {
			n := min(len(ids), maxKeepSessions)
			if err := rm.send(node, remoteMsg{Type: msgKeep, Origin: origin, Sessions: ids[:n]}); err != nil {
				rm.log.Debug("member relay: keep not sent", "node", node, "err", err)
			}
			ids = ids[n:]
		}
	}
}

// kept handles a keep: the sender still holds these sessions with us.
// One we do not know is answered at once (the edge is told closed, the
// origin bye), so that a lost message leaves nothing open past a renewal.
func (rm *remote) kept(m remoteMsg) {
	now := time.Now()
	var unknown []string
	rm.mu.Lock()
	for _, id := range m.Sessions {
		if m.Origin {
			if l := rm.links[id]; l != nil && l.node == m.From {
				l.mu.Lock()
				l.heard = now
				l.mu.Unlock()
				continue
			}
		} else if ss := rm.sessions[remoteKey{m.From, id}]; ss != nil {
			ss.remoteHear(now)
			continue
		}
		unknown = append(unknown, id)
	}
	rm.mu.Unlock()
	for _, id := range unknown {
		if m.Origin {
			_ = rm.send(m.From, remoteMsg{Type: msgBye, Sess: id})
		} else {
			_ = rm.send(m.From, remoteMsg{Type: msgClosed, Sess: id, Reason: "no such member session on node " + rm.opt.Bus.ID()})
		}
	}
}

func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
