package server

import (
	"net/http"
	"path"
	"path/filepath"

	"github.com/matinee-dev/matinee/recorder"
	"github.com/matinee-dev/matinee/rest"
)

// mountRecordings creates the recorder and adds its routes outside the
// REST API: downloads under /recordings/ (with the API key) and the live
// HLS under /hls/{room}/ (its access rules are in hls.go). Its REST routes
// are package rest's.
func (s *Server) mountRecordings() {
	s.rec = &recordingState{}
	s.rec.mgr = recorder.NewManager(recorder.Config{
		Dir:           filepath.Join(s.cfg.DataDir, "recordings"),
		FFmpeg:        s.cfg.FFmpeg,
		MinFreeBytes:  uint64(max(s.cfg.RecordMinFreeMB, 1)) << 20,
		StopFreeBytes: uint64(max(s.cfg.RecordMinFreeMB/4, 1)) << 20,
		ReserveBytes:  int64(max(s.cfg.RecordReserveMB, 0)) << 20,
		Logger:        s.log,
	})
	s.SetRecordingsSource(s.rec.mgr.Active)
	s.mux.Handle("GET /recordings/{room}/{rid}/{file...}", rest.RequireKey(s.apiKey, http.HandlerFunc(s.downloadRecording)))
	s.mux.HandleFunc("GET /hls/{room}/{file...}", s.serveLiveHLS)
}

// recordingState is the server's recorder.
type recordingState struct {
	mgr *recorder.Manager
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
	s.ingests.StopFiles()
}

func (s *Server) downloadRecording(w http.ResponseWriter, r *http.Request) {
	room, id, name := r.PathValue("room"), r.PathValue("rid"), r.PathValue("file")
	w.Header().Set("Cache-Control", "no-store")
	if info, err := s.rec.mgr.Get(room, id); err != nil {
		rest.WriteError(w, rest.NotFound("no such recording"))
		return
	} else if info.State == recorder.StateRecording {
		rest.WriteError(w, &rest.Error{Status: http.StatusConflict, Code: "still_recording", Message: "the recording is still running; stop it first (live HLS is at /hls/" + room + "/index.m3u8)"})
		return
	}
	f, err := s.rec.mgr.Open(room, id, name)
	if err != nil {
		rest.WriteError(w, rest.NotFound("no such file"))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		rest.WriteError(w, rest.NotFound("no such file"))
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
