package interop_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestChromiumWHIP publishes Chromium's fake camera and microphone from
// a plain WHIP page (testdata/whip.html, another origin) in H.264, VP8
// and VP9, one encoding, and watches the room with every viewer of the
// matrix.
func TestChromiumWHIP(t *testing.T) {
	for _, c := range []struct{ name, mime string }{{"h264", "video/H264"}, {"vp8", "video/VP8"}, {"vp9", "video/VP9"}} {
		t.Run(c.name, func(t *testing.T) { chromiumWHIP(t, c.mime, false) })
	}
}

// TestChromiumWHIPSimulcast is TestChromiumWHIP with three rid encodings
// of H.264 or VP8.
func TestChromiumWHIPSimulcast(t *testing.T) {
	for _, c := range []struct{ name, mime string }{{"h264", "video/H264"}, {"vp8", "video/VP8"}} {
		t.Run(c.name, func(t *testing.T) { chromiumWHIP(t, c.mime, true) })
	}
}

func chromiumWHIP(t *testing.T, mime string, simulcast bool) {
	srv, base := startServer(t)
	key := srv.APIKey()
	browser := newChromium(t)
	failed := publishChromium(t, browser, base+"/whip/party", key, mime, simulcast)
	waitFor(t, 20*time.Second, "the publisher's audio and video producers", func() bool {
		return scrape(t, base, `matinee_producers{kind="audio"}`) >= 1 && scrape(t, base, `matinee_producers{kind="video"}`) >= 1
	}, failed)
	watchAll(t, browser, base, key, browserFrames, failed)
}

// TestChromiumScreenShare shares Chromium's fake screen (with audio)
// through Matinee's web client, in the codec the room negotiates, and
// watches the room with every viewer of the matrix.
func TestChromiumScreenShare(t *testing.T) {
	srv, base := startServer(t)
	key := srv.APIKey()
	browser := newChromium(t)
	joinChromium(t, browser, base, "party",
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-screen]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
	waitFor(t, 20*time.Second, "the sharer's audio and video producers", func() bool {
		return scrape(t, base, `matinee_producers{kind="audio"}`) >= 1 && scrape(t, base, `matinee_producers{kind="video"}`) >= 1
	}, func() string { return "" })
	watchAll(t, browser, base, key, browserFrames, func() string { return "" })
}
