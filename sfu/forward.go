package sfu

import (
	"fmt"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/codecs"
	"github.com/matinee-dev/matinee/codecs/vp8"
	"github.com/matinee-dev/matinee/sfu/nackgen"
	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The forwarding path: one published packet, from the socket it arrived
// on to every subscriber's socket, in the order it runs. Nothing on it
// allocates or logs; forward_bench_test.go measures it.
//
//  1. A read loop owns a buffer, an rtp.Packet, a udpbatch.Batch and the
//     stream's nackgen.Log, and reads one packet: readLoop below for a
//     WebRTC publisher (SendTransport), PlainTransport.readLoop for plain
//     RTP (ffmpeg, GStreamer, file and RTMP ingest), PipeTransport.receive
//     for a producer relayed from another router. All three call
//  2. Producer.ingress: video goes through the stream's missing-packet
//     log (nackgen), which NACKs the sender for what is lost and drops
//     duplicates; then
//  3. Producer.forwardAt: the layer's counters, keyframe detection, the
//     packet into the layer's cache (packetcache, which NACKs from
//     subscribers are answered from, retransmit.go), the VP8 temporal
//     descriptor, and the fan-out: Consumer.forward for each consumer,
//     pipeOut.send for each pipe carrying the producer to another router
//     (pipe_origin.go). The batch is flushed last: one sendmmsg for every
//     copy that went to it.
//  4. Consumer.forward, under the consumer's lock: the simulcast layer
//     (switching on a keyframe), the temporal filter, renumbering
//     (rtpmunge), a fresh header with the consumer's SSRC and payload
//     type, a note for retransmission and sender reports, and
//  5. the consumer's egress, which is one of: the own SRTP path
//     (srtpEgress: srtpOut.write, last in this file, seals the packet
//     into the batch), pion's track writer (pionEgress), Go code in
//     process (directEgress: recorders), or plain RTP (*plainConsumer).
//
// docs/architecture.md tells the same path with every kind of publisher
// and subscriber.

// 1. In: a WebRTC publisher's read loop (plain.go and pipe_edge.go have
// the others).

// readLoop reads one incoming track and hands every packet to the
// producer currently attached to its m-section. It owns its buffer and
// packet: nothing is allocated per packet. nacks, when not nil, is a
// missing-packet log that outlives the loop (an SSRC-simulcast encoding
// whose receiver is restarted); the loop has it to itself while it runs.
func readLoop(in *inbound, track *webrtc.TrackRemote, nacks *nackgen.Log) {
	if nacks == nil {
		nacks = &nackgen.Log{}
	}
	buf := make([]byte, 1500)
	// The subscribers' copies of each packet leave together (srtpout.go).
	batch := new(udpbatch.Batch)
	var pkt rtp.Packet
	var cur *Producer
	idx := -1
	rid := track.RID()
	ssrc := uint32(track.SSRC())
	// pion read the first packet already: its payload type named the codec.
	codec := track.Codec().RTPCodecCapability
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		p := in.producer.Load()
		if p == nil {
			continue
		}
		if p != cur {
			p.resolveCodec(codec)
			cur, idx = p, p.layerIndex(rid, ssrc)
		}
		if idx < 0 {
			continue
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		p.ingress(idx, &pkt, time.Now(), nacks, batch)
	}
}

// 2. Ingress: the one way into a router.

// ingress is where every published packet enters the router, whatever
// brought it (a WebRTC publisher's track, a pipe from another router):
// video is checked against the stream's missing-packet log, which asks
// the sender again for what is lost and drops copies of what already
// came, then the packet goes to every consumer, the copies for the SFU's
// own SRTP path batched in b. nacks belongs to the caller's stream and
// goroutine.
func (p *Producer) ingress(idx int, pkt *rtp.Packet, now time.Time, nacks *nackgen.Log, b *udpbatch.Batch) {
	if p.kind == KindVideo {
		fresh := nacks.Received(pkt.SequenceNumber, now)
		if pairs := nacks.Due(now); pairs != nil {
			p.askAgain(pkt.SSRC, pairs)
		}
		if !fresh {
			return // a copy: see nackgen.Log
		}
	}
	p.forwardAt(idx, pkt, now, b)
}

// askAgain sends the publisher a NACK for the given lost packets.
func (p *Producer) askAgain(ssrc uint32, pairs []rtcp.NackPair) {
	if p.writeRTCP == nil {
		return
	}
	_ = p.writeRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: pairs}})
}

