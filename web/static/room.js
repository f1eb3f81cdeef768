// The room page: a stage with the shared screen (or the synced video) big
// and cameras small, the controls to share, the people and chat panel with
// host controls, reactions, and every message a person needs when
// something goes wrong.

import {Client, capabilities, RpcError, Codes} from './client.js';
import {loadName, saveName, rememberRoom, ROOM_RE, missingBasics, h, modal, swapButtons} from './common.js';
import {inboundSummary, outboundSummary, quality, describeInbound, describeOutbound} from './stats.js';
import {icon, fillIcons} from './icons.js';
import {ServerClock} from './clock.js';
import {SyncedPlayer, canPlay, formatTime} from './player.js';
import {REACTIONS, reactionGlyph, reactionLabel} from './reactions.js';
import {videoEncodings, screenLayers, CAMERA_LAYERS} from './simulcast.js';

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
  share: null, // {mode, stream, producers: [], simulcast, width, height}
  oneQuality: null, // the sharer's own "send one quality only" choice; null follows the room
  camera: null, // {stream, producer}
  mic: null, // {stream, producer}
  chatAvailable: true,
  unread: 0,
  chatSeen: new Set(), // ids of the messages shown
  transportStates: {send: null, recv: null},
  quality: null,
  room: null, // RoomInfo: name and options (join result, roomUpdated)
  token: null, // join token from the invite link (#token=)
  clock: null, // ServerClock
  player: null, // SyncedPlayer of the movie tile
  movie: null, // MovieTile
  queue: [], // QueueItem[]: the videos to play next (join result, queueUpdated)
  subtitleMine: null, // {url, roomPick}: this viewer's own subtitle choice, while the room's pick is roomPick
};
window.__matinee = app;

// ---------------------------------------------------------------- toasts

