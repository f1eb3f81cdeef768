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

// appendAcks expands a transport-wide CC report into per-packet
// acknowledgements with arrival times, appended to dst (which may be a
// reused slice: nothing is allocated once it has room).
func appendAcks(dst []ack, fb *rtcp.TransportLayerCC) []ack {
	start := len(dst)
	// No more than the ring remembers: a report claiming more (at most
	// 65,535) cannot be matched beyond that, and would only grow dst.
	n := min(int(fb.PacketStatusCount), ringSize)
	seq := fb.BaseSequenceNumber
	for _, c := range fb.PacketChunks {
		switch ch := c.(type) {
		case *rtcp.RunLengthChunk:
			got := isReceived(ch.PacketStatusSymbol)
			for i := uint16(0); i < ch.RunLength && len(dst)-start < n; i++ {
				dst = append(dst, ack{seq: seq, received: got})
				seq++
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range ch.SymbolList {
				if len(dst)-start >= n {
					break
				}
				dst = append(dst, ack{seq: seq, received: isReceived(sym)})
				seq++
			}
		}
	}
	t := time.Unix(0, 0).Add(time.Duration(fb.ReferenceTime) * 64 * time.Millisecond)
	d := 0
	for i := start; i < len(dst); i++ {
		if !dst[i].received {
			continue
		}
		if d >= len(fb.RecvDeltas) {
			dst[i].received = false
			continue
		}
		t = t.Add(time.Duration(fb.RecvDeltas[d].Delta) * time.Microsecond)
		d++
		dst[i].arrival = t
	}
	return dst
}

func isReceived(symbol uint16) bool {
	return symbol == rtcp.TypeTCCPacketReceivedSmallDelta || symbol == rtcp.TypeTCCPacketReceivedLargeDelta
}
