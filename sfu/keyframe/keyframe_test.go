package keyframe

import "testing"

func TestIs(t *testing.T) {
	cases := []struct {
		name  string
		codec Codec
		p     []byte
		want  bool
	}{
		{"vp8 key minimal descriptor", VP8, []byte{0x10, 0x00, 0x9d}, true},
		{"vp8 delta", VP8, []byte{0x10, 0x01}, false},
		{"vp8 not start", VP8, []byte{0x00, 0x00}, false},
		{"vp8 key with 15-bit picture id and tl0", VP8, []byte{0x90, 0xc0, 0x81, 0x23, 0x05, 0x00}, true},
		{"vp8 delta with picture id, T/K", VP8, []byte{0x90, 0xa0, 0x12, 0x40, 0x01}, false},
		{"vp8 truncated", VP8, []byte{0x90, 0x80}, false},
		{"vp9 key", VP9, []byte{0x08}, true},
		{"vp9 inter", VP9, []byte{0x48}, false},
		{"vp9 key upper spatial layer", VP9, []byte{0x28, 0x02}, false},
		{"vp9 key with picture id and layer 0", VP9, []byte{0xa8, 0x81, 0x02, 0x00}, true},
		{"h264 idr", H264, []byte{0x65, 0x88}, true},
		{"h264 sps", H264, []byte{0x67, 0x42}, true},
		{"h264 non-idr", H264, []byte{0x41, 0x9a}, false},
		{"h264 stap-a sps pps", H264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 stap-a broken length", H264, []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"h264 fu-a idr start", H264, []byte{0x7c, 0x85, 0x00}, true},
		{"h264 fu-a idr middle", H264, []byte{0x7c, 0x05, 0x00}, false},
		{"h264 fu-a non-idr start", H264, []byte{0x7c, 0x81}, false},
		{"av1 new sequence", AV1, []byte{0x18}, true},
		{"av1 other", AV1, []byte{0x10}, false},
		{"empty", H264, nil, false},
		{"audio", Audio, []byte{1}, true},
		{"unknown", Unknown, []byte{0x65}, false},
	}
	for _, c := range cases {
		if got := Is(c.codec, c.p); got != c.want {
			t.Errorf("%s: Is = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFromMime(t *testing.T) {
	for mime, want := range map[string]Codec{"video/H264": H264, "video/vp8": VP8, "VIDEO/VP9": VP9, "audio/opus": Audio, "video/foo": Unknown} {
		if got := FromMime(mime); got != want {
			t.Errorf("FromMime(%q) = %v, want %v", mime, got, want)
		}
	}
}

func FuzzIs(f *testing.F) {
	f.Add(uint8(H264), []byte{0x78, 0x00, 0x02, 0x67, 0x42})
	f.Add(uint8(VP8), []byte{0x90, 0xc0, 0x81})
	f.Fuzz(func(t *testing.T, c uint8, p []byte) {
		Is(Codec(c%6), p) // must not panic on any input
	})
}

func BenchmarkIsH264(b *testing.B) {
	p := []byte{0x7c, 0x85, 0x00, 0x00}
	for b.Loop() {
		Is(H264, p)
	}
}
