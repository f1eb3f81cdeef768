package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/room"
)

type playbackMsg struct {
	State  room.PlaybackState `json:"state"`
	Action string             `json:"action"`
	By     string             `json:"by"`
}

type queueMsg struct {
	Queue  []room.QueueItem `json:"queue"`
	Action string           `json:"action"`
	By     string           `json:"by"`
}

// nextState waits for m's next playbackState of action.
func nextState(t *testing.T, m *member, action string) (playbackMsg, float64) {
	t.Helper()
	var n playbackMsg
	raw := m.rec.next(t, "playbackState", func(p json.RawMessage) bool {
		return strings.Contains(string(p), `"action":"`+action+`"`)
	})
	at := nowMs()
	if err := json.Unmarshal(raw, &n); err != nil {
		t.Fatal(err)
	}
	return n, at
}

// The room ends a video on its own clock once it knows the duration
// (given with load, or reported by a player), tells everyone, and plays
// the next queued video; replay and "next" work from the ended state.
func TestPlaybackEndsAndQueue(t *testing.T) {
	e := startAPI(t, nil)
	h := joinParty(t, e.ws, map[string]any{"room": "fin", "name": "Host"})
	g := joinParty(t, e.ws, map[string]any{"room": "fin", "name": "Guest"})
	everyone := []*member{h, g}

	// A known duration: the room ends there, not before.
	var res struct {
		State room.PlaybackState `json:"state"`
	}
	h.call(t, "playback", map[string]any{"action": "load", "url": "/media/a.mp4", "duration": 0.4}, nil)
	h.call(t, "playback", map[string]any{"action": "play"}, &res)
	started := res.State.UpdatedAt
	for _, m := range everyone {
		n, at := nextState(t, m, "ended")
		s := n.State
		if !s.Ended || !s.Paused || s.Position != 0.4 || s.Duration != 0.4 || n.By != "" {
			t.Fatalf("ended state %+v by %q", s, n.By)
		}
		if s.UpdatedAt < started+400 || at < started+400 {
			t.Fatalf("ended %.0f ms after play (notified after %.0f ms), before the 400 ms duration", s.UpdatedAt-started, at-started)
		}
		t.Logf("a 400 ms video: ended on the server clock %.1f ms after play, notified after %.1f ms", s.UpdatedAt-started, at-started)
	}
	// Replay: play from an ended video starts it over.
	h.call(t, "playback", map[string]any{"action": "play"}, &res)
	if res.State.Ended || res.State.Paused || res.State.Position != 0 {
		t.Fatalf("replay %+v", res.State)
	}
	for _, m := range everyone {
		nextState(t, m, "ended")
	}

	// An unknown duration is learnt from a player's report of the
	// current video (not from a report about an older one).
	res.State = room.PlaybackState{}
	h.call(t, "playback", map[string]any{"action": "load", "url": "/media/b.mp4"}, &res)
	loaded := res.State.Version
	if res.State.Duration != 0 || res.State.Ended {
		t.Fatalf("load b %+v", res.State)
	}
	g.call(t, "playbackReport", map[string]any{"buffering": false, "version": loaded - 1, "duration": 99}, nil)
	g.call(t, "playbackReport", map[string]any{"buffering": false, "position": 0, "at": nowMs(), "version": loaded, "duration": 0.3}, nil)
	h.call(t, "playback", map[string]any{"action": "play"}, &res)
	if res.State.Duration != 0.3 {
		t.Fatalf("duration learnt: %+v", res.State)
	}
	for _, m := range everyone {
		if n, _ := nextState(t, m, "ended"); n.State.URL != "/media/b.mp4" || n.State.Position != 0.3 {
			t.Fatalf("b ended %+v", n.State)
		}
	}
	h.callErr(t, "playback", map[string]any{"action": "next"}, 1007, "queue is empty")
	h.callErr(t, "playback", map[string]any{"action": "load", "url": "/media/c.mp4", "duration": -1}, -32602, `"duration"`)

	// The queue: host adds (from the folder or a URL), everyone is told.
	var q struct {
		Queue []room.QueueItem `json:"queue"`
	}
	h.call(t, "queue", map[string]any{"action": "add", "url": "/media/c.mp4", "title": "C", "duration": 0.3}, &q)
	h.call(t, "queue", map[string]any{"action": "add", "url": "https://example.com/d.mp4"}, &q)
	h.call(t, "queue", map[string]any{"action": "add", "url": "/media/e.mp4"}, &q)
	if len(q.Queue) != 3 || q.Queue[0].URL != "/media/c.mp4" || q.Queue[0].AddedBy != h.res.PeerID || q.Queue[1].ID == q.Queue[0].ID {
		t.Fatalf("queue %+v", q.Queue)
	}
	var qm queueMsg
	_ = json.Unmarshal(g.rec.next(t, "queueUpdated", func(p json.RawMessage) bool { return strings.Contains(string(p), "e.mp4") }), &qm)
	if len(qm.Queue) != 3 || qm.Action != "add" || qm.By != h.res.PeerID {
		t.Fatalf("queueUpdated %+v", qm)
	}
	h.call(t, "queue", map[string]any{"action": "remove", "id": q.Queue[2].ID}, &q)
	if len(q.Queue) != 2 {
		t.Fatalf("after remove %+v", q.Queue)
	}
	g.callErr(t, "queue", map[string]any{"action": "add", "url": "/media/x.mp4"}, 1005, "only the host")
	// With open control, guests change the queue too.
	h.call(t, "updateRoom", map[string]any{"openControl": true}, nil)
	g.call(t, "queue", map[string]any{"action": "add", "url": "/media/x.mp4"}, &q)
	if len(q.Queue) != 3 || q.Queue[2].AddedBy != g.res.PeerID {
		t.Fatalf("guest's add %+v", q.Queue)
	}
	g.call(t, "queue", map[string]any{"action": "remove", "id": q.Queue[2].ID}, &q)
	h.call(t, "updateRoom", map[string]any{"openControl": false}, nil)
	h.callErr(t, "queue", map[string]any{"action": "add", "url": "javascript:x"}, -32602, `"url"`)
	h.callErr(t, "queue", map[string]any{"action": "remove", "id": "nope"}, -32602, `"id"`)
	h.callErr(t, "queue", map[string]any{"action": "shuffle"}, -32602, `"action"`)

	// A late joiner gets the queue with the state.
	var late struct {
		Queue    []room.QueueItem   `json:"queue"`
		Playback room.PlaybackState `json:"playback"`
	}
	conn := dial(t, e.ws, testpeer.Options{})
	lc := &member{c: conn, rec: record(conn)}
	lc.call(t, "join", map[string]any{"room": "fin", "name": "Late"}, &late)
	if len(late.Queue) != 2 || late.Queue[0].URL != "/media/c.mp4" || !late.Playback.Ended {
		t.Fatalf("late joiner: queue %+v playback %+v", late.Queue, late.Playback)
	}
	everyone = append(everyone, lc)

	// "Play next" from the ended state.
	h.call(t, "playback", map[string]any{"action": "next"}, &res)
	if res.State.URL != "/media/c.mp4" || res.State.Paused || res.State.Ended || res.State.Duration != 0.3 || res.State.Title != "C" {
		t.Fatalf("next %+v", res.State)
	}
	// At its end the room plays the next one by itself.
	for _, m := range everyone {
		nextState(t, m, "next") // c, by the host
		if n, _ := nextState(t, m, "ended"); n.State.URL != "/media/c.mp4" {
			t.Fatalf("ended %+v", n.State)
		}
		n, _ := nextState(t, m, "next")
		if n.State.URL != "https://example.com/d.mp4" || n.State.Paused || n.By != "" {
			t.Fatalf("auto next %+v by %q", n.State, n.By)
		}
		var qm queueMsg
		_ = json.Unmarshal(m.rec.next(t, "queueUpdated", func(p json.RawMessage) bool {
			return strings.Contains(string(p), `"queue":[]`)
		}), &qm)
		if qm.Action != "next" {
			t.Fatalf("queue after auto next %+v", qm)
		}
	}
	var detail struct {
		Queue    []room.QueueItem   `json:"queue"`
		Playback room.PlaybackState `json:"playback"`
	}
	e.ok("GET", "/api/rooms/fin", nil, 200, &detail)
	if detail.Queue == nil || len(detail.Queue) != 0 || detail.Playback.URL != "https://example.com/d.mp4" {
		t.Fatalf("API %+v", detail)
	}
}

