//! The subscribers' lives in the API: orders (the open ones with their lateness, one order,
//! entering one, complete / send back / cancel with a reason), a subscriber's life (status,
//! what it still needs, history, orders, providers, keys), opening an installation and
//! recording the consent (supervisors); the billing export; and the care system's own door,
//! `POST /api/care/orders`, authenticated by an integration's bearer token and idempotent by
//! the care system's id. Every view and change is audited. The service touches storage, so
//! it runs on the blocking pool.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::civil::Date;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::api::{Session, audit};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::care::{Care, CareError, LifeView, OrderView, Received};
use crate::model::Role;
use crate::model::life::{Life, LifeError};
use crate::model::order::{Month, NewOrder, Order, OrderChangeError};

fn care_error(e: CareError) -> ApiError {
    let unprocessable =
        |e: &CareError| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    let conflict = |e: &CareError| ApiError::new(StatusCode::CONFLICT, e.to_string());
    match &e {
        CareError::OrderNotFound(_) => ApiError::not_found("order"),
        CareError::NoLife(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        CareError::Invalid { .. }
        | CareError::UnknownSubscriber(_)
        | CareError::NotTheirDevice(_)
        | CareError::Order(OrderChangeError::Reason)
        | CareError::Life(LifeError::Window | LifeError::Name) => unprocessable(&e),
        CareError::Status { .. }
        | CareError::NotByHand { .. }
        | CareError::Order(OrderChangeError::NotOpen(_))
        | CareError::Life(LifeError::Status(_) | LifeError::NotReady(_)) => conflict(&e),
        CareError::Store(_) => ApiError::internal("the care service could not save", e),
    }
}

/// Runs a service call on the blocking pool.
async fn blocking<T, F>(state: &AppState, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Care) -> Result<T, CareError> + Send + 'static,
{
    let care = state.care.clone();
    match tokio::task::spawn_blocking(move || f(&care)).await {
        Ok(r) => r.map_err(care_error),
        Err(e) => Err(ApiError::internal("the care task failed", e)),
    }
}

fn order_words(o: &Order) -> String {
    format!("order {} ({})", o.id, o.kind.as_str())
}

/// The open orders, oldest first, each with its lateness now (in time, overdue, or due to go
/// back to the case officer). Audited `order.list`.
#[utoipa::path(get, path = "/api/orders", tag = "care",
    responses((status = 200, body = Vec<OrderView>), (status = 403, body = ErrorBody)))]
pub async fn list_orders(
    State(state): State<AppState>,
    s: Session,
) -> ApiResult<Json<Vec<OrderView>>> {
    s.require(Role::Supervisor, &state)?;
    let now = jiff::Timestamp::now();
    let orders = blocking(&state, move |c| c.open_orders(now)).await?;
    audit(
        &state,
        &s,
        "order.list",
        None,
        None,
        format!("{} open orders", orders.len()),
    )?;
    Ok(Json(orders))
}

/// One order with its lateness now. Audited `order.view`.
#[utoipa::path(get, path = "/api/orders/{id}", tag = "care",
    params(("id" = u64, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<OrderView>> {
    s.require(Role::Supervisor, &state)?;
    let now = jiff::Timestamp::now();
    let v = blocking(&state, move |c| c.order(id, now)).await?;
    audit(
        &state,
        &s,
        "order.view",
        None,
        Some(&v.order.subscriber),
        order_words(&v.order),
    )?;
    Ok(Json(v))
}

/// 201 with a new order, 200 with one that had arrived before.
fn received(r: Received, now: jiff::Timestamp) -> axum::response::Response {
    let status = if r.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let view = OrderView {
        lateness: r.order.lateness(now),
        order: r.order,
    };
    (status, Json(view)).into_response()
}

/// A supervisor enters an order (new alarm, change, provider change, end, lock install or
/// removal). A new alarm may bring the person's card. The same `external_id` twice is the
/// same order: 200 with the stored one. Audited `order.enter`.
#[utoipa::path(post, path = "/api/orders", tag = "care", request_body = NewOrder,
    responses((status = 201, description = "Stored", body = OrderView),
        (status = 200, description = "Known by its care-system id", body = OrderView),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The alarm's status does not allow it", body = ErrorBody),
        (status = 422, description = "Not a valid order", body = ErrorBody)))]
pub async fn enter_order(
    State(state): State<AppState>,
    s: Session,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> ApiResult<axum::response::Response> {
    s.require(Role::Supervisor, &state)?;
    let Json(new) = body?;
    let user = s.user.clone();
    let now = jiff::Timestamp::now();
    let r = blocking(&state, move |c| c.receive_order(new, &user, now)).await?;
    if r.new {
        // The card may have changed: the consoles showing it load it again.
        state.calls.subscriber_changed(Some(&r.order.subscriber));
    }
    audit(
        &state,
        &s,
        "order.enter",
        None,
        Some(&r.order.subscriber),
        order_words(&r.order),
    )?;
    Ok(received(r, now))
}

/// `POST /api/orders/{id}/send_back` and `/cancel` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    /// Why (1 to 500 characters).
    pub reason: String,
}

