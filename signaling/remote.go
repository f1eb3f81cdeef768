package signaling

import (
	"bytes"
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
	// Renew is how often each end names its sessions to the other; TTL
	// how long a session not named lives.
	Renew, TTL time.Duration
	// MaxMessage is the largest message on the bus; MaxMembers the most
	// members of other nodes this node serves as an origin (past it they
	// are sent here, error 1010).
	MaxMessage, MaxMembers int
	// AnswerTimeout bounds how long an edge waits for the origin's answer
	// to a join (default 5 s); past it the member is sent there (1010).
	AnswerTimeout time.Duration
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
	// sessions are the origin's remote sessions, by edge node and id.
	sessions map[remoteKey]*session
	// out sends what those sessions write, batched per node.
	out *fanout
}

type remoteKey struct{ node, sess string }

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
		links: map[string]*link{}, sessions: map[remoteKey]*session{}}
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
				rm.atEdge(m)
			case msgBatch:
				for _, b := range m.Batch {
					item, _ := decodeRemote(b) // checked with the batch
					rm.atEdge(item)
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

// ---- Edge: a socket here, the room on another node.

// goRemote is join's answer when the room is on another node and this
// node can serve its member here.
type goRemote struct {
	node, room string
	moved      error
}

func (g *goRemote) Error() string { return g.moved.Error() }

// open links ss to room g.room on node g.node and forwards its join
// frame; the answer comes from the origin. An error: the member is not
// served here (the caller answers the move).
func (rm *remote) open(ss *session, g *goRemote, id json.RawMessage, frame []byte) error {
	ctx, cancel := context.WithTimeout(rm.ctx, rm.opt.AnswerTimeout)
	release, err := rm.opt.Watch(ctx, g.room, g.node)
	cancel()
	if err != nil {
		rm.log.Info("member relay: the room's media cannot be relayed here; member sent to its node", "room", g.room, "node", g.node, "err", err)
		return err
	}
	l := &link{id: newSessionID(), node: g.node, roomID: g.room, ss: ss, moved: g.moved, release: release,
		joinID: id, heard: time.Now()}
	rm.mu.Lock()
	rm.links[l.id] = l
	rm.mu.Unlock()
	ss.mu.Lock()
	ss.link = l
	ss.mu.Unlock()
	l.mu.Lock()
	l.joinTimer = time.AfterFunc(rm.opt.AnswerTimeout, func() { rm.joinUnanswered(l) })
	l.mu.Unlock()
	ss.log = ss.log.With("room", g.room, "origin", g.node, "session", l.id)
	if err := rm.forward(l, frame, true); err != nil {
		rm.unlink(l, false)
		return err
	}
	return nil
}

// joinUnanswered sends the member to the room's node when the origin did
// not answer its join in time.
func (rm *remote) joinUnanswered(l *link) {
	l.mu.Lock()
	id := l.joinID
	l.joinID = nil
	l.mu.Unlock()
	if id == nil {
		return
	}
	rm.log.Warn("member relay: the room's node did not answer a join; member sent there", "room", l.roomID, "node", l.node)
	rm.unlink(l, true)
	l.ss.reply(id, nil, toRPCError(l.moved))
}

// forward sends one request frame to the origin.
func (rm *remote) forward(l *link, frame []byte, first bool) error {
	l.mu.Lock()
	l.seqOut++
	m := remoteMsg{Type: msgReq, Sess: l.id, Seq: l.seqOut, Frames: []json.RawMessage{bytes.TrimSpace(frame)}}
	l.mu.Unlock()
	if first {
		m.Addr, m.Host = l.ss.client.Addr(), l.ss.host
	}
	return rm.send(l.node, m)
}

// unlink ends a link: the origin is told (tell), the edge member's media
// here closes, the socket goes back to joining rooms here.
func (rm *remote) unlink(l *link, tell bool) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	if l.joinTimer != nil {
		l.joinTimer.Stop()
	}
	em := l.em
	l.mu.Unlock()
	rm.mu.Lock()
	if rm.links[l.id] == l {
		delete(rm.links, l.id)
	}
	rm.mu.Unlock()
	l.ss.mu.Lock()
	if l.ss.link == l {
		l.ss.link = nil
	}
	l.ss.mu.Unlock()
	if tell {
		if err := rm.send(l.node, remoteMsg{Type: msgBye, Sess: l.id}); err != nil {
			rm.log.Debug("member relay: bye not sent (the origin's keep check ends it)", "node", l.node, "err", err)
		}
	}
	if em != nil {
		em.Close()
	}
	l.release()
}

