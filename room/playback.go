package room

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Synced playback: the room holds the authoritative state of one shared
// video; members' players follow it (docs/protocol.md, "Synced playback").

// PlaybackState is a room's playback state. Times are on the server clock
// in Unix milliseconds; positions are seconds into the video.
type PlaybackState struct {
	URL   string `json:"url"`
	Title string `json:"title,omitempty"`
	// Paused is what the controller asked for.
	Paused bool `json:"paused"`
	// Position is where the video was at UpdatedAt.
	Position  float64 `json:"position"`
	Rate      float64 `json:"rate"`
	UpdatedAt float64 `json:"updatedAt"`
	// Waiting is true while the room holds (does not advance) because
	// WaitingFor are buffering; it only happens while not Paused.
	Waiting    bool     `json:"waiting"`
	WaitingFor []string `json:"waitingFor"`
	// Duration is the video's length in seconds, 0 while unknown: given
	// with load, or the first one a member's player reports. Knowing it,
	// the room ends the video on its own clock (Ended).
	Duration float64 `json:"duration"`
	// Ended is true once the room's position reached Duration; the room
	// is then paused at the end until a play (from the start: replay), a
	// seek, a load or the next queued video.
	Ended bool `json:"ended"`
	// Subtitles are the text tracks of the video; Subtitle is the URL of
	// the one the controller picked for the room ("" for none). Each
	// viewer may still show another or none.
	Subtitles []Subtitle `json:"subtitles"`
	Subtitle  string     `json:"subtitle"`
	// Version grows with every change.
	Version int64 `json:"version"`
}

// Subtitle is one WebVTT track of a video (SRT files of the media folder
// are served converted to WebVTT).
type Subtitle struct {
	URL   string `json:"url"`
	Label string `json:"label"`
	// Lang is a BCP 47 language tag such as "en", or "".
	Lang string `json:"lang,omitempty"`
}

// Limits of playback commands.
const (
	MinRate     = 0.25
	MaxRate     = 4.0
	maxPosition = 1e7 // seconds, about 115 days
	// maxRewind bounds how far back a buffering member's position may pull
	// the room when the wait starts.
	maxRewind = 10.0
	// MaxSubtitleTracks bounds the tracks of one video whatever the
	// configuration (SyncConfig.SubtitleMax).
	MaxSubtitleTracks = 100
	// endSlack: a room within this of the duration has ended (players
	// report durations rounded to the frame).
	endSlack = 0.05
)

func serverMillis(t time.Time) float64 { return float64(t.UnixMicro()) / 1000 }

// Advancing reports whether the video moves: loaded, not paused, not held.
func (s PlaybackState) Advancing() bool {
	return s.URL != "" && !s.Paused && !s.Waiting && !s.Ended
}

// PositionAt returns the position (seconds) at server time at (Unix ms).
func (s PlaybackState) PositionAt(at float64) float64 {
	if !s.Advancing() {
		return s.Position
	}
	return math.Max(0, s.Position+(at-s.UpdatedAt)/1000*s.Rate)
}

// PlaybackCommand is a request to change the playback state.
type PlaybackCommand struct {
	// Action is load, play, pause, seek, rate, stop, subtitle or next.
	Action   string   `json:"action"`
	URL      string   `json:"url"`
	Title    string   `json:"title"`
	Position *float64 `json:"position"`
	Rate     *float64 `json:"rate"`
	// Duration (load, optional) is the video's length in seconds.
	Duration *float64 `json:"duration"`
	// Subtitles (load, optional) are the video's text tracks; Subtitle
	// (load, subtitle) picks one by URL ("" for none).
	Subtitles []Subtitle `json:"subtitles"`
	Subtitle  *string    `json:"subtitle"`
}

func checkDuration(p *float64) error {
	if p != nil && (math.IsNaN(*p) || *p <= 0 || *p > maxPosition) {
		return invalidField("duration", "must be more than 0 and at most %g seconds", float64(maxPosition))
	}
	return nil
}

