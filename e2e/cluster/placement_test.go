package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	mcluster "github.com/matinee-dev/matinee/cluster"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/webrtc/v4"
)

// registry reads the nodes' records as node n's /api/cluster shows them.
func (c *cluster) registry(n *node) (map[string]mcluster.NodeInfo, error) {
	st, b, err := c.api("GET", n.url+"/api/cluster", nil)
	if err != nil || st != http.StatusOK {
		return nil, fmt.Errorf("GET /api/cluster on %s: %d %s %v", n.id, st, b, err)
	}
	var out struct{ Nodes []mcluster.NodeInfo }
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	m := map[string]mcluster.NodeInfo{}
	for _, ni := range out.Nodes {
		m[ni.ID] = ni
	}
	return m, nil
}

// waitRecords waits until the registry, read through n, satisfies ok.
func (c *cluster) waitRecords(t *testing.T, n *node, what string, ok func(map[string]mcluster.NodeInfo) bool) map[string]mcluster.NodeInfo {
	t.Helper()
	var last map[string]mcluster.NodeInfo
	testenv.EventuallyState(t, 10*time.Second, what, func() (bool, string) {
		recs, err := c.registry(n)
		if err != nil {
			return false, err.Error()
		}
		last = recs
		b, _ := json.Marshal(recs)
		return ok(recs), string(b)
	})
	return last
}

