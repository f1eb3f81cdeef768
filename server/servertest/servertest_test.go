package servertest_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/server/servertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestStart: the server answers on its URL, its API client carries the
// key (and WithKey another), its WebSocket speaks JSON-RPC, the config
// edit applies, and WithRTMP listens on loopback.
func TestStart(t *testing.T) {
	s := servertest.Start(t, servertest.WithRTMP(), servertest.WithConfig(func(c *config.Config) { c.MaxPeers = 7 }))
	if s.Config.MaxPeers != 7 || !s.Config.ICELoopbackOnly || s.Config.UDPPort != 0 {
		t.Errorf("config %+v: the edit or the loopback defaults are missing", s.Config)
	}
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || s.WS != "ws"+strings.TrimPrefix(s.URL, "http")+"/ws" {
		t.Errorf("URL %q, WS %q", s.URL, s.WS)
	}
	api := s.API(t)
	if st, _, b := api.Do(http.MethodGet, "/healthz", nil); st != http.StatusOK {
		t.Errorf("healthz: %d %s", st, b)
	}
	var room struct {
		ID       string `json:"id"`
		MaxPeers int    `json:"maxPeers"`
	}
	api.Must(http.MethodPost, "/api/rooms", map[string]any{"name": "Harness Check"}, http.StatusCreated, &room)
	if room.ID != "harness-check" || room.MaxPeers != 7 {
		t.Errorf("created %+v", room)
	}
	if st := api.WithKey("wrong").Call(http.MethodGet, "/api/rooms", "", nil); st != http.StatusUnauthorized {
		t.Errorf("with a wrong key: %d, want 401", st)
	}

	conn, _, err := websocket.DefaultDialer.Dial(s.WS, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", s.WS, err)
	}
	defer conn.Close()
	if err := conn.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "time", "params": map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var resp struct {
		ID     int            `json:"id"`
		Result map[string]any `json:"result"`
	}
	if err := conn.ReadJSON(&resp); err != nil || resp.ID != 1 || resp.Result == nil {
		t.Fatalf("time over %s: %+v %v", s.WS, resp, err)
	}

	if s.RTMPAddr == nil || !s.RTMPAddr.IP.IsLoopback() || s.RTMPURL != "rtmp://"+s.RTMPAddr.String()+"/live" {
		t.Fatalf("RTMP %v %q", s.RTMPAddr, s.RTMPURL)
	}
	c, err := net.DialTimeout("tcp", s.RTMPAddr.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("RTMP listener: %v", err)
	}
	_ = c.Close()
}
