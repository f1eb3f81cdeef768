package sfu

import (
	"time"

	"github.com/pion/rtcp"
)

// Asking publishers again for lost packets. pion's NACK generator cannot
// do it well for an SFU: it watches the media stream below the point
// where RTX repairs rejoin it, so it never learns that a retransmission
// arrived and keeps asking (every 100 ms until the packet leaves its log,
// some twenty RTX copies per lost packet at 2 Mbit/s). The read loop sees
// every packet, repaired ones included, so the log lives there.

const (
	// nackWindow is how far back a lost packet is still worth asking for
	// (about 2 s of a 2 Mbit/s layer; older is past any jitter buffer).
	nackWindow = 512
	// nackFirst is how long a gap may be reordering before it is
	// reported; nackRetry how long a request waits before it is repeated
	// (the retransmission itself may have been lost); nackTries bounds the
	// requests per packet.
	nackFirst = 10 * time.Millisecond
	nackRetry = 100 * time.Millisecond
	nackTries = 3
	// nackScan is how often a read loop looks for requests to send.
	nackScan = 20 * time.Millisecond
)

// nackLog is one incoming stream's missing packets. Its read loop owns it.
type nackLog struct {
	started  bool
	highest  uint16
	missing  []missingPacket
	lastScan time.Time
	pairs    []rtcp.NackPair // reused between requests
	seqs     []uint16
}

type missingPacket struct {
	seq   uint16
	tries uint8
	next  time.Time // when to ask (again)
}

// received notes packet seq (a new one, a late one, or a repair).
func (l *nackLog) received(seq uint16, now time.Time) {
	if !l.started {
		l.started, l.highest = true, seq
		return
	}
	d := int16(seq - l.highest)
	switch {
	case d > 0 && d <= nackWindow:
		for q := l.highest + 1; q != seq; q++ {
			l.missing = append(l.missing, missingPacket{seq: q, next: now.Add(nackFirst)})
		}
		l.highest = seq
	case d > nackWindow || d < -nackWindow:
		// A jump (the publisher restarted its numbering): nothing in
		// between is worth asking for.
		l.highest = seq
		l.missing = l.missing[:0]
	default:
		for i := range l.missing {
			if l.missing[i].seq == seq {
				l.missing = append(l.missing[:i], l.missing[i+1:]...)
				break
			}
		}
	}
	if len(l.missing) > nackWindow {
		l.missing = l.missing[len(l.missing)-nackWindow:]
	}
}

// due returns the NACK to send now, if any: every missing packet whose
// time has come, each asked for at most nackTries times.
func (l *nackLog) due(now time.Time) []rtcp.NackPair {
	if now.Sub(l.lastScan) < nackScan || len(l.missing) == 0 {
		return nil
	}
	l.lastScan = now
	l.seqs = l.seqs[:0]
	keep := l.missing[:0]
	for _, m := range l.missing {
		if int16(l.highest-m.seq) >= nackWindow {
			continue // too old now
		}
		if !now.Before(m.next) {
			l.seqs = append(l.seqs, m.seq)
			m.tries++
			m.next = now.Add(nackRetry)
		}
		if m.tries < nackTries {
			keep = append(keep, m)
		}
	}
	l.missing = keep
	if len(l.seqs) == 0 {
		return nil
	}
	l.pairs = appendNackPairs(l.pairs[:0], l.seqs)
	return l.pairs
}

// appendNackPairs packs ascending sequence numbers into RFC 4585 generic
// NACK pairs: a packet id and a bitmask of the 16 that follow it.
func appendNackPairs(pairs []rtcp.NackPair, seqs []uint16) []rtcp.NackPair {
	for _, s := range seqs {
		if n := len(pairs); n > 0 {
			if d := s - pairs[n-1].PacketID; d >= 1 && d <= 16 {
				pairs[n-1].LostPackets |= rtcp.PacketBitmap(1 << (d - 1))
				continue
			}
		}
		pairs = append(pairs, rtcp.NackPair{PacketID: s})
	}
	return pairs
}
