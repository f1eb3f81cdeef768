// Command relay measures a share relayed across cluster nodes (issue
// 18): a redis-server on a bridge, an origin node and edge nodes, each
// a matinee process in a network namespace of its own on that bridge,
// one pion WHIP publisher on the origin (one VP8 layer of -bitrate, or
// three simulcast layers, plus Opus) and pion WHEP viewers on the origin
// or on the edges. The origin is pinned to one CPU; its CPU time comes
// from /proc, its egress from its veth's counters, its copies from its
// /metrics. Each scenario runs on a fresh cluster. The runs:
//
//	a  the origin's CPU per copy: N local viewers against N edges with
//	   one viewer each (and the origin with the publisher only, the
//	   baseline both are counted over)
//	b  the origin's egress with 1 and with -many viewers on one edge
//	c  delay p50/p99 of -mixed viewers on an edge against as many on
//	   the origin, at the same time
//	d  -edges edges × -many viewers: delivery (loss) per edge
//
// As root, from the repository's root:
//
//	go build -o /tmp/relaybench ./bench/relay
//	/tmp/relaybench -runs a,b,c,d
//
// It talks only to the namespaces it makes, and removes them at the
// end. See docs/benchmarks.md, "Relaying across nodes".
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
	"strings"
	"syscall"
	"time"

	"github.com/matinee-dev/matinee/bench/internal/loadpeer"
	"github.com/matinee-dev/matinee/bench/internal/netns"
)

// maxViewers bounds the viewers of a scenario: the generator is one
// process on this machine.
const maxViewers = 600

// maxEdges bounds the edge nodes: each is a matinee process.
const maxEdges = 20

type options struct {
	matinee     string
	redisServer string
	runs        []string
	copies      int
	many        int
	mixed       int
	edges       int
	rounds      int
	duration    time.Duration
	warmup      time.Duration
	cpuOrigin   int
	cpuEdges    int
	cpuLoad     int
	bitrate     int
	simulcast   bool
	perf        string
}

func main() {
	var o options
	var runs string
	flag.StringVar(&o.matinee, "matinee", "", "Matinee binary (default: go build ./cmd/matinee into a temp dir)")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary")
	flag.StringVar(&runs, "runs", "a,b,c,d", "runs, comma-separated (a: CPU per copy, b: egress, c: delay, d: loss)")
	flag.IntVar(&o.copies, "copies", 3, "run a: local viewers, and edges with one viewer each")
	flag.IntVar(&o.many, "many", 100, "runs b and d: viewers on an edge")
	flag.IntVar(&o.mixed, "mixed", 10, "run c: viewers on the origin and as many on one edge")
	flag.IntVar(&o.edges, "edges", 3, "run d: edges")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds of each run's scenarios (alternating their order)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured window of a scenario")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "time between every viewer receiving video and the window")
	flag.IntVar(&o.cpuOrigin, "cpu-origin", 1, "CPU the origin is pinned to with taskset (-1: not pinned)")
	flag.IntVar(&o.cpuEdges, "cpu-edges", 0, "CPU the edges are pinned to in run a (-1: not pinned); run c puts its edge on -cpu-origin, runs b and d never pin them")
	flag.IntVar(&o.cpuLoad, "cpu-load", 0, "CPU this process (publisher and viewers) is pinned to in runs a and c (-1: not pinned); runs b and d never pin it")
	flag.IntVar(&o.bitrate, "bitrate", 2_000_000, "video bits per second of the one layer")
	flag.BoolVar(&o.simulcast, "simulcast", false, "publish three simulcast layers (150k/500k/2M) instead of one")
	flag.StringVar(&o.perf, "perf", "", "record the origin's CPU during each window with perf(1) into this directory (perf report -i FILE shows where its time goes)")
	flag.Parse()
	o.runs = strings.Split(runs, ",")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		stop()
		os.Exit(1)
	}
}

