package lan

import (
	"context"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/server"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(phoneEnv) != "" {
		// The phone process: its pion peers may still be winding down
		// when it prints its result, which is all that matters.
		phoneMain()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// The phone downloads the CA over plain HTTP and then trusts the HTTPS
// certificate for the server's LAN address with that CA alone.
func TestPhoneTrustsServerThroughDownloadedCA(t *testing.T) {
	p := newPhoneNet(t)
	s := startServer(t, p, nil)
	res := runPhone(t, p, phoneJob{Mode: "trust", Host: s.host, HTTPPort: s.httpPort, HTTPSPort: s.httpsPort})
	if res.Verified != s.host || res.CAName == "" {
		t.Fatalf("verified %q with CA %q", res.Verified, res.CAName)
	}
	if want := s.httpsURL("/r/test"); res.Redirect != want {
		t.Errorf("plain HTTP /r/test redirects to %q, want %q", res.Redirect, want)
	}
	if !res.HelpOK {
		t.Error("plain HTTP does not serve the trust help page")
	}
	// The start-up log told people where to go, with a QR code of it.
	logs := s.logs.String()
	lobby := s.httpsURL("/")
	for _, want := range []string{
		"phones and computers on your network can join at " + lobby,
		"room_link=" + lobby + "r/<room-name>",
		s.plainURL("/help/trust"),
		"Scan to join from a phone: " + lobby,
		"▀",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("start-up log lacks %q:\n%s", want, logs)
		}
	}
	// The page's view of the same: GET /api/lan.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(s.plainURL("/api/lan"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("plain HTTP /api/lan: %s, want a redirect to HTTPS", resp.Status)
	}
}

// Publisher and subscriber on the phone, media over UDP to the server's
// LAN address.
func TestPhoneMediaOverUDP(t *testing.T) {
	p := newPhoneNet(t)
	s := startServer(t, p, nil)
	res := runPhone(t, p, phoneJob{Mode: "media", Host: s.host, HTTPPort: s.httpPort, HTTPSPort: s.httpsPort, Room: "lan-udp"})
	checkMedia(t, res)
	for _, pr := range []pairInfo{res.Pub, res.Sub} {
		if pr.LocalProto != "udp" || pr.RemoteType != "host" || pr.RemoteAddr != s.host {
			t.Errorf("selected pair %+v, want UDP to the host candidate %s", pr, s.host)
		}
	}
	// The server offered its veth address only, over UDP and over
	// ICE-TCP on the HTTPS port.
	var tcp bool
	for _, c := range res.Candidates {
		f := strings.Fields(strings.TrimPrefix(c, "candidate:"))
		if len(f) < 8 || f[4] != s.host {
			t.Errorf("server candidate %q is not on %s", c, s.host)
			continue
		}
		if strings.EqualFold(f[2], "tcp") {
			tcp = true
			if f[5] != strconv.Itoa(s.httpsPort) || !strings.Contains(c, "tcptype passive") {
				t.Errorf("ICE-TCP candidate %q: want passive on port %d", c, s.httpsPort)
			}
		}
	}
	if !tcp {
		t.Errorf("no ICE-TCP candidate among %q", res.Candidates)
	}
}

// With every UDP datagram from the phone dropped, media flows over ICE-TCP
// on the HTTPS port.
func TestPhoneMediaOverICETCPWhenUDPIsBlocked(t *testing.T) {
	p := newPhoneNet(t)
	s := startServer(t, p, nil)
	p.firewall(t, "meta l4proto udp drop")
	res := runPhone(t, p, phoneJob{Mode: "media", Host: s.host, HTTPPort: s.httpPort, HTTPSPort: s.httpsPort, Room: "lan-tcp", TCP: true})
	checkMedia(t, res)
	for _, pr := range []pairInfo{res.Pub, res.Sub} {
		if pr.LocalProto != "tcp" || pr.RemoteProto != "tcp" || pr.RemoteType != "host" ||
			pr.RemoteAddr != s.host || pr.RemotePort != s.httpsPort || pr.RemoteTCPType != "passive" {
			t.Errorf("selected pair %+v, want TCP to the passive host candidate %s:%d", pr, s.host, s.httpsPort)
		}
	}
}

