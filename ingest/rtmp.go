package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/ingest/play"
	"github.com/matinee-dev/matinee/recorder/aac"
	"github.com/matinee-dev/matinee/recorder/flv"
	"github.com/matinee-dev/matinee/recorder/rtmp"
	"github.com/matinee-dev/matinee/recorder/transcode"
	"github.com/matinee-dev/matinee/room"
	"github.com/pion/rtp/codecs"
)

// RTMP ingest: a publisher (OBS, ffmpeg) with one of a room's stream keys
// becomes a member of that room whose H.264 is the stage, like a screen
// share. Its video goes into the room through a plain-RTP ingest
// (room.Ingest) on loopback: repacketised, never transcoded. Its AAC goes
// through ffmpeg, whose Opus the ingest stamps on the publisher's clock
// and sends to the ingest's audio endpoint (avsync.go).

// RTMPApp is the application publishers connect to: rtmp://HOST/live.
const RTMPApp = "live"

// rtmpIngest is the server's RTMP side.
type rtmpIngest struct {
	srv     *rtmp.Server
	port    atomic.Int32 // where ServeRTMP listens
	tlsPort atomic.Int32 // where RTMPS listens (0: off)

	mu      sync.Mutex
	live    map[string]*rtmpStream // by stream key id, with those away for the resume grace
	refused map[string]uint64      // by reason
	closed  bool                   // no more parking: the server is closing
}

func (s *Service) newRTMPIngest() *rtmpIngest {
	ri := &rtmpIngest{live: map[string]*rtmpStream{}, refused: map[string]uint64{}}
	ri.srv = rtmp.NewServer(rtmp.ServerConfig{
		MaxChunkSize:     s.cfg.RTMPMaxChunkSize,
		MaxMessageSize:   s.cfg.RTMPMaxMessageSize,
		HandshakeTimeout: s.cfg.RTMPHandshakeTimeout,
		IdleTimeout:      s.cfg.RTMPIdleTimeout,
		MaxConns:         s.cfg.RTMPMaxConns,
		Logger:           s.log,
		Publish:          s.rtmpPublish,
	})
	return ri
}

// ServeRTMP takes RTMP publishers on ln until the server closes.
func (s *Service) ServeRTMP(ln net.Listener) error {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.rtmp.port.Store(int32(a.Port))
	}
	return s.rtmp.srv.Serve(ln)
}

// RTMPPort is the port ServeRTMP listens on (0: none yet).
func (s *Service) RTMPPort() int { return int(s.rtmp.port.Load()) }

// RTMPSPort is the port ServeRTMPS listens on (0: RTMPS is off).
func (s *Service) RTMPSPort() int { return int(s.rtmp.tlsPort.Load()) }

// RTMPRefused returns the refused publishes by reason.
func (s *Service) RTMPRefused() map[string]uint64 {
	s.rtmp.mu.Lock()
	defer s.rtmp.mu.Unlock()
	out := make(map[string]uint64, len(s.rtmp.refused))
	for k, v := range s.rtmp.refused {
		out[k] = v
	}
	return out
}

func (s *Service) refuseRTMP(req rtmp.PublishRequest, reason string, err error) error {
	s.rtmp.mu.Lock()
	s.rtmp.refused[reason]++
	s.rtmp.mu.Unlock()
	s.log.Warn("rtmp publish refused", "remote", req.Remote, "app", req.App, "reason", reason, "err", err)
	return err
}

// Errors a refused publisher is told.
var (
	errRTMPApp     = errors.New("publish to rtmp://HOST/" + RTMPApp + " with the room's stream key")
	errRTMPBadKey  = errors.New("unknown or revoked stream key")
	errRTMPLive    = errors.New("this stream key is already publishing")
	errRTMPRevoked = errors.New("the stream key was revoked")
	errRTMPEnded   = errors.New("the room ended the stream")
)

