package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"github.com/matinee-dev/matinee/internal/testenv"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/server"
	"github.com/pion/webrtc/v4"
)

// runServer runs a whole server (Run, not just its handler) on loopback
// and returns it with its HTTPS port and the CA it serves.
func runServer(t *testing.T, edit func(*config.Config)) (*server.Server, int, *x509.CertPool) {
	t.Helper()
	t.Setenv("CAROOT", t.TempDir()) // not this machine's mkcert CA
	https, plain := testenv.FreePort(t), testenv.FreePort(t)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Addr = "127.0.0.1:" + strconv.Itoa(https)
	cfg.HTTPAddr = "127.0.0.1:" + strconv.Itoa(plain)
	cfg.RTMPAddr = "127.0.0.1:0" // not the default :1935 another test may hold
	cfg.UDPPort = 0
	cfg.ICELoopbackOnly = true
	cfg.ICETCPPort = https
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetTerminal(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		_ = srv.Close()
	})
	var caPEM []byte
	testenv.EventuallyState(t, 10*time.Second, "the server's plain listener up", func() (bool, string) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(plain) + "/ca.crt")
		if err != nil {
			return false, err.Error()
		}
		caPEM, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return true, ""
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no CA from /ca.crt: %q", caPEM)
	}
	return srv, https, pool
}

// ICE-TCP on the HTTPS port: peers that cannot use UDP at all publish and
// watch over TCP connections to the port the page came from, and HTTPS
// keeps working beside them.
func TestICETCPSharesHTTPSPort(t *testing.T) {
	_, port, pool := runServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api, err := testpeer.NewAPI(testpeer.Options{NetworkTypes: []webrtc.NetworkType{webrtc.NetworkTypeTCP4}})
	if err != nil {
		t.Fatal(err)
	}
	dialer := &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
	wsURL := "wss://127.0.0.1:" + strconv.Itoa(port) + "/ws"
	dialTLS := func() *testpeer.Client {
		c, err := testpeer.DialWith(ctx, dialer, wsURL, api)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	pub := dialTLS()
	if _, err := pub.Join(ctx, "tcp", "pub"); err != nil {
		t.Fatal(err)
	}
	src, err := testpeer.NewVideoSource("v", "s")
	if err != nil {
		t.Fatal(err)
	}
	tr := &testpeer.Track{Track: src.Track}
	prods, err := pub.Publish(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	stop, srcDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(srcDone); src.Run(stop, 30) }()
	go src.ServeRTCP(tr.Sender)
	defer func() { close(stop); <-srcDone }()

	sub := dialTLS()
	sinks := make(chan *testpeer.Sink, 1)
	sub.OnTrack = func(tr *webrtc.TrackRemote, _ testpeer.Consumer) { sinks <- testpeer.NewSink(tr) }
	if _, err := sub.Join(ctx, "tcp", "sub"); err != nil {
		t.Fatal(err)
	}
	if err := sub.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctx, prods[0].ID); err != nil {
		t.Fatal(err)
	}
	var sink *testpeer.Sink
	select {
	case sink = <-sinks:
	case <-ctx.Done():
		t.Fatalf("no track: publisher ICE %s, subscriber ICE %s", pub.Send.ICEConnectionState(), sub.Recv.ICEConnectionState())
	}
	for len(sink.Got()) < 60 {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d packets", len(sink.Got()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, pc := range []*webrtc.PeerConnection{pub.Send, sub.Recv} {
		p := testpeer.SelectedPair(pc)
		if p == nil || p.Local.Protocol != webrtc.ICEProtocolTCP || p.Remote.Port != uint16(port) || p.Remote.TCPType != "passive" {
			t.Errorf("selected pair %v, want TCP to the HTTPS port %d", p, port)
		}
	}
	// HTTPS on the same port still answers, and so does a plain HTTP
	// request sent there by mistake (with Go's "HTTP to HTTPS" answer).
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://127.0.0.1:" + strconv.Itoa(port) + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPS beside ICE-TCP: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	resp, err = http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/")
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("plain HTTP to the HTTPS port: %v %v", resp, err)
	}
	_ = resp.Body.Close()
}

