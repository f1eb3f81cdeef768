// Package certs gives Matinee an HTTPS certificate that phones on the LAN
// can trust. Browsers only allow camera, microphone and screen capture on
// secure origins, and a LAN IP is not one without a certificate, so the
// package keeps a leaf certificate for the machine's names and LAN
// addresses, signed by a local CA the user trusts once per phone: mkcert's
// if the user already has one, Matinee's own otherwise. The leaf follows
// address changes and expiry in the background and is swapped without a
// restart. A user-supplied certificate can replace all of this.
package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Source says where the served certificate's trust comes from.
type Source string

const (
	// SourceMkcert is a CA created by mkcert, found in CAROOT.
	SourceMkcert Source = "mkcert"
	// SourceMatinee is the CA Matinee created in DataDir/ca.
	SourceMatinee Source = "matinee"
	// SourceUser is a certificate supplied by the user; there is no CA.
	SourceUser Source = "user"
)

// ErrNoCA is returned by calls that need a CA when the Manager serves a
// user-supplied certificate.
var ErrNoCA = errors.New("certs: serving a user-supplied certificate, there is no CA")

const defaultCheckInterval = time.Minute

// Config configures a Manager. Only DataDir is needed for the usual case.
type Config struct {
	// DataDir holds Matinee's own CA (DataDir/ca), the leaf certificate
	// and key (leaf.pem, leaf-key.pem) and the hosts added with AddHosts
	// (hosts.json). It is created with mode 0700 because it holds private
	// keys. Required unless CertFile and KeyFile are set.
	DataDir string

	// CAROOT is an mkcert CA directory (rootCA.pem and rootCA-key.pem) to
	// sign with. When empty, $CAROOT and then mkcert's default location are
	// tried, and Matinee's own CA is used if neither holds a CA. When set,
	// it must hold a usable CA or New fails: a typo must not silently move
	// phones to a CA they do not trust.
	CAROOT string

	// Hosts are extra DNS names or IP addresses the certificate must cover,
	// such as a name the local DNS gives this machine. A leading "*." label
	// is accepted for wildcard names.
	Hosts []string

	// CertFile and KeyFile, set together, name a PEM certificate (or chain)
	// and its key to serve instead of issuing one; no CA is read or
	// created. The files are read again when they change, so an external
	// renewer such as certbot needs no restart.
	CertFile, KeyFile string

	// Addrs returns the LAN addresses the certificate must cover. The
	// caller passes a wrapper around lanaddr.Usable; it is called at start
	// and on every check, so joining another network gets a new leaf.
	// Nil means only the loopback addresses and local names.
	Addrs func() []netip.Addr

	// Logger receives issuance, reload and failure events. Nil means
	// slog.Default().
	Logger *slog.Logger

	// CheckInterval is how often the leaf is compared with the wanted
	// names, addresses and expiry. The check is cheap, and someone who
	// just switched Wi-Fi should not wait long, so zero means one minute.
	CheckInterval time.Duration

	// Now replaces time.Now, so tests can reach expiry. Nil means time.Now.
	Now func() time.Time
}

// Info describes the served certificate, for the `matinee cert` command.
type Info struct {
	// CASource is where the trust comes from.
	CASource Source
	// CAPath is the CA certificate file to trust; empty for SourceUser.
	CAPath string
	// CertPath is the file the served certificate was read from or
	// written to.
	CertPath string
	// DNSNames and IPs are the served certificate's subject alternative
	// names.
	DNSNames []string
	IPs      []netip.Addr
	// NotAfter is when the served certificate expires.
	NotAfter time.Time
}

// Manager owns the served certificate. Its methods are safe for
// concurrent use.
type Manager struct {
	log     *slog.Logger
	now     func() time.Time
	addrs   func() []netip.Addr
	dataDir string

	ca   *authority // nil when serving user files
	user *userFiles // nil when issuing

	cert atomic.Pointer[tls.Certificate]

	mu    sync.Mutex // serializes checks and host changes
	hosts []string   // Config.Hosts and saved, normalized
	saved []string   // hosts added with AddHosts, as in hosts.json

	stop context.CancelFunc
	done chan struct{}
}

