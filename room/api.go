package room

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

// The operations of the REST API (docs/api.md): creating, changing and
// deleting rooms, and acting on participants. The server's HTTP layer
// decodes requests into these types and maps the errors to statuses.

// MaxRoomPeers is the largest maxPeers a room can be given.
const MaxRoomPeers = 1000

// maxMetadata is the largest metadata object, in bytes of JSON.
const maxMetadata = 16 << 10

// Settings are a room's adjustable options.
type Settings struct {
	Name     string
	MaxPeers int
	Locked   bool
	// Metadata is the application's JSON object, stored and returned as is.
	Metadata json.RawMessage
	// OpenControl lets guests control playback, not only hosts.
	OpenControl bool
	// WaitForEveryone pauses the room while any member buffers.
	WaitForEveryone bool
	// GuestsCanShare lets guests publish (hosts always can, viewers never).
	GuestsCanShare bool
	// Simulcast asks publishers to send each video in several sizes, so
	// that a weak link gets a smaller one; off, they send one full-quality
	// encoding (a LAN-only room, or a sharer whose CPU cannot encode three).
	Simulcast bool
	// PublicHLS lets anyone who knows the room id watch its live HLS
	// (/hls/{id}/) without a token or a signed URL.
	PublicHLS bool
}

func (s Settings) withDefaults(maxPeers int) Settings {
	s.MaxPeers = maxPeers
	s.WaitForEveryone = true
	s.GuestsCanShare = true
	s.Simulcast = true
	return s
}

// RoomInfo is a room's public description, as the API and the join result
// show it.
type RoomInfo struct {
	ID              string          `json:"id"`
	Name            string          `json:"name"`
	CreatedAt       time.Time       `json:"createdAt"`
	MaxPeers        int             `json:"maxPeers"`
	Locked          bool            `json:"locked"`
	HasPassword     bool            `json:"hasPassword"`
	OpenControl     bool            `json:"openControl"`
	WaitForEveryone bool            `json:"waitForEveryone"`
	GuestsCanShare  bool            `json:"guestsCanShare"`
	Simulcast       bool            `json:"simulcast"`
	PublicHLS       bool            `json:"publicHLS"`
	Persistent      bool            `json:"persistent"`
	Metadata        json.RawMessage `json:"metadata"`
}

// Info returns the room's description.
func (r *Room) Info() RoomInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.infoLocked()
}

func (r *Room) infoLocked() RoomInfo {
	md := r.settings.Metadata
	if len(md) == 0 {
		md = json.RawMessage("{}")
	}
	return RoomInfo{
		ID:              r.id,
		Name:            r.settings.Name,
		CreatedAt:       r.createdAt.UTC().Truncate(time.Millisecond),
		MaxPeers:        r.maxPeers,
		Locked:          r.settings.Locked,
		HasPassword:     r.password != nil,
		OpenControl:     r.settings.OpenControl,
		WaitForEveryone: r.settings.WaitForEveryone,
		GuestsCanShare:  r.settings.GuestsCanShare,
		Simulcast:       r.settings.Simulcast,
		PublicHLS:       r.settings.PublicHLS,
		Persistent:      r.persistent,
		Metadata:        md,
	}
}

// RoomSpec is a request to create a room (POST /api/rooms).
type RoomSpec struct {
	// ID asks for this exact id; 409 when taken. Empty derives one from
	// Name, or makes a fresh one when that is taken.
	ID              string          `json:"id"`
	Name            string          `json:"name"`
	MaxPeers        *int            `json:"maxPeers"`
	Password        string          `json:"password"`
	Locked          bool            `json:"locked"`
	Metadata        json.RawMessage `json:"metadata"`
	OpenControl     *bool           `json:"openControl"`
	WaitForEveryone *bool           `json:"waitForEveryone"`
	GuestsCanShare  *bool           `json:"guestsCanShare"`
	Simulcast       *bool           `json:"simulcast"`
	PublicHLS       *bool           `json:"publicHLS"`
}

