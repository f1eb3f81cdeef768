// Package whip serves WHIP (RFC 9725) and WHEP: standard HTTP endpoints
// that let OBS, GStreamer, ffmpeg and other WebRTC tools publish into a
// room and watch its stage without Matinee's own client.
//
//	POST   /whip/{room}       application/sdp offer → 201, Location, answer
//	POST   /whep/{room}       same, to watch the room's stage
//	PATCH  <Location>         application/trickle-ice-sdpfrag: trickle ICE
//	DELETE <Location>         end the session
//	OPTIONS any of the above  CORS preflight
//
// A WHIP publisher is a member of the room like any other peer (the others
// see it join and publish); its tracks carry appData {"source":"screen"}
// unless ?source= says otherwise. A WHEP viewer is not a member: it
// watches the stage (room.StageViewer) and keeps its session when the stage
// changes — the SFU switches what its tracks carry without renegotiating.
package whip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/room"
	"github.com/pion/sdp/v3"
)

// Media types of the protocol.
const (
	ContentTypeSDP     = "application/sdp"
	ContentTypeSDPFrag = "application/trickle-ice-sdpfrag"
)

// maxBody bounds an offer or a trickle body.
const maxBody = 256 << 10

// Access is what a request asks for, given to Config.Authorize.
type Access struct {
	Room  string
	Token string // the bearer token, "" when none was sent
	// Publish is true for WHIP, false for WHEP.
	Publish bool
}

// Grant is what Authorize allows.
type Grant struct {
	// Admin is set when the token is the server's API key: the publisher
	// then joins as an administrator (no password, no lock). Otherwise the
	// token is handed to the room as a join token, which names the
	// publisher and its role.
	Admin bool
}

// ErrUnauthorized is what Authorize returns (possibly wrapped) to refuse
// a request: the answer is 401.
var ErrUnauthorized = errors.New("unauthorized")

// ICEServer is a STUN or TURN server announced to clients in Link headers.
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
}

// Config configures the endpoints.
type Config struct {
	Rooms *room.Manager
	// Authorize decides whether a request may publish or watch. Nil lets
	// everyone in.
	Authorize func(r *http.Request, a Access) (Grant, error)
	// ICEServers are announced with every new session.
	ICEServers []ICEServer
	// GatherTimeout bounds how long an answer waits for the SFU's ICE
	// candidates (default 5 s).
	GatherTimeout time.Duration
	// MaxViewers bounds the WHEP viewers of one room (0: none at all);
	// one more gets 503.
	MaxViewers int
	Logger     *slog.Logger
}

// Handler serves the endpoints and owns their sessions.
type Handler struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	// viewers counts each room's WHEP viewers, those still being set up
	// included, so that concurrent offers cannot overshoot MaxViewers.
	viewers map[string]int
	closed  bool
}

// session is one WHIP publisher or WHEP viewer.
type session struct {
	h     *Handler
	id    string
	room  string
	whep  bool
	start time.Time

	// patchMu orders PATCHes; etag names the current ICE session and
	// changes with each restart.
	patchMu sync.Mutex
	etag    string

	// WHIP
	member *room.Member
	// conn is the publisher's or the viewer's transport.
	conn *room.Connection
	// WHEP
	viewer *room.StageViewer

	once  sync.Once
	ended bool // guarded by h.mu
	// counted is set while the session holds one of its room's viewer
	// places; guarded by h.mu.
	counted bool
}

// reserveViewer takes one of the room's WHEP viewer places for s.
func (h *Handler) reserveViewer(s *session) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.viewers[s.room] >= h.cfg.MaxViewers {
		return false
	}
	h.viewers[s.room]++
	s.counted = true
	return true
}

// releaseViewer gives s's viewer place back, once.
func (h *Handler) releaseViewer(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.counted {
		return
	}
	s.counted = false
	if h.viewers[s.room]--; h.viewers[s.room] <= 0 {
		delete(h.viewers, s.room)
	}
}

// New returns a handler; mount it with Register.
func New(cfg Config) *Handler {
	if cfg.GatherTimeout <= 0 {
		cfg.GatherTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Handler{cfg: cfg, log: log, sessions: map[string]*session{}, viewers: map[string]int{}}
}

// Register mounts the endpoints on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	for _, p := range []string{"/whip/{room}", "/whep/{room}"} {
		mux.HandleFunc("POST "+p, h.post)
		mux.HandleFunc("OPTIONS "+p, h.preflight)
		mux.HandleFunc(p, notAllowed("POST, OPTIONS"))
		mux.HandleFunc("DELETE "+p+"/{session}", h.delete)
		mux.HandleFunc("PATCH "+p+"/{session}", h.patch)
		mux.HandleFunc("OPTIONS "+p+"/{session}", h.preflight)
		mux.HandleFunc(p+"/{session}", notAllowed("PATCH, DELETE, OPTIONS"))
	}
}

