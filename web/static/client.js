// Matinee's browser client library. It mirrors the server's model
// (docs/protocol.md): a Client joins a room over JSON-RPC; it owns at most
// one SendTransport (the browser offers and publishes Producers) and one
// RecvTransport (the SFU offers, the browser answers, Consumers arrive).
// The Client also recovers by itself: a lost WebSocket is reopened with
// backoff, the room rejoined, every producer republished and every
// producer of the others subscribed again; a failed ICE connection is
// restarted. See docs/client.md.

import {Signaling, RpcError, ConnectionError, Codes, defaultURL} from './rpc.js';
import * as SDP from './sdp.js';

export {RpcError, ConnectionError, Codes};

/** What this browser can do, for deciding what to offer the user. */
export function capabilities() {
  const md = typeof navigator !== 'undefined' ? navigator.mediaDevices : undefined;
  const videoCodecs = [];
  if (typeof RTCRtpSender !== 'undefined' && RTCRtpSender.getCapabilities) {
    for (const c of RTCRtpSender.getCapabilities('video')?.codecs || []) {
      const t = c.mimeType.toLowerCase();
      if (!videoCodecs.includes(t) && !/rtx|red|ulpfec|flexfec/.test(t)) videoCodecs.push(t);
    }
  }
  return {
    webrtc: typeof RTCPeerConnection === 'function',
    websocket: typeof WebSocket === 'function',
    screenShare: !!(md && md.getDisplayMedia),
    userMedia: !!(md && md.getUserMedia),
    videoCodecs,
  };
}

// Fmtp parameters that make a browser send (and decode) Opus stereo.
const STEREO = {stereo: 1, 'sprop-stereo': 1};

// MOVED too: the room is on another node of the cluster, and the page
// goes there (room.js); retrying here would only be told so again.
const FATAL_JOIN_CODES = new Set([Codes.ROOM_FULL, Codes.NOT_FOUND, Codes.FORBIDDEN, Codes.INVALID_PARAMS, Codes.MOVED]);

/**
 * The server removed us for good (kicked, room deleted, joined from
 * another tab): the client does not reconnect. kind is "kicked",
 * "deleted", "replaced" or "removed"; reason is the server's words.
 */
export class RemovedError extends Error {
  constructor(kind, reason) {
    super(reason ? `removed by the server: ${reason}` : 'removed by the server');
    this.name = 'RemovedError';
    this.kind = kind;
    this.reason = reason || '';
  }
}

/**
 * Sorts a `disconnected` reason (free text, docs/protocol.md) into what a
 * person is told: null when it is worth reconnecting (server restart,
 * media timeout), else the kind of removal.
 */
export function removalKind(reason) {
  const r = String(reason || '').toLowerCase();
  if (/shutting down|did not complete|ice|dtls|transport|too slow/.test(r)) return null;
  if (/room deleted|room (was )?(closed|ended)/.test(r)) return 'deleted';
  if (/another connection|another tab|replaced/.test(r)) return 'replaced';
  if (/removed|kick/.test(r) || r) return 'kicked';
  return 'removed';
}

function emit(target, type, detail) {
  target.dispatchEvent(new CustomEvent(type, {detail}));
}

/**
 * Transport is one RTCPeerConnection in one direction. Events:
 * "connectionstatechange" (detail {state}).
 */
