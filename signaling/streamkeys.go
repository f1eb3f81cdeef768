package signaling

import (
	"encoding/json"
	"strings"

	"github.com/matinee-dev/matinee/room"
)

// StreamKeys is the server's side of a host's RTMP stream keys: a key is
// made and revoked by the room (the same code as the REST API), but the
// URL to publish to and the publishers live on a key are the server's.
type StreamKeys interface {
	// RTMPURL is the RTMP server URL (OBS's "Server") for a browser that
	// reached this server at host.
	RTMPURL(host string) string
	// RTMPSURL is the same over TLS; empty when RTMPS is off.
	RTMPSURL(host string) string
	// RevokeLive cuts off a publisher live on key keyID, if any.
	RevokeLive(keyID string)
}

func init() {
	methods["createStreamKey"] = (*session).createStreamKey
	methods["revokeStreamKey"] = (*session).revokeStreamKey
}

func (ss *session) streamKeys() (StreamKeys, error) {
	if ss.srv.cfg.StreamKeys == nil {
		return nil, &rpcError{Code: CodeInternal, Message: "RTMP ingest is not available on this server"}
	}
	return ss.srv.cfg.StreamKeys, nil
}

// createStreamKey makes an RTMP stream key for the host's room; the key
// is in this answer only.
func (ss *session) createStreamKey(params json.RawMessage) (any, error) {
	var p struct{}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	sk, err := ss.streamKeys()
	if err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	keyID, key, err := mb.NewStreamKey()
	if err != nil {
		return nil, err
	}
	ss.log.Info("stream key made", "room", mb.Room().ID(), "key", keyID, "by", mb.ID())
	res := map[string]any{"id": keyID, "room": mb.Room().ID(), "type": "rtmp", "url": sk.RTMPURL(ss.host), "streamKey": key}
	if u := sk.RTMPSURL(ss.host); u != "" {
		res["rtmpsUrl"] = u
	}
	return res, nil
}

// revokeStreamKey removes one of the room's keys and cuts off its
// publisher.
func (ss *session) revokeStreamKey(params json.RawMessage) (any, error) {
	var p struct {
		ID string `json:"id"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.ID == "" {
		return nil, errParams(`"id" is required`)
	}
	if !strings.HasPrefix(p.ID, "sk_") || len(p.ID) > 64 {
		return nil, errParams(`"id" must be a stream key id (sk_…)`)
	}
	sk, err := ss.streamKeys()
	if err != nil {
		return nil, err
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	if err := mb.RevokeStreamKey(p.ID); err != nil {
		// A store failure has removed the key all the same.
		if room.KindOf(err) != room.KindNotFound {
			sk.RevokeLive(p.ID)
		}
		return nil, err
	}
	sk.RevokeLive(p.ID)
	ss.log.Info("stream key revoked", "room", mb.Room().ID(), "key", p.ID, "by", mb.ID())
	return map[string]any{}, nil
}
