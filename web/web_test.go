package web

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func TestPages(t *testing.T) {
	h := Handler()
	cases := []struct {
		path   string
		testid string
	}{
		{"/", `data-testid="create-room"`},
		{"/r/movie-night", `data-testid="share-screen"`},
		{"/r/Another_Room-2", `data-testid="share-screen"`},
	}
	var roomBody string
	for _, c := range cases {
		res, body := get(t, h, "GET", c.path, nil)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: status %d", c.path, res.StatusCode)
		}
		if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", c.path, ct)
		}
		if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", c.path, cc)
		}
		if res.Header.Get("Content-Security-Policy") == "" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: security headers missing: %v", c.path, res.Header)
		}
		if !strings.Contains(body, c.testid) {
			t.Errorf("GET %s: body lacks %s", c.path, c.testid)
		}
		if strings.Contains(body, "<!--importmap-->") || !strings.Contains(body, `<script type="importmap">`) {
			t.Errorf("GET %s: import map not filled in", c.path)
		}
		if strings.HasPrefix(c.path, "/r/") {
			if roomBody != "" && body != roomBody {
				t.Errorf("GET %s: room page differs between rooms", c.path)
			}
			roomBody = body
		}
	}
}

// Every asset a page names carries the current version, resolves, and is
// served as immutable; the import map's hash is in the CSP.
func TestPageAssetsVersioned(t *testing.T) {
	h := Handler()
	for _, page := range []string{"/", "/r/x"} {
		res, body := get(t, h, "GET", page, nil)
		refs := regexp.MustCompile(`"(/static/[^"?]+)(\?v=[0-9a-f]+)?"`).FindAllStringSubmatch(body, -1)
		if len(refs) < 4 {
			t.Fatalf("%s: only %d asset references", page, len(refs))
		}
		for _, m := range refs {
			if m[2] == "" {
				// Keys of the import map are unversioned by design.
				if !strings.Contains(body, `"`+m[1]+`":"`+m[1]+"?v=") {
					t.Errorf("%s: %s has no version", page, m[1])
				}
				continue
			}
			ares, _ := get(t, h, "GET", m[1]+m[2], nil)
			if ares.StatusCode != 200 {
				t.Errorf("%s → %s%s: status %d", page, m[1], m[2], ares.StatusCode)
			}
			if cc := ares.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
				t.Errorf("%s%s: Cache-Control %q, want immutable", m[1], m[2], cc)
			}
		}
		im := regexp.MustCompile(`<script type="importmap">(.*?)</script>`).FindStringSubmatch(body)
		if im == nil {
			t.Fatalf("%s: no import map", page)
		}
		var parsed struct{ Imports map[string]string }
		if err := json.Unmarshal([]byte(im[1]), &parsed); err != nil || parsed.Imports["/static/client.js"] == "" {
			t.Errorf("%s: import map %s: %v", page, im[1], err)
		}
		sum := sha256.Sum256([]byte(im[1]))
		if want := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(res.Header.Get("Content-Security-Policy"), want) {
			t.Errorf("%s: CSP %q lacks the import map hash %s", page, res.Header.Get("Content-Security-Policy"), want)
		}
	}
}

func TestStatic(t *testing.T) {
	h := Handler()
	types := map[string]string{
		"/static/client.js":            "text/javascript; charset=utf-8",
		"/static/style.css":            "text/css; charset=utf-8",
		"/static/icon.svg":             "image/svg+xml",
		"/static/manifest.webmanifest": "application/manifest+json",
	}
	for path, want := range types {
		res, body := get(t, h, "GET", path, nil)
		if res.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("GET %s: status %d, %d bytes", path, res.StatusCode, len(body))
		}
		if ct := res.Header.Get("Content-Type"); ct != want {
			t.Errorf("GET %s: Content-Type %q, want %q", path, ct, want)
		}
		if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s (unversioned): Cache-Control %q, want no-cache", path, cc)
		}
		etag := res.Header.Get("ETag")
		if etag == "" {
			t.Fatalf("GET %s: no ETag", path)
		}
		res2, body2 := get(t, h, "GET", path, map[string]string{"If-None-Match": etag})
		if res2.StatusCode != http.StatusNotModified || body2 != "" {
			t.Errorf("GET %s with its ETag: status %d, %d bytes; want 304", path, res2.StatusCode, len(body2))
		}
	}
	// A stale version is not cached for long.
	res, _ := get(t, h, "GET", "/static/client.js?v=0000000000", nil)
	if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("stale version: Cache-Control %q", cc)
	}
}

