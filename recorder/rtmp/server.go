package rtmp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/recorder/amf0"
	"github.com/matinee-dev/matinee/recorder/flv"
)

// ServerConfig bounds what a publishing client may make the server hold
// and decides who may publish.
type ServerConfig struct {
	// MaxChunkSize is the largest chunk size a client may set.
	MaxChunkSize int
	// MaxMessageSize is the largest message (a video frame) accepted.
	MaxMessageSize int
	// HandshakeTimeout bounds the handshake through an accepted publish.
	HandshakeTimeout time.Duration
	// IdleTimeout bounds each message while publishing: a client that is
	// silent, or sends or reads slower than that, is dropped.
	IdleTimeout time.Duration
	// MaxConns bounds the connections at once; more are closed at accept.
	MaxConns int
	Logger   *slog.Logger
	// Publish decides on a publish; an error refuses it and its text goes
	// to the client (NetStream.Publish.BadName) and the log.
	Publish func(PublishRequest) (Stream, error)
}

// PublishRequest is a client's publish: rtmp://host/App/Key, or
// rtmp://host/App with Key as the stream name (as OBS sends it).
type PublishRequest struct {
	App, Key string
	Remote   net.Addr
}

// Stream takes one publisher's tags. An error from WriteTag ends the
// connection with that error sent to the client; Close is called once
// when the publisher leaves, however it leaves, with the reason.
type Stream interface {
	WriteTag(flv.Tag) error
	Close(reason error)
}

// Server accepts RTMP publishers.
type Server struct {
	cfg ServerConfig
	log *slog.Logger

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	lns    []net.Listener
	wg     sync.WaitGroup
}

// NewServer returns a server; Serve starts it on a listener.
func NewServer(cfg ServerConfig) *Server {
	if cfg.MaxChunkSize <= 0 {
		cfg.MaxChunkSize = 64 << 10
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 4 << 20
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 64
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{cfg: cfg, log: log.With("component", "rtmp"), conns: map[net.Conn]struct{}{}}
}

// Serve accepts connections until ln is closed (by Close).
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.lns = append(s.lns, ln)
	// Close waits for this loop too.
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("rtmp: accept: %w", err)
		}
		if !s.track(nc) {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(nc)
			s.serveConn(nc)
		}()
	}
}

// track adds a connection, or closes it when the server is closed or full.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= s.cfg.MaxConns {
		if !s.closed {
			s.log.Warn("rtmp connection refused: too many connections", "remote", nc.RemoteAddr(), "max", s.cfg.MaxConns)
		}
		nc.Close()
		return false
	}
	s.conns[nc] = struct{}{}
	return true
}

func (s *Server) untrack(nc net.Conn) {
	nc.Close()
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
}

// Close stops accepting, drops every connection and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for _, ln := range s.lns {
		ln.Close()
	}
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// serverConn is one client of the server.
type serverConn struct {
	core
	s *Server
}

func (s *Server) serveConn(nc net.Conn) {
	c := &serverConn{core: newCore(nc), s: s}
	c.maxChunk = s.cfg.MaxChunkSize
	c.maxMsg = s.cfg.MaxMessageSize
	_ = nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if err := c.acceptHandshake(); err != nil {
		s.log.Debug("rtmp handshake failed", "remote", nc.RemoteAddr(), "err", err)
		return
	}
	req, stream, err := c.negotiate()
	if err != nil {
		s.log.Info("rtmp publish ended before it started", "remote", nc.RemoteAddr(), "err", err)
		return
	}
	err = c.receive(stream)
	stream.Close(err)
	s.log.Info("rtmp publisher left", "remote", nc.RemoteAddr(), "app", req.App, "reason", err)
}

