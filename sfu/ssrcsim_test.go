package sfu_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/sfu"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v4/vnet"
	"github.com/pion/webrtc/v4"
)

// ssrcSimulcastOffer turns a pion publisher's rid-simulcast offer into
// what a GStreamer-style or munged legacy Chrome sender offers: the same
// encodings (and their RTX, paired by the FID groups pion already
// writes) declared by a=ssrc-group:SIM, lowest first, with no rid, no
// a=simulcast and no mid or rid header extensions. The a=ssrc lines are
// reordered top layer first: the SFU must take the layer order from the
// SIM group, not from the order of the lines. Other m-sections (audio
// added by a re-offer) pass unchanged.
func ssrcSimulcastOffer(t *testing.T, raw string, sender *webrtc.RTPSender) string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		t.Fatal(err)
	}
	var md *sdp.MediaDescription
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media == "video" {
			if md != nil {
				t.Fatal("want one video m-section")
			}
			md = m
		}
	}
	if md == nil {
		t.Fatal("no video m-section")
	}
	encs := sender.GetParameters().Encodings
	if len(encs) != 3 {
		t.Fatalf("want three encodings, got %d", len(encs))
	}
	owner := func(ssrc uint64) int {
		for i, e := range encs {
			if uint64(e.SSRC) == ssrc || uint64(e.RTX.SSRC) == ssrc {
				return i
			}
		}
		t.Fatalf("a=ssrc:%d belongs to no encoding", ssrc)
		return -1
	}
	var kept []sdp.Attribute
	perEnc := make([][]sdp.Attribute, len(encs))
	for _, a := range md.Attributes {
		switch a.Key {
		case "rid", "simulcast":
			continue
		case "extmap":
			if strings.Contains(a.Value, "sdes:mid") || strings.Contains(a.Value, "rtp-stream-id") {
				continue
			}
		case "ssrc":
			n, err := strconv.ParseUint(strings.Fields(a.Value)[0], 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			i := owner(n)
			perEnc[i] = append(perEnc[i], a)
			continue
		}
		kept = append(kept, a)
	}
	kept = append(kept, sdp.Attribute{Key: "ssrc-group", Value: fmt.Sprintf("SIM %d %d %d", encs[0].SSRC, encs[1].SSRC, encs[2].SSRC)})
	for i := len(perEnc) - 1; i >= 0; i-- {
		kept = append(kept, perEnc[i]...)
	}
	md.Attributes = kept
	out, err := sd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	offer := string(out)
	if strings.Contains(offer, "a=rid") || strings.Contains(offer, "a=simulcast") || strings.Count(offer, "a=ssrc-group:SIM ") != 1 || strings.Count(offer, "a=ssrc-group:FID ") != 3 {
		t.Fatalf("not an SSRC simulcast offer:\n%s", offer)
	}
	return offer
}

