// Package vp9 reads VP9 RTP payloads (RFC 9628): whether a packet starts
// a keyframe (on the forwarding path, for every packet), and the payload
// descriptor, flexible or not, with its scalability structure (for the
// recorder, which rebuilds frames from it). Nothing here allocates.
package vp9

import "errors"

// Errors of Parse.
var (
	ErrShort = errors.New("vp9: payload shorter than its descriptor")
	// ErrLayers: a spatial layer id or P_DIFF count beyond what RFC 9628
	// allows (5 spatial layers, 3 reference indices).
	ErrLayers = errors.New("vp9: too many layers or references")
)

// Limits of RFC 9628.
const (
	MaxSpatialLayers = 5
	MaxRefs          = 3
	maxSSLayers      = 8 // N_S is 3 bits: up to 8 sizes in a scalability structure
)

// First-byte flags (RFC 9628 §4.2).
const (
	flagPictureID = 0x80 // I
	flagInter     = 0x40 // P: inter-picture predicted
	flagLayers    = 0x20 // L: layer indices present
	flagFlexible  = 0x10 // F
	flagStart     = 0x08 // B: start of a frame
	flagEnd       = 0x04 // E: end of a frame
	flagSS        = 0x02 // V: scalability structure present
	flagNotRef    = 0x01 // Z: not a reference for upper spatial layers
)

// Descriptor is one packet's payload descriptor. Fields whose flag is
// false were absent from the packet.
type Descriptor struct {
	HasPictureID  bool // I
	LongPictureID bool // M: 15 bits, not 7
	PictureID     uint16

	Inter    bool // P: the frame is inter-picture predicted
	Flexible bool // F: flexible mode (references listed in PDiff)
	Start    bool // B: the packet starts a frame
	End      bool // E: the packet ends a frame
	NotRef   bool // Z

	HasLayers  bool  // L: the layer fields below are present
	TID        uint8 // temporal layer
	SwitchUp   bool  // U
	SID        uint8 // spatial layer
	InterLayer bool  // D: depends on the spatial layer below
	TL0PICIDX  uint8 // in non-flexible mode only

	// NumPDiff reference indices in flexible mode (P and F set).
	NumPDiff int
	PDiff    [MaxRefs]uint8

	// HasSS: the packet carries a scalability structure (V), with
	// NumSS spatial layers and, when HasSizes (Y), their picture sizes.
	HasSS         bool
	NumSS         int
	HasSizes      bool
	Width, Height [maxSSLayers]uint16

	// Size is the descriptor's length: the VP9 bitstream starts there.
	Size int
}

// Parse reads the descriptor at the start of an RTP payload into d. It
// accepts what pion's VP9Packet.Unmarshal does (FuzzParse compares the
// two), so the recorder reads streams exactly as it did with pion's.
func Parse(p []byte, d *Descriptor) error {
	*d = Descriptor{}
	if len(p) < 1 {
		return ErrShort
	}
	b := p[0]
	d.HasPictureID = b&flagPictureID != 0
	d.Inter = b&flagInter != 0
	d.HasLayers = b&flagLayers != 0
	d.Flexible = b&flagFlexible != 0
	d.Start = b&flagStart != 0
	d.End = b&flagEnd != 0
	d.HasSS = b&flagSS != 0
	d.NotRef = b&flagNotRef != 0
	i := 1
	if d.HasPictureID {
		if len(p) <= i {
			return ErrShort
		}
		d.PictureID = uint16(p[i] & 0x7f)
		if p[i]&0x80 != 0 {
			i++
			if len(p) <= i {
				return ErrShort
			}
			d.LongPictureID = true
			d.PictureID = d.PictureID<<8 | uint16(p[i])
		}
		i++
	}
	if d.HasLayers {
		if len(p) <= i {
			return ErrShort
		}
		d.TID = p[i] >> 5
		d.SwitchUp = p[i]&0x10 != 0
		d.SID = p[i] >> 1 & 0x07
		d.InterLayer = p[i]&0x01 != 0
		if d.SID >= MaxSpatialLayers {
			return ErrLayers
		}
		i++
		if !d.Flexible {
			if len(p) <= i {
				return ErrShort
			}
			d.TL0PICIDX = p[i]
			i++
		}
	}
	if d.Flexible && d.Inter {
		for {
			if len(p) <= i {
				return ErrShort
			}
			d.PDiff[d.NumPDiff] = p[i] >> 1
			d.NumPDiff++
			if p[i]&0x01 == 0 { // N: no further P_DIFF
				break
			}
			if d.NumPDiff >= MaxRefs {
				return ErrLayers
			}
			i++
		}
		i++
	}
	if d.HasSS {
		n, err := d.parseSS(p[i:])
		if err != nil {
			return err
		}
		i += n
	}
	d.Size = i
	return nil
}

// parseSS reads a scalability structure and returns its length. Only the
// picture sizes are kept; the picture groups are skipped.
func (d *Descriptor) parseSS(p []byte) (int, error) {
	if len(p) < 1 {
		return 0, ErrShort
	}
	d.NumSS = int(p[0]>>5) + 1
	d.HasSizes = p[0]&0x10 != 0
	groups := p[0]&0x08 != 0 // G
	i := 1
	if d.HasSizes {
		for l := 0; l < d.NumSS; l++ {
			if len(p) < i+4 {
				return 0, ErrShort
			}
			d.Width[l] = uint16(p[i])<<8 | uint16(p[i+1])
			d.Height[l] = uint16(p[i+2])<<8 | uint16(p[i+3])
			i += 4
		}
	}
	if !groups {
		return i, nil
	}
	if len(p) <= i {
		return 0, ErrShort
	}
	ng := int(p[i])
	i++
	for g := 0; g < ng; g++ {
		if len(p) <= i {
			return 0, ErrShort
		}
		refs := int(p[i] >> 2 & 0x03) // R
		i++
		if len(p) < i+refs {
			return 0, ErrShort
		}
		i += refs
	}
	return i, nil
}

// IsKeyframe reports whether an RTP payload starts a keyframe: the start
// of a frame (B) that is not inter-predicted (P=0) and, when the
// descriptor carries layer indices, belongs to the lowest spatial layer.
// It reads only the bytes up to the layer indices (the forwarding path
// asks it of every packet; FuzzParse checks it agrees with Parse).
func IsKeyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	if b0&flagInter != 0 || b0&flagStart == 0 {
		return false
	}
	i := 1
	if b0&flagPictureID != 0 {
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 { // M: 15-bit picture id
			i++
		}
		i++
	}
	if b0&flagLayers != 0 {
		if len(p) <= i {
			return false
		}
		if sid := (p[i] >> 1) & 0x07; sid != 0 {
			return false
		}
	}
	return true
}
