package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/matinee-dev/matinee/internal/testenv"
)

// viewerJS reports the viewer's received screen video: frame width and
// rate, the layer the SFU forwards, and the tile's pause note if any.
const viewerJS = `(async () => {
  const c = window.__matinee.client;
  const out = {width: 0, fps: 0, layer: -2, paused: !!document.querySelector('.tile .tile-overlay:not([hidden])')?.textContent.includes('too slow')};
  for (const co of c.consumers.values()) {
    if (co.kind !== 'video' || !co.track) continue;
    (await co.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') { out.width = s.frameWidth || 0; out.fps = s.framesPerSecond || 0; } });
    out.layer = co.spatialLayer ?? -2;
  }
  return out;
})()`

// sharerJS reports the screen's width and what limits the sharer's
// encoder: the reason now and the seconds it has been limited by
// bandwidth (the top encoding's, with several).
const sharerJS = `(async () => {
  const s = window.__matinee.client.sendTransport.pc.getSenders().find((x) => x.track && x.track.kind === 'video');
  const out = {full: s ? s.track.getSettings().width || 0 : 0, reason: '', bandwidthSecs: 0, encoded: 0, width: 0};
  if (!s) return out;
  let top = 0;
  (await s.getStats()).forEach((r) => {
    if (r.type !== 'outbound-rtp' || (r.frameWidth || 0) < top) return;
    top = r.frameWidth || 0;
    out.width = top;
    out.encoded = r.framesEncoded || 0;
    out.reason = r.qualityLimitationReason || '';
    out.bandwidthSecs = (r.qualityLimitationDurations || {}).bandwidth || 0;
  });
  return out;
})()`

// TestShareStartsAtFullQuality: on a free link, a one-quality share
// starts at (or near) the screen's full width, not a third of it climbing for
// twenty seconds (Chromium's congestion control starts at 300 kbit/s
// unless the SFU's answer says otherwise), and a viewer of a
// three-quality share gets the layer its tile wants; never a "too slow"
// pause. The times are logged; docs/simulcast.md has the figures.
func TestShareStartsAtFullQuality(t *testing.T) {
	for _, c := range []struct {
		name      string
		simulcast bool
	}{{"one quality", false}, {"three qualities", true}} {
		t.Run(c.name, func(t *testing.T) {
			srv := startTestServer(t, nil)
			room := "full"
			srv.API(t).Must("POST", "/api/rooms", map[string]any{"id": room, "name": "Full", "simulcast": c.simulcast}, 201, nil)
			b := newBrowser(t)
			a, v := b.newTab("sharer"), b.newTab("viewer")
			for _, tb := range []*tab{a, v} {
				joinRoom(t, tb, srv.URL+"/r/"+room, tb.name)
			}
			start := time.Now()
			a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
			type view struct {
				Width  int     `json:"width"`
				FPS    float64 `json:"fps"`
				Layer  int     `json:"layer"`
				Paused bool    `json:"paused"`
			}
			type sharer struct {
				Full          int     `json:"full"`
				Reason        string  `json:"reason"`
				BandwidthSecs float64 `json:"bandwidthSecs"`
				Encoded       int     `json:"encoded"`
				Width         int     `json:"width"`
			}
			var sh sharer
			var got view
			if !c.simulcast {
				// The encoder's first frames: at the share's full width
				// when it was told a start rate that carries it; the old
				// build started at 640 px (Chromium's 300 kbit/s start)
				// and climbed for 19–24 s. (Later the sharer's own
				// estimate may lower it, on a slow or loaded machine.)
				testenv.EventuallyState(t, 10*time.Second, "the sharer's first frames", func() (bool, string) {
					err := a.eval(sharerJS, &sh)
					return err == nil && sh.Encoded > 0 && sh.Width > 0, fmt.Sprintf("%+v %v", sh, err)
				})
				// 1920 px on a quiet machine; 1280 px on a loaded one
				// (the start rate decides, and a loaded machine's first
				// estimate is lower); 640 px (a third) without the hint.
				t.Logf("one quality: the sharer's first frames are %d px wide of %d", sh.Width, sh.Full)
				if sh.Width <= sh.Full/3 {
					t.Fatalf("the sharer's first frames are %d px wide of a %d px screen (%+v)", sh.Width, sh.Full, sh)
				}
			}
			// What the viewer gets, with several qualities the layer its
			// tile asks for (h); never a "too slow" pause on a free link.
			testenv.EventuallyState(t, 10*time.Second, "the viewer's picture", func() (bool, string) {
				if err := a.eval(sharerJS, &sh); err != nil {
					return false, err.Error()
				}
				if err := v.eval(viewerJS, &got); err != nil {
					return false, err.Error()
				}
				if got.Paused {
					t.Fatalf("the viewer's tile says the connection is too slow, on a free link: %+v", got)
				}
				want := 1
				if c.simulcast {
					want = sh.Full / 2
				}
				return sh.Full > 0 && got.FPS >= 5 && got.Width >= want, fmt.Sprintf("viewer %+v, sharer %+v", got, sh)
			})
			t.Logf("%s: %d px of %d at %.0f fps %.1f s after Share (sharer limited by %q, %.1f s by bandwidth)", c.name, got.Width, sh.Full, got.FPS, time.Since(start).Seconds(), sh.Reason, sh.BandwidthSecs)
		})
	}
}
