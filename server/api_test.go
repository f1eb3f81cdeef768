package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/matinee-dev/matinee/server/servertest"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/room"
	"github.com/matinee-dev/matinee/server"
)

// apiEnv is a running server with its API base URL and key.
type apiEnv struct {
	t      *testing.T
	client *http.Client
	srv    *server.Server
	ws     string // /ws URL
	base   string // http://127.0.0.1:port
	key    string
	api    *servertest.Client
}

func startAPI(t *testing.T, edit func(*config.Config)) *apiEnv {
	t.Helper()
	s := servertest.Start(t, servertest.WithConfig(func(c *config.Config) {
		c.PublicURL = "https://tv.example:8443"
		if edit != nil {
			edit(c)
		}
	}))
	// A client of its own for the requests a test builds by hand.
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(client.CloseIdleConnections)
	return &apiEnv{t: t, client: client, srv: s.Server, ws: s.WS, base: s.URL, key: s.APIKey(), api: s.API(t)}
}

// do sends a request; body is a string (sent as is) or a value (JSON).
func (e *apiEnv) do(method, path, key string, body any) (int, http.Header, []byte) {
	e.t.Helper()
	return e.api.WithKey(key).Do(method, path, body)
}

// ok sends an admin request, requires status want and decodes into out.
func (e *apiEnv) ok(method, path string, body any, want int, out any) {
	e.t.Helper()
	st, _, b := e.do(method, path, e.key, body)
	if st != want {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, st, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// fails sends a request and checks the error status, code and message.
func (e *apiEnv) fails(method, path, key string, body any, status int, code, contains string) apiErr {
	e.t.Helper()
	st, h, b := e.do(method, path, key, body)
	var ae apiErr
	if err := json.Unmarshal(b, &ae); err != nil || ae.Error.Code == "" || ae.Error.Message == "" {
		e.t.Fatalf("%s %s: error body %q is not {\"error\":{\"code\",\"message\"}}", method, path, b)
	}
	if st != status || ae.Error.Code != code || !strings.Contains(ae.Error.Message, contains) {
		e.t.Fatalf("%s %s: %d %s, want %d %s containing %q", method, path, st, b, status, code, contains)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("%s %s: error Content-Type %q", method, path, ct)
	}
	return ae
}

type roomJSON struct {
	ID              string          `json:"id"`
	Name            string          `json:"name"`
	URL             string          `json:"url"`
	CreatedAt       time.Time       `json:"createdAt"`
	MaxPeers        int             `json:"maxPeers"`
	Peers           int             `json:"peers"`
	Locked          bool            `json:"locked"`
	HasPassword     bool            `json:"hasPassword"`
	OpenControl     bool            `json:"openControl"`
	WaitForEveryone bool            `json:"waitForEveryone"`
	Simulcast       bool            `json:"simulcast"`
	Persistent      bool            `json:"persistent"`
	Metadata        json.RawMessage `json:"metadata"`
	Participants    []struct {
		ID        string `json:"id"`
		Identity  string `json:"identity"`
		Name      string `json:"name"`
		Role      string `json:"role"`
		Buffering bool   `json:"buffering"`
		Producers []struct {
			ID      string         `json:"id"`
			Kind    string         `json:"kind"`
			AppData map[string]any `json:"appData"`
			Paused  bool           `json:"paused"`
		} `json:"producers"`
		Playback *struct {
			Position float64  `json:"position"`
			At       float64  `json:"at"`
			ErrorMs  *float64 `json:"errorMs"`
		} `json:"playback"`
	} `json:"participants"`
	Playback *room.PlaybackState `json:"playback"`
}

func TestAPIRoomLifecycle(t *testing.T) {
	e := startAPI(t, nil)
	var r roomJSON
	st, h, b := e.do("POST", "/api/rooms", e.key, map[string]any{"name": "Movie Night", "maxPeers": 8, "password": "pw", "metadata": map[string]any{"app": "x"}})
	if st != 201 {
		t.Fatalf("create: %d %s", st, b)
	}
	_ = json.Unmarshal(b, &r)
	if r.ID != "movie-night" || r.Name != "Movie Night" || r.MaxPeers != 8 || !r.HasPassword || !r.Persistent ||
		r.URL != "https://tv.example:8443/r/movie-night" || time.Since(r.CreatedAt) > time.Minute || string(r.Metadata) != `{"app":"x"}` {
		t.Fatalf("created %s", b)
	}
	if h.Get("Location") != "/api/rooms/movie-night" {
		t.Errorf("Location %q", h.Get("Location"))
	}
	if strings.Contains(string(b), "pw") {
		t.Fatalf("the password leaks: %s", b)
	}
	// The same name again: a fresh id.
	var r2 roomJSON
	e.ok("POST", "/api/rooms", map[string]any{"name": "Movie Night"}, 201, &r2)
	if r2.ID == r.ID || len(r2.ID) != 10 || r2.MaxPeers != 50 {
		t.Fatalf("second room %+v", r2)
	}

	// Someone joins: the list and the room show it.
	c := dial(t, e.ws, testpeer.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Call(ctx, "join", map[string]any{"room": "movie-night", "name": "Ana", "password": "pw"}, nil); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Rooms []roomJSON `json:"rooms"`
	}
	e.ok("GET", "/api/rooms", nil, 200, &list)
	if len(list.Rooms) != 2 || list.Rooms[0].ID != r2.ID && list.Rooms[1].ID != r2.ID {
		t.Fatalf("list %+v", list)
	}
	for _, lr := range list.Rooms {
		if lr.ID == "movie-night" && lr.Peers != 1 {
			t.Fatalf("peer count %d", lr.Peers)
		}
	}
	var got roomJSON
	e.ok("GET", "/api/rooms/movie-night", nil, 200, &got)
	if len(got.Participants) != 1 || got.Participants[0].Name != "Ana" || got.Participants[0].Role != "host" || got.Playback == nil || got.Participants[0].Producers == nil {
		t.Fatalf("room %+v", got)
	}

	// PATCH: what changes is told to the members.
	var patched roomJSON
	e.ok("PATCH", "/api/rooms/movie-night", map[string]any{"name": "Film", "locked": true, "password": "", "metadata": nil, "openControl": true}, 200, &patched)
	if patched.Name != "Film" || !patched.Locked || patched.HasPassword || string(patched.Metadata) != "{}" || !patched.OpenControl || patched.MaxPeers != 8 {
		t.Fatalf("patched %+v", patched)
	}
	ev, err := c.WaitEvent(ctx, "roomUpdated")
	if err != nil || !strings.Contains(string(ev.Params), `"locked":true`) {
		t.Fatalf("roomUpdated: %s %v", ev.Params, err)
	}

	// DELETE: the member is told and disconnected.
	e.ok("DELETE", "/api/rooms/movie-night", nil, 204, nil)
	ev, err = c.WaitEvent(ctx, "disconnected")
	if err != nil || !strings.Contains(string(ev.Params), "room deleted") {
		t.Fatalf("disconnected: %s %v", ev.Params, err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("socket stayed open after DELETE")
	}
	e.fails("GET", "/api/rooms/movie-night", e.key, nil, 404, "not_found", "movie-night")
}

// TestAPISimulcastSetting follows the room's simulcast switch from the
// REST API to what members see: the join result, roomUpdated, and the
// host's own updateRoom.
func TestAPISimulcastSetting(t *testing.T) {
	e := startAPI(t, nil)
	var on, off roomJSON
	e.ok("POST", "/api/rooms", map[string]any{"name": "Party"}, 201, &on)
	if !on.Simulcast {
		t.Fatalf("default room has simulcast off: %+v", on)
	}
	e.ok("POST", "/api/rooms", map[string]any{"name": "LAN", "simulcast": false}, 201, &off)
	if off.Simulcast || off.ID != "lan" {
		t.Fatalf("created with simulcast false: %+v", off)
	}
	var got roomJSON
	e.ok("GET", "/api/rooms/lan", nil, 200, &got)
	if got.Simulcast {
		t.Fatalf("GET shows simulcast on: %+v", got)
	}
	var list struct {
		Rooms []roomJSON `json:"rooms"`
	}
	e.ok("GET", "/api/rooms", nil, 200, &list)
	for _, r := range list.Rooms {
		if r.Simulcast != (r.ID == "party") {
			t.Fatalf("list: %s has simulcast %v", r.ID, r.Simulcast)
		}
	}
	e.fails("POST", "/api/rooms", e.key, `{"name":"x","simulcast":"no"}`, 422, "invalid_field", `"simulcast"`)
	e.fails("PATCH", "/api/rooms/lan", e.key, `{"simulcast":1}`, 422, "invalid_field", `"simulcast"`)

	// The browser learns the setting from the join result.
	h := joinParty(t, e.ws, map[string]any{"room": "lan", "name": "Host"})
	g := joinParty(t, e.ws, map[string]any{"room": "lan", "name": "Guest"})
	if h.res.RoomInfo.Simulcast || g.res.RoomInfo.Simulcast {
		t.Fatalf("join result: %+v", h.res.RoomInfo)
	}
	var patched roomJSON
	e.ok("PATCH", "/api/rooms/lan", map[string]any{"simulcast": true}, 200, &patched)
	if !patched.Simulcast || patched.Name != "LAN" || len(patched.Participants) != 2 {
		t.Fatalf("patched %+v", patched)
	}
	g.rec.next(t, "roomUpdated", func(p json.RawMessage) bool { return strings.Contains(string(p), `"simulcast":true`) })

	// Hosts switch it from the room too; guests may not.
	g.callErr(t, "updateRoom", map[string]any{"simulcast": false}, 1005, "only the host")
	var upd struct {
		Room room.RoomInfo `json:"room"`
	}
	h.call(t, "updateRoom", map[string]any{"simulcast": false}, &upd)
	if upd.Room.Simulcast {
		t.Fatalf("updateRoom answer %+v", upd.Room)
	}
	g.rec.next(t, "roomUpdated", func(p json.RawMessage) bool {
		return strings.Contains(string(p), `"simulcast":false`) && strings.Contains(string(p), h.res.PeerID)
	})
	e.ok("GET", "/api/rooms/lan", nil, 200, &got)
	if got.Simulcast {
		t.Fatalf("after the host's update: %+v", got)
	}
}

func TestAPIErrors(t *testing.T) {
	e := startAPI(t, func(c *config.Config) { c.APIMaxBody = 2048 })
	e.ok("POST", "/api/rooms", map[string]any{"name": "a", "id": "a"}, 201, nil)

	// 401 on every admin endpoint, without and with a wrong key.
	admin := [][2]string{
		{"POST", "/api/rooms"}, {"GET", "/api/rooms"}, {"GET", "/api/rooms/a"}, {"PATCH", "/api/rooms/a"},
		{"DELETE", "/api/rooms/a"}, {"POST", "/api/rooms/a/tokens"}, {"POST", "/api/rooms/a/participants/x/kick"},
		{"POST", "/api/rooms/a/participants/x/mute"}, {"GET", "/api/media"},
	}
	for _, a := range admin {
		e.fails(a[0], a[1], "", "{}", 401, "unauthorized", "Bearer")
		e.fails(a[0], a[1], "mk_wrong", "{}", 401, "unauthorized", "wrong API key")
	}

	// 400: malformed JSON, not an object.
	e.fails("POST", "/api/rooms", e.key, `{"name":`, 400, "bad_json", "not valid JSON")
	e.fails("POST", "/api/rooms", e.key, `["a"]`, 400, "bad_json", "object")
	e.fails("PATCH", "/api/rooms/a", e.key, `{"name":"x"} {}`, 400, "bad_json", "")
	e.fails("POST", "/api/rooms/a/tokens", e.key, `nope`, 400, "bad_json", "")

	// 400 and 413 on every endpoint with a body.
	big := `{"name":"` + strings.Repeat("x", 4096) + `"}`
	for _, p := range [][2]string{
		{"POST", "/api/rooms"}, {"PATCH", "/api/rooms/a"}, {"POST", "/api/rooms/a/tokens"},
		{"POST", "/api/rooms/a/participants/x/kick"}, {"POST", "/api/rooms/a/participants/x/mute"},
	} {
		e.fails(p[0], p[1], e.key, big, 413, "body_too_large", "2048")
		e.fails(p[0], p[1], e.key, `{"a":}`, 400, "bad_json", "")
	}

	// 422 naming the field.
	for _, c := range []struct {
		method, path, body, field string
	}{
		{"POST", "/api/rooms", `{}`, "name"},
		{"POST", "/api/rooms", `{"name":""}`, "name"},
		{"POST", "/api/rooms", `{"name":"x","maxPeers":0}`, "maxPeers"},
		{"POST", "/api/rooms", `{"name":"x","maxPeers":1001}`, "maxPeers"},
		{"POST", "/api/rooms", `{"name":"x","maxPeers":"ten"}`, "maxPeers"},
		{"POST", "/api/rooms", `{"name":"x","locked":"yes"}`, "locked"},
		{"POST", "/api/rooms", `{"name":"x","metadata":"str"}`, "metadata"},
		{"POST", "/api/rooms", `{"name":"x","id":"has space"}`, "id"},
		{"POST", "/api/rooms", `{"name":"x","colour":"red"}`, "colour"},
		{"POST", "/api/rooms", `{"name":"x","password":"` + strings.Repeat("p", 129) + `"}`, "password"},
		{"PATCH", "/api/rooms/a", `{"maxPeers":-1}`, "maxPeers"},
		{"PATCH", "/api/rooms/a", `{"name":"   "}`, "name"},
		{"PATCH", "/api/rooms/a", `{"id":"b"}`, "id"},
		{"POST", "/api/rooms/a/tokens", `{"role":"king"}`, "role"},
		{"POST", "/api/rooms/a/tokens", `{"ttl":0}`, "ttl"},
		{"POST", "/api/rooms/a/tokens", `{"ttl":99999999}`, "ttl"},
		{"POST", "/api/rooms/a/tokens", `{"ttl":"1h"}`, "ttl"},
		{"POST", "/api/rooms/a/tokens", `{"identity":"a/b"}`, "identity"},
		{"POST", "/api/rooms/a/tokens", `{"name":"` + strings.Repeat("n", 65) + `"}`, "name"},
		{"POST", "/api/rooms/a/participants/x/kick", `{"reason":"` + strings.Repeat("r", 201) + `"}`, "reason"},
	} {
		ae := e.fails(c.method, c.path, e.key, c.body, 422, "invalid_field", `"`+c.field+`"`)
		if ae.Error.Field != c.field {
			t.Errorf("%s %s: field %q, want %q", c.method, c.path, ae.Error.Field, c.field)
		}
	}

	// 409: an id that is taken.
	ae := e.fails("POST", "/api/rooms", e.key, `{"name":"b","id":"a"}`, 409, "room_exists", `"a"`)
	if ae.Error.Field != "id" {
		t.Errorf("409 field %q", ae.Error.Field)
	}

	// 404: unknown rooms, participants and endpoints.
	for _, a := range [][2]string{
		{"GET", "/api/rooms/zz"}, {"PATCH", "/api/rooms/zz"}, {"DELETE", "/api/rooms/zz"}, {"POST", "/api/rooms/zz/tokens"},
		{"POST", "/api/rooms/zz/participants/x/kick"}, {"POST", "/api/rooms/zz/participants/x/mute"},
	} {
		e.fails(a[0], a[1], e.key, "{}", 404, "not_found", "zz")
	}
	e.fails("POST", "/api/rooms/a/participants/ghost/kick", e.key, nil, 404, "not_found", "ghost")
	e.fails("POST", "/api/rooms/a/participants/ghost/mute", e.key, nil, 404, "not_found", "ghost")
	e.fails("GET", "/api/nothing", e.key, nil, 404, "not_found", "/api/nothing")
	// 405 for a path that exists with other methods.
	e.fails("PUT", "/api/rooms/a", e.key, "{}", 405, "method_not_allowed", "PATCH")
	e.fails("DELETE", "/api/rooms", e.key, nil, 405, "method_not_allowed", "POST")
	e.fails("POST", "/api/rooms/a/participants/x/wave", e.key, nil, 404, "not_found", "")
	e.fails("POST", "/api/rooms/a/participants/x/mute", e.key, `{"kind":"smell"}`, 404, "not_found", "x")
}

func TestAPIConcurrentCreate(t *testing.T) {
	e := startAPI(t, nil)
	const n = 100
	ids := make(chan string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", e.base+"/api/rooms", strings.NewReader(`{"name":"Same Name"}`))
			req.Header.Set("Authorization", "Bearer "+e.key)
			resp, err := e.client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var r roomJSON
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 201 {
				errs <- fmt.Errorf("status %d: %v", resp.StatusCode, err)
				return
			}
			ids <- r.ID
		}()
	}
	wg.Wait()
	close(ids)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] || !room.ValidID(id) {
			t.Fatalf("duplicate or invalid id %q", id)
		}
		seen[id] = true
	}
	if len(seen) != n || !seen["same-name"] {
		t.Fatalf("%d unique ids, same-name taken: %v", len(seen), seen["same-name"])
	}
	var list struct {
		Rooms []roomJSON `json:"rooms"`
	}
	e.ok("GET", "/api/rooms", nil, 200, &list)
	if len(list.Rooms) != n {
		t.Fatalf("listed %d rooms", len(list.Rooms))
	}
}

