package whip

import (
	"strings"
	"testing"
)

func TestParseSDPFrag(t *testing.T) {
	body := "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" +
		"a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw\r\n" +
		"a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw\r\n" +
		"a=end-of-candidates\r\n"
	f, err := parseSDPFrag(body)
	if err != nil {
		t.Fatal(err)
	}
	if f.ufrag != "EsAw" || f.pwd != "P2uYro0UCOQ4zxjKXaWCBui1" || !f.end || len(f.candidates) != 2 {
		t.Fatalf("parsed %+v", f)
	}
	c := f.candidates[0]
	if c.mid != "0" || !strings.HasPrefix(c.candidate, "candidate:1387637174 1 udp") {
		t.Fatalf("candidate %+v", c)
	}
	for _, bad := range []string{"a=candidate:1 1 udp 1 192.0.2.1 9 typ host\r\n", "garbage\r\n", "m=audio 9 RTP 0\r\na=candidate:\r\n"} {
		if _, err := parseSDPFrag(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestLinkHeaders(t *testing.T) {
	got := linkHeaders([]ICEServer{
		{URLs: []string{"stun:stun.example.net"}},
		{URLs: []string{"turn:turn.example.net?transport=udp"}, Username: "user", Credential: "secret"},
	})
	want := []string{
		`<stun:stun.example.net>; rel="ice-server"`,
		`<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; credential="secret"; credential-type="password"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
