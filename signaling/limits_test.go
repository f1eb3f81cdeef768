package signaling_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/room"
)

const (
	codeForbidden   = 1005
	codeRateLimited = 1008
	codeBadParams   = -32602
)

// vault makes a room with a password.
func vault(t *testing.T, e *env, id string) {
	t.Helper()
	if _, err := e.srv.Rooms().CreateRoom(room.RoomSpec{ID: id, Name: id, Password: "open sesame"}); err != nil {
		t.Fatal(err)
	}
}

func guess(c *client, roomID, pw string) (frame, bool) {
	return c.call("join", map[string]any{"room": roomID, "name": "guesser", "password": pw})
}

// wantTooMany checks a refusal for too many wrong passwords.
func wantTooMany(t *testing.T, f frame, ok bool) time.Duration {
	t.Helper()
	if !ok {
		t.Fatal("socket closed instead of answering")
	}
	if f.Error == nil || f.Error.Code != codeRateLimited || f.Error.Data["reason"] != "too_many_attempts" {
		t.Fatalf("got %+v %s, want 1008 too_many_attempts", f.Error, f.Result)
	}
	ms, _ := f.Error.Data["retryAfterMs"].(float64)
	if ms <= 0 {
		t.Fatalf("retryAfterMs %v, want > 0", f.Error.Data["retryAfterMs"])
	}
	return time.Duration(ms) * time.Millisecond
}

func wantWrong(t *testing.T, f frame, ok bool) {
	t.Helper()
	if !ok || f.Error == nil || f.Error.Code != codeForbidden || f.Error.Data["reason"] != room.ReasonWrongPassword {
		t.Fatalf("got %+v (open %v), want 1005 wrong_password", f.Error, ok)
	}
}

// Each of the three budgets of wrong passwords, alone: past it the join
// is refused with 1008 and retryAfterMs, and a right password from
// elsewhere still works when the budget is not that one's.
func TestPasswordGuessingLimits(t *testing.T) {
	for _, tc := range []struct {
		name             string
		conn, addr, room int
		// sockets the guesses are spread over
		sockets int
	}{
		{"per connection", 3, 100, 100, 1},
		{"per address", 100, 4, 100, 4},
		{"per room", 100, 100, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, func(c *config.Config) {
				c.PasswordFailsConn, c.PasswordFailsAddr, c.PasswordFailsRoom = tc.conn, tc.addr, tc.room
				c.PasswordFailWindow = time.Hour // no refill during the test
			})
			vault(t, e, "vault")
			vault(t, e, "other")
			limit := min(tc.conn, tc.addr, tc.room)
			var cs []*client
			for i := 0; i < tc.sockets; i++ {
				cs = append(cs, e.dial(t))
			}
			for i := 0; i < limit; i++ {
				f, ok := guess(cs[i%len(cs)], "vault", fmt.Sprintf("guess-%d", i))
				wantWrong(t, f, ok)
			}
			last := cs[limit%len(cs)]
			// Even the right password: the budget is checked before the
			// password is.
			f, ok := guess(last, "vault", "open sesame")
			wantTooMany(t, f, ok)

			switch tc.name {
			case "per connection":
				// Another connection has its own budget.
				var res struct{ PeerID string }
				e.dial(t).mustCall("join", map[string]any{"room": "vault", "name": "friend", "password": "open sesame"}, &res)
			case "per address":
				// So does a new socket from that address: refused too.
				f, ok := guess(e.dial(t), "vault", "open sesame")
				wantTooMany(t, f, ok)
			case "per room":
				// Another room is not affected.
				f, ok := guess(e.dial(t), "other", "wrong")
				wantWrong(t, f, ok)
			}
		})
	}
}

// A connection that asks again before retryAfterMs has passed gets its
// answer and then the socket closes with 1008.
func TestPasswordGuesserInsistingIsClosed(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.PasswordFailsConn = 2
		c.PasswordFailWindow = time.Hour
	})
	vault(t, e, "vault")
	c := e.dial(t)
	for i := 0; i < 2; i++ {
		f, ok := guess(c, "vault", "nope")
		wantWrong(t, f, ok)
	}
	f, ok := guess(c, "vault", "nope")
	wantTooMany(t, f, ok)
	f, ok = guess(c, "vault", "nope")
	wantTooMany(t, f, ok)
	ce := c.closedWith(5 * time.Second)
	if ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "too many wrong passwords") {
		t.Fatalf("closed with %d %q, want 1008 too many wrong passwords", ce.Code, ce.Text)
	}
}

