package sfu

import (
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/codecs/vp8"
	"github.com/matinee-dev/matinee/sfu/packetcache"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Retransmission. A published video layer keeps its recent packets once,
// in a packetcache.Cache, and every consumer of it answers its
// subscriber's NACKs from there (the package says why). What a consumer
// keeps is only a small index from the sequence numbers it sent to the
// layer's own (sentPacket, 16 bytes).

// maxCachedPayload is the largest payload a layer's cache keeps, and so
// the largest a consumer or a pipe sends again.
const maxCachedPayload = packetcache.MaxPayload

// rtxBufs hold retransmissions being made: the payload, after the RTX
// header's original sequence number. Shared rather than one per consumer:
// a retransmission is sealed and sent (or copied into pion's buffers)
// before resend returns.
var rtxBufs = sync.Pool{New: func() any { return new([maxCachedPayload + 2]byte) }}

// defaultHistory is the packets kept when the worker's config says
// nothing (tests that build producers by hand).
const defaultHistory = 512

// history is how many packets caches and sent indexes keep.
func history(t *Transport) int {
	if t != nil && t.router != nil && t.router.w != nil && t.router.w.cfg.NACKHistory > 0 {
		return t.router.w.cfg.NACKHistory
	}
	return defaultHistory
}

// cache returns the layer's packet cache, made on the layer's first
// packet so that layers never sent cost nothing.
func (p *Producer) cache(idx int) *packetcache.Cache {
	l := &p.layers[idx]
	if c := l.cache.Load(); c != nil {
		return c
	}
	c := packetcache.New(history(p.transport))
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
		h := &c.hdr
		*h = rtp.Header{Version: 2, Padding: true, PayloadType: c.pt, SequenceNumber: seq, Timestamp: e.ts, SSRC: c.ssrc, Extensions: c.ext[:0]}
		if _, err := c.write(nil, h, padPayload[:]); err == nil {
			c.retransmits.Add(1)
		}
		return
	}
	cache := c.producer.layers[e.layer].cache.Load()
	if cache == nil {
		c.nackMisses.Add(1)
		return
	}
	rb := rtxBufs.Get().(*[maxCachedPayload + 2]byte)
	defer rtxBufs.Put(rb)
	n, ok := cache.Get(e.src, rb[2:])
	if !ok {
		c.nackMisses.Add(1)
		return
	}
	e.resent = now
	if e.vp8 {
		var d vp8.Descriptor
		if vp8.Parse(rb[2:2+n], &d) == nil {
			if d.HasPictureID {
				d.SetPictureID(rb[2:2+n], (d.PictureID+e.picOff)&d.PictureIDMask())
			}
			if d.HasTL0PICIDX {
				d.SetTL0PICIDX(rb[2:2+n], d.TL0PICIDX+e.tl0Off)
			}
		}
	}
	h := &c.hdr
	*h = rtp.Header{Version: 2, Marker: e.marker, PayloadType: c.pt, SequenceNumber: seq, Timestamp: e.ts, SSRC: c.ssrc, Extensions: c.ext[:0]}
	payload := rb[2 : 2+n]
	if c.rtxSSRC != 0 {
		// RFC 4588: the original sequence number, then the payload, on
		// the repair stream.
		binary.BigEndian.PutUint16(rb[:2], seq)
		h.PayloadType, h.SSRC, h.SequenceNumber = c.rtxPT, c.rtxSSRC, c.rtxSeq
		c.rtxSeq++
		payload = rb[:2+n]
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
