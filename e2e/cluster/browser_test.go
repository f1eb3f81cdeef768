package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/matinee-dev/matinee/internal/chromium"
	"github.com/matinee-dev/matinee/internal/testenv"
)

// newBrowser starts headless Chromium (a fake screen to share, the nodes'
// certificates accepted) and returns the context of its first tab,
// which ends with the test.
func newBrowser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := append(chromium.Options(exe, t.TempDir()), chromedp.Flag("ignore-certificate-errors", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, stop := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		stop()
		cancel()
		acancel()
	})
	return ctx
}

// The web client follows a join answered 1010: a page opened on one
// node, whose room another node took meanwhile, moves to that node with
// the name typed in, and joins there without asking again. Members stay
// on the node they reached by default (--relay-members); this is the
// move of a cluster that turned that off (as past --relay-max-members).
func TestClusterWebClientFollowsMove(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server, two matinee processes and Chromium")
	}
	exe := testenv.Chromium(t)
	c := newCluster(t)
	c.args = []string{"--relay-members=false"}
	a := c.addNode("wa")
	b := c.addNode("wb")

	ctx := newBrowser(t, exe)

	// The page opens on a while no node holds the room: a serves it and
	// asks for a name (a fresh profile has none).
	if err := chromedp.Do(ctx, chromedp.Navigate(a.url+"/r/moving"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=name-input]`))); err != nil {
		t.Fatalf("open the room on %s: %v\n%s", a.id, err, tail(a.log))
	}
	// Meanwhile someone joins on b, which takes the room.
	member, err := c.join(b, "moving")
	if err != nil {
		t.Fatalf("join on %s: %v", b.id, err)
	}
	defer member.Close()
	if h := c.leases()["moving"]; h != b.id {
		t.Fatalf("room held by %q, want %s", h, b.id)
	}
	// The person types a name and joins: a answers 1010, the page moves to
	// b and joins there with that name.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), "Browser"),
		chromedp.Click(chromedp.CSS(`[data-testid=join-room]`)),
	); err != nil {
		t.Fatal(err)
	}
	_ = member.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var msg struct {
			Method string
			Params struct {
				Peer struct{ Name string }
			}
		}
		if err := member.ReadJSON(&msg); err != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + ' | ' + (window.__matinee?.client?.state || '') + ' | ' + document.body.innerText.slice(0, 300)`))
			t.Fatalf("no peerJoined from the browser on %s (page at %s): %v", b.id, loc, err)
		}
		if msg.Method == "peerJoined" && msg.Params.Peer.Name == "Browser" {
			break
		}
	}
	loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	if err != nil {
		t.Fatal(err)
	}
	hash, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc, b.url+"/r/moving") || hash != "" {
		t.Errorf("page at %q (hash %q), want %s/r/moving with the fragment taken out", loc, hash, b.url)
	}
	prejoinHidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('prejoin').hidden`))
	if err != nil || !prejoinHidden {
		t.Errorf("the moved page asked for a name again (prejoin hidden %v, %v)", prejoinHidden, err)
	}
}

// joinPage opens a room's page in ctx's tab and joins as name.
func joinPage(t *testing.T, ctx context.Context, url, name string) {
	t.Helper()
	// The tab is opened with ctx (a first Run opens it with the context
	// it is given, and closes it when that ends): only the steps below
	// get a deadline of their own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s's tab: %v", name, err)
	}
	step, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(step,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=name-input]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), name),
		chromedp.Click(chromedp.CSS(`[data-testid=join-room]`)),
	); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + ' | ' + document.readyState + ' | ' + (document.body ? document.body.innerText.slice(0, 400) : '')`))
		t.Fatalf("%s joins at %s: %v (page: %s)", name, url, err, page)
	}
}

