// Package servertest starts a whole Matinee server inside a test: in
// process, media on loopback only, its HTTP handler on a loopback port,
// and everything closed when the test ends. It gives the base URL, the
// WebSocket URL and an API client with the server's key.
//
// It sits above server in the README's picture (beside cmd and e2e), so
// server's own tests use it from package server_test. The waiting and
// machine helpers every layer shares (Eventually, FreePort, Chromium) are
// in internal/testenv, below sfu, whose tests use them too.
package servertest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server"
)

// Server is a running server.
type Server struct {
	*server.Server
	URL      string        // http://127.0.0.1:port
	WS       string        // ws://127.0.0.1:port/ws
	RTMPURL  string        // rtmp://127.0.0.1:port/live with WithRTMP, else ""
	RTMPAddr *net.TCPAddr  // the RTMP listener's address with WithRTMP
	Config   config.Config // what it was started with
}

// Option changes how Start starts the server.
type Option func(*options)

type options struct {
	edit []func(*config.Config)
	rtmp bool
}

// WithConfig lets the test change the configuration before the server
// starts (after the loopback defaults Start sets).
func WithConfig(edit func(*config.Config)) Option {
	return func(o *options) {
		if edit != nil {
			o.edit = append(o.edit, edit)
		}
	}
}

// WithRTMP also serves RTMP ingest on a loopback port (Server.RTMPURL).
func WithRTMP() Option { return func(o *options) { o.rtmp = true } }

// Config is the configuration Start begins with: config.Default() with
// its data in a fresh directory, media and ICE on loopback only, the UDP
// and RTMP ports chosen by the system, no ICE-TCP, and recordings allowed
// whatever the disk's free space (tests of that limit set it). The HTTP
// and HTTPS addresses keep their defaults: Start serves the handler on
// httptest's port instead, and never binds them.
func Config(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.UDPPort = 0
	cfg.ICETCPPort = 0
	cfg.ICELoopbackOnly = true
	cfg.RTMPAddr = "127.0.0.1:0"
	cfg.RecordMinFreeMB = 1
	return cfg
}

// Start runs a server for the test; it is closed when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	cfg := Config(t)
	for _, edit := range o.edit {
		edit(&cfg)
	}
	srv, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	s := &Server{Server: srv, Config: cfg}
	var rtmpDone chan error
	if o.rtmp {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			_ = srv.Close()
			t.Fatalf("rtmp listener: %v", err)
		}
		rtmpDone = make(chan error, 1)
		go func() { rtmpDone <- srv.ServeRTMP(ln) }()
		s.RTMPAddr = ln.Addr().(*net.TCPAddr)
		s.RTMPURL = "rtmp://" + s.RTMPAddr.String() + "/live"
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		// The server first: it ends the WebSockets that would keep
		// httptest's Close waiting.
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		hs.Close()
		if rtmpDone != nil {
			if err := <-rtmpDone; err != nil {
				t.Errorf("serve rtmp: %v", err)
			}
		}
	})
	s.URL = hs.URL
	s.WS = "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	return s
}

// Client sends REST requests to a server.
type Client struct {
	t    testing.TB
	base string
	key  string
}

// NewClient returns a client of the server at base (http://host:port)
// that sends key as its bearer ("" for none).
func NewClient(t testing.TB, base, key string) *Client {
	return &Client{t: t, base: base, key: key}
}

// API returns a client that authenticates with the server's API key.
func (s *Server) API(t testing.TB) *Client { return NewClient(t, s.URL, s.APIKey()) }

// WithKey returns a client that sends key as its bearer ("" for none).
func (c *Client) WithKey(key string) *Client {
	cc := *c
	cc.key = key
	return &cc
}

// Do sends a request to path (under the base URL). body is nil, a string
// or []byte (sent as is; "" is no body) or any other value (sent as
// JSON). It returns the status, headers and body; only a failure to send
// fails the test.
func (c *Client) Do(method, path string, body any) (int, http.Header, []byte) {
	c.t.Helper()
	var raw string
	switch b := body.(type) {
	case nil:
	case string:
		raw = b
	case []byte:
		raw = string(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatalf("%s %s: encode body: %v", method, path, err)
		}
		raw = string(j)
	}
	ctype := ""
	if raw != "" {
		ctype = "application/json"
	}
	r := testenv.Request(c.t, method, c.base+path, ctype, c.key, raw)
	return r.StatusCode, r.Header, []byte(r.Body)
}

// Call sends a request and decodes a non-empty answer into out (when out
// is not nil), whatever the status, which it returns.
func (c *Client) Call(method, path string, body, out any) int {
	c.t.Helper()
	st, _, b := c.Do(method, path, body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %d: decode %s: %v", method, path, st, b, err)
		}
	}
	return st
}

// Must sends a request, fails the test unless the status is want, and
// decodes the answer into out (when out is not nil).
func (c *Client) Must(method, path string, body any, want int, out any) {
	c.t.Helper()
	st, _, b := c.Do(method, path, body)
	if st != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, st, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}
