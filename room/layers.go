package room

import (
	"fmt"

	"github.com/matinee-dev/matinee/sfu"
)

// sourcePriority orders video when a subscriber's bandwidth is short: the
// screen share is what everyone came for; cameras come second.
func sourcePriority(appData any) int {
	if m, ok := appData.(map[string]any); ok {
		switch m["source"] {
		case "screen":
			return 2
		case "camera":
			return 1
		}
	}
	return 0
}

// watchLayers sets a new producer's priority and relays dynacast to its
// publisher: which simulcast encodings someone needs.
func (mb *Member) watchLayers(p *sfu.Producer) {
	p.SetPriority(sourcePriority(p.AppData()))
	p.OnLayers(func(active [3]bool) {
		layers := make([]map[string]any, 0, 3)
		for _, l := range p.Layers() {
			idx := layerIndexOf(l.RID)
			if idx < 0 || idx > 2 {
				continue
			}
			layers = append(layers, map[string]any{"rid": l.RID, "spatialLayer": idx, "active": active[idx]})
		}
		mb.notifier().Notify("producerLayers", map[string]any{"producerId": p.ID(), "layers": layers})
	})
}

// layerIndexOf mirrors the SFU's rid → layer mapping for the common rids.
func layerIndexOf(rid string) int {
	switch rid {
	case "", "q", "l", "0", "low":
		return 0
	case "h", "m", "1", "mid":
		return 1
	case "f", "2", "high":
		return 2
	}
	return -1
}

// SetPreferredLayer caps the simulcast layer one of the member's consumers
// receives (0 = lowest, 2 = full): a small tile needs only the lowest.
func (mb *Member) SetPreferredLayer(consumerID string, layer int) error {
	return setPreferredLayer(mb, consumerID, layer)
}

// LayerInfo is a producer layer as the protocol shows it.
type LayerInfo struct {
	RID     string  `json:"rid"`
	Active  bool    `json:"active"`
	Bitrate int     `json:"bitrate"`
	FPS     float64 `json:"fps"`
	Width   int     `json:"width"`
	Height  int     `json:"height"`
}

// ProducerLayers returns live statistics of a producer in the room.
func (r *Room) ProducerLayers(producerID string) ([]LayerInfo, error) {
	p, err := r.router.Producer(producerID)
	if err != nil {
		return nil, fmt.Errorf("producer %q: %w", producerID, err)
	}
	var out []LayerInfo
	for _, l := range p.Layers() {
		out = append(out, LayerInfo{RID: l.RID, Active: l.Active, Bitrate: l.Bitrate, FPS: l.FPS, Width: l.Width, Height: l.Height})
	}
	return out, nil
}
