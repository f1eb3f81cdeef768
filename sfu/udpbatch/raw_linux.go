//go:build linux && (amd64 || arm64)

package udpbatch

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// rawSender sends a batch with sendmmsg(2) as a raw system call: the Go
// scheduler is not told (entersyscall), so a long call does not wake the
// runtime's monitor thread or hand the processor to another thread. The
// socket is non-blocking, so the call never blocks; a full buffer
// (EAGAIN) waits for writability through the poller like any write.
type rawScratch struct {
	hdrs [MaxBatch]mmsghdr
	iov  [MaxBatch]unix.Iovec
	sa4  [MaxBatch]unix.RawSockaddrInet4
	sa6  [MaxBatch]unix.RawSockaddrInet6
}

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

const rawSupported = true

// sendRaw sends ms from rc and returns how many went, and the error that
// stopped the first one not sent.
func (r *rawScratch) sendRaw(rc syscall.RawConn, v4 bool, ms []ipv4.Message) (int, error) {
	n := len(ms)
	for i := 0; i < n; i++ {
		b := ms[i].Buffers[0]
		a, _ := ms[i].Addr.(*net.UDPAddr)
		if len(b) == 0 || a == nil {
			return 0, errBadMessage
		}
		r.iov[i].Base = &b[0]
		r.iov[i].SetLen(len(b))
		h := &r.hdrs[i].hdr
		*h = unix.Msghdr{Iov: &r.iov[i], Iovlen: 1}
		if ip4 := a.IP.To4(); v4 && ip4 != nil {
			sa := &r.sa4[i]
			sa.Family = unix.AF_INET
			sa.Port = htons(uint16(a.Port))
			copy(sa.Addr[:], ip4)
			h.Name = (*byte)(unsafe.Pointer(sa))
			h.Namelen = unix.SizeofSockaddrInet4
		} else {
			sa := &r.sa6[i]
			*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6}
			sa.Port = htons(uint16(a.Port))
			copy(sa.Addr[:], a.IP.To16())
			h.Name = (*byte)(unsafe.Pointer(sa))
			h.Namelen = unix.SizeofSockaddrInet6
		}
	}
	var sent int
	var errno syscall.Errno
	err := rc.Write(func(fd uintptr) bool {
		s, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(n), 0, 0, 0)
		if e == unix.EAGAIN {
			return false
		}
		sent, errno = int(s), e
		return true
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return sent, nil
}
