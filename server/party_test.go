package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/room"
)

// eventLog keeps every notification a client receives, so a test can
// wait for one without losing the others.
type eventLog struct {
	c    *testpeer.Client
	mu   sync.Mutex
	evs  []testpeer.Event
	used []bool
	sig  chan struct{}
}

func record(c *testpeer.Client) *eventLog {
	r := &eventLog{c: c, sig: make(chan struct{}, 1)}
	go func() {
		for {
			select {
			case ev := <-c.Events:
				r.mu.Lock()
				r.evs = append(r.evs, ev)
				r.used = append(r.used, false)
				r.mu.Unlock()
				select {
				case r.sig <- struct{}{}:
				default:
				}
			case <-c.Done():
				return
			}
		}
	}()
	return r
}

// next returns the first unused notification of method for which match
// (if given) holds.
func (r *eventLog) next(t *testing.T, method string, match func(json.RawMessage) bool) json.RawMessage {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		for i, ev := range r.evs {
			if !r.used[i] && ev.Method == method && (match == nil || match(ev.Params)) {
				r.used[i] = true
				r.mu.Unlock()
				return ev.Params
			}
		}
		r.mu.Unlock()
		select {
		case <-r.sig:
		case <-deadline:
			t.Fatalf("no %s notification", method)
		}
	}
}

// all returns every notification of method so far.
func (r *eventLog) all(method string) []json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []json.RawMessage
	for _, ev := range r.evs {
		if ev.Method == method {
			out = append(out, ev.Params)
		}
	}
	return out
}

type joined struct {
	PeerID   string             `json:"peerId"`
	Role     string             `json:"role"`
	Identity string             `json:"identity"`
	Chat     []room.ChatMessage `json:"chat"`
	Playback room.PlaybackState `json:"playback"`
	Sync     room.SyncParams    `json:"sync"`
	Peers    []room.PeerInfo    `json:"peers"`
	RoomInfo room.RoomInfo      `json:"roomInfo"`
	Server   float64            `json:"serverTime"`
}

type member struct {
	c   *testpeer.Client
	rec *eventLog
	res joined
}

func (m *member) call(t *testing.T, method string, params, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.c.Call(ctx, method, params, out); err != nil {
		t.Fatalf("%s %v: %v", method, params, err)
	}
}

func (m *member) callErr(t *testing.T, method string, params any, code int, contains string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := m.c.Call(ctx, method, params, nil)
	var re *testpeer.RPCError
	if !errors.As(err, &re) || re.Code != code || !strings.Contains(re.Message, contains) {
		t.Fatalf("%s %v: %v, want error %d containing %q", method, params, err, code, contains)
	}
}

func joinParty(t *testing.T, ws string, params map[string]any) *member {
	t.Helper()
	c := dial(t, ws, testpeer.Options{})
	m := &member{c: c, rec: record(c)}
	m.call(t, "join", params, &m.res)
	return m
}

func nowMs() float64 { return float64(time.Now().UnixMicro()) / 1000 }

