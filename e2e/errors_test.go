package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/web"
)

// pageState is what a person reads on a room page when something went wrong.
type pageState struct {
	Conn     string `json:"conn"`
	ConnText string `json:"connText"`
	Fatal    string `json:"fatal"` // title and text of the error dialog, if shown
	Banner   string `json:"banner"`
	Toasts   string `json:"toasts"`
	Prejoin  bool   `json:"prejoin"`
}

const pageJS = `(() => {
  const vis = (id) => { const e = document.getElementById(id); return e && !e.hidden ? e.innerText.trim() : ''; };
  const conn = document.querySelector('[data-testid=connection-state]');
  return {conn: conn ? conn.dataset.state : '', connText: conn ? conn.innerText.trim() : '',
    fatal: vis('fatal'), banner: vis('banner'), toasts: vis('toasts'), prejoin: !document.getElementById('prejoin').hidden};
})()`

func (tb *tab) state(t *testing.T) pageState {
	var p pageState
	if err := tb.eval(pageJS, &p); err != nil {
		t.Logf("%v", err)
	}
	return p
}

// joinAs opens a room link in a fresh tab and joins with a name.
func joinAs(t *testing.T, b *browser, name, link string, initScripts ...string) *tab {
	t.Helper()
	tb := b.newTab(name)
	for _, s := range initScripts {
		tb.addInitScript(t, s)
	}
	tb.do(t,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=join-room]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), name),
		chromedp.Click(chromedp.CSS(`[data-testid=join-room]`)),
	)
	return tb
}

func waitPage(t *testing.T, tb *tab, what string, ok func(pageState) bool) pageState {
	t.Helper()
	var last pageState
	testenv.EventuallyState(t, 10*time.Second, tb.name+": "+what, func() (bool, string) {
		last = tb.state(t)
		return ok(last), fmt.Sprintf("%+v", last)
	})
	return last
}

func TestErrorMessages(t *testing.T) {
	b := newBrowser(t)

	t.Run("room full", func(t *testing.T) {
		base := startServer(t, func(c *config.Config) { c.MaxPeers = 1 })
		first := joinAs(t, b, "first", base+"/r/tiny")
		waitJoined(t, first, 10*time.Second)
		second := joinAs(t, b, "second", base+"/r/tiny")
		p := waitPage(t, second, "says the room is full", func(p pageState) bool { return p.Fatal != "" })
		if !strings.Contains(p.Fatal, "This room is full") || p.Conn != "failed" {
			t.Errorf("room full: %+v", p)
		}
	})

	t.Run("unknown room", func(t *testing.T) {
		base := startServer(t, func(c *config.Config) { c.OpenRooms = false })
		tb := joinAs(t, b, "lost", base+"/r/nowhere")
		p := waitPage(t, tb, "says the room does not exist", func(p pageState) bool { return p.Fatal != "" })
		if !strings.Contains(p.Fatal, "Room not found") || !strings.Contains(p.Fatal, "nowhere") {
			t.Errorf("unknown room: %+v", p)
		}
	})

	t.Run("server unreachable", func(t *testing.T) {
		// The pages are served, but there is no signalling behind them.
		hs := httptest.NewServer(web.Handler())
		t.Cleanup(hs.Close)
		tb := joinAs(t, b, "alone", hs.URL+"/r/somewhere")
		p := waitPage(t, tb, "says the server cannot be reached", func(p pageState) bool { return p.Banner != "" })
		if !strings.Contains(p.Banner, "Can't reach the Matinee server") || p.Conn != "reconnecting" || !strings.Contains(p.ConnText, "unreachable") {
			t.Errorf("unreachable: %+v", p)
		}
	})

	t.Run("bad room link", func(t *testing.T) {
		base := startServer(t, nil)
		tb := b.newTab("badlink")
		// The server answers such a link with its 404 page (see
		// TestPagesInAppLook), not the room page.
		tb.do(t, chromedp.Navigate(base+"/r/not%20a%20room"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=error-page]`)))
		var text string
		tb.mustEval(t, `document.querySelector('[data-testid=error-page]').innerText`, &text)
		if !strings.Contains(text, "Not a room link") || !strings.Contains(text, "Go to the lobby") {
			t.Errorf("bad link: %q", text)
		}
	})

	t.Run("unsupported browser", func(t *testing.T) {
		base := startServer(t, nil)
		tb := b.newTab("old")
		tb.addInitScript(t, `delete window.RTCPeerConnection;`)
		tb.do(t, chromedp.Navigate(base+"/r/any"))
		p := waitPage(t, tb, "says the browser cannot join", func(p pageState) bool { return p.Fatal != "" })
		if !strings.Contains(p.Fatal, "This browser cannot join") || !strings.Contains(p.Fatal, "WebRTC") {
			t.Errorf("unsupported: %+v", p)
		}
	})

	t.Run("screen share denied and chat", func(t *testing.T) {
		base := startServer(t, nil)
		deny := `navigator.mediaDevices.getDisplayMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));`
		tb := joinAs(t, b, "shy", base+"/r/denied", deny)
		waitJoined(t, tb, 10*time.Second)
		tb.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
		p := waitPage(t, tb, "explains the refusal", func(p pageState) bool { return p.Toasts != "" })
		if !strings.Contains(p.Toasts, "Screen sharing was cancelled or blocked") {
			t.Errorf("denied: %+v", p)
		}
		var share struct {
			Share, Stop bool
		}
		tb.mustEval(t, `({share: !document.querySelector('[data-testid=share-screen]').hidden, stop: !document.querySelector('[data-testid=stop-share]').hidden})`, &share)
		if !share.Share || share.Stop {
			t.Errorf("after a refusal the share button should be back: %+v", share)
		}

		// Chat: a message shows up, or, while the server has no chat
		// method, the panel says so instead of offering an input.
		tb.do(t,
			chromedp.Click(chromedp.CSS(`#tab-btn-chat`)),
			chromedp.SendKeys(chromedp.CSS(`[data-testid=chat-input]`), "hello"),
			chromedp.Click(chromedp.CSS(`[data-testid=chat-send]`)),
		)
		testenv.EventuallyState(t, 5*time.Second, "chat answers", func() (bool, string) {
			var c struct {
				Messages    int  `json:"messages"`
				Unavailable bool `json:"unavailable"`
				FormHidden  bool `json:"formHidden"`
			}
			_ = tb.eval(`({messages: document.querySelectorAll('[data-testid=chat-message]').length,
			  unavailable: !document.getElementById('chat-unavailable').hidden,
			  formHidden: document.getElementById('chat-form').hidden})`, &c)
			return c.Messages == 1 || (c.Unavailable && c.FormHidden), fmt.Sprintf("%+v", c)
		})
	})
}
