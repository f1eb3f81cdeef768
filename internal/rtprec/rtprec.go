// Package rtprec is the record format in which the depacketising fuzz
// targets (codecs' FuzzFrameAssembler, codecs/h264's FuzzDepacketizer)
// read an RTP stream, and in which scripts/fuzzseeds.go writes their
// seeds. Each packet is a flags byte (bit 0: the marker; bit 1: the next
// timestamp, 3000 ticks on), a sequence number step (1 in order, 0 a
// duplicate, more a loss), a length byte and the payload; a record cut
// short keeps what remains of its payload.
package rtprec

// Packet is one decoded record.
type Packet struct {
	Seq     uint16
	TS      uint32
	Marker  bool
	Payload []byte // a copy: the target may keep it, or clear it as a caller reusing its buffer would
}

// Decode reads every whole record header of b, numbering from sequence
// number 0 and timestamp 0.
func Decode(b []byte) []Packet {
	var out []Packet
	var seq uint16
	var ts uint32
	for len(b) >= 3 {
		flags, step, n := b[0], b[1], int(b[2])
		b = b[3:]
		n = min(n, len(b))
		seq += uint16(step)
		if flags&2 != 0 {
			ts += 3000
		}
		out = append(out, Packet{Seq: seq, TS: ts, Marker: flags&1 != 0, Payload: append([]byte(nil), b[:n]...)})
		b = b[n:]
	}
	return out
}

// Append writes one record: a packet step sequence numbers after the
// previous one, on the next timestamp when newTS.
func Append(b []byte, marker, newTS bool, step uint8, payload []byte) []byte {
	var f byte
	if marker {
		f |= 1
	}
	if newTS {
		f |= 2
	}
	b = append(b, f, step, byte(len(payload)))
	return append(b, payload...)
}
