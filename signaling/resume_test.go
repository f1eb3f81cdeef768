package signaling_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/room"
)

type joinRes struct {
	PeerID      string          `json:"peerId"`
	Role        string          `json:"role"`
	Peers       []room.PeerInfo `json:"peers"`
	ResumeToken string          `json:"resumeToken"`
	Resumed     bool            `json:"resumed"`
	GraceMs     int64           `json:"graceMs"`
}

// Over the real protocol: the host's socket closes without a leave (a
// reload), the guest sees her away, still host; a join with her resume
// token is the same member; the first socket's membership is gone.
func TestResumeOverWebSocket(t *testing.T) {
	e := start(t, nil)
	a := e.dial(t)
	var ares joinRes
	a.mustCall("join", map[string]any{"room": "sofa", "name": "Ana"}, &ares)
	b := e.dial(t)
	var bres joinRes
	b.mustCall("join", map[string]any{"room": "sofa", "name": "Bo"}, &bres)
	if ares.Role != room.RoleHost || bres.Role != room.RoleGuest || ares.ResumeToken == "" || ares.GraceMs != config.Default().ReconnectGrace.Milliseconds() {
		t.Fatalf("joins: %+v %+v", ares, bres)
	}

	a.close()
	b.notificationWhere("peerUpdated", func(p json.RawMessage) bool {
		return strings.Contains(string(p), ares.PeerID) && strings.Contains(string(p), `"away":true`) && strings.Contains(string(p), `"role":"host"`)
	})

	a2 := e.dial(t)
	var back joinRes
	a2.mustCall("join", map[string]any{"room": "sofa", "name": "Ana", "resume": ares.ResumeToken}, &back)
	if !back.Resumed || back.PeerID != ares.PeerID || back.Role != room.RoleHost || len(back.Peers) != 1 || back.Peers[0].Role != room.RoleGuest {
		t.Fatalf("resume: %+v", back)
	}
	b.notificationWhere("peerUpdated", func(p json.RawMessage) bool {
		return strings.Contains(string(p), ares.PeerID) && strings.Contains(string(p), `"away":false`)
	})
	if b.got("peerLeft") || b.got("peerJoined") {
		t.Fatal("Bo was told Ana left or joined")
	}
	a2.mustCall("chat", map[string]any{"text": "back"}, nil)

	// A second socket resuming while the first is open takes over; the
	// first is told why and can do nothing more.
	a3 := e.dial(t)
	a3.mustCall("join", map[string]any{"room": "sofa", "name": "Ana", "resume": ares.ResumeToken}, &back)
	if !back.Resumed || back.PeerID != ares.PeerID {
		t.Fatalf("second resume: %+v", back)
	}
	if !strings.Contains(string(a2.notification("disconnected")), "another connection") {
		t.Fatal("the replaced socket was not told why")
	}

	// An explicit leave hands over at once, and says so.
	a3.mustCall("leave", nil, nil)
	left := b.notification("peerLeft")
	var lp struct{ PeerID, Reason, NewHost string }
	if err := json.Unmarshal(left, &lp); err != nil || lp.PeerID != ares.PeerID || lp.Reason != "left" || lp.NewHost != bres.PeerID {
		t.Fatalf("peerLeft %s", left)
	}

	// Too long a resume token is refused with a clear error.
	c := e.dial(t)
	if rerr := c.callErr("join", map[string]any{"room": "sofa", "name": "Cy", "resume": strings.Repeat("x", 65)}, -32602); !strings.Contains(rerr.Message, `"resume"`) {
		t.Fatalf("long resume token: %+v", rerr)
	}
}
