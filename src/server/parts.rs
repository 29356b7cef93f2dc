//! The parts of the server, built in order, each from its own options (made by
//! [`crate::config`]), and their stops in the order of ARCHITECTURE.md.
//!
//! Built in this order (each needs the ones before): the store; the escalation outbox; work
//! orders (and the installers' notifier); the Calls (open Calls back in the queue, every
//! journaled Signal not yet triaged triaged now); incidents; supervision (last-heard times,
//! heartbeat deadlines); the journal and the ingest conductor; dispatch (the desk, the
//! ticker); SCAIP; the console's figures; then the listeners: devices (DC-09 TCP and UDP,
//! SCAIP UDP, TCP and TLS), the patrol link, HTTP; then the background timers.
//!
//! Stopped in this order ([`Parts::stop`]), under one grace deadline: stop the accept loops;
//! let the devices' connections finish their frames; stop the supervision loop; close the
//! journal (commit what is queued, flush); let HTTP requests finish; end the patrol sessions
//! and stop the dispatch ticker; triage what the journal handed over and write every Call;
//! let the installers' notifier and the outbox finish; stop the timers; persist last-heard
//! times (every other write was durable when it returned).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Listeners, ServerError};
use crate::calls::{Calls, SignalObserver};
use crate::config::{Config, StoreBackend};
use crate::dispatch::desk::Desk;
use crate::dispatch::patrol_link::{self, Link, LinkOptions};
use crate::ingest::Ingress;
use crate::ingest::dc09::{Receiver, ReceiverOptions};
use crate::ingest::scaip::{Scaip, Tracker};
use crate::journal::Journal;
use crate::outbox::{EscalationConfig, Outbox};
use crate::registers::devices::{Devices, Registry};
use crate::store::{JournalStore, Store, StoreError};
use crate::supervision::detector::{Detector, DetectorOptions};
use crate::supervision::incidents::Incidents;
use crate::supervision::round::Supervision;
use crate::supervision::{LastHeard, SupervisionOptions, Supervisor};
use crate::telemetry::{CallMetrics, Metrics, ScaipMetrics};
use crate::transport::accept::Scope;
use crate::transport::quic::IdentitySource;
use crate::transport::sip::{self, SipOptions};
use crate::transport::{http, tcp, udp};
use crate::triage::TriageOptions;
use crate::voice::media::Media;
use crate::voice::record::RecordingOptions;
use crate::voice::switchboard::{Authenticator, CallMedia, LateObserver, Switchboard};
use crate::voice::webrtc::WebRtc;
use crate::work_orders::{WorkOrderOptions, WorkOrders};

/// The bound addresses of a started server.
#[derive(Debug, Default)]
pub(super) struct Addrs {
    pub dc09_tcp: Option<SocketAddr>,
    pub dc09_udp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub patrol_quic: Option<SocketAddr>,
    pub patrol_fingerprint: Option<String>,
    pub scaip_udp: Option<SocketAddr>,
    pub scaip_tcp: Option<SocketAddr>,
    pub scaip_tls: Option<SocketAddr>,
}

