package mediatest

import (
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
)

// ReadH264 reads an Annex B file and returns its access units, each in
// Annex B framing (parameter sets and SEI stay with the slice they
// precede). It assumes one slice per picture, as libx264 makes.
func ReadH264(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := h264reader.NewReaderWithOptions(f, h264reader.WithIncludeSEI(true))
	if err != nil {
		t.Fatal(err)
	}
	var aus [][]byte
	var cur []byte
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		cur = append(cur, 0, 0, 0, 1)
		cur = append(cur, nal.Data...)
		if nal.UnitType == h264reader.NalUnitTypeCodedSliceNonIdr || nal.UnitType == h264reader.NalUnitTypeCodedSliceIdr {
			aus = append(aus, cur)
			cur = nil
		}
	}
	return aus
}

// ReadOgg returns the Opus packets of an Ogg file, without the two
// header packets.
func ReadOgg(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	var cur []byte
	for len(b) > 0 {
		if len(b) < 27 || string(b[:4]) != "OggS" {
			t.Fatalf("read %s: bad Ogg page", path)
		}
		nseg := int(b[26])
		lacing := b[27 : 27+nseg]
		data := b[27+nseg:]
		for _, l := range lacing {
			cur = append(cur, data[:l]...)
			data = data[l:]
			if l < 255 {
				pkts = append(pkts, cur)
				cur = nil
			}
		}
		b = data
	}
	if len(pkts) < 2 {
		t.Fatalf("read %s: no Opus packets", path)
	}
	return pkts[2:]
}

// Loop sends video access units at 30 fps and 20 ms audio packets on
// their tracks, both paced by one clock, looping over the given media
// until stop is closed. vPeriod frames and aPeriod packets make one loop
// (so a 1 s file loops as 30 frames and 50 packets, in step).
type Loop struct {
	Video   *webrtc.TrackLocalStaticSample
	Audio   *webrtc.TrackLocalStaticSample
	AUs     [][]byte
	Packets [][]byte
	// FPS defaults to 30.
	FPS int
}

// Run sends until stop is closed.
func (l *Loop) Run(stop <-chan struct{}) {
	fps := l.FPS
	if fps == 0 {
		fps = 30
	}
	vDur := time.Second / time.Duration(fps)
	aDur := 20 * time.Millisecond
	start := time.Now()
	var vi, ai int
	for {
		now := time.Since(start)
		for l.Video != nil && len(l.AUs) > 0 && time.Duration(vi)*vDur <= now {
			_ = l.Video.WriteSample(media.Sample{Data: l.AUs[vi%len(l.AUs)], Duration: vDur})
			vi++
		}
		for l.Audio != nil && len(l.Packets) > 0 && time.Duration(ai)*aDur <= now {
			_ = l.Audio.WriteSample(media.Sample{Data: l.Packets[ai%len(l.Packets)], Duration: aDur})
			ai++
		}
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Start runs the loop on a goroutine; the returned function stops it and
// waits.
func (l *Loop) Start() (stop func()) {
	ch := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.Run(ch) }()
	var once sync.Once
	return func() { once.Do(func() { close(ch); wg.Wait() }) }
}