// plan is a run's scenarios and how to print them.
type plan struct {
	run       string
	title     string
	scenarios []scenario
	table     func(io.Writer, map[string][]result)
}

func (o options) plans() ([]plan, error) {
	var out []plan
	for _, r := range o.runs {
		switch strings.TrimSpace(r) {
		case "a":
			relayed := make([]int, o.copies)
			for i := range relayed {
				relayed[i] = 1
			}
			out = append(out, plan{run: "a", title: fmt.Sprintf("the origin's CPU per copy: %d local viewers against %d edges with one viewer each", o.copies, o.copies),
				scenarios: []scenario{{name: "publisher only", pinned: true}, {name: fmt.Sprintf("%d local", o.copies), local: o.copies, pinned: true},
					{name: fmt.Sprintf("%d edges × 1", o.copies), edges: relayed, pinned: true}},
				table: func(w io.Writer, res map[string][]result) { tableA(w, o, res) }})
		case "b":
			out = append(out, plan{run: "b", title: fmt.Sprintf("the origin's egress with 1 and with %d viewers on one edge (generator and edge on every CPU)", o.many),
				scenarios: []scenario{{name: "edge × 1", edges: []int{1}}, {name: fmt.Sprintf("edge × %d", o.many), edges: []int{o.many}}},
				table:     func(w io.Writer, res map[string][]result) { tableB(w, o, res) }})
		case "c":
			out = append(out, plan{run: "c", title: fmt.Sprintf("delay: %d viewers on the origin and %d on an edge, at once (the edge on the origin's CPU)", o.mixed, o.mixed),
				scenarios: []scenario{{name: "mixed", local: o.mixed, edges: []int{o.mixed}, pinned: true, edgesOnOrigin: true}},
				table:     func(w io.Writer, res map[string][]result) { tableC(w, res) }})
		case "d":
			many := make([]int, o.edges)
			for i := range many {
				many[i] = o.many
			}
			out = append(out, plan{run: "d", title: fmt.Sprintf("%d edges × %d viewers (generator and edges on every CPU)", o.edges, o.many),
				scenarios: []scenario{{name: fmt.Sprintf("%d edges × %d", o.edges, o.many), edges: many}},
				table:     func(w io.Writer, res map[string][]result) { tableD(w, res) }})
		default:
			return nil, fmt.Errorf("-runs: unknown run %q (want a, b, c, d)", r)
		}
	}
	for _, p := range out {
		for _, s := range p.scenarios {
			if s.viewers() > maxViewers || len(s.edges) > maxEdges {
				return nil, fmt.Errorf("run %s: %d viewers on %d edges, at most %d on %d", p.run, s.viewers(), len(s.edges), maxViewers, maxEdges)
			}
		}
	}
	return out, nil
}