// mint signs a token like the server does, for the cases the API never
// mints (expired, tampered).
func mint(t *testing.T, apiKey string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(room.DeriveTokenKey(apiKey))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokensAtJoinAndAPI(t *testing.T) {
	e := startAPI(t, func(c *config.Config) { c.OpenRooms = false })
	e.ok("POST", "/api/rooms", map[string]any{"name": "Party", "password": "pw"}, 201, nil)
	e.ok("POST", "/api/rooms", map[string]any{"name": "Other"}, 201, nil)
	var tok struct {
		Token     string    `json:"token"`
		URL       string    `json:"url"`
		Identity  string    `json:"identity"`
		Role      string    `json:"role"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	e.ok("POST", "/api/rooms/party/tokens", map[string]any{"identity": "ana", "name": "Ana", "role": "viewer", "ttl": 600}, 201, &tok)
	if tok.URL != "https://tv.example:8443/r/party#token="+tok.Token || tok.Identity != "ana" || tok.Role != "viewer" ||
		tok.ExpiresAt.Sub(time.Now()) < 590*time.Second || tok.ExpiresAt.Sub(time.Now()) > 610*time.Second {
		t.Fatalf("token %+v", tok)
	}
	var dflt struct {
		Token    string `json:"token"`
		Identity string `json:"identity"`
		Role     string `json:"role"`
	}
	e.ok("POST", "/api/rooms/party/tokens", nil, 201, &dflt)
	if dflt.Role != "guest" || !strings.HasPrefix(dflt.Identity, "id-") {
		t.Fatalf("default token %+v", dflt)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A valid token: no password, identity, name and role from the token
	// (even as the first in the room, a viewer stays viewer).
	c := dial(t, e.ws, testpeer.Options{})
	var res struct {
		PeerID   string `json:"peerId"`
		Role     string `json:"role"`
		Identity string `json:"identity"`
		RoomInfo struct {
			Name string `json:"name"`
		} `json:"roomInfo"`
	}
	if err := c.Call(ctx, "join", map[string]any{"room": "party", "token": tok.Token}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Role != "viewer" || res.Identity != "ana" || res.RoomInfo.Name != "Party" {
		t.Fatalf("join with token: %+v", res)
	}
	var detail roomJSON
	e.ok("GET", "/api/rooms/party", nil, 200, &detail)
	if detail.Participants[0].Identity != "ana" || detail.Participants[0].Name != "Ana" {
		t.Fatalf("participant %+v", detail.Participants)
	}

	now := time.Now()
	bad := map[string]struct {
		token  string
		reason string
	}{
		"expired":       {mint(t, e.key, jwt.MapClaims{"iss": "matinee", "room": "party", "identity": "x", "role": "host", "exp": now.Add(-time.Minute).Unix()}), "token_expired"},
		"another room":  {mint(t, e.key, jwt.MapClaims{"iss": "matinee", "room": "other", "identity": "x", "role": "host", "exp": now.Add(time.Hour).Unix()}), "token_other_room"},
		"tampered":      {tamper(tok.Token), "token_invalid"},
		"wrong key":     {mint(t, "another-api-key", jwt.MapClaims{"iss": "matinee", "room": "party", "identity": "x", "role": "host", "exp": now.Add(time.Hour).Unix()}), "token_invalid"},
		"no expiry":     {mint(t, e.key, jwt.MapClaims{"iss": "matinee", "room": "party", "identity": "x", "role": "host"}), "token_invalid"},
		"garbage":       {"a.b.c", "token_invalid"},
		"unsigned none": {"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.Split(tok.Token, ".")[1] + ".", "token_invalid"},
	}
	for name, b := range bad {
		c := dial(t, e.ws, testpeer.Options{})
		err := c.Call(ctx, "join", map[string]any{"room": "party", "name": "Mallory", "token": b.token}, nil)
		var re *testpeer.RPCError
		if !errors.As(err, &re) || re.Code != 1005 {
			t.Errorf("%s token at join: %v, want 1005", name, err)
		}
		if name == "garbage" {
			continue // not JWT-shaped: the API takes it for a wrong key
		}
		// The same token as a bearer on the API: 401 with the reason.
		e.fails("GET", "/api/rooms/party", b.token, nil, 401, b.reason, "")
	}
	// The valid token reads its own room, not another, and no admin call.
	var mine roomJSON
	st, _, body := e.do("GET", "/api/rooms/party", tok.Token, nil)
	if st != 200 || json.Unmarshal(body, &mine) != nil || mine.ID != "party" {
		t.Fatalf("token GET own room: %d %s", st, body)
	}
	e.fails("GET", "/api/rooms/other", tok.Token, nil, 401, "token_other_room", "another room")
	e.fails("GET", "/api/rooms", tok.Token, nil, 401, "unauthorized", "wrong API key")
	e.fails("DELETE", "/api/rooms/party", tok.Token, nil, 401, "unauthorized", "")

	// Link joiners need the password; open rooms are off.
	for _, c := range []struct {
		params map[string]any
		code   int
		reason string
	}{
		{map[string]any{"room": "party", "name": "L"}, 1005, "password_required"},
		{map[string]any{"room": "party", "name": "L", "password": "nope"}, 1005, "wrong_password"},
		{map[string]any{"room": "nowhere", "name": "L"}, 1004, ""},
	} {
		r := dialRaw(t, e.ws)
		p, _ := json.Marshal(c.params)
		r.send(`{"jsonrpc":"2.0","id":1,"method":"join","params":` + string(p) + `}`)
		_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := r.conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Error struct {
				Code int `json:"code"`
				Data struct {
					Reason string `json:"reason"`
				} `json:"data"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &m) != nil || m.Error.Code != c.code || m.Error.Data.Reason != c.reason {
			t.Errorf("join %v: %s, want %d with reason %q", c.params, data, c.code, c.reason)
		}
	}
	lk := dial(t, e.ws, testpeer.Options{})
	if err := lk.Call(ctx, "join", map[string]any{"room": "party", "name": "L", "password": "pw"}, nil); err != nil {
		t.Fatal(err)
	}
}

