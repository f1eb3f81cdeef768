package room

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
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
// client): one receive connection whose tracks follow the stage without
// renegotiating (see pickStage).
type StageViewer struct {
	room *Room
	v    *sfu.Viewer
	log  *slog.Logger

	mu     sync.Mutex
	stage  *stageWatcher
	closed bool
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
	if err := checkCarries(sv.v, sv.room.router); err != nil {
		return "", err
	}
	w := watchStage(sv.room.router, sv.apply)
	sv.mu.Lock()
	if sv.closed {
		// Closed while answering: the caller, which closed it, knows.
		sv.mu.Unlock()
		w.stop()
		return answer, nil
	}
	sv.stage = w
	sv.mu.Unlock()
	return answer, nil
}

// apply makes the viewer's tracks carry the stage's producers.
func (sv *StageViewer) apply(video, audio *sfu.Producer) {
	if err := sv.v.SetSource(sfu.KindVideo, video); err != nil {
		sv.log.Warn("whep: switch video", "viewer", sv.v.Transport().ID(), "err", err)
	}
	if err := sv.v.SetSource(sfu.KindAudio, audio); err != nil {
		sv.log.Warn("whep: switch audio", "viewer", sv.v.Transport().ID(), "err", err)
	}
}

// Connection is the viewer's transport, for trickle ICE and restarts.
func (sv *StageViewer) Connection() *Connection { return &Connection{t: sv.v.Transport()} }

// Close stops following the stage and closes the connection.
func (sv *StageViewer) Close() {
	sv.mu.Lock()
	if !sv.closed {
		sv.room.viewers.Add(-1)
	}
	sv.closed = true
	w := sv.stage
	sv.stage = nil
	sv.mu.Unlock()
	if w != nil {
		w.stop()
	}
	sv.v.Close()
}

// checkCarries refuses a viewer whose negotiated formats cannot carry
// what the stage shows now (an H.264 offer in packetization-mode 0 only,
// facing a mode-1 source, say): it would get a track and never a frame.
func checkCarries(v *sfu.Viewer, r *sfu.Router) error {
	ps := r.Producers()
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID() < ps[j].ID() })
	video, audio := pickStage(ps)
	for _, p := range []*sfu.Producer{video, audio} {
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
