package sfu

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/sfu/srtpgcm"
	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"
)

// Pipes carry a router's producers to a router in another worker (another
// process or node), like mediasoup's pipeToRouter, over one UDP flow:
//
//   - The origin (Router.PipeTo) sends every packet of every producer of
//     its router once, whatever the number of viewers on the other side:
//     each simulcast layer verbatim (sequence numbers, timestamps,
//     payload) under an SSRC of the pipe's own per layer, so that streams
//     of different publishers never collide, plus the publishers' sender
//     reports. It answers NACKs from the layers' packet caches and passes
//     keyframe requests on, at most one per layer per relayKeyframeInterval.
//   - The edge (Router.AcceptPipe) re-creates each producer in its router
//     (Produce, from the PipedProducer the origin described), and feeds
//     them through the same ingress as WebRTC publishers (Producer.ingress):
//     its own NACK generation and duplicate dropping, its own consumers,
//     allocator, bandwidth estimators, recorders and WHEP viewers. It
//     reports which layers its consumers need (an RTCP APP packet), so
//     the origin sends only those and its dynacast keeps a layer alive
//     while some local consumer or some pipe needs it.
//
// Everything on the flow is SRTP/SRTCP with AEAD_AES_128_GCM, with keys
// the caller supplies for each direction (the control plane exchanges
// them). Describing producers to the edge and closing them when the
// origin's close is the control plane's job too; the origin also sends an
// RTCP BYE for a producer that closes, and the edge closes it on that.

// relayKeyframeInterval is the shortest time between two keyframe
// requests that pipes pass to one layer of a publisher: edges ask for
// their many viewers, and each keyframe costs the publisher a burst.
const relayKeyframeInterval = time.Second

// pipeReportEvery is how often the origin sends sender reports and the
// edge repeats which layers it needs (the datagrams may be lost).
const pipeReportEvery = time.Second

// pipeNeedName names the RTCP APP packet in which an edge reports the
// layers it needs: its SSRC is the producer's first layer's, its data a
// bitmask of layers (bit i: layer i) then three zero bytes.
const pipeNeedName = "MTLN"

// allLayers is the need of a pipe not heard from yet: everything.
const allLayers = 1<<maxLayers - 1

// PipeKey is one direction's SRTP master key and salt (AEAD_AES_128_GCM:
// 16 and 12 bytes).
type PipeKey struct {
	Key  []byte
	Salt []byte
}

// NewPipeKey returns a random key.
func NewPipeKey() PipeKey {
	k := PipeKey{Key: make([]byte, srtpgcm.KeyLen), Salt: make([]byte, srtpgcm.SaltLen)}
	_, _ = rand.Read(k.Key)
	_, _ = rand.Read(k.Salt)
	return k
}

func (k PipeKey) valid() error {
	if len(k.Key) != srtpgcm.KeyLen || len(k.Salt) != srtpgcm.SaltLen {
		return fmt.Errorf("pipe key of %d/%d bytes, want %d/%d", len(k.Key), len(k.Salt), srtpgcm.KeyLen, srtpgcm.SaltLen)
	}
	return nil
}

// PipeOptions configures one end of a pipe.
type PipeOptions struct {
	// Listen is the local UDP address, "ip:port" (default 127.0.0.1:0).
	Listen string
	// Remote is the other end's address. The origin needs it; an edge
	// without it answers wherever the origin's first authenticated
	// packet came from.
	Remote netip.AddrPort
	// SendKey seals what this end sends; RecvKey opens what it receives
	// (the other end's SendKey).
	SendKey, RecvKey PipeKey
	// OnProducer (origin only) is told of each producer the pipe starts
	// carrying, on the goroutine that added it (it must not block): what
	// the edge's Produce needs, for the control plane to carry there.
	OnProducer func(PipedProducer)
}