// tamper changes the token's payload to claim the host role, keeping the
// signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	payload, _ := jwtSegment(parts[1])
	payload = bytes.Replace(payload, []byte(`"viewer"`), []byte(`"host"`), 1)
	return parts[0] + "." + encodeSegment(payload) + "." + parts[2]
}

func jwtSegment(s string) ([]byte, error) {
	return jwt.NewParser().DecodeSegment(s)
}

func encodeSegment(b []byte) string {
	return (&jwt.Token{}).EncodeSegment(b)
}

func TestAPIKickAndMute(t *testing.T) {
	e := startAPI(t, nil)
	e.ok("POST", "/api/rooms", map[string]any{"name": "km"}, 201, nil)
	var tok struct {
		Token string `json:"token"`
	}
	e.ok("POST", "/api/rooms/km/tokens", map[string]any{"identity": "bob", "name": "Bob"}, 201, &tok)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watcher := dial(t, e.ws, testpeer.Options{})
	if _, err := watcher.Join(ctx, "km", "watcher"); err != nil {
		t.Fatal(err)
	}
	bob := dial(t, e.ws, testpeer.Options{})
	if err := bob.Call(ctx, "join", map[string]any{"room": "km", "token": tok.Token}, nil); err != nil {
		t.Fatal(err)
	}
	src, err := testpeer.NewAudioSource("a", "s")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := bob.Publish(ctx, &testpeer.Track{Track: src.Track, AppData: map[string]any{"source": "mic"}})
	if err != nil {
		t.Fatal(err)
	}
	var mute struct {
		ProducerIDs []string `json:"producerIds"`
	}
	e.ok("POST", "/api/rooms/km/participants/bob/mute", nil, 200, &mute)
	if len(mute.ProducerIDs) != 1 || mute.ProducerIDs[0] != ps[0].ID {
		t.Fatalf("muted %v, want %s", mute.ProducerIDs, ps[0].ID)
	}
	if ev, err := bob.WaitEvent(ctx, "muted"); err != nil || !strings.Contains(string(ev.Params), ps[0].ID) {
		t.Fatalf("muted notice: %s %v", ev.Params, err)
	}
	if ev, err := watcher.WaitEvent(ctx, "producerPaused"); err != nil || !strings.Contains(string(ev.Params), ps[0].ID) {
		t.Fatalf("producerPaused: %s %v", ev.Params, err)
	}
	var detail roomJSON
	e.ok("GET", "/api/rooms/km", nil, 200, &detail)
	if p := detail.Participants[1]; p.Identity != "bob" || len(p.Producers) != 1 || !p.Producers[0].Paused || p.Producers[0].AppData["source"] != "mic" {
		t.Fatalf("bob in the room: %+v", p)
	}
	// Video: nothing to pause, an empty list.
	e.ok("POST", "/api/rooms/km/participants/bob/mute", map[string]any{"kind": "video"}, 200, &mute)
	if len(mute.ProducerIDs) != 0 {
		t.Fatalf("video mute %v", mute.ProducerIDs)
	}
	e.fails("POST", "/api/rooms/km/participants/bob/mute", e.key, `{"kind":"smell"}`, 422, "invalid_field", `"kind"`)

	e.ok("POST", "/api/rooms/km/participants/bob/kick", map[string]any{"reason": "bye"}, 204, nil)
	if ev, err := bob.WaitEvent(ctx, "disconnected"); err != nil || !strings.Contains(string(ev.Params), "bye") {
		t.Fatalf("kicked: %s %v", ev.Params, err)
	}
	if _, err := watcher.WaitEvent(ctx, "peerLeft"); err != nil {
		t.Fatal(err)
	}
	// Someone who joined by link is addressed by peer id.
	e.ok("POST", "/api/rooms/km/participants/"+watcher.PeerID+"/kick", nil, 204, nil)
	if _, err := watcher.WaitEvent(ctx, "disconnected"); err != nil {
		t.Fatal(err)
	}
}

func TestAPIRoomsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	mk := func() *apiEnv {
		return startAPI(t, func(c *config.Config) { c.DataDir = dir; c.OpenRooms = false })
	}
	e := mk()
	e.ok("POST", "/api/rooms", map[string]any{"name": "Kept", "maxPeers": 3}, 201, nil)
	var tok struct {
		Token string `json:"token"`
	}
	e.ok("POST", "/api/rooms/kept/tokens", map[string]any{"identity": "ana"}, 201, &tok)
	// An empty API room stays (open rooms off does not matter).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dial(t, e.ws, testpeer.Options{})
	if _, err := c.Join(ctx, "kept", "x"); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, "leave", nil, nil); err != nil {
		t.Fatal(err)
	}
	e.ok("GET", "/api/rooms/kept", nil, 200, nil)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	// The same data dir: same key, same room, the token still works.
	e2 := mk()
	if e2.key != e.key {
		t.Fatal("the API key changed across restarts")
	}
	var r roomJSON
	e2.ok("GET", "/api/rooms/kept", nil, 200, &r)
	if r.MaxPeers != 3 {
		t.Fatalf("restored %+v", r)
	}
	c2 := dial(t, e2.ws, testpeer.Options{})
	if err := c2.Call(ctx, "join", map[string]any{"room": "kept", "token": tok.Token, "name": "Ana"}, nil); err != nil {
		t.Fatalf("old token after restart: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "rooms.json")); err != nil || !strings.Contains(string(b), `"kept"`) {
		t.Fatalf("store: %s %v", b, err)
	}
}

