//! What the console's handlers share ([`AppState`]) and how it is built from the services
//! behind it and the console's own options.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::auth;
use super::client::{ClientAddressHeader, ClientAddresses};
use crate::calls::{CallSummary, Calls, Stats};
use crate::registers::devices::Devices;
use crate::store::Store;
use crate::telemetry::ConsoleMetrics;

/// Password checks running at once (argon2id is made to be slow and memory-hungry).
const VERIFY_PERMITS: usize = 4;

/// Of those, checks of throttled logins running at once (see [`auth::LoginThrottle`]): a
/// flood of wrong passwords takes at most this share of the checks.
const THROTTLED_VERIFY_PERMITS: usize = 1;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// True while vakt accepts frames (false while starting and shutting down).
    pub ready: Arc<AtomicBool>,
    /// On the leader of a cluster: its epoch and the database's durability, for `/ready`
    /// (`None`: a single node on sled).
    pub cluster: Option<watch::Receiver<super::ready::Leading>>,
    /// Calls: triage, the live feed, durability.
    pub calls: Arc<Calls>,
    /// The device registry in use.
    pub devices: Devices,
    /// Today's answer figures, kept fresh by a background task.
    pub stats: watch::Receiver<Stats>,
    /// The centre's time zone.
    pub tz: jiff::tz::TimeZone,
    /// The centre's language: the console's for users who have not chosen one.
    pub language: crate::model::ConsoleLanguage,
    /// Failed logins: which are throttled, and for how long their answers are held.
    pub throttle: Arc<auth::LoginThrottle>,
    /// Bounds the password checks running at once.
    pub verify_permits: Arc<Semaphore>,
    /// Bounds the throttled logins' password checks running at once (taken before a
    /// `verify_permits` permit).
    pub throttled_permits: Arc<Semaphore>,
    /// The key of failed logins' name references ([`auth::name_ref`]), made at start.
    pub name_key: Arc<[u8; 32]>,
    /// The client address of a request behind trusted proxies.
    pub clients: Arc<ClientAddresses>,
    /// The console's origin behind a proxy that rewrites `Host` (`[http] public_origin`).
    pub public_origin: Option<Arc<str>>,
    /// Bumped after every change that may end sessions (logout, a user disabled, removed
    /// or given another role), so the live feeds check theirs at once.
    pub sessions_changed: Arc<watch::Sender<u64>>,
    /// Session length.
    pub session_hours: u32,
    /// Whether the cookie is marked Secure.
    pub secure_cookie: bool,
    /// How the console rings.
    pub alerting: Alerting,
    /// Console metrics.
    pub metrics: ConsoleMetrics,
    /// Cancelled at shutdown (closes the live feeds).
    pub shutdown: CancellationToken,
    /// Dispatch to patrols.
    pub desk: Arc<crate::dispatch::desk::Desk>,
    /// Heartbeat supervision (device status).
    pub supervision: Arc<crate::supervision::round::Supervision>,
    /// Telecom incidents.
    pub incidents: Arc<crate::supervision::incidents::Incidents>,
    /// The escalation outbox.
    pub outbox: crate::outbox::Outbox,
    /// Work orders for device faults.
    pub work_orders: Arc<crate::work_orders::WorkOrders>,
    /// Voice calls (absent when `[voice]` is off).
    pub voice: Option<crate::voice::switchboard::Switchboard>,
    /// The subscribers' lives: orders, installations, billing.
    pub care: Arc<crate::care::Care>,
    /// Retention of subscribers' data after the end.
    pub retention: Arc<crate::retention::Retention>,
    /// Response plans: the centre's defaults (`[plans]`).
    pub plans: crate::model::plan::PlanOptions,
    /// What the consoles say of their users (heartbeats, input, Calls taken).
    pub presence: Arc<super::staffing::Presence>,
    /// The staffing figures, kept by [`super::staffing_api::watch`]; the live feeds send
    /// each change.
    pub staffing: Arc<watch::Sender<super::staffing::Staffing>>,
    /// The floor and the longest wait (`[staffing]`).
    pub staffing_opts: super::staffing::StaffingOptions,
    /// The access log's review (`[access_review]`).
    pub access_review: crate::model::access_review::AccessReviewOptions,
    /// What the statistics judge by (`[stats]`).
    pub stats_options: crate::dispatch::stats::StatsOptions,
}