func run(ctx context.Context, o options, out io.Writer) error {
	if o.rounds < 1 || o.duration <= 0 || o.bitrate < 100_000 || o.copies < 1 || o.many < 1 || o.mixed < 1 || o.edges < 1 {
		return errors.New("-rounds, -duration, -copies, -many, -mixed, -edges must be positive, -bitrate at least 100000")
	}
	plans, err := o.plans()
	if err != nil {
		return err
	}
	if err := netns.Check(""); err != nil {
		return err
	}
	if o.redisServer, err = exec.LookPath(o.redisServer); err != nil {
		return fmt.Errorf("redis-server (apt-get install redis-server): %w", err)
	}
	tmp, err := os.MkdirTemp("", "relaybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.perf != "" {
		if _, err := exec.LookPath("perf"); err != nil {
			return fmt.Errorf("-perf: %w (apt-get install linux-perf)", err)
		}
		if err := os.MkdirAll(o.perf, 0o755); err != nil {
			return err
		}
	}
	if o.matinee == "" {
		o.matinee = filepath.Join(tmp, "matinee")
		fmt.Fprintln(out, "building ./cmd/matinee")
		if b, err := exec.CommandContext(ctx, "go", "build", "-o", o.matinee, "./cmd/matinee").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/matinee (run from the repository's root, or give -matinee): %w\n%s", err, b)
		}
	}
	edges := 1
	for _, p := range plans {
		for _, s := range p.scenarios {
			edges = max(edges, len(s.edges))
		}
	}
	br, err := netns.NewBridge("rl")
	if err != nil {
		return err
	}
	defer br.Remove()
	var nss []*netns.NS
	for i := range 1 + edges {
		n, err := br.Add(i)
		if err != nil {
			return err
		}
		nss = append(nss, n)
	}
	fmt.Fprintf(out, "%d round(s) of %v (after %v warm-up) per scenario; origin on CPU %d; edges on %d in run a, this process on %d in runs a and c; %s\n",
		o.rounds, o.duration, o.warmup, o.cpuOrigin, o.cpuEdges, o.cpuLoad, o.describeVideo())
	for _, p := range plans {
		fmt.Fprintf(out, "\n## Run %s: %s\n\n", p.run, p.title)
		res := map[string][]result{}
		for r := range o.rounds {
			order := slices.Clone(p.scenarios)
			if r%2 == 1 {
				slices.Reverse(order)
			}
			for _, s := range order {
				rr, err := measureScenario(ctx, o, br, nss, s, fmt.Sprintf("%s-%s-%d", p.run, strings.NewReplacer(" ", "", "×", "x").Replace(s.name), r+1))
				if err != nil {
					return fmt.Errorf("run %s, %s, round %d: %w", p.run, s.name, r+1, err)
				}
				res[s.name] = append(res[s.name], rr)
				fmt.Fprintf(out, "  %-16s round %d: %s\n", s.name, r+1, rr.line())
			}
		}
		fmt.Fprintln(out)
		p.table(out, res)
	}
	return nil
}

func (o options) describeVideo() string {
	if o.simulcast {
		return "simulcast VP8 (150k/500k/2M) + Opus"
	}
	return fmt.Sprintf("VP8 %d kbit/s + Opus", o.bitrate/1000)
}

// line is one scenario's round, for the log.
func (r result) line() string {
	s := fmt.Sprintf("origin %.2f%% CPU, %.0f local + %.0f relayed copies/s (%.1f/s resent on NACKs), %.2f keyframe requests/s to the publisher, egress %.2f Mbit/s, fwd p99 ≤ %g ms",
		100*r.originCores, r.localCopies, r.relayCopies, r.retransmits, r.keyframes, r.egressMbps, r.originFwdP99)
	for _, g := range r.groups {
		s += fmt.Sprintf("; %s ×%d: %.2f%% (min %.2f%%), delay %.2f/%.2f ms", g.name, g.viewers, g.meanPct, g.minPct, g.p50, g.p99)
	}
	if r.silent > 0 {
		s += fmt.Sprintf("; %d viewer(s) had no video yet when the warm-up began", r.silent)
	}
	if r.rcvbufErrs > 0 {
		s += fmt.Sprintf("; generator dropped %.0f datagrams", r.rcvbufErrs)
	}
	return s
}

func med(rs []result, f func(result) float64) float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	return loadpeer.Median(v)
}

// lowest is the lowest delivery of any group's viewer over the rounds.
func lowest(rs []result) float64 {
	lo := 100.0
	for _, r := range rs {
		for _, g := range r.groups {
			lo = min(lo, g.minPct)
		}
	}
	return lo
}

// groupOf returns the named group of r (zero if none).
func groupOf(r result, name string) group {
	for _, g := range r.groups {
		if g.name == name {
			return g
		}
	}
	return group{}
}

