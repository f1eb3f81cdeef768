package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSoakSmoke runs the soak for a few seconds against an in-process
// server: every kind of churn happens, a sample comes each interval, the
// verdict is printed, and nothing the run started outlives it.
func TestSoakSmoke(t *testing.T) {
	o := options{
		room: "smoke", duration: 6 * time.Second, interval: time.Second, warmup: 2 * time.Second,
		members: 3, viewers: 2, hold: time.Second, recordEvery: 2 * time.Second, recordFor: 500 * time.Millisecond,
		tolerance: 0.25,
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := run(ctx, o, &out, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	var rows [][]string
	var verdictLine string
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "verdict: "):
			verdictLine = line
		case len(f) == 11 && strings.HasSuffix(f[0], "s") && f[0] != "elapsed":
			rows = append(rows, f)
		}
	}
	// A loaded machine may delay the last tick past the end; 6 s at 1 s
	// gives at least 4.
	if len(rows) < 4 {
		t.Fatalf("%d sample lines, want at least 4", len(rows))
	}
	for _, r := range rows {
		for i, col := range r[1:5] {
			if v, err := strconv.ParseFloat(col, 64); err != nil || v <= 0 {
				t.Errorf("sample %v: column %d = %q, want a positive figure", r, i+1, col)
			}
		}
	}
	last := rows[len(rows)-1]
	for i, what := range map[int]string{7: "joins", 8: "views", 9: "recordings"} {
		if n, _ := strconv.Atoi(last[i]); n < 1 {
			t.Errorf("%s completed: %s, want at least 1", what, last[i])
		}
	}
	if last[10] != "0" {
		t.Errorf("%s churn errors, want 0", last[10])
	}
	if !strings.HasPrefix(verdictLine, "verdict: FLAT") && !strings.HasPrefix(verdictLine, "verdict: GROWING") {
		t.Errorf("verdict line %q", verdictLine)
	}
	goleak.VerifyNone(t)
}

func TestOptionsRejected(t *testing.T) {
	good := options{duration: time.Minute, interval: time.Second, warmup: time.Second, hold: time.Second, recordEvery: time.Second, recordFor: time.Second}
	if err := good.check(); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for name, mut := range map[string]func(*options){
		"interval>duration": func(o *options) { o.interval = 2 * time.Minute },
		"warmup>=duration":  func(o *options) { o.warmup = time.Minute },
		"members":           func(o *options) { o.members = 101 },
		"tolerance":         func(o *options) { o.tolerance = -1 },
	} {
		o := good
		mut(&o)
		if o.check() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := checkLoopback("http://192.0.2.1:8080"); err == nil {
		t.Error("a non-loopback target was accepted")
	}
}

func TestVerdict(t *testing.T) {
	o := options{warmup: 2 * time.Second, tolerance: 0.25}
	flat := []sample{{elapsed: time.Second, heap: 1 << 30}, {elapsed: 2 * time.Second, heap: 10 << 20, rss: 40 << 20, goroutines: 200, fds: 40},
		{elapsed: 3 * time.Second, heap: 12 << 20, rss: 45 << 20, goroutines: 210, fds: 42}}
	var out bytes.Buffer
	if !verdict(&out, o, flat) {
		t.Errorf("flat run judged growing: %s", out.String())
	}
	grown := append(flat[:2:2], sample{elapsed: 3 * time.Second, heap: 12 << 20, rss: 45 << 20, goroutines: 400, fds: 42})
	out.Reset()
	if verdict(&out, o, grown) || !strings.Contains(out.String(), "goroutines 200→400 (limit 300) GROWING") {
		t.Errorf("goroutines doubling judged flat: %s", out.String())
	}
}

// TestSoakRemote reads a server's figures from its /metrics, as against
// a server in a process of its own.
func TestSoakRemote(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	base, key, closeSrv, err := startInProcess(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSrv()
	o := options{
		url: base, key: key, room: "remote", duration: 3 * time.Second, interval: time.Second, warmup: time.Second,
		members: 1, viewers: 1, hold: time.Second, recordEvery: time.Minute, recordFor: 500 * time.Millisecond,
		tolerance: 0.25,
	}
	var out bytes.Buffer
	if _, err := run(ctx, o, &out, log); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	rows := 0
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) != 11 || f[0] == "elapsed" {
			continue
		}
		rows++
		for i, col := range f[1:5] {
			if v, err := strconv.ParseFloat(col, 64); err != nil || v <= 0 {
				t.Errorf("sample %v: column %d = %q, want a positive figure from /metrics", f, i+1, col)
			}
		}
	}
	if rows < 2 {
		t.Errorf("%d samples:\n%s", rows, out.String())
	}
}
