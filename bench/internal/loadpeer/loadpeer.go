// Package loadpeer holds the pion clients the benchmarks share: a WHIP
// publisher of synthetic VP8 and Opus (internal/synth), a WHEP viewer with
// pion's defaults, and the /proc readings that tell what a server process
// spent.
package loadpeer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/internal/synth"
	"github.com/matinee-dev/matinee/whip"
	"github.com/pion/webrtc/v4"
)

// GatheredOffer makes pc's offer and waits for ICE gathering, so the offer
// carries every candidate (WHIP and WHEP servers need not support trickle).
func GatheredOffer(pc *webrtc.PeerConnection) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return "", errors.New("ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP, nil
}

// Publisher is a WHIP client sending a synthetic share: VP8 in the given
// layers plus 128 kbit/s Opus.
type Publisher struct {
	PC    *webrtc.PeerConnection
	Sess  *whip.ClientSession
	Video *synth.Video
	Audio *synth.Audio

	stop chan struct{}
	wg   sync.WaitGroup
}

// Publish offers the share to a WHIP endpoint (token may be empty) and
// starts sending once the answer is applied. hc nil is
// http.DefaultClient; onFrame, when not nil, is the video's OnFrame.
func Publish(ctx context.Context, api *webrtc.API, hc *http.Client, endpoint, token string, specs []synth.LayerSpec, onFrame func(layer int, frame uint32, packets int)) (*Publisher, error) {
	video, err := synth.NewVideo("video", "screen", specs)
	if err != nil {
		return nil, err
	}
	video.OnFrame = onFrame
	audio, err := synth.NewAudio("audio", "screen")
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		return nil, err
	}
	p := &Publisher{PC: pc, Video: video, Audio: audio, stop: make(chan struct{})}
	vs, err := video.AddTo(pc)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	atr, err := pc.AddTransceiverFromTrack(audio.Track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	offer, err := GatheredOffer(pc)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	p.Sess, err = whip.Offer(ctx, hc, endpoint, token, offer)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("whip %s: %w", endpoint, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: p.Sess.Answer}); err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("whip answer: %w", err)
	}
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() == vs {
			video.UseExtensions(vs, tr.Mid())
		}
	}
	p.wg.Add(4)
	go func() { defer p.wg.Done(); video.ServeRTCP(vs) }()
	go func() { defer p.wg.Done(); synth.DrainRTCP(atr.Sender()) }()
	go func() { defer p.wg.Done(); video.Run(p.stop) }()
	go func() { defer p.wg.Done(); audio.Run(p.stop) }()
	return p, nil
}

// VideoSent is the video packets published so far, every layer's.
func (p *Publisher) VideoSent() uint64 {
	var n uint64
	for _, l := range p.Video.Layers {
		n += l.Sent.Load()
	}
	return n
}

// Close stops sending, ends the WHIP session and waits for the
// publisher's goroutines.
func (p *Publisher) Close(ctx context.Context) {
	close(p.stop)
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_ = p.Sess.Delete(dctx)
	cancel()
	_ = p.PC.Close()
	p.wg.Wait()
}

// Viewer is a WHEP client receiving one video and one audio track.
type Viewer struct {
	PC   *webrtc.PeerConnection
	Sess *whip.ClientSession
}

// View asks a WHEP endpoint for the stream with a recvonly video and
// audio transceiver and pion's defaults otherwise; onTrack is called for
// each track that arrives (it must read it).
func View(ctx context.Context, api *webrtc.API, hc *http.Client, endpoint, token string, onTrack func(*webrtc.TrackRemote)) (*Viewer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		return nil, err
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { onTrack(tr) })
	offer, err := GatheredOffer(pc)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	sess, err := whip.Offer(ctx, hc, endpoint, token, offer)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("whep %s: %w", endpoint, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sess.Answer}); err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("whep answer: %w", err)
	}
	return &Viewer{PC: pc, Sess: sess}, nil
}

// Close ends the WHEP session and the PeerConnection.
func (v *Viewer) Close(ctx context.Context) {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_ = v.Sess.Delete(dctx)
	cancel()
	_ = v.PC.Close()
}

// ProcCPU returns a process's user+system CPU time from /proc/<pid>/stat
// (all threads; clock ticks of 1/100 s, USER_HZ on Linux).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(s[i+1:])
	// After the command: state(0) ... utime is field 14 overall, so 11 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	var ut, st int64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat utime: %w", pid, err)
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat stime: %w", pid, err)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// ProcCPUFine returns the CPU time of a process's live threads, in
// nanoseconds, from each /proc/<pid>/task/<tid>/schedstat: the same
// run time /proc/<pid>/stat reports in 10 ms ticks, without the rounding
// (a short window then still measures a light load). A thread that ended
// takes its time with it: Go runtimes keep theirs.
func ProcCPUFine(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread just ended
		}
		var ns int64
		if _, err := fmt.Sscan(string(b), &ns); err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		total += ns
	}
	return time.Duration(total), nil
}

// ProcRSS returns a process's resident memory in MB.
func ProcRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb float64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
