package e2e

import (
	"context"
	"errors"
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server/servertest"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/config"
)

// streamKeyView is what the host's stream-key panel shows.
type streamKeyView struct {
	Shown bool   `json:"shown"`
	URL   string `json:"url"`
	Key   string `json:"key"`
	Text  string `json:"text"`
}

const streamKeyJS = `({shown: !document.getElementById('stream-key-shown').hidden,
  url: document.getElementById('stream-key-url').value, key: document.getElementById('stream-key-key').value,
  text: document.getElementById('stream-key').innerText})`

// stageVideoJS reports the stage's video: its size and decoded frames.
const stageVideoJS = `(() => { const v = document.querySelector('.tile.on-stage [data-testid=remote-video]');
  if (!v) return {w: -1, frames: 0, paused: true};
  return {w: v.videoWidth, frames: v.getVideoPlaybackQuality().totalVideoFrames, paused: v.paused}; })()`

// TestStreamKeyFromRoomSettings: a host makes an RTMP stream key in the
// room's settings (over its WebSocket, no token), ffmpeg publishes with
// it, the guest's stage plays it, and Revoke cuts the publisher off.
func TestStreamKeyFromRoomSettings(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg is missing (Debian package ffmpeg); this test never skips in CI")
		}
		t.Skip("ffmpeg not installed (Debian package ffmpeg)")
	}
	ts := startTestServer(t, func(c *config.Config) {
		// The URLs handed out name loopback, so ffmpeg publishes there.
		c.PublicURL = "https://127.0.0.1"
	}, servertest.WithRTMP())

	var rm struct {
		ID string `json:"id"`
	}
	api(t, ts, http.MethodPost, "/api/rooms", map[string]any{"name": "Stage"}, &rm)
	link := ts.URL + "/r/" + rm.ID
	b := newBrowser(t)
	// The first to join by the plain link is the host: no token on the page.
	host := joinAs(t, b, "Hana", link)
	waitJoined(t, host, 10*time.Second)
	waitRole(t, host, "Hana", "host")
	guest := joinAs(t, b, "Gus", link)
	waitJoined(t, guest, 10*time.Second)
	waitRole(t, guest, "Gus", "guest")

	var guestSees bool
	guest.mustEval(t, `!document.getElementById('room-controls').hidden`, &guestSees)
	if guestSees {
		t.Error("a guest sees the room settings (and the stream key button)")
	}
	var refused string
	guest.mustEval(t, `window.__matinee.client.request('createStreamKey', {}).then(() => 'made', (e) => e.message)`, &refused)
	if !strings.Contains(refused, "only the host") {
		t.Errorf("a guest's createStreamKey: %q", refused)
	}

	host.mustEval(t, `document.querySelector('[data-testid=stream-key-make]').click(), true`, nil)
	var sk streamKeyView
	testenv.EventuallyState(t, 10*time.Second, "the host's page shows a stream key", func() (bool, string) {
		_ = host.eval(streamKeyJS, &sk)
		return sk.Shown && sk.Key != "", fmt.Sprintf("%+v", sk)
	})
	if want := ts.RTMPURL; sk.URL != want {
		t.Fatalf("Server %q, want %q", sk.URL, want)
	}
	if !regexp.MustCompile(`^live_[0-9a-f]{32}$`).MatchString(sk.Key) {
		t.Fatalf("stream key %q", sk.Key)
	}
	for _, want := range []string{"CBR", "Keyframe Interval 2 s", "B-frames 0"} {
		if !strings.Contains(sk.Text, want) {
			t.Errorf("the panel does not say %q:\n%s", want, sk.Text)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
		"-t", "20", "-c:v", "libx264", "-bf", "0", "-g", "30", "-f", "flv", sk.URL+"/"+sk.Key)
	var pubErr strings.Builder
	pub.Stderr = &pubErr
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- pub.Wait() }()
	defer func() {
		cancel()
		<-exited
	}()

	// The guest's stage plays it: a picture, and frames being decoded.
	var first struct {
		W      int  `json:"w"`
		Frames int  `json:"frames"`
		Paused bool `json:"paused"`
	}
	took := testenv.EventuallyState(t, 20*time.Second, "the RTMP stream plays on the guest's stage", func() (bool, string) {
		_ = guest.eval(stageVideoJS, &first)
		return first.W == 320 && first.Frames > 0 && !first.Paused, fmt.Sprintf("%+v", first)
	})
	t.Logf("stage playing %v after ffmpeg started", took)
	testenv.EventuallyState(t, 5*time.Second, "the guest keeps decoding frames", func() (bool, string) {
		var now struct {
			Frames int `json:"frames"`
		}
		_ = guest.eval(stageVideoJS, &now)
		return now.Frames >= first.Frames+15, fmt.Sprintf("frames %d, then %d", first.Frames, now.Frames)
	})

	// Revoke cuts the publisher off, long before its 20 s end.
	host.mustEval(t, `document.querySelector('[data-testid=stream-key-revoke]').click(), true`, nil)
	select {
	case err := <-exited:
		exited <- err // for the deferred wait
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("ffmpeg after revoke: %v (want it cut off)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ffmpeg still publishing 10 s after Revoke; stderr: %s", pubErr.String())
	}
	testenv.EventuallyState(t, 5*time.Second, "the host's panel offers a new key", func() (bool, string) {
		_ = host.eval(streamKeyJS, &sk)
		return !sk.Shown && sk.Key == "", fmt.Sprintf("%+v", sk)
	})
	if _, _, ok := ts.Rooms().LookupStreamKey(sk.Key); ok {
		t.Error("the revoked key still publishes")
	}
}
