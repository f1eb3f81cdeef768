package sfu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/dtls/v3"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Payload types the SFU uses when it offers (receive transports). When a
// client offers, its own payload types are kept.
const (
	ptOpus      = 111
	ptH264CB    = 102
	ptH264CBRTX = 103
	ptH264Main  = 104
	ptH264MRTX  = 105
	ptVP8       = 96
	ptVP8RTX    = 97
	ptVP9       = 98
	ptVP9RTX    = 99
	// Packetization-mode 0 and plain-baseline variants: registered so that
	// pion matches them exactly in a client's offer; the SFU never offers
	// them itself (routerCodecFor prefers the mode-1 entries above).
	ptH264CB0    = 106
	ptH264CB0RTX = 107
	ptH264M0     = 108
	ptH264M0RTX  = 109
	ptH264B      = 112
	ptH264BRTX   = 113
	ptH264B0     = 114
	ptH264B0RTX  = 115
)

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"},
	{Type: webrtc.TypeRTCPFBTransportCC},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
	{Type: webrtc.TypeRTCPFBNACK},
	{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
}

// routerCodecs lists the codecs a Router accepts, video in order of
// preference: H.264 first, because phones decode it in hardware and the
// recorder remuxes it without transcoding.
func routerCodecs() []webrtc.RTPCodecParameters {
	rtx := func(pt, apt webrtc.PayloadType) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", apt)},
			PayloadType:        pt,
		}
	}
	video := func(mime, fmtp string, pt webrtc.PayloadType) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: videoFeedback},
			PayloadType:        pt,
		}
	}
	return []webrtc.RTPCodecParameters{
		{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
				SDPFmtpLine:  "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1",
				RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}},
			},
			PayloadType: ptOpus,
		},
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", ptH264CB),
		rtx(ptH264CBRTX, ptH264CB),
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", ptH264Main),
		rtx(ptH264MRTX, ptH264Main),
		video(webrtc.MimeTypeVP8, "", ptVP8),
		rtx(ptVP8RTX, ptVP8),
		video(webrtc.MimeTypeVP9, "profile-id=0", ptVP9),
		rtx(ptVP9RTX, ptVP9),
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f", ptH264CB0),
		rtx(ptH264CB0RTX, ptH264CB0),
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f", ptH264M0),
		rtx(ptH264M0RTX, ptH264M0),
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", ptH264B),
		rtx(ptH264BRTX, ptH264B),
		video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f", ptH264B0),
		rtx(ptH264B0RTX, ptH264B0),
	}
}

