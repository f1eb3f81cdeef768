// The room page: a stage with the shared screen big and cameras small, the
// controls to share, the people and chat panel, and every message a person
// needs when something goes wrong.

import {Client, capabilities, RpcError, Codes} from './client.js';
import {loadName, saveName, rememberRoom, ROOM_RE, missingBasics, h} from './common.js';
import {inboundSummary, outboundSummary, quality, describeInbound, describeOutbound} from './stats.js';
import {icon, fillIcons} from './icons.js';

fillIcons();

const $ = (id) => document.getElementById(id);
const caps = capabilities();
const roomId = decodeURIComponent(window.location.pathname.split('/')[2] || '');
const MODE_KEY = 'matinee.shareMode';

// Sending settings per share mode. Movie keeps motion smooth and lets the
// resolution drop under pressure; Slides/Text keeps every pixel sharp and
// lets the frame rate drop instead.
const MODES = {
  movie: {hint: 'motion', degradation: 'maintain-framerate', maxBitrate: 5_000_000, label: 'Movie'},
  slides: {hint: 'detail', degradation: 'maintain-resolution', maxBitrate: 2_500_000, label: 'Slides/Text'},
};
const SCREEN_AUDIO_BITRATE = 160_000;
const RATE_LIMITED = 1008;

const app = {
  client: null,
  tiles: new Map(), // key → Tile
  pinned: null, // key of the tile the user put on stage
  autoplayBlocked: false,
  showStats: false,
  share: null, // {mode, stream, producers: []}
  camera: null, // {stream, producer}
  mic: null, // {stream, producer}
  chatAvailable: true,
  unread: 0,
  chatSeen: new Set(), // ids of the messages shown
  transportStates: {send: null, recv: null},
  quality: null,
};
window.__matinee = app;

// ---------------------------------------------------------------- toasts

