package server_test

import (
	"bytes"
	"context"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server/servertest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/server"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start runs a server on loopback (servertest) and returns its /ws URL.
func start(t *testing.T, edit func(*config.Config)) (*server.Server, string) {
	t.Helper()
	s := servertest.Start(t, servertest.WithConfig(edit))
	return s.Server, s.WS
}

func dial(t *testing.T, url string, o testpeer.Options) *testpeer.Client {
	t.Helper()
	api, err := testpeer.NewAPI(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := testpeer.Dial(ctx, url, api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// subscriber is a receiving test client with its sinks by kind.
type subscriber struct {
	c        *testpeer.Client
	mu       sync.Mutex
	sinks    map[string]*testpeer.Sink
	subAt    time.Time
	gotTrack chan string
}

func newSubscriber(t *testing.T, ctx context.Context, url, name string, o testpeer.Options) *subscriber {
	t.Helper()
	return newSubscriberIn(t, ctx, url, "party", name, o)
}

func newSubscriberIn(t *testing.T, ctx context.Context, url, room, name string, o testpeer.Options) *subscriber {
	t.Helper()
	s := &subscriber{c: dial(t, url, o), sinks: map[string]*testpeer.Sink{}, gotTrack: make(chan string, 4)}
	s.c.OnTrack = func(tr *webrtc.TrackRemote, co testpeer.Consumer) {
		sink := testpeer.NewSink(tr)
		s.mu.Lock()
		s.sinks[tr.Kind().String()] = sink
		s.mu.Unlock()
		s.gotTrack <- tr.Kind().String()
	}
	ps, err := s.c.Join(ctx, room, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.c.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	s.subAt = time.Now()
	for _, p := range ps {
		if _, err := s.c.Subscribe(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *subscriber) sink(kind string) *testpeer.Sink {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sinks[kind]
}

// checkExact asserts that got is a run of sent, starting wherever the
// subscriber started: byte-identical payloads, in order, with continuous
// sequence numbers and timestamps that advance exactly as the source's.
// got returns the packets of kind received so far (none before its track).
func (s *subscriber) got(kind string) []testpeer.Packet {
	if k := s.sink(kind); k != nil {
		return k.Got()
	}
	return nil
}

func checkExact(t *testing.T, who string, sent, got []testpeer.Packet) {
	t.Helper()
	if len(got) < 20 {
		t.Fatalf("%s: only %d packets received", who, len(got))
	}
	start := -1
	for i, p := range sent {
		if bytes.Equal(p.Payload, got[0].Payload) {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("%s: first received payload was never sent", who)
	}
	for k := 1; k < len(got); k++ {
		i := start + k
		if i >= len(sent) {
			t.Fatalf("%s: received more packets than sent", who)
		}
		if !bytes.Equal(sent[i].Payload, got[k].Payload) {
			t.Fatalf("%s: packet %d differs from sent packet %d", who, k, i)
		}
		if got[k].Seq != got[k-1].Seq+1 {
			t.Fatalf("%s: sequence jumps from %d to %d at packet %d", who, got[k-1].Seq, got[k].Seq, k)
		}
		if got[k].TS-got[k-1].TS != sent[i].TS-sent[i-1].TS {
			t.Fatalf("%s: timestamp step %d, source had %d", who, got[k].TS-got[k-1].TS, sent[i].TS-sent[i-1].TS)
		}
		if got[k].Marker != sent[i].Marker {
			t.Fatalf("%s: marker bit differs at packet %d", who, k)
		}
	}
}

func TestPublishSubscribeEndToEnd(t *testing.T) {
	_, url := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	pub := dial(t, url, testpeer.Options{})
	if _, err := pub.Join(ctx, "party", "publisher"); err != nil {
		t.Fatal(err)
	}
	video, err := testpeer.NewVideoSource("screen-video", "screen")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := testpeer.NewAudioSource("screen-audio", "screen")
	if err != nil {
		t.Fatal(err)
	}
	vt := &testpeer.Track{Track: video.Track, AppData: map[string]any{"source": "screen"}}
	at := &testpeer.Track{Track: audio.Track, AppData: map[string]any{"source": "screen"}}
	producers, err := pub.Publish(ctx, vt, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(producers) != 2 || producers[0].AppData["source"] != "screen" {
		t.Fatalf("producers = %+v", producers)
	}
	go video.ServeRTCP(vt.Sender)
	go func() {
		for {
			if _, _, err := at.Sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	// Keyframes only every 10 s: a late joiner depends on its PLI reaching
	// the publisher.
	go func() { defer wg.Done(); video.Run(stop, 300) }()
	go func() { defer wg.Done(); audio.Run(stop) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	var dropped atomic.Int64
	subs := []*subscriber{
		newSubscriber(t, ctx, url, "s1", testpeer.Options{}),
		newSubscriber(t, ctx, url, "s2", testpeer.Options{}),
		newSubscriber(t, ctx, url, "lossy", testpeer.Options{InboundLoss: 0.05, Dropped: &dropped}),
	}
	// Media flows to all three before the late joiner comes.
	for _, s := range subs {
		waitPackets(t, s, "video", 60)
		waitPackets(t, s, "audio", 30)
	}

	// A late joiner: its first video must arrive within 1 s, which (with
	// keyframes 10 s apart) only a forwarded PLI makes possible.
	plisBefore := video.PLIs()
	late := newSubscriber(t, ctx, url, "late", testpeer.Options{})
	deadline := time.After(5 * time.Second)
	var firstVideo time.Time
	for firstVideo.IsZero() {
		select {
		case <-deadline:
			t.Fatal("late joiner got no video")
		case <-time.After(10 * time.Millisecond):
			if s := late.sink("video"); s != nil {
				if g := s.Got(); len(g) > 0 {
					firstVideo = g[0].At
				}
			}
		}
	}
	if d := firstVideo.Sub(late.subAt); d > time.Second {
		t.Errorf("late joiner's first keyframe after %v, want ≤ 1s", d)
	} else {
		t.Logf("late joiner's first keyframe after %v", d.Round(time.Millisecond))
	}
	if video.PLIs() <= plisBefore {
		t.Error("no PLI reached the publisher for the late joiner")
	}
	waitPackets(t, late, "video", 60)

	// The lossy subscriber: NACK/RTX must recover ≥ 99% of what was sent
	// after it started. Checked while the stream still flows, as a
	// viewer's would: pion's TrackRemote reads its repair stream only
	// between packets of the media stream, so a retransmission arriving
	// after the stream's last packet would never be read (that, not the
	// SFU, was the packet CI once found unrepaired 2-3 before the end).
	lossy := subs[2]
	sentSoFar := video.Sent()
	testenv.Within(5*time.Second, func() bool {
		got, total := recovered(sentSoFar, lossy.got("video"))
		return total > 0 && got == total
	})
	if dropped.Load() == 0 {
		t.Fatal("loss injection dropped nothing")
	}
	delivered, total := recovered(sentSoFar, lossy.sink("video").Got())
	if total == 0 {
		t.Fatal("lossy subscriber received no video")
	}
	ratio := float64(delivered) / float64(total)
	t.Logf("lossy subscriber: %d datagrams dropped, %d/%d video packets delivered (%.2f%%)", dropped.Load(), delivered, total, 100*ratio)
	if ratio < 0.99 {
		t.Errorf("NACK/RTX recovered %.2f%% of packets, want ≥ 99%%", 100*ratio)
	}

	close(stop)
	wg.Wait()
	sentV, sentA := video.Sent(), audio.Sent()
	// The last packets are a round trip away.
	testenv.Within(5*time.Second, func() bool {
		for _, s := range append(subs[:2:2], late) {
			if !caughtUp(sentV, s.got("video")) || !caughtUp(sentA, s.got("audio")) {
				return false
			}
		}
		return true
	})
	for _, s := range append(subs[:2:2], late) {
		checkExact(t, "video", sentV, s.sink("video").Got())
		checkExact(t, "audio", sentA, s.sink("audio").Got())
	}

	// The publisher leaves: every consumer closes and everyone is told.
	pub.Close()
	for _, s := range append(subs, late) {
		closed := 0
		var left, prodClosed bool
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		for closed < 2 || !left || prodClosed == false {
			ev, err := nextEvent(wctx, s.c)
			if err != nil {
				t.Fatalf("after publisher left: consumerClosed %d/2, peerLeft %v, producerClosed %v: %v", closed, left, prodClosed, err)
			}
			switch ev.Method {
			case "consumerClosed":
				closed++
			case "peerLeft":
				left = true
			case "producerClosed":
				prodClosed = true
			}
		}
		wcancel()
	}
}

// caughtUp reports whether the last packet sent has been received.
func caughtUp(sent, got []testpeer.Packet) bool {
	return len(sent) > 0 && len(got) > 0 && bytes.Equal(sent[len(sent)-1].Payload, got[len(got)-1].Payload)
}

// recovered counts, from the first of sent that got holds, how many of
// sent reached got, to the end of sent: with the stream still flowing,
// every one of them is a loss the receiver learns of and can NACK.
func recovered(sent, got []testpeer.Packet) (delivered, total int) {
	have := map[string]bool{}
	for _, p := range got {
		have[string(p.Payload)] = true
	}
	first := slices.IndexFunc(sent, func(p testpeer.Packet) bool { return have[string(p.Payload)] })
	if first < 0 {
		return 0, 0
	}
	for _, q := range sent[first:] {
		if have[string(q.Payload)] {
			delivered++
		}
	}
	return delivered, len(sent) - first
}

func nextEvent(ctx context.Context, c *testpeer.Client) (testpeer.Event, error) {
	select {
	case <-ctx.Done():
		return testpeer.Event{}, ctx.Err()
	case ev := <-c.Events:
		return ev, nil
	}
}
