package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/room"
)

// The REST API under /api (docs/api.md). Handlers decode JSON into the
// room package's types, call the room manager and map its errors to HTTP
// statuses; every error is {"error":{"code","message"}}.

// partyConfig is the room manager's configuration.
func partyConfig(cfg config.Config, apiKey string, log *slog.Logger) room.Config {
	off := func(v float64) float64 { // 0 in the config means "no limit"
		if v == 0 {
			return -1
		}
		return v
	}
	addrRate := off(cfg.ChatAddrRate)
	if cfg.ChatRate == 0 { // no chat limit means none per person either
		addrRate = -1
	}
	history := cfg.ChatHistory
	if history == 0 {
		history = -1
	}
	retries := cfg.WebhookRetries
	if retries == 0 {
		retries = -1
	}
	secret := cfg.WebhookSecret
	if secret == "" {
		secret = apiKey
	}
	return room.Config{
		MaxPeers:  cfg.MaxPeers,
		OpenRooms: cfg.OpenRooms,
		Logger:    log,
		TokenKey:  room.DeriveTokenKey(apiKey),
		StorePath: filepath.Join(cfg.DataDir, "rooms.json"),
		MediaDir:  cfg.MediaDir,
		Webhook: room.WebhookConfig{
			URL:       cfg.WebhookURL,
			Secret:    []byte(secret),
			Retries:   retries,
			RetryBase: cfg.WebhookBackoff,
			Timeout:   cfg.WebhookTimeout,
			Queue:     cfg.WebhookQueue,
		},
		Chat: room.ChatConfig{
			History:       history,
			MaxLength:     cfg.ChatMaxLength,
			Rate:          off(cfg.ChatRate),
			Burst:         cfg.ChatBurst,
			AddrRate:      addrRate,
			AddrBurst:     cfg.ChatAddrBurst,
			ReactionRate:  off(cfg.ReactionRate),
			ReactionBurst: cfg.ReactionBurst,
		},
		Passwords: room.PasswordLimits{
			Conn:   cfg.PasswordFailsConn,
			Addr:   cfg.PasswordFailsAddr,
			Room:   cfg.PasswordFailsRoom,
			Window: cfg.PasswordFailWindow,
		},
		Sync: room.SyncConfig{
			NudgeThreshold: cfg.SyncNudgeThreshold,
			SeekThreshold:  cfg.SyncSeekThreshold,
			MaxNudge:       cfg.SyncMaxNudge,
			ReportInterval: cfg.SyncReportInterval,
			WaitTimeout:    cfg.SyncWaitTimeout,
			QueueMax:       cfg.QueueMax,
			SubtitleMax:    cfg.SubtitleMaxTracks,
		},
		Grace: cfg.ReconnectGrace,
	}
}

// apiRoutes are the API's routes; the OpenAPI document must describe
// each (a test checks).
var apiRoutes = []string{
	"POST /api/rooms",
	"GET /api/rooms",
	"GET /api/rooms/{id}",
	"PATCH /api/rooms/{id}",
	"DELETE /api/rooms/{id}",
	"POST /api/rooms/{id}/tokens",
	"POST /api/rooms/{id}/hls-url",
	"POST /api/rooms/{id}/participants/{identity}/kick",
	"POST /api/rooms/{id}/participants/{identity}/mute",
	"GET /api/media",
	"GET /api/openapi.json",
}

// APIRoutes lists the API's routes as "METHOD /path" patterns.
func APIRoutes() []string { return slices.Clone(apiRoutes) }

