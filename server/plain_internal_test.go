package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/config"
)

// The plain-HTTP listener shows /help/trust in the app's look before a
// phone trusts the CA: the page's stylesheet and icon come over plain HTTP
// too, while the app itself still redirects to HTTPS.
func TestPlainHandlerServesTheHelpPageAssets(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.UDPPort = 0
	cfg.ICELoopbackOnly = true
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	h := s.plainHandler(8443)
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "http://192.0.2.1:8080"+path, nil))
		return rec
	}
	page := get("/help/trust")
	if page.Code != 200 || !strings.HasPrefix(page.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("/help/trust: %d %q", page.Code, page.Header().Get("Content-Type"))
	}
	css := regexp.MustCompile(`/static/style\.css\?v=[0-9a-f]+`).FindString(page.Body.String())
	if css == "" {
		t.Fatalf("/help/trust links no versioned stylesheet:\n%s", page.Body.String())
	}
	for path, ctype := range map[string]string{css: "text/css; charset=utf-8", "/static/icon.svg": "image/svg+xml", "/favicon.ico": "image/x-icon"} {
		if rec := get(path); rec.Code != 200 || rec.Header().Get("Content-Type") != ctype {
			t.Errorf("%s over plain HTTP: %d %q, want 200 %q", path, rec.Code, rec.Header().Get("Content-Type"), ctype)
		}
	}
	if rec := get("/r/movie"); rec.Code != http.StatusFound || rec.Header().Get("Location") != "https://192.0.2.1:8443/r/movie" {
		t.Errorf("/r/movie over plain HTTP: %d to %q, want a redirect to HTTPS", rec.Code, rec.Header().Get("Location"))
	}
}
