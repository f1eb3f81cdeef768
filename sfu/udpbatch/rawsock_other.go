//go:build !(linux && (amd64 || arm64))

package udpbatch

import (
	"net/netip"
	"syscall"
)

type rawReadScratch struct {
	buf   []byte
	n     int
	addr  netip.AddrPort
	errno syscall.Errno
}

func (*rawReadScratch) recv(uintptr) bool { return true }

type rawWriteScratch struct {
	buf   []byte
	n     int
	errno syscall.Errno
}

func (*rawWriteScratch) setAddr(netip.AddrPort, bool) {}
func (*rawWriteScratch) send(uintptr) bool            { return true }
