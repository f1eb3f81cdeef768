package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/cluster"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/relay"
	"github.com/matinee-dev/matinee/rest"
	"github.com/matinee-dev/matinee/room"
)

// Cluster mode (--redis, docs/cluster.md): the glue between the cluster
// package (registry, leases, placement in Redis) and this server's rooms
// and routes. Without --redis none of this exists and nothing changes.

// clusterGlue is this server's membership of a cluster.
type clusterGlue struct {
	cfg    config.Config
	log    *slog.Logger
	node   *cluster.Node
	rooms  *room.Manager
	apiKey string
	s      *Server // set once the server is built; its certificates trust other nodes
	// relay serves WHEP viewers of other nodes' rooms here (--relay-viewers,
	// relay.go); nil when off.
	relay *relay.Relay
	inbox *cluster.Inbox
	// partyInbox brings members' signalling from other nodes
	// (--relay-members); nil when off.
	partyInbox *cluster.Inbox

	proxyOnce sync.Once
	proxy     *http.Transport

	// The other serving nodes' URLs, for join results, read from the
	// registry at most once per lease renewal.
	nodesMu   sync.Mutex
	nodesAt   time.Time
	nodesURLs []string
}

// placedHeader marks a request another node placed here: serve it, do not
// place it again.
const placedHeader = "X-Matinee-Placed"

// clusterTimeout bounds one request's conversation with Redis.
const clusterTimeout = 3 * time.Second

// newClusterGlue returns the glue when cluster mode is on (nil when not),
// and sets the room manager's configuration for it: no store file, the
// rooms' records go to Redis, and every room is claimed before it opens.
func newClusterGlue(cfg config.Config, apiKey string, log *slog.Logger, rc *room.Config) *clusterGlue {
	if !cfg.Clustered() {
		return nil
	}
	g := &clusterGlue{cfg: cfg, log: log, apiKey: apiKey}
	rc.StorePath = "" // the room list lives in Redis; a file would bring back rooms other nodes now hold
	rc.Cluster = room.ClusterHooks{Claim: g.claim, Saved: g.saved, Nodes: g.otherNodes,
		SaveState: g.saveState, LoadState: g.loadState, DropState: g.dropState,
		// A dead node's members find the room again within a lease or so.
		TakeoverGrace: cfg.ClusterLeaseTTL}
	return g
}

// start registers the node; the rooms manager exists by then.
func (g *clusterGlue) start(ctx context.Context, rooms *room.Manager) error {
	g.rooms = rooms
	id, nodeURL, err := nodeIdentity(g.cfg, g.log)
	if err != nil {
		return err
	}
	g.node, err = cluster.Start(ctx, cluster.Options{
		RedisURL: g.cfg.Redis, NodeID: id, NodeURL: nodeURL, Region: g.cfg.Region,
		LeaseRenew: g.cfg.ClusterLeaseRenew, LeaseTTL: g.cfg.ClusterLeaseTTL,
		Stats: g.stats, Rooms: g.roomIDs, MaxPeers: g.cfg.NodeMaxPeers, MaxCPU: g.cfg.NodeMaxCPU,
		Lost:    func(id string) { rooms.EndRoom(id, "the room moved to another node") },
		Retaken: func() { _ = rooms.Resave() },
		Logger:  g.log,
	})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	g.log.Info("cluster mode: node registered", "node", id, "url", nodeURL, "region", g.cfg.Region)
	if g.cfg.RelayViewers {
		if err := g.startRelay(ctx, nodeURL); err != nil {
			_ = g.node.Close()
			return fmt.Errorf("cluster: relay: %w", err)
		}
	}
	return nil
}

// nodeIdentity is the node's id and URL: the flags, else the host name
// and HTTPS port, and --public-url or the first LAN address.
func nodeIdentity(cfg config.Config, log *slog.Logger) (id, nodeURL string, err error) {
	port := configuredPort(cfg.Addr)
	id = cfg.NodeID
	if id == "" {
		id = cluster.DefaultNodeID(strconv.Itoa(port))
	}
	nodeURL = strings.TrimRight(cfg.NodeURL, "/")
	if nodeURL == "" {
		nodeURL = strings.TrimRight(cfg.PublicURL, "/")
	}
	if nodeURL == "" {
		if port == 0 {
			return "", "", errors.New("cluster: give --node-url (the HTTPS port of --addr is chosen at start)")
		}
		host := "localhost"
		if addrs := lanAddrsOf(cfg, log); len(addrs) > 0 {
			host = addrs[0].String()
		}
		nodeURL = strings.TrimRight(siteURL("https", host, port), "/")
	}
	return id, nodeURL, nil
}

