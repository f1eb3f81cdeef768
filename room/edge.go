package room

import (
	"context"
	"time"

	"github.com/matinee-dev/matinee/sfu"
)

// This file is the room's edge towards the protocols above it (signaling,
// whip, metrics, recorder): what they need of the media core, in room's
// own types, so that none of them reaches into sfu (README, Layout).

// Errors of the media core that a protocol edge maps to its own codes
// (WHIP/WHEP answer 400 and 404). They are sfu's values, so errors.Is
// matches whatever wraps them.
var (
	ErrBadSDP   = sfu.ErrBadSDP
	ErrNotFound = sfu.ErrNotFound
)

// ICECandidate is a client's trickled candidate. A nil SDPMid and
// SDPMLineIndex both mean the first media section.
type ICECandidate struct {
	Candidate        string
	SDPMid           *string
	SDPMLineIndex    *uint16
	UsernameFragment *string
}

// ICERestart is the SFU's side of an ICE restart a client asked for: its
// new credentials and candidates, in the bundle's media section.
type ICERestart struct {
	Ufrag, Pwd string
	// Mid and Media name the first media section; Media is its m= line
	// without "m=".
	Mid, Media string
	// Candidates are "candidate:..." attribute values.
	Candidates []string
}

// Connection is one transport (a member's or a stage viewer's) as a
// protocol that speaks SDP and trickles ICE over HTTP sees it.
type Connection struct{ t *sfu.WebRTCTransport }

// ID is the transport's id.
func (c *Connection) ID() string { return c.t.ID() }

// LocalDescription waits (until ctx ends) for the SFU's ICE candidates
// and returns its SDP with them, for protocols that cannot trickle back.
func (c *Connection) LocalDescription(ctx context.Context) (string, error) {
	return c.t.GatheredLocalDescription(ctx)
}

// RemoteICEUfrag is the client's current ICE username fragment.
func (c *Connection) RemoteICEUfrag() string { return c.t.RemoteICEUfrag() }

// RestartICE applies the client's new ICE credentials and returns the
// SFU's new ones with its candidates.
func (c *Connection) RestartICE(ctx context.Context, ufrag, pwd string) (*ICERestart, error) {
	r, err := c.t.RestartClientICE(ctx, ufrag, pwd)
	if err != nil {
		return nil, err
	}
	return (*ICERestart)(r), nil
}

// AddICECandidate trickles a client candidate in; the error is the
// media core's, unchanged.
func (c *Connection) AddICECandidate(cand *ICECandidate) error {
	return c.t.AddICECandidate((*sfu.ICECandidate)(cand))
}

// Connection returns one of the member's transports, by id.
func (mb *Member) Connection(transportID string) (*Connection, error) {
	send, recv, err := mb.transport(transportID)
	if err != nil {
		return nil, err
	}
	return &Connection{t: webrtcOf(send, recv)}, nil
}

// Media is the part of a room's media a consumer beside the room reads:
// its producers as they come and go, the room's stage, and direct
// (in-process) transports to consume them. The recorder is that
// consumer; it speaks sfu's words for producers and consumers (README,
// Layout).
type Media interface {
	Producers() []*sfu.Producer
	OnNewProducer(f func(*sfu.Producer)) (cancel func())
	IsClosed() bool
	NewDirectTransport(owner string) (*sfu.DirectTransport, error)
	// OnStage calls f with the room's stage now and on every change (see
	// Stage), until cancel, which returns once f is no longer running.
	// f must not block.
	OnStage(f func(video, audio *sfu.Producer, show bool)) (cancel func())
}

// Media returns the room's media for the recorder.
func (r *Room) Media() Media { return roomMedia{r.router, r.stage} }

type roomMedia struct {
	*sfu.Router
	stage *stage
}

func (m roomMedia) OnStage(f func(video, audio *sfu.Producer, show bool)) (cancel func()) {
	return m.stage.subscribe(func(st Stage) { f(st.Video, st.Audio, st.Show) })
}

// MediaStats is one reading of the media core's live counts, for metrics.
type MediaStats struct {
	// SendTransports carry publishers' media to the SFU; RecvTransports
	// the SFU's to subscribers (WHEP viewers and recorders included).
	SendTransports, RecvTransports int
	// OwnSRTP counts the receive transports whose RTP the SFU encrypts
	// and sends itself (batched) rather than through pion.
	OwnSRTP int
	// RTCPIntake counts subscribers' compound RTCP packets the SFU's own
	// intake served rather than pion.
	RTCPIntake uint64
	// Producers and Consumers by kind ("audio", "video").
	Producers, Consumers map[string]int
	// ForwardedPackets and ForwardedBytes are what every consumer has
	// forwarded since the worker started, closed ones included.
	ForwardedPackets, ForwardedBytes uint64
	// NACKsIn come from subscribers, NACKsOut go to publishers.
	NACKsIn, NACKsOut uint64
	// PLIsIn are keyframe requests from subscribers, PLIsOut those sent
	// to publishers after coalescing.
	PLIsIn, PLIsOut uint64
	// LayerSwitches counts video consumers changing simulcast layer.
	LayerSwitches uint64
	// Estimates are the bandwidth estimates, in bits per second, of the
	// connected subscriber transports that have an estimator.
	Estimates []int
	// Forward is how long published packets took from being read to
	// their last copy sent, since the worker started.
	Forward ForwardTimes
}

// ForwardTimes is a histogram of forwarding times.
type ForwardTimes struct {
	// Bounds are the buckets' upper bounds, in seconds.
	Bounds []float64
	// Counts[i] is the packets in bucket i (above Bounds[i-1], at most
	// Bounds[i]); one more entry counts those above every bound.
	Counts []uint64
	Sum    time.Duration
}

// MediaStats walks the media core once and reads every live count. It
// takes each object's lock briefly: for a metrics scrape, not the media
// path.
func (m *Manager) MediaStats() MediaStats {
	s := m.worker.Snapshot()
	out := MediaStats{
		SendTransports: s.Transports[sfu.Send], RecvTransports: s.Transports[sfu.Recv],
		OwnSRTP: s.OwnSRTP, RTCPIntake: s.RTCPIntake,
		Producers: map[string]int{}, Consumers: map[string]int{},
		ForwardedPackets: s.ForwardedPackets, ForwardedBytes: s.ForwardedBytes,
		NACKsIn: s.NACKsIn, NACKsOut: s.NACKsOut, PLIsIn: s.PLIsIn, PLIsOut: s.PLIsOut,
		LayerSwitches: s.LayerSwitches, Estimates: s.Estimates,
		Forward: ForwardTimes{Bounds: append([]float64(nil), sfu.ForwardBuckets[:]...), Counts: s.Forward.Counts[:], Sum: s.Forward.Sum},
	}
	for _, k := range []sfu.Kind{sfu.KindAudio, sfu.KindVideo} {
		out.Producers[string(k)] = s.Producers[k]
		out.Consumers[string(k)] = s.Consumers[k]
	}
	return out
}
