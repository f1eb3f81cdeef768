package rest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// openAPIBase is the OpenAPI 3 document without its paths: info,
// security schemes, shared responses, path parameters and schemas. The
// paths come from the route table, so no route goes undocumented.
//
//go:embed openapi.json
var openAPIBase []byte

// Document is the API's OpenAPI 3 document: openapi.json with the paths
// of the route table.
func (a *API) Document() ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(openAPIBase, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	paths := map[string]map[string]any{}
	for _, rt := range a.routes {
		p := paths[rt.Path]
		if p == nil {
			p = map[string]any{}
			if params := pathParams(rt.Path); len(params) > 0 {
				p["parameters"] = params
			}
			paths[rt.Path] = p
		}
		op, err := operation(rt)
		if err != nil {
			return nil, err
		}
		p[strings.ToLower(rt.Method)] = op
	}
	b, err := json.Marshal(paths)
	if err != nil {
		return nil, fmt.Errorf("openapi paths: %w", err)
	}
	doc["paths"] = b
	return json.MarshalIndent(doc, "", "  ")
}

// pathParams refers to components/parameters for each {name} of a path.
func pathParams(path string) []map[string]string {
	var out []map[string]string
	for _, seg := range strings.Split(path, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			name = strings.TrimSuffix(strings.TrimSuffix(name, "}"), "...")
			out = append(out, map[string]string{"$ref": "#/components/parameters/" + name})
		}
	}
	return out
}

// operation is one route as an OpenAPI operation.
func operation(rt Route) (map[string]any, error) {
	op := map[string]any{"operationId": rt.OperationID, "summary": rt.Summary}
	if rt.Description != "" {
		op["description"] = rt.Description
	}
	switch rt.Auth {
	case Public:
		op["security"] = []any{}
	case KeyOrToken, KeyOrHost:
		op["security"] = []map[string][]string{{"apiKey": {}}, {"joinToken": {}}}
	}
	schema := func(s Schema) (json.RawMessage, error) {
		if !json.Valid([]byte(s)) {
			return nil, fmt.Errorf("%s %s: schema is not JSON: %s", rt.Method, rt.Path, s)
		}
		return json.RawMessage(s), nil
	}
	if rt.Query != "" {
		q, err := schema(rt.Query)
		if err != nil {
			return nil, err
		}
		op["parameters"] = q
	}
	errs := append([]int(nil), rt.Errors...)
	if rt.Auth != Public {
		errs = append(errs, http.StatusUnauthorized)
	}
	if rt.Body != "" {
		s, err := schema(rt.Body)
		if err != nil {
			return nil, err
		}
		op["requestBody"] = map[string]any{"required": rt.BodyRequired, "content": map[string]any{"application/json": map[string]any{"schema": s}}}
		errs = append(errs, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity)
	}
	ok := map[string]any{"description": rt.Answer}
	if rt.Result != "" {
		s, err := schema(rt.Result)
		if err != nil {
			return nil, err
		}
		ok["content"] = map[string]any{"application/json": map[string]any{"schema": s}}
	}
	responses := map[string]any{strconv.Itoa(rt.Status): ok}
	sort.Ints(errs)
	for _, st := range errs {
		responses[strconv.Itoa(st)] = map[string]string{"$ref": "#/components/responses/" + strconv.Itoa(st)}
	}
	op["responses"] = responses
	return op, nil
}

func (a *API) openAPI(w http.ResponseWriter, r *http.Request) {
	doc, err := a.Document()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(doc)
}
