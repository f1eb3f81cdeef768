// Command soak runs mixed churn against one Matinee server for a long
// time and prints, every -interval, what the server process holds (heap
// after a GC, RSS, goroutines, open files) next to the members and
// viewers connected, then a verdict: were the last samples flat against
// the first one after -warmup? It finds slow leaks that a short test
// cannot: a goroutine, file or buffer kept per join, view or recording.
//
// The churn: WebSocket members join, send a chat message and leave; a
// WHIP publisher shares a VP8 + Opus screen the whole time; WHEP viewers
// connect and DELETE their session; a recording is started and stopped
// every -record-every.
//
//	go run ./bench/soak -duration 10m -interval 1m
//	go run ./bench/soak -url http://127.0.0.1:8080 -key $KEY
//
// It only talks to loopback addresses, and stops after -duration.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/matinee-dev/matinee/bench/internal/loadpeer"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/synth"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/server"
	"github.com/pion/webrtc/v4"
)

type options struct {
	url         string
	key         string
	room        string
	duration    time.Duration
	interval    time.Duration
	warmup      time.Duration
	members     int           // concurrent churning WebSocket members
	viewers     int           // concurrent churning WHEP viewers
	hold        time.Duration // how long a member or viewer stays, at most
	recordEvery time.Duration
	recordFor   time.Duration
	tolerance   float64 // allowed relative growth, last sample against the first after warm-up
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "", "base URL of a running server (loopback only); default: start one in this process")
	flag.StringVar(&o.key, "key", os.Getenv("MATINEE_API_KEY"), "API key with -url (default $MATINEE_API_KEY)")
	flag.StringVar(&o.room, "room", "soak", "room to use")
	flag.DurationVar(&o.duration, "duration", time.Hour, "how long to run")
	flag.DurationVar(&o.interval, "interval", time.Minute, "time between samples")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Minute, "samples before this are not the verdict's baseline")
	flag.IntVar(&o.members, "members", 4, "WebSocket members joining and leaving at once")
	flag.IntVar(&o.viewers, "viewers", 3, "WHEP viewers connecting and leaving at once")
	flag.DurationVar(&o.hold, "hold", 3*time.Second, "longest a member or viewer stays before leaving")
	flag.DurationVar(&o.recordEvery, "record-every", 3*time.Minute, "start a recording this often")
	flag.DurationVar(&o.recordFor, "record-for", 30*time.Second, "stop each recording after this long")
	flag.Float64Var(&o.tolerance, "tolerance", 0.25, "relative growth allowed between the first sample after warm-up and the last")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	flat, err := run(ctx, o, os.Stdout, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if !flat {
		os.Exit(2)
	}
}

func (o options) check() error {
	switch {
	case o.duration <= 0 || o.duration > 24*time.Hour:
		return fmt.Errorf("-duration %s: want up to 24h", o.duration)
	case o.interval <= 0 || o.interval > o.duration:
		return fmt.Errorf("-interval %s: want more than 0 and at most -duration", o.interval)
	case o.warmup < 0 || o.warmup >= o.duration:
		return fmt.Errorf("-warmup %s: want less than -duration", o.warmup)
	case o.members < 0 || o.members > 100 || o.viewers < 0 || o.viewers > 100:
		return errors.New("-members and -viewers: want 0-100")
	case o.hold <= 0 || o.recordEvery <= 0 || o.recordFor <= 0:
		return errors.New("-hold, -record-every and -record-for must be positive")
	case o.tolerance < 0:
		return errors.New("-tolerance must not be negative")
	}
	return nil
}

// run churns until -duration and reports whether the process stayed flat.
func run(ctx context.Context, o options, out io.Writer, log *slog.Logger) (bool, error) {
	if err := o.check(); err != nil {
		return false, err
	}
	inproc := o.url == ""
	if inproc {
		base, key, closeSrv, err := startInProcess(ctx, log)
		if err != nil {
			return false, err
		}
		defer closeSrv()
		o.url, o.key = base, key
	} else if err := checkLoopback(o.url); err != nil {
		return false, err
	}
	api, err := testpeer.NewAPI(testpeer.Options{})
	if err != nil {
		return false, err
	}
	pub, err := loadpeer.Publish(ctx, api, nil, o.url+"/whip/"+o.room+"?name=soak", o.key, []synth.LayerSpec{{Bitrate: 300_000, Width: 640, Height: 360}}, nil)
	if err != nil {
		return false, fmt.Errorf("publish: %w", err)
	}
	fmt.Fprintf(out, "soak %s: %d members, %d viewers churning (hold ≤%v), recording %v every %v; sampling every %v for %v\n",
		o.url, o.members, o.viewers, o.hold, o.recordFor, o.recordEvery, o.interval, o.duration)
	fmt.Fprintf(out, "%8s %10s %10s %6s %5s %7s %7s %7s %7s %5s %5s\n",
		"elapsed", "heap_MiB", "rss_MiB", "gor", "fds", "members", "viewers", "joins", "views", "recs", "errs")

	c := &churn{o: o, api: api, log: log}
	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := 0; i < o.members; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.memberLoop(wctx, i) }()
	}
	for i := 0; i < o.viewers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.viewerLoop(wctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); c.recordLoop(wctx) }()

	samples := c.sampleUntil(ctx, out, inproc)
	stopWork()
	wg.Wait()
	pub.Close(ctx)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return verdict(out, o, samples), nil
}

