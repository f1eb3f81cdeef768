package recorder_test

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/fulldisk"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder"
	"github.com/matinee-dev/matinee/recorder/flv"
)

// TestWriteFailsOnFullDisk fills a real disk (a tmpfs) in the middle of
// a recording, so that a write fails part way, with and without the
// finishing reserve. The FLV must end on a whole tag and decode without
// an error; with the reserve the HLS playlists end with #EXT-X-ENDLIST
// over whole segments; the recording's state, reason and duration are
// right from memory even when recording.json cannot be written, and the
// file is written once there is space again.
func TestWriteFailsOnFullDisk(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	for _, tc := range []struct {
		name    string
		reserve int64
	}{{"reserve", 4 << 20}, {"no-reserve", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			disk := fulldisk.Mount(t, 48<<20)
			router := newTestRouter(t, "full")
			sp := publishSimulcastH264(t, router)
			defer sp.close()
			// The free-space check must not stop the recording first:
			// this test is about a write that fails.
			cfg := recorder.Config{Dir: filepath.Join(disk, "recordings"), MinFreeBytes: 1, StopFreeBytes: 1,
				ReserveBytes: tc.reserve, FreeSpace: func(string) (uint64, error) { return 10 << 30, nil }}
			m := recorder.NewManager(cfg)
			defer m.Close()
			rec, err := m.Start("full", oneShow{router}, recorder.Options{Formats: []string{"flv", "hls"}, NoAudio: true})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for rec.Info().Duration < 5 && time.Now().Before(deadline) {
				select {
				case <-rec.Done():
					t.Fatalf("stopped early: %+v", rec.Info())
				case <-time.After(100 * time.Millisecond):
				}
			}
			fill := fulldisk.Fill(t, disk)
			select {
			case <-rec.Done():
			case <-time.After(15 * time.Second):
				t.Fatal("the recording did not stop on a full disk")
			}
			in, err := m.Get("full", rec.ID())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("after the failure: %+v", in)
			if in.State != recorder.StateStopped || in.Reason != "disk full" || !strings.Contains(in.Error, "no space left") || in.Duration < 5 {
				t.Fatalf("info on a full disk %+v", in)
			}
			dir := filepath.Join(cfg.Dir, "full", rec.ID())
			checkWholeFLV(t, filepath.Join(dir, recorder.FLVName), in.Duration)
			if tc.reserve > 0 {
				checkFinishedHLS(t, filepath.Join(dir, recorder.HLSDir))
			}

			fill.Free(t)
			// A later call finds space and writes recording.json.
			if got, err := m.Get("full", rec.ID()); err != nil || got.State != in.State || got.Duration != in.Duration {
				t.Fatalf("after freeing: %+v %v", got, err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "recording.json"))
			if err != nil {
				t.Fatal(err)
			}
			var saved recorder.Info
			if err := json.Unmarshal(b, &saved); err != nil {
				t.Fatal(err)
			}
			if saved.State != recorder.StateStopped || saved.Reason != "disk full" || saved.Duration != in.Duration {
				t.Fatalf("recording.json %s", b)
			}
			// A new manager (a restart) reads the same.
			m2 := recorder.NewManager(cfg)
			defer m2.Close()
			if got, err := m2.Get("full", rec.ID()); err != nil || got.State != recorder.StateStopped || got.Reason != "disk full" || got.Duration != in.Duration {
				t.Fatalf("after a restart: %+v %v", got, err)
			}
		})
	}
}

// checkWholeFLV: the file ends exactly after a tag, ffmpeg decodes it
// without a word, and it lasts about dur.
func checkWholeFLV(t *testing.T, path string, dur float64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := flv.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tags := 0
	for {
		_, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("flv after %d tags: %v", tags, err)
		}
		tags++
	}
	if e := mediatest.DecodeErrors(t, path); e != "" {
		t.Fatalf("ffmpeg decoding the flv:\n%s", e)
	}
	if p := mediatest.ProbeFile(t, path); p.Codecs() != "h264" || p.Duration() < dur-1 || p.Duration() > dur+1 {
		t.Errorf("flv: %s %.2f s, recording says %.2f s", p.Codecs(), p.Duration(), dur)
	}
	t.Logf("flv: %d whole tags", tags)
}

// checkFinishedHLS: every variant's playlist is finished, lists only whole
// segments, and ffprobe and ffmpeg read the master playlist cleanly.
func checkFinishedHLS(t *testing.T, dir string) {
	t.Helper()
	parts, _ := filepath.Glob(filepath.Join(dir, "v*", ".*.part"))
	if len(parts) > 0 {
		t.Errorf("partial segments left: %v", parts)
	}
	pls, _ := filepath.Glob(filepath.Join(dir, "v*", "index.m3u8"))
	if len(pls) == 0 {
		t.Fatal("no media playlist")
	}
	for _, pl := range pls {
		b, _ := os.ReadFile(pl)
		if !strings.Contains(string(b), "#EXT-X-ENDLIST") {
			t.Errorf("%s not finished:\n%s", pl, b)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasSuffix(line, ".ts") {
				if _, err := os.Stat(filepath.Join(filepath.Dir(pl), line)); err != nil {
					t.Errorf("%s lists %s: %v", pl, line, err)
				}
			}
		}
	}
	master := filepath.Join(dir, "index.m3u8")
	if p := mediatest.ProbeFile(t, master); p.Video() == nil || p.Duration() < 2 {
		t.Errorf("hls: %+v", p)
	}
	if e := mediatest.DecodeErrors(t, master); e != "" {
		t.Errorf("ffmpeg decoding the hls:\n%s", e)
	}
}
