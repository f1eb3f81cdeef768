package room

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func retryAfter(t *testing.T, err error) time.Duration {
	t.Helper()
	var re *Error
	if !errors.As(err, &re) || re.Kind != KindRateLimited {
		t.Fatalf("err %v, want 1008", err)
	}
	if re.Reason != ReasonTooManyAttempts {
		t.Fatalf("reason %q", re.Reason)
	}
	return time.Duration(re.RetryAfterMs) * time.Millisecond
}

// The wrong-password budget: a right password costs nothing, the budget
// refills over the window, asking before retryAfterMs closes the
// connection.
func TestPasswordBudget(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	m := newManager(t, func(c *Config) {
		c.Now = clk.now
		c.Passwords = PasswordLimits{Conn: 2, Addr: 100, Room: 100, Window: time.Minute}
	})
	if _, err := m.CreateRoom(RoomSpec{ID: "p", Name: "p", Password: "sesame"}); err != nil {
		t.Fatal(err)
	}
	cl := NewClient("192.0.2.7")
	join := func(pw string) (*Member, error) {
		mb, _, err := m.Join("p", JoinOptions{Name: "G", Password: pw, Client: cl}, &notes{})
		return mb, err
	}
	_, err := join("nope")
	wantCode(t, err, KindForbidden, "wrong password")
	for i := 0; i < 3; i++ { // right passwords are free
		mb, err := join("sesame")
		if err != nil {
			t.Fatal(err)
		}
		mb.Leave()
	}
	_, err = join("nope")
	wantCode(t, err, KindForbidden, "wrong password")
	_, err = join("sesame") // the budget is spent: not even checked
	wait := retryAfter(t, err)
	if wait <= 0 || wait > 30*time.Second+time.Millisecond {
		t.Fatalf("retryAfter %s, want up to 30s (2 per minute)", wait)
	}
	var re *Error
	if errors.As(err, &re) && re.CloseConn {
		t.Fatal("the first refusal closes the connection")
	}
	clk.add(wait / 2)
	_, err = join("sesame") // too early: insisting
	if !errors.As(err, &re) || !re.CloseConn || re.Kind != KindRateLimited {
		t.Fatalf("insisting: %v, want 1008 with CloseConn", err)
	}
	clk.add(wait)
	if mb, err := join("sesame"); err != nil {
		t.Fatalf("after the wait: %v", err)
	} else {
		mb.Leave()
	}
}

func TestCleanText(t *testing.T) {
	for _, tc := range []struct {
		in        string
		multiline bool
		want      string
	}{
		{"  hi\tthere\n  ", true, "hi\tthere"},
		{"a\r\nb\u2028c", true, "a\nb\nc"},
		{"a\r\nb\u2028c", false, "a b c"},
		{"bad\xffutf8", false, "badutf8"},
		{"\u202Dforce\u202C ltr", true, "force ltr"},
		{"soft\u00adhy\u2063phen", false, "softhyphen"},
		{"e\u0301\u0301\u0301\u0301\u0301\u0301\u0301x", false, "e\u0301\u0301\u0301\u0301x"}, // zalgo capped at 4 marks
		{"ti\u1ec3ng Vi\u1ec7t", false, "ti\u1ec3ng Vi\u1ec7t"},
		{"flag \U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F!", false, "flag \U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F!"},
		{"smuggled\U000E0068\U000E0069", false, "smuggled"},
		{"می\u200cخواهم", false, "می\u200cخواهم"}, // Persian ZWNJ stays
		{"x \u200d y", false, "x y"},
	} {
		if got := cleanText(tc.in, tc.multiline); got != tc.want {
			t.Errorf("cleanText(%q, %v) = %q, want %q", tc.in, tc.multiline, got, tc.want)
		}
	}
	if _, err := checkName("name", "\u202E\u200B"); err == nil || !strings.Contains(err.Error(), "invisible") {
		t.Fatalf("checkName of nothing visible: %v", err)
	}
	if _, err := checkRoomName("\u0000\u0001"); err == nil || !strings.Contains(err.Error(), `"name"`) {
		t.Fatalf("checkRoomName of controls: %v", err)
	}
}

func TestBucketMapForgetsIdleKeys(t *testing.T) {
	bm := newBucketMap(1, 2)
	t0 := time.Unix(1_700_000_000, 0)
	for _, k := range []string{"a", "b", "c"} {
		bm.get(k, t0).take(t0)
	}
	bm.get("a", t0).take(t0)
	if ok, _ := bm.get("a", t0).take(t0); ok {
		t.Fatal("a's third message within a burst of 2 went through")
	}
	// After the refill time every bucket is full again and forgotten.
	bm.get("d", t0.Add(3*time.Second))
	if len(bm.m) != 1 {
		t.Fatalf("%d buckets kept, want only the new one", len(bm.m))
	}
}

// A join that races the last member of a link room out never finds the
// room "ended": it opens it again.
func TestJoinRacesLinkRoomClosing(t *testing.T) {
	m := newManager(t, nil)
	for i := 0; i < 200; i++ {
		a, _, err := m.Join("link", JoinOptions{Name: "A"}, &notes{})
		if err != nil {
			t.Fatal(err)
		}
		left := make(chan struct{})
		go func() {
			defer close(left)
			a.Leave()
		}()
		b, _, err := m.Join("link", JoinOptions{Name: "B"}, &notes{})
		<-left
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		b.Leave()
	}
}
