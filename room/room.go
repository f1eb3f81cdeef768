// Package room holds rooms and their members: who is in which room, with
// which role, and which transports, producers and consumers each member
// owns in the room's media router. It turns members' requests into media
// core calls and tells the other members what changed.
package room

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/sfu"
)

// Roles a member can have.
const (
	RoleHost   = "host"
	RoleGuest  = "guest"
	RoleViewer = "viewer"
)

// Notifier delivers server-initiated messages to one member's client.
// Notify must not block; Disconnect ends the member's connection.
type Notifier interface {
	Notify(method string, params any)
	Disconnect(reason string)
}

// Config configures the room manager.
type Config struct {
	// MaxPeers is the default limit of members per room.
	MaxPeers int
	// OpenRooms lets a join create the room it names.
	OpenRooms bool
	Logger    *slog.Logger

	// TokenKey signs and checks join tokens (HS256); empty disables them.
	TokenKey []byte
	// StorePath is the file API-created rooms are kept in across
	// restarts; empty keeps them in memory only.
	StorePath string
	// MediaDir is the folder whose videos hosts can pick; empty: none.
	MediaDir string
	// Webhook sends room events to an HTTP endpoint; no URL: none.
	Webhook WebhookConfig
	// Chat limits chat and reactions.
	Chat ChatConfig
	// Passwords bounds password guessing.
	Passwords PasswordLimits
	// Sync tunes synced playback; its thresholds are sent to clients.
	Sync SyncConfig
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// ICEServers, when set, returns the join result's iceServers for a
	// joining peer (e.g. TURN with credentials of its own); nil: none.
	ICEServers func(peerID string) []any
	// Grace is how long a member whose connection dropped keeps its
	// place for the same person to come back (and a room whose members
	// all dropped stays); 0: a member leaves with its connection.
	Grace time.Duration
	// AfterFunc starts the grace timers (tests); nil means time.AfterFunc.
	AfterFunc func(d time.Duration, f func()) Timer
	// Cluster shares rooms among the nodes of a cluster (cluster.go);
	// zero: this node is on its own.
	Cluster ClusterHooks
}

// ChatConfig limits chat messages and reactions.
type ChatConfig struct {
	// History is how many messages a late joiner receives (default 200;
	// < 0 keeps none).
	History int
	// MaxLength is the longest message in characters (default 1000).
	MaxLength int
	// Rate is messages per second each member may send on average, with
	// Burst at once (defaults 1 and 5). Rate < 0 turns the limit off.
	Rate  float64
	Burst int
	// AddrRate and AddrBurst limit one person across its connections:
	// the members of one token identity, or the members without a token
	// from one remote address (defaults 5 and 20; AddrRate < 0: off).
	AddrRate  float64
	AddrBurst int
	// ReactionRate and ReactionBurst limit reactions the same way
	// (defaults 4 and 10).
	ReactionRate  float64
	ReactionBurst int
}

// SyncConfig tunes synced playback. The thresholds are what every client
// uses to correct its drift (docs/protocol.md, "Synced playback").
type SyncConfig struct {
	// NudgeThreshold: a gap to the room's position below this is left
	// alone; above it the client nudges its playback rate (default 40ms).
	NudgeThreshold time.Duration
	// SeekThreshold: a gap above this is closed by seeking (default 400ms).
	SeekThreshold time.Duration
	// MaxNudge is the largest relative rate change a nudge may use
	// (default 0.1: between 0.9x and 1.1x the room's rate).
	MaxNudge float64
	// ReportInterval is how often clients send playbackReport while a
	// video plays (default 1s).
	ReportInterval time.Duration
	// WaitTimeout is how long "wait for everyone" holds the room for a
	// member that keeps buffering before going on without it (default 20s).
	WaitTimeout time.Duration
	// QueueMax is the most videos a room's queue holds (default 50).
	QueueMax int
	// SubtitleMax is the most subtitle tracks of one video (default 20,
	// at most MaxSubtitleTracks); the media listing keeps as many.
	SubtitleMax int
}

