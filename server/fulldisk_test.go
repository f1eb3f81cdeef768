package server_test

import (
	"context"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/fulldisk"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder"
)

// TestAPICreateRoomDiskFull: on a full disk POST /api/rooms answers 507
// and keeps no room; once there is space it answers 201, and every room
// it answered 201 for is there after a restart on the same data dir.
func TestAPICreateRoomDiskFull(t *testing.T) {
	dir := fulldisk.Mount(t, 8<<20)
	mk := func() *apiEnv {
		return startAPI(t, func(c *config.Config) { c.DataDir = dir; c.OpenRooms = false })
	}
	e := mk()
	e.ok("POST", "/api/rooms", map[string]any{"name": "Before"}, 201, nil)

	fill := fulldisk.Fill(t, dir)
	e.fails("POST", "/api/rooms", e.key, map[string]any{"name": "Lost"}, 507, "insufficient_storage", "no space left on device")
	e.fails("GET", "/api/rooms/lost", e.key, nil, 404, "not_found", "lost")
	var list struct {
		Rooms []roomJSON `json:"rooms"`
	}
	e.ok("GET", "/api/rooms", nil, 200, &list)
	if len(list.Rooms) != 1 || list.Rooms[0].ID != "before" {
		t.Fatalf("rooms after a refused create: %+v", list.Rooms)
	}
	fill.Free(t)
	e.ok("POST", "/api/rooms", map[string]any{"name": "After", "publicHLS": true}, 201, nil)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}

	e2 := mk()
	e2.ok("GET", "/api/rooms/before", nil, 200, nil)
	var after struct {
		PublicHLS bool `json:"publicHLS"`
	}
	e2.ok("GET", "/api/rooms/after", nil, 200, &after)
	if !after.PublicHLS {
		t.Error("publicHLS was not kept across the restart")
	}
	e2.fails("GET", "/api/rooms/lost", e2.key, nil, 404, "not_found", "lost")
}

// TestRecordingDiskFullAPI fills the disk of a server's data dir in the
// middle of a recording of a pion screen share (H.264 + Opus→AAC). The API
// must report it stopped with reason "disk full", its error and the
// duration written, before and after a restart; the FLV decodes with no
// error and the HLS is finished. (Which trips first, the free-space check
// or a failing write, depends on timing; both must end the same way.
// recorder's TestWriteFailsOnFullDisk makes the write fail every time.)
func TestRecordingDiskFullAPI(t *testing.T) {
	dir := fulldisk.Mount(t, 64<<20)
	mk := func() *recServer {
		return startHTTP(t, func(c *config.Config) { c.DataDir = dir })
	}
	srv := mk()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sh := startSharer(t, ctx, srv.ws, "full", "ana", newFlashBeep(t, 640, 360))
	key := srv.APIKey()
	var info recorder.Info
	if code := api(t, srv.base, key, "POST", "/api/rooms/full/recordings", `{"formats":["flv","hls"]}`, &info); code != http.StatusCreated {
		t.Fatalf("start recording: %d", code)
	}
	waitRecording(t, srv.base, key, "full", info.ID, 30*time.Second, func(in recorder.Info) bool { return in.Duration > 5 })
	fulldisk.Fill(t, dir)
	in := waitRecording(t, srv.base, key, "full", info.ID, 15*time.Second, func(in recorder.Info) bool { return in.State != recorder.StateRecording })
	t.Logf("after the disk filled: %+v", in)
	if in.State != recorder.StateStopped || in.Reason != "disk full" || in.Error == "" || in.Duration < 5 {
		t.Fatalf("API on a full disk: %+v", in)
	}
	rdir := filepath.Join(dir, "recordings", "full", info.ID)
	flvPath := filepath.Join(rdir, recorder.FLVName)
	if e := mediatest.DecodeErrors(t, flvPath); e != "" {
		t.Errorf("flv decode errors:\n%s", e)
	}
	if p := mediatest.ProbeFile(t, flvPath); p.Codecs() != "h264+aac" || math.Abs(p.Duration()-in.Duration) > 1 {
		t.Errorf("flv: %s %.2f s, API says %.2f s", p.Codecs(), p.Duration(), in.Duration)
	}
	if b, err := os.ReadFile(filepath.Join(rdir, "hls", "v0", "index.m3u8")); err != nil || !strings.Contains(string(b), "#EXT-X-ENDLIST") {
		t.Errorf("hls playlist not finished: %v\n%s", err, b)
	}
	if p := mediatest.ProbeFile(t, filepath.Join(rdir, "hls", "index.m3u8")); p.Video() == nil || p.Duration() < 2 {
		t.Errorf("hls: %+v", p)
	}
	sh.stop()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart on the same (still full) disk lists it the same way.
	srv2 := mk()
	var list struct{ Recordings []recorder.Info }
	if code := api(t, srv2.base, srv2.APIKey(), "GET", "/api/rooms/full/recordings", "", &list); code != 200 || len(list.Recordings) != 1 {
		t.Fatalf("list after restart: %d %+v", code, list)
	}
	if got := list.Recordings[0]; got.State != in.State || got.Reason != in.Reason || got.Duration != in.Duration {
		t.Fatalf("after a restart %+v, before %+v", got, in)
	}
}
