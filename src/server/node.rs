//! One node of a cluster on PostgreSQL (`[store] backend = "postgres"`): a standby until it
//! holds the leader lease, then the whole server under the lease's epoch, until it is stopped
//! or loses the lease.
//!
//! **At start** a node opens its standby listener, then brings the database's schema up to
//! date (the migrations take a lock, so nodes may start at once). A database that does not
//! answer, or has no primary yet (its own failover under way), is waited for, a try a
//! second, rather than ending the process: a supervisor that restarts a failing unit only so
//! often would otherwise give up on it. A newer or changed schema ends it.
//!
//! **A standby** runs the lease loop ([`Leadership`]) and only its HTTP listener, which
//! answers `/live` (200: the process is up), `/ready` (503: not the leader; a load balancer
//! or keepalived check sends the consoles and the patrols' address to the node that answers
//! 200), `/metrics` (the lease's metrics are the process's, whatever its role) and every
//! other path with 503, a `Retry-After` and the leader's name. It does not
//! listen for devices, patrols or SIP at all: a social-alarm unit whose primary path is
//! refused turns to its backup path at once, and its backup path is the other node. It
//! opens nothing of the store, so it cannot write.
//!
//! **On taking the lease** it stops the standby listener, opens the store on PostgreSQL
//! fenced by its epoch (every write of this node, journal commits included, fails once a
//! later epoch exists: a node that lost the lease cannot ACK, dispatch or notify), binds
//! every listener and starts the server, which loads the open state (Calls, dispatches and
//! their clocks, incidents, work orders, the outbox, supervision's last-heard times) from the
//! database as a restart does. Console sessions are in the database, so an operator's login
//! holds on the new leader; the console reconnects by itself.
//!
//! **On losing the lease** (the renewal failed, or the database stayed out of reach until
//! the lease's time ran out on this node's own clock) it stops the server at once and ends
//! with [`ServerError::LeaseLost`]: the process exits and its supervisor (systemd's
//! `Restart=always`) starts it again as a standby. A stop asked for (SIGTERM) releases the
//! lease after the server has stopped, so a standby takes over without waiting for it to
//! expire.
//!
//! **What `/ready` says on the leader** ([`crate::console::ready`]): its epoch and the
//! durability a commit has, read from the database at the take-over and every
//! [`DURABILITY_EVERY`] after ([`watch_durability`]): `synchronous_commit`, and the standbys
//! the primary waits for (`pg_stat_replication`, `sync_state` `sync` or `quorum`). The same
//! feeds the metrics `vakt_db_synchronous_standbys` and `vakt_db_durability_degraded`. It is a
//! report, not a gate: a leader whose primary lost its synchronous standby still serves
//! (Patroni's strict mode makes its commits wait; otherwise they are on one machine), and
//! says so. The check has a connection of its own, so a busy pool does not delay it, and it
//! is bounded in time; it reads only. `vakt_takeover_seconds` counts from the lease taken to
//! the server ready.
//!
//! Taking over takes at most the lease's time (`lease_ttl_ms`, 5 s) after the leader's last
//! renewal, plus one poll (`lease_renew_ms`, 1 s), plus the server's start: within the 10 s
//! an alarm centre is given for it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Listeners, Running, ServerError};
use crate::config::Config;
use crate::console::ready::{Durability, Leading, Readiness, wants_json};
use crate::store::StoreError;
use crate::store::pg::PgError;
use crate::store::pg::leader::{Leadership, Role};
use crate::telemetry::ClusterMetrics;

/// How often the leader reads the durability in force from the database.
pub const DURABILITY_EVERY: Duration = Duration::from_secs(10);

/// How long one durability check may take (connecting included).
const DURABILITY_BOUND: Duration = Duration::from_secs(5);

/// How a node's run ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeEnd {
    /// Stopped as asked, as a standby.
    StoppedAsStandby,
    /// Stopped as asked, as the leader; `released` says whether the lease was given up.
    StoppedAsLeader {
        /// Whether the release reached the database (otherwise the lease expires by itself).
        released: bool,
    },
}

