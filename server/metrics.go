package server

import (
	"github.com/matinee-dev/matinee/metrics"
)

// SetRecordingsSource plugs in the recorder: f reports how many rooms are
// being recorded, exported as matinee_recordings_active.
func (s *Server) SetRecordingsSource(f func() int) {
	if f == nil {
		s.recordings.Store(nil)
		return
	}
	s.recordings.Store(&f)
}

// mountMetrics serves Prometheus metrics at GET /metrics.
func (s *Server) mountMetrics() {
	s.mux.Handle("GET /metrics", metrics.Handler(metrics.Sources{
		Rooms:       s.rooms,
		Sessions:    s.whip.Sessions,
		RTMPRefused: s.RTMPRefused,
		Relay:       s.relayFigures,
		Recordings: func() (int, bool) {
			if f := s.recordings.Load(); f != nil {
				return (*f)(), true
			}
			return 0, false
		},
	}))
}
