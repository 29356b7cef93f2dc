//! The dispatch part of the API: the patrols a Call may get, dispatching and cancelling, the
//! patrols board, the directory, and the lock systems' arrival events. Every change is
//! audited and durable (the dispatch and its timeline line) before the answer.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{Session, audit, queue_audit, with_audit};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::dispatch::desk::{Choices, DeskError, DispatchView, PatrolBoard};
use crate::dispatch::service::DispatchError;
use crate::model::Role;

/// Longest reason for a cancellation.
const MAX_REASON_CHARS: usize = 500;

/// Longest instruction to the patrol, in characters.
pub const MAX_INSTRUCTION_CHARS: usize = 1000;

fn desk_error(e: DeskError) -> ApiError {
    match e {
        DeskError::NoCall(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "no such open call (a closed call cannot be dispatched)",
        )
        .coded("dispatch.no_open_call"),
        DeskError::NotOwner { owner, .. } if owner.is_empty() => {
            ApiError::new(StatusCode::CONFLICT, "take the call before dispatching")
                .coded("call.not_owner")
        }
        DeskError::NotOwner { owner, .. } => ApiError::new(
            StatusCode::CONFLICT,
            format!("the call is taken by {owner}"),
        )
        .coded("call.owned_by")
        .param("owner", &owner)
        .with_owner(owner),
        DeskError::NoneOnShift => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            .coded("dispatch.none_on_shift"),
        DeskError::HomeHasPatrol {
            dispatch,
            ref patrol,
            call,
        } => {
            let patrol = patrol.clone();
            ApiError::new(StatusCode::CONFLICT, e.to_string())
                .coded("dispatch.home_has_patrol")
                .param("patrol", patrol)
                .param("call", call)
                .with_dispatch(dispatch)
                .needing_confirmation()
        }
        DeskError::NoAccess {
            ref patrol,
            ref name,
            ref provider,
        } => {
            let (patrol, name, provider) = (patrol.clone(), name.clone(), provider.clone());
            ApiError::new(StatusCode::CONFLICT, e.to_string())
                .coded("dispatch.no_access")
                .param("patrol", patrol)
                .param("name", name)
                .param("provider", provider)
                .needing_confirmation()
        }
        DeskError::Dispatch(DispatchError::UnknownPatrol(p)) => ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no patrol {p} in the directory"),
        )
        .coded("dispatch.unknown_patrol")
        .param("patrol", p),
        DeskError::Dispatch(DispatchError::AlreadyDispatched { dispatch, .. }) => ApiError::new(
            StatusCode::CONFLICT,
            format!("the call already has dispatch {dispatch} open: cancel it first"),
        )
        .coded("dispatch.already_open")
        .param("dispatch", dispatch)
        .with_dispatch(dispatch),
        DeskError::Dispatch(DispatchError::NotFound(_)) => {
            ApiError::new(StatusCode::NOT_FOUND, "no such open dispatch")
        }
        DeskError::Dispatch(e @ DispatchError::Sla(_)) => {
            ApiError::new(StatusCode::CONFLICT, e.to_string())
        }
        e => ApiError::internal("the dispatch could not be saved", e),
    }
}

/// Makes a dispatch change durable (the dispatch was when it was written; its timeline line
/// and audit entry, in one sync of the Call writer) before answering.
async fn durable(state: &AppState) -> ApiResult<()> {
    state
        .desk
        .flush()
        .await
        .map_err(|e| ApiError::internal("saving the dispatch failed", e))
}

/// The patrols the operator may send to the Call now: the route's (the suggestion first
/// among those on shift), then every other patrol.
#[utoipa::path(get, path = "/api/calls/{id}/patrols", tag = "dispatch",
    params(("id" = u64, Path, description = "Call id")),
    responses((status = 200, body = Choices), (status = 404, body = ErrorBody)))]
