package server_test

import (
	"context"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server/servertest"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/internal/testpeer"
	"github.com/matinee-dev/matinee/recorder"
	"github.com/pion/webrtc/v4"
)

// flashBeep is test media: 1 s of H.264 and Opus that loop, a flash and a
// beep together at the start of every second.
type flashBeep struct {
	aus     [][]byte
	packets [][]byte
}

func newFlashBeep(t *testing.T, width, height int) *flashBeep {
	t.Helper()
	dir := t.TempDir()
	v, a := mediatest.FlashBeep(t, dir, width, height, 1)
	fb := &flashBeep{aus: mediatest.ReadH264(t, v), packets: mediatest.ReadOgg(t, a)}
	if len(fb.aus) != 30 {
		t.Fatalf("%d video frames in 1 s", len(fb.aus))
	}
	if len(fb.packets) > 50 {
		fb.packets = fb.packets[:50]
	}
	return fb
}

var h264Codec, opusCodec = mediatest.H264Codec, mediatest.OpusCodec

// sharer is a pion client publishing a screen share (video and audio).
type sharer struct {
	c    *testpeer.Client
	stop func()
	prod []testpeer.Producer
}

func startSharer(t *testing.T, ctx context.Context, url, room, name string, fb *flashBeep) *sharer {
	t.Helper()
	c := dialWith(t, url, h264API(t))
	if _, err := c.Join(ctx, room, name); err != nil {
		t.Fatal(err)
	}
	vt, err := webrtc.NewTrackLocalStaticSample(h264Codec, "video", name+"-screen")
	if err != nil {
		t.Fatal(err)
	}
	at, err := webrtc.NewTrackLocalStaticSample(opusCodec, "audio", name+"-screen")
	if err != nil {
		t.Fatal(err)
	}
	screen := map[string]any{"source": "screen"}
	tv, ta := &testpeer.Track{Track: vt, AppData: screen}, &testpeer.Track{Track: at, AppData: screen}
	prod, err := c.Publish(ctx, tv, ta)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*webrtc.RTPSender{tv.Sender, ta.Sender} {
		go func() {
			for {
				if _, _, err := s.ReadRTCP(); err != nil {
					return
				}
			}
		}()
	}
	loop := &mediatest.Loop{Video: vt, Audio: at, AUs: fb.aus, Packets: fb.packets}
	sh := &sharer{c: c, stop: loop.Start(), prod: prod}
	t.Cleanup(sh.stop)
	return sh
}

func h264API(t *testing.T) *webrtc.API {
	t.Helper()
	api, err := mediatest.H264API()
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func dialWith(t *testing.T, url string, api *webrtc.API) *testpeer.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := testpeer.Dial(ctx, url, api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// httpc makes no keep-alive connections, which would outlive tests.
var httpc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// api calls the admin API and decodes the JSON answer into out.
func api(t *testing.T, srvURL, key, method, path, body string, out any) int {
	t.Helper()
	return servertest.NewClient(t, srvURL, key).Call(method, path, body, out)
}

// checkRecording asserts that path is h264+aac of about want seconds that
// decodes cleanly, and (when sync) that flashes and beeps line up within
// 80 ms.
func checkRecording(t *testing.T, path string, want float64, sync bool) {
	t.Helper()
	p := mediatest.ProbeFile(t, path)
	if p.Codecs() != "h264+aac" {
		t.Errorf("%s: streams %q, want h264+aac", path, p.Codecs())
	}
	if d := p.Duration(); math.Abs(d-want) > 1 {
		t.Errorf("%s: duration %.2f s, want %.0f ± 1", path, d, want)
	} else {
		t.Logf("%s: %s, %.2f s", path, p.Codecs(), d)
	}
	if e := mediatest.DecodeErrors(t, path); e != "" {
		t.Errorf("%s: ffmpeg decode errors:\n%s", path, e)
	}
	if !sync {
		return
	}
	offs := mediatest.SyncOffsets(t, path)
	if len(offs) < int(want)-3 {
		t.Errorf("%s: only %d flash/beep pairs found in %.0f s", path, len(offs), want)
	}
	worst := 0.0
	for _, o := range offs {
		if math.Abs(o) > math.Abs(worst) {
			worst = o
		}
	}
	t.Logf("%s: %d flash/beep pairs, worst offset %+.0f ms (offsets %s)", path, len(offs), worst*1000, fmtOffsets(offs))
	if math.Abs(worst) > 0.080 {
		t.Errorf("%s: audio and video %+.0f ms apart, want within 80 ms (offsets %s)", path, worst*1000, fmtOffsets(offs))
	}
}

func fmtOffsets(o []float64) string {
	var b strings.Builder
	for _, x := range o {
		fmt.Fprintf(&b, "%+.0f ", x*1000)
	}
	return b.String()
}

// waitRecording polls a recording until cond holds.
func waitRecording(t *testing.T, srvURL, key, room, id string, within time.Duration, cond func(recorder.Info) bool) recorder.Info {
	t.Helper()
	var in recorder.Info
	testenv.EventuallyState(t, within, "recording "+id, func() (bool, string) {
		in = recorder.Info{}
		api(t, srvURL, key, "GET", "/api/rooms/"+room+"/recordings/"+id, "", &in)
		return cond(in), fmt.Sprintf("%+v", in)
	})
	return in
}
