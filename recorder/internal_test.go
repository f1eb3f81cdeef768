package recorder

import (
	"fmt"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/recorder/flv"
)

func TestInterleaver(t *testing.T) {
	il := newInterleaver(time.Second)
	il.add(1)
	il.add(2)
	f := func(tr int, ms int) *Frame { return &Frame{Track: tr, PTS: time.Duration(ms) * time.Millisecond} }
	if out := il.push(f(1, 0)); len(out) != 0 {
		t.Fatal("released before the other track had a frame")
	}
	il.push(f(1, 40))
	out := il.push(f(2, 20))
	if len(out) != 2 || out[0].PTS != 0 || out[1].PTS != 20*time.Millisecond {
		t.Fatalf("got %v", out)
	}
	// Track 2 goes quiet: track 1 is released once it is a second ahead.
	for ms := 80; ms <= 1000; ms += 40 {
		if out := il.push(f(1, ms)); len(out) != 0 {
			t.Fatalf("released at %d ms", ms)
		}
	}
	if out := il.push(f(1, 1100)); len(out) == 0 || out[0].PTS != 40*time.Millisecond {
		t.Fatalf("not released after a second: %v", out)
	}
	il.remove(2)
	if out := il.flush(); len(out) == 0 || out[len(out)-1].PTS != 1100*time.Millisecond {
		t.Fatalf("flush: %v", out)
	}
}

func TestEpochPlacement(t *testing.T) {
	e := newEpoch(5 * time.Second)
	e.join()
	e.join()
	t0 := time.Unix(1000, 0)
	// The audio learns its first frame's time first; the video's first
	// keyframe was captured 30 ms before it.
	e.offer(t0.Add(30*time.Millisecond), t0)
	if _, ok := e.place(t0.Add(30*time.Millisecond), t0.Add(10*time.Millisecond), false); ok {
		t.Fatal("placed before the other track offered")
	}
	e.offer(t0, t0.Add(500*time.Millisecond))
	if got, ok := e.place(t0.Add(30*time.Millisecond), t0.Add(520*time.Millisecond), false); !ok || got != 5*time.Second+30*time.Millisecond {
		t.Fatalf("audio at %v %v, want 5.03 s", got, ok)
	}
	if got, ok := e.place(t0, t0.Add(530*time.Millisecond), false); !ok || got != 5*time.Second {
		t.Fatalf("video at %v %v, want the origin", got, ok)
	}
	// A track that never offers holds the others for settleWait at most;
	// one that comes after the origin settled is placed by it.
	e2 := newEpoch(0)
	e2.join()
	e2.join()
	e2.offer(t0, t0)
	if _, ok := e2.place(t0, t0.Add(settleWait-time.Millisecond), false); ok {
		t.Fatal("settled early")
	}
	if got, ok := e2.place(t0, t0.Add(settleWait), false); !ok || got != 0 {
		t.Fatalf("after settleWait: %v %v", got, ok)
	}
	e2.offer(t0.Add(-20*time.Millisecond), t0.Add(2*time.Second))
	if got, _ := e2.place(t0.Add(-20*time.Millisecond), t0.Add(2*time.Second), false); got != -20*time.Millisecond {
		t.Fatalf("late track %v", got)
	}
	e3 := newEpoch(0)
	e3.join()
	e3.join()
	e3.offer(t0, t0)
	if _, ok := e3.place(t0, t0, true); !ok {
		t.Fatal("forced placement refused")
	}
	c := rtpClock{rate: 90000}
	start := uint32(4294967000)
	c.since(start)
	if d := c.since(start + 90000); d != time.Second { // wraps
		t.Fatalf("clock %v", d)
	}
}

func TestFLVTaggerSequenceHeaders(t *testing.T) {
	cfgA := &h264.Config{SPS: []byte{0x67, 0x42, 0xc0, 0x1f}, PPS: []byte{0x68, 1}}
	cfgB := &h264.Config{SPS: []byte{0x67, 0x42, 0xc0, 0x0d}, PPS: []byte{0x68, 2}}
	var tg flvTagger
	var tags []flv.Tag
	emit := func(t flv.Tag) error { tags = append(tags, t); return nil }
	w := func(key bool, cfg *h264.Config) {
		_ = tg.tags(&Frame{Video: true, Main: true, Key: key, NALUs: [][]byte{{0x65}}, H264: cfg}, emit)
	}
	w(false, cfgA) // no keyframe yet
	w(true, cfgA)  // sequence header + frame
	w(false, cfgA)
	tg.discontinuity()
	w(false, cfgB)                                                                                      // new source, waits for its keyframe
	w(true, cfgB)                                                                                       // new sequence header + frame
	_ = tg.tags(&Frame{Video: true, Main: false, Key: true, NALUs: [][]byte{{0x65}}, H264: cfgB}, emit) // another rung: not FLV's
	if len(tags) != 5 {
		t.Fatalf("%d tags, want 5", len(tags))
	}
	for i, wantSeq := range []bool{true, false, false, true, false} {
		v, _ := flv.ParseVideo(tags[i].Data)
		if (v.PacketType == flv.AVCSequence) != wantSeq {
			t.Errorf("tag %d: packet type %d", i, v.PacketType)
		}
	}
}

func TestRedactURL(t *testing.T) {
	if got := RedactURL("rtmps://live.example:443/app/sk_secret?x=1"); got != "rtmps://live.example:443/app/…" {
		t.Errorf("got %q", got)
	}
}

// TestEmitKeepsLeadingKeyframe: a video track whose first keyframe was
// captured just before the epoch's origin (another track fixed it) starts
// at the origin instead of waiting for the next keyframe; audio before the
// origin, video long before it, and delta frames before any keyframe are
// dropped.
func TestEmitKeepsLeadingKeyframe(t *testing.T) {
	ms := time.Millisecond
	newTrack := func() (*track, chan *Frame) {
		ch := make(chan *Frame, 16)
		return &track{rec: &Recording{frames: ch}, ep: newEpoch(time.Second)}, ch
	}
	got := func(ch chan *Frame) []time.Duration {
		var out []time.Duration
		for len(ch) > 0 {
			out = append(out, (<-ch).PTS)
		}
		return out
	}
	video, ch := newTrack()
	video.emit(&Frame{Video: true, PTS: time.Second - 30*ms}) // delta before any keyframe
	video.emit(&Frame{Video: true, Key: true, PTS: time.Second - 20*ms})
	video.emit(&Frame{Video: true, PTS: time.Second - 5*ms})
	video.emit(&Frame{Video: true, PTS: time.Second + 13*ms})
	want := []time.Duration{time.Second, time.Second + ms, time.Second + 13*ms}
	if g := got(ch); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("video PTS %v, want %v", g, want)
	}
	far, ch := newTrack()
	far.emit(&Frame{Video: true, Key: true, PTS: time.Second - maxLead - ms})
	far.emit(&Frame{Video: true, PTS: time.Second - 10*ms})
	if g := got(ch); len(g) != 0 {
		t.Fatalf("video from %v before the origin kept: %v", maxLead, g)
	}
	audio, ch := newTrack()
	audio.emit(&Frame{PTS: time.Second - 10*ms})
	audio.emit(&Frame{PTS: time.Second + 10*ms})
	if g := got(ch); fmt.Sprint(g) != fmt.Sprint([]time.Duration{time.Second + 10*ms}) {
		t.Fatalf("audio PTS %v", g)
	}
}
