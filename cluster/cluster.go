// Package cluster lets several Matinee nodes act as one service,
// coordinated through Redis: a registry of the nodes (each under a lease,
// with its load), room ownership under fenced leases, and placement of
// new rooms by two random choices. Without a Redis URL none of it runs.
//
// It knows nothing of rooms beyond their ids: the server hands it the
// local figures and room list (Options) and asks it, before a room is
// opened or joined here, which node holds it (Node.Claim).
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"runtime"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease times of the node records and of room ownership. A node renews
// its leases every DefaultLeaseRenew; a node silent for DefaultLeaseTTL
// is gone, and its rooms are free for other nodes to take.
const (
	DefaultLeaseRenew = 2 * time.Second
	DefaultLeaseTTL   = 6 * time.Second
)

// Options configure a node.
type Options struct {
	// RedisURL is redis://[user:password@]host:port/db (or rediss://).
	RedisURL string
	// NodeID names the node in the registry ([A-Za-z0-9._:-], 1-128).
	NodeID string
	// NodeURL is the base URL clients of other nodes are sent to.
	NodeURL string
	// Region is an optional label shown in the registry.
	Region string
	// LeaseRenew and LeaseTTL: DefaultLeaseRenew and DefaultLeaseTTL
	// when zero. TTL must be at least twice the renewal interval.
	LeaseRenew, LeaseTTL time.Duration
	// Stats reads the node's figures at each renewal.
	Stats func() Stats
	// Rooms lists the rooms the node serves now. A lease on a room no
	// longer listed is released at a later renewal (the room ended).
	Rooms func() []string
	// Lost is told of a room whose lease the node lost to another node:
	// it must stop serving it.
	Lost func(room string)
	// Retaken is told that the node took leases back that Redis had lost
	// (a restart without persistence): what it keeps there (room records)
	// should be written again.
	Retaken func()
	// MaxPeers and MaxCPU are this node's headroom for placing viewers
	// (NodeInfo.Headroom): peers and viewers together, and the share of
	// its cores in use, 0-1. Zero: no limit.
	MaxPeers int
	MaxCPU   float64
	Logger   *slog.Logger
}

var validNodeID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// Errors of Claim.
var (
	// ErrUnavailable is Redis not answering: nothing can be placed or
	// joined that this node does not hold already.
	ErrUnavailable = errors.New("cluster store (Redis) unavailable")
	// ErrOwnerGone is a room whose node stopped renewing its lease; it is
	// free once the lease runs out.
	ErrOwnerGone = errors.New("the room's node is not answering")
	// ErrNoNode is no serving node to place a room on.
	ErrNoNode = errors.New("no serving node in the cluster")
)

// held is a lease this node holds, and until when it may act on it: the
// moment the renewal that confirmed it was sent, plus the TTL (Redis
// counts from later, so the node stops first).
type held struct {
	lease      Lease
	validUntil time.Time
	since      time.Time
}

// pendingCount is how many rooms this node placed on another since that
// node's report of UpdatedAt.
type pendingCount struct {
	updatedAt int64
	n         int
}

// Node is this process's membership of a cluster.
type Node struct {
	opt     Options
	rdb     *redis.Client
	log     *slog.Logger
	started time.Time

	mu      sync.Mutex
	state   string
	owned   map[string]held
	pending map[string]pendingCount
	rnd     *rand.Rand
	record  string // the last record written, for Close's compare-and-delete
	cpu     cpuMeter
	last    Stats
	lastAt  time.Time

	cancel context.CancelFunc
	done   chan struct{}
}

// Start connects to Redis, registers the node (failing when Redis does
// not answer) and renews its leases until ctx ends or Close.
func Start(ctx context.Context, opt Options) (*Node, error) {
	if opt.LeaseRenew == 0 {
		opt.LeaseRenew = DefaultLeaseRenew
	}
	if opt.LeaseTTL == 0 {
		opt.LeaseTTL = DefaultLeaseTTL
	}
	if err := opt.check(); err != nil {
		return nil, err
	}
	ro, err := redis.ParseURL(opt.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis %q: %w", opt.RedisURL, err)
	}
	// Short timeouts: a join waits at most about a second for an absent
	// Redis before it is refused with a clear error.
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = time.Second, time.Second, time.Second
	ro.MaxRetries = 1
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	n := &Node{
		opt: opt, rdb: redis.NewClient(ro), log: log.With("node", opt.NodeID), started: time.Now(),
		state: StateServing, owned: map[string]held{}, pending: map[string]pendingCount{},
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), done: make(chan struct{}),
	}
	if err := n.writeRecord(ctx); err != nil {
		_ = n.rdb.Close()
		return nil, fmt.Errorf("register node %s: %w", opt.NodeID, err)
	}
	ctx, n.cancel = context.WithCancel(ctx)
	go n.loop(ctx)
	return n, nil
}

