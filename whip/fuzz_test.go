package whip

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParseSDPFrag reads a trickle-ice-sdpfrag PATCH body (seed: a
// fragment of Chromium's own candidates, in testdata/fuzz). Every
// candidate is a "candidate:" line of a media section, and the fragment
// written back from what was read reads the same.
func FuzzParseSDPFrag(f *testing.F) {
	f.Add("a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 UDP 2130706431 198.51.100.1 39132 typ host\r\na=end-of-candidates\r\n")
	f.Fuzz(func(t *testing.T, body string) {
		fr, err := parseSDPFrag(body)
		if err != nil {
			return
		}
		var b strings.Builder
		b.WriteString("a=ice-ufrag:" + fr.ufrag + "\r\na=ice-pwd:" + fr.pwd + "\r\n")
		for _, c := range fr.candidates {
			if !strings.HasPrefix(c.candidate, "candidate:") || len(c.candidate) == len("candidate:") {
				t.Fatalf("candidate %q", c.candidate)
			}
			b.WriteString("m=audio 9 RTP/AVP 0\r\na=mid:" + c.mid + "\r\na=" + c.candidate + "\r\n")
		}
		if fr.end {
			b.WriteString("a=end-of-candidates\r\n")
		}
		again, err := parseSDPFrag(b.String())
		if err != nil || !reflect.DeepEqual(again, fr) {
			t.Fatalf("%+v written back as %q reads %+v (%v)", fr, b.String(), again, err)
		}
	})
}
