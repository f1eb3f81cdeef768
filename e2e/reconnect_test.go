package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/matinee-dev/matinee/config"
)

// A member is a person, not a connection: these tests reload pages and
// take the network away from browsers, and check that roles, the room
// and the share come back (docs/protocol.md, "Reconnecting").

// netCut takes the network away from one Chromium. The browser runs as a
// user of its own, and while the cut lasts an nftables rule drops what
// that user's sockets send to the server: its HTTP port (the WebSocket)
// and every UDP datagram (ICE). The server's packets still arrive; the
// browser's answers do not, as on a Wi-Fi link that went dead. Nothing
// closes a socket: each side finds out by its own timeouts.
type netCut struct {
	t     *testing.T
	uid   int
	port  int
	table string
	on    bool
}

var cutSeq atomic.Int32

// needCuts skips (fails under CI=true) when the machine cannot cut a
// browser's network: root, nft and setpriv are needed.
func needCuts(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to run Chromium as another user and to load nftables rules"
	}
	for _, bin := range []string{"nft", "setpriv"} {
		if _, err := exec.LookPath(bin); err != nil && why == "" {
			why = bin + " not found: install the Debian packages nftables and util-linux"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; browser tests never skip in CI", why)
	}
	t.Skip(why)
}

// newCuttableBrowser starts a Chromium whose network cut can take away;
// serverURL names the server whose port is cut.
func newCuttableBrowser(t *testing.T, serverURL string) (*browser, *netCut) {
	t.Helper()
	needCuts(t)
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("server URL %s: %v", serverURL, err)
	}
	// A user id of this test process alone, so parallel runs do not cut
	// each other's browsers.
	uid := 40000 + (os.Getpid()%2000)*10 + int(cutSeq.Add(1))%10
	// t.TempDir's parents are private to root: the browser's user could
	// not reach its profile there.
	dir, err := os.MkdirTemp("", "matinee-e2e-cut-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	home, profile := filepath.Join(dir, "home"), filepath.Join(dir, "profile")
	for _, d := range []string{home, profile} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "chromium.sh")
	script := fmt.Sprintf("#!/bin/sh\nexport HOME=%s\nexec setpriv --reuid=%d --regid=%d --clear-groups %s \"$@\"\n", home, uid, uid, testenv.Chromium(t))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &netCut{t: t, uid: uid, port: port, table: fmt.Sprintf("matinee_cut_%d_%d", os.Getpid(), uid)}
	t.Cleanup(func() {
		if c.on {
			c.restore()
		}
	})
	return launchBrowser(t, wrapper, profile), c
}

// cut drops the browser's packets to the server until restore.
func (c *netCut) cut() {
	c.t.Helper()
	rules := fmt.Sprintf(`table inet %s {
  chain out {
    type filter hook output priority 0; policy accept;
    meta skuid %d tcp dport %d drop
    meta skuid %d meta l4proto udp drop
  }
}
`, c.table, c.uid, c.port, c.uid)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("nft: %v\n%s", err, out)
	}
	c.on = true
}

// restore gives the network back.
func (c *netCut) restore() {
	c.t.Helper()
	if out, err := exec.Command("nft", "delete", "table", "inet", c.table).CombinedOutput(); err != nil {
		c.t.Errorf("nft delete table %s: %v\n%s", c.table, err, out)
	}
	c.on = false
}

// createRoom makes a room from the lobby as name; it returns the tab
// and the room's link.
func createRoom(t *testing.T, b *browser, base, name string) (*tab, string) {
	t.Helper()
	tb := b.newTab(name)
	tb.do(t,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=name-input]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), name),
		chromedp.Click(chromedp.CSS(`[data-testid=create-room]`)),
	)
	var link string
	testenv.EventuallyState(t, 10*time.Second, name+" lands on a room page", func() (bool, string) {
		_ = tb.eval(`location.href`, &link)
		return strings.Contains(link, "/r/"), link
	})
	waitJoined(t, tb, 10*time.Second)
	return tb, link
}

// roles waits until every tab lists exactly the people of want (name →
// role).
func roles(t *testing.T, timeout time.Duration, want map[string]string, tabs ...*tab) {
	t.Helper()
	for _, tb := range tabs {
		testenv.EventuallyState(t, timeout, fmt.Sprintf("%s lists %v", tb.name, want), func() (bool, string) {
			ps := tb.people(t)
			if len(ps) != len(want) {
				return false, fmt.Sprintf("%+v", ps)
			}
			for _, p := range ps {
				if want[p.Name] != p.Role {
					return false, fmt.Sprintf("%+v", ps)
				}
			}
			return true, ""
		})
	}
}

// toldHost reports whether tb was ever told it became host.
func toldHost(t *testing.T, tb *tab) bool {
	t.Helper()
	return strings.Contains(tb.state(t).Toasts, "host now")
}

// shotsDir is where the reconnect tests keep their screenshots:
// $MATINEE_SCREENSHOTS, else a temporary directory.
func shotsDir(t *testing.T) string {
	if dir := os.Getenv("MATINEE_SCREENSHOTS"); dir != "" {
		return dir
	}
	return t.TempDir()
}

