package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// Test media: one second of each format, encoded by ffmpeg.
type testMedia struct {
	cb, main, single [][]byte // H.264 access units; single: slices of at most 1000 bytes
	vp8, vp9         [][]byte // frames
	opus             [][]byte
}

// encodedMedia encodes the formats named in want ("cb", "main",
// "single", "vp8", "vp9"; Opus always) into a temporary directory.
func encodedMedia(t *testing.T, want ...string) *testMedia {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	src := []string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", "1"}
	h264 := func(name, profile string, extra ...string) [][]byte {
		out := filepath.Join(dir, name+".h264")
		args := append(append([]string{}, src...), "-c:v", "libx264", "-profile:v", profile, "-preset", "veryfast",
			"-g", "30", "-bf", "0", "-pix_fmt", "yuv420p", "-b:v", "300k")
		mediatest.Run(t, append(append(args, extra...), out)...)
		return mediatest.ReadH264(t, out)
	}
	vpx := func(name string, codec ...string) [][]byte {
		out := filepath.Join(dir, name+".ivf")
		args := append(append([]string{}, src...), codec...)
		mediatest.Run(t, append(args, "-b:v", "300k", "-g", "30", out)...)
		return readIVF(t, out)
	}
	m := &testMedia{}
	for _, w := range want {
		switch w {
		case "cb":
			m.cb = h264("cb", "baseline")
		case "cb-short-gop":
			// A keyframe every third of a second stands in for an encoder
			// that answers the SFU's keyframe request at once (pion's
			// sample track ignores PLI).
			m.cb = h264("cb", "baseline", "-g", "10")
		case "main":
			m.main = h264("main", "main")
		case "single":
			m.single = h264("single", "baseline", "-x264-params", "slice-max-size=1000")
		case "vp8":
			m.vp8 = vpx("vp8", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8")
		case "vp9":
			m.vp9 = vpx("vp9", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-pix_fmt", "yuv420p")
		}
	}
	ogg := filepath.Join(dir, "a.ogg")
	mediatest.Run(t, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "1", "-ac", "2",
		"-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20", ogg)
	m.opus = mediatest.ReadOgg(t, ogg)
	return m
}

func readIVF(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if err != nil {
			break
		}
		frames = append(frames, fr)
	}
	if len(frames) == 0 {
		t.Fatalf("%s: no frames", path)
	}
	return frames
}

// nalUnits splits an Annex B access unit into NAL units.
func nalUnits(au []byte) [][]byte {
	var out [][]byte
	for _, part := range bytes.Split(au, []byte{0, 0, 1}) {
		part = bytes.TrimRight(part, "\x00")
		if len(part) > 0 {
			out = append(out, part)
		}
	}
	return out
}

// Formats used below.
func h264Fmtp(profile string, mode int) string {
	return fmt.Sprintf("level-asymmetry-allowed=1;packetization-mode=%d;profile-level-id=%s", mode, profile)
}

var videoFB = []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}

func videoCodec(mime, fmtp string, pt uint8) []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: videoFB}, PayloadType: webrtc.PayloadType(pt)},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", pt)}, PayloadType: webrtc.PayloadType(pt + 1)},
	}
}

func opusAt(pt uint8) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: webrtc.PayloadType(pt)}
}

// publisher is a pion WHIP client looping test media.
type publisher struct {
	pc   *webrtc.PeerConnection
	sess *whip.ClientSession
	stop func()
	wg   sync.WaitGroup
}

// pubSpec says what a publisher offers and sends.
type pubSpec struct {
	api    *webrtc.API               // nil: pion's defaults on loopback
	video  webrtc.RTPCodecCapability // the track's codec
	frames [][]byte                  // access units or frames, 30 per second
	// singleNAL sends H.264 one NAL unit per packet (packetization-mode 0).
	singleNAL bool
	audio     [][]byte
}