/// Completes an order by hand: an end (the alarm ends today, its devices leave the registry,
/// the care system is told), a change or a lock order. A new alarm is done by its
/// installation and a provider change on its date. Audited `order.complete`.
#[utoipa::path(post, path = "/api/orders/{id}/complete", tag = "care",
    params(("id" = u64, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not open, or not done by hand", body = ErrorBody)))]
pub async fn complete_order(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<OrderView>> {
    s.require(Role::Supervisor, &state)?;
    let user = s.user.clone();
    let now = jiff::Timestamp::now();
    let o = blocking(&state, move |c| c.complete_order(id, &user, now)).await?;
    audit(
        &state,
        &s,
        "order.complete",
        None,
        Some(&o.subscriber),
        order_words(&o),
    )?;
    state.calls.subscriber_changed(Some(&o.subscriber));
    if o.kind == crate::model::order::OrderKind::End {
        // The ended alarm's devices are no longer supervised.
        let devices: Vec<crate::model::Device> = state.devices.current().iter().cloned().collect();
        let sup = state.supervision.supervisor().clone();
        tokio::task::spawn_blocking(move || sup.sync(&devices, |_| None, now))
            .await
            .map_err(|e| ApiError::internal("updating supervision failed", e))?;
    }
    Ok(Json(OrderView {
        lateness: o.lateness(now),
        order: o,
    }))
}

/// Sends an order back to the case officer (1.2.4), with a reason. Audited `order.send_back`.
#[utoipa::path(post, path = "/api/orders/{id}/send_back", tag = "care",
    params(("id" = u64, Path, description = "Order id")), request_body = ReasonRequest,
    responses((status = 200, body = OrderView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn send_back_order(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<ReasonRequest>, JsonRejection>,
) -> ApiResult<Json<OrderView>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let user = s.user.clone();
    let now = jiff::Timestamp::now();
    let o = blocking(&state, move |c| c.send_back(id, &user, &req.reason, now)).await?;
    audit(
        &state,
        &s,
        "order.send_back",
        None,
        Some(&o.subscriber),
        order_words(&o),
    )?;
    state.calls.subscriber_changed(Some(&o.subscriber));
    Ok(Json(OrderView {
        lateness: o.lateness(now),
        order: o,
    }))
}

/// Cancels an order, with a reason. Audited `order.cancel`.
#[utoipa::path(post, path = "/api/orders/{id}/cancel", tag = "care",
    params(("id" = u64, Path, description = "Order id")), request_body = ReasonRequest,
    responses((status = 200, body = OrderView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn cancel_order(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<ReasonRequest>, JsonRejection>,
) -> ApiResult<Json<OrderView>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let user = s.user.clone();
    let now = jiff::Timestamp::now();
    let o = blocking(&state, move |c| c.cancel(id, &user, &req.reason, now)).await?;
    audit(
        &state,
        &s,
        "order.cancel",
        None,
        Some(&o.subscriber),
        order_words(&o),
    )?;
    state.calls.subscriber_changed(Some(&o.subscriber));
    Ok(Json(OrderView {
        lateness: o.lateness(now),
        order: o,
    }))
}

/// A subscriber's life with the alarm: status, what an ordered alarm still needs, history,
/// orders, providers and who holds the keys. Audited `life.view`.
#[utoipa::path(get, path = "/api/subscribers/{id}/life", tag = "care",
    params(("id" = String, Path, description = "Subscriber id")),
    responses((status = 200, body = LifeView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_life(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<LifeView>> {
    s.require(Role::Supervisor, &state)?;
    let now = jiff::Timestamp::now();
    let sub = id.clone();
    let v = blocking(&state, move |c| c.life(&sub, now)).await?;
    audit(
        &state,
        &s,
        "life.view",
        None,
        Some(&id),
        format!("{:?}", v.life.status).to_lowercase(),
    )?;
    Ok(Json(v))
}

/// `POST /api/subscribers/{id}/installation` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallationRequest {
    /// The device (its DC-09 account, one of the subscriber's in the registry).
    pub account: String,
    /// Who installs (1 to 100 characters).
    pub installer: String,
    /// How long the window is open for the test alarm (minutes; default
    /// `[orders] install_window_mins`).
    #[serde(default)]
    pub window_mins: Option<u32>,
}

/// Opens an installation: a Signal from the device within the window is the test alarm.
/// Audited `life.installation`.
#[utoipa::path(post, path = "/api/subscribers/{id}/installation", tag = "care",
    params(("id" = String, Path, description = "Subscriber id")),
    request_body = InstallationRequest,
    responses((status = 200, body = Life), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The alarm is not ordered", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn open_installation(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    body: Result<Json<InstallationRequest>, JsonRejection>,
) -> ApiResult<Json<Life>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let now = jiff::Timestamp::now();
    let (sub, account) = (id.clone(), req.account.clone());
    let life = blocking(&state, move |c| {
        c.open_installation(&sub, &req.account, &req.installer, req.window_mins, now)
    })
    .await?;
    audit(
        &state,
        &s,
        "life.installation",
        None,
        Some(&id),
        format!("device {account}"),
    )?;
    state.calls.subscriber_changed(Some(&id));
    Ok(Json(life))
}

/// `POST /api/subscribers/{id}/consent` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    /// The day the person signed.
    #[schema(value_type = String)]
    pub signed_on: Date,
    /// Who signed (the person, or who signs for them).
    pub signed_by: String,
}

/// Records the consent (seed 001's "Samtycke") as given. With the test alarm and the keys in,
/// the alarm is active at once. Audited `life.consent`.
#[utoipa::path(post, path = "/api/subscribers/{id}/consent", tag = "care",
    params(("id" = String, Path, description = "Subscriber id")),
    request_body = ConsentRequest,
    responses((status = 200, body = Life), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn record_consent(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    body: Result<Json<ConsentRequest>, JsonRejection>,
) -> ApiResult<Json<Life>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let now = jiff::Timestamp::now();
    let (sub, user) = (id.clone(), s.user.clone());
    let life = blocking(&state, move |c| {
        c.record_consent(&sub, req.signed_on, &req.signed_by, &user, now)
    })
    .await?;
    audit(
        &state,
        &s,
        "life.consent",
        None,
        Some(&id),
        format!("{:?}", life.status).to_lowercase(),
    )?;
    state.calls.subscriber_changed(Some(&id));
    Ok(Json(life))
}

/// The municipality's care system sends an order (authenticated by the integration's bearer
/// token, not a session). Idempotent by the care system's `external_id` (required here): the
/// same order again answers 200 with the stored one; a new one 201. Audited `care.order` as
/// `integration:NAME`.
#[utoipa::path(post, path = "/api/care/orders", tag = "care", request_body = NewOrder,
    security(("bearer" = [])),
    responses((status = 201, description = "Stored", body = OrderView),
        (status = 200, description = "Known by its care-system id", body = OrderView),
        (status = 400, body = ErrorBody),
        (status = 401, description = "No or unknown integration token", body = ErrorBody),
        (status = 409, description = "The alarm's status does not allow it", body = ErrorBody),
        (status = 422, description = "Not a valid order", body = ErrorBody)))]
pub async fn care_system_order(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> ApiResult<axum::response::Response> {
    let integration = super::dispatch_api::integration_of(&headers, &state)?;
    let Json(new) = body?;
    if new
        .external_id
        .as_deref()
        .is_none_or(|e| e.trim().is_empty())
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "external_id: the care system's id of the order is needed",
        ));
    }
    let by = format!("integration:{integration}");
    let now = jiff::Timestamp::now();
    let by2 = by.clone();
    let r = blocking(&state, move |c| c.receive_order(new, &by2, now)).await?;
    if r.new {
        state.calls.subscriber_changed(Some(&r.order.subscriber));
    }
    state
        .store
        .audit(crate::model::AuditEntry {
            seq: 0,
            at: now,
            user: by,
            action: "care.order".into(),
            call: None,
            subscriber: Some(r.order.subscriber.clone()),
            detail: format!(
                "{}{}",
                order_words(&r.order),
                if r.new { "" } else { ", known" }
            ),
        })
        .map_err(|e| ApiError::internal("writing the audit log failed", e))?;
    Ok(received(r, now))
}

/// `GET /api/reports/billing` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BillingQuery {
    /// The month, `YYYY-MM` (default: this month in the centre's time zone).
    pub month: Option<String>,
    /// `json` (default) or `csv` (`;`-separated with a UTF-8 BOM).
    pub format: Option<String>,
}

