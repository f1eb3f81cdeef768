package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/matinee-dev/matinee/bench/internal/loadpeer"
	"github.com/matinee-dev/matinee/bench/internal/netns"
)

// proc is one process the benchmark started: redis-server or a node.
type proc struct {
	name string
	cmd  *exec.Cmd
	pid  int
	log  string
	done chan struct{}
}

// launch starts argv with its output in logPath; it dies with this
// process.
func launch(name, logPath string, argv, env []string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, pid: cmd.Process.Pid, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// kill ends the process at once (a node of a cluster drains on SIGTERM,
// which the benchmark does not measure) and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// cluster is one scenario's redis-server and nodes: the origin in ns[0],
// edges in the next namespaces, all on one bridge; Redis on the
// bridge's address. Everything is fresh for each scenario, so that no
// lease or pipe of the one before is left.
type cluster struct {
	dir    string
	key    string
	redis  *proc
	origin *node
	edges  []*node
	hc     *http.Client
}

// node is one matinee process in its namespace.
type node struct {
	*proc
	id  string
	ns  *netns.NS
	url string
}

// startCluster starts Redis and 1+edges nodes, the origin pinned to
// o.cpuOrigin and the edges to cpuEdges, and waits until every node is
// registered and sees the others.
func startCluster(ctx context.Context, o options, br *netns.Bridge, nss []*netns.NS, edges, cpuEdges, viewersPerNode int) (_ *cluster, err error) {
	dir, err := os.MkdirTemp("", "relaybench-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, key: randomHex(16)}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	port, err := freePort(br.HostIP)
	if err != nil {
		return nil, err
	}
	redisAddr := net.JoinHostPort(br.HostIP, strconv.Itoa(port))
	c.redis, err = launch("redis-server", filepath.Join(dir, "redis.log"), []string{o.redisServer, "--port", strconv.Itoa(port), "--bind", br.HostIP,
		"--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", dir}, nil)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, c.redis, 10*time.Second, func() bool { return redisPing(redisAddr) }); err != nil {
		return nil, err
	}
	redisURL := "redis://" + redisAddr + "/0"
	// The origin makes its own CA (none of this machine's: CAROOT points
	// nowhere); the edges sign with it, so one pool trusts them all.
	c.origin, err = c.startNode(ctx, o, "origin", nss[0], o.cpuOrigin, redisURL, "", viewersPerNode)
	if err != nil {
		return nil, err
	}
	caDir := filepath.Join(dir, "origin", "ca")
	for i := range edges {
		e, err := c.startNode(ctx, o, fmt.Sprintf("edge%d", i+1), nss[1+i], cpuEdges, redisURL, caDir, viewersPerNode)
		if err != nil {
			return nil, err
		}
		c.edges = append(c.edges, e)
	}
	// Every node registered, as the origin sees the cluster: an edge
	// relays only a room whose node is alive in the registry.
	for _, n := range c.nodes() {
		err := waitFor(ctx, n.proc, 20*time.Second, func() bool {
			b, err := c.get(c.origin.url + "/api/cluster")
			return err == nil && strings.Contains(string(b), `"id":"`+n.id+`"`)
		})
		if err != nil {
			return nil, fmt.Errorf("%s not registered: %w", n.id, err)
		}
	}
	return c, nil
}

func (c *cluster) nodes() []*node { return append([]*node{c.origin}, c.edges...) }

// startNode runs a node in ns, listening on its address with HTTPS only,
// ICE on eth0, room for viewersPerNode WHEP viewers.
func (c *cluster) startNode(ctx context.Context, o options, id string, ns *netns.NS, cpu int, redisURL, caDir string, viewersPerNode int) (*node, error) {
	data := filepath.Join(c.dir, id)
	addr := net.JoinHostPort(ns.IP, "8443")
	n := &node{id: id, ns: ns, url: "https://" + addr}
	args := []string{o.matinee, "--addr", addr, "--http-addr", "", "--rtmp-addr", "", "--udp-port", "0", "--ice-tcp-port", "0",
		"--ice-interface", "eth0", "--data-dir", data, "--api-key", c.key, "--log-level", "warn",
		"--max-peers", strconv.Itoa(viewersPerNode + 10), "--whep-max-viewers", strconv.Itoa(viewersPerNode + 10),
		"--redis", redisURL, "--node-id", id, "--node-url", n.url, "--region", "bench", "--relay-idle-grace", "1s",
		// The runs put each viewer on a node of their choosing (an edge's
		// viewers are the point): placement would send them to the origin.
		"--relay-place-viewers=false"}
	if caDir != "" {
		args = append(args, "--ca-dir", caDir)
	}
	var err error
	n.proc, err = launch(id, data+".log", ns.Wrap(cpu, args), []string{"CAROOT=" + filepath.Join(c.dir, "no-mkcert")})
	if err != nil {
		return nil, err
	}
	ready := func() bool {
		if c.hc == nil {
			pem, err := os.ReadFile(filepath.Join(c.dir, "origin", "ca", "rootCA.pem"))
			if err != nil {
				return false
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return false
			}
			c.hc = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 64},
				// A viewer sent elsewhere (307) is not served where it
				// asked: the benchmark counts it as a failure.
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		}
		resp, err := c.hc.Get(n.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if err := waitFor(ctx, n.proc, 30*time.Second, ready); err != nil {
		n.kill()
		return nil, err
	}
	return n, nil
}

// get reads a node's URL with the API key.
func (c *cluster) get(url string) ([]byte, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, err
}

// metrics reads a node's /metrics.
func (c *cluster) metrics(n *node) (map[string]float64, error) {
	return loadpeer.Scrape(c.hc, n.url, c.key)
}

// stop kills the nodes and Redis and removes the scenario's directory.
func (c *cluster) stop() {
	for _, n := range c.edges {
		n.kill()
	}
	if c.origin != nil {
		c.origin.kill()
	}
	if c.redis != nil {
		c.redis.kill()
	}
	if c.hc != nil {
		c.hc.CloseIdleConnections()
	}
	os.RemoveAll(c.dir)
}

// waitFor polls ok every 50 ms until it holds, p exits or d passes.
func waitFor(ctx context.Context, p *proc, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited:\n%s", p.name, tail(p.log))
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("not within %v", d)
			if p != nil {
				msg += "\n" + tail(p.log)
			}
			return fmt.Errorf("%s", msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// freePort returns a TCP port free on ip right now.
func freePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
