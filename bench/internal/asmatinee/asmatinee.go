// Package asmatinee lets a benchmark's test binary act as a Matinee
// server (with cmd/matinee's flags), so that a smoke test runs servers
// as processes of their own without building cmd/matinee, which would
// take longer than the test itself.
package asmatinee

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/server"
)

// Env, set to 1 in a process's environment, makes Main serve.
const Env = "MATINEE_BENCH_TEST_AS_MATINEE"

// Main, called first in a test's TestMain, serves and exits when Env
// is set; otherwise it returns at once.
func Main() {
	if os.Getenv(Env) != "1" {
		return
	}
	if err := serve(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "matinee:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serve is cmd/matinee's server: the same config flags, until SIGTERM
// (without a cluster node's drain: the benchmarks stop their nodes
// whole).
func serve(args []string) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("matinee", flag.ContinueOnError)
	config.BindFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.ApplyGCPercent(nil)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := server.NewWithLogger(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	runErr := srv.Run(ctx)
	if err := srv.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if errors.Is(runErr, context.Canceled) {
		return nil
	}
	return runErr
}
