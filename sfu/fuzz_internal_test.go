package sfu

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/codecs"
	"github.com/matinee-dev/matinee/codecs/vp8"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// Fuzz targets for what the SFU parses from the network: subscribers'
// RTCP feedback, publishers' VP8 descriptors (temporal layers) and
// offers. Seeds: testdata/fuzz (real Chromium and pion offers, an L1T3
// stream over ffmpeg's VP8) and the pion-marshalled packets below.

// FuzzIntakeFeedback feeds a decrypted compound RTCP packet to the
// intake's handler. Whenever pion parses the whole packet and it holds no
// transport-wide CC report (those go to the estimator, fuzzed in
// sfu/bwe), the sinks must get exactly pion's packets, without error.
func FuzzIntakeFeedback(f *testing.F) {
	for _, pkts := range [][]rtcp.Packet{
		{
			&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 0xabc, FractionLost: 10, TotalLost: 3, LastSequenceNumber: 9000, Jitter: 12}}},
			&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 0xabc, Nacks: []rtcp.NackPair{{PacketID: 100, LostPackets: 0x5}}},
		},
		{&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 0xabc}},
		{&rtcp.FullIntraRequest{SenderSSRC: 1, FIR: []rtcp.FIREntry{{SSRC: 0xabc, SequenceNumber: 4}}}},
		{
			&rtcp.ReceiverReport{SSRC: 1},
			&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 1, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "fuzz"}}}}},
			&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1.5e6, SSRCs: []uint32{0xabc}},
		},
		{&rtcp.TransportLayerCC{SenderSSRC: 1, MediaSSRC: 0xabc, BaseSequenceNumber: 7, PacketStatusCount: 2, FbPktCount: 1,
			PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 2}},
			RecvDeltas:   []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250}, {Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 500}}},
			&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 0xabc}},
		{&rtcp.Goodbye{Sources: []uint32{1}, Reason: "bye"}},
		{&rtcp.SenderReport{SSRC: 1, NTPTime: 1 << 40, RTPTime: 90000, PacketCount: 10, OctetCount: 1000}},
	} {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tr := bareRecv(&Transport{router: &Router{w: &Worker{stats: newStats()}}, log: slog.New(slog.DiscardHandler)})
		rec := &sinkRecorder{}
		tr.addSink(rec)
		in := bytes.Clone(b)
		err := tr.onFeedbackRaw(in, time.Now())
		if !bytes.Equal(in, b) {
			t.Fatal("the handler wrote into the packet")
		}
		want, perr := rtcp.Unmarshal(b)
		if perr != nil || hasTWCC(want) {
			return
		}
		if err != nil {
			t.Fatalf("pion parses the packet, the intake says %v", err)
		}
		if len(rec.pkts) != len(want) {
			t.Fatalf("sinks got %d packets, pion parses %d", len(rec.pkts), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(rec.pkts[i], want[i]) {
				t.Fatalf("packet %d: sinks got %#v, pion parses %#v", i, rec.pkts[i], want[i])
			}
		}
	})
}

func hasTWCC(pkts []rtcp.Packet) bool {
	for _, p := range pkts {
		if _, ok := p.(*rtcp.TransportLayerCC); ok {
			return true
		}
	}
	return false
}

