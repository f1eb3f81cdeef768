// Package sfu is Matinee's media core, in mediasoup's model on pion/webrtc:
// a Worker owns the network sockets; a Router is one room's media;
// Transports are peer connections in one direction; Producers are incoming
// tracks; Consumers forward one producer to one subscriber.
//
// The package knows nothing of rooms, JSON or HTTP: it deals in SDP strings,
// ICE candidates and callbacks.
package sfu

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/sfu/bwe"
	"github.com/matinee-dev/matinee/sfu/dtlskeys"
	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"
)

// Errors callers can test for with errors.Is.
var (
	ErrClosed       = errors.New("closed")
	ErrNotFound     = errors.New("not found")
	ErrInvalidState = errors.New("invalid state")
	ErrBadSDP       = errors.New("bad sdp")
)

// WorkerConfig configures the network side of the media core.
type WorkerConfig struct {
	// UDPPort is the single UDP port every ICE connection shares; 0 picks
	// an ephemeral port per local address.
	UDPPort int
	// Interfaces, when non-empty, are the only interfaces ICE gathers on.
	Interfaces []string
	// InterfaceFilter, when set, decides which interfaces are used (after
	// Interfaces). The server passes its LAN-address rules here.
	InterfaceFilter func(name string) bool
	// LoopbackOnly gathers on loopback alone (tests, single-host use).
	LoopbackOnly bool
	// AnnounceIPs replace host candidate addresses (1:1 NAT). They must be
	// IP addresses: callers resolve DNS names first.
	AnnounceIPs []string
	// TCPListener, when set, accepts ICE-TCP connections (RFC 6544
	// passive candidates, RFC 4571 framing) for networks that block UDP.
	// The worker owns it from then on and closes it in Close. It may be a
	// listener that only receives connections handed over by another one,
	// such as the HTTPS listener sharing its port; its Addr must be a
	// *net.TCPAddr whose port is the one to advertise.
	TCPListener net.Listener
	// TCPPort, when TCPListener is nil and TCPPort > 0, is a TCP port the
	// worker listens on (all addresses) for ICE-TCP. 0 disables ICE-TCP.
	TCPPort int
	// ConnectTimeout bounds ICE+DTLS; see TransportOptions.OnFailed.
	ConnectTimeout time.Duration
	// NACKHistory is the number of packets each published video layer
	// keeps for retransmission to all its subscribers (a power of two).
	NACKHistory int
	// InitialBitrate and MaxBitrate bound each subscriber's bandwidth
	// estimate, in bits per second.
	InitialBitrate, MaxBitrate int
	// MinBitrate is the estimate's floor (0: 50 kbit/s, below which even
	// audio suffers). Tests whose subject is not bandwidth estimation
	// raise it to their links' rate, so that a stall of the machine they
	// share, which an in-process virtual network turns into queueing
	// delay, cannot move the layers they check.
	MinBitrate int
	// PublisherStartBitrate, in bits per second, is where publishers'
	// congestion controllers are told to start (startbitrate.go; 0:
	// DefaultPublisherStartBitrate, negative: not told).
	PublisherStartBitrate int
	// KeyframeInterval is the shortest time between two keyframe requests
	// sent to one publisher's layer (0: DefaultKeyframeInterval).
	KeyframeInterval time.Duration
	// RelayKeyframeInterval is the shortest time between two keyframe
	// requests all pipes together pass to one layer of a publisher (0:
	// DefaultRelayKeyframeInterval).
	RelayKeyframeInterval time.Duration
	// Clock paces keyframe requests (nil: the system's clock); tests
	// move a clock of their own rather than sleep through an interval.
	Clock Clock
	// Net, when set, replaces the operating system's network (pion's vnet
	// in tests that shape links without root).
	Net transport.Net
	// Logger receives the core's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Worker owns the UDP socket(s) shared by every transport and the pion API
// configured with Matinee's codecs and interceptors.
type Worker struct {
	cfg    WorkerConfig
	log    *slog.Logger
	mux    *ice.MultiUDPMuxDefault
	tcpMux *tcpMux // nil without ICE-TCP
	// sendAPI makes the publishers' PeerConnections; receive transports
	// get an API each (recvAPI).
	sendAPI *webrtc.API
	ctx     context.Context
	// udp are the mux's sockets, which subscribers' RTP also leaves
	// from directly (srtpout.go).
	udp []*udpbatch.Conn
	// What recvAPI makes each receive transport's API from, so that its
	// DTLS handshake's keys can be captured.
	recvSE webrtc.SettingEngine
	recvME *webrtc.MediaEngine
	recvIR *interceptor.Registry

	// pcMu serialises PeerConnection creation so the bandwidth estimator
	// the cc interceptor makes for it can be handed to its transport.
	pcMu    sync.Mutex
	lastBWE cc.BandwidthEstimator
	// cert is the DTLS certificate of every PeerConnection (under pcMu;
	// see dtlsCertificate).
	cert   *webrtc.Certificate
	cancel context.CancelFunc

	mu      sync.Mutex
	routers map[string]*Router
	closed  bool

	stats *Stats // counters for metrics (stats.go)
	// intake takes subscribers' SRTCP off the sockets (srtcpin.go).
	intake *intake
	// ssrcs reports the SSRC-simulcast streams pion has let go of
	// (pionlog.go).
	ssrcs *unhandledSSRCs
}

// NewWorker opens the shared UDP port and prepares the WebRTC stack.
func NewWorker(ctx context.Context, cfg WorkerConfig) (*Worker, error) {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if cfg.NACKHistory == 0 {
		cfg.NACKHistory = 512
	}
	if cfg.KeyframeInterval <= 0 {
		cfg.KeyframeInterval = DefaultKeyframeInterval
	}
	if cfg.RelayKeyframeInterval <= 0 {
		cfg.RelayKeyframeInterval = DefaultRelayKeyframeInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.PublisherStartBitrate == 0 {
		cfg.PublisherStartBitrate = DefaultPublisherStartBitrate
	}
	if cfg.InitialBitrate <= 0 {
		cfg.InitialBitrate = 1_000_000
	}
	if cfg.MaxBitrate <= 0 {
		cfg.MaxBitrate = 20_000_000
	}
	if cfg.MinBitrate <= 0 {
		cfg.MinBitrate = minBitrate
	}
	if cfg.MinBitrate > cfg.MaxBitrate {
		return nil, fmt.Errorf("sfu: minimum bitrate %d above the maximum %d", cfg.MinBitrate, cfg.MaxBitrate)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	keep := interfaceFilter(cfg)
	muxOpts := []ice.UDPMuxFromPortOption{
		ice.UDPMuxFromPortWithInterfaceFilter(keep),
		ice.UDPMuxFromPortWithIPFilter(keepIP),
		ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6),
	}
	if cfg.LoopbackOnly {
		muxOpts = append(muxOpts, ice.UDPMuxFromPortWithLoopback())
	}
	base := cfg.Net
	if base == nil {
		var err error
		if base, err = stdnet.NewNet(); err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	x := &intake{}
	rn := &recordingNet{Net: base, x: x}
	muxOpts = append(muxOpts, ice.UDPMuxFromPortWithNet(rn))
	mux, err := ice.NewMultiUDPMuxFromPort(cfg.UDPPort, muxOpts...)
	if err != nil {
		return nil, fmt.Errorf("open udp port %d: %w", cfg.UDPPort, err)
	}

	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(mux)
	if cfg.Net != nil {
		se.SetNet(cfg.Net)
	} else {
		se.SetNet(&freshNet{})
	}
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	tcpMux, err := openTCPMux(cfg, log)
	if err != nil {
		_ = mux.Close()
		return nil, err
	}
	if tcpMux != nil {
		// Passive TCP host candidates on the same addresses as the UDP
		// ones; browsers connect to them when UDP does not get through.
		se.SetICETCPMux(tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	closeMuxes := func() {
		_ = mux.Close()
		if tcpMux != nil {
			_ = tcpMux.Close()
		}
	}
	se.SetNetworkTypes(networks)
	se.SetInterfaceFilter(keep)
	se.SetIPFilter(keepIP)
	se.SetIncludeLoopbackCandidate(cfg.LoopbackOnly)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Browsers hide host candidates behind mDNS names; the SFU resolves
	// nothing and learns their addresses as peer-reflexive instead.
	se.SetSRTPProtectionProfiles(srtpProfiles()...)
	if len(cfg.AnnounceIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.AnnounceIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			closeMuxes()
			return nil, fmt.Errorf("announce ip: %w", err)
		}
	}
	ssrcs := newUnhandledSSRCs()
	wctx, cancel := context.WithCancel(ctx)
	w := &Worker{
		ssrcs:   ssrcs,
		cfg:     cfg,
		log:     log,
		mux:     mux,
		tcpMux:  tcpMux,
		ctx:     wctx,
		cancel:  cancel,
		routers: map[string]*Router{},
		stats:   newStats(),
		intake:  x,
	}
	for _, c := range rn.taken() {
		w.udp = append(w.udp, udpbatch.NewConn(c))
	}
	// Two stacks: transports that receive publishers' media need NACK
	// generation, receiver reports and TWCC feedback; transports that send
	// to subscribers need NACK answers, sender reports and a bandwidth
	// estimator with its pacer. Keeping them apart spares each transport
	// the other's goroutines.
	logs := newSharedLogs(logging.NewDefaultLoggerFactory())
	se.LoggerFactory = logs
	for _, dir := range []Direction{Send, Recv} {
		me := &webrtc.MediaEngine{}
		if err := registerCodecs(me); err != nil {
			closeMuxes()
			cancel()
			return nil, err
		}
		ir := &interceptor.Registry{}
		if err := w.registerInterceptors(ir, dir); err != nil {
			closeMuxes()
			cancel()
			return nil, err
		}
		s := se
		if dir == Send {
			s.LoggerFactory = &pionLogs{base: logs, ssrcs: ssrcs}
		}
		if dir == Recv {
			// A WHEP client's offer says actpass: answer passive, so
			// this side serves the DTLS handshake and can learn its
			// keys (srtpout.go). The SFU's own offers are actpass too,
			// and browsers and pion answer active.
			if err := s.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
				closeMuxes()
				cancel()
				return nil, fmt.Errorf("dtls role: %w", err)
			}
			w.recvSE, w.recvME, w.recvIR = s, me, ir
			continue
		}
		w.sendAPI = webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(s))
	}
	return w, nil
}

// recvAPI returns a pion API for one receive transport whose DTLS
// handshake reports its keys to capt.
func (w *Worker) recvAPI(capt *dtlskeys.Capture) *webrtc.API {
	se := w.recvSE
	se.SetDTLSKeyLogWriter(capt)
	se.SetDTLSServerHelloMessageHook(capt.ServerHello)
	return webrtc.NewAPI(webrtc.WithMediaEngine(w.recvME), webrtc.WithInterceptorRegistry(w.recvIR), webrtc.WithSettingEngine(se))
}

// freshNet is the network pion's ICE agents see when the worker has no
// virtual one: the standard one, with the machine's interfaces read anew
// each time an agent asks. Without a network of its own, pion gives every
// agent a stdnet.Net, which keeps the interface list it read at the start
// (≈ 7 KB a subscriber, the netlink dump its addresses point into) for as
// long as the agent lives.
type freshNet struct{ stdnet.Net }

func (freshNet) Interfaces() ([]*transport.Interface, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	return n.Interfaces()
}

func (freshNet) InterfaceByIndex(i int) (*transport.Interface, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	return n.InterfaceByIndex(i)
}

func (freshNet) InterfaceByName(name string) (*transport.Interface, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	return n.InterfaceByName(name)
}

// recordingNet is the network the UDP mux opens its sockets on; it keeps
// them so the worker can send from them too, and gives the mux each one
// behind the intake's tap (srtcpin.go).
type recordingNet struct {
	transport.Net
	x     *intake
	mu    sync.Mutex
	conns []net.PacketConn
}

func (n *recordingNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.conns = append(n.conns, c)
	n.mu.Unlock()
	return newTapConn(c, n.x), nil
}

func (n *recordingNet) taken() []net.PacketConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]net.PacketConn(nil), n.conns...)
}

