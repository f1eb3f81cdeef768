package recorder

import (
	"fmt"
	"path/filepath"
	"reflect"
	"time"

	"github.com/matinee-dev/matinee/recorder/hls"
)

// hlsSink records to HLS: one variant per simulcast rung (one for a
// plain source) under dir/v<N>/, and a master playlist dir/index.m3u8.
// A source with fewer rungs than there are variants feeds its largest
// rung to the extra variants, so every variant keeps playing.
type hlsSink struct {
	dir      string
	target   time.Duration
	audio    bool
	variants []*hls.Variant
	segs     []int
	master   []hls.VariantInfo
}

func newHLSSink(dir string, target time.Duration, audio bool) (*hlsSink, error) {
	s := &hlsSink{dir: dir, target: target, audio: audio}
	if _, err := s.variant(0); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *hlsSink) variant(i int) (*hls.Variant, error) {
	for len(s.variants) <= i {
		n := len(s.variants)
		v, err := hls.NewVariant(filepath.Join(s.dir, fmt.Sprintf("v%d", n)), hls.Options{TargetDuration: s.target, Video: true, Audio: s.audio})
		if err != nil {
			return nil, err
		}
		s.variants = append(s.variants, v)
		s.segs = append(s.segs, 0)
	}
	return s.variants[i], nil
}

func (s *hlsSink) WriteFrame(f *Frame) error {
	if !f.Video {
		for _, v := range s.variants {
			if err := v.WriteAudio(f.PTS, f.AAC, f.AACConfig); err != nil {
				return err
			}
		}
		return s.updateMaster()
	}
	if _, err := s.variant(f.Rungs - 1); err != nil {
		return err
	}
	targets := []int{f.Rung}
	if f.Main {
		for i := f.Rungs; i < len(s.variants); i++ {
			targets = append(targets, i)
		}
	}
	for _, i := range targets {
		if err := s.variants[i].WriteVideo(f.PTS, f.Key, f.NALUs, f.H264); err != nil {
			return err
		}
	}
	return s.updateMaster()
}

// updateMaster rewrites the master playlist when a variant finished a
// segment and what the master says about it changed.
func (s *hlsSink) updateMaster() error {
	changed := false
	for i, v := range s.variants {
		if n := v.Segments(); n != s.segs[i] {
			s.segs[i] = n
			changed = true
		}
	}
	if !changed {
		return nil
	}
	var infos []hls.VariantInfo
	for i, v := range s.variants {
		if s.segs[i] == 0 {
			return nil // every variant must have a segment first
		}
		in := v.Info()
		in.URI = fmt.Sprintf("v%d/%s", i, hls.PlaylistName)
		infos = append(infos, in)
	}
	// Largest first: players start with the first variant.
	for i, j := 0, len(infos)-1; i < j; i, j = i+1, j-1 {
		infos[i], infos[j] = infos[j], infos[i]
	}
	if reflect.DeepEqual(infos, s.master) {
		return nil
	}
	s.master = infos
	return hls.WriteMaster(filepath.Join(s.dir, hls.PlaylistName), infos)
}

func (s *hlsSink) Discontinuity() {
	for _, v := range s.variants {
		v.Discontinuity()
	}
}

func (s *hlsSink) Close() error {
	var first error
	for _, v := range s.variants {
		if err := v.Close(); err != nil && first == nil {
			first = err
		}
	}
	for i := range s.segs {
		s.segs[i] = -1 // force a last master update
	}
	if err := s.updateMaster(); err != nil && first == nil {
		first = err
	}
	return first
}
