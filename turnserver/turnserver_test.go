package turnserver

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secret = "test-secret-0123456789"

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.ListenIP = "127.0.0.1"
	if cfg.RelayIP == nil {
		cfg.RelayIP = net.IPv4(127, 0, 0, 1)
	}
	cfg.Secret = secret
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// allocate runs a pion TURN client over UDP or TCP against s and returns
// the relayed connection, or the allocation error.
func allocate(t *testing.T, s *Server, tcp bool, user, pass string) (net.PacketConn, error) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port()))
	var conn net.PacketConn
	if tcp {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
	} else {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	}
	cl, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: addr, STUNServerAddr: addr, Username: user, Password: pass,
		Realm: Realm, Conn: conn, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); _ = conn.Close() })
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	return cl.Allocate()
}

func TestCredentialFormat(t *testing.T) {
	user, pass := Credential("s3cret", "pe-1:x", time.Unix(1700000000, 0))
	if user != "1700000000:pe-1_x" {
		t.Fatalf("username %q", user)
	}
	if _, p2 := Credential("other", "pe-1:x", time.Unix(1700000000, 0)); p2 == pass {
		t.Fatal("password does not depend on the secret")
	}
	// The same password pion's TURN REST helper makes for that username.
	pu, pp, err := turn.GenerateLongTermTURNRESTCredentials("s3cret", "pe-2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	exp, _ := strconv.ParseInt(strings.Split(pu, ":")[0], 10, 64)
	if u, p := Credential("s3cret", "pe-2", time.Unix(exp, 0)); u != pu || p != pp {
		t.Fatalf("got %q/%q, pion %q/%q", u, p, pu, pp)
	}
}

func TestAllocateUDPAndTCPAndRelay(t *testing.T) {
	s := start(t, Config{AllowPeer: func(ip net.IP) bool { return ip.IsLoopback() }})
	ice := s.Credentials("pe-abc", []string{"192.0.2.10", "fd00::1"})
	port := strconv.Itoa(s.Port())
	want := []string{
		"turn:192.0.2.10:" + port + "?transport=udp", "turn:192.0.2.10:" + port + "?transport=tcp",
		"turn:[fd00::1]:" + port + "?transport=udp", "turn:[fd00::1]:" + port + "?transport=tcp",
	}
	if strings.Join(ice.URLs, " ") != strings.Join(want, " ") {
		t.Fatalf("urls %v, want %v", ice.URLs, want)
	}
	if !strings.HasSuffix(ice.Username, ":pe-abc") {
		t.Fatalf("username %q", ice.Username)
	}
	exp, _ := strconv.ParseInt(strings.Split(ice.Username, ":")[0], 10, 64)
	if d := time.Until(time.Unix(exp, 0)); d < DefaultTTL-time.Minute || d > DefaultTTL+time.Minute {
		t.Fatalf("expiry in %s, want %s", d, DefaultTTL)
	}

	for _, tcp := range []bool{false, true} {
		relay, err := allocate(t, s, tcp, ice.Username, ice.Credential)
		if err != nil {
			t.Fatalf("tcp=%v: allocate: %v", tcp, err)
		}
		ra := relay.LocalAddr().(*net.UDPAddr)
		if !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Fatalf("relay address %v, want the relay IP", ra)
		}
		// A peer on this machine receives what the client sends through
		// the relay, from the relay address.
		peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := relay.WriteTo([]byte("hello"), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 100)
		n, from, err := peer.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], []byte("hello")) || from.(*net.UDPAddr).Port != ra.Port {
			t.Fatalf("tcp=%v: peer got %q from %v, %v", tcp, buf[:n], from, err)
		}
		_ = peer.Close()
		_ = relay.Close()
	}
}

func TestRefusesBadCredentials(t *testing.T) {
	now := time.Now()
	s := start(t, Config{})
	user, pass := Credential(secret, "pe-1", now.Add(time.Hour))
	if _, err := allocate(t, s, false, user, pass+"x"); err == nil {
		t.Fatal("wrong password allocated")
	}
	expUser, expPass := Credential(secret, "pe-1", now.Add(-time.Minute))
	if _, err := allocate(t, s, false, expUser, expPass); err == nil {
		t.Fatal("expired credential allocated")
	}
	otherUser, otherPass := Credential("another-secret-xxxx", "pe-1", now.Add(time.Hour))
	if _, err := allocate(t, s, false, otherUser, otherPass); err == nil {
		t.Fatal("credential of another secret allocated")
	}
}

func TestRelaysOnlyToAllowedPeers(t *testing.T) {
	s := start(t, Config{AllowPeer: func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }})
	user, pass := Credential(secret, "pe-1", time.Now().Add(time.Hour))
	relay, err := allocate(t, s, false, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	// 127.0.0.2 is as good a loopback address as 127.0.0.1 but not an
	// allowed peer: nothing may reach it through the relay.
	peer, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no 127.0.0.2 (Linux routes all of 127/8 to lo); this test never skips in CI: %v", err)
		}
		t.Skipf("no 127.0.0.2 on this machine: %v", err)
	}
	defer peer.Close()
	if _, err := relay.WriteTo([]byte("x"), peer.LocalAddr()); err == nil {
		_ = peer.SetReadDeadline(time.Now().Add(time.Second))
		if n, _, err := peer.ReadFrom(make([]byte, 10)); err == nil {
			t.Fatalf("foreign peer received %d bytes through the relay", n)
		}
	}
}

func TestLoadSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	a, err := LoadSecret(dir)
	if err != nil || len(a) != 64 {
		t.Fatalf("first: %q %v", a, err)
	}
	fi, err := os.Stat(filepath.Join(dir, SecretFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v %v", fi.Mode(), err)
	}
	b, err := LoadSecret(dir)
	if err != nil || b != a {
		t.Fatalf("second load %q, want the first %q (%v)", b, a, err)
	}
	if err := os.WriteFile(filepath.Join(dir, SecretFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret(dir); err == nil {
		t.Fatal("short secret accepted")
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(Config{RelayIP: net.IPv4(127, 0, 0, 1)}); err == nil {
		t.Fatal("no secret accepted")
	}
	if _, err := Start(Config{Secret: secret, RelayIP: net.IPv4zero}); err == nil {
		t.Fatal("unspecified relay address accepted")
	}
	s := start(t, Config{})
	if _, err := Start(Config{Secret: secret, RelayIP: net.IPv4(127, 0, 0, 1), ListenIP: "127.0.0.1", Port: s.Port(), Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Fatal("second server on a busy port started")
	}
}
