// Package lan holds Matinee's LAN tests: a "phone" in a network namespace
// of its own, joined to the host by a veth pair, that trusts the server's
// local CA over plain HTTP, then publishes and watches media over the
// veth address, with UDP allowed, with UDP blocked (ICE-TCP), and through
// the embedded TURN server; and Chromium that loads the room page over the
// LAN address with only the CA trusted. Run them as root with
//
//	go test ./e2e/lan/
//
// They need root and the Debian packages iproute2, nftables, chromium and
// libnss3-tools. Without them they skip and say why, except under CI=true,
// where they fail instead.
//
// The phone's pion peers run in a child process (this test binary again,
// started with ip netns exec), because goroutines cannot be kept inside a
// network namespace. The namespaces, links and firewall tables are named
// after the test process's PID and removed when each test ends.
package lan
