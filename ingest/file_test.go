package ingest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/room"
	"github.com/matinee-dev/matinee/sfu"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newService returns an ingest service on a room manager of a loopback
// worker, all closed at cleanup.
func newService(t *testing.T, edit func(*config.Config)) (*Service, *room.Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := sfu.NewWorker(ctx, sfu.WorkerConfig{LoopbackOnly: true, ConnectTimeout: 5 * time.Second})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	m := room.NewManager(ctx, w, room.Config{MaxPeers: 10, OpenRooms: true, TokenKey: room.DeriveTokenKey("test-key")})
	cfg := config.Default()
	cfg.PlainListenIP = "127.0.0.1"
	if edit != nil {
		edit(&cfg)
	}
	s := New(m, cfg, slog.Default())
	t.Cleanup(func() {
		s.StopFiles()
		s.CloseRTMP()
		m.Close()
		_ = w.Close()
		cancel()
	})
	return s, m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

// producers returns the room's producers by kind.
func producers(m *room.Manager, id string) map[string]int {
	out := map[string]int{}
	if r, ok := m.Room(id); ok {
		for _, p := range r.Producers() {
			out[p.Kind]++
		}
	}
	return out
}

// A file of the media folder plays into the room as a member with a video
// and an audio producer, whose frames reach the SFU in real time; it leaves the room
// when the file ends, and Stop ends a looping one at once.
func TestPlayFileIntoRoom(t *testing.T) {
	dir := t.TempDir()
	mediatest.Run(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine", "-t", "3",
		"-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-c:a", "aac", filepath.Join(dir, "film.mp4"))
	s, m := newService(t, func(c *config.Config) { c.MediaDir = dir })

	in, err := s.Start(context.Background(), "tv", Request{Video: true, Audio: true, File: "film.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Endpoints()) != 2 {
		t.Fatalf("endpoints %+v, want video and audio", in.Endpoints())
	}
	r, ok := m.Room("tv")
	if !ok {
		t.Fatal("no room tv")
	}
	waitFor(t, 10*time.Second, "video and audio frames of the file at the SFU", func() bool {
		n := 0
		for _, p := range r.Media().Producers() {
			if l := p.Layers(); len(l) > 0 && l[0].Frames > 10 {
				n++
			}
		}
		return n == 2
	})
	select {
	case <-in.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the ingest did not end with its file")
	}
	waitFor(t, 5*time.Second, "the file's producers to go", func() bool { return len(producers(m, "tv")) == 0 })
	// The ingest forgets it a moment after it ends.
	waitFor(t, 5*time.Second, "the ended ingest to be forgotten", func() bool { return !s.Stop("tv", in.PeerID()) })

	loop, err := s.Start(context.Background(), "tv", Request{Name: "Loop", Video: true, Audio: false, File: "film.mp4", Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := producers(m, "tv"); got["video"] != 1 || got["audio"] != 0 {
		t.Fatalf("producers %v, want video only", got)
	}
	if s.Stop("other", loop.PeerID()) {
		t.Error("Stop ended an ingest of another room")
	}
	if !s.Stop("tv", loop.PeerID()) {
		t.Fatal("Stop did not find the looping ingest")
	}
	select {
	case <-loop.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the looping ingest runs on after Stop")
	}
	waitFor(t, 5*time.Second, "the looping file's producer to go", func() bool { return len(producers(m, "tv")) == 0 })
}

// A file that cannot be played is a FileError (the request's "file"); an
// ffmpeg that cannot start is a PlayerError; neither leaves a member.
func TestStartErrors(t *testing.T) {
	_, ffprobe := mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not media"), 0o644); err != nil {
		t.Fatal(err)
	}
	mediatest.Run(t, "-f", "lavfi", "-i", "sine", "-t", "0.5", "-c:a", "aac", filepath.Join(dir, "beep.m4a"))
	// ffprobe where the service looks for it, beside an ffmpeg that is
	// not there.
	bin := t.TempDir()
	if err := os.Symlink(ffprobe, filepath.Join(bin, "ffprobe")); err != nil {
		t.Fatal(err)
	}

	none, _ := newService(t, nil)
	s, m := newService(t, func(c *config.Config) { c.MediaDir = dir })
	broken, bm := newService(t, func(c *config.Config) { c.MediaDir = dir; c.FFmpeg = filepath.Join(bin, "ffmpeg") })
	for _, c := range []struct {
		s    *Service
		file string
		want string
	}{
		{none, "film.mp4", "--media-dir"},
		{s, "missing.mp4", "no file missing.mp4 in the media folder"},
		{s, "../" + filepath.Base(dir) + "/notes.txt", "no file"},
		{s, "notes.txt", "ffprobe"},
	} {
		_, err := c.s.Start(context.Background(), "tv", Request{Video: true, Audio: true, File: c.file})
		var fe *FileError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("file %q: %v, want a FileError saying %q", c.file, err, c.want)
		}
	}
	_, err := broken.Start(context.Background(), "tv", Request{Video: true, Audio: true, File: "beep.m4a"})
	var pe *PlayerError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "ffmpeg") {
		t.Errorf("no ffmpeg: %v, want a PlayerError", err)
	}
	if _, err := s.Start(context.Background(), "tv", Request{}); err == nil {
		t.Error("an ingest of neither video nor audio was opened")
	}
	if got := producers(m, "tv"); len(got) != 0 {
		t.Errorf("producers %v left by refused ingests", got)
	}
	if got := producers(bm, "tv"); len(got) != 0 {
		t.Errorf("producers %v left by an ingest whose ffmpeg did not start", got)
	}
}
