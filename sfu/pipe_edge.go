package sfu

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// The edge end of a pipe (pipe.go): what it receives, and the producers
// it makes of it.

// pipeReader is a read loop's memory, reused for every datagram.
type pipeReader struct {
	plain []byte
	// The subscribers' copies of each packet leave together (srtpout.go).
	batch *udpbatch.Batch
	hdr   rtp.Header
	pkt   rtp.Packet
}

func newPipeReader() *pipeReader {
	return &pipeReader{plain: make([]byte, 1600), batch: new(udpbatch.Batch)}
}

// receive opens one datagram and hands it on: feedback and reports to
// handleRTCP, media to its edge producer's ingress.
func (t *PipeTransport) receive(b []byte, from netip.AddrPort, rs *pipeReader) {
	if isRTCP(b) {
		out, err := t.open.DecryptRTCP(rs.plain[:0], b, nil)
		if err != nil {
			return
		}
		t.learn(from)
		if pkts, err := rtcp.Unmarshal(out); err == nil {
			t.handleRTCP(pkts)
		}
		return
	}
	if t.origin {
		return // media flows the other way
	}
	out, err := t.open.DecryptRTP(rs.plain[:0], b, &rs.hdr)
	if err != nil || rs.pkt.Unmarshal(out) != nil {
		return
	}
	t.learn(from)
	t.received.Add(1)
	s := (*t.ins.Load())[rs.pkt.SSRC]
	if s == nil {
		return // not produced (yet), or closed
	}
	if !s.claimed {
		s.p.claimLayer(s.idx, s.rid, s.ssrc)
		s.claimed = true
	}
	s.p.ingress(s.idx, &rs.pkt, time.Now(), &s.nacks, rs.batch)
}

// learn answers an edge's origin wherever its packets come from, when it
// was given no address.
func (t *PipeTransport) learn(from netip.AddrPort) {
	if t.opts.Remote.IsValid() || !from.IsValid() {
		return
	}
	if cur := t.remote.Load(); cur == nil || cur.AddrPort().Addr().Unmap() != from.Addr().Unmap() || cur.AddrPort().Port() != from.Port() {
		t.remote.Store(net.UDPAddrFromAddrPort(from))
	}
}

// edgeRTCP takes the origin's sender reports and goodbyes.
func (t *PipeTransport) edgeRTCP(pkt rtcp.Packet) {
	ins := *t.ins.Load()
	switch pk := pkt.(type) {
	case *rtcp.SenderReport:
		if s := ins[pk.SSRC]; s != nil {
			s.p.noteSenderReport(pk.SSRC, pk.NTPTime, pk.RTPTime)
		}
	case *rtcp.Goodbye:
		for _, ssrc := range pk.Sources {
			if s := ins[ssrc]; s != nil {
				s.p.Close()
			}
		}
	}
}