// rtmpPublish decides on a publish: a live room's unrevoked key, not
// already publishing, joins the room as an ingest.
func (s *Service) rtmpPublish(req rtmp.PublishRequest) (rtmp.Stream, error) {
	if req.App != RTMPApp {
		return nil, s.refuseRTMP(req, "bad_key", errRTMPApp)
	}
	roomID, keyID, ok := s.rooms.LookupStreamKey(req.Key)
	if !ok {
		return nil, s.refuseRTMP(req, "bad_key", errRTMPBadKey)
	}
	s.rtmp.mu.Lock()
	old := s.rtmp.live[keyID]
	if old != nil && old.parked == nil {
		s.rtmp.mu.Unlock()
		return nil, s.refuseRTMP(req, "live", errRTMPLive)
	}
	if old != nil {
		// Back within the grace: the same ingest, so the same producers
		// and every viewer's track, going on from where it stopped.
		old.parked.Stop()
		old.parked = nil
		if old.canResume() {
			old.resume()
			s.rtmp.mu.Unlock()
			s.log.Info("rtmp publisher back: same stage", "room", roomID, "key", keyID, "member", old.in.PeerID(), "remote", req.Remote)
			return old, nil
		}
		delete(s.rtmp.live, keyID)
	}
	st := &rtmpStream{s: s, keyID: keyID, roomID: roomID, fresh: true, aclock: newAudioClock()}
	s.rtmp.live[keyID] = st
	s.rtmp.mu.Unlock()
	if old != nil {
		old.closeMedia()
	}
	if err := st.start(); err != nil {
		st.release()
		return nil, s.refuseRTMP(req, "room", fmt.Errorf("room %s cannot take the stream: %w", roomID, err))
	}
	s.log.Info("rtmp publisher joined", "room", roomID, "key", keyID, "member", st.in.PeerID(), "remote", req.Remote)
	return st, nil
}

// RevokeLive ends the publisher of key keyID, if one is live.
func (s *Service) RevokeLive(keyID string) {
	s.rtmp.mu.Lock()
	st := s.rtmp.live[keyID]
	if st == nil {
		s.rtmp.mu.Unlock()
		return
	}
	st.revoked.Store(true)
	away := st.parked != nil
	if away {
		st.parked.Stop()
		st.parked = nil
		delete(s.rtmp.live, keyID)
	}
	s.rtmp.mu.Unlock()
	if away {
		st.closeMedia()
		s.log.Info("rtmp stage ended: its key was revoked while the publisher was away", "room", st.roomID, "key", keyID)
	}
}

// park keeps st, whose publisher dropped, for the resume grace; false
// when there is none (or the server is closing).
func (s *Service) park(st *rtmpStream) bool {
	if s.cfg.RTMPResumeGrace <= 0 {
		return false
	}
	s.rtmp.mu.Lock()
	defer s.rtmp.mu.Unlock()
	if s.rtmp.closed || s.rtmp.live[st.keyID] != st {
		return false
	}
	st.parked = time.AfterFunc(s.cfg.RTMPResumeGrace, func() { s.unpark(st) })
	return true
}

// unpark ends st's stage at the end of the grace, unless its publisher
// came back (or it was ended otherwise) meanwhile.
func (s *Service) unpark(st *rtmpStream) {
	s.rtmp.mu.Lock()
	gone := st.parked != nil && s.rtmp.live[st.keyID] == st
	if gone {
		st.parked = nil
		delete(s.rtmp.live, st.keyID)
	}
	s.rtmp.mu.Unlock()
	if gone {
		st.closeMedia()
		s.log.Info("rtmp publisher did not come back: stage ended", "room", st.roomID, "key", st.keyID, "grace", s.cfg.RTMPResumeGrace)
	}
}

// CloseRTMPServer stops the RTMP server: it takes no more publishers and
// waits for its connections to end.
func (s *Service) CloseRTMPServer() { _ = s.rtmp.srv.Close() }

