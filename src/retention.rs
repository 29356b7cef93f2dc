//! Retention of a subscriber's personal data after the alarm has ended (issue 18, item 8):
//! vakt deletes the card and anonymises what must stay countable a configured time after
//! the end (`[retention] subscriber_days_after_end`), each step audit-logged by `vakt`.
//!
//! [`Retention::survey`] says, at `now`, who is due and who is held and why (the rule is
//! [`crate::model::retention`]); [`Retention::sweep`] does it; [`run`] sweeps at start and
//! then hourly, on the blocking pool, beside intake (nothing here takes a lock of the alarm
//! path). `vakt retention run [--dry-run]` is the same sweep from the command line, and
//! `GET /api/retention` the survey for supervisors.
//!
//! For each subscriber due, in this order, each step atomic, durable and safe to repeat, so
//! a sweep cut short (a crash, a storage error) is finished by the next one
//! ([`crate::store`]'s retention steps):
//! 1. their pseudonym, random, chosen once and kept only while their retention is under way;
//! 2. each of their closed Calls: its recordings deleted (`recording.delete`), its
//!    dispatches' free text blanked (a visit's outcome kept), its undelivered care-system
//!    events withdrawn, then the Call and its review rewritten with the pseudonym and without
//!    the person's words (`retention.call`); the closed work orders of their devices the
//!    same way, and their place in resolved telecom incidents;
//! 3. the undelivered care-system events of their orders and key receipts withdrawn
//!    (`retention.delivery`: the body holds the personal number; delivered ones are left,
//!    their bodies go by the outbox's own pruning);
//! 4. their life, orders and receipts moved to the pseudonym, the free text blanked, in one
//!    transaction;
//! 5. the card and the response plans deleted (`retention.subscriber`, with the counts);
//! 6. the pseudonym forgotten: nothing in vakt leads from it back to the person.
//!
//! The billing export and the visits report still count them, under the pseudonym and
//! without a name. Logs name the subscriber id and counts, never a name or a number.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::model::keys::{Custody, Holder, ReceiptState};
use crate::model::life::Life;
use crate::model::retention::{
    self as rule, DEFAULT_DAYS_AFTER_END, Hold, MAX_DAYS_AFTER_END, MIN_DAYS_AFTER_END, Verdict,
};
use crate::model::{AuditEntry, Call, CallState, Subscriber};
use crate::outbox::{Outbox, OutboxError};
use crate::store::archive::ArchiveError;
use crate::store::{Store, StoreError};
use crate::telemetry::{RecordingMetrics, RetentionMetrics};

pub mod calls;

/// How often [`run`] sweeps (after the sweep at start).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3_600);

/// Who retention's changes are by, in the audit log.
pub const BY: &str = "vakt";

/// Most deliveries looked at per subject when withdrawing.
const MAX_DELIVERIES_PER_SUBJECT: usize = 1_000;

/// `[retention]`: how long a subscriber's personal data is kept after the end, and closed
/// Calls after their closing.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days after the day the alarm ended (its last day in service) before the card is
    /// deleted and the rest anonymised ([`DEFAULT_DAYS_AFTER_END`]: a year, see there).
    pub subscriber_days_after_end: u32,
    /// Days after its closing before a closed Call is deleted whole ([`calls`]); 0 (the
    /// default): kept (the subscriber's retention anonymises it after the alarm ends).
    pub closed_call_days: u32,
    /// Where closed Calls go, as gzip-compressed JSON lines, before they are deleted;
    /// empty: not archived. A relative path is under `data_dir`.
    pub archive_dir: PathBuf,
}

impl Default for RetentionConfig {
    fn default() -> RetentionConfig {
        RetentionConfig {
            subscriber_days_after_end: DEFAULT_DAYS_AFTER_END,
            closed_call_days: 0,
            archive_dir: PathBuf::new(),
        }
    }
}