const hostUIJS = `!document.getElementById('room-controls').hidden && !document.querySelector('[data-testid=watch-video]').hidden`

// (a) The host reloads the page: still host, with the host's controls,
// and the guest still guest; nobody was told of a new host.
func TestHostKeepsRoleOnReload(t *testing.T) {
	ts := startTestServer(t, nil)
	b := newBrowser(t)
	ana, link := createRoom(t, b, ts.URL, "Ana")
	bo := joinAs(t, b, "Bo", link)
	waitJoined(t, bo, 10*time.Second)
	want := map[string]string{"Ana": "host", "Bo": "guest"}
	roles(t, 5*time.Second, want, ana, bo)

	ana.mustEval(t, `window.__e2eMark = true`, nil)
	before, err := ana.probe()
	if err != nil {
		t.Fatal(err)
	}
	ana.do(t, chromedp.Reload())
	waitJoined(t, ana, 10*time.Second)
	after, err := ana.probe()
	if err != nil {
		t.Fatal(err)
	}
	if after.Mark {
		t.Fatal("the page did not reload")
	}
	roles(t, 5*time.Second, want, ana, bo)
	var hostUI bool
	ana.mustEval(t, hostUIJS, &hostUI)
	if !hostUI {
		t.Error("Ana is host but lost the host's controls")
	}
	if after.Peer != before.Peer {
		t.Errorf("Ana came back as peer %s, was %s: a new member, not the same one", after.Peer, before.Peer)
	}
	ana.shot(t, shotsDir(t), "host-after-reload")
	// The resume token is in sessionStorage only while the page goes
	// away: a tab opened from this one copies sessionStorage and must not
	// take Ana's place.
	var kept int
	ana.mustEval(t, `Object.keys(sessionStorage).filter((k) => k.startsWith('matinee.resume.')).length`, &kept)
	if kept != 0 {
		t.Errorf("%d resume tokens in sessionStorage of a live page", kept)
	}
	if toldHost(t, bo) {
		t.Errorf("Bo was told he is host: %+v", bo.state(t))
	}
}

// (b) The host's network drops for a few seconds and comes back: still
// host. The server here notices a dead socket within 2 s (ping 500ms,
// pong timeout 2s), as it would once a phone's Wi-Fi is gone long enough;
// with the default 20 s it would not even notice a short drop.
func TestHostKeepsRoleThroughNetworkDrop(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.WSPingInterval = 500 * time.Millisecond
		c.WSPongTimeout = 2 * time.Second
		c.ICETCPPort = 0
	})
	cb, cut := newCuttableBrowser(t, ts.URL)
	b := newBrowser(t)
	ana, link := createRoom(t, cb, ts.URL, "Ana")
	bo := joinAs(t, b, "Bo", link)
	waitJoined(t, bo, 10*time.Second)
	want := map[string]string{"Ana": "host", "Bo": "guest"}
	roles(t, 5*time.Second, want, ana, bo)

	before, err := ana.probe()
	if err != nil {
		t.Fatal(err)
	}
	cut.cut()
	// The server finds Ana's socket dead and keeps her place: Bo sees her
	// reconnecting, still host.
	testenv.EventuallyState(t, 10*time.Second, "Bo sees Ana reconnecting", func() (bool, string) {
		var away bool
		_ = bo.eval(`!!document.querySelector('[data-testid=participant][data-away=true]')`, &away)
		return away, fmt.Sprintf("%+v", bo.people(t))
	})
	roles(t, time.Second, want, bo)
	bo.shot(t, shotsDir(t), "host-away")
	cut.restore()
	back := time.Now()
	testenv.EventuallyState(t, 10*time.Second, "Ana is back on a new connection, and Bo sees her back", func() (bool, string) {
		p, err := ana.probe()
		if err != nil {
			return false, err.Error()
		}
		var away bool
		_ = bo.eval(`!!document.querySelector('[data-testid=participant][data-away=true]')`, &away)
		return p.State == "joined" && p.Conn == "connected" && p.Session > before.Session && !away, fmt.Sprintf("Ana %s, Bo sees her away: %v", p, away)
	})
	t.Logf("Ana connected again %.2fs after the network came back", time.Since(back).Seconds())
	roles(t, 5*time.Second, want, ana, bo)
	var hostUI bool
	ana.mustEval(t, hostUIJS, &hostUI)
	if !hostUI {
		t.Error("Ana is host but lost the host's controls")
	}
	if toldHost(t, bo) {
		t.Errorf("Bo was told he is host: %+v", bo.state(t))
	}
}