func TestOpenAPIDocument(t *testing.T) {
	e := startAPI(t, nil)
	st, h, b := e.do("GET", "/api/openapi.json", "", nil)
	if st != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi: %d %v", st, h)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %v", err)
	}
	for _, route := range e.srv.APIRoutes() {
		method, path, _ := strings.Cut(route, " ")
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("%s is not in openapi.json", route)
		}
	}
	// And every documented operation is served (by a route of its own,
	// not the /api/ catch-all).
	mux, ok := e.srv.Handler().(*http.ServeMux)
	if !ok {
		t.Fatal("the handler is not a ServeMux")
	}
	fill := strings.NewReplacer("{id}", "some-room", "{identity}", "someone")
	for path, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			req := httptest.NewRequest(strings.ToUpper(m), fill.Replace(path), nil)
			if _, pattern := mux.Handler(req); pattern == "" || pattern == "/api/" || pattern == "/" {
				t.Errorf("openapi.json documents %s %s, which is not served (pattern %q)", m, path, pattern)
			}
		}
	}
}

func TestMediaFolder(t *testing.T) {
	dir := t.TempDir()
	film := make([]byte, 10000)
	for i := range film {
		film[i] = byte(i % 251)
	}
	if err := os.WriteFile(filepath.Join(dir, "film.mp4"), film, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".private.mp4"), film, 0o644); err != nil {
		t.Fatal(err)
	}
	e := startAPI(t, func(c *config.Config) { c.MediaDir = dir })
	var lib struct {
		Enabled bool             `json:"enabled"`
		Items   []room.MediaItem `json:"items"`
	}
	e.ok("GET", "/api/media", nil, 200, &lib)
	if !lib.Enabled || len(lib.Items) != 1 || lib.Items[0].URL != "/media/film.mp4" || lib.Items[0].Size != 10000 {
		t.Fatalf("library %+v", lib)
	}
	get := func(path string, hdr ...string) *http.Response {
		req, _ := http.NewRequest("GET", e.base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := get("/media/film.mp4", "Range", "bytes=100-199")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != "bytes 100-199/10000" || !bytes.Equal(body, film[100:200]) || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("range: %d %v %d bytes", resp.StatusCode, resp.Header, len(body))
	}
	resp = get("/media/film.mp4")
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || resp.Header.Get("Accept-Ranges") != "bytes" || len(body) != 10000 {
		t.Fatalf("whole file: %d %v", resp.StatusCode, resp.Header)
	}
	if r := get("/media/film.mp4", "Range", "bytes=20000-"); r.StatusCode != 416 {
		t.Fatalf("range past the end: %d", r.StatusCode)
	}
	for _, p := range []string{"/media/.private.mp4", "/media/..%2f..%2fetc%2fpasswd", "/media/missing.mp4", "/media/"} {
		if r := get(p); r.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, r.StatusCode)
		}
	}

	// The host lists the folder over the WebSocket; a guest may not.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	host := dial(t, e.ws, testpeer.Options{})
	if _, err := host.Join(ctx, "m", "host"); err != nil {
		t.Fatal(err)
	}
	var items struct {
		Items []room.MediaItem `json:"items"`
	}
	if err := host.Call(ctx, "mediaList", nil, &items); err != nil || len(items.Items) != 1 {
		t.Fatalf("mediaList: %+v %v", items, err)
	}
	guest := dial(t, e.ws, testpeer.Options{})
	if _, err := guest.Join(ctx, "m", "guest"); err != nil {
		t.Fatal(err)
	}
	var re *testpeer.RPCError
	if err := guest.Call(ctx, "mediaList", nil, nil); !errors.As(err, &re) || re.Code != 1005 {
		t.Fatalf("guest mediaList: %v", err)
	}

	// Without a media dir there is nothing to serve.
	e2 := startAPI(t, nil)
	e2.ok("GET", "/api/media", nil, 200, &lib)
	if lib.Enabled || len(lib.Items) != 0 {
		t.Fatalf("no media dir: %+v", lib)
	}
	st, _, _ := e2.do("GET", "/media/film.mp4", "", nil)
	if st != 404 {
		t.Fatalf("no media dir: %d", st)
	}
}