// PipedProducer describes a producer as a pipe carries it.
type PipedProducer struct {
	// ID is the producer's id at the origin.
	ID     string
	Owner  string
	Kind   Kind
	Codec  webrtc.RTPCodecCapability
	Stream string
	// AppData is the origin producer's, as given at Publish.
	AppData any
	// Priority orders the producer's video among a viewer's when
	// bandwidth is short (Producer.SetPriority).
	Priority int
	// Layers are the pipe's streams of the producer, lowest first (one
	// for audio, maxLayers for video).
	Layers []PipedLayer
}

// PipedLayer is one layer's stream on the pipe.
type PipedLayer struct {
	RID  string
	SSRC uint32
}

// PipeStats counts a pipe end's traffic.
type PipeStats struct {
	// RTP packets sent and received (retransmissions included).
	PacketsSent, PacketsReceived uint64
	// Retransmits are packets sent again on the edge's NACK; NACKs the
	// lost packets asked for (sent by an edge, received by an origin).
	Retransmits, NACKs uint64
	// KeyframeRequests are PLIs sent (edge) or received (origin).
	KeyframeRequests uint64
}

// PipeTransport is one end of a pipe between routers of two workers.
type PipeTransport struct {
	id     string
	router *Router
	origin bool
	opts   PipeOptions
	conn   transport.UDPConn
	remote atomic.Pointer[net.UDPAddr]
	// open decrypts what the other end sends.
	open *srtp.Context

	// sendMu serialises sending: the sealers, their streams and buf.
	sendMu   sync.Mutex
	sealer   *srtpgcm.Sealer
	rtcpSeal *srtp.Context
	buf      [12 + maxCachedPayload + srtpgcm.TagLen]byte
	rtcpBuf  []byte

	mu     sync.Mutex
	closed bool
	// Origin: the producers carried, and their streams by SSRC.
	outs    map[*Producer]*pipeOut
	outBy   map[uint32]pipeRef
	inner   *Transport // origin: tells when the router closes
	unwatch func()
	// Edge: the producers made, their streams by SSRC (copy on write,
	// read per packet), and the direct transports they live on, by owner.
	edges   map[*Producer]*pipeEdge
	ins     atomic.Pointer[map[uint32]*pipeIn]
	inners  map[string]*Transport
	onClose []func()
	stopCtx func() bool

	sent, received, retransmits, nacks, plis atomic.Uint64

	quit chan struct{}
	wg   sync.WaitGroup
}

// pipeOut is one producer carried by an origin.
type pipeOut struct {
	t       *PipeTransport
	p       *Producer
	ssrcs   [maxLayers]uint32
	streams [maxLayers]srtpgcm.Stream // under t.sendMu
	// need is the layers the edge needs (bit i: layer i).
	need   atomic.Uint32
	cancel func()
}

type pipeRef struct {
	o   *pipeOut
	idx int
}

// pipeEdge is one producer an edge made.
type pipeEdge struct {
	p     *Producer
	first uint32 // the SSRC its need reports name
	need  atomic.Uint32
}

// pipeIn is one stream an edge receives; its read loop owns nacks.
type pipeIn struct {
	p       *Producer
	idx     int
	rid     string
	ssrc    uint32
	claimed bool
	nacks   nackLog
}

// PipeTo opens the origin end of a pipe: from now on, every producer of
// the router (those there now and those to come) is sent to opts.Remote.
// The pipe closes with Close, with ctx, or with the router.
func (r *Router) PipeTo(ctx context.Context, opts PipeOptions) (*PipeTransport, error) {
	if !opts.Remote.IsValid() {
		return nil, errors.New("pipe to: no remote address")
	}
	t, err := r.newPipe(opts, true)
	if err != nil {
		return nil, err
	}
	if t.inner, err = r.NewDirectTransport("pipe:" + t.id); err != nil {
		t.Close()
		return nil, err
	}
	t.unwatch = r.OnNewProducer(t.carry)
	for _, p := range r.Producers() {
		p.whenResolved(func() { t.carry(p) })
	}
	t.start(ctx)
	return t, nil
}

