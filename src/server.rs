//! Wiring: opens the store, builds the parts, spawns the listeners, and shuts down in order
//! with a deadline: stop accepting, finish the frames in flight, flush the journal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::calls::{Calls, SignalObserver};
use crate::config::Config;
use crate::ingest::Ingress;
use crate::ingest::dc09::{Receiver, ReceiverOptions};
use crate::journal::{Journal, JournalOptions};
use crate::outbox::Outbox;
use crate::registers::devices::Registry;
use crate::store::{Store, StoreError};
use crate::supervision::LastHeard;
use crate::supervision::Supervisor;
use crate::supervision::detector::Detector;
use crate::supervision::incidents::Incidents;
use crate::supervision::round::Supervision;
use crate::telemetry::{CallMetrics, Metrics};
use crate::transport::limit::PerSource;
use crate::transport::{tcp, udp};
use crate::triage::TriageOptions;
use crate::work_orders::WorkOrders;

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound (the reason is in the message, not chained, so it is
    /// printed once).
    #[error("cannot listen on {addr} for {what}: {}", bind_reason(.error))]
    Bind {
        /// Which listener: `DC-09 TCP`, `DC-09 UDP`, `HTTP`, `the patrol link (QUIC)`,
        /// `SCAIP UDP`, `SCAIP TCP`, `SCAIP TLS`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal could not start.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// A blocking task of the server panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The Call service could not start.
    #[error(transparent)]
    Calls(#[from] crate::calls::CallsError),
    /// The console could not start.
    #[error("console: {0}")]
    Console(#[from] crate::console::auth::AuthError),
    /// The patrol link could not start (certificate, key, QUIC).
    #[error("patrol link: {0}")]
    Quic(#[from] crate::transport::quic::QuicError),
    /// The patrol link's socket could not be used.
    #[error("patrol link: {0}")]
    PatrolSocket(std::io::Error),
    /// The escalation outbox could not start.
    #[error("escalation outbox: {0}")]
    Outbox(#[from] crate::outbox::OutboxError),
    /// Work orders could not be loaded.
    #[error("work orders: {0}")]
    WorkOrders(#[from] crate::work_orders::WorkOrderError),
    /// Incidents could not be loaded.
    #[error("incidents: {0}")]
    Incidents(#[from] crate::supervision::incidents::IncidentError),
    /// The open-file limit is too low for the listeners.
    #[error(transparent)]
    OpenFiles(#[from] crate::config::TooFewFiles),
}

fn bind_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "the address is in use".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".into()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "no interface of this machine has that address".into()
        }
        _ => e.to_string(),
    }
}

impl ServerError {
    /// For a listener whose address is taken: which listener (as in [`ServerError::Bind`]).
    pub fn address_in_use(&self) -> Option<&'static str> {
        match self {
            ServerError::Bind { what, error, .. }
                if error.kind() == std::io::ErrorKind::AddrInUse =>
            {
                Some(what)
            }
            _ => None,
        }
    }
}

/// The bound sockets (bind first, so tests can use port 0 and read the addresses).
#[derive(Debug)]
pub struct Listeners {
    /// DC-09 TCP.
    pub dc09_tcp: Option<TcpListener>,
    /// DC-09 UDP.
    pub dc09_udp: Option<UdpSocket>,
    /// HTTP.
    pub http: Option<TcpListener>,
    /// The patrols' QUIC link (a UDP socket; the endpoint is made once the certificate is
    /// known).
    pub patrol_quic: Option<std::net::UdpSocket>,
    /// SCAIP: SIP over UDP.
    pub scaip_udp: Option<UdpSocket>,
    /// SCAIP: SIP over TCP.
    pub scaip_tcp: Option<TcpListener>,
    /// SCAIP: SIP over TLS.
    pub scaip_tls: Option<TcpListener>,
}

impl Listeners {
    /// Binds every listener the configuration names.
    pub async fn bind(cfg: &Config) -> Result<Listeners, ServerError> {
        let bind_err = |what, addr| move |error| ServerError::Bind { what, addr, error };
        let dc09_tcp = match cfg.dc09.listen_tcp {
            Some(a) => {
                Some(bind_tcp(a, cfg.dc09.listen_backlog).map_err(bind_err("DC-09 TCP", a))?)
            }
            None => None,
        };
        let dc09_udp = match cfg.dc09.listen_udp {
            Some(a) => Some(UdpSocket::bind(a).await.map_err(bind_err("DC-09 UDP", a))?),
            None => None,
        };
        let http = match cfg.http.listen {
            // The same backlog as the devices': at the connection cap, new clients wait
            // there (a permit is taken before accept) instead of having their SYNs dropped.
            Some(a) => Some(bind_tcp(a, cfg.dc09.listen_backlog).map_err(bind_err("HTTP", a))?),
            None => None,
        };
        let patrol_quic = match cfg.patrol.listen_quic {
            Some(a) => {
                Some(std::net::UdpSocket::bind(a).map_err(bind_err("the patrol link (QUIC)", a))?)
            }
            None => None,
        };
        let sc = &cfg.scaip;
        let backlog = cfg.dc09.listen_backlog;
        let scaip_udp = match sc.listen_udp {
            Some(a) => Some(UdpSocket::bind(a).await.map_err(bind_err("SCAIP UDP", a))?),
            None => None,
        };
        let scaip_tcp = match sc.listen_tcp {
            Some(a) => Some(bind_tcp(a, backlog).map_err(bind_err("SCAIP TCP", a))?),
            None => None,
        };
        let scaip_tls = match sc.listen_tls {
            Some(a) => Some(bind_tcp(a, backlog).map_err(bind_err("SCAIP TLS", a))?),
            None => None,
        };
        Ok(Listeners {
            dc09_tcp,
            dc09_udp,
            http,
            patrol_quic,
            scaip_udp,
            scaip_tcp,
            scaip_tls,
        })
    }
}

/// Binds a TCP listener with an explicit accept backlog (tokio's `bind` uses 128).
fn bind_tcp(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    /// DC-09 TCP address, if listening.
    pub dc09_tcp: Option<SocketAddr>,
    /// DC-09 UDP address, if listening.
    pub dc09_udp: Option<SocketAddr>,
    /// HTTP address, if listening.
    pub http: Option<SocketAddr>,
    /// The patrols' QUIC address, if listening.
    pub patrol_quic: Option<SocketAddr>,
    /// SHA-256 fingerprint (hex) of the certificate the patrol link serves.
    pub patrol_fingerprint: Option<String>,
    /// SCAIP over UDP, if listening.
    pub scaip_udp: Option<SocketAddr>,
    /// SCAIP over TCP, if listening.
    pub scaip_tcp: Option<SocketAddr>,
    /// SCAIP over TLS, if listening.
    pub scaip_tls: Option<SocketAddr>,
    /// Cancel to shut down.
    pub shutdown: CancellationToken,
    /// Finishes when the server has shut down.
    pub done: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Shuts down and waits for it.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        match self.done.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "server task failed");
                Ok(())
            }
        }
    }
}