func startPublisher(t *testing.T, ctx context.Context, endpoint, token string, spec pubSpec) *publisher {
	t.Helper()
	api := spec.api
	if api == nil {
		var err error
		if api, err = testpeer.NewAPI(testpeer.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &publisher{pc: pc}
	t.Cleanup(p.close)
	var vSample *webrtc.TrackLocalStaticSample
	var vRTP *webrtc.TrackLocalStaticRTP
	var vTrack webrtc.TrackLocal
	if spec.singleNAL {
		vRTP, err = webrtc.NewTrackLocalStaticRTP(spec.video, "video", "pub")
		vTrack = vRTP
	} else {
		vSample, err = webrtc.NewTrackLocalStaticSample(spec.video, "video", "pub")
		vTrack = vSample
	}
	if err != nil {
		t.Fatal(err)
	}
	aTrack, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []webrtc.TrackLocal{vTrack, aTrack} {
		s, err := pc.AddTrack(tr)
		if err != nil {
			t.Fatal(err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := s.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	p.sess, err = whip.Offer(ctx, nil, endpoint, token, offerGathered(t, pc))
	if err != nil {
		t.Fatalf("whip offer: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: p.sess.Answer}); err != nil {
		t.Fatalf("publisher takes the answer: %v", err)
	}
	loop := &mediatest.Loop{Video: vSample, Audio: aTrack, AUs: spec.frames, Packets: spec.audio}
	if vSample == nil {
		loop.AUs = nil
	}
	stopLoop := loop.Start()
	stopNAL := func() {}
	if vRTP != nil {
		ch := make(chan struct{})
		p.wg.Add(1)
		go func() { defer p.wg.Done(); sendSingleNAL(vRTP, spec.frames, ch) }()
		stopNAL = sync.OnceFunc(func() { close(ch) })
	}
	p.stop = func() { stopLoop(); stopNAL() }
	return p
}

// sendSingleNAL sends access units at 30 fps, each NAL unit in a packet
// of its own (RFC 6184 single NAL unit mode).
func sendSingleNAL(track *webrtc.TrackLocalStaticRTP, aus [][]byte, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	var seq uint16
	for i := 0; ; i++ {
		nals := nalUnits(aus[i%len(aus)])
		for j, nal := range nals {
			seq++
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(i * 3000), Marker: j == len(nals)-1}, Payload: nal}
			_ = track.WriteRTP(pkt)
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

func (p *publisher) close() {
	if p.stop != nil {
		p.stop()
	}
	_ = p.pc.Close()
	p.wg.Wait()
}

// waitConnected waits for pc to connect.
func waitConnected(t *testing.T, pc *webrtc.PeerConnection, d time.Duration) {
	t.Helper()
	testenv.Eventually(t, d, "peer connection connected", func() bool {
		return pc.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
}

// ptLog records the payload type of every RTP packet a peer receives, by
// SSRC, repair streams included, before pion interprets them.
type ptLog struct {
	interceptor.NoOp
	mu   sync.Mutex
	pts  map[uint32]map[uint8]int
	idrs map[uint32]int // packets that carry (the start of) an H.264 IDR
	// fragmented counts H.264 STAP-A and FU-A packets, which
	// packetization-mode 0 does not allow.
	fragmented map[uint32]int
}

func newPTLog() *ptLog {
	return &ptLog{pts: map[uint32]map[uint8]int{}, idrs: map[uint32]int{}, fragmented: map[uint32]int{}}
}

func (l *ptLog) NewInterceptor(string) (interceptor.Interceptor, error) { return l, nil }

func (l *ptLog) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err == nil && n >= 12 {
			var h rtp.Header
			if off, herr := h.Unmarshal(b[:n]); herr == nil {
				l.mu.Lock()
				if l.pts[h.SSRC] == nil {
					l.pts[h.SSRC] = map[uint8]int{}
				}
				l.pts[h.SSRC][h.PayloadType]++
				if h264IDR(b[off:n]) {
					l.idrs[h.SSRC]++
				}
				if off < n && (b[off]&0x1f == 24 || b[off]&0x1f == 28) {
					l.fragmented[h.SSRC]++
				}
				l.mu.Unlock()
			}
		}
		return n, a, err
	})
}

func (l *ptLog) count(ssrc uint32) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.pts[ssrc] {
		n += c
	}
	return n
}

func (l *ptLog) snapshot(ssrc uint32) map[uint8]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[uint8]int{}
	for pt, c := range l.pts[ssrc] {
		out[pt] = c
	}
	return out
}

// h264IDR reports whether an H.264 RTP payload carries an IDR slice, or
// the first fragment of one.
func h264IDR(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	switch p[0] & 0x1f {
	case 5:
		return true
	case 24: // STAP-A
		for q := p[1:]; len(q) > 2; {
			n := int(binary.BigEndian.Uint16(q))
			if n == 0 || len(q) < 2+n {
				return false
			}
			if q[2]&0x1f == 5 {
				return true
			}
			q = q[2+n:]
		}
	case 28: // FU-A
		return p[1]&0x80 != 0 && p[1]&0x1f == 5
	}
	return false
}

// answered is one m-section of an SDP answer: its codecs by payload
// type, its media SSRC and its RTX SSRC.
type answered struct {
	codecs  map[uint8]webrtc.RTPCodecCapability
	ssrc    uint32
	rtxSSRC uint32
}

func parseAnswered(t *testing.T, raw, kind string) answered {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		t.Fatalf("parse answer: %v", err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != kind || md.MediaName.Port.Value == 0 {
			continue
		}
		a := answered{codecs: map[uint8]webrtc.RTPCodecCapability{}}
		fmtps := map[string]string{}
		for _, at := range md.Attributes {
			pt, v, _ := strings.Cut(at.Value, " ")
			switch at.Key {
			case "fmtp":
				fmtps[pt] = v
			case "ssrc-group":
				if f := strings.Fields(at.Value); len(f) == 3 && f[0] == "FID" {
					m, _ := strconv.ParseUint(f[1], 10, 32)
					r, _ := strconv.ParseUint(f[2], 10, 32)
					a.ssrc, a.rtxSSRC = uint32(m), uint32(r)
				}
			case "ssrc":
				if a.ssrc == 0 {
					n, _ := strconv.ParseUint(pt, 10, 32)
					a.ssrc = uint32(n)
				}
			}
		}
		for _, at := range md.Attributes {
			if at.Key != "rtpmap" {
				continue
			}
			pt, v, _ := strings.Cut(at.Value, " ")
			n, _ := strconv.Atoi(pt)
			name, _, _ := strings.Cut(v, "/")
			a.codecs[uint8(n)] = webrtc.RTPCodecCapability{MimeType: kind + "/" + name, SDPFmtpLine: fmtps[pt]}
		}
		return a
	}
	t.Fatalf("answer has no %s m-section:\n%s", kind, raw)
	return answered{}
}

// viewer is a pion WHEP client that logs the payload types it receives.
type viewer struct {
	pc     *webrtc.PeerConnection
	sess   *whip.ClientSession
	log    *ptLog
	audio  answered
	video  answered
	mu     sync.Mutex
	tracks map[string]string // kind → mime type pion resolved
	wg     sync.WaitGroup
}

// startViewer offers to receive audio and video with o's codecs (pion's
// defaults when none) and returns the viewer, or the WHEP error.
func startViewer(t *testing.T, ctx context.Context, endpoint, token string, o testpeer.Options) (*viewer, error) {
	t.Helper()
	v := &viewer{log: newPTLog(), tracks: map[string]string{}}
	o.Interceptors = append(o.Interceptors, v.log)
	api, err := testpeer.NewAPI(o)
	if err != nil {
		t.Fatal(err)
	}
	if v.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = v.pc.Close()
		v.wg.Wait()
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := v.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	v.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.mu.Lock()
		v.tracks[tr.Kind().String()] = tr.Codec().MimeType
		v.mu.Unlock()
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
			}
		}()
	})
	v.sess, err = whip.Offer(ctx, nil, endpoint, token, offerGathered(t, v.pc))
	if err != nil {
		return nil, err
	}
	v.video = parseAnswered(t, v.sess.Answer, "video")
	v.audio = parseAnswered(t, v.sess.Answer, "audio")
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: v.sess.Answer}); err != nil {
		t.Fatal(err)
	}
	return v, nil
}