/// Builds every part in order; the parts, and the addresses they listen on.
pub(super) async fn start(
    cfg: &Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    leading: Option<tokio::sync::watch::Receiver<crate::console::ready::Leading>>,
) -> Result<(Parts, Addrs), ServerError> {
    let epoch = leading.as_ref().map(|l| l.borrow().epoch);
    let store = open_store(cfg, epoch).await?;
    // The audit entries written before the log had its indexes (a no-op once done).
    let indexing = store.clone();
    let indexed = tokio::task::spawn_blocking(move || indexing.index_audit_log()).await??;
    if indexed > 0 {
        tracing::info!(
            entries = indexed,
            "audit log indexed by person, user and Call"
        );
    }
    let metrics = Metrics::new();
    let registry = Devices::new(Registry::new(store.devices()?));
    let tz = cfg.http.tz();
    let outbox = OutboxPart::start(&store, cfg.escalation.clone())?;
    let (work_orders, faults) = WorkOrdersPart::start(
        &store,
        &outbox.outbox,
        &registry,
        cfg.work_orders.clone(),
        tz.clone(),
    )
    .await?;
    let care = CarePart::open(&store, &outbox.outbox, &registry, cfg, tz.clone()).await?;
    // SCAIP learns which Call each of its alarms went into (for hold / voice answers).
    let scaip_tracker = Arc::new(Tracker::new(store.triage_cursor()?));
    // The switchboard learns which Call each voice call went into.
    let voice_observer = Arc::new(LateObserver::default());
    let observers: Arc<dyn SignalObserver> = Arc::new(crate::calls::Observers(vec![
        faults,
        Arc::new(crate::care::observer::TestAlarmObserver::new(care.clone())),
        scaip_tracker.clone(),
        voice_observer.clone(),
    ]));
    // The journal's storage, for the committer and triage's reader.
    let journal_store = store.journal_store();
    let calls = start_calls(
        &store,
        &journal_store,
        cfg.triage.triage_options(),
        observers,
    )
    .await?;
    let care = CarePart::run(care, &calls, &shutdown);
    // Open incidents back (their devices rejoin them in triage).
    let incidents = {
        let (store, calls, outbox) = (store.clone(), calls.clone(), outbox.outbox.clone());
        Arc::new(
            tokio::task::spawn_blocking(move || Incidents::start(store, calls, Some(outbox)))
                .await??,
        )
    };
    let feed = calls.feed(cfg.triage.feed_capacity)?;
    let supervision = SupervisionPart::start(
        &store,
        &registry,
        cfg.supervision.clone(),
        cfg.incidents.clone(),
        incidents.clone(),
    )
    .await?;
    // Off the runtime: the journal's backend blocks its thread (PostgreSQL's journal drives
    // its connections with a runtime of its own) while it reads the next id and the window.
    let journal = {
        let (opts, metrics) = (cfg.journal_options(), metrics.clone());
        Arc::new(
            tokio::task::spawn_blocking(move || {
                Journal::start(
                    journal_store,
                    opts,
                    metrics,
                    jiff::Timestamp::now(),
                    Some(feed),
                )
            })
            .await??,
        )
    };
    tracing::info!(
        devices = registry.current().len(),
        next_signal_id = store.next_journal_id()?,
        data_dir = %cfg.data_dir.display(),
        "store opened"
    );
    let ingress = Arc::new(ingress(
        &registry,
        &supervision,
        metrics.clone(),
        cfg.dc09.receiver_options(),
        journal.clone(),
    ));
    let supervising = supervision.run(journal.clone(), shutdown.clone());
    let dispatch =
        DispatchPart::start(&store, &calls, tz.clone(), cfg.patrol.sla(), &shutdown).await?;
    // Where the SCAIP units are and until when they auto-answer, for calls out.
    let units = Arc::new(crate::voice::dial::Units::default());
    let scaip = Arc::new(
        Scaip::new(
            ingress.clone(),
            calls.triage.clone(),
            scaip_tracker,
            cfg.scaip.scaip_options(),
            ScaipMetrics::new(),
        )
        .with_desk(dispatch.desk.clone())
        .with_callbacks(units.clone(), cfg.voice.callback_window_mins),
    );
    let switchboard = if cfg.voice.enabled {
        let s = Switchboard::new(
            cfg.voice.switchboard_options(),
            registry.clone(),
            store.clone(),
            journal.clone(),
            calls.clone(),
            Arc::new(ScaipDigest(scaip.clone())),
            CallMedia {
                media: Arc::new(Media::new(cfg.voice.rtp.clone())?),
                webrtc: Arc::new(WebRtc::new(cfg.voice.webrtc.clone())?),
                recordings: cfg.voice.recording_options(&cfg.data_dir),
            },
        );
        // The recordings a crash left are repaired first, so the conversations they belong
        // to are ended with what was recorded.
        let dir = cfg.voice.recording_options(&cfg.data_dir).dir;
        let recovering = s.clone();
        tokio::task::spawn_blocking(move || {
            let recordings = crate::voice::record::recover(&dir)?;
            Ok::<_, ServerError>(recovering.recover(jiff::Timestamp::now(), &recordings)?)
        })
        .await??;
        voice_observer.set(&s);
        s.set_dialing(cfg.voice.dial_options(&cfg.scaip.arc_uri, units));
        Some(s)
    } else {
        None
    };
    let ready = Arc::new(AtomicBool::new(false));
    let (stats_rx, stats) = ConsolePart::stats(&store, &tz, &calls, shutdown.clone())?;

    // The listeners, once every part behind them is up.
    let mut addrs = Addrs::default();
    let accept_loops = TaskTracker::new();
    let devices = DevicesPart::start(
        DeviceListeners {
            dc09_tcp: listeners.dc09_tcp,
            dc09_udp: listeners.dc09_udp,
            scaip_udp: listeners.scaip_udp,
            scaip_tcp: listeners.scaip_tcp,
            scaip_tls: listeners.scaip_tls,
        },
        DeviceOptions {
            tcp: cfg.dc09.tcp_options(),
            udp_in_flight: cfg.dc09.max_udp_in_flight,
            sip: cfg.scaip.sip_options(),
            tls: match (&cfg.scaip.cert_file, &cfg.scaip.key_file) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                _ => None,
            },
            calls: switchboard.clone().map(|s| {
                (
                    Arc::new(s) as Arc<dyn sip::CallHandler>,
                    cfg.voice.invite_options(),
                )
            }),
            dialer: switchboard.clone(),
        },
        &ingress,
        &scaip,
        &metrics,
        &accept_loops,
        &shutdown,
        &mut addrs,
    )?;
    let patrols = match listeners.patrol_quic {
        None => None,
        Some(socket) => Some(PatrolPart::start(
            socket,
            &cfg.patrol_identity(),
            cfg.patrol.link_options(),
            &dispatch,
            &accept_loops,
            &shutdown,
            &mut addrs,
        )?),
    };
    let retention = Arc::new(crate::retention::Retention::new(
        store.clone(),
        Some(outbox.outbox.clone()),
        cfg.retention_options(&cfg.data_dir),
    ));
    let services = crate::console::Services {
        desk: dispatch.desk.clone(),
        supervision: supervision.supervision.clone(),
        incidents: incidents.clone(),
        outbox: outbox.outbox.clone(),
        work_orders: work_orders.work_orders.clone(),
        voice: switchboard.clone(),
        care: care.care.clone(),
        retention: retention.clone(),
    };
    let console = ConsolePart::start(
        listeners.http,
        cfg.http.http_options(),
        crate::console::ConsoleOptions {
            plans: cfg.plans.clone(),
            staffing: cfg.staffing,
            access_review: cfg.access_review.clone(),
            stats: cfg.stats.clone(),
            ..cfg.http.console_options()
        },
        ConsoleState {
            store: &store,
            registry: &registry,
            ready: &ready,
            leading,
            services,
            stats_rx,
            stats,
        },
        &accept_loops,
        &shutdown,
        &mut addrs,
    )?;
    let background = BackgroundPart::start(
        switchboard
            .is_some()
            .then(|| cfg.voice.recording_options(&cfg.data_dir)),
        retention.clone(),
        cfg.journal_keep(),
        &store,
        &work_orders.work_orders,
        &supervision.last_heard,
        &scaip,
        Duration::from_secs(cfg.journal.last_heard_persist_secs),
        &shutdown,
    );
    // The owned Calls of operators whose session ended go back to the queue.
    let handover = tokio::spawn(return_orphaned_calls(
        store.clone(),
        calls.clone(),
        Duration::from_secs(cfg.journal.last_heard_persist_secs),
        shutdown.clone(),
    ));

    ready.store(true, Ordering::Release);
    tracing::info!(
        dc09_tcp = ?addrs.dc09_tcp,
        dc09_udp = ?addrs.dc09_udp,
        http = ?addrs.http,
        patrol_quic = ?addrs.patrol_quic,
        scaip_udp = ?addrs.scaip_udp,
        scaip_tcp = ?addrs.scaip_tcp,
        scaip_tls = ?addrs.scaip_tls,
        version = env!("CARGO_PKG_VERSION"),
        "vakt ready"
    );
    let parts = Parts {
        ready,
        accept_loops,
        devices,
        supervising,
        journal,
        console,
        patrols,
        dispatch,
        calls,
        handover,
        work_orders,
        care,
        outbox,
        background,
        last_heard: supervision.last_heard,
        store,
    };
    Ok((parts, addrs))
}

