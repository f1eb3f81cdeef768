package server

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/matinee-dev/matinee/recorder/play"
	"github.com/matinee-dev/matinee/recorder/transcode"
	"github.com/matinee-dev/matinee/rest"
	"github.com/matinee-dev/matinee/room"
)

// ingest is media streamed into a room: by a remote ffmpeg (matinee play)
// or by one the server runs on a file of its media folder.
type ingest struct {
	in     *room.Ingest
	cancel context.CancelFunc
	done   chan struct{} // the server's ffmpeg has exited (nil: remote)
}

// ingests runs plain-RTP and file ingests for the REST API
// (rest.Ingests).
type ingests Server

// Start opens a plain-RTP ingest into room id; with req.File it plays
// that file of the media folder into it with ffmpeg.
func (g *ingests) Start(ctx context.Context, id string, req rest.IngestRequest) (rest.IngestResponse, error) {
	s := (*Server)(g)
	opts := room.IngestOptions{Name: req.Name, Video: req.Video == nil || *req.Video, Audio: req.Audio == nil || *req.Audio, ListenIP: s.cfg.PlainListenIP}
	var src play.Source
	var file string
	if req.File != "" {
		var err error
		file, src, err = s.mediaFile(ctx, req.File)
		if err != nil {
			return rest.IngestResponse{}, rest.FieldError("file", err.Error())
		}
		opts.Video = opts.Video && src.HasVideo
		opts.Audio = opts.Audio && src.HasAudio
		if opts.Name == "" {
			opts.Name = strings.TrimSuffix(filepath.Base(req.File), filepath.Ext(req.File))
		}
	}
	in, err := s.rooms.Ingest(id, opts)
	if err != nil {
		return rest.IngestResponse{}, err
	}
	ing := &ingest{in: in}
	if file != "" {
		if err := s.playFile(ing, file, src, req.Loop); err != nil {
			in.Close()
			return rest.IngestResponse{}, &rest.Error{Status: http.StatusServiceUnavailable, Code: "ffmpeg_missing", Message: err.Error()}
		}
	}
	s.rec.mu.Lock()
	s.rec.ingests[in.PeerID()] = ing
	s.rec.mu.Unlock()
	go func() {
		<-in.Done()
		s.rec.mu.Lock()
		delete(s.rec.ingests, in.PeerID())
		s.rec.mu.Unlock()
		if ing.cancel != nil {
			ing.cancel()
		}
	}()
	return rest.IngestResponse{ID: in.PeerID(), Room: id, Endpoints: in.Endpoints(), File: req.File}, nil
}

// Stop ends ingest iid of room id.
func (g *ingests) Stop(id, iid string) bool {
	s := (*Server)(g)
	s.rec.mu.Lock()
	ing := s.rec.ingests[iid]
	s.rec.mu.Unlock()
	if ing == nil || ing.in.Room() != id {
		return false
	}
	s.endIngest(ing)
	return true
}

// mediaFile resolves a name inside the media folder (never outside it)
// and probes it.
func (s *Server) mediaFile(ctx context.Context, name string) (string, play.Source, error) {
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
func (s *Server) playFile(ing *ingest, file string, src play.Source, loop bool) error {
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

func (s *Server) endIngest(ing *ingest) {
	if ing.cancel != nil {
		ing.cancel()
		<-ing.done
	}
	ing.in.Close()
}

// stopIngests ends every file playback (server shutdown).
func (s *Server) stopIngests() {
	s.rec.mu.Lock()
	all := make([]*ingest, 0, len(s.rec.ingests))
	for _, ing := range s.rec.ingests {
		all = append(all, ing)
	}
	s.rec.mu.Unlock()
	for _, ing := range all {
		s.endIngest(ing)
	}
}
