package room

import (
	"errors"
	"fmt"

	"github.com/matinee-dev/matinee/sfu"
)

// Error codes shared by the WebSocket protocol (docs/protocol.md).
const (
	CodeNotJoined     = 1001
	CodeAlreadyJoined = 1002
	CodeRoomFull      = 1003
	CodeNotFound      = 1004
	CodeForbidden     = 1005
	CodeBadSDP        = 1006
	CodeInvalidState  = 1007
	CodeRateLimited   = 1008
	// CodeInvalidParams is JSON-RPC's "invalid params"; the REST API
	// answers it with 422 and the message names the field.
	CodeInvalidParams = -32602
	// CodeConflict is only used by the REST API (409): the room id is taken.
	CodeConflict = 1009
	// CodeMoved: the room is served by another node of the cluster; data
	// names it ({"reason":"moved","node","url"}) and the client joins there.
	CodeMoved = 1010
	// CodeUnavailable: the cluster's store (Redis) does not answer, so the
	// room cannot be placed; data has retryAfterMs.
	CodeUnavailable = 1011
)

// Reasons carried in Error.Data for errors a client reacts to differently
// (ask for a password, show "locked", drop a stale token...).
const (
	ReasonPasswordRequired = "password_required"
	ReasonWrongPassword    = "wrong_password"
	ReasonLocked           = "locked"
	ReasonTokenInvalid     = "token_invalid"
	ReasonTokenExpired     = "token_expired"
	ReasonTokenOtherRoom   = "token_other_room"
	ReasonNotAllowed       = "not_allowed"
)

// Error is a failure the client caused, with the protocol's code.
type Error struct {
	Code    int
	Message string
	// Data, when set, is sent as the JSON-RPC error's data member, e.g.
	// {"reason":"password_required"} or {"retryAfterMs":800}.
	Data any
	// CloseConn asks the transport to close the connection after sending
	// the error (a client that keeps guessing passwords).
	CloseConn bool
}

func (e *Error) Error() string { return e.Message }

func errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// forbidden is a 1005 error with a machine-readable reason.
func forbidden(reason, format string, args ...any) *Error {
	return &Error{Code: CodeForbidden, Message: fmt.Sprintf(format, args...), Data: map[string]any{"reason": reason}}
}

// invalidField is an "invalid params" error naming the field.
func invalidField(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("invalid params: %q ", field) + fmt.Sprintf(format, args...), Data: map[string]any{"field": field}}
}

// fromSFU turns the media core's errors into protocol errors.
func fromSFU(err error) error {
	var re *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return err
	case errors.Is(err, sfu.ErrBadSDP):
		return &Error{Code: CodeBadSDP, Message: err.Error()}
	case errors.Is(err, sfu.ErrNotFound):
		return &Error{Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, sfu.ErrInvalidState), errors.Is(err, sfu.ErrClosed):
		return &Error{Code: CodeInvalidState, Message: err.Error()}
	}
	return err
}