/// The running parts, with what their stops need.
pub(super) struct Parts {
    ready: Arc<AtomicBool>,
    /// Every listener's accept loop.
    accept_loops: TaskTracker,
    devices: DevicesPart,
    supervising: JoinHandle<()>,
    journal: Arc<Journal>,
    console: ConsolePart,
    patrols: Option<PatrolPart>,
    dispatch: DispatchPart,
    calls: Arc<Calls>,
    /// The sweep that returns the Calls of ended sessions (it writes to the Calls).
    handover: JoinHandle<()>,
    work_orders: WorkOrdersPart,
    care: CarePart,
    outbox: OutboxPart,
    background: BackgroundPart,
    last_heard: Arc<LastHeard>,
    store: Store,
}

impl Parts {
    /// Stops every part in order (the shutdown token is cancelled: the accept loops, the
    /// connections, the loops and timers have begun to stop), within `grace` for the
    /// connections.
    pub(super) async fn stop(self, grace: Duration) -> Result<(), ServerError> {
        let deadline = tokio::time::Instant::now() + grace;
        // A stage that comes after the deadline still gets a moment to close cleanly.
        let until = || deadline.max(tokio::time::Instant::now() + Duration::from_millis(100));
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: no new connections or frames"
        );
        self.ready.store(false, Ordering::Release);
        // 1. No new connections.
        self.accept_loops.close();
        self.accept_loops.wait().await;
        // 2. The devices' connections finish the frames they have read, answer them, and
        //    close.
        self.devices.scope.close(deadline, "connections").await;
        // 3. No more silences: the supervision loop stops before the journal closes.
        let _ = self.supervising.await;
        // 4. Everything queued is committed and flushed.
        self.journal.close().await;
        // 5. Operators' requests in flight finish (the live feeds close on the token).
        if let Some(http) = &self.console.http {
            http.close(until(), "HTTP connections").await;
        }
        // 6. Patrols' sessions end (their last events are stored) and the clocks stop,
        //    before the Call writer stops: both write dispatch steps to the Calls.
        if let Some(p) = self.patrols {
            p.stop(until()).await;
        }
        let _ = self.dispatch.ticker.await;
        let _ = self.handover.await;
        // 7. The journal's feed is closed now: triage what it handed over, write every Call.
        self.calls.close().await;
        // 8. The triage thread has stopped: the installers' queue drains and closes.
        self.work_orders.drain.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.work_orders.installers).await;
        //    The care system's notes of the Calls closed so far are queued, and its tick stops.
        self.care.drain.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.care.task).await;
        // 9. Deliveries in flight finish; the rest wait in the store for the next start.
        self.outbox.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.outbox.outbox.stopped()).await;
        // 10. The timers.
        let _ = self.background.periodic.await;
        let _ = self.background.upkeep.await;
        if let Some(r) = self.background.retention {
            let _ = r.await;
        }
        let _ = self.background.subscribers_retention.await;
        let _ = self.background.journal_retention.await;
        let _ = self.console.stats.await;
        // 11. Last-heard times (every other write was durable when it returned).
        persist_last_heard(&self.store, &self.last_heard).await;
        tracing::info!("shut down");
        Ok(())
    }
}

/// Creates the data directory (0700) and opens the store: sled in it with the configured
/// page cache, or PostgreSQL fenced by the lease's `epoch`.
async fn open_store(cfg: &Config, epoch: Option<i64>) -> Result<Store, ServerError> {
    // The data directory holds the recordings on every backend, and sled's files on sled.
    let dir = cfg.data_dir.clone();
    crate::store::create_private_dir(&dir).map_err(|source| ServerError::DataDir {
        path: dir.clone(),
        source,
    })?;
    match (cfg.store.backend, &cfg.store.url) {
        (StoreBackend::Sled, _) => {
            let cache_bytes = cfg.journal.cache_capacity_bytes;
            let log = cfg.journal.engine == crate::config::JournalEngine::Log;
            Ok(
                tokio::task::spawn_blocking(move || Store::open_with(&dir, cache_bytes, log))
                    .await??,
            )
        }
        (StoreBackend::Postgres, Some(url)) => {
            let url = url.clone();
            let store =
                tokio::task::spawn_blocking(move || Store::open_postgres(url.expose())).await??;
            store.set_epoch(epoch);
            Ok(store)
        }
        (StoreBackend::Postgres, None) => Err(ServerError::NoDatabase),
    }
}

