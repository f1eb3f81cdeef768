package sfu

import (
	"context"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// FuzzPipeRTCP: whatever RTCP the far end of a pipe sends (after its
// SRTCP opened: a node holding the key, or a bug in one), the origin's and
// the edge's handling neither panic nor block. Seeds: each kind a pipe
// uses, on a piped producer's SSRC.
func FuzzPipeRTCP(f *testing.F) {
	origin, edge := newPlainRouter(f), newPlainRouter(f)
	in, err := origin.NewPlainTransport(PlainTransportOptions{Owner: "fuzz", RTCPMux: true, Comedia: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(in.Close)
	if _, err := in.Produce(PlainProduceOptions{Kind: KindVideo, Codec: plainH264, PayloadType: 96}); err != nil {
		f.Fatal(err)
	}
	toEdge, toOrigin := NewPipeKey(), NewPipeKey()
	ep, err := edge.AcceptPipe(context.Background(), PipeOptions{SendKey: toOrigin, RecvKey: toEdge})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(ep.Close)
	piped := make(chan uint32, 1)
	op, err := origin.PipeTo(context.Background(), PipeOptions{Remote: ep.LocalAddr(), SendKey: toEdge, RecvKey: toOrigin,
		OnProducer: func(d PipedProducer) {
			if _, err := ep.Produce(d); err == nil && len(d.Layers) > 0 {
				piped <- d.Layers[0].SSRC
			}
		}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(op.Close)
	var ssrc uint32
	select {
	case ssrc = <-piped:
	case <-time.After(5 * time.Second):
		f.Fatal("the producer was not piped")
	}
	for _, pkts := range [][]rtcp.Packet{
		{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: 1, LostPackets: 0xffff}}}},
		{&rtcp.PictureLossIndication{MediaSSRC: ssrc}},
		{&rtcp.FullIntraRequest{FIR: []rtcp.FIREntry{{SSRC: ssrc}}}},
		{&rtcp.ApplicationDefined{SSRC: ssrc, Name: pipeNeedName, Data: []byte{7, 0, 0, 0}}},
		{&rtcp.SenderReport{SSRC: ssrc, NTPTime: 1 << 40, RTPTime: 9000}},
		{&rtcp.Goodbye{Sources: []uint32{ssrc + 1}}},
	} {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pkts, err := rtcp.Unmarshal(b)
		if err != nil {
			return
		}
		op.handleRTCP(pkts)
		ep.handleRTCP(pkts)
	})
}
