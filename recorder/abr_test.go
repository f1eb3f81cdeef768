package recorder_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder"
	"github.com/matinee-dev/matinee/sfu"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var rungs = []struct {
	rid  string
	w, h int
}{{"q", 320, 180}, {"h", 640, 360}, {"f", 1280, 720}}

// simulcastH264 publishes three H.264 encodings (rid q, h, f) of the
// flash-beep picture at three sizes into router, as a browser's
// simulcast screen share.
type simulcastH264 struct {
	pc   *webrtc.PeerConnection
	stop chan struct{}
	wg   sync.WaitGroup
}

// oneShow is a room's media as these tests give the recorder: the
// router, whose one video producer (the test's share) is the stage's
// show. The stage rule itself is room's, and tested there.
type oneShow struct{ *sfu.Router }

func (s oneShow) OnStage(f func(video, audio *sfu.Producer, show bool)) (cancel func()) {
	var mu sync.Mutex
	stopped := false
	tell := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		var v *sfu.Producer
		for _, p := range s.Producers() {
			if p.Kind() == sfu.KindVideo {
				v = p
			}
		}
		f(v, nil, v != nil)
	}
	cancelNew := s.OnNewProducer(func(p *sfu.Producer) {
		p.OnClose(tell)
		tell()
	})
	tell()
	return func() {
		cancelNew()
		mu.Lock()
		stopped = true
		mu.Unlock()
	}
}

