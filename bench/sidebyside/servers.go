package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/matinee-dev/matinee/bench/internal/loadpeer"
	"github.com/matinee-dev/matinee/bench/internal/netns"
	"github.com/pion/webrtc/v4"
)

// instance is one running server under test, fresh for each round.
type instance struct {
	pid     int
	cmd     *exec.Cmd
	done    chan struct{}
	dir     string
	log     string
	hc      *http.Client
	whipURL string
	token   string
	// view connects viewer i; the returned function closes it.
	view func(ctx context.Context, api *webrtc.API, i int, onTrack func(*webrtc.TrackRemote)) (func(), error)
}

// launch starts argv (already wrapped for its namespace and CPU) with its
// output in dir/server.log; the server dies with this process.
func launch(dir string, argv, env []string) (*instance, error) {
	in := &instance{dir: dir, log: filepath.Join(dir, "server.log"), done: make(chan struct{})}
	f, err := os.Create(in.log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	in.cmd, in.pid = cmd, cmd.Process.Pid
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(in.done)
	}()
	return in, nil
}

// waitReady polls ok until it answers true, the server exits or the
// deadline passes.
func (in *instance) waitReady(ctx context.Context, what string, ok func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		select {
		case <-in.done:
			return fmt.Errorf("%s exited at start:\n%s", what, tail(in.log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30 s:\n%s", what, tail(in.log))
		}
	}
	return nil
}

// stop ends the server (SIGTERM, then SIGKILL after 5 s) and removes its
// directory.
func (in *instance) stop() {
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(5 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.done
	}
	os.RemoveAll(in.dir)
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// freePort returns a TCP port free on loopback right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// serverAddr is where a server listens: inside its namespace on a fixed
// port, else on a free loopback port.
func serverAddr(ns *netns.NS) (string, error) {
	if ns != nil {
		return net.JoinHostPort(ns.IP, "8443"), nil
	}
	p, err := freePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// startMatinee runs the Matinee binary with its own CA, HTTPS only, one
// UDP port, ICE on the namespace's eth0 (or loopback), and room for n
// viewers.
func startMatinee(ctx context.Context, bin string, ns *netns.NS, cpu, n int) (*instance, error) {
	dir, err := os.MkdirTemp("", "sidebyside-matinee-")
	if err != nil {
		return nil, err
	}
	addr, err := serverAddr(ns)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	key := randomHex(16)
	data := filepath.Join(dir, "data")
	args := []string{bin, "--addr", addr, "--http-addr", "", "--rtmp-addr", "", "--udp-port", "0", "--ice-tcp-port", "0",
		"--data-dir", data, "--api-key", key, "--max-peers", strconv.Itoa(n + 10), "--whep-max-viewers", strconv.Itoa(n + 10),
		"--log-level", "warn"}
	if ns != nil {
		args = append(args, "--ice-interface", "eth0")
	} else {
		args = append(args, "--ice-loopback-only")
	}
	// No mkcert CA of this machine's: the server makes its own in its
	// data dir, which the clients then trust.
	in, err := launch(dir, ns.Wrap(cpu, args), []string{"CAROOT=" + filepath.Join(dir, "no-mkcert")})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	base := "https://" + addr
	ready := func() bool {
		if in.hc == nil {
			pem, err := os.ReadFile(filepath.Join(data, "ca", "rootCA.pem"))
			if err != nil {
				return false
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return false
			}
			in.hc = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 64}}
		}
		resp, err := in.hc.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if err := in.waitReady(ctx, "matinee", ready); err != nil {
		in.stop()
		return nil, err
	}
	in.whipURL, in.token = base+"/whip/bench?name=publisher", key
	in.view = func(ctx context.Context, api *webrtc.API, i int, onTrack func(*webrtc.TrackRemote)) (func(), error) {
		v, err := loadpeer.View(ctx, api, in.hc, base+"/whep/bench", key, onTrack)
		if err != nil {
			return nil, err
		}
		return func() { v.Close(context.Background()) }, nil
	}
	return in, nil
}

// galeneGroup lets anyone in with any password and present (WHIP
// publishing needs it; the viewers do not use it).
const galeneGroup = `{"wildcard-user": {"password": {"type": "wildcard"}, "permissions": "present"}}`

// startGalene runs a Galene binary in plain HTTP (-insecure) inside the
// namespace, its built-in TURN server off, with a temporary data
// directory holding the group "bench".
func startGalene(ctx context.Context, bin string, ns *netns.NS, cpu int) (*instance, error) {
	if ns == nil {
		// pion, and so Galene, gathers on every interface but loopback:
		// outside its own namespace it would send media on the host's
		// network.
		return nil, errors.New("galene runs only inside a network namespace (-netns)")
	}
	dir, err := os.MkdirTemp("", "sidebyside-galene-")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"data", "groups", "static", "recordings"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "groups", "bench.json"), []byte(galeneGroup), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr, err := serverAddr(ns)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{bin, "-insecure", "-http", addr, "-turn", "",
		"-data", filepath.Join(dir, "data"), "-groups", filepath.Join(dir, "groups"),
		"-static", filepath.Join(dir, "static"), "-recordings", filepath.Join(dir, "recordings")}
	in, err := launch(dir, ns.Wrap(cpu, args), nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	base := "http://" + addr
	in.hc = &http.Client{Timeout: 20 * time.Second}
	ready := func() bool {
		resp, err := in.hc.Get(base + "/group/bench/.status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if err := in.waitReady(ctx, "galene", ready); err != nil {
		in.stop()
		return nil, err
	}
	in.whipURL = base + "/group/bench/.whip"
	wsURL := "ws://" + addr + "/ws"
	in.view = func(ctx context.Context, api *webrtc.API, i int, onTrack func(*webrtc.TrackRemote)) (func(), error) {
		c, err := dialGalene(ctx, api, wsURL, "bench", fmt.Sprintf("viewer-%d", i), onTrack)
		if err != nil {
			return nil, err
		}
		return c.close, nil
	}
	return in, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
