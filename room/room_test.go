package room

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/sfu"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newManager returns a manager on a loopback worker, closed at cleanup.
func newManager(t *testing.T, edit func(*Config)) *Manager {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := sfu.NewWorker(ctx, sfu.WorkerConfig{LoopbackOnly: true, ConnectTimeout: 5 * time.Second})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cfg := Config{MaxPeers: 10, OpenRooms: true, TokenKey: DeriveTokenKey("test-key")}
	if edit != nil {
		edit(&cfg)
	}
	m := NewManager(ctx, w, cfg)
	t.Cleanup(func() {
		m.Close()
		_ = w.Close()
		cancel()
	})
	return m
}

// notes is a Notifier that records what it is told.
type notes struct {
	mu     sync.Mutex
	msgs   []note
	reason string
}

type note struct {
	method string
	params any
}

func (n *notes) Notify(method string, params any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.msgs = append(n.msgs, note{method, params})
}

func (n *notes) Disconnect(reason string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.reason = reason
}

func (n *notes) methods() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, m := range n.msgs {
		out = append(out, m.method)
	}
	return out
}

func (n *notes) last(method string) map[string]any {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.msgs) - 1; i >= 0; i-- {
		if n.msgs[i].method == method {
			b, _ := json.Marshal(n.msgs[i].params)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			return m
		}
	}
	return nil
}

func wantCode(t *testing.T, err error, kind Kind, contains string) {
	t.Helper()
	var re *Error
	if !errors.As(err, &re) || re.Kind != kind || !strings.Contains(re.Message, contains) {
		t.Fatalf("got %v, want error %v containing %q", err, kind, contains)
	}
}

func ptr[T any](v T) *T { return &v }

