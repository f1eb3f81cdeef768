// Package web serves Matinee's browser client: the lobby at /, the room page
// at /r/{room}, the static assets under /static/, /favicon.ico, and the
// pages the server renders in the app's look (errors, /help/trust).
// Everything is embedded in the binary; there is no build step and no
// third-party code.
//
// Assets are addressed with a content-hash query (/static/room.js?v=1a2b3c4d)
// which the HTML pages carry and an import map applies to module imports, so
// a versioned asset may be cached for a year while the pages themselves are
// always revalidated.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"
)

//go:embed static
var staticFS embed.FS

// contentTypes maps the extensions the client uses to their media types; the
// system's MIME tables are not consulted so that every host serves the same.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".json":        "application/json",
	".webmanifest": "application/manifest+json",
}

// asset is one embedded file, prepared for serving.
type asset struct {
	name  string // path below static/, e.g. "room.js"
	ctype string
	body  []byte
	gz    []byte // gzip of body, nil when it does not pay
	etag  string // quoted strong ETag of body
	ver   string // short content hash used as ?v=
}

// site is everything Handler serves, built once from the embedded files.
type site struct {
	assets map[string]*asset // by name below static/
	lobby  *asset
	room   *asset
	csp    string
	errTpl *template.Template // error.html
	trust  *template.Template // trust.html
}

// Options adjust what a Site accepts.
type Options struct {
	// ValidRoom reports whether a name can be a room's; a /r/{room} link
	// that cannot gets the error page with 404 instead of the room page.
	// Nil accepts every name.
	ValidRoom func(string) bool
}

// Site is the browser client: an http.Handler, and the renderer of the
// pages the server shows in the app's look.
type Site struct {
	s    *site
	opts Options
	mux  *http.ServeMux
}

// Handler returns the handler for the browser client with default options.
func Handler() http.Handler { return New(Options{}) }

// New builds the browser client. It claims "/" (the lobby), "/r/{room}"
// (the room page, the same for every room), "/static/" and "/favicon.ico";
// every other path answers the 404 page so that the server may mount it at
// "/" beside its own endpoints.
func New(opts Options) *Site {
	s, err := build(staticFS)
	if err != nil {
		// The files are embedded at compile time; failing here is a bug
		// in this package, caught by its tests.
		panic(fmt.Sprintf("web: %v", err))
	}
	st := &Site{s: s, opts: opts, mux: http.NewServeMux()}
	st.mux.Handle("/{$}", readOnly(func(w http.ResponseWriter, r *http.Request) { s.page(w, r, s.lobby) }))
	st.mux.Handle("/r/{room}", readOnly(st.roomPage))
	st.mux.Handle("/static/{file...}", readOnly(s.static))
	st.mux.Handle("/favicon.ico", readOnly(s.favicon))
	st.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		st.Error(w, r, http.StatusNotFound, "Page not found", "There is nothing at this address. Check the link, or start from the lobby.")
	})
	return st
}

func (st *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) { st.mux.ServeHTTP(w, r) }

// Static serves only the assets under /static/ and /favicon.ico, for a
// listener (plain HTTP) that shows /help/trust and nothing else of the app.
func (st *Site) Static() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/static/{file...}", readOnly(st.s.static))
	mux.Handle("/favicon.ico", readOnly(st.s.favicon))
	return mux
}

func (st *Site) roomPage(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("room"); st.opts.ValidRoom != nil && !st.opts.ValidRoom(id) {
		st.Error(w, r, http.StatusNotFound, "Not a room link",
			fmt.Sprintf("“%s” cannot be a room's name: room names are 1 to 64 letters, digits, “-” or “_”. Check the link you were sent.", id))
		return
	}
	st.s.page(w, r, st.s.room)
}

// errorPage is what error.html shows.
type errorPage struct {
	Status int
	Title  string
	Text   string
}

// Error answers status with an HTML page in the app's look that says
// title and text and links to the lobby.
func (st *Site) Error(w http.ResponseWriter, r *http.Request, status int, title, text string) {
	st.render(w, r, status, st.s.errTpl, errorPage{Status: status, Title: title, Text: text})
}

// Trust renders the /help/trust page (trust.html) with data, the server's
// certificate facts.
func (st *Site) Trust(w http.ResponseWriter, r *http.Request, data any) {
	st.render(w, r, http.StatusOK, st.s.trust, data)
}

func (st *Site) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		// The templates and their data are this program's; a failure
		// is a bug, told plainly rather than as half a page.
		http.Error(w, fmt.Sprintf("render %s: %v", t.Name(), err), http.StatusInternalServerError)
		return
	}
	setCommonHeaders(w)
	h := w.Header()
	h.Set("Content-Security-Policy", st.s.csp)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.Bytes())
	}
}

