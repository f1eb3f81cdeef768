// Package rtpmunge rewrites RTP sequence numbers and timestamps so a
// consumer's subscriber sees one continuous stream, whatever happens
// upstream: pauses, dropped padding, or a switch to another simulcast layer
// (a different SSRC with unrelated numbering).
//
// A Munger is owned by one consumer and is not safe for concurrent use.
package rtpmunge

import "time"

// Munger maps incoming (sequence number, timestamp) pairs to outgoing ones.
type Munger struct {
	started bool

	seqOffset uint16
	tsOffset  uint32

	// syncSeq is the first incoming sequence number after the last Sync:
	// anything older belongs to the previous source and is dropped — until
	// settled, when the stream has gone far enough past it that "older"
	// (in 16-bit serial arithmetic) would soon mean "half a wrap newer".
	syncSeq    uint16
	settled    bool
	highestIn  uint16
	lastOutSeq uint16
	lastOutTS  uint32
	lastOutAt  time.Time
	clockRate  uint32

	// jumpSeq is the packet that jumped more than maxLate from highestIn
	// (jumped: one did): if the next follows it, the source restarted its
	// numbering on the same SSRC.
	jumpSeq uint16
	jumped  bool
}

// New returns a Munger whose output starts at the given sequence number
// and timestamp (random values, per RFC 3550).
func New(clockRate uint32, firstSeq uint16, firstTS uint32) *Munger {
	m := &Munger{}
	m.Reset(clockRate, firstSeq, firstTS)
	return m
}

// Reset prepares m for a new outgoing stream, as New does.
func (m *Munger) Reset(clockRate uint32, firstSeq uint16, firstTS uint32) {
	*m = Munger{clockRate: clockRate, lastOutSeq: firstSeq - 1, lastOutTS: firstTS}
}

// Started reports whether Sync has been called since Reset.
func (m *Munger) Started() bool { return m.started }

// Sync makes the packet (seq, ts), arriving at now, the continuation of the
// output: its sequence number follows the last one sent, and its timestamp
// advances by the wall-clock time elapsed since the last packet sent (at
// least one tick), so the decoder's clock never jumps or stalls. Call it on
// the first packet, after a pause, and on a layer switch's keyframe.
func (m *Munger) Sync(seq uint16, ts uint32, now time.Time) {
	m.seqOffset = m.lastOutSeq + 1 - seq
	var adv uint32 = 1
	if m.started && !m.lastOutAt.IsZero() {
		if d := now.Sub(m.lastOutAt); d > 0 {
			adv = uint32(d.Seconds() * float64(m.clockRate))
			if adv == 0 {
				adv = 1
			}
		}
	} else if !m.started {
		adv = 0
	}
	m.tsOffset = m.lastOutTS + adv - ts
	m.syncSeq = seq
	m.highestIn = seq - 1
	m.started = true
	m.settled = false
}

// settleAfter is how far past its sync point a stream must be before the
// sync point stops mattering; maxLate is how far behind the newest packet
// a packet may then arrive (seconds of video, so only a stray from long
// ago is refused).
const (
	settleAfter = 4096
	maxLate     = 2048
)

// Map returns the outgoing numbers for an incoming packet, or ok=false for
// a packet that precedes the last Sync (it belongs to an earlier source or
// is a late duplicate from before a restart) or when m is not started.
//
// A jump of more than maxLate either way, followed by the packet after it,
// is the source restarting its numbering on the same SSRC (an encoder or
// transcoder that was restarted, a publisher back after a drop): the
// output goes on from there as after a Sync, the jump's first packet
// lost. Without this, a restart that happened to number below the old
// stream was refused for half a wrap.
func (m *Munger) Map(seq uint16, ts uint32, now time.Time) (outSeq uint16, outTS uint32, ok bool) {
	if !m.started {
		return 0, 0, false
	}
	if d := int16(seq - m.highestIn); d > maxLate || d < -maxLate {
		if !m.jumped || seq != m.jumpSeq+1 {
			m.jumpSeq, m.jumped = seq, true
			return 0, 0, false
		}
		m.Sync(seq, ts, now)
	}
	m.jumped = false
	if !m.settled {
		if int16(seq-m.syncSeq) < 0 {
			return 0, 0, false
		}
	} else if int16(seq-m.highestIn) < -maxLate {
		return 0, 0, false
	}
	outSeq = seq + m.seqOffset
	outTS = ts + m.tsOffset
	if int16(seq-m.highestIn) > 0 {
		m.highestIn = seq
		m.lastOutSeq = outSeq
		m.lastOutTS = outTS
		m.lastOutAt = now
		if !m.settled && seq-m.syncSeq >= settleAfter {
			m.settled = true
		}
	}
	return outSeq, outTS, true
}

// Drop removes an in-order packet the consumer chose not to forward (such
// as padding) from the output numbering, so the subscriber sees no gap and
// never NACKs a packet that was never sent. An out-of-order packet cannot be
// dropped without a gap and is ignored.
func (m *Munger) Drop(seq uint16) {
	if !m.started || seq != m.highestIn+1 {
		return
	}
	m.highestIn = seq
	m.seqOffset--
}

// Last returns the last outgoing sequence number and timestamp.
func (m *Munger) Last() (seq uint16, ts uint32) { return m.lastOutSeq, m.lastOutTS }

// TSOffset returns what is added to incoming timestamps since the last
// Sync, to translate the source's clock mappings into the output's.
func (m *Munger) TSOffset() uint32 { return m.tsOffset }

// Pad allocates the next outgoing sequence number for a packet the
// consumer makes up itself (padding for bandwidth probes), at the last
// timestamp; later packets follow it without a gap.
func (m *Munger) Pad() (seq uint16, ts uint32) {
	m.lastOutSeq++
	m.seqOffset++
	return m.lastOutSeq, m.lastOutTS
}
