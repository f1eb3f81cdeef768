package dtlskeys

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// connect runs a real DTLS-SRTP handshake over loopback UDP and returns
// both ends' connections and the server-side capture.
func connect(t *testing.T, suite dtls.CipherSuiteID, profile dtls.SRTPProtectionProfile) (server, client *dtls.Conn, capt *Capture) {
	t.Helper()
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	capt = &Capture{}
	cfg := func() *dtls.Config {
		return &dtls.Config{
			Certificates:           []tls.Certificate{cert},
			InsecureSkipVerify:     true,
			CipherSuites:           []dtls.CipherSuiteID{suite},
			SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{profile},
			ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		}
	}
	scfg := cfg()
	scfg.KeyLogWriter = capt
	scfg.ServerHelloMessageHook = capt.ServerHello
	server, err = dtls.Server(a, b.LocalAddr(), scfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err = dtls.Client(b, a.LocalAddr(), cfg())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close(); _ = client.Close(); _ = a.Close(); _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- server.HandshakeContext(ctx) }()
	if err := client.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return server, client, capt
}

func TestKeysMatchExporter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		suite   dtls.CipherSuiteID
		profile dtls.SRTPProtectionProfile
	}{
		{"gcm-sha256", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM},
		{"cm-sha256", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		{"gcm256-sha384", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.SRTP_AEAD_AES_256_GCM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client, capt := connect(t, tc.suite, tc.profile)
			keys, err := capt.Keys()
			if err != nil {
				t.Fatal(err)
			}
			if keys.Profile != srtp.ProtectionProfile(tc.profile) {
				t.Fatalf("profile %v, want %v", keys.Profile, tc.profile)
			}
			keyLen, _ := keys.Profile.KeyLen()
			saltLen, _ := keys.Profile.SaltLen()
			n := 2*keyLen + 2*saltLen
			st, _ := server.ConnectionState()
			want, err := st.ExportKeyingMaterial(exporterLabel, nil, n)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(keys.Key, want[keyLen:2*keyLen]) || !bytes.Equal(keys.Salt, want[2*keyLen+saltLen:]) {
				t.Fatalf("derived server key/salt differ from the exporter's")
			}
			if !bytes.Equal(keys.PeerKey, want[:keyLen]) || !bytes.Equal(keys.PeerSalt, want[2*keyLen:2*keyLen+saltLen]) {
				t.Fatalf("derived client key/salt differ from the exporter's")
			}
			// And what the server encrypts with them, the client's
			// decryption context (built as pion builds it) accepts.
			cst, _ := client.ConnectionState()
			cm, err := cst.ExportKeyingMaterial(exporterLabel, nil, n)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := srtp.CreateContext(keys.Key, keys.Salt, keys.Profile)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := srtp.CreateContext(cm[keyLen:2*keyLen], cm[2*keyLen+saltLen:], keys.Profile)
			if err != nil {
				t.Fatal(err)
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, Timestamp: 9, SSRC: 0x1234}, Payload: []byte("media payload")}
			raw, _ := pkt.Marshal()
			ct, err := enc.EncryptRTP(nil, raw, nil)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := dec.DecryptRTP(nil, ct, nil)
			if err != nil {
				t.Fatalf("client cannot decrypt: %v", err)
			}
			if !bytes.Equal(pt, raw) {
				t.Fatal("decrypted packet differs")
			}
			// The other way: SRTCP the client encrypts (with its half, as
			// pion does), the server's context from PeerKey decrypts.
			cenc, err := srtp.CreateContext(cm[:keyLen], cm[2*keyLen:2*keyLen+saltLen], keys.Profile)
			if err != nil {
				t.Fatal(err)
			}
			sdec, err := srtp.CreateContext(keys.PeerKey, keys.PeerSalt, keys.Profile)
			if err != nil {
				t.Fatal(err)
			}
			rr, _ := (&rtcp.ReceiverReport{SSRC: 0x99, Reports: []rtcp.ReceptionReport{{SSRC: 0x1234, FractionLost: 12}}}).Marshal()
			sct, err := cenc.EncryptRTCP(nil, rr, nil)
			if err != nil {
				t.Fatal(err)
			}
			spt, err := sdec.DecryptRTCP(nil, sct, nil)
			if err != nil {
				t.Fatalf("server cannot decrypt the client's srtcp: %v", err)
			}
			if !bytes.Equal(spt, rr) {
				t.Fatal("decrypted rtcp differs")
			}
		})
	}
}

func TestKeysNotServer(t *testing.T) {
	c := &Capture{}
	if _, err := c.Keys(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("before the handshake: %v", err)
	}
	_, _ = c.Write([]byte("CLIENT_RANDOM " + string(bytes.Repeat([]byte("ab"), 32)) + " " + string(bytes.Repeat([]byte("cd"), 48)) + "\n"))
	if _, err := c.Keys(); !errors.Is(err, ErrNotServer) {
		t.Fatalf("client side: %v", err)
	}
}
