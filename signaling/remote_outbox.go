package signaling

import (
	"context"
	"encoding/json"
	"time"

	"github.com/matinee-dev/matinee/internal/sendq"
)

// fanout sends what the room's sessions write to members on other nodes:
// all that is waiting for one node goes in as few bus messages as the
// size limit allows (a "batch"), so that a chat line to 100 members on
// one edge is one message through Redis, not 100. One goroutine, first
// in first out, so each session's messages keep their order.
type fanout struct {
	rm *remote
	q  *sendq.Queue[posted]
}

type posted struct {
	node string
	m    remoteMsg // an out or closed
}

// maxFanoutQueue bounds what waits (Redis stalled): past it the oldest
// go, and their sessions see the gap and resume.
const maxFanoutQueue = 1 << 16

func newFanout(rm *remote) *fanout {
	return &fanout{rm: rm, q: sendq.New[posted](maxFanoutQueue)}
}

// post queues m for node (never blocks).
func (f *fanout) post(node string, m remoteMsg) error {
	m.From = f.rm.opt.Bus.ID()
	f.q.Post(posted{node, m})
	return nil
}

// run sends until ctx ends.
func (f *fanout) run(ctx context.Context) { f.q.Run(ctx, f.sendAll) }

// sendAll sends q, per node in order, in batches, each broadcast once
// per node (merge).
func (f *fanout) sendAll(q []posted) {
	var nodes []string
	byNode := map[string][]remoteMsg{}
	for _, p := range q {
		if byNode[p.node] == nil {
			nodes = append(nodes, p.node)
		}
		byNode[p.node] = append(byNode[p.node], p.m)
	}
	budget := f.rm.opt.MaxMessage - 256 // the envelope
	for _, node := range nodes {
		var batch []json.RawMessage
		size := 0
		for _, msg := range merge(byNode[node], budget) {
			m, err := encodeRemote(msg)
			if err != nil {
				// The session sees the gap and resumes.
				f.rm.log.Warn("member relay: message not encoded", "node", node, "err", err)
				continue
			}
			if len(batch) > 0 && (size+len(m)+1 > budget || len(batch) == maxBatch) {
				f.sendBatch(node, batch)
				batch, size = nil, 0
			}
			batch = append(batch, m)
			size += len(m) + 1
		}
		f.sendBatch(node, batch)
	}
}

// merge folds the outs with the same frames (a broadcast: one
// notification to every member) into the first of them (Also), keeping
// each session's order: an out joins an earlier one only if its session
// has nothing in between. A merged out stays within budget bytes.
func merge(ms []remoteMsg, budget int) []remoteMsg {
	out := make([]remoteMsg, 0, len(ms))
	heads := map[string]int{}  // frames → index in out of the out carrying them
	lastOf := map[string]int{} // session → index in out of its last message
	for _, m := range ms {
		if m.Type != msgOut {
			lastOf[m.Sess] = len(out)
			out = append(out, m)
			continue
		}
		key := framesKey(m.Frames)
		if i, ok := heads[key]; ok {
			// An entry of Also takes at most sessSeqMax bytes.
			room := min(maxBatch, (budget-len(key)-256)/sessSeqMax)
			if last, seen := lastOf[m.Sess]; (!seen || last < i) && len(out[i].Also) < room {
				out[i].Also = append(out[i].Also, sessSeq{m.Sess, m.Seq})
				lastOf[m.Sess] = i
				continue
			}
		}
		heads[key] = len(out)
		lastOf[m.Sess] = len(out)
		out = append(out, m)
	}
	return out
}

// sessSeqMax is the most bytes one entry of Also takes encoded:
// {"sess":"<24 hex>","seq":<up to 20 digits>}, and a comma.
const sessSeqMax = 56

// framesKey is frames' bytes, as a map key.
func framesKey(frames []json.RawMessage) string {
	n := 0
	for _, f := range frames {
		n += len(f) + 1
	}
	b := make([]byte, 0, n)
	for _, f := range frames {
		b = append(b, f...)
		b = append(b, 0)
	}
	return string(b)
}

func (f *fanout) sendBatch(node string, batch []json.RawMessage) {
	var err error
	if len(batch) == 1 {
		ctx, cancel := context.WithTimeout(f.rm.ctx, 2*time.Second)
		err = f.rm.opt.Bus.Send(ctx, node, batch[0])
		cancel()
	} else {
		err = f.rm.send(node, remoteMsg{Type: msgBatch, Batch: batch})
	}
	if err != nil {
		// Its sessions see the gap and resume.
		f.rm.log.Warn("member relay: messages not sent to a member's node", "node", node, "messages", len(batch), "err", err)
	}
}

// flush waits, at most d, for every posted message to be sent.
func (f *fanout) flush(d time.Duration) { f.q.Flush(d) }