// With --turn, the join result carries TURN REST credentials of the
// peer's own, for the LAN addresses.
func TestTURNCredentialsInJoin(t *testing.T) {
	_, url := start(t, func(c *config.Config) {
		c.TURN = true
		c.TURNPort = 0
		c.ICEInterfaces = []string{"lo"} // the "LAN" is loopback here
	})
	c := dial(t, url, testpeer.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res struct {
		PeerID     string `json:"peerId"`
		ICEServers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"iceServers"`
	}
	if err := c.Call(ctx, "join", map[string]any{"room": "turn", "name": "a"}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.ICEServers) != 1 {
		t.Fatalf("iceServers %+v", res.ICEServers)
	}
	s := res.ICEServers[0]
	exp, id, ok := strings.Cut(s.Username, ":")
	n, _ := strconv.ParseInt(exp, 10, 64)
	if !ok || id != res.PeerID || time.Until(time.Unix(n, 0)) < 11*time.Hour || s.Credential == "" {
		t.Fatalf("credentials %+v for %s", s, res.PeerID)
	}
	if len(s.URLs) == 0 || !strings.HasPrefix(s.URLs[0], "turn:127.0.0.1:") || !strings.HasSuffix(s.URLs[0], "?transport=udp") {
		t.Fatalf("urls %v", s.URLs)
	}
	// Without --turn: an empty list.
	_, url2 := start(t, nil)
	c2 := dial(t, url2, testpeer.Options{})
	var res2 map[string]json.RawMessage
	if err := c2.Call(ctx, "join", map[string]any{"room": "x", "name": "a"}, &res2); err != nil {
		t.Fatal(err)
	}
	if string(res2["iceServers"]) != "[]" {
		t.Fatalf("iceServers without --turn: %s", res2["iceServers"])
	}
}

// GET /api/lan, /qr.png and /help/trust.
func TestLANEndpoints(t *testing.T) {
	srv, _ := start(t, func(c *config.Config) {
		c.Addr = ":8443"
		c.ICEInterfaces = []string{"lo"}
	})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, body := get("/api/lan?room=movie-night")
	var info struct {
		URLs      []string `json:"urls"`
		Lobby     []string `json:"lobby"`
		QR        string   `json:"qr"`
		CA        string   `json:"ca"`
		CAProfile string   `json:"caProfile"`
		CAPlain   string   `json:"caPlain"`
		Help      string   `json:"help"`
	}
	if err := json.Unmarshal(body, &info); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/api/lan: %s %v", body, err)
	}
	want := []string{"https://127.0.0.1:8443/r/movie-night", "https://[::1]:8443/r/movie-night"}
	if strings.Join(info.URLs, " ") != strings.Join(want, " ") || info.Lobby[0] != "https://127.0.0.1:8443/" {
		t.Errorf("urls %v lobby %v, want %v", info.URLs, info.Lobby, want)
	}
	if info.CA != "/ca.crt" || info.CAProfile != "/ca.mobileconfig" || info.Help != "/help/trust" || info.CAPlain != "http://127.0.0.1:8080/ca.crt" {
		t.Errorf("CA links %+v", info)
	}
	if info.QR != "/qr.png?text="+url.QueryEscape(want[0]) {
		t.Errorf("qr %q", info.QR)
	}

	resp, body = get(info.QR)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("%s: %s %s", info.QR, resp.Status, body)
	}
	if img, err := png.Decode(bytes.NewReader(body)); err != nil || img.Bounds().Dx() != 320 {
		t.Fatalf("qr image: %v", err)
	}
	// Only links to this server: not an open QR generator.
	for _, text := range []string{
		"https://evil.example/r/x",
		"javascript:alert(1)",
		"hello",
		"https://user@127.0.0.1:8443/",
		"",
		"https://127.0.0.1:8443/" + strings.Repeat("x", 600),
	} {
		if resp, _ := get("/qr.png?text=" + url.QueryEscape(text)); resp.StatusCode != 400 {
			t.Errorf("qr of %q: %s, want 400", text, resp.Status)
		}
	}
	if resp, _ := get("/qr.png?size=5000&text=" + url.QueryEscape(want[0])); resp.StatusCode != 400 {
		t.Errorf("qr size 5000: %s", resp.Status)
	}
	// The request's own host counts as this server's.
	if resp, _ := get("/qr.png?text=" + url.QueryEscape(hs.URL+"/r/x")); resp.StatusCode != 200 {
		t.Errorf("qr of the request's host: %s", resp.Status)
	}

	resp, body = get("/help/trust")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/help/trust: %s", resp.Status)
	}
	for _, s := range []string{"Certificate Trust Settings", "Settings › Security", "/ca.mobileconfig", "/ca.crt", "Firefox", "Keychain"} {
		if !bytes.Contains(body, []byte(s)) {
			t.Errorf("help page lacks %q", s)
		}
	}
}

// --announce-ip accepts DNS names (resolved at start) and refuses what is
// neither a name nor an address.
func TestAnnounceDNSName(t *testing.T) {
	start(t, func(c *config.Config) { c.AnnounceIPs = []string{"localhost"} })
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.UDPPort = 0
	cfg.AnnounceIPs = []string{"bad name!"}
	if _, err := server.New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "announce-ip") {
		t.Fatalf("bad announce name: %v", err)
	}
}
