package server_test

import (
	"testing"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/fulldisk"
)

// TestAPICreateRoomDiskFull: on a full disk POST /api/rooms answers 507
// and keeps no room; once there is space it answers 201, and every room
// it answered 201 for is there after a restart on the same data dir.
func TestAPICreateRoomDiskFull(t *testing.T) {
	dir := fulldisk.Mount(t, 8<<20)
	mk := func() *apiEnv {
		return startAPI(t, func(c *config.Config) { c.DataDir = dir; c.OpenRooms = false })
	}
	e := mk()
	e.ok("POST", "/api/rooms", map[string]any{"name": "Before"}, 201, nil)

	fill := fulldisk.Fill(t, dir)
	e.fails("POST", "/api/rooms", e.key, map[string]any{"name": "Lost"}, 507, "insufficient_storage", "no space left on device")
	e.fails("GET", "/api/rooms/lost", e.key, nil, 404, "not_found", "lost")
	var list struct {
		Rooms []roomJSON `json:"rooms"`
	}
	e.ok("GET", "/api/rooms", nil, 200, &list)
	if len(list.Rooms) != 1 || list.Rooms[0].ID != "before" {
		t.Fatalf("rooms after a refused create: %+v", list.Rooms)
	}
	fill.Free(t)
	e.ok("POST", "/api/rooms", map[string]any{"name": "After", "publicHLS": true}, 201, nil)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}

	e2 := mk()
	e2.ok("GET", "/api/rooms/before", nil, 200, nil)
	var after struct {
		PublicHLS bool `json:"publicHLS"`
	}
	e2.ok("GET", "/api/rooms/after", nil, 200, &after)
	if !after.PublicHLS {
		t.Error("publicHLS was not kept across the restart")
	}
	e2.fails("GET", "/api/rooms/lost", e2.key, nil, 404, "not_found", "lost")
}