func (g *clusterGlue) stats() cluster.Stats {
	rs := g.rooms.Rooms()
	st := cluster.Stats{Rooms: len(rs)}
	for _, r := range rs {
		st.Peers += len(r.Peers())
	}
	st.Carried, st.Viewers = g.rooms.Carried()
	ms := g.rooms.MediaStats()
	st.ForwardedPackets, st.ForwardedBytes = ms.ForwardedPackets, ms.ForwardedBytes
	return st
}

func (g *clusterGlue) roomIDs() []string {
	rs := g.rooms.Rooms()
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID()
	}
	return ids
}

func (g *clusterGlue) close() error {
	if g == nil || g.node == nil {
		return nil
	}
	if g.partyInbox != nil {
		_ = g.partyInbox.Close()
	}
	if g.relay != nil {
		g.relay.Close()
		_ = g.inbox.Close()
	}
	return g.node.Close()
}

// claim is room.ClusterHooks.Claim: may room id be served here? A free
// room that has a record (its node ended or died) is brought here.
func (g *clusterGlue) claim(id string, create bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if create {
		return g.claimNew(ctx, id)
	}
	if _, here := g.rooms.Room(id); !here && !g.cfg.OpenRooms && !g.node.Holds(id) {
		// Only rooms made through the API exist: one with no holder
		// and no record is unknown (answered here), and no lease or
		// epoch is taken for its id.
		own, found, err := g.node.Locate(ctx, id)
		if err != nil {
			return clusterError(id, err)
		}
		if found && !own.Self {
			return movedError(id, own.Node)
		}
		if !found {
			_, rec, err := g.node.Spec(ctx, id)
			if err != nil {
				return clusterError(id, err)
			}
			if !rec {
				return nil
			}
		}
	}
	own, err := g.node.Claim(ctx, id)
	if err != nil {
		return clusterError(id, err)
	}
	if !own.Self {
		return movedError(id, own.Node)
	}
	if _, here := g.rooms.Room(id); here {
		return nil
	}
	rec, found, err := g.node.Spec(ctx, id)
	if err != nil {
		return clusterError(id, err)
	}
	if !found {
		return nil
	}
	return g.rooms.ImportRoom(rec)
}

// claimNew takes the id of a room being made here: it must have no record
// (a room whose node ended or died keeps one) and no holder. The record is
// looked at first: once this node holds the lease, its own saves may
// write the new room's record at any moment.
func (g *clusterGlue) claimNew(ctx context.Context, id string) error {
	_, found, err := g.node.Spec(ctx, id)
	if err != nil {
		return clusterError(id, err)
	}
	if found {
		return &room.Error{Kind: room.KindConflict, Message: fmt.Sprintf("room %q exists already", id)}
	}
	own, err := g.node.Claim(ctx, id)
	if err != nil {
		return clusterError(id, err)
	}
	if !own.Self {
		return &room.Error{Kind: room.KindConflict, Message: fmt.Sprintf("room %q exists already (on node %s)", id, own.Node.ID)}
	}
	return nil
}

