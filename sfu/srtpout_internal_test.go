package sfu

import (
	"net"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/sfu/srtpgcm"
	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// loopbackUDP is a socket on 127.0.0.1, closed when the test ends.
func loopbackUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newTestOut returns an srtpOut encrypting with profile p towards a local
// socket (AES-128-GCM through srtpgcm, as a transport does; others through
// pion's context), and that socket with a context that decrypts.
func newTestOut(t testing.TB, p srtp.ProtectionProfile) (*srtpOut, *net.UDPConn, *srtp.Context) {
	t.Helper()
	kl, _ := p.KeyLen()
	sl, _ := p.SaltLen()
	key, salt := make([]byte, kl), make([]byte, sl)
	for i := range key {
		key[i] = byte(i)
	}
	dec, err := srtp.CreateContext(key, salt, p)
	if err != nil {
		t.Fatal(err)
	}
	o := &srtpOut{}
	if p == srtp.ProtectionProfileAeadAes128Gcm {
		o.gcm, err = srtpgcm.NewSealer(key, salt)
	} else {
		o.ctx, err = srtp.CreateContext(key, salt, p)
	}
	if err != nil {
		t.Fatal(err)
	}
	src, dst := loopbackUDP(t), loopbackUDP(t)
	_ = dst.SetReadBuffer(8 << 20)
	o.t = &Transport{}
	o.dest.Store(&outDest{conn: udpbatch.NewConn(src), addr: dst.LocalAddr().(*net.UDPAddr)})
	return o, dst, dec
}

// TestSRTPOutWrite: what the own path puts on the wire decrypts to the
// packet given, with a transport-wide sequence number that counts up
// across batched and immediate writes, with either kind of profile.
func TestSRTPOutWrite(t *testing.T) {
	for _, p := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		t.Run(p.String(), func(t *testing.T) { testSRTPOutWrite(t, p) })
	}
}

func testSRTPOutWrite(t *testing.T, prof srtp.ProtectionProfile) {
	o, dst, dec := newTestOut(t, prof)
	payload := make([]byte, 1100)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	var b udpbatch.Batch
	var ext [4]rtp.Extension
	for i := 0; i < 5; i++ {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(100 + i), Timestamp: 9000, SSRC: 0xabc, Marker: i == 4, Extensions: ext[:0]}
		var bb *udpbatch.Batch
		if i < 3 {
			bb = &b
		}
		if _, err := o.write(bb, &h, payload, 3); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			b.Flush()
		}
	}
	buf := make([]byte, 2000)
	_ = dst.SetReadDeadline(time.Now().Add(2 * time.Second))
	for i := 0; i < 5; i++ {
		n, err := dst.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var h rtp.Header
		pt, err := dec.DecryptRTP(nil, buf[:n], &h)
		if err != nil {
			t.Fatalf("packet %d does not decrypt: %v", i, err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(pt); err != nil {
			t.Fatal(err)
		}
		if p.SequenceNumber != uint16(100+i) || p.SSRC != 0xabc || string(p.Payload) != string(payload) || p.Marker != (i == 4) {
			t.Fatalf("packet %d: seq %d ssrc %#x marker %v, %d payload bytes", i, p.SequenceNumber, p.SSRC, p.Marker, len(p.Payload))
		}
		tw := p.GetExtension(3)
		if len(tw) != 2 || int(tw[0])<<8|int(tw[1]) != i {
			t.Fatalf("packet %d: transport-wide sequence %v, want %d", i, tw, i)
		}
	}
}

// BenchmarkSRTPOutWrite is the own path's work per copy before the
// system call: TWCC stamp, marshal, AES-128-GCM, queueing. It must not
// allocate.
func BenchmarkSRTPOutWrite(b *testing.B) {
	o, _, _ := newTestOut(b, srtp.ProtectionProfileAeadAes128Gcm)
	payload := make([]byte, 1100)
	var bt udpbatch.Batch
	var ext [4]rtp.Extension
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: 9000, SSRC: 0xabc, Extensions: ext[:0]}
		if _, err := o.write(&bt, &h, payload, 3); err != nil {
			b.Fatal(err)
		}
		if bt.Len() == udpbatch.MaxBatch-1 {
			bt = udpbatch.Batch{} // drop: the system call is not measured here
		}
	}
}

// TestSRTPOutStreams: each SSRC keeps its own rollover state however many
// come and go, the newest first.
func TestSRTPOutStreams(t *testing.T) {
	var o srtpOut
	o.stream(1)
	for i := 0; i < 3; i++ {
		o.stream(uint32(10 + i))
	}
	if o.streams[0].ssrc != 12 || len(o.streams) != 4 {
		t.Fatalf("streams %+v: want 4, newest (12) first", o.streams)
	}
	a, b := o.stream(1), o.stream(1)
	if a != b || len(o.streams) != 4 {
		t.Fatal("the same SSRC got a second state")
	}
}
