package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/matinee-dev/matinee/recorder/play"
	"github.com/matinee-dev/matinee/recorder/transcode"
	"github.com/matinee-dev/matinee/room"
)

// ingest is media streamed into a room: by a remote ffmpeg (matinee play)
// or by one the server runs on a file of its media folder.
type ingest struct {
	in     *room.Ingest
	cancel context.CancelFunc
	done   chan struct{} // the server's ffmpeg has exited (nil: remote)
}

func (s *Server) mountPlay() {
	s.mux.Handle("POST /api/rooms/{id}/ingests", s.adminOrHost(s.startIngest))
	s.mux.Handle("DELETE /api/rooms/{id}/ingests/{iid}", s.adminOrHost(s.stopIngest))
}

// adminOrHost lets through the API key (admin true) or a host's join
// token for the room in the path (admin false); anything else is 401.
func (s *Server) adminOrHost(h func(w http.ResponseWriter, r *http.Request, admin bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		got := bearer(r)
		if got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.apiKey)) == 1 {
			h(w, r, true)
			return
		}
		if got != "" && strings.Count(got, ".") == 2 {
			c, err := s.rooms.VerifyToken(r.PathValue("id"), got)
			if err == nil && c.Role == room.RoleHost {
				h(w, r, false)
				return
			}
			if err == nil {
				WriteJSONError(w, http.StatusForbidden, "forbidden", "only a host's token (or the API key) may manage ingests")
				return
			}
		}
		s.RequireAPIKey(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, true) })).ServeHTTP(w, r)
	})
}

// ingestRequest is the body of POST /api/rooms/{id}/ingests. Without
// File the answer says where to send RTP (what `matinee play` does); with
// File the server plays that file of its --media-dir itself.
type ingestRequest struct {
	// Type "rtmp" makes a stream key for RTMP publishers (rtmpin.go);
	// empty is plain RTP or a file.
	Type  string `json:"type"`
	Name  string `json:"name"`
	Video *bool  `json:"video"`
	Audio *bool  `json:"audio"`
	File  string `json:"file"`
	Loop  bool   `json:"loop"`
}

// IngestResponse answers POST /api/rooms/{id}/ingests.
type IngestResponse struct {
	ID        string          `json:"id"`
	Room      string          `json:"room"`
	Endpoints []room.Endpoint `json:"endpoints"`
	File      string          `json:"file,omitempty"`
}

func (s *Server) startIngest(w http.ResponseWriter, r *http.Request, admin bool) {
	id := r.PathValue("id")
	var req ingestRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		WriteJSONError(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body too large")
		return
	}
	if strings.TrimSpace(string(body)) != "" {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			WriteJSONError(w, http.StatusBadRequest, "bad_json", "ingest options: "+err.Error())
			return
		}
	}
	switch {
	case req.Type == "rtmp":
		s.newStreamKey(w, r, id)
		return
	case req.Type != "":
		WriteJSONError(w, http.StatusUnprocessableEntity, "invalid_field", "ingest type "+strconv.Quote(req.Type)+": want \"rtmp\", or none for plain RTP or a file")
		return
	case !admin:
		WriteJSONError(w, http.StatusForbidden, "forbidden", "a host may make RTMP ingests ({\"type\":\"rtmp\"}); plain RTP and files need the API key")
		return
	}
	opts := room.IngestOptions{Name: req.Name, Video: req.Video == nil || *req.Video, Audio: req.Audio == nil || *req.Audio, ListenIP: s.cfg.PlainListenIP}
	var src play.Source
	var file string
	if req.File != "" {
		file, src, err = s.mediaFile(r.Context(), req.File)
		if err != nil {
			WriteJSONError(w, http.StatusUnprocessableEntity, "invalid_field", err.Error())
			return
		}
		opts.Video = opts.Video && src.HasVideo
		opts.Audio = opts.Audio && src.HasAudio
		if opts.Name == "" {
			opts.Name = strings.TrimSuffix(filepath.Base(req.File), filepath.Ext(req.File))
		}
	}
	in, err := s.rooms.Ingest(id, opts)
	if err != nil {
		re, isRoom := room.AsError(err)
		if isRoom && re.Kind == room.KindNotFound {
			WriteJSONError(w, http.StatusNotFound, "not_found", re.Message)
			return
		}
		if isRoom {
			WriteJSONError(w, http.StatusConflict, "invalid_state", re.Message)
			return
		}
		s.log.Error("ingest", "room", id, "err", err)
		WriteJSONError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	ing := &ingest{in: in}
	if file != "" {
		if err := s.playFile(ing, file, src, req.Loop); err != nil {
			in.Close()
			WriteJSONError(w, http.StatusServiceUnavailable, "ffmpeg_missing", err.Error())
			return
		}
	}
	s.rec.mu.Lock()
	s.rec.ingests[in.PeerID()] = ing
	s.rec.mu.Unlock()
	go func() {
		<-in.Done()
		s.rec.mu.Lock()
		delete(s.rec.ingests, in.PeerID())
		s.rec.mu.Unlock()
		if ing.cancel != nil {
			ing.cancel()
		}
	}()
	writeRecordingJSON(w, http.StatusCreated, IngestResponse{ID: in.PeerID(), Room: id, Endpoints: in.Endpoints(), File: req.File})
}

