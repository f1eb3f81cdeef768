// Package synth makes synthetic media shaped like a real encoder's, for
// tests and the load generator: VP8 simulcast frames of realistic sizes
// (keyframes several times bigger than the frames between them, split
// into MTU-sized packets the way libwebrtc splits them) and Opus-sized
// audio packets. Every packet carries a stamp — when it was sent, which
// source, layer and frame — so a receiver can measure delay and tell
// where a packet came from.
package synth

import (
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// MaxPayload is the largest RTP payload written: 1200 bytes, as libwebrtc
// leaves room for SRTP, header extensions and tunnels under a 1500 MTU.
const MaxPayload = 1200

// Stamp layout, after the codec's own header bytes:
// magic(2) sentUnixNano(8) source(1) layer(1) frame(4).
const (
	stampOffset = 12
	stampLen    = 16
	magic0      = 'M'
	magic1      = 't'
)

// Stamp is what a synthetic packet says about itself.
type Stamp struct {
	Sent   time.Time
	Source uint8
	Layer  uint8
	Frame  uint32
}

func putStamp(p []byte, s Stamp) {
	b := p[stampOffset:]
	b[0], b[1] = magic0, magic1
	binary.BigEndian.PutUint64(b[2:], uint64(s.Sent.UnixNano()))
	b[10] = s.Source
	b[11] = s.Layer
	binary.BigEndian.PutUint32(b[12:], s.Frame)
}

// ReadStamp returns the stamp of a synthetic packet's payload.
func ReadStamp(payload []byte) (Stamp, bool) {
	if len(payload) < stampOffset+stampLen {
		return Stamp{}, false
	}
	b := payload[stampOffset:]
	if b[0] != magic0 || b[1] != magic1 {
		return Stamp{}, false
	}
	return Stamp{
		Sent:   time.Unix(0, int64(binary.BigEndian.Uint64(b[2:]))),
		Source: b[10],
		Layer:  b[11],
		Frame:  binary.BigEndian.Uint32(b[12:]),
	}, true
}

// Layer is one simulcast encoding of a Video.
type Layer struct {
	RID     string
	Bitrate int // bits per second
	Track   *webrtc.TrackLocalStaticRTP
	Width   int
	Height  int
	// Sent counts packets written.
	Sent atomic.Uint64

	seq uint16
	ts  uint32
}

// Video sends VP8 on one track per layer.
type Video struct {
	Layers []*Layer
	// FPS is the frame rate (default 30); KeyInterval the time between
	// periodic keyframes (default 2 s); KeyFactor how much bigger a
	// keyframe is than the average frame (default 8).
	FPS         int
	KeyInterval time.Duration
	KeyFactor   float64
	// Source tags every packet's stamp.
	Source uint8
	// OnFrame, when set before Run, is told each frame's number and how
	// many packets of it were written, per layer.
	OnFrame func(layer int, frame uint32, packets int)

	keyNow atomic.Bool
	plis   atomic.Int64
	rtcps  atomic.Int64

	// Header extensions that tell a simulcast receiver which m-section and
	// which encoding a packet belongs to (see UseExtensions).
	mid          string
	midID, ridID uint8
}

// UseExtensions makes every packet carry the mid and rid header
// extensions negotiated on s, as a browser's do: a receiver cannot tell
// simulcast encodings apart without them. Call it after the answer is
// applied and before Run.
func (v *Video) UseExtensions(s *webrtc.RTPSender, mid string) {
	v.mid = mid
	for _, e := range s.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			v.midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			v.ridID = uint8(e.ID)
		}
	}
}

// LayerSpec describes one layer to make.
type LayerSpec struct {
	RID           string
	Bitrate       int
	Width, Height int
}

// Simulcast3 are three layers like a browser's 720p screen share: about
// 150 kbit/s, 500 kbit/s and 2 Mbit/s.
var Simulcast3 = []LayerSpec{
	{RID: "q", Bitrate: 150_000, Width: 320, Height: 180},
	{RID: "h", Bitrate: 500_000, Width: 640, Height: 360},
	{RID: "f", Bitrate: 2_000_000, Width: 1280, Height: 720},
}

// NewVideo makes the tracks of a VP8 source with the given layers; one
// layer with an empty RID makes a plain (non-simulcast) track.
func NewVideo(id, stream string, specs []LayerSpec) (*Video, error) {
	v := &Video{FPS: 30, KeyInterval: 2 * time.Second, KeyFactor: 8}
	for _, s := range specs {
		var opts []func(*webrtc.TrackLocalStaticRTP)
		if s.RID != "" {
			opts = append(opts, webrtc.WithRTPStreamID(s.RID))
		}
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, id, stream, opts...)
		if err != nil {
			return nil, err
		}
		v.Layers = append(v.Layers, &Layer{RID: s.RID, Bitrate: s.Bitrate, Track: tr, Width: s.Width, Height: s.Height, seq: uint16(rand.UintN(1 << 16)), ts: rand.Uint32()})
	}
	return v, nil
}

// AddTo adds the video to pc as one send-only transceiver, its layers as
// simulcast encodings, and returns the sender.
func (v *Video) AddTo(pc *webrtc.PeerConnection) (*webrtc.RTPSender, error) {
	tr, err := pc.AddTransceiverFromTrack(v.Layers[0].Track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, err
	}
	for _, l := range v.Layers[1:] {
		if err := tr.Sender().AddEncoding(l.Track); err != nil {
			return nil, err
		}
	}
	return tr.Sender(), nil
}

