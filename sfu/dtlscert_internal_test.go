package sfu

import (
	"context"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/sfu/dtlskeys"
	"github.com/pion/webrtc/v4"
)

// fingerprint is the SHA-256 fingerprint of pc's DTLS certificate.
func fingerprint(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	cs := pc.GetConfiguration().Certificates
	if len(cs) != 1 {
		t.Fatalf("%d certificates, want 1", len(cs))
	}
	fps, err := cs[0].GetFingerprints()
	if err != nil {
		t.Fatal(err)
	}
	for _, fp := range fps {
		if fp.Algorithm == "sha-256" {
			return fp.Value
		}
	}
	t.Fatalf("no sha-256 fingerprint in %v", fps)
	return ""
}

// Every PeerConnection of a worker shows the worker's one certificate,
// which is replaced, for the PeerConnections made after, once it is
// within certRenewBefore of its expiry.
func TestDTLSCertificateSharedAndRenewed(t *testing.T) {
	w, err := NewWorker(context.Background(), WorkerConfig{UDPPort: 0, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var fps []string
	for _, dir := range []Direction{Send, Send, Recv} {
		var capt *dtlskeys.Capture
		if dir == Recv {
			capt = &dtlskeys.Capture{}
		}
		pc, _, err := w.newPeerConnection(dir, capt)
		if err != nil {
			t.Fatal(err)
		}
		fps = append(fps, fingerprint(t, pc))
		_ = pc.Close()
	}
	if fps[0] != fps[1] || fps[0] != fps[2] {
		t.Fatalf("fingerprints %v: want one certificate for every PeerConnection", fps)
	}

	w.pcMu.Lock()
	first := w.cert
	same, err := w.dtlsCertificate(first.Expires().Add(-certRenewBefore - time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := w.dtlsCertificate(first.Expires().Add(-certRenewBefore + time.Hour))
	w.pcMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if same != first {
		t.Fatal("certificate replaced more than certRenewBefore before its expiry")
	}
	if renewed == first {
		t.Fatal("certificate kept within certRenewBefore of its expiry")
	}
	pc, _, err := w.newPeerConnection(Send, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if fp := fingerprint(t, pc); fp == fps[0] {
		t.Fatal("a PeerConnection made after the renewal still has the old certificate")
	}
}
