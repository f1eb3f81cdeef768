package config

import (
	"flag"
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
