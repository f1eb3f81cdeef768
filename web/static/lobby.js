// The lobby: pick a name, create a room or join one, reopen a recent one.

import {loadName, saveName, loadRecent, forgetRoom, roomFromInput, roomURL, randomRoom, ago, missingBasics, h} from './common.js';
import {icon} from './icons.js';

const $ = (id) => document.getElementById(id);
const nameInput = $('name');
const roomInput = $('room');
const error = $('form-error');

nameInput.value = loadName();

const missing = missingBasics();
if (missing) {
  const n = $('unsupported');
  n.textContent = `This browser cannot join a watch party: it lacks ${missing}. Use a current Chrome, Edge, Firefox or Safari.`;
  n.hidden = false;
}

function fail(msg, field) {
  error.textContent = msg;
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    field.focus();
  }
}

function clearError() {
  error.textContent = '';
  nameInput.removeAttribute('aria-invalid');
  roomInput.removeAttribute('aria-invalid');
}
nameInput.addEventListener('input', clearError);
roomInput.addEventListener('input', clearError);

function takeName() {
  const name = nameInput.value.trim();
  if (!name) {
    fail('Enter your name first — it is how the others will see you.', nameInput);
    return null;
  }
  saveName(name);
  return name;
}

function go(room) {
  window.location.assign(roomURL(room));
}

$('lobby-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  // Enter in the room field joins; anywhere else it creates.
  if (document.activeElement === roomInput && roomInput.value.trim()) {
    join();
    return;
  }
  if (takeName()) go(randomRoom());
});

function join() {
  const text = roomInput.value.trim();
  if (!text) {
    fail('Enter a room name or paste an invite link.', roomInput);
    return;
  }
  const room = roomFromInput(text);
  if (!room) {
    fail('That is not a room name or invite link. Room names use letters, digits, “-” and “_”.', roomInput);
    return;
  }
  if (takeName()) go(room);
}
$('join').addEventListener('click', join);

function renderRecent() {
  const list = loadRecent();
  const ul = $('recent-list');
  ul.replaceChildren();
  $('recent').hidden = list.length === 0;
  for (const {room, ts} of list) {
    ul.append(
      h('li', {},
        h('a', {href: roomURL(room), class: 'recent-room', onclick: (ev) => {
          if (!takeName()) ev.preventDefault();
        }}, h('span', {class: 'recent-name'}, room), h('span', {class: 'recent-when'}, ago(ts))),
        h('button', {type: 'button', class: 'ghost icon', title: `Forget ${room}`, 'aria-label': `Forget ${room}`, onclick: () => {
          forgetRoom(room);
          renderRecent();
        }}, icon('close'))),
    );
  }
}
renderRecent();

// Focus the name on desktops; on phones a keyboard popping up is a nuisance.
if (!nameInput.value && window.matchMedia('(hover: hover)').matches) nameInput.focus();
