package lan

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/internal/synth"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// No false congestion: a one-encoding video on a link that has no loss
// and no queue of its own reaches every subscriber whole, even while the
// CPUs are busy; on a link too slow for it, it is paused with the notice
// the web client shows ("Video paused: the connection is too slow…",
// a layerChanged with spatialLayer -1) and comes back within 3 s of the
// link recovering (docs/simulcast.md, "Pausing a video").

// The phone's side of these tests ("watch" jobs): the phone publishes a
// one-encoding VP8 video of job.Bitrate over its uplink (not shaped) and
// job.Subs subscribers on the phone watch it over the downlink, which the
// test shapes with tc on the host's end of the veth. Every watchEvery the
// phone prints a watchLine; it stops after job.Seconds, when its standard
// input closes or, with job.Packets, once that many packets have been
// sent since every subscriber had video for 2 s (the measured window),
// then reports, for the frames of that window but its last second, the
// share of their packets each subscriber received.

const (
	watchPrefix = "PHONE-WATCH "
	watchEvery  = 200 * time.Millisecond
)

// watchLine is the phone's periodic report.
type watchLine struct {
	MS     int64    `json:"ms"`     // since the subscribers joined
	Sent   uint64   `json:"sent"`   // video packets published
	Got    []int    `json:"got"`    // each subscriber's distinct video packets
	Frame  []uint32 `json:"frame"`  // and the newest frame among them
	Layer  []int    `json:"layer"`  // each one's latest layerChanged spatialLayer (-2: none yet)
	Paused []int    `json:"paused"` // how many pause notices (spatialLayer -1) each got
}

// watchSub is one subscriber on the phone.
type watchSub struct {
	c *testpeer.Client

	mu     sync.Mutex
	seen   map[uint16]bool
	frames map[uint32]int // distinct packets received per frame
	got    int
	newest uint32    // frame number
	first  time.Time // first video packet
	layer  int
	paused int
}

func (s *watchSub) read(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		hl, err := h.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		st, ok := synth.ReadStamp(buf[hl:n])
		if !ok {
			continue // padding of a probe
		}
		s.mu.Lock()
		if !s.seen[h.SequenceNumber] {
			s.seen[h.SequenceNumber] = true
			s.frames[st.Frame]++
			s.got++
			if int32(st.Frame-s.newest) > 0 {
				s.newest = st.Frame
			}
			if s.first.IsZero() {
				s.first = time.Now()
			}
		}
		s.mu.Unlock()
	}
}

// events follows the subscriber's layerChanged notifications.
func (s *watchSub) events() {
	for {
		select {
		case <-s.c.Done():
			return
		case ev := <-s.c.Events:
			if ev.Method != "layerChanged" {
				continue
			}
			var p struct {
				SpatialLayer int `json:"spatialLayer"`
			}
			if json.Unmarshal(ev.Params, &p) != nil {
				continue
			}
			s.mu.Lock()
			s.layer = p.SpatialLayer
			if p.SpatialLayer == -1 {
				s.paused++
			}
			s.mu.Unlock()
		}
	}
}

