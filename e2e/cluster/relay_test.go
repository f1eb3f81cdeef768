package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs"
	"github.com/matinee-dev/matinee/internal/synth"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/webrtc/v4"
)

// noRedirect is the cluster's client, but a 307 is an answer: a viewer
// sent elsewhere is not served where it asked.
func (c *cluster) noRedirect() *http.Client {
	return &http.Client{Transport: c.client.Transport, Timeout: c.client.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// newPeer makes a pion peer gathering on loopback, or on the bridge of
// the test's LAN (c.peerIfaces).
func (c *cluster) newPeer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	api, err := testpeer.NewAPI(testpeer.Options{Interfaces: c.peerIfaces})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// publisher is a pion WHIP client sending VP8 simulcast and Opus-sized
// audio (internal/synth).
type publisher struct {
	pc   *webrtc.PeerConnection
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func (c *cluster) publish(t *testing.T, n *node, roomID string) *publisher {
	t.Helper()
	p := &publisher{pc: c.newPeer(t), stop: make(chan struct{})}
	t.Cleanup(p.close)
	video, err := synth.NewVideo("video", "screen", synth.Simulcast3)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := video.AddTo(p.pc)
	if err != nil {
		t.Fatal(err)
	}
	audio, err := synth.NewAudio("audio", "screen")
	if err != nil {
		t.Fatal(err)
	}
	atr, err := p.pc.AddTransceiverFromTrack(audio.Track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	offer, err := testpeer.GatheredOffer(p.pc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sess, err := whip.Offer(ctx, c.noRedirect(), n.url+"/whip/"+roomID+"?name=sharer", apiKey, offer)
	if err != nil {
		t.Fatalf("whip offer to %s: %v", n.id, err)
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sess.Answer}); err != nil {
		t.Fatal(err)
	}
	for _, tr := range p.pc.GetTransceivers() {
		if tr.Sender() == vs {
			video.UseExtensions(vs, tr.Mid())
		}
	}
	p.wg.Add(4)
	go func() { defer p.wg.Done(); video.ServeRTCP(vs) }()
	go func() { defer p.wg.Done(); synth.DrainRTCP(atr.Sender()) }()
	go func() { defer p.wg.Done(); video.Run(p.stop) }()
	go func() { defer p.wg.Done(); audio.Run(p.stop) }()
	return p
}

func (p *publisher) close() {
	p.once.Do(func() {
		close(p.stop)
		_ = p.pc.Close()
		p.wg.Wait()
	})
}

// viewer is a pion WHEP client counting what it receives.
type viewer struct {
	node *node
	pc   *webrtc.PeerConnection
	sess *whip.ClientSession
	wg   sync.WaitGroup

	mu        sync.Mutex
	packets   map[string]int // by kind
	keyframes int
	width     int // of the last keyframe, when its codec says (not synth's)
	closed    bool
}

// watch starts a WHEP viewer of roomID on node n; it must be served
// there, not sent elsewhere.
func (c *cluster) watch(t *testing.T, n *node, roomID string) *viewer {
	t.Helper()
	return c.watchTogether(t, n, roomID, 1)[0]
}

// watchTogether starts count WHEP viewers of roomID on node n, their
// offers posted at the same moment; each must be served there.
func (c *cluster) watchTogether(t *testing.T, n *node, roomID string, count int) []*viewer {
	t.Helper()
	vs := make([]*viewer, count)
	offers := make([]string, count)
	for i := range vs {
		vs[i], offers[i] = c.newViewer(t, n)
	}
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i, v := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			v.sess, errs[i] = whip.Offer(ctx, c.noRedirect(), n.url+"/whep/"+roomID, apiKey, offers[i])
		}()
	}
	wg.Wait()
	for i, v := range vs {
		if errs[i] != nil {
			t.Fatalf("whep offer to %s: %v\n%s", n.id, errs[i], tail(n.log))
		}
		if !strings.HasPrefix(v.sess.Location, n.url+"/whep/") {
			t.Fatalf("whep session on %s at %s", n.id, v.sess.Location)
		}
		if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: v.sess.Answer}); err != nil {
			t.Fatal(err)
		}
	}
	return vs
}

// newViewer makes a receiving peer on n and its offer.
func (c *cluster) newViewer(t *testing.T, n *node) (*viewer, string) {
	t.Helper()
	v := &viewer{node: n, pc: c.newPeer(t), packets: map[string]int{}}
	t.Cleanup(v.close)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := v.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	v.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		kind, codec := tr.Kind().String(), codecs.FromMime(tr.Codec().MimeType)
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if len(pkt.Payload) == 0 {
					continue // a bandwidth probe
				}
				v.mu.Lock()
				v.packets[kind]++
				if kind == "video" && codecs.IsKeyframe(codec, pkt.Payload) {
					v.keyframes++
					if w, _, ok := codecs.Dimensions(codec, pkt.Payload); ok {
						v.width = w
					}
				}
				v.mu.Unlock()
			}
		}()
	})
	offer, err := testpeer.GatheredOffer(v.pc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return v, offer
}