pub async fn call_patrols(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<Choices>> {
    s.require(Role::Operator, &state)?;
    let c = state
        .desk
        .choices(id, jiff::Timestamp::now())
        .map_err(desk_error)?;
    if let Some(gets) = &c.sends {
        // The answer shows the person's access and (with consent) health notes.
        audit(
            &state,
            &s,
            "subscriber.view",
            Some(id),
            Some(&gets.subscriber),
            "what the patrol gets (dispatch dialog)".into(),
        )?;
    }
    Ok(Json(c))
}

/// `POST /api/calls/{id}/dispatch` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchRequest {
    /// The patrol; absent: the suggested one.
    #[serde(default)]
    pub patrol: Option<String>,
    /// The operator confirms a second patrol to a home that has one on its way for another
    /// Call (without it that is refused 409 with `confirm: true`).
    #[serde(default)]
    pub second: bool,
    /// The operator confirms sending a patrol whose provider holds no key and has no lock
    /// access to the home (without it that is refused 409 `dispatch.no_access` with
    /// `confirm: true`). The Call's timeline says it was confirmed.
    #[serde(default)]
    pub no_access: bool,
    /// The operator's instruction to the patrol (at most 1000 characters; trimmed; absent
    /// or empty: none). It goes in the assignment, stays with the dispatch when it is passed
    /// to another patrol, and is on the Call's timeline.
    #[serde(default)]
    pub instruction: String,
}

/// Dispatch the Call (which the operator has taken) to a patrol: the suggested one, or the
/// one named. The patrol gets the assignment at once if connected, else when it connects;
/// if it does not confirm receipt in time the next patrol of the route gets it.
#[utoipa::path(post, path = "/api/calls/{id}/dispatch", tag = "dispatch",
    params(("id" = u64, Path, description = "Call id")), request_body = DispatchRequest,
    responses((status = 201, body = DispatchView),
        (status = 404, description = "No such open Call, or no such patrol", body = ErrorBody),
        (status = 409, description = "Not the operator's Call, or already dispatched, or the home has a patrol on its way for another Call (`confirm`: send again with `second`), or the patrol's provider has no key and no lock access to the home (`dispatch.no_access`, `confirm`: send again with `no_access`)", body = ErrorBody),
        (status = 422, description = "No patrol named and none of the route on shift, or an instruction over 1000 characters", body = ErrorBody)))]
pub async fn dispatch(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<DispatchRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<DispatchView>)> {
    s.require(Role::Operator, &state)?;
    let Json(req) = body?;
    let instruction = req.instruction.trim();
    if instruction.chars().count() > MAX_INSTRUCTION_CHARS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the instruction is longer than {MAX_INSTRUCTION_CHARS} characters"),
        )
        .coded("dispatch.instruction_too_long")
        .param("max", MAX_INSTRUCTION_CHARS));
    }
    let patrol = req
        .patrol
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let v = state
        .desk
        .dispatch_to(
            id,
            patrol,
            &s.user,
            req.second,
            req.no_access,
            instruction,
            jiff::Timestamp::now(),
        )
        .map_err(desk_error)?;
    let without_access = req.no_access
        && state
            .desk
            .access_of(id, &v.dispatch.patrol)
            .map_err(desk_error)?
            .is_some_and(|a| a.none());
    queue_audit(
        &state,
        &s,
        "call.dispatch",
        Some(id),
        None,
        format!(
            "dispatch {} to {}{}{}{}",
            v.dispatch.id,
            v.dispatch.patrol,
            if req.second {
                " (a second patrol to the home, confirmed)"
            } else {
                ""
            },
            if without_access {
                " (no key and no lock access, confirmed)"
            } else {
                ""
            },
            if instruction.is_empty() {
                ""
            } else {
                ", with an instruction"
            }
        ),
    )?;
    durable(&state).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// `POST /api/dispatches/{id}/cancel` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why (1 to 500 characters); the patrol sees it.
    pub reason: String,
}

