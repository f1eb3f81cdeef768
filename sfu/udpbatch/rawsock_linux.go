//go:build linux && (amd64 || arm64)

package udpbatch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawReadScratch is one raw recvfrom's arguments and results.
type rawReadScratch struct {
	buf   []byte
	sa    unix.RawSockaddrAny
	n     int
	addr  netip.AddrPort
	errno syscall.Errno
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
		s.n, s.errno = 0, e
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
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&s.sa))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(zoneName(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, ntohs(sa.Port))
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
	errno syscall.Errno
}

// setAddr sets the destination: on an AF_INET6 socket an IPv4 address
// goes as IPv4-mapped, as the net package sends it.
func (s *rawWriteScratch) setAddr(a netip.AddrPort, v4 bool) {
	s.v4 = v4
	if v4 {
		s.sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(a.Port()), Addr: a.Addr().Unmap().As4()}
		return
	}
	s.sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(a.Port()), Addr: a.Addr().As16()}
}

// htons and ntohs: sockaddr ports are in network byte order, stored in a
// uint16 of the machine's.
func htons(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func ntohs(p uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], p)
	return binary.BigEndian.Uint16(b[:])
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
		s.n, s.errno = 0, e
	}
	return true
}
