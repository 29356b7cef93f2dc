//! The supervision part of the API: telecom incidents, a device's page (heartbeat deadline,
//! path, open faults), the escalation outbox, and the figures for the console's header.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::Session;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::Role;
use crate::model::order::Lateness;
use crate::outbox::{DeliveryFilter, DeliveryState, DeliveryView};
use crate::supervision::incidents::IncidentView;

/// Most incidents one list returns.
const MAX_INCIDENTS: usize = 200;

/// `GET /api/incidents` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentsQuery {
    /// `open` (default) or `all` (the newest 200).
    pub state: Option<String>,
}

/// Telecom incidents, newest first: the open ones, or all.
#[utoipa::path(get, path = "/api/incidents", tag = "supervision", params(IncidentsQuery),
    responses((status = 200, body = Vec<IncidentView>), (status = 400, body = ErrorBody)))]
pub async fn list_incidents(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<IncidentsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<IncidentView>>> {
    s.require(Role::Operator, &state)?;
    let Query(q) = q?;
    let open_only = match q.state.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state {other:?}: open or all"
            )));
        }
    };
    let st = state.clone();
    let views = tokio::task::spawn_blocking(move || {
        st.store
            .incidents(open_only, MAX_INCIDENTS)
            .map(|is| is.iter().map(|i| st.incidents.view(i)).collect::<Vec<_>>())
    })
    .await
    .map_err(|e| ApiError::internal("reading incidents failed", e))?
    .map_err(|e| ApiError::internal("reading incidents failed", e))?;
    Ok(Json(views))
}

/// One incident: its devices (those who need extra visits first), history and notifications.
#[utoipa::path(get, path = "/api/incidents/{id}", tag = "supervision",
    params(("id" = u64, Path, description = "Incident id")),
    responses((status = 200, body = IncidentView), (status = 404, body = ErrorBody)))]
pub async fn get_incident(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<IncidentView>> {
    s.require(Role::Operator, &state)?;
    let i = state
        .store
        .incident(id)
        .map_err(|e| ApiError::internal("reading the incident failed", e))?
        .ok_or_else(|| ApiError::not_found("incident"))?;
    Ok(Json(state.incidents.view(&i)))
}

/// The last Signal of a device: how it reached vakt.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastPath {
    /// Journal id.
    pub id: u64,
    /// When vakt received it.
    #[schema(value_type = String)]
    pub received_at: jiff::Timestamp,
    /// `tcp`, `udp` or `internal`.
    pub transport: String,
    /// The device's address as vakt saw it.
    pub peer: String,
    /// `ADM-CID`, `SIA-DCS`, `vakt-supervision`.
    pub protocol: String,
}

/// A device's page.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// Account.
    pub account: String,
    /// Subscriber id.
    pub subscriber: Option<String>,
    /// Subscriber name.
    pub subscriber_name: Option<String>,
    /// Device type.
    pub device_type: Option<String>,
    /// Telecom operator.
    pub telecom_operator: Option<String>,
    /// Area.
    pub area: Option<String>,
    /// Whether its heartbeats are watched.
    pub supervised: bool,
    /// When it was last heard.
    #[schema(value_type = Option<String>)]
    pub last_heard: Option<jiff::Timestamp>,
    /// Its interval.
    pub interval_secs: Option<u32>,
    /// Its grace after the interval.
    pub grace_secs: Option<u32>,
    /// When it must be heard by (none while silent).
    #[schema(value_type = Option<String>)]
    pub next_deadline: Option<jiff::Timestamp>,
    /// The deadline it missed, while silent.
    #[schema(value_type = Option<String>)]
    pub silent_since: Option<jiff::Timestamp>,
    /// How its last Signal came.
    pub last_signal: Option<LastPath>,
    /// Its subscriber's (or its own) open Call.
    pub open_call: Option<u64>,
    /// The open telecom incident it is in.
    pub incident: Option<u64>,
    /// Its open work orders.
    #[schema(value_type = Vec<Object>)]
    pub work_orders: Vec<crate::work_orders::WorkOrder>,
}

/// Most journal records read back to find a device's last Signal.
const LAST_SIGNAL_SCAN: usize = 5000;

/// A device: heartbeat supervision, the path of its last Signal, its open Call, incident and
/// work orders.
#[utoipa::path(get, path = "/api/devices/{account}", tag = "supervision",
    params(("account" = String, Path, description = "Device account")),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody)))]
pub async fn get_device(
    State(state): State<AppState>,
    s: Session,
    Path(account): Path<String>,
) -> ApiResult<Json<DeviceView>> {
    s.require(Role::Operator, &state)?;
    let registry = state.devices.current();
    let Some(device) = registry.iter().find(|d| d.account == account).cloned() else {
        return Err(ApiError::not_found("device"));
    };
    let status = state.supervision.supervisor().device(&account);
    let subscriber_name = device
        .subscriber
        .as_deref()
        .and_then(|s| state.store.subscriber(s).ok().flatten())
        .map(|s| s.name);
    let open_call = state
        .calls
        .triage
        .open_calls()
        .into_iter()
        .find(|c| {
            c.account == account
                || (device.subscriber.is_some() && c.subscriber == device.subscriber)
        })
        .map(|c| c.id);
    let incident = state.calls.triage.incident_of(&account);
    let st = state.clone();
    let acct = account.clone();
    let last_signal = tokio::task::spawn_blocking(move || {
        // The newest record of the device among the last LAST_SIGNAL_SCAN (a device that
        // only sends heartbeats has none: they are not journaled).
        let mut found = None;
        let mut seen = 0;
        let _ = st.store.journal_rev(|r| {
            seen += 1;
            if r.signal.account == acct && r.signal.transport != crate::model::Transport::Internal {
                found = Some(r.signal);
                return false;
            }
            seen < LAST_SIGNAL_SCAN
        });
        found
    })
    .await
    .map_err(|e| ApiError::internal("reading the journal failed", e))?
    .map(|s| LastPath {
        id: s.id,
        received_at: s.received_at,
        transport: s.transport.as_str().to_owned(),
        peer: s.peer.to_string(),
        protocol: s.protocol,
    });
    Ok(Json(DeviceView {
        supervised: status.is_some(),
        last_heard: status.as_ref().and_then(|d| d.last_heard),
        interval_secs: status.as_ref().map(|d| d.interval_secs),
        grace_secs: status.as_ref().map(|d| d.grace_secs),
        next_deadline: status.as_ref().and_then(|d| d.next_deadline),
        silent_since: status.as_ref().and_then(|d| d.silent_since),
        work_orders: state.work_orders.open_of(&account),
        account,
        subscriber: device.subscriber,
        subscriber_name,
        device_type: device.device_type,
        telecom_operator: device.telecom_operator,
        area: device.area,
        last_signal,
        open_call,
        incident,
    }))
}

