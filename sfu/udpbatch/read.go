package udpbatch

import (
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// Reader reads datagrams from a kernel UDP socket. On linux/amd64 and
// arm64 each read is a raw recvfrom(2) (read_linux.go): a read announced
// to the Go scheduler wakes the runtime's monitor thread whenever the
// process was idle, which it is between most packets an SFU receives, and
// that thread then spins on short sleeps before it dozes off again.
// Elsewhere it is the socket's own ReadFromUDPAddrPort.
type Reader struct {
	c  *net.UDPConn
	rc syscall.RawConn // nil: no raw reads

	mu sync.Mutex // one read at a time uses the fields below
	rs rawReadScratch
	fn func(fd uintptr) bool // reads into rs; built once so reads allocate nothing
}

// NewReader wraps c. It does not take ownership: closing c is the
// caller's business, and ends a read in progress.
func NewReader(c *net.UDPConn) *Reader {
	r := &Reader{c: c}
	if rawSupported {
		if rc, err := c.SyscallConn(); err == nil {
			r.rc = rc
			r.fn = r.rs.recv
		}
	}
	return r
}

// ReadFrom reads one datagram into b, with the read deadline and errors
// of the socket's own reads.
func (r *Reader) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	if r.rc == nil || len(b) == 0 {
		return r.c.ReadFromUDPAddrPort(b)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rs.buf = b
	err := r.rc.Read(r.fn)
	r.rs.buf = nil
	if err != nil {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Source: r.c.LocalAddr(), Err: err}
	}
	if r.rs.errno != 0 {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Source: r.c.LocalAddr(), Err: syscall.Errno(r.rs.errno)}
	}
	return r.rs.n, r.rs.addr, nil
}