// keepChatsJS makes the page keep the text of every chat line it is told
// of, in order, in window.__chats.
const keepChatsJS = `(() => { window.__chats = []; window.__matinee.client.addEventListener('notification', (e) => {
  if (e.detail.method === 'chat') window.__chats.push(e.detail.params.message.text); }); return true; })()`

// screenFramesJS is how many frames of a screen share the page's client
// has decoded and their width, and where the page is.
const screenFramesJS = `(async () => {
  const c = window.__matinee && window.__matinee.client;
  let frames = 0, width = 0;
  if (c) {
    for (const co of c.consumers.values()) {
      if (!co.track || co.appData.source !== 'screen' || co.kind !== 'video') continue;
      (await co.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') { frames += s.framesDecoded || 0; width = Math.max(width, s.frameWidth || 0); } });
    }
  }
  return {frames, width, href: location.href, state: c ? c.state : ''};
})()`

// A host shares a real screen (Chromium's fake one) in a room on one
// node; a viewer who opens the room's link on another node stays there
// (--relay-members) and watches the share relayed. The room's node is
// killed: the viewer's page, never leaving its node (whose join answers
// "retry" while the dead node's lease lasts, never "go there"), and the
// host's, fleeing the dead node, are both in the room again on the
// other node, and the host's new share reaches the viewer.
func TestClusterShareAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server, two matinee processes and Chromium")
	}
	exe := testenv.Chromium(t)
	c := newCluster(t) // --relay-members is on by default
	a := c.addNode("sa")
	b := c.addNode("sb")
	browser := newBrowser(t, exe)
	// The host opens the room on a, which takes it, and shares.
	joinPage(t, browser, a.url+"/r/show", "Host")
	deadline := time.Now().Add(20 * time.Second)
	for c.leases()["show"] != a.id {
		if time.Now().After(deadline) {
			t.Fatalf("show not held by %s: %v", a.id, c.leases()["show"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := chromedp.Do(browser, chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-screen]`)), chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`))); err != nil {
		t.Fatalf("share: %v", err)
	}
	// The viewer, a separate person (own browser context), opens the
	// link on b.
	viewer, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	defer cancel()
	joinPage(t, viewer, b.url+"/r/show", "Viewer")
	type state struct {
		Frames int
		Href   string
		State  string
	}
	var last state
	deadline = time.Now().Add(30 * time.Second)
	for {
		raw, err := chromedp.Run(viewer, chromedp.Evaluate[[]byte](screenFramesJS, chromedp.EvalAwaitPromise))
		if err == nil {
			_ = json.Unmarshal(raw, &last)
		}
		if last.Frames >= 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the viewer decodes no share 30s after joining: %+v (%v)", last, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.HasPrefix(last.Href, b.url+"/r/show") {
		t.Errorf("the viewer watches at %s, want on the node it reached, %s", last.Href, b.url)
	}
	t.Logf("viewer who opened %s/r/show watches on %s: %d frames decoded", b.url, last.Href, last.Frames)

	me := func(ctx context.Context) (id, role string) {
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](`(() => { const m = window.__matinee.client.me || {}; return {id: m.id || '', role: m.role || ''}; })()`))
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ ID, Role string }
		_ = json.Unmarshal(raw, &v)
		return v.ID, v.Role
	}
	hostID, role := me(browser)
	if role != "host" {
		t.Fatalf("the first to join is %q", role)
	}

	// The room's node dies. Both pages find it gone and join again on
	// the other node (the join results named it), which takes the room
	// once the lease runs out, with its members (in Redis): the host is
	// the same member and host again; they share again and the viewer
	// sees it.
	a.kill()
	killed := time.Now()
	probe := func(ctx context.Context) state {
		var st state
		if raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](screenFramesJS, chromedp.EvalAwaitPromise)); err == nil {
			_ = json.Unmarshal(raw, &st)
		}
		return st
	}
	onB := func(st state) bool { return strings.HasPrefix(st.Href, b.url+"/r/show") && st.State == "joined" }
	deadline = time.Now().Add(30 * time.Second)
	var states []string // the viewer's client states, in order
	for {
		host, v := probe(browser), probe(viewer)
		// The viewer's page stays on b throughout: a page sent to the
		// dead node would end on the browser's error page.
		if v.Href != "" && !strings.HasPrefix(v.Href, b.url+"/r/show") {
			t.Fatalf("%s after kill -9 of %s the viewer's page left %s for %s (states %v)", time.Since(killed).Round(time.Millisecond), a.id, b.url, v.Href, states)
		}
		if v.State != "" && (len(states) == 0 || states[len(states)-1] != v.State) {
			states = append(states, v.State)
		}
		if onB(host) && onB(v) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after kill -9 of %s: host %+v, viewer %+v (viewer states %v)\n%s", a.id, host, v, states, tail(b.log))
		}
		time.Sleep(200 * time.Millisecond)
	}
	rejoined := time.Since(killed)
	if h := c.leases()["show"]; h != b.id {
		t.Fatalf("show held by %q after the move, want %s", h, b.id)
	}
	if id, role := me(browser); id != hostID || role != "host" {
		t.Errorf("the host came back on %s as %s (%s), want %s, host", b.id, id, role, hostID)
	}
	if _, role := me(viewer); role != "guest" {
		t.Errorf("the viewer came back as %q", role)
	}
	if err := chromedp.Do(browser, chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-screen]`)), chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`))); err != nil {
		t.Fatalf("share again: %v", err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for last = probe(viewer); last.Frames < 30; last = probe(viewer) {
		if time.Now().After(deadline) {
			t.Fatalf("the viewer decodes no share on %s 30s after the host shared again: %+v", b.id, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("kill -9 of %s: both pages joined again on %s after %s (viewer's states %v); the share shown again after %s (shared again at %s)",
		a.id, b.id, rejoined.Round(time.Millisecond), states, time.Since(killed).Round(time.Millisecond), rejoined.Round(time.Millisecond))
}

// TestClusterBrowserMemberOnEdge: with --relay-members a Chromium member
// who opens the room's link on node B, whose room is on A, stays on B:
// the page is served there, joins there, sees the host on A in its
// member list, decodes the host's (fake) screen share relayed through
// B's edge, and chats with the host both ways.
func TestClusterBrowserMemberOnEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server, two matinee processes and Chromium")
	}
	exe := testenv.Chromium(t)
	c := newCluster(t)
	c.args = []string{"--relay-members"}
	a := c.addNode("ea")
	b := c.addNode("eb")
	browser := newBrowser(t, exe)
	joinPage(t, browser, a.url+"/r/edge-show", "Host")
	testenv.EventuallyState(t, 20*time.Second, "the room held by "+a.id, func() (bool, string) {
		h := c.leases()["edge-show"]
		return h == a.id, h
	})
	if err := chromedp.Do(browser, chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-screen]`)), chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`))); err != nil {
		t.Fatalf("share: %v", err)
	}
	// The host's page keeps the chat lines it is told of.
	if _, err := chromedp.Run(browser, chromedp.Evaluate[bool](keepChatsJS)); err != nil {
		t.Fatal(err)
	}
	member, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	defer cancel()
	joinPage(t, member, b.url+"/r/edge-show", "Member")
	type state struct {
		Frames int
		Href   string
		State  string
	}
	var last state
	testenv.EventuallyState(t, 30*time.Second, "the member on B decodes the share", func() (bool, string) {
		raw, err := chromedp.Run(member, chromedp.Evaluate[[]byte](screenFramesJS, chromedp.EvalAwaitPromise))
		if err == nil {
			_ = json.Unmarshal(raw, &last)
		}
		return last.Frames >= 30, fmt.Sprintf("%+v %v", last, err)
	})
	if !strings.HasPrefix(last.Href, b.url+"/r/edge-show") {
		t.Errorf("the member watches at %s, want on %s where it joined", last.Href, b.url)
	}
	c.waitMetric(t, b, `matinee_relay_members{side="edge"}`, 1, 5*time.Second)
	c.waitMetric(t, a, `matinee_relay_members{side="origin"}`, 1, 5*time.Second)
	c.waitMetric(t, b, pipesIn, 1, 5*time.Second)
	if rs := c.localRooms(b); len(rs) != 0 {
		t.Errorf("rooms on %s: %v", b.id, rs)
	}
	t.Logf("member who opened %s/r/edge-show decodes the share from %s there: %d frames", b.url, a.id, last.Frames)

	// Presence and chat across the nodes.
	names, err := chromedp.Run(member, chromedp.Evaluate[[]string](`[...window.__matinee.client.peers.values()].map((p) => p.name)`))
	if err != nil || !slices.Contains(names, "Host") {
		t.Errorf("the member's peers: %v (%v), want Host", names, err)
	}
	if _, err := chromedp.Run(member, chromedp.Evaluate[bool](`(async () => { await window.__matinee.client.request('chat', {text: 'hello from B'}); return true; })()`, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("chat from the member: %v", err)
	}
	testenv.EventuallyState(t, 5*time.Second, "the host on A reads the member's chat", func() (bool, string) {
		chats, err := chromedp.Run(browser, chromedp.Evaluate[[]string](`window.__chats`))
		return err == nil && slices.Contains(chats, "hello from B"), fmt.Sprintf("%v %v", chats, err)
	})
}

