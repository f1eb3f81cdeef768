package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/matinee-dev/matinee/recorder"
)

// mountRecordings creates the recorder and adds its routes: the admin API
// under /api/rooms/{id}/recordings, downloads under /recordings/, and the
// live HLS under /hls/{room}/ (its access rules are in hls.go).
func (s *Server) mountRecordings() {
	s.rec = &recordingState{ingests: map[string]*ingest{}}
	s.rec.mgr = recorder.NewManager(recorder.Config{
		Dir:           filepath.Join(s.cfg.DataDir, "recordings"),
		FFmpeg:        s.cfg.FFmpeg,
		MinFreeBytes:  uint64(max(s.cfg.RecordMinFreeMB, 1)) << 20,
		StopFreeBytes: uint64(max(s.cfg.RecordMinFreeMB/4, 1)) << 20,
		ReserveBytes:  int64(max(s.cfg.RecordReserveMB, 0)) << 20,
		Logger:        s.log,
	})
	s.SetRecordingsSource(s.rec.mgr.Active)
	admin := func(h http.HandlerFunc) http.Handler {
		return s.RequireAPIKey(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			h(w, r)
		}))
	}
	s.mux.Handle("POST /api/rooms/{id}/recordings", admin(s.startRecording))
	s.mux.Handle("GET /api/rooms/{id}/recordings", admin(s.listRecordings))
	s.mux.Handle("GET /api/rooms/{id}/recordings/{rid}", admin(s.getRecording))
	s.mux.Handle("DELETE /api/rooms/{id}/recordings/{rid}", admin(s.stopRecording))
	s.mux.Handle("GET /recordings/{room}/{rid}/{file...}", admin(s.downloadRecording))
	s.mux.HandleFunc("GET /hls/{room}/{file...}", s.serveLiveHLS)
	s.mountPlay()
}

// recordingState is the server's recorder and the files it plays into
// rooms.
type recordingState struct {
	mgr *recorder.Manager

	mu      sync.Mutex
	ingests map[string]*ingest
}

// Recordings returns the recording manager.
func (s *Server) Recordings() *recorder.Manager { return s.rec.mgr }

// closeRecordings finishes every recording (playlists get their
// #EXT-X-ENDLIST, FLV files their duration) and stops file playback,
// before the rooms close.
func (s *Server) closeRecordings() {
	if s.rec == nil {
		return
	}
	s.rec.mgr.Close()
	s.stopIngests()
}

// recordingRequest is the body of POST /api/rooms/{id}/recordings.
type recordingRequest struct {
	Formats   []string `json:"formats"`
	RTMP      []string `json:"rtmp"`
	Producers []string `json:"producers"`
	NoAudio   bool     `json:"noAudio"`
}

func (s *Server) startRecording(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req recordingRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		WriteJSONError(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body too large")
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			WriteJSONError(w, http.StatusBadRequest, "bad_json", "recording options: "+err.Error())
			return
		}
	}
	rm, ok := s.rooms.Room(id)
	if !ok {
		WriteJSONError(w, http.StatusNotFound, "not_found", "room "+id+" is not live (nobody is in it)")
		return
	}
	rec, err := s.rec.mgr.Start(id, rm.Media(), recorder.Options{Formats: req.Formats, RTMP: req.RTMP, Producers: req.Producers, NoAudio: req.NoAudio})
	switch {
	case errors.Is(err, recorder.ErrBadOptions):
		WriteJSONError(w, http.StatusUnprocessableEntity, "invalid_field", err.Error())
		return
	case errors.Is(err, recorder.ErrNoSpace):
		WriteJSONError(w, http.StatusInsufficientStorage, "no_space", err.Error())
		return
	case errors.Is(err, recorder.ErrNoFFmpeg):
		WriteJSONError(w, http.StatusServiceUnavailable, "ffmpeg_missing", err.Error())
		return
	case errors.Is(err, recorder.ErrClosed):
		WriteJSONError(w, http.StatusServiceUnavailable, "shutting_down", err.Error())
		return
	case err != nil:
		s.log.Error("start recording", "room", id, "err", err)
		WriteJSONError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	info := rec.Info()
	w.Header().Set("Location", "/api/rooms/"+id+"/recordings/"+info.ID)
	writeRecordingJSON(w, http.StatusCreated, info)
}

func (s *Server) listRecordings(w http.ResponseWriter, r *http.Request) {
	list, err := s.rec.mgr.List(r.PathValue("id"))
	if err != nil {
		WriteJSONError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeRecordingJSON(w, http.StatusOK, map[string]any{"recordings": list})
}

func (s *Server) getRecording(w http.ResponseWriter, r *http.Request) {
	info, err := s.rec.mgr.Get(r.PathValue("id"), r.PathValue("rid"))
	if err != nil {
		WriteJSONError(w, http.StatusNotFound, "not_found", "no recording "+r.PathValue("rid")+" in room "+r.PathValue("id"))
		return
	}
	writeRecordingJSON(w, http.StatusOK, info)
}

func (s *Server) stopRecording(w http.ResponseWriter, r *http.Request) {
	info, err := s.rec.mgr.Stop(r.PathValue("id"), r.PathValue("rid"))
	if err != nil {
		WriteJSONError(w, http.StatusNotFound, "not_found", "no recording "+r.PathValue("rid")+" in room "+r.PathValue("id"))
		return
	}
	writeRecordingJSON(w, http.StatusOK, info)
}

func (s *Server) downloadRecording(w http.ResponseWriter, r *http.Request) {
	room, id, name := r.PathValue("room"), r.PathValue("rid"), r.PathValue("file")
	if info, err := s.rec.mgr.Get(room, id); err != nil {
		WriteJSONError(w, http.StatusNotFound, "not_found", "no such recording")
		return
	} else if info.State == recorder.StateRecording {
		WriteJSONError(w, http.StatusConflict, "still_recording", "the recording is still running; stop it first (live HLS is at /hls/"+room+"/index.m3u8)")
		return
	}
	f, err := s.rec.mgr.Open(room, id, name)
	if err != nil {
		WriteJSONError(w, http.StatusNotFound, "not_found", "no such file")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		WriteJSONError(w, http.StatusNotFound, "not_found", "no such file")
		return
	}
	if ct := recorder.ContentType(name); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	if path.Ext(name) == ".flv" {
		w.Header().Set("Content-Disposition", `attachment; filename="`+room+"-"+id+`.flv"`)
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

func writeRecordingJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
