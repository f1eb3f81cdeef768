package sfu

import (
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/codecs"
	"github.com/matinee-dev/matinee/codecs/vp8"
	"github.com/pion/rtp"
)

// VP8 temporal layers (RFC 7741): an L1T3 encoder tags its frames TID
// 0,2,1,2,… so that dropping every TID-2 frame halves the frame rate and
// dropping TID 1 as well quarters it, while what remains still decodes.
// The producer counts each spatial layer's bitrate and frame rate per
// temporal layer; each consumer drops the frames above its temporal target
// and renumbers what it sends so the subscriber sees no loss.

// maxTemporal is the highest temporal layer (TID) told apart. A consumer
// whose temporal target is maxTemporal takes every frame, which is all a
// stream without temporal layers ever gets.
const maxTemporal = 2

// temporalStats counts one spatial layer's packets by temporal layer. The
// counters are bumped per packet; the rates are computed by the router's
// tick, which alone touches the last* fields.
type temporalStats struct {
	bytes    [maxTemporal + 1]atomic.Uint64
	frames   [maxTemporal + 1]atomic.Uint64
	lastSeen [maxTemporal + 1]atomic.Int64 // unix nanoseconds
	rate     [maxTemporal + 1]atomic.Int64 // bits per second, smoothed
	fps      [maxTemporal + 1]atomic.Int64 // frames per second ×100
	// highest is the highest temporal layer seen while the layer last
	// flowed: a layer paused by dynacast keeps its structure, so the
	// allocator can still choose part of it.
	highest atomic.Int32

	lastBytes  [maxTemporal + 1]uint64
	lastFrames [maxTemporal + 1]uint64
}

// parse reads a VP8 packet's payload descriptor into d and counts the
// packet under its temporal layer. It returns nil for other codecs and for
// packets whose descriptor does not parse: those are forwarded as they are.
func (ts *temporalStats) parse(codec codecs.Codec, pkt *rtp.Packet, now time.Time, d *vp8.Descriptor) *vp8.Descriptor {
	if codec != codecs.VP8 || len(pkt.Payload) == 0 || vp8.Parse(pkt.Payload, d) != nil {
		return nil
	}
	if !d.HasTID || d.TID > maxTemporal {
		return d
	}
	ts.bytes[d.TID].Add(uint64(len(pkt.Payload) + 12))
	ts.lastSeen[d.TID].Store(now.UnixNano())
	if pkt.Marker {
		ts.frames[d.TID].Add(1)
	}
	return d
}

// top returns the highest temporal layer of the spatial layer: 0 for a
// stream without temporal layers.
func (ts *temporalStats) top() int { return int(ts.highest.Load()) }

// update turns the counters into smoothed rates, as updateRates does for
// the whole layer, and notes which temporal layers are present. measure
// is false while the layer is not flowing normally (paused, or just
// resumed): the counts then say nothing about it.
func (ts *temporalStats) update(now time.Time, dt time.Duration, measure bool) {
	if measure {
		top := 0
		for t := maxTemporal; t > 0; t-- {
			if now.UnixNano()-ts.lastSeen[t].Load() < int64(layerTimeout) {
				top = t
				break
			}
		}
		ts.highest.Store(int32(top))
	}
	for t := range ts.bytes {
		b, f := ts.bytes[t].Load(), ts.frames[t].Load()
		inst := float64(b-ts.lastBytes[t]) * 8 / dt.Seconds()
		fps := float64(f-ts.lastFrames[t]) / dt.Seconds()
		ts.lastBytes[t], ts.lastFrames[t] = b, f
		if !measure {
			continue
		}
		old := float64(ts.rate[t].Load())
		if old == 0 {
			old = inst
		}
		ts.rate[t].Store(int64(0.75*old + 0.25*inst))
		oldFPS := float64(ts.fps[t].Load()) / 100
		if oldFPS == 0 {
			oldFPS = fps
		}
		ts.fps[t].Store(int64(100 * (0.75*oldFPS + 0.25*fps)))
	}
}

// share is the part of the layer's bitrate that temporal layers 0..t
// carry, when top is the highest present.
func (ts *temporalStats) share(t, top int) float64 {
	if t >= top {
		return 1
	}
	var part, all int64
	for k := 0; k <= top; k++ {
		r := ts.rate[k].Load()
		all += r
		if k <= t {
			part += r
		}
	}
	if all <= 0 {
		// Not measured yet: assume the frames cost alike.
		return float64(t+1) / float64(top+1)
	}
	return float64(part) / float64(all)
}

// TemporalStats describes what a subscriber receives of one spatial layer
// when it takes temporal layers 0 up to this one: the figures add up.
type TemporalStats struct {
	Bitrate int // bits per second
	FPS     float64
}

// TemporalLayers returns the cumulative bitrate and frame rate of a
// spatial layer's temporal layers (T0, T0+T1, T0+T1+T2), as many as the
// publisher sends; one entry for a layer without temporal scalability.
func (p *Producer) TemporalLayers(spatial int) []TemporalStats {
	if spatial < 0 || spatial >= maxLayers {
		return nil
	}
	l := &p.layers[spatial]
	ts := &l.temporal
	top := ts.top()
	out := make([]TemporalStats, 0, top+1)
	fps := 0.0
	for t := 0; t <= top; t++ {
		fps += float64(ts.fps[t].Load()) / 100
		if top == 0 {
			fps = float64(l.fps.Load()) / 100
		}
		out = append(out, TemporalStats{Bitrate: int(float64(l.rate.Load()) * ts.share(t, top)), FPS: fps})
	}
	return out
}

