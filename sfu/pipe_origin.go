package sfu

import (
	"encoding/binary"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// The origin end of a pipe (pipe.go): what it sends, and how it serves
// the edge's feedback.

// carry starts sending producer p (origin).
func (t *PipeTransport) carry(p *Producer) {
	o := &pipeOut{t: t, p: p}
	o.need.Store(allLayers)
	n := 1
	if p.kind == KindVideo {
		n = maxLayers
	}
	t.mu.Lock()
	if t.closed || t.outs[p] != nil {
		t.mu.Unlock()
		return
	}
	for i := 0; i < n; i++ {
		s := newSSRC()
		for _, taken := t.outBy[s]; s == 0 || taken; _, taken = t.outBy[s] {
			s = newSSRC()
		}
		o.ssrcs[i] = s
		t.outBy[s] = pipeRef{o: o, idx: i}
	}
	t.outs[p] = o
	t.mu.Unlock()
	p.attachPipe(o)
	o.cancel = p.OnClose(func() { t.drop(o, true) })
	if t.isClosed() {
		// Close ran meanwhile, maybe before the producer had the pipe.
		o.cancel()
		p.detachPipe(o)
		return
	}
	if t.opts.OnProducer != nil {
		t.opts.OnProducer(o.describe())
	}
}

func (o *pipeOut) describe() PipedProducer {
	p := o.p
	d := PipedProducer{ID: p.id, Owner: p.Owner(), Kind: p.kind, Codec: p.format(), Stream: p.stream, AppData: p.appData}
	p.mu.Lock()
	d.Priority = p.priority
	for i, s := range o.ssrcs {
		if s != 0 {
			d.Layers = append(d.Layers, PipedLayer{RID: p.layers[i].rid, SSRC: s})
		}
	}
	p.mu.Unlock()
	return d
}

// drop stops carrying o's producer, telling the edge with a BYE when bye.
func (t *PipeTransport) drop(o *pipeOut, bye bool) {
	t.mu.Lock()
	if t.outs[o.p] != o {
		t.mu.Unlock()
		return
	}
	delete(t.outs, o.p)
	var ssrcs []uint32
	for _, s := range o.ssrcs {
		if s != 0 {
			delete(t.outBy, s)
			ssrcs = append(ssrcs, s)
		}
	}
	t.mu.Unlock()
	o.p.detachPipe(o)
	if bye {
		_ = t.sendRTCP(&rtcp.Goodbye{Sources: ssrcs, Reason: "producer closed"})
		if t.opts.OnProducerClosed != nil {
			t.opts.OnProducerClosed(o.p.id)
		}
	}
}

// attachPipe adds a pipe to what the producer's packets go to.
func (p *Producer) attachPipe(o *pipeOut) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var old []*pipeOut
	if ps := p.pipes.Load(); ps != nil {
		old = *ps
	}
	next := append(append(make([]*pipeOut, 0, len(old)+1), old...), o)
	p.pipes.Store(&next)
}

func (p *Producer) detachPipe(o *pipeOut) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.pipes.Load()
	if ps == nil {
		return
	}
	next := make([]*pipeOut, 0, len(*ps))
	for _, x := range *ps {
		if x != o {
			next = append(next, x)
		}
	}
	p.pipes.Store(&next)
}

// send carries one packet of layer idx, if the edge needs the layer. It
// runs on the producer's read goroutine and allocates nothing.
func (o *pipeOut) send(idx int, pkt *rtp.Packet) {
	if o.need.Load()&(1<<idx) == 0 {
		return
	}
	o.t.sendRTP(o, idx, pkt.PayloadType, pkt.SequenceNumber, pkt.Timestamp, pkt.Marker, pkt.Payload)
}

