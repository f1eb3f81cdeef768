// The synced player: a <video> that follows the room's authoritative
// playback state (docs/protocol.md, "Synced playback"). The server holds
// {url, paused, position, rate, updatedAt, waiting, ended, duration,
// version}; this module
// works out where the video should be on the server clock, closes small
// gaps by nudging playbackRate and large ones by seeking (aiming where the
// video will be once the seek is done), and reports what the element does:
// its position every second and whether it is buffering.

import {localNow} from './clock.js';

export const HAVE_METADATA = 1;
export const HAVE_FUTURE_DATA = 3;

/** Thresholds used until the join result gives the server's. */
export const DEFAULT_SYNC = Object.freeze({nudgeThresholdMs: 40, seekThresholdMs: 400, maxNudge: 0.1, reportIntervalMs: 1000, waitTimeoutMs: 20000});

/** Where the video of state s should be (seconds) at server time serverMs. */
export function expectedPosition(s, serverMs) {
  if (!s || !s.url) return 0;
  if (s.paused || s.waiting || s.ended) return s.position;
  return Math.max(0, s.position + ((serverMs - s.updatedAt) / 1000) * s.rate);
}

/**
 * How to close a gap (seconds; > 0: the video is behind) while playing at
 * rate: {seek: true} above the seek threshold, else the playbackRate to
 * use. A nudge starts above the nudge threshold and goes on until the gap
 * is under half of it (nudging says whether one is under way).
 */
export function correction(gap, rate, sync, nudging = false) {
  const nudge = sync.nudgeThresholdMs / 1000;
  const a = Math.abs(gap);
  if (a > sync.seekThresholdMs / 1000) return {seek: true, rate, nudging: false};
  if (a <= nudge / 2 || (!nudging && a <= nudge)) return {seek: false, rate, nudging: false};
  const k = Math.max(-sync.maxNudge, Math.min(sync.maxNudge, gap / 1));
  return {seek: false, rate: rate * (1 + k), nudging: true};
}

