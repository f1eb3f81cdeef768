package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/matinee-dev/matinee/recorder"
	"github.com/matinee-dev/matinee/rest"
	"github.com/matinee-dev/matinee/room"
	"github.com/matinee-dev/matinee/whip"
)

// Live HLS follows the room's access rules (docs/recording.md): a room
// marked publicHLS is open to anyone; any other needs what WHEP needs (the
// API key or a join token for the room, as a bearer header or, for a
// join token, ?token=), or a signed URL (?exp=&sig=) for players that
// cannot send headers. A credential in the query string is carried on:
// the playlists served with it have it added to every URI.

// HLSKeyLabel is what the key of signed HLS URLs is derived with:
// key = HMAC-SHA256(api key, HLSKeyLabel).
const HLSKeyLabel = "matinee hls urls v1"

// DeriveHLSKey returns the key signed HLS URLs are signed with.
func DeriveHLSKey(apiKey string) []byte { return room.DeriveKey(apiKey, HLSKeyLabel) }

// SignHLS returns the signature of a URL to room's live HLS that is good
// until exp (Unix seconds): base64url, unpadded, of
// HMAC-SHA256(key, room + "\n" + exp in decimal).
func SignHLS(key []byte, roomID string, exp int64) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(roomID + "\n" + strconv.FormatInt(exp, 10)))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// hlsDenied is a refused live HLS request.
type hlsDenied struct {
	status int
	code   string
	msg    string
}

func (e *hlsDenied) Error() string { return e.msg }

func (s *Server) serveLiveHLS(w http.ResponseWriter, r *http.Request) {
	id, name := r.PathValue("room"), r.PathValue("file")
	o, err := s.hlsAccess(r, id)
	if err != nil {
		var d *hlsDenied
		if !errors.As(err, &d) {
			d = &hlsDenied{http.StatusInternalServerError, "internal", err.Error()}
		}
		if d.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="matinee"`)
		}
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "no-store")
		rest.WriteError(w, &rest.Error{Status: d.status, Code: d.code, Message: d.msg})
		return
	}
	recorder.ServeLiveHLS(s.rec.mgr, w, r, id, name, o)
}

// hlsAccess decides whether r may read the live HLS of room id, and how
// to answer it.
func (s *Server) hlsAccess(r *http.Request, id string) (recorder.LiveOptions, error) {
	q := r.URL.Query()
	if rm, ok := s.rooms.Room(id); ok && rm.Info().PublicHLS {
		return recorder.LiveOptions{}, nil
	}
	if q.Has("sig") || q.Has("exp") {
		return s.checkSignedHLS(id, q.Get("exp"), q.Get("sig"))
	}
	if tok := q.Get("token"); tok != "" {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(s.apiKey)) == 1 {
			// A URL ends up in logs, histories and Referer headers.
			return recorder.LiveOptions{}, &hlsDenied{http.StatusForbidden, "forbidden", "the API key may not be put in a URL: send it as Authorization: Bearer, or use a join token or a signed URL"}
		}
		if err := s.checkHLSToken(id, tok); err != nil {
			return recorder.LiveOptions{}, err
		}
		return recorder.LiveOptions{Query: "token=" + url.QueryEscape(tok)}, nil
	}
	if tok := rest.Bearer(r); tok != "" {
		if err := s.checkHLSToken(id, tok); err != nil {
			return recorder.LiveOptions{}, err
		}
		return recorder.LiveOptions{Private: true}, nil
	}
	return recorder.LiveOptions{}, &hlsDenied{http.StatusUnauthorized, "unauthorized",
		"the live HLS of room " + id + " needs a join token (?token= or Authorization: Bearer) or a signed URL (POST /api/rooms/" + id + "/hls-url)"}
}

// checkHLSToken accepts what WHEP accepts: the API key, or a join token
// for the room (any role may watch).
func (s *Server) checkHLSToken(id, tok string) error {
	if _, err := s.authorizeMedia(nil, whip.Access{Room: id, Token: tok}); err != nil {
		code := "token_invalid"
		if _, verr := s.rooms.VerifyToken(id, tok); verr != nil {
			if re, ok := room.AsError(verr); ok && re.Reason != "" {
				code = re.Reason
			}
		}
		return &hlsDenied{http.StatusUnauthorized, code, err.Error()}
	}
	return nil
}

func (s *Server) checkSignedHLS(id, expS, sig string) (recorder.LiveOptions, error) {
	exp, err := strconv.ParseInt(expS, 10, 64)
	if err != nil || sig == "" {
		return recorder.LiveOptions{}, &hlsDenied{http.StatusForbidden, "signature_invalid", "a signed HLS URL needs exp (Unix seconds) and sig"}
	}
	want := SignHLS(s.hlsKey, id, exp)
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return recorder.LiveOptions{}, &hlsDenied{http.StatusForbidden, "signature_invalid", "the HLS URL's signature is wrong (another room, or altered)"}
	}
	if time.Now().Unix() > exp {
		return recorder.LiveOptions{}, &hlsDenied{http.StatusForbidden, "url_expired", "the signed HLS URL expired at " + time.Unix(exp, 0).UTC().Format(time.RFC3339)}
	}
	return recorder.LiveOptions{Query: "exp=" + strconv.FormatInt(exp, 10) + "&sig=" + sig}, nil
}
