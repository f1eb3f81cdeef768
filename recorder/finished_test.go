package recorder_test

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/recorder"
)

// TestFinishedRecordingsKeepNoBuffers: a finished recording is listed
// from disk; nothing may hold the recording itself, with its writers'
// buffers (an HLS variant's segment writer is 256 KB: the hour-long soak's
// heap grew by ~0.25 MB a recording, all of it finished recordings'
// HLS and FLV buffers).
func TestFinishedRecordingsKeepNoBuffers(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	router := newTestRouter(t, "finished")
	sp := publishSimulcastH264(t, router)
	defer sp.close()
	m := recorder.NewManager(recorder.Config{Dir: t.TempDir(), MinFreeBytes: 1, StopFreeBytes: 1})
	defer m.Close()
	var collected atomic.Int32
	record := func() {
		t.Helper()
		rec, err := m.Start("finished", oneShow{router}, recorder.Options{Formats: []string{"hls", "flv"}, NoAudio: true})
		if err != nil {
			t.Fatal(err)
		}
		testenv.Within(20*time.Second, func() bool { return rec.Info().Duration >= 1 })
		rec.Stop("next")
		if info := rec.Info(); info.Duration < 1 || info.Error != "" {
			t.Fatalf("recording %+v", info)
		}
		runtime.SetFinalizer(rec, func(*recorder.Recording) { collected.Add(1) })
	}
	const n = 4
	for range n {
		record()
	}
	if list, err := m.List("finished"); err != nil || len(list) != n {
		t.Fatalf("%d recordings listed (%v), want %d", len(list), err, n)
	}
	// Finished, listed from disk: nothing should hold them.
	testenv.Within(10*time.Second, func() bool { runtime.GC(); return collected.Load() == n })
	if got := collected.Load(); got != n {
		t.Fatalf("%d of %d finished recordings still held after GC", n-got, n)
	}
}
