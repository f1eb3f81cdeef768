package sfu_test

import (
	"github.com/matinee-dev/matinee/internal/testenv"
	"testing"
	"time"

	"github.com/pion/transport/v4/vnet"
	"github.com/pion/webrtc/v4"
)

// passiveClientAPI is clientAPI for a subscriber that answers the SFU's
// offer with a=setup:passive, making the SFU the DTLS client: a transport
// the SFU's own SRTP path cannot serve (srtpout.go), so pion sends.
func passiveClientAPI(t *testing.T, n *vnet.Net) *webrtc.API {
	t.Helper()
	return clientAPIWith(t, n, func(se *webrtc.SettingEngine) {
		if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOwnSRTPPath: a subscriber whose DTLS handshake the SFU served gets
// its media through the SFU's own SRTP path (keys recovered from the
// handshake, TWCC stamped by the SFU, batched sends), one that made the
// SFU the DTLS client through pion's. Both decrypt everything, and the
// bandwidth estimation fed by the own path's TWCC records climbs to the
// top layer as fast as pion's.
func TestOwnSRTPPath(t *testing.T) {
	rig := newSimulcastRig(t)
	own := newShapedSubscriberAPI(t, rig.wan, rig.router, rig.p, "own", "10.20.0.10", 8_000_000, clientAPI)
	defer own.close()
	viaPion := newShapedSubscriberAPI(t, rig.wan, rig.router, rig.p, "pion", "10.20.0.11", 8_000_000, passiveClientAPI)
	defer viaPion.close()
	if !waitFor(10*time.Second, func() bool { return own.tr.Connected() && viaPion.tr.Connected() }) {
		t.Fatal("subscribers did not connect")
	}
	if !own.tr.OwnSRTP() {
		t.Fatal("the active-DTLS subscriber is not on the SFU's own SRTP path")
	}
	if viaPion.tr.OwnSRTP() {
		t.Fatal("the passive-DTLS subscriber is on the own path, whose keys the SFU cannot know")
	}
	for _, s := range []*shapedSubscriber{own, viaPion} {
		d, ok := s.waitLayer(2, 30*time.Second)
		if !ok {
			t.Fatalf("%s: never reached the top layer (at %d)", s.name, s.layer())
		}
		t.Logf("%s: top layer after %v", s.name, d.Round(10*time.Millisecond))
	}
	own.resetSeqs()
	viaPion.resetSeqs()
	// Loss over 600 packets each (2-3 s of the top layer), at no less
	// than 100 a second.
	const want = 600
	start := time.Now()
	testenv.Within(want/100*time.Second, func() bool {
		_, a := own.loss()
		_, b := viaPion.loss()
		return a >= want && b >= want
	})
	took := time.Since(start)
	for _, s := range []*shapedSubscriber{own, viaPion} {
		loss, n := s.loss()
		if n < want {
			t.Fatalf("%s: only %d packets in %v", s.name, n, took.Round(time.Millisecond))
		}
		if loss > 0.01 {
			t.Fatalf("%s: %.2f%% of %d packets missing", s.name, loss*100, n)
		}
		t.Logf("%s: %d packets in %v, %.2f%% missing", s.name, n, took.Round(time.Millisecond), loss*100)
	}
	if p, _ := own.c.Stats(); p == 0 {
		t.Fatal("own-path consumer counted no packets")
	}
	// The own-path subscriber's feedback (the TWCC that took it to the
	// top layer) came in the SFU's own way too.
	if n := rig.worker.Snapshot().RTCPIntake; n < 50 {
		t.Fatalf("the intake served %d of the subscriber's RTCP packets", n)
	}
}
