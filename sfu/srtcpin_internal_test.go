package sfu

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// sinkRecorder is an rtcpSink that keeps what it is given.
type sinkRecorder struct {
	mu   sync.Mutex
	pkts []rtcp.Packet
}

func (s *sinkRecorder) onRTCP(pkts []rtcp.Packet) {
	s.mu.Lock()
	s.pkts = append(s.pkts, pkts...)
	s.mu.Unlock()
}

// TestIntakeTakesSubscriberSRTCP: on a real socket, the tap hands the ICE
// mux everything but the registered subscriber's SRTCP, which it decrypts
// and gives to the transport's sinks and counters — except one packet per
// intakePassEvery, left to pion. SRTCP from an unregistered address,
// forged SRTCP and other traffic pass through untouched.
func TestIntakeTakesSubscriberSRTCP(t *testing.T) {
	key, salt := make([]byte, 16), make([]byte, 12)
	for i := range key {
		key[i] = byte(3 * i)
	}
	enc, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	srv, sub, stranger := loopbackUDP(t), loopbackUDP(t), loopbackUDP(t)

	x := &intake{}
	w := &Worker{stats: newStats(), intake: x}
	tr := bareRecv(&Transport{router: &Router{w: w}, log: slog.Default()})
	rec := &sinkRecorder{}
	tr.addSink(rec)
	in, err := newSRTCPIn(tr, key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	in.register(x, sub.LocalAddr().(*net.UDPAddr).AddrPort())
	tap := newTapConn(srv, x)

	to := srv.LocalAddr().(*net.UDPAddr)
	nack := func(seq uint16) []byte {
		b, err := rtcp.Marshal([]rtcp.Packet{
			&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 0xabc, FractionLost: 10}}},
			&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 0xabc, Nacks: []rtcp.NackPair{{PacketID: seq}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		ct, err := enc.EncryptRTCP(nil, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	send := func(c *net.UDPConn, b []byte) {
		t.Helper()
		if _, err := c.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	read := func() ([]byte, netip.AddrPort) {
		t.Helper()
		_ = tap.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 1500)
		n, a, err := tap.ReadFromAddrPort(b)
		if err != nil {
			t.Fatal(err)
		}
		return b[:n], a
	}

	first := nack(1)
	send(sub, first) // the first packet is pion's (lastPass is zero)
	if b, _ := read(); string(b) != string(first) {
		t.Fatal("the first SRTCP packet was not left to pion")
	}
	for i := uint16(2); i <= 5; i++ {
		send(sub, nack(i))
	}
	forged := nack(6)
	forged[len(forged)-1] ^= 1 // fails authentication: dropped, not passed on
	send(sub, forged)
	fromStranger := nack(7)
	send(stranger, fromStranger)
	stun := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	send(sub, stun)
	if b, _ := read(); string(b) != string(fromStranger) {
		t.Fatal("SRTCP from an unregistered address did not reach the mux")
	}
	if b, a := read(); string(b) != string(stun) || a != sub.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatal("a STUN packet from the subscriber did not reach the mux")
	}
	if got := x.taken.Load(); got != 5 {
		t.Fatalf("intake took %d packets, want 5 (4 good, 1 forged)", got)
	}
	rec.mu.Lock()
	var nacks []uint16
	for _, p := range rec.pkts {
		if n, ok := p.(*rtcp.TransportLayerNack); ok {
			nacks = append(nacks, n.Nacks[0].PacketID)
		}
	}
	rec.mu.Unlock()
	if len(nacks) != 4 || nacks[0] != 2 || nacks[3] != 5 {
		t.Fatalf("sinks got NACKs %v, want 2..5", nacks)
	}
	if got := w.stats.nacksIn.Load(); got != 4 {
		t.Fatalf("%d NACKs counted, want 4", got)
	}

	// After unregistering, everything goes to the mux again.
	in.unregister(x)
	again := nack(8)
	send(sub, again)
	if b, _ := read(); string(b) != string(again) {
		t.Fatal("SRTCP of an unregistered transport did not reach the mux")
	}
}

// TestIntakeAddressConflict: an address another transport holds is not
// taken over; pion serves both.
func TestIntakeAddressConflict(t *testing.T) {
	x := &intake{}
	a := netip.MustParseAddrPort("10.0.0.1:5000")
	one, two := &srtcpIn{}, &srtcpIn{}
	one.register(x, a)
	two.register(x, a)
	if x.lookup(a) != one {
		t.Fatal("the first transport lost its address")
	}
	if two.addr.IsValid() {
		t.Fatal("the second transport thinks it holds the address")
	}
	two.unregister(x)
	if x.lookup(a) != one {
		t.Fatal("unregistering the second transport removed the first's address")
	}
	// A move to a new address frees the old one.
	b := netip.MustParseAddrPort("[::ffff:10.0.0.2]:6000")
	one.register(x, b)
	if x.lookup(a) != nil || x.lookup(netip.MustParseAddrPort("10.0.0.2:6000")) != one {
		t.Fatal("re-registering did not move the transport to its new (unmapped) address")
	}
}

// bareRecv is a receive transport around t, without a PeerConnection.
func bareRecv(t *Transport) *RecvTransport {
	r := &RecvTransport{WebRTCTransport: &WebRTCTransport{Transport: t}}
	t.role = r
	return r
}
