package signaling

import (
	"encoding/json"
	"errors"

	"github.com/matinee-dev/matinee/room"
)

// handle runs one frame to completion and queues its response.
func (ss *session) handle(data []byte) {
	req, perr := parseRequest(data)
	if perr != nil {
		var id json.RawMessage
		if req != nil {
			id = req.ID
		}
		ss.reply(id, nil, perr)
		return
	}
	isNotification := len(req.ID) == 0
	ss.mu.Lock()
	l := ss.link
	ss.mu.Unlock()
	if l != nil {
		ss.srv.remoteOrNil().handleLinked(ss, l, req, data)
		return
	}
	h, ok := methods[req.Method]
	if !ok {
		if !isNotification {
			ss.reply(req.ID, nil, &rpcError{Code: CodeMethodNotFound, Message: "method not found: " + req.Method})
		}
		return
	}
	result, err := h(ss, req.Params)
	// Notifications held back while joining go out after the join
	// response, so a client learns it joined before it hears about the
	// room.
	defer ss.release()
	var g *goRemote
	if errors.As(err, &g) {
		err = g.moved
		if !isNotification {
			if err = ss.srv.remoteOrNil().open(ss, g, req.ID, data); err == nil {
				return // the room's node answers
			}
		}
	}
	if isNotification {
		if err != nil {
			ss.log.Debug("notification failed", "method", req.Method, "err", err)
		}
		return
	}
	var roomErr *room.Error
	closing := errors.As(err, &roomErr) && roomErr.CloseConn
	if closing && ss.rs != nil {
		// Before the answer: its edge ends the session when it reads it,
		// and the bye may come back before the Disconnect below.
		ss.rs.hangUp(roomErr.Message)
	}
	ss.reply(req.ID, result, toRPCError(err))
	if closing {
		// After the answer: the writer flushes it before closing.
		ss.log.Info("closing a connection that keeps failing", "method", req.Method, "err", roomErr.Message)
		ss.Disconnect(roomErr.Message)
	}
}

type handler func(ss *session, params json.RawMessage) (any, error)

// methods maps method names to handlers. Each file adds its own in an
// init function, so the map is made here, before any of them runs.
var methods = map[string]handler{}

func init() {
	for name, h := range map[string]handler{
		"join":            (*session).join,
		"leave":           (*session).leave,
		"createTransport": createTransport,
		"publish":         (*session).publish,
		"closeProducer":   producerCall(func(mb *room.Member, id string) error { return mb.CloseProducer(id) }),
		"pauseProducer":   producerCall(func(mb *room.Member, id string) error { return mb.PauseProducer(id, true) }),
		"resumeProducer":  producerCall(func(mb *room.Member, id string) error { return mb.PauseProducer(id, false) }),
		"subscribe":       subscribe,
		// The watch party (party.go).
		"time":           (*session).time,
		"chat":           chat,
		"react":          react,
		"playback":       playback,
		"playbackReport": playbackReport,
		"queue":          queue,
		"setRole":        setRole,
		"transferHost":   transferHost,
		"kick":           kick,
		"mute":           mute,
		"updateRoom":     updateRoom,
		"mediaList":      mediaList,
	} {
		methods[name] = h
	}
}

func (ss *session) memberOrErr() (*room.Member, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.member == nil {
		return nil, &rpcError{Code: CodeNotJoined, Message: "not joined: call join first"}
	}
	if !ss.member.Attached(ss) {
		// Resumed on another connection, or dropped.
		return nil, &rpcError{Code: CodeNotJoined, Message: "not joined: this connection no longer holds the membership"}
	}
	return ss.member, nil
}

