package loadpeer

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/internal/synth"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Window is the frames a measurement counts: from the first frame sent
// after Open to the last one sent before Close. Counting by frame number
// (each packet's stamp carries it) rather than by time gives each viewer
// exactly the packets it was sent, wherever they were when the
// measurement started or ended. Give OnFrame to Publish.
type Window struct {
	mu        sync.Mutex
	last      int64 // last frame sent; -1 before the first
	published map[int]uint64
	first     atomic.Int64 // first frame in the window
	end       atomic.Int64 // first frame after it
}

// NewWindow makes a window not open yet.
func NewWindow() *Window {
	w := &Window{last: -1, published: map[int]uint64{}}
	w.first.Store(math.MaxInt64)
	w.end.Store(math.MaxInt64)
	return w
}

// OnFrame is the publisher's synth.Video.OnFrame.
func (w *Window) OnFrame(layer int, frame uint32, packets int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = int64(frame)
	if w.In(frame) {
		w.published[layer] += uint64(packets)
	}
}

// In reports whether frame is one of the window's.
func (w *Window) In(frame uint32) bool {
	f := int64(frame)
	return f >= w.first.Load() && f < w.end.Load()
}

// Open starts the window at the next frame.
func (w *Window) Open() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.first.Store(w.last + 1)
}

// Close ends the window after the last frame sent and returns the video
// packets published in it, every layer's.
func (w *Window) Close() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.end.Store(w.last + 1)
	var n uint64
	for _, p := range w.published {
		n += p
	}
	return n
}

// Published is the video packets of one layer in the window (once
// closed: all of them).
func (w *Window) Published(layer int) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.published[layer]
}

// Count is one viewer's video: packets at all, those of the window's
// frames, and their delays from the publisher's send to their arrival
// here (the stamp's time; publisher and viewer share this machine's
// clock).
type Count struct {
	Any, InWindow atomic.Uint64

	mu     sync.Mutex
	delays []float64 // ms
}

// Delays returns the delays of the window's packets so far, in ms, in
// arrival order (the Count keeps them).
func (c *Count) Delays() []float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]float64(nil), c.delays...)
}

// CountTrack reads a track until it ends, counting its video packets
// into c (audio is read and dropped).
func CountTrack(tr *webrtc.TrackRemote, w *Window, c *Count) {
	buf := make([]byte, 1500)
	if tr.Kind() != webrtc.RTPCodecTypeVideo {
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
		}
	}
	var h rtp.Header
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		c.Any.Add(1)
		hl, err := h.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		if st, ok := synth.ReadStamp(buf[hl:n]); ok && w.In(st.Frame) {
			c.InWindow.Add(1)
			c.mu.Lock()
			c.delays = append(c.delays, float64(now.Sub(st.Sent).Microseconds())/1000)
			c.mu.Unlock()
		}
	}
}
