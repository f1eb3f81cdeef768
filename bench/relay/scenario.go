package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/bench/internal/loadpeer"
	"github.com/matinee-dev/matinee/bench/internal/netns"
	"github.com/matinee-dev/matinee/internal/synth"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/pion/webrtc/v4"
)

// scenario is one arrangement of viewers: local on the origin, and per
// edge node how many.
type scenario struct {
	name  string
	local int
	edges []int
	// pinned: the generator and the edges stay on their CPUs
	// (-cpu-load, -cpu-edges); otherwise they may use every CPU. The
	// origin is always on -cpu-origin.
	pinned bool
	// edgesOnOrigin: the edges share the origin's CPU rather than the
	// generator's (run c: a hop's delay is not the generator's queue).
	edgesOnOrigin bool
}

func (s scenario) viewers() int {
	n := s.local
	for _, e := range s.edges {
		n += e
	}
	return n
}

// group is the figures of one set of viewers: the origin's, or one
// edge's.
type group struct {
	name       string
	viewers    int
	meanPct    float64 // video of the window delivered, mean over viewers
	minPct     float64
	p50, p99   float64 // ms, from the publisher's send to the viewer's read
	delayCount int
}

// result is one scenario's measurement over the window.
type result struct {
	secs         float64
	published    float64 // video packets/s of the layer viewers get
	originCores  float64
	localCopies  float64 // packets/s to subscribers on the origin
	relayCopies  float64 // packets/s on its pipes to edges
	egressMbps   float64 // the origin's eth0, everything it sent
	ingressMbps  float64 // the origin's eth0, everything it received (the publisher's media, mostly)
	originFwdP99 float64 // ms, matinee_forward_seconds p99 bound at the origin (-1: none)
	edgeCores    []float64
	edgeFwdP99   []float64 // ms, each edge's matinee_forward_seconds p99 bound
	rcvbufErrs   float64   // UDP datagrams dropped at the generator's sockets (this namespace)
	retransmits  float64   // packets/s the origin sent again on edges' NACKs
	keyframes    float64   // keyframe requests/s the origin sent the publisher
	silent       int       // viewers without any video when the warm-up began
	groups       []group
}

