package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matinee-dev/matinee/codecs/h264"
	"github.com/matinee-dev/matinee/recorder/aac"
	"github.com/matinee-dev/matinee/recorder/flv"
	"github.com/matinee-dev/matinee/recorder/play"
	"github.com/matinee-dev/matinee/recorder/rtmp"
	"github.com/matinee-dev/matinee/recorder/transcode"
	"github.com/matinee-dev/matinee/room"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// RTMP ingest: a publisher (OBS, ffmpeg) with one of a room's stream keys
// becomes a member of that room whose H.264 is the stage, like a screen
// share. Its video goes into the room through a plain-RTP ingest
// (room.Ingest) on loopback: repacketised, never transcoded. Its AAC goes
// through ffmpeg, which sends Opus to the ingest's audio endpoint.

// rtmpApp is the application publishers connect to: rtmp://HOST/live.
const rtmpApp = "live"

// rtmpIngest is the server's RTMP side.
type rtmpIngest struct {
	srv  *rtmp.Server
	port atomic.Int32 // where ServeRTMP listens

	mu      sync.Mutex
	live    map[string]*rtmpStream // by stream key id
	refused map[string]uint64      // by reason
}

func (s *Server) newRTMPIngest() *rtmpIngest {
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
func (s *Server) ServeRTMP(ln net.Listener) error {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.rtmp.port.Store(int32(a.Port))
	}
	return s.rtmp.srv.Serve(ln)
}

// RTMPRefused returns the refused publishes by reason.
func (s *Server) RTMPRefused() map[string]uint64 {
	s.rtmp.mu.Lock()
	defer s.rtmp.mu.Unlock()
	out := make(map[string]uint64, len(s.rtmp.refused))
	for k, v := range s.rtmp.refused {
		out[k] = v
	}
	return out
}

func (s *Server) refuseRTMP(req rtmp.PublishRequest, reason string, err error) error {
	s.rtmp.mu.Lock()
	s.rtmp.refused[reason]++
	s.rtmp.mu.Unlock()
	s.log.Warn("rtmp publish refused", "remote", req.Remote, "app", req.App, "reason", reason, "err", err)
	return err
}

// Errors a refused publisher is told.
var (
	errRTMPApp     = errors.New("publish to rtmp://HOST/" + rtmpApp + " with the room's stream key")
	errRTMPBadKey  = errors.New("unknown or revoked stream key")
	errRTMPLive    = errors.New("this stream key is already publishing")
	errRTMPRevoked = errors.New("the stream key was revoked")
	errRTMPEnded   = errors.New("the room ended the stream")
)

// rtmpPublish decides on a publish: a live room's unrevoked key, not
// already publishing, joins the room as an ingest.
func (s *Server) rtmpPublish(req rtmp.PublishRequest) (rtmp.Stream, error) {
	if req.App != rtmpApp {
		return nil, s.refuseRTMP(req, "bad_key", errRTMPApp)
	}
	roomID, keyID, ok := s.rooms.LookupStreamKey(req.Key)
	if !ok {
		return nil, s.refuseRTMP(req, "bad_key", errRTMPBadKey)
	}
	st := &rtmpStream{s: s, keyID: keyID, roomID: roomID}
	s.rtmp.mu.Lock()
	if s.rtmp.live[keyID] != nil {
		s.rtmp.mu.Unlock()
		return nil, s.refuseRTMP(req, "live", errRTMPLive)
	}
	s.rtmp.live[keyID] = st
	s.rtmp.mu.Unlock()
	if err := st.start(); err != nil {
		st.release()
		return nil, s.refuseRTMP(req, "room", fmt.Errorf("room %s cannot take the stream: %w", roomID, err))
	}
	s.log.Info("rtmp publisher joined", "room", roomID, "key", keyID, "member", st.in.PeerID(), "remote", req.Remote)
	return st, nil
}

// revokeLive ends the publisher of key keyID, if one is live.
func (s *Server) revokeLive(keyID string) {
	s.rtmp.mu.Lock()
	st := s.rtmp.live[keyID]
	s.rtmp.mu.Unlock()
	if st != nil {
		st.revoked.Store(true)
	}
}

// rtmpStream is one publisher: its video repacketised into the room's
// plain-RTP ingest.
type rtmpStream struct {
	s             *Server
	keyID, roomID string
	in            *room.Ingest
	conn          *net.UDPConn
	revoked       atomic.Bool

	// writing state (one goroutine: the connection's)
	video      room.Endpoint
	audio      room.Endpoint
	aac        *aacTranscoder
	aacFailed  bool
	pay        codecs.H264Payloader
	seq        uint16
	sps, pps   []byte
	sentConfig bool
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
	return nil
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
	payloads := st.pay.Payload(1200, h264.AnnexB(nalus))
	for i, p := range payloads {
		pkt := rtp.Packet{Header: rtp.Header{
			Version: 2, PayloadType: st.video.PayloadType, SequenceNumber: st.seq,
			Timestamp: ms * 90, SSRC: st.video.SSRC, Marker: i == len(payloads)-1,
		}, Payload: p}
		st.seq++
		b, err := pkt.Marshal()
		if err != nil {
			return err
		}
		// A full socket buffer or an ingest that just closed loses a
		// packet, as the network would: the publisher is not dropped.
		_, _ = st.conn.Write(b)
	}
	return nil
}

