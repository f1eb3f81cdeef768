package signaling

import (
	"encoding/json"

	"github.com/matinee-dev/matinee/room"
)

// conn is what the requests on a connection's transports and consumers
// act on: a member of a room on this node (room.Member) or the media half,
// here, of a member of another node's room (room.EdgeMember). Both
// implement them once, in room/connection.go; each request is parsed once,
// here, for both.
type conn interface {
	Unsubscribe(consumerID string) error
	PauseConsumer(consumerID string, pause bool) error
	SetPreferredLayer(consumerID string, layer int) error
	TransportAnswer(transportID, sdp string) error
	RestartICE(transportID string) error
	AddICECandidate(transportID string, c *room.ICECandidate) error
}

// connRequest parses a request's params and returns what applies it to
// a connection: the params are checked before the caller looks for one,
// so a malformed request is refused as such whether joined or not.
type connRequest func(params json.RawMessage) (func(conn) error, error)

// connRequests are the requests on a connection's transports and
// consumers, by method name.
var connRequests = map[string]connRequest{
	"unsubscribe":        consumerRequest(func(c conn, id string) error { return c.Unsubscribe(id) }),
	"pauseConsumer":      consumerRequest(func(c conn, id string) error { return c.PauseConsumer(id, true) }),
	"resumeConsumer":     consumerRequest(func(c conn, id string) error { return c.PauseConsumer(id, false) }),
	"setPreferredLayers": setPreferredLayers,
	"transportAnswer":    transportAnswer,
	"restartIce":         restartICE,
	"iceCandidate":       iceCandidate,
}

// transportRequests are those of connRequests about one transport (named
// by transportId): at an edge, those about a transport of the origin's
// go to the origin.
var transportRequests = map[string]bool{"transportAnswer": true, "restartIce": true, "iceCandidate": true}

func consumerRequest(f func(c conn, id string) error) connRequest {
	return func(params json.RawMessage) (func(conn) error, error) {
		var p struct {
			ConsumerID string `json:"consumerId"`
		}
		if err := decodeParams(params, &p); err != nil {
			return nil, err
		}
		if err := required("consumerId", p.ConsumerID); err != nil {
			return nil, err
		}
		return func(c conn) error { return f(c, p.ConsumerID) }, nil
	}
}

func setPreferredLayers(params json.RawMessage) (func(conn) error, error) {
	var p struct {
		ConsumerID   string `json:"consumerId"`
		SpatialLayer *int   `json:"spatialLayer"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("consumerId", p.ConsumerID); err != nil {
		return nil, err
	}
	if p.SpatialLayer == nil {
		return nil, errParams(`"spatialLayer" is required`)
	}
	return func(c conn) error { return c.SetPreferredLayer(p.ConsumerID, *p.SpatialLayer) }, nil
}

func transportAnswer(params json.RawMessage) (func(conn) error, error) {
	var p struct {
		TransportID string `json:"transportId"`
		SDP         string `json:"sdp"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("transportId", p.TransportID, "sdp", p.SDP); err != nil {
		return nil, err
	}
	return func(c conn) error { return c.TransportAnswer(p.TransportID, p.SDP) }, nil
}

func restartICE(params json.RawMessage) (func(conn) error, error) {
	var p struct {
		TransportID string `json:"transportId"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("transportId", p.TransportID); err != nil {
		return nil, err
	}
	return func(c conn) error { return c.RestartICE(p.TransportID) }, nil
}

func iceCandidate(params json.RawMessage) (func(conn) error, error) {
	var p struct {
		TransportID string `json:"transportId"`
		Candidate   *struct {
			Candidate        string  `json:"candidate"`
			SDPMid           *string `json:"sdpMid"`
			SDPMLineIndex    *uint16 `json:"sdpMLineIndex"`
			UsernameFragment *string `json:"usernameFragment"`
		} `json:"candidate"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("transportId", p.TransportID); err != nil {
		return nil, err
	}
	var cand *room.ICECandidate
	if p.Candidate != nil {
		cand = &room.ICECandidate{Candidate: p.Candidate.Candidate, SDPMid: p.Candidate.SDPMid, SDPMLineIndex: p.Candidate.SDPMLineIndex, UsernameFragment: p.Candidate.UsernameFragment}
	}
	return func(c conn) error { return c.AddICECandidate(p.TransportID, cand) }, nil
}

// onMember serves r for the session's member.
func onMember(r connRequest) handler {
	return func(ss *session, params json.RawMessage) (any, error) {
		apply, err := r(params)
		if err != nil {
			return nil, err
		}
		mb, err := ss.memberOrErr()
		if err != nil {
			return nil, err
		}
		return nil, apply(mb)
	}
}

func init() {
	for name, r := range connRequests {
		methods[name] = onMember(r)
	}
}
