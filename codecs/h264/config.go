package h264

import (
	"bytes"
	"errors"
	"fmt"
)

// Config is a stream's decoder configuration: its current SPS and PPS.
type Config struct {
	SPS, PPS []byte
	Info     *SPS
}

// ParamSets follows the SPS and PPS of a stream as access units pass.
type ParamSets struct {
	sps, pps []byte
	cur      *Config
}

// Update notes the parameter sets carried by an access unit. It returns
// the configuration when it is new or changed (nil otherwise).
func (p *ParamSets) Update(nalus [][]byte) (*Config, error) {
	changed := false
	for _, n := range nalus {
		switch Type(n) {
		case TypeSPS:
			if !bytes.Equal(n, p.sps) {
				p.sps = append([]byte(nil), n...)
				changed = true
			}
		case TypePPS:
			if !bytes.Equal(n, p.pps) {
				p.pps = append([]byte(nil), n...)
				changed = true
			}
		}
	}
	if !changed || p.sps == nil || p.pps == nil {
		return nil, nil
	}
	info, err := ParseSPS(p.sps)
	if err != nil {
		return nil, err
	}
	p.cur = &Config{SPS: p.sps, PPS: p.pps, Info: info}
	return p.cur, nil
}

// Current returns the latest complete configuration, or nil.
func (p *ParamSets) Current() *Config { return p.cur }

// Record returns the AVCDecoderConfigurationRecord (ISO/IEC 14496-15
// §5.3.3.1) with 4-byte NAL unit lengths: the "avcC" of MP4 and the AVC
// sequence header of FLV.
func (c *Config) Record() []byte {
	sps, pps := c.SPS, c.PPS
	b := []byte{1, sps[1], sps[2], sps[3], 0xfc | 3, 0xe0 | 1, byte(len(sps) >> 8), byte(len(sps))}
	b = append(b, sps...)
	b = append(b, 1, byte(len(pps)>>8), byte(len(pps)))
	b = append(b, pps...)
	switch sps[1] {
	case 100, 110, 122, 144:
		i := c.Info
		b = append(b, 0xfc|byte(i.ChromaFormat&3), 0xf8|byte((i.BitDepthLuma-8)&7), 0xf8|byte((i.BitDepthChrom-8)&7), 0)
	}
	return b
}

// firstOfList reads an avcC list of n length-prefixed parameter sets and
// returns the first one and what follows the list.
func firstOfList(p []byte, n int) (first, rest []byte, err error) {
	for i := 0; i < n; i++ {
		if len(p) < 2 {
			return nil, nil, errors.New("h264: short avcC")
		}
		l := int(p[0])<<8 | int(p[1])
		if len(p) < 2+l {
			return nil, nil, errors.New("h264: short avcC")
		}
		if first == nil {
			first = p[2 : 2+l]
		}
		p = p[2+l:]
	}
	return first, p, nil
}

// ParseRecord reads an AVCDecoderConfigurationRecord's first SPS and PPS.
func ParseRecord(b []byte) (*Config, error) {
	if len(b) < 7 || b[0] != 1 {
		return nil, errors.New("h264: bad avcC")
	}
	if b[4]&3 != 3 {
		return nil, fmt.Errorf("h264: avcC with %d-byte lengths is not supported", b[4]&3+1)
	}
	sps, p, err := firstOfList(b[6:], int(b[5]&0x1f))
	if err != nil {
		return nil, err
	}
	if len(p) < 1 {
		return nil, errors.New("h264: short avcC")
	}
	pps, _, err := firstOfList(p[1:], int(p[0]))
	if err != nil {
		return nil, err
	}
	if sps == nil || pps == nil {
		return nil, errors.New("h264: avcC without sps or pps")
	}
	info, err := ParseSPS(sps)
	if err != nil {
		return nil, err
	}
	return &Config{SPS: append([]byte(nil), sps...), PPS: append([]byte(nil), pps...), Info: info}, nil
}
