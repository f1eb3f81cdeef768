package sfu

import (
	"fmt"
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

// codecRank orders video codecs by the router's preference; lower is
// better, -1 means not accepted.
func codecRank(c webrtc.RTPCodecCapability) int {
	switch strings.ToLower(c.MimeType) {
	case "video/h264":
		if fmtpParam(c.SDPFmtpLine, "packetization-mode") != "1" {
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
		if p := fmtpParam(c.SDPFmtpLine, "profile-id"); p != "" && p != "0" {
			return -1
		}
		return 3
	case "audio/opus":
		return 0
	}
	return -1
}

// sameCodec reports whether a negotiated codec carries the same bitstream
// as a producer's, so its packets can be forwarded untouched.
func sameCodec(a, b webrtc.RTPCodecCapability) bool {
	if !strings.EqualFold(a.MimeType, b.MimeType) {
		return false
	}
	switch strings.ToLower(a.MimeType) {
	case "video/h264":
		return h264Profile(a.SDPFmtpLine) == h264Profile(b.SDPFmtpLine) &&
			fmtpParam(a.SDPFmtpLine, "packetization-mode") == fmtpParam(b.SDPFmtpLine, "packetization-mode")
	case "video/vp9":
		pa, pb := fmtpParam(a.SDPFmtpLine, "profile-id"), fmtpParam(b.SDPFmtpLine, "profile-id")
		if pa == "" {
			pa = "0"
		}
		if pb == "" {
			pb = "0"
		}
		return pa == pb
	}
	return true
}

// pickCodec chooses, among a client's negotiated codecs of one kind, the
// first (in the client's order of preference) that the router accepts, and
// the RTX codec that repairs it (if any). The client decides because only
// it knows what its encoder can produce; Matinee's web client lists H.264
// first.
func pickCodec(codecs []webrtc.RTPCodecParameters) (main webrtc.RTPCodecParameters, rtx *webrtc.RTPCodecParameters, ok bool) {
	for _, c := range codecs {
		if codecRank(c.RTPCodecCapability) >= 0 {
			main, ok = c, true
			break
		}
	}
	if !ok {
		return main, nil, false
	}
	for i, c := range codecs {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) && fmtpParam(c.SDPFmtpLine, "apt") == fmt.Sprint(main.PayloadType) {
			rtx = &codecs[i]
			break
		}
	}
	return main, rtx, true
}

// routerCodecFor returns the router's own codec (with its payload type and
// RTX) that carries the same bitstream as c, for offering to subscribers.
func routerCodecFor(c webrtc.RTPCodecCapability) (main webrtc.RTPCodecParameters, rtx *webrtc.RTPCodecParameters, ok bool) {
	all := routerCodecs()
	for _, rc := range all {
		if sameCodec(rc.RTPCodecCapability, c) && !strings.EqualFold(rc.MimeType, webrtc.MimeTypeRTX) {
			main, ok = rc, true
			break
		}
	}
	if !ok {
		return main, nil, false
	}
	for i, rc := range all {
		if strings.EqualFold(rc.MimeType, webrtc.MimeTypeRTX) && fmtpParam(rc.SDPFmtpLine, "apt") == fmt.Sprint(main.PayloadType) {
			rtx = &all[i]
		}
	}
	return main, rtx, true
}

// sectionCodecs lists the codecs an SDP m-section offers, from its rtpmap
// and fmtp lines, in the offer's order.
func sectionCodecs(md *sdp.MediaDescription, kind string) []webrtc.RTPCodecCapability {
	fmtps := map[string]string{}
	for _, a := range md.Attributes {
		if a.Key == "fmtp" {
			pt, v, _ := strings.Cut(a.Value, " ")
			fmtps[pt] = v
		}
	}
	var out []webrtc.RTPCodecCapability
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, v, _ := strings.Cut(a.Value, " ")
		name, _, _ := strings.Cut(v, "/")
		out = append(out, webrtc.RTPCodecCapability{MimeType: kind + "/" + name, SDPFmtpLine: fmtps[pt]})
	}
	return out
}