/** Whether this browser can play a URL's format ("" when it surely cannot). */
export function canPlay(video, url, type = '') {
  const path = String(url).split(/[?#]/)[0].toLowerCase();
  if (type === 'application/vnd.apple.mpegurl' || path.endsWith('.m3u8')) return video.canPlayType('application/vnd.apple.mpegurl');
  if (type) return video.canPlayType(type) || (type.startsWith('video/') ? 'maybe' : '');
  return 'maybe';
}

/** "1:05", "1:02:03". */
export function formatTime(sec) {
  if (!Number.isFinite(sec) || sec < 0) return '0:00';
  const s = Math.floor(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/**
 * SyncedPlayer drives one <video> element from the room's state.
 *
 *   const player = new SyncedPlayer(video, {clock, send: (p) => client.notify('playbackReport', p)});
 *   player.setSync(joinResult.sync);
 *   player.apply(joinResult.playback, {force: true});
 *   // then player.apply(params.state) on every playbackState
 *
 * How it lands on time. A seek takes a while (the decoder starts from the
 * keyframe before the target) and so does play() (the audio output has to
 * start), and both vary from one machine to the next. So a large gap is not
 * closed by seeking to where the video should be now, but by pausing,
 * seeking a little ahead (further than seeks have been taking here), and
 * calling play() at the moment the room reaches that point, early by how
 * long play() takes here. Both durations are measured on every seek and
 * start. Small gaps are closed by nudging playbackRate within the server's
 * thresholds, which is inaudible.
 *
 * Events: "change" (state applied, buffering, error: redraw), and
 * "autoplayblocked" (the browser refused to play with sound; the player
 * went on muted).
 */
export class SyncedPlayer extends EventTarget {
  /**
   * @param video  the <video>
   * @param opts   clock: a ServerClock; send(params): sends playbackReport;
   *               sync: thresholds (DEFAULT_SYNC); tickMs: drift check
   *               period (250); bufferGraceMs: how long a stall lasts before
   *               it is reported (500: shorter ones, such as a seek within
   *               buffered data, are not worth holding the room for)
   */
  constructor(video, {clock, send = () => {}, sync = DEFAULT_SYNC, tickMs = 250, bufferGraceMs = 500} = {}) {
    super();
    this.video = video;
    this.clock = clock;
    this.send = send;
    this.sync = {...DEFAULT_SYNC, ...sync};
    this.tickMs = tickMs;
    this.bufferGraceMs = bufferGraceMs;

    this.state = null; // the room's PlaybackState
    this.url = null; // what the element has loaded
    this.buffering = false; // as last reported
    this.nudging = false;
    this.seekMs = 150; // learnt: from setting currentTime until it can play there
    this.seekMeasured = false;
    this.startMs = 20; // learnt: from play() until the position moves
    this.seeks = 0;
    this.lastGap = null; // seconds, at the last drift check while playing
    this.error = null;

    this._align = null; // a seek ahead waiting for its moment: {target, startAt, setAt, readyAt, timer}
    this._startProbe = null; // {at, pos}: a play() to learn its latency from
    this._startChecked = false; // a start was just measured: check how it landed
    this._catchUps = 0; // seeks after a late start, for the current state
    this._lastSeekAt = -Infinity;
    this._stalledSince = null;
    this._waitingEvent = false;
    this._lastReport = -Infinity;
    this._playCall = null;
    this._timer = null;
    this._bufferTimer = null;

    const on = (ev, f) => video.addEventListener(ev, f);
    on('loadedmetadata', () => this.correct(true));
    on('waiting', () => {
      this._waitingEvent = true;
      this._checkBuffering();
    });
    for (const ev of ['canplay', 'canplaythrough', 'playing']) {
      on(ev, () => {
        this._waitingEvent = false;
        this._checkAlign();
        this._checkBuffering();
      });
    }
    on('seeked', () => this._checkAlign());
    on('error', () => {
      const e = video.error;
      if (!this.url || !e) return;
      this.error = e.code === 4 ? 'This video’s format or address cannot be played here.' : e.code === 2 ? 'The video could not be downloaded.' : `The video cannot be played (${e.message || `error ${e.code}`}).`;
      this._cancelAlign();
      this._checkBuffering();
      this._emit('change');
    });
  }

  /** The thresholds of the join result's `sync`. */
  setSync(sync) {
    if (sync) this.sync = {...DEFAULT_SYNC, ...sync};
  }

  /** Starts the drift checks and reports. */
  start() {
    if (this._timer === null) this._timer = setInterval(() => this.tick(), this.tickMs);
  }

  stop() {
    clearInterval(this._timer);
    this._timer = null;
    this._cancelAlign();
  }

  /**
   * Follows a PlaybackState. States older than (or as old as) the current
   * one are ignored, unless force (a join result, which may come from a
   * room that started again).
   */
  apply(s, {force = false} = {}) {
    if (!s) return;
    if (!force && this.state && typeof s.version === 'number' && s.version <= this.state.version) return;
    this.state = {...s, waitingFor: [...(s.waitingFor || [])]};
    if (!s.url) {
      this._unload();
    } else if (s.url !== this.url) {
      this._load(s.url);
    }
    this.nudging = false;
    this._catchUps = 0;
    this.correct(true);
    this._checkBuffering();
    this._emit('change');
  }

  /** Where the video should be now, seconds. */
  expected() {
    return expectedPosition(this.state, this.clock.now());
  }

  /** What a test or the stats overlay wants to know. */
  status() {
    const v = this.video;
    return {
      url: this.url,
      version: this.state ? this.state.version : -1,
      paused: v.paused,
      currentTime: v.currentTime,
      expected: this.state && this.state.url ? this.expected() : 0,
      gapMs: this.lastGap === null ? null : this.lastGap * 1000,
      playbackRate: v.playbackRate,
      nudging: this.nudging,
      aligning: !!this._align,
      buffering: this.buffering,
      readyState: v.readyState,
      seeks: this.seeks,
      seekMs: this.seekMs,
      seekMeasured: this.seekMeasured,
      startMs: this.startMs,
      clockRttMs: this.clock.rtt,
      error: this.error,
    };
  }

  tick() {
    if (!this.url) return;
    this._learnStart();
    this._checkAlign();
    this.correct(false);
    this._checkBuffering();
    const now = localNow();
    if (now - this._lastReport >= this.sync.reportIntervalMs) this._report();
  }

  /**
   * One drift check; force after a state change (no seek back-off, and
   * the paused/playing state is enforced).
   */
  correct(force) {
    const v = this.video;
    const s = this.state;
    if (!s || !s.url || !this.url || v.readyState < HAVE_METADATA || this.error) return;
    const dur = Number.isFinite(v.duration) && v.duration > 0 ? v.duration : Infinity;
    const now = this.clock.now();
    const exp = Math.min(expectedPosition(s, now), dur);
    const nudge = this.sync.nudgeThresholdMs / 1000;

    if (s.paused || s.waiting || s.ended) {
      this._cancelAlign();
      this._startProbe = null;
      this._startChecked = false;
      this.lastGap = null;
      this.nudging = false;
      if (!v.paused) v.pause();
      this._setRate(s.rate);
      // Paused, everyone shows the same frame.
      if (Math.abs(exp - v.currentTime) > nudge && (force || !v.seeking)) this._seek(exp);
      return;
    }

    if (this._align) {
      if (!force) return; // on its way
      this._cancelAlign();
    }

    // Past the end: show the last frame, do not loop.
    if (exp >= dur - 0.05 && (v.paused || v.ended)) {
      if (!v.ended && Math.abs(dur - v.currentTime) > nudge && !v.seeking) this._seek(dur);
      return;
    }
    if (v.seeking && !force) return;

    const gap = exp - v.currentTime;
    this.lastGap = gap;
    if (v.paused) {
      // Starting: at once when a nudge can close the gap, else from a
      // point ahead.
      this._setRate(s.rate);
      this.nudging = false;
      if (Math.abs(gap) * 1000 > this.sync.seekThresholdMs) this._alignTo(now, dur);
      else this._play(true);
      return;
    }
    // While a start is being measured, leave the rate alone.
    if (this._startProbe && !force) return;
    // A start that came out late (the state arrived while this page was
    // busy, or play() took long) is put right with one seek ahead at once,
    // rather than with a nudge that would take seconds; checked once, when
    // the start has been measured, and once per state.
    const justStarted = this._startChecked;
    this._startChecked = false;
    // Starts here run some 50-100 ms late (play() takes that long), which
    // a nudge closes within a second; only clearly worse ones qualify.
    const catchUp = Math.max(5 * this.sync.nudgeThresholdMs, 2000 * this.sync.maxNudge) / 1000;
    if (!force && justStarted && Math.abs(gap) > catchUp && this._catchUps < 1) {
      this._catchUps++;
      this._alignTo(now, dur);
      return;
    }
    const since = localNow() - this._lastSeekAt;
    const c = correction(gap, s.rate, this.sync, this.nudging);
    if (c.seek && (force || since >= 1000)) {
      this._alignTo(now, dur);
    } else if (c.seek) {
      // Just sought: lean on the rate until the back-off ends.
      this._setRate(s.rate * (1 + Math.sign(gap) * this.sync.maxNudge));
      this.nudging = true;
    } else {
      this._setRate(c.rate);
      this.nudging = c.nudging;
    }
  }

  // Pauses, seeks to where the room will be once a seek has had time to
  // finish, and starts there on time (_checkAlign).
  _alignTo(now, dur) {
    const v = this.video;
    const s = this.state;
    this._cancelAlign();
    this._startProbe = null;
    this.nudging = false;
    const margin = Math.min(2000, Math.max(150, this.seekMs * 1.5 + 60));
    const startAt = now + margin;
    const target = Math.min(expectedPosition(s, startAt), dur);
    if (!v.paused) v.pause();
    this._setRate(s.rate);
    this._align = {target, startAt, setAt: localNow(), readyAt: null, timer: null};
    this._seek(target);
  }

  // Once the seek ahead is done, schedules play() for its moment.
  _checkAlign() {
    const a = this._align;
    const v = this.video;
    if (!a || a.timer !== null) return;
    if (v.seeking || v.readyState < HAVE_FUTURE_DATA) return;
    a.readyAt = localNow();
    const took = a.readyAt - a.setAt;
    this.seekMs = this.seekMeasured ? Math.max(20, Math.min(3000, this.seekMs * 0.5 + took * 0.5)) : Math.max(20, Math.min(3000, took));
    this.seekMeasured = true;
    const wait = this.clock.toLocal(a.startAt) - this.startMs - localNow();
    a.timer = setTimeout(() => {
      if (this._align !== a) return;
      this._align = null;
      this._play(true);
    }, Math.max(0, wait));
  }

  _cancelAlign() {
    if (!this._align) return;
    clearTimeout(this._align.timer);
    this._align = null;
  }

  // Learns how long play() takes to get the position moving: after a
  // while, the position moved less than the time that passed by that much.
  _learnStart() {
    const p = this._startProbe;
    const v = this.video;
    if (!p) return;
    const elapsed = localNow() - p.at;
    if (v.paused || v.seeking || v.readyState < HAVE_FUTURE_DATA || elapsed > 3000) {
      if (v.paused || elapsed > 3000) this._startProbe = null;
      return;
    }
    if (elapsed < 400) return;
    const moved = ((v.currentTime - p.pos) * 1000) / (v.playbackRate || 1);
    const lag = elapsed - moved;
    if (lag > -50 && lag < 1000) this.startMs = Math.max(0, Math.min(500, this.startMs * 0.5 + lag * 0.5));
    this._startProbe = null;
    this._startChecked = true;
  }

  _seek(target) {
    this._lastSeekAt = localNow();
    this._startProbe = null;
    this.seeks++;
    this.video.currentTime = target;
  }

  _setRate(r) {
    const v = this.video;
    if (Math.abs(v.playbackRate - r) > 1e-6) v.playbackRate = r;
  }

  _play(probe = false) {
    const v = this.video;
    if (this._playCall) return;
    if (probe && v.readyState >= HAVE_FUTURE_DATA) this._startProbe = {at: localNow(), pos: v.currentTime};
    const attempt = () => v.play();
    this._playCall = attempt()
      .catch(async (err) => {
        if (err.name === 'NotAllowedError' && !v.muted) {
          // No sound before a tap (phones, fresh tabs): play muted.
          v.muted = true;
          this._emit('autoplayblocked');
          try {
            await attempt();
          } catch (e2) {
            this._warnOnce('matinee: player cannot play', e2);
          }
        } else if (err.name !== 'AbortError') {
          this._warnOnce('matinee: player cannot play', err);
        }
      })
      .finally(() => {
        this._playCall = null;
      });
  }

  _load(url) {
    const v = this.video;
    this._cancelAlign();
    this.url = url;
    this.error = null;
    this._startProbe = null;
    this._lastSeekAt = -Infinity;
    this._stalledSince = null;
    this._waitingEvent = false;
    this.lastGap = null;
    if (!canPlay(v, url)) this.error = 'This browser cannot play HLS (.m3u8) videos. Safari, Edge and Chrome on Android can.';
    v.preload = 'auto';
    v.src = url;
  }

  _unload() {
    const v = this.video;
    this._cancelAlign();
    if (!this.url) return;
    this.url = null;
    this.error = null;
    this.lastGap = null;
    v.pause();
    v.removeAttribute('src');
    v.load();
  }

  // Seconds of media downloaded beyond the current position.
  _bufferedAhead() {
    const v = this.video;
    const t = v.currentTime;
    for (let i = 0; i < v.buffered.length; i++) {
      if (v.buffered.start(i) <= t + 0.05 && v.buffered.end(i) > t) return v.buffered.end(i) - t;
    }
    return 0;
  }

  // Decides whether the element is buffering: the room wants it to play
  // and it lacks data. Stalls shorter than bufferGraceMs are not told; a
  // stall with the data already downloaded (a seek being decoded on a busy
  // machine) gets four times as long, as it ends by itself.
  _checkBuffering() {
    const v = this.video;
    const s = this.state;
    const want = !!(s && s.url && this.url && !s.paused && !this.error && !v.error && !v.ended);
    const stalled = want && (v.readyState < HAVE_FUTURE_DATA || (this._waitingEvent && !v.paused));
    const now = localNow();
    if (!stalled) {
      this._stalledSince = null;
      clearTimeout(this._bufferTimer);
      if (this.buffering) this._setBuffering(false);
      return;
    }
    const grace = this._bufferedAhead() >= 1 ? this.bufferGraceMs * 4 : this.bufferGraceMs;
    if (this._stalledSince === null) this._stalledSince = now;
    const left = this._stalledSince + grace - now;
    if (left > 0) {
      // Check again once the grace period is over, between ticks.
      clearTimeout(this._bufferTimer);
      this._bufferTimer = setTimeout(() => this._checkBuffering(), left + 10);
    } else if (!this.buffering) {
      this._setBuffering(true);
    }
  }

  _setBuffering(b) {
    this.buffering = b;
    this._report();
    this._emit('change');
  }

  // Sends playbackReport: where the element is, on the server clock. While
  // seeking (or waiting to start after a seek) the position says nothing
  // about sync, so only the buffering flag goes.
  _report() {
    const v = this.video;
    const s = this.state;
    this._lastReport = localNow();
    const p = {buffering: this.buffering};
    if (s && s.url && this.url && v.readyState >= HAVE_METADATA && !v.seeking && !this._align) {
      p.position = v.currentTime;
      p.at = this.clock.now();
      p.version = s.version;
      // The room ends the video on its own clock once it knows how long
      // the video is; the first player to know tells it.
      if (!s.duration && Number.isFinite(v.duration) && v.duration > 0) p.duration = v.duration;
    }
    try {
      this.send(p);
    } catch (err) {
      console.debug('matinee: playbackReport', err);
    }
  }

  // Logs a failure once per video (play() is retried on every check).
  _warnOnce(what, err) {
    if (this._warnedFor === this.url) return;
    this._warnedFor = this.url;
    console.warn(what, err);
  }

  _emit(type) {
    this.dispatchEvent(new CustomEvent(type, {detail: {player: this}}));
  }
}
