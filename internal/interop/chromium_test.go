package interop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/matinee-dev/matinee/internal/chromium"
)

// newChromium starts headless Chromium for the test; each viewer is a tab
// in a browser context of its own.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	exe := testenv.Chromium(t)
	opts := chromium.Options(exe, t.TempDir())
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx)
		cancel()
		acancel()
	})
	// Start the browser on ctx itself: the first action's context owns
	// the browser, and the navigations below have deadlines of their own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// chromiumViewer is one tab, reporting through statsJS.
type chromiumViewer struct {
	ctx     context.Context
	statsJS string
}

func newTab(t *testing.T, browser context.Context, actions ...chromedp.Action[chromedp.Void]) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// As for the browser: the tab belongs to the context of its first
	// action.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("chromium: new tab: %v", err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	defer dcancel()
	if err := chromedp.Do(dctx, actions...); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return ctx
}

// watchChromium opens testdata/whep.html, served from an origin of its
// own, playing whepURL.
func watchChromium(t *testing.T, browser context.Context, whepURL, token string) *chromiumViewer {
	t.Helper()
	q := url.Values{"url": {whepURL}, "token": {token}}
	ctx := newTab(t, browser, chromedp.Navigate(pageServer(t)+"/whep.html?"+q.Encode()))
	return &chromiumViewer{ctx: ctx, statsJS: "window.whepStats()"}
}

// pageServer serves testdata/ on an origin of its own and returns its URL.
func pageServer(t *testing.T) string {
	t.Helper()
	page := httptest.NewServer(http.FileServer(http.Dir("testdata")))
	t.Cleanup(page.Close)
	return page.URL
}

// publishChromium opens testdata/whip.html, which publishes Chromium's
// fake camera (in codec, a video mime type; three rid encodings with
// simulcast) and microphone to whipURL.
// It returns a function that reports the page's error, if any.
func publishChromium(t *testing.T, browser context.Context, whipURL, token, codec string, simulcast bool) func() string {
	t.Helper()
	q := url.Values{"url": {whipURL}, "token": {token}, "codec": {codec}}
	if simulcast {
		q.Set("simulcast", "1")
	}
	ctx := newTab(t, browser, chromedp.Navigate(pageServer(t)+"/whip.html?"+q.Encode()))
	return func() string {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		raw, err := chromedp.Run(ectx, chromedp.Evaluate[[]byte]("window.whipStats()", chromedp.EvalAwaitPromise))
		if err != nil {
			return "chromium publisher: " + err.Error()
		}
		var st struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Sprintf("chromium publisher: stats %s: %v", raw, err)
		}
		if st.Error != "" {
			return "chromium publisher: " + st.Error + " " + string(raw)
		}
		return ""
	}
}

// memberStatsJS reads the web client's consumers as whepStats does.
const memberStatsJS = `(async () => {
  const c = window.__matinee && window.__matinee.client;
  const out = {error: '', ice: c ? c.state : '', video: {}, audio: {}};
  if (!c) return out;
  for (const co of c.consumers.values()) {
    if (!co.track) continue;
    const r = await co.getStats();
    r.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const codec = s.codecId ? r.get(s.codecId) : null;
      out[s.kind] = {packets: s.packetsReceived || 0, frames: s.framesDecoded || 0, keyframes: s.keyFramesDecoded || 0,
        samples: s.totalSamplesReceived || 0, energy: s.totalAudioEnergy || 0, mime: codec ? codec.mimeType : ''};
    });
  }
  return out;
})()`

// joinChromium joins room through Matinee's web client, as a person does.
func joinChromium(t *testing.T, browser context.Context, base, room string, then ...chromedp.Action[chromedp.Void]) *chromiumViewer {
	t.Helper()
	ctx := newTab(t, browser, append([]chromedp.Action[chromedp.Void]{
		chromedp.Navigate(base + "/r/" + room),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=join-room]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), "Member"),
		chromedp.Click(chromedp.CSS(`[data-testid=join-room]`)),
	}, then...)...)
	return &chromiumViewer{ctx: ctx, statsJS: memberStatsJS}
}

// chromiumStats is the page's whepStats().
type chromiumStats struct {
	Error string `json:"error"`
	ICE   string `json:"ice"`
	Video struct {
		Packets   int    `json:"packets"`
		Frames    int    `json:"frames"`
		Keyframes int    `json:"keyframes"`
		Mime      string `json:"mime"`
	} `json:"video"`
	Audio struct {
		Packets int     `json:"packets"`
		Samples int     `json:"samples"`
		Energy  float64 `json:"energy"`
		Mime    string  `json:"mime"`
	} `json:"audio"`
}

func (c *chromiumViewer) stats() (chromiumStats, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	var s chromiumStats
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](c.statsJS, chromedp.EvalAwaitPromise))
	if err != nil {
		return s, fmt.Errorf("chromium: read stats: %w", err)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("chromium: decode stats %s: %w", raw, err)
	}
	return s, nil
}

// waitChromium waits until Chromium has decoded video frames and audio
// (48 kHz samples with energy in them: the publisher's tone).
func waitChromium(t *testing.T, c *chromiumViewer, d time.Duration) chromiumStats {
	t.Helper()
	var last chromiumStats
	var lastErr error
	waitFor(t, d, "decoded video and audio in Chromium", func() bool {
		last, lastErr = c.stats()
		return lastErr == nil && last.Video.Frames >= wantFrames && last.Audio.Samples >= 48000/2 && last.Audio.Energy > 0
	}, func() string {
		if last.Error != "" {
			return last.Error
		}
		return ""
	}, stringer(func() string { return fmt.Sprintf("chromium: %+v (err %v)", last, lastErr) }))
	return last
}

type stringer func() string

func (s stringer) String() string { return s() }