// temporalFilter is a consumer's VP8 temporal-layer state: which frames it
// drops, and the picture id and TL0PICIDX rewriting that makes the frames
// it sends look consecutive. The consumer's mutex guards it.
type temporalFilter struct {
	// current is the highest TID forwarded.
	current int
	// The frame being forwarded or dropped, by RTP timestamp: every
	// packet of a frame shares the decision made on its first.
	frameTS  uint32
	inFrame  bool
	dropping bool
	// Output = input + offset; a dropped frame takes one off picOff.
	picOff           uint16
	tl0Off           uint8
	lastPic          uint16
	lastTL0          uint8
	sentPic, sentTL0 bool
	// resync is set by a spatial switch: the next frame's ids continue
	// the output instead of the new layer's own numbering.
	resync bool
}

func (f *temporalFilter) reset() { *f = temporalFilter{current: maxTemporal} }

// switched notes a change of source (another spatial layer, or a restart):
// its keyframe comes next.
func (f *temporalFilter) switched() {
	f.inFrame = false
	f.resync = true
}

// filter decides whether a packet is forwarded, given the highest
// temporal layer wanted, and returns its payload: the producer's own, or a
// copy in *buf when the descriptor had to be rewritten (*buf is made on
// the first rewrite, when nil). changed reports
// that the forwarded temporal layer changed with this packet.
//
// Going down takes effect at the next frame. Going up takes one layer at a
// time, at a frame of that layer with the layer-sync bit (it depends only
// on base-layer frames, which were all forwarded), or at once on a
// keyframe, which nothing after it can reach past.
func (f *temporalFilter) filter(d *vp8.Descriptor, isKey bool, ts uint32, target int, payload []byte, buf *[]byte) (out []byte, ok, changed bool) {
	tid := 0
	if d.HasTID {
		tid = int(d.TID)
	}
	if f.inFrame && int32(ts-f.frameTS) <= 0 {
		switch {
		case ts != f.frameTS:
			// A late packet of an earlier frame: its ids may be off by
			// the frames dropped since, which is no worse than its
			// lateness.
			if tid > f.current {
				return nil, false, false
			}
		case f.dropping:
			return nil, false, false
		}
		return f.rewrite(d, payload, buf), true, false
	}
	f.inFrame, f.frameTS = true, ts
	prev := f.current
	switch {
	case isKey:
		f.current = target
	case target < f.current:
		f.current = target
	case tid == f.current+1 && tid <= target && d.LayerSync:
		f.current = tid
	}
	changed = f.current != prev
	if f.resync {
		f.resync = false
		if f.sentPic && d.HasPictureID {
			f.picOff = f.lastPic + 1 - d.PictureID
		}
		if f.sentTL0 && d.HasTL0PICIDX {
			f.tl0Off = f.lastTL0 + 1 - d.TL0PICIDX
		}
	}
	f.dropping = tid > f.current
	if f.dropping {
		if d.HasPictureID {
			f.picOff--
		}
		return nil, false, changed
	}
	if d.HasPictureID {
		f.lastPic, f.sentPic = (d.PictureID+f.picOff)&d.PictureIDMask(), true
	}
	if d.HasTL0PICIDX {
		f.lastTL0, f.sentTL0 = d.TL0PICIDX+f.tl0Off, true
	}
	return f.rewrite(d, payload, buf), true, changed
}

// maxRewrite is the largest payload whose VP8 ids are rewritten (a
// larger one, which no MTU-sized packet is, goes out as it came).
const maxRewrite = 1500

// rewrite applies the offsets, copying into *bufp only when an id
// changes: the payload belongs to the producer's packet, which every
// consumer of it shares.
func (f *temporalFilter) rewrite(d *vp8.Descriptor, payload []byte, bufp *[]byte) []byte {
	pic := (d.PictureID + f.picOff) & d.PictureIDMask()
	tl0 := d.TL0PICIDX + f.tl0Off
	if (!d.HasPictureID || pic == d.PictureID) && (!d.HasTL0PICIDX || tl0 == d.TL0PICIDX) {
		return payload
	}
	if len(payload) > maxRewrite {
		return payload
	}
	if *bufp == nil {
		*bufp = make([]byte, maxRewrite)
	}
	buf := *bufp
	n := copy(buf, payload)
	d.SetPictureID(buf[:n], pic)
	d.SetTL0PICIDX(buf[:n], tl0)
	return buf[:n]
}

// temporalFor is the highest temporal layer a consumer forwards of the
// spatial layer it is on. Called with c.mu held.
func (c *Consumer) temporalFor() int {
	switch {
	case c.current == c.target:
		return c.tlTarget
	case c.current < c.target:
		// Climbing, waiting for the better layer's keyframe: the budget
		// carries all of this one.
		return maxTemporal
	default:
		// Going down, waiting for the lower layer's keyframe: the
		// budget is short, so shed frames now.
		return 0
	}
}

// reportedTemporal is a temporal layer as subscribers see it: no higher
// than what the spatial layer has, so 0 for a stream without temporal
// layers.
func (c *Consumer) reportedTemporal(spatial, t int) int {
	if spatial < 0 || spatial >= maxLayers {
		return -1
	}
	return min(t, c.producer.layers[spatial].temporal.top())
}

// TemporalLayer returns the highest VP8 temporal layer being forwarded of
// the current simulcast layer, and the one wanted: 0 for a stream without
// temporal layers, -1 while no video is forwarded.
func (c *Consumer) TemporalLayer() (current, target int) {
	c.mu.Lock()
	s, cur, ts, tt := c.current, c.tl.current, c.target, c.tlTarget
	c.mu.Unlock()
	return c.reportedTemporal(s, cur), c.reportedTemporal(ts, tt)
}
