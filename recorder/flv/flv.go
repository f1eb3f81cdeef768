// Package flv writes and reads FLV (Adobe Flash Video file format,
// version 10.1, Annex E) with H.264 video and AAC audio: the file format
// of recordings and the payload of RTMP.
//
// A file is a header followed by tags, each closed by its own size, so a
// file cut anywhere between two tags is a valid file: the recorder writes
// each tag with one write call.
package flv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/matinee-dev/matinee/recorder/amf0"
)

// Tag types.
const (
	TagAudio  = 8
	TagVideo  = 9
	TagScript = 18
)

// Video codec id and AVC packet types.
const (
	codecAVC       = 7
	AVCSequence    = 0
	AVCNALU        = 1
	AVCEndSequence = 2
)

// AAC packet types.
const (
	AACSequence = 0
	AACRaw      = 1
)

// HeaderSize is the file header plus the first PreviousTagSize.
const HeaderSize = 13

// Tag is one FLV tag; Timestamp is in milliseconds.
type Tag struct {
	Type      uint8
	Timestamp uint32
	Data      []byte
}

// AppendHeader appends the file header (and PreviousTagSize0).
func AppendHeader(b []byte, video, audio bool) []byte {
	var flags byte
	if audio {
		flags |= 4
	}
	if video {
		flags |= 1
	}
	return append(b, 'F', 'L', 'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0)
}

// AppendTag appends a tag and the PreviousTagSize that closes it.
func AppendTag(b []byte, t Tag) []byte {
	n := len(t.Data)
	ts := t.Timestamp
	b = append(b, t.Type, byte(n>>16), byte(n>>8), byte(n),
		byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24), 0, 0, 0)
	b = append(b, t.Data...)
	return binary.BigEndian.AppendUint32(b, uint32(11+n))
}

// AVCSequenceHeader is the body of the video tag that carries an
// AVCDecoderConfigurationRecord.
func AVCSequenceHeader(record []byte) []byte {
	return append([]byte{1<<4 | codecAVC, AVCSequence, 0, 0, 0}, record...)
}

// AVCFrame is the body of a video tag carrying one access unit in AVCC
// framing; cts is the composition time offset in milliseconds.
func AVCFrame(key bool, cts int32, avcc []byte) []byte {
	ft := byte(2)
	if key {
		ft = 1
	}
	b := make([]byte, 5, 5+len(avcc))
	b[0], b[1] = ft<<4|codecAVC, AVCNALU
	b[2], b[3], b[4] = byte(cts>>16), byte(cts>>8), byte(cts)
	return append(b, avcc...)
}

// AVCEnd is the body of the end-of-sequence video tag.
func AVCEnd() []byte { return []byte{1<<4 | codecAVC, AVCEndSequence, 0, 0, 0} }

// aacFlags: AAC, "44 kHz", 16-bit, stereo (the spec fixes these for AAC;
// the real values are in the AudioSpecificConfig).
const aacFlags = 10<<4 | 3<<2 | 1<<1 | 1

// AACSequenceHeader is the body of the audio tag carrying an
// AudioSpecificConfig.
func AACSequenceHeader(asc []byte) []byte {
	return append([]byte{aacFlags, AACSequence}, asc...)
}

// AACFrame is the body of an audio tag carrying one raw AAC frame.
func AACFrame(raw []byte) []byte {
	b := make([]byte, 2, 2+len(raw))
	b[0], b[1] = aacFlags, AACRaw
	return append(b, raw...)
}

// Metadata is the body of the onMetaData script tag.
func Metadata(props amf0.ECMAArray) ([]byte, error) {
	return amf0.Append(nil, "onMetaData", props)
}

// VideoTag is a parsed AVC video tag body.
type VideoTag struct {
	Key        bool
	PacketType uint8
	CTS        int32
	Data       []byte
}

// ParseVideo reads an AVC video tag body.
func ParseVideo(b []byte) (VideoTag, error) {
	if len(b) < 5 {
		return VideoTag{}, errors.New("flv: short video tag")
	}
	if b[0]&0xf != codecAVC {
		return VideoTag{}, fmt.Errorf("flv: video codec %d is not AVC", b[0]&0xf)
	}
	cts := int32(uint32(b[2])<<16|uint32(b[3])<<8|uint32(b[4])) << 8 >> 8
	return VideoTag{Key: b[0]>>4 == 1, PacketType: b[1], CTS: cts, Data: b[5:]}, nil
}

// AudioTag is a parsed AAC audio tag body.
type AudioTag struct {
	PacketType uint8
	Data       []byte
}

// ParseAudio reads an AAC audio tag body.
func ParseAudio(b []byte) (AudioTag, error) {
	if len(b) < 2 {
		return AudioTag{}, errors.New("flv: short audio tag")
	}
	if b[0]>>4 != 10 {
		return AudioTag{}, fmt.Errorf("flv: audio format %d is not AAC", b[0]>>4)
	}
	return AudioTag{PacketType: b[1], Data: b[2:]}, nil
}

// Reader reads the tags of an FLV stream.
type Reader struct {
	r   *bufio.Reader
	hdr [11]byte
	// Video and Audio report the header's flags.
	Video, Audio bool
}

// maxTagSize bounds the size of one tag the reader accepts.
const maxTagSize = 16 << 20

// NewReader reads the file header.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var h [HeaderSize]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("flv: header: %w", err)
	}
	if h[0] != 'F' || h[1] != 'L' || h[2] != 'V' {
		return nil, errors.New("flv: not an FLV stream")
	}
	skip := int(binary.BigEndian.Uint32(h[5:9])) - 9
	if skip < 0 || skip > 1024 {
		return nil, errors.New("flv: bad header size")
	}
	if _, err := br.Discard(skip); err != nil {
		return nil, err
	}
	return &Reader{r: br, Video: h[4]&1 != 0, Audio: h[4]&4 != 0}, nil
}

// Next reads one tag. It returns io.EOF at a clean end and
// io.ErrUnexpectedEOF when the stream stops inside a tag.
func (r *Reader) Next() (Tag, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return Tag{}, err
	}
	h := r.hdr
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	if n > maxTagSize {
		return Tag{}, fmt.Errorf("flv: tag of %d bytes", n)
	}
	t := Tag{Type: h[0] & 0x1f, Timestamp: uint32(h[7])<<24 | uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6])}
	var err error
	if t.Data, err = readData(r.r, n); err != nil {
		return Tag{}, io.ErrUnexpectedEOF
	}
	var prev [4]byte
	if _, err := io.ReadFull(r.r, prev[:]); err != nil {
		return Tag{}, io.ErrUnexpectedEOF
	}
	return t, nil
}

// readData reads n bytes, growing the slice as they arrive: a stream that
// announces a 16 MiB tag and ends does not cost 16 MiB.
func readData(r io.Reader, n int) ([]byte, error) {
	const step = 64 << 10
	b := make([]byte, 0, min(n, step))
	for len(b) < n {
		k := min(n-len(b), step)
		b = slices.Grow(b, k)
		if _, err := io.ReadFull(r, b[len(b):len(b)+k]); err != nil {
			return nil, err
		}
		b = b[:len(b)+k]
	}
	return b, nil
}
