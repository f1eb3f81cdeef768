package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/matinee-dev/matinee/room"
)

// The edge's side of members on several nodes (remote.go): a socket
// here, its room on another node.

// goRemote is join's answer when the room is on another node and this
// node can serve its member here.
type goRemote struct {
	node, room string
	moved      error
}

func (g *goRemote) Error() string { return g.moved.Error() }

// open links ss to room g.room on node g.node and forwards its join
// frame; the answer comes from the origin. An error is the join's answer:
// the member is not served here (moved there, or told to retry).
func (rm *remote) open(ss *session, g *goRemote, id json.RawMessage, frame []byte) error {
	ctx, cancel := context.WithTimeout(rm.ctx, rm.opt.AnswerTimeout)
	if rm.opt.Place != nil {
		if node, url, elsewhere := rm.opt.Place(ctx, g.room, g.node); elsewhere {
			cancel()
			rm.log.Info("member relay: member placed on another node", "room", g.room, "origin", g.node, "node", node)
			return &room.Error{Kind: room.KindMoved, Reason: room.ReasonMoved, Node: node, URL: url,
				Message: fmt.Sprintf("room %q: join at %s (node %s), which carries it", g.room, url, node)}
		}
	}
	release, err := rm.opt.Watch(ctx, g.room, g.node)
	cancel()
	if err != nil {
		answer := rm.fallback(g.room, g.node, g.moved)
		rm.log.Info("member relay: the room's media cannot be relayed here", "room", g.room, "node", g.node, "err", err, "answer", answer)
		return answer
	}
	l := &link{id: newSessionID(), node: g.node, roomID: g.room, ss: ss, moved: g.moved, release: release,
		joinID: id, heard: time.Now()}
	rm.mu.Lock()
	rm.links[l.id] = l
	rm.mu.Unlock()
	ss.mu.Lock()
	ss.link = l
	ss.mu.Unlock()
	sent := time.Now()
	l.mu.Lock()
	l.joinTimer = time.AfterFunc(min(joinCheck, rm.opt.AnswerTimeout), func() { rm.watchJoin(l, sent) })
	l.mu.Unlock()
	ss.log = ss.log.With("room", g.room, "origin", g.node, "session", l.id)
	if err := rm.forward(l, frame, true); err != nil {
		rm.unlink(l, false)
		return unavailable(g.room, g.node, fmt.Sprintf("the join could not be sent there: %v", err))
	}
	return nil
}

// fallback is the answer to a join its origin did not serve: the move
// there (1010) while the origin answers the cluster, else a retry here
// (1011): a node that stopped renewing is dead or cut off, and a member
// sent there would be stranded until the room's lease runs out and a
// live node (maybe this one) takes the room.
func (rm *remote) fallback(roomID, node string, moved error) error {
	if !rm.answering(node) {
		return unavailable(roomID, node, "it stopped renewing its place in the cluster")
	}
	return moved
}

// unavailable is the retryable answer to a join whose origin cannot be
// reached now.
func unavailable(roomID, node, why string) *room.Error {
	return &room.Error{
		Kind:         room.KindUnavailable,
		Message:      fmt.Sprintf("room %q: its node %s cannot be reached (%s); try again", roomID, node, why),
		Reason:       room.ReasonNodeDown,
		RetryAfterMs: int64(time.Second / time.Millisecond),
	}
}

// joinCheck is how often a join waiting for its origin's answer checks
// that the origin still renews its place in the cluster.
const joinCheck = 500 * time.Millisecond

// watchJoin gives up on l's join, as joinUnanswered, once AnswerTimeout
// has passed since it was sent or as soon as the origin stops renewing:
// a join sent just as its origin died (its record still fresh) would
// otherwise wait the whole AnswerTimeout, while the member's place in the
// room, back on a live node, runs out for want of a rejoin.
func (rm *remote) watchJoin(l *link, sent time.Time) {
	l.mu.Lock()
	waiting := l.joinID != nil && !l.ended
	l.mu.Unlock()
	if !waiting {
		return
	}
	if time.Since(sent) >= rm.opt.AnswerTimeout || !rm.answering(l.node) {
		rm.joinUnanswered(l)
		return
	}
	l.mu.Lock()
	if l.joinID != nil && !l.ended {
		l.joinTimer = time.AfterFunc(joinCheck, func() { rm.watchJoin(l, sent) })
	}
	l.mu.Unlock()
}

// answering is Options.Answering, with a deadline; true without one.
func (rm *remote) answering(node string) bool {
	if rm.opt.Answering == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(rm.ctx, time.Second)
	defer cancel()
	return rm.opt.Answering(ctx, node)
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
	l.mu.Lock()
	l.gaveUp = true // the origin may still run the join: it must not keep the member
	l.mu.Unlock()
	rm.unlink(l, true)
	answer := rm.fallback(l.roomID, l.node, l.moved)
	rm.log.Warn("member relay: the room's node did not answer a join", "room", l.roomID, "node", l.node, "answer", answer)
	l.ss.reply(id, nil, toRPCError(answer))
}

