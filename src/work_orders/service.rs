//! [`WorkOrders`]: the orders over the store, for the triage thread and the API.
//!
//! The open orders (new and started) are kept in memory as well, indexed by device and fault
//! kind: one open order per device and fault kind. A change is written to the store (one
//! atomic batch) before memory changes, under one short lock, so the two never disagree and
//! two changes of one order never interleave. Methods block on storage (a write and its sync):
//! call them from the triage thread or through `spawn_blocking`.
//!
//! Durability: a change is durable when the store returns it, before the API answers and, on
//! the triage path, before the Calls writer writes the triage cursor past its Signal; if vakt
//! stops in between, the Signal is triaged again and the per-device, per-fault mark of the
//! Signals already taken keeps it from being counted twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;

use super::{
    Calendar, Change, FaultKind, MAX_INSTALLER_CHARS, MAX_NOTE_CHARS, MAX_REASON_CHARS, OrderEvent,
    OrderEventKind, What, WorkOrder, WorkOrderError, WorkOrderOptions, WorkOrderState,
    checked_text, faults_of,
};
use crate::model::{Device, Signal};
use crate::store::{FaultSeen, Store};
use crate::telemetry::WorkOrderMetrics;

/// Most orders one list returns.
pub const MAX_LIST: usize = 1000;

/// Most stored orders a list of closed orders looks through (newest first).
pub const MAX_SCAN: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which orders a list shows, by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateFilter {
    /// New and started (the default).
    #[default]
    Open,
    /// New only.
    New,
    /// Started only.
    Started,
    /// Done only.
    Done,
    /// Cancelled only.
    Cancelled,
    /// Every state.
    All,
}

impl StateFilter {
    fn accepts(self, s: WorkOrderState) -> bool {
        match self {
            StateFilter::Open => s.is_open(),
            StateFilter::New => s == WorkOrderState::New,
            StateFilter::Started => s == WorkOrderState::Started,
            StateFilter::Done => s == WorkOrderState::Done,
            StateFilter::Cancelled => s == WorkOrderState::Cancelled,
            StateFilter::All => true,
        }
    }

    /// Only open orders can match.
    fn open_only(self) -> bool {
        matches!(
            self,
            StateFilter::Open | StateFilter::New | StateFilter::Started
        )
    }
}

/// What a list shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// By state.
    pub state: StateFilter,
    /// Only orders late now (open ones, so with `state` open, new or started).
    pub overdue: bool,
    /// Only this device's orders.
    pub account: Option<String>,
    /// Only the orders of these subscribers (a municipality's or provider's people); an
    /// order of no subscriber is the centre's.
    pub subscribers: Option<std::collections::HashSet<String>>,
    /// At most this many (capped at [`MAX_LIST`]).
    pub limit: usize,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            state: StateFilter::Open,
            overdue: false,
            account: None,
            subscribers: None,
            limit: MAX_LIST,
        }
    }
}

/// Figures for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// New and started orders.
    pub open: usize,
    /// Open orders late now.
    pub overdue: usize,
}

/// An operator's report of a fault (from a Call).
#[derive(Clone, Copy, Debug)]
pub struct Report<'a> {
    /// The device's account.
    pub account: &'a str,
    /// The subscriber, if known.
    pub subscriber: Option<&'a str>,
    /// The installer, if the registry names one (else the configured default).
    pub installer: Option<&'a str>,
    /// The Call it was reported from.
    pub call: Option<u64>,
    /// The operator.
    pub user: &'a str,
    /// What is wrong (1 to [`MAX_NOTE_CHARS`] characters).
    pub note: &'a str,
}

/// The open orders in memory.
#[derive(Debug, Default)]
struct Open {
    by_id: BTreeMap<u64, WorkOrder>,
    by_device: HashMap<(String, FaultKind), u64>,
    next_id: u64,
}

impl Open {
    fn of(&self, account: &str, fault: FaultKind) -> Option<&WorkOrder> {
        let id = self.by_device.get(&(account.to_owned(), fault))?;
        self.by_id.get(id)
    }

