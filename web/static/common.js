// Small helpers shared by the lobby and the room page.

const NAME_KEY = 'matinee.name';
const RECENT_KEY = 'matinee.recent';
const MAX_RECENT = 8;

export const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // disabled storage (some private modes)
  }
}

export function loadName() {
  return (storage()?.getItem(NAME_KEY) || '').trim();
}

export function saveName(name) {
  storage()?.setItem(NAME_KEY, name.trim());
}

/** Recent rooms, newest first: [{room, ts}]. */
export function loadRecent() {
  try {
    const list = JSON.parse(storage()?.getItem(RECENT_KEY) || '[]');
    return Array.isArray(list) ? list.filter((r) => r && ROOM_RE.test(r.room)) : [];
  } catch {
    return [];
  }
}

export function rememberRoom(room) {
  const list = loadRecent().filter((r) => r.room !== room);
  list.unshift({room, ts: Date.now()});
  storage()?.setItem(RECENT_KEY, JSON.stringify(list.slice(0, MAX_RECENT)));
}

export function forgetRoom(room) {
  storage()?.setItem(RECENT_KEY, JSON.stringify(loadRecent().filter((r) => r.room !== room)));
}

/** Turns "movie-night", "/r/movie-night" or a full invite link into a room id, or "". */
export function roomFromInput(text) {
  let s = text.trim();
  if (!s) return '';
  const m = /\/r\/([^/?#]+)/.exec(s);
  if (m) s = decodeURIComponent(m[1]);
  return ROOM_RE.test(s) ? s : '';
}

export function roomURL(room) {
  return `/r/${encodeURIComponent(room)}`;
}

const ADJECTIVES = ['cosy', 'quiet', 'velvet', 'golden', 'midnight', 'silver', 'sunny', 'amber', 'crimson', 'misty', 'lucky', 'brave', 'gentle', 'hidden', 'rapid', 'starry'];
const NOUNS = ['otter', 'lantern', 'popcorn', 'balcony', 'matinee', 'reel', 'comet', 'harbour', 'falcon', 'meadow', 'cinema', 'fox', 'orchard', 'piano', 'marble', 'tiger'];

/** A readable random room id such as "velvet-otter-482". */
export function randomRoom() {
  const r = new Uint32Array(3);
  crypto.getRandomValues(r);
  return `${ADJECTIVES[r[0] % ADJECTIVES.length]}-${NOUNS[r[1] % NOUNS.length]}-${100 + (r[2] % 900)}`;
}

/** "3 min ago"-style relative time. */
export function ago(ts, now = Date.now()) {
  const s = Math.max(0, Math.round((now - ts) / 1000));
  if (s < 60) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.round(h / 24);
  return d === 1 ? 'yesterday' : `${d} days ago`;
}

/** What is missing for watching at all; "" when nothing is. */
export function missingBasics() {
  if (typeof RTCPeerConnection !== 'function') return 'WebRTC';
  if (typeof WebSocket !== 'function') return 'WebSockets';
  return '';
}

/** Creates an element: h('div', {class: 'x', onclick: f}, child, "text"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/**
 * Makes a <dialog> a modal the keyboard can use: opened with showModal,
 * the browser moves focus into it, keeps Tab inside it and closes it on
 * Escape; on close, focus goes back to the control that opened it (which
 * the browser does not do everywhere). Tab wraps round inside it. A click
 * on the backdrop closes it.
 */
export function modal(dlg) {
  let opener = null;
  dlg.addEventListener('close', () => {
    const o = opener;
    opener = null;
    // The event comes a task after the close; by then the browser may
    // have put focus back itself, or the person moved it on: leave it.
    const at = document.activeElement;
    if (at && at !== document.body && !dlg.contains(at)) return;
    if (o?.isConnected && !o.hidden && !o.disabled) o.focus({preventScroll: true});
  });
  // showModal keeps focus out of the page, but Tab past the last control
  // leaves for the browser's own toolbar; wrap it round instead.
  dlg.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Tab' || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const all = [...dlg.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
      .filter((e) => !e.disabled && e.tabIndex >= 0 && e.getClientRects().length > 0);
    if (!all.length) return;
    const first = all[0];
    const last = all[all.length - 1];
    const at = document.activeElement;
    if (ev.shiftKey ? at === first || at === dlg : at === last) {
      ev.preventDefault();
      (ev.shiftKey ? last : first).focus();
    }
  });
  dlg.addEventListener('click', (ev) => {
    if (ev.target !== dlg) return;
    const r = dlg.getBoundingClientRect();
    const inside = ev.clientX >= r.left && ev.clientX <= r.right && ev.clientY >= r.top && ev.clientY <= r.bottom;
    if (!inside) dlg.close();
  });
  return {
    open(from = document.activeElement) {
      if (dlg.open) return;
      opener = from instanceof HTMLElement && from !== document.body ? from : null;
      dlg.showModal();
    },
    close() {
      if (dlg.open) dlg.close();
    },
    get isOpen() {
      return dlg.open;
    },
  };
}

/**
 * Shows one of two buttons that take each other's place (Play/Pause,
 * Share/Stop). When the one going away had focus, focus moves to the one
 * coming, so a keyboard user stays on the control instead of falling back
 * to the page.
 */
export function swapButtons(show, hide) {
  const had = document.activeElement === hide;
  hide.hidden = true;
  show.hidden = false;
  if (had) show.focus({preventScroll: true});
}
