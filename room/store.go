package room

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/matinee-dev/matinee/internal/atomicfile"
)

// The rooms made through the API are kept in one JSON file so they
// survive a restart (tokens minted for them stay good, too).

type storedRoom struct {
	ID              string          `json:"id"`
	Name            string          `json:"name"`
	CreatedAt       time.Time       `json:"createdAt"`
	MaxPeers        int             `json:"maxPeers"`
	Locked          bool            `json:"locked"`
	Password        *passwordHash   `json:"password,omitempty"`
	Metadata        json.RawMessage `json:"metadata,omitempty"`
	OpenControl     bool            `json:"openControl"`
	WaitForEveryone bool            `json:"waitForEveryone"`
	GuestsCanShare  bool            `json:"guestsCanShare"`
	// Simulcast is a pointer because files from before the setting lack
	// it, and those rooms keep simulcast on, as new rooms have it.
	Simulcast *bool `json:"simulcast,omitempty"`
	PublicHLS bool  `json:"publicHLS,omitempty"`
	// StreamKeys are the room's RTMP stream keys, hashed.
	StreamKeys []StreamKey `json:"streamKeys,omitempty"`
}

type storeFile struct {
	Version int          `json:"version"`
	Rooms   []storedRoom `json:"rooms"`
}

// LoadRooms brings back the API-created rooms of a previous run. A missing
// file is no error; a damaged one is, naming it.
func (m *Manager) LoadRooms() error {
	if m.cfg.StorePath == "" {
		return nil
	}
	b, err := os.ReadFile(m.cfg.StorePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("room store: %w", err)
	}
	var f storeFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("room store %s is damaged (fix or remove it): %w", m.cfg.StorePath, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sr := range f.Rooms {
		if !ValidID(sr.ID) || m.rooms[sr.ID] != nil {
			m.log.Warn("room store: skipping a room", "id", sr.ID)
			continue
		}
		if err := m.restoreLocked(sr); err != nil {
			return err
		}
	}
	m.log.Info("rooms restored", "count", len(f.Rooms))
	return nil
}

// restoreLocked brings back one stored room; m.mu is held.
func (m *Manager) restoreLocked(sr storedRoom) error {
	s := Settings{
		Name: sr.Name, MaxPeers: sr.MaxPeers, Locked: sr.Locked, Metadata: sr.Metadata,
		OpenControl: sr.OpenControl, WaitForEveryone: sr.WaitForEveryone, GuestsCanShare: sr.GuestsCanShare,
		Simulcast: sr.Simulcast == nil || *sr.Simulcast, PublicHLS: sr.PublicHLS,
	}
	if md, err := checkMetadata(sr.Metadata); err == nil {
		s.Metadata = md // compact again: the file is indented
	}
	if s.MaxPeers < 1 || s.MaxPeers > MaxRoomPeers {
		s.MaxPeers = m.cfg.MaxPeers
	}
	r, err := m.newRoom(sr.ID, s, sr.Password, true)
	if err != nil {
		return err
	}
	r.createdAt = sr.CreatedAt
	r.streamKeys = sr.StreamKeys
	m.rooms[sr.ID] = r
	return nil
}

// ErrStore is a room store that could not be written (a full disk, an
// I/O error): a change the caller was told about would not survive a
// restart. The REST API answers it with 507.
var ErrStore = errors.New("room store: save failed")

// saveRooms writes every persistent room to the store and reports whether
// the file now holds them.
func (m *Manager) saveRooms() error {
	if m.cfg.StorePath == "" && m.cfg.Cluster.Saved == nil {
		return nil
	}
	// Saves coalesce: a caller whose change a later write already
	// carried returns at once.
	gen := m.saveReq.Add(1)
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	if m.saveDone >= gen {
		return nil
	}
	upTo := m.saveReq.Load()
	f := storeFile{Version: 1, Rooms: []storedRoom{}}
	for _, r := range m.Rooms() {
		r.mu.Lock()
		if r.persistent && !r.closed {
			s := r.settings
			f.Rooms = append(f.Rooms, storedRoom{
				ID: r.id, Name: s.Name, CreatedAt: r.createdAt, MaxPeers: r.maxPeers, Locked: s.Locked,
				Password: r.password, Metadata: s.Metadata, OpenControl: s.OpenControl,
				WaitForEveryone: s.WaitForEveryone, GuestsCanShare: s.GuestsCanShare,
				Simulcast: &s.Simulcast, PublicHLS: s.PublicHLS,
				StreamKeys: append([]StreamKey(nil), r.streamKeys...),
			})
		}
		r.mu.Unlock()
	}
	if m.cfg.Cluster.Saved != nil {
		if err := m.saveToCluster(f.Rooms); err != nil {
			return err
		}
	}
	if m.cfg.StorePath != "" {
		b, err := json.MarshalIndent(f, "", "  ")
		if err == nil {
			err = writeAtomic(m.cfg.StorePath, b)
		}
		if err != nil {
			m.log.Error("room store: save failed", "path", m.cfg.StorePath, "err", err)
			return fmt.Errorf("%w: %s: %w", ErrStore, m.cfg.StorePath, err)
		}
	}
	m.saveDone = upTo
	return nil
}

// writeAtomic replaces path with data, so a crash never leaves half a file.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}
