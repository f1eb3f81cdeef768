// Reads what a person (or a test) wants to know from getStats reports:
// resolution, frame rate, bitrate, round-trip time, loss, simulcast layer.

/** Kbit/s between two byte counters taken at two timestamps (ms). */
function kbps(bytes, prevBytes, ts, prevTs) {
  if (prevBytes === undefined || ts <= prevTs) return null;
  return ((bytes - prevBytes) * 8) / (ts - prevTs);
}

function selectedPair(report) {
  let pair = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || pair;
  });
  if (!pair) {
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) pair = s;
    });
  }
  return pair;
}

/**
 * Summarises a receiver's report. `prev` is the previous summary (or
 * null), from which rates are computed. Returns null when there is no
 * inbound-rtp yet.
 */
export function inboundSummary(report, prev) {
  let rtp = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp') rtp = s;
  });
  if (!rtp) return null;
  const codec = rtp.codecId ? report.get(rtp.codecId) : null;
  const pair = selectedPair(report);
  const lost = Math.max(0, rtp.packetsLost || 0);
  const received = rtp.packetsReceived || 0;
  const out = {
    kind: rtp.kind,
    ts: rtp.timestamp,
    bytes: rtp.bytesReceived || 0,
    packetsReceived: received,
    packetsLost: lost,
    frames: rtp.framesDecoded,
    width: rtp.frameWidth,
    height: rtp.frameHeight,
    fps: rtp.framesPerSecond,
    freezes: rtp.freezeCount,
    audioLevel: rtp.audioLevel,
    jitterMs: rtp.jitter !== undefined ? rtp.jitter * 1000 : null,
    rttMs: pair && pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : null,
    codec: codec ? codec.mimeType.replace(/^(audio|video)\//, '') : null,
    channels: codec ? codec.channels : undefined,
    kbps: null,
    lossPct: null,
    decodedPerSec: null,
  };
  if (prev) {
    out.kbps = kbps(out.bytes, prev.bytes, out.ts, prev.ts);
    const dr = received - prev.packetsReceived;
    const dl = lost - prev.packetsLost;
    out.lossPct = dr + dl > 0 ? (100 * Math.max(0, dl)) / (dr + dl) : 0;
    if (out.frames !== undefined && prev.frames !== undefined && out.ts > prev.ts) {
      out.decodedPerSec = ((out.frames - prev.frames) * 1000) / (out.ts - prev.ts);
    }
  } else {
    out.lossPct = received + lost > 0 ? (100 * lost) / (received + lost) : 0;
  }
  return out;
}

/** Summarises a sender's report: one entry per simulcast layer. */
export function outboundSummary(report, prev) {
  const layers = [];
  const pair = selectedPair(report);
  let remote = null;
  report.forEach((s) => {
    if (s.type === 'remote-inbound-rtp') remote = s;
  });
  report.forEach((s) => {
    if (s.type !== 'outbound-rtp') return;
    const p = prev?.layers.find((l) => l.rid === (s.rid || ''));
    const codec = s.codecId ? report.get(s.codecId) : null;
    layers.push({
      rid: s.rid || '',
      kind: s.kind,
      ts: s.timestamp,
      bytes: s.bytesSent || 0,
      width: s.frameWidth,
      height: s.frameHeight,
      fps: s.framesPerSecond,
      active: s.active !== false,
      limitation: s.qualityLimitationReason,
      codec: codec ? codec.mimeType.replace(/^(audio|video)\//, '') : null,
      kbps: p ? kbps(s.bytesSent || 0, p.bytes, s.timestamp, p.ts) : null,
    });
  });
  layers.sort((a, b) => (b.height || 0) - (a.height || 0));
  return {
    layers,
    rttMs: pair && pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : remote?.roundTripTime !== undefined ? remote.roundTripTime * 1000 : null,
    lossPct: remote && remote.fractionLost !== undefined ? remote.fractionLost * 100 : null,
  };
}

/**
 * "good", "fair" or "poor" from loss, round-trip time and stalls. The
 * frame rate is no measure: a captured screen sends frames only when it
 * changes.
 */
export function quality({lossPct, rttMs, stalled}) {
  if (stalled) return 'poor';
  let q = 'good';
  const worse = (to) => {
    if (to === 'poor' || (to === 'fair' && q === 'good')) q = to;
  };
  if (lossPct !== null && lossPct !== undefined) {
    if (lossPct > 8) worse('poor');
    else if (lossPct > 2) worse('fair');
  }
  if (rttMs !== null && rttMs !== undefined) {
    if (rttMs > 600) worse('poor');
    else if (rttMs > 250) worse('fair');
  }
  return q;
}

const fmt = (v, digits = 0, unit = '') => (v === null || v === undefined || Number.isNaN(v) ? '–' : `${v.toFixed(digits)}${unit}`);

function rate(k) {
  if (k === null || k === undefined) return '–';
  return k >= 1000 ? `${(k / 1000).toFixed(2)} Mb/s` : `${k.toFixed(0)} kb/s`;
}

/** Lines of text for a tile's stats overlay. */
export function describeInbound(v, a, layer) {
  const lines = [];
  if (v) {
    lines.push(`video  ${v.width && v.height ? `${v.width}×${v.height}` : '–'}  ${fmt(v.fps, 0, ' fps')}  ${rate(v.kbps)}  ${v.codec || ''}`);
    lines.push(`       loss ${fmt(v.lossPct, 1, '%')}  jitter ${fmt(v.jitterMs, 0, ' ms')}  freezes ${v.freezes ?? '–'}`);
    if (layer) lines.push(`       layer ${layer}`);
  }
  if (a) {
    lines.push(`audio  ${a.codec || ''}${a.channels ? `/${a.channels}ch` : ''}  ${rate(a.kbps)}  loss ${fmt(a.lossPct, 1, '%')}  level ${fmt(a.audioLevel, 2)}`);
  }
  const rtt = v?.rttMs ?? a?.rttMs;
  lines.push(`rtt    ${fmt(rtt, 0, ' ms')}`);
  return lines;
}

export function describeOutbound(v, a) {
  const lines = [];
  for (const l of v?.layers || []) {
    lines.push(`send ${l.rid ? `[${l.rid}] ` : ''}${l.width && l.height ? `${l.width}×${l.height}` : '–'}  ${fmt(l.fps, 0, ' fps')}  ${rate(l.kbps)}  ${l.codec || ''}${l.limitation && l.limitation !== 'none' ? `  limited by ${l.limitation}` : ''}${l.active ? '' : '  (off)'}`);
  }
  for (const l of a?.layers || []) lines.push(`send audio  ${l.codec || ''}  ${rate(l.kbps)}`);
  const rtt = v?.rttMs ?? a?.rttMs;
  lines.push(`rtt  ${fmt(rtt, 0, ' ms')}  loss ${fmt(v?.lossPct ?? a?.lossPct, 1, '%')}`);
  return lines;
}
