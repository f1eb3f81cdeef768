package sfu

import (
	"strings"
	"sync"
	"time"

	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// pion's undeclared-SSRC handling and SSRC simulcast.
//
// The SIM encodings pion is not shown (ssrcsim.go) arrive on SSRCs it
// does not know. For each, pion's undeclared-media goroutine accepts the
// SRTP stream, peeks at it and reads up to a dozen packets looking for a
// rid, then gives up and logs "Incoming unhandled RTP ssrc(N)". Until it
// has given up it is reading the stream without any synchronisation with
// other readers (pion/srtp's peeked-packet list is unguarded), so the
// SFU's own receiver for that encoding must not start before. The log
// line is the one signal pion gives that it is done: pionLogs turns it
// into an event that startEncoding waits for.

// unhandledPrefix is how pion's message for a stream it gave up on begins.
const unhandledPrefix = "Incoming unhandled RTP ssrc("

// encodingWait bounds the wait for pion to give up on an encoding: if the
// event never comes (pion's probe routines overflowed, or pion never saw
// the stream), the encoding starts anyway.
const encodingWait = 3 * time.Second

// sharedLogs is a LoggerFactory that makes one logger per scope and hands
// it to every PeerConnection: pion asks for a dozen scopes for each one
// (pc, ice, dtls, srtp, ...), and its default factory makes each anew, with
// five log.Loggers inside: ≈ 7 KB per subscriber of loggers that say the
// same thing to the same writer. pion's loggers are safe for concurrent
// use.
type sharedLogs struct {
	base logging.LoggerFactory
	mu   sync.Mutex
	m    map[string]logging.LeveledLogger
}

func newSharedLogs(base logging.LoggerFactory) *sharedLogs {
	return &sharedLogs{base: base, m: map[string]logging.LeveledLogger{}}
}

func (f *sharedLogs) NewLogger(scope string) logging.LeveledLogger {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.m[scope]
	if !ok {
		l = f.base.NewLogger(scope)
		f.m[scope] = l
	}
	return l
}

// pionLogs is the LoggerFactory of the publishers' pion API: everything
// goes to pion's default loggers; the "pc" scope's unhandled-SSRC errors
// are also reported to ssrcs.
type pionLogs struct {
	base  logging.LoggerFactory
	ssrcs *unhandledSSRCs
}

func (f *pionLogs) NewLogger(scope string) logging.LeveledLogger {
	l := f.base.NewLogger(scope)
	if scope != "pc" {
		return l
	}
	return pcLogger{LeveledLogger: l, ssrcs: f.ssrcs}
}

type pcLogger struct {
	logging.LeveledLogger
	ssrcs *unhandledSSRCs
}

func (l pcLogger) Errorf(format string, args ...any) {
	if strings.HasPrefix(format, unhandledPrefix) && len(args) > 0 {
		if s, ok := args[0].(webrtc.SSRC); ok {
			l.ssrcs.notify(uint32(s))
		}
	}
	l.LeveledLogger.Errorf(format, args...)
}

// unhandledSSRCs matches pion's give-up events to the encodings waiting
// for them. An event that comes before anyone waits is kept a while.
type unhandledSSRCs struct {
	mu      sync.Mutex
	waiting map[uint32][]*ssrcWait
	seen    map[uint32]time.Time
}

func newUnhandledSSRCs() *unhandledSSRCs {
	return &unhandledSSRCs{waiting: map[uint32][]*ssrcWait{}, seen: map[uint32]time.Time{}}
}

// ssrcWait is one encoding waiting; run happens once, on the event, on
// the timeout or (with start false) on cancel.
type ssrcWait struct {
	once  sync.Once
	run   func(start bool)
	timer *time.Timer
}

func (w *ssrcWait) fire(start bool) {
	w.once.Do(func() {
		if w.timer != nil {
			w.timer.Stop()
		}
		w.run(start)
	})
}

// seenFor is how long an event nobody waited for is kept (RTX streams'
// events are never waited for).
const seenFor = 10 * time.Second

func (u *unhandledSSRCs) notify(ssrc uint32) {
	now := time.Now()
	u.mu.Lock()
	if ws := u.waiting[ssrc]; len(ws) > 0 {
		w := ws[0]
		if len(ws) == 1 {
			delete(u.waiting, ssrc)
		} else {
			u.waiting[ssrc] = ws[1:]
		}
		u.mu.Unlock()
		w.fire(true)
		return
	}
	for s, at := range u.seen {
		if now.Sub(at) > seenFor {
			delete(u.seen, s)
		}
	}
	u.seen[ssrc] = now
	u.mu.Unlock()
}

// await calls run(true) once pion has given up on ssrc (at once if it
// already has), or after encodingWait. The returned cancel calls
// run(false) instead, if run has not happened yet.
func (u *unhandledSSRCs) await(ssrc uint32, run func(start bool)) (cancel func()) {
	w := &ssrcWait{run: run}
	u.mu.Lock()
	if at, ok := u.seen[ssrc]; ok && time.Since(at) <= seenFor {
		delete(u.seen, ssrc)
		u.mu.Unlock()
		w.fire(true)
		return func() {}
	}
	u.waiting[ssrc] = append(u.waiting[ssrc], w)
	w.timer = time.AfterFunc(encodingWait, func() {
		u.remove(ssrc, w)
		w.fire(true)
	})
	u.mu.Unlock()
	return func() {
		u.remove(ssrc, w)
		w.fire(false)
	}
}

func (u *unhandledSSRCs) remove(ssrc uint32, w *ssrcWait) {
	u.mu.Lock()
	defer u.mu.Unlock()
	ws := u.waiting[ssrc]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(u.waiting, ssrc)
	} else {
		u.waiting[ssrc] = ws
	}
}
