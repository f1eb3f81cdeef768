package server

import (
	"crypto/subtle"
	"fmt"
	"net/http"

	"github.com/matinee-dev/matinee/room"
	"github.com/matinee-dev/matinee/whip"
)

// TokenValidator checks a join token that a WHIP publisher (publish) or a
// WHEP viewer presents as its bearer token for room; nil lets it in. A
// token it accepts is also handed to the room as the publisher's join
// token, which names the member and its role.
type TokenValidator func(room, token string, publish bool) error

// SetTokenValidator replaces how WHIP and WHEP check tokens other than the
// API key (which is always accepted). Without one, join tokens are checked
// with room.Manager.VerifyToken, and a viewer's may not publish.
func (s *Server) SetTokenValidator(v TokenValidator) {
	if v == nil {
		s.tokens.Store(nil)
		return
	}
	s.tokens.Store(&v)
}

func (s *Server) mountWHIP() {
	s.whip = whip.New(whip.Config{
		Rooms:      s.rooms,
		Authorize:  s.authorizeMedia,
		MaxViewers: s.cfg.WHEPMaxViewers,
		Logger:     s.log,
	})
	s.whip.Register(s.mux)
}

// authorizeMedia admits a WHIP/WHEP request that carries the API key or a
// join token the validator accepts.
func (s *Server) authorizeMedia(_ *http.Request, a whip.Access) (whip.Grant, error) {
	if a.Token == "" {
		return whip.Grant{}, fmt.Errorf("%w: missing Authorization: Bearer <api key or join token>", whip.ErrUnauthorized)
	}
	if subtle.ConstantTimeCompare([]byte(a.Token), []byte(s.apiKey)) == 1 {
		return whip.Grant{Admin: true}, nil
	}
	if v := s.tokens.Load(); v != nil {
		if err := (*v)(a.Room, a.Token, a.Publish); err != nil {
			return whip.Grant{}, fmt.Errorf("%w: %v", whip.ErrUnauthorized, err)
		}
		return whip.Grant{}, nil
	}
	claims, err := s.rooms.VerifyToken(a.Room, a.Token)
	if err != nil {
		return whip.Grant{}, fmt.Errorf("%w: %v", whip.ErrUnauthorized, err)
	}
	if a.Publish && claims.Role == room.RoleViewer {
		return whip.Grant{}, fmt.Errorf("%w: the token's role %q may not publish", whip.ErrUnauthorized, claims.Role)
	}
	return whip.Grant{}, nil
}
