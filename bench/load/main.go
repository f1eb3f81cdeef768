// Command load is Matinee's load generator. It publishes one screen share
// — simulcast VP8 in three layers (about 150 kbit/s, 500 kbit/s and
// 2 Mbit/s, keyframes every 2 s, frames split into MTU-sized packets like
// a real encoder's) plus 128 kbit/s Opus — through WHIP, starts N
// subscribers through WHEP or the WebSocket protocol, and prints every
// second what the subscribers got (bitrate, loss, jitter, freezes, delay
// through the SFU) and what the SFU process spent (CPU, RSS from /proc).
//
//	go run ./bench/load -inproc -subs 50 -duration 30s
//	go run ./bench/load -url http://127.0.0.1:8080 -key $KEY -pid $(pidof matinee) -subs 100
//
// It only talks to loopback addresses, and stops after -duration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/matinee-dev/matinee/bench/internal/loadpeer"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/synth"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/server"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// maxSubs bounds -subs: the generator is for one machine's loopback.
const maxSubs = 2000

type options struct {
	url      string
	key      string
	pid      int
	inproc   bool
	room     string
	subs     int
	via      string
	duration time.Duration
	warmup   time.Duration
	single   int // bits per second of a single (non-simulcast) layer; 0: simulcast
	summary  bool
	serve    string
	cpuprof  string
	memprof  string
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "", "base URL of a running server (loopback only), e.g. http://127.0.0.1:8080")
	flag.StringVar(&o.key, "key", os.Getenv("MATINEE_API_KEY"), "API key (default $MATINEE_API_KEY)")
	flag.IntVar(&o.pid, "pid", 0, "SFU process to measure CPU and RSS of (default: this process with -inproc)")
	flag.BoolVar(&o.inproc, "inproc", false, "start a server in this process (its CPU then includes the generator's)")
	flag.StringVar(&o.room, "room", "load", "room to use")
	flag.IntVar(&o.subs, "subs", 10, fmt.Sprintf("subscribers (at most %d)", maxSubs))
	flag.StringVar(&o.via, "via", "whep", "how subscribers connect: whep or ws")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "how long to measure once every subscriber is connected")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "time between the last subscriber connecting and measuring")
	flag.IntVar(&o.single, "single", 0, "publish one layer of this many bits per second instead of three simulcast layers")
	flag.BoolVar(&o.summary, "summary", true, "print a summary line at the end")
	flag.StringVar(&o.serve, "serve", "", "only run a server on this loopback address (plain HTTP) for -duration, to measure it as a process of its own")
	flag.StringVar(&o.cpuprof, "cpuprofile", "", "with -serve: write the server's CPU profile to this file")
	flag.StringVar(&o.memprof, "memprofile", "", "with -serve: write the server's heap profile to this file, and its goroutines to FILE.goroutines.txt, on SIGUSR1 (while subscribers are connected)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(o, log); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(o options, log *slog.Logger) error {
	if o.subs < 0 || o.subs > maxSubs {
		return fmt.Errorf("-subs %d: want 0-%d", o.subs, maxSubs)
	}
	if o.via != "whep" && o.via != "ws" {
		return fmt.Errorf("-via %q: want whep or ws", o.via)
	}
	if o.duration <= 0 || o.duration > time.Hour {
		return fmt.Errorf("-duration %s: want up to 1h", o.duration)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Everything below is bounded by time, whatever happens.
	ctx, cancel := context.WithTimeout(ctx, o.duration+o.warmup+10*time.Minute)
	defer cancel()

	if o.serve != "" {
		return serve(ctx, o, log)
	}
	if o.inproc {
		base, key, closeSrv, err := startInProcess(ctx, "127.0.0.1:0", log)
		if err != nil {
			return err
		}
		defer closeSrv()
		o.url, o.key = base, key
		if o.pid == 0 {
			o.pid = os.Getpid()
		}
	}
	if o.url == "" {
		return errors.New("give -url of a running server, or -inproc")
	}
	if err := checkLoopback(o.url); err != nil {
		return err
	}
	api, err := testpeer.NewAPI(testpeer.Options{})
	if err != nil {
		return err
	}

	pub, err := publish(ctx, api, o)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer pub.close(ctx)
	fmt.Printf("publishing %s + 128 kbit/s Opus to %s/whip/%s\n", pub.desc, o.url, o.room)

	agg := newAggregate()
	var subs []*subscriber
	defer func() {
		for _, s := range subs {
			s.close(ctx)
		}
	}()
	t0 := time.Now()
	for i := 0; i < o.subs; i++ {
		s, err := subscribe(ctx, api, o, i, agg)
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		subs = append(subs, s)
	}
	fmt.Printf("%d subscribers connected via %s in %v; warming up %v\n", len(subs), o.via, time.Since(t0).Round(time.Millisecond), o.warmup)
	select {
	case <-time.After(o.warmup):
	case <-ctx.Done():
		return ctx.Err()
	}
	return measure(ctx, o, agg, len(subs), pub)
}

// checkLoopback refuses any target that is not this machine.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url %s: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed", raw)
	}
	return nil
}

