package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder"
	"github.com/matinee-dev/matinee/server"
)

// hlsGet fetches a live HLS URL, with a bearer when given, and returns
// the status, the body and the headers.
func hlsGet(t *testing.T, u, bearer string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := readAll(resp)
	return resp.StatusCode, body, resp.Header
}

// uris returns the URI lines of a playlist.
func uris(pl string) []string {
	var out []string
	for _, l := range strings.Split(pl, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// TestLiveHLSAccess: the live HLS of a room that is not public needs a
// credential, as WHEP does: nothing → 401; a join token (query or
// header) or a signed URL → 200, and the playlists carry a query
// credential on to variant playlists and segments, so ffprobe reads the
// stream from the signed URL alone; an expired or altered signature, a
// token for another room and the API key in a URL are refused; once the
// room is marked publicHLS, no credential is needed.
func TestLiveHLSAccess(t *testing.T) {
	srv := startHTTP(t, nil)
	base, key := srv.base, srv.APIKey()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ana := startSharer(t, ctx, srv.ws, "priv", "ana", newFlashBeep(t, 320, 180))
	startSharer(t, ctx, srv.ws, "other", "bo", newFlashBeep(t, 320, 180))
	var info recorder.Info
	if code := api(t, base, key, "POST", "/api/rooms/priv/recordings", `{"formats":["hls"]}`, &info); code != http.StatusCreated {
		t.Fatalf("start recording: %d", code)
	}
	waitRecording(t, base, key, "priv", info.ID, 30*time.Second, func(in recorder.Info) bool { return in.Duration > 5 })
	master := base + "/hls/priv/index.m3u8"
	media := base + "/hls/priv/v0/index.m3u8"
	seg := base + "/hls/priv/v0/seg-00000.ts"

	// No credential.
	for _, u := range []string{master, media, seg} {
		if st, body, h := hlsGet(t, u, ""); st != 401 || !strings.Contains(body, `"unauthorized"`) || h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s without a credential: %d %s", u, st, body)
		}
	}

	// A join token (a viewer's) in the query string: the playlists pass
	// it on.
	var tok struct {
		Token string `json:"token"`
	}
	if code := api(t, base, key, "POST", "/api/rooms/priv/tokens", `{"role":"viewer"}`, &tok); code != 201 {
		t.Fatalf("mint token: %d", code)
	}
	q := "?token=" + url.QueryEscape(tok.Token)
	st, body, _ := hlsGet(t, master+q, "")
	if st != 200 || len(uris(body)) == 0 {
		t.Fatalf("master with a token: %d\n%s", st, body)
	}
	for _, u := range uris(body) {
		if !strings.HasSuffix(u, q) {
			t.Errorf("master URI %q lacks the token", u)
		}
	}
	st, body, _ = hlsGet(t, media+q, "")
	if st != 200 || len(uris(body)) == 0 {
		t.Fatalf("media playlist with a token: %d\n%s", st, body)
	}
	for _, u := range uris(body) {
		if !strings.HasSuffix(u, q) {
			t.Errorf("media URI %q lacks the token", u)
		}
	}
	if st, _, h := hlsGet(t, base+"/hls/priv/v0/"+uris(body)[0], ""); st != 200 || h.Get("Content-Type") != "video/mp2t" {
		t.Errorf("segment with a token: %d %v", st, h)
	}
	// The same token as a header: no rewriting, private caching.
	if st, body, h := hlsGet(t, master, tok.Token); st != 200 || strings.Contains(body, "token=") || !strings.HasPrefix(h.Get("Cache-Control"), "private") {
		t.Errorf("master with a bearer token: %d %q\n%s", st, h.Get("Cache-Control"), body)
	}
	if p := mediatest.ProbeFile(t, master+q); p.Video() == nil || p.Video().CodecName != "h264" {
		t.Errorf("ffprobe with a token: %+v", p)
	}

	// Refused credentials.
	var otherTok struct {
		Token string `json:"token"`
	}
	api(t, base, key, "POST", "/api/rooms/other/tokens", `{}`, &otherTok)
	if st, body, _ := hlsGet(t, master+"?token="+url.QueryEscape(otherTok.Token), ""); st != 401 || !strings.Contains(body, "token_other_room") {
		t.Errorf("token for another room: %d %s", st, body)
	}
	if st, body, _ := hlsGet(t, master+"?token="+url.QueryEscape(key), ""); st != 403 {
		t.Errorf("API key in a URL: %d %s", st, body)
	}
	if st, _, _ := hlsGet(t, master, key); st != 200 {
		t.Errorf("API key as bearer: %d", st)
	}

	// A signed URL, minted by the API, and read by ffprobe.
	var signed struct {
		URL       string    `json:"url"`
		Path      string    `json:"path"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	if code := api(t, base, key, "POST", "/api/rooms/priv/hls-url", `{"ttl":600}`, &signed); code != 200 {
		t.Fatalf("hls-url: %d", code)
	}
	if d := time.Until(signed.ExpiresAt); d < 590*time.Second || d > 601*time.Second || !strings.HasPrefix(signed.Path, "/hls/priv/index.m3u8?exp=") {
		t.Fatalf("signed URL %+v", signed)
	}
	if p := mediatest.ProbeFile(t, base+signed.Path); p.Video() == nil || p.Video().CodecName != "h264" {
		t.Errorf("ffprobe of the signed URL: %+v", p)
	}
	sq := signed.Path[strings.Index(signed.Path, "?"):]
	if st, body, _ := hlsGet(t, media+sq, ""); st != 200 || !strings.HasSuffix(uris(body)[0], sq) {
		t.Errorf("media playlist by signed URL: %d\n%s", st, body)
	}
	// A signed URL made offline with the documented formula.
	hk := server.DeriveHLSKey(key)
	sign := func(room string, exp int64) string {
		return "?exp=" + strconv.FormatInt(exp, 10) + "&sig=" + server.SignHLS(hk, room, exp)
	}
	future, past := time.Now().Add(time.Hour).Unix(), time.Now().Add(-time.Minute).Unix()
	if st, _, _ := hlsGet(t, seg+sign("priv", future), ""); st != 200 {
		t.Errorf("offline-signed URL: %d", st)
	}
	for name, c := range map[string]struct{ q, code string }{
		"expired":    {sign("priv", past), "url_expired"},
		"other room": {sign("other", future), "signature_invalid"},
		"altered":    {"?exp=" + strconv.FormatInt(future+1, 10) + sign("priv", future)[len("?exp=")+len(strconv.FormatInt(future, 10)):], "signature_invalid"},
		"no sig":     {"?exp=" + strconv.FormatInt(future, 10), "signature_invalid"},
	} {
		if st, body, _ := hlsGet(t, master+c.q, ""); st != 403 || !strings.Contains(body, c.code) {
			t.Errorf("%s signature: %d %s", name, st, body)
		}
	}
	// A join token may ask for a signed URL too (not past its expiry).
	var short struct {
		Token string `json:"token"`
	}
	api(t, base, key, "POST", "/api/rooms/priv/tokens", `{"role":"viewer","ttl":60}`, &short)
	if code := api(t, base, short.Token, "POST", "/api/rooms/priv/hls-url", `{"ttl":3600}`, &signed); code != 200 || time.Until(signed.ExpiresAt) > 61*time.Second {
		t.Errorf("hls-url with a join token: %d %+v", code, signed)
	}

	// Who may watch is the REST API's to say, not the host's.
	if err := ana.c.Call(ctx, "updateRoom", map[string]any{"publicHLS": true}, nil); err == nil || !strings.Contains(err.Error(), "REST API") {
		t.Errorf("a host made the live HLS public over the WebSocket: %v", err)
	}
	if st, _, _ := hlsGet(t, master, ""); st != 401 {
		t.Errorf("after the host's attempt: %d", st)
	}
	// A public room needs nothing.
	if code := api(t, base, key, "PATCH", "/api/rooms/priv", `{"publicHLS":true}`, nil); code != 200 {
		t.Fatalf("PATCH publicHLS: %d", code)
	}
	for _, u := range []string{master, media, seg} {
		if st, body, _ := hlsGet(t, u, ""); st != 200 {
			t.Errorf("%s of a public room: %d %s", u, st, body)
		}
	}
	if code := api(t, base, key, "DELETE", "/api/rooms/priv/recordings/"+info.ID, "", nil); code != 200 {
		t.Errorf("stop: %d", code)
	}
}
