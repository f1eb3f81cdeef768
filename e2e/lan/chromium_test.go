package lan

import (
	"context"
	"github.com/matinee-dev/matinee/internal/testenv"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/matinee-dev/matinee/internal/chromium"
)

// chromiumPath finds Chromium and certutil, or skips (never under CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("certutil"); err != nil {
		testenv.Need(t, "certutil not found: install the Debian package libnss3-tools")
	}
	return testenv.Chromium(t)
}

// nssHome makes a home directory whose NSS database (the one Chromium on
// Linux reads) trusts the PEM CA in caPEM; nil makes an empty database.
func nssHome(t *testing.T, caPEM []byte) string {
	t.Helper()
	home := t.TempDir()
	db := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		t.Fatal(err)
	}
	sh(t, "", "certutil", "-N", "-d", "sql:"+db, "--empty-password")
	if caPEM != nil {
		ca := filepath.Join(home, "matinee-ca.crt")
		if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		// C: a trusted CA for issuing server certificates.
		sh(t, "", "certutil", "-A", "-d", "sql:"+db, "-n", "matinee-test-ca", "-t", "C,,", "-i", ca)
	}
	return home
}

// loadPage opens url in a fresh headless Chromium whose HOME is home, and
// returns the navigation error and any net::ERR_CERT_* failure seen.
func loadPage(t *testing.T, browser, home, url string) (navErr error, certErrs []string, secure bool) {
	t.Helper()
	// Deliberately no --ignore-certificate-errors: trust comes from the
	// NSS database alone.
	opts := append(chromium.Options(browser, t.TempDir()), chromedp.Env("HOME="+home))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	var mu sync.Mutex
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventLoadingFailed); ok && strings.Contains(e.ErrorText, "ERR_CERT") {
			mu.Lock()
			certErrs = append(certErrs, e.ErrorText)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	if err := chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{})
		return err
	})); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	navErr = chromedp.Do(tctx, chromedp.Navigate(url))
	if navErr == nil {
		if err := chromedp.Do(tctx, chromedp.WaitReady("body")); err != nil {
			t.Fatalf("read the page: %v", err)
		}
		href, err := chromedp.Run(tctx, chromedp.Evaluate[string](`location.href`))
		if err != nil {
			t.Fatal(err)
		}
		if href != url {
			t.Errorf("page is at %q, want %q", href, url)
		}
		if secure, err = chromedp.Run(tctx, chromedp.Evaluate[bool](`window.isSecureContext`)); err != nil {
			t.Fatal(err)
		}
	}
	_ = chromedp.Cancel(ctx)
	mu.Lock()
	defer mu.Unlock()
	return navErr, append([]string(nil), certErrs...), secure
}

// loadPageSettled is loadPage, tried again (twice at most) when Chromium
// aborted the load with ERR_NETWORK_CHANGED: it reports that when an
// interface appears while it starts, which the test's own namespace and
// veth setup can still be doing; it says nothing about the certificate.
func loadPageSettled(t *testing.T, browser, home, url string) (error, []string, bool) {
	t.Helper()
	for i := 0; ; i++ {
		navErr, certErrs, secure := loadPage(t, browser, home, url)
		if i == 2 || navErr == nil || !strings.Contains(navErr.Error(), "ERR_NETWORK_CHANGED") {
			return navErr, certErrs, secure
		}
		t.Logf("page load aborted by a network change (%v); loading again", navErr)
		time.Sleep(500 * time.Millisecond)
	}
}

// Chromium that trusts the server's CA (and nothing else extra) loads the
// room page over the LAN address with no certificate error; without the
// CA it refuses, which shows the check is real.
func TestChromiumTrustsCAOverLAN(t *testing.T) {
	browser := chromiumPath(t)
	p := newPhoneNet(t)
	s := startServer(t, p, nil)
	resp, err := http.Get(s.plainURL("/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM := readAll(t, resp.Body)
	_ = resp.Body.Close()

	room := s.httpsURL("/r/test")
	navErr, certErrs, secure := loadPageSettled(t, browser, nssHome(t, caPEM), room)
	if navErr != nil || len(certErrs) > 0 {
		t.Fatalf("with the CA trusted: navigation error %v, certificate errors %v", navErr, certErrs)
	}
	if !secure {
		t.Error("the room page is not a secure context")
	}

	navErr, certErrs, _ = loadPageSettled(t, browser, nssHome(t, nil), room)
	if navErr == nil && len(certErrs) == 0 {
		t.Fatal("without the CA Chromium loaded the page anyway: the test proves nothing")
	}
	t.Logf("without the CA: %v %v", navErr, certErrs)
	if navErr != nil && !strings.Contains(navErr.Error(), "ERR_CERT") {
		t.Errorf("without the CA: %v, want a net::ERR_CERT_ error", navErr)
	}
}
