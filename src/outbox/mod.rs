//! The escalation outbox: events for telecom providers, care providers and installers,
//! delivered to their webhooks durably, in order, until acknowledged.
//!
//! [`Outbox::enqueue`] picks the configured endpoints ([`EscalationConfig`]) whose kind and
//! `matches` select the event's [`Recipient`], writes one delivery per endpoint to the store,
//! durable before it returns: an event enqueued is never lost. Each endpoint has one
//! task that delivers its deliveries one at a time, oldest first, so an incident's
//! `incident.resolved` never overtakes its `incident.opened`. An attempt that does not get a
//! 2xx answer (another status, a broken connection, no answer within the attempt's time) is
//! retried after an exponential backoff with jitter (1 s doubling to 5 min, for ever), and
//! the endpoint's later deliveries wait behind it. A 2xx is recorded durably at once and
//! the delivery is never sent again. After a restart the pending deliveries resume.
//!
//! # What a receiver gets
//!
//! `POST <url>` with
//! - `Content-Type: application/json`, `User-Agent: vakt/<version>`;
//! - `X-Vakt-Event: <event>` (`incident.opened`, `incident.extra_visits`,
//!   `incident.resolved`, `work_order.created`, ...);
//! - `X-Vakt-Delivery: <id>`: the same at every attempt of one delivery. A receiver keeps
//!   the ids it has acknowledged and acknowledges a repeat without acting on it again: vakt
//!   sends a delivery again only if it could not record the acknowledgement (a crash or a
//!   storage failure between the answer and the record of it);
//! - `X-Vakt-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes with the
//!   endpoint's secret. The receiver computes it over the raw body and compares in constant
//!   time ([`verify_signature`] does it).
//!
//! The body is the same bytes at every attempt:
//!
//! ```json
//! {"id": 17, "event": "incident.opened", "created_at": "2026-11-23T07:04:27Z",
//!  "recipient": {"kind": "telecom", "key": "Telia"}, "subject": "incident/12",
//!  "data": {"incident": {...}, "accounts": ["1001", "1002"]}}
//! ```
//!
//! `id` and `event` repeat the headers inside the signed body, and `created_at` lets a
//! receiver refuse old replays. Any 2xx acknowledges; redirects are not followed.
//!
//! # Bounds
//!
//! One request in flight per endpoint; bodies at most [`OutboxOptions::max_body_bytes`]
//! (refused at enqueue); each attempt at most [`OutboxOptions::attempt_timeout`]; at most
//! 64 KiB of a response is read. The workers read one delivery at a time from the store, so
//! a long outage of an endpoint costs disk, not memory. Bodies hold personal data (names,
//! addresses): they are never logged, and are removed from the store
//! [`OutboxOptions::keep_bodies`] after delivery (the records stay, for the console).

mod config;
mod events;
mod http;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

pub use config::{
    EscalationConfig, MIN_SECRET_BYTES, RecipientKind, WebhookSecret,
    validate as validate_escalations,
};
pub use events::{
    INCIDENT_EXTRA_VISITS, INCIDENT_OPENED, INCIDENT_RESOLVED, IncidentSummary, OutboxEvent,
    Recipient, VisitSubscriber, incident_subject, sort_most_in_need_first,
};
pub use http::{
    DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, USER_AGENT, signature, verify_signature,
};

use crate::store::{OutboxRecord, Store, StoreError};
use crate::telemetry::OutboxMetrics;

/// Most deliveries [`Outbox::deliveries`] returns.
pub const MAX_LIST: usize = 1000;
/// Most stored records one listing looks at.
const MAX_SCAN: usize = 100_000;
/// Bodies pruned per store batch.
const PRUNE_BATCH: usize = 1000;
/// How often delivered bodies past their time are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What can go wrong in the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The endpoints' configuration is wrong.
    #[error("escalation config: {0}")]
    Config(String),
    /// The event cannot be sent as it is (bad name or subject).
    #[error("invalid event: {0}")]
    Event(String),
    /// The body is larger than allowed.
    #[error("event body of {bytes} bytes is over the limit of {max}")]
    TooLarge {
        /// The body's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The payload could not be encoded.
    #[error("cannot encode the event: {0}")]
    Encode(String),
    /// The store failed; nothing was enqueued.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// TLS could not be set up.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Started outside a tokio runtime, or a blocking task failed.
    #[error("runtime: {0}")]
    Runtime(String),
}

