package signaling

import (
	"errors"

	"github.com/matinee-dev/matinee/room"
)

// Matinee's own JSON-RPC error codes (docs/protocol.md, Errors).
const (
	CodeNotJoined     = 1001
	CodeAlreadyJoined = 1002
	CodeRoomFull      = 1003
	CodeNotFound      = 1004
	CodeForbidden     = 1005
	CodeBadSDP        = 1006
	CodeInvalidState  = 1007
	CodeRateLimited   = 1008
	// CodeConflict: a name or id is taken. Only the REST API creates
	// rooms today, so the WebSocket does not send it.
	CodeConflict = 1009
	// CodeMoved: the room is served by another node of the cluster; data
	// names it ({"reason":"moved","node","url"}) and the client joins there.
	CodeMoved = 1010
	// CodeUnavailable: the cluster's store (Redis) does not answer, so the
	// room cannot be placed; data has retryAfterMs.
	CodeUnavailable = 1011
)

// kindCodes is the JSON-RPC code of each kind of room error.
var kindCodes = map[room.Kind]int{
	room.KindNotJoined:     CodeNotJoined,
	room.KindAlreadyJoined: CodeAlreadyJoined,
	room.KindRoomFull:      CodeRoomFull,
	room.KindNotFound:      CodeNotFound,
	room.KindForbidden:     CodeForbidden,
	room.KindBadSDP:        CodeBadSDP,
	room.KindInvalidState:  CodeInvalidState,
	room.KindRateLimited:   CodeRateLimited,
	room.KindInvalidField:  CodeInvalidParams,
	room.KindConflict:      CodeConflict,
	room.KindMoved:         CodeMoved,
	room.KindUnavailable:   CodeUnavailable,
}

// CodeOf returns the JSON-RPC error code of a room error kind
// (CodeInternal for KindNone or an unknown kind).
func CodeOf(k room.Kind) int {
	if c, ok := kindCodes[k]; ok {
		return c
	}
	return CodeInternal
}

// toRPCError is the error response for a handler's error.
func toRPCError(err error) *rpcError {
	if err == nil {
		return nil
	}
	var re *rpcError
	if errors.As(err, &re) {
		return re
	}
	roomErr, ok := room.AsError(err)
	if !ok {
		return &rpcError{Code: CodeInternal, Message: "internal error: " + err.Error()}
	}
	out := &rpcError{Code: CodeOf(roomErr.Kind), Message: roomErr.Message}
	if roomErr.Kind == room.KindInvalidField {
		out.Message = "invalid params: " + out.Message
	}
	data := map[string]any{}
	if roomErr.Field != "" {
		data["field"] = roomErr.Field
	}
	if roomErr.Reason != "" {
		data["reason"] = roomErr.Reason
	}
	if roomErr.RetryAfterMs > 0 {
		data["retryAfterMs"] = roomErr.RetryAfterMs
	}
	if roomErr.Node != "" {
		data["node"], data["url"] = roomErr.Node, roomErr.URL
	}
	if len(data) > 0 {
		out.Data = data
	}
	return out
}
