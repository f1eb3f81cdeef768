package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"

	"github.com/matinee-dev/matinee/room"
	"github.com/pion/webrtc/v4"
)

// The messages nodes exchange over Redis about pipes (docs/cluster.md,
// "Relaying"), one JSON object each. Every message names its sender and
// the pipe (an id the edge picks); what it carries depends on its type.
// Decode checks everything: a message comes from the network.

// Message types.
const (
	// Edge → origin.
	typeOpen  = "open"  // pipe a room here: Addr, ToOrigin, ToEdge
	typeKeep  = "keep"  // the edge still wants the pipe (every renewal)
	typeClose = "close" // the edge dropped the pipe
	// Origin → edge.
	typeReady    = "ready"    // the pipe is open: Producers, all of them
	typeProducer = "producer" // one more producer: Producers[0]
	typeEnded    = "ended"    // producer Producer closed
	typeSync     = "sync"     // every producer carried now (every renewal)
	typeClosed   = "closed"   // the origin closed the pipe: Reason; Via when it refused for lack of pipes
)

// version is the message format; a message of another is refused.
const version = 1

// Limits on what a message may carry.
const (
	maxMessage   = 64 << 10
	maxProducers = 64
	maxAppData   = 4 << 10
	maxText      = 256
	// maxVia bounds the sub-origins a refusal names.
	maxVia = 8
)

