// Package signaling is Matinee's WebSocket protocol: JSON-RPC 2.0 at
// GET /ws, described in docs/protocol.md. It decodes requests, calls the
// room layer, and writes responses and notifications in order.
package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// JSON-RPC 2.0 error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603
)

type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

type notification struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  any    `json:"params,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *rpcError) Error() string { return e.Message }

func errParams(format string, args ...any) *rpcError {
	return &rpcError{Code: CodeInvalidParams, Message: "invalid params: " + fmt.Sprintf(format, args...)}
}

// parseRequest decodes one frame; a non-nil error is the response to send.
func parseRequest(data []byte) (*request, *rpcError) {
	trimmed := bytes.TrimSpace(data)
	if !json.Valid(trimmed) {
		return nil, &rpcError{Code: CodeParseError, Message: "parse error: not valid JSON"}
	}
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return nil, &rpcError{Code: CodeInvalidRequest, Message: "invalid request: batches are not supported"}
	}
	var req request
	if err := json.Unmarshal(trimmed, &req); err != nil {
		return nil, &rpcError{Code: CodeInvalidRequest, Message: "invalid request: " + err.Error()}
	}
	if req.JSONRPC != "2.0" {
		return &req, &rpcError{Code: CodeInvalidRequest, Message: `invalid request: "jsonrpc" must be "2.0"`}
	}
	if req.Method == "" {
		return &req, &rpcError{Code: CodeInvalidRequest, Message: `invalid request: "method" is required`}
	}
	if len(req.ID) > 0 {
		switch req.ID[0] {
		case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		case 'n': // null id: treated as a notification would be ambiguous; answer it
		default:
			// JSON-RPC 2.0 §5: an id that cannot be read is answered
			// with a null one, not echoed.
			req.ID = nil
			return &req, &rpcError{Code: CodeInvalidRequest, Message: `invalid request: "id" must be a string or number`}
		}
	}
	return &req, nil
}

// decodeParams fills v from params, naming the offending field on error.
func decodeParams(params json.RawMessage, v any) *rpcError {
	if len(params) == 0 || string(params) == "null" {
		params = []byte("{}")
	}
	if params[0] != '{' {
		return errParams("params must be an object")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errParams("%q must be %s, not %s", te.Field, jsType(te.Type.Kind().String()), te.Value)
		}
		return errParams("%v", err)
	}
	return nil
}

func jsType(goKind string) string {
	switch {
	case goKind == "string":
		return "a string"
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"), strings.HasPrefix(goKind, "float"):
		return "a number"
	case goKind == "bool":
		return "a boolean"
	case goKind == "slice":
		return "an array"
	case goKind == "ptr", goKind == "struct", goKind == "map":
		return "an object"
	}
	return goKind
}

// required reports a missing string field by name.
func required(fields ...string) *rpcError {
	for i := 0; i+1 < len(fields); i += 2 {
		if strings.TrimSpace(fields[i+1]) == "" {
			return errParams("%q is required", fields[i])
		}
	}
	return nil
}
