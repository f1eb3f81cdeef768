package rest

import (
	"errors"
	"net/http"

	"github.com/matinee-dev/matinee/recorder"
	"github.com/matinee-dev/matinee/room"
)

// Error is an answer the API refuses a request with: an HTTP status and
// the body's code, message and field (docs/api.md, Errors).
type Error struct {
	Status  int
	Code    string
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Message }

// FieldError is a 422 invalid_field naming the field at fault.
func FieldError(field, message string) *Error {
	return &Error{http.StatusUnprocessableEntity, "invalid_field", field, message}
}

// NotFound is a 404 not_found.
func NotFound(message string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: message}
}

// Forbidden is a 403 forbidden: the caller is known but may not do this.
func Forbidden(message string) *Error {
	return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: message}
}

// kindStatus is the HTTP status and code of each kind of room error. A
// kind the REST API cannot meet (not_joined: it has no memberships) still
// has one, so that a change in room cannot make the API answer 500.
var kindStatus = map[room.Kind]struct {
	status int
	code   string
}{
	room.KindNotJoined:     {http.StatusConflict, "invalid_state"},
	room.KindAlreadyJoined: {http.StatusConflict, "invalid_state"},
	room.KindRoomFull:      {http.StatusConflict, "room_full"},
	room.KindNotFound:      {http.StatusNotFound, "not_found"},
	room.KindForbidden:     {http.StatusForbidden, "forbidden"},
	room.KindBadSDP:        {http.StatusBadRequest, "bad_sdp"},
	room.KindInvalidState:  {http.StatusConflict, "invalid_state"},
	room.KindRateLimited:   {http.StatusTooManyRequests, "rate_limited"},
	room.KindInvalidField:  {http.StatusUnprocessableEntity, "invalid_field"},
	room.KindConflict:      {http.StatusConflict, "room_exists"},
	// The cluster: a room on another node is forwarded or redirected
	// before it gets here; Redis away is 503.
	room.KindMoved:       {http.StatusServiceUnavailable, "moved"},
	room.KindUnavailable: {http.StatusServiceUnavailable, "cluster_unavailable"},
}

// StatusOf returns the HTTP status and error code of a room error kind
// (500 internal for KindNone).
func StatusOf(k room.Kind) (int, string) {
	if s, ok := kindStatus[k]; ok {
		return s.status, s.code
	}
	return http.StatusInternalServerError, "internal"
}

// toError is the one mapping of failures to answers: the API's own
// errors as they are, room errors by kind, the stores' and the
// recorder's by what they mean; anything else is a 500 (and ok false:
// a bug, to be logged).
func toError(err error) (e *Error, ok bool) {
	if errors.As(err, &e) {
		return e, true
	}
	if re, isRoom := room.AsError(err); isRoom {
		st, code := StatusOf(re.Kind)
		e := &Error{Status: st, Code: code, Field: re.Field, Message: re.Message}
		if re.Kind == room.KindConflict && e.Field == "" {
			e.Field = "id" // the only conflict: a room id that is taken
		}
		return e, st != http.StatusInternalServerError
	}
	switch {
	case errors.Is(err, room.ErrStore):
		return &Error{Status: http.StatusInsufficientStorage, Code: "insufficient_storage", Message: err.Error()}, true
	case errors.Is(err, recorder.ErrBadOptions):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "invalid_field", Message: err.Error()}, true
	case errors.Is(err, recorder.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}, true
	case errors.Is(err, recorder.ErrNoSpace):
		return &Error{Status: http.StatusInsufficientStorage, Code: "no_space", Message: err.Error()}, true
	case errors.Is(err, recorder.ErrNoFFmpeg):
		return &Error{Status: http.StatusServiceUnavailable, Code: "ffmpeg_missing", Message: err.Error()}, true
	case errors.Is(err, recorder.ErrClosed):
		return &Error{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: err.Error()}, true
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}, false
}
