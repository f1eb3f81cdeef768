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

// memberCall is the shape of a request on the session's member: params
// decoded into P and checked (check may be nil) before the member is
// looked for, so a malformed request is refused as such whether joined or
// not; then f.
func memberCall[P any](check func(p *P) *rpcError, f func(mb *room.Member, p *P) (any, error)) handler {
	return func(ss *session, params json.RawMessage) (any, error) {
		var p P
		if err := decodeParams(params, &p); err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(&p); err != nil {
				return nil, err
			}
		}
		mb, err := ss.memberOrErr()
		if err != nil {
			return nil, err
		}
		return f(mb, &p)
	}
}

// wrap names a method's one result: {"name": v}, or the error.
func wrap[T any](name string, v T, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return map[string]any{name: v}, nil
}

type textParams struct {
	Text string `json:"text"`
}

type emojiParams struct {
	Emoji string `json:"emoji"`
}

type peerParams struct {
	PeerID string `json:"peerId"`
	Role   string `json:"role"`   // setRole
	Reason string `json:"reason"` // kick
	Kind   string `json:"kind"`   // mute
}

func checkPeer(p *peerParams) *rpcError { return required("peerId", p.PeerID) }

var (
	chat = memberCall(nil, func(mb *room.Member, p *textParams) (any, error) {
		msg, err := mb.Chat(p.Text)
		return wrap("message", msg, err)
	})
	react = memberCall(func(p *emojiParams) *rpcError { return required("emoji", p.Emoji) },
		func(mb *room.Member, p *emojiParams) (any, error) { return nil, mb.React(p.Emoji) })
	playback = memberCall(func(p *room.PlaybackCommand) *rpcError { return required("action", p.Action) },
		func(mb *room.Member, p *room.PlaybackCommand) (any, error) {
			st, err := mb.Playback(*p)
			return wrap("state", st, err)
		})
	playbackReport = memberCall(nil, func(mb *room.Member, p *room.PlaybackReport) (any, error) {
		return nil, mb.ReportPlayback(*p)
	})
	queue = memberCall(func(p *room.QueueCommand) *rpcError { return required("action", p.Action) },
		func(mb *room.Member, p *room.QueueCommand) (any, error) {
			q, err := mb.Queue(*p)
			return wrap("queue", q, err)
		})
	setRole = memberCall(func(p *peerParams) *rpcError {
		if err := checkPeer(p); err != nil {
			return err
		}
		return required("role", p.Role)
	}, func(mb *room.Member, p *peerParams) (any, error) {
		info, err := mb.SetRole(p.PeerID, p.Role)
		return wrap("peer", info, err)
	})
	transferHost = memberCall(checkPeer, func(mb *room.Member, p *peerParams) (any, error) {
		return nil, mb.TransferHost(p.PeerID)
	})
	kick = memberCall(func(p *peerParams) *rpcError {
		if err := checkPeer(p); err != nil {
			return err
		}
		if len(p.Reason) > 200 {
			return errParams(`"reason" must be at most 200 bytes`)
		}
		return nil
	}, func(mb *room.Member, p *peerParams) (any, error) { return nil, mb.KickPeer(p.PeerID, p.Reason) })
	mute = memberCall(checkPeer, func(mb *room.Member, p *peerParams) (any, error) {
		ids, err := mb.MutePeer(p.PeerID, p.Kind)
		return wrap("producerIds", ids, err)
	})
	updateRoom = memberCall(nil, func(mb *room.Member, p *room.RoomUpdate) (any, error) {
		info, err := mb.UpdateRoom(*p)
		return wrap("room", info, err)
	})
)

// mediaList takes no params (whatever is sent is ignored).
func mediaList(ss *session, _ json.RawMessage) (any, error) {
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	items, err := mb.MediaList()
	return wrap("items", items, err)
}