// PLIs returns how many keyframe requests arrived.
func (v *Video) PLIs() int64 { return v.plis.Load() }

// RTCPs returns how many RTCP packets of any kind arrived: the first
// tells that the receiver knows the track.
func (v *Video) RTCPs() int64 { return v.rtcps.Load() }

// ServeRTCP reads the sender's RTCP (every encoding's) until it stops;
// keyframe requests make the next frame a keyframe. Run it on a goroutine.
func (v *Video) ServeRTCP(s *webrtc.RTPSender) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		v.rtcps.Add(int64(len(pkts)))
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				v.plis.Add(1)
				v.keyNow.Store(true)
			}
		}
	}
}

// Run sends frames until stop closes.
func (v *Video) Run(stop <-chan struct{}) {
	fps := v.FPS
	if fps <= 0 {
		fps = 30
	}
	gop := int(v.KeyInterval / (time.Second / time.Duration(fps)))
	if gop < 1 {
		gop = 1
	}
	tick := time.NewTicker(time.Second / time.Duration(fps))
	defer tick.Stop()
	buf := make([]byte, MaxPayload)
	for i := range buf {
		buf[i] = byte(rand.UintN(256))
	}
	var pkt rtp.Packet
	for frame := uint32(0); ; frame++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		key := frame%uint32(gop) == 0 || v.keyNow.Swap(false)
		for li, l := range v.Layers {
			avg := float64(l.Bitrate) / 8 / float64(fps)
			// Keep the average at the layer's bitrate: a GOP is one
			// keyframe of KeyFactor×P plus gop-1 P-frames.
			p := avg * float64(gop) / (float64(gop-1) + v.KeyFactor)
			size := int(p * (0.6 + 0.8*rand.Float64()))
			if key {
				size = int(p * v.KeyFactor)
			}
			n := v.sendFrame(l, uint8(li), frame, size, key, buf, &pkt)
			if v.OnFrame != nil {
				v.OnFrame(li, frame, n)
			}
		}
	}
}

// sendFrame splits one frame into packets of near-equal size and
// returns how many were written.
func (v *Video) sendFrame(l *Layer, li uint8, frame uint32, size int, key bool, buf []byte, pkt *rtp.Packet) int {
	const room = MaxPayload - 1 // VP8 payload descriptor
	if size < stampOffset+stampLen {
		size = stampOffset + stampLen
	}
	n := (size + room - 1) / room
	per := (size + n - 1) / n
	now := time.Now()
	written := 0
	for i := 0; i < n; i++ {
		sz := per + 1
		if i == n-1 {
			sz = size - per*(n-1) + 1
		}
		if sz < stampOffset+stampLen {
			sz = stampOffset + stampLen
		}
		p := buf[:sz]
		p[0] = 0x00 // RFC 7741 descriptor: no extensions, partition 0
		if i == 0 {
			p[0] = 0x10 // S: start of the frame
			if key {
				// VP8 keyframe header: frame tag with P=0, start code,
				// dimensions.
				p[1], p[2], p[3] = 0x10, 0x02, 0x00
				p[4], p[5], p[6] = 0x9d, 0x01, 0x2a
				binary.LittleEndian.PutUint16(p[7:], uint16(l.Width))
				binary.LittleEndian.PutUint16(p[9:], uint16(l.Height))
			} else {
				p[1] = 0x31 // P=1: interframe
			}
		}
		putStamp(p, Stamp{Sent: now, Source: v.Source, Layer: li, Frame: frame})
		pkt.Header = rtp.Header{Version: 2, Marker: i == n-1, SequenceNumber: l.seq, Timestamp: l.ts}
		if v.midID != 0 {
			_ = pkt.Header.SetExtension(v.midID, []byte(v.mid))
		}
		if v.ridID != 0 && l.RID != "" {
			_ = pkt.Header.SetExtension(v.ridID, []byte(l.RID))
		}
		pkt.Payload = p
		l.seq++
		if err := l.Track.WriteRTP(pkt); err == nil {
			l.Sent.Add(1)
			written++
		}
	}
	l.ts += 90000 / uint32(max(v.FPS, 1))
	return written
}

// Audio sends Opus-sized packets every 20 ms at Bitrate (default
// 128 kbit/s: 320-byte packets).
type Audio struct {
	Track   *webrtc.TrackLocalStaticRTP
	Bitrate int
	Source  uint8
	Sent    atomic.Uint64
}

// NewAudio makes an Opus source track.
func NewAudio(id, stream string) (*Audio, error) {
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, id, stream)
	if err != nil {
		return nil, err
	}
	return &Audio{Track: tr, Bitrate: 128_000}, nil
}

// Run sends packets until stop closes.
func (a *Audio) Run(stop <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	size := a.Bitrate / 8 / 50
	if size < stampOffset+stampLen {
		size = stampOffset + stampLen
	}
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(rand.UintN(256))
	}
	seq := uint16(rand.UintN(1 << 16))
	ts := rand.Uint32()
	var pkt rtp.Packet
	for frame := uint32(0); ; frame++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		putStamp(buf, Stamp{Sent: time.Now(), Source: a.Source, Frame: frame})
		pkt.Header = rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}
		pkt.Payload = buf
		seq++
		ts += 960
		if err := a.Track.WriteRTP(&pkt); err == nil {
			a.Sent.Add(1)
		}
	}
}

// DrainRTCP reads a sender's RTCP until it stops, so its interceptors run.
func DrainRTCP(s *webrtc.RTPSender) {
	for {
		if _, _, err := s.ReadRTCP(); err != nil {
			return
		}
	}
}
