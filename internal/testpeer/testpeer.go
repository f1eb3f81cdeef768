// Package testpeer provides real pion peers for Matinee's end-to-end tests:
// an API confined to loopback (optionally with random inbound loss), a
// synthetic VP8 or Opus source that answers keyframe requests, and a sink
// that records every packet it receives.
package testpeer

import (
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"
)

// Options configures a test API.
type Options struct {
	// InboundLoss drops this fraction (0..1) of every UDP datagram the
	// peer receives: loss on its downlink.
	InboundLoss float64
	// Dropped, when set, counts the datagrams dropped.
	Dropped *atomic.Int64
	// Interfaces, when set, are the interfaces ICE gathers on instead of
	// loopback alone (e.g. a test's veth inside its network namespace).
	Interfaces []string
	// NetworkTypes, when set, replace the default of UDP over IPv4 only;
	// add webrtc.NetworkTypeTCP4 for ICE-TCP.
	NetworkTypes []webrtc.NetworkType
	// Codecs, when set, replace pion's default codecs: audio/ ones are
	// registered as audio, the others as video. Header extensions for
	// mid, rid and transport-wide CC are registered with them.
	Codecs []webrtc.RTPCodecParameters
	// Interceptors are added after pion's default ones.
	Interceptors []interceptor.Factory
}

// NewAPI returns a pion API with default codecs and interceptors whose ICE
// uses loopback only (or o.Interfaces), so tests never send media anywhere
// else.
func NewAPI(o Options) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me, o.Codecs); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	for _, f := range o.Interceptors {
		ir.Add(f)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool {
		if len(o.Interfaces) > 0 {
			return slices.Contains(o.Interfaces, name)
		}
		ifc, err := net.InterfaceByName(name)
		return err == nil && ifc.Flags&net.FlagLoopback != 0
	})
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if len(o.NetworkTypes) > 0 {
		networks = o.NetworkTypes
	}
	se.SetNetworkTypes(networks)
	se.SetICEMulticastDNSMode(0)
	if o.InboundLoss > 0 {
		n, err := stdnet.NewNet()
		if err != nil {
			return nil, err
		}
		se.SetNet(&lossyNet{Net: n, loss: o.InboundLoss, dropped: o.Dropped})
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// registerCodecs registers pion's defaults, or exactly codecs.
func registerCodecs(me *webrtc.MediaEngine, codecs []webrtc.RTPCodecParameters) error {
	if len(codecs) == 0 {
		return me.RegisterDefaultCodecs()
	}
	for _, c := range codecs {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := me.RegisterCodec(c, kind); err != nil {
			return err
		}
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		for _, uri := range []string{sdp.SDESMidURI, sdp.TransportCCURI} {
			if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, kind); err != nil {
				return err
			}
		}
	}
	return nil
}

type lossyNet struct {
	*stdnet.Net
	loss    float64
	dropped *atomic.Int64
}

func (n *lossyNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{UDPConn: c, n: n}, nil
}

type lossyConn struct {
	transport.UDPConn
	n *lossyNet
}

func (c *lossyConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(p)
		if err != nil || rand.Float64() >= c.n.loss {
			return n, addr, err
		}
		if c.n.dropped != nil {
			c.n.dropped.Add(1)
		}
	}
}

// Packet is one RTP packet as sent or received.
type Packet struct {
	Seq     uint16
	TS      uint32
	Marker  bool
	Payload []byte
	At      time.Time
}

// VideoSource sends synthetic VP8 frames at 30 fps: valid payload
// descriptors, a keyframe every KeyframeEvery frames and whenever the
// receiver asks (PLI/FIR), random bytes otherwise. It records what it sent.
type VideoSource struct {
	Track *webrtc.TrackLocalStaticRTP

	keyNow atomic.Bool
	plis   atomic.Int64

	mu   sync.Mutex
	sent []Packet
}

// NewVideoSource makes a VP8 source track.
func NewVideoSource(id, stream string) (*VideoSource, error) {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, id, stream)
	if err != nil {
		return nil, err
	}
	return &VideoSource{Track: tr}, nil
}

// PLIs returns how many keyframe requests the source received.
func (s *VideoSource) PLIs() int64 { return s.plis.Load() }

