package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server/servertest"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder"
)

// onlyCodecs makes the page's client offer only video codecs matching re
// (a JavaScript regular expression source), so Chromium sends that codec.
func onlyCodecs(re string) string {
	return `(() => {
	  const orig = RTCRtpReceiver.getCapabilities.bind(RTCRtpReceiver);
	  RTCRtpReceiver.getCapabilities = (kind) => {
	    const c = orig(kind);
	    if (c && kind === 'video') c.codecs = c.codecs.filter((x) => /` + re + `/i.test(x.mimeType));
	    return c;
	  };
	})();`
}

// TestRecordBrowserShare records a Chromium screen share, sent as H.264
// (remuxed) and as VP8 (transcoded), and checks the files.
func TestRecordBrowserShare(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	const key = "mk_e2e_recording"
	var dataDir string
	base := startServer(t, func(c *config.Config) {
		c.APIKey = key
		c.RecordMinFreeMB = 1
		dataDir = c.DataDir
	})
	b := newBrowser(t)
	for _, c := range []struct{ name, codecs, room string }{
		{"h264", `video\/(h264|rtx)`, "rec-h264"},
		{"vp8", `video\/(vp8|rtx)`, "rec-vp8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := b.newTab("sharer-" + c.name)
			a.addInitScript(t, onlyCodecs(c.codecs))
			joinRoom(t, a, base+"/r/"+c.room, "Sharer")
			a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
			var info recorder.Info
			if code := call(t, base, key, "POST", "/api/rooms/"+c.room+"/recordings", `{"formats":["flv","hls"]}`, &info); code != http.StatusCreated {
				t.Fatalf("start recording: %d", code)
			}
			testenv.EventuallyState(t, 30*time.Second, "6 s recorded", func() (bool, string) {
				var in recorder.Info
				call(t, base, key, "GET", "/api/rooms/"+c.room+"/recordings/"+info.ID, "", &in)
				return in.Duration >= 6, in.State
			})
			var final recorder.Info
			call(t, base, key, "DELETE", "/api/rooms/"+c.room+"/recordings/"+info.ID, "", &final)
			if final.Error != "" {
				t.Errorf("recording error: %s", final.Error)
			}
			dir := filepath.Join(dataDir, "recordings", c.room, info.ID)
			// The largest HLS variant carries the whole share (an H.264
			// simulcast share gives one variant per layer).
			top := filepath.Join(dir, "hls", "v0", "index.m3u8")
			for i := 2; i > 0; i-- {
				if p := filepath.Join(dir, "hls", fmt.Sprintf("v%d", i), "index.m3u8"); recFileExists(p) {
					top = p
					break
				}
			}
			// Every rung carries the whole share: one that started on a
			// later keyframe than the others lost its first segment.
			for i := 0; i < 3; i++ {
				if p := filepath.Join(dir, "hls", fmt.Sprintf("v%d", i), "index.m3u8"); recFileExists(p) {
					d := mediatest.ProbeFile(t, p).Duration()
					t.Logf("%s share: hls/v%d %.2f s", c.name, i, d)
					if d < final.Duration-1.5 {
						t.Errorf("%s share: hls/v%d is %.2f s of %.2f s recorded", c.name, i, d, final.Duration)
					}
				}
			}
			for _, f := range []string{filepath.Join(dir, recorder.FLVName), top} {
				p := mediatest.ProbeFile(t, f)
				if p.Codecs() != "h264+aac" || p.Duration() < final.Duration-1.5 {
					t.Errorf("%s: %s %.2f s (recorded %.2f s)", f, p.Codecs(), p.Duration(), final.Duration)
				}
				if e := mediatest.DecodeErrors(t, f); e != "" {
					t.Errorf("%s: decode errors:\n%s", f, e)
				}
				t.Logf("%s share: %s %s, %.2f s", c.name, strings.TrimPrefix(f, dir+"/"), p.Codecs(), p.Duration())
			}
			if e := mediatest.DecodeErrors(t, filepath.Join(dir, "hls", "index.m3u8")); e != "" {
				t.Errorf("master playlist: decode errors:\n%s", e)
			}
		})
	}
}

func recFileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func call(t *testing.T, base, key, method, path, body string, out any) int {
	t.Helper()
	return servertest.NewClient(t, base, key).Call(method, path, body, out)
}
