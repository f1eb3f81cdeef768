package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/matinee-dev/matinee/bench/internal/netns"
)

// floor is the floor tool's AES-128-GCM sendto figure: µs of forwarder
// CPU per copy, by N.
type floor map[int]float64

// runFloor builds and runs ../shared/tools/fanout-limit (the machine's
// floor: one SRTP encryption and one UDP send per copy) pinned like the
// servers, if its source is there; nil when it is not, or fails (said on
// out: the table is still worth having).
func runFloor(ctx context.Context, o options, tmp string, out io.Writer) floor {
	if o.floor == "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(o.floor, "main.go")); err != nil {
		fmt.Fprintf(out, "floor tool not found at %s: skipped\n", o.floor)
		return nil
	}
	bin := filepath.Join(tmp, "fanoutlimit")
	if _, err := os.Stat(bin); err != nil {
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
		build.Dir = o.floor
		if b, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(out, "floor tool: go build in %s: %v\n%s", o.floor, err, b)
			return nil
		}
	}
	var ns []string
	for _, n := range o.ns {
		ns = append(ns, strconv.Itoa(n))
	}
	args := []string{bin, "-crypto", "gcm", "-batch", "1", "-n", strings.Join(ns, ","), "-runs", "1", "-dur", "3s", "-offer", "1.2e6"}
	if o.cpuServer >= 0 {
		args = append(args, "-fwdcpu", strconv.Itoa(o.cpuServer))
	}
	args = netns.Pin(o.cpuLoad, args)
	fmt.Fprintf(out, "floor: %s\n", strings.Join(args, " "))
	b, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(out, "floor tool: %v\n%s", err, b)
		return nil
	}
	return parseFloor(b)
}

// parseFloor reads the tool's rows ("gcm 1 N | copies/s (min-max)
// cp/fwdCPU ..."): µs per copy is a million over copies per forwarder
// CPU-second.
func parseFloor(b []byte) floor {
	f := floor{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 7 || fs[0] != "gcm" || fs[3] != "|" {
			continue
		}
		n, err1 := strconv.Atoi(fs[2])
		cps, err2 := strconv.ParseFloat(fs[6], 64)
		if err1 == nil && err2 == nil && cps > 0 {
			f[n] = 1e6 / cps
		}
	}
	return f
}

func printFloor(out io.Writer, before, after floor) {
	if before == nil && after == nil {
		return
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Floor (fanout-limit, AES-128-GCM, sendto; µs of forwarder CPU per copy), at the start / at the end:")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| N | start | end |")
	fmt.Fprintln(out, "|---|---|---|")
	seen := map[int]bool{}
	for _, f := range []floor{before, after} {
		for n := range f {
			seen[n] = true
		}
	}
	for n := range maxKey(seen) + 1 {
		if seen[n] {
			fmt.Fprintf(out, "| %d | %s | %s |\n", n, us(before[n]), us(after[n]))
		}
	}
}

func maxKey(m map[int]bool) int {
	k := 0
	for n := range m {
		k = max(k, n)
	}
	return k
}
