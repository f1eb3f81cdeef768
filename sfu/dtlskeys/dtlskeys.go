// Package dtlskeys recovers the SRTP keys of a DTLS-SRTP association
// (RFC 5764) from pion's handshake, so the SFU can encrypt its outgoing
// media itself instead of through pion's SRTP session.
//
// pion/webrtc v4.2.20 keeps a transport's SRTP keys private. What it does
// expose, through its SettingEngine, is a TLS key log writer (the master
// secret, by client random) and a hook on the ServerHello it sends (the
// server random, the cipher suite and the SRTP profile it chose). That is
// everything RFC 5705's exporter needs when this side is the DTLS server,
// which is how the SFU negotiates its receive transports. When this side is
// the client, the server random is never seen and Keys reports
// ErrNotServer.
package dtlskeys

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/srtp/v3"
)

// exporterLabel is RFC 5764 §4.2's label for SRTP keying material.
const exporterLabel = "EXTRACTOR-dtls_srtp"

// Errors Keys returns.
var (
	ErrNotServer   = errors.New("dtlskeys: this side was not the DTLS server")
	ErrIncomplete  = errors.New("dtlskeys: handshake not complete")
	ErrUnsupported = errors.New("dtlskeys: unsupported cipher suite or SRTP profile")
)

// Capture watches one DTLS handshake. Give its Write to
// SettingEngine.SetDTLSKeyLogWriter and its ServerHello to
// SettingEngine.SetDTLSServerHelloMessageHook of the PeerConnection's own
// API; use one Capture per PeerConnection.
type Capture struct {
	mu           sync.Mutex
	serverRandom [handshake.RandomLength]byte
	suite        uint16
	profile      dtls.SRTPProtectionProfile
	sawHello     bool
	clientRandom []byte
	master       []byte
}

// Keys are the SRTP keying material of both directions: Key and Salt are
// what the DTLS server (this side) encrypts its SRTP and SRTCP with,
// PeerKey and PeerSalt what the client encrypts its own with.
type Keys struct {
	Profile  srtp.ProtectionProfile
	Key      []byte
	Salt     []byte
	PeerKey  []byte
	PeerSalt []byte
}

// ServerHello records the server random, cipher suite and SRTP profile of
// the ServerHello pion is about to send, and returns it unchanged.
func (c *Capture) ServerHello(m handshake.MessageServerHello) handshake.Message {
	c.mu.Lock()
	c.serverRandom = m.Random.MarshalFixed()
	if m.CipherSuiteID != nil {
		c.suite = *m.CipherSuiteID
	}
	for _, e := range m.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
			c.profile = u.ProtectionProfiles[0]
		}
	}
	c.sawHello = true
	c.mu.Unlock()
	return &m
}

// Write takes key log lines in the NSS format pion writes
// ("CLIENT_RANDOM <hex> <hex>\n") and keeps the master secret.
func (c *Capture) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" {
			continue
		}
		cr, err1 := hex.DecodeString(string(f[1]))
		ms, err2 := hex.DecodeString(string(f[2]))
		if err1 != nil || err2 != nil || len(cr) != handshake.RandomLength {
			continue
		}
		c.mu.Lock()
		c.clientRandom, c.master = cr, ms
		c.mu.Unlock()
	}
	return len(p), nil
}

// Keys derives both directions' SRTP master keys and salts once the
// handshake has completed.
func (c *Capture) Keys() (Keys, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.sawHello {
		if c.master != nil {
			return Keys{}, ErrNotServer
		}
		return Keys{}, ErrIncomplete
	}
	if c.master == nil {
		return Keys{}, ErrIncomplete
	}
	hash, ok := prfHash(c.suite)
	if !ok {
		return Keys{}, fmt.Errorf("%w: cipher suite %#04x", ErrUnsupported, c.suite)
	}
	profile := srtp.ProtectionProfile(c.profile)
	keyLen, err := profile.KeyLen()
	if err != nil {
		return Keys{}, fmt.Errorf("%w: srtp profile %#04x", ErrUnsupported, uint16(c.profile))
	}
	saltLen, err := profile.SaltLen()
	if err != nil {
		return Keys{}, fmt.Errorf("%w: srtp profile %#04x", ErrUnsupported, uint16(c.profile))
	}
	seed := make([]byte, 0, len(exporterLabel)+2*handshake.RandomLength)
	seed = append(seed, exporterLabel...)
	seed = append(seed, c.clientRandom...)
	seed = append(seed, c.serverRandom[:]...)
	m, err := prf.PHash(c.master, seed, 2*keyLen+2*saltLen, hash)
	if err != nil {
		return Keys{}, fmt.Errorf("dtlskeys: exporter: %w", err)
	}
	// RFC 5764 §4.2: client key, server key, client salt, server salt.
	return Keys{
		Profile:  profile,
		Key:      append([]byte(nil), m[keyLen:2*keyLen]...),
		Salt:     append([]byte(nil), m[2*keyLen+saltLen:]...),
		PeerKey:  append([]byte(nil), m[:keyLen]...),
		PeerSalt: append([]byte(nil), m[2*keyLen:2*keyLen+saltLen]...),
	}, nil
}

// prfHash is the TLS 1.2 PRF hash of the cipher suites pion offers.
func prfHash(suite uint16) (prf.HashFunc, bool) {
	switch dtls.CipherSuiteID(suite) {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return sha256.New, true
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return sha512.New384, true
	}
	return nil, false
}