// burn keeps n goroutines spinning until stop closes: CPU load, not
// network load. The Go scheduler preempts them every 10 ms or so, so
// every other goroutine of the process runs late by that much, often.
func burn(n int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	var sink atomic.Uint64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(1)
			for {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
				sink.Add(x & 1)
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	return &wg
}

func phoneWatch(job phoneJob, res *phoneResult) error {
	pool, _, err := fetchCA(job)
	if err != nil {
		return err
	}
	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: &tls.Config{RootCAs: pool}}
	api, err := testpeer.NewAPI(testpeer.Options{Interfaces: []string{job.Interface}, NetworkTypes: []webrtc.NetworkType{webrtc.NetworkTypeUDP4}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(job.Seconds+30)*time.Second)
	defer cancel()
	wsURL := "wss://" + hostPort(job.Host, job.HTTPSPort) + "/ws"

	stopBurn := make(chan struct{})
	burners := burn(job.Burn, stopBurn)
	defer func() { close(stopBurn); burners.Wait() }()

	pub, err := testpeer.DialWith(ctx, dialer, wsURL, api)
	if err != nil {
		return fmt.Errorf("publisher: dial %s: %w", wsURL, err)
	}
	defer pub.Close()
	if _, err := pub.Join(ctx, job.Room, "phone-pub"); err != nil {
		return fmt.Errorf("publisher: join: %w", err)
	}
	video, err := synth.NewVideo("video", "phone", []synth.LayerSpec{{Bitrate: job.Bitrate, Width: 1280, Height: 720}})
	if err != nil {
		return err
	}
	var fmu sync.Mutex
	sentFrames := map[uint32]int{}
	var lastFrame atomic.Uint32
	video.OnFrame = func(_ int, frame uint32, n int) {
		fmu.Lock()
		sentFrames[frame] = n
		fmu.Unlock()
		lastFrame.Store(frame)
	}
	tr := &testpeer.Track{Track: video.Layers[0].Track, AppData: map[string]any{"source": "screen"}}
	prods, err := pub.Publish(ctx, tr)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if len(prods) != 1 {
		return fmt.Errorf("publish: %d producers", len(prods))
	}
	stopVideo := make(chan struct{})
	var vwg sync.WaitGroup
	vwg.Add(2)
	go func() { defer vwg.Done(); video.Run(stopVideo) }()
	go func() { defer vwg.Done(); video.ServeRTCP(tr.Sender) }()
	videoStopped := false
	stopPub := func() {
		if !videoStopped {
			videoStopped = true
			close(stopVideo)
		}
	}
	defer func() { stopPub(); pub.Close(); vwg.Wait() }()

	subs := make([]*watchSub, job.Subs)
	for i := range subs {
		c, err := testpeer.DialWith(ctx, dialer, wsURL, api)
		if err != nil {
			return fmt.Errorf("subscriber %d: dial: %w", i, err)
		}
		s := &watchSub{c: c, seen: map[uint16]bool{}, frames: map[uint32]int{}, layer: -2}
		subs[i] = s
		defer c.Close()
		c.OnTrack = func(tr *webrtc.TrackRemote, _ testpeer.Consumer) {
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				go s.read(tr)
			}
		}
		go s.events()
		if _, err := c.Join(ctx, job.Room, fmt.Sprintf("phone-sub-%d", i)); err != nil {
			return fmt.Errorf("subscriber %d: join: %w", i, err)
		}
		if err := c.StartReceiving(ctx); err != nil {
			return err
		}
		if _, err := c.Subscribe(ctx, prods[0].ID); err != nil {
			return fmt.Errorf("subscriber %d: subscribe: %w", i, err)
		}
	}

	// Standing input closing (the test is done with us) ends the watch.
	stdinDone := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stdinDone) }()

	start := time.Now()
	end := start.Add(time.Duration(job.Seconds) * time.Second)
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	var fromFrame uint32
	measuring := false
	out := bufio.NewWriter(os.Stdout)
	var fromSent uint64
	for now := time.Now(); now.Before(end); now = time.Now() {
		select {
		case <-stdinDone:
			end = now
			continue
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		line := watchLine{MS: time.Since(start).Milliseconds(), Sent: video.Layers[0].Sent.Load()}
		all := true
		for _, s := range subs {
			s.mu.Lock()
			line.Got = append(line.Got, s.got)
			line.Frame = append(line.Frame, s.newest)
			line.Layer = append(line.Layer, s.layer)
			line.Paused = append(line.Paused, s.paused)
			if s.first.IsZero() || time.Since(s.first) < 2*time.Second {
				all = false
			}
			s.mu.Unlock()
		}
		if all && !measuring {
			measuring, fromFrame, fromSent = true, lastFrame.Load()+1, line.Sent
		}
		if measuring && job.Packets > 0 && line.Sent-fromSent >= uint64(job.Packets) {
			end = now
		}
		b, _ := json.Marshal(line)
		fmt.Fprintf(out, "\n%s%s\n", watchPrefix, b)
		_ = out.Flush()
	}
	if !measuring {
		return fmt.Errorf("not every subscriber got video for 2 s within %d s", job.Seconds)
	}
	// Frames of the last second may still be on their way (or waiting
	// for a retransmission): not counted.
	toFrame := lastFrame.Load() - 30
	stopPub()
	time.Sleep(500 * time.Millisecond) // what is in flight lands
	fmu.Lock()
	defer fmu.Unlock()
	for f := fromFrame; f < toFrame; f++ {
		res.Sent += sentFrames[f]
	}
	for _, s := range subs {
		s.mu.Lock()
		got := 0
		for f := fromFrame; f < toFrame; f++ {
			got += min(s.frames[f], sentFrames[f])
		}
		res.SubGot = append(res.SubGot, got)
		res.SubPaused = append(res.SubPaused, s.paused)
		s.mu.Unlock()
	}
	return nil
}

