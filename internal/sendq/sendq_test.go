package sendq

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Items come out in the order posted, Flush returns once the sender is
// done with them, and past the bound the oldest waiting go.
func TestOrderFlushAndBound(t *testing.T) {
	q := New[int](3)
	release := make(chan struct{})
	var mu sync.Mutex
	var got []int
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(ctx, func(items []int) {
			if items[0] == 0 {
				<-release // the sender is stuck on the first
			}
			mu.Lock()
			got = append(got, items...)
			mu.Unlock()
		})
	}()
	q.Post(0)
	// Wait for Run to take 0: then 1..5 wait, and only 3 of them fit.
	for {
		q.mu.Lock()
		busy := q.busy && len(q.items) == 0
		q.mu.Unlock()
		if busy {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for i := 1; i <= 5; i++ {
		q.Post(i)
	}
	close(release)
	q.Flush(10 * time.Second)
	mu.Lock()
	if want := []int{0, 3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("sent %v, want %v", got, want)
	}
	mu.Unlock()
	cancel()
	<-done
	q.Flush(time.Second) // nothing waiting: returns at once
}
