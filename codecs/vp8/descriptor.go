// Package vp8desc reads and rewrites the VP8 RTP payload descriptor of
// RFC 7741 §4.2: the bytes before the VP8 bitstream that carry the picture
// id and the temporal-layer fields (TL0PICIDX, TID, layer sync, KEYIDX).
// An SFU reads them to drop temporal layers, and rewrites the picture id
// and TL0PICIDX so a subscriber sees no gap where it dropped whole frames.
//
// Nothing here allocates: Parse fills a caller's Descriptor, and the
// setters write into a slice the caller owns.
package vp8

import "errors"

// ErrShort is returned for a payload that ends inside its descriptor.
var ErrShort = errors.New("vp8: payload shorter than its descriptor")

// Descriptor is one packet's payload descriptor. Fields whose Has flag is
// false were absent from the packet.
type Descriptor struct {
	// Start is the S bit: the packet begins a VP8 partition.
	Start bool
	// NonRef is the N bit: no other frame references this one.
	NonRef bool
	// PartID is the partition index (0 is the first partition).
	PartID uint8

	HasPictureID bool
	// LongPictureID is the M bit: the picture id takes 15 bits, not 7.
	LongPictureID bool
	PictureID     uint16

	HasTL0PICIDX bool
	// TL0PICIDX counts base-layer (TID 0) frames, wrapping at 256.
	TL0PICIDX uint8

	HasTID bool
	// TID is the temporal layer, 0 for the base layer.
	TID uint8
	// LayerSync is the Y bit: the frame depends only on base-layer
	// frames, so a receiver may start decoding TID here.
	LayerSync bool

	HasKeyIdx bool
	KeyIdx    uint8

	// Size is the descriptor's length: the VP8 bitstream starts there.
	Size int

	picOff int // offset of the picture id, when present
	tl0Off int // offset of TL0PICIDX, when present
}

// Parse reads the descriptor at the start of an RTP payload into d.
func Parse(p []byte, d *Descriptor) error {
	*d = Descriptor{}
	if len(p) < 1 {
		return ErrShort
	}
	b := p[0]
	d.NonRef = b&0x20 != 0
	d.Start = b&0x10 != 0
	d.PartID = b & 0x0f
	i := 1
	if b&0x80 == 0 { // X: no extension byte
		d.Size = i
		return nil
	}
	if len(p) < 2 {
		return ErrShort
	}
	ext := p[1]
	i = 2
	if ext&0x80 != 0 { // I
		if len(p) <= i {
			return ErrShort
		}
		d.HasPictureID = true
		d.picOff = i
		if p[i]&0x80 != 0 { // M
			if len(p) <= i+1 {
				return ErrShort
			}
			d.LongPictureID = true
			d.PictureID = uint16(p[i]&0x7f)<<8 | uint16(p[i+1])
			i += 2
		} else {
			d.PictureID = uint16(p[i] & 0x7f)
			i++
		}
	}
	if ext&0x40 != 0 { // L
		if len(p) <= i {
			return ErrShort
		}
		d.HasTL0PICIDX = true
		d.tl0Off = i
		d.TL0PICIDX = p[i]
		i++
	}
	if ext&0x30 != 0 { // T or K share one byte: TID(2) Y(1) KEYIDX(5)
		if len(p) <= i {
			return ErrShort
		}
		if ext&0x20 != 0 {
			d.HasTID = true
			d.TID = p[i] >> 6
			d.LayerSync = p[i]&0x20 != 0
		}
		if ext&0x10 != 0 {
			d.HasKeyIdx = true
			d.KeyIdx = p[i] & 0x1f
		}
		i++
	}
	d.Size = i
	return nil
}

// PictureIDMask is the largest picture id the descriptor's field holds
// (0x7f or 0x7fff); ids wrap past it.
func (d *Descriptor) PictureIDMask() uint16 {
	if d.LongPictureID {
		return 0x7fff
	}
	return 0x7f
}

// SetPictureID writes id (wrapped to the field's width) into p, the
// payload d was parsed from or a copy of it. It does nothing when the
// packet carries no picture id.
func (d *Descriptor) SetPictureID(p []byte, id uint16) {
	if !d.HasPictureID {
		return
	}
	if d.LongPictureID {
		id &= 0x7fff
		p[d.picOff] = 0x80 | byte(id>>8)
		p[d.picOff+1] = byte(id)
		return
	}
	p[d.picOff] = byte(id & 0x7f)
}

// SetTL0PICIDX writes v into p, as SetPictureID does for the picture id.
func (d *Descriptor) SetTL0PICIDX(p []byte, v uint8) {
	if !d.HasTL0PICIDX {
		return
	}
	p[d.tl0Off] = v
}

// Append writes a descriptor for the fields of d that are set (Has flags,
// Start, NonRef, PartID) to the end of b. It is how tests and synthetic
// publishers build packets; Size and the offsets of d are not used.
func Append(b []byte, d *Descriptor) []byte {
	first := d.PartID & 0x0f
	if d.Start {
		first |= 0x10
	}
	if d.NonRef {
		first |= 0x20
	}
	var ext byte
	if d.HasPictureID {
		ext |= 0x80
	}
	if d.HasTL0PICIDX {
		ext |= 0x40
	}
	if d.HasTID {
		ext |= 0x20
	}
	if d.HasKeyIdx {
		ext |= 0x10
	}
	if ext == 0 {
		return append(b, first)
	}
	b = append(b, first|0x80, ext)
	if d.HasPictureID {
		if d.LongPictureID {
			b = append(b, 0x80|byte(d.PictureID>>8&0x7f), byte(d.PictureID))
		} else {
			b = append(b, byte(d.PictureID&0x7f))
		}
	}
	if d.HasTL0PICIDX {
		b = append(b, d.TL0PICIDX)
	}
	if d.HasTID || d.HasKeyIdx {
		var tk byte
		if d.HasTID {
			tk = d.TID<<6 | byte(boolBit(d.LayerSync))<<5
		}
		if d.HasKeyIdx {
			tk |= d.KeyIdx & 0x1f
		}
		b = append(b, tk)
	}
	return b
}

func boolBit(v bool) int {
	if v {
		return 1
	}
	return 0
}
