package amf0

import (
	"bytes"
	"testing"
)

// FuzzDecode decodes AMF0 values (seeds: ffmpeg's onMetaData in
// testdata/fuzz, and RTMP commands). What decodes and can be encoded
// again (strict arrays and long strings cannot) is a fixed point after
// one round: encode(decode(encode(decode(b)))) = encode(decode(b)).
func FuzzDecode(f *testing.F) {
	for _, vals := range [][]any{
		{"_result", 1.0, Object{{"fmsVer", "FMS/3,0,1,123"}, {"capabilities", 31.0}}, Object{{"level", "status"}, {"code", "NetConnection.Connect.Success"}, {"objectEncoding", 0.0}}},
		{"onStatus", 0.0, nil, Object{{"level", "error"}, {"code", "NetStream.Publish.BadName"}, {"description", "taken"}}},
		{"onMetaData", ECMAArray{{"duration", 3.0}, {"width", 1280.0}, {"stereo", true}, {"encoder", "Lavf"}}},
	} {
		b, err := Append(nil, vals...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{markerStrict, 0, 0, 0, 2, markerNull, markerBool, 1})
	f.Add([]byte{markerLong, 0, 0, 0, 3, 'a', 'b', 'c', markerUndefined})
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := Decode(b)
		if err != nil {
			return
		}
		once, err := Append(nil, vals...)
		if err != nil {
			return // a strict array or a long string
		}
		if len(once) > len(b)+4*len(vals)+64 && len(once) > 2*len(b) {
			t.Fatalf("%d bytes re-encoded as %d", len(b), len(once))
		}
		again, err := Decode(once)
		if err != nil {
			t.Fatalf("our own encoding %x does not decode: %v", once, err)
		}
		twice, err := Append(nil, again...)
		if err != nil || !bytes.Equal(twice, once) {
			t.Fatalf("round trip: %x then %x (%v)", once, twice, err)
		}
	})
}
