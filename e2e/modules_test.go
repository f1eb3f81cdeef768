package e2e

import (
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/matinee-dev/matinee/web"
)

// TestModules runs the client's pure helpers (SDP munging, room links,
// quality) in the browser they are written for.
func TestModules(t *testing.T) {
	hs := httptest.NewServer(web.Handler())
	t.Cleanup(hs.Close)
	b := newBrowser(t)
	tb := b.newTab("modules")
	tb.do(t, chromedp.Navigate(hs.URL+"/"))

	var failures []string
	tb.mustEval(t, `(async () => {
	  const SDP = await import('/static/sdp.js');
	  const {roomFromInput} = await import('/static/common.js');
	  const {quality} = await import('/static/stats.js');
	  const fails = [];
	  const eq = (what, got, want) => { if (JSON.stringify(got) !== JSON.stringify(want)) fails.push(what + ': got ' + JSON.stringify(got) + ', want ' + JSON.stringify(want)); };

	  const offer = ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0',
	    'm=audio 9 UDP/TLS/RTP/SAVPF 111 63', 'a=mid:0', 'a=rtpmap:111 opus/48000/2', 'a=fmtp:111 minptime=10;useinbandfec=1', 'a=rtpmap:63 red/48000/2',
	    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:1', 'a=rtpmap:96 VP8/90000',
	    'm=audio 9 UDP/TLS/RTP/SAVPF 109', 'a=mid:2', 'a=rtpmap:109 opus/48000/2'].join('\r\n') + '\r\n';
	  const out = SDP.setOpusParams(offer, {stereo: 1, 'sprop-stereo': 1, maxaveragebitrate: 160000}, ['0']);
	  eq('section 0', Object.fromEntries(SDP.opusParams(out, '0')), {minptime: '10', useinbandfec: '1', stereo: '1', 'sprop-stereo': '1', maxaveragebitrate: '160000'});
	  eq('section 2 untouched', Object.fromEntries(SDP.opusParams(out, '2')), {});
	  eq('line endings', out.split('\r\n').length, offer.split('\r\n').length);
	  const all = SDP.setOpusParams(offer, {stereo: 1});
	  eq('fmtp added where missing', Object.fromEntries(SDP.opusParams(all, '2')), {stereo: '1'});
	  eq('fmtp after its rtpmap', all.includes('a=rtpmap:109 opus/48000/2\r\na=fmtp:109 stereo=1\r\n'), true);
	  eq('video untouched', SDP.parse(all).media[1].lines, SDP.parse(offer).media[1].lines);

	  eq('plain room', roomFromInput(' movie-night '), 'movie-night');
	  eq('invite link', roomFromInput('https://host:8443/r/Friday_2?x=1'), 'Friday_2');
	  eq('bad room', roomFromInput('no spaces please'), '');
	  eq('too long', roomFromInput('x'.repeat(65)), '');

	  eq('good', quality({lossPct: 0.5, rttMs: 20}), 'good');
	  eq('fair loss', quality({lossPct: 4, rttMs: 20}), 'fair');
	  eq('poor rtt', quality({lossPct: 0, rttMs: 900}), 'poor');
	  eq('stall', quality({lossPct: 0, rttMs: 10, stalled: true}), 'poor');
	  return fails;
	})()`, &failures)
	for _, f := range failures {
		t.Error(f)
	}
}