// churn holds the counters the workers share with the sampler.
type churn struct {
	o                  options
	api                *webrtc.API
	log                *slog.Logger
	members, viewers   atomic.Int64 // connected now
	joins, views, recs atomic.Int64 // completed so far
	errs               atomic.Int64
}

func (c *churn) fail(what string, err error) {
	c.errs.Add(1)
	c.log.Error("soak "+what, "err", err)
}

// pause waits up to d, at random, or until ctx ends; false if it ended.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d/4 + rand.N(d*3/4+1))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *churn) memberLoop(ctx context.Context, i int) {
	wsURL := "ws" + strings.TrimPrefix(c.o.url, "http") + "/ws"
	for n := 0; ctx.Err() == nil; n++ {
		if err := c.member(ctx, wsURL, fmt.Sprintf("m%d-%d", i, n)); err != nil && ctx.Err() == nil {
			c.fail("member", err)
			pause(ctx, c.o.hold)
		}
	}
}

// member joins, says something, stays a while and leaves.
func (c *churn) member(ctx context.Context, wsURL, name string) error {
	cl, err := testpeer.Dial(ctx, wsURL, c.api)
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := cl.Join(ctx, c.o.room, name); err != nil {
		return fmt.Errorf("join %s: %w", name, err)
	}
	c.members.Add(1)
	defer c.members.Add(-1)
	if err := cl.Call(ctx, "chat", map[string]string{"text": "hello from " + name}, nil); err != nil {
		return fmt.Errorf("chat %s: %w", name, err)
	}
	pause(ctx, c.o.hold)
	c.joins.Add(1)
	return nil
}

func (c *churn) viewerLoop(ctx context.Context) {
	for ctx.Err() == nil {
		if err := c.viewer(ctx); err != nil && ctx.Err() == nil {
			c.fail("viewer", err)
			pause(ctx, c.o.hold)
		}
	}
}

// viewer opens a WHEP session, reads its media a while and DELETEs it.
func (c *churn) viewer(ctx context.Context) error {
	var readers sync.WaitGroup
	defer readers.Wait()
	v, err := loadpeer.View(ctx, c.api, nil, c.o.url+"/whep/"+c.o.room, c.o.key, func(tr *webrtc.TrackRemote) {
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
			}
		}()
	})
	if err != nil {
		return err
	}
	defer v.PC.Close()
	c.viewers.Add(1)
	pause(ctx, c.o.hold)
	c.viewers.Add(-1)
	// The DELETE must go out even when the run is ending.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := v.Sess.Delete(dctx); err != nil {
		return fmt.Errorf("whep delete: %w", err)
	}
	c.views.Add(1)
	return nil
}