    /// Takes a changed order (already stored) into memory.
    fn put(&mut self, o: &WorkOrder) {
        self.next_id = self.next_id.max(o.id + 1);
        let k = (o.account.clone(), o.fault);
        if o.state.is_open() {
            self.by_device.insert(k, o.id);
            self.by_id.insert(o.id, o.clone());
        } else {
            self.by_id.remove(&o.id);
            if self.by_device.get(&k) == Some(&o.id) {
                self.by_device.remove(&k);
            }
        }
    }
}

/// The work orders.
#[derive(Debug)]
pub struct WorkOrders {
    store: Store,
    calendar: Calendar,
    default_installer: String,
    open: Mutex<Open>,
    metrics: WorkOrderMetrics,
}

impl WorkOrders {
    /// Loads the open orders. `tz` is the centre's time zone (working days are local days);
    /// `now` only decides whether to warn that the holidays do not cover this year and the
    /// next.
    pub fn open(
        store: Store,
        opts: &WorkOrderOptions,
        tz: TimeZone,
        now: Timestamp,
    ) -> Result<WorkOrders, WorkOrderError> {
        let calendar = Calendar::new(opts, tz);
        let year = calendar.day_of(now).year();
        for y in [year, year.saturating_add(1)] {
            if !calendar.covers(y) {
                tracing::warn!(
                    year = y,
                    "work_orders.holidays has no date in {y}: its holidays count as working days"
                );
            }
        }
        let mut open = Open {
            next_id: store.max_work_order_id()? + 1,
            ..Open::default()
        };
        for o in store.open_work_orders()? {
            open.put(&o);
        }
        let wo = WorkOrders {
            store,
            calendar,
            default_installer: opts.default_installer.trim().to_owned(),
            open: Mutex::new(open),
            metrics: WorkOrderMetrics::new(),
        };
        wo.publish_metrics(now);
        Ok(wo)
    }