// startInProcess runs a server on loopback with ephemeral ports.
func startInProcess(ctx context.Context, addr string, log *slog.Logger) (base, key string, closeFn func(), err error) {
	dir, err := os.MkdirTemp("", "matinee-load-")
	if err != nil {
		return "", "", nil, err
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.UDPPort = 0
	cfg.ICELoopbackOnly = true
	cfg.MaxPeers = maxSubs + 10
	cfg.WHEPMaxViewers = maxSubs
	cfg.WSMaxPerAddr = 0    // every subscriber comes from loopback
	cfg.ApplyGCPercent(nil) // as cmd/matinee does
	srv, err := server.NewWithLogger(ctx, cfg, log)
	if err != nil {
		os.RemoveAll(dir)
		return "", "", nil, err
	}
	if err := checkLoopback("http://" + addr); err != nil {
		_ = srv.Close()
		os.RemoveAll(dir)
		return "", "", nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = srv.Close()
		os.RemoveAll(dir)
		return "", "", nil, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return "http://" + ln.Addr().String(), srv.APIKey(), func() {
		_ = hs.Close()
		_ = srv.Close()
		os.RemoveAll(dir)
	}, nil
}

// serve runs only the server, until -duration or a signal.
func serve(ctx context.Context, o options, log *slog.Logger) error {
	base, key, closeSrv, err := startInProcess(ctx, o.serve, log)
	if err != nil {
		return err
	}
	defer closeSrv()
	if o.cpuprof != "" {
		f, err := os.Create(o.cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("serving %s pid=%d key=%s\n", base, os.Getpid(), key)
	usr1 := make(chan os.Signal, 1)
	if o.memprof != "" {
		runtime.MemProfileRate = 4096 // finer than the default: per-subscriber objects are small
		signal.Notify(usr1, syscall.SIGUSR1)
		defer signal.Stop(usr1)
	}
	end := time.After(o.duration)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-end:
			return nil
		case <-usr1:
			if err := writeHeapProfile(o.memprof); err != nil {
				return err
			}
			fmt.Printf("heap profile written to %s\n", o.memprof)
			printMemStats()
		}
	}
}

// printMemStats prints the heap and stacks as of the last GC (the heap
// profile's) and the process's RSS, for the per-subscriber figures.
func printMemStats() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	rss, _ := loadpeer.ProcRSS(os.Getpid())
	const mb = 1 << 20
	fmt.Printf("MEM heap_inuse_mb=%.2f heap_alloc_mb=%.2f stack_inuse_mb=%.2f sys_mb=%.2f goroutines=%d rss_mb=%.1f\n",
		float64(m.HeapInuse)/mb, float64(m.HeapAlloc)/mb, float64(m.StackInuse)/mb, float64(m.Sys)/mb, runtime.NumGoroutine(), rss)
}

// writeHeapProfile writes the live heap, as of a fresh GC, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return err
	}
	// The goroutines beside it, by where they wait: their stacks are
	// part of what a subscriber costs.
	g, err := os.Create(path + ".goroutines.txt")
	if err != nil {
		return err
	}
	defer g.Close()
	return pprof.Lookup("goroutine").WriteTo(g, 1)
}

// publisher is the WHIP client sending the share.
type publisher struct {
	*loadpeer.Publisher
	desc string
}

