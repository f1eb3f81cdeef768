package server

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/matinee-dev/matinee/cluster"
	"github.com/matinee-dev/matinee/metrics"
	"github.com/matinee-dev/matinee/relay"
	"github.com/matinee-dev/matinee/rest"
	"github.com/matinee-dev/matinee/signaling"
	"github.com/matinee-dev/matinee/whip"
)

// Relaying (--relay-viewers, docs/cluster.md): a WHEP viewer of a room
// whose node is another is served here, from an edge copy of the room
// that one pipe from the room's node feeds (package relay).

// startRelay subscribes to this node's inbox and starts the relay.
func (g *clusterGlue) startRelay(ctx context.Context, nodeURL string) error {
	ip, err := relayIP(g, nodeURL)
	if err != nil {
		return err
	}
	g.inbox, err = g.node.Subscribe(ctx)
	if err != nil {
		return err
	}
	g.relay = relay.New(ctx, relay.Options{
		Rooms: g.rooms, Bus: relayBus{g.node}, Inbox: g.inbox.C(), IP: ip,
		IdleGrace: g.cfg.RelayIdleGrace, MaxPipes: g.cfg.RelayMaxPipes, Renew: g.cfg.ClusterLeaseRenew, TTL: g.cfg.ClusterLeaseTTL,
		Logger: g.log,
	})
	g.log.Info("cluster mode: relaying WHEP viewers of other nodes' rooms", "relay_ip", ip, "idle_grace", g.cfg.RelayIdleGrace)
	return nil
}

// relayIP is --relay-ip, else --node-url's host when it is an IP, else
// the first LAN address: the other nodes must reach it.
func relayIP(g *clusterGlue, nodeURL string) (netip.Addr, error) {
	if g.cfg.RelayIP != "" {
		a, err := netip.ParseAddr(g.cfg.RelayIP)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("relay-ip %q: %w", g.cfg.RelayIP, err)
		}
		return a, nil
	}
	if u, err := url.Parse(nodeURL); err == nil {
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && !a.IsUnspecified() {
			return a, nil
		}
	}
	if addrs := lanAddrsOf(g.cfg, g.log); len(addrs) > 0 {
		return addrs[0], nil
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
}

// watchHere serves a WHEP viewer of a room on node here, as an edge,
// unless placement sends it to another node; if no pipe can be had, it
// sends the viewer to the room's node (307) as without relay.
func (g *clusterGlue) watchHere(w http.ResponseWriter, r *http.Request, next http.Handler, id string, node cluster.NodeInfo) {
	if g.relay == nil {
		redirect(w, r, node)
		return
	}
	if g.s == nil || !g.mayWatch(r, id) {
		// Refused here as anywhere (401), without opening an edge.
		next.ServeHTTP(w, r)
		return
	}
	if g.placing() && g.sendViewer(w, r, id, node.ID) {
		return
	}
	release, err := g.relay.Watch(r.Context(), id, node.ID)
	if err != nil {
		g.log.Warn("relay: viewer sent to the room's node instead", "room", id, "node", node.ID, "err", err)
		redirect(w, r, node)
		return
	}
	defer release()
	next.ServeHTTP(w, r)
}

// placedParam marks a WHEP viewer that a node's placement sent on: the
// node it was sent to serves it, whatever the registry says by then, so a
// viewer is redirected at most once.
const placedParam = "placed"

// placing reports whether viewers are placed (--relay-place-viewers,
// with the relay on).
func (g *clusterGlue) placing() bool { return g.relay != nil && g.cfg.RelayPlaceViewers }

// sendViewer places a WHEP viewer of room id, whose node is origin, that
// reached this node (cluster.PlaceViewer) and may watch: it answers 307
// to the same URL on the node chosen, marked placed, and reports true;
// false means the viewer is served here.
func (g *clusterGlue) sendViewer(w http.ResponseWriter, r *http.Request, id, origin string) bool {
	node, self := g.placeViewer(r.Context(), id, origin, r.URL.Query().Has(placedParam))
	if self {
		return false
	}
	u := *r.URL
	q := u.Query()
	q.Set(placedParam, g.node.ID())
	u.RawQuery = q.Encode()
	http.Redirect(w, r, strings.TrimRight(node.URL, "/")+u.RequestURI(), http.StatusTemporaryRedirect)
	return true
}

