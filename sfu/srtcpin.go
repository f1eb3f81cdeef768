package sfu

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v4"
)

// The SFU's own way in for subscribers' feedback.
//
// A subscriber sends about eleven compound RTCP packets a second (TWCC
// feedback every 100 ms, receiver reports), and through pion each one
// crosses the UDP mux, the ICE candidate's read loop, the DTLS/SRTP
// demultiplexer, the SRTCP session's read loop and the interceptor chain
// before the consumer's reader gets it: four goroutine hand-offs and two
// allocating parses per packet per subscriber, which cost more than the
// handling itself. For a transport on the SFU's own SRTP path (srtpout.go)
// the worker's socket reader instead picks the subscriber's SRTCP off the
// socket by its source address, decrypts it with the client's half of the
// DTLS keys and serves it at once, on the reader's goroutine: TWCC reports
// go to the estimator as they are (bwe parses them without allocating),
// the rest is parsed and given to the stream's consumer or WHEP slot.
//
// pion still gets one packet every intakePassEvery: its ICE agent judges
// the pair alive by what arrives on it, and RTCP is most of what a
// receive-only subscriber sends. Both ways end in the same handlers (the
// estimator, the sinks' onRTCP, the counters), and each way has its own
// SRTCP context and replay window, so which way a packet takes changes
// nothing but its cost.

// intakePassEvery is how often a subscriber's feedback is left to pion
// all the same, so that its ICE agent sees the pair in use (its
// disconnect timeout is 5 s; its own keepalives run every 2 s).
const intakePassEvery = 500 * time.Millisecond

// intake maps the source addresses of subscribers on the own SRTP path
// to their SRTCP decryption. The socket readers look it up per packet
// without a lock; registrations (a transport connecting, its ICE pair
// moving, its close) copy it.
type intake struct {
	mu sync.Mutex
	m  atomic.Pointer[map[netip.AddrPort]*srtcpIn]
	// taken counts the packets handled here rather than by pion.
	taken atomic.Uint64
}

func (x *intake) lookup(a netip.AddrPort) *srtcpIn {
	m := x.m.Load()
	if m == nil {
		return nil
	}
	return (*m)[a]
}

// add maps a to in unless another transport holds it already (two
// subscribers behind one address cannot be told apart; pion then serves
// both).
func (x *intake) add(a netip.AddrPort, in *srtcpIn) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.m.Load()
	if old != nil {
		if cur, ok := (*old)[a]; ok {
			return cur == in
		}
	}
	m := make(map[netip.AddrPort]*srtcpIn, 1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[a] = in
	x.m.Store(&m)
	return true
}

// remove unmaps a if in holds it.
func (x *intake) remove(a netip.AddrPort, in *srtcpIn) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.m.Load()
	if old == nil || (*old)[a] != in {
		return
	}
	m := make(map[netip.AddrPort]*srtcpIn, len(*old))
	for k, v := range *old {
		if k != a {
			m[k] = v
		}
	}
	x.m.Store(&m)
}

// tapConn is one of the worker's UDP sockets as the ICE mux reads it: the
// subscribers' SRTCP that the intake claims never reaches the mux.
type tapConn struct {
	transport.UDPConn
	x *intake
	// rd is the socket itself when it is a kernel one (not a virtual
	// network's): reads and writes without allocating, and on Linux
	// without waking the Go runtime's monitor thread for every datagram.
	rd *udpbatch.RawSocket
}

func newTapConn(c transport.UDPConn, x *intake) *tapConn {
	t := &tapConn{UDPConn: c, x: x}
	if u, ok := c.(*net.UDPConn); ok {
		t.rd = udpbatch.NewRawSocket(u)
	}
	return t
}

// take handles b from a if the intake claims it.
func (c *tapConn) take(b []byte, a netip.AddrPort) bool {
	// Version 2 tells RTP and RTCP from STUN and DTLS (RFC 7983).
	if len(b) < 8 || b[0]>>6 != 2 || !isRTCP(b) {
		return false
	}
	in := c.x.lookup(netip.AddrPortFrom(a.Addr().Unmap(), a.Port()))
	if in == nil || !in.handle(b) {
		return false
	}
	c.x.taken.Add(1)
	return true
}

// ReadFromAddrPort is what the ICE mux reads with (pion's
// AddrPortReaderWriter).
func (c *tapConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		var (
			n   int
			a   netip.AddrPort
			err error
		)
		if c.rd != nil {
			n, a, err = c.rd.ReadFrom(b)
		} else {
			var addr net.Addr
			n, addr, err = c.UDPConn.ReadFrom(b)
			if ua, ok := addr.(*net.UDPAddr); ok && err == nil {
				a = ua.AddrPort()
			}
		}
		if err != nil || !c.take(b[:n], a) {
			return n, a, err
		}
	}
}

// ReadFrom serves readers that do not use ReadFromAddrPort.
func (c *tapConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(a), nil
}

// WriteToAddrPort completes pion's AddrPortReaderWriter.
func (c *tapConn) WriteToAddrPort(b []byte, a netip.AddrPort) (int, error) {
	if c.rd != nil {
		return c.rd.WriteTo(b, a)
	}
	return c.UDPConn.WriteTo(b, net.UDPAddrFromAddrPort(a))
}

// srtcpIn decrypts one transport's incoming SRTCP.
type srtcpIn struct {
	t *RecvTransport

	mu       sync.Mutex // the context (not safe for concurrent use)
	ctx      *srtp.Context
	hdr      rtcp.Header
	lastPass time.Time

	regMu sync.Mutex
	addr  netip.AddrPort // registered source address, zero if none
}

