package sfu

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestPipeLoopback: on real loopback sockets, an H.264 stream sent to a
// plain-RTP producer on one worker plays from a plain-RTP consumer on
// another, through a pipe whose edge learned the origin's address; a
// packet the sender lost is asked for by the origin's ingress (plain RTP
// now gets NACK generation too) and, sent late, reaches the edge's
// consumer in its place. Both pipe ends read and write their sockets with
// raw system calls (udpbatch.RawSocket), as the worker's own sockets do.
func TestPipeLoopback(t *testing.T) {
	origin, edge := newPlainRouter(t), newPlainRouter(t)
	in, err := origin.NewPlainTransport(PlainTransportOptions{Owner: "ffmpeg", RTCPMux: true, Comedia: true})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	toEdge, toOrigin := NewPipeKey(), NewPipeKey()
	ep, err := edge.AcceptPipe(context.Background(), PipeOptions{SendKey: toOrigin, RecvKey: toEdge})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	made := make(chan *Producer, 4)
	op, err := origin.PipeTo(context.Background(), PipeOptions{Remote: ep.LocalAddr(), SendKey: toEdge, RecvKey: toOrigin,
		OnProducer: func(d PipedProducer) {
			p, err := ep.Produce(d)
			if err != nil {
				t.Errorf("produce at the edge: %v", err)
				return
			}
			made <- p
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	// Without raw calls, each piped copy's sendto woke the runtime's
	// monitor thread: a relayed copy cost the origin more than a local
	// one (docs/benchmarks.md, "Relaying across nodes").
	if op.raw == nil || ep.raw == nil {
		t.Errorf("pipe ends on operating system sockets without raw calls: origin %v, edge %v", op.raw != nil, ep.raw != nil)
	}
	if _, err := in.Produce(PlainProduceOptions{Kind: KindVideo, Codec: plainH264, PayloadType: 96}); err != nil {
		t.Fatal(err)
	}
	var ed *Producer
	select {
	case ed = <-made:
	case <-time.After(5 * time.Second):
		t.Fatal("the new producer was not piped")
	}
	if mime, fmtp := ed.Codec(); mime != plainH264.MimeType || fmtp != plainH264.SDPFmtpLine {
		t.Errorf("edge codec %s %q", mime, fmtp)
	}
	out, err := edge.NewPlainTransport(PlainTransportOptions{Owner: "rx", RTCPMux: true})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	rx := udp(t)
	if err := out.Connect(rx.LocalAddr().(*net.UDPAddr), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Consume(ed); err != nil {
		t.Fatal(err)
	}

	tx := udp(t)
	dst, _ := in.Tuple()
	send := func(seq uint16, payload []byte) {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 0xabcdef, Marker: true}, Payload: payload}).Marshal()
		if _, err := tx.WriteToUDP(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	// Keyframes until the edge's consumer starts (the pipe's first
	// packets may beat the edge's producer).
	seq := uint16(100)
	var first *rtp.Packet
	for deadline := time.Now().Add(5 * time.Second); first == nil; seq++ {
		if time.Now().After(deadline) {
			t.Fatal("nothing came out at the edge")
		}
		send(seq, []byte{0x65, byte(seq >> 8), byte(seq), 2})
		if b := read(rx, 100*time.Millisecond); b != nil {
			first = &rtp.Packet{}
			if err := first.Unmarshal(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	// seq is lost on the way to the origin: the next two go first.
	lost := seq
	// Packets keep coming, as in a stream: the origin's ingress looks
	// for what to ask again as they do.
	next := uint16(1)
	nacked := false
	for deadline := time.Now().Add(3 * time.Second); !nacked && time.Now().Before(deadline); next++ {
		send(lost+next, []byte{0x41, byte(next)})
		b := read(tx, 20*time.Millisecond)
		if b == nil || !isRTCP(b) {
			continue
		}
		pkts, err := rtcp.Unmarshal(b)
		if err != nil {
			continue
		}
		for _, p := range pkts {
			if n, ok := p.(*rtcp.TransportLayerNack); ok {
				for _, pair := range n.Nacks {
					for _, s := range pair.PacketList() {
						nacked = nacked || s == lost
					}
				}
			}
		}
	}
	if !nacked {
		t.Fatalf("the origin never asked the plain-RTP sender for packet %d", lost)
	}
	send(lost, []byte{0x41, 0})
	// The edge's consumer keeps the stream's numbering: the late packet
	// fills its place.
	firstIn := uint16(first.Payload[1])<<8 | uint16(first.Payload[2])
	got := 0
	for late := false; !late; {
		b := read(rx, 2*time.Second)
		if b == nil {
			t.Fatalf("edge consumer got %d deltas, and never the late one", got)
		}
		var p rtp.Packet
		if err := p.Unmarshal(b); err != nil || len(p.Payload) < 2 || p.Payload[0] != 0x41 {
			continue // a keyframe sent while waiting
		}
		got++
		late = p.Payload[1] == 0
		in := lost + uint16(p.Payload[1])
		if p.SequenceNumber-first.SequenceNumber != in-firstIn {
			t.Errorf("packet %d came out as %d, %d after the first, want %d", in, p.SequenceNumber, p.SequenceNumber-first.SequenceNumber, in-firstIn)
		}
	}
	if st := ep.Stats(); st.PacketsReceived < 4 {
		t.Errorf("edge stats %+v", st)
	}
}
