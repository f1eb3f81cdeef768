package recorder

import "time"

// interleaver puts the frames of several tracks into one time order. It
// releases the earliest frame once every live track has one waiting; a
// track that has sent nothing for maxWait of the others' media is not
// waited for.
type interleaver struct {
	queues  map[int][]*Frame
	live    map[int]bool
	maxWait time.Duration
}

func newInterleaver(maxWait time.Duration) *interleaver {
	return &interleaver{queues: map[int][]*Frame{}, live: map[int]bool{}, maxWait: maxWait}
}

// add declares a track that frames should be waited for.
func (il *interleaver) add(track int) { il.live[track] = true }

// remove stops waiting for a track (it ended); its queued frames stay.
func (il *interleaver) remove(track int) { delete(il.live, track) }

// push queues a frame and returns the frames now ready, in order.
func (il *interleaver) push(f *Frame) []*Frame {
	il.queues[f.Track] = append(il.queues[f.Track], f)
	return il.ready(false)
}

// flush returns every queued frame, in order.
func (il *interleaver) flush() []*Frame { return il.ready(true) }

func (il *interleaver) ready(all bool) []*Frame {
	var out []*Frame
	for {
		var best *Frame
		bestTrack := -1
		var newest time.Duration
		empty := false
		for tr := range il.live {
			if len(il.queues[tr]) == 0 {
				empty = true
			}
		}
		for tr, q := range il.queues {
			if len(q) == 0 {
				continue
			}
			if best == nil || q[0].PTS < best.PTS {
				best, bestTrack = q[0], tr
			}
			if last := q[len(q)-1].PTS; last > newest {
				newest = last
			}
		}
		if best == nil {
			return out
		}
		if empty && !all && newest-best.PTS < il.maxWait {
			return out
		}
		il.queues[bestTrack] = il.queues[bestTrack][1:]
		if len(il.queues[bestTrack]) == 0 && !il.live[bestTrack] {
			delete(il.queues, bestTrack)
		}
		out = append(out, best)
	}
}
