package config

import (
	"flag"
	"strings"
	"testing"
	"time"
)

// The abuse limits (issue 19) come from flags and MATINEE_* variables
// and are checked like every other setting.
func TestAbuseLimits(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	BindFlags(fs, &c)
	if err := fs.Parse([]string{"--ws-join-timeout", "3s", "--password-fails-conn", "2", "--chat-addr-burst", "7"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"MATINEE_WS_MAX_PER_ADDR":      "9",
		"MATINEE_PASSWORD_FAILS_ADDR":  "11",
		"MATINEE_PASSWORD_FAILS_ROOM":  "13",
		"MATINEE_PASSWORD_FAIL_WINDOW": "2m",
		"MATINEE_CHAT_ADDR_RATE":       "0.5",
	}
	if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.WSJoinTimeout != 3*time.Second || c.WSMaxPerAddr != 9 || c.PasswordFailsConn != 2 || c.PasswordFailsAddr != 11 ||
		c.PasswordFailsRoom != 13 || c.PasswordFailWindow != 2*time.Minute || c.ChatAddrRate != 0.5 || c.ChatAddrBurst != 7 {
		t.Fatalf("got %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}

	bad := Default()
	bad.WSJoinTimeout = time.Millisecond
	bad.WSMaxPerAddr = -1
	bad.PasswordFailsRoom = 0
	bad.PasswordFailWindow = 0
	bad.ChatAddrBurst = 0
	err := bad.Validate()
	for _, name := range []string{"ws-join-timeout", "ws-max-per-addr", "password-fails-room", "password-fail-window", "chat-addr-burst"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate does not name %s: %v", name, err)
		}
	}
}
