//! Telecom incidents: when many devices of one telecom operator (or one area) fall silent
//! together, operators get ONE incident instead of a Call per device, the telecom provider is
//! told at once, and each affected care provider gets the list of its people (those who need
//! extra visits first), as the municipal routine asks (seed 001, 5.3.4-5.3.5).
//!
//! [`Incidents`] keeps the open incidents in memory and in the store. The supervision task
//! (`server.rs`) decides, with [`crate::supervision::detector::Detector`], when one opens,
//! which devices it takes and when it is resolved; this module makes it so:
//!
//! - the devices join the incident in triage (their silences and restorations are handled by
//!   the incident rule) and a waiting "communication lost" Call of theirs is withdrawn into it;
//! - notifications go to the outbox (durable; delivered with retries): `incident.opened` to
//!   the telecom provider of each operator involved, `incident.extra_visits` to each care
//!   provider (again, at most once a minute, when more of its people join), and
//!   `incident.resolved` to all of them, with the devices still silent (which get Calls);
//! - every change is saved durably before the consoles hear of it.
//!
//! `now` is a parameter everywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;

use crate::calls::{Calls, LiveEvent};
use crate::model::{Incident, IncidentDevice, IncidentEntry, IncidentKind};
use crate::outbox::{
    DeliveryFilter, IncidentSummary, Outbox, OutboxError, OutboxEvent, Recipient, VisitSubscriber,
    incident_subject,
};
use crate::store::{Store, StoreError};
use crate::telemetry::IncidentMetrics;

/// Most history lines kept per incident (the oldest are dropped beyond).
const MAX_HISTORY: usize = 500;

/// How often a care provider's list is sent again while more of its people join.
const UPDATE_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Why an incident change failed.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// No such open incident.
    #[error("no open incident {0}")]
    NotOpen(u64),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The outbox refused a notification.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// A silent device joining an incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joining {
    /// Device account.
    pub account: String,
    /// Its subscriber.
    pub subscriber: Option<String>,
    /// Its telecom operator.
    pub telecom_operator: Option<String>,
    /// When its deadline passed.
    pub silent_since: Timestamp,
}

pub use crate::calls::{IncidentDeviceView, IncidentView};

struct Open {
    incident: Incident,
    /// Telecom operators and care providers told so far, for the resolution.
    operators: BTreeSet<String>,
    providers: BTreeSet<String>,
    /// Care providers whose list grew since it was last sent, and when it was sent.
    dirty: BTreeSet<String>,
    last_sent: Timestamp,
}

/// The incidents.
pub struct Incidents {
    store: Store,
    calls: Arc<Calls>,
    outbox: Option<Outbox>,
    open: Mutex<HashMap<u64, Open>>,
    next_id: Mutex<u64>,
    metrics: IncidentMetrics,
}

impl std::fmt::Debug for Incidents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incidents").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn note(i: &mut Incident, at: Timestamp, what: String) {
    i.history.push(IncidentEntry { at, what });
    if i.history.len() > MAX_HISTORY {
        let extra = i.history.len() - MAX_HISTORY;
        i.history.drain(1..=extra);
    }
}

impl Incidents {
    /// Loads the open incidents; their devices rejoin them in triage.
    pub fn start(
        store: Store,
        calls: Arc<Calls>,
        outbox: Option<Outbox>,
    ) -> Result<Incidents, IncidentError> {
        let mut open = HashMap::new();
        for i in store.incidents(true, usize::MAX)? {
            calls
                .triage
                .join_incident(i.id, i.devices.iter().map(|d| d.account.clone()));
            let at = i.opened_at;
            open.insert(
                i.id,
                Open {
                    operators: BTreeSet::new(),
                    providers: BTreeSet::new(),
                    dirty: BTreeSet::new(),
                    last_sent: at,
                    incident: i,
                },
            );
        }
        let next_id = store.max_incident_id()? + 1;
        let this = Incidents {
            store,
            calls,
            outbox,
            open: Mutex::new(open),
            next_id: Mutex::new(next_id),
            metrics: IncidentMetrics::new(),
        };
        // Who was told is not stored: recompute it from the devices (the resolution goes to
        // the same recipients).
        {
            let mut look = this.lookup();
            let mut open = lock(&this.open);
            for o in open.values_mut() {
                for d in &o.incident.devices {
                    if let Some(op) = &d.telecom_operator {
                        o.operators.insert(op.clone());
                    }
                    if let Some(p) = look.provider(d.subscriber.as_deref()) {
                        o.providers.insert(p);
                    }
                }
            }
        }
        Ok(this)
    }

