package room

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/matinee-dev/matinee/sfu"
)

// StageViewerOptions configures a stage viewer. The callbacks are called
// from the media core's goroutines and must not block.
type StageViewerOptions struct {
	// Owner names the viewer in the media core (e.g. "whep-<session>").
	Owner string
	// OnFailed is called when the connection fails for good.
	OnFailed func(reason string)
	// OnClosed is called when the connection closes.
	OnClosed func()
	// Logger receives the viewer's warnings (a source switch that failed).
	Logger *slog.Logger
}

// StageViewer watches the room's stage without being a member (a WHEP
// client): one receive connection whose tracks follow the room's stage
// without renegotiating.
type StageViewer struct {
	room *Room
	v    *sfu.Viewer
	log  *slog.Logger

	mu       sync.Mutex
	unfollow func()
	closed   bool
}

// NewStageViewer makes a viewer of the room's stage; Answer connects it.
func (r *Room) NewStageViewer(o StageViewerOptions) (*StageViewer, error) {
	v, err := r.router.NewViewer(sfu.ViewerOptions{Owner: o.Owner, OnFailed: o.OnFailed, OnClosed: o.OnClosed})
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = r.log
	}
	r.viewers.Add(1)
	return &StageViewer{room: r, v: v, log: log}, nil
}

// Answer applies the viewer's offer, refuses it when its formats cannot
// carry what the stage shows now, and from then on follows the stage. On
// error the caller closes the viewer.
func (sv *StageViewer) Answer(ctx context.Context, offer string) (string, error) {
	answer, err := sv.v.Answer(ctx, offer)
	if err != nil {
		return "", err
	}
	if err := checkCarries(sv.v, sv.room.stage.current()); err != nil {
		return "", err
	}
	unfollow := sv.room.stage.subscribe(sv.apply)
	sv.mu.Lock()
	if sv.closed {
		// Closed while answering: the caller, which closed it, knows.
		sv.mu.Unlock()
		unfollow()
		return answer, nil
	}
	sv.unfollow = unfollow
	sv.mu.Unlock()
	return answer, nil
}

// apply makes the viewer's tracks carry the stage's producers: the
// show, or when there is none, the room's newest video and audio.
func (sv *StageViewer) apply(st Stage) {
	if err := sv.v.SetSource(sfu.KindVideo, st.Video); err != nil {
		sv.log.Warn("whep: switch video", "viewer", sv.v.Transport().ID(), "err", err)
	}
	if err := sv.v.SetSource(sfu.KindAudio, st.Audio); err != nil {
		sv.log.Warn("whep: switch audio", "viewer", sv.v.Transport().ID(), "err", err)
	}
}

// Connection is the viewer's transport, for trickle ICE and restarts.
func (sv *StageViewer) Connection() *Connection {
	return &Connection{t: sv.v.Transport().WebRTCTransport}
}

// Close stops following the stage and closes the connection.
func (sv *StageViewer) Close() {
	sv.mu.Lock()
	if !sv.closed {
		sv.room.viewers.Add(-1)
	}
	sv.closed = true
	unfollow := sv.unfollow
	sv.unfollow = nil
	sv.mu.Unlock()
	if unfollow != nil {
		unfollow()
	}
	sv.v.Close()
}

// checkCarries refuses a viewer whose negotiated formats cannot carry
// what the stage shows now (an H.264 offer in packetization-mode 0 only,
// facing a mode-1 source, say): it would get a track and never a frame.
func checkCarries(v *sfu.Viewer, st Stage) error {
	for _, p := range []*sfu.Producer{st.Video, st.Audio} {
		if p == nil {
			continue
		}
		if a, vid := v.Kinds(); p.Kind() == sfu.KindAudio && !a || p.Kind() == sfu.KindVideo && !vid {
			continue
		}
		if !v.Carries(p) {
			mime, fmtp := p.Codec()
			return fmt.Errorf("%w: the room's %s is %s (%s), which the offer's formats (%s) cannot carry", sfu.ErrBadSDP, p.Kind(), mime, fmtp, v.Formats(p.Kind()))
		}
	}
	return nil
}
