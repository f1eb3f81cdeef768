package e2e

import (
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/matinee-dev/matinee/web"
)

// TestModules runs the client's pure helpers (SDP munging, room links,
// quality, the server clock, the player's arithmetic, simulcast layers) in
// the browser they are written for.
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

	  // The server clock: the smallest round trip of the window wins.
	  const {ServerClock} = await import('/static/clock.js');
	  let now = 0;
	  const c = new ServerClock(null, {local: () => now});
	  c.add(0, 40, 1520);     // rtt 40, offset 1500
	  c.add(100, 104, 1605);  // rtt 4, offset 1503
	  c.add(200, 260, 1700);  // rtt 60
	  eq('clock: best sample', [c.rtt, c.offset], [4, 1503]);
	  now = 1000;
	  eq('clock: now', c.now(), 2503);
	  for (let i = 0; i < 16; i++) c.add(300 + 20 * i, 310 + 20 * i, 1795 + 20 * i);
	  eq('clock: old samples leave the window', [c.rtt, c.offset], [10, 1490]);
	  const seeded = new ServerClock(null, {local: () => 0});
	  seeded.seed(5000);
	  eq('clock: seeded', [seeded.ready, seeded.offset], [false, 5000]);
	  seeded.add(0, 2, 6001);
	  eq('clock: a probe replaces the seed', [seeded.ready, seeded.offset], [true, 6000]);

	  // Where the video should be, and how to close a gap.
	  const P = await import('/static/player.js');
	  const st = {url: '/media/x.mp4', paused: false, waiting: false, position: 10, rate: 1.5, updatedAt: 1000};
	  eq('expected: playing', P.expectedPosition(st, 3000), 13);
	  eq('expected: paused', P.expectedPosition({...st, paused: true}, 3000), 10);
	  eq('expected: held', P.expectedPosition({...st, waiting: true}, 3000), 10);
	  const sync = {nudgeThresholdMs: 40, seekThresholdMs: 400, maxNudge: 0.1};
	  const near = (a, b) => Math.abs(a - b) < 1e-9;
	  eq('correction: dead band', P.correction(0.03, 1, sync, false), {seek: false, rate: 1, nudging: false});
	  eq('correction: nudge', near(P.correction(0.05, 1, sync, false).rate, 1.05), true);
	  eq('correction: nudge goes on', P.correction(0.03, 1, sync, true).nudging, true);
	  eq('correction: nudge ends under half', P.correction(0.015, 1, sync, true), {seek: false, rate: 1, nudging: false});
	  eq('correction: capped', near(P.correction(-0.3, 2, sync, false).rate, 1.8), true);
	  eq('correction: seek', P.correction(0.5, 1, sync, false).seek, true);
	  eq('time', [P.formatTime(65), P.formatTime(3723), P.formatTime(NaN)], ['1:05', '1:02:03', '0:00']);

	  // What a "disconnected" reason means to the page.
	  const {removalKind} = await import('/static/client.js');
	  eq('removal kinds', ['removed by the host', 'room deleted', 'joined from another connection', 'server shutting down',
	    'ICE/DTLS did not complete within 15s', 'spoilers'].map(removalKind), ['kicked', 'deleted', 'replaced', null, null, 'kicked']);
	  const {reactionGlyph} = await import('/static/reactions.js');
	  eq('reaction glyphs', [reactionGlyph('🎉').tagName, reactionGlyph('🦄').textContent], ['svg', '🦄']);

	  // Simulcast layers for a capture size (docs/simulcast.md).
	  const S = await import('/static/simulcast.js');
	  const layers = (e) => e.map((x) => (x.rid || '-') + '/' + (x.scaleResolutionDownBy || 1) + '/' + x.maxBitrate);
	  eq('camera 960x540: three', layers(S.videoEncodings({width: 960, height: 540}, S.CAMERA_LAYERS)), ['q/4/100000', 'h/2/300000', 'f/1/900000']);
	  eq('camera 640x360: the top two, named q and f', layers(S.videoEncodings({width: 640, height: 360}, S.CAMERA_LAYERS)), ['q/2/300000', 'f/1/900000']);
	  eq('camera 640x480: two', layers(S.videoEncodings({width: 640, height: 480}, S.CAMERA_LAYERS)), ['q/2/300000', 'f/1/900000']);
	  eq('camera 320x180: one, no rid', S.videoEncodings({width: 320, height: 180}, S.CAMERA_LAYERS), [{maxBitrate: 900000, maxFramerate: 24}]);
	  eq('portrait 600x1000: q at least 160 wide', layers(S.videoEncodings({width: 600, height: 1000}, S.CAMERA_LAYERS)), ['q/2/300000', 'f/1/900000']);
	  eq('screen 1920x1080', layers(S.videoEncodings({width: 1920, height: 1080}, S.screenLayers(5000000))), ['q/4/250000', 'h/2/900000', 'f/1/5000000']);
	  eq('simulcast off: one full-quality encoding', S.videoEncodings({width: 1920, height: 1080}, S.screenLayers(5000000), {simulcast: false}), [{maxBitrate: 5000000, maxFramerate: 30}]);
	  eq('size unknown: the whole ladder', layers(S.videoEncodings({}, S.CAMERA_LAYERS)), ['q/4/100000', 'h/2/300000', 'f/1/900000']);
	  eq('max layers', [S.maxLayers(1280, 720), S.maxLayers(960, 540), S.maxLayers(640, 360), S.maxLayers(480, 270), S.maxLayers(320, 180)], [3, 3, 2, 2, 1]);
	  return fails;
	})()`, &failures)
	for _, f := range failures {
		t.Error(f)
	}
}