func publish(ctx context.Context, api *webrtc.API, o options) (*publisher, error) {
	specs := synth.Simulcast3
	desc := "simulcast VP8 (150k/500k/2M)"
	if o.single > 0 {
		specs = []synth.LayerSpec{{Bitrate: o.single, Width: 1280, Height: 720}}
		desc = fmt.Sprintf("VP8 at %d kbit/s", o.single/1000)
	}
	p, err := loadpeer.Publish(ctx, api, nil, o.url+"/whip/"+o.room+"?name=load", o.key, specs, nil)
	if err != nil {
		return nil, err
	}
	return &publisher{Publisher: p, desc: desc}, nil
}

func (p *publisher) close(ctx context.Context) { p.Close(ctx) }

// subscriber is one receiving peer.
type subscriber struct {
	whep *loadpeer.Viewer
	ws   *testpeer.Client
	wg   sync.WaitGroup
}

func subscribe(ctx context.Context, api *webrtc.API, o options, i int, agg *aggregate) (*subscriber, error) {
	s := &subscriber{}
	onTrack := func(tr *webrtc.TrackRemote) {
		st := agg.newStream(tr.Kind() == webrtc.RTPCodecTypeVideo, tr.Codec().ClockRate)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			st.read(tr)
		}()
	}
	if o.via == "ws" {
		wsURL := "ws" + strings.TrimPrefix(o.url, "http") + "/ws"
		c, err := testpeer.Dial(ctx, wsURL, api)
		if err != nil {
			return nil, err
		}
		s.ws = c
		c.OnTrack = func(tr *webrtc.TrackRemote, _ testpeer.Consumer) { onTrack(tr) }
		ps, err := c.Join(ctx, o.room, fmt.Sprintf("sub-%d", i))
		if err != nil {
			c.Close()
			return nil, err
		}
		if err := c.StartReceiving(ctx); err != nil {
			c.Close()
			return nil, err
		}
		for _, p := range ps {
			if _, err := c.Subscribe(ctx, p.ID); err != nil {
				c.Close()
				return nil, err
			}
		}
		return s, nil
	}
	v, err := loadpeer.View(ctx, api, nil, o.url+"/whep/"+o.room, o.key, onTrack)
	if err != nil {
		return nil, err
	}
	s.whep = v
	return s, nil
}

func (s *subscriber) close(ctx context.Context) {
	if s.whep != nil {
		s.whep.Close(ctx)
	}
	if s.ws != nil {
		s.ws.Close()
	}
	s.wg.Wait()
}

// aggregate gathers every stream's counters; streams are read each second.
type aggregate struct {
	mu      sync.Mutex
	streams []*stream
}

func newAggregate() *aggregate { return &aggregate{} }

func (a *aggregate) newStream(video bool, clock uint32) *stream {
	if clock == 0 {
		clock = 90000
	}
	s := &stream{video: video, clock: float64(clock)}
	a.mu.Lock()
	a.streams = append(a.streams, s)
	a.mu.Unlock()
	return s
}

// stream is what one subscriber received on one track.
type stream struct {
	video bool
	clock float64

	mu       sync.Mutex
	packets  uint64
	bytes    uint64
	started  bool
	baseSeq  int64
	extSeq   int64
	lastSeq  uint16
	jitter   float64 // RFC 3550, in clock units
	transit  float64
	lastDone time.Time // last completed frame (marker bit)
	freezes  int
	frozen   time.Duration
	resyncs  int
	delays   []float64 // ms, since the last collection
}

