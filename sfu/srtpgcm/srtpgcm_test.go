package srtpgcm

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

func testKeys() ([]byte, []byte) {
	key, salt := make([]byte, KeyLen), make([]byte, SaltLen)
	for i := range key {
		key[i] = byte(7*i + 1)
	}
	for i := range salt {
		salt[i] = byte(0xa0 ^ i)
	}
	return key, salt
}

// TestSealMatchesPion: byte for byte what pion/srtp's context makes of the
// same packets — two streams, a header extension and CSRCs, sequence
// numbers that wrap, and resends of packets from before the wrap — and
// pion's receiving context accepts all of it.
func TestSealMatchesPion(t *testing.T) {
	key, salt := testKeys()
	s, err := NewSealer(key, salt)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	streams := map[uint32]*Stream{0x1111: {}, 0x2222: {}}
	type send struct {
		ssrc uint32
		seq  uint16
	}
	var plan []send
	for i := 0; i < 40; i++ {
		plan = append(plan, send{0x1111, uint16(65520 + i)}) // wraps after 16
		plan = append(plan, send{0x2222, uint16(300 + i)})
		if i == 30 {
			// A NACK answered on the stream itself: packets from
			// before the wrap, sent after it.
			plan = append(plan, send{0x1111, 65530}, send{0x1111, 65535}, send{0x1111, 2})
		}
	}
	for n, p := range plan {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: p.seq, Timestamp: uint32(n * 3000), SSRC: p.ssrc, CSRC: []uint32{9}}
		if n%3 == 0 {
			if err := h.SetExtension(3, []byte{byte(n >> 8), byte(n)}); err != nil {
				t.Fatal(err)
			}
		}
		payload := bytes.Repeat([]byte{byte(n)}, 100+n)
		raw, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.EncryptRTP(nil, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(raw), len(raw)+TagLen)
		copy(buf, raw)
		got, err := s.Seal(streams[p.ssrc], buf, h.MarshalSize(), p.ssrc, p.seq)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("packet %d (ssrc %#x seq %d) differs from pion's", n, p.ssrc, p.seq)
		}
		if &got[0] != &buf[0] {
			t.Fatal("Seal did not work in place")
		}
		pt, err := dec.DecryptRTP(nil, got, nil)
		if err != nil {
			t.Fatalf("packet %d: pion cannot decrypt: %v", n, err)
		}
		if !bytes.Equal(pt, raw) {
			t.Fatalf("packet %d decrypts to something else", n)
		}
	}
}

func TestSealErrors(t *testing.T) {
	key, salt := testKeys()
	if _, err := NewSealer(key[:8], salt); err == nil {
		t.Fatal("a short master key was accepted")
	}
	s, err := NewSealer(key, salt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(&Stream{}, make([]byte, 40), 12, 1, 1); err != ErrShortBuffer {
		t.Fatalf("no room for the tag: %v", err)
	}
	if _, err := s.Seal(&Stream{}, make([]byte, 8, 40), 12, 1, 1); err == nil {
		t.Fatal("a header longer than the packet was accepted")
	}
}

func TestIndex(t *testing.T) {
	for _, tc := range []struct {
		seqs []uint16
		want []uint64
	}{
		{[]uint16{5, 6, 4}, []uint64{5, 6, 4}},
		{[]uint16{65534, 65535, 0, 1, 65535, 2}, []uint64{65534, 65535, 65536, 65537, 65535, 65538}},
		{[]uint16{65535, 0, 32768, 32769, 65535, 0}, []uint64{65535, 65536, 98304, 98305, 131071, 131072}},
	} {
		var s Stream
		for i, q := range tc.seqs {
			if got := s.index(q); got != tc.want[i] {
				t.Fatalf("seqs %v: index of #%d = %d, want %d", tc.seqs, i, got, tc.want[i])
			}
		}
	}
}

// BenchmarkSeal and BenchmarkPionEncryptRTP compare one 1,200-byte packet
// through each, one stream, in cache.
func BenchmarkSeal(b *testing.B) {
	key, salt := testKeys()
	s, _ := NewSealer(key, salt)
	buf := make([]byte, 1200, 1200+TagLen)
	var st Stream
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Seal(&st, buf[:1200], 12, 1, uint16(i)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPionEncryptRTP(b *testing.B) {
	key, salt := testKeys()
	ctx, _ := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	buf := make([]byte, 1200, 1200+TagLen)
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var scratch rtp.Header
	for i := 0; b.Loop(); i++ {
		h.SequenceNumber = uint16(i)
		_, _ = h.MarshalTo(buf)
		if _, err := ctx.EncryptRTP(buf[:1200], buf[:1200], &scratch); err != nil {
			b.Fatal(err)
		}
	}
}