// ServeRTCP reads the sender's RTCP until it stops, noting keyframe
// requests. Run it on its own goroutine.
func (s *VideoSource) ServeRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				s.plis.Add(1)
				s.keyNow.Store(true)
			}
		}
	}
}

// Run sends frames until stop is closed. Each frame has 1–4 packets of up
// to 1000 bytes; keyframes are bigger.
func (s *VideoSource) Run(stop <-chan struct{}, keyframeEvery int) {
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	var seq uint16 = uint16(rand.UintN(65536))
	ts := rand.Uint32()
	frame := 0
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		key := frame == 0 || s.keyNow.Swap(false) || (keyframeEvery > 0 && frame%keyframeEvery == 0)
		frame++
		nPkts := 1 + rand.IntN(2)
		if key {
			nPkts = 4
		}
		for i := 0; i < nPkts; i++ {
			size := 200 + rand.IntN(800)
			payload := make([]byte, size)
			for j := range payload {
				payload[j] = byte(rand.UintN(256))
			}
			// RFC 7741 descriptor: S bit on the frame's first packet,
			// partition 0; VP8 header P bit clear for keyframes.
			payload[0] = 0x00
			if i == 0 {
				payload[0] = 0x10
				if key {
					payload[1] &^= 0x01
				} else {
					payload[1] |= 0x01
				}
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: i == nPkts-1}, Payload: payload}
			seq++
			if err := s.Track.WriteRTP(pkt); err != nil {
				continue
			}
			s.mu.Lock()
			s.sent = append(s.sent, Packet{Seq: pkt.SequenceNumber, TS: ts, Marker: pkt.Marker, Payload: payload, At: time.Now()})
			s.mu.Unlock()
		}
		ts += 3000
	}
}

// Sent returns a copy of the packets sent so far.
func (s *VideoSource) Sent() []Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Packet(nil), s.sent...)
}

// AudioSource sends synthetic 20 ms Opus-sized packets at 50 per second.
type AudioSource struct {
	Track *webrtc.TrackLocalStaticRTP
	mu    sync.Mutex
	sent  []Packet
}

// NewAudioSource makes an Opus source track.
func NewAudioSource(id, stream string) (*AudioSource, error) {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, id, stream)
	if err != nil {
		return nil, err
	}
	return &AudioSource{Track: tr}, nil
}

// Run sends packets until stop is closed.
func (s *AudioSource) Run(stop <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	seq := uint16(rand.UintN(65536))
	ts := rand.Uint32()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		payload := make([]byte, 160)
		for j := range payload {
			payload[j] = byte(rand.UintN(256))
		}
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: payload}
		seq++
		ts += 960
		if err := s.Track.WriteRTP(pkt); err != nil {
			continue
		}
		s.mu.Lock()
		s.sent = append(s.sent, Packet{Seq: pkt.SequenceNumber, TS: pkt.Timestamp, Payload: payload, At: time.Now()})
		s.mu.Unlock()
	}
}

// Sent returns a copy of the packets sent so far.
func (s *AudioSource) Sent() []Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Packet(nil), s.sent...)
}

// Sink records every packet of a remote track.
type Sink struct {
	Track *webrtc.TrackRemote
	mu    sync.Mutex
	got   []Packet
	done  chan struct{}
}

// NewSink starts reading track on a goroutine until it ends.
func NewSink(track *webrtc.TrackRemote) *Sink {
	s := &Sink{Track: track, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			p, _, err := track.ReadRTP()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got = append(s.got, Packet{Seq: p.SequenceNumber, TS: p.Timestamp, Marker: p.Marker, Payload: p.Payload, At: time.Now()})
			s.mu.Unlock()
		}
	}()
	return s
}

// Done is closed when the track has ended.
func (s *Sink) Done() <-chan struct{} { return s.done }

// Got returns a copy of the packets received so far.
func (s *Sink) Got() []Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Packet(nil), s.got...)
}

// GatheredOffer makes pc's offer, sets it, and returns it once every
// candidate is in it, as a WHIP or WHEP client that does not trickle sends
// it; it gives up after within.
func GatheredOffer(pc *webrtc.PeerConnection, within time.Duration) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", fmt.Errorf("set local offer: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(within):
		return "", fmt.Errorf("ICE gathering not complete within %v", within)
	}
	return pc.LocalDescription().SDP, nil
}
