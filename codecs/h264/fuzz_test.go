package h264

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/matinee-dev/matinee/internal/rtprec"
)

// Fuzz targets for what the recorder parses of a publisher's H.264.
// Seeds in testdata/fuzz: SPSs, PPSs and avcC records of ffmpeg's
// baseline, main, high, high 4:4:4 and interlaced streams, and RTP
// streams from pion's H.264 payloader (STAP-A, FU-A).

// FuzzParseSPS: an SPS that parses gives a picture, and the avcC record
// built from it reads back the same parameter sets and picture.
func FuzzParseSPS(f *testing.F) {
	f.Fuzz(func(t *testing.T, sps, pps []byte) {
		info, err := ParseSPS(sps)
		if err != nil {
			return
		}
		if info.Width <= 0 || info.Height <= 0 {
			t.Fatalf("%dx%d picture", info.Width, info.Height)
		}
		if len(pps) == 0 || len(sps) > 0xffff || len(pps) > 0xffff {
			return
		}
		rec := (&Config{SPS: sps, PPS: pps, Info: info}).Record()
		back, err := ParseRecord(rec)
		if err != nil {
			t.Fatalf("our own avcC %x does not parse: %v", rec, err)
		}
		if !bytes.Equal(back.SPS, sps) || !bytes.Equal(back.PPS, pps) || *back.Info != *info {
			t.Fatalf("avcC round trip: %+v became %+v", info, back.Info)
		}
	})
}

// FuzzParseRecord: an avcC that parses is written back by Record to one
// that parses to the same configuration.
func FuzzParseRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseRecord(b)
		if err != nil {
			return
		}
		back, err := ParseRecord(c.Record())
		if err != nil {
			t.Fatalf("rewritten avcC does not parse: %v", err)
		}
		if !bytes.Equal(back.SPS, c.SPS) || !bytes.Equal(back.PPS, c.PPS) || *back.Info != *c.Info {
			t.Fatalf("avcC round trip changed %+v to %+v", c, back)
		}
	})
}

// FuzzNALUFraming splits bytes as Annex B and as AVCC. Annex B gives
// non-empty NAL units, joining and splitting again is stable, and AVCC framing round-trips exactly.
func FuzzNALUFraming(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		nalus := SplitAnnexB(b)
		total := 0
		for _, n := range nalus {
			if len(n) == 0 {
				t.Fatal("an empty NAL unit")
			}
			total += len(n)
		}
		if total > len(b) {
			t.Fatalf("%d bytes of NAL units from %d bytes", total, len(b))
		}
		once := SplitAnnexB(AnnexB(nalus))
		if twice := SplitAnnexB(AnnexB(once)); !slices.EqualFunc(once, twice, bytes.Equal) {
			t.Fatalf("Annex B framing is not stable: %x then %x", once, twice)
		}
		back, ok := SplitAVCC(AVCC(nalus))
		if !ok || !slices.EqualFunc(back, nalus, bytes.Equal) {
			t.Fatal("AVCC round trip changed the NAL units")
		}
		if split, ok := SplitAVCC(b); ok && !bytes.Equal(AVCC(split), b) {
			t.Fatal("AVCC input not rebuilt exactly")
		}
	})
}

// FuzzDepacketizer pushes an RTP stream (internal/rtprec's records:
// marker, timestamp, a sequence number step that may duplicate or lose
// packets, payload) into the depacketizer. Access units hold only whole, non-empty
// NAL units (no aggregation or fragment left), stay within maxAUSize,
// start with an IDR (at the start and after a loss), and are copies.
func FuzzDepacketizer(f *testing.F) {
	f.Fuzz(func(t *testing.T, recs []byte) {
		d := NewDepacketizer()
		needKey := true
		var aus []*AccessUnit
		var copies [][][]byte
		for _, p := range rtprec.Decode(recs) {
			au, err := d.Push(p.Seq, p.TS, p.Marker, p.Payload)
			if err != nil && !errors.Is(err, ErrLoss) {
				t.Fatalf("Push: %v", err)
			}
			if errors.Is(err, ErrLoss) {
				needKey = true
			}
			clear(p.Payload)
			if au == nil {
				continue
			}
			if needKey && !au.Key {
				t.Fatal("a non-IDR access unit at the start or after a loss")
			}
			needKey = false
			if au.Key != IsKey(au.NALUs) || len(au.NALUs) == 0 {
				t.Fatalf("access unit %+v", au)
			}
			size := 0
			for _, n := range au.NALUs {
				if tp := Type(n); len(n) == 0 || tp < 1 || tp > 23 {
					t.Fatalf("NAL unit of type %d, %d bytes in an access unit", tp, len(n))
				}
				size += len(n)
			}
			if size > maxAUSize {
				t.Fatalf("access unit of %d bytes", size)
			}
			aus = append(aus, au)
			copies = append(copies, slices.Clone(au.NALUs))
			for i := range copies[len(copies)-1] {
				copies[len(copies)-1][i] = bytes.Clone(au.NALUs[i])
			}
		}
		for i, au := range aus {
			if !slices.EqualFunc(au.NALUs, copies[i], bytes.Equal) {
				t.Fatalf("access unit %d changed after it was returned", i)
			}
		}
	})
}