// edgeGroups merges a result's edge groups: viewers, mean delivery, and
// the delays' percentiles taken as the worst edge's.
func edgeGroups(r result) group {
	out := group{name: "edges", minPct: 100}
	for _, g := range r.groups {
		if g.name == "origin" {
			continue
		}
		out.meanPct = (out.meanPct*float64(out.viewers) + g.meanPct*float64(g.viewers)) / float64(out.viewers+g.viewers)
		out.viewers += g.viewers
		out.minPct = min(out.minPct, g.minPct)
		out.p50, out.p99 = max(out.p50, g.p50), max(out.p99, g.p99)
	}
	return out
}

// tableA: the origin's CPU time per copy, over the publisher-only
// baseline, local against relayed (medians of the rounds).
func tableA(w io.Writer, o options, res map[string][]result) {
	idle := res["publisher only"]
	base := med(idle, func(r result) float64 { return r.originCores })
	fmt.Fprintln(w, "| origin serves | origin CPU, % of a core | local copies/s | relayed copies/s | µs per copy over the publisher-only origin | µs per copy, all of the origin's CPU | lowest delivered |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	fmt.Fprintf(w, "| the publisher only | %.2f | %.0f | %.0f | — | — | — |\n", 100*base,
		med(idle, func(r result) float64 { return r.localCopies }), med(idle, func(r result) float64 { return r.relayCopies }))
	per := map[string]float64{}
	for _, name := range []string{fmt.Sprintf("%d local", o.copies), fmt.Sprintf("%d edges × 1", o.copies)} {
		rs := res[name]
		cores := med(rs, func(r result) float64 { return r.originCores })
		copies := med(rs, func(r result) float64 { return r.localCopies + r.relayCopies })
		over := med(rs, func(r result) float64 { return 1e6 * (r.originCores - base) / (r.localCopies + r.relayCopies) })
		all := 1e6 * cores / copies
		per[name] = over
		fmt.Fprintf(w, "| %s | %.2f | %.0f | %.0f | %.2f | %.2f | %.2f%% |\n", name, 100*cores,
			med(rs, func(r result) float64 { return r.localCopies }), med(rs, func(r result) float64 { return r.relayCopies }), over, all, lowest(rs))
	}
	l, e := per[fmt.Sprintf("%d local", o.copies)], per[fmt.Sprintf("%d edges × 1", o.copies)]
	if l > 0 {
		verdict := "met"
		if e > l {
			verdict = fmt.Sprintf("missed by %.2f µs (%.0f%%)", e-l, 100*(e-l)/l)
		}
		fmt.Fprintf(w, "\nA relayed copy costs the origin %.2f µs, a local one %.2f µs (relayed ÷ local %.2f): target (no more than a local one) %s.\n", e, l, e/l, verdict)
	}
}

