package rtmp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"github.com/matinee-dev/matinee/internal/testenv"
	"io"
	"math"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder/aac"
	"github.com/matinee-dev/matinee/recorder/flv"
)

func TestParseURL(t *testing.T) {
	for _, c := range []struct{ in, host, app, key string }{
		{"rtmp://live.example/app/key", "live.example:1935", "app", "key"},
		{"rtmps://h:4443/live2/a/b?x=1", "h:4443", "live2/a", "b?x=1"},
		{"rtmps://h/app/k", "h:443", "app", "k"},
	} {
		tg, err := ParseURL(c.in)
		if err != nil || tg.Host != c.host || tg.App != c.app || tg.Key != c.key {
			t.Errorf("%s: %+v %v", c.in, tg, err)
		}
	}
	for _, bad := range []string{"http://h/a/k", "rtmp://h/", "rtmp://h/onlyapp", "rtmp:/live/key", "rtmp://:1935/live/key", "rtmp://]/live/key"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// ffmpegServer runs ffmpeg as a one-shot RTMP server that saves what it
// receives to out.
func ffmpegServer(t *testing.T, port int, out string) *exec.Cmd {
	t.Helper()
	ff, _ := mediatest.RequireFFmpeg(t)
	cmd := exec.Command(ff, "-hide_banner", "-nostdin", "-v", "error", "-listen", "1", "-timeout", "20",
		"-f", "flv", "-i", "rtmp://127.0.0.1:"+strconv.Itoa(port)+"/live/secret", "-c", "copy", "-f", "flv", "-y", out)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// tags returns 3 s of real H.264 and AAC as FLV tags.
func tags(t *testing.T) []flv.Tag {
	dir := t.TempDir()
	vid, _ := mediatest.FlashBeep(t, dir, 320, 180, 3)
	adts := filepath.Join(dir, "a.aac")
	mediatest.Run(t, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "3", "-ac", "2", "-c:a", "aac", "-f", "adts", adts)
	raw, _ := os.ReadFile(adts)
	cfg, frames, err := aac.SplitADTS(raw)
	if err != nil {
		t.Fatal(err)
	}
	asc, _ := cfg.Bytes()
	meta, _ := flv.Metadata(nil)
	out := []flv.Tag{{Type: flv.TagScript, Data: meta}, {Type: flv.TagAudio, Data: flv.AACSequenceHeader(asc)}}
	var ps h264.ParamSets
	ai := 0
	for i, au := range mediatest.ReadH264(t, vid) {
		ms := uint32(i * 1000 / 30)
		nalus := h264.SplitAnnexB(au)
		if c, _ := ps.Update(nalus); c != nil {
			out = append(out, flv.Tag{Type: flv.TagVideo, Timestamp: ms, Data: flv.AVCSequenceHeader(c.Record())})
		}
		for ai < len(frames) && ai*1024*1000/48000 <= int(ms) {
			out = append(out, flv.Tag{Type: flv.TagAudio, Timestamp: uint32(ai * 1024 * 1000 / 48000), Data: flv.AACFrame(frames[ai])})
			ai++
		}
		out = append(out, flv.Tag{Type: flv.TagVideo, Timestamp: ms, Data: flv.AVCFrame(h264.IsKey(nalus), 0, h264.AVCC(nalus))})
	}
	return out
}

func push(t *testing.T, url string, o Options, out string, server *exec.Cmd) {
	t.Helper()
	// ffmpeg takes a moment to listen (and accepts one connection only,
	// so it cannot be probed): retry while the port is closed.
	var c *Conn
	var err error
	for i := 0; i < 100; i++ {
		if c, err = Dial(context.Background(), url, o); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range tags(t) {
		if err := c.WriteTag(tg); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Close()
	done := make(chan error, 1)
	go func() { done <- server.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("ffmpeg did not finish")
	}
	p := mediatest.ProbeFile(t, out)
	if p.Codecs() != "h264+aac" || math.Abs(p.Duration()-3) > 0.3 {
		t.Fatalf("received %s %.2fs", p.Codecs(), p.Duration())
	}
	if e := mediatest.DecodeErrors(t, out); e != "" {
		t.Fatalf("decode errors: %s", e)
	}
}

func TestPublishToFFmpeg(t *testing.T) {
	port := testenv.FreePort(t)
	out := filepath.Join(t.TempDir(), "got.flv")
	srv := ffmpegServer(t, port, out)
	push(t, "rtmp://127.0.0.1:"+strconv.Itoa(port)+"/live/secret", Options{}, out, srv)
}

// TestPublishRTMPS goes through a TLS terminator in front of ffmpeg.
func TestPublishRTMPS(t *testing.T) {
	port := testenv.FreePort(t)
	out := filepath.Join(t.TempDir(), "got.flv")
	srv := ffmpegServer(t, port, out)
	cert, pool := selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				c.Close() // ffmpeg not listening yet: the client retries
				continue
			}
			go func() {
				defer c.Close()
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	tport := ln.Addr().(*net.TCPAddr).Port
	push(t, "rtmps://localhost:"+strconv.Itoa(tport)+"/live/secret", Options{TLSConfig: &tls.Config{RootCAs: pool}}, out, srv)
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}