/// The escalation outbox; it outlives everything that writes to it: stopped last.
struct OutboxPart {
    outbox: Outbox,
    stop: CancellationToken,
}

impl OutboxPart {
    fn start(store: &Store, endpoints: Vec<EscalationConfig>) -> Result<OutboxPart, ServerError> {
        let stop = CancellationToken::new();
        let outbox = Outbox::start(store.clone(), endpoints, stop.clone())?;
        Ok(OutboxPart { outbox, stop })
    }
}

/// Work orders from the device faults triage sees, and the installers' notifier. `start`
/// also gives the observer of triage that makes and updates the orders (the Calls own it).
struct WorkOrdersPart {
    work_orders: Arc<WorkOrders>,
    /// The installers' notifier, and what tells it to drain its queue and end.
    installers: JoinHandle<()>,
    drain: CancellationToken,
}

impl WorkOrdersPart {
    async fn start(
        store: &Store,
        outbox: &Outbox,
        registry: &Devices,
        opts: WorkOrderOptions,
        tz: jiff::tz::TimeZone,
    ) -> Result<(WorkOrdersPart, Arc<dyn SignalObserver>), ServerError> {
        let work_orders = {
            let store = store.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || {
                    WorkOrders::open(store, &opts, tz, jiff::Timestamp::now())
                })
                .await??,
            )
        };
        let (notify, notify_rx) = tokio::sync::mpsc::channel(INSTALLER_QUEUE);
        let drain = CancellationToken::new();
        let installers = tokio::spawn(tell_installers(outbox.clone(), notify_rx, drain.clone()));
        // The installer hears of new orders and of faults gone (a repeat shows on the order)
        // off the triage thread: a storm of faults must not make triage wait for the outbox's
        // sync per notification (when the queue is full, triage waits).
        let sink: crate::work_orders::ChangeSink =
            Arc::new(move |changes: &[crate::work_orders::Change]| {
                for c in changes {
                    if c.what == crate::work_orders::What::Attached {
                        continue;
                    }
                    if notify.blocking_send(c.clone()).is_err() {
                        tracing::error!("the installers' notifier has stopped");
                    }
                }
            });
        let faults: Arc<dyn SignalObserver> = Arc::new(crate::work_orders::FaultObserver::new(
            work_orders.clone(),
            registry.clone(),
            Some(sink),
        ));
        Ok((
            WorkOrdersPart {
                work_orders,
                installers,
                drain,
            },
            faults,
        ))
    }
}

/// How often the care service's tick runs (provider changes on their day, order gauges).
const CARE_TICK: Duration = Duration::from_secs(60);

/// The subscribers' lives: orders, installations, provider changes on their day, and the
/// care system's notes of closed Calls (off the triage path).
struct CarePart {
    care: Arc<crate::care::Care>,
    /// The tick and the closed Calls' notes, and what tells it to drain and end.
    task: JoinHandle<()>,
    drain: CancellationToken,
}

impl CarePart {
    async fn open(
        store: &Store,
        outbox: &Outbox,
        registry: &Devices,
        cfg: &Config,
        tz: jiff::tz::TimeZone,
    ) -> Result<Arc<crate::care::Care>, ServerError> {
        let days = crate::model::calendar::WorkingDays::new(cfg.work_orders.holidays.clone(), tz);
        let opts = crate::care::CareOptions {
            orders: cfg.orders.clone(),
            care: cfg.care.clone(),
        };
        let (store, outbox, registry) = (store.clone(), outbox.clone(), registry.clone());
        Ok(Arc::new(
            tokio::task::spawn_blocking(move || {
                crate::care::Care::open(store, registry, Some(outbox), days, opts)
            })
            .await??,
        ))
    }

    /// The tick every minute, and each Call that closes handed to the care service.
    fn run(care: Arc<crate::care::Care>, calls: &Calls, shutdown: &CancellationToken) -> CarePart {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        calls.on_closed(tx);
        // A test alarm taken, a provider in effect: the consoles showing the card load it.
        let live = calls.live.clone();
        care.on_change(move |s| {
            let _ = live.send(crate::calls::LiveEvent::Subscriber(Some(Arc::from(s))));
        });
        let drain = CancellationToken::new();
        let task = tokio::spawn(care_loop(care.clone(), rx, shutdown.clone(), drain.clone()));
        CarePart { care, task, drain }
    }
}

async fn care_loop(
    care: Arc<crate::care::Care>,
    mut closed: tokio::sync::mpsc::UnboundedReceiver<u64>,
    shutdown: CancellationToken,
    drain: CancellationToken,
) {
    let mut tick = tokio::time::interval(CARE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One at a time, in this task: a closing found both on the channel and among the owed
    // ones is handed on once (the second finds no mark).
    let closed_call = |id: u64| {
        let care = care.clone();
        async move {
            match tokio::task::spawn_blocking(move || care.hand_on_closing(id)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(call = id, error = %e, "the care system's note of a closed call was not queued; tried again in a minute")
                }
                Err(e) => {
                    tracing::error!(call = id, error = %e, "the care system's note task failed")
                }
            }
        }
    };
    loop {
        tokio::select! {
            _ = drain.cancelled() => break,
            Some(id) = closed.recv() => closed_call(id).await,
            // The first tick is at once: the closings a crash left owed go first.
            _ = tick.tick(), if !shutdown.is_cancelled() => {
                let c = care.clone();
                match tokio::task::spawn_blocking(move || c.hand_on_owed()).await {
                    Ok(Ok(n)) if n > 0 => {
                        tracing::info!(notes = n, "closings owed handed to the care system");
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "the closings owed could not be read"),
                    Err(e) => tracing::error!(error = %e, "the closings task failed"),
                }
                let c = care.clone();
                match tokio::task::spawn_blocking(move || c.on_tick(jiff::Timestamp::now())).await {
                    Ok(Ok(t)) if !t.providers_applied.is_empty() => {
                        tracing::info!(subscribers = t.providers_applied.len(), "provider changes in effect");
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "the care tick failed"),
                    Err(e) => tracing::error!(error = %e, "the care tick task failed"),
                }
            }
        }
    }
    while let Ok(id) = closed.try_recv() {
        closed_call(id).await;
    }
}

