// Package crcmsb computes the non-reflected CRC-32 with polynomial
// 0x04C11DB7 (MSB first) that MPEG-2 sections and Ogg pages use; the two
// differ only in the initial value. hash/crc32 implements the reflected
// form, which neither format uses.
package crcmsb

var table = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 24
		for j := 0; j < 8; j++ {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04c11db7
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// Update continues crc over b. Start from 0xFFFFFFFF for MPEG-2 sections,
// from 0 for Ogg pages.
func Update(crc uint32, b []byte) uint32 {
	for _, x := range b {
		crc = crc<<8 ^ table[byte(crc>>24)^x]
	}
	return crc
}
