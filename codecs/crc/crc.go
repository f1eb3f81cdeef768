// Package crc is the CRC-32 of MPEG-2: polynomial 0x04C11DB7, bits not
// reflected, no final XOR. MPEG-TS sections (ISO/IEC 13818-1 annex A) and
// Ogg pages (RFC 3533) both use it; they differ only in the initial value.
// (hash/crc32 reflects its bits, so it is not this CRC.)
package crc

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

// Update continues the CRC c over b.
func Update(c uint32, b []byte) uint32 {
	for _, x := range b {
		c = c<<8 ^ table[byte(c>>24)^x]
	}
	return c
}

// MPEG2 is the CRC of an MPEG-2 section: initial value all ones.
func MPEG2(b []byte) uint32 { return Update(0xffffffff, b) }

// Ogg is the checksum of an Ogg page (with its checksum field zeroed):
// initial value 0.
func Ogg(b []byte) uint32 { return Update(0, b) }
