package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestCandidateDuringAnswerDoesNotDeadlock: a candidate trickled while
// pion applies a subscriber's answer must not hold the transport's lock
// while it waits for pion: pion holds its own lock while it binds the
// consumers, and binding takes the transport's (ci20 hung on exactly
// that). The hooks put the candidate at that moment on purpose: inside
// Bind, before Bind takes the lock, and check that the candidate's path
// has let go of the transport's lock by the time it calls pion.
func TestCandidateDuringAnswerDoesNotDeadlock(t *testing.T) {
	r := newPlainRouter(t)
	in, err := r.NewPlainTransport(PlainTransportOptions{Owner: "ffmpeg", RTCPMux: true, Comedia: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := in.Produce(PlainProduceOptions{Kind: KindVideo, Codec: plainH264, PayloadType: 96})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	offers := make(chan string, 4)
	tr, err := r.NewRecvTransport(TransportOptions{Owner: "viewer", OnOffer: func(sdp string, _ []*Consumer) { offers <- sdp }})
	if err != nil {
		t.Fatal(err)
	}
	client, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	answer := func() {
		t.Helper()
		var offer string
		select {
		case offer = <-offers:
		case <-time.After(10 * time.Second):
			t.Fatal("no offer")
		}
		if err := client.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			t.Fatal(err)
		}
		a, err := client.CreateAnswer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.SetLocalDescription(a); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- tr.HandleAnswer(a.SDP) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("answer not applied in 10 s: deadlock")
		}
	}

	// First negotiation: the client's description is applied from then
	// on, so later candidates go to pion directly.
	if _, err := tr.Consume(p, false); err != nil {
		t.Fatal(err)
	}
	answer()

	mid := "0"
	var (
		once      sync.Once
		reachedPC = make(chan struct{})
		candDone  = make(chan error, 1)
	)
	testHookCandidateToPion = func(ct *Transport) {
		if ct != tr.Transport {
			return
		}
		// Others take the lock briefly; the bug held it until pion
		// returned, which it cannot while Bind waits.
		deadline := time.Now().Add(2 * time.Second)
		for !ct.mu.TryLock() {
			if time.Now().After(deadline) {
				panic("AddICECandidate calls pion with the transport's lock held: Bind, called by pion under its own lock, waits for it")
			}
			time.Sleep(time.Millisecond)
		}
		ct.mu.Unlock()
		close(reachedPC)
	}
	testHookBind = func(c *Consumer) {
		if c.transport != tr.Transport {
			return
		}
		once.Do(func() {
			go func() {
				candDone <- tr.AddICECandidate(&ICECandidate{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", SDPMid: &mid})
			}()
			<-reachedPC
		})
	}
	t.Cleanup(func() { testHookCandidateToPion, testHookBind = nil, nil })

	// A second consumer renegotiates; its answer binds it.
	if _, err := tr.Consume(p, false); err != nil {
		t.Fatal(err)
	}
	answer()
	select {
	case <-reachedPC:
	default:
		t.Fatal("no candidate reached pion while the answer was applied: the test did not test")
	}
	select {
	case err := <-candDone:
		if err != nil {
			t.Fatalf("candidate: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("candidate not added in 10 s")
	}
}
