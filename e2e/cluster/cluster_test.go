// Package cluster holds the process-level tests of cluster mode: a real
// redis-server and four real matinee processes on loopback, each on
// ports of its own, sharing one CA (docs/cluster.md).
package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/internal/redistest"
	"github.com/redis/go-redis/v9"
)

const apiKey = "cluster-e2e-key"

// cluster is a redis-server, a matinee binary and its nodes.
type cluster struct {
	t      *testing.T
	redis  *redistest.Server
	rdb    *redis.Client
	bin    string
	caroot string
	dir    string
	client *http.Client
	tlsCfg *tls.Config
	nodes  []*node
	// args are added to every node's command line.
	args []string
	// peerIfaces are where the test's pion peers gather (nil: loopback).
	peerIfaces []string
}

// node is one matinee process.
type node struct {
	id   string
	port int
	url  string
	dir  string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	// ns and ip: a node in a network namespace of its own listens on its
	// own address (netns_test.go); otherwise loopback.
	ns, ip string
	// args are this node's own, after the cluster's.
	args []string
}

// newCluster builds matinee once, makes the CA the nodes share and starts
// redis-server.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	return newClusterOn(t, "127.0.0.1")
}

// newClusterOn is newCluster with Redis listening on redisIP.
func newClusterOn(t *testing.T, redisIP string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir()}
	c.redis = redistest.StartOn(t, redisIP)
	c.rdb = redis.NewClient(&redis.Options{Addr: c.redis.Addr})
	t.Cleanup(func() { _ = c.rdb.Close() })
	c.bin = filepath.Join(c.dir, "matinee")
	build := exec.Command("go", "build", "-o", c.bin, "github.com/matinee-dev/matinee/cmd/matinee")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// One CA for every node: "matinee cert" makes it in a data dir, and
	// the nodes sign with it (--ca-dir).
	caDir := filepath.Join(c.dir, "ca-maker")
	cert := exec.Command(c.bin, "cert", "--data-dir", caDir)
	cert.Env = append(os.Environ(), "CAROOT="+filepath.Join(c.dir, "no-mkcert"))
	if out, err := cert.CombinedOutput(); err != nil {
		t.Fatalf("matinee cert: %v\n%s", err, out)
	}
	c.caroot = filepath.Join(caDir, "ca")
	pem, err := os.ReadFile(filepath.Join(c.caroot, "rootCA.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA PEM not parsed")
	}
	c.tlsCfg = &tls.Config{RootCAs: pool}
	c.client = &http.Client{Transport: &http.Transport{TLSClientConfig: c.tlsCfg, MaxIdleConnsPerHost: 64}, Timeout: 20 * time.Second}
	t.Cleanup(c.client.CloseIdleConnections)
	return c
}

// addNode starts a node with a fresh port and data dir, and args of its
// own after the cluster's.
func (c *cluster) addNode(id string, args ...string) *node {
	c.t.Helper()
	port := testenv.FreePort(c.t)
	n := &node{id: id, port: port, url: "https://127.0.0.1:" + strconv.Itoa(port), dir: filepath.Join(c.dir, id), args: args}
	n.log = filepath.Join(c.dir, id+".log")
	c.nodes = append(c.nodes, n)
	c.start(n)
	return n
}