// Manager owns every room.
type Manager struct {
	cfg    Config
	worker *sfu.Worker
	log    *slog.Logger
	ctx    context.Context
	now    func() time.Time
	hooks  *webhooks
	media  *MediaLibrary
	guard  *passwordGuard

	// people limits chat per person (token identity or remote address),
	// across connections; under peopleMu.
	peopleMu sync.Mutex
	people   *bucketMap

	storeMu  sync.Mutex // serialises writes of the room store
	saveReq  atomic.Int64
	saveDone int64 // the last saveReq a write carried; under storeMu

	mu    sync.Mutex
	rooms map[string]*Room
	// edges are copies of rooms whose origin is another node (relay.go);
	// they are not rooms of this node: not listed, joined or stored.
	edges map[string]*Room
	// closing holds the ids of rooms whose router is still closing; a
	// room of the same id waits for it (the worker knows routers by id).
	closing map[string]chan struct{}
	closed  bool
}

// NewManager returns a manager whose rooms' media runs on worker. Call
// LoadRooms to bring back the rooms of a previous run.
func NewManager(ctx context.Context, worker *sfu.Worker, cfg Config) *Manager {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = 50
	}
	cfg.Chat = cfg.Chat.withDefaults()
	cfg.Sync = cfg.Sync.withDefaults()
	cfg.Passwords = cfg.Passwords.withDefaults()
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	m := &Manager{cfg: cfg, worker: worker, log: log, ctx: ctx, now: now, rooms: map[string]*Room{}, closing: map[string]chan struct{}{}}
	m.hooks = newWebhooks(cfg.Webhook, log, now)
	m.guard = newPasswordGuard(cfg.Passwords)
	m.people = newBucketMap(cfg.Chat.AddrRate, cfg.Chat.AddrBurst)
	if cfg.MediaDir != "" {
		m.media = &MediaLibrary{Dir: cfg.MediaDir, MaxSubtitles: cfg.Sync.SubtitleMax}
	}
	return m
}

func (c ChatConfig) withDefaults() ChatConfig {
	if c.History == 0 {
		c.History = 200
	} else if c.History < 0 {
		c.History = 0 // keep none
	}
	if c.MaxLength <= 0 {
		c.MaxLength = 1000
	}
	if c.Rate == 0 {
		c.Rate = 1
	}
	if c.Burst <= 0 {
		c.Burst = 5
	}
	if c.AddrRate == 0 {
		c.AddrRate = 5
	}
	if c.AddrBurst <= 0 {
		c.AddrBurst = 20
	}
	if c.ReactionRate == 0 {
		c.ReactionRate = 4
	}
	if c.ReactionBurst <= 0 {
		c.ReactionBurst = 10
	}
	return c
}

func (c SyncConfig) withDefaults() SyncConfig {
	if c.NudgeThreshold <= 0 {
		c.NudgeThreshold = 40 * time.Millisecond
	}
	if c.SeekThreshold <= 0 {
		c.SeekThreshold = 400 * time.Millisecond
	}
	if c.MaxNudge <= 0 {
		c.MaxNudge = 0.1
	}
	if c.ReportInterval <= 0 {
		c.ReportInterval = time.Second
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = 20 * time.Second
	}
	if c.QueueMax <= 0 {
		c.QueueMax = 50
	}
	if c.SubtitleMax <= 0 || c.SubtitleMax > MaxSubtitleTracks {
		c.SubtitleMax = 20
	}
	return c
}

// Media returns the media folder, or nil when none is configured.
func (m *Manager) Media() *MediaLibrary { return m.media }

// validID matches room ids: URL-safe, 1–64 characters.
var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether id can name a room.
func ValidID(id string) bool { return validID.MatchString(id) }

