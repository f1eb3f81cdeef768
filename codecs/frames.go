package codecs

import (
	pioncodecs "github.com/pion/rtp/codecs"
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
	var data []byte
	var start, end bool
	if a.vp9 {
		var p pioncodecs.VP9Packet
		if _, err := p.Unmarshal(payload); err != nil {
			a.broken = true
			return frame, key, lost
		}
		data, start, end = p.Payload, p.B, p.E && marker
		if start && !p.P && p.SID == 0 {
			a.key = true
		}
	} else {
		var p pioncodecs.VP8Packet
		if _, err := p.Unmarshal(payload); err != nil {
			a.broken = true
			return frame, key, lost
		}
		data, start, end = p.Payload, p.S == 1 && p.PID == 0, marker
		if start && len(data) > 0 && data[0]&1 == 0 {
			a.key = true
		}
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
