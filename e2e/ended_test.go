package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/matinee-dev/matinee/config"
)

// movieView is what one tab's synced video shows: the room's state as the
// page draws it, and which of its controls a person can see.
type movieView struct {
	URL      string  `json:"url"`
	State    string  `json:"state"` // data-state of the tile: empty, paused, playing, waiting, ended
	Ended    bool    `json:"ended"` // the ended panel is visible
	Title    string  `json:"title"`
	Note     string  `json:"note"`
	Replay   bool    `json:"replay"`
	PlayNext bool    `json:"playNext"`
	Pause    bool    `json:"pause"`
	Paused   bool    `json:"paused"`
	Time     float64 `json:"time"`
	Queue    int     `json:"queue"`
	Duration float64 `json:"duration"`
}

const movieJS = `(() => {
  const app = window.__matinee, m = app.movie, v = m.video;
  const vis = (el) => !!el && !el.hidden && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  return {url: app.player.url || '', state: m.el.dataset.state || '', ended: vis(m.endedEl), title: m.endedText ? m.endedText.textContent : '',
    note: m.endedNote ? m.endedNote.textContent : '', replay: vis(m.replayBtn), playNext: vis(m.playNextBtn), pause: vis(m.pauseBtn),
    paused: v.paused, time: v.currentTime, queue: (app.queue || []).length, duration: Number.isFinite(v.duration) ? v.duration : 0};
})()`

func readMovies(tabs []*tab) ([]movieView, error) {
	out := make([]movieView, len(tabs))
	for i, tb := range tabs {
		if err := tb.eval(movieJS, &out[i]); err != nil {
			return nil, fmt.Errorf("%s: %w", tb.name, err)
		}
	}
	return out, nil
}

// waitMovies waits until ok holds for every tab's movie view.
func waitMovies(t *testing.T, tabs []*tab, timeout time.Duration, what string, ok func(i int, v movieView) bool) []movieView {
	t.Helper()
	var last []movieView
	testenv.EventuallyState(t, timeout, what, func() (bool, string) {
		vs, err := readMovies(tabs)
		if err != nil {
			return false, err.Error()
		}
		last = vs
		for i, v := range vs {
			if !ok(i, v) {
				return false, fmt.Sprintf("%+v", vs)
			}
		}
		return true, ""
	})
	return last
}

// queueFromPicker adds a file of the media folder to the queue through
// the host's video picker.
func queueFromPicker(t *testing.T, host *tab, url string) {
	t.Helper()
	host.do(t,
		chromedp.Click(chromedp.CSS(`[data-testid=watch-video]`)),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid=media-queue][data-url=%q]`, url))),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=queue-item]`)),
		chromedp.Click(chromedp.CSS(`#watch-close`)),
	)
}

