package room

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// memState is a cluster's state store, shared by two managers (nodes).
type memState struct {
	mu     sync.Mutex
	m      map[string][]byte
	writes chan struct{}
}

func newMemState() *memState {
	return &memState{m: map[string][]byte{}, writes: make(chan struct{}, 1000)}
}

func (s *memState) hooks() ClusterHooks {
	return ClusterHooks{
		SaveState: func(id string, b []byte) error {
			s.mu.Lock()
			s.m[id] = append([]byte(nil), b...)
			s.mu.Unlock()
			s.writes <- struct{}{}
			return nil
		},
		LoadState: func(id string) ([]byte, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.m[id], nil
		},
		DropState: func(id string) error {
			s.mu.Lock()
			delete(s.m, id)
			s.mu.Unlock()
			return nil
		},
	}
}

// waitFor waits until the saved state of room id holds want.
func (s *memState) waitFor(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		s.mu.Lock()
		got := string(s.m[id])
		s.mu.Unlock()
		if strings.Contains(got, want) {
			return
		}
		select {
		case <-s.writes:
		case <-deadline:
			t.Fatalf("state of %s never held %q: %s", id, want, got)
		}
	}
}

// TestStateCarriesOnAfterTakeover: node A's room has a host, a guest, chat
// and a playing film; A stops; on node B the host who comes back with the
// resume token of their last join is host again (not the guest who came
// back first), the chat is there with its numbering going on, and the
// film waits where it was.
func TestStateCarriesOnAfterTakeover(t *testing.T) {
	st := newMemState()
	clock := time.Unix(1_800_000_000, 0)
	var clockMu sync.Mutex
	now := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	advance := func(d time.Duration) { clockMu.Lock(); clock = clock.Add(d); clockMu.Unlock() }
	edit := func(c *Config) {
		c.Cluster = st.hooks()
		c.Grace = time.Minute
		c.Now = now
	}
	a := newManager(t, edit)
	ana, anaRes, _ := join(t, a, "party", JoinOptions{Name: "Ana"})
	bo, boRes, _ := join(t, a, "party", JoinOptions{Name: "Bo"})
	if ana.Role() != RoleHost || bo.Role() != RoleGuest {
		t.Fatalf("roles on A: %s %s", ana.Role(), bo.Role())
	}
	if _, err := bo.Chat("before the move"); err != nil {
		t.Fatal(err)
	}
	if _, err := ana.Playback(PlaybackCommand{Action: "load", URL: "/media/film.mp4", Duration: ptr(600.0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ana.Playback(PlaybackCommand{Action: "play"}); err != nil {
		t.Fatal(err)
	}
	advance(10 * time.Second)
	st.waitFor(t, "party", `"url":"/media/film.mp4"`)
	st.waitFor(t, "party", "before the move")
	// A's node goes (drains or dies): the state stays for the next one.
	a.Close()
	if _, ok := st.m["party"]; !ok {
		t.Fatal("stopping the node deleted the room's state")
	}
	if strings.Contains(string(st.m["party"]), anaRes.ResumeToken) {
		t.Fatal("the state keeps a resume token in the clear")
	}

	b := newManager(t, edit)
	// Bo comes back first, by his resume token.
	bo2, res, _ := join(t, b, "party", JoinOptions{Name: "Bo", Resume: boRes.ResumeToken})
	if !res.Resumed || bo2.ID() != bo.ID() || bo2.Role() != RoleGuest {
		t.Fatalf("Bo on B: resumed %v, id %s (was %s), role %s", res.Resumed, bo2.ID(), bo.ID(), bo2.Role())
	}
	if len(res.Chat) != 1 || res.Chat[0].Text != "before the move" {
		t.Fatalf("chat on B: %+v", res.Chat)
	}
	if p := res.Playback; p.URL != "/media/film.mp4" || !p.Paused || p.Position < 9.9 || p.Position > 10.1 {
		t.Fatalf("playback on B: %+v (want paused at 10 s)", p)
	}
	ana2, res, _ := join(t, b, "party", JoinOptions{Name: "Ana", Resume: anaRes.ResumeToken})
	if !res.Resumed || ana2.Role() != RoleHost {
		t.Fatalf("Ana on B: resumed %v, role %s, want host", res.Resumed, ana2.Role())
	}
	if res.ResumeToken != anaRes.ResumeToken {
		t.Error("the resume token changed on the new node")
	}
	msg, err := ana2.Chat("after the move")
	if err != nil {
		t.Fatal(err)
	}
	if msg.Seq != 2 {
		t.Errorf("chat numbering went from 1 to %d", msg.Seq)
	}
	// A stranger with a made-up token is a new guest.
	cy, res, _ := join(t, b, "party", JoinOptions{Name: "Cy", Resume: strings.Repeat("0", 32)})
	if res.Resumed || cy.Role() != RoleGuest {
		t.Fatalf("Cy: resumed %v, role %s", res.Resumed, cy.Role())
	}
	// Everyone leaves: the link room ends for good, and its state goes.
	for _, mb := range []*Member{ana2, bo2, cy} {
		mb.Leave()
	}
	if _, ok := b.Room("party"); ok {
		t.Fatal("the room outlived its members")
	}
	st.mu.Lock()
	_, kept := st.m["party"]
	st.mu.Unlock()
	if kept {
		t.Error("an ended room's state is still kept")
	}
}

// TestStateOfAwayMembersExpires: members restored away leave when their
// grace runs out, as after a dropped connection.
func TestStateOfAwayMembersExpires(t *testing.T) {
	st := newMemState()
	ft := &fakeTimers{}
	edit := func(c *Config) {
		c.Cluster = st.hooks()
		c.Grace = 30 * time.Second
		c.AfterFunc = ft.afterFunc
	}
	a := newManager(t, edit)
	join(t, a, "gone", JoinOptions{Name: "Ana"})
	join(t, a, "gone", JoinOptions{Name: "Bo"})
	st.waitFor(t, "gone", `"name":"Bo"`)
	a.Close()
	b := newManager(t, edit)
	cy, _, _ := join(t, b, "gone", JoinOptions{Name: "Cy"})
	r, _ := b.Room("gone")
	if n := len(r.Peers()); n != 3 {
		t.Fatalf("%d peers, want Ana and Bo away and Cy", n)
	}
	if cy.Role() != RoleGuest {
		t.Fatalf("Cy is %s while the host is away", cy.Role())
	}
	ft.advance(30 * time.Second)
	if n := len(r.Peers()); n != 1 {
		t.Fatalf("%d peers after the grace, want Cy alone", n)
	}
	if cy.Role() != RoleHost {
		t.Errorf("Cy is %s once the host's grace ran out", cy.Role())
	}
}

// TestTakeoverGraceOutlastsAShortGrace: members a takeover restores stay
// away for the cluster's takeover grace when the reconnect grace is
// shorter: they reach the new node at the pace of their retries.
func TestTakeoverGraceOutlastsAShortGrace(t *testing.T) {
	st := newMemState()
	ft := &fakeTimers{}
	edit := func(c *Config) {
		c.Cluster = st.hooks()
		c.Cluster.TakeoverGrace = 6 * time.Second
		c.Grace = time.Second
		c.AfterFunc = ft.afterFunc
	}
	a := newManager(t, edit)
	join(t, a, "dead", JoinOptions{Name: "Ana"})
	st.waitFor(t, "dead", `"name":"Ana"`)
	a.Close()
	b := newManager(t, edit)
	bo, _, _ := join(t, b, "dead", JoinOptions{Name: "Bo"})
	r, _ := b.Room("dead")
	ft.advance(5 * time.Second)
	if n := len(r.Peers()); n != 2 {
		t.Fatalf("%d peers 5 s after the takeover, want Ana still away (takeover grace 6 s) and Bo", n)
	}
	ft.advance(time.Second)
	if n := len(r.Peers()); n != 1 || bo.Role() != RoleHost {
		t.Fatalf("%d peers (Bo %s) once the takeover grace ran out, want Bo alone, host", n, bo.Role())
	}
}