// Room is one watch party: its members and its media router.
type Room struct {
	id        string
	m         *Manager
	router    *sfu.Router
	stage     *stage
	createdAt time.Time
	log       *slog.Logger

	// evMu orders the room's party events (joins, chat, playback): each
	// is applied and broadcast while holding it, so every member sees
	// them in the same order. Lock order: evMu, then mu, then Member.mu.
	evMu     sync.Mutex
	chat     chatLog
	play     PlaybackState
	waitT    *time.Timer
	waitGen  int
	endT     *time.Timer
	endGen   int
	loadVer  int64 // play.Version when the current video was loaded
	queue    playQueue
	started  bool // has members: room.started was sent
	mu       sync.Mutex
	members  map[string]*Member
	order    []string // member ids in join order, for host hand-over
	closed   bool
	maxPeers int
	settings Settings
	password *passwordHash
	// persistent rooms (made through the API) stay when empty, until
	// deleted; rooms opened by a link end with their last member.
	persistent bool
	// streamKeys publish into the room over RTMP (hashes only).
	streamKeys []StreamKey
	// state saves the party state for a cluster (state.go); nil on a
	// node on its own.
	state     *stateWriter
	stateOnce sync.Once
	// viewers counts the stage viewers (WHEP), for an edge's idle grace.
	viewers atomic.Int32
}

// ID returns the room's identifier.
func (r *Room) ID() string { return r.id }

// Room returns an existing room.
func (m *Manager) Room(id string) (*Room, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rooms[id]
	return r, ok
}

