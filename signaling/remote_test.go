package signaling_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/room"
	"github.com/matinee-dev/matinee/sfu"
	"github.com/matinee-dev/matinee/signaling"
)

// memBus is the cluster's party channels in memory: one inbox per node,
// and a hook that drops chosen messages, as Redis pub/sub may.
type memBus struct {
	mu      sync.Mutex
	inboxes map[string]chan []byte
	drop    func(to string, msg []byte) bool
}

func (b *memBus) inbox(node string) chan []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inboxes == nil {
		b.inboxes = map[string]chan []byte{}
	}
	if b.inboxes[node] == nil {
		b.inboxes[node] = make(chan []byte, 1024)
	}
	return b.inboxes[node]
}

func (b *memBus) send(ctx context.Context, to string, msg []byte) error {
	b.mu.Lock()
	drop := b.drop
	b.mu.Unlock()
	if drop != nil && drop(to, msg) {
		return nil
	}
	select {
	case b.inbox(to) <- msg:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type nodeBus struct {
	id string
	b  *memBus
}

func (n nodeBus) ID() string { return n.id }

func (n nodeBus) Send(ctx context.Context, to string, msg []byte) error {
	return n.b.send(ctx, to, msg)
}

// remoteNode is one node: a worker, rooms (on b, every room is a's) and
// signaling with members on several nodes on.
type remoteNode struct {
	rooms *room.Manager
	sig   *signaling.Server
	env   *env
}

func startRemoteNode(t *testing.T, bus *memBus, id string, claim func(string, bool) error, maxMessage int, tune ...func(*signaling.RemoteOptions)) *remoteNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := sfu.NewWorker(ctx, sfu.WorkerConfig{LoopbackOnly: true})
	if err != nil {
		cancel()
		t.Fatalf("sfu worker: %v", err)
	}
	rooms := room.NewManager(ctx, w, room.Config{OpenRooms: true, Grace: time.Minute, Chat: room.ChatConfig{Rate: -1, AddrRate: -1}, Cluster: room.ClusterHooks{Claim: claim}})
	sig := signaling.New(rooms, signaling.Config{})
	// The relay's part: an edge of the room while members use it.
	var mu sync.Mutex
	edges, users := map[string]*room.Edge{}, map[string]int{}
	opt := signaling.RemoteOptions{
		Bus: nodeBus{id, bus}, Inbox: bus.inbox(id),
		Watch: func(_ context.Context, roomID, _ string) (func(), error) {
			mu.Lock()
			defer mu.Unlock()
			if edges[roomID] == nil {
				e, err := rooms.OpenEdge(roomID)
				if err != nil {
					return nil, err
				}
				edges[roomID] = e
			}
			users[roomID]++
			return func() {
				mu.Lock()
				defer mu.Unlock()
				if users[roomID]--; users[roomID] == 0 {
					edges[roomID].Close()
					delete(edges, roomID)
				}
			}, nil
		},
		Renew: 100 * time.Millisecond, TTL: 400 * time.Millisecond,
		MaxMessage: maxMessage, MaxMembers: 10,
	}
	for _, f := range tune {
		f(&opt)
	}
	sig.StartRemote(ctx, opt)
	return &remoteNode{rooms: rooms, sig: sig, env: serveSignaling(t, sig, rooms, w, cancel)}
}

type joined struct {
	PeerID      string `json:"peerId"`
	ResumeToken string `json:"resumeToken"`
	Resumed     bool   `json:"resumed"`
	Peers       []struct {
		Name string `json:"name"`
	} `json:"peers"`
	Chat []struct {
		Text string `json:"text"`
	} `json:"chat"`
}

// TestRemoteMembers: two nodes in one process on an in-memory bus. Bo
// joins a's room through b and stays there: presence and chat go both
// ways. A message from a to b is lost: b sees the gap in the numbering
// and closes Bo's socket; Bo resumes through b as the same member, with
// the whole chat. A join result larger than the bus's limit sends the
// joiner to a (1010) rather than failing; Bo leaves, and a drops the
// remote member at once. goleak (TestMain) covers every goroutine.
func TestRemoteMembers(t *testing.T) {
	bus := &memBus{}
	const maxMessage = 4096
	a := startRemoteNode(t, bus, "a", nil, maxMessage)
	moved := func(id string, _ bool) error {
		return &room.Error{Kind: room.KindMoved, Message: "room " + id + " is on node a", Reason: room.ReasonMoved, Node: "a", URL: "https://a.example"}
	}
	b := startRemoteNode(t, bus, "b", moved, maxMessage)

	ana := a.env.dial(t)
	var anaJ joined
	ana.mustCall("join", map[string]any{"room": "film", "name": "Ana"}, &anaJ)
	bo := b.env.dial(t)
	var boJ joined
	bo.mustCall("join", map[string]any{"room": "film", "name": "Bo"}, &boJ)
	if len(boJ.Peers) != 1 || boJ.Peers[0].Name != "Ana" {
		t.Fatalf("Bo's join through b lists %+v, want Ana", boJ.Peers)
	}
	if _, here := b.rooms.Room("film"); here {
		t.Fatal("b opened the room itself")
	}
	ana.notificationWhere("peerJoined", func(p json.RawMessage) bool { return strings.Contains(string(p), `"Bo"`) })
	if st := b.sig.RemoteStats(); st.Links != 1 {
		t.Fatalf("b: %+v, want one link", st)
	}
	if st := a.sig.RemoteStats(); st.Remote != 1 {
		t.Fatalf("a: %+v, want one remote member", st)
	}
	bo.mustCall("chat", map[string]any{"text": "from b"}, nil)
	ana.notificationWhere("chat", func(p json.RawMessage) bool { return strings.Contains(string(p), "from b") })
	ana.mustCall("chat", map[string]any{"text": "from a"}, nil)
	bo.notificationWhere("chat", func(p json.RawMessage) bool { return strings.Contains(string(p), "from a") })

	// The message carrying "lost" to b never arrives; the next one shows
	// the gap.
	bus.mu.Lock()
	bus.drop = func(to string, msg []byte) bool {
		return to == "b" && strings.Contains(string(msg), `"type":"out"`) && strings.Contains(string(msg), "lost")
	}
	bus.mu.Unlock()
	ana.mustCall("chat", map[string]any{"text": "lost"}, nil)
	ana.mustCall("chat", map[string]any{"text": "after"}, nil)
	ce := bo.closedWith(5 * time.Second)
	if !strings.Contains(ce.Text, "lost") {
		t.Fatalf("Bo's socket closed with %d %q, want the loss named", ce.Code, ce.Text)
	}
	bus.mu.Lock()
	bus.drop = nil
	bus.mu.Unlock()
	bo2 := b.env.dial(t)
	var again joined
	bo2.mustCall("join", map[string]any{"room": "film", "name": "Bo", "resume": boJ.ResumeToken}, &again)
	var texts []string
	for _, m := range again.Chat {
		texts = append(texts, m.Text)
	}
	if !again.Resumed || again.PeerID != boJ.PeerID || strings.Join(texts, ",") != "from b,from a,lost,after" {
		t.Fatalf("Bo back through b: resumed %v, peer %s (was %s), chat %v", again.Resumed, again.PeerID, boJ.PeerID, texts)
	}

	// The history grows past what one message between nodes may carry:
	// a new member's join result would not fit; it is sent to a.
	long := strings.Repeat("x", 1000)
	for range 3 {
		ana.mustCall("chat", map[string]any{"text": long}, nil)
	}
	cy := b.env.dial(t)
	e := cy.callErr("join", map[string]any{"room": "film", "name": "Cy"}, signaling.CodeMoved)
	if e.Data["url"] != "https://a.example" {
		t.Fatalf("Cy's refused join: %+v, want the move to a", e)
	}

	// Bo leaves through b: a drops the member and its session.
	bo2.mustCall("leave", nil, nil)
	ana.notificationWhere("peerLeft", func(p json.RawMessage) bool {
		return strings.Contains(string(p), boJ.PeerID) && strings.Contains(string(p), `"left"`)
	})
	waitFor(t, "a and b forget Bo's session", func() bool {
		return a.sig.RemoteStats().Remote == 0 && b.sig.RemoteStats().Links == 0
	})
	if !bo2.isOpen() {
		t.Fatal("Bo's socket closed after a leave")
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRemoteJoinOriginSilent: a join through b that a does not answer
// (its messages lost, as when a was killed) is sent to a (1010) only
// while a still renews its place in the cluster; once it stopped, the
// joiner is told to retry (1011, node_unavailable, retryAfterMs) rather
// than sent to a dead node.
func TestRemoteJoinOriginSilent(t *testing.T) {
	bus := &memBus{}
	a := startRemoteNode(t, bus, "a", nil, 1<<20)
	moved := func(id string, _ bool) error {
		return &room.Error{Kind: room.KindMoved, Message: "room " + id + " is on node a", Reason: room.ReasonMoved, Node: "a", URL: "https://a.example"}
	}
	var mu sync.Mutex
	aAnswering := true
	b := startRemoteNode(t, bus, "b", moved, 1<<20, func(o *signaling.RemoteOptions) {
		o.AnswerTimeout = 300 * time.Millisecond
		o.Renew, o.TTL = time.Second, 4*time.Second // as in TestRemoteJoinGivenUp
		o.Answering = func(_ context.Context, node string) bool {
			mu.Lock()
			defer mu.Unlock()
			return node != "a" || aAnswering
		}
	})
	ana := a.env.dial(t)
	ana.mustCall("join", map[string]any{"room": "film", "name": "Ana"}, nil)
	bus.mu.Lock()
	bus.drop = func(to string, _ []byte) bool { return to == "a" }
	bus.mu.Unlock()

	bo := b.env.dial(t)
	e := bo.callErr("join", map[string]any{"room": "film", "name": "Bo"}, signaling.CodeMoved)
	if e.Data["url"] != "https://a.example" {
		t.Fatalf("unanswered join while a renews: %+v, want the move to a", e)
	}
	mu.Lock()
	aAnswering = false
	mu.Unlock()
	e = bo.callErr("join", map[string]any{"room": "film", "name": "Bo"}, signaling.CodeUnavailable)
	if e.Data["reason"] != room.ReasonNodeDown || e.Data["retryAfterMs"] == nil || e.Data["url"] != nil {
		t.Fatalf("unanswered join once a stopped: %+v, want a retry without a move", e)
	}
	if !bo.isOpen() {
		t.Fatal("Bo's socket closed after a refused join")
	}
	waitFor(t, "b forgets the links", func() bool { return b.sig.RemoteStats().Links == 0 })
}

// TestRemoteJoinOriginDiesWhileJoining: a join sent to an origin that
// dies before answering (its record still fresh when the join went) is
// told to retry as soon as the origin stops renewing, not after the
// whole answer timeout (a minute here): the member must be back in time
// to keep its place once a live node takes the room.
func TestRemoteJoinOriginDiesWhileJoining(t *testing.T) {
	bus := &memBus{}
	a := startRemoteNode(t, bus, "a", nil, 1<<20)
	moved := func(id string, _ bool) error {
		return &room.Error{Kind: room.KindMoved, Message: "room " + id + " is on node a", Reason: room.ReasonMoved, Node: "a", URL: "https://a.example"}
	}
	var mu sync.Mutex
	var joinSent time.Time
	b := startRemoteNode(t, bus, "b", moved, 1<<20, func(o *signaling.RemoteOptions) {
		o.AnswerTimeout = time.Minute
		// Links are checked for silence less often than joins (as with
		// the default lease times): the join's own check must answer it.
		o.Renew, o.TTL = time.Second, 4*time.Second
		o.Answering = func(_ context.Context, node string) bool {
			mu.Lock()
			defer mu.Unlock()
			// a dies as the join leaves: its record goes stale 300 ms on.
			return node != "a" || joinSent.IsZero() || time.Since(joinSent) < 300*time.Millisecond
		}
	})
	ana := a.env.dial(t)
	ana.mustCall("join", map[string]any{"room": "film", "name": "Ana"}, nil)
	bus.mu.Lock()
	bus.drop = func(to string, msg []byte) bool {
		if to == "a" && strings.Contains(string(msg), `"type":"req"`) {
			mu.Lock()
			if joinSent.IsZero() {
				joinSent = time.Now()
			}
			mu.Unlock()
			return true
		}
		return false
	}
	bus.mu.Unlock()

	bo := b.env.dial(t)
	start := time.Now()
	e := bo.callErr("join", map[string]any{"room": "film", "name": "Bo"}, signaling.CodeUnavailable)
	if e.Data["reason"] != room.ReasonNodeDown || e.Data["retryAfterMs"] == nil {
		t.Fatalf("join to an origin that died: %+v, want a retry", e)
	}
	t.Logf("answered 1011 %s after the join", time.Since(start).Round(time.Millisecond))
	waitFor(t, "b forgets the link", func() bool { return b.sig.RemoteStats().Links == 0 })
}

// TestRemoteJoinGivenUp: an edge that gives up on a join (no answer in
// time) leaves no member behind at the origin. Bo's join runs on a but
// its answer is lost: b answers Bo itself, and a's member leaves at once
// (peerLeft "left"), not after the grace (a minute here). Cy's join
// request reaches a only after b gave up on it: a refuses it, and Ana
// never sees Cy, while Dee, after, joins as usual.
func TestRemoteJoinGivenUp(t *testing.T) {
	bus := &memBus{}
	a := startRemoteNode(t, bus, "a", nil, 1<<20)
	moved := func(id string, _ bool) error {
		return &room.Error{Kind: room.KindMoved, Message: "room " + id + " is on node a", Reason: room.ReasonMoved, Node: "a", URL: "https://a.example"}
	}
	b := startRemoteNode(t, bus, "b", moved, 1<<20, func(o *signaling.RemoteOptions) {
		o.AnswerTimeout = 300 * time.Millisecond
		// b hears nothing from a on Bo's link: with links swept for
		// silence sooner than joins give up, the sweep (400 ms here)
		// could close Bo's socket before its join is answered on a
		// loaded machine. As with the default lease times, it comes later.
		o.Renew, o.TTL = time.Second, 4*time.Second
	})
	ana := a.env.dial(t)
	ana.mustCall("join", map[string]any{"room": "film", "name": "Ana"}, nil)
	setDrop := func(f func(to string, msg []byte) bool) {
		bus.mu.Lock()
		bus.drop = f
		bus.mu.Unlock()
	}

	setDrop(func(to string, msg []byte) bool {
		return to == "b" && (strings.Contains(string(msg), `"type":"out"`) || strings.Contains(string(msg), `"type":"batch"`))
	})
	bo := b.env.dial(t)
	bo.callErr("join", map[string]any{"room": "film", "name": "Bo"}, signaling.CodeMoved)
	ana.notificationWhere("peerJoined", func(p json.RawMessage) bool { return strings.Contains(string(p), `"Bo"`) })
	left := ana.notificationWhere("peerLeft", func(p json.RawMessage) bool { return true })
	if !strings.Contains(string(left), `"left"`) {
		t.Fatalf("Bo's given-up join left %s, want reason left", left)
	}
	waitFor(t, "a drops Bo's session", func() bool { return a.sig.RemoteStats().Remote == 0 })

	var held [][]byte
	setDrop(func(to string, msg []byte) bool {
		if to == "a" && strings.Contains(string(msg), `"type":"req"`) {
			held = append(held, msg) // under bus.mu
			return true
		}
		return false
	})
	cy := b.env.dial(t)
	cy.callErr("join", map[string]any{"room": "film", "name": "Cy"}, signaling.CodeMoved)
	bus.mu.Lock()
	late := held
	bus.drop = nil
	bus.mu.Unlock()
	if len(late) != 1 {
		t.Fatalf("%d requests held, want Cy's join", len(late))
	}
	bus.inbox("a") <- late[0] // after b's bye
	dee := b.env.dial(t)
	dee.mustCall("join", map[string]any{"room": "film", "name": "Dee"}, nil)
	ana.notificationWhere("peerJoined", func(p json.RawMessage) bool { return strings.Contains(string(p), `"Dee"`) })
	if ana.sawWhere("peerJoined", func(p json.RawMessage) bool { return strings.Contains(string(p), `"Cy"`) }) {
		t.Fatal("a made a member of Cy's join that b had given up")
	}
	if st := a.sig.RemoteStats(); st.Remote != 1 {
		t.Fatalf("a: %+v, want Dee's session only", st)
	}
}

// TestRemotePasswordsPerSocket: wrong passwords sent through another
// node count per socket, as on the room's node: one socket through b gets
// five 1005s (the per-connection budget), then 1008 too_many_attempts,
// and when it insists, its answer and then the close (1008), while a new
// socket from the same address still gets its own tries.
func TestRemotePasswordsPerSocket(t *testing.T) {
	bus := &memBus{}
	a := startRemoteNode(t, bus, "a", nil, 1<<20)
	if _, err := a.rooms.CreateRoom(room.RoomSpec{ID: "vault", Name: "vault", Password: "open sesame"}); err != nil {
		t.Fatal(err)
	}
	moved := func(id string, _ bool) error {
		return &room.Error{Kind: room.KindMoved, Message: "room " + id + " is on node a", Reason: room.ReasonMoved, Node: "a", URL: "https://a.example"}
	}
	b := startRemoteNode(t, bus, "b", moved, 1<<20)
	guess := map[string]any{"room": "vault", "name": "guesser", "password": "nope"}
	c := b.env.dial(t)
	for i := range 5 {
		if e := c.callErr("join", guess, signaling.CodeForbidden); e.Data["reason"] != room.ReasonWrongPassword {
			t.Fatalf("guess %d through b: %+v, want wrong_password", i+1, e)
		}
	}
	if e := c.callErr("join", guess, signaling.CodeRateLimited); e.Data["reason"] != "too_many_attempts" {
		t.Fatalf("6th guess through b: %+v, want too_many_attempts", e)
	}
	c.callErr("join", guess, signaling.CodeRateLimited)
	ce := c.closedWith(5 * time.Second)
	if ce.Code != 1008 || !strings.Contains(ce.Text, "too many wrong passwords") {
		t.Fatalf("insisting socket closed with %d %q, want 1008 too many wrong passwords", ce.Code, ce.Text)
	}
	other := b.env.dial(t)
	if e := other.callErr("join", guess, signaling.CodeForbidden); e.Data["reason"] != room.ReasonWrongPassword {
		t.Fatalf("a new socket's guess: %+v, want its own wrong_password", e)
	}
}
