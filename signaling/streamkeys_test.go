package signaling_test

import (
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/config"
)

// A host makes and revokes RTMP stream keys over its WebSocket; the keys
// are the room's, as the REST API's are.
func TestStreamKeyMethods(t *testing.T) {
	e := start(t, func(c *config.Config) { c.RTMPAddr = "127.0.0.1:1936" })
	host := e.dial(t)
	host.mustCall("join", map[string]any{"room": "stage", "name": "Hana"}, nil)
	guest := e.dial(t)
	guest.mustCall("join", map[string]any{"room": "stage", "name": "Gus"}, nil)

	if re := guest.callErr("createStreamKey", nil, 1005); !strings.Contains(re.Message, "only the host") {
		t.Errorf("guest: %q", re.Message)
	}
	var k struct{ ID, Room, Type, URL, StreamKey string }
	host.mustCall("createStreamKey", nil, &k)
	// The URL is --public-url's host and the RTMP port.
	if k.Room != "stage" || k.Type != "rtmp" || k.URL != "rtmp://tv.example:1936/live" || !strings.HasPrefix(k.ID, "sk_") {
		t.Fatalf("createStreamKey: %+v", k)
	}
	if room, id, ok := e.srv.Rooms().LookupStreamKey(k.StreamKey); !ok || room != "stage" || id != k.ID {
		t.Fatalf("the key does not publish into the room: %q %q %v", room, id, ok)
	}
	host.callErr("createStreamKey", []int{1}, -32602) // params must be an object
	guest.callErr("revokeStreamKey", map[string]any{"id": k.ID}, 1005)
	host.callErr("revokeStreamKey", map[string]any{}, -32602)
	host.callErr("revokeStreamKey", map[string]any{"id": k.StreamKey}, -32602)
	host.callErr("revokeStreamKey", map[string]any{"id": "sk_000000000000"}, 1004)
	host.mustCall("revokeStreamKey", map[string]any{"id": k.ID}, nil)
	if _, _, ok := e.srv.Rooms().LookupStreamKey(k.StreamKey); ok {
		t.Fatal("revoked key still publishes")
	}
	host.callErr("revokeStreamKey", map[string]any{"id": k.ID}, 1004)
}