function toast(text, {kind = 'info', ms = 6000} = {}) {
  const el = h('div', {class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status'}, text);
  const close = () => {
    el.classList.add('leaving');
    setTimeout(() => el.remove(), 250);
  };
  el.append(h('button', {type: 'button', class: 'ghost icon', 'aria-label': 'Dismiss', onclick: close}, icon('close')));
  $('toasts').append(el);
  if (ms) setTimeout(close, ms);
}

function fatal(title, text, {retry = null} = {}) {
  $('fatal-title').textContent = title;
  $('fatal-text').textContent = text;
  const b = $('fatal-retry');
  b.hidden = !retry;
  b.onclick = retry;
  $('fatal').hidden = false;
  $('prejoin').hidden = true;
  renderConn();
}

// ---------------------------------------------------------------- tiles

function displayName(peerId) {
  if (app.client?.me && peerId === app.client.me.id) return 'You';
  return app.client?.peers.get(peerId)?.name || 'Someone';
}

function initials(name) {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join('') || '?';
}

/**
 * A Tile is one person's screen share or one person's camera+mic: a video
 * element playing every track of that source, with its overlay, label and
 * controls.
 */
class Tile {
  constructor({key, peerId, source, local = false}) {
    this.key = key;
    this.peerId = peerId;
    this.source = source; // "screen" or "user"
    this.local = local;
    this.entries = new Map(); // producerId (remote) or kind (local) → {track, consumer?, producer?, stale, prev}
    this.userMuted = false;
    this.stallSeconds = 0;
    this.quality = null;
    this.statsOpen = false;

    this.video = h('video', {playsinline: true, autoplay: true, 'data-testid': local ? 'local-video' : 'remote-video'});
    this.video.muted = true; // until play() decides
    this.video.playsInline = true;
    this.overlay = h('div', {class: 'tile-overlay', hidden: true});
    this.avatar = h('div', {class: 'avatar', hidden: true});
    this.badge = h('span', {class: 'q-badge', title: 'Connection quality'});
    this.nameEl = h('span', {class: 'tile-name'});
    this.statsEl = h('pre', {class: 'tile-stats', hidden: true});
    this.muteBtn = h('button', {type: 'button', class: 'tile-btn', title: 'Mute', 'aria-label': 'Mute', onclick: (ev) => {
      ev.stopPropagation();
      this.setMuted(!this.video.muted);
    }});
    this.volume = h('input', {type: 'range', min: 0, max: 1, step: 0.05, value: 1, class: 'volume', 'aria-label': 'Volume', onclick: (ev) => ev.stopPropagation(), oninput: () => {
      this.video.volume = Number(this.volume.value);
      if (this.video.volume > 0 && this.userMuted) this.setMuted(false);
    }});
    this.fsBtn = h('button', {type: 'button', class: 'tile-btn', title: 'Full screen', 'aria-label': 'Full screen', onclick: (ev) => {
      ev.stopPropagation();
      this.toggleFullscreen();
    }}, icon('fullscreen'));
    this.statsBtn = h('button', {type: 'button', class: 'tile-btn', title: 'Statistics', 'aria-label': 'Statistics', onclick: (ev) => {
      ev.stopPropagation();
      this.statsOpen = !this.statsOpen;
      this.render();
    }}, icon('info'));
    this.audioControls = h('span', {class: 'audio-controls'}, this.muteBtn, this.volume);
    this.el = h('div', {class: `tile ${local ? 'local' : 'remote'} source-${source}`, dataset: {key}},
      this.video, this.avatar, this.overlay, this.statsEl,
      h('div', {class: 'tile-bar'},
        h('span', {class: 'tile-label'}, this.badge, this.nameEl),
        h('span', {class: 'tile-controls'}, this.audioControls, this.statsBtn, this.fsBtn)));
    this.el.addEventListener('click', () => {
      if (!this.el.classList.contains('on-stage')) {
        app.pinned = this.key;
        layout();
      }
    });
    this.video.addEventListener('dblclick', () => this.toggleFullscreen());
    for (const ev of ['playing', 'resize', 'loadedmetadata', 'emptied', 'pause']) {
      this.video.addEventListener(ev, () => this.render());
    }
    if (local) {
      this.audioControls.hidden = true;
    }
    this.render();
  }

  get hasVideo() {
    return [...this.entries.values()].some((e) => e.track.kind === 'video');
  }

  get hasAudio() {
    return [...this.entries.values()].some((e) => e.track.kind === 'audio');
  }

  set(id, entry) {
    const old = this.entries.get(id);
    this.entries.set(id, {...entry, stale: false, prev: null});
    if (old && old.track === entry.track) return;
    entry.track.addEventListener('mute', () => this.render());
    entry.track.addEventListener('unmute', () => this.render());
    this.attach();
  }

  delete(id) {
    this.entries.delete(id);
    this.attach();
  }

  markStale() {
    for (const e of this.entries.values()) e.stale = true;
    this.render();
  }

  get allStale() {
    return this.entries.size > 0 && [...this.entries.values()].every((e) => e.stale);
  }

  // Points the video element at the current tracks (coalesced: video and
  // audio usually arrive together).
  attach() {
    if (this._attachQueued) return;
    this._attachQueued = true;
    queueMicrotask(() => {
      this._attachQueued = false;
      const tracks = [...this.entries.values()].map((e) => e.track);
      const want = this.local ? tracks.filter((t) => t.kind === 'video') : tracks;
      const cur = this.video.srcObject;
      const same = cur && cur.getTracks().length === want.length && want.every((t) => cur.getTracks().includes(t));
      if (!same) this.video.srcObject = want.length ? new MediaStream(want) : null;
      this.play();
      this.render();
    });
  }

  async play() {
    const v = this.video;
    if (!v.srcObject) return;
    v.muted = this.local || this.userMuted || app.autoplayBlocked || !this.hasAudio;
    try {
      await v.play();
    } catch (err) {
      if (err.name === 'NotAllowedError' && !v.muted) {
        // Sound needs a tap first (phones, fresh tabs): play muted and
        // say so.
        app.autoplayBlocked = true;
        v.muted = true;
        renderUnmute();
        try {
          await v.play();
        } catch (e2) {
          console.warn('matinee: cannot play', e2);
        }
      } else if (err.name !== 'AbortError') {
        console.warn('matinee: cannot play', err);
      }
    }
    this.render();
  }

  setMuted(m) {
    this.userMuted = m;
    if (!m && app.autoplayBlocked) {
      unmuteAll(); // this click is the gesture autoplay was waiting for
      return;
    }
    this.video.muted = this.local || m;
    this.render();
  }

  toggleFullscreen() {
    if (document.fullscreenElement) {
      document.exitFullscreen().catch(() => {});
    } else if (this.el.requestFullscreen) {
      this.el.requestFullscreen().catch(() => {
        if (this.video.webkitEnterFullscreen) this.video.webkitEnterFullscreen();
      });
    } else if (this.video.webkitEnterFullscreen) {
      this.video.webkitEnterFullscreen(); // iPhone
    }
  }

  // Picks the overlay text: a person should never look at a silent black
  // rectangle without knowing why.
  overlayText() {
    if (this.allStale) return 'Reconnecting…';
    if (!this.hasVideo) return null;
    const ve = [...this.entries.values()].find((e) => e.track.kind === 'video');
    if (!this.local && ve.consumer?.producerPaused) return 'Paused';
    if (!this.local && ve.consumer?.spatialLayer === -1) return 'Video paused: the connection is too slow for it right now';
    if (this.video.videoWidth === 0) return this.local ? 'Starting your screen…' : 'Waiting for video…';
    if (this.stallSeconds >= 3) return 'Video stalled — waiting for the picture…';
    return null;
  }

  render() {
    const name = this.local ? 'You' : displayName(this.peerId);
    const what = this.source === 'screen' ? (this.local && app.share ? `screen · ${MODES[app.share.mode].label}` : 'screen') : this.hasVideo ? 'camera' : 'mic';
    this.nameEl.textContent = `${name} · ${what}`;
    const text = this.overlayText();
    this.overlay.hidden = !text;
    if (text) this.overlay.textContent = text;
    this.overlay.classList.toggle('dim', text !== null && this.video.videoWidth > 0);
    const audioOnly = !this.hasVideo && this.entries.size > 0;
    this.avatar.hidden = !audioOnly;
    this.el.classList.toggle('audio-only', audioOnly);
    if (audioOnly) this.avatar.replaceChildren(h('span', {class: 'initials'}, initials(name)), h('span', {class: 'avatar-note'}, 'audio only'));
    this.audioControls.hidden = this.local || !this.hasAudio;
    const muted = this.video.muted;
    if (this.muteBtn.dataset.muted !== String(muted)) {
      this.muteBtn.dataset.muted = String(muted);
      this.muteBtn.replaceChildren(icon(muted ? 'muted' : 'volume'));
    }
    this.muteBtn.title = muted ? 'Unmute' : 'Mute';
    this.muteBtn.setAttribute('aria-label', this.muteBtn.title);
    this.muteBtn.classList.toggle('muted', muted);
    this.badge.dataset.q = this.quality || 'unknown';
    this.badge.title = this.quality ? `Connection: ${this.quality}` : 'Connection quality';
    this.statsEl.hidden = !(app.showStats || this.statsOpen) || this.statsEl.textContent === '';
  }

  async updateStats() {
    let lines;
    if (this.local) {
      const sums = {};
      for (const [kind, e] of this.entries) {
        if (!e.producer) continue;
        e.prev = outboundSummary(await e.producer.getStats(), e.prev);
        sums[kind] = e.prev;
      }
      lines = describeOutbound(sums.video, sums.audio);
      this.quality = quality({lossPct: sums.video?.lossPct ?? sums.audio?.lossPct, rttMs: sums.video?.rttMs ?? sums.audio?.rttMs});
    } else {
      let v = null;
      let a = null;
      for (const e of this.entries.values()) {
        if (!e.consumer || e.stale) continue;
        const s = inboundSummary(await e.consumer.getStats(), e.prev);
        if (!s) continue;
        e.prev = s;
        if (s.kind === 'video') v = s;
        else a = s;
      }
      if (v && v.decodedPerSec !== null) {
        const paused = [...this.entries.values()].some((e) => e.track.kind === 'video' && e.consumer?.producerPaused);
        // A still screen sends few frames, so only frames and bytes both
        // standing still count as a stall.
        const still = v.decodedPerSec < 0.5 && (v.kbps === null || v.kbps < 1);
        this.stallSeconds = still && !paused ? this.stallSeconds + 1 : 0;
      }
      const vc = [...this.entries.values()].find((e) => e.track.kind === 'video' && !e.stale)?.consumer;
      let layer = null;
      if (vc && vc.spatialLayer !== null && vc.spatialLayer !== undefined) {
        layer = vc.spatialLayer < 0 ? 'none (paused for bandwidth)' : `${vc.spatialLayer} of 0–2`;
        if (vc.preferredLayer !== undefined) layer += ` (wanted ≤ ${vc.preferredLayer})`;
      }
      lines = v || a ? describeInbound(v, a, layer) : [];
      if (v || a) {
        this.quality = quality({lossPct: v?.lossPct ?? a?.lossPct, rttMs: v?.rttMs ?? a?.rttMs, stalled: this.stallSeconds >= 3});
      }
    }
    this.statsEl.textContent = lines.join('\n');
    this.render();
  }

  remove() {
    this.video.srcObject = null;
    this.el.remove();
  }
}

function tileFor(key, init) {
  let t = app.tiles.get(key);
  if (!t) {
    t = new Tile({key, ...init});
    app.tiles.set(key, t);
  }
  return t;
}

function dropTileIfEmpty(t) {
  if (t.entries.size > 0) return;
  t.remove();
  app.tiles.delete(t.key);
  if (app.pinned === t.key) app.pinned = null;
}

function sourceOf(appData, kind) {
  return appData?.source === 'screen' ? 'screen' : 'user';
}

// Puts one tile on the stage and the rest in the strip: the pinned one if
// any, else the first shared screen of someone else, else a camera.
function layout() {
  const all = [...app.tiles.values()];
  const remote = all.filter((t) => !t.local);
  let stage = app.pinned ? app.tiles.get(app.pinned) : null;
  if (!stage) stage = remote.find((t) => t.source === 'screen') || remote.find((t) => t.hasVideo) || null;
  const main = $('stage-main');
  const strip = $('strip');
  for (const t of all) {
    const onStage = t === stage;
    t.el.classList.toggle('on-stage', onStage);
    const parent = onStage ? main : strip;
    if (t.el.parentElement !== parent) {
      parent.append(t.el);
      t.play();
    }
    t.render();
  }
  // Stable order in the strip: screens first, then people by name.
  const rest = all.filter((t) => t !== stage).sort((a, b) => (a.source === b.source ? displayName(a.peerId).localeCompare(displayName(b.peerId)) : a.source === 'screen' ? -1 : 1));
  for (const t of rest) strip.append(t.el);
  strip.hidden = rest.length === 0;
  requestAnimationFrame(preferLayers);
  document.body.classList.toggle('has-strip', rest.length > 0);
  const empty = $('empty');
  empty.hidden = !!stage;
  if (!stage) {
    const sharing = !!app.share;
    const others = app.client ? app.client.peers.size : 0;
    $('empty-title').textContent = sharing ? 'You are sharing your screen' : others === 0 ? 'You are the first one here' : 'Nobody is sharing yet';
    $('empty-text').textContent = sharing
      ? `${others === 0 ? 'Nobody else is here yet — send them the invite link.' : `${others} ${others === 1 ? 'person sees' : 'people see'} it on their stage.`}`
      : others === 0
        ? 'Invite people with the link above, then press Share screen.'
        : 'Press Share screen to start the show, or wait for someone else to.';
  }
  renderUnmute();
}

// Asks the SFU for no bigger a picture than each tile shows: the strip's
// thumbnails take the smallest simulcast layer.
function preferLayers() {
  for (const t of app.tiles.values()) {
    if (t.local) continue;
    const px = t.el.clientWidth * (window.devicePixelRatio || 1);
    const layer = px <= 500 ? 0 : px <= 1000 ? 1 : 2;
    for (const e of t.entries.values()) {
      if (e.consumer && e.track.kind === 'video' && !e.stale) e.consumer.setPreferredLayer(layer).catch(() => {});
    }
  }
}
window.addEventListener('resize', () => {
  clearTimeout(app.resizeTimer);
  app.resizeTimer = setTimeout(preferLayers, 300);
});

function renderUnmute() {
  const any = [...app.tiles.values()].some((t) => !t.local && t.hasAudio);
  $('unmute-all').hidden = !(app.autoplayBlocked && any);
}

function unmuteAll() {
  app.autoplayBlocked = false;
  for (const t of app.tiles.values()) t.play();
  renderUnmute();
}
$('unmute-all').addEventListener('click', unmuteAll);

// ---------------------------------------------------------------- people and chat

function renderPeople() {
  const c = app.client;
  const ul = $('participants');
  ul.replaceChildren();
  if (!c || !c.me) return;
  const sources = (peerId) => {
    const s = new Set();
    for (const p of c.producers.values()) if (p.peerId === peerId) s.add(p.appData?.source || p.kind);
    return s;
  };
  const mine = new Set();
  if (app.share) mine.add('screen');
  if (app.camera) mine.add('camera');
  if (app.mic) mine.add('mic');
  const people = [{id: c.me.id, name: c.me.name, role: c.me.role, me: true, src: mine}];
  const others = [...c.peers.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const p of others) people.push({...p, me: false, src: sources(p.id)});
  for (const p of people) {
    const icons = [];
    const badge = (name, title) => h('span', {title, 'aria-label': title, role: 'img'}, icon(name));
    if (p.src.has('screen')) icons.push(badge('screen', 'Sharing a screen'));
    if (p.src.has('camera')) icons.push(badge('camera', 'Camera on'));
    if (p.src.has('mic')) icons.push(badge('mic', 'Microphone on'));
    ul.append(h('li', {'data-testid': 'participant', class: p.me ? 'me' : ''},
      h('span', {class: 'avatar small', 'aria-hidden': 'true'}, initials(p.name)),
      h('span', {class: 'p-name'}, p.name, p.me ? h('span', {class: 'muted'}, ' (you)') : null),
      p.role === 'host' ? h('span', {class: 'role'}, 'host') : null,
      h('span', {class: 'p-icons'}, icons)));
  }
  const n = String(people.length);
  $('people-count').textContent = n;
  $('people-count-2').textContent = n;
}

function setTab(tab) {
  const chat = tab === 'chat';
  $('tab-people').hidden = chat;
  $('tab-chat').hidden = !chat;
  $('tab-btn-people').setAttribute('aria-selected', String(!chat));
  $('tab-btn-chat').setAttribute('aria-selected', String(chat));
  if (chat) {
    app.unread = 0;
    renderUnread();
    if (app.chatAvailable && window.matchMedia('(hover: hover)').matches) $('chat-input').focus();
  }
}
$('tab-btn-people').addEventListener('click', () => setTab('people'));
$('tab-btn-chat').addEventListener('click', () => setTab('chat'));

function sideOpen() {
  if (window.matchMedia('(max-width: 899px) and (orientation: portrait)').matches) return true; // always shown below the picture
  return document.body.classList.contains('side-open') || (!document.body.classList.contains('side-closed') && window.matchMedia('(min-width: 900px)').matches);
}

function toggleSide(open = !sideOpen()) {
  const wide = window.matchMedia('(min-width: 900px)').matches;
  document.body.classList.toggle('side-open', open && !wide);
  document.body.classList.toggle('side-closed', !open && wide);
  $('toggle-side').setAttribute('aria-expanded', String(open));
  if (open && !$('tab-chat').hidden) {
    app.unread = 0;
    renderUnread();
  }
}
$('toggle-side').addEventListener('click', () => toggleSide());
$('close-side').addEventListener('click', () => toggleSide(false));

function renderUnread() {
  const u = $('chat-unread');
  u.hidden = app.unread === 0;
  u.textContent = String(app.unread);
  $('unread-dot').hidden = app.unread === 0 || sideOpen();
}

// A chat message from the server: {message: {id, peerId, name, text, at}}
// (a notification, a chat result and the join history all carry these).
function normalizeChat(m) {
  const msg = m && m.message && typeof m.message === 'object' ? m.message : m || {};
  return {
    id: msg.id || null,
    peerId: msg.peerId || null,
    name: msg.name || (msg.peerId ? displayName(msg.peerId) : 'Someone'),
    text: String(msg.text ?? ''),
    at: msg.at || msg.ts || Date.now(),
  };
}

function addChat(m) {
  if (!m.text) return;
  if (m.id) {
    if (app.chatSeen.has(m.id)) return; // our own, back from the server
    app.chatSeen.add(m.id);
  }
  const me = app.client?.me;
  const mine = !!(me && m.peerId === me.id);
  const when = new Date(m.at);
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(h('li', {'data-testid': 'chat-message', class: mine ? 'mine' : ''},
    h('div', {class: 'msg-head'}, h('b', {}, mine ? 'You' : m.name), ' ', h('time', {datetime: when.toISOString()}, when.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'}))),
    h('div', {class: 'msg-text'}, m.text)));
  $('chat-empty').hidden = true;
  if (atBottom || mine) list.scrollTop = list.scrollHeight;
  if (!mine && ($('tab-chat').hidden || !sideOpen())) {
    app.unread++;
    renderUnread();
  }
}

function disableChat() {
  app.chatAvailable = false;
  $('chat-form').hidden = true;
  $('chat-unavailable').hidden = false;
  $('chat-empty').hidden = true;
}

$('chat-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('chat-input');
  const text = input.value.trim();
  if (!text || !app.client || app.client.state !== 'joined') return;
  input.value = '';
  try {
    const res = await app.client.request('chat', {text});
    addChat(res && res.message ? normalizeChat(res) : {peerId: app.client.me.id, name: app.client.me.name, text, at: Date.now()});
  } catch (err) {
    if (err instanceof RpcError && err.code === Codes.METHOD_NOT_FOUND) {
      disableChat();
      return;
    }
    input.value = text;
    const why = err instanceof RpcError && err.code === RATE_LIMITED ? 'you are sending too fast; wait a moment.' : err.message.replace(/^chat: /, '');
    toast(`Message not sent: ${why}`, {kind: 'error'});
  }
});

// ---------------------------------------------------------------- connection state

function renderConn() {
  const el = $('conn');
  const c = app.client;
  let state = 'connecting';
  let text = 'Connecting…';
  let banner = null;
  if (!$('fatal').hidden) {
    state = 'failed';
    text = 'Not connected';
  } else if (c) {
    switch (c.state) {
      case 'joined': {
        const ts = Object.values(app.transportStates);
        if (ts.some((s) => s === 'failed' || s === 'disconnected' || s === 'restarting')) {
          state = 'reconnecting';
          text = 'Reconnecting media…';
        } else {
          state = 'connected';
          text = app.quality === 'poor' ? 'Connected · weak' : 'Connected';
        }
        break;
      }
      case 'reconnecting': {
        state = 'reconnecting';
        const secs = Math.max(0, Math.ceil((app.retryAt - Date.now()) / 1000));
        const wait = secs > 0 ? ` Retrying in ${secs} s…` : ' Retrying…';
        if (c.me) {
          text = 'Reconnecting…';
          banner = `Connection lost.${wait}`;
        } else {
          text = 'Server unreachable';
          banner = navigator.onLine === false ? `You are offline.${wait}` : `Can't reach the Matinee server.${wait}`;
        }
        break;
      }
      case 'failed':
        state = 'failed';
        text = 'Disconnected';
        break;
      case 'closed':
        state = 'closed';
        text = 'Left the room';
        break;
    }
  }
  el.dataset.state = state;
  el.dataset.quality = state === 'connected' ? app.quality || 'unknown' : '';
  el.querySelector('.conn-text').textContent = text;
  const b = $('banner');
  b.hidden = !banner;
  if (banner) {
    $('banner-text').textContent = banner;
    const action = $('banner-action');
    action.hidden = false;
    action.textContent = 'Retry now';
    action.onclick = () => app.client?.retryNow();
  }
}
setInterval(() => {
  if (app.client?.state === 'reconnecting') renderConn();
}, 1000);

// ---------------------------------------------------------------- joining

function showPrejoin({error = '', password = false} = {}) {
  $('prejoin-room').textContent = roomId;
  const input = $('prejoin-name');
  if (!input.value) input.value = loadName();
  $('password-field').hidden = !password;
  $('prejoin-error').textContent = error;
  $('prejoin').hidden = false;
  (password ? $('prejoin-password') : input).focus();
}

$('prejoin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('prejoin-name').value.trim();
  if (!name) {
    $('prejoin-error').textContent = 'Enter your name first — it is how the others will see you.';
    $('prejoin-name').focus();
    return;
  }
  saveName(name);
  $('prejoin').hidden = true;
  start(name, $('prejoin-password').value || undefined);
});

function start(name, password) {
  if (app.client) app.client.close();
  const c = new Client({room: roomId, name, password});
  app.client = c;
  app.transportStates = {send: null, recv: null};

  c.addEventListener('statechange', ({detail}) => {
    if (detail.state === 'reconnecting') app.retryAt = Date.now() + (detail.retryIn || 0);
    renderConn();
  });
  c.addEventListener('joined', ({detail}) => {
    app.transportStates = {send: null, recv: null}; // new transports come with a new session
    rememberRoom(roomId);
    for (const m of detail.result?.chat || []) addChat(normalizeChat(m));
    document.title = `${roomId} · Matinee`;
    if (detail.rejoined) toast('Reconnected.', {ms: 2500});
    renderPeople();
    layout();
  });
  c.addEventListener('transportstate', ({detail}) => {
    app.transportStates[detail.direction] = detail.state;
    renderConn();
  });
  c.addEventListener('peerjoined', ({detail}) => {
    renderPeople();
    layout();
  });
  c.addEventListener('peerupdated', () => renderPeople());
  c.addEventListener('peerleft', ({detail}) => {
    renderPeople();
    for (const t of [...app.tiles.values()]) {
      if (t.peerId === detail.peer.id) {
        t.entries.clear();
        dropTileIfEmpty(t);
      }
    }
    layout();
  });
  for (const ev of ['produceradded', 'producerclosed', 'producerpaused', 'producerresumed']) {
    c.addEventListener(ev, ({detail}) => {
      if (ev === 'producerclosed') {
        for (const t of [...app.tiles.values()]) {
          if (!t.local && t.entries.has(detail.producer.id)) {
            t.delete(detail.producer.id);
            dropTileIfEmpty(t);
          }
        }
        layout();
      }
      renderPeople();
      for (const t of app.tiles.values()) t.render();
    });
  }
  c.addEventListener('consumer', ({detail: {consumer}}) => {
    const info = c.producers.get(consumer.producerId);
    const source = sourceOf(info?.appData, consumer.kind);
    const t = tileFor(`${consumer.peerId}:${source}`, {peerId: consumer.peerId, source});
    t.set(consumer.producerId, {track: consumer.track, consumer});
    layout();
  });
  c.addEventListener('consumerclosed', ({detail: {consumer, reason}}) => {
    for (const t of [...app.tiles.values()]) {
      const e = t.entries.get(consumer.producerId);
      if (!e || e.consumer !== consumer) continue;
      if (reason === 'reconnect') {
        e.stale = true;
        t.render();
      } else {
        t.delete(consumer.producerId);
        dropTileIfEmpty(t);
      }
    }
    layout();
  });
  c.addEventListener('layerchange', ({detail: {consumer}}) => {
    for (const t of app.tiles.values()) if (t.entries.get(consumer.producerId)?.consumer === consumer) t.render();
  });
  c.addEventListener('notification', ({detail: {method, params}}) => {
    if (method === 'chat') addChat(normalizeChat(params));
  });

  renderConn();
  c.join().catch((err) => joinFailed(err, name, password));
}

function joinFailed(err, name, password) {
  if (!(err instanceof RpcError)) {
    fatal('Could not join', err.message || String(err), {retry: () => location.reload()});
    return;
  }
  switch (err.code) {
    case Codes.ROOM_FULL:
      fatal('This room is full', `“${roomId}” already has as many people as it can take. Try again when someone leaves.`, {retry: () => {
        $('fatal').hidden = true;
        start(name, password);
      }});
      break;
    case Codes.NOT_FOUND:
      fatal('Room not found', `There is no room called “${roomId}”. This server only opens rooms that were created in advance — check the link, or ask the host for it.`);
      break;
    case Codes.FORBIDDEN:
      showPrejoin({password: true, error: password ? 'That password is not right.' : 'This room needs a password.'});
      renderConn();
      break;
    case Codes.INVALID_PARAMS:
      showPrejoin({error: `The server did not accept that: ${err.message.replace(/^join: /, '')}`});
      break;
    default:
      fatal('Could not join', err.message, {retry: () => location.reload()});
  }
}

// ---------------------------------------------------------------- sharing

function currentMode() {
  return document.querySelector('input[name="mode"]:checked')?.value === 'slides' ? 'slides' : 'movie';
}

// The screen is sent in three simulcast layers (a quarter, half and full
// size) so that the SFU can give a phone on a weak link a smaller picture
// without making everyone else's worse.
function screenVideoSettings(mode) {
  const m = MODES[mode];
  return {
    degradationPreference: m.degradation,
    encodings: [
      {rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 250_000, maxFramerate: 15},
      {rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 900_000, maxFramerate: 30},
      {rid: 'f', scaleResolutionDownBy: 1, maxBitrate: m.maxBitrate, maxFramerate: 30},
    ],
  };
}

async function startShare() {
  if (app.share || !app.client || app.client.state !== 'joined') return;
  if (!caps.screenShare) {
    toast(window.isSecureContext
      ? 'This browser cannot share its screen (phones and tablets usually cannot). You can still watch.'
      : 'Sharing a screen needs the secure address: open this page through https:// to share. You can still watch.', {kind: 'error', ms: 9000});
    return;
  }
  const mode = currentMode();
  const btn = $('share');
  btn.disabled = true;
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({
      video: {width: {max: 1920}, height: {max: 1080}, frameRate: {ideal: 30, max: 30}},
      audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: {ideal: 2}, sampleRate: {ideal: 48000}, suppressLocalAudioPlayback: false},
      systemAudio: 'include',
      selfBrowserSurface: 'exclude',
      surfaceSwitching: 'include',
    });
  } catch (err) {
    btn.disabled = false;
    shareError(err);
    return;
  }
  const [video] = stream.getVideoTracks();
  const [audio] = stream.getAudioTracks();
  video.contentHint = MODES[mode].hint;
  if (audio) {
    audio.contentHint = 'music';
    // Some browsers ignore these in getDisplayMedia; ask again.
    await audio.applyConstraints({echoCancellation: false, noiseSuppression: false, autoGainControl: false}).catch(() => {});
  }
  const specs = [{track: video, streams: [stream], appData: {source: 'screen', mode}, ...screenVideoSettings(mode)}];
  if (audio) {
    specs.push({track: audio, streams: [stream], appData: {source: 'screen'}, opus: {stereo: true, maxAverageBitrate: SCREEN_AUDIO_BITRATE}, encodings: [{maxBitrate: SCREEN_AUDIO_BITRATE}]});
  }
  app.share = {mode, stream, producers: []};
  try {
    app.share.producers = await app.client.produce(specs);
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    app.share = null;
    btn.disabled = false;
    toast(`Could not start sharing: ${err.message}`, {kind: 'error'});
    renderShare();
    return;
  }
  video.addEventListener('ended', () => stopShare()); // the browser's own "Stop sharing"
  const t = tileFor('me:screen', {peerId: app.client.me.id, source: 'screen', local: true});
  app.share.producers.forEach((p) => t.set(p.kind, {track: p.track, producer: p}));
  if (!audio) {
    toast('Sharing without sound. To share sound too, pick a browser tab or tick “Share audio” (system audio: Windows and ChromeOS).', {ms: 9000});
  }
  btn.disabled = false;
  renderShare();
  renderPeople();
  layout();
}

