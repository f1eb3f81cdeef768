package cluster

import "math/rand/v2"

// Placement of a new room: two serving nodes drawn at random, the less
// loaded of the two wins. Always taking the least loaded node herds a
// burst of new rooms onto one node until the next refresh of the figures
// (every node sees the same "least loaded"); two random choices spread
// the burst and still avoid the busy nodes. Draining nodes never get a
// room.

// Score is how loaded a node is, for placement: its rooms (with those
// placed on it since its last report), a quarter room per peer, and a
// penalty once its CPU is more than half busy.
func Score(n NodeInfo, pending int) float64 {
	s := float64(n.Rooms+pending) + float64(n.Peers)/4
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
