package h264

// IsKeyframe reports whether an RTP payload (RFC 6184) starts a
// decodable picture: an IDR slice or the SPS that precedes one, sent
// alone, in a STAP-A aggregate or as the first fragment of an FU-A. It
// reads a few bytes and allocates nothing: the SFU asks it of every
// packet.
func IsKeyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := Type(p); t {
	case TypeIDR, TypeSPS:
		return true
	case TypeSTAPA:
		i := 1
		for i+2 < len(p) {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n == 0 || i+n > len(p) {
				return false
			}
			if nt := p[i] & 0x1f; nt == TypeIDR || nt == TypeSPS {
				return true
			}
			i += n
		}
	case TypeFUA:
		if len(p) < 2 {
			return false
		}
		start := p[1]&0x80 != 0
		nt := p[1] & 0x1f
		return start && (nt == TypeIDR || nt == TypeSPS)
	}
	return false
}

// Dimensions returns the picture size of an SPS carried by an RTP
// payload, alone or first in a STAP-A (as WebRTC senders put it before
// an IDR). It allocates nothing for a well-formed SPS.
func Dimensions(p []byte) (width, height int, ok bool) {
	if len(p) < 2 {
		return 0, 0, false
	}
	var s SPS
	switch Type(p) {
	case TypeSPS:
		ok = s.parse(p) == nil
	case TypeSTAPA:
		if len(p) < 4 {
			return 0, 0, false
		}
		n := int(p[1])<<8 | int(p[2])
		if 3+n > len(p) || Type(p[3:]) != TypeSPS {
			return 0, 0, false
		}
		ok = s.parse(p[3:3+n]) == nil
	}
	if !ok {
		return 0, 0, false
	}
	return s.Width, s.Height, true
}
