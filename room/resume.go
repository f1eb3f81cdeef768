package room

import (
	"time"
)

// A member is a person, not a connection. When its connection drops the
// member stays "away" for the grace period (Config.Grace): its role,
// name and place in the hand-over order wait for the same person to come
// back, proven by the resume token of its join or by its join token's
// identity. Its transports close at once (their producers with them), so
// a sharer publishes again when it is back. A room whose members are all
// away stays open, with its chat and playback, until the last grace
// period ends.

// Timer is a timer the manager started; Stop as time.Timer's.
type Timer interface {
	Stop() bool
}

// afterFunc runs f after d on the manager's clock.
func (m *Manager) afterFunc(d time.Duration, f func()) Timer {
	if m.cfg.AfterFunc != nil {
		return m.cfg.AfterFunc(d, f)
	}
	return time.AfterFunc(d, f)
}

// isAway reports whether the member's connection dropped.
func (mb *Member) isAway() bool {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.away
}

// Attached reports whether n is the member's current connection: a
// connection the member was resumed away from may do nothing more.
func (mb *Member) Attached(n Notifier) bool {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return !mb.gone && mb.n == n
}

// findResumeLocked finds the member a join comes back to: the one whose
// resume token it gives (byToken false), or the one of its token
// identity. r.mu is held.
func (r *Room) findResumeLocked(resume string, claims *TokenClaims) (mb *Member, byToken bool) {
	if resume != "" {
		for _, mb := range r.members {
			if mb.resumes(resume) {
				return mb, false
			}
		}
	}
	if claims != nil {
		if mb := r.withIdentityLocked(claims.Identity); mb != nil {
			return mb, true
		}
	}
	return nil, false
}

// tryResume hands an existing member to the new connection n when the
// join proves it is the same person; nil, nil, nil when it is not one.
// A resumed member keeps its peer id, role and name; the connection it
// had (if still open) is told it was replaced and closed, and its
// transports close.
func (m *Manager) tryResume(r *Room, o JoinOptions, n Notifier, claims *TokenClaims, cl *Client) (*Member, *JoinResult, error) {
	r.evMu.Lock()
	r.mu.Lock()
	mb, byToken := r.findResumeLocked(o.Resume, claims)
	if mb == nil || r.closed {
		r.mu.Unlock()
		r.evMu.Unlock()
		return nil, nil, nil
	}
	if byToken && r.settings.Locked && !o.Admin {
		// An invite token can be passed on; the resume token of the
		// connection itself cannot. A lock keeps a token's second
		// connection out and the member undisturbed.
		r.mu.Unlock()
		r.evMu.Unlock()
		return nil, nil, forbidden(ReasonLocked, "room %q is locked", r.id)
	}
	mb.mu.Lock()
	old, wasAway := mb.n, mb.away
	send, recv := mb.send, mb.recv
	mb.n, mb.send, mb.recv = n, nil, nil
	mb.away = false
	mb.awayN++
	if mb.awayT != nil {
		mb.awayT.Stop()
		mb.awayT = nil
	}
	// mb.cl stays: a reconnect does not refill the person's budgets. A
	// member restored from a cluster's state has none yet, nor the token.
	if mb.cl == nil {
		mb.cl = cl
		if mb.person == "" && cl.addr != "" {
			mb.person = "ip:" + cl.addr
		}
	}
	if mb.resume == "" {
		mb.resume = o.Resume
		if mb.resume == "" || !mb.resumes(mb.resume) {
			mb.resume = randHex(16)
			mb.resumeSum = resumeSum(mb.resume)
		}
	}
	mb.mu.Unlock()
	peers := make([]PeerInfo, 0, len(r.order))
	for _, pid := range r.order {
		if p := r.members[pid]; p != mb {
			peers = append(peers, p.info())
		}
	}
	info := r.infoLocked()
	r.mu.Unlock()
	// The old connection's media goes first, so the join result lists
	// only what is live; its producers' closing is broadcast.
	if recv != nil {
		recv.Close()
	}
	if send != nil {
		send.Close()
	}
	res := m.joinResult(r, mb, peers, info)
	res.Resumed = true
	if wasAway {
		r.broadcast(mb.id, "peerUpdated", map[string]any{"peer": mb.info()})
	}
	r.evMu.Unlock()
	if !wasAway && old != n {
		const why = "joined again from another connection"
		old.Notify("disconnected", map[string]any{"reason": why})
		old.Disconnect(why)
	}
	res.Producers = r.Producers()
	r.log.Info("peer resumed", "peer", mb.id, "role", mb.Role(), "wasAway", wasAway)
	return mb, res, nil
}

// Drop is called when the member's connection n ended without a leave
// (closed, timed out, its media failed). The member goes away for the
// grace period, or leaves at once when there is none. A connection the
// member has been resumed away from changes nothing.
func (mb *Member) Drop(n Notifier) {
	r := mb.room
	grace := r.m.cfg.Grace
	mb.mu.Lock()
	if mb.gone || mb.away || mb.n != n {
		mb.mu.Unlock()
		return
	}
	if grace <= 0 {
		mb.mu.Unlock()
		mb.Leave()
		return
	}
	mb.away = true
	mb.awayN++
	gen := mb.awayN
	send, recv := mb.send, mb.recv
	mb.send, mb.recv = nil, nil
	wasBuffering := mb.buffering
	mb.buffering, mb.bufPos, mb.stalled = false, nil, false
	mb.awayT = r.m.afterFunc(grace, func() { mb.graceOver(gen) })
	mb.mu.Unlock()
	if recv != nil {
		recv.Close()
	}
	if send != nil {
		send.Close() // others get producerClosed
	}
	r.log.Info("peer away", "peer", mb.id, "grace", grace)
	r.evMu.Lock()
	r.broadcast(mb.id, "peerUpdated", map[string]any{"peer": mb.info()})
	if r.nobodyHere() {
		// As in an empty room: those who come back find the video
		// where they lost it.
		r.pauseEmptyLocked()
	} else if wasBuffering {
		r.evaluateWaitLocked()
	}
	r.evMu.Unlock()
}

// nobodyHere reports whether every member is away.
func (r *Room) nobodyHere() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, mb := range r.members {
		if !mb.isAway() {
			return false
		}
	}
	return true
}

// graceOver removes a member still away when its grace period ends.
func (mb *Member) graceOver(gen int) {
	mb.mu.Lock()
	stale := mb.gone || !mb.away || mb.awayN != gen
	mb.mu.Unlock()
	if !stale {
		mb.removeAs(leftTimeout, "")
	}
}