// acceptHandshake is the simple handshake: C0 C1 in, S0 S1 S2 out (S2
// echoes C1), C2 in (its content is not checked, as most servers do).
func (c *serverConn) acceptHandshake() error {
	c01 := make([]byte, 1+1536)
	if _, err := io.ReadFull(c.br, c01); err != nil {
		return fmt.Errorf("rtmp: handshake C0 C1: %w", err)
	}
	if c01[0] != 3 {
		return fmt.Errorf("rtmp: client speaks version %d, want 3", c01[0])
	}
	s1 := make([]byte, 1536)
	// Time and zero fields first, then 1528 bytes that need not be random.
	binary.BigEndian.PutUint32(s1, uint32(time.Now().UnixMilli()))
	for i := 8; i < len(s1); i++ {
		s1[i] = byte(i * 31)
	}
	_ = c.bw.WriteByte(3)
	_, _ = c.bw.Write(s1)
	_, _ = c.bw.Write(c01[1:])
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("rtmp: handshake S0 S1 S2: %w", err)
	}
	if _, err := io.ReadFull(c.br, make([]byte, 1536)); err != nil {
		return fmt.Errorf("rtmp: handshake C2: %w", err)
	}
	return nil
}

// streamID is the one message stream a publisher gets.
const streamID = 1

// negotiate answers connect, createStream and the rest until a publish,
// which the server's Publish decides.
func (c *serverConn) negotiate() (PublishRequest, Stream, error) {
	app := ""
	for {
		m, err := c.readMessage()
		if err != nil {
			return PublishRequest{}, nil, err
		}
		if m.typ != msgCommandAMF0 {
			continue
		}
		vals, err := amf0.Decode(m.buf)
		if err != nil || len(vals) < 2 {
			return PublishRequest{}, nil, fmt.Errorf("rtmp: undecodable command: %v", err)
		}
		name, _ := vals[0].(string)
		txn, _ := vals[1].(float64)
		switch name {
		case "connect":
			if len(vals) >= 3 {
				if o, ok := vals[2].(amf0.Object); ok {
					app, _ = o.Get("app").(string)
				}
			}
			if err := c.acceptConnect(txn); err != nil {
				return PublishRequest{}, nil, err
			}
		case "createStream":
			if err := c.result(txn, nil, float64(streamID)); err != nil {
				return PublishRequest{}, nil, err
			}
		case "releaseStream", "FCPublish":
			if err := c.result(txn, nil, nil); err != nil {
				return PublishRequest{}, nil, err
			}
		case "publish":
			key := ""
			if len(vals) >= 4 {
				key, _ = vals[3].(string)
			}
			req := publishRequest(app, key, c.nc.RemoteAddr())
			stream, err := c.s.cfg.Publish(req)
			if err != nil {
				_ = c.status("error", "NetStream.Publish.BadName", err.Error())
				return req, nil, fmt.Errorf("rtmp: publish refused: %w", err)
			}
			if err := c.status("status", "NetStream.Publish.Start", "publishing"); err != nil {
				stream.Close(err)
				return req, nil, err
			}
			return req, stream, nil
		case "play":
			_ = c.status("error", "NetStream.Play.Failed", "this server takes publishers only")
			return PublishRequest{}, nil, errors.New("rtmp: a client asked to play")
		}
	}
}

// publishRequest splits where the key came from: the stream name, with
// any query string dropped, or the application's path after its first
// element when the name is empty (rtmp://host/live/KEY as one app).
func publishRequest(app, name string, remote net.Addr) PublishRequest {
	app = strings.Trim(app, "/")
	name, _, _ = strings.Cut(name, "?")
	if first, rest, ok := strings.Cut(app, "/"); ok {
		app = first
		if name == "" {
			name = rest
		}
	}
	return PublishRequest{App: app, Key: name, Remote: remote}
}

func (c *serverConn) acceptConnect(txn float64) error {
	if err := c.writeMessage(2, msgWindowAckSize, 0, 0, binary.BigEndian.AppendUint32(nil, 2500000)); err != nil {
		return err
	}
	if err := c.writeMessage(2, msgSetPeerBandwidth, 0, 0, append(binary.BigEndian.AppendUint32(nil, 2500000), 2)); err != nil {
		return err
	}
	if err := c.writeMessage(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, outChunkSize)); err != nil {
		return err
	}
	return c.result(txn, amf0.Object{
		{Key: "fmsVer", Value: "FMS/3,0,1,123"},
		{Key: "capabilities", Value: float64(31)},
	}, amf0.Object{
		{Key: "level", Value: "status"},
		{Key: "code", Value: "NetConnection.Connect.Success"},
		{Key: "description", Value: "Connection succeeded."},
		{Key: "objectEncoding", Value: float64(0)},
	})
}

