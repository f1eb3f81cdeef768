package signaling

import (
	"encoding/json"
)

func init() {
	methods["setPreferredLayers"] = (*session).setPreferredLayers
}

func (ss *session) setPreferredLayers(params json.RawMessage) (any, error) {
	var p struct {
		ConsumerID   string `json:"consumerId"`
		SpatialLayer *int   `json:"spatialLayer"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := required("consumerId", p.ConsumerID); err != nil {
		return nil, err
	}
	if p.SpatialLayer == nil {
		return nil, errParams(`"spatialLayer" is required`)
	}
	mb, err := ss.memberOrErr()
	if err != nil {
		return nil, err
	}
	return nil, mb.SetPreferredLayer(p.ConsumerID, *p.SpatialLayer)
}