func TestWebhooksEndToEnd(t *testing.T) {
	type delivery struct {
		ev  room.WebhookEvent
		sig string
		ts  string
		raw []byte
	}
	got := make(chan delivery, 100)
	var fails sync.Map
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev room.WebhookEvent
		_ = json.Unmarshal(b, &ev)
		// Fail every first attempt: each event arrives on its retry.
		if _, again := fails.LoadOrStore(ev.ID, true); !again {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		got <- delivery{ev, r.Header.Get("X-Matinee-Signature"), r.Header.Get("X-Matinee-Timestamp"), b}
	}))
	t.Cleanup(hs.Close) // registered before start: closes after the server
	e := startAPI(t, func(c *config.Config) {
		c.WebhookURL = hs.URL
		c.WebhookRetries = 3
		c.WebhookBackoff = 20 * time.Millisecond
	})
	e.ok("POST", "/api/rooms", map[string]any{"name": "hooked"}, 201, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, e.ws, testpeer.Options{})
	if _, err := c.Join(ctx, "hooked", "Ana"); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, "leave", nil, nil); err != nil {
		t.Fatal(err)
	}
	e.ok("DELETE", "/api/rooms/hooked", nil, 204, nil)
	want := []string{"room.created", "room.started", "participant.joined", "participant.left", "room.finished", "room.deleted"}
	for i, w := range want {
		select {
		case d := <-got:
			if d.ev.Event != w {
				t.Fatalf("webhook %d is %s, want %s", i, d.ev.Event, w)
			}
			var ts int64
			fmt.Sscan(d.ts, &ts)
			if d.sig != room.SignWebhook([]byte(e.key), ts, d.raw) {
				t.Fatalf("%s: signature %q does not verify with the API key", w, d.sig)
			}
			if w == "participant.joined" && !strings.Contains(string(d.raw), `"name":"Ana"`) {
				t.Fatalf("participant.joined: %s", d.raw)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("webhook %s never arrived", w)
		}
	}
}

