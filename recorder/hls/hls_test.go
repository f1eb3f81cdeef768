package hls

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/internal/mediatest"
	"github.com/matinee-dev/matinee/recorder/aac"
)

// feed writes n seconds of the given H.264 file and AAC frames into v,
// starting at pts start; it returns the pts after the last frame.
func feed(t *testing.T, v *Variant, aus [][]byte, frames [][]byte, acfg aac.Config, start time.Duration) time.Duration {
	t.Helper()
	var ps h264.ParamSets
	ai := 0
	var pts time.Duration
	for i, au := range aus {
		pts = start + time.Duration(i)*time.Second/30
		for ai < len(frames) && start+time.Duration(ai)*time.Second*1024/48000 <= pts {
			if err := v.WriteAudio(start+time.Duration(ai)*time.Second*1024/48000, frames[ai], acfg); err != nil {
				t.Fatal(err)
			}
			ai++
		}
		nalus := h264.SplitAnnexB(au)
		cfg, err := ps.Update(nalus)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.WriteVideo(pts, h264.IsKey(nalus), nalus, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return pts + time.Second/30
}

func TestVariantLiveThenVOD(t *testing.T) {
	dir := t.TempDir()
	vidA, _ := mediatest.FlashBeep(t, dir, 640, 360, 5)
	vidB, _ := mediatest.FlashBeep(t, dir, 320, 180, 3)
	adts := filepath.Join(dir, "a.aac")
	mediatest.Run(t, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "5", "-ac", "2", "-c:a", "aac", "-f", "adts", adts)
	raw, _ := os.ReadFile(adts)
	acfg, frames, err := aac.SplitADTS(raw)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hls")
	v, err := NewVariant(out, Options{TargetDuration: 2 * time.Second, Video: true, Audio: true})
	if err != nil {
		t.Fatal(err)
	}
	end := feed(t, v, mediatest.ReadH264(t, vidA), frames, acfg, 0)
	live, err := os.ReadFile(filepath.Join(out, PlaylistName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(live), "#EXT-X-PLAYLIST-TYPE:EVENT") || strings.Contains(string(live), "ENDLIST") {
		t.Fatalf("live playlist:\n%s", live)
	}
	v.Discontinuity()
	feed(t, v, mediatest.ReadH264(t, vidB), frames[:140], acfg, end)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	pl, _ := os.ReadFile(filepath.Join(out, PlaylistName))
	s := string(pl)
	if !strings.Contains(s, "#EXT-X-ENDLIST") || !strings.Contains(s, "#EXT-X-PLAYLIST-TYPE:VOD") || strings.Count(s, "#EXT-X-DISCONTINUITY") != 1 {
		t.Fatalf("final playlist:\n%s", s)
	}
	if !strings.Contains(s, "#EXT-X-TARGETDURATION:2\n") {
		t.Errorf("target duration:\n%s", s)
	}
	if d := v.Duration().Seconds(); math.Abs(d-8) > 0.1 {
		t.Errorf("duration %.3f, want 8", d)
	}
	p := mediatest.ProbeFile(t, filepath.Join(out, PlaylistName))
	if p.Codecs() != "h264+aac" || math.Abs(p.Duration()-8) > 0.2 {
		t.Fatalf("ffprobe: %s %.2f", p.Codecs(), p.Duration())
	}
	if e := mediatest.DecodeErrors(t, filepath.Join(out, PlaylistName)); e != "" {
		t.Fatalf("decode errors:\n%s", e)
	}
	info := v.Info()
	if info.Width != 320 || info.Height != 180 || info.Bandwidth <= 0 || !strings.HasPrefix(info.Codecs, "avc1.42c0") || !strings.HasSuffix(info.Codecs, ",mp4a.40.2") {
		t.Errorf("info %+v", info)
	}
	master := filepath.Join(dir, "master.m3u8")
	info.URI = "hls/" + PlaylistName
	if err := WriteMaster(master, []VariantInfo{info}); err != nil {
		t.Fatal(err)
	}
	mp := mediatest.ProbeFile(t, master)
	if mp.Codecs() != "h264+aac" {
		t.Fatalf("master: %s", mp.Codecs())
	}
}

// TestAddQuery: every URI line gets the query, with ? or & as fits; tags,
// comments and blank lines stay as they are, CRLF included.
func TestAddQuery(t *testing.T) {
	in := "#EXTM3U\r\n#EXT-X-STREAM-INF:BANDWIDTH=1\r\nv0/index.m3u8\r\n\n#EXTINF:2.000,\nseg-00000.ts\nseg-00001.ts?x=1"
	want := "#EXTM3U\r\n#EXT-X-STREAM-INF:BANDWIDTH=1\r\nv0/index.m3u8?token=a%2Bb\r\n\n#EXTINF:2.000,\nseg-00000.ts?token=a%2Bb\nseg-00001.ts?x=1&token=a%2Bb"
	if got := string(AddQuery([]byte(in), "token=a%2Bb")); got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}
