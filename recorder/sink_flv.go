package recorder

import (
	"bytes"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/recorder/amf0"
	"github.com/matinee-dev/matinee/recorder/flv"
)

// flvTagger turns frames into FLV tags: sequence headers whenever the
// decoder configuration changes, video only from a keyframe on, and the
// main rung only.
type flvTagger struct {
	vcfg    *h264.Config
	asc     []byte
	needKey bool
	// Last timestamps written, +1: each stream's must increase, which
	// FLV's millisecond clock would not give two frames sent together.
	lastV, lastA uint32
}

// next returns ms, or just after the stream's last timestamp.
func next(ms uint32, last *uint32) uint32 {
	if *last > 0 && ms < *last {
		ms = *last
	}
	*last = ms + 1
	return ms
}

func (t *flvTagger) tags(f *Frame, emit func(flv.Tag) error) error {
	ms := uint32(max(f.PTS, 0) / time.Millisecond)
	if f.Video {
		if !f.Main {
			return nil
		}
		if !f.Key && (t.needKey || t.vcfg == nil) {
			return nil
		}
		ms = next(ms, &t.lastV)
		if t.vcfg == nil || !bytes.Equal(t.vcfg.SPS, f.H264.SPS) || !bytes.Equal(t.vcfg.PPS, f.H264.PPS) {
			if !f.Key {
				return nil // the new configuration starts with a keyframe
			}
			t.vcfg = f.H264
			if err := emit(flv.Tag{Type: flv.TagVideo, Timestamp: ms, Data: flv.AVCSequenceHeader(f.H264.Record())}); err != nil {
				return err
			}
			t.needKey = false
		}
		if t.needKey {
			if !f.Key {
				return nil
			}
			t.needKey = false
		}
		return emit(flv.Tag{Type: flv.TagVideo, Timestamp: ms, Data: flv.AVCFrame(f.Key, 0, h264.AVCC(f.NALUs))})
	}
	asc, err := f.AACConfig.Bytes()
	if err != nil {
		return nil
	}
	ms = next(ms, &t.lastA)
	if !bytes.Equal(asc, t.asc) {
		t.asc = asc
		if err := emit(flv.Tag{Type: flv.TagAudio, Timestamp: ms, Data: flv.AACSequenceHeader(asc)}); err != nil {
			return err
		}
	}
	return emit(flv.Tag{Type: flv.TagAudio, Timestamp: ms, Data: flv.AACFrame(f.AAC)})
}

// discontinuity makes the next video wait for a keyframe.
func (t *flvTagger) discontinuity() { t.needKey = true }

// flvSink records to an FLV file.
type flvSink struct {
	f *flv.File
	t flvTagger
}

func newFLVSink(path string, audio bool) (*flvSink, error) {
	meta := amf0.ECMAArray{{Key: "videocodecid", Value: 7.0}, {Key: "encoder", Value: "matinee"}}
	if audio {
		meta = append(meta, amf0.Property{Key: "audiocodecid", Value: 10.0}, amf0.Property{Key: "audiosamplerate", Value: 48000.0}, amf0.Property{Key: "stereo", Value: true})
	}
	f, err := flv.Create(path, true, audio, meta)
	if err != nil {
		return nil, err
	}
	return &flvSink{f: f}, nil
}

func (s *flvSink) WriteFrame(f *Frame) error { return s.t.tags(f, s.f.WriteTag) }

func (s *flvSink) Discontinuity() { s.t.discontinuity() }

func (s *flvSink) Close() error { return s.f.Close() }
