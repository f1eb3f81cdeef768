package signaling

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestDecodeRemote: the messages between nodes about members on several
// nodes are checked on arrival; each fault is refused with its reason.
func TestDecodeRemote(t *testing.T) {
	sess := "0123456789abcdef01234567"
	good := map[string]string{
		"req":    `{"v":1,"type":"req","from":"tv-1:8443","sess":"` + sess + `","seq":1,"frames":[{"jsonrpc":"2.0","id":1,"method":"join"}],"addr":"10.0.0.7"}`,
		"out":    `{"v":1,"type":"out","from":"tv-2","sess":"` + sess + `","seq":7,"frames":[{"a":1},{"b":2}]}`,
		"bye":    `{"v":1,"type":"bye","from":"tv-1","sess":"` + sess + `"}`,
		"leave":  `{"v":1,"type":"bye","from":"tv-1","sess":"` + sess + `","leave":true}`,
		"closed": `{"v":1,"type":"closed","from":"tv-2","sess":"` + sess + `","reason":"kicked"}`,
		"hangup": `{"v":1,"type":"closed","from":"tv-2","sess":"` + sess + `","reason":"too many wrong passwords","hangup":true}`,
		"conn":   `{"v":1,"type":"req","from":"tv-1","sess":"` + sess + `","seq":1,"frames":[{"id":1}],"conn":"` + sess + `"}`,
		"also":   `{"v":1,"type":"out","from":"tv-2","sess":"` + sess + `","seq":7,"frames":[{"a":1}],"also":[{"sess":"` + sess + `","seq":3}]}`,
		"keep":   `{"v":1,"type":"keep","from":"tv-2","sessions":["` + sess + `"],"origin":true}`,
	}
	good["batch"] = `{"v":1,"type":"batch","from":"tv-2","batch":[` + good["out"] + `,` + good["closed"] + `]}`
	for name, s := range good {
		if _, err := decodeRemote([]byte(s)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, tc := range []struct{ name, msg, want string }{
		{"not JSON", `{"v":1`, "unexpected end"},
		{"version", strings.Replace(good["bye"], `"v":1`, `"v":2`, 1), "version 2"},
		{"sender", strings.Replace(good["bye"], `"tv-1"`, `"tv 1"`, 1), "sender"},
		{"session", strings.Replace(good["bye"], sess, "XYZ", 1), "session"},
		{"req without seq", strings.Replace(good["req"], `"seq":1,`, ``, 1), "req: seq 0"},
		{"req of two frames", strings.Replace(good["req"], `}],`, `},{}],`, 1), "want one"},
		{"out without frames", strings.Replace(good["out"], `"frames":[{"a":1},{"b":2}]`, `"frames":[]`, 1), "out: seq 7 with 0 frames"},
		{"frame not an object", strings.Replace(good["out"], `{"a":1}`, `[1]`, 1), "not an object"},
		{"bye with frames", strings.Replace(good["bye"], `}`, `,"frames":[{}]}`, 1), "bye with frames"},
		{"keep with a bad session", strings.Replace(good["keep"], sess, "../x", 1), "keep: session"},
		{"reason too long", strings.Replace(good["closed"], "kicked", strings.Repeat("k", 300), 1), "reason of 300"},
		{"type", strings.Replace(good["bye"], `"bye"`, `"hello"`, 1), `type "hello"`},
		{"batch of a req", `{"v":1,"type":"batch","from":"tv-1","batch":[` + good["req"] + `]}`, "batch item 0: a req"},
		{"batch item from another", `{"v":1,"type":"batch","from":"tv-3","batch":[` + good["out"] + `]}`, `from "tv-2"`},
		{"batch of a bad item", `{"v":1,"type":"batch","from":"tv-2","batch":[` + strings.Replace(good["out"], `"seq":7,`, ``, 1) + `]}`, "batch item 0: bad member relay message: out: seq 0"},
		{"empty batch", `{"v":1,"type":"batch","from":"tv-2","batch":[]}`, "batch: 0 messages"},
		{"bye with a batch", strings.Replace(good["bye"], `}`, `,"batch":[{}]}`, 1), "bye with a batch"},
		{"closed with leave", strings.Replace(good["closed"], `}`, `,"leave":true}`, 1), "closed with leave"},
		{"bye with hangup", strings.Replace(good["bye"], `}`, `,"hangup":true}`, 1), "bye with hangup"},
		{"bad conn", strings.Replace(good["req"], `"addr"`, `"conn":"../x","addr"`, 1), "conn"},
		{"also on a closed", strings.Replace(good["closed"], `}`, `,"also":[{"sess":"`+sess+`","seq":1}]}`, 1), "closed with 1 more sessions"},
		{"also without seq", strings.Replace(good["out"], `}]}`, `}],"also":[{"sess":"`+sess+`"}]}`, 1), "more session"},
	} {
		_, err := decodeRemote([]byte(tc.msg))
		if !errors.Is(err, errBadRemote) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeRemote: whatever arrives, decodeRemote refuses it or returns
// a message that encodes and decodes to itself.
func FuzzDecodeRemote(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"req","from":"a","sess":"0123456789abcdef01234567","seq":1,"frames":[{"id":1}]}`))
	f.Add([]byte(`{"v":1,"type":"keep","from":"a","sessions":["0123456789abcdef01234567"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeRemote(b)
		if err != nil {
			return
		}
		out, err := encodeRemote(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeRemote(out)
		if err != nil {
			t.Fatalf("re-encoded %s refused: %v", out, err)
		}
		// Frames compare as compact JSON (encoding compacts them).
		norm := func(m remoteMsg) string { b, _ := json.Marshal(m); return string(b) }
		if norm(again) != norm(m) || !slices.Equal(again.Sessions, m.Sessions) {
			t.Fatalf("round trip changed %s into %s", norm(m), norm(again))
		}
	})
}
