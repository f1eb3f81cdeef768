// Package ingest runs everything that streams into a room: plain-RTP
// ingests (a remote ffmpeg, `matinee play`), files of the media folder the
// server plays with ffmpeg (file.go, with ffmpeg's arguments in
// ingest/play), and RTMP publishers (rtmp.go: the publish decision, H.264
// repacketised to RTP, AAC to Opus through ffmpeg, the resume grace). Each
// becomes a member of its room through room.Ingest; the RTMP protocol
// itself is recorder/rtmp's.
package ingest

import (
	"log/slog"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/room"
)

// Rooms is what ingest asks of the rooms (room.Manager).
type Rooms interface {
	// Ingest opens a room's plain-RTP ingest: a member with plain
	// transports.
	Ingest(id string, o room.IngestOptions) (*room.Ingest, error)
	// LookupStreamKey finds the room and key id of an RTMP stream key.
	LookupStreamKey(key string) (roomID, keyID string, ok bool)
	// HasStreamKey reports whether key keyID of room id is still valid.
	HasStreamKey(id, keyID string) bool
}

// Service runs a server's ingests. It reads the ingest settings of the
// server's configuration (FFmpeg, MediaDir, PlainListenIP, RTMP*).
type Service struct {
	cfg   config.Config
	log   *slog.Logger
	rooms Rooms

	// files runs plain-RTP and file ingests (file.go).
	files fileIngests
	// rtmp takes RTMP publishers into rooms (rtmp.go).
	rtmp *rtmpIngest
}

// New returns the ingest service of a server with configuration cfg.
// StopFiles and CloseRTMP release what it runs.
func New(rooms Rooms, cfg config.Config, log *slog.Logger) *Service {
	s := &Service{cfg: cfg, log: log, rooms: rooms, files: fileIngests{ingests: map[string]*ingest{}}}
	s.rtmp = s.newRTMPIngest()
	return s
}
