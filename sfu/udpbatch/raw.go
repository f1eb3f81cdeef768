package udpbatch

import (
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// RawSocket reads and writes single datagrams on a kernel UDP socket. On
// linux/amd64 and arm64 each is a raw recvfrom(2) or sendto(2)
// (rawsock_linux.go): a system call announced to the Go scheduler wakes
// the runtime's monitor thread whenever the process was idle, which an SFU
// is between most of the packets it receives, and that thread then polls
// on short sleeps before it dozes off again. Elsewhere, and for link-local
// destinations with a zone, it is the socket's own ReadFromUDPAddrPort and
// WriteToUDPAddrPort.
type RawSocket struct {
	c  *net.UDPConn
	rc syscall.RawConn // nil: no raw calls
	v4 bool            // an AF_INET socket (else AF_INET6)

	rmu   sync.Mutex // one read at a time uses rs
	rs    rawReadScratch
	rfn   func(fd uintptr) bool // reads into rs; built once so reads allocate nothing
	wmu   sync.Mutex            // one write at a time uses ws
	ws    rawWriteScratch
	wfn   func(fd uintptr) bool
	local net.Addr
}

// NewRawSocket wraps c. It does not take ownership: closing c is the
// caller's business, and ends a read or write in progress.
func NewRawSocket(c *net.UDPConn) *RawSocket {
	s := &RawSocket{c: c, local: c.LocalAddr()}
	if rawSupported {
		if rc, err := c.SyscallConn(); err == nil {
			s.rc = rc
			s.rfn, s.wfn = s.rs.recv, s.ws.send
			s.v4 = isV4(c)
		}
	}
	return s
}

// ReadFrom reads one datagram into b, with the read deadline and errors
// of the socket's own reads.
func (s *RawSocket) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	if s.rc == nil || len(b) == 0 {
		return s.c.ReadFromUDPAddrPort(b)
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.rs.buf = b
	err := s.rc.Read(s.rfn)
	s.rs.buf = nil
	if err == nil && s.rs.errno != 0 {
		err = s.rs.errno
	}
	if err != nil {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Source: s.local, Err: err}
	}
	return s.rs.n, s.rs.addr, nil
}

// WriteTo sends b to a as one datagram, with the write deadline and errors
// of the socket's own writes.
func (s *RawSocket) WriteTo(b []byte, a netip.AddrPort) (int, error) {
	ip := a.Addr()
	if s.rc == nil || len(b) == 0 || ip.Zone() != "" || !ip.IsValid() || (s.v4 && !ip.Unmap().Is4()) {
		// What the raw call cannot say, the socket says (and its error
		// for an address it cannot reach is the one callers expect).
		return s.c.WriteToUDPAddrPort(b, a)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.ws.setAddr(a, s.v4)
	s.ws.buf = b
	err := s.rc.Write(s.wfn)
	s.ws.buf = nil
	if err == nil && s.ws.errno != 0 {
		err = s.ws.errno
	}
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: s.local, Addr: net.UDPAddrFromAddrPort(a), Err: err}
	}
	return s.ws.n, nil
}
