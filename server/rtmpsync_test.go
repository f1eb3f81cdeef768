package server_test

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/recorder"
)

// TestRTMPAVSync: ffmpeg publishes a flash and a beep at the start of
// every second over RTMP (H.264 without B-frames, AAC); the room's FLV
// recording has them together within 80 ms. The video is repacketised and
// the audio goes through ffmpeg's AAC→Opus, then the recorder's
// Opus→AAC: this checks that none of it moves one against the other.
func TestRTMPAVSync(t *testing.T) {
	srv, base, rtmpURL, dataDir := startRTMP(t)
	key := srv.APIKey()
	api(t, base, key, "POST", "/api/rooms", `{"id":"sync","name":"Sync"}`, nil)
	var sk streamKey
	if code := api(t, base, key, "POST", "/api/rooms/sync/ingests", `{"type":"rtmp"}`, &sk); code != http.StatusCreated {
		t.Fatalf("stream key: %d", code)
	}
	ff, _ := mediatest.RequireFFmpeg(t)
	cmd := exec.Command(ff, "-hide_banner", "-nostdin", "-v", "error", "-re",
		"-f", "lavfi", "-i", "color=c=0x202020:size=640x360:rate=30,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t\\,1)\\,0.02)'",
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000,volume=volume=0:enable='gte(mod(t\\,1)\\,0.05)'",
		"-t", "30", "-c:v", "libx264", "-bf", "0", "-g", "30", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "128k", "-f", "flv", rtmpURL+"/"+sk.StreamKey)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testenv.Eventually(t, 15*time.Second, "the RTMP producers", func() bool { return roomProducers(t, srv, "sync") == 2 })
	var info recorder.Info
	if code := api(t, base, key, "POST", "/api/rooms/sync/recordings", `{"formats":["flv"]}`, &info); code != http.StatusCreated {
		t.Fatalf("start recording: %d", code)
	}
	waitRecording(t, base, key, "sync", info.ID, 30*time.Second, func(in recorder.Info) bool { return in.Duration >= 8 })
	var final recorder.Info
	if code := api(t, base, key, "DELETE", "/api/rooms/sync/recordings/"+info.ID, "", &final); code != 200 || final.Error != "" {
		t.Fatalf("stop: %d %+v (ffmpeg: %s)", code, final, stderr.String())
	}
	checkRecording(t, filepath.Join(dataDir, "recordings", "sync", info.ID, recorder.FLVName), final.Duration, true)
}