func (o Options) check() error {
	if !validNodeID.MatchString(o.NodeID) {
		return fmt.Errorf("node-id %q: want 1-128 characters of A-Z a-z 0-9 . _ : -", o.NodeID)
	}
	if o.NodeURL == "" {
		return errors.New("node-url: required in cluster mode")
	}
	if o.LeaseRenew < 10*time.Millisecond || o.LeaseTTL < 2*o.LeaseRenew {
		return fmt.Errorf("lease ttl %s must be at least twice the renewal interval %s (>= 10ms)", o.LeaseTTL, o.LeaseRenew)
	}
	return nil
}

// ID is the node's id.
func (n *Node) ID() string { return n.opt.NodeID }

// loop renews the node's record and leases every LeaseRenew.
func (n *Node) loop(ctx context.Context) {
	defer close(n.done)
	t := time.NewTicker(n.opt.LeaseRenew)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := n.renewAll(ctx)
		switch {
		case err != nil && !failing:
			n.log.Warn("cluster: renewing leases failed; rooms whose lease lapses stop taking joins", "err", err)
		case err == nil && failing:
			n.log.Info("cluster: leases renewed again")
		}
		failing = err != nil
	}
}

// renewAll writes the node's record, releases leases of rooms that ended
// and renews the others.
func (n *Node) renewAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.opt.LeaseRenew)
	defer cancel()
	if err := n.writeRecord(ctx); err != nil {
		return err
	}
	local := map[string]bool{}
	if n.opt.Rooms != nil {
		for _, id := range n.opt.Rooms() {
			local[id] = true
		}
	}
	start := time.Now()
	n.mu.Lock()
	owned := make(map[string]held, len(n.owned))
	for id, h := range n.owned {
		owned[id] = h
	}
	n.mu.Unlock()
	var firstErr error
	var ids []string
	var leases []Lease
	for id, h := range owned {
		// A room claimed a moment ago may not be open yet.
		if !local[id] && start.Sub(h.since) > n.opt.LeaseTTL {
			if _, err := release(ctx, n.rdb, id, h.lease, false); err != nil {
				firstErr = cmp(firstErr, err)
				continue
			}
			n.drop(id, h.lease)
			continue
		}
		ids = append(ids, id)
		leases = append(leases, h.lease)
	}
	results, err := renewMany(ctx, n.rdb, ids, leases, n.opt.LeaseTTL)
	if err != nil {
		return cmp(firstErr, err)
	}
	retaken := false
	for i, res := range results {
		id, l := ids[i], leases[i]
		if res == leaseLost {
			n.log.Warn("cluster: lost a room's lease to another node", "room", id, "epoch", l.Epoch)
			n.drop(id, l)
			if n.opt.Lost != nil {
				n.opt.Lost(id)
			}
			continue
		}
		retaken = retaken || res == leaseRetaken
		n.extend(id, l, start)
	}
	if retaken && n.opt.Retaken != nil {
		n.log.Info("cluster: took back leases Redis had lost")
		n.opt.Retaken()
	}
	return firstErr
}

func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// extend marks a lease confirmed by a renewal sent at start.
func (n *Node) extend(id string, l Lease, start time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h, ok := n.owned[id]; ok && h.lease == l {
		h.validUntil = start.Add(n.opt.LeaseTTL)
		n.owned[id] = h
	}
}

// drop forgets a lease if it is still l.
func (n *Node) drop(id string, l Lease) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h, ok := n.owned[id]; ok && h.lease == l {
		delete(n.owned, id)
	}
}

// writeRecord rewrites the node's registry record under its lease.
func (n *Node) writeRecord(ctx context.Context) error {
	info := n.info(time.Now())
	b, err := jsonMarshal(info)
	if err != nil {
		return err
	}
	if err := n.rdb.Set(ctx, nodeKey(n.opt.NodeID), b, n.opt.LeaseTTL).Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	n.mu.Lock()
	n.record = string(b)
	n.mu.Unlock()
	return nil
}

// info is the node's record now.
func (n *Node) info(now time.Time) NodeInfo {
	var st Stats
	if n.opt.Stats != nil {
		st = n.opt.Stats()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	info := NodeInfo{
		ID: n.opt.NodeID, URL: n.opt.NodeURL, Region: n.opt.Region, State: n.state,
		Cores: runtime.NumCPU(), CPU: n.cpu.read(now), Rooms: st.Rooms, Peers: st.Peers, Viewers: st.Viewers,
		Carries: st.Carried[:min(len(st.Carried), MaxCarried)], MaxPeers: n.opt.MaxPeers, MaxCPU: n.opt.MaxCPU,
		StartedAt: n.started.UnixMilli(), UpdatedAt: now.UnixMilli(),
	}
	if !n.lastAt.IsZero() {
		if secs := now.Sub(n.lastAt).Seconds(); secs > 0 {
			info.PacketsPerSec = float64(st.ForwardedPackets-n.last.ForwardedPackets) / secs
			info.EgressBitsPerSec = float64(st.ForwardedBytes-n.last.ForwardedBytes) * 8 / secs
		}
	}
	n.last, n.lastAt = st, now
	return info
}

// SetDraining puts the node in the draining state: it keeps its rooms but
// gets no new ones. The registry hears of it at once.
func (n *Node) SetDraining(ctx context.Context) error {
	n.mu.Lock()
	n.state = StateDraining
	n.mu.Unlock()
	return n.writeRecord(ctx)
}

// Draining reports whether SetDraining was called.
func (n *Node) Draining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state == StateDraining
}

