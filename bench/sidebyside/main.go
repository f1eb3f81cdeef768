// Command sidebyside measures Matinee and, when given a Galene binary,
// Galene under the same load, in alternating rounds: one WHIP publisher
// (pion) sending 1280×720 VP8 at about 2 Mbit/s in one encoding plus
// Opus, and N viewers — pion WHEP clients with pion's defaults for
// Matinee, clients of Galene's own WebSocket protocol for Galene. Each
// server runs fresh for each round, in a network namespace of its own
// (a veth to this process's namespace), pinned to one CPU while this
// process runs on another. It prints a markdown table: the server's CPU
// time per video packet its viewers received, and how much of the video
// each viewer got.
//
//	go build -o /tmp/sidebyside ./bench/sidebyside
//	sudo /tmp/sidebyside -galene /path/outside/the/repo/galene -n 10,50,100,200
//
// Galene is never part of this repository: build it where you like and
// pass its path. See docs/benchmarks.md, "Side by side with Galene".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/matinee-dev/matinee/bench/internal/loadpeer"
	"github.com/matinee-dev/matinee/bench/internal/netns"
	"github.com/matinee-dev/matinee/internal/synth"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/pion/webrtc/v4"
)

// maxViewers bounds -n: the load generator is one process on one core.
const maxViewers = 500

type options struct {
	matinee   string
	galene    string
	ns        []int
	rounds    int
	duration  time.Duration
	warmup    time.Duration
	cpuServer int
	cpuLoad   int
	netns     bool
	bitrate   int
	floor     string
}

func main() {
	var o options
	var ns string
	flag.StringVar(&o.matinee, "matinee", "", "Matinee binary (default: go build ./cmd/matinee into a temp dir)")
	flag.StringVar(&o.galene, "galene", "", "Galene binary, built outside this repository (default: Matinee only)")
	flag.StringVar(&ns, "n", "10,50,100,200", "viewer counts, comma-separated")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per viewer count (each server once a round, alternating which goes first)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of a round")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "time between every viewer receiving video and measuring")
	flag.IntVar(&o.cpuServer, "cpu-server", 1, "CPU the server is pinned to with taskset (-1: not pinned)")
	flag.IntVar(&o.cpuLoad, "cpu-load", 0, "CPU this process (publisher and viewers) is pinned to (-1: not pinned)")
	flag.BoolVar(&o.netns, "netns", true, "run each server in a network namespace of its own (needs root); off: Matinee only, on loopback")
	flag.IntVar(&o.bitrate, "bitrate", 2_000_000, "video bits per second")
	flag.StringVar(&o.floor, "floor", "../shared/tools/fanout-limit", "the floor tool's source directory, run at the start and the end if present (empty: skip)")
	flag.Parse()
	var err error
	if o.ns, err = parseCounts(ns); err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		stop()
		os.Exit(1)
	}
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxViewers {
			return nil, fmt.Errorf("-n %q: want counts of 1-%d, comma-separated", s, maxViewers)
		}
		out = append(out, n)
	}
	return out, nil
}

// result is one server's round.
type result struct {
	usPerPkt     float64
	meanPct      float64 // video delivered, mean over viewers
	minPct       float64
	slowestPPS   float64 // the slowest viewer's video packets per second
	publishedPPS float64
	cores        float64
	rssMB        float64
}

