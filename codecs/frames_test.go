package codecs

import (
	"bytes"
	"testing"

	"github.com/matinee-dev/matinee/internal/rtprec"
)

// FuzzFrameAssembler pushes a VP8 or VP9 RTP stream (seeds: pion's
// payloaders over ffmpeg's frames, in testdata/fuzz) through the frame
// assembler, in internal/rtprec's records (marker, timestamp, a sequence
// number step that may duplicate or lose packets, payload). A frame is never empty, never
// longer than what came in, the first one and the first after a loss are
// keyframes, and frames are copies that later packets cannot change.
func FuzzFrameAssembler(f *testing.F) {
	f.Fuzz(func(t *testing.T, vp9 bool, recs []byte) {
		c := VP8
		if vp9 {
			c = VP9
		}
		a := NewFrameAssembler(c)
		in := 0
		needKey := true
		type kept struct{ frame, copy []byte }
		var frames []kept
		for _, p := range rtprec.Decode(recs) {
			in += len(p.Payload)
			frame, key, lost := a.Push(p.Seq, p.TS, p.Marker, p.Payload)
			if lost {
				needKey = true
			}
			clear(p.Payload) // the caller reuses its buffer
			if frame == nil {
				continue
			}
			if len(frame) == 0 || len(frame) > in {
				t.Fatalf("frame of %d bytes from %d bytes of payload", len(frame), in)
			}
			if needKey && !key {
				t.Fatal("a delta frame before any keyframe (at the start or after a loss)")
			}
			needKey = false
			frames = append(frames, kept{frame, bytes.Clone(frame)})
		}
		for i, k := range frames {
			if !bytes.Equal(k.frame, k.copy) {
				t.Fatalf("frame %d changed after it was returned", i)
			}
		}
	})
}

// TestFrameAssembler: frames come out from the first keyframe on, and a
// frame that lost a packet is dropped with what follows it up to the next
// keyframe.
func TestFrameAssembler(t *testing.T) {
	a := NewFrameAssembler(VP8)
	// VP8 descriptor: S bit on the first packet; keyframe has P=0.
	key := [][]byte{{0x10, 0x00, 1, 2}, {0x00, 3, 4}}
	delta := [][]byte{{0x10, 0x01, 5}}
	var frames int
	seq := uint16(1)
	push := func(ts uint32, pkts [][]byte, skip int) {
		for i, p := range pkts {
			if i == skip {
				seq++
				continue
			}
			if f, _, _ := a.Push(seq, ts, i == len(pkts)-1, p); f != nil {
				frames++
			}
			seq++
		}
	}
	push(100, delta, -1) // before any keyframe: dropped
	push(200, key, -1)
	push(300, delta, -1)
	push(400, key, 1) // loses its second packet: dropped
	push(500, delta, -1)
	push(600, key, -1)
	if frames != 3 {
		t.Fatalf("%d frames, want 3", frames)
	}
}
