/*
 * vakt operator console. Plain ES2020, no framework, no build step, no external fetches.
 *
 * Structure (top to bottom):
 *   1. Constants      priority levels, outcome and phone labels, timings.
 *   2. State          one `S` object: who is logged in, the open Calls (id -> CallSummary),
 *                     today's Stats, the Call shown, the WebSocket and its backoff.
 *   3. Helpers        DOM building (text only: every piece of data goes in with textContent,
 *                     never innerHTML), time parsing and formatting, messages.
 *   4. API            `api()` wraps fetch: JSON in and out, 401 -> login form, errors as ApiError.
 *   5. Session        boot (GET /api/session), login form, logout, showing/hiding the app.
 *   6. Live feed      WebSocket /api/live: snapshot / call / closed / stats, reconnect with
 *                     backoff, a watchdog (stats arrive every 10 s, silence means stale),
 *                     the "connection lost" banner.
 *   7. Alerts         WebAudio beep and row flash for new (or newly escalated) level 0-1 Calls.
 *   8. Queue          sorting, rendering #queue-body, Take / Take next, the 1 s age ticker.
 *   9. Stats          the header figures against their targets.
 *  10. Call view      open / refresh a Call, header, timeline, subscriber card, actions
 *                     (note, phone call, release, close).
 *  11. Supervisor     audit log view, subscriber editor (PUT /api/subscribers/{id}).
 *  12. Keyboard       shortcuts n t c r Esc ?, never while typing in a field.
 *  13. Wiring         event listeners, start.
 */
'use strict';

// ---------------------------------------------------------------- 1. Constants

const PRIORITIES = {
  0: { label: 'Life-safety', cls: 'p0' },
  1: { label: 'Personal alarm', cls: 'p1' },
  2: { label: 'Care', cls: 'p2' },
  3: { label: 'Technical', cls: 'p3' },
  4: { label: 'Rule', cls: 'p4' },
};

const OUTCOMES = {
  no_action: 'No action needed',
  handled_by_phone: 'Handled by phone',
  ambulance_called: 'Ambulance called (112)',
  patrol_needed: 'Patrol needed',
};

const PHONE_PARTIES = {
  person: 'Phoned the person',
  relative: 'Phoned a relative',
  emergency: 'Phoned 112 (emergency)',
};

const STATE_LABELS = { queued: 'Waiting', claimed: 'Taken', closed: 'Closed' };

const ESCALATION_REASONS = {
  repeated_presses: 'repeated presses',
  more_urgent_signal: 'more urgent signal',
};

const ANSWER_WARN_SECS = 60; // answer-time targets: 97.5 % within 60 s ...
const ANSWER_LATE_SECS = 180; // ... and 99 % within 180 s
const FLASH_MS = 6000; // how long a new urgent row flashes
const WS_BACKOFF_MIN_MS = 500;
const WS_BACKOFF_MAX_MS = 10000;
const WS_STALE_MS = 30000; // the server sends stats every 10 s; 30 s of silence = stale
const MESSAGE_MS = 6000;
const AUDIT_LIMIT = 200;

// ---------------------------------------------------------------- 2. State

const S = {
  me: null, // {username, role}
  calls: new Map(), // id -> CallSummary (open Calls only)
  stats: null,
  view: 'login', // 'login' | 'queue' | 'call' | 'audit'
  currentId: null, // id of the Call in the Call view
  current: null, // the full Call shown
  subscriberId: null, // subscriber whose card is shown
  subscriber: null, // the SubscriberCard shown
  refreshing: false,
  refreshAgain: false,
  ws: null,
  wsTimer: null,
  wsAttempts: 0,
  wsLastMessage: 0,
  wsWatchdog: null,
  firstSnapshot: true,
  flashUntil: new Map(), // id -> epoch ms until which the row flashes
  clockSkewMs: 0, // server time minus local time (from the HTTP Date header)
  busy: false, // a take / take-next is in flight
  audit: [],
  audio: null,
  messageTimer: null,
  bootTimer: null,
};

// ---------------------------------------------------------------- 3. Helpers

/** Finds an element by id. */
function $(id) {
  return document.getElementById(id);
}

/**
 * Builds an element. `attrs` keys: `class`, `text` (textContent), `dataset` (object),
 * `on` (object of listeners), anything else as an attribute. Children: nodes or strings
 * (strings become text nodes, never HTML).
 */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = String(v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c);
  }
  return node;
}

/** Removes every child. */
function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function show(node, visible) {
  node.hidden = !visible;
}

/** Parses an RFC 3339 timestamp (jiff may send nanoseconds; Date wants at most ms). */
function parseTs(s) {
  if (!s) return NaN;
  const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$/.exec(String(s));
  if (!m) return Date.parse(s);
  const frac = m[2] ? m[2].slice(0, 4).padEnd(4, '0') : '';
  return Date.parse(m[1] + frac + m[3]);
}

/** Now, corrected to the server's clock (ages must not depend on a wrong PC clock). */
function serverNow() {
  return Date.now() + S.clockSkewMs;
}

function pad2(n) {
  return String(n).padStart(2, '0');
}

/** Seconds as m:ss or h:mm:ss. */
function fmtDuration(secs) {
  if (!Number.isFinite(secs)) return '-';
  const s = Math.max(0, Math.floor(secs));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${pad2(m)}:${pad2(r)}` : `${m}:${pad2(r)}`;
}

/** Age in seconds of a Call opened at `openedAt` (RFC 3339), up to `until` if given. */
function ageSecs(openedAt, until) {
  const start = parseTs(openedAt);
  const end = until ? parseTs(until) : serverNow();
  return (end - start) / 1000;
}

/** Local time HH:MM:SS, with the date in front when not today. */
function fmtTime(ts) {
  const t = parseTs(ts);
  if (!Number.isFinite(t)) return '?';
  const d = new Date(t);
  const hms = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return hms;
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${hms}`;
}

/** Full local date and time, for tooltips. */
function fmtFull(ts) {
  const t = parseTs(ts);
  return Number.isFinite(t) ? new Date(t).toLocaleString('sv-SE') : String(ts);
}

function priorityInfo(p) {
  return PRIORITIES[p] || { label: `Level ${p}`, cls: 'p4' };
}

function priorityBadge(p, extraClass) {
  const info = priorityInfo(p);
  return el('span', {
    class: `badge ${info.cls}${extraClass ? ' ' + extraClass : ''}`,
    text: info.label,
    title: `Priority level ${p}`,
  });
}

/** A value or a dash for empty. */
function orDash(v) {
  return v === undefined || v === null || String(v).trim() === '' ? '-' : String(v);
}

