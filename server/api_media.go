package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/matinee-dev/matinee/internal/srt"

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
	if strings.EqualFold(path.Ext(rel), ".srt") {
		s.serveSRT(w, r, rel, f, info)
		return
	}
	typ, _ := room.MediaType(rel)
	h := w.Header()
	h.Set("Content-Type", typ)
	h.Set("X-Content-Type-Options", "nosniff")
	// Players revalidate (Last-Modified) rather than keep a stale copy
	// of a file that was replaced.
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, path.Base(rel), info.ModTime(), f)
}

// serveSRT serves a SubRip file of the media folder converted to WebVTT,
// the only text track format browsers read.
func (s *Server) serveSRT(w http.ResponseWriter, r *http.Request, rel string, f *os.File, info fs.FileInfo) {
	if max := s.cfg.SubtitleMaxBytes; info.Size() > max {
		http.Error(w, fmt.Sprintf("subtitle file larger than %d bytes (--subtitle-max-bytes)", max), http.StatusRequestEntityTooLarge)
		return
	}
	b, err := io.ReadAll(io.LimitReader(f, s.cfg.SubtitleMaxBytes+1))
	if err != nil {
		s.log.Error("media: read subtitles", "path", rel, "err", err)
		http.Error(w, "media folder unavailable", http.StatusInternalServerError)
		return
	}
	vtt, err := srt.ToVTT(b)
	if err != nil {
		http.Error(w, fmt.Sprintf("%s: not a SubRip file: %v", path.Base(rel), err), http.StatusUnprocessableEntity)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/vtt; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, strings.TrimSuffix(path.Base(rel), path.Ext(rel))+".vtt", info.ModTime(), bytes.NewReader(vtt))
}
