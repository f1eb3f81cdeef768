package signaling_test

import (
	"encoding/json"
	"errors"
	"github.com/matinee-dev/matinee/server/servertest"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/server"
	"go.uber.org/goleak"
)

// These tests drive the real protocol: a whole server on loopback and
// clients that speak JSON-RPC over gorilla WebSockets, reading every
// frame, the close frame included.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type env struct {
	srv *server.Server
	ws  string
}

// start runs a server on loopback (servertest); edit changes its
// configuration.
func start(t *testing.T, edit func(*config.Config)) *env {
	t.Helper()
	s := servertest.Start(t, servertest.WithConfig(func(c *config.Config) {
		c.PublicURL = "https://tv.example:8443"
		c.HTTPAddr = ""
		if edit != nil {
			edit(c)
		}
	}))
	return &env{srv: s.Server, ws: s.WS}
}

type rpcErr struct {
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

type frame struct {
	ID     *int            `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *rpcErr         `json:"error"`
}

// client is one WebSocket. Its reader keeps every frame; closed is
// closed when the socket ends, and closeErr then says how.
type client struct {
	t      *testing.T
	conn   *websocket.Conn
	nextID int

	mu       sync.Mutex
	frames   []frame
	sig      chan struct{}
	closed   chan struct{}
	closeErr error
	done     chan struct{}
}

// dial opens a socket; it fails the test when the server refuses.
func (e *env) dial(t *testing.T) *client {
	t.Helper()
	c, resp, err := e.tryDial(t)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", e.ws, err, status)
	}
	return c
}

// tryDial opens a socket and returns the HTTP response of a refusal.
func (e *env) tryDial(t *testing.T) (*client, *http.Response, error) {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(e.ws, nil)
	if err != nil {
		if resp != nil {
			_ = resp.Body.Close()
		}
		return nil, resp, err
	}
	c := &client{t: t, conn: conn, sig: make(chan struct{}, 1), closed: make(chan struct{}), done: make(chan struct{})}
	go c.read()
	t.Cleanup(c.close)
	return c, resp, nil
}

func (c *client) read() {
	defer close(c.done)
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.closeErr = err
			c.mu.Unlock()
			close(c.closed)
			return
		}
		var f frame
		if json.Unmarshal(data, &f) != nil {
			c.t.Errorf("server sent invalid JSON %q", data)
			continue
		}
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
		select {
		case c.sig <- struct{}{}:
		default:
		}
	}
}

// close ends the socket and waits for the reader.
func (c *client) close() {
	_ = c.conn.Close()
	<-c.done
}

// call sends a request and returns its response; ok is false when the
// socket closed first.
func (c *client) call(method string, params any) (f frame, ok bool) {
	c.t.Helper()
	f, ok, timedOut := c.exchange(method, params)
	if timedOut {
		c.t.Fatalf("no response to %s", method)
	}
	return f, ok
}

// callNoFatal is call for goroutines other than the test's: a missing
// response counts as a closed socket.
func (c *client) callNoFatal(method string, params any) (f frame, ok bool) {
	f, ok, _ = c.exchange(method, params)
	return f, ok
}

func (c *client) exchange(method string, params any) (f frame, ok, timedOut bool) {
	c.nextID++
	id := c.nextID
	msg := map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params}
	if err := c.conn.WriteJSON(msg); err != nil {
		return frame{}, false, false
	}
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for _, f := range c.frames {
			if f.ID != nil && *f.ID == id {
				c.mu.Unlock()
				return f, true, false
			}
		}
		c.mu.Unlock()
		select {
		case <-c.sig:
		case <-c.closed:
			// The reader may have kept the response just before the end.
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, f := range c.frames {
				if f.ID != nil && *f.ID == id {
					return f, true, false
				}
			}
			return frame{}, false, false
		case <-deadline:
			return frame{}, false, true
		}
	}
}

// mustCall sends a request that must succeed and decodes its result.
func (c *client) mustCall(method string, params, out any) {
	c.t.Helper()
	f, ok := c.call(method, params)
	switch {
	case !ok:
		c.t.Fatalf("%s: socket closed", method)
	case f.Error != nil:
		c.t.Fatalf("%s %v: error %d %q", method, params, f.Error.Code, f.Error.Message)
	}
	if out != nil {
		if err := json.Unmarshal(f.Result, out); err != nil {
			c.t.Fatalf("%s result %s: %v", method, f.Result, err)
		}
	}
}

// callErr sends a request that must fail with code and returns the error.
func (c *client) callErr(method string, params any, code int) *rpcErr {
	c.t.Helper()
	f, ok := c.call(method, params)
	switch {
	case !ok:
		c.t.Fatalf("%s: socket closed, want error %d", method, code)
	case f.Error == nil:
		c.t.Fatalf("%s %v: result %s, want error %d", method, params, f.Result, code)
	case f.Error.Code != code:
		c.t.Fatalf("%s %v: error %d %q, want %d", method, params, f.Error.Code, f.Error.Message, code)
	}
	return f.Error
}

// notification waits for a notification of method.
func (c *client) notification(method string) json.RawMessage {
	c.t.Helper()
	return c.notificationWhere(method, nil)
}

// notificationWhere waits for a notification of method whose params
// match (nil: any).
func (c *client) notificationWhere(method string, match func(json.RawMessage) bool) json.RawMessage {
	c.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		for _, f := range c.frames {
			if f.ID == nil && f.Method == method && (match == nil || match(f.Params)) {
				c.mu.Unlock()
				return f.Params
			}
		}
		c.mu.Unlock()
		select {
		case <-c.sig:
		case <-deadline:
			c.t.Fatalf("no %s notification", method)
		}
	}
}

// sawWhere reports whether a notification of method matching match has
// come.
func (c *client) sawWhere(method string, match func(json.RawMessage) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.frames {
		if f.ID == nil && f.Method == method && match(f.Params) {
			return true
		}
	}
	return false
}

// got reports whether a notification of method has come.
func (c *client) got(method string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.frames {
		if f.ID == nil && f.Method == method {
			return true
		}
	}
	return false
}

// closedWith waits for the server to close the socket and returns its
// close frame.
func (c *client) closedWith(within time.Duration) *websocket.CloseError {
	c.t.Helper()
	select {
	case <-c.closed:
	case <-time.After(within):
		c.t.Fatalf("socket still open after %s", within)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var ce *websocket.CloseError
	if !errors.As(c.closeErr, &ce) {
		c.t.Fatalf("socket ended without a close frame: %v", c.closeErr)
	}
	return ce
}

// isOpen reports whether the socket is still open.
func (c *client) isOpen() bool {
	select {
	case <-c.closed:
		return false
	default:
		return true
	}
}
