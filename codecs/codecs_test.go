package codecs

import "testing"

func TestIsKeyframe(t *testing.T) {
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
		{"opus", Opus, []byte{1}, true},
		{"unknown", Unknown, []byte{0x65}, false},
	}
	for _, c := range cases {
		if got := IsKeyframe(c.codec, c.p); got != c.want {
			t.Errorf("%s: IsKeyframe = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFromMime(t *testing.T) {
	for mime, want := range map[string]Codec{"video/H264": H264, "video/vp8": VP8, "VIDEO/VP9": VP9, "audio/opus": Opus, "audio/PCMU": Audio, "video/foo": Unknown} {
		if got := FromMime(mime); got != want {
			t.Errorf("FromMime(%q) = %v, want %v", mime, got, want)
		}
	}
}

func FuzzIsKeyframe(f *testing.F) {
	f.Add(uint8(H264), []byte{0x78, 0x00, 0x02, 0x67, 0x42})
	f.Add(uint8(VP8), []byte{0x90, 0xc0, 0x81})
	f.Fuzz(func(t *testing.T, c uint8, p []byte) {
		c %= 8                         // every Codec and one past them
		key := IsKeyframe(Codec(c), p) // must not panic on any input
		w, h, ok := Dimensions(Codec(c), p)
		if ok && (w <= 0 || h <= 0 || Codec(c) == VP8 && !key) {
			t.Fatalf("codec %d: %dx%d picture (keyframe %v) from %x", c, w, h, key, p)
		}
	})
}

func BenchmarkIsKeyframeH264(b *testing.B) {
	p := []byte{0x7c, 0x85, 0x00, 0x00}
	for b.Loop() {
		IsKeyframe(H264, p)
	}
}

func BenchmarkIsKeyframeVP8(b *testing.B) {
	p := []byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0x40, 0xaa}
	for b.Loop() {
		IsKeyframe(VP8, p)
	}
}

// TestDimensions reads the picture size of a VP8 keyframe's first packet
// (after a descriptor of every field) and of an H.264 SPS, and of no
// delta frame.
func TestDimensions(t *testing.T) {
	// Descriptor X I L T K with a 15-bit picture id, then a frame tag
	// with P=0, the start code and 640x360.
	vp8Key := []byte{0x90, 0xf0, 0x81, 0x02, 0x07, 0x40, 0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01}
	vp8Delta := append([]byte(nil), vp8Key...)
	vp8Delta[6] |= 0x01
	sps := []byte{0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x24, 0x80}
	cases := []struct {
		name string
		c    Codec
		p    []byte
		w, h int
		ok   bool
	}{
		{"vp8 keyframe", VP8, vp8Key, 640, 360, true},
		{"vp8 delta", VP8, vp8Delta, 0, 0, false},
		{"vp8 truncated header", VP8, vp8Key[:12], 0, 0, false},
		{"h264 sps", H264, sps, 1280, 720, true},
		{"h264 idr", H264, []byte{0x65, 0x88}, 0, 0, false},
		{"vp9", VP9, []byte{0x08, 1, 2}, 0, 0, false},
	}
	for _, c := range cases {
		w, h, ok := Dimensions(c.c, c.p)
		if w != c.w || h != c.h || ok != c.ok {
			t.Errorf("%s: Dimensions = %dx%d %v, want %dx%d %v", c.name, w, h, ok, c.w, c.h, c.ok)
		}
	}
	if !IsKeyframe(VP8, vp8Key) || IsKeyframe(VP8, vp8Delta) {
		t.Error("VP8 keyframe and delta told apart wrongly")
	}
}

// TestNoAllocations: the forwarding path asks these of every packet.
func TestNoAllocations(t *testing.T) {
	payloads := map[Codec][]byte{
		H264: {0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce},
		VP8:  {0x90, 0xe0, 0x81, 0x02, 0x07, 0x40, 0xaa},
		VP9:  {0xa8, 0x81, 0x02, 0x00},
	}
	for c, p := range payloads {
		if n := testing.AllocsPerRun(100, func() { IsKeyframe(c, p); Dimensions(c, p) }); n != 0 {
			t.Errorf("codec %d: %v allocations per packet", c, n)
		}
	}
}
