package signaling_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/testpeer"
)

// stageNote is the "stage" notification's params.
type stageNote struct {
	Video *string `json:"video"`
	Audio *string `json:"audio"`
	Show  bool    `json:"show"`
}

func (s stageNote) String() string {
	id := func(p *string) string {
		if p == nil {
			return "-"
		}
		return *p
	}
	return fmt.Sprintf("%s/%s/%v", id(s.Video), id(s.Audio), s.Show)
}

// waitStage reads c's notifications until a "stage" one says want
// ("video/audio/show", "-" for none); it fails when none has by ctx's
// deadline.
func waitStage(t *testing.T, ctx context.Context, who string, c *testpeer.Client, want string) {
	t.Helper()
	var seen []string
	for {
		ev, err := c.WaitEvent(ctx, "stage")
		if err != nil {
			t.Fatalf("%s: no stage %s (was told %v): %v", who, want, seen, err)
		}
		var st stageNote
		if err := json.Unmarshal(ev.Params, &st); err != nil {
			t.Fatalf("%s: stage params %s: %v", who, ev.Params, err)
		}
		if st.String() == want {
			return
		}
		seen = append(seen, st.String())
	}
}

// publishing publishes running test sources until the test ends.
func publishing(t *testing.T, ctx context.Context, c *testpeer.Client, source string, video, audio bool) (videoID, audioID string) {
	t.Helper()
	stop := make(chan struct{})
	v, a, wait, err := c.PublishRunning(ctx, stop, source, video, audio)
	if err != nil {
		close(stop)
		t.Fatal(err)
	}
	t.Cleanup(func() { close(stop); wait() })
	return v, a
}

// TestStageNotification: the room's stage reaches members over the
// protocol, right after their join and on every change: a camera alone
// is the fallback, a screen share with its sound takes the stage from
// it, and when the share ends the stage falls back to the camera.
func TestStageNotification(t *testing.T) {
	e := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func() *testpeer.Client { return dialPeer(t, ctx, e.ws) }

	ana := dial()
	if _, err := ana.Join(ctx, "stage", "Ana"); err != nil {
		t.Fatal(err)
	}
	waitStage(t, ctx, "Ana on join", ana, "-/-/false")
	cam, mic := publishing(t, ctx, ana, "camera", true, true)
	waitStage(t, ctx, "Ana, her camera", ana, cam+"/"+mic+"/false")

	bo := dial()
	if _, err := bo.Join(ctx, "stage", "Bo"); err != nil {
		t.Fatal(err)
	}
	// The first notification after the join is the stage as it is.
	ev := <-bo.Events
	if ev.Method != "stage" || !json.Valid(ev.Params) {
		t.Fatalf("Bo's first notification after joining: %s %s, want stage", ev.Method, ev.Params)
	}
	var st stageNote
	_ = json.Unmarshal(ev.Params, &st)
	if st.String() != cam+"/"+mic+"/false" {
		t.Fatalf("Bo's stage on join: %s, want Ana's camera %s/%s/false", st, cam, mic)
	}

	screen, sound := publishing(t, ctx, bo, "screen", true, true)
	for who, c := range map[string]*testpeer.Client{"Ana": ana, "Bo": bo} {
		waitStage(t, ctx, who+", Bo's share", c, screen+"/"+sound+"/true")
	}
	if err := bo.Call(ctx, "closeProducer", map[string]any{"producerId": screen}, nil); err != nil {
		t.Fatal(err)
	}
	// Without the share, the stage falls back to the newest video (Ana's
	// camera) and the newest audio (Bo's share's sound, still published).
	for who, c := range map[string]*testpeer.Client{"Ana": ana, "Bo": bo} {
		waitStage(t, ctx, who+", the share gone", c, cam+"/"+sound+"/false")
	}
}
