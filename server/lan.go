package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/lanaddr"
	"github.com/matinee-dev/matinee/turnserver"
)

// lanSetup is the network around the media worker that makes phones on a
// LAN connect: resolved announced addresses, the ICE-TCP listener (shared
// with HTTPS by default) and the optional TURN server.
type lanSetup struct {
	log *slog.Logger
	cfg config.Config

	// announceIPs are cfg.AnnounceIPs with DNS names resolved, for the
	// worker's candidates; announceHosts are the names as given, for URLs.
	announceIPs   []string
	announceHosts []string

	// iceTCP is the worker's ICE-TCP listener (nil: off). When ICE-TCP
	// shares the HTTPS port it is share, fed by Run's listener.
	iceTCP net.Listener
	share  *handoffListener

	turn *turnserver.Server
}

// newLANSetup resolves the announced addresses and opens the ICE-TCP
// listener. The TURN server starts later (startTURN), once the worker
// holds the media ports.
func newLANSetup(ctx context.Context, cfg config.Config, log *slog.Logger) (*lanSetup, error) {
	l := &lanSetup{log: log, cfg: cfg}
	ips, err := resolveAnnounce(ctx, cfg.AnnounceIPs, net.DefaultResolver.LookupNetIP)
	if err != nil {
		return nil, err
	}
	l.announceIPs, l.announceHosts = ips, cfg.AnnounceIPs
	if cfg.ICETCPPort == 0 {
		return l, nil
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("addr %q: %w", cfg.Addr, err)
	}
	var ip net.IP // nil: every address, like the HTTPS listener
	if a, err := netip.ParseAddr(host); err == nil {
		ip = a.AsSlice()
	}
	if cfg.ICETCPPort == config.ICETCPSameAsHTTPS || strconv.Itoa(cfg.ICETCPPort) == port {
		// One TCP port for HTTPS and ICE-TCP: Run's listener hands ICE
		// connections over by their first byte. A firewall rule for the
		// web page then lets media through too. Its port is known once
		// Run listens (split); until then (and when the handler is served
		// by something else) no ICE-TCP candidate is advertised.
		l.share = newHandoffListener(&net.TCPAddr{IP: ip, Port: 0})
		l.iceTCP = l.share
		return l, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(cfg.ICETCPPort)))
	if err != nil {
		return nil, fmt.Errorf("ice-tcp-port %d: %w", cfg.ICETCPPort, err)
	}
	l.iceTCP = ln
	return l, nil
}

// resolveAnnounce turns announced DNS names into addresses, once: ICE
// candidates carry addresses, and a name that does not resolve at start is
// a configuration error better reported now than as silent failures.
func resolveAnnounce(ctx context.Context, hosts []string, lookup func(context.Context, string, string) ([]netip.Addr, error)) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(a netip.Addr) {
		if s := a.Unmap().String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			add(a)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		addrs, err := lookup(lctx, "ip", h)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("announce-ip %q: %w", h, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("announce-ip %q: the name has no address", h)
		}
		for _, a := range addrs {
			add(a)
		}
	}
	return out, nil
}

// startTURN starts the embedded TURN server when configured. Its relay
// address is the first LAN address (the SFU reaches it without leaving
// the machine), else the first announced one.
func (l *lanSetup) startTURN(lan []netip.Addr) error {
	if !l.cfg.TURN {
		return nil
	}
	secret, err := turnserver.LoadSecret(l.cfg.DataDir)
	if err != nil {
		return err
	}
	var relay net.IP
	switch {
	case len(lan) > 0:
		relay = lan[0].AsSlice()
	case len(l.announceIPs) > 0:
		relay = net.ParseIP(l.announceIPs[0])
	default:
		relay = net.IPv4(127, 0, 0, 1)
		l.log.Warn("TURN relays on loopback: no LAN address found")
	}
	ts, err := turnserver.Start(turnserver.Config{
		Port:      l.cfg.TURNPort,
		RelayIP:   relay,
		Secret:    secret,
		TTL:       l.cfg.TURNCredentialTTL,
		AllowPeer: l.isOwnAddress,
		Logger:    l.log,
	})
	if err != nil {
		return fmt.Errorf("turn-port %d: %w", l.cfg.TURNPort, err)
	}
	l.turn = ts
	return nil
}