// mediaFile resolves a name inside the media folder (never outside it)
// and probes it.
func (s *Server) mediaFile(ctx context.Context, name string) (string, play.Source, error) {
	if s.cfg.MediaDir == "" {
		return "", play.Source{}, errors.New("this server has no --media-dir to play files from")
	}
	root, err := os.OpenRoot(s.cfg.MediaDir)
	if err != nil {
		return "", play.Source{}, err
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		return "", play.Source{}, errors.New("no file " + name + " in the media folder")
	}
	f.Close()
	path := filepath.Join(s.cfg.MediaDir, filepath.FromSlash(name))
	src, err := play.Probe(ctx, s.cfg.FFmpeg, path)
	return path, src, err
}

// playFile runs ffmpeg sending file into the ingest until it ends (or
// loops until stopped).
func (s *Server) playFile(ing *ingest, file string, src play.Source, loop bool) error {
	ff, err := transcode.Find(s.cfg.FFmpeg)
	if err != nil {
		return err
	}
	var v, a *play.Target
	for _, e := range ing.in.Endpoints() {
		t := &play.Target{IP: e.IP, Port: e.Port, PayloadType: e.PayloadType, SSRC: e.SSRC}
		if e.Kind == "video" {
			v = t
		} else {
			a = t
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, ff, play.Args(file, src, v, a, play.Options{Loop: loop})...)
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		return err
	}
	ing.cancel = cancel
	ing.done = make(chan struct{})
	go func() {
		err := cmd.Wait()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("file playback ended", "file", file, "err", err)
		}
		close(ing.done)
		ing.in.Close()
	}()
	return nil
}

func (s *Server) stopIngest(w http.ResponseWriter, r *http.Request, admin bool) {
	if strings.HasPrefix(r.PathValue("iid"), streamKeyPrefix) {
		s.revokeStreamKey(w, r)
		return
	}
	if !admin {
		WriteJSONError(w, http.StatusForbidden, "forbidden", "a host may revoke RTMP stream keys; other ingests need the API key")
		return
	}
	s.rec.mu.Lock()
	ing := s.rec.ingests[r.PathValue("iid")]
	s.rec.mu.Unlock()
	if ing == nil || ing.in.Room() != r.PathValue("id") {
		WriteJSONError(w, http.StatusNotFound, "not_found", "no ingest "+r.PathValue("iid")+" in room "+r.PathValue("id"))
		return
	}
	s.endIngest(ing)
	writeRecordingJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) endIngest(ing *ingest) {
	if ing.cancel != nil {
		ing.cancel()
		<-ing.done
	}
	ing.in.Close()
}

// stopIngests ends every file playback (server shutdown).
func (s *Server) stopIngests() {
	s.rec.mu.Lock()
	all := make([]*ingest, 0, len(s.rec.ingests))
	for _, ing := range s.rec.ingests {
		all = append(all, ing)
	}
	s.rec.mu.Unlock()
	for _, ing := range all {
		s.endIngest(ing)
	}
}
