package bwe

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// TEMPORARY: feeds pion's GCC through a dummy stream until the estimator's
// own GCC replaces it.
type shim struct {
	once  sync.Once
	w     interceptor.RTPWriter
	attrs interceptor.Attributes
	mu    sync.Mutex
	buf   [1500]byte
	ext   [2]byte
}

var shims sync.Map

// OnSent records a packet sent with transport-wide sequence number seq.
func (e *Estimator) OnSent(seq uint16, size int, at time.Time) {
	v, _ := shims.LoadOrStore(e, &shim{})
	s := v.(*shim)
	s.once.Do(func() {
		s.w = e.gcc.AddStream(&interceptor.StreamInfo{SSRC: 1, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: transportCCURI, ID: 1}}},
			interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) { return len(p), nil }))
		s.attrs = interceptor.Attributes{}
	})
	s.mu.Lock()
	s.ext[0], s.ext[1] = byte(seq>>8), byte(seq)
	h := rtp.Header{Version: 2, SSRC: 1}
	_ = h.SetExtension(1, s.ext[:])
	pl := size - h.MarshalSize()
	if pl < 0 {
		pl = 0
	}
	if pl > len(s.buf) {
		pl = len(s.buf)
	}
	_, _ = s.w.Write(&h, s.buf[:pl], s.attrs)
	s.mu.Unlock()
	e.mu.Lock()
	e.sent[seq%4096] = sentPacket{seq: seq, size: size, at: at, ok: true}
	e.mu.Unlock()
}
