package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server/servertest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/matinee-dev/matinee/internal/chromium"

	"github.com/matinee-dev/matinee/config"
)

// startServer runs a Matinee server with media on loopback only and
// returns its http://127.0.0.1:port base URL (a secure context, so screen
// capture works without TLS).
func startServer(t *testing.T, edit func(*config.Config)) string {
	t.Helper()
	return startTestServer(t, edit).URL
}

// startTestServer is startServer that also returns the server, for what a
// test asks it directly (its API key, its rooms).
func startTestServer(t *testing.T, edit func(*config.Config), opts ...servertest.Option) *servertest.Server {
	t.Helper()
	return servertest.Start(t, append(opts, servertest.WithConfig(edit))...)
}

// browser is one Chromium process; each tab gets a browser context of its
// own, so tabs share no storage and are separate people to the server.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu   sync.Mutex
	tabs []*tab
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	return launchBrowser(t, testenv.Chromium(t), t.TempDir())
}

// launchBrowser starts the Chromium at execPath with a profile in
// userDataDir.
func launchBrowser(t *testing.T, execPath, userDataDir string) *browser {
	t.Helper()
	opts := append(chromium.Options(execPath, userDataDir), chromedp.WindowSize(1280, 800))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	// Start the browser now, on its first (blank) tab.
	if err := chromedp.Do(bctx); err != nil {
		bcancel()
		acancel()
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: bctx}
	t.Cleanup(func() {
		b.saveArtifacts()
		b.mu.Lock()
		for _, tb := range b.tabs {
			tb.cancel()
		}
		b.mu.Unlock()
		if err := chromedp.Cancel(bctx); err != nil {
			t.Logf("close chromium: %v", err)
		}
		bcancel()
		acancel()
	})
	return b
}

// tab is one page in its own browser context, with its console kept.
type tab struct {
	name   string
	ctx    context.Context
	cancel context.CancelFunc

	mu  sync.Mutex
	log bytes.Buffer
}

func (b *browser) newTab(name string) *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	tb := &tab{name: name, ctx: ctx, cancel: cancel}
	if err := chromedp.Listen(ctx, tb.onEvent); err != nil {
		cancel()
		b.t.Fatalf("tab %s: %v", name, err)
	}
	b.mu.Lock()
	b.tabs = append(b.tabs, tb)
	b.mu.Unlock()
	return tb
}

func (tb *tab) onEvent(ev any) {
	var line string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			switch {
			case len(a.Value) > 0:
				parts = append(parts, string(a.Value))
			case a.Description != "":
				parts = append(parts, a.Description)
			default:
				parts = append(parts, string(a.Type))
			}
		}
		line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg = d.Exception.Description
		}
		line = fmt.Sprintf("exception: %s (%s:%d)", msg, d.URL, d.LineNumber)
	default:
		return
	}
	tb.mu.Lock()
	fmt.Fprintf(&tb.log, "%s %s\n", time.Now().Format("15:04:05.000"), line)
	tb.mu.Unlock()
}

func (tb *tab) console() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.log.String()
}

// artifactDir is $MATINEE_ARTIFACTS/<test> or e2e/artifacts/<test>.
func artifactDir(t *testing.T) string {
	base := os.Getenv("MATINEE_ARTIFACTS")
	if base == "" {
		base = "artifacts"
	}
	return filepath.Join(base, regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_"))
}

// saveArtifacts keeps a screenshot and the console of every tab when the
// test failed.
func (b *browser) saveArtifacts() {
	if !b.t.Failed() {
		return
	}
	dir := artifactDir(b.t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Logf("artifacts: %v", err)
		return
	}
	b.mu.Lock()
	tabs := append([]*tab(nil), b.tabs...)
	b.mu.Unlock()
	for _, tb := range tabs {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		cancel()
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, tb.name+".png"), png, 0o644)
		}
		if err != nil {
			b.t.Logf("artifacts: screenshot of %s: %v", tb.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, tb.name+".console.txt"), []byte(tb.console()), 0o644); err != nil {
			b.t.Logf("artifacts: %v", err)
		}
	}
	abs, _ := filepath.Abs(dir)
	b.t.Logf("screenshots and console logs of every tab: %s", abs)
}

// addInitScript makes src run in every document of the tab before the
// page's own scripts.
func (tb *tab) addInitScript(t *testing.T, src string) {
	t.Helper()
	tb.do(t, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src})
		return err
	}))
}

func (tb *tab) do(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("tab %s: %v", tb.name, err)
	}
}

// eval runs a JavaScript expression (awaiting a promise) and decodes its
// JSON value into out.
func (tb *tab) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("tab %s: %w", tb.name, err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("tab %s: decode %s: %w", tb.name, raw, err)
	}
	return nil
}

func (tb *tab) mustEval(t *testing.T, expr string, out any) {
	t.Helper()
	if err := tb.eval(expr, out); err != nil {
		t.Fatal(err)
	}
}

// opusFmtp returns the Opus fmtp parameters of the audio m-section with
// the given mid ("" for the first audio section).
func opusFmtp(sdp, mid string) map[string]string {
	sections := strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\nm=")
	for _, sec := range sections[1:] {
		if !strings.HasPrefix(sec, "audio ") {
			continue
		}
		if mid != "" && !strings.Contains(sec, "\na=mid:"+mid+"\n") {
			continue
		}
		pt := regexp.MustCompile(`(?m)^a=rtpmap:(\d+) opus/`).FindStringSubmatch(sec)
		if pt == nil {
			return nil
		}
		m := regexp.MustCompile(`(?m)^a=fmtp:` + pt[1] + ` (.*)$`).FindStringSubmatch(sec)
		out := map[string]string{}
		if m == nil {
			return out
		}
		for _, kv := range strings.Split(m[1], ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			out[k] = v
		}
		return out
	}
	return nil
}
