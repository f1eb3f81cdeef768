package room

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// WebhookConfig sends room events to an HTTP endpoint (docs/api.md,
// "Webhooks").
type WebhookConfig struct {
	// URL receives a POST per event; empty turns webhooks off.
	URL string
	// Secret keys the HMAC-SHA256 signature of every delivery.
	Secret []byte
	// Retries is how many times a failed delivery is tried again
	// (default 5), waiting RetryBase, 2×RetryBase, ... up to RetryMax
	// (defaults 1s and 1m) with ±20% jitter.
	Retries             int
	RetryBase, RetryMax time.Duration
	// Timeout bounds one attempt (default 5s).
	Timeout time.Duration
	// Queue is how many events may wait; when full, new events are
	// dropped and logged, so no caller ever waits (default 256).
	Queue int
	// Client makes the requests (tests); nil uses a default client.
	Client *http.Client
}

// Signature headers of a delivery. The signature is
// hex(HMAC-SHA256(secret, timestamp + "." + body)).
const (
	HeaderWebhookSignature = "X-Matinee-Signature"
	HeaderWebhookTimestamp = "X-Matinee-Timestamp"
	HeaderWebhookEvent     = "X-Matinee-Event"
	HeaderWebhookDelivery  = "X-Matinee-Delivery"
)

// SignWebhook returns the signature header value for a body sent at
// timestamp (Unix seconds): "sha256=" + hex HMAC.
func SignWebhook(secret []byte, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// WebhookEvent is the JSON body of a delivery.
type WebhookEvent struct {
	ID        string         `json:"id"`
	Event     string         `json:"event"`
	CreatedAt time.Time      `json:"createdAt"`
	Data      map[string]any `json:"data"`
}

// webhooks delivers events in order on one goroutine. A nil *webhooks
// (no URL configured) accepts and drops everything.
type webhooks struct {
	cfg WebhookConfig
	log *slog.Logger
	now func() time.Time

	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	q      chan WebhookEvent

	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	dropped atomic.Int64
	sent    atomic.Int64
}

func newWebhooks(cfg WebhookConfig, log *slog.Logger, now func() time.Time) *webhooks {
	if cfg.URL == "" {
		return nil
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	} else if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax < cfg.RetryBase {
		cfg.RetryMax = max(time.Minute, cfg.RetryBase)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 256
	}
	if cfg.Client == nil {
		// A transport of its own: its idle connections close with us.
		cfg.Client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	w := &webhooks{cfg: cfg, log: log.With("webhook", cfg.URL), now: now, q: make(chan WebhookEvent, cfg.Queue), done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.run()
	return w
}

// Emit queues a webhook event (e.g. "recording.finished" from the
// recorder) without waiting. data is the event's "data" object.
func (m *Manager) Emit(event string, data map[string]any) { m.hooks.send(event, data) }

// send queues an event; it never blocks.
func (w *webhooks) send(event string, data map[string]any) {
	if w == nil {
		return
	}
	ev := WebhookEvent{ID: "wh-" + randHex(8), Event: event, CreatedAt: w.now().UTC(), Data: data}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return
	}
	select {
	case w.q <- ev:
	default:
		n := w.dropped.Add(1)
		w.log.Warn("webhook queue full; event dropped", "event", event, "dropped_total", n)
	}
}

// close stops accepting events, gives the queued ones up to drain to go
// out, then abandons the rest.
func (w *webhooks) close(drain time.Duration) {
	if w == nil {
		return
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return
	}
	w.closed = true
	close(w.q)
	w.mu.Unlock()
	t := time.AfterFunc(drain, w.cancel)
	<-w.done
	t.Stop()
	w.cancel()
	w.cfg.Client.CloseIdleConnections()
}

func (w *webhooks) run() {
	defer close(w.done)
	for ev := range w.q {
		w.deliver(ev)
	}
}

// deliver tries one event until it is accepted, refused for good, out of
// retries, or the dispatcher is closing.
func (w *webhooks) deliver(ev WebhookEvent) {
	body, err := json.Marshal(ev)
	if err != nil {
		w.log.Error("webhook: marshal", "event", ev.Event, "err", err)
		return
	}
	for attempt := 0; ; attempt++ {
		retry, wait, err := w.attempt(ev, body)
		if err == nil {
			w.sent.Add(1)
			return
		}
		if !retry || attempt >= w.cfg.Retries || w.ctx.Err() != nil {
			w.log.Warn("webhook delivery failed", "event", ev.Event, "delivery", ev.ID, "attempts", attempt+1, "err", err)
			return
		}
		if wait <= 0 {
			wait = w.backoff(attempt)
		}
		w.log.Debug("webhook delivery failed; retrying", "event", ev.Event, "attempt", attempt+1, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-w.ctx.Done():
			t.Stop()
			w.log.Warn("webhook delivery abandoned at shutdown", "event", ev.Event, "delivery", ev.ID)
			return
		case <-t.C:
		}
	}
}

// backoff is RetryBase·2^attempt, capped at RetryMax, ±20%.
func (w *webhooks) backoff(attempt int) time.Duration {
	d := w.cfg.RetryBase << min(attempt, 30)
	if d <= 0 || d > w.cfg.RetryMax {
		d = w.cfg.RetryMax
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// attempt posts once. It reports whether a failure is worth retrying
// (network errors, 408, 429, 5xx) and the receiver's Retry-After.
func (w *webhooks) attempt(ev WebhookEvent, body []byte) (retry bool, wait time.Duration, err error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	ts := w.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "matinee-webhooks/1")
	req.Header.Set(HeaderWebhookEvent, ev.Event)
	req.Header.Set(HeaderWebhookDelivery, ev.ID)
	req.Header.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderWebhookSignature, SignWebhook(w.cfg.Secret, ts, body))
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return true, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return false, 0, nil
	case s == http.StatusRequestTimeout, s == http.StatusTooManyRequests, s >= 500:
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			wait = min(time.Duration(secs)*time.Second, w.cfg.RetryMax)
		}
		return true, wait, fmt.Errorf("status %d", s)
	default:
		return false, 0, fmt.Errorf("status %d (not retried)", s)
	}
}
