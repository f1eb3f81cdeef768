package recorder

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/internal/atomicfile"
	"github.com/matinee-dev/matinee/recorder/hls"
	"github.com/matinee-dev/matinee/recorder/transcode"
	"github.com/matinee-dev/matinee/sfu"
)

// Errors callers can test for with errors.Is.
var (
	ErrNotFound   = errors.New("recording not found")
	ErrNoSpace    = errors.New("not enough free disk space")
	ErrBadOptions = errors.New("bad recording options")
	ErrClosed     = errors.New("recorder closed")
	// ErrNoFFmpeg: ffmpeg is needed (Opus audio, VP8/VP9 video) and is
	// not installed.
	ErrNoFFmpeg = transcode.ErrNoFFmpeg
)

// Config configures the recording manager.
type Config struct {
	// Dir holds recordings, as Dir/<room>/<recording id>/.
	Dir string
	// FFmpeg is the ffmpeg binary ("" looks it up in $PATH).
	FFmpeg string
	// MinFreeBytes is the free space below which a recording does not
	// start (default 1 GiB); StopFreeBytes the free space below which
	// running recordings stop (default 256 MiB).
	MinFreeBytes, StopFreeBytes uint64
	// HLSTarget is the HLS segment duration (default 2 s).
	HLSTarget time.Duration
	Logger    *slog.Logger
	// FreeSpace reports the free bytes of the file system holding dir;
	// nil uses the operating system's (tests replace it).
	FreeSpace func(dir string) (uint64, error)
	// ReserveBytes is the space each recording holds back while it runs
	// (a file it writes at the start) and frees when it stops, so that a
	// recording stopped by a full disk can still finish its last HLS
	// segment, its playlists and recording.json. 0: none.
	ReserveBytes int64
}

// Manager owns the recordings of every room.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	active map[string]*Recording
	// unsaved are stopped recordings whose recording.json could not be
	// written (a full disk): the API describes them from memory, and the
	// file is written on a later call that finds space.
	unsaved map[string]*Recording
	closed  bool
}

// NewManager returns a manager writing under cfg.Dir.
func NewManager(cfg Config) *Manager {
	if cfg.MinFreeBytes == 0 {
		cfg.MinFreeBytes = 1 << 30
	}
	if cfg.StopFreeBytes == 0 {
		cfg.StopFreeBytes = 256 << 20
	}
	if cfg.HLSTarget <= 0 {
		cfg.HLSTarget = 2 * time.Second
	}
	if cfg.FreeSpace == nil {
		cfg.FreeSpace = freeSpace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Manager{cfg: cfg, log: log.With("component", "recorder"), active: map[string]*Recording{}, unsaved: map[string]*Recording{}}
}

func (m *Manager) checkDisk(min uint64) error {
	if err := os.MkdirAll(m.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("recordings dir: %w", err)
	}
	free, err := m.cfg.FreeSpace(m.cfg.Dir)
	if err != nil {
		return fmt.Errorf("free space of %s: %w", m.cfg.Dir, err)
	}
	if free < min {
		return fmt.Errorf("%w: %d MiB free in %s, need %d MiB", ErrNoSpace, free>>20, m.cfg.Dir, min>>20)
	}
	return nil
}

func newRecordingID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "rec-" + hex.EncodeToString(b[:])
}

// validate checks options and fills defaults.
func (m *Manager) validate(o *Options) error {
	if len(o.Formats) == 0 && len(o.RTMP) == 0 {
		o.Formats = []string{"flv", "hls"}
	}
	for _, f := range o.Formats {
		if f != "flv" && f != "hls" {
			return fmt.Errorf("%w: format %q (want \"flv\" or \"hls\")", ErrBadOptions, f)
		}
	}
	for _, u := range o.RTMP {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "rtmp" && pu.Scheme != "rtmps") || pu.Host == "" {
			return fmt.Errorf("%w: %q is not an rtmp:// or rtmps:// URL", ErrBadOptions, RedactURL(u))
		}
	}
	if o.HLSTarget <= 0 {
		o.HLSTarget = m.cfg.HLSTarget
	}
	return nil
}

// Source is a room's media as the recorder reads it: its producers as
// they come and go, the room's stage, and direct (in-process) transports
// to consume them. room.Media satisfies it: the stage and its one rule
// are the room's (room.Stage), and the recorder only follows it.
type Source interface {
	Producers() []*sfu.Producer
	OnNewProducer(f func(*sfu.Producer)) (cancel func())
	IsClosed() bool
	NewDirectTransport(owner string) (*sfu.DirectTransport, error)
	// OnStage calls f with the stage now and on every change, until
	// cancel: its video and audio (nil: none), and whether the video is
	// the show (a screen share or a played file) rather than the
	// fallback of a room where nobody shows anything.
	OnStage(f func(video, audio *sfu.Producer, show bool)) (cancel func())
}

