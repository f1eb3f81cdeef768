package room

import (
	"sync"

	"github.com/matinee-dev/matinee/sfu"
)

// The stage is what a room is watching, and the one rule for it is
// pickStage (docs/protocol.md, "The stage"). The room owns it: WHEP
// viewers, recordings and members (the "stage" notification) all follow
// the room's stage rather than choosing for themselves.

// Stage is what a room is watching at one moment: a video and the audio
// that goes with it (either may be nil).
type Stage struct {
	Video, Audio *sfu.Producer
	// Show is true when Video is the show: a screen share or a file
	// played into the room. False when nobody shows anything and the
	// stage falls back to the newest video (a camera) and audio.
	Show bool
}

// showSources are the appData "source" values whose video is the show.
// RTMP publishers and WHIP tracks are "screen" too, unless told otherwise.
var showSources = map[string]bool{"screen": true, "file": true}

// stageProducer is what the rule reads of a producer (an interface so
// that the rule can be tested on its own).
type stageProducer interface {
	comparable
	Kind() sfu.Kind
	Owner() string
	AppData() any
}

// pickStage is the stage rule. order holds the live producers, oldest
// first. The stage is the newest video whose source is a show (a screen
// share or a played file), with the newest audio its owner publishes
// from the same source. Without a show, it is the newest video and the
// newest audio in the room, whoever's they are, and show is false.
func pickStage[P stageProducer](order []P) (video, audio P, show bool) {
	var none P
	for i := len(order) - 1; i >= 0; i-- {
		if p := order[i]; p.Kind() == sfu.KindVideo && showSources[stageSource(p)] {
			video = p
			break
		}
	}
	if video != none {
		src := stageSource(video)
		for i := len(order) - 1; i >= 0; i-- {
			if p := order[i]; p.Kind() == sfu.KindAudio && p.Owner() == video.Owner() && stageSource(p) == src {
				return video, p, true
			}
		}
		return video, none, true
	}
	for i := len(order) - 1; i >= 0 && (video == none || audio == none); i-- {
		p := order[i]
		switch {
		case p.Kind() == sfu.KindVideo && video == none:
			video = p
		case p.Kind() == sfu.KindAudio && audio == none:
			audio = p
		}
	}
	return video, audio, false
}

// stageSource returns a producer's appData "source" ("screen", "camera", ...).
func stageSource(p interface{ AppData() any }) string {
	if m, ok := p.AppData().(map[string]any); ok {
		s, _ := m["source"].(string)
		return s
	}
	return ""
}

// stage follows a room's producers in the order they arrive, keeps the
// room's Stage, and tells its subscribers, on its own goroutine, whenever
// it changes.
type stage struct {
	mu    sync.Mutex
	order []*sfu.Producer
	// seen holds, for each producer followed, the cancel of the OnClose
	// hook registered on it.
	seen    map[*sfu.Producer]func()
	cur     Stage
	subs    map[int]func(Stage)
	nextSub int
	stopped bool
	cancel  func()

	// deliver orders what subscribers are told: a change is told to all
	// of them, and a new subscriber told the current stage, while holding
	// it, so no one hears an older stage after a newer one.
	deliver sync.Mutex

	kick chan struct{}
	quit chan struct{}
	done chan struct{}
}

