package cluster

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Nodes talk to each other through Redis pub/sub, one channel per node
// (matinee:bus:<node>): the relay's control plane (relay package) sends
// its messages there. Pub/sub delivers at most once and only to a node
// subscribed at that moment; what is sent on it must be repeated or
// recoverable (the relay repeats its state every lease renewal).

// MaxMessage is the largest message Send accepts and an Inbox delivers;
// a larger one arriving is dropped.
const MaxMessage = 64 << 10

// Topic is one kind of traffic between nodes: each has a channel per
// node (matinee:<name>:<node>) and its own size limit, so that one kind
// (the members' signalling, say) never queues behind or floods another
// (the relay's pipes).
type Topic struct {
	// Name is the channel's middle part: lower-case letters.
	Name string
	// Max is the largest message sent or delivered on it.
	Max int
}

// TopicRelay is the relay's control plane (Send, Subscribe).
var TopicRelay = Topic{Name: "bus", Max: MaxMessage}

func (t Topic) channel(node string) string { return keyPrefix + t.Name + ":" + node }

// Send publishes msg on node's channel of the relay. It is not an error
// that no one listens there (the node is gone).
func (n *Node) Send(ctx context.Context, node string, msg []byte) error {
	return n.SendOn(ctx, TopicRelay, node, msg)
}

// SendOn publishes msg on node's channel of topic t.
func (n *Node) SendOn(ctx context.Context, t Topic, node string, msg []byte) error {
	if len(msg) > t.Max {
		return fmt.Errorf("%s message to node %s: %d bytes, at most %d", t.Name, node, len(msg), t.Max)
	}
	if err := n.rdb.Publish(ctx, t.channel(node), msg).Err(); err != nil {
		return fmt.Errorf("%w: send to node %s: %w", ErrUnavailable, node, err)
	}
	return nil
}

// Inbox receives the messages other nodes send this node.
type Inbox struct {
	max  int
	ps   *redis.PubSub
	c    chan []byte
	done chan struct{}
	once sync.Once
}

// Subscribe opens this node's inbox; it returns once Redis confirmed the
// subscription, so that a message sent after it is received. go-redis
// subscribes again after a lost connection (what was sent meanwhile is
// lost). Close the inbox before the node.
func (n *Node) Subscribe(ctx context.Context) (*Inbox, error) {
	return n.SubscribeOn(ctx, TopicRelay)
}

// SubscribeOn opens this node's inbox of topic t (as Subscribe).
func (n *Node) SubscribeOn(ctx context.Context, t Topic) (*Inbox, error) {
	ps := n.rdb.Subscribe(ctx, t.channel(n.opt.NodeID))
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("%w: subscribe to node %s's %s channel: %w", ErrUnavailable, n.opt.NodeID, t.Name, err)
	}
	in := &Inbox{max: t.Max, ps: ps, c: make(chan []byte, 256), done: make(chan struct{})}
	go in.pump(ps.Channel())
	return in, nil
}

// pump copies payloads to C, dropping oversized ones, until Close.
func (in *Inbox) pump(msgs <-chan *redis.Message) {
	defer close(in.c)
	for {
		select {
		case <-in.done:
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			if len(m.Payload) > in.max {
				continue
			}
			select {
			case in.c <- []byte(m.Payload):
			case <-in.done:
				return
			}
		}
	}
}

// C delivers the messages; it is closed after Close.
func (in *Inbox) C() <-chan []byte { return in.c }

// Close unsubscribes.
func (in *Inbox) Close() error {
	var err error
	in.once.Do(func() {
		close(in.done)
		err = in.ps.Close()
		for range in.c { // wait for pump to end
		}
	})
	return err
}

// Alive reports whether node id has a live record in the registry (its
// lease is renewed). An error says nothing either way.
func (n *Node) Alive(ctx context.Context, id string) (bool, error) {
	_, alive, err := getNode(ctx, n.rdb, id)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return alive, nil
}