// CloseRTMP stops the RTMP server (it waits for its connections) and ends
// the stages of publishers away for the grace.
func (s *Service) CloseRTMP() {
	_ = s.rtmp.srv.Close()
	s.rtmp.mu.Lock()
	s.rtmp.closed = true
	var away []*rtmpStream
	for id, st := range s.rtmp.live {
		if st.parked != nil {
			st.parked.Stop()
			st.parked = nil
			delete(s.rtmp.live, id)
			away = append(away, st)
		}
	}
	s.rtmp.mu.Unlock()
	for _, st := range away {
		st.closeMedia()
	}
}

// rtmpStream is one publisher: its video repacketised into the room's
// plain-RTP ingest.
type rtmpStream struct {
	s             *Service
	keyID, roomID string
	in            *room.Ingest
	conn          *net.UDPConn
	revoked       atomic.Bool
	// parked runs out the resume grace while the publisher is away
	// (guarded by the service's rtmp.mu).
	parked *time.Timer

	// writing state (one goroutine: the connection's)
	video      room.Endpoint
	audio      room.Endpoint
	aac        *aacTranscoder
	aacFailed  bool
	pay        codecs.H264Payloader
	sps, pps   []byte
	sentConfig bool
	// Both streams on one clock (avsync.go). A resumed publisher's
	// times start again from its own zero: the clock carries them on
	// from lastMs, so viewers see time go on.
	clock       avClock
	lastMs      int64
	sent, fresh bool // a frame was sent; no tag yet on this connection

	vout   *videoOut     // the video, each frame with its audio
	aseq   atomic.Uint32 // the audio's sequence numbers, across transcoders
	aclock *audioClock   // when the audio of each stream time leaves
	epoch  reportEpoch   // stream time to wall time, for sender reports
}

func (st *rtmpStream) start() error {
	if !st.s.rooms.HasStreamKey(st.roomID, st.keyID) {
		return errRTMPBadKey
	}
	in, err := st.s.rooms.Ingest(st.roomID, room.IngestOptions{Name: "RTMP", Video: true, Audio: true, ListenIP: st.s.cfg.PlainListenIP, Source: "screen"})
	if err != nil {
		return err
	}
	st.in = in
	for _, e := range in.Endpoints() {
		if e.Kind == "video" {
			st.video = e
		} else {
			st.audio = e
		}
	}
	conn, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.ParseIP(st.video.IP), Port: st.video.Port})
	if err != nil {
		in.Close()
		return fmt.Errorf("rtmp ingest socket: %w", err)
	}
	st.conn = conn
	st.vout = newVideoOut(conn, st.video.PayloadType, st.video.SSRC, st.aclock, &st.epoch)
	return nil
}

// canResume reports whether a publisher coming back may go on with st's
// stage. Called with the service's rtmp.mu held.
func (st *rtmpStream) canResume() bool {
	if st.revoked.Load() || !st.s.rooms.HasStreamKey(st.roomID, st.keyID) {
		return false
	}
	select {
	case <-st.in.Done():
		return false
	default:
		return true
	}
}

// resume readies st for its publisher's new connection: the sequence
// numbers go on, the timestamps go on from the last frame's, and the
// codec configuration and audio transcoder come anew with the stream.
func (st *rtmpStream) resume() {
	st.sps, st.pps = nil, nil
	st.aacFailed = false
	st.fresh = true
}

// closeMedia ends st's ingest (its producers) and socket.
func (st *rtmpStream) closeMedia() {
	if st.vout != nil {
		st.vout.close()
	}
	if st.conn != nil {
		st.conn.Close()
	}
	st.in.Close()
}

// release frees the key for another publish.
func (st *rtmpStream) release() {
	st.s.rtmp.mu.Lock()
	if st.s.rtmp.live[st.keyID] == st {
		delete(st.s.rtmp.live, st.keyID)
	}
	st.s.rtmp.mu.Unlock()
}

