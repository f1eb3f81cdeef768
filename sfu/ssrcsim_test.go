package sfu_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/sfu"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ssrcSimulcastOffer turns a pion publisher's rid-simulcast offer into
// what a GStreamer-style or munged legacy Chrome sender offers: the same
// encodings (and their RTX, paired by the FID groups pion already
// writes) declared by a=ssrc-group:SIM, lowest first, with no rid, no
// a=simulcast and no mid or rid header extensions. The a=ssrc lines are
// reordered top layer first: the SFU must take the layer order from the
// SIM group, not from the order of the lines.
func ssrcSimulcastOffer(t *testing.T, raw string, sender *webrtc.RTPSender) string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		t.Fatal(err)
	}
	if len(sd.MediaDescriptions) != 1 {
		t.Fatalf("want one m-section, got %d", len(sd.MediaDescriptions))
	}
	md := sd.MediaDescriptions[0]
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

	// Each layer's keyframe request must reach its own SSRC. Wait out the
	// coalescing interval first so the request goes out at once.
	for i := range ladder {
		time.Sleep(sfu.KeyframeInterval)
		before := rig.pub.plis[i].Load()
		rig.p.RequestKeyframe(i)
		if !waitFor(2*time.Second, func() bool { return rig.pub.plis[i].Load() > before }) {
			t.Fatalf("layer %d: no PLI reached the publisher", i)
		}
		if got := rig.pub.pliSSRC[i].Load(); got != uint32(encs[i].SSRC) {
			t.Errorf("layer %d: PLI for SSRC %d, want %d", i, got, encs[i].SSRC)
		}
	}
	t.Logf("PLIs per layer at the publisher: %d/%d/%d", rig.pub.plis[0].Load(), rig.pub.plis[1].Load(), rig.pub.plis[2].Load())

	// SSRC simulcast has no rids to pause: dynacast must leave every
	// encoding flowing even though nobody forwards layer 1.
	time.Sleep(3 * time.Second)
	for i := range ladder {
		if rig.pub.stopped[i].Load() {
			t.Errorf("layer %d paused by dynacast", i)
		}
		if l := rig.p.Layers()[i]; l.PausedByUs || !l.Active {
			t.Errorf("layer %d: paused %v active %v", i, l.PausedByUs, l.Active)
		}
	}
}
