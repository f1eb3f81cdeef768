package room

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// In a cluster a room's party state — chat history, playback, queue, and
// its members with their roles — is kept in the cluster's store
// (ClusterHooks.SaveState), so that the node that takes a room over after
// its node died or drained carries on with it: the chat is there, the
// film is where it was, and the host who comes back (by the resume token
// of their last join, or their token's identity) is host again rather
// than whoever reconnected first. The members come back "away", each for
// the grace period, exactly as after a dropped connection on one node.
//
// Every party event is broadcast, so the room marks its state dirty in
// broadcast and one writer per room saves the newest snapshot: writes
// coalesce, and none is made under the room's locks.

// roomState is the saved party state; Version numbers the format.
type roomState struct {
	Version  int           `json:"v"`
	Chat     []ChatMessage `json:"chat"`
	ChatSeq  int64         `json:"chatSeq"`
	Play     PlaybackState `json:"play"`
	LoadVer  int64         `json:"loadVer"`
	Queue    []QueueItem   `json:"queue"`
	QueueSeq int           `json:"queueSeq"`
	Members  []stateMember `json:"members"` // in join order
}

// stateMember is a member as the state keeps it: never its resume token,
// only the token's hash.
type stateMember struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Identity string    `json:"identity,omitempty"`
	Role     string    `json:"role"`
	Resume   string    `json:"resume"` // hex SHA-256 of the resume token
	JoinedAt time.Time `json:"joinedAt"`
}

const stateVersion = 1

func resumeSum(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// resumes reports whether token is the member's resume token.
func (mb *Member) resumes(token string) bool {
	got := resumeSum(token)
	return subtle.ConstantTimeCompare(got[:], mb.resumeSum[:]) == 1
}

// stateWriter saves a room's state after each change until stopped.
type stateWriter struct {
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// startStateWriter runs the room's writer when the cluster keeps state.
func (r *Room) startStateWriter() {
	if r.m.cfg.Cluster.SaveState == nil {
		return
	}
	w := &stateWriter{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	r.state = w
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-w.kick:
			}
			b, err := json.Marshal(r.snapshotState())
			if err == nil {
				err = r.m.cfg.Cluster.SaveState(r.id, b)
			}
			if err != nil {
				// The next change writes it all again; meanwhile a
				// takeover would find the state a change behind.
				r.log.Warn("room state not saved", "err", err)
			}
		}
	}()
}

// stateChanged marks the state for saving; it never blocks.
func (r *Room) stateChanged() {
	if r.state == nil {
		return
	}
	select {
	case r.state.kick <- struct{}{}:
	default:
	}
}

// stopState stops the writer (a change being written finishes first);
// drop also deletes the saved state: the room ended for good here, not
// on its way to another node.
func (r *Room) stopState(drop bool) {
	w := r.state
	if w == nil {
		return
	}
	r.stateOnce.Do(func() { close(w.stop) })
	<-w.done
	if drop && r.m.cfg.Cluster.DropState != nil {
		if err := r.m.cfg.Cluster.DropState(r.id); err != nil {
			r.log.Warn("room state not deleted (it expires by itself)", "err", err)
		}
	}
}

// snapshotState copies what a takeover needs.
func (r *Room) snapshotState() roomState {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	st := roomState{
		Version: stateVersion, Chat: r.chat.list(), ChatSeq: r.chat.seq,
		Play: r.playbackLocked(), LoadVer: r.loadVer, Queue: r.queue.list(), QueueSeq: r.queue.seq,
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range r.order {
		mb := r.members[id]
		if mb == nil {
			continue
		}
		mb.mu.Lock()
		if !mb.gone {
			st.Members = append(st.Members, stateMember{ID: mb.id, Name: mb.name, Identity: mb.identity, Role: mb.role,
				Resume: hex.EncodeToString(mb.resumeSum[:]), JoinedAt: mb.joinedAt})
		}
		mb.mu.Unlock()
	}
	return st
}

// restoreState carries on a party from its saved state, once, into a
// room that nobody has joined here yet.
func (r *Room) restoreState(b []byte) error {
	var st roomState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("room %s: damaged state: %w", r.id, err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("room %s: state of version %d, want %d", r.id, st.Version, stateVersion)
	}
	r.evMu.Lock()
	defer r.evMu.Unlock()
	r.mu.Lock()
	if r.started || r.closed {
		r.mu.Unlock()
		return nil // someone got here first: theirs is the live state
	}
	keep := r.chat.max
	msgs := st.Chat
	if len(msgs) > keep {
		msgs = msgs[len(msgs)-keep:]
	}
	r.chat = chatLog{max: keep, ring: append([]ChatMessage(nil), msgs...), seq: st.ChatSeq}
	if st.Play.Rate != 0 {
		r.play = st.Play
		if r.play.WaitingFor == nil {
			r.play.WaitingFor = []string{}
		}
	}
	r.loadVer = st.LoadVer
	r.queue = playQueue{items: st.Queue, seq: st.QueueSeq}
	grace := r.m.cfg.Grace
	if grace > 0 {
		grace = max(grace, r.m.cfg.Cluster.TakeoverGrace)
	}
	restored := 0
	for _, sm := range st.Members {
		if grace <= 0 || !validRole(sm.Role) || sm.ID == "" || r.members[sm.ID] != nil {
			continue
		}
		sum, err := hex.DecodeString(sm.Resume)
		if err != nil || len(sum) != sha256.Size {
			continue
		}
		mb := &Member{id: sm.ID, name: sm.Name, room: r, n: detached{}, role: sm.Role, identity: sm.Identity, joinedAt: sm.JoinedAt, away: true}
		copy(mb.resumeSum[:], sum)
		if sm.Identity != "" {
			mb.person = "id:" + sm.Identity
		}
		mb.awayN = 1
		mb.awayT = r.m.afterFunc(grace, func() { mb.graceOver(1) })
		r.members[mb.id] = mb
		r.order = append(r.order, mb.id)
		restored++
	}
	if restored > 0 {
		r.started = true
	}
	r.mu.Unlock()
	// Everyone is away: as in a room whose members all dropped, the film
	// waits where it was for those who come back.
	r.pauseEmptyLocked()
	r.log.Info("room state taken over", "chat", len(msgs), "members", restored, "playing", r.play.URL != "")
	return nil
}

// detached is the connection of a member restored away: nothing to tell.
type detached struct{}

func (detached) Notify(string, any) {}
func (detached) Disconnect(string)  {}
