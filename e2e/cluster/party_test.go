package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/matinee-dev/matinee/internal/testenv"
)

// pageState is what screenFramesJS reads.
type pageState struct {
	Frames int
	Width  int
	Href   string
	State  string
}

func readPage(ctx context.Context) (pageState, error) {
	var st pageState
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](screenFramesJS, chromedp.EvalAwaitPromise))
	if err == nil {
		err = json.Unmarshal(raw, &st)
	}
	return st, err
}

// topWidth is the width of the widest layer the sharing page sends now
// (the browser may scale its layers down when its CPU is short).
func topWidth(host context.Context) (int, error) {
	return chromedp.Run(host, chromedp.Evaluate[int](`(async () => {
  let w = 0;
  const t = window.__matinee.client.sendTransport;
  if (t) (await t.pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video') w = Math.max(w, s.frameWidth || 0); });
  return w;
})()`, chromedp.EvalAwaitPromise))
}

// partyPlayer is a page's synced player: the video's position and the
// page's estimate of the server clock when it was read, so that the
// positions of pages on different nodes compare on one clock.
type partyPlayer struct {
	URL    string  `json:"url"`
	Pos    float64 `json:"pos"` // s
	At     float64 `json:"at"`  // server time, Unix ms
	Rate   float64 `json:"rate"`
	Paused bool    `json:"paused"`
	Ready  int     `json:"ready"`
}

const partyPlayerJS = `(() => {
  const app = window.__matinee, v = app.player.video;
  return {url: app.player.url || '', pos: v.currentTime, at: app.clock.now(), rate: v.playbackRate, paused: v.paused, ready: v.readyState};
})()`