// The film ends: every page shows it ended (no Pause button left), with
// Replay for the host (and for the guest once control is open); a queued
// video is offered as "Play next", starts on every page when taken, and
// the next one starts by itself when that one ends.
func TestFilmEndsAndQueue(t *testing.T) {
	media := t.TempDir()
	makeClip(t, filepath.Join(media, "a.mp4"), 3)
	copyFile(t, filepath.Join(media, "a.mp4"), filepath.Join(media, "b.mp4"))
	copyFile(t, filepath.Join(media, "a.mp4"), filepath.Join(media, "c.mp4"))
	ts := startTestServer(t, func(c *config.Config) { c.MediaDir = media })
	b := newBrowser(t)
	const room = "the-end"
	host := joinAs(t, b, "Ana", ts.URL+"/r/"+room)
	waitJoined(t, host, 10*time.Second)
	bo := joinAs(t, b, "Bo", ts.URL+"/r/"+room)
	waitJoined(t, bo, 10*time.Second)
	tabs := []*tab{host, bo}

	host.do(t,
		chromedp.Click(chromedp.CSS(`[data-testid=watch-video]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=media-item][data-url="/media/a.mp4"]`)),
	)
	waitMovies(t, tabs, 15*time.Second, "both load a.mp4", func(_ int, v movieView) bool { return v.URL == "/media/a.mp4" && v.State == "paused" })
	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=play]`)))
	started := time.Now()
	vs := waitMovies(t, tabs, 20*time.Second, "every page shows the film ended", func(i int, v movieView) bool {
		return v.State == "ended" && v.Ended && !v.Pause && v.Paused && v.Time > 2.5 && v.Replay == (i == 0) && !v.PlayNext
	})
	took := time.Since(started)
	if took < 2500*time.Millisecond {
		t.Fatalf("ended %v after play, before the 3 s film could", took)
	}
	t.Logf("every page showed the 3 s film ended %.2f s after the click on Play", took.Seconds())
	if !strings.Contains(vs[0].Title, "has ended") || !strings.Contains(vs[1].Note, "host can play it again") {
		t.Fatalf("ended panels: %+v", vs)
	}
	shots := shotDir(t)
	host.shot(t, shots, "ended-host")
	bo.shot(t, shots, "ended-guest")

	// With open control the guest gets Replay too, and it starts the film
	// over for everyone.
	host.mustEval(t, `document.querySelector('[data-testid=room-open-control]').click(), true`, nil)
	waitMovies(t, tabs, 10*time.Second, "open control: Bo has Replay", func(_ int, v movieView) bool { return v.Ended && v.Replay })
	bo.do(t, chromedp.Click(chromedp.CSS(`[data-testid=replay]`)))
	waitMovies(t, tabs, 10*time.Second, "replay plays a.mp4 from the start", func(_ int, v movieView) bool {
		return v.State == "playing" && !v.Ended && !v.Paused && v.Time > 0.2 && v.Time < 2.5
	})
	waitMovies(t, tabs, 15*time.Second, "a.mp4 ends again", func(_ int, v movieView) bool { return v.State == "ended" })

	// A video queued after the end is offered as "Play next".
	queueFromPicker(t, host, "/media/b.mp4")
	waitMovies(t, tabs, 10*time.Second, "every page offers b.mp4 next", func(_ int, v movieView) bool {
		return v.Queue == 1 && v.Ended && v.PlayNext && strings.Contains(v.Note, "Up next: b.mp4")
	})
	host.shot(t, shots, "ended-play-next")
	bo.do(t, chromedp.Click(chromedp.CSS(`[data-testid=play-next]`)))
	waitMovies(t, tabs, 15*time.Second, "b.mp4 plays on every page", func(_ int, v movieView) bool {
		return v.URL == "/media/b.mp4" && v.State == "playing" && !v.Paused && v.Time > 0.2 && v.Queue == 0
	})

	// Queued while b plays, c starts by itself when b ends.
	queueFromPicker(t, host, "/media/c.mp4")
	waitMovies(t, tabs, 20*time.Second, "c.mp4 starts on every page after b.mp4", func(_ int, v movieView) bool {
		return v.URL == "/media/c.mp4" && v.State == "playing" && !v.Paused && v.Time > 0.2 && v.Queue == 0
	})
}

// Subtitles beside a video are listed with it; the host's pick shows on
// every page (the cue of the moment is the active cue of the showing
// track), a viewer can switch theirs to another language or off; and the
// stage video, synced film or share, has a picture-in-picture button that
// asks the browser for it.
func TestSubtitlesAndPictureInPicture(t *testing.T) {
	media := t.TempDir()
	makeClip(t, filepath.Join(media, "film.mp4"), 5)
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(media, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("film.en.vtt", "WEBVTT\n\n00:00.000 --> 00:02.000\nHello from VTT\n\n00:02.000 --> 00:05.000\nStill English\n")
	write("film.fr.srt", "1\r\n00:00:00,000 --> 00:00:02,000\r\nBonjour de SRT\r\n\r\n2\r\n00:00:02,000 --> 00:00:05,000\r\nToujours <i>français</i>\r\n")
	ts := startTestServer(t, func(c *config.Config) { c.MediaDir = media })
	b := newBrowser(t)
	const room = "subs"
	// Record calls of requestPictureInPicture (headless Chromium may
	// refuse the window itself).
	const pipSpy = `(() => {
	  const orig = HTMLVideoElement.prototype.requestPictureInPicture;
	  window.__pipCalls = [];
	  window.__pipResults = [];
	  if (orig) HTMLVideoElement.prototype.requestPictureInPicture = function () {
	    const i = window.__pipCalls.push(this.dataset.testid || 'video') - 1;
	    window.__pipResults[i] = 'pending';
	    return orig.call(this).then((w) => { window.__pipResult = window.__pipResults[i] = 'opened'; return w; },
	      (e) => { window.__pipResult = window.__pipResults[i] = e.name + ': ' + e.message; throw e; });
	  };
	})()`
	host := joinAs(t, b, "Ana", ts.URL+"/r/"+room, pipSpy)
	waitJoined(t, host, 10*time.Second)
	bo := joinAs(t, b, "Bo", ts.URL+"/r/"+room)
	waitJoined(t, bo, 10*time.Second)
	tabs := []*tab{host, bo}

	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=watch-video]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=media-item][data-url="/media/film.mp4"]`)))
	var meta string
	host.mustEval(t, `document.querySelector('[data-testid=media-item][data-url="/media/film.mp4"] [data-testid=media-meta]').textContent`, &meta)
	if !strings.Contains(meta, "subtitles: en, fr") {
		t.Fatalf("the picker lists %q, without the subtitles en and fr", meta)
	}
	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=media-item][data-url="/media/film.mp4"]`)))
	waitMovies(t, tabs, 15*time.Second, "both load film.mp4", func(_ int, v movieView) bool {
		return v.URL == "/media/film.mp4" && v.State == "paused" && v.Duration > 4
	})

	// cues reads the tab's showing text track and its active cues.
	type cueView struct {
		Showing []string `json:"showing"`
		Cues    []string `json:"cues"`
		Time    float64  `json:"time"`
		Tracks  int      `json:"tracks"`
	}
	const cuesJS = `(() => { const v = window.__matinee.movie.video; const ts = [...v.textTracks];
	  const on = ts.filter((x) => x.mode === 'showing');
	  return {showing: on.map((x) => x.language), cues: on.flatMap((x) => [...(x.activeCues || [])].map((c) => c.text)), time: v.currentTime, tracks: ts.length}; })()`
	waitCues := func(what string, ok func(i int, c cueView) bool) {
		t.Helper()
		testenv.EventuallyState(t, 15*time.Second, what, func() (bool, string) {
			var all []cueView
			for i, tb := range tabs {
				var c cueView
				if err := tb.eval(cuesJS, &c); err != nil {
					return false, err.Error()
				}
				all = append(all, c)
				if !ok(i, c) {
					return false, fmt.Sprintf("%+v", all)
				}
			}
			return true, ""
		})
	}
	waitCues("no subtitles shown until the host picks", func(_ int, c cueView) bool { return c.Tracks == 2 && len(c.Showing) == 0 })

	setControl(t, host, "subtitles", "/media/film.fr.srt")
	setControl(t, host, "seek", "1")
	waitCues("the French SRT's first cue at 0:01 on every page", func(_ int, c cueView) bool {
		return len(c.Showing) == 1 && c.Showing[0] == "fr" && len(c.Cues) == 1 && c.Cues[0] == "Bonjour de SRT" && c.Time > 0.9 && c.Time < 1.1
	})
	setControl(t, host, "seek", "3")
	waitCues("the second cue at 0:03, in step with the video", func(_ int, c cueView) bool {
		return len(c.Cues) == 1 && c.Cues[0] == "Toujours <i>français</i>" && c.Time > 2.9 && c.Time < 3.1
	})
	shots := shotDir(t)
	bo.shot(t, shots, "subtitles-fr")
	// Bo switches his own to English, then off; the host's stays French.
	setControl(t, bo, "subtitles", "/media/film.en.vtt")
	waitCues("Bo reads English, Ana French", func(i int, c cueView) bool {
		want := []string{"Toujours <i>français</i>", "Still English"}[i]
		return len(c.Cues) == 1 && c.Cues[0] == want
	})
	setControl(t, bo, "subtitles", "")
	waitCues("Bo turned his off", func(i int, c cueView) bool { return (len(c.Showing) == 0) == (i == 1) })

	// Picture in picture: the button is there where the browser offers it
	// and asks for the stage video.
	var enabled bool
	host.mustEval(t, `!!document.pictureInPictureEnabled`, &enabled)
	if !enabled {
		t.Fatal("this Chromium says picture-in-picture is not enabled; the test needs it to check the button")
	}
	host.do(t, chromedp.Click(chromedp.CSS(`.tile.movie.on-stage [data-testid=pip]`)))
	var calls []string
	testenv.EventuallyState(t, 5*time.Second, "requestPictureInPicture is called on the player", func() (bool, string) {
		if err := host.eval(`window.__pipCalls`, &calls); err != nil {
			return false, err.Error()
		}
		return len(calls) == 1 && calls[0] == "player", fmt.Sprint(calls)
	})
	// This Chromium opens the window even headless; where it refuses,
	// the call above is all a test can see.
	type pipView struct {
		Result  string `json:"result"`
		Element string `json:"element"`
		Pressed string `json:"pressed"`
	}
	const pipJS = `({result: window.__pipResult || 'pending', element: document.pictureInPictureElement ? document.pictureInPictureElement.dataset.testid : '',
	  pressed: document.querySelector('.tile.movie.on-stage [data-testid=pip]').getAttribute('aria-pressed')})`
	testenv.EventuallyState(t, 5*time.Second, "the player is in picture-in-picture", func() (bool, string) {
		var p pipView
		if err := host.eval(pipJS, &p); err != nil {
			return false, err.Error()
		}
		return p.Result == "opened" && p.Element == "player" && p.Pressed == "true", fmt.Sprintf("%+v", p)
	})
	host.do(t, chromedp.Click(chromedp.CSS(`.tile.movie.on-stage [data-testid=pip]`)))
	testenv.EventuallyState(t, 5*time.Second, "a second press leaves picture-in-picture", func() (bool, string) {
		var p pipView
		if err := host.eval(pipJS, &p); err != nil {
			return false, err.Error()
		}
		return p.Element == "" && p.Pressed == "false", fmt.Sprintf("%+v", p)
	})

	// A share on the stage has one too: Bo shares his screen, the host
	// closes the film, and Bo's share takes the stage.
	bo.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
	host.do(t, chromedp.Click(chromedp.CSS(`[data-testid=video-stop]`)))
	testenv.EventuallyState(t, 15*time.Second, "Bo's share plays on the host's stage", func() (bool, string) {
		var w int
		if err := host.eval(`(() => { const v = document.querySelector('.tile.on-stage [data-testid=remote-video]'); return v ? v.videoWidth : -1; })()`, &w); err != nil {
			return false, err.Error()
		}
		return w > 0, fmt.Sprint("stage video width ", w)
	})
	host.do(t, chromedp.Click(chromedp.CSS(`.tile.on-stage [data-testid=pip]`)))
	testenv.EventuallyState(t, 5*time.Second, "the share is in picture-in-picture", func() (bool, string) {
		var p struct {
			Calls   []string `json:"calls"`
			Results []string `json:"results"`
			Element string   `json:"element"`
		}
		if err := host.eval(`({calls: window.__pipCalls, results: window.__pipResults, element: document.pictureInPictureElement ? document.pictureInPictureElement.dataset.testid : ''})`, &p); err != nil {
			return false, err.Error()
		}
		return len(p.Calls) == 2 && p.Calls[1] == "remote-video" && p.Results[1] == "opened" && p.Element == "remote-video", fmt.Sprintf("%+v", p)
	})
}
