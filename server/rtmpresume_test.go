package server_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/testenv"
	"github.com/matinee-dev/matinee/server"
)

// rtmpRoom makes room tv with a host and a stream key.
func rtmpRoom(t *testing.T, srv *server.Server, base string) (host string, sk streamKey) {
	t.Helper()
	key := srv.APIKey()
	if code := api(t, base, key, "POST", "/api/rooms", `{"id":"tv","name":"TV"}`, nil); code != http.StatusCreated {
		t.Fatalf("create room: %d", code)
	}
	var tok struct{ Token string }
	if code := api(t, base, key, "POST", "/api/rooms/tv/tokens", `{"identity":"h","role":"host"}`, &tok); code != http.StatusCreated {
		t.Fatalf("host token: %d", code)
	}
	if code := api(t, base, tok.Token, "POST", "/api/rooms/tv/ingests", `{"type":"rtmp"}`, &sk); code != http.StatusCreated {
		t.Fatalf("stream key: %d", code)
	}
	return tok.Token, sk
}

func producerIDs(t *testing.T, srv *server.Server) []string {
	r, ok := srv.Rooms().Room("tv")
	if !ok {
		return nil
	}
	var ids []string
	for _, p := range r.Producers() {
		ids = append(ids, p.ID)
	}
	return ids
}

// TestRTMPResume: an encoder whose connection drops (ffmpeg killed) and
// that comes back with its key within --rtmp-resume-grace goes on as the
// same stage: the same producers, the WHEP viewer's same tracks getting
// new keyframes, frames and Opus, its RTP time going on forwards. A key
// revoked while the publisher is away ends the stage at once, and so
// does a publisher that stops on purpose (unpublish), grace or not.
func TestRTMPResume(t *testing.T) {
	srv, base, rtmpURL, _ := startRTMPWith(t, func(c *config.Config) { c.RTMPResumeGrace = time.Minute })
	host, sk := rtmpRoom(t, srv, base)

	first := publishRTMP(t, rtmpURL+"/"+sk.StreamKey, "0", "60")
	testenv.Eventually(t, 15*time.Second, "the RTMP producers", func() bool { return roomProducers(t, srv, "tv") == 2 })
	ids := producerIDs(t, srv)
	v := watchH264(t, base, "tv", host)
	testenv.Eventually(t, 15*time.Second, "frames and Opus at the viewer", func() bool {
		f, k, _, o := v.counts()
		return f > 30 && k >= 1 && o > 50
	})
	_ = first.Process.Kill()
	_ = first.Wait()
	f0, k0, _, o0 := v.counts()
	v.mu.Lock()
	lastTS := v.arrivals[len(v.arrivals)-1].ts
	v.mu.Unlock()

	second := publishRTMP(t, rtmpURL+"/"+sk.StreamKey, "0", "60")
	testenv.Eventually(t, 15*time.Second, "new keyframes, frames and Opus on the viewer's same tracks", func() bool {
		f, k, _, o := v.counts()
		return f > f0+30 && k > k0 && o > o0+50
	})
	if got := producerIDs(t, srv); !slices.Equal(got, ids) {
		t.Fatalf("producers %v after the publisher came back, want the same %v", got, ids)
	}
	v.mu.Lock()
	var back []uint32
	for _, a := range v.arrivals {
		if a.at.After(time.Now().Add(-time.Second)) {
			back = append(back, a.ts)
		}
	}
	v.mu.Unlock()
	for _, ts := range back {
		if int32(ts-lastTS) <= 0 {
			t.Fatalf("a frame at RTP time %d after the resume, not after the last before it (%d)", ts, lastTS)
		}
	}

	// Away again; the key is revoked meanwhile: the stage ends at once.
	_ = second.Process.Kill()
	_ = second.Wait()
	if code := api(t, base, host, "DELETE", "/api/rooms/tv/ingests/"+sk.ID, "", nil); code != http.StatusOK {
		t.Fatalf("revoke: %d", code)
	}
	testenv.Eventually(t, 10*time.Second, "the stage to end on the revoke, not a minute later", func() bool { return roomProducers(t, srv, "tv") == 0 })

	// A publisher that stops on purpose (ffmpeg at the end of -t sends
	// deleteStream) ends the stage without the grace.
	var sk2 streamKey
	if code := api(t, base, host, "POST", "/api/rooms/tv/ingests", `{"type":"rtmp"}`, &sk2); code != http.StatusCreated {
		t.Fatalf("second key: %d", code)
	}
	short := publishRTMP(t, rtmpURL+"/"+sk2.StreamKey, "0", "3")
	testenv.Eventually(t, 15*time.Second, "the producers of the short stream", func() bool { return roomProducers(t, srv, "tv") == 2 })
	if err := short.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "the stage to end with the unpublish, not a minute later", func() bool { return roomProducers(t, srv, "tv") == 0 })
}

// TestRTMPResumeGraceRunsOut: a publisher that does not come back loses
// its stage when the grace ends, not before.
func TestRTMPResumeGraceRunsOut(t *testing.T) {
	const grace = 2 * time.Second
	srv, base, rtmpURL, _ := startRTMPWith(t, func(c *config.Config) { c.RTMPResumeGrace = grace })
	_, sk := rtmpRoom(t, srv, base)
	pub := publishRTMP(t, rtmpURL+"/"+sk.StreamKey, "0", "60")
	testenv.Eventually(t, 15*time.Second, "the RTMP producers", func() bool { return roomProducers(t, srv, "tv") == 2 })
	killed := time.Now()
	_ = pub.Process.Kill()
	_ = pub.Wait()
	testenv.Eventually(t, 15*time.Second, "the stage to end after the grace", func() bool { return roomProducers(t, srv, "tv") == 0 })
	if d := time.Since(killed); d < grace {
		t.Fatalf("stage ended %v after the publisher dropped, before the %v grace", d, grace)
	}
}
