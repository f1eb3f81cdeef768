package e2e

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const dumpSendJS = `(async () => {
  const tr = window.__matinee.client.sendTransport;
  const out = {trs: tr.pc.getTransceivers().map(t => ({mid: t.mid, dir: t.direction, cur: t.currentDirection, track: t.sender.track && t.sender.track.readyState})), prods: [...tr.producers].map(p => ({id: p.id, mid: p.mid, kind: p.kind})), out: []};
  const r = await tr.pc.getStats();
  r.forEach(s => { if (s.type === 'outbound-rtp') out.out.push({mid: s.mid, rid: s.rid, ssrc: s.ssrc, bytes: s.bytesSent, kind: s.kind, active: s.active}); });
  out.offer = tr.lastOffer;
  return out;
})()`

const dumpRecvJS = `(async () => {
  const c = window.__matinee.client; const tr = c.recvTransport;
  const out = {cons: [...c.consumers.values()].map(co => ({id: co.id, mid: co.mid, kind: co.kind, track: co.track && co.track.readyState, muted: co.track && co.track.muted})), trs: tr.pc.getTransceivers().map(t => ({mid: t.mid, dir: t.direction, cur: t.currentDirection})), in: []};
  const r = await tr.pc.getStats();
  r.forEach(s => { if (s.type === 'inbound-rtp') out.in.push({mid: s.mid, ssrc: s.ssrc, bytes: s.bytesReceived, kind: s.kind}); });
  return out;
})()`

func TestDebugReshare(t *testing.T) {
	base := startServer(t, nil)
	b := newBrowser(t)
	a := b.newTab("A")
	a.do(t, chromedp.Navigate(base+"/"), chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), "Ana"), chromedp.Click(chromedp.CSS(`[data-testid=create-room]`)))
	time.Sleep(time.Second)
	var roomURL string
	a.mustEval(t, `location.href`, &roomURL)
	v := b.newTab("B")
	v.do(t, chromedp.Navigate(roomURL), chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), "Bo"), chromedp.Click(chromedp.CSS(`[data-testid=join-room]`)))
	waitJoined(t, v, 10*time.Second)
	a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
	time.Sleep(2 * time.Second)
	var m any
	a.mustEval(t, dumpSendJS, &m)
	t.Logf("A1 %v", m)
	v.mustEval(t, dumpRecvJS, &m)
	t.Logf("B1 %v", m)
	a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=stop-share]`)))
	time.Sleep(2 * time.Second)
	a.mustEval(t, dumpSendJS, &m)
	t.Logf("A2 %v", m)
	a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
	time.Sleep(3 * time.Second)
	a.mustEval(t, dumpSendJS, &m)
	t.Logf("A3 %v", m)
	v.mustEval(t, dumpRecvJS, &m)
	t.Logf("B3 %v", m)
	a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=stop-share]`)))
	time.Sleep(2 * time.Second)
	a.do(t, chromedp.Click(chromedp.CSS(`[data-testid=share-screen]`)))
	time.Sleep(3 * time.Second)
	a.mustEval(t, dumpSendJS, &m)
	t.Logf("A4 %v", m)
	v.mustEval(t, dumpRecvJS, &m)
	t.Logf("B4 %v", m)
	t.Fail()
}