func (st *rtmpStream) Close(reason error) {
	if st.conn != nil {
		st.conn.Close()
	}
	if st.aac != nil {
		st.aac.close()
	}
	st.in.Close()
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
			st.aac, err = st.s.startAACTranscoder(cfg, st.audio)
		}
	}
	if err == nil && a.PacketType == 1 && st.aac != nil {
		err = st.aac.write(a.Data)
	}
	if err != nil {
		st.aacFailed = true
		st.s.log.Warn("rtmp audio dropped", "room", st.roomID, "key", st.keyID, "err", err)
	}
}

// aacTranscoder is ffmpeg turning ADTS AAC on its stdin into Opus RTP.
type aacTranscoder struct {
	cfg    aac.Config
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	buf    []byte
	cancel context.CancelFunc
}

func (s *Server) startAACTranscoder(cfg aac.Config, to room.Endpoint) (*aacTranscoder, error) {
	ff, err := transcode.Find(s.cfg.FFmpeg)
	if err != nil {
		return nil, fmt.Errorf("AAC to Opus needs ffmpeg: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, ff, play.LiveAACArgs(play.Target{IP: to.IP, Port: to.Port, PayloadType: to.PayloadType, SSRC: to.SSRC})...)
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start ffmpeg for AAC to Opus: %w", err)
	}
	return &aacTranscoder{cfg: cfg, cmd: cmd, stdin: stdin, cancel: cancel}, nil
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
}

// rtmpURL is the server URL a publisher is given (OBS's "Server"): the
// host browsers reach, and the port the RTMP server listens on.
func (s *Server) rtmpURL(r *http.Request) string {
	return s.rtmpURLFor(r.Host)
}

// rtmpURLFor is rtmpURL for a browser that reached the server at reqHost
// (a host's page asks over its WebSocket).
func (s *Server) rtmpURLFor(reqHost string) string {
	host := reqHost
	if u, err := url.Parse(s.baseURL(&http.Request{Host: reqHost})); err == nil {
		host = u.Hostname()
	}
	port := int(s.rtmp.port.Load())
	if port == 0 {
		if _, p, err := net.SplitHostPort(s.cfg.RTMPAddr); err == nil {
			port, _ = strconv.Atoi(p)
		}
	}
	if port == 0 || port == 1935 {
		return "rtmp://" + hostForURL(host) + "/" + rtmpApp
	}
	return "rtmp://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/" + rtmpApp
}

// streamKeyPrefix starts the id of a stream key (room.NewStreamKey), so
// DELETE …/ingests/{iid} tells a key from a running ingest.
const streamKeyPrefix = "sk_"

// StreamKeyResponse answers POST /api/rooms/{id}/ingests {"type":"rtmp"}:
// the key is shown this once.
type StreamKeyResponse struct {
	ID        string `json:"id"`
	Room      string `json:"room"`
	Type      string `json:"type"`
	URL       string `json:"url"`
	StreamKey string `json:"streamKey"`
}

func (s *Server) newStreamKey(w http.ResponseWriter, r *http.Request, id string) {
	keyID, key, err := s.rooms.NewStreamKey(id)
	if err != nil {
		var re *room.Error
		switch {
		case errors.As(err, &re) && re.Code == room.CodeNotFound:
			WriteJSONError(w, http.StatusNotFound, "not_found", re.Message)
		case errors.Is(err, room.ErrStore):
			WriteJSONError(w, http.StatusInsufficientStorage, "store_failed", err.Error())
		default:
			WriteJSONError(w, http.StatusInternalServerError, "internal", err.Error())
		}
		return
	}
	if s.cfg.RTMPAddr == "" && s.rtmp.port.Load() == 0 {
		s.log.Warn("stream key made while the RTMP server is off (--rtmp-addr)", "room", id)
	}
	writeRecordingJSON(w, http.StatusCreated, StreamKeyResponse{ID: keyID, Room: id, Type: "rtmp", URL: s.rtmpURL(r), StreamKey: key})
}

// revokeStreamKey removes a key; its live publisher, if any, is cut off.
func (s *Server) revokeStreamKey(w http.ResponseWriter, r *http.Request) {
	id, keyID := r.PathValue("id"), r.PathValue("iid")
	found, err := s.rooms.RevokeStreamKey(id, keyID)
	if !found {
		WriteJSONError(w, http.StatusNotFound, "not_found", "no stream key "+keyID+" in room "+id)
		return
	}
	s.revokeLive(keyID)
	if err != nil {
		WriteJSONError(w, http.StatusInsufficientStorage, "store_failed", err.Error())
		return
	}
	writeRecordingJSON(w, http.StatusOK, map[string]any{})
}

// rtmpKeys gives the signalling server (a host's createStreamKey and
// revokeStreamKey) the RTMP URL and the live publishers.
type rtmpKeys struct{ s *Server }

func (k *rtmpKeys) RTMPURL(host string) string { return k.s.rtmpURLFor(host) }
func (k *rtmpKeys) RevokeLive(keyID string)    { k.s.revokeLive(keyID) }
