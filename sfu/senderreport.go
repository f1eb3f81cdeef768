package sfu

import (
	"github.com/matinee-dev/matinee/internal/ntp"
	"time"

	"github.com/pion/rtcp"
)

// Sender reports to subscribers. The SFU writes them itself, from what
// each consumer sent, instead of through pion's report interceptor: that
// one takes a lock and a clock read on every outgoing packet, and it would
// take a retransmission's old timestamp for the stream's latest. A
// subscriber needs them to line audio up with video (RFC 3550 6.4.1).

// senderReportInterval is how often each consumer reports; browsers
// send theirs about every second too.
const senderReportInterval = time.Second

// clockRate is the RTP clock of the producer's codec.
func (p *Producer) clockRate() uint32 {
	if r := p.codec.Load().ClockRate; r != 0 {
		return r
	}
	if p.kind == KindAudio {
		return 48000
	}
	return 90000
}

// noteSent updates, with c.mu held, what the next sender report says: the
// RTP time of the frame being sent and when it went out, and the counts.
func (c *Consumer) noteSent(ts uint32, payload int, now time.Time) {
	if ts != c.srTS || c.srAt.IsZero() {
		// The first packet of a frame: later ones of the same frame go out
		// late by however long the burst takes, and would skew the mapping.
		c.srTS, c.srAt = ts, now
	}
	c.srPackets++
	c.srOctets += uint32(payload)
}

// senderReport returns the consumer's report at now, or nil before it has
// sent anything.
func (c *Consumer) senderReport(now time.Time) *rtcp.SenderReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writer == nil || c.closed || c.srAt.IsZero() {
		return nil
	}
	elapsed := now.Sub(c.srAt)
	rtpTS := c.srTS + uint32(int64(elapsed)*int64(c.producer.clockRate())/int64(time.Second))
	return &rtcp.SenderReport{SSRC: c.ssrc, NTPTime: ntp.From(now), RTPTime: rtpTS, PacketCount: c.srPackets, OctetCount: c.srOctets}
}

// sendReports sends every consumer's sender report in one compound packet
// when they are due. Router tick only.
func (t *Transport) sendReports(now time.Time) {
	if t.writeRTCP == nil || now.Sub(t.lastReports) < senderReportInterval {
		return
	}
	t.lastReports = now
	var pkts []rtcp.Packet
	for _, c := range t.Consumers() {
		if sr := c.senderReport(now); sr != nil {
			pkts = append(pkts, sr)
		}
	}
	if len(pkts) > 0 {
		_ = t.writeRTCP(pkts)
	}
}
