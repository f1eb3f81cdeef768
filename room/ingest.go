package room

import (
	"fmt"
	"sync"

	"github.com/matinee-dev/matinee/sfu"
	"github.com/pion/webrtc/v4"
)

// IngestOptions configures media streamed into a room over plain RTP.
type IngestOptions struct {
	// Name is the member's display name (e.g. "Movie").
	Name string
	// Video and Audio say which streams will be sent.
	Video, Audio bool
	// ListenIP is where the plain-RTP sockets listen (default 127.0.0.1).
	ListenIP string
	// Source is the producers' appData "source" (default "file"): a
	// "file" is a show on the room's stage, like a screen share.
	Source string
}

// Endpoint is where one stream of an ingest is sent, and how.
type Endpoint struct {
	Kind        string `json:"kind"`
	ProducerID  string `json:"producerId"`
	IP          string `json:"ip"`
	Port        int    `json:"port"`
	PayloadType uint8  `json:"payloadType"`
	SSRC        uint32 `json:"ssrc"`
	Codec       string `json:"codec"`
	ClockRate   uint32 `json:"clockRate"`
	Channels    uint16 `json:"channels,omitempty"`
	Fmtp        string `json:"fmtp,omitempty"`
}

// Ingest is a room member that is not a WebSocket client: a file played
// into the room by ffmpeg over plain RTP. Its producers are announced
// with producerAdded like a publisher's, and everyone can subscribe.
type Ingest struct {
	mb        *Member
	endpoints []Endpoint

	mu     sync.Mutex
	ts     []*sfu.PlainTransport
	closed bool
	done   chan struct{}
}

// Codecs an ingest produces: what every browser decodes.
var (
	IngestVideoCodec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	IngestAudioCodec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
)

const (
	ingestVideoPT = 96
	ingestAudioPT = 111
)

// ingestNotifier is the member's end of the room's notifications: it
// listens to none, and a disconnect (the room ending, a kick) ends the
// ingest.
type ingestNotifier struct{ in *Ingest }

func (n *ingestNotifier) Notify(string, any)  {}
func (n *ingestNotifier) Disconnect(_ string) { go n.in.Close() }

// Ingest joins room id as a new member and opens a plain-RTP producer for
// each requested stream. Send H.264 (constrained baseline,
// packetization-mode 1) and Opus to the endpoints it returns.
func (m *Manager) Ingest(id string, o IngestOptions) (*Ingest, error) {
	if !o.Video && !o.Audio {
		return nil, errorf(KindInvalidField, "an ingest needs video or audio")
	}
	if o.Name == "" {
		o.Name = "Movie"
	}
	if o.Source == "" {
		o.Source = "file"
	}
	in := &Ingest{done: make(chan struct{})}
	mb, _, err := m.Join(id, JoinOptions{Name: o.Name, Admin: true}, &ingestNotifier{in: in})
	if err != nil {
		return nil, err
	}
	in.mb = mb
	router := mb.room.router
	stream := "ingest-" + mb.id
	add := func(kind sfu.Kind, codec webrtc.RTPCodecCapability, pt uint8) error {
		t, err := router.NewPlainTransport(sfu.PlainTransportOptions{Owner: mb.id, ListenIP: o.ListenIP, RTCPMux: true, Comedia: true})
		if err != nil {
			return err
		}
		in.mu.Lock()
		in.ts = append(in.ts, t)
		in.mu.Unlock()
		ssrc := uint32(0x4d540000) | uint32(pt)
		p, err := t.Produce(sfu.PlainProduceOptions{Kind: kind, Codec: codec, PayloadType: pt, SSRC: ssrc, AppData: map[string]any{"source": o.Source}, Stream: stream})
		if err != nil {
			return err
		}
		addr, _ := t.Tuple()
		in.endpoints = append(in.endpoints, Endpoint{
			Kind: string(kind), ProducerID: p.ID(), IP: addr.IP.String(), Port: addr.Port, PayloadType: pt, SSRC: ssrc,
			Codec: codec.MimeType, ClockRate: codec.ClockRate, Channels: codec.Channels, Fmtp: codec.SDPFmtpLine,
		})
		info := producerInfo(p)
		p.OnClose(func() {
			mb.room.broadcast("", "producerClosed", map[string]any{"producerId": p.ID()})
		})
		mb.room.broadcast(mb.id, "producerAdded", map[string]any{"producer": info})
		return nil
	}
	if o.Video {
		err = add(sfu.KindVideo, IngestVideoCodec, ingestVideoPT)
	}
	if err == nil && o.Audio {
		err = add(sfu.KindAudio, IngestAudioCodec, ingestAudioPT)
	}
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("ingest into %s: %w", id, err)
	}
	return in, nil
}

// PeerID returns the ingest's member id.
func (in *Ingest) PeerID() string { return in.mb.id }

// Room returns the room's id.
func (in *Ingest) Room() string { return in.mb.room.id }

// Endpoints returns where to send each stream.
func (in *Ingest) Endpoints() []Endpoint { return in.endpoints }

// Done is closed when the ingest has ended.
func (in *Ingest) Done() <-chan struct{} { return in.done }

// Close closes the producers (everyone gets producerClosed) and removes
// the member.
func (in *Ingest) Close() {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return
	}
	in.closed = true
	ts := in.ts
	in.mu.Unlock()
	for _, t := range ts {
		t.Close()
	}
	if in.mb != nil {
		in.mb.Leave()
	}
	close(in.done)
}