// udpConnFor returns the worker's socket bound to ip:port, or, when the
// candidate's address was rewritten (--announce-ip) and only one socket
// of that family exists, that one.
func (w *Worker) udpConnFor(ip netip.Addr, port int, v4 bool) *udpbatch.Conn {
	var only *udpbatch.Conn
	n := 0
	for _, c := range w.udp {
		a, ok := c.LocalAddr().(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := a.AddrPort()
		if ap.Addr().Unmap() == ip.Unmap() && int(ap.Port()) == port {
			return c
		}
		if ap.Addr().Unmap().Is4() == v4 {
			only = c
			n++
		}
	}
	if n == 1 && len(w.cfg.AnnounceIPs) > 0 {
		return only
	}
	return nil
}

// interfaceFilter combines the configured interface rules into pion's form.
func interfaceFilter(cfg WorkerConfig) func(string) bool {
	return func(name string) bool {
		if cfg.Net != nil {
			return true // a virtual network has only what the test made
		}
		if cfg.LoopbackOnly {
			return isLoopbackInterface(name)
		}
		if len(cfg.Interfaces) > 0 {
			for _, n := range cfg.Interfaces {
				if n == name {
					return true
				}
			}
			return false
		}
		if cfg.InterfaceFilter != nil {
			return cfg.InterfaceFilter(name)
		}
		return true
	}
}

// keepIP leaves link-local addresses out of ICE: they change with the
// link, need a zone to be used, and a phone on the LAN reaches the host by
// its routable address anyway.
func keepIP(ip net.IP) bool {
	return !ip.IsLinkLocalUnicast()
}

// openTCPMux returns the ICE-TCP mux on cfg.TCPListener or cfg.TCPPort, or
// nil when ICE-TCP is off.
func openTCPMux(cfg WorkerConfig, log *slog.Logger) (*tcpMux, error) {
	ln := cfg.TCPListener
	if ln == nil && cfg.TCPPort > 0 {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", cfg.TCPPort))
		if err != nil {
			return nil, fmt.Errorf("open ice-tcp port %d: %w", cfg.TCPPort, err)
		}
	}
	if ln == nil {
		return nil, nil
	}
	if _, ok := ln.Addr().(*net.TCPAddr); !ok {
		_ = ln.Close()
		return nil, fmt.Errorf("ice-tcp listener address %v: not a TCP address", ln.Addr())
	}
	log.Debug("ICE-TCP enabled", "addr", ln.Addr())
	return &tcpMux{ln: ln, TCPMuxDefault: ice.NewTCPMuxDefault(ice.TCPMuxParams{
		Listener:       ln,
		ReadBufferSize: 64,
		// Media to a subscriber on a slow TCP path must not block the
		// writer: beyond 4 MB queued, packets are dropped (and NACKed).
		WriteBufferSize:      4 << 20,
		FirstStunBindTimeout: 10 * time.Second,
	})}, nil
}

// tcpMux is the ICE-TCP mux, gathered from only while its listener has a
// port: a listener shared with HTTPS learns it when the HTTPS server
// starts serving (and never, when the server's handler is served by
// someone else), and a candidate on any other port would lead clients to
// a port where nothing, or something else, listens.
type tcpMux struct {
	*ice.TCPMuxDefault
	ln net.Listener
}

var errTCPNotListening = errors.New("ice-tcp listener not bound to a port yet")

func (m *tcpMux) GetConnByUfrag(ufrag string, isIPv6 bool, local net.IP) (net.PacketConn, error) {
	if a, ok := m.ln.Addr().(*net.TCPAddr); !ok || a.Port == 0 {
		return nil, errTCPNotListening
	}
	return m.TCPMuxDefault.GetConnByUfrag(ufrag, isIPv6, local)
}

func isLoopbackInterface(name string) bool {
	ifc, err := net.InterfaceByName(name)
	return err == nil && ifc.Flags&net.FlagLoopback != 0
}

// ListenAddrs returns the local UDP addresses media arrives on.
func (w *Worker) ListenAddrs() []net.Addr { return w.mux.GetListenAddresses() }

// TCPAddr returns the ICE-TCP listen address, or nil when ICE-TCP is off.
func (w *Worker) TCPAddr() net.Addr {
	if w.tcpMux == nil {
		return nil
	}
	return w.tcpMux.LocalAddr()
}

// NewRouter creates the media router of one room.
func (w *Worker) NewRouter(id string) (*Router, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	if _, ok := w.routers[id]; ok {
		return nil, fmt.Errorf("router %q: %w: exists", id, ErrInvalidState)
	}
	r := newRouter(w, id)
	w.routers[id] = r
	return r, nil
}

func (w *Worker) removeRouter(r *Router) {
	w.mu.Lock()
	if w.routers[r.id] == r {
		delete(w.routers, r.id)
	}
	w.mu.Unlock()
}

// Close closes every router, then the UDP socket.
func (w *Worker) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	rs := make([]*Router, 0, len(w.routers))
	for _, r := range w.routers {
		rs = append(rs, r)
	}
	w.mu.Unlock()
	for _, r := range rs {
		r.Close()
	}
	w.cancel()
	err := w.mux.Close()
	if w.tcpMux != nil {
		// Closes the listener and every ICE-TCP connection, and waits
		// for the mux's goroutines.
		err = errors.Join(err, w.tcpMux.Close())
	}
	return err
}

