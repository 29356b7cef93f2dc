//! Triage: from journaled Signals to Calls in front of operators.
//!
//! [`Triage::ingest`] classifies each Signal ([`priority`], the one table) and then either
//! opens a Call, merges it into the open Call of the same subscriber (or, for a device
//! without one, of the same account), attaches a restore to it, or handles it by rule
//! (counted in `vakt_signals_by_rule_total`). Waiting Calls are in a lock-free priority
//! queue ([`queue`]); operators take the next one or a chosen one, and a claim is a
//! compare-and-swap on the Call's state word, so a Call has one owner at a time.
//!
//! Rules of the Calls:
//! - A new Call has the level of its Signal, `opened_at` = the Signal's `received_at` (the
//!   original time, also when the journal is replayed after a crash), `alarm_count` 1.
//! - A merged alarm (a new event of levels 0-2) adds one to `alarm_count`; every
//!   `escalate_after` merged alarms the Call moves up one level (`repeated_presses`). A merged
//!   Signal more urgent than the Call moves it to that level at once (`more_urgent_signal`)
//!   and its kind becomes the Call's kind. An escalated Call that waits goes to the head
//!   lane of its new level; a claimed one stays with its owner. A merged alarm clears
//!   `restored`.
//! - A restore with an open Call is shown in its timeline; if it ends the Call's own kind of
//!   condition it adds a `Restored` line and sets `restored`. It never closes the Call.
//!   Without an open Call it is the `restore` rule.
//! - Level-4 Signals (tests, open/close) without an open Call are handled by rule; with one
//!   they are shown in its timeline. Flagged Signals (unknown device, undecryptable,
//!   unreadable) always open or merge.
//! - A Signal whose id is at or below the highest one in the open Call is ignored (a journal
//!   replay; Signals reach triage in journal id order).
//! - At most [`MAX_SIGNAL_ENTRIES`] Signal lines per Call: later Signals still count
//!   (`alarm_count`, escalation) but are not written to the timeline (the journal has them).
//!
//! - A closed Call can come back ([`Triage::reopen`]: its dispatch ended without a visit and
//!   no patrol was left to take it): queued again at the head lane of its level, with a
//!   `Reopened` line saying why, its closing outcome cleared. It is a new slot in the queue, so
//!   a claim on it is the same compare-and-swap as on any Call; it takes its subscriber's
//!   merges unless the subscriber has another open Call meanwhile. After a restart a Call
//!   whose last queue move was the reopening goes to the head lane again.
//!
//! - A Call closes only as the closing rule allows ([`closing`]: life-safety Calls and a
//!   person not reached need a dispatch or an emergency service, or a supervisor's
//!   override; a reason when nobody is sent), checked under the Call's lock.
//!
//! Every change of a Call is reported to the [`CallSink`] with the Call's lock held, so the
//! changes of one Call arrive in order. Triage reads no clock: every time is a parameter or
//! a Signal's `received_at`.

pub mod closing;
pub mod priority;
pub mod queue;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::Timestamp;

use crate::model::{
    Call, CallState, Outcome, PhoneParty, Priority, ReturnReason, Signal, TimelineEntry,
    TimelineEvent,
};
use crate::telemetry::CallMetrics;
use priority::{Action, Class, rules};
use queue::{ClaimError, OwnerError, Queue, Slot, State};

/// Most Signal lines in one Call's timeline.
pub const MAX_SIGNAL_ENTRIES: usize = 1000;

/// Longest note, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;

/// Escalation reason: repeated presses.
pub const REPEATED_PRESSES: &str = "repeated_presses";

/// Escalation reason: a merged Signal more urgent than the Call.
pub const MORE_URGENT_SIGNAL: &str = "more_urgent_signal";

/// At most this many characters of an event's own text go into its timeline line.
const MAX_EVENT_TEXT: usize = 120;

/// Settings of triage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriageOptions {
    /// After this many merged alarms a Call moves up one level (0 counts as 1).
    pub escalate_after: u32,
}

impl Default for TriageOptions {
    fn default() -> Self {
        TriageOptions { escalate_after: 3 }
    }
}

/// Where triage reports every change of a Call (to store it and show it).
pub trait CallSink: Send + Sync + 'static {
    /// Called after every change of a Call, with the Call's lock held, so calls for one
    /// Call arrive in order. Must be quick and must not call back into [`Triage`].
    fn changed(&self, call: &Call);
}

/// A sink that drops every change (tools and tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullSink;

impl CallSink for NullSink {
    fn changed(&self, _call: &Call) {}
}

/// What [`Triage::ingest`] did with a Signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// A new Call was opened.
    Opened(u64),
    /// Merged into the open Call (also a replayed Signal, which changes nothing).
    Merged {
        /// The Call.
        call: u64,
        /// The Call moved to a more urgent level.
        escalated: bool,
    },
    /// A restore attached to the open Call.
    Restored(u64),
    /// Handled by the named rule (one of [`priority::rules::ALL`]); no Call.
    Rule(&'static str),
}

/// Why an operator's action on a Call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No open Call has that id.
    #[error("no open call with that id")]
    NotFound,
    /// Another operator owns the Call.
    #[error("the call is taken by {0}")]
    OwnedBy(String),
    /// Only the owner may do this.
    #[error("take the call before acting on it")]
    NotOwner,
    /// The Call is closed.
    #[error("the call is closed")]
    Closed,
    /// The request is not valid (the text says why).
    #[error("{0}")]
    Invalid(String),
    /// The closing rule refused the closing ([`closing`]).
    #[error(transparent)]
    Refused(#[from] closing::Refusal),
}

/// The open Call of one subscriber, or of one account without a subscriber.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Subscriber(String),
    Account(String),
}

impl Key {
    fn new(subscriber: Option<&str>, account: &str) -> Key {
        match subscriber {
            Some(s) => Key::Subscriber(s.to_owned()),
            None => Key::Account(account.to_owned()),
        }
    }
}

/// An open Call and what triage keeps beside it.
struct Open {
    call: Call,
    key: Key,
    /// Signal lines in the timeline.
    signals: usize,
}

impl Open {
    /// Whether the Signal `id` is already in this Call. Signals reach triage in journal id
    /// order (the feed and the replay at start both follow the journal), so every Signal
    /// at or below the highest id merged is already in: a constant-time check, however long
    /// the timeline.
    fn seen(&self, id: u64) -> bool {
        id != 0 && id <= self.call.last_signal_id
    }

    /// Appends the Signal's line unless the cap is reached; true if written.
    fn push_signal(&mut self, signal: &Signal, class: &Class) -> bool {
        self.call.last_signal_id = self.call.last_signal_id.max(signal.id);
        if self.signals >= MAX_SIGNAL_ENTRIES {
            return false;
        }
        self.signals += 1;
        self.call.timeline.push(signal_entry(signal, class));
        true
    }

    fn escalate(&mut self, to: Priority, reason: &'static str, at: Timestamp) {
        let from = self.call.priority;
        self.call.priority = to;
        self.call.timeline.push(entry(
            at,
            None,
            TimelineEvent::Escalated {
                from,
                to,
                reason: reason.to_owned(),
            },
        ));
    }
}

type CallSlot = Slot<Mutex<Open>>;