func (ss *session) join(params json.RawMessage) (any, error) {
	var p struct {
		Room     string `json:"room"`
		Name     string `json:"name"`
		Password string `json:"password"`
		Token    string `json:"token"`
		Resume   string `json:"resume"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("room", p.Room); err != nil {
		return nil, err
	}
	if p.Token == "" {
		// With a token the name may come from the token.
		if err := required("name", p.Name); err != nil {
			return nil, err
		}
	}
	if !room.ValidID(p.Room) {
		return nil, errParams(`"room" must be 1-64 characters of A-Z a-z 0-9 _ -`)
	}
	if len(p.Resume) > 64 {
		return nil, errParams(`"resume" must be at most 64 characters`)
	}
	ss.mu.Lock()
	joined := ss.member != nil
	ss.mu.Unlock()
	if joined {
		return nil, &rpcError{Code: CodeAlreadyJoined, Message: "already joined: leave first"}
	}
	ss.hold()
	mb, res, err := ss.srv.rooms.Join(p.Room, room.JoinOptions{Name: p.Name, Password: p.Password, Token: p.Token, Resume: p.Resume, Client: ss.client}, ss)
	var moved *room.Error
	if errors.As(err, &moved) && moved.Kind == room.KindMoved && ss.rs == nil && ss.srv.remoteOrNil() != nil && len(p.Room) > 0 {
		// The member stays here; the room's node serves the party.
		return nil, &goRemote{node: moved.Node, room: p.Room, moved: err}
	}
	if err != nil {
		return nil, err
	}
	ss.mu.Lock()
	ss.member = mb
	ss.mu.Unlock()
	ss.log = ss.log.With("peer", mb.ID())
	return res, nil
}

func (ss *session) leave(json.RawMessage) (any, error) {
	ss.mu.Lock()
	mb := ss.member
	ss.member = nil
	ss.mu.Unlock()
	if mb == nil {
		return nil, &rpcError{Code: CodeNotJoined, Message: "not joined"}
	}
	if mb.Attached(ss) {
		mb.Leave()
	}
	ss.armJoinDeadline()
	return nil, nil
}

type directionParams struct {
	Direction string `json:"direction"`
}

var createTransport = memberCall(func(p *directionParams) *rpcError { return required("direction", p.Direction) },
	func(mb *room.Member, p *directionParams) (any, error) {
		id, err := mb.CreateTransport(p.Direction)
		if err != nil {
			return nil, err
		}
		return map[string]any{"transportId": id, "direction": p.Direction}, nil
	})

func (ss *session) publish(params json.RawMessage) (any, error) {
	var p struct {
		TransportID string `json:"transportId"`
		SDP         string `json:"sdp"`
		Tracks      []struct {
			Mid     string          `json:"mid"`
			AppData json.RawMessage `json:"appData"`
		} `json:"tracks"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("transportId", p.TransportID, "sdp", p.SDP); err != nil {
		return nil, err
	}
	tracks := make([]room.TrackParams, 0, len(p.Tracks))
	for i, t := range p.Tracks {
		if t.Mid == "" {
			return nil, errParams(`"tracks[%d].mid" is required`, i)
		}
		var ad any
		if len(t.AppData) > 0 && string(t.AppData) != "null" {
			var obj map[string]any
			if err := json.Unmarshal(t.AppData, &obj); err != nil {
				return nil, errParams(`"tracks[%d].appData" must be an object`, i)
			}
			ad = obj
		}
		tracks = append(tracks, room.TrackParams{Mid: t.Mid, AppData: ad})
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	answer, producers, err := mb.Publish(p.TransportID, p.SDP, tracks)
	if err != nil {
		return nil, err
	}
	return map[string]any{"sdp": answer, "producers": producers}, nil
}

type producerParams struct {
	ProducerID string `json:"producerId"`
}

func checkProducer(p *producerParams) *rpcError { return required("producerId", p.ProducerID) }

func producerCall(f func(mb *room.Member, id string) error) handler {
	return memberCall(checkProducer, func(mb *room.Member, p *producerParams) (any, error) { return nil, f(mb, p.ProducerID) })
}

var subscribe = memberCall(checkProducer, func(mb *room.Member, p *producerParams) (any, error) {
	info, err := mb.Subscribe(p.ProducerID)
	if err != nil {
		return nil, err
	}
	return info, nil
})