// RoomUpdate changes some of a room's settings (PATCH /api/rooms/{id});
// nil fields stay as they are.
type RoomUpdate struct {
	Name     *string `json:"name"`
	MaxPeers *int    `json:"maxPeers"`
	// Password "" removes the password.
	Password *string `json:"password"`
	Locked   *bool   `json:"locked"`
	// Metadata replaces the object; JSON null clears it.
	Metadata        json.RawMessage `json:"metadata"`
	OpenControl     *bool           `json:"openControl"`
	WaitForEveryone *bool           `json:"waitForEveryone"`
	GuestsCanShare  *bool           `json:"guestsCanShare"`
	Simulcast       *bool           `json:"simulcast"`
	PublicHLS       *bool           `json:"publicHLS"`
}

func checkRoomName(name string) (string, error) { return checkLine("name", name, 100) }

func checkMaxPeers(n int) error {
	if n < 1 || n > MaxRoomPeers {
		return invalidField("maxPeers", "must be 1-%d", MaxRoomPeers)
	}
	return nil
}

func checkPassword(p string) error {
	if utf8.RuneCountInString(p) > 128 {
		return invalidField("password", "must be at most 128 characters")
	}
	return nil
}

// checkMetadata accepts a JSON object (or null/absent, meaning none) of
// at most 16 KiB and returns it compacted.
func checkMetadata(md json.RawMessage) (json.RawMessage, error) {
	md = bytes.TrimSpace(md)
	if len(md) == 0 || string(md) == "null" {
		return nil, nil
	}
	if md[0] != '{' {
		return nil, invalidField("metadata", "must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, md); err != nil {
		return nil, invalidField("metadata", "must be a JSON object")
	}
	if buf.Len() > maxMetadata {
		return nil, invalidField("metadata", "must be at most %d bytes of JSON", maxMetadata)
	}
	return buf.Bytes(), nil
}

// CreateRoom makes a room that stays until deleted.
func (m *Manager) CreateRoom(spec RoomSpec) (RoomInfo, error) {
	name, err := checkRoomName(spec.Name)
	if err != nil {
		return RoomInfo{}, err
	}
	if spec.ID != "" && !ValidID(spec.ID) {
		return RoomInfo{}, invalidField("id", "must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	s := Settings{Name: name}.withDefaults(m.cfg.MaxPeers)
	if spec.MaxPeers != nil {
		if err := checkMaxPeers(*spec.MaxPeers); err != nil {
			return RoomInfo{}, err
		}
		s.MaxPeers = *spec.MaxPeers
	}
	if err := checkPassword(spec.Password); err != nil {
		return RoomInfo{}, err
	}
	if s.Metadata, err = checkMetadata(spec.Metadata); err != nil {
		return RoomInfo{}, err
	}
	s.Locked = spec.Locked
	setBool(&s.OpenControl, spec.OpenControl)
	setBool(&s.WaitForEveryone, spec.WaitForEveryone)
	setBool(&s.GuestsCanShare, spec.GuestsCanShare)
	setBool(&s.Simulcast, spec.Simulcast)
	setBool(&s.PublicHLS, spec.PublicHLS)
	var pw *passwordHash
	if spec.Password != "" {
		pw = hashPassword(spec.Password)
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return RoomInfo{}, errorf(KindInvalidState, "server is shutting down")
	}
	id := spec.ID
	if id != "" {
		m.waitClosedLocked(id) // a room of this id just deleted
		if _, taken := m.rooms[id]; taken {
			m.mu.Unlock()
			return RoomInfo{}, errorf(KindConflict, "room %q exists already", id)
		}
	} else {
		id = slugify(name)
		taken := func(id string) bool { return m.rooms[id] != nil || m.closing[id] != nil }
		if id == "" || taken(id) {
			for {
				id = freshID()
				if !taken(id) {
					break
				}
			}
		}
	}
	r, err := m.newRoom(id, s, pw, true)
	if err != nil {
		m.mu.Unlock()
		return RoomInfo{}, err
	}
	m.rooms[id] = r
	m.mu.Unlock()
	// In a cluster the id must be free on every node: a room held or
	// kept elsewhere is undone.
	if err := m.claim(id, true); err != nil {
		r.end("the room exists on another node")
		return RoomInfo{}, err
	}
	// The answer promises a room that survives a restart: the store is
	// written first, and a room it could not keep is undone.
	if err := m.saveRooms(); err != nil {
		r.end("the room could not be saved")
		_ = m.saveRooms() // a concurrent save may have carried it
		return RoomInfo{}, err
	}
	r.log.Info("room created", "name", name)
	info := r.Info()
	m.hooks.send("room.created", map[string]any{"room": info})
	return info, nil
}

func setBool(dst *bool, v *bool) {
	if v != nil {
		*dst = *v
	}
}

// slugify turns a room name into an id: lower case, runs of anything but
// a-z and 0-9 become one "-", at most 48 characters.
func slugify(name string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(c)
		default:
			dash = true
		}
		if b.Len() >= 48 {
			break
		}
	}
	return strings.TrimRight(b.String(), "-")
}

// freshID returns a random 10-character id of a-z and 0-9.
func freshID() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789" // no l, o, 0, 1
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// UpdateRoom changes a room's settings and tells its members (roomUpdated).
func (m *Manager) UpdateRoom(id string, u RoomUpdate) (RoomInfo, error) {
	r, ok := m.Room(id)
	if !ok {
		return RoomInfo{}, errorf(KindNotFound, "unknown room %q", id)
	}
	return r.update(u, "")
}

// update applies u; by is the peer who asked ("" for the API).
func (r *Room) update(u RoomUpdate, by string) (RoomInfo, error) {
	var name string
	var err error
	if u.Name != nil {
		if name, err = checkRoomName(*u.Name); err != nil {
			return RoomInfo{}, err
		}
	}
	if u.MaxPeers != nil {
		if err := checkMaxPeers(*u.MaxPeers); err != nil {
			return RoomInfo{}, err
		}
	}
	if u.Password != nil {
		if err := checkPassword(*u.Password); err != nil {
			return RoomInfo{}, err
		}
	}
	var md json.RawMessage
	if u.Metadata != nil {
		if md, err = checkMetadata(u.Metadata); err != nil {
			return RoomInfo{}, err
		}
	}
	var pw *passwordHash
	if u.Password != nil && *u.Password != "" {
		pw = hashPassword(*u.Password)
	}
	r.evMu.Lock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.evMu.Unlock()
		return RoomInfo{}, errorf(KindNotFound, "room %q has ended", r.id)
	}
	s := &r.settings
	if u.Name != nil {
		s.Name = name
	}
	if u.MaxPeers != nil {
		s.MaxPeers = *u.MaxPeers
		r.maxPeers = *u.MaxPeers
	}
	if u.Password != nil {
		r.password = pw
	}
	setBool(&s.Locked, u.Locked)
	if u.Metadata != nil {
		s.Metadata = md
	}
	setBool(&s.OpenControl, u.OpenControl)
	setBool(&s.WaitForEveryone, u.WaitForEveryone)
	setBool(&s.GuestsCanShare, u.GuestsCanShare)
	setBool(&s.Simulcast, u.Simulcast)
	setBool(&s.PublicHLS, u.PublicHLS)
	info := r.infoLocked()
	persistent := r.persistent
	r.mu.Unlock()
	r.log.Info("room updated", "by", by)
	r.broadcast("", "roomUpdated", map[string]any{"room": info, "by": by})
	if u.WaitForEveryone != nil {
		r.evaluateWaitLocked()
	}
	r.evMu.Unlock()
	if persistent {
		_ = r.m.saveRooms() // logged; the change holds in memory
	}
	return info, nil
}