// read consumes a track until it ends, without allocating per packet.
func (s *stream) read(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		hl, err := h.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		payload := buf[hl:n]
		s.mu.Lock()
		s.packets++
		s.bytes += uint64(n)
		switch d := int16(h.SequenceNumber - s.lastSeq); {
		case !s.started:
			s.started, s.baseSeq, s.extSeq, s.lastSeq = true, int64(h.SequenceNumber), int64(h.SequenceNumber), h.SequenceNumber
		case d > 1000 || d < -1000:
			// Not loss: the sender restarted its numbering. Count the
			// run so far and start a new one.
			s.baseSeq += int64(h.SequenceNumber) - s.extSeq - 1
			s.extSeq, s.lastSeq = int64(h.SequenceNumber), h.SequenceNumber
			s.resyncs++
		case d > 0:
			s.extSeq += int64(d)
			s.lastSeq = h.SequenceNumber
		}
		arrival := float64(now.UnixNano()) / 1e9 * s.clock
		transit := arrival - float64(h.Timestamp)
		if s.transit != 0 {
			d := transit - s.transit
			if d < 0 {
				d = -d
			}
			// A timestamp wrap or a source switch shows as a huge step:
			// not jitter.
			if d < s.clock {
				s.jitter += (d - s.jitter) / 16
			}
		}
		s.transit = transit
		if st, ok := synth.ReadStamp(payload); ok {
			s.delays = append(s.delays, float64(now.Sub(st.Sent).Microseconds())/1000)
		}
		if s.video && h.Marker {
			if !s.lastDone.IsZero() {
				if gap := now.Sub(s.lastDone); gap > 200*time.Millisecond {
					s.freezes++
					s.frozen += gap
				}
			}
			s.lastDone = now
		}
		s.mu.Unlock()
	}
}

// sample is one collection of every stream.
type sample struct {
	videoBytes, audioBytes uint64
	packets                uint64
	expected, received     uint64
	jitterMs               float64
	jitterN                int
	freezes                int
	frozen                 time.Duration
	delays                 []float64
	streams                int
	videoPkts              []uint64 // each video stream's packets, in the order streams began
}

