// Package codecs is what Matinee knows of the codecs it forwards and
// records, in one place for the SFU and the recorder alike. This package
// names a stream's codec and answers, for any of them, the questions the
// forwarding path asks of every packet: does it start a keyframe (so a
// consumer can start, or switch layers, without showing a broken frame)
// and what picture size does it declare. Those read only the payload
// descriptor and the first bytes of the payload, and allocate nothing.
// It also rebuilds VP8 and VP9 frames from RTP for the recorder, with
// the descriptor parsers of vp8 and vp9.
//
// Per codec, under it: h264 (NAL units, SPS, keyframes, depacketising,
// Annex B and AVCC framing, avcC), vp8 (keyframes, picture size, the
// payload descriptor read and rewritten for temporal layers) and vp9
// (keyframes, the payload descriptor); crc is the MPEG-2 CRC-32 of MPEG-TS sections and Ogg
// pages.
package codecs

import (
	"strings"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/codecs/vp8"
	"github.com/matinee-dev/matinee/codecs/vp9"
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
	Opus  // audio/opus, which the recorder transcodes: a starting point like any audio
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
	case "audio/opus":
		return Opus
	}
	if strings.HasPrefix(strings.ToLower(mime), "audio/") {
		return Audio
	}
	return Unknown
}

// IsKeyframe reports whether an RTP payload is the first packet of a
// keyframe (or, for H.264, carries an IDR slice or the SPS that precedes
// it).
func IsKeyframe(c Codec, payload []byte) bool {
	switch c {
	case H264:
		return h264.IsKeyframe(payload)
	case VP8:
		return vp8.IsKeyframe(payload)
	case VP9:
		return vp9.IsKeyframe(payload)
	case AV1:
		return isAV1Keyframe(payload)
	case Audio, Opus:
		return true
	}
	return false
}

// isAV1Keyframe reads the aggregation header of the AV1 RTP format: N=1
// marks the first packet of a coded video sequence, which only a
// keyframe starts.
func isAV1Keyframe(p []byte) bool {
	return len(p) > 0 && p[0]&0x08 != 0
}

// Dimensions returns the picture size a keyframe's first packet declares,
// when the payload format carries it in the first bytes (VP8 does; for
// H.264 it reads an SPS sent alone or first in a STAP-A).
func Dimensions(c Codec, payload []byte) (width, height int, ok bool) {
	switch c {
	case VP8:
		return vp8.Dimensions(payload)
	case H264:
		return h264.Dimensions(payload)
	}
	return 0, 0, false
}
