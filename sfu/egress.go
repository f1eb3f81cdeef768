package sfu

// Choosing a consumer's egress (forward.go): a direct or plain consumer
// is given its own when made; a WebRTC one gets pion's writer or the own
// SRTP path when pion binds its track, and moves from the first to the
// second when its transport takes that path after binding.

// bindWebRTC sets, with c.mu held, the consumer's way out once pion has
// bound its track to w: the receive transport's own SRTP path o when it
// took one (setupOut moves consumers bound before that), pion's otherwise.
func (c *Consumer) bindWebRTC(w PacketWriter, twccID uint8, o *srtpOut) {
	c.twccID = twccID
	c.pionOut = pionEgress{w: w}
	c.writer = &c.pionOut
	if o != nil {
		c.useOwnSRTP(o)
	}
}

// useOwnSRTP moves a bound consumer onto the own SRTP path o, with c.mu
// held. The move is one way, as the transport's (srtpout.go).
func (c *Consumer) useOwnSRTP(o *srtpOut) {
	if c.writer == nil {
		return // not bound: bindWebRTC chooses
	}
	c.srtpOut = srtpEgress{o: o, twcc: c.twccID}
	c.writer = &c.srtpOut
}
