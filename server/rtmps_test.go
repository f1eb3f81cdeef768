package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/testenv"
)

// TestRTMPSIngest: with --rtmps-addr, a stream key comes with an rtmps://
// URL; the RTMPS port presents the HTTPS certificate (from the CA phones
// trust); ffmpeg publishes over it into the room; plain RTMP spoken to
// the TLS port is refused without a room or a producer.
func TestRTMPSIngest(t *testing.T) {
	rtmpsPort := testenv.FreePort(t)
	srv, https, pool := runServer(t, func(c *config.Config) {
		c.RTMPSAddr = "127.0.0.1:" + strconv.Itoa(rtmpsPort)
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	base := "https://127.0.0.1:" + strconv.Itoa(https)
	call := func(method, path, body string, out any) int {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+srv.APIKey())
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, b)
			}
		}
		return resp.StatusCode
	}
	if code := call("POST", "/api/rooms", `{"id":"tv","name":"TV"}`, nil); code != http.StatusCreated {
		t.Fatalf("create room: %d", code)
	}
	var sk struct{ URL, RTMPSURL, StreamKey string }
	if code := call("POST", "/api/rooms/tv/ingests", `{"type":"rtmp"}`, &sk); code != http.StatusCreated {
		t.Fatalf("stream key: %d", code)
	}
	// The URLs name the LAN address phones and OBS reach (as the join
	// links do); this test publishes to loopback, on the same port.
	if !strings.HasPrefix(sk.RTMPSURL, "rtmps://") || !strings.HasSuffix(sk.RTMPSURL, ":"+strconv.Itoa(rtmpsPort)+"/live") || !strings.HasPrefix(sk.URL, "rtmp://") {
		t.Fatalf("urls %q and %q, want rtmps on port %d", sk.URL, sk.RTMPSURL, rtmpsPort)
	}
	rtmpsURL := "rtmps://127.0.0.1:" + strconv.Itoa(rtmpsPort) + "/live"

	// The certificate is the HTTPS one: it verifies against the CA.
	conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(rtmpsPort), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS to the RTMPS port: %v", err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	_ = conn.Close()
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Fatalf("RTMPS certificate: %v", err)
	}

	// Plain RTMP to the TLS port: refused, nothing made.
	plain := publishRTMP(t, "rtmp://127.0.0.1:"+strconv.Itoa(rtmpsPort)+"/live/"+sk.StreamKey, "0", "3")
	if err := plain.Wait(); err == nil {
		t.Error("plain RTMP on the RTMPS port was taken")
	}
	if n := roomProducers(t, srv, "tv"); n != 0 {
		t.Fatalf("%d producers after plain RTMP on the TLS port", n)
	}

	pub := publishRTMP(t, rtmpsURL+"/"+sk.StreamKey, "0", "20")
	testenv.Eventually(t, 15*time.Second, "the RTMPS producers in the room", func() bool { return roomProducers(t, srv, "tv") == 2 })
	_ = pub.Process.Kill()
	testenv.Eventually(t, 15*time.Second, "the producers to close", func() bool { return roomProducers(t, srv, "tv") == 0 })
}
