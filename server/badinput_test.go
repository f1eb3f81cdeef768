package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/pion/webrtc/v4"
)

// raw is a bare WebSocket client for feeding the server bad input.
type raw struct {
	t       *testing.T
	conn    *websocket.Conn
	backlog []rawMsg // notifications read while waiting for a response
}

type rawMsg struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func dialRaw(t *testing.T, url string) *raw {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &raw{t: t, conn: conn}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if err := r.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// response reads until a response (a message with an id or an error).
func (r *raw) response() rawMsg {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := r.conn.ReadMessage()
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		var m rawMsg
		if err := json.Unmarshal(data, &m); err != nil {
			r.t.Fatalf("server sent invalid JSON %q", data)
		}
		if m.Method == "" {
			return m
		}
		r.backlog = append(r.backlog, m)
	}
}

// waitNotification reads until a notification with the given method.
func (r *raw) waitNotification(method string, within time.Duration) rawMsg {
	r.t.Helper()
	for i, m := range r.backlog {
		if m.Method == method {
			r.backlog = append(r.backlog[:i], r.backlog[i+1:]...)
			return m
		}
	}
	_ = r.conn.SetReadDeadline(time.Now().Add(within))
	for {
		_, data, err := r.conn.ReadMessage()
		if err != nil {
			r.t.Fatalf("waiting for %s: %v", method, err)
		}
		var m rawMsg
		_ = json.Unmarshal(data, &m)
		if m.Method == method {
			return m
		}
	}
}

func (r *raw) call(s string) rawMsg {
	r.t.Helper()
	r.send(s)
	return r.response()
}

func wantErr(t *testing.T, m rawMsg, code int, contains string) {
	t.Helper()
	if m.Error == nil {
		t.Fatalf("want error %d, got result %s", code, m.Result)
	}
	if m.Error.Code != code || !strings.Contains(m.Error.Message, contains) {
		t.Fatalf("got error %d %q, want %d containing %q", m.Error.Code, m.Error.Message, code, contains)
	}
}