// measureScenario starts the scenario's cluster, publishes, attaches its
// viewers and measures one window.
// With -perf, the origin's window is recorded into o.perf/tag.data.
func measureScenario(ctx context.Context, o options, br *netns.Bridge, nss []*netns.NS, s scenario, tag string) (_ result, err error) {
	cpuEdges := o.cpuEdges
	if s.edgesOnOrigin {
		cpuEdges = o.cpuOrigin
	}
	if !s.pinned {
		cpuEdges = -1
		if err := loadpeer.PinSelf(-1); err != nil {
			return result{}, err
		}
	} else if o.cpuLoad >= 0 {
		if err := loadpeer.PinSelf(o.cpuLoad); err != nil {
			return result{}, err
		}
	}
	most := s.local
	for _, e := range s.edges {
		most = max(most, e)
	}
	c, err := startCluster(ctx, o, br, nss, len(s.edges), cpuEdges, most)
	if err != nil {
		return result{}, err
	}
	defer c.stop()
	api, err := testpeer.NewAPI(testpeer.Options{Interfaces: []string{br.Name}})
	if err != nil {
		return result{}, err
	}
	room := "relay-bench"
	win := loadpeer.NewWindow()
	specs := []synth.LayerSpec{{Bitrate: o.bitrate, Width: 1280, Height: 720}}
	if o.simulcast {
		specs = synth.Simulcast3
	}
	pub, err := loadpeer.Publish(ctx, api, c.hc, c.origin.url+"/whip/"+room+"?name=sharer", c.key, specs, win.OnFrame)
	if err != nil {
		return result{}, fmt.Errorf("publish: %w\n%s", err, tail(c.origin.log))
	}
	defer pub.Close(context.Background())
	if err := waitFor(ctx, c.origin.proc, 15*time.Second, func() bool { return pub.Video.RTCPs() > 0 }); err != nil {
		return result{}, fmt.Errorf("no RTCP from the origin for the published video: %w", err)
	}

	// Viewers: local ones on the origin, then each edge's.
	type target struct {
		n     *node
		group int
	}
	var targets []target
	names := []string{"origin"}
	for range s.local {
		targets = append(targets, target{c.origin, 0})
	}
	for i, e := range s.edges {
		names = append(names, c.edges[i].id)
		for range e {
			targets = append(targets, target{c.edges[i], i + 1})
		}
	}
	counts := make([]loadpeer.Count, len(targets))
	var readers sync.WaitGroup
	viewers := make([]*loadpeer.Viewer, len(targets))
	defer func() {
		var wg sync.WaitGroup
		for _, v := range viewers {
			if v != nil {
				wg.Add(1)
				go func() { defer wg.Done(); v.Close(context.Background()) }()
			}
		}
		wg.Wait()
		readers.Wait()
	}()
	// A few at once: a hundred one after the other take long on a busy
	// machine; the first of each edge opens its pipe, the others wait
	// for it.
	sem := make(chan struct{}, 8)
	errs := make(chan error, len(targets))
	var connecting sync.WaitGroup
	for i, t := range targets {
		connecting.Add(1)
		sem <- struct{}{}
		go func() {
			defer connecting.Done()
			defer func() { <-sem }()
			onTrack := func(tr *webrtc.TrackRemote) {
				readers.Add(1)
				go func() {
					defer readers.Done()
					loadpeer.CountTrack(tr, win, &counts[i])
				}()
			}
			v, err := loadpeer.View(ctx, api, c.hc, t.n.url+"/whep/"+room, c.key, onTrack)
			if err != nil {
				errs <- fmt.Errorf("viewer %d on %s: %w\n%s", i, t.n.id, err, tail(t.n.log))
				return
			}
			viewers[i] = v
		}()
	}
	connecting.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	// Every viewer receives video before the warm-up, or the wait ends:
	// one still without video is measured all the same (it counts as
	// delivered nothing), and named in the figures.
	silent := func() int {
		n := 0
		for i := range counts {
			if counts[i].Any.Load() == 0 {
				n++
			}
		}
		return n
	}
	err = waitFor(ctx, nil, 30*time.Second+time.Duration(len(targets))*100*time.Millisecond, func() bool { return silent() == 0 })
	if ctx.Err() != nil {
		return result{}, ctx.Err()
	}
	if err != nil && silent() == len(counts) {
		return result{}, fmt.Errorf("no viewer received video: %w", err)
	}
	waiting := silent()
	if err := sleepCtx(ctx, o.warmup); err != nil {
		return result{}, err
	}

	// The window.
	snap0, err := c.snapshot()
	if err != nil {
		return result{}, err
	}
	var perf *exec.Cmd
	if o.perf != "" {
		// Go binaries keep frame pointers: -g walks them.
		perf = exec.CommandContext(ctx, "perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-p", strconv.Itoa(c.origin.pid),
			"-o", filepath.Join(o.perf, tag+".data"))
		if err := perf.Start(); err != nil {
			return result{}, fmt.Errorf("perf: %w", err)
		}
	}
	t0 := time.Now()
	win.Open()
	if err := sleepCtx(ctx, o.duration); err != nil {
		return result{}, err
	}
	win.Close()
	if perf != nil {
		_ = perf.Process.Signal(os.Interrupt)
		_ = perf.Wait()
	}
	snap1, err := c.snapshot()
	if err != nil {
		return result{}, err
	}
	secs := time.Since(t0).Seconds()
	// The window's last packets are still on their way.
	if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
		return result{}, err
	}
	top := len(specs) - 1
	r := result{
		secs:         secs,
		published:    float64(win.Published(top)) / secs,
		originCores:  (snap1.cpu[0] - snap0.cpu[0]).Seconds() / secs,
		localCopies:  (snap1.metrics[0]["matinee_forwarded_packets_total"] - snap0.metrics[0]["matinee_forwarded_packets_total"]) / secs,
		relayCopies:  (snap1.metrics[0][`matinee_relay_packets_total{direction="out"}`] - snap0.metrics[0][`matinee_relay_packets_total{direction="out"}`]) / secs,
		egressMbps:   float64(snap1.tx-snap0.tx) * 8 / secs / 1e6,
		ingressMbps:  float64(snap1.rx-snap0.rx) * 8 / secs / 1e6,
		originFwdP99: loadpeer.ForwardQuantile(snap0.metrics[0], snap1.metrics[0], 0.99),
		rcvbufErrs:   snap1.rcvbufErrs - snap0.rcvbufErrs,
		silent:       waiting,
	}
	delta := func(name string) float64 { return (snap1.metrics[0][name] - snap0.metrics[0][name]) / secs }
	r.retransmits = delta("matinee_relay_retransmits_total")
	r.keyframes = delta(`matinee_keyframe_requests_total{direction="sent"}`)
	for i := range c.edges {
		r.edgeCores = append(r.edgeCores, (snap1.cpu[1+i]-snap0.cpu[1+i]).Seconds()/secs)
		r.edgeFwdP99 = append(r.edgeFwdP99, loadpeer.ForwardQuantile(snap0.metrics[1+i], snap1.metrics[1+i], 0.99))
	}
	published := float64(win.Published(top))
	for g, name := range names {
		gr := group{name: name, minPct: 100}
		var delays []float64
		for i, t := range targets {
			if t.group != g {
				continue
			}
			gr.viewers++
			pct := 0.0
			if published > 0 {
				pct = min(100*float64(counts[i].InWindow.Load())/published, 100)
			}
			gr.meanPct += pct
			gr.minPct = min(gr.minPct, pct)
			delays = append(delays, counts[i].Delays()...)
		}
		if gr.viewers == 0 {
			continue
		}
		gr.meanPct /= float64(gr.viewers)
		sort.Float64s(delays)
		gr.p50, gr.p99, gr.delayCount = percentile(delays, 0.5), percentile(delays, 0.99), len(delays)
		r.groups = append(r.groups, gr)
	}
	return r, nil
}