/** A tel: link (only digits, +, * and # go into the href). */
function telLink(phone, cls) {
  const p = String(phone || '').trim();
  if (!p) return el('span', { class: 'muted', text: 'no phone' });
  const href = 'tel:' + p.replace(/[^0-9+*#]/g, '');
  return el('a', { href, class: cls || 'tel', text: p });
}

/** Shows a message at the top of the screen for a few seconds. */
function message(text, kind) {
  const box = $('message');
  box.textContent = text;
  box.className = `message ${kind || 'info'}`;
  box.hidden = false;
  clearTimeout(S.messageTimer);
  S.messageTimer = setTimeout(() => {
    box.hidden = true;
  }, kind === 'error' ? MESSAGE_MS * 2 : MESSAGE_MS);
}

function isSupervisor() {
  return !!S.me && (S.me.role === 'supervisor' || S.me.role === 'admin');
}

function isMine(call) {
  return !!call && !!S.me && call.state === 'claimed' && call.owner === S.me.username;
}

// ---------------------------------------------------------------- 4. API

class ApiError extends Error {
  constructor(status, msg, body) {
    super(msg);
    this.status = status;
    this.body = body;
  }
}

/**
 * Calls the API. Resolves to `{status, data, headers}`; rejects with ApiError. A 401 on anything
 * but the session endpoints shows the login form.
 */
async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, 'The server cannot be reached (network error).', null);
  }
  noteClockSkew(res.headers.get('Date'));
  const raw = await res.text().catch(() => '');
  let data = null;
  if (raw) {
    try {
      data = JSON.parse(raw);
    } catch (e) {
      data = null;
    }
  }
  if (res.status === 401 && path !== '/api/session') {
    showLogin('Your session has ended. Please log in again.');
  }
  if (!res.ok) {
    const reason = (data && data.error) || raw.trim().slice(0, 200) || res.statusText || 'error';
    throw new ApiError(res.status, reason, data);
  }
  return { status: res.status, data, headers: res.headers };
}

/** Keeps the difference between the server's clock and this PC's (only when it matters). */
function noteClockSkew(dateHeader) {
  const t = dateHeader ? Date.parse(dateHeader) : NaN;
  if (!Number.isFinite(t)) return;
  const skew = t + 500 - Date.now(); // Date has 1 s resolution: take the middle of the second
  S.clockSkewMs = Math.abs(skew) > 2000 ? skew : 0;
}

/** Shows an API error (401 is handled by the login form already). */
function reportError(what, e) {
  if (e instanceof ApiError && e.status === 401) return;
  const reason = e instanceof ApiError ? e.message : String(e);
  message(`${what}: ${reason}`, 'error');
}

// ---------------------------------------------------------------- 5. Session

/** Asks who we are: the app if logged in, the login form on 401. */
async function boot() {
  clearTimeout(S.bootTimer);
  try {
    const { data } = await api('GET', '/api/session');
    startApp(data);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      showLogin('');
    } else {
      showLogin('The server cannot be reached. Trying again…');
      S.bootTimer = setTimeout(boot, 5000);
    }
  }
}

/** Shows the login form and forgets everything on screen (personal data must not linger). */
function showLogin(reason) {
  const wasLoggedIn = S.view !== 'login';
  S.me = null;
  S.view = 'login';
  stopLive();
  S.calls.clear();
  S.flashUntil.clear();
  S.current = null;
  S.currentId = null;
  S.subscriber = null;
  S.subscriberId = null;
  S.stats = null;
  S.audit = [];
  S.firstSnapshot = true;
  clear($('queue-body'));
  clear($('timeline'));
  clear($('subscriber-card'));
  clear($('audit-body'));
  $('note-text').value = '';
  $('phone-note').value = '';
  $('close-note').value = '';
  $('close-outcome').value = '';
  closeEditor();
  show($('help'), false);
  for (const id of ['queue-view', 'call-view', 'audit-view', 'stats', 'whoami', 'logout',
    'audit-link', 'help-button', 'connection-status', 'conn-banner', 'queue-count']) {
    show($(id), false);
  }
  show($('login-view'), true);
  document.title = 'vakt - log in';
  const err = $('login-error');
  err.textContent = reason || '';
  show(err, !!reason);
  $('login-submit').disabled = false;
  if (wasLoggedIn || !document.activeElement || document.activeElement === document.body) {
    $('login-username').focus();
  }
}

async function onLoginSubmit(ev) {
  ev.preventDefault();
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  const err = $('login-error');
  if (!username || !password) {
    err.textContent = 'Enter your username and password.';
    show(err, true);
    return;
  }
  clearTimeout(S.bootTimer);
  $('login-submit').disabled = true;
  try {
    const { data } = await api('POST', '/api/session', { username, password });
    $('login-password').value = '';
    show(err, false);
    startApp(data);
  } catch (e) {
    let text;
    if (e.status === 401) text = 'Wrong username or password.';
    else if (e.status === 429) text = 'Too many attempts. Wait a while, then try again.';
    else if (e.status === 0) text = e.message;
    else text = `Login failed: ${e.message}`;
    err.textContent = text;
    show(err, true);
    $('login-password').value = '';
    $('login-password').focus();
  } finally {
    $('login-submit').disabled = false;
  }
}

async function logout() {
  try {
    await api('DELETE', '/api/session');
  } catch (e) {
    // Logged out either way: the screen goes back to the login form.
  }
  showLogin('');
  message('Logged out.', 'info');
}

/** Shows the app for a logged-in user. */
function startApp(me) {
  S.me = { username: String(me.username || ''), role: String(me.role || 'operator') };
  show($('login-view'), false);
  const who = $('whoami');
  clear(who);
  who.append(el('span', { class: 'who-name', text: S.me.username }),
    el('span', { class: 'who-role', text: S.me.role }));
  for (const id of ['stats', 'whoami', 'logout', 'help-button', 'connection-status', 'queue-count']) {
    show($(id), true);
  }
  show($('audit-link'), isSupervisor());
  const st = $('connection-status');
  st.dataset.state = 'closed';
  st.textContent = 'Connecting…';
  showQueue();
  renderQueue();
  renderStats();
  loadStats();
  connectLive();
}

// ---------------------------------------------------------------- 6. Live feed

function liveUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/live`;
}

function connectLive() {
  stopLive();
  let ws;
  try {
    ws = new WebSocket(liveUrl());
  } catch (e) {
    setConnection(false);
    scheduleReconnect();
    return;
  }
  S.ws = ws;
  ws.onopen = () => {
    if (S.ws !== ws) return;
    S.wsLastMessage = Date.now();
    // "open" once the snapshot has arrived: before that the screen is not yet current.
  };
  ws.onmessage = (ev) => {
    if (S.ws !== ws) return;
    S.wsLastMessage = Date.now();
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    onLiveMessage(msg);
  };
  ws.onclose = () => {
    if (S.ws !== ws) return;
    S.ws = null;
    setConnection(false);
    if (S.me) checkSessionThenReconnect();
  };
  ws.onerror = () => {
    // onclose follows and handles it.
  };
  clearInterval(S.wsWatchdog);
  S.wsWatchdog = setInterval(checkStale, 5000);
}

/** Closes the WebSocket and stops reconnecting (on logout). */
function stopLive() {
  clearTimeout(S.wsTimer);
  clearInterval(S.wsWatchdog);
  S.wsTimer = null;
  S.wsWatchdog = null;
  const ws = S.ws;
  S.ws = null;
  if (ws) {
    try {
      ws.close();
    } catch (e) {
      // Already closing.
    }
  }
}

/** No message for too long: the feed is stale even if the socket looks open. */
function checkStale() {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return;
  if (Date.now() - S.wsLastMessage > WS_STALE_MS) {
    const ws = S.ws;
    S.ws = null;
    try {
      ws.close();
    } catch (e) {
      // Ignore.
    }
    setConnection(false);
    checkSessionThenReconnect();
  }
}

/** The upgrade fails the same way for a dead server and an expired session: ask. */
async function checkSessionThenReconnect() {
  try {
    await api('GET', '/api/session');
  } catch (e) {
    if (e.status === 401) {
      showLogin('Your session has ended. Please log in again.');
      return;
    }
  }
  if (S.me) scheduleReconnect();
}

function scheduleReconnect() {
  clearTimeout(S.wsTimer);
  const base = Math.min(WS_BACKOFF_MAX_MS, WS_BACKOFF_MIN_MS * 2 ** S.wsAttempts);
  const delay = base / 2 + Math.random() * (base / 2);
  S.wsAttempts += 1;
  S.wsTimer = setTimeout(() => {
    if (S.me) connectLive();
  }, delay);
}

/** Shows the connection state: the banner is up whenever the screen may be stale. */
function setConnection(open) {
  const st = $('connection-status');
  st.dataset.state = open ? 'open' : 'closed';
  st.textContent = open ? 'Live' : 'Reconnecting…';
  st.title = open ? 'Receiving live updates' : 'No live updates: the screen may be out of date';
  show($('conn-banner'), !open && !!S.me);
  document.body.classList.toggle('stale', !open);
}

function onLiveMessage(msg) {
  switch (msg.type) {
    case 'snapshot':
      S.wsAttempts = 0; // backoff resets only once the feed really works
      applySnapshot(msg.calls || []);
      if (msg.stats) setStats(msg.stats);
      setConnection(true);
      break;
    case 'call':
      if (msg.call) applyCall(msg.call);
      break;
    case 'closed':
      applyClosed(msg.id);
      break;
    case 'stats':
      if (msg.stats) setStats(msg.stats);
      break;
    default:
      break;
  }
}

function applySnapshot(calls) {
  const before = S.calls;
  const first = S.firstSnapshot;
  S.calls = new Map();
  let alert = null;
  for (const c of calls) {
    if (c.state === 'closed') continue;
    S.calls.set(c.id, c);
    if (!first && isAlertWorthy(c, before.get(c.id))) alert = pickMoreUrgent(alert, c);
  }
  if (alert) raiseAlert(alert);
  renderQueue();
  if (first) {
    S.firstSnapshot = false;
    openOwnCallAfterLogin();
  }
  if (S.currentId !== null && S.view === 'call') refreshCall();
}

function applyCall(c) {
  if (c.state === 'closed') {
    applyClosed(c.id);
    return;
  }
  const prev = S.calls.get(c.id);
  S.calls.set(c.id, c);
  if (isAlertWorthy(c, prev)) raiseAlert(c);
  renderQueue();
  if (c.id === S.currentId) refreshCall();
}

function applyClosed(id) {
  S.calls.delete(id);
  S.flashUntil.delete(id);
  renderQueue();
  if (id === S.currentId) refreshCall();
}

/** After login (or a reload), an operator who already owns a Call sees it at once. */
function openOwnCallAfterLogin() {
  if (S.view !== 'queue') return;
  const mine = sortedCalls().find((c) => isMine(c));
  if (mine) openCall(mine.id);
}

// ---------------------------------------------------------------- 7. Alerts

/** A new Call at level 0-1, or a waiting Call that escalated into level 0-1. */
function isAlertWorthy(c, prev) {
  if (c.priority > 1) return false;
  if (!prev) return c.state === 'queued' || !isMine(c);
  return c.priority < prev.priority && c.state === 'queued';
}

function pickMoreUrgent(a, b) {
  return !a || b.priority < a.priority ? b : a;
}

function raiseAlert(c) {
  S.flashUntil.set(c.id, Date.now() + FLASH_MS);
  beep(c.priority);
  const pill = $('queue-count');
  pill.classList.remove('flash');
  void pill.offsetWidth; // restart the animation
  pill.classList.add('flash');
}

/** Unlocks audio on the first user gesture (browsers block it before one). */
function unlockAudio() {
  try {
    if (!S.audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      S.audio = new Ctx();
    }
    if (S.audio.state === 'suspended') S.audio.resume().catch(() => {});
  } catch (e) {
    // No audio: the flash still shows.
  }
}

/** A short beep: three tones for life-safety, two for a personal alarm. */
function beep(priority) {
  try {
    unlockAudio();
    const ctx = S.audio;
    if (!ctx || ctx.state !== 'running') return;
    const tones = priority === 0 ? [988, 740, 988] : [880, 660];
    let t = ctx.currentTime + 0.02;
    for (const f of tones) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'square';
      osc.frequency.value = f;
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.15, t + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.16);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t);
      osc.stop(t + 0.18);
      t += 0.2;
    }
  } catch (e) {
    // Audio blocked or unavailable: ignore silently.
  }
}

// ---------------------------------------------------------------- 8. Queue

function stateRank(state) {
  return state === 'queued' ? 0 : 1;
}

/** Most urgent first: level, then waiting before taken, then oldest first. */
function compareCalls(a, b) {
  return (a.priority - b.priority) ||
    (stateRank(a.state) - stateRank(b.state)) ||
    (parseTs(a.opened_at) - parseTs(b.opened_at)) ||
    (a.id - b.id);
}

function sortedCalls() {
  return Array.from(S.calls.values()).sort(compareCalls);
}

function subscriberLabel(c) {
  if (c.subscriber_name) return el('span', { class: 'sub-name', text: c.subscriber_name });
  if (c.subscriber) return el('span', { class: 'sub-name', text: c.subscriber });
  return el('span', { class: 'sub-unknown' },
    el('span', { class: 'tag tag-unknown', text: 'Unknown device' }), ' ',
    el('span', { class: 'mono', text: c.account || '?' }));
}

function ageClass(c) {
  if (c.state !== 'queued') return 'age';
  const a = ageSecs(c.opened_at);
  if (a >= ANSWER_LATE_SECS) return 'age late';
  if (a >= ANSWER_WARN_SECS) return 'age warn';
  return 'age';
}

function renderQueue() {
  const body = $('queue-body');
  const calls = sortedCalls();
  const now = Date.now();
  const frag = document.createDocumentFragment();
  for (const c of calls) frag.append(queueRow(c, now));
  if (calls.length === 0) {
    frag.append(el('tr', { class: 'empty' }, el('td', { colspan: 8, text: 'No open calls.' })));
  }
  clear(body);
  body.append(frag);
  renderQueueCount(calls);
}

function queueRow(c, now) {
  const mine = isMine(c);
  const owner = c.owner ? (mine ? 'You' : c.owner) : '';
  let action;
  if (c.state === 'queued') {
    action = el('button', { type: 'button', class: 'take', text: 'Take', on: { click: (e) => { e.stopPropagation(); takeCall(c.id); } } });
  } else if (mine) {
    action = el('button', { type: 'button', class: 'open', text: 'Open', on: { click: (e) => { e.stopPropagation(); openCall(c.id); } } });
  } else {
    action = el('button', { type: 'button', class: 'view secondary', text: 'View', on: { click: (e) => { e.stopPropagation(); openCall(c.id); } } });
  }
  const tr = el('tr', {
    class: `call-row ${priorityInfo(c.priority).cls}-row state-${c.state}${mine ? ' mine' : ''}`,
    tabindex: 0,
    dataset: { callId: String(c.id), priority: String(c.priority), state: c.state },
    on: {
      click: () => openCall(c.id),
      keydown: (e) => { if (e.key === 'Enter' && e.target === e.currentTarget) openCall(c.id); },
    },
  },
  el('td', { class: 'col-priority' }, priorityBadge(c.priority)),
  el('td', { class: 'col-age' }, el('span', { class: ageClass(c), dataset: { opened: c.opened_at, state: c.state }, text: fmtDuration(ageSecs(c.opened_at)) })),
  el('td', { class: 'col-subscriber' }, subscriberLabel(c)),
  el('td', { class: 'col-kind' }, el('span', { text: c.kind || '-' }),
    c.restored ? el('span', { class: 'tag tag-restored', text: 'restored' }) : null),
  el('td', { class: 'col-presses' }, el('span', { class: c.alarm_count > 1 ? 'presses multi' : 'presses', text: c.alarm_count > 1 ? `×${c.alarm_count}` : String(c.alarm_count ?? 1) })),
  el('td', { class: 'col-state' }, el('span', { class: `state state-${c.state}`, text: STATE_LABELS[c.state] || c.state })),
  el('td', { class: 'col-owner' + (mine ? ' owner-me' : ''), text: owner }),
  el('td', { class: 'col-action' }, action));
  const until = S.flashUntil.get(c.id);
  if (until && until > now) {
    tr.classList.add('flash');
    // A re-render must not restart the animation: continue where it was.
    tr.style.animationDelay = `-${FLASH_MS - (until - now)}ms`;
  } else if (until) {
    S.flashUntil.delete(c.id);
  }
  return tr;
}

/** The waiting count in the header (also the tab title, for a tab in the background). */
function renderQueueCount(calls) {
  const waiting = calls.filter((c) => c.state === 'queued');
  const urgent = waiting.filter((c) => c.priority <= 1).length;
  const text = waiting.length === 0 ? 'No call waiting'
    : `${waiting.length} waiting${urgent ? ` · ${urgent} urgent` : ''}`;
  $('queue-count-text').textContent = text;
  $('queue-count').classList.toggle('urgent', urgent > 0);
  $('queue-count').classList.toggle('has-waiting', waiting.length > 0);
  $('queue-summary').textContent = `${calls.length} open, ${waiting.length} waiting`;
  document.title = waiting.length ? `(${waiting.length}) vakt` : 'vakt';
}

/** Every second: ages in the queue and in the Call view; flashes that ended. */
function tick() {
  if (!S.me) return;
  for (const span of document.querySelectorAll('#queue-body .age[data-opened]')) {
    const c = { opened_at: span.dataset.opened, state: span.dataset.state };
    span.textContent = fmtDuration(ageSecs(c.opened_at));
    span.className = ageClass(c);
  }
  const now = Date.now();
  for (const [id, until] of S.flashUntil) {
    if (until <= now) {
      S.flashUntil.delete(id);
      const row = document.querySelector(`#queue-body tr[data-call-id="${id}"]`);
      if (row) row.classList.remove('flash');
    }
  }
  if (S.current && S.view === 'call') renderCallAge();
}

