// Emoji reactions, drawn as inline SVG: many systems (and headless
// browsers) have no colour emoji font, and a reaction that shows up as a
// box helps nobody. The protocol still carries the emoji character, so
// other clients can draw it their own way; an emoji we have no drawing for
// is shown as text.

const FACE = '<circle cx="18" cy="18" r="16" fill="#FFCC4D"/>';
const INK = '#664500';

// The set offered in the reaction bar, in order: emoji → {label, svg}.
export const REACTIONS = new Map([
  ['👍', {label: 'Thumbs up', svg:
    '<rect x="4" y="16" width="7" height="15" rx="1.5" fill="#5DADEC"/>' +
    '<path d="M11 17.5 16.5 6.5c1-2 4.2-1.6 4.2 1.2V14h7.3a3 3 0 0 1 2.9 3.6l-2.2 10.2A3 3 0 0 1 25.8 30H11z" fill="#FFCC4D" stroke="#C1694F" stroke-width="1.3" stroke-linejoin="round"/>' +
    '<path d="M21 19h7M21 23.5h6M21 27.5h5" stroke="#C1694F" stroke-width="1.3" stroke-linecap="round"/>'}],
  ['❤️', {label: 'Love', svg:
    '<path d="M18 31.5C7.5 23.8 3.5 17.6 4.6 12.1 5.8 6.3 13.3 4.8 18 10.6c4.7-5.8 12.2-4.3 13.4 1.5 1.1 5.5-2.9 11.7-13.4 19.4z" fill="#E0245E"/>' +
    '<path d="M9 12.5c.5-2.3 2.3-3.4 4.2-3.2" stroke="#F7A4BD" stroke-width="1.8" stroke-linecap="round" fill="none"/>'}],
  ['😂', {label: 'Laughing', svg: FACE +
    `<path d="M8.5 14.5q3.2-3.6 6.4 0M21.1 14.5q3.2-3.6 6.4 0" stroke="${INK}" stroke-width="2.2" fill="none" stroke-linecap="round"/>` +
    `<path d="M8.5 19.5h19a9.5 9.5 0 0 1-19 0z" fill="${INK}"/>` +
    '<path d="M12.5 25.8a8 8 0 0 0 11 0 5.6 3.2 0 0 0-11 0z" fill="#E8596E"/>' +
    '<path d="M4.2 16.5c-2.3 3.2-2.6 6.2-.6 7.3 2 1 3.7-1.4 3.1-5.2zM31.8 16.5c2.3 3.2 2.6 6.2.6 7.3-2 1-3.7-1.4-3.1-5.2z" fill="#5DADEC"/>'}],
  ['😮', {label: 'Wow', svg: FACE +
    `<ellipse cx="12.5" cy="14" rx="2.2" ry="3.1" fill="${INK}"/><ellipse cx="23.5" cy="14" rx="2.2" ry="3.1" fill="${INK}"/>` +
    `<ellipse cx="18" cy="25.5" rx="4.2" ry="5" fill="${INK}"/>`}],
  ['😢', {label: 'Sad', svg: FACE +
    `<ellipse cx="12.5" cy="15" rx="2" ry="2.8" fill="${INK}"/><ellipse cx="23.5" cy="15" rx="2" ry="2.8" fill="${INK}"/>` +
    `<path d="M12 27.5q6-5.5 12 0" stroke="${INK}" stroke-width="2.2" fill="none" stroke-linecap="round"/>` +
    '<path d="M10.3 19.5c-1.6 2.4-1.8 4.5-.4 5.2 1.4.6 2.5-1 2.1-3.5z" fill="#5DADEC"/>'}],
  ['🔥', {label: 'Fire', svg:
    '<path d="M18 2.5c2.2 7 10 10.6 10 19.6a10 10 0 0 1-20 0c0-5.8 3.3-8.9 4.6-12.8 1.9 3.5 2 5.6 3.6 6.8 1.1-4.1 2.5-8.1 1.8-13.6z" fill="#F4900C"/>' +
    '<path d="M18 16c1.2 4 5.5 5.6 5.5 10.3a5.5 5.5 0 0 1-11 0c0-3 1.8-4.6 2.6-6.6 1 1.7 1.2 2.8 2 3.4.6-2.2 1.2-4.3.9-7.1z" fill="#FFCC4D"/>'}],
  ['🎉', {label: 'Party', svg:
    '<path d="M3.5 33 11 10.5 25.5 25z" fill="#DD2E44"/>' +
    '<path d="M7.4 21.2 14.8 28.6M5.5 27 9 30.5" stroke="#FFCC4D" stroke-width="2"/>' +
    '<path d="M17 12c1.5-3.5 5-4 4-8M22 17c3-2.2 6.4-1 8.5-4.6M24 9.5c1.4-1.2 2.6-.8 3.6-2" stroke="#5DADEC" stroke-width="1.8" fill="none" stroke-linecap="round"/>' +
    '<circle cx="29" cy="4.5" r="1.7" fill="#FFCC4D"/><circle cx="32" cy="20" r="1.6" fill="#E0245E"/><circle cx="15" cy="4" r="1.5" fill="#77B255"/>' +
    '<rect x="26" y="26" width="3" height="3" rx=".6" fill="#AA8DD8" transform="rotate(25 27.5 27.5)"/>'}],
  ['🍿', {label: 'Popcorn', svg:
    '<circle cx="11" cy="13" r="4.2" fill="#FFF3D6"/><circle cx="17.5" cy="10.5" r="4.6" fill="#FFF7E2"/><circle cx="24.5" cy="12.5" r="4.3" fill="#FFF3D6"/>' +
    '<circle cx="14" cy="7.5" r="3.4" fill="#FFEFC7"/><circle cx="21.5" cy="7" r="3.2" fill="#FFEFC7"/>' +
    '<path d="M7.5 15h21l-3 18h-15z" fill="#F5F5F5"/>' +
    '<path d="M11.4 15h3.4l.9 18h-2.5zM21.2 15h3.4l-1.8 18h-2.5z" fill="#DD2E44"/>'}],
]);

/** The drawing of an emoji (an <svg>), or a text fallback <span>. */
export function reactionGlyph(emoji) {
  const r = REACTIONS.get(emoji);
  if (!r) {
    const span = document.createElement('span');
    span.className = 'emoji-text';
    span.textContent = emoji;
    return span;
  }
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 36 36');
  svg.setAttribute('class', 'emoji');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.innerHTML = r.svg;
  return svg;
}

/** A person-readable name for an emoji ("Party", or the emoji itself). */
export function reactionLabel(emoji) {
  return REACTIONS.get(emoji)?.label || emoji;
}
