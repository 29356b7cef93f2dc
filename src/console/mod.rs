//! The HTTP listener: health (`/live`, `/ready`), Prometheus `/metrics`, and the API
//! (`/api/signals`). The operator console grows here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::store::Store;

/// Most Signals one `/api/signals` request returns.
pub const MAX_SIGNALS_LIMIT: usize = 1000;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// True while vakt accepts frames (false while starting and shutting down).
    pub ready: Arc<AtomicBool>,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/signals", get(signals))
        .with_state(state)
}

async fn ready(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
        .into_response()
}

/// Query of `GET /api/signals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalsQuery {
    /// Only Signals with a greater id (default 0: from the start).
    #[serde(default)]
    pub after: u64,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

async fn signals(
    State(s): State<AppState>,
    q: Result<Query<SignalsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{}\n", e.body_text())).into_response(),
    };
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_SIGNALS_LIMIT {
        return (
            StatusCode::BAD_REQUEST,
            format!("limit must be 1..={MAX_SIGNALS_LIMIT}\n"),
        )
            .into_response();
    }
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || store.journal_after(q.after, limit)).await {
        Ok(Ok(records)) => {
            Json(records.into_iter().map(|r| r.signal).collect::<Vec<_>>()).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the journal failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "journal read failed\n").into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "journal read failed\n").into_response(),
    }
}