/// The Calls: open Calls back in the queue, and every journaled Signal not yet triaged
/// triaged now, before any new frame is accepted.
async fn start_calls(
    store: &Store,
    journal: &JournalStore,
    opts: TriageOptions,
    observers: Arc<dyn SignalObserver>,
) -> Result<Arc<Calls>, ServerError> {
    let (store, journal) = (store.clone(), journal.clone());
    Ok(Arc::new(
        tokio::task::spawn_blocking(move || {
            Calls::start_on(
                store,
                &journal,
                opts,
                CallMetrics::new(),
                jiff::Timestamp::now(),
                Some(observers),
            )
        })
        .await??,
    ))
}

/// How often the supervision loop looks for silent devices.
const SUPERVISION_EVERY: Duration = Duration::from_secs(1);

/// Last-heard times, heartbeat deadlines and the supervision loop.
struct SupervisionPart {
    last_heard: Arc<LastHeard>,
    supervisor: Arc<Supervisor>,
    supervision: Arc<Supervision>,
}

impl SupervisionPart {
    /// Last-heard times only for registered devices (the stored times of other accounts,
    /// left by older versions, are removed, never loaded); heartbeat deadlines from them.
    async fn start(
        store: &Store,
        registry: &Devices,
        opts: SupervisionOptions,
        incidents_opts: DetectorOptions,
        incidents: Arc<Incidents>,
    ) -> Result<SupervisionPart, ServerError> {
        let last_heard = Arc::new(LastHeard::new());
        let supervisor = Arc::new(Supervisor::new(opts).with_last_heard(last_heard.clone()));
        let devices: Vec<crate::model::Device> = registry.current().iter().cloned().collect();
        last_heard.sync(devices.iter().map(|d| d.account.as_str()));
        let (s, lh) = (store.clone(), last_heard.clone());
        let forgotten =
            tokio::task::spawn_blocking(move || s.load_last_heard(|a, ms| lh.load(a, ms)))
                .await??;
        if forgotten > 0 {
            tracing::info!(
                forgotten,
                "last-heard times of unregistered accounts removed from the store"
            );
        }
        let lh = last_heard.clone();
        let sup = supervisor.clone();
        let report = tokio::task::spawn_blocking(move || {
            sup.sync(
                &devices,
                |a| {
                    lh.get(a)
                        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                },
                jiff::Timestamp::now(),
            )
        })
        .await?;
        tracing::info!(supervised = report.added, "heartbeat deadlines set");
        let supervision = Arc::new(Supervision::new(
            supervisor.clone(),
            Detector::new(incidents_opts),
            incidents,
        ));
        Ok(SupervisionPart {
            last_heard,
            supervisor,
            supervision,
        })
    }

    /// The supervision loop: silences and restorations journaled, until `shutdown`.
    fn run(&self, journal: Arc<Journal>, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(crate::supervision::round::run(
            self.supervision.clone(),
            journal,
            SUPERVISION_EVERY,
            shutdown,
        ))
    }
}

/// The ingest conductor: the DC-09 rules (which move last-heard times and deadlines) over
/// the journal.
fn ingress(
    registry: &Devices,
    supervision: &SupervisionPart,
    metrics: Metrics,
    opts: ReceiverOptions,
    journal: Arc<Journal>,
) -> Ingress {
    let receiver = Receiver::new(
        registry.clone(),
        supervision.last_heard.clone(),
        metrics,
        opts,
    )
    .with_supervisor(supervision.supervisor.clone());
    Ingress::new(receiver, journal)
}

/// Dispatch: the desk (open dispatches and their clocks), the patrols' link and the ticker.
struct DispatchPart {
    desk: Arc<Desk>,
    link: Link,
    ticker: JoinHandle<()>,
}

impl DispatchPart {
    async fn start(
        store: &Store,
        calls: &Arc<Calls>,
        tz: jiff::tz::TimeZone,
        sla: crate::dispatch::sla::SlaOptions,
        shutdown: &CancellationToken,
    ) -> Result<DispatchPart, ServerError> {
        let link = Link::new();
        let desk = {
            let (store, calls, link) = (store.clone(), calls.clone(), link.clone());
            Arc::new(
                tokio::task::spawn_blocking(move || Desk::start(store, calls, link, tz, sla))
                    .await??,
            )
        };
        let ticker = tokio::spawn(tick_dispatches(desk.clone(), shutdown.clone()));
        Ok(DispatchPart { desk, link, ticker })
    }
}

/// The devices' listeners.
struct DeviceListeners {
    dc09_tcp: Option<tokio::net::TcpListener>,
    dc09_udp: Option<tokio::net::UdpSocket>,
    scaip_udp: Option<tokio::net::UdpSocket>,
    scaip_tcp: Option<tokio::net::TcpListener>,
    scaip_tls: Option<tokio::net::TcpListener>,
}