// newTestRouter is a router of a worker of its own, closed with the test.
func newTestRouter(t *testing.T, name string) *sfu.Router {
	t.Helper()
	w, err := sfu.NewWorker(context.Background(), sfu.WorkerConfig{UDPPort: 0, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	router, err := w.NewRouter(name)
	if err != nil {
		t.Fatal(err)
	}
	return router
}

func publishSimulcastH264(t *testing.T, router *sfu.Router) *simulcastH264 {
	t.Helper()
	api, err := mediatest.H264API()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	sp := &simulcastH264{pc: pc, stop: make(chan struct{})}
	var tracks []*webrtc.TrackLocalStaticRTP
	var aus [][][]byte
	dir := t.TempDir()
	for _, r := range rungs {
		tr, err := webrtc.NewTrackLocalStaticRTP(mediatest.H264Codec, "video", "screen", webrtc.WithRTPStreamID(r.rid))
		if err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, tr)
		v, _ := mediatest.FlashBeep(t, dir, r.w, r.h, 1)
		aus = append(aus, mediatest.ReadH264(t, v))
	}
	sender, err := pc.AddTrack(tracks[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range tracks[1:] {
		if err := sender.AddEncoding(tr); err != nil {
			t.Fatal(err)
		}
	}
	var str *sfu.SendTransport
	var mu sync.Mutex
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		mu.Lock()
		tr := str
		mu.Unlock()
		if c == nil || tr == nil {
			return
		}
		j := c.ToJSON()
		_ = tr.AddICECandidate(&sfu.ICECandidate{Candidate: j.Candidate, SDPMid: j.SDPMid, SDPMLineIndex: j.SDPMLineIndex})
	})
	tr, err := router.NewSendTransport(sfu.TransportOptions{Owner: "sharer",
		OnICECandidate: func(c *sfu.ICECandidate) {
			if c != nil {
				_ = pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	str = tr
	mu.Unlock()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	mid := pc.GetTransceivers()[0].Mid()
	answer, _, err := tr.Publish(offer.SDP, map[string]sfu.TrackInfo{mid: {AppData: map[string]any{"source": "screen"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	var midID, ridID uint8
	for _, x := range sender.GetParameters().HeaderExtensions {
		switch x.URI {
		case "urn:ietf:params:rtp-hdrext:sdes:mid":
			midID = uint8(x.ID)
		case "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id":
			ridID = uint8(x.ID)
		}
	}
	for i := range rungs {
		sp.wg.Add(2)
		go func() {
			defer sp.wg.Done()
			sp.send(tracks[i], aus[i], mid, rungs[i].rid, midID, ridID)
		}()
		go func() {
			defer sp.wg.Done()
			for {
				if _, _, err := sender.ReadSimulcastRTCP(rungs[i].rid); err != nil {
					return
				}
			}
		}()
	}
	return sp
}

func (sp *simulcastH264) send(tr *webrtc.TrackLocalStaticRTP, aus [][]byte, mid, rid string, midID, ridID uint8) {
	var pay codecs.H264Payloader
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	seq, ts := uint16(1000), uint32(5000)
	for i := 0; ; i++ {
		select {
		case <-sp.stop:
			return
		case <-tick.C:
		}
		payloads := pay.Payload(1200, aus[i%len(aus)])
		for j, p := range payloads {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: j == len(payloads)-1}, Payload: p}
			_ = pkt.Header.SetExtension(midID, []byte(mid))
			_ = pkt.Header.SetExtension(ridID, []byte(rid))
			_ = tr.WriteRTP(pkt)
			seq++
		}
		ts += 3000
	}
}

func (sp *simulcastH264) close() {
	close(sp.stop)
	_ = sp.pc.Close()
	sp.wg.Wait()
}

// TestSimulcastLadder records an H.264 simulcast share to HLS: the master
// playlist lists three variants whose segments are the three sizes.
func TestSimulcastLadder(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	router := newTestRouter(t, "abr")
	sp := publishSimulcastH264(t, router)
	defer sp.close()
	m := recorder.NewManager(recorder.Config{Dir: t.TempDir(), MinFreeBytes: 1, StopFreeBytes: 1})
	defer m.Close()
	rec, err := m.Start("abr", oneShow{router}, recorder.Options{Formats: []string{"hls"}, NoAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for rec.Info().Duration < 8 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	rec.Stop("test over")
	info := rec.Info()
	if info.Duration < 8 || info.Error != "" {
		t.Fatalf("info %+v", info)
	}
	dir := filepath.Join(m.HLSDir("abr", rec.ID()))
	master, err := os.ReadFile(filepath.Join(dir, "index.m3u8"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("master playlist:\n%s", master)
	re := regexp.MustCompile(`#EXT-X-STREAM-INF:BANDWIDTH=(\d+),RESOLUTION=(\d+x\d+)[^\n]*\n(\S+)`)
	found := re.FindAllStringSubmatch(string(master), -1)
	if len(found) != 3 {
		t.Fatalf("%d variants in the master playlist", len(found))
	}
	var sizes []string
	for _, f := range found {
		sizes = append(sizes, f[2])
		if f[1] == "0" || f[1] == "1" {
			t.Errorf("variant %s has no bandwidth", f[3])
		}
		pl := filepath.Join(dir, filepath.FromSlash(f[3]))
		seg := filepath.Join(filepath.Dir(pl), "seg-00001.ts")
		p := mediatest.ProbeFile(t, seg)
		if v := p.Video(); v == nil || fmt.Sprintf("%dx%d", v.Width, v.Height) != f[2] {
			t.Errorf("%s: segment is %+v, master says %s", f[3], v, f[2])
		}
		if e := mediatest.DecodeErrors(t, pl); e != "" {
			t.Errorf("%s: decode errors:\n%s", f[3], e)
		}
		if b, _ := os.ReadFile(pl); !strings.Contains(string(b), "#EXT-X-ENDLIST") {
			t.Errorf("%s not finished", f[3])
		}
	}
	sort.Strings(sizes)
	if strings.Join(sizes, " ") != "1280x720 320x180 640x360" {
		t.Errorf("variant sizes %v", sizes)
	}
}

// TestStopsWhenDiskFills: a recording refuses to start on a full disk,
// and a running one stops cleanly (playlist finished, FLV readable) when
// free space runs out.
func TestStopsWhenDiskFills(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	router := newTestRouter(t, "disk")
	var mu sync.Mutex
	free := uint64(10 << 30)
	setFree := func(n uint64) { mu.Lock(); free = n; mu.Unlock() }
	m := recorder.NewManager(recorder.Config{Dir: t.TempDir(), MinFreeBytes: 1 << 30, StopFreeBytes: 100 << 20,
		FreeSpace: func(string) (uint64, error) { mu.Lock(); defer mu.Unlock(); return free, nil }})
	defer m.Close()
	setFree(500 << 20)
	if _, err := m.Start("disk", oneShow{router}, recorder.Options{NoAudio: true}); !errors.Is(err, recorder.ErrNoSpace) {
		t.Fatalf("start on a nearly full disk: %v", err)
	}
	setFree(10 << 30)
	sp := publishSimulcastH264(t, router)
	defer sp.close()
	rec, err := m.Start("disk", oneShow{router}, recorder.Options{Formats: []string{"flv", "hls"}, NoAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for rec.Info().Duration < 3 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	setFree(50 << 20)
	select {
	case <-rec.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("recording did not stop on a full disk")
	}
	in := rec.Info()
	if in.Reason != "disk full" || in.State != recorder.StateStopped || !strings.Contains(in.Error, "free") {
		t.Fatalf("info %+v", in)
	}
	dir := filepath.Join(m.HLSDir("disk", rec.ID()), "..")
	if b, _ := os.ReadFile(filepath.Join(m.HLSDir("disk", rec.ID()), "v0", "index.m3u8")); !strings.Contains(string(b), "#EXT-X-ENDLIST") {
		t.Errorf("playlist not finished:\n%s", b)
	}
	if p := mediatest.ProbeFile(t, filepath.Join(dir, recorder.FLVName)); p.Codecs() != "h264" || p.Duration() < 2.5 {
		t.Errorf("flv: %s %.2f", p.Codecs(), p.Duration())
	}
}
