package sfu

import (
	"errors"
	"fmt"
	"github.com/matinee-dev/matinee/internal/ntp"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/sfu/nackgen"
	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// PlainTransportOptions configures a plain RTP transport.
type PlainTransportOptions struct {
	// Owner identifies the peer the transport's producers belong to.
	Owner string
	// ListenIP is the local address to bind (default 127.0.0.1).
	ListenIP string
	// Port is the local RTP port (0: any free one).
	Port int
	// RTCPMux carries RTCP on the RTP port (RFC 5761). Without it RTCP
	// uses a second socket, on Port+1 when Port is given.
	RTCPMux bool
	// Comedia makes the transport send to wherever the remote's first
	// packet came from, instead of waiting for Connect.
	Comedia bool
}

// PlainTransport is mediasoup's PlainTransport: RTP and RTCP over plain
// UDP, without ICE, DTLS or SRTP, for tools such as ffmpeg and GStreamer.
// Its producers receive RTP from the remote (and its sender reports); its
// consumers send RTP to the remote, with RTCP sender reports once a
// second, and answer the remote's PLI and FIR with a keyframe request.
//
// Producers and consumers live on an in-process transport of the router,
// so they close with the router like any other: when it closes, so does
// the plain transport.
type PlainTransport struct {
	id     string
	router *Router
	opts   PlainTransportOptions
	inner  *DirectTransport
	rtp    *net.UDPConn
	rtcp   *net.UDPConn // == rtp with RTCPMux

	mu         sync.Mutex
	remoteRTP  *net.UDPAddr
	remoteRTCP *net.UDPAddr
	producers  []*plainProducer
	consumers  []*plainConsumer
	closed     bool
	onClose    []func()

	quit chan struct{}
	wg   sync.WaitGroup
}

type plainProducer struct {
	p    *Producer
	pt   uint8
	ssrc uint32 // 0 until learned from the first packet
	// nacks is the stream's missing-packet log (Producer.ingress), the
	// RTP read loop's alone.
	nacks nackgen.Log
}

type plainConsumer struct {
	c     *Consumer
	codec webrtc.RTPCodecCapability
	pt    uint8
	t     *PlainTransport
	buf   []byte
	mu    sync.Mutex
	lastT time.Time
	lastR uint32
}

// NewPlainTransport opens the transport's UDP socket(s).
func (r *Router) NewPlainTransport(o PlainTransportOptions) (*PlainTransport, error) {
	if o.ListenIP == "" {
		o.ListenIP = "127.0.0.1"
	}
	ip := net.ParseIP(o.ListenIP)
	if ip == nil {
		return nil, fmt.Errorf("plain transport: bad listen ip %q", o.ListenIP)
	}
	rc, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: o.Port})
	if err != nil {
		return nil, fmt.Errorf("plain transport: listen: %w", err)
	}
	cc := rc
	if !o.RTCPMux {
		port := 0
		if o.Port != 0 {
			port = o.Port + 1
		}
		if cc, err = net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port}); err != nil {
			rc.Close()
			return nil, fmt.Errorf("plain transport: listen rtcp: %w", err)
		}
	}
	inner, err := r.NewDirectTransport(o.Owner)
	if err != nil {
		rc.Close()
		if cc != rc {
			cc.Close()
		}
		return nil, err
	}
	t := &PlainTransport{id: newID("pt"), router: r, opts: o, inner: inner, rtp: rc, rtcp: cc, quit: make(chan struct{})}
	t.wg.Add(2)
	go t.readLoop(rc)
	go t.tick()
	if cc != rc {
		t.wg.Add(1)
		go t.readLoop(cc)
	}
	return t, nil
}

// ID returns the transport's identifier.
func (t *PlainTransport) ID() string { return t.id }

// Tuple returns the local RTP and RTCP addresses (the same with RTCPMux).
func (t *PlainTransport) Tuple() (rtpAddr, rtcpAddr *net.UDPAddr) {
	return t.rtp.LocalAddr().(*net.UDPAddr), t.rtcp.LocalAddr().(*net.UDPAddr)
}

