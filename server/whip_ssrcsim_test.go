package server_test

import (
	"context"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/synth"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ssrcSimulcastSDP rewrites pion's rid-simulcast offer the way a
// GStreamer-style WHIP client writes it: the video encodings (and the
// FID groups pion already pairs their RTX with) named by an
// a=ssrc-group:SIM, lowest first, with no rid, no a=simulcast and no
// mid or rid header extensions in the video section.
func ssrcSimulcastSDP(t *testing.T, offer string, video *webrtc.RTPSender) string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		t.Fatal(err)
	}
	var ssrcs []string
	for _, e := range video.GetParameters().Encodings {
		ssrcs = append(ssrcs, fmt.Sprint(e.SSRC))
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" {
			continue
		}
		kept := md.Attributes[:0:0]
		for _, a := range md.Attributes {
			if a.Key == "rid" || a.Key == "simulcast" ||
				a.Key == "extmap" && (strings.Contains(a.Value, sdp.SDESMidURI) || strings.Contains(a.Value, sdp.SDESRTPStreamIDURI) || strings.Contains(a.Value, sdp.SDESRepairRTPStreamIDURI)) {
				continue
			}
			kept = append(kept, a)
		}
		md.Attributes = append(kept, sdp.Attribute{Key: "ssrc-group", Value: "SIM " + strings.Join(ssrcs, " ")})
	}
	out, err := sd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); strings.Contains(s, "a=rid") || strings.Count(s, "a=ssrc-group:FID ") != 3 {
		t.Fatalf("not an SSRC simulcast offer:\n%s", s)
	}
	return string(out)
}

// TestWHIPSSRCSimulcast publishes three VP8 layers over WHIP as SSRC
// simulcast, with packets that carry no mid or rid: the room's producer
// must have the three layers in SIM order, and a WHEP viewer must get
// video, up to the top layer.
func TestWHIPSSRCSimulcast(t *testing.T) {
	srv, url := start(t, nil)
	base := httpBase(url)
	key := srv.APIKey()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	pc := newPC(t)
	video, err := synth.NewVideo("video", "screen", synth.Simulcast3)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := video.AddTo(pc)
	if err != nil {
		t.Fatal(err)
	}
	audio, err := synth.NewAudio("audio", "screen")
	if err != nil {
		t.Fatal(err)
	}
	atr, err := pc.AddTransceiverFromTrack(audio.Track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := whip.Offer(ctx, nil, base+"/whip/sim?name=gst", key, ssrcSimulcastSDP(t, offerGathered(t, pc), vs))
	if err != nil {
		t.Fatalf("whip offer: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sess.Answer}); err != nil {
		t.Fatal(err)
	}
	// No UseExtensions: the layers are told apart by SSRC alone.
	stop := make(chan struct{})
	done := make(chan struct{}, 4)
	for _, f := range []func(){
		func() { video.ServeRTCP(vs) },
		func() { synth.DrainRTCP(atr.Sender()) },
		func() { video.Run(stop) },
		func() { audio.Run(stop) },
	} {
		go func() { f(); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		close(stop)
		_ = pc.Close()
		for range 4 {
			<-done
		}
	})

	rm, ok := srv.Rooms().Room("sim")
	if !ok {
		t.Fatal("room sim not created")
	}
	testenv.Eventually(t, 10*time.Second, "three active layers with their sizes", func() bool {
		for _, p := range rm.Media().Producers() {
			if p.Kind() != "video" {
				continue
			}
			ls := p.Layers()
			if len(ls) != 3 {
				return false
			}
			for i, l := range ls {
				if !l.Active || l.RID != "" || l.Width != synth.Simulcast3[i].Width {
					return false
				}
			}
			return true
		}
		return false
	})

	view := watchWHEP(t, ctx, base, "sim", key)
	testenv.Eventually(t, 10*time.Second, "WHEP video and audio", func() bool {
		return len(view.packets("video")) >= 90 && len(view.packets("audio")) >= 50
	})
	// Loopback has room for the top layer once the viewer's estimate
	// has climbed.
	topAt := time.Now()
	testenv.Eventually(t, 30*time.Second, "the top layer at the WHEP viewer", func() bool {
		return lastMedia(view.packets("video")).stamp.Layer == 2
	})
	t.Logf("WHEP viewer on the top layer after %v", time.Since(topAt).Round(time.Millisecond))
	pkts := view.packets("video")
	if err := continuous(pkts); err != nil {
		t.Errorf("WHEP video: %v", err)
	}
	var perLayer [3]int
	for _, p := range pkts {
		if p.ok && int(p.stamp.Layer) < len(perLayer) {
			perLayer[p.stamp.Layer]++
		}
	}
	t.Logf("WHEP viewer: %d video packets (by layer %v), %d audio", len(pkts), perLayer, len(view.packets("audio")))
}
