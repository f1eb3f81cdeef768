package rest

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/room"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func decodeString(body string, limit int64, v any) *Error {
	r := httptest.NewRequest(http.MethodPost, "/api/x", strings.NewReader(body))
	return Decode(httptest.NewRecorder(), r, limit, v)
}

// TestDecode: one decoder, one limit, and the statuses docs/api.md
// promises, for each kind of body the API takes.
func TestDecode(t *testing.T) {
	cases := []struct {
		body   string
		v      func() any
		status int
		code   string
		field  string
	}{
		{``, func() any { return &recordingRequest{} }, 0, "", ""},
		{`{"formats":["flv"]}`, func() any { return &recordingRequest{} }, 0, "", ""},
		{`{"formats":"flv"}`, func() any { return &recordingRequest{} }, 422, "invalid_field", "formats"},
		{`{"noAudio":1}`, func() any { return &recordingRequest{} }, 422, "invalid_field", "noAudio"},
		{`{"bogus":1}`, func() any { return &recordingRequest{} }, 422, "invalid_field", "bogus"},
		{`{"loop":"yes"}`, func() any { return &IngestRequest{} }, 422, "invalid_field", "loop"},
		{`{"type":"rtmp","key":"x"}`, func() any { return &IngestRequest{} }, 422, "invalid_field", "key"},
		{`{"maxPeers":"ten"}`, func() any { return &room.RoomSpec{} }, 422, "invalid_field", "maxPeers"},
		{`{"formats":`, func() any { return &recordingRequest{} }, 400, "bad_json", ""},
		{`["flv"]`, func() any { return &recordingRequest{} }, 400, "bad_json", ""},
		{`{} {}`, func() any { return &recordingRequest{} }, 400, "bad_json", ""},
		{`{"name":"` + strings.Repeat("x", 100) + `"}`, func() any { return &IngestRequest{} }, 413, "body_too_large", ""},
	}
	for _, c := range cases {
		e := decodeString(c.body, 64, c.v())
		switch {
		case c.status == 0 && e != nil:
			t.Errorf("%s: refused %+v", c.body, e)
		case c.status != 0 && (e == nil || e.Status != c.status || e.Code != c.code || e.Field != c.field || e.Message == ""):
			t.Errorf("%s: got %+v, want %d %s field %q", c.body, e, c.status, c.code, c.field)
		}
	}
	if e := decodeString(`{"name":"`+strings.Repeat("x", 100)+`"}`, 64, &IngestRequest{}); !strings.Contains(e.Message, "64") {
		t.Errorf("413 message %q does not give the limit", e.Message)
	}
}

// FuzzDecodeBody decodes a REST request body into each body the API
// takes. Past the size limit it is 413; otherwise it is accepted or
// refused with 400 or 422, and what is accepted, written back as JSON,
// is accepted again and reads the same.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"Movie night","maxPeers":8,"password":"popcorn","metadata":{"film":"Alien","year":1979},"simulcast":true}`,
		`{"name":null,"locked":true,"metadata":null}`,
		`{"identity":"ann","name":"Ann","role":"host","ttl":3600}`,
		`{"formats":["flv","hls"],"rtmp":["rtmp://x/app/k"],"noAudio":true}`,
		`{"type":"rtmp"}`,
		`{"file":"film.mp4","loop":true,"video":false}`,
		`{"maxPeers":"8"}`,
		`{"nope":1}`,
		``,
		`[1]`,
	} {
		f.Add([]byte(s))
	}
	const limit = 512
	decode := func(b []byte, v any) *Error {
		r := httptest.NewRequest(http.MethodPost, "/api/rooms", bytes.NewReader(b))
		return Decode(httptest.NewRecorder(), r, limit, v)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, mk := range []func() any{
			func() any { return &room.RoomSpec{} },
			func() any { return &room.RoomUpdate{} },
			func() any { return &tokenRequest{} },
			func() any { return &recordingRequest{} },
			func() any { return &IngestRequest{} },
		} {
			v := mk()
			be := decode(b, v)
			if len(b) > limit {
				if be == nil || be.Status != http.StatusRequestEntityTooLarge {
					t.Fatalf("a %d-byte body got %+v, want 413", len(b), be)
				}
				continue
			}
			if be != nil {
				if be.Status != http.StatusBadRequest && be.Status != http.StatusUnprocessableEntity || be.Code == "" || be.Message == "" {
					t.Fatalf("refused with %+v", be)
				}
				continue
			}
			once, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			v2 := mk()
			if be := decode(once, v2); be != nil && len(once) <= limit {
				t.Fatalf("%s written back as %s refused: %+v", b, once, be)
			}
			if len(once) > limit {
				continue
			}
			if twice, _ := json.Marshal(v2); !bytes.Equal(once, twice) {
				t.Fatalf("round trip: %s then %s", once, twice)
			}
		}
	})
}
