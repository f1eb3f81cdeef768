package mediatest

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
)

// ReadH264 reads an Annex B file and returns its access units, each in
// Annex B framing (parameter sets and SEI stay with the slice they
// precede). It assumes one slice per picture, as libx264 makes.
func ReadH264(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := h264reader.NewReaderWithOptions(f, h264reader.WithIncludeSEI(true))
	if err != nil {
		t.Fatal(err)
	}
	var aus [][]byte
	var cur []byte
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		cur = append(cur, 0, 0, 0, 1)
		cur = append(cur, nal.Data...)
		if nal.UnitType == h264reader.NalUnitTypeCodedSliceNonIdr || nal.UnitType == h264reader.NalUnitTypeCodedSliceIdr {
			aus = append(aus, cur)
			cur = nil
		}
	}
	return aus
}

// ReadOgg returns the Opus packets of an Ogg file, without the two
// header packets.
func ReadOgg(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	var cur []byte
	for len(b) > 0 {
		if len(b) < 27 || string(b[:4]) != "OggS" {
			t.Fatalf("read %s: bad Ogg page", path)
		}
		nseg := int(b[26])
		lacing := b[27 : 27+nseg]
		data := b[27+nseg:]
		for _, l := range lacing {
			cur = append(cur, data[:l]...)
			data = data[l:]
			if l < 255 {
				pkts = append(pkts, cur)
				cur = nil
			}
		}
		b = data
	}
	if len(pkts) < 2 {
		t.Fatalf("read %s: no Opus packets", path)
	}
	return pkts[2:]
}

// Loop sends video access units at 30 fps and 20 ms audio packets on
// their tracks, both paced by one clock, looping over the given media
// until stop is closed. vPeriod frames and aPeriod packets make one loop
// (so a 1 s file loops as 30 frames and 50 packets, in step).
type Loop struct {
	Video   *webrtc.TrackLocalStaticSample
	Audio   *webrtc.TrackLocalStaticSample
	AUs     [][]byte
	Packets [][]byte
	// FPS defaults to 30.
	FPS int
}

// Run sends until stop is closed.
func (l *Loop) Run(stop <-chan struct{}) {
	fps := l.FPS
	if fps == 0 {
		fps = 30
	}
	vDur := time.Second / time.Duration(fps)
	aDur := 20 * time.Millisecond
	start := time.Now()
	var vi, ai int
	for {
		now := time.Since(start)
		for l.Video != nil && len(l.AUs) > 0 && time.Duration(vi)*vDur <= now {
			_ = l.Video.WriteSample(media.Sample{Data: l.AUs[vi%len(l.AUs)], Duration: vDur})
			vi++
		}
		for l.Audio != nil && len(l.Packets) > 0 && time.Duration(ai)*aDur <= now {
			_ = l.Audio.WriteSample(media.Sample{Data: l.Packets[ai%len(l.Packets)], Duration: aDur})
			ai++
		}
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Start runs the loop on a goroutine; the returned function stops it and
// waits.
func (l *Loop) Start() (stop func()) {
	ch := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.Run(ch) }()
	var once sync.Once
	return func() { once.Do(func() { close(ch); wg.Wait() }) }
}

// H264API is a loopback-only pion API whose only codecs are H.264
// (constrained baseline, packetization-mode 1) and Opus, so that what it
// publishes is H.264 whatever the server prefers.
func H264API() (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: OpusCodec, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	vc := H264Codec
	vc.RTCPFeedback = []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: vc, PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	for _, ext := range []string{sdp.SDESMidURI, sdp.SDESRTPStreamIDURI, sdp.SDESRepairRTPStreamIDURI} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: ext}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
	}
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESMidURI}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool {
		ifc, err := net.InterfaceByName(name)
		return err == nil && ifc.Flags&net.FlagLoopback != 0
	})
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// Codecs of H264API.
var (
	H264Codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	OpusCodec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
)
