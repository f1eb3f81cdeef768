package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// isolate keeps the tests away from a real mkcert CA on the machine:
// $CAROOT, which wins over mkcert's default location, is an empty dir.
func isolate(t *testing.T) {
	t.Setenv("CAROOT", t.TempDir())
}

// addrs is a changeable Config.Addrs.
type addrs struct {
	mu sync.Mutex
	a  []netip.Addr
}

func (a *addrs) set(ss ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.a = a.a[:0]
	for _, s := range ss {
		a.a = append(a.a, netip.MustParseAddr(s))
	}
}

func (a *addrs) get() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.a)
}

// clock is a changeable Config.Now.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) jumpTo(t time.Time)      { c.offset.Store(int64(time.Until(t))) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func start(t *testing.T, cfg Config) *Manager {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	m, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func served(t *testing.T, m *Manager) *x509.Certificate {
	t.Helper()
	c, err := m.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

func verify(caPEM []byte, leaf *x509.Certificate, host string) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("CA PEM not accepted")
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		DNSName:   host,
		Roots:     pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestFirstStart(t *testing.T) {
	isolate(t)
	dir := filepath.Join(t.TempDir(), "data")
	var lan addrs
	lan.set("192.0.2.10", "2001:db8::10", "fe80::1%eth0")
	m := start(t, Config{DataDir: dir, Addrs: lan.get, Hosts: []string{"Cinema.Example.Test.", "198.51.100.7"}})

	if runtime.GOOS != "windows" {
		for path, want := range map[string]fs.FileMode{
			dir:                                  0o700,
			filepath.Join(dir, "ca"):             0o700,
			filepath.Join(dir, "ca", caKeyFile):  0o600,
			filepath.Join(dir, "ca", caCertFile): 0o644,
			filepath.Join(dir, "leaf-key.pem"):   0o600,
			filepath.Join(dir, "leaf.pem"):       0o644,
		} {
			if got := mode(t, path); got != want {
				t.Errorf("mode of %s = %v, want %v", path, got, want)
			}
		}
	}

	caCert, err := parseCertPEM(m.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	if !caCert.IsCA || !caCert.MaxPathLenZero || caCert.MaxPathLen != 0 || caCert.KeyUsage != x509.KeyUsageCertSign {
		t.Errorf("CA constraints: IsCA=%v MaxPathLen=%d zero=%v KeyUsage=%v",
			caCert.IsCA, caCert.MaxPathLen, caCert.MaxPathLenZero, caCert.KeyUsage)
	}
	if k, ok := caCert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", caCert.PublicKey)
	}
	if got := caCert.Subject.Organization; !slices.Equal(got, []string{"Matinee local CA"}) {
		t.Errorf("CA O = %q", got)
	}
	if ou := caCert.Subject.OrganizationalUnit; len(ou) != 1 || !strings.Contains(ou[0], "@") ||
		!strings.Contains(caCert.Subject.CommonName, ou[0]) {
		t.Errorf("CA OU = %q, CN = %q; want user@host in both", ou, caCert.Subject.CommonName)
	}
	if years := caCert.NotAfter.Sub(caCert.NotBefore).Hours() / 24 / 365; years < 9.9 || years > 10.1 {
		t.Errorf("CA validity %.2f years, want 10", years)
	}

	leaf := served(t, m)
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("leaf key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("leaf ExtKeyUsage = %v", leaf.ExtKeyUsage)
	}
	if v := leaf.NotAfter.Sub(leaf.NotBefore); v >= 825*24*time.Hour || v < 800*24*time.Hour {
		t.Errorf("leaf validity %v, want a little under 825 days", v)
	}
	if !leaf.NotBefore.Before(time.Now().Add(-time.Minute)) {
		t.Errorf("leaf NotBefore %v is not in the past", leaf.NotBefore)
	}

	wantDNS := append([]string{"localhost", "cinema.example.test"}, hostnameSANs()...)
	wantIPs := []string{"127.0.0.1", "::1", "192.0.2.10", "2001:db8::10", "198.51.100.7"}
	for _, n := range wantDNS {
		if !slices.Contains(leaf.DNSNames, n) {
			t.Errorf("leaf DNSNames %q lack %q", leaf.DNSNames, n)
		}
	}
	for _, s := range wantIPs {
		if !slices.ContainsFunc(leaf.IPAddresses, func(ip net.IP) bool { return ip.String() == s }) {
			t.Errorf("leaf IPs %v lack %s", leaf.IPAddresses, s)
		}
	}
	if len(leaf.IPAddresses) != len(wantIPs) {
		t.Errorf("leaf IPs %v, want exactly %v (no link-local)", leaf.IPAddresses, wantIPs)
	}
	if h, _ := os.Hostname(); len(hostnameSANs()) == 0 {
		t.Logf("hostname %q is not a valid DNS name; not in the certificate", h)
	}

	for _, host := range append(wantDNS, wantIPs...) {
		if err := verify(m.CAPEM(), leaf, host); err != nil {
			t.Errorf("verify %s: %v", host, err)
		}
	}
	if err := verify(m.CAPEM(), leaf, "192.0.2.11"); err == nil {
		t.Error("leaf verifies for an address it was not issued for")
	}

	info := m.Info()
	if info.CASource != SourceMatinee || info.CAPath != filepath.Join(dir, "ca", caCertFile) ||
		info.CertPath != filepath.Join(dir, "leaf.pem") || !info.NotAfter.Equal(leaf.NotAfter) ||
		!slices.Equal(info.DNSNames, leaf.DNSNames) || len(info.IPs) != len(wantIPs) {
		t.Errorf("Info = %+v", info)
	}
	onDisk, err := os.ReadFile(info.CAPath)
	if err != nil || !bytes.Equal(onDisk, m.CAPEM()) {
		t.Errorf("CAPEM differs from %s (%v)", info.CAPath, err)
	}
}

