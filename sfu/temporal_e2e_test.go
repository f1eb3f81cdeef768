package sfu_test

import (
	"fmt"
	"testing"
	"time"
)

// fps is the rate of complete frames a subscriber received in [from, to].
func (s *shapedSubscriber) fps(from, to time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.frames {
		if !f.Before(from) && !f.After(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}

func (s *shapedSubscriber) layers() (spatial, temporal int) {
	sp, _ := s.c.Layer()
	tl, _ := s.c.TemporalLayer()
	return sp, tl
}

// holdLayers samples the consumer's layers for d and returns the fraction
// of samples on (spatial, temporal).
func (s *shapedSubscriber) holdLayers(spatial, temporal int, d time.Duration) float64 {
	on, n := 0, 0
	for start := time.Now(); time.Since(start) < d; n++ {
		if sp, tl := s.layers(); sp == spatial && tl == temporal {
			on++
		}
		time.Sleep(50 * time.Millisecond)
	}
	return float64(on) / float64(n)
}

func TestSimulcastTemporalDropsFrameRateBeforeResolution(t *testing.T) {
	rig := newTemporalRig(t)
	// L1T3 at 30 fps: the base layer is a quarter of the frames, T0+T1
	// half. Wait for the per-temporal-layer rates to settle there.
	wantFPS := []float64{7.5, 15, 30}
	settled := func() bool {
		for i := range rig.p.Layers() {
			tls := rig.p.TemporalLayers(i)
			if len(tls) != 3 {
				return false
			}
			for k, want := range wantFPS {
				if got := tls[k].FPS; got < want*0.75 || got > want*1.25 {
					return false
				}
			}
		}
		return true
	}
	waitFor(5*time.Second, settled)
	for i, l := range rig.p.Layers() {
		tls := rig.p.TemporalLayers(i)
		t.Logf("layer %d: %s %dx%d %.1f fps %d kbit/s", i, l.RID, l.Width, l.Height, l.FPS, l.Bitrate/1000)
		for k, tl := range tls {
			t.Logf("  T0..T%d: %.1f fps %d kbit/s", k, tl.FPS, tl.Bitrate/1000)
		}
		if len(tls) != 3 {
			t.Fatalf("layer %d: %d temporal layers seen, want 3", i, len(tls))
		}
		for k, want := range wantFPS {
			if got := tls[k].FPS; got < want*0.75 || got > want*1.25 {
				t.Errorf("layer %d T0..T%d: %.1f fps, want about %.1f", i, k, got, want)
			}
		}
	}

	// 1.8 Mbit/s carries f's T0+T1 (about 1.3 Mbit/s, 1.45 with the
	// headroom an up-switch needs) but not all of f (2 Mbit/s).
	sub := newShapedSubscriber(t, rig.wan, rig.router, rig.p, "laptop", "10.20.0.20", 1_800_000)
	defer sub.close()
	var events []string
	sub.c.OnLayerChange(func(sp, tl int) {
		sub.mu.Lock()
		events = append(events, time.Now().Format("15:04:05.000")+" "+string(rune('0'+sp))+"/"+string(rune('0'+tl)))
		sub.mu.Unlock()
	})
	start := time.Now()
	if !waitFor(25*time.Second, func() bool { sp, tl := sub.layers(); return sp == 2 && tl == 1 }) {
		sp, tl := sub.layers()
		sub.mu.Lock()
		t.Logf("layer changes: %v", events)
		sub.mu.Unlock()
		t.Fatalf("1.8 Mbit/s: on %d/%d after 25 s, want f at T1 (estimate %v)", sp, tl, rig.router.Stats())
	}
	t.Logf("1.8 Mbit/s: f at T1 after %v (estimate %v, f's cumulative temporal rates %v)", time.Since(start).Round(time.Millisecond), rig.router.Stats(), rig.p.TemporalLayers(2))
	sub.resetSeqs()
	sub.c.RequestKeyframe() // at least one keyframe in the window
	from := time.Now()
	held := sub.holdLayers(2, 1, 4*time.Second)
	to := time.Now()
	t.Logf("after the window: estimate %v, f's cumulative temporal rates %v", rig.router.Stats(), rig.p.TemporalLayers(2))
	fps := sub.fps(from, to)
	loss, n := sub.loss()
	// The keyframes of the window (one every 3 s, and the switch's):
	// the estimate may dip at its very end, and the last keyframe be h's.
	sub.mu.Lock()
	width, most := 0, 0
	for w, k := range sub.keyWidths {
		if k > most {
			width, most = w, k
		}
	}
	widths := fmt.Sprint(sub.keyWidths)
	sub.mu.Unlock()
	t.Logf("1.8 Mbit/s: f at T1 %.0f%% of 4 s; %.1f fps received, keyframes by width %s; sequence gaps %.2f%% of %d", 100*held, fps, widths, 100*loss, n)
	if held < 0.9 {
		t.Errorf("held f at T1 only %.0f%% of the window", 100*held)
	}
	if fps < 12 || fps > 18 {
		t.Errorf("received %.1f fps on f at T1, want about 15", fps)
	}
	if width != 1280 {
		t.Errorf("received frames %d wide, want f's 1280", width)
	}
	if loss > 0.01 {
		t.Errorf("sequence numbers: %.2f%% missing, want none but real loss", 100*loss)
	}

	// More link: all of f.
	sub.tbf.SetRate(6_000_000)
	sub.tbf.SetSize(6_000_000 / 8 * 3 / 10)
	up := time.Now()
	if !waitFor(20*time.Second, func() bool { sp, tl := sub.layers(); return sp == 2 && tl == 2 }) {
		sp, tl := sub.layers()
		t.Fatalf("6 Mbit/s: on %d/%d after 20 s, want all of f", sp, tl)
	}
	t.Logf("6 Mbit/s: all of f after %v", time.Since(up).Round(time.Millisecond))
	sub.resetSeqs()
	from = time.Now()
	held = sub.holdLayers(2, 2, 3*time.Second)
	to = time.Now()
	fps = sub.fps(from, to)
	loss, n = sub.loss()
	t.Logf("6 Mbit/s: all of f %.0f%% of 3 s; %.1f fps received; sequence gaps %.2f%% of %d", 100*held, fps, 100*loss, n)
	if fps < 26 {
		t.Errorf("received %.1f fps with all of f, want about 30", fps)
	}
	if loss > 0.01 {
		t.Errorf("sequence numbers: %.2f%% missing", 100*loss)
	}

	// Every frame the subscriber got since it joined, through the switches
	// from q up to f and from T1 to T2, has the picture id after the last.
	pl, pn := sub.picLoss()
	sub.mu.Lock()
	t.Logf("picture ids: %.2f%% missing of %d; layer changes %v", 100*pl, pn, events)
	sub.mu.Unlock()
	if pl > 0.01 {
		t.Errorf("picture ids: %.2f%% missing, want continuous", 100*pl)
	}
}
