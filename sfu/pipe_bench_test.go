package sfu

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/sfu/nackgen"
	"github.com/matinee-dev/matinee/sfu/srtpgcm"
	"github.com/matinee-dev/matinee/sfu/udpbatch"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// BenchmarkPipeCopy compares what one packet costs the origin per copy:
// to a local subscriber on the SFU's own SRTP path (renumbering,
// AES-128-GCM, sendmmsg to a loopback socket), and to an edge through a
// pipe (header, AES-128-GCM, one sendto to a loopback socket). Both
// include the system call; neither includes the ingress (NACK log,
// keyframe detection, cache), which a packet pays once whatever its
// copies.
func BenchmarkPipeCopy(b *testing.B) {
	b.Run("local", func(b *testing.B) {
		p, cs := benchProducer(b, 1)
		o, _, _ := newTestOut(b, srtp.ProtectionProfileAeadAes128Gcm)
		o.t = cs[0].transport
		cs[0].mu.Lock()
		cs[0].useOwnSRTP(o) // as the transport's connect does
		cs[0].mu.Unlock()
		benchCopies(b, p)
		if pk, _ := cs[0].Stats(); pk < uint64(b.N) {
			b.Fatalf("consumer sent %d of %d packets", pk, b.N)
		}
	})
	b.Run("relayed", func(b *testing.B) {
		p, _ := benchProducer(b, 0)
		t := benchPipe(b)
		o := &pipeOut{t: t, p: p, ssrcs: [maxLayers]uint32{7, 8, 9}}
		o.need.Store(allLayers)
		p.attachPipe(o)
		benchCopies(b, p)
		if n := t.sent.Load(); n < uint64(b.N) {
			b.Fatalf("pipe sent %d of %d packets", n, b.N)
		}
	})
}

// benchPipe is an origin pipe end on loopback, without its goroutines.
func benchPipe(b *testing.B) *PipeTransport {
	b.Helper()
	k := NewPipeKey()
	sealer, err := srtpgcm.NewSealer(k.Key, k.Salt)
	if err != nil {
		b.Fatal(err)
	}
	src, dst := loopbackUDP(b), loopbackUDP(b)
	t := &PipeTransport{origin: true, conn: src, sealer: sealer}
	t.remote.Store(dst.LocalAddr().(*net.UDPAddr))
	return t
}

// benchCopies forwards b.N 1100-byte packets of one layer, batched as a
// read loop does, and reports ns/copy.
func benchCopies(b *testing.B, p *Producer) {
	payload := make([]byte, 1100)
	payload[0] = 0x10 // VP8 start of keyframe
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1234, SequenceNumber: 1, Timestamp: 3000}, Payload: payload}
	batch := new(udpbatch.Batch)
	p.forwardAt(0, pkt, time.Now(), batch)
	payload[0] = 0x00
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pkt.SequenceNumber++
		if i%3 == 0 {
			pkt.Timestamp += 3000
		}
		p.forwardAt(0, pkt, time.Now(), batch)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/copy")
}

// BenchmarkPipeIngress is an edge's work per packet received from a pipe:
// SRTP open, parse, and the ingress every publisher's packet goes through
// (NACK log, keyframe detection, packet cache), here to no consumer. It
// must not allocate.
func BenchmarkPipeIngress(b *testing.B) {
	p, _ := benchProducer(b, 0)
	k := NewPipeKey()
	sealer, err := srtpgcm.NewSealer(k.Key, k.Salt)
	if err != nil {
		b.Fatal(err)
	}
	open, err := srtp.CreateContext(k.Key, k.Salt, srtp.ProtectionProfileAeadAes128Gcm, srtp.SRTPReplayProtection(nackgen.Window))
	if err != nil {
		b.Fatal(err)
	}
	t := &PipeTransport{open: open, opts: PipeOptions{Remote: netip.MustParseAddrPort("127.0.0.1:9")}}
	ins := map[uint32]*pipeIn{77: {p: p, idx: 0, ssrc: 77, claimed: true}}
	t.ins.Store(&ins)
	const chunk = 1024
	sealed := make([][]byte, chunk)
	for i := range sealed {
		sealed[i] = make([]byte, 12+1100+srtpgcm.TagLen)
	}
	var st srtpgcm.Stream
	seq := uint16(0)
	rs := newPipeReader()
	from := netip.MustParseAddrPort("127.0.0.1:9")
	b.ReportAllocs()
	b.SetBytes(1100)
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		b.StopTimer()
		n := min(chunk, b.N-done)
		for i := 0; i < n; i++ {
			h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq/3) * 3000, SSRC: 77}
			m, _ := h.MarshalTo(sealed[i])
			out, err := sealer.Seal(&st, sealed[i][:m+1100], m, 77, seq)
			if err != nil {
				b.Fatal(err)
			}
			sealed[i] = out
			seq++
		}
		b.StartTimer()
		for i := 0; i < n; i++ {
			t.receive(sealed[i], from, rs)
		}
	}
	b.StopTimer()
	if got := t.received.Load(); got < uint64(b.N) {
		b.Fatalf("received %d of %d packets", got, b.N)
	}
}
