package relay

import (
	"context"
	"log/slog"
	"time"

	"github.com/matinee-dev/matinee/internal/sendq"
)

// outbox sends messages in the order they were posted, on one goroutine,
// so that the media core's callbacks (which must not block) can post.
type outbox struct {
	q   *sendq.Queue[posted]
	bus Bus
	log *slog.Logger
}

type posted struct {
	node string
	msg  []byte
}

// maxQueue bounds the messages waiting: past it (Redis stalled), the
// oldest are dropped; every end repeats its state each renewal.
const maxQueue = 4096

func newOutbox(bus Bus, log *slog.Logger) *outbox {
	return &outbox{q: sendq.New[posted](maxQueue), bus: bus, log: log}
}

func (o *outbox) post(node string, msg []byte) { o.q.Post(posted{node, msg}) }

// run sends until ctx ends.
func (o *outbox) run(ctx context.Context) {
	failing := false
	o.q.Run(ctx, func(ps []posted) {
		for _, p := range ps {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := o.bus.Send(sctx, p.node, p.msg)
			cancel()
			if err != nil && !failing && ctx.Err() == nil {
				o.log.Warn("relay: sending to a node failed (later messages repeat the state)", "node", p.node, "err", err)
			}
			failing = err != nil
		}
	})
}

// flush waits, at most d, for every posted message to be sent.
func (o *outbox) flush(d time.Duration) { o.q.Flush(d) }