/// The devices' listeners' options.
struct DeviceOptions {
    tcp: tcp::TcpOptions,
    udp_in_flight: usize,
    sip: SipOptions,
    /// SCAIP TLS's certificate chain and key.
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Voice calls on the SIP endpoint: their handler and bounds (`[voice]`).
    calls: Option<(Arc<dyn sip::CallHandler>, sip::InviteOptions)>,
    /// The switchboard that calls out through the endpoint.
    dialer: Option<Switchboard>,
}

/// The SCAIP devices' SIP Digest (ingest's), for the switchboard's calls.
struct ScaipDigest(Arc<Scaip>);

impl Authenticator for ScaipDigest {
    fn authenticate(
        &self,
        msg: &vakt_proto::sip::Message<'_>,
        method: &str,
        uri: &str,
        peer: SocketAddr,
    ) -> Result<String, String> {
        sip::ScaipHandler::authenticate(&*self.0, msg, method, uri, peer)
    }

    fn authenticate_trunk(
        &self,
        msg: &vakt_proto::sip::Message<'_>,
        method: &str,
        uri: &str,
        peer: SocketAddr,
        credentials: &crate::voice::switchboard::TrunkCredentials,
    ) -> crate::voice::switchboard::TrunkCheck {
        self.0.authenticate_trunk(
            msg,
            method,
            uri,
            peer,
            &credentials.user,
            &credentials.password,
        )
    }
}

/// DC-09 over TCP and UDP, SCAIP over UDP, TCP and TLS: their connections, datagrams and
/// answer tasks share one scope.
struct DevicesPart {
    scope: Scope,
}

impl DevicesPart {
    #[allow(clippy::too_many_arguments)]
    fn start(
        l: DeviceListeners,
        opts: DeviceOptions,
        ingress: &Arc<Ingress>,
        scaip: &Arc<Scaip>,
        metrics: &Metrics,
        accept_loops: &TaskTracker,
        shutdown: &CancellationToken,
        addrs: &mut Addrs,
    ) -> Result<DevicesPart, ServerError> {
        let scope = Scope::new(shutdown.clone());
        let tcp_addr =
            |l: &Option<tokio::net::TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let udp_addr =
            |s: &Option<tokio::net::UdpSocket>| s.as_ref().and_then(|s| s.local_addr().ok());
        addrs.dc09_tcp = tcp_addr(&l.dc09_tcp);
        addrs.dc09_udp = udp_addr(&l.dc09_udp);
        addrs.scaip_udp = udp_addr(&l.scaip_udp);
        addrs.scaip_tcp = tcp_addr(&l.scaip_tcp);
        addrs.scaip_tls = tcp_addr(&l.scaip_tls);
        let tls = match (&l.scaip_tls, &opts.tls) {
            (Some(_), Some((c, k))) => Some(sip::tls_acceptor(c, k)?),
            _ => None,
        };
        if let Some(l) = l.dc09_tcp {
            accept_loops.spawn(tcp::serve(
                l,
                ingress.clone(),
                opts.tcp,
                metrics.clone(),
                scope.clone(),
            ));
        }
        if let Some(s) = l.dc09_udp {
            accept_loops.spawn(udp::serve(
                s,
                ingress.clone(),
                opts.udp_in_flight,
                metrics.clone(),
                scope.clone(),
            ));
        }
        let mut ep = sip::Endpoint::new(
            scaip.clone(),
            opts.sip,
            scaip.metrics().clone(),
            scope.clone(),
        );
        if let Some((handler, invite)) = opts.calls {
            ep = ep.with_calls(handler, invite);
        }
        let ep = Arc::new(ep);
        if let Some(sb) = &opts.dialer {
            sb.set_dialer(Arc::new(Arc::downgrade(&ep)));
        }
        if let Some(s) = l.scaip_udp {
            accept_loops.spawn(sip::serve_udp(s, ep.clone()));
        }
        if let Some(l) = l.scaip_tcp {
            accept_loops.spawn(sip::serve_stream(l, None, ep.clone()));
        }
        if let (Some(l), Some(acceptor)) = (l.scaip_tls, tls) {
            accept_loops.spawn(sip::serve_stream(l, Some(acceptor), ep));
        }
        Ok(DevicesPart { scope })
    }
}

/// The patrols' QUIC link: its endpoint and the sessions' scope.
struct PatrolPart {
    endpoint: quinn::Endpoint,
    scope: Scope,
}

impl PatrolPart {
    fn start(
        socket: std::net::UdpSocket,
        identity: &IdentitySource,
        opts: LinkOptions,
        dispatch: &DispatchPart,
        accept_loops: &TaskTracker,
        shutdown: &CancellationToken,
        addrs: &mut Addrs,
    ) -> Result<PatrolPart, ServerError> {
        let identity = identity.load()?;
        let fp = crate::transport::quic::fingerprint_hex(&identity.fingerprint);
        let server_config = crate::transport::quic::server_config(&identity)?;
        let endpoint = quinn::Endpoint::new(
            crate::transport::quic::endpoint_config(&identity),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(ServerError::PatrolSocket)?;
        addrs.patrol_quic = endpoint.local_addr().ok();
        tracing::info!(addr = ?addrs.patrol_quic, fingerprint = %fp, "patrol link listening (QUIC)");
        addrs.patrol_fingerprint = Some(fp);
        let scope = Scope::new(shutdown.clone());
        accept_loops.spawn(patrol_link::accept(
            endpoint.clone(),
            dispatch.desk.clone(),
            dispatch.link.clone(),
            opts,
            scope.clone(),
        ));
        Ok(PatrolPart { endpoint, scope })
    }

    /// The sessions end (each saw the token) until `until`; then the endpoint closes.
    async fn stop(self, until: tokio::time::Instant) {
        self.scope.close(until, "patrol sessions").await;
        self.endpoint
            .close(crate::dispatch::wire::CLOSE_SHUTDOWN.into(), b"shutdown");
    }
}

/// What the console's API serves.
struct ConsoleState<'a> {
    store: &'a Store,
    registry: &'a Devices,
    /// Whether vakt accepts frames (`/ready`).
    ready: &'a Arc<AtomicBool>,
    /// On a cluster's leader, what `/ready` says of it.
    leading: Option<tokio::sync::watch::Receiver<crate::console::ready::Leading>>,
    services: crate::console::Services,
    /// Today's answer figures, and the task that keeps them fresh.
    stats_rx: tokio::sync::watch::Receiver<crate::calls::Stats>,
    stats: JoinHandle<()>,
}

