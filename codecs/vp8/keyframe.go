package vp8

// IsKeyframe reports whether an RTP payload is the first packet of a
// keyframe: it starts the first partition (S=1, PID=0) and the frame
// tag's P bit is 0. It inlines into its callers, which then make the one
// call to keyframeStart: the forwarding path asks this of every VP8
// packet.
func IsKeyframe(p []byte) bool { return keyframeStart(p) >= 0 }

// Dimensions returns the picture size a keyframe's first packet declares
// in its frame header (RFC 6386 §9.1).
func Dimensions(p []byte) (width, height int, ok bool) {
	i := keyframeStart(p)
	if i < 0 || len(p) < i+10 {
		return 0, 0, false
	}
	// Frame tag (3 bytes), start code 9d 01 2a, then 14-bit sizes.
	if p[i+3] != 0x9d || p[i+4] != 0x01 || p[i+5] != 0x2a {
		return 0, 0, false
	}
	w := int(p[i+6]) | int(p[i+7]&0x3f)<<8
	h := int(p[i+8]) | int(p[i+9]&0x3f)<<8
	return w, h, w > 0 && h > 0
}

// keyframeStart returns the offset of the VP8 bitstream of a keyframe's
// first packet (after the descriptor), or -1 when p is not one. It only
// skips the descriptor's fields (Parse reads them; FuzzParse checks the
// two agree).
func keyframeStart(p []byte) int {
	if len(p) < 1 || p[0]&0x10 == 0 || p[0]&0x07 != 0 { // S, PID
		return -1
	}
	i := 1
	if p[0]&0x80 != 0 { // X: extension byte
		if len(p) < 2 {
			return -1
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: picture id, one byte or two (M)
			if len(p) <= i {
				return -1
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX byte
			i++
		}
	}
	if i >= len(p) || p[i]&0x01 != 0 { // P: an inter frame
		return -1
	}
	return i
}