// AcceptPipe opens the edge end of a pipe: Produce re-creates, in the
// router, the producers the origin describes. The pipe closes with Close,
// with ctx, or with the router, and its producers with it.
func (r *Router) AcceptPipe(ctx context.Context, opts PipeOptions) (*PipeTransport, error) {
	t, err := r.newPipe(opts, false)
	if err != nil {
		return nil, err
	}
	t.start(ctx)
	return t, nil
}

func (r *Router) newPipe(opts PipeOptions, origin bool) (*PipeTransport, error) {
	if err := opts.SendKey.valid(); err != nil {
		return nil, fmt.Errorf("pipe send key: %w", err)
	}
	if err := opts.RecvKey.valid(); err != nil {
		return nil, fmt.Errorf("pipe receive key: %w", err)
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	laddr, err := net.ResolveUDPAddr("udp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("pipe listen address %q: %w", opts.Listen, err)
	}
	sealer, err := srtpgcm.NewSealer(opts.SendKey.Key, opts.SendKey.Salt)
	if err != nil {
		return nil, err
	}
	rtcpSeal, err := srtp.CreateContext(opts.SendKey.Key, opts.SendKey.Salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		return nil, fmt.Errorf("pipe srtcp context: %w", err)
	}
	open, err := srtp.CreateContext(opts.RecvKey.Key, opts.RecvKey.Salt, srtp.ProtectionProfileAeadAes128Gcm,
		srtp.SRTPReplayProtection(nackWindow), srtp.SRTCPReplayProtection(64))
	if err != nil {
		return nil, fmt.Errorf("pipe srtp context: %w", err)
	}
	n := r.w.cfg.Net
	if n == nil {
		if n, err = stdnet.NewNet(); err != nil {
			return nil, fmt.Errorf("pipe network: %w", err)
		}
	}
	conn, err := n.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("pipe listen %s: %w", opts.Listen, err)
	}
	t := &PipeTransport{
		id: newID("pp"), router: r, origin: origin, opts: opts, conn: conn,
		open: open, sealer: sealer, rtcpSeal: rtcpSeal,
		outs: map[*Producer]*pipeOut{}, outBy: map[uint32]pipeRef{},
		edges: map[*Producer]*pipeEdge{}, inners: map[string]*Transport{},
		quit: make(chan struct{}),
	}
	empty := map[uint32]*pipeIn{}
	t.ins.Store(&empty)
	if opts.Remote.IsValid() {
		t.remote.Store(net.UDPAddrFromAddrPort(opts.Remote))
	}
	if !r.addPipe(t) {
		_ = conn.Close()
		return nil, ErrClosed
	}
	return t, nil
}

func (t *PipeTransport) start(ctx context.Context) {
	t.wg.Add(2)
	go t.readLoop()
	go t.tick()
	t.mu.Lock()
	t.stopCtx = context.AfterFunc(ctx, t.Close)
	t.mu.Unlock()
}

// ID returns the pipe end's identifier.
func (t *PipeTransport) ID() string { return t.id }