/// The services behind the console besides the store.
#[derive(Clone, Debug)]
pub struct Services {
    /// Dispatch to patrols (and the Calls behind it).
    pub desk: Arc<crate::dispatch::desk::Desk>,
    /// Heartbeat supervision.
    pub supervision: Arc<crate::supervision::round::Supervision>,
    /// Telecom incidents.
    pub incidents: Arc<crate::supervision::incidents::Incidents>,
    /// The escalation outbox.
    pub outbox: crate::outbox::Outbox,
    /// Work orders.
    pub work_orders: Arc<crate::work_orders::WorkOrders>,
    /// Voice calls (absent when `[voice]` is off).
    pub voice: Option<crate::voice::switchboard::Switchboard>,
    /// The subscribers' lives.
    pub care: Arc<crate::care::Care>,
    /// Retention of subscribers' data after the end.
    pub retention: Arc<crate::retention::Retention>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Settings of the console that come from the configuration.
#[derive(Clone, Debug)]
pub struct ConsoleOptions {
    /// Session length in hours.
    pub session_hours: u32,
    /// Mark the cookie Secure.
    pub secure_cookie: bool,
    /// The centre's time zone.
    pub tz: jiff::tz::TimeZone,
    /// The console's language for users who have not chosen one.
    pub language: crate::model::ConsoleLanguage,
    /// Reverse proxies whose client-address header is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header they name the client in.
    pub client_address_header: ClientAddressHeader,
    /// The console's public origin, if the proxy does not pass `Host` through.
    pub public_origin: Option<String>,
    /// Response plans: the centre's defaults (`[plans]`).
    pub plans: crate::model::plan::PlanOptions,
    /// What the statistics judge by (`[stats]`).
    pub stats: crate::dispatch::stats::StatsOptions,
    /// How the console rings.
    pub alerting: Alerting,
    /// The floor and the longest wait (`[staffing]`).
    pub staffing: super::staffing::StaffingOptions,
    /// The access log's review (`[access_review]`).
    pub access_review: crate::model::access_review::AccessReviewOptions,
}

/// How the console rings for waiting Calls (`[http] ring_max_level`, `ring_repeat_secs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Alerting {
    /// Waiting Calls at this level or more urgent ring until someone takes them.
    pub ring_max_level: u8,
    /// The ring repeats this often (seconds) while such a Call waits.
    pub ring_repeat_secs: u32,
}

impl AppState {
    /// Builds the shared state.
    pub fn new(
        store: Store,
        ready: Arc<AtomicBool>,
        services: Services,
        devices: Devices,
        stats: watch::Receiver<Stats>,
        opts: ConsoleOptions,
        shutdown: CancellationToken,
    ) -> Result<AppState, auth::AuthError> {
        Ok(AppState {
            store,
            ready,
            cluster: None,
            calls: services.desk.calls().clone(),
            devices,
            stats,
            tz: opts.tz,
            language: opts.language,
            throttle: Arc::new(auth::LoginThrottle::new(auth::LoginLimits::default())),
            verify_permits: Arc::new(Semaphore::new(VERIFY_PERMITS)),
            throttled_permits: Arc::new(Semaphore::new(THROTTLED_VERIFY_PERMITS)),
            name_key: Arc::new(rand::random()),
            clients: Arc::new(ClientAddresses::new(
                opts.trusted_proxies,
                opts.client_address_header,
            )),
            public_origin: opts.public_origin.map(Arc::from),
            sessions_changed: Arc::new(watch::Sender::new(0)),
            session_hours: opts.session_hours,
            secure_cookie: opts.secure_cookie,
            alerting: opts.alerting,
            metrics: ConsoleMetrics::new(),
            shutdown,
            desk: services.desk,
            supervision: services.supervision,
            incidents: services.incidents,
            outbox: services.outbox,
            work_orders: services.work_orders,
            voice: services.voice,
            care: services.care,
            retention: services.retention,
            plans: opts.plans,
            presence: Arc::default(),
            staffing: Arc::new(watch::Sender::new(super::staffing::Staffing::default())),
            staffing_opts: opts.staffing,
            access_review: opts.access_review,
            stats_options: opts.stats,
        })
    }

    /// Tells the live feeds that sessions may have ended (they check theirs).
    pub fn sessions_changed(&self) {
        self.sessions_changed
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Summaries of the open Calls, most urgent first.
    pub fn open_summaries(&self) -> Vec<CallSummary> {
        self.calls.open_summaries()
    }

    /// Computes today's figures now (off the async threads).
    pub async fn compute_stats(&self) -> Result<Stats, crate::store::StoreError> {
        let store = self.store.clone();
        let tz = self.tz.clone();
        tokio::task::spawn_blocking(move || {
            crate::calls::stats_today(&store, &tz, jiff::Timestamp::now())
        })
        .await
        .unwrap_or_else(|e| {
            Err(crate::store::StoreError::Corrupt {
                tree: "calls",
                detail: format!("figures task failed: {e}"),
            })
        })
    }
}
