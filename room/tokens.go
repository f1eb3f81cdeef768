package room

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Join tokens are JWTs (HS256) that let an application invite someone to
// one room with a fixed identity and role. See docs/api.md.

// TokenKeyLabel is what the token key is derived with:
// key = HMAC-SHA256(api key, TokenKeyLabel). Applications that hold the
// API key can mint tokens offline with the same key.
const TokenKeyLabel = "matinee join tokens v1"

// DeriveTokenKey returns the HS256 key for join tokens from the API key.
func DeriveTokenKey(apiKey string) []byte { return DeriveKey(apiKey, TokenKeyLabel) }

// DeriveKey returns HMAC-SHA256(api key, label): one key per use of the
// API key (join tokens, signed URLs), so that none can stand for another.
func DeriveKey(apiKey, label string) []byte {
	mac := hmac.New(sha256.New, []byte(apiKey))
	mac.Write([]byte(label))
	return mac.Sum(nil)
}

// Limits of minted tokens.
const (
	DefaultTokenTTL = 24 * time.Hour
	MaxTokenTTL     = 30 * 24 * time.Hour
)

// TokenClaims is what a join token carries.
type TokenClaims struct {
	Room     string `json:"room"`
	Identity string `json:"identity"`
	Name     string `json:"name,omitempty"`
	Role     string `json:"role"`
	jwt.RegisteredClaims
}

// TokenSpec is a request to mint a token.
type TokenSpec struct {
	Identity string
	Name     string
	Role     string
	TTL      time.Duration
}

var validIdentity = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)

// ValidIdentity reports whether s can be a participant identity: 1-64
// characters of A-Z a-z 0-9 _ . @ -, so it fits in a URL path.
func ValidIdentity(s string) bool { return validIdentity.MatchString(s) }

func validRole(r string) bool { return r == RoleHost || r == RoleGuest || r == RoleViewer }

// checkName cleans and validates a display name: one line, with no
// control, direction-changing or invisible characters (cleanText).
func checkName(field, name string) (string, error) {
	return checkLine(field, name, 64)
}

// checkLine cleans a one-line text and checks it is 1-max characters.
func checkLine(field, s string, max int) (string, error) {
	clean := cleanText(s, false)
	switch {
	case clean == "" && strings.TrimSpace(s) != "":
		return "", invalidField(field, "has only control, direction or invisible characters; it must show 1-%d characters", max)
	case clean == "" || utf8.RuneCountInString(clean) > max:
		return "", invalidField(field, "must be 1-%d characters", max)
	}
	return clean, nil
}

// MintToken signs a join token for an existing room.
func (m *Manager) MintToken(roomID string, spec TokenSpec) (token string, claims *TokenClaims, err error) {
	if len(m.cfg.TokenKey) == 0 {
		return "", nil, errorf(KindInvalidState, "join tokens are not enabled on this server")
	}
	if _, ok := m.Room(roomID); !ok {
		return "", nil, errorf(KindNotFound, "unknown room %q", roomID)
	}
	if spec.Identity == "" {
		spec.Identity = "id-" + randHex(6)
	}
	if !ValidIdentity(spec.Identity) {
		return "", nil, invalidField("identity", "must be 1-64 characters of A-Z a-z 0-9 _ . @ -")
	}
	if spec.Name != "" {
		if spec.Name, err = checkName("name", spec.Name); err != nil {
			return "", nil, err
		}
	}
	if spec.Role == "" {
		spec.Role = RoleGuest
	}
	if !validRole(spec.Role) {
		return "", nil, invalidField("role", "must be host, guest or viewer")
	}
	if spec.TTL == 0 {
		spec.TTL = DefaultTokenTTL
	}
	if spec.TTL < time.Second || spec.TTL > MaxTokenTTL {
		return "", nil, invalidField("ttl", "must be 1-%d seconds", int(MaxTokenTTL/time.Second))
	}
	now := m.now()
	claims = &TokenClaims{
		Room:     roomID,
		Identity: spec.Identity,
		Name:     spec.Name,
		Role:     spec.Role,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    "matinee",
			Subject:   spec.Identity,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(spec.TTL)),
			ID:        randHex(8),
		},
	}
	token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(m.cfg.TokenKey)
	if err != nil {
		return "", nil, fmt.Errorf("sign token: %w", err)
	}
	return token, claims, nil
}

// VerifyToken checks a join token's signature and expiry and that it is for
// roomID. Its errors are KindForbidden with a reason (token_invalid,
// token_expired, token_other_room).
func (m *Manager) VerifyToken(roomID, token string) (*TokenClaims, error) {
	if len(m.cfg.TokenKey) == 0 {
		return nil, forbidden(ReasonTokenInvalid, "join tokens are not enabled on this server")
	}
	var c TokenClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return m.cfg.TokenKey, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer("matinee"),
		jwt.WithTimeFunc(m.now),
		jwt.WithLeeway(5*time.Second),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, forbidden(ReasonTokenExpired, "token expired")
	case err != nil:
		return nil, forbidden(ReasonTokenInvalid, "invalid token: %v", shortJWTError(err))
	case c.Room != roomID:
		return nil, forbidden(ReasonTokenOtherRoom, "token is for another room")
	case !ValidIdentity(c.Identity) || !validRole(c.Role):
		return nil, forbidden(ReasonTokenInvalid, "invalid token: bad identity or role")
	}
	return &c, nil
}

// shortJWTError drops the library's "token is unverifiable:" style prefixes
// down to the cause a user can act on.
func shortJWTError(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature is invalid"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "wrong signing method"
	}
	return err.Error()
}
