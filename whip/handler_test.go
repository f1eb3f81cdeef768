package whip_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/room"
	"github.com/matinee-dev/matinee/sfu"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// These tests serve the WHIP and WHEP endpoints on their own: an sfu
// Worker on loopback, a room.Manager and whip's Handler on an httptest
// server, with an Authorize of the test's; no server package.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const adminToken = "the-admin"

// rig is a handler on loopback and what its Authorize was asked.
type rig struct {
	h     *whip.Handler
	rooms *room.Manager
	base  string

	mu    sync.Mutex
	asked []whip.Access
}

// newRig serves whip with cfg (Rooms and Authorize are the rig's): the
// admin token is an administrator, "guest" may watch but not publish,
// "member" passes, to be checked by the room as a join token, and
// anything else is refused.
func newRig(t *testing.T, cfg whip.Config) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := sfu.NewWorker(ctx, sfu.WorkerConfig{LoopbackOnly: true})
	if err != nil {
		cancel()
		t.Fatalf("sfu worker: %v", err)
	}
	r := &rig{rooms: room.NewManager(ctx, w, room.Config{OpenRooms: true})}
	cfg.Rooms = r.rooms
	cfg.Authorize = r.authorize
	r.h = whip.New(cfg)
	mux := http.NewServeMux()
	r.h.Register(mux)
	hs := httptest.NewServer(mux)
	r.base = hs.URL
	t.Cleanup(func() {
		r.h.Close()
		hs.Close()
		r.rooms.Close()
		if err := w.Close(); err != nil {
			t.Errorf("close worker: %v", err)
		}
		cancel()
	})
	return r
}

func (r *rig) authorize(_ *http.Request, a whip.Access) (whip.Grant, error) {
	r.mu.Lock()
	r.asked = append(r.asked, a)
	r.mu.Unlock()
	switch {
	case a.Token == adminToken:
		return whip.Grant{Admin: true}, nil
	case a.Token == "guest" && !a.Publish, a.Token == "member":
		return whip.Grant{}, nil
	case a.Token == "":
		return whip.Grant{}, whip.ErrUnauthorized
	}
	return whip.Grant{}, &tokenError{}
}

type tokenError struct{}

func (*tokenError) Error() string { return "unauthorized: token not accepted for this" }

func (r *rig) lastAccess() whip.Access {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.asked) == 0 {
		return whip.Access{}
	}
	return r.asked[len(r.asked)-1]
}

func send(t *testing.T, method, url, ctype, token, body string, hdr ...string) testenv.Response {
	t.Helper()
	return testenv.Request(t, method, url, ctype, token, body, hdr...)
}

// wantError checks status, the one error shape, its code and CORS.
func wantError(t *testing.T, what string, a testenv.Response, status int, code, contains string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(a.Body), &e); err != nil {
		t.Errorf("%s: body %q is not the error shape: %v", what, a.Body, err)
		return
	}
	if a.StatusCode != status || e.Error.Code != code || !strings.Contains(e.Error.Message, contains) {
		t.Errorf("%s: %d %s %q, want %d %s containing %q", what, a.StatusCode, e.Error.Code, e.Error.Message, status, code, contains)
	}
	if a.Header.Get("Content-Type") != "application/json" || a.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("%s: headers %v, want JSON with CORS", what, a.Header)
	}
}

// recvOffer is a gathered offer of a pion peer that receives video.
func recvOffer(t *testing.T) (*webrtc.PeerConnection, string) {
	t.Helper()
	pc := newPC(t)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	return pc, gatheredOffer(t, pc)
}

