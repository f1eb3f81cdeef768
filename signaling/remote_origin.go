package signaling

import (
	"cmp"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/room"
)

// The origin's side of members on several nodes (remote.go): the room
// here, the member's socket on another node.

// atOrigin handles an edge's request frame or bye for a session here.
func (rm *remote) atOrigin(m remoteMsg) {
	k := remoteKey{m.From, m.Sess}
	rm.mu.Lock()
	ss := rm.sessions[k]
	rm.mu.Unlock()
	if m.Type == msgBye {
		switch {
		case ss != nil && m.Leave:
			// The edge gave up on the join: its client does not know it
			// joined, and would only come back as someone new.
			ss.rs.abandon()
			ss.Disconnect("")
		case ss != nil:
			ss.Disconnect("") // no leave: the member waits its grace
		case m.Leave:
			rm.giveUp(k)
		}
		return
	}
	if ss == nil {
		if rm.givenUpOn(k) {
			_ = rm.send(m.From, remoteMsg{Type: msgClosed, Sess: m.Sess, Reason: "the join was given up"})
			return
		}
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

// maxGivenUp bounds the sessions remembered as given up (each for a TTL).
const maxGivenUp = 10000

// giveUp remembers that k's edge gave up on its join before its request
// came: a request that comes later must not make a member.
func (rm *remote) giveUp(k remoteKey) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if len(rm.givenUp) < maxGivenUp {
		rm.givenUp[k] = time.Now().Add(rm.opt.TTL)
	}
}

func (rm *remote) givenUpOn(k remoteKey) bool {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	_, ok := rm.givenUp[k]
	return ok
}

// remoteClient is one edge socket's limits at the origin; rm.mu guards it.
type remoteClient struct {
	c     *room.Client
	users int       // sessions using it now
	until time.Time // kept until then once unused
}

// Bounds of the sockets' limits kept at an origin: how many, and for how
// long once unused (a wrong-password budget refills within a minute by
// default; an hour covers any window an operator sets, and the socket
// itself).
const (
	maxRemoteClients = 100000
	remoteClientKeep = time.Hour
)

// clientFor is the limits of socket conn of edge node (a fresh one when
// conn is empty or too many are kept); done gives it back.
func (rm *remote) clientFor(node, conn, addr string) (c *room.Client, done func()) {
	if conn == "" {
		return room.NewClient(addr), func() {}
	}
	k := remoteKey{node, conn}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rc := rm.clients[k]
	if rc == nil {
		if len(rm.clients) >= maxRemoteClients {
			return room.NewClient(addr), func() {}
		}
		rc = &remoteClient{c: room.NewClient(addr)}
		rm.clients[k] = rc
	}
	rc.users++
	return rc.c, func() {
		rm.mu.Lock()
		defer rm.mu.Unlock()
		rc.users--
		rc.until = time.Now().Add(remoteClientKeep)
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
	client, release := rm.clientFor(k.node, m.Conn, m.Addr)
	ss := &session{
		srv:    s,
		client: client,
		out:    make(chan []byte, s.cfg.SendQueue),
		quit:   make(chan struct{}),
		log:    s.log.With("remote", m.Addr, "edge", k.node, "session", k.sess),
		host:   m.Host,
		rs:     &remoteSession{rm: rm, key: k, in: make(chan []byte, remoteInQueue), heard: time.Now()},
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		release()
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
		defer release()
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

	mu        sync.Mutex
	seqIn     uint64 // the last req received
	seqOut    uint64 // the last out sent
	heard     time.Time
	abandoned bool   // the edge gave up on the join: the member leaves, no grace
	hangup    string // the session closes the member's socket, and why
}

// hangUp says the session will close its member's socket (reason), even
// if the edge ends the session first.
func (rs *remoteSession) hangUp(reason string) {
	rs.mu.Lock()
	rs.hangup = reason
	rs.mu.Unlock()
}

func (rs *remoteSession) abandon() {
	rs.mu.Lock()
	rs.abandoned = true
	rs.mu.Unlock()
}

func (rs *remoteSession) wasAbandoned() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.abandoned
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
	switch {
	case mb != nil && ss.rs.wasAbandoned() && mb.Attached(ss):
		mb.Leave()
	case mb != nil:
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
			rs.mu.Lock()
			reason := cmp.Or(ss.reason, rs.hangup)
			rs.mu.Unlock()
			hangup := reason != ""
			if reason == "" {
				reason = "session ended"
			}
			_ = rs.rm.out.post(rs.key.node, remoteMsg{Type: msgClosed, Sess: rs.key.sess, Reason: reason, Hangup: hangup})
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
