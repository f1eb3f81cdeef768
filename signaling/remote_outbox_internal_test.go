package signaling

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestMergeBroadcasts: the outs of one flush to a node that carry the
// same frames (a broadcast) go once, the other sessions named in Also,
// without changing any session's order; what the edge gets back, item by
// item, is what was posted, session by session.
func TestMergeBroadcasts(t *testing.T) {
	sess := func(i int) string { return fmt.Sprintf("%024x", i) }
	out := func(s int, seq uint64, frame string) remoteMsg {
		return remoteMsg{Type: msgOut, From: "a", Sess: sess(s), Seq: seq, Frames: []json.RawMessage{json.RawMessage(frame)}}
	}
	chat, other := `{"method":"chat"}`, `{"method":"peerJoined"}`
	in := []remoteMsg{
		out(1, 1, chat), out(2, 1, chat), out(3, 1, chat), // one broadcast
		out(1, 2, other),
		out(4, 1, other), // not after s1's: s4 has nothing before it
		out(2, 2, other), // s2's last is the chat (index 0): merges into s1's other
		{Type: msgClosed, Sess: sess(3)},
		out(3, 2, other), // s3 was closed after s1's other: stays apart
	}
	got := merge(in, 1<<20)
	var shape []string
	for _, m := range got {
		s := m.Type + ":" + m.Sess[20:]
		for _, a := range m.Also {
			s += "+" + a.Sess[20:]
		}
		shape = append(shape, s)
	}
	want := "out:0001+0002+0003 out:0001+0004+0002 closed:0003 out:0003"
	if strings.Join(shape, " ") != want {
		t.Fatalf("merged %v, want %s", shape, want)
	}
	// Each session gets its messages in posted order, once.
	perSess := func(ms []remoteMsg) map[string][]string {
		r := map[string][]string{}
		for _, m := range ms {
			r[m.Sess] = append(r[m.Sess], fmt.Sprintf("%s#%d%s", m.Type, m.Seq, m.Frames))
			for _, a := range m.Also {
				r[a.Sess] = append(r[a.Sess], fmt.Sprintf("%s#%d%s", m.Type, a.Seq, m.Frames))
			}
		}
		return r
	}
	if a, b := fmt.Sprint(perSess(in)), fmt.Sprint(perSess(got)); a != b {
		t.Fatalf("per session:\n got %s\nwant %s", b, a)
	}
	// A merged out stays within the message budget.
	var many []remoteMsg
	for i := range 3000 {
		many = append(many, out(i+1, 1, chat))
	}
	for _, m := range merge(many, 64<<10) {
		b, err := encodeRemote(m)
		if err != nil || len(b) > 64<<10 {
			t.Fatalf("merged out of %d bytes (%v), over the 64 KiB budget", len(b), err)
		}
		if _, err := decodeRemote(b); err != nil {
			t.Fatal(err)
		}
	}
}
