//! The Call service around triage: it feeds committed Signals into [`Triage`], writes every
//! change of a Call to the store (one writer thread, group commits like the journal's), pushes
//! changes to the live feed of the consoles, and computes the day's answer figures.
//!
//! Crash safety: the store holds the open Calls and a cursor (the last journal id triaged),
//! written together in one atomic batch. At start the open Calls are loaded and every Signal
//! after the cursor is triaged again from the journal, so a Signal that was ACKed (durable in
//! the journal) always reaches a Call or a rule, even if vakt died before triage saw it.
//!
//! What the consoles are told, and the views they are told it in, are in [`live`]. Dispatches
//! to patrols and their clocks (receipt, arrival SLA) are in `crate::dispatch::sla`.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::model::{
    AuditEntry, Call, CallDirection, CallState, Signal, TimelineEntry, TimelineEvent,
};
use crate::store::{CallChange, JournalStore, Store, StoreError};
use crate::telemetry::CallMetrics;
use crate::triage::{CallSink, Triage};

pub mod live;
mod mailbox;

use mailbox::{Mailbox, Poster, Taken, Wake};

pub use live::{CallSummary, DispatchView, IncidentDeviceView, IncidentView, LiveEvent};

/// Capacity of the live feed; a console that falls further behind gets a fresh snapshot.
pub const LIVE_CAPACITY: usize = 4096;

/// How long the Call writer gathers changes before it writes them (unless an operator's
/// action waits for durability).
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);

/// How long the writer waits for triage to finish a journal batch before it writes anyway.
const BATCH_END_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Most Calls the writer gathers before it writes.
const MAX_PENDING: usize = 4096;

/// Journal records read per step while catching up at start.
const REPLAY_CHUNK: usize = 1000;

/// A Call's head and the timeline lines from `from` on (clones only what changed).
fn change_of(call: &Call, from: usize) -> CallChange {
    let from = from.min(call.timeline.len());
    CallChange {
        call: Call {
            id: call.id,
            priority: call.priority,
            state: call.state,
            owner: call.owner.clone(),
            opened_at: call.opened_at,
            alarm_count: call.alarm_count,
            subscriber: call.subscriber.clone(),
            account: call.account.clone(),
            kind: call.kind.clone(),
            restored: call.restored,
            answered_at: call.answered_at,
            closed_at: call.closed_at,
            outcome: call.outcome,
            timeline: call.timeline[from..].to_vec(),
            last_signal_id: call.last_signal_id,
        },
        first_line: u32::try_from(from).unwrap_or(u32::MAX),
    }
}

/// Subscriber names for the live feed, so a busy Call does not read the register at every
/// change. Cleared when the register changes; bounded.
#[derive(Default)]
struct Names(HashMap<String, Option<String>>);

/// Most names kept before the cache starts over.
const MAX_NAMES: usize = 100_000;

/// Why a Call change could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum CallsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer has stopped (shutting down).
    #[error("the Call writer has stopped")]
    Stopped,
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

enum WriterMsg {
    /// Triage starts on a journal batch: its changes follow, then its `Cursor`.
    Ingesting,
    Call(Box<CallChange>),
    /// Triage has taken in every Signal up to this journal id.
    Cursor(u64),
    /// Lines for the end of a closed Call's timeline.
    Append(u64, Box<TimelineEntry>),
    /// An audit entry, written with the changes it goes with.
    Audit(Box<AuditEntry>),
    Flush(oneshot::Sender<Result<(), ()>>),
    /// Write what is pending and stop (shutdown).
    Stop,
}

/// The sink triage reports every change to: queue the Call for the writer, then tell the
/// consoles. Called with the Call's lock held, so both see one Call's changes in order.
struct Sink {
    writer: Poster<WriterMsg>,
    live: broadcast::Sender<LiveEvent>,
    store: Store,
    stats_dirty: Arc<tokio::sync::Notify>,
    /// How many timeline lines of each open Call have gone to the writer.
    sent: std::sync::Mutex<HashMap<u64, usize>>,
    names: Arc<std::sync::Mutex<Names>>,
}

/// Where the id of each Call whose closing is durable goes (the care system's journal note),
/// if anywhere; the writer sends it after the write that holds the closing and its mark.
type ClosedTo = Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<u64>>>;

/// A subscriber's name, from the cache or the register.
fn name_of(names: &std::sync::Mutex<Names>, store: &Store, subscriber: &str) -> Option<String> {
    let mut names = match names.lock() {
        Ok(n) => n,
        Err(p) => p.into_inner(),
    };
    if let Some(n) = names.0.get(subscriber) {
        return n.clone();
    }
    let n = store.subscriber(subscriber).ok().flatten().map(|s| s.name);
    if names.0.len() >= MAX_NAMES {
        names.0.clear();
    }
    names.0.insert(subscriber.to_owned(), n.clone());
    n
}

