package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// layerJS pins the tab's screen-video consumer to a simulcast layer (the
// page would otherwise pick one from its tile size) and reports what
// arrives: the inbound frame width and the layer the SFU says it sends.
const layerJS = `(async (want) => {
  const c = window.__matinee.client;
  for (const co of c.consumers.values()) {
    if (co.kind !== 'video' || !co.track) continue;
    if (co.preferredLayer !== want) await co.setPreferredLayer(want);
    let w = 0;
    (await co.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') w = s.frameWidth || 0; });
    return {width: w, layer: co.spatialLayer ?? -2};
  }
  return {width: 0, layer: -2};
})`

func TestSimulcastPreferredLayers(t *testing.T) {
	base := startServer(t, nil)
	b := newBrowser(t)
	a := b.newTab("A")
	joinRoom(t, a, base+"/r/layers", "Sharer")
	small, big := b.newTab("small"), b.newTab("big")
	for _, v := range []*tab{small, big} {
		joinRoom(t, v, base+"/r/layers", v.name)
	}
	a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
	for _, v := range []*tab{small, big} {
		if _, err := waitMedia(v, 10*time.Second, false); err != nil {
			t.Fatal(err)
		}
	}
	type got struct {
		Width int `json:"width"`
		Layer int `json:"layer"`
	}
	var s, g got
	// The publisher's own bandwidth estimate decides when its top layer
	// flows; the big tile gets the best layer there is, the small one q.
	// What this checks is the layer choice, not how fast the estimates
	// climb (the sfu package's shaped-link tests time that): with the
	// sharer and both viewers in one headless Chromium beside the race
	// detector on two cores, the viewers' first seconds of a share can
	// lose a fifth of their packets to a starved receive thread, and the
	// estimates then take up to ~30 s to climb back.
	testenv.EventuallyState(t, 45*time.Second, "frame widths follow the preferred layers", func() (bool, string) {
		if err := small.eval(layerJS+"(0)", &s); err != nil {
			return false, err.Error()
		}
		if err := big.eval(layerJS+"(2)", &g); err != nil {
			return false, err.Error()
		}
		state := fmt.Sprintf("small %+v, big %+v", s, g)
		return s.Layer == 0 && g.Layer >= 1 && s.Width > 0 && g.Width >= 2*s.Width, state
	})
	t.Logf("small tile: layer %d, %d px wide; big tile: layer %d, %d px wide", s.Layer, s.Width, g.Layer, g.Width)
	// The shared screen's own width: the small tile must get the
	// quarter-size layer of it, whatever layers the sharer's bandwidth
	// lets it send at the moment.
	var full int
	a.mustEval(t, `(() => { const s = window.__matinee.client.sendTransport.pc.getSenders().find((x) => x.track && x.track.kind === 'video');
	  return s ? s.track.getSettings().width || 0 : 0; })()`, &full)
	if full == 0 {
		t.Fatal("cannot read the shared screen's width")
	}
	if s.Width > full/3 {
		t.Errorf("small tile gets %d px of a %d px share: not the quarter-size layer", s.Width, full)
	}
	if strings.Contains(small.console(), "Uncaught") {
		t.Errorf("page errors: %s", small.console())
	}
}