// With the SFU unreachable except through the TURN server, media is
// relayed: over TURN/UDP when only the TURN port is open to UDP, and over
// TURN/TCP when no UDP gets out at all.
func TestPhoneMediaOverTURN(t *testing.T) {
	for _, tc := range []struct {
		name, relayProto string
		rules            func(turnPort int) []string
	}{
		{"udp", "udp", func(port int) []string { return []string{fmt.Sprintf("udp dport != %d drop", port)} }},
		{"tcp", "tcp", func(int) []string { return []string{"meta l4proto udp drop"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPhoneNet(t)
			turnPort := testenv.FreePort(t)
			s := startServer(t, p, func(c *config.Config) {
				c.TURN = true
				c.TURNPort = turnPort
				c.ICETCPPort = 0 // no ICE-TCP either: the relay is the only way
			})
			p.firewall(t, tc.rules(turnPort)...)
			res := runPhone(t, p, phoneJob{Mode: "media", Host: s.host, HTTPPort: s.httpPort, HTTPSPort: s.httpsPort, Room: "lan-turn-" + tc.name})
			checkMedia(t, res)
			for _, pr := range []pairInfo{res.Pub, res.Sub} {
				if pr.LocalType != "relay" || pr.RelayProto != tc.relayProto || pr.RemoteAddr != s.host {
					t.Errorf("selected pair %+v, want a relay candidate over TURN/%s to %s", pr, tc.relayProto, s.host)
				}
			}
			// The join result handed out TURN REST credentials for this
			// peer and URLs on the LAN address.
			if len(res.ICEServers) != 1 {
				t.Fatalf("iceServers %v", res.ICEServers)
			}
			ice := res.ICEServers[0]
			user, _ := ice["username"].(string)
			if !regexp.MustCompile(`^\d{10,}:pe-[0-9a-f]+$`).MatchString(user) || ice["credential"] == "" {
				t.Errorf("TURN credentials %v: want username <expiry>:<peer id> and a password", ice)
			}
			urls := fmt.Sprint(ice["urls"])
			for _, tr := range []string{"udp", "tcp"} {
				if want := fmt.Sprintf("turn:%s:%d?transport=%s", s.host, turnPort, tr); !strings.Contains(urls, want) {
					t.Errorf("iceServers urls %s lack %s", urls, want)
				}
			}
		})
	}
}

// checkMedia asserts that the subscriber received what the publisher sent.
func checkMedia(t *testing.T, res phoneResult) {
	t.Helper()
	if res.Received < 150 || res.Matching != res.Received {
		t.Fatalf("subscriber received %d packets (%d of them sent by the publisher, which sent %d)", res.Received, res.Matching, res.Sent)
	}
}

// ICE gathers on usable interfaces only: not on container-style bridges,
// not on link-local addresses, unless an interface is named explicitly.
func TestCandidatesOnlyOnUsableInterfaces(t *testing.T) {
	p := newPhoneNet(t)
	// A Docker-style bridge with an address of its own.
	bridge := fmt.Sprintf("br-m%d", os.Getpid())
	a := netip.MustParseAddr(p.hostIP).As4()
	bridgeIP := fmt.Sprintf("10.%d.%d.1", a[1], (int(a[2])+125)%250+1)
	sh(t, "", "ip", "link", "add", bridge, "type", "bridge")
	t.Cleanup(func() { quiet(t, "ip", "link", "del", bridge) })
	sh(t, "", "ip", "addr", "add", bridgeIP+"/24", "dev", bridge)
	sh(t, "", "ip", "link", "set", bridge, "up")
	// A link-local address on the LAN interface, as every IPv6 link has.
	sh(t, "", "ip", "addr", "add", "fe80::1:2:3:4/64", "dev", p.hostLink, "nodad")

	mediaAddrs := func(edit func(*config.Config)) []string {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.UDPPort = 0
		cfg.ICETCPPort = 0
		cfg.HTTPAddr = ""
		if edit != nil {
			edit(&cfg)
		}
		srv, err := server.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		var out []string
		for _, a := range srv.MediaAddrs() {
			h, _, _ := net.SplitHostPort(a.String())
			out = append(out, h)
		}
		return out
	}
	got := mediaAddrs(nil)
	has := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	if !has(got, p.hostIP) {
		t.Errorf("media addresses %v lack the LAN address %s", got, p.hostIP)
	}
	for _, h := range got {
		ip := net.ParseIP(h)
		switch {
		case h == bridgeIP:
			t.Errorf("media addresses %v include the bridge %s's %s", got, bridge, bridgeIP)
		case ip.IsLinkLocalUnicast():
			t.Errorf("media addresses %v include link-local %s", got, h)
		case ip.IsLoopback():
			t.Errorf("media addresses %v include loopback %s", got, h)
		}
	}
	// Named explicitly, the bridge is used.
	if got := mediaAddrs(func(c *config.Config) { c.ICEInterfaces = []string{bridge} }); len(got) != 1 || got[0] != bridgeIP {
		t.Errorf("with --ice-interface %s: media addresses %v", bridge, got)
	}
}

// readAll is io.ReadAll that fails the test.
func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
