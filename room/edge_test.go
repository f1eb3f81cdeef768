package room

import (
	"errors"
	"testing"
	"time"
)

// waitStats polls the media core's counts until ok holds.
func waitStats(t *testing.T, m *Manager, what string, ok func(MediaStats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := m.MediaStats()
		if ok(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: media stats %+v", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEdge drives what the protocols above room use of the media core:
// a member's connections, a viewer of the stage and
// the counts metrics read.
func TestEdge(t *testing.T) {
	m := newManager(t, nil)
	var n notes
	mb, _, err := m.Join("edge", JoinOptions{Name: "A"}, &n)
	if err != nil {
		t.Fatal(err)
	}
	send, err := mb.CreateTransport("send")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mb.CreateTransport("recv"); err != nil {
		t.Fatal(err)
	}
	waitStats(t, m, "one send and one receive transport", func(s MediaStats) bool {
		return s.SendTransports == 1 && s.RecvTransports == 1 && s.Producers["video"] == 0 && s.Consumers["audio"] == 0
	})

	c, err := mb.Connection(send)
	if err != nil || c.ID() != send {
		t.Fatalf("connection %q: %v, %v", send, c, err)
	}
	_, err = mb.Connection("nope")
	wantCode(t, err, KindNotFound, "unknown transport")
	rm, ok := m.Room("edge")
	if !ok {
		t.Fatal("room edge is gone")
	}
	if rm.Media().IsClosed() || len(rm.Media().Producers()) != 0 {
		t.Fatal("a fresh room's media is closed or has producers")
	}
	v, err := rm.NewStageViewer(StageViewerOptions{Owner: "whep-test"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Connection().ID() == "" {
		t.Error("the stage viewer's connection has no id")
	}
	waitStats(t, m, "the stage viewer's receive transport", func(s MediaStats) bool { return s.RecvTransports == 2 })
	// WHEP answers 400 bad_sdp on room.ErrBadSDP.
	if _, err := v.Answer(t.Context(), "v=0\r\nnot an offer"); !errors.Is(err, ErrBadSDP) {
		t.Errorf("a broken offer: %v, want room.ErrBadSDP", err)
	}
	v.Close()
	waitStats(t, m, "the stage viewer gone", func(s MediaStats) bool { return s.RecvTransports == 1 })
}
