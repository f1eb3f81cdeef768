package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Fast leases keep these tests short; the logic is the same at 2 s / 6 s.
const (
	testRenew = 50 * time.Millisecond
	testTTL   = 300 * time.Millisecond
)

func client(t *testing.T, r *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startNode starts a node on r; rooms is the room list it reports.
func startNode(t *testing.T, r *redistest.Server, id string, rooms func() []string, lost func(string)) *Node {
	t.Helper()
	if rooms == nil {
		rooms = func() []string { return nil }
	}
	n, err := Start(context.Background(), Options{
		RedisURL: r.URL(), NodeID: id, NodeURL: "https://" + id + ".test:8443",
		LeaseRenew: testRenew, LeaseTTL: testTTL,
		Stats: func() Stats { return Stats{Rooms: len(rooms())} }, Rooms: rooms, Lost: lost,
	})
	if err != nil {
		t.Fatalf("start node %s: %v", id, err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { _ = n.Close() }) })
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A room has one holder; a second node is sent to it; a node that stops
// renewing (here: stopped) loses the room to the next claimant, whose
// epoch is higher, and the old lease can neither renew, release nor write.
func TestLeaseFencing(t *testing.T) {
	r := redistest.Start(t)
	rdb := client(t, r)
	ctx := context.Background()
	a := startNode(t, r, "a", func() []string { return []string{"party"} }, nil)
	b := startNode(t, r, "b", nil, nil)

	own, err := a.Claim(ctx, "party")
	if err != nil || !own.Self {
		t.Fatalf("a claims party: %+v, %v", own, err)
	}
	own, err = b.Claim(ctx, "party")
	if err != nil || own.Self || own.Node.ID != "a" || own.Node.URL != "https://a.test:8443" {
		t.Fatalf("b claims party held by a: %+v, %v", own, err)
	}
	old, _, err := holderOf(ctx, rdb, "party")
	if err != nil || old.Node != "a" {
		t.Fatalf("lease %+v, %v", old, err)
	}
	// Renewals keep it past several TTLs.
	time.Sleep(3 * testTTL)
	if cur, found, _ := holderOf(ctx, rdb, "party"); !found || cur != old {
		t.Fatalf("after 3 TTLs the lease is %+v (found %v), want %+v", cur, found, old)
	}

	// a dies without releasing: its record and its lease run out.
	a.cancel()
	<-a.done
	// Until the lease runs out, b is told a's node is not answering.
	if _, err := b.Claim(ctx, "party"); err != nil && !errors.Is(err, ErrOwnerGone) {
		t.Fatalf("claim while a's lease runs out: %v", err)
	}
	waitFor(t, "b takes party after a's lease ran out", 3*testTTL, func() bool {
		own, err := b.Claim(ctx, "party")
		return err == nil && own.Self
	})
	cur, _, _ := holderOf(ctx, rdb, "party")
	if cur.Node != "b" || cur.Epoch <= old.Epoch {
		t.Fatalf("new lease %+v after %+v: want b with a higher epoch", cur, old)
	}
	// The old holder is fenced off.
	if res, err := renew(ctx, rdb, "party", old, testTTL); err != nil || res != leaseLost {
		t.Errorf("renew with the old lease: %v, %v; want lost", res, err)
	}
	if ok, err := release(ctx, rdb, "party", old, true); err != nil || ok {
		t.Errorf("release with the old lease: %v, %v; want refused", ok, err)
	}
	if ok, err := saveSpec(ctx, rdb, "party", old, []byte(`{"stale":true}`)); err != nil || ok {
		t.Errorf("write with the old lease: %v, %v; want refused", ok, err)
	}
	if ok, err := saveSpec(ctx, rdb, "party", cur, []byte(`{"id":"party"}`)); err != nil || !ok {
		t.Errorf("write with the current lease: %v, %v", ok, err)
	}
	if spec, found, err := b.Spec(ctx, "party"); err != nil || !found || string(spec) != `{"id":"party"}` {
		t.Errorf("record %q, %v, %v", spec, found, err)
	}
	// a's node record runs out too (within a TTL of its last renewal,
	// which may have come a moment after the room's).
	waitFor(t, "a's record gone", 2*testTTL, func() bool {
		_, found, err := getNode(ctx, rdb, "a")
		return err == nil && !found
	})
	// Delete: the lease and the record go, the epoch stays (so the
	// next taker's epoch is higher still).
	if err := b.Forget(ctx, "party"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := holderOf(ctx, rdb, "party"); found {
		t.Error("lease left after Forget")
	}
	if _, found, _ := b.Spec(ctx, "party"); found {
		t.Error("record left after Forget")
	}
	l, err := take(ctx, rdb, "party", "c", testTTL)
	if err != nil || l.Epoch <= cur.Epoch {
		t.Errorf("take after delete: %+v, %v; want epoch above %d", l, err, cur.Epoch)
	}
}

// A node that lost its lease to another (it was cut off longer than the
// TTL) learns it at its next renewal and stops serving the room; a lease
// that Redis lost with a restart is taken back by its holder.
func TestLeaseLostAndRetaken(t *testing.T) {
	r := redistest.Start(t)
	rdb := client(t, r)
	ctx := context.Background()
	lost := make(chan string, 1)
	a := startNode(t, r, "a", func() []string { return []string{"party", "film"} }, func(id string) { lost <- id })
	for _, id := range []string{"party", "film"} {
		if own, err := a.Claim(ctx, id); err != nil || !own.Self {
			t.Fatalf("claim %s: %+v %v", id, own, err)
		}
	}
	// Another node takes "party" by force (as if a's lease had run out
	// while a was cut off): a's next renewal finds it lost.
	old, _, _ := holderOf(ctx, rdb, "party")
	if err := rdb.Del(ctx, roomKey("party")).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := take(ctx, rdb, "party", "b", time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-lost:
		if id != "party" {
			t.Fatalf("lost %q", id)
		}
	case <-time.After(5 * testTTL):
		t.Fatal("a never noticed it lost party")
	}
	if a.Holds("party") {
		t.Error("a still holds party")
	}
	if cur, _, _ := holderOf(ctx, rdb, "party"); cur.Node != "b" || cur.Epoch <= old.Epoch {
		t.Errorf("party is %+v", cur)
	}

	// Redis restarts empty: a registers again and takes "film" back.
	filmLease, _, _ := holderOf(ctx, rdb, "film")
	r.Restart()
	waitFor(t, "a's record and lease back after the restart", 5*testTTL, func() bool {
		l, found, _ := holderOf(ctx, rdb, "film")
		_, alive, _ := getNode(ctx, rdb, "a")
		return found && alive && l == filmLease
	})
	if e, _ := rdb.HGet(ctx, keyEpochs, "film").Int64(); e != filmLease.Epoch {
		t.Errorf("epoch of film after the restart: %d, want %d", e, filmLease.Epoch)
	}
}

// Claims fail with a clear error while Redis is away, and work again once
// it is back.
func TestClaimWithoutRedis(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r, "a", nil, nil)
	r.Stop()
	_, err := a.Claim(context.Background(), "party")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "Redis") {
		t.Fatalf("claim with Redis away: %v", err)
	}
	r.Restart()
	waitFor(t, "claim once Redis is back", 5*time.Second, func() bool {
		own, err := a.Claim(context.Background(), "party")
		return err == nil && own.Self
	})
}