// Message is one control-plane message.
type Message struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	From string `json:"from"`
	Pipe string `json:"pipe"`
	Room string `json:"room"`
	// Addr is the edge's pipe end, "ip:port" (open).
	Addr string `json:"addr,omitempty"`
	// ToOrigin and ToEdge are the SRTP keys of each direction (open).
	ToOrigin *Key `json:"toOrigin,omitempty"`
	ToEdge   *Key `json:"toEdge,omitempty"`
	// Producers are described in full (ready, producer, sync).
	Producers []Producer `json:"producers,omitempty"`
	// Producer is the origin id of a producer that closed (ended).
	Producer string `json:"producer,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Via names, in the order to try, nodes that carry the room as edges
	// fed by this origin and may pipe it on (closed, when the origin
	// refused an open because it sends --relay-max-pipes already): a
	// second level (docs/cluster.md).
	Via []string `json:"via,omitempty"`
}

// Key is one direction's SRTP master key and salt. It never appears in
// logs: its LogValue and String hide it.
type Key struct {
	Key  []byte `json:"key"`
	Salt []byte `json:"salt"`
}

// LogValue hides the key from slog.
func (Key) LogValue() slog.Value { return slog.StringValue("[key hidden]") }

// String hides the key from fmt.
func (Key) String() string { return "[key hidden]" }

func keyOf(k room.PipeKey) *Key { return &Key{Key: k.Key, Salt: k.Salt} }

func (k *Key) pipeKey() room.PipeKey { return room.PipeKey{Key: k.Key, Salt: k.Salt} }

// Producer describes a producer the origin carries (room.PipedProducer).
type Producer struct {
	ID        string          `json:"id"`
	Owner     string          `json:"owner"`
	Kind      string          `json:"kind"`
	Mime      string          `json:"mime"`
	ClockRate uint32          `json:"clockRate"`
	Channels  uint16          `json:"channels,omitempty"`
	Fmtp      string          `json:"fmtp,omitempty"`
	Feedback  []Feedback      `json:"feedback,omitempty"`
	Stream    string          `json:"stream,omitempty"`
	AppData   json.RawMessage `json:"appData,omitempty"`
	Priority  int             `json:"priority,omitempty"`
	Layers    []Layer         `json:"layers"`
}

// Feedback is one RTCP feedback the codec was negotiated with.
type Feedback struct {
	Type      string `json:"type"`
	Parameter string `json:"parameter,omitempty"`
}

// Layer is one stream of a producer on the pipe.
type Layer struct {
	RID  string `json:"rid,omitempty"`
	SSRC uint32 `json:"ssrc"`
}

// describe turns the media core's description into the message's.
func describe(d room.PipedProducer) (Producer, error) {
	p := Producer{ID: d.ID, Owner: d.Owner, Kind: string(d.Kind), Mime: d.Codec.MimeType, ClockRate: d.Codec.ClockRate,
		Channels: d.Codec.Channels, Fmtp: d.Codec.SDPFmtpLine, Stream: d.Stream, Priority: d.Priority}
	for _, f := range d.Codec.RTCPFeedback {
		p.Feedback = append(p.Feedback, Feedback{Type: f.Type, Parameter: f.Parameter})
	}
	for _, l := range d.Layers {
		p.Layers = append(p.Layers, Layer{RID: l.RID, SSRC: l.SSRC})
	}
	if d.AppData != nil {
		b, err := json.Marshal(d.AppData)
		if err != nil {
			return Producer{}, fmt.Errorf("producer %s appData: %w", d.ID, err)
		}
		p.AppData = b
	}
	return p, nil
}

// piped turns a checked description back into the media core's.
func (p Producer) piped() room.PipedProducer {
	d := room.PipedProducer{ID: p.ID, Owner: p.Owner, Kind: room.MediaKind(p.Kind), Stream: p.Stream, Priority: p.Priority,
		Codec: webrtc.RTPCodecCapability{MimeType: p.Mime, ClockRate: p.ClockRate, Channels: p.Channels, SDPFmtpLine: p.Fmtp}}
	for _, f := range p.Feedback {
		d.Codec.RTCPFeedback = append(d.Codec.RTCPFeedback, webrtc.RTCPFeedback{Type: f.Type, Parameter: f.Parameter})
	}
	for _, l := range p.Layers {
		d.Layers = append(d.Layers, room.PipedLayer{RID: l.RID, SSRC: l.SSRC})
	}
	if len(p.AppData) > 0 {
		var v any
		if json.Unmarshal(p.AppData, &v) == nil {
			d.AppData = v
		}
	}
	return d
}

// Encode writes m (with the format's version).
func Encode(m Message) ([]byte, error) {
	m.V = version
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	if len(b) > maxMessage {
		return nil, fmt.Errorf("encode %s message: %d bytes, at most %d", m.Type, len(b), maxMessage)
	}
	return b, nil
}

var (
	validNode  = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	validPipe  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	validToken = regexp.MustCompile(`^[A-Za-z0-9._:/+-]{1,128}$`)
	validRID   = regexp.MustCompile(`^[A-Za-z0-9_-]{0,16}$`)
)

// ErrBadMessage is what Decode refuses.
var ErrBadMessage = errors.New("bad relay message")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadMessage, fmt.Sprintf(format, args...))
}

// Decode parses and checks a message from another node.
func Decode(b []byte) (Message, error) {
	if len(b) > maxMessage {
		return Message{}, bad("%d bytes, at most %d", len(b), maxMessage)
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, bad("%v", err)
	}
	if m.V != version {
		return Message{}, bad("version %d, want %d", m.V, version)
	}
	if !validNode.MatchString(m.From) {
		return Message{}, bad("sender %q", m.From)
	}
	if !validPipe.MatchString(m.Pipe) {
		return Message{}, bad("pipe id %q", m.Pipe)
	}
	if !room.ValidID(m.Room) {
		return Message{}, bad("room %q", m.Room)
	}
	if len(m.Reason) > maxText {
		return Message{}, bad("reason of %d bytes", len(m.Reason))
	}
	if err := m.checkBody(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// checkBody checks what m's type needs.
func (m *Message) checkBody() error {
	switch m.Type {
	case typeOpen:
		a, err := netip.ParseAddrPort(m.Addr)
		if err != nil || a.Port() == 0 || a.Addr().IsUnspecified() {
			return bad("open: pipe address %q", m.Addr)
		}
		for _, k := range []*Key{m.ToOrigin, m.ToEdge} {
			if k == nil || len(k.Key) != keyLen || len(k.Salt) != saltLen {
				return bad("open: a key of the wrong size (want %d and %d bytes)", keyLen, saltLen)
			}
		}
	case typeClosed:
		if len(m.Via) > maxVia {
			return bad("closed: %d sub-origins, at most %d", len(m.Via), maxVia)
		}
		for _, n := range m.Via {
			if !validNode.MatchString(n) {
				return bad("closed: sub-origin %q", n)
			}
		}
	case typeKeep, typeClose:
	case typeEnded:
		if !validToken.MatchString(m.Producer) {
			return bad("ended: producer %q", m.Producer)
		}
	case typeProducer, typeReady, typeSync:
		if m.Type == typeProducer && len(m.Producers) != 1 {
			return bad("producer: %d producers, want 1", len(m.Producers))
		}
		if len(m.Producers) > maxProducers {
			return bad("%s: %d producers, at most %d", m.Type, len(m.Producers), maxProducers)
		}
		for i := range m.Producers {
			if err := m.Producers[i].check(); err != nil {
				return err
			}
		}
	default:
		return bad("type %q", m.Type)
	}
	return nil
}

// SRTP AEAD_AES_128_GCM sizes (sfu/srtpgcm).
const (
	keyLen  = 16
	saltLen = 12
)

// check refuses a description the edge could not use safely; the media
// core checks the codec itself when it produces.
func (p *Producer) check() error {
	switch {
	case !validToken.MatchString(p.ID):
		return bad("producer id %q", p.ID)
	case len(p.Owner) > maxText || len(p.Stream) > maxText || len(p.Mime) > maxText || len(p.Fmtp) > maxText:
		return bad("producer %s: a field longer than %d bytes", p.ID, maxText)
	case p.Kind != "audio" && p.Kind != "video":
		return bad("producer %s: kind %q", p.ID, p.Kind)
	case len(p.Layers) == 0 || len(p.Layers) > 3:
		return bad("producer %s: %d layers, want 1 to 3", p.ID, len(p.Layers))
	case len(p.Feedback) > 16:
		return bad("producer %s: %d feedback entries", p.ID, len(p.Feedback))
	case len(p.AppData) > maxAppData:
		return bad("producer %s: appData of %d bytes, at most %d", p.ID, len(p.AppData), maxAppData)
	}
	for _, f := range p.Feedback {
		if len(f.Type) > 32 || len(f.Parameter) > 32 {
			return bad("producer %s: feedback %q %q", p.ID, f.Type, f.Parameter)
		}
	}
	seen := map[uint32]bool{}
	for _, l := range p.Layers {
		if l.SSRC == 0 || seen[l.SSRC] || !validRID.MatchString(l.RID) {
			return bad("producer %s: layer %q with SSRC %d", p.ID, l.RID, l.SSRC)
		}
		seen[l.SSRC] = true
	}
	return nil
}