impl RetentionConfig {
    /// What is wrong (empty if nothing).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(MIN_DAYS_AFTER_END..=MAX_DAYS_AFTER_END).contains(&self.subscriber_days_after_end) {
            out.push(format!(
                "[retention] subscriber_days_after_end must be {MIN_DAYS_AFTER_END} to {MAX_DAYS_AFTER_END}"
            ));
        }
        use calls::{MAX_CLOSED_CALL_DAYS as MAX, MIN_CLOSED_CALL_DAYS as MIN};
        if self.closed_call_days != 0 && !(MIN..=MAX).contains(&self.closed_call_days) {
            out.push(format!(
                "[retention] closed_call_days must be 0 (kept) or {MIN} to {MAX}"
            ));
        }
        out
    }
}

/// The options of [`Retention`].
#[derive(Clone, Debug)]
pub struct RetentionOptions {
    /// Days after the end.
    pub days_after_end: u32,
    /// The centre's zone (the day after the end starts at its midnight).
    pub tz: TimeZone,
    /// The recordings' folder.
    pub recordings: PathBuf,
    /// Where the recordings of closed Calls deleted by age are archived first, if anywhere
    /// (a subscriber's retention never archives theirs).
    pub recording_archive: Option<PathBuf>,
    /// How closed Calls are kept by age (`None`: not deleted by age).
    pub closed_calls: Option<calls::CallAge>,
}

/// Why a survey or a sweep failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The outbox failed.
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    /// The recordings' folder could not be read or a recording not deleted.
    #[error("recordings: {0}")]
    Recordings(String),
    /// An archive file could not be written: what it would hold is kept.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// A subscriber due, or held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Due {
    /// The subscriber.
    pub subscriber: String,
    /// A retention of theirs was cut short and is finished now.
    pub resumed: bool,
    /// What holds it (empty: it is done at this sweep).
    pub held: Vec<Hold>,
}

/// Who is due and who is held, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Survey {
    /// Due (held or not), by subscriber.
    pub due: Vec<Due>,
    /// Ended and not due yet.
    pub waiting: usize,
    /// Anonymised before.
    pub done_before: usize,
}

/// What retention did for one subscriber.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Done {
    /// The subscriber (their id; the pseudonym is not told).
    pub subscriber: String,
    /// Calls anonymised.
    pub calls: usize,
    /// Dispatches anonymised.
    pub dispatches: usize,
    /// Recordings deleted.
    pub recordings: usize,
    /// Undelivered care-system events withdrawn.
    pub withdrawn: usize,
    /// Orders anonymised.
    pub orders: usize,
    /// Key receipts anonymised.
    pub receipts: usize,
    /// Work orders of their devices anonymised.
    pub work_orders: usize,
    /// Telecom incidents their devices were in, anonymised.
    pub incidents: usize,
    /// Whether a card was deleted.
    pub card: bool,
    /// Response plan versions deleted.
    pub plans: usize,
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The survey it acted on.
    pub survey: Survey,
    /// The subscribers done.
    pub done: Vec<Done>,
    /// The subscribers that failed (tried again at the next sweep), with why.
    pub failed: Vec<(String, String)>,
    /// What the sweep of closed Calls by age did (empty when it is off).
    pub calls: calls::CallsSwept,
    /// Why the sweep of closed Calls stopped, if it failed (tried again at the next sweep).
    pub calls_failed: Option<String>,
}

/// The retention service.
pub struct Retention {
    store: Store,
    outbox: Option<Outbox>,
    opts: RetentionOptions,
    metrics: RetentionMetrics,
    recording_metrics: RecordingMetrics,
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention").finish_non_exhaustive()
    }
}

/// The records of one subscriber a sweep found.
struct Theirs<'a> {
    calls: &'a [u64],
    work_orders: &'a [u64],
    incidents: &'a [u64],
}

/// What the store holds open, gathered once per survey.
struct Open {
    calls: BTreeMap<String, Vec<Call>>,
    dispatches: BTreeMap<u64, Vec<u64>>,
    reviews: BTreeSet<u64>,
    conversations: BTreeMap<u64, Vec<u64>>,
    /// Per subscriber, their devices' work orders: id and whether it is open.
    work_orders: BTreeMap<String, Vec<(u64, bool)>>,
    /// Per subscriber, the telecom incidents with their devices: id and whether it is open.
    incidents: BTreeMap<String, Vec<(u64, bool)>>,
}

