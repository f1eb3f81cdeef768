package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/codecs"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/pion/webrtc/v4"
)

// partyMember is a pion WebSocket member (internal/testpeer) that keeps
// every notification it gets, with the time it came.
type partyMember struct {
	name string
	node *node
	c    *testpeer.Client
	res  partyJoin

	mu    sync.Mutex
	notes []partyNote
	video int // RTP packets received, by the receive transport
	keys  int // of them, keyframes
	wg    sync.WaitGroup
}

type partyNote struct {
	method string
	params json.RawMessage
	at     time.Time
}

type partyJoin struct {
	PeerID      string `json:"peerId"`
	Role        string `json:"role"`
	ResumeToken string `json:"resumeToken"`
	Resumed     bool   `json:"resumed"`
	Peers       []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"peers"`
	Producers []testpeer.Producer `json:"producers"`
	Nodes     []string            `json:"nodes"`
}

// joinParty connects a member to node n and joins roomID there.
func (c *cluster) joinParty(t *testing.T, n *node, roomID, name string, extra map[string]any) *partyMember {
	t.Helper()
	api, err := testpeer.NewAPI(testpeer.Options{Interfaces: c.peerIfaces})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d := &websocket.Dialer{TLSClientConfig: c.tlsCfg, HandshakeTimeout: 5 * time.Second}
	cl, err := testpeer.DialWith(ctx, d, "wss"+strings.TrimPrefix(n.url, "https")+"/ws", api)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, n.id, err)
	}
	m := &partyMember{name: name, node: n, c: cl}
	t.Cleanup(m.drop)
	m.wg.Add(1)
	go m.collect()
	params := map[string]any{"room": roomID, "name": name}
	for k, v := range extra {
		params[k] = v
	}
	if err := cl.Call(ctx, "join", params, &m.res); err != nil {
		t.Fatalf("%s: join %s on %s: %v\n%s", name, roomID, n.id, err, tail(n.log))
	}
	cl.PeerID = m.res.PeerID
	return m
}

func (m *partyMember) collect() {
	defer m.wg.Done()
	for {
		select {
		case ev := <-m.c.Events:
			m.mu.Lock()
			m.notes = append(m.notes, partyNote{ev.Method, ev.Params, time.Now()})
			m.mu.Unlock()
		case <-m.c.Done():
			return
		}
	}
}

func (m *partyMember) drop() {
	m.c.Drop()
	m.wg.Wait()
}

// call makes one request and decodes its result into res (if not nil).
func (m *partyMember) call(t *testing.T, method string, params, res any) {
	t.Helper()
	if err := m.try(method, params, res); err != nil {
		t.Fatalf("%s on %s: %s: %v\n%s", m.name, m.node.id, method, err, tail(m.node.log))
	}
}

func (m *partyMember) try(method string, params, res any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return m.c.Call(ctx, method, params, res)
}

// notesOf returns the notifications of one method so far.
func (m *partyMember) notesOf(method string) []partyNote {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []partyNote
	for _, n := range m.notes {
		if n.method == method {
			out = append(out, n)
		}
	}
	return out
}

// await waits for a notification of method whose params contain every
// one of subs, and returns it.
func (m *partyMember) await(t *testing.T, method string, within time.Duration, subs ...string) partyNote {
	t.Helper()
	var found partyNote
	testenv.EventuallyState(t, within, fmt.Sprintf("%s gets %s %v", m.name, method, subs), func() (bool, string) {
		for _, n := range m.notesOf(method) {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(string(n.params), s)
			}
			if ok {
				found = n
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d %s notifications", len(m.notesOf(method)), method)
	})
	return found
}

// chatSeqs lists the chat messages received, in the order they came.
func (m *partyMember) chatSeqs() []string {
	var out []string
	for _, n := range m.notesOf("chat") {
		var p struct {
			Message struct {
				Seq  int64  `json:"seq"`
				Text string `json:"text"`
			} `json:"message"`
		}
		_ = json.Unmarshal(n.params, &p)
		out = append(out, fmt.Sprintf("%d:%s", p.Message.Seq, p.Message.Text))
	}
	return out
}

// receive subscribes the member to a producer and counts its video.
func (m *partyMember) receive(t *testing.T, producerID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m.c.Recv == nil {
		m.c.OnTrack = func(tr *webrtc.TrackRemote, _ testpeer.Consumer) {
			codec := codecs.FromMime(tr.Codec().MimeType)
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				for {
					pkt, _, err := tr.ReadRTP()
					if err != nil {
						return
					}
					if len(pkt.Payload) == 0 || tr.Kind() != webrtc.RTPCodecTypeVideo {
						continue
					}
					m.mu.Lock()
					m.video++
					if codecs.IsKeyframe(codec, pkt.Payload) {
						m.keys++
					}
					m.mu.Unlock()
				}
			}()
		}
		if err := m.c.StartReceiving(ctx); err != nil {
			t.Fatalf("%s: recv transport: %v", m.name, err)
		}
	}
	if _, err := m.c.Subscribe(ctx, producerID); err != nil {
		t.Fatalf("%s: subscribe %s: %v\n%s", m.name, producerID, err, tail(m.node.log))
	}
}

// watching waits for video with a keyframe.
func (m *partyMember) watching(t *testing.T, what string) {
	t.Helper()
	testenv.EventuallyState(t, 15*time.Second, m.name+" decodes "+what, func() (bool, string) {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.video >= 50 && m.keys > 0, fmt.Sprintf("%d video packets, %d keyframes", m.video, m.keys)
	})
}

func videoOf(ps []testpeer.Producer) string {
	for _, p := range ps {
		if p.Kind == "video" {
			return p.ID
		}
	}
	return ""
}

// TestClusterMembersAcrossNodes: one watch party, its room on node A,
// with WebSocket members on A, B and C (--relay-members). Members on B
// and C join there (no 1010), see each other in the member list, chat in
// one order, react, follow the host's playback (the same state,
// delivered within 100 ms), follow a host handed to a member on B, get
// the share of a WHIP sharer on A through B's edge, and a member on B
// shares a camera that members on A and B receive. A member's leave
// reaches everyone; C killed: A drops its member after the lease; A
// killed: B closes its members' sockets, and the room comes back on B
// with the same host.
func TestClusterMembersAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and three matinee processes")
	}
	c := newCluster(t)
	c.args = []string{"--relay-members", "--relay-idle-grace", "1s"}
	a, b, cn := c.addNode("party-a"), c.addNode("party-b"), c.addNode("party-c")
	const roomID = "party-across"

	ana := c.joinParty(t, a, roomID, "Ana", nil)
	if ana.res.Role != "host" || !slices.Contains(c.localRooms(a), roomID) {
		t.Fatalf("Ana: role %q; rooms on A %v", ana.res.Role, c.localRooms(a))
	}
	c.publish(t, a, roomID)
	testenv.EventuallyState(t, 10*time.Second, "the share announced to Ana", func() (bool, string) {
		return len(ana.notesOf("producerAdded")) >= 2, fmt.Sprint(len(ana.notesOf("producerAdded")))
	})

	bo := c.joinParty(t, b, roomID, "Bo", nil)
	cy := c.joinParty(t, cn, roomID, "Cy", nil)
	dee := c.joinParty(t, b, roomID, "Dee", nil)
	// Served where they joined: two links on B, one on C, three remote
	// members on A; the room stays on A only.
	c.waitMetric(t, b, `matinee_relay_members{side="edge"}`, 2, 5*time.Second)
	c.waitMetric(t, cn, `matinee_relay_members{side="edge"}`, 1, 5*time.Second)
	c.waitMetric(t, a, `matinee_relay_members{side="origin"}`, 3, 5*time.Second)
	for _, n := range []*node{b, cn} {
		if rs := c.localRooms(n); len(rs) != 0 {
			t.Fatalf("rooms on %s: %v", n.id, rs)
		}
	}

	t.Run("presence", func(t *testing.T) {
		names := func(m *partyMember) []string {
			var out []string
			for _, p := range m.res.Peers {
				out = append(out, p.Name)
			}
			return out
		}
		if got := names(cy); !slices.Contains(got, "Ana") || !slices.Contains(got, "Bo") {
			t.Errorf("Cy's join lists %v, want Ana and Bo among them", got)
		}
		if videoOf(bo.res.Producers) == "" {
			t.Errorf("Bo's join lists no video producer: %+v", bo.res.Producers)
		}
		for _, who := range []string{"Bo", "Cy", "Dee"} {
			ana.await(t, "peerJoined", 5*time.Second, `"name":"`+who+`"`)
		}
		bo.await(t, "peerJoined", 5*time.Second, `"name":"Cy"`)
		cy.await(t, "peerJoined", 5*time.Second, `"name":"Dee"`)
	})

	t.Run("chat", func(t *testing.T) {
		senders := []*partyMember{ana, bo, cy}
		var wg sync.WaitGroup
		for _, m := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 4 {
					if err := m.try("chat", map[string]any{"text": fmt.Sprintf("%s %d", m.name, i)}, nil); err != nil {
						t.Errorf("%s chat: %v", m.name, err)
					}
				}
			}()
		}
		wg.Wait()
		all := []*partyMember{ana, bo, cy, dee}
		for _, m := range all {
			testenv.EventuallyState(t, 5*time.Second, m.name+" gets 12 chats", func() (bool, string) {
				return len(m.chatSeqs()) >= 12, fmt.Sprint(m.chatSeqs())
			})
		}
		want := ana.chatSeqs()
		for i, s := range want {
			if !strings.HasPrefix(s, fmt.Sprintf("%d:", i+1)) {
				t.Errorf("Ana's chat %d is %s: not in sequence order", i, s)
			}
		}
		for _, m := range all[1:] {
			if got := m.chatSeqs(); !slices.Equal(got, want) {
				t.Errorf("%s on %s got the chat as %v, Ana on A as %v", m.name, m.node.id, got, want)
			}
		}
		dee.call(t, "react", map[string]any{"emoji": "🎉"}, nil)
		for _, m := range []*partyMember{ana, bo, cy} {
			m.await(t, "reaction", 5*time.Second, "🎉")
		}
	})

	t.Run("playback", func(t *testing.T) {
		var res struct {
			State json.RawMessage `json:"state"`
		}
		ana.call(t, "playback", map[string]any{"action": "load", "url": "https://films.example/night.mp4", "duration": 600}, nil)
		sent := time.Now()
		ana.call(t, "playback", map[string]any{"action": "play", "position": 12.5}, &res)
		answered := time.Now()
		var want map[string]any
		if err := json.Unmarshal(res.State, &want); err != nil {
			t.Fatal(err)
		}
		for _, m := range []*partyMember{bo, cy, dee} {
			n := m.await(t, "playbackState", 5*time.Second, `"position":12.5`, `"paused":false`)
			var got struct {
				State map[string]any `json:"state"`
			}
			if err := json.Unmarshal(n.params, &got); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.State) != fmt.Sprint(want) {
				t.Errorf("%s on %s has the state %v, Ana set %v", m.name, m.node.id, got.State, want)
			}
			late := n.at.Sub(answered)
			t.Logf("%s on %s had the play %s after Ana's answer (%s after she sent it)", m.name, m.node.id,
				late.Round(100*time.Microsecond), n.at.Sub(sent).Round(100*time.Microsecond))
			if n.at.Sub(sent) > 100*time.Millisecond {
				t.Errorf("%s on %s had the play %s after Ana sent it: more than 100 ms", m.name, m.node.id, n.at.Sub(sent))
			}
		}
		// The clock a member on B syncs with is the room's node's: its
		// offset from A's, seen by Bo, is within half the round trip.
		var clock struct {
			ServerTime float64 `json:"serverTime"`
		}
		before := time.Now()
		bo.call(t, "time", map[string]any{}, &clock)
		after := time.Now()
		mid := float64(before.UnixMicro()+after.UnixMicro()) / 2000
		rtt := after.Sub(before)
		off := clock.ServerTime - mid
		t.Logf("Bo's clock sample through B: round trip %s, offset %.1f ms", rtt.Round(100*time.Microsecond), off)
		if off > float64(rtt.Milliseconds())/2+5 || -off > float64(rtt.Milliseconds())/2+5 {
			t.Errorf("Bo's clock sample through B is %.1f ms off with a round trip of %s", off, rtt)
		}
	})

	t.Run("roles", func(t *testing.T) {
		ana.call(t, "transferHost", map[string]any{"peerId": bo.res.PeerID}, nil)
		for _, m := range []*partyMember{ana, bo, cy, dee} {
			m.await(t, "peerUpdated", 5*time.Second, `"id":"`+bo.res.PeerID+`"`, `"role":"host"`)
		}
		bo.call(t, "playback", map[string]any{"action": "pause"}, nil)
		for _, m := range []*partyMember{ana, cy, dee} {
			m.await(t, "playbackState", 5*time.Second, `"paused":true`)
		}
		// A guest on C is refused a host's call, with the room's own error.
		err := cy.try("setRole", map[string]any{"peerId": dee.res.PeerID, "role": "viewer"}, nil)
		if rerr, ok := err.(*testpeer.RPCError); !ok || rerr.Code != 1005 {
			t.Errorf("Cy's setRole as a guest: %v, want error 1005", err)
		}
	})

	t.Run("media", func(t *testing.T) {
		// The WHIP share on A, received by Bo on B from B's edge.
		bo.receive(t, videoOf(bo.res.Producers))
		bo.watching(t, "the share from A")
		c.waitMetric(t, b, pipesIn, 1, 5*time.Second)
		c.waitMetric(t, a, pipesOut, 2, 5*time.Second)
		if got, ok, err := c.metric(b, `matinee_relay_packets_total{direction="in"}`); err != nil || !ok || got < 50 {
			t.Errorf("packets into B's edge: %v %v %v", got, ok, err)
		}
		// Bo (host now) shares a camera from B: its send transport is on
		// A; Ana on A and Dee on B receive it.
		src, err := testpeer.NewVideoSource("camera", "bo-camera")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		track := &testpeer.Track{Track: src.Track, AppData: map[string]any{"source": "camera"}}
		ps, err := bo.c.Publish(ctx, track)
		if err != nil || len(ps) != 1 {
			t.Fatalf("Bo publishes from B: %v %v\n%s", ps, err, tail(b.log))
		}
		stop := make(chan struct{})
		var sw sync.WaitGroup
		sw.Add(1)
		// Its RTCP ends with Bo's connection (partyMember.drop).
		bo.wg.Add(1)
		go func() { defer bo.wg.Done(); src.ServeRTCP(track.Sender) }()
		go func() { defer sw.Done(); src.Run(stop, 30) }()
		defer func() { close(stop); sw.Wait() }()
		dee.await(t, "producerAdded", 5*time.Second, ps[0].ID)
		ana.receive(t, ps[0].ID)
		ana.watching(t, "Bo's camera from B")
		dee.receive(t, ps[0].ID)
		dee.watching(t, "Bo's camera, through A")
	})

	t.Run("leave", func(t *testing.T) {
		dee.call(t, "leave", nil, nil)
		for _, m := range []*partyMember{ana, bo, cy} {
			m.await(t, "peerLeft", 5*time.Second, `"peerId":"`+dee.res.PeerID+`"`, `"reason":"left"`)
		}
		c.waitMetric(t, b, `matinee_relay_members{side="edge"}`, 1, 5*time.Second)
		// The socket stays open and may join again.
		if err := dee.try("time", map[string]any{}, nil); err != nil {
			t.Errorf("Dee's socket after leave: %v", err)
		}
	})

	t.Run("edge killed", func(t *testing.T) {
		killed := time.Now()
		cn.kill()
		n := ana.await(t, "peerLeft", 20*time.Second, `"peerId":"`+cy.res.PeerID+`"`, `"reason":"timeout"`)
		t.Logf("Cy (on the killed C) left the party %s after the kill", n.at.Sub(killed).Round(10*time.Millisecond))
		c.waitMetric(t, a, `matinee_relay_members{side="origin"}`, 1, 5*time.Second)
	})

	t.Run("origin killed", func(t *testing.T) {
		token := bo.res.ResumeToken
		killed := time.Now()
		a.kill()
		select {
		case <-bo.c.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("Bo's socket on B still open 20 s after A's kill")
		}
		t.Logf("Bo's socket on B closed %s after A's kill", time.Since(killed).Round(10*time.Millisecond))
		// No "disconnected": the web client takes that for a removal; a
		// socket that just ends is reconnected, as after its own node died.
		if n := bo.notesOf("disconnected"); len(n) != 0 {
			t.Errorf("Bo was told %s: the web client would not reconnect", n[0].params)
		}
		// Bo comes back on B, by the resume token: once A's lease ran out
		// B takes the room from its state, with Bo its host again.
		var again *partyMember
		testenv.EventuallyState(t, 20*time.Second, "Bo rejoins on B", func() (bool, string) {
			m, err := c.tryJoinParty(b, roomID, "Bo", map[string]any{"resume": token})
			if err != nil {
				return false, err.Error()
			}
			again = m
			return true, ""
		})
		t.Cleanup(again.drop)
		if !again.res.Resumed || again.res.Role != "host" || again.res.PeerID != bo.res.PeerID {
			t.Errorf("Bo back on B: resumed %v, role %q, peer %s (was %s)", again.res.Resumed, again.res.Role, again.res.PeerID, bo.res.PeerID)
		}
		if !slices.Contains(c.localRooms(b), roomID) {
			t.Errorf("the room is not on B after A's death: %v", c.localRooms(b))
		}
		t.Logf("Bo is host on B again %s after A's kill", time.Since(killed).Round(10*time.Millisecond))
	})
}

// tryJoinParty is joinParty that reports a failed join instead of
// failing the test.
func (c *cluster) tryJoinParty(n *node, roomID, name string, extra map[string]any) (*partyMember, error) {
	api, err := testpeer.NewAPI(testpeer.Options{Interfaces: c.peerIfaces})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := &websocket.Dialer{TLSClientConfig: c.tlsCfg, HandshakeTimeout: 5 * time.Second}
	cl, err := testpeer.DialWith(ctx, d, "wss"+strings.TrimPrefix(n.url, "https")+"/ws", api)
	if err != nil {
		return nil, err
	}
	m := &partyMember{name: name, node: n, c: cl}
	m.wg.Add(1)
	go m.collect()
	params := map[string]any{"room": roomID, "name": name}
	for k, v := range extra {
		params[k] = v
	}
	if err := cl.Call(ctx, "join", params, &m.res); err != nil {
		m.drop()
		return nil, err
	}
	return m, nil
}
