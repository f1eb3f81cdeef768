package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/matinee-dev/matinee/ingest"
	"github.com/matinee-dev/matinee/rest"
)

// What streams into a room (plain RTP, files, RTMP publishers) is package
// ingest's; the server hands it to the REST API and the signalling
// server, and gives it its listeners (listen.go).

// ingestAPI is the REST API's side of the ingests (rest.Ingests): it
// turns requests and errors into the API's.
type ingestAPI struct{ s *ingest.Service }

// Start opens a plain-RTP ingest into room id; with req.File it plays
// that file of the media folder into it with ffmpeg.
func (a ingestAPI) Start(ctx context.Context, id string, req rest.IngestRequest) (rest.IngestResponse, error) {
	in, err := a.s.Start(ctx, id, ingest.Request{Name: req.Name, Video: req.Video == nil || *req.Video, Audio: req.Audio == nil || *req.Audio, File: req.File, Loop: req.Loop})
	var fe *ingest.FileError
	var pe *ingest.PlayerError
	switch {
	case errors.As(err, &fe):
		return rest.IngestResponse{}, rest.FieldError("file", fe.Error())
	case errors.As(err, &pe):
		return rest.IngestResponse{}, &rest.Error{Status: http.StatusServiceUnavailable, Code: "ffmpeg_missing", Message: pe.Error()}
	case err != nil:
		return rest.IngestResponse{}, err
	}
	return rest.IngestResponse{ID: in.PeerID(), Room: id, Endpoints: in.Endpoints(), File: req.File}, nil
}

// Stop ends ingest iid of room id.
func (a ingestAPI) Stop(id, iid string) bool { return a.s.Stop(id, iid) }

// ServeRTMP takes RTMP publishers on ln until the server closes.
func (s *Server) ServeRTMP(ln net.Listener) error { return s.ingests.ServeRTMP(ln) }

// RTMPRefused returns the refused publishes by reason.
func (s *Server) RTMPRefused() map[string]uint64 { return s.ingests.RTMPRefused() }

// rtmpURLFor is rtmpURL for a browser that reached the server at reqHost
// (a host's page asks over its WebSocket).
func (s *Server) rtmpURLFor(reqHost string) string {
	host := reqHost
	if u, err := url.Parse(s.baseURL(&http.Request{Host: reqHost})); err == nil {
		host = u.Hostname()
	}
	port := s.ingests.RTMPPort()
	if port == 0 {
		if _, p, err := net.SplitHostPort(s.cfg.RTMPAddr); err == nil {
			port, _ = strconv.Atoi(p)
		}
	}
	if port == 0 || port == 1935 {
		return "rtmp://" + hostForURL(host) + "/" + ingest.RTMPApp
	}
	return "rtmp://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/" + ingest.RTMPApp
}

// rtmpsURLFor is the RTMPS server URL for a browser that reached the
// server at reqHost; empty when RTMPS is off.
func (s *Server) rtmpsURLFor(reqHost string) string {
	port := s.ingests.RTMPSPort()
	if port == 0 {
		return ""
	}
	host := reqHost
	if u, err := url.Parse(s.baseURL(&http.Request{Host: reqHost})); err == nil {
		host = u.Hostname()
	}
	if port == 443 {
		return "rtmps://" + hostForURL(host) + "/" + ingest.RTMPApp
	}
	return "rtmps://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/" + ingest.RTMPApp
}

// rtmpKeys gives the signalling server (a host's createStreamKey and
// revokeStreamKey) and the REST API (stream keys) the RTMP URL and the
// live publishers.
type rtmpKeys struct{ s *Server }

func (k *rtmpKeys) RTMPURL(host string) string  { return k.s.rtmpURLFor(host) }
func (k *rtmpKeys) RTMPSURL(host string) string { return k.s.rtmpsURLFor(host) }
func (k *rtmpKeys) RevokeLive(keyID string)     { k.s.ingests.RevokeLive(keyID) }
func (k *rtmpKeys) Listening() bool {
	return k.s.cfg.RTMPAddr != "" || k.s.ingests.RTMPPort() != 0
}