func newPC(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	api, err := testpeer.NewAPI(testpeer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// gatheredOffer sets pc's offer with every candidate in it, as a WHIP
// client that does not trickle sends it.
func gatheredOffer(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := testpeer.GatheredOffer(pc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return offer
}

// TestOfferRefusals: what an offer can get wrong, and the status, error
// code and headers each gets.
func TestOfferRefusals(t *testing.T) {
	r := newRig(t, whip.Config{MaxViewers: 5})
	_, offer := recvOffer(t)
	const sdpType = whip.ContentTypeSDP
	for _, c := range []struct {
		name, method, path, ctype, token, body string
		status                                 int
		code, contains                         string
	}{
		{"bad room id", "POST", "/whip/bad%20room", sdpType, adminToken, offer, 404, "not_found", "ids are 1-64 characters"},
		{"no token", "POST", "/whip/party", sdpType, "", offer, 401, "unauthorized", "unauthorized"},
		{"token refused", "POST", "/whip/party", sdpType, "nobody", offer, 401, "unauthorized", "token not accepted"},
		{"viewer's token publishing", "POST", "/whip/party", sdpType, "guest", offer, 401, "unauthorized", "token not accepted"},
		{"a join token the room refuses", "POST", "/whip/party", sdpType, "member", offer, 403, "forbidden", "token"},
		{"wrong content type", "POST", "/whip/party", "application/json", adminToken, offer, 415, "unsupported_media_type", sdpType},
		{"no content type", "POST", "/whep/party", "", adminToken, offer, 415, "unsupported_media_type", sdpType},
		{"empty body", "POST", "/whip/party", sdpType, adminToken, "", 400, "bad_sdp", "empty body"},
		{"oversized body", "POST", "/whip/party", sdpType, adminToken, strings.Repeat("a", 256<<10+1), 413, "too_large", "larger than"},
		{"not SDP", "POST", "/whip/party", sdpType, adminToken, "this is not sdp", 400, "bad_sdp", "malformed SDP offer"},
		{"SDP without media", "POST", "/whip/party", sdpType, adminToken, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", 400, "bad_sdp", "no media section"},
		{"WHEP of a room nobody is in", "POST", "/whep/empty", sdpType, "guest", offer, 404, "not_found", `room "empty" has no one in it`},
		{"GET the endpoint", "GET", "/whip/party", "", adminToken, "", 405, "method_not_allowed", "POST, OPTIONS"},
		{"PUT a session", "PUT", "/whep/party/0123", "", adminToken, "", 405, "method_not_allowed", "PATCH, DELETE, OPTIONS"},
		{"DELETE an unknown session", "DELETE", "/whip/party/0123456789abcdef", "", "", "", 404, "not_found", "no such session"},
		{"PATCH an unknown session", "PATCH", "/whep/party/0123456789abcdef", whip.ContentTypeSDPFrag, "", "a=ice-ufrag:x\r\n", 404, "not_found", "no such session"},
	} {
		a := send(t, c.method, r.base+c.path, c.ctype, c.token, c.body)
		wantError(t, c.name, a, c.status, c.code, c.contains)
		switch c.status {
		case 401:
			if a.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", c.name)
			}
		case 405:
			if a.Header.Get("Allow") != c.contains {
				t.Errorf("%s: Allow %q, want %q", c.name, a.Header.Get("Allow"), c.contains)
			}
		case 415:
			if a.Header.Get("Accept") != sdpType {
				t.Errorf("%s: Accept %q, want %q", c.name, a.Header.Get("Accept"), sdpType)
			}
		}
	}
	// Authorize is asked with the room, the bearer token and the kind.
	send(t, "POST", r.base+"/whep/movie-night", sdpType, "guest", offer)
	if got, want := r.lastAccess(), (whip.Access{Room: "movie-night", Token: "guest", Publish: false}); got != want {
		t.Errorf("Authorize asked %+v, want %+v", got, want)
	}
	if w, v := r.h.Sessions(); w != 0 || v != 0 {
		t.Errorf("sessions after refusals: %d WHIP, %d WHEP", w, v)
	}

	// Preflight of the endpoint and of a session.
	a := send(t, "OPTIONS", r.base+"/whip/party", "", "", "", "Origin", "https://studio.example", "Access-Control-Request-Method", "POST")
	if a.StatusCode != 204 || a.Header.Get("Accept-Post") != sdpType || !strings.Contains(a.Header.Get("Access-Control-Allow-Headers"), "If-Match") {
		t.Errorf("endpoint preflight: %d %v", a.StatusCode, a.Header)
	}
	a = send(t, "OPTIONS", r.base+"/whip/party/0123", "", "", "")
	if a.StatusCode != 204 || a.Header.Get("Accept-Patch") != whip.ContentTypeSDPFrag || a.Header.Get("Allow") != "PATCH, DELETE, OPTIONS" {
		t.Errorf("session preflight: %d %v", a.StatusCode, a.Header)
	}

	// WHEP turned off, and a closed handler.
	off := newRig(t, whip.Config{MaxViewers: 0})
	wantError(t, "WHEP off", send(t, "POST", off.base+"/whep/party", sdpType, "guest", offer), 503, "room_full", "WHEP is turned off")
	off.h.Close()
	wantError(t, "after Close", send(t, "POST", off.base+"/whip/party", sdpType, adminToken, offer), 503, "unavailable", "shutting down")
}

// TestSessionLifecycle: a pion publisher's WHIP session (201, answer,
// Location, ETag, Link), its RTP reaching a pion WHEP viewer, the PATCH
// preconditions, and DELETE ending each session once.
func TestSessionLifecycle(t *testing.T) {
	r := newRig(t, whip.Config{
		MaxViewers: 5,
		ICEServers: []whip.ICEServer{{URLs: []string{"turn:turn.example:3478"}, Username: "u", Credential: "p"}},
	})
	// The publisher: VP8 from testpeer's source.
	pub := newPC(t)
	video, err := testpeer.NewVideoSource("v", "screen")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := pub.AddTrack(video.Track)
	if err != nil {
		t.Fatal(err)
	}
	go video.ServeRTCP(sender)
	offer := gatheredOffer(t, pub)
	a := send(t, "POST", r.base+"/whip/stage?name=Studio", whip.ContentTypeSDP, adminToken, offer)
	if a.StatusCode != http.StatusCreated || a.Header.Get("Content-Type") != whip.ContentTypeSDP {
		t.Fatalf("publish: %d %s %q", a.StatusCode, a.Header.Get("Content-Type"), a.Body)
	}
	loc := a.Header.Get("Location")
	if !regexp.MustCompile(`^/whip/stage/[0-9a-f]{32}$`).MatchString(loc) {
		t.Fatalf("Location %q, want /whip/stage/<32 hex>", loc)
	}
	etag := a.Header.Get("ETag")
	if !regexp.MustCompile(`^"[0-9a-f]{16}"$`).MatchString(etag) {
		t.Errorf("ETag %q, want a quoted tag", etag)
	}
	if a.Header.Get("Accept-Patch") != whip.ContentTypeSDPFrag || a.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("answer headers %v", a.Header)
	}
	if l := a.Header.Values("Link"); len(l) != 1 || l[0] != `<turn:turn.example:3478>; rel="ice-server"; username="u"; credential="p"; credential-type="password"` {
		t.Errorf("Link %q", l)
	}
	var ans sdp.SessionDescription
	if err := ans.UnmarshalString(a.Body); err != nil || len(ans.MediaDescriptions) != 1 {
		t.Fatalf("answer: %v, %d media sections\n%s", err, len(ans.MediaDescriptions), a.Body)
	}
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.Body}); err != nil {
		t.Fatalf("publisher: set answer: %v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); video.Run(stop, 30) }()
	defer func() { close(stop); wg.Wait() }()

	// The publisher is a member of the room, named by ?name=, with its
	// video as a screen share.
	rm, ok := r.rooms.Room("stage")
	if !ok {
		t.Fatal("no room stage after the publish")
	}
	testenv.Eventually(t, 5*time.Second, "the WHIP member and its video in the room", func() bool {
		ps, prods := rm.Peers(), rm.Producers()
		return len(ps) == 1 && ps[0].Name == "Studio" && len(prods) == 1 && prods[0].Kind == "video"
	})
	if src := rm.Producers()[0].AppData.(map[string]any)["source"]; src != "screen" {
		t.Errorf("producer source %v, want screen", src)
	}

	// A WHEP viewer gets the publisher's packets.
	view, vOffer := recvOffer(t)
	var mu sync.Mutex
	var got [][]byte
	view.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, p.Payload)
			mu.Unlock()
		}
	})
	va := send(t, "POST", r.base+"/whep/stage", whip.ContentTypeSDP, "guest", vOffer)
	if va.StatusCode != http.StatusCreated || !strings.HasPrefix(va.Header.Get("Location"), "/whep/stage/") {
		t.Fatalf("watch: %d %v %q", va.StatusCode, va.Header, va.Body)
	}
	if err := view.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: va.Body}); err != nil {
		t.Fatalf("viewer: set answer: %v", err)
	}
	if w, v := r.h.Sessions(); w != 1 || v != 1 {
		t.Errorf("sessions: %d WHIP, %d WHEP, want 1 and 1", w, v)
	}
	testenv.Eventually(t, 10*time.Second, "30 video packets at the WHEP viewer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 30
	})
	sent := map[string]bool{}
	for _, p := range video.Sent() {
		sent[string(p.Payload)] = true
	}
	mu.Lock()
	for _, p := range got {
		if !sent[string(p)] {
			t.Fatal("the viewer got a payload the publisher never sent")
		}
	}
	mu.Unlock()

	// PATCH: preconditions before anything is applied.
	session := r.base + loc
	ufrag := iceUfrag(t, offer)
	wantError(t, "PATCH wrong If-Match", send(t, "PATCH", session, whip.ContentTypeSDPFrag, "", "a=ice-ufrag:"+ufrag+"\r\n", "If-Match", `"stale"`), 412, "precondition_failed", "If-Match")
	wantError(t, "PATCH new ufrag without If-Match: *", send(t, "PATCH", session, whip.ContentTypeSDPFrag, "", "a=ice-ufrag:fresh\r\na=ice-pwd:0123456789abcdef0123456789\r\n", "If-Match", etag), 428, "precondition_required", "If-Match: *")
	wantError(t, "PATCH wrong content type", send(t, "PATCH", session, whip.ContentTypeSDP, "", "a=ice-ufrag:"+ufrag+"\r\n"), 415, "unsupported_media_type", whip.ContentTypeSDPFrag)
	if a := send(t, "PATCH", session, whip.ContentTypeSDPFrag, "", "a=ice-ufrag:"+ufrag+"\r\n", "If-Match", etag); a.StatusCode != http.StatusNoContent {
		t.Errorf("PATCH with the session's ufrag and no candidate: %d %q, want 204", a.StatusCode, a.Body)
	}

	// DELETE: only under its own kind and room, then once. The viewer
	// first: the room, and its stage, end with its last member.
	vloc := r.base + va.Header.Get("Location")
	if a := send(t, "DELETE", vloc, "", "", ""); a.StatusCode != http.StatusOK {
		t.Fatalf("viewer DELETE: %d %q", a.StatusCode, a.Body)
	}
	wantError(t, "viewer DELETE again", send(t, "DELETE", vloc, "", "", ""), 404, "not_found", "no such session")
	if w, v := r.h.Sessions(); w != 1 || v != 0 {
		t.Errorf("sessions after the viewer's DELETE: %d WHIP, %d WHEP, want 1 and 0", w, v)
	}
	wantError(t, "DELETE under /whep/", send(t, "DELETE", r.base+strings.Replace(loc, "/whip/", "/whep/", 1), "", "", ""), 404, "not_found", "no such session")
	wantError(t, "DELETE under another room", send(t, "DELETE", r.base+strings.Replace(loc, "/stage/", "/other/", 1), "", "", ""), 404, "not_found", "no such session")
	if a := send(t, "DELETE", session, "", "", ""); a.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d %q", a.StatusCode, a.Body)
	}
	wantError(t, "DELETE again", send(t, "DELETE", session, "", "", ""), 404, "not_found", "no such session")
	testenv.Eventually(t, 5*time.Second, "the publisher gone from the room", func() bool { return len(rm.Peers()) == 0 })
	if w, v := r.h.Sessions(); w != 0 || v != 0 {
		t.Errorf("sessions after both DELETEs: %d WHIP, %d WHEP", w, v)
	}
}

// iceUfrag returns the first ice-ufrag of an SDP.
func iceUfrag(t *testing.T, s string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^a=ice-ufrag:(\S+)`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no ice-ufrag in\n%s", s)
	}
	return m[1]
}
