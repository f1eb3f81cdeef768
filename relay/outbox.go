package relay

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// outbox sends messages in the order they were posted, on one goroutine,
// so that the media core's callbacks (which must not block) can post.
type outbox struct {
	bus Bus
	log *slog.Logger

	mu    sync.Mutex
	queue []posted
	busy  bool // a message is being sent
	wake  chan struct{}
	idle  chan struct{} // closed and replaced whenever the queue empties
}

type posted struct {
	node string
	msg  []byte
}

// maxQueue bounds the messages waiting: past it (Redis stalled), the
// oldest are dropped; every end repeats its state each renewal.
const maxQueue = 4096

func newOutbox(bus Bus, log *slog.Logger) *outbox {
	return &outbox{bus: bus, log: log, wake: make(chan struct{}, 1), idle: make(chan struct{})}
}

func (o *outbox) post(node string, msg []byte) {
	o.mu.Lock()
	if len(o.queue) >= maxQueue {
		o.queue = o.queue[1:]
	}
	o.queue = append(o.queue, posted{node, msg})
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// run sends until ctx ends.
func (o *outbox) run(ctx context.Context) {
	failing := false
	for {
		o.mu.Lock()
		if len(o.queue) == 0 {
			o.busy = false
			close(o.idle)
			o.idle = make(chan struct{})
			o.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
			}
			continue
		}
		p := o.queue[0]
		o.queue = o.queue[1:]
		o.busy = true
		o.mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := o.bus.Send(sctx, p.node, p.msg)
		cancel()
		if err != nil && !failing && ctx.Err() == nil {
			o.log.Warn("relay: sending to a node failed (later messages repeat the state)", "node", p.node, "err", err)
		}
		failing = err != nil
	}
}

// flush waits, at most d, for every posted message to be sent.
func (o *outbox) flush(d time.Duration) {
	o.mu.Lock()
	if len(o.queue) == 0 && !o.busy {
		o.mu.Unlock()
		return
	}
	idle := o.idle
	o.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}