// isOwnAddress reports whether ip is this machine's (an interface address
// or an announced one): the only peers the TURN server relays to, so it
// cannot be used to reach other hosts on the LAN.
func (l *lanSetup) isOwnAddress(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	for _, s := range l.announceIPs {
		if s == a.String() {
			return true
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// iceServers returns the join result's iceServers for a peer: the TURN
// server with credentials of the peer's own, or nothing.
func (l *lanSetup) iceServers(hosts func() []string) func(peerID string) []any {
	if l.turn == nil {
		return nil
	}
	return func(peerID string) []any {
		return []any{l.turn.Credentials(peerID, hosts())}
	}
}

// turnHosts are the hosts TURN URLs name: the announced names, then the
// LAN addresses, a few at most (a browser allocates on every URL).
func (l *lanSetup) turnHosts(lan []netip.Addr) []string {
	const most = 4
	out := append([]string(nil), l.announceHosts...)
	for _, a := range lan {
		out = append(out, a.String())
	}
	if len(out) == 0 {
		out = append(out, "127.0.0.1")
	}
	if len(out) > most {
		out = out[:most]
	}
	return out
}

// split returns the listener HTTPS should serve: ln itself, or, when
// ICE-TCP shares the port, a listener that keeps the TLS connections and
// hands the others to the worker.
func (l *lanSetup) split(ln net.Listener) net.Listener {
	if l == nil || l.share == nil {
		return ln
	}
	l.share.setAddr(ln.Addr())
	return newSplitListener(ln, l.share)
}

func (l *lanSetup) close() {
	if l == nil {
		return
	}
	if l.turn != nil {
		if err := l.turn.Close(); err != nil {
			l.log.Debug("close turn server", "err", err)
		}
	}
	if l.iceTCP != nil {
		_ = l.iceTCP.Close() // already closed by the worker, normally
	}
}

// lanAddrsOf lists the addresses phones on the LAN can reach.
func lanAddrsOf(cfg config.Config, log *slog.Logger) []netip.Addr {
	addrs, err := lanaddr.Usable(lanaddr.Options{Interfaces: cfg.ICEInterfaces})
	if err != nil {
		log.Warn("list LAN addresses", "err", err)
	}
	return addrs
}

// handoffListener is a net.Listener whose connections are handed to it by
// another listener.
type handoffListener struct {
	addr  atomic.Pointer[net.Addr]
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	l := &handoffListener{conns: make(chan net.Conn), done: make(chan struct{})}
	l.setAddr(addr)
	return l
}

// setAddr sets the address the listener reports: the one of the
// listener that hands it connections, once that one is bound.
func (l *handoffListener) setAddr(a net.Addr) { l.addr.Store(&a) }

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// hand gives c to the listener's Accept; false if the listener is closed.
func (l *handoffListener) hand(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return *l.addr.Load() }

// splitListener accepts on a TCP listener and sorts connections by their
// first byte: a TLS record starts with 0x16 (and plain HTTP with a
// letter), while an ICE-TCP connection starts with the two-byte length of
// a STUN binding request (RFC 4571), so its first byte is below 0x16.
type splitListener struct {
	ln    net.Listener
	https *handoffListener
	ice   *handoffListener

	mu      sync.Mutex
	pending map[net.Conn]struct{} // accepted, first byte not read yet
	closed  bool
	wg      sync.WaitGroup
}

// sniffTimeout bounds the wait for a connection's first byte.
const sniffTimeout = 10 * time.Second

func newSplitListener(ln net.Listener, ice *handoffListener) *splitListener {
	s := &splitListener{ln: ln, https: newHandoffListener(ln.Addr()), ice: ice, pending: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *splitListener) acceptLoop() {
	defer s.wg.Done()
	defer s.https.Close()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.pending[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.sort(c)
	}
}

func (s *splitListener) sort(c net.Conn) {
	defer s.wg.Done()
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	br := bufio.NewReaderSize(c, 512)
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	s.mu.Lock()
	delete(s.pending, c)
	closed := s.closed
	s.mu.Unlock()
	if err != nil || closed {
		_ = c.Close()
		return
	}
	to := s.https
	if first[0] < 0x16 {
		to = s.ice
	}
	if !to.hand(&peekedConn{Conn: c, r: br}) {
		_ = c.Close()
	}
}

func (s *splitListener) Accept() (net.Conn, error) { return s.https.Accept() }

func (s *splitListener) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting, drops connections not yet sorted and waits for
// the sorting goroutines. Connections already handed over are their new
// owners' to close.
func (s *splitListener) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.pending {
		_ = c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	_ = s.https.Close()
	s.wg.Wait()
	return err
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
