package bwe

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/pion/rtcp"
)

// ack is one packet's fate in a TWCC report.
type ack struct {
	seq      uint16
	received bool
	arrival  time.Time // on the receiver's clock; only differences matter
}

// appendAcks expands a transport-wide CC report into per-packet
// acknowledgements with arrival times, appended to dst (which may be a
// reused slice: nothing is allocated once it has room).
func appendAcks(dst []ack, fb *rtcp.TransportLayerCC) []ack {
	start := len(dst)
	// No more than the ring remembers: a report claiming more (at most
	// 65,535) cannot be matched beyond that, and would only grow dst.
	n := min(int(fb.PacketStatusCount), ringSize)
	seq := fb.BaseSequenceNumber
	for _, c := range fb.PacketChunks {
		switch ch := c.(type) {
		case *rtcp.RunLengthChunk:
			got := isReceived(ch.PacketStatusSymbol)
			for i := uint16(0); i < ch.RunLength && len(dst)-start < n; i++ {
				dst = append(dst, ack{seq: seq, received: got})
				seq++
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range ch.SymbolList {
				if len(dst)-start >= n {
					break
				}
				dst = append(dst, ack{seq: seq, received: isReceived(sym)})
				seq++
			}
		}
	}
	t := time.Unix(0, 0).Add(time.Duration(fb.ReferenceTime) * 64 * time.Millisecond)
	d := 0
	for i := start; i < len(dst); i++ {
		if !dst[i].received {
			continue
		}
		if d >= len(fb.RecvDeltas) {
			dst[i].received = false
			continue
		}
		t = t.Add(time.Duration(fb.RecvDeltas[d].Delta) * time.Microsecond)
		d++
		dst[i].arrival = t
	}
	return dst
}

func isReceived(symbol uint16) bool {
	return symbol == rtcp.TypeTCCPacketReceivedSmallDelta || symbol == rtcp.TypeTCCPacketReceivedLargeDelta
}

// errFeedback reports a transport-wide CC report that does not parse.
var errFeedback = errors.New("bwe: malformed transport-wide cc feedback")

// appendAcksRaw is appendAcks straight from the wire: fb is one RTCP
// transport-wide CC packet (draft-holmer-rmcat-transport-wide-cc-
// extensions-01 §3.1), header included. pion/rtcp's parse costs an
// allocation per packet reported, for every subscriber ten times a
// second; this one allocates nothing once dst has room.
func appendAcksRaw(dst []ack, fb []byte) ([]ack, error) {
	// Header (4), sender and media SSRC (8), base sequence number and
	// status count (4), reference time and feedback count (4).
	if len(fb) < 20 {
		return dst, errFeedback
	}
	// The length field, not the buffer, bounds the packet; it must
	// still cover the fixed fields read below, or a 20-byte buffer
	// whose header says 8 would be cut short of them.
	l := (int(binary.BigEndian.Uint16(fb[2:])) + 1) * 4
	if l < 20 || l > len(fb) {
		return dst, errFeedback
	}
	fb = fb[:l]
	base := binary.BigEndian.Uint16(fb[12:])
	count := int(binary.BigEndian.Uint16(fb[14:]))
	ref := uint32(fb[16])<<16 | uint32(fb[17])<<8 | uint32(fb[18])

	// walk calls f with each packet's status symbol (0 not received, 1
	// small delta, 2 large delta, 3 reserved) and returns where the
	// chunks end, or -1 if they run past the packet.
	walk := func(f func(i int, sym uint8)) int {
		p, i := 20, 0
		for i < count {
			if p+2 > len(fb) {
				return -1
			}
			c := binary.BigEndian.Uint16(fb[p:])
			p += 2
			switch {
			case c&0x8000 == 0: // run length: 2-bit symbol, 13-bit length
				s := uint8(c >> 13 & 3)
				for run := int(c & 0x1fff); run > 0 && i < count; run-- {
					f(i, s)
					i++
				}
			case c&0x4000 == 0: // status vector: 14 one-bit symbols
				for k := 13; k >= 0 && i < count; k-- {
					f(i, uint8(c>>uint(k)&1))
					i++
				}
			default: // status vector: 7 two-bit symbols
				for k := 6; k >= 0 && i < count; k-- {
					f(i, uint8(c>>uint(2*k)&3))
					i++
				}
			}
		}
		return p
	}
	deltas := walk(func(int, uint8) {})
	if deltas < 0 {
		return dst, errFeedback
	}
	// No more than the ring remembers: a report claiming more (at most
	// 65,535) cannot be matched beyond that, and would only grow dst.
	n := min(count, ringSize)
	t := time.Unix(0, 0).Add(time.Duration(ref) * 64 * time.Millisecond)
	p := deltas
	walk(func(i int, sym uint8) {
		if i >= n {
			return
		}
		a := ack{seq: base + uint16(i)}
		switch {
		case sym == 1 && p+1 <= len(fb):
			t = t.Add(time.Duration(fb[p]) * 250 * time.Microsecond)
			p++
			a.received, a.arrival = true, t
		case sym == 2 && p+2 <= len(fb):
			t = t.Add(time.Duration(int16(binary.BigEndian.Uint16(fb[p:]))) * 250 * time.Microsecond)
			p += 2
			a.received, a.arrival = true, t
		}
		dst = append(dst, a)
	})
	return dst, nil
}
