//go:build ignore

// Writes the fuzz seed corpora (testdata/fuzz/FuzzX/ of each package) from
// real data: media that ffmpeg makes, pion's RTP payloaders over it,
// headless Chromium's offers and candidates, and what ffmpeg's RTMP
// server sends a publisher. Run from the repository root, with ffmpeg and
// chromium installed:
//
//	go run scripts/fuzzseeds.go [root]
//
// Seeds are named by content, so a rerun adds files (Chromium's offers
// differ every time) rather than replacing them.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/codecs/vp8"
	"github.com/matinee-dev/matinee/internal/rtprec"
	"github.com/matinee-dev/matinee/recorder/flv"
	"github.com/matinee-dev/matinee/recorder/rtmp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

var (
	root  = "."
	media string // ffmpeg's output
)

// makeMedia has ffmpeg make short, small clips: H.264 of four profiles
// (with cropping and interlacing), VP8, VP9, AAC and an FLV of H.264 and
// AAC.
func makeMedia() {
	lavfi := func(src string) []string { return []string{"-f", "lavfi", "-i", src} }
	video := lavfi("testsrc2=size=64x48:rate=10")
	for name, args := range map[string][]string{
		"base.flv":        append(append(lavfi("testsrc2=size=66x50:rate=10"), lavfi("sine=frequency=440:sample_rate=48000")...), "-t", "0.5", "-c:v", "libx264", "-profile:v", "baseline", "-g", "3", "-bf", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "24k", "-f", "flv"),
		"high.h264":       append(video, "-t", "0.3", "-c:v", "libx264", "-profile:v", "high", "-pix_fmt", "yuv420p", "-g", "3"),
		"high444.h264":    append(video, "-t", "0.3", "-c:v", "libx264", "-profile:v", "high444", "-pix_fmt", "yuv444p", "-g", "3"),
		"interlaced.h264": append(video, "-t", "0.3", "-c:v", "libx264", "-x264opts", "interlaced=1", "-pix_fmt", "yuv420p", "-g", "3"),
		"main.h264":       append(video, "-t", "0.3", "-c:v", "libx264", "-profile:v", "main", "-pix_fmt", "yuv420p", "-g", "3", "-bf", "2"),
		"vp8.ivf":         append(video, "-t", "0.4", "-c:v", "libvpx", "-b:v", "50k", "-g", "3"),
		"vp9.ivf":         append(video, "-t", "0.4", "-c:v", "libvpx-vp9", "-b:v", "50k", "-g", "3"),
		"a48.aac":         append(lavfi("sine=frequency=440:sample_rate=48000"), "-t", "0.1", "-c:a", "aac", "-b:a", "24k", "-f", "adts"),
		"a22.aac":         append(lavfi("sine=frequency=440:sample_rate=22050"), "-ac", "1", "-t", "0.1", "-c:a", "aac", "-b:a", "16k", "-f", "adts"),
	} {
		args = append([]string{"-v", "error", "-y"}, append(slices.Clone(args), filepath.Join(media, name))...)
		if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
			log.Fatalf("ffmpeg %s: %v %s", name, err, out)
		}
	}
}

