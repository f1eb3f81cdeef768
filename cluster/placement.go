package cluster

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"

	"github.com/redis/go-redis/v9"
)

// Placement of a new room: two serving nodes drawn at random, the less
// loaded of the two wins. Always taking the least loaded node herds a
// burst of new rooms onto one node until the next refresh of the figures
// (every node sees the same "least loaded"); two random choices spread
// the burst and still avoid the busy nodes. Draining nodes never get a
// room.

// Score is how loaded a node is, for placement: its rooms (with those
// placed on it since its last report), a quarter room per peer or viewer,
// and a penalty once its CPU is more than half busy.
func Score(n NodeInfo, pending int) float64 {
	s := float64(n.Rooms+pending) + float64(n.Peers+n.Viewers)/4
	if n.CPU > 0.5 {
		s *= 1 + 4*(n.CPU-0.5)
	}
	return s
}

// choose picks a node for a new room among nodes; pending counts the
// rooms this node placed on each since that node's last report. ok is
// false when no node is serving.
func choose(nodes []NodeInfo, pending map[string]int, rnd *rand.Rand) (NodeInfo, bool) {
	serving := make([]NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		if n.State == StateServing {
			serving = append(serving, n)
		}
	}
	switch len(serving) {
	case 0:
		return NodeInfo{}, false
	case 1:
		return serving[0], true
	}
	i := rnd.IntN(len(serving))
	j := rnd.IntN(len(serving) - 1)
	if j >= i {
		j++
	}
	a, b := serving[i], serving[j]
	if Score(b, pending[b.ID]) < Score(a, pending[a.ID]) {
		return b, true
	}
	return a, true
}

// Placement of a viewer (a WHEP viewer, or a WebSocket member served on
// an edge): docs/cluster.md, "Placement".

// MaxCarried bounds the rooms a node's record lists as carried
// (NodeInfo.Carries), so that the record stays small (about 20 KiB of
// ids at most). A room past it is still served; only a viewer asking
// another node for it does not find this node as a carrier, and may open
// one more edge elsewhere.
const MaxCarried = 256

// Headroom reports whether node n takes more viewers: it is serving, and
// under its own limits (peers and viewers together, CPU share), as its
// last record says.
func (n NodeInfo) Headroom() bool {
	switch {
	case n.State != StateServing:
		return false
	case n.MaxPeers > 0 && n.Peers+n.Viewers >= n.MaxPeers:
		return false
	case n.MaxCPU > 0 && n.CPU >= n.MaxCPU:
		return false
	}
	return true
}

// ViewerQuery is a viewer of Room arriving at node Self; the room is
// held by node Origin.
type ViewerQuery struct {
	Room, Self, Origin string
	// Here: Self has the room's media now (it is the origin, or has an
	// edge). Its own word beats its record, which may be a renewal old.
	Here bool
	// Placed: another node's placement sent the viewer here; it is
	// served here, whatever the records say now, so that a viewer is
	// sent on at most once.
	Placed bool
}

// PlaceViewer says which node serves a viewer: the node it reached, if
// that node has the room's media and headroom; else another node that
// has it (the origin counts) and headroom, the less loaded of two drawn
// at random; else a serving node with headroom chosen the same way among
// all of them (its edge opens there). When no node has headroom, or Self
// has no record yet, the viewer is served where it is (self true), as
// without placement.
//
// The last draw is seeded by the room's id and ignores what this node
// placed since the last reports, so that every node reading the same
// registry picks the same new node for a room: a viewer sent there is
// served there (it picks itself) even without the Placed mark, and a
// burst of viewers of one room opens one edge, not one per node.
func PlaceViewer(nodes []NodeInfo, q ViewerQuery) (node NodeInfo, self bool) {
	if q.Placed {
		return NodeInfo{ID: q.Self}, true
	}
	i := slices.IndexFunc(nodes, func(n NodeInfo) bool { return n.ID == q.Self })
	if i < 0 {
		return NodeInfo{ID: q.Self}, true
	}
	me := nodes[i]
	if q.Here && me.Headroom() {
		return me, true
	}
	rnd := rand.New(rand.NewPCG(roomSeed(q.Room), 0))
	var carriers, open []NodeInfo
	for _, n := range nodes {
		if !n.Headroom() {
			continue
		}
		switch {
		case n.ID == q.Self:
			// Its own word (Here) counts, not its record's list: it
			// had headroom and the media above, else it is open.
			if !q.Here {
				open = append(open, n)
			}
		case n.ID == q.Origin || slices.Contains(n.Carries, q.Room):
			carriers = append(carriers, n)
		default:
			open = append(open, n)
		}
	}
	if n, ok := choose(carriers, nil, rnd); ok {
		return n, false
	}
	if n, ok := choose(open, nil, rnd); ok {
		return n, n.ID == q.Self
	}
	return me, true
}

// roomSeed is the seed of a room's draws.
func roomSeed(room string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(room))
	return h.Sum64()
}

// PlaceViewer reads the registry and places a viewer of room, held by
// node origin, that reached this node (PlaceViewer above; here and
// placed as in ViewerQuery).
func (n *Node) PlaceViewer(ctx context.Context, room, origin string, here, placed bool) (NodeInfo, bool, error) {
	q := ViewerQuery{Room: room, Self: n.opt.NodeID, Origin: origin, Here: here, Placed: placed}
	if placed {
		node, self := PlaceViewer(nil, q)
		return node, self, nil
	}
	nodes, err := n.answeringNodes(ctx)
	if err != nil {
		return NodeInfo{}, false, err
	}
	node, self := PlaceViewer(nodes, q)
	return node, self, nil
}

// answeringNodes is the registry without the nodes that stopped renewing
// their record (dead, frozen, cut off: older than a renewal and a half by
// Redis's clock, as Answering): a viewer sent there would be stranded
// until the record runs out. This node is kept whatever its age.
func (n *Node) answeringNodes(ctx context.Context) ([]NodeInfo, error) {
	nodes, err := n.Nodes(ctx)
	if err != nil || len(nodes) == 0 {
		return nodes, err
	}
	pipe := n.rdb.Pipeline()
	left := make([]*redis.DurationCmd, len(nodes))
	for i, nd := range nodes {
		left[i] = pipe.PTTL(ctx, nodeKey(nd.ID))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	out := nodes[:0]
	for i, nd := range nodes {
		d := left[i].Val()
		if nd.ID == n.opt.NodeID || (d > 0 && n.opt.LeaseTTL-d <= n.staleAfter()) {
			out = append(out, nd)
		}
	}
	return out, nil
}
