package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// screen is a viewport a person uses.
type screen struct {
	name          string
	width, height int64
	phone         bool
}

var screens = []screen{
	{"desktop", 1280, 800, false},
	{"phone", 390, 844, true},
}

func (tb *tab) emulate(t *testing.T, s screen) {
	t.Helper()
	if s.phone {
		tb.do(t, chromedp.EmulateViewport(s.width, s.height, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	} else {
		tb.do(t, chromedp.EmulateViewport(s.width, s.height))
	}
}

// shot saves a screenshot under $MATINEE_SCREENSHOTS (or the test's temp
// dir) for a person to look at.
func (tb *tab) shot(t *testing.T, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fits checks that nothing overflows the viewport sideways and that the
// named controls are on screen.
func (tb *tab) fits(t *testing.T, where string, selectors ...string) {
	t.Helper()
	var r struct {
		ScrollW, InnerW int
		Off             []string
	}
	js := fmt.Sprintf(`(() => {
	  const off = [];
	  for (const sel of %s) {
	    const e = document.querySelector(sel);
	    if (!e) { off.push(sel + ' (missing)'); continue; }
	    const b = e.getBoundingClientRect();
	    if (b.width === 0 || b.left < 0 || b.right > innerWidth + 1 || b.top < 0 || b.bottom > innerHeight + 1) off.push(sel + ' ' + JSON.stringify(b));
	  }
	  return {scrollW: document.documentElement.scrollWidth, innerW: innerWidth, off};
	})()`, jsStrings(selectors))
	tb.mustEval(t, js, &r)
	if r.ScrollW > r.InnerW {
		t.Errorf("%s: page is %d px wide in a %d px viewport", where, r.ScrollW, r.InnerW)
	}
	for _, o := range r.Off {
		t.Errorf("%s: not fully on screen: %s", where, o)
	}
}

func jsStrings(ss []string) string {
	out := "["
	for i, s := range ss {
		if i > 0 {
			out += ","
		}
		out += fmt.Sprintf("%q", s)
	}
	return out + "]"
}

// TestLayout opens the lobby and a room at desktop and phone sizes, checks
// that the main controls fit, and keeps screenshots to look at.
func TestLayout(t *testing.T) {
	dir := os.Getenv("MATINEE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	base := startServer(t, nil)
	b := newBrowser(t)

	host := b.newTab("host")
	host.do(t,
		chromedp.Navigate(base+"/"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), "Ana"),
		chromedp.Click(chromedp.CSS(`[data-testid=create-room]`)),
	)
	waitJoined(t, host, 10*time.Second)
	var room string
	host.mustEval(t, `location.href`, &room)
	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))

	for _, s := range screens {
		t.Run(s.name, func(t *testing.T) {
			tb := b.newTab("view-" + s.name)
			tb.emulate(t, s)
			if s.phone {
				// As on iOS and Android: no screen capture, and no sound
				// before the first tap.
				tb.addInitScript(t, `delete MediaDevices.prototype.getDisplayMedia;`)
				tb.addInitScript(t, phoneAutoplayPolicy)
			}
			tb.do(t, chromedp.Navigate(base+"/"))
			tb.mustEval(t, `localStorage.setItem('matinee.recent', JSON.stringify([
			  {room: 'movie-night', ts: Date.now() - 3600e3}, {room: 'friday-anime', ts: Date.now() - 86400e3 * 3}])), true`, nil)
			tb.do(t, chromedp.Reload())
			tb.fits(t, "lobby", `[data-testid=name-input]`, `[data-testid=create-room]`, `[data-testid=join-room]`)
			tb.shot(t, dir, s.name+"-lobby")

			tb.do(t,
				chromedp.Navigate(room),
				chromedp.WaitVisible(chromedp.CSS(`[data-testid=join-room]`)),
			)
			tb.fits(t, "prejoin", `[data-testid=name-input]`, `[data-testid=join-room]`)
			tb.shot(t, dir, s.name+"-prejoin")
			if s.phone {
				// A returning visitor: the name is remembered, so the room
				// joins without a tap, and the sound must wait for one.
				tb.mustEval(t, `localStorage.setItem('matinee.name', 'Bo phone'), true`, nil)
				tb.do(t, chromedp.Reload())
			} else {
				tb.do(t,
					chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), "Bo "+s.name),
					chromedp.Click(chromedp.CSS(`[data-testid=join-room]`)),
				)
			}
			if _, err := waitMedia(tb, 10*time.Second, !s.phone); err != nil {
				t.Fatal(err)
			}
			controls := []string{`[data-testid=share-screen]`, `[data-testid=connection-state]`, `#leave`, `[data-testid=remote-video]`}
			if s.phone {
				// Phones have no screen capture: no share button.
				controls = []string{`[data-testid=connection-state]`, `#leave`, `[data-testid=remote-video]`, `#participants`}
			}
			tb.fits(t, "room", controls...)
			if s.phone {
				tb.fits(t, "room", `#unmute-all`)
				tb.shot(t, dir, s.name+"-room-muted")
				tb.do(t, chromedp.Click(chromedp.CSS(`#unmute-all`)))
				testenv.EventuallyState(t, 3*time.Second, "a tap unmutes", func() (bool, string) {
					var r struct {
						Button bool `json:"button"`
						Muted  bool `json:"muted"`
					}
					_ = tb.eval(`({button: !document.getElementById('unmute-all').hidden, muted: document.querySelector('[data-testid=remote-video]').muted})`, &r)
					return !r.Button && !r.Muted, fmt.Sprintf("%+v", r)
				})
				if _, err := waitPlaying(tb, 5*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			showStats(t, tb)
			tb.shot(t, dir, s.name+"-room")

			tb.mustEval(t, `(() => {
			  if (document.getElementById('side').getBoundingClientRect().width === 0 || getComputedStyle(document.getElementById('side')).visibility === 'hidden') document.getElementById('toggle-side').click();
			  document.getElementById('tab-btn-chat').click();
			  return true;
			})()`, nil)
			time.Sleep(300 * time.Millisecond)
			tb.fits(t, "chat", `[data-testid=chat-input]`, `[data-testid=chat-send]`)
			tb.shot(t, dir, s.name+"-chat")
		})
	}
	// The sharer's own view: the stage says so, the preview is small.
	showStats(t, host)
	host.fits(t, "sharer", `[data-testid=stop-share]`, `[data-testid=local-video]`)
	host.shot(t, dir, "desktop-sharer")
	t.Logf("screenshots in %s", dir)
}

// showStats turns the tiles' statistics on and waits for a stats tick to
// fill one in, for the screenshot.
func showStats(t *testing.T, tb *tab) {
	t.Helper()
	tb.mustEval(t, `document.getElementById('stats-toggle').click(), true`, nil)
	testenv.EventuallyState(t, 5*time.Second, tb.name+" shows a tile's statistics", func() (bool, string) {
		var n int
		err := tb.eval(`[...document.querySelectorAll('.tile-stats')].filter(e => !e.hidden && e.textContent !== '').length`, &n)
		return err == nil && n > 0, fmt.Sprintf("%d tiles with statistics (%v)", n, err)
	})
}

// phoneAutoplayPolicy makes media elements refuse to play with sound until
// the person has tapped the page, as phone browsers do.
const phoneAutoplayPolicy = `(() => {
  let tapped = false;
  addEventListener('pointerdown', () => { tapped = true; }, true);
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function () {
    if (!this.muted && !tapped) return Promise.reject(new DOMException('play() needs a user gesture', 'NotAllowedError'));
    return play.call(this);
  };
})()`
