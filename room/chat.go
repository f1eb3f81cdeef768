package room

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ChatMessage is one chat line. Seq grows by one per message in a room;
// every member receives messages in Seq order.
type ChatMessage struct {
	ID       string  `json:"id"`
	Seq      int64   `json:"seq"`
	PeerID   string  `json:"peerId"`
	Identity string  `json:"identity"`
	Name     string  `json:"name"`
	Text     string  `json:"text"`
	At       float64 `json:"at"` // server clock, Unix ms
}

// chatLog keeps the last max messages in a ring.
type chatLog struct {
	max  int
	ring []ChatMessage
	head int // index of the oldest message once the ring is full
	seq  int64
}

func (l *chatLog) add(m ChatMessage) {
	if l.max <= 0 {
		return
	}
	if len(l.ring) < l.max {
		l.ring = append(l.ring, m)
		return
	}
	l.ring[l.head] = m
	l.head = (l.head + 1) % l.max
}

// list returns the kept messages, oldest first.
func (l *chatLog) list() []ChatMessage {
	out := make([]ChatMessage, 0, len(l.ring))
	out = append(out, l.ring[l.head:]...)
	return append(out, l.ring[:l.head]...)
}

// ChatHistory returns the room's recent messages, oldest first.
func (r *Room) ChatHistory() []ChatMessage {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	return r.chat.list()
}

func rateLimited(what string, wait time.Duration) *Error {
	ms := wait.Milliseconds() + 1
	return &Error{Kind: KindRateLimited, Message: what + " too fast: wait " + strconv.FormatInt(ms, 10) + " ms", RetryAfterMs: ms}
}

// takeChat spends one message of the connection's budget and one of the
// person's (token identity or address), both or neither.
func (mb *Member) takeChat(now time.Time) (bool, time.Duration) {
	c := mb.cl
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok, wait := c.chatB.take(now); !ok {
		return false, wait
	}
	if mb.person == "" {
		return true, 0
	}
	m := mb.room.m
	m.peopleMu.Lock()
	ok, wait := m.people.get(mb.person, now).take(now)
	m.peopleMu.Unlock()
	if !ok {
		c.chatB.give()
	}
	return ok, wait
}

// Chat sends a message to everyone in the room, the sender included (a
// chat notification), and keeps it in the history.
func (mb *Member) Chat(text string) (ChatMessage, error) {
	if err := mb.check(); err != nil {
		return ChatMessage{}, err
	}
	cfg := mb.room.m.cfg.Chat
	text = cleanText(text, true)
	if text == "" {
		return ChatMessage{}, invalidField("text", "is required")
	}
	if n := utf8.RuneCountInString(text); n > cfg.MaxLength {
		return ChatMessage{}, invalidField("text", "is %d characters; the limit is %d", n, cfg.MaxLength)
	}
	now := mb.room.m.now()
	if ok, wait := mb.takeChat(now); !ok {
		return ChatMessage{}, rateLimited("chatting", wait)
	}
	r := mb.room
	r.evMu.Lock()
	defer r.evMu.Unlock()
	r.chat.seq++
	msg := ChatMessage{
		ID:       "m-" + strconv.FormatInt(r.chat.seq, 10),
		Seq:      r.chat.seq,
		PeerID:   mb.id,
		Identity: mb.Identity(),
		Name:     mb.name,
		Text:     text,
		At:       serverMillis(now),
	}
	r.chat.add(msg)
	r.broadcast("", "chat", map[string]any{"message": msg})
	return msg, nil
}

// React floats an emoji over everyone's stage (a reaction notification,
// the sender included). Reactions are not kept.
func (mb *Member) React(emoji string) error {
	if err := mb.check(); err != nil {
		return err
	}
	if emoji == "" || len(emoji) > 32 || strings.IndexFunc(emoji, func(c rune) bool { return unicode.IsControl(c) || unicode.IsSpace(c) }) >= 0 {
		return invalidField("emoji", "must be one emoji (1-32 bytes, no spaces)")
	}
	now := mb.room.m.now()
	mb.cl.mu.Lock()
	ok, wait := mb.cl.reactB.take(now)
	mb.cl.mu.Unlock()
	if !ok {
		return rateLimited("reacting", wait)
	}
	mb.room.broadcast("", "reaction", map[string]any{"peerId": mb.id, "emoji": emoji, "at": serverMillis(now)})
	return nil
}
