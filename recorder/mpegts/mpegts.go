// Package mpegts writes MPEG-2 transport streams (ISO/IEC 13818-1) with
// one program of H.264 video and AAC (ADTS) audio: the segments of HLS.
package mpegts

import (
	"encoding/binary"
	"io"

	"github.com/matinee-dev/matinee/codecs/crc"
)

// PacketSize is the size of a transport stream packet.
const PacketSize = 188

// PIDs and stream types of the one program.
const (
	pidPAT    = 0x0000
	pidPMT    = 0x1000
	PIDVideo  = 0x0100
	PIDAudio  = 0x0101
	typeH264  = 0x1b
	typeADTS  = 0x0f
	streamVid = 0xe0
	streamAud = 0xc0
)

// Muxer writes a transport stream. Timestamps are in 90 kHz units and
// must be non-negative; callers offset them so the PCR, which runs a
// little ahead of the video, is too.
type Muxer struct {
	w            io.Writer
	video, audio bool
	cc           map[uint16]uint8
	pkt          [PacketSize]byte
	pes          []byte
}

// NewMuxer returns a muxer for a program with the given streams.
func NewMuxer(w io.Writer, video, audio bool) *Muxer {
	return &Muxer{w: w, video: video, audio: audio, cc: map[uint16]uint8{}}
}

// pcrPID carries the program clock: the video stream, or the audio when
// there is no video.
func (m *Muxer) pcrPID() uint16 {
	if m.video {
		return PIDVideo
	}
	return PIDAudio
}

// WriteTables writes the PAT and the PMT. Every HLS segment starts with
// them.
func (m *Muxer) WriteTables() error {
	pat := []byte{0x00, 0xb0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xe0 | pidPMT>>8, pidPMT & 0xff}
	if err := m.writeSection(pidPAT, pat); err != nil {
		return err
	}
	pcr := m.pcrPID()
	pmt := []byte{0x02, 0xb0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe0 | byte(pcr>>8), byte(pcr), 0xf0, 0x00}
	if m.video {
		pmt = append(pmt, typeH264, 0xe0|PIDVideo>>8, PIDVideo&0xff, 0xf0, 0x00)
	}
	if m.audio {
		pmt = append(pmt, typeADTS, 0xe0|PIDAudio>>8, PIDAudio&0xff, 0xf0, 0x00)
	}
	return m.writeSection(pidPMT, pmt)
}

// writeSection completes a PSI section (length, CRC) and writes it in one
// packet.
func (m *Muxer) writeSection(pid uint16, sec []byte) error {
	n := len(sec) - 3 + 4
	sec[1] = 0xb0 | byte(n>>8)
	sec[2] = byte(n)
	sec = binary.BigEndian.AppendUint32(sec, crc.MPEG2(sec))
	p := m.pkt[:]
	p[0], p[1], p[2], p[3] = 0x47, 0x40|byte(pid>>8), byte(pid), 0x10|m.next(pid)
	p[4] = 0 // pointer field
	copy(p[5:], sec)
	for i := 5 + len(sec); i < PacketSize; i++ {
		p[i] = 0xff
	}
	_, err := m.w.Write(p)
	return err
}

func (m *Muxer) next(pid uint16) uint8 {
	c := m.cc[pid]
	m.cc[pid] = (c + 1) & 0xf
	return c
}

func appendTimestamp(b []byte, prefix byte, ts int64) []byte {
	return append(b,
		prefix<<4|byte(ts>>29)&0x0e|1,
		byte(ts>>22), byte(ts>>14)|1,
		byte(ts>>7), byte(ts<<1)|1)
}

// WriteVideo writes one access unit in Annex B framing (it should begin
// with an access unit delimiter).
func (m *Muxer) WriteVideo(pts int64, key bool, annexB []byte) error {
	pes := append(m.pes[:0], 0, 0, 1, streamVid, 0, 0, 0x80, 0x80, 5)
	pes = appendTimestamp(pes, 2, pts)
	pes = append(pes, annexB...)
	m.pes = pes
	pcr := int64(-1)
	if m.pcrPID() == PIDVideo {
		pcr = max(pts-9000, 0)
	}
	return m.writePES(PIDVideo, pes, key, pcr)
}

// WriteAudio writes ADTS frames as one PES packet.
func (m *Muxer) WriteAudio(pts int64, adts []byte) error {
	n := len(adts) + 8
	pes := append(m.pes[:0], 0, 0, 1, streamAud, byte(n>>8), byte(n), 0x80, 0x80, 5)
	if n > 0xffff {
		pes[4], pes[5] = 0, 0
	}
	pes = appendTimestamp(pes, 2, pts)
	pes = append(pes, adts...)
	m.pes = pes
	pcr := int64(-1)
	if m.pcrPID() == PIDAudio {
		pcr = pts
	}
	return m.writePES(PIDAudio, pes, !m.video, pcr)
}

// writePES splits a PES packet into transport packets; the first carries
// the random access flag and the PCR when asked, the last is padded with
// adaptation-field stuffing.
func (m *Muxer) writePES(pid uint16, pes []byte, randomAccess bool, pcr int64) error {
	first := true
	for len(pes) > 0 {
		p := m.pkt[:]
		p[0], p[1], p[2] = 0x47, byte(pid>>8), byte(pid)
		if first {
			p[1] |= 0x40
		}
		var af []byte
		if first && (randomAccess || pcr >= 0) {
			flags := byte(0)
			if randomAccess {
				flags |= 0x40
			}
			af = append(af, flags)
			if pcr >= 0 {
				af[0] |= 0x10
				af = append(af, byte(pcr>>25), byte(pcr>>17), byte(pcr>>9), byte(pcr>>1), byte(pcr<<7)|0x7e, 0)
			}
		}
		room := PacketSize - 4
		if af != nil {
			room -= 1 + len(af)
		}
		if need := room - len(pes); need > 0 {
			// Stuff the adaptation field so the payload fills the packet.
			if af == nil {
				af = []byte{} // its length byte takes one of the bytes
				if need--; need > 0 {
					af = append(af, 0) // no flags
					need--
				}
			}
			for ; need > 0; need-- {
				af = append(af, 0xff)
			}
		}
		i := 4
		if af != nil {
			p[3] = 0x30 | m.next(pid)
			p[4] = byte(len(af))
			copy(p[5:], af)
			i = 5 + len(af)
		} else {
			p[3] = 0x10 | m.next(pid)
		}
		n := copy(p[i:], pes)
		pes = pes[n:]
		if i+n != PacketSize {
			panic("mpegts: packet not filled")
		}
		if _, err := m.w.Write(p); err != nil {
			return err
		}
		first = false
	}
	return nil
}