/// Withdraw an open dispatch from its patrol (it is told at once, or when it connects).
#[utoipa::path(post, path = "/api/dispatches/{id}/cancel", tag = "dispatch",
    params(("id" = u64, Path, description = "Dispatch id")), request_body = CancelRequest,
    responses((status = 200, body = DispatchView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<CancelRequest>, JsonRejection>,
) -> ApiResult<Json<DispatchView>> {
    s.require(Role::Operator, &state)?;
    let Json(req) = body?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::bad_request(format!(
            "give a reason of 1 to {MAX_REASON_CHARS} characters"
        )));
    }
    let v = state
        .desk
        .cancel(id, reason, &s.user, jiff::Timestamp::now())
        .map_err(desk_error)?;
    queue_audit(
        &state,
        &s,
        "dispatch.cancel",
        Some(v.dispatch.call),
        None,
        format!("dispatch {id}: {reason}"),
    )?;
    durable(&state).await?;
    Ok(Json(v))
}

/// `GET /api/dispatches` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DispatchesQuery {
    /// Only this Call's dispatches (all of them, oldest first).
    pub call: Option<u64>,
    /// Without `call`: `true` (the default) lists the live dispatches.
    pub open: Option<bool>,
}

/// Dispatches: the live ones (not completed), or the dispatches of one Call (all, or with
/// `open=true` the live ones).
#[utoipa::path(get, path = "/api/dispatches", tag = "dispatch", params(DispatchesQuery),
    responses((status = 200, body = Vec<DispatchView>)))]
pub async fn list_dispatches(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<DispatchesQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<DispatchView>>> {
    s.require_or_tenant(Role::Operator, &state)?;
    let scope = s.scope(&state)?;
    let Query(q) = q?;
    let mut ds = match (q.call, q.open) {
        (Some(call), open) => {
            let all = state
                .store
                .dispatches_of_call(call)
                .map_err(|e| ApiError::internal("reading dispatches failed", e))?;
            match open {
                Some(true) => all
                    .into_iter()
                    .filter(|d| d.is_open() || d.state == crate::model::DispatchState::Arrived)
                    .collect(),
                _ => all,
            }
        }
        (None, None | Some(true)) => state.desk.dispatcher().live_all(),
        (None, Some(false)) => {
            return Err(ApiError::bad_request(
                "ended dispatches are listed per Call: give call=ID (or see the month's report)",
            ));
        }
    };
    if !scope.is_all() {
        // A tenant's staff: the dispatches to their own people, and a provider's staff
        // also their own patrols'.
        let mut keep = Vec::with_capacity(ds.len());
        for d in ds {
            let own_patrol = matches!(&scope, crate::model::Scope::Provider(p) if d.provider == *p);
            let person = match state.calls.triage.get(d.call) {
                Some(c) => c.subscriber,
                None => state
                    .store
                    .call(d.call)
                    .map_err(|e| ApiError::internal("reading the call failed", e))?
                    .and_then(|c| c.subscriber),
            };
            if own_patrol || super::api::sees_subscriber(&state, &scope, person.as_deref())? {
                keep.push(d);
            }
        }
        ds = keep;
    }
    Ok(Json(ds.iter().map(|d| state.desk.view(d)).collect()))
}

/// The patrols board: every patrol of the directory, whether its app is connected, its shift
/// now, and its live dispatches with their clocks.
#[utoipa::path(get, path = "/api/patrols", tag = "dispatch",
    responses((status = 200, body = Vec<PatrolBoard>)))]
pub async fn patrols(
    State(state): State<AppState>,
    s: Session,
) -> ApiResult<Json<Vec<PatrolBoard>>> {
    s.require(Role::Operator, &state)?;
    Ok(Json(state.desk.board(jiff::Timestamp::now())))
}