// seed writes one corpus file for pkg's target.
func seed(pkg, target string, args ...any) {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		default:
			log.Fatalf("type %T", a)
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	dir := filepath.Join(root, pkg, "testdata", "fuzz", target)
	must(os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, "seed-"+hex.EncodeToString(sum[:8]))
	must(os.WriteFile(p, []byte(b.String()), 0o644))
	fmt.Printf("%s %d bytes\n", p, b.Len())
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func read(name string) []byte {
	b, err := os.ReadFile(filepath.Join(media, name))
	must(err)
	return b
}

// pkt is one RTP packet of a seed stream.
type pkt struct {
	marker, newTS bool
	payload       []byte
}

// records encodes packets as the depacketizer targets read them
// (internal/rtprec), losing every skipEvery-th one.
func records(ps []pkt, skipEvery int) []byte {
	var out []byte
	for i, p := range ps {
		step := uint8(1)
		if skipEvery > 0 && i > 0 && i%skipEvery == 0 {
			step = 2 // a lost packet
		}
		out = rtprec.Append(out, p.marker, p.newTS, step, p.payload)
	}
	return out
}

func h264Stream(file string, maxAU int) []pkt {
	nalus := h264.SplitAnnexB(read(file))
	// Group into access units at each AUD or slice start (x264 writes AUD-less
	// streams; a slice NAL with first_mb 0 starts a picture: approximate by
	// ending each unit at a slice).
	var aus [][][]byte
	var cur [][]byte
	for _, n := range nalus {
		cur = append(cur, n)
		if t := h264.Type(n); t == h264.TypeSlice || t == h264.TypeIDR {
			aus = append(aus, cur)
			cur = nil
		}
	}
	if len(aus) > maxAU {
		aus = aus[:maxAU]
	}
	pay := &codecs.H264Payloader{}
	var out []pkt
	for _, au := range aus {
		var ps [][]byte
		for _, n := range au {
			ps = append(ps, pay.Payload(200, append([]byte{0, 0, 0, 1}, n...))...)
		}
		for i, p := range ps {
			out = append(out, pkt{marker: i == len(ps)-1, newTS: i == 0, payload: p})
		}
	}
	return out
}

func ivfFrames(file string, max int) [][]byte {
	r, _, err := ivfreader.NewWith(bytes.NewReader(read(file)))
	must(err)
	var out [][]byte
	for len(out) < max {
		f, _, err := r.ParseNextFrame()
		if err != nil {
			break
		}
		out = append(out, f)
	}
	return out
}

func vpxStream(frames [][]byte, vp9 bool, mtu uint16, trunc int) []pkt {
	var pay interface {
		Payload(uint16, []byte) [][]byte
	}
	if vp9 {
		pay = &codecs.VP9Payloader{InitialPictureIDFn: func() uint16 { return 100 }}
	} else {
		pay = &codecs.VP8Payloader{EnablePictureID: true}
	}
	var out []pkt
	for _, f := range frames {
		ps := pay.Payload(mtu, f)
		for i, p := range ps {
			if trunc > 0 && len(p) > trunc {
				p = p[:trunc] // keep seeds small: the frame data is opaque to the assembler
			}
			out = append(out, pkt{marker: i == len(ps)-1, newTS: i == 0, payload: p})
		}
	}
	return out
}

// temporal builds an L1T3 VP8 stream (TID 0,2,1,2, layer sync on the
// first frame of each upper layer after a base frame) with real VP8 frame
// starts behind the descriptor, as Chromium sends with
// scalabilityMode L1T3.
func temporal(frames [][]byte) []byte {
	var out []byte
	pic := uint16(0x7ff0)
	tl0 := uint8(250)
	tids := []uint8{0, 2, 1, 2}
	for i, f := range frames {
		tid := tids[i%4]
		if tid == 0 && i > 0 {
			tl0++
		}
		d := vp8.Descriptor{Start: true, HasPictureID: true, LongPictureID: true, PictureID: pic & 0x7fff,
			HasTL0PICIDX: true, TL0PICIDX: tl0, HasTID: true, TID: tid, LayerSync: tid != 0 && i%4 != 3, NonRef: tid == 2}
		pic++
		// two packets per frame: the start (first 40 bytes) and the rest (truncated)
		first := vp8.Append(nil, &d)
		first = append(first, f[:min(40, len(f))]...)
		d.Start = false
		second := vp8.Append(nil, &d)
		if len(f) > 40 {
			second = append(second, f[40:min(70, len(f))]...)
		}
		key := byte(0)
		if f[0]&1 == 0 {
			key = 1
		}
		target := byte(2)
		if i >= 6 {
			target = 0 // the subscriber drops to the base layer
		}
		if i >= 10 {
			target = 2
		}
		out = append(out, key|target<<1|1<<3, byte(len(first)))
		out = append(out, first...)
		out = append(out, key|target<<1, byte(len(second)))
		out = append(out, second...)
	}
	return out
}

func main() {
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	var err error
	if media, err = os.MkdirTemp("", "fuzzseeds"); err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(media)
	makeMedia()
	// H.264: SPSs and PPSs of four profiles; avcC; RTP streams.
	for _, f := range []string{"high.h264", "high444.h264", "interlaced.h264", "main.h264"} {
		var sps, pps []byte
		for _, n := range h264.SplitAnnexB(read(f)) {
			switch h264.Type(n) {
			case h264.TypeSPS:
				sps = n
			case h264.TypePPS:
				pps = n
			}
		}
		seed("codecs/h264", "FuzzParseSPS", sps, pps)
		info, err := h264.ParseSPS(sps)
		must(err)
		seed("codecs/h264", "FuzzParseRecord", (&h264.Config{SPS: sps, PPS: pps, Info: info}).Record())
	}
	seed("codecs/h264", "FuzzNALUFraming", read("main.h264")[:600])
	seed("codecs/h264", "FuzzDepacketizer", records(h264Stream("high.h264", 3), 0))
	seed("codecs/h264", "FuzzDepacketizer", records(h264Stream("interlaced.h264", 3), 7))

	// FLV: ffmpeg's file (H.264 baseline + AAC), its tags' bodies.
	flvFile := read("base.flv")
	seed("recorder/flv", "FuzzReader", flvFile[:2600])
	r, err := flv.NewReader(bytes.NewReader(flvFile))
	must(err)
	var avcC, asc, meta []byte
	for {
		t, err := r.Next()
		if err != nil {
			break
		}
		switch {
		case t.Type == flv.TagScript && meta == nil:
			meta = t.Data
		case t.Type == flv.TagVideo && avcC == nil:
			v, err := flv.ParseVideo(t.Data)
			must(err)
			avcC = v.Data
		case t.Type == flv.TagAudio && asc == nil:
			a, err := flv.ParseAudio(t.Data)
			must(err)
			asc = a.Data
		}
	}
	seed("codecs/h264", "FuzzParseRecord", avcC)
	seed("recorder/amf0", "FuzzDecode", meta)
	seed("recorder/aac", "FuzzParseConfig", asc)
	seed("recorder/aac", "FuzzSplitADTS", read("a48.aac")[:300])
	seed("recorder/aac", "FuzzSplitADTS", read("a22.aac")[:300])

	// VP8/VP9 through pion's payloaders.
	vp8Frames := ivfFrames("vp8.ivf", 4)
	vp9Frames := ivfFrames("vp9.ivf", 4)
	seed("codecs", "FuzzFrameAssembler", false, records(vpxStream(vp8Frames, false, 200, 60), 0))
	seed("codecs", "FuzzFrameAssembler", true, records(vpxStream(vp9Frames, true, 200, 60), 0))
	seed("codecs", "FuzzFrameAssembler", false, records(vpxStream(vp8Frames, false, 120, 40), 5))
	for _, p := range vpxStream(vp8Frames[:2], false, 200, 24)[:3] {
		seed("codecs/vp8", "FuzzParse", p.payload)
	}
	for _, p := range vpxStream(vp9Frames[:2], true, 200, 24)[:3] {
		seed("codecs/vp9", "FuzzParse", p.payload)
	}
	seed("sfu", "FuzzTemporalFilter", temporal(ivfFrames("vp8.ivf", 4)))

	rtmpCapture()
	offers()
}

// rtmpCapture records what ffmpeg's RTMP server sends our client through
// connect, createStream and publish, after the handshake.
func rtmpCapture() {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	port := up.Addr().(*net.TCPAddr).Port
	up.Close()
	out := filepath.Join(media, "got.flv")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-listen", "1", "-timeout", "20",
		"-f", "flv", "-i", "rtmp://127.0.0.1:"+strconv.Itoa(port)+"/live/secret", "-c", "copy", "-f", "flv", "-y", out)
	must(cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	defer ln.Close()
	var mu sync.Mutex
	var fromServer bytes.Buffer
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(s, c) }()
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := s.Read(buf)
					mu.Lock()
					fromServer.Write(buf[:n])
					mu.Unlock()
					if _, werr := c.Write(buf[:n]); err != nil || werr != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	var c *rtmp.Conn
	for i := 0; i < 100; i++ {
		mu.Lock()
		fromServer.Reset()
		mu.Unlock()
		if c, err = rtmp.Dial(context.Background(), "rtmp://127.0.0.1:"+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)+"/live/secret", rtmp.Options{}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(err)
	time.Sleep(300 * time.Millisecond)
	_ = c.Close()
	mu.Lock()
	b := fromServer.Bytes()[1+1536+1536:]
	mu.Unlock()
	seed("recorder/rtmp", "FuzzReadMessage", b)
}

// offers takes real offers from headless Chromium (camera and microphone,
// with and without rid simulcast) and from pion with its defaults.
func offers() {
	dir, err := os.MkdirTemp("", "chr")
	must(err)
	defer os.RemoveAll(dir)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.Flag("headless", "new"), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true), chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.UserDataDir(dir))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel2 := chromedp.NewContext(actx)
	defer cancel2()
	ctx, cancel3 := context.WithTimeout(ctx, 60*time.Second)
	defer cancel3()
	js := func(sim bool) string {
		enc := "undefined"
		if sim {
			enc = "[{rid:'q',scaleResolutionDownBy:4},{rid:'h',scaleResolutionDownBy:2},{rid:'f'}]"
		}
		return `(async () => {
			const cv = document.createElement('canvas'); cv.width = 640; cv.height = 360; cv.getContext('2d').fillRect(0, 0, 10, 10);
			const ac = new AudioContext(); const osc = ac.createOscillator(); const dst = ac.createMediaStreamDestination(); osc.connect(dst); osc.start();
			const s = new MediaStream([...dst.stream.getAudioTracks(), ...cv.captureStream(30).getVideoTracks()]);
			const pc = new RTCPeerConnection();
			pc.addTransceiver(s.getAudioTracks()[0], {direction:'sendonly', streams:[s]});
			pc.addTransceiver(s.getVideoTracks()[0], {direction:'sendonly', streams:[s], sendEncodings:` + enc + `});
			await pc.setLocalDescription(await pc.createOffer());
			await new Promise(r => { if (pc.iceGatheringState === 'complete') r(); pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); }; setTimeout(r, 3000); });
			return pc.localDescription.sdp;
		})()`
	}
	must(chromedp.Do(ctx))
	plain, err := chromedp.Run(ctx, chromedp.Evaluate[string](js(false), chromedp.EvalAwaitPromise))
	must(err)
	sim, err := chromedp.Run(ctx, chromedp.Evaluate[string](js(true), chromedp.EvalAwaitPromise))
	must(err)
	seed("sfu", "FuzzParseOffer", plain)
	seed("sfu", "FuzzParseOffer", sim)
	seed("sfu", "FuzzParseOffer", mungeSIM(plain))
	// Trickle fragments from Chromium's candidates (RFC 8840 layout).
	var frag strings.Builder
	frag.WriteString("a=ice-options:trickle\r\n")
	secs := strings.Split(plain, "\r\nm=")
	for i, sec := range secs {
		lines := strings.Split(sec, "\r\n")
		if i == 0 {
			continue
		}
		frag.WriteString("m=" + lines[0] + "\r\n")
		for _, l := range lines {
			if strings.HasPrefix(l, "a=mid:") || i == 1 && (strings.HasPrefix(l, "a=ice-ufrag:") || strings.HasPrefix(l, "a=ice-pwd:")) {
				frag.WriteString(l + "\r\n")
			}
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "a=candidate:") {
				frag.WriteString(l + "\r\n")
			}
		}
	}
	frag.WriteString("a=end-of-candidates\r\n")
	seed("whip", "FuzzParseSDPFrag", frag.String())

	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	must(err)
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		_, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		must(err)
	}
	o, err := pc.CreateOffer(nil)
	must(err)
	seed("sfu", "FuzzParseOffer", o.SDP)
}

// mungeSIM turns a Chromium offer's single video SSRC into SSRC simulcast
// as legacy Chrome munging did: a SIM group of three, each with an RTX
// pair in an FID group, and no rids.
func mungeSIM(offer string) string {
	var out []string
	inVideo := false
	done := false
	for _, l := range strings.Split(offer, "\r\n") {
		if strings.HasPrefix(l, "m=") {
			inVideo = strings.HasPrefix(l, "m=video")
		}
		if inVideo && (strings.HasPrefix(l, "a=ssrc") || strings.HasPrefix(l, "a=ssrc-group")) {
			if !done {
				done = true
				out = append(out, "a=ssrc-group:SIM 1001 1002 1003", "a=ssrc-group:FID 1001 2001", "a=ssrc-group:FID 1002 2002", "a=ssrc-group:FID 1003 2003")
				for _, s := range []int{1001, 2001, 1002, 2002, 1003, 2003} {
					out = append(out, fmt.Sprintf("a=ssrc:%d cname:fuzz", s), fmt.Sprintf("a=ssrc:%d msid:stream track", s))
				}
			}
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\r\n")
}