async function takeNext() {
  if (!S.me || S.busy) return;
  S.busy = true;
  $('take-next').disabled = true;
  try {
    const { status, data } = await api('POST', '/api/calls/next');
    if (status === 204 || !data) {
      message('No call waiting.', 'info');
    } else {
      openCall(data.id, data);
    }
  } catch (e) {
    reportError('Take next failed', e);
  } finally {
    S.busy = false;
    $('take-next').disabled = false;
  }
}

async function takeCall(id) {
  if (!S.me || S.busy) return;
  S.busy = true;
  try {
    const { data } = await api('POST', `/api/calls/${encodeURIComponent(id)}/claim`);
    openCall(id, data);
  } catch (e) {
    if (e.status === 409) {
      const owner = e.body && e.body.owner;
      message(owner ? `Call ${id} is already taken by ${owner}.` : `Call ${id} is already taken.`, 'warn');
    } else if (e.status === 410) {
      message(`Call ${id} is already closed.`, 'warn');
    } else if (e.status === 404) {
      message(`Call ${id} no longer exists.`, 'warn');
    } else {
      reportError(`Taking call ${id} failed`, e);
    }
  } finally {
    S.busy = false;
  }
}

// ---------------------------------------------------------------- 9. Stats

async function loadStats() {
  try {
    const { data } = await api('GET', '/api/stats/today');
    if (data) setStats(data);
  } catch (e) {
    // The WebSocket snapshot brings them too.
  }
}

function setStats(stats) {
  S.stats = stats;
  renderStats();
}

function fmtPct(x) {
  if (x === null || x === undefined || !Number.isFinite(Number(x))) return '-';
  const n = Number(x);
  return `${n >= 99.95 && n < 100 ? n.toFixed(2) : n.toFixed(1).replace(/\.0$/, '')} %`;
}

function renderStat(id, value, target) {
  const node = $(id);
  const targetNode = $(`${id}-target`);
  if (targetNode && Number.isFinite(Number(target))) targetNode.textContent = `target ${fmtPct(target)}`;
  if (value === null || value === undefined) {
    node.textContent = '-';
    node.dataset.met = 'none';
    return;
  }
  node.textContent = fmtPct(value);
  node.dataset.met = Number(value) >= Number(target) ? 'yes' : 'no';
}

function renderStats() {
  const s = S.stats || {};
  $('stat-calls').textContent = s.calls === undefined || s.calls === null ? '-' : String(s.calls);
  const med = s.median_answer_secs;
  $('stat-median').textContent = med === null || med === undefined ? '-' : fmtDuration(med);
  renderStat('stat-60', s.within_60s_pct, s.target_60s_pct ?? 97.5);
  renderStat('stat-180', s.within_180s_pct, s.target_180s_pct ?? 99);
  $('stats').title = s.date ? `Figures for ${s.date}: ${orDash(s.answered)} answered` : '';
}

// ---------------------------------------------------------------- 10. Call view

/** Focus must not stay on a button of a view that was just hidden (Enter would press it). */
function blurHidden() {
  const a = document.activeElement;
  if (a && a !== document.body && a.closest('section[hidden], [hidden]')) a.blur();
}

function showQueue() {
  if (!S.me) return;
  S.view = 'queue';
  S.currentId = null;
  S.current = null;
  S.subscriber = null;
  S.subscriberId = null;
  show($('call-view'), false);
  show($('audit-view'), false);
  show($('queue-view'), true);
  $('call-view').dataset.callId = '';
  clear($('subscriber-card'));
  clear($('timeline'));
  renderQueue();
  blurHidden();
}

