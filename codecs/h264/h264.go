// Package h264 is H.264 for the SFU and the recorder alike. For the
// forwarding path it tells, on each RTP payload (RFC 6184,
// packetization-mode 1), whether a keyframe starts and what picture size
// its SPS declares, without allocating. For the recorder it turns the
// payloads into access units and describes their parameter sets the way
// FLV, MP4 and MPEG-TS want them: AVCDecoderConfigurationRecord,
// length-prefixed (AVCC) or start-code (Annex B) framing, and the picture
// from the SPS. One SPS reader serves both.
package h264

// NAL unit types used here (ITU-T H.264 table 7-1, RFC 6184 §5.2).
const (
	TypeSlice = 1
	TypeIDR   = 5
	TypeSEI   = 6
	TypeSPS   = 7
	TypePPS   = 8
	TypeAUD   = 9
	TypeSTAPA = 24
	TypeFUA   = 28
)

// Type returns the type of a NAL unit (its first byte's low 5 bits).
func Type(nalu []byte) int {
	if len(nalu) == 0 {
		return 0
	}
	return int(nalu[0] & 0x1f)
}

// IsKey reports whether an access unit holds an IDR slice.
func IsKey(nalus [][]byte) bool {
	for _, n := range nalus {
		if Type(n) == TypeIDR {
			return true
		}
	}
	return false
}

// AVCC returns the NAL units with 4-byte big-endian length prefixes, as
// FLV and MP4 carry them.
func AVCC(nalus [][]byte) []byte {
	n := 0
	for _, u := range nalus {
		n += 4 + len(u)
	}
	out := make([]byte, 0, n)
	for _, u := range nalus {
		l := len(u)
		out = append(out, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
		out = append(out, u...)
	}
	return out
}

// SplitAVCC splits length-prefixed NAL units (4-byte lengths). The slices
// alias b.
func SplitAVCC(b []byte) ([][]byte, bool) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			return out, false
		}
		l := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		b = b[4:]
		if l > len(b) {
			return out, false
		}
		out = append(out, b[:l])
		b = b[l:]
	}
	return out, true
}

// AnnexB returns the NAL units each behind a 4-byte start code, as MPEG-TS
// carries them.
func AnnexB(nalus [][]byte) []byte {
	n := 0
	for _, u := range nalus {
		n += 4 + len(u)
	}
	out := make([]byte, 0, n)
	for _, u := range nalus {
		out = append(out, 0, 0, 0, 1)
		out = append(out, u...)
	}
	return out
}

// SplitAnnexB splits an Annex B byte stream at its start codes into
// non-empty NAL units. The slices alias b.
func SplitAnnexB(b []byte) [][]byte {
	var out [][]byte
	start := -1
	i := 0
	for i+2 < len(b) {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				for end > start && b[end-1] == 0 {
					end--
				}
				if end > start { // two start codes in a row frame nothing
					out = append(out, b[start:end])
				}
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 && start < len(b) {
		out = append(out, b[start:])
	}
	return out
}
