package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/matinee-dev/matinee/config"
)

// focusView is where the keyboard focus is: the focused element's id (or
// data-testid, or tag) and which dialog, if any, holds it.
type focusView struct {
	El      string `json:"el"`
	Dialog  string `json:"dialog"`
	Invite  bool   `json:"invite"`
	Watch   bool   `json:"watch"`
	Overlay bool   `json:"overlay"`
}

const focusJS = `(() => {
  const a = document.activeElement;
  const shown = (id) => { const d = document.getElementById(id); return !!d && (d.open === true || (d.open === undefined && !d.hidden)); };
  const dlg = a && a.closest ? a.closest('#invite-dialog, #watch-dialog') : null;
  return {el: !a || a === document.body ? 'body' : (a.id || a.dataset.testid || a.tagName.toLowerCase()),
    dialog: dlg ? dlg.id : '', invite: shown('invite-dialog'), watch: shown('watch-dialog')};
})()`

func (tb *tab) focus(t *testing.T) focusView {
	t.Helper()
	var f focusView
	tb.mustEval(t, focusJS, &f)
	return f
}

func (tb *tab) press(t *testing.T, key string) {
	t.Helper()
	tb.do(t, chromedp.KeyEvent(key))
}

// waitFocus waits until the focus is as ok wants it.
func (tb *tab) waitFocus(t *testing.T, what string, ok func(focusView) bool) focusView {
	t.Helper()
	var f focusView
	testenv.EventuallyState(t, 5*time.Second, what, func() (bool, string) {
		f = focusView{}
		if err := tb.eval(focusJS, &f); err != nil {
			return false, err.Error()
		}
		return ok(f), fmt.Sprintf("%+v", f)
	})
	return f
}

