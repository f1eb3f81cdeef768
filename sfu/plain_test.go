package sfu

import (
	"bytes"
	"context"
	"github.com/matinee-dev/matinee/internal/ntp"
	"github.com/matinee-dev/matinee/internal/testenv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

var plainH264 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}

func newPlainRouter(t testing.TB) *Router {
	t.Helper()
	w, err := NewWorker(context.Background(), WorkerConfig{UDPPort: 0, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	r, err := w.NewRouter("plain-" + t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func udp(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// read returns the next datagram, or nil after d.
func read(c *net.UDPConn, d time.Duration) []byte {
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// TestPlainTransportRoundTrip: RTP into a plain producer comes out of a
// plain consumer intact, starting on a keyframe; sender reports go both
// ways; the receiver's PLI reaches the sender; closing the router closes
// the transports.
func TestPlainTransportRoundTrip(t *testing.T) {
	r := newPlainRouter(t)
	in, err := r.NewPlainTransport(PlainTransportOptions{Owner: "ffmpeg", RTCPMux: true, Comedia: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := in.Produce(PlainProduceOptions{Kind: KindVideo, Codec: plainH264, PayloadType: 96, AppData: map[string]any{"source": "file"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Produce(PlainProduceOptions{Kind: KindVideo, Codec: plainH264, PayloadType: 96}); err == nil {
		t.Error("second producer with the same payload type accepted")
	}
	if _, err := in.Produce(PlainProduceOptions{Kind: KindVideo, Codec: webrtc.RTPCodecCapability{MimeType: "video/H265", ClockRate: 90000}, PayloadType: 97}); err == nil {
		t.Error("H.265 accepted")
	}
	out, err := r.NewPlainTransport(PlainTransportOptions{Owner: "rx"})
	if err != nil {
		t.Fatal(err)
	}
	rx := udp(t)
	rxRTCP := udp(t)
	if err := out.Connect(rx.LocalAddr().(*net.UDPAddr), rxRTCP.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	c, err := out.Consume(p)
	if err != nil {
		t.Fatal(err)
	}
	sdp := out.SDP()
	for _, want := range []string{"m=video " + strconv.Itoa(rx.LocalAddr().(*net.UDPAddr).Port) + " RTP/AVP 102", "a=rtpmap:102 H264/90000", "packetization-mode=1"} {
		if !strings.Contains(sdp, want) {
			t.Errorf("sdp lacks %q:\n%s", want, sdp)
		}
	}
	closed := make(chan struct{})
	in.OnClose(func() { close(closed) })

	tx := udp(t)
	dst, _ := in.Tuple()
	const ssrc = 0x11223344
	send := func(seq uint16, ts uint32, payload []byte) {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc, Marker: true}, Payload: payload}).Marshal()
		if _, err := tx.WriteToUDP(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	// A delta frame first (dropped: consumers start on a keyframe), then
	// a keyframe and more.
	send(10, 1000, []byte{0x41, 1, 2, 3})
	frames := [][]byte{{0x65, 9, 9, 9}, {0x41, 4, 5}, {0x41, 6, 7}}
	for i, f := range frames {
		send(uint16(11+i), uint32(4000+3000*i), f)
	}
	var got []*rtp.Packet
	for len(got) < len(frames) {
		b := read(rx, 2*time.Second)
		if b == nil {
			t.Fatalf("received %d of %d packets", len(got), len(frames))
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		got = append(got, &pkt)
	}
	for i, pkt := range got {
		if !bytes.Equal(pkt.Payload, frames[i]) || pkt.PayloadType != 102 || pkt.SSRC != c.ssrc {
			t.Fatalf("packet %d: pt %d ssrc %x payload % x", i, pkt.PayloadType, pkt.SSRC, pkt.Payload)
		}
		if i > 0 && (pkt.SequenceNumber != got[i-1].SequenceNumber+1 || pkt.Timestamp-got[i-1].Timestamp != 3000) {
			t.Fatalf("packet %d not continuous", i)
		}
	}

	// The sender's report reaches the producer; the consumer reports too.
	sr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.SenderReport{SSRC: ssrc, NTPTime: ntp.From(time.Now()), RTPTime: 4000 + 6000}})
	if _, err := tx.WriteToUDP(sr, dst); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(4 * time.Second)
	gotSR := false
	for !gotSR && time.Now().Before(deadline) {
		b := read(rxRTCP, time.Second)
		pkts, err := rtcp.Unmarshal(b)
		if err != nil {
			continue
		}
		for _, pk := range pkts {
			if s, ok := pk.(*rtcp.SenderReport); ok && s.SSRC == c.ssrc && s.PacketCount == 3 {
				gotSR = true
			}
		}
	}
	if !gotSR {
		t.Fatal("no sender report from the consumer")
	}

	// A PLI from the receiver reaches the sender, for the sender's SSRC
	// (within the coalescing interval of an earlier request, at its end).
	pli, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: c.ssrc}})
	outRTP, outRTCP := out.Tuple()
	if outRTP.Port == outRTCP.Port {
		t.Fatal("rtcp not on its own port without RTCPMux")
	}
	if _, err := rxRTCP.WriteToUDP(pli, outRTCP); err != nil {
		t.Fatal(err)
	}
	gotPLI := false
	deadline = time.Now().Add(DefaultKeyframeInterval + 3*time.Second)
	for !gotPLI && time.Now().Before(deadline) {
		pkts, err := rtcp.Unmarshal(read(tx, time.Second))
		if err != nil {
			continue
		}
		for _, pk := range pkts {
			if pl, ok := pk.(*rtcp.PictureLossIndication); ok && pl.MediaSSRC == ssrc {
				gotPLI = true
			}
		}
	}
	if !gotPLI {
		t.Fatal("the receiver's PLI did not reach the sender")
	}

	consumerClosed := make(chan struct{})
	c.OnClose(func() { close(consumerClosed) })
	r.Close()
	for _, ch := range []chan struct{}{closed, consumerClosed} {
		select {
		case <-ch:
		case <-time.After(3 * time.Second):
			t.Fatal("closing the router did not close the plain transport")
		}
	}
	out.Close()
}

// TestPlainTransportWithFFmpeg: ffmpeg sends H.264 over RTP into a plain
// producer; a plain consumer sends it on to a second ffmpeg that reads
// the transport's SDP and saves what it receives.
func TestPlainTransportWithFFmpeg(t *testing.T) {
	ff, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg not installed")
		}
		t.Skip("ffmpeg not installed")
	}
	r := newPlainRouter(t)
	in, err := r.NewPlainTransport(PlainTransportOptions{Owner: "ffmpeg", RTCPMux: true, Comedia: true})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p, err := in.Produce(PlainProduceOptions{Kind: KindVideo, Codec: plainH264, PayloadType: 96})
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.NewPlainTransport(PlainTransportOptions{Owner: "rx"})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// A free even port pair for the receiving ffmpeg, below the
	// ephemeral range that other sockets take ports from.
	port := testenv.FreeUDPPair(t)
	if err := out.Connect(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Consume(p); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sdpPath := filepath.Join(dir, "in.sdp")
	if err := os.WriteFile(sdpPath, []byte(out.SDP()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(dir, "got.mkv")
	recv := exec.Command(ff, "-hide_banner", "-nostdin", "-v", "error", "-protocol_whitelist", "file,udp,rtp", "-i", sdpPath, "-t", "3", "-c", "copy", "-y", got)
	recv.Stderr = os.Stderr
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = recv.Process.Kill(); _ = recv.Wait() }()
	time.Sleep(500 * time.Millisecond)
	dst, _ := in.Tuple()
	send := exec.Command(ff, "-hide_banner", "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "6",
		"-c:v", "libx264", "-profile:v", "baseline", "-g", "15", "-bf", "0", "-pix_fmt", "yuv420p", "-bsf:v", "dump_extra",
		"-f", "rtp", "-payload_type", "96", "rtp://"+dst.String()+"?pkt_size=1200")
	send.Stderr = os.Stderr
	if err := send.Run(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- recv.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("receiving ffmpeg: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("receiving ffmpeg did not finish")
	}
	fp, _ := exec.LookPath("ffprobe")
	info, err := exec.Command(fp, "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", got).Output()
	if err != nil || strings.TrimSpace(string(info)) != "h264,320,240" {
		t.Fatalf("received %q (%v)", info, err)
	}
}
