package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server/servertest"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/matinee-dev/matinee/room"
)

// sentJS describes what one of the page's video producers sends
// ("camera" or "screen"): its server id, the rids and scales of the
// sender's encodings, and the outbound-rtp streams with their frames.
const sentJS = `(async (which) => {
  const a = window.__matinee;
  const p = which === 'camera' ? a.camera?.producer : a.share?.producers.find((x) => x.kind === 'video');
  if (!p || !p.id || !p.sender) return {id: ''};
  const enc = p.sender.getParameters().encodings.map((e) => ({rid: e.rid || '', scale: e.scaleResolutionDownBy || 1}));
  const out = [];
  (await p.getStats()).forEach((s) => { if (s.type === 'outbound-rtp') out.push({rid: s.rid || '', frames: s.framesEncoded || 0, width: s.frameWidth || 0}); });
  return {id: p.id, enc, out, trackWidth: p.track.getSettings().width || 0};
})`

// pinAllJS asks for the top layer of every video the tab receives.
const pinAllJS = `(async () => {
  for (const co of window.__matinee.client.consumers.values()) {
    if (co.kind === 'video' && co.preferredLayer !== 2) await co.setPreferredLayer(2);
  }
  return true;
})()`

type sent struct {
	ID  string `json:"id"`
	Enc []struct {
		RID   string  `json:"rid"`
		Scale float64 `json:"scale"`
	} `json:"enc"`
	Out []struct {
		RID    string `json:"rid"`
		Frames int    `json:"frames"`
		Width  int    `json:"width"`
	} `json:"out"`
	TrackWidth int `json:"trackWidth"`
}

func (s sent) outRIDs() []string {
	var rids []string
	for _, o := range s.Out {
		rids = append(rids, o.RID)
	}
	slices.Sort(rids)
	return rids
}

// serverRIDs are the layers the SFU has received of a producer, sorted.
func serverRIDs(t *testing.T, ts *servertest.Server, roomID, producerID string) ([]string, []room.LayerInfo) {
	t.Helper()
	r, ok := ts.Rooms().Room(roomID)
	if !ok {
		t.Fatalf("room %q is gone", roomID)
	}
	layers, err := r.ProducerLayers(producerID)
	if err != nil {
		return nil, nil
	}
	var rids []string
	for _, l := range layers {
		rids = append(rids, l.RID)
	}
	slices.Sort(rids)
	return rids, layers
}

// waitSent waits until the page's producer `which` exists and check
// accepts what it sends.
func waitSent(t *testing.T, tb *tab, which string, timeout time.Duration, check func(sent) (bool, string)) sent {
	t.Helper()
	var s sent
	testenv.EventuallyState(t, timeout, tb.name+" sends its "+which, func() (bool, string) {
		s = sent{}
		if err := tb.eval(sentJS+fmt.Sprintf("(%q)", which), &s); err != nil {
			return false, err.Error()
		}
		if s.ID == "" {
			return false, "no producer yet"
		}
		return check(s)
	})
	return s
}

// single accepts a producer that sends one encoding, without a rid and
// not scaled down, whose frames flow.
func single(s sent) (bool, string) {
	state := fmt.Sprintf("%+v", s)
	if len(s.Enc) != 1 || s.Enc[0].RID != "" || s.Enc[0].Scale != 1 {
		return false, "encodings: " + state
	}
	return len(s.Out) == 1 && s.Out[0].RID == "" && s.Out[0].Frames > 0, state
}

