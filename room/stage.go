package room

import (
	"sort"
	"sync"

	"github.com/matinee-dev/matinee/sfu"
)

// The stage as WHEP viewers see it. This is one of three stage rules
// (recorder/stage.go and web/static/room.js have the others); making them
// one is a later step (issue 14), so this one stays exactly as WHEP had it.

// The stage is what a room is watching: the newest screen share's video,
// and the audio its owner shares with it. Without a screen share the stage
// falls back to the newest video and the newest audio in the room.
func pickStage(order []*sfu.Producer) (video, audio *sfu.Producer) {
	for i := len(order) - 1; i >= 0; i-- {
		if p := order[i]; p.Kind() == sfu.KindVideo && stageSource(p) == "screen" {
			video = p
			break
		}
	}
	if video != nil {
		for i := len(order) - 1; i >= 0; i-- {
			if p := order[i]; p.Kind() == sfu.KindAudio && p.Owner() == video.Owner() && stageSource(p) == "screen" {
				return video, p
			}
		}
		return video, nil
	}
	for i := len(order) - 1; i >= 0 && (video == nil || audio == nil); i-- {
		p := order[i]
		switch {
		case p.Kind() == sfu.KindVideo && video == nil:
			video = p
		case p.Kind() == sfu.KindAudio && audio == nil:
			audio = p
		}
	}
	return video, audio
}

// source returns a producer's appData "source" ("screen", "camera", ...).
func stageSource(p *sfu.Producer) string {
	if m, ok := p.AppData().(map[string]any); ok {
		s, _ := m["source"].(string)
		return s
	}
	return ""
}

// stageWatcher follows a router's producers in the order they arrive and
// calls apply, on its own goroutine, whenever the stage changes.
type stageWatcher struct {
	apply func(video, audio *sfu.Producer)

	mu    sync.Mutex
	order []*sfu.Producer
	// seen holds, for each producer followed, the cancel of the OnClose
	// hook registered on it: the hook references the watcher and through
	// apply the viewer, which must not live as long as the producer.
	seen    map[*sfu.Producer]func()
	stopped bool
	cancel  func()

	kick chan struct{}
	quit chan struct{}
	done chan struct{}
}

func watchStage(r *sfu.Router, apply func(video, audio *sfu.Producer)) *stageWatcher {
	w := &stageWatcher{
		apply: apply,
		seen:  map[*sfu.Producer]func(){},
		kick:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	w.cancel = r.OnNewProducer(w.add)
	// Producers that were there before: their order is unknown, so they
	// rank below everything that arrives from now on.
	ps := r.Producers()
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID() < ps[j].ID() })
	w.mu.Lock()
	pre := make([]*sfu.Producer, 0, len(ps))
	for _, p := range ps {
		if _, ok := w.seen[p]; !ok {
			w.seen[p] = nil
			pre = append(pre, p)
		}
	}
	w.order = append(pre, w.order...)
	w.mu.Unlock()
	for _, p := range pre {
		w.follow(p)
	}
	w.poke()
	go w.run()
	return w
}

func (w *stageWatcher) add(p *sfu.Producer) {
	w.mu.Lock()
	if _, ok := w.seen[p]; ok || w.stopped {
		w.mu.Unlock()
		return
	}
	w.seen[p] = nil
	w.order = append(w.order, p)
	w.mu.Unlock()
	w.follow(p)
	w.poke()
}

// follow hooks p's close, and keeps the hook's cancel while p is followed.
func (w *stageWatcher) follow(p *sfu.Producer) {
	cancel := p.OnClose(func() { w.remove(p) })
	w.mu.Lock()
	_, ok := w.seen[p]
	if ok && !w.stopped {
		w.seen[p] = cancel
		cancel = nil
	}
	w.mu.Unlock()
	if cancel != nil { // p closed meanwhile, or the watcher stopped
		cancel()
	}
}

func (w *stageWatcher) remove(p *sfu.Producer) {
	w.mu.Lock()
	for i, q := range w.order {
		if q == p {
			w.order = append(w.order[:i], w.order[i+1:]...)
			break
		}
	}
	delete(w.seen, p)
	w.mu.Unlock()
	w.poke()
}

func (w *stageWatcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *stageWatcher) run() {
	defer close(w.done)
	var curV, curA *sfu.Producer
	for {
		select {
		case <-w.quit:
			return
		case <-w.kick:
		}
		w.mu.Lock()
		v, a := pickStage(w.order)
		w.mu.Unlock()
		if v != curV || a != curA {
			curV, curA = v, a
			w.apply(v, a)
		}
	}
}

// stop ends the watcher and waits for its goroutine.
func (w *stageWatcher) stop() {
	w.cancel()
	w.mu.Lock()
	w.stopped = true
	hooks := make([]func(), 0, len(w.seen))
	for _, cancel := range w.seen {
		if cancel != nil {
			hooks = append(hooks, cancel)
		}
	}
	w.seen, w.order = nil, nil
	w.mu.Unlock()
	for _, cancel := range hooks {
		cancel()
	}
	close(w.quit)
	<-w.done
}
