package h264

import (
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

var (
	errShort   = errors.New("h264: sps too short")
	errGolomb  = errors.New("h264: bad exp-golomb code")
	errNotSPS  = errors.New("h264: not an sps")
	errPicture = errors.New("h264: sps gives no picture")
)

// bitReader reads the RBSP of a NAL unit bit by bit, with Exp-Golomb
// codes. It steps over emulation-prevention bytes (00 00 03) as it meets
// them rather than copying the unit without them, so that reading the
// picture size of a keyframe on the forwarding path allocates nothing.
// The first error sticks: every later read returns 0, and the caller
// checks err once at the end.
type bitReader struct {
	b   []byte // the whole NAL unit: escapes are recognised across any byte
	pos int    // in bits
	err error
}

func (r *bitReader) bit() uint {
	for r.err == nil {
		i := r.pos / 8
		if i >= len(r.b) {
			r.err = errShort
			break
		}
		if r.pos%8 == 0 && i >= 2 && r.b[i] == 3 && r.b[i-1] == 0 && r.b[i-2] == 0 {
			r.pos += 8
			continue
		}
		v := uint(r.b[i]>>(7-r.pos%8)) & 1
		r.pos++
		return v
	}
	return 0
}

func (r *bitReader) bits(n int) uint {
	var v uint
	for i := 0; i < n; i++ {
		v = v<<1 | r.bit()
	}
	return v
}

// ue reads an unsigned Exp-Golomb code.
func (r *bitReader) ue() uint {
	zeros := 0
	for r.bit() == 0 {
		if r.err != nil {
			return 0
		}
		zeros++
		if zeros > 31 {
			r.err = errGolomb
			return 0
		}
	}
	return (1<<zeros - 1) + r.bits(zeros)
}

// se reads a signed Exp-Golomb code.
func (r *bitReader) se() int {
	v := r.ue()
	if v%2 == 1 {
		return int(v+1) / 2
	}
	return -int(v / 2)
}

func (r *bitReader) skipScalingList(size int) {
	last, next := 8, 8
	for j := 0; j < size && r.err == nil; j++ {
		if next != 0 {
			next = (last + r.se() + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
}

// ParseSPS reads the fields of a sequence parameter set NAL unit (with
// its header byte) that describe the picture (ITU-T H.264 §7.3.2.1.1).
func ParseSPS(nalu []byte) (*SPS, error) {
	s := new(SPS)
	switch err := s.parse(nalu); err {
	case nil:
		return s, nil
	case errNotSPS:
		return nil, fmt.Errorf("h264: not an sps (type %d, %d bytes)", Type(nalu), len(nalu))
	case errPicture:
		return nil, fmt.Errorf("h264: sps gives a %dx%d picture", s.Width, s.Height)
	default:
		return nil, err
	}
}

// parse fills s from an SPS NAL unit. It allocates nothing, even for a
// malformed one: the forwarding path reads keyframes' SPSs with it.
func (s *SPS) parse(nalu []byte) error {
	if Type(nalu) != TypeSPS || len(nalu) < 4 {
		return errNotSPS
	}
	*s = SPS{Profile: nalu[1], Constraints: nalu[2], Level: nalu[3], ChromaFormat: 1, BitDepthLuma: 8, BitDepthChrom: 8}
	r := &bitReader{b: nalu, pos: 4 * 8}
	r.ue() // seq_parameter_set_id
	switch s.Profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		s.ChromaFormat = r.ue()
		if s.ChromaFormat == 3 {
			r.bit() // separate_colour_plane_flag
		}
		s.BitDepthLuma = r.ue() + 8
		s.BitDepthChrom = r.ue() + 8
		r.bit()           // qpprime_y_zero_transform_bypass_flag
		if r.bit() == 1 { // seq_scaling_matrix_present_flag
			n := 8
			if s.ChromaFormat == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				if r.bit() == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					r.skipScalingList(size)
				}
			}
		}
	}
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.bit() // delta_pic_order_always_zero_flag
		r.se()  // offset_for_non_ref_pic
		r.se()  // offset_for_top_to_bottom_field
		n := r.ue()
		if n > 255 {
			return errors.New("h264: bad sps poc cycle")
		}
		for i := uint(0); i < n; i++ {
			r.se()
		}
	}
	r.ue()  // max_num_ref_frames
	r.bit() // gaps_in_frame_num_value_allowed_flag
	wMbs := r.ue()
	hMapUnits := r.ue()
	frameMbsOnly := r.bit()
	if frameMbsOnly == 0 {
		r.bit() // mb_adaptive_frame_field_flag
	}
	r.bit() // direct_8x8_inference_flag
	width := int(wMbs+1) * 16
	height := int(2-frameMbsOnly) * int(hMapUnits+1) * 16
	if r.bit() == 1 { // frame_cropping_flag
		l, rt, t, b := r.ue(), r.ue(), r.ue(), r.ue()
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
	if r.err != nil {
		return r.err
	}
	s.Width, s.Height = width, height
	if width <= 0 || height <= 0 {
		return errPicture
	}
	return nil
}