// tableB: the origin's egress with one viewer and with many on an edge,
// also as a share of its ingress: a publisher starved of CPU (this
// machine is shared) sends less, and its origin forwards less, whatever
// the edge's viewers.
func tableB(w io.Writer, o options, res map[string][]result) {
	fmt.Fprintln(w, "| viewers on the edge | origin egress, Mbit/s | origin ingress, Mbit/s | egress ÷ ingress | relayed packets/s | of which resent on NACKs | keyframe requests/s to the publisher | origin CPU, % of a core | edge CPU, % of a core | edge viewers delivered (lowest) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	var eg, ratio []float64
	for _, n := range []int{1, o.many} {
		rs := res[fmt.Sprintf("edge × %d", n)]
		e := med(rs, func(r result) float64 { return r.egressMbps })
		q := med(rs, func(r result) float64 { return r.egressMbps / r.ingressMbps })
		eg, ratio = append(eg, e), append(ratio, q)
		fmt.Fprintf(w, "| %d | %.3f | %.3f | %.3f | %.0f | %.1f | %.2f | %.2f | %.2f | %.2f%% (%.2f%%) |\n", n, e, med(rs, func(r result) float64 { return r.ingressMbps }), q,
			med(rs, func(r result) float64 { return r.relayCopies }),
			med(rs, func(r result) float64 { return r.retransmits }), med(rs, func(r result) float64 { return r.keyframes }),
			100*med(rs, func(r result) float64 { return r.originCores }), 100*med(rs, func(r result) float64 { return r.edgeCores[0] }),
			med(rs, func(r result) float64 { return edgeGroups(r).meanPct }), lowest(rs))
	}
	if eg[0] > 0 && ratio[0] > 0 {
		d, dq := 100*(eg[1]-eg[0])/eg[0], 100*(ratio[1]-ratio[0])/ratio[0]
		verdict := "met"
		if dq > 5 || dq < -5 {
			verdict = "missed"
		}
		fmt.Fprintf(w, "\nOrigin egress with %d viewers on the edge is %+.2f%% of that with 1 (%+.2f%% as a share of its ingress): target (equal within 5%%, on the share) %s.\n", o.many, d, dq, verdict)
	}
}

// tableC: delay percentiles of the origin's viewers and the edge's, per
// round (the same window).
func tableC(w io.Writer, res map[string][]result) {
	fmt.Fprintln(w, "| round | viewers on | viewers | delivered (lowest) | delay p50, ms | delay p99, ms | edge p99 − origin p99, ms | node's own forwarding p99 (≤), ms |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	var diffs []float64
	for i, r := range res["mixed"] {
		og, eg := groupOf(r, "origin"), edgeGroups(r)
		d := eg.p99 - og.p99
		diffs = append(diffs, d)
		fmt.Fprintf(w, "| %d | origin | %d | %.2f%% (%.2f%%) | %.2f | %.2f | | %g |\n", i+1, og.viewers, og.meanPct, og.minPct, og.p50, og.p99, r.originFwdP99)
		fmt.Fprintf(w, "| %d | edge | %d | %.2f%% (%.2f%%) | %.2f | %.2f | %+.2f | %g |\n", i+1, eg.viewers, eg.meanPct, eg.minPct, eg.p50, eg.p99, d, slices.Max(r.edgeFwdP99))
	}
	if len(diffs) > 0 {
		verdict := "met"
		if slices.Max(diffs) > 5 {
			verdict = fmt.Sprintf("missed by %.2f ms in the worst round", slices.Max(diffs)-5)
		}
		fmt.Fprintf(w, "\nEdge viewers' delay p99 exceeds the origin's by %+.2f ms (median of the rounds; worst %+.2f): target (at most 5 ms more) %s.\n", loadpeer.Median(diffs), slices.Max(diffs), verdict)
	}
}

// tableD: each edge's viewers, per round.
func tableD(w io.Writer, res map[string][]result) {
	fmt.Fprintln(w, "| round | edge | viewers | delivered, mean | lowest viewer | loss | delay p50 / p99, ms | edge CPU, % of a core |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	var worst float64
	for _, rs := range res {
		for i, r := range rs {
			for j, g := range r.groups {
				loss := 100 - g.meanPct
				worst = max(worst, loss)
				fmt.Fprintf(w, "| %d | %s | %d | %.2f%% | %.2f%% | %.2f%% | %.2f / %.2f | %.0f |\n", i+1, g.name, g.viewers, g.meanPct, g.minPct, loss, g.p50, g.p99, 100*r.edgeCores[j])
			}
			fmt.Fprintf(w, "| %d | (origin) | | | | | | origin %.1f%% CPU, egress %.2f Mbit/s; generator dropped %.0f datagrams; %d viewer(s) without video at the warm-up |\n", i+1, 100*r.originCores, r.egressMbps, r.rcvbufErrs, r.silent)
		}
	}
	verdict := "met"
	if worst >= 0.5 {
		verdict = fmt.Sprintf("missed (worst edge %.2f%%)", worst)
	}
	fmt.Fprintf(w, "\nLoss per edge at most %.2f%%: target (< 0.5%%) %s.\n", worst, verdict)
}
