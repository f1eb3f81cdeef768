package sfu

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

func TestSSRCSimulcastParse(t *testing.T) {
	section := func(attrs ...string) *sdp.MediaDescription {
		md := &sdp.MediaDescription{}
		for _, a := range attrs {
			k, v, _ := strings.Cut(a, ":")
			md.Attributes = append(md.Attributes, sdp.Attribute{Key: k, Value: v})
		}
		return md
	}
	cases := []struct {
		name string
		md   *sdp.MediaDescription
		want []simStream
	}{
		{"sim with rtx", section("ssrc-group:FID 11 21", "ssrc-group:SIM 11 12 13", "ssrc-group:FID 12 22", "ssrc:11 cname:x", "ssrc:12 cname:x", "ssrc:13 cname:x"),
			[]simStream{{11, 21}, {12, 22}, {13, 0}}},
		{"two layers", section("ssrc-group:SIM 5 6"), []simStream{{5, 0}, {6, 0}}},
		{"more than three keeps the lowest", section("ssrc-group:SIM 1 2 3 4"), []simStream{{1, 0}, {2, 0}, {3, 0}}},
		{"rid simulcast wins", section("ssrc-group:SIM 1 2 3", "rid:q send"), nil},
		{"one ssrc is not simulcast", section("ssrc-group:SIM 1", "ssrc:1 cname:x"), nil},
		{"fid only", section("ssrc-group:FID 1 2"), nil},
		{"garbage", section("ssrc-group:SIM 1 x 3"), nil},
	}
	for _, c := range cases {
		if got := ssrcSimulcast(c.md); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}
