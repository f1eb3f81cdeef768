package sfu

import (
	"strings"

	"github.com/pion/sdp/v3"
)

// bundledMids returns the mids of an offer's a=group:BUNDLE lines.
func bundledMids(sd *sdp.SessionDescription) map[string]bool {
	mids := map[string]bool{}
	for _, a := range sd.Attributes {
		if a.Key != "group" {
			continue
		}
		f := strings.Fields(a.Value)
		if len(f) < 2 || f[0] != "BUNDLE" {
			continue
		}
		for _, mid := range f[1:] {
			mids[mid] = true
		}
	}
	return mids
}

// sectionRejected reports whether an offer's m-section is turned off. Port
// 0 means that only outside a bundle: a section whose mid is in the
// BUNDLE group rides the bundle's transport whatever its port (RFC 8843
// section 7.3.3), and GStreamer's webrtcbin with max-bundle writes its
// second and later sections with port 0, with or without a=bundle-only.
func sectionRejected(md *sdp.MediaDescription, bundled map[string]bool) bool {
	if md.MediaName.Port.Value != 0 {
		return false
	}
	mid, _ := md.Attribute("mid")
	return mid == "" || !bundled[mid]
}
