package interop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func requireChromium(t *testing.T) string {
	t.Helper()
	for _, c := range []string{os.Getenv("MATINEE_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	missing(t, "no Chromium found (Debian package chromium, or set MATINEE_CHROMIUM)")
	return ""
}

// chromiumViewer is headless Chromium playing testdata/whep.html, served
// from an origin of its own.
type chromiumViewer struct {
	ctx context.Context
}

func watchChromium(t *testing.T, whepURL, token string) *chromiumViewer {
	t.Helper()
	exe := requireChromium(t)
	page := httptest.NewServer(http.FileServer(http.Dir("testdata")))
	t.Cleanup(page.Close)
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
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx)
		cancel()
		acancel()
	})
	// Start the browser on ctx itself: the first action's context owns
	// the browser, and the navigation below has a deadline of its own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	q := url.Values{"url": {whepURL}, "token": {token}}
	nctx, ncancel := context.WithTimeout(ctx, 20*time.Second)
	defer ncancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(page.URL+"/whep.html?"+q.Encode())); err != nil {
		t.Fatalf("chromium: open the WHEP page: %v", err)
	}
	return &chromiumViewer{ctx: ctx}
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
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte]("window.whepStats()", chromedp.EvalAwaitPromise))
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
