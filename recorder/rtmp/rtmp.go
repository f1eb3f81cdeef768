// Package rtmp speaks RTMP both ways over one chunk stream reader and
// writer. Its client connects to an rtmp:// or rtmps:// URL (as live
// servers, Twitch and YouTube take them), publishes a stream, and sends
// FLV tags as RTMP audio, video and data messages. Its Server takes
// publishers (OBS, ffmpeg) and hands their tags to a Stream, within
// limits on chunk and message sizes, timeouts and connections.
//
// It speaks the simple handshake, AMF0 commands (connect, createStream,
// publish) and chunking with a 4096-byte chunk size, and answers the
// server's pings and window acknowledgements.
package rtmp

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/matinee-dev/matinee/recorder/amf0"
	"github.com/matinee-dev/matinee/recorder/flv"
)

// Message type ids.
const (
	msgSetChunkSize     = 1
	msgAbort            = 2
	msgAck              = 3
	msgUserControl      = 4
	msgWindowAckSize    = 5
	msgSetPeerBandwidth = 6
	msgAudio            = 8
	msgVideo            = 9
	msgDataAMF0         = 18
	msgCommandAMF0      = 20
)

const outChunkSize = 4096

// Conn is a publishing connection.
type Conn struct {
	core
	streamID uint32
	readErr  chan error
	txn      float64
}

// Bounds on what a peer may make the reader hold, whichever side it is.
const (
	maxChunkSizeBound = 1 << 24
	maxMessageBound   = 16 << 20
	// maxChunkStreams bounds the chunk streams a peer may open: each
	// may hold a partial message (publishers use five or six).
	maxChunkStreams = 64
)

// core is the chunk stream both ends speak: reading chunks into messages
// (answering acknowledgements and pings) and writing messages as chunks.
type core struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer

	// reading state
	inChunk  int
	inStream map[uint32]*chunkState
	winSize  uint32
	received uint64
	acked    uint64
	// maxChunk and maxMsg bound the peer's chunk size and message
	// length (0: maxChunkSizeBound, maxMessageBound).
	maxChunk int
	maxMsg   int

	wmu sync.Mutex
}

func newCore(nc net.Conn) core {
	return core{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), bw: bufio.NewWriterSize(nc, 64<<10), inChunk: 128, inStream: map[uint32]*chunkState{}}
}

type chunkState struct {
	ts      uint32
	length  int
	typ     uint8
	stream  uint32
	buf     []byte
	hasExt  bool
	delta   uint32
	started bool
}

// Target is a parsed publishing URL: rtmp[s]://host[:port]/app[/...]/key.
type Target struct {
	Scheme, Host, App, Key string
}

// TCURL is the tcUrl sent in connect: the URL without the stream key.
func (t Target) TCURL() string { return t.Scheme + "://" + t.Host + "/" + t.App }

// ParseURL splits a publishing URL into server, application and key (the
// last path element, with any query string).
func ParseURL(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, err
	}
	if u.Scheme != "rtmp" && u.Scheme != "rtmps" {
		return Target{}, fmt.Errorf("rtmp: scheme %q, want rtmp or rtmps", u.Scheme)
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "rtmps" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else {
			host = net.JoinHostPort(u.Hostname(), "1935")
		}
	}
	// Without a host name Dial would connect to this machine; Go's URL
	// parser also lets through hosts no address can hold ("]").
	if h, _, err := net.SplitHostPort(host); err != nil || h == "" {
		return Target{}, fmt.Errorf("rtmp: URL needs a host, not %q", u.Host)
	}
	p := strings.Trim(u.Path, "/")
	i := strings.LastIndex(p, "/")
	if i <= 0 || i == len(p)-1 {
		return Target{}, errors.New("rtmp: URL needs /app/streamkey")
	}
	t := Target{Scheme: u.Scheme, Host: host, App: p[:i], Key: p[i+1:]}
	if u.RawQuery != "" {
		t.Key += "?" + u.RawQuery
	}
	return t, nil
}