func TestSecondStartReuses(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	var lan addrs
	lan.set("192.0.2.10")
	cfg := Config{DataDir: dir, Addrs: lan.get}

	first := start(t, cfg)
	caPEM, leaf := first.CAPEM(), served(t, first)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, "leaf.pem"))
	if err != nil {
		t.Fatal(err)
	}

	second := start(t, cfg)
	if !bytes.Equal(second.CAPEM(), caPEM) {
		t.Error("second start made a new CA")
	}
	if got := served(t, second); got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("second start issued leaf %v, want the first one %v", got.SerialNumber, leaf.SerialNumber)
	}
	after, err := os.ReadFile(filepath.Join(dir, "leaf.pem"))
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("leaf.pem rewritten (%v)", err)
	}
}

func TestAddressChangeReissues(t *testing.T) {
	isolate(t)
	var lan addrs
	lan.set("192.0.2.10")
	m := start(t, Config{DataDir: t.TempDir(), Addrs: lan.get})
	old := served(t, m)

	if err := m.check(); err != nil {
		t.Fatal(err)
	}
	if served(t, m) != old {
		t.Fatal("check re-issued although nothing changed")
	}

	lan.set("192.0.2.10", "10.20.30.40")
	if err := m.check(); err != nil {
		t.Fatal(err)
	}
	leaf := served(t, m)
	if leaf == old {
		t.Fatal("new address did not re-issue")
	}
	if err := verify(m.CAPEM(), leaf, "10.20.30.40"); err != nil {
		t.Error(err)
	}

	// Losing an address keeps the leaf: no churn when Wi-Fi flaps.
	lan.set("10.20.30.40")
	if err := m.check(); err != nil {
		t.Fatal(err)
	}
	if served(t, m) != leaf {
		t.Error("losing an address re-issued")
	}
}