// Produce re-creates in the edge's router a producer the origin carries,
// as the origin described it. Its layers' SSRCs are the pipe's; the
// edge's dynacast tells the origin which it needs, so OnLayers is not for
// it.
func (t *PipeTransport) Produce(d PipedProducer) (*Producer, error) {
	if t.origin {
		return nil, fmt.Errorf("pipe %s: produce on the origin end: %w", t.id, ErrInvalidState)
	}
	if err := d.check(); err != nil {
		return nil, fmt.Errorf("pipe %s: produce %s: %w", t.id, d.ID, err)
	}
	inner, err := t.innerFor(d.Owner)
	if err != nil {
		return nil, err
	}
	if _, err := t.router.Producer(d.ID); err == nil {
		return nil, fmt.Errorf("pipe %s: produce %s: the id is taken: %w", t.id, d.ID, ErrInvalidState)
	}
	in := &inbound{mid: "pipe-" + d.ID}
	p := newProducer(inner.Transport, in, d.Kind, d.Codec, d.AppData, d.Stream)
	// The origin's id: a member of the room served here subscribes by the
	// ids the origin announced (docs/cluster.md, "Members on several
	// nodes").
	p.id = d.ID
	p.priority = d.Priority
	p.writePLI = func(ssrc uint32) error {
		t.plis.Add(1)
		return t.sendRTCP(&rtcp.PictureLossIndication{MediaSSRC: ssrc})
	}
	p.writeRTCP = func(pkts []rtcp.Packet) error {
		for _, x := range pkts {
			if n, ok := x.(*rtcp.TransportLayerNack); ok {
				for _, pair := range n.Nacks {
					t.nacks.Add(uint64(len(pair.PacketList())))
				}
			}
		}
		return t.sendRTCP(pkts...)
	}
	e := &pipeEdge{p: p, first: d.Layers[0].SSRC}
	e.need.Store(allLayers)
	p.onLayers = func(active [maxLayers]bool) {
		var m uint32
		for i, a := range active {
			if a {
				m |= 1 << i
			}
		}
		e.need.Store(m)
		t.sendNeed(e)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	ins := *t.ins.Load()
	for _, l := range d.Layers {
		if ins[l.SSRC] != nil {
			t.mu.Unlock()
			return nil, fmt.Errorf("pipe %s: produce %s: SSRC %d is taken: %w", t.id, d.ID, l.SSRC, ErrInvalidState)
		}
	}
	next := make(map[uint32]*pipeIn, len(ins)+len(d.Layers))
	for k, v := range ins {
		next[k] = v
	}
	for i, l := range d.Layers {
		next[l.SSRC] = &pipeIn{p: p, idx: i, rid: l.RID, ssrc: l.SSRC}
	}
	t.ins.Store(&next)
	t.edges[p] = e
	t.mu.Unlock()
	p.OnClose(func() { t.forget(p) })
	if err := t.router.addProducer(p); err != nil {
		p.Close()
		return nil, err
	}
	inner.addProducer(p)
	return p, nil
}

func (d PipedProducer) check() error {
	if d.Kind != KindAudio && d.Kind != KindVideo {
		return fmt.Errorf("kind %q: %w", d.Kind, ErrInvalidState)
	}
	if codecRank(d.Codec) < 0 {
		return fmt.Errorf("codec %s %q is not accepted: %w", d.Codec.MimeType, d.Codec.SDPFmtpLine, ErrInvalidState)
	}
	if (d.Kind == KindAudio) != strings.HasPrefix(strings.ToLower(d.Codec.MimeType), "audio/") {
		return fmt.Errorf("kind %s with codec %s: %w", d.Kind, d.Codec.MimeType, ErrInvalidState)
	}
	if len(d.Layers) == 0 || len(d.Layers) > maxLayers {
		return fmt.Errorf("%d layers, want 1 to %d: %w", len(d.Layers), maxLayers, ErrInvalidState)
	}
	for _, l := range d.Layers {
		if l.SSRC == 0 {
			return fmt.Errorf("layer without an SSRC: %w", ErrInvalidState)
		}
	}
	return nil
}

// innerFor returns the direct transport the edge's producers of one owner
// live on, so that Producer.Owner is the publisher's as at the origin.
func (t *PipeTransport) innerFor(owner string) (*DirectTransport, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if tr := t.inners[owner]; tr != nil {
		return tr, nil
	}
	tr, err := t.router.NewDirectTransport(owner)
	if err != nil {
		return nil, fmt.Errorf("pipe %s: %w", t.id, err)
	}
	t.inners[owner] = tr
	return tr, nil
}

// forget removes a closed edge producer's streams.
func (t *PipeTransport) forget(p *Producer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.edges, p)
	ins := *t.ins.Load()
	next := make(map[uint32]*pipeIn, len(ins))
	for k, v := range ins {
		if v.p != p {
			next[k] = v
		}
	}
	t.ins.Store(&next)
}

// sendNeed tells the origin which of a producer's layers the edge needs.
func (t *PipeTransport) sendNeed(e *pipeEdge) {
	m := e.need.Load()
	_ = t.sendRTCP(&rtcp.ApplicationDefined{SSRC: e.first, Name: pipeNeedName, Data: []byte{byte(m), 0, 0, 0}})
}
