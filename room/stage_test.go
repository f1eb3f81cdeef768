package room

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/sfu"
)

// fakeProducer is what the stage rule reads of a producer.
type fakeProducer struct {
	name          string
	kind          sfu.Kind
	owner, source string
}

func (p *fakeProducer) Kind() sfu.Kind { return p.kind }
func (p *fakeProducer) Owner() string  { return p.owner }
func (p *fakeProducer) AppData() any {
	if p.source == "" {
		return nil
	}
	return map[string]any{"source": p.source}
}

func TestPickStage(t *testing.T) {
	var (
		anaCam    = &fakeProducer{"anaCam", sfu.KindVideo, "ana", "camera"}
		anaMic    = &fakeProducer{"anaMic", sfu.KindAudio, "ana", "mic"}
		anaScreen = &fakeProducer{"anaScreen", sfu.KindVideo, "ana", "screen"}
		anaSound  = &fakeProducer{"anaSound", sfu.KindAudio, "ana", "screen"}
		boCam     = &fakeProducer{"boCam", sfu.KindVideo, "bo", "camera"}
		boMic     = &fakeProducer{"boMic", sfu.KindAudio, "bo", "mic"}
		boScreen  = &fakeProducer{"boScreen", sfu.KindVideo, "bo", "screen"}
		boSound   = &fakeProducer{"boSound", sfu.KindAudio, "bo", "screen"}
		film      = &fakeProducer{"film", sfu.KindVideo, "movie", "file"}
		filmSound = &fakeProducer{"filmSound", sfu.KindAudio, "movie", "file"}
		untagged  = &fakeProducer{"untagged", sfu.KindVideo, "obs", ""}
	)
	cases := []struct {
		name         string
		order        []*fakeProducer // oldest first
		video, audio *fakeProducer
		show         bool
	}{
		{"an empty room", nil, nil, nil, false},
		{"a camera alone falls back", []*fakeProducer{anaCam, anaMic}, anaCam, anaMic, false},
		{"a microphone alone", []*fakeProducer{boMic}, nil, boMic, false},
		{"an untagged video is no show", []*fakeProducer{untagged}, untagged, nil, false},
		{"newest camera and newest audio, whoever's", []*fakeProducer{anaCam, boCam, boMic, anaMic}, boCam, anaMic, false},
		{"a screen beats a newer camera", []*fakeProducer{anaScreen, anaSound, boCam, boMic}, anaScreen, anaSound, true},
		{"a share takes its owner's screen audio", []*fakeProducer{boSound, anaSound, anaScreen}, anaScreen, anaSound, true},
		{"not another's screen audio", []*fakeProducer{anaScreen, boSound}, anaScreen, nil, true},
		{"not its owner's microphone", []*fakeProducer{anaMic, anaScreen, boMic}, anaScreen, nil, true},
		{"the newest share wins", []*fakeProducer{anaScreen, anaSound, boScreen, boSound}, boScreen, boSound, true},
		{"a played file is a show", []*fakeProducer{film, filmSound, anaCam, anaMic}, film, filmSound, true},
		{"a share after the file wins", []*fakeProducer{film, filmSound, boScreen, boSound}, boScreen, boSound, true},
		{"a file after the share wins", []*fakeProducer{boScreen, boSound, film, filmSound}, film, filmSound, true},
		// What the stage becomes when a producer goes is the rule on
		// what is left, in the same order.
		{"the share gone: back to the cameras", []*fakeProducer{anaCam, anaMic, boCam}, boCam, anaMic, false},
		{"the newer share gone: back to the older", []*fakeProducer{anaScreen, anaSound, boCam}, anaScreen, anaSound, true},
		{"the share's audio gone: its video alone", []*fakeProducer{anaScreen, anaMic}, anaScreen, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, a, show := pickStage(c.order)
			if v != c.video || a != c.audio || show != c.show {
				t.Errorf("stage = %v, %v, show %v; want %v, %v, show %v", v, a, show, c.video, c.audio, c.show)
			}
		})
	}
}

func (p *fakeProducer) String() string {
	if p == nil {
		return "none"
	}
	return p.name
}

// stageLog records the stages a subscriber is told.
type stageLog struct {
	mu  sync.Mutex
	got []Stage
}

func (l *stageLog) tell(st Stage) {
	l.mu.Lock()
	l.got = append(l.got, st)
	l.mu.Unlock()
}

func (l *stageLog) last() Stage {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.got) == 0 {
		return Stage{}
	}
	return l.got[len(l.got)-1]
}