// Nodes lists the registry: every node whose lease is alive.
func (n *Node) Nodes(ctx context.Context) ([]NodeInfo, error) {
	nodes, err := listNodes(ctx, n.rdb)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nodes, nil
}

// Owner is where a room lives: here (Self), or on Node.
type Owner struct {
	Self bool
	Node NodeInfo
}

// Claim says where room id is served, taking it for this node when it is
// free and this node serves. A room this node holds is answered without
// Redis while its lease is valid; one whose lease lapsed is renewed
// first, and lost (Options.Lost) if another node took it meanwhile. A
// free room asked of a draining node is placed on a serving one.
func (n *Node) Claim(ctx context.Context, id string) (Owner, error) {
	n.mu.Lock()
	h, mine := n.owned[id]
	n.mu.Unlock()
	if mine && time.Now().Before(h.validUntil) {
		return Owner{Self: true}, nil
	}
	if mine {
		start := time.Now()
		res, err := renew(ctx, n.rdb, id, h.lease, n.opt.LeaseTTL)
		if err != nil {
			return Owner{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if res != leaseLost {
			n.extend(id, h.lease, start)
			return Owner{Self: true}, nil
		}
		n.drop(id, h.lease)
		if n.opt.Lost != nil {
			n.opt.Lost(id)
		}
	}
	for attempt := 0; attempt < 3; attempt++ {
		l, found, err := holderOf(ctx, n.rdb, id)
		if err != nil {
			return Owner{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if found {
			return n.ownerOf(ctx, id, l)
		}
		if n.Draining() {
			node, self, err := n.Place(ctx)
			if err != nil {
				return Owner{}, err
			}
			if !self {
				return Owner{Node: node}, nil
			}
		}
		start := time.Now()
		l, err = take(ctx, n.rdb, id, n.opt.NodeID, n.opt.LeaseTTL)
		if errors.Is(err, ErrTaken) {
			continue
		}
		if err != nil {
			return Owner{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		n.mu.Lock()
		n.owned[id] = held{lease: l, validUntil: start.Add(n.opt.LeaseTTL), since: start}
		n.mu.Unlock()
		return Owner{Self: true}, nil
	}
	return Owner{}, fmt.Errorf("claim room %s: %w (several nodes raced for it; try again)", id, ErrTaken)
}

// ownerOf answers for a room another lease holds.
func (n *Node) ownerOf(ctx context.Context, id string, l Lease) (Owner, error) {
	if l.Node == n.opt.NodeID {
		// A lease of this node's previous run (same id, restarted within
		// the TTL): its rooms are gone; adopt the lease.
		start := time.Now()
		if res, err := renew(ctx, n.rdb, id, l, n.opt.LeaseTTL); err != nil || res == leaseLost {
			return Owner{}, fmt.Errorf("room %s: %w", id, cmp(err, ErrTaken))
		}
		n.mu.Lock()
		n.owned[id] = held{lease: l, validUntil: start.Add(n.opt.LeaseTTL), since: start}
		n.mu.Unlock()
		return Owner{Self: true}, nil
	}
	info, alive, err := getNode(ctx, n.rdb, l.Node)
	if err != nil {
		return Owner{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !alive || info.URL == "" {
		return Owner{}, fmt.Errorf("room %s on node %s: %w; it moves once the lease (%s) runs out", id, l.Node, ErrOwnerGone, n.opt.LeaseTTL)
	}
	// A record not rewritten for a renewal and a half is a node that
	// stopped (killed, frozen, cut off): sending a member there would
	// strand it, so the join waits for the lease to run out instead.
	age, alive, err := recordAge(ctx, n.rdb, l.Node, n.opt.LeaseTTL)
	if err != nil {
		return Owner{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !alive || age > n.staleAfter() {
		return Owner{}, fmt.Errorf("room %s on node %s: %w (its record is %s old); it moves once the lease (%s) runs out",
			id, l.Node, ErrOwnerGone, age.Round(time.Millisecond), n.opt.LeaseTTL)
	}
	return Owner{Node: info}, nil
}

// Answering reports whether node id still renews its record (a node that
// stopped is dead, frozen or cut off). An error (Redis not answering)
// says nothing: it counts as answering.
func (n *Node) Answering(ctx context.Context, id string) bool {
	age, found, err := recordAge(ctx, n.rdb, id, n.opt.LeaseTTL)
	return err != nil || (found && age <= n.staleAfter())
}

// staleAfter is the age past which a node's record says the node
// stopped: a renewal and a half (a live node rewrites it every renewal;
// the half absorbs a slow Redis round trip).
func (n *Node) staleAfter() time.Duration { return n.opt.LeaseRenew * 3 / 2 }

// Holds reports whether this node holds room id's lease (valid or not).
func (n *Node) Holds(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.owned[id]
	return ok
}

// Place picks the node for a new room by two random choices among the
// serving nodes (placement.go); self is true when it is this one.
func (n *Node) Place(ctx context.Context) (node NodeInfo, self bool, err error) {
	nodes, err := n.Nodes(ctx)
	if err != nil {
		return NodeInfo{}, false, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	pending := map[string]int{}
	for _, nd := range nodes {
		if p := n.pending[nd.ID]; p.updatedAt == nd.UpdatedAt {
			pending[nd.ID] = p.n
		}
	}
	node, ok := choose(nodes, pending, n.rnd)
	if !ok {
		return NodeInfo{}, false, ErrNoNode
	}
	n.pending[node.ID] = pendingCount{updatedAt: node.UpdatedAt, n: pending[node.ID] + 1}
	return node, node.ID == n.opt.NodeID, nil
}

// SaveSpecs writes the records of rooms this node holds (id → JSON),
// each only under its lease; a record refused (lease lost meanwhile) or
// not written is an error naming the room. Rooms it does not hold are
// left out: one being claimed right now is saved once it is held, and
// one lost is no longer this node's to write.
func (n *Node) SaveSpecs(ctx context.Context, specs map[string][]byte) error {
	var errs []error
	for id, b := range specs {
		n.mu.Lock()
		h, ok := n.owned[id]
		n.mu.Unlock()
		if !ok {
			continue
		}
		ok, err := saveSpec(ctx, n.rdb, id, h.lease, b)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrUnavailable, err))
		} else if !ok {
			errs = append(errs, fmt.Errorf("save room %s: the lease (epoch %d) was lost", id, h.lease.Epoch))
		}
	}
	return errors.Join(errs...)
}

// Spec reads a room's record; found is false when none is kept.
func (n *Node) Spec(ctx context.Context, id string) (spec []byte, found bool, err error) {
	b, err := n.rdb.HGet(ctx, keySpecs, id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: room %s record: %w", ErrUnavailable, id, err)
	}
	return b, true, nil
}

// Forget releases a deleted room's lease and its record, if this node
// still holds it.
func (n *Node) Forget(ctx context.Context, id string) error {
	n.mu.Lock()
	h, ok := n.owned[id]
	n.mu.Unlock()
	if !ok {
		return nil
	}
	if _, err := release(ctx, n.rdb, id, h.lease, true); err != nil {
		return err
	}
	n.drop(id, h.lease)
	return nil
}

// deleteRecordScript removes the node's record only if it is the one this
// process wrote last.
var deleteRecordScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Close stops renewing, releases the leases the node holds (their rooms
// have ended here; their records stay for the next node) and removes the
// node's record.
func (n *Node) Close() error {
	n.cancel()
	<-n.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.mu.Lock()
	owned := n.owned
	n.owned = map[string]held{}
	record := n.record
	n.mu.Unlock()
	var errs []error
	for id, h := range owned {
		if _, err := release(ctx, n.rdb, id, h.lease, false); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteRecordScript.Run(ctx, n.rdb, []string{nodeKey(n.opt.NodeID)}, record).Err(); err != nil {
		errs = append(errs, fmt.Errorf("remove node record: %w", err))
	}
	errs = append(errs, n.rdb.Close())
	return errors.Join(errs...)
}

// Locate says where room id is served without taking it: found is false
// for a free room (or one whose node is gone).
func (n *Node) Locate(ctx context.Context, id string) (own Owner, found bool, err error) {
	l, found, err := holderOf(ctx, n.rdb, id)
	if err != nil || !found {
		return Owner{}, false, err
	}
	if l.Node == n.opt.NodeID {
		return Owner{Self: true}, true, nil
	}
	info, alive, err := getNode(ctx, n.rdb, l.Node)
	if err != nil || !alive {
		return Owner{}, false, err
	}
	if age, alive, err := recordAge(ctx, n.rdb, l.Node, n.opt.LeaseTTL); err != nil || !alive || age > n.staleAfter() {
		return Owner{}, false, err // a stopped node: Claim says so
	}
	return Owner{Node: info}, true, nil
}
