//! The work-order part of the API: the list (by state, late, device), one order, start,
//! done and cancel (supervisors), and an operator's "report fault" from a Call. Every change
//! is audited and durable (the order, the audit entry, the Call's note) before the answer.
//! The service's methods touch storage, so they run on the blocking pool.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{Session, audit, call_error, queue_audit};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::{CallState, Role};
use crate::triage::CallError;
use crate::work_orders::{
    Change, Filter, MAX_NOTE_CHARS, Report, StateFilter, WorkOrderError, WorkOrderView, WorkOrders,
    service::MAX_LIST,
};

fn order_error(e: WorkOrderError) -> ApiError {
    match e {
        WorkOrderError::NotFound(_) => ApiError::not_found("work order"),
        e @ WorkOrderError::State { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        WorkOrderError::Invalid(why) => ApiError::bad_request(why),
        e @ WorkOrderError::Store(_) => ApiError::internal("the work order could not be saved", e),
    }
}

/// Fills in the subscribers' names (each read once).
fn named(state: &AppState, mut views: Vec<WorkOrderView>) -> Vec<WorkOrderView> {
    let mut names: std::collections::HashMap<String, Option<String>> =
        std::collections::HashMap::new();
    for v in &mut views {
        if let Some(id) = v.order.subscriber.clone() {
            let name = names
                .entry(id.clone())
                .or_insert_with(|| state.store.subscriber(&id).ok().flatten().map(|s| s.name))
                .clone();
            v.subscriber_name = name;
        }
    }
    views
}

/// Tells the order's installer of a change (the outbox makes it durable; a failure is logged:
/// the change itself stands).
async fn tell_installer(state: &AppState, c: &crate::work_orders::Change) {
    let r = match c.outbox_event() {
        Ok(ev) => state.outbox.enqueue_async(ev).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = r {
        tracing::error!(error = %e, order = c.order.id, "queuing the installer's notification failed");
    }
}

/// Runs a service call on the blocking pool.
async fn blocking<T, F>(state: &AppState, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&WorkOrders) -> Result<T, WorkOrderError> + Send + 'static,
{
    let wo = state.work_orders.clone();
    match tokio::task::spawn_blocking(move || f(&wo)).await {
        Ok(r) => r.map_err(order_error),
        Err(e) => Err(ApiError::internal("the work order task failed", e)),
    }
}

/// `GET /api/work_orders` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkOrdersQuery {
    /// `open` (new and started; the default), `new`, `started`, `done`, `cancelled` or `all`.
    #[param(inline)]
    pub state: Option<StateFilter>,
    /// `true`: only orders late now (not started by `start_by`, or not done by `done_by`).
    pub overdue: Option<bool>,
    /// Only this device's orders.
    pub account: Option<String>,
    /// At most this many (default and cap 1000).
    pub limit: Option<usize>,
}

/// The ids of the subscribers `scope` holds (`None`: the whole centre's).
async fn people_of(
    state: &AppState,
    scope: crate::model::Scope,
) -> ApiResult<Option<std::collections::HashSet<String>>> {
    if scope.is_all() {
        return Ok(None);
    }
    let store = state.store.clone();
    let home = state.care.municipality().to_owned();
    let people = tokio::task::spawn_blocking(move || store.subscribers())
        .await
        .map_err(|e| ApiError::internal("reading the register failed", e))?
        .map_err(|e| ApiError::internal("reading the register failed", e))?;
    Ok(Some(
        people
            .into_iter()
            .filter(|p| scope.sees(p, &home))
            .map(|p| p.id)
            .collect(),
    ))
}

/// Work orders, newest first, each with whether it is late now. A municipality's or care
/// provider's staff get their own people's.
#[utoipa::path(get, path = "/api/work_orders", tag = "work_orders", params(WorkOrdersQuery),
    responses((status = 200, body = Vec<WorkOrderView>), (status = 400, body = ErrorBody)))]
