package config

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// bindLANFlags defines the flags of ICE-TCP and the embedded TURN server.
func bindLANFlags(fs *flag.FlagSet, c *Config) {
	fs.IntVar(&c.ICETCPPort, "ice-tcp-port", c.ICETCPPort, "TCP port for ICE-TCP, for networks that block UDP (-1: the HTTPS port of --addr, sharing its listener; 0: off)")
	fs.BoolVar(&c.TURN, "turn", c.TURN, "run the embedded TURN server and hand clients short-lived credentials for it")
	fs.IntVar(&c.TURNPort, "turn-port", c.TURNPort, "UDP and TCP port of the embedded TURN server")
	fs.DurationVar(&c.TURNCredentialTTL, "turn-credential-ttl", c.TURNCredentialTTL, "lifetime of the TURN credentials handed out at join")
}

// validateLAN checks the ICE and TURN settings.
func (c *Config) validateLAN() []error {
	var errs []error
	if c.ICETCPPort < ICETCPSameAsHTTPS || c.ICETCPPort > 65535 {
		errs = append(errs, fmt.Errorf("ice-tcp-port %d: out of range -1-65535 (-1: the HTTPS port)", c.ICETCPPort))
	}
	for _, a := range c.AnnounceIPs {
		if !ValidHost(a) {
			errs = append(errs, fmt.Errorf("announce-ip %q: want an IP address or a DNS name", a))
		}
	}
	if !c.TURN {
		return errs
	}
	if c.TURNPort < 0 || c.TURNPort > 65535 {
		errs = append(errs, fmt.Errorf("turn-port %d: out of range 0-65535", c.TURNPort))
	}
	if c.TURNCredentialTTL < time.Minute {
		errs = append(errs, fmt.Errorf("turn-credential-ttl %s: must be at least 1m", c.TURNCredentialTTL))
	}
	if c.TURNPort != 0 {
		if c.TURNPort == c.UDPPort {
			errs = append(errs, fmt.Errorf("turn-port %d: the media UDP port (udp-port) uses it", c.TURNPort))
		}
		if c.TURNPort == c.ICETCPPort || c.TURNPort == portOf(c.Addr) || c.TURNPort == portOf(c.HTTPAddr) {
			errs = append(errs, fmt.Errorf("turn-port %d: another listener (ice-tcp-port, addr or http-addr) uses it", c.TURNPort))
		}
	}
	return errs
}

// portOf returns the port of a host:port listen address, or -1.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(p)
	if err != nil || n == 0 {
		return -1
	}
	return n
}

// ValidHost reports whether s is an IP address or a syntactically valid
// DNS name (letters, digits, hyphens and dots; no scheme, no port).
func ValidHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return false // all digits: a mistyped IPv4 address, not a name
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