impl Sink {
    /// A closed Call comes back with `stored` timeline lines already in the store: only the
    /// lines after them are new.
    fn reopening(&self, id: u64, stored: usize) {
        let mut sent = match self.sent.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        sent.insert(id, stored);
    }
}

impl CallSink for Sink {
    fn changed(&self, call: &Call) {
        let change = {
            let mut sent = match self.sent.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            let from = sent.get(&call.id).copied().unwrap_or(0);
            if call.state == CallState::Closed {
                sent.remove(&call.id);
            } else {
                sent.insert(call.id, call.timeline.len());
            }
            change_of(call, from)
        };
        let _ = self.writer.post(WriterMsg::Call(Box::new(change)));
        // With no console listening there is nothing to build (a console that connects
        // later starts from a snapshot).
        if self.live.receiver_count() > 0 {
            let ev = if call.state == CallState::Closed {
                LiveEvent::Closed(call.id)
            } else {
                let name = call
                    .subscriber
                    .as_deref()
                    .and_then(|s| name_of(&self.names, &self.store, s));
                LiveEvent::Call(Arc::new(CallSummary::with_name(call, name)))
            };
            let _ = self.live.send(ev);
        }
        self.stats_dirty.notify_one();
    }
}

/// Sees every journaled Signal after triage took it in, in journal order, on the triage
/// thread (also the Signals replayed at start). Work orders for device faults hang here.
pub trait SignalObserver: Send + Sync {
    /// One Signal; `now` is when triage took it in.
    fn signal(&self, signal: &Signal, now: jiff::Timestamp);

    /// [`SignalObserver::signal`] with the store handle of the triage batch
    /// ([`Store::together`]): an observer that writes should write through it, so that the
    /// batch's writes cost one sync, made before the batch's cursor moves. By default the
    /// observer's own writes (each durable when it returns).
    fn signal_in(&self, signal: &Signal, now: jiff::Timestamp, _batch: &Store) {
        self.signal(signal, now);
    }

    /// What triage did with the Signal (the Call it opened or joined, or the rule). Called
    /// right before [`SignalObserver::signal`].
    fn ingested(&self, _signal: &Signal, _outcome: crate::triage::Ingested) {}
}

/// Several observers, told in order.
pub struct Observers(pub Vec<Arc<dyn SignalObserver>>);

impl SignalObserver for Observers {
    fn signal(&self, signal: &Signal, now: jiff::Timestamp) {
        for o in &self.0 {
            o.signal(signal, now);
        }
    }

    fn signal_in(&self, signal: &Signal, now: jiff::Timestamp, batch: &Store) {
        for o in &self.0 {
            o.signal_in(signal, now, batch);
        }
    }

    fn ingested(&self, signal: &Signal, outcome: crate::triage::Ingested) {
        for o in &self.0 {
            o.ingested(signal, outcome);
        }
    }
}

/// The running Call service.
pub struct Calls {
    /// The triage engine (open Calls, the queue, claims).
    pub triage: Arc<Triage>,
    /// The live feed.
    pub live: broadcast::Sender<LiveEvent>,
    /// Woken after every change (answer figures may have moved).
    pub stats_dirty: Arc<tokio::sync::Notify>,
    writer: Poster<WriterMsg>,
    names: Arc<std::sync::Mutex<Names>>,
    store: Store,
    writer_thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    triage_thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    observer: Option<Arc<dyn SignalObserver>>,
    sink: Arc<Sink>,
    /// Where closings are told.
    closed: ClosedTo,
    /// Held while a line goes to the end of a closed Call's stored timeline, and while a
    /// closed Call is read back to be reopened: a reopened Call never misses a line, and no
    /// line is written under an index the reopened Call uses.
    closed_lines: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").finish_non_exhaustive()
    }
}

impl Calls {
    /// Loads the open Calls, starts the writer, and triages every journaled Signal after the
    /// stored cursor (catching up after a crash). Blocking: run it before accepting frames.
    pub fn start(
        store: Store,
        opts: crate::triage::TriageOptions,
        metrics: CallMetrics,
        now: jiff::Timestamp,
    ) -> Result<Calls, CallsError> {
        Calls::start_observed(store, opts, metrics, now, None)
    }

    /// [`Calls::start`] with an observer of every Signal triaged (replayed ones included).
    pub fn start_observed(
        store: Store,
        opts: crate::triage::TriageOptions,
        metrics: CallMetrics,
        now: jiff::Timestamp,
        observer: Option<Arc<dyn SignalObserver>>,
    ) -> Result<Calls, CallsError> {
        let journal = JournalStore::from(store.clone());
        Calls::start_on(store, &journal, opts, metrics, now, observer)
    }

