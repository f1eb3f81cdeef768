package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/room"
)

// Config sets the protocol's limits (see docs/protocol.md).
type Config struct {
	// MaxMessage is the largest accepted message in bytes; a larger one
	// closes the socket with status 1009.
	MaxMessage int64
	// PingInterval is how often the server pings; PongTimeout is how long
	// a silent client lives.
	PingInterval, PongTimeout time.Duration
	// SendQueue is how many outgoing messages may wait for a slow client
	// before it is disconnected.
	SendQueue int
	// JoinTimeout is how long a socket may stay out of a room, after it
	// opens and after a leave, before it is closed with 1008: an idle
	// socket still costs a file descriptor, buffers and two goroutines.
	JoinTimeout time.Duration
	// MaxPerAddr is how many sockets one remote address may hold open;
	// more are refused with HTTP 429 before the upgrade. 0: no limit.
	MaxPerAddr int
	// StreamKeys gives a host's createStreamKey and revokeStreamKey what
	// only the server knows (streamkeys.go); nil: they answer that RTMP
	// ingest is off.
	StreamKeys StreamKeys
	Logger     *slog.Logger
}

// Server serves the WebSocket endpoint.
type Server struct {
	cfg      Config
	rooms    *room.Manager
	log      *slog.Logger
	upgrader websocket.Upgrader

	mu       sync.Mutex
	sessions map[*session]struct{}
	perAddr  map[string]int // open sockets by remote IP
	closed   bool
	wg       sync.WaitGroup
	// remote serves members of other nodes' rooms (remote.go); nil when
	// off.
	remote *remote
}

// New returns a signalling server for the rooms of m.
func New(m *room.Manager, cfg Config) *Server {
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = 64 << 10
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 10 * time.Second
	}
	if cfg.PongTimeout <= cfg.PingInterval {
		cfg.PongTimeout = 2 * cfg.PingInterval
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 512
	}
	if cfg.JoinTimeout <= 0 {
		cfg.JoinTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{
		cfg:      cfg,
		rooms:    m,
		log:      log,
		sessions: map[*session]struct{}{},
		perAddr:  map[string]int{},
		upgrader: websocket.Upgrader{
			ReadBufferSize:  4096,
			WriteBufferSize: 4096,
			// The page and the socket share an origin in the normal case;
			// other origins are refused so a foreign page cannot join
			// rooms on the user's behalf.
			CheckOrigin: sameOrigin,
		},
	}
}

// Alive answers a WebSocket from any origin and closes it at once. A
// room page about to move to this node (a 1010 named it) opens it first:
// a node killed a moment ago may still be named, and a page that went
// there would be stranded on the browser's error page. The page's CSP
// lets it open WebSockets to other nodes, not fetch from them, and /ws
// takes only its own origin. It holds nothing and tells nothing.
func Alive(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered with an HTTP error
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "alive"), time.Now().Add(time.Second))
	_ = c.Close()
}

func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser
	}
	for _, scheme := range []string{"https://", "http://"} {
		if origin == scheme+r.Host {
			return true
		}
	}
	return false
}

// remoteIP is who a request comes from, for the per-address limits: the
// IPv4 address, or the /64 of an IPv6 one (one host often holds a whole
// /64, so counting its addresses one by one would limit nothing).
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.WithZone("").Prefix(64)
	if err != nil {
		return host
	}
	return p.String()
}

// admitAddr counts a new socket from ip, or reports that ip has too many.
func (s *Server) admitAddr(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxPerAddr > 0 && s.perAddr[ip] >= s.cfg.MaxPerAddr {
		return false
	}
	s.perAddr[ip]++
	return true
}

func (s *Server) releaseAddr(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAddr[ip]--; s.perAddr[ip] <= 0 {
		delete(s.perAddr, ip)
	}
}

// ServeHTTP upgrades GET /ws and runs the session until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ip := remoteIP(r)
	if !s.admitAddr(ip) {
		s.log.Debug("too many WebSockets from one address; refused", "remote", ip, "limit", s.cfg.MaxPerAddr)
		w.Header().Set("Retry-After", "10")
		http.Error(w, fmt.Sprintf("too many WebSockets from %s (limit %d): close some first", ip, s.cfg.MaxPerAddr), http.StatusTooManyRequests)
		return
	}
	defer s.releaseAddr(ip)
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered with an HTTP error
	}
	ss := &session{
		srv:    s,
		conn:   conn,
		client: room.NewClient(ip),
		out:    make(chan []byte, s.cfg.SendQueue),
		quit:   make(chan struct{}),
		log:    s.log.With("remote", r.RemoteAddr),
		host:   r.Host,
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
		_ = conn.Close()
		return
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ss.run()
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}

// Close ends every session and waits for them.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	ss := make([]*session, 0, len(s.sessions))
	for x := range s.sessions {
		ss = append(ss, x)
	}
	s.mu.Unlock()
	for _, x := range ss {
		x.Disconnect("server shutting down")
	}
	s.wg.Wait()
	if rm := s.remoteOrNil(); rm != nil {
		rm.close()
	}
}

// session is one WebSocket connection: at most one room member at a time.
type session struct {
	srv    *Server
	conn   *websocket.Conn
	client *room.Client // rate limits kept across this socket's joins
	out    chan []byte
	log    *slog.Logger
	host   string // the Host the socket was opened with

	quitOnce sync.Once
	quit     chan struct{}
	reason   string

	mu        sync.Mutex
	member    *room.Member
	joinTimer *time.Timer // closes the socket if it stays out of a room
	// While holding (during join), notifications wait in held.
	holding bool
	held    [][]byte
	// link: the socket's member is of another node's room (remote.go).
	link *link
	// connID names the socket to the rooms' nodes it joins through (made
	// at its first link), so that a node counts its wrong passwords
	// across its joins as a socket's own.
	connID string

	// rs is set, for good, on a session whose socket is on another node.
	rs *remoteSession
}

