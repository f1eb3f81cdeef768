package packetcache

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
)

// TestCacheWraps: the cache answers only for the packets it still
// holds, across the sequence number wrap.
func TestCacheWraps(t *testing.T) {
	pc := New(16)
	buf := make([]byte, MaxPayload)
	for i := 0; i < 40; i++ {
		seq := uint16(65530 + i)
		pc.Put(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq}, Payload: []byte{byte(i), 1, 2}})
	}
	for i := 0; i < 40; i++ {
		seq := uint16(65530 + i)
		n, ok := pc.Get(seq, buf)
		if held := i >= 24; ok != held || (ok && (n != 3 || buf[0] != byte(i))) {
			t.Errorf("packet %d (seq %d): ok %v n %d, want held=%v", i, seq, ok, n, held)
		}
	}
}

// TestGetPacketHeader: a packet comes back with the header fields it was
// put with, so a pipe can send it again exactly as the first time.
func TestGetPacketHeader(t *testing.T) {
	pc := New(16)
	payload := []byte{9, 8, 7, 6}
	pc.Put(&rtp.Packet{Header: rtp.Header{SequenceNumber: 7, Timestamp: 90000, PayloadType: 96, Marker: true}, Payload: payload})
	pc.Put(&rtp.Packet{Header: rtp.Header{SequenceNumber: 8, Timestamp: 93000, PayloadType: 97}, Payload: []byte{1}})
	buf := make([]byte, MaxPayload)
	n, ts, pt, marker, ok := pc.GetPacket(7, buf)
	if !ok || ts != 90000 || pt != 96 || !marker || !bytes.Equal(buf[:n], payload) {
		t.Fatalf("GetPacket(7) = %d %d %d %v %v (% x), want 90000 96 true with the payload", n, ts, pt, marker, ok, buf[:n])
	}
	if _, ts, pt, marker, ok := pc.GetPacket(8, buf); !ok || ts != 93000 || pt != 97 || marker {
		t.Fatalf("GetPacket(8) = %d %d %v %v, want 93000 97 false", ts, pt, marker, ok)
	}
	if _, _, _, _, ok := pc.GetPacket(9, buf); ok {
		t.Fatal("GetPacket(9) found a packet never put")
	}
}

// TestCacheRefuses: empty and oversized payloads are not kept, and a
// packet that does not fit the caller's buffer is not returned cut short.
func TestCacheRefuses(t *testing.T) {
	pc := New(16)
	pc.Put(&rtp.Packet{Header: rtp.Header{SequenceNumber: 1}})
	pc.Put(&rtp.Packet{Header: rtp.Header{SequenceNumber: 2}, Payload: make([]byte, MaxPayload+1)})
	pc.Put(&rtp.Packet{Header: rtp.Header{SequenceNumber: 3}, Payload: make([]byte, MaxPayload)})
	buf := make([]byte, MaxPayload)
	for _, seq := range []uint16{1, 2} {
		if _, ok := pc.Get(seq, buf); ok {
			t.Errorf("packet %d kept", seq)
		}
	}
	if n, ok := pc.Get(3, buf); !ok || n != MaxPayload {
		t.Errorf("a payload of MaxPayload: Get = %d, %v", n, ok)
	}
	if _, ok := pc.Get(3, buf[:MaxPayload-1]); ok {
		t.Error("Get copied a packet into a buffer too small for it")
	}
	if _, _, _, _, ok := pc.GetPacket(3, buf[:10]); ok {
		t.Error("GetPacket copied a packet into a buffer too small for it")
	}
}

// BenchmarkPut is the cost the cache adds to every forwarded video packet.
func BenchmarkPut(b *testing.B) {
	pc := New(512)
	pkt := &rtp.Packet{Header: rtp.Header{PayloadType: 96}, Payload: make([]byte, 1100)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pkt.SequenceNumber = uint16(i)
		pc.Put(pkt)
	}
}

// BenchmarkGet is the cost of answering one NACKed packet.
func BenchmarkGet(b *testing.B) {
	pc := New(512)
	for i := range 512 {
		pc.Put(&rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i)}, Payload: make([]byte, 1100)})
	}
	buf := make([]byte, MaxPayload)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, ok := pc.Get(uint16(i%512), buf); !ok {
			b.Fatal("miss")
		}
	}
}