func TestGzip(t *testing.T) {
	h := Handler()
	_, plain := get(t, h, "GET", "/static/client.js", nil)
	res, zipped := get(t, h, "GET", "/static/client.js", map[string]string{"Accept-Encoding": "br, gzip"})
	if res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q", res.Header.Get("Content-Encoding"))
	}
	if !strings.Contains(res.Header.Get("Vary"), "Accept-Encoding") {
		t.Errorf("Vary %q", res.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(strings.NewReader(zipped))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || string(got) != plain {
		t.Fatalf("gzip body does not decode to the plain one (err %v)", err)
	}
	res, _ = get(t, h, "GET", "/static/client.js", map[string]string{"Accept-Encoding": "gzip;q=0"})
	if res.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip;q=0 still got %q", res.Header.Get("Content-Encoding"))
	}
}

func TestNotClaimed(t *testing.T) {
	h := Handler()
	for _, path := range []string{"/ws", "/healthz", "/api/rooms", "/hls/x/index.m3u8", "/r/", "/r/a/b", "/static/", "/static/nope.js", "/static/index.html", "/static/../web.go"} {
		res, _ := get(t, h, "GET", path, nil)
		// ServeMux redirects unclean paths to their clean form, which is
		// then not found.
		if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMovedPermanently && res.StatusCode != http.StatusTemporaryRedirect {
			t.Errorf("GET %s: status %d, want 404", path, res.StatusCode)
		}
	}
	res, _ := get(t, h, "POST", "/", nil)
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d, want 405", res.StatusCode)
	}
	res, body := get(t, h, "HEAD", "/r/x", nil)
	if res.StatusCode != 200 || body != "" {
		t.Errorf("HEAD /r/x: status %d, %d bytes", res.StatusCode, len(body))
	}
}

// The server mounts Handler at "/" next to its own endpoints; the more
// specific patterns must keep winning.
func TestMountedBesideServer(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ws") })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.Handle("/", Handler())
	if _, body := get(t, mux, "GET", "/healthz", nil); body != "ok" {
		t.Errorf("/healthz → %q", body)
	}
	if res, _ := get(t, mux, "GET", "/r/abc", nil); res.StatusCode != 200 {
		t.Errorf("/r/abc → %d", res.StatusCode)
	}
}

func TestFavicon(t *testing.T) {
	for _, h := range []http.Handler{Handler(), New(Options{}).Static()} {
		res, body := get(t, h, "GET", "/favicon.ico", nil)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/x-icon" || !strings.HasPrefix(body, "\x00\x00\x01\x00") {
			t.Errorf("GET /favicon.ico: %d %q, %d bytes", res.StatusCode, res.Header.Get("Content-Type"), len(body))
		}
	}
}

func TestErrorPages(t *testing.T) {
	h := New(Options{ValidRoom: func(id string) bool { return id == "ok-room" }})
	for _, c := range []struct {
		path, want string
		status     int
	}{
		{"/nope", "Page not found", 404},
		{"/r/a/b", "Page not found", 404},
		{"/r/bad%20room", "Not a room link", 404},
		{"/r/ok-room", `<script type="module" src="/static/room.js?v=`, 200},
	} {
		res, body := get(t, h, "GET", c.path, nil)
		if res.StatusCode != c.status || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %q, want %d with %q:\n%s", c.path, res.StatusCode, res.Header.Get("Content-Type"), c.status, c.want, body)
		}
		if c.status == 404 && (!strings.Contains(body, `href="/"`) || !strings.Contains(body, `/static/style.css?v=`) || res.Header.Get("Content-Security-Policy") == "") {
			t.Errorf("GET %s: the error page lacks its link home, the versioned stylesheet or a CSP:\n%s", c.path, body)
		}
	}
	// The room name is escaped, not markup.
	_, body := get(t, h, "GET", "/r/%3Cb%3Ex", nil)
	if strings.Contains(body, "<b>x") || !strings.Contains(body, "&lt;b&gt;x") {
		t.Errorf("the bad room name is not escaped:\n%s", body)
	}
	res, body := get(t, h, "HEAD", "/nope", nil)
	if res.StatusCode != 404 || body != "" {
		t.Errorf("HEAD /nope: %d, %d bytes", res.StatusCode, len(body))
	}
}

func TestTrustPage(t *testing.T) {
	s := New(Options{})
	rec := httptest.NewRecorder()
	s.Trust(rec, httptest.NewRequest("GET", "/help/trust", nil), struct {
		OwnCert                                       bool
		CAName, Fingerprint, CAURL, ProfileURL, Lobby string
		HTTPS                                         bool
	}{CAName: "Matinee <CA>", CAURL: "/ca.crt", ProfileURL: "/ca.mobileconfig", Lobby: "https://10.0.0.2:8443/"})
	body := rec.Body.String()
	for _, want := range []string{"Matinee &lt;CA&gt;", `href="/ca.crt"`, `href="https://10.0.0.2:8443/"`, `/static/style.css?v=`} {
		if !strings.Contains(body, want) {
			t.Errorf("trust page lacks %q:\n%s", want, body)
		}
	}
	if rec.Code != 200 || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("trust page: %d, Cache-Control %q", rec.Code, rec.Header().Get("Cache-Control"))
	}
}