/// The directory: care providers, areas with their arrival limits, patrols with their
/// shifts, routing rules in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryView {
    /// Care providers.
    pub providers: Vec<crate::model::Provider>,
    /// Areas.
    pub areas: Vec<crate::model::Area>,
    /// Patrols.
    pub patrols: Vec<crate::model::Patrol>,
    /// Routing rules, in order.
    pub routes: Vec<crate::model::RouteRule>,
}

/// The directory (supervisors).
#[utoipa::path(get, path = "/api/directory", tag = "dispatch",
    responses((status = 200, body = DirectoryView), (status = 403, body = ErrorBody)))]
pub async fn directory(
    State(state): State<AppState>,
    s: Session,
) -> ApiResult<Json<DirectoryView>> {
    s.require(Role::Supervisor, &state)?;
    let d = state.desk.dispatcher().directory().clone();
    Ok(Json(DirectoryView {
        providers: d.providers,
        areas: d.areas,
        patrols: d.patrols,
        routes: d.routes,
    }))
}

/// `POST /api/directory/import` body: the four CSV files' texts.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryImport {
    /// providers.csv
    pub providers: String,
    /// areas.csv
    pub areas: String,
    /// patrols.csv
    pub patrols: String,
    /// routes.csv
    pub routes: String,
    /// staff.csv (optional: the centre's staff list to call in; left out, the list stays as
    /// it is).
    #[serde(default)]
    pub staff: Option<String>,
}

impl std::fmt::Debug for DirectoryImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryImport").finish_non_exhaustive()
    }
}

/// What a directory import replaced.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryImported {
    /// Care providers.
    pub providers: usize,
    /// Areas.
    pub areas: usize,
    /// Patrols.
    pub patrols: usize,
    /// Routing rules.
    pub routes: usize,
    /// Patrol tokens removed because their patrol is gone.
    pub tokens_removed: usize,
    /// People in the staff list (when staff.csv was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staff: Option<usize>,
}

/// Replace the directory (admin): the four files are checked together, all or nothing.
#[utoipa::path(post, path = "/api/directory/import", tag = "dispatch",
    request_body = DirectoryImport,
    responses((status = 200, body = DirectoryImported),
        (status = 422, description = "Every problem, by file and line; nothing imported", body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn import_directory(
    State(state): State<AppState>,
    s: Session,
    body: Result<Json<DirectoryImport>, JsonRejection>,
) -> ApiResult<Json<DirectoryImported>> {
    s.require(Role::Admin, &state)?;
    let Json(req) = body?;
    // The staff list (optional) is checked with the four files: nothing of either is
    // imported with a problem in any.
    let staff = match req
        .staff
        .as_deref()
        .map(|t| crate::registers::staff::parse_staff(t.as_bytes()))
    {
        None => None,
        Some(Ok(list)) => Some(list),
        Some(Err(e)) => {
            let problems = match e {
                crate::registers::staff::ImportError::Invalid(p) => {
                    p.iter().map(|p| format!("staff {p}")).collect()
                }
                e => vec![format!("staff: {e}")],
            };
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{} problem(s) in the staff file, nothing imported",
                    problems.len()
                ),
            )
            .with_problems(problems));
        }
    };
    let dir = crate::registers::directory::parse_all(
        req.providers.as_bytes(),
        req.areas.as_bytes(),
        req.patrols.as_bytes(),
        req.routes.as_bytes(),
    )
    .map_err(|e| match e {
        crate::registers::directory::ImportError::Invalid(problems) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{} problem(s), nothing imported", problems.len()),
        )
        .with_problems(problems.iter().map(ToString::to_string).collect()),
        e => ApiError::bad_request(e.to_string()),
    })?;
    let summary = DirectoryImported {
        providers: dir.providers.len(),
        areas: dir.areas.len(),
        patrols: dir.patrols.len(),
        routes: dir.routes.len(),
        tokens_removed: 0,
        staff: staff.as_ref().map(Vec::len),
    };
    // The directory (and the staff list) and its audit entry: one sync.
    let summary_staff = summary.staff;
    let counts = (
        summary.providers,
        summary.areas,
        summary.patrols,
        summary.routes,
    );
    let removed = with_audit(
        &state,
        &s,
        "directory.import",
        None,
        move |st| {
            if let Some(staff) = &staff {
                st.save_staff(staff)?;
            }
            st.save_directory(&dir)
        },
        move |removed| {
            let (providers, areas, patrols, routes) = counts;
            let staff = summary_staff.map_or(String::new(), |n| format!(", {n} staff"));
            format!(
                "{providers} providers, {areas} areas, {patrols} patrols, {routes} routes, \
                 {removed} tokens removed{staff}"
            )
        },
    )
    .await?;
    state
        .desk
        .reload_directory()
        .map_err(|e| ApiError::internal("loading the directory failed", e))?;
    Ok(Json(DirectoryImported {
        tokens_removed: removed,
        ..summary
    }))
}