// LocalAddr returns the address the pipe end listens on.
func (t *PipeTransport) LocalAddr() netip.AddrPort {
	if a, ok := t.conn.LocalAddr().(*net.UDPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// Stats returns the pipe end's counters.
func (t *PipeTransport) Stats() PipeStats {
	return PipeStats{PacketsSent: t.sent.Load(), PacketsReceived: t.received.Load(),
		Retransmits: t.retransmits.Load(), NACKs: t.nacks.Load(), KeyframeRequests: t.plis.Load()}
}

// Producers describes what an origin carries now.
func (t *PipeTransport) Producers() []PipedProducer {
	t.mu.Lock()
	outs := make([]*pipeOut, 0, len(t.outs))
	for _, o := range t.outs {
		outs = append(outs, o)
	}
	t.mu.Unlock()
	ds := make([]PipedProducer, 0, len(outs))
	for _, o := range outs {
		ds = append(ds, o.describe())
	}
	return ds
}

// carry starts sending producer p (origin).
func (t *PipeTransport) carry(p *Producer) {
	o := &pipeOut{t: t, p: p}
	o.need.Store(allLayers)
	n := 1
	if p.kind == KindVideo {
		n = maxLayers
	}
	t.mu.Lock()
	if t.closed || t.outs[p] != nil {
		t.mu.Unlock()
		return
	}
	for i := 0; i < n; i++ {
		s := newSSRC()
		for _, taken := t.outBy[s]; s == 0 || taken; _, taken = t.outBy[s] {
			s = newSSRC()
		}
		o.ssrcs[i] = s
		t.outBy[s] = pipeRef{o: o, idx: i}
	}
	t.outs[p] = o
	t.mu.Unlock()
	p.attachPipe(o)
	o.cancel = p.OnClose(func() { t.drop(o, true) })
	if t.isClosed() {
		// Close ran meanwhile, maybe before the producer had the pipe.
		o.cancel()
		p.detachPipe(o)
		return
	}
	if t.opts.OnProducer != nil {
		t.opts.OnProducer(o.describe())
	}
}

func (o *pipeOut) describe() PipedProducer {
	p := o.p
	d := PipedProducer{ID: p.id, Owner: p.Owner(), Kind: p.kind, Codec: p.format(), Stream: p.stream, AppData: p.appData}
	p.mu.Lock()
	d.Priority = p.priority
	for i, s := range o.ssrcs {
		if s != 0 {
			d.Layers = append(d.Layers, PipedLayer{RID: p.layers[i].rid, SSRC: s})
		}
	}
	p.mu.Unlock()
	return d
}

// drop stops carrying o's producer, telling the edge with a BYE when bye.
func (t *PipeTransport) drop(o *pipeOut, bye bool) {
	t.mu.Lock()
	if t.outs[o.p] != o {
		t.mu.Unlock()
		return
	}
	delete(t.outs, o.p)
	var ssrcs []uint32
	for _, s := range o.ssrcs {
		if s != 0 {
			delete(t.outBy, s)
			ssrcs = append(ssrcs, s)
		}
	}
	t.mu.Unlock()
	o.p.detachPipe(o)
	if bye {
		_ = t.sendRTCP(&rtcp.Goodbye{Sources: ssrcs, Reason: "producer closed"})
	}
}

// attachPipe adds a pipe to what the producer's packets go to.
func (p *Producer) attachPipe(o *pipeOut) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var old []*pipeOut
	if ps := p.pipes.Load(); ps != nil {
		old = *ps
	}
	next := append(append(make([]*pipeOut, 0, len(old)+1), old...), o)
	p.pipes.Store(&next)
}

func (p *Producer) detachPipe(o *pipeOut) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.pipes.Load()
	if ps == nil {
		return
	}
	next := make([]*pipeOut, 0, len(*ps))
	for _, x := range *ps {
		if x != o {
			next = append(next, x)
		}
	}
	p.pipes.Store(&next)
}

// send carries one packet of layer idx, if the edge needs the layer. It
// runs on the producer's read goroutine and allocates nothing.
func (o *pipeOut) send(idx int, pkt *rtp.Packet) {
	if o.need.Load()&(1<<idx) == 0 {
		return
	}
	o.t.sendRTP(o, idx, pkt.PayloadType, pkt.SequenceNumber, pkt.Timestamp, pkt.Marker, pkt.Payload)
}

// sendRTP seals and sends one packet of o's layer idx: the publisher's
// header without its extensions (their ids are its own), under the
// layer's pipe SSRC.
func (t *PipeTransport) sendRTP(o *pipeOut, idx int, pt uint8, seq uint16, ts uint32, marker bool, payload []byte) {
	dst := t.remote.Load()
	if dst == nil || len(payload) > maxCachedPayload {
		return
	}
	ssrc := o.ssrcs[idx]
	t.sendMu.Lock()
	b := t.buf[:12+len(payload)]
	b[0] = 0x80
	b[1] = pt & 0x7f
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	copy(b[12:], payload)
	out, err := t.sealer.Seal(&o.streams[idx], b, 12, ssrc, seq)
	if err == nil {
		_, err = t.conn.WriteTo(out, dst)
	}
	t.sendMu.Unlock()
	if err == nil {
		t.sent.Add(1)
	}
}

