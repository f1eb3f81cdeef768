package room

import (
	"crypto/hmac"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// receiver records webhook deliveries, failing the first fail attempts of
// each delivery with status.
type receiver struct {
	t      *testing.T
	secret []byte
	fail   int
	status int

	mu       sync.Mutex
	attempts map[string]int
	got      []WebhookEvent
	arrived  chan struct{}
}

func newReceiver(t *testing.T, secret string, fail, status int) (*receiver, *httptest.Server) {
	rc := &receiver{t: t, secret: []byte(secret), fail: fail, status: status, attempts: map[string]int{}, arrived: make(chan struct{}, 1000)}
	hs := httptest.NewServer(rc)
	t.Cleanup(hs.Close)
	return rc, hs
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, err := strconv.ParseInt(r.Header.Get(HeaderWebhookTimestamp), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		rc.t.Errorf("bad timestamp header %q", r.Header.Get(HeaderWebhookTimestamp))
	}
	want := SignWebhook(rc.secret, ts, body)
	if !hmac.Equal([]byte(want), []byte(r.Header.Get(HeaderWebhookSignature))) {
		rc.t.Errorf("bad signature %q, want %q", r.Header.Get(HeaderWebhookSignature), want)
	}
	var ev WebhookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		rc.t.Errorf("body %q: %v", body, err)
	}
	if r.Header.Get(HeaderWebhookEvent) != ev.Event || r.Header.Get(HeaderWebhookDelivery) != ev.ID {
		rc.t.Errorf("headers %v do not match %+v", r.Header, ev)
	}
	rc.mu.Lock()
	rc.attempts[ev.ID]++
	n := rc.attempts[ev.ID]
	rc.mu.Unlock()
	if n <= rc.fail {
		w.WriteHeader(rc.status)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, ev)
	rc.mu.Unlock()
	rc.arrived <- struct{}{}
}

func (rc *receiver) wait(n int, within time.Duration) []WebhookEvent {
	rc.t.Helper()
	deadline := time.After(within)
	for i := 0; i < n; i++ {
		select {
		case <-rc.arrived:
		case <-deadline:
			rc.t.Fatalf("only %d of %d webhooks arrived", i, n)
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]WebhookEvent(nil), rc.got...)
}

func TestWebhooksSignedAndRetried(t *testing.T) {
	rc, hs := newReceiver(t, "s3cret", 2, http.StatusServiceUnavailable)
	w := newWebhooks(WebhookConfig{URL: hs.URL, Secret: []byte("s3cret"), RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, slog.Default(), time.Now)
	defer w.close(time.Second)
	w.send("room.started", map[string]any{"room": "a"})
	w.send("room.finished", map[string]any{"room": "a"})
	got := rc.wait(2, 5*time.Second)
	if got[0].Event != "room.started" || got[1].Event != "room.finished" || got[0].Data["room"] != "a" {
		t.Fatalf("events out of order or wrong: %+v", got)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for id, n := range rc.attempts {
		if n != 3 {
			t.Errorf("delivery %s: %d attempts, want 3 (two 503s, then 200)", id, n)
		}
	}
}

func TestWebhooksGiveUp(t *testing.T) {
	// A 400 is not retried; a 500 is retried Retries times, then dropped.
	rc, hs := newReceiver(t, "k", 100, http.StatusBadRequest)
	w := newWebhooks(WebhookConfig{URL: hs.URL, Secret: []byte("k"), Retries: 2, RetryBase: time.Millisecond}, slog.Default(), time.Now)
	w.send("a", nil)
	w.close(2 * time.Second)
	rc.mu.Lock()
	for _, n := range rc.attempts {
		if n != 1 {
			t.Errorf("400 tried %d times", n)
		}
	}
	rc.mu.Unlock()

	rc2, hs2 := newReceiver(t, "k", 100, http.StatusInternalServerError)
	w2 := newWebhooks(WebhookConfig{URL: hs2.URL, Secret: []byte("k"), Retries: 2, RetryBase: time.Millisecond}, slog.Default(), time.Now)
	w2.send("b", nil)
	w2.close(2 * time.Second)
	rc2.mu.Lock()
	defer rc2.mu.Unlock()
	for _, n := range rc2.attempts {
		if n != 3 {
			t.Errorf("500 tried %d times, want 1 + 2 retries", n)
		}
	}
}

func TestWebhooksNeverBlock(t *testing.T) {
	// A receiver that never answers: sends still return at once, the queue
	// overflows into drops, and close gives up after its drain time.
	release := make(chan struct{})
	var hits atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hs.Close()
	defer close(release)
	w := newWebhooks(WebhookConfig{URL: hs.URL, Secret: []byte("k"), Queue: 4, Timeout: time.Minute}, slog.Default(), time.Now)
	began := time.Now()
	for i := 0; i < 1000; i++ {
		w.send("participant.joined", map[string]any{"i": i})
	}
	if d := time.Since(began); d > 500*time.Millisecond {
		t.Fatalf("1000 sends took %v", d)
	}
	if w.dropped.Load() < 990 {
		t.Fatalf("dropped %d, want nearly all", w.dropped.Load())
	}
	began = time.Now()
	w.close(200 * time.Millisecond)
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("close took %v", d)
	}
	w.send("after.close", nil) // ignored, no panic
	var nilHooks *webhooks
	nilHooks.send("x", nil)
	nilHooks.close(time.Second)
}

func TestMediaLibrary(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(p string) {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"b.mp4", "A film.webm", "notes.txt", ".hidden.mp4", ".secret/x.mp4", "show/ep 1/index.m3u8", "show/ep 1/seg00001.ts", "a/b/c/d/deep.mp4"} {
		write(p)
	}
	if err := os.WriteFile(filepath.Join(outside, "leak.mp4"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "leak.mp4"), filepath.Join(dir, "link.mp4")); err != nil {
		t.Fatal(err)
	}
	lib := &MediaLibrary{Dir: dir}
	items, err := lib.List()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, it := range items {
		paths = append(paths, it.Path)
	}
	if got := strings.Join(paths, "|"); got != "A film.webm|b.mp4|show/ep 1/index.m3u8" {
		t.Fatalf("listed %q", got)
	}
	if items[0].URL != "/media/A%20film.webm" || items[0].Type != "video/webm" || items[0].Size != 4 {
		t.Fatalf("item %+v", items[0])
	}
	for _, ok := range []string{"b.mp4", "show/ep 1/seg00001.ts"} {
		f, _, err := lib.Open(ok)
		if err != nil {
			t.Fatalf("open %s: %v", ok, err)
		}
		f.Close()
	}
	for _, bad := range []string{"", "../" + filepath.Base(outside) + "/leak.mp4", "/etc/passwd", ".hidden.mp4", ".secret/x.mp4", "notes.txt", "link.mp4", "show", "missing.mp4"} {
		if f, _, err := lib.Open(bad); err == nil {
			f.Close()
			t.Errorf("opened %q", bad)
		}
	}
}
