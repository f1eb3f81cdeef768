package room

import (
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The end of a video and what comes after it: the room ends a video on
// its own clock once it knows the duration, and then plays the next one
// of its queue (docs/protocol.md, "End of the video and the queue").

// QueueItem is one video waiting in the room's queue.
type QueueItem struct {
	ID        string     `json:"id"`
	URL       string     `json:"url"`
	Title     string     `json:"title,omitempty"`
	Duration  float64    `json:"duration,omitempty"`
	Subtitles []Subtitle `json:"subtitles"`
	Subtitle  string     `json:"subtitle"`
	AddedBy   string     `json:"addedBy"`
}

// QueueCommand changes the queue: add (URL, Title, Duration, Subtitles,
// Subtitle), remove (ID) or clear.
type QueueCommand struct {
	Action    string     `json:"action"`
	ID        string     `json:"id"`
	URL       string     `json:"url"`
	Title     string     `json:"title"`
	Duration  *float64   `json:"duration"`
	Subtitles []Subtitle `json:"subtitles"`
	Subtitle  *string    `json:"subtitle"`
}

type playQueue struct {
	items []QueueItem
	seq   int
}

func (q *playQueue) list() []QueueItem {
	out := make([]QueueItem, len(q.items))
	for i, it := range q.items {
		it.Subtitles = slices.Clone(it.Subtitles)
		if it.Subtitles == nil {
			it.Subtitles = []Subtitle{}
		}
		out[i] = it
	}
	return out
}

// newQueueItem validates an add command as a load would be.
func newQueueItem(c QueueCommand, by string) (QueueItem, error) {
	u, err := checkMediaURL(c.URL)
	if err != nil {
		return QueueItem{}, err
	}
	title := cleanText(c.Title, false)
	if utf8.RuneCountInString(title) > 200 {
		return QueueItem{}, invalidField("title", "must be at most 200 characters")
	}
	if err := checkDuration(c.Duration); err != nil {
		return QueueItem{}, err
	}
	subs, pick, err := checkSubtitles(c.Subtitles, c.Subtitle)
	if err != nil {
		return QueueItem{}, err
	}
	it := QueueItem{URL: u, Title: title, Subtitles: subs, Subtitle: pick, AddedBy: by}
	if c.Duration != nil {
		it.Duration = *c.Duration
	}
	return it, nil
}

// Queue returns the room's queue, next first.
func (r *Room) Queue() []QueueItem {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	return r.queue.list()
}

// Queue changes the room's queue and tells everyone (queueUpdated). The
// same members who control playback may change it.
func (mb *Member) Queue(c QueueCommand) ([]QueueItem, error) {
	if err := mb.check(); err != nil {
		return nil, err
	}
	if err := mb.mayControl(); err != nil {
		return nil, err
	}
	r := mb.room
	if max := r.m.cfg.Sync.SubtitleMax; len(c.Subtitles) > max {
		return nil, invalidField("subtitles", "must be at most %d tracks (--subtitle-max-tracks)", max)
	}
	r.evMu.Lock()
	defer r.evMu.Unlock()
	q := &r.queue
	switch c.Action {
	case "add":
		if max := r.m.cfg.Sync.QueueMax; len(q.items) >= max {
			return nil, errorf(KindInvalidState, "the queue is full (%d videos, --queue-max)", max)
		}
		it, err := newQueueItem(c, mb.id)
		if err != nil {
			return nil, err
		}
		q.seq++
		it.ID = "q" + strconv.Itoa(q.seq)
		q.items = append(q.items, it)
	case "remove":
		i := slices.IndexFunc(q.items, func(it QueueItem) bool { return it.ID == c.ID })
		if i < 0 {
			return nil, invalidField("id", "is not in the queue")
		}
		q.items = slices.Delete(q.items, i, i+1)
	case "clear":
		q.items = nil
	case "":
		return nil, invalidField("action", "is required")
	default:
		return nil, invalidField("action", "must be add, remove or clear")
	}
	list := q.list()
	r.log.Info("queue", "action", c.Action, "by", mb.id, "length", len(list))
	r.broadcast("", "queueUpdated", map[string]any{"queue": list, "action": c.Action, "by": mb.id})
	return list, nil
}

// playNextLocked loads the queue's first video and plays it, telling
// everyone (playbackState with action "next", then queueUpdated); by is
// "" when the room did it at the end of a video. evMu is held.
func (r *Room) playNextLocked(by string) (PlaybackState, error) {
	if len(r.queue.items) == 0 {
		return PlaybackState{}, errorf(KindInvalidState, "the queue is empty")
	}
	it := r.queue.items[0]
	now := serverMillis(r.m.now())
	next := r.play
	c := PlaybackCommand{Action: "load", URL: it.URL, Title: it.Title, Subtitles: it.Subtitles, Subtitle: &it.Subtitle}
	if it.Duration > 0 {
		c.Duration = &it.Duration
	}
	if err := next.apply(c, now); err != nil {
		return PlaybackState{}, err
	}
	next.Paused = false
	r.play = next
	r.loadVer = next.Version
	r.queue.items = slices.Delete(r.queue.items, 0, 1)
	r.resetReportsLocked("next")
	r.holdLocked(now)
	r.armEndLocked()
	st := r.playbackLocked()
	r.log.Info("playback", "action", "next", "by", by, "url", st.URL)
	r.broadcast("", "playbackState", map[string]any{"state": st, "action": "next", "by": by})
	r.broadcast("", "queueUpdated", map[string]any{"queue": r.queue.list(), "action": "next", "by": by})
	return st, nil
}

// armEndLocked (re)starts the timer that ends the video when the room's
// clock reaches its duration; evMu is held.
func (r *Room) armEndLocked() {
	r.stopEndTimerLocked()
	d, ok := r.play.untilEnd(serverMillis(r.m.now()))
	if !ok {
		return
	}
	gen := r.endGen
	r.endT = time.AfterFunc(d, func() { r.endReached(gen) })
}

func (r *Room) stopEndTimerLocked() {
	r.endGen++
	if r.endT != nil {
		r.endT.Stop()
		r.endT = nil
	}
}

// endReached ends the video if the room got there (the timer may run a
// little early against the room's clock: then it waits again), tells
// everyone (playbackState, action "ended") and plays the next queued one.
func (r *Room) endReached(gen int) {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	if gen != r.endGen {
		return
	}
	r.endT = nil
	now := serverMillis(r.m.now())
	if !r.play.end(now) {
		if d, ok := r.play.untilEnd(now); ok {
			r.endT = time.AfterFunc(max(d, 10*time.Millisecond), func() { r.endReached(gen) })
		}
		return
	}
	r.stopWaitTimerLocked()
	st := r.playbackLocked()
	r.log.Info("playback", "action", "ended", "url", st.URL, "duration", st.Duration)
	r.broadcast("", "playbackState", map[string]any{"state": st, "action": "ended", "by": ""})
	if len(r.queue.items) > 0 {
		if _, err := r.playNextLocked(""); err != nil {
			r.log.Warn("playback: next queued video", "err", err)
		}
	}
}

// learnDurationLocked takes the duration a player reports for the
// current video when the room does not know it yet, and arms the end;
// evMu is held. A report must name a state version of the current video
// (one from the previous video could carry its duration).
func (r *Room) learnDurationLocked(rep PlaybackReport) {
	if rep.Duration == nil || rep.Version == nil || r.play.URL == "" || r.play.Duration > 0 {
		return
	}
	if *rep.Version < r.loadVer || *rep.Version > r.play.Version || math.IsInf(*rep.Duration, 0) {
		return
	}
	r.play.Duration = *rep.Duration
	r.log.Debug("playback: duration learnt", "url", r.play.URL, "duration", r.play.Duration)
	r.armEndLocked()
}