// sendRTP seals and sends one packet of o's layer idx: the publisher's
// header without its extensions (their ids are its own), under the
// layer's pipe SSRC.
func (t *PipeTransport) sendRTP(o *pipeOut, idx int, pt uint8, seq uint16, ts uint32, marker bool, payload []byte) {
	dst := t.remote.Load()
	if dst == nil || len(payload) > maxCachedPayload {
		return
	}
	ssrc := o.ssrcs[idx]
	t.sendMu.Lock()
	b := t.buf[:12+len(payload)]
	b[0] = 0x80
	b[1] = pt & 0x7f
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	copy(b[12:], payload)
	out, err := t.sealer.Seal(&o.streams[idx], b, 12, ssrc, seq)
	if err == nil {
		err = t.write(out, dst)
	}
	t.sendMu.Unlock()
	if err == nil {
		t.sent.Add(1)
	}
}

func (t *PipeTransport) lookupOut(ssrc uint32) (pipeRef, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.outBy[ssrc]
	return r, ok
}

// originRTCP serves an edge's feedback.
func (t *PipeTransport) originRTCP(pkt rtcp.Packet) {
	switch pk := pkt.(type) {
	case *rtcp.TransportLayerNack:
		r, ok := t.lookupOut(pk.MediaSSRC)
		if !ok {
			return
		}
		for _, pair := range pk.Nacks {
			pair.Range(func(seq uint16) bool {
				t.nacks.Add(1)
				t.resend(r, seq)
				return true
			})
		}
	case *rtcp.PictureLossIndication:
		t.keyframe(pk.MediaSSRC)
	case *rtcp.FullIntraRequest:
		for _, e := range pk.FIR {
			t.keyframe(e.SSRC)
		}
	case *rtcp.ApplicationDefined:
		if pk.Name != pipeNeedName || len(pk.Data) < 1 {
			return
		}
		t.mu.Lock()
		r, ok := t.outBy[pk.SSRC]
		t.mu.Unlock()
		if ok {
			r.o.need.Store(uint32(pk.Data[0]) & allLayers)
		}
	}
}

// resend sends packet seq of a layer again from its packet cache.
func (t *PipeTransport) resend(r pipeRef, seq uint16) {
	cache := r.o.p.layers[r.idx].cache.Load()
	if cache == nil {
		return
	}
	var payload [maxCachedPayload]byte
	n, ts, pt, marker, ok := cache.GetPacket(seq, payload[:])
	if !ok {
		return
	}
	// The same header and payload as the first time: sealed under the
	// same nonce they give the same bytes, which the edge takes once.
	t.sendRTP(r.o, r.idx, pt, seq, ts, marker, payload[:n])
	t.retransmits.Add(1)
}

// keyframe passes an edge's keyframe request on to the publisher, at
// most once per WorkerConfig.RelayKeyframeInterval for all pipes of the
// producer.
func (t *PipeTransport) keyframe(ssrc uint32) {
	r, ok := t.lookupOut(ssrc)
	if !ok || r.o.p.kind != KindVideo {
		return
	}
	t.plis.Add(1)
	p, idx := r.o.p, r.idx
	p.layers[idx].relayKF.request(p, idx, t.router.w.cfg.RelayKeyframeInterval, func() { p.RequestKeyframe(idx) })
}

// sendReports passes the publishers' latest sender reports on, under the
// pipe's SSRCs: the timestamps are the publishers' own, so they hold.
func (t *PipeTransport) sendReports() {
	t.mu.Lock()
	refs := make([]pipeRef, 0, len(t.outBy))
	for _, r := range t.outBy {
		refs = append(refs, r)
	}
	t.mu.Unlock()
	var srs []rtcp.Packet
	for _, r := range refs {
		l := &r.o.p.layers[r.idx]
		l.srMu.Lock()
		ntp, ts, ok := l.srNTP, l.srRTP, l.srValid
		l.srMu.Unlock()
		if ok {
			srs = append(srs, &rtcp.SenderReport{SSRC: r.o.ssrcs[r.idx], NTPTime: ntp, RTPTime: ts})
		}
	}
	for len(srs) > 0 {
		n := min(len(srs), 16) // well within a datagram
		_ = t.sendRTCP(srs[:n]...)
		srs = srs[n:]
	}
}
