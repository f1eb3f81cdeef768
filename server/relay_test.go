package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/redistest"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/pion/webrtc/v4"
)

// Two nodes in one process on one Redis (short leases): a WHEP viewer of
// a's room asking b is served by b from an edge fed by a pipe from a,
// gets the share, and when it leaves the edge and the pipe go after the
// idle grace; when the room ends on a, b's edge and its WHEP sessions
// end. The test binary's goleak check covers the relay's goroutines (and
// the nodes' Close with a pipe open).
func TestClusterRelayInProcess(t *testing.T) {
	r := redistest.Start(t)
	grace := func(c *config.Config) { c.RelayIdleGrace, c.RelayMaxPipes = 300*time.Millisecond, 1 }
	a := startNodeWith(t, r, "a", grace)
	b := startNodeWith(t, r, "b", grace)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const key = "cluster-test-key"
	pub := publishWHIP(t, ctx, a.base, "relayed", key, 1)
	if _, ok := a.srv.Rooms().Room("relayed"); !ok {
		t.Fatal("the WHIP publisher's room is not on a")
	}

	// Without following redirects: b must serve the viewer itself.
	resp, _ := clusterDo(t, "POST", b.base+"/whep/relayed", "v=0")
	if resp.StatusCode == http.StatusTemporaryRedirect {
		t.Fatalf("WHEP on b sent to %s", resp.Header.Get("Location"))
	}
	v := watchWHEP(t, ctx, b.base, "relayed", key)
	testenv.Eventually(t, 10*time.Second, "the viewer on b gets video and audio from a", func() bool {
		return len(v.packets("video")) > 30 && len(v.packets("audio")) > 20
	})
	if _, ok := b.srv.Rooms().Room("relayed"); ok {
		t.Fatal("b holds the room itself, not an edge of it")
	}
	if _, ok := b.srv.Rooms().Watchable("relayed"); !ok {
		t.Fatal("b has no edge of the room")
	}
	m := scrape(t, a.base)
	if m[`matinee_relay_pipes{direction="out"}`] != 1 || m[`matinee_whep_sessions`] != 0 {
		t.Fatalf("a: %v pipes out, %v WHEP sessions; want 1 and 0", m[`matinee_relay_pipes{direction="out"}`], m[`matinee_whep_sessions`])
	}

	// The viewer leaves: after the grace, b drops the edge and a the pipe.
	if err := v.sess.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	_ = v.pc.Close()
	testenv.Eventually(t, 5*time.Second, "b drops the idle edge and a its pipe", func() bool {
		_, edge := b.srv.Rooms().Watchable("relayed")
		return !edge && scrape(t, a.base)[`matinee_relay_pipes{direction="out"}`] == 0
	})

	// A second viewer opens a new edge. The sharer leaves, the room ends
	// on a: b's edge ends and so does the viewer's WHEP session there.
	v2 := watchWHEP(t, ctx, b.base, "relayed", key)
	testenv.Eventually(t, 10*time.Second, "a second viewer on b gets video", func() bool {
		return len(v2.packets("video")) > 30
	})
	if err := pub.sess.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "b's edge and WHEP session end with the room on a", func() bool {
		_, edge := b.srv.Rooms().Watchable("relayed")
		return !edge && scrape(t, b.base)[`matinee_whep_sessions`] == 0 && scrape(t, a.base)[`matinee_relay_pipes{direction="out"}`] == 0
	})

	// Another room relayed: the nodes then close with its pipe open.
	publishWHIP(t, ctx, a.base, "relayed-2", key, 1)
	v3 := watchWHEP(t, ctx, b.base, "relayed-2", key)
	// a sends at most one pipe (--relay-max-pipes 1): a viewer of a
	// third room on b is sent to a.
	publishWHIP(t, ctx, a.base, "relayed-3", key, 1)
	if resp, body := clusterDo(t, "POST", b.base+"/whep/relayed-3", "v=0"); resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != a.base+"/whep/relayed-3" {
		t.Errorf("WHEP of a third room on b with a's one pipe taken: %d %s (Location %q), want 307 to a", resp.StatusCode, body, resp.Header.Get("Location"))
	}
	testenv.Eventually(t, 10*time.Second, "a viewer of another room on b gets video", func() bool {
		return len(v3.packets("video")) > 30
	})
}

