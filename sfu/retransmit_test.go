package sfu

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/matinee-dev/matinee/codecs/vp8"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// rawWriter keeps every packet a consumer sends, payload included.
type rawWriter struct{ pkts []rtp.Packet }

func (w *rawWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.pkts = append(w.pkts, rtp.Packet{Header: *h, Payload: append([]byte(nil), payload...)})
	return len(payload) + 12, nil
}

func (w *rawWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestRetransmitFromCache: a NACKed packet comes back from the producer's
// cache exactly as it first went out — the consumer's own sequence number
// and timestamp, and the VP8 ids the temporal filter rewrote — on the
// media stream, or wrapped as RTX (RFC 4588) when a repair stream was
// negotiated. Packets the cache no longer holds are counted as missed.
func TestRetransmitFromCache(t *testing.T) {
	for _, rtx := range []bool{false, true} {
		p, c, _ := temporalRig(t, 1)
		w := &rawWriter{}
		c.writer = directEgress{w}
		c.tlTarget = 1 // T2 frames are dropped, so ids are rewritten
		if rtx {
			c.rtxSSRC, c.rtxPT = 2, 97
		}
		g := &l1t3{p: p, pic: 1000, tl0: 9}
		g.send(true)
		g.run(t, 40)
		sent := append([]rtp.Packet(nil), w.pkts...)
		w.pkts = nil
		// Ask again for a packet of a rewritten frame, a keyframe packet
		// and one never sent.
		var want []rtp.Packet
		for _, s := range sent {
			var d vp8.Descriptor
			if err := vp8.Parse(s.Payload, &d); err != nil {
				t.Fatal(err)
			}
			if d.PictureID != 1000 && len(want) == 0 {
				want = append(want, s)
			}
		}
		want = append(want, sent[0])
		var nacks []rtcp.NackPair
		for _, s := range want {
			nacks = append(nacks, rtcp.NackPair{PacketID: s.SequenceNumber})
		}
		nacks = append(nacks, rtcp.NackPair{PacketID: sent[len(sent)-1].SequenceNumber + 100})
		c.handleNACK(&rtcp.TransportLayerNack{MediaSSRC: c.ssrc, Nacks: nacks})
		if len(w.pkts) != len(want) {
			t.Fatalf("rtx=%v: %d packets resent, want %d", rtx, len(w.pkts), len(want))
		}
		for i, got := range w.pkts {
			orig := want[i]
			payload, seq := got.Payload, got.SequenceNumber
			if rtx {
				if got.SSRC != 2 || got.PayloadType != 97 || len(payload) < 2 {
					t.Fatalf("rtx: SSRC %d PT %d, want the repair stream 2/97", got.SSRC, got.PayloadType)
				}
				seq, payload = binary.BigEndian.Uint16(payload), payload[2:]
			} else if got.SSRC != orig.SSRC || got.PayloadType != orig.PayloadType {
				t.Fatalf("resent on SSRC %d PT %d, want %d/%d", got.SSRC, got.PayloadType, orig.SSRC, orig.PayloadType)
			}
			if seq != orig.SequenceNumber || got.Timestamp != orig.Timestamp || got.Marker != orig.Marker || !bytes.Equal(payload, orig.Payload) {
				t.Errorf("rtx=%v: resent seq %d ts %d differs from the original seq %d ts %d (or its payload)", rtx, seq, got.Timestamp, orig.SequenceNumber, orig.Timestamp)
			}
		}
		if sent, missed := c.Retransmits(); sent != uint64(len(want)) || missed != 1 {
			t.Errorf("rtx=%v: Retransmits() = %d, %d; want %d, 1", rtx, sent, missed, len(want))
		}
		// The same NACK again at once: the subscriber reported one loss
		// twice, so nothing is sent twice.
		w.pkts = nil
		c.handleNACK(&rtcp.TransportLayerNack{MediaSSRC: c.ssrc, Nacks: nacks[:1]})
		if len(w.pkts) != 0 {
			t.Errorf("rtx=%v: a repeated NACK within %v resent again", rtx, resendGap)
		}
		g.checkShared(t)
	}
}

// TestRetransmitPadding: a probe's padding takes sequence numbers of the
// stream, so a subscriber that lost one NACKs it; it is sent again (same
// sequence number and timestamp, padding only) rather than left as a hole
// the subscriber would count as lost and NACK for good.
func TestRetransmitPadding(t *testing.T) {
	p, c, _ := temporalRig(t, 1)
	w := &rawWriter{}
	c.writer = directEgress{w}
	g := &l1t3{p: p, pic: 1000, tl0: 9}
	g.send(true)
	g.run(t, 4)
	c.sendPadding(nil, 1)
	pad := w.pkts[len(w.pkts)-1]
	if !pad.Padding {
		t.Fatalf("the probe sent no padding packet: %+v", pad.Header)
	}
	w.pkts = nil
	c.handleNACK(&rtcp.TransportLayerNack{MediaSSRC: c.ssrc, Nacks: []rtcp.NackPair{{PacketID: pad.SequenceNumber}}})
	if len(w.pkts) != 1 {
		t.Fatalf("%d packets sent for a NACKed padding packet, want 1", len(w.pkts))
	}
	got := w.pkts[0]
	if !got.Padding || got.SequenceNumber != pad.SequenceNumber || got.Timestamp != pad.Timestamp || got.SSRC != pad.SSRC || len(got.Payload) != len(pad.Payload) {
		t.Errorf("resent %+v, want the padding packet %+v again", got.Header, pad.Header)
	}
	if sent, missed := c.Retransmits(); sent != 1 || missed != 0 {
		t.Errorf("Retransmits() = %d, %d; want 1, 0", sent, missed)
	}
}
