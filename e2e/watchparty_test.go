package e2e

import (
	"encoding/json"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// view is what a tab shows and receives, read by probeJS.
type view struct {
	State string `json:"state"` // the Client's state
	Conn  string `json:"conn"`  // data-state of the connection-state badge
	Peer  string `json:"peer"`  // our peer id
	// Session counts the client's connections: it grows with every
	// reconnect.
	Session int     `json:"session"`
	Mark    bool    `json:"mark"`  // window.__e2eMark survived (no reload)
	Count   int     `json:"count"` // entries in the participant list
	Tiles   []tileV `json:"tiles"`
	Video   *rtpIn  `json:"video"`
	Audio   *rtpIn  `json:"audio"`
	Cons    []struct {
		Kind  string `json:"kind"`
		Mid   string `json:"mid"`
		Src   string `json:"src"`
		Muted bool   `json:"muted"`
	} `json:"cons"` // every consumer, for failure reports
}

type tileV struct {
	W      int  `json:"w"`
	H      int  `json:"h"`
	Paused bool `json:"paused"`
}

type rtpIn struct {
	Source   string  `json:"source"`
	Frames   int     `json:"frames"`
	Level    float64 `json:"level"`
	Energy   float64 `json:"energy"`
	Packets  int     `json:"packets"`
	Channels int     `json:"channels"`
	Mime     string  `json:"mime"`
	Fmtp     string  `json:"fmtp"`
}

func (v view) String() string {
	b, _ := json.Marshal(v)
	return string(b)
}

// probeJS reads a tab's state: the page's remote videos, and the
// inbound-rtp statistics of its screen-share consumers.
const probeJS = `(async () => {
  const app = window.__matinee, c = app && app.client;
  const out = {state: c ? c.state : '', peer: c && c.me ? c.me.id : '', session: c ? c._session : 0, mark: !!window.__e2eMark,
    conn: document.querySelector('[data-testid=connection-state]')?.dataset.state || '',
    count: document.querySelectorAll('[data-testid=participant]').length,
    tiles: [...document.querySelectorAll('[data-testid=remote-video]')].map((v) => ({w: v.videoWidth, h: v.videoHeight, paused: v.paused})),
    video: null, audio: null,
    cons: c ? [...c.consumers.values()].map((co) => ({kind: co.kind, mid: co.mid || '', src: co.appData.source || '', muted: !!(co.track && co.track.muted)})) : []};
  if (c) {
    for (const co of c.consumers.values()) {
      if (!co.track || co.appData.source !== 'screen') continue;
      const r = await co.getStats();
      r.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        const codec = s.codecId ? r.get(s.codecId) : null;
        out[s.kind] = {source: co.appData.source, frames: s.framesDecoded || 0, level: s.audioLevel || 0,
          energy: s.totalAudioEnergy || 0, packets: s.packetsReceived || 0,
          channels: codec ? codec.channels || 0 : 0, mime: codec ? codec.mimeType : '', fmtp: codec ? codec.sdpFmtpLine || '' : ''};
      });
    }
  }
  return out;
})()`

func (tb *tab) probe() (view, error) {
	var v view
	err := tb.eval(probeJS, &v)
	return v, err
}

// joinRoom opens the room at url in tb, joins as name and waits until
// joined.
func joinRoom(t *testing.T, tb *tab, url, name string) {
	t.Helper()
	tb.do(t,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=join-room]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), name),
		chromedp.Click(chromedp.CSS(`[data-testid=join-room]`)),
	)
	waitJoined(t, tb, 10*time.Second)
}

// waitJoined waits for the connection badge to say connected.
func waitJoined(t *testing.T, tb *tab, timeout time.Duration) {
	t.Helper()
	testenv.EventuallyState(t, timeout, tb.name+" joins", func() (bool, string) {
		v, err := tb.probe()
		if err != nil {
			return false, err.Error()
		}
		return v.State == "joined" && v.Conn == "connected", v.String()
	})
}

// waitPlaying waits until tb plays one remote screen share: a video
// element with a picture, frames being decoded, and sound above silence.
func waitPlaying(tb *tab, timeout time.Duration) (time.Duration, error) {
	return waitMedia(tb, timeout, true)
}