// checkPTs fails unless every packet of the section's streams carries a
// payload type its answer gives for the expected codec (media) or for
// its RTX (repair stream).
func checkPTs(t *testing.T, v *viewer, a answered, kind, wantMime string) {
	t.Helper()
	if a.ssrc == 0 {
		t.Fatalf("%s: the answer announces no SSRC", kind)
	}
	for pt, n := range v.log.snapshot(a.ssrc) {
		c, ok := a.codecs[pt]
		if !ok {
			t.Errorf("%s: %d packets with payload type %d, which the answer does not list (%v)", kind, n, pt, a.codecs)
			continue
		}
		if !strings.EqualFold(c.MimeType, wantMime) {
			t.Errorf("%s: %d packets with payload type %d = %s, want %s", kind, n, pt, c.MimeType, wantMime)
		}
	}
	if a.rtxSSRC == 0 {
		return
	}
	media := v.log.snapshot(a.ssrc)
	for pt, n := range v.log.snapshot(a.rtxSSRC) {
		c, ok := a.codecs[pt]
		if !ok || !strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) {
			t.Errorf("%s repair stream: %d packets with payload type %d, not an RTX format of the answer (%v)", kind, n, pt, a.codecs)
			continue
		}
		apt, _ := strconv.Atoi(strings.TrimPrefix(c.SDPFmtpLine, "apt="))
		if media[uint8(apt)] == 0 {
			t.Errorf("%s repair stream: payload type %d repairs %d, which the media stream does not use (%v)", kind, pt, apt, media)
		}
	}
}

