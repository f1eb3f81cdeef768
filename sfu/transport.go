package sfu

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/sfu/bwe"
	"github.com/pion/rtcp"
)

// Transports by role, as in mediasoup: a transport is one connection
// carrying media one way.
//
//   - SendTransport (send.go): a WebRTC client's producers coming in;
//   - RecvTransport (recv.go): consumers going out to a WebRTC client;
//   - DirectTransport (direct.go): consumers handing packets to Go code in
//     this process (recorders, plain RTP, the pipes between routers).
//
// The two WebRTC ones share WebRTCTransport (webrtc.go): the
// PeerConnection, ICE and DTLS. Every one of them shares Transport, below:
// what the router knows of a transport, its producers and consumers, and
// the close that cascades to them.

// Direction says which way media flows on a transport, seen from the
// client: a Send transport carries the client's producers to the SFU, a
// Recv transport carries consumers to the client (a direct transport's
// consumers count as Recv).
type Direction int

// Transport directions.
const (
	Send Direction = iota
	Recv
)

func (d Direction) String() string {
	if d == Send {
		return "send"
	}
	return "recv"
}

// transportOpts is what every transport is made with.
type transportOpts struct {
	Direction Direction
	// Owner identifies the peer; a transport never consumes producers of
	// the same owner.
	Owner string
}

// Transport is the part every transport shares, whatever its role. The
// router holds its transports by it; producers and consumers point to it.
type Transport struct {
	id     string
	router *Router
	opts   transportOpts
	log    *slog.Logger
	// role is the SendTransport, RecvTransport or DirectTransport this is
	// the shared part of (nil in tests that build one bare).
	role transportRole

	mu        sync.Mutex
	producers map[string]*Producer
	consumers map[string]*Consumer
	closed    bool

	connected atomic.Bool
	wg        sync.WaitGroup
	// writeRTCP sends RTCP to the client (nil without a PeerConnection).
	writeRTCP func([]rtcp.Packet) error
	// bwe estimates the subscriber's bandwidth (RecvTransport).
	bwe *bwe.Estimator
	// alloc is the layer allocator's state, owned by the router's tick.
	alloc allocState
	// lastReports is when the consumers' sender reports last went out
	// (router tick only).
	lastReports time.Time
}

// transportRole is what a role adds to the shared part's life.
type transportRole interface {
	// consumerRemoved is told of a consumer that left the transport;
	// closing says whether the transport is closing.
	consumerRemoved(c *Consumer, closing bool)
	// beginClose runs when Close starts, before producers and consumers
	// close; endClose after they have, before Close waits for the
	// transport's goroutines.
	beginClose()
	endClose()
}

// newTransport makes the shared part of a transport in router r; the
// role's constructor registers it (register) once it is complete.
func newTransport(r *Router, dir Direction, owner, kind string) *Transport {
	t := &Transport{
		id:        newID("tr"),
		router:    r,
		opts:      transportOpts{Direction: dir, Owner: owner},
		producers: map[string]*Producer{},
		consumers: map[string]*Consumer{},
	}
	t.log = r.log.With("transport", t.id, "direction", kind)
	return t
}

// register adds the transport to its router, unless the router closed.
func (t *Transport) register() error {
	r := t.router
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.transports[t.id] = t
	return nil
}

// ID returns the transport's identifier.
func (t *Transport) ID() string { return t.id }

// Direction returns which way media flows.
func (t *Transport) Direction() Direction { return t.opts.Direction }

// Owner returns the owner given at creation.
func (t *Transport) Owner() string { return t.opts.Owner }

// Connected reports whether ICE and DTLS are up (always, for a direct
// transport).
func (t *Transport) Connected() bool { return t.connected.Load() }

func (t *Transport) consumerList() []*Consumer {
	out := make([]*Consumer, 0, len(t.consumers))
	for _, c := range t.consumers {
		out = append(out, c)
	}
	return out
}

// Consumers returns the transport's live consumers.
func (t *Transport) Consumers() []*Consumer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.consumerList()
}

// Producers returns the transport's live producers.
func (t *Transport) Producers() []*Producer {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*Producer, 0, len(t.producers))
	for _, p := range t.producers {
		out = append(out, p)
	}
	return out
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// hold counts one more piece of work that Close waits for (t.wg), unless
// the transport is closed already; the caller calls t.wg.Done when it ends.
func (t *Transport) hold() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

// addProducer makes p, which the router has, one of the transport's.
func (t *Transport) addProducer(p *Producer) {
	t.mu.Lock()
	t.producers[p.id] = p
	p.in.producer.Store(p)
	t.mu.Unlock()
}

// addConsumer makes c one of the transport's, unless it is closed.
func (t *Transport) addConsumer(c *Consumer) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	t.consumers[c.id] = c
	return nil
}

// removeConsumer detaches a closed consumer; its role does the rest
// (a receive transport renegotiates).
func (t *Transport) removeConsumer(c *Consumer) {
	t.mu.Lock()
	_, ok := t.consumers[c.id]
	delete(t.consumers, c.id)
	closed := t.closed
	t.mu.Unlock()
	if ok && t.role != nil {
		t.role.consumerRemoved(c, closed)
	}
}

func (t *Transport) removeProducer(p *Producer) {
	t.mu.Lock()
	delete(t.producers, p.id)
	if p.in.producer.Load() == p {
		p.in.producer.Store(nil)
	}
	t.mu.Unlock()
}

// Close closes the transport's producers and consumers, then its
// connection, and waits for its goroutines.
func (t *Transport) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	ps := make([]*Producer, 0, len(t.producers))
	for _, p := range t.producers {
		ps = append(ps, p)
	}
	cs := t.consumerList()
	t.mu.Unlock()
	if t.role != nil {
		t.role.beginClose()
	}
	for _, p := range ps {
		p.Close()
	}
	for _, c := range cs {
		c.Close()
	}
	if t.role != nil {
		t.role.endClose()
	}
	t.wg.Wait()
	t.router.removeTransport(t)
}