// cpuTime is the CPU this process (server and clients) has used.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A guesser with 4 sockets in parallel that reconnects whenever it is
// closed: the server hashes at most the address's budget of passwords,
// whatever the number of attempts, so the CPU it spends stays bounded.
func TestPasswordGuessingLoopCPU(t *testing.T) {
	e := start(t, nil) // the default limits
	vault(t, e, "vault")
	const attempts, sockets = 400, 4
	var wrong, limited, closes atomic.Int64
	errs := make(chan error, sockets)
	cpu0, wall0 := cpuTime(t), time.Now()
	for k := 0; k < sockets; k++ {
		go func() {
			errs <- guessLoop(t, e, k, attempts/sockets, &wrong, &limited, &closes)
		}()
	}
	for k := 0; k < sockets; k++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cpu, wall := cpuTime(t)-cpu0, time.Since(wall0)
	t.Logf("%d attempts over %d parallel sockets in %s: %d hashed (wrong_password), %d refused with 1008, %d sockets closed; CPU %s (%.2f cores, %.0f µs per attempt)",
		attempts, sockets, wall.Round(time.Millisecond), wrong.Load(), limited.Load(), closes.Load(), cpu.Round(time.Millisecond),
		cpu.Seconds()/wall.Seconds(), float64(cpu.Microseconds())/attempts)
	// The address's budget refills at PasswordFailsAddr per window; the
	// test lasts far less than one window, so one more at most.
	if maxWrong := int64(config.Default().PasswordFailsAddr + 1); wrong.Load() > maxWrong {
		t.Fatalf("%d passwords hashed, want at most %d", wrong.Load(), maxWrong)
	}
	if limited.Load() == 0 || closes.Load() == 0 {
		t.Fatalf("no refusal (%d) or no close (%d)", limited.Load(), closes.Load())
	}
}

// guessLoop sends n wrong passwords through one socket, opening a new
// one whenever the server closes it. It runs on its own goroutine, so it
// returns its failure instead of failing the test.
func guessLoop(t *testing.T, e *env, k, n int, wrong, limited, closes *atomic.Int64) error {
	var c *client
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for i := 0; i < n; {
		if c == nil || !c.isOpen() {
			if c != nil {
				closes.Add(1)
				c.close()
			}
			var err error
			if c, _, err = e.tryDial(t); err != nil {
				return fmt.Errorf("socket %d: dial: %w", k, err)
			}
		}
		f, ok := c.callNoFatal("join", map[string]any{"room": "vault", "name": "guesser", "password": fmt.Sprintf("guess-%d-%d", k, i)})
		switch {
		case !ok:
			continue // closed: again on a new socket
		case f.Error != nil && f.Error.Code == codeForbidden:
			wrong.Add(1)
		case f.Error != nil && f.Error.Code == codeRateLimited:
			limited.Add(1)
		default:
			return fmt.Errorf("socket %d attempt %d: %+v %s", k, i, f.Error, f.Result)
		}
		i++
	}
	return nil
}

// The chat limit belongs to the connection and the person: leaving and
// joining again, or opening a new socket, gives no fresh budget.
func TestChatLimitSurvivesLeaveAndJoin(t *testing.T) {
	t.Run("same socket", func(t *testing.T) {
		e := start(t, func(c *config.Config) {
			c.ChatRate, c.ChatBurst = 1, 5
			c.ChatAddrRate = 0 // only the connection's limit
		})
		c := e.dial(t)
		sent := 0
		t0 := time.Now()
		for i := 0; i < 100; i++ {
			c.mustCall("join", map[string]any{"room": "chatty", "name": "spammer"}, nil)
			f, ok := c.call("chat", map[string]any{"text": fmt.Sprintf("spam %d", i)})
			if !ok {
				t.Fatal("socket closed")
			}
			if f.Error == nil {
				sent++
			} else if f.Error.Code != codeRateLimited {
				t.Fatalf("chat: %+v", f.Error)
			}
			c.mustCall("leave", nil, nil)
		}
		allowed := 5 + int(time.Since(t0).Seconds()*1) + 1
		t.Logf("%d of 100 chats through leave+join in %s (allowed %d)", sent, time.Since(t0).Round(time.Millisecond), allowed)
		if sent > allowed {
			t.Fatalf("%d chats went through leave+join, want at most %d", sent, allowed)
		}
	})
	t.Run("new sockets from one address", func(t *testing.T) {
		e := start(t, func(c *config.Config) {
			c.ChatRate, c.ChatBurst = 100, 100 // the connection's limit does not bite
			c.ChatAddrRate, c.ChatAddrBurst = 1, 3
		})
		sent := 0
		t0 := time.Now()
		for i := 0; i < 20; i++ {
			c := e.dial(t)
			c.mustCall("join", map[string]any{"room": "chatty", "name": fmt.Sprintf("sock-%d", i)}, nil)
			f, ok := c.call("chat", map[string]any{"text": "hello"})
			if !ok {
				t.Fatal("socket closed")
			}
			if f.Error == nil {
				sent++
			} else if f.Error.Code != codeRateLimited || f.Error.Data["retryAfterMs"] == nil {
				t.Fatalf("chat: %+v", f.Error)
			}
			c.close()
		}
		allowed := 3 + int(time.Since(t0).Seconds()*1) + 1
		if sent > allowed {
			t.Fatalf("%d chats from 20 fresh sockets, want at most %d", sent, allowed)
		}
	})
}

