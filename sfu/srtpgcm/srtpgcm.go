// Package srtpgcm encrypts outgoing SRTP with AEAD_AES_128_GCM (RFC 7714)
// in place, for a sender that knows its own packets: the caller gives
// the header length, SSRC and sequence number it has just marshalled, so
// nothing is parsed again, and each stream's rollover counter lives with
// the caller rather than in a map looked up per packet (with a few hundred
// subscribers' contexts, those lookups miss the cache).
//
// It does only what pion/srtp's Context.EncryptRTP does for that profile
// (no MKI, no cryptex, key derivation rate 0), and its output is the same
// byte for byte; the tests hold it to that.
package srtpgcm

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// KeyLen and SaltLen are the master key and salt lengths of
	// AEAD_AES_128_GCM (RFC 7714 §12).
	KeyLen  = 16
	SaltLen = 12
	// TagLen is what Seal appends to a packet.
	TagLen = 16
)

// RFC 3711 §4.3.1 key derivation labels.
const (
	labelSRTPKey  = 0x00
	labelSRTPSalt = 0x02
)

// ErrShortBuffer reports a packet without room for the tag.
var ErrShortBuffer = errors.New("srtpgcm: no room for the authentication tag")

// Sealer holds one direction's SRTP session key and salt. It is not safe
// for concurrent use.
type Sealer struct {
	aead cipher.AEAD
	salt [SaltLen]byte
	iv   [12]byte // here rather than on the stack, which the AEAD call would move to the heap
}

// NewSealer derives the session key and salt from a DTLS-SRTP master key
// and salt.
func NewSealer(masterKey, masterSalt []byte) (*Sealer, error) {
	if len(masterKey) != KeyLen || len(masterSalt) != SaltLen {
		return nil, fmt.Errorf("srtpgcm: master key/salt of %d/%d bytes, want %d/%d", len(masterKey), len(masterSalt), KeyLen, SaltLen)
	}
	key, err := derive(masterKey, masterSalt, labelSRTPKey, KeyLen)
	if err != nil {
		return nil, err
	}
	salt, err := derive(masterKey, masterSalt, labelSRTPSalt, SaltLen)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &Sealer{aead: aead}
	copy(s.salt[:], salt)
	return s, nil
}

// derive is the AES-CM key derivation function of RFC 3711 §4.3.3 with a
// key derivation rate of 0: the label goes into byte 7 of the salt
// (key_id = label || r, r = 0, aligned to the salt's low end), and
// AES-CM's keystream from that IV is the key.
func derive(masterKey, masterSalt []byte, label byte, n int) ([]byte, error) {
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, err
	}
	var in [aes.BlockSize]byte
	copy(in[:], masterSalt)
	in[7] ^= label
	out := make([]byte, (n+aes.BlockSize-1)/aes.BlockSize*aes.BlockSize)
	for i := 0; i*aes.BlockSize < n; i++ {
		binary.BigEndian.PutUint16(in[aes.BlockSize-2:], uint16(i))
		block.Encrypt(out[i*aes.BlockSize:], in[:])
	}
	return out[:n], nil
}

// Stream is one SSRC's sending state: the highest SRTP packet index
// (RFC 3711 §3.3.1) sent so far, from which each packet's rollover
// counter is estimated. The zero value is a stream that has sent nothing.
type Stream struct {
	highest uint64
	started bool
}

// index returns the 48-bit SRTP index of a packet with sequence number
// seq: of the indices ending in seq, the one nearest the highest sent
// (so a retransmission of a packet sent before a wrap keeps its rollover
// counter).
func (s *Stream) index(seq uint16) uint64 {
	if !s.started {
		s.started = true
		s.highest = uint64(seq)
		return s.highest
	}
	v := s.highest&^0xffff | uint64(seq)
	switch {
	case v > s.highest && v-s.highest > 1<<15 && v >= 1<<16:
		v -= 1 << 16
	case v < s.highest && s.highest-v > 1<<15:
		v += 1 << 16
	}
	if v > s.highest {
		s.highest = v
	}
	return v
}

// Seal encrypts the RTP packet pkt in place — a header of headerLen bytes,
// which is authenticated, then the payload, which is encrypted — and
// returns it with the tag appended, in pkt's storage. pkt needs TagLen
// bytes of spare capacity. ssrc and seq must be the header's.
func (s *Sealer) Seal(st *Stream, pkt []byte, headerLen int, ssrc uint32, seq uint16) ([]byte, error) {
	if cap(pkt)-len(pkt) < TagLen {
		return nil, ErrShortBuffer
	}
	if headerLen < 12 || headerLen > len(pkt) {
		return nil, fmt.Errorf("srtpgcm: header of %d bytes in a %d-byte packet", headerLen, len(pkt))
	}
	i := st.index(seq)
	// RFC 7714 §8.1: IV = (0x0000 || SSRC || ROC || SEQ) XOR salt.
	iv := &s.iv
	binary.BigEndian.PutUint16(iv[0:], 0)
	binary.BigEndian.PutUint32(iv[2:], ssrc)
	binary.BigEndian.PutUint32(iv[6:], uint32(i>>16))
	binary.BigEndian.PutUint16(iv[10:], seq)
	for k := range iv {
		iv[k] ^= s.salt[k]
	}
	payload := pkt[headerLen:]
	s.aead.Seal(payload[:0], iv[:], payload, pkt[:headerLen])
	return pkt[:len(pkt)+TagLen], nil
}
