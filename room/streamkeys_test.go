package room

import (
	"os"
	"strings"
	"testing"
)

// TestStreamKeys: a key finds its room, survives a restart as a hash
// only (the store file never holds the key), and publishes no more once
// revoked; keys of unknown rooms are refused without opening one.
func TestStreamKeys(t *testing.T) {
	path := t.TempDir() + "/rooms.json"
	m := newManager(t, func(c *Config) { c.StorePath = path })
	if _, err := m.CreateRoom(RoomSpec{ID: "tv", Name: "TV"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.NewStreamKey("nope"); err == nil {
		t.Fatal("a key for a room that does not exist")
	}
	id, key, err := m.NewStreamKey("tv")
	if err != nil || !strings.HasPrefix(id, "sk_") || len(key) < 32 {
		t.Fatalf("NewStreamKey: %q %q %v", id, key, err)
	}
	id2, key2, _ := m.NewStreamKey("tv")
	if r, k, ok := m.LookupStreamKey(key); !ok || r != "tv" || k != id {
		t.Fatalf("lookup: %q %q %v", r, k, ok)
	}
	if _, _, ok := m.LookupStreamKey(key + "x"); ok {
		t.Fatal("a wrong key found a room")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), key) || !strings.Contains(string(b), hashStreamKey(key)) {
		t.Fatalf("the store holds the key, or not its hash:\n%s", b)
	}

	if found, err := m.RevokeStreamKey("tv", id); !found || err != nil {
		t.Fatalf("revoke: %v %v", found, err)
	}
	m2 := newManager(t, func(c *Config) { c.StorePath = path })
	if err := m2.LoadRooms(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := m2.LookupStreamKey(key); ok {
		t.Error("a revoked key publishes after a restart")
	}
	if r, k, ok := m2.LookupStreamKey(key2); !ok || r != "tv" || k != id2 || !m2.HasStreamKey("tv", id2) {
		t.Errorf("a kept key after a restart: %q %q %v", r, k, ok)
	}
	if found, _ := m2.RevokeStreamKey("tv", id); found {
		t.Error("revoked twice")
	}
	if n := len(m2.Rooms()); n != 1 {
		t.Errorf("%d rooms", n)
	}
}
