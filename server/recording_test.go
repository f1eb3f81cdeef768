package server_test

import (
	"context"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server/servertest"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/recorder"
	"github.com/matinee-dev/matinee/server"
)

// recServer is a server on loopback for recording tests.
type recServer struct {
	*server.Server
	base    string // http://127.0.0.1:port
	ws      string
	dataDir string
}

func startHTTP(t *testing.T, edit func(*config.Config)) *recServer {
	t.Helper()
	s := servertest.Start(t, servertest.WithConfig(edit))
	return &recServer{Server: s.Server, base: s.URL, ws: s.WS, dataDir: s.Config.DataDir}
}

func (rs *recServer) recDir(room, id string) string {
	return filepath.Join(rs.dataDir, "recordings", room, id)
}

// TestRecordFlashBeep records 20 s of a pion publisher's H.264 + Opus
// screen share to FLV and HLS, and checks both with ffprobe and ffmpeg:
// h264+aac, 20 ± 1 s, no decode error, flashes and beeps within 80 ms.
func TestRecordFlashBeep(t *testing.T) {
	srv := startHTTP(t, nil)
	base := srv.base
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	fb := newFlashBeep(t, 640, 360)
	startSharer(t, ctx, srv.ws, "rec", "ana", fb)

	key := srv.APIKey()
	// A public room's live HLS needs no credentials (hls_test.go checks
	// the other rooms').
	if code := api(t, base, key, "PATCH", "/api/rooms/rec", `{"publicHLS":true}`, nil); code != 200 {
		t.Fatalf("make the live HLS public: %d", code)
	}
	var info recorder.Info
	if code := api(t, base, key, "POST", "/api/rooms/rec/recordings", `{"formats":["flv","hls"]}`, &info); code != http.StatusCreated {
		t.Fatalf("start recording: %d %+v", code, info)
	}
	if info.ID == "" || info.State != recorder.StateRecording {
		t.Fatalf("info %+v", info)
	}
	// Live HLS appears while recording, with the right cache headers.
	waitRecording(t, base, key, "rec", info.ID, 15*time.Second, func(in recorder.Info) bool { return in.Duration > 5 })
	resp, err := httpc.Get(base + "/hls/rec/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	master, _ := readAll(resp)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" || !strings.Contains(master, "v0/index.m3u8") {
		t.Fatalf("live master: %d %q\n%s", resp.StatusCode, resp.Header.Get("Cache-Control"), master)
	}
	resp, _ = httpc.Get(base + "/hls/rec/v0/index.m3u8")
	media, _ := readAll(resp)
	if !strings.Contains(media, "#EXT-X-PLAYLIST-TYPE:EVENT") || strings.Contains(media, "ENDLIST") {
		t.Fatalf("live media playlist:\n%s", media)
	}
	resp, _ = httpc.Get(base + "/hls/rec/v0/seg-00000.ts")
	readAll(resp)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age") || resp.Header.Get("Content-Type") != "video/mp2t" {
		t.Fatalf("segment: %d %v", resp.StatusCode, resp.Header)
	}
	for _, bad := range []string{"/hls/rec/../../api-key", "/hls/rec/..%2f..%2fapi-key", "/hls/rec/v0/..%2f..%2f" + info.ID + ".json"} {
		if r, err := httpc.Get(base + bad); err == nil {
			body, _ := readAll(r)
			if r.StatusCode == 200 && strings.Contains(body, "mk_") {
				t.Fatalf("%s leaked a file", bad)
			}
		}
	}

	waitRecording(t, base, key, "rec", info.ID, 30*time.Second, func(in recorder.Info) bool { return in.Duration >= 20 })
	var final recorder.Info
	if code := api(t, base, key, "DELETE", "/api/rooms/rec/recordings/"+info.ID, "", &final); code != 200 {
		t.Fatalf("stop: %d", code)
	}
	if final.State != recorder.StateStopped || final.Size == 0 || final.Error != "" {
		t.Fatalf("final info %+v", final)
	}
	dir := srv.recDir("rec", info.ID)
	flvPath := filepath.Join(dir, recorder.FLVName)
	hlsPath := filepath.Join(dir, "hls", "index.m3u8")
	want := final.Duration
	if want < 19 || want > 22 {
		t.Errorf("recorded %.2f s", want)
	}
	checkRecording(t, flvPath, 20, true)
	checkRecording(t, hlsPath, 20, true)
	pl, _ := os.ReadFile(filepath.Join(dir, "hls", "v0", "index.m3u8"))
	if !strings.Contains(string(pl), "#EXT-X-ENDLIST") || !strings.Contains(string(pl), "#EXT-X-TARGETDURATION:2") {
		t.Errorf("final playlist:\n%s", pl)
	}

	// The API lists it; downloads need the key and stay inside it.
	var list struct{ Recordings []recorder.Info }
	api(t, base, key, "GET", "/api/rooms/rec/recordings", "", &list)
	if len(list.Recordings) != 1 || list.Recordings[0].ID != info.ID || list.Recordings[0].Duration < 19 {
		t.Fatalf("list %+v", list)
	}
	if code := api(t, base, "", "GET", "/recordings/rec/"+info.ID+"/recording.flv", "", nil); code != 401 {
		t.Errorf("download without key: %d", code)
	}
	req, _ := http.NewRequest("GET", base+"/recordings/rec/"+info.ID+"/recording.flv", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err = httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := readAll(resp)
	st, _ := os.Stat(flvPath)
	if resp.StatusCode != 200 || int64(len(body)) != st.Size() || resp.Header.Get("Content-Type") != "video/x-flv" {
		t.Fatalf("download: %d, %d bytes of %d", resp.StatusCode, len(body), st.Size())
	}
	for _, bad := range []string{"../../api-key", "..%2f..%2fapi-key", "recording.json", "hls/../../" + info.ID + "/recording.json"} {
		if code := api(t, base, key, "GET", "/recordings/rec/"+info.ID+"/"+bad, "", nil); code == 200 {
			t.Errorf("download of %q allowed", bad)
		}
	}
	resp, err = httpc.Get(base + "/hls/rec/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	readAll(resp)
	if resp.StatusCode != 404 {
		t.Errorf("live HLS after stop: %d", resp.StatusCode)
	}
}

func readAll(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String(), nil
		}
	}
}