func (st *rtmpStream) WriteTag(t flv.Tag) error {
	if st.revoked.Load() {
		return errRTMPRevoked
	}
	select {
	case <-st.in.Done():
		return errRTMPEnded
	default:
	}
	if t.Type == flv.TagAudio || t.Type == flv.TagVideo {
		st.tick(t.Timestamp)
	}
	if t.Type == flv.TagAudio {
		st.writeAudio(t)
		return nil
	}
	if t.Type != flv.TagVideo {
		return nil // metadata: not needed
	}
	v, err := flv.ParseVideo(t.Data)
	if err != nil {
		return nil // video info frames; rtmp.CheckVideo refused the rest
	}
	switch v.PacketType {
	case 0: // sequence header: the SPS and PPS sent with every keyframe
		cfg, err := h264.ParseRecord(v.Data)
		if err != nil {
			return fmt.Errorf("H.264 sequence header: %w", err)
		}
		st.sps, st.pps = cfg.SPS, cfg.PPS
		return nil
	case 1:
		return st.sendFrame(t.Timestamp, v)
	}
	return nil
}

// sendFrame packetises one access unit; a keyframe goes out behind the
// SPS and PPS, so a viewer can start at any keyframe.
func (st *rtmpStream) sendFrame(ms uint32, v flv.VideoTag) error {
	nalus, ok := h264.SplitAVCC(v.Data)
	if !ok {
		return errors.New("H.264 frame: bad NAL unit lengths")
	}
	if v.Key && st.sps != nil {
		nalus = append([][]byte{st.sps, st.pps}, nalus...)
	}
	sm := st.clock.stream(ms)
	st.lastMs, st.sent = max(st.lastMs, sm), true
	st.vout.send(videoFrame{sm: sm, key: v.Key, payloads: st.pay.Payload(1200, h264.AnnexB(nalus)), arrived: time.Now()})
	return nil
}

// tick starts the connection's clock at its first audio or video tag: a
// resumed stream goes on a frame's time after the last one sent.
func (st *rtmpStream) tick(ms uint32) {
	if !st.fresh {
		return
	}
	st.fresh = false
	off := int64(0)
	if st.sent {
		off = st.lastMs + 1000/30 - int64(ms)
	}
	st.clock = avClock{off: off}
	st.epoch.anchor(st.clock.stream(ms), time.Now())
}

func (st *rtmpStream) Close(reason error) {
	if st.aac != nil {
		st.aac.close()
		st.aac = nil
	}
	if st.dropped(reason) && st.s.park(st) {
		st.s.log.Info("rtmp publisher dropped: its stage waits for it", "room", st.roomID, "key", st.keyID, "grace", st.s.cfg.RTMPResumeGrace, "reason", reason)
		return
	}
	st.closeMedia()
	st.release()
	if errors.Is(reason, rtmp.ErrBFrames) || errors.Is(reason, rtmp.ErrEnhanced) || errors.Is(reason, rtmp.ErrVideoCodec) {
		st.s.rtmp.mu.Lock()
		st.s.rtmp.refused["video"]++
		st.s.rtmp.mu.Unlock()
		st.s.log.Warn("rtmp stream refused", "room", st.roomID, "key", st.keyID, "reason", "video", "err", reason)
		return
	}
	st.s.log.Info("rtmp publisher left the room", "room", st.roomID, "key", st.keyID, "reason", reason)
}

// dropped reports whether the publisher's connection ended without it
// meaning to (no unpublish, no refusal, no revoked key, the room still
// there): an encoder that reconnects gets its stage back within the
// grace.
func (st *rtmpStream) dropped(reason error) bool {
	if st.revoked.Load() || errors.Is(reason, rtmp.ErrUnpublished) || errors.Is(reason, errRTMPEnded) || errors.Is(reason, errRTMPRevoked) ||
		errors.Is(reason, rtmp.ErrBFrames) || errors.Is(reason, rtmp.ErrEnhanced) || errors.Is(reason, rtmp.ErrVideoCodec) {
		return false
	}
	select {
	case <-st.in.Done():
		return false
	default:
		return true
	}
}