// TestWHEPPayloadTypesMatchAnswer publishes each forwarded format over
// WHIP and watches it over WHEP with a viewer that offers it under payload
// types of its own: every RTP and RTX packet must carry the payload type
// the answer gives for it. Formats that cannot be forwarded are refused
// with 400 and a message that says why.
func TestWHEPPayloadTypesMatchAnswer(t *testing.T) {
	m := encodedMedia(t, "cb", "main", "single", "vp8", "vp9")
	srv, url := start(t, nil)
	base := httpBase(url)
	key := srv.APIKey()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	h264 := func(profile string, mode int) webrtc.RTPCodecCapability {
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: h264Fmtp(profile, mode)}
	}
	vp9 := func(profile int) webrtc.RTPCodecCapability {
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("profile-id=%d", profile)}
	}
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	cases := []struct {
		name      string
		pub       webrtc.RTPCodecCapability
		frames    [][]byte
		singleNAL bool
		view      webrtc.RTPCodecCapability // offered at payload type 120, RTX 121
		refused   string                    // the 400's message contains it; "" = must play
	}{
		{"h264 constrained baseline, mode 1", h264("42e01f", 1), m.cb, false, h264("42e01f", 1), ""},
		{"h264 main, mode 1", h264("4d001f", 1), m.main, false, h264("4d001f", 1), ""},
		{"h264 constrained baseline, mode 0", h264("42e01f", 0), m.single, true, h264("42e01f", 0), ""},
		{"h264 mode 0 source to a mode 1 viewer", h264("42e01f", 0), m.single, true, h264("42e01f", 1), ""},
		{"h264 mode 1 source to a mode 0 viewer", h264("42e01f", 1), m.cb, false, h264("42e01f", 0), "packetization-mode=1"},
		{"h264 baseline source to a main viewer", h264("42e01f", 1), m.cb, false, h264("4d001f", 1), "profile-level-id=42e01f"},
		{"vp8", vp8, m.vp8, false, vp8, ""},
		{"vp9 profile 0", vp9(0), m.vp9, false, vp9(0), ""},
		{"vp9 profile 2", vp9(0), m.vp9, false, vp9(2), "profile-id=2"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			room := fmt.Sprintf("codecs%d", i)
			pubAPI, err := testpeer.NewAPI(testpeer.Options{Codecs: append(videoCodec(c.pub.MimeType, c.pub.SDPFmtpLine, 96), opusAt(111))})
			if err != nil {
				t.Fatal(err)
			}
			pub := startPublisher(t, ctx, base+"/whip/"+room+"?name=pub", key, pubSpec{api: pubAPI, video: c.pub, frames: c.frames, singleNAL: c.singleNAL, audio: m.opus})
			waitConnected(t, pub.pc, 10*time.Second)
			defer func() { _ = pub.sess.Delete(ctx) }()
			// The viewer's own payload types, none of them the router's.
			o := testpeer.Options{
				Codecs:      append(videoCodec(c.view.MimeType, c.view.SDPFmtpLine, 120), opusAt(109)),
				InboundLoss: 0.05, // so that NACKs bring RTX
			}
			v, err := startViewer(t, ctx, base+"/whep/"+room, key, o)
			if c.refused != "" {
				var se *whip.StatusError
				if !errors.As(err, &se) || se.Code != 400 || !strings.Contains(se.Body, "bad_sdp") || !strings.Contains(se.Body, c.refused) {
					t.Fatalf("WHEP offer: %v; want 400 bad_sdp naming %q", err, c.refused)
				}
				t.Logf("refused: %s", se.Body)
				return
			}
			if err != nil {
				t.Fatalf("WHEP offer: %v", err)
			}
			defer func() { _ = v.sess.Delete(ctx) }()
			for pt, cc := range v.video.codecs {
				if pt != 120 && pt != 121 {
					t.Errorf("answer lists video payload type %d (%s %s), which the offer did not", pt, cc.MimeType, cc.SDPFmtpLine)
				}
			}
			testenv.Eventually(t, 20*time.Second, "video, its repair stream and audio", func() bool {
				return v.log.count(v.video.ssrc) >= 60 && v.log.count(v.audio.ssrc) >= 25 &&
					(v.video.rtxSSRC == 0 || v.log.count(v.video.rtxSSRC) > 0)
			})
			if v.video.rtxSSRC == 0 {
				t.Error("the answer negotiated no RTX for video")
			}
			checkPTs(t, v, v.video, "video", c.view.MimeType)
			checkPTs(t, v, v.audio, "audio", webrtc.MimeTypeOpus)
			if strings.Contains(c.view.SDPFmtpLine, "packetization-mode=0") {
				v.log.mu.Lock()
				frag := v.log.fragmented[v.video.ssrc]
				v.log.mu.Unlock()
				if frag > 0 {
					t.Errorf("a packetization-mode 0 viewer got %d STAP-A/FU-A packets", frag)
				}
			}
			v.mu.Lock()
			got := v.tracks["video"]
			v.mu.Unlock()
			if !strings.EqualFold(got, c.view.MimeType) {
				t.Errorf("pion resolved the video track as %q, want %s", got, c.view.MimeType)
			}
			t.Logf("video %v, repair %v, audio %v", v.log.snapshot(v.video.ssrc), v.log.snapshot(v.video.rtxSSRC), v.log.snapshot(v.audio.ssrc))
		})
	}
}