function shareError(err) {
  switch (err.name) {
    case 'NotAllowedError':
      toast('Screen sharing was cancelled or blocked. If you did not cancel it, allow screen sharing for this site in the browser (and, on macOS, under System Settings → Privacy → Screen Recording).', {kind: 'error', ms: 10000});
      break;
    case 'NotReadableError':
    case 'AbortError':
      toast('Your screen could not be captured. Another app may be using it; try again.', {kind: 'error'});
      break;
    case 'NotSupportedError':
    case 'TypeError':
      toast('This browser cannot share its screen. You can still watch.', {kind: 'error'});
      break;
    default:
      toast(`Could not share the screen: ${err.message}`, {kind: 'error'});
  }
}

async function stopShare() {
  const s = app.share;
  if (!s) return;
  app.share = null;
  s.stream.getTracks().forEach((t) => t.stop());
  const t = app.tiles.get('me:screen');
  if (t) {
    t.entries.clear();
    dropTileIfEmpty(t);
  }
  renderShare();
  renderPeople();
  layout();
  await Promise.all(s.producers.map((p) => p.close()));
}

function renderShare() {
  const sharing = !!app.share;
  $('share').hidden = sharing;
  $('stop-share').hidden = !sharing;
  document.body.classList.toggle('sharing', sharing);
}

