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

// DirectTransport is an in-process transport: its consumers hand packets
// to Go code instead of a PeerConnection (DirectTransport.Consume), and
// in-process sources (plain RTP, pipes from other routers) publish on it.
// Recorders, plain-RTP senders and pipes are built on it; their producers
// and consumers are like any other, so closing a producer closes them too,
// and closing the router closes the transport.
type DirectTransport struct {
	*Transport
}

// NewDirectTransport creates an in-process transport (see DirectTransport).
func (r *Router) NewDirectTransport(owner string) (*DirectTransport, error) {
	t := &DirectTransport{Transport: newTransport(r, Recv, owner, "direct")}
	t.role = t
	t.connected.Store(true)
	if err := t.register(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *DirectTransport) consumerRemoved(*Consumer, bool) {}
func (t *DirectTransport) beginClose()                     {}
func (t *DirectTransport) endClose()                       {}

// Consume forwards producer p to w. The first video packet w sees is a
// keyframe (one is requested at once).
func (t *DirectTransport) Consume(p *Producer, w PacketWriter) (*Consumer, error) {
	return t.consumeWith(p, directEgress{w: w})
}

// consumeWith forwards producer p through e.
func (t *DirectTransport) consumeWith(p *Producer, e egress) (*Consumer, error) {
	if p.transport.router != t.router {
		return nil, fmt.Errorf("producer %s is in another router: %w", p.id, ErrNotFound)
	}
	c := newConsumer(t.Transport, p, false)
	c.writer = e
	c.ssrc = newSSRC()
	c.pt = uint8(p.payloadType())
	if err := t.addConsumer(c); err != nil {
		return nil, err
	}
	if err := p.addConsumer(c); err != nil {
		c.Close()
		return nil, err
	}
	c.restart()
	return c, nil
}
