package rest

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/matinee-dev/matinee/room"
)

// Auth is who may call a route.
type Auth int

const (
	// Public routes need nothing.
	Public Auth = iota
	// Admin routes need the API key.
	Admin
	// KeyOrToken routes take the API key or a join token for the room in
	// the path ({id}), of any role.
	KeyOrToken
	// KeyOrHost routes take the API key or a host's join token for the
	// room in the path; the handler learns which with IsAdmin.
	KeyOrHost
)

type ctxKey int

const claimsKey ctxKey = 0

// Bearer returns the token of an "Authorization: Bearer" header.
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// IsAdmin reports whether an authorized request came with the API key
// rather than a join token.
func IsAdmin(r *http.Request) bool { return TokenClaims(r) == nil }

// TokenClaims returns the join token an authorized request came with
// (nil: the API key, or a public route).
func TokenClaims(r *http.Request) *room.TokenClaims {
	c, _ := r.Context().Value(claimsKey).(*room.TokenClaims)
	return c
}

// RequireKey wraps an admin handler: without the right bearer key the
// answer is 401 with a JSON error. Routes outside the table (recording
// downloads) use it too.
func RequireKey(apiKey string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e := checkKey(w, apiKey, Bearer(r)); e != nil {
			WriteError(w, e)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func checkKey(w http.ResponseWriter, apiKey, got string) *Error {
	if got == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="matinee"`)
		return &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "missing Authorization: Bearer <api key>"}
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(apiKey)) != 1 {
		return &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "wrong API key"}
	}
	return nil
}

// authorize is the one gate of the table's routes: the API key passes
// every route; a join token (a JWT: three dot-separated parts) passes
// KeyOrToken routes of its room, and KeyOrHost ones when it is a host's.
func (a *API) authorize(auth Auth, h http.HandlerFunc) http.HandlerFunc {
	if auth == Public {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		got := Bearer(r)
		if auth == Admin || strings.Count(got, ".") != 2 || got == a.cfg.APIKey {
			if e := checkKey(w, a.cfg.APIKey, got); e != nil {
				WriteError(w, e)
				return
			}
			h(w, r)
			return
		}
		c, err := a.cfg.Rooms.VerifyToken(r.PathValue("id"), got)
		if err != nil {
			code := "token_invalid"
			if re, ok := room.AsError(err); ok && re.Reason != "" {
				code = re.Reason
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="matinee", error="invalid_token"`)
			WriteError(w, &Error{Status: http.StatusUnauthorized, Code: code, Message: err.Error()})
			return
		}
		if auth == KeyOrHost && c.Role != room.RoleHost {
			WriteError(w, Forbidden("only a host's token (or the API key) may do this"))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), claimsKey, c)))
	}
}