$('share').addEventListener('click', startShare);
$('stop-share').addEventListener('click', stopShare);

const storedMode = (() => {
  try {
    return localStorage.getItem(MODE_KEY);
  } catch {
    return null;
  }
})();
if (storedMode === 'slides') document.querySelector('input[name="mode"][value="slides"]').checked = true;
for (const r of document.querySelectorAll('input[name="mode"]')) {
  r.addEventListener('change', async () => {
    const mode = currentMode();
    try {
      localStorage.setItem(MODE_KEY, mode);
    } catch {
      // not remembered
    }
    if (!app.share) return;
    app.share.mode = mode;
    const vp = app.share.producers.find((p) => p.kind === 'video');
    if (vp) {
      vp.track.contentHint = MODES[mode].hint;
      vp.appData.mode = mode;
      await vp.setParameters(screenVideoSettings(mode)).catch((err) => console.warn('matinee: mode', err));
    }
    app.tiles.get('me:screen')?.render();
    toast(`Sharing as ${MODES[mode].label}.`, {ms: 2500});
  });
}

// ---------------------------------------------------------------- camera and microphone

async function toggleDevice(kind) {
  const c = app.client;
  if (!c || c.state !== 'joined') return;
  const slot = kind === 'video' ? 'camera' : 'mic';
  const btn = $(kind === 'video' ? 'cam' : 'mic');
  if (app[slot]) {
    const {stream, producer} = app[slot];
    app[slot] = null;
    stream.getTracks().forEach((t) => t.stop());
    const t = app.tiles.get('me:user');
    if (t) {
      t.delete(kind);
      dropTileIfEmpty(t);
    }
    btn.setAttribute('aria-pressed', 'false');
    renderPeople();
    layout();
    await producer.close();
    return;
  }
  if (!caps.userMedia) {
    toast(window.isSecureContext ? 'This browser cannot use a camera or microphone here.' : 'The camera and microphone need the secure address: open this page through https://.', {kind: 'error'});
    return;
  }
  btn.disabled = true;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(kind === 'video'
      ? {video: {width: {ideal: 640}, height: {ideal: 360}, frameRate: {ideal: 24, max: 30}}}
      : {audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true}});
  } catch (err) {
    btn.disabled = false;
    const what = kind === 'video' ? 'camera' : 'microphone';
    if (err.name === 'NotAllowedError') toast(`Access to the ${what} was denied. Allow it in the browser's site settings (the icon left of the address) and try again.`, {kind: 'error', ms: 10000});
    else if (err.name === 'NotFoundError' || err.name === 'OverconstrainedError') toast(`No ${what} found.`, {kind: 'error'});
    else if (err.name === 'NotReadableError') toast(`The ${what} is in use by another app.`, {kind: 'error'});
    else toast(`Could not start the ${what}: ${err.message}`, {kind: 'error'});
    return;
  }
  const track = stream.getTracks()[0];
  const spec = kind === 'video'
    ? {track, streams: [stream], appData: {source: 'camera'}, encodings: [{maxBitrate: 600_000, maxFramerate: 24}]}
    : {track, streams: [stream], appData: {source: 'mic'}, opus: {maxAverageBitrate: 40_000}};
  try {
    const producer = await c.produce(spec);
    app[slot] = {stream, producer};
    const t = tileFor('me:user', {peerId: c.me.id, source: 'user', local: true});
    t.set(kind, {track, producer});
    btn.setAttribute('aria-pressed', 'true');
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    toast(`Could not send the ${kind === 'video' ? 'camera' : 'microphone'}: ${err.message}`, {kind: 'error'});
  }
  btn.disabled = false;
  renderPeople();
  layout();
}
$('cam').addEventListener('click', () => toggleDevice('video'));
$('mic').addEventListener('click', () => toggleDevice('audio'));