// newStage follows r's producers from now on (a new room's router has
// none yet).
func newStage(r *sfu.Router) *stage {
	s := &stage{
		seen: map[*sfu.Producer]func(){},
		subs: map[int]func(Stage){},
		kick: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	s.cancel = r.OnNewProducer(s.add)
	for _, p := range r.Producers() {
		s.add(p)
	}
	go s.run()
	return s
}

func (s *stage) add(p *sfu.Producer) {
	s.mu.Lock()
	if _, ok := s.seen[p]; ok || s.stopped {
		s.mu.Unlock()
		return
	}
	s.seen[p] = nil
	s.order = append(s.order, p)
	s.mu.Unlock()
	s.follow(p)
	s.poke()
}

// follow hooks p's close, and keeps the hook's cancel while p is followed.
func (s *stage) follow(p *sfu.Producer) {
	cancel := p.OnClose(func() { s.remove(p) })
	s.mu.Lock()
	_, ok := s.seen[p]
	if ok && !s.stopped {
		s.seen[p] = cancel
		cancel = nil
	}
	s.mu.Unlock()
	if cancel != nil { // p closed meanwhile, or the stage stopped
		cancel()
	}
}

func (s *stage) remove(p *sfu.Producer) {
	s.mu.Lock()
	for i, q := range s.order {
		if q == p {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	delete(s.seen, p)
	s.mu.Unlock()
	s.poke()
}

func (s *stage) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *stage) run() {
	defer close(s.done)
	for {
		select {
		case <-s.quit:
			return
		case <-s.kick:
		}
		s.mu.Lock()
		v, a, show := pickStage(s.order)
		s.mu.Unlock()
		s.set(Stage{Video: v, Audio: a, Show: show})
	}
}

// set makes st the stage and tells the subscribers if it changed.
func (s *stage) set(st Stage) {
	s.deliver.Lock()
	defer s.deliver.Unlock()
	s.mu.Lock()
	if st == s.cur {
		s.mu.Unlock()
		return
	}
	s.cur = st
	subs := make([]func(Stage), 0, len(s.subs))
	for _, f := range s.subs {
		subs = append(subs, f)
	}
	s.mu.Unlock()
	for _, f := range subs {
		f(st)
	}
}

// current returns the stage now.
func (s *stage) current() Stage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// subscribe calls f with the stage now and then on every change, until
// cancel, which returns once f is no longer running. f must not block,
// nor call cancel.
func (s *stage) subscribe(f func(Stage)) (cancel func()) {
	s.deliver.Lock()
	defer s.deliver.Unlock()
	s.mu.Lock()
	cur, stopped := s.cur, s.stopped
	id := s.nextSub
	s.nextSub++
	if !stopped {
		s.subs[id] = f
	}
	s.mu.Unlock()
	f(cur)
	return func() {
		s.deliver.Lock()
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
		s.deliver.Unlock()
	}
}

// tell calls f with the stage now, in order with the changes subscribers
// are told: a member that joins hears of it after it is in the room, so
// it hears every change after this one too.
func (s *stage) tell(f func(Stage)) {
	s.deliver.Lock()
	defer s.deliver.Unlock()
	f(s.current())
}

// stop ends the stage's goroutine and drops its hooks and subscribers.
func (s *stage) stop() {
	s.cancel()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	hooks := make([]func(), 0, len(s.seen))
	for _, cancel := range s.seen {
		if cancel != nil {
			hooks = append(hooks, cancel)
		}
	}
	s.seen, s.order, s.subs = nil, nil, nil
	s.mu.Unlock()
	for _, cancel := range hooks {
		cancel()
	}
	close(s.quit)
	<-s.done
}

// StageInfo is the stage as the protocol shows it (the "stage"
// notification): its producers' ids, null for none.
type StageInfo struct {
	Video *string `json:"video"`
	Audio *string `json:"audio"`
	Show  bool    `json:"show"`
}

func stageInfo(st Stage) StageInfo {
	id := func(p *sfu.Producer) *string {
		if p == nil {
			return nil
		}
		s := p.ID()
		return &s
	}
	return StageInfo{Video: id(st.Video), Audio: id(st.Audio), Show: st.Show}
}

// Stage returns the room's stage now.
func (r *Room) Stage() Stage { return r.stage.current() }

// announceStage tells every member the new stage.
func (r *Room) announceStage(st Stage) {
	r.broadcast("", "stage", stageInfo(st))
}

// tellStage tells a member that just joined (or came back) the stage,
// in order with the changes announced to everyone.
func (r *Room) tellStage(n Notifier) {
	r.stage.tell(func(st Stage) { n.Notify("stage", stageInfo(st)) })
}