// Rooms returns every room, sorted by id.
func (m *Manager) Rooms() []*Room {
	m.mu.Lock()
	out := make([]*Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		out = append(out, r)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// open returns the room, creating it if open rooms are allowed.
func (m *Manager) open(id string) (*Room, error) {
	if !ValidID(id) {
		return nil, errorf(KindNotFound, "room %q: ids are 1-64 characters of A-Z a-z 0-9 _ -", id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.waitClosedLocked(id)
	if m.closed {
		return nil, errorf(KindInvalidState, "server is shutting down")
	}
	if r, ok := m.rooms[id]; ok {
		return r, nil
	}
	if !m.cfg.OpenRooms {
		return nil, errorf(KindNotFound, "unknown room %q", id)
	}
	r, err := m.newRoom(id, Settings{Name: id}.withDefaults(m.cfg.MaxPeers), nil, false)
	if err != nil {
		return nil, err
	}
	m.rooms[id] = r
	r.log.Info("room opened")
	return r, nil
}

// newRoom makes a room and its router; the caller adds it to m.rooms.
func (m *Manager) newRoom(id string, s Settings, pw *passwordHash, persistent bool) (*Room, error) {
	router, err := m.worker.NewRouter(id)
	if err != nil {
		return nil, fmt.Errorf("room %s: %w", id, err)
	}
	r := &Room{
		id:         id,
		m:          m,
		router:     router,
		stage:      newStage(router),
		maxPeers:   s.MaxPeers,
		settings:   s,
		password:   pw,
		persistent: persistent,
		createdAt:  m.now(),
		log:        m.log.With("room", id),
		members:    map[string]*Member{},
		play:       PlaybackState{Paused: true, Rate: 1, WaitingFor: []string{}},
		chat:       chatLog{max: m.cfg.Chat.History},
	}
	r.stage.subscribe(r.announceStage)
	r.startStateWriter()
	return r, nil
}

// waitClosedLocked returns once no room of this id is closing; it lets
// go of m.mu meanwhile.
func (m *Manager) waitClosedLocked(id string) {
	for {
		ch, ok := m.closing[id]
		if !ok {
			return
		}
		m.mu.Unlock()
		<-ch
		m.mu.Lock()
	}
}

// closeRouterLocked registers that the router of a room taken out of
// m.rooms is closing, so that a new room of the same id waits for it.
// m.mu is held; the returned finish does the (slow) close and must be
// called without it.
func (m *Manager) closeRouterLocked(r *Room) (finish func()) {
	ch := make(chan struct{})
	m.closing[r.id] = ch
	return func() {
		r.stopWaitTimer()
		r.stage.stop()
		r.router.Close()
		m.mu.Lock()
		if m.closing[r.id] == ch {
			delete(m.closing, r.id)
		}
		m.mu.Unlock()
		close(ch)
	}
}

// closeIfEmpty ends a room opened by link whose last member left; rooms
// made through the API stay until deleted.
func (m *Manager) closeIfEmpty(r *Room) {
	m.mu.Lock()
	r.mu.Lock()
	empty := len(r.members) == 0 && !r.closed && !r.persistent
	var finish func()
	if empty {
		r.closed = true
		delete(m.rooms, r.id)
		finish = m.closeRouterLocked(r)
	}
	r.mu.Unlock()
	m.mu.Unlock()
	if empty {
		finish()
		r.stopState(true)
		r.log.Info("room closed")
	}
}

// Close removes every member of every room and closes their media. The
// rooms made through the API stay in the store for the next start.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	rs := make([]*Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	for _, r := range rs {
		r.end("server shutting down")
	}
	m.closeEdges()
	m.hooks.close(2 * time.Second)
}

// end closes the room for good: no one may join, every member is told
// reason and disconnected, the media router closes.
func (r *Room) end(reason string) {
	r.m.mu.Lock()
	r.mu.Lock()
	already := r.closed
	r.closed = true
	if r.m.rooms[r.id] == r {
		delete(r.m.rooms, r.id)
	}
	var finish func()
	if !already {
		finish = r.m.closeRouterLocked(r)
	}
	r.mu.Unlock()
	r.m.mu.Unlock()
	// Before the members go: their leaving is not the party's state, which
	// the node taking the room over (it moved, this node stops) carries on
	// with. Only a deleted room's state goes.
	r.stopState(reason == reasonDeleted)
	r.close(reason)
	if !already {
		finish()
		r.log.Info("room closed", "reason", reason)
	}
}

func (r *Room) close(reason string) {
	r.mu.Lock()
	ms := make([]*Member, 0, len(r.members))
	for _, mb := range r.members {
		ms = append(ms, mb)
	}
	r.mu.Unlock()
	for _, mb := range ms {
		mb.remove(reason)
	}
	r.m.closeIfEmpty(r)
}

// PeerInfo is a member as the protocol shows it.
type PeerInfo struct {
	ID string `json:"id"`
	// Identity is the token's identity, or the peer id for people who
	// joined by link; the REST API's kick and mute take it.
	Identity string `json:"identity"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	// Buffering is true while the member's player waits for data.
	Buffering bool `json:"buffering"`
	// Away is true while the member's connection is gone and the grace
	// period for it to come back runs.
	Away bool `json:"away"`
}

// ProducerInfo is a producer as the protocol shows it.
type ProducerInfo struct {
	ID      string `json:"id"`
	PeerID  string `json:"peerId"`
	Kind    string `json:"kind"`
	Mid     string `json:"mid,omitempty"`
	AppData any    `json:"appData"`
	Paused  bool   `json:"paused"`
}

// ConsumerInfo is a consumer as the protocol shows it.
type ConsumerInfo struct {
	ID         string `json:"id"`
	ProducerID string `json:"producerId"`
	PeerID     string `json:"peerId"`
	Kind       string `json:"kind"`
	Mid        string `json:"mid,omitempty"`
	Paused     bool   `json:"paused"`
}

func producerInfo(p *sfu.Producer) ProducerInfo {
	ad := p.AppData()
	if ad == nil {
		ad = map[string]any{}
	}
	return ProducerInfo{ID: p.ID(), PeerID: p.Owner(), Kind: string(p.Kind()), Mid: p.Mid(), AppData: ad, Paused: p.Paused()}
}

func consumerInfo(c *sfu.Consumer) ConsumerInfo {
	return ConsumerInfo{ID: c.ID(), ProducerID: c.Producer().ID(), PeerID: c.Producer().Owner(), Kind: string(c.Kind()), Mid: c.Mid(), Paused: c.Paused()}
}

// broadcast notifies every member except the one with id except.
func (r *Room) broadcast(except, method string, params any) {
	r.mu.Lock()
	ms := make([]*Member, 0, len(r.members))
	for id, mb := range r.members {
		if id != except {
			ms = append(ms, mb)
		}
	}
	r.mu.Unlock()
	for _, mb := range ms {
		mb.notifier().Notify(method, params)
	}
	r.stateChanged()
}

// Peers returns the room's members in join order.
func (r *Room) Peers() []PeerInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]PeerInfo, 0, len(r.order))
	for _, id := range r.order {
		if mb, ok := r.members[id]; ok {
			out = append(out, mb.info())
		}
	}
	return out
}

// Producers returns the room's live producers.
func (r *Room) Producers() []ProducerInfo {
	ps := r.router.Producers()
	out := make([]ProducerInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, producerInfo(p))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
