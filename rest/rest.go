// Package rest is Matinee's REST API under /api (docs/api.md): one route
// table (routes.go) from which come the routes served, who may call each,
// and the OpenAPI document at /api/openapi.json; one body decoder with
// one size limit (--api-max-body), one JSON writer, one error shape and
// one mapping of failures to HTTP statuses (errors.go). Handlers decode
// into the room package's types, call the room manager or the recorder,
// and answer.
package rest

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/matinee-dev/matinee/recorder"
	"github.com/matinee-dev/matinee/room"
)

// Config is what the API needs from the server that wires it.
type Config struct {
	Rooms    *room.Manager
	Recorder *recorder.Manager
	// APIKey is the admin bearer key.
	APIKey string
	// MaxBody is the largest request body in bytes (--api-max-body).
	MaxBody int64
	// BaseURL is where browsers reach the server (join links).
	BaseURL func(r *http.Request) string
	// SignHLS signs a room's live HLS URL valid until exp (Unix seconds).
	SignHLS func(roomID string, exp int64) string
	// Ingests runs plain-RTP and file ingests; RTMP is the RTMP server,
	// for stream keys.
	Ingests Ingests
	RTMP    RTMP
	Logger  *slog.Logger
	// Extra routes the server adds to the table (documented and served
	// like the others).
	Extra []Route
}

// API is the REST API, ready to mount.
type API struct {
	cfg    Config
	routes []Route
	mux    *http.ServeMux
}

// New builds the API from its configuration.
func New(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &API{cfg: cfg}
	a.routes = append(a.table(), cfg.Extra...)
	return a
}

// Routes returns the route table.
func (a *API) Routes() []Route { return append([]Route(nil), a.routes...) }

// Mount adds every route of the table to mux, and under /api/ a JSON 404
// (or 405 when the path exists with other methods) for the rest.
func (a *API) Mount(mux *http.ServeMux) {
	a.mux = mux
	for _, rt := range a.routes {
		mux.Handle(rt.Method+" "+rt.Path, noStore(a.authorize(rt.Auth, rt.Handler)))
	}
	mux.HandleFunc("/api/", a.noRoute)
}

func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// decode is Decode with the configured limit; false when it has answered.
func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if e := Decode(w, r, a.cfg.MaxBody, v); e != nil {
		WriteError(w, e)
		return false
	}
	return true
}

// fail answers err through the one mapping, logging what is a bug.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := toError(err)
	if !ok {
		a.cfg.Logger.Error("api", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	WriteError(w, e)
}

// noRoute answers paths under /api that no route matches: 405 when the
// path exists with other methods, else 404.
func (a *API) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := a.mux.Handler(probe); pattern != "/api/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteError(w, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: r.Method + " is not allowed here; use " + strings.Join(allow, ", ")})
		return
	}
	WriteError(w, NotFound("no API endpoint "+r.Method+" "+r.URL.Path))
}