// readOnly answers 405 to anything but GET and HEAD.
func readOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			setCommonHeaders(w)
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	})
}

func build(fsys embed.FS) (*site, error) {
	sub, err := fs.Sub(fsys, "static")
	if err != nil {
		return nil, err
	}
	s := &site{assets: map[string]*asset{}}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("static/%s: no content type for %q", p, path.Ext(p))
		}
		s.assets[p] = newAsset(p, ct, body)
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Versioned URLs for every asset, and an import map so that the
	// modules' relative imports get the versioned URLs too.
	names := make([]string, 0, len(s.assets))
	for n := range s.assets {
		names = append(names, n)
	}
	sort.Strings(names)
	imports := map[string]string{}
	var pairs []string
	for _, n := range names {
		a := s.assets[n]
		u := "/static/" + n
		pairs = append(pairs, `"`+u+`"`, `"`+u+"?v="+a.ver+`"`)
		if strings.HasSuffix(n, ".js") {
			imports[u] = u + "?v=" + a.ver
		}
	}
	im, err := json.Marshal(map[string]any{"imports": imports})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(im)
	s.csp = strings.Join([]string{
		"default-src 'self'",
		"script-src 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'",
		"style-src 'self'",
		"img-src 'self' data: blob:",
		"media-src 'self' blob: mediastream: https: http:", // shared videos may come from anywhere
		"connect-src 'self' ws: wss:",
		"worker-src 'self' blob:",
		"frame-ancestors 'none'",
		"base-uri 'none'",
		"form-action 'self'",
	}, "; ")
	versioned := strings.NewReplacer(pairs...)
	importMap := `<script type="importmap">` + string(im) + `</script>`

	page := func(name string) (*asset, error) {
		a, ok := s.assets[name]
		if !ok {
			return nil, fmt.Errorf("static/%s missing", name)
		}
		html := versioned.Replace(string(a.body))
		if !strings.Contains(html, "<!--importmap-->") {
			return nil, fmt.Errorf("static/%s: no <!--importmap--> placeholder", name)
		}
		html = strings.Replace(html, "<!--importmap-->", importMap, 1)
		return newAsset(name, a.ctype, []byte(html)), nil
	}
	if s.lobby, err = page("index.html"); err != nil {
		return nil, err
	}
	if s.room, err = page("room.html"); err != nil {
		return nil, err
	}
	tpl := func(name string) (*template.Template, error) {
		a, ok := s.assets[name]
		if !ok {
			return nil, fmt.Errorf("static/%s missing", name)
		}
		return template.New(name).Parse(versioned.Replace(string(a.body)))
	}
	if s.errTpl, err = tpl("error.html"); err != nil {
		return nil, err
	}
	if s.trust, err = tpl("trust.html"); err != nil {
		return nil, err
	}
	return s, nil
}

func newAsset(name, ctype string, body []byte) *asset {
	sum := sha256.Sum256(body)
	a := &asset{
		name:  name,
		ctype: ctype,
		body:  body,
		etag:  `"` + hex.EncodeToString(sum[:16]) + `"`,
		ver:   hex.EncodeToString(sum[:5]),
	}
	if len(body) > 512 && !strings.HasPrefix(ctype, "image/png") {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		if b.Len() < len(body)*9/10 {
			a.gz = b.Bytes()
		}
	}
	return a
}

func setCommonHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

// page serves one of the two HTML documents; they are small and always
// revalidated, so a new release is picked up at the next load.
func (s *site) page(w http.ResponseWriter, r *http.Request, a *asset) {
	setCommonHeaders(w)
	w.Header().Set("Content-Security-Policy", s.csp)
	w.Header().Set("Cache-Control", "no-cache")
	serve(w, r, a)
}

// favicon serves /favicon.ico, which browsers ask for on their own (and
// bookmarks and tab strips that ignore the SVG icon use).
func (s *site) favicon(w http.ResponseWriter, r *http.Request) {
	setCommonHeaders(w)
	w.Header().Set("Cache-Control", "public, max-age=86400")
	serve(w, r, s.assets["favicon.ico"])
}

func (s *site) static(w http.ResponseWriter, r *http.Request) {
	setCommonHeaders(w)
	a, ok := s.assets[r.PathValue("file")]
	if !ok || strings.HasSuffix(a.name, ".html") {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if v := r.URL.Query().Get("v"); v != "" && v == a.ver {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		// Unversioned (or stale-versioned) URLs are revalidated every
		// time; the ETag makes that a 304.
		w.Header().Set("Cache-Control", "no-cache")
	}
	serve(w, r, a)
}

func serve(w http.ResponseWriter, r *http.Request, a *asset) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	body, etag := a.body, a.etag
	if a.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			body = a.gz
			etag = strings.TrimSuffix(a.etag, `"`) + `-gz"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
