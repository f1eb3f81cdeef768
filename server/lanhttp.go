package server

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/matinee-dev/matinee/qr"
	"github.com/matinee-dev/matinee/rest"
)

// mountLAN adds what phones on the LAN use: the QR code of a join link
// and the page explaining how to trust the local CA. The links themselves
// (GET /api/lan) are a route of the REST API's table (api.go).
func (s *Server) mountLAN() {
	s.mux.HandleFunc("GET /qr.png", s.serveQR)
	s.mux.HandleFunc("GET /help/trust", s.serveTrustHelp)
}

// SetTerminal sets where Run prints the start-up QR code. By default it is
// standard error when that is a terminal and logs are text.
func (s *Server) SetTerminal(w io.Writer) { s.term.Store(&w) }

// httpsPortFor is the HTTPS port for links: the listener's once Run has
// started, else the configured one, else the port r came to.
func (s *Server) httpsPortFor(r *http.Request) int {
	if p := s.httpsPort.Load(); p > 0 {
		return int(p)
	}
	if p := configuredPort(s.cfg.Addr); p > 0 {
		return p
	}
	if r != nil {
		if _, p, err := net.SplitHostPort(r.Host); err == nil {
			n, _ := strconv.Atoi(p)
			return n
		}
	}
	return 443
}

func configuredPort(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// siteURL is https://host:port/ with the port left out when it is 443.
func siteURL(scheme, host string, port int) string {
	h := host
	if (scheme == "https" && port != 443) || (scheme == "http" && port != 80) {
		h = net.JoinHostPort(host, strconv.Itoa(port))
	} else if strings.Contains(host, ":") {
		h = "[" + host + "]"
	}
	return scheme + "://" + h + "/"
}

// phoneHosts are the hosts a phone can reach this server at, best first:
// the LAN addresses, then the announced names and addresses.
func (s *Server) phoneHosts() []string {
	var out []string
	for _, a := range s.lanAddrs() {
		out = append(out, a.String())
	}
	if s.lan != nil {
		for _, h := range s.lan.announceHosts {
			if !contains(out, h) {
				out = append(out, h)
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// lanInfo is the body of GET /api/lan.
type lanInfo struct {
	// URLs are the links phones open: the room's when ?room= is given,
	// else the lobby's. Empty when the machine has no LAN address.
	URLs []string `json:"urls"`
	// Lobby are the lobby's links.
	Lobby []string `json:"lobby"`
	// QR is an image of URLs[0] (absent without URLs).
	QR string `json:"qr,omitempty"`
	// CA and CAProfile download the local CA (certificate, iOS profile);
	// CAPlain is the CA over plain HTTP for phones that do not trust it
	// yet; Help is the page explaining it all. CA fields are absent when
	// the server uses its own certificate (--cert).
	CA        string `json:"ca,omitempty"`
	CAProfile string `json:"caProfile,omitempty"`
	CAPlain   string `json:"caPlain,omitempty"`
	Help      string `json:"help"`
}

func (s *Server) serveLAN(w http.ResponseWriter, r *http.Request) {
	port := s.httpsPortFor(r)
	roomID := r.URL.Query().Get("room")
	info := lanInfo{URLs: []string{}, Lobby: []string{}, Help: "/help/trust"}
	hosts := s.phoneHosts()
	for _, h := range hosts {
		base := siteURL("https", h, port)
		info.Lobby = append(info.Lobby, base)
		if roomID != "" {
			info.URLs = append(info.URLs, base+"r/"+url.PathEscape(roomID))
		} else {
			info.URLs = append(info.URLs, base)
		}
	}
	if len(info.URLs) > 0 {
		info.QR = "/qr.png?text=" + url.QueryEscape(info.URLs[0])
	}
	if cm := s.certs.Load(); cm == nil || cm.CAPEM() != nil {
		info.CA, info.CAProfile = "/ca.crt", "/ca.mobileconfig"
		if p := configuredPort(s.cfg.HTTPAddr); s.cfg.HTTPAddr != "" && p > 0 && len(hosts) > 0 {
			info.CAPlain = siteURL("http", hosts[0], p) + "ca.crt"
		}
	}
	rest.WriteJSON(w, http.StatusOK, info)
}

// serveQR draws a QR code of ?text=, which must be a link to this server:
// anything else is refused so the server is not a QR generator for any
// text (phishing links under this origin's name).
func (s *Server) serveQR(w http.ResponseWriter, r *http.Request) {
	text := r.URL.Query().Get("text")
	if err := s.ownURL(text, r); err != nil {
		http.Error(w, "qr: "+err.Error(), http.StatusBadRequest)
		return
	}
	size := 320
	if v := r.URL.Query().Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 64 || n > 1024 {
			http.Error(w, "qr: size must be 64-1024", http.StatusBadRequest)
			return
		}
		size = n
	}
	png, err := qr.PNG(text, size)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "private, max-age=300")
	_, _ = w.Write(png)
}

// ownURL checks that text is an http(s) link to a name or address of this
// server.
func (s *Server) ownURL(text string, r *http.Request) error {
	if text == "" || len(text) > qr.MaxText {
		return fmt.Errorf("text must be a link of 1-%d bytes", qr.MaxText)
	}
	u, err := url.Parse(text)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return fmt.Errorf("text must be an http(s) link to this server")
	}
	host := strings.ToLower(u.Hostname())
	for _, h := range s.ownHosts(r) {
		if strings.EqualFold(h, host) {
			return nil
		}
	}
	return fmt.Errorf("%q is not a name or address of this server", host)
}

// ownHosts are the names and addresses this server answers to.
func (s *Server) ownHosts(r *http.Request) []string {
	hosts := append(s.phoneHosts(), "localhost", "127.0.0.1", "::1")
	if r != nil {
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			hosts = append(hosts, h)
		} else {
			hosts = append(hosts, r.Host)
		}
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		hosts = append(hosts, name, name+".local")
	}
	if s.cfg.PublicURL != "" {
		if u, err := url.Parse(s.cfg.PublicURL); err == nil {
			hosts = append(hosts, u.Hostname())
		}
	}
	if cm := s.certs.Load(); cm != nil {
		in := cm.Info()
		hosts = append(hosts, in.DNSNames...)
		for _, ip := range in.IPs {
			hosts = append(hosts, ip.String())
		}
	}
	return hosts
}

// trustPage is what /help/trust shows.
type trustPage struct {
	OwnCert     bool // --cert: there is no CA to install
	CAName      string
	Fingerprint string
	CAURL       string // plain-HTTP download when available, else relative
	ProfileURL  string
	Lobby       string
	HTTPS       bool
}

func (s *Server) serveTrustHelp(w http.ResponseWriter, r *http.Request) {
	p := trustPage{CAURL: "/ca.crt", ProfileURL: "/ca.mobileconfig", HTTPS: r.TLS != nil}
	if cm := s.certs.Load(); cm != nil && cm.CAPEM() == nil {
		p.OwnCert = true
	} else if cm != nil {
		if blk, _ := pem.Decode(cm.CAPEM()); blk != nil {
			sum := sha256.Sum256(blk.Bytes)
			p.Fingerprint = colonHex(sum[:])
			if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
				p.CAName = c.Subject.CommonName
			}
		}
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.String()
	}
	p.Lobby = siteURL("https", host, s.httpsPortFor(r))
	// The page itself is web/static/trust.html, in the app's look.
	s.web.Trust(w, r, p)
}

func colonHex(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02X", c)
	}
	return sb.String()
}