// snapshot is the cluster's counters at one moment.
type snapshot struct {
	cpu        []time.Duration      // origin, then each edge
	metrics    []map[string]float64 // origin, then each edge
	tx, rx     uint64               // bytes the origin sent and received on its eth0
	rcvbufErrs float64
}

func (c *cluster) snapshot() (snapshot, error) {
	var s snapshot
	for _, n := range c.nodes() {
		cpu, err := loadpeer.ProcCPUFine(n.pid)
		if err != nil {
			return s, fmt.Errorf("%s's CPU: %w", n.id, err)
		}
		s.cpu = append(s.cpu, cpu)
	}
	// The CPU first, all nodes within a moment; then the metrics.
	for _, n := range c.nodes() {
		m, err := c.metrics(n)
		if err != nil {
			return s, err
		}
		s.metrics = append(s.metrics, m)
	}
	var err error
	if s.tx, err = c.origin.ns.TxBytes(); err != nil {
		return s, err
	}
	if s.rx, err = c.origin.ns.RxBytes(); err != nil {
		return s, err
	}
	s.rcvbufErrs = udpRcvbufErrors()
	return s, nil
}

// udpRcvbufErrors is this namespace's count of UDP datagrams dropped
// because a socket's receive buffer was full (/proc/net/snmp): the
// generator's viewers not reading fast enough, not the server's loss.
func udpRcvbufErrors() float64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var head []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "Udp: ") {
			continue
		}
		f := strings.Fields(l)
		if head == nil {
			head = f
			continue
		}
		if i := slices.Index(head, "RcvbufErrors"); i > 0 && i < len(f) {
			v, _ := strconv.ParseFloat(f[i], 64)
			return v
		}
	}
	return 0
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))]
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