// atEdge handles what an origin sends about a session whose socket is here.
func (rm *remote) atEdge(m remoteMsg) {
	rm.mu.Lock()
	l := rm.links[m.Sess]
	rm.mu.Unlock()
	if l == nil || l.node != m.From {
		if m.Type == msgOut {
			// A session this node no longer has (its bye was lost).
			_ = rm.send(m.From, remoteMsg{Type: msgBye, Sess: m.Sess})
		}
		return
	}
	l.mu.Lock()
	l.heard = time.Now()
	l.mu.Unlock()
	if m.Type == msgClosed {
		rm.closedByOrigin(l, m.Reason)
		return
	}
	l.mu.Lock()
	gap := m.Seq != l.seqIn+1
	l.seqIn = m.Seq
	l.mu.Unlock()
	if gap {
		rm.log.Warn("member relay: messages from the room's node were lost; the client rejoins", "room", l.roomID, "node", l.node, "session", l.id)
		l.ss.Disconnect("messages between nodes were lost: rejoin")
		return
	}
	for _, f := range m.Frames {
		rm.deliver(l, f)
	}
}

// closedByOrigin: the origin ended the session (the member was removed,
// the room ended or moved, the node stops). A join still waiting is sent
// to the room's node as without relaying.
func (rm *remote) closedByOrigin(l *link, reason string) {
	l.mu.Lock()
	joinID := l.joinID
	l.joinID = nil
	l.mu.Unlock()
	rm.unlink(l, false)
	if joinID != nil {
		rm.log.Info("member relay: the origin refused a member; sent there", "room", l.roomID, "node", l.node, "reason", reason)
		l.ss.reply(joinID, nil, toRPCError(l.moved))
		return
	}
	l.ss.Disconnect(reason)
}

