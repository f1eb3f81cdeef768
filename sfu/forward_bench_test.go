package sfu

import (
	"fmt"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// discardWriter stands in for pion's SRTP writer so the benchmark measures
// the SFU's own forwarding work: layer selection, renumbering and header
// rewriting for each consumer.
type discardWriter struct{ n int }

func (d *discardWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	d.n += len(payload) + 12
	return len(payload) + 12, nil
}

func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// benchProducer builds a producer with n connected consumers, bypassing
// PeerConnections.
func benchProducer(b *testing.B, n int) (*Producer, []*Consumer) {
	b.Helper()
	t := &Transport{opts: TransportOptions{Direction: Recv}}
	t.connected.Store(true)
	p := newProducer(t, &inbound{}, KindVideo, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, nil, "s")
	p.layers[0].active.Store(true)
	p.layers[0].ssrc.Store(1234)
	cs := make([]*Consumer, n)
	for i := range cs {
		c := newConsumer(t, p, false)
		c.writer = &discardWriter{}
		c.ssrc = uint32(1000 + i)
		c.pt = 96
		c.target = 0
		cs[i] = c
		next := append(*p.consumers.Load(), c)
		p.consumers.Store(&next)
	}
	return p, cs
}

// BenchmarkForward reports the cost of one incoming packet forwarded to N
// consumers, per forwarded copy (ns/copy) and per incoming packet (ns/op).
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("consumers=%d", n), func(b *testing.B) {
			p, cs := benchProducer(b, n)
			payload := make([]byte, 1100)
			payload[0] = 0x10 // VP8 start of keyframe
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1234, SequenceNumber: 1, Timestamp: 3000}, Payload: payload}
			p.forward(0, pkt) // keyframe: every consumer starts
			payload[0] = 0x00
			b.ReportAllocs()
			b.SetBytes(int64(len(payload) * n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pkt.SequenceNumber++
				if i%3 == 0 {
					pkt.Timestamp += 3000
				}
				p.forward(0, pkt)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/copy")
			for _, c := range cs {
				if pk, _ := c.Stats(); pk < uint64(b.N) {
					b.Fatalf("consumer forwarded %d of %d packets", pk, b.N)
				}
			}
		})
	}
}