func newSRTCPIn(t *RecvTransport, key, salt []byte, p srtp.ProtectionProfile) (*srtcpIn, error) {
	ctx, err := srtp.CreateContext(key, salt, p)
	if err != nil {
		return nil, err
	}
	return &srtcpIn{t: t, ctx: ctx}, nil
}

// rtcpBufs hold subscribers' feedback while it is decrypted and served:
// one per packet being handled rather than one per transport.
var rtcpBufs = sync.Pool{New: func() any { return new([rtcpMTU]byte) }}

// handle decrypts and serves one SRTCP packet; false leaves it to pion
// (its turn to see one, see intakePassEvery). A packet that fails to
// decrypt or parse is dropped, as pion would drop it.
func (in *srtcpIn) handle(b []byte) bool {
	now := time.Now()
	in.mu.Lock()
	defer in.mu.Unlock()
	if now.Sub(in.lastPass) >= intakePassEvery {
		in.lastPass = now
		return false
	}
	buf := rtcpBufs.Get().(*[rtcpMTU]byte)
	defer rtcpBufs.Put(buf)
	out, err := in.ctx.DecryptRTCP(buf[:0], b, &in.hdr)
	if err != nil {
		in.t.log.Debug("drop srtcp", "err", err)
		return true
	}
	if err := in.t.onFeedbackRaw(out, now); err != nil {
		in.t.log.Debug("malformed rtcp", "err", err)
	}
	return true
}

// errRTCP reports a compound RTCP packet whose framing does not parse.
var errRTCP = errors.New("malformed compound rtcp packet")

// onFeedbackRaw serves a decrypted compound RTCP packet from the intake.
// Transport-wide CC reports, most of the traffic, go to the estimator as
// they are (it parses them without allocating); the rest is parsed with
// pion/rtcp, one packet at a time, so that one malformed packet loses
// only itself.
func (t *RecvTransport) onFeedbackRaw(b []byte, now time.Time) error {
	var rest []rtcp.Packet
	var bad error
	for len(b) > 0 {
		if len(b) < 4 || b[0]>>6 != 2 {
			bad = errRTCP
			break
		}
		l := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
		if l > len(b) {
			bad = errRTCP
			break
		}
		p := b[:l]
		b = b[l:]
		if p[1] == uint8(rtcp.TypeTransportSpecificFeedback) && p[0]&0x1f == rtcp.FormatTCC {
			if t.bwe != nil {
				if err := t.bwe.OnFeedbackRaw(p, now); err != nil {
					bad = err
				}
			}
			continue
		}
		pk, err := rtcp.Unmarshal(p)
		if err != nil {
			bad = err
			continue
		}
		rest = append(rest, pk...)
	}
	if len(rest) > 0 {
		t.onFeedback(rest, now)
	}
	return bad
}

// register maps the transport's current ICE pair's remote address to it,
// dropping an earlier one (after an ICE restart or a pair change).
func (in *srtcpIn) register(x *intake, a netip.AddrPort) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	in.regMu.Lock()
	defer in.regMu.Unlock()
	if in.addr.IsValid() && in.addr != a {
		x.remove(in.addr, in)
	}
	in.addr = netip.AddrPort{}
	if a.IsValid() && x.add(a, in) {
		in.addr = a
	}
}

// unregister stops the intake for the transport.
func (in *srtcpIn) unregister(x *intake) {
	in.regMu.Lock()
	defer in.regMu.Unlock()
	if in.addr.IsValid() {
		x.remove(in.addr, in)
	}
	in.addr = netip.AddrPort{}
}

// rtcpSink is a sent stream's handler of the subscriber's feedback: a
// consumer of a WebSocket subscriber's transport, or a WHEP viewer's slot.
// Each picks out the packets about its own stream.
type rtcpSink interface{ onRTCP(pkts []rtcp.Packet) }

// addSink and removeSink keep the transport's sinks, which onFeedback
// reads without a lock.
func (t *RecvTransport) addSink(s rtcpSink) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cur []rtcpSink
	if p := t.sinks.Load(); p != nil {
		cur = *p
	}
	next := append(append(make([]rtcpSink, 0, len(cur)+1), cur...), s)
	t.sinks.Store(&next)
}

func (t *RecvTransport) removeSink(s rtcpSink) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.sinks.Load()
	if p == nil {
		return
	}
	next := make([]rtcpSink, 0, len(*p))
	for _, x := range *p {
		if x != s {
			next = append(next, x)
		}
	}
	t.sinks.Store(&next)
}

// onFeedback serves a subscriber's compound RTCP packet taken by the
// intake: what pion's interceptors would have done with it (counting,
// TWCC to the estimator), then the sinks.
func (t *RecvTransport) onFeedback(pkts []rtcp.Packet, now time.Time) {
	if st := t.router.w.stats; st != nil {
		st.count(pkts, &st.nacksIn, &st.plisIn)
	}
	if t.bwe != nil {
		for _, p := range pkts {
			if fb, ok := p.(*rtcp.TransportLayerCC); ok {
				t.bwe.OnFeedback(fb, now)
			}
		}
	}
	if p := t.sinks.Load(); p != nil {
		for _, s := range *p {
			s.onRTCP(pkts)
		}
	}
}

// names reports whether a keyframe request is about ssrc.
func names(pkt rtcp.Packet, ssrc uint32) bool {
	switch pk := pkt.(type) {
	case *rtcp.PictureLossIndication:
		return pk.MediaSSRC == ssrc
	case *rtcp.FullIntraRequest:
		for _, e := range pk.FIR {
			if e.SSRC == ssrc {
				return true
			}
		}
		return pk.MediaSSRC == ssrc
	}
	return false
}
