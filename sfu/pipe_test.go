package sfu_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/sfu"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/transport/v4/vnet"
	"github.com/pion/webrtc/v4"
)

// Pipe tests: the simulcast rig's worker is the origin (10.20.0.1, with a
// VP8 simulcast publisher and an Opus one); a second worker on the same
// virtual WAN (10.20.0.3) is the edge, its router fed by a pipe, and
// pion subscribers watch there.

// audioPublisher sends Opus-sized RTP every 20 ms.
type audioPublisher struct {
	pc   *webrtc.PeerConnection
	stop chan struct{}
	wg   sync.WaitGroup
}

func publishAudio(t *testing.T, router *sfu.Router, api *webrtc.API) (*audioPublisher, *sfu.Producer) {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "screen")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	str, offer := sendTransport(t, router, pc)
	mid := pc.GetTransceivers()[0].Mid()
	answer, ps, err := str.Publish(offer.SDP, map[string]sfu.TrackInfo{mid: {AppData: map[string]any{"source": "screen-audio"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	ap := &audioPublisher{pc: pc, stop: make(chan struct{})}
	ap.wg.Add(1)
	go func() {
		defer ap.wg.Done()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		var seq uint16
		var ts uint32
		for {
			select {
			case <-ap.stop:
				return
			case <-tk.C:
			}
			seq++
			ts += 960
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: make([]byte, 80)})
		}
	}()
	return ap, ps[0]
}

func (ap *audioPublisher) close() {
	close(ap.stop)
	_ = ap.pc.Close()
	ap.wg.Wait()
}

// pipeRig is the simulcast rig plus audio, an edge worker and a pipe.
type pipeRig struct {
	*simulcastRig
	audio      *sfu.Producer
	edgeWorker *sfu.Worker
	edge       *sfu.Router
	out, in    *sfu.PipeTransport
	// video and sound are the edge's copies of the rig's producers.
	video, sound *sfu.Producer
	descs        map[string]sfu.PipedProducer
}

func newPipeRig(t *testing.T) *pipeRig {
	t.Helper()
	rig := newSimulcastRig(t)
	pubNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.20.0.4"}})
	if err != nil {
		t.Fatal(err)
	}
	edgeNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.20.0.3"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*vnet.Net{pubNet, edgeNet} {
		if err := rig.wan.AddNet(n); err != nil {
			t.Fatal(err)
		}
	}
	pr := &pipeRig{simulcastRig: rig, descs: map[string]sfu.PipedProducer{}}
	var ap *audioPublisher
	ap, pr.audio = publishAudio(t, rig.router, clientAPI(t, pubNet))
	w, err := sfu.NewWorker(context.Background(), sfu.WorkerConfig{Net: edgeNet, InitialBitrate: 300_000})
	if err != nil {
		t.Fatal(err)
	}
	pr.edgeWorker = w
	if pr.edge, err = w.NewRouter("edge"); err != nil {
		t.Fatal(err)
	}
	toEdge, toOrigin := sfu.NewPipeKey(), sfu.NewPipeKey()
	pr.in, err = pr.edge.AcceptPipe(context.Background(), sfu.PipeOptions{Listen: "10.20.0.3:0", SendKey: toOrigin, RecvKey: toEdge})
	if err != nil {
		t.Fatal(err)
	}
	// The control plane's part, in process: descriptions to Produce.
	var mu sync.Mutex
	var made []*sfu.Producer
	pr.out, err = rig.router.PipeTo(context.Background(), sfu.PipeOptions{Listen: "10.20.0.1:0", Remote: pr.in.LocalAddr(), SendKey: toEdge, RecvKey: toOrigin,
		OnProducer: func(d sfu.PipedProducer) {
			p, err := pr.in.Produce(d)
			if err != nil {
				t.Errorf("produce %s at the edge: %v", d.ID, err)
				return
			}
			mu.Lock()
			pr.descs[d.ID] = d
			made = append(made, p)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, p := range made {
		if p.Kind() == sfu.KindVideo {
			pr.video = p
		} else {
			pr.sound = p
		}
	}
	mu.Unlock()
	if pr.video == nil || pr.sound == nil {
		t.Fatalf("the edge got %d producers, want the video and the audio", len(made))
	}
	t.Cleanup(func() {
		pr.out.Close()
		pr.in.Close()
		ap.close()
		pr.edge.Close()
		_ = w.Close()
	})
	return pr
}

// TestPipeCarriesSimulcastAndAudio: subscribers on the edge get the
// publisher's video and audio through the pipe, each the layer its own
// link carries, chosen by the edge's allocator.
func TestPipeCarriesSimulcastAndAudio(t *testing.T) {
	rig := newPipeRig(t)
	if mime, _ := rig.video.Codec(); mime != webrtc.MimeTypeVP8 {
		t.Errorf("edge video codec %s, want VP8", mime)
	}
	if mime, _ := rig.sound.Codec(); mime != webrtc.MimeTypeOpus {
		t.Errorf("edge audio codec %s, want Opus", mime)
	}
	if src := rig.video.AppData().(map[string]any)["source"]; src != "screen" {
		t.Errorf("edge video appData source %v, want screen", src)
	}
	if d := rig.descs[rig.p.ID()]; d.Priority != 2 || len(d.Layers) != 3 {
		t.Errorf("piped video described with priority %d and %d layers, want 2 and 3", d.Priority, len(d.Layers))
	}
	if rig.video.Owner() != rig.p.Owner() {
		t.Errorf("edge video owner %q, want %q", rig.video.Owner(), rig.p.Owner())
	}
	phone := newShapedSubscriber(t, rig.wan, rig.edge, rig.video, "phone", "10.20.0.10", 400_000)
	defer phone.close()
	laptop := newShapedSubscriber(t, rig.wan, rig.edge, rig.video, "laptop", "10.20.0.11", 6_000_000)
	defer laptop.close()
	ears := newShapedSubscriber(t, rig.wan, rig.edge, rig.sound, "ears", "10.20.0.12", 6_000_000)
	defer ears.close()

	if d, ok := laptop.waitLayer(2, 30*time.Second); !ok {
		t.Fatalf("6 Mbit/s on the edge: not on f after %v (layer %d)", d, laptop.layer())
	}
	if d, ok := phone.waitLayer(0, 10*time.Second); !ok {
		t.Fatalf("400 kbit/s on the edge: not on q after %v (layer %d)", d, phone.layer())
	}
	for i, l := range rig.video.Layers() {
		t.Logf("edge layer %d: %s %dx%d %.0f fps %d kbit/s", i, l.RID, l.Width, l.Height, l.FPS, l.Bitrate/1000)
		// A layer nobody on the edge watched may have had no keyframe
		// to tell its size.
		if l.RID != ladder[i].rid || (l.Width != ladder[i].width && (l.Width != 0 || i != 1)) {
			t.Errorf("edge layer %d: rid %q width %d, want %q %d", i, l.RID, l.Width, ladder[i].rid, ladder[i].width)
		}
	}
	if !waitFor(5*time.Second, func() bool {
		ears.mu.Lock()
		defer ears.mu.Unlock()
		return len(ears.seqs) >= 50
	}) {
		t.Fatal("the edge's audio subscriber got fewer than 50 packets in 5 s")
	}
	laptop.mu.Lock()
	frames := len(laptop.frames)
	laptop.mu.Unlock()
	st := rig.out.Stats()
	t.Logf("laptop frames %d; origin sent %d packets on the pipe, edge received %d", frames, st.PacketsSent, rig.in.Stats().PacketsReceived)
	if frames < 10 {
		t.Errorf("laptop got %d frames", frames)
	}
}

// TestPipeNackRecoversDrop: a video packet lost on the pipe is asked for
// by the edge and sent again by the origin from its packet cache.
func TestPipeNackRecoversDrop(t *testing.T) {
	rig := newPipeRig(t)
	sub := newShapedSubscriber(t, rig.wan, rig.edge, rig.video, "laptop", "10.20.0.11", 6_000_000)
	defer sub.close()
	if _, ok := sub.waitLayer(0, 10*time.Second); !ok && sub.layer() < 0 {
		t.Fatalf("the edge subscriber never got video")
	}
	video := map[uint32]bool{}
	for _, l := range rig.descs[rig.p.ID()].Layers {
		video[l.SSRC] = true
	}
	from, to := rig.out.LocalAddr(), rig.in.LocalAddr()
	var mu sync.Mutex
	var dropped *rtp.Header
	var again atomic.Bool
	rig.wan.AddChunkFilter(func(c vnet.Chunk) bool {
		src, ok1 := c.SourceAddr().(*net.UDPAddr)
		dst, ok2 := c.DestinationAddr().(*net.UDPAddr)
		if !ok1 || !ok2 || src.AddrPort() != from || dst.AddrPort() != to {
			return true
		}
		var h rtp.Header
		b := c.UserData()
		if len(b) < 2 || (b[1] >= 192 && b[1] <= 223) || func() bool { _, err := h.Unmarshal(b); return err != nil }() || !video[h.SSRC] {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		if dropped == nil {
			dropped = &h
			return false
		}
		if h.SSRC == dropped.SSRC && h.SequenceNumber == dropped.SequenceNumber {
			again.Store(true)
		}
		return true
	})
	if !waitFor(5*time.Second, again.Load) {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("packet %+v dropped on the pipe never came again (edge %+v, origin %+v)", dropped, rig.in.Stats(), rig.out.Stats())
	}
	in, out := rig.in.Stats(), rig.out.Stats()
	t.Logf("edge asked for %d packets, origin sent %d again", in.NACKs, out.Retransmits)
	if in.NACKs == 0 || out.Retransmits == 0 {
		t.Errorf("recovered without NACK and retransmission? edge %+v origin %+v", in, out)
	}
}

// TestPipeKeyframeRequestsCoalesced: 20 keyframe requests a second from
// viewers on the edge reach the publisher as at most one per layer per
// second.
func TestPipeKeyframeRequestsCoalesced(t *testing.T) {
	rig := newPipeRig(t)
	subs := []*shapedSubscriber{
		newShapedSubscriber(t, rig.wan, rig.edge, rig.video, "a", "10.20.0.11", 6_000_000),
		newShapedSubscriber(t, rig.wan, rig.edge, rig.video, "b", "10.20.0.12", 6_000_000),
	}
	for _, s := range subs {
		defer s.close()
		if !waitFor(10*time.Second, func() bool { return s.layer() >= 0 }) {
			t.Fatalf("%s never got video", s.name)
		}
	}
	var before [3]int32
	for i := range before {
		before[i] = rig.pub.plis[i].Load()
	}
	start := time.Now()
	const window = 4 * time.Second
	tk := time.NewTicker(100 * time.Millisecond)
	sent := 0
	for time.Since(start) < window {
		<-tk.C
		for _, s := range subs {
			s.mu.Lock()
			ssrc := s.ssrc
			s.mu.Unlock()
			if err := s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err == nil {
				sent++
			}
		}
	}
	tk.Stop()
	elapsed := time.Since(start)
	total := int32(0)
	limit := int32(elapsed/time.Second) + 1
	for i := range before {
		n := rig.pub.plis[i].Load() - before[i]
		total += n
		t.Logf("layer %d: %d keyframe requests at the publisher in %v", i, n, elapsed.Round(time.Millisecond))
		if n > limit {
			t.Errorf("layer %d: %d keyframe requests in %v, want ≤ %d", i, n, elapsed.Round(time.Millisecond), limit)
		}
	}
	t.Logf("%d PLIs sent by the edge's viewers; the pipe carried %d", sent, rig.in.Stats().KeyframeRequests)
	if sent < 30 || total == 0 {
		t.Errorf("%d PLIs sent, %d reached the publisher: the test did not test", sent, total)
	}
}

// TestPipeClose: a producer closed at the origin closes its copy at the
// edge (the origin's goodbye); closing the edge's pipe closes the rest,
// and a pipe closes with its context.
func TestPipeClose(t *testing.T) {
	rig := newPipeRig(t)
	soundClosed, videoClosed := make(chan struct{}), make(chan struct{})
	rig.sound.OnClose(func() { close(soundClosed) })
	rig.video.OnClose(func() { close(videoClosed) })
	rig.audio.Close()
	select {
	case <-soundClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("the edge's audio producer still open 5 s after the origin's closed")
	}
	if _, err := rig.edge.Producer(rig.sound.ID()); err == nil {
		t.Error("the closed audio producer is still in the edge router")
	}
	rig.in.Close()
	select {
	case <-videoClosed:
	default:
		t.Fatal("closing the edge's pipe left its video producer open")
	}
	if n := len(rig.edge.Producers()); n != 0 {
		t.Errorf("%d producers left in the edge router", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	p, err := rig.edge.AcceptPipe(ctx, sfu.PipeOptions{Listen: "10.20.0.3:0", SendKey: sfu.NewPipeKey(), RecvKey: sfu.NewPipeKey()})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	p.OnClose(func() { close(closed) })
	cancel()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("pipe still open 5 s after its context ended")
	}
	// A router closes its pipes with itself.
	last, err := rig.edge.AcceptPipe(context.Background(), sfu.PipeOptions{Listen: "10.20.0.3:0", SendKey: sfu.NewPipeKey(), RecvKey: sfu.NewPipeKey()})
	if err != nil {
		t.Fatal(err)
	}
	lastClosed := false
	last.OnClose(func() { lastClosed = true })
	rig.edge.Close()
	if !lastClosed {
		t.Error("closing the edge router left its pipe open")
	}
	if _, err := rig.edge.AcceptPipe(context.Background(), sfu.PipeOptions{Listen: "10.20.0.3:0", SendKey: sfu.NewPipeKey(), RecvKey: sfu.NewPipeKey()}); err == nil {
		t.Error("AcceptPipe on a closed router: no error")
	}
	if _, err := rig.router.PipeTo(context.Background(), sfu.PipeOptions{SendKey: sfu.NewPipeKey(), RecvKey: sfu.NewPipeKey()}); err == nil {
		t.Error("PipeTo without a remote address: no error")
	}
	if _, err := rig.router.PipeTo(context.Background(), sfu.PipeOptions{Remote: rig.in.LocalAddr(), SendKey: sfu.PipeKey{Key: []byte{1}}, RecvKey: sfu.NewPipeKey()}); err == nil {
		t.Error("PipeTo with a 1-byte key: no error")
	}
}

// TestPipeDynacast: the origin's publisher stops the layers no viewer on
// the edge needs, and resumes one when a viewer there wants it.
func TestPipeDynacast(t *testing.T) {
	rig := newPipeRig(t)
	phone := newShapedSubscriber(t, rig.wan, rig.edge, rig.video, "phone", "10.20.0.10", 400_000)
	defer phone.close()
	if _, ok := phone.waitLayer(0, 10*time.Second); !ok {
		t.Fatalf("400 kbit/s on the edge: not on q (layer %d)", phone.layer())
	}
	// Two holds (the edge's, then the origin's) and some ticks.
	if !waitFor(15*time.Second, func() bool {
		return rig.pub.stopped[1].Load() && rig.pub.stopped[2].Load() && !rig.pub.stopped[0].Load()
	}) {
		t.Fatalf("publisher still sends layers nobody needs: stopped %v %v %v", rig.pub.stopped[0].Load(), rig.pub.stopped[1].Load(), rig.pub.stopped[2].Load())
	}
	laptop := newShapedSubscriber(t, rig.wan, rig.edge, rig.video, "laptop", "10.20.0.11", 6_000_000)
	defer laptop.close()
	if d, ok := laptop.waitLayer(2, 30*time.Second); !ok {
		t.Fatalf("6 Mbit/s on the edge: not on f after %v (layer %d, publisher stopped f: %v)", d, laptop.layer(), rig.pub.stopped[2].Load())
	}
	if rig.pub.stopped[2].Load() {
		t.Error("edge viewer on f while the publisher is told to stop f")
	}
}

// TestPipeChain: an edge's producers can be piped on (origin → relay node
// → edge, the second level for an origin that would feed too many nodes):
// a viewer two pipes away gets the top layer, and its keyframe requests
// still reach the publisher at most once per layer per second.
func TestPipeChain(t *testing.T) {
	rig := newPipeRig(t)
	farNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.20.0.5"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rig.wan.AddNet(farNet); err != nil {
		t.Fatal(err)
	}
	w, err := sfu.NewWorker(context.Background(), sfu.WorkerConfig{Net: farNet, InitialBitrate: 300_000})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close() }()
	far, err := w.NewRouter("far")
	if err != nil {
		t.Fatal(err)
	}
	down, up := sfu.NewPipeKey(), sfu.NewPipeKey()
	in, err := far.AcceptPipe(context.Background(), sfu.PipeOptions{Listen: "10.20.0.5:0", SendKey: up, RecvKey: down})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var video *sfu.Producer
	out, err := rig.edge.PipeTo(context.Background(), sfu.PipeOptions{Listen: "10.20.0.3:0", Remote: in.LocalAddr(), SendKey: down, RecvKey: up,
		OnProducer: func(d sfu.PipedProducer) {
			p, err := in.Produce(d)
			if err != nil {
				t.Errorf("produce two pipes away: %v", err)
			} else if p.Kind() == sfu.KindVideo {
				video = p
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if video == nil {
		t.Fatal("no video two pipes away")
	}
	sub := newShapedSubscriber(t, rig.wan, far, video, "far", "10.20.0.13", 6_000_000)
	defer sub.close()
	// On f for a second on end: the first keyframe forwarded can be f's
	// before the allocator has chosen, and the subscriber's keyframe
	// requests go to the layer its consumer is on (q, a moment later, in
	// 1 of 6 runs: no request reached f).
	var onSince time.Time
	onF := func() bool {
		if sub.layer() != 2 {
			onSince = time.Time{}
			return false
		}
		if onSince.IsZero() {
			onSince = time.Now()
		}
		return time.Since(onSince) >= time.Second
	}
	if !waitFor(30*time.Second, onF) {
		t.Fatalf("two pipes away at 6 Mbit/s: not on f for a second within 30 s (layer %d)", sub.layer())
	}
	before := rig.pub.plis[2].Load()
	start := time.Now()
	tk := time.NewTicker(50 * time.Millisecond)
	for time.Since(start) < 3*time.Second {
		<-tk.C
		_ = sub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: sub.ssrcNow()}})
	}
	tk.Stop()
	n := rig.pub.plis[2].Load() - before
	limit := int32(time.Since(start)/time.Second) + 1
	t.Logf("%d keyframe requests for f at the publisher in %v from 20/s two pipes away", n, time.Since(start).Round(time.Millisecond))
	if n == 0 || n > limit {
		t.Errorf("%d keyframe requests for f at the publisher, want 1 to %d", n, limit)
	}
}

func (s *shapedSubscriber) ssrcNow() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ssrc
}
