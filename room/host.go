package room

import (
	"github.com/matinee-dev/matinee/sfu"
)

// Host controls: what a host may do to the room and to other members.

// mayShare tells whether the member may publish: hosts always, guests when
// the room lets them, viewers never.
func (mb *Member) mayShare() error {
	switch mb.Role() {
	case RoleHost:
		return nil
	case RoleViewer:
		return forbidden(ReasonNotAllowed, "viewers cannot publish")
	}
	mb.room.mu.Lock()
	ok := mb.room.settings.GuestsCanShare
	mb.room.mu.Unlock()
	if !ok {
		return forbidden(ReasonNotAllowed, "only the host may share in this room")
	}
	return nil
}

func (mb *Member) requireHost(what string) error {
	if err := mb.check(); err != nil {
		return err
	}
	if mb.Role() != RoleHost {
		return forbidden(ReasonNotAllowed, "only the host can %s", what)
	}
	return nil
}

// other finds another member of the same room by peer id.
func (mb *Member) other(peerID string) (*Member, error) {
	r := mb.room
	r.mu.Lock()
	t := r.members[peerID]
	r.mu.Unlock()
	if t == nil {
		return nil, errorf(KindNotFound, "unknown peer %q", peerID)
	}
	if t == mb {
		return nil, errorf(KindInvalidState, "not on yourself")
	}
	return t, nil
}

func (mb *Member) setRole(role string) {
	mb.mu.Lock()
	mb.role = role
	mb.mu.Unlock()
}

// ownProducers returns the member's live producers.
func (mb *Member) ownProducers() []*sfu.Producer {
	var out []*sfu.Producer
	for _, p := range mb.room.router.Producers() {
		if p.Owner() == mb.id {
			out = append(out, p)
		}
	}
	return out
}

// SetRole gives another member a role (host only). Everyone gets
// peerUpdated; a member made viewer stops sharing.
func (mb *Member) SetRole(peerID, role string) (PeerInfo, error) {
	if !validRole(role) {
		return PeerInfo{}, invalidField("role", "must be host, guest or viewer")
	}
	if err := mb.requireHost("change roles"); err != nil {
		return PeerInfo{}, err
	}
	t, err := mb.other(peerID)
	if err != nil {
		if e, ok := err.(*Error); ok && e.Kind == KindInvalidState {
			return PeerInfo{}, errorf(KindInvalidState, "use transferHost to give up being host")
		}
		return PeerInfo{}, err
	}
	r := mb.room
	r.evMu.Lock()
	defer r.evMu.Unlock()
	t.setRole(role)
	if role == RoleViewer {
		for _, p := range t.ownProducers() {
			p.Close() // others get producerClosed
		}
	}
	info := t.info()
	r.log.Info("role changed", "peer", t.id, "role", role, "by", mb.id)
	r.broadcast("", "peerUpdated", map[string]any{"peer": info})
	return info, nil
}

// TransferHost makes another member host and the caller a guest.
func (mb *Member) TransferHost(peerID string) error {
	if err := mb.requireHost("hand over hosting"); err != nil {
		return err
	}
	t, err := mb.other(peerID)
	if err != nil {
		return err
	}
	r := mb.room
	r.evMu.Lock()
	defer r.evMu.Unlock()
	t.setRole(RoleHost)
	mb.setRole(RoleGuest)
	r.log.Info("host handed over", "from", mb.id, "to", t.id)
	r.broadcast("", "peerUpdated", map[string]any{"peer": t.info()})
	r.broadcast("", "peerUpdated", map[string]any{"peer": mb.info()})
	return nil
}

// KickPeer removes another member (host only); it is told why.
func (mb *Member) KickPeer(peerID, reason string) error {
	if err := mb.requireHost("remove people"); err != nil {
		return err
	}
	t, err := mb.other(peerID)
	if err != nil {
		return err
	}
	if reason == "" {
		reason = "removed by the host"
	}
	mb.room.log.Info("peer kicked", "peer", t.id, "by", mb.id)
	t.remove(reason)
	return nil
}

// MutePeer pauses another member's producers of a kind (host only).
func (mb *Member) MutePeer(peerID, kind string) ([]string, error) {
	if err := mb.requireHost("mute people"); err != nil {
		return nil, err
	}
	t, err := mb.other(peerID)
	if err != nil {
		return nil, err
	}
	return t.mute(kind, mb.id)
}

// mute pauses the member's producers of kind audio (""), video or all.
// Everyone gets producerPaused; the member also gets muted, so its client
// can show it. It may resume them itself.
func (mb *Member) mute(kind, by string) ([]string, error) {
	switch kind {
	case "":
		kind = "audio"
	case "audio", "video", "all":
	default:
		return nil, invalidField("kind", "must be audio, video or all")
	}
	if err := mb.check(); err != nil {
		return nil, err
	}
	ids := []string{}
	for _, p := range mb.ownProducers() {
		if kind != "all" && string(p.Kind()) != kind {
			continue
		}
		ids = append(ids, p.ID())
		if !p.Paused() {
			p.Pause()
			mb.room.broadcast("", "producerPaused", map[string]any{"producerId": p.ID()})
		}
	}
	mb.room.log.Info("peer muted", "peer", mb.id, "kind", kind, "by", by)
	mb.notifier().Notify("muted", map[string]any{"kind": kind, "by": by, "producerIds": ids})
	return ids, nil
}

// UpdateRoom changes the room's name and options (host only); maxPeers,
// password, metadata and publicHLS (who may watch) belong to the REST API.
func (mb *Member) UpdateRoom(u RoomUpdate) (RoomInfo, error) {
	if err := mb.requireHost("change the room"); err != nil {
		return RoomInfo{}, err
	}
	switch {
	case u.MaxPeers != nil:
		return RoomInfo{}, invalidField("maxPeers", "can only be changed through the REST API")
	case u.Password != nil:
		return RoomInfo{}, invalidField("password", "can only be changed through the REST API")
	case u.Metadata != nil:
		return RoomInfo{}, invalidField("metadata", "can only be changed through the REST API")
	case u.PublicHLS != nil:
		return RoomInfo{}, invalidField("publicHLS", "can only be changed through the REST API")
	}
	return mb.room.update(u, mb.id)
}

// MediaList lists the media folder for a member who may control playback.
func (mb *Member) MediaList() ([]MediaItem, error) {
	if err := mb.check(); err != nil {
		return nil, err
	}
	if err := mb.mayControl(); err != nil {
		return nil, err
	}
	lib := mb.room.m.media
	if lib == nil {
		return []MediaItem{}, nil
	}
	return lib.List()
}
