package room

import (
	"sync"
	"testing"
	"time"
)

// fakeTimers is the grace timers' clock, moved by the test.
type fakeTimers struct {
	mu  sync.Mutex
	now time.Duration
	ts  []*fakeTimer
}

type fakeTimer struct {
	ft            *fakeTimers
	at            time.Duration
	f             func()
	stopped, done bool
}

func (t *fakeTimer) Stop() bool {
	t.ft.mu.Lock()
	defer t.ft.mu.Unlock()
	was := !t.stopped && !t.done
	t.stopped = true
	return was
}

func (ft *fakeTimers) afterFunc(d time.Duration, f func()) Timer {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	t := &fakeTimer{ft: ft, at: ft.now + d, f: f}
	ft.ts = append(ft.ts, t)
	return t
}

// advance moves the clock and runs the timers that are due, in order.
func (ft *fakeTimers) advance(d time.Duration) {
	ft.mu.Lock()
	ft.now += d
	var due []*fakeTimer
	for _, t := range ft.ts {
		if !t.stopped && !t.done && t.at <= ft.now {
			t.done = true
			due = append(due, t)
		}
	}
	ft.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

func graceManager(t *testing.T, grace time.Duration) (*Manager, *fakeTimers) {
	t.Helper()
	ft := &fakeTimers{}
	m := newManager(t, func(c *Config) {
		c.Grace = grace
		c.AfterFunc = ft.afterFunc
	})
	return m, ft
}

func join(t *testing.T, m *Manager, room string, o JoinOptions) (*Member, *JoinResult, *notes) {
	t.Helper()
	n := &notes{}
	mb, res, err := m.Join(room, o, n)
	if err != nil {
		t.Fatalf("join %s as %q: %v", room, o.Name, err)
	}
	return mb, res, n
}

func peerOf(t *testing.T, r *Room, id string) PeerInfo {
	t.Helper()
	for _, p := range r.Peers() {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("%s is not in the room: %+v", id, r.Peers())
	return PeerInfo{}
}

// A host whose connection drops is away, still host, and the same person
// coming back within the grace period is the same member: same peer id,
// role and name, nobody told it left. Its old connection can do nothing
// more.
func TestDroppedHostResumesAsHost(t *testing.T) {
	m, ft := graceManager(t, time.Minute)
	ana, ares, an := join(t, m, "party", JoinOptions{Name: "Ana"})
	_, _, bn := join(t, m, "party", JoinOptions{Name: "Bo"})
	if ares.Role != RoleHost || ares.ResumeToken == "" || ares.GraceMs != 60000 || ares.Resumed {
		t.Fatalf("first join: %+v", ares)
	}
	r := ana.Room()

	ana.Drop(an)
	if p := peerOf(t, r, ana.ID()); !p.Away || p.Role != RoleHost {
		t.Fatalf("after the drop: %+v, want away host", p)
	}
	if u := bn.last("peerUpdated"); u == nil || u["peer"].(map[string]any)["away"] != true {
		t.Fatalf("Bo was not told Ana is away: %v", bn.methods())
	}
	ft.advance(59 * time.Second)

	again, res, an2 := join(t, m, "party", JoinOptions{Name: "Ana (reloaded)", Resume: ares.ResumeToken})
	if again != ana || res.PeerID != ares.PeerID || res.Role != RoleHost || !res.Resumed || res.ResumeToken != ares.ResumeToken {
		t.Fatalf("resume: %+v", res)
	}
	if p := peerOf(t, r, ana.ID()); p.Away || p.Name != "Ana" || p.Role != RoleHost {
		t.Fatalf("after the resume: %+v", p)
	}
	if len(res.Peers) != 1 || res.Peers[0].Name != "Bo" || res.Peers[0].Role != RoleGuest {
		t.Fatalf("resumed member sees %+v", res.Peers)
	}
	for _, meth := range bn.methods() {
		if meth == "peerLeft" || meth == "peerJoined" {
			t.Fatalf("Bo was told %s: %v", meth, bn.methods())
		}
	}
	// The grace timer of the drop is stale: a minute later Ana is there.
	ft.advance(2 * time.Minute)
	if p := peerOf(t, r, ana.ID()); p.Away || p.Role != RoleHost {
		t.Fatalf("after the old grace period: %+v", p)
	}
	// The first connection is no longer attached and its end changes
	// nothing.
	if ana.Attached(an) || !ana.Attached(an2) {
		t.Fatal("the old connection still holds the member")
	}
	ana.Drop(an)
	if peerOf(t, r, ana.ID()).Away {
		t.Fatal("a stale connection's end made the member away")
	}
	if _, err := ana.Chat("back"); err != nil {
		t.Fatalf("chat after resume: %v", err)
	}
}

// A host that does not come back hands over when its grace period ends,
// and everyone is told who left and who is host now; an explicit leave
// hands over at once.
func TestHostHandsOverAfterGrace(t *testing.T) {
	m, ft := graceManager(t, time.Minute)
	ana, _, an := join(t, m, "party", JoinOptions{Name: "Ana"})
	bo, _, bn := join(t, m, "party", JoinOptions{Name: "Bo"})
	cy, _, cn := join(t, m, "party", JoinOptions{Name: "Cy"})
	r := ana.Room()
	ana.Drop(an)
	ft.advance(59 * time.Second)
	if bo.Role() != RoleGuest || peerOf(t, r, ana.ID()).Role != RoleHost {
		t.Fatal("the host role moved during the grace period")
	}
	ft.advance(time.Second)
	left := cn.last("peerLeft")
	if left == nil || left["peerId"] != ana.ID() || left["name"] != "Ana" || left["reason"] != "timeout" || left["newHost"] != bo.ID() {
		t.Fatalf("peerLeft after the grace period: %v", left)
	}
	if bo.Role() != RoleHost || len(r.Peers()) != 2 {
		t.Fatalf("after the hand-over: Bo %s, peers %+v", bo.Role(), r.Peers())
	}
	if u := bn.last("peerUpdated"); u == nil || u["peer"].(map[string]any)["role"] != RoleHost {
		t.Fatalf("Bo not told it is host: %v", bn.methods())
	}
	// Too late: the resume token names nobody now, the join is a new
	// guest.
	_, res, _ := join(t, m, "party", JoinOptions{Name: "Ana", Resume: "no-such-token"})
	if res.Resumed || res.Role != RoleGuest || res.PeerID == ana.ID() {
		t.Fatalf("late join: %+v", res)
	}

	// An explicit leave hands over without waiting.
	bo.Leave()
	left = cn.last("peerLeft")
	if left["peerId"] != bo.ID() || left["reason"] != "left" || left["newHost"] != cy.ID() || cy.Role() != RoleHost {
		t.Fatalf("explicit leave: %v, Cy %s", left, cy.Role())
	}
}

// A room whose members all dropped keeps its chat and playback for the
// grace period; they come back with their roles. After the last grace
// period ends, the room opened by link closes.
func TestRoomOutlivesOutage(t *testing.T) {
	m, ft := graceManager(t, time.Minute)
	ana, ares, an := join(t, m, "party", JoinOptions{Name: "Ana"})
	phone, pres, pn := join(t, m, "party", JoinOptions{Name: "Phone"})
	if _, err := ana.Chat("hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := ana.Playback(PlaybackCommand{Action: "load", URL: "/media/film.mp4"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ana.Playback(PlaybackCommand{Action: "play"}); err != nil {
		t.Fatal(err)
	}
	ana.Drop(an)
	if ana.Room().Playback().Paused {
		t.Fatal("the video paused while the phone is still here")
	}
	phone.Drop(pn)
	// Nobody is here: the video waits for them, as in an empty room.
	if st := ana.Room().Playback(); !st.Paused || st.URL != "/media/film.mp4" {
		t.Fatalf("playback with everyone away: %+v", st)
	}
	ft.advance(30 * time.Second)
	if _, ok := m.Room("party"); !ok {
		t.Fatal("the room closed while its members were away")
	}
	// The phone comes back first: it is still a guest, Ana still host.
	_, res, _ := join(t, m, "party", JoinOptions{Name: "Phone", Resume: pres.ResumeToken})
	if res.Role != RoleGuest || len(res.Chat) != 1 || res.Playback.URL != "/media/film.mp4" {
		t.Fatalf("phone back: role %s, chat %v, playback %+v", res.Role, res.Chat, res.Playback)
	}
	_, res, _ = join(t, m, "party", JoinOptions{Name: "Ana", Resume: ares.ResumeToken})
	if res.Role != RoleHost || !res.Resumed {
		t.Fatalf("Ana back: %+v", res)
	}

	// Gone for good: the room ends with the last grace period.
	ana.Drop(ana.notifier())
	phone.Drop(phone.notifier())
	ft.advance(time.Minute)
	if _, ok := m.Room("party"); ok {
		t.Fatal("the room stayed after every grace period ended")
	}
}

// Resuming a member whose connection is still open (a second tab with
// the same session) closes the old connection and says why.
func TestResumeReplacesOpenConnection(t *testing.T) {
	m, _ := graceManager(t, time.Minute)
	ana, ares, an := join(t, m, "party", JoinOptions{Name: "Ana"})
	_, res, _ := join(t, m, "party", JoinOptions{Name: "Ana", Resume: ares.ResumeToken})
	if !res.Resumed || res.PeerID != ana.ID() {
		t.Fatalf("resume: %+v", res)
	}
	an.mu.Lock()
	reason := an.reason
	an.mu.Unlock()
	if reason == "" || an.last("disconnected") == nil {
		t.Fatalf("the old connection was not closed: %v", an.methods())
	}
	if ana.Attached(an) {
		t.Fatal("the old connection still holds the member")
	}
}

// Without a grace period a dropped member leaves at once, as before.
func TestNoGraceLeavesAtOnce(t *testing.T) {
	m, _ := graceManager(t, 0)
	ana, _, an := join(t, m, "party", JoinOptions{Name: "Ana"})
	bo, _, bn := join(t, m, "party", JoinOptions{Name: "Bo"})
	ana.Drop(an)
	if left := bn.last("peerLeft"); left == nil || left["newHost"] != bo.ID() {
		t.Fatalf("peerLeft %v", left)
	}
}

// The host's successor is a guest who is here before one who is away.
func TestSuccessorIsPresent(t *testing.T) {
	m, _ := graceManager(t, time.Minute)
	ana, _, _ := join(t, m, "party", JoinOptions{Name: "Ana"})
	bo, _, bn := join(t, m, "party", JoinOptions{Name: "Bo"})
	cy, _, cn := join(t, m, "party", JoinOptions{Name: "Cy"})
	bo.Drop(bn)
	ana.Leave()
	if left := cn.last("peerLeft"); left == nil || left["newHost"] != cy.ID() {
		t.Fatalf("peerLeft %v, want Cy (present) as host before Bo (away)", left)
	}
	if cy.Role() != RoleHost || bo.Role() != RoleGuest {
		t.Fatalf("Cy %s, Bo %s", cy.Role(), bo.Role())
	}
}
