// Package udpbatch moves an SFU's datagrams through its UDP sockets at the
// least cost the stack allows. It sends the copies of one forwarded packet
// with as few system calls as it can: on Linux one sendmmsg(2) for up to
// MaxBatch datagrams, elsewhere (and on sockets that are not the operating
// system's, such as pion's vnet) one write each. Its Reader reads them
// without waking the Go runtime's monitor thread (read.go).
//
// On linux/amd64 and arm64 the sendmmsg is a raw system call
// (raw_linux.go): a batch of 64 copies keeps the thread in the kernel for
// a few hundred microseconds, and announced to the Go scheduler that made
// its monitor thread wake and hand the processor to another thread that
// had nothing to do (7–10 % of the SFU's CPU at 100 subscribers in
// docs/benchmarks.md's sitting E). Elsewhere it is x/net's WriteBatch.
package udpbatch

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// MaxBatch is the most datagrams one Flush hands the kernel per call.
const MaxBatch = 64

// BufSize is the room of each queued datagram: an Ethernet-sized RTP
// packet plus the SRTP authentication tag.
const BufSize = 1600

var errBadMessage = errors.New("udpbatch: empty datagram or no address")

// Conn is a UDP socket that batches can send from.
type Conn struct {
	pc net.PacketConn
	bw batchWriter     // nil: no sendmmsg on this socket
	rc syscall.RawConn // non-nil: raw sendmmsg (raw_linux.go)
	v4 bool
}

type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// NewConn wraps pc. It does not take ownership: closing pc is the
// caller's business.
func NewConn(pc net.PacketConn) *Conn {
	c := &Conn{pc: pc}
	if u, ok := pc.(*net.UDPConn); ok {
		if isV4(u) {
			c.bw = ipv4.NewPacketConn(u)
			c.v4 = true
		} else {
			c.bw = ipv6.NewPacketConn(u)
		}
		if rawSupported {
			if rc, err := u.SyscallConn(); err == nil {
				c.rc = rc
			}
		}
	}
	return c
}

// LocalAddr returns the socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// WriteTo sends one datagram at once.
func (c *Conn) WriteTo(b []byte, addr *net.UDPAddr) (int, error) {
	return c.pc.WriteTo(b, addr)
}

// Tracker learns when a datagram it noted actually left: a bandwidth
// estimator, which must not count the time a copy waited in the batch
// (behind the other subscribers' copies being sealed, or a read loop
// the scheduler set aside) as delay on the network.
type Tracker interface {
	OnSent(seq uint16, size int, at time.Time)
}

type note struct {
	t    Tracker
	seq  uint16
	size int
}

// Batch queues datagrams for Flush. It belongs to one goroutine (a
// producer's read loop) and allocates nothing once made.
type Batch struct {
	n     int
	bufs  [MaxBatch][BufSize]byte
	iov   [MaxBatch][1][]byte
	msgs  [MaxBatch]ipv4.Message
	conns [MaxBatch]*Conn
	notes [MaxBatch]note
	raw   rawScratch

	sent, dropped uint64
}

// Buf returns the next free buffer, empty with BufSize of room; Add
// queues what was written to it. A full batch is flushed first.
func (b *Batch) Buf() []byte {
	if b.n == MaxBatch {
		b.Flush()
	}
	return b.bufs[b.n][:0]
}

// Add queues the first n bytes of the buffer Buf returned last, for addr
// from c. addr must stay unchanged until Flush.
func (b *Batch) Add(c *Conn, n int, addr *net.UDPAddr) {
	i := b.n
	b.iov[i][0] = b.bufs[i][:n]
	b.msgs[i].Buffers = b.iov[i][:]
	b.msgs[i].Addr = addr
	b.msgs[i].N = 0
	b.conns[i] = c
	b.notes[i] = note{}
	b.n++
}

// Track asks for t.OnSent(seq, size, at) once the datagram Add queued
// last has been handed to the kernel, at the time it was.
func (b *Batch) Track(t Tracker, seq uint16, size int) {
	if b.n > 0 {
		b.notes[b.n-1] = note{t, seq, size}
	}
}

// Len returns the datagrams queued.
func (b *Batch) Len() int { return b.n }

// Flush sends what is queued, consecutive datagrams of one socket in one
// call. A datagram the kernel refuses is dropped and counted (as a lost
// packet would be), and the rest still go.
func (b *Batch) Flush() {
	i := 0
	for i < b.n {
		c := b.conns[i]
		j := i + 1
		for j < b.n && b.conns[j] == c {
			j++
		}
		b.send(c, b.msgs[i:j])
		b.sentAt(i, j, time.Now())
		i = j
	}
	for k := 0; k < b.n; k++ {
		b.msgs[k].Addr = nil
		b.conns[k] = nil
		b.notes[k] = note{}
	}
	b.n = 0
}

// sentAt tells the trackers of datagrams i to j-1 when they left.
func (b *Batch) sentAt(i, j int, at time.Time) {
	for k := i; k < j; k++ {
		if n := &b.notes[k]; n.t != nil {
			n.t.OnSent(n.seq, n.size, at)
		}
	}
}

func (b *Batch) send(c *Conn, ms []ipv4.Message) {
	if c.bw == nil {
		for k := range ms {
			if _, err := c.pc.WriteTo(ms[k].Buffers[0], ms[k].Addr); err != nil {
				b.dropped++
			} else {
				b.sent++
			}
		}
		return
	}
	for len(ms) > 0 {
		var k int
		var err error
		if c.rc != nil {
			k, err = b.raw.sendRaw(c.rc, c.v4, ms)
		} else {
			k, err = c.bw.WriteBatch(ms, 0)
		}
		if k > 0 {
			b.sent += uint64(k)
			ms = ms[k:]
		}
		if err != nil && k <= 0 {
			// The first datagram was refused (an address the stack
			// rejects, a full buffer on a non-blocking path): skip it.
			b.dropped++
			ms = ms[1:]
		}
	}
}

// Counts returns the datagrams sent and dropped by this batch so far.
func (b *Batch) Counts() (sent, dropped uint64) { return b.sent, b.dropped }

// isV4 reports whether c is an AF_INET socket (bound to an IPv4 address),
// whose sends take IPv4 socket addresses; the others are AF_INET6.
func isV4(c *net.UDPConn) bool {
	a, ok := c.LocalAddr().(*net.UDPAddr)
	return ok && a.IP.To4() != nil
}