impl Retention {
    /// The service over `store`; the care system's undelivered events withdrawn through
    /// `outbox` (none: directly in the store, as the command line does with vakt stopped).
    pub fn new(store: Store, outbox: Option<Outbox>, opts: RetentionOptions) -> Retention {
        Retention {
            store,
            outbox,
            opts,
            metrics: RetentionMetrics::new(),
            recording_metrics: RecordingMetrics::new(),
        }
    }

    fn open(&self) -> Result<Open, StoreError> {
        let mut calls: BTreeMap<String, Vec<Call>> = BTreeMap::new();
        for c in self.store.call_heads()? {
            if let Some(s) = c.subscriber.clone() {
                calls.entry(s).or_default().push(c);
            }
        }
        let mut dispatches: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for d in self.store.open_dispatches()? {
            dispatches.entry(d.call).or_default().push(d.id);
        }
        let reviews = self
            .store
            .pending_reviews()?
            .into_iter()
            .map(|r| r.call)
            .collect();
        let mut conversations: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for c in self.store.open_conversations()? {
            if let Some(call) = c.call {
                conversations.entry(call).or_default().push(c.id);
            }
        }
        let mut work_orders: BTreeMap<String, Vec<(u64, bool)>> = BTreeMap::new();
        for o in self
            .store
            .newest_work_orders(usize::MAX, usize::MAX, |o| o.subscriber.is_some())?
        {
            if let Some(s) = o.subscriber {
                work_orders
                    .entry(s)
                    .or_default()
                    .push((o.id, o.state.is_open()));
            }
        }
        let mut incidents: BTreeMap<String, Vec<(u64, bool)>> = BTreeMap::new();
        for i in self.store.incidents(false, usize::MAX)? {
            let subs: BTreeSet<&String> = i
                .devices
                .iter()
                .filter_map(|d| d.subscriber.as_ref())
                .collect();
            for s in subs {
                incidents
                    .entry(s.clone())
                    .or_default()
                    .push((i.id, i.is_open()));
            }
        }
        Ok(Open {
            calls,
            dispatches,
            reviews,
            conversations,
            work_orders,
            incidents,
        })
    }

    /// What is still open about `subscriber`.
    fn holds(&self, subscriber: &str, open: &Open) -> Result<Vec<Hold>, StoreError> {
        let mut out = Vec::new();
        for o in self.store.orders_of(subscriber)? {
            if o.is_open() {
                out.push(Hold::OpenOrder { order: o.id });
            }
        }
        for c in open.calls.get(subscriber).into_iter().flatten() {
            if c.state != CallState::Closed {
                out.push(Hold::OpenCall { call: c.id });
            }
            for &d in open.dispatches.get(&c.id).into_iter().flatten() {
                out.push(Hold::OpenDispatch { dispatch: d });
            }
            if open.reviews.contains(&c.id) {
                out.push(Hold::PendingReview { call: c.id });
            }
            for &v in open.conversations.get(&c.id).into_iter().flatten() {
                out.push(Hold::OpenConversation { conversation: v });
            }
        }
        for &(id, open) in open.work_orders.get(subscriber).into_iter().flatten() {
            if open {
                out.push(Hold::OpenWorkOrder { work_order: id });
            }
        }
        for &(id, open) in open.incidents.get(subscriber).into_iter().flatten() {
            if open {
                out.push(Hold::OpenIncident { incident: id });
            }
        }
        let receipts = self.store.receipts_of(subscriber)?;
        for r in &receipts {
            if r.state == ReceiptState::Pending {
                out.push(Hold::PendingReceipt { receipt: r.id });
            }
        }
        for h in Custody::from_receipts(&receipts).holdings() {
            if h.holder == Holder::Subscriber {
                continue;
            }
            out.push(Hold::KeysOut {
                holder: h.holder.to_string(),
                count: h.keys.iter().map(|k| u32::from(k.count)).sum(),
            });
        }
        Ok(out)
    }

    /// Who is due at `now`, and who is held and why. Blocking.
    pub fn survey(&self, now: Timestamp) -> Result<Survey, RetentionError> {
        Ok(self.survey_open(now)?.0)
    }