// checkSubtitles validates a load's text tracks and the picked one.
func checkSubtitles(subs []Subtitle, pick *string) ([]Subtitle, string, error) {
	if len(subs) > MaxSubtitleTracks {
		return nil, "", invalidField("subtitles", "must be at most %d tracks", MaxSubtitleTracks)
	}
	out := make([]Subtitle, 0, len(subs))
	for i, sub := range subs {
		u, err := checkMediaURL(sub.URL)
		if err != nil {
			return nil, "", invalidField(fmt.Sprintf("subtitles[%d].url", i), "must be an http(s) URL or a path on this server")
		}
		label := cleanText(sub.Label, false)
		if utf8.RuneCountInString(label) > 100 {
			return nil, "", invalidField(fmt.Sprintf("subtitles[%d].label", i), "must be at most 100 characters")
		}
		lang := strings.TrimSpace(sub.Lang)
		if len(lang) > 35 || strings.ContainsFunc(lang, func(r rune) bool {
			return !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) {
			return nil, "", invalidField(fmt.Sprintf("subtitles[%d].lang", i), "must be a language tag such as en or pt-BR")
		}
		out = append(out, Subtitle{URL: u, Label: label, Lang: lang})
	}
	chosen := ""
	if pick != nil && *pick != "" {
		if !slices.ContainsFunc(out, func(s Subtitle) bool { return s.URL == *pick }) {
			return nil, "", invalidField("subtitle", "must be the url of one of the video's subtitles, or empty for none")
		}
		chosen = *pick
	}
	return out, chosen, nil
}

func checkPosition(field string, p *float64) error {
	if p != nil && (math.IsNaN(*p) || *p < 0 || *p > maxPosition) {
		return invalidField(field, "must be 0-%g seconds", float64(maxPosition))
	}
	return nil
}

// checkMediaURL accepts an http(s) URL or a path on this server.
func checkMediaURL(u string) (string, error) {
	u = strings.TrimSpace(u)
	if u == "" {
		return "", invalidField("url", "is required")
	}
	if len(u) > 2048 {
		return "", invalidField("url", "must be at most 2048 bytes")
	}
	pu, err := url.Parse(u)
	switch {
	case err != nil:
		return "", invalidField("url", "is not a URL: %v", err)
	case strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//"):
		return u, nil
	case (pu.Scheme == "http" || pu.Scheme == "https") && pu.Host != "":
		return u, nil
	}
	return "", invalidField("url", "must be an http(s) URL or a path on this server such as /media/film.mp4")
}

// apply changes s by c at server time now.
func (s *PlaybackState) apply(c PlaybackCommand, now float64) error {
	if err := checkPosition("position", c.Position); err != nil {
		return err
	}
	if c.Action != "load" && c.Action != "stop" && s.URL == "" {
		switch c.Action {
		case "play", "pause", "seek", "rate", "subtitle":
			return errorf(KindInvalidState, "no video loaded: load one first")
		}
	}
	switch c.Action {
	case "load":
		u, err := checkMediaURL(c.URL)
		if err != nil {
			return err
		}
		title := cleanText(c.Title, false)
		if utf8.RuneCountInString(title) > 200 {
			return invalidField("title", "must be at most 200 characters")
		}
		if err := checkDuration(c.Duration); err != nil {
			return err
		}
		subs, pick, err := checkSubtitles(c.Subtitles, c.Subtitle)
		if err != nil {
			return err
		}
		pos := 0.0
		if c.Position != nil {
			pos = *c.Position
		}
		dur := 0.0
		if c.Duration != nil {
			dur = *c.Duration
		}
		*s = PlaybackState{URL: u, Title: title, Paused: true, Position: pos, Rate: 1, UpdatedAt: now, WaitingFor: []string{}, Duration: dur, Subtitles: subs, Subtitle: pick, Version: s.Version}
	case "play":
		switch {
		case c.Position != nil:
			s.Position = *c.Position
		case s.Ended:
			s.Position = 0 // replay
		default:
			s.Position = s.PositionAt(now)
		}
		s.Paused = false
		s.Ended = false
		s.UpdatedAt = now
	case "pause":
		if c.Position != nil {
			s.Position = *c.Position
		} else {
			s.Position = s.PositionAt(now)
		}
		s.Paused = true
		s.Waiting = false
		s.WaitingFor = []string{}
		s.UpdatedAt = now
	case "seek":
		if c.Position == nil {
			return invalidField("position", "is required")
		}
		s.Position = *c.Position
		s.Ended = false
		s.UpdatedAt = now
	case "rate":
		if c.Rate == nil {
			return invalidField("rate", "is required")
		}
		if math.IsNaN(*c.Rate) || *c.Rate < MinRate || *c.Rate > MaxRate {
			return invalidField("rate", "must be %g-%g", MinRate, MaxRate)
		}
		s.Position = s.PositionAt(now)
		s.Rate = *c.Rate
		s.UpdatedAt = now
	case "subtitle":
		if c.Subtitle == nil {
			return invalidField("subtitle", "is required (empty for none)")
		}
		_, pick, err := checkSubtitles(s.Subtitles, c.Subtitle)
		if err != nil {
			return err
		}
		s.Subtitle = pick
	case "stop":
		*s = PlaybackState{Paused: true, Rate: 1, UpdatedAt: now, WaitingFor: []string{}, Version: s.Version}
	case "":
		return invalidField("action", "is required")
	default:
		return invalidField("action", "must be load, play, pause, seek, rate, stop, subtitle or next")
	}
	if s.Duration > 0 && s.Position > s.Duration {
		s.Position = s.Duration
	}
	s.Version++
	return nil
}

// end marks the video ended at server time now when the room's position
// reached the duration; it reports whether it did.
func (s *PlaybackState) end(now float64) bool {
	if !s.Advancing() || s.Duration <= 0 || s.PositionAt(now) < s.Duration-endSlack {
		return false
	}
	s.Position, s.UpdatedAt = s.Duration, now
	s.Paused, s.Ended = true, true
	s.Waiting, s.WaitingFor = false, []string{}
	s.Version++
	return true
}

// untilEnd is how long (server time) until the room reaches the end, and
// false when it is not heading there.
func (s PlaybackState) untilEnd(now float64) (time.Duration, bool) {
	if !s.Advancing() || s.Duration <= 0 || s.Rate <= 0 {
		return 0, false
	}
	left := (s.Duration - s.PositionAt(now)) / s.Rate
	return time.Duration(math.Max(0, left) * float64(time.Second)), true
}

// bufferingMember is a member whose player waits for data, with the
// position it reported when it began to.
type bufferingMember struct {
	id  string
	pos *float64
}

// hold sets Waiting from who is buffering: with waitForEveryone, a
// playing room holds while anyone buffers, frozen where the slowest
// buffering member is (at most maxRewind back), and goes on from there
// when all are ready. It reports whether s changed.
func (s *PlaybackState) hold(buf []bufferingMember, waitForEveryone bool, now float64) bool {
	if waitForEveryone && s.URL != "" && !s.Paused && len(buf) > 0 {
		ids := make([]string, 0, len(buf))
		for _, b := range buf {
			ids = append(ids, b.id)
		}
		slices.Sort(ids)
		if s.Waiting {
			if slices.Equal(ids, s.WaitingFor) {
				return false
			}
			s.WaitingFor = ids
			s.Version++
			return true
		}
		cur := s.PositionAt(now)
		pos := cur
		for _, b := range buf {
			if b.pos != nil && *b.pos < pos && *b.pos >= cur-maxRewind {
				pos = *b.pos
			}
		}
		s.Position, s.UpdatedAt = pos, now
		s.Waiting, s.WaitingFor = true, ids
		s.Version++
		return true
	}
	if s.Waiting {
		s.Waiting, s.WaitingFor = false, []string{}
		s.UpdatedAt = now
		s.Version++
		return true
	}
	return false
}

// SyncParams are the drift-correction settings every client uses; the
// join result carries them.
type SyncParams struct {
	NudgeThresholdMs float64 `json:"nudgeThresholdMs"`
	SeekThresholdMs  float64 `json:"seekThresholdMs"`
	MaxNudge         float64 `json:"maxNudge"`
	ReportIntervalMs float64 `json:"reportIntervalMs"`
	WaitTimeoutMs    float64 `json:"waitTimeoutMs"`
}

func (m *Manager) syncParams() SyncParams {
	c := m.cfg.Sync
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return SyncParams{
		NudgeThresholdMs: ms(c.NudgeThreshold),
		SeekThresholdMs:  ms(c.SeekThreshold),
		MaxNudge:         c.MaxNudge,
		ReportIntervalMs: ms(c.ReportInterval),
		WaitTimeoutMs:    ms(c.WaitTimeout),
	}
}

// playbackLocked returns a copy of the state; evMu is held.
func (r *Room) playbackLocked() PlaybackState {
	s := r.play
	s.WaitingFor = slices.Clone(s.WaitingFor)
	if s.WaitingFor == nil {
		s.WaitingFor = []string{}
	}
	s.Subtitles = slices.Clone(s.Subtitles)
	if s.Subtitles == nil {
		s.Subtitles = []Subtitle{}
	}
	return s
}

// Playback returns the room's playback state.
func (r *Room) Playback() PlaybackState {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	return r.playbackLocked()
}

// mayControl tells whether the member may change playback: hosts, and
// guests when the room has open control.
func (mb *Member) mayControl() error {
	role := mb.Role()
	if role == RoleHost {
		return nil
	}
	mb.room.mu.Lock()
	open := mb.room.settings.OpenControl
	mb.room.mu.Unlock()
	if open && role == RoleGuest {
		return nil
	}
	if open {
		return forbidden(ReasonNotAllowed, "viewers cannot control playback")
	}
	return forbidden(ReasonNotAllowed, "only the host controls playback in this room")
}

// Playback runs a playback command and tells everyone (playbackState).
func (mb *Member) Playback(c PlaybackCommand) (PlaybackState, error) {
	if err := mb.check(); err != nil {
		return PlaybackState{}, err
	}
	if err := mb.mayControl(); err != nil {
		return PlaybackState{}, err
	}
	r := mb.room
	if max := r.m.cfg.Sync.SubtitleMax; len(c.Subtitles) > max {
		return PlaybackState{}, invalidField("subtitles", "must be at most %d tracks (--subtitle-max-tracks)", max)
	}
	r.evMu.Lock()
	defer r.evMu.Unlock()
	if c.Action == "next" {
		st, err := r.playNextLocked(mb.id)
		if err != nil {
			return PlaybackState{}, err
		}
		return st, nil
	}
	now := serverMillis(r.m.now())
	next := r.play
	if err := next.apply(c, now); err != nil {
		return PlaybackState{}, err
	}
	r.play = next
	if c.Action == "load" || c.Action == "stop" {
		r.loadVer = next.Version
	}
	r.resetReportsLocked(c.Action)
	r.holdLocked(now)
	r.armEndLocked()
	st := r.playbackLocked()
	r.log.Info("playback", "action", c.Action, "by", mb.id, "position", st.Position, "paused", st.Paused, "rate", st.Rate)
	r.broadcast("", "playbackState", map[string]any{"state": st, "action": c.Action, "by": mb.id})
	return st, nil
}

// resetReportsLocked forgets what members' players said about the old
// position or video after action; evMu is held.
func (r *Room) resetReportsLocked(action string) {
	switch action {
	case "load", "stop", "seek", "next":
		// Where members stalled before says nothing about the new
		// position; after a new video nobody is late for it yet.
		r.mu.Lock()
		for _, m := range r.members {
			m.mu.Lock()
			m.bufPos = nil
			if action != "seek" {
				m.stalled, m.report = false, nil
			}
			m.mu.Unlock()
		}
		r.mu.Unlock()
	}
}

// holdLocked re-evaluates "wait for everyone" and arms or stops the wait
// timeout; evMu is held. It reports whether the state changed.
func (r *Room) holdLocked(now float64) bool {
	r.mu.Lock()
	wait := r.settings.WaitForEveryone
	var buf []bufferingMember
	for _, id := range r.order {
		mb := r.members[id]
		if mb == nil {
			continue
		}
		mb.mu.Lock()
		if mb.buffering && !mb.stalled && !mb.gone {
			var p *float64
			if mb.bufPos != nil {
				v := *mb.bufPos
				p = &v
			}
			buf = append(buf, bufferingMember{id: mb.id, pos: p})
		}
		mb.mu.Unlock()
	}
	r.mu.Unlock()
	was := r.play.Waiting
	changed := r.play.hold(buf, wait, now)
	switch {
	case r.play.Waiting && !was:
		r.waitGen++
		gen := r.waitGen
		if r.waitT != nil {
			r.waitT.Stop()
		}
		r.waitT = time.AfterFunc(r.m.cfg.Sync.WaitTimeout, func() { r.waitTimedOut(gen) })
	case !r.play.Waiting && was:
		r.stopWaitTimerLocked()
	}
	return changed
}

// evaluateWaitLocked re-evaluates the hold after a member's buffering
// changed, and tells everyone if the state did; evMu is held.
func (r *Room) evaluateWaitLocked() {
	was := r.play.Waiting
	if !r.holdLocked(serverMillis(r.m.now())) {
		return
	}
	r.armEndLocked()
	action := "wait"
	if was && !r.play.Waiting {
		action = "resume"
	}
	st := r.playbackLocked()
	r.log.Debug("playback", "action", action, "waitingFor", st.WaitingFor)
	r.broadcast("", "playbackState", map[string]any{"state": st, "action": action, "by": ""})
}

// waitTimedOut goes on without the members still buffering after the
// wait timeout; they are not waited for again until they catch up.
func (r *Room) waitTimedOut(gen int) {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	if gen != r.waitGen || !r.play.Waiting {
		return
	}
	r.mu.Lock()
	for _, mb := range r.members {
		mb.mu.Lock()
		if mb.buffering {
			mb.stalled = true
		}
		mb.mu.Unlock()
	}
	r.mu.Unlock()
	r.log.Info("playback: gave up waiting for buffering members", "waitingFor", r.play.WaitingFor)
	r.evaluateWaitLocked()
}

func (r *Room) stopWaitTimerLocked() {
	r.waitGen++
	if r.waitT != nil {
		r.waitT.Stop()
		r.waitT = nil
	}
}

func (r *Room) stopWaitTimer() {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	r.stopWaitTimerLocked()
	r.stopEndTimerLocked()
}

// pauseEmptyLocked pauses the video of a room nobody is in, so the next
// visitors find it where it was; evMu is held.
func (r *Room) pauseEmptyLocked() {
	if r.play.URL != "" && !r.play.Paused {
		now := serverMillis(r.m.now())
		r.play.Position = r.play.PositionAt(now)
		r.play.Paused = true
		r.play.Waiting, r.play.WaitingFor = false, []string{}
		r.play.UpdatedAt = now
		r.play.Version++
	}
	r.stopWaitTimerLocked()
	r.stopEndTimerLocked()
}

// PlaybackReport is what a member's player reports: whether it is
// buffering, and where it is (Position at server time At).
type PlaybackReport struct {
	Buffering *bool    `json:"buffering"`
	Position  *float64 `json:"position"`
	At        *float64 `json:"at"`
	// Version is the playback state version the player follows.
	Version *int64 `json:"version"`
	// Duration is the length of the video the player loaded (seconds);
	// the room takes the first one reported for a video whose duration
	// it does not know.
	Duration *float64 `json:"duration"`
}

// SyncReport is a member's last position report, compared with the room.
type SyncReport struct {
	PeerID     string  `json:"peerId"`
	Position   float64 `json:"position"`
	At         float64 `json:"at"`
	ReceivedAt float64 `json:"receivedAt"`
	Buffering  bool    `json:"buffering"`
	// ErrorMs is Position minus the room's position at At, in ms
	// (positive: ahead). Absent when the report is not comparable: state
	// changed since, another version, nothing loaded, or buffering.
	ErrorMs *float64 `json:"errorMs,omitempty"`
	Version int64    `json:"version"`
}

// ReportPlayback records the member's player state. A change of buffering
// is told to everyone (peerUpdated) and may hold or release the room.
func (mb *Member) ReportPlayback(rep PlaybackReport) error {
	if err := mb.check(); err != nil {
		return err
	}
	if err := checkPosition("position", rep.Position); err != nil {
		return err
	}
	if rep.At != nil && (math.IsNaN(*rep.At) || math.IsInf(*rep.At, 0) || *rep.At <= 0) {
		return invalidField("at", "must be a server time in Unix milliseconds")
	}
	if (rep.Position == nil) != (rep.At == nil) {
		return invalidField("at", "and \"position\" go together")
	}
	if err := checkDuration(rep.Duration); err != nil {
		return err
	}
	r := mb.room
	mb.cl.mu.Lock()
	ok, wait := mb.cl.report.take(r.m.now())
	mb.cl.mu.Unlock()
	if !ok {
		return rateLimited("reporting", wait)
	}
	r.evMu.Lock()
	defer r.evMu.Unlock()
	now := serverMillis(r.m.now())
	mb.mu.Lock()
	changed := false
	if rep.Buffering != nil && *rep.Buffering != mb.buffering {
		mb.buffering, changed = *rep.Buffering, true
		mb.bufPos = nil
		if mb.buffering && rep.Position != nil {
			v := *rep.Position
			mb.bufPos = &v
		}
		if !mb.buffering {
			mb.stalled = false
		}
	}
	if rep.Position != nil {
		sr := &SyncReport{PeerID: mb.id, Position: *rep.Position, At: *rep.At, ReceivedAt: now, Buffering: mb.buffering, Version: r.play.Version}
		st := r.play
		if st.URL != "" && !mb.buffering && *rep.At >= st.UpdatedAt && (rep.Version == nil || *rep.Version == st.Version) {
			e := (*rep.Position - st.PositionAt(*rep.At)) * 1000
			sr.ErrorMs = &e
		}
		mb.report = sr
	}
	mb.mu.Unlock()
	r.learnDurationLocked(rep)
	if changed {
		r.broadcast("", "peerUpdated", map[string]any{"peer": mb.info()})
		r.evaluateWaitLocked()
	}
	return nil
}

// SyncReports returns every member's last position report, in join order.
func (r *Room) SyncReports() []SyncReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []SyncReport
	for _, id := range r.order {
		mb := r.members[id]
		if mb == nil {
			continue
		}
		mb.mu.Lock()
		if mb.report != nil {
			out = append(out, *mb.report)
		}
		mb.mu.Unlock()
	}
	return out
}