// TestKeyboard drives the room with the keyboard only, as someone who
// cannot use a mouse does: the Invite and Video dialogs take focus, keep
// Tab inside, close on Escape and give focus back; the picker's link field
// comes before its list; Share/Stop and Play/Pause keep the focus when
// they swap; the People/Chat tabs follow the arrow keys; the page has one
// main landmark holding the stage.
func TestKeyboard(t *testing.T) {
	media := t.TempDir()
	makeClip(t, filepath.Join(media, "Film.mp4"), 12)
	copyFile(t, filepath.Join(media, "Film.mp4"), filepath.Join(media, "Other.mp4"))
	ts := startTestServer(t, func(c *config.Config) { c.MediaDir = media })
	b := newBrowser(t)
	ana := joinAs(t, b, "Ana", ts.URL+"/r/keys")
	waitJoined(t, ana, 10*time.Second)
	dir := shotDir(t)

	t.Run("landmark", func(t *testing.T) {
		var ok bool
		ana.mustEval(t, `document.querySelectorAll('main').length === 1 && document.querySelector('main').contains(document.getElementById('stage'))`, &ok)
		if !ok {
			t.Error("the room page has no single main landmark holding the stage")
		}
	})

	t.Run("invite dialog", func(t *testing.T) {
		ana.mustEval(t, `document.getElementById('copy-link').focus(), true`, nil)
		ana.press(t, kb.Enter)
		ana.waitFocus(t, "the invite dialog opens with the focus in it", func(f focusView) bool { return f.Invite && f.Dialog == "invite-dialog" })
		testenv.EventuallyState(t, 5*time.Second, "the invite dialog lists the join links", func() (bool, string) {
			var n int
			_ = ana.eval(`document.querySelectorAll('#invite-links a').length`, &n)
			return n > 0, fmt.Sprint(n)
		})
		ana.shot(t, dir, "invite")
		var seen []string
		for i := 0; i < 8; i++ {
			ana.press(t, kb.Tab)
			f := ana.focus(t)
			seen = append(seen, f.El)
			if f.Dialog != "invite-dialog" {
				t.Fatalf("Tab %d left the open dialog for %q (path %v)", i+1, f.El, seen)
			}
		}
		t.Logf("Tab walks %v", seen)
		ana.press(t, kb.Escape)
		ana.waitFocus(t, "Escape closes the dialog and gives focus back to Invite", func(f focusView) bool { return !f.Invite && f.El == "copy-link" })
	})

	t.Run("video picker", func(t *testing.T) {
		ana.mustEval(t, `document.getElementById('watch').focus(), true`, nil)
		ana.press(t, kb.Enter)
		ana.waitFocus(t, "the picker opens with the focus in it", func(f focusView) bool { return f.Watch && f.Dialog == "watch-dialog" })
		testenv.EventuallyState(t, 5*time.Second, "the picker lists the folder", func() (bool, string) {
			var n int
			_ = ana.eval(`document.querySelectorAll('[data-testid=media-item]').length`, &n)
			return n == 2, fmt.Sprint(n)
		})
		ana.shot(t, dir, "picker")
		if f := ana.focus(t); f.Dialog != "watch-dialog" {
			t.Fatalf("the focus left the picker when its list came: %+v", f)
		}
		var seen []string
		for i := 0; i < 8; i++ {
			ana.press(t, kb.Tab)
			f := ana.focus(t)
			seen = append(seen, f.El)
			if f.Dialog != "watch-dialog" {
				t.Fatalf("Tab %d left the open picker for %q (path %v)", i+1, f.El, seen)
			}
		}
		t.Logf("Tab walks %v", seen)
		url, item := -1, -1
		for i, el := range seen {
			if el == "video-url" && url < 0 {
				url = i
			}
			if el == "media-item" && item < 0 {
				item = i
			}
		}
		if url < 0 || item < 0 || url > item {
			t.Errorf("the link field does not come before the list: Tab walks %v", seen)
		}
		ana.press(t, kb.Escape)
		ana.waitFocus(t, "Escape closes the picker and gives focus back to Video", func(f focusView) bool { return !f.Watch && f.El == "watch" })
	})

	t.Run("people and chat tabs", func(t *testing.T) {
		ana.mustEval(t, `document.getElementById('tab-btn-people').focus(), true`, nil)
		type tabs struct {
			Focus    string `json:"focus"`
			Selected string `json:"selected"`
			Panel    string `json:"panel"`
			Tabbable string `json:"tabbable"`
			Roles    bool   `json:"roles"`
			Labelled bool   `json:"labelled"`
		}
		read := `(() => {
		  const ts = [...document.querySelectorAll('#side [role=tab]')];
		  return {focus: document.activeElement.id,
		    selected: ts.filter((x) => x.getAttribute('aria-selected') === 'true').map((x) => x.id).join(','),
		    panel: [...document.querySelectorAll('#side [role=tabpanel]')].filter((p) => !p.hidden).map((p) => p.id).join(','),
		    tabbable: ts.filter((x) => x.tabIndex === 0).map((x) => x.id).join(','),
		    roles: ts.length === 2 && ts.every((x) => x.parentElement.getAttribute('role') === 'tablist') && document.querySelector('#side [role=tablist]').children.length === 2,
		    labelled: [...document.querySelectorAll('#side [role=tabpanel]')].every((p) => p.getAttribute('aria-labelledby'))};
		})()`
		for _, step := range []struct{ key, want string }{
			{kb.ArrowRight, "chat"}, {kb.ArrowRight, "people"}, {kb.ArrowLeft, "chat"}, {kb.Home, "people"}, {kb.End, "chat"}, {kb.ArrowLeft, "people"},
		} {
			ana.press(t, step.key)
			var got tabs
			ana.mustEval(t, read, &got)
			id := "tab-btn-" + step.want
			if got.Focus != id || got.Selected != id || got.Panel != "tab-"+step.want || got.Tabbable != id || !got.Roles || !got.Labelled {
				t.Errorf("after %q: %+v, want %s focused, selected, its panel shown and only it in the Tab order", strings.Trim(fmt.Sprintf("%q", step.key), `"`), got, id)
			}
		}
	})

	t.Run("share and stop keep focus", func(t *testing.T) {
		ana.mustEval(t, `document.getElementById('share').focus(), true`, nil)
		ana.press(t, kb.Enter)
		ana.waitFocus(t, "Share turns into Stop sharing with the focus on it", func(f focusView) bool { return f.El == "stop-share" })
		ana.press(t, kb.Enter)
		ana.waitFocus(t, "Stop sharing turns back into Share with the focus on it", func(f focusView) bool { return f.El == "share" })
	})

	t.Run("play and pause keep focus", func(t *testing.T) {
		ana.do(t, chromedp.Click(chromedp.CSS(`[data-testid=watch-video]`)))
		ana.do(t, chromedp.Click(chromedp.CSS(`[data-testid=media-item][data-url="/media/Film.mp4"]`)))
		testenv.EventuallyState(t, 10*time.Second, "the film loads", func() (bool, string) {
			v, err := ana.player()
			return err == nil && v.Ready >= 3, fmt.Sprintf("%+v %v", v, err)
		})
		ana.mustEval(t, `document.querySelector('[data-testid=play]').focus(), true`, nil)
		ana.press(t, kb.Enter)
		ana.waitFocus(t, "Play turns into Pause with the focus on it", func(f focusView) bool { return f.El == "pause" })
		ana.press(t, kb.Enter)
		ana.waitFocus(t, "Pause turns back into Play with the focus on it", func(f focusView) bool { return f.El == "play" })
	})
}
