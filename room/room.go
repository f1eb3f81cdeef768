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
}

// Manager owns every room.
type Manager struct {
	cfg    Config
	worker *sfu.Worker
	log    *slog.Logger
	ctx    context.Context

	mu     sync.Mutex
	rooms  map[string]*Room
	closed bool
}

// NewManager returns a manager whose rooms' media runs on worker.
func NewManager(ctx context.Context, worker *sfu.Worker, cfg Config) *Manager {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = 50
	}
	return &Manager{cfg: cfg, worker: worker, log: log, ctx: ctx, rooms: map[string]*Room{}}
}

// validID matches room ids: URL-safe, 1–64 characters.
var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether id can name a room.
func ValidID(id string) bool { return validID.MatchString(id) }

// Room is one watch party: its members and its media router.
type Room struct {
	id        string
	m         *Manager
	router    *sfu.Router
	maxPeers  int
	createdAt time.Time
	log       *slog.Logger

	mu      sync.Mutex
	members map[string]*Member
	order   []string // member ids in join order, for host hand-over
	closed  bool
}

// ID returns the room's identifier.
func (r *Room) ID() string { return r.id }

// Router returns the room's media router, for in-process consumers such
// as recorders.
func (r *Room) Router() *sfu.Router { return r.router }

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
		return nil, errorf(CodeNotFound, "room %q: ids are 1-64 characters of A-Z a-z 0-9 _ -", id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errorf(CodeInvalidState, "server is shutting down")
	}
	if r, ok := m.rooms[id]; ok {
		return r, nil
	}
	if !m.cfg.OpenRooms {
		return nil, errorf(CodeNotFound, "unknown room %q", id)
	}
	router, err := m.worker.NewRouter(id)
	if err != nil {
		return nil, fmt.Errorf("room %s: %w", id, err)
	}
	r := &Room{
		id:        id,
		m:         m,
		router:    router,
		maxPeers:  m.cfg.MaxPeers,
		createdAt: time.Now(),
		log:       m.log.With("room", id),
		members:   map[string]*Member{},
	}
	m.rooms[id] = r
	r.log.Info("room opened")
	return r, nil
}

// closeIfEmpty ends a room whose last member left.
func (m *Manager) closeIfEmpty(r *Room) {
	m.mu.Lock()
	r.mu.Lock()
	empty := len(r.members) == 0 && !r.closed
	if empty {
		r.closed = true
		delete(m.rooms, r.id)
	}
	r.mu.Unlock()
	m.mu.Unlock()
	if empty {
		r.router.Close()
		r.log.Info("room closed")
	}
}

// Close removes every member of every room and closes their media.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	rs := make([]*Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	for _, r := range rs {
		r.close("server shutting down")
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
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
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
		mb.n.Notify(method, params)
	}
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
