// Small, line-based SDP helpers. Only what the client needs: reading the
// media sections and setting Opus fmtp parameters, which is how browsers
// are told to send and decode stereo at a high bitrate.

/** Splits an SDP into its session lines and its media sections. */
export function parse(sdp) {
  const lines = sdp.split(/\r?\n/).filter((l) => l !== '');
  const session = [];
  const media = [];
  let cur = null;
  for (const line of lines) {
    if (line.startsWith('m=')) {
      cur = {kind: line.slice(2).split(' ')[0], mid: null, lines: [line]};
      media.push(cur);
    } else if (cur) {
      if (line.startsWith('a=mid:')) cur.mid = line.slice(6).trim();
      cur.lines.push(line);
    } else {
      session.push(line);
    }
  }
  return {session, media};
}

/** The inverse of parse. */
export function write({session, media}) {
  const out = [...session];
  for (const m of media) out.push(...m.lines);
  return out.join('\r\n') + '\r\n';
}

/** The payload types of codec `name` (case-insensitive) in one media section. */
export function payloadTypes(section, name) {
  const re = new RegExp(`^a=rtpmap:(\\d+) ${name}/`, 'i');
  const pts = [];
  for (const l of section.lines) {
    const m = re.exec(l);
    if (m) pts.push(m[1]);
  }
  return pts;
}

/** Parses "a=b;c=d" into a Map, keeping order. */
export function parseFmtp(s) {
  const params = new Map();
  for (const kv of s.split(';')) {
    const t = kv.trim();
    if (!t) continue;
    const i = t.indexOf('=');
    if (i < 0) params.set(t, '');
    else params.set(t.slice(0, i).trim(), t.slice(i + 1).trim());
  }
  return params;
}

function formatFmtp(params) {
  return [...params].map(([k, v]) => (v === '' ? k : `${k}=${v}`)).join(';');
}

/**
 * Sets Opus fmtp parameters in the audio sections chosen by `mids` (an
 * iterable of mids; null means every audio section). `params` maps names
 * to values, e.g. {stereo: 1, 'sprop-stereo': 1, maxaveragebitrate: 160000}.
 * Returns the new SDP.
 */
export function setOpusParams(sdp, params, mids = null) {
  const want = mids === null ? null : new Set([...mids].map(String));
  const parsed = parse(sdp);
  for (const m of parsed.media) {
    if (m.kind !== 'audio') continue;
    if (want !== null && !want.has(m.mid)) continue;
    for (const pt of payloadTypes(m, 'opus')) {
      const prefix = `a=fmtp:${pt} `;
      const i = m.lines.findIndex((l) => l.startsWith(prefix));
      const cur = i >= 0 ? parseFmtp(m.lines[i].slice(prefix.length)) : new Map();
      for (const [k, v] of Object.entries(params)) cur.set(k, String(v));
      const line = prefix + formatFmtp(cur);
      if (i >= 0) {
        m.lines[i] = line;
      } else {
        const r = m.lines.findIndex((l) => l.startsWith(`a=rtpmap:${pt} `));
        m.lines.splice(r + 1, 0, line);
      }
    }
  }
  return write(parsed);
}

/** The Opus fmtp parameters of the audio section `mid` (a Map; empty if none). */
export function opusParams(sdp, mid) {
  const m = parse(sdp).media.find((s) => s.kind === 'audio' && s.mid === String(mid));
  if (!m) return new Map();
  const pt = payloadTypes(m, 'opus')[0];
  if (pt === undefined) return new Map();
  const prefix = `a=fmtp:${pt} `;
  const line = m.lines.find((l) => l.startsWith(prefix));
  return line ? parseFmtp(line.slice(prefix.length)) : new Map();
}
