package config

import (
	"flag"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestFlagsAndEnv(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	BindFlags(fs, &c)
	if err := fs.Parse([]string{"--udp-port", "9000", "--announce-ip", "203.0.113.7"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"MATINEE_UDP_PORT":        "1", // the command line wins
		"MATINEE_CONNECT_TIMEOUT": "3s",
		"MATINEE_ICE_INTERFACE":   "eth0,wlan0",
		"MATINEE_OPEN_ROOMS":      "false",
	}
	if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.UDPPort != 9000 || c.ConnectTimeout != 3*time.Second || c.OpenRooms {
		t.Fatalf("got %+v", c)
	}
	if strings.Join(c.ICEInterfaces, ",") != "eth0,wlan0" || c.AnnounceIPs[0] != "203.0.113.7" {
		t.Fatalf("lists: %v %v", c.ICEInterfaces, c.AnnounceIPs)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{"MATINEE_UDP_PORT": "x"}
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	c2 := Default()
	BindFlags(fs2, &c2)
	_ = fs2.Parse(nil)
	if err := ApplyEnv(fs2, func(k string) (string, bool) { v, ok := bad[k]; return v, ok }); err == nil || !strings.Contains(err.Error(), "MATINEE_UDP_PORT") {
		t.Fatalf("bad env error = %v", err)
	}
}

func TestValidateNamesTheSetting(t *testing.T) {
	c := Default()
	c.UDPPort = 70000
	c.NACKHistory = 100
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "udp-port") || !strings.Contains(err.Error(), "nack-history") {
		t.Fatalf("Validate = %v", err)
	}
}

// --gc-percent (or MATINEE_GC_PERCENT) sets the collector's target unless
// GOGC is in the environment; out-of-range values are refused by name.
func TestGCPercent(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	BindFlags(fs, &c)
	if err := ApplyEnv(fs, func(k string) (string, bool) { return "30", k == "MATINEE_GC_PERCENT" }); err != nil {
		t.Fatal(err)
	}
	if c.GCPercent != 30 {
		t.Fatalf("gc percent %d from MATINEE_GC_PERCENT=30", c.GCPercent)
	}
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	if c.ApplyGCPercent(func(k string) (string, bool) { return "200", k == "GOGC" }) {
		t.Fatal("applied over GOGC in the environment")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("target %d after GOGC kept it at 100", got)
	}
	if !c.ApplyGCPercent(func(string) (string, bool) { return "", false }) {
		t.Fatal("not applied without GOGC")
	}
	if got := debug.SetGCPercent(100); got != 30 {
		t.Fatalf("target %d, want 30", got)
	}
	c.GCPercent = 0
	if c.ApplyGCPercent(func(string) (string, bool) { return "", false }) {
		t.Fatal("0 applied")
	}
	for _, v := range []int{-1, 5, 1001} {
		c.GCPercent = v
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "gc-percent") {
			t.Errorf("gc-percent %d: %v", v, err)
		}
	}
}
