package rtprec

import (
	"bytes"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var b []byte
	b = Append(b, false, false, 1, []byte{1, 2})
	b = Append(b, true, false, 1, []byte{3})
	b = Append(b, true, true, 3, nil)
	b = append(b, 0, 1, 9, 7) // cut short: one byte of nine
	got := Decode(b)
	want := []Packet{
		{Seq: 1, TS: 0, Payload: []byte{1, 2}},
		{Seq: 2, TS: 0, Marker: true, Payload: []byte{3}},
		{Seq: 5, TS: 3000, Marker: true, Payload: []byte{}},
		{Seq: 6, TS: 3000, Payload: []byte{7}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.TS != w.TS || g.Marker != w.Marker || !bytes.Equal(g.Payload, w.Payload) {
			t.Errorf("packet %d: %+v, want %+v", i, g, w)
		}
	}
	got[0].Payload[0] = 9
	if b[3] != 1 {
		t.Error("a decoded payload aliases the records")
	}
}
