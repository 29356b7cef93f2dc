//! The subscriber's life on the server, from the order to billing: the service [`Care`] over
//! the store's life tree (orders, key receipts, lives) and the subscriber register.
//!
//! - **Orders in** ([`Care::receive_order`]), from the care system's API or a supervisor:
//!   normalised and checked, deadlines by [`crate::model::order::deadlines`] (the work
//!   orders' holidays, the centre's zone), stored once per care-system id. A new alarm
//!   may carry the person's card ([`crate::model::order::Person`]), checked as an edit of the
//!   register is: it makes or updates the card and the subscriber's [`Life`] (ordered, with
//!   the first provider; a life that ended starts over, its ended period kept for billing). A change (health notes, directions) updates the card at once, on
//!   the life's history with who and when, and is done. A provider change is recorded on the
//!   life by its date and makes a pending key receipt from the old provider to the new one
//!   for the keys the old one holds. An end order marks the life ending.
//! - **The tick** ([`Care::on_tick`], every minute, `now` a parameter): the provider periods
//!   whose day has come (centre's zone) become the card's `care_provider`, which routing
//!   reads; the open orders' lateness goes to the `vakt_orders_open` gauges.
//! - **Installation**: a window opened for one of the subscriber's devices
//!   ([`Care::open_installation`]); a Signal of that device in the window is the test alarm
//!   ([`observer::TestAlarmObserver`] on the triage path). When the test, the consent
//!   ([`Care::record_consent`]) and the keys the order requires (signed receipts from the
//!   person) are all in, the life is active at once with `installed_on` the local day, the
//!   new-alarm order is done and the care system is told ([`events`]).
//! - **The end ordered**: the life is ending, the keys' return receipts are proposed and the
//!   installer is told to pick up (`care.pickup_ordered`, [`events`]).
//! - **The end** ([`Care::complete_order`] of an end order): the life ends on the day, the
//!   subscriber's devices leave the registry (their later Signals are an unknown device's
//!   again), the order is done and the care system told. Keys come back by receipts: the
//!   end order proposes them (home care and the key cabinet to the installer, then, as that
//!   is signed, the installer to the person), pending until signed.
//! - **Billing** ([`billing`]): per month, one row per subscriber billed that month.
//!
//! Every method takes `now`; methods that touch the store block (call them from the blocking
//! pool in async code).

pub mod billing;
pub mod events;
pub mod observer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::calendar::WorkingDays;
use crate::model::keys::{Custody, HandoverReason, Holder, Holding, Receipt, ReceiptState};
use crate::model::life::{Life, LifeError, LifeStatus, Missing};
use crate::model::order::{
    Lateness, NewOrder, Order, OrderChangeError, OrderKind, OrderOptions, ProviderPeriod,
    provider_on,
};
use crate::model::{Device, Subscriber, norm_hex};
use crate::outbox::Outbox;
use crate::registers::devices::{Devices, Registry};
use crate::store::Stored;
use crate::store::{Store, StoreError};
use crate::telemetry::OrderMetrics;

/// Who the system's own changes are by, on histories and orders.
pub const SYSTEM: &str = "vakt";

/// `[orders]`: the deadlines of orders (seed 001) and the installation window.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// A new alarm is installed within this many days (1.2.1: a week).
    pub install_days: u32,
    /// An acute new alarm (a discharge from hospital) by the end of this many working days.
    pub acute_working_days: u32,
    /// An order not installed within this many months goes back to the case officer (1.2.4).
    pub return_after_months: u32,
    /// A change or a provider change without a date within this many working days.
    pub change_working_days: u32,
    /// An end is done within this many days of its date.
    pub end_days: u32,
    /// A digital lock is installed or removed within this many days.
    pub lock_days: u32,
    /// The installation window (minutes) when the installer names none: a Signal of the
    /// device in it is the test alarm.
    pub install_window_mins: u32,
}

impl Default for OrdersConfig {
    fn default() -> OrdersConfig {
        let o = OrderOptions::default();
        OrdersConfig {
            install_days: o.install_days,
            acute_working_days: o.acute_working_days,
            return_after_months: o.return_after_months,
            change_working_days: o.change_working_days,
            end_days: o.end_days,
            lock_days: o.lock_days,
            install_window_mins: 60,
        }
    }
}

impl OrdersConfig {
    /// The deadlines' options.
    pub fn options(&self) -> OrderOptions {
        OrderOptions {
            install_days: self.install_days,
            acute_working_days: self.acute_working_days,
            return_after_months: self.return_after_months,
            change_working_days: self.change_working_days,
            end_days: self.end_days,
            lock_days: self.lock_days,
        }
    }

    /// What is wrong (empty if nothing).
    pub fn problems(&self) -> Vec<String> {
        let mut errs: Vec<String> = self.options().validate().err().into_iter().collect();
        if self.install_window_mins == 0
            || self.install_window_mins > crate::model::life::MAX_WINDOW_MINS
        {
            errs.push(format!(
                "[orders] install_window_mins must be 1 to {}",
                crate::model::life::MAX_WINDOW_MINS
            ));
        }
        errs
    }
}

/// `[care]`: the centre's municipality.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CareConfig {
    /// The municipality the centre serves: billing rows of subscribers placed by no other
    /// municipality are under it, and the care-system events go to
    /// `[[escalation]] kind = "care_system"` endpoints matching it (or the placing
    /// municipality's name).
    pub municipality: String,
}

impl Default for CareConfig {
    fn default() -> CareConfig {
        CareConfig {
            municipality: "Vaktby kommun".into(),
        }
    }
}

impl CareConfig {
    /// What is wrong (empty if nothing).
    pub fn problems(&self) -> Vec<String> {
        let n = self.municipality.trim().chars().count();
        if (1..=100).contains(&n) {
            Vec::new()
        } else {
            vec!["[care] municipality must be 1 to 100 characters".into()]
        }
    }
}

