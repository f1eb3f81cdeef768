package testenv

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	var n atomic.Int32
	d, err := Poll(5*time.Second, "the third look", func() (bool, string) { return n.Add(1) >= 3, "" })
	if err != nil || n.Load() != 3 || d < 2*Tick {
		t.Fatalf("Poll: %v after %v and %d looks, want done at the third, two ticks in", err, d, n.Load())
	}
	_, err = Poll(3*Tick, "never", func() (bool, string) { return false, "still no" })
	if err == nil || !strings.Contains(err.Error(), "never: not within") || !strings.Contains(err.Error(), "last state: still no") {
		t.Fatalf("Poll of what never holds: %v", err)
	}
	if Within(2*Tick, func() bool { return false }) || !Within(time.Second, func() bool { return true }) {
		t.Fatal("Within")
	}
}

// fatalTB records a Fatal instead of ending the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

func (f *fatalTB) Fatal(args ...any) { f.msg = fmt.Sprint(args...) }

func TestHoldAndEventuallyFail(t *testing.T) {
	f := &fatalTB{TB: t}
	var n atomic.Int32
	Hold(f, time.Second, "stays under three", func() (bool, string) { k := n.Add(1); return k < 3, strconv.Itoa(int(k)) })
	if !strings.Contains(f.msg, "stays under three") || n.Load() != 3 {
		t.Fatalf("Hold: %q after %d looks, want a failure at the third", f.msg, n.Load())
	}
	f.msg = ""
	start := time.Now()
	Hold(f, 3*Tick, "holds", func() (bool, string) { return true, "" })
	if f.msg != "" || time.Since(start) < 3*Tick {
		t.Fatalf("Hold of what holds: %q after %v", f.msg, time.Since(start))
	}
	Eventually(f, 2*Tick, "never true", func() bool { return false })
	if !strings.Contains(f.msg, "never true") {
		t.Fatalf("Eventually: %q", f.msg)
	}
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	if p < 20000 || p >= 32000 {
		t.Fatalf("port %d outside 20000-32000", p)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d not free for TCP: %v", p, err)
	}
	_ = ln.Close()
	u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d not free for UDP: %v", p, err)
	}
	_ = u.Close()
	pair := FreeUDPPair(t)
	for _, p := range []int{pair, pair + 1} {
		c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("pair %d: port %d not free for UDP: %v", pair, p, err)
		}
		_ = c.Close()
	}
	if pair%2 != 0 {
		t.Fatalf("pair starts at odd port %d", pair)
	}
}

// A test that draws a server's ports one after another before any is
// bound must get distinct ones (CI once gave a TURN port equal to the
// HTTP port drawn after it).
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