/** Opens the Call view for `id`; `call` is a full Call already at hand (after a claim). */
function openCall(id, call) {
  if (!S.me) return;
  const changed = S.currentId !== id;
  S.view = 'call';
  S.currentId = id;
  show($('queue-view'), false);
  show($('audit-view'), false);
  show($('call-view'), true);
  $('call-view').dataset.callId = String(id);
  if (changed) {
    S.current = null;
    S.subscriber = null;
    S.subscriberId = null;
    clear($('timeline'));
    clear($('subscriber-card'));
    $('subscriber-card').append(el('p', { class: 'muted', text: 'Loading…' }));
    $('note-text').value = '';
    $('phone-note').value = '';
    $('close-note').value = '';
    $('close-outcome').value = '';
    renderPatrolHint();
    renderCallHeaderFromSummary(S.calls.get(id));
  }
  window.scrollTo(0, 0);
  blurHidden();
  if (call) setCurrent(call);
  refreshCall();
}

/** GET /api/calls/{id}, at most one at a time (a burst of updates gives one more fetch). */
async function refreshCall() {
  if (S.currentId === null) return;
  if (S.refreshing) {
    S.refreshAgain = true;
    return;
  }
  S.refreshing = true;
  const id = S.currentId;
  try {
    const { data } = await api('GET', `/api/calls/${encodeURIComponent(id)}`);
    if (S.currentId === id && data) setCurrent(data);
  } catch (e) {
    if (S.currentId === id) {
      if (e.status === 404) message(`Call ${id} was not found.`, 'warn');
      else reportError(`Loading call ${id} failed`, e);
    }
  } finally {
    S.refreshing = false;
    if (S.refreshAgain) {
      S.refreshAgain = false;
      refreshCall();
    }
  }
}

function setCurrent(call) {
  if (call.id !== S.currentId) return;
  S.current = call;
  renderCallHeader(call);
  renderOwnership(call);
  renderTimeline(call.timeline || []);
  loadSubscriber(call);
}

/** Header from the queue's summary while the full Call loads. */
function renderCallHeaderFromSummary(c) {
  if (c) {
    renderCallHeader(c);
    renderOwnership(c);
    return;
  }
  const pri = $('call-priority');
  pri.className = 'badge big';
  pri.textContent = '…';
  $('call-kind').textContent = 'Loading…';
  $('call-age').textContent = '';
  $('call-presses').textContent = '';
  $('call-state').textContent = '';
  show($('call-restored'), false);
  show($('call-actions'), false);
  show($('call-ownership'), false);
  $('call-id').textContent = `Call ${S.currentId}`;
}

function renderCallHeader(c) {
  const pri = $('call-priority');
  const info = priorityInfo(c.priority);
  pri.className = `badge big ${info.cls}`;
  pri.textContent = info.label;
  pri.title = `Priority level ${c.priority}`;
  $('call-kind').textContent = c.kind || '-';
  const presses = $('call-presses');
  presses.textContent = String(c.alarm_count ?? 1);
  presses.className = c.alarm_count > 1 ? 'presses multi' : 'presses';
  show($('call-restored'), !!c.restored);
  const st = $('call-state');
  st.className = `call-state state-${c.state}`;
  let stText = STATE_LABELS[c.state] || c.state;
  if (c.state === 'claimed' && c.owner) stText = isMine(c) ? 'Taken by you' : `Taken by ${c.owner}`;
  if (c.state === 'closed') stText = `Closed${c.outcome ? ': ' + (OUTCOMES[c.outcome] || c.outcome) : ''}`;
  st.textContent = stText;
  $('call-id').textContent = `Call ${c.id} · opened ${fmtTime(c.opened_at)}`;
  $('call-view').dataset.priority = String(c.priority);
  $('call-view').dataset.state = c.state;
  renderCallAge();
}

function renderCallAge() {
  const c = S.current || S.calls.get(S.currentId);
  if (!c) return;
  const age = $('call-age');
  age.textContent = fmtDuration(ageSecs(c.opened_at, c.state === 'closed' ? c.closed_at : null));
  age.className = ageClass(c);
  if (c.answered_at) age.title = `Answered after ${fmtDuration(ageSecs(c.opened_at, c.answered_at))}`;
}

/** Who owns it, and the actions when it is mine. */
function renderOwnership(c) {
  const mine = isMine(c);
  show($('call-actions'), mine);
  const box = $('call-ownership');
  const text = $('call-ownership-text');
  const take = $('call-take');
  if (mine) {
    show(box, false);
    return;
  }
  show(box, true);
  box.className = `ownership state-${c.state}`;
  if (c.state === 'queued') {
    text.textContent = 'This call is waiting. Take it to write notes and close it.';
    show(take, true);
  } else if (c.state === 'claimed') {
    text.textContent = `${c.owner || 'Another operator'} is handling this call. You can read it only.`;
    show(take, false);
  } else {
    const outcome = c.outcome ? OUTCOMES[c.outcome] || c.outcome : 'closed';
    text.textContent = `Closed ${c.closed_at ? fmtTime(c.closed_at) : ''} by ${c.owner || '?'}: ${outcome}.`;
    show(take, false);
  }
}

function renderTimeline(entries) {
  const list = $('timeline');
  const wasAtBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  clear(list);
  if (entries.length === 0) {
    list.append(el('li', { class: 'muted', dataset: { type: 'none' }, text: 'Nothing yet.' }));
    return;
  }
  for (const e of entries) list.append(timelineItem(e));
  if (wasAtBottom || list.dataset.callId !== String(S.currentId)) list.scrollTop = list.scrollHeight;
  list.dataset.callId = String(S.currentId);
}

function timelineItem(e) {
  const li = el('li', { class: `tl tl-${e.type}`, dataset: { type: e.type } },
    el('time', { class: 'tl-time', datetime: e.at, title: fmtFull(e.at), text: fmtTime(e.at) }));
  const body = el('div', { class: 'tl-body' });
  const head = el('div', { class: 'tl-head' });
  const by = e.user ? el('span', { class: 'tl-user', text: e.user }) : null;
  let text = null;
  switch (e.type) {
    case 'signal': {
      const restore = e.qualifier === 'restore';
      head.append(el('span', { class: 'tl-what', text: restore ? 'Restore signal' : (e.qualifier === 'status' ? 'Status signal' : 'Signal') }),
        ' ', el('span', { class: 'mono', text: e.code || '' }),
        e.description ? el('span', { class: 'tl-desc', text: ` ${e.description}` }) : null,
        e.zone !== undefined && e.zone !== null ? el('span', { class: 'tl-zone', text: ` · zone ${e.zone}` }) : null,
        e.account ? el('span', { class: 'tl-account muted', text: ` · account ${e.account}` }) : null);
      break;
    }
    case 'escalated':
      head.append(el('span', { class: 'tl-what', text: 'Escalated' }), ' ',
        priorityBadge(e.from, 'small'), ' → ', priorityBadge(e.to, 'small'),
        e.reason ? el('span', { class: 'tl-desc', text: ` (${ESCALATION_REASONS[e.reason] || e.reason})` }) : null);
      break;
    case 'restored':
      head.append(el('span', { class: 'tl-what', text: 'Restored: the condition is over (the call stays open)' }));
      break;
    case 'claimed':
      head.append(el('span', { class: 'tl-what', text: 'Taken' }));
      break;
    case 'released':
      head.append(el('span', { class: 'tl-what', text: 'Released to the queue' }));
      break;
    case 'note':
      head.append(el('span', { class: 'tl-what', text: 'Note' }));
      text = e.text;
      break;
    case 'phone_call':
      head.append(el('span', { class: `tl-what${e.to === 'emergency' ? ' tl-emergency' : ''}`, text: PHONE_PARTIES[e.to] || `Phoned ${e.to}` }));
      text = e.note;
      break;
    case 'closed':
      head.append(el('span', { class: 'tl-what', text: `Closed: ${OUTCOMES[e.outcome] || e.outcome || '?'}` }));
      text = e.note;
      break;
    default:
      head.append(el('span', { class: 'tl-what', text: String(e.type) }));
  }
  if (by) head.append(' ', el('span', { class: 'muted', text: 'by' }), ' ', by);
  body.append(head);
  if (text) body.append(el('div', { class: 'tl-text', text }));
  li.append(body);
  return li;
}

