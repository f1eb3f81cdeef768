package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/redistest"
)

func serving(id string, peers int, carries ...string) NodeInfo {
	return NodeInfo{ID: id, State: StateServing, Peers: peers, MaxPeers: 10, Carries: carries}
}

// A node's headroom is its own limits against its own last figures;
// draining nodes have none.
func TestHeadroom(t *testing.T) {
	for _, c := range []struct {
		n    NodeInfo
		want bool
	}{
		{NodeInfo{State: StateServing}, true}, // no limits
		{NodeInfo{State: StateServing, Peers: 1000, CPU: 0.99}, true},
		{NodeInfo{State: StateDraining}, false},
		{NodeInfo{State: StateServing, MaxPeers: 10, Peers: 9}, true},
		{NodeInfo{State: StateServing, MaxPeers: 10, Peers: 6, Viewers: 4}, false},
		{NodeInfo{State: StateServing, MaxCPU: 0.8, CPU: 0.79}, true},
		{NodeInfo{State: StateServing, MaxCPU: 0.8, CPU: 0.8}, false},
	} {
		if got := c.n.Headroom(); got != c.want {
			t.Errorf("%+v: headroom %v, want %v", c.n, got, c.want)
		}
	}
}

func TestPlaceViewer(t *testing.T) {
	const room = "party"
	full := func(n NodeInfo) NodeInfo { n.Peers = n.MaxPeers; return n }
	draining := func(n NodeInfo) NodeInfo { n.State = StateDraining; return n }
	for _, c := range []struct {
		name  string
		nodes []NodeInfo
		q     ViewerQuery
		want  []string // any of these
		self  bool
	}{
		{name: "a carrier with headroom serves its viewer",
			nodes: []NodeInfo{serving("a", 1), serving("b", 1, room), serving("c", 0)},
			q:     ViewerQuery{Self: "b", Origin: "a", Here: true}, want: []string{"b"}, self: true},
		{name: "the origin is a carrier",
			nodes: []NodeInfo{serving("a", 1), serving("b", 0), serving("c", 0)},
			q:     ViewerQuery{Self: "c", Origin: "a"}, want: []string{"a"}},
		{name: "an edge carrying the room with headroom, the origin full",
			nodes: []NodeInfo{full(serving("a", 0)), serving("b", 3, room), serving("c", 0)},
			q:     ViewerQuery{Self: "c", Origin: "a"}, want: []string{"b"}},
		{name: "a carrier without headroom is skipped for another carrier",
			nodes: []NodeInfo{full(serving("a", 0)), full(serving("b", 0, room)), serving("c", 5, room), serving("d", 0)},
			q:     ViewerQuery{Self: "b", Origin: "a", Here: true}, want: []string{"c"}},
		{name: "no carrier with headroom: two choices among the others, the less loaded",
			nodes: []NodeInfo{full(serving("a", 0)), full(serving("b", 0, room)), serving("c", 8), serving("d", 1)},
			q:     ViewerQuery{Self: "c", Origin: "a"}, want: []string{"d"}},
		{name: "no carrier with headroom: the arrival node may be the choice",
			nodes: []NodeInfo{full(serving("a", 0)), serving("c", 1), serving("d", 8)},
			q:     ViewerQuery{Self: "c", Origin: "a"}, want: []string{"c"}, self: true},
		{name: "draining nodes are never chosen, carrier or not",
			nodes: []NodeInfo{full(serving("a", 0)), draining(serving("b", 0, room)), draining(serving("c", 0)), serving("d", 9)},
			q:     ViewerQuery{Self: "b", Origin: "a", Here: true}, want: []string{"d"}},
		{name: "a draining origin is not chosen",
			nodes: []NodeInfo{draining(serving("a", 0)), serving("b", 0), serving("c", 0, room)},
			q:     ViewerQuery{Self: "b", Origin: "a"}, want: []string{"c"}},
		{name: "no node with headroom: served where it arrived",
			nodes: []NodeInfo{full(serving("a", 0)), full(serving("b", 0, room)), full(serving("c", 0))},
			q:     ViewerQuery{Self: "c", Origin: "a"}, want: []string{"c"}, self: true},
		{name: "a lone node serves everything",
			nodes: []NodeInfo{full(serving("a", 0))},
			q:     ViewerQuery{Self: "a", Origin: "a", Here: true}, want: []string{"a"}, self: true},
		{name: "a node with no record yet serves here",
			nodes: []NodeInfo{serving("a", 0)},
			q:     ViewerQuery{Self: "b", Origin: "a"}, want: []string{"b"}, self: true},
		{name: "a viewer placed here is served here",
			nodes: []NodeInfo{serving("a", 0), full(serving("b", 0))},
			q:     ViewerQuery{Self: "b", Origin: "a", Placed: true}, want: []string{"b"}, self: true},
		{name: "its record says it carries, its own word says it does not",
			nodes: []NodeInfo{full(serving("a", 0)), serving("b", 0, room), serving("c", 0, room)},
			q:     ViewerQuery{Self: "b", Origin: "a", Here: false}, want: []string{"c"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.q.Room = room
			n, self := PlaceViewer(c.nodes, c.q)
			if !slices.Contains(c.want, n.ID) || self != c.self {
				t.Errorf("placed on %q (self %v), want one of %v (self %v)", n.ID, self, c.want, c.self)
			}
		})
	}
}

