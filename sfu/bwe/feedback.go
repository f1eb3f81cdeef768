package bwe

import (
	"time"

	"github.com/pion/rtcp"
)

// ack is one packet's fate in a TWCC report.
type ack struct {
	seq      uint16
	received bool
	arrival  time.Time // on the receiver's clock; only differences matter
}

// parseFeedback expands a transport-wide CC report into per-packet
// acknowledgements with arrival times.
func parseFeedback(fb *rtcp.TransportLayerCC) []ack {
	out := make([]ack, 0, fb.PacketStatusCount)
	seq := fb.BaseSequenceNumber
	push := func(symbol uint16) {
		if len(out) >= int(fb.PacketStatusCount) {
			return
		}
		out = append(out, ack{seq: seq, received: symbol == rtcp.TypeTCCPacketReceivedSmallDelta || symbol == rtcp.TypeTCCPacketReceivedLargeDelta})
		seq++
	}
	for _, c := range fb.PacketChunks {
		switch ch := c.(type) {
		case *rtcp.RunLengthChunk:
			for i := uint16(0); i < ch.RunLength; i++ {
				push(ch.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range ch.SymbolList {
				push(sym)
			}
		}
	}
	t := time.Unix(0, 0).Add(time.Duration(fb.ReferenceTime) * 64 * time.Millisecond)
	d := 0
	for i := range out {
		if !out[i].received {
			continue
		}
		if d >= len(fb.RecvDeltas) {
			out[i].received = false
			continue
		}
		t = t.Add(time.Duration(fb.RecvDeltas[d].Delta) * time.Microsecond)
		d++
		out[i].arrival = t
	}
	return out
}
