package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// WriteJSON writes v as the answer with status. HTML is not escaped:
// messages read "<api key>", not "\u003capi key\u003e".
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// errorBody is the API's one error shape:
// {"error":{"code","message","field"}}, field only when one is at fault.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// WriteError writes an error in the API's one shape.
func WriteError(w http.ResponseWriter, e *Error) {
	WriteJSON(w, e.Status, errorBody{errorDetail{Code: e.Code, Message: e.Message, Field: e.Field}})
}

// Decode reads a JSON object of at most limit bytes into v: 413 past
// the limit, 400 for malformed JSON or not an object, 422 for an unknown
// field or a value of the wrong type (naming the field). An empty body is
// an empty object.
func Decode(w http.ResponseWriter, r *http.Request, limit int64, v any) *Error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &Error{http.StatusRequestEntityTooLarge, "body_too_large", "", "request body is larger than " + strconv.FormatInt(limit, 10) + " bytes (--api-max-body)"}
	case err != nil:
		return &Error{http.StatusBadRequest, "bad_request", "", "reading the body: " + err.Error()}
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		b = []byte("{}")
	}
	if !json.Valid(b) {
		return &Error{http.StatusBadRequest, "bad_json", "", "the body is not valid JSON"}
	}
	if b[0] != '{' {
		return &Error{http.StatusBadRequest, "bad_json", "", "the body must be a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return FieldError(te.Field, strconv.Quote(te.Field)+" must be "+jsonKind(te.Type.String())+", not "+te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return FieldError(f, "unknown field "+strconv.Quote(f))
	}
	return &Error{http.StatusBadRequest, "bad_json", "", err.Error()}
}

// jsonKind names a Go type as JSON calls it.
func jsonKind(goType string) string {
	t := strings.TrimPrefix(goType, "*")
	switch {
	case t == "string":
		return "a string"
	case t == "bool":
		return "a boolean"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "float"), strings.HasPrefix(t, "uint"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	}
	return "an object"
}