    /// [`Calls::start_observed`] replaying the Signals from `journal` (the journal's storage,
    /// which need not be `store`'s).
    pub fn start_on(
        store: Store,
        journal: &JournalStore,
        opts: crate::triage::TriageOptions,
        metrics: CallMetrics,
        now: jiff::Timestamp,
        observer: Option<Arc<dyn SignalObserver>>,
    ) -> Result<Calls, CallsError> {
        let (wtx, wrx) = mailbox::mailbox(MAX_PENDING);
        let closed: ClosedTo = Arc::default();
        let writer_thread = {
            let store = store.clone();
            let metrics = metrics.clone();
            let closed = closed.clone();
            std::thread::Builder::new()
                .name("vakt-calls".into())
                .spawn(move || writer(store, wrx, metrics, closed))
                .map_err(CallsError::Thread)?
        };
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let stats_dirty = Arc::new(tokio::sync::Notify::new());
        let open = store.open_calls()?;
        let n_open = open.len();
        let names = Arc::new(std::sync::Mutex::new(Names::default()));
        let sink = Arc::new(Sink {
            writer: wtx.clone(),
            live: live.clone(),
            store: store.clone(),
            stats_dirty: stats_dirty.clone(),
            sent: std::sync::Mutex::new(open.iter().map(|c| (c.id, c.timeline.len())).collect()),
            names: names.clone(),
        });
        let next_id = store.max_call_id()? + 1;
        let triage = Arc::new(Triage::new(opts, sink.clone(), metrics, next_id));
        triage.restore(open);
        let mut cursor = store.triage_cursor()?;
        let mut replayed = 0usize;
        loop {
            let records = journal.after(cursor, REPLAY_CHUNK)?;
            let Some(last) = records.last().map(|r| r.signal.id) else {
                break;
            };
            let _ = wtx.post(WriterMsg::Ingesting);
            let outcomes: Vec<_> = records
                .iter()
                .map(|r| triage.ingest(&r.signal, r.signal.device_type.as_deref(), now))
                .collect();
            if let Some(o) = &observer {
                observe(
                    o.as_ref(),
                    &store,
                    records.iter().map(|r| &r.signal),
                    outcomes,
                    now,
                )?;
            }
            replayed += records.len();
            cursor = last;
            let _ = wtx.post(WriterMsg::Cursor(cursor));
        }
        tracing::info!(
            open_calls = n_open,
            replayed_signals = replayed,
            cursor,
            "calls restored"
        );
        Ok(Calls {
            triage,
            live,
            stats_dirty,
            writer: wtx,
            names,
            store,
            writer_thread: std::sync::Mutex::new(Some(writer_thread)),
            triage_thread: std::sync::Mutex::new(None),
            observer,
            sink,
            closed,
            closed_lines: std::sync::Mutex::new(()),
        })
    }

    /// Sends the id of every Call whose closing is durable from now on to `to` (once; a
    /// second receiver is refused and false is returned), after the write that holds the
    /// closing. The closing is also marked in the store until the receiver says it is handed
    /// on ([`Store::closing_handed_on`]), so a closing sent to no one, or lost in a crash
    /// before it was handled, is still found ([`Store::closings_owed`]). The writer never
    /// waits: what is done with a closed Call is done off the triage path.
    pub fn on_closed(&self, to: tokio::sync::mpsc::UnboundedSender<u64>) -> bool {
        self.closed.set(to).is_ok()
    }

    /// Starts the thread that triages committed Signals as the journal hands them over.
    /// Returns the sender to give the journal.
    pub fn feed(&self, capacity: usize) -> Result<crate::journal::Feed, CallsError> {
        let (tx, mut rx) = mpsc::channel::<Vec<Signal>>(capacity);
        let triage = self.triage.clone();
        let writer = self.writer.clone();
        let observer = self.observer.clone();
        let store = self.store.clone();
        let h = std::thread::Builder::new()
            .name("vakt-triage".into())
            .spawn(move || {
                while let Some(batch) = rx.blocking_recv() {
                    if batch.is_empty() {
                        continue;
                    }
                    let now = jiff::Timestamp::now();
                    let _ = writer.post(WriterMsg::Ingesting);
                    let outcomes: Vec<_> = batch
                        .iter()
                        .map(|s| triage.ingest(s, s.device_type.as_deref(), now))
                        .collect();
                    // Before the cursor: what the observers write is durable (one sync for
                    // the batch) before a cursor past its Signal can be, so a crash never
                    // skips it. Should the sync fail, the cursor waits for the next batch's.
                    if let Some(o) = &observer {
                        if let Err(e) = observe(o.as_ref(), &store, batch.iter(), outcomes, now) {
                            tracing::error!(error = %e, signals = batch.len(), "making the observers' writes durable failed; the triage cursor waits");
                            continue;
                        }
                    }
                    if let Some(last) = batch.last() {
                        let _ = writer.post(WriterMsg::Cursor(last.id));
                    }
                }
            })
            .map_err(CallsError::Thread)?;
        if let Ok(mut t) = self.triage_thread.lock() {
            *t = Some(h);
        }
        Ok(tx)
    }

    /// Summaries of the open Calls, most urgent first (names from the cache).
    pub fn open_summaries(&self) -> Vec<CallSummary> {
        self.triage
            .open_calls()
            .iter()
            .map(|c| CallSummary::with_name(c, self.subscriber_name(c)))
            .collect()
    }

