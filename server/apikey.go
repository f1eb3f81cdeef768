package server

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// loadAPIKey returns the configured key, or the one stored in the data
// directory, creating it (and reporting that it is new) on first start.
func loadAPIKey(configured, dataDir string) (key string, created bool, err error) {
	if configured != "" {
		return configured, false, nil
	}
	path := filepath.Join(dataDir, "api-key")
	b, err := os.ReadFile(path)
	if err == nil {
		if k := strings.TrimSpace(string(b)); k != "" {
			return k, false, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read api key: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, err
	}
	key = "mk_" + base64.RawURLEncoding.EncodeToString(raw[:])
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("store api key: %w", err)
	}
	return key, true, nil
}

// WriteJSONError writes the API's one error shape:
// {"error":{"code":"...","message":"..."}}.
func WriteJSONError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // messages read "<api key>", not "\u003capi key\u003e"
	_ = enc.Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// RequireAPIKey wraps an admin handler: without the right bearer key the
// answer is 401 with a JSON error.
func (s *Server) RequireAPIKey(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := bearer(r)
		if got == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="matinee"`)
			WriteJSONError(w, http.StatusUnauthorized, "unauthorized", "missing Authorization: Bearer <api key>")
			return
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.apiKey)) != 1 {
			WriteJSONError(w, http.StatusUnauthorized, "unauthorized", "wrong API key")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// APIKey returns the admin API key.
func (s *Server) APIKey() string { return s.apiKey }
