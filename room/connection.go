package room

import (
	"fmt"

	"github.com/matinee-dev/matinee/sfu"
)

// connection is what a Member (whose room is here) and an EdgeMember (whose
// room is on another node, its media here) share: transports and a
// receive transport's consumers, found by id. The requests on them below
// are one implementation for both.
type connection interface {
	// transport finds transport id: a send transport (recv nil) or a
	// receive one (send nil).
	transport(id string) (send *sfu.SendTransport, recv *sfu.RecvTransport, err error)
	consumer(id string) (*sfu.Consumer, error)
}

// webrtcOf is the connection (ICE, DTLS) of whichever transport
// connection.transport found.
func webrtcOf(send *sfu.SendTransport, recv *sfu.RecvTransport) *sfu.WebRTCTransport {
	if send != nil {
		return send.WebRTCTransport
	}
	return recv.WebRTCTransport
}

// findConsumer finds consumer id on recv, which may be nil (no receive
// transport yet).
func findConsumer(recv *sfu.RecvTransport, id string) (*sfu.Consumer, error) {
	if recv != nil {
		for _, c := range recv.Consumers() {
			if c.ID() == id {
				return c, nil
			}
		}
	}
	return nil, errorf(KindNotFound, "unknown consumer %q", id)
}

func unsubscribe(cn connection, id string) error {
	c, err := cn.consumer(id)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

func pauseConsumer(cn connection, id string, pause bool) error {
	c, err := cn.consumer(id)
	if err != nil {
		return err
	}
	if pause {
		c.Pause()
	} else {
		c.Resume()
	}
	return nil
}

func setPreferredLayer(cn connection, id string, layer int) error {
	if layer < 0 || layer > 2 {
		return errorf(KindInvalidField, `"spatialLayer" must be 0, 1 or 2`)
	}
	c, err := cn.consumer(id)
	if err != nil {
		return err
	}
	c.SetMaxLayer(layer)
	return nil
}

func transportAnswer(cn connection, transportID, answer string) error {
	_, recv, err := cn.transport(transportID)
	if err != nil {
		return err
	}
	if recv == nil {
		return fromSFU(fmt.Errorf("answer on a send transport: %w", sfu.ErrInvalidState))
	}
	return fromSFU(recv.HandleAnswer(answer))
}

func restartICE(cn connection, transportID string) error {
	_, recv, err := cn.transport(transportID)
	if err != nil {
		return err
	}
	if recv == nil {
		return fromSFU(fmt.Errorf("restart ice on a send transport (re-offer instead): %w", sfu.ErrInvalidState))
	}
	return fromSFU(recv.RestartICE())
}

func addICECandidate(cn connection, transportID string, c *ICECandidate) error {
	send, recv, err := cn.transport(transportID)
	if err != nil {
		return err
	}
	if err := webrtcOf(send, recv).AddICECandidate((*sfu.ICECandidate)(c)); err != nil {
		return errorf(KindInvalidField, "candidate: %v", err)
	}
	return nil
}

// transportOptions are a connection's transport callbacks, for a Member
// and an EdgeMember alike: candidates and offers go to n, named by the
// transport's id (*id, set once the transport is made); a failure tells n
// the connection's media is gone and disconnects it (the client
// reconnects and resumes), then runs failed when not nil.
func transportOptions(owner string, n Notifier, id *string, failed func()) sfu.TransportOptions {
	return sfu.TransportOptions{
		Owner: owner,
		OnICECandidate: func(c *sfu.ICECandidate) {
			var cand any
			if c != nil {
				cand = map[string]any{"candidate": c.Candidate, "sdpMid": c.SDPMid, "sdpMLineIndex": c.SDPMLineIndex, "usernameFragment": c.UsernameFragment}
			}
			n.Notify("iceCandidate", map[string]any{"transportId": *id, "candidate": cand})
		},
		OnOffer: func(sdp string, cs []*sfu.Consumer) {
			infos := make([]ConsumerInfo, 0, len(cs))
			for _, c := range cs {
				infos = append(infos, consumerInfo(c))
			}
			n.Notify("transportOffer", map[string]any{"transportId": *id, "sdp": sdp, "consumers": infos})
		},
		OnFailed: func(reason string) {
			n.Notify("transportClosed", map[string]any{"transportId": *id, "reason": reason})
			n.Notify("disconnected", map[string]any{"reason": reason})
			n.Disconnect(reason)
			if failed != nil {
				failed()
			}
		},
	}
}
