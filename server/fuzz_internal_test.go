package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/room"
)

// FuzzDecodeBody decodes a REST request body into each body the API
// takes. Past the size limit it is 413; otherwise it is accepted or
// refused with 400 or 422, and what is accepted, written back as JSON,
// is accepted again and reads the same.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"Movie night","maxPeers":8,"password":"popcorn","metadata":{"film":"Alien","year":1979},"simulcast":true}`,
		`{"name":null,"locked":true,"metadata":null}`,
		`{"identity":"ann","name":"Ann","role":"host","ttl":3600}`,
		`{"maxPeers":"8"}`,
		`{"nope":1}`,
		``,
		`[1]`,
	} {
		f.Add([]byte(s))
	}
	const limit = 512
	s := &Server{cfg: config.Config{APIMaxBody: limit}}
	decode := func(b []byte, v any) *bodyError {
		r := httptest.NewRequest(http.MethodPost, "/api/rooms", bytes.NewReader(b))
		return s.decodeBody(httptest.NewRecorder(), r, v)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, mk := range []func() any{
			func() any { return &room.RoomSpec{} },
			func() any { return &room.RoomUpdate{} },
			func() any {
				return &struct {
					Identity string `json:"identity"`
					Name     string `json:"name"`
					Role     string `json:"role"`
					TTL      *int64 `json:"ttl"`
				}{}
			},
		} {
			v := mk()
			be := decode(b, v)
			if len(b) > limit {
				if be == nil || be.status != http.StatusRequestEntityTooLarge {
					t.Fatalf("a %d-byte body got %+v, want 413", len(b), be)
				}
				continue
			}
			if be != nil {
				if be.status != http.StatusBadRequest && be.status != http.StatusUnprocessableEntity || be.code == "" || be.msg == "" {
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
