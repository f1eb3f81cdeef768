package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"time"
)

// File names inside a CA directory; the same as mkcert's so that
// `CAROOT=<DataDir>/ca mkcert -install` trusts Matinee's CA on a desktop.
const (
	caCertFile = "rootCA.pem"
	caKeyFile  = "rootCA-key.pem"
)

// backdate moves NotBefore into the past because phones' clocks are not
// exactly right, and a certificate from "the future" is rejected.
const backdate = time.Hour

type authority struct {
	cert   *x509.Certificate
	key    crypto.Signer
	pem    []byte
	path   string // the certificate file
	source Source
}

// findCA picks the CA to sign with: an explicit CAROOT (which must be
// complete), else mkcert's CA if the user has one, else Matinee's own in
// ownDir, created on first use.
func findCA(explicit, ownDir string, now time.Time, log *slog.Logger) (*authority, error) {
	if explicit != "" {
		ca, err := readCA(explicit, SourceMkcert)
		if err != nil {
			return nil, fmt.Errorf("certs: CAROOT: %w", err)
		}
		return ca, nil
	}
	if dir := mkcertRoot(); dir != "" {
		ca, err := readCA(dir, SourceMkcert)
		switch {
		case err == nil:
			return ca, nil
		case errors.Is(err, fs.ErrNotExist) && !exists(filepath.Join(dir, caCertFile)):
			// No mkcert CA: the common case.
		default:
			// mkcert's CA is present but cannot sign, typically rootCA.pem
			// copied without its key. Say so, since the user probably
			// expected phones that trust it to trust Matinee.
			log.Warn("certs: ignoring unusable mkcert CA", "caroot", dir, "err", err)
		}
	}
	if exists(filepath.Join(ownDir, caCertFile)) {
		// Never replace an existing CA behind the user's back: phones
		// trust it. A broken one is an error to fix by hand.
		ca, err := readCA(ownDir, SourceMatinee)
		if err != nil {
			return nil, fmt.Errorf("certs: %w", err)
		}
		return ca, nil
	}
	ca, err := createCA(ownDir, now)
	if err != nil {
		return nil, fmt.Errorf("certs: create CA: %w", err)
	}
	log.Info("certs: created local CA; install it on phones to trust Matinee", "ca", ca.path)
	return ca, nil
}

// mkcertRoot is where mkcert keeps its CA on this system, following
// mkcert's own rules: $CAROOT, else a per-user data directory.
func mkcertRoot() string {
	if dir := os.Getenv("CAROOT"); dir != "" {
		return dir
	}
	var base string
	switch {
	case runtime.GOOS == "windows":
		base = os.Getenv("LOCALAPPDATA")
	case os.Getenv("XDG_DATA_HOME") != "":
		base = os.Getenv("XDG_DATA_HOME")
	default:
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		if runtime.GOOS == "darwin" {
			base = filepath.Join(home, "Library", "Application Support")
		} else {
			base = filepath.Join(home, ".local", "share")
		}
	}
	if base == "" {
		return ""
	}
	return filepath.Join(base, "mkcert")
}

func readCA(dir string, source Source) (*authority, error) {
	certPath := filepath.Join(dir, caCertFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate", certPath)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: CA certificate may not sign certificates", certPath)
	}
	keyPath := filepath.Join(dir, caKeyFile)
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if !samePublicKey(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match %s", keyPath, certPath)
	}
	return &authority{cert: cert, key: key, pem: certPEM, path: certPath, source: source}, nil
}

func createCA(dir string, now time.Time) (*authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// MkdirAll leaves an existing directory alone; this one holds the key
	// every phone trusts.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	who := userAndHost()
	notBefore := now.Add(-backdate)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization:       []string{"Matinee local CA"},
			OrganizationalUnit: []string{truncate(who, 64)},
			// The name phones show in their list of trusted roots, so it
			// says whose machine it came from.
			CommonName: truncate("Matinee "+who, 64),
		},
		NotBefore:             notBefore,
		NotAfter:              notBefore.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Only leaves below this CA: a stolen key cannot mint
		// intermediates.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return nil, err
	}
	certPEM := certToPEM(der)
	// Key first: a crash in between leaves a key without a certificate,
	// which the next start overwrites, never a certificate without a key.
	certPath := filepath.Join(dir, caCertFile)
	if err := writeFileAtomic(filepath.Join(dir, caKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, pem: certPEM, path: certPath, source: SourceMatinee}, nil
}

// userAndHost names this machine's user the way mkcert does, so a phone
// owner can tell several local CAs apart.
func userAndHost() string {
	s := "matinee"
	if u, err := user.Current(); err == nil && u.Username != "" {
		s = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		s += "@" + h
	}
	return s
}

// truncate keeps s within the X.520 upper bound of n characters, which
// strict parsers enforce.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