// 3. Fan-out.

// forward is the hot path: one packet from one layer to every consumer.
func (p *Producer) forward(idx int, pkt *rtp.Packet) { p.forwardAt(idx, pkt, time.Now(), nil) }

// forwardAt is forward for a packet read at now (the read loop has the
// time already). Copies for subscribers on the SFU's own SRTP path are
// queued in b, when given, and sent together at the end.
func (p *Producer) forwardAt(idx int, pkt *rtp.Packet, now time.Time, b *udpbatch.Batch) {
	if p.paused.Load() {
		return
	}
	l := &p.layers[idx]
	l.bytes.Add(uint64(len(pkt.Payload) + 12))
	l.lastPacket.Store(now.UnixNano())
	if pkt.Marker {
		l.frames.Add(1)
	}
	isKey := p.kind == KindAudio
	kfc := codecs.Codec(p.kfCodec.Load())
	if !isKey && len(pkt.Payload) > 0 {
		isKey = codecs.IsKeyframe(kfc, pkt.Payload)
		if isKey {
			l.lastKeyframe.Store(now.UnixNano())
			if w, h, ok := codecs.Dimensions(kfc, pkt.Payload); ok {
				l.width.Store(uint32(w))
				l.height.Store(uint32(h))
			}
		}
	}
	if p.kind == KindVideo {
		// Before any consumer sends it: a NACK may follow at once.
		p.cache(idx).Put(pkt)
	}
	var d vp8.Descriptor
	desc := l.temporal.parse(kfc, pkt, now, &d)
	cs := *p.consumers.Load()
	for _, c := range cs {
		c.forward(idx, pkt, isKey, desc, now, b)
	}
	ps := p.pipes.Load()
	if ps != nil {
		for _, o := range *ps {
			o.send(idx, pkt)
		}
	}
	if b != nil && b.Len() > 0 {
		b.Flush()
	}
	if p.stats != nil && (len(cs) > 0 || (ps != nil && len(*ps) > 0)) {
		p.stats.forward.observe(time.Since(now))
	}
}

// 4. Per consumer: layer, temporal filter, renumbering, header.