func (w *Worker) registerInterceptors(ir *interceptor.Registry, dir Direction) error {
	ir.Add(w.stats) // first: next to the wire, it sees all RTCP (stats.go)
	if dir == Send {
		// Media from publishers: report reception, and send TWCC feedback
		// so their encoders adapt. Lost packets are asked for by the read
		// loops (sfu/nackgen), which see RTX repairs arrive.
		rr, err := report.NewReceiverInterceptor()
		if err != nil {
			return err
		}
		tw, err := twcc.NewSenderInterceptor()
		if err != nil {
			return err
		}
		ir.Add(rr)
		ir.Add(tw)
		return nil
	}
	// Media to subscribers. Order matters: the last interceptor added sees
	// a packet first, so TWCC sequence numbers are stamped before the
	// estimator's pacer records the send time. NACKs are answered by the
	// consumers from their producers' packet caches (sfu/packetcache), not
	// by a responder interceptor keeping a copy per subscriber; sender
	// reports are the consumers' own (senderreport.go).
	ccf, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		return bwe.New(w.cfg.InitialBitrate, w.cfg.MinBitrate, w.cfg.MaxBitrate)
	})
	if err != nil {
		return err
	}
	ccf.OnNewPeerConnection(func(_ string, e cc.BandwidthEstimator) { w.lastBWE = e })
	ir.Add(ccf)
	twh, err := twcc.NewHeaderExtensionInterceptor()
	if err != nil {
		return err
	}
	ir.Add(twh)
	return nil
}

