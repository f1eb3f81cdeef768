package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// The messages an edge node and a room's origin exchange about the
// members who joined through the edge (remote.go, docs/cluster.md,
// "Members on several nodes"): one JSON object each, on the cluster's
// party channel of the receiving node. Decode checks everything: a
// message comes from the network.

// Message types.
const (
	// Edge → origin.
	msgReq = "req" // one request frame of session Sess, numbered Seq (1, 2, ...)
	msgBye = "bye" // the member's socket closed (no leave was said): the member drops; with Leave, it leaves
	// Both ways, every renewal: the sessions the sender holds with the
	// receiver. Silence for the lease time ends them.
	msgKeep = "keep"
	// Origin → edge.
	msgOut    = "out"    // response and notification frames of session Sess, in order, numbered Seq
	msgClosed = "closed" // the origin ended session Sess (Reason): the socket closes
	// msgBatch carries out and closed messages (Batch) of several
	// sessions, each as it would travel alone, in order.
	msgBatch = "batch"
)

// remoteVersion is the format; a message of another is refused.
const remoteVersion = 1

// Limits on what one message may carry (besides the bus's size limit).
const (
	maxFrames       = 1024 // frames in one out message
	maxBatch        = 4096 // messages in one batch
	maxKeepSessions = 1000 // sessions named in one keep message
	maxReasonLen    = 256
)

// remoteMsg is one message between an edge and an origin.
type remoteMsg struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	From string `json:"from"`
	// Sess is the session's id, the edge's pick.
	Sess string `json:"sess,omitempty"`
	// Seq numbers a session's req messages, and apart from them its out
	// messages, from 1: a gap is a lost message.
	Seq uint64 `json:"seq,omitempty"`
	// Frames are JSON-RPC messages as the client sent them (req: one) or
	// as the origin wrote them (out).
	Frames []json.RawMessage `json:"frames,omitempty"`
	// Addr and Host are the client's IP (the origin's limits count it)
	// and the Host it connected to (first req only).
	Addr string `json:"addr,omitempty"`
	Host string `json:"host,omitempty"`
	// Conn names the member's socket at the edge (first req only): the
	// origin keeps one room.Client per socket across its joins, so its
	// limits (wrong passwords above all) count per socket, not per join.
	Conn string `json:"conn,omitempty"`
	// Sessions are the sessions the sender holds with the receiver
	// (keep); Origin says the sender is their origin (else their edge).
	Sessions []string `json:"sessions,omitempty"`
	Origin   bool     `json:"origin,omitempty"`
	// Batch are encoded out and closed messages (batch).
	Batch  []json.RawMessage `json:"batch,omitempty"`
	Reason string            `json:"reason,omitempty"`
	// Leave (bye): the edge gave up on the session's join, so its client
	// never learnt it joined: the member leaves at once rather than wait
	// its grace, and a join of the session that comes after is refused.
	Leave bool `json:"leave,omitempty"`
	// Hangup (closed): the origin ended the session on its own (not after
	// a bye), and the socket must close even if its join was refused.
	Hangup bool `json:"hangup,omitempty"`
	// Also (out): more sessions that get the same Frames, each with its
	// own Seq: a broadcast goes to a node once, whatever the number of
	// its members there.
	Also []sessSeq `json:"also,omitempty"`
}

// sessSeq is one more session of an out, and its number.
type sessSeq struct {
	Sess string `json:"sess"`
	Seq  uint64 `json:"seq"`
}

var (
	validNodeID  = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	validSession = regexp.MustCompile(`^[0-9a-f]{24}$`)
)

// errBadRemote is what decodeRemote refuses.
var errBadRemote = errors.New("bad member relay message")

func badRemote(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRemote, fmt.Sprintf(format, args...))
}

// encodeRemote writes m with the format's version.
func encodeRemote(m remoteMsg) ([]byte, error) {
	m.V = remoteVersion
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	return b, nil
}