// FuzzTemporalFilter runs a VP8 packet stream through the producer's
// temporal-layer parsing and one consumer's filter. Each record is a
// flags byte (bit 0 keyframe, bits 1-2 the temporal target, bit 3 the
// next RTP timestamp, bit 4 the previous one, bit 5 a spatial switch
// before the packet), a length byte and the RTP payload. The filter must not
// touch the producer's payload, must forward a frame only when its layer
// is within the target, and must change nothing in what it forwards but
// the picture id and TL0PICIDX, which continue across dropped frames and
// spatial switches.
func FuzzTemporalFilter(f *testing.F) {
	f.Fuzz(func(t *testing.T, recs []byte) {
		var ts temporalStats
		var filt temporalFilter
		filt.reset()
		var buf []byte // the filter makes it on its first rewrite
		var rtpTS uint32
		var frameTS uint32
		started := false
		// The model of the rewriting: output = input + offset.
		var off uint16
		var tl0Off uint8
		var lastPic uint16
		var lastTL0 uint8
		var sentPic, sentTL0, resync bool
		now := time.Unix(1000, 0)
		for len(recs) >= 2 {
			flags, n := recs[0], int(recs[1])
			recs = recs[2:]
			n = min(n, len(recs))
			payload := recs[:n]
			recs = recs[n:]
			switch {
			case flags&8 != 0:
				rtpTS += 3000
			case flags&16 != 0:
				rtpTS -= 3000 // a late packet of an earlier frame
			}
			if flags&32 != 0 {
				// A spatial switch: the next frame continues the output.
				filt.switched()
				started, resync = false, true
			}
			target := min(int(flags>>1&3), maxTemporal)
			isKey := flags&1 != 0
			now = now.Add(10 * time.Millisecond)
			var d vp8.Descriptor
			pd := ts.parse(codecs.VP8, &rtp.Packet{Header: rtp.Header{Timestamp: rtpTS}, Payload: payload}, now, &d)
			if pd == nil {
				continue // forwarded untouched
			}
			orig := bytes.Clone(payload)
			newFrame := !started || int32(rtpTS-frameTS) > 0
			out, ok, _ := filt.filter(pd, isKey, rtpTS, target, payload, &buf)
			if !bytes.Equal(payload, orig) {
				t.Fatal("the filter wrote into the producer's payload")
			}
			if newFrame {
				started, frameTS = true, rtpTS
				if resync {
					resync = false
					if sentPic && d.HasPictureID {
						off = lastPic + 1 - d.PictureID
					}
					if sentTL0 && d.HasTL0PICIDX {
						tl0Off = lastTL0 + 1 - d.TL0PICIDX
					}
				}
				if !ok && d.HasPictureID {
					off--
				}
			}
			if !ok {
				continue
			}
			tid := 0
			if d.HasTID {
				tid = int(d.TID)
			}
			if newFrame && tid > target {
				t.Fatalf("forwarded a TID %d frame with target %d", tid, target)
			}
			var od vp8.Descriptor
			if err := vp8.Parse(out, &od); err != nil {
				t.Fatalf("forwarded descriptor does not parse: %v", err)
			}
			if len(out) != len(payload) || !bytes.Equal(out[d.Size:], payload[d.Size:]) {
				t.Fatal("the filter changed the VP8 bitstream")
			}
			wantPic, wantTL0 := (d.PictureID+off)&d.PictureIDMask(), d.TL0PICIDX+tl0Off
			if !d.HasPictureID {
				wantPic = d.PictureID
			}
			if !d.HasTL0PICIDX {
				wantTL0 = d.TL0PICIDX
			}
			if od.PictureID != wantPic || od.TL0PICIDX != wantTL0 {
				t.Fatalf("picture id %d tl0 %d forwarded as %d %d, want %d %d", d.PictureID, d.TL0PICIDX, od.PictureID, od.TL0PICIDX, wantPic, wantTL0)
			}
			if newFrame && d.HasPictureID {
				lastPic, sentPic = wantPic, true
			}
			if newFrame && d.HasTL0PICIDX {
				lastTL0, sentTL0 = wantTL0, true
			}
			od.PictureID, od.TL0PICIDX = d.PictureID, d.TL0PICIDX
			if od != d {
				t.Fatalf("descriptor %+v forwarded as %+v", d, od)
			}
		}
		ts.update(now, time.Second, true)
		top := ts.top()
		if top < 0 || top > maxTemporal {
			t.Fatalf("top temporal layer %d", top)
		}
		for l := 0; l <= maxTemporal; l++ {
			if sh := ts.share(l, top); !(sh >= 0 && sh <= 1) {
				t.Fatalf("temporal layers 0..%d carry %v of the bitrate", l, sh)
			}
		}
	})
}

// FuzzParseOffer reads an offer as Publish does: its sections, their
// codecs and SSRC simulcast, then the offer as pion is shown it. What
// hideSimulcastEncodings returns must parse and have no SIM group left,
// and hiding again must change nothing.
func FuzzParseOffer(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		sd, secs, err := parseOffer(raw)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) {
				t.Fatalf("error %v is not ErrBadSDP", err)
			}
			return
		}
		if len(secs) > len(sd.MediaDescriptions) {
			t.Fatalf("%d sections from %d m-lines", len(secs), len(sd.MediaDescriptions))
		}
		for _, s := range secs {
			if s.mid == "" || s.kind != "audio" && s.kind != "video" {
				t.Fatalf("section %+v", s)
			}
			for _, c := range s.codecs {
				if !strings.HasPrefix(c.MimeType, s.kind+"/") {
					t.Fatalf("codec %q in a %s section", c.MimeType, s.kind)
				}
				if codecRank(c) >= 0 {
					if _, _, ok := routerCodecFor(c); !ok {
						t.Fatalf("accepted codec %+v has no router codec", c)
					}
				}
			}
			if s.sim != nil && (len(s.sim) < 2 || len(s.sim) > maxLayers) {
				t.Fatalf("%d simulcast encodings", len(s.sim))
			}
		}
		hidden, err := hideSimulcastEncodings(sd, raw)
		if err != nil {
			return
		}
		var again sdp.SessionDescription
		if err := again.UnmarshalString(hidden); err != nil {
			t.Fatalf("the offer shown to pion does not parse: %v", err)
		}
		for _, md := range again.MediaDescriptions {
			if ssrcSimulcast(md) != nil {
				t.Fatal("a SIM group survived hideSimulcastEncodings")
			}
		}
		if twice, err := hideSimulcastEncodings(&again, hidden); err != nil || twice != hidden {
			t.Fatalf("hiding twice changed the offer (%v)", err)
		}
	})
}