// TestPionDefaultsH264 is the interop case of issue 21: a Go program on
// pion's defaults publishes one H.264 encoding and Opus over WHIP, and
// three WHEP viewers on pion's defaults each get video with a keyframe
// and audio within 3 s of asking.
func TestPionDefaultsH264(t *testing.T) {
	m := encodedMedia(t, "cb-short-gop")
	srv, url := start(t, nil)
	base := httpBase(url)
	key := srv.APIKey()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A room member on pion's defaults, over the WebSocket protocol,
	// subscribes as soon as the producers are announced: before their
	// first packet says which of the offered codecs they carry.
	member := newWSMember(t, ctx, url, "pion")

	h264 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: h264Fmtp("42e01f", 1)}
	pub := startPublisher(t, ctx, base+"/whip/pion?name=pion", key, pubSpec{video: h264, frames: m.cb, audio: m.opus})
	for i := 0; i < 2; i++ {
		ev, err := member.c.WaitEvent(ctx, "producerAdded")
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Producer testpeer.Producer `json:"producer"`
		}
		if err := json.Unmarshal(ev.Params, &p); err != nil {
			t.Fatal(err)
		}
		if _, err := member.c.Subscribe(ctx, p.Producer.ID); err != nil {
			t.Fatal(err)
		}
	}
	waitConnected(t, pub.pc, 10*time.Second)
	rm, ok := srv.Rooms().Room("pion")
	if !ok {
		t.Fatal("room pion is gone")
	}
	testenv.Eventually(t, 5*time.Second, "the producers' codecs known from their packets", func() bool {
		n := 0
		for _, p := range rm.Media().Producers() {
			if mime, _ := p.Codec(); mime == webrtc.MimeTypeH264 || mime == webrtc.MimeTypeOpus {
				n++
			}
		}
		return n == 2
	})

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- watchDefault(t, ctx, base+"/whep/pion", key)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	testenv.Eventually(t, 5*time.Second, "the room member's H.264 keyframe and audio", func() bool {
		member.mu.Lock()
		defer member.mu.Unlock()
		v, a := member.tracks["video"], member.tracks["audio"]
		return v != nil && a != nil && member.log.count(uint32(a.SSRC())) > 0 && func() bool {
			member.log.mu.Lock()
			defer member.log.mu.Unlock()
			return member.log.idrs[uint32(v.SSRC())] > 0
		}()
	})
	member.mu.Lock()
	for kind, want := range map[string]string{"video": webrtc.MimeTypeH264, "audio": webrtc.MimeTypeOpus} {
		tr := member.tracks[kind]
		if !strings.EqualFold(tr.Codec().MimeType, want) {
			t.Errorf("room member's %s track resolved as %s, want %s", kind, tr.Codec().MimeType, want)
		}
		// Every packet carries the payload type that named the codec.
		if pts := member.log.snapshot(uint32(tr.SSRC())); len(pts) != 1 || pts[uint8(tr.PayloadType())] == 0 {
			t.Errorf("room member's %s payload types %v, want only %d", kind, pts, tr.PayloadType())
		}
	}
	member.mu.Unlock()
	if err := pub.sess.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}