// TestSimulcastSettings checks what publishers send in a room with
// simulcast (the default) and without: cameras in three layers, or one
// full-quality encoding for the screen and the camera; and the sharer's
// "one quality" choice for a single share.
func TestSimulcastSettings(t *testing.T) {
	ts := startTestServer(t, nil)
	b := newBrowser(t)

	// (a) A camera in a default room reaches the SFU in three layers. A
	// viewer pins it to the top layer, so that dynacast keeps every layer
	// wanted and the publisher's bandwidth estimate climbs to carry them.
	a, v := b.newTab("camera"), b.newTab("viewer")
	joinRoom(t, a, ts.URL+"/r/cams", "Cam")
	joinRoom(t, v, ts.URL+"/r/cams", "Viewer")
	a.do(t, chromedp.Click(chromedp.CSS(`#cam`)))
	var pinned struct {
		Width int `json:"width"`
		Layer int `json:"layer"`
	}
	var rids []string
	var layers []room.LayerInfo
	var cam sent
	testenv.EventuallyState(t, 30*time.Second, "the camera's three layers reach the SFU", func() (bool, string) {
		if err := v.eval(layerJS+"(2)", &pinned); err != nil {
			return false, err.Error()
		}
		if err := a.eval(sentJS+`("camera")`, &cam); err != nil || cam.ID == "" {
			return false, fmt.Sprintf("camera: %+v %v", cam, err)
		}
		rids, layers = serverRIDs(t, ts, "cams", cam.ID)
		flowing := len(layers) > 0
		for _, l := range layers {
			flowing = flowing && l.Bitrate > 0
		}
		return flowing && slices.Equal(rids, []string{"f", "h", "q"}), fmt.Sprintf("server layers %+v, sender %+v, viewer %+v", layers, cam, pinned)
	})
	if got := cam.outRIDs(); !slices.Equal(got, []string{"f", "h", "q"}) {
		t.Errorf("the camera's outbound-rtp rids are %v", got)
	}
	for _, e := range cam.Enc {
		if want := map[string]float64{"q": 4, "h": 2, "f": 1}[e.RID]; e.Scale != want {
			t.Errorf("camera layer %q scaled by %v, want %v", e.RID, e.Scale, want)
		}
	}
	// The smallest layer is still a usable picture.
	if cam.TrackWidth/4 < 160 {
		t.Errorf("camera captured %d px wide: its q layer is under 160 px", cam.TrackWidth)
	}
	t.Logf("camera %d px wide; server layers %+v", cam.TrackWidth, layers)

	// A smaller camera is offered two layers, q at half size and f at
	// full: given three, Chrome drops the largest, and nobody would get
	// the full picture.
	small := b.newTab("small camera")
	small.addInitScript(t, `(() => {
	  const gum = MediaDevices.prototype.getUserMedia;
	  MediaDevices.prototype.getUserMedia = function (c) {
	    if (c && c.video) c = {...c, video: {width: {exact: 640}, height: {exact: 360}}};
	    return gum.call(this, c);
	  };
	})()`)
	joinRoom(t, small, ts.URL+"/r/cams", "Small")
	small.do(t, chromedp.Click(chromedp.CSS(`#cam`)))
	testenv.EventuallyState(t, 30*time.Second, "the small camera's two layers reach the SFU", func() (bool, string) {
		if err := v.eval(pinAllJS, nil); err != nil {
			return false, err.Error()
		}
		if err := small.eval(sentJS+`("camera")`, &cam); err != nil || cam.ID == "" {
			return false, fmt.Sprintf("camera: %+v %v", cam, err)
		}
		rids, layers = serverRIDs(t, ts, "cams", cam.ID)
		state := fmt.Sprintf("server layers %+v, sender %+v", layers, cam)
		if len(cam.Enc) != 2 || cam.Enc[0].RID != "q" || cam.Enc[0].Scale != 2 || cam.Enc[1].RID != "f" || cam.Enc[1].Scale != 1 {
			return false, state
		}
		if !slices.Equal(rids, []string{"f", "q"}) || layers[0].Bitrate == 0 || layers[1].Bitrate == 0 {
			return false, state
		}
		for _, l := range layers {
			if l.RID == "f" && l.Width != 640 {
				return false, state
			}
		}
		return true, state
	})
	small.cancel()

	// (b) A room made without simulcast: the screen and the camera each
	// go out as one encoding, and the SFU sees one layer of each.
	api(t, ts, http.MethodPost, "/api/rooms", map[string]any{"name": "LAN", "simulcast": false}, nil)
	a.cancel()
	v.cancel()
	c := b.newTab("lan")
	joinRoom(t, c, ts.URL+"/r/lan", "Lan")
	var ui struct {
		OneQuality bool `json:"oneQuality"`
		Switch     bool `json:"switch"`
	}
	c.mustEval(t, `({oneQuality: document.querySelector('[data-testid=one-quality]').checked, switch: document.querySelector('[data-testid=room-simulcast]').checked})`, &ui)
	if !ui.OneQuality || ui.Switch {
		t.Errorf("in a room without simulcast the host's page shows %+v, want one quality ticked and the switch off", ui)
	}
	c.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
	scr := waitSent(t, c, "screen", 15*time.Second, single)
	c.do(t, chromedp.Click(chromedp.CSS(`#cam`)))
	cam = waitSent(t, c, "camera", 15*time.Second, single)
	for what, s := range map[string]sent{"screen": scr, "camera": cam} {
		testenv.EventuallyState(t, 10*time.Second, "the SFU gets one layer of the "+what, func() (bool, string) {
			rids, layers := serverRIDs(t, ts, "lan", s.ID)
			return slices.Equal(rids, []string{""}), fmt.Sprintf("%+v", layers)
		})
	}

	// (c) In a simulcast room the sharer ticks "one quality": that share
	// goes out as one encoding; the one before it had three layers.
	d := b.newTab("sharer")
	joinRoom(t, d, ts.URL+"/r/cams2", "Sharer")
	d.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
	scr = waitSent(t, d, "screen", 15*time.Second, func(s sent) (bool, string) {
		return slices.Equal(s.outRIDs(), []string{"f", "h", "q"}), fmt.Sprintf("%+v", s)
	})
	d.do(t, chromedp.Click(chromedp.CSS(`[data-testid=stop-share]`)))
	d.do(t, chromedp.Click(chromedp.CSS(`[data-testid=one-quality]`)))
	d.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
	one := waitSent(t, d, "screen", 15*time.Second, func(s sent) (bool, string) {
		if s.ID == scr.ID {
			return false, "still the first share"
		}
		return single(s)
	})
	testenv.EventuallyState(t, 10*time.Second, "the SFU gets one layer of the second share", func() (bool, string) {
		rids, layers := serverRIDs(t, ts, "cams2", one.ID)
		return slices.Equal(rids, []string{""}), fmt.Sprintf("%+v", layers)
	})
	// The choice concerns the share: the room still simulcasts.
	var roomSimulcast bool
	d.mustEval(t, `window.__matinee.room.simulcast`, &roomSimulcast)
	if !roomSimulcast {
		t.Error("ticking one quality changed the room's setting")
	}
	// The host switches simulcast off for the room from its settings; the
	// server keeps it, and the next share starts from it.
	d.do(t, chromedp.Click(chromedp.CSS(`[data-testid=stop-share]`)))
	d.do(t, chromedp.Click(chromedp.CSS(`[data-testid=one-quality]`)))
	d.mustEval(t, `document.querySelector('[data-testid=room-simulcast]').click(), true`, nil)
	testenv.EventuallyState(t, 5*time.Second, "the room's simulcast goes off", func() (bool, string) {
		r, _ := ts.Rooms().Room("cams2")
		var box bool
		_ = d.eval(`document.querySelector('[data-testid=one-quality]').checked`, &box)
		return !r.Info().Simulcast && box, fmt.Sprintf("room %+v, one quality ticked %v", r.Info(), box)
	})
	for _, tb := range []*tab{c, d} {
		if strings.Contains(tb.console(), "Uncaught") || strings.Contains(tb.console(), "matinee: mode") {
			t.Errorf("%s: page errors: %s", tb.name, tb.console())
		}
	}
}