    /// The calendar (working days, deadlines).
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    fn installer(&self, given: Option<&str>) -> String {
        given
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.chars().count() <= MAX_INSTALLER_CHARS)
            .unwrap_or(&self.default_installer)
            .to_owned()
    }

    /// A new order (not stored). `now` is the creation time.
    fn draft(&self, id: u64, base: Draft<'_>, now: Timestamp, first: OrderEvent) -> WorkOrder {
        let (start_by, done_by) = self.calendar.deadlines(now);
        let mut o = WorkOrder {
            id,
            account: base.account.to_owned(),
            subscriber: base.subscriber.map(str::to_owned),
            installer: base.installer,
            fault: base.fault,
            state: WorkOrderState::New,
            created_at: now,
            start_by,
            done_by,
            started_at: None,
            done_at: None,
            cancelled_at: None,
            cancel_reason: None,
            replaces: base.replaces,
            replaced_by: None,
            call: base.call,
            signal_ids: Vec::new(),
            repeats: 0,
            restores: 0,
            restored_at: None,
            timeline: Vec::new(),
        };
        if let Some(s) = first.signal {
            o.push_signal(s);
        }
        o.push_event(first);
        o
    }

    /// Stores changed orders (and the Signal mark), then takes them into memory.
    fn commit(
        &self,
        open: &mut Open,
        orders: &[WorkOrder],
        seen: Option<FaultSeen<'_>>,
    ) -> Result<(), WorkOrderError> {
        self.commit_in(&self.store, open, orders, seen)
    }

    /// [`Self::commit`] through `store` (a handle of [`Store::together`]: the triage batch's).
    fn commit_in(
        &self,
        store: &Store,
        open: &mut Open,
        orders: &[WorkOrder],
        seen: Option<FaultSeen<'_>>,
    ) -> Result<(), WorkOrderError> {
        store.save_work_orders(orders, seen)?;
        for o in orders {
            open.put(o);
        }
        Ok(())
    }

    /// Takes a journaled Signal from `device`: each fault in it makes an order for the
    /// installer (`installer`, else the configured default), unless the device has an open
    /// order of that fault, to which the repeat is attached; a restore is attached to the
    /// open order (noted; it never closes it) and is ignored when there is none. A Signal
    /// whose journal id is not above the last one taken for that device and fault is
    /// skipped (a replay after a crash). `now` is when the order is made (its deadlines
    /// count from it); the timeline lines of the device's events carry the Signal's
    /// reception time. One change per fault in the Signal; none for a Signal without faults
    /// (almost all of them: no storage is touched then).
    pub fn on_signal(
        &self,
        signal: &Signal,
        device: &Device,
        installer: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<Change>, WorkOrderError> {
        self.on_signal_in(&self.store, signal, device, installer, now)
    }

    /// [`Self::on_signal`], writing through `store`: the triage thread gives the handle of
    /// its batch ([`Store::together`]), so a burst of fault Signals costs one sync a batch,
    /// not one each, and triage does not fall behind in a storm of them.
    pub fn on_signal_in(
        &self,
        store: &Store,
        signal: &Signal,
        device: &Device,
        installer: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<Change>, WorkOrderError> {
        let faults = faults_of(signal);
        if faults.is_empty() {
            return Ok(Vec::new());
        }
        let account = device.account.as_str();
        let subscriber = device
            .subscriber
            .as_deref()
            .or(signal.subscriber.as_deref());
        let code = |restore: bool, fault: FaultKind| {
            signal
                .events
                .iter()
                .find(|e| super::fault_of_event(e) == Some((fault, restore)))
                .map(|e| e.code.clone())
        };
        let mut open = lock(&self.open);
        let mut changes = Vec::new();
        for (fault, restore) in faults {
            if signal.id != 0 && store.work_order_fault_seen(account, fault)? >= signal.id {
                tracing::debug!(
                    signal = signal.id,
                    account,
                    fault = fault.as_str(),
                    "work orders: Signal already taken"
                );
                continue;
            }
            let seen = (signal.id != 0).then_some(FaultSeen {
                account,
                fault,
                signal: signal.id,
            });
            let event = OrderEvent {
                at: signal.received_at,
                kind: OrderEventKind::Created,
                user: None,
                signal: (signal.id != 0).then_some(signal.id),
                text: code(restore, fault),
            };
            let change = match (open.of(account, fault).cloned(), restore) {
                (Some(mut o), false) => {
                    o.repeats = o.repeats.saturating_add(1);
                    o.restored_at = None;
                    o.push_signal(signal.id);
                    o.push_event(OrderEvent {
                        kind: OrderEventKind::FaultRepeated,
                        ..event
                    });
                    Change {
                        order: o,
                        what: What::Attached,
                    }
                }
                (Some(mut o), true) => {
                    o.restores = o.restores.saturating_add(1);
                    o.restored_at = Some(signal.received_at);
                    o.push_signal(signal.id);
                    o.push_event(OrderEvent {
                        kind: OrderEventKind::Restored,
                        ..event
                    });
                    Change {
                        order: o,
                        what: What::Restored,
                    }
                }
                (None, false) => {
                    let base = Draft {
                        account,
                        subscriber,
                        installer: self.installer(installer),
                        fault,
                        call: None,
                        replaces: None,
                    };
                    let o = self.draft(open.next_id, base, now, event);
                    Change {
                        order: o,
                        what: What::Created,
                    }
                }
                // A restore with no open order: nothing to do (triage's restore rule).
                (None, true) => continue,
            };
            self.commit_in(store, &mut open, std::slice::from_ref(&change.order), seen)?;
            self.after(&open, &change, now);
            changes.push(change);
        }
        Ok(changes)
    }

    /// An operator reports a fault from a Call ([`FaultKind::Reported`]): a new order, or,
    /// when the device already has an open reported order, the note attached to it.
    pub fn report(&self, r: Report<'_>, now: Timestamp) -> Result<Change, WorkOrderError> {
        let note = checked_text(r.note, 1, MAX_NOTE_CHARS, "a note")?;
        let event = OrderEvent {
            at: now,
            kind: OrderEventKind::Created,
            user: Some(r.user.to_owned()),
            signal: None,
            text: Some(note),
        };
        let mut open = lock(&self.open);
        let change = match open.of(r.account, FaultKind::Reported).cloned() {
            Some(mut o) => {
                o.push_event(OrderEvent {
                    kind: OrderEventKind::Note,
                    ..event
                });
                if o.call.is_none() {
                    o.call = r.call;
                }
                Change {
                    order: o,
                    what: What::Attached,
                }
            }
            None => {
                let base = Draft {
                    account: r.account,
                    subscriber: r.subscriber,
                    installer: self.installer(r.installer),
                    fault: FaultKind::Reported,
                    call: r.call,
                    replaces: None,
                };
                Change {
                    order: self.draft(open.next_id, base, now, event),
                    what: What::Created,
                }
            }
        };
        self.commit(&mut open, std::slice::from_ref(&change.order), None)?;
        self.after(&open, &change, now);
        Ok(change)
    }

    /// An open order, for a state change.
    fn open_order(
        &self,
        open: &Open,
        id: u64,
        action: &'static str,
    ) -> Result<WorkOrder, WorkOrderError> {
        if let Some(o) = open.by_id.get(&id) {
            return Ok(o.clone());
        }
        match self.store.work_order(id)? {
            Some(o) => Err(WorkOrderError::State {
                id,
                state: o.state,
                action,
            }),
            None => Err(WorkOrderError::NotFound(id)),
        }
    }

    /// The installer has started a new order.
    pub fn start(&self, id: u64, user: &str, now: Timestamp) -> Result<Change, WorkOrderError> {
        let mut open = lock(&self.open);
        let mut o = self.open_order(&open, id, "started")?;
        if o.state != WorkOrderState::New {
            return Err(WorkOrderError::State {
                id,
                state: o.state,
                action: "started",
            });
        }
        // A clock behind the order's creation cannot put the start before it.
        let at = now.max(o.created_at);
        o.state = WorkOrderState::Started;
        o.started_at = Some(at);
        o.push_event(OrderEvent {
            at,
            kind: OrderEventKind::Started,
            user: Some(user.to_owned()),
            signal: None,
            text: None,
        });
        let change = Change {
            order: o,
            what: What::Started,
        };
        self.commit(&mut open, std::slice::from_ref(&change.order), None)?;
        self.after(&open, &change, now);
        Ok(change)
    }

    /// The order is done (from new or started: a fault settled at once was started then
    /// too). `note` may be empty (at most [`MAX_NOTE_CHARS`] characters).
    pub fn done(
        &self,
        id: u64,
        user: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<Change, WorkOrderError> {
        let note = checked_text(note, 0, MAX_NOTE_CHARS, "the note")?;
        let mut open = lock(&self.open);
        let mut o = self.open_order(&open, id, "done")?;
        let at = now.max(o.started_at.unwrap_or(o.created_at));
        o.started_at.get_or_insert(at);
        o.state = WorkOrderState::Done;
        o.done_at = Some(at);
        o.push_event(OrderEvent {
            at,
            kind: OrderEventKind::Done,
            user: Some(user.to_owned()),
            signal: None,
            text: (!note.is_empty()).then_some(note),
        });
        let change = Change {
            order: o,
            what: What::Done,
        };
        self.commit(&mut open, std::slice::from_ref(&change.order), None)?;
        self.after(&open, &change, now);
        Ok(change)
    }

    /// Cancels an open order with a reason (1 to [`MAX_REASON_CHARS`] characters) and makes
    /// its replacement (seed 004: "En ny arbetsorder måste göras"): same device, subscriber,
    /// installer, fault and Call, `replaces` set, deadlines counted from `now`. Both are
    /// written in one batch. Returns two changes: the cancelled order ([`What::Cancelled`])
    /// and the replacement ([`What::Created`]).
    pub fn cancel(
        &self,
        id: u64,
        user: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<Change>, WorkOrderError> {
        let reason = checked_text(reason, 1, MAX_REASON_CHARS, "a reason")?;
        let mut open = lock(&self.open);
        let mut o = self.open_order(&open, id, "cancelled")?;
        let at = now.max(o.created_at);
        let new_id = open.next_id;
        o.state = WorkOrderState::Cancelled;
        o.cancelled_at = Some(at);
        o.cancel_reason = Some(reason.clone());
        o.replaced_by = Some(new_id);
        o.push_event(OrderEvent {
            at,
            kind: OrderEventKind::Cancelled,
            user: Some(user.to_owned()),
            signal: None,
            text: Some(reason.clone()),
        });
        let base = Draft {
            account: &o.account,
            subscriber: o.subscriber.as_deref(),
            installer: o.installer.clone(),
            fault: o.fault,
            call: o.call,
            replaces: Some(id),
        };
        let mut replacement = self.draft(
            new_id,
            base,
            at,
            OrderEvent {
                at,
                kind: OrderEventKind::Created,
                user: Some(user.to_owned()),
                signal: None,
                text: Some(format!("replaces work order {id}: {reason}")),
            },
        );
        replacement.restored_at = o.restored_at;
        let orders = [o, replacement];
        self.commit(&mut open, &orders, None)?;
        let [o, replacement] = orders;
        let changes = vec![
            Change {
                order: o,
                what: What::Cancelled {
                    replacement: new_id,
                },
            },
            Change {
                order: replacement,
                what: What::Created,
            },
        ];
        for c in &changes {
            self.after(&open, c, now);
        }
        Ok(changes)
    }

    /// One order (open or not).
    pub fn get(&self, id: u64) -> Result<Option<WorkOrder>, WorkOrderError> {
        if let Some(o) = lock(&self.open).by_id.get(&id) {
            return Ok(Some(o.clone()));
        }
        Ok(self.store.work_order(id)?)
    }

    /// The open orders of one device, oldest first (for the device page).
    pub fn open_of(&self, account: &str) -> Vec<WorkOrder> {
        lock(&self.open)
            .by_id
            .values()
            .filter(|o| o.account == account)
            .cloned()
            .collect()
    }

    /// Orders by the filter, newest first. Open orders come from memory; closed ones from
    /// the store (a device's through its index; otherwise among the newest [`MAX_SCAN`]).
    pub fn list(&self, f: &Filter, now: Timestamp) -> Result<Vec<WorkOrder>, WorkOrderError> {
        let limit = f.limit.min(MAX_LIST);
        let keep = |o: &WorkOrder| {
            f.state.accepts(o.state)
                && (!f.overdue || o.lateness(now).is_some())
                && f.account.as_deref().is_none_or(|a| o.account == a)
                && f.subscribers
                    .as_ref()
                    .is_none_or(|within| o.subscriber.as_ref().is_some_and(|s| within.contains(s)))
        };
        if f.state.open_only() || f.overdue {
            let open = lock(&self.open);
            return Ok(open
                .by_id
                .values()
                .rev()
                .filter(|o| keep(o))
                .take(limit)
                .cloned()
                .collect());
        }
        let from_store = match &f.account {
            Some(a) => self.store.work_orders_of_account(a, limit, keep)?,
            None => self.store.newest_work_orders(limit, MAX_SCAN, keep)?,
        };
        Ok(from_store)
    }

    /// The open orders late at `now` (not started by `start_by`, or not done by
    /// `done_by`), oldest first.
    pub fn overdue(&self, now: Timestamp) -> Vec<WorkOrder> {
        lock(&self.open)
            .by_id
            .values()
            .filter(|o| o.lateness(now).is_some())
            .cloned()
            .collect()
    }

    /// Open and late orders at `now`.
    pub fn counts(&self, now: Timestamp) -> Counts {
        let open = lock(&self.open);
        Counts {
            open: open.by_id.len(),
            overdue: open
                .by_id
                .values()
                .filter(|o| o.lateness(now).is_some())
                .count(),
        }
    }

    /// Sets the gauges `vakt_work_orders_open` and `vakt_work_orders_overdue` for `now`
    /// (done after every change; call it periodically too, as orders become late with time
    /// alone).
    pub fn publish_metrics(&self, now: Timestamp) {
        let c = self.counts(now);
        self.metrics.open.set(c.open as f64);
        self.metrics.overdue.set(c.overdue as f64);
    }

    /// Logs and counts a change.
    fn after(&self, open: &Open, c: &Change, now: Timestamp) {
        let o = &c.order;
        tracing::info!(
            order = o.id,
            account = %o.account,
            fault = o.fault.as_str(),
            installer = %o.installer,
            state = o.state.as_str(),
            event = c.what.event(),
            "work order"
        );
        if c.what == What::Created {
            self.metrics.created(o.fault.as_str());
        }
        self.metrics.open.set(open.by_id.len() as f64);
        let overdue = open
            .by_id
            .values()
            .filter(|o| o.lateness(now).is_some())
            .count();
        self.metrics.overdue.set(overdue as f64);
    }
}

/// What a new order is made of, besides its id, time and first line.
struct Draft<'a> {
    account: &'a str,
    subscriber: Option<&'a str>,
    installer: String,
    fault: FaultKind,
    call: Option<u64>,
    replaces: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{self, event};

    use vakt_proto::event::Qualifier;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn device() -> Device {
        Device {
            account: "1234".into(),
            line: None,
            receiver: None,
            key: None,
            key_format: None,
            subscriber: Some("s-1".into()),
            supervision_secs: None,
            telecom_operator: None,
            area: None,
            device_type: Some("carephone".into()),
            sip_user: None,
            sip_password: None,
            phone: None,
        }
    }

    fn signal(id: u64, code: &str, q: Qualifier, received: &str) -> Signal {
        Signal {
            id,
            received_at: at(received),
            subscriber: Some("s-1".into()),
            events: vec![event(code, q)],
            ..testing::signal()
        }
    }

    fn service(dir: &std::path::Path) -> WorkOrders {
        let store = Store::open(dir).unwrap();
        WorkOrders::open(
            store,
            &WorkOrderOptions::default(),
            TimeZone::get("Europe/Stockholm").unwrap(),
            at("2026-03-02T07:00:00Z"),
        )
        .unwrap()
    }

    #[test]
    fn signals_without_faults_touch_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wo = service(dir.path());
        let now = at("2026-03-02T07:00:00Z");
        let s = signal(1, "CID 101", Qualifier::New, "2026-03-02T07:00:00Z");
        assert!(wo.on_signal(&s, &device(), None, now).unwrap().is_empty());
        let comms = signal(2, "CID 350", Qualifier::New, "2026-03-02T07:00:00Z");
        assert!(
            wo.on_signal(&comms, &device(), None, now)
                .unwrap()
                .is_empty()
        );
        assert_eq!(wo.counts(now), Counts::default());
    }

    #[test]
    fn replayed_signals_are_not_counted_twice() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2026-03-02T07:00:00Z");
        {
            let wo = service(dir.path());
            let s = signal(10, "CID 302", Qualifier::New, "2026-03-02T07:00:00Z");
            assert_eq!(wo.on_signal(&s, &device(), None, now).unwrap().len(), 1);
            let r = signal(11, "CID 302", Qualifier::Status, "2026-03-02T08:00:00Z");
            assert_eq!(
                wo.on_signal(&r, &device(), None, now).unwrap()[0].what,
                What::Attached
            );
        }
        // The journal is triaged again from an older cursor after a restart.
        let wo = service(dir.path());
        for id in [10, 11] {
            let s = signal(id, "CID 302", Qualifier::New, "2026-03-02T07:00:00Z");
            assert!(wo.on_signal(&s, &device(), None, now).unwrap().is_empty());
        }
        let o = wo.get(1).unwrap().unwrap();
        assert_eq!((o.repeats, o.signal_ids.clone()), (1, vec![10, 11]));
        // Another fault of the same device is its own mark.
        let t = signal(10, "CID 144", Qualifier::New, "2026-03-02T07:00:00Z");
        assert_eq!(
            wo.on_signal(&t, &device(), None, now).unwrap()[0].what,
            What::Created
        );
    }

    #[test]
    fn one_signal_with_two_faults_makes_two_orders() {
        let dir = tempfile::tempdir().unwrap();
        let wo = service(dir.path());
        let now = at("2026-03-02T07:00:00Z");
        let mut s = signal(5, "SIA YT", Qualifier::New, "2026-03-02T07:00:00Z");
        let mut tamper = s.events[0].clone();
        tamper.code = "SIA TA".into();
        s.events.push(tamper);
        let c = wo
            .on_signal(&s, &device(), Some("larmteknik-ab"), now)
            .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].order.fault, FaultKind::LowBattery);
        assert_eq!(c[1].order.fault, FaultKind::Tamper);
        assert_eq!(c[1].order.installer, "larmteknik-ab");
        assert_eq!(c[0].order.timeline[0].text.as_deref(), Some("SIA YT"));
        assert_eq!((c[0].order.id, c[1].order.id), (1, 2));
        assert_eq!(wo.open_of("1234").len(), 2);
        assert_eq!(wo.counts(now).open, 2);
    }

    #[test]
    fn state_changes() {
        let dir = tempfile::tempdir().unwrap();
        let wo = service(dir.path());
        let now = at("2026-03-02T07:00:00Z");
        let r = Report {
            account: "1234",
            subscriber: Some("s-1"),
            installer: None,
            call: Some(7),
            user: "olle",
            note: "  ",
        };
        assert!(matches!(wo.report(r, now), Err(WorkOrderError::Invalid(_))));
        let c = wo
            .report(
                Report {
                    note: "The pendant's button does not work",
                    ..r
                },
                now,
            )
            .unwrap();
        assert_eq!(c.what, What::Created);
        assert_eq!(c.order.installer, "hjalpmedelscentralen");
        assert_eq!(c.order.call, Some(7));
        let again = wo
            .report(
                Report {
                    note: "Still broken",
                    call: Some(8),
                    ..r
                },
                now,
            )
            .unwrap();
        assert_eq!((again.what, again.order.id), (What::Attached, 1));
        assert_eq!(again.order.timeline.len(), 2);
        assert_eq!(again.order.call, Some(7), "the first Call stays");
        // Done straight from new: started then too.
        let d = wo.done(1, "sara", "Replaced the pendant", now).unwrap();
        assert_eq!(d.order.state, WorkOrderState::Done);
        assert_eq!(d.order.started_at, Some(now));
        assert!(matches!(
            wo.start(1, "sara", now),
            Err(WorkOrderError::State {
                state: WorkOrderState::Done,
                ..
            })
        ));
        assert!(matches!(
            wo.start(99, "sara", now),
            Err(WorkOrderError::NotFound(99))
        ));
        // A clock behind does not put a step before the order.
        let c = wo
            .report(
                Report {
                    note: "Dead again",
                    ..r
                },
                now,
            )
            .unwrap();
        let s = wo
            .start(c.order.id, "sara", at("2026-03-01T00:00:00Z"))
            .unwrap();
        assert_eq!(s.order.started_at, Some(now));
        assert!(matches!(
            wo.start(c.order.id, "sara", now),
            Err(WorkOrderError::State {
                state: WorkOrderState::Started,
                ..
            })
        ));
        assert!(matches!(
            wo.done(c.order.id, "sara", &"x".repeat(MAX_NOTE_CHARS + 1), now),
            Err(WorkOrderError::Invalid(_))
        ));
    }
}