class Transport extends EventTarget {
  constructor(client, id, direction, iceServers) {
    super();
    this.client = client;
    this.id = id;
    this.direction = direction;
    this.closed = false;
    this.pc = new RTCPeerConnection({iceServers: iceServers || [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require'});
    this._queue = Promise.resolve();
    this._remoteCandidates = [];
    this._localCandidates = [];
    this._signalled = false; // first offer/answer sent: local candidates may flow
    this.pc.onicecandidate = (ev) => {
      const c = ev.candidate ? ev.candidate.toJSON() : null;
      if (c && !c.candidate) return; // end-of-candidates for one generation
      if (this._signalled) this._sendCandidate(c);
      else this._localCandidates.push(c);
    };
    this.pc.onconnectionstatechange = () => {
      emit(this, 'connectionstatechange', {state: this.pc.connectionState});
    };
  }

  get state() {
    return this.pc.connectionState;
  }

  _sendCandidate(candidate) {
    this.client._notify('iceCandidate', {transportId: this.id, candidate});
  }

  _flushLocalCandidates() {
    this._signalled = true;
    for (const c of this._localCandidates.splice(0)) this._sendCandidate(c);
  }

  async _addRemoteCandidate(candidate) {
    if (!candidate || !candidate.candidate) return;
    if (!this.pc.remoteDescription) {
      this._remoteCandidates.push(candidate);
      return;
    }
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (err) {
      console.warn('matinee: remote candidate rejected', candidate, err);
    }
  }

  async _flushRemoteCandidates() {
    for (const c of this._remoteCandidates.splice(0)) await this._addRemoteCandidate(c);
  }

  // Runs fn after every earlier negotiation step of this transport.
  _enqueue(fn) {
    const run = this._queue.then(() => (this.closed ? undefined : fn()));
    this._queue = run.catch(() => {});
    return run;
  }

  /** The transport's RTCStatsReport. */
  getStats() {
    return this.pc.getStats();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pc.close();
  }
}

/**
 * Producer is one track this browser sends. Its id is the server's and
 * changes when the client rejoins after a reconnect (event "id").
 */
export class Producer extends EventTarget {
  constructor(client, spec) {
    super();
    this.client = client;
    this.id = null;
    this.track = spec.track;
    this.kind = spec.track.kind;
    this.appData = spec.appData || {};
    this.streams = spec.streams || [];
    this.encodings = spec.encodings || null;
    this.opus = spec.opus || null; // {stereo, maxAverageBitrate}
    this.degradationPreference = spec.degradationPreference || null;
    this.paused = false;
    this.closed = false;
    this.transceiver = null;
    this._needed = new Map(); // rid → whether any subscriber needs it (dynacast)
  }

  get mid() {
    return this.transceiver ? this.transceiver.mid : null;
  }

  get sender() {
    return this.transceiver ? this.transceiver.sender : null;
  }

  _setId(id) {
    if (this.id === id) return;
    this.id = id;
    emit(this, 'id', {id});
  }

  /** Mutes the track for everyone (the server stops forwarding it). */
  async pause() {
    this.paused = true;
    this.track.enabled = false;
    if (this.id) await this.client.request('pauseProducer', {producerId: this.id});
  }

  async resume() {
    this.paused = false;
    this.track.enabled = true;
    if (this.id) await this.client.request('resumeProducer', {producerId: this.id});
  }

  /** Sends another track of the same kind without renegotiating. */
  async replaceTrack(track) {
    this.track = track;
    if (this.sender) await this.sender.replaceTrack(track);
  }

  /**
   * Changes sending parameters live: degradationPreference and, per
   * encoding, maxBitrate / maxFramerate / scaleResolutionDownBy / active.
   */
  async setParameters({degradationPreference, encodings} = {}) {
    if (degradationPreference) this.degradationPreference = degradationPreference;
    if (encodings) this.encodings = encodings;
    await this._applyParameters();
  }

  // Sends only the simulcast layers someone receives.
  _setNeededLayers(layers) {
    for (const l of layers) if (l.rid) this._needed.set(l.rid, !!l.active);
    this._applyParameters();
  }

  // Applies encodings, dynacast and degradationPreference to the sender.
  // Calls run one after another: getParameters/setParameters pairs must
  // not interleave.
  _applyParameters() {
    const run = (this._paramsQueue || Promise.resolve()).then(() => this._setSenderParameters());
    this._paramsQueue = run.catch(() => {});
    return run;
  }

  async _setSenderParameters() {
    const s = this.sender;
    if (!s) return;
    const build = (withPreference) => {
      const p = s.getParameters();
      if (!p.encodings || p.encodings.length === 0) return null;
      p.encodings.forEach((e, i) => {
        const want = this.encodings ? this.encodings[i] || {} : {};
        for (const k of ['maxBitrate', 'maxFramerate', 'scaleResolutionDownBy', 'priority', 'networkPriority']) {
          if (want[k] !== undefined) e[k] = want[k];
        }
        e.active = want.active !== false && (!e.rid || this._needed.get(e.rid) !== false);
      });
      if (withPreference && this.degradationPreference) p.degradationPreference = this.degradationPreference;
      return p;
    };
    const p = build(true);
    if (!p) return;
    try {
      await s.setParameters(p);
    } catch (err) {
      if (!this.degradationPreference) {
        console.warn('matinee: setParameters', err);
        return;
      }
      // Some browsers refuse degradationPreference: keep the rest.
      try {
        await s.setParameters(build(false));
      } catch (err2) {
        console.warn('matinee: setParameters', err2);
      }
    }
  }

  /** Stops sending: the server closes the producer and its consumers. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    await this.client._closeProducer(this);
    emit(this, 'close', {});
  }

  /** The sender's RTCStatsReport (outbound-rtp per simulcast layer). */
  getStats() {
    return this.sender ? this.sender.getStats() : Promise.resolve(new Map());
  }
}

/** Consumer is one producer of another peer arriving here. */
export class Consumer extends EventTarget {
  constructor(client, info) {
    super();
    this.client = client;
    this.id = info.id;
    this.producerId = info.producerId;
    this.peerId = info.peerId;
    this.kind = info.kind;
    this.paused = !!info.paused;
    this.mid = info.mid ?? null;
    this.spatialLayer = null; // the simulcast layer arriving, when the SFU says
    this.temporalLayer = null; // and the highest VP8 temporal layer of it
    this.track = null;
    this.receiver = null;
    this.closed = false;
  }

  /** The producer's appData, e.g. {source: "screen"}. */
  get appData() {
    return this.client.producers.get(this.producerId)?.appData || {};
  }

  /** Whether the producer is paused (muted at its source). */
  get producerPaused() {
    return !!this.client.producers.get(this.producerId)?.paused;
  }

  async pause() {
    this.paused = true;
    await this.client.request('pauseConsumer', {consumerId: this.id});
  }

  async resume() {
    this.paused = false;
    await this.client.request('resumeConsumer', {consumerId: this.id});
  }

  /**
   * Caps the simulcast layer this consumer receives (0 lowest … 2 full);
   * a small tile needs no more than the lowest. Servers without layer
   * control answer -32601, which is ignored.
   */
  async setPreferredLayer(spatialLayer) {
    if (this.preferredLayer === spatialLayer) return;
    this.preferredLayer = spatialLayer;
    try {
      await this.client.request('setPreferredLayers', {consumerId: this.id, spatialLayer});
    } catch (err) {
      if (!(err instanceof RpcError && err.code === Codes.METHOD_NOT_FOUND)) throw err;
    }
  }

  /** Unsubscribes (the server renegotiates the receive transport). */
  async close() {
    if (this.closed) return;
    await this.client.request('unsubscribe', {consumerId: this.id});
    this.client._consumerGone(this, 'closed');
  }

  getStats() {
    return this.receiver ? this.receiver.getStats() : Promise.resolve(new Map());
  }
}

/** The send transport: this browser offers, the SFU answers. */
export class SendTransport extends Transport {
  constructor(client, id, iceServers) {
    super(client, id, 'send', iceServers);
    this.producers = new Set();
    this._free = new Set(); // idle transceivers whose producer closed
    this.lastOffer = null; // the SDP last published, for tests and debugging
    this.lastAnswer = null;
    // The first m-section carries the BUNDLE transport: if it were ever
    // stopped the browser would move the bundle to a new ICE transport.
    // An inactive anchor that is never stopped keeps it in place, so the
    // sections of closed producers can be stopped (and recycled).
    this._anchor = this.pc.addTransceiver('audio', {direction: 'inactive'});
    setCodecs(this._anchor, 'audio');
  }

  // Gives each producer a new transceiver. An idle one (its producer
  // closed) of the same kind is stopped in the same offer rather than
  // reused: the SFU cannot take the same SSRC back once its m-section went
  // inactive, and stopping it alone would leave an offer with no bundle.
  // The browser recycles stopped m-sections, so the SDP does not grow.
  _attach(producers) {
    for (const p of producers) {
      if (p.transceiver) continue;
      for (const f of this._free) {
        if (f.receiver.track.kind !== p.kind) continue;
        this._free.delete(f);
        f.stop();
        break;
      }
      const init = {direction: 'sendonly', streams: p.streams};
      if (p.encodings) init.sendEncodings = p.encodings.map((e) => ({...e}));
      p.transceiver = this.pc.addTransceiver(p.track, init);
      setCodecs(p.transceiver, p.kind);
      this.producers.add(p);
    }
  }

  _detach(p) {
    const t = p.transceiver;
    this.producers.delete(p);
    p.transceiver = null;
    if (!t || this.closed) return;
    t.sender.replaceTrack(null);
    t.direction = 'inactive';
    this._free.add(t);
  }

  /**
   * Offers and publishes the current set of tracks. With iceRestart the
   * offer carries new ICE credentials.
   */
  negotiate({iceRestart = false} = {}) {
    return this._enqueue(async () => {
      const pc = this.pc;
      const offer = await pc.createOffer(iceRestart ? {iceRestart: true} : undefined);
      const mids = midsInOffer(pc, offer.sdp);
      let sdp = offer.sdp;
      const stereoMids = new Map(); // mid → maxaveragebitrate
      for (const p of this.producers) {
        if (p.kind !== 'audio' || !p.opus) continue;
        const mid = mids.get(p.transceiver);
        if (mid === undefined) continue;
        const params = p.opus.stereo ? {...STEREO} : {};
        if (p.opus.maxAverageBitrate) params.maxaveragebitrate = p.opus.maxAverageBitrate;
        stereoMids.set(mid, params);
        sdp = SDP.setOpusParams(sdp, params, [mid]);
      }
      try {
        await pc.setLocalDescription({type: 'offer', sdp});
      } catch (err) {
        console.warn('matinee: browser refused the Opus parameters, sending them unapplied', err);
        await pc.setLocalDescription(offer);
      }
      const tracks = [];
      for (const p of this.producers) {
        if (p.transceiver && p.transceiver.mid !== null) tracks.push({mid: p.transceiver.mid, appData: p.appData});
      }
      this.lastOffer = sdp;
      const res = await this.client.request('publish', {transportId: this.id, sdp, tracks});
      this._flushLocalCandidates();
      let answer = res.sdp;
      // The SFU forwards whatever the browser encodes; telling the encoder
      // that the far end takes stereo at this bitrate is what makes it
      // encode so.
      for (const [mid, params] of stereoMids) answer = SDP.setOpusParams(answer, params, [mid]);
      this.lastAnswer = answer;
      await pc.setRemoteDescription({type: 'answer', sdp: answer});
      await this._flushRemoteCandidates();
      // The answer lists the producers this offer created.
      const byMid = new Map((res.producers || []).map((p) => [String(p.mid), p]));
      const offered = new Set(tracks.map((t) => String(t.mid)));
      for (const p of this.producers) {
        // A producer attached while this offer was in flight is not in it;
        // the next negotiation (already queued) publishes it.
        if (!offered.has(String(p.mid))) continue;
        const info = byMid.get(String(p.mid));
        if (info) {
          p._setId(info.id);
          if (p.paused) this.client.request('pauseProducer', {producerId: info.id}).catch(() => {});
        } else if (!p.id) {
          console.warn('matinee: the SFU made no producer for mid', p.mid);
        }
        await p._applyParameters();
      }
      return res;
    });
  }

  /** Restarts ICE by publishing an offer with new credentials. */
  restartIce() {
    return this.negotiate({iceRestart: true});
  }
}

// Whether the SFU can forward a codec (docs/protocol.md: Opus; H.264
// packetization-mode 1 constrained baseline or main, VP8, VP9 profile 0)
// together with its retransmission codec.
function routable(c) {
  const m = c.mimeType.toLowerCase();
  const fmtp = c.sdpFmtpLine || '';
  switch (m) {
    case 'audio/opus':
    case 'video/vp8':
    case 'video/rtx':
      return true;
    case 'video/vp9':
      return !/profile-id=[^0]/.test(fmtp);
    case 'video/h264':
      return /packetization-mode=1/.test(fmtp) && /profile-level-id=(42e0|4d00)/i.test(fmtp);
  }
  return false;
}

// Offers only what the SFU can forward: smaller SDP, no surprises.
function setCodecs(transceiver, kind) {
  if (!transceiver.setCodecPreferences || typeof RTCRtpReceiver === 'undefined' || !RTCRtpReceiver.getCapabilities) return;
  const codecs = (RTCRtpReceiver.getCapabilities(kind)?.codecs || []).filter(routable);
  if (!codecs.some((c) => c.mimeType.toLowerCase() !== 'video/rtx')) return;
  try {
    transceiver.setCodecPreferences(codecs);
  } catch (err) {
    console.warn('matinee: setCodecPreferences', err);
  }
}

// Maps each transceiver to its mid in a just-created offer, including new
// transceivers whose mid is not assigned until setLocalDescription: in
// order, each takes the first unclaimed section of its kind.
function midsInOffer(pc, sdp) {
  const out = new Map();
  const transceivers = pc.getTransceivers().filter((t) => t.currentDirection !== 'stopped');
  const claimed = new Set(transceivers.filter((t) => t.mid !== null).map((t) => t.mid));
  for (const t of transceivers) if (t.mid !== null) out.set(t, t.mid);
  const free = SDP.parse(sdp).media.filter((m) => m.mid !== null && !claimed.has(m.mid));
  for (const t of transceivers) {
    if (t.mid !== null) continue;
    const i = free.findIndex((m) => m.kind === t.receiver.track.kind);
    if (i < 0) continue;
    out.set(t, free[i].mid);
    free.splice(i, 1);
  }
  return out;
}

/** The receive transport: the SFU offers, this browser answers. */
export class RecvTransport extends Transport {
  constructor(client, id, iceServers) {
    super(client, id, 'recv', iceServers);
    this.lastOffer = null;
    this.lastAnswer = null;
  }

  _onOffer({sdp, consumers}) {
    return this._enqueue(async () => {
      const pc = this.pc;
      this.lastOffer = sdp;
      await pc.setRemoteDescription({type: 'offer', sdp});
      await this._flushRemoteCandidates();
      const answer = await pc.createAnswer();
      // Decode every Opus stream in stereo; a mono stream plays the same.
      let asdp = SDP.setOpusParams(answer.sdp, {stereo: 1});
      try {
        await pc.setLocalDescription({type: 'answer', sdp: asdp});
      } catch (err) {
        console.warn('matinee: browser refused stereo in its answer', err);
        asdp = answer.sdp;
        await pc.setLocalDescription(answer);
      }
      this.lastAnswer = asdp;
      await this.client.request('transportAnswer', {transportId: this.id, sdp: asdp});
      this._flushLocalCandidates();
      this.client._applyConsumers(this, consumers || []);
    });
  }

  /** Asks the SFU for an ICE restart; a transportOffer follows. */
  restartIce() {
    return this.client.request('restartIce', {transportId: this.id});
  }
}

/**
 * Client is one person in one room. Events (CustomEvent, data in detail):
 *   statechange {state, error, retryIn}  new → connecting → joined ⇄ reconnecting; closed | failed
 *   joined {peerId, room, role, rejoined, resumed, result}   result: the whole join result;
 *                                 resumed: the server kept our membership (same peer id and role)
 *   peerjoined {peer}, peerupdated {peer} (peer.away: its connection dropped, it may come back)
 *   peerleft {peer, reason, newHost}   reason "left", "timeout" (did not come back) or "removed";
 *                                 newHost: the peer id that became host in its place
 *   meupdated {me, previousRole}  our own role (or buffering) changed
 *   removed {kind, reason}        kicked, room deleted or replaced: no reconnect (state "failed")
 *   produceradded {producer}, producerclosed {producer},
 *   producerpaused {producer}, producerresumed {producer}   (remote producers, plain objects)
 *   consumer {consumer}           a consumer's track is ready to play
 *   consumerclosed {consumer, reason}   reason "closed" or "reconnect"
 *   layerchange {consumer}        the SFU switched the simulcast layer (consumer.spatialLayer)
 *   transportstate {direction, state}
 *   stage {stage}                 the room's stage changed (client.stage, docs/protocol.md "The stage")
 *   notification {method, params} every server notification the client does not handle itself
 */
export class Client extends EventTarget {
  constructor({room, name, password, token, resume, url = defaultURL(), autoSubscribe = true, reconnect = true, minBackoff = 500, maxBackoff = 10000,
    heartbeatInterval = 1000, heartbeatTimeout = 3000} = {}) {
    super();
    if (!room || (!name && !token)) throw new TypeError('Client: room and a name (or a token) are required');
    this.room = room;
    this.name = name;
    this.password = password;
    this.token = token;
    this.url = url;
    this.autoSubscribe = autoSubscribe;
    this.reconnect = reconnect;
    this.minBackoff = minBackoff;
    this.maxBackoff = maxBackoff;
    // The resume token of our membership: a join that gives it back is
    // the same member (role, name, peer id) while the server's grace
    // period runs (docs/protocol.md, "Reconnecting").
    this.resumeToken = resume || null;
    this.graceMs = 0;
    this.heartbeatInterval = heartbeatInterval;
    this.heartbeatTimeout = heartbeatTimeout;
    this._droppedAt = 0; // when the last joined session was lost
    this._heartbeat = null;

    this.state = 'new';
    this.error = null;
    this.me = null; // {id, name, role}
    this.iceServers = [];
    this.peers = new Map(); // id → Peer (the others)
    this.producers = new Map(); // id → Producer object of the others
    this.consumers = new Map(); // id → Consumer
    // The room's stage as the server announces it: producer ids (null:
    // none), show false when it is only the fallback (the newest camera).
    this.stage = {video: null, audio: null, show: false};
    this.localProducers = new Set(); // Producer (ours), kept across reconnects
    this.sendTransport = null;
    this.recvTransport = null;
    this.signaling = null;
    this.ws = null; // the current WebSocket (test hook: client.ws.close())

    this._session = 0; // increases with every connection attempt
    this._attempt = 0;
    this._openTimedOut = false; // the last attempt to open the socket had no answer
    this._retryTimer = null;
    this._retryResolve = null;
    this._subscribing = new Map(); // producerId → Promise<Consumer>
    this._iceRestarts = {send: 0, recv: 0};
    this._iceTimers = {send: null, recv: null};
    this._sendTransportPromise = null;
    this._removed = null; // RemovedError once the server said we are out for good
  }

  _setState(state, extra = {}) {
    this.state = state;
    if (extra.error !== undefined) this.error = extra.error;
    emit(this, 'statechange', {state, ...extra});
  }

  /**
   * Joins the room. Resolves once joined; rejects on an error that
   * retrying cannot fix (room full 1003, unknown room 1004, forbidden
   * 1005, invalid name or room -32602), or on any error when reconnect is
   * off. While the server cannot be reached it keeps trying with backoff
   * (state "reconnecting").
   */
  join() {
    if (!this._joinPromise) this._joinPromise = this._loop(null);
    return this._joinPromise;
  }

  // Connects until joined, waiting between attempts; used for the first
  // join (err null) and for every reconnect.
  async _loop(err) {
    if (!err) this._setState('connecting');
    for (;;) {
      if (err) await this._backoff(err);
      if (this.state === 'closed') throw new ConnectionError('client closed');
      try {
        await this._connect();
        return this.me;
      } catch (e) {
        if (this.state === 'closed') throw e;
        if ((e instanceof RpcError && FATAL_JOIN_CODES.has(e.code)) || !this.reconnect) {
          this._teardown('closed');
          this._setState('failed', {error: e});
          throw e;
        }
        err = e;
      }
    }
  }

  async _backoff(err) {
    const n = this._attempt++;
    // While the server keeps our membership (its grace period), try often:
    // the sooner we are back, the sooner our share is. Later, back off.
    const keeping = this._droppedAt && Date.now() - this._droppedAt < this.graceMs;
    const cap = keeping ? Math.min(this.maxBackoff, 1000) : this.maxBackoff;
    // An attempt that timed out (no answer at all: the network is gone)
    // took its time already; the next starts at once, so that SYNs go
    // out at most a second apart and a network back is found within
    // about a second (a waiting gap let it go unnoticed for up to 2.75 s,
    // and a picture came back 6.2 s after an outage under load). A
    // refused or failed attempt (a server restarting) backs off.
    // A server that says when to come back (1011: the room's node died
    // and its lease has not run out) is asked again then.
    const after = err instanceof RpcError && err.code === Codes.UNAVAILABLE ? Number(err.data?.retryAfterMs) || 0 : 0;
    const base = after > 0 ? Math.min(after, this.maxBackoff) : keeping && this._openTimedOut ? 250 : Math.min(cap, this.minBackoff * 2 ** n);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this._setState('reconnecting', {error: err, retryIn: delay, attempt: this._attempt});
    await new Promise((resolve) => {
      this._retryResolve = resolve;
      this._retryTimer = setTimeout(resolve, delay);
    });
    this._retryTimer = null;
    this._retryResolve = null;
  }

  /** Skips the current backoff wait and tries to reconnect at once. */
  retryNow() {
    if (this._retryResolve) {
      clearTimeout(this._retryTimer);
      this._retryResolve();
    }
  }

  // One session: open the socket, join, set up transports, subscribe,
  // republish. Throws on any failure, after closing the socket.
  async _connect() {
    this._teardown('reconnect'); // what a failed attempt left behind
    const session = ++this._session;
    const sig = new Signaling(this.url);
    this.signaling = sig;
    sig.addEventListener('notification', (ev) => {
      if (session === this._session) this._onNotification(ev.detail);
    });
    sig.addEventListener('close', (ev) => {
      if (session === this._session) this._onSignalingClosed(ev.detail);
    });
    this._connecting = true;
    try {
      // A socket that cannot open on a lost network waits for SYN
      // retransmissions (1 s, then 3 s, 7 s… after the first SYN); giving
      // up after 1.5 s and trying again finds the network within about a
      // second of its return. Every fourth attempt gives a merely slow link
      // 3.5 s, just past the retransmission at 3 s, so that a network back
      // meanwhile is still found within about two seconds.
      const slowTry = this._attempt % 4 === 3;
      const timeout = this._droppedAt ? (slowTry ? 3500 : 1500) : 8000;
      const openedAt = Date.now();
      this._openTimedOut = false;
      try {
        await sig.open({timeout});
      } catch (e) {
        this._openTimedOut = Date.now() - openedAt >= timeout - 50;
        throw e;
      }
      this.ws = sig.ws;
      const params = {room: this.room};
      if (this.name) params.name = this.name;
      if (this.password) params.password = this.password;
      if (this.token) params.token = this.token;
      if (this.resumeToken) params.resume = this.resumeToken;
      this._removed = null;
      const res = await sig.request('join', params);
      const rejoined = this.me !== null;
      this.lastJoin = res; // the last join result, whole
      if (res.resumeToken) this.resumeToken = res.resumeToken;
      this.graceMs = res.graceMs || 0;
      const self = (res.peers || []).find((p) => p.id === res.peerId);
      this.me = {id: res.peerId, name: self?.name || this.name || '', role: res.role, identity: res.identity || res.peerId};
      this.roomName = res.room || this.room;
      this.iceServers = res.iceServers || [];
      this.nodes = res.nodes || []; // the cluster's other nodes (cluster mode)
      this._reconcile((res.peers || []).filter((p) => p.id !== res.peerId), res.producers || []);
      this._iceRestarts = {send: 0, recv: 0};
      this._setState('joined', {error: null});
      emit(this, 'joined', {peerId: res.peerId, room: this.roomName, role: res.role, rejoined, resumed: !!res.resumed, result: res});
      this._startHeartbeat(sig, session);

      const {transportId} = await sig.request('createTransport', {direction: 'recv'});
      this.recvTransport = this._watch(new RecvTransport(this, transportId, this.iceServers));
      if (this.autoSubscribe) {
        await Promise.all([...this.producers.keys()].map((id) => this.subscribe(id).catch((e) => this._subscribeFailed(id, e))));
      }
      if (this.localProducers.size > 0) {
        const t = await this._ensureSendTransport();
        t._attach([...this.localProducers]);
        await t.negotiate();
      }
      if (!sig.connected) throw new ConnectionError('connection lost while joining');
      this._attempt = 0;
      this._droppedAt = 0;
    } catch (err) {
      if (session === this._session) sig.close(4000, 'join failed');
      throw err;
    } finally {
      this._connecting = false;
    }
  }

  // Replaces what we knew about the room with a join result, emitting the
  // differences (after a reconnect most of it is unchanged).
  _reconcile(peers, producers) {
    const seenPeers = new Set();
    for (const p of peers) {
      seenPeers.add(p.id);
      const old = this.peers.get(p.id);
      this.peers.set(p.id, p);
      emit(this, old ? 'peerupdated' : 'peerjoined', {peer: p});
    }
    for (const [id, p] of this.peers) {
      if (!seenPeers.has(id)) {
        this.peers.delete(id);
        emit(this, 'peerleft', {peer: p});
      }
    }
    const seenProducers = new Set();
    for (const p of producers) {
      if (p.peerId === this.me.id) continue;
      seenProducers.add(p.id);
      const old = this.producers.get(p.id);
      this.producers.set(p.id, p);
      if (!old) emit(this, 'produceradded', {producer: p});
      else if (old.paused !== p.paused) emit(this, p.paused ? 'producerpaused' : 'producerresumed', {producer: p});
    }
    for (const [id, p] of this.producers) {
      if (!seenProducers.has(id)) {
        this.producers.delete(id);
        emit(this, 'producerclosed', {producer: p});
      }
    }
  }

  _watch(transport) {
    const dir = transport.direction;
    transport.addEventListener('connectionstatechange', ({detail: {state}}) => {
      if (transport.closed) return;
      emit(this, 'transportstate', {direction: dir, state, transport});
      clearTimeout(this._iceTimers[dir]);
      if (state === 'connected') {
        this._iceRestarts[dir] = 0;
      } else if (state === 'failed') {
        this._restartIce(transport);
      } else if (state === 'disconnected') {
        // Often recovers alone within a few seconds; restart if not.
        this._iceTimers[dir] = setTimeout(() => {
          if (!transport.closed && transport.state === 'disconnected') this._restartIce(transport);
        }, 4000);
      }
    });
    return transport;
  }

  /**
   * Restarts ICE on one transport ("send" or "recv") now; the client does
   * this by itself when a connection fails.
   */
  restartIce(direction) {
    const t = direction === 'send' ? this.sendTransport : this.recvTransport;
    if (!t) return Promise.reject(new Error(`no ${direction} transport`));
    return t.restartIce();
  }

  async _restartIce(transport) {
    const dir = transport.direction;
    if (this._iceRestarts[dir]++ >= 3) {
      // Three restarts did not help: start the whole session again.
      console.warn('matinee: ICE restarts failed, reconnecting');
      this._dropConnection('ice-failed');
      return;
    }
    emit(this, 'transportstate', {direction: dir, state: 'restarting', transport});
    try {
      await transport.restartIce();
      emit(this, 'transportstate', {direction: dir, state: transport.state, transport});
    } catch (err) {
      console.warn('matinee: ICE restart', err);
      if (!transport.closed) this._dropConnection('ice-restart-failed');
    }
  }

  // A lost network does not close a WebSocket: its TCP connection waits
  // for retransmissions for minutes. Whenever the server has been silent
  // for a heartbeat interval we ask it the time; no answer within the
  // timeout means the connection is gone, and we reconnect.
  _startHeartbeat(sig, session) {
    clearInterval(this._heartbeat);
    let probeAt = 0;
    this._heartbeat = setInterval(() => {
      if (session !== this._session || !sig.connected) {
        clearInterval(this._heartbeat);
        return;
      }
      const now = Date.now();
      if (probeAt && sig.lastMessageAt < probeAt && now - probeAt > this.heartbeatTimeout) {
        clearInterval(this._heartbeat);
        this._dropConnection(`no answer from the server in ${this.heartbeatTimeout} ms`);
        return;
      }
      if (now - sig.lastMessageAt >= this.heartbeatInterval && !(probeAt && sig.lastMessageAt < probeAt)) {
        probeAt = now;
        sig.request('time', {clientTime: now}).catch(() => {});
      }
    }, Math.max(100, this.heartbeatInterval / 2));
  }

  // Closes the socket; its close handler starts the reconnect.
  _dropConnection(reason) {
    console.warn('matinee: reconnecting:', reason);
    if (this.signaling) this.signaling.abandon(reason);
  }

  _onSignalingClosed({code, reason}) {
    this.ws = null;
    // While connecting, the attempt fails and its loop retries.
    if (this._connecting || this.state !== 'joined') return;
    if (this._removed) {
      // Kicked, room deleted, replaced: reconnecting would not help.
      const err = this._removed;
      this._teardown('closed');
      this._setState('failed', {error: err});
      emit(this, 'removed', {kind: err.kind, reason: err.reason, error: err});
      return;
    }
    const err = new ConnectionError(this._disconnectReason || `connection lost (${code}${reason ? ': ' + reason : ''})`);
    console.warn('matinee:', err.message);
    this._disconnectReason = null;
    this._droppedAt = Date.now();
    this._teardown('reconnect');
    if (!this.reconnect) {
      this._setState('failed', {error: err});
      return;
    }
    this._loop(err).catch(() => {});
  }

  // Closes the transports and consumers of the current session. Our
  // producers stay (unpublished) so a reconnect can send them again.
  _teardown(reason) {
    clearInterval(this._heartbeat);
    for (const dir of ['send', 'recv']) clearTimeout(this._iceTimers[dir]);
    for (const c of [...this.consumers.values()]) this._consumerGone(c, reason);
    this._subscribing.clear();
    if (this.recvTransport) this.recvTransport.close();
    this.recvTransport = null;
    if (this.sendTransport) {
      this.sendTransport.close();
      for (const p of this.localProducers) {
        p.transceiver = null;
        p._needed.clear();
        p._setId(null);
      }
    }
    this.sendTransport = null;
    this._sendTransportPromise = null;
  }

  /** Sends a request on the current connection. */
  request(method, params) {
    if (!this.signaling) return Promise.reject(new ConnectionError(`${method}: not connected`));
    return this.signaling.request(method, params);
  }

  _notify(method, params) {
    if (this.signaling) this.signaling.notify(method, params);
  }

  /** Sends a notification (no answer) on the current connection; false when not connected. */
  notify(method, params) {
    return this.signaling ? this.signaling.notify(method, params) : false;
  }

  _onNotification({method, params}) {
    switch (method) {
      case 'peerJoined': {
        const peer = params.peer;
        const old = this.peers.get(peer.id);
        this.peers.set(peer.id, peer);
        emit(this, old ? 'peerupdated' : 'peerjoined', {peer});
        break;
      }
      case 'peerUpdated': {
        const peer = params.peer;
        if (!peer) break;
        if (this.me && peer.id === this.me.id) {
          const was = this.me.role;
          Object.assign(this.me, {name: peer.name || this.me.name, role: peer.role, buffering: !!peer.buffering});
          emit(this, 'meupdated', {me: this.me, previousRole: was});
          break;
        }
        if (!this.peers.has(peer.id)) break; // left meanwhile
        this.peers.set(peer.id, peer);
        emit(this, 'peerupdated', {peer});
        break;
      }
      case 'peerLeft': {
        const peer = this.peers.get(params.peerId);
        if (!peer) break;
        this.peers.delete(params.peerId);
        emit(this, 'peerleft', {peer, reason: params.reason || 'left', newHost: params.newHost || null});
        break;
      }
      case 'producerAdded': {
        const p = params.producer;
        if (!p || (this.me && p.peerId === this.me.id)) break;
        this.producers.set(p.id, p);
        emit(this, 'produceradded', {producer: p});
        if (this.autoSubscribe && this.recvTransport) {
          this.subscribe(p.id).catch((err) => this._subscribeFailed(p.id, err));
        }
        break;
      }
      case 'producerClosed': {
        const p = this.producers.get(params.producerId);
        for (const c of [...this.consumers.values()]) {
          if (c.producerId === params.producerId) this._consumerGone(c, 'closed');
        }
        if (p) {
          this.producers.delete(p.id);
          emit(this, 'producerclosed', {producer: p});
        }
        break;
      }
      case 'producerPaused':
      case 'producerResumed': {
        const p = this.producers.get(params.producerId);
        if (!p) break;
        p.paused = method === 'producerPaused';
        emit(this, p.paused ? 'producerpaused' : 'producerresumed', {producer: p});
        break;
      }
      case 'consumerClosed': {
        const c = this.consumers.get(params.consumerId);
        if (c) this._consumerGone(c, 'closed');
        break;
      }
      case 'transportOffer': {
        const t = this.recvTransport;
        if (!t || t.id !== params.transportId) {
          console.warn('matinee: offer for unknown transport', params.transportId);
          break;
        }
        t._onOffer(params).catch((err) => {
          console.error('matinee: answering the receive transport failed', err);
          if (!t.closed) this._dropConnection('answer-failed');
        });
        break;
      }
      case 'iceCandidate': {
        const t = [this.sendTransport, this.recvTransport].find((x) => x && x.id === params.transportId);
        if (t) t._addRemoteCandidate(params.candidate);
        break;
      }
      case 'transportClosed': {
        const t = [this.sendTransport, this.recvTransport].find((x) => x && x.id === params.transportId);
        if (t) {
          console.warn('matinee: transport closed by the server', params.reason);
          this._dropConnection('transport-closed');
        }
        break;
      }
      case 'layerChanged': {
        const c = this.consumers.get(params.consumerId);
        if (!c) break;
        console.debug('matinee: layer', c.kind, c.id, '→', params.spatialLayer, params.temporalLayer);
        c.spatialLayer = params.spatialLayer;
        c.temporalLayer = params.temporalLayer ?? null;
        emit(this, 'layerchange', {consumer: c});
        break;
      }
      case 'producerLayers': {
        // Dynacast: the SFU says which simulcast layers anyone needs.
        const p = [...this.localProducers].find((x) => x.id === params.producerId);
        console.debug('matinee: layers needed', params.producerId, JSON.stringify(params.layers));
        if (p) p._setNeededLayers(params.layers || []);
        break;
      }
      case 'stage':
        this.stage = {video: params.video ?? null, audio: params.audio ?? null, show: !!params.show};
        emit(this, 'stage', {stage: this.stage});
        break;
      case 'disconnected': {
        this._disconnectReason = params.reason ? `removed by the server: ${params.reason}` : 'removed by the server';
        const kind = removalKind(params.reason);
        if (kind) this._removed = new RemovedError(kind, params.reason);
        break;
      }
      default:
        emit(this, 'notification', {method, params});
    }
  }

  /** Subscribes to a producer of another peer; resolves with its Consumer. */
  subscribe(producerId) {
    const existing = this._subscribing.get(producerId);
    if (existing) return existing;
    const p = (async () => {
      const info = await this.request('subscribe', {producerId});
      let c = this.consumers.get(info.id);
      if (!c) {
        c = new Consumer(this, info);
        this.consumers.set(c.id, c);
      }
      return c;
    })();
    this._subscribing.set(producerId, p);
    p.catch(() => {
      if (this._subscribing.get(producerId) === p) this._subscribing.delete(producerId);
    });
    return p;
  }

  _subscribeFailed(producerId, err) {
    if (err instanceof ConnectionError) return; // the reconnect resubscribes
    if (err instanceof RpcError && err.code === Codes.NOT_FOUND) return; // closed meanwhile
    console.warn('matinee: subscribe', producerId, err);
  }

  // Applies a transportOffer's consumer list: new ones get their track,
  // missing ones are gone.
  _applyConsumers(transport, list) {
    const listed = new Set();
    for (const info of list) {
      listed.add(info.id);
      let c = this.consumers.get(info.id);
      if (!c) {
        c = new Consumer(this, info);
        this.consumers.set(c.id, c);
      }
      c.mid = String(info.mid);
      if (info.paused !== undefined) c.paused = !!info.paused;
      if (c.track) continue;
      const tr = transport.pc.getTransceivers().find((t) => t.mid === c.mid);
      if (!tr) {
        console.warn('matinee: no transceiver for consumer', c.id, 'mid', c.mid);
        continue;
      }
      c.receiver = tr.receiver;
      c.track = tr.receiver.track;
      emit(this, 'consumer', {consumer: c});
    }
    for (const c of [...this.consumers.values()]) {
      if (c.track && !listed.has(c.id)) this._consumerGone(c, 'closed');
    }
  }

  _consumerGone(c, reason) {
    if (!this.consumers.has(c.id)) return;
    this.consumers.delete(c.id);
    if (this._subscribing.has(c.producerId)) this._subscribing.delete(c.producerId);
    c.closed = true;
    emit(c, 'close', {reason});
    if (c.track) emit(this, 'consumerclosed', {consumer: c, reason});
  }

  _ensureSendTransport() {
    if (!this._sendTransportPromise) {
      this._sendTransportPromise = (async () => {
        const {transportId} = await this.request('createTransport', {direction: 'send'});
        this.sendTransport = this._watch(new SendTransport(this, transportId, this.iceServers));
        return this.sendTransport;
      })();
      this._sendTransportPromise.catch(() => {
        this._sendTransportPromise = null;
      });
    }
    return this._sendTransportPromise;
  }

  /**
   * Sends tracks, negotiated together. Each spec is
   *   {track, appData, streams, encodings, degradationPreference, opus: {stereo, maxAverageBitrate}}.
   * Resolves with one Producer per spec once the SFU has answered.
   */
  async produce(specs) {
    if (this.state !== 'joined') throw new ConnectionError('produce: not joined');
    const list = Array.isArray(specs) ? specs : [specs];
    const producers = list.map((s) => new Producer(this, s));
    for (const p of producers) this.localProducers.add(p);
    try {
      const t = await this._ensureSendTransport();
      t._attach(producers);
      await t.negotiate();
    } catch (err) {
      for (const p of producers) {
        this.localProducers.delete(p);
        if (this.sendTransport && p.transceiver) this.sendTransport._detach(p);
      }
      throw err;
    }
    return Array.isArray(specs) ? producers : producers[0];
  }

  async _closeProducer(p) {
    this.localProducers.delete(p);
    const t = this.sendTransport;
    const id = p.id;
    if (t && p.transceiver) t._detach(p);
    if (id && this.state === 'joined') {
      try {
        await this.request('closeProducer', {producerId: id});
      } catch (err) {
        if (!(err instanceof RpcError && err.code === Codes.NOT_FOUND)) console.warn('matinee: closeProducer', err);
      }
    }
    if (t && !t.closed && this.state === 'joined') {
      try {
        await t.negotiate();
      } catch (err) {
        console.warn('matinee: renegotiate after close', err);
      }
    }
  }

  /**
   * Leaves the room and closes the connection; the Client is done. With
   * leave false the server is not told: it keeps the membership for its
   * grace period, for a reload of the page to resume.
   */
  async close({leave = true} = {}) {
    if (this.state === 'closed') return;
    const wasJoined = this.state === 'joined';
    this._setState('closed');
    this.retryNow();
    for (const p of this.localProducers) p.closed = true;
    this.localProducers.clear();
    this._teardown('closed');
    if (this.signaling) {
      if (wasJoined && leave) {
        try {
          await Promise.race([this.signaling.request('leave'), new Promise((r) => setTimeout(r, 500))]);
        } catch {
          // leaving anyway
        }
      }
      this.signaling.close(1000, 'leave');
    }
  }
}
