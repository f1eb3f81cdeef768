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

// TestBusTopics: a topic's messages reach that topic's inbox only, and
// each topic has its own size limit, at the sender and on arrival.
func TestBusTopics(t *testing.T) {
	r := redistest.Start(t)
	a := startNode(t, r, "topic-a", nil, nil)
	b := startNode(t, r, "topic-b", nil, nil)
	ctx := context.Background()
	party := Topic{Name: "party", Max: 100 << 10}
	relayIn, err := a.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer relayIn.Close()
	partyIn, err := a.SubscribeOn(ctx, party)
	if err != nil {
		t.Fatal(err)
	}
	defer partyIn.Close()
	big := strings.Repeat("p", 80<<10) // over the relay's limit, within the party's
	if err := b.SendOn(ctx, party, "topic-a", []byte(big)); err != nil {
		t.Fatal(err)
	}
	if err := b.SendOn(ctx, party, "topic-a", make([]byte, party.Max+1)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("oversized party message: %v", err)
	}
	if err := b.Send(ctx, "topic-a", []byte("relay")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   *Inbox
		want string
	}{{partyIn, big}, {relayIn, "relay"}} {
		select {
		case got := <-tc.in.C():
			if string(got) != tc.want {
				t.Fatalf("got %d bytes %.10q, want %d bytes %.10q", len(got), got, len(tc.want), tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%.10q not received", tc.want)
		}
	}
	// A message over the topic's limit that reached Redis anyway (another
	// node's larger setting) is dropped on arrival.
	small := Topic{Name: "party", Max: 10}
	smallIn, err := b.SubscribeOn(ctx, small)
	if err != nil {
		t.Fatal(err)
	}
	defer smallIn.Close()
	if err := a.SendOn(ctx, party, "topic-b", []byte("0123456789ab")); err != nil {
		t.Fatal(err)
	}
	if err := a.SendOn(ctx, party, "topic-b", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-smallIn.C():
		if string(got) != "ok" {
			t.Fatalf("b's small inbox got %q, want the oversized message dropped and then %q", got, "ok")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b's small inbox received nothing")
	}
	select {
	case got := <-relayIn.C():
		t.Fatalf("the relay's inbox got a party message %.10q", got)
	default:
	}
}
