package sfu

import (
	"fmt"
	"testing"

	"github.com/matinee-dev/matinee/codecs/vp8"
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
	t := &Transport{opts: transportOpts{Direction: Recv}}
	t.connected.Store(true)
	p := newProducer(t, &inbound{}, KindVideo, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, nil, "s")
	p.layers[0].active.Store(true)
	p.layers[0].ssrc.Store(1234)
	cs := make([]*Consumer, n)
	for i := range cs {
		c := newConsumer(t, p, false)
		c.writer = directEgress{&discardWriter{}}
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

// BenchmarkForwardTemporal is BenchmarkForward for an L1T3 VP8 stream of
// which every consumer drops the top temporal layer: each forwarded packet
// gets a rewritten picture id, copied into the consumer's own buffer.
func BenchmarkForwardTemporal(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("consumers=%d", n), func(b *testing.B) {
			p, cs := benchProducer(b, n)
			for _, c := range cs {
				c.tlTarget = 1
			}
			d := vp8.Descriptor{Start: true, HasPictureID: true, LongPictureID: true, HasTL0PICIDX: true, HasTID: true}
			payload := make([]byte, 1100)
			n := len(vp8.Append(payload[:0], &d))
			copy(payload[n:], []byte{0x00, 0, 0, 0x9d, 0x01, 0x2a}) // keyframe: every consumer starts
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1234, SequenceNumber: 1, Timestamp: 3000}, Payload: payload}
			p.forward(0, pkt)
			payload[n] = 0x01 // inter frames from now on
			b.ReportAllocs()
			b.SetBytes(int64(len(payload) * len(cs)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Three packets a frame, frames in the pattern 0,2,1,2.
				pkt.SequenceNumber++
				if i%3 == 0 {
					pkt.Timestamp += 3000
					d.PictureID = (d.PictureID + 1) & 0x7fff
					d.TID = [4]uint8{0, 2, 1, 2}[d.PictureID%4]
					if d.TID == 0 {
						d.TL0PICIDX++
					}
				}
				d.Start = i%3 == 0
				vp8.Append(payload[:0], &d)
				p.forward(0, pkt)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cs)), "ns/copy")
			for _, c := range cs {
				if pk, _ := c.Stats(); pk < uint64(b.N)/2 {
					b.Fatalf("consumer forwarded %d of %d packets, want about 3/4", pk, b.N)
				}
			}
		})
	}
}
