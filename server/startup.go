package server

import (
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/matinee-dev/matinee/qr"
)

// logStartup says, in plain words, where people can join: the addresses
// phones on the network can use, how they trust the certificate, and
// which media fallbacks are on. The lobby's link also goes to the
// terminal as a QR code.
func (s *Server) logStartup(httpsPort int) {
	hosts := s.phoneHosts()
	local := siteURL("https", "localhost", httpsPort)
	s.log.Info("Matinee is running; on this computer open "+local, "media_udp_port", s.cfg.UDPPort,
		"ice_tcp", s.iceTCPWords(), "turn", s.turnWords())
	if onlyLoopback(hosts) {
		s.log.Warn("no network address found, only loopback: only this computer can join. Connect to Wi-Fi or Ethernet " +
			"(or name the interface with --ice-interface, or give a reachable address with --announce-ip) and restart")
		return
	}
	if s.cfg.ICELoopbackOnly {
		s.log.Warn("media runs on loopback only (--ice-loopback-only): phones can open the page but not watch")
	}
	lobby := siteURL("https", hosts[0], httpsPort)
	for _, h := range hosts {
		base := siteURL("https", h, httpsPort)
		s.log.Info("phones and computers on your network can join at "+base, "room_link", base+"r/<room-name>")
	}
	if s.cfg.HTTPAddr != "" {
		if p := configuredPort(s.cfg.HTTPAddr); p > 0 {
			if cm := s.certs.Load(); cm != nil && cm.CAPEM() != nil {
				s.log.Info("first time on a phone? open " + siteURL("http", hosts[0], p) + "help/trust to trust this server's certificate")
			}
		}
	}
	if w := s.terminal(); w != nil {
		fmt.Fprintf(w, "\nScan to join from a phone: %s\n", lobby)
		if err := qr.WriteTerminal(w, lobby); err != nil {
			s.log.Debug("terminal QR code", "err", err)
		}
		fmt.Fprintln(w)
	}
}

func (s *Server) iceTCPWords() string {
	switch {
	case s.lan == nil || s.lan.iceTCP == nil:
		return "off"
	case s.lan.share != nil:
		return fmt.Sprintf("port %d (shared with HTTPS)", portOf(s.lan.share.Addr()))
	default:
		return fmt.Sprintf("port %d", s.cfg.ICETCPPort)
	}
}

func (s *Server) turnWords() string {
	if s.lan == nil || s.lan.turn == nil {
		return "off"
	}
	return fmt.Sprintf("port %d UDP+TCP, relaying on %s", s.lan.turn.Port(), s.lan.turn.RelayIP())
}

// terminal is where the start-up QR code goes, or nil for nowhere.
func (s *Server) terminal() io.Writer {
	if p := s.term.Load(); p != nil {
		return *p
	}
	if s.cfg.LogFormat != "text" {
		return nil
	}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return os.Stderr
	}
	return nil
}

// onlyLoopback reports whether no host in hosts is reachable from another
// machine: none at all, or loopback addresses alone.
func onlyLoopback(hosts []string) bool {
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err != nil || !a.IsLoopback() {
			return false
		}
	}
	return true
}