func TestChatOrderAndHistory(t *testing.T) {
	e := startAPI(t, func(c *config.Config) { c.ChatRate = 0; c.ChatHistory = 50 })
	const each = 30
	ms := []*member{
		joinParty(t, e.ws, map[string]any{"room": "chat", "name": "A"}),
		joinParty(t, e.ws, map[string]any{"room": "chat", "name": "B"}),
		joinParty(t, e.ws, map[string]any{"room": "chat", "name": "C"}),
	}
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for k := 0; k < each; k++ {
				if err := m.c.Call(ctx, "chat", map[string]any{"text": fmt.Sprintf("%c%d", 'A'+i, k)}, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	seqs := make([][]string, len(ms))
	for i, m := range ms {
		for k := 0; k < each*len(ms); k++ {
			var p struct {
				Message room.ChatMessage `json:"message"`
			}
			_ = json.Unmarshal(m.rec.next(t, "chat", nil), &p)
			if p.Message.Seq != int64(k+1) {
				t.Fatalf("member %d: message %d has seq %d", i, k, p.Message.Seq)
			}
			seqs[i] = append(seqs[i], p.Message.Text)
		}
	}
	for i := 1; i < len(ms); i++ {
		if !slices.Equal(seqs[0], seqs[i]) {
			t.Fatalf("member %d saw another order:\n%v\n%v", i, seqs[0], seqs[i])
		}
	}
	// Each sender's messages keep their order.
	for i := range ms {
		k := 0
		for _, text := range seqs[0] {
			if text[0] == byte('A'+i) {
				if text != fmt.Sprintf("%c%d", 'A'+i, k) {
					t.Fatalf("sender %d out of order at %s", i, text)
				}
				k++
			}
		}
	}
	// A late joiner gets the last 50, in the same order, then the live ones.
	late := joinParty(t, e.ws, map[string]any{"room": "chat", "name": "Late"})
	if len(late.res.Chat) != 50 || late.res.Chat[0].Seq != 41 || late.res.Chat[49].Seq != 90 {
		t.Fatalf("history: %d messages", len(late.res.Chat))
	}
	for k, msg := range late.res.Chat {
		if msg.Text != seqs[0][40+k] || msg.Name == "" || msg.PeerID == "" || msg.At == 0 {
			t.Fatalf("history[%d] = %+v, want text %s", k, msg, seqs[0][40+k])
		}
	}
	var sent struct {
		Message room.ChatMessage `json:"message"`
	}
	late.call(t, "chat", map[string]any{"text": "hello all"}, &sent)
	if sent.Message.Seq != 91 || sent.Message.Name != "Late" {
		t.Fatalf("late's message %+v", sent.Message)
	}
	for _, m := range append(ms, late) {
		m.rec.next(t, "chat", func(p json.RawMessage) bool { return strings.Contains(string(p), "hello all") })
	}
}

func TestChatLimitsAndReactions(t *testing.T) {
	e := startAPI(t, func(c *config.Config) {
		c.ChatMaxLength = 10
		c.ChatRate = 1
		c.ChatBurst = 2
		c.ReactionRate = 1
		c.ReactionBurst = 1
	})
	r := dialRaw(t, e.ws)
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":1,"method":"chat","params":{"text":"hi"}}`), 1001, "join")
	a := joinParty(t, e.ws, map[string]any{"room": "lim", "name": "A"})
	b := joinParty(t, e.ws, map[string]any{"room": "lim", "name": "B"})
	a.callErr(t, "chat", map[string]any{"text": "12345678901"}, -32602, `"text" is 11 characters; the limit is 10`)
	a.callErr(t, "chat", map[string]any{"text": "   "}, -32602, `"text" is required`)
	a.callErr(t, "chat", map[string]any{"text": 5}, -32602, `"text"`)
	a.call(t, "chat", map[string]any{"text": "one"}, nil)
	a.call(t, "chat", map[string]any{"text": "two"}, nil)
	a.callErr(t, "chat", map[string]any{"text": "three"}, 1008, "too fast")
	// B has its own budget.
	b.call(t, "chat", map[string]any{"text": "mine"}, nil)

	a.call(t, "react", map[string]any{"emoji": "🍿"}, nil)
	a.callErr(t, "react", map[string]any{"emoji": "👏"}, 1008, "too fast")
	a.callErr(t, "react", map[string]any{}, -32602, `"emoji"`)
	b.callErr(t, "react", map[string]any{"emoji": "two words"}, -32602, `"emoji"`)
	p := b.rec.next(t, "reaction", nil)
	if !strings.Contains(string(p), "🍿") || !strings.Contains(string(p), a.res.PeerID) {
		t.Fatalf("reaction %s", p)
	}
	a.rec.next(t, "reaction", nil) // the sender sees its own too
}

func TestTimeMethod(t *testing.T) {
	e := startAPI(t, nil)
	c := dial(t, e.ws, testpeer.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Before join: the NTP-style probe works at once.
	best := math.Inf(1)
	var offset float64
	for i := 0; i < 8; i++ {
		var res struct {
			ServerTime float64 `json:"serverTime"`
			ClientTime float64 `json:"clientTime"`
		}
		t0 := nowMs()
		if err := c.Call(ctx, "time", map[string]any{"clientTime": t0}, &res); err != nil {
			t.Fatal(err)
		}
		t3 := nowMs()
		if res.ClientTime != t0 || res.ServerTime < t0 || res.ServerTime > t3 {
			t.Fatalf("sample %d: t0 %f server %f t3 %f echo %f", i, t0, res.ServerTime, t3, res.ClientTime)
		}
		if rtt := t3 - t0; rtt < best {
			best, offset = rtt, res.ServerTime-(t0+t3)/2
		}
	}
	// Same machine, same clock: the best sample's offset is within its
	// half round trip of zero.
	if math.Abs(offset) > best/2+0.5 {
		t.Fatalf("offset %f ms with rtt %f ms", offset, best)
	}
}

func TestPlaybackProtocol(t *testing.T) {
	e := startAPI(t, nil)
	e.ok("POST", "/api/rooms", map[string]any{"name": "film"}, 201, nil)
	var tok struct {
		Token string `json:"token"`
	}
	e.ok("POST", "/api/rooms/film/tokens", map[string]any{"identity": "vee", "name": "Vee", "role": "viewer"}, 201, &tok)
	h := joinParty(t, e.ws, map[string]any{"room": "film", "name": "Host"})
	g := joinParty(t, e.ws, map[string]any{"room": "film", "name": "Guest"})
	v := joinParty(t, e.ws, map[string]any{"room": "film", "token": tok.Token})
	if h.res.Role != "host" || g.res.Role != "guest" || v.res.Role != "viewer" {
		t.Fatalf("roles %s %s %s", h.res.Role, g.res.Role, v.res.Role)
	}
	if s := h.res.Sync; s.NudgeThresholdMs != 40 || s.SeekThresholdMs != 400 || s.MaxNudge != 0.1 || s.ReportIntervalMs != 1000 {
		t.Fatalf("sync params %+v", s)
	}
	if h.res.Playback.URL != "" || !h.res.Playback.Paused || h.res.Playback.Rate != 1 {
		t.Fatalf("initial playback %+v", h.res.Playback)
	}
	h.callErr(t, "playback", map[string]any{"action": "play"}, 1007, "no video")
	g.callErr(t, "playback", map[string]any{"action": "load", "url": "/media/a.mp4"}, 1005, "only the host")
	h.callErr(t, "playback", map[string]any{"action": "load", "url": "file:///etc/passwd"}, -32602, `"url"`)
	h.callErr(t, "playback", map[string]any{}, -32602, `"action"`)

	type stateMsg struct {
		State  room.PlaybackState `json:"state"`
		Action string             `json:"action"`
		By     string             `json:"by"`
	}
	// step runs a command and checks that everyone gets the same state.
	step := func(action string, params map[string]any) room.PlaybackState {
		t.Helper()
		params["action"] = action
		before := nowMs()
		var res struct {
			State room.PlaybackState `json:"state"`
		}
		h.call(t, "playback", params, &res)
		after := nowMs()
		if res.State.UpdatedAt < before || res.State.UpdatedAt > after {
			t.Fatalf("%s: updatedAt %f outside [%f, %f]", action, res.State.UpdatedAt, before, after)
		}
		for _, m := range []*member{h, g, v} {
			var n stateMsg
			_ = json.Unmarshal(m.rec.next(t, "playbackState", nil), &n)
			if n.Action != action || n.By != h.res.PeerID || n.State.Version != res.State.Version || n.State.UpdatedAt != res.State.UpdatedAt || n.State.Position != res.State.Position {
				t.Fatalf("%s: notified %+v, result %+v", action, n, res.State)
			}
		}
		return res.State
	}
	s := step("load", map[string]any{"url": "/media/a.mp4", "title": "A"})
	if s.URL != "/media/a.mp4" || !s.Paused || s.Position != 0 || s.Title != "A" {
		t.Fatalf("load %+v", s)
	}
	s = step("play", map[string]any{})
	if s.Paused || s.Waiting {
		t.Fatalf("play %+v", s)
	}
	time.Sleep(100 * time.Millisecond)
	s = step("pause", map[string]any{})
	if !s.Paused || s.Position < 0.09 || s.Position > 2 {
		t.Fatalf("pause after ~100ms: %+v", s)
	}
	s = step("seek", map[string]any{"position": 30})
	if s.Position != 30 || !s.Paused {
		t.Fatalf("seek %+v", s)
	}
	s = step("rate", map[string]any{"rate": 1.5})
	if s.Rate != 1.5 {
		t.Fatalf("rate %+v", s)
	}
	s = step("play", map[string]any{"position": 31})
	if s.Position != 31 || s.Paused {
		t.Fatalf("play at 31 %+v", s)
	}
	h.callErr(t, "playback", map[string]any{"action": "rate", "rate": 10}, -32602, `"rate" must be 0.25-4`)
	h.callErr(t, "playback", map[string]any{"action": "seek", "position": "x"}, -32602, `"position"`)

	// Open control: guests may control, viewers still not.
	g.callErr(t, "updateRoom", map[string]any{"openControl": true}, 1005, "only the host")
	h.callErr(t, "updateRoom", map[string]any{"maxPeers": 3}, -32602, `"maxPeers"`)
	var upd struct {
		Room room.RoomInfo `json:"room"`
	}
	h.call(t, "updateRoom", map[string]any{"openControl": true}, &upd)
	if !upd.Room.OpenControl {
		t.Fatalf("updateRoom %+v", upd)
	}
	g.rec.next(t, "roomUpdated", func(p json.RawMessage) bool { return strings.Contains(string(p), `"openControl":true`) })
	g.call(t, "playback", map[string]any{"action": "pause"}, nil)
	v.callErr(t, "playback", map[string]any{"action": "play"}, 1005, "viewers")
	var n stateMsg
	_ = json.Unmarshal(h.rec.next(t, "playbackState", func(p json.RawMessage) bool { return strings.Contains(string(p), g.res.PeerID) }), &n)
	if n.Action != "pause" || !n.State.Paused {
		t.Fatalf("guest's pause: %+v", n)
	}

	// A late joiner gets the state.
	late := joinParty(t, e.ws, map[string]any{"room": "film", "name": "Late"})
	if late.res.Playback.Version != n.State.Version || late.res.Playback.URL != "/media/a.mp4" || !late.res.Playback.Paused {
		t.Fatalf("late joiner's playback %+v", late.res.Playback)
	}
	if late.res.Server < nowMs()-5000 {
		t.Fatalf("serverTime %f", late.res.Server)
	}
	// The state shows in the API too.
	var detail roomJSON
	e.ok("GET", "/api/rooms/film", nil, 200, &detail)
	if detail.Playback == nil || detail.Playback.Version != n.State.Version {
		t.Fatalf("API playback %+v", detail.Playback)
	}
}

func TestWaitForEveryone(t *testing.T) {
	e := startAPI(t, func(c *config.Config) { c.SyncWaitTimeout = time.Second })
	h := joinParty(t, e.ws, map[string]any{"room": "wait", "name": "Host"})
	g := joinParty(t, e.ws, map[string]any{"room": "wait", "name": "Guest"})
	g2 := joinParty(t, e.ws, map[string]any{"room": "wait", "name": "Guest2"})
	if !h.res.RoomInfo.WaitForEveryone {
		t.Fatal("wait for everyone is off by default")
	}
	h.call(t, "playback", map[string]any{"action": "load", "url": "https://example.com/v.mp4"}, nil)
	h.call(t, "playback", map[string]any{"action": "play", "position": 10}, nil)
	type stateMsg struct {
		State  room.PlaybackState `json:"state"`
		Action string             `json:"action"`
	}
	waitState := func(m *member, action string) stateMsg {
		t.Helper()
		var n stateMsg
		_ = json.Unmarshal(m.rec.next(t, "playbackState", func(p json.RawMessage) bool {
			return strings.Contains(string(p), `"action":"`+action+`"`)
		}), &n)
		return n
	}
	time.Sleep(200 * time.Millisecond)
	// The guest stalls at 10.1 s: the room holds there for everyone.
	g.call(t, "playbackReport", map[string]any{"buffering": true, "position": 10.1, "at": nowMs()}, nil)
	for _, m := range []*member{h, g, g2} {
		n := waitState(m, "wait")
		if !n.State.Waiting || n.State.Paused || n.State.Position != 10.1 || !slices.Equal(n.State.WaitingFor, []string{g.res.PeerID}) {
			t.Fatalf("wait: %+v", n.State)
		}
		p := m.rec.next(t, "peerUpdated", func(p json.RawMessage) bool { return strings.Contains(string(p), `"buffering":true`) })
		if !strings.Contains(string(p), g.res.PeerID) {
			t.Fatalf("presence %s", p)
		}
	}
	// A second buffering member joins the list.
	g2.call(t, "playbackReport", map[string]any{"buffering": true}, nil)
	n := waitState(h, "wait")
	if len(n.State.WaitingFor) != 2 || n.State.Position != 10.1 {
		t.Fatalf("two waiting: %+v", n.State)
	}
	var detail roomJSON
	e.ok("GET", "/api/rooms/wait", nil, 200, &detail)
	if !detail.Playback.Waiting || !detail.Participants[1].Buffering {
		t.Fatalf("API during the wait: %+v", detail)
	}
	// The host pausing meanwhile ends the hold, playing again resumes it.
	g.call(t, "playbackReport", map[string]any{"buffering": false}, nil)
	n = waitState(h, "wait")
	if !slices.Equal(n.State.WaitingFor, []string{g2.res.PeerID}) {
		t.Fatalf("one left: %+v", n.State)
	}
	// g2 leaves while buffering: nobody to wait for, the room goes on
	// from where it held.
	before := nowMs()
	g2.c.Close()
	n = waitState(h, "resume")
	if n.State.Waiting || n.State.Position != 10.1 || n.State.UpdatedAt < before {
		t.Fatalf("resume: %+v", n.State)
	}
	if got := n.State.PositionAt(n.State.UpdatedAt + 1000); math.Abs(got-11.1) > 1e-9 {
		t.Fatalf("position a second after resume: %f", got)
	}

	// Off: buffering holds nothing.
	h.call(t, "updateRoom", map[string]any{"waitForEveryone": false}, nil)
	g.call(t, "playbackReport", map[string]any{"buffering": true}, nil)
	g.rec.next(t, "peerUpdated", func(p json.RawMessage) bool { return strings.Contains(string(p), `"buffering":true`) })
	var st struct {
		State room.PlaybackState `json:"state"`
	}
	h.call(t, "playback", map[string]any{"action": "seek", "position": 50}, &st)
	if st.State.Waiting {
		t.Fatalf("held with wait-for-everyone off: %+v", st.State)
	}
	// Turned on while the guest buffers: the room holds at once...
	h.call(t, "updateRoom", map[string]any{"waitForEveryone": true}, nil)
	began := time.Now()
	n = waitState(h, "wait")
	if !n.State.Waiting {
		t.Fatalf("no hold after turning it on: %+v", n.State)
	}
	// ...and gives up on the guest after the 1 s wait timeout.
	n = waitState(h, "resume")
	if d := time.Since(began); d < 900*time.Millisecond || d > 3*time.Second || n.State.Waiting {
		t.Fatalf("timeout resume after %v: %+v", d, n.State)
	}
	// Still buffering, but no longer waited for; once it catches up and
	// stalls again it is.
	g.call(t, "playbackReport", map[string]any{"buffering": false}, nil)
	g.call(t, "playbackReport", map[string]any{"buffering": true}, nil)
	waitState(h, "wait")
	// Pausing ends the hold.
	h.call(t, "playback", map[string]any{"action": "pause"}, &st)
	if st.State.Waiting || !st.State.Paused {
		t.Fatalf("pause during a hold: %+v", st.State)
	}
}

func TestPlaybackReportsMeasureSync(t *testing.T) {
	e := startAPI(t, nil)
	h := joinParty(t, e.ws, map[string]any{"room": "sync", "name": "Host"})
	g := joinParty(t, e.ws, map[string]any{"room": "sync", "name": "Guest"})
	var st struct {
		State room.PlaybackState `json:"state"`
	}
	h.call(t, "playback", map[string]any{"action": "load", "url": "/media/x.mp4"}, nil)
	h.call(t, "playback", map[string]any{"action": "play", "position": 5}, &st)
	at := st.State.UpdatedAt + 2000
	want := st.State.PositionAt(at)
	h.call(t, "playbackReport", map[string]any{"position": want, "at": at, "version": st.State.Version}, nil)
	g.call(t, "playbackReport", map[string]any{"position": want - 0.080, "at": at}, nil)
	g.callErr(t, "playbackReport", map[string]any{"position": 1}, -32602, `"at"`)
	g.callErr(t, "playbackReport", map[string]any{"position": -1, "at": at}, -32602, `"position"`)
	var detail roomJSON
	e.ok("GET", "/api/rooms/sync", nil, 200, &detail)
	errs := map[string]float64{}
	for _, p := range detail.Participants {
		if p.Playback == nil || p.Playback.ErrorMs == nil {
			t.Fatalf("%s has no measured error: %+v", p.Name, p.Playback)
		}
		errs[p.Name] = *p.Playback.ErrorMs
	}
	if math.Abs(errs["Host"]) > 0.01 || math.Abs(errs["Guest"]+80) > 0.01 {
		t.Fatalf("errors %v, want 0 and -80 ms", errs)
	}
	rm, _ := e.srv.Rooms().Room("sync")
	if reps := rm.SyncReports(); len(reps) != 2 || reps[1].PeerID != g.res.PeerID {
		t.Fatalf("SyncReports %+v", reps)
	}
	// A report about an older state version is kept but not compared.
	old := st.State.Version - 1
	g.call(t, "playbackReport", map[string]any{"position": want, "at": at, "version": old}, nil)
	var again roomJSON
	e.ok("GET", "/api/rooms/sync", nil, 200, &again)
	if again.Participants[1].Playback.ErrorMs != nil {
		t.Fatal("a stale report was compared")
	}
}

func TestHostControls(t *testing.T) {
	e := startAPI(t, nil)
	h := joinParty(t, e.ws, map[string]any{"room": "ctl", "name": "Host"})
	g1 := joinParty(t, e.ws, map[string]any{"room": "ctl", "name": "G1"})
	g2 := joinParty(t, e.ws, map[string]any{"room": "ctl", "name": "G2"})
	peer := func(m *member) map[string]any { return map[string]any{"peerId": m.res.PeerID} }

	g1.callErr(t, "setRole", map[string]any{"peerId": g2.res.PeerID, "role": "viewer"}, 1005, "only the host")
	g1.callErr(t, "kick", peer(g2), 1005, "only the host")
	g1.callErr(t, "mute", peer(g2), 1005, "only the host")
	g1.callErr(t, "transferHost", peer(g2), 1005, "only the host")
	h.callErr(t, "setRole", map[string]any{"peerId": "pe-nobody", "role": "viewer"}, 1004, "pe-nobody")
	h.callErr(t, "setRole", map[string]any{"peerId": h.res.PeerID, "role": "guest"}, 1007, "transferHost")
	h.callErr(t, "setRole", map[string]any{"peerId": g2.res.PeerID, "role": "king"}, -32602, `"role"`)
	h.callErr(t, "kick", map[string]any{}, -32602, `"peerId"`)

	// g2 becomes a viewer: everyone hears, and it may no longer publish.
	h.call(t, "setRole", map[string]any{"peerId": g2.res.PeerID, "role": "viewer"}, nil)
	for _, m := range []*member{h, g1, g2} {
		m.rec.next(t, "peerUpdated", func(p json.RawMessage) bool {
			return strings.Contains(string(p), g2.res.PeerID) && strings.Contains(string(p), `"role":"viewer"`)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src, err := testpeer.NewAudioSource("a", "s")
	if err != nil {
		t.Fatal(err)
	}
	var re *testpeer.RPCError
	if _, err := g2.c.Publish(ctx, &testpeer.Track{Track: src.Track}); !errors.As(err, &re) || re.Code != 1005 {
		t.Fatalf("viewer publish: %v", err)
	}
	// Host mute: the target is told.
	var muted struct {
		ProducerIDs []string `json:"producerIds"`
	}
	h.call(t, "mute", map[string]any{"peerId": g1.res.PeerID, "kind": "all"}, &muted)
	if p := g1.rec.next(t, "muted", nil); !strings.Contains(string(p), `"kind":"all"`) || !strings.Contains(string(p), h.res.PeerID) {
		t.Fatalf("muted %s", p)
	}
	// Host goes to g1; the old host is a guest now.
	h.call(t, "transferHost", peer(g1), nil)
	g2.rec.next(t, "peerUpdated", func(p json.RawMessage) bool {
		return strings.Contains(string(p), g1.res.PeerID) && strings.Contains(string(p), `"role":"host"`)
	})
	g2.rec.next(t, "peerUpdated", func(p json.RawMessage) bool {
		return strings.Contains(string(p), h.res.PeerID) && strings.Contains(string(p), `"role":"guest"`)
	})
	h.callErr(t, "kick", peer(g2), 1005, "only the host")
	// The new host kicks the old one.
	g1.call(t, "kick", map[string]any{"peerId": h.res.PeerID, "reason": "bye"}, nil)
	if p := h.rec.next(t, "disconnected", nil); !strings.Contains(string(p), "bye") {
		t.Fatalf("kicked %s", p)
	}
	g2.rec.next(t, "peerLeft", func(p json.RawMessage) bool { return strings.Contains(string(p), h.res.PeerID) })
	// Guests share unless the host says otherwise.
	g3 := joinParty(t, e.ws, map[string]any{"room": "ctl", "name": "G3"})
	g1.call(t, "updateRoom", map[string]any{"guestsCanShare": false}, nil)
	src2, _ := testpeer.NewAudioSource("b", "s")
	if _, err := g3.c.Publish(ctx, &testpeer.Track{Track: src2.Track}); !errors.As(err, &re) || re.Code != 1005 {
		t.Fatalf("guest publish with sharing off: %v", err)
	}
	// The host leaves: the first guest (g3) takes over, not the viewer g2.
	g1.call(t, "leave", nil, nil)
	p := g2.rec.next(t, "peerUpdated", func(p json.RawMessage) bool {
		return strings.Contains(string(p), `"role":"host"`) && !strings.Contains(string(p), g1.res.PeerID)
	})
	if !strings.Contains(string(p), g3.res.PeerID) {
		t.Fatalf("new host %s, want g3", p)
	}
}

func TestJoinResponseComesFirst(t *testing.T) {
	e := startAPI(t, func(c *config.Config) { c.ChatRate = 0 })
	spam := joinParty(t, e.ws, map[string]any{"room": "busy", "name": "Spammer"})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := spam.c.Call(ctx, "chat", map[string]any{"text": fmt.Sprint(i)}, nil); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for i := 0; i < 20; i++ {
		conn, _, err := websocket.DefaultDialer.Dial(e.ws, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"busy","name":"n"}}`))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := conn.ReadMessage()
		_ = conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			ID     *int            `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(data, &m) != nil || m.ID == nil || *m.ID != 1 || m.Result == nil {
			t.Fatalf("join %d: first message %s, want the join response", i, data)
		}
	}
}