// Subtitles beside a video are listed with it, SRT is served as WebVTT,
// and the host's pick is part of the playback state.
func TestMediaSubtitles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("film.mp4", "not really a film")
	write("film.en.vtt", "WEBVTT\n\n00:00.000 --> 00:01.000\nHello\n")
	write("film.fr.srt", "1\r\n00:00:00,500 --> 00:00:01,250\r\nBonjour & <i>salut</i>\r\n")
	write("film.srt", "not subtitles at all")
	write("other.srt", "1\n00:00:00,000 --> 00:00:01,000\nx\n")
	write(".film.de.srt", "1\n00:00:00,000 --> 00:00:01,000\nx\n")
	write("big.srt", "1\n00:00:00,000 --> 00:00:01,000\n"+strings.Repeat("x", 1100)+"\n")
	e := startAPI(t, func(c *config.Config) {
		c.MediaDir = dir
		c.SubtitleMaxBytes = 1024
		c.SubtitleMaxTracks = 3
	})
	var lib struct {
		Items []room.MediaItem `json:"items"`
	}
	e.ok("GET", "/api/media", nil, 200, &lib)
	if len(lib.Items) != 1 {
		t.Fatalf("library %+v", lib.Items)
	}
	subs := lib.Items[0].Subtitles
	want := []room.Subtitle{
		{URL: "/media/film.srt", Label: "Subtitles (srt)"},
		{URL: "/media/film.en.vtt", Label: "en", Lang: "en"},
		{URL: "/media/film.fr.srt", Label: "fr", Lang: "fr"},
	}
	if !slices.Equal(subs, want) {
		t.Fatalf("subtitles %+v, want %+v", subs, want)
	}
	get := func(path string) (int, string, string) {
		resp, err := e.client.Get(e.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if code, typ, body := get("/media/film.fr.srt"); code != 200 || typ != "text/vtt; charset=utf-8" || body != "WEBVTT\n\n00:00:00.500 --> 00:00:01.250\nBonjour &amp; <i>salut</i>\n" {
		t.Fatalf("srt as vtt: %d %s %q", code, typ, body)
	}
	if code, typ, _ := get("/media/film.en.vtt"); code != 200 || typ != "text/vtt; charset=utf-8" {
		t.Fatalf("vtt: %d %s", code, typ)
	}
	if code, _, body := get("/media/film.srt"); code != http.StatusUnprocessableEntity || !strings.Contains(body, "not a SubRip file") {
		t.Fatalf("bad srt: %d %q", code, body)
	}
	if code, _, _ := get("/media/.film.de.srt"); code != 404 {
		t.Fatalf("hidden srt: %d", code)
	}
	if code, _, body := get("/media/big.srt"); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "--subtitle-max-bytes") {
		t.Fatalf("srt over --subtitle-max-bytes: %d %q", code, body)
	}

	h := joinParty(t, e.ws, map[string]any{"room": "subs", "name": "Host"})
	g := joinParty(t, e.ws, map[string]any{"room": "subs", "name": "Guest"})
	var res struct {
		State room.PlaybackState `json:"state"`
	}
	h.callErr(t, "playback", map[string]any{"action": "load", "url": "/media/film.mp4", "subtitles": want, "subtitle": "/media/nope.vtt"}, -32602, `"subtitle"`)
	h.callErr(t, "playback", map[string]any{"action": "load", "url": "/media/film.mp4", "subtitles": []map[string]any{{"url": "javascript:1"}}}, -32602, `"subtitles[0].url"`)
	h.callErr(t, "playback", map[string]any{"action": "load", "url": "/media/film.mp4", "subtitles": append(slices.Clone(want), want[0])}, -32602, "at most 3 tracks")
	h.call(t, "playback", map[string]any{"action": "load", "url": "/media/film.mp4", "subtitles": want, "subtitle": "/media/film.fr.srt"}, &res)
	if res.State.Subtitle != "/media/film.fr.srt" || !slices.Equal(res.State.Subtitles, want) {
		t.Fatalf("load with subtitles %+v", res.State)
	}
	h.call(t, "playback", map[string]any{"action": "subtitle", "subtitle": "/media/film.en.vtt"}, nil)
	n, _ := nextState(t, g, "subtitle")
	if n.State.Subtitle != "/media/film.en.vtt" {
		t.Fatalf("subtitle pick %+v", n.State)
	}
	h.call(t, "playback", map[string]any{"action": "subtitle", "subtitle": ""}, &res)
	if res.State.Subtitle != "" {
		t.Fatalf("subtitles off %+v", res.State)
	}
	g.callErr(t, "playback", map[string]any{"action": "subtitle", "subtitle": ""}, 1005, "only the host")
	late := joinParty(t, e.ws, map[string]any{"room": "subs", "name": "Late"})
	if len(late.res.Playback.Subtitles) != 3 || late.res.Playback.Subtitle != "" {
		t.Fatalf("late joiner %+v", late.res.Playback)
	}
}