// forward sends one packet if it belongs to the layer being forwarded,
// switching layers on the target layer's keyframe, and (for VP8, with desc
// its payload descriptor) if it belongs to a temporal layer wanted. It
// allocates nothing.
func (c *Consumer) forward(idx int, pkt *rtp.Packet, isKey bool, desc *vp8.Descriptor, now time.Time, b *udpbatch.Batch) {
	if c.paused.Load() {
		return
	}
	c.mu.Lock()
	if c.writer == nil || c.closed || !c.transport.connected.Load() {
		c.mu.Unlock()
		return
	}
	switched := false
	if idx != c.current {
		if !isKey || !c.takes(idx) {
			c.mu.Unlock()
			return
		}
		c.current = idx
		switched = true
		c.munger.Sync(pkt.SequenceNumber, pkt.Timestamp, now)
		c.tl.switched()
	}
	if len(pkt.Payload) == 0 {
		// Padding from the publisher's bandwidth probing: not ours to send.
		c.munger.Drop(pkt.SequenceNumber)
		c.mu.Unlock()
		return
	}
	payload := pkt.Payload
	tlChanged := false
	if desc != nil {
		var fwd bool
		payload, fwd, tlChanged = c.tl.filter(desc, isKey, pkt.Timestamp, c.temporalFor(), pkt.Payload, &c.payloadBuf)
		if !fwd {
			// A whole frame above the temporal target: its sequence
			// numbers leave the output, so the subscriber sees no loss.
			c.munger.Drop(pkt.SequenceNumber)
			tl := c.tl.current
			c.mu.Unlock()
			if tlChanged {
				c.notifyLayer(idx, c.reportedTemporal(idx, tl), false)
			}
			return
		}
	}
	seq, ts, ok := c.munger.Map(pkt.SequenceNumber, pkt.Timestamp, now)
	if !ok {
		c.mu.Unlock()
		return
	}
	h := &c.hdr
	h.Version = 2
	h.Padding = false
	h.Marker = pkt.Marker
	h.PayloadType = c.pt
	h.SequenceNumber = seq
	h.Timestamp = ts
	h.SSRC = c.ssrc
	h.CSRC = pkt.CSRC
	// The publisher's header extensions use its own ids; the interceptors
	// add the ones negotiated with this subscriber.
	h.Extension = false
	h.ExtensionProfile = 0
	h.Extensions = c.ext[:0]
	h.PaddingSize = 0
	c.note(seq, ts, pkt.Marker, idx, pkt.SequenceNumber, desc != nil)
	c.noteSent(ts, len(payload), now)
	n, err := c.write(b, h, payload)
	tl := c.tl.current
	c.mu.Unlock()
	if err == nil {
		c.packets.Add(1)
		c.bytes.Add(uint64(n))
	}
	if (switched || tlChanged) && c.producer.kind == KindVideo {
		c.notifyLayer(idx, c.reportedTemporal(idx, tl), switched)
	}
}

// write sends one packet through the consumer's egress, with c.mu held
// and c.writer set: into b if the caller batches and the egress can.
func (c *Consumer) write(b *udpbatch.Batch, h *rtp.Header, payload []byte) (int, error) {
	return c.writer.writeRTP(b, h, payload)
}

// takes reports whether a keyframe on layer idx may become the forwarded
// layer. The target always may. So may any layer below the target but
// above the current one: a subscriber that is starting, or waiting for the
// target's keyframe, gets a picture from whichever layer keyframes first
// and climbs from there, instead of showing nothing until the target's
// own keyframe arrives. Called with c.mu held.
func (c *Consumer) takes(idx int) bool {
	return idx == c.target || (idx < c.target && idx > c.current)
}

// 5. Out: the egress a consumer writes through (egress.go chooses it).

// egress is a consumer's way out: where its renumbered packets go. Every
// kind of subscriber sits behind it, so the forwarding path (forward.go)
// does not know which it is writing to:
//
//   - srtpEgress: the SFU's own SRTP path of a WebRTC receive transport
//     (srtpout.go), sealed into the read loop's batch, one sendmmsg for
//     every subscriber's copy;
//   - pionEgress: pion's path, the TrackLocalWriter pion gave the
//     consumer when it bound the track (interceptors, pion's SRTP, ICE);
//   - directEgress: Go code in this process (a recorder), through a
//     PacketWriter;
//   - *plainConsumer: plain RTP over UDP to a tool such as ffmpeg
//     (plain.go).
//
// writeRTP is called with the consumer's lock held, on the producer's
// read goroutine (or a NACK's or probe's): it must not block, must not
// keep h or payload (both are reused), and must not allocate. b, when not
// nil, is the caller's batch, which it flushes once every consumer has its
// copy; an egress that cannot batch writes at once. It returns the bytes
// put on the wire.
type egress interface {
	writeRTP(b *udpbatch.Batch, h *rtp.Header, payload []byte) (int, error)
}

// pionEgress hands packets to pion's writer for the consumer's track.
type pionEgress struct{ w PacketWriter }

func (e pionEgress) writeRTP(_ *udpbatch.Batch, h *rtp.Header, payload []byte) (int, error) {
	return e.w.WriteRTP(h, payload)
}

