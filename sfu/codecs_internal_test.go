package sfu

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

func h264(fmtp string) webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtp}
}

func TestCanForward(t *testing.T) {
	cb1 := h264("packetization-mode=1;profile-level-id=42e01f")
	cb0 := h264("packetization-mode=0;profile-level-id=42e01f")
	bare := h264("") // RFC 6184: mode 0, baseline
	main1 := h264("packetization-mode=1;profile-level-id=4d001f")
	vp9p0 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, SDPFmtpLine: "profile-id=0"}
	vp9none := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9}
	vp9p2 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, SDPFmtpLine: "profile-id=2"}
	for _, c := range []struct {
		name     string
		src, dst webrtc.RTPCodecCapability
		want     bool
	}{
		{"same", cb1, cb1, true},
		{"mode 0 source to a mode 1 receiver", cb0, cb1, true},
		{"mode 1 source to a mode 0 receiver", cb1, cb0, false},
		{"no fmtp is mode 0", bare, cb0, true},
		{"no fmtp into mode 1", bare, cb1, true},
		{"mode 1 into no fmtp", cb1, bare, false},
		{"baseline to main", cb1, main1, false},
		{"vp9 profile absent is 0", vp9none, vp9p0, true},
		{"vp9 profile 2 to 0", vp9p2, vp9p0, false},
		{"different codecs", cb1, vp9p0, false},
	} {
		if got := canForward(c.src, c.dst); got != c.want {
			t.Errorf("%s: canForward = %v, want %v", c.name, got, c.want)
		}
	}
	if codecRank(bare) < 0 || codecRank(h264("packetization-mode=2;profile-level-id=42e01f")) >= 0 ||
		codecRank(h264("packetization-mode=1;profile-level-id=64001f")) >= 0 || codecRank(vp9p2) >= 0 {
		t.Error("codecRank: mode 0 is forwarded; mode 2, high profile and VP9 profile 2 are not")
	}
}

func TestAcceptedCodecsKeepOfferOrderAndRTX(t *testing.T) {
	rtx := func(pt, apt uint8) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, SDPFmtpLine: fmt.Sprintf("apt=%d", apt)}, PayloadType: webrtc.PayloadType(pt)}
	}
	prim := func(c webrtc.RTPCodecCapability, pt uint8) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{RTPCodecCapability: c, PayloadType: webrtc.PayloadType(pt)}
	}
	offer := []webrtc.RTPCodecParameters{
		prim(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, 100), rtx(101, 100),
		prim(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1}, 102), rtx(103, 102),
		prim(h264("packetization-mode=1;profile-level-id=42e01f"), 104), rtx(105, 104),
		prim(h264("packetization-mode=1;profile-level-id=64001f"), 106),
	}
	var got []string
	for _, c := range acceptedCodecs(offer) {
		got = append(got, fmt.Sprintf("%s/%d", c.MimeType, c.PayloadType))
	}
	want := "video/VP8/100 video/rtx/101 video/H264/104 video/rtx/105"
	if strings.Join(got, " ") != want {
		t.Errorf("accepted %v, want %s", got, want)
	}
	pt, rtxPT, ok := payloadTypeFor(acceptedCodecs(offer), h264("packetization-mode=0;profile-level-id=42e01f"))
	if !ok || pt != 104 || rtxPT != 105 {
		t.Errorf("mode 0 source: payload types %d/%d %v, want 104/105", pt, rtxPT, ok)
	}
}

func TestCheckUnifiedPlan(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\n"
	for _, c := range []struct {
		name, lines string
		planB       bool
	}{
		{"one track", "a=ssrc:1 cname:x\r\n", false},
		{"track and its RTX", "a=ssrc-group:FID 1 2\r\na=ssrc:1 cname:x\r\na=ssrc:2 cname:x\r\n", false},
		{"SSRC simulcast with RTX", "a=ssrc-group:SIM 1 3\r\na=ssrc-group:FID 1 2\r\na=ssrc-group:FID 3 4\r\na=ssrc:1 cname:x\r\na=ssrc:2 cname:x\r\na=ssrc:3 cname:x\r\na=ssrc:4 cname:x\r\n", false},
		{"rid simulcast", "a=rid:q send\r\na=rid:f send\r\na=simulcast:send q;f\r\na=ssrc:1 cname:x\r\na=ssrc:2 cname:x\r\n", false},
		{"two ungrouped SSRCs", "a=ssrc:1 msid:a a\r\na=ssrc:2 msid:b b\r\n", true},
		{"two tracks with RTX each", "a=ssrc-group:FID 1 2\r\na=ssrc-group:FID 3 4\r\na=ssrc:1 cname:x\r\na=ssrc:2 cname:x\r\na=ssrc:3 cname:x\r\na=ssrc:4 cname:x\r\n", true},
	} {
		var sd sdp.SessionDescription
		if err := sd.UnmarshalString(head + c.lines); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		err := checkUnifiedPlan(&sd)
		if (err != nil) != c.planB {
			t.Errorf("%s: %v, want Plan B %v", c.name, err, c.planB)
		}
	}
}
