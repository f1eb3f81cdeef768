//go:build !(linux && (amd64 || arm64))

package udpbatch

import (
	"syscall"

	"golang.org/x/net/ipv4"
)

const rawSupported = false

type rawScratch struct{}

func (*rawScratch) sendRaw(syscall.RawConn, bool, []ipv4.Message) (int, error) {
	return 0, errBadMessage
}
