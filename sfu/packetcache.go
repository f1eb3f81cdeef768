package sfu

import (
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/codecs/vp8"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Retransmission. A published video layer keeps its recent packets once,
// in a packetCache, and every consumer of it answers its subscriber's
// NACKs from there: the cost is one copy per packet for the whole room.
// A NACK responder per outgoing stream (pion's) keeps a copy per packet
// per subscriber instead — its history times the audience, ≈ 0.75 MB per
// subscriber at 512 packets — and copies every packet once more on the
// hot path. What a consumer keeps is only a small index from the
// sequence numbers it sent to the layer's own (sentPacket, 16 bytes).

// maxCachedPayload bounds what the cache keeps of one packet; a payload
// this large does not fit in an Ethernet frame anyway.
const maxCachedPayload = 1500

// defaultHistory is the packets kept when the worker's config says
// nothing (tests that build producers by hand).
const defaultHistory = 512

// packetCache is a ring of a layer's last packets' payloads by sequence
// number. One goroutine writes (the layer's read loop); NACK answers read.
type packetCache struct {
	mu    sync.RWMutex
	mask  uint16
	slots []cachedPacket
}

type cachedPacket struct {
	seq   uint16
	n     uint16
	valid bool
	// The header a pipe re-sends the packet with (pipe.go).
	marker bool
	pt     uint8
	ts     uint32
	data   [maxCachedPayload]byte
}

func newPacketCache(size int) *packetCache {
	return &packetCache{mask: uint16(size - 1), slots: make([]cachedPacket, size)}
}

// put keeps pkt's payload, replacing the packet size sequence numbers
// older.
func (pc *packetCache) put(pkt *rtp.Packet) {
	if len(pkt.Payload) == 0 || len(pkt.Payload) > maxCachedPayload {
		return
	}
	pc.mu.Lock()
	s := &pc.slots[pkt.SequenceNumber&pc.mask]
	s.seq, s.n, s.valid = pkt.SequenceNumber, uint16(len(pkt.Payload)), true
	s.marker, s.pt, s.ts = pkt.Marker, pkt.PayloadType, pkt.Timestamp
	copy(s.data[:], pkt.Payload)
	pc.mu.Unlock()
}

// get copies the payload of packet seq into dst and returns its length,
// or false when the packet is no longer (or never was) kept.
func (pc *packetCache) get(seq uint16, dst []byte) (int, bool) {
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	s := &pc.slots[seq&pc.mask]
	if !s.valid || s.seq != seq || int(s.n) > len(dst) {
		return 0, false
	}
	return copy(dst, s.data[:s.n]), true
}

// getPacket is get, with the header fields the packet came with.
func (pc *packetCache) getPacket(seq uint16, dst []byte) (n int, ts uint32, pt uint8, marker, ok bool) {
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	s := &pc.slots[seq&pc.mask]
	if !s.valid || s.seq != seq || int(s.n) > len(dst) {
		return 0, 0, 0, false, false
	}
	return copy(dst, s.data[:s.n]), s.ts, s.pt, s.marker, true
}

// history is how many packets caches and sent indexes keep.
func history(t *Transport) int {
	if t != nil && t.router != nil && t.router.w != nil && t.router.w.cfg.NACKHistory > 0 {
		return t.router.w.cfg.NACKHistory
	}
	return defaultHistory
}

// cache returns the layer's packet cache, made on the layer's first
// packet so that layers never sent cost nothing.
func (p *Producer) cache(idx int) *packetCache {
	l := &p.layers[idx]
	if c := l.cache.Load(); c != nil {
		return c
	}
	c := newPacketCache(history(p.transport))
	if !l.cache.CompareAndSwap(nil, c) {
		return l.cache.Load()
	}
	return c
}

// sentPacket maps one sequence number a consumer sent to the layer packet
// it carried.
type sentPacket struct {
	seq    uint16 // as sent to the subscriber
	src    uint16 // the layer's
	ts     uint32 // as sent
	layer  int8
	marker bool
	valid  bool
	// pad marks a bandwidth probe's padding packet: it holds a sequence
	// number of the stream like media does, so a subscriber that lost it
	// NACKs it, and is sent it again rather than left with a hole.
	pad bool
	// vp8 is set when the VP8 ids were rewritten on the way out (the
	// temporal filter's offsets, temporal.go): a retransmission carries
	// the same ids as the original did.
	vp8    bool
	tl0Off uint8
	picOff uint16
	// resent is when it was last retransmitted (ms on the consumer's
	// clock, plus one; 0: never), so that a NACK repeated at once sends
	// it once.
	resent uint32
}

// resendGap is the least time between two retransmissions of a packet:
// a receiver NACKs again only after about a round trip, so a repeat
// sooner is the same loss reported twice.
const resendGap = 10 * time.Millisecond

// note records, with c.mu held, that seq went out carrying the layer's
// packet src.
func (c *Consumer) note(seq uint16, ts uint32, marker bool, layer int, src uint16, vp8IDs bool) {
	if c.sent == nil {
		return
	}
	e := &c.sent[seq&c.sentMask]
	*e = sentPacket{seq: seq, src: src, ts: ts, layer: int8(layer), marker: marker, valid: true}
	if vp8IDs {
		e.vp8, e.picOff, e.tl0Off = true, c.tl.picOff, c.tl.tl0Off
	}
}

// notePad records, with c.mu held, that seq went out as padding.
func (c *Consumer) notePad(seq uint16, ts uint32) {
	if c.sent == nil {
		return
	}
	c.sent[seq&c.sentMask] = sentPacket{seq: seq, ts: ts, valid: true, pad: true}
}

// handleNACK retransmits what the subscriber reports lost and can still
// be found, as RTX when the subscriber negotiated it.
func (c *Consumer) handleNACK(n *rtcp.TransportLayerNack) {
	if c.sent == nil {
		return
	}
	for _, pair := range n.Nacks {
		pair.Range(func(seq uint16) bool {
			c.resend(seq)
			return true
		})
	}
}

func (c *Consumer) resend(seq uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writer == nil || c.closed {
		return
	}
	if c.current < 0 {
		// Paused: the picture comes back at a keyframe, so old packets
		// are of no use, and on the congested link that paused it a
		// burst of them would be lost again (and spoil the probe that
		// is to find out whether the link recovered).
		return
	}
	e := &c.sent[seq&c.sentMask]
	if !e.valid || e.seq != seq {
		c.nackMisses.Add(1)
		return
	}
	// Milliseconds since the consumer was made, plus one: 0 is "never".
	now := uint32(time.Since(c.born)/time.Millisecond) + 1
	if e.resent != 0 && now-e.resent < uint32(resendGap/time.Millisecond) {
		return
	}
	if e.pad {
		// Padding again, on the media stream: there is nothing to
		// repair but the hole in the sequence numbers.
		e.resent = now
		c.padBuf[len(c.padBuf)-1] = byte(len(c.padBuf))
		h := &c.hdr
		*h = rtp.Header{Version: 2, Padding: true, PayloadType: c.pt, SequenceNumber: seq, Timestamp: e.ts, SSRC: c.ssrc, Extensions: c.ext[:0]}
		if _, err := c.write(nil, h, c.padBuf[:]); err == nil {
			c.retransmits.Add(1)
		}
		return
	}
	cache := c.producer.layers[e.layer].cache.Load()
	if cache == nil {
		c.nackMisses.Add(1)
		return
	}
	n, ok := cache.get(e.src, c.rtxBuf[2:])
	if !ok {
		c.nackMisses.Add(1)
		return
	}
	e.resent = now
	if e.vp8 {
		var d vp8.Descriptor
		if vp8.Parse(c.rtxBuf[2:2+n], &d) == nil {
			if d.HasPictureID {
				d.SetPictureID(c.rtxBuf[2:2+n], (d.PictureID+e.picOff)&d.PictureIDMask())
			}
			if d.HasTL0PICIDX {
				d.SetTL0PICIDX(c.rtxBuf[2:2+n], d.TL0PICIDX+e.tl0Off)
			}
		}
	}
	h := &c.hdr
	*h = rtp.Header{Version: 2, Marker: e.marker, PayloadType: c.pt, SequenceNumber: seq, Timestamp: e.ts, SSRC: c.ssrc, Extensions: c.ext[:0]}
	payload := c.rtxBuf[2 : 2+n]
	if c.rtxSSRC != 0 {
		// RFC 4588: the original sequence number, then the payload, on
		// the repair stream.
		binary.BigEndian.PutUint16(c.rtxBuf[:2], seq)
		h.PayloadType, h.SSRC, h.SequenceNumber = c.rtxPT, c.rtxSSRC, c.rtxSeq
		c.rtxSeq++
		payload = c.rtxBuf[:2+n]
	}
	if _, err := c.write(nil, h, payload); err == nil {
		c.retransmits.Add(1)
	}
}

// Retransmits returns how many packets the consumer sent again on NACK,
// and how many NACKed packets it no longer had.
func (c *Consumer) Retransmits() (sent, missed uint64) {
	return c.retransmits.Load(), c.nackMisses.Load()
}

func isRTXFor(cp webrtc.RTPCodecParameters, pt uint8) bool {
	return strings.EqualFold(cp.MimeType, webrtc.MimeTypeRTX) && fmtpParam(cp.SDPFmtpLine, "apt") == strconv.Itoa(int(pt))
}