// decodeRemote parses and checks a message from another node.
func decodeRemote(b []byte) (remoteMsg, error) {
	var m remoteMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return remoteMsg{}, badRemote("%v", err)
	}
	switch {
	case m.V != remoteVersion:
		return remoteMsg{}, badRemote("version %d, want %d", m.V, remoteVersion)
	case !validNodeID.MatchString(m.From):
		return remoteMsg{}, badRemote("sender %q", m.From)
	case len(m.Reason) > maxReasonLen:
		return remoteMsg{}, badRemote("reason of %d bytes", len(m.Reason))
	case len(m.Addr) > 64 || len(m.Host) > 256:
		return remoteMsg{}, badRemote("address or host too long")
	case m.Conn != "" && !validSession.MatchString(m.Conn):
		return remoteMsg{}, badRemote("conn %q", m.Conn)
	}
	if m.Type == msgBatch {
		if m.Sess != "" || len(m.Frames) > 0 || len(m.Batch) == 0 || len(m.Batch) > maxBatch {
			return remoteMsg{}, badRemote("batch: %d messages (1 to %d), no session or frames", len(m.Batch), maxBatch)
		}
		for i, b := range m.Batch {
			item, err := decodeRemote(b)
			if err != nil {
				return remoteMsg{}, badRemote("batch item %d: %v", i, err)
			}
			if (item.Type != msgOut && item.Type != msgClosed) || item.From != m.From {
				return remoteMsg{}, badRemote("batch item %d: a %s from %q", i, item.Type, item.From)
			}
		}
		return m, nil
	}
	if len(m.Batch) > 0 {
		return remoteMsg{}, badRemote("%s with a batch", m.Type)
	}
	if m.Leave && m.Type != msgBye {
		return remoteMsg{}, badRemote("%s with leave", m.Type)
	}
	if m.Hangup && m.Type != msgClosed {
		return remoteMsg{}, badRemote("%s with hangup", m.Type)
	}
	if len(m.Also) > 0 {
		if m.Type != msgOut || len(m.Also) > maxBatch {
			return remoteMsg{}, badRemote("%s with %d more sessions (out: at most %d)", m.Type, len(m.Also), maxBatch)
		}
		for _, a := range m.Also {
			if !validSession.MatchString(a.Sess) || a.Seq == 0 {
				return remoteMsg{}, badRemote("out: more session %q seq %d", a.Sess, a.Seq)
			}
		}
	}
	if m.Type == msgKeep {
		if m.Sess != "" || len(m.Frames) > 0 || len(m.Sessions) > maxKeepSessions {
			return remoteMsg{}, badRemote("keep: %d sessions (at most %d), no frames", len(m.Sessions), maxKeepSessions)
		}
		for _, s := range m.Sessions {
			if !validSession.MatchString(s) {
				return remoteMsg{}, badRemote("keep: session %q", s)
			}
		}
		return m, nil
	}
	if !validSession.MatchString(m.Sess) {
		return remoteMsg{}, badRemote("session %q", m.Sess)
	}
	switch m.Type {
	case msgReq:
		if m.Seq == 0 || len(m.Frames) != 1 {
			return remoteMsg{}, badRemote("req: seq %d with %d frames, want one", m.Seq, len(m.Frames))
		}
	case msgOut:
		if m.Seq == 0 || len(m.Frames) == 0 || len(m.Frames) > maxFrames {
			return remoteMsg{}, badRemote("out: seq %d with %d frames (1 to %d)", m.Seq, len(m.Frames), maxFrames)
		}
	case msgBye, msgClosed:
		if len(m.Frames) > 0 {
			return remoteMsg{}, badRemote("%s with frames", m.Type)
		}
	default:
		return remoteMsg{}, badRemote("type %q", m.Type)
	}
	for i, f := range m.Frames {
		// Unmarshal checked the JSON; a frame is an object.
		if t := bytes.TrimSpace(f); len(t) == 0 || t[0] != '{' {
			return remoteMsg{}, badRemote("%s: frame %d is not an object", m.Type, i)
		}
	}
	return m, nil
}