/// Runs this node until `stop` is cancelled or the lease is lost; `standing_by` is told the
/// standby's HTTP address once it answers there, and `started` of the server once it leads.
/// The configuration's store must be PostgreSQL.
pub async fn run(
    cfg: Config,
    stop: CancellationToken,
    standing_by: impl FnOnce(Option<SocketAddr>),
    started: impl FnOnce(&Running),
) -> Result<NodeEnd, ServerError> {
    let Some(url) = cfg.store.url.clone() else {
        return Err(ServerError::NoDatabase);
    };
    let options = cfg
        .store
        .leader_options()
        .map_err(ServerError::LeaseOptions)?;
    // The standby's listener first, so that a load balancer sees this node at once (503
    // until it leads) while it waits for the database.
    let standby_stop = CancellationToken::new();
    let (standby_role, standby_role_rx) = watch::channel(Role::Standby { holder: None });
    let standby = match cfg.http.listen {
        Some(addr) => {
            let listener = super::bind_tcp(addr, cfg.dc09.listen_backlog).map_err(|error| {
                ServerError::Bind {
                    what: "HTTP",
                    addr,
                    error,
                }
            })?;
            let local = listener.local_addr().map_err(|error| ServerError::Bind {
                what: "HTTP",
                addr,
                error,
            })?;
            let task = tokio::spawn(serve_standby(
                listener,
                local,
                StandbyState {
                    role: standby_role_rx,
                    node: cfg.store.node.clone(),
                },
                standby_stop.clone(),
            ));
            standing_by(Some(local));
            Some(task)
        }
        None => {
            standing_by(None);
            None
        }
    };
    // The schema (every node at once is fine: the migrations take a lock), so that the
    // lease's table is there. A database that does not answer yet, or has no primary yet
    // (a failover of the database under way, the cluster starting), is waited for; a newer
    // or changed schema is an error.
    let mut waited = 0u32;
    loop {
        let url = url.clone();
        match tokio::task::spawn_blocking(move || crate::store::Store::open_postgres(url.expose()))
            .await?
        {
            Ok(store) => {
                drop(store);
                break;
            }
            Err(
                e @ StoreError::Postgres(
                    PgError::SchemaNewer { .. } | PgError::MigrationChanged { .. },
                ),
            ) => return Err(e.into()),
            Err(e) => {
                if waited % 10 == 0 {
                    tracing::warn!(error = %e, "the database is not ready; trying again every second");
                }
                waited += 1;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => {
                standby_stop.cancel();
                if let Some(task) = standby {
                    task.await??;
                }
                return Ok(NodeEnd::StoppedAsStandby);
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let leadership = Leadership::start(url.expose(), &cfg.store.node, options)
        .map_err(|e| ServerError::Store(e.into()))?;
    let mut role = leadership.role();
    // The standby's answers follow the lease loop's role.
    {
        let mut role = role.clone();
        tokio::spawn(async move {
            loop {
                let now = role.borrow_and_update().clone();
                if standby_role.send(now).is_err() || role.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    let metrics = ClusterMetrics::new();
    tracing::info!(node = %cfg.store.node, "standby: waiting for the leader lease");

    let epoch = {
        let epoch = loop {
            if let Some(epoch) = role.borrow_and_update().leading() {
                break Some((epoch, Instant::now()));
            }
            tokio::select! {
                _ = stop.cancelled() => break None,
                changed = role.changed() => {
                    if changed.is_err() {
                        return Err(ServerError::LeaseLost { epoch: 0 });
                    }
                }
            }
        };
        standby_stop.cancel();
        if let Some(task) = standby {
            // The listener must be closed before the server binds the same address.
            task.await??;
        }
        match epoch {
            Some(epoch) => epoch,
            None => return Ok(NodeEnd::StoppedAsStandby),
        }
    };

    let (epoch, taken) = epoch;
    tracing::info!(node = %cfg.store.node, epoch, "leader: starting the server");
    let (leading_tx, leading) = watch::channel(Leading {
        node: cfg.store.node.clone(),
        epoch,
        durability: Durability::Unknown {
            why: "not read yet",
        },
    });
    // The first check runs beside the server's start.
    let checks = CancellationToken::new();
    let _stop_checks = checks.clone().drop_guard();
    tokio::spawn(watch_durability(
        url.expose().to_owned(),
        leading_tx,
        metrics.clone(),
        checks,
    ));
    let listeners = Listeners::bind(&cfg).await?;
    let running = super::start_leading(cfg, listeners, leading).await?;
    metrics
        .takeover_seconds
        .record(taken.elapsed().as_secs_f64());
    started(&running);
    let lost = async {
        loop {
            if matches!(*role.borrow_and_update(), Role::Lost { .. }) {
                return;
            }
            if role.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {
            running.stop().await?;
            let released = match leadership.release().await {
                Ok(released) => released,
                Err(e) => {
                    tracing::warn!(error = %e, "the lease could not be released; it expires by itself");
                    false
                }
            };
            Ok(NodeEnd::StoppedAsLeader { released })
        }
        () = lost => {
            tracing::error!(epoch, "leader lease lost: stopping at once; a standby takes over");
            let _ = running.stop().await;
            Err(ServerError::LeaseLost { epoch })
        }
    }
}

/// Reads the durability in force now and every [`DURABILITY_EVERY`] until `stop`, into
/// `leading` and the metrics. A check that fails or takes longer than [`DURABILITY_BOUND`]
/// makes it unknown (and degraded) until the next one answers.
async fn watch_durability(
    url: String,
    leading: watch::Sender<Leading>,
    metrics: ClusterMetrics,
    stop: CancellationToken,
) {
    let mut config: tokio_postgres::Config = match url.parse() {
        Ok(c) => c,
        // The store opened on the same URL: not reached.
        Err(_) => return,
    };
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DURABILITY_BOUND);
    }
    config.application_name("vakt durability");
    let mut client: Option<tokio_postgres::Client> = None;
    let mut failing = false;
    loop {
        let checked = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(DURABILITY_BOUND, check_durability(&config, &mut client)) => r,
        };
        let durability = match checked {
            Ok(Ok(d)) => {
                failing = false;
                d
            }
            Ok(Err(e)) => {
                client = None;
                if !failing {
                    tracing::warn!(error = %e, "the durability check failed; retrying");
                }
                failing = true;
                Durability::Unknown {
                    why: "the database did not answer the check",
                }
            }
            Err(_) => {
                client = None;
                if !failing {
                    tracing::warn!("the durability check took too long; retrying");
                }
                failing = true;
                Durability::Unknown {
                    why: "the database did not answer the check in time",
                }
            }
        };
        metrics
            .synchronous_standbys
            .set(f64::from(durability.synchronous_standbys()));
        metrics
            .durability_degraded
            .set(if durability.degraded() { 1.0 } else { 0.0 });
        leading.send_if_modified(|l| {
            if l.durability == durability {
                return false;
            }
            tracing::info!(durability = %durability, "durability in force");
            l.durability = durability;
            true
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(DURABILITY_EVERY) => {}
        }
    }
}

/// One durability check, on the connection in `slot` (opened when missing or broken).
async fn check_durability(
    config: &tokio_postgres::Config,
    slot: &mut Option<tokio_postgres::Client>,
) -> Result<Durability, tokio_postgres::Error> {
    if slot.as_ref().is_some_and(tokio_postgres::Client::is_closed) {
        *slot = None;
    }
    let client = match slot.take() {
        Some(c) => c,
        None => {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "durability check's connection ended");
                }
            });
            client
        }
    };
    let client = slot.insert(client);
    let row = client
        .query_one(
            "SELECT current_setting('synchronous_commit'), \
                    current_setting('synchronous_standby_names'), \
                    (SELECT count(*) FROM pg_stat_replication \
                      WHERE sync_state IN ('sync', 'quorum'))::int4, \
                    (SELECT count(*) FROM pg_stat_replication WHERE sync_state IS NULL)::int4, \
                    pg_is_in_recovery()",
            &[],
        )
        .await?;
    if row.try_get::<_, bool>(4)? {
        return Ok(Durability::Unknown {
            why: "the database answering is a standby, not the primary",
        });
    }
    let count = |i: usize| -> Result<u32, tokio_postgres::Error> {
        Ok(u32::try_from(row.try_get::<_, i32>(i)?).unwrap_or(0))
    };
    Ok(Durability::from_primary(
        &row.try_get::<_, String>(0)?,
        &row.try_get::<_, String>(1)?,
        count(2)?,
        count(3)?,
    ))
}

/// What the standby's listener answers from.
#[derive(Clone)]
struct StandbyState {
    role: watch::Receiver<Role>,
    node: String,
}

/// The standby's HTTP listener until `stop`.
async fn serve_standby(
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: StandbyState,
    stop: CancellationToken,
) -> Result<(), ServerError> {
    let app = Router::new()
        .route("/live", get(|| async { "live (standby)\n" }))
        .route("/ready", get(standby_ready))
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    crate::telemetry::prometheus().render(),
                )
            }),
        )
        .fallback(standby_answer)
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|error| ServerError::Bind {
            what: "HTTP",
            addr,
            error,
        })
}

/// `/ready` on a standby: 503, with who leads; JSON when asked for.
async fn standby_ready(
    State(s): State<StandbyState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let leader = match &*s.role.borrow() {
        Role::Standby { holder: Some(h) } => Some(h.clone()),
        _ => None,
    };
    Readiness::Standby {
        node: &s.node,
        leader: leader.as_deref(),
    }
    .answer(wants_json(query.as_deref(), &headers))
}

/// Every other path on a standby: 503, with who leads.
async fn standby_answer(State(s): State<StandbyState>) -> Response {
    let leader = match &*s.role.borrow() {
        Role::Standby { holder: Some(h) } => format!("the leader is {h}"),
        _ => "no leader is known yet".to_string(),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        format!("standby: this vakt is not the leader; {leader}\n"),
    )
        .into_response()
}
