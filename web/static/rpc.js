// JSON-RPC 2.0 over one WebSocket: the signalling channel of docs/protocol.md.
// One Signaling object is one socket; reconnecting is the Client's job.

/** An error answered by the server, with its JSON-RPC code. */
export class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
    this.data = data;
  }
}

/** The socket closed (or never opened) while a request was waiting. */
export class ConnectionError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConnectionError';
  }
}

// Error codes of docs/protocol.md.
export const Codes = Object.freeze({
  PARSE: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  NOT_JOINED: 1001,
  ALREADY_JOINED: 1002,
  ROOM_FULL: 1003,
  NOT_FOUND: 1004,
  FORBIDDEN: 1005,
  BAD_SDP: 1006,
  INVALID_STATE: 1007,
  // Cluster mode: the room is on another node (data.url), or cannot be
  // placed right now (data.retryAfterMs).
  MOVED: 1010,
  UNAVAILABLE: 1011,
});

/** The signalling URL for this page: ws(s)://same-host/ws. */
export function defaultURL(loc = window.location) {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

/**
 * Signaling is one JSON-RPC connection. Events:
 *  - "notification": detail {method, params} for every server notification;
 *  - "close": detail {code, reason, wasClean} once the socket is gone.
 */
export class Signaling extends EventTarget {
  constructor(url = defaultURL(), {requestTimeout = 15000} = {}) {
    super();
    this.url = url;
    this.requestTimeout = requestTimeout;
    this.ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id → {resolve, reject, timer, method}
    this._closed = false;
    this.lastMessageAt = 0; // Date.now() of the last message received
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Opens the socket; resolves once it is open, rejects if it cannot open. */
  open({timeout = 8000} = {}) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (err) {
        reject(new ConnectionError(`cannot open ${this.url}: ${err.message}`));
        return;
      }
      this.ws = ws;
      let opened = false;
      const timer = setTimeout(() => {
        if (!opened) ws.close();
      }, timeout);
      ws.onopen = () => {
        opened = true;
        this.lastMessageAt = Date.now();
        clearTimeout(timer);
        resolve();
      };
      ws.onmessage = (ev) => this._onMessage(ev.data);
      ws.onclose = (ev) => {
        clearTimeout(timer);
        this._failPending(new ConnectionError(`signalling closed (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`));
        if (!opened) {
          reject(new ConnectionError(`cannot reach ${this.url}`));
        }
        if (this.ws === ws) this.ws = null;
        this.dispatchEvent(new CustomEvent('close', {detail: {code: ev.code, reason: ev.reason, wasClean: ev.wasClean, opened}}));
      };
      // onerror is always followed by onclose, which does the work.
      ws.onerror = () => {};
    });
  }

  /** Sends a request; resolves with its result or rejects with RpcError/ConnectionError. */
  request(method, params) {
    if (!this.connected) {
      return Promise.reject(new ConnectionError(`${method}: not connected`));
    }
    const id = this._nextId++;
    const msg = {jsonrpc: '2.0', id, method};
    if (params !== undefined) msg.params = params;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ConnectionError(`${method}: no answer in ${this.requestTimeout} ms`));
      }, this.requestTimeout);
      this._pending.set(id, {resolve, reject, timer, method});
      this.ws.send(JSON.stringify(msg));
    });
  }

  /** Sends a notification (no answer); dropped when not connected. */
  notify(method, params) {
    if (!this.connected) return false;
    const msg = {jsonrpc: '2.0', method};
    if (params !== undefined) msg.params = params;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  close(code = 1000, reason = 'bye') {
    this._closed = true;
    if (this.ws) {
      try {
        this.ws.close(code, reason);
      } catch {
        this.ws.close();
      }
    }
  }

  /**
   * Gives the socket up now: pending requests fail and "close" is
   * dispatched at once. A socket on a lost network would otherwise wait
   * for its closing handshake.
   */
  abandon(reason = 'abandoned') {
    const ws = this.ws;
    this._closed = true;
    if (!ws) return;
    this.ws = null;
    ws.onmessage = null;
    ws.onclose = null;
    try {
      ws.close(4002, reason.slice(0, 100));
    } catch {
      ws.close();
    }
    this._failPending(new ConnectionError(`signalling given up (${reason})`));
    this.dispatchEvent(new CustomEvent('close', {detail: {code: 4002, reason, wasClean: false, opened: true}}));
  }

  _onMessage(data) {
    this.lastMessageAt = Date.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('matinee: unparsable signalling message', data);
      return;
    }
    if (msg.id !== undefined && msg.id !== null && typeof msg.method !== 'string') {
      const p = this._pending.get(msg.id);
      if (!p) return;
      this._pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) {
        p.reject(new RpcError(msg.error.code, `${p.method}: ${msg.error.message}`, msg.error.data));
      } else {
        p.resolve(msg.result);
      }
      return;
    }
    if (typeof msg.method === 'string') {
      this.dispatchEvent(new CustomEvent('notification', {detail: {method: msg.method, params: msg.params || {}}}));
    }
  }

  _failPending(err) {
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(err);
      this._pending.delete(id);
    }
  }
}