// waitMedia is waitPlaying that may leave out the sound (a muted page
// does not decode it).
func waitMedia(tb *tab, timeout time.Duration, sound bool) (time.Duration, error) {
	firstFrames := -1
	heard := !sound
	return testenv.Poll(timeout, tb.name+" plays the share", func() (bool, string) {
		v, err := tb.probe()
		if err != nil {
			return false, err.Error()
		}
		if v.Audio != nil && v.Audio.Level > 0 {
			heard = true
		}
		if len(v.Tiles) != 1 || v.Tiles[0].W == 0 || v.Tiles[0].Paused || v.Video == nil || v.Video.Frames == 0 {
			return false, v.String()
		}
		if firstFrames < 0 {
			firstFrames = v.Video.Frames
		}
		rising := v.Video.Frames > firstFrames
		return rising && heard, fmt.Sprintf("frames %d→%d, audio heard %v: %s", firstFrames, v.Video.Frames, heard, v)
	})
}

// allPlay waits, in parallel, for every viewer to play the share within
// budget of since.
func allPlay(t *testing.T, viewers []*tab, since time.Time, budget time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(viewers))
	took := make([]time.Duration, len(viewers))
	for i, v := range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = waitPlaying(v, budget-time.Since(since))
			took[i] = time.Since(since)
		}()
	}
	wg.Wait()
	var report []string
	for i, v := range viewers {
		report = append(report, fmt.Sprintf("%s %.2fs", v.name, took[i].Seconds()))
		if errs[i] != nil {
			t.Error(errs[i])
		}
	}
	t.Logf("playing (video frames rising, audio level > 0) after: %s", strings.Join(report, ", "))
	if t.Failed() {
		t.FailNow()
	}
}

// noneShow waits for every viewer to have no remote video left.
func noneShow(t *testing.T, viewers []*tab, budget time.Duration) {
	t.Helper()
	for _, v := range viewers {
		testenv.EventuallyState(t, budget, v.name+" drops the tile", func() (bool, string) {
			p, err := v.probe()
			if err != nil {
				return false, err.Error()
			}
			return len(p.Tiles) == 0, p.String()
		})
	}
}