// forward sends one request frame to the origin.
func (rm *remote) forward(l *link, frame []byte, first bool) error {
	l.mu.Lock()
	l.seqOut++
	m := remoteMsg{Type: msgReq, Sess: l.id, Seq: l.seqOut, Frames: []json.RawMessage{bytes.TrimSpace(frame)}}
	l.mu.Unlock()
	if first {
		m.Addr, m.Host, m.Conn = l.ss.client.Addr(), l.ss.host, l.ss.remoteConnID()
	}
	return rm.send(l.node, m)
}

// remoteConnID is the socket's name to origins, made at first use.
func (ss *session) remoteConnID() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.connID == "" {
		ss.connID = newSessionID()
	}
	return ss.connID
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
	em, gaveUp := l.em, l.gaveUp
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
		if err := rm.send(l.node, remoteMsg{Type: msgBye, Sess: l.id, Leave: gaveUp}); err != nil {
			rm.log.Debug("member relay: bye not sent (the origin's keep check ends it)", "node", l.node, "err", err)
		}
	}
	if em != nil {
		em.Close()
	}
	l.release()
}

// atEdgeAll handles an out for each of its sessions (Also), or a closed.
func (rm *remote) atEdgeAll(m remoteMsg) {
	also := m.Also
	m.Also = nil
	rm.atEdge(m)
	for _, a := range also {
		m.Sess, m.Seq = a.Sess, a.Seq
		rm.atEdge(m)
	}
}

// atEdge handles what an origin sends about a session whose socket is here.
func (rm *remote) atEdge(m remoteMsg) {
	rm.mu.Lock()
	l := rm.links[m.Sess]
	r, wasRefused := rm.refused[m.Sess]
	rm.mu.Unlock()
	if l == nil && wasRefused && r.node == m.From && m.Type == msgClosed && m.Hangup {
		// The origin closes the socket whose join it refused (it kept
		// guessing passwords): as a socket of its own.
		r.ss.Disconnect(m.Reason)
		return
	}
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
	// The link ends before the client reads the answer that ends it: a
	// client that sends its next join at once must find the socket free
	// (else that join went to the old session, which the bye then ends).
	switch {
	case isJoin && !joined:
		rm.mu.Lock()
		if len(rm.refused) < maxRefused {
			rm.refused[l.id] = refusedLink{node: l.node, ss: l.ss, until: time.Now().Add(rm.opt.TTL)}
		}
		rm.mu.Unlock()
		rm.unlink(l, true) // refused: the socket may join again
	case isJoin:
		rm.log.Info("member relay: member of another node's room joined here", "room", l.roomID, "node", l.node, "peer", ans.Result.PeerID)
	case isLeave:
		rm.unlink(l, true)
		l.ss.armJoinDeadline()
	}
	l.ss.enqueue(f)
}

// maxRefused bounds the refused links remembered (each for a TTL).
const maxRefused = 10000

// linkedMethods are served at the edge: what the member receives. The
// others (and a transport call about a transport of the origin's) go to
// the origin.
var linkedMethods = map[string]func(rm *remote, l *link, params json.RawMessage) (any, error){
	"createTransport": (*remote).edgeCreateTransport,
	"subscribe":       (*remote).edgeSubscribe,
}

func init() {
	for name, r := range connRequests {
		if transportRequests[name] {
			linkedMethods[name] = onEdgeTransport(r)
		} else {
			linkedMethods[name] = onEdgeMember(r)
		}
	}
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

// onEdgeMember serves r for the link's edge member.
func onEdgeMember(r connRequest) func(*remote, *link, json.RawMessage) (any, error) {
	return func(rm *remote, l *link, params json.RawMessage) (any, error) {
		apply, err := r(params)
		if err != nil {
			return nil, err
		}
		em, err := rm.edgeMember(l)
		if err != nil {
			return nil, err
		}
		return nil, apply(em)
	}
}

// onEdgeTransport serves r here when its transportId names the edge
// member's receive transport, and forwards it to the origin otherwise
// (and when the params do not parse: the origin answers that).
func onEdgeTransport(r connRequest) func(*remote, *link, json.RawMessage) (any, error) {
	return func(rm *remote, l *link, params json.RawMessage) (any, error) {
		var p struct {
			TransportID string `json:"transportId"`
		}
		if err := decodeParams(params, &p); err != nil {
			return nil, errForward
		}
		l.mu.Lock()
		em := l.em
		l.mu.Unlock()
		if em == nil || !em.Owns(p.TransportID) {
			return nil, errForward
		}
		apply, err := r(params)
		if err != nil {
			return nil, err
		}
		return nil, apply(em)
	}
}
