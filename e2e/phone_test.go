package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/matinee-dev/matinee/config"
)

// shotDir is where a test keeps screenshots for a person to look at:
// $MATINEE_SCREENSHOTS/<test>, else the test's artifacts directory.
func shotDir(t *testing.T) string {
	t.Helper()
	dir := artifactDir(t)
	if base := os.Getenv("MATINEE_SCREENSHOTS"); base != "" {
		dir = filepath.Join(base, filepath.Base(dir))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// stageBox is where the stage's picture is on a page: the video element,
// the picture inside it (object-fit: contain keeps its shape), and which
// of the player's controls overlap that picture.
type stageBox struct {
	VW, VH   float64
	ScrollY  float64
	Video    rect
	Picture  rect
	Overlaps []string
}

type rect struct{ Left, Top, Width, Height float64 }

func (r rect) String() string {
	return fmt.Sprintf("%.0f×%.0f at (%.0f,%.0f)", r.Width, r.Height, r.Left, r.Top)
}

const stageBoxJS = `(() => {
  const v = document.querySelector('.stage-main .tile.on-stage video');
  if (!v || !v.videoWidth) return null;
  const b = v.getBoundingClientRect();
  const ar = v.videoWidth / v.videoHeight;
  let w = b.width, h = b.height;
  if (w / h > ar) w = h * ar; else h = w / ar;
  const pic = {left: b.left + (b.width - w) / 2, top: b.top + (b.height - h) / 2, width: w, height: h};
  const overlaps = [];
  for (const sel of ['.player-bar', '.tile-bar', '[data-testid=play]', '[data-testid=pause]', '[data-testid=seek]', '[data-testid=rate]', '[data-testid=video-stop]']) {
    for (const e of v.closest('.tile').querySelectorAll(sel)) {
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.height === 0 || getComputedStyle(e).visibility === 'hidden') continue;
      if (r.left < pic.left + w - 1 && r.right > pic.left + 1 && r.top < pic.top + h - 1 && r.bottom > pic.top + 1) overlaps.push(sel + ' ' + JSON.stringify(r));
    }
  }
  return {vw: innerWidth, vh: innerHeight, scrollY: scrollY,
    video: {left: b.left, top: b.top, width: b.width, height: b.height}, picture: pic, overlaps};
})()`

// TestPhoneStage watches a synced film on phones held upright (390×844,
// 360×640) and on their side (844×390, 932×430), with touch: upright, the picture
// takes the full width with the player's controls below it; on its side
// it fills the screen, and the controls are a swipe below it. Nothing of
// the player or the room's controls is cut off.
func TestPhoneStage(t *testing.T) {
	media := t.TempDir()
	makeClip(t, filepath.Join(media, "Film.mp4"), 12)
	ts := startTestServer(t, func(c *config.Config) { c.MediaDir = media })
	b := newBrowser(t)
	link := ts.URL + "/r/phone-stage"
	dir := shotDir(t)

	host := joinAs(t, b, "Ana", link)
	waitJoined(t, host, 10*time.Second)
	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=watch-video]`)))
	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=media-item][data-url="/media/Film.mp4"]`)))
	testenv.EventuallyState(t, 10*time.Second, "the host loads the film", func() (bool, string) {
		v, err := host.player()
		return err == nil && v.Ready >= 3, fmt.Sprintf("%+v %v", v, err)
	})
	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=play]`)))

	phones := []struct {
		name          string
		width, height int64
		landscape     bool
	}{
		{"portrait-390x844", 390, 844, false},
		{"landscape-844x390", 844, 390, true},
		{"portrait-360x640", 360, 640, false},
		{"landscape-932x430", 932, 430, true}, // wider than the phone breakpoint
	}
	for i, p := range phones {
		t.Run(p.name, func(t *testing.T) {
			tb := b.newTab(p.name)
			opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch}
			if p.landscape {
				opts = append(opts, chromedp.EmulateLandscape)
			}
			tb.do(t, chromedp.EmulateViewport(p.width, p.height, opts...))
			tb.addInitScript(t, `delete MediaDevices.prototype.getDisplayMedia;`)
			joinRoom(t, tb, link, fmt.Sprintf("Phone %d", i))
			var box stageBox
			testenv.EventuallyState(t, 10*time.Second, "the phone shows the film on its stage", func() (bool, string) {
				box = stageBox{}
				if err := tb.eval(stageBoxJS, &box); err != nil {
					return false, err.Error()
				}
				return box.Picture.Width > 0, fmt.Sprintf("%+v", box)
			})
			tb.mustEval(t, `scrollTo(0, 0), true`, nil)
			tb.mustEval(t, stageBoxJS, &box)
			tb.shot(t, dir, p.name)
			t.Logf("%s: viewport %.0f×%.0f, video element %s, picture %s (%.0f%% of the screen)",
				p.name, box.VW, box.VH, box.Video, box.Picture, 100*box.Picture.Width*box.Picture.Height/(box.VW*box.VH))

			for _, o := range box.Overlaps {
				t.Errorf("a control covers the picture: %s (picture %s)", o, box.Picture)
			}
			if !p.landscape {
				// Upright: edge to edge, at its own 16:9 shape.
				if box.Video.Left > 0.5 || box.Video.Width < box.VW-1 || box.Picture.Width < box.VW-1 {
					t.Errorf("the picture does not take the full width: video %s, picture %s in a %.0f px wide viewport", box.Video, box.Picture, box.VW)
				}
				if box.Picture.Top < 0 || box.Picture.Top+box.Picture.Height > box.VH {
					t.Errorf("the picture is cut off: %s in %.0f px", box.Picture, box.VH)
				}
				tb.fits(t, p.name+" player", `[data-testid=pause]`, `[data-testid=seek]`, `[data-testid=rate]`, `[data-testid=player-time]`)
				tb.fits(t, p.name+" room", `[data-testid=connection-state]`, `#leave`, `#react-toggle`, `[data-testid=participant]`)
				return
			}
			// On its side: the element fills the screen, and the picture
			// is as tall as the screen.
			if math.Abs(box.Video.Left) > 0.5 || math.Abs(box.Video.Top) > 0.5 || box.Video.Width < box.VW-1 || box.Video.Height < box.VH-1 {
				t.Errorf("the video does not fill the screen: %s in %.0f×%.0f", box.Video, box.VW, box.VH)
			}
			if box.Picture.Height < box.VH-1 {
				t.Errorf("the picture is %.0f px tall on a %.0f px screen", box.Picture.Height, box.VH)
			}
			// The player's and the room's controls are a swipe away.
			tb.mustEval(t, `document.querySelector('.stage-main .player-bar').scrollIntoView({block: 'end'}), true`, nil)
			tb.fits(t, p.name+" player", `[data-testid=pause]`, `[data-testid=seek]`, `[data-testid=rate]`)
			tb.shot(t, dir, p.name+"-controls")
			tb.mustEval(t, `document.getElementById('leave').scrollIntoView({block: 'end'}), true`, nil)
			tb.fits(t, p.name+" room", `[data-testid=connection-state]`, `#leave`, `#react-toggle`)
			tb.shot(t, dir, p.name+"-room")
		})
	}
	t.Logf("screenshots in %s", dir)
}
