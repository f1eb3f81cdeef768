package room

import (
	"encoding/json"
	"fmt"
	"time"
)

// In a cluster (docs/cluster.md) each room lives on one node. The server
// plugs the cluster in through ClusterHooks; the room package only asks
// before a room is opened, created or joined here, and hands over the
// records of its persistent rooms instead of (or besides) the store file.

// ClusterHooks connect the manager to a cluster of nodes.
type ClusterHooks struct {
	// Claim is asked before a room is joined or opened (create false) or
	// made through the API (create true) on this node. An error keeps
	// it off: a *Error of KindMoved names the node that serves it, one
	// of KindConflict (create) an id taken elsewhere. When a stored
	// room is free, Claim brings it here (ImportRoom) before answering.
	Claim func(id string, create bool) error
	// Saved receives the records of the persistent rooms (id → JSON, as
	// ImportRoom takes them) after every change; an error fails the
	// change as a failed store write does (ErrStore, 507).
	Saved func(records map[string][]byte) error
	// Nodes lists the base URLs of the other serving nodes, for the join
	// result: where a client goes when its node stops answering.
	Nodes func() []string
	// SaveState keeps a room's party state (state.go) after it changed;
	// LoadState brings it back (nil, nil: none kept) before a room new
	// to this node is joined; DropState deletes it when the room ended
	// for good. All three or none.
	SaveState func(id string, state []byte) error
	LoadState func(id string) ([]byte, error)
	DropState func(id string) error
	// TakeoverGrace is the least time the members a room's state brings
	// back stay away (Config.Grace if longer). They reach the node that
	// took the room at the pace of their retries, a second or so apart,
	// once their pages notice their node died: a shorter grace gives the
	// room to whoever retried first, and the others (the host among them)
	// come back as new guests.
	TakeoverGrace time.Duration
}

// otherNodes is ClusterHooks.Nodes, or nothing on a node on its own.
func (m *Manager) otherNodes() []string {
	if m.cfg.Cluster.Nodes == nil {
		return nil
	}
	return m.cfg.Cluster.Nodes()
}

// claim asks the cluster, if any, whether room id may be served here.
func (m *Manager) claim(id string, create bool) error {
	if m.cfg.Cluster.Claim == nil || !ValidID(id) {
		return nil // an invalid id fails later, with its own error
	}
	return m.cfg.Cluster.Claim(id, create)
}

// saveToCluster hands the persistent rooms' records to the cluster.
func (m *Manager) saveToCluster(rooms []storedRoom) error {
	recs := make(map[string][]byte, len(rooms))
	for _, sr := range rooms {
		b, err := json.Marshal(sr)
		if err != nil {
			return fmt.Errorf("%w: room %s: %w", ErrStore, sr.ID, err)
		}
		recs[sr.ID] = b
	}
	if err := m.cfg.Cluster.Saved(recs); err != nil {
		m.log.Error("room store: cluster save failed", "err", err)
		return fmt.Errorf("%w: cluster: %w", ErrStore, err)
	}
	return nil
}

// ImportRoom brings back a persistent room from its record (the JSON
// ClusterHooks.Saved received, from this node or another that held it
// before). A room of that id here already is left as it is.
func (m *Manager) ImportRoom(record []byte) error {
	var sr storedRoom
	if err := json.Unmarshal(record, &sr); err != nil {
		return fmt.Errorf("import room: damaged record: %w", err)
	}
	if !ValidID(sr.ID) {
		return fmt.Errorf("import room: bad id %q", sr.ID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.waitClosedLocked(sr.ID)
	if m.closed {
		return errorf(KindInvalidState, "server is shutting down")
	}
	if m.rooms[sr.ID] != nil {
		return nil
	}
	if err := m.restoreLocked(sr); err != nil {
		return err
	}
	m.log.Info("room taken over from its record", "room", sr.ID)
	return nil
}

// EndRoom closes a room here without deleting it anywhere else: its
// members are told reason and disconnected (the room moved to another
// node). It reports whether the room was here.
func (m *Manager) EndRoom(id, reason string) bool {
	r, ok := m.Room(id)
	if ok {
		r.end(reason)
	}
	return ok
}

// Resave writes the persistent rooms' records and every room's party
// state again (the cluster's store lost them with a restart).
func (m *Manager) Resave() error {
	for _, r := range m.Rooms() {
		r.stateChanged()
	}
	return m.saveRooms()
}

// RecordInfo describes a persistent room from its record (as
// ClusterHooks.Saved received it), for a room list that includes rooms no
// node holds right now.
func RecordInfo(record []byte) (RoomInfo, error) {
	var sr storedRoom
	if err := json.Unmarshal(record, &sr); err != nil {
		return RoomInfo{}, fmt.Errorf("room record: %w", err)
	}
	if !ValidID(sr.ID) {
		return RoomInfo{}, fmt.Errorf("room record: bad id %q", sr.ID)
	}
	md := sr.Metadata
	if len(md) == 0 {
		md = json.RawMessage("{}")
	}
	return RoomInfo{
		ID: sr.ID, Name: sr.Name, CreatedAt: sr.CreatedAt.UTC().Truncate(time.Millisecond), MaxPeers: sr.MaxPeers,
		Locked: sr.Locked, HasPassword: sr.Password != nil, OpenControl: sr.OpenControl, WaitForEveryone: sr.WaitForEveryone,
		GuestsCanShare: sr.GuestsCanShare, Simulcast: sr.Simulcast == nil || *sr.Simulcast, PublicHLS: sr.PublicHLS,
		Persistent: true, Metadata: md,
	}, nil
}