// TestRecordSharerChange: the sharer stops and another starts during a
// recording; both outputs play through the change, the HLS playlist marks
// it with a discontinuity, and the timeline keeps going forward.
func TestRecordSharerChange(t *testing.T) {
	srv := startHTTP(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	keeper := dial(t, srv.ws, testpeer.Options{})
	if _, err := keeper.Join(ctx, "swap", "keeper"); err != nil {
		t.Fatal(err)
	}
	a := startSharer(t, ctx, srv.ws, "swap", "ana", newFlashBeep(t, 640, 360))
	key := srv.APIKey()
	var info recorder.Info
	if code := api(t, srv.base, key, "POST", "/api/rooms/swap/recordings", `{"formats":["flv","hls"]}`, &info); code != http.StatusCreated {
		t.Fatalf("start: %d", code)
	}
	waitRecording(t, srv.base, key, "swap", info.ID, 20*time.Second, func(in recorder.Info) bool { return in.Duration >= 6 })
	a.stop()
	a.c.Close()
	// The first share is over for the room (and so for the recording)
	// before the second starts.
	rm, ok := srv.Rooms().Room("swap")
	if !ok {
		t.Fatal("room swap is gone")
	}
	testenv.Eventually(t, 5*time.Second, "ana's producers closed", func() bool { return len(rm.Media().Producers()) == 0 })
	startSharer(t, ctx, srv.ws, "swap", "bo", newFlashBeep(t, 320, 180))
	waitRecording(t, srv.base, key, "swap", info.ID, 20*time.Second, func(in recorder.Info) bool { return in.Duration >= 13 })
	var final recorder.Info
	api(t, srv.base, key, "DELETE", "/api/rooms/swap/recordings/"+info.ID, "", &final)
	if final.State != recorder.StateStopped || final.Error != "" {
		t.Fatalf("final %+v", final)
	}
	dir := srv.recDir("swap", info.ID)
	checkRecording(t, filepath.Join(dir, recorder.FLVName), final.Duration, true)
	checkRecording(t, filepath.Join(dir, "hls", "index.m3u8"), final.Duration, true)
	pl, _ := os.ReadFile(filepath.Join(dir, "hls", "v0", "index.m3u8"))
	if n := strings.Count(string(pl), "#EXT-X-DISCONTINUITY"); n != 1 {
		t.Errorf("%d discontinuities:\n%s", n, pl)
	}
	for _, f := range []string{filepath.Join(dir, recorder.FLVName), filepath.Join(dir, "hls", "index.m3u8")} {
		if err := mediatest.Monotonic(t, f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if sizes := mediatest.VideoSizes(t, f); len(sizes) != 2 || sizes[0] != "640x360" || sizes[1] != "320x180" {
			t.Errorf("%s: picture sizes %v, want 640x360 then 320x180", f, sizes)
		}
	}
}

// TestRecordingEndsWithRoom: when the last member leaves, the room closes
// and its recording finishes cleanly.
func TestRecordingEndsWithRoom(t *testing.T) {
	srv := startHTTP(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startSharer(t, ctx, srv.ws, "brief", "ana", newFlashBeep(t, 320, 180))
	key := srv.APIKey()
	var info recorder.Info
	if code := api(t, srv.base, key, "POST", "/api/rooms/brief/recordings", `{}`, &info); code != http.StatusCreated {
		t.Fatalf("start: %d", code)
	}
	if len(info.Formats) != 2 {
		t.Errorf("default formats %v", info.Formats)
	}
	waitRecording(t, srv.base, key, "brief", info.ID, 20*time.Second, func(in recorder.Info) bool { return in.Duration >= 4 })
	a.stop()
	a.c.Close()
	in := waitRecording(t, srv.base, key, "brief", info.ID, 10*time.Second, func(in recorder.Info) bool { return in.State == recorder.StateStopped })
	if in.Reason != "room closed" {
		t.Errorf("reason %q", in.Reason)
	}
	dir := srv.recDir("brief", info.ID)
	pl, _ := os.ReadFile(filepath.Join(dir, "hls", "v0", "index.m3u8"))
	if !strings.Contains(string(pl), "#EXT-X-ENDLIST") {
		t.Errorf("playlist not finished:\n%s", pl)
	}
	checkRecording(t, filepath.Join(dir, recorder.FLVName), in.Duration, false)
	if code := api(t, srv.base, key, "POST", "/api/rooms/brief/recordings", `{}`, nil); code != http.StatusNotFound {
		t.Errorf("recording a closed room: %d", code)
	}
}

// TestRecordingRefusals: bad options, no room, no key, too little disk.
func TestRecordingRefusals(t *testing.T) {
	srv := startHTTP(t, func(c *config.Config) { c.RecordMinFreeMB = 1 << 40 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dial(t, srv.ws, testpeer.Options{})
	if _, err := c.Join(ctx, "full", "ana"); err != nil {
		t.Fatal(err)
	}
	key := srv.APIKey()
	var e struct {
		Error struct{ Code, Message string }
	}
	if code := api(t, srv.base, key, "POST", "/api/rooms/full/recordings", `{}`, &e); code != http.StatusInsufficientStorage || e.Error.Code != "no_space" {
		t.Errorf("low disk: %d %+v", code, e)
	}
	for body, want := range map[string]int{
		`{"formats":["mp4"]}`:                    http.StatusUnprocessableEntity,
		`{"rtmp":["http://x/a/b"]}`:              http.StatusUnprocessableEntity,
		`{"formats":"flv"}`:                      http.StatusUnprocessableEntity,
		`{"bogus":1}`:                            http.StatusUnprocessableEntity,
		`{"formats":`:                            http.StatusBadRequest,
		`{"formats":["flv"],"rtmp":["rtmp://"]}`: http.StatusUnprocessableEntity,
	} {
		if code := api(t, srv.base, key, "POST", "/api/rooms/full/recordings", body, nil); code != want {
			t.Errorf("%s: %d, want %d", body, code, want)
		}
	}
	if code := api(t, srv.base, key, "POST", "/api/rooms/nobody/recordings", `{}`, nil); code != http.StatusNotFound {
		t.Errorf("unknown room: %d", code)
	}
	if code := api(t, srv.base, "", "POST", "/api/rooms/full/recordings", `{}`, nil); code != http.StatusUnauthorized {
		t.Errorf("no key: %d", code)
	}
	if code := api(t, srv.base, key, "DELETE", "/api/rooms/full/recordings/rec-000000000000", "", nil); code != http.StatusNotFound {
		t.Errorf("stop unknown: %d", code)
	}
}

// TestRecordToRTMP pushes a recording to an RTMP server (ffmpeg listening)
// and checks what it received.
func TestRecordToRTMP(t *testing.T) {
	ff, _ := mediatest.RequireFFmpeg(t)
	srv := startHTTP(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	got := filepath.Join(t.TempDir(), "got.flv")
	rtmpURL := fmt.Sprintf("rtmp://127.0.0.1:%d/live/secret-key", port)
	cmd := exec.Command(ff, "-hide_banner", "-nostdin", "-v", "error", "-listen", "1", "-timeout", "30", "-f", "flv", "-i", rtmpURL, "-c", "copy", "-f", "flv", "-y", got)
	var ffErr strings.Builder
	cmd.Stderr = &ffErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-done
	}()
	startSharer(t, ctx, srv.ws, "live", "ana", newFlashBeep(t, 320, 180))
	key := srv.APIKey()
	var info recorder.Info
	if code := api(t, srv.base, key, "POST", "/api/rooms/live/recordings", `{"formats":[],"rtmp":["`+rtmpURL+`"]}`, &info); code != http.StatusCreated {
		t.Fatalf("start: %d", code)
	}
	if len(info.RTMP) != 1 || strings.Contains(info.RTMP[0], "secret") {
		t.Errorf("stream key shown: %v", info.RTMP)
	}
	waitRecording(t, srv.base, key, "live", info.ID, 20*time.Second, func(in recorder.Info) bool { return in.Duration >= 6 })
	api(t, srv.base, key, "DELETE", "/api/rooms/live/recordings/"+info.ID, "", nil)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the RTMP server did not see the stream end")
	}
	p := mediatest.ProbeFile(t, got)
	if p.Codecs() != "h264+aac" || p.Duration() < 4 {
		t.Fatalf("RTMP server received %s, %.2f s (ffmpeg: %s)", p.Codecs(), p.Duration(), ffErr.String())
	}
	if e := mediatest.DecodeErrors(t, got); e != "" {
		t.Errorf("decode errors:\n%s", e)
	}
	t.Logf("RTMP server received %s, %.2f s", p.Codecs(), p.Duration())
}
