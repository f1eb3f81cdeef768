package signaling

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/matinee-dev/matinee/room"
)

// TestRoomKindsMapToDocumentedCodes: each kind of room error goes out
// with the JSON-RPC code it always had, which docs/protocol.md lists, and
// with the data a client acts on.
func TestRoomKindsMapToDocumentedCodes(t *testing.T) {
	md, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[int]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\| (-?\d+) \| `).FindAllStringSubmatch(string(md), -1) {
		c, _ := strconv.Atoi(m[1])
		documented[c] = true
	}
	// The wire codes clients know; they may not change.
	want := map[room.Kind]int{
		room.KindNotJoined: 1001, room.KindAlreadyJoined: 1002, room.KindRoomFull: 1003, room.KindNotFound: 1004,
		room.KindForbidden: 1005, room.KindBadSDP: 1006, room.KindInvalidState: 1007, room.KindRateLimited: 1008,
		room.KindInvalidField: -32602, room.KindConflict: 1009, room.KindMoved: 1010, room.KindUnavailable: 1011,
	}
	if len(want) != len(room.Kinds) {
		t.Fatalf("room has %d kinds, this test knows %d", len(room.Kinds), len(want))
	}
	for _, k := range room.Kinds {
		code := CodeOf(k)
		if code != want[k] {
			t.Errorf("kind %s: code %d, want %d", k, code, want[k])
		}
		if !documented[code] {
			t.Errorf("kind %s: code %d is not in docs/protocol.md's table", k, code)
		}
		got := toRPCError(fmt.Errorf("wrapped: %w", &room.Error{Kind: k, Message: "m"}))
		if got.Code != code || got.Data != nil {
			t.Errorf("kind %s: %+v", k, got)
		}
	}
	if CodeOf(room.KindNone) != CodeInternal || !documented[CodeInternal] {
		t.Errorf("KindNone: %d", CodeOf(room.KindNone))
	}

	// The data members, as docs/protocol.md shows them.
	for _, c := range []struct {
		err  *room.Error
		want string
	}{
		{&room.Error{Kind: room.KindInvalidField, Message: `"text" is required`, Field: "text"},
			`{"code":-32602,"message":"invalid params: \"text\" is required","data":{"field":"text"}}`},
		{&room.Error{Kind: room.KindInvalidField, Message: `"spatialLayer" must be 0, 1 or 2`},
			`{"code":-32602,"message":"invalid params: \"spatialLayer\" must be 0, 1 or 2"}`},
		{&room.Error{Kind: room.KindForbidden, Message: "no", Reason: room.ReasonLocked},
			`{"code":1005,"message":"no","data":{"reason":"locked"}}`},
		{&room.Error{Kind: room.KindRateLimited, Message: "slow", RetryAfterMs: 800},
			`{"code":1008,"message":"slow","data":{"retryAfterMs":800}}`},
		{&room.Error{Kind: room.KindRateLimited, Message: "slow", Reason: room.ReasonTooManyAttempts, RetryAfterMs: 12000},
			`{"code":1008,"message":"slow","data":{"reason":"too_many_attempts","retryAfterMs":12000}}`},
		{&room.Error{Kind: room.KindMoved, Message: "elsewhere", Reason: room.ReasonMoved, Node: "n2", URL: "https://10.0.0.2:8443"},
			`{"code":1010,"message":"elsewhere","data":{"node":"n2","reason":"moved","url":"https://10.0.0.2:8443"}}`},
		{&room.Error{Kind: room.KindUnavailable, Message: "redis", Reason: room.ReasonClusterDown, RetryAfterMs: 1000},
			`{"code":1011,"message":"redis","data":{"reason":"cluster_unavailable","retryAfterMs":1000}}`},
	} {
		b, _ := json.Marshal(toRPCError(c.err))
		if string(b) != c.want {
			t.Errorf("%+v went out as %s, want %s", c.err, b, c.want)
		}
	}
}
