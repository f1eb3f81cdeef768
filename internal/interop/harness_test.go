package interop_test

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server/servertest"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/server"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// gstProbe checks, in one Python run, everything gstwebrtc.py uses.
const gstProbe = `
import gi
for ns in ("Gst", "GstWebRTC", "GstSdp"):
    gi.require_version(ns, "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import Gst, GstWebRTC, GstSdp, Nice
Gst.init(None)
need = "webrtcbin nicesrc dtlssrtpenc srtpenc videotestsrc audiotestsrc x264enc vp8enc vp9enc opusenc rtph264pay rtpvp8pay rtpvp9pay rtpopuspay decodebin avdec_h264 vp8dec vp9dec opusdec fakesink".split()
gone = [e for e in need if Gst.ElementFactory.find(e) is None]
if gone:
    raise SystemExit("GStreamer elements missing: " + " ".join(gone))
`

var (
	gstOnce   sync.Once
	gstPython string
	gstErr    string
)

// requireGStreamer returns a Python that runs gstwebrtc.py: the system's
// (python3-gi lives there, not in a pyenv or venv python3 found first
// on $PATH), else the one on $PATH.
func requireGStreamer(t *testing.T) string {
	t.Helper()
	gstOnce.Do(func() {
		var why []string
		for _, py := range []string{"/usr/bin/python3", "python3"} {
			out, err := exec.Command(py, "-c", gstProbe).CombinedOutput()
			if err == nil {
				gstPython = py
				return
			}
			why = append(why, fmt.Sprintf("%s: %v: %s", py, err, lastLine(out)))
		}
		gstErr = "GStreamer webrtcbin through Python gi is not usable (Debian: gstreamer1.0-plugins-bad gstreamer1.0-nice gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav python3-gi gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1): " + strings.Join(why, "; ")
	})
	if gstPython == "" {
		testenv.Need(t, gstErr)
	}
	return gstPython
}

func requireFFmpeg(t *testing.T) string {
	t.Helper()
	return testenv.Tool(t, "the Debian package ffmpeg", "ffmpeg")
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// startServer runs a Matinee server with ICE on loopback only and
// returns it with its base URL.
func startServer(t *testing.T) (*server.Server, string) {
	t.Helper()
	s := servertest.Start(t)
	return s.Server, s.URL
}

// gstClient is one run of gstwebrtc.py, with what it reported so far.
type gstClient struct {
	name string
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // stdout is drained and the process has exited

	mu      sync.Mutex
	events  []string
	frames  map[string]int       // decoded video frames / audio buffers
	first   map[string]time.Time // when the first of each was reported
	pads    map[string]string
	ice     string
	failure string
	stderr  bytes.Buffer
}

// runGst starts gstwebrtc.py with args; it is stopped with SIGTERM when
// the test ends (the script then DELETEs its session).
func runGst(t *testing.T, name string, args ...string) *gstClient {
	t.Helper()
	py := requireGStreamer(t)
	c := &gstClient{name: name, dir: t.TempDir(), done: make(chan struct{}), frames: map[string]int{}, first: map[string]time.Time{}, pads: map[string]string{}}
	args = append([]string{"gstwebrtc.py"}, args...)
	args = append(args, "--dir", c.dir)
	c.cmd = exec.Command(py, args...)
	c.cmd.Stderr = &lockedWriter{mu: &c.mu, w: &c.stderr}
	c.cmd.Env = append(os.Environ(), "GST_DEBUG=1", "PYTHONUNBUFFERED=1")
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go c.read(out)
	t.Cleanup(func() { c.stop(t) })
	return c
}

func (c *gstClient) read(out io.Reader) {
	defer close(c.done)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		c.mu.Lock()
		c.events = append(c.events, sc.Text())
		switch {
		case f[0] == "frames" && len(f) == 3:
			c.frames[f[1]], _ = strconv.Atoi(f[2])
			if _, ok := c.first[f[1]]; !ok {
				c.first[f[1]] = time.Now()
			}
		case f[0] == "pad" && len(f) == 3:
			c.pads[f[1]] = f[2]
		case f[0] == "ice" && len(f) == 2:
			c.ice = f[1]
		case f[0] == "error":
			c.failure = sc.Text()
		}
		c.mu.Unlock()
	}
	_ = c.cmd.Wait()
}

func (c *gstClient) stop(t *testing.T) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Errorf("%s did not end on SIGTERM", c.name)
	}
}

// state returns what the client reported, for conditions and failure
// messages.
func (c *gstClient) state() (frames map[string]int, failure string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := map[string]int{}
	for k, v := range c.frames {
		f[k] = v
	}
	return f, c.failure
}

// since says how long after t0 the first video frame and the first
// audio buffer were decoded.
func (c *gstClient) since(t0 time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("first video frame after %v, first audio after %v (pads %v)",
		c.first["video"].Sub(t0).Round(time.Millisecond), c.first["audio"].Sub(t0).Round(time.Millisecond), c.pads)
}

func (c *gstClient) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%s: events %q\nstderr: %s", c.name, c.events, c.stderr.String())
}

// sdp returns the offer or answer the client wrote, once it has.
func (c *gstClient) sdp(t *testing.T, what string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, what+".sdp"))
	if err != nil {
		t.Fatalf("%s: %v\n%s", c.name, err, c)
	}
	return string(b)
}

// ended reports whether the client exited (it never does on its own
// unless something failed).
func (c *gstClient) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// waitFor polls cond until it holds, failing the test after d with what
// and the status of the clients given. fail, when it returns non-empty,
// ends the wait at once.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, fail func() string, status ...fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if msg := fail(); msg != "" {
			t.Fatalf("waiting for %s: %s", what, msg)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; %v", d, what, status)
		}
		time.Sleep(testenv.Tick)
	}
}

// clientFailed ends a wait when one of the GStreamer clients reported an
// error or exited.
func clientFailed(cs ...*gstClient) func() string {
	return func() string {
		for _, c := range cs {
			if _, f := c.state(); f != "" || c.ended() {
				return c.String()
			}
		}
		return ""
	}
}

// loopbackCandidates checks that every candidate of an SDP is on
// 127.0.0.1 and that there is one.
func loopbackCandidates(t *testing.T, who, sdp string) {
	t.Helper()
	n := 0
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "a=candidate:") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 6 || f[4] != "127.0.0.1" {
			t.Errorf("%s: candidate not on loopback: %s", who, line)
		}
		n++
	}
	if n == 0 {
		t.Errorf("%s: no candidate in\n%s", who, sdp)
	}
}

// scrape reads one sample of /metrics.
func scrape(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
