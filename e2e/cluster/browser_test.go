package cluster

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds Chromium; without it the test skips, except in CI.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, c := range []string{os.Getenv("MATINEE_CHROMIUM"), "/usr/bin/chromium", "chromium"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no Chromium found (Debian package chromium, or MATINEE_CHROMIUM); browser tests never skip in CI")
	}
	t.Skip("no Chromium found: install the Debian package chromium (or set MATINEE_CHROMIUM)")
	return ""
}

// The web client follows a join answered 1010: a page opened on one
// node, whose room another node took meanwhile, moves to that node with
// the name typed in, and joins there without asking again.
func TestClusterWebClientFollowsMove(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server, two matinee processes and Chromium")
	}
	exe := chromiumPath(t)
	c := newCluster(t)
	a := c.addNode("wa")
	b := c.addNode("wb")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", "new"),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, stop := context.WithTimeout(ctx, 60*time.Second)
	defer stop()

	// The page opens on a while no node holds the room: a serves it and
	// asks for a name (a fresh profile has none).
	if err := chromedp.Do(ctx, chromedp.Navigate(a.url+"/r/moving"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=name-input]`))); err != nil {
		t.Fatalf("open the room on %s: %v\n%s", a.id, err, tail(a.log))
	}
	// Meanwhile someone joins on b, which takes the room.
	member, err := c.join(b, "moving")
	if err != nil {
		t.Fatalf("join on %s: %v", b.id, err)
	}
	defer member.Close()
	if h := c.leases()["moving"]; h != b.id {
		t.Fatalf("room held by %q, want %s", h, b.id)
	}
	// The person types a name and joins: a answers 1010, the page moves to
	// b and joins there with that name.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), "Browser"),
		chromedp.Click(chromedp.CSS(`[data-testid=join-room]`)),
	); err != nil {
		t.Fatal(err)
	}
	_ = member.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var msg struct {
			Method string
			Params struct {
				Peer struct{ Name string }
			}
		}
		if err := member.ReadJSON(&msg); err != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
			t.Fatalf("no peerJoined from the browser on %s (page at %s): %v", b.id, loc, err)
		}
		if msg.Method == "peerJoined" && msg.Params.Peer.Name == "Browser" {
			break
		}
	}
	loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	if err != nil {
		t.Fatal(err)
	}
	hash, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc, b.url+"/r/moving") || hash != "" {
		t.Errorf("page at %q (hash %q), want %s/r/moving with the fragment taken out", loc, hash, b.url)
	}
	prejoinHidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('prejoin').hidden`))
	if err != nil || !prejoinHidden {
		t.Errorf("the moved page asked for a name again (prejoin hidden %v, %v)", prejoinHidden, err)
	}
}
