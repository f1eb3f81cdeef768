package lan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/pion/webrtc/v4"
)

// phoneEnv carries a phoneJob to the child process.
const phoneEnv = "MATINEE_LAN_PHONE"

// phoneMain is the phone: TestMain runs it instead of the tests in the
// child process that runPhone starts inside the phone's network
// namespace. It prints one result line.
func phoneMain() {
	raw := os.Getenv(phoneEnv)
	var job phoneJob
	res := phoneResult{}
	err := json.Unmarshal([]byte(raw), &job)
	if err == nil {
		switch job.Mode {
		case "trust":
			err = phoneTrust(job, &res)
		case "media":
			err = phoneMedia(job, &res)
		case "watch":
			err = phoneWatch(job, &res)
		default:
			err = fmt.Errorf("unknown mode %q", job.Mode)
		}
	}
	if err != nil {
		res.Err = err.Error()
	}
	b, _ := json.Marshal(res)
	fmt.Printf("\n%s%s\n", resultPrefix, b)
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// fetchCA downloads the CA over plain HTTP, as a phone that does not
// trust the server yet does, and returns a pool holding it alone.
func fetchCA(job phoneJob) (*x509.CertPool, *x509.Certificate, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + hostPort(job.Host, job.HTTPPort) + "/ca.crt")
	if err != nil {
		return nil, nil, fmt.Errorf("fetch /ca.crt over plain HTTP: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-x509-ca-cert" {
		return nil, nil, fmt.Errorf("/ca.crt: %s, %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		return nil, nil, errors.New("/ca.crt holds no PEM certificate")
	}
	var ca *x509.Certificate
	if blk, _ := pem.Decode(body); blk != nil {
		ca, _ = x509.ParseCertificate(blk.Bytes)
	}
	if ca == nil || !ca.IsCA {
		return nil, nil, errors.New("/ca.crt is not a CA certificate")
	}
	return pool, ca, nil
}

// phoneTrust fetches the CA over plain HTTP, then verifies the HTTPS
// certificate for the server's LAN address against that CA alone.
func phoneTrust(job phoneJob, res *phoneResult) error {
	pool, ca, err := fetchCA(job)
	if err != nil {
		return err
	}
	res.CAName = ca.Subject.CommonName
	// The TLS client verifies the chain to this pool and the address in
	// the certificate's IP SANs: no InsecureSkipVerify anywhere.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", hostPort(job.Host, job.HTTPSPort), &tls.Config{RootCAs: pool})
	if err != nil {
		return fmt.Errorf("TLS to %s with only the downloaded CA: %w", job.Host, err)
	}
	st := conn.ConnectionState()
	_ = conn.Close()
	if len(st.VerifiedChains) == 0 {
		return errors.New("no verified chain")
	}
	leaf := st.PeerCertificates[0]
	if err := leaf.VerifyHostname(job.Host); err != nil {
		return err
	}
	res.Verified = job.Host
	// And a page over HTTPS, as a browser would load it.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + hostPort(job.Host, job.HTTPSPort) + "/r/test")
	if err != nil {
		return fmt.Errorf("room page over HTTPS: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("room page: %s", resp.Status)
	}
	// The plain listener shows the help page and sends the rest to HTTPS.
	plain := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = plain.Get("http://" + hostPort(job.Host, job.HTTPPort) + "/r/test")
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	res.Redirect = resp.Header.Get("Location")
	resp, err = plain.Get("http://" + hostPort(job.Host, job.HTTPPort) + "/help/trust")
	if err != nil {
		return err
	}
	help, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	// The page shows the fingerprint of the very CA the phone downloaded.
	sum := sha256.Sum256(ca.Raw)
	fp := strings.ToUpper(hex.EncodeToString(sum[:]))
	var colon []string
	for i := 0; i < len(fp); i += 2 {
		colon = append(colon, fp[i:i+2])
	}
	res.HelpOK = resp.StatusCode == 200 && bytes.Contains(help, []byte("Certificate Trust Settings")) &&
		bytes.Contains(help, []byte(strings.Join(colon, ":")))
	return nil
}

// phoneMedia publishes a video track and watches it with a second peer,
// both from the phone, over wss:// trusted through the downloaded CA.
func phoneMedia(job phoneJob, res *phoneResult) error {
	pool, _, err := fetchCA(job)
	if err != nil {
		return err
	}
	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: &tls.Config{RootCAs: pool}}
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if job.TCP {
		networks = append(networks, webrtc.NetworkTypeTCP4)
	}
	api, err := testpeer.NewAPI(testpeer.Options{Interfaces: []string{job.Interface}, NetworkTypes: networks})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wsURL := "wss://" + hostPort(job.Host, job.HTTPSPort) + "/ws"
	policy := webrtc.ICETransportPolicyAll
	if job.Relay {
		policy = webrtc.ICETransportPolicyRelay
	}

	pub, err := testpeer.DialWith(ctx, dialer, wsURL, api)
	if err != nil {
		return fmt.Errorf("publisher: dial %s: %w", wsURL, err)
	}
	defer pub.Close()
	pub.ICETransportPolicy = policy
	if _, err := pub.Join(ctx, job.Room, "phone-pub"); err != nil {
		return fmt.Errorf("publisher: join: %w", err)
	}
	for _, s := range pub.ICEServers {
		b, _ := json.Marshal(s)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		res.ICEServers = append(res.ICEServers, m)
	}
	src, err := testpeer.NewVideoSource("video", "phone")
	if err != nil {
		return err
	}
	tr := &testpeer.Track{Track: src.Track, AppData: map[string]any{"source": "screen"}}
	prods, err := pub.Publish(ctx, tr)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if len(prods) != 1 {
		return fmt.Errorf("publish: %d producers", len(prods))
	}
	stop := make(chan struct{})
	srcDone := make(chan struct{})
	go func() { defer close(srcDone); src.Run(stop, 30) }()
	go src.ServeRTCP(tr.Sender)
	defer func() { close(stop); <-srcDone }()

	sub, err := testpeer.DialWith(ctx, dialer, wsURL, api)
	if err != nil {
		return fmt.Errorf("subscriber: dial: %w", err)
	}
	defer sub.Close()
	sub.ICETransportPolicy = policy
	sinks := make(chan *testpeer.Sink, 1)
	sub.OnTrack = func(tr *webrtc.TrackRemote, _ testpeer.Consumer) { sinks <- testpeer.NewSink(tr) }
	if _, err := sub.Join(ctx, job.Room, "phone-sub"); err != nil {
		return fmt.Errorf("subscriber: join: %w", err)
	}
	if err := sub.StartReceiving(ctx); err != nil {
		return err
	}
	if _, err := sub.Subscribe(ctx, prods[0].ID); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	var sink *testpeer.Sink
	select {
	case sink = <-sinks:
	case <-ctx.Done():
		return fmt.Errorf("no track reached the subscriber (publisher ICE %s, subscriber ICE %s)",
			pub.Send.ICEConnectionState(), sub.Recv.ICEConnectionState())
	}
	// Two seconds of video, about 150 packets.
	for len(sink.Got()) < 150 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("subscriber got only %d packets", len(sink.Got()))
		case <-time.After(50 * time.Millisecond):
		}
	}
	got, sent := sink.Got(), src.Sent()
	res.Sent, res.Received = len(sent), len(got)
	seen := map[string]bool{}
	for _, p := range sent {
		seen[string(p.Payload)] = true
	}
	for _, p := range got {
		if seen[string(p.Payload)] {
			res.Matching++
		}
	}
	res.Pub = selectedPair(pub.Send)
	res.Sub = selectedPair(sub.Recv)
	res.Candidates = append(pub.RemoteCandidates(), sub.RemoteCandidates()...)
	return nil
}

// selectedPair describes pc's selected candidate pair; the relay
// candidate's TURN transport comes from the stats.
func selectedPair(pc *webrtc.PeerConnection) pairInfo {
	p := testpeer.SelectedPair(pc)
	if p == nil {
		return pairInfo{}
	}
	info := pairInfo{
		LocalType: p.Local.Typ.String(), LocalProto: p.Local.Protocol.String(),
		RemoteType: p.Remote.Typ.String(), RemoteProto: p.Remote.Protocol.String(),
		RemoteAddr: p.Remote.Address, RemotePort: int(p.Remote.Port), RemoteTCPType: p.Remote.TCPType,
	}
	if ps, ok := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePairStats(); ok {
		if s, ok := pc.GetStats()[ps.LocalCandidateID].(webrtc.ICECandidateStats); ok {
			info.RelayProto = s.RelayProtocol
		}
	}
	return info
}