function toast(text, {kind = 'info', ms = 6000, action = null} = {}) {
  const el = h('div', {class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status'}, h('span', {class: 'toast-text'}, text));
  const close = () => {
    el.classList.add('leaving');
    setTimeout(() => el.remove(), 250);
  };
  if (action) {
    el.append(h('button', {type: 'button', class: 'small', onclick: async () => {
      close();
      try {
        await action.run();
      } catch (err) {
        toast(`${action.label} failed: ${errText(err)}`, {kind: 'error'});
      }
    }}, action.label));
  }
  el.append(h('button', {type: 'button', class: 'ghost icon', 'aria-label': 'Dismiss', onclick: close}, icon('close')));
  $('toasts').append(el);
  if (ms) setTimeout(close, ms);
}

// An error's message without the "method: " prefix rpc.js puts on it.
function errText(err) {
  return String(err?.message || err).replace(/^[A-Za-z]+: /, '');
}

function fatal(title, text, {retry = null, retryLabel = 'Try again'} = {}) {
  $('fatal-title').textContent = title;
  $('fatal-text').textContent = text;
  const b = $('fatal-retry');
  b.hidden = !retry;
  b.textContent = retryLabel;
  b.onclick = retry;
  $('fatal').hidden = false;
  $('prejoin').hidden = true;
  // A modal dialog would sit above this and make it unreachable.
  watchDialog.close();
  inviteDialog.close();
  closeHostMenu();
  renderConn();
}

// ---------------------------------------------------------------- roles

function me() {
  return app.client?.me || null;
}

function isHost() {
  return me()?.role === 'host';
}

// Hosts control playback; guests too when the room has open control.
function mayControl() {
  const m = me();
  if (!m) return false;
  return m.role === 'host' || (m.role === 'guest' && !!app.room?.openControl);
}

// Hosts share; guests when the room lets them; viewers never.
function mayShare() {
  const m = me();
  if (!m) return true; // not joined yet: the buttons explain later
  return m.role === 'host' || (m.role === 'guest' && app.room?.guestsCanShare !== false);
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
// whenMetadata resolves once video knows its size and duration (or after
// ms, whichever comes first).
function whenMetadata(video, ms) {
  if (video.readyState >= HTMLMediaElement.HAVE_METADATA) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      video.removeEventListener('loadedmetadata', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    video.addEventListener('loadedmetadata', done);
  });
}

// A picture-in-picture button for a video, or null where the browser
// has none (Firefox, phones without it, a page that disallows it).
function pipButton(video) {
  if (!document.pictureInPictureEnabled || !video.requestPictureInPicture) return null;
  const btn = h('button', {type: 'button', class: 'tile-btn pip-btn', 'data-testid': 'pip', title: 'Picture in picture', 'aria-label': 'Picture in picture', 'aria-pressed': 'false', onclick: async (ev) => {
    ev.stopPropagation();
    try {
      if (document.pictureInPictureElement === video) await document.exitPictureInPicture();
      else {
        // A share whose stream was just replaced (a new track, the
        // stage changing hands) has no metadata for a moment, and the
        // browser refuses until it has: wait for it, well within the
        // press's user activation.
        await whenMetadata(video, 3000);
        await video.requestPictureInPicture();
      }
    } catch (err) {
      toast(`Picture in picture is not available: ${errText(err)}`, {ms: 3500});
    }
  }}, icon('pip'));
  video.addEventListener('enterpictureinpicture', () => btn.setAttribute('aria-pressed', 'true'));
  video.addEventListener('leavepictureinpicture', () => btn.setAttribute('aria-pressed', 'false'));
  return btn;
}

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
    this.pipBtn = pipButton(this.video);
    this.audioControls = h('span', {class: 'audio-controls'}, this.muteBtn, this.volume);
    this.el = h('div', {class: `tile ${local ? 'local' : 'remote'} source-${source}`, dataset: {key}},
      this.video, this.avatar, this.overlay, this.statsEl,
      h('div', {class: 'tile-bar'},
        h('span', {class: 'tile-label'}, this.badge, this.nameEl),
        h('span', {class: 'tile-controls'}, this.audioControls, this.statsBtn, this.pipBtn || '', this.fsBtn)));
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
    toggleFullscreen(this.el, this.video);
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

// ---------------------------------------------------------------- the synced video

const RATES = [0.5, 0.75, 1, 1.25, 1.5, 2];

/**
 * MovieTile is the synced video: a <video> driven by the SyncedPlayer, with
 * its own controls. Play, pause, seek and speed ask the server
 * (`playback`); the player follows the state that comes back, like
 * everyone else's.
 */
class MovieTile {
  constructor() {
    this.key = 'movie';
    this.local = false;
    this.source = 'movie';
    this.peerId = null;
    this.entries = new Map();
    this.userMuted = false;
    this.dragging = false;
    this.noticeTimer = null;

    this.video = h('video', {'data-testid': 'player', playsinline: true, preload: 'auto'});
    this.video.playsInline = true;
    this.overlay = h('div', {class: 'tile-overlay movie-overlay', 'data-testid': 'player-overlay', hidden: true});
    this.notice = h('div', {class: 'movie-notice', role: 'status', hidden: true});
    this.titleEl = h('span', {class: 'movie-title'});
    this.playBtn = h('button', {type: 'button', class: 'tile-btn play-btn', 'data-testid': 'play', title: 'Play', 'aria-label': 'Play', onclick: (ev) => {
      ev.stopPropagation();
      command('play');
    }}, icon('play'));
    this.pauseBtn = h('button', {type: 'button', class: 'tile-btn play-btn', 'data-testid': 'pause', title: 'Pause', 'aria-label': 'Pause', onclick: (ev) => {
      ev.stopPropagation();
      command('pause');
    }}, icon('pause'));
    this.seek = h('input', {type: 'range', class: 'seek', 'data-testid': 'seek', min: 0, max: 0, step: 'any', value: 0, 'aria-label': 'Position'});
    this.seek.addEventListener('input', () => {
      this.dragging = true;
      this.timeEl.textContent = `${formatTime(Number(this.seek.value))} / ${formatTime(this.video.duration)}`;
    });
    this.seek.addEventListener('change', () => {
      this.dragging = false;
      command('seek', {position: Number(this.seek.value)});
    });
    this.seek.addEventListener('click', (ev) => ev.stopPropagation());
    this.timeEl = h('span', {class: 'time', 'data-testid': 'player-time'}, '0:00');
    this.rate = h('select', {class: 'rate', 'data-testid': 'rate', 'aria-label': 'Speed', title: 'Speed', onclick: (ev) => ev.stopPropagation()},
      RATES.map((r) => h('option', {value: String(r)}, `${r}×`)));
    this.rate.value = '1';
    this.rate.addEventListener('change', () => command('rate', {rate: Number(this.rate.value)}));
    this.muteBtn = h('button', {type: 'button', class: 'tile-btn', title: 'Mute', 'aria-label': 'Mute', onclick: (ev) => {
      ev.stopPropagation();
      this.userMuted = !this.video.muted;
      if (!this.userMuted && app.autoplayBlocked) {
        unmuteAll();
        return;
      }
      this.video.muted = this.userMuted;
    }}, icon('volume'));
    this.volume = h('input', {type: 'range', min: 0, max: 1, step: 0.05, value: 1, class: 'volume', 'aria-label': 'Volume', onclick: (ev) => ev.stopPropagation(), oninput: () => {
      this.video.volume = Number(this.volume.value);
      if (this.video.volume > 0 && this.video.muted) {
        this.userMuted = false;
        if (app.autoplayBlocked) unmuteAll();
        else this.video.muted = false;
      }
    }});
    this.stopBtn = h('button', {type: 'button', class: 'tile-btn', 'data-testid': 'video-stop', title: 'Close the video for everyone', 'aria-label': 'Close the video for everyone', onclick: (ev) => {
      ev.stopPropagation();
      command('stop');
    }}, icon('eject'));
    this.fsBtn = h('button', {type: 'button', class: 'tile-btn', title: 'Full screen', 'aria-label': 'Full screen', onclick: (ev) => {
      ev.stopPropagation();
      toggleFullscreen(this.el, this.video);
    }}, icon('fullscreen'));
    this.nextBtn = h('button', {type: 'button', class: 'tile-btn', 'data-testid': 'next', title: 'Play next', 'aria-label': 'Play next', hidden: true, onclick: (ev) => {
      ev.stopPropagation();
      command('next');
    }}, icon('next'));
    // Subtitles: a controller's pick is the room's; anyone else's is
    // theirs alone (app.subtitleMine), until the room picks again.
    this.subs = h('select', {class: 'rate subs', 'data-testid': 'subtitles', 'aria-label': 'Subtitles', title: 'Subtitles', hidden: true, onclick: (ev) => ev.stopPropagation()});
    this.subs.addEventListener('change', () => {
      const v = this.subs.value;
      if (mayControl()) {
        app.subtitleMine = null;
        command('subtitle', {subtitle: v});
      } else {
        app.subtitleMine = {url: v, roomPick: app.player.state?.subtitle ?? ''};
      }
      this.renderTracks();
    });
    this.trackKey = '';
    this.pipBtn = pipButton(this.video);
    this.replayBtn = h('button', {type: 'button', class: 'primary', 'data-testid': 'replay', onclick: (ev) => {
      ev.stopPropagation();
      command('play', {position: 0});
    }}, icon('replay'), 'Replay');
    this.playNextBtn = h('button', {type: 'button', 'data-testid': 'play-next', onclick: (ev) => {
      ev.stopPropagation();
      command('next');
    }}, icon('next'), 'Play next');
    this.endedText = h('p', {class: 'ended-title'});
    this.endedNote = h('p', {class: 'muted ended-note'});
    this.endedEl = h('div', {class: 'movie-ended', 'data-testid': 'ended', role: 'status', hidden: true},
      this.endedText, this.endedNote, h('div', {class: 'row'}, this.replayBtn, this.playNextBtn));
    this.controlsNote = h('span', {class: 'control-note'});
    this.statsEl = h('pre', {class: 'tile-stats', hidden: true});
    this.bar = h('div', {class: 'player-bar'},
      this.seek,
      h('div', {class: 'player-row'},
        this.playBtn, this.pauseBtn, this.nextBtn, this.timeEl, this.controlsNote,
        h('span', {class: 'spacer'}),
        this.subs, this.rate, h('span', {class: 'audio-controls'}, this.muteBtn, this.volume), this.stopBtn, this.pipBtn || '', this.fsBtn));
    this.el = h('div', {class: 'tile movie', dataset: {key: 'movie'}},
      this.video, this.overlay, this.endedEl, this.notice, h('div', {class: 'movie-top'}, icon('film'), this.titleEl), this.statsEl, this.bar);
    this.el.addEventListener('click', () => {
      if (!this.el.classList.contains('on-stage')) {
        app.pinned = 'movie';
        layout();
      }
    });
    this.video.addEventListener('dblclick', () => toggleFullscreen(this.el, this.video));
    for (const ev of ['timeupdate', 'durationchange', 'loadedmetadata', 'ratechange', 'play', 'pause', 'seeking', 'seeked', 'waiting', 'playing', 'canplay', 'volumechange', 'emptied', 'error']) {
      this.video.addEventListener(ev, () => this.render());
    }
  }

  get hasVideo() {
    return true;
  }

  get hasAudio() {
    return true;
  }

  play() {} // the SyncedPlayer decides

  // Shows a short line over the picture ("Ana paused at 1:23").
  say(text, ms = 3500) {
    clearTimeout(this.noticeTimer);
    this.notice.textContent = text;
    this.notice.hidden = !text;
    if (text) this.noticeTimer = setTimeout(() => (this.notice.hidden = true), ms);
  }

  overlayText() {
    const p = app.player;
    const s = p.state;
    if (!s || !s.url) return null;
    if (p.error) return p.error;
    if (s.ended) return null; // the ended panel says it
    if (s.waiting) {
      const names = (s.waitingFor || []).map((id) => (id === me()?.id ? 'you' : displayName(id)));
      return names.length ? `Waiting for ${listNames(names)} to catch up…` : 'Waiting for everyone…';
    }
    if (this.video.readyState < 2) return 'Loading the video…';
    if (p.buffering) return 'Buffering…';
    return null;
  }

  render() {
    const v = this.video;
    const p = app.player;
    const s = p.state || {};
    const control = mayControl();
    this.titleEl.textContent = s.title || titleOf(s.url || '');
    const playing = !!s.url && !s.paused; // what the room does (a hold still counts)
    if (playing) swapButtons(this.pauseBtn, this.playBtn);
    else swapButtons(this.playBtn, this.pauseBtn);
    for (const el of [this.playBtn, this.pauseBtn, this.seek, this.rate]) el.disabled = !control || !s.url;
    this.stopBtn.hidden = !control;
    const why = control ? '' : app.room?.openControl ? 'Viewers cannot control the video' : 'Only the host controls the video';
    this.controlsNote.textContent = control ? '' : app.room?.openControl ? 'Viewers watch along' : 'The host controls playback';
    this.controlsNote.hidden = control;
    for (const el of [this.playBtn, this.pauseBtn, this.seek, this.rate]) el.title = why || el.getAttribute('aria-label');
    const dur = Number.isFinite(v.duration) ? v.duration : 0;
    this.seek.max = String(dur);
    if (!this.dragging) {
      // Ended, the last frame is a few ms short of the duration: say the end.
      const cur = s.ended && dur ? dur : v.currentTime;
      this.seek.value = String(cur);
      this.timeEl.textContent = `${formatTime(cur)} / ${formatTime(dur)}`;
    }
    const rate = String(s.rate || 1);
    if (![...this.rate.options].some((o) => o.value === rate)) this.rate.append(h('option', {value: rate}, `${rate}×`));
    if (document.activeElement !== this.rate) this.rate.value = rate;
    const muted = v.muted;
    if (this.muteBtn.dataset.muted !== String(muted)) {
      this.muteBtn.dataset.muted = String(muted);
      this.muteBtn.replaceChildren(icon(muted ? 'muted' : 'volume'));
    }
    this.muteBtn.title = muted ? 'Unmute' : 'Mute';
    this.muteBtn.setAttribute('aria-label', this.muteBtn.title);
    this.muteBtn.classList.toggle('muted', muted);
    const text = this.overlayText();
    this.overlay.hidden = !text;
    if (text) this.overlay.textContent = text;
    this.overlay.classList.toggle('dim', text !== null && v.readyState >= 2);
    this.overlay.classList.toggle('error', !!p.error);
    this.el.dataset.state = !s.url ? 'empty' : s.ended ? 'ended' : s.waiting ? 'waiting' : s.paused ? 'paused' : 'playing';
    this.renderEnded(s, control);
    const next = app.queue[0];
    this.nextBtn.hidden = !control || !next;
    if (next) this.nextBtn.title = `Play next: ${next.title || titleOf(next.url)}`;
    this.renderTracks();
    this.statsEl.hidden = !app.showStats || !s.url;
    if (!this.statsEl.hidden) this.statsEl.textContent = syncSummary(p.status());
  }
}

// The ended panel: Replay, and Play next when the queue has a video.
MovieTile.prototype.renderEnded = function (s, control) {
  this.endedEl.hidden = !s.ended;
  if (!s.ended) return;
  const next = app.queue[0];
  this.endedText.textContent = `“${s.title || titleOf(s.url)}” has ended`;
  this.endedNote.textContent = next ? `Up next: ${next.title || titleOf(next.url)}` : control ? '' : 'The host can play it again or another video.';
  this.endedNote.hidden = !this.endedNote.textContent;
  this.replayBtn.hidden = !control;
  this.playNextBtn.hidden = !control || !next;
};

// Keeps one <track> per subtitle of the video (the element keeps them in
// step with the picture) and shows the one picked: this viewer's own
// choice, else the room's.
MovieTile.prototype.renderTracks = function () {
  const s = app.player.state || {};
  const subs = s.url ? s.subtitles || [] : [];
  const key = JSON.stringify([s.url, subs]);
  if (key !== this.trackKey) {
    this.trackKey = key;
    app.subtitleMine = null;
    for (const t of this.video.querySelectorAll('track')) t.remove();
    for (const sub of subs) {
      const el = h('track', {kind: 'subtitles', src: sub.url, label: sub.label || sub.lang || 'Subtitles', srclang: sub.lang || '', 'data-url': sub.url});
      // Cues placed by default sit on the bottom line, under the player's
      // bar on a desktop: put them three lines up (a cue that places
      // itself keeps its place).
      el.addEventListener('load', () => {
        for (const c of el.track.cues || []) if (c.line === 'auto') c.line = -3;
      });
      this.video.append(el);
    }
    this.subs.replaceChildren(h('option', {value: ''}, 'Subtitles off'), ...subs.map((sub) => h('option', {value: sub.url}, sub.label || sub.lang || sub.url)));
  }
  // The room picking again overrides a viewer's own choice.
  if (app.subtitleMine && app.subtitleMine.roomPick !== (s.subtitle || '')) app.subtitleMine = null;
  const want = app.subtitleMine ? app.subtitleMine.url : s.subtitle || '';
  for (const t of this.video.querySelectorAll('track')) {
    const mode = t.dataset.url === want ? 'showing' : 'disabled';
    if (t.track.mode !== mode) t.track.mode = mode;
  }
  this.subs.hidden = !subs.length;
  if (document.activeElement !== this.subs) this.subs.value = want;
  this.subs.title = mayControl() ? 'Subtitles for everyone' : 'Subtitles (only for you)';
};

// The stats overlay of the synced video: how far off the room it is and
// what the player has learnt about this machine.
function syncSummary(st) {
  const ms = (x) => `${Math.round(x)} ms`;
  const lines = [
    `sync      ${st.gapMs === null ? '—' : `${st.gapMs >= 0 ? 'behind' : 'ahead'} ${ms(Math.abs(st.gapMs))}`}${st.nudging ? ` · nudging ×${st.playbackRate.toFixed(3)}` : ''}${st.aligning ? ' · seeking' : ''}`,
    `clock     ±${Number.isFinite(st.clockRttMs) ? (st.clockRttMs / 2).toFixed(1) : '?'} ms`,
    `seek      ${st.seekMeasured ? ms(st.seekMs) : '—'} · start ${ms(st.startMs)} · ${st.seeks} seek${st.seeks === 1 ? '' : 's'}`,
  ];
  if (st.buffering) lines.push('buffering');
  return lines.join('\n');
}

function toggleFullscreen(el, video) {
  if (document.fullscreenElement) {
    document.exitFullscreen().catch(() => {});
  } else if (el.requestFullscreen) {
    el.requestFullscreen().catch(() => {
      if (video.webkitEnterFullscreen) video.webkitEnterFullscreen();
    });
  } else if (video.webkitEnterFullscreen) {
    video.webkitEnterFullscreen(); // iPhone
  }
}

// "Film" from "/media/Show/Film.mp4?x".
function titleOf(url) {
  const last = String(url).split(/[?#]/)[0].split('/').filter(Boolean).pop() || url;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

// "Ana", "Ana and Bo", "Ana, Bo and Cy".
function listNames(names) {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

// Sends a playback command; the state comes back to everyone (us too) as
// playbackState, and the player follows it.
async function command(action, extra = {}) {
  const c = app.client;
  if (!c || c.state !== 'joined') return;
  if (!mayControl()) {
    toast(app.room?.openControl ? 'Viewers cannot control the video.' : 'Only the host controls the video in this room.', {ms: 3500});
    app.movie.render();
    return;
  }
  const params = {action, ...extra};
  // Pause exactly where this screen shows it.
  if (action === 'pause' && app.player.url && app.movie.video.readyState >= 1) params.position = app.movie.video.currentTime;
  try {
    const res = await c.request('playback', params);
    if (res?.state) app.player.apply(res.state);
  } catch (err) {
    const what = {stop: 'close the video', next: 'play the next video', subtitle: 'change the subtitles'}[action] || action;
    toast(`Could not ${what}: ${errText(err)}`, {kind: 'error'});
    app.movie.render();
  }
}

// What changed, said over the picture when someone else did it.
function describePlayback({state, action, by}) {
  const who = by && by === me()?.id ? 'You' : by ? displayName(by) : '';
  switch (action) {
    case 'load':
      return `${who || 'Someone'} started “${state.title || titleOf(state.url)}”`;
    case 'play':
      return `${who || 'Someone'} pressed play`;
    case 'pause':
      return `${who || 'Someone'} paused at ${formatTime(state.position)}`;
    case 'seek':
      return `${who || 'Someone'} jumped to ${formatTime(state.position)}`;
    case 'rate':
      return `${who || 'Someone'} set the speed to ${state.rate}×`;
    case 'next':
      return `Up next: “${state.title || titleOf(state.url)}”`;
    case 'subtitle': {
      const sub = (state.subtitles || []).find((x) => x.url === state.subtitle);
      return sub ? `${who || 'Someone'} turned on subtitles: ${sub.label || sub.lang}` : `${who || 'Someone'} turned subtitles off`;
    }
    case 'resume':
      return 'Everyone is ready — playing';
    default:
      return '';
  }
}

function setupPlayer() {
  app.clock = new ServerClock((clientTime) => (app.client ? app.client.request('time', {clientTime}) : Promise.reject(new Error('not connected'))));
  app.movie = new MovieTile();
  app.player = new SyncedPlayer(app.movie.video, {
    clock: app.clock,
    send: (params) => app.client?.state === 'joined' && app.client.notify('playbackReport', params),
  });
  app.player.addEventListener('change', () => {
    const had = !!app.movie.el.parentElement;
    if (had !== !!app.player.url) layout();
    app.movie.render();
    renderPeople();
  });
  app.player.addEventListener('autoplayblocked', () => {
    app.autoplayBlocked = true;
    renderUnmute();
  });
  app.player.start();
}

// stageTile is the tile of the room's stage, as the server chose it for
// everyone (docs/protocol.md, "The stage"). One's own tiles are never
// shown big: one's own share would mirror itself (its sharer sees "You
// are sharing your screen"), and when the stage is only one's own camera,
// another's camera is shown instead.
function stageTile(remote) {
  const st = app.client?.stage;
  const t = st?.video ? remote.find((x) => x.entries.has(st.video)) : null;
  if (t || st?.show) return t || null;
  return remote.find((x) => x.hasVideo) || null;
}

// Puts one tile on the stage and the rest in the strip: the pinned one if
// any (a person's own choice), else the synced film, else the room's stage.
function layout() {
  const all = [...app.tiles.values()];
  const remote = all.filter((t) => !t.local);
  // The synced video, when one is loaded, is a tile like the others: on
  // the stage unless someone pinned another.
  const movie = app.player?.url ? app.movie : null;
  if (movie) all.unshift(movie);
  else if (app.movie?.el.parentElement) app.movie.el.remove();
  let stage = app.pinned === 'movie' ? movie : app.pinned ? app.tiles.get(app.pinned) : null;
  if (!stage) stage = movie || stageTile(remote);
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
  // Move only what is out of place: a video taken out of the page, even
  // for a moment, leaves picture-in-picture.
  rest.forEach((t, i) => {
    if (strip.children[i] !== t.el) strip.insertBefore(t.el, strip.children[i] || null);
  });
  strip.hidden = rest.length === 0;
  requestAnimationFrame(preferLayers);
  document.body.classList.toggle('has-strip', rest.length > 0);
  const empty = $('empty');
  empty.hidden = !!stage;
  if (!stage) {
    const sharing = !!app.share;
    const others = app.client ? app.client.peers.size : 0;
    $('empty-title').textContent = sharing ? 'You are sharing your screen' : others === 0 ? 'You are the first one here' : 'Nobody is sharing yet';
    const canShare = caps.screenShare && mayShare();
    const watch = mayControl() ? ' Or press Video to watch a film together.' : '';
    $('empty-text').textContent = sharing
      ? `${others === 0 ? 'Nobody else is here yet — send them the invite link.' : `${others} ${others === 1 ? 'person sees' : 'people see'} it on their stage.`}`
      : others === 0
        ? `Invite people with the link above${canShare ? ', then press Share screen' : ''}.${watch}`
        : canShare
          ? `Press Share screen to start the show, or wait for someone else to.${watch}`
          : `Wait for someone to share a screen or start a video.${watch}`;
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
  const any = [...app.tiles.values()].some((t) => !t.local && t.hasAudio) || !!app.player?.url;
  $('unmute-all').hidden = !(app.autoplayBlocked && any);
}

function unmuteAll() {
  app.autoplayBlocked = false;
  for (const t of app.tiles.values()) t.play();
  if (app.movie && !app.movie.userMuted) {
    app.movie.video.muted = false;
    if (app.player.state && !app.player.state.paused && !app.player.state.waiting) app.movie.video.play().catch(() => {});
  }
  renderUnmute();
}
$('unmute-all').addEventListener('click', unmuteAll);

// ---------------------------------------------------------------- people and chat

const ROLE_LABEL = {host: 'host', guest: 'guest', viewer: 'viewer'};

function renderPeople() {
  const c = app.client;
  const ul = $('participants');
  if (!c || !c.me) {
    ul.replaceChildren();
    return;
  }
  const sources = (peerId) => {
    const s = new Set();
    for (const p of c.producers.values()) if (p.peerId === peerId) s.add(p.appData?.source || p.kind);
    return s;
  };
  const mine = new Set();
  if (app.share) mine.add('screen');
  if (app.camera) mine.add('camera');
  if (app.mic) mine.add('mic');
  const self = {id: c.me.id, name: c.me.name, role: c.me.role, buffering: !!app.player?.buffering, me: true, src: mine};
  const others = [...c.peers.values()].sort((a, b) => a.name.localeCompare(b.name));
  const rank = {host: 0, guest: 1, viewer: 2};
  const people = [self, ...others.map((p) => ({...p, me: false, src: sources(p.id)}))];
  people.sort((a, b) => (a.me ? -1 : b.me ? 1 : (rank[a.role] ?? 1) - (rank[b.role] ?? 1) || a.name.localeCompare(b.name)));
  const host = c.me.role === 'host';
  const items = [];
  for (const p of people) {
    const icons = [];
    const badge = (name, title) => h('span', {title, 'aria-label': title, role: 'img'}, icon(name));
    if (p.src.has('screen')) icons.push(badge('screen', 'Sharing a screen'));
    if (p.src.has('camera')) icons.push(badge('camera', 'Camera on'));
    if (p.src.has('mic')) icons.push(badge('mic', 'Microphone on'));
    const role = ROLE_LABEL[p.role] || p.role || 'guest';
    items.push(h('li', {'data-testid': 'participant', class: p.me ? 'me' : '', dataset: {peerId: p.id, role, buffering: String(!!p.buffering), away: String(!!p.away)}},
      h('span', {class: 'avatar small', 'aria-hidden': 'true'}, initials(p.name)),
      h('span', {class: 'p-main'},
        h('span', {class: 'p-name'}, p.name, p.me ? h('span', {class: 'muted'}, ' (you)') : null),
        p.away ? h('span', {class: 'p-buffering', 'data-testid': 'away'}, h('i', {class: 'spinner', 'aria-hidden': 'true'}), 'reconnecting…')
          : p.buffering ? h('span', {class: 'p-buffering', 'data-testid': 'buffering'}, h('i', {class: 'spinner', 'aria-hidden': 'true'}), 'buffering…') : null),
      h('span', {class: `role role-${role}`, 'data-testid': 'role', title: roleHelp(role)}, role),
      h('span', {class: 'p-icons'}, icons),
      host && !p.me
        ? h('button', {type: 'button', class: 'ghost icon p-menu', 'data-testid': 'host-menu', 'aria-haspopup': 'menu', 'aria-label': `Host actions for ${p.name}`, title: 'Host actions',
          onclick: (ev) => {
            ev.stopPropagation();
            openHostMenu(ev.currentTarget, p.id);
          }}, icon('more'))
        : null));
  }
  ul.replaceChildren(...items);
  const n = String(people.length);
  $('people-count').textContent = n;
  $('people-count-2').textContent = n;
}

function roleHelp(role) {
  return role === 'host' ? 'Host: shares, controls the video, manages people and the room'
    : role === 'viewer' ? 'Viewer: watches and chats'
      : app.room?.guestsCanShare === false ? 'Guest: watches and chats' : 'Guest: can share a screen, camera and microphone';
}

// ---------------------------------------------------------------- host menu

function closeHostMenu() {
  const m = $('host-menu-pop');
  if (!m || m.hidden) return;
  m.hidden = true;
  m.replaceChildren();
  app.menuFor = null;
}

function openHostMenu(btn, peerId) {
  const c = app.client;
  const peer = c?.peers.get(peerId);
  if (!peer) return;
  const menu = $('host-menu-pop');
  if (!menu.hidden && app.menuFor === peerId) {
    closeHostMenu();
    return;
  }
  app.menuFor = peerId;
  const run = async (what, fn) => {
    closeHostMenu();
    try {
      await fn();
    } catch (err) {
      toast(`Could not ${what}: ${errText(err)}`, {kind: 'error'});
    }
  };
  const item = (action, label, fn, {danger = false, confirm = ''} = {}) => {
    const b = h('button', {type: 'button', role: 'menuitem', class: `menu-item${danger ? ' menu-danger' : ''}`, 'data-testid': 'host-action', 'data-action': action}, label);
    b.addEventListener('click', (ev) => {
      ev.stopPropagation();
      if (confirm && !b.dataset.armed) {
        // A second click confirms: no blocking dialog.
        b.dataset.armed = 'true';
        b.textContent = confirm;
        return;
      }
      run(label.toLowerCase(), fn);
    });
    return b;
  };
  const name = peer.name;
  const items = [];
  if (peer.role !== 'host') {
    items.push(item('transfer', 'Hand over host', async () => {
      await c.request('transferHost', {peerId});
      toast(`${name} is the host now.`, {ms: 3500});
    }, {confirm: `Click again: make ${name} host instead of you`}));
    items.push(item('role-host', 'Make co-host', () => c.request('setRole', {peerId, role: 'host'})));
  }
  if (peer.role !== 'guest') items.push(item('role-guest', 'Make guest', () => c.request('setRole', {peerId, role: 'guest'})));
  if (peer.role !== 'viewer') items.push(item('role-viewer', 'Make viewer (watch and chat only)', () => c.request('setRole', {peerId, role: 'viewer'})));
  items.push(item('mute', 'Mute microphone', async () => {
    const res = await c.request('mute', {peerId, kind: 'audio'});
    toast(res?.producerIds?.length ? `${name} is muted.` : `${name} has no microphone on.`, {ms: 3000});
  }));
  items.push(item('kick', 'Remove from the room', () => c.request('kick', {peerId}), {danger: true, confirm: `Click again to remove ${name}`}));
  menu.replaceChildren(h('div', {class: 'menu-title'}, name), ...items);
  menu.hidden = false;
  const r = btn.getBoundingClientRect();
  const mw = menu.offsetWidth;
  const mh = menu.offsetHeight;
  const left = Math.max(8, Math.min(r.right - mw, window.innerWidth - mw - 8));
  let top = r.bottom + 4;
  if (top + mh > window.innerHeight - 8) top = Math.max(8, r.top - mh - 4);
  menu.style.left = `${left}px`;
  menu.style.top = `${top}px`;
  menu.querySelector('button')?.focus({preventScroll: true});
}

document.addEventListener('click', (ev) => {
  if (!$('host-menu-pop').contains(ev.target)) closeHostMenu();
  if (!ev.target.closest?.('#reaction-bar, #react-toggle')) setReactionsOpen(false);
});
document.addEventListener('keydown', (ev) => {
  if (ev.key !== 'Escape') return;
  closeHostMenu();
  setReactionsOpen(false);
});
$('participants').addEventListener('scroll', closeHostMenu, {passive: true});
window.addEventListener('resize', closeHostMenu);

// ---------------------------------------------------------------- room settings

const ROOM_SWITCHES = [
  ['room-lock', 'locked'],
  ['room-open-control', 'openControl'],
  ['room-wait', 'waitForEveryone'],
  ['room-guests-share', 'guestsCanShare'],
  ['room-simulcast', 'simulcast'],
];

function renderRoom() {
  const r = app.room || {};
  const host = isHost();
  $('lock-badge').hidden = !r.locked;
  $('room-controls').hidden = !host;
  for (const [id, field] of ROOM_SWITCHES) {
    const el = $(id);
    if (!el.dataset.busy) el.checked = !!r[field];
  }
  const notes = [];
  if (!host) {
    if (r.locked) notes.push('The room is locked: nobody new can join.');
    notes.push(r.openControl ? 'Everyone can control the video.' : 'The host controls the video.');
    if (r.waitForEveryone) notes.push('The video waits for anyone who is buffering.');
    if (r.simulcast === false) notes.push('Shares are sent in one quality.');
  }
  $('room-notes').textContent = notes.join(' ');
  $('room-notes').hidden = notes.length === 0;
  $('watch').hidden = !mayControl();
  if ($('watch').hidden && watchDialog.isOpen) closeWatch();
  // Sharing follows the role and the room's option.
  const share = mayShare();
  const why = me()?.role === 'viewer' ? 'Viewers watch and chat; ask the host to make you a guest to share.' : 'The host lets only hosts share in this room.';
  for (const id of ['share', 'cam', 'mic']) {
    const b = $(id);
    b.classList.toggle('not-allowed', !share);
    if (!share) b.title = why;
    else b.title = id === 'share' ? '' : id === 'cam' ? 'Camera' : 'Microphone';
  }
  if (!share) stopAllLocal();
  renderOneQuality();
  app.movie?.render();
}

for (const [id, field] of ROOM_SWITCHES) {
  const el = $(id);
  el.addEventListener('change', async () => {
    const want = el.checked;
    el.dataset.busy = 'true';
    try {
      const res = await app.client.request('updateRoom', {[field]: want});
      if (res?.room) app.room = res.room;
    } catch (err) {
      el.checked = !want;
      toast(`Could not change the room: ${errText(err)}`, {kind: 'error'});
    } finally {
      delete el.dataset.busy;
      renderRoom();
    }
  });
}

// ---------------------------------------------------------------- stream key

// A host makes an RTMP stream key (docs/rtmp.md). The key is in the answer
// only: it is shown until revoked or the page is left.
let streamKeyID = null;

function showStreamKey(k) {
  streamKeyID = k ? k.id : null;
  $('stream-key-shown').hidden = !k;
  $('stream-key-make').hidden = !!k;
  $('stream-key-url').value = k ? k.url : '';
  $('stream-key-tls').hidden = !(k && k.rtmpsUrl);
  $('stream-key-rtmps').value = k && k.rtmpsUrl ? k.rtmpsUrl : '';
  $('stream-key-key').value = k ? k.streamKey : '';
}

$('stream-key-make').addEventListener('click', async () => {
  const b = $('stream-key-make');
  b.disabled = true;
  try {
    showStreamKey(await app.client.request('createStreamKey', {}));
  } catch (err) {
    toast(`Could not make a stream key: ${errText(err)}`, {kind: 'error'});
  } finally {
    b.disabled = false;
  }
});

$('stream-key-revoke').addEventListener('click', async () => {
  if (!streamKeyID) return;
  const b = $('stream-key-revoke');
  b.disabled = true;
  try {
    await app.client.request('revokeStreamKey', {id: streamKeyID});
    showStreamKey(null);
    toast('Stream key revoked: it can no longer stream into this room.', {ms: 3500});
  } catch (err) {
    toast(`Could not revoke the stream key: ${errText(err)}`, {kind: 'error'});
  } finally {
    b.disabled = false;
  }
});

for (const b of document.querySelectorAll('#stream-key [data-copy]')) {
  b.addEventListener('click', async () => {
    const input = $(b.dataset.copy);
    try {
      await navigator.clipboard.writeText(input.value);
      toast('Copied.', {ms: 2000});
    } catch {
      input.select();
      window.prompt('Copy this:', input.value);
    }
  });
}

// Stops everything this page sends (a viewer may not share).
function stopAllLocal() {
  if (app.share) stopShare();
  if (app.camera) toggleDevice('video');
  if (app.mic) toggleDevice('audio');
}

// The host (or the REST API) paused some of our producers.
function onMuted(params, tries = 0) {
  const {kind, by, producerIds} = params;
  const ids = new Set(producerIds || []);
  const mine = [...(app.client?.localProducers || [])].filter((p) => ids.has(p.id));
  if (!mine.length) {
    // The host can mute a track whose publish answer has not reached us
    // yet (the others learn of it first): look again shortly.
    if (tries < 15 && ids.size) setTimeout(() => onMuted(params, tries + 1), 200);
    return;
  }
  for (const p of mine) {
    p.paused = true;
    p.track.enabled = false;
  }
  const who = by ? displayName(by) : 'The host';
  const what = kind === 'video' ? 'camera' : kind === 'all' ? 'camera and microphone' : 'microphone';
  toast(`${who} muted your ${what}.`, {ms: 10000, action: {label: 'Unmute', run: () => Promise.all(mine.map((p) => p.resume()))}});
}

// ---------------------------------------------------------------- reactions

function buildReactionBar() {
  const bar = $('reaction-bar');
  for (const [emoji, r] of REACTIONS) {
    bar.append(h('button', {type: 'button', class: 'reaction-btn', 'data-testid': 'reaction', 'data-emoji': emoji, title: r.label, 'aria-label': r.label,
      onclick: () => sendReaction(emoji)}, reactionGlyph(emoji)));
  }
}

function setReactionsOpen(open) {
  document.body.classList.toggle('reactions-open', open);
  $('react-toggle').setAttribute('aria-expanded', String(open));
}
$('react-toggle').addEventListener('click', (ev) => {
  ev.stopPropagation();
  setReactionsOpen(!document.body.classList.contains('reactions-open'));
});

async function sendReaction(emoji) {
  const c = app.client;
  if (!c || c.state !== 'joined') return;
  try {
    await c.request('react', {emoji});
  } catch (err) {
    if (err instanceof RpcError && err.code === RATE_LIMITED) toast('Easy! Too many reactions at once.', {ms: 2000});
    else if (!(err instanceof RpcError && err.code === Codes.METHOD_NOT_FOUND)) toast(`Reaction not sent: ${errText(err)}`, {kind: 'error', ms: 3000});
  }
}

// Floats an emoji up over the stage for a moment.
function showReaction({peerId, emoji}) {
  if (!emoji) return;
  const layer = $('reactions-layer');
  while (layer.childElementCount >= 40) layer.firstElementChild.remove();
  const who = peerId && peerId === me()?.id ? 'You' : displayName(peerId);
  const el = h('div', {class: 'reaction-float', 'data-testid': 'reaction-float', 'data-emoji': emoji, title: `${who}: ${reactionLabel(emoji)}`},
    reactionGlyph(emoji), h('span', {class: 'reaction-name'}, who));
  el.style.setProperty('--x', `${6 + Math.random() * 80}%`);
  el.style.setProperty('--drift', `${Math.round(Math.random() * 60 - 30)}px`);
  el.style.setProperty('--dur', `${(2.6 + Math.random() * 0.9).toFixed(2)}s`);
  el.addEventListener('animationend', () => el.remove());
  setTimeout(() => el.remove(), 6000);
  layer.append(el);
}

// ---------------------------------------------------------------- watch a video together

// The picker is a modal <dialog>: it takes focus (the link field on
// devices with a keyboard), keeps Tab inside, closes on Escape and gives
// focus back to the Video button.
const watchDialog = modal($('watch-dialog'));

function closeWatch() {
  watchDialog.close();
}

async function openWatch() {
  if (!mayControl()) return;
  watchDialog.open($('watch'));
  $('url-error').textContent = '';
  const list = $('media-list');
  const empty = $('media-empty');
  list.replaceChildren(h('li', {class: 'muted'}, 'Looking for videos…'));
  empty.hidden = true;
  // On a phone, focusing the field would pop up the keyboard over the list.
  if (window.matchMedia('(hover: hover)').matches) $('video-url').focus();
  else $('watch-close').focus();
  let items = [];
  try {
    const res = await app.client.request('mediaList');
    items = res?.items || [];
  } catch (err) {
    list.replaceChildren();
    empty.hidden = false;
    empty.textContent = err instanceof RpcError && err.code === Codes.METHOD_NOT_FOUND ? 'This server has no media folder.' : `Could not list the videos: ${errText(err)}`;
    return;
  }
  const probe = app.movie.video;
  list.replaceChildren(...items.map((it) => {
    const can = canPlay(probe, it.url, it.type);
    const kind = it.type === 'application/vnd.apple.mpegurl' ? 'HLS' : (it.type || '').replace(/^video\//, '').toUpperCase() || 'video';
    const meta = [kind, it.size ? humanSize(it.size) : ''].filter(Boolean).join(' · ');
    const subs = it.subtitles || [];
    const subText = subs.length ? ` · subtitles: ${subs.map((x) => x.label || x.lang).join(', ')}` : '';
    const video = {url: it.url, title: titleOf(it.path), subtitles: subs};
    return h('li', {class: 'media-row'},
      h('button', {type: 'button', class: 'media-item', 'data-testid': 'media-item', 'data-url': it.url, disabled: !can,
        title: can ? `Play ${it.path} for everyone` : 'This browser cannot play HLS', onclick: () => loadVideo(video)},
      icon('film'),
      h('span', {class: 'media-name'}, it.path),
      h('span', {class: 'media-meta', 'data-testid': 'media-meta'}, (can ? meta : `${meta} · not playable in this browser`) + subText)),
      h('button', {type: 'button', class: 'ghost icon', 'data-testid': 'media-queue', 'data-url': it.url, disabled: !can,
        title: `Add ${it.path} to the queue`, 'aria-label': `Add ${it.path} to the queue`, onclick: () => queueVideo(video)}, icon('queue')));
  }));
  if (!items.length) {
    empty.hidden = false;
    empty.textContent = 'No videos on this server (it has no media folder, or the folder is empty). Paste a link below.';
  }
}
$('watch').addEventListener('click', openWatch);
$('watch-close').addEventListener('click', closeWatch);

function humanSize(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${Math.round(n / 1e6)} MB`;
  return `${Math.max(1, Math.round(n / 1e3))} kB`;
}

async function loadVideo({url, title, subtitles = []}) {
  const c = app.client;
  if (!c || c.state !== 'joined') return;
  $('url-error').textContent = '';
  try {
    const res = await c.request('playback', {action: 'load', url, title, subtitles});
    if (res?.state) app.player.apply(res.state);
    closeWatch();
    app.movie.say('Loaded for everyone — press play when you are ready', 4000);
  } catch (err) {
    $('url-error').textContent = `Could not load it: ${errText(err)}`;
  }
}

$('url-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const url = $('video-url').value.trim();
  const err = $('url-error');
  if (!url) {
    err.textContent = 'Paste the address of a video file first.';
    return;
  }
  if (!/^https?:\/\/[^/\s]+/i.test(url) && !/^\/(?!\/)/.test(url)) {
    err.textContent = 'That is not a link: it should start with https:// (or be a path on this server, such as /media/film.mp4).';
    return;
  }
  if (!canPlay(app.movie.video, url)) {
    err.textContent = 'This browser cannot play HLS (.m3u8) links; use an MP4 or WebM file.';
    return;
  }
  if (ev.submitter?.id === 'video-queue') queueVideo({url, title: titleOf(url)});
  else loadVideo({url, title: titleOf(url)});
});

// Adds a video to the room's queue; everyone gets queueUpdated.
async function queueVideo({url, title, subtitles = []}) {
  const c = app.client;
  if (!c || c.state !== 'joined') return;
  $('url-error').textContent = '';
  try {
    const res = await c.request('queue', {action: 'add', url, title, subtitles});
    app.queue = res?.queue || app.queue;
    renderQueue();
    app.movie.render();
    toast(`Added “${title}” to the queue.`, {ms: 2500});
  } catch (err) {
    $('url-error').textContent = `Could not add it to the queue: ${errText(err)}`;
  }
}

// The queue in the picker: what plays next, each removable.
function renderQueue() {
  const list = $('queue-list');
  if (!list) return;
  const control = mayControl();
  $('queue-empty').hidden = app.queue.length > 0;
  list.replaceChildren(...app.queue.map((it, i) => h('li', {class: 'media-row', 'data-testid': 'queue-item'},
    h('span', {class: 'queue-pos'}, `${i + 1}.`),
    h('span', {class: 'media-name'}, it.title || titleOf(it.url)),
    control ? h('button', {type: 'button', class: 'ghost icon', 'aria-label': `Remove ${it.title || titleOf(it.url)} from the queue`, title: 'Remove from the queue', onclick: async () => {
      try {
        const res = await app.client.request('queue', {action: 'remove', id: it.id});
        app.queue = res?.queue || app.queue;
        renderQueue();
        app.movie.render();
      } catch (err) {
        toast(`Could not remove it: ${errText(err)}`, {kind: 'error'});
      }
    }}, icon('close')) : '')));
}

// People and Chat follow the WAI-ARIA tabs pattern: only the selected tab
// is in the Tab order (roving tabindex), and Left/Right/Home/End move
// between the tabs and select them. A click on Chat goes on to the message
// field; the arrow keys stay on the tabs.
const TABS = [['people', 'tab-btn-people'], ['chat', 'tab-btn-chat']];

function setTab(tab, {fromKeys = false} = {}) {
  const chat = tab === 'chat';
  $('tab-people').hidden = chat;
  $('tab-chat').hidden = !chat;
  for (const [name, id] of TABS) {
    $(id).setAttribute('aria-selected', String(name === tab));
    $(id).tabIndex = name === tab ? 0 : -1;
  }
  if (chat) {
    app.unread = 0;
    renderUnread();
    if (!fromKeys && app.chatAvailable && window.matchMedia('(hover: hover)').matches) $('chat-input').focus();
  }
}
$('tab-btn-people').addEventListener('click', () => setTab('people'));
$('tab-btn-chat').addEventListener('click', () => setTab('chat'));
document.querySelector('#side [role=tablist]').addEventListener('keydown', (ev) => {
  const i = TABS.findIndex(([, id]) => $(id) === document.activeElement);
  if (i < 0 || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const n = TABS.length;
  const next = {ArrowRight: (i + 1) % n, ArrowLeft: (i + n - 1) % n, Home: 0, End: n - 1}[ev.key];
  if (next === undefined) return;
  ev.preventDefault();
  setTab(TABS[next][0], {fromKeys: true});
  $(TABS[next][1]).focus();
});

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
    seq: typeof msg.seq === 'number' ? msg.seq : null,
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
  const li = h('li', {'data-testid': 'chat-message', class: mine ? 'mine' : '', dataset: m.seq !== null ? {seq: String(m.seq)} : {}},
    h('div', {class: 'msg-head'}, h('b', {}, mine ? 'You' : m.name), ' ', h('time', {datetime: when.toISOString()}, when.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'}))),
    h('div', {class: 'msg-text'}, m.text));
  // The server numbers messages (seq): everyone shows them in its order,
  // whatever order the answer to our own and the notifications arrive in.
  const after = m.seq === null ? null : [...list.children].find((x) => x.dataset.seq && Number(x.dataset.seq) > m.seq);
  list.insertBefore(li, after || null);
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
  if (!input.value) input.value = app.pendingName || loadName();
  $('password-field').hidden = !password;
  $('prejoin-error').textContent = error;
  $('prejoin').hidden = false;
  (password && input.value ? $('prejoin-password') : input).focus();
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

// ---------------------------------------------------------------- invite tokens

const TOKEN_KEY = `matinee.token.${roomId}`;

// The join token of an invite link (#token=...). It is kept for this tab
// (a reload still has it) and taken out of the address bar, so a copied
// link does not pass one person's invite on.
function takeToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (m) {
    let t = m[1];
    try {
      t = decodeURIComponent(t);
    } catch {
      // keep it as it is
    }
    try {
      sessionStorage.setItem(TOKEN_KEY, t);
    } catch {
      // not kept across reloads
    }
    history.replaceState(null, '', window.location.pathname + window.location.search);
    return t;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null;
  }
}

// The resume token of our membership in this room: a reload of this tab
// comes back as the same member. It is written only as the page goes away
// and taken out as the next one starts: a tab opened from this one (or
// duplicated) copies sessionStorage, and must join as someone new rather
// than take this tab's place.
const RESUME_KEY = `matinee.resume.${roomId}`;
const resumeAtLoad = takeResume();

function takeResume() {
  try {
    const t = sessionStorage.getItem(RESUME_KEY);
    sessionStorage.removeItem(RESUME_KEY);
    return t;
  } catch {
    return null;
  }
}

function saveResume(t) {
  try {
    if (t) sessionStorage.setItem(RESUME_KEY, t);
  } catch {
    // a reload joins as someone new
  }
}

function dropToken() {
  app.token = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing kept
  }
}

// The token's claims (not verified: the server does that), for its name.
function tokenClaims(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, '=')), (ch) => ch.charCodeAt(0)));
    const c = JSON.parse(json);
    return c && typeof c === 'object' ? c : {};
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------- joining

function start(name, password) {
  const resume = app.client?.resumeToken || resumeAtLoad || movedAtLoad.resume || undefined;
  if (app.client) app.client.close();
  const c = new Client({room: roomId, name, password, token: app.token || undefined, resume});
  app.client = c;
  app.pendingName = name;
  app.transportStates = {send: null, recv: null};

  c.addEventListener('statechange', ({detail}) => {
    if (detail.state === 'reconnecting') app.retryAt = Date.now() + (detail.retryIn || 0);
    // Our node of a cluster stopped answering (it died, or its network
    // did): join again on another node, which takes the room once the
    // dead node's lease runs out.
    if (detail.state === 'reconnecting' && !(detail.error instanceof RpcError) && (detail.attempt || 0) >= NODE_LOST_ATTEMPTS && c.nodes?.length) {
      fleeLostNode(c, name);
    }
    // A rejoin refused for good (the room got locked, full, a password…):
    // the first join's refusals are handled where join() is called.
    if (detail.state === 'failed' && detail.error instanceof RpcError && c.me) joinFailed(detail.error, name, password);
    renderConn();
  });
  c.addEventListener('joined', ({detail}) => {
    const r = detail.result || {};
    app.transportStates = {send: null, recv: null}; // new transports come with a new session
    rememberRoom(roomId);
    app.room = r.roomInfo || app.room;
    $('room-name').textContent = app.room?.name && app.room.name !== roomId ? app.room.name : roomId;
    for (const m of r.chat || []) addChat(normalizeChat(m));
    document.title = `${app.room?.name || roomId} · Matinee`;
    if (detail.rejoined) toast('Reconnected.', {ms: 2500});
    // Clock first: the playback state is read on the server clock.
    app.clock.seed(r.serverTime);
    if (app.clock._running) app.clock.burst();
    else app.clock.start();
    app.player.setSync(r.sync);
    app.queue = r.queue || [];
    if (r.playback) app.player.apply(r.playback, {force: true});
    renderQueue();
    renderRoom();
    renderPeople();
    layout();
  });
  c.addEventListener('transportstate', ({detail}) => {
    app.transportStates[detail.direction] = detail.state;
    renderConn();
  });
  c.addEventListener('peerjoined', () => {
    renderPeople();
    layout();
  });
  c.addEventListener('peerupdated', () => {
    renderPeople();
    app.movie.render();
  });
  c.addEventListener('meupdated', ({detail: {me: m, previousRole}}) => {
    if (m.role !== previousRole && !(m.role === 'host' && app.toldNewHost)) {
      const said = {host: 'You are a host now: you control the video and the room.', guest: 'You are a guest now.', viewer: 'You are a viewer now: you can watch and chat.'}[m.role];
      if (said) toast(said, {ms: 4000});
    }
    renderRoom();
    renderPeople();
    layout();
  });
  c.addEventListener('peerleft', ({detail}) => {
    if (app.menuFor === detail.peer.id) closeHostMenu();
    sayWhoLeft(detail);
    renderPeople();
    for (const t of [...app.tiles.values()]) {
      if (t.peerId === detail.peer.id) {
        t.entries.clear();
        dropTileIfEmpty(t);
      }
    }
    layout();
  });
  c.addEventListener('removed', ({detail: {kind, reason}}) => removed(kind, reason));
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
  c.addEventListener('stage', () => layout());
  c.addEventListener('layerchange', ({detail: {consumer}}) => {
    for (const t of app.tiles.values()) if (t.entries.get(consumer.producerId)?.consumer === consumer) t.render();
  });
  c.addEventListener('notification', ({detail: {method, params}}) => {
    switch (method) {
      case 'chat':
        addChat(normalizeChat(params));
        break;
      case 'reaction':
        showReaction(params);
        break;
      case 'playbackState': {
        const before = app.player.state;
        app.player.apply(params.state);
        const text = params.by === me()?.id && params.action !== 'resume' ? '' : describePlayback(params);
        if (params.action === 'stop' && before?.url && params.by !== me()?.id) toast(`${params.by ? displayName(params.by) : 'The host'} closed the video.`, {ms: 3500});
        else app.movie.say(text);
        app.movie.render();
        break;
      }
      case 'queueUpdated': {
        app.queue = params.queue || [];
        renderQueue();
        app.movie.render();
        break;
      }
      case 'roomUpdated': {
        const old = app.room || {};
        app.room = params.room || old;
        if (params.by && params.by !== me()?.id) {
          const who = displayName(params.by);
          if (old.locked !== app.room.locked) toast(app.room.locked ? `${who} locked the room.` : `${who} unlocked the room.`, {ms: 3000});
          else if (old.openControl !== app.room.openControl) toast(app.room.openControl ? `${who} let everyone control the video.` : `${who} took back control of the video.`, {ms: 3000});
        }
        renderRoom();
        renderPeople();
        break;
      }
      case 'muted':
        onMuted(params);
        break;
    }
  });

  renderConn();
  c.join().catch((err) => joinFailed(err, name, password));
}

// Someone left for good. Whoever was host hands over: everyone hears
// who left and who is host now.
function sayWhoLeft({peer, reason, newHost}) {
  if (!newHost && peer.role !== 'host') return;
  const who = peer.name || 'The host';
  const how = reason === 'timeout' ? `${who} left (connection lost)` : reason === 'removed' ? `${who} was removed` : `${who} left`;
  let text;
  if (!newHost) text = `${how}; nobody is host now.`;
  else if (newHost === me()?.id) {
    app.toldNewHost = true; // the role change itself says nothing more
    setTimeout(() => (app.toldNewHost = false), 2000);
    text = `${how}; you are the host now: you control the video and the room.`;
  } else text = `${how}; ${displayName(newHost)} is now host.`;
  toast(text, {ms: 6000});
}

// The server sent us away for good: say why, and stop the video.
function removed(kind, reason) {
  app.movie.video.pause();
  app.player.stop();
  app.clock.stop();
  stopAllLocal();
  switch (kind) {
    case 'deleted':
      fatal('This room was closed', `“${app.room?.name || roomId}” was deleted, so everyone in it was disconnected.`);
      break;
    case 'replaced':
      fatal('You joined from somewhere else', 'Your invite was used to join this room from another tab or device, so this one was disconnected.', {retry: () => location.reload(), retryLabel: 'Use this tab'});
      break;
    default: {
      const plain = !reason || /^removed (by the host|from the room)$/i.test(reason);
      fatal('You were removed from the room', plain ? 'The host removed you from this room.' : `The host removed you from this room: “${reason}”.`);
    }
  }
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
    case Codes.FORBIDDEN: {
      const reason = err.data?.reason || '';
      if (reason === 'locked') {
        fatal('This room is locked', `The host has locked “${roomId}”: nobody new can join right now. Ask them to unlock it, then try again.`, {retry: () => {
          $('fatal').hidden = true;
          start(name, password);
        }});
      } else if (reason.startsWith('token_')) {
        dropToken();
        const why = reason === 'token_expired' ? 'Your invite link has expired.' : reason === 'token_other_room' ? 'Your invite link is for another room.' : 'Your invite link is not valid on this server.';
        showPrejoin({error: `${why} You can still join with your name, or ask the host for a new link.`});
      } else if (reason === 'wrong_password' || (password && reason !== 'password_required')) {
        showPrejoin({password: true, error: 'That password is not right.'});
      } else {
        showPrejoin({password: true, error: 'This room needs a password. Ask the host for it.'});
      }
      renderConn();
      break;
    }
    case Codes.INVALID_PARAMS:
      showPrejoin({error: `The server did not accept that: ${err.message.replace(/^join: /, '')}`});
      break;
    case Codes.MOVED:
      if (!waitForFledNode(err.data?.url, name, password)) moveIfAnswering(err, name, password);
      break;
    default:
      fatal('Could not join', err.message, {retry: () => location.reload()});
  }
}

// ---------------------------------------------------------------- cluster

// The room lives on another node of the cluster (docs/cluster.md): the
// page opens there with the same room, and carries over what this origin
// knows that the other does not (the name, the invite token). A page
// moved a few times already gives up rather than loop between nodes.
const MAX_MOVES = 3;
// Failed reconnects to our node before looking for another node of the
// cluster: a node that restarts or is only slow gets these, and the page
// moves only to a node seen to answer (fleeLostNode).
const NODE_LOST_ATTEMPTS = 2;
// After fleeing a node, joins the new node answers with "moved back
// there" are retried this many times, a second apart: the dead node's
// lease has not run out yet. Past them the old node is alive after all,
// and the page goes back.
const FLED_RETRIES = 20;

// moveTo opens the room on the node at base; lost says our node stopped
// answering after we had joined, which starts the count of moves again.
function moveTo(base, name, lost = false) {
  let target;
  try {
    target = new URL(location.pathname + location.search, base);
  } catch {
    return false;
  }
  const hops = lost ? 1 : Number(movedAtLoad.hops || 0) + 1;
  if (!/^https?:$/.test(target.protocol) || hops > MAX_MOVES) return false;
  const carry = new URLSearchParams({name, moved: String(hops)});
  if (app.token) carry.set('token', app.token);
  // The node that takes the room over keeps its members (the cluster
  // keeps them in Redis), ours with our role: our resume token proves it
  // is us. sessionStorage is per origin, so it rides in the fragment.
  if (app.client?.resumeToken) carry.set('resume', app.client.resumeToken);
  if (lost) {
    // ?stay: the node serves the page even while our dead node's lease
    // lasts (else it would send us back there); taken out at load.
    target.searchParams.set('stay', '1');
    carry.set('from', location.origin);
  }
  target.hash = carry.toString();
  location.replace(target.href);
  return true;
}

// Our node stopped answering: the page moves to another node of the
// cluster that answers, tried in random order so that a dead node's
// members spread over the others; meanwhile the client keeps trying our
// node. When no node answers (our own network is down, more likely than
// every node dead), the page stays where it is rather than ending on the
// browser's error page, and looks again after the next failed attempt.
let fleeing = false;
async function fleeLostNode(c, name) {
  if (fleeing) return;
  fleeing = true;
  try {
    const nodes = [...c.nodes];
    for (let i = nodes.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [nodes[i], nodes[j]] = [nodes[j], nodes[i]];
    }
    for (const base of nodes) {
      if (app.client !== c || c.state !== 'reconnecting') return; // back on our node meanwhile
      if (await nodeAnswers(base) && app.client === c && c.state === 'reconnecting' && moveTo(base, name, true)) return;
    }
  } finally {
    fleeing = false;
  }
}

// Moves to the node a join was sent to (1010), once it is seen to answer:
// a node that just died may still be named for a few seconds, and a page
// that went there would be left on the browser's error page. Until it
// answers, or the room moves to a node that does, the join is tried here
// again, a second apart; past UNREACHABLE_RETRIES the person is told.
const UNREACHABLE_RETRIES = 20;
let unreachableRetries = 0;
async function moveIfAnswering(err, name, password) {
  const url = err.data?.url;
  if (await nodeAnswers(url)) {
    if (!moveTo(url, name)) fatal('Could not join', err.message, {retry: () => location.reload()});
    return;
  }
  if (++unreachableRetries > UNREACHABLE_RETRIES) {
    fatal('Could not join', `The room is on another server (${url}) that does not answer.`, {retry: () => location.reload()});
    return;
  }
  setTimeout(() => start(name, password), 1000);
}

// nodeAnswers resolves whether the node at base opens a WebSocket within
// a few seconds: its /ws/alive, which takes any origin and closes at once
// (the page's CSP lets it open WebSockets to other nodes, not fetch).
function nodeAnswers(base) {
  let ws;
  try {
    const u = new URL(base);
    ws = new WebSocket(`${u.protocol === 'https:' ? 'wss:' : 'ws:'}//${u.host}/ws/alive`);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const done = (ok) => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
      try {
        ws.close(1000);
      } catch {
        // closing an unopened socket may throw in old browsers
      }
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 3000);
    ws.onopen = () => done(true);
    ws.onerror = () => done(false);
    ws.onclose = () => done(false);
  });
}

// A join answered "the room is on node url" right after this page fled
// that node: wait for its lease to run out (true), unless that has taken
// too long.
let fledRetries = 0;
function waitForFledNode(url, name, password) {
  let origin = '';
  try {
    origin = new URL(url).origin;
  } catch {
    return false;
  }
  if (!movedAtLoad.from || origin !== movedAtLoad.from || ++fledRetries > FLED_RETRIES) return false;
  setTimeout(() => start(name, password), 1000);
  return true;
}

// What a move from another node carried in the address's fragment
// (#name=…&moved=N&from=…&resume=…, and token=… which takeToken reads):
// read once at load and taken out of the address bar, with ?stay.
function takeMoved() {
  const p = new URLSearchParams(window.location.hash.slice(1));
  if (!p.has('moved')) return {};
  const out = {name: (p.get('name') || '').trim(), hops: p.get('moved'), from: p.get('from') || '', resume: p.get('resume') || ''};
  if (out.name) saveName(out.name);
  return out;
}
const movedAtLoad = takeMoved();

// ---------------------------------------------------------------- sharing

function currentMode() {
  return document.querySelector('input[name="mode"]:checked')?.value === 'slides' ? 'slides' : 'movie';
}

// Whether the next share goes out in simulcast layers: the room's
// setting, unless the sharer chose otherwise on this page.
function shareSimulcast() {
  return app.oneQuality === null ? app.room?.simulcast !== false : !app.oneQuality;
}

function renderOneQuality() {
  const el = $('one-quality');
  el.checked = app.share ? !app.share.simulcast : !shareSimulcast();
  // A sender cannot change its number of encodings, so the choice is
  // made before sharing.
  el.disabled = !!app.share;
}

// The screen is sent in simulcast layers (a quarter, half and full size)
// so that the SFU can give a phone on a weak link a smaller picture
// without making everyone else's worse; or, when the room or the sharer
// turned that off, in one encoding at full quality. A mode change keeps
// the layers the share started with (its simulcast choice and captured
// size), as the number of encodings is fixed once sending.
function screenVideoSettings(mode, {simulcast, width, height}) {
  const m = MODES[mode];
  return {
    degradationPreference: m.degradation,
    encodings: videoEncodings({width, height}, screenLayers(m.maxBitrate), {simulcast}),
  };
}

// whenJoined resolves true once the client is in the room (at once if it
// is), false if it closes or fails first, or after ms.
function whenJoined(client, ms) {
  if (client.state === 'joined') return Promise.resolve(true);
  if (client.state === 'closed' || client.state === 'failed') return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok) => {
      clearTimeout(timer);
      client.removeEventListener('statechange', onState);
      resolve(ok);
    };
    const onState = ({detail: {state}}) => {
      if (state === 'joined') done(true);
      else if (state === 'closed' || state === 'failed') done(false);
    };
    const timer = setTimeout(() => done(false), ms);
    client.addEventListener('statechange', onState);
  });
}

async function startShare() {
  // A press while the page is still joining (or back from a drop) is not
  // lost: the screen is picked now, while the press allows it, and shared
  // once the client is in the room.
  if (app.share || !app.client || !['joined', 'connecting', 'reconnecting'].includes(app.client.state)) return;
  if (!mayShare()) {
    toast($('share').title, {ms: 4000});
    return;
  }
  if (!caps.screenShare) {
    toast(window.isSecureContext
      ? 'This browser cannot share its screen (phones and tablets usually cannot). You can still watch.'
      : 'Sharing a screen needs the secure address: open this page through https:// to share. You can still watch.', {kind: 'error', ms: 9000});
    return;
  }
  const mode = currentMode();
  const btn = $('share');
  // Disabling the button drops its focus; give it back (or to Stop) after.
  const keepFocus = document.activeElement === btn;
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
    if (keepFocus) btn.focus({preventScroll: true});
    shareError(err);
    return;
  }
  if (!(await whenJoined(app.client, 20000)) || app.share) {
    stream.getTracks().forEach((t) => t.stop());
    btn.disabled = false;
    if (!app.share) toast('Not sharing: the room could not be reached. Try again once connected.', {kind: 'error'});
    return;
  }
  if (!mayShare()) { // known only once in the room
    stream.getTracks().forEach((t) => t.stop());
    btn.disabled = false;
    toast($('share').title, {ms: 4000});
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
  const {width = 0, height = 0} = video.getSettings();
  const layering = {simulcast: shareSimulcast(), width, height};
  const specs = [{track: video, streams: [stream], appData: {source: 'screen', mode}, ...screenVideoSettings(mode, layering)}];
  if (audio) {
    specs.push({track: audio, streams: [stream], appData: {source: 'screen'}, opus: {stereo: true, maxAverageBitrate: SCREEN_AUDIO_BITRATE}, encodings: [{maxBitrate: SCREEN_AUDIO_BITRATE}]});
  }
  app.share = {mode, stream, producers: [], ...layering};
  try {
    app.share.producers = await app.client.produce(specs);
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    app.share = null;
    btn.disabled = false;
    toast(`Could not start sharing: ${err.message}`, {kind: 'error'});
    renderShare();
    if (keepFocus) btn.focus({preventScroll: true});
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
  if (keepFocus) $('stop-share').focus({preventScroll: true});
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
  if (sharing) swapButtons($('stop-share'), $('share'));
  else swapButtons($('share'), $('stop-share'));
  document.body.classList.toggle('sharing', sharing);
  renderOneQuality();
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
      await vp.setParameters(screenVideoSettings(mode, app.share)).catch((err) => console.warn('matinee: mode', err));
    }
    app.tiles.get('me:screen')?.render();
    toast(`Sharing as ${MODES[mode].label}.`, {ms: 2500});
  });
}

