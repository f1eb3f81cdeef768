package sfu

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
)

// The offers below are GStreamer 1.22 webrtcbin's with
// bundle-policy=max-bundle (internal/interop/gstwebrtc.py made them): the
// audio section is "m=audio 0" with its mid in the BUNDLE group.
func gstOffer(t *testing.T, name string, bundleOnly bool) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	offer := string(b)
	if !strings.Contains(offer, "\r\nm=audio 0 ") || !strings.Contains(offer, "a=group:BUNDLE video0 audio1") {
		t.Fatalf("%s is not a max-bundle offer with a port-0 audio section", name)
	}
	if !bundleOnly {
		// GStreamer also writes it without a=bundle-only.
		offer = strings.ReplaceAll(offer, "a=bundle-only\r\n", "")
	}
	return offer
}

func TestParseOfferBundledPortZero(t *testing.T) {
	for _, bundleOnly := range []bool{true, false} {
		_, sections, err := parseOffer(gstOffer(t, "gst-whip-offer.sdp", bundleOnly))
		if err != nil {
			t.Fatal(err)
		}
		if len(sections) != 2 {
			t.Fatalf("bundle-only=%v: %d sections, want 2", bundleOnly, len(sections))
		}
		for _, ms := range sections {
			if !ms.sending {
				t.Errorf("bundle-only=%v: %s section %s taken as not sending", bundleOnly, ms.kind, ms.mid)
			}
		}
	}
	// Outside the bundle, port 0 still turns a section off.
	unbundled := strings.Replace(gstOffer(t, "gst-whip-offer.sdp", false), "a=group:BUNDLE video0 audio1", "a=group:BUNDLE video0", 1)
	_, sections, err := parseOffer(unbundled)
	if err != nil {
		t.Fatal(err)
	}
	if sections[0].sending != true || sections[1].sending != false {
		t.Errorf("unbundled port 0: sending video=%v audio=%v, want true false", sections[0].sending, sections[1].sending)
	}
}

// TestViewerAnswersBundledPortZero: a WHEP viewer's port-0 audio section
// in the BUNDLE group is answered as a live, sending audio section.
func TestViewerAnswersBundledPortZero(t *testing.T) {
	r := newPlainRouter(t)
	for _, bundleOnly := range []bool{true, false} {
		v, err := r.NewViewer(ViewerOptions{Owner: "gst"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		answer, err := v.Answer(ctx, gstOffer(t, "gst-whep-offer.sdp", bundleOnly))
		cancel()
		if err != nil {
			t.Fatalf("bundle-only=%v: %v", bundleOnly, err)
		}
		if audio, video := v.Kinds(); !audio || !video {
			t.Errorf("bundle-only=%v: viewer receives audio=%v video=%v, want both", bundleOnly, audio, video)
		}
		var sd sdp.SessionDescription
		if err := sd.UnmarshalString(answer); err != nil {
			t.Fatal(err)
		}
		for _, md := range sd.MediaDescriptions {
			mid, _ := md.Attribute("mid")
			if _, ok := md.Attribute("sendonly"); !ok {
				t.Errorf("bundle-only=%v: answer's section %s is not sendonly:\n%s", bundleOnly, mid, answer)
			}
			if mid == "audio1" && strings.Join(md.MediaName.Formats, " ") != "111" {
				t.Errorf("bundle-only=%v: answer's section %s carries formats %v", bundleOnly, mid, md.MediaName.Formats)
			}
		}
		v.Close()
	}
}
