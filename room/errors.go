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
)

// Error is a failure the client caused, with the protocol's code.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
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
