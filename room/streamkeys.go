package room

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"time"
)

// A stream key lets an RTMP publisher (OBS, ffmpeg) stream into one room.
// The key is shown once, when made; the room keeps only its SHA-256 (the
// key is 128 random bits, so a fast hash is enough) and the store file
// holds no key that could publish.

// StreamKey is one key of a room, without the key itself.
type StreamKey struct {
	ID        string    `json:"id"`
	Hash      string    `json:"hash"` // hex SHA-256 of the key
	CreatedAt time.Time `json:"createdAt"`
}

func hashStreamKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// NewStreamKey makes a stream key for room id and returns its id and the
// key, which is not kept.
func (m *Manager) NewStreamKey(id string) (keyID, key string, err error) {
	r, ok := m.Room(id)
	if !ok {
		return "", "", errorf(KindNotFound, "room %q not found", id)
	}
	keyID = "sk_" + randHex(6)
	key = "live_" + randHex(16)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return "", "", errorf(KindNotFound, "room %q has ended", id)
	}
	r.streamKeys = append(r.streamKeys, StreamKey{ID: keyID, Hash: hashStreamKey(key), CreatedAt: time.Now().UTC()})
	persistent := r.persistent
	r.mu.Unlock()
	if persistent {
		if err := m.saveRooms(); err != nil {
			return "", "", err
		}
	}
	return keyID, key, nil
}

// RevokeStreamKey removes key keyID of room id: it publishes no more.
// It reports whether the room had that key.
func (m *Manager) RevokeStreamKey(id, keyID string) (bool, error) {
	r, ok := m.Room(id)
	if !ok {
		return false, nil
	}
	r.mu.Lock()
	found := false
	for i, k := range r.streamKeys {
		if k.ID == keyID {
			r.streamKeys = append(r.streamKeys[:i:i], r.streamKeys[i+1:]...)
			found = true
			break
		}
	}
	persistent := r.persistent
	r.mu.Unlock()
	if found && persistent {
		return true, m.saveRooms()
	}
	return found, nil
}

// HasStreamKey reports whether room id still has key keyID.
func (m *Manager) HasStreamKey(id, keyID string) bool {
	r, ok := m.Room(id)
	if !ok {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.streamKeys {
		if k.ID == keyID {
			return true
		}
	}
	return false
}

// LookupStreamKey finds the open room a key publishes into. It never
// opens a room.
func (m *Manager) LookupStreamKey(key string) (roomID, keyID string, ok bool) {
	if key == "" {
		return "", "", false
	}
	h := []byte(hashStreamKey(key))
	for _, r := range m.Rooms() {
		r.mu.Lock()
		for _, k := range r.streamKeys {
			if !r.closed && subtle.ConstantTimeCompare(h, []byte(k.Hash)) == 1 {
				roomID, keyID, ok = r.id, k.ID, true
			}
		}
		r.mu.Unlock()
		if ok {
			return
		}
	}
	return "", "", false
}

// NewStreamKey makes a stream key for the member's room (host only): the
// same key POST /api/rooms/{id}/ingests {"type":"rtmp"} makes.
func (mb *Member) NewStreamKey() (keyID, key string, err error) {
	if err := mb.requireHost("make a stream key"); err != nil {
		return "", "", err
	}
	return mb.room.m.NewStreamKey(mb.room.id)
}

// RevokeStreamKey removes key keyID of the member's room (host only). The
// caller cuts off a publisher live on it, as the REST API does.
func (mb *Member) RevokeStreamKey(keyID string) error {
	if err := mb.requireHost("revoke a stream key"); err != nil {
		return err
	}
	found, err := mb.room.m.RevokeStreamKey(mb.room.id, keyID)
	if !found {
		return errorf(KindNotFound, "no stream key %s in room %s", keyID, mb.room.id)
	}
	return err
}