    /// The name of a Call's subscriber (from the cache of names).
    pub fn subscriber_name(&self, call: &Call) -> Option<String> {
        call.subscriber
            .as_deref()
            .and_then(|s| name_of(&self.names, &self.store, s))
    }

    /// Forgets the cached subscriber names (after the register changed).
    pub fn subscribers_changed(&self) {
        match self.names.lock() {
            Ok(mut n) => n.0.clear(),
            Err(p) => p.into_inner().0.clear(),
        }
    }

    /// After a change of the subscriber `id` (or, with `None`, of many: an import): forgets
    /// the cached names and tells the consoles, which load the cards they show again.
    pub fn subscriber_changed(&self, id: Option<&str>) {
        self.subscribers_changed();
        let _ = self.live.send(LiveEvent::Subscriber(id.map(Arc::from)));
    }

    /// Adds a line to a Call's timeline that no operator made on their own Call (a dispatch
    /// step): through triage while the Call is open (the consoles see it), else straight to
    /// the end of the closed Call's stored timeline, after every change sent before it.
    /// Durable after the next [`Calls::flush`].
    pub fn record(
        &self,
        id: u64,
        user: Option<&str>,
        what: TimelineEvent,
        now: jiff::Timestamp,
    ) -> Result<(), CallsError> {
        if self.triage.record(id, user, what.clone(), now).is_ok() {
            return Ok(());
        }
        let _closed = self
            .closed_lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // It may have been reopened meanwhile.
        if self.triage.record(id, user, what.clone(), now).is_ok() {
            return Ok(());
        }
        self.writer
            .post(WriterMsg::Append(
                id,
                Box::new(TimelineEntry {
                    at: now,
                    user: user.map(str::to_owned),
                    what,
                }),
            ))
            .map_err(|_| CallsError::Stopped)
    }

    /// Brings closed Call `id` back to the queue at the head of its level
    /// ([`Triage::reopen`]) with a `Reopened` line giving `reason`; every console sees it
    /// come back. `Ok(None)` when the Call is open (nothing to do) or unknown. Blocking: it
    /// waits until every change sent so far is written, then reads the closed Call back
    /// from the store (never on an async worker). Durable after the next [`Calls::flush`].
    pub fn reopen(
        &self,
        id: u64,
        reason: &str,
        now: jiff::Timestamp,
    ) -> Result<Option<Call>, CallsError> {
        self.reopen_by(id, None, reason, now)
    }

    /// [`Calls::reopen`] by `user` (a supervisor's review), named on the `Reopened` line.
    pub fn reopen_by(
        &self,
        id: u64,
        user: Option<&str>,
        reason: &str,
        now: jiff::Timestamp,
    ) -> Result<Option<Call>, CallsError> {
        if self.triage.get(id).is_some() {
            return Ok(None);
        }
        let _closed = self
            .closed_lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The closing and every line after it are in the store once this returns.
        self.flush_blocking()?;
        let Some(call) = self.store.call(id)? else {
            return Ok(None);
        };
        if call.state != CallState::Closed {
            return Ok(None);
        }
        self.sink.reopening(id, call.timeline.len());
        let reopened = self.triage.reopen_by(call, user, reason, now);
        if reopened.is_some() {
            tracing::info!(call = id, "closed call back in the queue");
        }
        Ok(reopened)
    }

    /// Queues an audit entry for the writer, which writes it with the Call changes sent
    /// before it, in the same sync: an operator's action and its entry cost one sync, and
    /// [`Calls::flush`] waits for both. Written within the writer's gathering time anyway.
    pub fn audit(&self, entry: AuditEntry) -> Result<(), CallsError> {
        self.writer
            .post(WriterMsg::Audit(Box::new(entry)))
            .map_err(|_| CallsError::Stopped)
    }

    /// Waits until every Call change and audit entry sent so far is durable (after an
    /// operator's action, before answering them).
    pub async fn flush(&self) -> Result<(), CallsError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .post_urgent(WriterMsg::Flush(tx))
            .map_err(|_| CallsError::Stopped)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            _ => Err(CallsError::Stopped),
        }
    }

    /// [`Calls::flush`] for a blocking thread (never on an async worker).
    pub fn flush_blocking(&self) -> Result<(), CallsError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .post_urgent(WriterMsg::Flush(tx))
            .map_err(|_| CallsError::Stopped)?;
        match rx.blocking_recv() {
            Ok(Ok(())) => Ok(()),
            _ => Err(CallsError::Stopped),
        }
    }

    /// Stops after the journal has closed (its feed sender dropped): triages what is left,
    /// writes and flushes every change, and stops the writer (which releases the store).
    /// Changes after this are not saved.
    pub async fn close(&self) {
        let t = self.triage_thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = t {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "final write of Calls failed");
        }
        let _ = self.writer.post_urgent(WriterMsg::Stop);
        let w = self.writer_thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = w {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

impl Drop for Calls {
    fn drop(&mut self) {
        // The writer stops when every sender is gone (the Sink inside triage holds one);
        // it is not joined here so a drop never blocks a runtime thread.
        if let Ok(mut t) = self.writer_thread.lock() {
            t.take();
        }
    }
}

/// Tells the observers of a triaged batch, their writes made durable together with one
/// sync (a burst of fault Signals costs one sync, not one each).
fn observe<'a>(
    o: &dyn SignalObserver,
    store: &Store,
    batch: impl Iterator<Item = &'a Signal>,
    outcomes: Vec<crate::triage::Ingested>,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    store.together(|s| {
        for (signal, outcome) in batch.zip(outcomes) {
            o.ingested(signal, outcome);
            o.signal_in(signal, now, s);
        }
        Ok(())
    })
}