pub async fn list_work_orders(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<WorkOrdersQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<WorkOrderView>>> {
    s.require_or_tenant(Role::Operator, &state)?;
    let subscribers = people_of(&state, s.scope(&state)?).await?;
    let Query(q) = q?;
    let filter = Filter {
        subscribers,
        state: q.state.unwrap_or_default(),
        overdue: q.overdue.unwrap_or(false),
        account: q
            .account
            .map(|a| crate::model::norm_hex(&a))
            .filter(|a| !a.is_empty()),
        limit: q.limit.unwrap_or(MAX_LIST),
    };
    let now = jiff::Timestamp::now();
    let orders = blocking(&state, move |wo| wo.list(&filter, now)).await?;
    Ok(Json(named(
        &state,
        orders.into_iter().map(|o| o.view(now)).collect(),
    )))
}

/// One work order with its timeline (a municipality's or provider's staff: of their own
/// people; another's is a 404).
#[utoipa::path(get, path = "/api/work_orders/{id}", tag = "work_orders",
    params(("id" = u64, Path, description = "Work order id")),
    responses((status = 200, body = WorkOrderView), (status = 404, body = ErrorBody)))]
pub async fn get_work_order(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<WorkOrderView>> {
    s.require_or_tenant(Role::Operator, &state)?;
    let scope = s.scope(&state)?;
    let o = blocking(&state, move |wo| wo.get(id))
        .await?
        .ok_or_else(|| ApiError::not_found("work order"))?;
    if !super::api::sees_subscriber(&state, &scope, o.subscriber.as_deref())? {
        return Err(ApiError::not_found("work order"));
    }
    Ok(Json(
        named(&state, vec![o.view(jiff::Timestamp::now())])
            .pop()
            .ok_or_else(|| ApiError::not_found("work order"))?,
    ))
}

/// Audits a change of an order (itself durable when it was written), durably.
async fn audited(state: &AppState, s: &Session, action: &str, c: &Change) -> ApiResult<()> {
    let o = &c.order;
    audit(
        state,
        s,
        action,
        o.call,
        o.subscriber.as_deref(),
        format!("work order {} ({}, {})", o.id, o.fault.as_str(), o.account),
    )
}

/// The installer has started the order (supervisors record it for them).
#[utoipa::path(post, path = "/api/work_orders/{id}/start", tag = "work_orders",
    params(("id" = u64, Path, description = "Work order id")),
    responses((status = 200, body = WorkOrderView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not a new order", body = ErrorBody)))]
pub async fn start_work_order(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<WorkOrderView>> {
    s.require(Role::Supervisor, &state)?;
    let user = s.user.clone();
    let now = jiff::Timestamp::now();
    let c = blocking(&state, move |wo| wo.start(id, &user, now)).await?;
    audited(&state, &s, "work_order.start", &c).await?;
    tell_installer(&state, &c).await;
    Ok(Json(c.order.view(now)))
}

/// `POST /api/work_orders/{id}/done` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoneRequest {
    /// What was done (at most 2000 characters).
    #[serde(default)]
    pub note: String,
}

/// The order is done (from new or started).
#[utoipa::path(post, path = "/api/work_orders/{id}/done", tag = "work_orders",
    params(("id" = u64, Path, description = "Work order id")), request_body = DoneRequest,
    responses((status = 200, body = WorkOrderView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Already done or cancelled", body = ErrorBody)))]
pub async fn done_work_order(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<DoneRequest>, JsonRejection>,
) -> ApiResult<Json<WorkOrderView>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let user = s.user.clone();
    let now = jiff::Timestamp::now();
    let c = blocking(&state, move |wo| wo.done(id, &user, &req.note, now)).await?;
    audited(&state, &s, "work_order.done", &c).await?;
    tell_installer(&state, &c).await;
    Ok(Json(c.order.view(now)))
}

/// `POST /api/work_orders/{id}/cancel` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrderRequest {
    /// Why (1 to 500 characters), e.g. "the technician could not reach the person".
    pub reason: String,
}

/// A cancelled order and the order that replaces it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelledOrder {
    /// The cancelled order.
    pub cancelled: WorkOrderView,
    /// Its replacement (same device and fault, new deadlines).
    pub replacement: WorkOrderView,
}

/// Cancel an open order with a reason; a replacement order is made at once (seed 004: a
/// cancelled order is replaced by a new one).
#[utoipa::path(post, path = "/api/work_orders/{id}/cancel", tag = "work_orders",
    params(("id" = u64, Path, description = "Work order id")), request_body = CancelOrderRequest,
    responses((status = 200, body = CancelledOrder), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Already done or cancelled", body = ErrorBody)))]
pub async fn cancel_work_order(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<CancelOrderRequest>, JsonRejection>,
) -> ApiResult<Json<CancelledOrder>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let user = s.user.clone();
    let now = jiff::Timestamp::now();
    let mut changes = blocking(&state, move |wo| wo.cancel(id, &user, &req.reason, now))
        .await?
        .into_iter();
    let (Some(cancelled), Some(replacement)) = (changes.next(), changes.next()) else {
        return Err(ApiError::internal(
            "cancelling the work order failed",
            "no replacement",
        ));
    };
    audit(
        &state,
        &s,
        "work_order.cancel",
        cancelled.order.call,
        cancelled.order.subscriber.as_deref(),
        format!(
            "work order {} cancelled, replaced by {}: {}",
            cancelled.order.id,
            replacement.order.id,
            cancelled.order.cancel_reason.as_deref().unwrap_or("")
        ),
    )?;
    tell_installer(&state, &cancelled).await;
    tell_installer(&state, &replacement).await;
    Ok(Json(CancelledOrder {
        cancelled: cancelled.order.view(now),
        replacement: replacement.order.view(now),
    }))
}

/// `POST /api/calls/{id}/fault` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultReport {
    /// What is wrong with the device (1 to 2000 characters).
    pub note: String,
}

/// Report a fault of the Call's device (the operator who has taken the Call): a work order
/// for the device's installer, or the note added to the device's open reported order. The
/// Call's timeline gets a note with the order's id.
#[utoipa::path(post, path = "/api/calls/{id}/fault", tag = "work_orders",
    params(("id" = u64, Path, description = "Call id")), request_body = FaultReport,
    responses((status = 201, description = "A new work order", body = WorkOrderView),
        (status = 200, description = "Added to the device's open reported order", body = WorkOrderView),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not the operator's Call", body = ErrorBody),
        (status = 410, body = ErrorBody)))]
