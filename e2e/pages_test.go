package e2e

import (
	"bytes"
	"github.com/matinee-dev/matinee/internal/testenv"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// appBackground is the app's page colour (--bg in style.css).
const appBackground = "rgb(21, 19, 28)"

// TestPagesInAppLook checks what a browser asks for beside the room: the
// favicon (/favicon.ico, and the SVG one the pages link), the 404 page for
// an unknown path and for a link that cannot name a room (an HTML page in
// the app's dark look with a link home, still with status 404), and the
// /help/trust page in the same look.
func TestPagesInAppLook(t *testing.T) {
	base := startServer(t, nil)
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return res, body
	}

	res, body := get("/favicon.ico")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/x-icon" || !bytes.HasPrefix(body, []byte{0, 0, 1, 0}) {
		t.Errorf("/favicon.ico: %s, %q, %d bytes starting % x; want 200 and an ICO file", res.Status, res.Header.Get("Content-Type"), len(body), body[:min(4, len(body))])
	}
	for _, c := range []struct{ path, title string }{
		{"/no/such/page", "Page not found"},
		{"/r/not%20a%20room!", "Not a room link"},
	} {
		res, body := get(c.path)
		page := string(body)
		if res.StatusCode != http.StatusNotFound || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(page, `data-testid="error-page"`) || !strings.Contains(page, `href="/"`) || !strings.Contains(page, c.title) {
			t.Errorf("GET %s: %s %q, want 404 and the error page saying %q with a link home:\n%s", c.path, res.Status, res.Header.Get("Content-Type"), c.title, page)
		}
	}

	b := newBrowser(t)
	tb := b.newTab("pages")
	dir := shotDir(t)
	type look struct {
		Background string `json:"background"`
		Color      string `json:"color"`
		Home       bool   `json:"home"`
		Title      string `json:"title"`
		Icon       int    `json:"icon"`
	}
	read := func(t *testing.T) look {
		t.Helper()
		var l look
		tb.mustEval(t, `(async () => {
		  const cs = getComputedStyle(document.body);
		  const icon = await fetch('/favicon.ico').then((r) => r.status, () => 0);
		  return {background: cs.backgroundColor, color: cs.color, home: !!document.querySelector('a[href="/"]'),
		    title: document.querySelector('h1') ? document.querySelector('h1').textContent : '', icon};
		})()`, &l)
		return l
	}
	for _, c := range []struct{ name, path, title string }{
		{"not-found", "/no/such/page", "Page not found"},
		{"bad-room-link", "/r/not%20a%20room!", "Not a room link"},
		{"trust", "/help/trust", "Trust this Matinee server"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb.do(t, chromedp.Navigate(base+c.path), chromedp.WaitVisible(chromedp.CSS(`h1`)))
			var l look
			testenv.EventuallyState(t, 5*time.Second, "the page's stylesheet applies", func() (bool, string) {
				l = read(t)
				return l.Background == appBackground, l.Background
			})
			tb.shot(t, dir, c.name)
			if l.Title != c.title || l.Icon != 200 || l.Color == "rgb(0, 0, 0)" {
				t.Errorf("%s: %+v, want the title %q, light text and the favicon", c.path, l, c.title)
			}
			if c.name != "trust" && !l.Home {
				t.Errorf("%s has no link home", c.path)
			}
		})
	}
}