// ids writes a stage as the protocol does, "video/audio/show".
func ids(st Stage) string {
	id := func(p *sfu.Producer) string {
		if p == nil {
			return "-"
		}
		return p.ID()
	}
	return fmt.Sprintf("%s/%s/%v", id(st.Video), id(st.Audio), st.Show)
}

func noteIDs(m map[string]any) string {
	id := func(v any) string {
		if s, ok := v.(string); ok {
			return s
		}
		return "-"
	}
	if m == nil {
		return "no stage notification"
	}
	return fmt.Sprintf("%s/%s/%v", id(m["video"]), id(m["audio"]), m["show"])
}

// waitStage waits until what became of the room's stage is want, as the
// room says, a recorder-like subscriber heard and each member was told.
func waitStage(t *testing.T, rm *Room, sub *stageLog, want string, members ...*notes) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := []string{ids(rm.Stage()), ids(sub.last())}
		for _, n := range members {
			got = append(got, noteIDs(n.last("stage")))
		}
		if !slices.ContainsFunc(got, func(s string) bool { return s != want }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stage (room, subscriber, members): %v; want %s", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRoomStage follows the room's stage with real producers (files
// and a "camera" streamed in over plain RTP): members hear it on join
// and on every change, and the media's subscribers (the recorder's
// OnStage) hear the same.
func TestRoomStage(t *testing.T) {
	m := newManager(t, nil)
	var ana notes
	if _, _, err := m.Join("stage", JoinOptions{Name: "Ana"}, &ana); err != nil {
		t.Fatal(err)
	}
	rm, _ := m.Room("stage")
	var sub stageLog
	cancel := rm.Media().OnStage(func(v, a *sfu.Producer, show bool) { sub.tell(Stage{v, a, show}) })
	defer cancel()
	waitStage(t, rm, &sub, "-/-/false", &ana)

	cam, err := m.Ingest("stage", IngestOptions{Name: "Cam", Video: true, Audio: true, Source: "camera"})
	if err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	camV, camA := cam.Endpoints()[0].ProducerID, cam.Endpoints()[1].ProducerID
	waitStage(t, rm, &sub, camV+"/"+camA+"/false", &ana)

	film, err := m.Ingest("stage", IngestOptions{Name: "Film", Video: true, Audio: true})
	if err != nil {
		t.Fatal(err)
	}
	filmV, filmA := film.Endpoints()[0].ProducerID, film.Endpoints()[1].ProducerID
	waitStage(t, rm, &sub, filmV+"/"+filmA+"/true", &ana)

	// A member who joins now is told the stage with its join.
	var bo notes
	if _, _, err := m.Join("stage", JoinOptions{Name: "Bo"}, &bo); err != nil {
		t.Fatal(err)
	}
	if got := noteIDs(bo.last("stage")); got != filmV+"/"+filmA+"/true" {
		t.Fatalf("Bo's stage on join: %s", got)
	}
	// A newer camera does not take the show's place.
	cam2, err := m.Ingest("stage", IngestOptions{Name: "Cam 2", Video: true, Source: "camera"})
	if err != nil {
		t.Fatal(err)
	}
	defer cam2.Close()
	cam2V := cam2.Endpoints()[0].ProducerID

	// The film ends: back to the newest camera and the newest audio.
	film.Close()
	waitStage(t, rm, &sub, cam2V+"/"+camA+"/false", &ana, &bo)
	cam2.Close()
	waitStage(t, rm, &sub, camV+"/"+camA+"/false", &ana, &bo)

	// Every change was told once, in order, to subscribers and members
	// alike (a stream's video and audio may come apart: the stages in
	// between are told too).
	sub.mu.Lock()
	var heard []string
	for _, st := range sub.got {
		heard = append(heard, ids(st))
	}
	sub.mu.Unlock()
	ana.mu.Lock()
	var told []string
	for _, n := range ana.msgs {
		if n.method == "stage" {
			b, _ := json.Marshal(n.params)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			told = append(told, noteIDs(m))
		}
	}
	ana.mu.Unlock()
	if !slices.Equal(heard, told) {
		t.Errorf("the subscriber heard %v, Ana was told %v", heard, told)
	}
	want := []string{"-/-/false", camV + "/" + camA + "/false", filmV + "/" + filmA + "/true", cam2V + "/" + camA + "/false", camV + "/" + camA + "/false"}
	rest := heard
	for _, w := range want {
		i := slices.Index(rest, w)
		if i < 0 {
			t.Fatalf("heard %v: no %s in order", heard, w)
		}
		rest = rest[i+1:]
	}
	for i := 1; i < len(heard); i++ {
		if heard[i] == heard[i-1] {
			t.Errorf("heard %v: %s twice in a row", heard, heard[i])
		}
	}
}
