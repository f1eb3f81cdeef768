// Package nackgen asks a sender again for the RTP packets it lost, and
// tells copies of packets a stream already has from new ones.
//
// It exists because pion's NACK generator cannot do this well for an SFU:
// it watches the media stream below the point where RTX repairs rejoin
// it, so it never learns that a retransmission arrived and keeps asking
// (every 100 ms until the packet leaves its log, some twenty RTX copies
// per lost packet at 2 Mbit/s). The SFU's read loop sees every packet,
// repaired ones included, so the log lives there; it is its own package
// so that this small piece of the hot path can be read, tested and
// benchmarked alone (like sfu/rtpmunge).
//
// A Log belongs to one incoming stream and is not safe for concurrent
// use: its read loop owns it.
package nackgen

import (
	"time"

	"github.com/pion/rtcp"
)

const (
	// Window is how far back a lost packet is still worth asking for
	// (about 2 s of a 2 Mbit/s layer; older is past any jitter buffer).
	Window = 512
	// First is how long a gap may be reordering before it is
	// reported; Retry how long a request waits before it is repeated
	// (the retransmission itself may have been lost); Tries bounds the
	// requests per packet.
	First = 10 * time.Millisecond
	Retry = 100 * time.Millisecond
	Tries = 3
	// Scan is how often a read loop looks for requests to send.
	Scan = 20 * time.Millisecond
)

// Log is one incoming stream's missing packets, and which of the last
// Window it has: a packet it already has is a duplicate. Publishers
// send those: a repair of a packet that was only late, and Chromium's
// bandwidth probes, which are RTX copies of the last packets sent (ten
// copies of one packet in a burst at a share's start). Forwarded, each
// copy took a new transport-wide sequence number to the subscriber, whose
// SRTP replay check dropped it unseen: its TWCC feedback reported them
// lost, a third of the packets at a share's start, and the subscriber's
// estimate fell for nothing. Its read loop owns it; the zero Log is
// ready to use, and starts at the first packet it is given.
type Log struct {
	started  bool
	highest  uint16
	have     [Window / 64]uint64 // bit seq%Window: received
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

// Received notes packet seq (a new one, a late one, or a repair) and
// reports whether it is new to the stream: false for a copy of one it
// already has, which is not to be forwarded.
func (l *Log) Received(seq uint16, now time.Time) bool {
	if !l.started {
		l.started, l.highest = true, seq
		l.have = [Window / 64]uint64{}
		l.mark(seq, true)
		return true
	}
	d := int16(seq - l.highest)
	switch {
	case d > 0 && d <= Window:
		for q := l.highest + 1; q != seq; q++ {
			l.missing = append(l.missing, missingPacket{seq: q, next: now.Add(First)})
			l.mark(q, false)
		}
		l.highest = seq
	case d > Window || d < -Window:
		// A jump (the publisher restarted its numbering): nothing in
		// between is worth asking for, nor known.
		l.highest = seq
		l.missing = l.missing[:0]
		l.have = [Window / 64]uint64{}
	case d == -Window || l.has(seq):
		return false // a copy, or as old as the window
	default:
		for i := range l.missing {
			if l.missing[i].seq == seq {
				l.missing = append(l.missing[:i], l.missing[i+1:]...)
				break
			}
		}
	}
	l.mark(seq, true)
	if len(l.missing) > Window {
		l.missing = l.missing[len(l.missing)-Window:]
	}
	return true
}

func (l *Log) has(seq uint16) bool {
	i := seq % Window
	return l.have[i/64]&(1<<(i%64)) != 0
}

func (l *Log) mark(seq uint16, got bool) {
	i := seq % Window
	if got {
		l.have[i/64] |= 1 << (i % 64)
	} else {
		l.have[i/64] &^= 1 << (i % 64)
	}
}

// Due returns the NACK to send now, if any: every missing packet whose
// time has come, each asked for at most Tries times. The pairs are the
// Log's own, reused by the next call: send them before calling again.
func (l *Log) Due(now time.Time) []rtcp.NackPair {
	if now.Sub(l.lastScan) < Scan || len(l.missing) == 0 {
		return nil
	}
	l.lastScan = now
	l.seqs = l.seqs[:0]
	keep := l.missing[:0]
	for _, m := range l.missing {
		if int16(l.highest-m.seq) >= Window {
			continue // too old now
		}
		if !now.Before(m.next) {
			l.seqs = append(l.seqs, m.seq)
			m.tries++
			m.next = now.Add(Retry)
		}
		if m.tries < Tries {
			keep = append(keep, m)
		}
	}
	l.missing = keep
	if len(l.seqs) == 0 {
		return nil
	}
	l.pairs = appendPairs(l.pairs[:0], l.seqs)
	return l.pairs
}

// appendPairs packs ascending sequence numbers into RFC 4585 generic
// NACK pairs: a packet id and a bitmask of the 16 that follow it.
func appendPairs(pairs []rtcp.NackPair, seqs []uint16) []rtcp.NackPair {
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
