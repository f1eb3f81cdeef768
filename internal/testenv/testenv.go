// Package testenv is what tests of every layer share about waiting and
// about the machine: Eventually (poll a condition with a deadline instead
// of sleeping) and Hold (check what must stay true for a while), an HTTP
// request helper, a free port, and finding Chromium or another tool,
// which a test skips without but CI (CI=true) never does.
//
// It imports nothing of the module, so that sfu's own tests can use it;
// starting a whole server is server/servertest's job.
package testenv

import (
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tick is how often Eventually and Poll look again: often enough that a
// wait ends soon after its condition holds, seldom enough to cost nothing.
const Tick = 50 * time.Millisecond

// Poll calls check until it reports done and returns how long that took,
// or returns an error after timeout that names what was awaited and the
// last state check described.
func Poll(timeout time.Duration, what string, check func() (done bool, state string)) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		done, state := check()
		if done {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			if state == "" {
				return time.Since(start), fmt.Errorf("%s: not within %s", what, timeout)
			}
			return time.Since(start), fmt.Errorf("%s: not within %s; last state: %s", what, timeout, state)
		}
		time.Sleep(Tick)
	}
}

// Eventually fails the test when cond does not hold within timeout, and
// returns how long it took to hold.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return EventuallyState(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// EventuallyState is Eventually with a condition that also describes the
// state it saw, for the failure message.
func EventuallyState(t testing.TB, timeout time.Duration, what string, check func() (done bool, state string)) time.Duration {
	t.Helper()
	d, err := Poll(timeout, what, check)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Hold fails the test as soon as check stops holding during d: for what
// must stay true for a while (a page that must not come back, a player
// that must stay paused), checked all along rather than once after a
// sleep.
func Hold(t testing.TB, d time.Duration, what string, check func() (ok bool, state string)) {
	t.Helper()
	for end := time.Now().Add(d); ; {
		if ok, state := check(); !ok {
			t.Fatalf("%s: stopped holding; state: %s", what, state)
			return
		}
		if time.Now().After(end) {
			return
		}
		time.Sleep(Tick)
	}
}

// Within reports whether cond holds within timeout, for a test that
// reports the failure its own way.
func Within(timeout time.Duration, cond func() bool) bool {
	_, err := Poll(timeout, "", func() (bool, string) { return cond(), "" })
	return err == nil
}

// FreePort returns a port free for TCP and UDP on every address. It is
// drawn below the kernel's ephemeral range (32768 and up), so that no
// outgoing socket of this or another process can take it between this
// check and the caller's bind; and it is checked on the wildcard address,
// because some listeners (TURN) bind there and would collide with a socket
// on any one address, loopback included. A port is handed out once per
// test binary: a test that draws several ports before binding any (a
// server's HTTPS, HTTP and TURN ports) must not get the same one twice.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		port := 20000 + mrand.IntN(12000)
		if !claimPort(port) {
			continue
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = ln.Close()
		if u, err := net.ListenPacket("udp", ":"+strconv.Itoa(port)); err == nil {
			_ = u.Close()
			return port
		}
	}
	t.Fatal("no free port between 20000 and 32000 after 50 tries")
	return 0
}

var issued struct {
	sync.Mutex
	ports map[int]bool
}

// claimPort reports whether port was not handed out before, and marks it.
func claimPort(port int) bool {
	issued.Lock()
	defer issued.Unlock()
	if issued.ports[port] {
		return false
	}
	if issued.ports == nil {
		issued.ports = map[int]bool{}
	}
	issued.ports[port] = true
	return true
}

// FreeUDPPair returns an even port p with p and p+1 free for UDP on
// loopback, drawn as FreePort draws: RTP and RTCP for a receiver without
// rtcp-mux (ffmpeg reading an SDP binds both).
func FreeUDPPair(t testing.TB) int {
	t.Helper()
	for range 50 {
		p := FreePort(t) &^ 1
		a, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p+1))
		_ = a.Close()
		if err != nil {
			continue
		}
		_ = b.Close()
		return p
	}
	t.Fatal("no free even UDP port pair between 20000 and 32000 after 50 tries")
	return 0
}

// Response is an HTTP answer with its body read.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       string
}

// plainHTTP keeps no connection alive: an idle one would outlive the test
// and goleak would see its goroutines.
var plainHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// Request sends method to url with body ("" for none), a Content-Type
// when ctype is not "", a bearer token when token is not "" and the
// header name/value pairs of hdr, and returns the answer. Only a failure
// to send fails the test.
func Request(t testing.TB, method, url, ctype, token, body string, hdr ...string) Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := plainHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// Need skips the test with why, or fails it under CI=true, where every
// test must run (scripts/test installs what they need).
func Need(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI runs every test (scripts/test installs the tools), so this is a failure", why)
	}
	t.Skip(why)
}

// Tool returns the path of the first of names found on $PATH (or as an
// absolute path), or calls Need with what to install.
func Tool(t testing.TB, install string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if n == "" {
			continue
		}
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Need(t, fmt.Sprintf("%s not found: install %s", strings.Join(names, " or "), install))
	return ""
}

// Chromium returns the browser to drive: $MATINEE_CHROMIUM, else
// Debian's chromium, else another Chromium on $PATH.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, c := range []string{os.Getenv("MATINEE_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	Need(t, "no Chromium found: install the Debian package chromium (or set MATINEE_CHROMIUM)")
	return ""
}
