package crc

import "testing"

// TestCheckValues: the catalogue's check value of each variant, the CRC
// of "123456789" (CRC-32/MPEG-2: 0x0376E6E7; Ogg's is CRC-32/POSIX
// without its final XOR: 0x765E7680 ^ 0xFFFFFFFF).
func TestCheckValues(t *testing.T) {
	check := []byte("123456789")
	if got := MPEG2(check); got != 0x0376e6e7 {
		t.Errorf("MPEG2 = %#08x, want 0x0376e6e7", got)
	}
	if got := Ogg(check); got != 0x765e7680^0xffffffff {
		t.Errorf("Ogg = %#08x, want %#08x", got, uint32(0x765e7680^0xffffffff))
	}
	if got := Update(Update(0xffffffff, check[:4]), check[4:]); got != MPEG2(check) {
		t.Errorf("Update in two parts = %#08x, want %#08x", got, MPEG2(check))
	}
}

// TestSectionChecksToZero: an MPEG-TS PAT with its CRC appended has a CRC
// of zero, which is how a demuxer checks it.
func TestSectionChecksToZero(t *testing.T) {
	sec := []byte{0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00}
	c := MPEG2(sec)
	sec = append(sec, byte(c>>24), byte(c>>16), byte(c>>8), byte(c))
	if MPEG2(sec) != 0 {
		t.Fatalf("section with its CRC %08x does not check to zero", c)
	}
}
