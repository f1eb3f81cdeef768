package signaling

import (
	"encoding/json"
	"time"

	"github.com/matinee-dev/matinee/room"
)

// The watch-party methods: clock sync, chat, reactions, synced playback
// and host controls (docs/protocol.md).

// time answers the client's clock-sync probe with the server clock. It
// works before join, so a client can sync while it connects.
func (ss *session) time(params json.RawMessage) (any, error) {
	now := time.Now()
	var p struct {
		ClientTime *float64 `json:"clientTime"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	res := map[string]any{"serverTime": float64(now.UnixMicro()) / 1000}
	if p.ClientTime != nil {
		res["clientTime"] = *p.ClientTime
	}
	return res, nil
}

func (ss *session) chat(params json.RawMessage) (any, error) {
	var p struct {
		Text string `json:"text"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	msg, err := mb.Chat(p.Text)
	if err != nil {
		return nil, err
	}
	return map[string]any{"message": msg}, nil
}

func (ss *session) react(params json.RawMessage) (any, error) {
	var p struct {
		Emoji string `json:"emoji"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("emoji", p.Emoji); err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	return nil, mb.React(p.Emoji)
}

func (ss *session) playback(params json.RawMessage) (any, error) {
	var p room.PlaybackCommand
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("action", p.Action); err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	st, err := mb.Playback(p)
	if err != nil {
		return nil, err
	}
	return map[string]any{"state": st}, nil
}

func (ss *session) playbackReport(params json.RawMessage) (any, error) {
	var p room.PlaybackReport
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	return nil, mb.ReportPlayback(p)
}

func (ss *session) queue(params json.RawMessage) (any, error) {
	var p room.QueueCommand
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("action", p.Action); err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	q, err := mb.Queue(p)
	if err != nil {
		return nil, err
	}
	return map[string]any{"queue": q}, nil
}

// peerParams decodes {"peerId": ...} plus extra fields into v.
func peerParams(params json.RawMessage, v any, peerID *string) *rpcError {
	if err := decodeParams(params, v); err != nil {
		return err
	}
	return required("peerId", *peerID)
}

func (ss *session) setRole(params json.RawMessage) (any, error) {
	var p struct {
		PeerID string `json:"peerId"`
		Role   string `json:"role"`
	}
	if err := peerParams(params, &p, &p.PeerID); err != nil {
		return nil, err
	}
	if err := required("role", p.Role); err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	info, err := mb.SetRole(p.PeerID, p.Role)
	if err != nil {
		return nil, err
	}
	return map[string]any{"peer": info}, nil
}

func (ss *session) transferHost(params json.RawMessage) (any, error) {
	var p struct {
		PeerID string `json:"peerId"`
	}
	if err := peerParams(params, &p, &p.PeerID); err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	return nil, mb.TransferHost(p.PeerID)
}

func (ss *session) kick(params json.RawMessage) (any, error) {
	var p struct {
		PeerID string `json:"peerId"`
		Reason string `json:"reason"`
	}
	if err := peerParams(params, &p, &p.PeerID); err != nil {
		return nil, err
	}
	if len(p.Reason) > 200 {
		return nil, errParams(`"reason" must be at most 200 bytes`)
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	return nil, mb.KickPeer(p.PeerID, p.Reason)
}

func (ss *session) mute(params json.RawMessage) (any, error) {
	var p struct {
		PeerID string `json:"peerId"`
		Kind   string `json:"kind"`
	}
	if err := peerParams(params, &p, &p.PeerID); err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	ids, err := mb.MutePeer(p.PeerID, p.Kind)
	if err != nil {
		return nil, err
	}
	return map[string]any{"producerIds": ids}, nil
}

func (ss *session) updateRoom(params json.RawMessage) (any, error) {
	var p room.RoomUpdate
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	info, err := mb.UpdateRoom(p)
	if err != nil {
		return nil, err
	}
	return map[string]any{"room": info}, nil
}

func (ss *session) mediaList(json.RawMessage) (any, error) {
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	items, err := mb.MediaList()
	if err != nil {
		return nil, err
	}
	return map[string]any{"items": items}, nil
}
