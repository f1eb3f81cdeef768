package interop_test

import (
	"encoding/json"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// startHLS starts recording a room to HLS.
func startHLS(t *testing.T, base, key, room string) {
	t.Helper()
	adminPost(t, base, key, "/api/rooms/"+room+"/recordings", `{"formats":["hls"]}`, http.StatusCreated)
}

// signedHLSQuery mints a signed live-HLS URL for the room, as a player
// that cannot send headers would be given, and returns its query string.
func signedHLSQuery(t *testing.T, base, key, room string) string {
	t.Helper()
	var signed struct {
		Path string `json:"path"`
	}
	body := adminPost(t, base, key, "/api/rooms/"+room+"/hls-url", `{"ttl":600}`, http.StatusOK)
	if err := json.Unmarshal(body, &signed); err != nil {
		t.Fatalf("hls-url answer %s: %v", body, err)
	}
	_, q, ok := strings.Cut(signed.Path, "?")
	if !ok {
		t.Fatalf("hls-url answer %s has no query", body)
	}
	return q
}

// adminPost posts body with the API key and returns the answer's body,
// failing unless its status is want.
func adminPost(t *testing.T, base, key, path, body string, want int) []byte {
	t.Helper()
	req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

// probeStream is one stream as ffprobe reports it after decoding.
type probeStream struct {
	Type   string `json:"codec_type"`
	Codec  string `json:"codec_name"`
	Frames string `json:"nb_read_frames"`
}

// checkHLS waits for the room's private live HLS to list a segment (listed ones
// are complete) and decodes it with ffprobe: minFrames H.264 frames or
// more, and AAC audio.
// The first will do: it starts on a keyframe, and a slow screen share may
// take longer than a test should wait to fill a second.
func checkHLS(t *testing.T, base, key, room string, minFrames int, d time.Duration) {
	t.Helper()
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		testenv.Need(t, "ffprobe not found (Debian package ffmpeg)")
	}
	// The room is private: the player gets a signed URL, and the served
	// playlist carries its credential on to the segments.
	playlist := base + "/hls/" + room + "/v0/index.m3u8?" + signedHLSQuery(t, base, key, room)
	var segs []string
	waitFor(t, d, "a complete HLS segment", func() bool {
		segs = hlsSegments(playlist)
		return len(segs) >= 1
	}, func() string { return "" }, stringer(func() string { return fmt.Sprintf("segments %v", segs) }))
	ref, err := url.Parse(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	pl, err := url.Parse(playlist)
	if err != nil {
		t.Fatal(err)
	}
	seg := pl.ResolveReference(ref).String()
	out, err := exec.Command(ffprobe, "-v", "error", "-count_frames", "-show_entries", "stream=codec_type,codec_name,nb_read_frames", "-of", "json", seg).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", seg, err)
	}
	var probe struct {
		Streams []probeStream `json:"streams"`
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	got := map[string]probeStream{}
	for _, s := range probe.Streams {
		got[s.Type] = s
	}
	if v := got["video"]; v.Codec != "h264" || atoi(v.Frames) < minFrames {
		t.Errorf("HLS segment %s: video %+v, want h264 with ≥ %d decoded frames", segs[0], v, minFrames)
	}
	if a := got["audio"]; a.Codec != "aac" || atoi(a.Frames) < 10 {
		t.Errorf("HLS segment %s: audio %+v, want aac with decoded frames", segs[0], a)
	}
	t.Logf("HLS segment %s: %+v", segs[0], probe.Streams)
}

func hlsSegments(playlist string) []string {
	resp, err := http.Get(playlist)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var segs []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			segs = append(segs, line)
		}
	}
	return segs
}

func atoi(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}
