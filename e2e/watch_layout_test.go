package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/matinee-dev/matinee/config"
)

// TestWatchLayout looks at the watch-party parts of the room at desktop
// and phone sizes: the picker, the synced player and its controls, the
// people panel with its host menu, and reactions. It checks that the
// controls fit and keeps screenshots (MATINEE_SCREENSHOTS=dir).
func TestWatchLayout(t *testing.T) {
	dir := os.Getenv("MATINEE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	media := t.TempDir()
	if err := os.MkdirAll(filepath.Join(media, "Show"), 0o755); err != nil {
		t.Fatal(err)
	}
	makeClip(t, filepath.Join(media, "Big Buck Test.mp4"), 12)
	copyFile(t, filepath.Join(media, "Big Buck Test.mp4"), filepath.Join(media, "Show", "Episode 1.mp4"))
	ts := startTestServer(t, func(c *config.Config) { c.MediaDir = media })
	b := newBrowser(t)
	link := ts.URL + "/r/layout-party"

	host := joinAs(t, b, "Ana", link)
	waitJoined(t, host, 10*time.Second)
	phone := b.newTab("phone")
	phone.emulate(t, screens[1])
	phone.addInitScript(t, `delete MediaDevices.prototype.getDisplayMedia;`)
	joinRoom(t, phone, link, "Bo")

	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=watch-video]`)))
	testenv.EventuallyState(t, 5*time.Second, "the picker lists the folder", func() (bool, string) {
		var n int
		_ = host.eval(`document.querySelectorAll('[data-testid=media-item]').length`, &n)
		return n == 2, fmt.Sprint(n)
	})
	host.fits(t, "picker", `[data-testid=media-item]`, `[data-testid=video-url]`, `[data-testid=video-load]`)
	host.shot(t, dir, "desktop-picker")
	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=media-item][data-url="/media/Big%20Buck%20Test.mp4"]`)))
	testenv.EventuallyState(t, 10*time.Second, "both load the film", func() (bool, string) {
		vs, err := readPlayers([]*tab{host, phone})
		if err != nil {
			return false, err.Error()
		}
		return vs[0].Ready >= 3 && vs[1].Ready >= 3, fmt.Sprintf("%+v", vs)
	})
	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=play]`)))
	testenv.EventuallyState(t, 5*time.Second, "both play", func() (bool, string) {
		vs, err := readPlayers([]*tab{host, phone})
		if err != nil {
			return false, err.Error()
		}
		return !vs[0].Paused && !vs[1].Paused, fmt.Sprintf("%+v", vs)
	})
	host.fits(t, "desktop player", `[data-testid=player]`, `[data-testid=pause]`, `[data-testid=seek]`, `[data-testid=rate]`, `[data-testid=video-stop]`, `[data-testid=reaction]`)
	phone.fits(t, "phone player", `[data-testid=player]`, `[data-testid=pause]`, `[data-testid=seek]`, `[data-testid=rate]`, `#react-toggle`, `#leave`, `[data-testid=participant]`)
	var disabled bool
	phone.mustEval(t, `document.querySelector('[data-testid=pause]').disabled && document.querySelector('[data-testid=seek]').disabled`, &disabled)
	if !disabled {
		t.Error("a guest without open control can use the player's controls")
	}

	// Reactions float over both stages.
	host.mustEval(t, `document.querySelector('[data-testid=reaction][data-emoji="😂"]').click(), true`, nil)
	phone.do(t, chromedp.Click(chromedp.CSS(`#react-toggle`)))
	phone.fits(t, "phone reactions", `[data-testid=reaction][data-emoji="🍿"]`, `[data-testid=reaction][data-emoji="👍"]`)
	phone.do(t, chromedp.Click(chromedp.CSS(`[data-testid=reaction][data-emoji="🍿"]`)))
	time.Sleep(700 * time.Millisecond)
	testenv.EventuallyState(t, 3*time.Second, "the phone's own reaction floats", func() (bool, string) {
		var n int
		_ = phone.eval(`document.querySelectorAll('[data-testid=reaction-float][data-emoji="🍿"]').length`, &n)
		return n > 0, fmt.Sprint(n)
	})
	host.mustEval(t, `document.getElementById('stats-toggle').click(), true`, nil)
	time.Sleep(300 * time.Millisecond)
	host.shot(t, dir, "desktop-player")
	phone.shot(t, dir, "phone-player")

	// With open control the phone's guest picks videos too.
	host.mustEval(t, `document.querySelector('[data-testid=room-open-control]').click(), true`, nil)
	testenv.EventuallyState(t, 5*time.Second, "the phone may control the video", func() (bool, string) {
		var ok bool
		_ = phone.eval(`!document.querySelector('[data-testid=watch-video]').hidden && !document.querySelector('[data-testid=pause]').disabled`, &ok)
		return ok, ""
	})
	phone.do(t, chromedp.Click(chromedp.CSS(`[data-testid=watch-video]`)))
	testenv.EventuallyState(t, 5*time.Second, "the phone's picker lists the folder", func() (bool, string) {
		var n int
		_ = phone.eval(`document.querySelectorAll('[data-testid=media-item]').length`, &n)
		return n == 2, fmt.Sprint(n)
	})
	phone.fits(t, "phone picker", `[data-testid=media-item]`, `[data-testid=video-url]`, `[data-testid=video-load]`, `#watch-close`)
	phone.shot(t, dir, "phone-picker")
	phone.do(t, chromedp.Click(chromedp.CSS(`#watch-close`)))

	// The host menu on someone.
	host.mustEval(t, `document.querySelector('[data-testid=host-menu]').click(), true`, nil)
	host.fits(t, "host menu", `[data-testid=host-action][data-action=kick]`)
	host.shot(t, dir, "desktop-host-menu")
	t.Logf("screenshots in %s", dir)
}
