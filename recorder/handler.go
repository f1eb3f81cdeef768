package recorder

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/matinee-dev/matinee/recorder/hls"
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

// LiveOptions says how ServeLiveHLS answers one request.
type LiveOptions struct {
	// Query, when set, is added to every URI in the playlists served
	// ("token=…" or "exp=…&sig=…"), so that a player that got the
	// playlist with a credential in its URL fetches the variant playlists
	// and segments with it too.
	Query string
	// Private marks the answer as for this client only (Cache-Control:
	// private): it was authorized by a header a shared cache does not key
	// on.
	Private bool
}

// ServeLiveHLS serves a file of the HLS of the room being recorded: name
// is "index.m3u8", "v0/index.m3u8", "v0/seg-00001.ts"... Playlists are
// sent with Cache-Control: no-cache (they change); segments never change
// once listed, so they may be cached for a day: a CDN or nginx in front
// can serve any number of viewers. The caller has checked access.
func ServeLiveHLS(m *Manager, w http.ResponseWriter, r *http.Request, room, name string, o LiveOptions) {
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
	scope := "public"
	if o.Private {
		scope = "private"
	}
	if !strings.HasSuffix(name, ".m3u8") {
		w.Header().Set("Cache-Control", scope+", max-age=86400, immutable")
		http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	if o.Private {
		w.Header().Set("Cache-Control", "private, no-cache")
	}
	if o.Query == "" {
		http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
		return
	}
	b, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		http.Error(w, "read playlist", http.StatusInternalServerError)
		return
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), bytes.NewReader(hls.AddQuery(b, o.Query)))
}