// No loops: a viewer sent to a node by placement is served there, when
// that node decides on the same registry (without the Placed mark too),
// for every room and every arrival node.
func TestPlaceViewerNoLoops(t *testing.T) {
	nodes := []NodeInfo{
		{ID: "a", State: StateServing, MaxPeers: 4, Peers: 4}, // the origin, full
		{ID: "b", State: StateServing, MaxPeers: 4, Peers: 1},
		{ID: "c", State: StateServing, MaxPeers: 4, Peers: 1},
		{ID: "d", State: StateServing, Peers: 1},
		{ID: "e", State: StateDraining},
		{ID: "f", State: StateServing, MaxCPU: 0.5, CPU: 0.7, Carries: []string{"r3"}},
	}
	chosen := map[string]int{}
	for i := range 200 {
		room := fmt.Sprintf("r%d", i)
		// Some rooms have an edge on c already.
		carrying := slices.Clone(nodes)
		if i%3 == 0 {
			carrying[2].Carries = []string{room}
		}
		for _, arrive := range carrying {
			q := ViewerQuery{Room: room, Self: arrive.ID, Origin: "a", Here: arrive.ID == "a" || slices.Contains(arrive.Carries, room)}
			to, self := PlaceViewer(carrying, q)
			if self {
				continue
			}
			if to.ID == "a" || to.ID == "e" || to.ID == "f" {
				t.Fatalf("room %s from %s: placed on %s, which has no headroom", room, arrive.ID, to.ID)
			}
			there := ViewerQuery{Room: room, Self: to.ID, Origin: "a", Here: slices.Contains(to.Carries, room)}
			if again, self := PlaceViewer(carrying, there); !self {
				t.Fatalf("room %s: %s sent its viewer to %s, which sends it on to %s", room, arrive.ID, to.ID, again.ID)
			}
			if i%3 == 0 && to.ID != "c" {
				t.Fatalf("room %s carried by c (with headroom): %s sent its viewer to %s", room, arrive.ID, to.ID)
			}
			chosen[to.ID]++
		}
	}
	// Rooms with no carrier spread over b, c and d (two choices by room).
	if chosen["b"] == 0 || chosen["d"] == 0 {
		t.Errorf("new edges by node: %v, want them spread", chosen)
	}
}