/// The billing export of a month (supervisors): one row per subscriber billed, from the
/// month of installation to the month of ending inclusive, with the paying municipality and
/// the provider of the month's last day billed. Audited `report.billing`.
#[utoipa::path(get, path = "/api/reports/billing", tag = "care", params(BillingQuery),
    responses((status = 200, body = Vec<crate::care::billing::Row>),
        (status = 200, description = "With format=csv", content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn billing_report(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<BillingQuery>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    s.require_or_tenant(Role::Supervisor, &state)?;
    let scope = s.scope(&state)?;
    let Query(q) = q?;
    let now = jiff::Timestamp::now();
    let month: Month = match q.month.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => m.parse().map_err(ApiError::bad_request)?,
        None => Month::of(now.to_zoned(state.tz.clone()).date()),
    };
    let csv = super::dispatch_api::wants_csv(q.format.as_deref())?;
    let mut rows = blocking(&state, move |c| c.billing(month)).await?;
    // A tenant's staff: the rows their municipality pays, or of their provider.
    rows.retain(|r| match &scope {
        crate::model::Scope::All => true,
        crate::model::Scope::Municipality(m) => r.municipality.to_lowercase() == m.to_lowercase(),
        crate::model::Scope::Provider(p) => r.provider == *p,
    });
    audit(
        &state,
        &s,
        "report.billing",
        None,
        None,
        format!("{month}: {} subscribers", rows.len()),
    )?;
    if csv {
        Ok(super::dispatch_api::csv_attachment(
            crate::care::billing::to_csv(&rows),
            &format!("vakt-billing-{month}.csv"),
        ))
    } else {
        Ok(Json(rows).into_response())
    }
}