func (ss *session) run() {
	ss.armJoinDeadline()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		ss.writeLoop()
	}()
	ss.readLoop()
	ss.Disconnect("")
	<-writerDone
	ss.mu.Lock()
	mb, l := ss.member, ss.link
	ss.member = nil
	ss.joinTimer.Stop()
	ss.mu.Unlock()
	if mb != nil {
		// No leave was said: the member waits through the grace period
		// for its person to come back.
		mb.Drop(ss)
	}
	if l != nil {
		// The same at the room's node.
		ss.srv.remoteOrNil().unlink(l, true)
	}
	_ = ss.conn.Close()
}

// armJoinDeadline (re)starts the time the socket has to join a room.
func (ss *session) armJoinDeadline() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.joinTimer == nil {
		ss.joinTimer = time.AfterFunc(ss.srv.cfg.JoinTimeout, ss.joinExpired)
		return
	}
	ss.joinTimer.Reset(ss.srv.cfg.JoinTimeout)
}

func (ss *session) joinExpired() {
	ss.mu.Lock()
	idle := ss.member == nil && ss.link == nil
	ss.mu.Unlock()
	if idle {
		ss.log.Info("no join in time; closing", "timeout", ss.srv.cfg.JoinTimeout)
		ss.Disconnect(fmt.Sprintf("no join within %s", ss.srv.cfg.JoinTimeout))
	}
}

func (ss *session) readLoop() {
	c := ss.conn
	c.SetReadLimit(ss.srv.cfg.MaxMessage)
	_ = c.SetReadDeadline(time.Now().Add(ss.srv.cfg.PongTimeout))
	c.SetPongHandler(func(string) error {
		return c.SetReadDeadline(time.Now().Add(ss.srv.cfg.PongTimeout))
	})
	for {
		typ, data, err := c.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				ss.log.Info("message too big; closing", "limit", ss.srv.cfg.MaxMessage)
			}
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(ss.srv.cfg.PongTimeout))
		if typ != websocket.TextMessage {
			ss.reply(nil, nil, &rpcError{Code: CodeInvalidRequest, Message: "invalid request: binary frames are not supported"})
			continue
		}
		ss.handle(data)
		select {
		case <-ss.quit:
			return
		default:
		}
	}
}

func (ss *session) writeLoop() {
	c := ss.conn
	ping := time.NewTicker(ss.srv.cfg.PingInterval)
	defer ping.Stop()
	write := func(typ int, data []byte) error {
		_ = c.SetWriteDeadline(time.Now().Add(ss.srv.cfg.PongTimeout))
		return c.WriteMessage(typ, data)
	}
	for {
		select {
		case msg := <-ss.out:
			if err := write(websocket.TextMessage, msg); err != nil {
				ss.Disconnect("")
				return
			}
		case <-ping.C:
			if err := c.WriteControl(websocket.PingMessage, nil, time.Now().Add(ss.srv.cfg.PingInterval)); err != nil {
				ss.Disconnect("")
				return
			}
		case <-ss.quit:
			// Flush what is queued (e.g. a "disconnected" notice), then say
			// goodbye and unblock the reader.
			for {
				select {
				case msg := <-ss.out:
					if write(websocket.TextMessage, msg) != nil {
						_ = c.Close()
						return
					}
					continue
				default:
				}
				break
			}
			code, text := websocket.CloseNormalClosure, ss.reason
			if text != "" {
				code = websocket.ClosePolicyViolation
			}
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			return
		}
	}
}

// Notify implements room.Notifier.
func (ss *session) Notify(method string, params any) {
	b, err := json.Marshal(notification{JSONRPC: "2.0", Method: method, Params: params})
	if err != nil {
		ss.log.Error("marshal notification", "method", method, "err", err)
		return
	}
	ss.mu.Lock()
	if ss.holding {
		if len(ss.held) < ss.srv.cfg.SendQueue {
			ss.held = append(ss.held, b)
			ss.mu.Unlock()
			return
		}
		ss.mu.Unlock()
		ss.Disconnect("client too slow")
		return
	}
	ss.mu.Unlock()
	ss.enqueue(b)
}

// hold makes notifications wait until release.
func (ss *session) hold() {
	ss.mu.Lock()
	ss.holding = true
	ss.mu.Unlock()
}

// release sends the held notifications, in order, and stops holding.
func (ss *session) release() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.holding {
		return
	}
	for _, b := range ss.held {
		ss.enqueue(b)
	}
	ss.holding, ss.held = false, nil
}

func (ss *session) enqueue(b []byte) {
	select {
	case <-ss.quit:
	case ss.out <- b:
	default:
		ss.log.Warn("client too slow; disconnecting", "queued", len(ss.out))
		ss.Disconnect("client too slow")
	}
}

// Disconnect implements room.Notifier: it ends the connection.
func (ss *session) Disconnect(reason string) {
	ss.quitOnce.Do(func() {
		ss.reason = reason
		close(ss.quit)
	})
}

func (ss *session) reply(id json.RawMessage, result any, rerr *rpcError) {
	if id == nil {
		id = json.RawMessage("null")
	}
	resp := response{JSONRPC: "2.0", ID: id, Result: result, Error: rerr}
	if rerr == nil && result == nil {
		resp.Result = struct{}{}
	}
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(response{JSONRPC: "2.0", ID: id, Error: &rpcError{Code: CodeInternal, Message: "internal error"}})
	}
	ss.enqueue(b)
}