// phoneProc is a watch job running on the phone.
type phoneProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan watchLine
	result chan phoneResult
	stderr syncBuffer
	done   chan struct{} // the process has been waited for
}

// startWatch starts a watch job on the phone; its reports arrive on
// lines, and finish ends it and returns its result.
func startWatch(t *testing.T, p *phoneNet, job phoneJob) *phoneProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	job.Mode = "watch"
	if job.Interface == "" {
		job.Interface = p.phoneLink
	}
	b, _ := json.Marshal(job)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(job.Seconds+60)*time.Second)
	pp := &phoneProc{t: t, lines: make(chan watchLine, 1024), result: make(chan phoneResult, 1), done: make(chan struct{})}
	pp.cmd = exec.CommandContext(ctx, "ip", "netns", "exec", p.ns, self, "-test.count=1", fmt.Sprintf("-test.timeout=%ds", job.Seconds+50))
	pp.cmd.Env = append(os.Environ(), phoneEnv+"="+string(b))
	pp.cmd.Stderr = &pp.stderr
	pp.stdin, err = pp.cmd.StdinPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stdout, err := pp.cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := pp.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(pp.done)
		// Wait only once stdout has been read to its end.
		defer func() { _ = pp.cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		var res *phoneResult
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, watchPrefix); ok {
				var w watchLine
				if json.Unmarshal([]byte(rest), &w) == nil {
					select {
					case pp.lines <- w:
					default: // nobody reads them now
					}
				}
			}
			if rest, ok := strings.CutPrefix(line, resultPrefix); ok {
				var r phoneResult
				if err := json.Unmarshal([]byte(rest), &r); err == nil {
					res = &r
				}
			}
		}
		if res != nil {
			pp.result <- *res
		}
		close(pp.lines)
	}()
	t.Cleanup(func() {
		_ = pp.stdin.Close()
		<-pp.done
		cancel()
	})
	return pp
}

// finish tells the phone to stop and returns its result.
func (pp *phoneProc) finish() phoneResult {
	pp.t.Helper()
	_ = pp.stdin.Close()
	for range pp.lines {
	}
	<-pp.done
	select {
	case r := <-pp.result:
		if r.Err != "" {
			pp.t.Fatalf("phone (watch): %s\n%s", r.Err, pp.stderr.String())
		}
		return r
	default:
		pp.t.Fatalf("phone (watch) reported nothing\n%s", pp.stderr.String())
		return phoneResult{}
	}
}

// tc shapes the phone's downlink (what leaves the host's end).
func (p *phoneNet) tc(t *testing.T, args ...string) {
	t.Helper()
	cmd := []string{"tc", "qdisc", args[0], "dev", p.hostLink, "root"}
	sh(t, "", append(cmd, args[1:]...)...)
}

func needTC(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tc"); err != nil {
		testenv.Need(t, "tc not found: install the Debian package iproute2")
	}
}

