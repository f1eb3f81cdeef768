package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/redistest"
)

// TestBus: a node's inbox receives, in order, what other nodes send it
// and nothing sent to another node; an oversized message is refused at
// the sender; Alive follows the registry; a closed inbox's channel closes.
func TestBus(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r, "bus-a", nil, nil)
	b := startNode(t, r, "bus-b", nil, nil)
	ctx := context.Background()
	in, err := a.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	inB, err := b.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "two", "three"} {
		if err := b.Send(ctx, "bus-a", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Send(ctx, "bus-b", []byte("for b")); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(ctx, "bus-a", make([]byte, MaxMessage+1)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("oversized message: %v", err)
	}
	for _, want := range []string{"one", "two", "three"} {
		select {
		case got := <-in.C():
			if string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q not received", want)
		}
	}
	select {
	case got := <-inB.C():
		if string(got) != "for b" {
			t.Fatalf("b got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b received nothing")
	}
	if err := inB.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-inB.C(); open {
		t.Fatal("a closed inbox still delivers")
	}

	if alive, err := a.Alive(ctx, "bus-b"); err != nil || !alive {
		t.Fatalf("bus-b alive: %v %v", alive, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if alive, err := a.Alive(ctx, "bus-b"); err != nil || alive {
		t.Fatalf("bus-b alive after its close: %v %v", alive, err)
	}
}