// TestSSRCSimulcast publishes the ladder as SSRC simulcast and checks that
// the SFU makes the SIM encodings the layers of one producer, in SIM
// order, that subscribers get the layer they should, and that a layer's
// keyframe request reaches that layer's SSRC.
func TestSSRCSimulcast(t *testing.T) {
	rig := newLadderRig(t, true)
	encs := rig.pub.sender.GetParameters().Encodings

	ls := rig.p.Layers()
	if len(ls) != 3 {
		t.Fatalf("%d layers, want 3: %+v", len(ls), ls)
	}
	for i, l := range ls {
		t.Logf("layer %d: ssrc %d (rtx %d) %dx%d %.0f fps %d kbit/s", i, encs[i].SSRC, encs[i].RTX.SSRC, l.Width, l.Height, l.FPS, l.Bitrate/1000)
		if l.Width != ladder[i].width || l.Height != ladder[i].height {
			t.Errorf("layer %d is %dx%d, want %dx%d", i, l.Width, l.Height, ladder[i].width, ladder[i].height)
		}
		if !l.Active || l.RID != "" {
			t.Errorf("layer %d: active %v rid %q, want active with no rid", i, l.Active, l.RID)
		}
	}

	capped := newShapedSubscriber(t, rig.wan, rig.router, rig.p, "capped", "10.20.0.21", 8_000_000)
	defer capped.close()
	capped.c.SetMaxLayer(0)
	full := newShapedSubscriber(t, rig.wan, rig.router, rig.p, "full", "10.20.0.22", 8_000_000)
	defer full.close()

	check := func(s *shapedSubscriber, layer int, within time.Duration) {
		t.Helper()
		start := time.Now()
		want := int32(ladder[layer].width)
		if !waitFor(within, func() bool { return s.layer() == layer && s.keyWidth.Load() == want }) {
			t.Fatalf("%s: layer %d, last keyframe %d wide; want layer %d, %d wide", s.name, s.layer(), s.keyWidth.Load(), layer, want)
		}
		t.Logf("%s: forwarding layer %d, keyframes %d wide, after %v", s.name, layer, want, time.Since(start).Round(time.Millisecond))
	}
	check(capped, 0, 10*time.Second)
	check(full, 2, 20*time.Second)

	// Each layer's keyframe request must reach its own SSRC (within the
	// coalescing interval of an earlier one, at its end).
	for i := range ladder {
		before := rig.pub.plis[i].Load()
		rig.p.RequestKeyframe(i)
		if !waitFor(sfu.DefaultKeyframeInterval+2*time.Second, func() bool { return rig.pub.plis[i].Load() > before }) {
			t.Fatalf("layer %d: no PLI reached the publisher", i)
		}
		if got := rig.pub.pliSSRC[i].Load(); got != uint32(encs[i].SSRC) {
			t.Errorf("layer %d: PLI for SSRC %d, want %d", i, got, encs[i].SSRC)
		}
	}
	t.Logf("PLIs per layer at the publisher: %d/%d/%d", rig.pub.plis[0].Load(), rig.pub.plis[1].Load(), rig.pub.plis[2].Load())

	// SSRC simulcast has no rids to pause: dynacast must leave every
	// encoding flowing even though nobody forwards layer 1.
	testenv.Hold(t, 3*time.Second, "every encoding flowing", func() (bool, string) {
		for i := range ladder {
			l := rig.p.Layers()[i]
			if rig.pub.stopped[i].Load() || l.PausedByUs || !l.Active {
				return false, fmt.Sprintf("layer %d: stopped at the publisher %v, paused %v, active %v", i, rig.pub.stopped[i].Load(), l.PausedByUs, l.Active)
			}
		}
		return true, ""
	})
}

// lossyUplink drops a share of the UDP chunks one host sends across a
// vnet router once switched on, and counts the RTP packets it lets
// through by SSRC: SRTP leaves the RTP header in the clear, so the wire
// shows which packets are retransmissions.
type lossyUplink struct {
	from  string
	share float64
	on    atomic.Bool
	mu    sync.Mutex
	sent  map[uint32]int
	// dropped counts the RTP packets dropped, by SSRC.
	dropped map[uint32]int
	lost    int
	total   int
}

func newLossyUplink(wan *vnet.Router, from string, share float64) *lossyUplink {
	u := &lossyUplink{from: from, share: share, sent: map[uint32]int{}, dropped: map[uint32]int{}}
	wan.AddChunkFilter(func(c vnet.Chunk) bool {
		if c.Network() != "udp" || !strings.HasPrefix(c.SourceAddr().String(), u.from+":") {
			return true
		}
		if !u.on.Load() {
			return true
		}
		drop := rand.Float64() < u.share
		b := c.UserData()
		var h rtp.Header
		// RTP, not RTCP (payload types 64-95 under rtcp-mux), DTLS or STUN.
		isRTP := len(b) >= 12 && b[0]>>6 == 2 && (b[1]&0x7f < 64 || b[1]&0x7f > 95)
		if isRTP {
			if _, err := h.Unmarshal(b); err != nil {
				isRTP = false
			}
		}
		u.mu.Lock()
		u.total++
		switch {
		case drop && isRTP:
			u.dropped[h.SSRC]++
			u.lost++
		case drop:
			u.lost++
		case isRTP:
			u.sent[h.SSRC]++
		}
		u.mu.Unlock()
		return !drop
	})
	return u
}

func (u *lossyUplink) count(ssrc uint32) (sent, dropped int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sent[ssrc], u.dropped[ssrc]
}

// seqSnapshot copies the sequence numbers a subscriber has received.
func (s *shapedSubscriber) seqSnapshot() map[uint16]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.seqs)
}

