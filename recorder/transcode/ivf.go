package transcode

import (
	"encoding/binary"
	"io"
)

// ivfWriter writes VP8 or VP9 frames into an IVF stream with a 90 kHz
// time base, so the RTP timestamps carry through ffmpeg unchanged.
type ivfWriter struct {
	w     io.Writer
	clock unwrapper
	last  int64
	buf   []byte
}

func newIVFWriter(w io.Writer, fourcc string, width, height int) (*ivfWriter, error) {
	h := []byte("DKIF")
	h = binary.LittleEndian.AppendUint16(h, 0)
	h = binary.LittleEndian.AppendUint16(h, 32)
	h = append(h, fourcc...)
	h = binary.LittleEndian.AppendUint16(h, uint16(width))
	h = binary.LittleEndian.AppendUint16(h, uint16(height))
	h = binary.LittleEndian.AppendUint32(h, 90000) // time base denominator
	h = binary.LittleEndian.AppendUint32(h, 1)     // numerator
	h = binary.LittleEndian.AppendUint32(h, 0)     // frame count: unknown
	h = binary.LittleEndian.AppendUint32(h, 0)
	if _, err := w.Write(h); err != nil {
		return nil, err
	}
	return &ivfWriter{w: w, last: -1}, nil
}

// WriteFrame writes one frame with its RTP timestamp.
func (v *ivfWriter) WriteFrame(ts uint32, frame []byte) error {
	pts := v.clock.extend(ts)
	if pts <= v.last {
		return nil
	}
	v.last = pts
	b := binary.LittleEndian.AppendUint32(v.buf[:0], uint32(len(frame)))
	b = binary.LittleEndian.AppendUint64(b, uint64(pts))
	b = append(b, frame...)
	v.buf = b
	_, err := v.w.Write(b)
	return err
}

// unwrapper extends 32-bit RTP timestamps to 64 bits, counted from the
// first one.
type unwrapper struct {
	started bool
	prev    uint32
	ext     int64
}

func (u *unwrapper) extend(ts uint32) int64 {
	if !u.started {
		u.started, u.prev = true, ts
		return 0
	}
	u.ext += int64(int32(ts - u.prev))
	u.prev = ts
	return u.ext
}
