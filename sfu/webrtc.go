package sfu

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/sfu/bwe"
	"github.com/matinee-dev/matinee/sfu/dtlskeys"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ICECandidate is a trickled ICE candidate, as in RTCIceCandidateInit.
type ICECandidate struct {
	Candidate        string
	SDPMid           *string
	SDPMLineIndex    *uint16
	UsernameFragment *string
}

// TransportOptions configures a new WebRTC transport. The callbacks are
// called from pion's goroutines and must not block.
type TransportOptions struct {
	// Owner identifies the peer; a transport never consumes producers of
	// the same owner.
	Owner string
	// OnICECandidate receives each local candidate, then nil when
	// gathering is complete.
	OnICECandidate func(*ICECandidate)
	// OnOffer receives every SDP offer of a RecvTransport, with the
	// consumers it carries; the client answers through HandleAnswer.
	OnOffer func(sdp string, consumers []*Consumer)
	// OnFailed is called once when the transport did not connect within
	// the worker's ConnectTimeout (first connection, or after a failure).
	OnFailed func(reason string)
}

// WebRTCTransport is what a SendTransport and a RecvTransport share: one
// PeerConnection, its ICE and DTLS, the connect timeout, and the SDP
// exchange's lock. It is the transport a protocol that speaks SDP and
// trickles ICE (WHIP, WHEP) holds.
type WebRTCTransport struct {
	*Transport
	cb TransportOptions
	pc *webrtc.PeerConnection

	// Under Transport.mu: pendingCa holds candidates trickled before the
	// client's description was applied; haveRemote is set (with them
	// taken) by flushCandidates once it was. Tracked here, not asked of
	// pion under t.mu: pion holds its own lock while applying an answer,
	// during which consumers bind and take t.mu (a candidate arriving then
	// deadlocked the two).
	pendingCa  []webrtc.ICECandidateInit
	haveRemote bool
	timer      *time.Timer
	failed     bool

	// negMu serialises the SDP exchange.
	negMu sync.Mutex
	// onConnect runs when the connection comes up, before it is marked
	// connected (a RecvTransport chooses its way out, srtpout.go).
	onConnect func()
}

// newWebRTCTransport makes the PeerConnection of a transport in router r;
// capt (receive transports) learns its DTLS keys.
func newWebRTCTransport(r *Router, dir Direction, opts TransportOptions, capt *dtlskeys.Capture) (*WebRTCTransport, error) {
	pc, est, err := r.w.newPeerConnection(dir, capt)
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	t := &WebRTCTransport{Transport: newTransport(r, dir, opts.Owner, dir.String()), cb: opts, pc: pc}
	t.writeRTCP = pc.WriteRTCP
	if e, ok := est.(*bwe.Estimator); ok {
		t.bwe = e
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if t.cb.OnICECandidate == nil {
			return
		}
		if c == nil {
			t.cb.OnICECandidate(nil)
			return
		}
		init := c.ToJSON()
		t.cb.OnICECandidate(&ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment})
	})
	pc.OnConnectionStateChange(t.onConnectionState)
	return t, nil
}

// register adds the transport to its router, or closes its
// PeerConnection if the router closed meanwhile.
func (t *WebRTCTransport) register() error {
	if err := t.Transport.register(); err != nil {
		_ = t.pc.Close()
		return err
	}
	return nil
}

func (t *WebRTCTransport) onConnectionState(s webrtc.PeerConnectionState) {
	t.log.Debug("connection state", "state", s.String())
	switch s {
	case webrtc.PeerConnectionStateConnected:
		if t.onConnect != nil {
			t.onConnect()
		}
		t.connected.Store(true)
		t.mu.Lock()
		if t.timer != nil {
			t.timer.Stop()
			t.timer = nil
		}
		cs := t.consumerList()
		t.mu.Unlock()
		for _, c := range cs {
			c.restart()
		}
	case webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateFailed:
		t.connected.Store(false)
		t.armTimer()
	}
}

