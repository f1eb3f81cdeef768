//go:build !(linux && (amd64 || arm64))

package udpbatch

import "net/netip"

type rawReadScratch struct {
	buf   []byte
	n     int
	addr  netip.AddrPort
	errno uintptr
}

func (*rawReadScratch) recv(uintptr) bool { return true }

type rawWriteScratch struct {
	buf   []byte
	n     int
	errno uintptr
}

func (*rawWriteScratch) setAddr(netip.AddrPort, bool) {}
func (*rawWriteScratch) send(uintptr) bool            { return true }
