package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/bench/internal/asmatinee"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	asmatinee.Main()
	goleak.VerifyTestMain(m)
}

// TestSmokeMatinee runs one 2 s round of Matinee with two viewers on
// loopback, without namespaces, and reads the table: every video packet
// delivered, a positive CPU time per packet, no Galene figures.
func TestSmokeMatinee(t *testing.T) {
	t.Setenv(asmatinee.Env, "1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	o := options{matinee: os.Args[0], ns: []int{2}, rounds: 1, duration: 2 * time.Second, warmup: 500 * time.Millisecond,
		cpuServer: -1, cpuLoad: -1, netns: false, bitrate: 2_000_000}
	if err := run(ctx, o, io.MultiWriter(&out, testWriter{t})); err != nil {
		t.Fatal(err)
	}
	var row, mem []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "| 2 |") {
			// The first table's, then the memory table's.
			if row == nil {
				row = strings.Split(strings.Trim(l, "| "), " | ")
			} else {
				mem = strings.Split(strings.Trim(l, "| "), " | ")
			}
		}
	}
	if len(mem) != 2 {
		t.Errorf("no memory row for N=2 in:\n%s", out.String())
	} else if mb, err := strconv.ParseFloat(mem[1], 64); err != nil || mb <= 0 {
		t.Errorf("Matinee RSS %q MB, want a positive number", mem[1])
	}
	if len(row) != 6 {
		t.Fatalf("no row for N=2 in:\n%s", out.String())
	}
	us, err := strconv.ParseFloat(row[2], 64)
	if err != nil || us <= 0 {
		t.Errorf("Matinee µs/video pkt %q, want a positive number", row[2])
	}
	if row[4] != "100.0%" {
		t.Errorf("Matinee video delivered %q, want 100.0%%", row[4])
	}
	if row[1] != "—" || row[3] != "—" || row[5] != "—" {
		t.Errorf("Galene's columns %q, %q, %q without -galene, want —", row[1], row[3], row[5])
	}
	if err := run(ctx, options{galene: "/nonexistent", netns: false, ns: []int{1}, rounds: 1, duration: time.Second, bitrate: 2_000_000}, io.Discard); err == nil || !strings.Contains(err.Error(), "-netns") {
		t.Errorf("Galene without namespaces: %v, want an error naming -netns", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// The floor tool's rows, as its printRow writes them, give µs per copy
// from copies per forwarder CPU-second; its other lines are skipped.
func TestParseFloor(t *testing.T) {
	out := "# harness GOMAXPROCS=1 fwdcpu=\"1\" offer=1200000 copies/s\n" +
		fmt.Sprintf("%-4s %5s %4s | %8s %-17s %9s\n", "mode", "batch", "N", "copies/s", "(min-max)", "cp/fwdCPU") +
		fmt.Sprintf("%-4s %5d %4d | %8.0f %8.0f-%-8.0f %9.0f %9.2f\n", "gcm", 1, 50, 190000.0, 190000.0, 190000.0, 200000.0, 0.95) +
		fmt.Sprintf("%-4s %5d %4d | %8.0f %8.0f-%-8.0f %9.0f %9.2f\n", "gcm", 1, 200, 150000.0, 150000.0, 150000.0, 160000.0, 0.94)
	f := parseFloor([]byte(out))
	if len(f) != 2 || f[50] != 5 || f[200] != 6.25 {
		t.Errorf("parseFloor = %v, want map[50:5 200:6.25]", f)
	}
}