// TestClusterPageStaysWhenNoNodeAnswers: a page whose node stops
// answering looks for another node of the cluster that answers before it
// moves. With none answering (here every node is down; for a person, more
// often their own network), the page stays where it is, reconnecting,
// rather than ending on the browser's error page at a dead node, and is
// back in the room when its node returns.
func TestClusterPageStaysWhenNoNodeAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server, two matinee processes and Chromium")
	}
	exe := testenv.Chromium(t)
	c := newCluster(t)
	a := c.addNode("la")
	b := c.addNode("lb")
	browser := newBrowser(t, exe)
	joinPage(t, browser, b.url+"/r/lonely", "Ana")
	type view struct {
		Href, State string
		Attempt     int
		Nodes       []string
	}
	read := func() (view, error) {
		var v view
		raw, err := chromedp.Run(browser, chromedp.Evaluate[[]byte](`(() => { const c = window.__matinee?.client;
		  return {href: location.href, state: c?.state || '', attempt: c?._attempt || 0, nodes: c?.nodes || []}; })()`))
		if err == nil {
			err = json.Unmarshal(raw, &v)
		}
		return v, err
	}
	testenv.EventuallyState(t, 15*time.Second, "Ana in the room on lb, told of la", func() (bool, string) {
		v, err := read()
		return err == nil && v.State == "joined" && slices.Contains(v.Nodes, a.url), fmt.Sprintf("%+v %v", v, err)
	})

	// Both nodes go: the page's looks for another node find none.
	a.kill()
	b.kill()
	testenv.EventuallyState(t, 20*time.Second, "the page reconnecting past the attempts that start a move", func() (bool, string) {
		v, err := read()
		return err == nil && v.State == "reconnecting" && v.Attempt >= 4, fmt.Sprintf("%+v %v", v, err)
	})
	testenv.Hold(t, 2*time.Second, "the page stays on lb", func() (bool, string) {
		v, err := read()
		return err == nil && strings.HasPrefix(v.Href, b.url+"/r/lonely"), fmt.Sprintf("%+v %v", v, err)
	})

	// lb comes back: the page is in the room again, where it was.
	c.start(b)
	testenv.EventuallyState(t, 30*time.Second, "Ana back in the room on lb", func() (bool, string) {
		v, err := read()
		return err == nil && v.State == "joined" && strings.HasPrefix(v.Href, b.url+"/r/lonely"), fmt.Sprintf("%+v %v", v, err)
	})
}
