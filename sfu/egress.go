package sfu

import (
	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/rtp"
)

// egress is a consumer's way out: where its renumbered packets go. Every
// kind of subscriber sits behind it, so the forwarding path (forward.go)
// does not know which it is writing to:
//
//   - srtpEgress: the SFU's own SRTP path of a WebRTC receive transport
//     (srtpout.go), sealed into the read loop's batch, one sendmmsg for
//     every subscriber's copy;
//   - pionEgress: pion's path, the TrackLocalWriter pion gave the
//     consumer when it bound the track (interceptors, pion's SRTP, ICE);
//   - directEgress: Go code in this process (a recorder), through a
//     PacketWriter;
//   - *plainConsumer: plain RTP over UDP to a tool such as ffmpeg
//     (plain.go).
//
// writeRTP is called with the consumer's lock held, on the producer's
// read goroutine (or a NACK's or probe's): it must not block, must not
// keep h or payload (both are reused), and must not allocate. b, when not
// nil, is the caller's batch, which it flushes once every consumer has its
// copy; an egress that cannot batch writes at once. It returns the bytes
// put on the wire.
type egress interface {
	writeRTP(b *udpbatch.Batch, h *rtp.Header, payload []byte) (int, error)
}

// pionEgress hands packets to pion's writer for the consumer's track.
type pionEgress struct{ w PacketWriter }

func (e pionEgress) writeRTP(_ *udpbatch.Batch, h *rtp.Header, payload []byte) (int, error) {
	return e.w.WriteRTP(h, payload)
}

// directEgress hands packets to Go code (DirectTransport).
type directEgress struct{ w PacketWriter }

func (e directEgress) writeRTP(_ *udpbatch.Batch, h *rtp.Header, payload []byte) (int, error) {
	return e.w.WriteRTP(h, payload)
}

// srtpEgress is a consumer's share of its transport's own SRTP path: the
// path, and the id of the transport-wide sequence number extension in the
// consumer's m-section (0: not negotiated there, the packet goes without).
type srtpEgress struct {
	o    *srtpOut
	twcc uint8
}

func (e *srtpEgress) writeRTP(b *udpbatch.Batch, h *rtp.Header, payload []byte) (int, error) {
	return e.o.write(b, h, payload, e.twcc)
}

// bindWebRTC sets, with c.mu held, the consumer's way out once pion has
// bound its track to w: the receive transport's own SRTP path o when it
// took one (setupOut moves consumers bound before that), pion's otherwise.
func (c *Consumer) bindWebRTC(w PacketWriter, twccID uint8, o *srtpOut) {
	c.twccID = twccID
	c.pionOut = pionEgress{w: w}
	c.writer = &c.pionOut
	if o != nil {
		c.useOwnSRTP(o)
	}
}

// useOwnSRTP moves a bound consumer onto the own SRTP path o, with c.mu
// held. The move is one way, as the transport's (srtpout.go).
func (c *Consumer) useOwnSRTP(o *srtpOut) {
	if c.writer == nil {
		return // not bound: bindWebRTC chooses
	}
	c.srtpOut = srtpEgress{o: o, twcc: c.twccID}
	c.writer = &c.srtpOut
}