// Options configures Dial.
type Options struct {
	// TLSConfig is used for rtmps:// (nil: system roots, server name
	// from the URL).
	TLSConfig *tls.Config
	// Timeout bounds connecting and publishing (default 10 s).
	Timeout time.Duration
}

// Dial connects, handshakes, and publishes the stream named by the URL.
func Dial(ctx context.Context, rawURL string, o Options) (*Conn, error) {
	t, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.Host)
	if err != nil {
		return nil, fmt.Errorf("rtmp: connect %s: %w", t.Host, err)
	}
	if t.Scheme == "rtmps" {
		cfg := o.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(t.Host)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("rtmp: tls: %w", err)
		}
		nc = tc
	}
	c := &Conn{core: newCore(nc), readErr: make(chan error, 1)}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if err := c.publish(t); err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	go c.readLoop()
	return c, nil
}

func (c *Conn) handshake() error {
	c1 := make([]byte, 1+1536)
	c1[0] = 3
	if _, err := rand.Read(c1[9:]); err != nil {
		return err
	}
	if _, err := c.bw.Write(c1); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	s := make([]byte, 1+1536+1536)
	if _, err := io.ReadFull(c.br, s); err != nil {
		return fmt.Errorf("rtmp: handshake: %w", err)
	}
	if s[0] != 3 {
		return fmt.Errorf("rtmp: server speaks version %d", s[0])
	}
	// C2 echoes S1.
	if _, err := c.bw.Write(s[1 : 1+1536]); err != nil {
		return err
	}
	return c.bw.Flush()
}

func (c *Conn) publish(t Target) error {
	if err := c.handshake(); err != nil {
		return err
	}
	if err := c.writeMessage(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, outChunkSize)); err != nil {
		return err
	}
	if err := c.command(0, "connect", amf0.Object{
		{Key: "app", Value: t.App},
		{Key: "type", Value: "nonprivate"},
		{Key: "flashVer", Value: "FMLE/3.0 (compatible; matinee)"},
		{Key: "tcUrl", Value: t.TCURL()},
	}); err != nil {
		return err
	}
	if _, err := c.waitResult("connect"); err != nil {
		return err
	}
	_ = c.command(0, "releaseStream", nil, t.Key)
	_ = c.command(0, "FCPublish", nil, t.Key)
	if err := c.command(0, "createStream", nil); err != nil {
		return err
	}
	res, err := c.waitResult("createStream")
	if err != nil {
		return err
	}
	if len(res) >= 4 {
		if id, ok := res[3].(float64); ok {
			c.streamID = uint32(id)
		}
	}
	if err := c.command(c.streamID, "publish", nil, t.Key, "live"); err != nil {
		return err
	}
	for {
		m, err := c.readMessage()
		if err != nil {
			return fmt.Errorf("rtmp: publish: %w", err)
		}
		if m.typ != msgCommandAMF0 {
			continue
		}
		vals, _ := amf0.Decode(m.buf)
		if len(vals) < 4 {
			continue
		}
		name, _ := vals[0].(string)
		info, _ := vals[3].(amf0.Object)
		code, _ := info.Get("code").(string)
		switch {
		case name == "onStatus" && code == "NetStream.Publish.Start":
			return nil
		case name == "onStatus" && strings.Contains(code, "Publish"), name == "_error":
			desc, _ := info.Get("description").(string)
			return fmt.Errorf("rtmp: publish refused: %s %s", code, desc)
		}
	}
}

func (c *Conn) command(stream uint32, name string, obj any, args ...any) error {
	c.txn++
	vals := append([]any{name, c.txn, obj}, args...)
	b, err := amf0.Append(nil, vals...)
	if err != nil {
		return err
	}
	return c.writeMessage(3, msgCommandAMF0, stream, 0, b)
}

