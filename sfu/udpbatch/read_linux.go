//go:build linux && (amd64 || arm64)

package udpbatch

import (
	"net"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawReadScratch is one raw recvfrom's arguments and results.
type rawReadScratch struct {
	buf   []byte
	sa    unix.RawSockaddrAny
	n     int
	addr  netip.AddrPort
	errno uintptr
}

// recv is a RawConn.Read callback. The socket is non-blocking, so the
// call never blocks: EAGAIN returns false, and the poller waits for the
// next datagram as it would for any read.
func (s *rawReadScratch) recv(fd uintptr) bool {
	salen := uint32(unsafe.Sizeof(s.sa))
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd,
		uintptr(unsafe.Pointer(&s.buf[0])), uintptr(len(s.buf)), 0,
		uintptr(unsafe.Pointer(&s.sa)), uintptr(unsafe.Pointer(&salen)))
	switch e {
	case unix.EAGAIN:
		return false
	case unix.EINTR:
		return s.recv(fd)
	case 0:
		s.n, s.errno = int(n), 0
		s.addr = s.decode()
	default:
		s.n, s.errno = 0, uintptr(e)
		s.addr = netip.AddrPort{}
	}
	return true
}

// decode reads the sender's address the way the net package reports it:
// IPv4 senders on a dual-stack socket as IPv4-mapped addresses.
func (s *rawReadScratch) decode() netip.AddrPort {
	switch s.sa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&s.sa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&s.sa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(zoneName(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// zoneName names a link-local sender's interface, as the net package does.
func zoneName(index uint32) string {
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(index), 10)
}