/// Timing and limits of the outbox. The defaults are for production; tests shorten them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxOptions {
    /// Wait after the first failed attempt (doubling after each further failure).
    pub backoff_base: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
    /// Longest time for one attempt (connect, send, answer).
    pub attempt_timeout: Duration,
    /// Largest body accepted by [`Outbox::enqueue`].
    pub max_body_bytes: usize,
    /// How long a delivered body is kept (then removed; the record stays).
    pub keep_bodies: Duration,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            attempt_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            keep_bodies: Duration::from_secs(30 * 86_400),
        }
    }
}

/// The wait before the next attempt after `attempts` failed ones: `base` doubled per further
/// failure up to `max`, then jittered to between half and all of it (`jitter` in `[0, 1)`),
/// so endpoints that failed together do not retry together.
pub fn backoff(attempts: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = attempts.saturating_sub(1).min(32);
    let full = base.saturating_mul(1u32 << exp.min(31)).min(max);
    let half = full / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A delivery's state as the console shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet attempted, or not yet due.
    Pending,
    /// Attempted and not acknowledged yet; retried.
    Failing,
    /// Acknowledged (2xx). Never sent again.
    Delivered,
}

impl DeliveryState {
    fn of(r: &OutboxRecord) -> DeliveryState {
        if r.delivered_at.is_some() {
            DeliveryState::Delivered
        } else if r.attempts > 0 {
            DeliveryState::Failing
        } else {
            DeliveryState::Pending
        }
    }
}

/// One delivery, for the console (no body: it holds personal data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Delivery id (`X-Vakt-Delivery`).
    pub id: u64,
    /// The endpoint's name.
    pub endpoint: String,
    /// Kind of recipient: `telecom`, `care_provider`, `installer`.
    pub recipient_kind: String,
    /// The recipient (operator, care provider id, installer).
    pub recipient: String,
    /// Event name.
    pub event: String,
    /// What it is about (`incident/12`, `work_order/7`).
    pub subject: String,
    /// Pending, failing or delivered.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When it was enqueued.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// When it was last attempted.
    #[schema(value_type = Option<String>)]
    pub last_attempt_at: Option<Timestamp>,
    /// When it is next attempted (if it failed).
    #[schema(value_type = Option<String>)]
    pub next_attempt_at: Option<Timestamp>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was acknowledged.
    #[schema(value_type = Option<String>)]
    pub delivered_at: Option<Timestamp>,
}

impl From<OutboxRecord> for DeliveryView {
    fn from(r: OutboxRecord) -> Self {
        DeliveryView {
            state: DeliveryState::of(&r),
            id: r.id,
            endpoint: r.endpoint,
            recipient_kind: r.recipient_kind,
            recipient: r.recipient,
            event: r.event,
            subject: r.subject,
            attempts: r.attempts,
            created_at: r.created_at,
            last_attempt_at: r.last_attempt_at,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            delivered_at: r.delivered_at,
        }
    }
}

/// Which deliveries to list (all conditions must hold). Newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct DeliveryFilter {
    /// Only in this state.
    #[serde(default)]
    pub state: Option<DeliveryState>,
    /// Only to this endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Only about this subject (`incident/12`).
    #[serde(default)]
    pub subject: Option<String>,
    /// At most this many (0 = 200; at most [`MAX_LIST`]).
    #[serde(default)]
    pub limit: usize,
}

impl DeliveryFilter {
    fn keeps(&self, r: &OutboxRecord) -> bool {
        self.state.is_none_or(|s| s == DeliveryState::of(r))
            && self.endpoint.as_ref().is_none_or(|e| *e == r.endpoint)
            && self.subject.as_ref().is_none_or(|s| *s == r.subject)
    }

    fn limit(&self) -> usize {
        match self.limit {
            0 => 200,
            n => n.min(MAX_LIST),
        }
    }
}

/// An endpoint's state, for the console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EndpointStatus {
    /// Name.
    pub name: String,
    /// Kind of recipient.
    pub kind: RecipientKind,
    /// Scheme, host and port of its URL.
    pub origin: String,
    /// Deliveries not yet acknowledged.
    pub pending: u64,
    /// Its oldest pending delivery has failed at least once.
    pub failing: bool,
}