func registerCodecs(me *webrtc.MediaEngine) error {
	for _, c := range routerCodecs() {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := me.RegisterCodec(c, kind); err != nil {
			return fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	exts := []struct {
		uri   string
		kinds []webrtc.RTPCodecType
	}{
		{sdp.SDESMidURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
		{sdp.SDESRTPStreamIDURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
		{sdp.SDESRepairRTPStreamIDURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
		{sdp.ABSSendTimeURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
		{sdp.TransportCCURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
		{sdp.AudioLevelURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}},
	}
	for _, e := range exts {
		for _, k := range e.kinds {
			if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, k); err != nil {
				return fmt.Errorf("register extension %s: %w", e.uri, err)
			}
		}
	}
	return nil
}

// srtpProfiles puts AES-128-GCM first: it costs a fraction of
// AES-CM-HMAC-SHA1-80 per packet, and every current browser offers it.
func srtpProfiles() []dtls.SRTPProtectionProfile {
	return []dtls.SRTPProtectionProfile{
		dtls.SRTP_AEAD_AES_128_GCM,
		dtls.SRTP_AEAD_AES_256_GCM,
		dtls.SRTP_AES128_CM_HMAC_SHA1_80,
	}
}

// fmtpParam returns one parameter of an fmtp line.
func fmtpParam(line, key string) string {
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// acceptedText names what the router forwards, for refusals.
const acceptedText = "Opus; H.264 constrained baseline (42xxxx) or main (4dxxxx) profile with packetization-mode 0 or 1 (no packetization-mode means 0); VP8; VP9 profile 0"

// h264Profile classifies an H.264 profile-level-id by profile_idc and the
// constraint flags that matter for decoding: "cb" (constrained baseline,
// which baseline with constraint_set1 is), "main", or "other".
func h264Profile(fmtp string) string {
	pli := strings.ToLower(fmtpParam(fmtp, "profile-level-id"))
	if len(pli) != 6 {
		return "cb" // RFC 6184 default is 42000a: baseline
	}
	switch {
	case pli[:2] == "42":
		return "cb"
	case pli[:2] == "4d":
		return "main"
	}
	return "other"
}

// h264Mode is an H.264 format's packetization-mode; RFC 6184 section 8.1
// makes an absent one 0 (single NAL unit mode).
func h264Mode(fmtp string) string {
	if m := fmtpParam(fmtp, "packetization-mode"); m != "" {
		return m
	}
	return "0"
}

// vp9Profile is a VP9 format's profile-id, 0 when absent (RFC 9628).
func vp9Profile(fmtp string) string {
	if p := fmtpParam(fmtp, "profile-id"); p != "" {
		return p
	}
	return "0"
}

func isRTX(c webrtc.RTPCodecCapability) bool {
	return strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX)
}

// codecRank orders codecs by the router's preference; lower is better,
// -1 means not forwarded. H.264 in packetization-mode 0 or 1 is
// forwarded: a mode-0 stream is single NAL units, which a mode-1
// receiver takes too (see canForward). VP9 profile 2 (10-bit), AV1 and
// H.265 are not: the recorder and the keyframe logic know none of them.
func codecRank(c webrtc.RTPCodecCapability) int {
	switch strings.ToLower(c.MimeType) {
	case "video/h264":
		if m := h264Mode(c.SDPFmtpLine); m != "0" && m != "1" {
			return -1
		}
		switch h264Profile(c.SDPFmtpLine) {
		case "cb":
			return 0
		case "main":
			return 1
		}
		return -1
	case "video/vp8":
		return 2
	case "video/vp9":
		if vp9Profile(c.SDPFmtpLine) != "0" {
			return -1
		}
		return 3
	case "audio/opus":
		return 0
	}
	return -1
}

// sameCodec reports whether two formats describe the same bitstream.
func sameCodec(a, b webrtc.RTPCodecCapability) bool {
	return canForward(a, b) && canForward(b, a)
}

// canForward reports whether packets of a source in format src can be
// forwarded untouched to a receiver that negotiated format dst. For H.264
// the profile must match and the packetization modes be compatible: a
// mode-0 source (single NAL unit packets only) suits a mode-1 receiver,
// but a mode-1 source, which fragments (FU-A) and aggregates (STAP-A),
// does not suit a mode-0 receiver.
func canForward(src, dst webrtc.RTPCodecCapability) bool {
	if !strings.EqualFold(src.MimeType, dst.MimeType) {
		return false
	}
	switch strings.ToLower(src.MimeType) {
	case "video/h264":
		if h264Profile(src.SDPFmtpLine) != h264Profile(dst.SDPFmtpLine) {
			return false
		}
		ms, md := h264Mode(src.SDPFmtpLine), h264Mode(dst.SDPFmtpLine)
		return ms == md || ms == "0" && md == "1"
	case "video/vp9":
		return vp9Profile(src.SDPFmtpLine) == vp9Profile(dst.SDPFmtpLine)
	}
	return true
}

// acceptedCodecs keeps, in the given order, every codec the router
// forwards and the RTX formats that repair them (each right after its
// codec): what an answer may carry so the client sends whichever of
// them it has.
func acceptedCodecs(codecs []webrtc.RTPCodecParameters) []webrtc.RTPCodecParameters {
	var out []webrtc.RTPCodecParameters
	for _, c := range codecs {
		if isRTX(c.RTPCodecCapability) || codecRank(c.RTPCodecCapability) < 0 {
			continue
		}
		out = append(out, c)
		for _, r := range codecs {
			if isRTXFor(r, uint8(c.PayloadType)) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// primaryCodecs drops the RTX formats.
func primaryCodecs(codecs []webrtc.RTPCodecParameters) []webrtc.RTPCodecParameters {
	var out []webrtc.RTPCodecParameters
	for _, c := range codecs {
		if !isRTX(c.RTPCodecCapability) {
			out = append(out, c)
		}
	}
	return out
}

// payloadTypeFor returns the payload type, among negotiated codecs, that
// can carry a source in format src, and that of its RTX (0: none).
func payloadTypeFor(codecs []webrtc.RTPCodecParameters, src webrtc.RTPCodecCapability) (pt, rtxPT uint8, ok bool) {
	for _, c := range codecs {
		if isRTX(c.RTPCodecCapability) || !canForward(src, c.RTPCodecCapability) {
			continue
		}
		pt = uint8(c.PayloadType)
		for _, r := range codecs {
			if isRTXFor(r, pt) {
				rtxPT = uint8(r.PayloadType)
				break
			}
		}
		return pt, rtxPT, true
	}
	return 0, 0, false
}

// routerCodecFor returns the router's own codec (with its payload type and
// RTX) that can carry a source in format c, for offering to subscribers.
func routerCodecFor(c webrtc.RTPCodecCapability) (main webrtc.RTPCodecParameters, rtx *webrtc.RTPCodecParameters, ok bool) {
	all := routerCodecs()
	for _, rc := range all {
		if !isRTX(rc.RTPCodecCapability) && canForward(c, rc.RTPCodecCapability) {
			main, ok = rc, true
			break
		}
	}
	if !ok {
		return main, nil, false
	}
	for i, rc := range all {
		if isRTXFor(rc, uint8(main.PayloadType)) {
			rtx = &all[i]
		}
	}
	return main, rtx, true
}

// routerCodecsFor lists the router's codecs (with RTX) for every format a
// producer may turn out to send, the first one first, without repeats.
func routerCodecsFor(formats []webrtc.RTPCodecCapability) []webrtc.RTPCodecParameters {
	var out []webrtc.RTPCodecParameters
	seen := map[webrtc.PayloadType]bool{}
	for _, f := range formats {
		main, rtx, ok := routerCodecFor(f)
		if !ok || seen[main.PayloadType] {
			continue
		}
		seen[main.PayloadType] = true
		out = append(out, main)
		if rtx != nil {
			out = append(out, *rtx)
		}
	}
	return out
}

// sectionPayloadCodecs lists the codecs an SDP m-section offers, with their
// payload types, clock rates, fmtp lines and feedback, in the offer's
// order.
func sectionPayloadCodecs(md *sdp.MediaDescription, kind string) []webrtc.RTPCodecParameters {
	fmtps := map[string]string{}
	fbs := map[string][]webrtc.RTCPFeedback{}
	for _, a := range md.Attributes {
		pt, v, _ := strings.Cut(a.Value, " ")
		switch a.Key {
		case "fmtp":
			fmtps[pt] = v
		case "rtcp-fb":
			typ, param, _ := strings.Cut(strings.TrimSpace(v), " ")
			fbs[pt] = append(fbs[pt], webrtc.RTCPFeedback{Type: typ, Parameter: param})
		}
	}
	var out []webrtc.RTPCodecParameters
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, v, _ := strings.Cut(a.Value, " ")
		n, err := strconv.ParseUint(pt, 10, 7)
		if err != nil {
			continue
		}
		parts := strings.Split(strings.TrimSpace(v), "/")
		c := webrtc.RTPCodecParameters{PayloadType: webrtc.PayloadType(n)}
		c.MimeType = kind + "/" + parts[0]
		if len(parts) > 1 {
			r, _ := strconv.ParseUint(parts[1], 10, 32)
			c.ClockRate = uint32(r)
		}
		if len(parts) > 2 {
			ch, _ := strconv.ParseUint(parts[2], 10, 16)
			c.Channels = uint16(ch)
		}
		c.SDPFmtpLine = fmtps[pt]
		c.RTCPFeedback = append(append([]webrtc.RTCPFeedback(nil), fbs[pt]...), fbs["*"]...)
		out = append(out, c)
	}
	return out
}

// sectionCodecs lists the formats an SDP m-section offers, in its order.
func sectionCodecs(md *sdp.MediaDescription, kind string) []webrtc.RTPCodecCapability {
	var out []webrtc.RTPCodecCapability
	for _, c := range sectionPayloadCodecs(md, kind) {
		out = append(out, c.RTPCodecCapability)
	}
	return out
}

// describeFormats names formats for an error message, e.g.
// "H264 (packetization-mode=2;profile-level-id=64001f), VP9 (profile-id=2)".
func describeFormats(formats []webrtc.RTPCodecCapability) string {
	var parts []string
	for _, f := range formats {
		if isRTX(f) {
			continue
		}
		_, name, _ := strings.Cut(f.MimeType, "/")
		if f.SDPFmtpLine != "" {
			name += " (" + f.SDPFmtpLine + ")"
		}
		parts = append(parts, name)
	}
	if len(parts) == 0 {
		return "no codec"
	}
	return strings.Join(parts, ", ")
}