// placeViewer is where a viewer of room id (held by origin) that reached
// this node is served: self, or node. With placement off, Redis not
// answering, or a node without a URL, it is served here as without
// placement.
func (g *clusterGlue) placeViewer(ctx context.Context, id, origin string, placed bool) (node cluster.NodeInfo, self bool) {
	if !g.placing() {
		return cluster.NodeInfo{}, true
	}
	_, here := g.rooms.Watchable(id)
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	node, self, err := g.node.PlaceViewer(ctx, id, origin, here, placed)
	if err != nil {
		g.log.Warn("placement: registry not read; the viewer is served here", "room", id, "err", err)
		return cluster.NodeInfo{}, true
	}
	if !self && node.URL == "" {
		return cluster.NodeInfo{}, true
	}
	if !self {
		g.log.Debug("placement: viewer sent to another node", "room", id, "node", node.ID)
	}
	return node, self
}

// mayWatch checks the viewer's credentials before a pipe is opened for it.
func (g *clusterGlue) mayWatch(r *http.Request, id string) bool {
	_, err := g.s.authorizeMedia(r, whip.Access{Room: id, Token: rest.Bearer(r)})
	return err == nil
}

// relayBus is the relay's view of the cluster.
type relayBus struct{ n *cluster.Node }

func (b relayBus) ID() string { return b.n.ID() }

func (b relayBus) Send(ctx context.Context, node string, msg []byte) error {
	return b.n.Send(ctx, node, msg)
}

func (b relayBus) Alive(ctx context.Context, node string) (bool, error) { return b.n.Alive(ctx, node) }

func (b relayBus) Holder(ctx context.Context, id string) (string, error) {
	own, found, err := b.n.Locate(ctx, id)
	switch {
	case err != nil || !found:
		return "", err
	case own.Self:
		return b.n.ID(), nil
	default:
		return own.Node.ID, nil
	}
}

// relayFigures reads the relay for metrics (ok false when off).
func (s *Server) relayFigures() (metrics.RelayFigures, bool) {
	if s.cluster == nil || s.cluster.relay == nil {
		return metrics.RelayFigures{}, false
	}
	st := s.cluster.relay.Stats()
	ms := s.sig.RemoteStats()
	return metrics.RelayFigures{
		MembersEdge: ms.Links, MembersOrigin: ms.Remote,
		PipesIn: st.PipesIn, PipesOut: st.PipesOut,
		PacketsIn: st.In.PacketsReceived, PacketsOut: st.Out.PacketsSent,
		Retransmits: st.Out.Retransmits, KeyframeRequests: st.In.KeyframeRequests,
	}, true
}

// partyTopic is the channel of members on several nodes, apart from the
// relay's: a join result with its chat history is larger than a pipe's
// message, and a burst of chat must not delay a pipe's.
func partyTopic(max int) cluster.Topic { return cluster.Topic{Name: "party", Max: max} }

// startMembers keeps WebSocket members of other nodes' rooms here
// (--relay-members, signaling/remote.go): their requests go to the
// room's node, their media comes from the relay's edge.
func (g *clusterGlue) startMembers(ctx context.Context, sig *signaling.Server) error {
	if !g.cfg.RelayMembers || g.relay == nil {
		return nil
	}
	topic := partyTopic(g.cfg.RelayMemberMaxMessage)
	in, err := g.node.SubscribeOn(ctx, topic)
	if err != nil {
		return fmt.Errorf("cluster: members' channel: %w", err)
	}
	g.partyInbox = in
	sig.StartRemote(ctx, signaling.RemoteOptions{
		Bus: partyBus{n: g.node, t: topic}, Inbox: in.C(),
		Watch: func(ctx context.Context, room, node string) (func(), error) {
			return g.relay.Watch(ctx, room, node)
		},
		Answering: g.node.Answering,
		Place: func(ctx context.Context, room, origin string) (string, string, bool) {
			n, self := g.placeViewer(ctx, room, origin, false)
			return n.ID, n.URL, !self
		},
		Renew: g.cfg.ClusterLeaseRenew, TTL: g.cfg.ClusterLeaseTTL,
		MaxMessage: g.cfg.RelayMemberMaxMessage, MaxMembers: g.cfg.RelayMaxMembers,
	})
	g.log.Info("cluster mode: members of other nodes' rooms stay here", "max_message", g.cfg.RelayMemberMaxMessage, "max_members", g.cfg.RelayMaxMembers)
	return nil
}

// partyBus sends on the members' channel.
type partyBus struct {
	n *cluster.Node
	t cluster.Topic
}

func (b partyBus) ID() string { return b.n.ID() }

func (b partyBus) Send(ctx context.Context, node string, msg []byte) error {
	return b.n.SendOn(ctx, b.t, node, msg)
}