/// The body's envelope around an event's payload.
#[derive(Serialize)]
struct Envelope<'a> {
    id: u64,
    event: &'a str,
    created_at: Timestamp,
    recipient: &'a Recipient,
    subject: &'a str,
    data: &'a serde_json::Value,
}

struct Endpoint {
    config: EscalationConfig,
    uri: hyper::Uri,
    wake: Notify,
    pending: AtomicU64,
    failing: AtomicBool,
}

/// What the delivery tasks share with the handle.
struct Shared {
    store: Store,
    options: OutboxOptions,
    endpoints: Vec<Endpoint>,
    /// Pending deliveries of endpoints no longer configured (kept, not sent).
    orphaned: u64,
    /// The next delivery id; held while a batch of deliveries is written durably, so ids
    /// reach the store in order.
    next_id: Mutex<u64>,
    metrics: OutboxMetrics,
}

impl Shared {
    fn pending(&self) -> u64 {
        self.orphaned
            + self
                .endpoints
                .iter()
                .map(|e| e.pending.load(Ordering::Relaxed))
                .sum::<u64>()
    }

    fn failing(&self) -> usize {
        self.endpoints
            .iter()
            .filter(|e| e.failing.load(Ordering::Relaxed))
            .count()
    }

    fn publish(&self) {
        self.metrics.pending.set(self.pending() as f64);
        self.metrics.failing_endpoints.set(self.failing() as f64);
    }
}

struct Handle {
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The outbox: enqueue events; one delivery task per endpoint. Cheap to clone; the tasks
/// stop when the shutdown token is cancelled or the last clone is dropped (an attempt in
/// flight is finished first, so stopping takes at most one attempt's time).
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("endpoints", &self.inner.shared.endpoints.len())
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Starts the outbox with the default options. See [`Outbox::start_with`].
    pub fn start(
        store: Store,
        endpoints: Vec<EscalationConfig>,
        shutdown: CancellationToken,
    ) -> Result<Outbox, OutboxError> {
        Outbox::start_with(store, endpoints, OutboxOptions::default(), shutdown)
    }