// DeleteRoom ends a room: its members get "disconnected" and are
// disconnected, and it is removed from the store.
func (m *Manager) DeleteRoom(id string) error {
	r, ok := m.Room(id)
	if !ok {
		return errorf(KindNotFound, "unknown room %q", id)
	}
	info := r.Info()
	r.end(reasonDeleted)
	_ = m.saveRooms() // logged
	m.hooks.send("room.deleted", map[string]any{"room": info})
	return nil
}

// reasonDeleted ends a room deleted through the API.
const reasonDeleted = "room deleted"

// ParticipantView is one member as the REST API shows it.
type ParticipantView struct {
	PeerInfo
	JoinedAt  time.Time      `json:"joinedAt"`
	Producers []ProducerInfo `json:"producers"`
	// Playback is the member's last playbackReport, if any.
	Playback *SyncReport `json:"playback,omitempty"`
}

// RoomView is a room with its peer count (GET /api/rooms).
type RoomView struct {
	RoomInfo
	Peers int `json:"peers"`
}

// RoomDetail is a room with its live state (GET /api/rooms/{id}).
type RoomDetail struct {
	RoomView
	Participants []ParticipantView `json:"participants"`
	Playback     PlaybackState     `json:"playback"`
	Queue        []QueueItem       `json:"queue"`
}

