package lan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/server"
)

// needNetns checks for root and the tools that build the phone's network.
func needNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Need(t, "needs root to create network namespaces, veth links and nftables rules (run as root, or in CI)")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Need(t, fmt.Sprintf("%s not found: install the Debian packages iproute2 and nftables", bin))
		}
	}
}

// sh runs a command and fails the test with its output when it fails.
func sh(t *testing.T, stdin string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// quiet runs a cleanup command; failures are only logged.
func quiet(t *testing.T, args ...string) {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Logf("cleanup %s: %v %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

var netSeq atomic.Int32

// phoneNet is a network namespace (the phone) and a veth pair between it
// and the host, on a private /24 of its own.
type phoneNet struct {
	ns        string
	hostLink  string // host end; its name must pass lanaddr's filter
	phoneLink string
	hostIP    string
	phoneIP   string
}

// newPhoneNet builds the phone's network. Everything it makes is removed
// when the test ends, whether it passed or not.
func newPhoneNet(t *testing.T) *phoneNet {
	t.Helper()
	needNetns(t)
	pid, n := os.Getpid(), int(netSeq.Add(1))
	// 10.<64-191>.<1-250>.0/24, different for each test of this process
	// and, by the PID, most likely from other runs on the machine too.
	o2 := 64 + pid%128
	o3 := (pid/128*16+n)%250 + 1
	p := &phoneNet{
		ns:        fmt.Sprintf("mphone-%d-%d", pid, n),
		hostLink:  fmt.Sprintf("mh%d-%d", pid, n),
		phoneLink: fmt.Sprintf("mp%d-%d", pid, n),
		hostIP:    fmt.Sprintf("10.%d.%d.1", o2, o3),
		phoneIP:   fmt.Sprintf("10.%d.%d.2", o2, o3),
	}
	sh(t, "", "ip", "netns", "add", p.ns)
	t.Cleanup(func() { quiet(t, "ip", "netns", "del", p.ns) })
	sh(t, "", "ip", "link", "add", p.hostLink, "type", "veth", "peer", "name", p.phoneLink)
	t.Cleanup(func() {
		// Deleting one end deletes the pair; the phone's end may already
		// be gone with its namespace.
		if exec.Command("ip", "link", "show", p.hostLink).Run() == nil {
			quiet(t, "ip", "link", "del", p.hostLink)
		}
	})
	sh(t, "", "ip", "link", "set", p.phoneLink, "netns", p.ns)
	sh(t, "", "ip", "addr", "add", p.hostIP+"/24", "dev", p.hostLink)
	sh(t, "", "ip", "link", "set", p.hostLink, "up")
	sh(t, "", "ip", "netns", "exec", p.ns, "ip", "addr", "add", p.phoneIP+"/24", "dev", p.phoneLink)
	sh(t, "", "ip", "netns", "exec", p.ns, "ip", "link", "set", p.phoneLink, "up")
	sh(t, "", "ip", "netns", "exec", p.ns, "ip", "link", "set", "lo", "up")
	// The link is up once the phone can reach the host.
	deadline := time.Now().Add(5 * time.Second)
	for exec.Command("ip", "netns", "exec", p.ns, "ping", "-c1", "-W1", p.hostIP).Run() != nil {
		if _, err := exec.LookPath("ping"); err != nil || time.Now().After(deadline) {
			break // no ping: the first request will wait instead
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p
}

// nftTable is the phone's firewall table.
const nftTable = "matinee_phone"

// firewall loads rules into the phone's output path: each rule is an nft
// statement such as "meta l4proto udp drop". Loopback stays open.
func (p *phoneNet) firewall(t *testing.T, rules ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n chain out {\n  type filter hook output priority 0; policy accept;\n  oifname \"lo\" accept\n", nftTable)
	for _, r := range rules {
		fmt.Fprintf(&b, "  %s\n", r)
	}
	b.WriteString(" }\n}\n")
	sh(t, b.String(), "ip", "netns", "exec", p.ns, "nft", "-f", "-")
	t.Cleanup(func() { quiet(t, "ip", "netns", "exec", p.ns, "nft", "delete", "table", "inet", nftTable) })
}

// lanServer is a running Matinee server on the host end of a phoneNet.
type lanServer struct {
	srv       *server.Server
	cfg       config.Config
	host      string
	httpsPort int
	httpPort  int
	logs      *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer runs the whole server (HTTPS, plain HTTP, media) on the
// host's veth address, with ICE on the veth alone and ICE-TCP sharing the
// HTTPS port. The veth must exist first: the media worker listens on the
// addresses there are when it starts.
func startServer(t *testing.T, p *phoneNet, edit func(*config.Config)) *lanServer {
	t.Helper()
	// No mkcert CA of this machine's: the server makes its own.
	t.Setenv("CAROOT", t.TempDir())
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	https, plain := testenv.FreePort(t), testenv.FreePort(t)
	cfg.Addr = net.JoinHostPort(p.hostIP, strconv.Itoa(https))
	cfg.HTTPAddr = net.JoinHostPort(p.hostIP, strconv.Itoa(plain))
	cfg.RTMPAddr = "" // not the default :1935 another node would hold
	cfg.UDPPort = 0
	cfg.ICETCPPort = https
	cfg.ICEInterfaces = []string{p.hostLink}
	cfg.TURNPort = 0
	if edit != nil {
		edit(&cfg)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := server.NewWithLogger(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	srv.SetTerminal(logs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	ls := &lanServer{srv: srv, cfg: cfg, host: p.hostIP, httpsPort: https, httpPort: plain, logs: logs}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server run: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	// Ready when the plain listener answers (Run opens HTTPS first).
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(ls.plainURL("/healthz"))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("server stopped: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ls
}

func (s *lanServer) plainURL(path string) string {
	return "http://" + net.JoinHostPort(s.host, strconv.Itoa(s.httpPort)) + path
}

func (s *lanServer) httpsURL(path string) string {
	return "https://" + net.JoinHostPort(s.host, strconv.Itoa(s.httpsPort)) + path
}

// phoneJob is what the phone process does (phone_test.go).
type phoneJob struct {
	Mode      string `json:"mode"` // "trust" or "media"
	Host      string `json:"host"`
	HTTPPort  int    `json:"httpPort"`
	HTTPSPort int    `json:"httpsPort"`
	Interface string `json:"interface"`
	Room      string `json:"room"`
	// TCP lets the phone's ICE use TCP too; Relay allows only relayed
	// candidates (RTCConfiguration.iceTransportPolicy "relay").
	TCP   bool `json:"tcp"`
	Relay bool `json:"relay"`
	// watch (congestion_test.go)
	Subs    int `json:"subs"`
	Bitrate int `json:"bitrate"`
	Seconds int `json:"seconds"`
	Packets int `json:"packets"` // measure this many, then stop
	Burn    int `json:"burn"`    // busy goroutines on the phone
}

// pairInfo is one selected ICE candidate pair, from the phone's side.
type pairInfo struct {
	LocalType     string `json:"localType"`
	LocalProto    string `json:"localProto"`
	RelayProto    string `json:"relayProto"` // TURN client transport of a relay candidate
	RemoteType    string `json:"remoteType"`
	RemoteProto   string `json:"remoteProto"`
	RemoteAddr    string `json:"remoteAddr"`
	RemotePort    int    `json:"remotePort"`
	RemoteTCPType string `json:"remoteTcpType"`
}

// phoneResult is what the phone process reports.
type phoneResult struct {
	Err string `json:"err"`
	// trust
	CAName   string `json:"caName"`
	Verified string `json:"verified"` // the name the HTTPS certificate was verified for
	Redirect string `json:"redirect"`
	HelpOK   bool   `json:"helpOk"`
	// media
	Sent       int              `json:"sent"`
	Received   int              `json:"received"`
	Matching   int              `json:"matching"` // received payloads that were sent
	Pub        pairInfo         `json:"pub"`
	Sub        pairInfo         `json:"sub"`
	ICEServers []map[string]any `json:"iceServers"`
	Candidates []string         `json:"candidates"` // the server's, as trickled
	// watch: video packets sent in the measured window, and each
	// subscriber's share of them and pause notices
	SubGot    []int `json:"subGot"`
	SubPaused []int `json:"subPaused"`
}

const resultPrefix = "PHONE-RESULT "

// runPhone runs job in the phone's namespace, in a child process.
func runPhone(t *testing.T, p *phoneNet, job phoneJob) phoneResult {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if job.Interface == "" {
		job.Interface = p.phoneLink
	}
	b, _ := json.Marshal(job)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", p.ns, self, "-test.count=1", "-test.timeout=80s")
	cmd.Env = append(os.Environ(), phoneEnv+"="+string(b))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	for _, line := range strings.Split(stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, resultPrefix); ok {
			var res phoneResult
			if err := json.Unmarshal([]byte(rest), &res); err != nil {
				t.Fatalf("phone result %q: %v", rest, err)
			}
			if res.Err != "" {
				t.Fatalf("phone (%s): %s\n%s%s", job.Mode, res.Err, stdout.String(), stderr.String())
			}
			return res
		}
	}
	t.Fatalf("phone (%s) reported nothing: %v\n%s%s", job.Mode, runErr, stdout.String(), stderr.String())
	return phoneResult{}
}
