package transcode

import (
	"encoding/binary"
	"io"

	"github.com/matinee-dev/matinee/codecs/crc"
)

// oggOpusWriter writes Opus packets into an Ogg stream (RFC 7845), one
// packet per page, with granule positions taken from the RTP timestamps so
// that gaps survive into ffmpeg (which fills them with silence).
type oggOpusWriter struct {
	w      io.Writer
	serial uint32
	seq    uint32
	clock  unwrapper
	last   int64
	page   []byte
}

func newOggOpusWriter(w io.Writer, channels int) (*oggOpusWriter, error) {
	o := &oggOpusWriter{w: w, serial: 0x6d617469}
	head := []byte("OpusHead")
	head = append(head, 1, byte(channels))
	head = binary.LittleEndian.AppendUint16(head, 0) // pre-skip: WebRTC streams have none
	head = binary.LittleEndian.AppendUint32(head, 48000)
	head = append(head, 0, 0, 0) // output gain, mapping family 0
	if err := o.writePage(head, 0, 0x02); err != nil {
		return nil, err
	}
	tags := []byte("OpusTags")
	tags = binary.LittleEndian.AppendUint32(tags, 7)
	tags = append(tags, "matinee"...)
	tags = binary.LittleEndian.AppendUint32(tags, 0)
	if err := o.writePage(tags, 0, 0); err != nil {
		return nil, err
	}
	return o, nil
}

// opusSamples returns the 48 kHz samples in an Opus packet (RFC 6716
// §3.1), or 960 when the TOC is unreadable.
func opusSamples(p []byte) int {
	if len(p) == 0 {
		return 960
	}
	cfg := p[0] >> 3
	var frame int
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		frame = []int{480, 960, 1920, 2880}[cfg&3]
	case cfg < 16: // hybrid: 10, 20 ms
		frame = []int{480, 960}[cfg&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = []int{120, 240, 480, 960}[cfg&3]
	}
	switch p[0] & 3 {
	case 0:
		return frame
	case 1, 2:
		return 2 * frame
	}
	if len(p) < 2 {
		return 960
	}
	return int(p[1]&0x3f) * frame
}

// WritePacket writes one Opus packet with its RTP timestamp.
func (o *oggOpusWriter) WritePacket(ts uint32, p []byte) error {
	pos := o.clock.extend(ts)
	if pos < 0 {
		return nil // older than the first packet
	}
	granule := pos + int64(opusSamples(p))
	if granule <= o.last {
		return nil // out of order or duplicate
	}
	o.last = granule
	return o.writePage(p, uint64(granule), 0)
}

func (o *oggOpusWriter) writePage(data []byte, granule uint64, flags byte) error {
	nseg := len(data)/255 + 1
	if nseg > 255 {
		data = data[:255*254] // larger than any Opus packet
		nseg = 255
	}
	b := append(o.page[:0], 'O', 'g', 'g', 'S', 0, flags)
	b = binary.LittleEndian.AppendUint64(b, granule)
	b = binary.LittleEndian.AppendUint32(b, o.serial)
	b = binary.LittleEndian.AppendUint32(b, o.seq)
	b = append(b, 0, 0, 0, 0, byte(nseg))
	for i := 0; i < nseg-1; i++ {
		b = append(b, 255)
	}
	b = append(b, byte(len(data)%255))
	b = append(b, data...)
	binary.LittleEndian.PutUint32(b[22:], crc.Ogg(b))
	o.seq++
	o.page = b
	_, err := o.w.Write(b)
	return err
}
