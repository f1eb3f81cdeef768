package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/redistest"
	"github.com/matinee-dev/matinee/server"
	"github.com/redis/go-redis/v9"
)

// clusterNode is one in-process node of a test cluster.
type clusterNode struct {
	srv  *server.Server
	base string // http://127.0.0.1:port
}

// startNode runs a node of the cluster on r, serving plain HTTP on
// loopback (the node URL must be known before the server is made).
func startNode(t *testing.T, r *redistest.Server, id string) *clusterNode {
	t.Helper()
	return startNodeWith(t, r, id, nil)
}

// startNodeWith is startNode with settings of the test's.
func startNodeWith(t testing.TB, r *redistest.Server, id string, edit func(*config.Config)) *clusterNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.UDPPort = 0
	cfg.ICELoopbackOnly = true
	cfg.APIKey = "cluster-test-key"
	cfg.Redis, cfg.NodeID, cfg.NodeURL = r.URL(), id, base
	cfg.ClusterLeaseRenew, cfg.ClusterLeaseTTL = 100*time.Millisecond, 400*time.Millisecond
	// Viewers stay on the node a test sends them to (placement has its
	// own tests: cluster, e2e/cluster TestClusterPlacement).
	cfg.RelayPlaceViewers = false
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(context.Background(), cfg)
	if err != nil {
		_ = ln.Close()
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
	return &clusterNode{srv: srv, base: base}
}

func clusterDo(t *testing.T, method, url string, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer cluster-test-key")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// Two nodes on one Redis: both list the cluster; a room made through
// either node's API lives on exactly one, and the other sends the
// API, WHEP (without --relay-viewers) and the WebSocket join there; a delete through the other
// node frees the id everywhere.
func TestClusterTwoNodes(t *testing.T) {
	r := redistest.Start(t)
	// Without relaying, a WHEP viewer is sent to the room's node as well
	// (--relay-viewers=false; e2e/cluster's TestClusterRelay relays).
	noRelay := func(c *config.Config) { c.RelayViewers, c.RelayMembers = false, false }
	a := startNodeWith(t, r, "a", noRelay)
	b := startNodeWith(t, r, "b", noRelay)
	nodes := map[string]*clusterNode{"a": a, "b": b}

	resp, body := clusterDo(t, "GET", a.base+"/api/cluster", "")
	var st struct {
		Clustered bool
		Self      string
		Nodes     []struct{ ID, URL, State string }
	}
	if err := json.Unmarshal(body, &st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/cluster: %d %s", resp.StatusCode, body)
	}
	if !st.Clustered || st.Self != "a" || len(st.Nodes) != 2 || st.Nodes[0].ID != "a" || st.Nodes[1].URL != b.base || st.Nodes[1].State != "serving" {
		t.Fatalf("cluster %+v", st)
	}

	resp, body = clusterDo(t, "POST", a.base+"/api/rooms", `{"name":"Party","id":"party"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	owner, other := "", ""
	for id, n := range nodes {
		if _, ok := n.srv.Rooms().Room("party"); ok {
			if owner != "" {
				t.Fatal("the room exists on both nodes")
			}
			owner = id
		} else {
			other = id
		}
	}
	if owner == "" {
		t.Fatal("the room exists on no node")
	}
	t.Logf("party placed on %s", owner)
	// The same id again, through either node: taken.
	for _, n := range nodes {
		if resp, body := clusterDo(t, "POST", n.base+"/api/rooms", `{"name":"Party","id":"party"}`); resp.StatusCode != http.StatusConflict {
			t.Errorf("second create: %d %s", resp.StatusCode, body)
		}
	}
	// The API answers about it on the other node too.
	if resp, body := clusterDo(t, "GET", nodes[other].base+"/api/rooms/party", ""); resp.StatusCode != 200 || !strings.Contains(string(body), `"Party"`) {
		t.Errorf("GET through %s: %d %s", other, resp.StatusCode, body)
	}
	// WHEP on the other node: 307 to the owner.
	resp, _ = clusterDo(t, "POST", nodes[other].base+"/whep/party", "v=0")
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != nodes[owner].base+"/whep/party" {
		t.Errorf("WHEP on %s: %d Location %q", other, resp.StatusCode, resp.Header.Get("Location"))
	}
	// So do the room's page and its live HLS.
	for _, path := range []string{"/r/party", "/hls/party/index.m3u8?exp=1&sig=x"} {
		resp, _ = clusterDo(t, "GET", nodes[other].base+path, "")
		if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != nodes[owner].base+path {
			t.Errorf("GET %s on %s: %d Location %q", path, other, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// ?stay: a page fleeing a dead node is served where it asked.
	if resp, _ := clusterDo(t, "GET", nodes[other].base+"/r/party?stay=1", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /r/party?stay=1 on %s: %d, want 200", other, resp.StatusCode)
	}
	// A join on the room's node names the other nodes, for a client whose
	// node stops answering.
	ows, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(nodes[owner].base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ows.Close()
	if err := ows.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "join", "params": map[string]any{"room": "party", "name": "Bo"}}); err != nil {
		t.Fatal(err)
	}
	_ = ows.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var m struct {
			ID     *int
			Result *struct{ Nodes []string }
		}
		if err := ows.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		if m.ID == nil {
			continue
		}
		if m.Result == nil || len(m.Result.Nodes) != 1 || m.Result.Nodes[0] != nodes[other].base {
			t.Fatalf("join result on %s: %+v, want nodes [%s]", owner, m.Result, nodes[other].base)
		}
		break
	}
	ows.Close()
	// A WebSocket join on the other node is told where the room is.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(nodes[other].base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "join", "params": map[string]any{"room": "party", "name": "Ann"}}); err != nil {
		t.Fatal(err)
	}
	var reply struct {
		Error *struct {
			Code int
			Data struct{ Reason, Node, URL string }
		}
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.ReadJSON(&reply); err != nil {
		t.Fatal(err)
	}
	if reply.Error == nil || reply.Error.Code != 1010 || reply.Error.Data.Reason != "moved" || reply.Error.Data.Node != owner || reply.Error.Data.URL != nodes[owner].base {
		t.Fatalf("join on %s: %+v", other, reply.Error)
	}
	// Delete through the other node: gone everywhere, the id is free.
	if resp, body := clusterDo(t, "DELETE", nodes[other].base+"/api/rooms/party", ""); resp.StatusCode/100 != 2 {
		t.Fatalf("delete through %s: %d %s", other, resp.StatusCode, body)
	}
	if _, ok := nodes[owner].srv.Rooms().Room("party"); ok {
		t.Fatal("the room outlived its delete")
	}
	for _, n := range nodes {
		if resp, body := clusterDo(t, "GET", n.base+"/api/rooms/party", ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET after delete: %d %s", resp.StatusCode, body)
		}
	}
	resp, body = clusterDo(t, "POST", nodes[other].base+"/api/rooms", `{"name":"Party","id":"party"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create again after delete: %d %s", resp.StatusCode, body)
	}
}

// wsJoin sends a join on node n's WebSocket and returns the error code
// (0: joined).
func wsJoin(t *testing.T, n *clusterNode, room string) int {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n.base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "join", "params": map[string]any{"room": room, "name": "Ann"}}); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var reply struct {
			ID    *int
			Error *struct{ Code int }
		}
		if err := ws.ReadJSON(&reply); err != nil {
			t.Fatal(err)
		}
		if reply.ID == nil {
			continue
		}
		if reply.Error != nil {
			return reply.Error.Code
		}
		return 0
	}
}

