// Package redistest starts a real redis-server for a test, on a free
// loopback port, without persistence, and stops it when the test ends.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/testenv"
)

// Server is one redis-server process.
type Server struct {
	// Addr is its host:port on loopback.
	Addr string
	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	dir  string
}

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Start runs redis-server on a free loopback port and stops it at the
// end of the test. Without the binary the test is skipped, unless CI=true,
// where a missing redis-server is a failure (scripts/test installs it).
func Start(t testing.TB) *Server { t.Helper(); return StartOn(t, "127.0.0.1") }

// StartOn is Start listening on ip (an address of this machine, e.g. a
// bridge the test made for nodes in network namespaces).
func StartOn(t testing.TB, ip string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server not found (scripts/test installs Debian's redis-server): %v", err)
		}
		t.Skip("redis-server not installed (apt-get install redis-server)")
	}
	s := &Server{t: t, dir: t.TempDir()}
	s.Addr = net.JoinHostPort(ip, strconv.Itoa(testenv.FreePort(t)))
	s.start(bin)
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(bin string) {
	s.t.Helper()
	host, port, _ := net.SplitHostPort(s.Addr)
	s.cmd = exec.Command(bin, "--port", port, "--bind", host, "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", s.dir)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for !s.ping() {
		select {
		case <-s.done:
			s.t.Fatalf("redis-server on %s exited at start (port taken?)", s.Addr)
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("redis-server on %s did not answer PING within 10s", s.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping reports whether the server answers PING.
func (s *Server) ping() bool {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
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

// Stop kills the server and waits for it to exit; it may be called twice.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart stops the server and starts a new, empty one on the same port:
// everything it held is gone, as after a crash without persistence.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.t.Fatal(err)
	}
	s.start(bin)
}

// String names the server in messages.
func (s *Server) String() string { return fmt.Sprintf("redis-server at %s", s.Addr) }
