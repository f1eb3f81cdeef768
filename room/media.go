package room

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// MediaLibrary is the folder of videos a host can pick from (--media-dir).
// Files are served at /media/{path}; nothing outside the folder, and no
// hidden file, is ever listed or opened.
type MediaLibrary struct {
	Dir string
	// MaxSubtitles is the most subtitles listed with one video (0: 20).
	MaxSubtitles int
}

// MediaItem is one playable file of the library.
type MediaItem struct {
	// Path is relative to the library, with forward slashes.
	Path string `json:"path"`
	// URL is where browsers fetch it (the playback state's url).
	URL      string    `json:"url"`
	Name     string    `json:"name"`
	Type     string    `json:"type"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
	// Subtitles are the WebVTT and SRT files beside the video named after
	// it: film.vtt, film.en.srt (language "en"), film.English.vtt.
	Subtitles []Subtitle `json:"subtitles"`
}

// mediaTypes are the files the library offers, by extension. HLS
// playlists are listed; their segments are only served.
var mediaTypes = map[string]string{
	".mp4":  "video/mp4",
	".m4v":  "video/mp4",
	".mov":  "video/quicktime",
	".webm": "video/webm",
	".ogv":  "video/ogg",
	".mkv":  "video/x-matroska",
	".m3u8": "application/vnd.apple.mpegurl",
}

// segmentTypes are served but not listed.
var segmentTypes = map[string]string{
	".ts":  "video/mp2t",
	".m4s": "video/iso.segment",
	".aac": "audio/aac",
	".vtt": "text/vtt; charset=utf-8",
	// SRT files are served converted to WebVTT (ServeMedia).
	".srt": "text/vtt; charset=utf-8",
}

// subtitleExts are the text tracks listed with the videos.
var subtitleExts = map[string]bool{".vtt": true, ".srt": true}

// MediaType returns the content type the library serves name with, and
// false for files it does not serve.
func MediaType(name string) (string, bool) {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := mediaTypes[ext]; ok {
		return t, true
	}
	t, ok := segmentTypes[ext]
	return t, ok
}

const (
	maxMediaDepth = 4
	maxMediaItems = 2000
)

// List returns the library's videos and playlists, sorted by path.
func (l *MediaLibrary) List() ([]MediaItem, error) {
	out := []MediaItem{}
	subs := subtitleIndex{}
	err := filepath.WalkDir(l.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == l.Dir {
				return err
			}
			return nil // an unreadable subfolder is skipped
		}
		rel, _ := filepath.Rel(l.Dir, p)
		rel = filepath.ToSlash(rel)
		if rel != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if rel != "." && strings.Count(rel, "/") >= maxMediaDepth-1 {
				return fs.SkipDir
			}
			return nil
		}
		ext := strings.ToLower(path.Ext(rel))
		if subtitleExts[ext] && d.Type().IsRegular() {
			subs.add(rel)
			return nil
		}
		typ, ok := mediaTypes[ext]
		if !ok || !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		out = append(out, MediaItem{Path: rel, URL: MediaURL(rel), Name: d.Name(), Type: typ, Size: info.Size(), Modified: info.ModTime().UTC().Truncate(time.Second)})
		if len(out) >= maxMediaItems {
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("media dir: %w", err)
	}
	slices.SortFunc(out, func(a, b MediaItem) int { return strings.Compare(a.Path, b.Path) })
	max := l.MaxSubtitles
	if max <= 0 {
		max = 20
	}
	for i := range out {
		out[i].Subtitles = subs.of(out[i].Path, max)
	}
	return out, nil
}

// subtitleIndex maps a video's path without extension to the subtitle
// files that may belong to it.
type subtitleIndex map[string][]Subtitle

// add files a subtitle under the stems it may belong to: "film.en.srt"
// to "film.en" (no language) and to "film" (language "en").
func (x subtitleIndex) add(rel string) {
	if len(x) >= maxMediaItems {
		return
	}
	stem := strings.TrimSuffix(rel, path.Ext(rel))
	url := MediaURL(rel)
	x[stem] = append(x[stem], Subtitle{URL: url, Label: subtitleLabel("", path.Ext(rel))})
	if i := strings.LastIndexByte(stem, '.'); i > strings.LastIndexByte(stem, '/') {
		tag := stem[i+1:]
		sub := Subtitle{URL: url, Label: subtitleLabel(tag, path.Ext(rel))}
		if isLangTag(tag) {
			sub.Lang = tag
		}
		x[stem[:i]] = append(x[stem[:i]], sub)
	}
}

// of returns the subtitles of a video, sorted by label.
func (x subtitleIndex) of(video string, max int) []Subtitle {
	subs := slices.Clone(x[strings.TrimSuffix(video, path.Ext(video))])
	if subs == nil {
		return []Subtitle{}
	}
	slices.SortFunc(subs, func(a, b Subtitle) int { return strings.Compare(a.Label, b.Label) })
	if len(subs) > max {
		subs = subs[:max]
	}
	return subs
}

func subtitleLabel(tag, ext string) string {
	if tag == "" {
		return "Subtitles (" + strings.TrimPrefix(strings.ToLower(ext), ".") + ")"
	}
	return tag
}

// isLangTag tells a short language tag ("en", "pt-BR") from a name.
func isLangTag(s string) bool {
	primary, region, _ := strings.Cut(s, "-")
	letters := func(s string) bool {
		return !strings.ContainsFunc(s, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') })
	}
	return len(primary) >= 2 && len(primary) <= 3 && letters(primary) && len(region) <= 4 && letters(region)
}

// MediaURL is the URL path a library file is served at.
func MediaURL(rel string) string {
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		parts[i] = pathEscape(p)
	}
	return "/media/" + strings.Join(parts, "/")
}

func pathEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// ErrNoMedia is returned by Open for anything that is not a servable
// file of the library.
var ErrNoMedia = errors.New("no such media file")

// Open opens a library file by its relative path (as in MediaItem.Path),
// refusing hidden files, unknown types and anything outside the folder
// (symbolic links included).
func (l *MediaLibrary) Open(rel string) (*os.File, fs.FileInfo, error) {
	if rel == "" || !fs.ValidPath(rel) {
		return nil, nil, ErrNoMedia
	}
	for _, part := range strings.Split(rel, "/") {
		if strings.HasPrefix(part, ".") {
			return nil, nil, ErrNoMedia
		}
	}
	if _, ok := MediaType(rel); !ok {
		return nil, nil, ErrNoMedia
	}
	root, err := os.OpenRoot(l.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("media dir: %w", err)
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		return nil, nil, ErrNoMedia
	}
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		f.Close()
		return nil, nil, ErrNoMedia
	}
	return f, info, nil
}