// deliver writes one of the origin's frames to the socket, after looking
// at the answers to join and leave, which change the link.
func (rm *remote) deliver(l *link, f json.RawMessage) {
	l.mu.Lock()
	watching := l.joinID != nil || l.leaveID != nil
	l.mu.Unlock()
	if !watching {
		l.ss.enqueue(f)
		return
	}
	var ans struct {
		ID     json.RawMessage `json:"id"`
		Result *struct {
			PeerID string `json:"peerId"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	_ = json.Unmarshal(f, &ans)
	l.mu.Lock()
	isJoin := l.joinID != nil && bytes.Equal(ans.ID, l.joinID)
	isLeave := l.leaveID != nil && bytes.Equal(ans.ID, l.leaveID)
	if isJoin {
		l.joinID = nil
		l.joinTimer.Stop()
		if ans.Result != nil && ans.Error == nil {
			l.peer = ans.Result.PeerID
		}
	}
	if isLeave {
		l.leaveID = nil
	}
	joined := l.peer != ""
	l.mu.Unlock()
	l.ss.enqueue(f)
	switch {
	case isJoin && !joined:
		rm.unlink(l, true) // refused: the socket may join again
	case isJoin:
		rm.log.Info("member relay: member of another node's room joined here", "room", l.roomID, "node", l.node, "peer", ans.Result.PeerID)
	case isLeave:
		rm.unlink(l, true)
		l.ss.armJoinDeadline()
	}
}

// linkedMethods are served at the edge: what the member receives. The
// others (and a transport call about a transport of the origin's) go to
// the origin.
var linkedMethods = map[string]func(rm *remote, l *link, params json.RawMessage) (any, error){
	"createTransport":    (*remote).edgeCreateTransport,
	"subscribe":          (*remote).edgeSubscribe,
	"unsubscribe":        edgeConsumerCall(func(em *room.EdgeMember, id string) error { return em.Unsubscribe(id) }),
	"pauseConsumer":      edgeConsumerCall(func(em *room.EdgeMember, id string) error { return em.PauseConsumer(id, true) }),
	"resumeConsumer":     edgeConsumerCall(func(em *room.EdgeMember, id string) error { return em.PauseConsumer(id, false) }),
	"setPreferredLayers": (*remote).edgeSetLayers,
	"transportAnswer":    (*remote).edgeTransportAnswer,
	"restartIce":         (*remote).edgeRestartICE,
	"iceCandidate":       (*remote).edgeICECandidate,
}

// errForward: the request is the origin's after all.
var errForward = &rpcError{Code: CodeInternal, Message: "forward"}

// handleLinked runs one request of a linked socket: here, or at the origin.
func (rm *remote) handleLinked(ss *session, l *link, req *request, frame []byte) {
	if h, ok := linkedMethods[req.Method]; ok {
		res, err := h(rm, l, req.Params)
		if err != errForward { //nolint:errorlint // a sentinel of this file
			if len(req.ID) > 0 {
				ss.reply(req.ID, res, toRPCError(err))
			}
			return
		}
	}
	if req.Method == "leave" && len(req.ID) > 0 {
		l.mu.Lock()
		l.leaveID = req.ID
		l.mu.Unlock()
	}
	if err := rm.forward(l, frame, false); err != nil {
		rm.log.Warn("member relay: a request could not reach the room's node; the client rejoins", "node", l.node, "err", err)
		ss.Disconnect("the room's node cannot be reached: rejoin")
	}
}

// edgeMember is the link's media half, made at the first need.
func (rm *remote) edgeMember(l *link) (*room.EdgeMember, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.em != nil {
		return l.em, nil
	}
	if l.peer == "" || l.ended {
		return nil, &rpcError{Code: CodeNotJoined, Message: "not joined: call join first"}
	}
	em, err := rm.srv.rooms.NewEdgeMember(l.roomID, l.peer, l.ss)
	if err != nil {
		return nil, err
	}
	l.em = em
	return em, nil
}

func (rm *remote) edgeCreateTransport(l *link, params json.RawMessage) (any, error) {
	var p struct {
		Direction string `json:"direction"`
	}
	if err := decodeParams(params, &p); err != nil || p.Direction != "recv" {
		return nil, errForward // a send transport is the origin's (and so are bad params)
	}
	em, err := rm.edgeMember(l)
	if err != nil {
		return nil, err
	}
	id, err := em.CreateRecv()
	if err != nil {
		return nil, err
	}
	return map[string]any{"transportId": id, "direction": p.Direction}, nil
}

func (rm *remote) edgeSubscribe(l *link, params json.RawMessage) (any, error) {
	var p struct {
		ProducerID string `json:"producerId"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("producerId", p.ProducerID); err != nil {
		return nil, err
	}
	em, err := rm.edgeMember(l)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(rm.ctx, rm.opt.AnswerTimeout)
	defer cancel()
	return em.Subscribe(ctx, p.ProducerID)
}

func edgeConsumerCall(f func(em *room.EdgeMember, id string) error) func(*remote, *link, json.RawMessage) (any, error) {
	return func(rm *remote, l *link, params json.RawMessage) (any, error) {
		var p struct {
			ConsumerID string `json:"consumerId"`
		}
		if err := decodeParams(params, &p); err != nil {
			return nil, err
		}
		if err := required("consumerId", p.ConsumerID); err != nil {
			return nil, err
		}
		em, err := rm.edgeMember(l)
		if err != nil {
			return nil, err
		}
		return nil, f(em, p.ConsumerID)
	}
}

func (rm *remote) edgeSetLayers(l *link, params json.RawMessage) (any, error) {
	var p struct {
		ConsumerID   string `json:"consumerId"`
		SpatialLayer *int   `json:"spatialLayer"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("consumerId", p.ConsumerID); err != nil {
		return nil, err
	}
	if p.SpatialLayer == nil {
		return nil, errParams(`"spatialLayer" is required`)
	}
	em, err := rm.edgeMember(l)
	if err != nil {
		return nil, err
	}
	return nil, em.SetPreferredLayer(p.ConsumerID, *p.SpatialLayer)
}

// localTransport is the edge member when transportId names its receive
// transport here; errForward when it names another (the origin's).
func (rm *remote) localTransport(l *link, params json.RawMessage, v any, id *string) (*room.EdgeMember, error) {
	if err := decodeParams(params, v); err != nil {
		return nil, errForward
	}
	l.mu.Lock()
	em := l.em
	l.mu.Unlock()
	if em == nil || !em.Owns(*id) {
		return nil, errForward
	}
	return em, nil
}

func (rm *remote) edgeTransportAnswer(l *link, params json.RawMessage) (any, error) {
	var p struct {
		TransportID string `json:"transportId"`
		SDP         string `json:"sdp"`
	}
	em, err := rm.localTransport(l, params, &p, &p.TransportID)
	if err != nil {
		return nil, err
	}
	if err := required("sdp", p.SDP); err != nil {
		return nil, err
	}
	return nil, em.TransportAnswer(p.TransportID, p.SDP)
}

func (rm *remote) edgeRestartICE(l *link, params json.RawMessage) (any, error) {
	var p struct {
		TransportID string `json:"transportId"`
	}
	em, err := rm.localTransport(l, params, &p, &p.TransportID)
	if err != nil {
		return nil, err
	}
	return nil, em.RestartICE(p.TransportID)
}

func (rm *remote) edgeICECandidate(l *link, params json.RawMessage) (any, error) {
	var p struct {
		TransportID string `json:"transportId"`
		Candidate   *struct {
			Candidate        string  `json:"candidate"`
			SDPMid           *string `json:"sdpMid"`
			SDPMLineIndex    *uint16 `json:"sdpMLineIndex"`
			UsernameFragment *string `json:"usernameFragment"`
		} `json:"candidate"`
	}
	em, err := rm.localTransport(l, params, &p, &p.TransportID)
	if err != nil {
		return nil, err
	}
	var c *room.ICECandidate
	if p.Candidate != nil {
		c = &room.ICECandidate{Candidate: p.Candidate.Candidate, SDPMid: p.Candidate.SDPMid, SDPMLineIndex: p.Candidate.SDPMLineIndex, UsernameFragment: p.Candidate.UsernameFragment}
	}
	return nil, em.AddICECandidate(p.TransportID, c)
}

// ---- Origin: the room here, the socket on another node.

// atOrigin handles an edge's request frame or bye for a session here.
func (rm *remote) atOrigin(m remoteMsg) {
	k := remoteKey{m.From, m.Sess}
	rm.mu.Lock()
	ss := rm.sessions[k]
	rm.mu.Unlock()
	if m.Type == msgBye {
		if ss != nil {
			ss.Disconnect("") // no leave: the member waits its grace
		}
		return
	}
	if ss == nil {
		if m.Seq != 1 {
			_ = rm.send(m.From, remoteMsg{Type: msgClosed, Sess: m.Sess, Reason: "no such member session on node " + rm.opt.Bus.ID()})
			return
		}
		var reason string
		ss, reason = rm.newRemoteSession(k, m)
		if ss == nil {
			_ = rm.send(m.From, remoteMsg{Type: msgClosed, Sess: m.Sess, Reason: reason})
			return
		}
	}
	ss.remoteHear(time.Now())
	if !ss.remoteIn(m.Seq, m.Frames[0]) {
		rm.log.Warn("member relay: requests from the member's node were lost, or came too fast; closing", "edge", m.From, "session", m.Sess, "seq", m.Seq)
		ss.Disconnect("requests between nodes were lost: rejoin")
	}
}

// newRemoteSession starts the session of a member whose socket is on
// node k.node; nil and why when it cannot.
func (rm *remote) newRemoteSession(k remoteKey, m remoteMsg) (*session, string) {
	s := rm.srv
	rm.mu.Lock()
	full := len(rm.sessions) >= rm.opt.MaxMembers
	rm.mu.Unlock()
	if full {
		return nil, fmt.Sprintf("node %s serves its %d members of other nodes (--relay-max-members)", rm.opt.Bus.ID(), rm.opt.MaxMembers)
	}
	ss := &session{
		srv:    s,
		client: room.NewClient(m.Addr),
		out:    make(chan []byte, s.cfg.SendQueue),
		quit:   make(chan struct{}),
		log:    s.log.With("remote", m.Addr, "edge", k.node, "session", k.sess),
		host:   m.Host,
		rs:     &remoteSession{rm: rm, key: k, in: make(chan []byte, remoteInQueue), heard: time.Now()},
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, "node " + rm.opt.Bus.ID() + " is shutting down"
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	rm.mu.Lock()
	rm.sessions[k] = ss
	rm.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ss.runRemote()
		rm.mu.Lock()
		if rm.sessions[k] == ss {
			delete(rm.sessions, k)
		}
		rm.mu.Unlock()
		s.mu.Lock()
		delete(s.sessions, ss)
		s.mu.Unlock()
	}()
	return ss, ""
}

// remoteInQueue bounds the requests of one remote member waiting to run,
// as a socket's unread frames would.
const remoteInQueue = 64

// remoteSession is what a session whose socket is on another node has
// besides a socket's.
type remoteSession struct {
	rm  *remote
	key remoteKey
	in  chan []byte

	mu     sync.Mutex
	seqIn  uint64 // the last req received
	seqOut uint64 // the last out sent
	heard  time.Time
}

func (ss *session) remoteHear(t time.Time) {
	ss.rs.mu.Lock()
	ss.rs.heard = t
	ss.rs.mu.Unlock()
}

func (ss *session) remoteHeard() time.Time {
	ss.rs.mu.Lock()
	defer ss.rs.mu.Unlock()
	return ss.rs.heard
}

// remoteIn queues request number seq; false when one was lost before
// it or the queue is full.
func (ss *session) remoteIn(seq uint64, frame []byte) bool {
	rs := ss.rs
	rs.mu.Lock()
	ok := seq == rs.seqIn+1
	rs.seqIn = seq
	rs.mu.Unlock()
	if !ok {
		return false
	}
	select {
	case rs.in <- frame:
		return true
	case <-ss.quit:
		return true
	default:
		return false
	}
}

// runRemote is run for a member whose socket is on another node: its
// requests come from the bus, its answers and notifications go back.
func (ss *session) runRemote() {
	ss.armJoinDeadline()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		ss.remoteWriteLoop()
	}()
	for done := false; !done; {
		select {
		case <-ss.quit:
			done = true
		case f := <-ss.rs.in:
			ss.handle(f)
		}
	}
	<-writerDone
	ss.mu.Lock()
	mb := ss.member
	ss.member = nil
	ss.joinTimer.Stop()
	ss.mu.Unlock()
	if mb != nil {
		mb.Drop(ss)
	}
}

// remoteWriteLoop sends what the session writes to the member's node, in
// order, several frames a message when they queue up; when the session
// ends, what is queued and then closed.
func (ss *session) remoteWriteLoop() {
	rs := ss.rs
	for {
		select {
		case f := <-ss.out:
			ss.remoteFlush(f)
		case <-ss.quit:
			for {
				select {
				case f := <-ss.out:
					ss.remoteFlush(f)
					continue
				default:
				}
				break
			}
			reason := ss.reason
			if reason == "" {
				reason = "session ended"
			}
			_ = rs.rm.out.post(rs.key.node, remoteMsg{Type: msgClosed, Sess: rs.key.sess, Reason: reason})
			return
		}
	}
}

// remoteFlush sends first and whatever else is queued now, in as few
// messages as the size limit allows.
func (ss *session) remoteFlush(first []byte) {
	rs := ss.rs
	budget := rs.rm.opt.MaxMessage - 256 // the envelope
	frames := []json.RawMessage{first}
	size := len(first)
	if size > budget {
		rs.rm.log.Error("member relay: a message is larger than the bus allows; closing", "edge", rs.key.node, "session", rs.key.sess, "bytes", size, "limit", rs.rm.opt.MaxMessage)
		ss.Disconnect(fmt.Sprintf("a message of %d bytes is over --relay-member-max-message", size))
		return
	}
	for len(frames) < maxFrames {
		select {
		case f := <-ss.out:
			if size+len(f)+1 > budget {
				ss.remoteSend(frames)
				frames, size = nil, 0
				if len(f) > budget {
					ss.Disconnect(fmt.Sprintf("a message of %d bytes is over --relay-member-max-message", len(f)))
					return
				}
			}
			frames = append(frames, f)
			size += len(f) + 1
			continue
		default:
		}
		break
	}
	ss.remoteSend(frames)
}

func (ss *session) remoteSend(frames []json.RawMessage) {
	rs := ss.rs
	rs.mu.Lock()
	rs.seqOut++
	seq := rs.seqOut
	rs.mu.Unlock()
	err := rs.rm.out.post(rs.key.node, remoteMsg{Type: msgOut, Sess: rs.key.sess, Seq: seq, Frames: frames})
	if err != nil {
		// The edge sees the gap and has its client rejoin.
		rs.rm.log.Warn("member relay: frames not sent to the member's node", "edge", rs.key.node, "session", rs.key.sess, "frames", len(frames), "err", err)
	}
}

func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