// Summary is the room with its peer count (GET /api/rooms).
func (r *Room) Summary() RoomView {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RoomView{RoomInfo: r.infoLocked(), Peers: len(r.members)}
}

// Detail is the room with its participants, what each publishes, and the
// playback state.
func (r *Room) Detail() RoomDetail {
	producers := r.Producers()
	r.evMu.Lock()
	play := r.playbackLocked()
	queue := r.queue.list()
	r.evMu.Unlock()
	r.mu.Lock()
	v := RoomDetail{RoomView: RoomView{RoomInfo: r.infoLocked(), Peers: len(r.members)}, Participants: []ParticipantView{}, Playback: play, Queue: queue}
	ms := make([]*Member, 0, len(r.order))
	for _, id := range r.order {
		if mb, ok := r.members[id]; ok {
			ms = append(ms, mb)
		}
	}
	r.mu.Unlock()
	for _, mb := range ms {
		pv := ParticipantView{PeerInfo: mb.info(), Producers: []ProducerInfo{}}
		mb.mu.Lock()
		pv.JoinedAt = mb.joinedAt.UTC().Truncate(time.Millisecond)
		if mb.report != nil {
			rep := *mb.report
			pv.Playback = &rep
		}
		mb.mu.Unlock()
		for _, p := range producers {
			if p.PeerID == mb.id {
				pv.Producers = append(pv.Producers, p)
			}
		}
		v.Participants = append(v.Participants, pv)
	}
	return v
}

// Participant finds a member by identity (or peer id).
func (r *Room) Participant(identity string) (*Member, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range r.order {
		if mb := r.members[id]; mb != nil && (mb.Identity() == identity || mb.id == identity) {
			return mb, true
		}
	}
	return nil, false
}

func (m *Manager) participant(roomID, identity string) (*Member, error) {
	r, ok := m.Room(roomID)
	if !ok {
		return nil, errorf(KindNotFound, "unknown room %q", roomID)
	}
	mb, ok := r.Participant(identity)
	if !ok {
		return nil, errorf(KindNotFound, "no participant %q in room %q", identity, roomID)
	}
	return mb, nil
}

// Kick removes a participant; it is told reason ("disconnected").
func (m *Manager) Kick(roomID, identity, reason string) error {
	mb, err := m.participant(roomID, identity)
	if err != nil {
		return err
	}
	if reason == "" {
		reason = "removed from the room"
	}
	mb.remove(reason)
	return nil
}

// Mute pauses a participant's producers of kind "audio" (default),
// "video" or "all", and returns their ids.
func (m *Manager) Mute(roomID, identity, kind string) ([]string, error) {
	mb, err := m.participant(roomID, identity)
	if err != nil {
		return nil, err
	}
	return mb.mute(kind, "")
}

// passwordHash is a salted PBKDF2-SHA256 hash of a room password.
type passwordHash struct {
	Salt []byte `json:"salt"`
	Hash []byte `json:"hash"`
	Iter int    `json:"iter"`
}

const passwordIterations = 20000

func hashPassword(p string) *passwordHash {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	h, _ := pbkdf2.Key(sha256.New, p, salt, passwordIterations, 32)
	return &passwordHash{Salt: salt, Hash: h, Iter: passwordIterations}
}

func (h *passwordHash) matches(p string) bool {
	got, err := pbkdf2.Key(sha256.New, p, h.Salt, h.Iter, len(h.Hash))
	return err == nil && subtle.ConstantTimeCompare(got, h.Hash) == 1
}