// With open rooms off, a join of a room nobody made is "unknown room",
// and takes no lease or epoch in Redis for its id.
func TestClusterClosedRooms(t *testing.T) {
	r := redistest.Start(t)
	n := startNodeWith(t, r, "a", func(c *config.Config) { c.OpenRooms = false })
	if code := wsJoin(t, n, "nowhere"); code != 1004 {
		t.Fatalf("join of an unknown room: code %d, want 1004", code)
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k != "matinee:node:a" {
			t.Errorf("key %s in Redis after a join of an unknown room", k)
		}
	}
	// A room made through the API can be joined.
	if resp, body := clusterDo(t, "POST", n.base+"/api/rooms", `{"name":"Made","id":"made"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	if code := wsJoin(t, n, "made"); code != 0 {
		t.Fatalf("join of a made room: code %d", code)
	}
}

// Without --redis, GET /api/cluster says so and nothing else changes.
func TestClusterOff(t *testing.T) {
	e := startAPI(t, nil)
	if e.srv.Clustered() {
		t.Fatal("clustered without --redis")
	}
	st, _, body := e.do("GET", "/api/cluster", e.key, nil)
	if st != 200 || !strings.Contains(string(body), `"clustered":false`) {
		t.Fatalf("GET /api/cluster: %d %s", st, body)
	}
	if st, _, _ := e.do("GET", "/api/cluster", "", nil); st != http.StatusUnauthorized {
		t.Fatalf("GET /api/cluster without the key: %d", st)
	}
}