func run(ctx context.Context, o options, out io.Writer) error {
	if o.rounds < 1 || o.duration <= 0 || o.bitrate < 100_000 {
		return errors.New("-rounds, -duration and -bitrate must be positive (bitrate at least 100000)")
	}
	if o.galene != "" && !o.netns {
		return errors.New("-galene needs -netns: Galene gathers ICE candidates on every interface but loopback, so it runs only inside a namespace of its own")
	}
	if o.netns {
		if err := netns.Check(", or pass -netns=false (Matinee only, on loopback)"); err != nil {
			return err
		}
	}
	if o.cpuLoad >= 0 {
		if err := loadpeer.PinSelf(o.cpuLoad); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "sidebyside-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.matinee == "" {
		o.matinee = filepath.Join(tmp, "matinee")
		fmt.Fprintln(out, "building ./cmd/matinee")
		if b, err := exec.CommandContext(ctx, "go", "build", "-o", o.matinee, "./cmd/matinee").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/matinee (run from the repository's root, or give -matinee): %w\n%s", err, b)
		}
	}
	servers := []string{"Matinee"}
	if o.galene != "" {
		if _, err := os.Stat(o.galene); err != nil {
			return fmt.Errorf("-galene: %w", err)
		}
		servers = append(servers, "Galene")
	}
	// Each server's namespace, made once for the sitting.
	nss := map[string]*netns.NS{}
	if o.netns {
		for i, s := range servers {
			n, err := netns.NewPair("sbs", i)
			if err != nil {
				return fmt.Errorf("namespace for %s: %w", s, err)
			}
			defer n.Remove()
			nss[s] = n
		}
	}
	floorBefore := runFloor(ctx, o, tmp, out)

	res := map[string]map[int][]result{}
	for _, s := range servers {
		res[s] = map[int][]result{}
	}
	fmt.Fprintf(out, "%d rounds of %v (after %v warm-up) per N; server on CPU %d, load on CPU %d, namespaces %v\n",
		o.rounds, o.duration, o.warmup, o.cpuServer, o.cpuLoad, o.netns)
	for _, n := range o.ns {
		for r := range o.rounds {
			order := slices.Clone(servers)
			if r%2 == 1 {
				slices.Reverse(order) // alternate who goes first
			}
			for _, s := range order {
				if err := ctx.Err(); err != nil {
					return err
				}
				rr, err := round(ctx, o, s, nss[s], n)
				if err != nil {
					return fmt.Errorf("%s, %d viewers, round %d: %w", s, n, r+1, err)
				}
				res[s][n] = append(res[s][n], rr)
				fmt.Fprintf(out, "  %-7s N=%-3d round %d: %.2f µs/video pkt, delivered %.1f%% (lowest %.1f%%, slowest %.0f of %.0f pkt/s), %.2f cores, RSS %.0f MB\n",
					s, n, r+1, rr.usPerPkt, rr.meanPct, rr.minPct, rr.slowestPPS, rr.publishedPPS, rr.cores, rr.rssMB)
			}
		}
	}
	floorAfter := runFloor(ctx, o, tmp, out)
	fmt.Fprintln(out)
	printTable(out, o.ns, res)
	printMemory(out, o.ns, servers, res)
	printFloor(out, floorBefore, floorAfter)
	return nil
}

// round runs one server fresh with one publisher and n viewers and
// measures it over o.duration.
func round(ctx context.Context, o options, server string, ns *netns.NS, n int) (result, error) {
	var in *instance
	var err error
	if server == "Galene" {
		in, err = startGalene(ctx, o.galene, ns, o.cpuServer)
	} else {
		in, err = startMatinee(ctx, o.matinee, ns, o.cpuServer, n)
	}
	if err != nil {
		return result{}, err
	}
	defer in.stop()
	var tpo testpeer.Options
	if ns != nil {
		tpo.Interfaces = []string{ns.Veth}
	}
	api, err := testpeer.NewAPI(tpo)
	if err != nil {
		return result{}, err
	}
	win := loadpeer.NewWindow()
	pub, err := loadpeer.Publish(ctx, api, in.hc, in.whipURL, in.token, []synth.LayerSpec{{Bitrate: o.bitrate, Width: 1280, Height: 720}}, win.OnFrame)
	if err != nil {
		return result{}, fmt.Errorf("publish: %w\n%s", err, tail(in.log))
	}
	defer pub.Close(context.Background())

	// Viewers come once the server has the publisher's tracks, which it
	// shows by sending RTCP about them: Galene offers a viewer that asks
	// before then nothing, ever.
	if err := pollUntil(ctx, 15*time.Second, func() bool { return pub.Video.RTCPs() > 0 }); err != nil {
		return result{}, fmt.Errorf("no RTCP from the server for the published video: %w\n%s", err, tail(in.log))
	}
	counts := make([]loadpeer.Count, n)
	var readers sync.WaitGroup
	closers := make([]func(), n)
	defer func() {
		for _, c := range closers {
			if c != nil {
				c()
			}
		}
		readers.Wait()
	}()
	// A few viewers connect at once: 200 one after the other would take
	// long on a busy machine.
	sem := make(chan struct{}, 8)
	errs := make(chan error, n)
	var connecting sync.WaitGroup
	for i := range n {
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
			c, err := in.view(ctx, api, i, onTrack)
			if err != nil {
				errs <- fmt.Errorf("viewer %d: %w", i, err)
				return
			}
			closers[i] = c
		}()
	}
	connecting.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return result{}, fmt.Errorf("%w\n%s", err, tail(in.log))
	}
	// Every viewer receives video before the warm-up starts.
	deadline := time.Now().Add(30*time.Second + time.Duration(n)*100*time.Millisecond)
	for {
		waiting := 0
		for i := range counts {
			if counts[i].Any.Load() == 0 {
				waiting++
			}
		}
		if waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("%d of %d viewers received no video\n%s", waiting, n, tail(in.log))
		}
		select {
		case <-ctx.Done():
			return result{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := sleepCtx(ctx, o.warmup); err != nil {
		return result{}, err
	}
	cpu0, err := loadpeer.ProcCPUFine(in.pid)
	if err != nil {
		return result{}, err
	}
	t0 := time.Now()
	win.Open()
	if err := sleepCtx(ctx, o.duration); err != nil {
		return result{}, err
	}
	published := win.Close()
	cpu1, err := loadpeer.ProcCPUFine(in.pid)
	if err != nil {
		return result{}, err
	}
	secs := time.Since(t0).Seconds()
	rss, _ := loadpeer.ProcRSS(in.pid)
	// The window's last packets are still on their way.
	if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
		return result{}, err
	}
	got := make([]uint64, n)
	for i := range counts {
		got[i] = counts[i].InWindow.Load()
	}
	return measure(cpu1-cpu0, secs, published, got, rss), nil
}

