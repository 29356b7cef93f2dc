//! One node of a cluster on PostgreSQL (`[store] backend = "postgres"`): a standby until it
//! holds the leader lease, then the whole server under the lease's epoch, until it is stopped
//! or loses the lease.
//!
//! **At start** a node brings the database's schema up to date (the migrations take a lock, so
//! nodes may start at once).
//!
//! **A standby** runs the lease loop ([`Leadership`]) and only its HTTP listener, which
//! answers `/live` (200: the process is up), `/ready` (503: not the leader; a load balancer
//! or keepalived check sends the consoles and the patrols' address to the node that answers
//! 200) and every other path with 503, a `Retry-After` and the leader's name. It does not
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
//! Taking over takes at most the lease's time (`lease_ttl_ms`, 5 s) after the leader's last
//! renewal, plus one poll (`lease_renew_ms`, 1 s), plus the server's start: within the 10 s
//! an alarm centre is given for it.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Listeners, Running, ServerError};
use crate::config::Config;
use crate::store::pg::leader::{Leadership, Role};

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

/// Runs this node until `stop` is cancelled or the lease is lost; `started` is told of the
/// server once it leads. The configuration's store must be PostgreSQL.
pub async fn run(
    cfg: Config,
    stop: CancellationToken,
    started: impl FnOnce(&Running),
) -> Result<NodeEnd, ServerError> {
    let Some(url) = cfg.store.url.clone() else {
        return Err(ServerError::NoDatabase);
    };
    let options = cfg
        .store
        .leader_options()
        .map_err(ServerError::LeaseOptions)?;
    // The schema first (every node at once is fine: the migrations take a lock), so that
    // the lease's table is there and a wrong URL or a newer schema fails here.
    {
        let url = url.clone();
        drop(
            tokio::task::spawn_blocking(move || crate::store::Store::open_postgres(url.expose()))
                .await??,
        );
    }
    let leadership = Leadership::start(url.expose(), &cfg.store.node, options)
        .map_err(|e| ServerError::Store(e.into()))?;
    let mut role = leadership.role();
    tracing::info!(node = %cfg.store.node, "standby: waiting for the leader lease");

    let epoch = {
        let standby_stop = CancellationToken::new();
        let standby = match cfg.http.listen {
            Some(addr) => Some(tokio::spawn(serve_standby(
                addr,
                cfg.dc09.listen_backlog,
                role.clone(),
                standby_stop.clone(),
            ))),
            None => None,
        };
        let epoch = loop {
            if let Some(epoch) = role.borrow_and_update().leading() {
                break Some(epoch);
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

    tracing::info!(node = %cfg.store.node, epoch, "leader: starting the server");
    let listeners = Listeners::bind(&cfg).await?;
    let running = super::start_leading(cfg, listeners, epoch).await?;
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

/// The standby's HTTP listener until `stop`.
async fn serve_standby(
    addr: SocketAddr,
    backlog: u32,
    role: watch::Receiver<Role>,
    stop: CancellationToken,
) -> Result<(), ServerError> {
    let listener = super::bind_tcp(addr, backlog).map_err(|error| ServerError::Bind {
        what: "HTTP",
        addr,
        error,
    })?;
    let app = Router::new()
        .route("/live", get(|| async { "live (standby)\n" }))
        .fallback(standby_answer)
        .with_state(role);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|error| ServerError::Bind {
            what: "HTTP",
            addr,
            error,
        })
}

/// Every path but `/live` on a standby: 503, with who leads.
async fn standby_answer(State(role): State<watch::Receiver<Role>>) -> Response {
    let leader = match &*role.borrow() {
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
