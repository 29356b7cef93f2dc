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
 *   6. Live feed      WebSocket /api/live: snapshot / call / closed / stats / dispatch / incident,
 *                     reconnect with backoff, a watchdog (stats arrive every 10 s, silence
 *                     means stale), the "connection lost" banner.
 *   7. Alerts         WebAudio beep and row flash for new (or newly escalated) urgent Calls; the
 *                     ring that repeats while they wait; the "sound is off" banner.
 *   8. Queue          sorting, rendering #queue-body, Take / Take next, the 1 s age ticker.
 *   9. Stats          the header figures against their targets.
 *  10. Call view      open / refresh a Call, header, timeline, subscriber card, actions
 *                     (note, phone call, release, close).
 *  11. Dispatch       the live dispatches (every page), their clocks (receipt, arrival,
 *                     breach), breach and receipt-timeout alerts, the Call's dispatch panel,
 *                     the "dispatch a patrol" dialog, cancelling.
 *  12. Patrols board  every patrol, its shift, link and open assignments with their clocks.
 *  13. Supervision    telecom incidents (banner on every page, sound, tab title; the incidents
 *                     page and one incident with its devices, history and notifications),
 *                     the header's supervision badges, work orders (filters, deadlines,
 *                     start / done / cancel), "report fault" on a Call, the device page,
 *                     the outbox; each page reloads itself while shown (PAGE_POLLS).
 *  14. Supervisor     audit log, directory (and its import for admins), SLA report,
 *                     subscriber editor (PUT /api/subscribers/{id}); users (admins: disable,
 *                     enable, role, remove). Registers: the subscriber and device lists with
 *                     their search, a subscriber's page without a Call (the same card and
 *                     editor), cards loaded again when the live feed says a subscriber changed.
 *  15. Keyboard       shortcuts n t c r d p i w Esc ?, never while typing in a field.
 *  16. Wiring         event listeners, start.
 *
 * Clocks: every time shown counts on the server's clock (`serverNow`), and every dispatch
 * clock is drawn from the newest known state of its dispatch (`S.known`) once a second, so a
 * live message changes every place it is shown at once.
 */
'use strict';

// ---------------------------------------------------------------- 1. Constants

/*
 * The tables of labels below read the catalogue when a label is used (a getter per key): the
 * catalogue loads after this script runs, so a text fixed here would stay English.
 */

const PRIORITIES = {
  0: { get label() { return t('priority.0'); }, cls: 'p0' },
  1: { get label() { return t('priority.1'); }, cls: 'p1' },
  2: { get label() { return t('priority.2'); }, cls: 'p2' },
  3: { get label() { return t('priority.3'); }, cls: 'p3' },
  4: { get label() { return t('priority.4'); }, cls: 'p4' },
};

/** Closing outcomes (model::Outcome), in the order offered; `no_action` only reads. */
const OUTCOMES = {
  get help_not_needed() { return t('close.outcome.help_not_needed'); },
  get relative_goes() { return t('close.outcome.relative_goes'); },
  get patrol_needed() { return t('close.outcome.patrol_needed'); },
  get ambulance_called() { return t('close.outcome.ambulance_called'); },
  get fire_brigade_called() { return t('close.outcome.fire_brigade_called'); },
  get accidental_press() { return t('close.outcome.accidental_press'); },
  get technical() { return t('close.outcome.technical'); },
  get no_action() { return t('close.outcome.no_action'); },
};

/** Outcomes that send someone: every other one needs a written reason. */
const SENDS_HELP = new Set(['patrol_needed', 'ambulance_called', 'fire_brigade_called']);

const PHONE_PARTIES = {
  get person() { return t('phone.party.person'); },
  get relative() { return t('phone.party.relative'); },
  get emergency() { return t('phone.party.emergency'); },
};

const ESCALATION_REASONS = {
  get repeated_presses() { return t('escalation.repeated_presses'); },
  get more_urgent_signal() { return t('escalation.more_urgent_signal'); },
};

/** Dispatch states in words (model::DispatchState). */
const DISPATCH_STATES = {
  get offered() { return t('dispatch.state.offered'); },
  get received() { return t('dispatch.state.received'); },
  get accepted() { return t('dispatch.state.accepted'); },
  get declined() { return t('dispatch.state.declined'); },
  get receipt_timeout() { return t('dispatch.state.receipt_timeout'); },
  get arrived() { return t('dispatch.state.arrived'); },
  get completed() { return t('dispatch.state.completed'); },
  get cancelled() { return t('dispatch.state.cancelled'); },
};

/** Still out: the patrol has it (the Call cannot get another one meanwhile). */
const OPEN_DISPATCH = new Set(['offered', 'received', 'accepted']);
/** On the patrols board: open, or arrived and not yet completed. */
const LIVE_DISPATCH = new Set(['offered', 'received', 'accepted', 'arrived']);

const ARRIVAL_METHODS = {
  get app() { return t('dispatch.arrival.app'); },
  get lock() { return t('dispatch.arrival.lock'); },
  get receipt_code() { return t('dispatch.arrival.receipt_code'); },
  get presence() { return t('dispatch.arrival.presence'); },
};

const VISIT_OUTCOMES = {
  get helped() { return t('dispatch.visit.helped'); },
  get no_action() { return t('dispatch.visit.no_action'); },
  get ambulance_called() { return t('dispatch.visit.ambulance_called'); },
  get not_home() { return t('dispatch.visit.not_home'); },
  get no_access() { return t('dispatch.visit.no_access'); },
  get other() { return t('dispatch.visit.other'); },
};

/** Telecom incidents (model::IncidentKind). */
const INCIDENT_KINDS = {
  telecom_operator: { get tag() { return t('incident.kind.telecom_operator.tag'); }, get label() { return t('incident.kind.telecom_operator'); } },
  area: { get tag() { return t('incident.kind.area.tag'); }, get label() { return t('incident.kind.area'); } },
};

/** Device faults (work_orders::FaultKind). */
const FAULTS = {
  get low_battery() { return t('wo.fault.low_battery'); },
  get mains_loss() { return t('wo.fault.mains_loss'); },
  get tamper() { return t('wo.fault.tamper'); },
  get device_failure() { return t('wo.fault.device_failure'); },
  get reported() { return t('wo.fault.reported'); },
};

const WO_STATES = {
  get new() { return t('wo.state.new'); },
  get started() { return t('wo.state.started'); },
  get done() { return t('wo.state.done'); },
  get cancelled() { return t('wo.state.cancelled'); },
};

/** A work order's timeline (work_orders::OrderEventKind). */
const WO_EVENTS = {
  get created() { return t('wo.event.created'); },
  get fault_repeated() { return t('wo.event.fault_repeated'); },
  get restored() { return t('wo.event.restored'); },
  get note() { return t('wo.event.note'); },
  get started() { return t('wo.event.started'); },
  get done() { return t('wo.event.done'); },
  get cancelled() { return t('wo.event.cancelled'); },
};

/** Outbox deliveries (outbox::DeliveryState). */
const DELIVERY_STATES = {
  get pending() { return t('delivery.state.pending'); },
  get failing() { return t('delivery.state.failing'); },
  get delivered() { return t('delivery.state.delivered'); },
};
const RECIPIENT_KINDS = {
  get telecom() { return t('delivery.recipient.telecom'); },
  get care_provider() { return t('delivery.recipient.care_provider'); },
  get installer() { return t('delivery.recipient.installer'); },
};
const EVENT_LABELS = {
  get 'incident.opened'() { return t('delivery.event.incident.opened'); },
  get 'incident.extra_visits'() { return t('delivery.event.incident.extra_visits'); },
  get 'incident.resolved'() { return t('delivery.event.incident.resolved'); },
  get 'work_order.created'() { return t('delivery.event.work_order.created'); },
  get 'work_order.attached'() { return t('delivery.event.work_order.attached'); },
  get 'work_order.restored'() { return t('delivery.event.work_order.restored'); },
  get 'work_order.started'() { return t('delivery.event.work_order.started'); },
  get 'work_order.done'() { return t('delivery.event.work_order.done'); },
  get 'work_order.cancelled'() { return t('delivery.event.work_order.cancelled'); },
};

/** The pages; exactly one is shown (section `${name}-view`). */
const VIEWS = ['login', 'queue', 'call', 'patrols', 'incidents', 'incident', 'workorders', 'device',
  'directory', 'report', 'audit', 'outbox', 'users', 'registers', 'subscriber'];
VIEWS.push('reviews'); // supervisors: Calls closed without a patrol or 112
VIEWS.push('orders', 'billing'); // supervisors: the subscribers' orders, the month's billing
VIEWS.push('statistics'); // supervisors, and a municipality's or provider's staff: the figures of a period

const BOARD_POLL_MS = 15000; // the patrols board asks again (connected or not) this often
const RECEIPT_PASS_GRACE_MS = 4000; // after a receipt timeout, the next offer follows within this

const ANSWER_WARN_SECS = 60; // answer-time targets: 97.5 % within 60 s ...
const ANSWER_LATE_SECS = 180; // ... and 99 % within 180 s
const FLASH_MS = 6000; // how long a new urgent row flashes
const WS_BACKOFF_MIN_MS = 500;
const WS_BACKOFF_MAX_MS = 10000;
const WS_STALE_MS = 30000; // the server sends stats every 10 s; 30 s of silence = stale
const MESSAGE_MS = 6000;
const AUDIT_LIMIT = 200;
const SUPERVISION_POLL_MS = 30000; // the header's supervision badges
const INCIDENT_FLASH_MS = 8000; // how long a new incident's banner line flashes
const MAX_LIST_ROWS = 1000; // rows drawn in one table (incident devices, work orders, outbox)

// ---------------------------------------------------------------- 2. State

const S = {
  me: null, // {username, role}
  calls: new Map(), // id -> CallSummary (open Calls only)
  voice: new Map(), // conversation id -> LiveConversation (voice calls going on)
  voiceEnded: new Set(), // conversations ended lately (a call out may end before its dial returns)
  dial: null, // {key: 'call:owner', trunk, targets} of the Call in view, when it is mine
  stats: null,
  view: 'login', // 'login' | 'queue' | 'call' | 'patrols' | 'directory' | 'report' | 'audit'
  currentId: null, // id of the Call in the Call view
  current: null, // the full Call shown
  subscriberId: null, // subscriber whose card is shown
  subscriber: null, // the SubscriberCard shown
  editing: null, // the SubscriberCard the editor was opened on
  refreshing: false,
  refreshAgain: false,
  ws: null,
  wsTimer: null,
  wsAttempts: 0,
  wsLastMessage: 0,
  wsWatchdog: null,
  firstSnapshot: true,
  firstLiveDispatches: true, // the first snapshot follows the load in startApp
  flashUntil: new Map(), // id -> epoch ms until which the row flashes
  clockSkewMs: 0, // server time minus local time (from the HTTP Date header)
  busy: false, // a take / take-next is in flight
  audit: [], // the access log's review: [ReviewEntry], newest first
  auditNext: null, // `before` of the review's next page (null: no more)
  users: [], // [UserView] on the users page (admins)
  audio: null,
  messageTimer: null,
  bootTimer: null,
  known: new Map(), // dispatch id -> newest DispatchView seen (live, in a Call, on the board)
  alerts: new Map(), // key -> {key, kind: 'breach' | 'receipt', id, since}: banner lines
  dismissed: new Set(), // alert keys the operator acknowledged
  patrolPhones: new Map(), // patrol id -> phone (from the board and the dispatch dialog)
  board: null, // [PatrolBoard] last loaded
  boardAt: 0, // when it was loaded (server ms)
  boardTimer: null,
  boardReload: null,
  boardLoading: false,
  boardAgain: false,
  phonesLoading: false,
  phonesLoaded: false, // patrol phones asked for once per login (the dispatch panel shows them)
  waitingCount: 0,
  ringNext: 0, // epoch ms of the next ring while an urgent Call waits (0: not ringing)
  rings: 0, // rings played since the page loaded (the ring is heard, not only scheduled)
  dispatchChoices: null, // GET /api/calls/{id}/patrols while the dialog is open
  dispatchBusy: false,
  cancelFor: null, // dispatch id whose cancel form is open
  directory: null,
  report: null,
  loading: new Set(), // keys of loads in flight (single())
  loadAgain: new Map(), // key -> the latest load asked for meanwhile
  pageTimer: null, // the shown page's reload (PAGE_POLLS)
  incidents: new Map(), // incident id -> newest IncidentView seen (open ones drive the banner)
  incidentsFirst: true, // the first load of the open incidents makes no sound
  incidentsFailed: false,
  incidentFlash: new Map(), // incident id -> epoch ms until which its banner line flashes
  incidentLiveAt: new Map(), // incident id -> epoch ms of its last live message
  incidentRender: null,
  incidentList: null, // ids on the incidents page (GET /api/incidents?state=all)
  incidentListAt: 0,
  incidentListFailed: false,
  incidentId: null, // the incident shown
  incidentAt: 0,
  incidentFailed: false,
  supervision: null, // GET /api/supervision
  supervisionAt: 0,
  supervisionFailed: false,
  supervisionMissing: false,
  supervisionTimer: null,
  supervisionSoon: null,
  staffing: null, // the staffing figures (live feed `staffing`, GET /api/supervision)
  staffingDetail: null, // GET /api/staffing (supervisors: who is on duty, whom to call in)
  staffingDetailAt: 0,
  staffingOpen: false, // the supervisor opened "call in more operators"
  lastInput: Date.now(), // the last key, mouse or touch input (the heartbeat's idle time)
  wo: { list: null, at: 0, failed: false, expanded: new Set(), focus: null, replacedFrom: null },
  orders: { list: null, at: 0, failed: false, expanded: new Set(), focus: null, soon: null }, // GET /api/orders
  careChoices: null, // the providers' names for the orders and lives
  careForm: null, // the order / installation / consent form open
  dev: { account: null, data: null, at: 0, failed: false, back: null },
  reg: newRegState(), // the Registers page and a subscriber's page
  outbox: null,
  outboxAt: 0,
  outboxFailed: false,
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

/** Appends the nodes and strings that are not null (DOM `append` would write "null"). */
function appendAll(node, ...children) {
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
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

/** The centre's time HH:MM:SS, with the date in front when not today (in the centre's zone). */
function fmtTime(ts) {
  const t = parseTs(ts);
  if (!Number.isFinite(t)) return '?';
  const p = zoneParts(t);
  if (p.date === zoneParts(serverNow()).date) return p.hms;
  return `${p.date} ${p.hms}`;
}

/** Full date and time in the centre's zone, for tooltips. */
function fmtFull(ts) {
  const t = parseTs(ts);
  if (!Number.isFinite(t)) return String(ts);
  const p = zoneParts(t);
  return `${p.weekday} ${p.date} ${p.hms}`;
}

function priorityInfo(p) {
  const info = PRIORITIES[p];
  if (!info) return { label: t('priority.level', { level: p }), cls: 'p4' };
  return { label: tOr(`priority.${p}`, info.label), cls: info.cls };
}

function priorityBadge(p, extraClass) {
  const info = priorityInfo(p);
  return el('span', {
    class: `badge ${info.cls}${extraClass ? ' ' + extraClass : ''}`,
    text: info.label,
    title: t('priority.title', { level: p }),
  });
}

/** A value or a dash for empty. */
function orDash(v) {
  return v === undefined || v === null || String(v).trim() === '' ? '-' : String(v);
}

/** A tel: link (only digits, +, * and # go into the href). */
function telLink(phone, cls) {
  const p = String(phone || '').trim();
  if (!p) return el('span', { class: 'muted', text: t('card.no_phone') });
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

/** A care provider's or a municipality's staff: they read their own people's cards, open
 *  alarms (live, without taking them), work orders and reports, and take no part in the
 *  centre's work. */
function isTenant() {
  return !!S.me && (S.me.role === 'provider' || S.me.role === 'municipality');
}

function isAdmin() {
  return !!S.me && S.me.role === 'admin';
}

function isMine(call) {
  return !!call && !!S.me && call.state === 'claimed' && call.owner === S.me.username;
}

// ---- languages and the centre's time (every text through t(), every time through zoneParts)

/**
 * The message catalogue of the user's language (GET /assets/i18n/{sv,nb,en}.json: keys by
 * meaning, `{name}` placeholders, plural forms as `key.one` / `key.other`), English as the
 * fallback; the centre's time zone and language (from GET /api/session).
 */
const I18N = {
  lang: 'en',
  messages: {},
  fallback: {},
  cache: new Map(), // language -> catalogue
  tz: 'Europe/Stockholm',
  centre: 'sv',
  plural: null,
  formats: new Map(), // key -> Intl.DateTimeFormat in the centre's zone
  names: null, // Intl.DisplayNames of languages, in the user's language
};

/** Locales for numbers, dates and names of the console's languages. */
const LOCALES = { sv: 'sv-SE', nb: 'nb-NO', en: 'en-GB' };

/** Whether the catalogue has `key` (in the user's language or in English). */
function tHas(key) {
  return Object.prototype.hasOwnProperty.call(I18N.messages, key) ||
    Object.prototype.hasOwnProperty.call(I18N.fallback, key);
}

/**
 * The text of `key` in the user's language (English where that lacks it, the key itself
 * when neither has it), its `{name}` placeholders filled from `params`.
 */
function t(key, params) {
  let s = I18N.messages[key];
  if (typeof s !== 'string') s = I18N.fallback[key];
  if (typeof s !== 'string') return key;
  if (!params) return s;
  return s.replace(/\{(\w+)\}/g, (m, k) => (Object.prototype.hasOwnProperty.call(params, k) ? String(params[k]) : m));
}

/** The plural form of `key` for the count `n` (`{n}` is filled in with `n`). */
function tn(key, n, params) {
  const form = I18N.plural ? I18N.plural.select(n) : (n === 1 ? 'one' : 'other');
  return t(form === 'one' ? `${key}.one` : `${key}.other`, Object.assign({ n }, params));
}

/** `t(key)` if the catalogue has the key, else `fallback`. */
function tOr(key, fallback) {
  return tHas(key) ? t(key) : fallback;
}

async function fetchCatalogue(lang) {
  if (I18N.cache.has(lang)) return I18N.cache.get(lang);
  const res = await fetch(`/assets/i18n/${encodeURIComponent(lang)}.json`, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`catalogue ${lang}: ${res.status}`);
  const data = await res.json();
  I18N.cache.set(lang, data);
  return data;
}

/**
 * Puts the console in `lang` (sv, nb, en): loads its catalogue, sets `<html lang>`, and
 * translates the page's static text. A catalogue that cannot be loaded leaves English.
 */
async function useLanguage(lang) {
  const want = LOCALES[lang] ? lang : 'en';
  try {
    I18N.fallback = await fetchCatalogue('en');
    I18N.messages = want === 'en' ? I18N.fallback : await fetchCatalogue(want);
    I18N.lang = want;
  } catch (e) {
    I18N.messages = I18N.fallback || {};
    I18N.lang = 'en';
  }
  document.documentElement.lang = I18N.lang;
  I18N.plural = new Intl.PluralRules(LOCALES[I18N.lang]);
  I18N.formats.clear();
  I18N.names = null;
  translatePage(document);
  const pick = $('language-select');
  if (pick) pick.value = I18N.lang;
}

/**
 * The static text of the page in the user's language: `data-i18n` (the text),
 * `data-i18n-title`, `data-i18n-placeholder`, `data-i18n-aria-label`.
 */
function translatePage(root) {
  for (const n of root.querySelectorAll('[data-i18n]')) n.textContent = t(n.dataset.i18n);
  for (const n of root.querySelectorAll('[data-i18n-title]')) n.title = t(n.dataset.i18nTitle);
  for (const n of root.querySelectorAll('[data-i18n-placeholder]')) n.placeholder = t(n.dataset.i18nPlaceholder);
  for (const n of root.querySelectorAll('[data-i18n-aria-label]')) n.setAttribute('aria-label', t(n.dataset.i18nAriaLabel));
}

/** The centre's zone and language, from who is logged in. */
function useCentre(me) {
  const tz = String(me.time_zone || '');
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    I18N.tz = tz;
  } catch (e) {
    I18N.tz = 'UTC';
  }
  I18N.centre = String(me.centre_language || 'sv');
  I18N.formats.clear();
}

/** A cached Intl.DateTimeFormat in the centre's zone. */
function zoneFormat(key, opts) {
  let f = I18N.formats.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(LOCALES[I18N.lang] || 'en-GB', Object.assign({ timeZone: I18N.tz }, opts));
    I18N.formats.set(key, f);
  }
  return f;
}

/**
 * The calendar and clock of the instant `ms` in the centre's time zone (whatever the
 * browser's): {date: 'YYYY-MM-DD', ym: 'YYYY-MM', hm: 'HH:MM', hms: 'HH:MM:SS', weekday}.
 * Every time the console shows goes through here.
 */
function zoneParts(ms) {
  const p = {};
  for (const x of zoneFormat('parts', {
    year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  }).formatToParts(new Date(ms))) p[x.type] = x.value;
  const date = `${p.year}-${p.month}-${p.day}`;
  const hm = `${p.hour}:${p.minute}`;
  return {
    date, ym: `${p.year}-${p.month}`, hm, hms: `${hm}:${p.second}`,
    weekday: zoneFormat('weekday', { weekday: 'short' }).format(new Date(ms)),
  };
}

/** The name of a person's language (`bs` -> "bosniska"), in the user's language. */
function languageName(code) {
  const c = String(code || '').trim();
  if (!c) return '';
  try {
    if (!I18N.names) I18N.names = new Intl.DisplayNames([LOCALES[I18N.lang] || 'en-GB'], { type: 'language' });
    return I18N.names.of(c) || c;
  } catch (e) {
    return c;
  }
}

/** Whether a person who speaks `code` needs an interpreter at this centre. */
function needsInterpreter(code) {
  const norwegian = (x) => (x === 'no' || x === 'nn' ? 'nb' : x);
  const base = norwegian(String(code || '').trim().toLowerCase().split(/[-_]/)[0]);
  return !!base && base !== norwegian(I18N.centre);
}

/** A person's language by name, with the interpreter cue when it is not the centre's. */
function languageNode(code) {
  if (!String(code || '').trim()) return el('strong', { text: '-' });
  return el('span', { class: 'person-language' },
    el('strong', { text: languageName(code), title: String(code) }),
    needsInterpreter(code) ? el('span', { class: 'tag tag-interpreter', title: t('person.interpreter_title', { language: languageName(code) }), text: t('person.interpreter') }) : null);
}

/** Triage's kind of alarm ("Fall") in words of the user's language. */
function kindWords(kind) {
  if (!kind) return '-';
  const slug = String(kind).toLowerCase().replace(/[^a-z0-9]/g, '_').replace(/^_+|_+$/g, '');
  return tOr(`kind.${slug}`, String(kind));
}

/**
 * An event code in words of the user's language: "CID 101", "SIA MA", "SCAIP 0005/0016"
 * (device type and status); else the server's English `name`, else the code.
 */
function codeWords(code, name) {
  const c = String(code || '');
  let m = /^CID (\d{1,3})$/.exec(c);
  if (m && tHas(`cid.${Number(m[1])}`)) return t(`cid.${Number(m[1])}`);
  m = /^SIA ([A-Z]{2})$/.exec(c);
  if (m && tHas(`sia.${m[1]}`)) return t(`sia.${m[1]}`);
  m = /^SCAIP (\d{4,5})(?:\/(\d{4,5}))?$/.exec(c);
  if (m) {
    const dty = Number(m[1]);
    const dev = (dty >= 900 && dty <= 999) ? 'scaip.device.900' : `scaip.device.${dty}`;
    const st = m[2] === undefined ? null : `scaip.status.${Number(m[2])}`;
    if (tHas(dev) && st && tHas(st)) return t('scaip.device_status', { device: t(dev), status: t(st) });
    if (tHas(dev) && (st || dty > 1)) return t(dev);
  }
  return name ? String(name) : c;
}

/** A device type (`fall_detector`) in words. */
function deviceTypeWords(type) {
  return type ? tOr(`device.${type}`, String(type)) : '-';
}

/** A role in words. */
function roleWords(role) {
  return tOr(`role.${role}`, String(role || ''));
}

/** An audit action (`call.claim`) in words. */
function auditWords(action) {
  return tOr(`audit.${action}`, String(action || '-'));
}

/** Changes the user's own language: stored on the server, then the page's texts again. */
async function changeLanguage(lang) {
  try {
    const { data } = await api('PUT', '/api/me/language', { language: lang });
    await useLanguage(data.language);
    rerenderTexts();
  } catch (e) {
    reportError(t('lang.change_failed'), e);
    const pick = $('language-select');
    if (pick) pick.value = I18N.lang;
  }
}

/** Draws again what is on screen, in the new language, keeping the state (queue, Call, page). */
function rerenderTexts() {
  if (!S.me) return;
  renderWho();
  renderQueue();
  renderStats();
  renderAlerts();
  renderIncidentBanner();
  renderSupervision();
  if (S.view === 'call' && S.currentId !== null) {
    if (S.subscriber) renderSubscriber(S.subscriber);
    refreshCall();
  }
  else if (S.view === 'audit') renderAudit();
  else if (S.view === 'users') renderUsers();
  else if (S.view === 'patrols') renderBoard();
  else if (S.view === 'registers') { renderRegKind(); renderRegisters(); }
  else if (S.view === 'subscriber' && S.reg.card) renderRegCard(S.reg.card);
  else if (S.view === 'directory') renderDirectory();
  else if (S.view === 'report' && S.report) renderReport(S.report);
  else reloadPage();
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
    throw new ApiError(0, t('api.unreachable'), null);
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
    showLogin(t('login.session_ended'));
  }
  if (!res.ok) {
    const reason = errorWords(data) || (data && data.error) || raw.trim().slice(0, 200) || res.statusText || 'error';
    throw new ApiError(res.status, reason, data);
  }
  return { status: res.status, data, headers: res.headers };
}

/**
 * A refusal in the user's language: the catalogue's `error.{code}` with the answer's `params`
 * (a kind of alarm and a role in words); null when the answer has no code the catalogue knows,
 * so that the server's English `error` is shown.
 */
function errorWords(data) {
  const code = data && typeof data.code === 'string' ? data.code : '';
  if (!code || !tHas(`error.${code}`)) return null;
  const params = {};
  for (const [k, v] of Object.entries((data && data.params) || {})) {
    if (k === 'kind') params[k] = kindWords(v);
    else if (k === 'key_kind') params[k] = keyKindWords(v).toLocaleLowerCase(LOCALES[I18N.lang] || 'en');
    else if (k === 'role') params[k] = roleWords(v).toLocaleLowerCase(LOCALES[I18N.lang] || 'en');
    else params[k] = String(v);
  }
  return t(`error.${code}`, params);
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
  // The page's language (the centre's) loads while the server is asked who we are.
  const pageLanguage = I18N.cache.has(document.documentElement.lang) ? null : useLanguage(document.documentElement.lang);
  try {
    const { data } = await api('GET', '/api/session');
    await pageLanguage;
    useCentre(data);
    await useLanguage(data.language);
    startApp(data);
  } catch (e) {
    await pageLanguage;
    if (e instanceof ApiError && e.status === 401) {
      showLogin('');
    } else {
      // Without the server there may be no catalogue either.
      showLogin(t('login.unreachable'));
      S.bootTimer = setTimeout(boot, 5000);
    }
  }
}

/** Shows the login form and forgets everything on screen (personal data must not linger). */
function showLogin(reason) {
  const wasLoggedIn = S.view !== 'login';
  S.me = null;
  show($('session-banner'), false);
  S.staffing = null;
  S.staffingDetail = null;
  renderStaffing();
  show($('my-calls'), false);
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
  S.users = [];
  S.firstSnapshot = true;
  S.firstLiveDispatches = true;
  clear($('queue-body'));
  clear($('timeline'));
  clear($('subscriber-card'));
  clear($('audit-body'));
  clear($('users-body'));
  clear($('dispatch-list'));
  clear($('patrols-board'));
  clear($('directory-content'));
  clear($('report-content'));
  S.known.clear();
  S.alerts.clear();
  S.dismissed.clear();
  S.patrolPhones.clear();
  S.phonesLoaded = false;
  S.board = null;
  S.directory = null;
  S.report = null;
  S.cancelFor = null;
  stopBoardPolling();
  closeDispatchDialog();
  renderAlerts();
  clearInterval(S.pageTimer);
  clearInterval(S.supervisionTimer);
  clearTimeout(S.supervisionSoon);
  clearTimeout(S.incidentRender);
  S.pageTimer = null;
  S.supervisionTimer = null;
  S.supervisionSoon = null;
  S.incidentRender = null;
  S.incidents.clear();
  S.incidentFlash.clear();
  S.incidentLiveAt.clear();
  S.incidentsFirst = true;
  S.incidentsFailed = false;
  S.incidentList = null;
  S.incidentListAt = 0;
  S.incidentId = null;
  S.incidentAt = 0;
  S.supervision = null;
  S.supervisionAt = 0;
  S.supervisionFailed = false;
  S.supervisionMissing = false;
  S.wo = { list: null, at: 0, failed: false, expanded: new Set(), focus: null, replacedFrom: null };
  S.dev = { account: null, data: null, at: 0, failed: false, back: null };
  clearTimeout(S.reg.timer);
  S.reg = newRegState();
  $('reg-q').value = '';
  clear($('reg-body'));
  clear($('reg-card'));
  S.outbox = null;
  S.outboxAt = 0;
  for (const id of ['incidents-content', 'incident-content', 'workorders-list', 'device-content', 'outbox-content']) clear($(id));
  $('fault-note').value = '';
  renderIncidentBanner();
  $('note-text').value = '';
  $('phone-note').value = '';
  $('close-note').value = '';
  $('close-outcome').value = '';
  closeEditor();
  show($('help'), false);
  for (const id of [...VIEWS.map((v) => `${v}-view`), 'stats', 'whoami', 'logout', 'tabs',
    'help-button', 'connection-status', 'conn-banner', 'queue-count', 'supervision-badges', 'language-select']) {
    show($(id), false);
  }
  show($('login-view'), true);
  document.title = t('login.title');
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
    err.textContent = t('login.enter_both');
    show(err, true);
    return;
  }
  clearTimeout(S.bootTimer);
  $('login-submit').disabled = true;
  try {
    const { data } = await api('POST', '/api/session', { username, password });
    $('login-password').value = '';
    show(err, false);
    useCentre(data);
    await useLanguage(data.language);
    startApp(data);
  } catch (e) {
    let text;
    if (e.status === 401) text = t('login.wrong');
    else if (e.status === 429) text = t('login.throttled');
    else if (e.status === 403) text = t('login.cross_site');
    else if (e.status === 0) text = e.message;
    else text = t('login.failed', { reason: e.message });
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
    await api('POST', '/api/logout', {});
  } catch (e) {
    // Owned Calls: say what becomes of them first (the session goes on meanwhile).
    if (e instanceof ApiError && e.status === 409 && e.body && Array.isArray(e.body.calls)) {
      openLogoutDialog(e.body.calls);
      return;
    }
    // Logged out either way: the screen goes back to the login form.
  }
  showLogin('');
  message(t('login.logged_out'), 'info');
}

/** The header's user: name and role in words. */
function renderWho() {
  const who = $('whoami');
  clear(who);
  who.append(el('span', { class: 'who-name', text: S.me.username }),
    el('span', { class: 'who-role', text: roleWords(S.me.role) }));
}

// ---- Handover: the Calls one owns at logout, "my calls", supervisors' take over and reassign

/** Minutes before the session ends from which an operator who owns calls is warned. */
const SESSION_WARN_MINS = 10;

/** Why vakt put a call back in the queue, in words. */
const RETURN_REASONS = {
  session_ended: (who) => t('handover.returned.session_ended', { who }),
  disabled: (who) => t('handover.returned.disabled', { who }),
  removed: (who) => t('handover.returned.removed', { who }),
};

/** The open calls I own, most urgent first. */
function myCalls() {
  return sortedCalls().filter((c) => isMine(c));
}

/** Fills `select` with the logged-in operators other than me (and me first with `withMe`). */
async function fillOperators(select, withMe) {
  clear(select);
  select.append(el('option', { value: '', text: t('call.loading'), disabled: true, selected: true }));
  let online = [];
  try {
    const { data } = await api('GET', '/api/operators/online');
    online = Array.isArray(data) ? data : [];
  } catch (e) {
    reportError(t('handover.operators_failed'), e);
  }
  clear(select);
  const others = online.filter((o) => S.me && o.username !== S.me.username);
  if (withMe && S.me) select.append(el('option', { value: S.me.username, text: t('handover.myself') }));
  else select.append(el('option', { value: '', text: others.length ? t('handover.choose_operator') : t('handover.nobody_online'), disabled: true, selected: true }));
  for (const o of others) {
    const text = o.owned
      ? t('handover.operator_owns', { user: o.username, role: roleWords(o.role), n: o.owned })
      : t('handover.operator', { user: o.username, role: roleWords(o.role) });
    select.append(el('option', { value: o.username, text }));
  }
}

function callLine(c) {
  return el('li', { dataset: { callId: String(c.id) } }, priorityBadge(c.priority, 'small'), ' ',
    el('span', { class: 'mono', text: `#${c.id}` }), ' ', subscriberLabel(c), ' · ',
    el('span', { text: kindWords(c.kind) }));
}

/** The logout dialog: the calls I own, release them or hand them over with a note. */
function openLogoutDialog(calls) {
  const list = $('logout-calls');
  clear(list);
  for (const c of calls) list.append(callLine(c));
  $('logout-dialog-title').textContent = tn('handover.you_own', calls.length);
  $('logout-release').checked = true;
  $('logout-note').value = '';
  show($('logout-error'), false);
  fillOperators($('logout-to'), false);
  show($('logout-dialog'), true);
  $('logout-release').focus();
}

function closeLogoutDialog() {
  show($('logout-dialog'), false);
}

function formError(id, text) {
  const p = $(id);
  p.textContent = text;
  show(p, !!text);
}

async function submitLogout(e) {
  e.preventDefault();
  const handOver = $('logout-hand-over').checked;
  const to = $('logout-to').value;
  const note = $('logout-note').value.trim();
  if (handOver && !to) {
    formError('logout-error', t('handover.choose_who_takes_them'));
    $('logout-to').focus();
    return;
  }
  if (handOver && !note) {
    formError('logout-error', t('handover.write_note'));
    $('logout-note').focus();
    return;
  }
  const body = handOver ? { calls: 'hand_over', to, note } : { calls: 'release' };
  $('logout-submit').disabled = true;
  try {
    await api('POST', '/api/logout', body);
    closeLogoutDialog();
    showLogin('');
    message(handOver ? t('handover.logged_out_to', { to }) : t('handover.logged_out_released'), 'info');
  } catch (ex) {
    if (ex instanceof ApiError && ex.status === 401) {
      closeLogoutDialog();
      return;
    }
    formError('logout-error', ex.message);
    if (ex.body && Array.isArray(ex.body.calls)) {
      clear($('logout-calls'));
      for (const c of ex.body.calls) $('logout-calls').append(callLine(c));
    }
    if (handOver) fillOperators($('logout-to'), false);
  } finally {
    $('logout-submit').disabled = false;
  }
}

/** "My calls" above the queue: the calls I own, kept current by the live feed. */
function renderMyCalls() {
  const box = $('my-calls');
  if (!S.me) {
    show(box, false);
    return;
  }
  const mine = myCalls();
  show(box, mine.length > 0);
  $('my-calls-count').textContent = `(${mine.length})`;
  const list = $('my-calls-list');
  clear(list);
  for (const c of mine) {
    const li = callLine(c);
    li.classList.add('my-call');
    li.tabIndex = 0;
    li.addEventListener('click', () => openCall(c.id));
    li.addEventListener('keydown', (e) => { if (e.key === 'Enter') openCall(c.id); });
    list.append(li);
  }
}

/** J: opens the next of my calls after the one shown (round). */
function jumpToMyCall() {
  const mine = myCalls();
  if (mine.length === 0) {
    message(t('handover.own_none'), 'info');
    return;
  }
  const i = mine.findIndex((c) => c.id === S.currentId);
  openCall(mine[(i + 1) % mine.length].id);
}

/** A banner while the session is about to end and I own calls (they would go back). */
function renderSessionWarning() {
  const banner = $('session-banner');
  const ends = S.me && S.me.expiresAt ? parseTs(S.me.expiresAt) : NaN;
  const n = S.me ? myCalls().length : 0;
  const left = (ends - serverNow()) / 1000;
  const warn = Number.isFinite(ends) && n > 0 && left <= SESSION_WARN_MINS * 60;
  show(banner, warn);
  if (warn) {
    banner.textContent = tn('handover.session_ends', n, { time: fmtTime(S.me.expiresAt), left: fmtDuration(left) });
  }
}

/** Supervisors: take over or reassign a call another operator owns (queue row, call view). */
function superviseButtons(c) {
  if (!isSupervisor() || c.state !== 'claimed' || isMine(c)) return null;
  return el('span', { class: 'supervise-actions' },
    el('button', { type: 'button', class: 'take-over secondary', text: t('handover.take_over'), on: { click: (e) => { e.stopPropagation(); takeOver(c.id); } } }),
    el('button', { type: 'button', class: 'reassign secondary', text: t('handover.reassign_more'), on: { click: (e) => { e.stopPropagation(); openReassignDialog(c.id); } } }));
}

function renderSuperviseOwnership(c) {
  show($('call-supervise'), !!superviseButtons(c));
}

async function reassignCall(id, to, note) {
  const { data } = await api('POST', `/api/calls/${encodeURIComponent(id)}/reassign`, { to, note });
  if (data && data.id === S.currentId) setCurrent(data);
  return data;
}

async function takeOver(id) {
  if (!S.me) return;
  try {
    const data = await reassignCall(id, S.me.username, '');
    openCall(id, data);
    message(t('handover.took_over', { id }), 'ok');
  } catch (e) {
    reportError(t('handover.take_over_failed', { id }), e);
  }
}

function openReassignDialog(id) {
  S.reassignId = id;
  $('reassign-call').textContent = t('handover.call_n', { id });
  $('reassign-note').value = '';
  formError('reassign-error', '');
  fillOperators($('reassign-to'), true);
  show($('reassign-dialog'), true);
  $('reassign-to').focus();
}

function closeReassignDialog() {
  show($('reassign-dialog'), false);
  S.reassignId = null;
}

async function submitReassign(e) {
  e.preventDefault();
  const id = S.reassignId;
  const to = $('reassign-to').value;
  if (id === null || id === undefined || !to) {
    formError('reassign-error', t('handover.choose_who_takes_call'));
    return;
  }
  $('reassign-submit').disabled = true;
  try {
    await reassignCall(id, to, $('reassign-note').value.trim());
    closeReassignDialog();
    message(S.me && to === S.me.username ? t('handover.took_over', { id }) : t('handover.call_went_to', { id, to }), 'ok');
    if (S.currentId === id) refreshCall();
  } catch (ex) {
    formError('reassign-error', ex.message);
  } finally {
    $('reassign-submit').disabled = false;
  }
}

/** While a handover dialog is open it takes the keys: Esc closes it. True if it took this one. */
function handoverDialogKey(e) {
  const open = !$('logout-dialog').hidden ? closeLogoutDialog : (!$('reassign-dialog').hidden ? closeReassignDialog : null);
  if (!open) return false;
  if (e.key === 'Escape') {
    e.preventDefault();
    open();
  }
  return true;
}

function wireHandover() {
  $('logout-form').addEventListener('submit', submitLogout);
  $('logout-cancel').addEventListener('click', closeLogoutDialog);
  $('logout-to').addEventListener('change', () => { $('logout-hand-over').checked = true; });
  $('logout-note').addEventListener('input', () => {
    $('logout-hand-over').checked = true;
    formError('logout-error', '');
  });
  $('reassign-form').addEventListener('submit', submitReassign);
  $('reassign-cancel').addEventListener('click', closeReassignDialog);
  $('call-take-over').addEventListener('click', () => { if (S.currentId !== null) takeOver(S.currentId); });
  $('call-reassign').addEventListener('click', () => { if (S.currentId !== null) openReassignDialog(S.currentId); });
}

/** Shows the app for a logged-in user. */
function startApp(me) {
  S.me = { username: String(me.username || ''), role: String(me.role || 'operator') };
  const al = me.alerting || {};
  S.alerting = {
    ringMaxLevel: Number.isInteger(al.ring_max_level) ? al.ring_max_level : 2,
    ringRepeatMs: 1000 * (Number.isInteger(al.ring_repeat_secs) ? al.ring_repeat_secs : 10),
  };
  S.me.expiresAt = me.expires_at || null;
  show($('login-view'), false);
  show($('message'), false); // e.g. "Logged out." of the previous user
  renderWho();
  for (const id of ['stats', 'whoami', 'logout', 'help-button', 'connection-status', 'queue-count', 'tabs', 'language-select']) {
    show($(id), true);
  }
  // A tenant's console takes no Calls and has no shortcuts: no "take next", no key hints.
  document.body.classList.toggle('tenant', isTenant());
  show($('audit-link'), isSupervisor());
  show($('tab-directory'), isSupervisor());
  show($('tab-report'), isSupervisor() || isTenant());
  show($('tab-orders'), isSupervisor());
  show($('tab-billing'), isSupervisor());
  show($('tab-statistics'), isSupervisor() || isTenant());
  show($('tab-outbox'), isSupervisor());
  show($('tab-reviews'), isSupervisor());
  show($('tab-users'), isAdmin());
  for (const id of ['tab-patrols', 'tab-incidents']) show($(id), !isTenant());
  if (isTenant()) {
    // Their people's register, open alarms, work orders and reports; not the centre's
    // figures, patrols or incidents.
    for (const id of ['stats', 'tab-patrols', 'tab-incidents']) show($(id), false);
    show($('tab-billing'), true);
    const ts = $('connection-status');
    ts.dataset.state = 'closed';
    ts.textContent = t('conn.connecting');
    showRegisters();
    connectLive();
    renderSoundState();
    return;
  }
  const st = $('connection-status');
  st.dataset.state = 'closed';
  st.textContent = t('conn.connecting');
  showQueue();
  renderQueue();
  renderStats();
  loadStats();
  loadLiveDispatches();
  loadOpenIncidents();
  loadSupervision();
  clearInterval(S.supervisionTimer);
  S.supervisionTimer = setInterval(() => { if (S.me) loadSupervision(); }, SUPERVISION_POLL_MS);
  connectLive();
  renderSoundState();
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
      showLogin(t('login.session_ended'));
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
  st.textContent = open ? t('conn.live') : t('conn.reconnecting');
  st.title = open ? t('conn.live_title') : t('conn.stale_title');
  show($('conn-banner'), !open && !!S.me);
  document.body.classList.toggle('stale', !open);
}

function onLiveMessage(msg) {
  switch (msg.type) {
    case 'snapshot':
      S.wsAttempts = 0; // backoff resets only once the feed really works
      applySnapshot(msg.calls || []);
      applyVoiceSnapshot(msg.voice || []);
      if (msg.stats) setStats(msg.stats);
      setConnection(true);
      // Dispatch and incident messages may have been missed while the feed was down (a
      // tenant's feed carries neither).
      if (!S.firstLiveDispatches && !isTenant()) {
        loadLiveDispatches();
        loadOpenIncidents();
        loadSupervision();
        reloadPage();
      }
      S.firstLiveDispatches = false;
      if (S.view === 'patrols') loadBoard();
      break;
    case 'incident':
      if (msg.incident) onIncidentMessage(msg.incident);
      break;
    case 'dispatch':
      if (msg.dispatch) onDispatchMessage(msg.dispatch, msg.step);
      break;
    case 'call':
      if (msg.call) applyCall(msg.call);
      break;
    case 'closed':
      applyClosed(msg.id);
      break;
    case 'voice':
      if (msg.conversation) applyVoice(msg.conversation);
      break;
    case 'voice_ended':
      applyVoiceEnded(msg.id);
      break;
    case 'subscriber':
      onSubscriberChanged(msg.id === undefined ? null : msg.id);
      // An order or a life changed with it: the orders page and its count.
      if (isSupervisor()) {
        scheduleOrdersReload();
        scheduleSupervision();
      }
      break;
    case 'stats':
      if (msg.stats) setStats(msg.stats);
      break;
    case 'staffing':
      if (msg.staffing) setStaffing(msg.staffing);
      break;
    default:
      break;
  }
}

// ---- voice calls

function applyVoiceSnapshot(list) {
  S.voice = new Map(list.map((v) => [v.id, v]));
  renderQueue();
  renderVoice();
}

function applyVoice(v) {
  const before = S.voice.get(v.id);
  S.voice.set(v.id, v);
  // A person calling in: the operators hear it like an alarm the first time it rings.
  if (!before && v.state === 'ringing' && v.direction === 'inbound') beep(1);
  renderQueue();
  renderVoice();
}

function applyVoiceEnded(id) {
  S.voice.delete(id);
  S.voiceEnded.add(id);
  if (S.voiceEnded.size > 50) S.voiceEnded.delete(S.voiceEnded.values().next().value);
  endPhone(id);
  renderQueue();
  renderVoice();
  if (S.currentId !== null && S.view === 'call') refreshCall();
}

/** The voice calls of Call `id`, oldest first. */
function voiceOf(id) {
  return [...S.voice.values()].filter((v) => v.call === id).sort((a, b) => a.id - b.id);
}

/** The queue's mark for a Call with a voice call: ringing (and for how long) or talking. */
function voiceBadge(c) {
  const vs = voiceOf(c.id);
  const ringing = vs.find((v) => v.state === 'ringing' && v.direction === 'inbound');
  if (vs.some((v) => v.state === 'ringing' && v.direction === 'outbound') && !ringing) {
    return el('span', { class: 'tag tag-voice', title: t('voice.badge.calling_title'), text: t('voice.badge.calling') });
  }
  if (ringing) {
    return el('span', { class: 'tag tag-voice-ringing', title: t('voice.badge.ringing_title', { party: ringing.party }), dataset: { rang: ringing.rang_at }, text: t('voice.badge.ringing', { duration: fmtDuration(ageSecs(ringing.rang_at)) }) });
  }
  if (vs.length) return el('span', { class: 'tag tag-voice', title: t('voice.on_line', { party: vs[0].party }), text: t('voice.badge.on_line') });
  return null;
}

/** The Call view's voice strip: each voice call going on, with its controls. */
function renderVoice() {
  const strip = $('call-voice');
  if (!strip) return;
  clear(strip);
  const vs = S.currentId === null ? [] : voiceOf(S.currentId);
  show(strip, vs.length > 0);
  for (const v of vs) {
    const ringing = v.state === 'ringing';
    const out = v.direction === 'outbound';
    const mine = S.phone && S.phone.id === v.id;
    const by = v.operator && !mine;
    const what = ringing
      ? (out ? (by ? t('voice.calling_by', { party: v.party, operator: v.operator }) : t('voice.calling', { party: v.party })) : t('voice.ringing_from', { party: v.party }))
      : (by ? t('voice.on_line_by', { party: v.party, operator: v.operator }) : t('voice.on_line', { party: v.party }));
    const since = ringing ? v.rang_at : v.answered_at;
    const line = el('div', { class: `voice-line voice-${v.state}${mine ? ' voice-mine' : ''}`, dataset: { conversation: String(v.id) } },
      el('span', { class: 'voice-what', text: what }), ' ',
      el('span', { class: 'voice-since muted', dataset: { since }, text: fmtDuration(ageSecs(since)) }), ' ');
    const buttons = el('span', { class: 'voice-buttons' });
    if (ringing && !out) {
      const answer = el('button', { type: 'button', class: 'voice-answer', title: t('voice.answer_title'), text: t('voice.answer'), on: { click: () => answerVoice(v, answer) } });
      buttons.append(answer);
    }
    if (mine && !ringing) {
      const p = S.phone;
      buttons.append(
        el('button', { type: 'button', class: 'secondary voice-mute', title: t('voice.mute_title'), text: p.muted ? t('voice.unmute') : t('voice.mute'), on: { click: () => toggleVoice('mute') } }),
        el('button', { type: 'button', class: 'secondary voice-hold', title: t('voice.hold_title'), text: p.held ? t('voice.resume') : t('voice.hold'), on: { click: () => toggleVoice('hold') } }));
      for (const [key, label] of DTMF_COMMANDS) {
        buttons.append(el('button', { type: 'button', class: 'secondary voice-dtmf', title: t('voice.dtmf_title', { key }), text: label(), on: { click: () => sendDtmf(v.id, key) } }));
      }
    }
    const hang = el('button', { type: 'button', class: 'secondary voice-hangup', title: t('voice.hang_up_title'), text: ringing ? (out ? t('voice.cancel') : t('voice.refuse')) : t('voice.hang_up'), on: { click: () => hangUpVoice(v.id, hang) } });
    buttons.append(hang);
    line.append(buttons);
    strip.append(line);
  }
}

/** The SCAIP DTMF commands an operator sends (protocols.md §3.7): key and its label. */
const DTMF_COMMANDS = [['0', () => t('voice.dtmf.clear_down')], ['1', () => t('voice.dtmf.volume_down')],
  ['3', () => t('voice.dtmf.volume_up')], ['4', () => t('voice.dtmf.duplex')]];

/** Waits until the peer connection has gathered its host candidates (at most `ms`). */
function iceGathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    pc.addEventListener('icegatheringstatechange', check);
    setTimeout(done, ms);
  });
}

/**
 * The operator's headset: the microphone and a peer connection with its offer made (vakt ends
 * the peer connection itself; the answer comes from the API).
 */
async function openHeadset() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const pc = new RTCPeerConnection();
  try {
    for (const t of stream.getAudioTracks()) pc.addTrack(t, stream);
    pc.addEventListener('track', (ev) => {
      const audio = $('voice-audio');
      audio.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      audio.play().catch(() => {});
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'failed' && S.phone && S.phone.pc === pc) {
        message(t('voice.audio_lost'), 'error');
      }
    });
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, 2000);
  } catch (e) {
    pc.close();
    for (const t of stream.getTracks()) t.stop();
    throw e;
  }
  return { pc, stream };
}

/** Answers voice call `v` with the operator's headset: vakt ends the peer connection itself. */
async function answerVoice(v, button) {
  if (S.phone) {
    message(t('voice.hang_up_first'), 'warn');
    return;
  }
  button.disabled = true;
  let pc = null;
  let stream = null;
  try {
    ({ pc, stream } = await openHeadset());
    const { data } = await api('POST', `/api/voice/${v.id}/answer`, { sdp: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
    S.phone = { id: v.id, pc, stream, muted: false, held: false };
    renderVoice();
  } catch (e) {
    if (pc) pc.close();
    if (stream) for (const t of stream.getTracks()) t.stop();
    reportError(t('voice.answering'), e);
    button.disabled = false;
  }
}

/** The headset is put down: the peer connection and the microphone are released. */
function endPhone(id) {
  const p = S.phone;
  if (!p || (id !== undefined && p.id !== id)) return;
  S.phone = null;
  p.pc.close();
  for (const t of p.stream.getTracks()) t.stop();
  const audio = $('voice-audio');
  if (audio) audio.srcObject = null;
}

async function toggleVoice(what) {
  const p = S.phone;
  if (!p) return;
  const on = what === 'mute' ? !p.muted : !p.held;
  try {
    await api('POST', `/api/voice/${p.id}/${what}`, { on });
    if (what === 'mute') p.muted = on;
    else p.held = on;
    renderVoice();
  } catch (e) {
    reportError(what === 'mute' ? t('voice.muting') : t('voice.holding'), e);
  }
}

async function sendDtmf(id, key) {
  try {
    await api('POST', `/api/voice/${id}/dtmf`, { key });
  } catch (e) {
    reportError(t('voice.sending_command'), e);
  }
}

/**
 * Hangs up (or refuses) voice call `id`: vakt is told first, so it ends the call as this
 * operator's hang-up; the headset is put down after. Closing the peer connection first would
 * end the call from vakt's side before the request arrived, and the request would find no call.
 */
async function hangUpVoice(id, button) {
  if (button) button.disabled = true;
  try {
    await api('POST', `/api/voice/${id}/hangup`);
  } catch (e) {
    // The call ended meanwhile (the person hung up): nothing is left to hang up.
    if (!(e instanceof ApiError && e.status === 404)) {
      reportError(t('voice.hanging_up'), e);
      if (button) button.disabled = false;
    }
  } finally {
    endPhone(id);
  }
}

// ---- calls out

/** Whom the operator may call from the Call in view: loaded once per Call and holder (audited). */
async function loadDialTargets(call) {
  const key = isMine(call) ? `${call.id}:${call.owner}` : null;
  if (!key) {
    S.dial = null;
    renderDial();
    return;
  }
  if (S.dial && S.dial.key === key) {
    renderDial();
    return;
  }
  S.dial = { key, call: call.id, trunk: false, targets: [] };
  try {
    const { data } = await api('GET', `/api/calls/${call.id}/dial`);
    if (S.dial && S.dial.key === key) Object.assign(S.dial, data);
  } catch (e) {
    // Voice off (404) or the Call changed hands meanwhile: nothing to offer.
    if (S.dial && S.dial.key === key) S.dial.targets = [];
  }
  renderDial();
}

/** The key of each way to call out: B calls the unit back, 1-9 the phones in order. */
function dialKeys(targets) {
  let n = 0;
  return targets.map((d) => (d.target === 'unit' ? 'B' : (++n <= 9 ? String(n) : null)));
}

function renderDial() {
  const panel = $('dial-panel');
  if (!panel) return;
  const list = $('dial-list');
  clear(list);
  const d = S.dial;
  const visible = !!d && d.call === S.currentId && (d.targets.length > 0 || !d.trunk);
  show(panel, visible && !!S.current && isMine(S.current));
  if (!visible) return;
  const keys = dialKeys(d.targets);
  d.targets.forEach((target, i) => {
    const key = keys[i];
    const unit = target.target === 'unit';
    const label = unit ? t('dial.unit') : t('dial.call', { label: target.label });
    const b = el('button', { type: 'button', class: unit ? 'dial-unit' : 'secondary dial-phone', title: `${label}${key ? ` (${key})` : ''}`, on: { click: () => dialOut(target, b) } },
      label, key ? ' ' : null, key ? el('kbd', { text: key }) : null);
    const why = unit
      ? (target.auto_answer_until ? t('dial.unit_answers_until', { time: fmtTime(target.auto_answer_until) }) : t('dial.unit_rings'))
      : target.number;
    list.append(el('li', { class: 'dial-target' }, b, ' ', el('span', { class: 'muted dial-why', text: why })));
  });
  if (!d.trunk) list.append(el('li', { class: 'muted dial-no-trunk', text: t('dial.no_trunk') }));
}

/** Calls `t` from the Call in view with the operator's headset; the browser hears ringing. */
async function dialOut(target, button) {
  if (S.phone) {
    message(t('voice.hang_up_first'), 'warn');
    return;
  }
  if (button) button.disabled = true;
  let pc = null;
  let stream = null;
  try {
    ({ pc, stream } = await openHeadset());
    const { data } = await api('POST', '/api/voice/dial', { call: S.currentId, target: target.target, offer: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
    S.phone = { id: data.conversation, pc, stream, muted: false, held: false };
    if (target.target === 'unit') {
      message(data.auto_answer_until
        ? t('dial.calling_unit_answers', { time: fmtTime(data.auto_answer_until) })
        : t('dial.calling_unit_rings'), 'info');
    }
    // A call out refused at once may have ended before the answer came back.
    if (S.voiceEnded.has(data.conversation)) endPhone(data.conversation);
    renderVoice();
  } catch (e) {
    if (pc) pc.close();
    if (stream) for (const tr of stream.getTracks()) tr.stop();
    reportError(t('dial.calling'), e);
  } finally {
    if (button) button.disabled = false;
  }
}

/** B, 1-9 in the Call view: call out (on your call). */
function dialKey(e) {
  const d = S.dial;
  if (!d || d.call !== S.currentId || !isMine(S.current)) return false;
  const keys = dialKeys(d.targets);
  const i = keys.indexOf(e.key.toUpperCase());
  if (i < 0) return false;
  e.preventDefault();
  const b = $('dial-list').querySelectorAll('button')[i];
  dialOut(d.targets[i], b || null);
  return true;
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
  // A receipt alert says whether its Call is back in the queue.
  if (!prev && S.alerts.size) renderAlerts();
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
  if (isTenant()) return false;
  if (c.priority > Math.max(1, ringMaxLevel())) return false;
  if (!prev) return c.state === 'queued' || !isMine(c);
  return c.priority < prev.priority && c.state === 'queued';
}

function pickMoreUrgent(a, b) {
  return !a || b.priority < a.priority ? b : a;
}

function raiseAlert(c) {
  S.flashUntil.set(c.id, Date.now() + FLASH_MS);
  ringNow(c.priority);
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
      S.audio.addEventListener('statechange', renderSoundState);
    }
    if (S.audio.state === 'suspended') S.audio.resume().then(renderSoundState, () => {});
  } catch (e) {
    // No audio: the flash still shows, and the banner says the sound is off.
  }
}

/**
 * "Sound is off": a browser plays nothing before the user's first click or key on the page
 * (after a reload, a restart of the machine), and an alarm nobody hears is an alarm missed.
 * The banner stays on every page until the sound plays.
 */
function renderSoundState() {
  const ctx = S.audio;
  const off = !!S.me && (!ctx || ctx.state !== 'running');
  const node = $('sound-off');
  if (!node) return;
  const Ctx = window.AudioContext || window.webkitAudioContext;
  const text = Ctx ? t('sound.off')
    : t('sound.unsupported');
  if (node.textContent !== text) node.textContent = text;
  if (node.hidden === off) show(node, off);
}

/** The most urgent level that rings (`[http] ring_max_level`). */
function ringMaxLevel() {
  return S.alerting ? S.alerting.ringMaxLevel : 2;
}

/** The waiting Calls that make the console ring, most urgent first. */
function ringingCalls() {
  // A municipality's or provider's desk follows the alarms; the centre's operators answer.
  if (isTenant()) return [];
  const max = ringMaxLevel();
  return sortedCalls().filter((c) => c.state === 'queued' && c.priority <= max);
}

/** Rings once now for a Call of `priority`; the repeat follows `ringRepeatMs` later. */
function ringNow(priority) {
  if (beep(priority)) S.rings += 1;
  S.ringNext = Date.now() + (S.alerting ? S.alerting.ringRepeatMs : 10000);
}

/**
 * Every second: while a Call of a ringing level waits, ring again every `ringRepeatMs`,
 * for the most urgent one; the queue pill pulses meanwhile. Taking the Call stops it.
 */
function ringTick(nowMs) {
  const calls = ringingCalls();
  const on = calls.length > 0;
  const pill = $('queue-count');
  if (pill.classList.contains('ringing') !== on) pill.classList.toggle('ringing', on);
  if (!on) {
    S.ringNext = 0;
    return;
  }
  if (S.ringNext === 0 || nowMs >= S.ringNext) ringNow(calls[0].priority);
}

/**
 * A short beep: three tones for life-safety, two for a personal alarm, a lower pair for a
 * care alarm; true if it was played (false while the browser keeps the sound off).
 */
function beep(priority) {
  const tones = priority === 0 ? [988, 740, 988] : (priority === 1 ? [880, 660] : [660, 523]);
  return playTones(tones, 'square', 0.16, 0.15);
}

/** The arrival warning: a rising pair, unlike the ring of a new Call. */
function warnTone() {
  return playTones([587, 784], 'triangle', 0.22, 0.18);
}

/**
 * Plays tones one after the other, each `secs` long (a new incident: four calm sine tones);
 * true if they were played.
 */
function playTones(tones, type, secs, volume) {
  try {
    unlockAudio();
    const ctx = S.audio;
    if (!ctx || ctx.state !== 'running') return false;
    let t = ctx.currentTime + 0.02;
    for (const f of tones) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = type;
      osc.frequency.value = f;
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(volume, t + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + secs);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t);
      osc.stop(t + secs + 0.02);
      t += secs + 0.04;
    }
    return true;
  } catch (e) {
    // Audio blocked or unavailable: the banner says the sound is off.
    return false;
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
    el('span', { class: 'tag tag-unknown', text: t('queue.unknown_device') }), ' ',
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
    frag.append(el('tr', { class: 'empty' }, el('td', { colspan: 8, text: t('queue.empty') })));
  }
  clear(body);
  body.append(frag);
  renderQueueCount(calls);
  renderLongestWait();
  renderMyCalls();
}

function queueRow(c, now) {
  const mine = isMine(c);
  const owner = c.owner ? (mine ? t('queue.you') : c.owner) : '';
  // A tenant's staff follow their people's alarms and open the person's card.
  const open = isTenant() ? () => openSubscriberPage(c.subscriber) : () => openCall(c.id);
  let action;
  if (isTenant()) {
    action = c.subscriber ? el('button', { type: 'button', class: 'view secondary', text: t('queue.card'), on: { click: (e) => { e.stopPropagation(); open(); } } }) : null;
  } else if (c.state === 'queued') {
    action = el('button', { type: 'button', class: 'take', text: t('queue.take'), on: { click: (e) => { e.stopPropagation(); takeCall(c.id); } } });
  } else if (mine) {
    action = el('button', { type: 'button', class: 'open', text: t('queue.open'), on: { click: (e) => { e.stopPropagation(); openCall(c.id); } } });
  } else {
    action = el('button', { type: 'button', class: 'view secondary', text: t('queue.view'), on: { click: (e) => { e.stopPropagation(); openCall(c.id); } } });
  }
  const tr = el('tr', {
    class: `call-row ${priorityInfo(c.priority).cls}-row state-${c.state}${mine ? ' mine' : ''}`,
    tabindex: 0,
    dataset: { callId: String(c.id), priority: String(c.priority), state: c.state },
    on: {
      click: open,
      keydown: (e) => { if (e.key === 'Enter' && e.target === e.currentTarget) open(); },
    },
  },
  el('td', { class: 'col-priority' }, priorityBadge(c.priority)),
  el('td', { class: 'col-age' }, el('span', { class: ageClass(c), dataset: { opened: c.opened_at, state: c.state }, text: fmtDuration(ageSecs(c.opened_at)) })),
  el('td', { class: 'col-subscriber' }, subscriberLabel(c)),
  el('td', { class: 'col-kind' }, el('span', { text: kindWords(c.kind) }),
    c.restored ? el('span', { class: 'tag tag-restored', text: t('queue.restored') }) : null,
    voiceBadge(c)),
  el('td', { class: 'col-presses' }, el('span', { class: c.alarm_count > 1 ? 'presses multi' : 'presses', text: c.alarm_count > 1 ? `×${c.alarm_count}` : String(c.alarm_count ?? 1) })),
  el('td', { class: 'col-state' }, el('span', { class: `state state-${c.state}`, text: tOr(`state.${c.state}`, c.state) })),
  el('td', { class: 'col-owner' + (mine ? ' owner-me' : ''), text: owner }),
  el('td', { class: 'col-action' }, action, superviseButtons(c)));
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
  const text = waiting.length === 0 ? t('queue.none_waiting')
    : `${tn('queue.waiting', waiting.length)}${urgent ? ` · ${tn('queue.urgent', urgent)}` : ''}`;
  $('queue-count-text').textContent = text;
  $('queue-count').classList.toggle('urgent', urgent > 0);
  $('queue-count').classList.toggle('has-waiting', waiting.length > 0);
  $('queue-summary').textContent = t('queue.summary', { open: calls.length, waiting: waiting.length });
  S.waitingCount = waiting.length;
  renderTitle();
}

/** The tab title: waiting Calls, a mark while a dispatch alert is up or an incident is open. */
function renderTitle() {
  if (!S.me) return;
  const n = S.waitingCount || 0;
  const alert = Array.from(S.alerts.values()).some((a) => a.kind === 'breach') ? '⚠ ' : '';
  const incident = openIncidents().length ? `${t('queue.title_incident')} · ` : '';
  document.title = `${alert}${incident}${n ? `(${n}) ` : ''}vakt`;
}

/**
 * The header's longest wait, next to the median: the oldest Call nobody has taken, red past
 * a minute (the answer target), so a growing queue shows while the day's median is still good.
 */
function renderLongestWait() {
  const node = $('stat-longest');
  const waiting = sortedCalls().filter((c) => c.state === 'queued');
  if (waiting.length === 0) {
    node.textContent = '-';
    node.dataset.met = 'none';
    return;
  }
  const secs = Math.max(...waiting.map((c) => ageSecs(c.opened_at)));
  node.textContent = fmtDuration(secs);
  node.dataset.met = secs > 60 ? 'no' : 'yes';
}

/** Every second: ages in the queue and in the Call view; flashes that ended. */
function tick() {
  if (!S.me) return;
  renderLongestWait();
  ringTick(Date.now());
  renderSoundState();
  renderSessionWarning();
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
  for (const span of document.querySelectorAll('.tag-voice-ringing[data-rang]')) {
    span.textContent = t('voice.badge.ringing', { duration: fmtDuration(ageSecs(span.dataset.rang)) });
  }
  for (const span of document.querySelectorAll('#call-voice .voice-since[data-since]')) {
    span.textContent = fmtDuration(ageSecs(span.dataset.since));
  }
  if (S.current && S.view === 'call') renderCallAge();
  tickDispatches();
  tickSupervision();
}

async function takeNext() {
  if (!S.me || S.busy) return;
  S.busy = true;
  $('take-next').disabled = true;
  try {
    const { status, data } = await api('POST', '/api/calls/next');
    if (status === 204 || !data) {
      message(`${t('queue.none_waiting')}.`, 'info');
    } else {
      openCall(data.id, data);
    }
  } catch (e) {
    reportError(t('queue.take_next_failed'), e);
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
      message(owner ? t('queue.already_taken_by', { id, owner }) : t('queue.already_taken', { id }), 'warn');
    } else if (e.status === 410) {
      message(t('queue.already_closed', { id }), 'warn');
    } else if (e.status === 404) {
      message(t('queue.gone', { id }), 'warn');
    } else {
      reportError(t('queue.take_failed', { id }), e);
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
  if (targetNode && Number.isFinite(Number(target))) targetNode.textContent = t('stats.target', { pct: fmtPct(target) });
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
  $('stats').title = s.date ? t('stats.figures_for', { date: s.date, answered: orDash(s.answered) }) : '';
}

// ---------------------------------------------------------------- 10. Call view

/** Focus must not stay on a button of a view that was just hidden (Enter would press it). */
function blurHidden() {
  const a = document.activeElement;
  if (a && a !== document.body && a.closest('section[hidden], [hidden]')) a.blur();
}

function showQueue() {
  if (!S.me) return;
  leaveCall();
  showView('queue');
  renderQueue();
  blurHidden();
}

/** Shows one page, marks its tab, starts or stops what only that page needs. */
function showView(name) {
  S.view = name;
  for (const v of VIEWS) show($(`${v}-view`), v === name);
  const tabOf = { call: 'queue', incident: 'incidents', device: S.dev.back ? S.dev.back.view : '', subscriber: 'registers' };
  let tab = tabOf[name] !== undefined ? tabOf[name] : name;
  if (tab === 'call') tab = 'queue';
  if (tab === 'incident') tab = 'incidents';
  for (const b of document.querySelectorAll('#tabs .tab')) {
    const active = b.dataset.view === tab;
    b.classList.toggle('active', active);
    if (active) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  if (name === 'patrols') startBoardPolling();
  else stopBoardPolling();
  if (name !== 'call') closeDispatchDialog();
  startPagePoll(name);
}

/** Leaves the Call view (if shown) for another page. */
function leaveCall() {
  S.currentId = null;
  S.current = null;
  S.subscriber = null;
  S.subscriberId = null;
  S.cancelFor = null;
  $('call-view').dataset.callId = '';
  $('fault-note').value = '';
  clear($('subscriber-card'));
  clear($('timeline'));
  clear($('dispatch-list'));
}

/** Opens the Call view for `id`; `call` is a full Call already at hand (after a claim). */
function openCall(id, call) {
  if (!S.me) return;
  const changed = S.currentId !== id;
  S.currentId = id;
  showView('call');
  $('call-view').dataset.callId = String(id);
  if (changed) {
    S.current = null;
    S.subscriber = null;
    S.subscriberId = null;
    S.cancelFor = null;
    clear($('timeline'));
    clear($('dispatch-list'));
    show($('dispatch-open'), false);
    show($('dispatch-hint'), false);
    clear($('subscriber-card'));
    $('subscriber-card').append(el('p', { class: 'muted', text: t('call.loading') }));
    $('note-text').value = '';
    $('phone-note').value = '';
    $('close-note').value = '';
    $('close-outcome').value = '';
    $('fault-note').value = '';
    resetCloseForm();
    renderCallHeaderFromSummary(S.calls.get(id));
    renderCallPlan(); // hides the last Call's plan until this one's is read
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
      if (e.status === 404) message(t('call.not_found', { id }), 'warn');
      else reportError(t('call.load_failed', { id }), e);
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
  renderVoice();
  renderOwnership(call);
  renderDispatchPanel(call); // first: the timeline's words use the dispatches it notes
  renderContext(call);
  renderTimeline(call.timeline || []);
  renderPatrolHint();
  loadSubscriber(call);
  loadDialTargets(call);
  loadCallPlan(call);
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
  $('call-kind').textContent = t('call.loading');
  $('call-age').textContent = '';
  $('call-presses').textContent = '';
  $('call-state').textContent = '';
  show($('call-restored'), false);
  show($('call-actions'), false);
  show($('call-ownership'), false);
  show($('dispatch-open'), false);
  $('call-id').textContent = t('call.label', { id: S.currentId });
}

function renderCallHeader(c) {
  const pri = $('call-priority');
  const info = priorityInfo(c.priority);
  pri.className = `badge big ${info.cls}`;
  pri.textContent = info.label;
  pri.title = t('priority.title', { level: c.priority });
  $('call-kind').textContent = kindWords(c.kind);
  const presses = $('call-presses');
  presses.textContent = String(c.alarm_count ?? 1);
  presses.className = c.alarm_count > 1 ? 'presses multi' : 'presses';
  show($('call-restored'), !!c.restored);
  const st = $('call-state');
  st.className = `call-state state-${c.state}`;
  let stText = tOr(`state.${c.state}`, c.state);
  if (c.state === 'claimed' && c.owner) stText = isMine(c) ? t('call.taken_by_you') : t('call.taken_by', { owner: c.owner });
  if (c.state === 'closed') stText = c.outcome ? t('call.closed_outcome', { outcome: OUTCOMES[c.outcome] || c.outcome }) : t('state.closed');
  st.textContent = stText;
  $('call-id').textContent = t('call.label_opened', { id: c.id, time: fmtTime(c.opened_at) });
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
  if (c.answered_at) age.title = t('call.answered_after', { duration: fmtDuration(ageSecs(c.opened_at, c.answered_at)) });
}

/** Who owns it, and the actions when it is mine. */
function renderOwnership(c) {
  renderSuperviseOwnership(c);
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
    text.textContent = t('call.waiting_take_it');
    show(take, true);
  } else if (c.state === 'claimed') {
    text.textContent = t('call.handled_by', { owner: c.owner || t('call.another_operator') });
    show(take, false);
  } else {
    const outcome = c.outcome ? OUTCOMES[c.outcome] || c.outcome : t('call.closed_word');
    text.textContent = t('call.closed_by', { time: c.closed_at ? fmtTime(c.closed_at) : '', owner: c.owner || '?', outcome });
    show(take, false);
  }
}

function renderTimeline(entries) {
  const list = $('timeline');
  const wasAtBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  clear(list);
  if (entries.length === 0) {
    list.append(el('li', { class: 'muted', dataset: { type: 'none' }, text: t('tl.nothing') }));
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
  let extra = null;
  switch (e.type) {
    case 'signal': {
      const restore = e.qualifier === 'restore';
      const words = codeWords(e.code, e.description);
      appendAll(head, el('span', { class: 'tl-what', text: restore ? t('tl.signal_restore') : (e.qualifier === 'status' ? t('tl.signal_status') : t('tl.signal')) }),
        ' ', el('span', { class: 'mono', text: e.code || '' }),
        words && words !== e.code ? el('span', { class: 'tl-desc', text: ` ${words}`, title: e.description || null }) : null,
        e.zone !== undefined && e.zone !== null ? el('span', { class: 'tl-zone', text: ` · ${t('tl.zone', { zone: e.zone })}` }) : null,
        e.account ? el('span', { class: 'tl-account muted', text: ` · ${t('tl.account', { account: e.account })}` }) : null);
      break;
    }
    case 'escalated':
      appendAll(head, el('span', { class: 'tl-what', text: t('tl.escalated') }), ' ',
        priorityBadge(e.from, 'small'), ' → ', priorityBadge(e.to, 'small'),
        e.reason ? el('span', { class: 'tl-desc', text: ` (${tOr(`escalation.${e.reason}`, ESCALATION_REASONS[e.reason] || e.reason)})` }) : null);
      break;
    case 'restored':
      head.append(el('span', { class: 'tl-what', text: t('tl.restored') }));
      break;
    case 'claimed':
      head.append(el('span', { class: 'tl-what', text: t('tl.claimed') }));
      break;
    case 'released':
      head.append(el('span', { class: 'tl-what', text: t('tl.released') }));
      break;
    case 'note':
      head.append(el('span', { class: 'tl-what', text: t('tl.note') }));
      text = e.text;
      break;
    case 'phone_call':
      head.append(el('span', { class: `tl-what${e.to === 'emergency' ? ' tl-emergency' : ''}${e.answered === false ? ' tl-no-answer' : ''}`,
        text: e.answered === false
          ? t('tl.phoned_no_answer', { to: PHONE_PARTIES[e.to] || t('tl.phoned', { to: e.to }) })
          : (PHONE_PARTIES[e.to] || t('tl.phoned', { to: e.to })) }));
      text = e.note;
      break;
    case 'closed':
      head.append(el('span', { class: 'tl-what', text: t('tl.closed', { outcome: OUTCOMES[e.outcome] || e.outcome || '?' }) }));
      if (e.override_reason) head.append(el('span', { class: 'tl-override', text: ` · ${t('tl.overridden')}` }));
      if (e.review) head.append(el('span', { class: 'tl-party muted', text: ` · ${t('tl.for_review')}` }));
      if (e.override_reason) {
        const override = t('tl.override', { reason: e.override_reason, rule: e.overrode });
        text = e.note ? `${e.note} — ${override}` : override;
      } else {
        text = e.note;
      }
      break;
    case 'handed_over': {
      let what = t('tl.reassigned', { from: e.from, to: e.to });
      if (e.user === e.from) what = t('tl.handed_over', { to: e.to });
      else if (e.user === e.to) what = t('tl.taken_over', { from: e.from });
      head.append(el('span', { class: 'tl-what', text: what }));
      text = e.note;
      break;
    }
    case 'returned': {
      const why = RETURN_REASONS[e.reason] ? RETURN_REASONS[e.reason](e.owner) : `${e.owner}: ${e.reason}`;
      head.append(el('span', { class: 'tl-what', text: t('tl.returned', { why }) }));
      break;
    }
    case 'reopened':
      // A supervisor's review (the line names them), or a closed Call whose dispatch ended
      // without a visit, with nobody left to take it.
      head.append(el('span', { class: 'tl-what', text: e.user ? t('tl.reopened_review') : t('tl.reopened') }));
      text = e.reason;
      break;
    case 'conversation': {
      const w = conversationWords(e);
      li.classList.add(`tl-conversation-${w.state}`);
      head.append(el('span', { class: 'tl-what', text: w.what }));
      if (e.party) head.append(el('span', { class: 'tl-party muted', text: ` · ${e.party}` }));
      text = w.text;
      // Supervisors play the recording here (each playback audited); operators cannot.
      if (e.recording && isSupervisor() && S.currentId !== null) {
        const url = `/api/calls/${S.currentId}/recordings/${e.id}`;
        const play = el('button', { type: 'button', class: 'secondary tl-play', text: t('tl.play_recording'), on: { click: () => {
          play.replaceWith(el('audio', { controls: true, autoplay: true, preload: 'none', src: url }));
        } } });
        extra = el('div', { class: 'tl-recording' }, play, ' ',
          el('a', { href: `${url}?download=1`, text: t('tl.download') }));
      }
      break;
    }
    case 'dispatch': {
      const w = dispatchStepWords(e);
      li.classList.add(`tl-dispatch-${String(e.step || '').replace(/[^a-z_]/g, '')}`);
      li.dataset.step = String(e.step || '');
      head.append(el('span', { class: 'tl-what', text: w.what }));
      if (w.who) head.append(el('span', { class: 'tl-patrol muted', text: ` · ${w.who}` }));
      text = w.text;
      break;
    }
    case 'plan_step':
    case 'relative_call': {
      const w = planTimelineHead(e);
      head.append(el('span', { class: 'tl-what', text: w.what }));
      text = w.text;
      break;
    }
    default:
      head.append(el('span', { class: 'tl-what', text: String(e.type) }));
  }
  if (by) head.append(' ', el('span', { class: 'muted', text: t('tl.by') }), ' ', by);
  body.append(head);
  if (text) body.append(el('div', { class: 'tl-text', text }));
  if (extra) body.append(extra);
  li.append(body);
  return li;
}

const CONVERSATION_ENDS = {
  get caller() { return t('voice.end.caller'); },
  get operator() { return t('voice.end.operator'); },
  get no_answer() { return t('voice.end.no_answer'); },
  get busy() { return t('voice.end.busy'); },
  get declined() { return t('voice.end.declined'); },
  get timeout() { return t('voice.end.timeout'); },
  get failure() { return t('voice.end.failure'); },
  get restart() { return t('voice.end.restart'); },
};

/** A voice conversation's timeline words: what happened, and the figures. */
function conversationWords(e) {
  const inbound = e.direction === 'inbound';
  const answered = e.talk_secs !== undefined && e.talk_secs !== null;
  const ended = tOr(`voice.end.${e.ended_by}`, CONVERSATION_ENDS[e.ended_by] || e.ended_by || '?');
  if (!answered) {
    const missed = { caller: 'voice.abandoned', operator: 'voice.refused', no_answer: 'voice.not_answered' };
    const outs = { busy: 'voice.out_busy', declined: 'voice.out_declined', operator: 'voice.out_cancelled' };
    const what = t(inbound ? (missed[e.ended_by] || 'voice.ended_unanswered') : (outs[e.ended_by] || 'voice.out_not_answered'));
    return { state: 'missed', what, text: t('voice.rang', { ring: fmtDuration(e.ring_secs || 0), ended }) };
  }
  const what = inbound
    ? (e.operator ? t('voice.answered_by', { operator: e.operator }) : t('voice.answered'))
    : (e.operator ? t('voice.called_out_by', { operator: e.operator }) : t('voice.called_out'));
  const rec = e.recording ? ` ${t('voice.recorded')}` : '';
  return {
    state: 'answered',
    what,
    text: t('voice.rang_talked', { ring: fmtDuration(e.ring_secs || 0), talk: fmtDuration(e.talk_secs), ended }) + rec,
  };
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
  card.append(el('p', { class: 'muted', text: t('card.loading') }));
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
        ? t('card.not_registered', { id: call.subscriber, account: call.account })
        : t('card.load_failed', { reason: e.message }) }));
  }
}

function renderUnknownDevice(call) {
  const card = $('subscriber-card');
  clear(card);
  card.className = 'card card-warning';
  card.append(
    el('h2', { class: 'subscriber-name unknown', text: t('queue.unknown_device') }),
    el('p', { class: 'warning-text', text: t('unknown.nobody') }),
    el('dl', { class: 'facts' },
      el('dt', { text: t('card.dev.account') }), el('dd', { class: 'mono big-value', text: call.account || '?' }),
      el('dt', { text: t('unknown.device_page') }), el('dd', {}, call.account ? deviceLink(call.account, t('unknown.device_page_title')) : '-')),
    el('p', { class: 'muted', text: t('unknown.look') }));
}

/** Whether the person's health notes go to the patrol with an assignment (their consent). */
function healthConsentNode(sub) {
  return sub.health_to_patrol
    ? el('p', { class: 'health-consent yes', text: t('card.health_shared') })
    : el('p', { class: 'health-consent no muted', text: t('card.health_not_shared') });
}

/** Draws a subscriber's card into `into` (the Call view's card when not given). */
function renderSubscriber(sub, into) {
  const card = into || $('subscriber-card');
  clear(card);
  card.className = 'card';
  const access = sub.access || {};

  const head = el('div', { class: 'card-head' },
    el('div', {},
      el('h2', { class: 'subscriber-name', text: sub.name || sub.id }),
      el('div', { class: 'card-sub' },
        el('span', { class: 'mono personal-number', title: t('card.personal_number'), text: orDash(sub.personal_number) }),
        el('span', { class: 'language', title: t('person.language_title') }, `${t('person.language')}: `, languageNode(sub.language)),
        el('span', { class: 'mono muted', title: t('card.subscriber_id'), text: sub.id }),
        sub.needs_extra_visits ? el('span', { class: 'tag tag-extra', title: t('card.extra_visits_title'), text: t('card.extra_visits') }) : null)),
    isSupervisor() ? el('button', { type: 'button', id: 'subscriber-edit', class: 'secondary', text: t('card.edit'), on: { click: openEditor } }) : null);

  const facts = el('div', { class: 'card-top' },
    el('div', { class: 'address' },
      el('div', { class: 'fact-label', text: t('card.address') }),
      el('div', { class: 'street', text: orDash(sub.address) }),
      el('div', { class: 'postcode-city', text: [sub.postcode, sub.city].filter(Boolean).join(' ') || '-' }),
      el('div', { class: 'area' }, el('span', { class: 'muted', text: `${t('card.area')} ` }), el('span', { text: orDash(sub.area) }))),
    el('div', { class: 'reach' },
      el('div', { class: 'fact-label', text: t('card.phone') }),
      el('div', { class: 'phone' }, telLink(sub.phone, 'tel big-tel')),
      el('div', { class: 'fact-label', text: t('card.care_provider') }),
      el('div', { class: 'care-provider', text: orDash(sub.care_provider) })));

  const keys = Number(access.keys) || 0;
  const accessBox = el('section', { class: 'access' },
    el('h3', { text: t('card.access') }),
    el('dl', { class: 'facts access-facts' },
      el('dt', { text: t('card.door_code') }), el('dd', { class: 'door-code', text: orDash(access.door_code) }),
      el('dt', { text: t('card.keys') }), el('dd', { class: keys ? 'keys' : 'keys none', text: keys ? tn('card.key_count', keys) : t('card.no_keys') }),
      el('dt', { text: t('card.key_location') }), el('dd', { class: 'key-location', text: orDash(access.key_location) }),
      el('dt', { text: t('card.digital_lock') }), el('dd', { class: 'digital-lock mono', text: orDash(access.digital_lock_id) }),
      el('dt', { text: t('card.entry_notes') }), el('dd', { class: 'entry-notes pre', text: orDash(access.entry_notes) })));

  const health = el('section', { class: 'notes-block health' },
    el('h3', { text: t('card.health') }), el('p', { class: 'pre health-notes', text: orDash(sub.health_notes) }),
    healthConsentNode(sub));
  const plan = el('section', { class: 'notes-block' },
    el('h3', { text: t('card.care_plan') }), el('p', { class: 'pre care-plan-notes', text: orDash(sub.care_plan_notes) }));

  const contacts = el('section', { class: 'contacts' }, el('h3', { text: t('card.contacts') }));
  const list = sub.contacts || [];
  if (list.length === 0) {
    contacts.append(el('p', { class: 'muted', text: t('card.no_contacts') }));
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

  const devices = el('section', { class: 'devices' }, el('h3', { text: t('card.devices') }));
  const devs = sub.devices || [];
  if (devs.length === 0) {
    devices.append(el('p', { class: 'muted', text: t('card.no_devices') }));
  } else {
    const tbody = el('tbody');
    for (const d of devs) {
      tbody.append(el('tr', {},
        el('td', {}, deviceLink(d.account)),
        el('td', { text: deviceTypeWords(d.device_type), title: d.device_type || null }),
        el('td', { text: [d.line && `L${d.line}`, d.receiver && `R${d.receiver}`].filter(Boolean).join(' ') || '-' }),
        el('td', { text: orDash(d.area) }),
        el('td', { text: orDash(d.telecom_operator) }),
        el('td', { text: d.supervision_secs ? fmtDuration(d.supervision_secs) : '-' })));
    }
    devices.append(el('p', { class: 'muted hint', text: t('card.devices_hint') }),
      el('table', { class: 'device-table' },
      el('thead', {}, el('tr', {}, ...['account', 'type', 'line', 'area', 'telecom', 'supervision'].map((h) => el('th', { text: t(`card.dev.${h}`) })))),
      tbody));
  }

  card.append(head, facts, accessBox, health, contacts, plan, devices);
  appendKeysPanel(card, sub);
  appendLifePanel(card, sub);
  appendPlanSummary(card, sub);
}

// ---- the response plan: on the Call (steps, relatives), on the card, the editor

const PLAN_KINDS = {
  get fall() { return t('plan.kind.fall'); },
  get personal() { return t('plan.kind.personal'); },
  get fire() { return t('plan.kind.fire'); },
  get wandering() { return t('plan.kind.wandering'); },
  get inactivity() { return t('plan.kind.inactivity'); },
  get technical() { return t('plan.kind.technical'); },
  get other() { return t('plan.kind.other'); },
};
const PLAN_ACTIONS = {
  get talk_to_person() { return t('plan.action.talk_to_person'); },
  get call_relatives() { return t('plan.action.call_relatives'); },
  get send_patrol() { return t('plan.action.send_patrol'); },
  get call_emergency() { return t('plan.action.call_emergency'); },
  get call_fire_brigade() { return t('plan.action.call_fire_brigade'); },
};
const RELATIVE_RESULTS = {
  get answered() { return t('plan.relative.answered'); },
  get no_answer() { return t('plan.relative.no_answer'); },
  get busy() { return t('plan.relative.busy'); },
};

/** How many plan lines the Call's timeline has: a change means the plan's marks changed. */
function planLineCount(call) {
  return (call.timeline || []).filter((e) => e.type === 'plan_step' || e.type === 'relative_call').length;
}

/** GET /api/calls/{id}/plan when the Call or its plan lines changed; else draws it again. */
async function loadCallPlan(call) {
  const key = `${call.id}:${planLineCount(call)}`;
  if (S.planKey === key && S.callPlan && S.callPlan.call === call.id) {
    renderCallPlan();
    return;
  }
  S.planKey = key;
  if (!S.callPlan || S.callPlan.call !== call.id) {
    S.callPlan = null;
    renderCallPlan();
  }
  try {
    const { data } = await api('GET', `/api/calls/${encodeURIComponent(call.id)}/plan`);
    if (S.currentId !== call.id || !data) return;
    S.callPlan = data;
    renderCallPlan();
  } catch (e) {
    if (S.currentId !== call.id) return;
    S.planKey = null; // try again on the next refresh
    const body = $('call-plan-body');
    clear(body);
    body.append(el('p', { class: 'warning-text', text: t('plan.call_load_failed', { reason: e.message }) }));
    show($('call-plan'), true);
  }
}

function planMarkText(m) {
  const time = fmtTime(m.at);
  if (m.result === 'skipped') {
    return m.user ? t('plan.mark.skipped_by', { user: m.user, time, reason: m.reason }) : t('plan.mark.skipped', { time, reason: m.reason });
  }
  const done = m.user ? t('plan.mark.done_by', { user: m.user, time }) : t('plan.mark.done', { time });
  return m.reason ? `${done}: ${m.reason}` : done;
}

function planSourceText(p) {
  if (p.source === 'centre') {
    return p.version ? t('plan.source.no_steps', { version: p.version }) : t('plan.source.none');
  }
  if (p.source === 'subscriber_other') return t('plan.source.other', { version: p.version });
  return t('plan.version', { version: p.version });
}

/** The plan for the Call's alarm, at the top of the Call view. */
function renderCallPlan() {
  const box = $('call-plan');
  const body = $('call-plan-body');
  const p = S.callPlan;
  clear(body);
  if (!p || p.call !== S.currentId) {
    show(box, false);
    return;
  }
  show(box, true);
  box.dataset.kind = p.kind;
  box.dataset.version = String(p.version);
  const mine = isMine(S.current);
  $('call-plan-title').textContent = t('plan.title_kind', { kind: PLAN_KINDS[p.kind] || p.kind });
  body.append(el('p', { class: 'plan-source muted', id: 'call-plan-version' }, planSourceText(p),
    p.relatives_first ? el('span', { class: 'tag plan-relatives-first', text: t('plan.relatives_first') }) : null));
  if (p.version && p.current_version !== p.version) {
    body.append(el('p', { class: 'hint active', text: t('plan.edited_during', { current: p.current_version, version: p.version }) }));
  }
  if (p.instructions) body.append(el('p', { class: 'pre plan-instructions', text: p.instructions }));
  if (p.kind_instructions) body.append(el('p', { class: 'pre plan-kind-instructions', text: p.kind_instructions }));
  const ol = el('ol', { class: 'plan-steps' });
  for (const s of p.steps) ol.append(planStepItem(p, s, mine));
  body.append(ol);
}

function planStepItem(p, s, mine) {
  const state = s.mark ? s.mark.result : 'open';
  const li = el('li', { class: `plan-step plan-${state}`, dataset: { index: String(s.index), action: s.action, state } });
  const head = el('div', { class: 'plan-step-head' },
    el('span', { class: 'plan-step-action', text: PLAN_ACTIONS[s.action] || s.action }));
  if (s.mark) head.append(' ', el('span', { class: 'plan-mark', text: planMarkText(s.mark) }));
  li.append(head);
  if (s.instructions) li.append(el('div', { class: 'plan-step-text pre', text: s.instructions }));
  if (s.action === 'call_relatives') li.append(planRelatives(p, mine));
  if (mine) {
    const reason = el('input', { type: 'text', class: 'plan-skip-reason', maxlength: 500, placeholder: t('plan.skip_reason'), 'aria-label': t('plan.skip_reason'), hidden: true });
    const done = el('button', { type: 'button', class: 'small plan-done', text: t('plan.done'), on: { click: () => tickPlanStep(p, s, 'done', '', done) } });
    const skip = el('button', { type: 'button', class: 'small secondary plan-skip', text: t('plan.skip_more'), on: { click: () => {
      if (reason.hidden) {
        reason.hidden = false;
        skip.textContent = t('plan.skip');
        reason.focus();
        return;
      }
      if (!reason.value.trim()) {
        message(t('plan.skip_say_why'), 'warn');
        reason.focus();
        return;
      }
      tickPlanStep(p, s, 'skipped', reason.value, skip);
    } } });
    reason.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); skip.click(); } });
    li.append(el('div', { class: 'action-row plan-step-buttons' }, done, skip, reason));
  }
  return li;
}

/** The relatives in order, each with the calls made and (for the owner) the result buttons. */
function planRelatives(p, mine) {
  const ul = el('ul', { class: 'plan-relatives' });
  if (p.relatives.length === 0) {
    ul.append(el('li', { class: 'muted', text: t('card.no_contacts') }));
    return ul;
  }
  for (const r of p.relatives) {
    const last = r.attempts.length ? r.attempts[r.attempts.length - 1] : null;
    const li = el('li', { class: `plan-relative${last ? ` rel-${last.result}` : ''}`, dataset: { index: String(r.index), result: last ? last.result : '' } },
      el('span', { class: 'contact-name', text: r.name || '-' }),
      el('span', { class: 'contact-relation', text: r.relation ? ` (${r.relation})` : '' }),
      ' ', telLink(r.phone));
    if (r.attempts.length) {
      li.append(el('span', { class: 'plan-relative-results', text: ` · ${r.attempts.map((a) => `${RELATIVE_RESULTS[a.result] || a.result} ${fmtTime(a.at)}`).join(', ')}` }));
    }
    if (mine) {
      const row = el('span', { class: 'plan-relative-buttons' });
      for (const [result, label] of [['answered', t('plan.relative.button.answered')], ['no_answer', t('plan.relative.button.no_answer')], ['busy', t('plan.relative.button.busy')]]) {
        const b = el('button', { type: 'button', class: `small rel-${result}`, dataset: { result }, text: label,
          on: { click: () => logRelativeCall(r, result, b) } });
        row.append(b);
      }
      li.append(' ', row);
    }
    ul.append(li);
  }
  return ul;
}

/**
 * Ticks step `s` of plan `p` as shown: the server refuses (409 `plan.changed`) when the Call's
 * plan is another by now, and the plan shown is loaded again.
 */
async function tickPlanStep(p, s, result, reason, button) {
  await callAction(result === 'done' ? t('action.tick_step') : t('action.skip_step'), `plan/steps/${s.index}`,
    { result, reason, plan_version: p.version, action: s.action }, button);
}

/** Records a call to relative `r` as shown (refused when the contacts changed meanwhile). */
async function logRelativeCall(r, result, button) {
  await callAction(t('action.record_relative'), 'relative-call', { contact: r.index, name: r.name, result }, button);
}

/** The plan's lines in the timeline. */
function planTimelineHead(e) {
  if (e.type === 'plan_step') {
    const params = { n: e.step + 1, action: PLAN_ACTIONS[e.action] || e.action };
    return { what: e.result === 'skipped' ? t('plan.tl.skipped', params) : t('plan.tl.done', params), text: e.reason };
  }
  const result = RELATIVE_RESULTS[e.result] || e.result;
  return {
    what: e.relation ? t('plan.tl.called_relation', { name: e.name, relation: e.relation, result }) : t('plan.tl.called', { name: e.name, result }),
    text: e.note,
  };
}

/** The plan on the subscriber's card: the version, each kind's steps; edit and versions. */
async function appendPlanSummary(card, sub) {
  const box = el('section', { class: 'plan-summary', id: 'plan-summary' },
    el('h3', { text: t('plan.title') }), el('p', { class: 'muted', text: t('call.loading') }));
  card.append(box);
  try {
    const { data } = await api('GET', `/api/subscribers/${encodeURIComponent(sub.id)}/plan`);
    if (!box.isConnected) return;
    S.subscriberPlan = data;
    renderPlanSummary(box, data);
  } catch (e) {
    if (!box.isConnected) return;
    clear(box);
    box.append(el('h3', { text: t('plan.title') }), el('p', { class: 'warning-text', text: t('plan.load_failed', { reason: e.message }) }));
  }
}

/** The steps in force per kind (the server's `in_force`: in the order a Call gets them,
 * relatives first applied), with where they come from. */
function planKindsList(inForce) {
  const dl = el('dl', { class: 'plan-kinds' });
  for (const k of inForce || []) {
    const steps = k.steps.map((a) => PLAN_ACTIONS[a] || a).join(' → ');
    const text = k.source === 'subscriber' ? steps
      : (k.source === 'subscriber_other' ? t('plan.steps_from_other', { steps }) : t('plan.steps_from_centre', { steps }));
    dl.append(el('dt', { text: PLAN_KINDS[k.kind] || k.kind }), el('dd', { dataset: { kind: k.kind }, text }));
  }
  return dl;
}

function renderPlanSummary(box, data) {
  clear(box);
  const cur = data.current;
  const head = el('div', { class: 'plan-summary-head' }, el('h3', { text: t('plan.title') }),
    el('span', { class: 'muted', id: 'plan-summary-version', text: cur ? t('plan.version_saved', { version: cur.version, user: cur.saved_by, time: fmtFull(cur.saved_at) }) : t('plan.none_default') }));
  if (isSupervisor()) {
    head.append(el('button', { type: 'button', id: 'plan-edit', class: 'secondary small', text: t('plan.edit'), on: { click: () => openPlanEditor(data) } }));
  }
  box.append(head);
  if (cur && cur.plan.instructions) box.append(el('p', { class: 'pre', text: cur.plan.instructions }));
  const first = cur && cur.plan.relatives_first !== null && cur.plan.relatives_first !== undefined ? cur.plan.relatives_first : data.relatives_first_default;
  if (first) box.append(el('p', {}, el('span', { class: 'tag plan-relatives-first', text: t('plan.relatives_first') })));
  box.append(planKindsList(data.in_force));
  if (data.versions.length > 1) {
    const list = el('ul', { class: 'plan-versions' });
    const shown = el('div', { class: 'plan-version-shown' });
    for (const v of data.versions) {
      const b = el('button', { type: 'button', class: 'link', text: t('plan.version', { version: v.version }), on: { click: async () => {
        try {
          const { data: old } = await api('GET', `/api/subscribers/${encodeURIComponent(data.subscriber)}/plan/versions/${v.version}`);
          clear(shown);
          shown.append(el('p', { class: 'muted', text: t('plan.version_saved', { version: old.version, user: old.saved_by, time: fmtFull(old.saved_at) }) }),
            old.plan.instructions ? el('p', { class: 'pre', text: old.plan.instructions }) : null,
            planKindsList(old.in_force));
        } catch (e) {
          reportError(t('plan.version_load_failed'), e);
        }
      } } });
      list.append(el('li', {}, b, el('span', { class: 'muted', text: ` ${v.saved_by} ${fmtFull(v.saved_at)}` })));
    }
    box.append(el('details', { class: 'plan-history' }, el('summary', { text: t('plan.versions', { n: data.versions.length }) }), list, shown));
  }
}

// The editor: a dialog made on first use.

function planDialog() {
  let d = $('plan-dialog');
  if (d) return d;
  d = el('div', { id: 'plan-dialog', class: 'overlay', hidden: true },
    el('form', { id: 'plan-form', class: 'dialog', novalidate: true },
      el('h2', {}, el('span', { 'data-i18n': 'plan.title', text: t('plan.title') }), ' ', el('span', { id: 'plan-dialog-who', class: 'muted' })),
      el('div', { class: 'field' }, el('label', { for: 'plan-first', 'data-i18n': 'plan.editor.relatives_first', text: t('plan.editor.relatives_first') }),
        el('select', { id: 'plan-first' })),
      el('div', { class: 'field' }, el('label', { for: 'plan-instructions', 'data-i18n': 'plan.editor.instructions', text: t('plan.editor.instructions') }),
        el('textarea', { id: 'plan-instructions', rows: 2, maxlength: 2000 })),
      el('p', { class: 'muted hint', 'data-i18n': 'plan.editor.help', text: t('plan.editor.help') }),
      el('div', { id: 'plan-kinds-edit' }),
      el('p', { id: 'plan-error', class: 'form-error', role: 'alert', hidden: true }),
      el('div', { class: 'action-row dialog-buttons' },
        el('button', { type: 'submit', id: 'plan-save', class: 'primary', 'data-i18n': 'plan.editor.save', text: t('plan.editor.save') }),
        el('button', { type: 'button', id: 'plan-cancel', 'data-i18n': 'dialog.cancel', text: t('dialog.cancel'), on: { click: closePlanEditor } }))));
  document.body.append(d);
  $('plan-form').addEventListener('submit', savePlanEditor);
  // The console's shortcuts stay out of the editor; Esc closes it.
  d.addEventListener('keydown', (e) => {
    e.stopPropagation();
    if (e.key === 'Escape') closePlanEditor();
  });
  return d;
}

function planStepRow(step) {
  const row = el('div', { class: 'plan-step-edit' });
  const sel = el('select', { class: 'ps-action', 'aria-label': t('plan.editor.step') });
  for (const [v, label] of Object.entries(PLAN_ACTIONS)) sel.append(el('option', { value: v, text: label }));
  sel.value = step.action;
  const text = el('input', { type: 'text', class: 'ps-text', maxlength: 500, placeholder: t('plan.editor.step_instructions'), 'aria-label': t('plan.editor.step_instructions') });
  text.value = step.instructions || '';
  row.append(sel, text,
    el('button', { type: 'button', class: 'small', title: t('plan.editor.move_up'), text: '↑', on: { click: () => { if (row.previousElementSibling) row.parentNode.insertBefore(row, row.previousElementSibling); } } }),
    el('button', { type: 'button', class: 'small', title: t('plan.editor.move_down'), text: '↓', on: { click: () => { if (row.nextElementSibling) row.parentNode.insertBefore(row.nextElementSibling, row); } } }),
    el('button', { type: 'button', class: 'small danger-outline ps-remove', title: t('plan.editor.remove'), text: t('plan.editor.remove'), on: { click: () => row.remove() } }));
  return row;
}

function planKindEditor(kind, own, fallback) {
  const k = own || fallback;
  const on = el('input', { type: 'checkbox', class: 'pk-own' });
  on.checked = !!own;
  const steps = el('div', { class: 'pk-steps' });
  for (const s of k.steps) steps.append(planStepRow(s));
  const text = el('textarea', { class: 'pk-text', rows: 1, maxlength: 500, placeholder: t('plan.editor.kind_instructions'), 'aria-label': t('plan.editor.kind_instructions') });
  text.value = k.instructions || '';
  const inner = el('div', { class: 'pk-inner', hidden: !own }, text, steps,
    el('button', { type: 'button', class: 'small pk-add', text: t('plan.editor.add_step'), on: { click: () => steps.append(planStepRow({ action: 'talk_to_person', instructions: '' })) } }));
  on.addEventListener('change', () => { inner.hidden = !on.checked; });
  return el('fieldset', { class: 'plan-kind-edit', dataset: { kind } },
    el('legend', {}, el('label', { class: 'check-label' }, on, ` ${t('plan.editor.own_steps', { kind: PLAN_KINDS[kind] })}`)),
    inner);
}

function openPlanEditor(data) {
  if (!isSupervisor()) return;
  const d = planDialog();
  S.planEditing = data.subscriber;
  const plan = data.current ? data.current.plan : { relatives_first: null, instructions: '', kinds: [] };
  const who = S.subscriber && S.subscriber.id === data.subscriber ? S.subscriber.name : data.subscriber;
  $('plan-dialog-who').textContent = data.current ? t('plan.editor.who_version', { who, version: data.current.version }) : who;
  const first = $('plan-first');
  clear(first);
  first.append(el('option', { value: '', text: data.relatives_first_default ? t('plan.editor.first_default_yes') : t('plan.editor.first_default_no') }),
    el('option', { value: 'true', text: t('plan.editor.first_yes') }),
    el('option', { value: 'false', text: t('plan.editor.first_no') }));
  first.value = plan.relatives_first === null || plan.relatives_first === undefined ? '' : String(plan.relatives_first);
  $('plan-instructions').value = plan.instructions || '';
  const kinds = $('plan-kinds-edit');
  clear(kinds);
  for (const kind of Object.keys(PLAN_KINDS)) {
    kinds.append(planKindEditor(kind, plan.kinds.find((k) => k.kind === kind), data.centre_default.find((k) => k.kind === kind)));
  }
  show($('plan-error'), false);
  show(d, true);
  $('plan-instructions').focus();
}

function closePlanEditor() {
  const d = $('plan-dialog');
  if (d) show(d, false);
  S.planEditing = null;
}

/** The plan as the form says (model::plan::ResponsePlan). */
function planEditorValue() {
  const v = $('plan-first').value;
  const plan = { relatives_first: v === '' ? null : v === 'true', instructions: $('plan-instructions').value.trim(), kinds: [] };
  for (const fs of $('plan-kinds-edit').querySelectorAll('.plan-kind-edit')) {
    if (!fs.querySelector('.pk-own').checked) continue;
    const steps = [...fs.querySelectorAll('.plan-step-edit')].map((row) => ({
      action: row.querySelector('.ps-action').value,
      instructions: row.querySelector('.ps-text').value.trim(),
    }));
    plan.kinds.push({ kind: fs.dataset.kind, instructions: fs.querySelector('.pk-text').value.trim(), steps });
  }
  return plan;
}

async function savePlanEditor(ev) {
  ev.preventDefault();
  const id = S.planEditing;
  if (!id) return;
  const err = $('plan-error');
  $('plan-save').disabled = true;
  try {
    const { data } = await api('PUT', `/api/subscribers/${encodeURIComponent(id)}/plan`, planEditorValue());
    closePlanEditor();
    S.subscriberPlan = data;
    const box = $('plan-summary');
    if (box && data) renderPlanSummary(box, data);
    message(t('plan.saved', { version: data.current.version }), 'ok');
    if (S.current && S.current.subscriber === id) {
      S.planKey = null;
      loadCallPlan(S.current);
    }
  } catch (e) {
    if (e.status !== 401) {
      err.textContent = e.status === 403 ? t('plan.editor.forbidden') : t('plan.editor.save_failed', { reason: e.message });
      show(err, true);
    }
  } finally {
    $('plan-save').disabled = false;
  }
}

// ---- keys in custody: the subscriber's keys panel, the receipts, the supervisors' forms

const KEY_KINDS = ['door', 'seven_lever', 'entrance', 'access_tag', 'key_box', 'digital_lock', 'other'];
const HANDOVER_REASONS = ['installation', 'provider_change', 'end', 'other'];

function keyKindWords(kind) {
  return tHas(`keys.kind.${kind}`) ? t(`keys.kind.${kind}`) : String(kind);
}

/** "Dörrnycklar 2, Aptusbricka 1" (the paper form's words, then the count). */
function keyCountsWords(keys) {
  return (keys || []).map((k) => `${keyKindWords(k.kind)} ${k.count}`).join(', ');
}

/** A holder in words; providers by the names `names` (id -> name) gives. */
function holderWords(h, names) {
  if (!h) return '?';
  if (h.holder === 'subscriber') return t('keys.holder.subscriber');
  if (h.holder === 'cabinet') return t('keys.holder.cabinet');
  if (h.holder === 'installer') return t('keys.holder.installer', { name: h.name });
  if (h.holder === 'provider') return (names && names.get(h.id)) || h.id;
  return String(h.holder);
}

function receiptStateWords(r, names) {
  const s = r.state || {};
  if (s.state === 'signed') return t('keys.state.signed', { time: fmtFull(s.at), handed_by: s.handed_by, received_by: s.received_by });
  if (s.state === 'voided') return t('keys.state.voided', { time: fmtFull(s.at), by: s.by, reason: s.reason });
  return t('keys.state.pending');
}

/** The Keys panel of a subscriber's card (the Call view's and the subscriber page's). */
async function appendKeysPanel(card, sub) {
  const box = el('section', { class: 'keys-panel', dataset: { subscriber: sub.id } },
    el('h3', { text: t('keys.title') }), el('p', { class: 'muted', text: t('keys.loading') }));
  // Right after the access facts: where an operator looks for the keys.
  const access = card.querySelector('section.access');
  if (access) access.after(box);
  else card.append(box);
  box.subscriber = sub;
  await loadKeysPanel(box, sub.id);
}

async function loadKeysPanel(box, id) {
  try {
    const { data } = await api('GET', `/api/subscribers/${encodeURIComponent(id)}/keys`);
    if (!box.isConnected) return;
    renderKeysPanel(box, data);
  } catch (e) {
    if (!box.isConnected) return;
    clear(box);
    box.append(el('h3', { text: t('keys.title') }), el('p', { class: 'warning-text', text: t('keys.load_failed', { reason: e.message }) }));
  }
}

function renderKeysPanel(box, data) {
  clear(box);
  const names = new Map((data.providers || []).map((p) => [p.id, p.name]));
  S.keysView = { data, names };
  const head = el('div', { class: 'plan-summary-head' }, el('h3', { text: t('keys.title') }));
  if (isSupervisor()) {
    head.append(el('button', { type: 'button', class: 'secondary small keys-new', text: t('keys.new'), on: { click: () => openReceiptForm(data.subscriber, box.subscriber) } }));
  }
  box.append(head);
  const held = data.holdings || [];
  if (!held.length) {
    box.append(el('p', { class: 'keys-held none muted', text: t('keys.none_held') }));
  } else {
    const dl = el('dl', { class: 'facts keys-held' });
    for (const h of held) {
      dl.append(el('dt', { text: holderWords(h, names) }), el('dd', { class: 'keys-line', dataset: { holder: h.holder, id: h.id || h.name || '' }, text: keyCountsWords(h.keys) }));
    }
    box.append(el('div', { class: 'fact-label', text: t('keys.held_by') }), dl);
  }
  const receipts = data.receipts || [];
  const list = el('ol', { class: 'receipt-list' });
  for (const r of receipts) {
    const li = el('li', { class: `receipt ${r.pending ? 'pending' : (r.state && r.state.state) || ''}`, dataset: { receipt: r.id } },
      el('span', { class: 'receipt-who', text: t('keys.receipt_line', { from: holderWords(r.from, names), to: holderWords(r.to, names) }) }), ' ',
      el('span', { class: 'receipt-items', text: keyCountsWords(r.items) }), ' ',
      el('span', { class: 'muted', text: `· ${tHas(`keys.reason.${r.reason}`) ? t(`keys.reason.${r.reason}`) : r.reason} · ${fmtFull(r.written_at)}` }),
      el('div', { class: `receipt-state${r.pending ? ' warning-text' : ' muted'}`, text: receiptStateWords(r, names) }));
    if (r.pending && isSupervisor()) {
      li.append(el('div', { class: 'action-row' },
        el('button', { type: 'button', class: 'primary small receipt-sign', text: t('keys.sign'), on: { click: () => openSignForm(r) } }),
        el('button', { type: 'button', class: 'small danger-outline receipt-void', text: t('keys.void'), on: { click: () => openVoidForm(r) } })));
    }
    list.append(li);
  }
  // Open while a receipt waits for signatures, or when there are only a few.
  box.append(el('details', { class: 'receipts', open: receipts.length <= 3 || receipts.some((r) => r.pending) },
    el('summary', { text: `${t('keys.receipts')} (${receipts.length})` }),
    receipts.length ? list : el('p', { class: 'muted', text: t('keys.no_receipts') })));
}

/** Loads every Keys panel shown again (the Call view's card and the subscriber page's). */
function reloadKeysPanels() {
  for (const box of document.querySelectorAll('.keys-panel')) {
    if (box.dataset.subscriber) loadKeysPanel(box, box.dataset.subscriber);
  }
}

// The three forms share one dialog, made on first use.

function keysDialog() {
  let d = $('keys-dialog');
  if (d) return d;
  d = el('div', { id: 'keys-dialog', class: 'overlay', hidden: true },
    el('form', { id: 'keys-form', class: 'dialog', novalidate: true },
      el('h2', { id: 'keys-dialog-title' }),
      el('p', { id: 'keys-dialog-what', class: 'muted' }),
      el('div', { id: 'keys-dialog-fields' }),
      el('p', { id: 'keys-error', class: 'form-error', role: 'alert', hidden: true }),
      el('div', { class: 'action-row dialog-buttons' },
        el('button', { type: 'submit', id: 'keys-submit', class: 'primary' }),
        el('button', { type: 'button', id: 'keys-cancel', 'data-i18n': 'dialog.cancel', text: t('dialog.cancel'), on: { click: closeKeysDialog } }))));
  document.body.append(d);
  $('keys-form').addEventListener('submit', submitKeysForm);
  d.addEventListener('keydown', (e) => {
    e.stopPropagation();
    if (e.key === 'Escape') closeKeysDialog();
  });
  return d;
}

function closeKeysDialog() {
  const d = $('keys-dialog');
  if (d) show(d, false);
  S.keysForm = null;
}

function openKeysDialog(form, title, what, submit, fields) {
  const d = keysDialog();
  S.keysForm = form;
  $('keys-dialog-title').textContent = title;
  $('keys-dialog-what').textContent = what || '';
  show($('keys-dialog-what'), !!what);
  const box = $('keys-dialog-fields');
  clear(box);
  appendAll(box, ...fields);
  $('keys-submit').textContent = submit;
  $('keys-submit').disabled = false;
  show($('keys-error'), false);
  show(d, true);
  const first = box.querySelector('select, input, textarea');
  if (first) first.focus();
}

function field(id, label, input) {
  input.id = id;
  return el('div', { class: 'field' }, el('label', { for: id, text: label }), input);
}

/** A holder picker: who, and the installer's name or the provider. */
function holderPicker(prefix, label, providers) {
  const kind = el('select', {});
  for (const k of ['installer', 'provider', 'cabinet', 'subscriber']) {
    kind.append(el('option', { value: k, text: k === 'installer' ? t('keys.form.installer_name') : (k === 'provider' ? t('keys.form.provider') : t(`keys.holder.${k}`)) }));
  }
  const name = el('input', { type: 'text', maxlength: 100, autocomplete: 'off' });
  const prov = el('select', {});
  for (const p of providers) prov.append(el('option', { value: p.id, text: p.name }));
  const nameField = field(`${prefix}-name`, t('keys.form.installer_name'), name);
  const provField = field(`${prefix}-provider`, t('keys.form.provider'), prov);
  const sync = () => {
    nameField.hidden = kind.value !== 'installer';
    provField.hidden = kind.value !== 'provider';
  };
  kind.addEventListener('change', sync);
  const fs = el('fieldset', { class: 'holder-pick', id: `${prefix}-holder` }, el('legend', { text: label }),
    field(`${prefix}-kind`, label, kind), nameField, provField);
  fs.value = () => {
    if (kind.value === 'installer') return { holder: 'installer', name: name.value.trim() };
    if (kind.value === 'provider') return { holder: 'provider', id: prov.value };
    return { holder: kind.value };
  };
  fs.set = (k, v) => {
    kind.value = k;
    if (k === 'installer') name.value = v || '';
    if (k === 'provider' && v) prov.value = v;
    sync();
  };
  sync();
  return fs;
}

async function openReceiptForm(subscriber, sub) {
  if (!isSupervisor()) return;
  let providers = [];
  try {
    const { data } = await api('GET', '/api/registers/choices');
    providers = (data && data.care_providers) || [];
  } catch (e) {
    reportError(t('keys.failed', { reason: '' }), e);
    return;
  }
  const from = holderPicker('kr-from', t('keys.form.from'), providers);
  const to = holderPicker('kr-to', t('keys.form.to'), providers);
  // The usual first handover: from the installer to the subscriber's home care.
  const own = sub && providers.find((p) => p.name === sub.care_provider || p.id === sub.care_provider);
  from.set('installer', '');
  to.set('provider', own ? own.id : null);
  const counts = el('fieldset', { class: 'key-counts', id: 'kr-counts' }, el('legend', { text: t('keys.form.count') }));
  for (const k of KEY_KINDS) {
    counts.append(field(`kr-count-${k}`, keyKindWords(k), el('input', { type: 'number', min: 0, max: 20, step: 1, value: '', class: 'key-count', inputmode: 'numeric', dataset: { kind: k } })));
  }
  const reason = el('select', {});
  for (const r of HANDOVER_REASONS) reason.append(el('option', { value: r, text: t(`keys.reason.${r}`) }));
  openKeysDialog({ kind: 'write', subscriber, from, to, counts, reason }, t('keys.form.title'), sub ? sub.name : subscriber, t('keys.form.submit'),
    [from, to, counts, field('kr-reason', t('keys.form.reason'), reason)]);
}

function openSignForm(r) {
  if (!isSupervisor()) return;
  const names = S.keysView ? S.keysView.names : null;
  const handed = el('input', { type: 'text', maxlength: 100, autocomplete: 'off' });
  const received = el('input', { type: 'text', maxlength: 100, autocomplete: 'off' });
  openKeysDialog({ kind: 'sign', receipt: r, handed, received }, `${t('keys.form.title')} · ${t('keys.sign.title')}`,
    `${t('keys.receipt_line', { from: holderWords(r.from, names), to: holderWords(r.to, names) })}: ${keyCountsWords(r.items)}`,
    t('keys.sign.submit'),
    [el('p', { class: 'muted hint', text: t('keys.sign.hint') }),
      field('ks-handed-by', t('keys.sign.handed_by'), handed),
      field('ks-received-by', t('keys.sign.received_by'), received)]);
}

function openVoidForm(r) {
  if (!isSupervisor()) return;
  const names = S.keysView ? S.keysView.names : null;
  const reason = el('input', { type: 'text', maxlength: 500, autocomplete: 'off' });
  openKeysDialog({ kind: 'void', receipt: r, reason }, t('keys.void.title'),
    `${t('keys.receipt_line', { from: holderWords(r.from, names), to: holderWords(r.to, names) })}: ${keyCountsWords(r.items)}`,
    t('keys.void.submit'), [field('kv-reason', t('keys.void.reason'), reason)]);
}

async function submitKeysForm(ev) {
  ev.preventDefault();
  const f = S.keysForm;
  if (!f) return;
  const err = $('keys-error');
  const fail = (text) => {
    err.textContent = text;
    show(err, true);
  };
  let path;
  let body;
  if (f.kind === 'write') {
    const items = [...f.counts.querySelectorAll('input.key-count')]
      .map((i) => ({ kind: i.dataset.kind, count: Number(i.value) || 0 }))
      .filter((k) => k.count > 0);
    if (!items.length) {
      fail(t('keys.form.no_items'));
      return;
    }
    path = `/api/subscribers/${encodeURIComponent(f.subscriber)}/receipts`;
    body = { from: f.from.value(), to: f.to.value(), items, reason: f.reason.value };
  } else if (f.kind === 'sign') {
    path = `/api/receipts/${f.receipt.id}/sign`;
    body = { handed_by: f.handed.value.trim(), received_by: f.received.value.trim() };
  } else {
    path = `/api/receipts/${f.receipt.id}/void`;
    body = { reason: f.reason.value.trim() };
  }
  $('keys-submit').disabled = true;
  try {
    const { data } = await api('POST', path, body);
    closeKeysDialog();
    const done = f.kind === 'write' ? 'keys.form.written' : (f.kind === 'sign' ? 'keys.sign.done' : 'keys.void.done');
    message(t(done, { id: data.id }), 'ok');
    // The live feed's `subscriber` loads the card again (with its Keys panel); without it,
    // the panels are loaded here.
    if ($('connection-status').dataset.state !== 'open') reloadKeysPanels();
  } catch (e) {
    if (e.status !== 401) fail(t('keys.failed', { reason: e.message }));
  } finally {
    $('keys-submit').disabled = false;
  }
}

// ---- a subscriber's life (supervisors): orders, the life on the card, installation, consent, billing

const ORDER_KINDS = ['new_alarm', 'change', 'provider_change', 'end', 'lock_install', 'lock_removal'];
/** Done by hand; a new alarm is done by its installation and a provider change on its date. */
const ORDERS_BY_HAND = new Set(['change', 'end', 'lock_install', 'lock_removal']);
const LIFE_STATUSES = ['ordered', 'active', 'ending', 'ended'];
const CHOICES_FRESH_MS = 60000; // the providers' names are asked again after this

function orderKindWords(kind) {
  return tHas(`orders.kind.${kind}`) ? t(`orders.kind.${kind}`) : String(kind);
}

function orderStateOf(o) {
  return (o.state && o.state.state) || 'open';
}

/** Late now, by the clock: 'return_due' (back to the case officer), 'overdue', or null. */
function orderLateness(o, now) {
  if (orderStateOf(o) !== 'open') return null;
  if (o.return_by && now >= parseTs(o.return_by)) return 'return_due';
  if (now >= parseTs(o.due)) return 'overdue';
  return null;
}

function orderLatenessWords(l) {
  return l === 'return_due' ? t('orders.return_due') : t('orders.overdue');
}

/** "Slutförd 2026-03-02 10:15 av siv", "Makulerad … : reason". */
function orderClosedWords(o) {
  const s = o.state || {};
  const st = orderStateOf(o);
  const words = tHas(`orders.state.${st}`) ? t(`orders.state.${st}`) : st;
  if (st === 'open') return words;
  if (!s.reason) return t('orders.closed_done', { state: words, time: fmtFull(s.at), by: s.by || '?' });
  return t('orders.closed_line', { state: words, time: fmtFull(s.at), by: s.by || '?', reason: s.reason });
}

/** The directory's providers and areas (GET /api/registers/choices), kept a minute. */
async function careChoices() {
  if (S.careChoices && serverNow() - S.careChoices.at < CHOICES_FRESH_MS) return S.careChoices;
  try {
    const { data } = await api('GET', '/api/registers/choices');
    const providers = (data && data.care_providers) || [];
    S.careChoices = { at: serverNow(), providers, areas: (data && data.areas) || [], names: new Map(providers.map((p) => [p.id, p.name])) };
  } catch (e) {
    if (!S.careChoices) S.careChoices = { at: 0, providers: [], areas: [], names: new Map() };
  }
  return S.careChoices;
}

function providerName(id) {
  return (S.careChoices && S.careChoices.names.get(id)) || id || '-';
}

/** A subscriber id as a link to their page. */
function subscriberLink(id) {
  return el('button', {
    type: 'button', class: 'link-like subscriber-link', text: id, dataset: { subscriber: String(id) },
    title: t('orders.open_card'),
    on: { click: (e) => { e.stopPropagation(); openSubscriberPage(id); } },
  });
}

// The orders page.

function showOrders(opts) {
  if (!isSupervisor()) return;
  leaveCall();
  if (opts && opts.focus !== undefined) {
    S.orders.focus = opts.focus;
    S.orders.expanded.add(opts.focus);
  }
  showView('orders');
  renderOrders();
  loadOrders();
  blurHidden();
}

async function loadOrders() {
  await single('orders', async () => {
    try {
      await careChoices();
      const { data } = await api('GET', '/api/orders');
      S.orders.list = Array.isArray(data) ? data : [];
      S.orders.at = serverNow();
      S.orders.failed = false;
      pageError('orders-error', '');
    } catch (e) {
      if (e.status === 401) return;
      S.orders.failed = true;
      pageError('orders-error', t('orders.load_failed', { error: e.message }));
    }
    if (S.view === 'orders') renderOrders();
  });
}

/** After a live change of a subscriber (an order, a life): the orders page once, soon. */
function scheduleOrdersReload() {
  if (S.orders.soon) return;
  S.orders.soon = setTimeout(() => {
    S.orders.soon = null;
    if (S.me && S.view === 'orders') loadOrders();
  }, 500);
}

function renderOrders() {
  renderUpdated('orders-updated', S.orders.at, PAGE_POLLS.orders[1], S.orders.failed);
  const box = $('orders-list');
  if (S.orders.list === null) {
    clear(box);
    box.append(el('p', { class: 'muted', text: t('orders.loading') }));
    return;
  }
  const now = serverNow();
  // Oldest first, as the server gives them.
  const list = S.orders.list.slice().sort((a, b) => (parseTs(a.received_at) - parseTs(b.received_at)) || (a.id - b.id));
  const late = list.filter((o) => orderLateness(o, now)).length;
  const back = list.filter((o) => orderLateness(o, now) === 'return_due').length;
  $('orders-summary').textContent = [t('orders.shown', { n: list.length }),
    late ? t('sup.orders_overdue', { n: late }) : '', back ? t('orders.return_due_count', { n: back }) : '']
    .filter(Boolean).join(' · ');
  $('orders-summary').classList.toggle('bad', late > 0);
  keepInputs(box, () => {
    clear(box);
    for (const o of list.slice(0, MAX_LIST_ROWS)) box.append(orderCard(o, now));
    if (!list.length) box.append(el('p', { class: 'empty-board', text: t('orders.none') }));
    if (list.length > MAX_LIST_ROWS) box.append(el('p', { class: 'muted', text: t('page.first_shown', { max: MAX_LIST_ROWS, n: list.length }) }));
  });
  if (S.orders.focus !== null) {
    const card = box.querySelector(`.order[data-order-id="${S.orders.focus}"]`);
    if (card) {
      card.scrollIntoView({ block: 'center' });
      card.classList.add('focused');
      S.orders.focus = null;
    }
  }
}

function orderCard(o, now) {
  const lateness = orderLateness(o, now);
  const expanded = S.orders.expanded.has(o.id);
  const card = el('article', {
    class: `wo order${lateness ? ' is-late' : ''}${expanded ? ' expanded' : ''}`,
    dataset: { orderId: String(o.id), kind: o.kind, lateness: lateness || '' },
  });
  card.append(el('header', { class: 'wo-head' },
    el('span', { class: 'mono wo-id', text: `#${o.id}` }),
    el('span', { class: 'wo-fault order-kind', text: orderKindWords(o.kind) }),
    o.acute ? el('span', { class: 'tag tag-acute', text: t('orders.acute') }) : null,
    lateness ? el('span', { class: `wo-late order-late late-${lateness}`, text: orderLatenessWords(lateness) }) : null,
    el('span', { class: 'wo-installer' }, el('span', { class: 'muted', text: `${t('orders.subscriber')} ` }), subscriberLink(o.subscriber))));
  card.append(el('div', { class: 'wo-facts' },
    el('div', {}, el('span', { class: 'fact-label', text: t('orders.decided_on') }), ' ', el('span', { class: 'order-decided', text: o.decided_on || '-' })),
    el('div', {}, el('span', { class: 'fact-label', text: t('orders.received') }), ' ', timeNode(o.received_at, fmtDay),
      el('span', { class: 'muted', text: ` · ${t('orders.entered_by', { by: o.entered_by })}` })),
    o.effective ? el('div', {}, el('span', { class: 'fact-label', text: t('orders.effective') }), ' ', el('span', { text: o.effective })) : null,
    deadlineNode(t('orders.due'), o.due, null, '', !!lateness, now),
    o.return_by ? deadlineNode(t('orders.return_by'), o.return_by, null, '', lateness === 'return_due', now) : null));
  card.append(el('button', {
    type: 'button', class: 'small secondary wo-toggle order-toggle', 'aria-expanded': expanded ? 'true' : 'false',
    text: expanded ? t('orders.hide') : t('orders.details'),
    dataset: { focusKey: `order-toggle-${o.id}` },
    on: { click: (e) => toggleOrder(o, card, e.currentTarget) },
  }));
  if (expanded) card.append(orderDetail(o));
  return card;
}

/** Opens or closes one order's detail in place (the list is not drawn again, so the button
 *  clicked stays and nothing else on the page moves). */
function toggleOrder(o, card, button) {
  const open = !S.orders.expanded.has(o.id);
  if (open) S.orders.expanded.add(o.id); else S.orders.expanded.delete(o.id);
  card.classList.toggle('expanded', open);
  button.setAttribute('aria-expanded', open ? 'true' : 'false');
  button.textContent = open ? t('orders.hide') : t('orders.details');
  const detail = card.querySelector('.order-detail');
  if (open && !detail) card.append(orderDetail(o));
  if (!open && detail) detail.remove();
}

function orderDetail(o) {
  const box = el('div', { class: 'wo-detail order-detail' });
  box.append(factList([
    [t('orders.health_notes'), o.health_notes ? el('span', { class: 'pre', text: o.health_notes }) : null],
    [t('orders.directions'), o.directions ? el('span', { class: 'pre', text: o.directions }) : null],
    [t('orders.keys_required'), (o.keys_required || []).length ? keyCountsWords(o.keys_required) : t('orders.no_keys')],
    o.new_provider ? [t('orders.new_provider'), providerName(o.new_provider)] : null,
    o.placed_by ? [t('orders.placed_by'), o.placed_by] : null,
    [t('orders.note'), o.note || null],
    o.external_id ? [t('orders.external_id'), el('span', { class: 'mono', text: o.external_id })] : null,
  ], 'order-facts'));
  if (orderStateOf(o) !== 'open') {
    box.append(el('p', { class: 'muted order-closed', text: orderClosedWords(o) }));
    return box;
  }
  const k = (f) => `order-${o.id}-${f}`;
  const actions = el('div', { class: 'wo-actions' });
  if (ORDERS_BY_HAND.has(o.kind)) {
    actions.append(el('div', { class: 'action-row' },
      el('button', { type: 'button', class: 'primary order-complete', text: t('orders.complete'), dataset: { focusKey: k('complete') },
        on: { click: (e) => orderAction(o, 'complete', '', e.currentTarget) } })));
  } else {
    actions.append(el('p', { class: 'muted', text: o.kind === 'new_alarm' ? t('orders.done_by_installation') : t('orders.done_on_date') }));
  }
  for (const [action, label, placeholder, cls] of [
    ['send_back', t('orders.send_back_label'), t('orders.send_back_placeholder'), ''],
    ['cancel', t('orders.cancel_label'), t('orders.cancel_placeholder'), 'danger-outline'],
  ]) {
    const input = el('input', { type: 'text', class: `order-${action}-reason`, id: k(action), maxlength: 500, placeholder, dataset: { keep: k(action) } });
    const button = el('button', { type: 'button', class: `${cls} order-${action}`, text: t(`orders.${action}`), dataset: { focusKey: k(`${action}-b`) } });
    button.addEventListener('click', () => orderAction(o, action, input.value.trim(), button, input));
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); button.click(); } });
    actions.append(el('div', { class: 'wo-action' }, el('label', { for: k(action), text: label }), el('div', { class: 'inline-form' }, input, button)));
  }
  box.append(actions);
  return box;
}

/** POST /api/orders/{id}/complete|send_back|cancel (the last two with a reason). */
async function orderAction(o, action, reason, button, input) {
  if (action !== 'complete' && !reason) {
    message(t('orders.needs_reason'), 'warn');
    if (input) input.focus();
    return;
  }
  if (button) button.disabled = true;
  try {
    await api('POST', `/api/orders/${encodeURIComponent(o.id)}/${action}`, action === 'complete' ? undefined : { reason });
    if (input) input.value = '';
    message(t(`orders.is_${action}`, { id: o.id }), 'ok');
  } catch (e) {
    if (e.status === 409 || e.status === 422 || e.status === 404) message(t('orders.refused', { id: o.id, error: e.message }), 'warn');
    else reportError(t('orders.label', { id: o.id }), e);
  } finally {
    if (button) button.disabled = false;
    loadOrders();
    scheduleSupervision();
  }
}

// The forms (an order by hand, an installation, the consent) share one dialog, made on first use.

function careDialog() {
  let d = $('care-dialog');
  if (d) return d;
  d = el('div', { id: 'care-dialog', class: 'overlay', hidden: true },
    el('form', { id: 'care-form', class: 'dialog', novalidate: true },
      el('h2', { id: 'care-dialog-title' }),
      el('p', { id: 'care-dialog-what', class: 'muted' }),
      el('div', { id: 'care-dialog-fields' }),
      el('p', { id: 'care-error', class: 'form-error', role: 'alert', hidden: true }),
      el('div', { class: 'action-row dialog-buttons' },
        el('button', { type: 'submit', id: 'care-submit', class: 'primary' }),
        el('button', { type: 'button', id: 'care-cancel', text: t('dialog.cancel'), on: { click: closeCareDialog } }))));
  document.body.append(d);
  $('care-form').addEventListener('submit', submitCareForm);
  d.addEventListener('keydown', (e) => {
    e.stopPropagation();
    if (e.key === 'Escape') closeCareDialog();
  });
  return d;
}

function closeCareDialog() {
  const d = $('care-dialog');
  if (d) show(d, false);
  S.careForm = null;
}

function openCareDialog(form, title, what, submit, fields) {
  const d = careDialog();
  S.careForm = form;
  $('care-dialog-title').textContent = title;
  $('care-dialog-what').textContent = what || '';
  show($('care-dialog-what'), !!what);
  const box = $('care-dialog-fields');
  clear(box);
  appendAll(box, ...fields);
  $('care-submit').textContent = submit;
  $('care-submit').disabled = false;
  $('care-cancel').textContent = t('dialog.cancel');
  show($('care-error'), false);
  show(d, true);
  const first = box.querySelector('select, input, textarea');
  if (first) first.focus();
}

function providerSelect(providers, empty) {
  const s = el('select', {});
  if (empty) s.append(el('option', { value: '', text: empty }));
  for (const p of providers) s.append(el('option', { value: p.id, text: p.name }));
  return s;
}

const PERSON_FIELDS = [['name', 100], ['personal_number', 13], ['address', 100], ['postcode', 10], ['city', 60],
  ['area', 60], ['phone', 30], ['language', 10], ['placed_by', 100]];

async function openOrderForm(subscriber) {
  if (!isSupervisor()) return;
  const choices = await careChoices();
  const kind = el('select', {});
  for (const k of ORDER_KINDS) kind.append(el('option', { value: k, text: orderKindWords(k) }));
  const sub = el('input', { type: 'text', maxlength: 64, autocomplete: 'off', value: subscriber || '' });
  const decided = el('input', { type: 'date', value: zoneParts(serverNow()).date });
  const acute = el('input', { type: 'checkbox', id: 'of-acute' });
  const effective = el('input', { type: 'date' });
  const newProvider = providerSelect(choices.providers, t('orders.form.choose'));
  const text = (max) => el('textarea', { rows: 2, maxlength: max });
  const health = text(4000);
  const directions = text(4000);
  const note = text(4000);
  const counts = el('fieldset', { class: 'key-counts', id: 'of-counts' }, el('legend', { text: t('orders.keys_required') }));
  for (const k of KEY_KINDS) {
    counts.append(field(`of-count-${k}`, keyKindWords(k), el('input', { type: 'number', min: 0, max: 20, step: 1, value: '', class: 'key-count', inputmode: 'numeric', dataset: { kind: k } })));
  }
  const person = {};
  const personBox = el('fieldset', { class: 'order-person', id: 'of-person' }, el('legend', { text: t('orders.form.person') }));
  for (const [f, max] of PERSON_FIELDS) {
    person[f] = el('input', { type: 'text', maxlength: max, autocomplete: 'off' });
    personBox.append(field(`of-person-${f}`, t(`orders.person.${f}`), person[f]));
  }
  person.care_provider = providerSelect(choices.providers, t('orders.form.choose'));
  personBox.append(field('of-person-care_provider', t('orders.person.care_provider'), person.care_provider));
  const acuteField = el('div', { class: 'field' }, el('label', { class: 'check-label', for: 'of-acute' }, acute, ' ', t('orders.form.acute')));
  const effField = field('of-effective', t('orders.effective'), effective);
  const provField = field('of-new-provider', t('orders.new_provider'), newProvider);
  const sync = () => {
    const k = kind.value;
    personBox.hidden = k !== 'new_alarm';
    acuteField.hidden = k !== 'new_alarm';
    effField.hidden = k !== 'provider_change' && k !== 'end';
    provField.hidden = k !== 'provider_change';
  };
  kind.addEventListener('change', sync);
  sync();
  openCareDialog({ kind: 'order', order: { kind, sub, decided, acute, effective, newProvider, health, directions, note, counts, person } },
    t('orders.form.title'), t('orders.form.what'), t('orders.form.submit'),
    [field('of-kind', t('orders.form.kind'), kind), field('of-subscriber', t('orders.subscriber'), sub),
      field('of-decided', t('orders.decided_on'), decided), acuteField, effField, provField,
      field('of-health', t('orders.health_notes'), health), field('of-directions', t('orders.directions'), directions),
      counts, field('of-note', t('orders.note'), note), personBox]);
}

function orderBody(f) {
  const k = f.kind.value;
  const body = {
    kind: k,
    subscriber: f.sub.value.trim(),
    decided_on: f.decided.value || null,
    acute: k === 'new_alarm' && f.acute.checked,
    health_notes: f.health.value,
    directions: f.directions.value,
    note: f.note.value,
    keys_required: [...f.counts.querySelectorAll('input.key-count')]
      .map((i) => ({ kind: i.dataset.kind, count: Number(i.value) || 0 }))
      .filter((x) => x.count > 0),
  };
  if (k === 'provider_change' || k === 'end') body.effective = f.effective.value || null;
  if (k === 'provider_change') body.new_provider = f.newProvider.value || null;
  if (k === 'new_alarm' && Object.keys(f.person).some((p) => f.person[p].value.trim())) {
    body.person = {};
    for (const p of Object.keys(f.person)) body.person[p] = f.person[p].value.trim();
    if (!body.person.placed_by) body.person.placed_by = null;
  }
  return body;
}

async function openInstallForm(id, sub) {
  if (!isSupervisor()) return;
  const devs = (sub && sub.devices) || [];
  const account = el('select', {});
  for (const d of devs) account.append(el('option', { value: d.account, text: `${d.account}${d.device_type ? ` · ${deviceTypeWords(d.device_type)}` : ''}` }));
  const installer = el('input', { type: 'text', maxlength: 100, autocomplete: 'off' });
  const mins = el('input', { type: 'number', min: 1, max: 1440, step: 1, inputmode: 'numeric', placeholder: t('life.install.default_window') });
  openCareDialog({ kind: 'install', subscriber: id, account, installer, mins }, t('life.install.title'), (sub && sub.name) || id, t('life.install.submit'),
    [el('p', { class: 'muted hint', text: t('life.install.hint') }),
      devs.length ? field('li-account', t('life.install.device'), account) : el('p', { class: 'warning-text', text: t('life.install.no_devices') }),
      field('li-installer', t('life.install.installer'), installer),
      field('li-window', t('life.install.window_mins'), mins)]);
}

function openConsentForm(id, sub) {
  if (!isSupervisor()) return;
  const signedOn = el('input', { type: 'date', value: zoneParts(serverNow()).date });
  const signedBy = el('input', { type: 'text', maxlength: 100, autocomplete: 'off', value: (sub && sub.name) || '' });
  openCareDialog({ kind: 'consent', subscriber: id, signedOn, signedBy }, t('life.consent.title'), (sub && sub.name) || id, t('life.consent.submit'),
    [el('blockquote', { class: 'consent-text' },
      el('p', { text: t('life.consent.text_keys') }), el('p', { text: t('life.consent.text_health') })),
    field('lc-signed-on', t('life.consent.signed_on'), signedOn),
    field('lc-signed-by', t('life.consent.signed_by'), signedBy)]);
}

async function submitCareForm(ev) {
  ev.preventDefault();
  const f = S.careForm;
  if (!f) return;
  const err = $('care-error');
  let path;
  let body;
  let done;
  if (f.kind === 'order') {
    path = '/api/orders';
    body = orderBody(f.order);
    done = 'orders.form.entered';
  } else if (f.kind === 'install') {
    path = `/api/subscribers/${encodeURIComponent(f.subscriber)}/installation`;
    body = { account: f.account.value, installer: f.installer.value.trim() };
    if (f.mins.value) body.window_mins = Number(f.mins.value);
    done = 'life.install.done';
  } else {
    path = `/api/subscribers/${encodeURIComponent(f.subscriber)}/consent`;
    body = { signed_on: f.signedOn.value, signed_by: f.signedBy.value.trim() };
    done = 'life.consent.done';
  }
  $('care-submit').disabled = true;
  try {
    const { status, data } = await api('POST', path, body);
    closeCareDialog();
    if (f.kind === 'order') {
      message(status === 201 ? t(done, { id: data.id }) : t('orders.form.known', { id: data.id }), 'ok');
      S.orders.focus = data.id;
      S.orders.expanded.add(data.id);
      if (S.view === 'orders') loadOrders();
      scheduleSupervision();
    } else {
      message(t(done), 'ok');
    }
    // The live feed's `subscriber` loads the cards again; without it, here.
    if ($('connection-status').dataset.state !== 'open') reloadLifePanels();
  } catch (e) {
    if (e.status !== 401) {
      err.textContent = t('care.refused', { reason: e.message });
      show(err, true);
    }
  } finally {
    $('care-submit').disabled = false;
  }
}

// The life on the subscriber's card.

function lifeStatusWords(s) {
  return LIFE_STATUSES.includes(s) ? t(`life.status.${s}`) : String(s);
}

function missingWords(m) {
  if (m.missing === 'test_alarm') return t('life.missing.test_alarm');
  if (m.missing === 'consent') return t('life.missing.consent');
  if (m.missing === 'keys') return t('life.missing.keys', { kind: keyKindWords(m.kind), have: m.have, need: m.need });
  return String(m.missing);
}

/** The life panel of a subscriber's card (supervisors: GET /api/subscribers/{id}/life). */
async function appendLifePanel(card, sub) {
  if (!isSupervisor()) return;
  const box = el('section', { class: 'life-panel', dataset: { subscriber: sub.id } },
    el('h3', { text: t('life.title') }), el('p', { class: 'muted', text: t('life.loading') }));
  const top = card.querySelector('.card-top');
  if (top) top.after(box);
  else card.append(box);
  box.subscriber = sub;
  await loadLifePanel(box, sub.id);
}

async function loadLifePanel(box, id) {
  try {
    await careChoices();
    const { data } = await api('GET', `/api/subscribers/${encodeURIComponent(id)}/life`);
    if (!box.isConnected) return;
    renderLifePanel(box, data);
  } catch (e) {
    if (!box.isConnected) return;
    clear(box);
    const head = el('div', { class: 'plan-summary-head' }, el('h3', { text: t('life.title') }));
    if (e.status === 404) {
      head.append(el('button', { type: 'button', class: 'secondary small life-new-order', text: t('orders.new'), on: { click: () => openOrderForm(id) } }));
      box.append(head, el('p', { class: 'muted life-none', text: t('life.none') }));
    } else {
      box.append(head, el('p', { class: 'warning-text', text: t('life.load_failed', { reason: e.message }) }));
    }
  }
}

function reloadLifePanels() {
  for (const box of document.querySelectorAll('.life-panel')) {
    if (box.dataset.subscriber) loadLifePanel(box, box.dataset.subscriber);
  }
}

function renderLifePanel(box, data) {
  clear(box);
  const life = data.life || {};
  const sub = box.subscriber;
  const id = life.subscriber || box.dataset.subscriber;
  box.dataset.status = life.status || '';
  const head = el('div', { class: 'plan-summary-head' },
    el('h3', {}, t('life.title'), ' ', el('span', { class: `life-status life-status-${life.status}`, text: lifeStatusWords(life.status) })));
  const buttons = el('div', { class: 'action-row' });
  if (life.status === 'ordered') {
    buttons.append(el('button', { type: 'button', class: 'secondary small life-install', text: t('life.install.open'), on: { click: () => openInstallForm(id, sub) } }));
    if (!life.consent) buttons.append(el('button', { type: 'button', class: 'secondary small life-consent', text: t('life.consent.record'), on: { click: () => openConsentForm(id, sub) } }));
  }
  buttons.append(el('button', { type: 'button', class: 'secondary small life-new-order', text: t('orders.new'), on: { click: () => openOrderForm(id) } }));
  head.append(buttons);
  box.append(head);
  const missing = data.missing || [];
  if (missing.length) {
    box.append(el('p', { class: 'life-missing warning-text', text: t('life.missing', { what: missing.map(missingWords).join(', ') }) }));
  }
  const inst = life.installation;
  let test = null;
  if (inst) {
    if (inst.test) test = el('span', { class: 'ok-text life-test', text: t('life.test_seen', { time: fmtFull(inst.test.at) }) });
    else if (serverNow() < parseTs(inst.window_ends)) test = el('span', { class: 'life-test warning-text', text: t('life.test_waiting') });
    else test = el('span', { class: 'life-test bad-text', text: t('life.window_closed') });
  }
  const c = life.consent;
  box.append(factList([
    [t('life.provider_now'), data.provider_now ? providerName(data.provider_now) : null],
    life.installed_on ? [t('life.installed_on'), life.installed_on] : null,
    life.ended_on ? [t('life.ended_on'), life.ended_on] : null,
    [t('life.installation'), inst
      ? el('span', { class: 'life-installation' }, t('life.installation_line', { account: inst.account, installer: inst.installer, opened: fmtFull(inst.opened_at), ends: fmtFull(inst.window_ends) }))
      : t('life.no_installation')],
    inst ? [t('life.test'), test] : null,
    [t('life.consent'), c
      ? el('span', { class: 'life-consent-line' }, t('life.consent_line', { signed_on: c.signed_on, signed_by: c.signed_by, recorded_by: c.recorded_by, time: fmtFull(c.recorded_at) }))
      : el('span', { class: 'life-consent-line muted', text: t('life.no_consent') })],
  ], 'life-facts'));
  const providers = el('ol', { class: 'life-providers' });
  for (const p of life.providers || []) {
    providers.append(el('li', { dataset: { provider: p.provider } }, t('life.provider_from', { from: p.from, provider: providerName(p.provider) })));
  }
  box.append(el('div', { class: 'fact-label', text: t('life.providers') }), providers);
  const orders = data.orders || [];
  const now = serverNow();
  const ol = el('ol', { class: 'life-orders' });
  for (const o of orders) {
    const late = orderLateness(o, now);
    const open = orderStateOf(o) === 'open';
    ol.append(el('li', { class: `life-order${late ? ' late' : ''}`, dataset: { orderId: String(o.id), state: orderStateOf(o) } },
      open
        ? el('button', { type: 'button', class: 'link-like', text: `#${o.id} ${orderKindWords(o.kind)}`, on: { click: () => showOrders({ focus: o.id }) } })
        : el('span', { text: `#${o.id} ${orderKindWords(o.kind)}` }),
      el('span', { class: 'muted', text: ` · ${t('orders.decided_on')} ${o.decided_on}` }),
      el('span', { class: open ? '' : 'muted', text: ` · ${open ? t('orders.state.open') : orderClosedWords(o)}` }),
      late ? el('span', { class: 'bad-text', text: ` · ${orderLatenessWords(late)}` }) : null));
  }
  box.append(el('details', { class: 'life-orders-box', open: orders.length <= 3 || orders.some((o) => orderStateOf(o) === 'open') },
    el('summary', { text: `${t('life.orders')} (${orders.length})` }),
    orders.length ? ol : el('p', { class: 'muted', text: t('life.no_orders') })));
  const history = life.history || [];
  const hl = el('ol', { class: 'timeline plain-timeline life-history' });
  for (const e of history.slice().reverse()) {
    hl.append(el('li', { class: 'tl' },
      el('time', { class: 'tl-time', datetime: e.at, title: fmtFull(e.at), text: fmtHM(e.at) }),
      el('div', { class: 'tl-body' },
        el('div', { class: 'tl-head' }, el('span', { class: 'tl-what', text: e.what }), ' ',
          el('span', { class: 'muted', text: t('tl.by') }), ' ', el('span', { class: 'tl-user', text: e.by })))));
  }
  box.append(el('details', { class: 'life-history-box', open: history.length <= 6 },
    el('summary', { text: `${t('life.history')} (${history.length})` }),
    history.length ? hl : el('p', { class: 'muted', text: t('tl.nothing') })));
}

// Billing (supervisors): a month's rows per municipality and provider, and its CSV.

function showBilling() {
  if (!isSupervisor() && !isTenant()) return;
  leaveCall();
  showView('billing');
  const m = $('billing-month');
  if (!m.value) m.value = thisMonth();
  updateBillingLink();
  blurHidden();
  loadBilling();
}

function billingMonth() {
  const v = $('billing-month').value;
  return /^\d{4}-\d\d$/.test(v) ? v : thisMonth();
}

function updateBillingLink() {
  $('billing-csv').href = `/api/reports/billing?month=${encodeURIComponent(billingMonth())}&format=csv`;
  $('billing-csv').setAttribute('download', `vakt-billing-${billingMonth()}.csv`);
}

async function loadBilling() {
  const month = billingMonth();
  updateBillingLink();
  const box = $('billing-content');
  clear(box);
  box.append(el('p', { class: 'muted', text: t('report.loading', { month }) }));
  try {
    await careChoices();
    const { data } = await api('GET', `/api/reports/billing?month=${encodeURIComponent(month)}`);
    if (billingMonth() !== month) return;
    pageError('billing-error', '');
    renderBilling(Array.isArray(data) ? data : [], month);
  } catch (e) {
    if (e.status === 401 || billingMonth() !== month) return;
    clear(box);
    pageError('billing-error', t('billing.failed', { month, error: e.message }));
  }
}

function renderBilling(rows, month) {
  const box = $('billing-content');
  clear(box);
  box.append(el('p', { class: 'report-head' }, el('strong', { text: t('report.month', { month }) }), ` · ${tn('billing.subscribers', rows.length)}`));
  const groups = new Map();
  for (const r of rows) {
    const key = `${r.municipality}\u0000${r.provider}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  const keys = [...groups.keys()].sort();
  const heads = ['subscriber', 'name', 'installed_on', 'ended_on'].map((h) => el('th', { text: t(`billing.col.${h}`) }));
  const tbody = el('tbody');
  for (const key of keys) {
    const list = groups.get(key).sort((a, b) => String(a.subscriber).localeCompare(String(b.subscriber)));
    const [municipality, provider] = key.split('\u0000');
    tbody.append(el('tr', { class: 'billing-group', dataset: { municipality, provider } },
      el('th', { colspan: 4, scope: 'rowgroup', text: t('billing.group', { municipality, provider: providerName(provider), n: list.length }) })));
    for (const r of list) {
      tbody.append(el('tr', { class: 'billing-row', dataset: { subscriber: r.subscriber } },
        el('td', {}, subscriberLink(r.subscriber)),
        el('td', { text: orDash(r.name) }),
        el('td', { text: r.installed_on || '-' }),
        el('td', { text: r.ended_on || '-' })));
    }
  }
  if (!rows.length) tbody.append(el('tr', {}, el('td', { colspan: 4, class: 'muted', text: t('billing.none') })));
  box.append(el('table', { class: 'data-table report-table billing-table' }, el('thead', {}, el('tr', {}, ...heads)), tbody));
}

// ---- statistics (supervisors; a municipality's or a care provider's staff: their own)

/** The ISO week (`2026-W48`) of a date `YYYY-MM-DD`. */
function isoWeek(date) {
  const [y, m, d] = String(date).split('-').map(Number);
  const day = new Date(Date.UTC(y, m - 1, d));
  day.setUTCDate(day.getUTCDate() - ((day.getUTCDay() + 6) % 7) + 3); // the week's Thursday
  const year = day.getUTCFullYear();
  const jan4 = new Date(Date.UTC(year, 0, 4));
  const week = 1 + Math.round(((day - jan4) / 86400000 - 3 + ((jan4.getUTCDay() + 6) % 7)) / 7);
  return `${year}-W${pad2(week)}`;
}

function showStatistics() {
  if (!isSupervisor() && !isTenant()) return;
  leaveCall();
  showView('statistics');
  const today = zoneParts(serverNow()).date;
  const init = (id, v) => { if (!$(id).value) $(id).value = v; };
  init('statistics-day', today);
  init('statistics-week', isoWeek(today));
  init('statistics-month', thisMonth());
  init('statistics-from', `${thisMonth()}-01`);
  init('statistics-to', today);
  // A tenant's staff see their own people: nothing to choose, no queue to go back to.
  for (const id of ['statistics-back', 'statistics-scope', 'statistics-scope-label']) show($(id), !isTenant());
  statisticsInputs();
  blurHidden();
  loadStatistics();
}

/** Shows the inputs of the kind of period chosen. */
function statisticsInputs() {
  const kind = $('statistics-kind').value;
  for (const k of ['day', 'week', 'month']) show($(`statistics-${k}`), kind === k);
  show($('statistics-custom'), kind === 'custom');
}

/** The period and scope chosen, as the query of `GET /api/stats`. */
function statisticsQuery() {
  const kind = $('statistics-kind').value;
  const q = new URLSearchParams();
  if (kind === 'custom') {
    q.set('from', $('statistics-from').value);
    q.set('to', $('statistics-to').value);
  } else {
    q.set('period', $(`statistics-${kind}`).value);
  }
  const scope = $('statistics-scope').value;
  if (!isTenant() && scope) q.set('scope', scope);
  return q.toString();
}

/** The period chosen in words (`2026-W48`, `2026-11-01 – 2026-11-15`). */
function statisticsPeriodWords() {
  const kind = $('statistics-kind').value;
  if (kind === 'custom') return `${$('statistics-from').value} – ${$('statistics-to').value}`;
  return $(`statistics-${kind}`).value;
}

async function loadStatistics() {
  const query = statisticsQuery();
  const period = statisticsPeriodWords();
  S.statsQuery = query;
  $('statistics-csv').href = `/api/stats?${query}&format=csv`;
  $('statistics-csv').setAttribute('download', `vakt-stats-${period.replace(/[^0-9A-Za-z-]+/g, '_')}.csv`);
  const box = $('statistics-content');
  clear(box);
  box.append(el('p', { class: 'muted', text: t('stats.loading', { period }) }));
  try {
    await careChoices();
    const { data } = await api('GET', `/api/stats?${query}`);
    if (S.statsQuery !== query) return;
    pageError('statistics-error', '');
    if (data && data.choices) statisticsChoices(data.choices);
    renderStatistics(data);
  } catch (e) {
    if (e.status === 401 || S.statsQuery !== query) return;
    clear(box);
    pageError('statistics-error', t('stats.failed', { period, error: e.message }));
  }
}

/** The scopes the centre's staff may choose: the whole centre, each municipality, each
 *  provider (the choice kept). */
function statisticsChoices(choices) {
  const sel = $('statistics-scope');
  const keep = sel.value;
  clear(sel);
  sel.append(el('option', { value: 'all', text: t('stats.scope.all') }));
  for (const m of choices.municipalities || []) {
    sel.append(el('option', { value: `municipality:${m}`, text: t('stats.scope.municipality', { name: m }) }));
  }
  for (const p of choices.providers || []) {
    sel.append(el('option', { value: `provider:${p.id}`, text: t('stats.scope.provider', { name: p.name || p.id }) }));
  }
  sel.value = keep && [...sel.options].some((o) => o.value === keep) ? keep : 'all';
}

function statisticsScopeWords(scope) {
  if (!scope || scope.scope === 'all') return t('stats.scope.all');
  if (scope.scope === 'municipality') return t('stats.scope.municipality', { name: scope.of });
  return t('stats.scope.provider', { name: providerName(scope.of) });
}

/** A chart drawn by the server (SVG), as an image. */
function statisticsChart(svg, name, title) {
  return el('img', {
    class: 'stats-chart', id: `statistics-chart-${name}`, alt: title, title,
    src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(String(svg || ''))}`,
  });
}

function statisticsTable(cls, heads, rows, none) {
  const tbody = el('tbody', {}, ...rows);
  if (!rows.length) tbody.append(el('tr', {}, el('td', { colspan: heads.length, class: 'muted', text: none })));
  return el('table', { class: `data-table report-table ${cls}` },
    el('thead', {}, el('tr', {}, ...heads.map((h) => el('th', { text: h })))), tbody);
}

function renderStatistics(d) {
  const box = $('statistics-content');
  clear(box);
  if (!d || typeof d !== 'object') {
    box.append(el('p', { class: 'muted', text: t('report.none') }));
    return;
  }
  const num = (v) => (v === null || v === undefined ? '-' : String(v));
  const met = (v, goal) => (v === null || v === undefined ? '' : (Number(v) >= Number(goal) ? 'met' : 'missed'));
  const c = d.calls || {};
  const a = d.answer || {};
  const r = d.arrival || {};
  const tech = d.technical || {};
  const charts = d.charts || {};
  box.append(el('p', { class: 'report-head', id: 'statistics-head' },
    el('strong', { text: t('stats.head', { scope: statisticsScopeWords(d.scope), period: d.period ? d.period.label : '' }) }),
    ` · ${t('stats.made', { zone: (d.period && d.period.time_zone) || t('report.local_time'), time: fmtTime(d.generated_at) })}`));

  box.append(el('section', { class: 'stats-section', id: 'statistics-calls' },
    el('h2', { text: t('stats.section.calls') }),
    el('div', { class: 'report-stats' },
      reportStat(t('stats.calls.total'), num(c.total)),
      reportStat(t('stats.calls.alarms'), num(c.alarms)),
      reportStat(t('stats.calls.open'), num(c.open))),
    el('div', { class: 'stats-charts' },
      statisticsChart(charts.kinds, 'kinds', t('stats.chart.kinds')),
      statisticsChart(charts.outcomes, 'outcomes', t('stats.chart.outcomes')))));

  const g60 = a.target_60s_pct ?? 97.5;
  const g180 = a.target_180s_pct ?? 99;
  box.append(el('section', { class: 'stats-section', id: 'statistics-answer' },
    el('h2', { text: t('stats.section.answer') }),
    el('div', { class: 'report-stats' },
      reportStat(t('stats.answer.answered'), num(a.answered)),
      reportStat(t('stats.answer.median'), a.median_answer_secs === null || a.median_answer_secs === undefined ? '-' : fmtDuration(a.median_answer_secs)),
      reportStat(t('stats.answer.within_60', { pct: fmtPct(g60) }), fmtPct(a.within_60s_pct), met(a.within_60s_pct, g60)),
      reportStat(t('stats.answer.within_180', { pct: fmtPct(g180) }), fmtPct(a.within_180s_pct), met(a.within_180s_pct, g180))),
    el('div', { class: 'stats-charts' }, statisticsChart(charts.answer, 'answer', t('stats.chart.answer')))));

  const callRef = (id) => (isTenant()
    ? el('span', { text: t('call.label', { id }) })
    : el('button', { type: 'button', class: 'link-like', text: t('call.label', { id }), dataset: { call: String(id) }, on: { click: () => openCall(id) } }));
  const areaRows = (r.areas || []).map((x) => el('tr', { class: 'stats-area', dataset: { area: x.area } },
    el('td', { text: x.area_name || x.area }),
    el('td', { class: 'num', text: num(x.limit_mins) }),
    el('td', { class: 'num', text: num(x.dispatches) }),
    el('td', { class: 'num', text: num(x.arrived) }),
    el('td', { class: 'num', text: num(x.within_limit) }),
    el('td', { class: `num${x.breaches ? ' bad-cell' : ''}`, text: num(x.breaches) })));
  const breachRows = (r.breached || []).map((b) => el('tr', { class: 'stats-breach', dataset: { dispatch: String(b.dispatch) } },
    el('td', {}, callRef(b.call)),
    el('td', { text: b.patrol }),
    el('td', { text: b.area }),
    el('td', { text: fmtTime(b.offered_at) }),
    el('td', { class: 'num', text: num(b.limit_mins) }),
    el('td', { class: 'num bad-cell', text: b.arrived ? String(b.minutes) : t('stats.not_arrived', { minutes: b.minutes }) })));
  box.append(el('section', { class: 'stats-section', id: 'statistics-arrival' },
    el('h2', { text: t('stats.section.arrival') }),
    el('div', { class: 'report-stats' },
      reportStat(t('stats.arrival.dispatches'), num(r.dispatches)),
      reportStat(t('stats.arrival.arrived'), num(r.arrived)),
      reportStat(t('stats.arrival.within'), `${num(r.within_limit)} (${fmtPct(r.within_limit_pct)})`),
      reportStat(t('stats.arrival.median'), fmtSecsOrDash(r.median_secs)),
      reportStat(t('stats.arrival.p90'), fmtSecsOrDash(r.p90_secs)),
      reportStat(t('stats.arrival.breaches'), num(r.breaches), r.breaches ? 'missed' : '')),
    statisticsTable('stats-areas',
      ['area', 'limit', 'dispatches', 'arrived', 'within', 'breaches'].map((h) => t(`stats.col.${h}`)),
      areaRows, t('report.no_dispatches')),
    statisticsTable('stats-breaches',
      ['call', 'patrol', 'area', 'dispatched', 'limit', 'minutes'].map((h) => t(`stats.col.${h}`)),
      breachRows, t('stats.no_breaches'))));

  box.append(el('section', { class: 'stats-section', id: 'statistics-heat' },
    el('h2', { text: t('stats.section.heat') }),
    el('div', { class: 'stats-charts' }, statisticsChart(charts.heat, 'heat', t('stats.chart.heat')))));

  const fc = d.frequent_callers || {};
  const callerRows = (fc.callers || []).map((f) => el('tr', { class: 'stats-frequent', dataset: { subscriber: f.subscriber } },
    el('td', {}, subscriberLink(f.subscriber), ` ${orDash(f.name)}`),
    el('td', { text: f.month }),
    el('td', { class: 'num', text: num(f.calls) })));
  box.append(el('section', { class: 'stats-section', id: 'statistics-frequent' },
    el('h2', { text: t('stats.section.frequent') }),
    el('p', { class: 'muted', text: t('stats.frequent.intro', { n: num(fc.threshold) }) }),
    statisticsTable('stats-callers', ['person', 'month', 'alarms'].map((h) => t(`stats.col.${h}`)),
      callerRows, t('stats.frequent.none'))));

  const faults = (tech.by_fault || []).map((f) => reportStat(tOr(`wo.fault.${f.key}`, f.key), num(f.count)));
  box.append(el('section', { class: 'stats-section', id: 'statistics-technical' },
    el('h2', { text: t('stats.section.technical') }),
    el('div', { class: 'report-stats' },
      reportStat(t('stats.tech.opened'), num(tech.opened)),
      reportStat(t('stats.tech.done'), num(tech.done)),
      reportStat(t('stats.tech.cancelled'), num(tech.cancelled)),
      reportStat(t('stats.tech.open'), num(tech.open)),
      reportStat(t('stats.tech.overdue'), num(tech.overdue_now), tech.overdue_now ? 'missed' : ''),
      reportStat(t('stats.tech.silent'), num(tech.silent_devices_now), tech.silent_devices_now ? 'missed' : '')),
    el('div', { class: 'report-stats stats-faults' }, ...faults)));

  if (Array.isArray(d.operators)) {
    const opRows = d.operators.map((o) => el('tr', { class: 'stats-operator', dataset: { operator: o.operator } },
      el('td', { text: o.operator }),
      el('td', { class: 'num', text: num(o.answered) }),
      el('td', { class: 'num', text: o.median_answer_secs === null || o.median_answer_secs === undefined ? '-' : fmtDuration(o.median_answer_secs) }),
      el('td', { class: 'num', text: num(o.closed) })));
    box.append(el('section', { class: 'stats-section', id: 'statistics-operators' },
      el('h2', { text: t('stats.section.operators') }),
      statisticsTable('stats-operators', ['operator', 'answered', 'median', 'closed'].map((h) => t(`stats.col.${h}`)),
        opRows, t('stats.chart.none'))));
  }
}

// ---- actions on my Call

/** Runs an action on the current Call, then refreshes it. */
async function callAction(what, path, body, button) {
  const id = S.currentId;
  if (id === null || !isMine(S.current)) {
    message(t('action.not_owner'), 'warn');
    return false;
  }
  if (button) button.disabled = true;
  try {
    const { data } = await api('POST', `/api/calls/${encodeURIComponent(id)}/${path}`, body);
    if (data && data.id === S.currentId) setCurrent(data);
    return true;
  } catch (e) {
    if (e.status === 409 && e.body && e.body.code === 'plan.changed') {
      S.planKey = null; // the refresh below loads the plan as it is now
      message(e.message, 'warn');
    }
    else if (e.status === 409) message(t('action.failed_not_owner', { what, reason: e.message }), 'error');
    else if (e.status === 410) message(t('action.failed_closed', { what }), 'error');
    else reportError(t('action.failed', { what }), e);
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
    message(t('action.note_empty'), 'warn');
    box.focus();
    return;
  }
  if (await callAction(t('action.save_note'), 'notes', { text }, $('note-save'))) {
    box.value = '';
    message(t('action.note_saved'), 'ok');
  }
}

async function logPhone(to, button) {
  const noteBox = $('phone-note');
  if (await callAction(t('action.log_phone'), 'phone', { to, note: noteBox.value.trim() }, button)) {
    noteBox.value = '';
    message(t('action.phone_logged', { what: PHONE_PARTIES[to] || t('action.phone_call') }), 'ok');
  }
}

/** The operator phoned the person and nobody answered (the closing rule then needs a patrol or 112). */
async function logPhoneNoAnswer() {
  const noteBox = $('phone-note');
  const body = { to: 'person', answered: false, note: noteBox.value.trim() };
  if (await callAction(t('action.log_phone'), 'phone', body, $('phone-no-answer'))) {
    noteBox.value = '';
    message(t('action.no_answer_logged'), 'warn');
  }
}

async function releaseCall() {
  if (!isMine(S.current)) return;
  const id = S.currentId;
  if (await callAction(t('action.release'), 'release', undefined, $('release'))) {
    message(t('action.released', { id }), 'ok');
  }
}

/** Closes the current Call; a refusal of the closing rule stays in the form until changed. */
async function closeCall() {
  const sel = $('close-outcome');
  const outcome = sel.value;
  if (!OUTCOMES[outcome] || outcome === 'no_action') {
    closeError(t('close.choose_outcome'));
    sel.focus();
    return;
  }
  const note = $('close-note').value.trim();
  if (!SENDS_HELP.has(outcome) && !note) {
    closeError(t('close.reason_required'));
    $('close-note').focus();
    return;
  }
  const body = { outcome, note };
  if (isSupervisor() && $('close-override').checked) {
    body.override_reason = $('close-override-reason').value.trim();
  }
  const id = S.currentId;
  if (id === null || !isMine(S.current)) {
    message(t('action.not_owner'), 'warn');
    return;
  }
  const button = $('close-submit');
  button.disabled = true;
  try {
    const { data } = await api('POST', `/api/calls/${encodeURIComponent(id)}/close`, body);
    if (data && data.id === S.currentId) setCurrent(data);
    resetCloseForm();
    message(t('close.closed', { id, outcome: OUTCOMES[outcome] }), 'ok');
  } catch (e) {
    // 409/422/403 from the closing rule: its words, where the operator looks.
    if ([403, 409, 422].includes(e.status)) closeError(e.message);
    else if (e.status === 410) closeError(t('close.already_closed'));
    else reportError(t('close.failed'), e);
  } finally {
    button.disabled = false;
    if (S.currentId === id) refreshCall();
  }
}

function closeError(text) {
  const box = $('close-error');
  box.textContent = text || '';
  show(box, !!text);
  // The refusal is what counts now: an older toast would cover it.
  if (text) show($('message'), false);
}

/** Clears the close form (another Call, or this one closed). */
function resetCloseForm() {
  $('close-note').value = '';
  $('close-outcome').value = '';
  $('close-override').checked = false;
  $('close-override-reason').value = '';
  closeError('');
  renderPatrolHint();
}

/** The reason box says when it is required; supervisors see the override. */
function renderCloseReason() {
  const outcome = $('close-outcome').value;
  const needs = !!outcome && !SENDS_HELP.has(outcome);
  $('close-note').placeholder = needs
    ? t('close.reason_placeholder')
    : t('close.note_placeholder');
  $('close-note').classList.toggle('required', needs);
  show($('close-override-box'), isSupervisor());
  show($('close-override-reason'), isSupervisor() && $('close-override').checked);
}

/**
 * The text of `key` as nodes: each `{name}` placeholder whose param is a DOM node (a <kbd>)
 * becomes that node, the other params are filled in as t() does.
 */
function nodeText(key, params) {
  const texts = {};
  for (const [k, v] of Object.entries(params)) if (!(v instanceof Node)) texts[k] = v;
  return t(key, texts).split(/(\{\w+\})/).map((part) => {
    const m = /^\{(\w+)\}$/.exec(part);
    return m && params[m[1]] instanceof Node ? params[m[1]] : part;
  }).filter((part) => part !== '');
}

function renderPatrolHint() {
  const hint = $('patrol-hint');
  const chosen = $('close-outcome').value === 'patrol_needed';
  hint.classList.toggle('active', chosen);
  const open = S.current ? openDispatchOf(S.current) : null;
  clear(hint);
  if (open) {
    hint.append(t('close.patrol_hint_dispatched', { patrol: open.patrol_name || open.patrol }));
  } else {
    appendAll(hint, ...nodeText('close.patrol_hint', { key: el('kbd', { text: 'D' }) }));
    hint.classList.toggle('danger', chosen);
  }
  if (open) hint.classList.remove('danger');
  renderCloseReason();
}

// ---------------------------------------------------------------- 11. Dispatch

/** Seconds as mm:ss, or h:mm:ss from an hour (the dispatch clocks). */
function fmtClock(secs) {
  if (!Number.isFinite(secs)) return '--:--';
  const s = Math.max(0, Math.floor(secs));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${pad2(m)}:${pad2(r)}` : `${pad2(m)}:${pad2(r)}`;
}

/** Local time of an epoch-ms instant (as fmtTime). */
function fmtTimeMs(ms) {
  return Number.isFinite(ms) ? fmtTime(new Date(ms).toISOString()) : '?';
}

/**
 * How far along a dispatch is. Its state only moves forward, so of two views of one dispatch
 * the one with more progress is the newer: an answer that was on its way while a live message
 * came never takes the screen back.
 */
function dispatchProgress(d) {
  return (d.received_at ? 1 : 0) + (d.accepted_at ? 1 : 0) + (d.arrived_at ? 1 : 0) +
    (d.ended_at ? 2 : 0) + (Array.isArray(d.warned_at_mins) ? d.warned_at_mins.length : 0) +
    (d.breached ? 1 : 0);
}

/** Remembers the newest view of a dispatch; returns the one kept. */
function noteDispatch(d) {
  if (!d || d.id === undefined || d.id === null) return d;
  const old = S.known.get(d.id);
  if (old && dispatchProgress(old) > dispatchProgress(d)) return old;
  S.known.set(d.id, d);
  return d;
}

function liveDispatches() {
  return Array.from(S.known.values()).filter((d) => LIVE_DISPATCH.has(d.state));
}

/** The arrival deadline (epoch ms), once the patrol has confirmed receipt. */
function deadlineOf(d) {
  const dl = parseTs(d.deadline);
  if (Number.isFinite(dl)) return dl;
  const r = parseTs(d.received_at);
  return Number.isFinite(r) && d.limit_mins ? r + d.limit_mins * 60000 : NaN;
}

/** Seconds from receipt to arrival, or null. */
function tookSecs(d) {
  const r = parseTs(d.received_at);
  const a = parseTs(d.arrived_at);
  return Number.isFinite(r) && Number.isFinite(a) ? (a - r) / 1000 : null;
}

/** Open and past its arrival limit (by the server's flag or by the clock). */
function isBreachedNow(d, now) {
  if (!OPEN_DISPATCH.has(d.state)) return false;
  if (d.breached) return true;
  const dl = deadlineOf(d);
  return Number.isFinite(dl) && now >= dl;
}

function isReceiptOverdue(d, now) {
  const rd = parseTs(d.receipt_deadline);
  return d.state === 'offered' && Number.isFinite(rd) && now >= rd;
}

/**
 * What a dispatch's clock shows at `now`: `kind` (for CSS and tests), a label, the value and
 * more words. Offered: the receipt countdown. Received or accepted: the arrival countdown,
 * amber once the server has warned, red "BREACHED +mm:ss" past the limit. Later: the times.
 */
function dispatchClock(d, now) {
  switch (d.state) {
    case 'offered': {
      const rd = parseTs(d.receipt_deadline);
      if (Number.isFinite(rd)) {
        const left = (rd - now) / 1000;
        if (left > 0) {
          return { kind: 'receipt', label: t('dispatch.clock.receipt_due_in'), value: fmtClock(Math.ceil(left)),
            title: t('dispatch.clock.receipt_due_title', { time: fmtTimeMs(rd) }) };
        }
        return { kind: 'receipt-overdue', label: t('dispatch.clock.no_receipt'), value: `+${fmtClock(-left)}`,
          title: t('dispatch.clock.receipt_overdue_title', { time: fmtTimeMs(rd) }) };
      }
      return { kind: 'receipt', label: t('dispatch.state.offered'), value: fmtClock((now - parseTs(d.offered_at)) / 1000),
        title: t('dispatch.clock.offered_at', { time: fmtTime(d.offered_at) }) };
    }
    case 'received':
    case 'accepted': {
      const dl = deadlineOf(d);
      if (!Number.isFinite(dl)) return { kind: 'arrival', label: t('dispatch.clock.arrival_running'), value: '--:--' };
      const left = (dl - now) / 1000;
      if (d.breached || left <= 0) {
        return { kind: 'breached', label: t('dispatch.breached'), value: `+${fmtClock(Math.max(0, -left))}`,
          title: t('dispatch.clock.breached_title', { limit: d.limit_mins, time: fmtTimeMs(dl) }) };
      }
      const warned = Array.isArray(d.warned_at_mins) && d.warned_at_mins.length > 0;
      return { kind: warned ? 'warn' : 'arrival', label: t('dispatch.clock.arrival_due_in'), value: fmtClock(Math.ceil(left)),
        title: t('dispatch.clock.arrival_due_title', { time: fmtTimeMs(dl), limit: d.limit_mins, received: fmtTime(d.received_at) }) };
    }
    case 'arrived': {
      const took = tookSecs(d);
      return { kind: d.breached ? 'late' : 'arrived', label: t('dispatch.state.arrived'), value: fmtTime(d.arrived_at),
        extra: took === null ? '' : (d.breached ? t('dispatch.clock.after_receipt_late', { took: fmtClock(took) }) : t('dispatch.clock.after_receipt', { took: fmtClock(took) })) };
    }
    case 'completed': {
      const took = tookSecs(d);
      return { kind: d.breached ? 'late' : 'done', label: t('dispatch.state.completed'), value: fmtTime(d.ended_at),
        extra: took === null ? '' : (d.breached ? t('dispatch.clock.arrived_after_late', { took: fmtClock(took) }) : t('dispatch.clock.arrived_after', { took: fmtClock(took) })) };
    }
    case 'cancelled':
      return { kind: 'ended', label: t('dispatch.state.cancelled'), value: fmtTime(d.ended_at) };
    case 'declined':
      return { kind: 'ended', label: t('dispatch.state.declined'), value: fmtTime(d.ended_at) };
    case 'receipt_timeout': {
      const next = nextDispatchAfter(d);
      return { kind: 'ended', label: t('dispatch.clock.no_receipt'), value: fmtTime(d.ended_at),
        extra: next ? t('dispatch.clock.passed_to', { patrol: next.patrol_name || next.patrol }) : '' };
    }
    default:
      return { kind: 'ended', label: String(d.state), value: '' };
  }
}

/** A clock element; `tickDispatches` repaints it every second from `S.known`. */
function clockNode(d, size) {
  const node = el('div', { class: `dclock ${size || ''}`, dataset: { dispatchId: String(d.id) } },
    el('span', { class: 'dclock-label' }), ' ',
    el('span', { class: 'dclock-value' }),
    el('span', { class: 'dclock-extra' }));
  paintClock(node, d, serverNow());
  return node;
}

function paintClock(node, d, now) {
  const c = dispatchClock(d, now);
  if (node.dataset.clock !== c.kind) node.dataset.clock = c.kind;
  const [label, value, extra] = node.children;
  if (label.textContent !== c.label) label.textContent = c.label;
  if (value.textContent !== c.value) value.textContent = c.value;
  const ex = c.extra ? ` · ${c.extra}` : '';
  if (extra.textContent !== ex) extra.textContent = ex;
  if (node.title !== (c.title || '')) node.title = c.title || '';
}

/** Every second: the clocks shown, the patrols tab's badge, the alerts waiting to settle. */
function tickDispatches() {
  const now = serverNow();
  for (const node of document.querySelectorAll('.dclock[data-dispatch-id]')) {
    const d = S.known.get(Number(node.dataset.dispatchId));
    if (d) paintClock(node, d, now);
  }
  renderDispatchBadge(now);
  let settle = false;
  for (const a of S.alerts.values()) {
    if (a.kind === 'receipt' && !a.settled && Date.now() - a.since >= RECEIPT_PASS_GRACE_MS) {
      a.settled = true;
      settle = true;
    }
  }
  if (settle) renderAlerts();
  if (S.view === 'patrols') renderBoardUpdated();
}

/** GET /api/dispatches?open=true: the live dispatches, at start and after the feed was down. */
async function loadLiveDispatches() {
  const before = new Set(S.known.keys());
  try {
    const { data } = await api('GET', '/api/dispatches?open=true');
    const list = Array.isArray(data) ? data : [];
    const ids = new Set(list.map((d) => d.id));
    // Live before, not any more: its end was missed; forget it (the Call view reloads it).
    for (const id of before) {
      const d = S.known.get(id);
      if (d && LIVE_DISPATCH.has(d.state) && !ids.has(id)) S.known.delete(id);
    }
    for (const d of list) {
      const kept = noteDispatch(d);
      if (kept.breached && OPEN_DISPATCH.has(kept.state)) addAlert('breach', kept);
    }
    renderAlerts();
    renderDispatchBadge(serverNow());
  } catch (e) {
    // The next snapshot (reconnect) tries again; the board and the Call view load their own.
  }
}

/** A live `dispatch` message: any change of any dispatch, clock events included. */
function onDispatchMessage(d, step) {
  const kept = noteDispatch(d);
  if (step === 'breached') {
    dropWarnings(kept.id);
    if (addAlert('breach', kept)) beep(0);
  } else if (step === 'receipt_timeout') {
    if (addAlert('receipt', kept)) beep(1);
  } else if (step === 'warning') {
    // A later mark replaces the earlier one: one line per patrol, with the time left now.
    dropWarnings(kept.id);
    if (addAlert('warning', kept, minutesLeft(kept))) warnTone();
  } else if (!OPEN_DISPATCH.has(kept.state)) {
    dropWarnings(kept.id); // arrived, completed, cancelled: no longer late
  }
  renderAlerts();
  renderDispatchBadge(serverNow());
  if (S.view === 'call' && S.current && kept.call === S.currentId) {
    renderDispatchPanel(S.current);
    refreshCall();
  }
  if (S.view === 'patrols') scheduleBoardReload();
}

// ---- alerts (every page)

/**
 * Adds a banner line unless it is up or was acknowledged; true if new. `mark` tells lines of
 * one dispatch apart (the arrival warnings: each mark is its own line and sound).
 */
function addAlert(kind, d, mark) {
  const key = mark === undefined ? `${kind}:${d.id}` : `${kind}:${d.id}:${mark}`;
  if (S.alerts.has(key) || S.dismissed.has(key)) return false;
  S.alerts.set(key, { key, kind, id: d.id, call: d.call, since: Date.now(), settled: false });
  return true;
}

/** Takes down the arrival warnings of a dispatch (it arrived, ended, or a newer mark came). */
function dropWarnings(id) {
  for (const [key, a] of S.alerts) {
    if (a.kind === 'warning' && a.id === id) S.alerts.delete(key);
  }
}

/** Whole minutes until the arrival deadline (rounded up; 0 once it passed). */
function minutesLeft(d) {
  const dl = deadlineOf(d);
  if (!Number.isFinite(dl)) return 0;
  return Math.max(0, Math.ceil((dl - serverNow()) / 60000));
}

function dismissAlert(key) {
  S.alerts.delete(key);
  S.dismissed.add(key);
  renderAlerts();
}

/** The dispatch that followed `d` on the same Call (the next patrol after a receipt timeout). */
function nextDispatchAfter(d) {
  let next = null;
  for (const o of S.known.values()) {
    if (o.call === d.call && o.id > d.id && (!next || o.id < next.id)) next = o;
  }
  return next;
}

function renderAlerts() {
  const box = $('dispatch-alerts');
  const rank = { breach: 0, receipt: 1, warning: 2 };
  const list = Array.from(S.alerts.values()).sort((a, b) =>
    ((rank[a.kind] ?? 3) - (rank[b.kind] ?? 3)) || (a.since - b.since));
  const focusKey = document.activeElement && box.contains(document.activeElement)
    ? document.activeElement.dataset.focusKey : null;
  clear(box);
  show(box, list.length > 0);
  for (const a of list.slice(0, 3)) box.append(alertLine(a));
  if (list.length > 3) {
    box.append(el('div', { class: 'dalert-more' }, `${tn('dispatch.alert.more', list.length - 3)} `,
      el('button', { type: 'button', class: 'small', text: t('dispatch.alert.board'), on: { click: showPatrols } })));
  }
  if (focusKey) {
    const again = box.querySelector(`[data-focus-key="${focusKey}"]`);
    if (again) again.focus();
  }
  renderTitle();
}

function alertLine(a) {
  const d = S.known.get(a.id) || { id: a.id, call: a.call };
  const who = d.patrol_name || d.patrol || t('dispatch.alert.the_patrol');
  const where = [d.subscriber_name, d.address].filter(Boolean).join(', ') || t('handover.call_n', { id: d.call });
  const limit = d.limit_mins || '?';
  let tag;
  let text;
  if (a.kind === 'breach') {
    tag = t('dispatch.breached');
    const dl = deadlineOf(d);
    if (d.arrived_at) {
      text = t('dispatch.alert.arrived_late', { who, where, time: fmtTime(d.arrived_at), took: fmtClock(tookSecs(d)), limit: d.limit_mins });
    } else if (d.state === 'cancelled') {
      text = t('dispatch.alert.breached_cancelled', { who, where });
    } else if (Number.isFinite(dl)) {
      text = t('dispatch.alert.breached_at', { who, where, limit, time: fmtTimeMs(dl) });
    } else {
      text = t('dispatch.alert.breached', { who, where, limit });
    }
  } else if (a.kind === 'warning') {
    tag = t('dispatch.alert.tag_arrival');
    const dl = deadlineOf(d);
    const left = minutesLeft(d);
    text = Number.isFinite(dl)
      ? t('dispatch.alert.warning_until', { who, where, left, limit, time: fmtTimeMs(dl) })
      : t('dispatch.alert.warning', { who, where, left, limit });
  } else {
    tag = t('dispatch.alert.tag_no_receipt');
    const next = nextDispatchAfter(d);
    if (next) text = t('dispatch.alert.receipt_passed', { who, where, patrol: next.patrol_name || next.patrol });
    else if (!a.settled) text = t('dispatch.alert.receipt_passing', { who, where });
    else {
      // The server's words: who was tried and why nobody is left.
      const why = d.note ? `${d.note}.` : t('dispatch.alert.not_passed_on');
      const call = S.calls.get(d.call);
      text = call && call.state === 'queued'
        ? t('dispatch.alert.receipt_requeued', { who, where, why, call: d.call })
        : t('dispatch.alert.receipt_by_hand', { who, where, why });
    }
  }
  return el('div', { class: `dalert dalert-${a.kind}`, dataset: { dispatchId: String(a.id), call: String(d.call) } },
    el('strong', { class: 'dalert-tag', text: tag }),
    el('span', { class: 'dalert-text', text }),
    el('button', { type: 'button', class: 'small dalert-open', text: t('board.open_call', { id: d.call }), dataset: { focusKey: `open-${a.key}` }, on: { click: () => openCall(d.call) } }),
    el('button', { type: 'button', class: 'small dalert-ok', text: t('dispatch.alert.ok'), title: t('dispatch.alert.ok_title'), dataset: { focusKey: `ok-${a.key}` }, on: { click: () => dismissAlert(a.key) } }));
}

/** The patrols tab's badge: how many patrols are out, how many are late. */
function renderDispatchBadge(now) {
  const live = liveDispatches();
  const breached = live.filter((d) => isBreachedNow(d, now)).length;
  const overdue = live.filter((d) => isReceiptOverdue(d, now)).length;
  const badge = $('patrols-badge');
  let text = live.length ? t('dispatch.badge.out', { n: live.length }) : '';
  if (breached) text += ` · ${t('dispatch.badge.breached', { n: breached })}`;
  if (overdue) text += ` · ${t('dispatch.badge.no_receipt', { n: overdue })}`;
  const cls = `tab-badge${breached ? ' bad' : (overdue ? ' warn' : '')}`;
  if (badge.textContent !== text) badge.textContent = text;
  if (badge.className !== cls) badge.className = cls;
  show(badge, !!text);
}

// ---- the Call's dispatch panel

function dispatchesOf(call) {
  return (Array.isArray(call.dispatches) ? call.dispatches : []).map(noteDispatch);
}

/** The Call's dispatch that is still out (offered, received, accepted), if any. */
function openDispatchOf(call) {
  return dispatchesOf(call).find((d) => OPEN_DISPATCH.has(d.state)) || null;
}

/** In words: the patrols on their way to this home for other Calls (empty: none). */
function homeLiveWords(call) {
  const live = (call.context && call.context.live_dispatches) || [];
  return live.map((d) => {
    const who = d.patrol_name || d.patrol;
    const params = { who, call: d.call, time: fmtTime(d.offered_at) };
    return d.state === 'arrived' ? t('context.live_at_home', params) : t('context.live_on_way', params);
  }).join(' ');
}

/** The person's other Calls lately and the patrols on their way: every Call in its context. */
function renderContext(call) {
  const ctx = call.context || { recent: [], live_dispatches: [] };
  const recent = ctx.recent || [];
  const live = homeLiveWords(call);
  show($('call-context'), recent.length > 0 || !!live);
  const liveEl = $('context-live');
  liveEl.textContent = live;
  show(liveEl, !!live);
  const ul = $('context-recent');
  clear(ul);
  for (const r of recent) {
    const state = r.state === 'closed'
      ? (r.outcome ? OUTCOMES[r.outcome] || r.outcome : t('call.closed_word'))
      : (r.state === 'claimed' ? t('context.open_taken') : t('context.open_waiting'));
    const names = (r.patrol_names || []).length ? r.patrol_names : (r.patrols || []);
    const patrols = names.length ? ` · ${t('context.patrol', { names: names.join(', ') })}` : '';
    const a = el('button', { type: 'button', class: 'link', text: `#${r.id}`, on: { click: () => openCall(r.id) } });
    ul.append(el('li', { class: `context-call${r.state === 'closed' ? '' : ' context-open'}` },
      a, ` ${t('context.line', { time: fmtTime(r.opened_at), kind: kindWords(r.kind), state })}${patrols}`));
  }
}

function renderDispatchPanel(call) {
  const list = dispatchesOf(call);
  const mine = isMine(call);
  const open = list.find((d) => OPEN_DISPATCH.has(d.state)) || null;
  show($('dispatch-open'), mine && !!call.subscriber && !open);
  let h = '';
  if (list.length === 0) {
    if (!call.subscriber) h = t('dispatch.unknown_device');
    else if (mine) h = t('dispatch.none_yet');
    else h = call.state === 'closed' ? t('dispatch.none_was') : t('dispatch.none');
  }
  const hint = $('dispatch-hint');
  hint.textContent = h;
  show(hint, !!h);
  $('dispatch-panel').dataset.open = open ? open.state : '';

  // An open cancel form survives the re-render (its reason may be half written).
  const ul = $('dispatch-list');
  const form = S.cancelFor !== null && open && open.id === S.cancelFor ? ul.querySelector('.cancel-form') : null;
  const focused = form && form.contains(document.activeElement) ? document.activeElement : null;
  if (!form) S.cancelFor = null;
  clear(ul);
  for (const d of list.slice().reverse()) ul.append(dispatchItem(d, form && d.id === S.cancelFor ? form : null));
  if (focused) focused.focus();
}

/** Facts of a dispatch in one line. */
function dispatchFacts(d) {
  const offered = fmtTime(d.offered_at);
  const parts = [d.operator ? t('dispatch.facts.dispatched_by', { time: offered, operator: d.operator }) : t('dispatch.facts.dispatched', { time: offered })];
  if (d.received_at) parts.push(t('dispatch.facts.received', { time: fmtTime(d.received_at) }));
  if (d.accepted_at) parts.push(t('dispatch.facts.accepted', { time: fmtTime(d.accepted_at) }));
  if (d.arrived_at) {
    const time = fmtTime(d.arrived_at);
    parts.push(d.arrival_method
      ? t('dispatch.facts.arrived_by', { time, method: ARRIVAL_METHODS[d.arrival_method] || d.arrival_method })
      : t('dispatch.facts.arrived', { time }));
  }
  if (d.limit_mins) parts.push(t('dispatch.facts.limit', { n: d.limit_mins }));
  return parts.join(' · ');
}

function dispatchNote(d) {
  if (!d.note) return '';
  if (d.state === 'declined') return t('dispatch.note.reason', { reason: d.note });
  if (d.state === 'cancelled') return t('dispatch.note.reason', { reason: d.note });
  if (d.state === 'completed') {
    const [outcome, ...rest] = String(d.note).split(': ');
    if (!VISIT_OUTCOMES[outcome]) return t('dispatch.note.visit', { visit: d.note });
    const visit = VISIT_OUTCOMES[outcome];
    return rest.length ? t('dispatch.note.visit_note', { visit, note: rest.join(': ') }) : t('dispatch.note.visit', { visit });
  }
  return d.note;
}

function dispatchItem(d, cancelForm) {
  const open = OPEN_DISPATCH.has(d.state);
  const li = el('li', { class: `dispatch dispatch-${d.state}${open ? ' is-open' : ''}`, dataset: { dispatchId: String(d.id), state: d.state } });
  const phone = d.patrol_phone || S.patrolPhones.get(d.patrol);
  li.append(
    el('div', { class: 'dispatch-top' },
      el('span', { class: `dstate dstate-${d.state}`, text: DISPATCH_STATES[d.state] || d.state }),
      el('span', { class: 'dispatch-patrol', text: d.patrol_name || d.patrol }),
      phone ? telLink(phone) : null,
      el('span', { class: 'muted mono dispatch-id', text: `#${d.id}` })),
    clockNode(d, open || d.state === 'arrived' ? 'big' : ''),
    el('div', { class: 'dispatch-facts muted', text: dispatchFacts(d) }));
  const note = dispatchNote(d);
  if (note) li.append(el('div', { class: 'tl-text dispatch-note', text: note }));
  if (open) {
    li.append(cancelForm || el('div', { class: 'action-row cancel-row' },
      el('button', { type: 'button', class: 'small danger-outline dispatch-cancel', text: t('dispatch.cancel.open'), on: { click: () => openCancelForm(d, li) } })));
  }
  if (!phone && d.patrol) loadPatrolPhones();
  return li;
}

/** Patrol phones for the dispatch panel (DispatchView has the name only): once per page. */
async function loadPatrolPhones() {
  if (S.phonesLoading || S.phonesLoaded) return;
  S.phonesLoading = true;
  try {
    const { data } = await api('GET', '/api/patrols');
    for (const p of Array.isArray(data) ? data : []) if (p.phone) S.patrolPhones.set(p.id, p.phone);
    S.phonesLoaded = true;
    if (S.view === 'call' && S.current) renderDispatchPanel(S.current);
  } catch (e) {
    S.phonesLoaded = true; // no phones then; not worth an error
  } finally {
    S.phonesLoading = false;
  }
}

// ---- cancelling

function openCancelForm(d, li) {
  S.cancelFor = d.id;
  const id = `cancel-reason-${d.id}`;
  const input = el('input', { type: 'text', id, class: 'cancel-reason', maxlength: 500, placeholder: t('dispatch.cancel.placeholder') });
  const submit = el('button', { type: 'submit', class: 'danger-outline cancel-submit', text: t('dispatch.cancel.submit') });
  const keep = el('button', { type: 'button', class: 'secondary', text: t('dispatch.cancel.keep'), on: { click: closeCancelForm } });
  const form = el('form', { class: 'cancel-form', novalidate: true, dataset: { dispatchId: String(d.id) } },
    el('label', { for: id, text: t('dispatch.cancel.why', { patrol: d.patrol_name || d.patrol }) }),
    input,
    el('div', { class: 'action-row' }, submit, keep));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    cancelDispatch(d, input, [submit, keep]);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      closeCancelForm();
    }
  });
  const row = li.querySelector('.cancel-row');
  if (row) row.replaceWith(form);
  else li.append(form);
  input.focus();
}

function closeCancelForm() {
  S.cancelFor = null;
  if (S.current) renderDispatchPanel(S.current);
  const b = $('dispatch-list').querySelector('.dispatch-cancel');
  if (b) b.focus();
}

async function cancelDispatch(d, input, buttons) {
  const reason = input.value.trim();
  if (!reason) {
    message(t('dispatch.cancel.reason_required'), 'warn');
    input.focus();
    return;
  }
  for (const b of buttons) b.disabled = true;
  const name = d.patrol_name || d.patrol;
  try {
    const { data } = await api('POST', `/api/dispatches/${encodeURIComponent(d.id)}/cancel`, { reason });
    noteDispatch(data);
    S.cancelFor = null;
    message(t('dispatch.cancel.done', { patrol: name }), 'ok');
  } catch (e) {
    if (e.status === 409 || e.status === 410) message(t('dispatch.cancel.refused', { patrol: name, reason: e.message }), 'warn');
    else reportError(t('dispatch.cancel.failed'), e);
  } finally {
    for (const b of buttons) b.disabled = false;
    renderDispatchBadge(serverNow());
    if (S.current) renderDispatchPanel(S.current);
    if (S.currentId !== null) refreshCall();
  }
}

// ---- the timeline's dispatch lines

/**
 * A dispatch step in words: `what` (the line; "by USER" follows it), `who` (the patrol, when
 * the line does not name it), `text` (a reason, shown under the line like a note).
 */
function dispatchStepWords(e) {
  const name = e.patrol_name || e.patrol || t('dispatch.tl.the_patrol');
  const detail = e.detail || '';
  switch (e.step) {
    case 'offered':
      // The operator's instruction to the patrol, when there was one.
      return {
        what: e.user ? t('dispatch.tl.dispatched', { patrol: name }) : t('dispatch.tl.offered', { patrol: name }),
        text: detail.startsWith('instruction: ') ? t('dispatch.tl.instruction', { text: detail.slice('instruction: '.length) }) : '',
      };
    case 'received':
      return { what: t('dispatch.tl.received', { patrol: name }) };
    case 'accepted':
      return { what: t('dispatch.tl.accepted', { patrol: name }) };
    case 'declined':
      return { what: t('dispatch.tl.declined', { patrol: name }), text: detail };
    case 'arrived':
      return { what: t('dispatch.tl.arrived', { method: ARRIVAL_METHODS[detail] || detail || ARRIVAL_METHODS.app }), who: name };
    case 'completed': {
      const [outcome, ...rest] = detail.split(': ');
      const note = rest.join(': ');
      const visit = VISIT_OUTCOMES[outcome] || outcome || t('dispatch.tl.done');
      return { what: note ? t('dispatch.tl.completed_note', { visit, note }) : t('dispatch.tl.completed', { visit }), who: name };
    }
    case 'cancelled':
      return { what: t('dispatch.tl.cancelled', { patrol: name }), text: detail };
    case 'receipt_timeout':
      // The server names where it went: "passed to NAME", or that no one was left.
      return { what: detail
        ? t('dispatch.tl.no_receipt_detail', { patrol: name, wait: receiptWait(e), detail })
        : t('dispatch.tl.no_receipt', { patrol: name, wait: receiptWait(e) }) };
    case 'warning':
      return { what: t('dispatch.tl.warning', { detail: detail || t('dispatch.tl.limit_near') }), who: name };
    case 'breached':
      return { what: t('dispatch.tl.breached'), who: name };
    default:
      return { what: detail ? t('dispatch.tl.other_detail', { step: e.step, detail }) : t('dispatch.tl.other', { step: e.step }), who: name };
  }
}

/** How long a timed-out dispatch waited for its receipt ("2 min"), from its offer. */
function receiptWait(e) {
  const d = S.known.get(e.dispatch);
  const secs = d ? (parseTs(e.at) - parseTs(d.offered_at)) / 1000 : NaN;
  if (!Number.isFinite(secs) || secs < 0) return t('dispatch.tl.wait_time');
  if (secs < 90) return t('dispatch.tl.secs', { n: Math.round(secs) });
  const mins = Math.round(secs / 60);
  return Math.abs(secs - mins * 60) < 10 ? t('dispatch.tl.mins', { n: mins }) : fmtDuration(secs);
}

// ---- the "dispatch a patrol" dialog

async function openDispatchDialog() {
  const call = S.current;
  if (S.view !== 'call' || !call) return;
  if (!isMine(call)) {
    message(t('dispatch.take_first'), 'warn');
    return;
  }
  const open = openDispatchOf(call);
  if (open) {
    message(t('dispatch.already', { patrol: open.patrol_name || open.patrol }), 'warn');
    return;
  }
  if (!call.subscriber) {
    message(t('dispatch.unknown_device'), 'warn');
    return;
  }
  const id = call.id;
  S.dispatchChoices = null;
  S.dispatchSecond = false;
  S.dispatchNoAccess = null;
  const home = homeLiveWords(call);
  $('dispatch-home').textContent = home ? t('dispatch.dialog.home', { live: home }) : '';
  show($('dispatch-home'), !!home);
  $('dispatch-dialog-call').textContent = `· ${t('handover.call_n', { id })}${call.subscriber_name ? ` · ${call.subscriber_name}` : ''}`;
  $('dispatch-route').textContent = t('board.loading');
  clear($('dispatch-choices'));
  show($('dispatch-error'), false);
  resetDispatchSends();
  $('dispatch-submit').disabled = true;
  $('dispatch-submit').textContent = t('dispatch.dialog.submit');
  show($('dispatch-dialog'), true);
  $('dispatch-cancel-dialog').focus();
  try {
    const { data } = await api('GET', `/api/calls/${encodeURIComponent(id)}/patrols`);
    if (S.currentId !== id || $('dispatch-dialog').hidden) return;
    S.dispatchChoices = Object.assign({ call: id }, data || {});
    renderDispatchChoices();
  } catch (e) {
    if (S.currentId !== id || $('dispatch-dialog').hidden) return;
    $('dispatch-route').textContent = '';
    if (e.status !== 401) showDispatchError(t('dispatch.dialog.load_failed', { reason: e.message }));
  }
}

function closeDispatchDialog() {
  const wasOpen = !$('dispatch-dialog').hidden;
  show($('dispatch-dialog'), false);
  clear($('dispatch-choices'));
  S.dispatchChoices = null;
  if (wasOpen) {
    const b = $('dispatch-open');
    if (!b.hidden && S.view === 'call') b.focus();
    else blurHidden();
  }
}

function showDispatchError(text) {
  const err = $('dispatch-error');
  err.textContent = text;
  show(err, true);
}

function connDot(connected) {
  return el('span', {
    class: `conn-dot ${connected ? 'on' : 'off'}`,
    role: 'img',
    title: connected ? t('dispatch.dialog.connected_title') : t('board.not_connected'),
    'aria-label': connected ? t('dispatch.dialog.connected') : t('dispatch.dialog.not_connected'),
  });
}

function shiftText(p) {
  if (p.on_shift) return p.shift ? t('dispatch.dialog.on_shift_named', { shift: p.shift }) : t('board.on_shift');
  return t('board.off_shift');
}

function renderDispatchChoices() {
  const c = S.dispatchChoices;
  const patrols = Array.isArray(c.patrols) ? c.patrols : [];
  for (const p of patrols) if (p.phone) S.patrolPhones.set(p.id, p.phone);
  const route = $('dispatch-route');
  clear(route);
  appendAll(route, ...nodeText('dispatch.dialog.route', { provider: el('strong', { text: c.provider || '?' }), area: el('strong', { text: c.area || '?' }) }), ' ');
  if (!c.suggested && patrols.length) {
    route.append(el('span', { class: 'warning-text', text: t('dispatch.dialog.route_none_on_shift') }));
  }
  const box = $('dispatch-choices');
  clear(box);
  // On shift first (the route's in its order, then the others); the rest folded.
  const onShift = patrols.filter((p) => p.on_shift);
  const offShift = patrols.filter((p) => !p.on_shift);
  const routed = onShift.filter((p) => p.routed);
  const others = onShift.filter((p) => !p.routed);
  let i = 0;
  if (routed.length) {
    box.append(el('h3', { text: t('dispatch.dialog.on_shift_route') }));
    for (const p of routed) box.append(choiceNode(p, i++, c.suggested));
  }
  if (others.length) {
    box.append(el('h3', { text: routed.length ? t('dispatch.dialog.on_shift_others') : t('dispatch.dialog.on_shift_unrouted') }));
    for (const p of others) box.append(choiceNode(p, i++, c.suggested));
  }
  if (patrols.length && !onShift.length) {
    box.append(el('p', { class: 'warning-text', text: t('dispatch.dialog.none_on_shift') }));
  }
  if (offShift.length) {
    const more = el('details', { class: 'dispatch-more', id: 'dispatch-more' },
      el('summary', { text: t('dispatch.dialog.off_shift_n', { n: offShift.length }) }));
    for (const p of offShift) more.append(choiceNode(p, i++, c.suggested));
    // Nobody on shift: the fold is all there is, so it is open.
    more.open = !onShift.length;
    box.append(more);
  }
  renderDispatchSends(c.sends);
  if (!patrols.length) {
    box.append(el('p', { class: 'warning-text', text: t('dispatch.dialog.no_patrols') }));
  }
  $('dispatch-submit').disabled = patrols.length === 0;
  updateDispatchWarning();
  const first = box.querySelector('input:checked') || box.querySelector('input');
  if (first) first.focus();
}

function choiceNode(p, i, suggested) {
  const id = `dp-${i}`;
  const input = el('input', { type: 'radio', name: 'dispatch-patrol', id, value: p.id });
  input.checked = p.id === suggested;
  input.addEventListener('change', updateDispatchWarning);
  const n = Number(p.open_assignments) || 0;
  const facts = [
    p.routed && Number.isInteger(p.rank) ? t('dispatch.dialog.rank', { n: p.rank + 1 }) : null,
    p.routed ? null : p.provider,
    p.connected ? t('dispatch.dialog.connected') : t('dispatch.dialog.not_connected'),
    n ? tn('dispatch.dialog.open_assignments', n) : t('dispatch.dialog.no_open_assignment'),
    p.phone || null,
    accessWords(p.access),
  ].filter(Boolean);
  const warning = choiceWarning(p);
  return el('label', {
    class: `choice${p.on_shift ? ' on-shift' : ' off-shift'}${p.routed ? ' routed' : ''}${p.id === suggested ? ' suggested' : ''}${warning ? ' has-warning' : ''}`,
    for: id,
    dataset: { patrolId: p.id },
  },
  input,
  el('span', { class: 'choice-body' },
    el('span', { class: 'choice-line' },
      connDot(p.connected),
      el('span', { class: 'choice-name', text: p.name || p.id }),
      p.id === suggested ? el('span', { class: 'tag tag-suggested', text: t('dispatch.dialog.suggested') }) : null,
      el('span', { class: `shift ${p.on_shift ? 'on' : 'off'}`, text: shiftText(p) })),
    el('span', { class: 'choice-facts muted', text: facts.join(' · ') }),
    warning ? el('span', { class: 'choice-warn', role: 'note', text: warning }) : null));
}

/** What the patrol's provider has to get in ("Its provider has: Door keys 2, lock access");
 * null when it has nothing (the warning says so) or no subscriber is known. */
function accessWords(a) {
  if (!a) return null;
  const what = [keyCountsWords(a.keys), a.digital_lock ? t('dispatch.dialog.lock_access') : ''].filter(Boolean).join(', ');
  return what ? t('dispatch.dialog.has', { what }) : null;
}

/** What the operator should know about sending this patrol (no key and no lock access, off
 * shift, offline, busy, not routed), shown beside it; '' when nothing. */
function choiceWarning(p) {
  const words = [];
  if (p.no_access) words.push(t('dispatch.warn.no_access'));
  if (!p.on_shift) words.push(t('dispatch.warn.off_shift'));
  if (!p.connected) words.push(p.phone ? t('dispatch.warn.not_connected_phone', { phone: p.phone }) : t('dispatch.warn.not_connected'));
  const n = Number(p.open_assignments) || 0;
  if (n) words.push(tn('dispatch.warn.busy', n));
  if (!p.routed) words.push(t('dispatch.warn.not_routed'));
  return words.join(' ');
}

function resetDispatchSends() {
  $('dispatch-instruction').value = '';
  clear($('dispatch-sends-facts'));
  show($('dispatch-sends'), false);
}

/** What the patrol will get with the assignment: the server's preview (reason, health notes
 * as consent allows, access) and the instruction as typed. */
function renderDispatchSends(sends) {
  const dl = $('dispatch-sends-facts');
  clear(dl);
  if (!sends) {
    show($('dispatch-sends'), false);
    return;
  }
  const a = sends.access || {};
  const keys = Number(a.keys) || 0;
  const row = (label, value, cls) => [el('dt', { text: label }), el('dd', { class: cls || '', text: value })];
  const typed = $('dispatch-instruction').value.trim();
  dl.append(
    ...row(t('dispatch.sends.alarm'), kindWords(sends.reason), 'sends-reason'),
    ...row(t('dispatch.sends.instruction'), typed || t('dispatch.sends.none'), 'sends-instruction'),
    ...(sends.health_notes_withheld
      ? row(t('dispatch.sends.health'), t('dispatch.sends.health_withheld'), 'sends-health withheld')
      : row(t('dispatch.sends.health'), sends.health_notes || t('dispatch.sends.none'), 'sends-health pre')),
    ...row(t('card.keys'), keys ? tn('dispatch.sends.keys', keys, { location: orDash(a.key_location) }) : t('card.no_keys'), 'sends-keys'),
    ...row(t('card.digital_lock'), orDash(a.digital_lock_id), 'sends-lock mono'),
    ...row(t('card.door_code'), orDash(a.door_code), 'sends-door-code'),
    ...row(t('card.entry_notes'), orDash(a.entry_notes), 'sends-entry pre'));
  show($('dispatch-sends'), true);
}

function onDispatchInstruction() {
  const c = S.dispatchChoices;
  const dd = $('dispatch-sends-facts').querySelector('.sends-instruction');
  if (c && dd) dd.textContent = $('dispatch-instruction').value.trim() || t('dispatch.sends.none');
}

function selectedChoice() {
  const c = S.dispatchChoices;
  const sel = $('dispatch-choices').querySelector('input[name="dispatch-patrol"]:checked');
  if (!c || !sel) return null;
  return (c.patrols || []).find((p) => p.id === sel.value) || null;
}

/** The button names the patrol picked (its warnings are beside it in the list). */
function updateDispatchWarning() {
  const p = selectedChoice();
  const submit = $('dispatch-submit');
  if (!p) {
    submit.textContent = t('dispatch.dialog.submit');
    return;
  }
  // A confirmation of "no key" is for the patrol it was asked for only.
  if (S.dispatchNoAccess && S.dispatchNoAccess !== p.id) {
    S.dispatchNoAccess = null;
    show($('dispatch-error'), false);
  }
  submit.textContent = S.dispatchNoAccess ? t('dispatch.dialog.no_access_confirm') : t('dispatch.dialog.submit_to', { patrol: p.name || p.id });
}

async function submitDispatch(ev) {
  ev.preventDefault();
  const c = S.dispatchChoices;
  const id = S.currentId;
  if (S.dispatchBusy || !c || c.call !== id) return;
  const p = selectedChoice();
  const body = p ? { patrol: p.id } : {};
  if (S.dispatchSecond) body.second = true;
  if (S.dispatchNoAccess && (!p || S.dispatchNoAccess === p.id)) body.no_access = true;
  const instruction = $('dispatch-instruction').value.trim();
  if (instruction) body.instruction = instruction;
  S.dispatchBusy = true;
  $('dispatch-submit').disabled = true;
  show($('dispatch-error'), false);
  try {
    const { data } = await api('POST', `/api/calls/${encodeURIComponent(id)}/dispatch`, body);
    const d = noteDispatch(data) || {};
    closeDispatchDialog();
    message(t('dispatch.dialog.sent', { patrol: d.patrol_name || d.patrol || (p && p.name) }), 'ok');
    renderDispatchBadge(serverNow());
    if (S.current && S.current.id === id) renderDispatchPanel(S.current);
  } catch (e) {
    if (e.status === 409 && e.body && e.body.confirm && e.body.code === 'dispatch.no_access') {
      // The patrol's provider has no key and no lock access: sent only when the operator
      // says so, with a second press.
      S.dispatchNoAccess = p ? p.id : String((e.body.params && e.body.params.patrol) || '');
      showDispatchError(e.message);
      S.dispatchBusy = false;
      $('dispatch-submit').textContent = t('dispatch.dialog.no_access_confirm');
    } else if (e.status === 409 && e.body && e.body.confirm) {
      // A patrol is on its way to this home for another Call: a second one only when the
      // operator says so, with a second press.
      S.dispatchSecond = true;
      showDispatchError(`${e.message}.`);
      S.dispatchBusy = false;
      $('dispatch-submit').textContent = t('dispatch.dialog.second');
    } else if (e.status === 409 && e.body && e.body.dispatch !== undefined && e.body.dispatch !== null) {
      closeDispatchDialog();
      message(t('dispatch.dialog.already_open', { id: e.body.dispatch, reason: e.message }), 'warn');
    } else if (e.status === 422) {
      showDispatchError(t('dispatch.dialog.no_route_on_shift', { reason: e.message }));
      const first = $('dispatch-choices').querySelector('input');
      if (first) first.focus();
    } else if (e.status === 404) {
      showDispatchError(t('dispatch.dialog.not_dispatched', { reason: `${e.message}.` }));
    } else if (e.status !== 401) {
      showDispatchError(t('dispatch.dialog.not_dispatched', { reason: e.message }));
    }
  } finally {
    S.dispatchBusy = false;
    $('dispatch-submit').disabled = false;
    if (S.currentId === id) refreshCall();
  }
}

// ---------------------------------------------------------------- 12. Patrols board

function showPatrols() {
  if (!S.me) return;
  leaveCall();
  showView('patrols');
  renderBoard();
  loadBoard();
  blurHidden();
}

function startBoardPolling() {
  if (!S.boardTimer) S.boardTimer = setInterval(() => { if (S.view === 'patrols') loadBoard(); }, BOARD_POLL_MS);
}

function stopBoardPolling() {
  clearInterval(S.boardTimer);
  clearTimeout(S.boardReload);
  S.boardTimer = null;
  S.boardReload = null;
}

/** After a live change: one reload for a burst of messages. */
function scheduleBoardReload() {
  if (S.boardReload) return;
  S.boardReload = setTimeout(() => {
    S.boardReload = null;
    if (S.view === 'patrols') loadBoard();
  }, 250);
}

async function loadBoard() {
  if (S.boardLoading) {
    S.boardAgain = true;
    return;
  }
  S.boardLoading = true;
  try {
    const { data } = await api('GET', '/api/patrols');
    S.board = Array.isArray(data) ? data : [];
    S.boardAt = serverNow();
    for (const p of S.board) {
      if (p.phone) S.patrolPhones.set(p.id, p.phone);
      for (const d of p.assignments || []) noteDispatch(d);
    }
    show($('patrols-error'), false);
    if (S.view === 'patrols') renderBoard();
  } catch (e) {
    if (e.status !== 401 && S.view === 'patrols') {
      $('patrols-error').textContent = S.boardAt
        ? t('board.load_failed_shown', { error: e.message, time: fmtTimeMs(S.boardAt) })
        : t('board.load_failed', { error: e.message });
      show($('patrols-error'), true);
      renderBoardUpdated();
    }
  } finally {
    S.boardLoading = false;
    if (S.boardAgain) {
      S.boardAgain = false;
      loadBoard();
    }
  }
}

/** A patrol's live assignments, each in its newest known state. */
function liveAssignments(p) {
  return (p.assignments || []).map((d) => S.known.get(d.id) || d).filter((d) => LIVE_DISPATCH.has(d.state));
}

/** 0 breached, 1 no receipt in time, 2 warned, 3 out, 4 arrived. */
function urgency(d, now) {
  if (isBreachedNow(d, now)) return 0;
  if (isReceiptOverdue(d, now)) return 1;
  if (OPEN_DISPATCH.has(d.state) && Array.isArray(d.warned_at_mins) && d.warned_at_mins.length) return 2;
  return OPEN_DISPATCH.has(d.state) ? 3 : 4;
}

function renderBoard() {
  const box = $('patrols-board');
  renderBoardUpdated();
  if (S.board === null) {
    clear(box);
    box.append(el('p', { class: 'muted', text: t('board.loading') }));
    return;
  }
  const now = serverNow();
  const rows = S.board.map((p) => {
    const asg = liveAssignments(p).sort((a, b) => urgency(a, now) - urgency(b, now) || a.id - b.id);
    const worst = asg.reduce((m, d) => Math.min(m, urgency(d, now)), 9);
    return { p, asg, worst };
  });
  rows.sort((a, b) => (a.worst - b.worst) ||
    (Number(!!b.p.on_shift) - Number(!!a.p.on_shift)) ||
    (Number(!!b.p.connected) - Number(!!a.p.connected)) ||
    String(a.p.provider_name || a.p.provider || '').localeCompare(String(b.p.provider_name || b.p.provider || ''), 'sv') ||
    String(a.p.name || a.p.id).localeCompare(String(b.p.name || b.p.id), 'sv'));
  const onShift = rows.filter((r) => r.p.on_shift).length;
  const connected = rows.filter((r) => r.p.connected).length;
  const out = rows.reduce((n, r) => n + r.asg.length, 0);
  const breached = rows.reduce((n, r) => n + r.asg.filter((d) => isBreachedNow(d, now)).length, 0);
  $('patrols-summary').textContent = [tn('board.patrols', rows.length), t('board.on_shift_n', { n: onShift }),
    t('board.connected_n', { n: connected }), tn('board.out', out),
    breached ? t('board.breached_n', { n: breached }) : null].filter(Boolean).join(' · ');
  $('patrols-summary').classList.toggle('bad', breached > 0);

  const focusKey = document.activeElement && box.contains(document.activeElement)
    ? document.activeElement.dataset.focusKey : null;
  const frag = document.createDocumentFragment();
  for (const r of rows) frag.append(patrolCard(r.p, r.asg, r.worst));
  if (rows.length === 0) {
    frag.append(el('p', { class: 'empty-board', text: t('board.empty') }));
  }
  clear(box);
  box.append(frag);
  if (focusKey) {
    const again = box.querySelector(`[data-focus-key="${focusKey}"]`);
    if (again) again.focus();
  }
}

/** "Updated hh:mm:ss", red when the board is older than two polls. */
function renderBoardUpdated() {
  const node = $('patrols-updated');
  if (!S.boardAt) {
    node.textContent = '';
    return;
  }
  const old = serverNow() - S.boardAt > 2 * BOARD_POLL_MS + 5000;
  const text = `${t('page.updated', { time: fmtTimeMs(S.boardAt) })}${old ? ` ${t('page.out_of_date')}` : ''}`;
  if (node.textContent !== text) node.textContent = text;
  node.classList.toggle('stale-text', old);
}

function patrolCard(p, asg, worst) {
  const areas = Array.isArray(p.areas) ? p.areas.join(', ') : '';
  const card = el('article', {
    class: `patrol-card${p.on_shift ? ' on-shift' : ' off-shift'}${worst === 0 ? ' has-breach' : ''}${p.connected ? ' connected' : ''}`,
    dataset: { patrolId: p.id, connected: String(!!p.connected), onShift: String(!!p.on_shift) },
  },
  el('header', { class: 'patrol-head' },
    connDot(p.connected),
    el('h2', { class: 'patrol-name', text: p.name || p.id }),
    el('span', { class: `shift ${p.on_shift ? 'on' : 'off'}`, text: p.on_shift ? (p.shift || t('board.on_shift')) : t('board.off_shift'), title: p.shift || '' })),
  el('div', { class: 'patrol-meta' },
    el('span', { class: 'patrol-provider', text: p.provider_name || p.provider || '-' }),
    el('span', { class: 'patrol-areas', text: areas ? t('board.areas', { areas }) : t('board.no_area') }),
    telLink(p.phone)),
  el('div', { class: `patrol-link ${p.connected ? 'on' : 'off'}`, text: p.connected ? t('board.connected') : t('board.not_connected') }));
  if (asg.length === 0) {
    card.append(el('p', { class: 'muted no-assignment', text: t('board.no_assignment') }));
  } else {
    const ol = el('ol', { class: 'assignments' });
    for (const d of asg) ol.append(assignmentItem(d));
    card.append(ol);
  }
  return card;
}

function assignmentItem(d) {
  const pri = d.priority === undefined || d.priority === null ? null : priorityBadge(d.priority, 'small');
  return el('li', { class: `assignment asg-${d.state}`, dataset: { dispatchId: String(d.id), state: d.state, call: String(d.call) } },
    clockNode(d, 'compact'),
    el('div', { class: 'asg-body' },
      el('div', { class: 'asg-line' }, pri, el('span', { class: 'asg-name', text: d.subscriber_name || t('call.label', { id: d.call }) }),
        el('span', { class: `dstate dstate-${d.state}`, text: tOr(`dispatch.state.${d.state}`, DISPATCH_STATES[d.state] || d.state) })),
      el('div', { class: 'asg-addr', text: d.address || t('board.no_address') })),
    el('button', { type: 'button', class: 'small secondary asg-open', text: t('call.label', { id: d.call }), title: t('board.open_call', { id: d.call }), dataset: { focusKey: `call-${d.id}` }, on: { click: () => openCall(d.call) } }));
}

// ---------------------------------------------------------------- 13. Supervision

/*
 * Telecom incidents (banner on every page, the incidents page, one incident), the header's
 * supervision badges, work orders, the device page and the outbox. Everything shown here is
 * reloaded while its page is up (PAGE_POLLS) and after the live feed comes back; open
 * incidents also come live (`incident` messages). A page shows when it was last loaded and
 * turns that red when a reload failed, so nothing old passes for current.
 */

/**
 * Runs `fn` once at a time per `key`; calls meanwhile run the latest of them once afterwards
 * (it may load another incident or device than the one in flight).
 */
async function single(key, fn) {
  if (S.loading.has(key)) {
    S.loadAgain.set(key, fn);
    return;
  }
  S.loading.add(key);
  try {
    await fn();
  } finally {
    S.loading.delete(key);
    const again = S.loadAgain.get(key);
    S.loadAgain.delete(key);
    if (again && S.me) single(key, again);
  }
}

/** Seconds as a span in words: "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
function fmtSpan(secs) {
  if (!Number.isFinite(secs)) return '-';
  const s = Math.max(0, Math.round(secs));
  if (s < 120) return t('span.s', { s });
  if (s < 600 && s % 60) return t('span.min_s', { m: Math.floor(s / 60), s: s % 60 });
  const m = Math.round(s / 60);
  if (m < 90) return t('span.min', { m });
  const h = Math.floor(s / 3600);
  if (h < 48) {
    const r = Math.round((s - h * 3600) / 60);
    return r ? t('span.h_min', { h, m: r }) : t('span.h', { h });
  }
  const hours = Math.round(s / 3600);
  const d = Math.floor(hours / 24);
  const rh = hours % 24;
  return rh ? t('span.d_h', { d, h: rh }) : t('span.d', { d });
}

/** The centre's HH:MM, with the date in front when not today (in the centre's zone). */
function fmtHM(ts) {
  const t = parseTs(ts);
  if (!Number.isFinite(t)) return '?';
  const p = zoneParts(t);
  if (p.date === zoneParts(serverNow()).date) return p.hm;
  return `${p.date} ${p.hm}`;
}

/** The centre's date and HH:MM (deadlines days away). */
function fmtDay(ts) {
  const t = parseTs(ts);
  if (!Number.isFinite(t)) return '?';
  const p = zoneParts(t);
  return `${p.weekday} ${p.date} ${p.hm}`;
}

/** A time element (local time, full date in the tooltip). */
function timeNode(ts, fmt, cls) {
  if (!ts) return el('span', { class: 'muted', text: '-' });
  return el('time', { class: cls || '', datetime: ts, title: fmtFull(ts), text: (fmt || fmtTime)(ts) });
}

/**
 * A text that changes with the clock, repainted every second by `tickSupervision`:
 * `ago` (time since `at`), `until` (countdown to `at`; past it, how long ago and `late`).
 */
function tickerNode(kind, at, cls) {
  const node = el('span', { class: `ticker ${cls || ''}`, dataset: { tick: kind, at: at || '' } });
  paintTicker(node, serverNow());
  return node;
}

function paintTicker(node, now) {
  const at = parseTs(node.dataset.at);
  let text = '-';
  let late = false;
  if (Number.isFinite(at)) {
    const secs = (now - at) / 1000;
    if (node.dataset.tick === 'ago') {
      text = t('ticker.ago', { time: fmtDuration(secs) });
    } else if (node.dataset.tick === 'for') {
      text = fmtDuration(secs);
    } else if (node.dataset.tick === 'next' && secs > -1) {
      text = t('ticker.due_now');
    } else if (secs < 0) {
      text = t('ticker.in', { time: fmtDuration(-secs) });
    } else {
      text = t('ticker.passed', { time: fmtDuration(secs) });
      late = true;
    }
  }
  if (node.textContent !== text) node.textContent = text;
  node.classList.toggle('late', late);
}

/** A deadline in words ("in 2 d 4 h" / "OVERDUE by 4 h"), redrawn with its page. */
function dueWords(ts, now) {
  const at = parseTs(ts);
  if (!Number.isFinite(at)) return { text: '', late: false };
  const secs = (at - now) / 1000;
  return secs > 0 ? { text: t('due.in', { span: fmtSpan(secs) }), late: false } : { text: t('due.overdue', { span: fmtSpan(-secs) }), late: true };
}

/** "updated hh:mm:ss", red and "(out of date)" when the last reload is more than 2 polls old. */
function renderUpdated(id, at, pollMs, failed) {
  const node = $(id);
  if (!node) return;
  if (!at) {
    node.textContent = failed ? t('page.not_loaded') : '';
    node.classList.toggle('stale-text', !!failed);
    return;
  }
  const old = failed || serverNow() - at > 2 * pollMs + 5000;
  const text = `${t('page.updated', { time: fmtTimeMs(at) })}${old ? ` ${t('page.out_of_date')}` : ''}`;
  if (node.textContent !== text) node.textContent = text;
  node.classList.toggle('stale-text', old);
}

/** Shows or hides a page's error line. */
function pageError(id, text) {
  const node = $(id);
  node.textContent = text || '';
  show(node, !!text);
}

/** An account as a link to its device page. */
function deviceLink(account, text) {
  if (!account) return el('span', { class: 'muted', text: '-' });
  // The device page is the centre's.
  if (isTenant()) return el('span', { class: 'mono', text: text || account });
  return el('button', {
    type: 'button', class: 'link-like mono device-link', text: text || account,
    title: t('device.link_title', { account }),
    dataset: { account },
    on: { click: (e) => { e.stopPropagation(); openDevice(account); } },
  });
}

function callLink(id) {
  if (isTenant()) return el('span', { class: 'call-ref', text: t('call.label', { id }) });
  return el('button', {
    type: 'button', class: 'link-like call-link', text: t('call.label', { id }), dataset: { call: String(id) },
    on: { click: (e) => { e.stopPropagation(); openCall(id); } },
  });
}

function incidentLink(id) {
  const i = S.incidents.get(id);
  return el('button', {
    type: 'button', class: 'link-like incident-link', dataset: { incidentId: String(id) },
    text: i ? t(isOpenIncident(i) ? 'incident.link_open' : 'incident.link', { id, key: i.key }) : t('incident.label', { id }),
    on: { click: (e) => { e.stopPropagation(); openIncident(id); } },
  });
}

/** A labelled list of facts; `rows` are [label, node or text, class?]; null rows are left out. */
function factList(rows, cls) {
  const dl = el('dl', { class: `facts ${cls || ''}` });
  for (const r of rows) {
    if (!r) continue;
    dl.append(el('dt', { text: r[0] }), el('dd', { class: r[2] || '' }, r[1] === null || r[1] === undefined || r[1] === '' ? '-' : r[1]));
  }
  return dl;
}

/** A table with a header; cells are nodes or text; `rowAttrs(i)` gives each row's attributes. */
function simpleTable(cls, heads, rows, empty, rowAttrs) {
  const tbody = el('tbody');
  rows.forEach((r, i) => tbody.append(el('tr', rowAttrs ? rowAttrs(i) : {}, ...r.map((c) => (c instanceof Node ? el('td', {}, c) : el('td', { text: c === null || c === undefined ? '' : String(c) }))))));
  if (!rows.length) tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: heads.length, class: 'muted', text: empty })));
  return el('table', { class: `data-table ${cls}` }, el('thead', {}, el('tr', {}, ...heads.map((h) => el('th', { text: h })))), tbody);
}

// ---- incidents: what is known of each

function isOpenIncident(i) {
  return !!i && !i.resolved_at;
}

/** Open incidents, oldest first. */
function openIncidents() {
  return Array.from(S.incidents.values()).filter(isOpenIncident)
    .sort((a, b) => (parseTs(a.opened_at) - parseTs(b.opened_at)) || (a.id - b.id));
}

/** Devices still silent (the server's count, or counted from the list). */
function silentCount(i) {
  const n = Number(i.silent);
  if (i.silent !== undefined && i.silent !== null && Number.isFinite(n)) return n;
  return (i.devices || []).filter((d) => !d.restored_at).length;
}

/** When the silence began: the earliest device's, else the declaration. */
function incidentSince(i) {
  let best = null;
  for (const d of i.devices || []) {
    const t = parseTs(d.silent_since);
    if (Number.isFinite(t) && (best === null || t < best.t)) best = { t, ts: d.silent_since };
  }
  return best ? best.ts : i.opened_at;
}

function incidentKind(i) {
  const k = INCIDENT_KINDS[i.kind];
  if (!k) return { tag: t('incident.tag'), label: i.kind ? String(i.kind) : t('incident.kind.group'), word: 'group' };
  return { tag: k.tag, label: k.label };
}

/** "Telia, 25 of 100 devices silent since 02:14". */
function incidentLine(i) {
  const n = silentCount(i);
  const pop = Number(i.population);
  const since = fmtHM(incidentSince(i));
  if (Number.isFinite(pop) && pop > 0) return t('incident.line_of', { key: i.key, n, pop, since });
  return tn('incident.line', n, { key: i.key, since });
}

/**
 * Remembers the newest view of an incident; returns the one kept. Live messages come in
 * order and always win; an HTTP answer (`askedAt`: when it was asked for) loses to a live
 * message that came after it was asked for. A resolution is final.
 */
function noteIncident(i, askedAt) {
  if (!i || i.id === undefined || i.id === null) return i;
  const old = S.incidents.get(i.id);
  if (old && old.resolved_at && !i.resolved_at) return old;
  if (askedAt === undefined) S.incidentLiveAt.set(i.id, Date.now());
  else if (old && (S.incidentLiveAt.get(i.id) || 0) > askedAt) return old;
  // A list item may leave out what the full view has (notifications): keep it.
  if (old && !Array.isArray(i.notifications) && Array.isArray(old.notifications)) i = Object.assign({}, i, { notifications: old.notifications });
  S.incidents.set(i.id, i);
  return i;
}

/** GET /api/incidents?state=open: at start and after the live feed was down. */
async function loadOpenIncidents() {
  await single('open-incidents', async () => {
    try {
      const askedAt = Date.now();
      const { data } = await api('GET', '/api/incidents?state=open');
      const list = Array.isArray(data) ? data : [];
      const ids = new Set(list.map((i) => i.id));
      const first = S.incidentsFirst;
      // Open before, not in the list now: it was resolved while we did not hear; ask.
      for (const i of openIncidents()) if (!ids.has(i.id)) refreshIncident(i.id);
      for (const i of list) {
        const known = S.incidents.has(i.id);
        const kept = noteIncident(i, askedAt);
        if (!first && !known && isOpenIncident(kept)) incidentOpened(kept);
      }
      S.incidentsFirst = false;
      S.incidentsFailed = false;
      renderIncidentsEverywhere();
    } catch (e) {
      S.incidentsFailed = e.status !== 404; // 404: a server without incidents
      renderIncidentBanner();
    }
  });
}

/** One incident again (a resolution missed while the feed was down). */
async function refreshIncident(id) {
  try {
    const askedAt = Date.now();
    const { data } = await api('GET', `/api/incidents/${encodeURIComponent(id)}`);
    if (data) noteIncident(data, askedAt);
    renderIncidentsEverywhere();
  } catch (e) {
    if (e.status === 404) {
      S.incidents.delete(id);
      renderIncidentsEverywhere();
    }
  }
}

/** A live `incident` message: opened, changed or resolved. */
function onIncidentMessage(i) {
  const before = S.incidents.get(i.id);
  const wasOpen = isOpenIncident(before);
  const kept = noteIncident(i);
  if (!before && isOpenIncident(kept)) {
    // During the first load an already open incident may change: that is not news.
    const fresh = serverNow() - parseTs(kept.opened_at) < 5 * 60000;
    if (!S.incidentsFirst || fresh) incidentOpened(kept);
  } else if (wasOpen && !isOpenIncident(kept)) {
    const still = silentCount(kept);
    message(still ? tn('incident.resolved_still', still, { key: kept.key }) : t('incident.resolved_all', { key: kept.key }), 'ok');
  }
  scheduleIncidentRender();
  scheduleSupervision();
}

/** A new open incident: the sound, the banner line flashes a little. */
function incidentOpened(i) {
  S.incidentFlash.set(i.id, Date.now() + INCIDENT_FLASH_MS);
  playTones([523, 659, 523, 392], 'sine', 0.28, 0.18);
}

/** Live messages come in bursts (devices attach one by one): one render per burst. */
function scheduleIncidentRender() {
  if (S.incidentRender) return;
  S.incidentRender = setTimeout(() => {
    S.incidentRender = null;
    renderIncidentsEverywhere();
  }, 200);
}

function renderIncidentsEverywhere() {
  if (!S.me) return;
  renderIncidentBanner();
  if (S.view === 'incidents') renderIncidents();
  if (S.view === 'incident') renderIncident();
}

// ---- the banner (every page)

function renderIncidentBanner() {
  const box = $('incident-banner');
  const list = S.me ? openIncidents() : [];
  const focusKey = document.activeElement && box.contains(document.activeElement)
    ? document.activeElement.dataset.focusKey : null;
  clear(box);
  show(box, list.length > 0 || (!!S.me && S.incidentsFailed));
  const now = Date.now();
  for (const i of list.slice(0, 3)) {
    const k = incidentKind(i);
    const until = S.incidentFlash.get(i.id);
    const line = el('div', { class: `iline${until && until > now ? ' flash' : ''}`, dataset: { incidentId: String(i.id) } },
      el('span', { class: 'iline-words' },
        el('strong', { class: 'iline-tag', text: `${k.tag}:` }), ' ',
        el('span', { class: 'iline-text', text: incidentLine(i) })),
      el('button', { type: 'button', class: 'small iline-open', text: t('incident.open'), dataset: { focusKey: `inc-${i.id}` }, on: { click: () => openIncident(i.id) } }));
    if (until && until <= now) S.incidentFlash.delete(i.id);
    box.append(line);
  }
  if (list.length > 3) {
    box.append(el('div', { class: 'iline-more' }, `${t('incident.more', { n: list.length - 3 })} `,
      el('button', { type: 'button', class: 'small', text: t('incident.all'), on: { click: showIncidents } })));
  }
  if (!list.length && S.incidentsFailed) {
    box.append(el('div', { class: 'iline unknown' },
      el('span', { class: 'iline-words' },
        el('strong', { class: 'iline-tag', text: t('incident.unknown_tag') }), ' ',
        el('span', { class: 'iline-text', text: t('incident.unknown') }))));
  }
  if (focusKey) {
    const again = box.querySelector(`[data-focus-key="${focusKey}"]`);
    if (again) again.focus();
  }
  document.body.classList.toggle('has-incident', list.length > 0);
  const badge = $('incidents-badge');
  badge.textContent = list.length ? t('sup.wo_open', { n: list.length }) : '';
  badge.className = `tab-badge${list.length ? ' incident' : ''}`;
  show(badge, list.length > 0);
  renderTitle();
}

// ---- the incidents page

function showIncidents() {
  if (!S.me) return;
  leaveCall();
  showView('incidents');
  renderIncidents();
  loadIncidents();
  blurHidden();
}

/** GET /api/incidents?state=all: open and past. */
async function loadIncidents() {
  await single('incidents', async () => {
    try {
      const askedAt = Date.now();
      const { data } = await api('GET', '/api/incidents?state=all');
      const list = Array.isArray(data) ? data : [];
      S.incidentList = list.map((i) => noteIncident(i, askedAt).id);
      S.incidentListAt = serverNow();
      S.incidentListFailed = false;
      pageError('incidents-error', '');
      renderIncidentsEverywhere();
    } catch (e) {
      if (e.status === 401) return;
      S.incidentListFailed = true;
      pageError('incidents-error', S.incidentListAt
        ? t('incidents.load_failed_shown', { error: e.message, time: fmtTimeMs(S.incidentListAt) })
        : t('incidents.load_failed', { error: e.message }));
      if (S.view === 'incidents') renderIncidents();
    }
  });
}

function renderIncidents() {
  renderUpdated('incidents-updated', S.incidentListAt, PAGE_POLLS.incidents[1], S.incidentListFailed);
  const box = $('incidents-content');
  if (S.incidentList === null) {
    clear(box);
    box.append(el('p', { class: 'muted', text: t('incidents.loading') }));
    return;
  }
  const ids = new Set(S.incidentList);
  for (const i of openIncidents()) ids.add(i.id); // opened live since the list was loaded
  const all = Array.from(ids).map((id) => S.incidents.get(id)).filter(Boolean);
  const open = all.filter(isOpenIncident).sort((a, b) => parseTs(b.opened_at) - parseTs(a.opened_at));
  const past = all.filter((i) => !isOpenIncident(i)).sort((a, b) => parseTs(b.opened_at) - parseTs(a.opened_at));
  $('incidents-summary').textContent = t('incidents.summary', { open: open.length, past: past.length });
  $('incidents-summary').classList.toggle('bad', open.length > 0);
  const heads = ['#', ...['kind', 'key', 'state', 'silent', 'began', 'opened', 'resolved', 'notifications'].map((h) => t(`incidents.col.${h}`))];
  const row = (i) => {
    const k = incidentKind(i);
    const n = silentCount(i);
    const notes = Array.isArray(i.notifications) ? i.notifications : null;
    const failing = notes ? notes.filter((d) => d.state !== 'delivered').length : 0;
    return el('tr', {
      class: `incident-row${isOpenIncident(i) ? ' is-open' : ''}`, tabindex: 0, dataset: { incidentId: String(i.id) },
      on: { click: () => openIncident(i.id), keydown: (e) => { if (e.key === 'Enter' && e.target === e.currentTarget) openIncident(i.id); } },
    },
    el('td', { class: 'mono', text: String(i.id) }),
    el('td', { text: k.label }),
    el('td', { class: 'strong', text: i.key }),
    el('td', {}, isOpenIncident(i) ? el('span', { class: 'istate open', text: t('incidents.open_tag') }) : el('span', { class: 'istate resolved', text: t('incidents.resolved') })),
    el('td', { class: 'num', text: t('incidents.n_of', { n, of: orDash(i.population) }) }),
    el('td', {}, timeNode(incidentSince(i))),
    el('td', {}, timeNode(i.opened_at)),
    el('td', {}, i.resolved_at ? timeNode(i.resolved_at) : el('span', { class: 'bad-text' }, `${t('incidents.open_for')} `, tickerNode('for', i.opened_at, 'open-for'))),
    el('td', { class: failing ? 'warn-cell' : '', text: notes === null ? '' : (notes.length ? t('incidents.delivered', { n: notes.length - failing, of: notes.length }) : t('incidents.none')) }));
  };
  const section = (title, list, empty) => el('section', { class: 'dir-section' },
    el('h2', { text: t('page.section_count', { title, n: list.length }) }),
    (() => {
      const tbody = el('tbody', {}, ...list.slice(0, MAX_LIST_ROWS).map(row));
      if (!list.length) tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: heads.length, class: 'muted', text: empty })));
      return el('table', { class: 'data-table incidents-table' }, el('thead', {}, el('tr', {}, ...heads.map((h) => el('th', { text: h })))), tbody);
    })(),
    list.length > MAX_LIST_ROWS ? el('p', { class: 'muted', text: t('page.newest_shown', { max: MAX_LIST_ROWS, n: list.length }) }) : null);
  const focusId = document.activeElement && box.contains(document.activeElement) ? document.activeElement.dataset.incidentId : null;
  clear(box);
  box.append(section(t('incidents.open_section'), open, t('incidents.none_open')),
    section(t('incidents.past_section'), past, t('incidents.none_past')));
  if (focusId) {
    const again = box.querySelector(`tr[data-incident-id="${focusId}"]`);
    if (again) again.focus();
  }
}

// ---- one incident

function openIncident(id) {
  if (!S.me) return;
  leaveCall();
  S.incidentId = id;
  S.incidentAt = 0;
  S.incidentFailed = false;
  pageError('incident-error', '');
  showView('incident');
  window.scrollTo(0, 0);
  renderIncident();
  loadIncident();
  blurHidden();
}

async function loadIncident() {
  const id = S.incidentId;
  if (id === null) return;
  await single('incident', async () => {
    try {
      const askedAt = Date.now();
      const { data } = await api('GET', `/api/incidents/${encodeURIComponent(id)}`);
      if (data) noteIncident(data, askedAt);
      if (S.incidentId !== id) return;
      S.incidentAt = serverNow();
      S.incidentFailed = false;
      pageError('incident-error', '');
      renderIncidentsEverywhere();
    } catch (e) {
      if (e.status === 401 || S.incidentId !== id) return;
      S.incidentFailed = true;
      pageError('incident-error', e.status === 404 ? t('incident.no_such', { id })
        : (S.incidentAt ? t('incident.load_failed_shown', { id, error: e.message, time: fmtTimeMs(S.incidentAt) })
          : t('incident.load_failed', { id, error: e.message })));
      renderIncident();
    }
  });
}

/** Most in need first: extra visits, still silent, silent longest, then by name. */
function compareIncidentDevices(a, b) {
  return (Number(!!b.needs_extra_visits) - Number(!!a.needs_extra_visits)) ||
    (Number(!!a.restored_at) - Number(!!b.restored_at)) ||
    (parseTs(a.silent_since) - parseTs(b.silent_since)) ||
    String(a.subscriber_name || a.subscriber || '~').localeCompare(String(b.subscriber_name || b.subscriber || '~'), 'sv') ||
    String(a.account).localeCompare(String(b.account));
}

function renderIncident() {
  renderUpdated('incident-updated', S.incidentAt, PAGE_POLLS.incident[1], S.incidentFailed);
  const box = $('incident-content');
  const i = S.incidents.get(S.incidentId);
  const title = $('incident-title');
  const st = $('incident-state');
  if (!i) {
    title.textContent = t('incident.label', { id: S.incidentId });
    st.textContent = '';
    st.className = 'istate';
    clear(box);
    if (!S.incidentFailed) box.append(el('p', { class: 'muted', text: t('incident.loading') }));
    return;
  }
  const k = incidentKind(i);
  const open = isOpenIncident(i);
  title.textContent = t('incident.link', { id: i.id, key: i.key });
  st.textContent = open ? t('incidents.open_tag') : t('incidents.resolved');
  st.className = `istate ${open ? 'open' : 'resolved'}`;
  $('incident-view').dataset.state = open ? 'open' : 'resolved';
  const devs = (i.devices || []).slice().sort(compareIncidentDevices);
  const n = silentCount(i);
  const restored = devs.filter((d) => d.restored_at).length;
  const extra = devs.filter((d) => d.needs_extra_visits && !d.restored_at).length;

  const head = el('section', { class: `card incident-head ${open ? 'is-open' : 'is-resolved'}` },
    el('div', { class: 'incident-big' },
      el('div', { class: 'incident-count' },
        el('span', { class: 'incident-n', text: String(n) }),
        el('span', { class: 'incident-of', text: ` ${t('incident.of_silent', { pop: orDash(i.population) })}` })),
      el('div', { class: 'incident-sub' },
        el('span', { class: 'strong', text: t('incident.kind_key', { kind: k.label, key: i.key }) }),
        restored ? el('span', { class: 'ok-text', text: ` · ${tn('incident.report_again', restored)}` }) : null,
        extra ? el('span', { class: 'bad-text', text: ` · ${tn('incident.need_extra', extra)}` }) : null)),
    factList([
      [t('incident.silent_since'), timeNode(incidentSince(i))],
      [t('incident.declared'), timeNode(i.opened_at)],
      open ? [t('incident.open_for'), tickerNode('for', i.opened_at)] : [t('incidents.resolved'), timeNode(i.resolved_at)],
      !open ? [t('incident.lasted'), fmtDuration(ageSecs(i.opened_at, i.resolved_at))] : null,
      [t('incident.group_devices'), t('incident.group_reporting', { n: orDash(i.population) })],
    ], 'incident-facts'),
    el('p', { class: 'muted', text: open ? t('incident.explain_open') : t('incident.explain_resolved') }));

  const rows = devs.slice(0, MAX_LIST_ROWS).map((d) => [
    d.needs_extra_visits ? el('span', { class: 'tag tag-extra', text: t('incident.extra_visits') }) : el('span', { class: 'muted', text: '' }),
    el('span', { class: 'strong', text: d.subscriber_name || d.subscriber || t('incident.unknown_subscriber') }),
    orDash(d.care_provider),
    deviceLink(d.account),
    timeNode(d.silent_since),
    d.restored_at ? el('span', { class: 'ok-text' }, `${t('incident.reports_again')} `, timeNode(d.restored_at)) : el('span', { class: 'bad-text', text: t('incident.silent') }),
    d.call !== undefined && d.call !== null ? callLink(d.call) : el('span', { class: 'muted', text: '' }),
  ]);
  const devices = el('section', { class: 'dir-section incident-devices' },
    el('h2', { text: t('incident.affected', { n: devs.length }) }),
    el('p', { class: 'muted', text: t('incident.affected_order') }),
    simpleTable('incident-devices-table', [t('incident.col.needs'), t('wo.subscriber'), t('card.care_provider'), t('wo.device'), t('incident.silent_since'), t('incident.col.now'), t('incident.col.call')], rows,
      t('incident.no_devices'), (x) => ({ class: `idev${devs[x].restored_at ? ' restored' : ' silent'}${devs[x].needs_extra_visits ? ' extra' : ''}`, dataset: { account: devs[x].account } })),
    devs.length > MAX_LIST_ROWS ? el('p', { class: 'muted', text: t('page.first_shown', { max: MAX_LIST_ROWS, n: devs.length }) }) : null);

  const history = el('section', { class: 'dir-section incident-history' }, el('h2', { text: t('incident.history') }));
  const hist = Array.isArray(i.history) ? i.history : [];
  const ol = el('ol', { class: 'timeline plain-timeline' });
  for (const h of hist) {
    ol.append(el('li', { class: 'tl' },
      el('time', { class: 'tl-time', datetime: h.at, title: fmtFull(h.at), text: fmtTime(h.at) }),
      el('div', { class: 'tl-body' }, el('span', { text: h.what }))));
  }
  if (!hist.length) ol.append(el('li', { class: 'tl muted', text: t('tl.nothing') }));
  history.append(ol);

  const notes = Array.isArray(i.notifications) ? i.notifications : null;
  const notifications = el('section', { class: 'dir-section incident-notifications' },
    el('h2', { text: t('incident.notifications', { n: notes ? notes.length : '…' }) }),
    notes === null ? el('p', { class: 'muted', text: t('call.loading') }) : deliveriesTable(notes, t('incident.no_notifications')));

  clear(box);
  box.append(head, devices, notifications, history);
}

// ---- deliveries (an incident's notifications, the outbox page)

function deliveryState(d) {
  return el('span', { class: `dstate delivery-${d.state}`, text: DELIVERY_STATES[d.state] || d.state });
}

function deliveriesTable(list, empty) {
  const sorted = list.slice().sort((a, b) => (parseTs(a.created_at) - parseTs(b.created_at)) || (a.id - b.id));
  const rows = sorted.slice(0, MAX_LIST_ROWS).map((d) => [
    el('span', {}, el('span', { class: 'strong', text: EVENT_LABELS[d.event] || d.event }), el('br'), el('span', { class: 'mono muted small-text', text: d.event })),
    el('span', {}, el('span', { text: d.recipient || '-' }), el('br'), el('span', { class: 'muted small-text', text: `${RECIPIENT_KINDS[d.recipient_kind] || d.recipient_kind || ''} · ${d.endpoint}` })),
    deliveryState(d),
    String(d.attempts ?? 0),
    d.delivered_at ? timeNode(d.delivered_at) : (d.next_attempt_at ? el('span', {}, `${t('delivery.next')} `, timeNode(d.next_attempt_at), ' ', tickerNode('next', d.next_attempt_at, 'small-text')) : el('span', { class: 'muted', text: t('delivery.waiting_turn') })),
    d.last_error ? el('span', { class: 'error-text', text: d.last_error }) : el('span', { class: 'muted', text: '' }),
    el('span', {}, timeNode(d.created_at), el('span', { class: 'mono muted small-text', text: ` #${d.id}` })),
  ]);
  const table = simpleTable('deliveries-table', ['event', 'to', 'state', 'attempts', 'delivered', 'last_error', 'queued'].map((h) => t(`delivery.col.${h}`)), rows, empty,
    (x) => ({ class: `delivery delivery-row-${sorted[x].state}`, dataset: { deliveryId: String(sorted[x].id), state: sorted[x].state } }));
  return list.length > MAX_LIST_ROWS
    ? el('div', {}, table, el('p', { class: 'muted', text: t('page.first_shown', { max: MAX_LIST_ROWS, n: list.length }) }))
    : table;
}

function showOutbox() {
  if (!isSupervisor()) return;
  leaveCall();
  showView('outbox');
  renderOutbox();
  loadOutbox();
  blurHidden();
}

async function loadOutbox() {
  await single('outbox', async () => {
    const state = $('outbox-state').value || 'all';
    try {
      const { data } = await api('GET', `/api/outbox?state=${encodeURIComponent(state)}`);
      if (($('outbox-state').value || 'all') !== state) return;
      S.outbox = Array.isArray(data) ? data : [];
      S.outboxAt = serverNow();
      S.outboxFailed = false;
      pageError('outbox-error', '');
      if (S.view === 'outbox') renderOutbox();
    } catch (e) {
      if (e.status === 401) return;
      S.outboxFailed = true;
      pageError('outbox-error', t('outbox.load_failed', { error: e.message }));
      if (S.view === 'outbox') renderOutbox();
    }
  });
}

function renderOutbox() {
  renderUpdated('outbox-updated', S.outboxAt, PAGE_POLLS.outbox[1], S.outboxFailed);
  const box = $('outbox-content');
  clear(box);
  if (S.outbox === null) {
    box.append(el('p', { class: 'muted', text: t('outbox.loading') }));
    return;
  }
  const failing = S.outbox.filter((d) => d.state === 'failing').length;
  const pending = S.outbox.filter((d) => d.state === 'pending').length;
  $('outbox-summary').textContent = t('outbox.summary', { n: S.outbox.length, pending, failing });
  $('outbox-summary').classList.toggle('bad', failing > 0);
  box.append(deliveriesTable(S.outbox, t('outbox.none')));
}

// ---- header badges (GET /api/supervision every 30 s)

async function loadSupervision() {
  await single('supervision', async () => {
    try {
      const { data } = await api('GET', '/api/supervision');
      S.supervision = data || {};
      S.supervisionAt = serverNow();
      if (S.supervision.staffing) setStaffing(S.supervision.staffing);
      S.supervisionFailed = false;
      // The server counts more open incidents than we show: a message was missed.
      const n = Number(S.supervision.incidents_open);
      if (Number.isFinite(n) && n !== openIncidents().length) loadOpenIncidents();
    } catch (e) {
      if (e.status === 401) return;
      S.supervisionFailed = true;
      S.supervisionMissing = e.status === 404;
    }
    renderSupervision();
  });
}

/** After a change (an incident message, a work-order action): one reload soon. */
function scheduleSupervision() {
  if (S.supervisionSoon) return;
  S.supervisionSoon = setTimeout(() => {
    S.supervisionSoon = null;
    if (S.me) loadSupervision();
  }, 1000);
}

function renderSupervision() {
  const s = S.supervision || {};
  const box = $('supervision-badges');
  show(box, !!S.me && !S.supervisionMissing);
  const old = S.supervisionFailed || !S.supervisionAt || serverNow() - S.supervisionAt > 2 * SUPERVISION_POLL_MS + 5000;
  const num = (v) => (old || v === undefined || v === null ? '?' : String(v));
  const since = S.supervisionAt ? ` ${t('sup.last_updated', { time: fmtTimeMs(S.supervisionAt) })}` : '';
  const silent = Number(s.silent) || 0;
  const b = $('badge-silent');
  $('badge-silent-text').textContent = t('sup.silent', { n: num(s.silent) });
  b.dataset.level = old ? 'stale' : (silent ? 'warn' : 'ok');
  b.title = old
    ? `${t('sup.stale')}${since}`
    : `${t('sup.figures', { supervised: s.supervised ?? '?', silent })}${since} ${t('sup.click')}`;
  const wo = $('workorders-badge');
  const open = Number(s.work_orders_open) || 0;
  const overdue = Number(s.work_orders_overdue) || 0;
  let text = '';
  if (old && S.supervisionAt) text = t('sup.wo_open', { n: '?' });
  else if (!old && open) text = `${t('sup.wo_open', { n: open })}${overdue ? ` · ${t('sup.wo_overdue', { n: overdue })}` : ''}`;
  wo.textContent = text;
  wo.className = `tab-badge${old ? ' stale' : (overdue ? ' bad-steady' : '')}`;
  wo.title = old ? t('sup.not_up_to_date') : t('sup.wo_title', { open, overdue });
  show(wo, !!text);
  // The subscribers' orders (supervisors), counted as the work orders are.
  const ordb = $('orders-badge');
  const oOpen = Number(s.orders_open) || 0;
  const oLate = Number(s.orders_overdue) || 0;
  let otext = '';
  if (isSupervisor() && s.orders_open !== undefined) {
    if (old && S.supervisionAt) otext = t('sup.orders_open', { n: '?' });
    else if (!old && oOpen) otext = `${t('sup.orders_open', { n: oOpen })}${oLate ? ` · ${t('sup.orders_overdue', { n: oLate })}` : ''}`;
  }
  ordb.textContent = otext;
  ordb.className = `tab-badge${old ? ' stale' : (oLate ? ' bad-steady' : '')}`;
  ordb.title = old ? t('sup.not_up_to_date') : t('sup.orders_title', { open: oOpen, overdue: oLate, back: Number(s.orders_return_due) || 0 });
  show(ordb, !!otext);
  const ob = $('outbox-badge');
  const pending = Number(s.outbox_pending) || 0;
  ob.textContent = !old && pending ? t('sup.pending', { n: pending }) : '';
  ob.className = 'tab-badge warn';
  show(ob, isSupervisor() && !old && pending > 0);
}

// ---- work orders

function showWorkOrders(opts) {
  if (!S.me) return;
  leaveCall();
  const before = `${$('wo-state').value}/${$('wo-overdue').checked}`;
  if (opts && opts.focus !== undefined) {
    S.wo.focus = opts.focus;
    S.wo.expanded.add(opts.focus);
    // Show it whatever its state.
    $('wo-state').value = 'all';
    $('wo-overdue').checked = false;
  }
  if (before !== `${$('wo-state').value}/${$('wo-overdue').checked}`) S.wo.list = null;
  showView('workorders');
  renderWorkOrders();
  loadWorkOrders();
  blurHidden();
}

function woFilter() {
  return { state: $('wo-state').value || 'open', overdue: $('wo-overdue').checked };
}

async function loadWorkOrders() {
  await single('workorders', async () => {
    const f = woFilter();
    const q = [`state=${encodeURIComponent(f.state)}`];
    if (f.overdue) q.push('overdue=true');
    try {
      const { data } = await api('GET', `/api/work_orders?${q.join('&')}`);
      const now = woFilter();
      if (now.state !== f.state || now.overdue !== f.overdue) return; // changed meanwhile: loads again
      S.wo.list = Array.isArray(data) ? data : [];
      S.wo.at = serverNow();
      S.wo.failed = false;
      pageError('workorders-error', '');
      if (S.view === 'workorders') renderWorkOrders();
    } catch (e) {
      if (e.status === 401) return;
      S.wo.failed = true;
      pageError('workorders-error', S.wo.at
        ? t('wo.load_failed_shown', { error: e.message, time: fmtTimeMs(S.wo.at) })
        : t('wo.load_failed', { error: e.message }));
      if (S.view === 'workorders') renderWorkOrders();
    }
  });
}

/** Late now, by the clock (the server's `overdue` is as of when it answered). */
function woLateness(o, now) {
  if (o.state !== 'new' && o.state !== 'started') return null;
  if (now >= parseTs(o.done_by)) return 'not_done';
  if (o.state === 'new' && now >= parseTs(o.start_by)) return 'not_started';
  return o.overdue || null;
}

function woRank(o, now) {
  if (woLateness(o, now)) return 0;
  if (o.state === 'new') return 1;
  if (o.state === 'started') return 2;
  return 3;
}

function woMatches(o, f, now) {
  if (f.state === 'open' && o.state !== 'new' && o.state !== 'started') return false;
  if (WO_STATES[f.state] && o.state !== f.state) return false;
  if (f.overdue && !woLateness(o, now)) return false;
  return true;
}

/** Keeps what is typed in a re-rendered box (values and focus of `[data-keep]` fields). */
function keepInputs(box, render) {
  const values = new Map();
  for (const i of box.querySelectorAll('[data-keep]')) values.set(i.dataset.keep, i.value);
  const a = document.activeElement;
  const focusKey = a && box.contains(a) ? (a.dataset.keep || a.dataset.focusKey) : null;
  render();
  for (const i of box.querySelectorAll('[data-keep]')) if (values.has(i.dataset.keep)) i.value = values.get(i.dataset.keep);
  if (focusKey) {
    const again = box.querySelector(`[data-keep="${focusKey}"], [data-focus-key="${focusKey}"]`);
    if (again) again.focus();
  }
}

function renderWorkOrders() {
  renderUpdated('workorders-updated', S.wo.at, PAGE_POLLS.workorders[1], S.wo.failed);
  const box = $('workorders-list');
  if (S.wo.list === null) {
    clear(box);
    box.append(el('p', { class: 'muted', text: t('wo.loading') }));
    return;
  }
  const now = serverNow();
  const f = woFilter();
  const list = S.wo.list.filter((o) => woMatches(o, f, now)).sort((a, b) => {
    const ra = woRank(a, now);
    const rb = woRank(b, now);
    if (ra !== rb) return ra - rb;
    if (ra < 3) return (parseTs(a.start_by) - parseTs(b.start_by)) || (a.id - b.id);
    return (parseTs(b.created_at) - parseTs(a.created_at)) || (b.id - a.id);
  });
  const late = list.filter((o) => woLateness(o, now)).length;
  $('workorders-summary').textContent = `${t('wo.shown', { n: list.length })}${late ? ` · ${t('sup.wo_overdue', { n: late })}` : ''}`;
  $('workorders-summary').classList.toggle('bad', late > 0);
  keepInputs(box, () => {
    clear(box);
    for (const o of list.slice(0, MAX_LIST_ROWS)) box.append(woCard(o, now));
    if (!list.length) {
      box.append(el('p', { class: 'empty-board', text: f.overdue ? t('wo.none_overdue') : t('wo.none') }));
    }
    if (list.length > MAX_LIST_ROWS) box.append(el('p', { class: 'muted', text: t('page.first_shown', { max: MAX_LIST_ROWS, n: list.length }) }));
  });
  if (S.wo.replacedFrom !== null) {
    const r = S.wo.list.find((o) => o.replaces === S.wo.replacedFrom);
    if (r) {
      S.wo.expanded.add(r.id);
      S.wo.focus = r.id;
      S.wo.replacedFrom = null;
    }
  }
  if (S.wo.focus !== null && S.wo.focus !== undefined) {
    const card = box.querySelector(`.wo[data-wo-id="${S.wo.focus}"]`);
    if (card) {
      card.scrollIntoView({ block: 'center' });
      S.wo.focused = S.wo.focus;
      S.wo.focus = null;
    }
  }
  if (S.wo.focused !== undefined && S.wo.focused !== null) {
    const card = box.querySelector(`.wo[data-wo-id="${S.wo.focused}"]`);
    if (card) card.classList.add('focused');
  }
}

/** A deadline cell: the time, and in words how far it is or how late. */
function deadlineNode(label, ts, doneAt, doneWord, late, now) {
  const node = el('div', { class: `wo-deadline${late ? ' late' : ''}` },
    el('span', { class: 'fact-label', text: label }), ' ', timeNode(ts, fmtDay, 'wo-when'));
  if (doneAt) {
    const onTime = parseTs(doneAt) <= parseTs(ts);
    node.append(el('span', { class: onTime ? 'ok-text wo-due' : 'bad-text wo-due', text: ` · ${doneWord} ${fmtDay(doneAt)}${onTime ? '' : ` ${t('wo.late_paren')}`}` }));
  } else if (ts) {
    const w = dueWords(ts, now);
    node.append(el('span', { class: w.late ? 'wo-due overdue' : 'wo-due muted', text: ` · ${w.text}` }));
  }
  return node;
}

function woCard(o, now) {
  const lateness = woLateness(o, now);
  const open = o.state === 'new' || o.state === 'started';
  const expanded = S.wo.expanded.has(o.id);
  const card = el('article', {
    class: `wo wo-${o.state}${lateness ? ' is-late' : ''}${expanded ? ' expanded' : ''}`,
    dataset: { woId: String(o.id), state: o.state, overdue: lateness || '' },
  });
  card.append(el('header', { class: 'wo-head' },
    el('span', { class: 'mono wo-id', text: `#${o.id}` }),
    el('span', { class: 'wo-fault', text: FAULTS[o.fault] || o.fault }),
    el('span', { class: `wo-state wo-state-${o.state}`, text: WO_STATES[o.state] || o.state }),
    lateness ? el('span', { class: 'wo-late', text: lateness === 'not_done' ? t('wo.overdue_not_done') : t('wo.overdue_not_started') }) : null,
    o.restored_at ? el('span', { class: 'tag tag-restored', title: t('wo.restored_title', { time: fmtFull(o.restored_at) }), text: t('wo.restored') }) : null,
    el('span', { class: 'wo-installer', title: t('wo.installer') }, el('span', { class: 'muted', text: `${t('wo.installer')} ` }), el('strong', { text: o.installer || '-' }))));
  const facts = el('div', { class: 'wo-facts' },
    el('div', {}, el('span', { class: 'fact-label', text: t('wo.device') }), ' ', deviceLink(o.account),
      o.device_type ? el('span', { class: 'muted', title: o.device_type, text: ` ${deviceTypeWords(o.device_type)}` }) : null),
    el('div', {}, el('span', { class: 'fact-label', text: t('wo.subscriber') }), ' ',
      el('span', { class: 'strong', text: o.subscriber_name || o.subscriber || t('wo.no_subscriber') })),
    el('div', {}, el('span', { class: 'fact-label', text: t('wo.made') }), ' ', timeNode(o.created_at, fmtDay),
      o.call !== undefined && o.call !== null ? el('span', {}, ` ${t('wo.from')} `, callLink(o.call)) : null),
    deadlineNode(t('wo.start_by'), o.start_by, o.started_at, t('wo.started_word'), lateness === 'not_started', now),
    deadlineNode(t('wo.done_by'), o.done_by, o.done_at, t('wo.done_word'), lateness === 'not_done', now),
    (o.repeats || o.restores) ? el('div', { class: 'muted' }, t('wo.repeats', { repeats: o.repeats || 0, restores: o.restores || 0 })) : null);
  card.append(facts);
  if (o.state === 'cancelled') {
    card.append(el('div', { class: 'wo-cancelled' },
      el('span', { text: t('wo.cancelled_line', { time: o.cancelled_at ? fmtDay(o.cancelled_at) : '', reason: o.cancel_reason || t('wo.no_reason') }) }), ' ',
      o.replaced_by ? el('span', {}, ...withLink(t('wo.replaced_by', { order: '\u0000' }), woLink(o.replaced_by))) : null));
  }
  if (o.replaces) card.append(el('div', { class: 'muted wo-replaces' }, ...withLink(t('wo.replaces', { order: '\u0000' }), woLink(o.replaces))));
  const tl = Array.isArray(o.timeline) ? o.timeline : [];
  card.append(el('button', {
    type: 'button', class: 'small secondary wo-toggle', 'aria-expanded': expanded ? 'true' : 'false',
    text: expanded ? t('wo.hide_timeline') : (open && isSupervisor() ? t('wo.timeline_actions', { n: tl.length }) : t('wo.timeline', { n: tl.length })),
    dataset: { focusKey: `wo-toggle-${o.id}` },
    on: { click: () => toggleWorkOrder(o.id) },
  }));
  if (expanded) card.append(woDetail(o, tl, open));
  return card;
}

/**
 * A sentence with a node in it: `text` holds NUL where `node` goes (a placeholder filled
 * with '\u0000'), so the sentence keeps its word order in every language.
 */
function withLink(text, node) {
  const i = text.indexOf('\u0000');
  if (i < 0) return [text, ' ', node];
  return [text.slice(0, i), node, text.slice(i + 1)].filter((x) => x !== '');
}

function woLink(id) {
  return el('button', {
    type: 'button', class: 'link-like wo-link', text: t('wo.link', { id }), dataset: { wo: String(id) },
    on: { click: (e) => { e.stopPropagation(); focusWorkOrder(id); } },
  });
}

/** Shows one order on the work orders page (whatever the filter was). */
function focusWorkOrder(id) {
  if (S.view === 'workorders') {
    S.wo.focus = id;
    S.wo.expanded.add(id);
    const f = woFilter();
    const o = (S.wo.list || []).find((x) => x.id === id);
    if (!o || !woMatches(o, f, serverNow())) {
      $('wo-state').value = 'all';
      $('wo-overdue').checked = false;
      S.wo.list = null;
      loadWorkOrders();
    }
    renderWorkOrders();
  } else {
    showWorkOrders({ focus: id });
  }
}

function toggleWorkOrder(id) {
  if (S.wo.expanded.has(id)) S.wo.expanded.delete(id);
  else S.wo.expanded.add(id);
  renderWorkOrders();
}

function woDetail(o, tl, open) {
  const box = el('div', { class: 'wo-detail' });
  const ol = el('ol', { class: 'timeline plain-timeline wo-timeline' });
  for (const e of tl) {
    const what = WO_EVENTS[e.kind] || e.kind;
    ol.append(el('li', { class: `tl wo-ev wo-ev-${String(e.kind).replace(/[^a-z_]/g, '')}`, dataset: { kind: e.kind } },
      el('time', { class: 'tl-time', datetime: e.at, title: fmtFull(e.at), text: fmtTime(e.at) }),
      el('div', { class: 'tl-body' },
        el('div', { class: 'tl-head' }, el('span', { class: 'tl-what', text: what }),
          e.signal ? el('span', { class: 'muted', text: ` · ${t('wo.signal', { id: e.signal })}` }) : null,
          e.user ? el('span', {}, ' ', el('span', { class: 'muted', text: t('tl.by') }), ' ', el('span', { class: 'tl-user', text: e.user })) : null),
        e.text ? el('div', { class: 'tl-text', text: e.text }) : null)));
  }
  if (!tl.length) ol.append(el('li', { class: 'tl muted', text: t('tl.nothing') }));
  box.append(ol);
  if (open && isSupervisor()) {
    const k = (f) => `wo-${o.id}-${f}`;
    const doneNote = el('input', { type: 'text', class: 'wo-done-note', id: k('done'), maxlength: 2000, placeholder: t('wo.done_placeholder'), dataset: { keep: k('done') } });
    const reason = el('input', { type: 'text', class: 'wo-cancel-reason', id: k('cancel'), maxlength: 500, placeholder: t('wo.cancel_placeholder'), dataset: { keep: k('cancel') } });
    const actions = el('div', { class: 'wo-actions' });
    if (o.state === 'new') {
      actions.append(el('div', { class: 'action-row' },
        el('button', { type: 'button', class: 'primary wo-start', text: t('wo.mark_started'), dataset: { focusKey: k('start-b') }, on: { click: (e) => woAction(o, 'start', '', e.currentTarget) } })));
    }
    const doneBtn = el('button', { type: 'button', class: 'wo-done', text: t('wo.mark_done'), dataset: { focusKey: k('done-b') } });
    doneBtn.addEventListener('click', () => woAction(o, 'done', doneNote.value.trim(), doneBtn, doneNote));
    doneNote.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); doneBtn.click(); } });
    const cancelBtn = el('button', { type: 'button', class: 'danger-outline wo-cancel', text: t('wo.cancel_replace'), dataset: { focusKey: k('cancel-b') } });
    cancelBtn.addEventListener('click', () => woAction(o, 'cancel', reason.value.trim(), cancelBtn, reason));
    reason.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); cancelBtn.click(); } });
    actions.append(
      el('div', { class: 'wo-action' }, el('label', { for: k('done'), text: t('wo.state.done') }), el('div', { class: 'inline-form' }, doneNote, doneBtn)),
      el('div', { class: 'wo-action' }, el('label', { for: k('cancel'), text: t('wo.cancel_label') }), el('div', { class: 'inline-form' }, reason, cancelBtn)));
    box.append(actions);
  } else if (open) {
    box.append(el('p', { class: 'muted', text: t('wo.supervisor_marks') }));
  }
  return box;
}

/** The replacement's id in a cancel's answer (the cancelled order, or both orders). */
function replacementOf(data) {
  if (!data || typeof data !== 'object') return null;
  for (const k of ['replacement', 'replaced_by_order', 'new_order']) {
    if (data[k] && data[k].id !== undefined) return data[k].id;
  }
  for (const k of ['order', 'cancelled']) {
    if (data[k] && data[k].replaced_by) return data[k].replaced_by;
  }
  return data.replaced_by || null;
}

/** POST /api/work_orders/{id}/start|done|cancel. */
async function woAction(o, action, text, button, input) {
  if (action === 'cancel' && !text) {
    message(t('wo.cancel_needs_reason'), 'warn');
    if (input) input.focus();
    return;
  }
  if (button) button.disabled = true;
  try {
    // start: no body; done: {"note"} (may be empty); cancel: {"reason"} (required).
    let body;
    if (action === 'done') body = { note: text };
    else if (action === 'cancel') body = { reason: text };
    const { data } = await api('POST', `/api/work_orders/${encodeURIComponent(o.id)}/${action}`, body);
    if (input) input.value = '';
    const newId = replacementOf(data);
    if (action === 'start') message(t('wo.is_started', { id: o.id }), 'ok');
    else if (action === 'done') message(t('wo.is_done', { id: o.id }), 'ok');
    else message(newId ? t('wo.is_cancelled_replaced', { id: o.id, new: newId }) : t('wo.is_cancelled', { id: o.id }), 'ok');
    if (action === 'cancel') {
      // Show the replacement: open, its timeline unfolded (found by `replaces` if not named).
      S.wo.replacedFrom = o.id;
      if (newId) {
        S.wo.expanded.add(newId);
        S.wo.focus = newId;
      }
      const st = woFilter().state;
      if (st !== 'all' && st !== 'open' && st !== 'new') $('wo-state').value = 'open';
      $('wo-overdue').checked = false;
    }
  } catch (e) {
    if (e.status === 409 || e.status === 422) message(t('wo.refused', { id: o.id, error: e.message }), 'warn');
    else reportError(t('wo.label', { id: o.id }), e);
  } finally {
    if (button) button.disabled = false;
    loadWorkOrders();
    scheduleSupervision();
  }
}

// ---- report a fault from a Call

async function reportFault() {
  const id = S.currentId;
  const box = $('fault-note');
  if (id === null || !isMine(S.current)) {
    message(t('fault.take_first'), 'warn');
    return;
  }
  const note = box.value.trim();
  if (!note) {
    message(t('fault.write_what'), 'warn');
    box.focus();
    return;
  }
  const button = $('fault-report');
  button.disabled = true;
  try {
    const { data } = await api('POST', `/api/calls/${encodeURIComponent(id)}/fault`, { note });
    box.value = '';
    const o = data && (data.order || data);
    message(o && o.id !== undefined
      ? (o.installer ? t('fault.reported_for', { id: o.id, installer: o.installer }) : t('fault.reported_id', { id: o.id }))
      : t('fault.reported'), 'ok');
    scheduleSupervision();
  } catch (e) {
    if (e.status === 409) message(t('fault.failed_not_owner', { error: e.message }), 'error');
    else if (e.status === 410) message(t('fault.failed_closed'), 'error');
    else reportError(t('fault.failed'), e);
  } finally {
    button.disabled = false;
    if (S.currentId === id) refreshCall();
  }
}

// ---- the device page

/** Opens a device's page; Back (Esc) returns to the page it was opened from. */
function openDevice(account) {
  if (!S.me || !account) return;
  if (S.view !== 'device') {
    S.dev.back = { view: S.view, call: S.currentId, incident: S.incidentId };
  }
  leaveCall();
  S.dev.account = String(account);
  S.dev.data = null;
  S.dev.at = 0;
  S.dev.failed = false;
  pageError('device-error', '');
  $('device-title').textContent = S.dev.account;
  showView('device');
  window.scrollTo(0, 0);
  renderDevice();
  loadDevice();
  blurHidden();
}

function deviceBack() {
  const b = S.dev.back || { view: 'queue' };
  S.dev.back = null;
  if (b.view === 'call' && b.call !== null && b.call !== undefined) openCall(b.call);
  else if (b.view === 'incident' && b.incident !== null && b.incident !== undefined) openIncident(b.incident);
  else if (b.view === 'incidents') showIncidents();
  else if (b.view === 'workorders') showWorkOrders();
  else if (b.view === 'patrols') showPatrols();
  else if (b.view === 'registers') showRegisters();
  else if (b.view === 'subscriber' && S.reg.cardId) openSubscriberPage(S.reg.cardId);
  else showQueue();
}

async function loadDevice() {
  const account = S.dev.account;
  if (!account) return;
  await single('device', async () => {
    try {
      const { data } = await api('GET', `/api/devices/${encodeURIComponent(account)}`);
      if (S.dev.account !== account) return;
      S.dev.data = data || null;
      S.dev.at = serverNow();
      S.dev.failed = false;
      pageError('device-error', '');
      if (S.view === 'device') renderDevice();
    } catch (e) {
      if (e.status === 401 || S.dev.account !== account) return;
      S.dev.failed = true;
      pageError('device-error', e.status === 404
        ? t('device.not_registered', { account })
        : (S.dev.at ? t('device.load_failed_shown', { account, error: e.message, time: fmtTimeMs(S.dev.at) })
          : t('device.load_failed', { account, error: e.message })));
      if (S.view === 'device') renderDevice();
    }
  });
}

/** "20 s", "25 h (90000 s)". */
function secsWords(v) {
  const n = Number(v);
  return n < 120 ? t('span.s', { s: n }) : t('device.secs_words', { span: fmtSpan(n), s: n });
}

/** How a frame came (model::Transport). */
const TRANSPORTS = {
  get tcp() { return t('device.transport.tcp'); },
  get udp() { return t('device.transport.udp'); },
  get internal() { return t('device.transport.internal'); },
  get quic() { return t('device.transport.quic'); },
};

function renderDevice() {
  renderUpdated('device-updated', S.dev.at, PAGE_POLLS.device[1], S.dev.failed);
  const box = $('device-content');
  const d = S.dev.data;
  clear(box);
  if (!d) {
    if (!S.dev.failed) box.append(el('p', { class: 'muted', text: t('device.loading') }));
    return;
  }
  const now = serverNow();
  const silent = !!d.silent_since;
  let status;
  if (!d.supervised) status = el('div', { class: 'dev-status off', text: t('device.not_supervised') });
  else if (silent) status = el('div', { class: 'dev-status silent' }, `${t('device.silent_since')} `, timeNode(d.silent_since), ' (', tickerNode('ago', d.silent_since), ')');
  else if (!d.last_heard) status = el('div', { class: 'dev-status waiting', text: t('device.not_heard') });
  else status = el('div', { class: 'dev-status ok', text: t('device.reporting') });

  let deadline = '-';
  if (d.supervised && d.next_deadline) {
    const dl = parseTs(d.next_deadline);
    deadline = el('span', { class: 'dev-deadline' }, timeNode(d.next_deadline, fmtTime), ' ',
      el('span', { class: 'countdown' }, '(', tickerNode('until', d.next_deadline, 'big-ticker'), ')'));
    if (Number.isFinite(dl) && dl <= now && !silent) deadline.classList.add('late');
  } else if (silent) {
    deadline = el('span', { class: 'bad-text', text: t('device.deadline_passed') });
  }

  const head = el('section', { class: 'card device-card' },
    el('div', { class: 'card-head' },
      el('div', {},
        el('h2', { class: 'subscriber-name' }, el('span', { class: 'mono', text: d.account }), d.device_type ? el('span', { class: 'muted dev-type', title: d.device_type, text: ` ${deviceTypeWords(d.device_type)}` }) : null),
        el('div', { class: 'card-sub' },
          el('span', { class: 'strong', text: d.subscriber_name || d.subscriber || t('device.no_subscriber') }),
          d.subscriber && d.subscriber_name ? el('span', { class: 'mono muted', text: d.subscriber }) : null,
          el('span', {}, el('span', { class: 'muted', text: `${t('card.dev.telecom')} ` }), el('span', { text: orDash(d.telecom_operator) })),
          el('span', {}, el('span', { class: 'muted', text: `${t('card.area')} ` }), el('span', { text: orDash(d.area) }))))),
    status,
    factList([
      [t('device.last_heard'), d.last_heard ? el('span', {}, timeNode(d.last_heard), ' (', tickerNode('ago', d.last_heard), ')') : t('device.never_heard')],
      [t('device.interval'), d.interval_secs ? secsWords(d.interval_secs) : '-'],
      [t('device.grace'), d.grace_secs !== undefined && d.grace_secs !== null ? t('device.grace_after', { span: secsWords(d.grace_secs) }) : '-'],
      [t('device.next_deadline'), deadline],
      [t('incident.silent_since'), silent ? timeNode(d.silent_since) : t('device.not_silent'), silent ? 'bad-text' : ''],
    ], 'device-facts'));

  const p = d.last_signal;
  const path = el('section', { class: 'card device-path' }, el('h3', { text: t('device.path') }),
    p ? factList([
      [t('device.received'), el('span', {}, timeNode(p.received_at), ' (', tickerNode('ago', p.received_at), ')')],
      [t('device.transport'), TRANSPORTS[p.transport] || orDash(p.transport)],
      [t('device.peer'), el('span', { class: 'mono', text: orDash(p.peer) })],
      [t('device.protocol'), el('span', { class: 'mono', text: orDash(p.protocol) })],
      [t('tl.signal'), `#${p.id}`],
    ]) : el('p', { class: 'muted', text: t('device.nothing_received') }));

  const orders = Array.isArray(d.work_orders) ? d.work_orders : [];
  const faults = el('section', { class: 'card device-faults' }, el('h3', { text: t('device.open_things') }),
    factList([
      [t('device.open_call'), d.open_call !== undefined && d.open_call !== null ? callLink(d.open_call) : t('device.no_open_call')],
      [t('incident.title'), d.incident !== undefined && d.incident !== null ? incidentLink(d.incident) : t('device.no_incident')],
    ]));
  if (orders.length) {
    const ul = el('ul', { class: 'dev-orders' });
    for (const o of orders) {
      const late = woLateness(o, now);
      ul.append(el('li', { class: late ? 'late' : '', dataset: { wo: String(o.id) } },
        woLink(o.id), ` ${FAULTS[o.fault] || o.fault} · ${WO_STATES[o.state] || o.state} · ${o.installer || ''} `,
        late ? el('span', { class: 'wo-late', text: late === 'not_done' ? t('wo.overdue_not_done') : t('wo.overdue_not_started') }) : null));
    }
    faults.append(el('h3', { text: t('device.open_orders', { n: orders.length }) }), ul);
  } else {
    faults.append(el('p', { class: 'muted', text: t('device.no_open_order') }));
  }
  box.append(head, el('div', { class: 'device-cols' }, path, faults));
}

// ---- every second

function tickSupervision() {
  const now = serverNow();
  for (const node of document.querySelectorAll('#app > section:not([hidden]) .ticker[data-tick]')) paintTicker(node, now);
  if (S.view === 'incidents') renderUpdated('incidents-updated', S.incidentListAt, PAGE_POLLS.incidents[1], S.incidentListFailed);
  if (S.view === 'incident') renderUpdated('incident-updated', S.incidentAt, PAGE_POLLS.incident[1], S.incidentFailed);
  if (S.view === 'workorders') renderUpdated('workorders-updated', S.wo.at, PAGE_POLLS.workorders[1], S.wo.failed);
  if (S.view === 'orders') renderUpdated('orders-updated', S.orders.at, PAGE_POLLS.orders[1], S.orders.failed);
  if (S.view === 'device') renderUpdated('device-updated', S.dev.at, PAGE_POLLS.device[1], S.dev.failed);
  if (S.view === 'outbox') renderUpdated('outbox-updated', S.outboxAt, PAGE_POLLS.outbox[1], S.outboxFailed);
  // The banner's flash ends; the badges turn to "?" once too old.
  let flashEnded = false;
  for (const until of S.incidentFlash.values()) if (until <= Date.now()) flashEnded = true;
  if (flashEnded) renderIncidentBanner();
  if (S.supervisionAt && serverNow() - S.supervisionAt > 2 * SUPERVISION_POLL_MS + 5000) renderSupervision();
}

/** What each page reloads while it is up, and how often. */
const PAGE_POLLS = {
  incidents: [() => loadIncidents(), 30000],
  incident: [() => loadIncident(), 10000],
  workorders: [() => loadWorkOrders(), 30000],
  orders: [() => loadOrders(), 30000],
  device: [() => loadDevice(), 10000],
  outbox: [() => loadOutbox(), 15000],
};

function startPagePoll(name) {
  clearInterval(S.pageTimer);
  S.pageTimer = null;
  const p = PAGE_POLLS[name];
  if (p) S.pageTimer = setInterval(() => { if (S.view === name && S.me) p[0](); }, p[1]);
}

/** The page's data again (after the live feed was down). */
function reloadPage() {
  const p = PAGE_POLLS[S.view];
  if (p) p[0]();
}

// ---------------------------------------------------------------- 14. Supervisor

async function showAudit() {
  if (!isSupervisor()) return;
  leaveCall();
  showView('audit');
  blurHidden();
  await loadAudit(false);
}

/** The review's filter as the form holds it (empty fields left out). */
function auditFilter() {
  const f = {};
  for (const [k, id] of [['subscriber', 'audit-f-subscriber'], ['user', 'audit-f-user'], ['call', 'audit-f-call'],
    ['action', 'audit-f-action'], ['from', 'audit-f-from'], ['to', 'audit-f-to']]) {
    const v = $(id).value.trim();
    if (v) f[k] = v;
  }
  return f;
}

/** Loads the access log's review (`older`: the page after the last shown). */
async function loadAudit(older) {
  const f = auditFilter();
  const q = new URLSearchParams(f);
  q.set('limit', String(AUDIT_LIMIT));
  if (older) {
    if (S.auditNext === null || S.auditNext === undefined) return;
    q.set('before', String(S.auditNext));
  }
  try {
    const { data } = await api('GET', `/api/audit/review?${q}`);
    const rows = data && Array.isArray(data.entries) ? data.entries : [];
    if (older) {
      const seen = new Set(S.audit.map((a) => a.seq));
      S.audit = S.audit.concat(rows.filter((a) => !seen.has(a.seq)));
    } else {
      S.audit = rows;
    }
    S.auditNext = data ? data.next_before : null;
    renderAudit();
    const more = S.auditNext !== null && S.auditNext !== undefined;
    $('audit-older').disabled = !more;
    const flagged = S.audit.filter((a) => (a.flags || []).length > 0).length;
    $('audit-info').textContent = (more
      ? tn('audit_review.shown_more', S.audit.length)
      : tn('audit_page.shown', S.audit.length))
      + (flagged ? ` · ${tn('audit_review.flagged', flagged)}` : '');
    renderAuditExtract(f);
  } catch (e) {
    reportError(t('audit_page.load_failed'), e);
  }
}

/** The extract links for the person the review is filtered by. */
function renderAuditExtract(f) {
  show($('audit-extract'), !!f.subscriber);
  if (!f.subscriber) return;
  const base = `/api/subscribers/${encodeURIComponent(f.subscriber)}/accesses`;
  const q = (format) => {
    const p = new URLSearchParams({ format });
    if (f.from) p.set('from', f.from);
    if (f.to) p.set('to', f.to);
    return `${base}?${p}`;
  };
  $('audit-extract-csv').href = q('csv');
  $('audit-extract-html').href = q('html');
}

/** Filters the review by a value of a row (a click on a user, a person, a Call). */
function auditFilterBy(id, value) {
  $(id).value = String(value);
  loadAudit(false);
}

function renderAudit() {
  const body = $('audit-body');
  clear(body);
  const onlyFlagged = $('audit-f-flagged').checked;
  const rows = S.audit.slice()
    .filter((a) => !onlyFlagged || (a.flags || []).length > 0)
    .sort((a, b) => (b.seq || 0) - (a.seq || 0));
  const actions = $('audit-actions');
  clear(actions);
  for (const a of [...new Set(S.audit.map((x) => x.action))].sort()) {
    actions.append(el('option', { value: a, label: auditWords(a) }));
  }
  if (rows.length === 0) {
    body.append(el('tr', {}, el('td', { colspan: 8, class: 'muted', text: t('audit.none') })));
    return;
  }
  const frag = document.createDocumentFragment();
  for (const a of rows) {
    const flags = a.flags || [];
    const who = el('button', {
      type: 'button', class: 'link-like', text: orDash(a.user), title: a.role ? roleWords(a.role) : null,
      on: { click: () => auditFilterBy('audit-f-user', a.user) },
    });
    const call = a.call === undefined || a.call === null ? '' : el('button', {
      type: 'button', class: 'link mono', text: `#${a.call}`, title: t('audit_review.open_call'),
      on: { click: () => openCall(a.call) },
    });
    const person = a.subscriber
      ? el('span', {}, subscriberLink(a.subscriber), a.subscriber_name ? ` ${a.subscriber_name}` : '')
      : '';
    frag.append(el('tr', { class: `audit-row action-${String(a.action || '').replace(/[^a-z_.]/g, '').replace('.', '-')}${flags.length ? ' flagged' : ''}` },
      el('td', { class: 'mono muted', text: orDash(a.seq) }),
      el('td', { class: 'mono', title: fmtFull(a.at), text: fmtTime(a.at) }),
      el('td', {}, who, a.role ? el('span', { class: 'muted', text: ` ${roleWords(a.role)}` }) : ''),
      el('td', { class: 'audit-action', title: orDash(a.action), text: auditWords(a.action) }),
      el('td', {}, call),
      el('td', {}, person),
      el('td', { text: a.detail || '' }),
      el('td', { class: 'audit-flags' }, ...flags.map((x) => el('span', { class: `flag flag-${x}`, text: t(`audit_review.flag.${x}`) })))));
  }
  body.append(frag);
}

// ---- review (supervisors): Calls closed without a patrol or 112

PAGE_POLLS.reviews = [() => loadReviews(), 30000];

function showReviews() {
  if (!isSupervisor()) return;
  leaveCall();
  showView('reviews');
  renderReviews();
  loadReviews();
  blurHidden();
}

async function loadReviews() {
  if (!isSupervisor()) return;
  try {
    const { data } = await api('GET', '/api/reviews');
    S.reviews = { data, at: serverNow(), failed: false };
    pageError('reviews-error', '');
  } catch (e) {
    S.reviews = Object.assign({}, S.reviews, { failed: true });
    pageError('reviews-error', t('reviews.load_failed', { error: e.message }));
  }
  renderReviews();
}

function renderReviews() {
  const r = S.reviews && S.reviews.data;
  const badge = $('reviews-badge');
  const pending = r ? r.pending.length : 0;
  badge.textContent = String(pending);
  show(badge, pending > 0);
  if (S.view !== 'reviews') return;
  const box = $('reviews-list');
  clear(box);
  if (!r) {
    box.append(el('p', { class: 'muted', text: t('call.loading') }));
    return;
  }
  const pct = r.reviewed_pct === null || r.reviewed_pct === undefined ? '–' : `${Math.round(r.reviewed_pct)} %`;
  $('reviews-summary').textContent = t('reviews.summary', { pending, days: r.window_days, reviewed: r.reviewed, of: r.closed_for_review, pct });
  $('reviews-updated').textContent = S.reviews.at ? t('page.updated', { time: fmtTime(new Date(S.reviews.at).toISOString()) }) : '';
  if (pending === 0) {
    box.append(el('p', { class: 'muted empty-board', text: t('reviews.none') }));
    return;
  }
  for (const v of r.pending) box.append(reviewItem(v));
}

function reviewItem(v) {
  const reason = el('input', { type: 'text', class: 'review-reason', maxlength: '2000', placeholder: t('reviews.reason_placeholder') });
  const accept = el('button', { type: 'button', class: 'review-accept', text: t('reviews.accept') });
  const reopen = el('button', { type: 'button', class: 'review-reopen danger-outline', text: t('reviews.reopen') });
  const err = el('p', { class: 'form-error', role: 'alert', hidden: true });
  const decide = async (verdict, button) => {
    const note = reason.value.trim();
    if (verdict === 'reopen' && !note) {
      err.textContent = t('error.review.reason_missing');
      show(err, true);
      reason.focus();
      return;
    }
    accept.disabled = true;
    reopen.disabled = true;
    try {
      await api('POST', `/api/reviews/${encodeURIComponent(v.call)}/${verdict}`, { note });
      message(verdict === 'accept' ? t('reviews.accepted', { id: v.call }) : t('reviews.reopened', { id: v.call }), 'ok');
      await loadReviews();
    } catch (e) {
      err.textContent = e.message;
      show(err, true);
    } finally {
      if (button.isConnected) { accept.disabled = false; reopen.disabled = false; }
    }
  };
  accept.addEventListener('click', () => decide('accept', accept));
  reopen.addEventListener('click', () => decide('reopen', reopen));
  const who = v.subscriber_name || v.subscriber || t('reviews.unknown_person');
  const pr = PRIORITIES[v.priority] || { label: String(v.priority), cls: '' };
  return el('div', { class: 'review-item', 'data-call': String(v.call) },
    el('div', { class: 'review-head' },
      el('span', { class: `badge small ${pr.cls}`, text: pr.label }),
      el('button', { type: 'button', class: 'link-like call-link', text: t('call.label', { id: v.call }), on: { click: () => openCall(v.call) } }),
      el('span', { title: v.kind || '', text: ` ${kindWords(v.kind)} · ${who}` })),
    el('p', {},
      el('strong', { text: OUTCOMES[v.outcome] || v.outcome }),
      ` — ${t('reviews.closed_by', { time: fmtFull(v.closed_at), who: v.closed_by || 'vakt' })}`),
    v.reason ? el('p', { class: 'review-why', text: t('reviews.reason', { reason: v.reason }) }) : null,
    v.override_reason ? el('p', { class: 'review-why tl-override', text: t('reviews.override', { reason: v.override_reason }) }) : null,
    el('div', { class: 'action-row' }, reason, accept, reopen),
    err);
}

// ---- users (admins)

const ROLES = ['operator', 'supervisor', 'admin'];

async function showUsers() {
  if (!isAdmin()) return;
  leaveCall();
  showView('users');
  blurHidden();
  await loadUsers();
}

async function loadUsers() {
  const err = $('users-error');
  try {
    const { data } = await api('GET', '/api/users');
    S.users = Array.isArray(data) ? data : [];
    show(err, false);
    renderUsers();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    err.textContent = t('users.load_failed', { error: e.message });
    show(err, true);
  }
}

function renderUsers() {
  const body = $('users-body');
  clear(body);
  if (S.users.length === 0) {
    body.append(el('tr', {}, el('td', { colspan: 5, class: 'muted', text: t('users.none') })));
    return;
  }
  const frag = document.createDocumentFragment();
  for (const u of S.users) {
    const name = String(u.name || '');
    const role = el('select', { class: 'user-role', 'aria-label': t('users.role_of', { name }), dataset: { user: name } },
      ...ROLES.map((r) => el('option', { value: r, selected: r === u.role, text: roleWords(r) })));
    role.addEventListener('change', () => changeUser(name, 'role', { role: role.value }));
    const toggle = u.disabled
      ? el('button', { type: 'button', class: 'user-enable', dataset: { user: name }, text: t('users.enable') })
      : el('button', { type: 'button', class: 'user-disable', dataset: { user: name }, text: t('users.disable') });
    toggle.addEventListener('click', () => changeUser(name, u.disabled ? 'enable' : 'disable'));
    const remove = el('button', { type: 'button', class: 'user-remove', dataset: { user: name }, text: t('users.remove') });
    remove.addEventListener('click', () => {
      if (window.confirm(t('users.remove_confirm', { name }))) changeUser(name, 'remove');
    });
    frag.append(el('tr', { class: u.disabled ? 'user-row disabled' : 'user-row', dataset: { user: name } },
      el('td', { class: 'mono', text: name }),
      el('td', {}, role),
      el('td', { class: 'user-status', text: u.disabled ? t('users.disabled') : t('users.active') }),
      el('td', { class: 'mono', title: fmtFull(u.created_at), text: fmtTime(u.created_at) }),
      el('td', {}, el('div', { class: 'action-row' }, toggle, remove))));
  }
  body.append(frag);
}

/** Disables, enables, removes a user or gives it another role, then shows the list again. */
async function changeUser(name, action, body) {
  const path = `/api/users/${encodeURIComponent(name)}`;
  const err = $('users-error');
  try {
    if (action === 'remove') await api('DELETE', path);
    else await api('POST', `${path}/${action}`, body);
    show(err, false);
    message(t(`users.done.${action}`, { name }), 'info');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    err.textContent = t('users.change_failed', { name, error: e.message });
    show(err, true);
  }
  if (S.view === 'users') await loadUsers();
}

// ---- directory (supervisors; import: admins)

async function showDirectory() {
  if (!isSupervisor()) return;
  leaveCall();
  showView('directory');
  show($('import-form'), !!S.me && S.me.role === 'admin');
  renderDirectory();
  blurHidden();
  await loadDirectory();
}

async function loadDirectory() {
  try {
    const { data } = await api('GET', '/api/directory');
    S.directory = data || {};
    show($('directory-error'), false);
    renderDirectory();
  } catch (e) {
    if (e.status !== 401) {
      $('directory-error').textContent = t('dir.load_failed', { error: e.message });
      show($('directory-error'), true);
    }
  }
}

/** "07:00:00" (or "07:00") -> "07:00". */
function hhmm(t) {
  const m = /^(\d\d):(\d\d)/.exec(String(t || ''));
  return m ? `${m[1]}:${m[2]}` : String(t || '?');
}

function fmtShift(s) {
  const start = hhmm(s.start);
  const end = hhmm(s.end);
  return `${s.name || ''} ${start}-${end}${end <= start ? ` ${t('dir.next_day')}` : ''}`.trim();
}

/** A titled table; cells are nodes or text. */
function dirTable(title, cls, heads, rows, empty) {
  const tbody = el('tbody');
  for (const r of rows) tbody.append(el('tr', {}, ...r.map((c) => el('td', {}, c === null || c === undefined ? '' : c))));
  if (!rows.length) tbody.append(el('tr', {}, el('td', { colspan: heads.length, class: 'muted', text: empty })));
  return el('section', { class: `dir-section ${cls}` },
    el('h2', { text: t('page.section_count', { title, n: rows.length }) }),
    el('table', { class: 'data-table' }, el('thead', {}, el('tr', {}, ...heads.map((h) => el('th', { text: h })))), tbody));
}

function renderDirectory() {
  const box = $('directory-content');
  clear(box);
  const d = S.directory;
  if (!d) {
    box.append(el('p', { class: 'muted', text: t('dir.loading') }));
    return;
  }
  const providers = d.providers || [];
  const areas = d.areas || [];
  const patrols = d.patrols || [];
  const routes = d.routes || [];
  $('directory-summary').textContent = [tn('dir.count.providers', providers.length), tn('dir.count.areas', areas.length),
    tn('dir.count.patrols', patrols.length), tn('dir.count.routes', routes.length)].join(' · ');
  const providerName = new Map(providers.map((p) => [p.id, p.name]));
  const areaName = new Map(areas.map((a) => [a.id, a.name]));
  const patrolName = new Map(patrols.map((p) => [p.id, p.name]));
  const named = (map, id) => (id === '*' ? t('dir.any') : (map.get(id) ? `${map.get(id)} (${id})` : id));
  box.append(
    dirTable(t('dir.providers'), 'dir-providers', [t('dir.col.id'), t('dir.col.name'), t('card.phone')],
      providers.map((p) => [el('span', { class: 'mono', text: p.id }), p.name, telLink(p.phone)]),
      t('dir.no_providers')),
    dirTable(t('dir.areas'), 'dir-areas', [t('dir.col.id'), t('dir.col.name'), t('dir.col.arrival_limit'), t('dir.col.municipality')],
      areas.map((a) => [el('span', { class: 'mono', text: a.id }), a.name,
        el('span', { class: a.arrival_limit_mins === 30 ? '' : 'strong', text: t('span.min', { m: a.arrival_limit_mins }) }),
        a.municipality || el('span', { class: 'muted', text: t('dir.centre_own') })]),
      t('dir.no_areas')),
    dirTable(t('nav.patrols'), 'dir-patrols', [t('dir.col.id'), t('dir.col.name'), t('dir.col.provider'), t('dir.areas'), t('dir.col.shifts'), t('card.phone')],
      patrols.map((p) => [el('span', { class: 'mono', text: p.id }), p.name, named(providerName, p.provider),
        (p.areas || []).map((a) => areaName.get(a) || a).join(', '),
        (p.shifts || []).map(fmtShift).join('; ') || t('dir.no_shift'), telLink(p.phone)]),
      t('dir.no_patrols')),
    dirTable(t('dir.routes'), 'dir-routes', [t('dir.col.provider'), t('card.area'), t('nav.patrols')],
      routes.map((r) => [named(providerName, r.provider), named(areaName, r.area),
        el('ol', { class: 'route-order' }, ...(r.patrols || []).map((id) => el('li', { text: patrolName.get(id) ? `${patrolName.get(id)} (${id})` : t('dir.unknown_patrol', { id }) })))]),
      t('dir.no_routes')));
}

async function submitImport(ev) {
  ev.preventDefault();
  const kinds = ['providers', 'areas', 'patrols', 'routes'];
  const body = {};
  const missing = [];
  for (const k of kinds) {
    const f = $(`import-${k}`).files[0];
    if (!f) missing.push(k);
  }
  if (missing.length) {
    importResult('error', t('import.choose_all', { missing: missing.map((k) => t(`import.file.${k}`)).join(', ') }));
    return;
  }
  const button = $('import-submit');
  button.disabled = true;
  try {
    for (const k of kinds) body[k] = await $(`import-${k}`).files[0].text();
    // The staff list is optional: left out, the one imported before stays.
    const staffFile = $('import-staff').files[0];
    if (staffFile) body.staff = await staffFile.text();
    const { data } = await api('POST', '/api/directory/import', body);
    const counts = data && typeof data === 'object'
      ? Object.entries(data).filter(([k, v]) => typeof v === 'number' && !(k === 'tokens_removed' && v === 0))
        .map(([k, v]) => (tHas(`dir.count.${k}.other`) ? tn(`dir.count.${k}`, v) : `${v} ${k}`)).join(', ')
      : '';
    importResult('ok', counts ? t('import.done_counts', { counts }) : t('import.done'));
    for (const k of kinds) $(`import-${k}`).value = '';
    $('import-staff').value = '';
    await loadDirectory();
  } catch (e) {
    if (e.status === 401) return;
    if (e.status === 422 && e.body && Array.isArray(e.body.problems)) {
      importResult('error', `${e.message}:`, e.body.problems);
    } else if (e.status === 403) {
      importResult('error', t('import.admin_only'));
    } else {
      importResult('error', t('import.failed', { error: e.message }));
    }
  } finally {
    button.disabled = false;
  }
}

function importResult(kind, text, problems) {
  const box = $('import-result');
  clear(box);
  box.className = kind === 'ok' ? 'import-ok' : 'form-error';
  box.append(el('p', { text }));
  if (problems && problems.length) {
    const ul = el('ul', { class: 'problems' });
    for (const p of problems.slice(0, 200)) ul.append(el('li', { class: 'mono', text: String(p) }));
    if (problems.length > 200) ul.append(el('li', { text: t('import.more_problems', { n: problems.length - 200 }) }));
    box.append(ul);
  }
  show(box, true);
  box.scrollIntoView({ block: 'nearest' });
}

// ---- SLA report (supervisors)

function thisMonth() {
  return zoneParts(serverNow()).ym;
}

async function showReport() {
  if (!isSupervisor() && !isTenant()) return;
  leaveCall();
  showView('report');
  const m = $('report-month');
  if (!m.value) m.value = thisMonth();
  updateReportLink();
  blurHidden();
  await loadReport();
}

function reportMonth() {
  const v = $('report-month').value;
  return /^\d{4}-\d\d$/.test(v) ? v : thisMonth();
}

function updateReportLink() {
  $('report-csv').href = `/api/reports/sla?month=${encodeURIComponent(reportMonth())}&format=csv`;
  // The server names a municipality's or provider's file for them.
  if (isTenant()) $('report-csv').setAttribute('download', '');
  else $('report-csv').setAttribute('download', `vakt-sla-${reportMonth()}.csv`);
}

async function loadReport() {
  const month = reportMonth();
  updateReportLink();
  const box = $('report-content');
  clear(box);
  box.append(el('p', { class: 'muted', text: t('report.loading', { month }) }));
  try {
    const { data } = await api('GET', `/api/reports/sla?month=${encodeURIComponent(month)}`);
    if (reportMonth() !== month) return;
    S.report = data;
    show($('report-error'), false);
    renderReport(data);
  } catch (e) {
    if (e.status === 401 || reportMonth() !== month) return;
    clear(box);
    $('report-error').textContent = t('report.failed', { month, error: e.message });
    show($('report-error'), true);
  }
}

/** Seconds as m:ss (or h:mm:ss), or a dash. */
function fmtSecsOrDash(s) {
  return s === null || s === undefined ? '-' : fmtDuration(Number(s));
}

/** A report figure against its target, as the header shows today's. */
function reportStat(label, value, cls, title) {
  return el('div', { class: `report-stat ${cls || ''}`, title: title || '' },
    el('span', { class: 'stat-label', text: label }), el('span', { class: 'report-stat-value', text: value }));
}

function renderReport(r) {
  const box = $('report-content');
  clear(box);
  if (!r || typeof r !== 'object') {
    box.append(el('p', { class: 'muted', text: t('report.none') }));
    return;
  }
  const a = r.answer || {};
  const met = (v, t) => (v === null || v === undefined ? '' : (Number(v) >= Number(t) ? 'met' : 'missed'));
  box.append(el('p', { class: 'report-head' },
    el('strong', { text: t('report.month', { month: r.month }) }),
    r.scope && r.scope.scope !== 'all' ? el('span', { class: 'report-scope', text: ` · ${statisticsScopeWords(r.scope)}` }) : null,
    ` · ${t('report.made', { zone: r.time_zone || t('report.local_time'), time: fmtTime(r.generated_at) })}`));

  box.append(el('section', { class: 'report-answer' },
    el('h2', { text: t('report.answering') }),
    el('div', { class: 'report-stats' },
      reportStat(t('report.calls'), String(a.calls ?? '-')),
      reportStat(t('report.answered'), String(a.answered ?? '-')),
      reportStat(t('stats.median_answer'), a.median_answer_secs === null || a.median_answer_secs === undefined ? '-' : fmtDuration(a.median_answer_secs)),
      reportStat(t('report.within_60', { pct: fmtPct(a.target_60s_pct ?? 97.5) }), fmtPct(a.within_60s_pct), met(a.within_60s_pct, a.target_60s_pct ?? 97.5)),
      reportStat(t('report.within_180', { pct: fmtPct(a.target_180s_pct ?? 99) }), fmtPct(a.within_180s_pct), met(a.within_180s_pct, a.target_180s_pct ?? 99)))));

  const heads = ['provider', 'area', 'dispatches', 'arrived', 'median', 'p90',
    'breaches', 'receipt_timeouts', 'declined', 'cancelled', 'open'].map((h) => t(`report.col.${h}`));
  const row = (x, total) => {
    const breaches = el('td', { class: `num${x.breaches ? ' bad-cell' : ''}` }, String(x.breaches ?? 0));
    if (!total && Array.isArray(x.breached) && x.breached.length) {
      const list = el('div', { class: 'breach-calls' });
      for (const b of x.breached) {
        const title = t('report.breach_title', { dispatch: b.dispatch, patrol: b.patrol });
        list.append(isTenant()
          ? el('span', { class: 'call-ref', title, text: t('call.label', { id: b.call }) })
          : el('button', {
            type: 'button', class: 'link-like', text: t('call.label', { id: b.call }), title,
            dataset: { call: String(b.call) },
            on: { click: () => openCall(b.call) },
          }));
      }
      breaches.append(list);
    }
    return el('tr', { class: total ? 'totals' : '' },
      el('td', { text: total ? t('report.all_providers') : (x.provider_name || x.provider) }),
      el('td', { text: total ? t('report.all_areas') : (x.area_name || x.area) }),
      el('td', { class: 'num', text: String(x.dispatches ?? 0) }),
      el('td', { class: 'num', text: String(x.arrived ?? 0) }),
      el('td', { class: 'num', text: fmtSecsOrDash(x.median_arrival_secs) }),
      el('td', { class: 'num', text: fmtSecsOrDash(x.p90_arrival_secs) }),
      breaches,
      el('td', { class: `num${x.receipt_timeouts ? ' warn-cell' : ''}`, text: String(x.receipt_timeouts ?? 0) }),
      el('td', { class: 'num', text: String(x.declined ?? 0) }),
      el('td', { class: 'num', text: String(x.cancelled ?? 0) }),
      el('td', { class: 'num', text: String(x.open ?? 0) }));
  };
  const rows = Array.isArray(r.rows) ? r.rows : [];
  const tbody = el('tbody', {}, ...rows.map((x) => row(x, false)));
  if (!rows.length) tbody.append(el('tr', {}, el('td', { colspan: heads.length, class: 'muted', text: t('report.no_dispatches') })));
  box.append(el('section', { class: 'report-dispatch' },
    el('h2', { text: t('report.patrols') }),
    el('table', { class: 'data-table report-table' },
      el('thead', {}, el('tr', {}, ...heads.map((h) => el('th', { text: h })))),
      tbody,
      r.totals ? el('tfoot', {}, row(r.totals, true)) : null)));
}

// ---- registers: the subscriber and device lists, a subscriber's page without a Call

const REG_PAGE = 50; // lines per page of a register list
const REG_TYPE_DELAY_MS = 350; // typing pauses this long before it searches (each search is audited)

function newRegState() {
  return {
    kind: 'subscribers', // 'subscribers' | 'devices'
    offset: 0,
    page: null, // the SubscriberPage or DevicePage shown
    pageKind: null,
    q: '', // the query of the page shown
    seq: 0, // the newest search sent; older answers are dropped
    timer: null,
    cardId: null, // the subscriber of the subscriber page
    card: null, // its SubscriberCard
  };
}

function showRegisters() {
  if (!S.me) return;
  leaveCall();
  showView('registers');
  renderRegKind();
  if (S.reg.page) renderRegisters();
  else searchRegisters();
  window.scrollTo(0, 0);
  blurHidden();
  $('reg-q').focus();
}

function setRegKind(kind) {
  if (S.reg.kind === kind) return;
  S.reg.kind = kind;
  S.reg.offset = 0;
  renderRegKind();
  searchRegisters();
}

function renderRegKind() {
  for (const b of document.querySelectorAll('#registers-view .reg-kind')) {
    const on = b.dataset.kind === S.reg.kind;
    b.classList.toggle('active', on);
    b.setAttribute('aria-pressed', String(on));
  }
  $('reg-q').placeholder = S.reg.kind === 'devices'
    ? t('registers.search.devices_placeholder')
    : t('registers.search.placeholder');
}

/** Searches once typing pauses. */
function regTyped() {
  clearTimeout(S.reg.timer);
  S.reg.timer = setTimeout(() => {
    S.reg.offset = 0;
    searchRegisters();
  }, REG_TYPE_DELAY_MS);
}

/** GET /api/subscribers or /api/devices with the box's query and the page's offset. */
async function searchRegisters() {
  clearTimeout(S.reg.timer);
  const kind = S.reg.kind;
  const q = $('reg-q').value.trim();
  const seq = ++S.reg.seq;
  const params = new URLSearchParams({ q, offset: String(S.reg.offset), limit: String(REG_PAGE) });
  try {
    const { data } = await api('GET', `/api/${kind}?${params}`);
    if (seq !== S.reg.seq) return;
    pageError('reg-error', '');
    S.reg.page = data;
    S.reg.pageKind = kind;
    S.reg.q = q;
    if (S.view === 'registers') renderRegisters();
  } catch (e) {
    if (seq !== S.reg.seq || e.status === 401) return;
    pageError('reg-error', t('registers.search.failed', { error: e.message }));
  }
}

function renderRegisters() {
  const p = S.reg.page;
  const head = $('reg-head');
  const body = $('reg-body');
  clear(head);
  clear(body);
  if (!p) return;
  const subs = S.reg.pageKind === 'subscribers';
  const rows = (subs ? p.subscribers : p.devices) || [];
  const cols = subs
    ? [t('dir.col.name'), t('card.personal_number'), t('card.address'), t('card.area'), t('card.phone'), t('card.care_provider'), t('card.devices')]
    : [t('card.dev.account'), t('card.dev.type'), t('wo.subscriber'), t('card.phone'), t('card.area'), t('card.dev.telecom')];
  head.append(el('tr', {}, ...cols.map((h) => el('th', { text: h }))));
  for (const r of rows) {
    if (subs) {
      const open = () => openSubscriberPage(r.id);
      body.append(el('tr', {
        class: 'reg-row clickable', tabindex: 0, title: t('registers.open_card_of', { name: r.name || r.id }),
        dataset: { subscriber: r.id },
        on: { click: open, keydown: (e) => { if (e.key === 'Enter') { e.preventDefault(); open(); } } },
      },
      el('td', {}, el('span', { class: 'strong reg-name', text: r.name || r.id }), ' ', el('span', { class: 'mono muted', text: r.id })),
      el('td', { class: 'mono', title: t('registers.whole_number_title'), text: orDash(r.personal_number) }),
      el('td', { text: [r.address, [r.postcode, r.city].filter(Boolean).join(' ')].filter(Boolean).join(', ') || '-' }),
      el('td', { text: orDash(r.area) }),
      el('td', { class: 'mono', text: orDash(r.phone) }),
      el('td', { text: orDash(r.care_provider) }),
      el('td', {}, ...((r.accounts || []).length ? r.accounts.flatMap((a) => [deviceLink(a), ' ']) : [el('span', { class: 'muted', text: '-' })]))));
    } else {
      body.append(el('tr', { class: 'reg-row', dataset: { account: r.account } },
        el('td', {}, deviceLink(r.account)),
        el('td', { title: r.device_type || '', text: deviceTypeWords(r.device_type) }),
        el('td', {}, r.subscriber
          ? el('button', { type: 'button', class: 'link-like reg-subscriber', text: r.subscriber_name || r.subscriber, title: t('registers.open_card'), on: { click: () => openSubscriberPage(r.subscriber) } })
          : el('span', { class: 'muted', text: t('device.no_subscriber') })),
        el('td', { class: 'mono', text: orDash(r.phone) }),
        el('td', { text: orDash(r.area) }),
        el('td', { text: orDash(r.telecom_operator) })));
    }
  }
  if (rows.length === 0) {
    body.append(el('tr', {}, el('td', { colspan: cols.length, class: 'muted', text: S.reg.q ? t('registers.nothing_found', { q: S.reg.q }) : t('registers.empty') })));
  }
  const what = subs ? 'subscribers' : 'devices';
  $('reg-summary').textContent = rows.length
    ? tn(`registers.range.${what}`, p.total, { from: p.offset + 1, to: p.offset + rows.length })
    : tn(`registers.none_of.${what}`, p.total);
  $('reg-prev').disabled = p.offset === 0;
  $('reg-next').disabled = p.offset + rows.length >= p.total;
}

function regPage(step) {
  const p = S.reg.page;
  if (!p) return;
  S.reg.offset = Math.max(0, p.offset + step * p.limit);
  searchRegisters();
}

/** A subscriber's page: the same card (and editor) as in a Call, without one. */
function openSubscriberPage(id) {
  if (!S.me || !id) return;
  leaveCall();
  S.reg.cardId = String(id);
  S.reg.card = null;
  showView('subscriber');
  const card = $('reg-card');
  clear(card);
  card.className = 'card';
  card.append(el('p', { class: 'muted', text: t('card.loading') }));
  window.scrollTo(0, 0);
  blurHidden();
  loadSubscriberPage();
}

/** GET /api/subscribers/{id} for the subscriber page (audited, so only when it opens or changes). */
async function loadSubscriberPage() {
  const id = S.reg.cardId;
  if (!id) return;
  try {
    const { data } = await api('GET', `/api/subscribers/${encodeURIComponent(id)}`);
    if (S.view !== 'subscriber' || S.reg.cardId !== id) return;
    S.reg.card = data;
    renderRegCard(data);
  } catch (e) {
    if (S.view !== 'subscriber' || S.reg.cardId !== id || e.status === 401) return;
    const card = $('reg-card');
    clear(card);
    card.className = 'card card-warning';
    card.append(el('p', { class: 'warning-text', text: e.status === 404
      ? t('registers.not_registered', { id })
      : t('registers.card_failed', { error: e.message }) }));
  }
}

/** The subscriber page's card: the Call view's card, its Edit button under an id of its own. */
function renderRegCard(sub) {
  const card = $('reg-card');
  renderSubscriber(sub, card);
  const edit = card.querySelector('#subscriber-edit');
  if (edit) edit.id = 'reg-subscriber-edit';
}

/** The live feed says subscriber `id` changed (null: an import, any may have): the cards shown load again. */
function onSubscriberChanged(id) {
  if (S.view === 'subscriber' && S.reg.cardId && (id === null || id === S.reg.cardId)) loadSubscriberPage();
  if (S.current && S.subscriberId && (id === null || id === S.subscriberId)) {
    S.subscriberId = null; // the card loads once per subscriber; this asks again
    loadSubscriber(S.current);
  }
}

/** What the editor offers for care provider and area (empty lists: free text). */
async function loadEditChoices() {
  try {
    const { data } = await api('GET', '/api/registers/choices');
    return { care_providers: data.care_providers || [], areas: data.areas || [] };
  } catch (e) {
    return { care_providers: [], areas: [] };
  }
}

/** A select of the directory's choices for `path`; a value the directory does not know stays, marked. */
function directorySelect(id, path, value, list) {
  const current = value === undefined || value === null ? '' : String(value).trim();
  const lc = current.toLowerCase();
  const match = list.find((c) => c.id === current || c.name.toLowerCase() === lc);
  const select = el('select', { id, dataset: { path } });
  select.append(el('option', { value: '', text: t('editor.not_set') }));
  if (current && !match) {
    select.append(el('option', { value: current, class: 'not-in-directory', text: t('editor.not_in_directory', { value: current }) }));
  }
  for (const c of list) select.append(el('option', { value: c.name, text: c.name }));
  select.value = match ? match.name : current;
  return select;
}

/**
 * A refused edit's problems in the user's language: each of the answer's `details` (field,
 * stable code, values) as the catalogue's `problem.{code}`, a field it names in words
 * (`field.{name}`); the server's English line where a problem has no detail the catalogue
 * knows.
 */
function editProblems(body, fallback) {
  const texts = body && Array.isArray(body.problems) && body.problems.length ? body.problems : [fallback];
  const details = body && Array.isArray(body.details) ? body.details : [];
  return texts.map((text, i) => {
    const d = details[i];
    if (!d || typeof d.code !== 'string' || !tHas(`problem.${d.code}`)) return text;
    const params = {};
    for (const [k, v] of Object.entries(d.params || {})) params[k] = k === 'field' ? tOr(`field.${v}`, String(v)) : String(v);
    return { text: t(`problem.${d.code}`, params), field: String(d.field || '') };
  });
}

/**
 * The input a problem's field names: an editor field by the last part of its path, or a
 * contact's box (`contact2_phone`: the second contact that is not left empty, as sent).
 */
function editInputOf(field) {
  const input = [...$('edit-fields').querySelectorAll('[data-path]')]
    .find((i) => i.dataset.path.split('.').pop() === field);
  if (input) return input;
  const m = /^contact(\d+)_(name|relation|phone)$/.exec(String(field || ''));
  if (!m) return null;
  const rows = [...$('edit-contacts').querySelectorAll('.contact-edit')]
    .filter((r) => [...r.querySelectorAll('input')].some((i) => i.value.trim()));
  const row = rows[Number(m[1]) - 1];
  return row ? row.querySelector(`.c-${m[2]}`) : null;
}

/**
 * The editor's problems, one line each; the field a problem names is marked. A problem is
 * the server's text (it starts with the field's name) or `{text, field}` (worded in the
 * user's language).
 */
function showEditProblems(problems) {
  const err = $('edit-error');
  clear(err);
  for (const f of $('edit-form').querySelectorAll('.field-invalid')) f.classList.remove('field-invalid');
  for (const i of $('edit-form').querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  const textOf = (p) => (p && typeof p === 'object' ? String(p.text) : String(p));
  if (problems.length === 1) err.textContent = textOf(problems[0]);
  else if (problems.length > 1) err.append(el('ul', { class: 'problems' }, ...problems.map((p) => el('li', { text: textOf(p) }))));
  show(err, problems.length > 0);
  let first = null;
  for (const p of problems) {
    const field = p && typeof p === 'object' ? p.field : String(p).split(/[\s:']/)[0];
    const input = editInputOf(field);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      const box = input.closest('.field') || input.closest('.contact-edit');
      if (box) box.classList.add('field-invalid');
      first = first || input;
    }
  }
  if (first) first.focus(); // the first wrong field, in view
}

function wireRegisters() {
  $('tab-registers').addEventListener('click', showRegisters);
  $('registers-back').addEventListener('click', showQueue);
  $('subscriber-back').addEventListener('click', showRegisters);
  for (const b of document.querySelectorAll('#registers-view .reg-kind')) {
    b.addEventListener('click', () => setRegKind(b.dataset.kind));
  }
  $('reg-q').addEventListener('input', regTyped);
  $('reg-search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    S.reg.offset = 0;
    searchRegisters();
  });
  $('reg-prev').addEventListener('click', () => regPage(-1));
  $('reg-next').addEventListener('click', () => regPage(1));
}

// ---- subscriber editor

/** The editor's fields: path in model::Subscriber, the catalogue key of its label, kind. */
const EDIT_FIELDS = [
  ['name', 'field.name'],
  ['personal_number', 'card.personal_number'],
  ['address', 'card.address'],
  ['postcode', 'field.postcode'],
  ['city', 'field.city'],
  ['area', 'card.area'],
  ['phone', 'card.phone'],
  ['language', 'editor.field.language'],
  ['care_provider', 'card.care_provider'],
  ['municipality', 'editor.field.municipality'],
  ['access.keys', 'editor.field.access.keys', 'number'],
  ['access.key_location', 'card.key_location'],
  ['access.digital_lock_id', 'field.digital_lock_id'],
  ['access.door_code', 'card.door_code'],
  ['access.entry_notes', 'card.entry_notes', 'textarea'],
  ['health_notes', 'field.health_notes', 'textarea'],
  ['health_to_patrol', 'editor.field.health_to_patrol', 'checkbox'],
  ['care_plan_notes', 'field.care_plan_notes', 'textarea'],
  ['needs_extra_visits', 'editor.field.needs_extra_visits', 'checkbox'],
];

function getPath(obj, path) {
  return path.split('.').reduce((o, k) => (o && o[k] !== undefined && o[k] !== null ? o[k] : undefined), obj);
}

async function openEditor() {
  // The card of the subscriber's page, or of the Call in view.
  const sub = S.view === 'subscriber' ? S.reg.card : S.subscriber;
  if (!isSupervisor() || !sub) return;
  const choices = await loadEditChoices();
  if ((S.view === 'subscriber' ? S.reg.card : S.subscriber) !== sub) return; // the card changed meanwhile
  S.editing = sub;
  $('edit-id').textContent = sub.id;
  const fields = $('edit-fields');
  clear(fields);
  for (const [path, labelKey, kind] of EDIT_FIELDS) {
    const id = `edit-${path.replace('.', '-')}`;
    const label = t(labelKey);
    const value = getPath(sub, path);
    let input;
    const list = path === 'care_provider' ? choices.care_providers : path === 'area' ? choices.areas : null;
    if (list && list.length) {
      fields.append(el('div', { class: 'field field-select' }, el('label', { for: id, text: label }), directorySelect(id, path, value, list)));
      continue;
    }
    if (kind === 'textarea') {
      input = el('textarea', { id, rows: 2, dataset: { path } });
      input.value = value === undefined ? '' : String(value);
    } else if (kind === 'checkbox') {
      input = el('input', { id, type: 'checkbox', dataset: { path } });
      input.checked = value === true;
      fields.append(el('div', { class: 'field field-checkbox' }, el('label', { for: id, class: 'check-label' }, input, ` ${label}`)));
      continue;
    } else {
      input = el('input', { id, type: kind === 'number' ? 'number' : 'text', min: kind === 'number' ? 0 : null, dataset: { path } });
      input.value = value === undefined ? (kind === 'number' ? '0' : '') : String(value);
    }
    fields.append(el('div', { class: `field field-${kind || 'text'}` }, el('label', { for: id, text: label }), input));
  }
  const contacts = $('edit-contacts');
  clear(contacts);
  for (const c of sub.contacts || []) contacts.append(contactRow(c));
  showEditProblems([]);
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
  row.append(mk('c-name', t('dir.col.name'), c.name), mk('c-relation', t('editor.contact.relation'), c.relation), mk('c-phone', t('card.phone'), c.phone),
    el('button', { type: 'button', class: 'small', title: t('plan.editor.move_up'), text: '↑', on: { click: () => { if (row.previousElementSibling) row.parentNode.insertBefore(row, row.previousElementSibling); } } }),
    el('button', { type: 'button', class: 'small', title: t('plan.editor.move_down'), text: '↓', on: { click: () => { if (row.nextElementSibling) row.parentNode.insertBefore(row.nextElementSibling, row); } } }),
    el('button', { type: 'button', class: 'small danger-outline', title: t('users.remove'), text: t('users.remove'), on: { click: () => row.remove() } }));
  return row;
}

function closeEditor() {
  S.editing = null;
  show($('edit-dialog'), false);
  clear($('edit-fields'));
  clear($('edit-contacts'));
}

/** Builds a model::Subscriber from the form (keeps the id; devices are not part of it). */
function editorValue() {
  const src = S.editing || {};
  const sub = {
    id: src.id,
    name: '', personal_number: '', address: '', postcode: '', city: '', area: '', phone: '',
    care_provider: '', health_notes: '', care_plan_notes: '', language: '', needs_extra_visits: false,
    health_to_patrol: false, municipality: '',
    access: { keys: 0, key_location: '', digital_lock_id: '', door_code: '', entry_notes: '' },
    contacts: [],
  };
  for (const input of $('edit-fields').querySelectorAll('[data-path]')) {
    const path = input.dataset.path.split('.');
    let v = input.value;
    if (input.type === 'checkbox') {
      v = input.checked;
    } else if (input.type === 'number') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw Object.assign(new Error(t('editor.keys_whole')), { field: 'keys' });
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
  if (!sub.name) throw Object.assign(new Error(t('problem.subscriber.name_empty')), { field: 'name' });
  return sub;
}

async function saveEditor(ev) {
  ev.preventDefault();
  let sub;
  try {
    sub = editorValue();
  } catch (e) {
    showEditProblems([e.field ? { text: e.message, field: e.field } : e.message]);
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
    if (data && S.view === 'subscriber' && data.id === S.reg.cardId) {
      S.reg.card = data;
      renderRegCard(data);
    }
    message(t('editor.saved', { id: sub.id }), 'ok');
  } catch (e) {
    if (e.status === 422) {
      showEditProblems(editProblems(e.body, e.message));
    } else if (e.status !== 401) {
      showEditProblems([e.status === 403 ? t('editor.forbidden') : t('editor.save_failed', { error: e.message })]);
    }
  } finally {
    $('edit-save').disabled = false;
  }
}

// ---------------------------------------------------------------- 15. Keyboard

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

/** The voice keys in the Call view: A answer, M mute, H hold, X hang up. */
function voiceKey(e) {
  const vs = S.currentId === null ? [] : voiceOf(S.currentId);
  const k = e.key.toLowerCase();
  if (k === 'a') {
    const ringing = vs.find((v) => v.state === 'ringing');
    const b = ringing && document.querySelector(`#call-voice [data-conversation="${ringing.id}"] .voice-answer`);
    if (!b || b.disabled) return false;
    e.preventDefault();
    answerVoice(ringing, b);
    return true;
  }
  if (!S.phone || !vs.some((v) => v.id === S.phone.id)) return false;
  if (k === 'm' || k === 'h') {
    e.preventDefault();
    toggleVoice(k === 'm' ? 'mute' : 'hold');
    return true;
  }
  if (k === 'x') {
    e.preventDefault();
    hangUpVoice(S.phone.id, null);
    return true;
  }
  return false;
}

function onKeyDown(e) {
  unlockAudio();
  if (!S.me || e.ctrlKey || e.metaKey || e.altKey) return;
  if (handoverDialogKey(e)) return;
  if (!$('dispatch-dialog').hidden && e.key === 'Escape') {
    e.preventDefault();
    closeDispatchDialog();
    return;
  }
  if (isTyping()) {
    // Esc leaves the field (then shortcuts work again); nothing else is a shortcut here.
    if (e.key === 'Escape' && $('edit-dialog').hidden) document.activeElement.blur();
    return;
  }
  if (!$('edit-dialog').hidden) {
    if (e.key === 'Escape') closeEditor();
    return;
  }
  if (!$('dispatch-dialog').hidden) {
    if (e.key === 'Escape') {
      e.preventDefault();
      closeDispatchDialog();
    }
    return;
  }
  if (!$('help').hidden) {
    if (e.key === 'Escape' || e.key === '?') {
      e.preventDefault();
      toggleHelp(false);
    }
    return;
  }
  // A tenant's staff have no part in the centre's work: none of its shortcuts.
  if (isTenant()) return;
  const mine = S.view === 'call' && isMine(S.current);
  if (S.view === 'call' && (voiceKey(e) || dialKey(e))) return;
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
    case 'd':
    case 'D':
      if (mine) {
        e.preventDefault();
        openDispatchDialog();
      }
      break;
    case 'j':
    case 'J':
      e.preventDefault();
      jumpToMyCall();
      break;
    case 'p':
    case 'P':
      e.preventDefault();
      showPatrols();
      break;
    case 'i':
    case 'I':
      e.preventDefault();
      showIncidents();
      break;
    case 'w':
    case 'W':
      e.preventDefault();
      showWorkOrders();
      break;
    case 'g':
    case 'G':
      e.preventDefault();
      showRegisters();
      break;
    case 'Escape':
      if (S.view === 'subscriber') {
        e.preventDefault();
        showRegisters();
      } else if (S.view === 'incident') {
        e.preventDefault();
        showIncidents();
      } else if (S.view === 'device') {
        e.preventDefault();
        deviceBack();
      } else if (S.view !== 'queue') {
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

// ---------------------------------------------------------------- 16. Wiring

function wire() {
  $('login-form').addEventListener('submit', onLoginSubmit);
  $('language-select').addEventListener('change', (e) => changeLanguage(e.target.value));
  $('logout').addEventListener('click', logout);
  wireHandover();
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
  $('close-outcome').addEventListener('change', () => closeError(''));
  $('close-override').addEventListener('change', renderCloseReason);
  $('phone-no-answer').addEventListener('click', logPhoneNoAnswer);
  $('tab-reviews').addEventListener('click', showReviews);
  $('reviews-back').addEventListener('click', showQueue);
  $('reviews-refresh').addEventListener('click', loadReviews);
  $('audit-link').addEventListener('click', showAudit);
  $('tab-users').addEventListener('click', showUsers);
  $('users-back').addEventListener('click', showQueue);
  $('users-refresh').addEventListener('click', loadUsers);
  $('tab-queue').addEventListener('click', showQueue);
  $('tab-patrols').addEventListener('click', showPatrols);
  $('tab-directory').addEventListener('click', showDirectory);
  wireRegisters();
  $('tab-report').addEventListener('click', showReport);
  $('patrols-back').addEventListener('click', showQueue);
  $('directory-back').addEventListener('click', showQueue);
  $('report-back').addEventListener('click', showQueue);
  $('patrols-refresh').addEventListener('click', loadBoard);
  $('tab-incidents').addEventListener('click', showIncidents);
  $('tab-workorders').addEventListener('click', () => showWorkOrders());
  $('tab-outbox').addEventListener('click', showOutbox);
  $('tab-orders').addEventListener('click', () => showOrders());
  $('orders-back').addEventListener('click', showQueue);
  $('orders-refresh').addEventListener('click', loadOrders);
  $('orders-new').addEventListener('click', () => openOrderForm(''));
  $('tab-billing').addEventListener('click', showBilling);
  $('billing-back').addEventListener('click', showQueue);
  $('billing-load').addEventListener('click', loadBilling);
  $('tab-statistics').addEventListener('click', showStatistics);
  $('statistics-back').addEventListener('click', showQueue);
  $('statistics-load').addEventListener('click', loadStatistics);
  $('statistics-kind').addEventListener('change', statisticsInputs);
  $('billing-month').addEventListener('change', loadBilling);
  $('badge-silent').addEventListener('click', showIncidents);
  $('incidents-back').addEventListener('click', showQueue);
  $('incidents-refresh').addEventListener('click', loadIncidents);
  $('incident-back').addEventListener('click', showIncidents);
  $('incident-refresh').addEventListener('click', loadIncident);
  $('workorders-back').addEventListener('click', showQueue);
  $('workorders-refresh').addEventListener('click', loadWorkOrders);
  const woFilterChanged = () => {
    S.wo.list = null; // never a list of another filter under this one's name
    renderWorkOrders();
    loadWorkOrders();
  };
  $('wo-state').addEventListener('change', woFilterChanged);
  $('wo-overdue').addEventListener('change', woFilterChanged);
  $('device-back').addEventListener('click', deviceBack);
  $('device-refresh').addEventListener('click', loadDevice);
  $('outbox-back').addEventListener('click', showQueue);
  $('outbox-refresh').addEventListener('click', loadOutbox);
  $('outbox-state').addEventListener('change', () => { S.outbox = null; renderOutbox(); loadOutbox(); });
  $('fault-report').addEventListener('click', reportFault);
  $('fault-note').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      reportFault();
    }
  });
  $('directory-refresh').addEventListener('click', loadDirectory);
  $('import-form').addEventListener('submit', submitImport);
  $('report-load').addEventListener('click', loadReport);
  $('report-month').addEventListener('change', loadReport);
  $('dispatch-open').addEventListener('click', openDispatchDialog);
  $('dispatch-form').addEventListener('submit', submitDispatch);
  $('dispatch-cancel-dialog').addEventListener('click', closeDispatchDialog);
  $('dispatch-dialog').addEventListener('click', (e) => { if (e.target === $('dispatch-dialog')) closeDispatchDialog(); });
  $('dispatch-instruction').addEventListener('input', onDispatchInstruction);
  $('dispatch-choices').addEventListener('keydown', (e) => {
    // Enter on a patrol dispatches it (a radio button does not submit a form by itself).
    if (e.key === 'Enter' && e.target.matches('input[type="radio"]')) {
      e.preventDefault();
      $('dispatch-form').requestSubmit();
    }
  });
  $('audit-refresh').addEventListener('click', () => loadAudit(false));
  $('audit-older').addEventListener('click', () => loadAudit(true));
  $('audit-filters').addEventListener('submit', (e) => { e.preventDefault(); loadAudit(false); });
  $('audit-clear').addEventListener('click', () => {
    $('audit-filters').reset();
    loadAudit(false);
  });
  $('audit-f-flagged').addEventListener('change', renderAudit);
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
  $('sound-off').addEventListener('click', unlockAudio);
  // The sticky header grows with its banners (incidents, alerts): what is scrolled to (a
  // focused field, a work order) must land below it, not behind it.
  const top = $('top');
  const padTop = () => { document.documentElement.style.scrollPaddingTop = `${top.offsetHeight + 8}px`; };
  if (window.ResizeObserver) new ResizeObserver(padTop).observe(top);
  padTop();
  setInterval(tick, 1000);
}

// ---------------------------------------------------------------- staffing floor and overload

const PRESENCE_BEAT_MS = 30000; // the heartbeat over the live feed ([staffing] console_timeout_secs counts it)
const STAFFING_DETAIL_MS = 10000; // a supervisor's list of whom to call in is asked again after this

/** A key, mouse or touch input: someone uses this console. */
function noteInput() {
  S.lastInput = Date.now();
}

/** The heartbeat: the console is here, and how long it has had no input. */
function sendPresence() {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return;
  const idle = Math.max(0, Math.floor((Date.now() - S.lastInput) / 1000));
  try {
    S.ws.send(JSON.stringify({ type: 'presence', idle_secs: idle }));
  } catch (e) {
    // Closing: the reconnect opens a new feed, which counts as a beat.
  }
}

function staffingWarned(f) {
  return !!f && (!!f.below_floor || Number(f.waiting_over) > 0);
}

function setStaffing(f) {
  S.staffing = f;
  if (isSupervisor() && staffingWarned(f) && Date.now() - S.staffingDetailAt > STAFFING_DETAIL_MS) {
    loadStaffingDetail();
  }
  renderStaffing();
}

async function loadStaffingDetail() {
  S.staffingDetailAt = Date.now();
  await single('staffing', async () => {
    try {
      const { data } = await api('GET', '/api/staffing');
      S.staffingDetail = data || null;
    } catch (e) {
      if (e.status === 401) return;
      S.staffingDetail = null;
    }
    renderStaffing();
  });
}

function renderStaffing() {
  const box = $('staffing-banner');
  const f = S.me ? S.staffing : null;
  const focused = document.activeElement && box.contains(document.activeElement);
  clear(box);
  const warned = staffingWarned(f);
  show(box, warned);
  if (!warned) {
    S.staffingOpen = false;
    return;
  }
  const lines = [];
  if (f.below_floor) {
    lines.push(el('div', { class: 'sline' },
      el('span', { class: 'sline-words', text: t('staffing.below_floor', { n: f.on_duty, min: f.min_operators }) })));
  }
  const over = Number(f.waiting_over) || 0;
  if (over > 0) {
    lines.push(el('div', { class: 'sline' },
      el('span', { class: 'sline-words', text: tn('staffing.overload', over, { wait: fmtDuration(f.oldest_wait_secs), limit: fmtDuration(f.queue_wait_warn_secs) }) })));
  }
  if (isSupervisor() && lines.length) {
    const button = el('button', { type: 'button', class: 'small', id: 'staffing-call-in', 'aria-expanded': S.staffingOpen ? 'true' : 'false',
      text: t(S.staffingOpen ? 'staffing.hide' : 'staffing.call_in'),
      on: { click: () => { S.staffingOpen = !S.staffingOpen; if (S.staffingOpen) loadStaffingDetail(); renderStaffing(); } } });
    lines[0].append(button);
  }
  for (const l of lines) box.append(l);
  if (isSupervisor() && S.staffingOpen) box.append(staffingDetail());
  if (focused && $('staffing-call-in')) $('staffing-call-in').focus();
}

/** Who is on duty, who is logged in but away, and whom to call in (supervisors). */
function staffingDetail() {
  const d = S.staffingDetail;
  const box = el('div', { class: 'staffing-detail', id: 'staffing-detail' });
  if (!d) {
    box.append(el('p', { class: 'muted', text: t('staffing.loading') }));
    return box;
  }
  const names = (list) => (list && list.length ? list.join(', ') : t('staffing.nobody'));
  box.append(el('p', {}, el('strong', { text: `${t('staffing.on_duty')}: ` }), names(d.on_duty_users)));
  const away = (d.away_users || []).map((a) => `${a.username} (${t(`staffing.away.${a.why}`)})`);
  if (away.length) box.append(el('p', {}, el('strong', { text: `${t('staffing.away')}: ` }), away.join(', ')));
  const staff = d.call_in || [];
  if (!staff.length) {
    box.append(el('p', { class: 'muted', text: t('staffing.no_list') }));
    return box;
  }
  box.append(el('table', { id: 'staffing-call-in-list' },
    el('thead', {}, el('tr', {},
      el('th', { text: t('staffing.col.name') }), el('th', { text: t('staffing.col.role') }),
      el('th', { text: t('staffing.col.phone') }), el('th', { text: t('staffing.col.note') }))),
    el('tbody', {}, ...staff.map((m) => el('tr', {},
      el('td', { text: m.name }), el('td', { text: orDash(m.role) }),
      el('td', {}, telLink(m.phone)), el('td', { text: orDash(m.note) }))))));
  return box;
}

for (const ev of ['keydown', 'pointerdown', 'pointermove', 'wheel', 'touchstart']) {
  document.addEventListener(ev, noteInput, { capture: true, passive: true });
}
setInterval(sendPresence, PRESENCE_BEAT_MS);

document.addEventListener('DOMContentLoaded', () => {
  wire();
  boot();
});