func TestWatchParty(t *testing.T) {
	base := startServer(t, nil)
	b := newBrowser(t)

	// A creates a room from the lobby.
	a := b.newTab("A")
	a.do(t,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=name-input]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), "Ana"),
		chromedp.Click(chromedp.CSS(`[data-testid=create-room]`)),
	)
	var roomURL string
	testenv.EventuallyState(t, 10*time.Second, "A lands on a room page", func() (bool, string) {
		_ = a.eval(`location.href`, &roomURL)
		return strings.Contains(roomURL, "/r/"), roomURL
	})
	waitJoined(t, a, 10*time.Second)
	u, _ := url.Parse(roomURL)
	t.Logf("room %s", u.Path)

	// B–E open the link, give their names and join.
	var viewers []*tab
	for _, n := range []string{"B", "C", "D", "E"} {
		v := b.newTab(n)
		if n == "C" {
			v.addInitScript(t, opusTOCHook)
		}
		v.do(t,
			chromedp.Navigate(roomURL),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=join-room]`)),
			chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), "Viewer "+n),
			chromedp.Click(chromedp.CSS(`[data-testid=join-room]`)),
		)
		viewers = append(viewers, v)
	}
	for _, v := range append([]*tab{a}, viewers...) {
		waitJoined(t, v, 10*time.Second)
		testenv.EventuallyState(t, 5*time.Second, v.name+" lists everyone", func() (bool, string) {
			p, err := v.probe()
			if err != nil {
				return false, err.Error()
			}
			return p.Count == 5, strconv.Itoa(p.Count) + " participants"
		})
	}

	share := func() time.Time {
		t.Helper()
		start := time.Now()
		a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
		return start
	}

	t.Run("share reaches everyone", func(t *testing.T) {
		allPlay(t, viewers, share(), 5*time.Second)
	})

	t.Run("stereo high-bitrate audio", func(t *testing.T) {
		var sent struct {
			Offer, Answer, Mid string
		}
		a.mustEval(t, `(() => {
		  const tr = window.__matinee.client.sendTransport;
		  const p = [...tr.producers].find((p) => p.kind === 'audio');
		  return {offer: tr.lastOffer, answer: tr.pc.remoteDescription.sdp, mid: p ? p.mid : ''};
		})()`, &sent)
		if sent.Mid == "" {
			t.Fatal("A publishes no screen audio")
		}
		offer := opusFmtp(sent.Offer, sent.Mid)
		if offer["stereo"] != "1" {
			t.Errorf("published offer: Opus fmtp %v lacks stereo=1", offer)
		}
		if br, _ := strconv.Atoi(offer["maxaveragebitrate"]); br < 128000 {
			t.Errorf("published offer: Opus maxaveragebitrate %q, want ≥ 128000", offer["maxaveragebitrate"])
		}
		if ans := opusFmtp(sent.Answer, sent.Mid); ans["stereo"] != "1" {
			t.Errorf("A's encoder is not told to send stereo: answer fmtp %v", ans)
		}

		for _, v := range viewers {
			var got struct{ Offer, Answer string }
			v.mustEval(t, `(() => { const tr = window.__matinee.client.recvTransport;
			  return {offer: tr.pc.remoteDescription.sdp, answer: tr.pc.localDescription.sdp}; })()`, &got)
			if f := opusFmtp(got.Answer, ""); f["stereo"] != "1" {
				t.Errorf("%s decodes mono: its answer's Opus fmtp is %v", v.name, f)
			}
			p, err := v.probe()
			if err != nil {
				t.Fatal(err)
			}
			if p.Audio == nil || p.Audio.Channels != 2 || !strings.Contains(p.Audio.Fmtp, "stereo=1") {
				t.Errorf("%s: inbound audio codec %+v, want 2 channels with stereo=1", v.name, p.Audio)
			}
		}
		// The strongest check: the Opus frames that arrive are coded in
		// stereo (the TOC byte's s bit), read with an encoded transform.
		var frames struct {
			Supported bool `json:"supported"`
			Total     int  `json:"total"`
			Stereo    int  `json:"stereo"`
		}
		c := viewers[1]
		testenv.EventuallyState(t, 3*time.Second, c.name+" counts Opus frames", func() (bool, string) {
			if err := c.eval(stereoFramesJS, &frames); err != nil {
				return false, err.Error()
			}
			return !frames.Supported || frames.Total >= 50, fmt.Sprintf("%+v", frames)
		})
		if !frames.Supported {
			t.Fatal("this Chromium has no RTCRtpScriptTransform: cannot read the received Opus frames")
		}
		t.Logf("%s: %d of %d received Opus frames are coded in stereo", c.name, frames.Stereo, frames.Total)
		if frames.Total < 10 || frames.Stereo < frames.Total*9/10 {
			t.Errorf("%s: %d of %d received Opus frames are stereo", c.name, frames.Stereo, frames.Total)
		}
	})

	t.Run("simulcast layers", func(t *testing.T) {
		var layers []struct {
			Rid   string  `json:"rid"`
			Bytes float64 `json:"bytes"`
			Why   string  `json:"why"`
			W     int     `json:"w"`
			BWE   float64 `json:"bwe"`
		}
		// All three layers are negotiated; how many flow depends on the
		// bandwidth estimate, which needs a while to reach the top layer.
		testenv.EventuallyState(t, 5*time.Second, "A sends simulcast", func() (bool, string) {
			err := a.eval(`(async () => {
			  const p = [...window.__matinee.client.sendTransport.producers].find((p) => p.kind === 'video');
			  const out = [];
			  const r = await window.__matinee.client.sendTransport.pc.getStats();
			  let bwe = 0;
			  r.forEach((s) => { if (s.type === 'candidate-pair' && s.availableOutgoingBitrate) bwe = s.availableOutgoingBitrate; });
			  (await p.getStats()).forEach((s) => { if (s.type === 'outbound-rtp') out.push({rid: s.rid || '', bytes: s.bytesSent, why: s.qualityLimitationReason, w: s.frameWidth || 0, bwe}); });
			  return out;
			})()`, &layers)
			if err != nil {
				return false, err.Error()
			}
			sending := 0
			for _, l := range layers {
				if l.Bytes > 0 && l.Rid != "" {
					sending++
				}
			}
			// How many of them flow depends on the sharer's own bandwidth
			// estimate, which a busy machine keeps low for a while; the
			// layer selection itself is tested in TestSimulcastPreferredLayers
			// and the sfu package.
			return len(layers) == 3 && sending >= 1, fmt.Sprintf("%+v", layers)
		})
		t.Logf("A's layers: %+v", layers)
	})

	t.Run("ICE restart keeps playing", func(t *testing.T) {
		ufrag := `(() => { const c = window.__matinee.client, t = c.%sTransport;
		  return /a=ice-ufrag:(\S+)/.exec(t.pc.localDescription.sdp)[1]; })()`
		var aBefore, bBefore, aAfter, bAfter string
		bv := viewers[0]
		a.mustEval(t, fmt.Sprintf(ufrag, "send"), &aBefore)
		bv.mustEval(t, fmt.Sprintf(ufrag, "recv"), &bBefore)
		a.mustEval(t, `window.__matinee.client.restartIce('send').then(() => true)`, nil)
		bv.mustEval(t, `window.__matinee.client.restartIce('recv').then(() => true)`, nil)
		testenv.EventuallyState(t, 5*time.Second, "new ICE credentials", func() (bool, string) {
			_ = a.eval(fmt.Sprintf(ufrag, "send"), &aAfter)
			_ = bv.eval(fmt.Sprintf(ufrag, "recv"), &bAfter)
			return aAfter != aBefore && bAfter != bBefore, fmt.Sprintf("send %s→%s, recv %s→%s", aBefore, aAfter, bBefore, bAfter)
		})
		allPlay(t, viewers, time.Now(), 5*time.Second)
	})

	t.Run("stop and share again", func(t *testing.T) {
		a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=stop-share]`)))
		noneShow(t, viewers, 5*time.Second)
		allPlay(t, viewers, share(), 5*time.Second)
	})

	t.Run("reload rejoins", func(t *testing.T) {
		bv := viewers[0]
		bv.mustEval(t, `window.__e2eMark = true`, nil)
		before, err := bv.probe()
		if err != nil {
			t.Fatal(err)
		}
		bv.do(t, chromedp.Reload())
		waitJoined(t, bv, 10*time.Second)
		after, err := bv.probe()
		if err != nil {
			t.Fatal(err)
		}
		if after.Mark {
			t.Fatal("the page did not reload")
		}
		if after.Peer != before.Peer {
			t.Fatalf("peer id %s became %s: the reload was not the same member", before.Peer, after.Peer)
		}
		if _, err := waitPlaying(bv, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("lost websocket reconnects", func(t *testing.T) {
		bv := viewers[0]
		var before view
		bv.mustEval(t, `window.__e2eMark = true`, nil)
		before, err := bv.probe()
		if err != nil {
			t.Fatal(err)
		}
		bv.mustEval(t, `window.__matinee.client.ws.close(), true`, nil)
		testenv.EventuallyState(t, 10*time.Second, "B rejoins as the same peer", func() (bool, string) {
			p, err := bv.probe()
			if err != nil {
				return false, err.Error()
			}
			return p.State == "joined" && p.Conn == "connected" && p.Session > before.Session && p.Peer == before.Peer, p.String()
		})
		if _, err := waitPlaying(bv, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		p, _ := bv.probe()
		if !p.Mark {
			t.Fatal("the page reloaded instead of reconnecting by itself")
		}
		// The others saw B leave and come back: still five people.
		for _, v := range append([]*tab{a}, viewers[1:]...) {
			testenv.EventuallyState(t, 5*time.Second, v.name+" lists everyone", func() (bool, string) {
				p, err := v.probe()
				if err != nil {
					return false, err.Error()
				}
				return p.Count == 5, strconv.Itoa(p.Count) + " participants"
			})
		}
	})

	t.Run("sharer reconnects and shares again", func(t *testing.T) {
		before, err := a.probe()
		if err != nil {
			t.Fatal(err)
		}
		a.mustEval(t, `window.__matinee.client.ws.close(), true`, nil)
		testenv.EventuallyState(t, 10*time.Second, "A rejoins", func() (bool, string) {
			p, err := a.probe()
			if err != nil {
				return false, err.Error()
			}
			return p.State == "joined" && p.Conn == "connected" && p.Session > before.Session && p.Peer == before.Peer, p.String()
		})
		// The screen was never stopped: A publishes it again by itself.
		allPlay(t, viewers, time.Now(), 10*time.Second)
	})

	t.Run("chat", func(t *testing.T) {
		a.do(t,
			chromedp.Click(chromedp.CSS(`#tab-btn-chat`)),
			chromedp.SendKeys(chromedp.CSS(`[data-testid=chat-input]`), "popcorn ready?"),
			chromedp.Click(chromedp.CSS(`[data-testid=chat-send]`)),
		)
		var unavailable bool
		testenv.EventuallyState(t, 5*time.Second, "A's message shows", func() (bool, string) {
			var n int
			_ = a.eval(`document.querySelectorAll('[data-testid=chat-message]').length`, &n)
			_ = a.eval(`!document.getElementById('chat-unavailable').hidden`, &unavailable)
			return n == 1 || unavailable, fmt.Sprintf("%d messages, unavailable %v", n, unavailable)
		})
		if unavailable {
			t.Log("this server has no chat method: the panel says so (checked in TestErrorMessages)")
			return
		}
		for _, v := range viewers {
			testenv.EventuallyState(t, 5*time.Second, v.name+" gets the message", func() (bool, string) {
				var texts []string
				_ = v.eval(`[...document.querySelectorAll('[data-testid=chat-message]')].map((e) => e.innerText)`, &texts)
				return len(texts) == 1 && strings.Contains(texts[0], "popcorn ready?") && strings.Contains(texts[0], "Ana"), fmt.Sprint(texts)
			})
		}
	})

	t.Run("stop removes tiles everywhere", func(t *testing.T) {
		a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=stop-share]`)))
		noneShow(t, viewers, 5*time.Second)
	})
}

// opusTOCHook runs before the page's own scripts: it puts an encoded
// transform on every audio receiver as it appears (a transform set later
// sees no frames) and counts the Opus frames whose TOC byte has the stereo
// flag (RFC 6716 section 3.1), by mid, in window.__opusToc.
const opusTOCHook = `(() => {
  const stats = window.__opusToc = {};
  if (typeof RTCRtpScriptTransform !== 'function') { stats.unsupported = true; return; }
  const src = 'onrtctransform = (ev) => { const t = ev.transformer, port = t.options.port; let total = 0, stereo = 0;' +
    ' t.readable.pipeThrough(new TransformStream({transform(f, ctl) { const b = new Uint8Array(f.data);' +
    ' if (b.length > 0) { total++; if (b[0] & 4) stereo++; } ctl.enqueue(f); }})).pipeTo(t.writable);' +
    ' setInterval(() => port.postMessage({total, stereo}), 200); };';
  const url = URL.createObjectURL(new Blob([src], {type: 'text/javascript'}));
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('track', (ev) => {
        if (ev.track.kind !== 'audio') return;
        const ch = new MessageChannel();
        ch.port1.onmessage = (m) => { stats[ev.transceiver.mid] = m.data; };
        ev.receiver.transform = new RTCRtpScriptTransform(new Worker(url), {port: ch.port2}, [ch.port2]);
      });
    }
  };
})()`

// stereoFramesJS reads opusTOCHook's counts for the screen-share audio.
const stereoFramesJS = `(() => {
  const s = window.__opusToc || {};
  const co = [...window.__matinee.client.consumers.values()].find((x) => x.kind === 'audio' && x.track && x.appData.source === 'screen');
  const n = (co && s[co.mid]) || {total: 0, stereo: 0};
  return {supported: !s.unsupported, total: n.total, stereo: n.stereo};
})()`