// In a locked room a join with a present member's token is refused and
// changes nothing: the member stays, undisturbed. Unlocked, the same join
// replaces the old connection as before.
func TestRefusedJoinEvictsNoOne(t *testing.T) {
	e := start(t, nil)
	rooms := e.srv.Rooms()
	if _, err := rooms.CreateRoom(room.RoomSpec{ID: "den", Name: "den"}); err != nil {
		t.Fatal(err)
	}
	token, _, err := rooms.MintToken("den", room.TokenSpec{Identity: "alice", Name: "Alice", Role: room.RoleHost})
	if err != nil {
		t.Fatal(err)
	}
	a := e.dial(t)
	var ares struct{ PeerID string }
	a.mustCall("join", map[string]any{"room": "den", "token": token}, &ares)
	locked, unlocked := true, false
	if _, err := rooms.UpdateRoom("den", room.RoomUpdate{Locked: &locked}); err != nil {
		t.Fatal(err)
	}
	b := e.dial(t)
	rerr := b.callErr("join", map[string]any{"room": "den", "token": token}, codeForbidden)
	if rerr.Data["reason"] != room.ReasonLocked {
		t.Fatalf("refusal %+v, want reason locked", rerr)
	}
	// a is still the member: it can act, and nothing told it to go.
	a.mustCall("chat", map[string]any{"text": "still here"}, nil)
	r, _ := rooms.Room("den")
	if ps := r.Peers(); len(ps) != 1 || ps[0].ID != ares.PeerID {
		t.Fatalf("peers after the refused join: %+v, want only %s", ps, ares.PeerID)
	}
	if a.got("disconnected") || !a.isOpen() {
		t.Fatal("the present member was disconnected by a refused join")
	}

	if _, err := rooms.UpdateRoom("den", room.RoomUpdate{Locked: &unlocked}); err != nil {
		t.Fatal(err)
	}
	var bres struct {
		PeerID string
		Peers  []room.PeerInfo
	}
	b.mustCall("join", map[string]any{"room": "den", "token": token}, &bres)
	if !strings.Contains(string(a.notification("disconnected")), "another connection") {
		t.Fatal("the old connection was not told why it went")
	}
	if len(bres.Peers) != 0 {
		t.Fatalf("the new member sees %+v, want no one (it replaced the old one)", bres.Peers)
	}
	if ps := r.Peers(); len(ps) != 1 || ps[0].ID != bres.PeerID || ps[0].Role != room.RoleHost {
		t.Fatalf("peers after the replacing join: %+v", ps)
	}
}

