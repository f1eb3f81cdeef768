package room

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/testenv"

	"github.com/pion/webrtc/v4"
)

// TestEdgeRooms: an edge copy of a room is watchable but not a room of
// the node (not listed, not twice, not beside the room itself), counts
// its stage viewers, takes producers from a pipe as the origin describes
// them (made once, ended, synced), and ends with its pipe when closed.
func TestEdgeRooms(t *testing.T) {
	origin, edgeNode := newManager(t, nil), newManager(t, nil)
	if _, _, err := origin.Join("party", JoinOptions{Name: "A"}, &notes{}); err != nil {
		t.Fatal(err)
	}
	_, err := edgeNode.PipeTo(context.Background(), "party", PipeOptions{})
	wantCode(t, err, KindNotFound, "not on this node")

	e, err := edgeNode.OpenEdge("party")
	if err != nil {
		t.Fatal(err)
	}
	if len(edgeNode.Rooms()) != 0 {
		t.Fatal("the edge is listed as a room of the node")
	}
	if _, ok := edgeNode.Room("party"); ok {
		t.Fatal("the edge is found as a room of the node")
	}
	r, ok := edgeNode.Watchable("party")
	if !ok {
		t.Fatal("the edge is not watchable")
	}
	_, err = edgeNode.OpenEdge("party")
	wantCode(t, err, KindInvalidState, "has an edge here already")
	_, err = origin.OpenEdge("party")
	wantCode(t, err, KindInvalidState, "is on this node")

	v, err := r.NewStageViewer(StageViewerOptions{Owner: "whep-test"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Viewers() != 1 {
		t.Fatalf("%d viewers, want 1", e.Viewers())
	}
	// The registry hears of the rooms whose media is here, edges first.
	if ids, viewers := edgeNode.Carried(); !slices.Equal(ids, []string{"party"}) || viewers != 1 {
		t.Fatalf("edge node carries %v with %d viewers, want [party] and 1", ids, viewers)
	}
	if ids, viewers := origin.Carried(); !slices.Equal(ids, []string{"party"}) || viewers != 0 {
		t.Fatalf("origin carries %v with %d viewers, want [party] and 0", ids, viewers)
	}
	v.Close()
	v.Close()
	if e.Viewers() != 0 {
		t.Fatalf("%d viewers after close, want 0", e.Viewers())
	}

	toEdge, toOrigin := NewPipeKey(), NewPipeKey()
	in, err := e.AcceptPipe(context.Background(), PipeOptions{Listen: "127.0.0.1:0", SendKey: toOrigin, RecvKey: toEdge})
	if err != nil {
		t.Fatal(err)
	}
	out, err := origin.PipeTo(context.Background(), "party", PipeOptions{Listen: "127.0.0.1:0", Remote: in.LocalAddr(), SendKey: toEdge, RecvKey: toOrigin})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	vp8 := PipedProducer{ID: "pr-v", Owner: "m-1", Kind: "video", Codec: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		AppData: map[string]any{"source": "screen"}, Layers: []PipedLayer{{RID: "q", SSRC: 11}, {RID: "h", SSRC: 12}, {RID: "f", SSRC: 13}}}
	opus := PipedProducer{ID: "pr-a", Owner: "m-1", Kind: "audio", Codec: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		Layers: []PipedLayer{{SSRC: 21}}}
	for range 2 { // the second time: made already, left as it is
		if err := in.Produce(vp8); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Sync([]PipedProducer{vp8, opus}); err != nil {
		t.Fatal(err)
	}
	made := in.Made()
	slices.Sort(made)
	if !slices.Equal(made, []string{"pr-a", "pr-v"}) || len(r.Media().Producers()) != 2 {
		t.Fatalf("made %v, %d producers in the edge's router; want pr-a and pr-v", made, len(r.Media().Producers()))
	}
	// The edge's stage follows its producers, by the room's one rule.
	testenv.EventuallyState(t, 5*time.Second, "the edge's stage shows the piped share", func() (bool, string) {
		st := r.stage.current()
		return st.Show && st.Video != nil && st.Audio == nil, fmt.Sprintf("%+v", st)
	})
	in.End("pr-v")
	if made := in.Made(); !slices.Equal(made, []string{"pr-a"}) || len(r.Media().Producers()) != 1 {
		t.Fatalf("after End: made %v, %d producers", made, len(r.Media().Producers()))
	}
	if err := in.Sync(nil); err != nil || len(in.Made()) != 0 || len(r.Media().Producers()) != 0 {
		t.Fatalf("after an empty sync: %v, made %v", err, in.Made())
	}

	closed := make(chan struct{})
	in.OnClose(func() { close(closed) })
	e.Close()
	<-closed // the pipe ends with the edge
	if _, ok := edgeNode.Watchable("party"); ok {
		t.Fatal("a closed edge is still watchable")
	}
	e2, err := edgeNode.OpenEdge("party")
	if err != nil {
		t.Fatalf("a new edge after the first closed: %v", err)
	}
	edgeNode.Close() // closes its edges
	if _, ok := edgeNode.Watchable("party"); ok || !e2.r.router.IsClosed() {
		t.Fatal("the manager closed with its edge open")
	}
}