// The record lists the rooms a node carries (at most MaxCarried) and its
// limits, and another node places a viewer from one registry read.
func TestRecordCarries(t *testing.T) {
	r := redistest.Start(t)
	ctx := context.Background()
	many := make([]string, MaxCarried+10)
	for i := range many {
		many[i] = fmt.Sprintf("room-%d", i)
	}
	a := startNodeOpts(t, r, slow(Options{NodeID: "a", MaxPeers: 5, MaxCPU: 0.9,
		Stats: func() Stats { return Stats{Peers: 1, Viewers: 2, Carried: many} }}))
	b := startNodeOpts(t, r, slow(Options{NodeID: "b", Stats: func() Stats { return Stats{Carried: []string{"edge-only"}} }}))
	nodes, err := b.Nodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes %v %v", nodes, err)
	}
	ra := nodes[0]
	if len(ra.Carries) != MaxCarried || ra.Carries[0] != "room-0" || ra.MaxPeers != 5 || ra.MaxCPU != 0.9 || ra.Viewers != 2 {
		t.Fatalf("a's record: %d carried (first %q), max peers %d, max cpu %g, viewers %d",
			len(ra.Carries), ra.Carries[0], ra.MaxPeers, ra.MaxCPU, ra.Viewers)
	}
	// b carries "edge-only" and has headroom: a viewer of it at a goes to b.
	to, self, err := a.PlaceViewer(ctx, "edge-only", "elsewhere", false, false)
	if err != nil || self || to.ID != "b" || !strings.HasPrefix(to.URL, "http") {
		t.Fatalf("a viewer of a room b carries, at a: placed on %q (self %v, %v)", to.ID, self, err)
	}
	// Placed: served here without reading the registry.
	if to, self, err := a.PlaceViewer(ctx, "edge-only", "elsewhere", false, true); err != nil || !self || to.ID != "a" {
		t.Fatalf("a placed viewer at a: %q %v %v", to.ID, self, err)
	}
}

// slow leases: a record is stale (PlaceViewer skips its node) only after
// 1.5 s, which a loaded test machine never makes a live node's.
func slow(o Options) Options { o.LeaseRenew, o.LeaseTTL = time.Second, 10*time.Second; return o }

func startNodeOpts(t *testing.T, r *redistest.Server, o Options) *Node {
	t.Helper()
	o.RedisURL, o.NodeURL = r.URL(), "https://"+o.NodeID+".test:8443"
	if o.LeaseRenew == 0 {
		o.LeaseRenew, o.LeaseTTL = testRenew, testTTL
	}
	n, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// A node that stopped renewing its record (dead, frozen, cut off) gets no
// viewers, though its record is still in the registry and says it
// carries the room.
func TestPlaceViewerSkipsSilentNodes(t *testing.T) {
	r := redistest.Start(t)
	ctx := context.Background()
	a := startNodeOpts(t, r, slow(Options{NodeID: "a"}))
	// d's record, last written 5 s ago by Redis's clock (a TTL of 10 s,
	// 5 s left): it carries the room.
	rec := `{"id":"d","url":"https://d.test:8443","state":"serving","carries":["party"]}`
	if err := client(t, r).Set(ctx, nodeKey("d"), rec, 5*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if nodes, err := a.Nodes(ctx); err != nil || len(nodes) != 2 {
		t.Fatalf("registry: %v %v, want a and d", nodes, err)
	}
	to, self, err := a.PlaceViewer(ctx, "party", "elsewhere", false, false)
	if err != nil || !self || to.ID != "a" {
		t.Fatalf("placed on %q (self %v, %v), want a: d stopped renewing", to.ID, self, err)
	}
	// Written again now, it is a carrier with headroom.
	if err := client(t, r).Set(ctx, nodeKey("d"), rec, 10*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if to, self, err := a.PlaceViewer(ctx, "party", "elsewhere", false, false); err != nil || self || to.ID != "d" {
		t.Fatalf("placed on %q (self %v, %v), want d", to.ID, self, err)
	}
}
