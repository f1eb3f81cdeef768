package main

import (
	"bytes"
	"encoding/json"
	"github.com/matinee-dev/matinee/server/servertest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/room"
	"go.uber.org/goleak"
)

func TestRoomCommands(t *testing.T) {
	// After the server's cleanup, which servertest registers.
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
	srv := servertest.Start(t)
	cfg := srv.Config

	// The key comes from the data dir, as on the server's machine.
	room := func(args ...string) (map[string]any, error) {
		var out, errb bytes.Buffer
		err := run(append([]string{"room"}, append(args, "--server", srv.URL, "--data-dir", cfg.DataDir)...), &out, &errb)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if jerr := json.Unmarshal(out.Bytes(), &m); jerr != nil {
			t.Fatalf("room %v printed %q: %v", args, out.String(), jerr)
		}
		return m, nil
	}
	created, err := room("create", "--name", "Movie Night", "--max-peers", "4", "--metadata", `{"x":1}`, "--open-control", "--simulcast=false", "--public-hls")
	if err != nil || created["id"] != "movie-night" || created["maxPeers"] != 4.0 || created["openControl"] != true || created["simulcast"] != false || created["publicHLS"] != true || !strings.HasSuffix(created["url"].(string), "/r/movie-night") {
		t.Fatalf("create: %v %v", created, err)
	}
	list, err := room("list")
	if err != nil || len(list["rooms"].([]any)) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	got, err := room("get", "movie-night")
	if err != nil || got["name"] != "Movie Night" {
		t.Fatalf("get: %v %v", got, err)
	}
	hu, err := room("hls-url", "movie-night", "--ttl", "1h")
	if err != nil || !strings.Contains(hu["url"].(string), "/hls/movie-night/index.m3u8?exp=") || !strings.Contains(hu["url"].(string), "&sig=") {
		t.Fatalf("hls-url: %v %v", hu, err)
	}
	tok, err := room("token", "movie-night", "--identity", "ana", "--role", "host", "--ttl", "1h")
	if err != nil || tok["identity"] != "ana" || tok["role"] != "host" || !strings.Contains(tok["url"].(string), "#token=") {
		t.Fatalf("token: %v %v", tok, err)
	}
	if _, err := srv.Rooms().VerifyToken("movie-night", tok["token"].(string)); err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	if del, err := room("delete", "movie-night"); err != nil || del["deleted"] != "movie-night" {
		t.Fatalf("delete: %v %v", del, err)
	}
	if _, err := room("get", "movie-night"); err == nil || !strings.Contains(err.Error(), "404 not_found") {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := room("create"); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("create without a name: %v", err)
	}
	if _, err := room("create", "--name", "x", "--max-peers", "0"); err == nil || !strings.Contains(err.Error(), "422 invalid_field") {
		t.Fatalf("bad max-peers: %v", err)
	}
	if _, err := room("delete"); err == nil {
		t.Fatal("delete without an id")
	}
	var out, errb bytes.Buffer
	if err := run([]string{"room", "list", "--server", srv.URL, "--api-key", "wrong"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong key: %v", err)
	}
	if err := run([]string{"room", "dance"}, &out, &errb); err == nil {
		t.Fatal("unknown room command")
	}
}

func TestConvert(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg is missing (Debian package ffmpeg); this test never skips in CI")
		}
		t.Skip("ffmpeg not installed (Debian package ffmpeg)")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "clip.mp4")
	mk := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "3", "-c:v", "libx264", "-g", "90", "-c:a", "aac", in)
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make clip: %v %s", err, b)
	}
	var out, errb bytes.Buffer
	if err := run([]string{"convert", in, "--segment", "1"}, &out, &errb); err != nil {
		t.Fatalf("convert: %v %s", err, errb.String())
	}
	var res struct {
		Playlist  string   `json:"playlist"`
		Segments  int      `json:"segments"`
		Subtitles []string `json:"subtitles"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Playlist != filepath.Join(dir, "clip-hls", "index.m3u8") || res.Segments < 3 {
		t.Fatalf("result %q: %+v %v", out.String(), res, err)
	}
	pl, err := os.ReadFile(res.Playlist)
	if err != nil || !strings.Contains(string(pl), "#EXT-X-ENDLIST") || !strings.Contains(string(pl), "seg00000.ts") {
		t.Fatalf("playlist %s %v", pl, err)
	}
	// Every segment starts on a keyframe: segments are ~1 s.
	if !strings.Contains(string(pl), "#EXT-X-TARGETDURATION:1") {
		t.Errorf("segments longer than asked:\n%s", pl)
	}
	if len(res.Subtitles) != 0 {
		t.Fatalf("subtitles from a film without any: %v", res.Subtitles)
	}

	// Text subtitle streams are kept as WebVTT beside the playlist, and the
	// media folder lists them with it.
	srtFile := filepath.Join(dir, "subs.srt")
	if err := os.WriteFile(srtFile, []byte("1\n00:00:00,500 --> 00:00:02,000\nHello from the film\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	subbed := filepath.Join(dir, "subbed.mkv")
	mk = exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-i", in, "-i", srtFile, "-map", "0", "-map", "1",
		"-c", "copy", "-c:s", "srt", "-metadata:s:s:0", "language=eng", subbed)
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make subtitled clip: %v %s", err, b)
	}
	out.Reset()
	if err := run([]string{"convert", subbed, "--copy", "--segment", "1"}, &out, &errb); err != nil {
		t.Fatalf("convert: %v %s", err, errb.String())
	}
	res.Subtitles = nil
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res.Subtitles) != 1 || filepath.Base(res.Subtitles[0]) != "index.eng.vtt" {
		t.Fatalf("result %q: %+v %v", out.String(), res, err)
	}
	vtt, err := os.ReadFile(res.Subtitles[0])
	// ffmpeg may shift the cue by the input's start time (AAC priming,
	// some 20 ms), as it does the video.
	cue := regexp.MustCompile(`\n00:00\.(\d{3}) --> 00:0[12]\.\d{3}\nHello from the film\n`).FindStringSubmatch(string(vtt))
	if err != nil || !strings.HasPrefix(string(vtt), "WEBVTT") || cue == nil || cue[1] < "450" || cue[1] > "550" {
		t.Fatalf("WebVTT %q %v", vtt, err)
	}
	lib := room.MediaLibrary{Dir: dir}
	items, err := lib.List()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, it := range items {
		if it.Path == "subbed-hls/index.m3u8" {
			found = len(it.Subtitles) == 1 && it.Subtitles[0].Lang == "eng" && it.Subtitles[0].URL == "/media/subbed-hls/index.eng.vtt"
		}
	}
	if !found {
		t.Fatalf("the media folder does not list the subtitles with the playlist: %+v", items)
	}

	if err := run([]string{"convert", filepath.Join(dir, "missing.mp4")}, &out, &errb); err == nil {
		t.Fatal("converted a missing file")
	}
	if err := run([]string{"convert"}, &out, &errb); err == nil {
		t.Fatal("convert without input")
	}
}

func TestRoomIngest(t *testing.T) {
	// After the server's cleanup, which servertest registers.
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
	srv := servertest.Start(t, servertest.WithRTMP())
	cfg := srv.Config
	room := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(append([]string{"room"}, append(args, "--server", srv.URL, "--data-dir", cfg.DataDir)...), &out, &errb)
		return out.String(), err
	}
	if _, err := room("create", "--name", "Stage"); err != nil {
		t.Fatal(err)
	}

	out, err := room("ingest", "stage")
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^  ` + name + `:\s+(\S+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %s in:\n%s", name, out)
		}
		return m[1]
	}
	// The host is the one browsers are sent to (the LAN address); the
	// port is the RTMP listener's.
	wantURL := field("Server")
	if !regexp.MustCompile(`^rtmp://[^/]+:` + strconv.Itoa(srv.RTMPAddr.Port) + `/live$`).MatchString(wantURL) {
		t.Fatalf("Server %q: not the RTMP listener's port", wantURL)
	}
	key := field("Stream Key")
	roomID, keyID, ok := srv.Rooms().LookupStreamKey(key)
	if !ok || roomID != "stage" || !strings.HasPrefix(keyID, "sk_") {
		t.Fatalf("printed key %q: room %q id %q ok %v", key, roomID, keyID, ok)
	}
	for _, want := range []string{"Keyframe Interval  2 s", "B-frames           0", "Rate Control       CBR", "--revoke " + keyID, wantURL + "/" + key} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// --json prints the server's answer for scripts.
	js, err := room("ingest", "stage", "--json")
	var ans struct{ ID, Room, Type, URL, StreamKey string }
	if err != nil || json.Unmarshal([]byte(js), &ans) != nil || ans.Type != "rtmp" || ans.URL != wantURL || ans.StreamKey == "" || ans.StreamKey == key {
		t.Fatalf("ingest --json: %q %v", js, err)
	}

	rv, err := room("ingest", "stage", "--revoke", keyID)
	if err != nil || !strings.Contains(rv, `"revoked": "`+keyID+`"`) {
		t.Fatalf("revoke: %q %v", rv, err)
	}
	if _, _, ok := srv.Rooms().LookupStreamKey(key); ok {
		t.Fatal("revoked key still works")
	}
	if _, _, ok := srv.Rooms().LookupStreamKey(ans.StreamKey); !ok {
		t.Fatal("revoking one key revoked the other")
	}
	if _, err := room("ingest", "stage", "--revoke", keyID); err == nil || !strings.Contains(err.Error(), "404 not_found") {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err := room("ingest", "stage", "--revoke", "live_abc"); err == nil || !strings.Contains(err.Error(), "stream key id") {
		t.Fatalf("revoke by key instead of id: %v", err)
	}
	if _, err := room("ingest", "nosuch"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("ingest in a missing room: %v", err)
	}
	if _, err := room("ingest"); err == nil {
		t.Fatal("ingest without a room id")
	}
}