func TestPeriodicCheck(t *testing.T) {
	isolate(t)
	var lan addrs
	m := start(t, Config{DataDir: t.TempDir(), Addrs: lan.get, CheckInterval: 5 * time.Millisecond})
	lan.set("203.0.113.5")
	deadline := time.Now().Add(10 * time.Second)
	for verify(m.CAPEM(), served(t, m), "203.0.113.5") != nil {
		if time.Now().After(deadline) {
			t.Fatal("periodic check did not pick up the new address")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNearExpiryReissues(t *testing.T) {
	isolate(t)
	var clk clock
	m := start(t, Config{DataDir: t.TempDir(), Now: clk.now})
	old := served(t, m)

	clk.jumpTo(old.NotAfter.Add(-renewBefore - time.Hour))
	if err := m.check(); err != nil {
		t.Fatal(err)
	}
	if served(t, m) != old {
		t.Fatal("re-issued more than 30 days before expiry")
	}

	clk.advance(2 * time.Hour)
	if err := m.check(); err != nil {
		t.Fatal(err)
	}
	leaf := served(t, m)
	if leaf == old || !leaf.NotAfter.After(old.NotAfter) {
		t.Fatalf("leaf not renewed: NotAfter %v, was %v", leaf.NotAfter, old.NotAfter)
	}
	if err := leaf.CheckSignatureFrom(m.ca.cert); err != nil {
		t.Error(err)
	}
}

// makeMkcertCA writes a CA to dir the way mkcert does: rootCA.pem and a
// PKCS#8 rootCA-key.pem (mkcert's own CA key is RSA).
func makeMkcertCA(t *testing.T, dir string, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{Organization: []string{"mkcert development CA"}, CommonName: "mkcert test@box"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, caCertFile), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(filepath.Join(dir, caKeyFile), keyPEM, 0o400); err != nil {
		t.Fatal(err)
	}
	return certPEM
}

func TestMkcertCAROOT(t *testing.T) {
	isolate(t)
	caroot := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := makeMkcertCA(t, caroot, key)
	dataDir := t.TempDir()
	var lan addrs
	lan.set("192.0.2.10")
	m := start(t, Config{DataDir: dataDir, CAROOT: caroot, Addrs: lan.get})

	caCert, err := parseCertPEM(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf := served(t, m)
	if !bytes.Equal(leaf.RawIssuer, caCert.RawSubject) {
		t.Errorf("leaf issuer %v, want mkcert CA %v", leaf.Issuer, caCert.Subject)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "192.0.2.10"} {
		if err := verify(caPEM, leaf, host); err != nil {
			t.Errorf("verify %s against mkcert CA: %v", host, err)
		}
	}
	if !bytes.Equal(m.CAPEM(), caPEM) {
		t.Error("CAPEM is not the mkcert CA")
	}
	if in := m.Info(); in.CASource != SourceMkcert || in.CAPath != filepath.Join(caroot, caCertFile) {
		t.Errorf("Info = %+v", in)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "ca")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("own CA created although mkcert's was used (%v)", err)
	}
}

func TestMkcertFromEnv(t *testing.T) {
	caroot := t.TempDir()
	t.Setenv("CAROOT", caroot)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := makeMkcertCA(t, caroot, key)
	m := start(t, Config{DataDir: t.TempDir()})
	if m.Info().CASource != SourceMkcert {
		t.Errorf("source = %s, want mkcert", m.Info().CASource)
	}
	if err := verify(caPEM, served(t, m), "localhost"); err != nil {
		t.Error(err)
	}
}

func TestMkcertRootLocation(t *testing.T) {
	t.Setenv("CAROOT", "/somewhere/ca")
	if got := mkcertRoot(); got != "/somewhere/ca" {
		t.Errorf("with $CAROOT: %q", got)
	}
	t.Setenv("CAROOT", "")
	if runtime.GOOS == "windows" {
		t.Setenv("LOCALAPPDATA", `C:\Users\u\AppData\Local`)
		if got, want := mkcertRoot(), filepath.Join(`C:\Users\u\AppData\Local`, "mkcert"); got != want {
			t.Errorf("mkcertRoot = %q, want %q", got, want)
		}
		return
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", "")
	want := filepath.Join(home, ".local", "share", "mkcert")
	if runtime.GOOS == "darwin" {
		want = filepath.Join(home, "Library", "Application Support", "mkcert")
	}
	if got := mkcertRoot(); got != want {
		t.Errorf("mkcertRoot = %q, want %q", got, want)
	}
	t.Setenv("XDG_DATA_HOME", "/xdg")
	if got := mkcertRoot(); got != filepath.Join("/xdg", "mkcert") {
		t.Errorf("with $XDG_DATA_HOME: %q", got)
	}
}

func TestCAErrors(t *testing.T) {
	isolate(t)
	ctx := t.Context()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	if _, err := New(ctx, Config{DataDir: t.TempDir(), CAROOT: t.TempDir(), Logger: quiet}); err == nil {
		t.Error("explicit CAROOT without a CA: no error")
	}

	// A half mkcert CA (no key) is skipped in favour of Matinee's own.
	half := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	makeMkcertCA(t, half, key)
	if err := os.Remove(filepath.Join(half, caKeyFile)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CAROOT", half)
	m := start(t, Config{DataDir: t.TempDir(), Logger: quiet})
	if m.Info().CASource != SourceMatinee {
		t.Errorf("source = %s, want matinee", m.Info().CASource)
	}

	// Matinee's own CA is never replaced silently.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ca"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca", caCertFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Config{DataDir: dir, Logger: quiet}); err == nil {
		t.Error("broken own CA: no error")
	}

	if _, err := New(ctx, Config{Logger: quiet}); err == nil {
		t.Error("no DataDir: no error")
	}
	if _, err := New(ctx, Config{CertFile: "x.pem", Logger: quiet}); err == nil {
		t.Error("CertFile without KeyFile: no error")
	}
}

func TestCAChangeReissues(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	own := start(t, Config{DataDir: dir})
	ownLeaf := served(t, own)
	own.Close()

	caroot := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caPEM := makeMkcertCA(t, caroot, key)
	m := start(t, Config{DataDir: dir, CAROOT: caroot})
	leaf := served(t, m)
	if leaf.SerialNumber.Cmp(ownLeaf.SerialNumber) == 0 {
		t.Fatal("kept a leaf signed by another CA")
	}
	if err := verify(caPEM, leaf, "localhost"); err != nil {
		t.Error(err)
	}
}

func TestAddHosts(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	m := start(t, Config{DataDir: dir})
	if err := m.AddHosts("Screen.Example.Test", "[2001:db8::99]", "192.0.2.99"); err != nil {
		t.Fatal(err)
	}
	leaf := served(t, m)
	for _, h := range []string{"screen.example.test", "2001:db8::99", "192.0.2.99"} {
		if err := verify(m.CAPEM(), leaf, h); err != nil {
			t.Errorf("verify %s: %v", h, err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "hosts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f hostsFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if want := []string{"screen.example.test", "2001:db8::99", "192.0.2.99"}; !slices.Equal(f.Hosts, want) {
		t.Errorf("hosts.json = %q, want %q", f.Hosts, want)
	}

	if err := m.AddHosts("screen.example.test"); err != nil {
		t.Fatal(err)
	}
	if served(t, m) != leaf {
		t.Error("adding a covered host re-issued")
	}
	if err := m.AddHosts("not a host"); err == nil {
		t.Error("invalid host accepted")
	}
	m.Close()

	// The saved hosts are wanted on the next start, so the leaf is kept.
	again := start(t, Config{DataDir: dir})
	if got := served(t, again); got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Error("restart re-issued although the saved hosts were covered")
	}
}

// writeUserCert makes a self-signed certificate like one a user might
// bring, for the given name.
func writeUserCert(t *testing.T, dir, name string) (certPath, keyPath string, der []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(90 * 24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, certToPEM(der), 0o644); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, der
}

func TestUserCert(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	certPath, keyPath, der := writeUserCert(t, dir, "sfu.example.test")
	dataDir := t.TempDir()
	m := start(t, Config{DataDir: dataDir, CertFile: certPath, KeyFile: keyPath})

	c, err := m.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Certificate[0], der) {
		t.Error("served certificate is not the user's")
	}
	if m.CAPEM() != nil {
		t.Error("CAPEM not nil for a user certificate")
	}
	if err := m.AddHosts("x.example.test"); !errors.Is(err, ErrNoCA) {
		t.Errorf("AddHosts = %v, want ErrNoCA", err)
	}
	if in := m.Info(); in.CASource != SourceUser || in.CAPath != "" || in.CertPath != certPath ||
		!slices.Equal(in.DNSNames, []string{"sfu.example.test"}) {
		t.Errorf("Info = %+v", in)
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("DataDir holds %v, want nothing", entries)
	}

	// A renewed file is picked up by the next check.
	_, _, der2 := writeUserCert(t, dir, "sfu.example.test")
	future := time.Now().Add(time.Minute)
	for _, p := range []string{certPath, keyPath} {
		if err := os.Chtimes(p, future, future); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.check(); err != nil {
		t.Fatal(err)
	}
	if c, _ := m.GetCertificate(nil); !bytes.Equal(c.Certificate[0], der2) {
		t.Error("renewed user certificate not served")
	}

	// A broken renewal keeps the old certificate.
	if err := os.WriteFile(certPath, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.check(); err == nil {
		t.Error("broken user certificate: no error")
	}
	if c, _ := m.GetCertificate(nil); !bytes.Equal(c.Certificate[0], der2) {
		t.Error("broken renewal replaced the served certificate")
	}
}

func TestMobileConfig(t *testing.T) {
	isolate(t)
	m := start(t, Config{DataDir: t.TempDir()})
	caCert, err := parseCertPEM(m.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	out, err := MobileConfig(m.CAPEM(), `Matinee <on> "box"`)
	if err != nil {
		t.Fatal(err)
	}

	// Walk the plist: every <key> is followed by its value element.
	dec := xml.NewDecoder(bytes.NewReader(out))
	var (
		values  = map[string][]string{}
		stack   []string
		lastKey string
		text    strings.Builder
	)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, out)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			stack = append(stack, tok.Name.Local)
			text.Reset()
		case xml.CharData:
			text.Write(tok)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			switch tok.Name.Local {
			case "key":
				lastKey = text.String()
			case "string", "data", "integer":
				values[lastKey] = append(values[lastKey], strings.TrimSpace(text.String()))
			}
		}
	}
	if !bytes.Contains(out, []byte(`<plist version="1.0">`)) {
		t.Error("no plist root")
	}
	if got := values["PayloadType"]; !slices.Equal(got, []string{"com.apple.security.root", "Configuration"}) {
		t.Errorf("PayloadType = %q", got)
	}
	if got := values["PayloadContent"]; len(got) != 1 {
		t.Fatalf("PayloadContent data = %q", got)
	} else if der, err := base64.StdEncoding.DecodeString(got[0]); err != nil || !bytes.Equal(der, caCert.Raw) {
		t.Errorf("PayloadContent is not the CA's DER (%v)", err)
	}
	if got := values["PayloadDisplayName"]; len(got) != 2 || got[0] != `Matinee <on> "box"` {
		t.Errorf("PayloadDisplayName = %q", got)
	}
	uuidRE := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-8[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	uuids := values["PayloadUUID"]
	if len(uuids) != 2 || uuids[0] == uuids[1] || !uuidRE.MatchString(uuids[0]) || !uuidRE.MatchString(uuids[1]) {
		t.Errorf("PayloadUUID = %q", uuids)
	}
	ids := values["PayloadIdentifier"]
	if len(ids) != 2 || !regexp.MustCompile(`^dev\.matinee\.ca\.[0-9a-f]{16}$`).MatchString(ids[1]) ||
		!strings.HasPrefix(ids[0], ids[1]+".") {
		t.Errorf("PayloadIdentifier = %q", ids)
	}

	again, err := MobileConfig(m.CAPEM(), `Matinee <on> "box"`)
	if err != nil || !bytes.Equal(again, out) {
		t.Error("MobileConfig is not stable")
	}
	_, _, userDER := writeUserCert(t, t.TempDir(), "leaf.example.test")
	if _, err := MobileConfig(certToPEM(userDER), ""); err == nil {
		t.Error("MobileConfig accepted a non-CA certificate")
	}
	if _, err := MobileConfig([]byte("nope"), ""); err == nil {
		t.Error("MobileConfig accepted garbage")
	}
}

func TestTLSHandshake(t *testing.T) {
	isolate(t)
	var lan addrs
	m := start(t, Config{DataDir: t.TempDir(), Addrs: lan.get})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(c, c)
			})
		}
	})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(m.CAPEM())
	handshake := func(serverName string) (*x509.Certificate, error) {
		d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: serverName}}
		c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if _, err := c.Write([]byte("x")); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return nil, err
		}
		return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
	}
	for _, name := range []string{"localhost", "127.0.0.1", ""} {
		if _, err := handshake(name); err != nil {
			t.Errorf("handshake with ServerName %q: %v", name, err)
		}
	}
	if _, err := handshake("elsewhere.example.test"); err == nil {
		t.Error("handshake for a name not in the certificate succeeded")
	}

	// A re-issued leaf is served to the next handshake, no restart.
	if err := m.AddHosts("late.example.test"); err != nil {
		t.Fatal(err)
	}
	got, err := handshake("late.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(served(t, m)) {
		t.Error("handshake did not get the new leaf")
	}
}