// Two nodes in one process with --relay-members: a member of a's room
// who joins through b stays on b and chats with a member on a; the nodes
// then close with the member's link open. The test binary's goleak check
// covers the members' channel, its goroutines and the nodes' Close.
func TestClusterMembersInProcess(t *testing.T) {
	r := redistest.Start(t)
	// The clients end last, after both nodes closed with them connected.
	var clients []*testpeer.Client
	var readers sync.WaitGroup
	t.Cleanup(func() {
		for _, c := range clients {
			c.Drop()
		}
		readers.Wait()
	})
	on := func(c *config.Config) { c.RelayMembers = true }
	a := startNodeWith(t, r, "a", on)
	b := startNodeWith(t, r, "b", on)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(base string) *testpeer.Client {
		t.Helper()
		api, err := testpeer.NewAPI(testpeer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := testpeer.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", api)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	ana := dial(a.base)
	if _, err := ana.Join(ctx, "party", "Ana"); err != nil {
		t.Fatal(err)
	}
	publishWHIP(t, ctx, a.base, "party", "cluster-test-key", 1)
	bo := dial(b.base)
	var producers []testpeer.Producer
	testenv.Eventually(t, 10*time.Second, "Bo joins through b and sees the share", func() bool {
		if bo.PeerID == "" {
			ps, err := bo.Join(ctx, "party", "Bo")
			if err != nil {
				t.Fatalf("Bo's join through b: %v", err)
			}
			producers = ps
		}
		return len(producers) >= 2
	})
	if _, here := b.srv.Rooms().Room("party"); here {
		t.Fatal("b opened the room itself")
	}
	m := scrape(t, b.base)
	if m[`matinee_relay_members{side="edge"}`] != 1 || scrape(t, a.base)[`matinee_relay_members{side="origin"}`] != 1 {
		t.Fatalf("b: %v links; a: %v remote members; want 1 and 1", m[`matinee_relay_members{side="edge"}`], scrape(t, a.base)[`matinee_relay_members{side="origin"}`])
	}
	// Bo receives the share from b's edge, on b's media port.
	var video atomic.Int64
	bo.OnTrack = func(tr *webrtc.TrackRemote, _ testpeer.Consumer) {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				video.Add(1)
			}
		}()
	}
	if err := bo.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range producers {
		if p.Kind == "video" {
			if _, err := bo.Subscribe(ctx, p.ID); err != nil {
				t.Fatalf("Bo subscribes through b: %v", err)
			}
		}
	}
	testenv.Eventually(t, 10*time.Second, "Bo gets the share's video", func() bool { return video.Load() > 30 })
	pair := testpeer.SelectedPair(bo.Recv)
	var bPorts []int
	for _, ad := range b.srv.MediaAddrs() {
		if u, ok := ad.(*net.UDPAddr); ok {
			bPorts = append(bPorts, u.Port)
		}
	}
	if pair == nil || !slices.Contains(bPorts, int(pair.Remote.Port)) {
		t.Fatalf("Bo's media comes from %v, not from b's ports %v", pair, bPorts)
	}
	if err := bo.Call(ctx, "chat", map[string]any{"text": "from b"}, nil); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := ana.WaitEvent(ctx, "chat")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(ev.Params), "from b") {
			break
		}
	}
}

