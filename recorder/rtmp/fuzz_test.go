package rtmp

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/recorder/amf0"
	"github.com/matinee-dev/matinee/recorder/flv"
)

// fuzzConn is a server that sends fixed bytes and keeps what the client
// answers.
type fuzzConn struct {
	net.Conn
	r *bytes.Reader
	w bytes.Buffer
}

func (c *fuzzConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *fuzzConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *fuzzConn) SetDeadline(time.Time) error { return nil }
func (c *fuzzConn) RemoteAddr() net.Addr        { return &net.TCPAddr{} }

func readerConn(nc net.Conn) *Conn {
	return &Conn{core: core{nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc), inChunk: 128, inStream: map[uint32]*chunkState{}}, readErr: make(chan error, 1)}
}

// FuzzReadMessage reads what a server sends after the handshake (seed: a
// capture of ffmpeg's RTMP server answering connect, createStream and
// publish, in testdata/fuzz). Messages are no longer than the input, the
// chunk size stays within its bounds, and what the client answers
// (acknowledgements, pongs) is whole control messages.
func FuzzReadMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		nc := &fuzzConn{r: bytes.NewReader(b)}
		c := readerConn(nc)
		for i := 0; ; i++ {
			if i > len(b) {
				t.Fatalf("%d messages from %d bytes", i, len(b))
			}
			m, err := c.readMessage()
			if err != nil {
				break
			}
			if len(m.buf) > len(b) {
				t.Fatalf("message of %d bytes from %d bytes", len(m.buf), len(b))
			}
			if c.inChunk < 1 || c.inChunk > 1<<24 {
				t.Fatalf("chunk size %d", c.inChunk)
			}
			if m.typ == msgCommandAMF0 || m.typ == msgDataAMF0 {
				_, _ = amf0.Decode(m.buf) // as the read loop does
			}
		}
		answers := readerConn(&fuzzConn{r: bytes.NewReader(nc.w.Bytes())})
		for {
			m, err := answers.readChunk()
			if err == io.EOF {
				break
			}
			if err != nil || m == nil {
				t.Fatalf("the client's answers %x do not read as whole messages (%v)", nc.w.Bytes(), err)
			}
			switch {
			case m.typ == msgAck && len(m.buf) == 4, m.typ == msgWindowAckSize && len(m.buf) == 4,
				m.typ == msgUserControl && len(m.buf) == 6 && m.buf[1] == 7:
			default:
				t.Fatalf("the client answered type %d, %x", m.typ, m.buf)
			}
		}
	})
}

// FuzzParseURL: a publishing URL that parses names a host and port, an
// application and a key, and the URL rebuilt from them parses the same.
func FuzzParseURL(f *testing.F) {
	for _, u := range []string{
		"rtmp://live.twitch.tv/app/live_123456_abcdef",
		"rtmps://a.rtmps.youtube.com:443/live2/abcd-efgh-ijkl-mnop",
		"rtmp://127.0.0.1:1935/live/secret?token=x",
		"rtmp://[::1]/a/b/c/key",
	} {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tg, err := ParseURL(raw)
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(tg.Host)
		if err != nil || host == "" || port == "" {
			t.Fatalf("host %q (%v)", tg.Host, err)
		}
		if tg.App == "" || tg.Key == "" || strings.HasPrefix(tg.App, "/") {
			t.Fatalf("app %q key %q", tg.App, tg.Key)
		}
		// Rebuilding needs the path as it was written (skip escapes) and a
		// host a URL can hold (Go's parser takes "rtmp://::/a/k", whose
		// host ":" only Dial refuses).
		if strings.ContainsAny(raw, "%#") {
			return
		}
		if _, err := url.Parse("rtmp://" + tg.Host + "/"); err != nil {
			return
		}
		again, err := ParseURL(tg.TCURL() + "/" + tg.Key)
		if err != nil || again != tg {
			t.Fatalf("%+v rebuilt as %q parses to %+v (%v)", tg, tg.TCURL()+"/"+tg.Key, again, err)
		}
	})
}

// nopStream takes any tags.
type nopStream struct{ n int }

func (s *nopStream) WriteTag(flv.Tag) error { s.n++; return nil }
func (s *nopStream) Close(error)            {}

// FuzzServerConn feeds the server what a publisher sends after the
// handshake (seed: connect, createStream, publish and a video tag from
// this package's client). The server reads it without panicking, within
// its limits, and hands on no more tags than the input could hold.
func FuzzServerConn(f *testing.F) {
	var seed bytes.Buffer
	cl := &Conn{core: core{bw: bufio.NewWriter(&seed), inChunk: 128, inStream: map[uint32]*chunkState{}}}
	_ = cl.writeMessage(2, msgSetChunkSize, 0, 0, []byte{0, 0, 16, 0})
	_ = cl.command(0, "connect", amf0.Object{{Key: "app", Value: "live"}})
	_ = cl.command(0, "createStream", nil)
	_ = cl.command(1, "publish", nil, "secret", "live")
	_ = cl.writeMessage(6, msgVideo, 1, 0, []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65})
	_ = cl.writeMessage(4, msgAudio, 1, 0, []byte{0xaf, 1, 0x21})
	f.Add(seed.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewServer(ServerConfig{MaxMessageSize: 1 << 16, MaxChunkSize: 1 << 12})
		stream := &nopStream{}
		s.cfg.Publish = func(PublishRequest) (Stream, error) { return stream, nil }
		nc := &fuzzConn{r: bytes.NewReader(b)}
		c := &serverConn{core: core{nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc), inChunk: 128, inStream: map[uint32]*chunkState{}, maxChunk: 1 << 12, maxMsg: 1 << 16}, s: s}
		if _, st, err := c.negotiate(); err == nil {
			_ = c.receive(st)
		}
		if c.inChunk > 1<<12 || len(c.inStream) > maxChunkStreams {
			t.Fatalf("chunk size %d, %d chunk streams", c.inChunk, len(c.inStream))
		}
		if stream.n > len(b) {
			t.Fatalf("%d tags from %d bytes", stream.n, len(b))
		}
	})
}