// Connect sets where consumers send RTP and RTCP; rtcpAddr nil means
// the RTP port with RTCPMux, or the RTP port + 1.
func (t *PlainTransport) Connect(rtpAddr, rtcpAddr *net.UDPAddr) error {
	if rtpAddr == nil {
		return errors.New("plain transport: connect needs an address")
	}
	if rtcpAddr == nil {
		rtcpAddr = rtpAddr
		if !t.opts.RTCPMux {
			rtcpAddr = &net.UDPAddr{IP: rtpAddr.IP, Port: rtpAddr.Port + 1}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	t.remoteRTP, t.remoteRTCP = rtpAddr, rtcpAddr
	return nil
}

// PlainProduceOptions describes the stream a remote sends.
type PlainProduceOptions struct {
	Kind Kind
	// Codec is what the stream carries (mime type, clock rate, channels,
	// fmtp line), e.g. H.264 with packetization-mode=1.
	Codec webrtc.RTPCodecCapability
	// PayloadType identifies the stream's packets.
	PayloadType uint8
	// SSRC identifies them too; 0 takes the first SSRC seen with the
	// payload type.
	SSRC    uint32
	AppData any
	// Stream groups producers into one media stream for subscribers
	// (a file's video and audio, so players keep them in sync); default:
	// one stream per transport.
	Stream string
}

// Produce creates a producer fed by RTP arriving on the transport.
func (t *PlainTransport) Produce(o PlainProduceOptions) (*Producer, error) {
	if codecRank(o.Codec) < 0 {
		return nil, fmt.Errorf("plain produce: codec %s %q is not accepted (Opus, H.264 packetization-mode=1, VP8, VP9 profile 0): %w", o.Codec.MimeType, o.Codec.SDPFmtpLine, ErrInvalidState)
	}
	if (o.Kind == KindAudio) != strings.HasPrefix(strings.ToLower(o.Codec.MimeType), "audio/") {
		return nil, fmt.Errorf("plain produce: kind %s with codec %s: %w", o.Kind, o.Codec.MimeType, ErrInvalidState)
	}
	in := &inbound{mid: fmt.Sprintf("plain-%d", o.PayloadType)}
	stream := o.Stream
	if stream == "" {
		stream = t.id
	}
	p := newProducer(t.inner.Transport, in, o.Kind, o.Codec, o.AppData, t.opts.Owner+"/"+stream)
	pp := &plainProducer{p: p, pt: o.PayloadType, ssrc: o.SSRC}
	p.writePLI = func(ssrc uint32) error {
		return t.sendRTCP(&rtcp.PictureLossIndication{MediaSSRC: ssrc})
	}
	p.writeRTCP = func(pkts []rtcp.Packet) error { return t.sendRTCP(pkts...) }
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	for _, q := range t.producers {
		if q.pt == o.PayloadType {
			t.mu.Unlock()
			return nil, fmt.Errorf("plain produce: payload type %d is taken: %w", o.PayloadType, ErrInvalidState)
		}
	}
	t.producers = append(t.producers, pp)
	t.mu.Unlock()
	if err := t.router.addProducer(p); err != nil {
		return nil, err
	}
	t.inner.addProducer(p)
	p.OnClose(func() {
		t.mu.Lock()
		for i, q := range t.producers {
			if q == pp {
				t.producers = append(t.producers[:i], t.producers[i+1:]...)
				break
			}
		}
		t.mu.Unlock()
	})
	return p, nil
}

// Consume sends producer p's RTP to the remote. Video starts on a
// keyframe.
func (t *PlainTransport) Consume(p *Producer) (*Consumer, error) {
	pc := &plainConsumer{t: t, codec: p.format(), pt: uint8(p.payloadType())}
	c, err := t.inner.consumeWith(p, pc)
	if err != nil {
		return nil, err
	}
	pc.c = c
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.Close()
		return nil, ErrClosed
	}
	t.consumers = append(t.consumers, pc)
	t.mu.Unlock()
	c.OnClose(func() {
		t.mu.Lock()
		for i, q := range t.consumers {
			if q == pc {
				t.consumers = append(t.consumers[:i], t.consumers[i+1:]...)
				break
			}
		}
		t.mu.Unlock()
	})
	return c, nil
}

// writeRTP sends one packet of the consumer to the remote, at once (on the
// producer's goroutine: a UDP write does not block for long). It is the
// consumer's egress (egress.go).
func (pc *plainConsumer) writeRTP(_ *udpbatch.Batch, h *rtp.Header, payload []byte) (int, error) {
	t := pc.t
	t.mu.Lock()
	dst := t.remoteRTP
	t.mu.Unlock()
	if dst == nil {
		return 0, nil
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	b, err := h.MarshalTo(growTo(&pc.buf, h.MarshalSize()+len(payload)))
	if err != nil {
		return 0, err
	}
	b += copy(pc.buf[b:], payload)
	pc.lastT, pc.lastR = time.Now(), h.Timestamp
	return t.rtp.WriteToUDP(pc.buf[:b], dst)
}

func growTo(b *[]byte, n int) []byte {
	if cap(*b) < n {
		*b = make([]byte, n, n+256)
	}
	*b = (*b)[:n]
	return *b
}

func (t *PlainTransport) sendRTCP(pkts ...rtcp.Packet) error {
	t.mu.Lock()
	dst := t.remoteRTCP
	t.mu.Unlock()
	if dst == nil {
		return nil
	}
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		return err
	}
	_, err = t.rtcp.WriteToUDP(b, dst)
	return err
}

// isRTCP tells RTCP from RTP on a shared port (RFC 5761 §4).
func isRTCP(b []byte) bool { return len(b) >= 2 && b[1] >= 192 && b[1] <= 223 }

func (t *PlainTransport) readLoop(conn *net.UDPConn) {
	defer t.wg.Done()
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	// The subscribers' copies of each packet leave together (srtpout.go).
	batch := new(udpbatch.Batch)
	for {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		b := buf[:n]
		if isRTCP(b) {
			t.handleRTCP(b, from)
			continue
		}
		if err := pkt.Unmarshal(b); err != nil || conn != t.rtp {
			continue // RTP belongs on the RTP port, whose loop owns the logs
		}
		t.learn(from, true)
		if pp, idx := t.route(&pkt); pp != nil {
			pp.p.ingress(idx, &pkt, time.Now(), &pp.nacks, batch)
		}
	}
}

// learn takes the remote's address from its packets when Comedia is on.
func (t *PlainTransport) learn(from *net.UDPAddr, isRTP bool) {
	if !t.opts.Comedia {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if isRTP && t.remoteRTP == nil {
		t.remoteRTP = from
		if t.opts.RTCPMux {
			t.remoteRTCP = from
		}
	}
	if !isRTP && t.remoteRTCP == nil {
		t.remoteRTCP = from
	}
}

// route finds the producer of a packet by SSRC, or by payload type for a
// producer that has not seen its SSRC yet.
func (t *PlainTransport) route(pkt *rtp.Packet) (*plainProducer, int) {
	t.mu.Lock()
	var found *plainProducer
	for _, pp := range t.producers {
		if pp.ssrc == pkt.SSRC && pp.pt == pkt.PayloadType {
			found = pp
			break
		}
	}
	if found == nil {
		for _, pp := range t.producers {
			if pp.ssrc == 0 && pp.pt == pkt.PayloadType {
				pp.ssrc = pkt.SSRC
				found = pp
				break
			}
		}
	}
	t.mu.Unlock()
	if found == nil {
		return nil, -1
	}
	idx := found.p.layerIndex("", pkt.SSRC)
	if idx < 0 {
		return nil, -1
	}
	return found, idx
}

func (t *PlainTransport) handleRTCP(b []byte, from *net.UDPAddr) {
	t.learn(from, false)
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		return
	}
	for _, pkt := range pkts {
		switch pk := pkt.(type) {
		case *rtcp.SenderReport:
			t.mu.Lock()
			var p *Producer
			for _, pp := range t.producers {
				if pp.ssrc == pk.SSRC {
					p = pp.p
				}
			}
			t.mu.Unlock()
			if p != nil {
				p.noteSenderReport(pk.SSRC, pk.NTPTime, pk.RTPTime)
			}
		case *rtcp.PictureLossIndication:
			t.keyframeFor(pk.MediaSSRC)
		case *rtcp.FullIntraRequest:
			for _, e := range pk.FIR {
				t.keyframeFor(e.SSRC)
			}
			t.keyframeFor(pk.MediaSSRC)
		}
	}
}

func (t *PlainTransport) keyframeFor(ssrc uint32) {
	t.mu.Lock()
	var c *Consumer
	for _, pc := range t.consumers {
		if pc.c.ssrc == ssrc {
			c = pc.c
		}
	}
	t.mu.Unlock()
	if c != nil {
		c.RequestKeyframe()
	}
}

// tick sends the consumers' sender reports once a second and notices when
// the router has closed the transport's producers and consumers.
func (t *PlainTransport) tick() {
	defer t.wg.Done()
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		select {
		case <-t.quit:
			return
		case <-tk.C:
		}
		if t.inner.isClosed() {
			go t.Close()
			return
		}
		t.mu.Lock()
		cs := append([]*plainConsumer(nil), t.consumers...)
		t.mu.Unlock()
		for _, pc := range cs {
			if sr := pc.senderReport(time.Now()); sr != nil {
				_ = t.sendRTCP(sr)
			}
		}
	}
}