// Four nodes in one process, a and b sending one pipe at most: a WHEP
// viewer of a's room on b gets a pipe from a; one on c is served at c
// through a pipe from b's edge (a second level: a refuses c naming b). A
// viewer on d is sent to a: b, full, refuses d too, and c, fed by b, is
// not named. b's viewer leaves: b keeps its edge while it feeds c. b
// shuts down: c's same viewer plays again through a pipe from a. c's
// viewer leaves: c's edge and a's pipe go after the grace. It logs the
// delay each level adds (synth's send stamps against the time a viewer
// reads them).
func TestClusterRelaySecondLevelInProcess(t *testing.T) {
	r := redistest.Start(t)
	grace := func(c *config.Config) { c.RelayIdleGrace, c.RelayMaxPipes = 300*time.Millisecond, 1 }
	a := startNodeWith(t, r, "a", grace)
	b := startNodeWith(t, r, "b", grace)
	c := startNodeWith(t, r, "c", func(c *config.Config) { c.RelayIdleGrace = 300 * time.Millisecond })
	d := startNodeWith(t, r, "d", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	const key = "cluster-test-key"
	publishWHIP(t, ctx, a.base, "levels", key, 1)

	local := watchWHEP(t, ctx, a.base, "levels", key)
	onB := watchWHEP(t, ctx, b.base, "levels", key)
	testenv.Eventually(t, 10*time.Second, "the viewer on b gets video and audio from a", func() bool {
		return len(onB.packets("video")) > 30 && len(onB.packets("audio")) > 20
	})
	resp, _ := clusterDo(t, "POST", c.base+"/whep/levels", "v=0")
	if resp.StatusCode == http.StatusTemporaryRedirect {
		t.Fatalf("WHEP on c sent to %s with a sub-origin at hand", resp.Header.Get("Location"))
	}
	onC := watchWHEP(t, ctx, c.base, "levels", key)
	testenv.Eventually(t, 10*time.Second, "the viewer on c gets video and audio through b", func() bool {
		return len(onC.packets("video")) > 30 && len(onC.packets("audio")) > 20
	})
	pipes := func(n *clusterNode) (in, out float64) {
		m := scrape(t, n.base)
		return m[`matinee_relay_pipes{direction="in"}`], m[`matinee_relay_pipes{direction="out"}`]
	}
	testenv.Eventually(t, 5*time.Second, "a: 1 pipe out; b: 1 in, 1 out; c: 1 in", func() bool {
		ai, ao := pipes(a)
		bi, bo := pipes(b)
		ci, co := pipes(c)
		return ai == 0 && ao == 1 && bi == 1 && bo == 1 && ci == 1 && co == 0
	})
	if m := scrape(t, c.base); m[`matinee_whep_sessions`] != 1 || m[`matinee_relay_packets_total{direction="in"}`] < 50 {
		t.Fatalf("c: %v WHEP sessions, %v packets in; want 1 and some", m[`matinee_whep_sessions`], m[`matinee_relay_packets_total{direction="in"}`])
	}
	// Let each viewer gather a few seconds of packets, then compare.
	from := map[*whepViewer]int{local: len(local.packets("video")), onB: len(onB.packets("video")), onC: len(onC.packets("video"))}
	testenv.Eventually(t, 10*time.Second, "every viewer gets 300 more video packets", func() bool {
		for v, n := range from {
			if len(v.packets("video")) < n+300 {
				return false
			}
		}
		return true
	})
	t.Logf("video delay, median and p99: local on a %s; on b (one pipe) %s; on c (two pipes) %s",
		delays(local.packets("video")[from[local]:]), delays(onB.packets("video")[from[onB]:]), delays(onC.packets("video")[from[onC]:]))

	// a is full and names b, b is full: d's viewer goes to a.
	if resp, body := clusterDo(t, "POST", d.base+"/whep/levels", "v=0"); resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != a.base+"/whep/levels" {
		t.Errorf("WHEP on d with a and b full: %d %s (Location %q), want 307 to a", resp.StatusCode, body, resp.Header.Get("Location"))
	}
	if _, edge := d.srv.Rooms().Watchable("levels"); edge {
		t.Error("d kept an edge no node feeds")
	}

	// b's viewer leaves; b's edge stays while it feeds c.
	if err := onB.sess.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	_ = onB.pc.Close()
	testenv.Eventually(t, 5*time.Second, "b's WHEP session ends", func() bool {
		return scrape(t, b.base)[`matinee_whep_sessions`] == 0
	})
	n := len(onC.packets("video"))
	testenv.Eventually(t, 10*time.Second, "c's viewer plays on through b, past b's idle grace", func() bool {
		return len(onC.packets("video")) > n+300
	})
	if _, edge := b.srv.Rooms().Watchable("levels"); !edge {
		t.Fatal("b dropped the edge that feeds c")
	}

	// b shuts down: it closes c's sub-pipe, c asks a again, and a, whose
	// pipe to b is closed, pipes to c. The viewer on c never re-posts.
	_ = b.srv.Close()
	n = len(onC.packets("video"))
	testenv.Eventually(t, 10*time.Second, "c's viewer plays again, piped from a", func() bool {
		return len(onC.packets("video")) > n+100 && len(onC.packets("audio")) > 20
	})
	testenv.Eventually(t, 5*time.Second, "a: 1 pipe out; c: 1 in", func() bool {
		_, ao := pipes(a)
		ci, _ := pipes(c)
		return ao == 1 && ci == 1 && scrape(t, c.base)[`matinee_whep_sessions`] == 1
	})

	// c's viewer leaves: c's edge and a's pipe go after the grace.
	if err := onC.sess.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	_ = onC.pc.Close()
	testenv.Eventually(t, 10*time.Second, "c's edge and a's pipe go after the grace", func() bool {
		_, onc := c.srv.Rooms().Watchable("levels")
		_, ao := pipes(a)
		return !onc && ao == 0
	})
}

// delays summarises how long stamped packets took from the publisher to
// the viewer: "median/p99".
func delays(pkts []received) string {
	var ds []time.Duration
	for _, p := range pkts {
		if p.ok && !p.padding {
			ds = append(ds, p.at.Sub(p.stamp.Sent))
		}
	}
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	return fmt.Sprintf("%s/%s", ds[len(ds)/2].Round(10*time.Microsecond), ds[len(ds)*99/100].Round(10*time.Microsecond))
}
