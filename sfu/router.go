package sfu

import (
	"fmt"
	"log/slog"
	"sync"
)

// Router is the media of one room: the transports of its peers and the
// producers they publish. Consumers are made by a receive transport from a
// producer of the same router.
type Router struct {
	w   *Worker
	id  string
	log *slog.Logger

	mu         sync.Mutex
	transports map[string]*Transport
	producers  map[string]*Producer
	closed     bool
	observers  map[int]func(*Producer)
	nextObs    int
	pipes      map[*PipeTransport]struct{} // pipe.go

	quit chan struct{}
	done chan struct{}
}

func newRouter(w *Worker, id string) *Router {
	r := &Router{
		w:          w,
		id:         id,
		log:        w.log.With("router", id),
		transports: map[string]*Transport{},
		producers:  map[string]*Producer{},
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	go r.run()
	return r
}

// ID returns the router's identifier (the room's).
func (r *Router) ID() string { return r.id }

// Producer returns the producer with the given id.
func (r *Router) Producer(id string) (*Producer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.producers[id]
	if !ok {
		return nil, fmt.Errorf("producer %q: %w", id, ErrNotFound)
	}
	return p, nil
}

// Producers returns every live producer.
func (r *Router) Producers() []*Producer {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Producer, 0, len(r.producers))
	for _, p := range r.producers {
		out = append(out, p)
	}
	return out
}

// Transport returns the transport with the given id.
func (r *Router) Transport(id string) (*Transport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.transports[id]
	if !ok {
		return nil, fmt.Errorf("transport %q: %w", id, ErrNotFound)
	}
	return t, nil
}

func (r *Router) addProducer(p *Producer) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.producers[p.id] = p
	obs := make([]func(*Producer), 0, len(r.observers))
	for _, f := range r.observers {
		obs = append(obs, f)
	}
	r.mu.Unlock()
	// Observers (recorders, the WHEP stage) need the codec, which a
	// publisher allowed several may only tell with its first packet.
	p.whenResolved(func() {
		for _, f := range obs {
			f(p)
		}
	})
	return nil
}

// OnNewProducer registers f to be called (on the publishing client's
// goroutine, so it must not block) for every producer added from now on;
// the returned function unregisters it. Recorders use it to follow the
// room's screen share.
func (r *Router) OnNewProducer(f func(*Producer)) (cancel func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.observers == nil {
		r.observers = map[int]func(*Producer){}
	}
	id := r.nextObs
	r.nextObs++
	r.observers[id] = f
	return func() {
		r.mu.Lock()
		delete(r.observers, id)
		r.mu.Unlock()
	}
}

func (r *Router) removeProducer(p *Producer) {
	r.mu.Lock()
	delete(r.producers, p.id)
	r.mu.Unlock()
}

func (r *Router) removeTransport(t *Transport) {
	r.mu.Lock()
	delete(r.transports, t.id)
	r.mu.Unlock()
}

// Close closes every pipe and transport (and so every producer and
// consumer).
func (r *Router) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	ts := make([]*Transport, 0, len(r.transports))
	for _, t := range r.transports {
		ts = append(ts, t)
	}
	pipes := make([]*PipeTransport, 0, len(r.pipes))
	for t := range r.pipes {
		pipes = append(pipes, t)
	}
	r.mu.Unlock()
	for _, t := range pipes {
		t.Close()
	}
	close(r.quit)
	<-r.done
	for _, t := range ts {
		t.Close()
	}
	r.w.removeRouter(r)
}

// Stats returns each subscriber transport's bandwidth estimate in bits per
// second, by transport id.
func (r *Router) Stats() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for id, t := range r.transports {
		if t.bwe != nil {
			out[id] = t.bwe.GetTargetBitrate()
		}
	}
	return out
}

// EstimatorStats returns the internals of each subscriber transport's
// bandwidth estimator (GCC's delay and loss estimates, the probe floor),
// by transport id: for metrics and debugging.
func (r *Router) EstimatorStats() map[string]map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]map[string]any{}
	for id, t := range r.transports {
		if t.bwe != nil {
			out[id] = t.bwe.GetStats()
		}
	}
	return out
}