/// Why the care service refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CareError {
    /// The order (or a request) is not valid: the field and what is wrong.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong, in words.
        problem: String,
    },
    /// No card in the register (a new alarm may bring the person's card).
    #[error("subscriber {0} is not in the register (a new alarm brings the person's card)")]
    UnknownSubscriber(String),
    /// The subscriber has never had an alarm ordered.
    #[error("subscriber {0} has no alarm ordered")]
    NoLife(String),
    /// No such order.
    #[error("no order {0}")]
    OrderNotFound(u64),
    /// The life's status does not allow it.
    #[error("the alarm of {subscriber} is {status:?}: {what}")]
    Status {
        /// The subscriber.
        subscriber: String,
        /// Its status.
        status: LifeStatus,
        /// What was refused.
        what: &'static str,
    },
    /// The device is not one of the subscriber's in the registry.
    #[error("device {0} is not in the registry as the subscriber's")]
    NotTheirDevice(String),
    /// The order is done by vakt, not by hand.
    #[error("order {id} is done {when}")]
    NotByHand {
        /// The order.
        id: u64,
        /// When it is done.
        when: &'static str,
    },
    /// A rule of the life refused.
    #[error(transparent)]
    Life(#[from] LifeError),
    /// A rule of the order refused.
    #[error(transparent)]
    Order(#[from] OrderChangeError),
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The options of [`Care`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CareOptions {
    /// `[orders]`.
    pub orders: OrdersConfig,
    /// `[care]`.
    pub care: CareConfig,
}

/// An order as received: stored now, or known from before (the care system sent it again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The order as stored.
    pub order: Order,
    /// Stored now (false: it had arrived before).
    pub new: bool,
}

/// An open order with its lateness now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderView {
    /// The order.
    #[serde(flatten)]
    pub order: Order,
    /// In time, overdue, or due to go back to the case officer.
    pub lateness: Lateness,
}

/// A subscriber's life with what it still needs, its orders, providers and keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LifeView {
    /// Status, installation, consent, providers and history.
    pub life: Life,
    /// What an ordered alarm still needs before it is active (empty when nothing).
    pub missing: Vec<Missing>,
    /// The provider today.
    pub provider_now: Option<String>,
    /// Who holds which keys now (signed receipts).
    pub keys: Vec<Holding>,
    /// The receipts, oldest first.
    pub receipts: Vec<Receipt>,
    /// The orders, newest first.
    pub orders: Vec<OrderView>,
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// Subscribers whose provider changed now (routing follows).
    pub providers_applied: Vec<String>,
    /// Open orders: in time, overdue, return due.
    pub open: (usize, usize, usize),
}

/// Something the care system must hear of, made by a change (sent after it is stored).
#[derive(Clone, Debug, PartialEq)]
enum Tell {
    Started(Life, Order),
    Ended(Life, Order),
    HealthChange(Order),
    /// To the installer: the pick-up of an ended alarm, with the key returns proposed.
    PickUp(Order, Option<String>, Vec<Receipt>),
}

/// The care service.
pub struct Care {
    store: Store,
    devices: Devices,
    outbox: Option<Outbox>,
    days: WorkingDays,
    opts: CareOptions,
    metrics: OrderMetrics,
    /// The devices with an open installation window: account → subscriber (the triage path
    /// looks here first, so a Signal of any other device costs one map lookup).
    installing: Mutex<HashMap<String, (String, Timestamp)>>,
    /// Told of each subscriber whose life changed by itself ([`Care::on_change`]).
    changed: std::sync::OnceLock<ChangeHook>,
}

/// What [`Care::on_change`] calls.
type ChangeHook = Box<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for Care {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Care").finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, problem: impl Into<String>) -> CareError {
    CareError::Invalid {
        field,
        problem: problem.into(),
    }
}

impl Care {
    /// The service over `store`; events to the care system through `outbox` (none: not
    /// told). The open installation windows are read back from the lives.
    pub fn open(
        store: Store,
        devices: Devices,
        outbox: Option<Outbox>,
        days: WorkingDays,
        opts: CareOptions,
    ) -> Result<Care, CareError> {
        let mut installing = HashMap::new();
        for l in store.lives()? {
            if l.status == LifeStatus::Ordered {
                if let Some(i) = l.installation.as_ref().filter(|i| i.test.is_none()) {
                    installing.insert(i.account.clone(), (l.subscriber.clone(), i.window_ends));
                }
            }
        }
        Ok(Care {
            store,
            devices,
            outbox,
            days,
            opts,
            metrics: OrderMetrics::new(),
            installing: Mutex::new(installing),
            changed: std::sync::OnceLock::new(),
        })
    }

    /// From now on `hook` hears of each subscriber whose life changed by itself, not by a
    /// request: the test alarm taken (and the alarm active), a provider period in effect on
    /// its day. The server tells the consoles, which load that card again. Set once at
    /// start; a second call is ignored.
    pub fn on_change(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.changed.set(Box::new(hook));
    }