func TestNormalizeHost(t *testing.T) {
	good := map[string]string{
		"Example.COM.":     "example.com",
		"  box.local ":     "box.local",
		"*.lan.example":    "*.lan.example",
		"old_name.corp":    "old_name.corp",
		"192.168.1.2":      "192.168.1.2",
		"::ffff:10.0.0.1":  "10.0.0.1",
		"[fd00::1]":        "fd00::1",
		"169.254.1.2":      "169.254.1.2",
		"xn--bcher-kva.de": "xn--bcher-kva.de",
	}
	for in, want := range good {
		if got, err := normalizeHost(in); err != nil || got != want {
			t.Errorf("normalizeHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0.0.0.0", "::", "224.0.0.1", "fe80::1%eth0", "a b", "-a.com", "a..b", "*.lan", "a.*.b",
		"1.2.3", "bücher.de", strings.Repeat("a", 64) + ".com"} {
		if got, err := normalizeHost(in); err == nil {
			t.Errorf("normalizeHost(%q) = %q, want an error", in, got)
		}
	}
}

func TestCloseTwiceAndCanceledContext(t *testing.T) {
	isolate(t)
	ctx, cancel := context.WithCancel(t.Context())
	m, err := New(ctx, Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Config{DataDir: t.TempDir()}); err == nil {
		t.Error("New with a canceled context succeeded")
	}
}