// directEgress hands packets to Go code (DirectTransport).
type directEgress struct{ w PacketWriter }

func (e directEgress) writeRTP(_ *udpbatch.Batch, h *rtp.Header, payload []byte) (int, error) {
	return e.w.WriteRTP(h, payload)
}

// srtpEgress is a consumer's share of its transport's own SRTP path: the
// path, and the id of the transport-wide sequence number extension in the
// consumer's m-section (0: not negotiated there, the packet goes without).
type srtpEgress struct {
	o    *srtpOut
	twcc uint8
}

func (e *srtpEgress) writeRTP(b *udpbatch.Batch, h *rtp.Header, payload []byte) (int, error) {
	return e.o.write(b, h, payload, e.twcc)
}

// 6. The own SRTP path's write: seal into the batch (srtpout.go sets the
// path up).

// singleBufs hold the packets written outside a batch (retransmissions,
// mostly) while they are sealed and sent: shared by every transport rather
// than a buffer each.
var singleBufs = sync.Pool{New: func() any { return new([udpbatch.BufSize]byte) }}

// write sends one RTP packet (h, payload) to the subscriber, with the
// transport-wide sequence number in extension id (none when 0: a stream
// whose m-section did not negotiate it must not carry it, or the
// subscriber, which ignores it there, would report the number lost): into b when
// the caller batches (a producer's read loop, which flushes b once every
// consumer has its copy), at once otherwise. It returns the bytes put on
// the wire.
func (o *srtpOut) write(b *udpbatch.Batch, h *rtp.Header, payload []byte, id uint8) (int, error) {
	d := o.dest.Load()
	if d == nil {
		return 0, errNoPath
	}
	var buf []byte
	if b != nil {
		buf = b.Buf()
	} else {
		sb := singleBufs.Get().(*[udpbatch.BufSize]byte)
		defer singleBufs.Put(sb)
		buf = sb[:0]
	}
	o.mu.Lock()
	seq := o.twccSeq
	if id != 0 {
		o.twccSeq++
		o.twccBuf[0], o.twccBuf[1] = byte(seq>>8), byte(seq)
		if err := h.SetExtension(id, o.twccBuf[:]); err != nil {
			o.mu.Unlock()
			return 0, fmt.Errorf("twcc extension: %w", err)
		}
	}
	hl := h.MarshalSize()
	n := hl + len(payload)
	if n+16 > cap(buf) {
		o.mu.Unlock()
		return 0, fmt.Errorf("rtp packet of %d bytes: too large", n)
	}
	buf = buf[:n]
	if _, err := h.MarshalTo(buf); err != nil {
		o.mu.Unlock()
		return 0, fmt.Errorf("marshal rtp header: %w", err)
	}
	copy(buf[hl:], payload)
	var out []byte
	var err error
	if o.gcm != nil {
		out, err = o.gcm.Seal(o.stream(h.SSRC), buf, hl, h.SSRC, h.SequenceNumber)
	} else {
		out, err = o.ctx.EncryptRTP(buf, buf, &o.scratch)
	}
	if err != nil {
		o.mu.Unlock()
		return 0, fmt.Errorf("srtp: %w", err)
	}
	if len(out) > 0 && &out[0] != &buf[0] {
		// EncryptRTP had to grow the buffer (it never should: there is
		// room for the tag); the batch sends only its own buffers.
		out = buf[:copy(buf[:cap(buf)], out)]
	}
	if b == nil {
		_, err = d.conn.WriteTo(out, d.addr)
	}
	o.mu.Unlock()
	if b != nil {
		b.Add(d.conn, len(out), d.addr)
		if id != 0 && o.t.bwe != nil {
			// Its departure is when the batch leaves: see
			// udpbatch.Tracker.
			b.Track(o.t.bwe, seq, n)
		}
	} else if id != 0 && o.t.bwe != nil {
		o.t.bwe.OnSent(seq, n, time.Now())
	}
	if err != nil {
		return 0, err
	}
	return len(out), nil
}
