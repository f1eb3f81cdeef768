package e2e

import (
	"encoding/json"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server/servertest"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// api calls the REST API with the server's key and decodes the answer.
func api(t *testing.T, ts *servertest.Server, method, path string, body any, out any) {
	t.Helper()
	st, _, b := ts.API(t).Do(method, path, body)
	if st >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, st, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

func mintToken(t *testing.T, ts *servertest.Server, room, identity, name, role string) string {
	t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	api(t, ts, http.MethodPost, "/api/rooms/"+room+"/tokens", map[string]any{"identity": identity, "name": name, "role": role, "ttl": 600}, &tok)
	return tok.Token
}

// person is how a tab shows one participant.
type person struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	Me        bool   `json:"me"`
	Buffering string `json:"buffering"`
	Menu      bool   `json:"menu"` // has a host menu
}

const peopleJS = `[...document.querySelectorAll('[data-testid=participant]')].map((li) => ({
  name: li.querySelector('.p-name').firstChild.textContent, role: li.dataset.role, me: li.classList.contains('me'),
  buffering: li.dataset.buffering, menu: !!li.querySelector('[data-testid=host-menu]')}))`

func (tb *tab) people(t *testing.T) []person {
	t.Helper()
	var ps []person
	if err := tb.eval(peopleJS, &ps); err != nil {
		t.Logf("%v", err)
	}
	return ps
}

// waitRole waits until tb lists name with role.
func waitRole(t *testing.T, tb *tab, name, role string) {
	t.Helper()
	testenv.EventuallyState(t, 5*time.Second, fmt.Sprintf("%s sees %s as %s", tb.name, name, role), func() (bool, string) {
		ps := tb.people(t)
		for _, p := range ps {
			if p.Name == name && p.Role == role {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", ps)
	})
}

// hostAction opens the host menu of name's entry in tb's list and picks
// action (twice for the ones that ask to click again).
func hostAction(t *testing.T, tb *tab, name, action string, clicks int) {
	t.Helper()
	tb.mustEval(t, fmt.Sprintf(`(() => {
	  const li = [...document.querySelectorAll('[data-testid=participant]')].find((li) => li.querySelector('.p-name').firstChild.textContent === %q);
	  li.querySelector('[data-testid=host-menu]').click();
	  const item = document.querySelector('[data-testid=host-action][data-action=%q]');
	  for (let i = 0; i < %d; i++) item.click();
	  return true;
	})()`, name, action, clicks), nil)
}

func waitText(t *testing.T, tb *tab, what, js, want string) string {
	t.Helper()
	var got string
	testenv.EventuallyState(t, 5*time.Second, tb.name+": "+what, func() (bool, string) {
		if err := tb.eval(js, &got); err != nil {
			return false, err.Error()
		}
		return strings.Contains(got, want), got
	})
	return got
}

// TestHostControls covers the people side of a watch party in the page:
// an invite token, a room password, roles and the host menu, open
// control, handing over hosting, locking, muting, removing someone, and a
// room deleted under everyone's feet.
func TestHostControls(t *testing.T) {
	ts := startTestServer(t, nil)
	b := newBrowser(t)
	var room struct {
		ID string `json:"id"`
	}
	api(t, ts, http.MethodPost, "/api/rooms", map[string]any{"name": "Club", "password": "popcorn"}, &room)
	link := ts.URL + "/r/" + room.ID

	// Ana has an invite with a host token: no name to type, no password.
	ana := b.newTab("Ana")
	ana.do(t, chromedp.Navigate(link+"#token="+mintToken(t, ts, room.ID, "ana", "Ana", "host")))
	waitJoined(t, ana, 10*time.Second)
	waitRole(t, ana, "Ana", "host")
	var hash string
	ana.mustEval(t, `location.hash`, &hash)
	if hash != "" {
		t.Errorf("the token stays in the address bar: %q", hash)
	}

	// Bo opens the plain link: the room asks for its password.
	bo := joinAs(t, b, "Bo", link)
	p := waitPage(t, bo, "asks for the password", func(p pageState) bool { return p.Prejoin })
	var prompt string
	bo.mustEval(t, `document.getElementById('password-field').hidden ? '' : document.getElementById('prejoin-error').textContent`, &prompt)
	if !strings.Contains(prompt, "needs a password") {
		t.Errorf("password prompt: %q (%+v)", prompt, p)
	}
	bo.do(t,
		chromedp.SendKeys(chromedp.CSS(`#prejoin-password`), "popcorn"),
		chromedp.Click(chromedp.CSS(`[data-testid=join-room]`)),
	)
	waitJoined(t, bo, 10*time.Second)
	waitRole(t, ana, "Bo", "guest")

	// Only hosts see the host menu and the room settings.
	for _, pp := range ana.people(t) {
		if pp.Menu == pp.Me {
			t.Errorf("Ana's list: %+v (a host menu on everyone but herself)", pp)
		}
	}
	for _, pp := range bo.people(t) {
		if pp.Menu {
			t.Errorf("Bo, a guest, has a host menu: %+v", pp)
		}
	}
	var ui struct {
		Settings bool `json:"settings"`
		Watch    bool `json:"watch"`
	}
	const uiJS = `({settings: !document.getElementById('room-controls').hidden, watch: !document.querySelector('[data-testid=watch-video]').hidden})`
	bo.mustEval(t, uiJS, &ui)
	if ui.Settings || ui.Watch {
		t.Errorf("guest Bo sees host controls: %+v", ui)
	}

	// Roles through the host menu.
	hostAction(t, ana, "Bo", "role-viewer", 1)
	waitRole(t, bo, "Bo", "viewer")
	waitText(t, bo, "is told", `document.getElementById('toasts').innerText`, "You are a viewer now")
	var notAllowed bool
	bo.mustEval(t, `document.querySelector('[data-testid=share-screen]').classList.contains('not-allowed')`, &notAllowed)
	if !notAllowed {
		t.Error("a viewer is offered screen sharing")
	}

	// Open control lets guests (not viewers) control the video.
	ana.mustEval(t, `document.querySelector('[data-testid=room-open-control]').click(), true`, nil)
	hostAction(t, ana, "Bo", "role-guest", 1)
	waitRole(t, bo, "Bo", "guest")
	testenv.EventuallyState(t, 5*time.Second, "guest Bo may pick a video with open control", func() (bool, string) {
		_ = bo.eval(uiJS, &ui)
		return ui.Watch && !ui.Settings, fmt.Sprintf("%+v", ui)
	})
	bo.do(t, chromedp.Click(chromedp.CSS(`[data-testid=watch-video]`)))
	waitText(t, bo, "the picker says the server has no media folder", `document.getElementById('media-empty').textContent`, "No videos on this server")
	bo.mustEval(t, `document.getElementById('watch-close').click(), true`, nil)

	// Hand hosting to Bo (the menu asks to click again).
	hostAction(t, ana, "Bo", "transfer", 2)
	waitRole(t, ana, "Bo", "host")
	waitRole(t, bo, "Ana", "guest")
	testenv.EventuallyState(t, 5*time.Second, "the settings move with the host", func() (bool, string) {
		var a, o struct {
			Settings bool `json:"settings"`
		}
		_ = ana.eval(uiJS, &a)
		_ = bo.eval(uiJS, &o)
		return !a.Settings && o.Settings, fmt.Sprintf("Ana %+v, Bo %+v", a, o)
	})

	// Bo locks the room: Cy, with the right password, is told it is locked.
	bo.mustEval(t, `document.querySelector('[data-testid=room-lock]').click(), true`, nil)
	testenv.EventuallyState(t, 5*time.Second, "Ana sees the lock", func() (bool, string) {
		var hidden bool
		_ = ana.eval(`document.getElementById('lock-badge').hidden`, &hidden)
		return !hidden, ""
	})
	cy := b.newTab("Cy")
	cy.do(t, chromedp.Navigate(link+"#token="+mintToken(t, ts, room.ID, "cy", "Cy", "guest")))
	cp := waitPage(t, cy, "says the room is locked", func(p pageState) bool { return p.Fatal != "" })
	if !strings.Contains(cp.Fatal, "This room is locked") {
		t.Errorf("locked room: %+v", cp)
	}

	// A token for another room is dropped with a clear word.
	api(t, ts, http.MethodPost, "/api/rooms", map[string]any{"name": "Elsewhere"}, nil)
	dee := b.newTab("Dee")
	dee.do(t, chromedp.Navigate(ts.URL+"/r/elsewhere#token="+mintToken(t, ts, room.ID, "dee", "Dee", "guest")))
	dp := waitPage(t, dee, "says the invite is for another room", func(p pageState) bool { return p.Prejoin })
	var deeErr string
	dee.mustEval(t, `document.getElementById('prejoin-error').textContent`, &deeErr)
	if !strings.Contains(deeErr, "for another room") {
		t.Errorf("token for another room: %q (%+v)", deeErr, dp)
	}

	// Mute: Ana's microphone is paused by the host; she is told and may
	// unmute.
	ana.do(t, chromedp.Click(chromedp.CSS(`#mic`)))
	testenv.EventuallyState(t, 5*time.Second, "Bo sees Ana's microphone", func() (bool, string) {
		var n int
		_ = bo.eval(`[...document.querySelectorAll('[data-testid=participant]')].filter((li) => li.querySelector('[aria-label="Microphone on"]')).length`, &n)
		return n == 1, fmt.Sprint(n)
	})
	hostAction(t, bo, "Ana", "mute", 1)
	waitText(t, ana, "is told she was muted", `document.getElementById('toasts').innerText`, "Bo muted your microphone")

	// Remove Ana (the menu asks to click again).
	hostAction(t, bo, "Ana", "kick", 2)
	ap := waitPage(t, ana, "says she was removed", func(p pageState) bool { return p.Fatal != "" })
	if !strings.Contains(ap.Fatal, "You were removed from the room") {
		t.Errorf("kicked: %+v", ap)
	}
	testenv.EventuallyState(t, 5*time.Second, "Bo's list drops Ana", func() (bool, string) {
		ps := bo.people(t)
		return len(ps) == 1, fmt.Sprintf("%+v", ps)
	})
	testenv.Hold(t, 1500*time.Millisecond, "a removed page stays removed (no reconnect by itself)", func() (bool, string) {
		st := ana.state(t)
		return strings.Contains(st.Fatal, "removed") && st.Conn == "failed", fmt.Sprintf("%+v", st)
	})

	// The room is deleted through the API: Bo is told.
	api(t, ts, http.MethodDelete, "/api/rooms/"+room.ID, nil, nil)
	op := waitPage(t, bo, "says the room was closed", func(p pageState) bool { return p.Fatal != "" })
	if !strings.Contains(op.Fatal, "This room was closed") {
		t.Errorf("deleted: %+v", op)
	}
}