// notAllowed answers the methods the endpoints do not serve (rather than
// letting them fall through to the web client).
func notAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "allowed: "+allow)
	}
}

// Sessions returns how many publishers and viewers are connected through
// the endpoints.
func (h *Handler) Sessions() (whip, whep int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.sessions {
		if s.whep {
			whep++
		} else {
			whip++
		}
	}
	return whip, whep
}

// Close ends every session; later requests get 503.
func (h *Handler) Close() {
	h.mu.Lock()
	h.closed = true
	ss := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		ss = append(ss, s)
	}
	h.mu.Unlock()
	for _, s := range ss {
		s.end("server shutting down")
	}
}

// cors adds the headers every answer carries: the endpoints take bearer
// tokens, never cookies, so any origin may call them.
func cors(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", "*")
	hd.Set("Access-Control-Expose-Headers", "Location, Link, ETag, Accept-Patch, Accept-Post")
}

func (h *Handler) preflight(w http.ResponseWriter, r *http.Request) {
	cors(w)
	hd := w.Header()
	if r.PathValue("session") == "" {
		hd.Set("Allow", "POST, OPTIONS")
		hd.Set("Accept-Post", ContentTypeSDP)
		hd.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	} else {
		hd.Set("Allow", "PATCH, DELETE, OPTIONS")
		hd.Set("Accept-Patch", ContentTypeSDPFrag)
		hd.Set("Access-Control-Allow-Methods", "PATCH, DELETE, OPTIONS")
	}
	hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	hd.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// writeError answers with the API's one error shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	cors(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) string {
	v := r.Header.Get("Authorization")
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

// readBody checks the content type and reads a bounded body; on failure
// it has answered.
func readBody(w http.ResponseWriter, r *http.Request, want string) (string, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != want {
		w.Header().Set("Accept", want)
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("Content-Type must be %s", want))
		return "", false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", maxBody))
		} else {
			writeError(w, http.StatusBadRequest, "bad_request", "read body: "+err.Error())
		}
		return "", false
	}
	if len(b) == 0 {
		writeError(w, http.StatusBadRequest, "bad_sdp", "empty body")
		return "", false
	}
	return string(b), true
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request) {
	roomID := r.PathValue("room")
	publish := strings.HasPrefix(r.URL.Path, "/whip/")
	if !room.ValidID(roomID) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("room %q: ids are 1-64 characters of A-Z a-z 0-9 _ -", roomID))
		return
	}
	access := Access{Room: roomID, Token: bearer(r), Publish: publish}
	var grant Grant
	if h.cfg.Authorize != nil {
		g, err := h.cfg.Authorize(r, access)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="matinee"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", err.Error())
			return
		}
		grant = g
	}
	offer, ok := readBody(w, r, ContentTypeSDP)
	if !ok {
		return
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		writeError(w, http.StatusBadRequest, "bad_sdp", "malformed SDP offer: "+err.Error())
		return
	}
	if len(sd.MediaDescriptions) == 0 {
		writeError(w, http.StatusBadRequest, "bad_sdp", "the offer has no media section")
		return
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "server shutting down")
		return
	}
	s := &session{h: h, id: newSessionID(), room: roomID, whep: !publish, etag: `"` + newSessionID()[:16] + `"`, start: time.Now()}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.GatherTimeout)
	defer cancel()
	var answer string
	var err error
	if publish {
		joinToken := access.Token
		if grant.Admin {
			joinToken = ""
		}
		answer, err = h.startPublish(ctx, s, r, &sd, offer, joinToken)
	} else {
		if !h.reserveViewer(s) {
			msg := fmt.Sprintf("room %q has its %d WHEP viewers (--whep-max-viewers)", roomID, h.cfg.MaxViewers)
			if h.cfg.MaxViewers == 0 {
				msg = "WHEP is turned off on this server (--whep-max-viewers 0)"
			}
			writeError(w, http.StatusServiceUnavailable, "room_full", msg)
			return
		}
		answer, err = h.startView(ctx, s, offer)
	}
	if err != nil {
		h.releaseViewer(s)
		status, code := statusOf(err)
		writeError(w, status, code, err.Error())
		return
	}
	h.mu.Lock()
	if h.closed || s.ended {
		h.mu.Unlock()
		s.end("server shutting down")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "session ended before it started (server shutting down or connection closed)")
		return
	}
	h.sessions[s.id] = s
	h.mu.Unlock()
	kind := "whip"
	if s.whep {
		kind = "whep"
	}
	h.log.Info(kind+" session started", "room", roomID, "session", s.id, "remote", r.RemoteAddr)

	cors(w)
	hd := w.Header()
	hd.Set("Content-Type", ContentTypeSDP)
	hd.Set("Location", "/"+kind+"/"+roomID+"/"+s.id)
	hd.Set("ETag", s.etag)
	hd.Set("Accept-Patch", ContentTypeSDPFrag)
	for _, l := range linkHeaders(h.cfg.ICEServers) {
		hd.Add("Link", l)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// startPublish makes the publisher a room member and applies its offer.
func (h *Handler) startPublish(ctx context.Context, s *session, r *http.Request, sd *sdp.SessionDescription, offer, joinToken string) (string, error) {
	name := strings.TrimSpace(r.URL.Query().Get("name"))
	if name == "" {
		name = "WHIP"
	}
	src := r.URL.Query().Get("source")
	if src == "" {
		src = "screen"
	}
	mb, _, err := h.cfg.Rooms.Join(s.room, room.JoinOptions{Name: name, Token: joinToken, Admin: joinToken == ""}, memberNotifier{s})
	if err != nil {
		return "", err
	}
	s.member = mb
	tid, err := mb.CreateTransport("send")
	if err != nil {
		mb.Leave()
		return "", err
	}
	var tracks []room.TrackParams
	for _, md := range sd.MediaDescriptions {
		if k := md.MediaName.Media; k != "audio" && k != "video" {
			continue
		}
		if mid, ok := md.Attribute("mid"); ok {
			tracks = append(tracks, room.TrackParams{Mid: mid, AppData: map[string]any{"source": src}})
		}
	}
	if _, _, err := mb.Publish(tid, offer, tracks); err != nil {
		mb.Leave()
		return "", err
	}
	c, err := mb.Connection(tid)
	if err != nil {
		mb.Leave()
		return "", err
	}
	s.conn = c
	answer, err := c.LocalDescription(ctx)
	if err != nil {
		mb.Leave()
		return "", err
	}
	return answer, nil
}

// startView makes a viewer of the room's stage.
func (h *Handler) startView(ctx context.Context, s *session, offer string) (string, error) {
	rm, ok := h.cfg.Rooms.Watchable(s.room)
	if !ok {
		return "", &room.Error{Kind: room.KindNotFound, Message: fmt.Sprintf("room %q has no one in it", s.room)}
	}
	v, err := rm.NewStageViewer(room.StageViewerOptions{
		Owner:    "whep-" + s.id,
		OnFailed: func(reason string) { go s.end(reason) },
		OnClosed: func() { go s.end("connection closed") },
		Logger:   h.log.With("session", s.id),
	})
	if err != nil {
		return "", err
	}
	s.viewer = v
	answer, err := v.Answer(ctx, offer)
	if err != nil {
		v.Close()
		return "", err
	}
	s.conn = v.Connection()
	return answer, nil
}

// statusOf maps a failure to an HTTP status and error code.
func statusOf(err error) (int, string) {
	switch room.KindOf(err) {
	case room.KindNone:
	case room.KindNotFound:
		return http.StatusNotFound, "not_found"
	case room.KindRoomFull:
		return http.StatusServiceUnavailable, "room_full"
	case room.KindForbidden:
		return http.StatusForbidden, "forbidden"
	case room.KindBadSDP:
		return http.StatusBadRequest, "bad_sdp"
	case room.KindInvalidField:
		return http.StatusBadRequest, "bad_request"
	case room.KindUnavailable, room.KindMoved:
		// The cluster: Redis away, or the room's node changed between the
		// redirect and here; the client tries again.
		return http.StatusServiceUnavailable, "cluster_unavailable"
	default:
		return http.StatusConflict, "invalid_state"
	}
	switch {
	case errors.Is(err, room.ErrBadSDP):
		return http.StatusBadRequest, "bad_sdp"
	case errors.Is(err, room.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timeout"
	}
	return http.StatusInternalServerError, "internal"
}

// linkHeaders renders ICE servers as RFC 9725 Link header values.
func linkHeaders(servers []ICEServer) []string {
	var out []string
	for _, s := range servers {
		for _, u := range s.URLs {
			l := "<" + u + `>; rel="ice-server"`
			if s.Username != "" {
				l += fmt.Sprintf(`; username=%q; credential=%q; credential-type="password"`, s.Username, s.Credential)
			}
			out = append(out, l)
		}
	}
	return out
}

func (h *Handler) lookup(w http.ResponseWriter, r *http.Request) *session {
	h.mu.Lock()
	s := h.sessions[r.PathValue("session")]
	h.mu.Unlock()
	whep := strings.HasPrefix(r.URL.Path, "/whep/")
	if s == nil || s.room != r.PathValue("room") || s.whep != whep {
		writeError(w, http.StatusNotFound, "not_found", "no such session")
		return nil
	}
	return s
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	s := h.lookup(w, r)
	if s == nil {
		return
	}
	s.end("")
	cors(w)
	w.WriteHeader(http.StatusOK)
}

// patch applies trickled candidates. ICE restarts are not supported: per
// RFC 9725 a server that trickles but does not restart answers 422.
func (h *Handler) patch(w http.ResponseWriter, r *http.Request) {
	s := h.lookup(w, r)
	if s == nil {
		return
	}
	body, ok := readBody(w, r, ContentTypeSDPFrag)
	if !ok {
		return
	}
	f, err := parseSDPFrag(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_sdpfrag", err.Error())
		return
	}
	// One PATCH at a time per session: a restart changes the ICE session
	// the next trickle must name.
	s.patchMu.Lock()
	defer s.patchMu.Unlock()
	im := r.Header.Get("If-Match")
	if im != "" && im != "*" && im != s.etag {
		writeError(w, http.StatusPreconditionFailed, "precondition_failed", "If-Match does not name this ICE session")
		return
	}
	var restart *room.ICERestart
	if f.ufrag != "" && f.ufrag != s.conn.RemoteICEUfrag() {
		// New credentials: an ICE restart (RFC 9725 section 4.4), which
		// the client must ask for with If-Match: *.
		if im != "*" {
			writeError(w, http.StatusPreconditionRequired, "precondition_required", "an ICE restart (new ice-ufrag) needs If-Match: *")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.GatherTimeout)
		restart, err = s.conn.RestartICE(ctx, f.ufrag, f.pwd)
		cancel()
		if err != nil {
			status, code := statusOf(err)
			writeError(w, status, code, "ice restart: "+err.Error())
			return
		}
		s.etag = `"` + newSessionID()[:16] + `"`
		h.log.Info("ice restart", "room", s.room, "session", s.id, "whep", s.whep)
	}
	for _, c := range f.candidates {
		cand := &room.ICECandidate{Candidate: c.candidate}
		if c.mid != "" {
			mid := c.mid
			cand.SDPMid = &mid
		} else {
			var idx uint16
			cand.SDPMLineIndex = &idx
		}
		if f.ufrag != "" {
			u := f.ufrag
			cand.UsernameFragment = &u
		}
		if err := s.conn.AddICECandidate(cand); err != nil {
			writeError(w, http.StatusBadRequest, "bad_candidate", err.Error())
			return
		}
	}
	cors(w)
	if restart == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", ContentTypeSDPFrag)
	w.Header().Set("ETag", s.etag)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, restartFrag(restart))
}

// end closes the session once: the publisher leaves its room (the others
// see it go) or the viewer's connection closes.
func (s *session) end(reason string) {
	s.once.Do(func() {
		h := s.h
		h.mu.Lock()
		s.ended = true
		delete(h.sessions, s.id)
		h.mu.Unlock()
		h.releaseViewer(s)
		if s.member != nil {
			s.member.Leave()
		}
		if s.viewer != nil {
			s.viewer.Close()
		}
		h.log.Info("session ended", "room", s.room, "session", s.id, "whep", s.whep, "reason", reason, "duration", time.Since(s.start).Round(time.Millisecond))
	})
}

// memberNotifier stands in for a WebSocket: a WHIP client has no channel
// for the room's notifications, so they are dropped; being removed from
// the room ends the session.
type memberNotifier struct{ s *session }

func (memberNotifier) Notify(string, any) {}

func (n memberNotifier) Disconnect(reason string) { go n.s.end(reason) }

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
