// An estimate of the server's clock, NTP-style (docs/protocol.md, "Synced
// playback"): each probe measures the round trip of a `time` request on
// the local monotonic clock and assumes the server answered halfway; the
// sample with the smallest round trip among the last few is the estimate,
// good to ± half its round trip.

/** The local monotonic clock in milliseconds (never Date.now, which jumps). */
export const localNow = () => performance.now();

/**
 * ServerClock estimates the server clock from `time` probes.
 *
 *   const clock = new ServerClock((clientTime) => client.request('time', {clientTime}));
 *   clock.start();
 *   clock.now();   // the server's Unix ms, by our estimate
 *
 * Events: "change" (detail {offset, rtt}) when the estimate changes.
 */
export class ServerClock extends EventTarget {
  /**
   * @param probe  (clientTime) → Promise<{serverTime}>; rejections are skipped
   * @param opts   window: samples kept (16); burst: probes at start (8);
   *               burstGapMs (100); intervalMs between later probes (10000);
   *               local: the monotonic clock (performance.now)
   */
  constructor(probe, {window = 16, burst = 8, burstGapMs = 100, intervalMs = 10000, local = localNow} = {}) {
    super();
    this.probe = probe;
    this.window = window;
    this.burstCount = burst;
    this.burstGapMs = burstGapMs;
    this.intervalMs = intervalMs;
    this.local = local;
    this.samples = []; // newest last: {offset, rtt, at}
    this.best = null; // the sample in use
    this._timer = null;
    this._running = false;
    this._burstLeft = 0;
  }

  /** Whether at least one probe has answered. */
  get ready() {
    return this.best !== null && this.best.rtt !== Infinity;
  }

  /** Server time minus local time, ms (0 before any sample). */
  get offset() {
    return this.best ? this.best.offset : 0;
  }

  /** Round trip of the sample in use, ms (Infinity when only seeded). */
  get rtt() {
    return this.best ? this.best.rtt : Infinity;
  }

  /** The server clock now (Unix ms), by the estimate. */
  now() {
    return this.local() + this.offset;
  }

  /** The local time (performance.now() scale) of a server time. */
  toLocal(serverMs) {
    return serverMs - this.offset;
  }

  /**
   * A rough first estimate before any probe: a server time read "about
   * now" (e.g. the join result's serverTime). Any real sample replaces it.
   */
  seed(serverTime) {
    if (this.ready || typeof serverTime !== 'number') return;
    this.best = {offset: serverTime - this.local(), rtt: Infinity, at: this.local()};
    this._changed();
  }

  /**
   * Adds one measurement: t0 and t3 are the local times the probe left
   * and its answer came back, serverTime the server's clock in between.
   */
  add(t0, t3, serverTime) {
    const rtt = t3 - t0;
    if (!(rtt >= 0) || typeof serverTime !== 'number' || !Number.isFinite(serverTime)) return null;
    const s = {offset: serverTime - (t0 + t3) / 2, rtt, at: t3};
    this.samples.push(s);
    if (this.samples.length > this.window) this.samples.shift();
    const best = this.samples.reduce((a, b) => (b.rtt < a.rtt || (b.rtt === a.rtt && b.at > a.at) ? b : a));
    if (best !== this.best) {
      this.best = best;
      this._changed();
    }
    return s;
  }

  /** Sends one probe; resolves with the sample, or null if it failed. */
  async sample() {
    const t0 = this.local();
    let res;
    try {
      res = await this.probe(t0);
    } catch {
      return null;
    }
    const t3 = this.local();
    return this.add(t0, t3, res && res.serverTime);
  }

  /** Probes `burst` times about burstGapMs apart, then every intervalMs. */
  start() {
    this._running = true;
    this.burst();
  }

  /** Starts a new burst now (e.g. after a reconnect: the path may differ). */
  burst() {
    if (!this._running) return;
    this._burstLeft = this.burstCount;
    this._schedule(0);
  }

  stop() {
    this._running = false;
    clearTimeout(this._timer);
    this._timer = null;
  }

  _schedule(ms) {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._tick(), ms);
  }

  async _tick() {
    if (!this._running) return;
    this._timer = null;
    await this.sample();
    if (!this._running || this._timer !== null) return; // stopped, or a new burst began
    if (this._burstLeft > 0) this._burstLeft--;
    this._schedule(this._burstLeft > 0 ? this.burstGapMs : this.intervalMs);
  }

  _changed() {
    this.dispatchEvent(new CustomEvent('change', {detail: {offset: this.offset, rtt: this.rtt}}));
  }
}
