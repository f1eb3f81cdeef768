// Package keyframe tells whether an RTP payload starts a decodable picture,
// so a consumer can start (or switch layers) without showing a broken frame.
// It reads only the payload descriptor and the first bytes of the codec
// payload: cheap enough to run on every packet.
package keyframe

import (
	"strings"

	"github.com/matinee-dev/matinee/codecs/h264"
)

// Codec selects the payload format. Its zero value never reports a keyframe.
type Codec uint8

// Codecs the SFU forwards.
const (
	Unknown Codec = iota
	H264
	VP8
	VP9
	AV1
	Audio // every audio packet is a valid starting point
)

// FromMime maps an RTP mime type ("video/H264") to a Codec.
func FromMime(mime string) Codec {
	switch strings.ToLower(mime) {
	case "video/h264":
		return H264
	case "video/vp8":
		return VP8
	case "video/vp9":
		return VP9
	case "video/av1":
		return AV1
	}
	if strings.HasPrefix(strings.ToLower(mime), "audio/") {
		return Audio
	}
	return Unknown
}

// Is reports whether payload is the first packet of a keyframe (or, for
// H.264, carries an IDR slice or the SPS that precedes it).
func Is(c Codec, payload []byte) bool {
	switch c {
	case H264:
		return h264.IsKeyframe(payload)
	case VP8:
		return isVP8(payload)
	case VP9:
		return isVP9(payload)
	case AV1:
		return isAV1(payload)
	case Audio:
		return true
	}
	return false
}

// isVP8 parses the RFC 7741 payload descriptor, then checks the P bit of
// the VP8 frame header in the first partition's first packet.
func isVP8(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x := p[0]&0x80 != 0
	s := p[0]&0x10 != 0
	pid := p[0] & 0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) < 2 {
			return false
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: picture id
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 { // 15-bit picture id
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
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

// isVP9 checks the flexible/non-flexible descriptor of RFC 9628: a keyframe
// starts a frame (B), is not inter-predicted (P=0) and, with layer indices,
// belongs to the lowest spatial layer.
func isVP9(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	if b0&0x40 != 0 { // P: inter-picture predicted
		return false
	}
	if b0&0x08 == 0 { // B: start of frame
		return false
	}
	i := 1
	if b0&0x80 != 0 { // I: picture id
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 {
			i++
		}
		i++
	}
	if b0&0x20 != 0 { // L: layer indices
		if len(p) <= i {
			return false
		}
		if sid := (p[i] >> 1) & 0x07; sid != 0 {
			return false
		}
	}
	return true
}

// isAV1 reads the aggregation header of the AV1 RTP format: N=1 marks the
// first packet of a coded video sequence, which only a keyframe starts.
func isAV1(p []byte) bool {
	return len(p) > 0 && p[0]&0x08 != 0
}

// Dimensions returns the picture size a keyframe's first packet declares,
// when the payload format carries it in the first bytes (VP8 does; for
// H.264 it reads an SPS sent alone or first in a STAP-A).
func Dimensions(c Codec, p []byte) (width, height int, ok bool) {
	switch c {
	case VP8:
		i := vp8PayloadStart(p)
		if i < 0 || len(p) < i+10 || p[i]&0x01 != 0 {
			return 0, 0, false
		}
		// Frame tag (3 bytes), start code 9d 01 2a, then 14-bit sizes.
		if p[i+3] != 0x9d || p[i+4] != 0x01 || p[i+5] != 0x2a {
			return 0, 0, false
		}
		w := int(p[i+6]) | int(p[i+7]&0x3f)<<8
		h := int(p[i+8]) | int(p[i+9]&0x3f)<<8
		return w, h, w > 0 && h > 0
	case H264:
		return h264.Dimensions(p)
	}
	return 0, 0, false
}

// vp8PayloadStart returns the offset of the VP8 payload after the RFC 7741
// descriptor, or -1.
func vp8PayloadStart(p []byte) int {
	if len(p) < 1 {
		return -1
	}
	i := 1
	if p[0]&0x80 != 0 {
		if len(p) < 2 {
			return -1
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 {
			if len(p) <= i {
				return -1
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 {
			i++
		}
		if ext&0x30 != 0 {
			i++
		}
	}
	if i >= len(p) {
		return -1
	}
	return i
}