// Start begins recording a room whose media is router.
func (m *Manager) Start(room string, router Source, o Options) (*Recording, error) {
	if err := m.validate(&o); err != nil {
		return nil, err
	}
	ff := ""
	if !o.NoAudio {
		// Browsers send Opus: without ffmpeg there would be no audio.
		p, err := transcode.Find(m.cfg.FFmpeg)
		if err != nil {
			return nil, fmt.Errorf("recording audio needs ffmpeg to turn Opus into AAC: %w", err)
		}
		ff = p
	} else if p, err := transcode.Find(m.cfg.FFmpeg); err == nil {
		ff = p
	}
	if err := m.checkDisk(m.cfg.MinFreeBytes); err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	m.mu.Unlock()
	id := newRecordingID()
	dir := filepath.Join(m.cfg.Dir, room, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("recording dir: %w", err)
	}
	m.saveUnsaved()
	r := &Recording{
		id:        id,
		room:      room,
		dir:       dir,
		router:    router,
		opts:      o,
		ffmpeg:    ff,
		m:         m,
		log:       m.log.With("room", room, "recording", id),
		frames:    make(chan *Frame, 256),
		ctl:       make(chan muxCtl),
		wake:      make(chan struct{}, 1),
		stopCh:    make(chan string, 1),
		done:      make(chan struct{}),
		state:     StateRecording,
		startedAt: time.Now(),
	}
	if err := r.makeReserve(m.cfg.ReserveBytes); err != nil {
		os.RemoveAll(dir)
		if noSpace(err) {
			return nil, fmt.Errorf("%w: no room for the %d MiB reserve in %s", ErrNoSpace, m.cfg.ReserveBytes>>20, dir)
		}
		return nil, fmt.Errorf("recording reserve: %w", err)
	}
	if err := r.openSinks(); err != nil {
		r.freeReserve()
		for _, s := range r.sinks {
			_ = s.Close()
		}
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		for _, s := range r.sinks {
			_ = s.Close()
		}
		r.freeReserve()
		return nil, ErrClosed
	}
	m.active[id] = r
	m.mu.Unlock()
	_ = m.persist(r) // logged; a failure shows as a write error soon
	r.log.Info("recording started", "formats", o.Formats, "rtmp", len(o.RTMP), "dir", dir)
	r.start()
	return r, nil
}

func (r *Recording) openSinks() error {
	if r.opts.has("flv") {
		s, err := newFLVSink(filepath.Join(r.dir, FLVName), !r.opts.NoAudio)
		if err != nil {
			return fmt.Errorf("create flv: %w", err)
		}
		r.sinks = append(r.sinks, s)
	}
	if r.opts.has("hls") {
		s, err := newHLSSink(filepath.Join(r.dir, HLSDir), r.opts.HLSTarget, !r.opts.NoAudio)
		if err != nil {
			return fmt.Errorf("create hls: %w", err)
		}
		r.hls = s
		r.keyEvery = r.opts.HLSTarget
		r.sinks = append(r.sinks, s)
	}
	for _, u := range r.opts.RTMP {
		r.sinks = append(r.sinks, newRTMPSink(u, !r.opts.NoAudio, r.log))
	}
	return nil
}

// File names inside a recording's directory.
const (
	FLVName  = "recording.flv"
	HLSDir   = "hls"
	infoName = "recording.json"
)

// Info describes a recording.
type Info struct {
	ID        string    `json:"id"`
	Room      string    `json:"room"`
	State     string    `json:"state"`
	Formats   []string  `json:"formats"`
	RTMP      []string  `json:"rtmp,omitempty"`
	StartedAt time.Time `json:"startedAt"`
	StoppedAt time.Time `json:"stoppedAt,omitzero"`
	// Duration is the recorded media's length in seconds.
	Duration float64 `json:"duration"`
	// Size is the bytes on disk.
	Size   int64  `json:"size"`
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// Files are the downloadable outputs, relative to the recording.
	Files map[string]string `json:"files,omitempty"`
}

// Info returns the recording's current description.
func (r *Recording) Info() Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := Info{ID: r.id, Room: r.room, State: r.state, Formats: r.opts.Formats, StartedAt: r.startedAt, StoppedAt: r.stoppedAt, Reason: r.reason}
	for _, u := range r.opts.RTMP {
		in.RTMP = append(in.RTMP, RedactURL(u))
	}
	if r.wrote {
		in.Duration = (r.lastPTS - r.firstPTS).Seconds()
	}
	if r.err != nil {
		in.Error = r.err.Error()
	}
	in.Files = map[string]string{}
	if r.opts.has("flv") {
		in.Files["flv"] = FLVName
	}
	if r.opts.has("hls") {
		in.Files["hls"] = HLSDir + "/" + hls.PlaylistName
	}
	in.Size = dirSize(r.dir)
	return in
}