// mountAPI adds the REST API and the media folder to the routes.
func (s *Server) mountAPI() {
	admin := func(h http.HandlerFunc) http.Handler { return s.RequireAPIKey(h) }
	handlers := map[string]http.Handler{
		"POST /api/rooms":                                   admin(s.apiCreateRoom),
		"GET /api/rooms":                                    admin(s.apiListRooms),
		"GET /api/rooms/{id}":                               s.requireKeyOrToken(s.apiGetRoom),
		"PATCH /api/rooms/{id}":                             admin(s.apiUpdateRoom),
		"DELETE /api/rooms/{id}":                            admin(s.apiDeleteRoom),
		"POST /api/rooms/{id}/tokens":                       admin(s.apiMintToken),
		"POST /api/rooms/{id}/hls-url":                      s.requireKeyOrToken(s.apiHLSURL),
		"POST /api/rooms/{id}/participants/{identity}/kick": admin(s.apiKick),
		"POST /api/rooms/{id}/participants/{identity}/mute": admin(s.apiMute),
		"GET /api/media":                                    admin(s.apiMedia),
		"GET /api/openapi.json":                             http.HandlerFunc(s.apiOpenAPI),
	}
	for _, pattern := range apiRoutes {
		s.mux.Handle(pattern, noStore(handlers[pattern]))
	}
	s.mux.HandleFunc("/api/", s.apiNoRoute)
	s.mux.HandleFunc("GET /media/{path...}", s.serveMedia)
	// WHIP and WHEP accept join tokens too; a viewer's may not publish.
	s.SetTokenValidator(func(roomID, token string, publish bool) error {
		c, err := s.rooms.VerifyToken(roomID, token)
		if err != nil {
			return err
		}
		if publish && c.Role == room.RoleViewer {
			return errors.New("a viewer's token cannot publish")
		}
		return nil
	})
}

func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// writeAPIError is WriteJSONError with the offending field, when known:
// {"error":{"code","message","field"}}.
func writeAPIError(w http.ResponseWriter, status int, code, message, field string) {
	if field == "" {
		WriteJSONError(w, status, code, message)
		return
	}
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message, "field": field}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// apiFail answers err with its status.
func (s *Server) apiFail(w http.ResponseWriter, err error) {
	var re *room.Error
	if errors.As(err, &re) {
		field := ""
		if d, ok := re.Data.(map[string]any); ok {
			field, _ = d["field"].(string)
		}
		msg := strings.TrimPrefix(re.Message, "invalid params: ")
		switch re.Code {
		case room.CodeNotFound:
			writeAPIError(w, http.StatusNotFound, "not_found", msg, "")
			return
		case room.CodeInvalidParams:
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_field", msg, field)
			return
		case room.CodeConflict:
			writeAPIError(w, http.StatusConflict, "room_exists", msg, "id")
			return
		case room.CodeInvalidState:
			writeAPIError(w, http.StatusConflict, "invalid_state", msg, "")
			return
		case room.CodeForbidden:
			writeAPIError(w, http.StatusForbidden, "forbidden", msg, "")
			return
		case room.CodeUnavailable: // cluster mode: Redis away
			writeAPIError(w, http.StatusServiceUnavailable, "cluster_unavailable", msg, "")
			return
		}
	}
	if errors.Is(err, room.ErrStore) {
		writeAPIError(w, http.StatusInsufficientStorage, "insufficient_storage", err.Error(), "")
		return
	}
	s.log.Error("api", "err", err)
	WriteJSONError(w, http.StatusInternalServerError, "internal", "internal error")
}

// bodyError is a request body the API refuses.
type bodyError struct {
	status      int
	code, field string
	msg         string
}

func (e *bodyError) Error() string { return e.msg }

// decodeBody reads a JSON object into v: 413 past the size limit, 400 for
// malformed JSON, 422 for an unknown field or a value of the wrong type
// (naming the field). An empty body is an empty object.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) *bodyError {
	limit := s.cfg.APIMaxBody
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &bodyError{http.StatusRequestEntityTooLarge, "body_too_large", "", "request body is larger than " + strconv.FormatInt(limit, 10) + " bytes"}
	case err != nil:
		return &bodyError{http.StatusBadRequest, "bad_request", "", "reading the body: " + err.Error()}
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		b = []byte("{}")
	}
	if !json.Valid(b) {
		return &bodyError{http.StatusBadRequest, "bad_json", "", "the body is not valid JSON"}
	}
	if b[0] != '{' {
		return &bodyError{http.StatusBadRequest, "bad_json", "", "the body must be a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return &bodyError{http.StatusUnprocessableEntity, "invalid_field", te.Field, strconv.Quote(te.Field) + " must be " + jsonKind(te.Type.String()) + ", not " + te.Value}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return &bodyError{http.StatusUnprocessableEntity, "invalid_field", f, "unknown field " + strconv.Quote(f)}
	}
	return &bodyError{http.StatusBadRequest, "bad_json", "", err.Error()}
}