// ---- lock systems ----

/// Most events one request may carry.
pub const MAX_LOCK_EVENTS: usize = 1000;

/// One opening of a digital lock, as a lock system reports it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockEvent {
    /// The lock (the subscriber register's `digital_lock_id`).
    pub lock_id: String,
    /// When it was opened (RFC 3339).
    #[schema(value_type = String)]
    pub at: jiff::Timestamp,
    /// Who opened it: the patrol's id as the lock system knows its key or phone.
    pub credential: String,
}

/// `POST /api/locks/events` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockEvents {
    /// The openings, oldest first (at most 1000).
    pub events: Vec<LockEvent>,
}

/// What came of each opening.
#[derive(Debug, Serialize, ToSchema)]
pub struct LockResults {
    /// One per event, in order.
    pub results: Vec<crate::dispatch::desk::LockOutcome>,
}

/// The integration a request's `Authorization: Bearer TOKEN` belongs to (the lock systems,
/// the care system).
pub(super) fn integration_of(
    headers: &axum::http::HeaderMap,
    state: &AppState,
) -> ApiResult<String> {
    let unauthorized = || {
        state.metrics.rejected("no_session");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "send the integration's token: Authorization: Bearer TOKEN (vakt integrations token NAME)",
        )
    };
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(super::auth::bearer_token)
        .ok_or_else(unauthorized)?;
    let hash = crate::store::token_hash(token);
    state
        .store
        .integration_for_token(&hash)
        .map_err(|e| ApiError::internal("reading the integration failed", e))?
        .ok_or_else(unauthorized)
}

/// A lock system reports openings of digital locks (authenticated by the integration's
/// bearer token, not a session). An opening of a subscriber's lock by the patrol of a live
/// dispatch to them marks the patrol arrived (method `lock`) at the opening's time; any
/// other opening is ignored, with the reason.
#[utoipa::path(post, path = "/api/locks/events", tag = "dispatch",
    request_body = LockEvents,
    security(("bearer" = [])),
    responses((status = 200, body = LockResults), (status = 400, body = ErrorBody),
        (status = 401, description = "No or unknown integration token", body = ErrorBody)))]