// sendRTCP seals and sends feedback or reports to the other end.
func (t *PipeTransport) sendRTCP(pkts ...rtcp.Packet) error {
	dst := t.remote.Load()
	if dst == nil {
		return nil
	}
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		return fmt.Errorf("pipe %s: marshal rtcp: %w", t.id, err)
	}
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	t.rtcpBuf, err = t.rtcpSeal.EncryptRTCP(t.rtcpBuf[:0], raw, nil)
	if err != nil {
		return fmt.Errorf("pipe %s: seal rtcp: %w", t.id, err)
	}
	_, err = t.conn.WriteTo(t.rtcpBuf, dst)
	return err
}

// readLoop opens what the other end sends: media (edge) and RTCP.
func (t *PipeTransport) readLoop() {
	defer t.wg.Done()
	buf := make([]byte, 1600)
	rs := newPipeReader()
	for {
		n, from, err := t.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || t.isClosed() {
				return
			}
			continue
		}
		t.receive(buf[:n], from, rs)
	}
}

// pipeReader is a read loop's memory, reused for every datagram.
type pipeReader struct {
	plain []byte
	// The subscribers' copies of each packet leave together (srtpout.go).
	batch *udpbatch.Batch
	hdr   rtp.Header
	pkt   rtp.Packet
}

func newPipeReader() *pipeReader {
	return &pipeReader{plain: make([]byte, 1600), batch: new(udpbatch.Batch)}
}

// receive opens one datagram and hands it on: feedback and reports to
// handleRTCP, media to its edge producer's ingress.
func (t *PipeTransport) receive(b []byte, from netip.AddrPort, rs *pipeReader) {
	if isRTCP(b) {
		out, err := t.open.DecryptRTCP(rs.plain[:0], b, nil)
		if err != nil {
			return
		}
		t.learn(from)
		if pkts, err := rtcp.Unmarshal(out); err == nil {
			t.handleRTCP(pkts)
		}
		return
	}
	if t.origin {
		return // media flows the other way
	}
	out, err := t.open.DecryptRTP(rs.plain[:0], b, &rs.hdr)
	if err != nil || rs.pkt.Unmarshal(out) != nil {
		return
	}
	t.learn(from)
	t.received.Add(1)
	s := (*t.ins.Load())[rs.pkt.SSRC]
	if s == nil {
		return // not produced (yet), or closed
	}
	if !s.claimed {
		s.p.claimLayer(s.idx, s.rid, s.ssrc)
		s.claimed = true
	}
	s.p.ingress(s.idx, &rs.pkt, time.Now(), &s.nacks, rs.batch)
}

// read reads one datagram; on an operating system socket without
// allocating the sender's address.
func (t *PipeTransport) read(buf []byte) (int, netip.AddrPort, error) {
	if uc, ok := t.conn.(*net.UDPConn); ok {
		return uc.ReadFromUDPAddrPort(buf)
	}
	n, from, err := t.conn.ReadFrom(buf)
	var ap netip.AddrPort
	if a, ok := from.(*net.UDPAddr); ok {
		ap = a.AddrPort()
	}
	return n, ap, err
}

// learn answers an edge's origin wherever its packets come from, when it
// was given no address.
func (t *PipeTransport) learn(from netip.AddrPort) {
	if t.opts.Remote.IsValid() || !from.IsValid() {
		return
	}
	if cur := t.remote.Load(); cur == nil || cur.AddrPort().Addr().Unmap() != from.Addr().Unmap() || cur.AddrPort().Port() != from.Port() {
		t.remote.Store(net.UDPAddrFromAddrPort(from))
	}
}