/// Opens the store, binds the listeners and starts serving on the current runtime.
pub async fn start(cfg: Config) -> Result<Running, ServerError> {
    let listeners = Listeners::bind(&cfg).await?;
    start_with(cfg, listeners).await
}

/// Starts serving on listeners that are already bound.
pub async fn start_with(mut cfg: Config, listeners: Listeners) -> Result<Running, ServerError> {
    // Every connection is a file: the caps must fit the process's open-file limit.
    if let Some(limit) = crate::config::open_files_limit() {
        for line in crate::config::fit_open_files(&mut cfg, limit)? {
            tracing::warn!(
                open_files = limit,
                "{line}: the connection caps did not fit the open-file limit (raise it with `ulimit -n` or LimitNOFILE= to keep them)"
            );
        }
    }
    crate::store::create_private_dir(&cfg.data_dir).map_err(|source| ServerError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let store = {
        let dir = cfg.data_dir.clone();
        let cache = cfg.journal.cache_capacity_bytes;
        tokio::task::spawn_blocking(move || Store::open_with_cache(&dir, cache)).await??
    };
    let metrics = Metrics::new();
    let registry = crate::registers::devices::Devices::new(Registry::new(store.devices()?));
    let tz = cfg.http.tz();
    let shutdown = CancellationToken::new();
    // The outbox outlives everything that writes to it: stopped last.
    let outbox_stop = CancellationToken::new();
    let outbox = Outbox::start(store.clone(), cfg.escalation.clone(), outbox_stop.clone())?;
    let work_orders = {
        let store = store.clone();
        let opts = cfg.work_orders.clone();
        let tz = tz.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || {
                WorkOrders::open(store, &opts, tz, jiff::Timestamp::now())
            })
            .await??,
        )
    };
    let (notify, notify_rx) = tokio::sync::mpsc::channel(INSTALLER_QUEUE);
    let installers = tokio::spawn(tell_installers(outbox.clone(), notify_rx));
    // Work orders from the device faults triage sees; the installer hears of new orders and
    // of faults gone (a repeat shows on the order) off the triage thread: a storm of faults
    // must not make triage wait for a flush per notification (when the queue is full,
    // triage waits).
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
    // SCAIP learns which Call each of its alarms went into (for hold / voice answers).
    let scaip_tracker = Arc::new(crate::ingest::scaip::Tracker::new(store.triage_cursor()?));
    let observers: Arc<dyn SignalObserver> =
        Arc::new(crate::calls::Observers(vec![faults, scaip_tracker.clone()]));
    // Open Calls back in the queue, and every journaled Signal not yet triaged triaged now,
    // before any new frame is accepted.
    let calls = {
        let store = store.clone();
        let opts = TriageOptions {
            escalate_after: cfg.triage.escalate_after,
        };
        Arc::new(
            tokio::task::spawn_blocking(move || {
                Calls::start_observed(
                    store,
                    opts,
                    CallMetrics::new(),
                    jiff::Timestamp::now(),
                    Some(observers),
                )
            })
            .await??,
        )
    };
    // Open incidents back (their devices rejoin them in triage); heartbeat deadlines from
    // the last-heard times.
    let incidents = {
        let store = store.clone();
        let calls = calls.clone();
        let outbox = outbox.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || Incidents::start(store, calls, Some(outbox)))
                .await??,
        )
    };
    let feed = calls.feed(cfg.triage.feed_capacity)?;
    // Last-heard times only for registered devices: the stored times of other accounts
    // (left by older versions) are removed, never loaded.
    let last_heard = Arc::new(LastHeard::new());
    let supervisor =
        Arc::new(Supervisor::new(cfg.supervision.clone()).with_last_heard(last_heard.clone()));
    {
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
    }
    let supervision = Arc::new(Supervision::new(
        supervisor.clone(),
        Detector::new(cfg.incidents.clone()),
        incidents.clone(),
    ));
    let journal = Journal::start(
        store.clone(),
        JournalOptions {
            max_batch: cfg.journal.max_batch,
            queue_capacity: cfg.journal.queue_capacity,
            dedup_window_secs: cfg.dc09.dedup_window_secs,
            dedup_max_entries: cfg.dc09.dedup_max_entries,
        },
        metrics.clone(),
        jiff::Timestamp::now(),
        Some(feed),
    )?;
    tracing::info!(
        devices = registry.current().len(),
        next_signal_id = store.next_journal_id()?,
        data_dir = %cfg.data_dir.display(),
        "store opened"
    );
    let receiver = Receiver::new(
        registry.clone(),
        last_heard.clone(),
        metrics,
        ReceiverOptions {
            timestamp_past_secs: cfg.dc09.timestamp_past_secs,
            timestamp_future_secs: cfg.dc09.timestamp_future_secs,
        },
    )
    .with_supervisor(supervisor.clone());
    let journal = Arc::new(journal);
    let ingress = Arc::new(Ingress {
        receiver,
        journal: journal.clone(),
    });
    let supervising = tokio::spawn(crate::supervision::round::run(
        supervision.clone(),
        journal,
        SUPERVISION_EVERY,
        shutdown.clone(),
    ));

    let tracker = TaskTracker::new();
    let ready = Arc::new(AtomicBool::new(false));
    let addr = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let dc09_tcp = addr(&listeners.dc09_tcp);
    let http = addr(&listeners.http);
    let dc09_udp = listeners
        .dc09_udp
        .as_ref()
        .and_then(|s| s.local_addr().ok());

    // Accept loops: stopped by the token; connection tasks go on the tracker.
    let accept_tracker = TaskTracker::new();
    if let Some(l) = listeners.dc09_tcp {
        let opts = tcp::TcpOptions {
            max_connections: cfg.dc09.max_connections,
            max_per_source: cfg.dc09.max_connections_per_source,
            idle_timeout: Duration::from_secs(cfg.dc09.idle_timeout_secs),
            frame_timeout: Duration::from_secs(cfg.dc09.frame_timeout_secs),
        };
        accept_tracker.spawn(tcp::serve(
            l,
            ingress.clone(),
            opts,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    if let Some(s) = listeners.dc09_udp {
        accept_tracker.spawn(udp::serve(
            s,
            ingress.clone(),
            cfg.dc09.max_udp_in_flight,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    // Dispatch: the desk (open dispatches and their clocks), the patrols' link, the ticker.
    let link = crate::dispatch::patrol_link::Link::new();
    let desk = {
        let store = store.clone();
        let calls = calls.clone();
        let link = link.clone();
        let tz = tz.clone();
        let sla = cfg.patrol.sla();
        Arc::new(
            tokio::task::spawn_blocking(move || {
                crate::dispatch::desk::Desk::start(store, calls, link, tz, sla)
            })
            .await??,
        )
    };
    // SCAIP: the alarm sessions over the journal and triage, and the SIP endpoint.
    let scaip_tls_acceptor = match (
        &listeners.scaip_tls,
        &cfg.scaip.cert_file,
        &cfg.scaip.key_file,
    ) {
        (Some(_), Some(c), Some(k)) => Some(crate::transport::sip::tls_acceptor(c, k)?),
        _ => None,
    };
    let scaip_udp = listeners
        .scaip_udp
        .as_ref()
        .and_then(|s| s.local_addr().ok());
    let scaip_tcp = addr(&listeners.scaip_tcp);
    let scaip_tls = addr(&listeners.scaip_tls);
    let scaip_metrics = crate::telemetry::ScaipMetrics::new();
    let scaip = Arc::new(
        crate::ingest::scaip::Scaip::new(
            ingress.clone(),
            calls.triage.clone(),
            scaip_tracker,
            cfg.scaip.scaip_options(),
            scaip_metrics.clone(),
        )
        .with_desk(desk.clone()),
    );
    let sip = Arc::new(crate::transport::sip::Endpoint::new(
        scaip.clone(),
        cfg.scaip.sip_options(),
        scaip_metrics,
        tracker.clone(),
        shutdown.clone(),
    ));
    if let Some(s) = listeners.scaip_udp {
        accept_tracker.spawn(crate::transport::sip::serve_udp(
            s,
            sip.clone(),
            shutdown.clone(),
        ));
    }
    let per_source = cfg.scaip.max_connections_per_source;
    if let Some(l) = listeners.scaip_tcp {
        accept_tracker.spawn(crate::transport::sip::serve_stream(
            l,
            None,
            sip.clone(),
            PerSource::new("scaip_tcp", per_source),
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    if let (Some(l), Some(acceptor)) = (listeners.scaip_tls, scaip_tls_acceptor) {
        accept_tracker.spawn(crate::transport::sip::serve_stream(
            l,
            Some(acceptor),
            sip.clone(),
            PerSource::new("scaip_tls", per_source),
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    let mut patrol_quic = None;
    let mut patrol_fingerprint = None;
    let patrol_task = match listeners.patrol_quic {
        None => None,
        Some(socket) => {
            let identity = match (&cfg.patrol.cert_file, &cfg.patrol.key_file) {
                (Some(c), Some(k)) => crate::transport::quic::load_identity(c, k)?,
                _ => {
                    let (id, made) = crate::transport::quic::dev_identity(
                        &cfg.data_dir,
                        &cfg.patrol.dev_cert_names,
                    )?;
                    if made {
                        tracing::warn!(
                            dir = %cfg.data_dir.display(),
                            "made a self-signed development certificate for the patrol link; configure patrol.cert_file and key_file for patrols on real networks"
                        );
                    }
                    id
                }
            };
            let fp = crate::transport::quic::fingerprint_hex(&identity.fingerprint);
            let server_config = crate::transport::quic::server_config(&identity)?;
            let endpoint = quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                Some(server_config),
                socket,
                Arc::new(quinn::TokioRuntime),
            )
            .map_err(ServerError::PatrolSocket)?;
            patrol_quic = endpoint.local_addr().ok();
            tracing::info!(addr = ?patrol_quic, fingerprint = %fp, "patrol link listening (QUIC)");
            patrol_fingerprint = Some(fp);
            Some(tokio::spawn(crate::dispatch::patrol_link::serve_limited(
                endpoint,
                desk.clone(),
                link.clone(),
                cfg.patrol.max_sessions,
                PerSource::new("patrol_quic", cfg.patrol.max_sessions_per_source),
                shutdown.clone(),
            )))
        }
    };
    let ticker = tokio::spawn(tick_dispatches(desk.clone(), shutdown.clone()));
    let (stats_rx, stats_task) = {
        let first = crate::calls::stats_today(&store, &tz, jiff::Timestamp::now())?;
        let (tx, rx) = tokio::sync::watch::channel(first);
        let task = tokio::spawn(keep_stats(
            store.clone(),
            tz.clone(),
            calls.stats_dirty.clone(),
            tx,
            shutdown.clone(),
        ));
        (rx, task)
    };
    let http_task = match listeners.http {
        None => None,
        Some(l) => {
            let state = crate::console::AppState::new(
                store.clone(),
                ready.clone(),
                crate::console::Services {
                    desk: desk.clone(),
                    supervision: supervision.clone(),
                    incidents: incidents.clone(),
                    outbox: outbox.clone(),
                    work_orders: work_orders.clone(),
                },
                registry.clone(),
                stats_rx,
                crate::console::ConsoleOptions {
                    session_hours: cfg.http.session_hours,
                    secure_cookie: cfg.http.secure_cookie,
                    tz: tz.clone(),
                    trusted_proxies: cfg.http.trusted_proxies.clone(),
                    client_address_header: cfg.http.client_address_header,
                    public_origin: cfg.http.public_origin.clone(),
                },
                shutdown.clone(),
            )?;
            let opts = crate::transport::http::HttpOptions {
                max_connections: cfg.http.max_connections,
                max_per_source: cfg.http.max_connections_per_source,
                header_read_timeout: Duration::from_secs(cfg.http.header_read_timeout_secs),
                grace: cfg.shutdown_grace(),
            };
            Some(tokio::spawn(crate::transport::http::serve(
                l,
                crate::console::router(state),
                opts,
                shutdown.clone(),
            )))
        }
    };
    // The metrics' upkeep on its own short timer (samples pile up between upkeeps).
    let upkeep = tokio::spawn(crate::telemetry::upkeep(
        crate::telemetry::UPKEEP_EVERY,
        shutdown.clone(),
    ));
    // Periodic work: last-heard persistence, SCAIP holds, work orders' metrics, sessions.
    let periodic = {
        let store = store.clone();
        let work_orders_m = work_orders.clone();
        let last_heard = last_heard.clone();
        let token = shutdown.clone();
        let scaip = scaip.clone();
        let every = Duration::from_secs(cfg.journal.last_heard_persist_secs);
        tokio::spawn(async move {
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
                work_orders_m.publish_metrics(jiff::Timestamp::now());
                persist_last_heard(&store, &last_heard).await;
                let s = store.clone();
                let now = jiff::Timestamp::now();
                match tokio::task::spawn_blocking(move || s.purge_sessions(now)).await {
                    Ok(Ok(n)) if n > 0 => tracing::debug!(sessions = n, "expired sessions removed"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "removing expired sessions failed"),
                    _ => {}
                }
            }
        })
    };

    ready.store(true, Ordering::Release);
    tracing::info!(
        dc09_tcp = ?dc09_tcp,
        dc09_udp = ?dc09_udp,
        http = ?http,
        patrol_quic = ?patrol_quic,
        scaip_udp = ?scaip_udp,
        scaip_tcp = ?scaip_tcp,
        scaip_tls = ?scaip_tls,
        version = env!("CARGO_PKG_VERSION"),
        "vakt ready"
    );

    let grace = cfg.shutdown_grace();
    let token = shutdown.clone();
    let done = tokio::spawn(async move {
        token.cancelled().await;
        let deadline = tokio::time::Instant::now() + grace;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: no new connections or frames"
        );
        ready.store(false, Ordering::Release);
        accept_tracker.close();
        accept_tracker.wait().await;
        // Connections finish the frames they have read, answer them, and close.
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                left = tracker.len(),
                "shutdown deadline reached; closing the rest"
            );
        }
        // No more silences: the supervision loop stops before the journal closes.
        let _ = supervising.await;
        ingress.journal.close().await;
        // Operators' requests in flight finish (the live feeds close on the token): the
        // HTTP connections began to close at the token too, within the same grace deadline.
        if let Some(h) = http_task {
            let until = deadline.max(tokio::time::Instant::now() + Duration::from_millis(100));
            let _ = tokio::time::timeout_at(until, h).await;
        }
        // Patrols' sessions end (their last events are stored) and the clocks stop, before
        // the Call writer stops: both write dispatch steps to the Calls.
        if let Some(h) = patrol_task {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
        let _ = ticker.await;
        // The journal's feed is closed now: triage what it handed over, write every Call.
        calls.close().await;
        // The triage thread has stopped: the installers' queue drains and closes.
        let _ = tokio::time::timeout(Duration::from_secs(5), installers).await;
        // Deliveries in flight finish; the rest wait in the store for the next start.
        outbox_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), outbox.stopped()).await;
        let _ = periodic.await;
        let _ = upkeep.await;
        let _ = stats_task.await;
        persist_last_heard(&store, &last_heard).await;
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.flush()).await??;
        tracing::info!("shut down");
        Ok(())
    });

    Ok(Running {
        dc09_tcp,
        dc09_udp,
        http,
        patrol_quic,
        patrol_fingerprint,
        scaip_udp,
        scaip_tcp,
        scaip_tls,
        shutdown,
        done,
    })
}

/// How often the supervision loop looks for silent devices.
const SUPERVISION_EVERY: Duration = Duration::from_secs(1);

/// Changes waiting to be told to installers.
const INSTALLER_QUEUE: usize = 1024;

/// Tells installers of work-order changes, in order, off the triage thread (durably,
/// through the outbox).
async fn tell_installers(
    outbox: Outbox,
    mut rx: tokio::sync::mpsc::Receiver<crate::work_orders::Change>,
) {
    while let Some(c) = rx.recv().await {
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
