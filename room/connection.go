package room

import "github.com/matinee-dev/matinee/sfu"

// connection is what a Member (whose room is here) and an EdgeMember (whose
// room is on another node, its media here) share: transports and a
// receive transport's consumers, found by id. The requests on them below
// are one implementation for both.
type connection interface {
	transport(id string) (*sfu.Transport, error)
	consumer(id string) (*sfu.Consumer, error)
}

// findConsumer finds consumer id on recv, which may be nil (no receive
// transport yet).
func findConsumer(recv *sfu.Transport, id string) (*sfu.Consumer, error) {
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
	t, err := cn.transport(transportID)
	if err != nil {
		return err
	}
	return fromSFU(t.HandleAnswer(answer))
}

func restartICE(cn connection, transportID string) error {
	t, err := cn.transport(transportID)
	if err != nil {
		return err
	}
	return fromSFU(t.RestartICE())
}

func addICECandidate(cn connection, transportID string, c *ICECandidate) error {
	t, err := cn.transport(transportID)
	if err != nil {
		return err
	}
	if err := t.AddICECandidate((*sfu.ICECandidate)(c)); err != nil {
		return errorf(KindInvalidField, "candidate: %v", err)
	}
	return nil
}
