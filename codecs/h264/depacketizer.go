package h264

import "errors"

// ErrLoss reports that packets were lost: the access unit being built was
// dropped, and nothing is returned until the next IDR.
var ErrLoss = errors.New("h264: packet loss, waiting for a keyframe")

// maxAUSize bounds one access unit, so a stream that never sets the
// marker bit cannot grow memory without end.
const maxAUSize = 8 << 20

// AccessUnit is one coded picture: its NAL units, without start codes,
// and the RTP timestamp they share.
type AccessUnit struct {
	Timestamp uint32
	NALUs     [][]byte
	// Key is true when the unit holds an IDR slice.
	Key bool
}

// Depacketizer rebuilds access units from the RTP payloads of one stream
// (single NAL units, STAP-A aggregates and FU-A fragments). An access unit
// ends at the marker bit or when the timestamp changes. After a lost
// packet it drops everything until the next IDR, so what it returns always
// decodes. It copies what it keeps.
type Depacketizer struct {
	cur     AccessUnit
	size    int
	fu      []byte // FU-A being reassembled
	inFU    bool
	have    bool // cur has started
	lastSeq uint16
	seqOK   bool
	waitKey bool
	broken  bool // cur lost a packet
}

// NewDepacketizer returns a depacketizer that waits for the first IDR.
func NewDepacketizer() *Depacketizer { return &Depacketizer{waitKey: true} }

// WaitingForKey reports whether the depacketizer drops frames until an
// IDR arrives (at the start and after a loss).
func (d *Depacketizer) WaitingForKey() bool { return d.waitKey }

// Push adds one RTP packet. It returns the access unit it completed, if
// any (at most one: the previous one when this packet starts a new
// timestamp, else the current one when the marker bit is set; a unit
// both would complete waits for the next packet). err is ErrLoss
// when a gap in sequence numbers spoiled a unit.
func (d *Depacketizer) Push(seq uint16, ts uint32, marker bool, payload []byte) (*AccessUnit, error) {
	var out *AccessUnit
	var err error
	if d.seqOK && seq != d.lastSeq+1 {
		if int16(seq-d.lastSeq) <= 0 {
			return nil, nil // duplicate or late: already handled
		}
		d.broken = true
		err = ErrLoss
	}
	d.lastSeq, d.seqOK = seq, true
	if d.have && ts != d.cur.Timestamp {
		out = d.finish()
	}
	if !d.have {
		d.cur = AccessUnit{Timestamp: ts}
		d.have = true
		if err != nil {
			// The lost packet may have been this unit's start.
			d.broken = true
		}
	}
	if perr := d.payload(payload); perr != nil {
		d.broken = true
	}
	// A unit completed by the marker while the previous one is returned
	// (it ended without a marker) stays whole until the next packet's new
	// timestamp closes it: returning only the later one lost the earlier.
	if marker && out == nil {
		out = d.finish()
	}
	return out, err
}

// finish ends the current access unit and returns it unless it is
// incomplete or must be skipped.
func (d *Depacketizer) finish() *AccessUnit {
	au := d.cur
	broken := d.broken || d.inFU
	d.cur = AccessUnit{}
	d.have, d.broken, d.inFU, d.size = false, false, false, 0
	d.fu = d.fu[:0]
	if broken {
		d.waitKey = true
		return nil
	}
	if len(au.NALUs) == 0 {
		return nil
	}
	au.Key = IsKey(au.NALUs)
	if d.waitKey && !au.Key {
		return nil
	}
	d.waitKey = false
	return &au
}

var errPayload = errors.New("h264: malformed payload")

func (d *Depacketizer) add(nalu []byte) error {
	// An access unit holds NAL units of types 1-23 only: an aggregate or
	// fragment inside a STAP-A, or an FU-A naming one, is malformed (a
	// muxer would write it into a recording as it came).
	if len(nalu) == 0 || Type(nalu) < 1 || Type(nalu) > 23 {
		return errPayload
	}
	d.size += len(nalu)
	if d.size > maxAUSize {
		return errPayload
	}
	d.cur.NALUs = append(d.cur.NALUs, append([]byte(nil), nalu...))
	return nil
}

func (d *Depacketizer) payload(p []byte) error {
	if len(p) < 1 {
		return errPayload
	}
	switch t := Type(p); {
	case t >= 1 && t <= 23:
		if d.inFU {
			d.inFU = false
			return errPayload
		}
		return d.add(p)
	case t == TypeSTAPA:
		p = p[1:]
		for len(p) > 0 {
			if len(p) < 2 {
				return errPayload
			}
			n := int(p[0])<<8 | int(p[1])
			p = p[2:]
			if n == 0 || n > len(p) {
				return errPayload
			}
			if err := d.add(p[:n]); err != nil {
				return err
			}
			p = p[n:]
		}
		return nil
	case t == TypeFUA:
		if len(p) < 2 {
			return errPayload
		}
		start, end := p[1]&0x80 != 0, p[1]&0x40 != 0
		if start {
			if d.inFU {
				d.inFU = false
				return errPayload
			}
			d.fu = append(d.fu[:0], p[0]&0xe0|p[1]&0x1f)
			d.inFU = true
		} else if !d.inFU {
			return errPayload // middle of a fragment whose start we lost
		}
		d.fu = append(d.fu, p[2:]...)
		if len(d.fu) > maxAUSize {
			d.inFU = false
			return errPayload
		}
		if end {
			d.inFU = false
			return d.add(d.fu)
		}
		return nil
	}
	return errPayload // STAP-B, MTAP, FU-B: not in packetization-mode 1
}
