package udpbatch

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

func listen(t testing.TB) *net.UDPConn { return listenOn(t, "udp4", net.IPv4(127, 0, 0, 1)) }

func listenOn(t testing.TB, network string, ip net.IP) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// plainConn hides the *net.UDPConn, as a virtual network's socket would.
type plainConn struct{ net.PacketConn }

func TestFlushDeliversEveryDatagram(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		ip      net.IP
		wrap    func(*net.UDPConn) net.PacketConn
	}{
		{"sendmmsg", "udp4", net.IPv4(127, 0, 0, 1), func(c *net.UDPConn) net.PacketConn { return c }},
		{"sendmmsg-ipv6", "udp6", net.IPv6loopback, func(c *net.UDPConn) net.PacketConn { return c }},
		{"one-by-one", "udp4", net.IPv4(127, 0, 0, 1), func(c *net.UDPConn) net.PacketConn { return plainConn{c} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := NewConn(tc.wrap(listenOn(t, tc.network, tc.ip)))
			batched := tc.name != "one-by-one"
			if (src.bw != nil) != batched {
				t.Fatalf("batch writer %v for %s", src.bw != nil, tc.name)
			}
			if (src.rc != nil) != (batched && rawSupported) {
				t.Fatalf("raw sendmmsg %v for %s (supported here: %v)", src.rc != nil, tc.name, rawSupported)
			}
			const receivers, per = 3, 70 // more than one full batch
			var rx [receivers]*net.UDPConn
			var addrs [receivers]*net.UDPAddr
			for i := range rx {
				rx[i] = listenOn(t, tc.network, tc.ip)
				_ = rx[i].SetReadBuffer(1 << 20)
				addrs[i] = rx[i].LocalAddr().(*net.UDPAddr)
			}
			// A datagram to port 0 is refused by the kernel; the ones
			// after it must still go.
			bad := &net.UDPAddr{IP: tc.ip, Port: 0}
			var b Batch
			for k := 0; k < per; k++ {
				for i := range rx {
					buf := b.Buf()
					buf = binary.BigEndian.AppendUint32(buf, uint32(i<<16|k))
					buf = append(buf, make([]byte, 1100)...)
					b.Add(src, len(buf), addrs[i])
				}
				if k == 5 {
					buf := b.Buf()
					buf = append(buf, 1, 2, 3)
					b.Add(src, len(buf), bad)
				}
			}
			b.Flush()
			sent, dropped := b.Counts()
			if sent != receivers*per || dropped != 1 {
				t.Fatalf("sent %d dropped %d, want %d and 1", sent, dropped, receivers*per)
			}
			for i := range rx {
				_ = rx[i].SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 2000)
				for k := 0; k < per; k++ {
					n, err := rx[i].Read(buf)
					if err != nil {
						t.Fatalf("receiver %d, datagram %d: %v", i, k, err)
					}
					if got := binary.BigEndian.Uint32(buf); n != 1104 || got != uint32(i<<16|k) {
						t.Fatalf("receiver %d got %#x (%d bytes), want %#x", i, got, n, i<<16|k)
					}
				}
			}
		})
	}
}

// BenchmarkFlush sends 64 copies of a 1,200-byte datagram per op to 8
// receivers: the cost of the kernel's work per copy, batched.
func BenchmarkFlush(b *testing.B) {
	src := NewConn(listen(b))
	var addrs [8]*net.UDPAddr
	for i := range addrs {
		rx := listen(b)
		_ = rx.SetReadBuffer(8 << 20)
		addrs[i] = rx.LocalAddr().(*net.UDPAddr)
		go func() {
			buf := make([]byte, 2000)
			for {
				if _, err := rx.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	var bt Batch
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for k := 0; k < MaxBatch; k++ {
			buf := bt.Buf()
			bt.Add(src, 1200, addrs[k%len(addrs)])
			_ = buf
		}
		bt.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*MaxBatch), "ns/copy")
}

type sentLog struct {
	seqs []uint16
	at   []time.Time
}

func (l *sentLog) OnSent(seq uint16, _ int, at time.Time) {
	l.seqs = append(l.seqs, seq)
	l.at = append(l.at, at)
}

// A tracked datagram is reported once it has left, at the time it did:
// not when it was queued, however long the batch took to fill.
func TestTrackReportsDepartureAtFlush(t *testing.T) {
	src := NewConn(listen(t))
	dst := listen(t).LocalAddr().(*net.UDPAddr)
	var b Batch
	var log sentLog
	for k := range MaxBatch + 6 { // one automatic flush, then one by hand
		buf := b.Buf()
		buf = append(buf, byte(k))
		b.Add(src, len(buf), dst)
		if k%2 == 0 {
			b.Track(&log, uint16(k), len(buf))
		}
	}
	if len(log.seqs) != MaxBatch/2 {
		t.Fatalf("%d reported before the last flush, want the first full batch's %d", len(log.seqs), MaxBatch/2)
	}
	queued := time.Now()
	time.Sleep(2 * time.Millisecond) // a batch that waits, as behind a busy read loop
	b.Flush()
	if len(log.seqs) != MaxBatch/2+3 {
		t.Fatalf("%d reported, want %d", len(log.seqs), MaxBatch/2+3)
	}
	for i, s := range log.seqs {
		if int(s) != 2*i {
			t.Fatalf("report %d for datagram %d, want %d", i, s, 2*i)
		}
	}
	for _, at := range log.at[MaxBatch/2:] {
		if at.Sub(queued) < 2*time.Millisecond {
			t.Fatalf("departure reported %v after queueing, before the flush", at.Sub(queued))
		}
	}
	// Untracked datagrams in a reused slot stay untracked.
	buf := b.Buf()
	b.Add(src, len(append(buf, 1)), dst)
	b.Flush()
	if len(log.seqs) != MaxBatch/2+3 {
		t.Fatalf("an untracked datagram was reported")
	}
}
