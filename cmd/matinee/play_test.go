package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/matinee-dev/matinee/server/servertest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// TestPlayFile streams a 10 s file into a room with "matinee play"; a pion
// subscriber receives its video frame for frame identical to the file's,
// and its audio.
func TestPlayFile(t *testing.T) {
	// After the server's cleanup, which servertest registers.
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
	dir := t.TempDir()
	movie := filepath.Join(dir, "movie.mp4")
	mediatest.Run(t, "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=44100", "-t", "10",
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", movie)
	ref := filepath.Join(dir, "ref.h264")
	mediatest.Run(t, "-i", movie, "-map", "0:v", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", ref)
	var want [][]byte
	for _, au := range mediatest.ReadH264(t, ref) {
		want = append(want, slices(h264.SplitAnnexB(au)))
	}

	srv := servertest.Start(t)
	cfg := srv.Config

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api, err := testpeer.NewAPI(testpeer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := testpeer.Dial(ctx, srv.WS, api)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var mu sync.Mutex
	sinks := map[string]*testpeer.Sink{}
	sub.OnTrack = func(tr *webrtc.TrackRemote, _ testpeer.Consumer) {
		mu.Lock()
		sinks[tr.Kind().String()] = testpeer.NewSink(tr)
		mu.Unlock()
	}
	if _, err := sub.Join(ctx, "movie", "viewer"); err != nil {
		t.Fatal(err)
	}
	if err := sub.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	playDone := make(chan error, 1)
	go func() {
		playDone <- run([]string{"play", movie, "--room", "movie", "--server", srv.URL, "--data-dir", cfg.DataDir}, &out, &errb)
	}()
	kinds := map[string]bool{}
	for len(kinds) < 2 {
		ev, err := sub.WaitEvent(ctx, "producerAdded")
		if err != nil {
			t.Fatalf("%v (play: %s %s)", err, out.String(), errb.String())
		}
		var p struct{ Producer testpeer.Producer }
		_ = json.Unmarshal(ev.Params, &p)
		if p.Producer.AppData["source"] != "file" {
			t.Errorf("appData %v", p.Producer.AppData)
		}
		kinds[p.Producer.Kind] = true
		if _, err := sub.Subscribe(ctx, p.Producer.ID); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-playDone:
		if err != nil {
			t.Fatalf("play: %v\n%s", err, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("play did not end")
	}
	if !strings.Contains(out.String(), "sent as is") {
		t.Errorf("play output: %s", out.String())
	}
	// The ingest has left: its producers are gone.
	if _, err := sub.WaitEvent(ctx, "producerClosed"); err != nil {
		t.Error("no producerClosed after play ended")
	}

	mu.Lock()
	vs, as := sinks["video"], sinks["audio"]
	mu.Unlock()
	if vs == nil || as == nil {
		t.Fatalf("tracks received: %v", sinks)
	}
	if n := len(as.Got()); n < 350 {
		t.Errorf("%d audio packets in 10 s", n)
	}
	d := h264.NewDepacketizer()
	var got [][]byte
	for _, p := range vs.Got() {
		au, _ := d.Push(p.Seq, p.TS, p.Marker, p.Payload)
		if au != nil {
			got = append(got, slices(au.NALUs))
		}
	}
	if len(got) < 240 {
		t.Fatalf("%d of %d frames received", len(got), len(want))
	}
	start := -1
	for i, w := range want {
		if bytes.Equal(w, got[0]) {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatal("first received frame is not in the file")
	}
	for k, g := range got {
		if start+k >= len(want) || !bytes.Equal(g, want[start+k]) {
			t.Fatalf("frame %d (file frame %d) differs", k, start+k)
		}
	}
	t.Logf("%d frames received intact, from file frame %d", len(got), start)
}

// slices joins an access unit's slice NAL units (what makes the picture).
func slices(nalus [][]byte) []byte {
	var b []byte
	for _, n := range nalus {
		if t := h264.Type(n); t == h264.TypeSlice || t == h264.TypeIDR {
			b = append(b, n...)
		}
	}
	return b
}