// writeAudio hands AAC to the transcoder, started at the first sequence
// header. Audio that cannot be transcoded (no ffmpeg, not AAC) is dropped
// with one warning: the video goes on.
func (st *rtmpStream) writeAudio(t flv.Tag) {
	if st.aacFailed {
		return
	}
	a, err := flv.ParseAudio(t.Data)
	if err == nil && a.PacketType == 0 {
		var cfg aac.Config
		if cfg, err = aac.ParseConfig(a.Data); err == nil {
			if st.aac != nil {
				st.aac.close()
			}
			st.aac, err = st.s.startAACTranscoder(cfg, st)
		}
	}
	if err == nil && a.PacketType == 1 && st.aac != nil {
		st.aac.relay.first(st.clock.stream(t.Timestamp))
		err = st.aac.write(a.Data)
	}
	if st.aac != nil && err == nil {
		st.aclock.expected.Store(true)
	}
	if err != nil {
		st.aacFailed = true
		st.aclock.expected.Store(false)
		st.s.log.Warn("rtmp audio dropped", "room", st.roomID, "key", st.keyID, "err", err)
	}
}

// aacTranscoder is ffmpeg turning ADTS AAC on its stdin into Opus RTP,
// which its relay stamps on the publisher's clock (avsync.go).
type aacTranscoder struct {
	cfg    aac.Config
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	buf    []byte
	cancel context.CancelFunc
	relay  *audioRelay
}

func (s *Service) startAACTranscoder(cfg aac.Config, st *rtmpStream) (*aacTranscoder, error) {
	ff, err := transcode.Find(s.cfg.FFmpeg)
	if err != nil {
		return nil, fmt.Errorf("AAC to Opus needs ffmpeg: %w", err)
	}
	to := st.audio
	relay, err := newAudioRelay(&net.UDPAddr{IP: net.ParseIP(to.IP), Port: to.Port}, to.PayloadType, to.SSRC, &st.aseq, st.aclock, &st.epoch)
	if err != nil {
		return nil, fmt.Errorf("rtmp audio relay: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, ff, play.LiveAACArgs(play.Target{IP: "127.0.0.1", Port: relay.port(), PayloadType: to.PayloadType, SSRC: to.SSRC})...)
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		relay.close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		relay.close()
		return nil, fmt.Errorf("start ffmpeg for AAC to Opus: %w", err)
	}
	return &aacTranscoder{cfg: cfg, cmd: cmd, stdin: stdin, cancel: cancel, relay: relay}, nil
}

func (a *aacTranscoder) write(frame []byte) error {
	var err error
	a.buf, err = a.cfg.AppendADTS(a.buf[:0], frame)
	if err != nil {
		return err
	}
	if _, err := a.stdin.Write(a.buf); err != nil {
		return fmt.Errorf("ffmpeg AAC to Opus: %w", err)
	}
	return nil
}

// close ends ffmpeg: end of input first, so it flushes, then a kill if it
// lingers (WaitDelay).
func (a *aacTranscoder) close() {
	_ = a.stdin.Close()
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(time.Second):
			a.cancel()
		}
	}()
	_ = a.cmd.Wait()
	close(done)
	a.cancel()
	a.relay.close()
}

// ServeRTMPS serves the RTMP server over TLS on ln, with the certificate
// HTTPS has (a phone or OBS that trusts one trusts the other).
func (s *Service) ServeRTMPS(ln net.Listener, cfg *tls.Config) error {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.rtmp.tlsPort.Store(int32(a.Port))
	}
	return s.rtmp.srv.Serve(tls.NewListener(ln, cfg))
}
