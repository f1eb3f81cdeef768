package recorder

import (
	"github.com/matinee-dev/matinee/sfu"
)

// StageSources are the appData "source" values whose video is the room's
// stage: a screen share, or a file played into the room.
var StageSources = []string{"screen", "file"}

func sourceOf(p *sfu.Producer) string {
	if m, ok := p.AppData().(map[string]any); ok {
		if s, ok := m["source"].(string); ok {
			return s
		}
	}
	return ""
}

func isStageSource(s string) bool {
	for _, x := range StageSources {
		if x == s {
			return true
		}
	}
	return false
}

// selection is what a recording records at one moment: one video
// producer and the audio that goes with it (either may be nil).
type selection struct {
	video, audio *sfu.Producer
}

// pickStage chooses the stage among live producers: the newest screen (or
// file) video, and the audio its owner publishes from the same source.
// order ranks producers by when they appeared (higher is newer).
func pickStage(ps []*sfu.Producer, order func(*sfu.Producer) int) selection {
	var sel selection
	for _, p := range ps {
		if p.Kind() != sfu.KindVideo || !isStageSource(sourceOf(p)) {
			continue
		}
		if sel.video == nil || order(p) > order(sel.video) {
			sel.video = p
		}
	}
	if sel.video == nil {
		return sel
	}
	src := sourceOf(sel.video)
	for _, p := range ps {
		if p.Kind() != sfu.KindAudio || p.Owner() != sel.video.Owner() || sourceOf(p) != src {
			continue
		}
		if sel.audio == nil || order(p) > order(sel.audio) {
			sel.audio = p
		}
	}
	return sel
}

// pickChosen returns the first live video and audio among the producers
// named by ids.
func pickChosen(ps []*sfu.Producer, ids []string) selection {
	var sel selection
	for _, id := range ids {
		for _, p := range ps {
			if p.ID() != id {
				continue
			}
			if p.Kind() == sfu.KindVideo && sel.video == nil {
				sel.video = p
			}
			if p.Kind() == sfu.KindAudio && sel.audio == nil {
				sel.audio = p
			}
		}
	}
	return sel
}