// Display names lose control, bidi and invisible characters, as chat
// text does; a name of nothing else is refused with a clear error.
func TestNamesAreSanitised(t *testing.T) {
	e := start(t, nil)
	watcher := e.dial(t)
	watcher.mustCall("join", map[string]any{"room": "names", "name": "Watcher"}, nil)
	for _, tc := range []struct{ sent, want string }{
		{"Mallory\u202Egnp.exe", "Mallorygnp.exe"},
		{"nul\u0000 bel\u0007 esc\u001b[31m", "nul bel esc[31m"},
		{"\u2066iso\u2069late\u200E\u200F", "isolate"},
		{"zero\u200Bwidth\uFEFF\u2060", "zerowidth"},
		{"two\nlines\there", "two lines here"},
		{"👩\u200d💻 Ada", "👩\u200d💻 Ada"},                 // an emoji ZWJ sequence stays whole
		{"\u200dx\u200d\u200d\u200dy\u200d", "x\u200dy"}, // stray and repeated joiners go
	} {
		c := e.dial(t)
		var res struct {
			PeerID string
		}
		c.mustCall("join", map[string]any{"room": "names", "name": tc.sent}, &res)
		var joined struct {
			Peer room.PeerInfo `json:"peer"`
		}
		watcher.notificationWhere("peerJoined", func(p json.RawMessage) bool {
			return json.Unmarshal(p, &joined) == nil && joined.Peer.ID == res.PeerID
		})
		if joined.Peer.Name != tc.want {
			t.Errorf("name %q shown as %q, want %q", tc.sent, joined.Peer.Name, tc.want)
		}
		var msg struct {
			Message room.ChatMessage `json:"message"`
		}
		c.mustCall("chat", map[string]any{"text": "hi"}, &msg)
		if msg.Message.Name != tc.want {
			t.Errorf("chat from %q signed %q, want %q", tc.sent, msg.Message.Name, tc.want)
		}
		c.close()
	}
	c := e.dial(t)
	rerr := c.callErr("join", map[string]any{"room": "names", "name": "\u202E\u0000\u200B\u2066"}, codeBadParams)
	if !strings.Contains(rerr.Message, `"name"`) || !strings.Contains(rerr.Message, "invisible") {
		t.Fatalf("empty-after-cleaning name: %q, want it to name the field and say why", rerr.Message)
	}
}

// A socket that does not join within the deadline is closed with 1008;
// one that joined stays; one that leaves gets the deadline again.
func TestJoinDeadline(t *testing.T) {
	const deadline = 300 * time.Millisecond
	e := start(t, func(c *config.Config) { c.WSJoinTimeout = deadline })
	member := e.dial(t)
	member.mustCall("join", map[string]any{"room": "lobby", "name": "M"}, nil)
	opened := time.Now()
	idle := e.dial(t)
	idle.mustCall("time", map[string]any{}, nil) // talking is not joining
	ce := idle.closedWith(5 * time.Second)
	if ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "no join within") {
		t.Fatalf("idle socket closed with %d %q, want 1008 no join within", ce.Code, ce.Text)
	}
	if waited := time.Since(opened); waited < deadline {
		t.Fatalf("closed after %s, before the %s deadline", waited, deadline)
	}
	// The member's socket opened before the idle one: its deadline has
	// passed too, and it is still there.
	member.mustCall("chat", map[string]any{"text": "still here"}, nil)
	left := time.Now()
	member.mustCall("leave", nil, nil)
	ce = member.closedWith(5 * time.Second)
	if ce.Code != websocket.ClosePolicyViolation || time.Since(left) < deadline {
		t.Fatalf("after leave: closed with %d %q after %s", ce.Code, ce.Text, time.Since(left))
	}
}

// One address may hold only so many sockets; the next is refused with
// HTTP 429 before the upgrade, and a closed one frees its place.
func TestSocketsPerAddress(t *testing.T) {
	const max = 3
	e := start(t, func(c *config.Config) { c.WSMaxPerAddr = max })
	var cs []*client
	for i := 0; i < max; i++ {
		cs = append(cs, e.dial(t))
	}
	_, resp, err := e.tryDial(t)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("socket %d: err %v, HTTP %d; want 429", max+1, err, status)
	}
	cs[0].close()
	// The server frees the place when it sees the socket end.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, resp, err := e.tryDial(t)
		if err == nil {
			cs[0] = c
			break
		}
		if resp == nil || resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after a close: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // poll
	}
	if _, resp, err := e.tryDial(t); err == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a %d-th socket again: err %v", max+1, err)
	}
}

// A page of another node's origin may open /ws/alive (to check this node
// answers before it moves here), which closes at once with "alive", but
// not /ws, whose sessions take only their own origin.
func TestAliveTakesAnyOrigin(t *testing.T) {
	e := start(t, nil)
	h := http.Header{"Origin": {"https://other-node.example:8443"}}
	c, _, err := websocket.DefaultDialer.Dial(e.ws+"/alive", h)
	if err != nil {
		t.Fatalf("open /ws/alive from another origin: %v", err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure || ce.Text != "alive" {
		t.Fatalf("/ws/alive: %v, want closed 1000 alive", err)
	}
	if c2, resp, err := websocket.DefaultDialer.Dial(e.ws, h); err == nil {
		c2.Close()
		t.Fatal("/ws opened from another origin")
	} else if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("/ws from another origin: %v %v, want 403", resp, err)
	}
}
