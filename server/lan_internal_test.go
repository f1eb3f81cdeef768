package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/testenv"
)

func TestResolveAnnounce(t *testing.T) {
	calls := 0
	lookup := func(_ context.Context, network, host string) ([]netip.Addr, error) {
		calls++
		switch host {
		case "tv.example":
			return []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("::ffff:203.0.113.8")}, nil
		case "empty.example":
			return nil, nil
		}
		return nil, errors.New("no such host")
	}
	got, err := resolveAnnounce(context.Background(), []string{"198.51.100.1", "tv.example", "203.0.113.7"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"198.51.100.1", "203.0.113.7", "203.0.113.8"}; !slices.Equal(got, want) || calls != 1 {
		t.Fatalf("got %v after %d lookups, want %v after 1", got, calls, want)
	}
	for _, bad := range []string{"nowhere.example", "empty.example"} {
		if _, err := resolveAnnounce(context.Background(), []string{bad}, lookup); err == nil {
			t.Errorf("%s resolved", bad)
		}
	}
}

func TestTURNHosts(t *testing.T) {
	l := &lanSetup{announceHosts: []string{"tv.example"}}
	lan := []netip.Addr{netip.MustParseAddr("192.168.1.2"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::3")}
	if got := l.turnHosts(lan); !slices.Equal(got, []string{"tv.example", "192.168.1.2", "10.0.0.2", "fd00::2"}) {
		t.Fatalf("turn hosts %v", got)
	}
	if got := (&lanSetup{}).turnHosts(nil); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Fatalf("turn hosts without addresses %v", got)
	}
}

func TestNewLANSetupSharesOnlyTheHTTPSPort(t *testing.T) {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:8443"
	l, err := newLANSetup(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Shared, and without a port until the HTTPS listener is bound.
	if l.share == nil || l.iceTCP != l.share || l.share.Addr().String() != "127.0.0.1:0" {
		t.Fatalf("default: ICE-TCP %v not shared with HTTPS", l.iceTCP)
	}
	https, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sp := l.split(https)
	if l.share.Addr().String() != https.Addr().String() {
		t.Fatalf("shared ICE-TCP listener reports %v, HTTPS is bound to %v", l.share.Addr(), https.Addr())
	}
	_ = sp.Close()
	l.close()
	// Naming the HTTPS port shares it too; --addr elsewhere moves both.
	cfg.Addr, cfg.ICETCPPort = "127.0.0.1:9443", 9443
	if l, _ := newLANSetup(context.Background(), cfg, nil); l.share == nil {
		t.Fatal("ice-tcp-port equal to the HTTPS port: not shared")
	}
	cfg.Addr = "127.0.0.1:8443"
	cfg.ICETCPPort = 0
	if l, _ := newLANSetup(context.Background(), cfg, nil); l.iceTCP != nil {
		t.Fatal("ice-tcp-port 0 still opened a listener")
	}
	port := testenv.FreePort(t)
	cfg.ICETCPPort = port
	l, err = newLANSetup(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if l.share != nil || l.iceTCP == nil || l.iceTCP.Addr().(*net.TCPAddr).Port != port {
		t.Fatalf("own port: %v", l.iceTCP)
	}
}

// The split listener keeps TLS (and anything else that is not ICE) for
// HTTPS and hands connections starting like RFC 4571 STUN to ICE.
func TestSplitListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ice := newHandoffListener(ln.Addr())
	sp := newSplitListener(ln, ice)
	defer sp.Close()
	send := func(first []byte) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := c.Write(first); err != nil {
			t.Fatal(err)
		}
		return c
	}
	accept := func(l net.Listener) []byte {
		t.Helper()
		type r struct {
			c   net.Conn
			err error
		}
		ch := make(chan r, 1)
		go func() { c, err := l.Accept(); ch <- r{c, err} }()
		select {
		case got := <-ch:
			if got.err != nil {
				t.Fatal(got.err)
			}
			defer got.c.Close()
			_ = got.c.SetReadDeadline(time.Now().Add(2 * time.Second))
			b := make([]byte, 4)
			if _, err := io.ReadFull(got.c, b); err != nil {
				t.Fatal(err)
			}
			return b
		case <-time.After(3 * time.Second):
			t.Fatal("nothing accepted")
			return nil
		}
	}
	send([]byte{0x00, 0x64, 0x00, 0x01}) // ICE-TCP: length 100, binding request
	if b := accept(ice); !bytes.Equal(b, []byte{0x00, 0x64, 0x00, 0x01}) {
		t.Fatalf("ICE got %x", b)
	}
	send([]byte{0x16, 0x03, 0x01, 0x02}) // a TLS ClientHello record
	if b := accept(sp); !bytes.Equal(b, []byte{0x16, 0x03, 0x01, 0x02}) {
		t.Fatalf("HTTPS got %x", b)
	}
	send([]byte("GET ")) // plain HTTP by mistake: HTTPS answers it
	if b := accept(sp); string(b) != "GET " {
		t.Fatalf("HTTPS got %q", b)
	}
	// A silent connection is dropped at Close, which does not wait for it.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %s", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("silent connection still open after Close")
	}
	if _, err := sp.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

func TestStartupLogWarnsOnLoopbackOnly(t *testing.T) {
	var logs bytes.Buffer
	cfg := config.Default()
	cfg.ICEInterfaces = []string{"lo"}
	s := &Server{cfg: cfg, log: slog.New(slog.NewTextHandler(&logs, nil))}
	var term bytes.Buffer
	s.SetTerminal(&term)
	s.logStartup(8443)
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "only this computer can join") {
		t.Fatalf("no loopback warning:\n%s", out)
	}
	if strings.Contains(out, "can join at") || term.Len() != 0 {
		t.Fatalf("loopback offered to phones:\n%s%s", out, term.String())
	}
	for hosts, want := range map[string]bool{"": true, "127.0.0.1 ::1": true, "127.0.0.1 192.168.1.5": false, "tv.lan": false} {
		if got := onlyLoopback(strings.Fields(hosts)); got != want {
			t.Errorf("onlyLoopback(%q) = %v", hosts, got)
		}
	}
}
