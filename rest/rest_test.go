package rest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/room"
)

// document is the OpenAPI document of an API with the server's table.
func document(t *testing.T) (*API, map[string]any) {
	t.Helper()
	a := New(Config{})
	b, err := a.Document()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	return a, doc
}

// TestOpenAPIListsEveryRoute: the document has an operation for each
// route of the table and none other, with the auth and statuses the
// table says.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	a, doc := document(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi %q, want 3.x", v)
	}
	paths, _ := doc["paths"].(map[string]any)
	seen := map[string]bool{}
	for _, rt := range a.Routes() {
		key := rt.Method + " " + rt.Path
		if seen[key] {
			t.Errorf("%s is twice in the table", key)
		}
		seen[key] = true
		op, ok := paths[rt.Path].(map[string]any)[strings.ToLower(rt.Method)].(map[string]any)
		if !ok {
			t.Errorf("%s is not in the document", key)
			continue
		}
		if op["operationId"] != rt.OperationID || rt.OperationID == "" || rt.Summary == "" {
			t.Errorf("%s: operationId %v, summary %q", key, op["operationId"], rt.Summary)
		}
		responses, _ := op["responses"].(map[string]any)
		if _, ok := responses[strconv.Itoa(rt.Status)]; !ok {
			t.Errorf("%s: no %d answer", key, rt.Status)
		}
		_, has401 := responses["401"]
		if has401 != (rt.Auth != Public) {
			t.Errorf("%s: 401 documented %v, auth %v", key, has401, rt.Auth)
		}
		_, has413 := responses["413"]
		_, has422 := responses["422"]
		if rt.Body != "" && (!has413 || !has422) {
			t.Errorf("%s takes a body but documents no 413 or 422", key)
		}
	}
	for path, ops := range paths {
		for m := range ops.(map[string]any) {
			if m != "parameters" && !seen[strings.ToUpper(m)+" "+path] {
				t.Errorf("the document has %s %s, which is not in the table", m, path)
			}
		}
	}
	for _, want := range []string{
		"POST /api/rooms/{id}/recordings", "GET /api/rooms/{id}/recordings", "GET /api/rooms/{id}/recordings/{rid}",
		"DELETE /api/rooms/{id}/recordings/{rid}", "POST /api/rooms/{id}/ingests", "DELETE /api/rooms/{id}/ingests/{iid}",
	} {
		if !seen[want] {
			t.Errorf("%s is not in the table", want)
		}
	}
}

// TestOpenAPIRefsResolve: every $ref of the document (schemas, shared
// responses, path parameters) names something it has.
func TestOpenAPIRefsResolve(t *testing.T) {
	_, doc := document(t)
	var walk func(v any)
	n := 0
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				n++
				var at any = doc
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, _ := at.(map[string]any)
					at = m[part]
				}
				if at == nil {
					t.Errorf("$ref %s resolves to nothing", ref)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if n < 50 {
		t.Fatalf("only %d $refs: the walk is not reaching the document", n)
	}
}

// TestExtraRoutesAreServedAndDocumented: a route the server adds is in
// the table, the document and the mux, behind the same gate.
func TestExtraRoutesAreServedAndDocumented(t *testing.T) {
	a := New(Config{APIKey: "mk_test", Extra: []Route{{Method: "GET", Path: "/api/extra", Auth: Admin,
		Handler:     func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, http.StatusOK, map[string]any{"ok": true}) },
		OperationID: "extra", Summary: "An extra route", Status: 200, Answer: "OK", Result: `{"type":"object"}`}}})
	b, err := a.Document()
	if err != nil || !bytes.Contains(b, []byte(`"operationId": "extra"`)) {
		t.Fatalf("extra route not documented: %v", err)
	}
	mux := http.NewServeMux()
	a.Mount(mux)
	for _, c := range []struct {
		key    string
		status int
	}{{"", 401}, {"mk_wrong", 401}, {"mk_test", 200}} {
		r := httptest.NewRequest("GET", "/api/extra", nil)
		if c.key != "" {
			r.Header.Set("Authorization", "Bearer "+c.key)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != c.status || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("key %q: %d %v %s, want %d", c.key, w.Code, w.Header(), w.Body, c.status)
		}
	}
}

// TestRoomKindsMapToDocumentedStatus: each kind of room error answers the
// status and code docs/api.md gives it, and the document lists every kind.
func TestRoomKindsMapToDocumentedStatus(t *testing.T) {
	md, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (\\d{3}) \\| `([a-z_]+)`")
	documented := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(string(md), -1) {
		documented[m[1]] = [2]string{m[2], m[3]}
	}
	for _, k := range room.Kinds {
		doc, ok := documented[k.String()]
		if !ok {
			t.Errorf("docs/api.md does not say how kind %s is answered", k)
			continue
		}
		st, code := StatusOf(k)
		if strconv.Itoa(st) != doc[0] || code != doc[1] {
			t.Errorf("kind %s answers %d %s; docs/api.md says %s %s", k, st, code, doc[0], doc[1])
		}
		// Through the one mapping, with what the room error carries.
		w := httptest.NewRecorder()
		(&API{cfg: Config{Logger: discard()}}).fail(w, httptest.NewRequest("GET", "/api/x", nil), &room.Error{Kind: k, Message: "m", Field: "f"})
		var body errorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != st || body.Error.Code != code || body.Error.Message != "m" {
			t.Errorf("kind %s: %d %s", k, w.Code, w.Body)
		}
		if body.Error.Field != "f" {
			t.Errorf("kind %s: field %q, want the room error's", k, body.Error.Field)
		}
	}
	if st, code := StatusOf(room.KindNone); st != 500 || code != "internal" {
		t.Errorf("KindNone: %d %s", st, code)
	}
}
