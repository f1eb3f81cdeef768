package sfu

import (
	"strings"
	"testing"
)

// The hint goes into every video codec's parameters, added where a codec
// had none, and nowhere else: not RTX, not audio.
func TestWithStartBitrate(t *testing.T) {
	in := strings.Join([]string{
		"v=0",
		"m=audio 9 UDP/TLS/RTP/SAVPF 111",
		"a=rtpmap:111 opus/48000/2",
		"a=fmtp:111 minptime=10;useinbandfec=1",
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
		"a=rtpmap:96 VP8/90000",
		"a=rtcp-fb:96 nack",
		"a=rtpmap:97 rtx/90000",
		"a=fmtp:97 apt=96",
		"a=rtpmap:102 H264/90000",
		"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		"a=rtpmap:103 rtx/90000",
		"a=fmtp:103 apt=102",
		"",
	}, "\r\n")
	want := strings.Join([]string{
		"v=0",
		"m=audio 9 UDP/TLS/RTP/SAVPF 111",
		"a=rtpmap:111 opus/48000/2",
		"a=fmtp:111 minptime=10;useinbandfec=1",
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
		"a=rtpmap:96 VP8/90000",
		"a=fmtp:96 x-google-start-bitrate=2500",
		"a=rtcp-fb:96 nack",
		"a=rtpmap:97 rtx/90000",
		"a=fmtp:97 apt=96",
		"a=rtpmap:102 H264/90000",
		"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f;x-google-start-bitrate=2500",
		"a=rtpmap:103 rtx/90000",
		"a=fmtp:103 apt=102",
		"",
	}, "\r\n")
	if got := withStartBitrate(in, 2500); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := withStartBitrate(want, 2500); got != want {
		t.Fatalf("applied twice:\n%s", got)
	}
	if got := withStartBitrate(in, 0); got != in {
		t.Fatal("0 changed the answer")
	}
}