// ---- subscriber card

/** Loads the card once per Call view (each GET is audited, so no polling). */
async function loadSubscriber(call) {
  const card = $('subscriber-card');
  if (!call.subscriber) {
    S.subscriberId = null;
    S.subscriber = null;
    renderUnknownDevice(call);
    return;
  }
  if (S.subscriberId === call.subscriber) return;
  S.subscriberId = call.subscriber;
  S.subscriber = null;
  clear(card);
  card.append(el('p', { class: 'muted', text: 'Loading subscriber…' }));
  const callId = call.id;
  try {
    const { data } = await api('GET', `/api/subscribers/${encodeURIComponent(call.subscriber)}`);
    if (S.currentId !== callId || S.subscriberId !== call.subscriber) return;
    S.subscriber = data;
    renderSubscriber(data);
  } catch (e) {
    if (S.currentId !== callId) return;
    S.subscriberId = null; // try again on the next refresh
    clear(card);
    card.className = 'card card-warning';
    card.append(el('h2', { class: 'subscriber-name', text: call.subscriber_name || call.subscriber }),
      el('p', { class: 'warning-text', text: e.status === 404
        ? `Subscriber ${call.subscriber} is not in the registry. Check the account ${call.account}.`
        : `The subscriber card could not be loaded: ${e.message}` }));
  }
}

function renderUnknownDevice(call) {
  const card = $('subscriber-card');
  clear(card);
  card.className = 'card card-warning';
  card.append(
    el('h2', { class: 'subscriber-name unknown', text: 'Unknown device' }),
    el('p', { class: 'warning-text', text: 'No subscriber is registered for this device. Nobody is known: there is no address, access or contact to show.' }),
    el('dl', { class: 'facts' },
      el('dt', { text: 'Account' }), el('dd', { class: 'mono big-value', text: call.account || '?' })),
    el('p', { class: 'muted', text: 'Look at the signals in the timeline and check the device registry.' }));
}

function renderSubscriber(sub) {
  const card = $('subscriber-card');
  clear(card);
  card.className = 'card';
  const access = sub.access || {};

  const head = el('div', { class: 'card-head' },
    el('div', {},
      el('h2', { class: 'subscriber-name', text: sub.name || sub.id }),
      el('div', { class: 'card-sub' },
        el('span', { class: 'mono personal-number', title: 'Personal number', text: orDash(sub.personal_number) }),
        el('span', { class: 'language', title: 'Language to speak' }, 'Language: ', el('strong', { text: orDash(sub.language) })),
        el('span', { class: 'mono muted', title: 'Subscriber id', text: sub.id }))),
    isSupervisor() ? el('button', { type: 'button', id: 'subscriber-edit', class: 'secondary', text: 'Edit', on: { click: openEditor } }) : null);

  const facts = el('div', { class: 'card-top' },
    el('div', { class: 'address' },
      el('div', { class: 'fact-label', text: 'Address' }),
      el('div', { class: 'street', text: orDash(sub.address) }),
      el('div', { class: 'postcode-city', text: [sub.postcode, sub.city].filter(Boolean).join(' ') || '-' }),
      el('div', { class: 'area' }, el('span', { class: 'muted', text: 'Area ' }), el('span', { text: orDash(sub.area) }))),
    el('div', { class: 'reach' },
      el('div', { class: 'fact-label', text: 'Phone' }),
      el('div', { class: 'phone' }, telLink(sub.phone, 'tel big-tel')),
      el('div', { class: 'fact-label', text: 'Care provider' }),
      el('div', { class: 'care-provider', text: orDash(sub.care_provider) })));

  const keys = Number(access.keys) || 0;
  const accessBox = el('section', { class: 'access' },
    el('h3', { text: 'Access to the home' }),
    el('dl', { class: 'facts access-facts' },
      el('dt', { text: 'Door code' }), el('dd', { class: 'door-code', text: orDash(access.door_code) }),
      el('dt', { text: 'Keys' }), el('dd', { class: keys ? 'keys' : 'keys none', text: keys ? `${keys} key${keys === 1 ? '' : 's'}` : 'No keys held' }),
      el('dt', { text: 'Keys kept at' }), el('dd', { class: 'key-location', text: orDash(access.key_location) }),
      el('dt', { text: 'Digital lock' }), el('dd', { class: 'digital-lock mono', text: orDash(access.digital_lock_id) }),
      el('dt', { text: 'Entry notes' }), el('dd', { class: 'entry-notes pre', text: orDash(access.entry_notes) })));

  const health = el('section', { class: 'notes-block health' },
    el('h3', { text: 'Health' }), el('p', { class: 'pre health-notes', text: orDash(sub.health_notes) }));
  const plan = el('section', { class: 'notes-block' },
    el('h3', { text: 'Care plan' }), el('p', { class: 'pre care-plan-notes', text: orDash(sub.care_plan_notes) }));

  const contacts = el('section', { class: 'contacts' }, el('h3', { text: 'Contacts (call in this order)' }));
  const list = sub.contacts || [];
  if (list.length === 0) {
    contacts.append(el('p', { class: 'muted', text: 'No contacts registered.' }));
  } else {
    const ol = el('ol', { class: 'contact-list' });
    for (const c of list) {
      ol.append(el('li', { class: 'contact' },
        el('span', { class: 'contact-name', text: orDash(c.name) }),
        el('span', { class: 'contact-relation', text: c.relation ? ` (${c.relation})` : '' }),
        ' ', telLink(c.phone)));
    }
    contacts.append(ol);
  }

  const devices = el('section', { class: 'devices' }, el('h3', { text: 'Devices' }));
  const devs = sub.devices || [];
  if (devs.length === 0) {
    devices.append(el('p', { class: 'muted', text: 'No devices linked.' }));
  } else {
    const tbody = el('tbody');
    for (const d of devs) {
      tbody.append(el('tr', {},
        el('td', { class: 'mono', text: d.account || '-' }),
        el('td', { text: d.device_type || '-' }),
        el('td', { text: [d.line && `L${d.line}`, d.receiver && `R${d.receiver}`].filter(Boolean).join(' ') || '-' }),
        el('td', { text: orDash(d.area) }),
        el('td', { text: orDash(d.telecom_operator) }),
        el('td', { text: d.supervision_secs ? fmtDuration(d.supervision_secs) : '-' })));
    }
    devices.append(el('table', { class: 'device-table' },
      el('thead', {}, el('tr', {}, ...['Account', 'Type', 'Line / receiver', 'Area', 'Telecom', 'Supervision'].map((h) => el('th', { text: h })))),
      tbody));
  }

  card.append(head, facts, accessBox, health, contacts, plan, devices);
}