func TestPlaybackCommands(t *testing.T) {
	var s PlaybackState
	s.Rate, s.Paused = 1, true
	wantCode(t, s.apply(PlaybackCommand{Action: "play"}, 1000), KindInvalidState, "no video")
	wantCode(t, s.apply(PlaybackCommand{Action: "load", URL: "javascript:alert(1)"}, 1000), KindInvalidField, `"url"`)
	wantCode(t, s.apply(PlaybackCommand{Action: "load", URL: "//evil.example/x.mp4"}, 1000), KindInvalidField, `"url"`)
	wantCode(t, s.apply(PlaybackCommand{Action: "dance"}, 1000), KindInvalidField, `"action"`)
	if err := s.apply(PlaybackCommand{Action: "load", URL: "/media/film.mp4", Title: " Film "}, 1000); err != nil {
		t.Fatal(err)
	}
	if !s.Paused || s.Position != 0 || s.Rate != 1 || s.Title != "Film" || s.Version != 1 {
		t.Fatalf("after load: %+v", s)
	}
	if err := s.apply(PlaybackCommand{Action: "play"}, 2000); err != nil {
		t.Fatal(err)
	}
	// Playing: 1.5 s later the position is 1.5.
	if got := s.PositionAt(3500); got != 1.5 {
		t.Fatalf("position after 1.5s = %v", got)
	}
	if err := s.apply(PlaybackCommand{Action: "rate", Rate: ptr(2.0)}, 3000); err != nil {
		t.Fatal(err)
	}
	if s.Position != 1 || s.PositionAt(4000) != 3 {
		t.Fatalf("rate 2: %+v at 4000 → %v", s, s.PositionAt(4000))
	}
	wantCode(t, s.apply(PlaybackCommand{Action: "rate", Rate: ptr(9.0)}, 3000), KindInvalidField, `"rate" must be 0.25-4`)
	wantCode(t, s.apply(PlaybackCommand{Action: "rate"}, 3000), KindInvalidField, `"rate" is required`)
	wantCode(t, s.apply(PlaybackCommand{Action: "seek"}, 3000), KindInvalidField, `"position" is required`)
	wantCode(t, s.apply(PlaybackCommand{Action: "seek", Position: ptr(-1.0)}, 3000), KindInvalidField, `"position"`)
	if err := s.apply(PlaybackCommand{Action: "pause"}, 5000); err != nil {
		t.Fatal(err)
	}
	if !s.Paused || s.Position != 5 || s.PositionAt(9000) != 5 {
		t.Fatalf("pause: %+v", s)
	}
	// A pause may carry the controller's exact position.
	if err := s.apply(PlaybackCommand{Action: "pause", Position: ptr(4.9)}, 5100); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(PlaybackCommand{Action: "seek", Position: ptr(60.0)}, 6000); err != nil {
		t.Fatal(err)
	}
	if !s.Paused || s.Position != 60 {
		t.Fatalf("seek while paused: %+v", s)
	}
	if err := s.apply(PlaybackCommand{Action: "play", Position: ptr(61.0)}, 7000); err != nil {
		t.Fatal(err)
	}
	if s.PositionAt(8000) != 63 {
		t.Fatalf("play at 61 with rate 2, 1s later: %v", s.PositionAt(8000))
	}
	v := s.Version
	if err := s.apply(PlaybackCommand{Action: "stop"}, 9000); err != nil {
		t.Fatal(err)
	}
	if s.URL != "" || !s.Paused || s.Version != v+1 {
		t.Fatalf("stop: %+v", s)
	}
	for _, u := range []string{"https://cdn.example/v.m3u8", "http://192.168.1.2:8080/a.webm", "/hls/room/index.m3u8"} {
		if _, err := checkMediaURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestHoldWaitsForEveryone(t *testing.T) {
	s := PlaybackState{URL: "/media/a.mp4", Rate: 1, UpdatedAt: 0, WaitingFor: []string{}}
	// Paused: buffering holds nothing.
	s.Paused = true
	if s.hold([]bufferingMember{{id: "b"}}, true, 1000) {
		t.Fatal("a paused room held")
	}
	s.Paused = false
	// Off: nothing either.
	if s.hold([]bufferingMember{{id: "b"}}, false, 1000) {
		t.Fatal("held with wait-for-everyone off")
	}
	// Playing from 0 at t=0; at t=10s "b" buffers, stuck at 9.8 s: the
	// room freezes where b is.
	if !s.hold([]bufferingMember{{id: "b", pos: ptr(9.8)}}, true, 10000) {
		t.Fatal("no hold")
	}
	if !s.Waiting || s.Position != 9.8 || s.PositionAt(20000) != 9.8 || strings.Join(s.WaitingFor, ",") != "b" {
		t.Fatalf("holding: %+v", s)
	}
	// A second member buffers: the list changes, the position does not.
	if !s.hold([]bufferingMember{{id: "c", pos: ptr(1.0)}, {id: "b", pos: ptr(9.8)}}, true, 11000) || strings.Join(s.WaitingFor, ",") != "b,c" || s.Position != 9.8 {
		t.Fatalf("second buffering: %+v", s)
	}
	if s.hold([]bufferingMember{{id: "b"}, {id: "c"}}, true, 11500) {
		t.Fatal("same set reported a change")
	}
	// All ready at t=12s: playback goes on from 9.8 at 12 s.
	if !s.hold(nil, true, 12000) || s.Waiting || s.UpdatedAt != 12000 || s.PositionAt(13000) != 10.8 {
		t.Fatalf("resume: %+v", s)
	}
	// A buffering member far behind (beyond maxRewind) does not drag the
	// room back.
	s.hold([]bufferingMember{{id: "d", pos: ptr(0.0)}}, true, 14000)
	if s.Position != 11.8 {
		t.Fatalf("far-behind member moved the room to %v", s.Position)
	}
}

func TestBucket(t *testing.T) {
	b := newBucket(2, 3)
	t0 := time.Unix(100, 0)
	for i := 0; i < 3; i++ {
		if ok, _ := b.take(t0); !ok {
			t.Fatalf("burst %d refused", i)
		}
	}
	ok, wait := b.take(t0)
	if ok || wait < 490*time.Millisecond || wait > 510*time.Millisecond {
		t.Fatalf("4th: ok=%v wait=%v, want refused with ~500ms", ok, wait)
	}
	if ok, _ := b.take(t0.Add(500 * time.Millisecond)); !ok {
		t.Fatal("refilled token refused")
	}
	off := newBucket(-1, 1)
	for i := 0; i < 100; i++ {
		if ok, _ := off.take(t0); !ok {
			t.Fatal("unlimited bucket refused")
		}
	}
}

func TestChatLogRing(t *testing.T) {
	l := chatLog{max: 3}
	for i := int64(1); i <= 5; i++ {
		l.add(ChatMessage{Seq: i})
	}
	got := l.list()
	if len(got) != 3 || got[0].Seq != 3 || got[2].Seq != 5 {
		t.Fatalf("ring = %+v", got)
	}
	none := chatLog{}
	none.add(ChatMessage{Seq: 1})
	if len(none.list()) != 0 {
		t.Fatal("a zero-size log kept a message")
	}
}

func TestSlugify(t *testing.T) {
	for in, want := range map[string]string{
		"Movie Night!":           "movie-night",
		"  --Ana's  party--  ":   "ana-s-party",
		"日本語":                    "",
		strings.Repeat("ab", 40): strings.Repeat("ab", 24),
	} {
		if got := slugify(in); got != want {
			t.Errorf("slugify(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCreateRoomIDs(t *testing.T) {
	m := newManager(t, nil)
	a, err := m.CreateRoom(RoomSpec{Name: "Movie Night"})
	if err != nil || a.ID != "movie-night" || !a.Persistent || a.MaxPeers != 10 {
		t.Fatalf("first: %+v %v", a, err)
	}
	b, err := m.CreateRoom(RoomSpec{Name: "Movie Night"})
	if err != nil || b.ID == a.ID || !ValidID(b.ID) || len(b.ID) != 10 {
		t.Fatalf("second gets a fresh id: %+v %v", b, err)
	}
	c, err := m.CreateRoom(RoomSpec{Name: "日本語"})
	if err != nil || len(c.ID) != 10 {
		t.Fatalf("unsluggable name: %+v %v", c, err)
	}
	_, err = m.CreateRoom(RoomSpec{Name: "x", ID: "movie-night"})
	wantCode(t, err, KindConflict, "exists")
	_, err = m.CreateRoom(RoomSpec{Name: "x", ID: "no/slash"})
	wantCode(t, err, KindInvalidField, `"id"`)
	_, err = m.CreateRoom(RoomSpec{Name: " "})
	wantCode(t, err, KindInvalidField, `"name"`)
	_, err = m.CreateRoom(RoomSpec{Name: "x", MaxPeers: ptr(0)})
	wantCode(t, err, KindInvalidField, `"maxPeers"`)
	_, err = m.CreateRoom(RoomSpec{Name: "x", Metadata: json.RawMessage(`[1]`)})
	wantCode(t, err, KindInvalidField, `"metadata"`)
	_, err = m.CreateRoom(RoomSpec{Name: "x", Password: strings.Repeat("p", 129)})
	wantCode(t, err, KindInvalidField, `"password"`)
	d, err := m.CreateRoom(RoomSpec{Name: "d", ID: "Custom_1", Metadata: json.RawMessage(` { "a" : 1 } `), OpenControl: ptr(true), WaitForEveryone: ptr(false)})
	if err != nil || d.ID != "Custom_1" || string(d.Metadata) != `{"a":1}` || !d.OpenControl || d.WaitForEveryone || !d.GuestsCanShare {
		t.Fatalf("explicit: %+v %v", d, err)
	}
}

func TestTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := newManager(t, func(c *Config) { c.Now = clock })
	if _, err := m.CreateRoom(RoomSpec{Name: "a", ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.MintToken("nope", TokenSpec{}); err == nil {
		t.Fatal("token for an unknown room")
	}
	_, _, err := m.MintToken("a", TokenSpec{Role: "admin"})
	wantCode(t, err, KindInvalidField, `"role"`)
	_, _, err = m.MintToken("a", TokenSpec{Identity: "has space"})
	wantCode(t, err, KindInvalidField, `"identity"`)
	_, _, err = m.MintToken("a", TokenSpec{TTL: 31 * 24 * time.Hour})
	wantCode(t, err, KindInvalidField, `"ttl"`)
	tok, claims, err := m.MintToken("a", TokenSpec{Identity: "ana@example", Name: "Ana", Role: RoleViewer, TTL: time.Hour})
	if err != nil || claims.ExpiresAt.Time != now.Add(time.Hour) {
		t.Fatal(err, claims)
	}
	c, err := m.VerifyToken("a", tok)
	if err != nil || c.Identity != "ana@example" || c.Role != RoleViewer || c.Name != "Ana" {
		t.Fatalf("verify: %+v %v", c, err)
	}
	_, err = m.VerifyToken("b", tok)
	wantCode(t, err, KindForbidden, "another room")

	parts := strings.Split(tok, ".")
	sig := []byte(parts[2])
	sig[3] ^= 1
	_, err = m.VerifyToken("a", parts[0]+"."+parts[1]+"."+string(sig))
	wantCode(t, err, KindForbidden, "invalid token")
	// A payload edited to claim host keeps the old signature.
	_, err = m.VerifyToken("a", parts[0]+"."+strings.TrimRight(parts[1], "=")+"x."+parts[2])
	wantCode(t, err, KindForbidden, "invalid token")
	_, err = m.VerifyToken("a", "eyJhbGciOiJub25lIn0.eyJyb29tIjoiYSJ9.")
	wantCode(t, err, KindForbidden, "invalid token")
	other := newManager(t, func(c *Config) { c.TokenKey = DeriveTokenKey("another-key"); c.Now = clock })
	_, err = other.VerifyToken("a", tok)
	wantCode(t, err, KindForbidden, "signature")

	mu.Lock()
	now = now.Add(time.Hour + 10*time.Second)
	mu.Unlock()
	_, err = m.VerifyToken("a", tok)
	wantCode(t, err, KindForbidden, "expired")
	if re := err.(*Error); re.Reason != ReasonTokenExpired {
		t.Fatalf("reason = %v", re.Reason)
	}
}

func TestJoinRolesPasswordsAndHost(t *testing.T) {
	m := newManager(t, nil)
	if _, err := m.CreateRoom(RoomSpec{Name: "p", ID: "p", Password: "sesame"}); err != nil {
		t.Fatal(err)
	}
	var n1, n2, n3, n4 notes
	_, _, err := m.Join("p", JoinOptions{Name: "A"}, &n1)
	wantCode(t, err, KindForbidden, "needs a password")
	_, _, err = m.Join("p", JoinOptions{Name: "A", Password: "nope"}, &n1)
	wantCode(t, err, KindForbidden, "wrong password")
	a, res, err := m.Join("p", JoinOptions{Name: "A", Password: "sesame"}, &n1)
	if err != nil || res.Role != RoleHost || res.Identity != a.ID() || !res.RoomInfo.HasPassword {
		t.Fatalf("first joiner: %+v %v", res, err)
	}
	tok, _, _ := m.MintToken("p", TokenSpec{Identity: "vic", Role: RoleViewer})
	v, res, err := m.Join("p", JoinOptions{Name: "ignored", Token: tok}, &n2)
	if err != nil || res.Role != RoleViewer || res.Identity != "vic" {
		t.Fatalf("token joiner (no password needed): %+v %v", res, err)
	}
	g, _, err := m.Join("p", JoinOptions{Name: "G", Password: "sesame"}, &n3)
	if err != nil || g.Role() != RoleGuest {
		t.Fatal(err)
	}
	// The same identity again replaces the old connection.
	v2, _, err := m.Join("p", JoinOptions{Token: tok, Name: "Vic"}, &n4)
	if err != nil {
		t.Fatal(err)
	}
	if n2.reason == "" || !strings.Contains(n2.reason, "another connection") {
		t.Fatalf("replaced member's reason %q", n2.reason)
	}
	_ = v
	// The host leaves: the guest becomes host, not the earlier viewer.
	a.Leave()
	if g.Role() != RoleHost || v2.Role() != RoleViewer {
		t.Fatalf("after host left: guest %s, viewer %s", g.Role(), v2.Role())
	}
	if p := n4.last("peerUpdated"); p == nil || p["peer"].(map[string]any)["id"] != g.ID() {
		t.Fatalf("peerUpdated = %v", p)
	}
	// Locked: nobody new, password or not.
	if _, err := m.UpdateRoom("p", RoomUpdate{Locked: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	_, _, err = m.Join("p", JoinOptions{Name: "Z", Password: "sesame"}, &notes{})
	wantCode(t, err, KindForbidden, "locked")
	if p := n3.last("roomUpdated"); p == nil || p["room"].(map[string]any)["locked"] != true {
		t.Fatalf("roomUpdated = %v", p)
	}
	// The API room stays when empty; a link room does not.
	g.Leave()
	v2.Leave()
	if _, ok := m.Room("p"); !ok {
		t.Fatal("API room closed when empty")
	}
	l, _, err := m.Join("link", JoinOptions{Name: "L"}, &notes{})
	if err != nil {
		t.Fatal(err)
	}
	l.Leave()
	if _, ok := m.Room("link"); ok {
		t.Fatal("link room stayed after its last member")
	}
}

func TestChatAndLimits(t *testing.T) {
	m := newManager(t, func(c *Config) { c.Chat = ChatConfig{History: 3, MaxLength: 5, Rate: 1, Burst: 2} })
	var n1, n2 notes
	a, _, _ := m.Join("c", JoinOptions{Name: "A"}, &n1)
	if _, err := a.Chat("hi"); err != nil {
		t.Fatal(err)
	}
	_, err := a.Chat("toolong")
	wantCode(t, err, KindInvalidField, `"text" is 7 characters; the limit is 5`)
	_, err = a.Chat(" \x00 ")
	wantCode(t, err, KindInvalidField, `"text" is required`)
	if _, err := a.Chat("two"); err != nil {
		t.Fatal(err)
	}
	_, err = a.Chat("three")
	wantCode(t, err, KindRateLimited, "too fast")
	b, res, _ := m.Join("c", JoinOptions{Name: "B"}, &n2)
	if len(res.Chat) != 2 || res.Chat[0].Text != "hi" || res.Chat[1].Seq != 2 {
		t.Fatalf("history = %+v", res.Chat)
	}
	wantCode(t, b.React("a b"), KindInvalidField, `"emoji"`)
	if err := b.React("🎉"); err != nil {
		t.Fatal(err)
	}
	if p := n1.last("reaction"); p == nil || p["emoji"] != "🎉" || p["peerId"] != b.ID() {
		t.Fatalf("reaction = %v", p)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	path := t.TempDir() + "/rooms.json"
	m := newManager(t, func(c *Config) { c.StorePath = path })
	if _, err := m.CreateRoom(RoomSpec{Name: "Kept", Password: "pw", MaxPeers: ptr(7), Metadata: json.RawMessage(`{"k":"v"}`), GuestsCanShare: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateRoom(RoomSpec{Name: "Gone"}); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteRoom("gone"); err != nil {
		t.Fatal(err)
	}
	// A link room is never stored.
	l, _, _ := m.Join("link", JoinOptions{Name: "L"}, &notes{})
	defer l.Leave()

	m2 := newManager(t, func(c *Config) { c.StorePath = path })
	if err := m2.LoadRooms(); err != nil {
		t.Fatal(err)
	}
	rs := m2.Rooms()
	if len(rs) != 1 {
		t.Fatalf("restored %d rooms", len(rs))
	}
	info := rs[0].Info()
	if info.ID != "kept" || info.MaxPeers != 7 || !info.HasPassword || info.GuestsCanShare || string(info.Metadata) != `{"k":"v"}` {
		t.Fatalf("restored %+v", info)
	}
	if _, _, err := m2.Join("kept", JoinOptions{Name: "x", Password: "pw"}, &notes{}); err != nil {
		t.Fatalf("password after restart: %v", err)
	}
}

func TestSimulcastSetting(t *testing.T) {
	path := t.TempDir() + "/rooms.json"
	m := newManager(t, func(c *Config) { c.StorePath = path })
	// On by default, for rooms made by link and through the API alike:
	// publishers simulcast unless someone says otherwise.
	var nh, ng notes
	h, res, err := m.Join("link", JoinOptions{Name: "H"}, &nh)
	if err != nil {
		t.Fatal(err)
	}
	if !res.RoomInfo.Simulcast {
		t.Fatalf("link room: %+v", res.RoomInfo)
	}
	a, err := m.CreateRoom(RoomSpec{Name: "A"})
	if err != nil || !a.Simulcast {
		t.Fatalf("API room default: %+v %v", a, err)
	}
	off, err := m.CreateRoom(RoomSpec{Name: "LAN", Simulcast: ptr(false)})
	if err != nil || off.Simulcast || !off.GuestsCanShare {
		t.Fatalf("created off: %+v %v", off, err)
	}
	_, res, err = m.Join("lan", JoinOptions{Name: "G"}, &ng)
	if err != nil || res.RoomInfo.Simulcast {
		t.Fatalf("join result of a room without simulcast: %+v %v", res.RoomInfo, err)
	}

	// A host turns it off from the room; members hear it, guests may not.
	g, _, err := m.Join("link", JoinOptions{Name: "G"}, &ng)
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.UpdateRoom(RoomUpdate{Simulcast: ptr(false)})
	wantCode(t, err, KindForbidden, "host")
	info, err := h.UpdateRoom(RoomUpdate{Simulcast: ptr(false)})
	if err != nil || info.Simulcast {
		t.Fatalf("host update: %+v %v", info, err)
	}
	if p := ng.last("roomUpdated"); p == nil || p["room"].(map[string]any)["simulcast"] != false {
		t.Fatalf("roomUpdated = %v", p)
	}
	// Other updates leave it alone.
	if info, err = h.UpdateRoom(RoomUpdate{Locked: ptr(true)}); err != nil || info.Simulcast {
		t.Fatalf("after an unrelated update: %+v %v", info, err)
	}
	if info, err = m.UpdateRoom("a", RoomUpdate{Simulcast: ptr(false)}); err != nil || info.Simulcast {
		t.Fatalf("API update: %+v %v", info, err)
	}
	if info, err = m.UpdateRoom("a", RoomUpdate{Simulcast: ptr(true)}); err != nil || !info.Simulcast {
		t.Fatalf("API update back on: %+v %v", info, err)
	}

	// It survives a restart.
	m2 := newManager(t, func(c *Config) { c.StorePath = path })
	if err := m2.LoadRooms(); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{"a": true, "lan": false} {
		r, ok := m2.Room(id)
		if !ok || r.Info().Simulcast != want {
			t.Fatalf("restored %q: %v, want simulcast %v", id, ok, want)
		}
	}

	// A store written before the setting existed keeps simulcast on.
	old := t.TempDir() + "/rooms.json"
	if err := os.WriteFile(old, []byte(`{"version":1,"rooms":[{"id":"old","name":"Old","createdAt":"2026-01-01T00:00:00Z","maxPeers":5,"locked":false,"openControl":false,"waitForEveryone":true,"guestsCanShare":true}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	m3 := newManager(t, func(c *Config) { c.StorePath = old })
	if err := m3.LoadRooms(); err != nil {
		t.Fatal(err)
	}
	if r, ok := m3.Room("old"); !ok || !r.Info().Simulcast {
		t.Fatalf("old store: %v %+v", ok, r)
	}
}

// The end of a video on the room's clock: untilEnd says when, end only
// happens there, and play from the end starts over.
func TestPlaybackEnd(t *testing.T) {
	var s PlaybackState
	if err := s.apply(PlaybackCommand{Action: "load", URL: "/media/a.mp4", Duration: ptr(10.0)}, 1000); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.untilEnd(1000); ok {
		t.Fatal("a paused video is heading for its end")
	}
	if err := s.apply(PlaybackCommand{Action: "play", Position: ptr(4.0)}, 2000); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(PlaybackCommand{Action: "rate", Rate: ptr(2.0)}, 4000); err != nil { // at 6 s
		t.Fatal(err)
	}
	if d, ok := s.untilEnd(4000); !ok || d != 2*time.Second {
		t.Fatalf("until end %v %v, want 2s at 2x", d, ok)
	}
	if s.end(5900) {
		t.Fatalf("ended early: %+v", s)
	}
	if !s.end(6000) || !s.Ended || !s.Paused || s.Position != 10 || s.UpdatedAt != 6000 || s.Advancing() {
		t.Fatalf("end: %+v", s)
	}
	if s.end(7000) {
		t.Fatal("ended twice")
	}
	if err := s.apply(PlaybackCommand{Action: "seek", Position: ptr(50.0)}, 8000); err != nil {
		t.Fatal(err)
	}
	if s.Ended || s.Position != 10 {
		t.Fatalf("seek past the end: %+v", s)
	}
	s.Ended, s.Position = true, 10
	if err := s.apply(PlaybackCommand{Action: "play"}, 9000); err != nil {
		t.Fatal(err)
	}
	if s.Ended || s.Paused || s.Position != 0 {
		t.Fatalf("replay: %+v", s)
	}
	wantCode(t, s.apply(PlaybackCommand{Action: "subtitle", Subtitle: ptr("/media/x.vtt")}, 9000), KindInvalidField, `"subtitle"`)
}
