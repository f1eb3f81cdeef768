package server

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's OpenAPI 3 description, served at /api/openapi.json.
//
//go:embed api_openapi.json
var openAPI []byte

func (s *Server) apiOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