func jsonKind(goType string) string {
	t := strings.TrimPrefix(goType, "*")
	switch {
	case t == "string":
		return "a string"
	case t == "bool":
		return "a boolean"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "float"), strings.HasPrefix(t, "uint"):
		return "a number"
	}
	return "an object"
}

func (s *Server) decodeOrFail(w http.ResponseWriter, r *http.Request, v any) bool {
	if be := s.decodeBody(w, r, v); be != nil {
		writeAPIError(w, be.status, be.code, be.msg, be.field)
		return false
	}
	return true
}

// baseURL is where browsers reach this server: --public-url, else
// https:// + the first LAN address + the HTTPS port, else the request's
// host.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	reqHost, reqPort, err := net.SplitHostPort(r.Host)
	if err != nil {
		reqHost, reqPort = r.Host, ""
	}
	port := reqPort
	if _, p, err := net.SplitHostPort(s.cfg.Addr); err == nil && p != "" && p != "0" {
		port = p
	}
	host := reqHost
	if addrs := s.lanAddrs(); len(addrs) > 0 {
		host = addrs[0].String()
	}
	if port == "" || port == "443" {
		return "https://" + hostForURL(host)
	}
	return "https://" + net.JoinHostPort(host, port)
}

func hostForURL(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

func (s *Server) joinURL(r *http.Request, id string) string {
	return s.baseURL(r) + "/r/" + url.PathEscape(id)
}

// apiRoom is a room as the API lists it; apiRoomDetail with its live
// state.
type apiRoom struct {
	room.RoomView
	URL string `json:"url"`
}

type apiRoomDetail struct {
	room.RoomDetail
	URL string `json:"url"`
}

func (s *Server) apiCreateRoom(w http.ResponseWriter, r *http.Request) {
	var spec room.RoomSpec
	if !s.decodeOrFail(w, r, &spec) {
		return
	}
	info, err := s.rooms.CreateRoom(spec)
	if err != nil {
		s.apiFail(w, err)
		return
	}
	w.Header().Set("Location", "/api/rooms/"+url.PathEscape(info.ID))
	writeJSON(w, http.StatusCreated, apiRoom{RoomView: room.RoomView{RoomInfo: info}, URL: s.joinURL(r, info.ID)})
}

func (s *Server) apiListRooms(w http.ResponseWriter, r *http.Request) {
	out := []apiRoom{}
	for _, rm := range s.rooms.Rooms() {
		out = append(out, apiRoom{RoomView: rm.Summary(), URL: s.joinURL(r, rm.ID())})
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": out})
}

func (s *Server) roomOr404(w http.ResponseWriter, r *http.Request) (*room.Room, bool) {
	id := r.PathValue("id")
	rm, ok := s.rooms.Room(id)
	if !ok {
		WriteJSONError(w, http.StatusNotFound, "not_found", "unknown room "+strconv.Quote(id))
	}
	return rm, ok
}

func (s *Server) apiGetRoom(w http.ResponseWriter, r *http.Request) {
	rm, ok := s.roomOr404(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, apiRoomDetail{RoomDetail: rm.Detail(), URL: s.joinURL(r, rm.ID())})
}

func (s *Server) apiUpdateRoom(w http.ResponseWriter, r *http.Request) {
	rm, ok := s.roomOr404(w, r)
	if !ok {
		return
	}
	var u room.RoomUpdate
	if !s.decodeOrFail(w, r, &u) {
		return
	}
	if _, err := s.rooms.UpdateRoom(rm.ID(), u); err != nil {
		s.apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, apiRoomDetail{RoomDetail: rm.Detail(), URL: s.joinURL(r, rm.ID())})
}

func (s *Server) apiDeleteRoom(w http.ResponseWriter, r *http.Request) {
	if err := s.rooms.DeleteRoom(r.PathValue("id")); err != nil {
		s.apiFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiMintToken(w http.ResponseWriter, r *http.Request) {
	rm, ok := s.roomOr404(w, r)
	if !ok {
		return
	}
	var p struct {
		Identity string `json:"identity"`
		Name     string `json:"name"`
		Role     string `json:"role"`
		TTL      *int64 `json:"ttl"`
	}
	if !s.decodeOrFail(w, r, &p) {
		return
	}
	spec := room.TokenSpec{Identity: p.Identity, Name: p.Name, Role: p.Role}
	if p.TTL != nil {
		max := int64(room.MaxTokenTTL / time.Second)
		if *p.TTL < 1 || *p.TTL > max {
			writeAPIError(w, http.StatusUnprocessableEntity, "invalid_field", `"ttl" must be 1-`+strconv.FormatInt(max, 10)+" seconds", "ttl")
			return
		}
		spec.TTL = time.Duration(*p.TTL) * time.Second
	}
	tok, claims, err := s.rooms.MintToken(rm.ID(), spec)
	if err != nil {
		s.apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Token     string    `json:"token"`
		URL       string    `json:"url"`
		Room      string    `json:"room"`
		Identity  string    `json:"identity"`
		Role      string    `json:"role"`
		ExpiresAt time.Time `json:"expiresAt"`
	}{tok, s.joinURL(r, rm.ID()) + "#token=" + tok, rm.ID(), claims.Identity, claims.Role, claims.ExpiresAt.UTC()})
}

func (s *Server) apiKick(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Reason string `json:"reason"`
	}
	if !s.decodeOrFail(w, r, &p) {
		return
	}
	if len(p.Reason) > 200 {
		writeAPIError(w, http.StatusUnprocessableEntity, "invalid_field", `"reason" must be at most 200 bytes`, "reason")
		return
	}
	if err := s.rooms.Kick(r.PathValue("id"), r.PathValue("identity"), p.Reason); err != nil {
		s.apiFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiMute(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Kind string `json:"kind"`
	}
	if !s.decodeOrFail(w, r, &p) {
		return
	}
	ids, err := s.rooms.Mute(r.PathValue("id"), r.PathValue("identity"), p.Kind)
	if err != nil {
		s.apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"producerIds": ids})
}

func (s *Server) apiMedia(w http.ResponseWriter, _ *http.Request) {
	lib := s.rooms.Media()
	if lib == nil {
		writeJSON(w, http.StatusOK, map[string]any{"enabled": false, "items": []room.MediaItem{}})
		return
	}
	items, err := lib.List()
	if err != nil {
		s.apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"enabled": true, "items": items})
}

// apiNoRoute answers paths under /api that no route matches: 405 when the
// path exists with other methods, else 404.
func (s *Server) apiNoRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/api/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+strings.Join(allow, ", "))
		return
	}
	WriteJSONError(w, http.StatusNotFound, "not_found", "no API endpoint "+r.Method+" "+r.URL.Path)
}

// requireKeyOrToken lets the API key through, or a join token for the
// room in the path; anything else is 401.
func (s *Server) requireKeyOrToken(h http.HandlerFunc) http.Handler {
	admin := s.RequireAPIKey(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := bearer(r)
		if strings.Count(got, ".") != 2 || got == s.apiKey {
			admin.ServeHTTP(w, r)
			return
		}
		if _, err := s.rooms.VerifyToken(r.PathValue("id"), got); err != nil {
			code := "token_invalid"
			var re *room.Error
			if errors.As(err, &re) {
				if d, ok := re.Data.(map[string]any); ok {
					code, _ = d["reason"].(string)
				}
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="matinee", error="invalid_token"`)
			WriteJSONError(w, http.StatusUnauthorized, code, err.Error())
			return
		}
		h(w, r)
	})
}