func (t *PipeTransport) handleRTCP(pkts []rtcp.Packet) {
	for _, pkt := range pkts {
		if t.origin {
			t.originRTCP(pkt)
		} else {
			t.edgeRTCP(pkt)
		}
	}
}

func (t *PipeTransport) lookupOut(ssrc uint32) (pipeRef, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.outBy[ssrc]
	return r, ok
}

// originRTCP serves an edge's feedback.
func (t *PipeTransport) originRTCP(pkt rtcp.Packet) {
	switch pk := pkt.(type) {
	case *rtcp.TransportLayerNack:
		r, ok := t.lookupOut(pk.MediaSSRC)
		if !ok {
			return
		}
		for _, pair := range pk.Nacks {
			pair.Range(func(seq uint16) bool {
				t.nacks.Add(1)
				t.resend(r, seq)
				return true
			})
		}
	case *rtcp.PictureLossIndication:
		t.keyframe(pk.MediaSSRC)
	case *rtcp.FullIntraRequest:
		for _, e := range pk.FIR {
			t.keyframe(e.SSRC)
		}
	case *rtcp.ApplicationDefined:
		if pk.Name != pipeNeedName || len(pk.Data) < 1 {
			return
		}
		t.mu.Lock()
		r, ok := t.outBy[pk.SSRC]
		t.mu.Unlock()
		if ok {
			r.o.need.Store(uint32(pk.Data[0]) & allLayers)
		}
	}
}

// resend sends packet seq of a layer again from its packet cache.
func (t *PipeTransport) resend(r pipeRef, seq uint16) {
	cache := r.o.p.layers[r.idx].cache.Load()
	if cache == nil {
		return
	}
	var payload [maxCachedPayload]byte
	n, ts, pt, marker, ok := cache.getPacket(seq, payload[:])
	if !ok {
		return
	}
	// The same header and payload as the first time: sealed under the
	// same nonce they give the same bytes, which the edge takes once.
	t.sendRTP(r.o, r.idx, pt, seq, ts, marker, payload[:n])
	t.retransmits.Add(1)
}

// keyframe passes an edge's keyframe request on to the publisher, at
// most once per relayKeyframeInterval for all pipes of the producer.
func (t *PipeTransport) keyframe(ssrc uint32) {
	r, ok := t.lookupOut(ssrc)
	if !ok || r.o.p.kind != KindVideo {
		return
	}
	t.plis.Add(1)
	p, idx := r.o.p, r.idx
	p.layers[idx].relayKF.request(p, idx, relayKeyframeInterval, func() { p.RequestKeyframe(idx) })
}

// edgeRTCP takes the origin's sender reports and goodbyes.
func (t *PipeTransport) edgeRTCP(pkt rtcp.Packet) {
	ins := *t.ins.Load()
	switch pk := pkt.(type) {
	case *rtcp.SenderReport:
		if s := ins[pk.SSRC]; s != nil {
			s.p.noteSenderReport(pk.SSRC, pk.NTPTime, pk.RTPTime)
		}
	case *rtcp.Goodbye:
		for _, ssrc := range pk.Sources {
			if s := ins[ssrc]; s != nil {
				s.p.Close()
			}
		}
	}
}

