// Package vp9 reads VP9 RTP payloads (RFC 9628) on the forwarding path:
// whether a packet starts a keyframe, from its payload descriptor.
package vp9

// Payload descriptor bits of the first byte (RFC 9628 §4.2).
const (
	flagPictureID = 0x80 // I
	flagInter     = 0x40 // P: inter-picture predicted
	flagLayers    = 0x20 // L: layer indices present
	flagStart     = 0x08 // B: start of a frame
)

// IsKeyframe reports whether an RTP payload starts a keyframe: the start
// of a frame (B) that is not inter-predicted (P=0) and, when the
// descriptor carries layer indices, belongs to the lowest spatial layer.
// It reads the flexible and the non-flexible descriptor alike.
func IsKeyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	if b0&flagInter != 0 || b0&flagStart == 0 {
		return false
	}
	i := 1
	if b0&flagPictureID != 0 {
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 { // M: 15-bit picture id
			i++
		}
		i++
	}
	if b0&flagLayers != 0 {
		if len(p) <= i {
			return false
		}
		if sid := (p[i] >> 1) & 0x07; sid != 0 {
			return false
		}
	}
	return true
}
