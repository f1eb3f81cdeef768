package ingest

import (
	"github.com/matinee-dev/matinee/internal/ntp"
	"net"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// TestReportsMapBothStreamsByOneEpoch: each stream's first packet is
// preceded by a sender report, and both reports put the same stream time
// at the same wall time whenever they are sent.
func TestReportsMapBothStreamsByOneEpoch(t *testing.T) {
	in, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := net.DialUDP("udp", nil, in.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	var epoch reportEpoch
	t0 := time.Now()
	epoch.anchor(5000, t0) // the first tag: 5 s on the publisher's clock
	video := reporter{epoch: &epoch, ssrc: 1}
	audio := reporter{epoch: &epoch, ssrc: 2}
	// The video's frame of 5.1 s leaves 90 ms after the audio of the same
	// time: the reports must not see it.
	audio.before(out, 5100*48, 5100*int64(time.Millisecond), t0.Add(200*time.Millisecond))
	audio.sent(100)
	video.before(out, 5100*90, 5100*int64(time.Millisecond), t0.Add(290*time.Millisecond))
	video.sent(1000)
	audio.before(out, 5120*48, 5120*int64(time.Millisecond), t0.Add(220*time.Millisecond)) // within the interval: no report

	wall := map[uint32]time.Time{}
	_ = in.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	for len(wall) < 2 {
		n, err := in.Read(buf)
		if err != nil {
			t.Fatalf("reports: %v (got %d)", err, len(wall))
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		sr := pkts[0].(*rtcp.SenderReport)
		rate := map[uint32]uint32{1: 90000, 2: 48000}[sr.SSRC]
		// The wall time of stream time 5.1 s by this report.
		at := ntp.Time(sr.NTPTime).Add(time.Duration(int64(5100*rate/1000)-int64(sr.RTPTime)) * time.Second / time.Duration(rate))
		wall[sr.SSRC] = at
	}
	if d := wall[1].Sub(wall[2]); d.Abs() > time.Millisecond {
		t.Errorf("video and audio reports put the same time %v apart", d)
	}
	if want := t0.Add(100 * time.Millisecond); wall[1].Sub(want).Abs() > time.Millisecond {
		t.Errorf("stream time 5.1 s at %v after the first tag, want 100ms", wall[1].Sub(t0))
	}
	_ = in.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := in.Read(buf); err == nil {
		t.Error("a second audio report within a second")
	}
}