// waitResult reads messages until the _result (or _error) of a command.
func (c *Conn) waitResult(what string) ([]any, error) {
	for {
		m, err := c.readMessage()
		if err != nil {
			return nil, fmt.Errorf("rtmp: %s: %w", what, err)
		}
		if m.typ != msgCommandAMF0 {
			continue
		}
		vals, _ := amf0.Decode(m.buf)
		if len(vals) == 0 {
			continue
		}
		switch vals[0] {
		case "_result":
			return vals, nil
		case "_error":
			desc := ""
			if len(vals) >= 4 {
				if o, ok := vals[3].(amf0.Object); ok {
					desc, _ = o.Get("description").(string)
				}
			}
			return nil, fmt.Errorf("rtmp: %s refused: %s", what, desc)
		}
	}
}

// writeMessage writes one message in chunks (format 0, then format 3).
func (c *core) writeMessage(csid uint8, typ uint8, stream uint32, ts uint32, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	ext := ts >= 0xffffff
	tsField := ts
	if ext {
		tsField = 0xffffff
	}
	n := len(payload)
	h := []byte{csid, byte(tsField >> 16), byte(tsField >> 8), byte(tsField), byte(n >> 16), byte(n >> 8), byte(n), typ}
	h = binary.LittleEndian.AppendUint32(h, stream)
	if ext {
		h = binary.BigEndian.AppendUint32(h, ts)
	}
	if _, err := c.bw.Write(h); err != nil {
		return err
	}
	for {
		k := min(len(payload), outChunkSize)
		if _, err := c.bw.Write(payload[:k]); err != nil {
			return err
		}
		payload = payload[k:]
		if len(payload) == 0 {
			break
		}
		cont := []byte{0xc0 | csid}
		if ext {
			cont = binary.BigEndian.AppendUint32(cont, ts)
		}
		if _, err := c.bw.Write(cont); err != nil {
			return err
		}
	}
	return c.bw.Flush()
}

type message struct {
	typ    uint8
	stream uint32
	ts     uint32
	buf    []byte
}

// readMessage reads chunks until a whole message is assembled, handling
// protocol control messages itself.
func (c *core) readMessage() (*message, error) {
	for {
		m, err := c.readChunk()
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		switch m.typ {
		case msgSetChunkSize:
			if len(m.buf) >= 4 {
				n := int(binary.BigEndian.Uint32(m.buf) & 0x7fffffff)
				if n < 1 || n > c.chunkLimit() {
					return nil, fmt.Errorf("rtmp: chunk size %d, limit %d", n, c.chunkLimit())
				}
				c.inChunk = n
			}
		case msgWindowAckSize:
			if len(m.buf) >= 4 {
				c.winSize = binary.BigEndian.Uint32(m.buf)
			}
		case msgUserControl:
			if len(m.buf) >= 6 && binary.BigEndian.Uint16(m.buf) == 6 { // ping request
				_ = c.writeMessage(2, msgUserControl, 0, 0, append([]byte{0, 7}, m.buf[2:6]...))
			}
		case msgSetPeerBandwidth:
			if len(m.buf) >= 4 {
				_ = c.writeMessage(2, msgWindowAckSize, 0, 0, m.buf[:4])
			}
		}
		if c.winSize > 0 && c.received-c.acked >= uint64(c.winSize)/2 {
			c.acked = c.received
			_ = c.writeMessage(2, msgAck, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(c.received)))
		}
		return m, nil
	}
}

func (c *core) readN(n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(c.br, b)
	c.received += uint64(n)
	return b, err
}

