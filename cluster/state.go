package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// A room's party state (chat history, playback, queue, its members and
// their roles) is kept beside its lease, so the node that takes the room
// over after its node died or drained carries on with it. Written only
// under the lease, like the room's record; it expires StateTTL after its
// last write, so a room nobody comes back to leaves nothing behind.

// StateTTL is how long a room's state outlives its last write.
const StateTTL = 24 * 60 * 60 // seconds

func stateKey(id string) string { return keyPrefix + "state:" + id }

// fencedSetScript writes KEYS[2] with a TTL only while KEYS[1] is the
// caller's lease.
var fencedSetScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
`)

// fencedDelScript deletes KEYS[2] only while KEYS[1] is the caller's
// lease.
var fencedDelScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[2]) + 1
`)

// ErrNotHeld is a write to a room this node does not hold (any more).
var ErrNotHeld = errors.New("room not held by this node")

// SaveState writes a room's party state, only under this node's lease.
func (n *Node) SaveState(ctx context.Context, id string, state []byte) error {
	l, ok := n.lease(id)
	if !ok {
		return fmt.Errorf("save state of room %s: %w", id, ErrNotHeld)
	}
	w, err := fencedSetScript.Run(ctx, n.rdb, []string{roomKey(id), stateKey(id)}, l.value(), state, StateTTL).Int()
	if err != nil {
		return fmt.Errorf("%w: save state of room %s: %w", ErrUnavailable, id, err)
	}
	if w != 1 {
		return fmt.Errorf("save state of room %s: the lease (epoch %d) was lost: %w", id, l.Epoch, ErrNotHeld)
	}
	return nil
}

// State reads a room's party state; found is false when none is kept.
func (n *Node) State(ctx context.Context, id string) (state []byte, found bool, err error) {
	b, err := n.rdb.Get(ctx, stateKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: state of room %s: %w", ErrUnavailable, id, err)
	}
	return b, true, nil
}

// DropState deletes the state of a room that ended for good here (its
// last member left, or it was deleted), only under this node's lease.
func (n *Node) DropState(ctx context.Context, id string) error {
	l, ok := n.lease(id)
	if !ok {
		return fmt.Errorf("drop state of room %s: %w", id, ErrNotHeld)
	}
	if _, err := fencedDelScript.Run(ctx, n.rdb, []string{roomKey(id), stateKey(id)}, l.value()).Int(); err != nil {
		return fmt.Errorf("%w: drop state of room %s: %w", ErrUnavailable, id, err)
	}
	return nil
}

// lease is this node's lease on a room, if it holds one.
func (n *Node) lease(id string) (Lease, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.owned[id]
	return h.lease, ok
}

// Specs reads every kept room record (id → JSON): the rooms made through
// the API, whichever node holds them now, or none.
func (n *Node) Specs(ctx context.Context) (map[string][]byte, error) {
	m, err := n.rdb.HGetAll(ctx, keySpecs).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: room records: %w", ErrUnavailable, err)
	}
	out := make(map[string][]byte, len(m))
	for id, v := range m {
		out[id] = []byte(v)
	}
	return out, nil
}