func (c *serverConn) result(txn float64, props, info any) error {
	b, err := amf0.Append(nil, "_result", txn, props, info)
	if err != nil {
		return err
	}
	return c.writeMessage(3, msgCommandAMF0, 0, 0, b)
}

func (c *serverConn) status(level, code, desc string) error {
	b, err := amf0.Append(nil, "onStatus", float64(0), nil, amf0.Object{
		{Key: "level", Value: level},
		{Key: "code", Value: code},
		{Key: "description", Value: desc},
	})
	if err != nil {
		return err
	}
	return c.writeMessage(5, msgCommandAMF0, streamID, 0, b)
}

// ErrUnpublished ends a publish the client ended itself (deleteStream,
// FCUnpublish): a deliberate stop, not a dropped connection.
var ErrUnpublished = errors.New("rtmp: client unpublished")

// receive hands the publisher's tags to the stream until it leaves, goes
// silent or sends what the stream refuses.
func (c *serverConn) receive(stream Stream) error {
	for {
		_ = c.nc.SetDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
		m, err := c.readMessage()
		if err != nil {
			return err
		}
		var tag flv.Tag
		switch m.typ {
		case msgAudio:
			tag = flv.Tag{Type: flv.TagAudio, Timestamp: m.ts, Data: m.buf}
		case msgVideo:
			if err := CheckVideo(m.buf); err != nil {
				_ = c.status("error", "NetStream.Publish.Rejected", err.Error())
				return err
			}
			tag = flv.Tag{Type: flv.TagVideo, Timestamp: m.ts, Data: m.buf}
		case msgDataAMF0:
			tag = flv.Tag{Type: flv.TagScript, Timestamp: m.ts, Data: stripSetDataFrame(m.buf)}
		case msgCommandAMF0:
			vals, _ := amf0.Decode(m.buf)
			if len(vals) > 0 && (vals[0] == "deleteStream" || vals[0] == "FCUnpublish" || vals[0] == "closeStream") {
				return ErrUnpublished
			}
			continue
		default:
			continue
		}
		if err := stream.WriteTag(tag); err != nil {
			_ = c.status("error", "NetStream.Publish.Rejected", err.Error())
			return err
		}
	}
}

// stripSetDataFrame drops the "@setDataFrame" publishers put before
// onMetaData, leaving the script tag a file would hold.
func stripSetDataFrame(b []byte) []byte {
	prefix, _ := amf0.Append(nil, "@setDataFrame")
	if len(b) > len(prefix) && string(b[:len(prefix)]) == string(prefix) {
		return b[len(prefix):]
	}
	return b
}

// Errors of video this server does not take, each saying what to change.
var (
	ErrBFrames    = errors.New("H.264 with B-frames is not supported: set B-frames to 0 in the encoder (OBS: Output > Streaming > x264 options bframes=0, or Profile baseline)")
	ErrEnhanced   = errors.New("enhanced RTMP (HEVC, AV1, VP9) is not supported: set the encoder to H.264 (x264 or a hardware H.264 encoder)")
	ErrVideoCodec = errors.New("only H.264 video is supported: set the encoder to H.264")
	errShortVideo = errors.New("rtmp: video message too short")
)

const (
	codecAVC       = 7
	avcPacketNALUs = 1
)

// CheckVideo refuses video this server cannot forward without
// transcoding: enhanced RTMP's FourCC codecs, codecs other than H.264,
// and H.264 with B-frames (a composition time offset other than zero).
func CheckVideo(b []byte) error {
	if len(b) < 1 {
		return errShortVideo
	}
	if b[0]&0x80 != 0 {
		return ErrEnhanced
	}
	if frameType := b[0] >> 4; frameType == 5 {
		return nil // video info / command frame: no codec data
	}
	if int(b[0]&0x0f) != codecAVC {
		return ErrVideoCodec
	}
	if len(b) < 5 {
		return errShortVideo
	}
	if b[1] == avcPacketNALUs {
		cts := int32(uint32(b[2])<<16|uint32(b[3])<<8|uint32(b[4])) << 8 >> 8
		if cts != 0 {
			return ErrBFrames
		}
	}
	return nil
}