// senderReport maps now to the consumer's RTP clock: through the
// publisher's own report when there is one, else from the last packet
// sent.
func (pc *plainConsumer) senderReport(now time.Time) *rtcp.SenderReport {
	c := pc.c
	rate := float64(pc.codec.ClockRate)
	if rate == 0 {
		rate = 90000
	}
	var rtpNow uint32
	if ntpTS, ts, ok := c.SenderReport(); ok {
		rtpNow = ts + uint32(int64(now.Sub(ntp.Time(ntpTS)).Seconds()*rate))
	} else {
		pc.mu.Lock()
		last, lastTS := pc.lastT, pc.lastR
		pc.mu.Unlock()
		if last.IsZero() {
			return nil
		}
		rtpNow = lastTS + uint32(int64(now.Sub(last).Seconds()*rate))
	}
	pkts, octets := c.Stats()
	return &rtcp.SenderReport{SSRC: c.ssrc, NTPTime: ntp.From(now), RTPTime: rtpNow, PacketCount: uint32(pkts), OctetCount: uint32(octets)}
}

// SDP describes, for ffmpeg ("-protocol_whitelist file,udp,rtp -i
// x.sdp") or GStreamer (sdpdemux), the RTP this transport's consumers
// send: one m-line per consumer, to the remote set by Connect. A receiver
// opens one port per m-line, so consumers meant for one ffmpeg usually
// each get their own transport.
func (t *PlainTransport) SDP() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ip := "127.0.0.1"
	port := 0
	if t.remoteRTP != nil {
		ip, port = t.remoteRTP.IP.String(), t.remoteRTP.Port
	}
	ipv := "IP4"
	if net.ParseIP(ip).To4() == nil {
		ipv = "IP6"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- 0 0 IN %s %s\r\ns=Matinee\r\nc=IN %s %s\r\nt=0 0\r\n", ipv, ip, ipv, ip)
	for _, pc := range t.consumers {
		kind := "video"
		if pc.c.Kind() == KindAudio {
			kind = "audio"
		}
		name := pc.codec.MimeType[strings.Index(pc.codec.MimeType, "/")+1:]
		fmt.Fprintf(&b, "m=%s %d RTP/AVP %d\r\n", kind, port, pc.pt)
		if pc.codec.Channels > 1 {
			fmt.Fprintf(&b, "a=rtpmap:%d %s/%d/%d\r\n", pc.pt, name, pc.codec.ClockRate, pc.codec.Channels)
		} else {
			fmt.Fprintf(&b, "a=rtpmap:%d %s/%d\r\n", pc.pt, name, pc.codec.ClockRate)
		}
		if pc.codec.SDPFmtpLine != "" {
			fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", pc.pt, pc.codec.SDPFmtpLine)
		}
		if t.opts.RTCPMux {
			b.WriteString("a=rtcp-mux\r\n")
		}
		fmt.Fprintf(&b, "a=ssrc:%d cname:matinee\r\na=recvonly\r\n", pc.c.ssrc)
	}
	return b.String()
}

// OnClose registers f to run once the transport has closed.
func (t *PlainTransport) OnClose(f func()) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		f()
		return
	}
	t.onClose = append(t.onClose, f)
	t.mu.Unlock()
}

// Close closes the producers and consumers, then the sockets.
func (t *PlainTransport) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	cbs := t.onClose
	t.onClose = nil
	t.mu.Unlock()
	t.inner.Close()
	close(t.quit)
	t.rtp.Close()
	if t.rtcp != t.rtp {
		t.rtcp.Close()
	}
	t.wg.Wait()
	for _, f := range cbs {
		f()
	}
}

// IsClosed reports whether the router has been closed (its room ended).
func (r *Router) IsClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}