// got reads the counts: video and audio packets, video keyframes.
func (v *viewer) got() (video, audio, keyframes int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.packets["video"], v.packets["audio"], v.keyframes
}

// lastWidth is the width of the last keyframe v received (0: none with a
// picture header yet).
func (v *viewer) lastWidth() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.width
}

// leave ends the WHEP session as a client does, then closes the peer.
func (v *viewer) leave(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.sess.Delete(ctx); err != nil {
		t.Errorf("whep delete on %s: %v", v.node.id, err)
	}
	v.close()
}

func (v *viewer) close() {
	v.mu.Lock()
	closed := v.closed
	v.closed = true
	v.mu.Unlock()
	if !closed {
		_ = v.pc.Close()
		v.wg.Wait()
	}
}

// playing waits until v has received more than the given counts by at
// least 30 video packets, 20 audio packets and one keyframe.
func (v *viewer) playing(t *testing.T, what string, video, audio, keyframes int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		vi, au, kf := v.got()
		if vi >= video+30 && au >= audio+20 && kf > keyframes {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: viewer on %s got %d video (%d keyframes) and %d audio packets, had %d (%d) and %d before",
				what, v.node.id, vi, kf, au, video, keyframes, audio)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric reads one sample of a node's /metrics (false: not there).
func (c *cluster) metric(n *node, sample string) (float64, bool, error) {
	resp, err := c.client.Get(n.url + "/metrics")
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, err
	}
	if resp.StatusCode != 200 {
		return 0, false, fmt.Errorf("/metrics of %s: %d", n.id, resp.StatusCode)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			var v float64
			_, err := fmt.Sscan(rest, &v)
			return v, err == nil, err
		}
	}
	return 0, false, nil
}

// waitMetric polls a node's metric until it equals want; it returns how
// long that took.
func (c *cluster) waitMetric(t *testing.T, n *node, sample string, want float64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got float64
	var err error
	for {
		var ok bool
		got, ok, err = c.metric(n, sample)
		if err == nil && ok && got == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s on %s: %v (err %v), want %v after %s\n%s", sample, n.id, got, err, want, within, tail(n.log))
	return 0
}

const (
	pipesOut = `matinee_relay_pipes{direction="out"}`
	pipesIn  = `matinee_relay_pipes{direction="in"}`
)

// TestClusterRelay: a WHIP sharer on node A; WHEP viewers on B (three)
// and C (one) are served there, each node fed by exactly one pipe from A
// whatever its viewers, and get video (keyframes included) and audio.
// B killed with -9: C's viewer plays on, and A drops B's pipe once B's
// lease is gone. C's viewer leaves: its pipe goes after the idle grace.
// On loopback; TestClusterRelayNamespaces runs it with a node per
// network namespace.
func TestClusterRelay(t *testing.T) {
	c := newCluster(t)
	c.args = []string{"--relay-idle-grace", relayGrace.String()}
	a, b, cn := c.addNode("relay-a"), c.addNode("relay-b"), c.addNode("relay-c")
	c.relayScenario(t, a, b, cn)
}

// TestClusterRelayNamespaces is TestClusterRelay with each node in a
// network namespace of its own on one bridge: the pipes go between the
// nodes' own addresses (--relay-ip defaults to --node-url's host).
func TestClusterRelayNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces, redis-server and three matinee processes")
	}
	l := newLAN(t)
	c := newClusterOn(t, l.subnet+".1")
	c.args = []string{"--relay-idle-grace", relayGrace.String()}
	c.peerIfaces = []string{l.bridge}
	ns := c.addLANNodes(l, "rns", 3)
	c.relayScenario(t, ns[0], ns[1], ns[2])
}

// relayGrace is the nodes' --relay-idle-grace in the relay tests.
const relayGrace = time.Second