/// The console: its HTTP connections' scope, and today's answer figures.
struct ConsolePart {
    http: Option<Scope>,
    stats: JoinHandle<()>,
}

impl ConsolePart {
    /// The console's API on `listener`, if there is one.
    #[allow(clippy::too_many_arguments)]
    fn start(
        listener: Option<tokio::net::TcpListener>,
        http_opts: http::HttpOptions,
        console_opts: crate::console::ConsoleOptions,
        state: ConsoleState<'_>,
        accept_loops: &TaskTracker,
        shutdown: &CancellationToken,
        addrs: &mut Addrs,
    ) -> Result<ConsolePart, ServerError> {
        let ConsoleState {
            store,
            registry,
            ready,
            leading,
            services,
            stats_rx,
            stats,
        } = state;
        let Some(l) = listener else {
            return Ok(ConsolePart { http: None, stats });
        };
        addrs.http = l.local_addr().ok();
        let mut state = crate::console::AppState::new(
            store.clone(),
            ready.clone(),
            services,
            registry.clone(),
            stats_rx,
            console_opts,
            shutdown.clone(),
        )?;
        state.cluster = leading;
        // The staffing figures, until shutdown (with the accept loops: it ends at the token).
        accept_loops.spawn(crate::console::staffing_api::watch(state.clone()));
        let scope = Scope::new(shutdown.clone());
        accept_loops.spawn(http::serve(
            l,
            crate::console::router(state),
            http_opts,
            scope.clone(),
        ));
        Ok(ConsolePart {
            http: Some(scope),
            stats,
        })
    }

    /// Today's answer figures, kept fresh until `shutdown`.
    fn stats(
        store: &Store,
        tz: &jiff::tz::TimeZone,
        calls: &Calls,
        shutdown: CancellationToken,
    ) -> Result<
        (
            tokio::sync::watch::Receiver<crate::calls::Stats>,
            JoinHandle<()>,
        ),
        ServerError,
    > {
        let first = crate::calls::stats_today(store, tz, jiff::Timestamp::now())?;
        let (tx, rx) = tokio::sync::watch::channel(first);
        let task = tokio::spawn(keep_stats(
            store.clone(),
            tz.clone(),
            calls.stats_dirty.clone(),
            tx,
            shutdown,
        ));
        Ok((rx, task))
    }
}

/// The timers: the metrics' upkeep, and the periodic work.
struct BackgroundPart {
    upkeep: JoinHandle<u64>,
    periodic: JoinHandle<()>,
    /// The recordings' retention (with voice calls on).
    retention: Option<JoinHandle<u64>>,
    /// The retention of subscribers' data after the end.
    subscribers_retention: JoinHandle<u64>,
    /// The journal's retention.
    journal_retention: JoinHandle<u64>,
}

impl BackgroundPart {
    /// Every `every`: SCAIP holds whose device went quiet, work orders' metrics, last-heard
    /// persistence, expired sessions.
    #[allow(clippy::too_many_arguments)]
    fn start(
        recordings: Option<RecordingOptions>,
        subscribers: Arc<crate::retention::Retention>,
        journal_keep: crate::journal::retention::KeepOptions,
        store: &Store,
        work_orders: &Arc<WorkOrders>,
        last_heard: &Arc<LastHeard>,
        scaip: &Arc<Scaip>,
        every: Duration,
        shutdown: &CancellationToken,
    ) -> BackgroundPart {
        // The metrics' upkeep on its own short timer (samples pile up between upkeeps).
        let upkeep = tokio::spawn(crate::telemetry::upkeep(
            crate::telemetry::UPKEEP_EVERY,
            shutdown.clone(),
        ));
        // Recordings past their retention deleted at start and hourly, each one audited.
        let retention = recordings.map(|r| {
            tokio::spawn(crate::voice::retention::run(
                store.clone(),
                r,
                shutdown.clone(),
            ))
        });
        // Subscribers' data deleted and anonymised the configured time after their end, at
        // start and hourly, on the blocking pool.
        let subscribers_retention =
            tokio::spawn(crate::retention::run(subscribers, shutdown.clone()));
        // Signals past the journal's retention archived and deleted, a whole segment at a
        // time, at start and hourly, on the blocking pool.
        let journal_retention = tokio::spawn(crate::journal::retention::run(
            store.clone(),
            journal_keep,
            shutdown.clone(),
        ));
        let store = store.clone();
        let work_orders = work_orders.clone();
        let last_heard = last_heard.clone();
        let token = shutdown.clone();
        let scaip = scaip.clone();
        let periodic = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {},
                    () = token.cancelled() => return,
                }
                // Holds whose device went quiet stop counting without new requests.
                scaip.tick(jiff::Timestamp::now());
                // Orders become late by time passing alone.
                work_orders.publish_metrics(jiff::Timestamp::now());
                persist_last_heard(&store, &last_heard).await;
                let s = store.clone();
                let now = jiff::Timestamp::now();
                match tokio::task::spawn_blocking(move || s.purge_sessions(now)).await {
                    Ok(Ok(n)) if n > 0 => tracing::debug!(sessions = n, "expired sessions removed"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "removing expired sessions failed"),
                    _ => {}
                }
            }
        });
        BackgroundPart {
            upkeep,
            periodic,
            retention,
            subscribers_retention,
            journal_retention,
        }
    }
}