// ---- actions on my Call

/** Runs an action on the current Call, then refreshes it. */
async function callAction(what, path, body, button) {
  const id = S.currentId;
  if (id === null || !isMine(S.current)) {
    message('You do not own this call.', 'warn');
    return false;
  }
  if (button) button.disabled = true;
  try {
    const { data } = await api('POST', `/api/calls/${encodeURIComponent(id)}/${path}`, body);
    if (data && data.id === S.currentId) setCurrent(data);
    return true;
  } catch (e) {
    if (e.status === 409) message(`${what} failed: you no longer own this call (${e.message}).`, 'error');
    else if (e.status === 410) message(`${what} failed: the call is already closed.`, 'error');
    else reportError(`${what} failed`, e);
    return false;
  } finally {
    if (button) button.disabled = false;
    if (S.currentId === id) refreshCall();
  }
}

async function saveNote() {
  const box = $('note-text');
  const text = box.value.trim();
  if (!text) {
    message('Write the note first.', 'warn');
    box.focus();
    return;
  }
  if (await callAction('Saving the note', 'notes', { text }, $('note-save'))) {
    box.value = '';
    message('Note saved.', 'ok');
  }
}

async function logPhone(to, button) {
  const noteBox = $('phone-note');
  if (await callAction('Logging the phone call', 'phone', { to, note: noteBox.value.trim() }, button)) {
    noteBox.value = '';
    message(`${PHONE_PARTIES[to] || 'Phone call'}: logged.`, 'ok');
  }
}

async function releaseCall() {
  if (!isMine(S.current)) return;
  const id = S.currentId;
  if (await callAction('Releasing', 'release', undefined, $('release'))) {
    message(`Call ${id} is back in the queue.`, 'ok');
  }
}

async function closeCall() {
  const sel = $('close-outcome');
  const outcome = sel.value;
  if (!OUTCOMES[outcome]) {
    message('Choose an outcome before closing.', 'warn');
    sel.focus();
    return;
  }
  const id = S.currentId;
  if (await callAction('Closing', 'close', { outcome, note: $('close-note').value.trim() }, $('close-submit'))) {
    $('close-note').value = '';
    sel.value = '';
    renderPatrolHint();
    message(`Call ${id} closed: ${OUTCOMES[outcome]}. Press Esc for the queue.`, 'ok');
  }
}

function renderPatrolHint() {
  $('patrol-hint').classList.toggle('active', $('close-outcome').value === 'patrol_needed');
}

// ---------------------------------------------------------------- 11. Supervisor

async function showAudit() {
  if (!isSupervisor()) return;
  S.view = 'audit';
  S.currentId = null;
  S.current = null;
  show($('queue-view'), false);
  show($('call-view'), false);
  show($('audit-view'), true);
  blurHidden();
  await loadAudit(false);
}

/** Loads the audit log (`newer`: only entries after the newest shown). */
async function loadAudit(newer) {
  const maxSeq = S.audit.reduce((m, a) => Math.max(m, a.seq || 0), 0);
  const q = newer && maxSeq ? `?after=${maxSeq}&limit=${AUDIT_LIMIT}` : `?limit=${AUDIT_LIMIT}`;
  try {
    const { data } = await api('GET', `/api/audit${q}`);
    const rows = Array.isArray(data) ? data : [];
    if (newer) {
      const seen = new Set(S.audit.map((a) => a.seq));
      S.audit = S.audit.concat(rows.filter((a) => !seen.has(a.seq)));
    } else {
      S.audit = rows;
    }
    renderAudit();
    $('audit-info').textContent = `${S.audit.length} entries shown, newest first` +
      (rows.length >= AUDIT_LIMIT ? ` (more: press "Load newer")` : '');
  } catch (e) {
    reportError('Loading the audit log failed', e);
  }
}

function renderAudit() {
  const body = $('audit-body');
  clear(body);
  const rows = S.audit.slice().sort((a, b) => (b.seq || 0) - (a.seq || 0));
  if (rows.length === 0) {
    body.append(el('tr', {}, el('td', { colspan: 7, class: 'muted', text: 'No entries.' })));
    return;
  }
  const frag = document.createDocumentFragment();
  for (const a of rows) {
    frag.append(el('tr', { class: `audit-row action-${String(a.action || '').replace(/[^a-z_.]/g, '').replace('.', '-')}` },
      el('td', { class: 'mono muted', text: orDash(a.seq) }),
      el('td', { class: 'mono', title: fmtFull(a.at), text: fmtTime(a.at) }),
      el('td', { text: orDash(a.user) }),
      el('td', { class: 'mono', text: orDash(a.action) }),
      el('td', { class: 'mono', text: a.call === undefined || a.call === null ? '' : String(a.call) }),
      el('td', { class: 'mono', text: a.subscriber || '' }),
      el('td', { text: a.detail || '' })));
  }
  body.append(frag);
}

// ---- subscriber editor

const EDIT_FIELDS = [
  ['name', 'Name'],
  ['personal_number', 'Personal number'],
  ['address', 'Address'],
  ['postcode', 'Postcode'],
  ['city', 'City'],
  ['area', 'Area'],
  ['phone', 'Phone'],
  ['language', 'Language (e.g. sv, fi, ar)'],
  ['care_provider', 'Care provider'],
  ['access.keys', 'Keys held (number)', 'number'],
  ['access.key_location', 'Keys kept at'],
  ['access.digital_lock_id', 'Digital lock id'],
  ['access.door_code', 'Door code'],
  ['access.entry_notes', 'Entry notes', 'textarea'],
  ['health_notes', 'Health notes', 'textarea'],
  ['care_plan_notes', 'Care plan notes', 'textarea'],
];

function getPath(obj, path) {
  return path.split('.').reduce((o, k) => (o && o[k] !== undefined && o[k] !== null ? o[k] : undefined), obj);
}

function openEditor() {
  if (!isSupervisor() || !S.subscriber) return;
  const sub = S.subscriber;
  $('edit-id').textContent = sub.id;
  const fields = $('edit-fields');
  clear(fields);
  for (const [path, label, kind] of EDIT_FIELDS) {
    const id = `edit-${path.replace('.', '-')}`;
    const value = getPath(sub, path);
    let input;
    if (kind === 'textarea') {
      input = el('textarea', { id, rows: 2, dataset: { path } });
      input.value = value === undefined ? '' : String(value);
    } else {
      input = el('input', { id, type: kind === 'number' ? 'number' : 'text', min: kind === 'number' ? 0 : null, dataset: { path } });
      input.value = value === undefined ? (kind === 'number' ? '0' : '') : String(value);
    }
    fields.append(el('div', { class: `field field-${kind || 'text'}` }, el('label', { for: id, text: label }), input));
  }
  const contacts = $('edit-contacts');
  clear(contacts);
  for (const c of sub.contacts || []) contacts.append(contactRow(c));
  show($('edit-error'), false);
  show($('edit-dialog'), true);
  $('edit-name').focus();
}