/// The writer thread: gathers every change waiting, merges the changes of each Call (the
/// newest head, the new timeline lines in order), writes them with the cursor in one atomic
/// batch, durable when the store returns (one sync per gathering).
fn writer(store: Store, rx: Mailbox<WriterMsg>, metrics: CallMetrics, closed: ClosedTo) {
    let mut pending: HashMap<u64, CallChange> = HashMap::new();
    let mut apart: Vec<CallChange> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<Result<(), ()>>> = Vec::new();
    // Lines for closed Calls, in the order they came, written after the changes.
    let mut appends: Vec<(u64, TimelineEntry)> = Vec::new();
    // Audit entries, in the order they came, written last.
    let mut audits: Vec<AuditEntry> = Vec::new();
    let mut msgs: Vec<WriterMsg> = Vec::new();
    let mut stop = false;
    // Between `Ingesting` and `Cursor`: triage is half-way through a journal batch.
    let mut inside = false;
    while !stop {
        if rx.take(Wake::Any, None, &mut msgs) == Taken::Closed && msgs.is_empty() {
            break;
        }
        let mut cursor = None;
        // Gather for up to GATHER, unless someone waits for durability: a busy Call's head
        // is then written once per gathering, not once per press. Nothing is lost by the
        // wait: the journal has every Signal, and the cursor is written with the Calls.
        // While gathering, only an urgent message (a flush, the stop) or a full queue wakes
        // this thread; the rest is taken in one go at the end (no thread switch per change).
        // A write never splits the triage of a journal batch: the Calls written are exactly
        // the effect of the Signals up to the cursor written with them, so the replay at the
        // next start neither misses nor repeats a Signal.
        let deadline = Instant::now() + GATHER;
        loop {
            for msg in msgs.drain(..) {
                match msg {
                    WriterMsg::Stop => stop = true,
                    WriterMsg::Ingesting => inside = true,
                    WriterMsg::Call(c) => merge_change(&mut pending, &mut apart, *c),
                    WriterMsg::Cursor(c) => {
                        inside = false;
                        cursor = Some(cursor.map_or(c, |o: u64| o.max(c)));
                    }
                    WriterMsg::Flush(w) => waiters.push(w),
                    WriterMsg::Append(id, line) => appends.push((id, *line)),
                    WriterMsg::Audit(e) => audits.push(*e),
                }
            }
            if stop {
                break;
            }
            let now = Instant::now();
            let ready = !waiters.is_empty() || pending.len() >= MAX_PENDING || now >= deadline;
            if ready && !inside {
                break;
            }
            let taken = if ready {
                // Only triage's end of the batch is missing: any message may be it.
                rx.take(Wake::Any, Some(now + BATCH_END_WAIT), &mut msgs)
            } else {
                rx.take(Wake::Urgent, Some(deadline), &mut msgs)
            };
            match taken {
                Taken::Woken => {}
                Taken::TimedOut if ready => {
                    tracing::warn!(
                        "triage did not finish a journal batch in time; writing the Calls without moving the cursor past it"
                    );
                    break;
                }
                Taken::TimedOut => {}
                Taken::Closed => stop = true,
            }
        }
        let mut batch: Vec<CallChange> = std::mem::take(&mut apart);
        let mut merged: Vec<CallChange> = pending.drain().map(|(_, c)| c).collect();
        merged.sort_unstable_by_key(|c| c.call.id);
        // After the changes kept apart, so each Call's newest head is written last.
        batch.extend(merged);
        // One durable store operation, one sync, for the whole gathering (a waiter's earlier
        // changes were made durable by the write that took them).
        let nothing = batch.is_empty() && cursor.is_none() && appends.is_empty();
        let result = if nothing && audits.is_empty() {
            Ok(())
        } else {
            store.together(|s| {
                if !batch.is_empty() || cursor.is_some() {
                    s.save_call_changes(&batch, cursor)?;
                }
                // After the changes: a Call closed in this batch has its closing line
                // stored first.
                append_lines(s, &mut appends)?;
                // Each entry once: the written ones leave the queue, a failure keeps the rest.
                let mut done = 0;
                let written = audits.iter().try_for_each(|e| {
                    s.audit(e.clone())?;
                    done += 1;
                    Ok(())
                });
                audits.drain(..done);
                written
            })
        };
        if result.is_ok() {
            if let Some(tx) = closed.get() {
                for ch in batch.iter().filter(|ch| closes(ch)) {
                    let _ = tx.send(ch.call.id);
                }
            }
        }
        if let Err(e) = &result {
            metrics.errors.increment(1);
            tracing::error!(error = %e, calls = batch.len(), "writing Calls failed; retrying with the next change");
            // Keep them for the next attempt (nothing newer can have arrived meanwhile).
            apart = batch;
        }
        for w in waiters.drain(..) {
            let _ = w.send(result.as_ref().map(|_| ()).map_err(|_| ()));
        }
    }
    tracing::debug!("call writer stopped");
}