// A choice that matches the room's setting is no choice: the next share
// then follows the room again if the host changes it.
$('one-quality').addEventListener('change', () => {
  const one = $('one-quality').checked;
  app.oneQuality = one === (app.room?.simulcast === false) ? null : one;
  renderOneQuality();
});

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
  if (!mayShare()) {
    toast($(kind === 'video' ? 'cam' : 'mic').title, {ms: 4000});
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
      ? {video: {width: {ideal: 960}, height: {ideal: 540}, frameRate: {ideal: 24, max: 30}}}
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
    ? {track, streams: [stream], appData: {source: 'camera'}, encodings: videoEncodings(track.getSettings(), CAMERA_LAYERS, {simulcast: app.room?.simulcast !== false})}
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
  app.movie.render();
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

// The invite dialog shows the room's LAN join links and a QR code of the
// first, so a phone on the same Wi-Fi can join by scanning the screen.
const inviteDialog = modal($('invite-dialog'));

async function openInvite() {
  const links = $('invite-links');
  const here = window.location.origin + window.location.pathname;
  let urls = [];
  links.replaceChildren(h('li', {class: 'muted'}, 'Looking up this server\'s addresses…'));
  inviteDialog.open($('copy-link'));
  try {
    const res = await fetch(`/api/lan?room=${encodeURIComponent(roomId)}`, {cache: 'no-store'});
    if (res.ok) {
      const lan = await res.json();
      urls = lan.urls || [];
      if (lan.qr && urls.length) {
        $('invite-qr').src = lan.qr;
        $('invite-qr').hidden = false;
      }
      if (lan.help) $('invite-help').href = lan.help;
    }
  } catch {
    // Offline or an old server: fall back to this page's own address.
  }
  if (urls.length === 0) {
    $('invite-qr').hidden = true;
    $('invite-hint').textContent = 'This server has no network address other devices can reach, so only this computer can join. Connect it to Wi-Fi or Ethernet, or share this link:';
    urls = [here];
  }
  const hadFocus = $('invite-links').contains(document.activeElement);
  links.replaceChildren(...urls.map((u) => h('li', {}, h('a', {href: u, target: '_blank', rel: 'noopener'}, u))));
  $('invite-copy').onclick = () => copyInvite(urls[0]);
  // The links just replaced may have held the focus; keep it in the dialog.
  if (hadFocus && inviteDialog.isOpen) links.querySelector('a')?.focus();
}

function closeInvite() {
  inviteDialog.close();
}

async function copyInvite(url) {
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
}

$('copy-link').addEventListener('click', openInvite);
$('invite-close').addEventListener('click', closeInvite);

$('leave').addEventListener('click', async (ev) => {
  ev.preventDefault();
  if (app.share) await stopShare();
  if (app.client) await app.client.close();
  app.left = true;
  window.location.assign('/');
});

// A reload or a closed tab is not a leave: the server keeps our place
// (and our role) for its grace period, and a reload resumes it. Only the
// Leave button leaves at once.
window.addEventListener('pagehide', (ev) => {
  if (ev.persisted || !app.client || app.left) return;
  saveResume(app.client.resumeToken);
  app.client.close({leave: false});
});
window.addEventListener('pageshow', (ev) => {
  // Back from the back-forward cache: the old connection is gone.
  if (ev.persisted) location.reload();
});
window.addEventListener('online', () => app.client?.retryNow());
document.addEventListener('fullscreenchange', () => document.body.classList.toggle('fullscreen', !!document.fullscreenElement));

function boot() {
  setupPlayer();
  buildReactionBar();
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
  app.token = takeToken();
  if (movedAtLoad.hops) {
    const u = new URL(window.location.href);
    u.searchParams.delete('stay');
    u.hash = '';
    history.replaceState(null, '', u.pathname + u.search);
  }
  const name = (app.token && tokenClaims(app.token).name) || movedAtLoad.name || loadName();
  if (name) start(name);
  else showPrejoin();
}
boot();