    /// The survey, with what the store holds open when anyone is due (read once for all).
    fn survey_open(&self, now: Timestamp) -> Result<(Survey, Option<Open>), RetentionError> {
        let mut out = Survey::default();
        let under_way = self.store.retentions_under_way()?;
        let lives = self.store.lives()?;
        let days = self.opts.days_after_end;
        let mut due: Vec<(String, bool, Option<&Life>)> = under_way
            .iter()
            .map(|(s, _)| (s.clone(), true, None))
            .collect();
        for l in &lives {
            if under_way.iter().any(|(s, _)| *s == l.subscriber) {
                continue;
            }
            match rule::verdict(l, Vec::new(), days, &self.opts.tz, now) {
                Verdict::Due | Verdict::Held(_) => due.push((l.subscriber.clone(), false, Some(l))),
                Verdict::NotYet { .. } => out.waiting += 1,
                Verdict::Done => out.done_before += 1,
                Verdict::InService => {}
            }
        }
        if due.is_empty() {
            return Ok((out, None));
        }
        let open = self.open()?;
        for (subscriber, resumed, life) in due {
            let holds = self.holds(&subscriber, &open)?;
            let held = match life {
                Some(l) => match rule::verdict(l, holds, days, &self.opts.tz, now) {
                    Verdict::Held(h) => h,
                    _ => Vec::new(),
                },
                None => holds,
            };
            out.due.push(Due {
                subscriber,
                resumed,
                held,
            });
        }
        out.due.sort_by(|a, b| a.subscriber.cmp(&b.subscriber));
        Ok((out, Some(open)))
    }

    /// Deletes and anonymises the data of every subscriber due at `now` and not held.
    /// Blocking. A subscriber that fails is reported and left for the next sweep.
    pub fn sweep(&self, now: Timestamp) -> Result<Report, RetentionError> {
        let (survey, open) = match self.survey_open(now) {
            Ok(s) => s,
            Err(e) => {
                self.metrics.failures.increment(1);
                return Err(e);
            }
        };
        let held = survey.due.iter().filter(|d| !d.held.is_empty()).count();
        self.metrics.held.set(held as f64);
        let mut report = Report::default();
        for d in survey.due.iter().filter(|d| d.held.is_empty()) {
            // Their closed Calls, as the survey read them (an open one would have held them).
            let calls: Vec<u64> = open
                .as_ref()
                .and_then(|o| o.calls.get(&d.subscriber))
                .into_iter()
                .flatten()
                .filter(|c| c.state == CallState::Closed)
                .map(|c| c.id)
                .collect();
            let of = |m: Option<&Vec<(u64, bool)>>| -> Vec<u64> {
                m.into_iter().flatten().map(|&(id, _)| id).collect()
            };
            let work_orders = of(open.as_ref().and_then(|o| o.work_orders.get(&d.subscriber)));
            let incidents = of(open.as_ref().and_then(|o| o.incidents.get(&d.subscriber)));
            let theirs = Theirs {
                calls: &calls,
                work_orders: &work_orders,
                incidents: &incidents,
            };
            match self.one(&d.subscriber, &theirs, now) {
                Ok(done) => {
                    self.metrics.subscribers.increment(1);
                    tracing::info!(
                        subscriber = %done.subscriber,
                        calls = done.calls,
                        recordings = done.recordings,
                        orders = done.orders,
                        receipts = done.receipts,
                        withdrawn = done.withdrawn,
                        "a subscriber's data deleted and anonymised after the retention time"
                    );
                    report.done.push(done);
                }
                Err(e) => {
                    self.metrics.failures.increment(1);
                    tracing::warn!(subscriber = %d.subscriber, error = %e, "a subscriber's retention failed; tried again at the next sweep");
                    report.failed.push((d.subscriber.clone(), e.to_string()));
                }
            }
        }
        // The held are there at every sweep until settled: one line, the reasons at debug.
        for d in survey.due.iter().filter(|d| !d.held.is_empty()) {
            let why: Vec<String> = d.held.iter().map(ToString::to_string).collect();
            tracing::debug!(subscriber = %d.subscriber, held = %why.join("; "), "a subscriber due for retention is held");
        }
        if held > 0 {
            tracing::info!(
                held,
                "subscribers due for retention are held by what is still open about them (`GET /api/retention` says what)"
            );
        }
        report.survey = survey;
        if let Some(age) = &self.opts.closed_calls {
            match calls::sweep(&self.sweeper(), age, now, false) {
                Ok(c) => report.calls = c,
                Err(e) => {
                    self.metrics.failures.increment(1);
                    tracing::warn!(error = %e, "the sweep of closed Calls past their retention stopped; tried again at the next sweep");
                    report.calls_failed = Some(e.to_string());
                }
            }
        }
        Ok(report)
    }

