package h264

import (
	"bytes"
	"errors"
	"fmt"
)

// SPS is what a muxer needs from a sequence parameter set.
type SPS struct {
	Profile       uint8 // profile_idc
	Constraints   uint8 // constraint_set flags byte
	Level         uint8 // level_idc
	ChromaFormat  uint
	BitDepthLuma  uint
	BitDepthChrom uint
	Width, Height int
}

// bitReader reads an RBSP bit by bit, with Exp-Golomb codes.
type bitReader struct {
	b   []byte
	pos int // in bits
}

var errShort = errors.New("h264: sps too short")

func (r *bitReader) bit() (uint, error) {
	if r.pos >= len(r.b)*8 {
		return 0, errShort
	}
	v := uint(r.b[r.pos/8]>>(7-r.pos%8)) & 1
	r.pos++
	return v, nil
}

func (r *bitReader) bits(n int) (uint, error) {
	var v uint
	for i := 0; i < n; i++ {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		v = v<<1 | b
	}
	return v, nil
}

func (r *bitReader) ue() (uint, error) {
	zeros := 0
	for {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		if b == 1 {
			break
		}
		zeros++
		if zeros > 31 {
			return 0, errors.New("h264: bad exp-golomb code")
		}
	}
	v, err := r.bits(zeros)
	return (1<<zeros - 1) + v, err
}

func (r *bitReader) se() (int, error) {
	v, err := r.ue()
	if v%2 == 1 {
		return int(v+1) / 2, err
	}
	return -int(v / 2), err
}

// unescape removes emulation-prevention bytes (00 00 03 → 00 00).
func unescape(b []byte) []byte {
	if !bytes.Contains(b, []byte{0, 0, 3}) {
		return b
	}
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

func skipScalingList(r *bitReader, size int) error {
	last, next := 8, 8
	for j := 0; j < size; j++ {
		if next != 0 {
			d, err := r.se()
			if err != nil {
				return err
			}
			next = (last + d + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
	return nil
}

// ParseSPS reads the fields of a sequence parameter set NAL unit (with
// its header byte) that describe the picture.
func ParseSPS(nalu []byte) (*SPS, error) {
	if Type(nalu) != TypeSPS || len(nalu) < 4 {
		return nil, fmt.Errorf("h264: not an sps (type %d, %d bytes)", Type(nalu), len(nalu))
	}
	s := &SPS{Profile: nalu[1], Constraints: nalu[2], Level: nalu[3], ChromaFormat: 1, BitDepthLuma: 8, BitDepthChrom: 8}
	r := &bitReader{b: unescape(nalu[4:])}
	if _, err := r.ue(); err != nil { // seq_parameter_set_id
		return nil, err
	}
	switch s.Profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		cf, err := r.ue()
		if err != nil {
			return nil, err
		}
		s.ChromaFormat = cf
		if cf == 3 {
			if _, err := r.bit(); err != nil { // separate_colour_plane_flag
				return nil, err
			}
		}
		bl, _ := r.ue()
		bc, _ := r.ue()
		s.BitDepthLuma, s.BitDepthChrom = bl+8, bc+8
		if _, err := r.bit(); err != nil { // qpprime_y_zero_transform_bypass_flag
			return nil, err
		}
		present, err := r.bit()
		if err != nil {
			return nil, err
		}
		if present == 1 {
			n := 8
			if cf == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				f, err := r.bit()
				if err != nil {
					return nil, err
				}
				if f == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					if err := skipScalingList(r, size); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	if _, err := r.ue(); err != nil { // log2_max_frame_num_minus4
		return nil, err
	}
	pocType, err := r.ue()
	if err != nil {
		return nil, err
	}
	switch pocType {
	case 0:
		if _, err := r.ue(); err != nil {
			return nil, err
		}
	case 1:
		if _, err := r.bit(); err != nil {
			return nil, err
		}
		if _, err := r.se(); err != nil {
			return nil, err
		}
		if _, err := r.se(); err != nil {
			return nil, err
		}
		n, err := r.ue()
		if err != nil || n > 255 {
			return nil, errors.New("h264: bad sps poc cycle")
		}
		for i := uint(0); i < n; i++ {
			if _, err := r.se(); err != nil {
				return nil, err
			}
		}
	}
	if _, err := r.ue(); err != nil { // max_num_ref_frames
		return nil, err
	}
	if _, err := r.bit(); err != nil { // gaps_in_frame_num_value_allowed_flag
		return nil, err
	}
	wMbs, err := r.ue()
	if err != nil {
		return nil, err
	}
	hMapUnits, err := r.ue()
	if err != nil {
		return nil, err
	}
	frameMbsOnly, err := r.bit()
	if err != nil {
		return nil, err
	}
	if frameMbsOnly == 0 {
		if _, err := r.bit(); err != nil { // mb_adaptive_frame_field_flag
			return nil, err
		}
	}
	if _, err := r.bit(); err != nil { // direct_8x8_inference_flag
		return nil, err
	}
	width := int(wMbs+1) * 16
	height := int(2-frameMbsOnly) * int(hMapUnits+1) * 16
	crop, err := r.bit()
	if err != nil {
		return nil, err
	}
	if crop == 1 {
		l, _ := r.ue()
		rt, _ := r.ue()
		t, _ := r.ue()
		b, err := r.ue()
		if err != nil {
			return nil, err
		}
		cx, cy := 1, 2-int(frameMbsOnly)
		switch s.ChromaFormat {
		case 1:
			cx, cy = 2, 2*(2-int(frameMbsOnly))
		case 2:
			cx, cy = 2, 2-int(frameMbsOnly)
		}
		width -= cx * int(l+rt)
		height -= cy * int(t+b)
	}
	if width <= 0 || height <= 0 {
		return nil, fmt.Errorf("h264: sps gives a %dx%d picture", width, height)
	}
	s.Width, s.Height = width, height
	return s, nil
}
