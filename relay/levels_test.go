package relay

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/room"
	"github.com/matinee-dev/matinee/sfu"
)

// fakeBus is the cluster as one node's relay sees it: what it sends is
// kept for the test to read, and the registry answers as told.
type fakeBus struct {
	id   string
	sent chan sent

	mu   sync.Mutex
	dead map[string]bool
}

// sent is one message and the node it went to.
type sent struct {
	to string
	m  Message
}

func (b *fakeBus) ID() string { return b.id }

func (b *fakeBus) Send(_ context.Context, node string, msg []byte) error {
	m, err := Decode(msg)
	if err != nil {
		return err
	}
	b.sent <- sent{node, m}
	return nil
}

func (b *fakeBus) Alive(_ context.Context, node string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.dead[node], nil
}

// Holder: the room's node is "a", alive all along.
func (b *fakeBus) Holder(context.Context, string) (string, error) { return "a", nil }

func (b *fakeBus) kill(node string) {
	b.mu.Lock()
	b.dead[node] = true
	b.mu.Unlock()
}

// levelRig is node c's relay on a real media core, the other nodes
// played by the test through its inbox.
type levelRig struct {
	t     *testing.T
	r     *Relay
	bus   *fakeBus
	inbox chan []byte
}

func newLevelRig(t *testing.T, renew time.Duration) *levelRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := sfu.NewWorker(ctx, sfu.WorkerConfig{LoopbackOnly: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	rooms := room.NewManager(ctx, w, room.Config{})
	g := &levelRig{t: t, bus: &fakeBus{id: "c", sent: make(chan sent, 64), dead: map[string]bool{}}, inbox: make(chan []byte)}
	g.r = New(ctx, Options{Rooms: rooms, Bus: g.bus, Inbox: g.inbox, IP: netip.MustParseAddr("127.0.0.1"),
		IdleGrace: time.Minute, Renew: renew, TTL: 4 * renew, MaxPipes: 1, OpenTimeout: 5 * time.Second})
	t.Cleanup(func() {
		g.r.Close()
		rooms.Close()
		_ = w.Close()
		cancel()
	})
	return g
}

// from delivers m as node from's.
func (g *levelRig) from(node string, m Message) {
	g.t.Helper()
	m.From, m.Room = node, "party"
	b, err := Encode(m)
	if err != nil {
		g.t.Fatal(err)
	}
	g.inbox <- b
}

// next is the next message c sends of type typ, to node to (others,
// keeps and closes of replaced pipes, are skipped); the edge must be
// asking that node too (asked).
func (g *levelRig) next(typ, to string) Message {
	g.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case s := <-g.bus.sent:
			if s.m.Type != typ {
				continue
			}
			if s.to != to {
				g.t.Fatalf("c sent %s to %s, want %s", typ, s.to, to)
			}
			if typ == typeOpen && g.asked() != to {
				g.t.Fatalf("c sent open to %s, its edge asks %q", to, g.asked())
			}
			return s.m
		case <-timeout:
			g.t.Fatalf("c sent no %s within 5 s", typ)
		}
	}
}

// asked is the node c asked for the pipe named by the last open: the
// edge's own record of it.
func (g *levelRig) asked() string {
	g.r.mu.Lock()
	defer g.r.mu.Unlock()
	e := g.r.edges["party"]
	if e == nil {
		return ""
	}
	return e.from
}

// watch starts a viewer's Watch of a's room on c; its result comes on
// the channel.
func (g *levelRig) watch() <-chan error {
	done := make(chan error, 1)
	go func() {
		release, err := g.r.Watch(context.Background(), "party", "a")
		if release != nil {
			release()
		}
		done <- err
	}()
	return done
}

// TestSecondLevelRefusals: a full origin's refusal names sub-origins; the
// edge asks them in turn (never itself nor the origin) and, when every
// one refuses, closes: the viewer goes to the origin.
func TestSecondLevelRefusals(t *testing.T) {
	g := newLevelRig(t, time.Hour)
	done := g.watch()
	open := g.next(typeOpen, "a")
	g.from("a", Message{Type: typeClosed, Pipe: open.Pipe, Reason: "full", Via: []string{"c", "a", "b", "d"}})
	toB := g.next(typeOpen, "b") // c itself and the origin are not asked
	if toB.Pipe == open.Pipe {
		t.Fatalf("c asked b with pipe %s, a's: want a new pipe", toB.Pipe)
	}
	g.from("b", Message{Type: typeClosed, Pipe: toB.Pipe, Reason: "full"})
	toD := g.next(typeOpen, "d")
	g.from("d", Message{Type: typeClosed, Pipe: toD.Pipe, Reason: "full"})
	if err := <-done; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Watch with every node full: %v, want ErrUnavailable", err)
	}
	if g.asked() != "" {
		t.Fatal("c kept an edge nobody feeds")
	}
}

// TestSecondLevelRules: an edge fed by a sub-origin pipes the room on to
// nobody (two levels at most, no loops); when the sub-origin closes a
// pipe that fed it, it asks the origin again; when the sub-origin's node
// is gone, it asks the origin and never that node again.
func TestSecondLevelRules(t *testing.T) {
	g := newLevelRig(t, 50*time.Millisecond)
	done := g.watch()
	open := g.next(typeOpen, "a")
	g.from("a", Message{Type: typeClosed, Pipe: open.Pipe, Reason: "full", Via: []string{"b", "d"}})
	toB := g.next(typeOpen, "b")
	g.from("b", Message{Type: typeReady, Pipe: toB.Pipe})
	if err := <-done; err != nil {
		t.Fatalf("Watch fed by sub-origin b: %v", err)
	}

	// Fed by a sub-origin, c refuses to pipe the room on.
	g.from("e", Message{Type: typeOpen, Pipe: "sub1", Addr: "127.0.0.1:9", ToOrigin: keyOf(room.NewPipeKey()), ToEdge: keyOf(room.NewPipeKey())})
	if m := g.next(typeClosed, "e"); m.Pipe != "sub1" || len(m.Via) != 0 {
		t.Fatalf("c answered e's open with %+v, want a refusal", m)
	}
	if st := g.r.Stats(); st.PipesOut != 0 {
		t.Fatalf("c sends %d pipes, want none", st.PipesOut)
	}

	// b closes the pipe it fed: c asks the origin again.
	g.from("b", Message{Type: typeClosed, Pipe: toB.Pipe, Reason: "the sub-origin's edge closed"})
	toA := g.next(typeOpen, "a")
	g.from("a", Message{Type: typeClosed, Pipe: toA.Pipe, Reason: "full", Via: []string{"b"}})
	toB = g.next(typeOpen, "b")
	g.from("b", Message{Type: typeSync, Pipe: toB.Pipe})

	// b's node dies: c asks a, and skips b when a names it.
	g.bus.kill("b")
	toA = g.next(typeOpen, "a")
	g.from("a", Message{Type: typeClosed, Pipe: toA.Pipe, Reason: "full", Via: []string{"b", "d"}})
	g.next(typeOpen, "d")
}
