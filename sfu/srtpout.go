package sfu

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/matinee-dev/matinee/sfu/srtpgcm"
	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// The SFU's own way out for RTP to a subscriber.
//
// Through pion, one forwarded copy crosses the interceptor chain (TWCC
// stamping, the congestion controller's bookkeeping), the SRTP session's
// locks and the ICE layer's (mux endpoint, ICE conn, candidate pair, UDP
// mux) before its sendto: about as much CPU again as the encryption and
// the system call themselves. A receive transport whose DTLS handshake
// this side served, and whose ICE pair runs over one of the worker's UDP
// sockets, instead gets an srtpOut: the consumer's packet is stamped with
// the transport's TWCC sequence number, recorded by the bandwidth
// estimator, marshalled and encrypted in place into a buffer of the
// producer read loop's batch, and leaves with the other subscribers'
// copies in one sendmmsg. The subscriber's RTCP comes back the SFU's own
// way too (srtcpin.go); ICE and DTLS stay with pion.
//
// The choice is made once, when the transport first connects, and never
// reverts: an SRTP stream's rollover counter lives in whichever context
// encrypts it, so handing a stream back to pion mid-way would desync the
// subscriber's decryption (and reuse AES-GCM nonces). A transport that
// cannot take this path (this side was the DTLS client, the pair is
// ICE-TCP) is served by pion from start to end.

// errNoPath reports a packet dropped because the transport's ICE pair left
// the worker's UDP sockets.
var errNoPath = errors.New("no udp path to the subscriber")

// srtpOut encrypts and sends one transport's RTP (its write, on the
// forwarding path, is in forward.go).
type srtpOut struct {
	t *Transport

	// mu guards the SRTP context (pion's is not safe for concurrent use)
	// and the transport-wide sequence numbers: the transport's audio and
	// video consumers write from different read loops.
	mu      sync.Mutex
	ctx     *srtp.Context // profiles other than AES-128-GCM
	scratch rtp.Header    // EncryptRTP's parse of the packet
	// gcm encrypts AES-128-GCM (what the SFU negotiates first), with each
	// SSRC's rollover state in streams: a transport sends few SSRCs.
	gcm     *srtpgcm.Sealer
	streams []gcmStream
	twccSeq uint16
	twccBuf [2]byte

	dest atomic.Pointer[outDest]
}

type gcmStream struct {
	ssrc uint32
	st   srtpgcm.Stream
}

// stream returns ssrc's rollover state. Called with o.mu held. A
// subscriber that has watched many shares has many SSRCs behind it, and
// their states are kept (a stream may come back on a reused SSRC): a new
// one goes first, so that the live streams are found at once.
func (o *srtpOut) stream(ssrc uint32) *srtpgcm.Stream {
	for i := range o.streams {
		if o.streams[i].ssrc == ssrc {
			return &o.streams[i].st
		}
	}
	o.streams = append(o.streams, gcmStream{})
	copy(o.streams[1:], o.streams)
	o.streams[0] = gcmStream{ssrc: ssrc}
	return &o.streams[0].st
}

// outDest is where a transport's packets go: the worker's socket of the
// selected pair's local candidate and the remote candidate's address.
type outDest struct {
	conn *udpbatch.Conn
	addr *net.UDPAddr
}

// setupOut decides, when the transport first connects, whether its RTP
// takes the SFU's own path. Called before connected is set.
func (t *RecvTransport) setupOut() {
	t.mu.Lock()
	decided := t.outDecided
	t.outDecided = true
	t.mu.Unlock()
	if decided || t.capture == nil || t.pc == nil {
		return
	}
	o, err := t.newSRTPOut()
	if err != nil {
		t.log.Debug("rtp leaves through pion", "reason", err)
		return
	}
	t.out.Store(o)
	// Consumers bound before now move onto it; those bound later find it
	// (Consumer.bindWebRTC).
	for _, c := range t.Consumers() {
		c.mu.Lock()
		c.useOwnSRTP(o)
		c.mu.Unlock()
	}
	t.log.Debug("rtp leaves through the sfu's own srtp path")
}