/// Whether a change closes its Call (a `Closed` line among its new lines).
fn closes(ch: &CallChange) -> bool {
    ch.call.state == CallState::Closed
        && ch
            .call
            .timeline
            .iter()
            .any(|e| matches!(e.what, TimelineEvent::Closed { .. }))
}

/// Writes lines at the end of closed Calls' timelines, each run of one Call's lines
/// together, in order, and removes the written ones (on a failure the rest is kept for the
/// next attempt, so no line is written twice).
fn append_lines(store: &Store, appends: &mut Vec<(u64, TimelineEntry)>) -> Result<(), StoreError> {
    let mut done = 0;
    let mut result = Ok(());
    while done < appends.len() {
        let id = appends[done].0;
        let end = appends[done..]
            .iter()
            .position(|(c, _)| *c != id)
            .map_or(appends.len(), |n| done + n);
        let lines: Vec<TimelineEntry> = appends[done..end].iter().map(|(_, l)| l.clone()).collect();
        if let Err(e) = store.append_timeline(id, &lines) {
            result = Err(e);
            break;
        }
        done = end;
    }
    appends.drain(..done);
    result
}

/// Adds a change to the pending one of its Call: the newer head wins, lines are appended.
/// The sink sends every line once and in order, so a change starts where the pending one
/// ends; one that does not is kept whole in `apart` and written in the same batch, so no line
/// is ever lost.
fn merge_change(
    pending: &mut HashMap<u64, CallChange>,
    apart: &mut Vec<CallChange>,
    c: CallChange,
) {
    match pending.get_mut(&c.call.id) {
        None => {
            pending.insert(c.call.id, c);
        }
        Some(p) => {
            let end = p.first_line as usize + p.call.timeline.len();
            let from = c.first_line as usize;
            if from < p.first_line as usize || from > end {
                debug_assert!(false, "timeline lines out of order");
                apart.push(std::mem::replace(p, c));
                return;
            }
            let mut lines = std::mem::take(&mut p.call.timeline);
            lines.truncate(from - p.first_line as usize);
            lines.extend(c.call.timeline);
            p.call = Call {
                timeline: lines,
                ..c.call
            };
        }
    }
}

/// Target share of Calls answered within 60 s (telecare answer-time target), in percent.
pub const TARGET_60S_PCT: f64 = 97.5;
/// Target share of Calls answered within 180 s, in percent.
pub const TARGET_180S_PCT: f64 = 99.0;

/// The day's answer figures, judged against the telecare targets.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// The local date (`2026-11-23`).
    pub date: String,
    /// Calls opened today (local time).
    pub calls: usize,
    /// Of them, answered (taken by an operator).
    pub answered: usize,
    /// Median answer time in seconds.
    pub median_answer_secs: Option<f64>,
    /// Share answered within 60 s, in percent, of the Calls that were answered or have
    /// waited longer than 60 s (a Call still waiting at 30 s has not failed yet).
    pub within_60s_pct: Option<f64>,
    /// Share answered within 180 s, likewise.
    pub within_180s_pct: Option<f64>,
    /// The target for 60 s.
    pub target_60s_pct: f64,
    /// The target for 180 s.
    pub target_180s_pct: f64,
}

/// A Call's answer time in seconds, if it was answered: where a voice call came in and an
/// operator answered it, the first such call's ring time (from the call presented to the
/// answer, as the TSA measures it); otherwise the time from opening to an operator taking
/// the Call.
pub fn answer_secs(c: &Call) -> Option<f64> {
    let voice = c.timeline.iter().find_map(|e| match &e.what {
        TimelineEvent::Conversation(v) if v.direction == CallDirection::Inbound && v.answered() => {
            Some(f64::from(v.ring_secs))
        }
        _ => None,
    });
    voice.or_else(|| c.answered_at.map(|a| secs(c.opened_at, a)))
}