    fn tell_changed(&self, subscriber: &str) {
        if let Some(hook) = self.changed.get() {
            hook(subscriber);
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The working days and the centre's zone.
    pub fn days(&self) -> &WorkingDays {
        &self.days
    }

    /// The centre's municipality.
    pub fn municipality(&self) -> &str {
        &self.opts.care.municipality
    }

    /// The outbox the care system's events go through.
    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }

    fn installing(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Timestamp)>> {
        self.installing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Receives an order (from the care system or a supervisor, `entered_by`): checked,
    /// stored once per care-system id, and what it does at once done.
    pub fn receive_order(
        &self,
        mut new: NewOrder,
        entered_by: &str,
        now: Timestamp,
    ) -> Result<Received, CareError> {
        new.normalize();
        let kind = new.validate().map_err(|p| CareError::Invalid {
            field: p.field,
            problem: p.problem,
        })?;
        let sub_id = new.subscriber.clone();
        if let Some(ext) = &new.external_id {
            if let Some(o) = self
                .store
                .orders_of(&sub_id)?
                .into_iter()
                .find(|o| o.external_id.as_deref() == Some(ext))
            {
                return Ok(Received {
                    order: o,
                    new: false,
                });
            }
        }
        let today = self.days.day_of(now);
        let card = self.store.subscriber(&sub_id)?;
        let life = self.store.life(&sub_id)?;
        // What the order will write to the card, checked before anything is stored.
        let mut new_card: Option<Subscriber> = None;
        match kind {
            OrderKind::NewAlarm => {
                // One life per subscriber id: a new alarm after an end starts it over (the
                // ended period kept for billing); while one is ordered or runs, refused.
                if let Some(l) = life.as_ref().filter(|l| l.status != LifeStatus::Ended) {
                    return Err(CareError::Status {
                        subscriber: sub_id,
                        status: l.status,
                        what: "a new alarm is ordered only when none is",
                    });
                }
                match (&card, &new.person) {
                    (None, None) => return Err(CareError::UnknownSubscriber(sub_id)),
                    (c, Some(p)) => {
                        let mut s = c.clone().unwrap_or_else(|| Subscriber {
                            id: sub_id.clone(),
                            ..Subscriber::default()
                        });
                        for (to, from) in [
                            (&mut s.name, &p.name),
                            (&mut s.personal_number, &p.personal_number),
                            (&mut s.address, &p.address),
                            (&mut s.postcode, &p.postcode),
                            (&mut s.city, &p.city),
                            (&mut s.area, &p.area),
                            (&mut s.phone, &p.phone),
                            (&mut s.care_provider, &p.care_provider),
                            (&mut s.language, &p.language),
                        ] {
                            if !from.is_empty() {
                                from.clone_into(to);
                            }
                        }
                        card_checked(&self.store, &mut s, &new)?;
                        new_card = Some(s);
                    }
                    (Some(c), None) => {
                        let mut s = c.clone();
                        card_checked(&self.store, &mut s, &new)?;
                        new_card = Some(s);
                    }
                }
            }
            OrderKind::Change | OrderKind::ProviderChange | OrderKind::End => {
                let Some(c) = &card else {
                    return Err(CareError::UnknownSubscriber(sub_id));
                };
                let Some(l) = &life else {
                    return Err(CareError::NoLife(sub_id));
                };
                let refused = match kind {
                    OrderKind::End => matches!(l.status, LifeStatus::Ending | LifeStatus::Ended),
                    _ => l.status == LifeStatus::Ended,
                };
                if refused {
                    return Err(CareError::Status {
                        subscriber: sub_id,
                        status: l.status,
                        what: match kind {
                            OrderKind::End => "an end is ordered once",
                            _ => "an ended alarm takes no changes",
                        },
                    });
                }
                if kind == OrderKind::Change {
                    let mut s = c.clone();
                    card_checked(&self.store, &mut s, &new)?;
                    new_card = Some(s);
                }
                if kind == OrderKind::ProviderChange {
                    let provider = new.new_provider.as_deref().unwrap_or("");
                    let problems = crate::registers::directory::subscriber_problems(
                        &self.store.directory()?,
                        provider,
                        "",
                    );
                    if let Some(p) = problems.first() {
                        return Err(invalid("new_provider", p.text.clone()));
                    }
                }
                if kind == OrderKind::ProviderChange
                    && new
                        .effective
                        .is_some_and(|d| d < l.installed_on.unwrap_or(d))
                {
                    return Err(invalid(
                        "effective",
                        "a provider change from before the installation",
                    ));
                }
            }
            OrderKind::LockInstall | OrderKind::LockRemoval => {
                if card.is_none() {
                    return Err(CareError::UnknownSubscriber(sub_id));
                }
            }
        }
        let (days, opts) = (&self.days, self.opts.orders.options());
        let stored = self
            .store
            .add_order(|id| Order::new(id, kind, new, entered_by, now, days, &opts))?;
        let mut order = match stored {
            Stored::Known(o) => {
                return Ok(Received {
                    order: o,
                    new: false,
                });
            }
            Stored::New(o) => o,
        };
        let mut tell = Vec::new();
        match kind {
            OrderKind::NewAlarm => {
                if let Some(s) = &new_card {
                    self.store.upsert_subscribers(std::slice::from_ref(s))?;
                }
                let provider = new_card
                    .as_ref()
                    .map(|s| s.care_provider.clone())
                    .filter(|p| !p.is_empty())
                    .map(|provider| ProviderPeriod {
                        from: today,
                        provider,
                    });
                let what = format!("new alarm ordered (order {})", order.id);
                self.store.update_life(&sub_id, |old| {
                    let mut l = match old {
                        None => Life::ordered(&sub_id, provider.clone(), now, entered_by),
                        Some(mut l) => {
                            // Another order made the life since the check above if it is
                            // not ended.
                            l.reorder(provider.clone(), now, entered_by).map_err(|_| {
                                CareError::Status {
                                    subscriber: sub_id.clone(),
                                    status: l.status,
                                    what: "a new alarm is ordered only when none is",
                                }
                            })?;
                            l
                        }
                    };
                    l.note(now, entered_by, what.clone());
                    Ok::<_, CareError>(l)
                })?;
            }
            OrderKind::Change => {
                if let Some(s) = &new_card {
                    self.store.upsert_subscribers(std::slice::from_ref(s))?;
                }
                let mut changed = Vec::new();
                if !order.health_notes.is_empty() {
                    changed.push("health notes");
                }
                if !order.directions.is_empty() {
                    changed.push("directions");
                }
                let what = format!(
                    "card changed by order {}: {}",
                    order.id,
                    if changed.is_empty() {
                        "nothing".to_owned()
                    } else {
                        changed.join(", ")
                    }
                );
                self.store.update_life(&sub_id, |l| {
                    let mut l = l.ok_or_else(|| CareError::NoLife(sub_id.clone()))?;
                    l.note(now, entered_by, what.clone());
                    Ok::<_, CareError>(l)
                })?;
                order.complete(now, entered_by)?;
                self.store.save_order(&order)?;
                if !order.health_notes.is_empty() {
                    tell.push(Tell::HealthChange(order.clone()));
                }
            }
            OrderKind::ProviderChange => {
                self.provider_change(&order, card.as_ref(), entered_by, now)?;
            }
            OrderKind::End => {
                let life = self.store.update_life(&sub_id, |l| {
                    let mut l = l.ok_or_else(|| CareError::NoLife(sub_id.clone()))?;
                    l.end_ordered(now, entered_by)?;
                    Ok::<_, CareError>(l)
                })?;
                let returns = self.propose_returns(&life, Some(order.id), entered_by, now)?;
                let receipts = self.store.receipts_of(&sub_id)?;
                tell.push(Tell::PickUp(
                    order.clone(),
                    installer_of(&life, &receipts),
                    returns,
                ));
            }
            OrderKind::LockInstall | OrderKind::LockRemoval => {}
        }
        self.tell(tell);
        if kind == OrderKind::ProviderChange && order.effective.is_some_and(|d| d <= today) {
            self.apply_providers(&sub_id, now)?;
            order = self.store.order(order.id)?.unwrap_or(order);
        }
        Ok(Received { order, new: true })
    }

    /// Records a provider change on the life and writes the pending key receipt from the old
    /// provider to the new one for the keys the old one holds.
    fn provider_change(
        &self,
        order: &Order,
        card: Option<&Subscriber>,
        by: &str,
        now: Timestamp,
    ) -> Result<(), CareError> {
        let (Some(from), Some(new)) = (order.effective, order.new_provider.clone()) else {
            return Err(invalid("effective", "a provider change needs its date"));
        };
        let sub = order.subscriber.clone();
        let life = self.store.update_life(&sub, |l| {
            let mut l = l.ok_or_else(|| CareError::NoLife(sub.clone()))?;
            l.change_provider(&new, from, now, by);
            Ok::<_, CareError>(l)
        })?;
        let day_before = from.yesterday().unwrap_or(from);
        let old = provider_on(&life.providers, day_before)
            .map(str::to_owned)
            .or_else(|| card.map(|c| c.care_provider.clone()))
            .filter(|p| !p.is_empty());
        let Some(old) = old.filter(|o| *o != new) else {
            return Ok(());
        };
        let custody = Custody::from_receipts(&self.store.receipts_of(&sub)?);
        let from_holder = Holder::Provider { id: old };
        let keys = custody.of(&from_holder);
        if keys.is_empty() {
            return Ok(());
        }
        self.store.add_receipt(|id| Receipt {
            id,
            subscriber: sub.clone(),
            from: from_holder.clone(),
            to: Holder::Provider { id: new.clone() },
            items: keys.clone(),
            reason: HandoverReason::ProviderChange,
            order: Some(order.id),
            written_at: now,
            written_by: by.to_owned(),
            state: ReceiptState::Pending,
        })?;
        Ok(())
    }

    /// An end is ordered: the keys come back (seed 001 4.4, 4.5). For every holder but the
    /// person, a pending receipt of what it holds: home care and the key cabinet to the
    /// installer, the installer to the person. Without a known installer (none named at the
    /// installation nor on a receipt) home care hands back to the person directly. A holder
    /// that already has a pending return gets no second one, and an installer waiting for a
    /// pending return to them hands back once it is in (one receipt for all). The receipts
    /// stand until signed, as any other; the history says what was proposed.
    fn propose_returns(
        &self,
        life: &Life,
        order: Option<u64>,
        by: &str,
        now: Timestamp,
    ) -> Result<Vec<Receipt>, CareError> {
        let sub = &life.subscriber;
        let receipts = self.store.receipts_of(sub)?;
        let custody = Custody::from_receipts(&receipts);
        let installer = installer_of(life, &receipts);
        let mut pending: Vec<(Holder, Holder)> = receipts
            .iter()
            .filter(|r| r.state == ReceiptState::Pending && r.reason == HandoverReason::End)
            .map(|r| (r.from.clone(), r.to.clone()))
            .collect();
        // Home care and the cabinet first, so that an installer still waiting for keys is
        // seen below and returns them all to the person on one receipt.
        let mut holdings = custody.holdings();
        holdings.sort_by_key(|h| matches!(h.holder, Holder::Installer { .. }));
        let mut written = Vec::new();
        for Holding { holder, keys } in holdings {
            if keys.is_empty()
                || holder == Holder::Subscriber
                || pending
                    .iter()
                    .any(|(from, to)| *from == holder || *to == holder)
            {
                continue;
            }
            let to = match (&holder, &installer) {
                (Holder::Installer { .. }, _) | (_, None) => Holder::Subscriber,
                (_, Some(name)) => Holder::Installer { name: name.clone() },
            };
            let r = self.store.add_receipt(|id| Receipt {
                id,
                subscriber: sub.clone(),
                from: holder.clone(),
                to: to.clone(),
                items: keys,
                reason: HandoverReason::End,
                order,
                written_at: now,
                written_by: by.to_owned(),
                state: ReceiptState::Pending,
            })?;
            pending.push((holder, to));
            written.push(r);
        }
        if !written.is_empty() {
            let what = written
                .iter()
                .map(|r| format!("receipt {} ({} to {})", r.id, r.from, r.to))
                .collect::<Vec<_>>()
                .join(", ");
            self.note(sub, now, by, format!("keys to come back: {what}"))?;
        }
        Ok(written)
    }

    /// Makes the card's provider the one of today for `subscriber` (on the history when it
    /// changes) and completes the provider changes whose day has come. True when the
    /// provider changed.
    /// The register's card of these subscribers now names these providers (an edit or an
    /// import by `by`): each one with a life whose provider of today is another gets a
    /// provider period from today, on its history, so the tick keeps the card as edited
    /// instead of putting the life's provider back. Returns the subscribers changed.
    pub fn providers_edited(
        &self,
        cards: &[(&str, &str)],
        by: &str,
        now: Timestamp,
    ) -> Result<Vec<String>, CareError> {
        let today = self.days.day_of(now);
        let mut changed = Vec::new();
        for &(subscriber, provider) in cards {
            let Some(life) = self.store.life(subscriber)? else {
                continue;
            };
            if life.status == LifeStatus::Ended
                || provider.is_empty()
                || provider_on(&life.providers, today) == Some(provider)
            {
                continue;
            }
            self.store.update_life(subscriber, |l| {
                let mut l = l.ok_or_else(|| CareError::NoLife(subscriber.to_owned()))?;
                l.change_provider(provider, today, now, by);
                Ok::<_, CareError>(l)
            })?;
            changed.push(subscriber.to_owned());
        }
        Ok(changed)
    }

    fn apply_providers(&self, subscriber: &str, now: Timestamp) -> Result<bool, CareError> {
        let today = self.days.day_of(now);
        let Some(life) = self.store.life(subscriber)? else {
            return Ok(false);
        };
        let mut changed = false;
        if let (Some(want), Some(mut card)) = (
            provider_on(&life.providers, today).map(str::to_owned),
            self.store.subscriber(subscriber)?,
        ) {
            if card.care_provider != want {
                card.care_provider.clone_from(&want);
                self.store.upsert_subscribers(std::slice::from_ref(&card))?;
                let what = format!("provider {want} in effect: alarms go to it");
                self.store.update_life(subscriber, |l| {
                    let mut l = l.ok_or_else(|| CareError::NoLife(subscriber.to_owned()))?;
                    l.note(now, SYSTEM, what.clone());
                    Ok::<_, CareError>(l)
                })?;
                changed = true;
            }
        }
        for mut o in self.store.orders_of(subscriber)? {
            if o.kind == OrderKind::ProviderChange
                && o.is_open()
                && o.effective.is_some_and(|d| d <= today)
            {
                o.complete(now, SYSTEM)?;
                self.store.save_order(&o)?;
            }
        }
        Ok(changed)
    }

    /// Every minute: provider periods whose day has come applied, installation windows past
    /// forgotten, the open orders counted by lateness.
    pub fn on_tick(&self, now: Timestamp) -> Result<Tick, CareError> {
        let today = self.days.day_of(now);
        let mut tick = Tick::default();
        let open = self.store.open_orders()?;
        // The subscribers with a provider change whose day has come and that is not done.
        let due_changes: std::collections::HashSet<&str> = open
            .iter()
            .filter(|o| {
                o.kind == OrderKind::ProviderChange && o.effective.is_some_and(|d| d <= today)
            })
            .map(|o| o.subscriber.as_str())
            .collect();
        for l in self.store.lives()? {
            if l.status == LifeStatus::Ended || l.providers.is_empty() {
                continue;
            }
            let due = provider_on(&l.providers, today);
            let card = self.store.subscriber(&l.subscriber)?;
            let moved = card.is_some_and(|c| Some(c.care_provider.as_str()) != due);
            if (moved || due_changes.contains(l.subscriber.as_str()))
                && self.apply_providers(&l.subscriber, now)?
            {
                self.tell_changed(&l.subscriber);
                tick.providers_applied.push(l.subscriber.clone());
            }
        }
        self.installing().retain(|_, (_, ends)| *ends > now);
        let (mut in_time, mut overdue, mut return_due) = (0, 0, 0);
        for o in self.store.open_orders()? {
            match o.lateness(now) {
                Lateness::InTime => in_time += 1,
                Lateness::Overdue => overdue += 1,
                Lateness::ReturnDue => return_due += 1,
            }
        }
        tick.open = (in_time, overdue, return_due);
        self.metrics.set_open(in_time, overdue, return_due);
        Ok(tick)
    }

    /// Opens an installation of `account` (one of the subscriber's devices in the registry)
    /// by `installer` for `window_mins` (default `[orders] install_window_mins`).
    pub fn open_installation(
        &self,
        subscriber: &str,
        account: &str,
        installer: &str,
        window_mins: Option<u32>,
        now: Timestamp,
    ) -> Result<Life, CareError> {
        let account = norm_hex(account);
        let registry = self.devices.current();
        let theirs = registry.iter().any(|d| {
            norm_hex(&d.account) == account && d.subscriber.as_deref() == Some(subscriber)
        });
        if !theirs {
            return Err(CareError::NotTheirDevice(account));
        }
        let window = window_mins.unwrap_or(self.opts.orders.install_window_mins);
        let life = self.store.update_life(subscriber, |l| {
            let mut l = l.ok_or_else(|| CareError::NoLife(subscriber.to_owned()))?;
            l.open_installation(&account, installer, now, window)?;
            Ok::<_, CareError>(l)
        })?;
        if let Some(i) = &life.installation {
            self.installing()
                .insert(account.clone(), (subscriber.to_owned(), i.window_ends));
        }
        Ok(life)
    }

    /// A Signal of `account` (on the triage path): the test alarm if the device has an open
    /// installation window that holds `at`. True when it was taken as the test.
    pub fn on_signal(
        &self,
        account: &str,
        signal: u64,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, CareError> {
        let sub = {
            let map = self.installing();
            if map.is_empty() {
                return Ok(false);
            }
            match map.get(&norm_hex(account)) {
                Some((s, _)) => s.clone(),
                None => return Ok(false),
            }
        };
        let account = norm_hex(account);
        let mut taken = false;
        self.store.update_life(&sub, |l| {
            let mut l = l.ok_or_else(|| CareError::NoLife(sub.clone()))?;
            taken = l.take_test(&account, signal, at);
            Ok::<_, CareError>(l)
        })?;
        if taken {
            self.installing().remove(&account);
            self.try_activate(&sub, SYSTEM, now)?;
            self.tell_changed(&sub);
        }
        Ok(taken)
    }

    /// Records the consent (seed 001's "Samtycke") signed on `signed_on` by `signed_by`.
    pub fn record_consent(
        &self,
        subscriber: &str,
        signed_on: Date,
        signed_by: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<Life, CareError> {
        self.store.update_life(subscriber, |l| {
            let mut l = l.ok_or_else(|| CareError::NoLife(subscriber.to_owned()))?;
            l.record_consent(signed_on, signed_by, by, now)?;
            Ok::<_, CareError>(l)
        })?;
        self.try_activate(subscriber, by, now)?;
        self.store
            .life(subscriber)?
            .ok_or_else(|| CareError::NoLife(subscriber.to_owned()))
    }

    /// A key receipt was signed and stored (the receipts' API calls this): the care system is
    /// told (`care.key_handover_signed`, to the subscriber's municipality) and an ordered alarm
    /// waiting only for these keys becomes active. True when it did. A failure to queue the
    /// event is logged: the signature stands.
    pub fn receipt_signed(
        &self,
        receipt: &Receipt,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, CareError> {
        if let Some(outbox) = &self.outbox {
            let m = self.municipality_of(&receipt.subscriber)?;
            if let Err(e) = events::key_handover_signed(outbox, &m, receipt) {
                tracing::error!(receipt = receipt.id, error = %e, "the care system's key handover event was not queued");
            }
        }
        // Keys back from home care at the end: the installer's return to the person next.
        if receipt.reason == HandoverReason::End && matches!(receipt.to, Holder::Installer { .. }) {
            if let Some(life) = self.store.life(&receipt.subscriber)? {
                if matches!(life.status, LifeStatus::Ending | LifeStatus::Ended) {
                    self.propose_returns(&life, receipt.order, by, now)?;
                }
            }
        }
        self.try_activate(&receipt.subscriber, by, now)
    }

    /// The open new-alarm order of a subscriber and the keys it requires.
    fn open_new_alarm(&self, subscriber: &str) -> Result<Option<Order>, CareError> {
        Ok(self
            .store
            .orders_of(subscriber)?
            .into_iter()
            .find(|o| o.kind == OrderKind::NewAlarm && o.is_open()))
    }

    /// Activates an ordered alarm whose test, consent and keys are all in; completes the
    /// new-alarm order and tells the care system. True when it activated.
    fn try_activate(&self, subscriber: &str, by: &str, now: Timestamp) -> Result<bool, CareError> {
        let Some(life) = self.store.life(subscriber)? else {
            return Ok(false);
        };
        if life.status != LifeStatus::Ordered {
            return Ok(false);
        }
        let order = self.open_new_alarm(subscriber)?;
        let required = order
            .as_ref()
            .map(|o| o.keys_required.clone())
            .unwrap_or_default();
        let custody = Custody::from_receipts(&self.store.receipts_of(subscriber)?);
        if !life.missing(&required, &custody).is_empty() {
            return Ok(false);
        }
        let day = self.days.day_of(now);
        let mut activated = false;
        let life = self.store.update_life(subscriber, |l| {
            let mut l = l.ok_or_else(|| CareError::NoLife(subscriber.to_owned()))?;
            activated = l.activate(&required, &custody, day, now, by).is_ok();
            Ok::<_, CareError>(l)
        })?;
        if !activated {
            return Ok(false);
        }
        if let Some(mut o) = order {
            o.complete(now, by)?;
            self.store.save_order(&o)?;
            self.tell(vec![Tell::Started(life, o)]);
        }
        Ok(true)
    }

    /// Completes an order by hand. An end: the life ends today, the subscriber's devices
    /// leave the registry, the care system is told. A new alarm is done by its installation
    /// and a provider change on its date: refused here.
    pub fn complete_order(&self, id: u64, by: &str, now: Timestamp) -> Result<Order, CareError> {
        let mut order = self.store.order(id)?.ok_or(CareError::OrderNotFound(id))?;
        if !order.is_open() {
            return Err(OrderChangeError::NotOpen(id).into());
        }
        match order.kind {
            OrderKind::NewAlarm => {
                return Err(CareError::NotByHand {
                    id,
                    when: "when the test alarm, the consent and the keys are in",
                });
            }
            OrderKind::ProviderChange => {
                return Err(CareError::NotByHand {
                    id,
                    when: "on its date",
                });
            }
            OrderKind::End => {
                let day = self.days.day_of(now);
                let sub = order.subscriber.clone();
                let life = self.store.update_life(&sub, |l| {
                    let mut l = l.ok_or_else(|| CareError::NoLife(sub.clone()))?;
                    l.end(day, now, by)?;
                    Ok::<_, CareError>(l)
                })?;
                self.remove_devices(&sub)?;
                order.complete(now, by)?;
                self.store.save_order(&order)?;
                self.tell(vec![Tell::Ended(life, order.clone())]);
            }
            OrderKind::Change | OrderKind::LockInstall | OrderKind::LockRemoval => {
                order.complete(now, by)?;
                self.store.save_order(&order)?;
            }
        }
        Ok(order)
    }

    /// The subscriber's devices out of the registry (stored and in memory).
    fn remove_devices(&self, subscriber: &str) -> Result<usize, CareError> {
        let theirs: Vec<Device> = self
            .devices
            .current()
            .iter()
            .filter(|d| d.subscriber.as_deref() == Some(subscriber))
            .cloned()
            .collect();
        let keys: Vec<String> = theirs
            .iter()
            .map(|d| crate::store::device_key(&d.account, d.line.as_deref(), d.receiver.as_deref()))
            .collect();
        let n = self.store.remove_devices(&keys)?;
        self.devices.replace(Registry::new(self.store.devices()?));
        for d in &theirs {
            self.installing().remove(&norm_hex(&d.account));
        }
        Ok(n)
    }

    /// Sends an order back to the case officer (1.2.4), with a reason.
    pub fn send_back(
        &self,
        id: u64,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Order, CareError> {
        let mut o = self.store.order(id)?.ok_or(CareError::OrderNotFound(id))?;
        o.send_back(now, by, reason)?;
        self.store.save_order(&o)?;
        self.note(
            &o.subscriber,
            now,
            by,
            format!("order {id} sent back to the case officer"),
        )?;
        Ok(o)
    }

    /// Cancels an order, with a reason.
    pub fn cancel(
        &self,
        id: u64,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Order, CareError> {
        let mut o = self.store.order(id)?.ok_or(CareError::OrderNotFound(id))?;
        o.cancel(now, by, reason)?;
        self.store.save_order(&o)?;
        self.note(&o.subscriber, now, by, format!("order {id} cancelled"))?;
        Ok(o)
    }

    fn note(
        &self,
        subscriber: &str,
        at: Timestamp,
        by: &str,
        what: String,
    ) -> Result<(), CareError> {
        if self.store.life(subscriber)?.is_none() {
            return Ok(());
        }
        self.store.update_life(subscriber, |l| {
            let mut l = l.ok_or_else(|| CareError::NoLife(subscriber.to_owned()))?;
            l.note(at, by, what.clone());
            Ok::<_, CareError>(l)
        })?;
        Ok(())
    }

    /// The open orders with their lateness at `now`, oldest first.
    pub fn open_orders(&self, now: Timestamp) -> Result<Vec<OrderView>, CareError> {
        Ok(self
            .store
            .open_orders()?
            .into_iter()
            .map(|order| OrderView {
                lateness: order.lateness(now),
                order,
            })
            .collect())
    }

    /// One order with its lateness at `now`.
    pub fn order(&self, id: u64, now: Timestamp) -> Result<OrderView, CareError> {
        let order = self.store.order(id)?.ok_or(CareError::OrderNotFound(id))?;
        Ok(OrderView {
            lateness: order.lateness(now),
            order,
        })
    }

    /// A subscriber's life, what it still needs, its keys, receipts and orders.
    pub fn life(&self, subscriber: &str, now: Timestamp) -> Result<LifeView, CareError> {
        let life = self
            .store
            .life(subscriber)?
            .ok_or_else(|| CareError::NoLife(subscriber.to_owned()))?;
        let receipts = self.store.receipts_of(subscriber)?;
        let custody = Custody::from_receipts(&receipts);
        let orders = self.store.orders_of(subscriber)?;
        let missing = if life.status == LifeStatus::Ordered {
            let required = orders
                .iter()
                .find(|o| o.kind == OrderKind::NewAlarm && o.is_open())
                .map(|o| o.keys_required.clone())
                .unwrap_or_default();
            life.missing(&required, &custody)
        } else {
            Vec::new()
        };
        Ok(LifeView {
            provider_now: provider_on(&life.providers, self.days.day_of(now)).map(str::to_owned),
            missing,
            keys: custody.holdings(),
            receipts,
            orders: orders
                .into_iter()
                .map(|order| OrderView {
                    lateness: order.lateness(now),
                    order,
                })
                .collect(),
            life,
        })
    }

    /// The municipality a subscriber is billed to and whose care system hears of them: the
    /// card's, else the placing municipality of their latest new alarm, else the centre's.
    pub fn municipality_of(&self, subscriber: &str) -> Result<String, CareError> {
        let card = self
            .store
            .subscriber(subscriber)?
            .map(|c| c.municipality)
            .filter(|m| !m.is_empty());
        Ok(match card {
            Some(m) => m,
            None => placed_by(&self.store, subscriber)?
                .unwrap_or_else(|| self.opts.care.municipality.clone()),
        })
    }

    /// The billing rows of `month`.
    pub fn billing(
        &self,
        month: crate::model::order::Month,
    ) -> Result<Vec<billing::Row>, CareError> {
        billing_of(&self.store, month, self.municipality())
    }

    /// Sends what the care system must hear (a failure is logged: the change stands).
    fn tell(&self, tell: Vec<Tell>) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        for t in tell {
            let r = match &t {
                Tell::Started(life, order) => self
                    .municipality_of(&life.subscriber)
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        events::execution_started(outbox, &m, life, order)
                            .map_err(|e| e.to_string())
                    }),
                Tell::Ended(life, order) => self
                    .municipality_of(&life.subscriber)
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        events::execution_ended(outbox, &m, life, order).map_err(|e| e.to_string())
                    }),
                Tell::HealthChange(order) => self
                    .municipality_of(&order.subscriber)
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        events::health_change_received(outbox, &m, order).map_err(|e| e.to_string())
                    }),
                Tell::PickUp(order, installer, returns) => {
                    let accounts: Vec<String> = self
                        .devices
                        .current()
                        .iter()
                        .filter(|d| d.subscriber.as_deref() == Some(order.subscriber.as_str()))
                        .map(|d| d.account.clone())
                        .collect();
                    self.store
                        .subscriber(&order.subscriber)
                        .map_err(|e| e.to_string())
                        .and_then(|card| {
                            let card = card.unwrap_or_default();
                            events::pickup_ordered(
                                outbox,
                                installer.as_deref().unwrap_or(""),
                                order,
                                &card,
                                &accounts,
                                returns,
                            )
                            .map_err(|e| e.to_string())
                        })
                }
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "the care system's event was not queued");
            }
        }
    }

    /// Call `id`'s closing, if it is still to be handed on (the store's mark): the handled
    /// alarm's journal note queued ([`Care::call_closed`]), then the mark taken. True when a
    /// note was queued. A failure keeps the mark for the next try; a crash between the queue
    /// and the mark sends the note again at the next start (at least once: the care system
    /// knows a note by its subject, `call/{id}`).
    pub fn hand_on_closing(&self, id: u64) -> Result<bool, CareError> {
        if !self.store.closing_owed(id)? {
            return Ok(false);
        }
        let sent = match self.store.call(id)? {
            Some(call) => self.call_closed(&call)?,
            None => false,
        };
        self.store.closing_handed_on(id)?;
        Ok(sent)
    }

    /// Every closing still to be handed on (after a crash, a failed queue, or closings made
    /// while no one listened), oldest Call first. Returns the notes queued; a failure of one
    /// is logged and left for the next time.
    pub fn hand_on_owed(&self) -> Result<usize, CareError> {
        let mut sent = 0;
        for id in self.store.closings_owed()? {
            match self.hand_on_closing(id) {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(call = id, error = %e, "the care system's note of a closed call was not queued; tried again in a minute");
                }
            }
        }
        Ok(sent)
    }

    /// A closed Call: a subscriber's handled alarm as a journal note for the care system.
    /// Calls of no subscriber, or of one whose alarm never came through an order, are not
    /// sent.
    pub fn call_closed(&self, call: &crate::model::Call) -> Result<bool, CareError> {
        let Some(outbox) = &self.outbox else {
            return Ok(false);
        };
        let Some(sub) = call.subscriber.as_deref() else {
            return Ok(false);
        };
        if self.store.life(sub)?.is_none() {
            return Ok(false);
        }
        let Some(card) = self.store.subscriber(sub)? else {
            return Ok(false);
        };
        let dispatches = self.store.dispatches_of_call(call.id)?;
        let m = self.municipality_of(sub)?;
        events::alarm_handled(outbox, &m, call, &card, &dispatches)
            .map_err(|e| invalid("outbox", e.to_string()))?;
        Ok(true)
    }
}

