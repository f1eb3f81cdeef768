package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Room ownership. A room is held by one node under a lease, the key
// room:<id> = "<node>|<epoch>" with a TTL. The epoch, a counter per room
// in the hash "epochs", only grows: a node takes a free room by raising
// it (HINCRBY) and then setting the lease with SET NX PX; renewing,
// releasing and writing the room's record are compare-and-set scripts on
// the exact lease value, so a node whose lease lapsed and was taken can
// neither renew it, nor delete it, nor overwrite what the new owner
// wrote. Nothing is ever deleted unconditionally.

// Key names, all under one prefix so that an operator can see (and a
// test can check) everything a cluster keeps.
const (
	keyPrefix = "matinee:"
	keyEpochs = keyPrefix + "epochs" // hash: room → newest epoch
	keySpecs  = keyPrefix + "rooms"  // hash: room → its stored settings (JSON)
)

func nodeKey(id string) string { return keyPrefix + "node:" + id }
func roomKey(id string) string { return keyPrefix + "room:" + id }

// Lease is one node's hold on one room.
type Lease struct {
	Node  string
	Epoch int64
}

func (l Lease) value() string { return l.Node + "|" + strconv.FormatInt(l.Epoch, 10) }

// parseLease reads a lease value; ok is false for anything else.
func parseLease(v string) (Lease, bool) {
	node, e, ok := strings.Cut(v, "|")
	if !ok || node == "" {
		return Lease{}, false
	}
	n, err := strconv.ParseInt(e, 10, 64)
	if err != nil || n < 1 {
		return Lease{}, false
	}
	return Lease{Node: node, Epoch: n}, true
}

// renewScript extends a lease its holder still has. A lease that is gone
// (expired while Redis was away, or lost with a Redis restart) is taken
// back only if no node has raised the room's epoch since: then nobody
// else can have held it meanwhile. It answers 1 (renewed), 2 (taken back)
// or 0 (lost: another node holds it or held it since).
var renewScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then return 0 end
local e = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
local mine = tonumber(ARGV[4])
if e > mine then return 0 end
if e < mine then redis.call('HSET', KEYS[2], ARGV[3], ARGV[4]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
`)

// releaseScript deletes a lease only if it is still the caller's; with
// ARGV[2] = "1" it also forgets the room's record (the room was deleted).
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then
  redis.call('HDEL', KEYS[2], ARGV[3])
end
return 1
`)

// fencedHSetScript writes a room's record only while the caller holds the
// room's lease: a node that lost it cannot overwrite the new owner's.
var fencedHSetScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
`)

// ErrTaken is a room another node holds.
var ErrTaken = errors.New("room is held by another node")

// take makes node the holder of a free room: the epoch goes up first, then
// SET NX PX claims the lease. When another node holds it, the answer is
// ErrTaken with that node's lease.
func take(ctx context.Context, rdb redis.Cmdable, roomID, node string, ttl time.Duration) (Lease, error) {
	epoch, err := rdb.HIncrBy(ctx, keyEpochs, roomID, 1).Result()
	if err != nil {
		return Lease{}, fmt.Errorf("take room %s: epoch: %w", roomID, err)
	}
	l := Lease{Node: node, Epoch: epoch}
	ok, err := rdb.SetNX(ctx, roomKey(roomID), l.value(), ttl).Result()
	if err != nil {
		return Lease{}, fmt.Errorf("take room %s: %w", roomID, err)
	}
	if ok {
		return l, nil
	}
	holder, found, err := holderOf(ctx, rdb, roomID)
	if err != nil {
		return Lease{}, err
	}
	if !found { // expired between the two calls: the caller may try again
		return Lease{}, fmt.Errorf("take room %s: %w (it just expired)", roomID, ErrTaken)
	}
	return holder, ErrTaken
}

// holderOf reads a room's lease; found is false for a free room.
func holderOf(ctx context.Context, rdb redis.Cmdable, roomID string) (Lease, bool, error) {
	v, err := rdb.Get(ctx, roomKey(roomID)).Result()
	if errors.Is(err, redis.Nil) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("room %s owner: %w", roomID, err)
	}
	l, ok := parseLease(v)
	if !ok {
		return Lease{}, false, fmt.Errorf("room %s owner: malformed lease %q", roomID, v)
	}
	return l, true, nil
}

// renewResult is what renewing a lease found.
type renewResult int

const (
	leaseLost renewResult = iota
	leaseRenewed
	leaseRetaken
)

func renew(ctx context.Context, rdb redis.Scripter, roomID string, l Lease, ttl time.Duration) (renewResult, error) {
	n, err := renewScript.Run(ctx, rdb, []string{roomKey(roomID), keyEpochs},
		l.value(), ttl.Milliseconds(), roomID, l.Epoch).Int()
	if err != nil {
		return leaseLost, fmt.Errorf("renew room %s: %w", roomID, err)
	}
	return renewResult(n), nil
}

// release gives a lease up if it is still l; forget also drops the room's
// record (the room was deleted, not moved). The epoch stays: were it
// reset, a node still holding an old, higher epoch could take the room
// back from its new owner.
func release(ctx context.Context, rdb redis.Scripter, roomID string, l Lease, forget bool) (bool, error) {
	f := "0"
	if forget {
		f = "1"
	}
	n, err := releaseScript.Run(ctx, rdb, []string{roomKey(roomID), keySpecs}, l.value(), f, roomID).Int()
	if err != nil {
		return false, fmt.Errorf("release room %s: %w", roomID, err)
	}
	return n == 1, nil
}

// saveSpec writes a room's record under its lease.
func saveSpec(ctx context.Context, rdb redis.Scripter, roomID string, l Lease, spec []byte) (bool, error) {
	n, err := fencedHSetScript.Run(ctx, rdb, []string{roomKey(roomID), keySpecs}, l.value(), roomID, spec).Int()
	if err != nil {
		return false, fmt.Errorf("save room %s: %w", roomID, err)
	}
	return n == 1, nil
}

// renewMany renews many leases in one round trip (a pipeline of the
// renewal script), loading the script first if Redis lost it (a
// restart). Any error fails the whole round: the leases are then left
// to lapse by themselves if Redis stays away.
func renewMany(ctx context.Context, rdb *redis.Client, ids []string, ls []Lease, ttl time.Duration) ([]renewResult, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	run := func() ([]*redis.Cmd, error) {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(ids))
		for i, id := range ids {
			cmds[i] = renewScript.EvalSha(ctx, pipe, []string{roomKey(id), keyEpochs}, ls[i].value(), ttl.Milliseconds(), id, ls[i].Epoch)
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := renewScript.Load(ctx, rdb).Err(); err != nil {
			return nil, fmt.Errorf("renew %d rooms: load script: %w", len(ids), err)
		}
		cmds, err = run()
	}
	if err != nil {
		return nil, fmt.Errorf("renew %d rooms: %w", len(ids), err)
	}
	out := make([]renewResult, len(cmds))
	for i, c := range cmds {
		n, err := c.Int()
		if err != nil {
			return nil, fmt.Errorf("renew room %s: %w", ids[i], err)
		}
		out[i] = renewResult(n)
	}
	return out, nil
}
