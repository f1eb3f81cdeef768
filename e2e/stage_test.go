package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/internal/testpeer"
)

// TestStageFollowsRoom: the tile a page puts big is the room's stage as
// the server announces it. Publishers are pion peers; the page belongs
// to Ana, who publishes nothing. A camera alone is on stage; a screen
// share takes it; a newer share takes it from the first; when it ends,
// the first comes back; a file played into the room takes it; a pin
// outranks all of it, and unpinning gives the stage back to the room's.
func TestStageFollowsRoom(t *testing.T) {
	ts := startTestServer(t, nil)
	b := newBrowser(t)
	ana := b.newTab("ana")
	joinRoom(t, ana, ts.URL+"/r/stage", "Ana")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// publisher joins the room as name and publishes a running source.
	publisher := func(name, source string, audio bool) (c *testpeer.Client, videoID string) {
		t.Helper()
		api, err := testpeer.NewAPI(testpeer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c, err = testpeer.Dial(ctx, ts.WS, api)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if _, err := c.Join(ctx, "stage", name); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		v, _, wait, err := c.PublishRunning(ctx, stop, source, true, audio)
		if err != nil {
			close(stop)
			t.Fatal(err)
		}
		t.Cleanup(func() { close(stop); wait() })
		return c, v
	}
	onStage := func(what, key string) {
		t.Helper()
		testenv.EventuallyState(t, 10*time.Second, what, func() (bool, string) {
			var got string
			if err := ana.eval(`(() => { const e = document.querySelector('#stage-main .tile.on-stage'); return e ? e.dataset.key : 'nothing'; })()`, &got); err != nil {
				return false, err.Error()
			}
			return got == key, "on stage: " + got
		})
	}

	cam, _ := publisher("Cam", "camera", true)
	onStage("a camera alone is on stage", cam.PeerID+":user")
	first, _ := publisher("First", "screen", true)
	onStage("a share takes the stage from the camera", first.PeerID+":screen")
	second, secondVideo := publisher("Second", "screen", false)
	onStage("the newer share takes it", second.PeerID+":screen")
	if err := second.Call(ctx, "closeProducer", map[string]any{"producerId": secondVideo}, nil); err != nil {
		t.Fatal(err)
	}
	onStage("the first share comes back when the newer ends", first.PeerID+":screen")
	film, _ := publisher("Film", "file", true)
	onStage("a played file takes the stage", film.PeerID+":user")

	// Ana pins the camera (her own view): it stays big whatever the room
	// shows, until its tile goes; then the room's stage is back.
	ana.do(t, chromedp.Click(chromedp.CSS(`.tile[data-key="`+cam.PeerID+`:user"]`)))
	onStage("Ana's pin", cam.PeerID+":user")
	third, _ := publisher("Third", "screen", false)
	testenv.Eventually(t, 10*time.Second, "the new share's tile on Ana's page", func() bool {
		var n int
		_ = ana.eval(`document.querySelectorAll('.tile[data-key="`+third.PeerID+`:screen"]').length`, &n)
		return n == 1
	})
	var stageNow string
	ana.mustEval(t, `document.querySelector('#stage-main .tile.on-stage').dataset.key`, &stageNow)
	if stageNow != cam.PeerID+":user" {
		t.Fatalf("with a new share, Ana's pinned camera left the stage for %s", stageNow)
	}
	cam.Close()
	onStage("the pinned tile gone, the room's stage is back", third.PeerID+":screen")
}