// RedactURL hides the stream key (path and query) of an RTMP URL.
func RedactURL(u string) string {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return "(invalid URL)"
	}
	app, _, _ := strings.Cut(strings.TrimPrefix(pu.Path, "/"), "/")
	return pu.Scheme + "://" + pu.Host + "/" + app + "/…"
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != reserveName {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// persist writes the recording's info next to its files, so listings
// survive restarts.
func (m *Manager) persist(r *Recording) error {
	b, err := json.MarshalIndent(r.Info(), "", "  ")
	if err == nil {
		err = atomicfile.Write(filepath.Join(r.dir, infoName), b, 0o644)
	}
	if err != nil {
		r.log.Warn("save recording info", "err", err)
		return fmt.Errorf("save recording %s info: %w", r.id, err)
	}
	return nil
}

// keepUnsaved remembers a stopped recording whose info could not be
// written.
func (m *Manager) keepUnsaved(r *Recording) {
	m.mu.Lock()
	m.unsaved[r.id] = r
	m.mu.Unlock()
}

// saveUnsaved tries again to write the info of recordings kept in memory.
func (m *Manager) saveUnsaved() {
	m.mu.Lock()
	rs := make([]*Recording, 0, len(m.unsaved))
	for _, r := range m.unsaved {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	for _, r := range rs {
		if m.persist(r) == nil {
			m.mu.Lock()
			delete(m.unsaved, r.id)
			m.mu.Unlock()
		}
	}
}

func (m *Manager) forget(r *Recording) {
	m.mu.Lock()
	if m.active[r.id] == r {
		delete(m.active, r.id)
	}
	m.mu.Unlock()
}

// activeRecording returns a running recording, or a stopped one whose
// info is only in memory.
func (m *Manager) activeRecording(room, id string) *Recording {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.active[id]
	if r == nil {
		r = m.unsaved[id]
	}
	if r == nil || r.room != room {
		return nil
	}
	return r
}

// Stop stops a recording and returns its final info.
func (m *Manager) Stop(room, id string) (Info, error) {
	r := m.activeRecording(room, id)
	if r == nil || isDone(r) {
		in, err := m.Get(room, id)
		if err != nil {
			return Info{}, err
		}
		return in, nil // already stopped
	}
	r.Stop("stopped by request")
	return r.Info(), nil
}

// Get describes one recording, running or finished.
func (m *Manager) Get(room, id string) (Info, error) {
	m.saveUnsaved()
	return m.get(room, id)
}

func (m *Manager) get(room, id string) (Info, error) {
	if r := m.activeRecording(room, id); r != nil {
		return r.Info(), nil
	}
	if !validName(room) || !validName(id) {
		return Info{}, ErrNotFound
	}
	dir := filepath.Join(m.cfg.Dir, room, id)
	b, err := os.ReadFile(filepath.Join(dir, infoName))
	if err != nil {
		return Info{}, ErrNotFound
	}
	var in Info
	if err := json.Unmarshal(b, &in); err != nil {
		return Info{}, fmt.Errorf("recording %s: %w", id, err)
	}
	if in.State == StateRecording {
		in.State = StateInterrupted
		// Killed while recording: its reserve is of no more use.
		_ = os.Remove(filepath.Join(dir, reserveName))
	}
	in.Size = dirSize(dir)
	return in, nil
}

// List describes a room's recordings, newest first.
func (m *Manager) List(room string) ([]Info, error) {
	out := []Info{}
	if !validName(room) {
		return out, nil
	}
	m.saveUnsaved()
	ents, err := os.ReadDir(filepath.Join(m.cfg.Dir, room))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if in, err := m.get(room, e.Name()); err == nil {
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.After(out[j].StartedAt) })
	return out, nil
}

// Active returns the number of running recordings.
func (m *Manager) Active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.active)
}

// LiveHLS returns the HLS directory of the newest running recording of a
// room that has one.
func (m *Manager) LiveHLS(room string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best *Recording
	for _, r := range m.active {
		if r.room == room && r.hls != nil && (best == nil || r.startedAt.After(best.startedAt)) {
			best = r
		}
	}
	if best == nil {
		return "", false
	}
	return filepath.Join(best.dir, HLSDir), true
}

// HLSDir returns where a recording's HLS is (its master playlist is
// index.m3u8 there).
func (m *Manager) HLSDir(room, id string) string { return filepath.Join(m.cfg.Dir, room, id, HLSDir) }

// Open opens a file of a recording for download: name is a path inside
// the recording's directory; nothing outside it can be reached.
func (m *Manager) Open(room, id, name string) (*os.File, error) {
	if !validName(room) || !validName(id) {
		return nil, ErrNotFound
	}
	root, err := os.OpenRoot(filepath.Join(m.cfg.Dir, room, id))
	if err != nil {
		return nil, ErrNotFound
	}
	defer root.Close()
	if filepath.Base(name) == infoName {
		return nil, ErrNotFound
	}
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		return nil, ErrNotFound
	}
	if fi, err := f.Stat(); err != nil || fi.IsDir() {
		f.Close()
		return nil, ErrNotFound
	}
	return f, nil
}

// validName accepts room and recording ids: no separators, no dots.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Close stops every recording, finishing its files (what a server does on
// SIGTERM).
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	rs := make([]*Recording, 0, len(m.active))
	for _, r := range m.active {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Stop("server shutting down")
		}()
	}
	wg.Wait()
	m.saveUnsaved()
}

func isDone(r *Recording) bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}