// Produce re-creates in the edge's router a producer the origin carries,
// as the origin described it. Its layers' SSRCs are the pipe's; the
// edge's dynacast tells the origin which it needs, so OnLayers is not for
// it.
func (t *PipeTransport) Produce(d PipedProducer) (*Producer, error) {
	if t.origin {
		return nil, fmt.Errorf("pipe %s: produce on the origin end: %w", t.id, ErrInvalidState)
	}
	if err := d.check(); err != nil {
		return nil, fmt.Errorf("pipe %s: produce %s: %w", t.id, d.ID, err)
	}
	inner, err := t.innerFor(d.Owner)
	if err != nil {
		return nil, err
	}
	in := &inbound{mid: "pipe-" + d.ID}
	p := newProducer(inner, in, d.Kind, d.Codec, d.AppData, d.Stream)
	p.priority = d.Priority
	p.writePLI = func(ssrc uint32) error {
		t.plis.Add(1)
		return t.sendRTCP(&rtcp.PictureLossIndication{MediaSSRC: ssrc})
	}
	p.writeRTCP = func(pkts []rtcp.Packet) error {
		for _, x := range pkts {
			if n, ok := x.(*rtcp.TransportLayerNack); ok {
				for _, pair := range n.Nacks {
					t.nacks.Add(uint64(len(pair.PacketList())))
				}
			}
		}
		return t.sendRTCP(pkts...)
	}
	e := &pipeEdge{p: p, first: d.Layers[0].SSRC}
	e.need.Store(allLayers)
	p.onLayers = func(active [maxLayers]bool) {
		var m uint32
		for i, a := range active {
			if a {
				m |= 1 << i
			}
		}
		e.need.Store(m)
		t.sendNeed(e)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	ins := *t.ins.Load()
	for _, l := range d.Layers {
		if ins[l.SSRC] != nil {
			t.mu.Unlock()
			return nil, fmt.Errorf("pipe %s: produce %s: SSRC %d is taken: %w", t.id, d.ID, l.SSRC, ErrInvalidState)
		}
	}
	next := make(map[uint32]*pipeIn, len(ins)+len(d.Layers))
	for k, v := range ins {
		next[k] = v
	}
	for i, l := range d.Layers {
		next[l.SSRC] = &pipeIn{p: p, idx: i, rid: l.RID, ssrc: l.SSRC}
	}
	t.ins.Store(&next)
	t.edges[p] = e
	t.mu.Unlock()
	p.OnClose(func() { t.forget(p) })
	if err := t.router.addProducer(p); err != nil {
		p.Close()
		return nil, err
	}
	inner.mu.Lock()
	inner.producers[p.id] = p
	in.producer.Store(p)
	inner.mu.Unlock()
	return p, nil
}

func (d PipedProducer) check() error {
	if d.Kind != KindAudio && d.Kind != KindVideo {
		return fmt.Errorf("kind %q: %w", d.Kind, ErrInvalidState)
	}
	if codecRank(d.Codec) < 0 {
		return fmt.Errorf("codec %s %q is not accepted: %w", d.Codec.MimeType, d.Codec.SDPFmtpLine, ErrInvalidState)
	}
	if (d.Kind == KindAudio) != strings.HasPrefix(strings.ToLower(d.Codec.MimeType), "audio/") {
		return fmt.Errorf("kind %s with codec %s: %w", d.Kind, d.Codec.MimeType, ErrInvalidState)
	}
	if len(d.Layers) == 0 || len(d.Layers) > maxLayers {
		return fmt.Errorf("%d layers, want 1 to %d: %w", len(d.Layers), maxLayers, ErrInvalidState)
	}
	for _, l := range d.Layers {
		if l.SSRC == 0 {
			return fmt.Errorf("layer without an SSRC: %w", ErrInvalidState)
		}
	}
	return nil
}

// innerFor returns the direct transport the edge's producers of one owner
// live on, so that Producer.Owner is the publisher's as at the origin.
func (t *PipeTransport) innerFor(owner string) (*Transport, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if tr := t.inners[owner]; tr != nil {
		return tr, nil
	}
	tr, err := t.router.NewDirectTransport(owner)
	if err != nil {
		return nil, fmt.Errorf("pipe %s: %w", t.id, err)
	}
	t.inners[owner] = tr
	return tr, nil
}

// forget removes a closed edge producer's streams.
func (t *PipeTransport) forget(p *Producer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.edges, p)
	ins := *t.ins.Load()
	next := make(map[uint32]*pipeIn, len(ins))
	for k, v := range ins {
		if v.p != p {
			next[k] = v
		}
	}
	t.ins.Store(&next)
}

// sendNeed tells the origin which of a producer's layers the edge needs.
func (t *PipeTransport) sendNeed(e *pipeEdge) {
	m := e.need.Load()
	_ = t.sendRTCP(&rtcp.ApplicationDefined{SSRC: e.first, Name: pipeNeedName, Data: []byte{byte(m), 0, 0, 0}})
}

