package sfu

import (
	"fmt"

	"github.com/pion/rtp"
)

// PacketWriter receives a direct consumer's packets, already renumbered
// (continuous sequence numbers and timestamps across pauses and layer
// switches) and starting on a keyframe. WriteRTP is called on the
// producer's read goroutine: it must not block, and must copy what it
// keeps (payload and header are reused after it returns).
type PacketWriter interface {
	WriteRTP(h *rtp.Header, payload []byte) (int, error)
}

// NewDirectTransport creates an in-process transport: its consumers hand
// packets to Go code instead of a PeerConnection. Recorders and plain-RTP
// senders are built on it; they are consumers like any other, so closing a
// producer closes them too.
func (r *Router) NewDirectTransport(owner string) (*Transport, error) {
	t := &Transport{
		id:        newID("tr"),
		router:    r,
		opts:      TransportOptions{Direction: Recv, Owner: owner},
		direct:    true,
		producers: map[string]*Producer{},
		inbound:   map[string]*inbound{},
		consumers: map[string]*Consumer{},
	}
	t.log = r.log.With("transport", t.id, "direction", "direct")
	t.connected.Store(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	r.transports[t.id] = t
	return t, nil
}

// ConsumeDirect forwards producer p to w through a direct transport. The
// first video packet w sees is a keyframe (one is requested at once).
func (t *Transport) ConsumeDirect(p *Producer, w PacketWriter) (*Consumer, error) {
	return t.consumeWith(p, directEgress{w: w})
}

// consumeWith forwards producer p through e, on a direct transport.
func (t *Transport) consumeWith(p *Producer, e egress) (*Consumer, error) {
	if !t.direct {
		return nil, fmt.Errorf("consume direct on a WebRTC transport: %w", ErrInvalidState)
	}
	if p.transport.router != t.router {
		return nil, fmt.Errorf("producer %s is in another router: %w", p.id, ErrNotFound)
	}
	c := newConsumer(t, p, false)
	c.writer = e
	c.ssrc = newSSRC()
	c.pt = uint8(p.payloadType())
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	t.consumers[c.id] = c
	t.mu.Unlock()
	if err := p.addConsumer(c); err != nil {
		c.Close()
		return nil, err
	}
	c.restart()
	return c, nil
}
