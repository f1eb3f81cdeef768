package room

import (
	"strconv"
	"sync"
	"time"
)

// Client is one connection's state that outlives the memberships it
// makes: a member that leaves and joins again on the same connection
// keeps its chat, reaction and report budgets and its count of wrong
// passwords, so leaving does not buy a fresh allowance.
type Client struct {
	addr string

	mu     sync.Mutex // guards the buckets below
	inited bool
	chatB  bucket
	reactB bucket
	report bucket

	// Wrong passwords; guarded by the Manager's passwordGuard.mu.
	pwFails bucket
	retryAt time.Time // told to wait until then
}

// NewClient returns the state of a connection from addr, the remote IP
// (no port); "" when there is none (an in-process publisher).
func NewClient(addr string) *Client { return &Client{addr: addr} }

// Addr returns the connection's remote IP.
func (c *Client) Addr() string { return c.addr }

// init sets the budgets from the manager's limits at the first join.
func (c *Client) init(m *Manager) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inited {
		return
	}
	c.inited = true
	c.chatB = newBucket(m.cfg.Chat.Rate, m.cfg.Chat.Burst)
	c.reactB = newBucket(m.cfg.Chat.ReactionRate, m.cfg.Chat.ReactionBurst)
	c.report = newBucket(reportRate, reportBurst)
}

// PasswordLimits bound password guessing: how many wrong passwords one
// connection, one remote address and one room may see per Window. Each
// budget refills evenly over the window.
type PasswordLimits struct {
	Conn, Addr, Room int
	Window           time.Duration
}

func (l PasswordLimits) withDefaults() PasswordLimits {
	if l.Conn <= 0 {
		l.Conn = 5
	}
	if l.Addr <= 0 {
		l.Addr = 20
	}
	if l.Room <= 0 {
		l.Room = 100
	}
	if l.Window <= 0 {
		l.Window = time.Minute
	}
	return l
}

func (l PasswordLimits) rate(n int) float64 { return float64(n) / l.Window.Seconds() }

// ReasonTooManyAttempts is the reason of the KindRateLimited error a join
// gets once too many wrong passwords came from its connection, its
// address or to its room.
const ReasonTooManyAttempts = "too_many_attempts"

// passwordGuard counts wrong passwords. A join with a password reserves
// one failure from each budget before the (slow, on purpose) hash is
// computed and gets it back when the password was right, so a guesser
// cannot make the server hash faster than the limits allow, however many
// attempts it sends at once.
type passwordGuard struct {
	lim   PasswordLimits
	mu    sync.Mutex
	addrs *bucketMap
	rooms *bucketMap
}

func newPasswordGuard(l PasswordLimits) *passwordGuard {
	return &passwordGuard{
		lim:   l,
		addrs: newBucketMap(l.rate(l.Addr), l.Addr),
		rooms: newBucketMap(l.rate(l.Room), l.Room),
	}
}

// reserve takes one failure from c's, its address's and the room's
// budgets, all or none. done(ok) must follow the password check; a right
// password gives them back.
func (g *passwordGuard) reserve(c *Client, roomID string, now time.Time) (done func(ok bool), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(c.retryAt) {
		// Told to wait and did not: this connection is guessing.
		e := tooManyAttempts(c.retryAt.Sub(now))
		e.CloseConn = true
		return nil, e
	}
	if c.pwFails.rate == 0 {
		c.pwFails = newBucket(g.lim.rate(g.lim.Conn), g.lim.Conn)
	}
	bs := []*bucket{&c.pwFails, g.rooms.get(roomID, now)}
	if c.addr != "" {
		bs = append(bs, g.addrs.get(c.addr, now))
	}
	var wait time.Duration
	for _, b := range bs {
		wait = max(wait, b.wait(now))
	}
	if wait > 0 {
		c.retryAt = now.Add(wait)
		return nil, tooManyAttempts(wait)
	}
	for _, b := range bs {
		b.take(now)
	}
	return func(ok bool) {
		if !ok {
			return
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, b := range bs {
			b.give()
		}
	}, nil
}

func tooManyAttempts(wait time.Duration) *Error {
	ms := wait.Milliseconds() + 1
	return &Error{
		Kind:         KindRateLimited,
		Message:      "too many wrong passwords: wait " + strconv.FormatInt(ms, 10) + " ms",
		Reason:       ReasonTooManyAttempts,
		RetryAfterMs: ms,
	}
}