// Many nodes racing for one room: exactly one wins.
func TestClaimRace(t *testing.T) {
	r := redistest.Start(t)
	nodes := make([]*Node, 4)
	for i := range nodes {
		nodes[i] = startNode(t, r, string(rune('a'+i)), nil, nil)
	}
	var wg sync.WaitGroup
	self := make([]bool, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own, err := n.Claim(context.Background(), "race")
			if err != nil {
				t.Errorf("node %d: %v", i, err)
			}
			self[i] = own.Self
		}()
	}
	wg.Wait()
	wins := 0
	for _, s := range self {
		if s {
			wins++
		}
	}
	if wins != 1 {
		t.Fatalf("%d nodes hold the room, want 1", wins)
	}
}

// Placement: draining nodes never get a room; among serving nodes two
// random choices spread a burst of rooms evenly, with stale figures too.
func TestPlacement(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	nodes := []NodeInfo{
		{ID: "a", State: StateServing, UpdatedAt: 1},
		{ID: "b", State: StateDraining, UpdatedAt: 1},
		{ID: "c", State: StateServing, UpdatedAt: 1, Rooms: 30},
		{ID: "d", State: StateServing, UpdatedAt: 1},
	}
	pending := map[string]int{}
	for range 300 {
		n, ok := choose(nodes, pending, rnd)
		if !ok {
			t.Fatal("no node chosen")
		}
		pending[n.ID]++
	}
	if pending["b"] != 0 {
		t.Errorf("the draining node got %d rooms", pending["b"])
	}
	total := map[string]int{"a": pending["a"], "c": pending["c"] + 30, "d": pending["d"]}
	lo, hi := total["a"], total["a"]
	for _, v := range total {
		lo, hi = min(lo, v), max(hi, v)
	}
	if float64(hi) > 1.1*float64(lo) {
		t.Errorf("rooms per node %v: spread too wide", total)
	}
	if _, ok := choose([]NodeInfo{{ID: "b", State: StateDraining}}, nil, rnd); ok {
		t.Error("a room was placed on a draining node")
	}
	// A busy CPU counts against a node.
	idle := NodeInfo{Rooms: 10, CPU: 0.1}
	busy := NodeInfo{Rooms: 10, CPU: 0.9}
	if Score(busy, 0) <= Score(idle, 0) {
		t.Errorf("score busy %g <= idle %g", Score(busy, 0), Score(idle, 0))
	}
}

