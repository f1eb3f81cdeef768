package sfu

import (
	"strconv"
	"strings"
)

// A publisher's encoder starts at its congestion controller's first
// estimate: Chromium's is 300 kbit/s, and at that a screen share starts
// at a quarter of its size (640×360 of 1920×1080 with one quality) and
// climbs a step every few seconds: 1920 px only after 20–25 s on a free
// LAN. The answer to a publisher says where to start instead, in each
// video codec's parameters (x-google-start-bitrate, kbit/s, which
// Chromium reads from the remote description; other clients ignore it).
// On a link that cannot carry it, the controller backs off within a
// second or two.

// DefaultPublisherStartBitrate is WorkerConfig.PublisherStartBitrate's
// default, in bits per second.
const DefaultPublisherStartBitrate = 4_000_000

// withStartBitrate returns sdp with x-google-start-bitrate=kbps in every
// video codec's fmtp of every video section (a line is added for a codec
// that has none); RTX and FEC formats are left alone.
func withStartBitrate(sdp string, kbps int) string {
	if kbps <= 0 {
		return sdp
	}
	param := "x-google-start-bitrate=" + strconv.Itoa(kbps)
	lines := strings.SplitAfter(sdp, "\n")
	out := make([]string, 0, len(lines)+4)
	video := false
	media := map[string]bool{} // payload types of this section's media codecs
	hasFmtp := map[string]bool{}
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		switch {
		case strings.HasPrefix(t, "m="):
			video = strings.HasPrefix(t, "m=video")
			clear(media)
			clear(hasFmtp)
			// Which formats have an fmtp line: found ahead, so a line can
			// be added right after the rtpmap of one that has none.
			for _, n := range lines[i+1:] {
				if strings.HasPrefix(n, "m=") {
					break
				}
				if pt, _, ok := strings.Cut(strings.TrimPrefix(n, "a=fmtp:"), " "); ok && strings.HasPrefix(n, "a=fmtp:") {
					hasFmtp[pt] = true
				}
			}
		case video && strings.HasPrefix(t, "a=rtpmap:"):
			pt, enc, _ := strings.Cut(strings.TrimPrefix(t, "a=rtpmap:"), " ")
			name, _, _ := strings.Cut(enc, "/")
			switch strings.ToUpper(name) {
			case "VP8", "VP9", "H264", "H265", "AV1":
				media[pt] = true
				if !hasFmtp[pt] {
					out = append(out, l, "a=fmtp:"+pt+" "+param+"\r\n")
					continue
				}
			}
		case video && strings.HasPrefix(t, "a=fmtp:"):
			pt, params, _ := strings.Cut(strings.TrimPrefix(t, "a=fmtp:"), " ")
			if media[pt] && !strings.Contains(params, "x-google-start-bitrate") {
				out = append(out, "a=fmtp:"+pt+" "+params+";"+param+"\r\n")
				continue
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}
