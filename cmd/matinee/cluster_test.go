package main

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/redistest"
	"github.com/matinee-dev/matinee/server"
	"go.uber.org/goleak"
)

// "matinee cluster status" shows the nodes of a real cluster (one node on
// a real redis-server), and says so when the server runs alone.
func TestClusterStatusCommand(t *testing.T) {
	// Registered first, so it runs after the servers' cleanups.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	r := redistest.Start(t)
	serve := func(clustered bool) (string, string) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.UDPPort = 0
		cfg.ICELoopbackOnly = true
		if clustered {
			cfg.Redis, cfg.NodeID, cfg.NodeURL, cfg.Region = r.URL(), "tv-1", "http://"+ln.Addr().String(), "living-room"
		}
		srv, err := server.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewUnstartedServer(srv.Handler())
		_ = hs.Listener.Close()
		hs.Listener = ln
		hs.Start()
		t.Cleanup(func() {
			_ = srv.Close()
			hs.Close()
		})
		return hs.URL, cfg.DataDir
	}
	status := func(url, dataDir string, extra ...string) string {
		var out, errb bytes.Buffer
		if err := run(append([]string{"cluster", "status", "--server", url, "--data-dir", dataDir}, extra...), &out, &errb); err != nil {
			t.Fatalf("cluster status: %v (%s)", err, errb.String())
		}
		return out.String()
	}
	url, dir := serve(true)
	out := status(url, dir)
	for _, want := range []string{"NODE", "tv-1 *", "serving", "living-room", url, "1 node(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster status lacks %q:\n%s", want, out)
		}
	}
	if js := status(url, dir, "--json"); !strings.Contains(js, `"id":"tv-1"`) {
		t.Errorf("--json: %s", js)
	}
	alone, dir2 := serve(false)
	if out := status(alone, dir2); !strings.Contains(out, "not in a cluster") {
		t.Errorf("alone: %s", out)
	}
	var errb bytes.Buffer
	if err := run([]string{"cluster", "nodes"}, &bytes.Buffer{}, &errb); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown subcommand: %v", err)
	}
}