    /// Checks the endpoints, reads what is pending from the store and spawns one delivery
    /// task per endpoint (and one that removes old bodies). Must be called inside a tokio
    /// runtime. Pending deliveries of endpoints no longer configured are kept (and counted
    /// as pending) but not sent.
    pub fn start_with(
        store: Store,
        endpoints: Vec<EscalationConfig>,
        options: OutboxOptions,
        shutdown: CancellationToken,
    ) -> Result<Outbox, OutboxError> {
        let problems = config::validate(&endpoints);
        if !problems.is_empty() {
            return Err(OutboxError::Config(problems.join("; ")));
        }
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| OutboxError::Runtime(e.to_string()))?;
        let client = http::client(options.attempt_timeout)?;
        let counts = store.outbox_pending_counts()?;
        let next_id = store.outbox_max_id()? + 1;
        let mut orphaned = 0;
        for (name, n) in &counts {
            if !endpoints.iter().any(|e| e.name == *name) {
                warn!(
                    endpoint = %name,
                    pending = n,
                    "deliveries pending for an endpoint no longer configured: kept, not sent"
                );
                orphaned += n;
            }
        }
        let mut eps = Vec::with_capacity(endpoints.len());
        for config in endpoints {
            let uri = config
                .url
                .parse::<hyper::Uri>()
                .map_err(|_| OutboxError::Config(format!("{}: invalid url", config.name)))?;
            if config.is_plain_http_remote() {
                warn!(
                    endpoint = %config.name,
                    origin = %config.origin(),
                    "escalation endpoint over plain http: personal data travels unencrypted"
                );
            }
            let pending = counts
                .iter()
                .find(|(n, _)| *n == config.name)
                .map_or(0, |(_, c)| *c);
            eps.push(Endpoint {
                config,
                uri,
                wake: Notify::new(),
                pending: AtomicU64::new(pending),
                failing: AtomicBool::new(false),
            });
        }
        let shared = Arc::new(Shared {
            store,
            options,
            endpoints: eps,
            orphaned,
            next_id: Mutex::new(next_id),
            metrics: OutboxMetrics::new(),
        });
        shared.publish();
        let stop = shutdown.child_token();
        let tasks = TaskTracker::new();
        for i in 0..shared.endpoints.len() {
            let ep = &shared.endpoints[i].config;
            info!(
                endpoint = %ep.name,
                kind = %ep.kind,
                origin = %ep.origin(),
                pending = shared.endpoints[i].pending.load(Ordering::Relaxed),
                "escalation endpoint"
            );
            let span = info_span!("outbox", endpoint = %ep.name);
            let worker = deliver_loop(shared.clone(), i, client.clone(), stop.clone());
            tasks.spawn_on(worker.instrument(span), &rt);
        }
        tasks.spawn_on(
            prune_loop(shared.clone(), stop.clone()).instrument(info_span!("outbox_prune")),
            &rt,
        );
        tasks.close();
        Ok(Outbox {
            inner: Arc::new(Handle {
                shared,
                stop,
                tasks,
            }),
        })
    }

    /// Writes one delivery of `event` for every endpoint that its recipient selects, durably,
    /// and wakes those endpoints' tasks. Returns the delivery ids (none if no endpoint is
    /// configured for the recipient: logged and counted). Blocks for the store's sync (a few
    /// milliseconds): from async code prefer `spawn_blocking` when the sync must not hold up
    /// the runtime.
    pub fn enqueue(&self, event: OutboxEvent) -> Result<Vec<u64>, OutboxError> {
        let shared = &self.inner.shared;
        check_event(&event)?;
        let targets: Vec<&Endpoint> = shared
            .endpoints
            .iter()
            .filter(|e| e.config.accepts(event.recipient.kind, &event.recipient.key))
            .collect();
        if targets.is_empty() {
            warn!(
                event = %event.event,
                kind = %event.recipient.kind,
                recipient = %event.recipient.key,
                subject = %event.subject,
                "no escalation endpoint is configured for this recipient: not sent"
            );
            shared.metrics.unrouted(event.recipient.kind.as_str());
            return Ok(Vec::new());
        }
        let created_at = Timestamp::now();
        let mut next = shared.next_id.lock().unwrap_or_else(|p| p.into_inner());
        let first = *next;
        let mut batch = Vec::with_capacity(targets.len());
        for (i, ep) in targets.iter().enumerate() {
            let id = first + i as u64;
            let body = serde_json::to_vec(&Envelope {
                id,
                event: &event.event,
                created_at,
                recipient: &event.recipient,
                subject: &event.subject,
                data: &event.data,
            })
            .map_err(|e| OutboxError::Encode(e.to_string()))?;
            if body.len() > shared.options.max_body_bytes {
                return Err(OutboxError::TooLarge {
                    bytes: body.len(),
                    max: shared.options.max_body_bytes,
                });
            }
            let record = OutboxRecord {
                id,
                endpoint: ep.config.name.clone(),
                recipient_kind: event.recipient.kind.as_str().to_string(),
                recipient: event.recipient.key.clone(),
                event: event.event.clone(),
                subject: event.subject.clone(),
                created_at,
                attempts: 0,
                last_attempt_at: None,
                next_attempt_at: None,
                last_error: None,
                delivered_at: None,
                body_bytes: body.len() as u32,
            };
            batch.push((record, body));
        }
        // Counted before a task can see them, so a quick delivery never counts below zero.
        for ep in &targets {
            ep.pending.fetch_add(1, Ordering::Relaxed);
        }
        let flushed = match shared.store.outbox_add(&batch) {
            Ok(()) => Ok(()),
            // Written, not known to be durable: as written below.
            Err(e @ StoreError::Sync(_)) => Err(e),
            Err(e) => {
                for ep in &targets {
                    ep.pending.fetch_sub(1, Ordering::Relaxed);
                }
                return Err(e.into());
            }
        };
        // Written: the ids are taken and the tasks will find them, even if the sync failed.
        *next = first + batch.len() as u64;
        drop(next);
        let ids: Vec<u64> = batch.iter().map(|(r, _)| r.id).collect();
        for ep in &targets {
            ep.wake.notify_one();
        }
        if let Err(e) = flushed {
            shared.publish();
            return Err(e.into());
        }
        shared.metrics.enqueued(&event.event, ids.len() as u64);
        shared.publish();
        info!(
            event = %event.event,
            subject = %event.subject,
            deliveries = ?ids,
            "escalation enqueued"
        );
        Ok(ids)
    }

    /// [`Outbox::enqueue`] on the blocking pool, for async callers that must not wait for
    /// the store's sync on a runtime thread.
    pub async fn enqueue_async(&self, event: OutboxEvent) -> Result<Vec<u64>, OutboxError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.enqueue(event))
            .await
            .map_err(|e| OutboxError::Runtime(e.to_string()))?
    }

    /// Deliveries that `filter` keeps, newest first.
    pub fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryView>, OutboxError> {
        let store = &self.inner.shared.store;
        let limit = filter.limit();
        let mut records = if let Some(subject) = &filter.subject {
            let mut v = store.outbox_of_subject(subject, MAX_SCAN)?;
            v.retain(|r| filter.keeps(r));
            v.reverse();
            v
        } else if matches!(
            filter.state,
            Some(DeliveryState::Pending | DeliveryState::Failing)
        ) {
            let mut v = store.outbox_pending(MAX_SCAN)?;
            v.retain(|r| filter.keeps(r));
            v.sort_by_key(|r| std::cmp::Reverse(r.id));
            v
        } else {
            store.outbox_newest(|r| filter.keeps(r), limit, MAX_SCAN)?
        };
        records.truncate(limit);
        Ok(records.into_iter().map(DeliveryView::from).collect())
    }

    /// One delivery.
    pub fn delivery(&self, id: u64) -> Result<Option<DeliveryView>, OutboxError> {
        Ok(self
            .inner
            .shared
            .store
            .outbox_record(id)?
            .map(DeliveryView::from))
    }

    /// Withdraws an undelivered delivery (retention of the subscriber it is about): it is
    /// never sent, its body is removed and its record stays with `why`
    /// ([`Store::outbox_withdraw`]). Whether it was withdrawn now (false: delivered, or
    /// withdrawn before).
    pub fn withdraw(&self, id: u64, why: &str) -> Result<bool, OutboxError> {
        let shared = &self.inner.shared;
        let Some(rec) = shared.store.outbox_record(id)? else {
            return Ok(false);
        };
        if !shared.store.outbox_withdraw(id, why)? {
            return Ok(false);
        }
        if let Some(ep) = shared
            .endpoints
            .iter()
            .find(|e| e.config.name == rec.endpoint)
        {
            let _ = ep
                .pending
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        shared.publish();
        Ok(true)
    }

    /// Deliveries not yet acknowledged (gauge `vakt_outbox_pending`).
    pub fn pending(&self) -> u64 {
        self.inner.shared.pending()
    }

    /// Endpoints whose oldest pending delivery has failed at least once (gauge
    /// `vakt_outbox_failing_endpoints`).
    pub fn failing(&self) -> usize {
        self.inner.shared.failing()
    }

    /// Every configured endpoint's state.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.inner
            .shared
            .endpoints
            .iter()
            .map(|e| EndpointStatus {
                name: e.config.name.clone(),
                kind: e.config.kind,
                origin: e.config.origin(),
                pending: e.pending.load(Ordering::Relaxed),
                failing: e.failing.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Stops the delivery tasks (as the shutdown token would) and waits for them; an attempt
    /// in flight is finished first. Other clones can still enqueue (durably) afterwards; the
    /// deliveries go out after the next start.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.wait().await;
    }

    /// Waits until the delivery tasks have stopped (after the shutdown token was cancelled).
    pub async fn stopped(&self) {
        self.inner.tasks.wait().await;
    }
}

fn check_event(e: &OutboxEvent) -> Result<(), OutboxError> {
    if !events::event_name_ok(&e.event) {
        return Err(OutboxError::Event(format!(
            "event name {:?} must be 1..=64 of a-z, 0-9, '.', '_'",
            e.event
        )));
    }
    if e.subject.is_empty()
        || e.subject.len() > events::MAX_SUBJECT_BYTES
        || e.subject.contains('\0')
    {
        return Err(OutboxError::Event(
            "subject must be 1..=128 bytes without NUL".into(),
        ));
    }
    if e.recipient.key.len() > events::MAX_KEY_BYTES {
        return Err(OutboxError::Event(
            "recipient key is longer than 256 bytes".into(),
        ));
    }
    Ok(())
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, OutboxError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(OutboxError::from),
        Err(e) => Err(OutboxError::Runtime(e.to_string())),
    }
}