/// The installer who does the pick-up: the one named at the installation, else the last one
/// who signed keys in.
fn installer_of(life: &Life, receipts: &[Receipt]) -> Option<String> {
    life.installation
        .as_ref()
        .map(|i| i.installer.clone())
        .filter(|n| !n.trim().is_empty())
        .or_else(|| {
            receipts
                .iter()
                .rev()
                .filter(|r| matches!(r.state, ReceiptState::Signed { .. }))
                .find_map(|r| match &r.to {
                    Holder::Installer { name } if !name.trim().is_empty() => Some(name.clone()),
                    _ => None,
                })
        })
}

/// The placing municipality of a subscriber's latest new alarm, if another than the centre's.
fn placed_by(store: &Store, subscriber: &str) -> Result<Option<String>, CareError> {
    Ok(store
        .orders_of(subscriber)?
        .into_iter()
        .find(|o| o.kind == OrderKind::NewAlarm)
        .and_then(|o| o.placed_by))
}

/// The billing rows of `month` from the store; `home` is the centre's municipality.
pub fn billing_of(
    store: &Store,
    month: crate::model::order::Month,
    home: &str,
) -> Result<Vec<billing::Row>, CareError> {
    let mut placed = HashMap::new();
    let mut names = HashMap::new();
    let lives = store.lives()?;
    for l in &lives {
        if !l
            .periods()
            .iter()
            .any(|(from, to, _)| crate::model::order::billed(*from, *to, month))
        {
            continue;
        }
        let card = store.subscriber(&l.subscriber)?;
        // The card's municipality, else the placing one of the latest new alarm.
        let m = match card.as_ref().map(|c| c.municipality.as_str()) {
            Some(m) if !m.is_empty() => Some(m.to_owned()),
            _ => placed_by(store, &l.subscriber)?,
        };
        if let Some(m) = m {
            placed.insert(l.subscriber.clone(), m);
        }
        if let Some(c) = card {
            names.insert(l.subscriber.clone(), c.name);
        }
    }
    Ok(billing::rows(&lives, month, &placed, &names, home))
}

/// Writes the order's health notes and directions (and the placing municipality, whose
/// person it is) on the card and checks it as an edit of the register is: every field, and
/// the care provider and area against the directory.
fn card_checked(store: &Store, s: &mut Subscriber, new: &NewOrder) -> Result<(), CareError> {
    if let Some(m) = new
        .person
        .as_ref()
        .and_then(|p| p.placed_by.as_deref())
        .filter(|m| !m.trim().is_empty())
    {
        m.clone_into(&mut s.municipality);
    }
    if !new.health_notes.is_empty() {
        new.health_notes.clone_into(&mut s.health_notes);
    }
    if !new.directions.is_empty() {
        new.directions.clone_into(&mut s.access.entry_notes);
    }
    crate::registers::subscribers::normalize(s);
    let mut problems = crate::registers::subscribers::problems(s);
    problems.extend(crate::registers::directory::subscriber_problems(
        &store.directory()?,
        &s.care_provider,
        &s.area,
    ));
    match problems.as_slice() {
        [] => Ok(()),
        all => Err(invalid(
            "person",
            all.iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}
