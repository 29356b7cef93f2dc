//! `/ready`: whether this vakt serves, and what it is. The status codes are what load
//! balancers and keepalived check: 200 on the node that serves (a single node on sled, or the
//! leader of a cluster), 503 on a standby (with `Retry-After` and the leader's name) and
//! while a server starts or stops.
//!
//! The body says what the node is, for a person: `ready: single node (sled, fsync)`, `ready:
//! leader (epoch N); durability: ...` with the durability the database's primary gives a
//! commit as the leader last read it ([`Durability`]), or `standby: ...; the leader is X`.
//! The same as one JSON object with `?format=json` or `Accept: application/json`.

use std::sync::atomic::Ordering;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// What `/ready` says of the leader of a cluster. The server's node keeps it fresh: the
/// durability is read from the database at the take-over and every few seconds after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leading {
    /// This node's name in the lease.
    pub node: String,
    /// The lease's epoch this node leads under.
    pub epoch: i64,
    /// The durability in force, as last read.
    pub durability: Durability,
}

/// How durable a commit on the database's primary is, from its settings and its standbys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Not read yet, or the last check failed (`why`).
    Unknown {
        /// Why it is not known.
        why: &'static str,
    },
    /// A commit waits for `standbys` synchronous standbys (at least one) at
    /// `synchronous_commit` (`on`, `remote_write` or `remote_apply`).
    Synchronous {
        /// The level a commit waits for.
        synchronous_commit: String,
        /// Standbys in `pg_stat_replication` with `sync_state` `sync` or `quorum`.
        standbys: u32,
    },
    /// A commit is on the primary only: no synchronous standby is connected and none is
    /// asked for, or `synchronous_commit` is `local` or `off`.
    PrimaryOnly {
        /// The level a commit waits for.
        synchronous_commit: String,
    },
    /// A synchronous standby is asked for (`synchronous_standby_names`) but none is
    /// connected: commits wait until one is (Patroni's strict mode without a replica).
    Stalled {
        /// The level a commit waits for.
        synchronous_commit: String,
    },
    /// Standbys stream, but the database user may not see their sync state (it needs the
    /// role `pg_monitor` or `pg_read_all_stats`).
    Hidden {
        /// The level a commit waits for.
        synchronous_commit: String,
        /// Standbys streaming.
        streaming: u32,
    },
}

impl Durability {
    /// The durability from what the primary answers: its `synchronous_commit` and
    /// `synchronous_standby_names`, the standbys whose `sync_state` is `sync` or `quorum`,
    /// and the standbys whose `sync_state` this user may not see (`NULL`).
    pub fn from_primary(
        synchronous_commit: &str,
        standby_names: &str,
        synchronous: u32,
        hidden: u32,
    ) -> Durability {
        let synchronous_commit = synchronous_commit.to_owned();
        if matches!(synchronous_commit.as_str(), "local" | "off") {
            return Durability::PrimaryOnly { synchronous_commit };
        }
        if synchronous > 0 {
            return Durability::Synchronous {
                synchronous_commit,
                standbys: synchronous,
            };
        }
        if hidden > 0 {
            return Durability::Hidden {
                synchronous_commit,
                streaming: hidden,
            };
        }
        if !standby_names.trim().is_empty() {
            return Durability::Stalled { synchronous_commit };
        }
        Durability::PrimaryOnly { synchronous_commit }
    }

    /// Whether a commit is not known to reach a synchronous standby.
    pub fn degraded(&self) -> bool {
        !matches!(self, Durability::Synchronous { .. })
    }

    /// The synchronous standbys seen (0 unless [`Durability::Synchronous`]).
    pub fn synchronous_standbys(&self) -> u32 {
        match self {
            Durability::Synchronous { standbys, .. } => *standbys,
            _ => 0,
        }
    }

    /// One short key for scripts: `synchronous`, `primary_only`, `stalled`, `hidden`,
    /// `unknown`.
    pub fn key(&self) -> &'static str {
        match self {
            Durability::Unknown { .. } => "unknown",
            Durability::Synchronous { .. } => "synchronous",
            Durability::PrimaryOnly { .. } => "primary_only",
            Durability::Stalled { .. } => "stalled",
            Durability::Hidden { .. } => "hidden",
        }
    }

    fn synchronous_commit(&self) -> Option<&str> {
        match self {
            Durability::Unknown { .. } => None,
            Durability::Synchronous {
                synchronous_commit, ..
            }
            | Durability::PrimaryOnly { synchronous_commit }
            | Durability::Stalled { synchronous_commit }
            | Durability::Hidden {
                synchronous_commit, ..
            } => Some(synchronous_commit),
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: u32| if n == 1 { "" } else { "s" };
        match self {
            Durability::Unknown { why } => write!(f, "unknown ({why})"),
            Durability::Synchronous {
                synchronous_commit,
                standbys,
            } => write!(
                f,
                "synchronous ({synchronous_commit}, {standbys} synchronous standby{})",
                plural(*standbys)
            ),
            Durability::PrimaryOnly { synchronous_commit }
                if matches!(synchronous_commit.as_str(), "local" | "off") =>
            {
                write!(
                    f,
                    "primary only (synchronous_commit = {synchronous_commit}: a commit does not wait for a standby)"
                )
            }
            Durability::PrimaryOnly { .. } => f.write_str(
                "primary only (no synchronous standby: a commit is on one machine)",
            ),
            Durability::Stalled { .. } => f.write_str(
                "stalled (a synchronous standby is asked for but none is connected: commits wait for one)",
            ),
            Durability::Hidden { streaming, .. } => write!(
                f,
                "unknown ({streaming} standby{} streaming, whose sync state this database user may not see: grant it pg_monitor)",
                plural(*streaming)
            ),
        }
    }
}