/// Computes the answer figures of `calls` (those opened on the local day of `now`); answer
/// times as [`answer_secs`].
pub fn stats_of(calls: &[Call], date: String, now: jiff::Timestamp) -> Stats {
    let mut times: Vec<f64> = calls.iter().filter_map(answer_secs).collect();
    times.sort_by(f64::total_cmp);
    let median = match times.len() {
        0 => None,
        n if n % 2 == 1 => Some(times[n / 2]),
        n => Some((times[n / 2 - 1] + times[n / 2]) / 2.0),
    };
    let within = |limit: f64| -> Option<f64> {
        let mut judged = 0usize;
        let mut ok = 0usize;
        for c in calls {
            match answer_secs(c) {
                Some(a) => {
                    judged += 1;
                    if a <= limit {
                        ok += 1;
                    }
                }
                None if secs(c.opened_at, now) > limit => judged += 1,
                None => {}
            }
        }
        (judged > 0).then(|| 100.0 * ok as f64 / judged as f64)
    };
    Stats {
        date,
        calls: calls.len(),
        answered: times.len(),
        median_answer_secs: median,
        within_60s_pct: within(60.0),
        within_180s_pct: within(180.0),
        target_60s_pct: TARGET_60S_PCT,
        target_180s_pct: TARGET_180S_PCT,
    }
}

fn secs(from: jiff::Timestamp, to: jiff::Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64().max(0.0)
}