// armTimer starts the connect timeout unless it runs already or the
// transport is connected.
func (t *WebRTCTransport) armTimer() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.timer != nil || t.connected.Load() {
		return
	}
	t.timer = time.AfterFunc(t.router.w.cfg.ConnectTimeout, func() {
		t.mu.Lock()
		fire := !t.closed && !t.connected.Load() && !t.failed
		t.timer = nil
		if fire {
			t.failed = true
		}
		t.mu.Unlock()
		if fire && t.cb.OnFailed != nil {
			t.log.Info("transport did not connect in time", "timeout", t.router.w.cfg.ConnectTimeout)
			t.cb.OnFailed(fmt.Sprintf("ICE/DTLS did not complete within %s", t.router.w.cfg.ConnectTimeout))
		}
	})
}

// fail reports the transport as failed, once.
func (t *WebRTCTransport) fail(reason string) {
	t.mu.Lock()
	fire := !t.closed && !t.failed
	t.failed = true
	t.mu.Unlock()
	if fire && t.cb.OnFailed != nil {
		t.cb.OnFailed(reason)
	}
}

// AddICECandidate adds a remote candidate; nil (end of candidates) is
// accepted and ignored. Candidates that arrive before the remote
// description are kept until it is set.
func (t *WebRTCTransport) AddICECandidate(c *ICECandidate) error {
	if c == nil || c.Candidate == "" {
		return nil
	}
	init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	if !t.haveRemote {
		t.pendingCa = append(t.pendingCa, init)
		t.mu.Unlock()
		return nil
	}
	t.mu.Unlock()
	if h := testHookCandidateToPion; h != nil {
		h(t.Transport)
	}
	if err := t.pc.AddICECandidate(init); err != nil {
		return fmt.Errorf("add ice candidate: %w", err)
	}
	return nil
}

// Test hooks (nil outside tests) at the two ends of a lock-order
// hazard: a candidate going to pion, and a consumer binding inside pion.
var (
	testHookCandidateToPion func(*Transport)
	testHookBind            func(*Consumer)
)

// flushCandidates is called after each client description is applied:
// it adds what was trickled before, and lets later candidates go to pion
// directly.
func (t *WebRTCTransport) flushCandidates() {
	t.mu.Lock()
	pend := t.pendingCa
	t.pendingCa = nil
	t.haveRemote = true
	t.mu.Unlock()
	for _, c := range pend {
		if err := t.pc.AddICECandidate(c); err != nil {
			t.log.Debug("buffered candidate rejected", "err", err)
		}
	}
}

// stopTimer stops the connect timeout, when the transport closes.
func (t *WebRTCTransport) stopTimer() {
	t.mu.Lock()
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.mu.Unlock()
}

// closePC closes the PeerConnection, when the transport closes.
func (t *WebRTCTransport) closePC() {
	if err := t.pc.Close(); err != nil {
		t.log.Debug("close peer connection", "err", err)
	}
}

// GatheredLocalDescription waits, bounded by ctx, until the transport has
// gathered all its ICE candidates and returns its local description with
// them in it: what a WHIP client, which cannot receive trickled
// candidates, needs as its answer.
func (t *WebRTCTransport) GatheredLocalDescription(ctx context.Context) (string, error) {
	if t.pc == nil {
		return "", fmt.Errorf("transport %s has no peer connection: %w", t.id, ErrInvalidState)
	}
	select {
	case <-webrtc.GatheringCompletePromise(t.pc):
	case <-ctx.Done():
		return "", fmt.Errorf("gather ice candidates: %w", ctx.Err())
	}
	ld := t.pc.LocalDescription()
	if ld == nil {
		return "", fmt.Errorf("transport %s has no local description: %w", t.id, ErrInvalidState)
	}
	return ld.SDP, nil
}

// RemoteICEUfrag returns the ICE username fragment of the client's
// current description, to tell trickled candidates from an ICE restart.
func (t *WebRTCTransport) RemoteICEUfrag() string {
	rd := t.pc.RemoteDescription()
	if rd == nil {
		return ""
	}
	// Parse a copy: rd.Unmarshal would cache the result inside the
	// PeerConnection's own description while pion reads it.
	parsed := &sdp.SessionDescription{}
	if err := parsed.UnmarshalString(rd.SDP); err != nil {
		return ""
	}
	if v, ok := parsed.Attribute("ice-ufrag"); ok {
		return v
	}
	for _, md := range parsed.MediaDescriptions {
		if v, ok := md.Attribute("ice-ufrag"); ok {
			return v
		}
	}
	return ""
}