func (a *aggregate) collect() sample {
	a.mu.Lock()
	ss := append([]*stream(nil), a.streams...)
	a.mu.Unlock()
	var out sample
	for _, s := range ss {
		s.mu.Lock()
		out.streams++
		if s.video {
			out.videoBytes += s.bytes
			out.jitterMs += s.jitter / s.clock * 1000
			out.jitterN++
		} else {
			out.audioBytes += s.bytes
		}
		out.packets += s.packets
		if s.video {
			out.videoPkts = append(out.videoPkts, s.packets)
		}
		if s.started {
			out.expected += uint64(s.extSeq - s.baseSeq + 1)
		}
		out.received += s.packets
		out.freezes += s.freezes
		out.frozen += s.frozen
		out.delays = append(out.delays, s.delays...)
		s.delays = s.delays[:0]
		s.mu.Unlock()
	}
	return out
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// measure prints one line per second and a summary.
func measure(ctx context.Context, o options, agg *aggregate, subs int, pub *publisher) error {
	fmt.Println("  t  subs  video/sub   audio/sub  loss%   jitter  freezes  delay p50/p99 ms   sfu cpu  µs/pkt    rss MB  fwd pkt/s")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	prev := agg.collect()
	first, pub0 := prev.videoPkts, pub.VideoSent()
	prevCPU, _ := loadpeer.ProcCPU(o.pid)
	prevFwd, _ := forwarded(o.url)
	metrics0, _ := loadpeer.Scrape(nil, o.url, "")
	start := time.Now()
	var all []float64
	var totCPU time.Duration
	var totFwd, totRecv float64
	var totLost, totExp float64
	var maxRSS float64
	var vbits, abits float64
	freezes := 0
	samples := 0
	for sec := 1; time.Since(start) < o.duration; sec++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		cur := agg.collect()
		cpu, cerr := loadpeer.ProcCPU(o.pid)
		rss, _ := loadpeer.ProcRSS(o.pid)
		fwd, ferr := forwarded(o.url)
		dCPU := cpu - prevCPU
		dFwd := fwd - prevFwd
		if ferr != nil || dFwd <= 0 {
			dFwd = float64(cur.received - prev.received)
		}
		n := float64(max(subs, 1))
		vb := float64(cur.videoBytes-prev.videoBytes) * 8 / n / 1000
		ab := float64(cur.audioBytes-prev.audioBytes) * 8 / n / 1000
		exp := float64(cur.expected - prev.expected)
		lost := exp - float64(cur.received-prev.received)
		if lost < 0 {
			lost = 0
		}
		loss := 0.0
		if exp > 0 {
			loss = 100 * lost / exp
		}
		jit := 0.0
		if cur.jitterN > 0 {
			jit = cur.jitterMs / float64(cur.jitterN)
		}
		sort.Float64s(cur.delays)
		us := 0.0
		if dFwd > 0 && cerr == nil {
			us = float64(dCPU.Microseconds()) / dFwd
		}
		fmt.Printf("%3d  %4d  %7.0f kb  %6.0f kb  %5.2f  %5.2f ms  %7d  %6.2f / %6.2f   %5.0f%%  %6.2f  %8.1f  %9.0f\n",
			sec, subs, vb, ab, loss, jit, cur.freezes-prev.freezes,
			percentile(cur.delays, 0.5), percentile(cur.delays, 0.99),
			100*dCPU.Seconds(), us, rss, dFwd)
		all = append(all, cur.delays...)
		totCPU += dCPU
		totFwd += dFwd
		totRecv += float64(cur.received - prev.received)
		totLost += lost
		totExp += exp
		maxRSS = max(maxRSS, rss)
		vbits += vb
		abits += ab
		freezes += cur.freezes - prev.freezes
		samples++
		prev, prevCPU, prevFwd = cur, cpu, fwd
	}
	if !o.summary {
		return nil
	}
	secs := float64(max(samples, 1))
	sort.Float64s(all)
	lossPct := 0.0
	if totExp > 0 {
		lossPct = 100 * totLost / totExp
	}
	perPkt := 0.0
	if totFwd > 0 {
		perPkt = float64(totCPU.Microseconds()) / totFwd
	}
	// The SFU's own share of the delay, at the histogram's resolution
	// (bucket bounds: "≤ this").
	fwdP50, fwdP99 := -1.0, -1.0
	if metrics1, err := loadpeer.Scrape(nil, o.url, ""); err == nil && metrics0 != nil {
		fwdP50, fwdP99 = loadpeer.ForwardQuantile(metrics0, metrics1, 0.5), loadpeer.ForwardQuantile(metrics0, metrics1, 0.99)
	}
	fmt.Printf("SUMMARY subs=%d via=%s secs=%.0f video_kbps_per_sub=%.0f audio_kbps_per_sub=%.0f fwd_pkts_per_s=%.0f recv_pkts_per_s=%.0f loss_pct=%.3f freezes=%d delay_p50_ms=%.2f delay_p99_ms=%.2f sfu_fwd_p50_ms_le=%g sfu_fwd_p99_ms_le=%g sfu_cpu_cores=%.3f sfu_us_per_pkt=%.2f rss_mb=%.1f",
		subs, o.via, secs, vbits/secs, abits/secs, totFwd/secs, totRecv/secs, lossPct, freezes,
		percentile(all, 0.5), percentile(all, 0.99), fwdP50, fwdP99, totCPU.Seconds()/secs, perPkt, maxRSS)
	if o.single > 0 {
		// Loss counts only the packets a subscriber was sent; a video
		// the SFU paused or thinned shows here instead.
		mean, minPct, under := delivered(first, prev.videoPkts, pub.VideoSent()-pub0, subs)
		fmt.Printf(" video_delivered_pct_mean=%.2f video_delivered_pct_min=%.2f subs_under_99pct=%d", mean, minPct, under)
	}
	fmt.Println()
	return nil
}

// delivered compares each subscriber's video packets between two
// collections with the packets published meanwhile: the mean and the
// lowest share in percent, and how many subscribers got under 99%.
// Packets still in flight at either end make a share a little off, not
// more than a frame's.
func delivered(from, to []uint64, published uint64, subs int) (mean, lowest float64, under int) {
	if published == 0 || subs == 0 {
		return 0, 0, 0
	}
	lowest = 100
	n := 0
	for i := range subs {
		var got uint64
		if i < len(to) {
			got = to[i]
			if i < len(from) {
				got -= from[i]
			}
		}
		pct := min(100*float64(got)/float64(published), 100)
		mean += pct
		lowest = min(lowest, pct)
		if pct < 99 {
			under++
		}
		n++
	}
	return mean / float64(n), lowest, under
}

// forwarded reads the SFU's own count of forwarded packets from /metrics.
func forwarded(base string) (float64, error) {
	m, err := loadpeer.Scrape(nil, base, "")
	if err != nil {
		return 0, err
	}
	v, ok := m["matinee_forwarded_packets_total"]
	if !ok {
		return 0, errors.New("no matinee_forwarded_packets_total")
	}
	return v, nil
}
