package keyframe

// bitReader reads an H.264 RBSP bit by bit, skipping emulation prevention
// bytes (00 00 03).
type bitReader struct {
	b    []byte
	pos  int // bit position
	zero int // consecutive zero bytes seen
	err  bool
}

func (r *bitReader) bit() uint {
	byteIdx := r.pos / 8
	if byteIdx >= len(r.b) {
		r.err = true
		return 0
	}
	if r.pos%8 == 0 && byteIdx >= 2 && r.b[byteIdx] == 3 && r.b[byteIdx-1] == 0 && r.b[byteIdx-2] == 0 {
		r.pos += 8
		return r.bit()
	}
	v := uint(r.b[byteIdx]>>(7-r.pos%8)) & 1
	r.pos++
	return v
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
		zeros++
		if zeros > 31 || r.err {
			r.err = true
			return 0
		}
	}
	return (1<<zeros - 1) + r.bits(zeros)
}

func (r *bitReader) se() int {
	v := r.ue()
	if v%2 == 1 {
		return int(v+1) / 2
	}
	return -int(v / 2)
}

// spsDimensions decodes width and height from an H.264 sequence parameter
// set NAL unit (ITU-T H.264 §7.3.2.1.1), honouring the frame cropping.
func spsDimensions(nal []byte) (width, height int, ok bool) {
	if len(nal) < 4 {
		return 0, 0, false
	}
	r := &bitReader{b: nal[1:]}
	profile := r.bits(8)
	r.bits(16) // constraint flags, level
	r.ue()     // seq_parameter_set_id
	chroma := uint(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			r.bits(1)
		}
		r.ue() // bit_depth_luma
		r.ue() // bit_depth_chroma
		r.bits(1)
		if r.bits(1) == 1 { // seq_scaling_matrix_present
			n := 8
			if chroma == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				if r.bits(1) == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					last, next := 8, 8
					for j := 0; j < size; j++ {
						if next != 0 {
							next = (last + r.se() + 256) % 256
						}
						if next != 0 {
							last = next
						}
					}
				}
			}
		}
	}
	r.ue()          // log2_max_frame_num
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue()
	case 1:
		r.bits(1)
		r.se()
		r.se()
		n := r.ue()
		for i := uint(0); i < n && !r.err; i++ {
			r.se()
		}
	}
	r.ue()    // max_num_ref_frames
	r.bits(1) // gaps_in_frame_num_allowed
	wMbs := r.ue() + 1
	hMapUnits := r.ue() + 1
	frameMbsOnly := r.bits(1)
	if frameMbsOnly == 0 {
		r.bits(1)
	}
	r.bits(1) // direct_8x8_inference
	var cl, cr, ct, cb uint
	if r.bits(1) == 1 {
		cl, cr, ct, cb = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err {
		return 0, 0, false
	}
	cropX, cropY := uint(2), uint(2)*(2-frameMbsOnly)
	if chroma == 0 || chroma == 3 {
		cropX, cropY = 1, 2-frameMbsOnly
	}
	if chroma == 2 {
		cropY = 2 - frameMbsOnly
	}
	w := int(wMbs*16) - int(cropX*(cl+cr))
	h := int((2-frameMbsOnly)*hMapUnits*16) - int(cropY*(ct+cb))
	return w, h, w > 0 && h > 0
}
