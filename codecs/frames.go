package codecs

import (
	"github.com/matinee-dev/matinee/codecs/vp8"
	"github.com/matinee-dev/matinee/codecs/vp9"
)

// FrameAssembler rebuilds whole VP8 or VP9 frames from RTP payloads (RFC
// 7741, RFC 9628), one frame per timestamp, for the recorder's
// transcoder. After a lost packet it drops frames until the next
// keyframe. (H.264 has its own, h264.Depacketizer: access units of NAL
// units, not one frame of bytes.)
type FrameAssembler struct {
	vp9     bool
	buf     []byte
	ts      uint32
	have    bool
	key     bool
	broken  bool
	lastSeq uint16
	seqOK   bool
	waitKey bool
}

// NewFrameAssembler returns an assembler of VP8 or VP9 frames that waits
// for the first keyframe. Any other codec is a programming error.
func NewFrameAssembler(c Codec) *FrameAssembler {
	if c != VP8 && c != VP9 {
		panic("codecs: FrameAssembler assembles VP8 or VP9 only")
	}
	return &FrameAssembler{vp9: c == VP9, waitKey: true}
}

// Push adds a packet and returns a completed frame (copied) and whether
// it is a keyframe; lost reports a sequence gap. It returns at most one
// frame: the previous one when the packet starts a new timestamp, else
// its own when it ends it.
func (a *FrameAssembler) Push(seq uint16, ts uint32, marker bool, payload []byte) (frame []byte, key, lost bool) {
	if a.seqOK && seq != a.lastSeq+1 {
		if int16(seq-a.lastSeq) <= 0 {
			return nil, false, false
		}
		a.broken, lost = true, true
	}
	a.lastSeq, a.seqOK = seq, true
	if a.have && ts != a.ts {
		frame, key = a.finish()
	}
	data, start, end, isKey, err := a.parse(payload)
	if err != nil {
		a.broken = true
		return frame, key, lost
	}
	end = end && marker
	if isKey {
		a.key = true
	}
	if !a.have {
		if !start {
			a.broken = true
		}
		a.have, a.ts = true, ts
	}
	a.buf = append(a.buf, data...)
	// A packet that both closes the previous frame (a new timestamp after
	// a frame without a marker) and ends its own returns the previous
	// one; its own stays whole in the buffer until the next packet's new
	// timestamp closes it. Returning only the later one lost the earlier,
	// keyframe or not.
	if end && frame == nil {
		frame, key = a.finish()
	}
	return frame, key, lost
}

// parse reads a packet's descriptor: the frame data it carries, whether
// it starts or ends a frame (VP8 has no end flag: only the marker ends
// one) and whether it starts a keyframe.
func (a *FrameAssembler) parse(payload []byte) (data []byte, start, end, key bool, err error) {
	if a.vp9 {
		var d vp9.Descriptor
		if err := vp9.Parse(payload, &d); err != nil {
			return nil, false, false, false, err
		}
		data = payload[d.Size:]
		return data, d.Start, d.End, d.Start && !d.Inter && d.SID == 0, nil
	}
	var d vp8.Descriptor
	if err := vp8.Parse(payload, &d); err != nil {
		return nil, false, false, false, err
	}
	data = payload[d.Size:]
	start = d.Start && d.PartID&0x07 == 0
	return data, start, true, start && len(data) > 0 && data[0]&1 == 0, nil
}

func (a *FrameAssembler) finish() ([]byte, bool) {
	buf, key, broken := a.buf, a.key, a.broken
	a.buf, a.have, a.key, a.broken = a.buf[:0], false, false, false
	if broken || len(buf) == 0 {
		a.waitKey = true
		return nil, false
	}
	if a.waitKey && !key {
		return nil, false
	}
	a.waitKey = false
	return append([]byte(nil), buf...), key
}