func (t *RecvTransport) newSRTPOut() (*srtpOut, error) {
	keys, err := t.capture.Keys()
	if err != nil {
		return nil, err
	}
	o := &srtpOut{t: t.Transport}
	if keys.Profile == srtp.ProtectionProfileAeadAes128Gcm {
		o.gcm, err = srtpgcm.NewSealer(keys.Key, keys.Salt)
	} else {
		o.ctx, err = srtp.CreateContext(keys.Key, keys.Salt, keys.Profile)
	}
	if err != nil {
		return nil, fmt.Errorf("srtp context: %w", err)
	}
	sctp := t.pc.SCTP()
	if sctp == nil || sctp.Transport() == nil {
		return nil, errors.New("no dtls transport")
	}
	ice := sctp.Transport().ICETransport()
	pair, err := ice.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return nil, fmt.Errorf("no selected candidate pair: %v", err)
	}
	d, err := t.router.w.destFor(pair)
	if err != nil {
		return nil, err
	}
	in, err := newSRTCPIn(t, keys.PeerKey, keys.PeerSalt, keys.Profile)
	if err != nil {
		return nil, fmt.Errorf("srtcp context: %w", err)
	}
	o.dest.Store(d)
	x := t.router.w.intake
	// Close unregisters whatever t.in holds once closed is set; checking
	// closed after registering covers a Close that ran in between.
	t.in.Store(in)
	in.register(x, d.addr.AddrPort())
	if t.isClosed() {
		in.unregister(x)
	}
	ice.OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		d, err := t.router.w.destFor(p)
		if err != nil {
			// The stream cannot go back to pion (see above): the
			// client has to connect again.
			o.dest.Store(nil)
			in.unregister(x)
			t.log.Warn("ice pair moved off the sfu's udp sockets", "reason", err)
			t.fail(fmt.Sprintf("media path changed to one the SFU cannot send on (%v); reconnect", err))
			return
		}
		o.dest.Store(d)
		in.register(x, d.addr.AddrPort())
		if t.isClosed() {
			in.unregister(x)
		}
	})
	return o, nil
}

// OwnSRTP reports whether the transport's RTP takes the SFU's own SRTP
// path rather than pion's.
func (t *RecvTransport) OwnSRTP() bool { return t.out.Load() != nil }

// destFor maps a selected ICE pair to one of the worker's UDP sockets.
func (w *Worker) destFor(p *webrtc.ICECandidatePair) (*outDest, error) {
	if p == nil || p.Local == nil || p.Remote == nil {
		return nil, errors.New("no candidate pair")
	}
	if p.Local.Protocol != webrtc.ICEProtocolUDP || p.Remote.Protocol != webrtc.ICEProtocolUDP {
		return nil, fmt.Errorf("%s candidate pair", p.Local.Protocol)
	}
	rip, err := netip.ParseAddr(p.Remote.Address)
	if err != nil {
		return nil, fmt.Errorf("remote candidate address %q: %w", p.Remote.Address, err)
	}
	lip, _ := netip.ParseAddr(p.Local.Address)
	conn := w.udpConnFor(lip, int(p.Local.Port), rip.Unmap().Is4())
	if conn == nil {
		return nil, fmt.Errorf("local candidate %s:%d is not one of the worker's sockets", p.Local.Address, p.Local.Port)
	}
	return &outDest{conn: conn, addr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(rip.Unmap(), p.Remote.Port))}, nil
}

// twccExtensionID returns the id the subscriber negotiated for
// transport-wide sequence numbers, 0 if none.
func twccExtensionID(ctx webrtc.TrackLocalContext) uint8 {
	for _, e := range ctx.HeaderExtensions() {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 256 {
			return uint8(e.ID)
		}
	}
	return 0
}
