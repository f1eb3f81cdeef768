package signaling_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/room"
	"github.com/matinee-dev/matinee/sfu"
	"github.com/matinee-dev/matinee/signaling"
	"github.com/pion/webrtc/v4"
)

// These tests run signaling on its own: an sfu Worker on loopback, a
// room.Manager and signaling's handler on an httptest server, with no
// server package in between, so that what they check is signaling's.

// standalone serves signaling with cfg for rooms that a join creates.
func standalone(t *testing.T, cfg signaling.Config) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := sfu.NewWorker(ctx, sfu.WorkerConfig{LoopbackOnly: true})
	if err != nil {
		cancel()
		t.Fatalf("sfu worker: %v", err)
	}
	rooms := room.NewManager(ctx, w, room.Config{OpenRooms: true})
	return serveSignaling(t, signaling.New(rooms, cfg), rooms, w, cancel)
}

// serveSignaling serves sig on an httptest server; the test's cleanup
// closes it, then rooms and w, then cancels their context.
func serveSignaling(t *testing.T, sig *signaling.Server, rooms *room.Manager, w *sfu.Worker, cancel func()) *env {
	t.Helper()
	hs := httptest.NewServer(sig)
	t.Cleanup(func() {
		sig.Close()
		hs.Close()
		rooms.Close()
		if err := w.Close(); err != nil {
			t.Errorf("close worker: %v", err)
		}
		cancel()
	})
	return &env{ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
}

// dialPeer connects a pion peer (testpeer, pion's defaults) to ws,
// closed with the test.
func dialPeer(t *testing.T, ctx context.Context, ws string) *testpeer.Client {
	t.Helper()
	api, err := testpeer.NewAPI(testpeer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := testpeer.Dial(ctx, ws, api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// send writes one raw frame and returns the next frame the server sends.
func (c *client) send(typ int, data []byte) frame {
	c.t.Helper()
	c.mu.Lock()
	n := len(c.frames)
	c.mu.Unlock()
	if err := c.conn.WriteMessage(typ, data); err != nil {
		c.t.Fatalf("write %q: %v", data, err)
	}
	var f frame
	testenv.Eventually(c.t, 5*time.Second, "an answer to "+string(data), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.frames) > n {
			f = c.frames[n]
			return true
		}
		return false
	})
	return f
}

// TestParseAndDispatchErrors: every malformed frame gets the JSON-RPC
// error its fault calls for, with the request's id when it had a usable
// one, and the socket stays open for the next request.
func TestParseAndDispatchErrors(t *testing.T) {
	e := standalone(t, signaling.Config{})
	c := e.dial(t)
	for _, tc := range []struct {
		name, frame string
		binary      bool
		code        int
		id          *int
		contains    string
	}{
		{name: "not JSON", frame: `{"jsonrpc":"2.0","id":1,`, code: signaling.CodeParseError, contains: "not valid JSON"},
		{name: "empty", frame: ``, code: signaling.CodeParseError},
		{name: "batch", frame: `[{"jsonrpc":"2.0","id":1,"method":"time"}]`, code: signaling.CodeInvalidRequest, contains: "batches"},
		{name: "not an object", frame: `"time"`, code: signaling.CodeInvalidRequest},
		{name: "old version", frame: `{"jsonrpc":"1.0","id":2,"method":"time"}`, code: signaling.CodeInvalidRequest, id: ptr(2), contains: `"jsonrpc" must be "2.0"`},
		{name: "no method", frame: `{"jsonrpc":"2.0","id":3}`, code: signaling.CodeInvalidRequest, id: ptr(3), contains: `"method" is required`},
		{name: "object id", frame: `{"jsonrpc":"2.0","id":{"x":1},"method":"time"}`, code: signaling.CodeInvalidRequest, contains: `"id" must be a string or number`},
		{name: "unknown method", frame: `{"jsonrpc":"2.0","id":4,"method":"fly"}`, code: signaling.CodeMethodNotFound, id: ptr(4), contains: "method not found: fly"},
		{name: "params not an object", frame: `{"jsonrpc":"2.0","id":5,"method":"join","params":[1]}`, code: signaling.CodeInvalidParams, id: ptr(5), contains: "params must be an object"},
		{name: "param of the wrong type", frame: `{"jsonrpc":"2.0","id":6,"method":"join","params":{"room":7}}`, code: signaling.CodeInvalidParams, id: ptr(6), contains: `"room" must be a string, not number`},
		{name: "missing param", frame: `{"jsonrpc":"2.0","id":7,"method":"join","params":{"name":"A"}}`, code: signaling.CodeInvalidParams, id: ptr(7), contains: `"room" is required`},
		{name: "not joined", frame: `{"jsonrpc":"2.0","id":8,"method":"chat","params":{"text":"hi"}}`, code: signaling.CodeNotJoined, id: ptr(8), contains: "call join first"},
		{name: "binary frame", frame: `{"jsonrpc":"2.0","id":9,"method":"time"}`, binary: true, code: signaling.CodeInvalidRequest, contains: "binary frames"},
	} {
		typ := websocket.TextMessage
		if tc.binary {
			typ = websocket.BinaryMessage
		}
		f := c.send(typ, []byte(tc.frame))
		switch {
		case f.Error == nil:
			t.Errorf("%s: answer %+v, want error %d", tc.name, f, tc.code)
		case f.Error.Code != tc.code || !strings.Contains(f.Error.Message, tc.contains):
			t.Errorf("%s: error %d %q, want %d containing %q", tc.name, f.Error.Code, f.Error.Message, tc.code, tc.contains)
		case (f.ID == nil) != (tc.id == nil) || (f.ID != nil && *f.ID != *tc.id):
			t.Errorf("%s: answer's id %v, want %v", tc.name, deref(f.ID), deref(tc.id))
		}
	}
	// Still open, and a good request is answered.
	var tm struct {
		ServerTime float64 `json:"serverTime"`
	}
	c.mustCall("time", map[string]any{}, &tm)
	if !c.isOpen() {
		t.Fatal("socket closed after bad frames")
	}
}

func ptr(i int) *int { return &i }

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestNotificationsAreNotAnswered: a request without an id is a
// notification, answered neither when it works nor when its method is
// unknown; the next request's answer is the next frame.
func TestNotificationsAreNotAnswered(t *testing.T) {
	e := standalone(t, signaling.Config{})
	c := e.dial(t)
	for _, n := range []string{
		`{"jsonrpc":"2.0","method":"fly"}`,
		`{"jsonrpc":"2.0","method":"time","params":{}}`,
	} {
		if err := c.conn.WriteMessage(websocket.TextMessage, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	f := c.send(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":10,"method":"fly"}`))
	if f.Error == nil || f.Error.Code != signaling.CodeMethodNotFound {
		t.Fatalf("first frame after two notifications: %+v, want the answer to the request", f)
	}
	c.mu.Lock()
	n := len(c.frames)
	c.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d frames, want only the request's answer", n)
	}
}

// TestOversizedMessageClosesSocket: a message over MaxMessage closes the
// socket with 1009; one at the limit is read (and answered).
func TestOversizedMessageClosesSocket(t *testing.T) {
	const limit = 1024
	e := standalone(t, signaling.Config{MaxMessage: limit})
	c := e.dial(t)
	pad := func(n int) []byte {
		head := `{"jsonrpc":"2.0","id":1,"method":"time","params":{"pad":"`
		tail := `"}}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	if f := c.send(websocket.TextMessage, pad(limit)); f.Error != nil {
		t.Fatalf("a message of exactly %d bytes: error %+v", limit, f.Error)
	}
	if err := c.conn.WriteMessage(websocket.TextMessage, pad(limit+1)); err != nil {
		t.Fatal(err)
	}
	if ce := c.closedWith(5 * time.Second); ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("closed with %d %q, want 1009", ce.Code, ce.Text)
	}
}

// TestJoinTimeoutStandalone: a socket that does not join within
// JoinTimeout is closed with 1008; one that joined in time stays.
func TestJoinTimeoutStandalone(t *testing.T) {
	const timeout = 200 * time.Millisecond
	e := standalone(t, signaling.Config{JoinTimeout: timeout})
	member := e.dial(t)
	member.mustCall("join", map[string]any{"room": "lobby", "name": "M"}, nil)
	idle := e.dial(t)
	opened := time.Now()
	ce := idle.closedWith(5 * time.Second)
	if ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "no join within 200ms") {
		t.Fatalf("idle socket closed with %d %q, want 1008 no join within 200ms", ce.Code, ce.Text)
	}
	if waited := time.Since(opened); waited < timeout-20*time.Millisecond {
		t.Fatalf("closed after %v, before the %v timeout", waited, timeout)
	}
	member.mustCall("time", map[string]any{}, nil)
}

// TestMediaThroughSignalingAlone: two pion peers speak the protocol to
// signaling on its own: one joins and publishes, the other joins, is
// told, subscribes, and receives the publisher's RTP.
func TestMediaThroughSignalingAlone(t *testing.T) {
	e := standalone(t, signaling.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func() *testpeer.Client { return dialPeer(t, ctx, e.ws) }
	pub := dial()
	if _, err := pub.Join(ctx, "media", "pub"); err != nil {
		t.Fatal(err)
	}
	video, err := testpeer.NewVideoSource("v", "cam")
	if err != nil {
		t.Fatal(err)
	}
	vt := &testpeer.Track{Track: video.Track}
	if _, err := pub.Publish(ctx, vt); err != nil {
		t.Fatal(err)
	}
	go video.ServeRTCP(vt.Sender)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); video.Run(stop, 30) }()
	defer func() { close(stop); wg.Wait() }()

	sub := dial()
	var mu sync.Mutex
	var sink *testpeer.Sink
	sub.OnTrack = func(tr *webrtc.TrackRemote, _ testpeer.Consumer) {
		mu.Lock()
		sink = testpeer.NewSink(tr)
		mu.Unlock()
	}
	ps, err := sub.Join(ctx, "media", "sub")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Kind != "video" {
		t.Fatalf("join: producers %+v, want the one video", ps)
	}
	if err := sub.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctx, ps[0].ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "30 video packets at the subscriber", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return sink != nil && len(sink.Got()) >= 30
	})
	mu.Lock()
	got := sink.Got()
	mu.Unlock()
	sent := video.Sent()
	have := map[string]bool{}
	for _, p := range sent {
		have[string(p.Payload)] = true
	}
	for _, p := range got {
		if !have[string(p.Payload)] {
			t.Fatalf("received a payload that was never sent")
		}
	}
	// Signaling answers a JSON-RPC error for what the room refuses.
	var re *testpeer.RPCError
	if err := sub.Call(ctx, "subscribe", map[string]any{"producerId": "pr-nope"}, nil); !errors.As(err, &re) || re.Code != signaling.CodeNotFound {
		t.Fatalf("subscribe to an unknown producer: %v, want RPC error %d", err, signaling.CodeNotFound)
	}
}