/// `GET /api/outbox` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// `pending`, `failing`, `delivered`, or `all` (default).
    pub state: Option<String>,
    /// Only about this subject (`incident/12`, `work_order/7`).
    pub subject: Option<String>,
}

/// The escalation outbox (supervisors): every notification and how its delivery goes.
#[utoipa::path(get, path = "/api/outbox", tag = "supervision", params(OutboxQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn outbox(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<OutboxQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<DeliveryView>>> {
    s.require(Role::Supervisor, &state)?;
    let Query(q) = q?;
    let st = match q.state.as_deref() {
        None | Some("all") => None,
        Some(x) => Some(
            serde_json::from_value::<DeliveryState>(serde_json::Value::String(x.to_owned()))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "state {x:?}: pending, failing, delivered or all"
                    ))
                })?,
        ),
    };
    let filter = DeliveryFilter {
        state: st,
        subject: q.subject,
        ..DeliveryFilter::default()
    };
    let ob = state.outbox.clone();
    let v = tokio::task::spawn_blocking(move || ob.deliveries(&filter))
        .await
        .map_err(|e| ApiError::internal("reading the outbox failed", e))?
        .map_err(|e| ApiError::internal("reading the outbox failed", e))?;
    Ok(Json(v))
}

/// The supervision figures of the console's header.
#[derive(Debug, Serialize, ToSchema)]
pub struct SupervisionFigures {
    /// Devices whose heartbeats are watched.
    pub supervised: usize,
    /// Of those, silent now.
    pub silent: usize,
    /// Open telecom incidents.
    pub incidents_open: usize,
    /// Notifications not yet acknowledged.
    pub outbox_pending: u64,
    /// Endpoints whose oldest notification has failed at least once.
    pub outbox_failing: usize,
    /// Work orders not done or cancelled.
    pub work_orders_open: usize,
    /// Of those, late.
    pub work_orders_overdue: usize,
    /// The subscribers' orders still open (supervisors only: absent for an operator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders_open: Option<usize>,
    /// Of those, past their due time (a new alarm due back to the case officer included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders_overdue: Option<usize>,
    /// Of those, new alarms due to go back to the case officer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders_return_due: Option<usize>,
}

/// Devices supervised and silent, open incidents, the outbox, work orders; for a
/// supervisor, the subscribers' open orders and how many are late.
#[utoipa::path(get, path = "/api/supervision", tag = "supervision",
    responses((status = 200, body = SupervisionFigures)))]
pub async fn figures(
    State(state): State<AppState>,
    s: Session,
) -> ApiResult<Json<SupervisionFigures>> {
    s.require(Role::Operator, &state)?;
    let sup = state.supervision.supervisor();
    let now = jiff::Timestamp::now();
    let counts = state.work_orders.counts(now);
    let orders = if s.role >= Role::Supervisor {
        let care = state.care.clone();
        let open = tokio::task::spawn_blocking(move || care.open_orders(now))
            .await
            .map_err(|e| ApiError::internal("counting the orders failed", e))?
            .map_err(|e| ApiError::internal("counting the orders failed", e))?;
        let late = |l: &[Lateness]| open.iter().filter(|o| l.contains(&o.lateness)).count();
        Some((
            open.len(),
            late(&[Lateness::Overdue, Lateness::ReturnDue]),
            late(&[Lateness::ReturnDue]),
        ))
    } else {
        None
    };
    Ok(Json(SupervisionFigures {
        supervised: sup.supervised(),
        silent: sup.silent(),
        incidents_open: state.incidents.open_incidents().len(),
        outbox_pending: state.outbox.pending(),
        outbox_failing: state.outbox.failing(),
        work_orders_open: counts.open,
        work_orders_overdue: counts.overdue,
        orders_open: orders.map(|o| o.0),
        orders_overdue: orders.map(|o| o.1),
        orders_return_due: orders.map(|o| o.2),
    }))
}

/// The accounts heard lately that are not in the registry (a device not yet imported, a
/// mistyped account, or someone probing the ports), the most recent first. Only the newest
/// few hundred are kept, in memory; their alarms are in the queue as unknown-device Calls.
#[utoipa::path(get, path = "/api/supervision/unknown", tag = "supervision",
    responses((status = 200, body = Vec<crate::supervision::UnknownAccount>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn unknown_accounts(
    State(state): State<AppState>,
    s: Session,
) -> ApiResult<Json<Vec<crate::supervision::UnknownAccount>>> {
    s.require(Role::Operator, &state)?;
    let list = state
        .supervision
        .supervisor()
        .last_heard()
        .map(|lh| lh.unknown())
        .unwrap_or_default();
    Ok(Json(list))
}