    /// Open incidents, oldest first.
    pub fn open_incidents(&self) -> Vec<Incident> {
        let mut v: Vec<Incident> = lock(&self.open)
            .values()
            .map(|o| o.incident.clone())
            .collect();
        v.sort_by_key(|i| i.id);
        v
    }

    /// The open incident of a group.
    pub fn open_for(&self, kind: IncidentKind, key: &str) -> Option<u64> {
        lock(&self.open)
            .values()
            .find(|o| o.incident.kind == kind && o.incident.key == key)
            .map(|o| o.incident.id)
    }

    /// A reader of subscribers and the directory for one operation (each read once).
    fn lookup(&self) -> Lookup<'_> {
        Lookup {
            store: &self.store,
            dir: self.store.directory().ok(),
            subs: HashMap::new(),
        }
    }

    fn enqueue(&self, ev: Result<OutboxEvent, OutboxError>) -> Result<usize, IncidentError> {
        match &self.outbox {
            Some(o) => Ok(o.enqueue(ev?)?.len()),
            None => Ok(0),
        }
    }

    /// Takes the devices into the incident in triage: their waiting Calls are withdrawn.
    fn take_in(&self, id: u64, key: &str, devices: &[Joining], now: Timestamp) -> usize {
        self.calls
            .triage
            .join_incident(id, devices.iter().map(|d| d.account.clone()));
        let note = format!("taken into telecom incident {id} ({key})");
        devices
            .iter()
            .filter(|d| {
                self.calls
                    .triage
                    .withdraw_into_incident(&d.account, d.subscriber.as_deref(), &note, now)
                    .is_some()
            })
            .count()
    }

    /// Declares an incident for a group with its silent devices; notifies the telecom
    /// provider(s) and the care providers. Durable before it returns.
    pub fn open(
        &self,
        kind: IncidentKind,
        key: &str,
        population: usize,
        devices: Vec<Joining>,
        now: Timestamp,
    ) -> Result<Incident, IncidentError> {
        let id = {
            let mut n = lock(&self.next_id);
            let id = *n;
            *n += 1;
            id
        };
        let r = self.open_as(id, kind, key, population, devices, now);
        if r.is_err() {
            // Not opened after all: its devices' silences are Calls again.
            self.calls.triage.end_incident(id);
        }
        r
    }

    fn open_as(
        &self,
        id: u64,
        kind: IncidentKind,
        key: &str,
        population: usize,
        devices: Vec<Joining>,
        now: Timestamp,
    ) -> Result<Incident, IncidentError> {
        let mut incident = Incident {
            id,
            kind,
            key: key.to_owned(),
            opened_at: now,
            resolved_at: None,
            population,
            devices: devices
                .iter()
                .map(|d| IncidentDevice {
                    account: d.account.clone(),
                    subscriber: d.subscriber.clone(),
                    telecom_operator: d.telecom_operator.clone(),
                    silent_since: d.silent_since,
                    restored_at: None,
                })
                .collect(),
            history: Vec::new(),
        };
        note(
            &mut incident,
            now,
            format!(
                "opened: {} of {population} devices of {} {key} silent",
                devices.len(),
                match kind {
                    IncidentKind::TelecomOperator => "telecom operator",
                    IncidentKind::Area => "area",
                }
            ),
        );
        let withdrawn = self.take_in(id, key, &devices, now);
        if withdrawn > 0 {
            note(
                &mut incident,
                now,
                format!("{withdrawn} waiting Calls of these devices taken into the incident"),
            );
        }
        let operators: BTreeSet<String> = devices
            .iter()
            .filter_map(|d| d.telecom_operator.clone())
            .collect();
        let mut look = self.lookup();
        let mut lists = look.visit_lists(&incident);
        let providers: BTreeSet<String> = lists.keys().cloned().collect();
        let summary = IncidentSummary::of(&incident);
        let mut sent = 0;
        for op in &operators {
            let accounts: Vec<String> = devices
                .iter()
                .filter(|d| d.telecom_operator.as_deref() == Some(op))
                .map(|d| d.account.clone())
                .collect();
            sent += self.enqueue(OutboxEvent::incident_opened(op, &summary, &accounts))?;
        }
        for p in &providers {
            let list = lists.remove(p).unwrap_or_default();
            sent += self.enqueue(OutboxEvent::extra_visits(p, &summary, list))?;
        }
        note(
            &mut incident,
            now,
            format!(
                "{sent} notifications queued: telecom {}, care providers {}",
                join_or_none(&operators),
                join_or_none(&providers)
            ),
        );
        self.save(&incident)?;
        tracing::warn!(
            incident = id,
            kind = kind.as_str(),
            key,
            devices = devices.len(),
            population,
            "telecom incident opened"
        );
        self.metrics.declared(kind.as_str());
        lock(&self.open).insert(
            id,
            Open {
                incident: incident.clone(),
                operators,
                providers,
                dirty: BTreeSet::new(),
                last_sent: now,
            },
        );
        self.tell(&incident);
        Ok(incident)
    }

    /// More silent devices join an open incident (the care providers' lists are sent again
    /// by [`Incidents::send_updates`]).
    pub fn attach(
        &self,
        id: u64,
        devices: Vec<Joining>,
        now: Timestamp,
    ) -> Result<(), IncidentError> {
        if devices.is_empty() {
            return Ok(());
        }
        let mut open = lock(&self.open);
        let o = open.get_mut(&id).ok_or(IncidentError::NotOpen(id))?;
        let known: std::collections::HashSet<&str> = o
            .incident
            .devices
            .iter()
            .map(|x| x.account.as_str())
            .collect();
        let fresh: Vec<Joining> = devices
            .into_iter()
            .filter(|d| !known.contains(d.account.as_str()))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let key = o.incident.key.clone();
        let withdrawn = self.take_in(id, &key, &fresh, now);
        let mut look = self.lookup();
        for d in &fresh {
            o.incident.devices.push(IncidentDevice {
                account: d.account.clone(),
                subscriber: d.subscriber.clone(),
                telecom_operator: d.telecom_operator.clone(),
                silent_since: d.silent_since,
                restored_at: None,
            });
            if let Some(p) = look.provider(d.subscriber.as_deref()) {
                o.providers.insert(p.clone());
                o.dirty.insert(p);
            }
            if let Some(op) = &d.telecom_operator {
                o.operators.insert(op.clone());
            }
        }
        let n = fresh.len();
        let mut line = format!("{n} more devices silent");
        if withdrawn > 0 {
            line.push_str(&format!(" ({withdrawn} waiting Calls taken in)"));
        }
        note(&mut o.incident, now, line);
        self.save(&o.incident)?;
        let i = o.incident.clone();
        drop(open);
        self.tell(&i);
        Ok(())
    }

    /// Devices of open incidents report again (one pass over each incident; each changed
    /// incident saved and told once). Returns how many devices were marked.
    pub fn restored(
        &self,
        accounts: &std::collections::HashSet<String>,
        now: Timestamp,
    ) -> Result<usize, IncidentError> {
        if accounts.is_empty() {
            return Ok(0);
        }
        let mut changed = Vec::new();
        let mut n = 0;
        {
            let mut open = lock(&self.open);
            for o in open.values_mut() {
                let mut here = 0;
                for d in o
                    .incident
                    .devices
                    .iter_mut()
                    .filter(|d| d.restored_at.is_none() && accounts.contains(&d.account))
                {
                    d.restored_at = Some(now);
                    here += 1;
                }
                if here > 0 {
                    n += here;
                    self.save(&o.incident)?;
                    changed.push(o.incident.clone());
                }
            }
        }
        for i in &changed {
            self.tell(i);
        }
        Ok(n)
    }

    /// Sends the care providers' lists again where more of their people joined, at most once
    /// a minute per incident.
    pub fn send_updates(&self, now: Timestamp) -> Result<(), IncidentError> {
        let mut open = lock(&self.open);
        for o in open.values_mut() {
            if o.dirty.is_empty() || now < o.last_sent.checked_add(UPDATE_EVERY).unwrap_or(now) {
                continue;
            }
            let summary = IncidentSummary::of(&o.incident);
            let dirty = std::mem::take(&mut o.dirty);
            let mut lists = self.lookup().visit_lists(&o.incident);
            let mut sent = 0;
            for p in &dirty {
                let list = lists.remove(p).unwrap_or_default();
                sent += self.enqueue(OutboxEvent::extra_visits(p, &summary, list))?;
            }
            o.last_sent = now;
            note(
                &mut o.incident,
                now,
                format!(
                    "{sent} updated extra-visit lists queued ({})",
                    join_or_none(&dirty)
                ),
            );
            self.save(&o.incident)?;
        }
        Ok(())
    }

    /// The incident is over (most devices report again): the recipients are told, the
    /// devices leave it in triage. Returns the devices still silent (each gets its own Call).
    pub fn resolve(&self, id: u64, now: Timestamp) -> Result<Vec<Joining>, IncidentError> {
        let Some(mut o) = lock(&self.open).remove(&id) else {
            return Err(IncidentError::NotOpen(id));
        };
        let i = &mut o.incident;
        i.resolved_at = Some(now);
        let still: Vec<&IncidentDevice> = i
            .devices
            .iter()
            .filter(|d| d.restored_at.is_none())
            .collect();
        let still_accounts: Vec<String> = still.iter().map(|d| d.account.clone()).collect();
        let stragglers: Vec<Joining> = still
            .iter()
            .map(|d| Joining {
                account: d.account.clone(),
                subscriber: d.subscriber.clone(),
                telecom_operator: d.telecom_operator.clone(),
                silent_since: d.silent_since,
            })
            .collect();
        let summary = IncidentSummary::of(i);
        let mut sent = 0;
        for op in &o.operators {
            let accounts: Vec<String> = still_accounts.clone();
            sent += self.enqueue(OutboxEvent::incident_resolved(
                Recipient::telecom(op),
                &summary,
                now,
                &accounts,
                Vec::new(),
            ))?;
        }
        let mut lists = self.lookup().visit_lists(i);
        for p in &o.providers {
            let list = lists.remove(p).unwrap_or_default();
            sent += self.enqueue(OutboxEvent::incident_resolved(
                Recipient::care_provider(p),
                &summary,
                now,
                &still_accounts,
                list,
            ))?;
        }
        note(
            i,
            now,
            format!(
                "resolved: {} of {} devices report again; {} still silent get their own Calls; {sent} notifications queued",
                i.devices.len() - still_accounts.len(),
                i.devices.len(),
                still_accounts.len()
            ),
        );
        self.calls.triage.end_incident(id);
        self.save(i)?;
        tracing::info!(
            incident = id,
            still_silent = still_accounts.len(),
            "telecom incident resolved"
        );
        self.tell(i);
        Ok(stragglers)
    }

    fn save(&self, i: &Incident) -> Result<(), IncidentError> {
        self.store.save_incident(i)?;
        Ok(())
    }

    fn tell(&self, i: &Incident) {
        self.metrics.open.set(lock(&self.open).len() as f64);
        if self.calls.live.receiver_count() > 0 {
            let _ = self
                .calls
                .live
                .send(LiveEvent::Incident(Arc::new(self.view(i))));
        }
    }

    /// The console's view of an incident.
    pub fn view(&self, i: &Incident) -> IncidentView {
        let mut devices: Vec<IncidentDeviceView> = i
            .devices
            .iter()
            .map(|d| {
                let sub = d
                    .subscriber
                    .as_deref()
                    .and_then(|s| self.store.subscriber(s).ok().flatten());
                IncidentDeviceView {
                    device: d.clone(),
                    subscriber_name: sub.as_ref().map(|s| s.name.clone()),
                    care_provider: sub
                        .as_ref()
                        .map(|s| s.care_provider.clone())
                        .filter(|c| !c.is_empty()),
                    needs_extra_visits: sub.as_ref().is_some_and(|s| s.needs_extra_visits),
                }
            })
            .collect();
        devices.sort_by(|a, b| {
            (a.device.restored_at.is_some(), !a.needs_extra_visits)
                .cmp(&(b.device.restored_at.is_some(), !b.needs_extra_visits))
        });
        let notifications = match &self.outbox {
            Some(o) => o
                .deliveries(&DeliveryFilter {
                    subject: Some(incident_subject(i.id)),
                    ..DeliveryFilter::default()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        IncidentView {
            id: i.id,
            kind: i.kind,
            key: i.key.clone(),
            opened_at: i.opened_at,
            resolved_at: i.resolved_at,
            population: i.population,
            silent: i.devices.iter().filter(|d| d.restored_at.is_none()).count(),
            devices,
            history: i.history.clone(),
            notifications,
        }
    }
}

/// Subscribers and the directory, each read once for one operation.
struct Lookup<'a> {
    store: &'a Store,
    dir: Option<crate::registers::directory::Directory>,
    subs: HashMap<String, Option<crate::model::Subscriber>>,
}

impl Lookup<'_> {
    fn subscriber(&mut self, id: &str) -> Option<&crate::model::Subscriber> {
        if !self.subs.contains_key(id) {
            let s = self.store.subscriber(id).ok().flatten();
            self.subs.insert(id.to_owned(), s);
        }
        self.subs.get(id).and_then(Option::as_ref)
    }

    /// The care provider id of a subscriber (the directory's id when the register's name
    /// matches one, else the register's text).
    fn provider(&mut self, subscriber: Option<&str>) -> Option<String> {
        let cp = self
            .subscriber(subscriber?)?
            .care_provider
            .trim()
            .to_owned();
        if cp.is_empty() {
            return None;
        }
        Some(
            self.dir
                .as_ref()
                .and_then(|d| d.provider_for(&cp))
                .map_or(cp.clone(), |p| p.id.clone()),
        )
    }

    /// Each care provider's people among the incident's devices still silent.
    fn visit_lists(&mut self, incident: &Incident) -> BTreeMap<String, Vec<VisitSubscriber>> {
        let mut by_sub: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in incident.devices.iter().filter(|d| d.restored_at.is_none()) {
            if let Some(s) = &d.subscriber {
                by_sub.entry(s.clone()).or_default().push(d.account.clone());
            }
        }
        let mut out: BTreeMap<String, Vec<VisitSubscriber>> = BTreeMap::new();
        for (id, accounts) in by_sub {
            let Some(provider) = self.provider(Some(&id)) else {
                continue;
            };
            let Some(s) = self.subscriber(&id) else {
                continue;
            };
            let v = VisitSubscriber {
                name: s.name.clone(),
                address: [s.address.as_str(), &format!("{} {}", s.postcode, s.city)]
                    .iter()
                    .map(|p| p.trim())
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
                    .join(", "),
                phone: s.phone.clone(),
                needs_extra_visits: s.needs_extra_visits,
                id,
                accounts,
            };
            out.entry(provider).or_default().push(v);
        }
        out
    }
}

fn join_or_none(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}
