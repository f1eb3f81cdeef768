package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Node states in the registry.
const (
	// StateServing nodes take new rooms.
	StateServing = "serving"
	// StateDraining nodes keep their rooms until they end but get no new
	// ones; they are about to exit.
	StateDraining = "draining"
)

// NodeInfo is one node's record in the registry, rewritten with every
// lease renewal.
type NodeInfo struct {
	ID     string `json:"id"`
	URL    string `json:"url"`
	Region string `json:"region,omitempty"`
	State  string `json:"state"`
	Cores  int    `json:"cores"`
	// CPU is the share of the node's cores its process used over the last
	// renewal interval, 0-1.
	CPU   float64 `json:"cpu"`
	Rooms int     `json:"rooms"`
	Peers int     `json:"peers"`
	// Viewers are the stage viewers (WHEP) served here and the receive
	// sides of other nodes' members whose media comes from an edge here.
	Viewers int `json:"viewers,omitempty"`
	// Carries lists the rooms whose media this node has: its edges first,
	// then the rooms it holds, at most MaxCarried (placement.go), so that
	// one registry read finds a room's carriers.
	Carries []string `json:"carries,omitempty"`
	// MaxPeers and MaxCPU are the node's headroom limits
	// (--node-max-peers, --node-max-cpu; 0: none), carried in its record
	// so that every node judges it by its own.
	MaxPeers int     `json:"maxPeers,omitempty"`
	MaxCPU   float64 `json:"maxCPU,omitempty"`
	// PacketsPerSec and EgressBitsPerSec are what its SFU forwarded to
	// subscribers over the last renewal interval.
	PacketsPerSec    float64 `json:"packetsPerSec"`
	EgressBitsPerSec float64 `json:"egressBitsPerSec"`
	StartedAt        int64   `json:"startedAt"` // Unix milliseconds
	UpdatedAt        int64   `json:"updatedAt"` // Unix milliseconds
}

// Stats are the local figures a node reports; the server reads them from
// the room manager at each renewal.
type Stats struct {
	Rooms, Peers int
	// Viewers counts the stage viewers and edge members (NodeInfo.Viewers).
	Viewers int
	// Carried are the rooms whose media is here, edges first; the record
	// keeps the first MaxCarried.
	Carried []string
	// ForwardedPackets and ForwardedBytes are totals since start; the
	// registry reports their rates.
	ForwardedPackets, ForwardedBytes uint64
}

// listNodes reads every node record in the registry, sorted by id.
func listNodes(ctx context.Context, rdb redis.UniversalClient) ([]NodeInfo, error) {
	var keys []string
	iter := rdb.Scan(ctx, 0, nodeKey("*"), 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := make([]NodeInfo, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired between SCAN and MGET
		}
		var n NodeInfo
		if err := json.Unmarshal([]byte(s), &n); err == nil && n.ID != "" {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// getNode reads one node's record; found is false once its lease lapsed.
func getNode(ctx context.Context, rdb redis.Cmdable, id string) (NodeInfo, bool, error) {
	s, err := rdb.Get(ctx, nodeKey(id)).Result()
	if err == redis.Nil {
		return NodeInfo{}, false, nil
	}
	if err != nil {
		return NodeInfo{}, false, fmt.Errorf("node %s: %w", id, err)
	}
	var n NodeInfo
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		return NodeInfo{}, false, fmt.Errorf("node %s: damaged record: %w", id, err)
	}
	return n, true, nil
}

// recordAge is how long ago node id last wrote its record, by Redis's
// clock (the key's remaining life against the TTL it is written with),
// so that the nodes' clocks do not matter; found is false when no record
// is left.
func recordAge(ctx context.Context, rdb redis.Cmdable, id string, ttl time.Duration) (age time.Duration, found bool, err error) {
	left, err := rdb.PTTL(ctx, nodeKey(id)).Result()
	if err != nil {
		return 0, false, fmt.Errorf("node %s: %w", id, err)
	}
	if left < 0 { // -2: gone; -1: no TTL, which a node never writes
		return 0, left == -1, nil
	}
	return max(ttl-left, 0), true, nil
}

// cpuMeter measures the process's CPU use between two readings.
type cpuMeter struct {
	last  time.Time
	spent time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// read returns the share of all cores used since the last reading, 0-1.
func (c *cpuMeter) read(now time.Time) float64 {
	spent := processCPU()
	var share float64
	if !c.last.IsZero() {
		if wall := now.Sub(c.last); wall > 0 {
			share = float64(spent-c.spent) / float64(wall) / float64(runtime.NumCPU())
		}
	}
	c.last, c.spent = now, spent
	return min(max(share, 0), 1)
}

// DefaultNodeID is the host name and the HTTPS port, e.g. "tv:8443".
func DefaultNodeID(port string) string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "matinee"
	}
	return h + ":" + port
}

func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("node record: %w", err)
	}
	return b, nil
}
