package rtmp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder/flv"
)

// recStream keeps what a publisher sent and why it ended.
type recStream struct {
	mu     sync.Mutex
	tags   []flv.Tag
	reason error
	closed chan struct{}
}

func newRecStream() *recStream { return &recStream{closed: make(chan struct{})} }

func (r *recStream) WriteTag(t flv.Tag) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tags = append(r.tags, flv.Tag{Type: t.Type, Timestamp: t.Timestamp, Data: bytes.Clone(t.Data)})
	return nil
}

func (r *recStream) Close(reason error) {
	r.mu.Lock()
	r.reason = reason
	r.mu.Unlock()
	close(r.closed)
}

// counts returns the AVC sequence headers, keyframes and AAC frames seen.
func (r *recStream) counts() (seq, key, aacFrames int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tags {
		switch {
		case t.Type == flv.TagVideo && len(t.Data) > 1 && t.Data[1] == 0:
			seq++
		case t.Type == flv.TagVideo && len(t.Data) > 1 && t.Data[0]>>4 == 1:
			key++
		case t.Type == flv.TagAudio && len(t.Data) > 1 && t.Data[0]>>4 == 10 && t.Data[1] == 1:
			aacFrames++
		}
	}
	return
}

// testServer starts a server on loopback that takes the key "secret"
// (and refuses others), handing each publish a fresh recStream.
func testServer(t *testing.T, cfg ServerConfig) (addr string, streams chan *recStream) {
	t.Helper()
	streams = make(chan *recStream, 4)
	if cfg.Publish == nil {
		cfg.Publish = func(r PublishRequest) (Stream, error) {
			if r.App != "live" || r.Key != "secret" {
				return nil, errors.New("unknown stream key")
			}
			s := newRecStream()
			streams <- s
			return s, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), streams
}

func ffmpegPublish(t *testing.T, url string, bf string, seconds string) *exec.Cmd {
	t.Helper()
	ff, _ := mediatest.RequireFFmpeg(t)
	cmd := exec.Command(ff, "-hide_banner", "-nostdin", "-v", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine",
		"-t", seconds, "-c:v", "libx264", "-bf", bf, "-g", "30", "-c:a", "aac", "-f", "flv", url)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func waitStream(t *testing.T, streams chan *recStream) *recStream {
	t.Helper()
	select {
	case s := <-streams:
		return s
	case <-time.After(15 * time.Second):
		t.Fatal("no publish reached the server")
		return nil
	}
}

func waitClosed(t *testing.T, s *recStream) error {
	t.Helper()
	select {
	case <-s.closed:
	case <-time.After(15 * time.Second):
		t.Fatal("the stream was not closed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// TestServerFFmpegPublish: ffmpeg publishes 2 s of H.264 without
// B-frames and AAC, both ways a key can be sent; every tag arrives.
func TestServerFFmpegPublish(t *testing.T) {
	addr, streams := testServer(t, ServerConfig{})
	for _, url := range []string{"rtmp://" + addr + "/live/secret", "rtmp://" + addr + "/live/secret?x=1"} {
		cmd := ffmpegPublish(t, url, "0", "2")
		s := waitStream(t, streams)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("ffmpeg: %v", err)
		}
		if err := waitClosed(t, s); !errors.Is(err, ErrUnpublished) {
			t.Errorf("ended with %v, want the client's unpublish", err)
		}
		seq, key, aacFrames := s.counts()
		// 2 s at a GOP of 30 frames: 2 keyframes; 48 kHz AAC: ~94 frames.
		if seq < 1 || key < 2 || aacFrames < 80 {
			t.Errorf("%s: %d sequence headers, %d keyframes, %d AAC frames", url, seq, key, aacFrames)
		}
	}
}

// TestServerGoClient: this package's client publishes to its server
// (rtmp://host/live with the key as the name, as OBS does).
func TestServerGoClient(t *testing.T) {
	addr, streams := testServer(t, ServerConfig{})
	c, err := Dial(context.Background(), "rtmp://"+addr+"/live/secret", Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := waitStream(t, streams)
	sent := tags(t)
	for _, tg := range sent {
		if err := c.WriteTag(tg); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Close()
	waitClosed(t, s)
	if len(s.tags) != len(sent) {
		t.Fatalf("%d tags sent, %d received", len(sent), len(s.tags))
	}
	for i := range sent {
		if s.tags[i].Type != sent[i].Type || s.tags[i].Timestamp != sent[i].Timestamp || !bytes.Equal(s.tags[i].Data, sent[i].Data) {
			t.Fatalf("tag %d differs", i)
		}
	}
}

// TestServerRefusals: a wrong key, B-frames and a second connection over
// the limit are refused with their reasons; a silent client is dropped.
func TestServerRefusals(t *testing.T) {
	addr, streams := testServer(t, ServerConfig{HandshakeTimeout: 3 * time.Second, MaxConns: 2})

	if _, err := Dial(context.Background(), "rtmp://"+addr+"/live/wrong", Options{}); err == nil || !strings.Contains(err.Error(), "unknown stream key") {
		t.Errorf("wrong key: %v", err)
	}

	cmd := ffmpegPublish(t, "rtmp://"+addr+"/live/secret", "2", "5")
	s := waitStream(t, streams)
	if err := waitClosed(t, s); !errors.Is(err, ErrBFrames) {
		t.Errorf("B-frames ended with %v", err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("ffmpeg with B-frames exited cleanly")
	}

	// Two silent clients fill the server; a third is closed at once, and
	// the silent ones after the handshake timeout.
	var silent []net.Conn
	for range 2 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		silent = append(silent, nc)
	}
	// The server accepts in order: once a write to the third fails or it
	// reads EOF, the limit held.
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	// Closed at accept, not by the handshake timeout (3 s).
	_ = third.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("a connection over the limit was kept: %v", err)
	}
	for _, nc := range silent {
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("a silent client was kept: %v", err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestCheckVideo names the setting to change for each refused kind.
func TestCheckVideo(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want error
	}{
		{[]byte{0x17, 0, 0, 0, 0}, nil},
		{[]byte{0x17, 1, 0, 0, 0}, nil},
		{[]byte{0x27, 1, 0, 0, 0x21}, ErrBFrames},
		{[]byte{0x27, 1, 0xff, 0xff, 0xff}, ErrBFrames},
		{[]byte{0x90, 'h', 'v', 'c', '1'}, ErrEnhanced},
		{[]byte{0x12, 0}, ErrVideoCodec},
		{[]byte{0x17}, errShortVideo},
	} {
		if err := CheckVideo(c.b); err != c.want {
			t.Errorf("%x: %v, want %v", c.b, err, c.want)
		}
	}
	if !strings.Contains(ErrBFrames.Error(), "B-frames to 0") {
		t.Error("the B-frame refusal does not name the setting")
	}
}

func TestPublishRequest(t *testing.T) {
	for _, c := range []struct{ app, name, wantApp, wantKey string }{
		{"live", "k1", "live", "k1"},
		{"live", "k1?token=x", "live", "k1"},
		{"live/k2", "", "live", "k2"},
		{"/live/", "k3", "live", "k3"},
	} {
		r := publishRequest(c.app, c.name, nil)
		if r.App != c.wantApp || r.Key != c.wantKey {
			t.Errorf("%q %q: %+v", c.app, c.name, r)
		}
	}
}