// ---------------------------------------------------------------- stats

$('stats-toggle').addEventListener('click', () => {
  app.showStats = !app.showStats;
  $('stats-toggle').setAttribute('aria-pressed', String(app.showStats));
  for (const t of app.tiles.values()) t.render();
});

async function statsTick() {
  if (document.hidden || !app.client || app.client.state !== 'joined') return;
  const order = {good: 0, fair: 1, poor: 2};
  let worst = null;
  for (const t of [...app.tiles.values()]) {
    try {
      await t.updateStats();
    } catch (err) {
      console.debug('matinee: stats', err);
    }
    if (t.quality && (worst === null || order[t.quality] > order[worst])) worst = t.quality;
  }
  if (worst !== app.quality) {
    app.quality = worst;
    renderConn();
  }
}
setInterval(statsTick, 1000);

// ---------------------------------------------------------------- page

$('room-name').textContent = roomId;
$('prejoin-room').textContent = roomId;

$('copy-link').addEventListener('click', async () => {
  const url = window.location.origin + window.location.pathname;
  if (navigator.share && window.matchMedia('(hover: none)').matches) {
    try {
      await navigator.share({title: `Matinee: ${roomId}`, url});
      return;
    } catch (err) {
      if (err.name === 'AbortError') return;
    }
  }
  try {
    await navigator.clipboard.writeText(url);
    toast('Invite link copied. Send it to the people you want to watch with.', {ms: 3500});
  } catch {
    window.prompt('Copy this invite link:', url);
  }
});

