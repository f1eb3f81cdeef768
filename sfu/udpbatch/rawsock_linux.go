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

// rawWriteScratch is one raw sendto's arguments and results.
type rawWriteScratch struct {
	buf   []byte
	sa4   unix.RawSockaddrInet4
	sa6   unix.RawSockaddrInet6
	v4    bool
	n     int
	errno uintptr
}

// setAddr sets the destination: on an AF_INET6 socket an IPv4 address
// goes as IPv4-mapped, as the net package sends it.
func (s *rawWriteScratch) setAddr(a netip.AddrPort, v4 bool) {
	port := a.Port()
	s.v4 = v4
	if v4 {
		s.sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Addr().Unmap().As4()}
		p := (*[2]byte)(unsafe.Pointer(&s.sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return
	}
	s.sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.Addr().As16()}
	p := (*[2]byte)(unsafe.Pointer(&s.sa6.Port))
	p[0], p[1] = byte(port>>8), byte(port)
}

// send is a RawConn.Write callback; a full send buffer (EAGAIN) waits for
// writability through the poller.
func (s *rawWriteScratch) send(fd uintptr) bool {
	sa, salen := uintptr(unsafe.Pointer(&s.sa6)), uintptr(unix.SizeofSockaddrInet6)
	if s.v4 {
		sa, salen = uintptr(unsafe.Pointer(&s.sa4)), uintptr(unix.SizeofSockaddrInet4)
	}
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd,
		uintptr(unsafe.Pointer(&s.buf[0])), uintptr(len(s.buf)), 0, sa, salen)
	switch e {
	case unix.EAGAIN:
		return false
	case unix.EINTR:
		return s.send(fd)
	case 0:
		s.n, s.errno = int(n), 0
	default:
		s.n, s.errno = 0, uintptr(e)
	}
	return true
}
