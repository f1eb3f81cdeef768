package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/ingest/play"
	"github.com/matinee-dev/matinee/recorder/transcode"
)

const playUsage = `Usage: matinee play FILE --room ROOM [flags]

Streams FILE into a room of a running server, in real time, as a member
("Movie" by default) whose video and audio everyone can watch: the server
opens plain-RTP ports for it and ffmpeg sends H.264 and Opus there. H.264
that browsers decode is sent as it is; other video is encoded to H.264.
Stops at the end of the file (or never, with --loop), or on Ctrl-C.

Flags --server, --api-key, --data-dir, --ca and --insecure work as for
"matinee room".
`

// runPlay runs "matinee play FILE --room ROOM".
func runPlay(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("matinee play", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, playUsage); fs.PrintDefaults() }
	roomID := fs.String("room", "", "room to play into (required)")
	name := fs.String("name", "Movie", "name the room sees")
	loop := fs.Bool("loop", false, "play the file over and over")
	ffmpeg := fs.String("ffmpeg", "", "ffmpeg binary (default: ffmpeg from PATH)")
	server := fs.String("server", "https://localhost:8443", "base URL of the Matinee server")
	apiKey := fs.String("api-key", "", "admin API key (default: read from the data dir)")
	dataDir := fs.String("data-dir", config.Default().DataDir, "the server's data directory (API key, local CA)")
	caFile := fs.String("ca", "", "PEM CA certificate to trust (default: the data dir's local CA, if any)")
	insecure := fs.Bool("insecure", false, "do not verify the server's certificate")
	// The file may come before or after the flags.
	var file string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		file, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := config.ApplyEnv(fs, envOnly("server", "api-key", "data-dir", "ca", "insecure", "ffmpeg")); err != nil {
		return err
	}
	if file == "" && fs.NArg() > 0 {
		file = fs.Arg(0)
	}
	if file == "" || *roomID == "" {
		fs.Usage()
		return errors.New("play: a FILE and --room are required")
	}
	ff, err := transcode.Find(*ffmpeg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src, err := play.Probe(ctx, ff, file)
	if err != nil {
		return err
	}
	c, err := newAPIClient(*server, *apiKey, *dataDir, *caFile, *insecure)
	if err != nil {
		return err
	}
	body := map[string]any{"name": *name, "video": src.HasVideo, "audio": src.HasAudio}
	raw, err := c.do("POST", "/api/rooms/"+url.PathEscape(*roomID)+"/ingests", body)
	if err != nil {
		return fmt.Errorf("play: %w", err)
	}
	var res struct {
		ID        string `json:"id"`
		Endpoints []struct {
			Kind        string `json:"kind"`
			IP          string `json:"ip"`
			Port        int    `json:"port"`
			PayloadType uint8  `json:"payloadType"`
			SSRC        uint32 `json:"ssrc"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("play: server answer: %w", err)
	}
	defer func() {
		if _, err := c.do("DELETE", "/api/rooms/"+url.PathEscape(*roomID)+"/ingests/"+url.PathEscape(res.ID), nil); err != nil {
			fmt.Fprintln(stderr, "matinee play: stop:", err)
		}
	}()
	// A server listening on every address announces 0.0.0.0: send to
	// the host we reached it by.
	su, _ := url.Parse(*server)
	var v, a *play.Target
	for _, e := range res.Endpoints {
		ip := e.IP
		if pip := net.ParseIP(ip); pip == nil || pip.IsUnspecified() {
			ip = su.Hostname()
		}
		t := &play.Target{IP: ip, Port: e.Port, PayloadType: e.PayloadType, SSRC: e.SSRC}
		if e.Kind == "video" {
			v = t
		} else {
			a = t
		}
	}
	fmt.Fprintf(stdout, "playing %s into room %s as %s (%s, video %s)\n", file, *roomID, res.ID, src.Duration.Round(time.Second), map[bool]string{true: "sent as is", false: "encoded to H.264"}[src.CopyVideo])
	cmd := exec.CommandContext(ctx, ff, play.Args(file, src, v, a, play.Options{Loop: *loop})...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("play: ffmpeg: %w", err)
	}
	return nil
}
