// Package play streams a media file into a room: ffmpeg reads it in real
// time and sends H.264 and Opus over RTP to a room's plain-RTP endpoints
// (see room.Ingest). H.264 that browsers decode (constrained baseline or
// baseline, no B-frames) is sent as it is, frame for frame; anything else
// is encoded to H.264 constrained baseline. Audio becomes Opus unless it
// is Opus already.
package play

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Source is what ffprobe says about a file.
type Source struct {
	HasVideo, HasAudio bool
	// CopyVideo: the video is H.264 a browser decodes as it is.
	CopyVideo bool
	// CopyAudio: the audio is Opus at 48 kHz.
	CopyAudio bool
	Duration  time.Duration
	Width     int
	Height    int
}

// Probe asks ffprobe (next to ffmpeg, or in $PATH) about a file.
func Probe(ctx context.Context, ffmpeg, path string) (Source, error) {
	fp := "ffprobe"
	if ffmpeg != "" && filepath.Base(ffmpeg) != ffmpeg {
		fp = filepath.Join(filepath.Dir(ffmpeg), "ffprobe")
	}
	out, err := exec.CommandContext(ctx, fp, "-v", "error", "-print_format", "json", "-show_streams", "-show_format", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return Source{}, fmt.Errorf("ffprobe %s: %s", path, strings.TrimSpace(string(ee.Stderr)))
		}
		return Source{}, fmt.Errorf("ffprobe %s: %w", path, err)
	}
	var p struct {
		Streams []struct {
			CodecType  string `json:"codec_type"`
			CodecName  string `json:"codec_name"`
			Profile    string `json:"profile"`
			HasBFrames int    `json:"has_b_frames"`
			SampleRate string `json:"sample_rate"`
			Width      int    `json:"width"`
			Height     int    `json:"height"`
			PixFmt     string `json:"pix_fmt"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return Source{}, fmt.Errorf("ffprobe %s: %w", path, err)
	}
	var s Source
	for _, st := range p.Streams {
		switch {
		case st.CodecType == "video" && !s.HasVideo:
			s.HasVideo = true
			s.Width, s.Height = st.Width, st.Height
			s.CopyVideo = st.CodecName == "h264" && st.HasBFrames == 0 && st.PixFmt == "yuv420p" &&
				(st.Profile == "Constrained Baseline" || st.Profile == "Baseline")
		case st.CodecType == "audio" && !s.HasAudio:
			s.HasAudio = true
			s.CopyAudio = st.CodecName == "opus" && st.SampleRate == "48000"
		}
	}
	if d, err := strconv.ParseFloat(p.Format.Duration, 64); err == nil {
		s.Duration = time.Duration(d * float64(time.Second))
	}
	if !s.HasVideo && !s.HasAudio {
		return Source{}, fmt.Errorf("%s has neither video nor audio", path)
	}
	return s, nil
}

// Target is one RTP destination.
type Target struct {
	IP          string
	Port        int
	PayloadType uint8
	SSRC        uint32
}

func (t Target) url() string {
	hp := t.IP + ":" + strconv.Itoa(t.Port)
	if strings.Contains(t.IP, ":") {
		hp = "[" + t.IP + "]:" + strconv.Itoa(t.Port)
	}
	// RTCP goes to the same port (the room's transports multiplex it).
	return "rtp://" + hp + "?rtcpport=" + strconv.Itoa(t.Port) + "&pkt_size=1200"
}

// Options tunes the stream.
type Options struct {
	// Loop plays the file over and over.
	Loop bool
	// VideoBitrate caps transcoded video (default 6 Mbit/s: full quality
	// for a 1080p movie on a LAN).
	VideoBitrate int
}

// Args returns ffmpeg's arguments to send file's video to v and audio to
// a (either may be nil), in real time.
func Args(file string, s Source, v, a *Target, o Options) []string {
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-re"}
	if o.Loop {
		args = append(args, "-stream_loop", "-1")
	}
	args = append(args, "-i", file)
	if v != nil && s.HasVideo {
		args = append(args, "-map", "0:v:0")
		if s.CopyVideo {
			// Parameter sets in front of every keyframe, as WebRTC wants.
			args = append(args, "-c:v", "copy", "-bsf:v", "h264_mp4toannexb")
		} else {
			br := o.VideoBitrate
			if br <= 0 {
				br = 6_000_000
			}
			args = append(args, "-c:v", "libx264", "-profile:v", "baseline", "-level:v", "4.1", "-preset", "veryfast", "-tune", "zerolatency",
				"-pix_fmt", "yuv420p", "-bf", "0", "-g", "60", "-b:v", strconv.Itoa(br), "-maxrate", strconv.Itoa(br), "-bufsize", strconv.Itoa(br))
		}
		args = append(args, "-f", "rtp", "-payload_type", strconv.Itoa(int(v.PayloadType)), "-ssrc", strconv.FormatUint(uint64(v.SSRC), 10), v.url())
	}
	if a != nil && s.HasAudio {
		args = append(args, "-map", "0:a:0")
		if s.CopyAudio {
			args = append(args, "-c:a", "copy")
		} else {
			args = append(args, "-c:a", "libopus", "-ar", "48000", "-ac", "2", "-b:a", "128k", "-frame_duration", "20")
		}
		args = append(args, "-f", "rtp", "-payload_type", strconv.Itoa(int(a.PayloadType)), "-ssrc", strconv.FormatUint(uint64(a.SSRC), 10), a.url())
	}
	return args
}

// LiveAACArgs returns ffmpeg's arguments to read ADTS AAC on its standard
// input as it arrives (an RTMP publisher's audio) and send it to a as
// Opus, 48 kHz stereo, buffering as little as ffmpeg allows.
func LiveAACArgs(a Target) []string {
	return []string{"-hide_banner", "-nostdin", "-loglevel", "error",
		"-fflags", "nobuffer", "-probesize", "32", "-analyzeduration", "0",
		"-f", "aac", "-i", "pipe:0",
		"-c:a", "libopus", "-ar", "48000", "-ac", "2", "-b:a", "128k", "-frame_duration", "20",
		"-flush_packets", "1",
		"-f", "rtp", "-payload_type", strconv.Itoa(int(a.PayloadType)), "-ssrc", strconv.FormatUint(uint64(a.SSRC), 10), a.url()}
}
