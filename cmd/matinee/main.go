// Command matinee is the Matinee watch-party server: an SFU, its web
// client, and the tools around it, in one binary.
//
//	matinee                 run the server (HTTPS on :8443, media on UDP 8443)
//	matinee cert [--host H] show the local CA and certificate; add a host
//	matinee room ...        create, list, delete rooms and mint join tokens (REST API)
//	matinee convert in.mp4  turn a video into HLS with ffmpeg, for the media folder
//	matinee cluster status  the nodes of the cluster (with --redis; docs/cluster.md)
//
// Every flag can also be set through MATINEE_<FLAG> (see --help).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/server"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // asked for help, got it
		}
		fmt.Fprintln(os.Stderr, "matinee:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "cert":
			return runCert(args[1:], stdout, stderr)
		case "room":
			return runRoom(args[1:], stdout, stderr)
		case "convert":
			return runConvert(args[1:], stdout, stderr)
		case "play":
			return runPlay(args[1:], stdout, stderr)
		case "cluster":
			return runCluster(args[1:], stdout, stderr)
		case "serve":
			args = args[1:]
		default:
			return fmt.Errorf("unknown command %q (commands: serve, cert, room, convert, play, cluster)", args[0])
		}
	}
	cfg := config.Default()
	fs := flag.NewFlagSet("matinee", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config.BindFlags(fs, &cfg)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: matinee [serve] [flags]\n       matinee cert|room|convert|play|cluster ... (each with --help)\n\nEvery flag can also be set with MATINEE_<FLAG>, e.g. MATINEE_UDP_PORT.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := config.ApplyEnv(fs, nil); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.ApplyGCPercent(nil)
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	srv, err := server.NewWithLogger(ctx, cfg, log)
	if err != nil {
		return err
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchSignals(ctx, sigs, srv, cancel, log)
	}()
	runErr := srv.Run(ctx)
	cancel()
	<-watched
	closeErr := srv.Close()
	if runErr != nil {
		return runErr
	}
	return closeErr
}

// watchSignals stops the server on SIGINT or SIGTERM. A node of a
// cluster drains first (no new rooms, its rooms' members leave in their
// own time) and stops once it is empty; a second signal stops it at once.
func watchSignals(ctx context.Context, sigs <-chan os.Signal, srv *server.Server, stop context.CancelFunc, log *slog.Logger) {
	defer stop()
	select {
	case <-ctx.Done():
		return
	case <-sigs:
	}
	if !srv.Clustered() {
		return
	}
	dctx, dcancel := context.WithCancel(ctx)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_ = srv.Drain(dctx)
	}()
	select {
	case <-drained:
	case <-sigs:
		log.Info("second signal: stopping now")
	case <-ctx.Done():
	}
	dcancel()
	<-drained
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