pub async fn lock_events(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Json<LockEvents>, JsonRejection>,
) -> ApiResult<Json<LockResults>> {
    let integration = integration_of(&headers, &state)?;
    let Json(req) = body?;
    if req.events.len() > MAX_LOCK_EVENTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_LOCK_EVENTS} events per request"
        )));
    }
    let desk = state.desk.clone();
    let results = tokio::task::spawn_blocking(move || {
        let now = jiff::Timestamp::now();
        req.events
            .iter()
            .map(|e| desk.lock_opened(&e.lock_id, e.at, e.credential.trim(), now))
            .collect::<Result<Vec<_>, DeskError>>()
    })
    .await
    .map_err(|e| ApiError::internal("handling the lock events failed", e))?
    .map_err(desk_error)?;
    let arrived = results.iter().filter(|r| r.result == "arrived").count();
    if arrived > 0 {
        state
            .store
            .audit(crate::model::AuditEntry {
                seq: 0,
                at: jiff::Timestamp::now(),
                user: format!("integration:{integration}"),
                action: "lock.arrival".into(),
                call: None,
                subscriber: None,
                detail: results
                    .iter()
                    .filter_map(|r| r.dispatch.map(|d| format!("dispatch {d}")))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .map_err(|e| ApiError::internal("writing the audit log failed", e))?;
        durable(&state).await?;
    }
    Ok(Json(LockResults { results }))
}

// ---- reports ----

/// `GET /api/reports/sla` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// The month, `YYYY-MM` (default: this month in the centre's time zone).
    pub month: Option<String>,
    /// Whose (the centre's supervisors; a municipality's or provider's user always gets
    /// their own): `all` (the default), `municipality:NAME` or `provider:ID`.
    pub scope: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// The arrival-SLA report of a month (supervisors, and a municipality's or care provider's
/// staff for their own): per care provider and area, dispatches, median and 90th percentile
/// from receipt to arrival, breaches with their Calls, receipt timeouts; and the month's
/// answer-time figures. Of the whole centre, one municipality's people or one provider's.
#[utoipa::path(get, path = "/api/reports/sla", tag = "dispatch", params(ReportQuery),
    responses((status = 200, body = crate::dispatch::report::SlaReport),
        (status = 200, description = "With format=csv", content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn sla_report(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    s.require_or_tenant(Role::Supervisor, &state)?;
    let Query(q) = q?;
    let scope = if s.role.is_tenant() {
        s.scope(&state)?
    } else {
        crate::model::Scope::parse(q.scope.as_deref()).map_err(ApiError::bad_request)?
    };
    let now = jiff::Timestamp::now();
    let month = month_or_this(q.month, &state, now);
    let csv = wants_csv(q.format.as_deref())?;
    let store = state.store.clone();
    let tz = state.tz.clone();
    let home = state.care.municipality().to_owned();
    let report = tokio::task::spawn_blocking(move || {
        crate::dispatch::report::sla_report_of(&store, month.trim(), &tz, now, &scope, &home)
    })
    .await
    .map_err(|e| ApiError::internal("making the report failed", e))?
    .map_err(|e| match e {
        crate::dispatch::report::ReportError::BadMonth(_) => ApiError::bad_request(e.to_string()),
        e => ApiError::internal("making the report failed", e),
    })?;
    if csv {
        let name = match &report.scope {
            crate::model::Scope::All => format!("vakt-sla-{}.csv", report.month),
            crate::model::Scope::Municipality(w) | crate::model::Scope::Provider(w) => {
                format!("vakt-sla-{}-{}.csv", report.month, slug(w))
            }
        };
        Ok(csv_attachment(
            crate::dispatch::report::to_csv(&report),
            &name,
        ))
    } else {
        Ok(Json(report).into_response())
    }
}

/// A name as a file name's part: letters and digits kept (å, ä, ö as a, a, o), the rest `-`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().to_lowercase().chars() {
        let c = match c {
            'å' | 'ä' | 'á' | 'à' => 'a',
            'ö' | 'ø' | 'ó' => 'o',
            'æ' => 'a',
            'é' | 'è' => 'e',
            'ü' => 'u',
            c => c,
        };
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() { "scope".into() } else { out }
}

/// A report's `format`: `json` (the default) or `csv`; anything else is 400.
pub(super) fn wants_csv(format: Option<&str>) -> ApiResult<bool> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(f) => Err(ApiError::bad_request(format!("format {f:?}: json or csv"))),
    }
}

