package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

const (
	// leafValidity stays under the 825 days Apple platforms accept for a
	// TLS server certificate (longer ones are rejected outright, even
	// from a user-installed root), with a margin for the backdated
	// NotBefore and for rounding.
	leafValidity = 820 * 24 * time.Hour

	// renewBefore is how long before expiry a leaf is replaced. A month
	// leaves room for a machine that is rarely on, and phones never need
	// to act since they trust the CA, not the leaf.
	renewBefore = 30 * 24 * time.Hour
)

// sans is a set of subject alternative names, in a stable order.
type sans struct {
	dns []string
	ips []netip.Addr
}

func (s *sans) add(host string) {
	if a, err := netip.ParseAddr(host); err == nil {
		s.addIP(a)
		return
	}
	if !slices.Contains(s.dns, host) {
		s.dns = append(s.dns, host)
	}
}

// addIP skips addresses no browser can reach by URL: IPv6 link-local
// ones need a zone, which URLs and certificates cannot carry.
func (s *sans) addIP(a netip.Addr) {
	a = a.Unmap().WithZone("")
	if !usableIP(a) || slices.Contains(s.ips, a) {
		return
	}
	s.ips = append(s.ips, a)
}

func usableIP(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !(a.Is6() && a.IsLinkLocalUnicast())
}

// missing returns a wanted name the certificate does not cover, or "".
// Extra names in the certificate are fine: dropping one is no reason to
// re-issue, and it keeps a flapping interface from causing churn.
func (s *sans) missing(c *x509.Certificate) string {
	for _, n := range s.dns {
		if !slices.Contains(c.DNSNames, n) {
			return n
		}
	}
	for _, a := range s.ips {
		if !slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool { return ip.Equal(a.AsSlice()) }) {
			return a.String()
		}
	}
	return ""
}

// wanted is everything the leaf must cover right now. The hostname is
// read each time because macOS changes it with the network.
func (m *Manager) wanted() sans {
	var s sans
	s.add("localhost")
	s.addIP(netip.MustParseAddr("127.0.0.1"))
	s.addIP(netip.IPv6Loopback())
	for _, n := range hostnameSANs() {
		s.add(n)
	}
	for _, a := range m.addrs() {
		s.addIP(a)
	}
	for _, h := range m.hosts {
		s.add(h)
	}
	return s
}

// hostnameSANs are the names phones may use for this machine: the
// hostname, and its first label under .local, which is what mDNS
// (Bonjour, Avahi) answers for.
func hostnameSANs() []string {
	h, err := os.Hostname()
	if err != nil {
		return nil
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if !validName(h) {
		return nil
	}
	short, _, _ := strings.Cut(h, ".")
	if h == short+".local" {
		return []string{h}
	}
	return []string{h, short + ".local"}
}

// staleness says why the current leaf must be replaced, or "" if it is
// fine.
func (m *Manager) staleness(c *tls.Certificate, want sans) string {
	if c == nil || c.Leaf == nil {
		return "no certificate"
	}
	leaf := c.Leaf
	if !bytes.Equal(leaf.RawIssuer, m.ca.cert.RawSubject) || leaf.CheckSignatureFrom(m.ca.cert) != nil {
		return "not signed by the current CA"
	}
	now := m.now()
	if now.Before(leaf.NotBefore) {
		return "not valid yet"
	}
	if n := want.missing(leaf); n != "" {
		return "does not cover " + n
	}
	// A leaf already cut short by the CA's own expiry cannot be improved
	// on; renewing it would only repeat on every check.
	if now.Add(renewBefore).After(leaf.NotAfter) && leaf.NotAfter.Before(m.ca.cert.NotAfter) {
		return "expires " + leaf.NotAfter.Format(time.DateOnly)
	}
	return ""
}

// renew issues a new leaf if the current one does not fit. Callers hold
// m.mu, except New, which runs before anyone else can.
func (m *Manager) renew() error {
	want := m.wanted()
	reason := m.staleness(m.cert.Load(), want)
	if reason == "" {
		return nil
	}
	c, err := m.issue(want)
	if err != nil {
		return fmt.Errorf("certs: issue certificate (%s): %w", reason, err)
	}
	m.cert.Store(c)
	m.log.Info("certs: issued certificate", "reason", reason, "ca", m.ca.path,
		"dns", c.Leaf.DNSNames, "ips", c.Leaf.IPAddresses, "not_after", c.Leaf.NotAfter)
	return nil
}

func (m *Manager) issue(want sans) (*tls.Certificate, error) {
	// A fresh key each time: cheap, and a leaked old key dies with its
	// certificate.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notBefore := m.now().Add(-backdate)
	notAfter := notBefore.Add(leafValidity)
	if notAfter.After(m.ca.cert.NotAfter) {
		notAfter = m.ca.cert.NotAfter
	}
	ips := make([]net.IP, len(want.ips))
	for i, a := range want.ips {
		ips[i] = a.AsSlice()
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization:       []string{"Matinee local certificate"},
			OrganizationalUnit: []string{truncate(userAndHost(), 64)},
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              want.dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.ca.cert, &key.PublicKey, m.ca.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return nil, err
	}
	// Key first, as for the CA: if only the key is replaced, the pair no
	// longer matches and the next start issues a new leaf.
	if err := writeFileAtomic(m.leafKeyPath(), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(m.leafPath(), certToPEM(der), 0o644); err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// loadLeaf serves the leaf from an earlier run, if any, so that renew
// keeps it when it still fits.
func (m *Manager) loadLeaf() {
	c, err := tls.LoadX509KeyPair(m.leafPath(), m.leafKeyPath())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("certs: ignoring unreadable certificate", "cert", m.leafPath(), "err", err)
		}
		return
	}
	if err := ensureLeaf(&c); err != nil {
		return
	}
	m.cert.Store(&c)
}

// ensureLeaf parses the leaf that tls.LoadX509KeyPair leaves out under
// GODEBUG=x509keypairleaf=0; the rest of the package relies on it.
func ensureLeaf(c *tls.Certificate) error {
	if c.Leaf != nil {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return err
	}
	c.Leaf = leaf
	return nil
}

// normalizeHosts checks names and addresses given by the user and puts
// them in the form stored in certificates, without duplicates.
func normalizeHosts(hosts []string) ([]string, error) {
	var out []string
	for _, h := range hosts {
		n, err := normalizeHost(h)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

func normalizeHost(h string) (string, error) {
	s := strings.TrimSpace(h)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap().WithZone("")
		if !usableIP(a) {
			return "", fmt.Errorf("%q cannot be reached through a URL", h)
		}
		return a.String(), nil
	}
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if !validName(s) {
		return "", fmt.Errorf("%q is neither an IP address nor a DNS name", h)
	}
	return s, nil
}

// validName accepts DNS names as browsers do: letters, digits, hyphens
// and (for old Windows names) underscores, with an optional leading "*"
// label under at least two others, since "*.lan" matches nothing useful.
// An all-digit last label is refused: browsers read such a name as a
// mistyped IPv4 address.
func validName(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	labels := strings.Split(n, ".")
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return false
	}
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) >= 3 {
			continue
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// union returns a followed by the elements of b not in a.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