// readPlayers reads every page's player at nearly the same moment.
func readPartyPlayers(pages []context.Context) ([]partyPlayer, error) {
	out := make([]partyPlayer, len(pages))
	errs := make([]error, len(pages))
	var wg sync.WaitGroup
	for i, ctx := range pages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var raw []byte
			if raw, errs[i] = chromedp.Run(ctx, chromedp.Evaluate[[]byte](partyPlayerJS)); errs[i] == nil {
				errs[i] = json.Unmarshal(raw, &out[i])
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// makeFilm writes a 30 s H.264/AAC film that browsers play at once
// (index first).
func makeFilm(t *testing.T, path string) {
	t.Helper()
	ffmpeg := testenv.Tool(t, "ffmpeg", "ffmpeg")
	cmd := exec.Command(ffmpeg, "-v", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=480x270:rate=24:duration=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=30",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "24",
		"-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", "-shortest", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
}

// TestClusterPartyOnThreeNodes is issue 18's watch party across nodes,
// each node in a network namespace of its own: the host shares a screen
// in Chromium on node A; a desktop viewer and a phone (a phone-sized,
// touch, mobile page) open the link on B, another phone on C, and all
// stay there, each node fed by one pipe from A; pion WHEP viewers watch
// on B and C. They get the top layer on free links; chat goes between the
// three nodes in one order; the host's film plays in step on all pages. C's link
// is then shaped to a phone's: C's WHEP viewer drops to a lower layer
// while B's keeps the top one. C is killed with -9: the phone's page
// joins on another node and shows the share again within 10 s.
func TestClusterPartyOnThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces, redis-server, three matinee processes and Chromium")
	}
	exe := testenv.Chromium(t)
	media := t.TempDir()
	makeFilm(t, filepath.Join(media, "film.mp4"))
	l := newLAN(t)
	c := newClusterOn(t, l.subnet+".1")
	c.args = []string{"--relay-idle-grace", "1s", "--media-dir", media}
	c.peerIfaces = []string{l.bridge}
	nodes := c.addLANNodes(l, "party", 3)
	a, b, cn := nodes[0], nodes[1], nodes[2]
	const roomID = "party"

	browser := newBrowser(t, exe)
	host := browser
	joinPage(t, host, a.url+"/r/"+roomID, "Host")
	testenv.EventuallyState(t, 20*time.Second, "the room held by "+a.id, func() (bool, string) {
		h := c.leases()[roomID]
		return h == a.id, h
	})
	if err := chromedp.Do(host, chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-screen]`)), chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`))); err != nil {
		t.Fatalf("share: %v", err)
	}
	desk, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	defer cancel()
	// A big screen: the page asks for the layer its tile shows.
	if err := chromedp.Do(desk, chromedp.EmulateViewport(1920, 1080)); err != nil {
		t.Fatal(err)
	}
	joinPage(t, desk, b.url+"/r/"+roomID, "Desk")
	newPhone := func(width, height int64, url, name string) context.Context {
		ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height, chromedp.EmulateScale(3), chromedp.EmulateMobile, chromedp.EmulateTouch)); err != nil {
			t.Fatal(err)
		}
		joinPage(t, ctx, url, name)
		return ctx
	}
	phoneB := newPhone(430, 932, b.url+"/r/"+roomID, "Phone B")
	phone := newPhone(390, 844, cn.url+"/r/"+roomID, "Phone")
	onB := c.watch(t, b, roomID)
	onC := c.watch(t, cn, roomID)

	// The pages decode the share where they opened it; the desktop
	// viewer and the WHEP viewers get the top layer on these free links.
	for _, p := range []struct {
		name string
		ctx  context.Context
		n    *node
	}{{"desktop viewer", desk, b}, {"phone", phoneB, b}, {"phone", phone, cn}} {
		var st pageState
		testenv.EventuallyState(t, 30*time.Second, "the "+p.name+" on "+p.n.id+" decodes the share", func() (bool, string) {
			var err error
			st, err = readPage(p.ctx)
			return err == nil && st.Frames >= 30, fmt.Sprintf("%+v %v", st, err)
		})
		if !strings.HasPrefix(st.Href, p.n.url+"/r/"+roomID) {
			t.Fatalf("the %s watches at %s, want on %s where it opened the link", p.name, st.Href, p.n.url)
		}
		t.Logf("%s on %s: %d frames, %d wide", p.name, p.n.id, st.Frames, st.Width)
	}
	testenv.EventuallyState(t, 20*time.Second, "the desktop viewer on B gets the top layer", func() (bool, string) {
		top, err := topWidth(host)
		st, err2 := readPage(desk)
		return err == nil && err2 == nil && top > 0 && st.Width == top, fmt.Sprintf("top %d: %+v %v %v", top, st, err, err2)
	})
	for _, v := range []*viewer{onB, onC} {
		testenv.EventuallyState(t, 20*time.Second, "the WHEP viewer on "+v.node.id+" gets the top layer", func() (bool, string) {
			top, err := topWidth(host)
			return err == nil && top > 0 && v.lastWidth() == top, fmt.Sprintf("top %d, viewer %d %v", top, v.lastWidth(), err)
		})
	}
	c.waitMetric(t, a, pipesOut, 2, 5*time.Second)
	c.waitMetric(t, b, pipesIn, 1, 5*time.Second)
	c.waitMetric(t, cn, pipesIn, 1, 5*time.Second)
	for _, n := range []*node{b, cn} {
		if rs := c.localRooms(n); len(rs) != 0 {
			t.Fatalf("rooms on %s: %v", n.id, rs)
		}
	}

	// Chat from the three nodes at once: every page reads the same lines
	// in the same order.
	pages := []context.Context{host, desk, phoneB, phone}
	for _, p := range pages {
		if _, err := chromedp.Run(p, chromedp.Evaluate[bool](keepChatsJS)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i, p := range pages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 3 {
				js := fmt.Sprintf(`(async () => { await window.__matinee.client.request('chat', {text: 'line %d.%d'}); return true; })()`, i, j)
				if _, err := chromedp.Run(p, chromedp.Evaluate[bool](js, chromedp.EvalAwaitPromise)); err != nil {
					t.Errorf("chat from page %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	chats := make([][]string, len(pages))
	want := 3 * len(pages)
	testenv.EventuallyState(t, 10*time.Second, fmt.Sprintf("every page reads the %d lines", want), func() (bool, string) {
		done := true
		for i, p := range pages {
			got, err := chromedp.Run(p, chromedp.Evaluate[[]string](`window.__chats`))
			if err != nil {
				return false, err.Error()
			}
			chats[i] = got
			done = done && len(got) == want
		}
		return done, fmt.Sprint(chats)
	})
	for i := range pages[1:] {
		if !slices.Equal(chats[0], chats[i+1]) {
			t.Errorf("the pages read the chat in different orders:\nhost on A %v\npage %d     %v", chats[0], i+1, chats[i+1])
		}
	}

	// The host picks a film from A's media folder (every node serves the
	// same folder) and plays it: the players on the three nodes keep
	// within 100 ms of each other.
	if err := chromedp.Do(host,
		chromedp.Click(chromedp.CSS(`[data-testid=watch-video]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=media-item][data-url="/media/film.mp4"]`)),
	); err != nil {
		t.Fatalf("pick the film: %v", err)
	}
	testenv.EventuallyState(t, 15*time.Second, "every player loads the film", func() (bool, string) {
		vs, err := readPartyPlayers(pages)
		ok := err == nil
		for _, v := range vs {
			ok = ok && v.URL == "/media/film.mp4" && v.Ready >= 3
		}
		return ok, fmt.Sprintf("%+v %v", vs, err)
	})
	if err := chromedp.Do(host, chromedp.Click(chromedp.CSS(`[data-testid=play]`))); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyState(t, 10*time.Second, "every player plays", func() (bool, string) {
		vs, err := readPartyPlayers(pages)
		ok := err == nil
		for _, v := range vs {
			ok = ok && !v.Paused && v.Pos > 0.5
		}
		return ok, fmt.Sprintf("%+v %v", vs, err)
	})
	// The players align within a few seconds of starting, as on one node
	// (e2e TestSyncedPlayback's rule: four readings in a row, half a
	// second, within 100 ms of each other); what follows is logged.
	var skews []float64
	settled := -1
	for began := time.Now(); time.Since(began) < 8*time.Second; time.Sleep(120 * time.Millisecond) {
		vs, err := readPartyPlayers(pages)
		if err != nil {
			t.Fatal(err)
		}
		skews = append(skews, worstSkew(vs))
		if n := len(skews); settled < 0 && n >= 4 && slices.IndexFunc(skews[n-4:], func(w float64) bool { return w > 100 }) < 0 {
			settled = n - 4
		}
		if settled >= 0 && len(skews) >= settled+20 {
			break
		}
	}
	if settled < 0 {
		t.Fatalf("the players on A, B and C never within 100 ms of each other for half a second; readings (ms): %.0f", skews)
	}
	t.Logf("playback on A, B and C: within 100 ms from reading %d; worst since %.1f ms (readings, ms: %.0f)", settled, slices.Max(skews[settled:]), skews)

	// C's link becomes a phone's (C's own egress, to its viewers, shaped
	// in its namespace): C's WHEP viewer goes down a layer; B's stays on
	// the top one.
	sh(t, "ip", "netns", "exec", cn.ns, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "600kbit", "burst", "16kbit", "latency", "100ms")
	testenv.EventuallyState(t, 20*time.Second, "C's WHEP viewer on a lower layer", func() (bool, string) {
		top, err := topWidth(host)
		w := onC.lastWidth()
		return err == nil && w > 0 && w < top, fmt.Sprintf("top %d, viewer %d %v", top, w, err)
	})
	vi, _, _ := onB.got()
	testenv.EventuallyState(t, 10*time.Second, "B's viewer plays on while C is shaped", func() (bool, string) {
		now, _, _ := onB.got()
		return now >= vi+100, fmt.Sprintf("%d video packets, %d before", now, vi)
	})
	testenv.EventuallyState(t, 20*time.Second, "B's WHEP viewer on the top layer while only C's link is shaped", func() (bool, string) {
		top, err := topWidth(host)
		return err == nil && top > 0 && onB.lastWidth() == top, fmt.Sprintf("top %d, viewer %d %v", top, onB.lastWidth(), err)
	})
	t.Logf("C shaped to 600 kbit/s: C's viewer at %d wide, B's at %d", onC.lastWidth(), onB.lastWidth())

	// C dies: the phone's page joins on another node (the join told it
	// the cluster's nodes) and shows the share again.
	cn.kill()
	killed := time.Now()
	var st pageState
	var moved, joined time.Duration // when the page left C, and joined again
	testenv.EventuallyState(t, 30*time.Second, "the phone shows the share on another node", func() (bool, string) {
		var err error
		st, err = readPage(phone)
		away := strings.HasPrefix(st.Href, a.url+"/r/"+roomID) || strings.HasPrefix(st.Href, b.url+"/r/"+roomID)
		if away && moved == 0 {
			moved = time.Since(killed)
		}
		if away && st.State == "joined" && joined == 0 {
			joined = time.Since(killed)
		}
		return err == nil && away && st.State == "joined" && st.Frames >= 10, fmt.Sprintf("%+v %v", st, err)
	})
	back := time.Since(killed)
	t.Logf("kill -9 of %s: the phone's page left it after %s, joined on %s after %s, and showed the share again after %s",
		cn.id, moved.Round(10*time.Millisecond), st.Href, joined.Round(10*time.Millisecond), back.Round(10*time.Millisecond))
	if back > 10*time.Second {
		t.Errorf("the phone showed the share again %s after its node was killed, want within 10 s", back.Round(10*time.Millisecond))
	}
}

// worstSkew is the largest difference between two players' positions,
// each projected to the first one's reading time, in ms.
func worstSkew(vs []partyPlayer) float64 {
	ref := vs[0]
	lo, hi := 0.0, 0.0
	for _, v := range vs[1:] {
		pos := v.Pos
		if !v.Paused {
			pos += (ref.At - v.At) / 1000 * v.Rate
		}
		d := (pos - ref.Pos) * 1000
		lo, hi = math.Min(lo, d), math.Max(hi, d)
	}
	return hi - lo
}
