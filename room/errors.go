package room

import (
	"errors"
	"fmt"

	"github.com/matinee-dev/matinee/sfu"
)

// Kind is what sort of failure an Error is. room knows no wire format:
// each protocol edge maps kinds to its own codes (signaling to JSON-RPC
// error codes, rest to HTTP statuses, whip to WHIP's statuses).
type Kind int

// The kinds of failure a client causes.
const (
	// KindNone is not a room error (a bug, an I/O failure).
	KindNone Kind = iota
	// KindNotJoined: the call needs a membership the caller does not hold.
	KindNotJoined
	// KindAlreadyJoined: the caller is a member already.
	KindAlreadyJoined
	// KindRoomFull: the room has its maximum of members.
	KindRoomFull
	// KindNotFound: an unknown room, member, transport, producer, key...
	KindNotFound
	// KindForbidden: wrong password or token, or the role may not do
	// this; Reason says which.
	KindForbidden
	// KindBadSDP: an offer or answer the media core cannot use.
	KindBadSDP
	// KindInvalidState: the request is valid but not now (no video
	// loaded, a transport exists already, shutting down).
	KindInvalidState
	// KindRateLimited: too fast; RetryAfterMs says when to try again.
	KindRateLimited
	// KindInvalidField: a parameter is missing, malformed or out of
	// range; Field names it when one is at fault.
	KindInvalidField
	// KindConflict: the name or id asked for is taken.
	KindConflict
	// KindMoved: the room is served by another node of the cluster;
	// Node and URL name it, and the client goes there.
	KindMoved
	// KindUnavailable: the cluster's store (Redis) does not answer, so
	// the room cannot be placed; RetryAfterMs says when to try again.
	KindUnavailable
)

// Kinds lists every kind a room Error can have, for the protocol edges'
// tests that each is mapped.
var Kinds = []Kind{KindNotJoined, KindAlreadyJoined, KindRoomFull, KindNotFound, KindForbidden,
	KindBadSDP, KindInvalidState, KindRateLimited, KindInvalidField, KindConflict, KindMoved, KindUnavailable}

var kindNames = map[Kind]string{
	KindNone: "none", KindNotJoined: "not_joined", KindAlreadyJoined: "already_joined", KindRoomFull: "room_full",
	KindNotFound: "not_found", KindForbidden: "forbidden", KindBadSDP: "bad_sdp", KindInvalidState: "invalid_state",
	KindRateLimited: "rate_limited", KindInvalidField: "invalid_field", KindConflict: "conflict",
	KindMoved: "moved", KindUnavailable: "unavailable",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Reasons carried in Error.Reason for errors a client reacts to
// differently (ask for a password, show "locked", drop a stale token...).
const (
	ReasonPasswordRequired = "password_required"
	ReasonWrongPassword    = "wrong_password"
	ReasonLocked           = "locked"
	ReasonTokenInvalid     = "token_invalid"
	ReasonTokenExpired     = "token_expired"
	ReasonTokenOtherRoom   = "token_other_room"
	ReasonNotAllowed       = "not_allowed"
	ReasonMoved            = "moved"               // KindMoved
	ReasonClusterDown      = "cluster_unavailable" // KindUnavailable
	// ReasonNodeDown: the room's node stopped answering and its lease has
	// not run out yet; another node takes the room once it has.
	ReasonNodeDown = "node_unavailable" // KindUnavailable
)

// Error is a failure the client caused.
type Error struct {
	Kind Kind
	// Message says what failed, for people; for KindInvalidField it
	// starts with the quoted field when there is one ("\"ttl\" must be...").
	Message string
	// Field is the parameter at fault (KindInvalidField), if one is.
	Field string
	// Reason is a machine-readable refinement (the Reason* constants).
	Reason string
	// RetryAfterMs is how long to wait before trying again
	// (KindRateLimited, KindUnavailable).
	RetryAfterMs int64
	// Node and URL are the cluster node that serves the room
	// (KindMoved).
	Node, URL string
	// CloseConn asks the transport to close the connection after sending
	// the error (a client that keeps guessing passwords).
	CloseConn bool
}

func (e *Error) Error() string { return e.Message }

// KindOf returns err's kind: KindNone when err is not a room Error.
func KindOf(err error) Kind {
	var re *Error
	if errors.As(err, &re) {
		return re.Kind
	}
	return KindNone
}

// AsError returns err's room Error, if it has one.
func AsError(err error) (*Error, bool) {
	var re *Error
	ok := errors.As(err, &re)
	return re, ok
}

func errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// forbidden is a KindForbidden error with a machine-readable reason.
func forbidden(reason, format string, args ...any) *Error {
	return &Error{Kind: KindForbidden, Message: fmt.Sprintf(format, args...), Reason: reason}
}

// invalidField is a KindInvalidField error naming the field.
func invalidField(field, format string, args ...any) *Error {
	return &Error{Kind: KindInvalidField, Message: fmt.Sprintf("%q ", field) + fmt.Sprintf(format, args...), Field: field}
}

// fromSFU turns the media core's errors into room errors.
func fromSFU(err error) error {
	var re *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return err
	case errors.Is(err, sfu.ErrBadSDP):
		return &Error{Kind: KindBadSDP, Message: err.Error()}
	case errors.Is(err, sfu.ErrNotFound):
		return &Error{Kind: KindNotFound, Message: err.Error()}
	case errors.Is(err, sfu.ErrInvalidState), errors.Is(err, sfu.ErrClosed):
		return &Error{Kind: KindInvalidState, Message: err.Error()}
	}
	return err
}