func (c *churn) recordLoop(ctx context.Context) {
	tick := time.NewTicker(c.o.recordEvery)
	defer tick.Stop()
	for {
		if err := c.record(ctx); err != nil && ctx.Err() == nil {
			c.fail("recording", err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// record starts a recording of the room, waits -record-for and stops it.
func (c *churn) record(ctx context.Context) error {
	base := c.o.url + "/api/rooms/" + url.PathEscape(c.o.room) + "/recordings"
	var info struct {
		ID string `json:"id"`
	}
	if err := c.api_(ctx, http.MethodPost, base, []byte("{}"), http.StatusCreated, &info); err != nil {
		return err
	}
	t := time.NewTimer(c.o.recordFor)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.api_(dctx, http.MethodDelete, base+"/"+url.PathEscape(info.ID), nil, 0, nil); err != nil {
		return err
	}
	c.recs.Add(1)
	return nil
}

// api_ makes one REST call; want 0 accepts any 2xx.
func (c *churn) api_(ctx context.Context, method, u string, body []byte, want int, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.o.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if (want != 0 && resp.StatusCode != want) || resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, strings.TrimSpace(string(b)))
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			return fmt.Errorf("%s %s: %w", method, u, err)
		}
	}
	return nil
}

// sample is one line of the report; -1 is a figure that could not be read.
type sample struct {
	elapsed          time.Duration
	heap, rss        int64 // bytes
	goroutines, fds  int
	members, viewers int64
}

func (c *churn) sampleUntil(ctx context.Context, out io.Writer, inproc bool) []sample {
	start := time.Now()
	tick := time.NewTicker(c.o.interval)
	defer tick.Stop()
	end := time.NewTimer(c.o.duration)
	defer end.Stop()
	var ss []sample
	for {
		select {
		case <-tick.C:
		case <-end.C:
			return ss
		case <-ctx.Done():
			return ss
		}
		s := c.measure(ctx, inproc)
		s.elapsed = time.Since(start).Round(time.Second)
		ss = append(ss, s)
		fmt.Fprintf(out, "%8s %10s %10s %6s %5s %7d %7d %7d %7d %5d %5d\n",
			s.elapsed, mib(s.heap), mib(s.rss), num(s.goroutines), num(s.fds), s.members, s.viewers,
			c.joins.Load(), c.views.Load(), c.recs.Load(), c.errs.Load())
	}
}

func (c *churn) measure(ctx context.Context, inproc bool) sample {
	s := sample{heap: -1, rss: -1, goroutines: -1, fds: -1, members: c.members.Load(), viewers: c.viewers.Load()}
	if !inproc {
		c.scrape(ctx, &s)
		return s
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.heap = int64(ms.HeapInuse)
	s.goroutines = runtime.NumGoroutine()
	s.rss = vmRSS("/proc/self/status")
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.fds = len(ents)
	}
	return s
}

// scrape reads a remote server's figures from its /metrics (the Go and
// process collectors). Its heap is as the last GC left it, not after a
// forced one, so it is noisier than in-process.
func (c *churn) scrape(ctx context.Context, s *sample) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.o.url+"/metrics", nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.fail("metrics", err)
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_memstats_heap_inuse_bytes":
			s.heap = int64(v)
		case "process_resident_memory_bytes":
			s.rss = int64(v)
		case "go_goroutines":
			s.goroutines = int(v)
		case "process_open_fds":
			s.fds = int(v)
		}
	}
}

// vmRSS reads VmRSS from a /proc status file, in bytes; -1 if unreadable.
func vmRSS(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

func mib(b int64) string {
	if b < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(b)/(1<<20))
}

func num(n int) string {
	if n < 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// verdict compares the last sample with the first after warm-up. A figure
// is flat if it grew by at most -tolerance, plus a small absolute slack
// (churn leaves a few peers mid-connection at any instant).
func verdict(out io.Writer, o options, ss []sample) bool {
	var base *sample
	for i := range ss {
		if ss[i].elapsed >= o.warmup {
			base = &ss[i]
			break
		}
	}
	if base == nil || base == &ss[len(ss)-1] {
		fmt.Fprintln(out, "verdict: too few samples after warm-up to judge")
		return true
	}
	last := ss[len(ss)-1]
	flat := true
	var notes []string
	judge := func(name string, first, now, slack int64, unit func(int64) string) {
		if first < 0 || now < 0 {
			return
		}
		limit := int64(float64(first)*(1+o.tolerance)) + slack
		state := "flat"
		if now > limit {
			state, flat = "GROWING", false
		}
		notes = append(notes, fmt.Sprintf("%s %s→%s (limit %s) %s", name, unit(first), unit(now), unit(limit), state))
	}
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	m := func(v int64) string { return mib(v) + "MiB" }
	judge("heap", base.heap, last.heap, 4<<20, m)
	judge("rss", base.rss, last.rss, 16<<20, m)
	judge("goroutines", int64(base.goroutines), int64(last.goroutines), 50, n)
	judge("fds", int64(base.fds), int64(last.fds), 20, n)
	word := "FLAT"
	if !flat {
		word = "GROWING"
	}
	fmt.Fprintf(out, "verdict: %s (%s vs %s, tolerance %.0f%%): %s\n", word, last.elapsed, base.elapsed, o.tolerance*100, strings.Join(notes, "; "))
	return flat
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
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url %s: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed", raw)
	}
	return nil
}

// startInProcess runs a server on loopback with ephemeral ports.
func startInProcess(ctx context.Context, log *slog.Logger) (base, key string, closeFn func(), err error) {
	dir, err := os.MkdirTemp("", "matinee-soak-")
	if err != nil {
		return "", "", nil, err
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.UDPPort = 0
	cfg.ICELoopbackOnly = true
	cfg.WSMaxPerAddr = 0 // every member comes from loopback
	cfg.ChatRate = 0     // every member shares one address
	srv, err := server.NewWithLogger(ctx, cfg, log)
	if err != nil {
		os.RemoveAll(dir)
		return "", "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = srv.Close()
		os.RemoveAll(dir)
		return "", "", nil, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = hs.Serve(ln) }()
	return "http://" + ln.Addr().String(), srv.APIKey(), func() {
		_ = hs.Close()
		<-served
		_ = srv.Close()
		os.RemoveAll(dir)
	}, nil
}