/// Today's figures (the local day of `now` in `tz`), read from the store.
pub fn stats_today(
    store: &Store,
    tz: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
) -> Result<Stats, StoreError> {
    let local = now.to_zoned(tz.clone());
    let start = local.start_of_day().map(|z| z.timestamp()).unwrap_or(now);
    let calls = store.calls_opened_since(start)?;
    Ok(stats_of(&calls, local.date().to_string(), now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Priority;

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn call(opened: i64, answered: Option<i64>) -> Call {
        Call {
            id: 1,
            priority: Priority::PERSONAL,
            state: CallState::Queued,
            owner: None,
            opened_at: ts(opened),
            alarm_count: 1,
            subscriber: None,
            account: "1234".into(),
            kind: "Personal alarm".into(),
            restored: false,
            answered_at: answered.map(ts),
            closed_at: None,
            outcome: None,
            timeline: Vec::new(),
            last_signal_id: 0,
        }
    }

    #[test]
    fn stats_judge_answered_and_overdue_calls_only() {
        let calls = [
            call(0, Some(10)),  // 10 s
            call(0, Some(50)),  // 50 s
            call(0, Some(100)), // 100 s: misses 60 s
            call(900, None),    // waiting 100 s at now=1000: misses 60 s, not yet 180 s
            call(990, None),    // waiting 10 s: not judged yet
        ];
        let s = stats_of(&calls, "2027-01-15".into(), ts(1000));
        assert_eq!(s.calls, 5);
        assert_eq!(s.answered, 3);
        assert_eq!(s.median_answer_secs, Some(50.0));
        assert_eq!(s.within_60s_pct, Some(50.0)); // 2 of 4
        assert_eq!(s.within_180s_pct, Some(100.0)); // 3 of 3
        assert_eq!(s.target_60s_pct, 97.5);
    }

    #[test]
    fn a_voice_call_answered_is_judged_by_its_ring_time() {
        use crate::model::{Conversation, ConversationEnd};
        let conv = |direction, ring_secs, talk_secs: Option<u32>| crate::model::TimelineEntry {
            at: ts(0),
            user: None,
            what: TimelineEvent::Conversation(Conversation {
                id: 1,
                direction,
                party: "unit 1234".into(),
                to_relative: None,
                operator: talk_secs.map(|_| "op".to_string()),
                ring_secs,
                talk_secs,
                ended_by: ConversationEnd::Caller,
                recording: None,
            }),
        };
        // Taken after 90 s, but its voice call was answered after 20 s of ringing.
        let mut answered = call(0, Some(90));
        answered
            .timeline
            .push(conv(CallDirection::Inbound, 20, Some(60)));
        // An abandoned call (10 s) and a call out do not count: taken after 100 s.
        let mut abandoned = call(0, Some(100));
        abandoned
            .timeline
            .push(conv(CallDirection::Inbound, 10, None));
        abandoned
            .timeline
            .push(conv(CallDirection::Outbound, 5, Some(30)));
        assert_eq!(answer_secs(&answered), Some(20.0));
        assert_eq!(answer_secs(&abandoned), Some(100.0));
        let s = stats_of(&[answered, abandoned], "2027-01-15".into(), ts(1000));
        assert_eq!(s.within_60s_pct, Some(50.0));
        assert_eq!(s.median_answer_secs, Some(60.0));
    }

    fn line(n: i64) -> crate::model::TimelineEntry {
        crate::model::TimelineEntry {
            at: ts(n),
            user: None,
            what: crate::model::TimelineEvent::Note {
                text: n.to_string(),
            },
        }
    }

    #[test]
    fn the_sink_sends_new_lines_and_the_writer_merges_them_in_order() {
        let mut c = call(0, None);
        c.timeline = vec![line(1), line(2)];
        let first = change_of(&c, 0);
        assert_eq!((first.first_line, first.call.timeline.len()), (0, 2));
        c.timeline.push(line(3));
        c.alarm_count = 2;
        let second = change_of(&c, 2);
        assert_eq!((second.first_line, second.call.timeline.len()), (2, 1));
        let mut pending = HashMap::new();
        let mut apart = Vec::new();
        merge_change(&mut pending, &mut apart, first);
        merge_change(&mut pending, &mut apart, second);
        let merged = &pending[&1];
        assert_eq!(merged.first_line, 0);
        assert_eq!(merged.call.timeline, vec![line(1), line(2), line(3)]);
        assert_eq!(merged.call.alarm_count, 2, "the newest head wins");
        assert!(apart.is_empty());
    }

    /// An observer that writes an audit entry for each Signal, through the batch's handle
    /// when it is given one.
    struct Writes;

    impl SignalObserver for Writes {
        fn signal(&self, signal: &Signal, now: jiff::Timestamp) {
            Writes::write(&Writes::own(), signal, now);
        }

        fn signal_in(&self, signal: &Signal, now: jiff::Timestamp, batch: &Store) {
            Writes::write(batch, signal, now);
        }
    }

    thread_local! {
        static OWN: std::cell::RefCell<Option<Store>> = const { std::cell::RefCell::new(None) };
    }

    impl Writes {
        fn own() -> Store {
            OWN.with(|o| o.borrow().clone().unwrap())
        }

        fn write(store: &Store, signal: &Signal, now: jiff::Timestamp) {
            store
                .audit(AuditEntry {
                    seq: 0,
                    at: now,
                    user: "vakt".into(),
                    action: "test.observed".into(),
                    call: None,
                    subscriber: None,
                    detail: signal.id.to_string(),
                })
                .unwrap();
        }
    }

    /// A triaged batch's observers write with one sync for the whole batch, made before its
    /// cursor can move; told one by one they would cost a sync each (a storm of fault
    /// Signals would hold triage back by as many syncs).
    #[test]
    fn a_batchs_observer_writes_cost_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        OWN.with(|o| *o.borrow_mut() = Some(store.clone()));
        let batch: Vec<Signal> = (1..=30u64)
            .map(|id| Signal {
                id,
                ..crate::model::testing::signal()
            })
            .collect();
        let outcomes = || vec![crate::triage::Ingested::Rule("test"); batch.len()];
        let (before, _) = store.syncs();
        observe(&Writes, &store, batch.iter(), outcomes(), ts(1)).unwrap();
        let (started, done) = store.syncs();
        assert_eq!(
            (started, done - before),
            (done, 1),
            "one sync for the batch"
        );
        assert_eq!(
            store.audit_latest(100).unwrap().len(),
            30,
            "every write made"
        );
        // Told one by one, as before: a sync each.
        for s in &batch {
            Writes.signal(s, ts(2));
        }
        assert_eq!(store.syncs().1 - done, 30);
    }

    /// The writer makes a burst of changes and an audit entry durable with one sync (or two
    /// when the burst straddles a gathering), not one per Call, before a flush returns.
    #[test]
    fn the_writer_makes_a_burst_of_changes_durable_with_one_sync() {
        use crate::model::SignalEvent;
        use vakt_proto::event::Qualifier;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let calls = Calls::start(
            store.clone(),
            crate::triage::TriageOptions { escalate_after: 3 },
            CallMetrics::new(),
            ts(0),
        )
        .unwrap();
        calls.flush_blocking().unwrap();
        let (before, _) = store.syncs();
        for id in 1..=50u64 {
            let press = Signal {
                id,
                account: format!("A{id}"),
                subscriber: Some(format!("S-{id}")),
                events: vec![SignalEvent {
                    name: Some("medical".into()),
                    ..crate::model::testing::event("MA", Qualifier::New)
                }],
                ..crate::model::testing::signal()
            };
            calls.triage.ingest(&press, None, ts(id as i64));
        }
        calls
            .audit(AuditEntry {
                seq: 0,
                at: ts(60),
                user: "ola".into(),
                action: "call.claim".into(),
                call: Some(1),
                subscriber: None,
                detail: String::new(),
            })
            .unwrap();
        calls.flush_blocking().unwrap();
        let (started, done) = store.syncs();
        assert_eq!(started, done);
        assert!(
            (1..=2).contains(&(done - before)),
            "{} syncs for 50 Calls and an audit entry",
            done - before
        );
        assert_eq!(store.open_calls().unwrap().len(), 50, "every Call stored");
        assert_eq!(store.audit_latest(5).unwrap().len(), 1, "and the entry");
        // Nothing pending: a flush costs no sync.
        calls.flush_blocking().unwrap();
        assert_eq!(store.syncs().1, done);
    }

    #[test]
    fn stats_without_calls_have_no_shares() {
        let s = stats_of(&[], "2027-01-15".into(), ts(0));
        assert_eq!(
            (s.calls, s.median_answer_secs, s.within_60s_pct),
            (0, None, None)
        );
    }
}
