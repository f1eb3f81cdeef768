package config

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestPartySettings(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	BindFlags(fs, &c)
	dir := t.TempDir()
	if err := fs.Parse([]string{"--webhook-url", "https://hooks.example/matinee", "--media-dir", dir, "--chat-rate", "0.5", "--sync-seek-threshold", "1s"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MATINEE_SYNC_NUDGE_THRESHOLD": "25ms", "MATINEE_CHAT_HISTORY": "10", "MATINEE_PUBLIC_URL": "https://tv.lan:8443"}
	if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.WebhookURL == "" || c.MediaDir != dir || c.ChatRate != 0.5 || c.SyncSeekThreshold != time.Second ||
		c.SyncNudgeThreshold != 25*time.Millisecond || c.ChatHistory != 10 || c.PublicURL != "https://tv.lan:8443" {
		t.Fatalf("got %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}

	bad := Default()
	bad.WebhookURL = "ftp://x"
	bad.PublicURL = "tv.lan"
	bad.MediaDir = dir + "/missing"
	bad.APIMaxBody = 10
	bad.ChatMaxLength = 0
	bad.ChatBurst = 0
	bad.SyncNudgeThreshold = time.Second // not below the seek threshold
	bad.SyncMaxNudge = 2
	bad.SyncReportInterval = time.Millisecond
	bad.SyncWaitTimeout = 0
	bad.ReconnectGrace = -time.Second
	bad.WebhookRetries = -1
	bad.WebhookBackoff = 0
	bad.WebhookQueue = 0
	err := bad.Validate()
	for _, name := range []string{"webhook-url", "public-url", "media-dir", "api-max-body", "chat-max-length", "chat-burst",
		"sync-seek-threshold", "sync-max-nudge", "sync-report-interval", "sync-wait-timeout", "reconnect-grace", "webhook-retries", "webhook-backoff", "webhook-queue"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate does not name %s: %v", name, err)
		}
	}
}
