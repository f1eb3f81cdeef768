package server

import (
	"errors"
	"net/http"
	"path"

	"github.com/matinee-dev/matinee/room"
)

// serveMedia serves a file of the media folder (--media-dir) at
// /media/{path}, with range requests, so players can seek.
func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request) {
	lib := s.rooms.Media()
	if lib == nil {
		http.Error(w, "no media folder on this server (--media-dir)", http.StatusNotFound)
		return
	}
	rel := r.PathValue("path")
	f, info, err := lib.Open(rel)
	if errors.Is(err, room.ErrNoMedia) {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if err != nil {
		s.log.Error("media", "path", rel, "err", err)
		http.Error(w, "media folder unavailable", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	typ, _ := room.MediaType(rel)
	h := w.Header()
	h.Set("Content-Type", typ)
	h.Set("X-Content-Type-Options", "nosniff")
	// Players revalidate (Last-Modified) rather than keep a stale copy
	// of a file that was replaced.
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, path.Base(rel), info.ModTime(), f)
}
