// Package turnserver is Matinee's optional embedded TURN server (RFC 8656,
// on pion/turn): a relay on the SFU's own machine for the networks where
// neither UDP nor ICE-TCP gets from a phone to the SFU, such as guest
// Wi-Fi that lets only a few ports through.
//
// It listens on one port for both UDP and TCP (3478 by default) and relays
// only to this machine's own addresses, so an authenticated client cannot
// use it to reach anything else on the LAN. Credentials are short-lived
// and follow the TURN REST API convention (coturn's static-auth-secret):
// the username is "<expiry unix time>:<identity>" and the password is
// base64(HMAC-SHA1(secret, username)), so nothing is stored per user and
// a credential expires by itself.
package turnserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST API specifies
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/turn/v5"
)

// Realm is the TURN realm Matinee's credentials are valid in.
const Realm = "matinee"

// DefaultTTL is how long handed-out credentials stay valid. A relayed
// connection refreshes its allocation with the same credential, so the
// lifetime must cover a whole watch party.
const DefaultTTL = 12 * time.Hour

// Config configures a TURN server.
type Config struct {
	// ListenIP is the address to listen on; empty means all addresses.
	ListenIP string
	// Port is the UDP and TCP port (3478 is the standard one). 0 picks a
	// free port that is the same number for UDP and TCP (tests).
	Port int
	// RelayIP is the address put in relayed candidates: the one the SFU
	// reaches this machine at, normally its LAN address.
	RelayIP net.IP
	// Secret keys the credentials' HMAC (see LoadSecret).
	Secret string
	// TTL is the lifetime of credentials from Credentials; 0 means
	// DefaultTTL.
	TTL time.Duration
	// AllowPeer decides which addresses clients may relay to. Nil allows
	// every address, which makes the server a relay into the whole LAN:
	// callers pass a check for this machine's own addresses.
	AllowPeer func(net.IP) bool
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for credentials (tests); nil means time.Now.
	Now func() time.Time
}

// ICEServer is one entry of RTCConfiguration.iceServers, as handed to
// clients in the join result.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username"`
	Credential string   `json:"credential"`
}

// Server is a running TURN server.
type Server struct {
	cfg  Config
	log  *slog.Logger
	turn *turn.Server
	udp  net.PacketConn
	tcp  *trackingListener
}

// Start opens the UDP and TCP ports and serves TURN on them until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Secret == "" {
		return nil, errors.New("turn: no secret")
	}
	if cfg.RelayIP == nil || cfg.RelayIP.IsUnspecified() {
		return nil, fmt.Errorf("turn: relay address %v: want a concrete IP the SFU can reach", cfg.RelayIP)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	udp, tcp, err := listenBoth(cfg.ListenIP, cfg.Port)
	if err != nil {
		return nil, fmt.Errorf("turn: %w", err)
	}
	tl := &trackingListener{Listener: tcp, conns: map[net.Conn]struct{}{}}
	bind := "0.0.0.0"
	if cfg.RelayIP.To4() == nil {
		bind = "::"
	}
	relay := func() turn.RelayAddressGenerator {
		return &turn.RelayAddressGeneratorStatic{RelayAddress: cfg.RelayIP, Address: bind}
	}
	permit := func(_ net.Addr, peer net.IP) bool {
		ok := cfg.AllowPeer == nil || cfg.AllowPeer(peer)
		if !ok {
			log.Debug("turn: refused relay to a foreign address", "peer", peer)
		}
		return ok
	}
	lf := &loggerFactory{log: log}
	ts, err := turn.NewServer(turn.ServerConfig{
		Realm:         Realm,
		AuthHandler:   turn.LongTermTURNRESTAuthHandler(cfg.Secret, lf.NewLogger("turn-auth")),
		LoggerFactory: lf,
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: udp, RelayAddressGenerator: relay(), PermissionHandler: permit,
		}},
		ListenerConfigs: []turn.ListenerConfig{{
			Listener: tl, RelayAddressGenerator: relay(), PermissionHandler: permit,
		}},
	})
	if err != nil {
		_ = udp.Close()
		_ = tcp.Close()
		return nil, fmt.Errorf("turn: %w", err)
	}
	return &Server{cfg: cfg, log: log, turn: ts, udp: udp, tcp: tl}, nil
}

// listenBoth opens UDP and TCP on the same port number.
func listenBoth(ip string, port int) (net.PacketConn, net.Listener, error) {
	for try := 0; ; try++ {
		udp, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp port %d: %w", port, err)
		}
		p := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err == nil {
			return udp, tcp, nil
		}
		_ = udp.Close()
		if port != 0 || try == 10 {
			return nil, nil, fmt.Errorf("listen tcp port %d: %w", p, err)
		}
	}
}

// Port returns the UDP and TCP port the server listens on.
func (s *Server) Port() int { return s.udp.LocalAddr().(*net.UDPAddr).Port }

// RelayIP returns the address relayed candidates carry.
func (s *Server) RelayIP() net.IP { return s.cfg.RelayIP }

// Credentials returns an ICE server entry for identity, valid for the
// configured TTL, with a UDP and a TCP URL for each of hosts (the names or
// addresses clients reach this machine at).
func (s *Server) Credentials(identity string, hosts []string) ICEServer {
	user, pass := Credential(s.cfg.Secret, identity, s.cfg.Now().Add(s.cfg.TTL))
	port := strconv.Itoa(s.Port())
	var urls []string
	for _, h := range hosts {
		hp := net.JoinHostPort(h, port)
		urls = append(urls, "turn:"+hp+"?transport=udp", "turn:"+hp+"?transport=tcp")
	}
	return ICEServer{URLs: urls, Username: user, Credential: pass}
}

// Credential returns a TURN REST API username and password for identity
// that expire at expiry. A colon in identity would end the timestamp
// field early on the server, so it is replaced.
func Credential(secret, identity string, expiry time.Time) (username, password string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + strings.ReplaceAll(identity, ":", "_")
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Close stops the server and closes every client connection.
func (s *Server) Close() error {
	err := s.turn.Close() // closes the UDP socket and the TCP listener
	s.tcp.closeConns()
	return err
}

// SecretFile is the name of the secret's file in the data directory.
const SecretFile = "turn-secret"

// LoadSecret reads the TURN secret from dir, creating a random one (mode
// 0600) on first use. Keeping it across restarts keeps credentials handed
// out before a restart valid.
func LoadSecret(dir string) (string, error) {
	path := filepath.Join(dir, SecretFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		s := strings.TrimSpace(string(b))
		if len(s) < 16 {
			return "", fmt.Errorf("turn secret %s: too short (delete it to make a new one)", path)
		}
		return s, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("turn secret: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	s := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("turn secret: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race
			return LoadSecret(dir)
		}
		return "", fmt.Errorf("turn secret: %w", err)
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("turn secret: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("turn secret: %w", err)
	}
	return s, nil
}

// trackingListener remembers the connections it accepted, because closing
// pion's TURN server closes its listener but not the TCP connections of
// clients, which would keep their allocations alive.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[net.Conn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.(*trackedConn).Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