// readChunk reads one chunk; it returns a message when one completes.
func (c *core) readChunk() (*message, error) {
	b0, err := c.readN(1)
	if err != nil {
		return nil, err
	}
	fmtType := b0[0] >> 6
	csid := uint32(b0[0] & 0x3f)
	switch csid {
	case 0:
		b, err := c.readN(1)
		if err != nil {
			return nil, err
		}
		csid = 64 + uint32(b[0])
	case 1:
		b, err := c.readN(2)
		if err != nil {
			return nil, err
		}
		csid = 64 + uint32(b[0]) + uint32(b[1])<<8
	}
	st := c.inStream[csid]
	if st == nil {
		if len(c.inStream) >= maxChunkStreams {
			return nil, fmt.Errorf("rtmp: more than %d chunk streams", maxChunkStreams)
		}
		st = &chunkState{}
		c.inStream[csid] = st
	}
	hlen := []int{11, 7, 3, 0}[fmtType]
	h, err := c.readN(hlen)
	if err != nil {
		return nil, err
	}
	var tsField uint32
	if hlen >= 3 {
		tsField = uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
		st.hasExt = tsField == 0xffffff
	}
	if hlen >= 7 {
		// A message header starts a new message: one left unfinished on
		// this chunk stream is dropped (as ffmpeg does), not completed
		// with the new one's bytes or measured against its length.
		st.buf = nil
		st.length = int(h[3])<<16 | int(h[4])<<8 | int(h[5])
		st.typ = h[6]
		if st.length > c.msgLimit() {
			return nil, fmt.Errorf("rtmp: message of %d bytes, limit %d", st.length, c.msgLimit())
		}
	}
	if hlen >= 11 {
		st.stream = binary.LittleEndian.Uint32(h[7:11])
	}
	if st.hasExt {
		e, err := c.readN(4)
		if err != nil {
			return nil, err
		}
		tsField = binary.BigEndian.Uint32(e)
	}
	if len(st.buf) == 0 {
		switch fmtType {
		case 0:
			st.ts = tsField
		case 1, 2:
			st.delta = tsField
			st.ts += tsField
		case 3:
			st.ts += st.delta
		}
	}
	k := min(c.inChunk, st.length-len(st.buf))
	data, err := c.readN(k)
	if err != nil {
		return nil, err
	}
	st.buf = append(st.buf, data...)
	if len(st.buf) < st.length {
		return nil, nil
	}
	m := &message{typ: st.typ, stream: st.stream, ts: st.ts, buf: st.buf}
	st.buf = nil
	return m, nil
}

func (c *core) chunkLimit() int {
	if c.maxChunk > 0 {
		return min(c.maxChunk, maxChunkSizeBound)
	}
	return maxChunkSizeBound
}

func (c *core) msgLimit() int {
	if c.maxMsg > 0 {
		return min(c.maxMsg, maxMessageBound)
	}
	return maxMessageBound
}

// readLoop keeps reading what the server sends while publishing (acks,
// pings, status), so its buffers never fill.
func (c *Conn) readLoop() {
	for {
		m, err := c.readMessage()
		if err != nil {
			c.readErr <- err
			return
		}
		if m.typ == msgCommandAMF0 {
			vals, _ := amf0.Decode(m.buf)
			if len(vals) >= 4 && vals[0] == "onStatus" {
				if o, ok := vals[3].(amf0.Object); ok {
					if lvl, _ := o.Get("level").(string); lvl == "error" {
						code, _ := o.Get("code").(string)
						c.readErr <- fmt.Errorf("rtmp: server: %s", code)
						return
					}
				}
			}
		}
	}
}

// WriteTag sends one FLV tag (audio, video or script data).
func (c *Conn) WriteTag(t flv.Tag) error {
	select {
	case err := <-c.readErr:
		c.readErr <- err
		return err
	default:
	}
	switch t.Type {
	case flv.TagAudio:
		return c.writeMessage(4, msgAudio, c.streamID, t.Timestamp, t.Data)
	case flv.TagVideo:
		return c.writeMessage(6, msgVideo, c.streamID, t.Timestamp, t.Data)
	case flv.TagScript:
		// Servers expect the metadata wrapped in @setDataFrame.
		b, err := amf0.Append(nil, "@setDataFrame")
		if err != nil {
			return err
		}
		return c.writeMessage(5, msgDataAMF0, c.streamID, t.Timestamp, append(b, t.Data...))
	}
	return nil
}

// SetWriteDeadline bounds the next writes, so a stalled server cannot
// hold a sender forever.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// Close ends the stream (FCUnpublish, deleteStream) and the connection.
func (c *Conn) Close() error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = c.command(0, "FCUnpublish", nil, "")
	_ = c.command(0, "deleteStream", nil, float64(c.streamID))
	return c.nc.Close()
}