// otherNodes lists the other serving nodes' URLs (room.ClusterHooks.Nodes).
// A join waits at most a second for the registry; on failure the last
// list is kept.
func (g *clusterGlue) otherNodes() []string {
	g.nodesMu.Lock()
	defer g.nodesMu.Unlock()
	if time.Since(g.nodesAt) < g.cfg.ClusterLeaseRenew {
		return slices.Clone(g.nodesURLs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	nodes, err := g.node.Nodes(ctx)
	if err != nil {
		return slices.Clone(g.nodesURLs)
	}
	urls := []string{}
	for _, n := range nodes {
		if n.ID != g.node.ID() && n.State == cluster.StateServing && n.URL != "" {
			urls = append(urls, n.URL)
		}
	}
	g.nodesURLs, g.nodesAt = urls, time.Now()
	return slices.Clone(urls)
}

// movedError is the join's answer for a room on another node.
func movedError(id string, n cluster.NodeInfo) *room.Error {
	return &room.Error{
		Kind:    room.KindMoved,
		Message: fmt.Sprintf("room %q is on node %s: join at %s", id, n.ID, n.URL),
		Reason:  room.ReasonMoved,
		Node:    n.ID,
		URL:     n.URL,
	}
}

// clusterError turns the cluster's failures into the protocol's errors.
func clusterError(id string, err error) error {
	reason := room.ReasonClusterDown
	if errors.Is(err, cluster.ErrOwnerGone) {
		// The lease runs out within a TTL; a second apart, the member
		// is back about a second after it did.
		reason = room.ReasonNodeDown
	}
	return &room.Error{
		Kind:         room.KindUnavailable,
		Message:      fmt.Sprintf("room %q cannot be placed now: %v", id, err),
		Reason:       reason,
		RetryAfterMs: int64(time.Second / time.Millisecond),
	}
}

// saved is room.ClusterHooks.Saved: the persistent rooms' records, each
// written under its lease.
func (g *clusterGlue) saved(recs map[string][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	return g.node.SaveSpecs(ctx, recs)
}

// handler sends what reached the wrong node to the right one: a new
// room through the API is placed (and made on the chosen node, through
// its API), API calls about a room go to the node that holds it, WHIP
// and WHEP answer 307 to the room's node (RFC 9725 allows it), and so
// do a room's page and its live HLS. WebSocket joins are told in the join's answer
// (claim).
func (g *clusterGlue) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		switch {
		case r.Method == http.MethodPost && path == "/api/rooms":
			g.placeRoom(w, r, next)
		case r.Method == http.MethodGet && path == "/api/rooms" && r.Header.Get(placedHeader) == "" && r.URL.Query().Get("scope") != "node" && g.admin(r):
			g.listRooms(w, r, next)
		case strings.HasPrefix(path, "/api/rooms/"):
			id, _, _ := strings.Cut(strings.TrimPrefix(path, "/api/rooms/"), "/")
			g.route(w, r, next, id, false, g.forward)
		case r.Method == http.MethodPost && strings.HasPrefix(path, "/whip/"):
			// A publisher opens the room, as a join does.
			g.route(w, r, next, strings.TrimPrefix(path, "/whip/"), true, redirect)
		case r.Method == http.MethodPost && strings.HasPrefix(path, "/whep/"):
			id := strings.TrimPrefix(path, "/whep/")
			if _, here := g.rooms.Room(id); here && g.placing() && g.s != nil && g.mayWatch(r, id) && g.sendViewer(w, r, id, g.node.ID()) {
				return // the room's node has no headroom: a viewer of it goes to a node that has
			}
			g.route(w, r, next, id, false, func(w http.ResponseWriter, r *http.Request, node cluster.NodeInfo) {
				g.watchHere(w, r, next, id, node)
			})
		case r.Method == http.MethodGet && strings.HasPrefix(path, "/r/") && !r.URL.Query().Has("stay") && !g.cfg.RelayMembers:
			// ?stay: a page leaving a node that stopped answering, whose
			// lease may not have run out yet: sending it back there
			// would strand it. With --relay-members the page stays
			// here: its member is served here.
			g.route(w, r, next, strings.TrimPrefix(path, "/r/"), false, redirect)
		case r.Method == http.MethodGet && strings.HasPrefix(path, "/hls/"):
			// Live HLS is written where the room is; its signed URLs
			// are good on every node (one API key).
			id, _, _ := strings.Cut(strings.TrimPrefix(path, "/hls/"), "/")
			g.route(w, r, next, id, false, redirect)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// admin reports whether r carries the API key (others are left to the
// routes themselves, which refuse them).
func (g *clusterGlue) admin(r *http.Request) bool {
	return subtle.ConstantTimeCompare([]byte(rest.Bearer(r)), []byte(g.apiKey)) == 1
}

// placeRoom picks the node of a new room by two random choices and makes
// it there.
func (g *clusterGlue) placeRoom(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if r.Header.Get(placedHeader) != "" || !g.admin(r) {
		next.ServeHTTP(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
	node, self, err := g.node.Place(ctx)
	cancel()
	if err != nil {
		rest.WriteError(w, &rest.Error{Status: http.StatusServiceUnavailable, Code: "cluster_unavailable", Message: "no node can take the room: " + err.Error()})
		return
	}
	if self {
		next.ServeHTTP(w, r)
		return
	}
	r.Header.Set(placedHeader, g.node.ID())
	g.forward(w, r, node)
}

// route serves a request about room id here, or sends it (elsewhere) to
// the node holding the room. A room no node holds comes here if it has a
// record (its node ended or died), or, with take, if it is new (a WHIP
// publisher opens it as a join does); else the request is answered here
// as about an unknown room, without taking its id.
func (g *clusterGlue) route(w http.ResponseWriter, r *http.Request, next http.Handler, id string, take bool,
	elsewhere func(http.ResponseWriter, *http.Request, cluster.NodeInfo)) {
	if _, here := g.rooms.Room(id); here || r.Header.Get(placedHeader) != "" || !room.ValidID(id) {
		g.serveAndForget(w, r, next, id)
		return
	}
	node, err := g.resolve(r.Context(), id, take)
	switch {
	case err != nil:
		w.Header().Set("Retry-After", "2")
		rest.WriteError(w, &rest.Error{Status: http.StatusServiceUnavailable, Code: "cluster_unavailable", Message: err.Error()})
	case node == nil:
		g.serveAndForget(w, r, next, id)
	default:
		r.Header.Set(placedHeader, g.node.ID())
		elsewhere(w, r, *node)
	}
}

// resolve finds the node of a room that is not here: nil for this node.
func (g *clusterGlue) resolve(ctx context.Context, id string, take bool) (*cluster.NodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	own, found, err := g.node.Locate(ctx, id)
	if err != nil {
		return nil, err
	}
	if found && !own.Self {
		return &own.Node, nil
	}
	if !found && !take {
		_, rec, err := g.node.Spec(ctx, id)
		if err != nil || !rec {
			return nil, err // unknown everywhere: answered here
		}
	}
	err = g.claim(id, false)
	var re *room.Error
	if errors.As(err, &re) && re.Kind == room.KindMoved {
		return &cluster.NodeInfo{ID: re.Node, URL: re.URL}, nil
	}
	return nil, err
}

// redirect answers 307 with the same path and query on node.
func redirect(w http.ResponseWriter, r *http.Request, node cluster.NodeInfo) {
	http.Redirect(w, r, strings.TrimRight(node.URL, "/")+r.URL.RequestURI(), http.StatusTemporaryRedirect)
}

// serveAndForget serves a room's request here; a successful API DELETE
// also gives up the room's lease and record in Redis.
func (g *clusterGlue) serveAndForget(w http.ResponseWriter, r *http.Request, next http.Handler, id string) {
	if r.Method != http.MethodDelete || r.URL.Path != "/api/rooms/"+id {
		next.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	next.ServeHTTP(rec, r)
	if rec.status/100 == 2 {
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		defer cancel()
		if err := g.node.Forget(ctx, id); err != nil {
			g.log.Warn("cluster: forget a deleted room", "room", id, "err", err)
		}
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// forward passes r to node's API as it is (with its API key) and its
// answer back.
func (g *clusterGlue) forward(w http.ResponseWriter, r *http.Request, node cluster.NodeInfo) {
	target, err := url.Parse(node.URL)
	if err != nil || target.Host == "" {
		rest.WriteError(w, &rest.Error{Status: http.StatusBadGateway, Code: "bad_node", Message: fmt.Sprintf("node %s has a bad URL %q", node.ID, node.URL)})
		return
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: g.transport(),
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			rest.WriteError(w, &rest.Error{Status: http.StatusBadGateway, Code: "node_unreachable", Message: fmt.Sprintf("node %s at %s: %v", node.ID, node.URL, err)})
		},
	}
	p.ServeHTTP(w, r)
}

// transport reaches other nodes over HTTPS, trusting the system's roots
// and this node's CA (the nodes of one cluster share it: docs/cluster.md).
func (g *clusterGlue) transport() *http.Transport {
	g.proxyOnce.Do(func() {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if g.s != nil {
			if cm := g.s.certs.Load(); cm != nil && cm.CAPEM() != nil {
				pool.AppendCertsFromPEM(cm.CAPEM())
			}
		}
		g.proxy = &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		}
	})
	return g.proxy
}

// apiCluster lists the nodes of the cluster (GET /api/cluster, admin).
func (s *Server) apiCluster(w http.ResponseWriter, r *http.Request) {
	if s.cluster == nil {
		rest.WriteJSON(w, http.StatusOK, map[string]any{"clustered": false, "nodes": []cluster.NodeInfo{}})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
	defer cancel()
	nodes, err := s.cluster.node.Nodes(ctx)
	if err != nil {
		rest.WriteError(w, &rest.Error{Status: http.StatusServiceUnavailable, Code: "cluster_unavailable", Message: err.Error()})
		return
	}
	if nodes == nil {
		nodes = []cluster.NodeInfo{}
	}
	rest.WriteJSON(w, http.StatusOK, map[string]any{"clustered": true, "self": s.cluster.node.ID(), "nodes": nodes})
}

// Drain puts a clustered node in the draining state (no new rooms; the
// registry says so) and returns once no room here has members, or when
// ctx ends. A node on its own returns at once.
func (s *Server) Drain(ctx context.Context) error {
	if s.cluster == nil {
		return nil
	}
	if err := s.cluster.node.SetDraining(ctx); err != nil {
		s.log.Warn("cluster: could not announce draining", "err", err)
	}
	s.log.Info("draining: no new rooms here; waiting for the rooms' members to leave (send the signal again to stop at once)")
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		peers := 0
		for _, r := range s.rooms.Rooms() {
			peers += len(r.Peers())
		}
		if peers == 0 {
			s.log.Info("drained: no members left")
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Clustered reports whether the server runs in cluster mode.
func (s *Server) Clustered() bool { return s.cluster != nil }

// saveState, loadState and dropState keep a room's party state in Redis
// under the room's lease (room.ClusterHooks).
func (g *clusterGlue) saveState(id string, state []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	return g.node.SaveState(ctx, id, state)
}

func (g *clusterGlue) loadState(id string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	b, _, err := g.node.State(ctx, id)
	if err != nil {
		return nil, clusterError(id, err)
	}
	return b, nil
}

func (g *clusterGlue) dropState(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	return g.node.DropState(ctx, id)
}
