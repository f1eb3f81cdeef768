package sfu

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/sfu/nackgen"
	"github.com/matinee-dev/matinee/sfu/srtpgcm"
	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/rtcp"
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
//     keyframe requests on, at most one per layer per RelayKeyframeInterval.
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

// DefaultRelayKeyframeInterval is WorkerConfig.RelayKeyframeInterval's
// default: the shortest time between two keyframe requests that pipes
// pass to one layer of a publisher (edges ask for their many viewers, and
// each keyframe costs the publisher a burst).
const DefaultRelayKeyframeInterval = time.Second

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
	// OnProducerClosed (origin only) is told, with its id, of a producer
	// the pipe stopped carrying because it closed (not because the pipe
	// closed). The BYE the edge gets may be lost; the control plane
	// repeats it. Same rules as OnProducer.
	OnProducerClosed func(id string)
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
	// raw reads and writes conn with raw system calls when it is an
	// operating system socket (nil on a virtual network): the Go
	// runtime's own calls wake its monitor thread, whose polling cost
	// the origin more per piped copy than a local subscriber's copy
	// (docs/benchmarks.md, "Relaying across nodes").
	raw    *udpbatch.RawSocket
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
	inner   *DirectTransport // origin: tells when the router closes
	unwatch func()
	// Edge: the producers made, their streams by SSRC (copy on write,
	// read per packet), and the direct transports they live on, by owner.
	edges   map[*Producer]*pipeEdge
	ins     atomic.Pointer[map[uint32]*pipeIn]
	inners  map[string]*DirectTransport
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
	nacks   nackgen.Log
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
		srtp.SRTPReplayProtection(nackgen.Window), srtp.SRTCPReplayProtection(64))
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
		edges: map[*Producer]*pipeEdge{}, inners: map[string]*DirectTransport{},
		quit: make(chan struct{}),
	}
	if uc, ok := conn.(*net.UDPConn); ok {
		t.raw = udpbatch.NewRawSocket(uc)
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
	return t.write(t.rtcpBuf, dst)
}

// write sends one datagram to dst, under sendMu.
func (t *PipeTransport) write(b []byte, dst *net.UDPAddr) error {
	var err error
	if t.raw != nil {
		_, err = t.raw.WriteTo(b, dst.AddrPort())
	} else {
		_, err = t.conn.WriteTo(b, dst)
	}
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

// read reads one datagram; on an operating system socket without
// allocating the sender's address.
func (t *PipeTransport) read(buf []byte) (int, netip.AddrPort, error) {
	if t.raw != nil {
		return t.raw.ReadFrom(buf)
	}
	n, from, err := t.conn.ReadFrom(buf)
	var ap netip.AddrPort
	if a, ok := from.(*net.UDPAddr); ok {
		ap = a.AddrPort()
	}
	return n, ap, err
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
	inners := make([]*DirectTransport, 0, len(t.inners))
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
