package crcmsb

import "testing"

func TestKnownValues(t *testing.T) {
	// CRC-32/MPEG-2 and CRC-32/BZIP2-without-final-xor check values of
	// "123456789".
	if got := Update(0xffffffff, []byte("123456789")); got != 0x0376e6e7 {
		t.Errorf("MPEG-2 CRC = %#x, want 0x0376e6e7", got)
	}
	if got := Update(0, []byte("123456789")); got != 0x89a1897f {
		t.Errorf("Ogg CRC = %#x, want 0x89a1897f", got)
	}
}