// repaired reports the share of the sequence numbers spanned by before
// (first to last) that the subscriber holds now, and that span: losses
// near the end of before have had time to be repaired.
func (s *shapedSubscriber) repaired(before map[uint16]bool) (float64, int) {
	_, span := missing(before, 0xffff)
	if span == 0 {
		return 0, 0
	}
	var first uint16
	for q := range before {
		first = q
		break
	}
	for q := range before {
		if (first-q)&0xffff < 0x8000 && q != first {
			first = q
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	got := 0
	for i := range span {
		if s.seqs[first+uint16(i)] {
			got++
		}
	}
	return float64(got) / float64(span), span
}

// TestSSRCSimulcastUpstreamLoss loses 5% of what an SSRC-simulcast
// publisher sends. The SFU must NACK every layer's SSRC, the publisher
// (pion's responder, RTX negotiated) resends on that layer's FID RTX
// SSRC, and subscribers of the lowest and the top layer must end up with
// at least 99% of their sequence numbers.
// maxRetransmissionsPerLoss bounds the RTX packets a publisher sends per
// lost packet: one, plus a retry when the retransmission is lost too (or
// is still in flight when the retry is due).
const maxRetransmissionsPerLoss = 1.5

func TestSSRCSimulcastUpstreamLoss(t *testing.T) {
	rig := newLadderRig(t, true)
	encs := rig.pub.sender.GetParameters().Encodings
	for i, e := range encs {
		if e.RTX.SSRC == 0 {
			t.Fatalf("layer %d has no RTX SSRC: RTX not negotiated", i)
		}
	}
	up := newLossyUplink(rig.wan, "10.20.0.2", 0.05)

	low := newShapedSubscriber(t, rig.wan, rig.router, rig.p, "low", "10.20.0.31", 8_000_000)
	defer low.close()
	low.c.SetMaxLayer(0)
	top := newShapedSubscriber(t, rig.wan, rig.router, rig.p, "top", "10.20.0.32", 8_000_000)
	defer top.close()
	if !waitFor(10*time.Second, func() bool { return low.layer() == 0 }) {
		t.Fatalf("low: layer %d, want 0", low.layer())
	}
	if !waitFor(20*time.Second, func() bool { return top.layer() == 2 }) {
		t.Fatalf("top: layer %d, want 2", top.layer())
	}

	var nacksBefore, rtxBefore [3]int
	for i := range encs {
		nacksBefore[i] = int(rig.pub.nacks[i].Load())
		rtxBefore[i], _ = up.count(uint32(encs[i].RTX.SSRC))
	}
	up.on.Store(true)
	low.resetSeqs()
	top.resetSeqs()
	// Lossy until every layer lost some packets and the lowest (30 a
	// second) has sent 300: about 10 s.
	lossyStart := time.Now()
	if !waitFor(30*time.Second, func() bool {
		for _, e := range encs {
			if _, lost := up.count(uint32(e.SSRC)); lost < 10 {
				return false
			}
		}
		_, n := low.loss()
		return n >= 300
	}) {
		t.Errorf("after %v of loss: fewer than 10 lost packets on some layer, or fewer than 300 at the low subscriber", time.Since(lossyStart).Round(time.Millisecond))
	}
	up.on.Store(false)
	lossyFor := time.Since(lossyStart)
	lowSeqs, topSeqs := low.seqSnapshot(), top.seqSnapshot()
	// Repairs of the last losses are a round trip or two away.
	waitFor(5*time.Second, func() bool {
		l, _ := low.repaired(lowSeqs)
		h, _ := top.repaired(topSeqs)
		return l >= 0.99 && h >= 0.99
	})

	up.mu.Lock()
	t.Logf("uplink: dropped %d of %d chunks (%.1f%%)", up.lost, up.total, 100*float64(up.lost)/float64(max(up.total, 1)))
	up.mu.Unlock()
	for i, e := range encs {
		nacks := int(rig.pub.nacks[i].Load()) - nacksBefore[i]
		rtx, _ := up.count(uint32(e.RTX.SSRC))
		rtx -= rtxBefore[i]
		sent, lost := up.count(uint32(e.SSRC))
		t.Logf("layer %d: %d of %d packets lost; %d NACKs for SSRC %d, %d RTX packets on SSRC %d", i, lost, sent+lost, nacks, rig.pub.nackSSRC[i].Load(), rtx, e.RTX.SSRC)
		if nacks == 0 {
			t.Errorf("layer %d: the SFU sent no NACK", i)
		} else if got := rig.pub.nackSSRC[i].Load(); got != uint32(e.SSRC) {
			t.Errorf("layer %d: NACK for SSRC %d, want %d", i, got, e.SSRC)
		}
		if rtx == 0 {
			t.Errorf("layer %d: no retransmission on its RTX SSRC %d", i, e.RTX.SSRC)
		}
		// The SFU stops asking once a repair arrives (sfu/nackgen); pion's
		// generator, which never saw repairs, asked for every lost packet
		// again every 100 ms, some twenty times over.
		if float64(rtx) > maxRetransmissionsPerLoss*float64(lost)+10 {
			t.Errorf("layer %d: %d retransmissions for %d lost packets, want ≤ %.1f each", i, rtx, lost, maxRetransmissionsPerLoss)
		}
	}
	for _, c := range []struct {
		s      *shapedSubscriber
		before map[uint16]bool
	}{{low, lowSeqs}, {top, topSeqs}} {
		got, span := c.s.repaired(c.before)
		raw, _ := missing(c.before, 0xffff)
		t.Logf("%s (layer %d): %.2f%% of %d packets received (%.2f%% missing before the last repairs)", c.s.name, c.s.layer(), 100*got, span, 100*raw)
		if span < 200 {
			t.Errorf("%s: only %d packets in %v", c.s.name, span, lossyFor.Round(time.Millisecond))
		}
		if got < 0.99 {
			t.Errorf("%s: %.2f%% of packets received, want ≥ 99%%", c.s.name, 100*got)
		}
	}
}

// TestSSRCSimulcastReoffer re-offers after media flows, once adding an
// audio m-section and once unchanged: pion restarts the receivers of the
// encodings it was not shown, so the SFU must restart them too, and the
// layers must keep flowing to subscribers without a freeze.
func TestSSRCSimulcastReoffer(t *testing.T) {
	// The subscribers' estimates are pinned to what their links carry:
	// what is tested is the re-offer, not bandwidth estimation. On the
	// in-process virtual network a stall of the busy, race-instrumented
	// machine is queueing delay, which cut estimates to a fraction of the
	// link (top off layer 2, low suspended) and left them to climb back
	// by probing for however long it takes; the shaped-link tests are
	// where estimation is judged.
	rig := newRig(t, false, true, sfu.WorkerConfig{InitialBitrate: 8_000_000, MinBitrate: 8_000_000})
	stalls := newStallMeter(t)
	low := newShapedSubscriber(t, rig.wan, rig.router, rig.p, "low", "10.20.0.41", 8_000_000)
	defer low.close()
	low.c.SetMaxLayer(0)
	top := newShapedSubscriber(t, rig.wan, rig.router, rig.p, "top", "10.20.0.42", 8_000_000)
	defer top.close()
	if !waitFor(10*time.Second, func() bool { return low.layer() == 0 }) {
		t.Fatalf("low: layer %d, want 0", low.layer())
	}
	if !waitFor(20*time.Second, func() bool { return top.layer() == 2 }) {
		t.Fatalf("top: layer %d, want 2", top.layer())
	}

	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "screen")
	if err != nil {
		t.Fatal(err)
	}
	reoffer := func(what string, wantAdded int) {
		t.Helper()
		pc := rig.pub.pc
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.SetLocalDescription(offer); err != nil {
			t.Fatal(err)
		}
		infos := map[string]sfu.TrackInfo{}
		for _, tr := range pc.GetTransceivers() {
			infos[tr.Mid()] = sfu.TrackInfo{}
		}
		answer, added, err := rig.pub.tr.Publish(ssrcSimulcastOffer(t, offer.SDP, rig.pub.sender), infos)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(added) != wantAdded {
			t.Fatalf("%s: %d producers added, want %d", what, len(added), wantAdded)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		at := time.Now()
		for _, s := range []*shapedSubscriber{low, top} {
			s.resetSeqs()
		}
		// Every layer must flow on: wait for 90 more frames (3 s) of
		// each at the SFU. A layer whose receiver was not restarted
		// never gets there.
		var sent0 [3]int64
		var got0 [3]uint64
		for i, l := range rig.p.Layers() {
			got0[i] = l.Frames
			sent0[i] = rig.pub.frames[i].Load()
		}
		flowing := func() bool {
			ls := rig.p.Layers()
			for i := range got0 {
				if len(ls) != 3 || ls[i].Frames < got0[i]+90 {
					return false
				}
			}
			return true
		}
		if !waitFor(20*time.Second, flowing) {
			t.Fatalf("%s: layers stopped flowing: %+v", what, rig.p.Layers())
		}
		// Everything the publisher sent since the re-offer must arrive
		// but what the restart itself may drop (500 ms, the freeze a
		// subscriber may see). Frames still in flight arrive later: wait
		// for them rather than guess how long a loaded machine takes.
		// The publisher's rate is whatever its ticker reached, not a
		// fixed 30 fps.
		var sent [3]int64
		for i := range sent {
			sent[i] = rig.pub.frames[i].Load() - sent0[i]
		}
		const restartLoss = 15
		caughtUp := func() bool {
			ls := rig.p.Layers()
			if len(ls) != 3 {
				return false
			}
			for i := range sent {
				if int64(ls[i].Frames-got0[i]) < sent[i]-restartLoss {
					return false
				}
			}
			return true
		}
		if !waitFor(10*time.Second, caughtUp) {
			for i, l := range rig.p.Layers() {
				t.Errorf("%s: layer %d: %d of the %d frames sent since the re-offer received, want all but %d", what, i, l.Frames-got0[i], sent[i], restartLoss)
			}
		}
		// Active is judged on the router's tick from the last second of
		// packets, which one stall of the machine can empty: a layer must
		// be active again, with its width, not at one given instant.
		if !waitFor(10*time.Second, func() bool {
			for i, l := range rig.p.Layers() {
				if !l.Active || l.Width != ladder[i].width {
					return false
				}
			}
			return true
		}) {
			for i, l := range rig.p.Layers() {
				t.Errorf("%s: layer %d active %v, %d wide; want active, %d wide", what, i, l.Active, l.Width, ladder[i].width)
			}
		}
		end := time.Now()
		for i, s := range []*shapedSubscriber{low, top} {
			want := 2 * i
			gap := s.longestGap(at, end)
			// A stall of the (busy, race-instrumented) machine holds up
			// frames at every stage it meets them, the publisher's ticker
			// included: only a freeze beyond those stalls is the SFU's.
			src := rig.pub.longestGap(want, at, end)
			stalled := stalls.total(at, end)
			if gap > stalled+500*time.Millisecond {
				t.Errorf("%s: %s froze for %v; the source stopped for %v, the process for %v in all", what, s.name, gap, src, stalled)
			}
			// Packets a stall made the receiver drop are NACKed and
			// resent: what counts is what is still missing once the
			// repairs of the window's last losses have had their round
			// trip, however long a busy machine makes it.
			seqs := s.seqSnapshot()
			raw, _ := missing(seqs, 0xffff)
			var got float64
			var span int
			waitFor(5*time.Second, func() bool { got, span = s.repaired(seqs); return got >= 0.99 })
			t.Logf("%s: %s on layer %d, longest freeze %v (source %v, process stalled %v), %.2f%% of %d packets missing (%.2f%% before repairs)",
				what, s.name, s.layer(), gap.Round(time.Millisecond), src.Round(time.Millisecond), stalled.Round(time.Millisecond), 100*(1-got), span, 100*raw)
			if got < 0.99 {
				resent, missed := s.c.Retransmits()
				t.Errorf("%s: %s lost %.2f%% of packets (the SFU resent %d on NACK, had %d NACKed no more)", what, s.name, 100*(1-got), resent, missed)
			}
		}
		// The re-offer must not move a consumer off its layer.
		for i, s := range []*shapedSubscriber{low, top} {
			if want := 2 * i; !waitFor(10*time.Second, func() bool { return s.layer() == want }) {
				t.Errorf("%s: %s on layer %d, want %d", what, s.name, s.layer(), want)
			}
		}
	}

	if _, err := rig.pub.pc.AddTrack(audio); err != nil {
		t.Fatal(err)
	}
	reoffer("audio added", 1)
	reoffer("unchanged", 0)
}