// New loads or creates the CA and a leaf certificate that covers the
// current names and addresses, and starts checking them every
// CheckInterval until ctx is done or Close is called.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := &Manager{
		log:     cfg.Logger,
		now:     cfg.Now,
		addrs:   cfg.Addrs,
		dataDir: cfg.DataDir,
		done:    make(chan struct{}),
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.addrs == nil {
		m.addrs = func() []netip.Addr { return nil }
	}

	switch {
	case cfg.CertFile != "" || cfg.KeyFile != "":
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, errors.New("certs: CertFile and KeyFile must be set together")
		}
		m.user = &userFiles{certPath: cfg.CertFile, keyPath: cfg.KeyFile}
		if err := m.reloadUser(); err != nil {
			return nil, err
		}
	case cfg.DataDir == "":
		return nil, errors.New("certs: DataDir is required to issue a certificate")
	default:
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("certs: %w", err)
		}
		hosts, err := normalizeHosts(cfg.Hosts)
		if err != nil {
			return nil, fmt.Errorf("certs: Hosts: %w", err)
		}
		saved, err := loadHosts(m.hostsPath())
		if err != nil {
			return nil, err
		}
		m.saved = saved
		m.hosts = union(hosts, saved)

		ca, err := findCA(cfg.CAROOT, filepath.Join(cfg.DataDir, "ca"), m.now(), m.log)
		if err != nil {
			return nil, err
		}
		m.ca = ca
		if left := ca.cert.NotAfter.Sub(m.now()); left < renewBefore {
			m.log.Warn("certs: CA expires soon; phones will stop trusting Matinee",
				"ca", ca.path, "not_after", ca.cert.NotAfter)
		}
		m.loadLeaf()
		if err := m.renew(); err != nil {
			return nil, err
		}
	}

	interval := cfg.CheckInterval
	if interval <= 0 {
		interval = defaultCheckInterval
	}
	ctx, m.stop = context.WithCancel(ctx)
	go m.run(ctx, interval)
	return m, nil
}

// Close stops the periodic check and waits for it to end. It is safe to
// call more than once.
func (m *Manager) Close() error {
	m.stop()
	<-m.done
	return nil
}

func (m *Manager) run(ctx context.Context, every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.check(); err != nil {
				m.log.Warn("certs: check failed; still serving the previous certificate", "err", err)
			}
		}
	}
}

// check brings the served certificate up to date: a new leaf if the
// current one no longer fits, or the user's files if they changed.
func (m *Manager) check() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.user != nil {
		return m.reloadUser()
	}
	return m.renew()
}

// GetCertificate returns the current certificate; it fits
// tls.Config.GetCertificate. Every handshake sees the latest swap.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := m.cert.Load()
	if c == nil {
		return nil, errors.New("certs: no certificate")
	}
	return c, nil
}

// TLSConfig returns a new server configuration that serves the current
// certificate.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.GetCertificate,
	}
}

// CAPEM returns the CA certificate in PEM form, for phones to install, or
// nil when serving a user-supplied certificate.
func (m *Manager) CAPEM() []byte {
	if m.ca == nil {
		return nil
	}
	return bytes.Clone(m.ca.pem)
}

// Info describes the served certificate and where its trust comes from.
func (m *Manager) Info() Info {
	var in Info
	if m.ca != nil {
		in.CASource = m.ca.source
		in.CAPath = m.ca.path
		in.CertPath = m.leafPath()
	} else {
		in.CASource = SourceUser
		in.CertPath = m.user.certPath
	}
	if c := m.cert.Load(); c != nil && c.Leaf != nil {
		in.DNSNames = slices.Clone(c.Leaf.DNSNames)
		for _, ip := range c.Leaf.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok {
				in.IPs = append(in.IPs, a.Unmap())
			}
		}
		in.NotAfter = c.Leaf.NotAfter
	}
	return in
}

// AddHosts adds DNS names or IP addresses to the certificate, remembers
// them in DataDir/hosts.json for later starts, and issues a new leaf if
// the current one does not cover them.
func (m *Manager) AddHosts(hosts ...string) error {
	if m.ca == nil {
		return ErrNoCA
	}
	add, err := normalizeHosts(hosts)
	if err != nil {
		return fmt.Errorf("certs: add hosts: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	saved := union(m.saved, add)
	if len(saved) != len(m.saved) {
		if err := saveHosts(m.hostsPath(), saved); err != nil {
			return err
		}
		m.saved = saved
		m.hosts = union(m.hosts, add)
	}
	return m.renew()
}

func (m *Manager) hostsPath() string   { return filepath.Join(m.dataDir, "hosts.json") }
func (m *Manager) leafPath() string    { return filepath.Join(m.dataDir, "leaf.pem") }
func (m *Manager) leafKeyPath() string { return filepath.Join(m.dataDir, "leaf-key.pem") }

// userFiles tracks a user-supplied certificate so it is read again only
// when it changes.
type userFiles struct {
	certPath, keyPath string
	stamp             string // sizes and times of both files at the last read
}

func (m *Manager) reloadUser() error {
	u := m.user
	stamp, err := fileStamp(u.certPath, u.keyPath)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if stamp == u.stamp {
		return nil
	}
	// Remember the attempt even if it fails, so a broken file is reported
	// once, not on every check.
	u.stamp = stamp
	c, err := tls.LoadX509KeyPair(u.certPath, u.keyPath)
	if err == nil {
		err = ensureLeaf(&c)
	}
	if err != nil {
		return fmt.Errorf("certs: load %s: %w", u.certPath, err)
	}
	m.cert.Store(&c)
	m.log.Info("certs: loaded certificate", "cert", u.certPath,
		"dns", c.Leaf.DNSNames, "ips", c.Leaf.IPAddresses, "not_after", c.Leaf.NotAfter)
	if m.now().After(c.Leaf.NotAfter) {
		m.log.Warn("certs: user certificate has expired", "cert", u.certPath, "not_after", c.Leaf.NotAfter)
	}
	return nil
}

func fileStamp(paths ...string) (string, error) {
	var b bytes.Buffer
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}