// tick sends the origin's sender reports and the edge's needs once per
// pipeReportEvery.
func (t *PipeTransport) tick() {
	defer t.wg.Done()
	tk := time.NewTicker(pipeReportEvery)
	defer tk.Stop()
	for {
		select {
		case <-t.quit:
			return
		case <-tk.C:
		}
		if t.origin {
			t.sendReports()
			continue
		}
		t.mu.Lock()
		es := make([]*pipeEdge, 0, len(t.edges))
		for _, e := range t.edges {
			es = append(es, e)
		}
		t.mu.Unlock()
		for _, e := range es {
			t.sendNeed(e)
		}
	}
}

// sendReports passes the publishers' latest sender reports on, under the
// pipe's SSRCs: the timestamps are the publishers' own, so they hold.
func (t *PipeTransport) sendReports() {
	t.mu.Lock()
	refs := make([]pipeRef, 0, len(t.outBy))
	for _, r := range t.outBy {
		refs = append(refs, r)
	}
	t.mu.Unlock()
	var srs []rtcp.Packet
	for _, r := range refs {
		l := &r.o.p.layers[r.idx]
		l.srMu.Lock()
		ntp, ts, ok := l.srNTP, l.srRTP, l.srValid
		l.srMu.Unlock()
		if ok {
			srs = append(srs, &rtcp.SenderReport{SSRC: r.o.ssrcs[r.idx], NTPTime: ntp, RTPTime: ts})
		}
	}
	for len(srs) > 0 {
		n := min(len(srs), 16) // well within a datagram
		_ = t.sendRTCP(srs[:n]...)
		srs = srs[n:]
	}
}

func (t *PipeTransport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// OnClose registers f to run once the pipe end has closed.
func (t *PipeTransport) OnClose(f func()) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		f()
		return
	}
	t.onClose = append(t.onClose, f)
	t.mu.Unlock()
}

// Close closes the pipe end: an origin stops carrying its producers and
// says goodbye for them; an edge closes the producers it made (and so
// their consumers).
func (t *PipeTransport) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	outs := make([]*pipeOut, 0, len(t.outs))
	for _, o := range t.outs {
		outs = append(outs, o)
	}
	inners := make([]*Transport, 0, len(t.inners))
	for _, tr := range t.inners {
		inners = append(inners, tr)
	}
	stopCtx, unwatch, cbs := t.stopCtx, t.unwatch, t.onClose
	t.onClose = nil
	t.mu.Unlock()
	if stopCtx != nil {
		stopCtx()
	}
	if unwatch != nil {
		unwatch()
	}
	var bye []uint32
	for _, o := range outs {
		if o.cancel != nil {
			o.cancel()
		}
		o.p.detachPipe(o)
		for _, s := range o.ssrcs {
			if s != 0 {
				bye = append(bye, s)
			}
		}
	}
	for len(bye) > 0 {
		n := min(len(bye), 31) // RFC 3550: a BYE counts its sources in 5 bits
		_ = t.sendRTCP(&rtcp.Goodbye{Sources: bye[:n], Reason: "pipe closed"})
		bye = bye[n:]
	}
	for _, tr := range inners {
		tr.Close()
	}
	if t.inner != nil {
		t.inner.Close()
	}
	close(t.quit)
	_ = t.conn.Close()
	t.wg.Wait()
	t.router.removePipe(t)
	for _, f := range cbs {
		f()
	}
}

// addPipe registers a pipe end, which the router closes with itself;
// false when the router has closed.
func (r *Router) addPipe(t *PipeTransport) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.pipes == nil {
		r.pipes = map[*PipeTransport]struct{}{}
	}
	r.pipes[t] = struct{}{}
	return true
}

func (r *Router) removePipe(t *PipeTransport) {
	r.mu.Lock()
	delete(r.pipes, t)
	r.mu.Unlock()
}