// (c) The host leaves for good: the others are told who left and who is
// host now.
func TestHostLeavingIsAnnounced(t *testing.T) {
	ts := startTestServer(t, nil)
	b := newBrowser(t)
	ana, link := createRoom(t, b, ts.URL, "Ana")
	bo := joinAs(t, b, "Bo", link)
	waitJoined(t, bo, 10*time.Second)
	cy := joinAs(t, b, "Cy", link)
	waitJoined(t, cy, 10*time.Second)
	roles(t, 5*time.Second, map[string]string{"Ana": "host", "Bo": "guest", "Cy": "guest"}, ana, bo, cy)

	ana.do(t, chromedp.Click(chromedp.CSS(`#leave`)))
	roles(t, 5*time.Second, map[string]string{"Bo": "host", "Cy": "guest"}, bo, cy)
	waitText(t, cy, "Cy is told", `document.getElementById('toasts').innerText`, "Ana left; Bo is now host.")
	waitText(t, bo, "Bo is told", `document.getElementById('toasts').innerText`, "Ana left; you are the host now")
	dir := shotsDir(t)
	cy.shot(t, dir, "host-left-guest")
	bo.shot(t, dir, "host-left-new-host")
}

// outages are the network cuts TestRoomSurvivesOutage makes: 8 s, or
// the list in MATINEE_E2E_OUTAGES (e.g. "8,15,30") to measure longer
// ones by hand.
func outages(t *testing.T) []time.Duration {
	spec := os.Getenv("MATINEE_E2E_OUTAGES")
	if spec == "" {
		return []time.Duration{8 * time.Second}
	}
	var out []time.Duration
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			t.Fatalf("MATINEE_E2E_OUTAGES=%q: want seconds, e.g. 8,15,30", spec)
		}
		out = append(out, time.Duration(n)*time.Second)
	}
	return out
}

// (d) Everyone's network drops, the sharer's and the viewer's: the room
// comes back with its host, its chat and the share, and the sharer's
// picture reaches the viewer within 3 s of the network returning.
//
// The server notices dead sockets within 2 s here (so the whole room is
// away during the cut, the case that closed it before); with
// MATINEE_E2E_DEFAULT_PING=1 it keeps the default ping (10 s, pong
// timeout 20 s), so short cuts go unnoticed by the server and the
// clients' own heartbeat does the work.
func TestRoomSurvivesOutage(t *testing.T) {
	for _, d := range outages(t) {
		t.Run(d.String(), func(t *testing.T) {
			ts := startTestServer(t, func(c *config.Config) {
				if os.Getenv("MATINEE_E2E_DEFAULT_PING") == "" {
					c.WSPingInterval = 500 * time.Millisecond
					c.WSPongTimeout = 2 * time.Second
				}
				c.ICETCPPort = 0
			})
			cb, cut := newCuttableBrowser(t, ts.URL)
			ana, link := createRoom(t, cb, ts.URL, "Ana")
			bo := joinAs(t, cb, "Bo", link)
			waitJoined(t, bo, 10*time.Second)
			want := map[string]string{"Ana": "host", "Bo": "guest"}
			roles(t, 5*time.Second, want, ana, bo)
			roomID := link[strings.LastIndex(link, "/r/")+3:]
			theRoom, ok := ts.Rooms().Room(roomID)
			if !ok {
				t.Fatalf("no room %q on the server", roomID)
			}
			bo.do(t,
				chromedp.Click(chromedp.CSS(`#tab-btn-chat`)),
				chromedp.SendKeys(chromedp.CSS(`[data-testid=chat-input]`), "before the storm"),
				chromedp.Click(chromedp.CSS(`[data-testid=chat-send]`)),
			)
			ana.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
			if _, err := waitPlaying(bo, 10*time.Second); err != nil {
				t.Fatal(err)
			}

			cut.cut()
			start := time.Now()
			// The cut is real: both pages find out they lost the server.
			for _, tb := range []*tab{ana, bo} {
				testenv.EventuallyState(t, d, tb.name+" notices the outage", func() (bool, string) {
					p, err := tb.probe()
					if err != nil {
						return false, err.Error()
					}
					return p.Conn != "connected", p.String()
				})
			}
			time.Sleep(d - time.Since(start)) // the rest of the outage: nothing to wait for
			cut.restore()
			back := time.Now()
			took, err := waitPlaying(bo, 45*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			sinceBack := time.Since(back)
			t.Logf("outage %s: the viewer plays the sharer's picture again %.2fs after the network came back (%.2fs polling)", d, sinceBack.Seconds(), took.Seconds())
			if sinceBack > 3*time.Second {
				t.Errorf("picture back %.2fs after the network, want within 3s", sinceBack.Seconds())
			}
			roles(t, 5*time.Second, want, ana, bo)
			// The same room, not one opened again by the first to return,
			// with its chat.
			if r, ok := ts.Rooms().Room(roomID); !ok || r != theRoom {
				t.Fatalf("room %s was closed during the outage and opened again", roomID)
			}
			bo.shot(t, shotsDir(t), "viewer-after-outage-"+d.String())
			var chat []string
			bo.mustEval(t, `window.__matinee.client.lastJoin.chat.map((m) => m.text)`, &chat)
			if len(chat) != 1 || chat[0] != "before the storm" {
				t.Errorf("chat history given to Bo's rejoin: %q", chat)
			}
		})
	}
}