/// What a node is, for `/ready`.
#[derive(Debug)]
pub enum Readiness<'a> {
    /// Starting or stopping: serves nothing yet.
    NotReady,
    /// One node on sled, serving.
    Single,
    /// The leader of a cluster, serving.
    Leader(&'a Leading),
    /// A standby of a cluster: serves nothing.
    Standby {
        /// This node's name in the lease.
        node: &'a str,
        /// Who leads, when known.
        leader: Option<&'a str>,
    },
}

impl Readiness<'_> {
    /// The answer: text, or JSON when `json`.
    pub fn answer(&self, json: bool) -> Response {
        let (status, text, value) = match self {
            Readiness::NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready".to_string(),
                json!({"ready": false, "role": "starting_or_stopping"}),
            ),
            Readiness::Single => (
                StatusCode::OK,
                "ready: single node (sled, fsync)".to_string(),
                json!({
                    "ready": true,
                    "role": "single",
                    "durability": {"state": "fsync", "backend": "sled", "degraded": false,
                        "text": "sled, fsync"},
                }),
            ),
            Readiness::Leader(l) => (
                StatusCode::OK,
                format!(
                    "ready: leader (epoch {}); durability: {}",
                    l.epoch, l.durability
                ),
                json!({
                    "ready": true,
                    "role": "leader",
                    "node": l.node,
                    "epoch": l.epoch,
                    "durability": {
                        "state": l.durability.key(),
                        "synchronous_commit": l.durability.synchronous_commit(),
                        "synchronous_standbys": l.durability.synchronous_standbys(),
                        "degraded": l.durability.degraded(),
                        "text": l.durability.to_string(),
                    },
                }),
            ),
            Readiness::Standby { node, leader } => (
                StatusCode::SERVICE_UNAVAILABLE,
                match leader {
                    Some(h) => format!("standby: this vakt is not the leader; the leader is {h}"),
                    None => "standby: this vakt is not the leader; no leader is known yet".into(),
                },
                json!({"ready": false, "role": "standby", "node": node, "leader": leader}),
            ),
        };
        let mut r = if json {
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                value.to_string(),
            )
                .into_response()
        } else {
            (status, format!("{text}\n")).into_response()
        };
        if matches!(self, Readiness::Standby { .. }) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// Whether a request to `/ready` asks for JSON: `format=json` in the query, or an `Accept`
/// that names `application/json`.
pub fn wants_json(query: Option<&str>, headers: &HeaderMap) -> bool {
    let by_query = query
        .unwrap_or("")
        .split('&')
        .any(|pair| pair == "format=json");
    let by_accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"));
    by_query || by_accept
}

/// `/ready` of a serving node: a single node on sled, or a cluster's leader.
pub async fn ready(
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(query.as_deref(), &headers);
    if !s.ready.load(Ordering::Acquire) {
        return Readiness::NotReady.answer(json);
    }
    match &s.cluster {
        Some(leading) => {
            let leading = leading.borrow().clone();
            Readiness::Leader(&leading).answer(json)
        }
        None => Readiness::Single.answer(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_from_what_the_primary_answers() {
        let d = Durability::from_primary("on", "\"standby\"", 1, 0);
        assert_eq!(d.to_string(), "synchronous (on, 1 synchronous standby)");
        assert!(!d.degraded());
        assert_eq!(d.synchronous_standbys(), 1);
        let d = Durability::from_primary("remote_apply", "ANY 1 (a, b)", 2, 0);
        assert_eq!(
            d.to_string(),
            "synchronous (remote_apply, 2 synchronous standbys)"
        );
        // No standby asked for and none there: one machine.
        let d = Durability::from_primary("on", "", 0, 0);
        assert_eq!(
            d.to_string(),
            "primary only (no synchronous standby: a commit is on one machine)"
        );
        assert!(d.degraded());
        // A synchronous standby there, but commits do not wait for it.
        let d = Durability::from_primary("local", "\"standby\"", 1, 0);
        assert_eq!(d.key(), "primary_only");
        assert!(d.to_string().contains("synchronous_commit = local"), "{d}");
        assert!(d.degraded());
        assert_eq!(d.synchronous_standbys(), 0);
        // Strict mode without a replica: commits wait.
        let d = Durability::from_primary("on", "*", 0, 0);
        assert_eq!(d.key(), "stalled");
        assert!(d.degraded());
        // Standbys whose state the user may not see.
        let d = Durability::from_primary("on", "*", 0, 2);
        assert_eq!(d.key(), "hidden");
        assert!(d.to_string().contains("pg_monitor"), "{d}");
        assert!(d.degraded());
        assert!(
            Durability::Unknown {
                why: "not read yet"
            }
            .degraded()
        );
    }

    #[test]
    fn json_by_query_or_accept() {
        let mut h = HeaderMap::new();
        assert!(!wants_json(None, &h));
        assert!(wants_json(Some("format=json"), &h));
        assert!(wants_json(Some("x=1&format=json"), &h));
        assert!(!wants_json(Some("format=jsonp"), &h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html, application/json;q=0.9"),
        );
        assert!(wants_json(None, &h));
    }
}
