// Package config holds Matinee's one configuration struct. Flags and
// MATINEE_* environment variables fill it; the zero-config defaults from
// Default run a working server with no file and no external service.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Config is every setting of a Matinee server. Each field names its flag; the
// environment variable is MATINEE_ plus the flag in upper case with dashes as
// underscores (--udp-port → MATINEE_UDP_PORT).
type Config struct {
	// Addr is the HTTPS listen address (--addr).
	Addr string
	// HTTPAddr is the plain-HTTP listen address that serves the CA and
	// redirects the rest to HTTPS (--http-addr); empty disables it.
	HTTPAddr string
	// DataDir holds state: certificates, keys, recordings (--data-dir).
	DataDir string
	// CertFile and KeyFile, when both set, are served instead of the
	// generated certificate (--cert, --key).
	CertFile, KeyFile string

	// UDPPort is the one UDP port all ICE media uses (--udp-port). 0 picks
	// an ephemeral port per address (tests).
	UDPPort int
	// ICEInterfaces restricts ICE gathering to these interface names
	// (--ice-interface, repeatable); empty means every usable interface.
	ICEInterfaces []string
	// ICELoopbackOnly gathers only on loopback, for tests and single-host
	// use (--ice-loopback-only).
	ICELoopbackOnly bool
	// AnnounceIPs replaces the host candidates' addresses, for 1:1 NAT and
	// port forwarding (--announce-ip, repeatable).
	AnnounceIPs []string

	// ConnectTimeout is how long a transport may take to complete ICE and
	// DTLS before its peer is removed (--connect-timeout).
	ConnectTimeout time.Duration
	// WSMaxMessage is the largest WebSocket message accepted, in bytes; a
	// larger one closes the socket with status 1009 (--ws-max-message).
	WSMaxMessage int64
	// WSPingInterval is how often the server pings each WebSocket
	// (--ws-ping-interval).
	WSPingInterval time.Duration
	// WSPongTimeout is how long a silent WebSocket lives before its peer is
	// removed (--ws-pong-timeout).
	WSPongTimeout time.Duration
	// MaxPeers is the default limit of peers per room (--max-peers).
	MaxPeers int
	// OpenRooms lets anyone create a room by opening its link
	// (--open-rooms); when false only rooms made through the API exist.
	OpenRooms bool
	// NACKHistory is how many sent packets each video consumer keeps to
	// answer NACKs (--nack-history); about 1 s of 2 Mbit/s video at 256.
	NACKHistory int

	// APIKey authorises admin calls of the REST API (--api-key). Empty:
	// generated on first start, stored in DataDir/api-key, printed once.
	APIKey string

	// LogFormat is "text" or "json" (--log-format); LogLevel is debug,
	// info, warn or error (--log-level).
	LogFormat, LogLevel string
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Addr:           ":8443",
		HTTPAddr:       ":8080",
		DataDir:        defaultDataDir(),
		UDPPort:        8443,
		ConnectTimeout: 15 * time.Second,
		WSMaxMessage:   64 << 10,
		WSPingInterval: 10 * time.Second,
		WSPongTimeout:  20 * time.Second,
		MaxPeers:       50,
		OpenRooms:      true,
		NACKHistory:    512,
		LogFormat:      "text",
		LogLevel:       "info",
	}
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "matinee")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "matinee")
	}
	return "matinee-data"
}

// Validate reports the first setting that is out of range, naming it.
func (c *Config) Validate() error {
	var errs []error
	if c.UDPPort < 0 || c.UDPPort > 65535 {
		errs = append(errs, fmt.Errorf("udp-port %d: out of range 0-65535", c.UDPPort))
	}
	if c.ConnectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("connect-timeout %s: must be positive", c.ConnectTimeout))
	}
	if c.WSMaxMessage < 1024 {
		errs = append(errs, fmt.Errorf("ws-max-message %d: must be at least 1024", c.WSMaxMessage))
	}
	if c.WSPingInterval <= 0 || c.WSPongTimeout <= c.WSPingInterval {
		errs = append(errs, fmt.Errorf("ws-pong-timeout %s must exceed ws-ping-interval %s", c.WSPongTimeout, c.WSPingInterval))
	}
	if c.MaxPeers < 1 {
		errs = append(errs, fmt.Errorf("max-peers %d: must be at least 1", c.MaxPeers))
	}
	if c.NACKHistory < 16 || c.NACKHistory > 32768 || c.NACKHistory&(c.NACKHistory-1) != 0 {
		errs = append(errs, fmt.Errorf("nack-history %d: must be a power of two in 16-32768", c.NACKHistory))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("cert and key must be given together"))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log-format %q: want text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}