// probeWHEP posts a WHEP offer to n without following a redirect, with
// token (none if empty): its status and Location.
func (c *cluster) probeWHEP(t *testing.T, n *node, roomID, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", n.url+"/whep/"+roomID, strings.NewReader("v=0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", whip.ContentTypeSDP)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.noRedirect().Do(req)
	if err != nil {
		t.Fatalf("whep probe on %s: %v", n.id, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// watchPlaced starts a WHEP viewer of roomID posting to node at and
// following a redirect, as a WHEP client does; v.node is the node that
// serves it.
func (c *cluster) watchPlaced(t *testing.T, at *node, roomID string) *viewer {
	t.Helper()
	v, offer := c.newViewer(t, at)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var err error
	v.sess, err = whip.Offer(ctx, c.client, at.url+"/whep/"+roomID, apiKey, offer)
	if err != nil {
		t.Fatalf("whep offer to %s: %v\n%s", at.id, err, tail(at.log))
	}
	v.node = nil
	for _, n := range c.nodes {
		if strings.HasPrefix(v.sess.Location, n.url+"/whep/") {
			v.node = n
		}
	}
	if v.node == nil {
		t.Fatalf("whep session posted to %s at %s: no node of the cluster", at.id, v.sess.Location)
	}
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: v.sess.Answer}); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestClusterPlacement: with --relay-place-viewers, a viewer goes to a
// node that carries the room and has headroom, else to a new node by two
// random choices (cluster.PlaceViewer). A redis-server and three matinee
// processes: a sharer on A, whose --node-max-peers 1 leaves it no
// headroom; B and C take 2 each. The first viewer opens an edge on the
// node the rule picks (W); a viewer posting to the other (Q), or to A, is
// sent to W (307, marked placed) and served there, so A keeps one pipe
// out; once W is full, a viewer at Q is served at Q (the only node with
// headroom), a second pipe. A WebSocket member reaching the full W is
// sent to Q (1010 with data.url), which carries the room and has
// headroom, and is served there.
func TestClusterPlacement(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and three matinee processes")
	}
	c := newCluster(t)
	// No CPU ceiling: this machine is shared, and the test is about
	// peers; the ceiling is the same rule (cluster.TestHeadroom).
	c.args = []string{"--relay-idle-grace", "1s", "--relay-place-viewers", "--node-max-cpu", "0"}
	a := c.addNode("place-a", "--node-max-peers", "1")
	b := c.addNode("place-b", "--node-max-peers", "2")
	cn := c.addNode("place-c", "--node-max-peers", "2")
	const roomID = "placed-party"

	c.publish(t, a, roomID)
	recs := c.waitRecords(t, a, "A full with its sharer, three nodes registered", func(r map[string]mcluster.NodeInfo) bool {
		ra := r[a.id]
		return len(r) == 3 && ra.Peers == 1 && !ra.Headroom() && slices.Contains(ra.Carries, roomID)
	})

	// No carrier has headroom: two random choices between B and C, drawn
	// for the room, so every node picks the same one (W).
	nodes := make([]mcluster.NodeInfo, 0, 3)
	for _, id := range []string{a.id, b.id, cn.id} {
		nodes = append(nodes, recs[id])
	}
	want, _ := mcluster.PlaceViewer(nodes, mcluster.ViewerQuery{Room: roomID, Self: b.id, Origin: a.id})
	first := c.watchPlaced(t, b, roomID)
	w, q := first.node, cn
	if w.id != want.ID {
		t.Fatalf("the first viewer, posted to %s, is served on %s; the rule says %s", b.id, w.id, want.ID)
	}
	if w == cn {
		q = b
	}
	t.Logf("first viewer: posted to %s, served on %s (the rule's pick)", b.id, w.id)
	first.playing(t, "first viewer", 0, 0, 0, 15*time.Second)
	c.waitMetric(t, a, pipesOut, 1, 5*time.Second)
	c.waitRecords(t, a, "W's record: carries the room, one viewer", func(r map[string]mcluster.NodeInfo) bool {
		return slices.Contains(r[w.id].Carries, roomID) && r[w.id].Viewers == 1 && r[w.id].Headroom()
	})

	// W carries the room and has headroom: viewers at Q, and at the full
	// origin, are sent there, marked so that W serves them. A viewer
	// without credentials is refused where it asked, not sent on.
	for _, at := range []*node{q, a} {
		start := time.Now()
		if st, loc := c.probeWHEP(t, at, roomID, ""); st != http.StatusUnauthorized {
			t.Fatalf("WHEP at %s without credentials: %d Location %q, want 401 there (not placed)", at.id, st, loc)
		}
		st, loc := c.probeWHEP(t, at, roomID, apiKey)
		t.Logf("WHEP at %s answered %d in %s (the placement's registry read included)", at.id, st, time.Since(start).Round(100*time.Microsecond))
		if wantLoc := w.url + "/whep/" + roomID + "?placed=" + at.id; st != http.StatusTemporaryRedirect || loc != wantLoc {
			t.Fatalf("WHEP at %s: %d Location %q, want 307 to %s", at.id, st, loc, wantLoc)
		}
	}
	second := c.watchPlaced(t, q, roomID)
	if second.node != w {
		t.Fatalf("the second viewer, posted to %s, is served on %s, want %s (carries the room)", q.id, second.node.id, w.id)
	}
	second.playing(t, "second viewer", 0, 0, 0, 15*time.Second)
	c.waitMetric(t, w, `matinee_whep_sessions`, 2, 5*time.Second)
	c.waitMetric(t, q, `matinee_whep_sessions`, 0, time.Second)
	if got, ok, err := c.metric(a, pipesOut); err != nil || !ok || got != 1 {
		t.Fatalf("A's pipes out with two viewers on W: %v %v %v, want 1", got, ok, err)
	}

	// W is full (2 of 2), A too: no carrier has headroom, and Q is the
	// only node that has: a viewer at Q is served there.
	c.waitRecords(t, a, "W's record: two viewers, no headroom", func(r map[string]mcluster.NodeInfo) bool {
		return r[w.id].Viewers == 2 && !r[w.id].Headroom()
	})
	third := c.watchPlaced(t, q, roomID)
	if third.node != q {
		t.Fatalf("the third viewer, posted to %s, is served on %s, want %s", q.id, third.node.id, q.id)
	}
	third.playing(t, "third viewer", 0, 0, 0, 15*time.Second)
	c.waitMetric(t, a, pipesOut, 2, 5*time.Second)
	c.waitMetric(t, q, pipesIn, 1, 5*time.Second)

	// A WebSocket member reaching the full W is sent to Q, which carries
	// the room and has headroom; there it is served (no 1010).
	c.waitRecords(t, a, "Q's record: carries the room, one viewer", func(r map[string]mcluster.NodeInfo) bool {
		return slices.Contains(r[q.id].Carries, roomID) && r[q.id].Viewers == 1 && r[q.id].Headroom()
	})
	_, err := c.tryJoinParty(w, roomID, "Wes", nil)
	var moved struct{ Node, URL string }
	rerr, ok := err.(*testpeer.RPCError)
	if ok {
		_ = json.Unmarshal(rerr.Data, &moved)
	}
	if !ok || rerr.Code != 1010 || moved.URL != q.url || moved.Node != q.id {
		t.Fatalf("join through the full %s: %v (data %+v), want 1010 to %s", w.id, err, moved, q.url)
	}
	wes := c.joinParty(t, q, roomID, "Wes", nil)
	c.waitMetric(t, q, `matinee_relay_members{side="edge"}`, 1, 5*time.Second)
	if wes.res.PeerID == "" {
		t.Fatal("Wes joined through Q without a peer id")
	}
	// The pipes did not change: Q's member is fed by Q's edge.
	if got, ok, err := c.metric(a, pipesOut); err != nil || !ok || got != 2 {
		t.Fatalf("A's pipes out: %v %v %v, want 2", got, ok, err)
	}
}
