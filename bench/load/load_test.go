package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/bench/internal/loadpeer"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLoadSmoke runs the generator briefly against an in-process server
// with both kinds of subscribers, so it keeps working.
func TestLoadSmoke(t *testing.T) {
	for _, via := range []string{"whep", "ws"} {
		t.Run(via, func(t *testing.T) {
			o := options{inproc: true, room: "smoke", subs: 2, via: via, duration: 2 * time.Second, warmup: 2 * time.Second}
			if err := run(o, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
				t.Fatal(err)
			}
		})
	}
	if err := checkLoopback("http://192.0.2.1:8080"); err == nil {
		t.Error("a non-loopback target was accepted")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkForwardPC measures the whole forwarding path through real pion
// PeerConnections with SRTP on loopback: one publisher's 1,100-byte
// packets through the SFU to 1, 10 and 100 WHEP subscribers. An Opus
// track carries them, so the bandwidth allocator (which would suspend
// video sent far above its estimate) stays out of the way; the SFU does
// the same work per packet as for video.
//
// ns/copy is wall time per delivered copy at a paced input rate;
// cpu-ns/copy is this process's CPU per copy, which includes the
// publisher's send (once per packet) and every subscriber's receive and
// decryption (once per copy), so it overstates the SFU's own share: the
// load generator measures the SFU alone, in its own process.
func BenchmarkForwardPC(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) { benchForward(b, n) })
	}
}

func benchForward(b *testing.B, subs int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	base, key, closeSrv, err := startInProcess(ctx, "127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer closeSrv()
	api, err := testpeer.NewAPI(testpeer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "bench")
	if err != nil {
		b.Fatal(err)
	}
	pub, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var pcs []*webrtc.PeerConnection
	defer func() {
		for _, pc := range append(pcs, pub) {
			_ = pc.Close()
		}
		wg.Wait()
	}()
	tr, err := pub.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		b.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if _, _, err := tr.Sender().ReadRTCP(); err != nil {
				return
			}
		}
	}()
	offer, err := loadpeer.GatheredOffer(pub)
	if err != nil {
		b.Fatal(err)
	}
	ps, err := whip.Offer(ctx, nil, base+"/whip/bench", key, offer)
	if err != nil {
		b.Fatal(err)
	}
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ps.Answer}); err != nil {
		b.Fatal(err)
	}

	got := make([]atomic.Int64, subs)
	for i := 0; i < subs; i++ {
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			b.Fatal(err)
		}
		pcs = append(pcs, pc)
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			b.Fatal(err)
		}
		cnt := &got[i]
		pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 1500)
				for {
					if _, _, err := t.Read(buf); err != nil {
						return
					}
					cnt.Add(1)
				}
			}()
		})
		offer, err := loadpeer.GatheredOffer(pc)
		if err != nil {
			b.Fatal(err)
		}
		s, err := whip.Offer(ctx, nil, base+"/whep/bench", key, offer)
		if err != nil {
			b.Fatal(err)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.Answer}); err != nil {
			b.Fatal(err)
		}
	}
	total := func() int64 {
		var t int64
		for i := range got {
			t += got[i].Load()
		}
		return t
	}
	payload := make([]byte, 1100)
	for i := range payload {
		payload[i] = byte(rand.UintN(256))
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(rand.UintN(1 << 16)), Timestamp: rand.Uint32()}, Payload: payload}
	send := func() {
		pkt.SequenceNumber++
		pkt.Timestamp += 960
		_ = track.WriteRTP(pkt)
	}
	// Until every subscriber receives: ICE, DTLS, then the first packets.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for i := range got {
			if got[i].Load() == 0 {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("subscribers did not all receive within 30 s")
		}
		send()
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)

	// Paced input: about 20,000 copies a second, at most 2,000 packets.
	rate := min(2000, 20000/subs)
	per := time.Second / time.Duration(rate)
	before := total()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	b.ResetTimer()
	next := time.Now()
	for i := 0; i < b.N; i++ {
		send()
		next = next.Add(per)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
	want := before + int64(b.N*subs)
	wait := time.Now().Add(2 * time.Second)
	for total() < want && time.Now().Before(wait) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&ms1)
	copies := float64(total() - before)
	if copies <= 0 {
		b.Fatal("nothing delivered")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/copies, "ns/copy")
	b.ReportMetric(float64(cpu.Nanoseconds())/copies, "cpu-ns/copy")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/copies, "allocs/copy")
	b.ReportMetric(100*(1-copies/float64(b.N*subs)), "loss%")
}
