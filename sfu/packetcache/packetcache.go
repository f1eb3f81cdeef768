// Package packetcache keeps a published layer's recent RTP packets so
// that NACKs can be answered from them.
//
// It exists so that a layer's packets are kept once for the whole room:
// every consumer of the layer answers its subscriber's NACKs from the one
// Cache. A NACK responder per outgoing stream (pion's) keeps a copy per
// packet per subscriber instead — its history times the audience,
// ≈ 0.75 MB per subscriber at 512 packets — and copies every packet once
// more on the hot path. It is its own package so that this small piece of
// the hot path can be read, tested and benchmarked alone (like
// sfu/rtpmunge).
//
// A Cache keeps each packet's payload with the header fields it came with
// (marker, payload type, timestamp), so a packet can be sent again as it
// first was: a pipe to another node re-sends the origin's packets as they
// are. One goroutine writes (the layer's read loop); NACK answers read,
// from any goroutine.
package packetcache

import (
	"sync"

	"github.com/pion/rtp"
)

// MaxPayload bounds what the cache keeps of one packet; a payload this
// large does not fit in an Ethernet frame anyway. Larger packets are not
// kept.
const MaxPayload = 1500

// Cache is a ring of a layer's last packets by sequence number.
type Cache struct {
	mu    sync.RWMutex
	mask  uint16
	slots []cached
}

type cached struct {
	seq   uint16
	n     uint16
	valid bool
	// The header a pipe re-sends the packet with.
	marker bool
	pt     uint8
	ts     uint32
	data   [MaxPayload]byte
}

// New returns a Cache of size packets; size must be a power of two (the
// config checks it: --nack-history).
func New(size int) *Cache {
	return &Cache{mask: uint16(size - 1), slots: make([]cached, size)}
}

// Put keeps pkt's payload, replacing the packet size sequence numbers
// older.
func (pc *Cache) Put(pkt *rtp.Packet) {
	if len(pkt.Payload) == 0 || len(pkt.Payload) > MaxPayload {
		return
	}
	pc.mu.Lock()
	s := &pc.slots[pkt.SequenceNumber&pc.mask]
	s.seq, s.n, s.valid = pkt.SequenceNumber, uint16(len(pkt.Payload)), true
	s.marker, s.pt, s.ts = pkt.Marker, pkt.PayloadType, pkt.Timestamp
	copy(s.data[:], pkt.Payload)
	pc.mu.Unlock()
}

// Get copies the payload of packet seq into dst and returns its length,
// or false when the packet is no longer (or never was) kept, or does not
// fit in dst.
func (pc *Cache) Get(seq uint16, dst []byte) (int, bool) {
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	s := &pc.slots[seq&pc.mask]
	if !s.valid || s.seq != seq || int(s.n) > len(dst) {
		return 0, false
	}
	return copy(dst, s.data[:s.n]), true
}

// GetPacket is Get, with the header fields the packet came with.
func (pc *Cache) GetPacket(seq uint16, dst []byte) (n int, ts uint32, pt uint8, marker, ok bool) {
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	s := &pc.slots[seq&pc.mask]
	if !s.valid || s.seq != seq || int(s.n) > len(dst) {
		return 0, 0, 0, false, false
	}
	return copy(dst, s.data[:s.n]), s.ts, s.pt, s.marker, true
}