function contactRow(c) {
  const row = el('div', { class: 'contact-edit' });
  const mk = (cls, ph, v) => {
    const i = el('input', { type: 'text', class: cls, placeholder: ph, 'aria-label': ph });
    i.value = v || '';
    return i;
  };
  row.append(mk('c-name', 'Name', c.name), mk('c-relation', 'Relation', c.relation), mk('c-phone', 'Phone', c.phone),
    el('button', { type: 'button', class: 'small', title: 'Move up', text: '↑', on: { click: () => { if (row.previousElementSibling) row.parentNode.insertBefore(row, row.previousElementSibling); } } }),
    el('button', { type: 'button', class: 'small', title: 'Move down', text: '↓', on: { click: () => { if (row.nextElementSibling) row.parentNode.insertBefore(row.nextElementSibling, row); } } }),
    el('button', { type: 'button', class: 'small danger-outline', title: 'Remove', text: 'Remove', on: { click: () => row.remove() } }));
  return row;
}

function closeEditor() {
  show($('edit-dialog'), false);
  clear($('edit-fields'));
  clear($('edit-contacts'));
}

/** Builds a model::Subscriber from the form (keeps the id; devices are not part of it). */
function editorValue() {
  const src = S.subscriber || {};
  const sub = {
    id: src.id,
    name: '', personal_number: '', address: '', postcode: '', city: '', area: '', phone: '',
    care_provider: '', health_notes: '', care_plan_notes: '', language: '',
    access: { keys: 0, key_location: '', digital_lock_id: '', door_code: '', entry_notes: '' },
    contacts: [],
  };
  for (const input of $('edit-fields').querySelectorAll('[data-path]')) {
    const path = input.dataset.path.split('.');
    let v = input.value;
    if (input.type === 'number') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error('Keys must be a whole number, 0 or more.');
      v = n;
    } else {
      v = v.trim();
    }
    if (path.length === 2) sub[path[0]][path[1]] = v;
    else sub[path[0]] = v;
  }
  for (const row of $('edit-contacts').querySelectorAll('.contact-edit')) {
    const c = {
      name: row.querySelector('.c-name').value.trim(),
      relation: row.querySelector('.c-relation').value.trim(),
      phone: row.querySelector('.c-phone').value.trim(),
    };
    if (c.name || c.relation || c.phone) sub.contacts.push(c);
  }
  if (!sub.name) throw new Error('The name must not be empty.');
  return sub;
}

async function saveEditor(ev) {
  ev.preventDefault();
  const err = $('edit-error');
  let sub;
  try {
    sub = editorValue();
  } catch (e) {
    err.textContent = e.message;
    show(err, true);
    return;
  }
  $('edit-save').disabled = true;
  try {
    const { data } = await api('PUT', `/api/subscribers/${encodeURIComponent(sub.id)}`, sub);
    closeEditor();
    if (data && data.id === S.subscriberId) {
      S.subscriber = data;
      renderSubscriber(data);
    }
    message(`Subscriber ${sub.id} saved.`, 'ok');
  } catch (e) {
    if (e.status !== 401) {
      err.textContent = e.status === 403 ? 'You may not edit subscribers.' : `Saving failed: ${e.message}`;
      show(err, true);
    }
  } finally {
    $('edit-save').disabled = false;
  }
}

// ---------------------------------------------------------------- 12. Keyboard

function isTyping() {
  const a = document.activeElement;
  if (!a) return false;
  const tag = a.tagName;
  return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || a.isContentEditable;
}

function toggleHelp(visible) {
  show($('help'), visible === undefined ? $('help').hidden : visible);
  if (!$('help').hidden) $('help-close').focus();
}

function onKeyDown(e) {
  unlockAudio();
  if (!S.me || e.ctrlKey || e.metaKey || e.altKey) return;
  if (isTyping()) {
    // Esc leaves the field (then shortcuts work again); nothing else is a shortcut here.
    if (e.key === 'Escape' && $('edit-dialog').hidden) document.activeElement.blur();
    return;
  }
  if (!$('edit-dialog').hidden) {
    if (e.key === 'Escape') closeEditor();
    return;
  }
  if (!$('help').hidden) {
    if (e.key === 'Escape' || e.key === '?') {
      e.preventDefault();
      toggleHelp(false);
    }
    return;
  }
  const mine = S.view === 'call' && isMine(S.current);
  switch (e.key) {
    case 'n':
    case 'N':
      e.preventDefault();
      takeNext();
      break;
    case 't':
    case 'T':
      if (mine) {
        e.preventDefault();
        $('note-text').focus();
      }
      break;
    case 'c':
    case 'C':
      if (mine) {
        e.preventDefault();
        $('close-outcome').focus();
      }
      break;
    case 'r':
    case 'R':
      if (mine) {
        e.preventDefault();
        releaseCall();
      }
      break;
    case 'Escape':
      if (S.view !== 'queue') {
        e.preventDefault();
        showQueue();
      }
      break;
    case '?':
      e.preventDefault();
      toggleHelp();
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------- 13. Wiring

function wire() {
  $('login-form').addEventListener('submit', onLoginSubmit);
  $('logout').addEventListener('click', logout);
  $('take-next').addEventListener('click', takeNext);
  $('queue-count').addEventListener('click', showQueue);
  $('call-back').addEventListener('click', showQueue);
  $('audit-back').addEventListener('click', showQueue);
  $('call-take').addEventListener('click', () => { if (S.currentId !== null) takeCall(S.currentId); });
  $('note-save').addEventListener('click', saveNote);
  $('note-text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      saveNote();
    }
  });
  for (const b of document.querySelectorAll('.phone-log')) {
    b.addEventListener('click', () => logPhone(b.dataset.to, b));
  }
  $('release').addEventListener('click', releaseCall);
  $('close-submit').addEventListener('click', closeCall);
  $('close-outcome').addEventListener('change', renderPatrolHint);
  $('audit-link').addEventListener('click', showAudit);
  $('audit-refresh').addEventListener('click', () => loadAudit(false));
  $('audit-newer').addEventListener('click', () => loadAudit(true));
  $('help-button').addEventListener('click', () => toggleHelp());
  $('help-close').addEventListener('click', () => toggleHelp(false));
  $('help').addEventListener('click', (e) => { if (e.target === $('help')) toggleHelp(false); });
  $('edit-form').addEventListener('submit', saveEditor);
  $('edit-cancel').addEventListener('click', closeEditor);
  $('edit-add-contact').addEventListener('click', () => {
    const row = contactRow({});
    $('edit-contacts').append(row);
    row.querySelector('input').focus();
  });
  document.addEventListener('keydown', onKeyDown);
  document.addEventListener('pointerdown', unlockAudio);
  setInterval(tick, 1000);
}

document.addEventListener('DOMContentLoaded', () => {
  wire();
  boot();
});