// TestAPIRecordingAndIngestBodies: the recording and ingest routes decode
// their bodies as every other route does: one limit (--api-max-body, 413)
// and 422 naming the field at fault.
func TestAPIRecordingAndIngestBodies(t *testing.T) {
	e := startAPI(t, func(c *config.Config) { c.APIMaxBody = 2048 })
	e.ok("POST", "/api/rooms", map[string]any{"name": "a", "id": "a"}, 201, nil)
	var host struct {
		Token string `json:"token"`
	}
	e.ok("POST", "/api/rooms/a/tokens", map[string]any{"role": "host"}, 201, &host)

	big := `{"name":"` + strings.Repeat("x", 4096) + `"}`
	for _, path := range []string{"/api/rooms/a/recordings", "/api/rooms/a/ingests"} {
		e.fails("POST", path, e.key, big, 413, "body_too_large", "2048")
		e.fails("POST", path, e.key, `{"a":}`, 400, "bad_json", "")
		e.fails("POST", path, e.key, `[]`, 400, "bad_json", "object")
	}
	for _, c := range []struct {
		path, key, body, field, contains string
	}{
		{"/api/rooms/a/recordings", e.key, `{"formats":"flv"}`, "formats", `"formats" must be an array`},
		{"/api/rooms/a/recordings", e.key, `{"noAudio":"yes"}`, "noAudio", `"noAudio" must be a boolean`},
		{"/api/rooms/a/recordings", e.key, `{"bogus":1}`, "bogus", `unknown field "bogus"`},
		{"/api/rooms/a/ingests", e.key, `{"loop":"yes"}`, "loop", `"loop" must be a boolean`},
		{"/api/rooms/a/ingests", e.key, `{"type":"udp"}`, "type", `"type" must be "rtmp"`},
		{"/api/rooms/a/ingests", host.Token, `{"type":"rtmp","colour":"red"}`, "colour", `unknown field "colour"`},
		{"/api/rooms/a/ingests", e.key, `{"file":"film.mp4"}`, "file", "--media-dir"},
	} {
		ae := e.fails("POST", c.path, c.key, c.body, 422, "invalid_field", c.contains)
		if ae.Error.Field != c.field {
			t.Errorf("POST %s %s: field %q, want %q", c.path, c.body, ae.Error.Field, c.field)
		}
	}
	// The host's token with a good body gets its stream key.
	var sk struct {
		ID string `json:"id"`
	}
	st, _, b := e.do("POST", "/api/rooms/a/ingests", host.Token, `{"type":"rtmp"}`)
	if st != 201 || json.Unmarshal(b, &sk) != nil || !strings.HasPrefix(sk.ID, "sk_") {
		t.Fatalf("stream key with a host's token: %d %s", st, b)
	}
}