// measure makes a round's figures from the server's CPU time over the
// window and the packets of the window's frames: published, and received
// by each viewer. The packets forwarded are the copies the viewers
// received, counted alike for both servers (on the namespace's link
// nothing is lost on the way).
func measure(cpu time.Duration, secs float64, published uint64, got []uint64, rss float64) result {
	pub := float64(published)
	r := result{minPct: 100, slowestPPS: -1, publishedPPS: pub / secs, rssMB: rss, cores: cpu.Seconds() / secs}
	var total float64
	for _, g := range got {
		total += float64(g)
		pct := 0.0
		if pub > 0 {
			pct = min(100*float64(g)/pub, 100)
		}
		r.meanPct += pct / float64(len(got))
		r.minPct = min(r.minPct, pct)
		if pps := float64(g) / secs; r.slowestPPS < 0 || pps < r.slowestPPS {
			r.slowestPPS = pps
		}
	}
	if total > 0 {
		r.usPerPkt = float64(cpu.Microseconds()) / total
	}
	return r
}

// pollUntil polls ok every 20 ms until it holds, for at most d.
func pollUntil(ctx context.Context, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// printTable prints the table: medians of the rounds' µs per
// video packet, their ratio, and the delivery over the rounds.
func printTable(out io.Writer, ns []int, res map[string]map[int][]result) {
	fmt.Fprintln(out, "| N viewers | Galene µs/video pkt | Matinee µs/video pkt | Galene ÷ Matinee | Matinee video delivered | Galene delivered |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|")
	for _, n := range ns {
		m, g := res["Matinee"][n], res["Galene"][n]
		mu, gu := loadpeer.Median(field(m, func(r result) float64 { return r.usPerPkt })), loadpeer.Median(field(g, func(r result) float64 { return r.usPerPkt }))
		ratio := "—"
		if mu > 0 && gu > 0 {
			ratio = fmt.Sprintf("%.2f", gu/mu)
		}
		fmt.Fprintf(out, "| %d | %s | %s | %s | %s | %s |\n", n, us(gu), us(mu), ratio, deliveredCell(m), deliveredCell(g))
	}
}

// printMemory gives each server's resident memory at the end of the
// window (median of the rounds) and, with two or more N, the slope
// between the smallest and the largest: memory per viewer.
func printMemory(out io.Writer, ns []int, servers []string, res map[string]map[int][]result) {
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| N viewers | "+strings.Join(servers, " RSS MB | ")+" RSS MB |")
	fmt.Fprintln(out, "|---|"+strings.Repeat("---|", len(servers)))
	for _, n := range ns {
		cells := []string{strconv.Itoa(n)}
		for _, s := range servers {
			cells = append(cells, fmt.Sprintf("%.0f", loadpeer.Median(field(res[s][n], func(r result) float64 { return r.rssMB }))))
		}
		fmt.Fprintln(out, "| "+strings.Join(cells, " | ")+" |")
	}
	lo, hi := slices.Min(ns), slices.Max(ns)
	if lo == hi {
		return
	}
	var per []string
	for _, s := range servers {
		rss := func(n int) float64 {
			return loadpeer.Median(field(res[s][n], func(r result) float64 { return r.rssMB }))
		}
		per = append(per, fmt.Sprintf("%s %.2f MB", s, (rss(hi)-rss(lo))/float64(hi-lo)))
	}
	fmt.Fprintf(out, "\nMemory per viewer (N=%d to %d): %s\n", lo, hi, strings.Join(per, ", "))
}

func field(rs []result, f func(result) float64) []float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	return v
}

func us(v float64) string {
	if v <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}

// deliveredCell is the rounds' range of mean delivery, and the slowest
// viewer of them all when anyone got under 99%.
func deliveredCell(rs []result) string {
	if len(rs) == 0 {
		return "—"
	}
	lo, hi := 100.0, 0.0
	var worst result
	worst.minPct = 101
	for _, r := range rs {
		lo, hi = min(lo, r.meanPct), max(hi, r.meanPct)
		if r.minPct < worst.minPct {
			worst = r
		}
	}
	cell := fmt.Sprintf("%.1f%%", lo)
	if hi-lo >= 0.05 {
		cell = fmt.Sprintf("%.1f–%.1f%%", lo, hi)
	}
	if worst.minPct < 99 {
		cell += fmt.Sprintf(" (slowest viewer %.0f pkt/s of %.0f)", worst.slowestPPS, worst.publishedPPS)
	}
	return cell
}
