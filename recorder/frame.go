// Package recorder records a room's stage (the active screen share's
// video and audio, following the share as sharers change) or a chosen set
// of producers to FLV files, HLS playlists (an adaptive ladder when the
// share is H.264 simulcast) and RTMP servers.
//
// H.264 video is remuxed as it arrives; Opus audio, and VP8/VP9 video,
// go through ffmpeg (recorder/transcode). Audio and video are placed on
// one timeline with the publisher's RTCP sender reports; the timeline
// never goes back, across changes of source too.
//
// A recording is a set of tracks (one consumer each) feeding frames to one
// mux goroutine, which interleaves them by time and writes every sink.
package recorder

import (
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/recorder/aac"
)

// Frame is one video access unit or audio frame on the recording's
// timeline.
type Frame struct {
	// Track identifies the track within the recording; the interleaver
	// orders frames across tracks.
	Track int
	Video bool
	// Rung is a video frame's place in the simulcast ladder (0 is the
	// smallest) and Rungs the ladder's size; a non-simulcast source is
	// one rung. Main marks the rung FLV and RTMP record (the largest).
	Rung, Rungs int
	Main        bool
	PTS         time.Duration
	Key         bool

	NALUs [][]byte
	H264  *h264.Config

	AAC       []byte
	AACConfig aac.Config
}

// Sink is where a recording's frames go: a file, a playlist, a server.
// Its methods are called from the recording's mux goroutine only.
type Sink interface {
	// WriteFrame writes one frame; frames come in time order.
	WriteFrame(f *Frame) error
	// Discontinuity says the next frames come from another source.
	Discontinuity()
	// Close finishes the output.
	Close() error
}