fn after(now: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(now)
}

/// Sleeps `d`, or until `stop`. Returns false if stopped.
async fn pause(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.cancelled() => false,
    }
}

/// One endpoint's delivery task: its oldest pending delivery, one attempt at a time.
async fn deliver_loop(
    shared: Arc<Shared>,
    index: usize,
    client: http::HttpClient,
    stop: CancellationToken,
) {
    let ep = &shared.endpoints[index];
    let name = ep.config.name.clone();
    let opts = shared.options.clone();
    let secret = Bytes::copy_from_slice(ep.config.secret.expose().as_bytes());
    while !stop.is_cancelled() {
        let store = shared.store.clone();
        let n = name.clone();
        let head = match blocking(move || store.outbox_next_pending(&n)).await {
            Ok(h) => h,
            Err(e) => {
                error!(error = %e, "cannot read the pending deliveries");
                if !pause(opts.backoff_max.min(Duration::from_secs(5)), &stop).await {
                    break;
                }
                continue;
            }
        };
        let Some(mut rec) = head else {
            if ep.failing.swap(false, Ordering::Relaxed) {
                shared.publish();
            }
            tokio::select! {
                _ = ep.wake.notified() => {}
                _ = stop.cancelled() => break,
            }
            continue;
        };
        // Not before it is due (after a restart: the backoff recorded before it).
        if let Some(due) = rec.next_attempt_at {
            let wait = Duration::try_from(due.duration_since(Timestamp::now()))
                .unwrap_or(Duration::ZERO)
                .min(opts.backoff_max);
            if !wait.is_zero() && !pause(wait, &stop).await {
                break;
            }
        }
        let store = shared.store.clone();
        let id = rec.id;
        let body = match blocking(move || store.outbox_body(id)).await {
            Ok(Some(b)) => Bytes::from(b),
            Ok(None) => {
                // Only a damaged store loses the body of a pending delivery. It cannot be
                // sent, and must not be skipped silently: it stays at the head, failing,
                // for someone to see.
                error!(
                    delivery = id,
                    "pending delivery has no body; cannot send it"
                );
                let r = record_failure(&shared, ep, &mut rec, "body missing in the store", None);
                if let Err(e) = r.await {
                    error!(error = %e, "cannot record the attempt");
                }
                if !pause(opts.backoff_max, &stop).await {
                    break;
                }
                continue;
            }
            Err(e) => {
                error!(delivery = id, error = %e, "cannot read the body");
                if !pause(opts.backoff_max.min(Duration::from_secs(5)), &stop).await {
                    break;
                }
                continue;
            }
        };
        // An attempt in flight is finished even when stopping (bounded by its timeout), so
        // an acknowledgement is recorded rather than the delivery sent again after a
        // restart.
        let outcome = http::post(
            &client,
            http::Attempt {
                uri: &ep.uri,
                secret: &secret,
                event: &rec.event,
                delivery: rec.id,
                body,
                timeout: opts.attempt_timeout,
            },
        )
        .await;
        shared.metrics.attempt(&name, outcome.label());
        if outcome == http::Outcome::Delivered {
            let now = Timestamp::now();
            rec.attempts += 1;
            rec.last_attempt_at = Some(now);
            rec.next_attempt_at = None;
            rec.delivered_at = Some(now);
            // Record it durably before anything else: until then a restart would send it
            // again. Retry the write (never the POST) until it holds.
            let mut tries = 0u32;
            loop {
                let store = shared.store.clone();
                let r = rec.clone();
                match blocking(move || store.outbox_save(&r)).await {
                    Ok(()) => break,
                    Err(e) => {
                        tries += 1;
                        error!(delivery = rec.id, error = %e, "cannot record the acknowledgement");
                        let wait = backoff(tries, opts.backoff_base, opts.backoff_max, 0.5);
                        if !pause(wait, &stop).await {
                            return;
                        }
                    }
                }
            }
            let _ = ep
                .pending
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            ep.failing.store(false, Ordering::Relaxed);
            shared.publish();
            info!(
                delivery = rec.id,
                event = %rec.event,
                attempts = rec.attempts,
                "delivered"
            );
            continue;
        }
        let retry_after = match &outcome {
            http::Outcome::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        let why = outcome.describe(opts.attempt_timeout);
        let wait = match record_failure(&shared, ep, &mut rec, &why, retry_after).await {
            Ok(wait) => wait,
            Err(e) => {
                error!(delivery = rec.id, error = %e, "cannot record the attempt");
                backoff(rec.attempts, opts.backoff_base, opts.backoff_max, 0.5)
            }
        };
        if !pause(wait, &stop).await {
            break;
        }
    }
    debug!("delivery task stopped");
}

/// Records a failed attempt (attempts, error, next time) and returns the wait before the
/// next one.
async fn record_failure(
    shared: &Shared,
    ep: &Endpoint,
    rec: &mut OutboxRecord,
    why: &str,
    retry_after: Option<Duration>,
) -> Result<Duration, OutboxError> {
    let opts = &shared.options;
    let now = Timestamp::now();
    rec.attempts = rec.attempts.saturating_add(1);
    let mut wait = backoff(
        rec.attempts,
        opts.backoff_base,
        opts.backoff_max,
        rand::random::<f64>(),
    );
    if let Some(asked) = retry_after {
        wait = wait.max(asked.min(opts.backoff_max));
    }
    rec.last_attempt_at = Some(now);
    rec.next_attempt_at = Some(after(now, wait));
    rec.last_error = Some(why.to_string());
    if !ep.failing.swap(true, Ordering::Relaxed) {
        shared.publish();
    }
    warn!(
        delivery = rec.id,
        event = %rec.event,
        attempts = rec.attempts,
        error = %why,
        retry_in_ms = wait.as_millis() as u64,
        "delivery failed; will retry"
    );
    let store = shared.store.clone();
    let r = rec.clone();
    blocking(move || store.outbox_save(&r)).await?;
    Ok(wait)
}

/// Removes the bodies of deliveries acknowledged longer ago than `keep_bodies`, at start and
/// then every hour.
async fn prune_loop(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let before = Timestamp::now()
            .checked_sub(SignedDuration::try_from(shared.options.keep_bodies).unwrap_or_default())
            .unwrap_or(Timestamp::UNIX_EPOCH);
        loop {
            let store = shared.store.clone();
            match blocking(move || store.outbox_prune_bodies(before, PRUNE_BATCH)).await {
                Ok(n) if n == PRUNE_BATCH => continue,
                Ok(n) => {
                    if n > 0 {
                        debug!(bodies = n, "removed delivered bodies");
                    }
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "cannot remove delivered bodies");
                    break;
                }
            }
        }
        if !pause(PRUNE_EVERY, &stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        assert_eq!(backoff(1, base, max, 0.999_999).as_millis(), 999);
        assert_eq!(backoff(1, base, max, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(2, base, max, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(4, base, max, 0.0), Duration::from_secs(4));
        for a in [9, 10, 40, u32::MAX] {
            let d = backoff(a, base, max, 0.999);
            assert!(d <= max && d >= max / 2, "{a}: {d:?}");
        }
        assert_eq!(backoff(0, base, max, 1.0), base);
    }

    #[test]
    fn events_are_checked() {
        let ok = OutboxEvent {
            event: "work_order.created".into(),
            recipient: Recipient::installer("Certego"),
            subject: "work_order/7".into(),
            data: serde_json::json!({"id": 7}),
        };
        assert!(check_event(&ok).is_ok());
        let mut bad = ok.clone();
        bad.event = "Work Order".into();
        assert!(check_event(&bad).is_err());
        let mut bad = ok.clone();
        bad.subject = "a\0b".into();
        assert!(check_event(&bad).is_err());
        let mut bad = ok;
        bad.subject = String::new();
        assert!(check_event(&bad).is_err());
    }

    fn endpoint(name: &str, kind: RecipientKind, matches: &[&str]) -> EscalationConfig {
        EscalationConfig {
            name: name.into(),
            kind,
            // Nothing listens here; these tests never reach a delivery.
            url: "http://127.0.0.1:9/hook".into(),
            secret: WebhookSecret::new("0123456789abcdef"),
            matches: matches.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn enqueue_selects_endpoints_and_stores_durably() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stop = CancellationToken::new();
        let opts = OutboxOptions {
            backoff_base: Duration::from_secs(60),
            max_body_bytes: 4096,
            ..OutboxOptions::default()
        };
        // Start paused: the tasks are stopped at once, so nothing is attempted.
        stop.cancel();
        let outbox = Outbox::start_with(
            store.clone(),
            vec![
                endpoint("telia", RecipientKind::Telecom, &["Telia"]),
                endpoint("all-telecom", RecipientKind::Telecom, &[]),
                endpoint("norr", RecipientKind::CareProvider, &["hemtjanst-norr"]),
            ],
            opts,
            stop,
        )
        .unwrap();
        outbox.stopped().await;
        let ev = |kind: RecipientKind, key: &str| OutboxEvent {
            event: "incident.opened".into(),
            recipient: Recipient {
                kind,
                key: key.into(),
            },
            subject: "incident/1".into(),
            data: serde_json::json!({"n": 1}),
        };
        assert_eq!(
            outbox.enqueue(ev(RecipientKind::Telecom, "telia")).unwrap(),
            [1, 2]
        );
        assert_eq!(
            outbox.enqueue(ev(RecipientKind::Telecom, "Tele2")).unwrap(),
            [3]
        );
        assert!(
            outbox
                .enqueue(ev(RecipientKind::Installer, "x"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(outbox.pending(), 3);
        let mut big = ev(RecipientKind::Telecom, "Telia");
        big.data = serde_json::json!({"x": "y".repeat(5000)});
        assert!(matches!(
            outbox.enqueue(big),
            Err(OutboxError::TooLarge { .. })
        ));
        assert_eq!(outbox.pending(), 3, "a refused event adds nothing");

        let body = store.outbox_body(1).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], 1);
        assert_eq!(v["event"], "incident.opened");
        assert_eq!(v["recipient"]["kind"], "telecom");
        assert_eq!(v["recipient"]["key"], "telia");
        assert_eq!(v["data"]["n"], 1);

        let all = outbox.deliveries(&DeliveryFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|d| d.id).collect::<Vec<_>>(),
            [3, 2, 1],
            "newest first"
        );
        assert!(all.iter().all(|d| d.state == DeliveryState::Pending));
        let f = DeliveryFilter {
            endpoint: Some("all-telecom".into()),
            ..DeliveryFilter::default()
        };
        assert_eq!(outbox.deliveries(&f).unwrap().len(), 2);
        let f = DeliveryFilter {
            subject: Some("incident/1".into()),
            limit: 1,
            ..DeliveryFilter::default()
        };
        assert_eq!(outbox.deliveries(&f).unwrap()[0].id, 3);
        let f = DeliveryFilter {
            state: Some(DeliveryState::Delivered),
            ..DeliveryFilter::default()
        };
        assert!(outbox.deliveries(&f).unwrap().is_empty());
        let eps = outbox.endpoints();
        assert_eq!(eps[0].pending, 1);
        assert_eq!(eps[1].pending, 2);
        assert_eq!(eps[0].origin, "http://127.0.0.1:9");

        // A withdrawn delivery (retention of the subscriber it is about) is pending no more,
        // once.
        assert!(outbox.withdraw(2, "withdrawn: retention").unwrap());
        assert!(!outbox.withdraw(2, "withdrawn: retention").unwrap());
        assert_eq!(outbox.pending(), 2);
        assert_eq!(outbox.endpoints()[1].pending, 1);
        assert_eq!(store.outbox_body(2).unwrap(), None);

        // A restart with one endpoint fewer still counts its deliveries as pending (not the
        // withdrawn one).
        drop(outbox);
        let stop = CancellationToken::new();
        stop.cancel();
        let outbox = Outbox::start_with(
            store,
            vec![endpoint("telia", RecipientKind::Telecom, &["Telia"])],
            OutboxOptions::default(),
            stop,
        )
        .unwrap();
        assert_eq!(outbox.pending(), 2);
        assert_eq!(outbox.endpoints()[0].pending, 1);
        assert_eq!(
            outbox.enqueue(ev(RecipientKind::Telecom, "TELIA")).unwrap(),
            [4],
            "ids go on after a restart"
        );
    }

    #[test]
    fn start_refuses_bad_config_and_needs_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut bad = endpoint("a", RecipientKind::Telecom, &[]);
        bad.url = "ftp://x/".into();
        let err = Outbox::start(store.clone(), vec![bad], CancellationToken::new()).unwrap_err();
        assert!(matches!(err, OutboxError::Config(_)), "{err}");
        let err = Outbox::start(
            store,
            vec![endpoint("a", RecipientKind::Telecom, &[])],
            CancellationToken::new(),
        )
        .unwrap_err();
        assert!(matches!(err, OutboxError::Runtime(_)), "{err}");
    }
}
