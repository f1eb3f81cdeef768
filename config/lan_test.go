package config

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestLANFlags(t *testing.T) {
	c := Default()
	if c.ICETCPPort != ICETCPSameAsHTTPS || c.TURN || c.TURNPort != 3478 || c.TURNCredentialTTL != 12*time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	BindFlags(fs, &c)
	err := fs.Parse([]string{"--ice-tcp-port", "0", "--turn", "--turn-port", "3479", "--announce-ip", "tv.example.com", "--announce-ip", "2001:db8::7"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fs, func(k string) (string, bool) {
		if k == "MATINEE_TURN_CREDENTIAL_TTL" {
			return "2h", true
		}
		return "", false
	}); err != nil {
		t.Fatal(err)
	}
	if c.ICETCPPort != 0 || !c.TURN || c.TURNPort != 3479 || c.TURNCredentialTTL != 2*time.Hour ||
		strings.Join(c.AnnounceIPs, ",") != "tv.example.com,2001:db8::7" {
		t.Fatalf("parsed: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateLAN(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.ICETCPPort = 70000 }, "ice-tcp-port"},
		{func(c *Config) { c.ICETCPPort = -2 }, "ice-tcp-port"},
		{func(c *Config) { c.AnnounceIPs = []string{"http://x"} }, "announce-ip"},
		{func(c *Config) { c.AnnounceIPs = []string{"10.0.0"} }, "announce-ip"},
		{func(c *Config) { c.AnnounceIPs = []string{"-bad.example"} }, "announce-ip"},
		{func(c *Config) { c.TURN, c.TURNPort = true, 8443 }, "turn-port"},
		{func(c *Config) { c.TURN, c.TURNPort, c.UDPPort = true, 9000, 9000 }, "turn-port"},
		{func(c *Config) { c.TURN, c.TURNPort = true, 8080 }, "turn-port"},
		{func(c *Config) { c.TURN, c.TURNCredentialTTL = true, time.Second }, "turn-credential-ttl"},
	} {
		c := Default()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Validate = %v, want %s", c, err, tc.want)
		}
	}
	c := Default()
	c.TURNPort = 8443 // no clash while TURN is off
	c.AnnounceIPs = []string{"203.0.113.5", "tv.lan", "tv.lan."}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