/// Operator names and the small numbers the queue's state word holds for them.
#[derive(Default)]
struct Owners {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

/// The triage engine: the open Calls, the queue and the claims. Shared as `Arc<Triage>`.
pub struct Triage {
    opts: TriageOptions,
    sink: Arc<dyn CallSink>,
    metrics: CallMetrics,
    next_id: AtomicU64,
    queue: Queue<Mutex<Open>>,
    /// Open Calls by id. Never held while waiting for a Call's lock.
    open: RwLock<HashMap<u64, Arc<CallSlot>>>,
    /// The open Call of each subscriber or account. Taken before a Call's lock.
    keys: Mutex<HashMap<Key, Arc<CallSlot>>>,
    owners: RwLock<Owners>,
    /// Accounts of devices in an open telecom incident, with the incident's id: their
    /// silences and restorations are the incident's, not Calls.
    incidents: RwLock<HashMap<String, u64>>,
}

impl std::fmt::Debug for Triage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Triage")
            .field("opts", &self.opts)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

fn entry(at: Timestamp, user: Option<&str>, what: TimelineEvent) -> TimelineEntry {
    TimelineEntry {
        at,
        user: user.map(str::to_owned),
        what,
    }
}

/// The timeline line of a Signal: the event that decided its class, or its flag.
fn signal_entry(signal: &Signal, class: &Class) -> TimelineEntry {
    let ev = class.event.and_then(|i| signal.events.get(i));
    let flag = priority::flag(&signal.flags);
    let mut description = match (ev, flag) {
        (Some(e), Some((_, fk))) => {
            format!("{fk}: {}", e.name.as_deref().unwrap_or(e.code.as_str()))
        }
        (Some(e), None) => e.name.clone().unwrap_or_else(|| class.kind.to_string()),
        (None, _) => class.kind.to_string(),
    };
    // The device's own words (SIA text, SCAIP status/device text and where it happened).
    if let Some(t) = ev
        .and_then(|e| e.text.as_deref())
        .filter(|t| !t.trim().is_empty())
    {
        description.push_str(" · ");
        description.extend(t.chars().take(MAX_EVENT_TEXT));
    }
    let more = signal.events.len().saturating_sub(1);
    if more > 0 {
        let s = if more == 1 { "" } else { "s" };
        description.push_str(&format!(" (+{more} more event{s})"));
    }
    let code = match (ev, flag) {
        (Some(e), _) => e.code.clone(),
        (None, Some((name, _))) => name.to_owned(),
        (None, None) => "no_events".to_owned(),
    };
    entry(
        signal.received_at,
        None,
        TimelineEvent::Signal {
            signal_id: signal.id,
            account: signal.account.clone(),
            code,
            description,
            qualifier: ev.map_or("new", |e| e.qualifier.as_str()).to_owned(),
            zone: ev.and_then(|e| e.zone),
        },
    )
}

/// Whether the Call's last move in the queue (taken, released, reopened) was a reopening: it
/// waits at the head of its level.
fn reopened_waiting(call: &Call) -> bool {
    call.timeline
        .iter()
        .rev()
        .find_map(|e| match e.what {
            TimelineEvent::Reopened { .. } => Some(true),
            TimelineEvent::Claimed
            | TimelineEvent::Released
            | TimelineEvent::HandedOver { .. }
            | TimelineEvent::Returned { .. } => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

fn trimmed(text: &str, min: usize, what: &str) -> Result<String, CallError> {
    let t = text.trim();
    let n = t.chars().count();
    if n < min || n > MAX_TEXT_CHARS {
        return Err(CallError::Invalid(format!(
            "{what} must be {min} to {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(t.to_owned())
}

fn owner_error(e: OwnerError) -> CallError {
    match e {
        OwnerError::NotOwner => CallError::NotOwner,
        OwnerError::Closed => CallError::Closed,
    }
}

impl Triage {
    /// A triage engine with no open Call. `next_call_id` is the id the first new Call gets
    /// (the highest stored id + 1).
    pub fn new(
        opts: TriageOptions,
        sink: Arc<dyn CallSink>,
        metrics: CallMetrics,
        next_call_id: u64,
    ) -> Triage {
        Triage {
            opts,
            sink,
            metrics,
            next_id: AtomicU64::new(next_call_id.max(1)),
            queue: Queue::new(),
            open: RwLock::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            owners: RwLock::new(Owners::default()),
            incidents: RwLock::new(HashMap::new()),
        }
    }

    /// Devices join an open incident: from now on their silences and restorations are
    /// handled by the incident rule.
    pub fn join_incident(&self, incident: u64, accounts: impl IntoIterator<Item = String>) {
        let mut m = write(&self.incidents);
        for a in accounts {
            m.insert(a, incident);
        }
    }

    /// An incident is over: its devices' silences are Calls again.
    pub fn end_incident(&self, incident: u64) {
        write(&self.incidents).retain(|_, i| *i != incident);
    }

    /// The open incident a device is in.
    pub fn incident_of(&self, account: &str) -> Option<u64> {
        read(&self.incidents).get(account).copied()
    }

    /// Takes a device's waiting "communication lost" Call out of the queue into an incident:
    /// closed by vakt (outcome `technical`) with a line naming the incident, if nobody has
    /// claimed it and it is about nothing else (a Call with presses or other kinds stays).
    /// Returns the Call's id if it was taken.
    pub fn withdraw_into_incident(
        &self,
        account: &str,
        subscriber: Option<&str>,
        note: &str,
        now: Timestamp,
    ) -> Option<u64> {
        let key = Key::new(subscriber, account);
        let slot = lock(&self.keys).get(&key).cloned()?;
        let mut g = lock(slot.value());
        if g.call.state != CallState::Queued
            || g.call.kind != priority::COMMUNICATION_LOST
            || g.call.alarm_count > 1
        {
            return None;
        }
        if !self.queue.withdraw(&slot) {
            return None;
        }
        g.call.state = CallState::Closed;
        g.call.closed_at = Some(now);
        g.call.outcome = Some(Outcome::Technical);
        g.call.timeline.push(entry(
            now,
            None,
            TimelineEvent::Closed {
                outcome: Outcome::Technical,
                note: note.to_owned(),
                override_reason: None,
                overrode: String::new(),
                review: false,
            },
        ));
        self.metrics.closed(Outcome::Technical);
        self.sink.changed(&g.call);
        let id = g.call.id;
        drop(g);
        self.forget(&slot, &key, id);
        Some(id)
    }

    /// Removes a closed Call from the open set and its key.
    fn forget(&self, slot: &Arc<CallSlot>, key: &Key, id: u64) {
        {
            let mut keys = lock(&self.keys);
            if keys.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                keys.remove(key);
            }
        }
        {
            let mut open = write(&self.open);
            // A reopened Call has a new slot under the same id: leave it.
            if open.get(&id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                open.remove(&id);
            }
            self.metrics.open.set(open.len() as f64);
        }
        self.gauges();
    }

    /// Brings a closed Call back to the queue, at the head lane of its level: its state
    /// `Queued`, no owner, `closed_at` and `outcome` cleared, and a `Reopened` line with
    /// `reason` at `now`. `call` is the closed Call as stored (its whole timeline). Returns the
    /// reopened Call, or `None` when a Call with that id is open already (nothing changes).
    /// New Signals of its subscriber merge into it unless another Call of theirs is open.
    pub fn reopen(&self, call: Call, reason: &str, now: Timestamp) -> Option<Call> {
        self.reopen_by(call, None, reason, now)
    }

    /// [`Triage::reopen`] by `user` (a supervisor on review), named on the `Reopened` line.
    pub fn reopen_by(
        &self,
        mut call: Call,
        user: Option<&str>,
        reason: &str,
        now: Timestamp,
    ) -> Option<Call> {
        let id = call.id;
        let key = Key::new(call.subscriber.as_deref(), &call.account);
        // The lock order of `ingest`: keys, then the open set, then a Call's lock.
        let mut keys = lock(&self.keys);
        let mut open = write(&self.open);
        if let Some(s) = open.get(&id)
            && s.word().state() != State::Closed
        {
            return None;
        }
        call.state = CallState::Queued;
        call.owner = None;
        call.closed_at = None;
        call.outcome = None;
        call.timeline.push(entry(
            now,
            user,
            TimelineEvent::Reopened {
                reason: reason.to_owned(),
            },
        ));
        self.next_id
            .fetch_max(id.saturating_add(1), Ordering::Relaxed);
        let signals = call
            .timeline
            .iter()
            .filter(|e| matches!(e.what, TimelineEvent::Signal { .. }))
            .count();
        let level = call.priority;
        let slot = Slot::new(Mutex::new(Open {
            call,
            key: key.clone(),
            signals,
        }));
        let g = lock(slot.value());
        let key_free = keys
            .get(&key)
            .is_none_or(|s| s.word().state() == State::Closed);
        if key_free {
            keys.insert(key, slot.clone());
        }
        open.insert(id, slot.clone());
        self.metrics.open.set(open.len() as f64);
        self.queue.enqueue_head(&slot, level);
        drop(open);
        drop(keys);
        self.gauges();
        self.sink.changed(&g.call);
        Some(g.call.clone())
    }

    /// Rebuilds the open Calls read from the store at start (original times kept): queued
    /// ones go back in the queue ordered by level then `opened_at`; claimed ones stay
    /// claimed by their owner (one without an owner is queued). Closed ones are skipped.
    /// Does not call the sink.
    pub fn restore(&self, calls: Vec<Call>) {
        let mut calls: Vec<Call> = calls
            .into_iter()
            .filter(|c| c.state != CallState::Closed)
            .collect();
        calls.sort_by_key(|c| (c.priority, c.opened_at, c.id));
        let mut keys = lock(&self.keys);
        let mut open = write(&self.open);
        // The newest Call of a key takes the key's merges.
        let mut newest: HashMap<Key, (u64, Arc<CallSlot>)> = HashMap::new();
        for mut call in calls {
            if open.contains_key(&call.id) {
                continue;
            }
            self.next_id
                .fetch_max(call.id.saturating_add(1), Ordering::Relaxed);
            let key = Key::new(call.subscriber.as_deref(), &call.account);
            let owner = match (call.state, call.owner.as_deref()) {
                (CallState::Claimed, Some(u)) => self.owner_id(u).ok(),
                _ => None,
            };
            if owner.is_none() {
                call.state = CallState::Queued;
                call.owner = None;
            }
            let mut signals = 0;
            let mut max_signal = call.last_signal_id;
            for e in &call.timeline {
                if let TimelineEvent::Signal { signal_id, .. } = e.what {
                    signals += 1;
                    max_signal = max_signal.max(signal_id);
                }
            }
            call.last_signal_id = max_signal;
            let (id, level) = (call.id, call.priority);
            let slot = Slot::new(Mutex::new(Open {
                call,
                key: key.clone(),
                signals,
            }));
            match owner {
                Some(o) => {
                    let _ = self.queue.claim(&slot, o);
                }
                None if reopened_waiting(&lock(slot.value()).call) => {
                    self.queue.enqueue_head(&slot, level);
                }
                None => {
                    self.queue.enqueue(&slot, level);
                }
            }
            if newest.get(&key).is_none_or(|(n, _)| *n < id) {
                newest.insert(key, (id, slot.clone()));
            }
            open.insert(id, slot);
        }
        for (key, (_, slot)) in newest {
            keys.entry(key).or_insert(slot);
        }
        self.metrics.open.set(open.len() as f64);
        drop(open);
        drop(keys);
        self.gauges();
    }

    /// Classifies one journaled Signal (its `id` is set) and opens a Call, merges it into
    /// the open Call of the same subscriber (or, without a subscriber, of the same account),
    /// attaches a restore, or handles it by rule (counted). A Signal whose id is already in
    /// the open Call's timeline is ignored (replay after a crash) and gives
    /// `Merged { escalated: false }`. Every time written is the Signal's `received_at`.
    pub fn ingest(&self, signal: &Signal, device_type: Option<&str>, _now: Timestamp) -> Ingested {
        let class = priority::classify(signal, device_type);
        if signal.protocol == priority::SUPERVISION_PROTOCOL
            && self.incident_of(&signal.account).is_some()
        {
            self.metrics.rule(rules::INCIDENT);
            return Ingested::Rule(rules::INCIDENT);
        }
        let key = Key::new(signal.subscriber.as_deref(), &signal.account);
        let mut keys = lock(&self.keys);
        if let Some(slot) = keys.get(&key).cloned() {
            let mut g = lock(slot.value());
            if g.call.state != CallState::Closed {
                return self.merge(&slot, &mut g, signal, &class);
            }
        }
        match class.action {
            Action::Rule(rule) => {
                self.metrics.rule(rule);
                Ingested::Rule(rule)
            }
            Action::Restore => {
                self.metrics.rule(rules::RESTORE);
                Ingested::Rule(rules::RESTORE)
            }
            Action::OpenCall => self.open_call(&mut keys, key, signal, class),
        }
    }

    fn open_call(
        &self,
        keys: &mut HashMap<Key, Arc<CallSlot>>,
        key: Key,
        signal: &Signal,
        class: Class,
    ) -> Ingested {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let level = class.level;
        let call = Call {
            id,
            priority: level,
            state: CallState::Queued,
            owner: None,
            opened_at: signal.received_at,
            alarm_count: 1,
            subscriber: signal.subscriber.clone(),
            account: signal.account.clone(),
            kind: class.kind.to_string(),
            restored: false,
            answered_at: None,
            closed_at: None,
            outcome: None,
            timeline: vec![signal_entry(signal, &class)],
            last_signal_id: signal.id,
        };
        let slot = Slot::new(Mutex::new(Open {
            call,
            key: key.clone(),
            signals: 1,
        }));
        let g = lock(slot.value());
        keys.insert(key, slot.clone());
        {
            let mut open = write(&self.open);
            open.insert(id, slot.clone());
            self.metrics.open.set(open.len() as f64);
        }
        self.queue.enqueue(&slot, level);
        self.metrics.opened(level);
        self.gauges();
        self.sink.changed(&g.call);
        Ingested::Opened(id)
    }

    fn merge(
        &self,
        slot: &Arc<CallSlot>,
        g: &mut Open,
        signal: &Signal,
        class: &Class,
    ) -> Ingested {
        let id = g.call.id;
        if g.seen(signal.id) {
            return Ingested::Merged {
                call: id,
                escalated: false,
            };
        }
        let at = signal.received_at;
        let written = g.push_signal(signal, class);
        let done = match class.action {
            Action::OpenCall => {
                let mut escalated = false;
                if class.alarm {
                    g.call.alarm_count = g.call.alarm_count.saturating_add(1);
                    g.call.restored = false;
                    self.metrics.merged.increment(1);
                }
                if class.level < g.call.priority {
                    g.escalate(class.level, MORE_URGENT_SIGNAL, at);
                    g.call.kind = class.kind.to_string();
                    self.metrics.escalated(MORE_URGENT_SIGNAL);
                    escalated = true;
                }
                let n = self.opts.escalate_after.max(1);
                if class.alarm
                    && (g.call.alarm_count - 1) % n == 0
                    && g.call.priority > Priority::LIFE_SAFETY
                {
                    g.escalate(g.call.priority.raised(), REPEATED_PRESSES, at);
                    self.metrics.escalated(REPEATED_PRESSES);
                    escalated = true;
                }
                if escalated && self.queue.requeue(slot, g.call.priority) {
                    self.gauges();
                }
                Ingested::Merged {
                    call: id,
                    escalated,
                }
            }
            Action::Restore => {
                if class.kind == g.call.kind.as_str() {
                    g.call.restored = true;
                    if written {
                        g.call
                            .timeline
                            .push(entry(at, None, TimelineEvent::Restored));
                    }
                }
                self.metrics.restores.increment(1);
                Ingested::Restored(id)
            }
            Action::Rule(_) => Ingested::Merged {
                call: id,
                escalated: false,
            },
        };
        self.sink.changed(&g.call);
        done
    }

    /// "Take next": claims the most urgent waiting Call for `user` (level, then head lane,
    /// then oldest first). `None` when no Call waits.
    pub fn next(&self, user: &str, now: Timestamp) -> Option<Call> {
        let owner = self.owner_id(user).ok()?;
        while let Some(slot) = self.queue.pop(owner) {
            let mut g = lock(slot.value());
            let w = slot.word();
            // The same user may have released or closed it from another window meanwhile.
            if w.state() != State::Claimed || w.owner() != Some(owner) {
                continue;
            }
            if self.mark_claimed(&mut g, user, now) {
                self.sink.changed(&g.call);
            }
            self.gauges();
            return Some(g.call.clone());
        }
        self.gauges();
        None
    }

    /// "Take this": claims the Call for `user`. Idempotent for its owner; `OwnedBy(owner)`
    /// if another operator owns it.
    pub fn claim(&self, id: u64, user: &str, now: Timestamp) -> Result<Call, CallError> {
        let slot = self.slot(id).ok_or(CallError::NotFound)?;
        let owner = self.owner_id(user)?;
        let mut g = lock(slot.value());
        match self.queue.claim(&slot, owner) {
            Ok(_) => {}
            Err(ClaimError::Owned(o)) => return Err(CallError::OwnedBy(self.owner_name(o))),
            Err(ClaimError::Closed) => return Err(CallError::Closed),
        }
        if self.mark_claimed(&mut g, user, now) {
            self.sink.changed(&g.call);
        }
        self.gauges();
        Ok(g.call.clone())
    }

    /// The owner puts the Call back: to the head lane of its level, keeping `opened_at`, so
    /// it goes before newer Calls of its level.
    pub fn release(&self, id: u64, user: &str, now: Timestamp) -> Result<Call, CallError> {
        let slot = self.slot(id).ok_or(CallError::NotFound)?;
        let mut g = lock(slot.value());
        let owner = self.check_owner(&slot, &mut g, user, now)?;
        self.queue
            .release(&slot, owner, g.call.priority)
            .map_err(owner_error)?;
        g.call.state = CallState::Queued;
        g.call.owner = None;
        g.call
            .timeline
            .push(entry(now, Some(user), TimelineEvent::Released));
        self.sink.changed(&g.call);
        self.gauges();
        Ok(g.call.clone())
    }

    /// The owner `from` hands the Call to `to` (at the end of a shift), with a note for them
    /// (trimmed; 1 to [`MAX_TEXT_CHARS`] characters): `to` owns it at once, and a
    /// `HandedOver` line by `from` says so. Whether `to` may receive it (logged in, an
    /// operator) is the caller's to check.
    pub fn hand_over(
        &self,
        id: u64,
        from: &str,
        to: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<Call, CallError> {
        let note = trimmed(note, 1, "a handover note")?;
        self.transfer(id, Some(from), to, from, note, now)
    }

    /// A supervisor `by` gives a Call someone owns to `to`, whoever owns it: to themselves
    /// (take over) or to another operator, with a note (trimmed; at most [`MAX_TEXT_CHARS`]
    /// characters). A `HandedOver` line by `by` names the owner before and after. `NotOwner`
    /// when nobody owns it (it waits in the queue: claim it instead).
    pub fn reassign(
        &self,
        id: u64,
        by: &str,
        to: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<Call, CallError> {
        let note = trimmed(note, 0, "a note")?;
        self.transfer(id, None, to, by, note, now)
    }

    fn transfer(
        &self,
        id: u64,
        from: Option<&str>,
        to: &str,
        by: &str,
        note: String,
        now: Timestamp,
    ) -> Result<Call, CallError> {
        let slot = self.slot(id).ok_or(CallError::NotFound)?;
        let to_id = self.owner_id(to)?;
        let mut g = lock(slot.value());
        let from_id = match from {
            Some(f) => Some(self.check_owner(&slot, &mut g, f, now)?),
            None => None,
        };
        // Every move of a claimed Call's word happens under its lock: this is current.
        let w = slot.word();
        if w.state() == State::Claimed && w.owner() == Some(to_id) {
            return Err(CallError::Invalid(format!("the call is {to}'s already")));
        }
        let before = self
            .queue
            .transfer(&slot, from_id, to_id)
            .map_err(owner_error)?;
        let from_name = g
            .call
            .owner
            .clone()
            .unwrap_or_else(|| self.owner_name(before));
        g.call.state = CallState::Claimed;
        g.call.owner = Some(to.to_owned());
        g.call.timeline.push(entry(
            now,
            Some(by),
            TimelineEvent::HandedOver {
                from: from_name,
                to: to.to_owned(),
                note,
            },
        ));
        self.sink.changed(&g.call);
        Ok(g.call.clone())
    }

    /// vakt puts `owner`'s Call back in the queue because they can no longer act on it (their
    /// session ended, they were disabled): like a release, to the head lane of its level
    /// keeping `opened_at`, with a `Returned` line saying why. `NotOwner` when `owner` does
    /// not own it (any more).
    pub fn give_back(
        &self,
        id: u64,
        owner: &str,
        reason: ReturnReason,
        now: Timestamp,
    ) -> Result<Call, CallError> {
        let slot = self.slot(id).ok_or(CallError::NotFound)?;
        let mut g = lock(slot.value());
        let owner_id = read(&self.owners)
            .ids
            .get(owner)
            .copied()
            .ok_or(CallError::NotOwner)?;
        self.queue
            .release(&slot, owner_id, g.call.priority)
            .map_err(owner_error)?;
        g.call.state = CallState::Queued;
        g.call.owner = None;
        g.call.timeline.push(entry(
            now,
            None,
            TimelineEvent::Returned {
                owner: owner.to_owned(),
                reason,
            },
        ));
        self.sink.changed(&g.call);
        self.gauges();
        Ok(g.call.clone())
    }

    /// The open Calls `user` owns, most urgent first.
    pub fn owned_by(&self, user: &str) -> Vec<Call> {
        self.open_calls()
            .into_iter()
            .filter(|c| c.state == CallState::Claimed && c.owner.as_deref() == Some(user))
            .collect()
    }

    /// The owners of open Calls, with how many each owns.
    pub fn owners(&self) -> std::collections::BTreeMap<String, usize> {
        let slots: Vec<Arc<CallSlot>> = read(&self.open).values().cloned().collect();
        let mut m = std::collections::BTreeMap::new();
        for s in slots {
            let g = lock(s.value());
            if g.call.state == CallState::Claimed
                && let Some(o) = &g.call.owner
            {
                *m.entry(o.clone()).or_insert(0) += 1;
            }
        }
        m
    }

    /// The owner writes a note (trimmed; 1 to [`MAX_TEXT_CHARS`] characters).
    pub fn note(&self, id: u64, user: &str, text: &str, now: Timestamp) -> Result<Call, CallError> {
        let text = trimmed(text, 1, "a note")?;
        self.owner_change(id, user, now, TimelineEvent::Note { text })
    }

    /// The owner records a phone call (note trimmed; at most [`MAX_TEXT_CHARS`] characters),
    /// and whether it was answered (`Some(false)`: nobody answered).
    pub fn phone(
        &self,
        id: u64,
        user: &str,
        to: PhoneParty,
        answered: Option<bool>,
        note: &str,
        now: Timestamp,
    ) -> Result<Call, CallError> {
        let note = trimmed(note, 0, "a note")?;
        self.owner_change(
            id,
            user,
            now,
            TimelineEvent::PhoneCall { to, answered, note },
        )
    }

    /// The owner adds a line of their own to the Call's timeline (a step of its response
    /// plan, a relative called): refused unless `user` owns the open Call.
    pub fn owner_line(
        &self,
        id: u64,
        user: &str,
        what: TimelineEvent,
        now: Timestamp,
    ) -> Result<Call, CallError> {
        self.owner_change(id, user, now, what)
    }

    /// The owner closes the Call, as the closing rule allows ([`closing::decide`], under the
    /// Call's lock; the note and an override's reason trimmed, at most [`MAX_TEXT_CHARS`]
    /// characters). It leaves the open set: [`Triage::get`] no longer finds it, and the next
    /// Signal of its subscriber opens a new Call.
    pub fn close(
        &self,
        id: u64,
        user: &str,
        req: &closing::Closing<'_>,
        now: Timestamp,
    ) -> Result<Call, CallError> {
        let note = trimmed(req.note, 0, "a closing note")?;
        let override_reason = req
            .override_reason
            .map(|r| trimmed(r, 0, "an override's reason"))
            .transpose()?;
        let req = closing::Closing {
            note: &note,
            override_reason: override_reason.as_deref(),
            ..*req
        };
        let outcome = req.outcome;
        let slot = self.slot(id).ok_or(CallError::NotFound)?;
        let mut g = lock(slot.value());
        let owner = self.check_owner(&slot, &mut g, user, now)?;
        let line = closing::decide(&g.call, user, &req, now)?;
        self.queue.close(&slot, owner).map_err(owner_error)?;
        g.call.state = CallState::Closed;
        g.call.closed_at = Some(now);
        g.call.outcome = Some(outcome);
        g.call.timeline.push(line);
        self.metrics.closed(outcome);
        self.sink.changed(&g.call);
        let call = g.call.clone();
        let key = g.key.clone();
        // Not holding the Call's lock: ingest takes `keys` before a Call's lock.
        drop(g);
        self.forget(&slot, &key, id);
        Ok(call)
    }

    /// Appends a line that is not an operator's action on their own Call (a dispatch step,
    /// reported by a patrol or a clock) to an open Call, whoever owns it. `NotFound` once the
    /// Call is closed.
    pub fn record(
        &self,
        id: u64,
        user: Option<&str>,
        what: TimelineEvent,
        now: Timestamp,
    ) -> Result<Call, CallError> {
        let slot = self.slot(id).ok_or(CallError::NotFound)?;
        let mut g = lock(slot.value());
        if g.call.state == CallState::Closed {
            return Err(CallError::NotFound);
        }
        g.call.timeline.push(entry(now, user, what));
        self.sink.changed(&g.call);
        Ok(g.call.clone())
    }

    /// The state of Call `id` without copying it; `None` when no Call with that id is in
    /// memory (closed Calls leave it).
    pub fn call_state(&self, id: u64) -> Option<CallState> {
        let slot = self.slot(id)?;
        let g = lock(slot.value());
        Some(g.call.state)
    }

    /// The open Call of `subscriber` (or of `account`, without one), with its state, if
    /// Signal `signal_id` went into it.
    pub fn open_call_with_signal(
        &self,
        subscriber: Option<&str>,
        account: &str,
        signal_id: u64,
    ) -> Option<(u64, CallState)> {
        let slot = lock(&self.keys)
            .get(&Key::new(subscriber, account))
            .cloned()?;
        let g = lock(slot.value());
        // Signals reach a Call in id order: it holds every id from its first Signal's to
        // `last_signal_id` that its key took in (the timeline keeps only the first
        // MAX_SIGNAL_ENTRIES lines, so the range decides, not a search of the lines).
        let first = g.call.timeline.iter().find_map(|e| match &e.what {
            TimelineEvent::Signal { signal_id: s, .. } => Some(*s),
            _ => None,
        })?;
        (first <= signal_id && signal_id <= g.call.last_signal_id)
            .then_some((g.call.id, g.call.state))
    }

    /// An open Call (not closed ones).
    pub fn get(&self, id: u64) -> Option<Call> {
        let slot = self.slot(id)?;
        let g = lock(slot.value());
        (g.call.state != CallState::Closed).then(|| g.call.clone())
    }

    /// Every open Call, most urgent first: level, then head lane, then `opened_at`.
    pub fn open_calls(&self) -> Vec<Call> {
        let slots: Vec<Arc<CallSlot>> = read(&self.open).values().cloned().collect();
        let mut calls: Vec<(bool, Call)> = slots
            .iter()
            .filter_map(|s| {
                let g = lock(s.value());
                let w = s.word();
                (g.call.state != CallState::Closed)
                    .then(|| (w.state() == State::Queued && w.head(), g.call.clone()))
            })
            .collect();
        calls.sort_by(|(ha, a), (hb, b)| {
            (a.priority, !ha, a.opened_at, a.id).cmp(&(b.priority, !hb, b.opened_at, b.id))
        });
        calls.into_iter().map(|(_, c)| c).collect()
    }

    /// Waiting (queued) Calls per level.
    pub fn depth(&self) -> [usize; Priority::LEVELS] {
        self.queue.depths()
    }

    fn slot(&self, id: u64) -> Option<Arc<CallSlot>> {
        read(&self.open).get(&id).cloned()
    }

    fn gauges(&self) {
        for (l, d) in self.queue.depths().into_iter().enumerate() {
            self.metrics.queue_depth(Priority(l as u8), d);
        }
    }

    /// The number of `user` in the state word, given on first use.
    fn owner_id(&self, user: &str) -> Result<u32, CallError> {
        if let Some(&o) = read(&self.owners).ids.get(user) {
            return Ok(o);
        }
        let mut w = write(&self.owners);
        if let Some(&o) = w.ids.get(user) {
            return Ok(o);
        }
        let o = u32::try_from(w.names.len() + 1)
            .ok()
            .filter(|&o| o <= queue::MAX_OWNER)
            .ok_or_else(|| CallError::Invalid("too many operator names".into()))?;
        w.ids.insert(user.to_owned(), o);
        w.names.push(user.to_owned());
        Ok(o)
    }

    fn owner_name(&self, owner: u32) -> String {
        let r = read(&self.owners);
        usize::try_from(owner)
            .ok()
            .and_then(|o| r.names.get(o.checked_sub(1)?))
            .cloned()
            .unwrap_or_else(|| "another operator".into())
    }

    /// Brings the Call in line with a claim its state word holds: owner, `Claimed` line,
    /// and on the first claim `answered_at` and the answer time. True if it changed.
    fn mark_claimed(&self, g: &mut Open, user: &str, now: Timestamp) -> bool {
        let c = &mut g.call;
        if c.state == CallState::Claimed && c.owner.as_deref() == Some(user) {
            return false;
        }
        c.state = CallState::Claimed;
        c.owner = Some(user.to_owned());
        c.timeline
            .push(entry(now, Some(user), TimelineEvent::Claimed));
        if c.answered_at.is_none() {
            c.answered_at = Some(now);
            let secs = now.duration_since(c.opened_at).as_secs_f64().max(0.0);
            self.metrics.answer_seconds.record(secs);
        }
        true
    }

    /// `user` owns the Call (by its state word); returns their owner number.
    fn check_owner(
        &self,
        slot: &CallSlot,
        g: &mut Open,
        user: &str,
        now: Timestamp,
    ) -> Result<u32, CallError> {
        let w = slot.word();
        let owner = read(&self.owners).ids.get(user).copied();
        match w.state() {
            State::Closed => Err(CallError::Closed),
            State::Claimed if owner.is_some() && w.owner() == owner => {
                // A "take next" of this user may not have written its claim yet.
                if self.mark_claimed(g, user, now) {
                    self.sink.changed(&g.call);
                }
                Ok(w.owner().unwrap_or(0))
            }
            _ => Err(CallError::NotOwner),
        }
    }

    fn owner_change(
        &self,
        id: u64,
        user: &str,
        now: Timestamp,
        what: TimelineEvent,
    ) -> Result<Call, CallError> {
        let slot = self.slot(id).ok_or(CallError::NotFound)?;
        let mut g = lock(slot.value());
        self.check_owner(&slot, &mut g, user, now)?;
        g.call.timeline.push(entry(now, Some(user), what));
        self.sink.changed(&g.call);
        Ok(g.call.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{event, signal};
    use crate::model::{SignalEvent, Transport};
    use vakt_proto::event::Qualifier;

    #[derive(Default)]
    struct Rec(Mutex<Vec<Call>>);

    impl CallSink for Rec {
        fn changed(&self, call: &Call) {
            self.0.lock().unwrap().push(call.clone());
        }
    }

    impl Rec {
        fn take(&self) -> Vec<Call> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn sig(id: u64, sub: Option<&str>, code: &str, q: Qualifier, at: i64) -> Signal {
        Signal {
            id,
            received_at: t(at),
            peer: "127.0.0.1:9".parse().unwrap(),
            account: "A1".into(),
            subscriber: sub.map(str::to_owned),
            events: vec![SignalEvent {
                name: Some(format!("name of {code}")),
                zone: Some(1),
                ..event(code, q)
            }],
            ..signal()
        }
    }

    fn silence(id: u64, account: &str, sub: &str, restored: bool, at: i64) -> Signal {
        let (code, q) = if restored {
            (priority::CODE_COMMUNICATION_RESTORED, Qualifier::Restore)
        } else {
            (priority::CODE_COMMUNICATION_LOST, Qualifier::New)
        };
        let mut s = sig(id, Some(sub), code, q, at);
        s.protocol = priority::SUPERVISION_PROTOCOL.into();
        s.transport = Transport::Internal;
        s.account = account.into();
        s
    }

    fn voice_call(id: u64, sub: &str, at: i64) -> Signal {
        // The Signal says `new`; a voice call is a status whatever it says.
        let mut s = sig(id, Some(sub), priority::CODE_VOICE_CALL, Qualifier::New, at);
        s.protocol = priority::VOICE_PROTOCOL.into();
        s.transport = Transport::Internal;
        s
    }

    #[test]
    fn a_voice_call_opens_a_personal_call_or_joins_the_open_one_without_counting_a_press() {
        let (tr, _rec) = engine(2);
        // A unit that only calls: a level 1 Call of its own.
        let alone = opened(tr.ingest(&voice_call(1, "S-1", 0), Some("smoke_detector"), t(0)));
        let c = tr.get(alone).unwrap();
        assert_eq!(
            (c.priority, c.kind.as_str(), c.alarm_count),
            (Priority(1), priority::VOICE_CALL, 1)
        );
        // After a press: the call joins the press's Call, which stays a fall with one press
        // (with escalate_after 2, a second press would have escalated it).
        let press_call = opened(tr.ingest(&press(2, "S-2", "CID 103", 10), None, t(10)));
        assert_eq!(
            tr.ingest(&voice_call(3, "S-2", 12), None, t(12)),
            Ingested::Merged {
                call: press_call,
                escalated: false
            }
        );
        let c = tr.get(press_call).unwrap();
        assert_eq!(
            (c.priority, c.kind.as_str(), c.alarm_count),
            (Priority(1), "Fall", 1)
        );
        assert_eq!(c.timeline.len(), 2);
        // After a technical Call (low battery): the person on the line raises it to level 1.
        let battery = opened(tr.ingest(&press(4, "S-3", "CID 302", 20), None, t(20)));
        assert_eq!(tr.get(battery).unwrap().priority, Priority(3));
        assert_eq!(
            tr.ingest(&voice_call(5, "S-3", 21), None, t(21)),
            Ingested::Merged {
                call: battery,
                escalated: true
            }
        );
        let c = tr.get(battery).unwrap();
        assert_eq!(
            (c.priority, c.kind.as_str()),
            (Priority(1), priority::VOICE_CALL)
        );
    }

    #[test]
    fn silent_devices_are_level_3_calls_unless_in_an_incident() {
        let (tr, _rec) = engine(3);
        // One silent device: a technical Call, restored when it reports again.
        let id = opened(tr.ingest(&silence(1, "D1", "s1", false, 0), None, t(0)));
        let c = tr.get(id).unwrap();
        assert_eq!(
            (c.priority, c.kind.as_str()),
            (Priority(3), priority::COMMUNICATION_LOST)
        );
        assert_eq!(
            tr.ingest(&silence(2, "D1", "s1", true, 60), None, t(60)),
            Ingested::Restored(id)
        );
        assert!(tr.get(id).unwrap().restored);
        // Its queued Call is taken into an incident; an operator's is left alone.
        let other = opened(tr.ingest(&silence(3, "D2", "s2", false, 70), None, t(70)));
        let claimed = opened(tr.ingest(&silence(4, "D3", "s3", false, 70), None, t(70)));
        tr.claim(claimed, "olle", t(71)).unwrap();
        assert_eq!(
            tr.withdraw_into_incident("D2", Some("s2"), "attached to incident 1", t(80)),
            Some(other)
        );
        assert_eq!(
            tr.withdraw_into_incident("D3", Some("s3"), "x", t(80)),
            None
        );
        assert!(tr.get(other).is_none(), "closed");
        assert_eq!(tr.depth()[3], 1, "only the first device's Call still waits");
        // While the incident is open its devices' silences are its business.
        tr.join_incident(1, ["D2".to_string(), "D4".to_string()]);
        assert_eq!(
            tr.ingest(&silence(5, "D4", "s4", false, 90), None, t(90)),
            Ingested::Rule(rules::INCIDENT)
        );
        // A press of the same subscriber is still a Call.
        assert!(matches!(
            tr.ingest(&press(6, "s4", "CID 101", 91), None, t(91)),
            Ingested::Opened(_)
        ));
        tr.end_incident(1);
        assert_eq!(tr.incident_of("D4"), None);
        assert!(matches!(
            tr.ingest(&silence(7, "D2", "s2", false, 95), None, t(95)),
            Ingested::Opened(_)
        ));
    }

    fn press(id: u64, sub: &str, code: &str, at: i64) -> Signal {
        sig(id, Some(sub), code, Qualifier::New, at)
    }

    fn engine(n: u32) -> (Triage, Arc<Rec>) {
        let rec = Arc::new(Rec::default());
        let tr = Triage::new(
            TriageOptions { escalate_after: n },
            rec.clone(),
            CallMetrics::new(),
            1,
        );
        (tr, rec)
    }

    fn opened(i: Ingested) -> u64 {
        match i {
            Ingested::Opened(id) => id,
            other => panic!("not opened: {other:?}"),
        }
    }

    fn escalations(c: &Call) -> Vec<(u8, u8, String)> {
        c.timeline
            .iter()
            .filter_map(|e| match &e.what {
                TimelineEvent::Escalated { from, to, reason } => {
                    Some((from.0, to.0, reason.clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn opens_a_call_at_the_original_time() {
        let (tr, rec) = engine(3);
        let id = opened(tr.ingest(&press(7, "S-1", "CID 103", 5), None, t(500)));
        let c = tr.get(id).unwrap();
        assert_eq!(c.opened_at, t(5));
        assert_eq!(
            (c.priority, c.state, c.alarm_count, c.kind.as_str()),
            (Priority(1), CallState::Queued, 1, "Fall")
        );
        assert_eq!(c.subscriber.as_deref(), Some("S-1"));
        assert_eq!(c.timeline.len(), 1);
        let TimelineEvent::Signal {
            signal_id,
            code,
            qualifier,
            zone,
            ..
        } = &c.timeline[0].what
        else {
            panic!("{:?}", c.timeline[0]);
        };
        assert_eq!(
            (*signal_id, code.as_str(), qualifier.as_str(), *zone),
            (7, "CID 103", "new", Some(1))
        );
        assert_eq!(c.timeline[0].at, t(5));
        assert_eq!(rec.take(), vec![c]);
        assert_eq!(tr.depth(), [0, 1, 0, 0, 0]);
    }

    #[test]
    fn merges_and_escalates_after_n_presses() {
        let (tr, _) = engine(3);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        let merged = |sid, at| tr.ingest(&press(sid, "S-1", "CID 101", at), None, t(at));
        assert_eq!(
            merged(2, 1),
            Ingested::Merged {
                call: id,
                escalated: false
            }
        );
        assert_eq!(
            merged(3, 2),
            Ingested::Merged {
                call: id,
                escalated: false
            }
        );
        assert_eq!(tr.get(id).unwrap().priority, Priority(1));
        // The third merged press (alarm_count 4) moves it up.
        assert_eq!(
            merged(4, 3),
            Ingested::Merged {
                call: id,
                escalated: true
            }
        );
        let c = tr.get(id).unwrap();
        assert_eq!((c.priority, c.alarm_count), (Priority(0), 4));
        assert_eq!(escalations(&c), [(1, 0, REPEATED_PRESSES.to_string())]);
        assert_eq!(c.timeline.len(), 5);
        assert_eq!(tr.depth(), [1, 0, 0, 0, 0]);
        // At level 0 more presses only count.
        for s in 5..=10 {
            merged(s, s as i64);
        }
        let c = tr.get(id).unwrap();
        assert_eq!(
            (c.priority, c.alarm_count, escalations(&c).len()),
            (Priority(0), 10, 1)
        );
        assert_eq!(tr.open_calls().len(), 1);
    }

    #[test]
    fn escalate_after_one_moves_every_press() {
        let (tr, _) = engine(1);
        let id = opened(tr.ingest(&press(1, "S-1", "SIA NA", 0), None, t(0)));
        assert_eq!(tr.get(id).unwrap().priority, Priority(2));
        tr.ingest(&press(2, "S-1", "SIA NA", 1), None, t(1));
        assert_eq!(tr.get(id).unwrap().priority, Priority(1));
        tr.ingest(&press(3, "S-1", "SIA NA", 2), None, t(2));
        assert_eq!(tr.get(id).unwrap().priority, Priority(0));
    }

    #[test]
    fn more_urgent_signal_escalates_at_once() {
        let (tr, _) = engine(3);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        let r = tr.ingest(&press(2, "S-1", "SIA FA", 1), None, t(1));
        assert_eq!(
            r,
            Ingested::Merged {
                call: id,
                escalated: true
            }
        );
        let c = tr.get(id).unwrap();
        assert_eq!(
            (c.priority, c.kind.as_str(), c.alarm_count),
            (Priority(0), "Fire", 2)
        );
        assert_eq!(escalations(&c), [(1, 0, MORE_URGENT_SIGNAL.to_string())]);
        // A less urgent Signal does not lower it.
        tr.ingest(&press(3, "S-1", "CID 302", 2), None, t(2));
        let c = tr.get(id).unwrap();
        assert_eq!((c.priority, c.alarm_count), (Priority(0), 2));
        assert_eq!(tr.depth(), [1, 0, 0, 0, 0]);
    }

    #[test]
    fn escalated_call_goes_to_the_head_of_its_new_level() {
        let (tr, _) = engine(1);
        let fire = opened(tr.ingest(&press(1, "S-1", "SIA FA", 0), None, t(0)));
        let care = opened(tr.ingest(&press(2, "S-2", "SIA NA", 1), None, t(1)));
        let press2 = opened(tr.ingest(&press(3, "S-3", "CID 101", 2), None, t(2)));
        // care: 2 -> 1, at the head of level 1 (before the older pendant press).
        tr.ingest(&press(4, "S-2", "SIA NA", 3), None, t(3));
        let order: Vec<u64> = tr.open_calls().iter().map(|c| c.id).collect();
        assert_eq!(order, [fire, care, press2]);
        let taken: Vec<u64> = std::iter::from_fn(|| tr.next("ola", t(10)).map(|c| c.id)).collect();
        assert_eq!(taken, [fire, care, press2]);
    }

    #[test]
    fn restore_attaches_and_does_not_close() {
        let (tr, _) = engine(3);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        // A mains restore is only shown.
        let r = tr.ingest(
            &sig(2, Some("S-1"), "CID 301", Qualifier::Restore, 1),
            None,
            t(1),
        );
        assert_eq!(r, Ingested::Restored(id));
        assert!(!tr.get(id).unwrap().restored);
        let r = tr.ingest(
            &sig(3, Some("S-1"), "SIA QH", Qualifier::Restore, 2),
            None,
            t(2),
        );
        assert_eq!(r, Ingested::Restored(id));
        let c = tr.get(id).unwrap();
        assert!(c.restored);
        assert_eq!(
            (c.state, c.alarm_count, c.priority),
            (CallState::Queued, 1, Priority(1))
        );
        assert!(matches!(
            c.timeline.last().unwrap().what,
            TimelineEvent::Restored
        ));
        assert_eq!(c.timeline.len(), 4);
        assert_eq!(tr.depth(), [0, 1, 0, 0, 0]);
        // A new press: active again.
        tr.ingest(&press(4, "S-1", "CID 101", 3), None, t(3));
        assert!(!tr.get(id).unwrap().restored);
    }

    #[test]
    fn rules_without_an_open_call() {
        let (tr, rec) = engine(3);
        let r = tr.ingest(
            &sig(1, Some("S-1"), "CID 101", Qualifier::Restore, 0),
            None,
            t(0),
        );
        assert_eq!(r, Ingested::Rule(rules::RESTORE));
        let r = tr.ingest(&press(2, "S-1", "CID 602", 1), None, t(1));
        assert_eq!(r, Ingested::Rule(rules::PERIODIC_TEST));
        let r = tr.ingest(
            &sig(3, Some("S-1"), "CID 302", Qualifier::Status, 2),
            None,
            t(2),
        );
        assert_eq!(r, Ingested::Rule(rules::STATUS));
        let r = tr.ingest(&press(4, "S-1", "SIA OP", 3), None, t(3));
        assert_eq!(r, Ingested::Rule(rules::OTHER));
        assert!(tr.open_calls().is_empty());
        assert!(rec.take().is_empty());
        // With an open Call a periodic test is shown in its timeline.
        let id = opened(tr.ingest(&press(5, "S-1", "CID 101", 4), None, t(4)));
        let r = tr.ingest(&press(6, "S-1", "CID 602", 5), None, t(5));
        assert_eq!(
            r,
            Ingested::Merged {
                call: id,
                escalated: false
            }
        );
        let c = tr.get(id).unwrap();
        assert_eq!((c.alarm_count, c.timeline.len()), (1, 2));
    }

    #[test]
    fn unknown_device_opens_level_3_and_merges_by_account() {
        let (tr, _) = engine(3);
        let mut s = sig(1, None, "CID 602", Qualifier::New, 0);
        s.flags.unknown_device = true;
        let id = opened(tr.ingest(&s, None, t(0)));
        let c = tr.get(id).unwrap();
        assert_eq!(
            (c.priority, c.kind.as_str()),
            (Priority(3), "Unknown device")
        );
        assert_eq!(c.account, "A1");
        let mut s = sig(2, None, "", Qualifier::New, 1);
        s.events.clear();
        s.flags.undecryptable = true;
        assert_eq!(
            tr.ingest(&s, None, t(1)),
            Ingested::Merged {
                call: id,
                escalated: false
            }
        );
        let c = tr.get(id).unwrap();
        let TimelineEvent::Signal { code, .. } = &c.timeline[1].what else {
            panic!()
        };
        assert_eq!(code, "undecryptable");
        assert_eq!(c.alarm_count, 1);
        // Another account: its own Call.
        let mut s = sig(3, None, "", Qualifier::New, 2);
        s.events.clear();
        s.account = "B2".into();
        s.flags.bad_payload = true;
        let other = opened(tr.ingest(&s, None, t(2)));
        assert_eq!(tr.get(other).unwrap().kind, "Unreadable alarm");
        assert_eq!(tr.depth(), [0, 0, 0, 2, 0]);
    }

    #[test]
    fn replay_of_the_same_signal_is_ignored() {
        let (tr, rec) = engine(1);
        let id = opened(tr.ingest(&press(10, "S-1", "CID 101", 0), None, t(0)));
        tr.ingest(&press(11, "S-1", "CID 101", 1), None, t(1));
        rec.take();
        let before = tr.get(id).unwrap();
        for sid in [10, 11] {
            let r = tr.ingest(&press(sid, "S-1", "CID 101", 1), None, t(99));
            assert_eq!(
                r,
                Ingested::Merged {
                    call: id,
                    escalated: false
                }
            );
        }
        assert_eq!(tr.get(id).unwrap(), before);
        assert!(rec.take().is_empty(), "no change reported");
    }

    #[test]
    fn release_keeps_opened_at_and_goes_before_newer() {
        let (tr, _) = engine(3);
        let old = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        let newer = opened(tr.ingest(&press(2, "S-2", "CID 101", 10), None, t(10)));
        let c = tr.next("ola", t(20)).unwrap();
        assert_eq!(c.id, old);
        let newest = opened(tr.ingest(&press(3, "S-3", "CID 101", 30), None, t(30)));
        let r = tr.release(old, "ola", t(40)).unwrap();
        assert_eq!(
            (r.state, r.owner.as_deref(), r.opened_at),
            (CallState::Queued, None, t(0))
        );
        assert!(matches!(
            r.timeline.last().unwrap().what,
            TimelineEvent::Released
        ));
        assert_eq!(tr.depth(), [0, 3, 0, 0, 0]);
        let ids: Vec<u64> = tr.open_calls().iter().map(|c| c.id).collect();
        assert_eq!(ids, [old, newer, newest]);
        let c = tr.next("åsa", t(50)).unwrap();
        assert_eq!((c.id, c.owner.as_deref()), (old, Some("åsa")));
        // Answered once, by the first claim.
        assert_eq!(c.answered_at, Some(t(20)));
        assert_eq!(tr.next("åsa", t(51)).unwrap().id, newer);
        assert_eq!(tr.next("åsa", t(52)).unwrap().id, newest);
        assert!(tr.next("åsa", t(53)).is_none());
    }

    #[test]
    fn next_takes_levels_in_order_oldest_first() {
        let (tr, _) = engine(3);
        let tech = opened(tr.ingest(&press(1, "S-1", "CID 302", 0), None, t(0)));
        let care = opened(tr.ingest(&press(2, "S-2", "CID 654", 1), None, t(1)));
        let p1 = opened(tr.ingest(&press(3, "S-3", "CID 101", 2), None, t(2)));
        let fire = opened(tr.ingest(&press(4, "S-4", "CID 111", 3), None, t(3)));
        let p2 = opened(tr.ingest(&press(5, "S-5", "CID 103", 4), None, t(4)));
        assert_eq!(tr.depth(), [1, 2, 1, 1, 0]);
        let taken: Vec<u64> = std::iter::from_fn(|| tr.next("ola", t(9)).map(|c| c.id)).collect();
        assert_eq!(taken, [fire, p1, p2, care, tech]);
        assert_eq!(tr.depth(), [0; Priority::LEVELS]);
        assert_eq!(tr.open_calls().len(), 5);
    }

    #[test]
    fn close_removes_and_a_new_signal_opens_a_new_call() {
        let (tr, rec) = engine(3);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        assert_eq!(
            tr.close(id, "ola", &press_by_mistake(), t(1)),
            Err(CallError::NotOwner)
        );
        tr.claim(id, "ola", t(2)).unwrap();
        let c = tr
            .close(
                id,
                "ola",
                &closing::Closing::new(Outcome::HelpNotNeeded, "  all well  "),
                t(3),
            )
            .unwrap();
        assert_eq!(
            (c.state, c.closed_at, c.outcome, c.owner.as_deref()),
            (
                CallState::Closed,
                Some(t(3)),
                Some(Outcome::HelpNotNeeded),
                Some("ola")
            )
        );
        assert!(matches!(
            &c.timeline.last().unwrap().what,
            TimelineEvent::Closed { note, .. } if note == "all well"
        ));
        assert_eq!(rec.take().last().unwrap().state, CallState::Closed);
        assert!(tr.get(id).is_none());
        assert!(tr.open_calls().is_empty());
        assert_eq!(tr.claim(id, "ola", t(4)), Err(CallError::NotFound));
        assert_eq!(tr.note(id, "ola", "x", t(4)), Err(CallError::NotFound));
        let id2 = opened(tr.ingest(&press(2, "S-1", "CID 101", 5), None, t(5)));
        assert_ne!(id, id2);
        // Restore after close: a rule, no Call.
        tr.claim(id2, "ola", t(6)).unwrap();
        tr.close(id2, "ola", &press_by_mistake(), t(7)).unwrap();
        let r = tr.ingest(
            &sig(3, Some("S-1"), "CID 101", Qualifier::Restore, 8),
            None,
            t(8),
        );
        assert_eq!(r, Ingested::Rule(rules::RESTORE));
    }

    #[test]
    fn claim_by_another_user_is_owned_by() {
        let (tr, rec) = engine(3);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        rec.take();
        let c = tr.claim(id, "Åsa Öberg", t(30)).unwrap();
        assert_eq!(
            (c.state, c.owner.as_deref(), c.answered_at),
            (CallState::Claimed, Some("Åsa Öberg"), Some(t(30)))
        );
        assert_eq!(rec.take().len(), 1);
        // Idempotent for the owner: no new line, no change reported.
        let again = tr.claim(id, "Åsa Öberg", t(40)).unwrap();
        assert_eq!(again, c);
        assert!(rec.take().is_empty());
        assert_eq!(
            tr.claim(id, "ola", t(41)),
            Err(CallError::OwnedBy("Åsa Öberg".into()))
        );
        assert!(tr.next("ola", t(42)).is_none());
        assert_eq!(tr.release(id, "ola", t(43)), Err(CallError::NotOwner));
        assert_eq!(tr.note(id, "nobody", "hi", t(43)), Err(CallError::NotOwner));
        assert_eq!(tr.claim(999, "ola", t(43)), Err(CallError::NotFound));
        assert_eq!(tr.depth(), [0; Priority::LEVELS]);
    }

    #[test]
    fn owner_actions_and_text_limits() {
        let (tr, _) = engine(3);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        assert_eq!(tr.note(id, "ola", "hej", t(1)), Err(CallError::NotOwner));
        tr.claim(id, "ola", t(1)).unwrap();
        assert!(matches!(
            tr.note(id, "ola", "   ", t(2)),
            Err(CallError::Invalid(_))
        ));
        let long = "ö".repeat(MAX_TEXT_CHARS + 1);
        assert!(matches!(
            tr.note(id, "ola", &long, t(2)),
            Err(CallError::Invalid(_))
        ));
        assert!(
            tr.note(id, "ola", &long[2..], t(2)).is_ok(),
            "4000 chars fit"
        );
        let c = tr.note(id, "ola", "  Talade med Åsa  ", t(3)).unwrap();
        assert!(matches!(
            &c.timeline.last().unwrap().what,
            TimelineEvent::Note { text } if text == "Talade med Åsa"
        ));
        assert_eq!(c.timeline.last().unwrap().user.as_deref(), Some("ola"));
        let c = tr
            .phone(id, "ola", PhoneParty::Relative, None, "", t(4))
            .unwrap();
        assert!(matches!(
            c.timeline.last().unwrap().what,
            TimelineEvent::PhoneCall {
                to: PhoneParty::Relative,
                ..
            }
        ));
        assert!(matches!(
            tr.close(
                id,
                "ola",
                &closing::Closing::new(Outcome::PatrolNeeded, &long),
                t(5)
            ),
            Err(CallError::Invalid(_))
        ));
        assert_eq!(tr.get(id).unwrap().state, CallState::Claimed);
    }

    #[test]
    fn merged_into_a_claimed_call_stays_with_its_owner() {
        let (tr, rec) = engine(3);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        tr.next("ola", t(5)).unwrap();
        let r = tr.ingest(&press(2, "S-1", "CID 111", 6), None, t(6));
        assert_eq!(
            r,
            Ingested::Merged {
                call: id,
                escalated: true
            }
        );
        let c = tr.get(id).unwrap();
        assert_eq!(
            (c.state, c.owner.as_deref(), c.priority),
            (CallState::Claimed, Some("ola"), Priority(0))
        );
        assert_eq!(tr.depth(), [0; Priority::LEVELS]);
        assert!(tr.next("åsa", t(7)).is_none());
        // Released: back at its new level, at the head.
        tr.release(id, "ola", t(8)).unwrap();
        assert_eq!(tr.depth(), [1, 0, 0, 0, 0]);
        assert_eq!(rec.take().last().unwrap().state, CallState::Queued);
    }

    #[test]
    fn restore_rebuilds_queue_order_and_claims() {
        let (tr, _) = engine(3);
        for (sid, sub, code, at) in [
            (1, "S-1", "CID 101", 50),
            (2, "S-2", "CID 302", 10),
            (3, "S-3", "CID 101", 20),
            (4, "S-4", "CID 111", 90),
            (5, "S-5", "CID 103", 5),
        ] {
            tr.ingest(&press(sid, sub, code, at), None, t(at));
        }
        let claimed = tr.claim(3, "ola", t(100)).unwrap();
        let mut stored = tr.open_calls();
        stored.reverse();
        let (tr2, rec2) = engine(3);
        tr2.restore(stored);
        assert!(rec2.take().is_empty(), "restore does not call the sink");
        assert_eq!(tr2.depth(), [1, 2, 0, 1, 0]);
        assert_eq!(tr2.get(3).unwrap(), claimed);
        assert_eq!(
            tr2.claim(3, "åsa", t(101)),
            Err(CallError::OwnedBy("ola".into()))
        );
        let taken: Vec<u64> =
            std::iter::from_fn(|| tr2.next("åsa", t(102)).map(|c| c.id)).collect();
        // Level 0, then level 1 by opened_at (5 before 1), then level 3.
        assert_eq!(taken, [4, 5, 1, 2]);
        // Merges find the restored Calls; new ids continue after the restored ones.
        let r = tr2.ingest(&press(6, "S-1", "CID 101", 200), None, t(200));
        assert_eq!(
            r,
            Ingested::Merged {
                call: 1,
                escalated: false
            }
        );
        assert_eq!(
            tr2.ingest(&press(7, "S-9", "CID 101", 201), None, t(201)),
            Ingested::Opened(6)
        );
        // Replay of a Signal already in a restored Call.
        let r = tr2.ingest(&press(3, "S-3", "CID 101", 20), None, t(300));
        assert_eq!(
            r,
            Ingested::Merged {
                call: 3,
                escalated: false
            }
        );
        assert_eq!(tr2.get(3).unwrap().timeline.len(), claimed.timeline.len());
    }

    #[test]
    fn timeline_signal_lines_are_capped() {
        let opts = TriageOptions {
            escalate_after: 1_000_000,
        };
        let tr = Triage::new(opts, Arc::new(NullSink), CallMetrics::new(), 1);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        for sid in 2..=1100 {
            tr.ingest(&press(sid, "S-1", "CID 101", sid as i64), None, t(0));
        }
        let c = tr.get(id).unwrap();
        assert_eq!(c.alarm_count, 1100);
        assert_eq!(c.timeline.len(), MAX_SIGNAL_ENTRIES);
        // A replay beyond the cap is still recognised.
        tr.ingest(&press(1050, "S-1", "CID 101", 1050), None, t(0));
        assert_eq!(tr.get(id).unwrap().alarm_count, 1100);
        // Also after a restart: the Call as stored knows its last Signal, past the cap.
        let stored = tr.open_calls();
        let tr = Triage::new(opts, Arc::new(NullSink), CallMetrics::new(), 1);
        tr.restore(stored);
        for sid in 1090..=1100 {
            tr.ingest(&press(sid, "S-1", "CID 101", sid as i64), None, t(0));
        }
        assert_eq!(
            tr.get(id).unwrap().alarm_count,
            1100,
            "a replay counts nothing twice"
        );
        tr.ingest(&press(1101, "S-1", "CID 101", 1101), None, t(0));
        assert_eq!(tr.get(id).unwrap().alarm_count, 1101);
    }

    #[test]
    fn sink_sees_every_change_in_order() {
        let (tr, rec) = engine(2);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        tr.ingest(&press(2, "S-1", "CID 101", 1), None, t(1));
        tr.ingest(&press(3, "S-1", "CID 101", 2), None, t(2));
        tr.claim(id, "ola", t(3)).unwrap();
        tr.note(id, "ola", "n", t(4)).unwrap();
        tr.release(id, "ola", t(5)).unwrap();
        tr.next("ola", t(6)).unwrap();
        // Raised to level 0 by the presses: it closes with an emergency service.
        tr.close(
            id,
            "ola",
            &closing::Closing::new(Outcome::AmbulanceCalled, ""),
            t(7),
        )
        .unwrap();
        let seen: Vec<(usize, CallState, u8)> = rec
            .take()
            .iter()
            .map(|c| (c.timeline.len(), c.state, c.priority.0))
            .collect();
        use CallState::*;
        assert_eq!(
            seen,
            [
                (1, Queued, 1),
                (2, Queued, 1),
                (4, Queued, 0),
                (5, Claimed, 0),
                (6, Claimed, 0),
                (7, Queued, 0),
                (8, Claimed, 0),
                (9, Closed, 0),
            ]
        );
    }

    #[test]
    fn the_open_call_of_a_signal_is_found_past_the_timeline_cap() {
        let (tr, _) = engine(3);
        let n = MAX_SIGNAL_ENTRIES as u64 + 50;
        for i in 1..=n {
            tr.ingest(&press(i, "S-1", "CID 101", i as i64), None, t(i as i64));
        }
        let (call, state) = tr.open_call_with_signal(Some("S-1"), "1234", n).unwrap();
        assert_eq!(state, CallState::Queued);
        assert_eq!(
            tr.open_call_with_signal(Some("S-1"), "1234", 1),
            Some((call, state))
        );
        assert_eq!(tr.open_call_with_signal(Some("S-1"), "1234", n + 1), None);
        assert_eq!(tr.open_call_with_signal(Some("S-2"), "1234", n), None);
    }

    /// A closing "accidental press", with its reason.
    fn press_by_mistake() -> closing::Closing<'static> {
        closing::Closing::new(Outcome::AccidentalPress, "pressed by mistake")
    }

    /// A closing "fire brigade called" (allowed for any Call).
    fn fire_brigade() -> closing::Closing<'static> {
        closing::Closing::new(Outcome::FireBrigadeCalled, "")
    }

    /// The line of a patrol offered the Call.
    fn offered() -> TimelineEvent {
        TimelineEvent::Dispatch {
            dispatch: 1,
            patrol: "p1".into(),
            patrol_name: "Centrum 1".into(),
            step: crate::model::DispatchStep::Offered,
            detail: String::new(),
        }
    }

    /// Opens a pendant Call for `sub` at `at`, claims it, dispatches a patrol and closes it
    /// "patrol needed"; returns the closed Call as the store holds it.
    fn closed_call(tr: &Triage, sid: u64, sub: &str, at: i64) -> Call {
        let id = opened(tr.ingest(&press(sid, sub, "CID 101", at), None, t(at)));
        tr.claim(id, "ola", t(at + 1)).unwrap();
        tr.record(id, Some("ola"), offered(), t(at + 1)).unwrap();
        tr.close(
            id,
            "ola",
            &closing::Closing::new(Outcome::PatrolNeeded, ""),
            t(at + 2),
        )
        .unwrap()
    }

    #[test]
    fn a_reopened_call_waits_at_the_head_of_its_level() {
        let (tr, rec) = engine(3);
        let closed = closed_call(&tr, 1, "S-1", 0);
        let id = closed.id;
        // Two Calls of the same level wait, both older than the reopening (one is older
        // than the reopened Call itself), and a more urgent one.
        let older = opened(tr.ingest(&press(2, "S-2", "CID 101", -50), None, t(-50)));
        let newer = opened(tr.ingest(&press(3, "S-3", "CID 101", 10), None, t(10)));
        let fire = opened(tr.ingest(&press(4, "S-4", "CID 111", 20), None, t(20)));
        rec.take();
        let c = tr
            .reopen(closed.clone(), "no patrol left", t(200))
            .expect("reopened");
        assert_eq!(c.id, id);
        assert_eq!(
            (c.state, c.owner.as_deref(), c.closed_at, c.outcome),
            (CallState::Queued, None, None, None)
        );
        assert_eq!(c.answered_at, closed.answered_at, "the answer time stands");
        assert!(matches!(
            &c.timeline.last().unwrap().what,
            TimelineEvent::Reopened { reason } if reason == "no patrol left"
        ));
        assert_eq!(c.timeline.len(), closed.timeline.len() + 1);
        // The consoles and the store see it come back.
        assert_eq!(rec.take(), vec![c.clone()]);
        assert_eq!(tr.get(id), Some(c.clone()));
        assert_eq!(tr.depth()[1], 3);
        // Its level first, the head lane before older Calls; the fire before all.
        let order: Vec<u64> = tr.open_calls().iter().map(|c| c.id).collect();
        assert_eq!(order, [fire, id, older, newer]);
        let taken: Vec<u64> = std::iter::from_fn(|| tr.next("åsa", t(300)).map(|c| c.id)).collect();
        assert_eq!(taken, [fire, id, older, newer]);
        // Reopening an open Call changes nothing.
        assert_eq!(tr.reopen(closed, "again", t(400)), None);
        assert_eq!(tr.get(id).unwrap().owner.as_deref(), Some("åsa"));
    }

    #[test]
    fn a_reopened_call_has_one_owner_takes_merges_and_closes_again() {
        let (tr, _) = engine(3);
        let closed = closed_call(&tr, 1, "S-1", 0);
        let id = tr.reopen(closed, "no patrol left", t(100)).unwrap().id;
        // Taken by compare-and-swap like any Call: one owner.
        tr.claim(id, "ola", t(101)).unwrap();
        assert_eq!(
            tr.claim(id, "åsa", t(101)),
            Err(CallError::OwnedBy("ola".into()))
        );
        assert_eq!(tr.next("åsa", t(102)), None);
        // A new press of the person merges into it (the Call is the person's open one).
        assert_eq!(
            tr.ingest(&press(9, "S-1", "CID 101", 103), None, t(103)),
            Ingested::Merged {
                call: id,
                escalated: false
            }
        );
        // Closed again, it leaves the open set; a new press opens a new Call.
        tr.close(
            id,
            "ola",
            &closing::Closing::new(Outcome::PatrolNeeded, ""),
            t(104),
        )
        .unwrap();
        assert!(tr.get(id).is_none());
        assert_ne!(
            opened(tr.ingest(&press(10, "S-1", "CID 101", 105), None, t(105))),
            id
        );
    }

    #[test]
    fn a_reopened_call_leaves_a_newer_open_call_of_the_person_its_merges() {
        let (tr, _) = engine(3);
        let closed = closed_call(&tr, 1, "S-1", 0);
        // The person pressed again after the close: a new Call is open.
        let newer = opened(tr.ingest(&press(2, "S-1", "CID 101", 50), None, t(50)));
        let id = tr.reopen(closed, "no patrol left", t(100)).unwrap().id;
        assert_ne!(id, newer);
        assert_eq!(tr.open_calls().len(), 2);
        assert_eq!(
            tr.ingest(&press(3, "S-1", "CID 101", 110), None, t(110)),
            Ingested::Merged {
                call: newer,
                escalated: false
            }
        );
        // New ids go on after every Call reopened.
        assert!(opened(tr.ingest(&press(4, "S-7", "CID 101", 120), None, t(120))) > newer);
    }

    #[test]
    fn a_reopened_call_is_at_the_head_of_its_level_after_a_restart() {
        let (tr, _) = engine(3);
        let closed = closed_call(&tr, 1, "S-1", 0);
        let older = opened(tr.ingest(&press(2, "S-2", "CID 101", -50), None, t(-50)));
        let id = tr.reopen(closed, "no patrol left", t(100)).unwrap().id;
        // A released Call keeps the order by age after a restart, as before.
        let released = opened(tr.ingest(&press(3, "S-3", "CID 101", -60), None, t(-60)));
        tr.claim(released, "ola", t(110)).unwrap();
        tr.release(released, "ola", t(111)).unwrap();
        let stored = tr.open_calls();
        let (tr2, _) = engine(3);
        tr2.restore(stored);
        let taken: Vec<u64> =
            std::iter::from_fn(|| tr2.next("åsa", t(200)).map(|c| c.id)).collect();
        assert_eq!(taken, [id, released, older]);
        // Once taken and released again it is an ordinary waiting Call.
        let mut c = tr2.get(id).unwrap();
        c.timeline
            .push(entry(t(300), Some("åsa"), TimelineEvent::Released));
        c.state = CallState::Queued;
        assert!(!reopened_waiting(&c));
    }

    #[test]
    fn concurrent_operators_never_share_a_call() {
        const CALLS: u64 = 400;
        let (tr, _) = engine(3);
        let tr = Arc::new(tr);
        for i in 1..=CALLS {
            let sub = format!("S-{i}");
            let code = ["CID 111", "CID 101", "CID 654", "CID 302"][(i % 4) as usize];
            tr.ingest(&press(i, &sub, code, i as i64), None, t(i as i64));
        }
        let handles: Vec<_> = (0..8)
            .map(|n| {
                let tr = tr.clone();
                std::thread::spawn(move || {
                    let user = format!("op{n}");
                    let mut closed = Vec::new();
                    let mut k = n as u64;
                    loop {
                        k = k
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let got = if k % 3 == 0 {
                            tr.claim(1 + (k >> 33) % CALLS, &user, t(1000)).ok()
                        } else {
                            tr.next(&user, t(1000))
                        };
                        match got {
                            Some(c) => {
                                assert_eq!(c.owner.as_deref(), Some(user.as_str()));
                                if (k >> 20) % 4 == 0 {
                                    tr.release(c.id, &user, t(1001)).unwrap();
                                } else {
                                    tr.close(c.id, &user, &fire_brigade(), t(1002)).unwrap();
                                    closed.push(c.id);
                                }
                            }
                            None if tr.depth().iter().sum::<usize>() == 0 => break,
                            None => {}
                        }
                    }
                    closed
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=CALLS).collect::<Vec<_>>(),
            "each Call closed exactly once"
        );
        assert!(tr.open_calls().is_empty());
    }

    #[test]
    fn reopened_calls_raced_by_operators_still_have_one_owner_each() {
        const CALLS: u64 = 200;
        let (tr, _) = engine(3);
        let tr = Arc::new(tr);
        // Every Call closed once "patrol needed", kept as the store would.
        let closed: Vec<Call> = (1..=CALLS)
            .map(|i| closed_call(&tr, i, &format!("S-{i}"), i as i64))
            .collect();
        let reopener = {
            let tr = tr.clone();
            std::thread::spawn(move || {
                closed
                    .into_iter()
                    .filter(|c| tr.reopen(c.clone(), "no patrol left", t(500)).is_some())
                    .count()
            })
        };
        let operators: Vec<_> = (0..6)
            .map(|n| {
                let tr = tr.clone();
                std::thread::spawn(move || {
                    let user = format!("op{n}");
                    let mut taken = Vec::new();
                    for _ in 0..20_000 {
                        if let Some(c) = tr.next(&user, t(600)) {
                            assert_eq!(c.owner.as_deref(), Some(user.as_str()));
                            tr.close(
                                c.id,
                                &user,
                                &closing::Closing::new(Outcome::PatrolNeeded, ""),
                                t(601),
                            )
                            .unwrap();
                            taken.push(c.id);
                        } else if taken.len() as u64 == CALLS {
                            break;
                        }
                    }
                    taken
                })
            })
            .collect();
        let reopened = reopener.join().unwrap();
        assert_eq!(reopened as u64, CALLS, "each closed Call comes back once");
        // Whatever the operators have not taken yet is still waiting, once.
        let mut all: Vec<u64> = operators
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.extend(std::iter::from_fn(|| tr.next("last", t(700)).map(|c| c.id)));
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=CALLS).collect::<Vec<_>>(),
            "each reopened Call taken by exactly one operator"
        );
        assert_eq!(tr.depth().iter().sum::<usize>(), 0);
    }

    #[test]
    fn an_owner_hands_a_call_over_with_a_note_and_the_receiver_owns_it() {
        let (tr, _) = engine(3);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        let other = opened(tr.ingest(&press(2, "S-2", "CID 101", 1), None, t(1)));
        assert_eq!(tr.next("ola", t(10)).unwrap().id, id);
        // Only the owner hands over, only with a note, only to someone else.
        assert_eq!(
            tr.hand_over(id, "åsa", "bo", "x", t(20)),
            Err(CallError::NotOwner)
        );
        assert!(matches!(
            tr.hand_over(id, "ola", "åsa", "  ", t(20)),
            Err(CallError::Invalid(_))
        ));
        assert!(matches!(
            tr.hand_over(id, "ola", "ola", "x", t(20)),
            Err(CallError::Invalid(_))
        ));
        assert_eq!(
            tr.hand_over(other, "ola", "åsa", "x", t(20)),
            Err(CallError::NotOwner),
            "a waiting Call is nobody's to hand over"
        );
        let c = tr
            .hand_over(
                id,
                "ola",
                "åsa",
                " Väntar på att dottern ringer tillbaka ",
                t(30),
            )
            .unwrap();
        assert_eq!(
            (c.state, c.owner.as_deref()),
            (CallState::Claimed, Some("åsa"))
        );
        assert_eq!(
            c.answered_at,
            Some(t(10)),
            "answered once, by the first claim"
        );
        let last = c.timeline.last().unwrap();
        assert_eq!((last.at, last.user.as_deref()), (t(30), Some("ola")));
        assert_eq!(
            last.what,
            TimelineEvent::HandedOver {
                from: "ola".into(),
                to: "åsa".into(),
                note: "Väntar på att dottern ringer tillbaka".into(),
            }
        );
        // The receiver acts on it, the giver no longer can; nothing went back in the queue.
        assert_eq!(tr.note(id, "ola", "x", t(31)), Err(CallError::NotOwner));
        assert!(tr.note(id, "åsa", "Ringde dottern", t(32)).is_ok());
        assert_eq!(tr.depth(), [0, 1, 0, 0, 0]);
        assert_eq!(
            tr.claim(id, "bo", t(33)),
            Err(CallError::OwnedBy("åsa".into()))
        );
        let mine: Vec<u64> = tr.owned_by("åsa").iter().map(|c| c.id).collect();
        assert_eq!(mine, [id]);
        assert!(tr.owned_by("ola").is_empty());
        assert_eq!(
            tr.owners().into_iter().collect::<Vec<_>>(),
            [("åsa".into(), 1)]
        );
        assert!(
            tr.close(
                id,
                "åsa",
                &closing::Closing::new(Outcome::AccidentalPress, "pressed by mistake"),
                t(40),
            )
            .is_ok()
        );
        assert!(tr.owners().is_empty());
    }

    #[test]
    fn a_supervisor_takes_over_or_reassigns_any_owned_call() {
        let (tr, _) = engine(3);
        let id = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        let waiting = opened(tr.ingest(&press(2, "S-2", "CID 101", 1), None, t(1)));
        tr.claim(id, "ola", t(5)).unwrap();
        // Take over: to oneself, the note may be empty.
        let c = tr.reassign(id, "sara", "sara", "", t(10)).unwrap();
        assert_eq!(c.owner.as_deref(), Some("sara"));
        assert_eq!(c.timeline.last().unwrap().user.as_deref(), Some("sara"));
        assert_eq!(
            c.timeline.last().unwrap().what,
            TimelineEvent::HandedOver {
                from: "ola".into(),
                to: "sara".into(),
                note: String::new()
            }
        );
        // Reassign to another operator.
        let c = tr.reassign(id, "sara", "bo", "Bo tar det", t(20)).unwrap();
        assert_eq!(c.owner.as_deref(), Some("bo"));
        assert!(matches!(
            &c.timeline.last().unwrap().what,
            TimelineEvent::HandedOver { from, to, .. } if from == "sara" && to == "bo"
        ));
        assert!(matches!(
            tr.reassign(id, "sara", "bo", "", t(21)),
            Err(CallError::Invalid(_))
        ));
        assert_eq!(tr.release(id, "ola", t(22)), Err(CallError::NotOwner));
        // A waiting Call is claimed, not reassigned; a closed one is gone.
        assert_eq!(
            tr.reassign(waiting, "sara", "bo", "", t(23)),
            Err(CallError::NotOwner)
        );
        assert_eq!(tr.depth(), [0, 1, 0, 0, 0]);
        tr.close(
            id,
            "bo",
            &closing::Closing::new(Outcome::AccidentalPress, "pressed by mistake"),
            t(30),
        )
        .unwrap();
        assert_eq!(
            tr.reassign(id, "sara", "sara", "", t(31)),
            Err(CallError::NotFound)
        );
    }

    #[test]
    fn a_call_given_back_waits_at_the_head_of_its_level_with_its_age() {
        let (tr, _) = engine(3);
        let old = opened(tr.ingest(&press(1, "S-1", "CID 101", 0), None, t(0)));
        let newer = opened(tr.ingest(&press(2, "S-2", "CID 101", 10), None, t(10)));
        assert_eq!(tr.next("ola", t(20)).unwrap().id, old);
        assert_eq!(
            tr.give_back(old, "åsa", ReturnReason::SessionEnded, t(30)),
            Err(CallError::NotOwner)
        );
        let c = tr
            .give_back(old, "ola", ReturnReason::SessionEnded, t(30))
            .unwrap();
        assert_eq!(
            (c.state, c.owner.as_deref(), c.opened_at),
            (CallState::Queued, None, t(0))
        );
        let last = c.timeline.last().unwrap();
        assert_eq!((last.at, last.user.as_deref()), (t(30), None));
        assert_eq!(
            last.what,
            TimelineEvent::Returned {
                owner: "ola".into(),
                reason: ReturnReason::SessionEnded
            }
        );
        assert_eq!(
            tr.give_back(old, "ola", ReturnReason::SessionEnded, t(31)),
            Err(CallError::NotOwner),
            "once"
        );
        assert_eq!(tr.depth(), [0, 2, 0, 0, 0]);
        assert_eq!(
            tr.next("bo", t(40)).unwrap().id,
            old,
            "before the newer Call"
        );
        assert_eq!(tr.next("bo", t(41)).unwrap().id, newer);
    }
}
