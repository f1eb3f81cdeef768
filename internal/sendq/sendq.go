// Package sendq is a bounded first-in-first-out queue between code that
// must not block (the media core's callbacks, a session writing to a
// member on another node) and the one goroutine that sends, for the
// messages between nodes.
package sendq

import (
	"context"
	"sync"
	"time"
)

// Queue holds what was posted until Run hands it on, in order.
type Queue[T any] struct {
	max int

	mu    sync.Mutex
	items []T
	busy  bool          // Run is sending what it took
	wake  chan struct{} // a post for a Run waiting on an empty queue
	idle  chan struct{} // closed and replaced whenever the queue empties
}

// New returns a queue holding at most max waiting items: past it (the
// bus stalled) the oldest are dropped, which the ends must survive.
func New[T any](max int) *Queue[T] {
	return &Queue[T]{max: max, wake: make(chan struct{}, 1), idle: make(chan struct{})}
}

// Post queues v; it never blocks.
func (q *Queue[T]) Post(v T) {
	q.mu.Lock()
	if len(q.items) >= q.max {
		q.items = q.items[1:]
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Run hands everything waiting to send, oldest first, until ctx ends;
// what is posted meanwhile waits for the next call.
func (q *Queue[T]) Run(ctx context.Context, send func([]T)) {
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.busy = false
			close(q.idle)
			q.idle = make(chan struct{})
			q.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
			}
			continue
		}
		items := q.items
		q.items = nil
		q.busy = true
		q.mu.Unlock()
		send(items)
	}
}

// Flush waits, at most d, until everything posted before has been sent.
func (q *Queue[T]) Flush(d time.Duration) {
	q.mu.Lock()
	if len(q.items) == 0 && !q.busy {
		q.mu.Unlock()
		return
	}
	idle := q.idle
	q.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}
