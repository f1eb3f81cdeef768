package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/recorder"
	"github.com/pion/webrtc/v4"
)

// The signal tests run the real binary's code (run) in a child process:
// this test binary again, with MATINEE_SIGNAL_CHILD set. The child also
// publishes a screen share into its own server and starts a recording,
// then prints the recording's directory; the parent signals it.

const (
	childEnv  = "MATINEE_SIGNAL_CHILD"
	signalKey = "mk_signaltest"
)

// TestSignalChild is the child's body; in a normal run it does nothing.
func TestSignalChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	var c struct {
		Args         []string
		Video, Audio string
		Addr, Key    string
		DataDir      string
	}
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	go childPublish(t, c.Addr, c.Key, c.DataDir, c.Video, c.Audio)
	// The binary's main: returns once SIGTERM has shut the server down.
	if err := run(c.Args, io.Discard, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func childPublish(t *testing.T, addr, key, dataDir, video, audio string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child publisher:", err)
		os.Exit(4)
	}
	insecure := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the child's own self-signed server
	websocket.DefaultDialer = &websocket.Dialer{TLSClientConfig: insecure, HandshakeTimeout: 5 * time.Second}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecure}}
	base := "https://" + addr
	for i := 0; ; i++ {
		if r, err := hc.Get(base + "/healthz"); err == nil {
			r.Body.Close()
			break
		}
		if i > 200 {
			fail(fmt.Errorf("server did not come up"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	api, err := mediatest.H264API()
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	c, err := testpeer.Dial(ctx, "wss://"+addr+"/ws", api)
	if err != nil {
		fail(err)
	}
	if _, err := c.Join(ctx, "party", "ana"); err != nil {
		fail(err)
	}
	vt, _ := webrtc.NewTrackLocalStaticSample(mediatest.H264Codec, "video", "screen")
	at, _ := webrtc.NewTrackLocalStaticSample(mediatest.OpusCodec, "audio", "screen")
	screen := map[string]any{"source": "screen"}
	if _, err := c.Publish(ctx, &testpeer.Track{Track: vt, AppData: screen}, &testpeer.Track{Track: at, AppData: screen}); err != nil {
		fail(err)
	}
	loop := &mediatest.Loop{Video: vt, Audio: at, AUs: mediatest.ReadH264(t, video), Packets: mediatest.ReadOgg(t, audio)}
	if len(loop.Packets) > 50 {
		loop.Packets = loop.Packets[:50]
	}
	loop.Start()
	req, _ := http.NewRequest("POST", base+"/api/rooms/party/recordings", strings.NewReader(`{"formats":["flv","hls"]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := hc.Do(req)
	if err != nil {
		fail(err)
	}
	var info recorder.Info
	_ = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		fail(fmt.Errorf("start recording: %d", resp.StatusCode))
	}
	fmt.Printf("RECORDING %s\n", filepath.Join(dataDir, "recordings", "party", info.ID))
}

// startChild starts the child server and returns it with the recording
// directory it reports.
func startChild(t *testing.T) (cmd *exec.Cmd, addr, recDir string) {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	video, audio := mediatest.FlashBeep(t, dir, 640, 360, 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	dataDir := filepath.Join(dir, "data")
	key := signalKey
	spec, _ := json.Marshal(map[string]any{
		"Args": []string{"serve", "--addr", addr, "--http-addr", "", "--rtmp-addr", "", "--udp-port", "0", "--ice-loopback-only",
			"--data-dir", dataDir, "--api-key", key, "--record-min-free-mb", "1", "--log-level", "warn"},
		"Video": video, "Audio": audio, "Addr": addr, "Key": key, "DataDir": dataDir,
	})
	cmd = exec.Command(os.Args[0], "-test.run=^TestSignalChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "RECORDING ") {
				lines <- strings.TrimPrefix(sc.Text(), "RECORDING ")
			}
		}
		close(lines)
	}()
	select {
	case d, ok := <-lines:
		if !ok {
			t.Fatal("child ended before recording")
		}
		return cmd, addr, d
	case <-time.After(30 * time.Second):
		t.Fatal("child did not start recording")
	}
	return nil, "", ""
}

// waitRecorded waits until the child's recording holds secs of media,
// asking its API.
func waitRecorded(t *testing.T, addr, dir string, secs float64) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}} //nolint:gosec // the child's self-signed server
	deadline := time.Now().Add(time.Duration(secs+20) * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", "https://"+addr+"/api/rooms/party/recordings/"+filepath.Base(dir), nil)
		req.Header.Set("Authorization", "Bearer "+signalKey)
		if resp, err := hc.Do(req); err == nil {
			var in recorder.Info
			_ = json.NewDecoder(resp.Body).Decode(&in)
			resp.Body.Close()
			if in.Duration >= secs {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("recording %s did not reach %.0f s", dir, secs)
}

func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("child did not exit")
	}
	return nil
}

// TestKill9LeavesReadableFLV kills the server with SIGKILL mid-recording:
// the FLV written so far is a valid file.
func TestKill9LeavesReadableFLV(t *testing.T) {
	cmd, addr, dir := startChild(t)
	flvPath := filepath.Join(dir, recorder.FLVName)
	waitRecorded(t, addr, dir, 6)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = waitExit(t, cmd)
	p := mediatest.ProbeFile(t, flvPath)
	if p.Codecs() != "h264+aac" || p.Duration() < 4 {
		t.Fatalf("after kill -9: %s, %.2f s", p.Codecs(), p.Duration())
	}
	if e := mediatest.DecodeErrors(t, flvPath); e != "" {
		t.Errorf("after kill -9, decode errors:\n%s", e)
	}
	t.Logf("after kill -9: %s, %.2f s readable", p.Codecs(), p.Duration())
	// The live playlist is still a readable (unfinished) EVENT playlist.
	pl, err := os.ReadFile(filepath.Join(dir, "hls", "v0", "index.m3u8"))
	if err != nil || !strings.Contains(string(pl), "#EXT-X-PLAYLIST-TYPE:EVENT") {
		t.Errorf("playlist after kill -9: %v\n%s", err, pl)
	}
}

// TestSIGTERMFinishesRecordings stops the server with SIGTERM: every
// recording is finished, the HLS playlist ends with #EXT-X-ENDLIST.
func TestSIGTERMFinishesRecordings(t *testing.T) {
	cmd, addr, dir := startChild(t)
	waitRecorded(t, addr, dir, 5)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("child exit: %v", err)
	}
	pl, err := os.ReadFile(filepath.Join(dir, "hls", "v0", "index.m3u8"))
	if err != nil || !strings.Contains(string(pl), "#EXT-X-ENDLIST") {
		t.Fatalf("playlist after SIGTERM: %v\n%s", err, pl)
	}
	var info recorder.Info
	b, _ := os.ReadFile(filepath.Join(dir, "recording.json"))
	if err := json.Unmarshal(b, &info); err != nil || info.State != recorder.StateStopped || info.Reason != "server shutting down" {
		t.Errorf("recording.json after SIGTERM: %s", b)
	}
	for _, f := range []string{filepath.Join(dir, recorder.FLVName), filepath.Join(dir, "hls", "index.m3u8")} {
		p := mediatest.ProbeFile(t, f)
		if p.Codecs() != "h264+aac" || math.Abs(p.Duration()-info.Duration) > 1 {
			t.Errorf("%s: %s %.2f s (recorded %.2f s)", f, p.Codecs(), p.Duration(), info.Duration)
		}
		if e := mediatest.DecodeErrors(t, f); e != "" {
			t.Errorf("%s: decode errors:\n%s", f, e)
		}
	}
}