pub async fn report_fault(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<FaultReport>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<WorkOrderView>)> {
    s.require(Role::Operator, &state)?;
    let Json(req) = body?;
    let note = req.note.trim().to_owned();
    if note.is_empty() || note.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(format!(
            "give a note of 1 to {MAX_NOTE_CHARS} characters"
        )));
    }
    let call = state
        .calls
        .triage
        .get(id)
        .ok_or_else(|| call_error(&state, id, CallError::NotFound))?;
    match call.owner.as_deref() {
        Some(owner) if call.state == CallState::Claimed && owner == s.user => {}
        Some(owner) if call.state == CallState::Claimed => {
            return Err(CallError::OwnedBy(owner.to_owned()).into());
        }
        _ => return Err(CallError::NotOwner.into()),
    }
    let account = call.account.clone();
    let subscriber = call.subscriber.clone();
    let user = s.user.clone();
    let now = jiff::Timestamp::now();
    let c = blocking(&state, move |wo| {
        wo.report(
            Report {
                account: &account,
                subscriber: subscriber.as_deref(),
                // The registry names no installer yet: the configured default.
                installer: None,
                call: Some(id),
                user: &user,
                note: &note,
            },
            now,
        )
    })
    .await?;
    queue_audit(
        &state,
        &s,
        "work_order.report",
        Some(id),
        c.order.subscriber.as_deref(),
        format!(
            "work order {} ({}, {})",
            c.order.id,
            c.order.fault.as_str(),
            c.order.account
        ),
    )?;
    let line = format!(
        "Fault reported: work order {} to {}",
        c.order.id, c.order.installer
    );
    if let Err(e) = state.calls.triage.note(id, &s.user, &line, now) {
        // The order stands; the Call changed hands or closed meanwhile.
        tracing::warn!(call = id, error = ?e, "the fault report's note on the Call failed");
    }
    // The order was durable when written; the audit entry and the note in one sync of the
    // Call writer.
    state
        .calls
        .flush()
        .await
        .map_err(|e| ApiError::internal("saving the report failed", e))?;
    let status = if c.what == crate::work_orders::What::Created {
        tell_installer(&state, &c).await;
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(c.order.view(now))))
}