    /// The closed Calls due at `now` by age and those held, nothing deleted (empty when
    /// Calls are not deleted by age). Blocking.
    pub fn survey_calls(&self, now: Timestamp) -> Result<calls::CallsSwept, RetentionError> {
        match &self.opts.closed_calls {
            Some(age) => calls::sweep(&self.sweeper(), age, now, true),
            None => Ok(calls::CallsSwept::default()),
        }
    }

    fn sweeper(&self) -> calls::Sweeper<'_> {
        calls::Sweeper {
            store: &self.store,
            recordings: &self.opts.recordings,
            recording_archive: self.opts.recording_archive.as_deref(),
            metrics: &self.metrics,
            recording_metrics: &self.recording_metrics,
        }
    }

    fn audit(
        &self,
        action: &str,
        at: Timestamp,
        call: Option<u64>,
        subscriber: Option<&str>,
        detail: String,
    ) -> Result<(), StoreError> {
        self.store.audit(AuditEntry {
            seq: 0,
            at,
            user: BY.into(),
            action: action.into(),
            call,
            subscriber: subscriber.map(str::to_owned),
            detail,
        })?;
        Ok(())
    }

    /// Withdraws the undelivered events about `subject`; how many.
    fn withdraw(&self, subject: &str, now: Timestamp) -> Result<usize, RetentionError> {
        let why = "withdrawn: the subscriber's data was deleted after the retention time";
        let mut n = 0;
        for r in self
            .store
            .outbox_of_subject(subject, MAX_DELIVERIES_PER_SUBJECT)?
        {
            if r.delivered_at.is_some() {
                continue;
            }
            // Withdrawn first and then logged: one delivered meanwhile is neither. (A crash
            // between the two leaves the record's `last_error` saying it was withdrawn.)
            let withdrawn = match &self.outbox {
                Some(o) => o.withdraw(r.id, why)?,
                None => self.store.outbox_withdraw(r.id, why)?,
            };
            if withdrawn {
                self.audit(
                    "retention.delivery",
                    now,
                    None,
                    None,
                    format!(
                        "delivery {} ({}, {subject}) to {}",
                        r.id, r.event, r.endpoint
                    ),
                )?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// One subscriber's retention, from wherever an earlier one stopped.
    fn one(
        &self,
        subscriber: &str,
        theirs: &Theirs<'_>,
        now: Timestamp,
    ) -> Result<Done, RetentionError> {
        let store = &self.store;
        let pseudonym = store.begin_retention(subscriber, &rule::pseudonym(rand::random()))?;
        let mut done = Done {
            subscriber: subscriber.to_owned(),
            ..Done::default()
        };
        let card = store.subscriber(subscriber)?;
        let life = store.life(subscriber)?;
        let receipts = store.receipts_of(subscriber)?;
        let words = personal_words(card.as_ref(), life.as_ref(), &receipts);

        // 2. The closed Calls still naming them.
        for &id in theirs.calls {
            let Some(mut call) = store.call(id)? else {
                continue;
            };
            if call.state != CallState::Closed || call.subscriber.as_deref() != Some(subscriber) {
                continue;
            }
            let ids = BTreeSet::from([call.id]);
            // Not archived: nothing of the person is to be left.
            let swept = crate::voice::retention::delete_of_calls(&self.opts.recordings, None, &ids)
                .map_err(|e| RetentionError::Recordings(e.to_string()))?;
            for d in &swept.deleted {
                self.recording_metrics.deleted.increment(1);
                store.audit(crate::voice::retention::audit_entry(d, now))?;
            }
            if let Some(f) = swept.failed.first() {
                self.recording_metrics.failure("delete");
                return Err(RetentionError::Recordings(format!(
                    "{}: {}",
                    f.file_name, f.error
                )));
            }
            done.recordings += swept.deleted.len();
            let mut dispatches = store.dispatches_of_call(call.id)?;
            for d in &mut dispatches {
                let (outcome, _) = crate::dispatch::visits::outcome_and_note(&d.note);
                d.note = outcome.to_owned();
                d.instruction = String::new();
            }
            if !dispatches.is_empty() {
                store.save_dispatches(&dispatches)?;
            }
            done.dispatches += dispatches.len();
            done.withdrawn += self.withdraw(&format!("call/{}", call.id), now)?;
            let mut review = store.review(call.id)?;
            if let Some(r) = &mut review {
                rule::anonymise_review(r, &pseudonym);
            }
            rule::anonymise_call(&mut call, &pseudonym);
            self.audit(
                "retention.call",
                now,
                Some(call.id),
                None,
                format!(
                    "the person's words out, {} dispatch(es), {} recording(s) deleted",
                    dispatches.len(),
                    swept.deleted.len()
                ),
            )?;
            store.rewrite_closed_call(&call, review.as_ref())?;
            self.metrics.calls.increment(1);
            done.calls += 1;
        }

        // The work orders of their devices (closed: an open one holds them).
        let mut changed = Vec::new();
        for &id in theirs.work_orders {
            if let Some(mut o) = store.work_order(id)? {
                if !o.state.is_open() && o.subscriber.as_deref() == Some(subscriber) {
                    rule::anonymise_work_order(&mut o, &pseudonym);
                    changed.push(o);
                }
            }
        }
        if !changed.is_empty() {
            store.save_work_orders(&changed, None)?;
        }
        done.work_orders = changed.len();
        // Their place in resolved telecom incidents (an open one holds them).
        for &id in theirs.incidents {
            if let Some(mut i) = store.incident(id)? {
                if !i.is_open() && rule::anonymise_incident(&mut i, subscriber, &pseudonym) {
                    store.save_incident(&i)?;
                    done.incidents += 1;
                }
            }
        }

        // 3 and 4. The life, its orders and receipts.
        if let Some(before) = life {
            let mut orders = store.orders_of(subscriber)?;
            for o in &orders {
                done.withdrawn += self.withdraw(&format!("order/{}", o.id), now)?;
            }
            for r in &receipts {
                done.withdrawn += self.withdraw(&format!("receipt/{}", r.id), now)?;
            }
            let external: Vec<String> = orders
                .iter()
                .filter_map(|o| o.external_id.clone())
                .collect();
            for o in &mut orders {
                rule::anonymise_order(o, &pseudonym);
            }
            let mut receipts = receipts;
            for r in &mut receipts {
                rule::anonymise_receipt(r, &pseudonym);
            }
            let mut after = before.clone();
            rule::anonymise_life(&mut after, &pseudonym, &words, now);
            after.municipality = card
                .as_ref()
                .map(|c| c.municipality.trim())
                .filter(|m| !m.is_empty())
                .map(str::to_owned);
            store.move_life(subscriber, &before, &after, &orders, &external, &receipts)?;
            done.orders = orders.len();
            done.receipts = receipts.len();
        }

        // 5. The card and the plans.
        self.audit(
            "retention.subscriber",
            now,
            None,
            Some(subscriber),
            format!(
                "card and response plans deleted; alarm life, {} order(s), {} receipt(s), {} Call(s), {} work order(s), {} incident(s) anonymised; {} recording(s) deleted; {} undelivered event(s) withdrawn",
                done.orders,
                done.receipts,
                done.calls,
                done.work_orders,
                done.incidents,
                done.recordings,
                done.withdrawn
            ),
        )?;
        done.plans = store.delete_plans(subscriber)?;
        done.card = store.delete_subscriber(subscriber)?;

        // 6. The pseudonym forgotten.
        store.end_retention(subscriber)?;
        Ok(done)
    }
}

/// The person's words that may be quoted in free text: name, personal number, address,
/// phone, the contacts' names and phones, and who signed for them.
fn personal_words(
    card: Option<&Subscriber>,
    life: Option<&Life>,
    receipts: &[crate::model::keys::Receipt],
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = card {
        out.extend([
            c.name.clone(),
            c.personal_number.clone(),
            c.address.clone(),
            c.phone.clone(),
        ]);
        for k in &c.contacts {
            out.extend([k.name.clone(), k.phone.clone()]);
        }
    }
    if let Some(c) = life.and_then(|l| l.consent.as_ref()) {
        out.push(c.signed_by.clone());
    }
    for r in receipts {
        if let ReceiptState::Signed {
            handed_by,
            received_by,
            ..
        } = &r.state
        {
            if r.from == Holder::Subscriber {
                out.push(handed_by.clone());
            }
            if r.to == Holder::Subscriber {
                out.push(received_by.clone());
            }
        }
    }
    out.retain(|w| w.trim().chars().count() >= 3);
    // Longest first, so a whole name goes before its parts.
    out.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
    out.dedup();
    out
}

/// A report for a terminal: the subscribers done, failed, due and held (with why), and the
/// counts of those waiting and done before. `dry_run`: nothing was done.
pub fn to_text(r: &Report, dry_run: bool) -> String {
    let mut out = String::new();
    for d in &r.done {
        out.push_str(&format!(
            "done\t{}\t{} Call(s), {} recording(s), {} order(s), {} receipt(s), {} event(s) withdrawn{}\n",
            d.subscriber,
            d.calls,
            d.recordings,
            d.orders,
            d.receipts,
            d.withdrawn,
            if d.card { ", card deleted" } else { "" }
        ));
    }
    for (s, why) in &r.failed {
        out.push_str(&format!("failed\t{s}\t{why}\n"));
    }
    for d in &r.survey.due {
        if d.held.is_empty() {
            if dry_run {
                let how = if d.resumed {
                    "due (cut short before)"
                } else {
                    "due"
                };
                out.push_str(&format!("{how}\t{}\n", d.subscriber));
            }
        } else {
            let why: Vec<String> = d.held.iter().map(ToString::to_string).collect();
            out.push_str(&format!("held\t{}\t{}\n", d.subscriber, why.join("; ")));
        }
    }
    for (call, holds) in &r.calls.held {
        let why: Vec<String> = holds.iter().map(ToString::to_string).collect();
        out.push_str(&format!("held\tCall {call}\t{}\n", why.join("; ")));
    }
    if let (true, Some(first), Some(last)) = (dry_run, r.calls.due.first(), r.calls.due.last()) {
        out.push_str(&format!(
            "due\tclosed Calls\t{} of ids {first}..={last}\n",
            r.calls.due.len()
        ));
    }
    if let Some(why) = &r.calls_failed {
        out.push_str(&format!("failed\tclosed Calls\t{why}\n"));
    }
    let c = &r.calls;
    if !c.deleted.is_empty() || !c.due.is_empty() || !c.held.is_empty() {
        let archived = if c.archives.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = c.archives.iter().map(|p| p.display().to_string()).collect();
            format!(", archived to {}", names.join(", "))
        };
        out.push_str(&format!(
            "closed Calls past their retention: {} deleted{archived}, {} due, {} held{}\n",
            c.deleted.len(),
            c.due.len(),
            c.held.len(),
            if c.more {
                " (more at the next sweep)"
            } else {
                ""
            }
        ));
    }
    let due = r.survey.due.iter().filter(|d| d.held.is_empty()).count();
    let held = r.survey.due.len() - due;
    out.push_str(&format!(
        "{} done, {} due, {held} held, {} ended and waiting, {} anonymised before{}\n",
        r.done.len(),
        if dry_run {
            due
        } else {
            due.saturating_sub(r.done.len() + r.failed.len())
        },
        r.survey.waiting,
        r.survey.done_before,
        if dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    ));
    out
}

/// Sweeps at start and then every [`SWEEP_EVERY`] until `shutdown`, on the blocking pool.
/// Returns how many subscribers it did.
pub async fn run(retention: Arc<Retention>, shutdown: CancellationToken) -> u64 {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut total = 0u64;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return total,
            _ = tick.tick() => {}
        }
        let now = Timestamp::now();
        let r = retention.clone();
        match tokio::task::spawn_blocking(move || r.sweep(now)).await {
            Ok(Ok(report)) => total += report.done.len() as u64,
            Ok(Err(e)) => tracing::warn!(error = %e, "the subscribers' retention sweep failed"),
            Err(e) => tracing::error!(error = %e, "the subscribers' retention sweep ended"),
        }
    }
}