// Free link: every packet of a 2 Mbit/s one-encoding video reaches each
// of several subscribers, with busy loops on every CPU of the server's
// process (its read loops and the allocator run late, often) and one in
// the subscribers'. (What a receiver's CPU stalls do to the estimate is
// TestCPUStallsAreNotCongestion's, in sfu/bwe: a receiver starved for
// long enough to overflow its socket loses packets for real.)
func TestFreeLinkDeliversEveryPacket(t *testing.T) {
	p := newPhoneNet(t)
	needTC(t)
	s := startServer(t, p, nil)
	stop := make(chan struct{})
	burners := burn(runtime.NumCPU(), stop)
	defer func() { close(stop); burners.Wait() }()
	const subs = 4
	// About 8 s of video once every subscriber has it: 1,500 packets.
	pp := startWatch(t, p, phoneJob{Host: s.host, HTTPPort: s.httpPort, HTTPSPort: s.httpsPort, Room: "free",
		Subs: subs, Bitrate: 2_000_000, Seconds: 60, Packets: 1500, Burn: 1})
	var last watchLine
	for w := range pp.lines { // the phone stops once it has measured
		if w.MS/1000 != last.MS/1000 {
			t.Logf("%5d ms: sent %d, got %v, layers %v", w.MS, w.Sent, w.Got, w.Layer)
		}
		last = w
	}
	res := pp.finish()
	if res.Sent < 1200 {
		t.Fatalf("only %d packets in the measured window", res.Sent)
	}
	for i, got := range res.SubGot {
		t.Logf("subscriber %d: %d of %d packets (%.2f%%), %d pause notices", i, got, res.Sent, 100*float64(got)/float64(res.Sent), res.SubPaused[i])
		if got != res.Sent || res.SubPaused[i] != 0 {
			t.Errorf("subscriber %d got %d of %d packets, %d pause notices, on a free link", i, got, res.Sent, res.SubPaused[i])
		}
	}
	if len(res.SubGot) != subs {
		t.Fatalf("%d subscribers reported, want %d", len(res.SubGot), subs)
	}
}

// A 1 Mbit/s downlink cannot carry a 2 Mbit/s one-encoding video: it is
// paused, with the notice; once the limit is lifted, it resumes within
// 3 s.
func TestSlowLinkPausesAndResumes(t *testing.T) {
	p := newPhoneNet(t)
	needTC(t)
	s := startServer(t, p, nil)
	p.tc(t, "add", "tbf", "rate", "1mbit", "burst", "16kbit", "latency", "50ms")
	pp := startWatch(t, p, phoneJob{Host: s.host, HTTPPort: s.httpPort, HTTPSPort: s.httpsPort, Room: "slow",
		Subs: 1, Bitrate: 2_000_000, Seconds: 60})
	var last watchLine
	wait := func(within time.Duration, what string, ok func(watchLine) bool) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := time.After(within)
		for {
			select {
			case w, more := <-pp.lines:
				if !more {
					t.Fatalf("phone ended before %s\n%s", what, pp.stderr.String())
				}
				last = w
				if testing.Verbose() {
					t.Logf("%5d ms: sent %d, got %v, newest frame %v, layers %v", w.MS, w.Sent, w.Got, w.Frame, w.Layer)
				}
				if ok(w) {
					return time.Since(start)
				}
			case <-deadline:
				t.Fatalf("not %s within %v (last report %+v)", what, within, last)
			}
		}
	}
	d := wait(30*time.Second, "paused", func(w watchLine) bool { return w.Layer[0] == -1 })
	t.Logf("paused after %v of watching (report at %d ms: %d of %d packets)", d.Round(100*time.Millisecond), last.MS, last.Got[0], last.Sent)
	p.tc(t, "del")
	lifted := time.Now()
	// Video flows again within 3 s: new frames, not the retransmissions
	// of old ones that the subscriber asked for. The notice that says so
	// follows over the WebSocket.
	frame := last.Frame[0]
	wait(3*time.Second, "resumed", func(w watchLine) bool { return int32(w.Frame[0]-frame) > 3 })
	flowing := time.Since(lifted)
	wait(2*time.Second, "told it resumed", func(w watchLine) bool { return w.Layer[0] >= 0 })
	t.Logf("resumed %v after the limit was lifted, notice after %v", flowing.Round(10*time.Millisecond), time.Since(lifted).Round(10*time.Millisecond))
	pp.finish()
	if testing.Verbose() {
		t.Logf("lifted at %s", lifted.UTC().Format("15:04:05.000"))
		for _, l := range strings.Split(s.logs.String(), "\n") {
			if strings.Contains(l, "paused") || strings.Contains(l, "resum") {
				t.Log(l)
			}
		}
	}
}
