package ingest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/ingest/play"
	"github.com/matinee-dev/matinee/recorder/transcode"
	"github.com/matinee-dev/matinee/room"
)

// ingest is media streamed into a room: by a remote ffmpeg (matinee play)
// or by one the server runs on a file of its media folder.
type ingest struct {
	in     *room.Ingest
	cancel context.CancelFunc
	done   chan struct{} // the server's ffmpeg has exited (nil: remote)
}

// fileIngests are the running plain-RTP and file ingests, by member id.
type fileIngests struct {
	mu      sync.Mutex
	ingests map[string]*ingest
}

// Request asks for a plain-RTP ingest (the REST API's POST
// /api/rooms/{id}/ingests without a type).
type Request struct {
	Name         string
	Video, Audio bool
	// File names a file of the media folder to play into the ingest.
	File string
	Loop bool
}

// FileError is a Request's File that cannot be played: not in the media
// folder, or no media ffprobe knows.
type FileError struct{ Err error }

func (e *FileError) Error() string { return e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// PlayerError is ffmpeg failing to start on a Request's File.
type PlayerError struct{ Err error }

func (e *PlayerError) Error() string { return e.Err.Error() }
func (e *PlayerError) Unwrap() error { return e.Err }

// Start opens a plain-RTP ingest into room id; with req.File it plays
// that file of the media folder into it with ffmpeg.
func (s *Service) Start(ctx context.Context, id string, req Request) (*room.Ingest, error) {
	opts := room.IngestOptions{Name: req.Name, Video: req.Video, Audio: req.Audio, ListenIP: s.cfg.PlainListenIP}
	var src play.Source
	var file string
	if req.File != "" {
		var err error
		file, src, err = s.mediaFile(ctx, req.File)
		if err != nil {
			return nil, &FileError{Err: err}
		}
		opts.Video = opts.Video && src.HasVideo
		opts.Audio = opts.Audio && src.HasAudio
		if opts.Name == "" {
			opts.Name = strings.TrimSuffix(filepath.Base(req.File), filepath.Ext(req.File))
		}
	}
	in, err := s.rooms.Ingest(id, opts)
	if err != nil {
		return nil, err
	}
	ing := &ingest{in: in}
	if file != "" {
		if err := s.playFile(ing, file, src, req.Loop); err != nil {
			in.Close()
			return nil, &PlayerError{Err: err}
		}
	}
	s.files.mu.Lock()
	s.files.ingests[in.PeerID()] = ing
	s.files.mu.Unlock()
	go func() {
		<-in.Done()
		s.files.mu.Lock()
		delete(s.files.ingests, in.PeerID())
		s.files.mu.Unlock()
		if ing.cancel != nil {
			ing.cancel()
		}
	}()
	return in, nil
}

// Stop ends ingest iid of room id.
func (s *Service) Stop(id, iid string) bool {
	s.files.mu.Lock()
	ing := s.files.ingests[iid]
	s.files.mu.Unlock()
	if ing == nil || ing.in.Room() != id {
		return false
	}
	s.endIngest(ing)
	return true
}

// mediaFile resolves a name inside the media folder (never outside it)
// and probes it.
func (s *Service) mediaFile(ctx context.Context, name string) (string, play.Source, error) {
	if s.cfg.MediaDir == "" {
		return "", play.Source{}, errors.New("this server has no --media-dir to play files from")
	}
	root, err := os.OpenRoot(s.cfg.MediaDir)
	if err != nil {
		return "", play.Source{}, err
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		return "", play.Source{}, errors.New("no file " + name + " in the media folder")
	}
	f.Close()
	path := filepath.Join(s.cfg.MediaDir, filepath.FromSlash(name))
	src, err := play.Probe(ctx, s.cfg.FFmpeg, path)
	return path, src, err
}

// playFile runs ffmpeg sending file into the ingest until it ends (or
// loops until stopped).
func (s *Service) playFile(ing *ingest, file string, src play.Source, loop bool) error {
	ff, err := transcode.Find(s.cfg.FFmpeg)
	if err != nil {
		return err
	}
	var v, a *play.Target
	for _, e := range ing.in.Endpoints() {
		t := &play.Target{IP: e.IP, Port: e.Port, PayloadType: e.PayloadType, SSRC: e.SSRC}
		if e.Kind == "video" {
			v = t
		} else {
			a = t
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, ff, play.Args(file, src, v, a, play.Options{Loop: loop})...)
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		return err
	}
	ing.cancel = cancel
	ing.done = make(chan struct{})
	go func() {
		err := cmd.Wait()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("file playback ended", "file", file, "err", err)
		}
		close(ing.done)
		ing.in.Close()
	}()
	return nil
}

func (s *Service) endIngest(ing *ingest) {
	if ing.cancel != nil {
		ing.cancel()
		<-ing.done
	}
	ing.in.Close()
}

// StopFiles ends every plain-RTP ingest and file playback (server
// shutdown).
func (s *Service) StopFiles() {
	s.files.mu.Lock()
	all := make([]*ingest, 0, len(s.files.ingests))
	for _, ing := range s.files.ingests {
		all = append(all, ing)
	}
	s.files.mu.Unlock()
	for _, ing := range all {
		s.endIngest(ing)
	}
}
