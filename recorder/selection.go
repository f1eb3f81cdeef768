package recorder

import (
	"github.com/matinee-dev/matinee/sfu"
)

// selection is what a recording records at one moment: one video
// producer and the audio that goes with it (either may be nil).
type selection struct {
	video, audio *sfu.Producer
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