/// Every `every`: the Calls owned by operators who are no longer logged in (their session
/// expired or ended, they were disabled) go back to the queue
/// ([`crate::console::handover_api::sweep`]), durably.
async fn return_orphaned_calls(
    store: Store,
    calls: Arc<crate::calls::Calls>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let (s, c) = (store.clone(), calls.clone());
        let r = tokio::task::spawn_blocking(move || {
            let back = crate::console::handover_api::sweep(&s, &c, jiff::Timestamp::now())
                .map_err(|e| e.to_string())?;
            if !back.is_empty() {
                c.flush_blocking().map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(back.len())
        })
        .await;
        match r {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!(calls = n, "owned calls of ended sessions back in the queue")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "returning the calls of ended sessions failed")
            }
            Err(e) => tracing::warn!(error = %e, "returning the calls of ended sessions failed"),
        }
    }
}

/// Changes waiting to be told to installers.
const INSTALLER_QUEUE: usize = 1024;

/// Tells installers of work-order changes, in order, off the triage thread (durably,
/// through the outbox). At `drain` (the triage thread has stopped) the queue takes nothing
/// more; what is in it is told, then the task ends.
async fn tell_installers(
    outbox: Outbox,
    mut rx: tokio::sync::mpsc::Receiver<crate::work_orders::Change>,
    drain: CancellationToken,
) {
    loop {
        let c = tokio::select! {
            biased;
            c = rx.recv() => c,
            // The Calls keep the sender as long as they live: close the queue instead.
            () = drain.cancelled(), if !rx.is_closed() => {
                rx.close();
                continue;
            }
        };
        let Some(c) = c else { return };
        let r = match c.outbox_event() {
            Ok(ev) => outbox.enqueue_async(ev).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::error!(error = %e, order = c.order.id, "queuing the installer's notification failed");
        }
    }
}

/// Longest sleep of the dispatch ticker: the wall clock is checked at least this often
/// (a clock step, a dispatch restored with a due time).
const TICK_AT_MOST: Duration = Duration::from_secs(5);

/// Runs the dispatch clocks: sleeps until the next moment due (or a change that may bring it
/// sooner), then ticks off the async threads.
async fn tick_dispatches(desk: Arc<crate::dispatch::desk::Desk>, shutdown: CancellationToken) {
    // A tick that found nothing to do while something was due must not spin.
    let mut floor = Duration::ZERO;
    loop {
        let wait = desk
            .next_due()
            .map(|due| {
                let ms = due.as_millisecond() - jiff::Timestamp::now().as_millisecond();
                Duration::from_millis(u64::try_from(ms).unwrap_or(0))
            })
            .unwrap_or(TICK_AT_MOST)
            .clamp(floor, TICK_AT_MOST);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = desk.wake.notified() => continue,
            () = shutdown.cancelled() => return,
        }
        let d = desk.clone();
        let r = tokio::task::spawn_blocking(move || {
            let n = d.tick(jiff::Timestamp::now())?;
            if n > 0 {
                d.flush_blocking()?;
            }
            Ok::<_, crate::dispatch::desk::DeskError>(n)
        })
        .await;
        match r {
            Ok(Ok(n)) => {
                floor = if n > 0 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(200)
                };
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "running the dispatch clocks failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
            Err(e) => tracing::error!(error = %e, "the dispatch clock task failed"),
        }
    }
}

/// Keeps today's answer figures fresh: every 10 s, and half a second after a change.
async fn keep_stats(
    store: Store,
    tz: jiff::tz::TimeZone,
    dirty: Arc<tokio::sync::Notify>,
    tx: tokio::sync::watch::Sender<crate::calls::Stats>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = dirty.notified() => {
                // Let a burst of changes settle into one computation.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
            () = shutdown.cancelled() => return,
        }
        let s = store.clone();
        let tz = tz.clone();
        let r = tokio::task::spawn_blocking(move || {
            crate::calls::stats_today(&s, &tz, jiff::Timestamp::now())
        })
        .await;
        match r {
            Ok(Ok(st)) => {
                tx.send_if_modified(|old| {
                    if *old == st {
                        false
                    } else {
                        *old = st;
                        true
                    }
                });
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "computing the answer figures failed"),
            Err(e) => tracing::warn!(error = %e, "computing the answer figures failed"),
        }
    }
}

/// Writes the last-heard times that changed since the last write (registered devices only).
async fn persist_last_heard(store: &Store, last_heard: &Arc<LastHeard>) {
    let changed = last_heard.changed();
    if changed.is_empty() {
        return;
    }
    let (store, lh) = (store.clone(), last_heard.clone());
    let r = tokio::task::spawn_blocking(move || {
        store.save_last_heard(&changed)?;
        // Only what was written counts as saved; after a failure it is written next time.
        lh.saved(&changed);
        Ok::<_, StoreError>(())
    })
    .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "persisting last-heard times failed"),
        Err(e) => tracing::warn!(error = %e, "persisting last-heard times failed"),
    }
}
