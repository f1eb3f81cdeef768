package ingest

import (
	"github.com/matinee-dev/matinee/internal/ntp"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Lip sync of an RTMP publisher. Its video is repacketised at once; its
// audio goes through an ffmpeg process (AAC to Opus), which hands it back
// about 130 ms later, numbered on ffmpeg's own clock. The room maps each
// stream's RTP time to wall time by when its packets arrive (the sender
// reports the SFU writes, and the recorder without publisher reports), so
// a recording had the audio 120–140 ms late. So both streams are stamped
// on one clock, the RTMP publisher's, and each video frame is sent when
// the audio of its time leaves ffmpeg: the audio's output is the clock
// the video follows (an encoder also sends its audio tags ahead of or
// behind its video by its own interleaving, which this absorbs).
//
// Pacing is what a browser's lip sync needs (the SFU's reports to it are
// from its own send times). A recorder or an RTP push goes by the
// publisher's sender reports, which the ingest writes for both streams
// from one mapping of stream time to wall time: they line up however
// late either stream's packets leave (a loaded machine delayed the first
// video packets by ~90 ms, and a recording placed the video by them).

// reportEpoch is the wall time of stream time 0, in unix ns: when the
// publisher's connection sent its first tag, less that tag's time. Both
// streams' sender reports map their RTP times through it.
type reportEpoch struct{ ns atomic.Int64 }

// anchor fixes the epoch by a tag of stream time sm arriving at now
// (once per connection: a resume's stream times go on from the last).
func (e *reportEpoch) anchor(sm int64, now time.Time) {
	e.ns.Store(now.UnixNano() - sm*int64(time.Millisecond))
}

// reportInterval is how often each stream reports, as browsers do.
const reportInterval = time.Second

// reporter writes one stream's RTCP sender reports on its RTP socket
// (the ingest's ports take RTCP muxed): one before its first packet, so
// a recorder can place the stream by it at once, then every second.
type reporter struct {
	epoch           *reportEpoch
	ssrc            uint32
	last            time.Time
	packets, octets uint32
}

// before is called before each packet; ts is its RTP time and streamNs
// its stream time in ns.
func (r *reporter) before(conn *net.UDPConn, ts uint32, streamNs int64, now time.Time) {
	if !r.last.IsZero() && now.Sub(r.last) < reportInterval {
		return
	}
	r.last = now
	sr := rtcp.SenderReport{SSRC: r.ssrc, NTPTime: ntp.From(time.Unix(0, r.epoch.ns.Load()+streamNs)), RTPTime: ts, PacketCount: r.packets, OctetCount: r.octets}
	if b, err := sr.Marshal(); err == nil {
		_, _ = conn.Write(b)
	}
}

func (r *reporter) sent(payload int) {
	r.packets++
	r.octets += uint32(payload)
}

// avClock puts one connection's RTMP times on the stream's own clock,
// continuous across a resume.
type avClock struct {
	off int64 // stream ms = RTMP ms + off
}

func (c avClock) stream(ms uint32) int64 { return int64(ms) + c.off }

// outWindow is how many audio packets (20 ms each) the audio's output
// clock is the earliest of: ffmpeg hands its output over in bursts, and
// the earliest of a second of them is when the audio is due.
const outWindow = 50

// startLate is how late a keyframe may be sent and still start the video.
const startLate = 20 * time.Millisecond

// maxVideoWait bounds how long a frame waits for its audio: a stalled
// transcoder must not stall the picture.
const maxVideoWait = time.Second

// audioClock is when the audio of each stream time leaves for the room,
// as learnt from the relay (zero until audio flows).
type audioClock struct {
	off   atomic.Int64 // unix ns of stream time 0 on the audio's output
	valid atomic.Bool
	// expected: the publisher sends audio and its transcoder runs, so a
	// frame waits (at most maxVideoWait) for the audio's clock; ready is
	// closed once that clock is known.
	expected  atomic.Bool
	ready     chan struct{}
	readyOnce sync.Once
}

func newAudioClock() *audioClock { return &audioClock{ready: make(chan struct{})} }

func (c *audioClock) set(off int64) {
	c.off.Store(off)
	c.valid.Store(true)
	c.readyOnce.Do(func() { close(c.ready) })
}

// due returns when the video of stream time sm should leave: with its
// audio, but not later than maxVideoWait from now nor earlier than now.
func (c *audioClock) due(sm int64, now time.Time) time.Time {
	if !c.valid.Load() {
		return now
	}
	d := time.Unix(0, c.off.Load()+sm*int64(time.Millisecond))
	switch {
	case d.Before(now):
		return now
	case d.Sub(now) > maxVideoWait:
		return now.Add(maxVideoWait)
	}
	return d
}

// videoFrame is one access unit's packets waiting for their time.
type videoFrame struct {
	sm       int64 // stream time, ms
	key      bool
	payloads [][]byte
	arrived  time.Time
}

// videoOut sends an RTMP publisher's video into the room, each frame
// delayed by the audio's lag. It outlives the publisher's connections
// (a resume goes on with it) and ends with the stage.
type videoOut struct {
	conn     *net.UDPConn
	pt       uint8
	ssrc     uint32
	clock    *audioClock
	frames   chan videoFrame
	done     chan struct{}
	lastDue  time.Time // the sender's: frames leave in order
	started  bool      // a keyframe went out on time
	seq      uint16
	report   reporter
	closeOne sync.Once
}

// videoQueue is how many frames may wait (about 4 s at 30 fps, far more
// than any audio lag); past it a frame is sent without its wait, once a
// slot frees.
const videoQueue = 128

func newVideoOut(conn *net.UDPConn, pt uint8, ssrc uint32, clock *audioClock, epoch *reportEpoch) *videoOut {
	v := &videoOut{conn: conn, pt: pt, ssrc: ssrc, clock: clock, frames: make(chan videoFrame, videoQueue), done: make(chan struct{}),
		report: reporter{epoch: epoch, ssrc: ssrc}}
	go v.run()
	return v
}

// send queues a frame to leave with its audio; called by the
// connection's goroutine.
func (v *videoOut) send(f videoFrame) {
	select {
	case v.frames <- f:
	default:
		f.arrived = time.Time{} // late already: no wait
		v.frames <- f           // the queue moves on its own; this waits for one slot
	}
}

func (v *videoOut) run() {
	defer close(v.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for f := range v.frames {
		due := time.Now()
		waited := false
		if !f.arrived.IsZero() {
			if v.clock.expected.Load() && !v.clock.valid.Load() {
				waited = true
				// The audio is coming but its clock is not known yet:
				// the first frames would otherwise run ahead of it
				// (and a recording would place the video by them).
				if d := time.Until(f.arrived.Add(maxVideoWait)); d > 0 {
					timer.Reset(d)
					select {
					case <-v.clock.ready:
						timer.Stop()
					case <-timer.C:
					}
				}
			}
			due = v.clock.due(f.sm, time.Now())
		}
		if !v.started {
			// The stream starts on a keyframe sent on time: frames that
			// waited for the audio's clock and are late now would be
			// the first a recording places the video by (it goes by
			// when the first packets came), a late start for the whole
			// video.
			if !f.key || waited && time.Since(due) > startLate {
				continue
			}
			v.started = true
		}
		if due.Before(v.lastDue) {
			due = v.lastDue
		}
		v.lastDue = due
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			<-timer.C
		}
		v.write(f)
	}
}

func (v *videoOut) write(f videoFrame) {
	v.report.before(v.conn, uint32(uint64(f.sm)*90), f.sm*int64(time.Millisecond), time.Now())
	for i, p := range f.payloads {
		pkt := rtp.Packet{Header: rtp.Header{
			Version: 2, PayloadType: v.pt, SequenceNumber: v.seq,
			Timestamp: uint32(uint64(f.sm) * 90), SSRC: v.ssrc, Marker: i == len(f.payloads)-1,
		}, Payload: p}
		v.seq++
		b, err := pkt.Marshal()
		if err != nil {
			continue
		}
		// A full socket buffer or an ingest that just closed loses a
		// packet, as the network would: the publisher is not dropped.
		_, _ = v.conn.Write(b)
		v.report.sent(len(p))
	}
}

// close stops the sender (frames still queued are dropped with the
// stage) and waits for it.
func (v *videoOut) close() {
	v.closeOne.Do(func() { close(v.frames) })
	<-v.done
}

// audioRelay takes ffmpeg's Opus RTP and sends it into the room on the
// publisher's clock, measuring how late it comes.
type audioRelay struct {
	in     *net.UDPConn // ffmpeg sends here
	out    *net.UDPConn // to the ingest's audio endpoint
	pt     uint8
	ssrc   uint32
	seq    *atomic.Uint32 // the stream's audio numbering, across transcoders
	clock  *audioClock    // the stream's, which the video follows
	start  atomic.Int64   // stream ms of the first AAC frame given to ffmpeg
	begun  atomic.Bool
	report reporter
	done   chan struct{}
}

func newAudioRelay(to *net.UDPAddr, pt uint8, ssrc uint32, seq *atomic.Uint32, clock *audioClock, epoch *reportEpoch) (*audioRelay, error) {
	in, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	out, err := net.DialUDP("udp", nil, to)
	if err != nil {
		in.Close()
		return nil, err
	}
	a := &audioRelay{in: in, out: out, pt: pt, ssrc: ssrc, seq: seq, clock: clock, done: make(chan struct{}), report: reporter{epoch: epoch, ssrc: ssrc}}
	go a.run()
	return a, nil
}

// port is where ffmpeg is to send its RTP.
func (a *audioRelay) port() int { return a.in.LocalAddr().(*net.UDPAddr).Port }

// first records the stream time of the first AAC frame handed to ffmpeg:
// its first Opus packet starts there.
func (a *audioRelay) first(sm int64) {
	if !a.begun.Swap(true) {
		a.start.Store(sm)
	}
}

func (a *audioRelay) run() {
	defer close(a.done)
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	var firstTS uint32
	have := false
	var win [outWindow]int64
	n := 0
	for {
		k, err := a.in.Read(buf)
		if err != nil {
			return
		}
		// ffmpeg's RTCP comes here too: only its RTP goes on.
		if k < 12 || buf[0]>>6 != 2 || buf[1]&0x7f != a.pt || !a.begun.Load() {
			continue
		}
		if pkt.Unmarshal(buf[:k]) != nil {
			continue
		}
		if !have {
			firstTS, have = pkt.Timestamp, true
		}
		rel := pkt.Timestamp - firstTS // samples at 48 kHz since the first
		start := a.start.Load()
		pkt.Timestamp = uint32(uint64(start)*48) + rel
		pkt.SequenceNumber = uint16(a.seq.Add(1))
		pkt.SSRC = a.ssrc
		b, err := pkt.Marshal()
		if err != nil {
			continue
		}
		sm := start*int64(time.Millisecond) + int64(rel)*int64(time.Second)/48000
		now := time.Now()
		a.report.before(a.out, pkt.Timestamp, sm, now)
		_, _ = a.out.Write(b)
		a.report.sent(len(pkt.Payload))
		// Stream time 0 on the audio's output clock, by this packet.
		win[n%outWindow] = now.UnixNano() - sm
		n++
		earliest := win[0]
		for _, o := range win[1:min(n, outWindow)] {
			earliest = min(earliest, o)
		}
		a.clock.set(earliest)
	}
}

// close stops the relay; ffmpeg has ended before.
func (a *audioRelay) close() {
	a.in.Close()
	<-a.done
	a.out.Close()
}