// start runs n's process (again, after a kill, with the same id, port
// and data dir) and waits for its HTTPS port to answer.
func (c *cluster) start(n *node) {
	c.t.Helper()
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	ip, ice := "127.0.0.1", []string{"--ice-loopback-only"}
	if n.ns != "" {
		ip, ice = n.ip, []string{"--ice-interface", "eth0"}
	}
	args := append([]string{"--addr", net.JoinHostPort(ip, strconv.Itoa(n.port)), "--http-addr", "", "--rtmp-addr", "",
		"--udp-port", "0", "--ice-tcp-port", "0", "--data-dir", n.dir, "--api-key", apiKey}, ice...)
	args = append(args,
		"--redis", c.redis.URL(), "--node-id", n.id, "--node-url", n.url, "--region", "test", "--log-format", "json",
		// A member who left is away this long; a draining node waits for it.
		"--reconnect-grace", "1s", "--ca-dir", c.caroot,
		// Viewers and members stay on the node the test sends them to;
		// TestClusterPlacement turns placement on (c.args come after).
		"--relay-place-viewers=false")
	args = append(args, c.args...)
	args = append(args, n.args...)
	n.cmd = exec.Command(c.bin, args...)
	if n.ns != "" {
		// ip netns exec execs matinee in place: the pid is matinee's.
		n.cmd = exec.Command("ip", append([]string{"netns", "exec", n.ns, c.bin}, args...)...)
	}
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		c.t.Fatalf("start node %s: %v", n.id, err)
	}
	n.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}, f *os.File) {
		_ = cmd.Wait()
		_ = f.Close()
		close(done)
	}(n.cmd, n.done, logf)
	c.t.Cleanup(func() { n.kill() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.client.Get(n.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-n.done:
			c.t.Fatalf("node %s exited at start:\n%s", n.id, tail(n.log))
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %s not answering after 30s: %v\n%s", n.id, err, tail(n.log))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// api calls a node's REST API with the admin key.
func (c *cluster) api(method, url string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// localRooms lists the rooms a node holds itself (GET /api/rooms?scope=node
// answers with the node's own rooms).
func (c *cluster) localRooms(n *node) []string {
	c.t.Helper()
	st, b, err := c.api("GET", n.url+"/api/rooms?scope=node", nil)
	if err != nil || st != 200 {
		c.t.Fatalf("list rooms of %s: %d %s %v", n.id, st, b, err)
	}
	var out struct{ Rooms []struct{ ID string } }
	if err := json.Unmarshal(b, &out); err != nil {
		c.t.Fatal(err)
	}
	ids := make([]string, len(out.Rooms))
	for i, r := range out.Rooms {
		ids[i] = r.ID
	}
	return ids
}

// tryLocalRooms is localRooms for a node that may not answer yet.
func (c *cluster) tryLocalRooms(n *node) ([]string, bool) {
	st, b, err := c.api("GET", n.url+"/api/rooms?scope=node", nil)
	if err != nil || st != 200 {
		return nil, false
	}
	var out struct{ Rooms []struct{ ID string } }
	if json.Unmarshal(b, &out) != nil {
		return nil, false
	}
	ids := make([]string, len(out.Rooms))
	for i, r := range out.Rooms {
		ids[i] = r.ID
	}
	return ids, true
}

// leases reads every room lease in Redis: room → holding node.
func (c *cluster) leases() map[string]string {
	c.t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := c.rdb.Scan(ctx, 0, "matinee:room:*", 500).Iterator()
	for iter.Next(ctx) {
		v, err := c.rdb.Get(ctx, iter.Val()).Result()
		if err == redis.Nil {
			continue
		}
		if err != nil {
			c.t.Fatal(err)
		}
		holder, _, _ := strings.Cut(v, "|")
		out[strings.TrimPrefix(iter.Val(), "matinee:room:")] = holder
	}
	if err := iter.Err(); err != nil {
		c.t.Fatal(err)
	}
	return out
}

// keysNaming lists the keys of Redis that name node id, as a key or as a
// lease holder.
func (c *cluster) keysNaming(id string) []string {
	c.t.Helper()
	ctx := context.Background()
	var out []string
	keys, err := c.rdb.Keys(ctx, "*").Result()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, id) {
			out = append(out, k)
			continue
		}
		if v, err := c.rdb.Get(ctx, k).Result(); err == nil && strings.HasPrefix(v, id+"|") {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// join joins room through n's WebSocket; it returns the JSON-RPC error
// when the join is refused.
// joinResult is what the tests read of a join's result.
type joinResult struct {
	PeerID      string `json:"peerId"`
	Role        string `json:"role"`
	ResumeToken string `json:"resumeToken"`
	Resumed     bool   `json:"resumed"`
	Chat        []struct {
		Text string `json:"text"`
	} `json:"chat"`
	Playback struct {
		URL      string  `json:"url"`
		Paused   bool    `json:"paused"`
		Position float64 `json:"position"`
	} `json:"playback"`
}

// firstHeld is the held room of the lowest id, its node, and another.
func (c *cluster) firstHeld(t *testing.T) (room string, holder, other *node) {
	t.Helper()
	id := ""
	for r, h := range c.leases() {
		if room == "" || r < room {
			room, id = r, h
		}
	}
	for _, n := range c.nodes {
		if n.id == id {
			holder = n
		} else if other == nil {
			other = n
		}
	}
	if holder == nil {
		t.Fatalf("%s is held by %q, no such node", room, id)
	}
	return room, holder, other
}

// listed is the set of room ids GET /api/rooms on n lists.
func (c *cluster) listed(t *testing.T, n *node) map[string]bool {
	t.Helper()
	st, b, err := c.api("GET", n.url+"/api/rooms", nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("GET /api/rooms on %s: %d %s %v", n.id, st, b, err)
	}
	var l struct {
		Rooms []struct {
			ID string `json:"id"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range l.Rooms {
		if out[r.ID] {
			t.Errorf("GET /api/rooms on %s lists %s twice", n.id, r.ID)
		}
		out[r.ID] = true
	}
	return out
}

// rpcJoin joins with the given params and returns the socket and result.
func (c *cluster) rpcJoin(n *node, params map[string]any) (*websocket.Conn, joinResult, error) {
	var res joinResult
	d := websocket.Dialer{TLSClientConfig: c.tlsCfg, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("wss"+strings.TrimPrefix(n.url, "https")+"/ws", nil)
	if err != nil {
		return nil, res, err
	}
	if err := ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "join", "params": params}); err != nil {
		ws.Close()
		return nil, res, err
	}
	raw, err := rpcResult(ws, 1)
	if err == nil {
		err = json.Unmarshal(raw, &res)
	}
	if err != nil {
		ws.Close()
		return nil, res, err
	}
	return ws, res, nil
}

// rpcCall calls method and waits for its answer.
func rpcCall(ws *websocket.Conn, id int, method string, params any) error {
	if err := ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params}); err != nil {
		return err
	}
	_, err := rpcResult(ws, id)
	return err
}

// rpcResult reads until the answer to id, skipping notifications.
func rpcResult(ws *websocket.Conn, id int) (json.RawMessage, error) {
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer ws.SetReadDeadline(time.Time{})
	for {
		var msg struct {
			ID     *int            `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := ws.ReadJSON(&msg); err != nil {
			return nil, err
		}
		if msg.ID == nil || *msg.ID != id {
			continue
		}
		if msg.Error != nil {
			return nil, fmt.Errorf("%s: %s", "call", msg.Error)
		}
		return msg.Result, nil
	}
}

func (c *cluster) join(n *node, room string) (*websocket.Conn, error) {
	d := websocket.Dialer{TLSClientConfig: c.tlsCfg, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("wss"+strings.TrimPrefix(n.url, "https")+"/ws", nil)
	if err != nil {
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "join", "params": map[string]any{"room": room, "name": "Joiner"}}); err != nil {
		ws.Close()
		return nil, err
	}
	for {
		var msg struct {
			ID     *int            `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := ws.ReadJSON(&msg); err != nil {
			ws.Close()
			return nil, err
		}
		if msg.ID == nil {
			continue // a notification
		}
		if msg.Error != nil {
			ws.Close()
			return nil, fmt.Errorf("join: %s", msg.Error)
		}
		_ = ws.SetReadDeadline(time.Time{})
		return ws, nil
	}
}

// joinStays joins room through n and checks that n keeps the member
// (members stay on the node they reached, --relay-members, the default)
// while the room stays on holder: n opens no room of its own.
func (c *cluster) joinStays(t *testing.T, n *node, room, holder string) *websocket.Conn {
	t.Helper()
	ws, err := c.join(n, room)
	if err != nil {
		t.Fatalf("join %s on %s: %v, want served there (the room on %s)", room, n.id, err, holder)
	}
	if slices.Contains(c.localRooms(n), room) {
		ws.Close()
		t.Fatalf("%s opened %s itself, want its member relayed to %s", n.id, room, holder)
	}
	if h := c.leases()[room]; h != holder {
		ws.Close()
		t.Fatalf("%s held by %q after a join through %s, want %s", room, h, n.id, holder)
	}
	return ws
}

// (a) 200 rooms made at once through the REST APIs of four nodes: each
// exists exactly once, on the node its lease names, and the busiest node
// holds at most 1.5 times the rooms of the least busy.
// (b) kill -9 of a node: within 10 s its room can be joined on another
// node, with its settings, and after the lease time no key in Redis
// names the dead node. Five kills give the median time.
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and four matinee processes")
	}
	c := newCluster(t)
	for i := 1; i <= 4; i++ {
		c.addNode("n" + strconv.Itoa(i))
	}

	t.Run("burst", func(t *testing.T) {
		const rooms = 200
		var wg sync.WaitGroup
		errs := make(chan error, rooms)
		start := time.Now()
		for i := range rooms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := c.nodes[i%len(c.nodes)]
				st, b, err := c.api("POST", n.url+"/api/rooms", map[string]any{"name": fmt.Sprintf("Room %d", i), "id": fmt.Sprintf("room-%d", i)})
				if err != nil || st != http.StatusCreated {
					errs <- fmt.Errorf("create room-%d on %s: %d %s %v", i, n.id, st, b, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		t.Logf("%d rooms created through %d nodes in %s", rooms, len(c.nodes), time.Since(start).Round(time.Millisecond))
		where := map[string]string{}
		per := map[string]int{}
		for _, n := range c.nodes {
			for _, id := range c.localRooms(n) {
				if other, dup := where[id]; dup {
					t.Errorf("room %s exists on %s and %s", id, other, n.id)
				}
				where[id] = n.id
				per[n.id]++
			}
		}
		if len(where) != rooms {
			t.Errorf("%d rooms exist, want %d", len(where), rooms)
		}
		for id, holder := range c.leases() {
			if where[id] != holder {
				t.Errorf("lease of %s names %s, the room is on %q", id, holder, where[id])
			}
		}
		// Any node lists every room of the cluster.
		for _, n := range c.nodes {
			if got := c.listed(t, n); len(got) != rooms {
				t.Errorf("GET /api/rooms on %s lists %d rooms, want %d", n.id, len(got), rooms)
			}
		}
		lo, hi := rooms, 0
		for _, n := range c.nodes {
			lo, hi = min(lo, per[n.id]), max(hi, per[n.id])
		}
		t.Logf("rooms per node after the burst: %v (busiest/least busy %.2f)", per, float64(hi)/float64(max(lo, 1)))
		if float64(hi) > 1.5*float64(lo) {
			t.Errorf("rooms per node %v: the busiest holds more than 1.5x the least busy", per)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("kill", func(t *testing.T) {
		var took []time.Duration
		for round := range 5 {
			// A room held now (the rooms of nodes killed before wait,
			// unheld, for their next join).
			room, dead, alive := c.firstHeld(t)
			dead.kill()
			killed := time.Now()
			// Its rooms stay listed (from their records) while no node
			// holds them.
			if got := c.listed(t, alive); !got[room] || len(got) < 200 {
				t.Errorf("round %d: with %s dead, %s lists %d rooms (%s among them: %v)", round, dead.id, alive.id, len(got), room, got[room])
			}
			pttl, _ := c.rdb.PTTL(context.Background(), "matinee:room:"+room).Result()
			t.Logf("round %d: %s's lease has %s left at the kill", round, room, pttl)
			var lastErr error
			for {
				ws, err := c.join(alive, room)
				if err == nil {
					ws.Close()
					break
				}
				lastErr = err
				if time.Since(killed) > 15*time.Second {
					t.Fatalf("round %d: %s not joinable on %s 15s after kill -9 of %s: %v", round, room, alive.id, dead.id, lastErr)
				}
				time.Sleep(100 * time.Millisecond)
			}
			d := time.Since(killed)
			took = append(took, d)
			t.Logf("round %d: kill -9 of %s → %s joinable on %s after %s (last refusal: %v)", round, dead.id, room, alive.id, d.Round(time.Millisecond), lastErr)
			if d > 10*time.Second {
				t.Errorf("round %d: %s took %s to be joinable again, want <= 10s", round, room, d)
			}
			// It came back with its settings, from its record.
			if st, b, err := c.api("GET", alive.url+"/api/rooms/"+room, nil); err != nil || st != 200 || !strings.Contains(string(b), `"name":"Room `+strings.TrimPrefix(room, "room-")+`"`) {
				t.Errorf("round %d: GET %s on %s: %d %s %v", round, room, alive.id, st, b, err)
			}
			// After the lease time, nothing in Redis names the dead node.
			for {
				left := c.keysNaming(dead.id)
				if len(left) == 0 {
					t.Logf("round %d: no key names %s %s after the kill", round, dead.id, time.Since(killed).Round(time.Millisecond))
					break
				}
				if time.Since(killed) > 6*time.Second+time.Second {
					t.Fatalf("round %d: keys still name %s %s after its kill: %v", round, dead.id, time.Since(killed).Round(time.Millisecond), left)
				}
				time.Sleep(100 * time.Millisecond)
			}
			c.start(dead) // back for the next round, same id and port
		}
		sorted := append([]time.Duration(nil), took...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		t.Logf("kill -9 to joinable elsewhere: %v, median %s", took, sorted[len(sorted)/2].Round(time.Millisecond))
	})

	t.Run("state", func(t *testing.T) {
		// A party on one node: Ana (host) plays a film, Bo chats. kill -9
		// of the node; on another node Bo comes back first, then Ana: the
		// chat and the film (paused where it was) are there, and Ana is
		// host again, by the resume tokens of their last joins.
		const room = "party-state"
		x, y := c.nodes[0], c.nodes[1]
		ana, anaRes, err := c.rpcJoin(x, map[string]any{"room": room, "name": "Ana"})
		if err != nil {
			t.Fatalf("Ana joins on %s: %v", x.id, err)
		}
		defer ana.Close()
		bo, boRes, err := c.rpcJoin(x, map[string]any{"room": room, "name": "Bo"})
		if err != nil {
			t.Fatal(err)
		}
		defer bo.Close()
		if anaRes.Role != "host" || boRes.Role != "guest" {
			t.Fatalf("roles on %s: Ana %s, Bo %s", x.id, anaRes.Role, boRes.Role)
		}
		if err := rpcCall(bo, 2, "chat", map[string]any{"text": "before the kill"}); err != nil {
			t.Fatal(err)
		}
		if err := rpcCall(ana, 2, "playback", map[string]any{"action": "load", "url": "/media/film.mp4", "duration": 600}); err != nil {
			t.Fatal(err)
		}
		if err := rpcCall(ana, 3, "playback", map[string]any{"action": "play"}); err != nil {
			t.Fatal(err)
		}
		testenv.EventuallyState(t, 5*time.Second, "the party's state in Redis", func() (bool, string) {
			v, _ := c.rdb.Get(context.Background(), "matinee:state:"+room).Result()
			return strings.Contains(v, "before the kill") && strings.Contains(v, `"paused":false`), v
		})
		x.kill()
		killed := time.Now()
		var back joinResult
		for {
			ws, res, err := c.rpcJoin(y, map[string]any{"room": room, "name": "Bo", "resume": boRes.ResumeToken})
			if err == nil {
				defer ws.Close()
				back = res
				break
			}
			if time.Since(killed) > 15*time.Second {
				t.Fatalf("%s not joinable on %s 15s after kill -9 of %s: %v", room, y.id, x.id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("kill -9 of %s → Bo back in %s on %s after %s", x.id, room, y.id, time.Since(killed).Round(time.Millisecond))
		if !back.Resumed || back.PeerID != boRes.PeerID || back.Role != "guest" {
			t.Errorf("Bo on %s: resumed %v, peer %s (was %s), role %s", y.id, back.Resumed, back.PeerID, boRes.PeerID, back.Role)
		}
		if len(back.Chat) != 1 || back.Chat[0].Text != "before the kill" {
			t.Errorf("chat on %s: %+v", y.id, back.Chat)
		}
		if p := back.Playback; p.URL != "/media/film.mp4" || !p.Paused || p.Position <= 0 {
			t.Errorf("playback on %s: %+v (want the film, paused where it was)", y.id, p)
		}
		ws, res, err := c.rpcJoin(y, map[string]any{"room": room, "name": "Ana", "resume": anaRes.ResumeToken})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if !res.Resumed || res.Role != "host" {
			t.Errorf("Ana on %s: resumed %v, role %q, want host again", y.id, res.Resumed, res.Role)
		}
		c.start(x)
	})

	t.Run("paused", func(t *testing.T) {
		// A node frozen past its lease (SIGSTOP: as cut off from Redis)
		// loses its room to another node, and once it runs again it
		// learns so and stops serving the room: never two nodes.
		room, p, q := c.firstHeld(t)
		if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		for {
			ws, err := c.join(q, room)
			if err == nil {
				ws.Close()
				break
			}
			if time.Since(stopped) > 15*time.Second {
				t.Fatalf("%s not joinable on %s 15s after %s froze: %v", room, q.id, p.id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("%s froze; %s joinable on %s after %s", p.id, room, q.id, time.Since(stopped).Round(time.Millisecond))
		if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		resumed := time.Now()
		for slices.Contains(c.localRooms(p), room) {
			if time.Since(resumed) > 5*time.Second {
				t.Fatalf("%s still serves %s 5s after it runs again", p.id, room)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("%s dropped %s %s after it ran again", p.id, room, time.Since(resumed).Round(time.Millisecond))
		if h := c.leases()[room]; h != q.id {
			t.Errorf("%s's lease names %q, want %s", room, h, q.id)
		}
		// A join through p after it lost the room: p keeps the member,
		// a member of the room on q.
		c.joinStays(t, p, room, q.id).Close()
	})

	t.Run("redis-restart", func(t *testing.T) {
		// Redis away: a new room cannot be placed, and the error says
		// why; Redis back (empty): the nodes register again and assert
		// their leases, and joins work.
		// Rooms for the nodes to hold (those of the nodes killed above
		// wait, unheld, for a join), then the node holding the most.
		for i := range 30 {
			id := fmt.Sprintf("rr-%d", i)
			if st, b, err := c.api("POST", c.nodes[i%3].url+"/api/rooms", map[string]any{"name": id, "id": id}); err != nil || st != http.StatusCreated {
				t.Fatalf("create %s: %d %s %v", id, st, b, err)
			}
		}
		var n *node
		var held []string
		for _, m := range c.nodes {
			if ids := c.localRooms(m); n == nil || len(ids) > len(held) {
				n, held = m, ids
			}
		}
		if len(held) == 0 {
			t.Fatal("no node holds a room")
		}
		c.redis.Stop()
		_, err := c.join(n, "while-redis-away")
		if err == nil || !strings.Contains(err.Error(), "1011") || !strings.Contains(err.Error(), "Redis") {
			t.Fatalf("join with Redis away: %v", err)
		}
		c.redis.Restart()
		back := time.Now()
		for {
			all := true
			for _, m := range c.nodes {
				if c.state(n, m.id) != "serving" {
					all = false
				}
			}
			leases := c.leases()
			for _, id := range held {
				// Its lease, its record and its party state (written
				// again).
				rec, _ := c.rdb.HExists(context.Background(), "matinee:rooms", id).Result()
				state, _ := c.rdb.Exists(context.Background(), "matinee:state:"+id).Result()
				if leases[id] != n.id || !rec || state != 1 {
					all = false
				}
			}
			if all {
				break
			}
			if time.Since(back) > 10*time.Second {
				t.Fatalf("10s after Redis came back: registry or leases not restored (leases %v)", leases)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("nodes, and %d leases, records and states of %s, back %s after Redis restarted", len(held), n.id, time.Since(back).Round(time.Millisecond))
		ws, err := c.join(n, "while-redis-away")
		if err != nil {
			t.Fatalf("join once Redis is back: %v", err)
		}
		ws.Close()
	})

	t.Run("drain", func(t *testing.T) {
		x, other := c.nodes[0], c.nodes[1]
		member, err := c.join(x, "drain-room")
		if err != nil {
			t.Fatalf("join drain-room on %s: %v", x.id, err)
		}
		defer member.Close()
		if err := x.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// The registry says draining; new rooms go elsewhere; the
		// member stays connected.
		deadline := time.Now().Add(5 * time.Second)
		for c.state(other, x.id) != "draining" {
			if time.Now().After(deadline) {
				t.Fatalf("%s not draining in the registry 5s after SIGTERM", x.id)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for i := range 20 {
			id := fmt.Sprintf("after-drain-%d", i)
			if st, b, err := c.api("POST", x.url+"/api/rooms", map[string]any{"name": id, "id": id}); err != nil || st != http.StatusCreated {
				t.Fatalf("create %s through the draining node: %d %s %v", id, st, b, err)
			}
			if holder := c.leases()[id]; holder == x.id || holder == "" {
				t.Fatalf("%s placed on %q while %s drains", id, holder, x.id)
			}
		}
		// A join through another node: that node keeps the member, one
		// of the draining node's room (not a second copy of the room).
		own := c.joinStays(t, other, "drain-room", x.id)
		defer own.Close()
		select {
		case <-x.done:
			t.Fatalf("%s exited with members still in its room", x.id)
		default:
		}
		left := time.Now()
		member.Close()
		own.Close()
		select {
		case <-x.done:
			t.Logf("%s exited %s after its last member left", x.id, time.Since(left).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still running 10s after its last member left:\n%s", x.id, tail(x.log))
		}
		if left := c.keysNaming(x.id); len(left) != 0 {
			t.Errorf("keys still name %s after it drained and exited: %v", x.id, left)
		}

		// A second SIGTERM stops a draining node at once.
		c.start(x)
		member, err = c.join(x, "drain-room-2")
		if err != nil {
			t.Fatal(err)
		}
		defer member.Close()
		_ = x.cmd.Process.Signal(syscall.SIGTERM)
		for c.state(other, x.id) != "draining" {
			time.Sleep(20 * time.Millisecond)
		}
		second := time.Now()
		_ = x.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-x.done:
			t.Logf("%s exited %s after the second SIGTERM", x.id, time.Since(second).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still running 10s after a second SIGTERM", x.id)
		}
	})
}

// state is node id's state in the registry, as node n's /api/cluster
// shows it ("" when absent).
func (c *cluster) state(n *node, id string) string {
	c.t.Helper()
	st, b, err := c.api("GET", n.url+"/api/cluster", nil)
	if err != nil || st != 200 {
		c.t.Fatalf("GET /api/cluster on %s: %d %s %v", n.id, st, b, err)
	}
	var out struct{ Nodes []struct{ ID, State string } }
	if err := json.Unmarshal(b, &out); err != nil {
		c.t.Fatal(err)
	}
	for _, nd := range out.Nodes {
		if nd.ID == id {
			return nd.State
		}
	}
	return ""
}