func (c *cluster) relayScenario(t *testing.T, a, b, cn *node) {
	t.Helper()
	grace := relayGrace
	const roomID = "relay-party"
	c.publish(t, a, roomID)

	// B's three viewers arrive together: they share one pipe.
	onB := c.watchTogether(t, b, roomID, 3)
	onC := c.watch(t, cn, roomID)
	for _, v := range append(onB, onC) {
		v.playing(t, "relayed", 0, 0, 0, 15*time.Second)
	}
	// One pipe per edge node, whatever its viewers.
	c.waitMetric(t, a, pipesOut, 2, 5*time.Second)
	c.waitMetric(t, b, pipesIn, 1, 5*time.Second)
	c.waitMetric(t, cn, pipesIn, 1, 5*time.Second)
	c.waitMetric(t, a, pipesIn, 0, time.Second)
	c.waitMetric(t, b, `matinee_whep_sessions`, 3, 5*time.Second)
	c.waitMetric(t, a, `matinee_whep_sessions`, 0, time.Second)
	if got, ok, err := c.metric(b, `matinee_relay_packets_total{direction="in"}`); err != nil || !ok || got < 100 {
		t.Errorf("packets into B's edge: %v %v %v", got, ok, err)
	}

	// B dies: C plays on; A drops B's pipe once B's lease is gone.
	killed := time.Now()
	b.kill()
	vi, au, kf := onC.got()
	onC.playing(t, "after B's kill", vi, au, kf, 10*time.Second)
	c.waitMetric(t, a, pipesOut, 1, 25*time.Second)
	t.Logf("A dropped the dead B's pipe %s after the kill", time.Since(killed).Round(10*time.Millisecond))
	vi, au, kf = onC.got()
	onC.playing(t, "after A dropped B's pipe", vi, au, kf, 10*time.Second)

	// C's viewer leaves: the pipe stays for the grace, then goes.
	onC.leave(t)
	left := time.Now()
	c.waitMetric(t, cn, `matinee_whep_sessions`, 0, 5*time.Second)
	c.waitMetric(t, a, pipesOut, 0, 10*time.Second)
	gone := time.Since(left)
	c.waitMetric(t, cn, pipesIn, 0, 5*time.Second)
	t.Logf("C's pipe gone %s after its last viewer left (grace %s)", gone.Round(10*time.Millisecond), grace)
	if gone < grace {
		t.Errorf("C's pipe went %s after its last viewer left, before the grace %s", gone, grace)
	}
}

// TestClusterRelaySecondLevel: an origin A that sends one pipe at most
// (--relay-max-pipes 1). A WHEP viewer on B gets a pipe from A; one on C
// is served at C through a pipe from B's edge (A refuses C naming B: a
// second level), with video, keyframes and audio. B killed with -9: C's
// edge asks A again once B's record has run out, A gives it the slot of
// B's dead pipe, and the same viewer plays again (its session was never
// closed) within 15 s of the kill.
func TestClusterRelaySecondLevel(t *testing.T) {
	c := newCluster(t)
	c.args = []string{"--relay-idle-grace", relayGrace.String()}
	a := c.addNode("level-a", "--relay-max-pipes", "1")
	b, cn := c.addNode("level-b"), c.addNode("level-c")
	const roomID = "level-party"
	c.publish(t, a, roomID)

	onB := c.watch(t, b, roomID)
	onB.playing(t, "on B, piped from A", 0, 0, 0, 15*time.Second)
	c.waitMetric(t, a, pipesOut, 1, 5*time.Second)
	onC := c.watch(t, cn, roomID)
	onC.playing(t, "on C, piped from B", 0, 0, 0, 15*time.Second)
	for _, w := range []struct {
		n      *node
		sample string
		want   float64
	}{{a, pipesOut, 1}, {a, pipesIn, 0}, {b, pipesIn, 1}, {b, pipesOut, 1}, {cn, pipesIn, 1}, {cn, pipesOut, 0},
		{cn, `matinee_whep_sessions`, 1}, {a, `matinee_whep_sessions`, 0}} {
		c.waitMetric(t, w.n, w.sample, w.want, 5*time.Second)
	}
	if got, ok, err := c.metric(b, `matinee_relay_packets_total{direction="out"}`); err != nil || !ok || got < 100 {
		t.Errorf("packets B piped on to C: %v %v %v", got, ok, err)
	}

	// B dies: C's edge goes back to A, whose one pipe was B's.
	killed := time.Now()
	b.kill()
	vi, au, kf := onC.got()
	onC.playing(t, "on C after B's kill, piped from A", vi, au, kf, 15*time.Second)
	t.Logf("C's viewer played again %s after B's kill", time.Since(killed).Round(10*time.Millisecond))
	c.waitMetric(t, a, pipesOut, 1, 5*time.Second)
	c.waitMetric(t, cn, pipesIn, 1, 5*time.Second)
	c.waitMetric(t, cn, `matinee_whep_sessions`, 1, time.Second)
	vi, au, kf = onC.got()
	onC.playing(t, "on C, piped from A", vi, au, kf, 10*time.Second)
}