// wsMember is a room member on pion's defaults that logs the payload
// types it receives.
type wsMember struct {
	c      *testpeer.Client
	log    *ptLog
	mu     sync.Mutex
	tracks map[string]*webrtc.TrackRemote
}

func newWSMember(t *testing.T, ctx context.Context, url, room string) *wsMember {
	t.Helper()
	m := &wsMember{log: newPTLog(), tracks: map[string]*webrtc.TrackRemote{}}
	m.c = dial(t, url, testpeer.Options{Interceptors: []interceptor.Factory{m.log}})
	m.c.OnTrack = func(tr *webrtc.TrackRemote, _ testpeer.Consumer) {
		m.mu.Lock()
		m.tracks[tr.Kind().String()] = tr
		m.mu.Unlock()
		testpeer.NewSink(tr)
	}
	if _, err := m.c.Join(ctx, room, "member"); err != nil {
		t.Fatal(err)
	}
	if err := m.c.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

// watchDefault is one pion-default WHEP viewer: nil once it has an H.264
// keyframe and Opus in payload types the answer gave, within 3 s.
func watchDefault(t *testing.T, ctx context.Context, endpoint, key string) error {
	began := time.Now()
	v, err := startViewer(t, ctx, endpoint, key, testpeer.Options{})
	if err != nil {
		return fmt.Errorf("WHEP offer: %w", err)
	}
	defer func() { _ = v.sess.Delete(ctx) }()
	var connectedAt time.Duration
	for time.Since(began) < 3*time.Second {
		if connectedAt == 0 && v.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
			connectedAt = time.Since(began)
		}
		v.log.mu.Lock()
		idr := v.log.idrs[v.video.ssrc]
		v.log.mu.Unlock()
		if idr > 0 && v.log.count(v.audio.ssrc) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(began)
	v.log.mu.Lock()
	idr := v.log.idrs[v.video.ssrc]
	v.log.mu.Unlock()
	if idr == 0 || v.log.count(v.audio.ssrc) == 0 {
		return fmt.Errorf("after %v (connected after %v, 0: not yet): %d IDR packets, %d audio packets (video payload types %v, answer %v)",
			took.Round(time.Millisecond), connectedAt.Round(time.Millisecond), idr, v.log.count(v.audio.ssrc), v.log.snapshot(v.video.ssrc), v.video.codecs)
	}
	// The answer lists only formats of the offer, under the offer's numbers.
	for kind, a := range map[string]answered{"video": v.video, "audio": v.audio} {
		offered := parseAnswered(t, v.pc.LocalDescription().SDP, kind)
		for pt, c := range a.codecs {
			if o, ok := offered.codecs[pt]; !ok || !strings.EqualFold(o.MimeType, c.MimeType) || o.SDPFmtpLine != c.SDPFmtpLine {
				return fmt.Errorf("answer's %s payload type %d is %s %q; the offer has %s %q", kind, pt, c.MimeType, c.SDPFmtpLine, o.MimeType, o.SDPFmtpLine)
			}
		}
	}
	for pt := range v.log.snapshot(v.video.ssrc) {
		if c, ok := v.video.codecs[pt]; !ok || c.MimeType != "video/H264" {
			return fmt.Errorf("video payload type %d is %v in the answer, want H264", pt, c)
		}
	}
	for pt := range v.log.snapshot(v.audio.ssrc) {
		if c, ok := v.audio.codecs[pt]; !ok || !strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus) {
			return fmt.Errorf("audio payload type %d is %v in the answer, want opus", pt, c)
		}
	}
	t.Logf("keyframe and audio after %v (connected after %v)", took.Round(time.Millisecond), connectedAt.Round(time.Millisecond))
	return nil
}