// minBitrate is the estimator's floor: below it even audio suffers, so the
// estimate is not allowed to collapse further.
const minBitrate = 50_000

// newPeerConnection creates a PeerConnection for a transport and returns
// the bandwidth estimator made for it (nil for Send transports). A Recv
// transport gives capt, which its DTLS handshake reports its keys to.
func (w *Worker) newPeerConnection(dir Direction, capt *dtlskeys.Capture) (*webrtc.PeerConnection, cc.BandwidthEstimator, error) {
	w.pcMu.Lock()
	defer w.pcMu.Unlock()
	w.lastBWE = nil
	api := w.sendAPI
	if dir == Recv {
		if capt == nil {
			return nil, nil, fmt.Errorf("receive transport without a key capture: %w", ErrInvalidState)
		}
		api = w.recvAPI(capt)
	}
	cert, err := w.dtlsCertificate(time.Now())
	if err != nil {
		return nil, nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
		Certificates:  []webrtc.Certificate{*cert},
	})
	if err != nil {
		return nil, nil, err
	}
	return pc, w.lastBWE, nil
}

// certRenewBefore is how long before its expiry the worker's DTLS
// certificate is replaced for new PeerConnections (pion's are valid for a
// month; a connection keeps the one it shook hands with).
const certRenewBefore = 7 * 24 * time.Hour

// dtlsCertificate returns the DTLS certificate for a new PeerConnection,
// made anew when it is due to expire. One for all of them, as a browser
// uses one for all its connections: pion would otherwise make a key pair
// and a certificate for each (≈ 3 KB kept per subscriber, and the
// signing's CPU at every join). Its fingerprint identifies the server to
// the client, which the answer already does. Called with w.pcMu held.
func (w *Worker) dtlsCertificate(now time.Time) (*webrtc.Certificate, error) {
	if w.cert != nil && now.Add(certRenewBefore).Before(w.cert.Expires()) {
		return w.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dtls key: %w", err)
	}
	c, err := webrtc.GenerateCertificate(key)
	if err != nil {
		return nil, fmt.Errorf("dtls certificate: %w", err)
	}
	w.cert = c
	return c, nil
}

var idMu sync.Mutex

// newID returns a short random identifier with a readable prefix.
func newID(prefix string) string {
	var b [6]byte
	idMu.Lock()
	_, _ = rand.Read(b[:])
	idMu.Unlock()
	return prefix + "-" + hex.EncodeToString(b[:])
}