func TestProtocolErrors(t *testing.T) {
	_, url := start(t, nil)
	r := dialRaw(t, url)

	m := r.call(`{"jsonrpc":"2.0","id":1,"method":"join",`)
	wantErr(t, m, -32700, "parse error")
	if string(m.ID) != "null" {
		t.Errorf("parse error id = %s, want null", m.ID)
	}
	wantErr(t, r.call(`[{"jsonrpc":"2.0","id":1,"method":"join"}]`), -32600, "batch")
	wantErr(t, r.call(`{"jsonrpc":"1.0","id":2,"method":"join"}`), -32600, "jsonrpc")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":3}`), -32600, "method")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":4,"method":"dance"}`), -32601, "dance")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":5,"method":"createTransport","params":{"direction":"send"}}`), 1001, "join")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":6,"method":"join","params":{"room":5,"name":"a"}}`), -32602, `"room"`)
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":7,"method":"join","params":{"room":"ok"}}`), -32602, `"name"`)
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":8,"method":"join","params":{"room":"no/slash","name":"a"}}`), -32602, `"room"`)
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":9,"method":"join","params":["x"]}`), -32602, "object")

	// After all that the connection still works.
	m = r.call(`{"jsonrpc":"2.0","id":"ten","method":"join","params":{"room":"errs","name":"Ana"}}`)
	if m.Error != nil || string(m.ID) != `"ten"` {
		t.Fatalf("join after errors: %+v", m)
	}
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":11,"method":"join","params":{"room":"errs","name":"Ana"}}`), 1002, "already")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":12,"method":"createTransport","params":{"direction":"sideways"}}`), -32602, `"direction"`)
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":13,"method":"subscribe","params":{"producerId":"pr-nope"}}`), 1004, "pr-nope")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":14,"method":"unsubscribe","params":{"consumerId":"co-nope"}}`), 1004, "co-nope")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":15,"method":"publish","params":{"transportId":"tr-nope","sdp":"v=0"}}`), 1004, "tr-nope")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":16,"method":"subscribe","params":{"producerId":"x"}}`), 1004, "x")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":17,"method":"subscribe","params":{}}`), -32602, `"producerId"`)

	m = r.call(`{"jsonrpc":"2.0","id":18,"method":"createTransport","params":{"direction":"send"}}`)
	var tr struct {
		TransportID string `json:"transportId"`
	}
	_ = json.Unmarshal(m.Result, &tr)
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":19,"method":"createTransport","params":{"direction":"send"}}`), 1007, "exists")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":20,"method":"publish","params":{"transportId":"`+tr.TransportID+`","sdp":"this is not sdp"}}`), 1006, "sdp")
	wantErr(t, r.call(`{"jsonrpc":"2.0","id":21,"method":"transportAnswer","params":{"transportId":"`+tr.TransportID+`","sdp":"v=0"}}`), 1007, "send transport")
	// A notification with an unknown method gets no answer at all; the
	// next request's response is the next message.
	r.send(`{"jsonrpc":"2.0","method":"dance"}`)
	m = r.call(`{"jsonrpc":"2.0","id":22,"method":"leave"}`)
	if m.Error != nil || string(m.ID) != "22" {
		t.Fatalf("leave: %+v", m)
	}
}

func TestOversizedMessageCloses1009(t *testing.T) {
	_, url := start(t, nil)
	r := dialRaw(t, url)
	r.send(`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"big","name":"` + strings.Repeat("x", 65<<10) + `"}}`)
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := r.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
			t.Fatalf("want close 1009, got %v", err)
		}
		return
	}
}

func TestBadSDPDisturbsNobody(t *testing.T) {
	_, url := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A working publisher and subscriber...
	pub := dial(t, url, testpeer.Options{})
	if _, err := pub.Join(ctx, "calm", "pub"); err != nil {
		t.Fatal(err)
	}
	src, err := testpeer.NewAudioSource("a", "s")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pub.Publish(ctx, &testpeer.Track{Track: src.Track})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); src.Run(stop) }()
	defer func() { close(stop); <-done }()
	sub := newSubscriberIn(t, ctx, url, "calm", "sub", testpeer.Options{})
	waitPackets(t, sub, "audio", 10)

	// Subscribing to your own producer is refused.
	var rerr *testpeer.RPCError
	if err := pub.Call(ctx, "subscribe", map[string]any{"producerId": ps[0].ID}, nil); !errors.As(err, &rerr) || rerr.Code != 1007 {
		t.Fatalf("own producer: %v", err)
	}

	// ...and a peer sending garbage in the same room.
	bad := dialRaw(t, url)
	bad.call(`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"calm","name":"bad"}}`)
	var tr struct {
		TransportID string `json:"transportId"`
	}
	_ = json.Unmarshal(bad.call(`{"jsonrpc":"2.0","id":2,"method":"createTransport","params":{"direction":"recv"}}`).Result, &tr)
	if m := bad.call(`{"jsonrpc":"2.0","id":3,"method":"subscribe","params":{"producerId":"` + ps[0].ID + `"}}`); m.Error != nil {
		t.Fatalf("subscribe: %+v", m.Error)
	}
	bad.waitNotification("transportOffer", 5*time.Second)
	wantErr(t, bad.call(`{"jsonrpc":"2.0","id":4,"method":"transportAnswer","params":{"transportId":"`+tr.TransportID+`","sdp":"garbage"}}`), 1006, "")
	wantErr(t, bad.call(`{"jsonrpc":"2.0","id":5,"method":"transportAnswer","params":{"transportId":"`+tr.TransportID+`","sdp":`+q("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")+`}}`), 1006, "")
	_ = json.Unmarshal(bad.call(`{"jsonrpc":"2.0","id":6,"method":"createTransport","params":{"direction":"send"}}`).Result, &tr)
	noCodec := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 100\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:100 FOO/90000\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\n"
	wantErr(t, bad.call(`{"jsonrpc":"2.0","id":7,"method":"publish","params":{"transportId":"`+tr.TransportID+`","sdp":`+q(noCodec)+`}}`), 1006, "codec")
	wantErr(t, bad.call(`{"jsonrpc":"2.0","id":8,"method":"publish","params":{"transportId":"`+tr.TransportID+`","sdp":`+q("v=0\r\nnonsense")+`}}`), 1006, "")

	// The subscriber never noticed.
	n := len(sub.sink("audio").Got())
	waitPackets(t, sub, "audio", n+25)
}

func waitPackets(t *testing.T, s *subscriber, kind string, n int) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, fmt.Sprintf("%d %s packets", n, kind), func() bool { return len(s.got(kind)) >= n })
}

func TestICETimeoutRemovesPeer(t *testing.T) {
	srv, url := start(t, func(c *config.Config) {
		c.ConnectTimeout = time.Second
		// A peer whose media failed is away first, for the grace period,
		// as any dropped connection; it is removed when that ends.
		c.ReconnectGrace = 300 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watcher := dial(t, url, testpeer.Options{})
	if _, err := watcher.Join(ctx, "stuck", "watcher"); err != nil {
		t.Fatal(err)
	}
	// A peer that negotiates but never sends a single ICE packet: its
	// offer is real, its PeerConnection is closed straight away.
	api, err := testpeer.NewAPI(testpeer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = pc.Close()
	r := dialRaw(t, url)
	r.call(`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"stuck","name":"ghost"}}`)
	var tr struct {
		TransportID string `json:"transportId"`
	}
	_ = json.Unmarshal(r.call(`{"jsonrpc":"2.0","id":2,"method":"createTransport","params":{"direction":"send"}}`).Result, &tr)
	sdp, _ := json.Marshal(offer.SDP)
	if m := r.call(`{"jsonrpc":"2.0","id":3,"method":"publish","params":{"transportId":"` + tr.TransportID + `","sdp":` + string(sdp) + `}}`); m.Error != nil {
		t.Fatalf("publish: %+v", m.Error)
	}
	began := time.Now()
	r.waitNotification("disconnected", 5*time.Second)
	if d := time.Since(began); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("removed after %v, want about the 1s timeout", d)
	}
	wantLeft(t, ctx, watcher, "timeout")
	// The socket is closed by the server.
	_ = r.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		if _, _, err := r.conn.ReadMessage(); err != nil {
			break
		}
	}
	rm, ok := srv.Rooms().Room("stuck")
	if !ok || len(rm.Peers()) != 1 || len(rm.Producers()) != 0 {
		t.Fatalf("room after timeout: ok=%v peers=%v", ok, rm.Peers())
	}
}

func TestVanishedPeerIsCleanedUp(t *testing.T) {
	_, url := start(t, func(c *config.Config) {
		c.WSPingInterval = 100 * time.Millisecond
		c.WSPongTimeout = 400 * time.Millisecond
		c.ReconnectGrace = 300 * time.Millisecond // away first, then gone
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watcher := dial(t, url, testpeer.Options{})
	if _, err := watcher.Join(ctx, "gone", "watcher"); err != nil {
		t.Fatal(err)
	}
	// One peer goes silent: it stops reading, so it answers no pings.
	silent := dialRaw(t, url)
	silent.call(`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"gone","name":"silent"}}`)
	began := time.Now()
	wantLeft(t, ctx, watcher, "timeout")
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("silent peer removed after %v, want within about the 400ms pong timeout", d)
	}
	// Another has its socket cut without a close frame.
	cut := dialRaw(t, url)
	cut.call(`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"gone","name":"cut"}}`)
	if _, err := watcher.WaitEvent(ctx, "peerJoined"); err != nil {
		t.Fatal(err)
	}
	_ = cut.conn.NetConn().Close()
	wantLeft(t, ctx, watcher, "timeout")
}

// wantLeft waits for the next peerLeft and checks why the peer left:
// a dropped connection ends in "timeout" once its grace period is over.
func wantLeft(t *testing.T, ctx context.Context, watcher *testpeer.Client, why string) {
	t.Helper()
	ev, err := watcher.WaitEvent(ctx, "peerLeft")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(ev.Params, &p); err != nil || p.Reason != why {
		t.Fatalf("peerLeft %s: want reason %q", ev.Params, why)
	}
}

// q quotes s as a JSON string.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