$('leave').addEventListener('click', async (ev) => {
  ev.preventDefault();
  if (app.share) await stopShare();
  if (app.client) await app.client.close();
  window.location.assign('/');
});

window.addEventListener('pagehide', (ev) => {
  if (!ev.persisted && app.client) app.client.close();
});
window.addEventListener('pageshow', (ev) => {
  // Back from the back-forward cache: the old connection is gone.
  if (ev.persisted) location.reload();
});
window.addEventListener('online', () => app.client?.retryNow());
document.addEventListener('fullscreenchange', () => document.body.classList.toggle('fullscreen', !!document.fullscreenElement));

function boot() {
  renderShare();
  // Phones cannot capture a screen at all: no button. On an insecure
  // (http://) page the button stays and explains.
  if (!caps.screenShare && window.isSecureContext) {
    document.body.classList.add('no-screen-share');
  }
  const missing = missingBasics();
  if (missing) {
    fatal('This browser cannot join', `It lacks ${missing}. Use a current Chrome, Edge, Firefox or Safari.`);
    return;
  }
  if (!ROOM_RE.test(roomId)) {
    fatal('Not a room link', `“${roomId}” is not a room name. Room names are 1–64 letters, digits, “-” or “_”.`);
    return;
  }
  layout();
  const name = loadName();
  if (name) start(name);
  else showPrejoin();
}
boot();