/// A report's month as asked (`YYYY-MM`, checked by the report), or this month in the
/// centre's time zone.
fn month_or_this(month: Option<String>, state: &AppState, now: jiff::Timestamp) -> String {
    month
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| now.to_zoned(state.tz.clone()).strftime("%Y-%m").to_string())
}

/// A CSV file to download: `text/csv` named `name`.
pub(super) fn csv_attachment(body: String, name: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `GET /api/reports/visits` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VisitsQuery {
    /// The month, `YYYY-MM` (default: this month in the centre's time zone).
    pub month: Option<String>,
    /// Only this care provider's visits (its directory id; default: every provider's).
    pub provider: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// The alarm visits of a month (supervisors), per care provider, each with its confirmed
/// arrival and departure, how the arrival was confirmed, the patrol and the person visited:
/// the basis of a provider's time report and compensation. Audited `report.visits` (it names
/// the people visited).
#[utoipa::path(get, path = "/api/reports/visits", tag = "dispatch", params(VisitsQuery),
    responses((status = 200, body = crate::dispatch::visits::VisitsReport),
        (status = 200, description = "With format=csv", content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn visits_report(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<VisitsQuery>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    s.require_or_tenant(Role::Supervisor, &state)?;
    let scope = s.scope(&state)?;
    let Query(q) = q?;
    let now = jiff::Timestamp::now();
    let month = month_or_this(q.month, &state, now);
    let csv = wants_csv(q.format.as_deref())?;
    let provider = match &scope {
        // A provider's staff see their own visits, whatever they ask for.
        crate::model::Scope::Provider(p) => Some(p.clone()),
        _ => q
            .provider
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty()),
    };
    if provider.as_ref().is_some_and(|p| p.chars().count() > 64) {
        return Err(ApiError::bad_request(
            "provider: an id of at most 64 characters",
        ));
    }
    let store = state.store.clone();
    let tz = state.tz.clone();
    let (m, p) = (month.trim().to_owned(), provider.clone());
    let home = state.care.municipality().to_owned();
    let report = tokio::task::spawn_blocking(move || {
        let mut r = crate::dispatch::visits::visits_report(&store, &m, &tz, p.as_deref())?;
        if let crate::model::Scope::Municipality(_) = &scope {
            // A municipality's staff: the visits to their own people.
            let mut subs = store.subscribers()?;
            // Those whose card retention deleted, by the municipality kept on their life.
            subs.extend(store.lives()?.into_iter().filter_map(|l| {
                l.anonymised?;
                Some(crate::model::Subscriber {
                    id: l.subscriber,
                    municipality: l.municipality.unwrap_or_default(),
                    ..crate::model::Subscriber::default()
                })
            }));
            let theirs: std::collections::HashSet<&str> = subs
                .iter()
                .filter(|x| scope.sees(x, &home))
                .map(|x| x.id.as_str())
                .collect();
            r.retain_subscribers(|id| theirs.contains(id));
        }
        Ok::<_, crate::dispatch::report::ReportError>(r)
    })
    .await
    .map_err(|e| ApiError::internal("making the report failed", e))?
    .map_err(|e| match e {
        crate::dispatch::report::ReportError::BadMonth(_) => ApiError::bad_request(e.to_string()),
        e => ApiError::internal("making the report failed", e),
    })?;
    audit(
        &state,
        &s,
        "report.visits",
        None,
        None,
        format!(
            "{} {}: {} visits",
            report.month,
            provider.as_deref().unwrap_or("every provider"),
            report.visits.len()
        ),
    )?;
    if csv {
        // The provider's id as typed may hold anything: only its plain characters name the file.
        let name = match &report.provider {
            Some(p) => {
                let p: String = p
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                format!("vakt-visits-{}-{p}.csv", report.month)
            }
            None => format!("vakt-visits-{}.csv", report.month),
        };
        Ok(csv_attachment(
            crate::dispatch::visits::to_csv(&report, &state.tz),
            &name,
        ))
    } else {
        Ok(Json(report).into_response())
    }
}
