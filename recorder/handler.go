package recorder

import (
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ContentType returns the MIME type of a recording's file by its name.
func ContentType(name string) string {
	switch path.Ext(name) {
	case ".m3u8":
		return "application/vnd.apple.mpegurl"
	case ".ts":
		return "video/mp2t"
	case ".flv":
		return "video/x-flv"
	}
	return ""
}

// LiveHLSHandler serves the HLS of the room being recorded: the path
// values named roomKey and fileKey give the room and the file
// ("index.m3u8", "v0/index.m3u8", "v0/seg-00001.ts"). Playlists are sent
// with Cache-Control: no-cache (they change); segments never change once
// listed, so they may be cached for a day: a CDN or nginx in front can
// serve any number of viewers.
func LiveHLSHandler(m *Manager, roomKey, fileKey string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, name := r.PathValue(roomKey), r.PathValue(fileKey)
		ct := ContentType(name)
		if ct == "" || ct == "video/x-flv" {
			http.NotFound(w, r)
			return
		}
		dir, ok := m.LiveHLS(room)
		if !ok {
			http.Error(w, "room "+room+" is not being recorded to HLS", http.StatusNotFound)
			return
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer root.Close()
		f, err := root.Open(filepath.FromSlash(name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || fi.IsDir() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if strings.HasSuffix(name, ".m3u8") {
			w.Header().Set("Cache-Control", "no-cache")
		} else {
			w.Header().Set("Cache-Control", "public, max-age=86400, immutable")
		}
		http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
	})
}
