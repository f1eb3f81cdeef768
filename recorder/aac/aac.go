// Package aac describes AAC streams: the AudioSpecificConfig that FLV and
// MP4 carry, and the ADTS headers MPEG-TS needs in front of each frame.
package aac

import (
	"errors"
	"fmt"
)

// SamplesPerFrame is the number of PCM samples per channel in an AAC-LC
// frame.
const SamplesPerFrame = 1024

var sampleRates = []int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// Config is an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), as far as
// AAC-LC needs.
type Config struct {
	ObjectType int // 2 = AAC-LC
	SampleRate int
	Channels   int
}

// ParseConfig reads an AudioSpecificConfig.
func ParseConfig(b []byte) (Config, error) {
	if len(b) < 2 {
		return Config{}, errors.New("aac: short AudioSpecificConfig")
	}
	c := Config{ObjectType: int(b[0] >> 3)}
	idx := int(b[0]&7)<<1 | int(b[1]>>7)
	if idx >= len(sampleRates) {
		return Config{}, fmt.Errorf("aac: sample rate index %d not supported", idx)
	}
	c.SampleRate = sampleRates[idx]
	c.Channels = int(b[1]>>3) & 0xf
	if c.ObjectType == 0 || c.ObjectType == 31 {
		return Config{}, fmt.Errorf("aac: object type %d not supported", c.ObjectType)
	}
	return c, nil
}

func rateIndex(rate int) (int, error) {
	for i, r := range sampleRates {
		if r == rate {
			return i, nil
		}
	}
	return 0, fmt.Errorf("aac: sample rate %d not supported", rate)
}

// Bytes returns the two-byte AudioSpecificConfig.
func (c Config) Bytes() ([]byte, error) {
	idx, err := rateIndex(c.SampleRate)
	if err != nil {
		return nil, err
	}
	return []byte{byte(c.ObjectType<<3) | byte(idx>>1), byte(idx&1)<<7 | byte(c.Channels&0xf)<<3}, nil
}

// ADTSHeaderSize is the length of an ADTS header without CRC.
const ADTSHeaderSize = 7

// AppendADTS appends an ADTS header (no CRC) and the raw frame to b.
func (c Config) AppendADTS(b, frame []byte) ([]byte, error) {
	idx, err := rateIndex(c.SampleRate)
	if err != nil {
		return nil, err
	}
	n := len(frame) + ADTSHeaderSize
	if n > 0x1fff {
		return nil, fmt.Errorf("aac: frame of %d bytes too big for ADTS", len(frame))
	}
	prof := c.ObjectType - 1
	b = append(b,
		0xff, 0xf1, // sync, MPEG-4, layer 0, no CRC
		byte(prof<<6)|byte(idx<<2)|byte(c.Channels>>2&1),
		byte(c.Channels&3<<6)|byte(n>>11),
		byte(n>>3),
		byte(n&7<<5)|0x1f,
		0xfc,
	)
	return append(b, frame...), nil
}

// SplitADTS splits a run of ADTS frames into raw frames and returns the
// configuration of the first.
func SplitADTS(b []byte) (Config, [][]byte, error) {
	var cfg Config
	var out [][]byte
	for len(b) > 0 {
		if len(b) < ADTSHeaderSize || b[0] != 0xff || b[1]&0xf0 != 0xf0 {
			return cfg, out, errors.New("aac: lost ADTS sync")
		}
		hdr := ADTSHeaderSize
		if b[1]&1 == 0 {
			hdr += 2
		}
		n := int(b[3]&3)<<11 | int(b[4])<<3 | int(b[5]>>5)
		if n < hdr || n > len(b) {
			return cfg, out, errors.New("aac: bad ADTS frame length")
		}
		if out == nil {
			idx := int(b[2]>>2) & 0xf
			if idx >= len(sampleRates) {
				return cfg, out, errors.New("aac: bad ADTS sample rate")
			}
			cfg = Config{ObjectType: int(b[2]>>6) + 1, SampleRate: sampleRates[idx], Channels: int(b[2]&1)<<2 | int(b[3]>>6)}
		}
		out = append(out, b[hdr:n])
		b = b[n:]
	}
	return cfg, out, nil
}