// A draining node sends new rooms to serving nodes and says so in the
// registry; its rooms stay its own.
func TestDraining(t *testing.T) {
	r := redistest.Start(t)
	ctx := context.Background()
	a := startNode(t, r, "a", func() []string { return []string{"kept"} }, nil)
	b := startNode(t, r, "b", nil, nil)
	if own, err := a.Claim(ctx, "kept"); err != nil || !own.Self {
		t.Fatal(own, err)
	}
	if err := a.SetDraining(ctx); err != nil {
		t.Fatal(err)
	}
	nodes, err := b.Nodes(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].State != StateDraining || nodes[1].State != StateServing {
		t.Fatalf("registry %+v, %v", nodes, err)
	}
	for range 20 {
		own, err := a.Claim(ctx, "new-"+randID())
		if err != nil || own.Self || own.Node.ID != "b" {
			t.Fatalf("draining a claims a new room: %+v, %v", own, err)
		}
		node, self, err := b.Place(ctx)
		if err != nil || self != true || node.ID != "b" {
			t.Fatalf("b places on %+v (self %v), %v", node, self, err)
		}
	}
	if own, err := a.Claim(ctx, "kept"); err != nil || !own.Self {
		t.Fatalf("draining a keeps its room: %+v, %v", own, err)
	}
	// Close releases the leases and removes the record.
	rdb := client(t, r)
	_ = a.Close()
	if _, found, _ := holderOf(ctx, rdb, "kept"); found {
		t.Error("lease left after Close")
	}
	if _, found, _ := getNode(ctx, rdb, "a"); found {
		t.Error("record left after Close")
	}
}

func randID() string { return time.Now().Format("150405.000000000") }

// A node that stopped renewing (killed) keeps its record and leases until
// they run out; meanwhile another node does not send joins there once the
// record is more than a renewal and a half old (ErrOwnerGone: retry), and
// takes the room when the lease is gone.
func TestStoppedOwnerNotNamed(t *testing.T) {
	r := redistest.Start(t)
	rdb := client(t, r)
	ctx := context.Background()
	// A long TTL against the renewal: the record outlives its staleness
	// by seconds, so the check below cannot race its expiry.
	const renew, ttl = 50 * time.Millisecond, 2 * time.Second
	start := func(id string, rooms []string) *Node {
		n, err := Start(ctx, Options{RedisURL: r.URL(), NodeID: id, NodeURL: "https://" + id + ".test:8443",
			LeaseRenew: renew, LeaseTTL: ttl, Rooms: func() []string { return rooms }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	a := start("a", []string{"party"})
	b := start("b", nil)
	if own, err := a.Claim(ctx, "party"); err != nil || !own.Self {
		t.Fatalf("a claims party: %+v, %v", own, err)
	}
	// Alive: b is sent to a, however long it has been.
	time.Sleep(4 * renew)
	if own, err := b.Claim(ctx, "party"); err != nil || own.Node.ID != "a" {
		t.Fatalf("b claims party of a live a: %+v, %v", own, err)
	}
	if own, found, err := b.Locate(ctx, "party"); err != nil || !found || own.Node.ID != "a" {
		t.Fatalf("b locates party of a live a: %+v, %v, %v", own, found, err)
	}
	if !b.Answering(ctx, "a") {
		t.Fatal("b finds a live a not answering")
	}

	a.cancel() // killed: no renewal, no release
	<-a.done
	waitFor(t, "a's record older than a renewal and a half", ttl/2, func() bool {
		age, found, err := recordAge(ctx, rdb, "a", ttl)
		return err == nil && found && age > renew*3/2
	})
	if _, found, err := getNode(ctx, rdb, "a"); err != nil || !found {
		t.Fatalf("a's record should still be there: %v, %v", found, err)
	}
	if own, err := b.Claim(ctx, "party"); !errors.Is(err, ErrOwnerGone) {
		t.Fatalf("b claims party of a stopped a: %+v, %v; want ErrOwnerGone", own, err)
	}
	if _, found, err := b.Locate(ctx, "party"); err != nil || found {
		t.Fatalf("b locates party of a stopped a: found %v, %v; want not found", found, err)
	}
	if b.Answering(ctx, "a") {
		t.Fatal("b finds a stopped a answering")
	}
	waitFor(t, "b takes party once a's lease ran out", 2*ttl, func() bool {
		own, err := b.Claim(ctx, "party")
		return err == nil && own.Self
	})
}