// TestWHIPOfferShapes answers offers as other tools write them: OBS 30's
// (kept in testdata as OBS sends it), GStreamer's H.264 before its caps
// settle (no a=fmtp: packetization-mode 0), and refuses with 400 what
// cannot be forwarded or is not Unified Plan.
func TestWHIPOfferShapes(t *testing.T) {
	srv, url := start(t, nil)
	base := httpBase(url)
	key := srv.APIKey()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := os.ReadFile("testdata/obs30-whip-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	obs := string(raw)
	const obsFmtp = "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n"
	if !strings.Contains(obs, obsFmtp) {
		t.Fatal("testdata offer lost its H.264 fmtp line")
	}
	cases := []struct {
		name, offer string
		// videoFmtp must be in the answer's H.264 fmtp ("" for none);
		// refused, when set, is in the 400's message instead.
		videoFmtp, refused string
	}{
		{"OBS 30", obs, "packetization-mode=1", ""},
		{"H.264 without fmtp (mode 0)", strings.Replace(obs, obsFmtp, "", 1), "", ""},
		{"Plan B", strings.Replace(obs, "a=msid:obs-studio obs-studio-video\r\n",
			"a=msid:obs-studio obs-studio-video\r\na=ssrc:2233 cname:UOzLbUFgO8QdJoVb\r\na=ssrc:2233 msid:other other-video\r\n", 1), "", "Plan B"},
		{"VP9 profile 2 only", strings.NewReplacer("H264/90000", "VP9/90000", obsFmtp, "a=fmtp:96 profile-id=2\r\n").Replace(obs), "", "profile-id=2"},
		{"H.264 high profile only", strings.Replace(obs, "profile-level-id=42e01f", "profile-level-id=64001f", 1), "", "64001f"},
	}
	for i, c := range cases {
		sess, err := whip.Offer(ctx, nil, fmt.Sprintf("%s/whip/shape%d?name=obs", base, i), key, c.offer)
		if c.refused != "" {
			var se *whip.StatusError
			if !errors.As(err, &se) || se.Code != 400 || !strings.Contains(se.Body, `"bad_sdp"`) || !strings.Contains(se.Body, c.refused) {
				t.Errorf("%s: %v; want 400 bad_sdp naming %q", c.name, err, c.refused)
			} else {
				t.Logf("%s: refused: %s", c.name, se.Body)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		v := parseAnswered(t, sess.Answer, "video")
		a := parseAnswered(t, sess.Answer, "audio")
		if h, ok := v.codecs[96]; !ok || h.MimeType != "video/H264" || len(v.codecs) != 1 {
			t.Errorf("%s: answer's video formats %v, want H264 at 96 alone", c.name, v.codecs)
		} else if c.videoFmtp == "" && strings.Contains(h.SDPFmtpLine, "packetization-mode=1") ||
			!strings.Contains(h.SDPFmtpLine, c.videoFmtp) {
			t.Errorf("%s: answer's H.264 fmtp %q, want %q", c.name, h.SDPFmtpLine, c.videoFmtp)
		}
		if o, ok := a.codecs[111]; !ok || !strings.EqualFold(o.MimeType, webrtc.MimeTypeOpus) {
			t.Errorf("%s: answer's audio formats %v, want opus at 111", c.name, a.codecs)
		}
		// The handler is served here without Server.Run, so the HTTPS
		// listener ICE-TCP shares is not listening: no TCP candidate may
		// point clients at a port (8443 by default) that is not this server's.
		for _, l := range strings.Split(sess.Answer, "\r\n") {
			if strings.HasPrefix(l, "a=candidate:") && strings.Contains(strings.ToLower(l), " tcp ") {
				t.Errorf("%s: ICE-TCP candidate without an ICE-TCP listener: %s", c.name, l)
			}
		}
		if !strings.Contains(sess.Answer, "a=recvonly") || strings.Contains(sess.Answer, "a=sendrecv") {
			t.Errorf("%s: the answer should only receive:\n%s", c.name, sess.Answer)
		}
		if err := sess.Delete(ctx); err != nil {
			t.Errorf("%s: delete: %v", c.name, err)
		}
	}
}
