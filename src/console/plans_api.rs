//! The response-plan part of the API (issue 16, seed 002: "a plan for how to handle alarms
//! from each user"): a subscriber's plan with its versions (read by operators, every read
//! audited `plan.view` like the subscriber's card; saved by supervisors, audited
//! `plan.edit`), and on a Call the plan for its kind of alarm, where the owner ticks the
//! steps and records the relatives called, each a timeline line. The model, the selection
//! by kind and the centre's default plan are in `crate::model::plan`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::{CallView, Session, audit, call_error, durable};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::plan::{
    self, CallPlan, KindInForce, KindPlan, MAX_REASON_CHARS, MAX_VERSIONS_LISTED, PlanKind,
    PlanVersion, RelativeResult, ResponsePlan, StepAction, StepResult,
};
use crate::model::{Call, CallState, Role, TimelineEvent};
use crate::triage::CallError;
use crate::triage::priority::plan_kind;

fn unprocessable(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why)
}

/// The plan or the contacts changed since the operator's page showed them (409).
fn plan_changed() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "the plan or the contacts changed since they were shown: look at them again",
    )
    .coded("plan.changed")
}

fn storage(e: crate::store::StoreError) -> ApiError {
    ApiError::internal("reading the plan failed", e)
}

/// A version in the list: who saved it, when.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionLine {
    /// The version number.
    pub version: u32,
    /// Who saved it.
    pub saved_by: String,
    /// When.
    pub saved_at: jiff::Timestamp,
}

/// A subscriber's plan as the card and the editor show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberPlan {
    /// The subscriber.
    pub subscriber: String,
    /// The current version; `None`: no plan, the centre's default applies.
    pub current: Option<PlanVersion>,
    /// The versions, newest first (at most 200).
    pub versions: Vec<VersionLine>,
    /// The centre's default plan, per kind (for a subscriber without a plan, and for the
    /// kinds a plan leaves out).
    pub centre_default: Vec<KindPlan>,
    /// The centre's default for "relatives first" (`[plans] relatives_first`).
    pub relatives_first_default: bool,
    /// Per kind of alarm, the steps a Call gets under the current version (or the centre's
    /// default), in the order it gets them: relatives first applied.
    pub in_force: Vec<KindInForce>,
}

/// One saved version of a plan, with the steps it puts in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanVersionView {
    /// The version.
    #[serde(flatten)]
    pub version: PlanVersion,
    /// Per kind of alarm, the steps a Call got under this version, in order.
    pub in_force: Vec<KindInForce>,
}

fn subscriber_plan(state: &AppState, id: &str) -> ApiResult<SubscriberPlan> {
    let versions = state
        .store
        .plan_versions(id, MAX_VERSIONS_LISTED)
        .map_err(storage)?;
    let lines = versions
        .iter()
        .map(|v| VersionLine {
            version: v.version,
            saved_by: v.saved_by.clone(),
            saved_at: v.saved_at,
        })
        .collect();
    let current = versions.into_iter().next();
    let in_force = plan::in_force(
        current.as_ref().map(|v| &v.plan),
        state.plans.relatives_first,
        state.language,
    );
    Ok(SubscriberPlan {
        subscriber: id.to_owned(),
        current,
        versions: lines,
        centre_default: PlanKind::ALL
            .iter()
            .map(|k| plan::centre_default(*k, state.language))
            .collect(),
        relatives_first_default: state.plans.relatives_first,
        in_force,
    })
}

fn known_subscriber(state: &AppState, id: &str) -> ApiResult<crate::model::Subscriber> {
    state
        .store
        .subscriber(id)
        .map_err(|e| ApiError::internal("reading the subscriber failed", e))?
        .ok_or_else(|| ApiError::not_found("subscriber"))
}

/// A subscriber's response plan: the current version and the list of versions (audited
/// `plan.view`).
#[utoipa::path(get, path = "/api/subscribers/{id}/plan", tag = "plans",
    params(("id" = String, Path, description = "Subscriber id")),
    responses((status = 200, body = SubscriberPlan), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_plan(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<SubscriberPlan>> {
    s.require(Role::Operator, &state)?;
    known_subscriber(&state, &id)?;
    let plan = subscriber_plan(&state, &id)?;
    let detail = plan
        .current
        .as_ref()
        .map_or_else(|| "none".to_owned(), |v| format!("version {}", v.version));
    audit(&state, &s, "plan.view", None, Some(&id), detail)?;
    Ok(Json(plan))
}

/// One saved version of a subscriber's plan (audited `plan.view`).
#[utoipa::path(get, path = "/api/subscribers/{id}/plan/versions/{n}", tag = "plans",
    params(("id" = String, Path, description = "Subscriber id"),
        ("n" = u32, Path, description = "Version number")),
    responses((status = 200, body = PlanVersionView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_plan_version(
    State(state): State<AppState>,
    s: Session,
    Path((id, n)): Path<(String, u32)>,
) -> ApiResult<Json<PlanVersionView>> {
    s.require(Role::Operator, &state)?;
    let v = state
        .store
        .plan_version(&id, n)
        .map_err(storage)?
        .ok_or_else(|| ApiError::not_found("plan version"))?;
    audit(
        &state,
        &s,
        "plan.view",
        None,
        Some(&id),
        format!("version {n}"),
    )?;
    let in_force = plan::in_force(Some(&v.plan), state.plans.relatives_first, state.language);
    Ok(Json(PlanVersionView {
        version: v,
        in_force,
    }))
}

/// Save a subscriber's response plan as a new version (supervisor; audited `plan.edit`).
/// An invalid plan is refused 422 with the first thing wrong.
#[utoipa::path(put, path = "/api/subscribers/{id}/plan", tag = "plans",
    params(("id" = String, Path, description = "Subscriber id")), request_body = ResponsePlan,
    responses((status = 200, body = SubscriberPlan), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_plan(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    body: Result<Json<ResponsePlan>, JsonRejection>,
) -> ApiResult<Json<SubscriberPlan>> {
    s.require(Role::Supervisor, &state)?;
    let Json(mut p) = body.map_err(|e| match e {
        // A plan that parses as JSON but not as a plan (an unknown step) is unprocessable.
        JsonRejection::JsonDataError(e) => unprocessable(e.body_text()),
        e => e.into(),
    })?;
    known_subscriber(&state, &id)?;
    plan::normalize(&mut p);
    plan::validate(&p).map_err(unprocessable)?;
    let (sub, user) = (id.clone(), s.user.clone());
    // The version and its audit entry: one sync.
    let saved = super::api::with_audit(
        &state,
        &s,
        "plan.edit",
        Some(id.clone()),
        move |st| st.save_plan(&sub, &user, jiff::Timestamp::now(), &p),
        |saved| format!("version {}", saved.version),
    )
    .await?;
    tracing::info!(subscriber = %id, version = saved.version, "response plan saved");
    Ok(Json(subscriber_plan(&state, &id)?))
}

/// The Call, open (from triage) or closed (from the store).
fn call_of(state: &AppState, id: u64) -> ApiResult<Call> {
    match state.calls.triage.get(id) {
        Some(c) => Ok(c),
        None => state
            .store
            .call(id)
            .map_err(|e| ApiError::internal("reading the call failed", e))?
            .ok_or_else(|| ApiError::not_found("call")),
    }
}

/// The plan of `call`: the version it is handled under (its first plan line's), else the
/// subscriber's current one, else the centre's default.
fn plan_of(state: &AppState, call: &Call) -> ApiResult<CallPlan> {
    let kind = plan_kind(&call.kind, call.priority);
    let (used, current, contacts) = match call.subscriber.as_deref() {
        None => (None, 0, Vec::new()),
        Some(sid) => {
            let current = state.store.plan(sid).map_err(storage)?;
            let current_version = current.as_ref().map_or(0, |v| v.version);
            let used = match plan::recorded_version(call) {
                None => current,
                Some(0) => None,
                Some(v) if v == current_version => current,
                Some(v) => state.store.plan_version(sid, v).map_err(storage)?,
            };
            let contacts = state
                .store
                .subscriber(sid)
                .map_err(|e| ApiError::internal("reading the subscriber failed", e))?
                .map(|s| s.contacts)
                .unwrap_or_default();
            (used, current_version, contacts)
        }
    };
    Ok(plan::call_plan(
        call,
        kind,
        used.as_ref(),
        current,
        &contacts,
        state.plans.relatives_first,
        state.language,
    ))
}

/// The response plan for this Call's kind of alarm: the steps with what was done, the
/// relatives with the calls made (audited `plan.view`).
#[utoipa::path(get, path = "/api/calls/{id}/plan", tag = "plans",
    params(("id" = u64, Path, description = "Call id")),
    responses((status = 200, body = CallPlan), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn call_plan(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<CallPlan>> {
    s.require(Role::Operator, &state)?;
    let call = call_of(&state, id)?;
    let p = plan_of(&state, &call)?;
    audit(
        &state,
        &s,
        "plan.view",
        Some(id),
        call.subscriber.as_deref(),
        format!("version {}", p.version),
    )?;
    Ok(Json(p))
}

/// The open Call `id` if `s` owns it: 409 when another or nobody does, 410 when closed.
fn owned_call(state: &AppState, s: &Session, id: u64) -> ApiResult<Call> {
    let call = state
        .calls
        .triage
        .get(id)
        .ok_or_else(|| call_error(state, id, CallError::NotFound))?;
    if call.state != CallState::Claimed || call.owner.as_deref() != Some(s.user.as_str()) {
        return Err(CallError::NotOwner.into());
    }
    Ok(call)
}

fn bounded(text: &str, what: &str) -> ApiResult<String> {
    let t = text.trim();
    if t.chars().count() > MAX_REASON_CHARS {
        return Err(unprocessable(format!(
            "{what} is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(t.to_owned())
}

/// `POST /api/calls/{id}/plan/steps/{i}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// `done` or `skipped`.
    pub result: StepResult,
    /// Why it was skipped (required then, at most 500 characters), or a note.
    #[serde(default)]
    pub reason: String,
    /// The plan version the operator sees (the console sends it): refused 409 when the
    /// Call's plan is another by now, so a step is never ticked on a plan nobody saw.
    #[serde(default)]
    pub plan_version: Option<u32>,
    /// The step's action as the operator sees it (the console sends it): refused 409 when
    /// step `i` is another.
    #[serde(default)]
    pub action: Option<StepAction>,
}

/// Tick step `i` of the Call's plan, done or skipped with a reason (the Call's owner only;
/// a timeline line; audited `call.plan_step`).
#[utoipa::path(post, path = "/api/calls/{id}/plan/steps/{i}", tag = "plans",
    params(("id" = u64, Path, description = "Call id"),
        ("i" = u32, Path, description = "Step index, from 0")),
    request_body = StepRequest,
    responses((status = 200, body = CallView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not the operator's Call", body = ErrorBody),
        (status = 410, description = "The Call is closed", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn tick_step(
    State(state): State<AppState>,
    s: Session,
    Path((id, i)): Path<(u64, u32)>,
    body: Result<Json<StepRequest>, JsonRejection>,
) -> ApiResult<Json<CallView>> {
    s.require(Role::Operator, &state)?;
    let Json(req) = body?;
    let call = owned_call(&state, &s, id)?;
    let reason = bounded(&req.reason, "the reason")?;
    if req.result == StepResult::Skipped && reason.is_empty() {
        return Err(unprocessable("a skipped step needs a reason"));
    }
    let p = plan_of(&state, &call)?;
    let Some(step) = p.steps.get(i as usize) else {
        return Err(unprocessable(format!(
            "the plan has {} steps for this alarm",
            p.steps.len()
        )));
    };
    if req.plan_version.is_some_and(|v| v != p.version)
        || req.action.is_some_and(|a| a != step.action)
    {
        return Err(plan_changed());
    }
    let result = match req.result {
        StepResult::Done => "done",
        StepResult::Skipped => "skipped",
    };
    let detail = format!("{} {} ({i})", step.action.as_str(), result);
    let what = TimelineEvent::PlanStep {
        plan_version: p.version,
        kind: p.kind,
        step: i,
        action: step.action,
        result: req.result,
        reason,
    };
    owner_line(&state, &s, id, what, "call.plan_step", detail).await
}

/// `POST /api/calls/{id}/relative-call` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelativeCallRequest {
    /// The contact's position in the subscriber's contacts (from 0).
    pub contact: u32,
    /// The contact's name as the operator sees it (the console sends it): refused 409 when
    /// the contact at that position is someone else by now.
    #[serde(default)]
    pub name: Option<String>,
    /// `answered`, `no_answer` or `busy`.
    pub result: RelativeResult,
    /// What was said or agreed (at most 500 characters).
    #[serde(default)]
    pub note: String,
}

/// Record a call to a relative of the Call's subscriber, by name and relation, with whether
/// they answered (the Call's owner only; a timeline line; audited `call.relative_call`).
#[utoipa::path(post, path = "/api/calls/{id}/relative-call", tag = "plans",
    params(("id" = u64, Path, description = "Call id")), request_body = RelativeCallRequest,
    responses((status = 200, body = CallView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not the operator's Call", body = ErrorBody),
        (status = 410, description = "The Call is closed", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn relative_call(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<RelativeCallRequest>, JsonRejection>,
) -> ApiResult<Json<CallView>> {
    s.require(Role::Operator, &state)?;
    let Json(req) = body?;
    let call = owned_call(&state, &s, id)?;
    let note = bounded(&req.note, "the note")?;
    let p = plan_of(&state, &call)?;
    let Some(contact) = p.relatives.get(req.contact as usize) else {
        return Err(unprocessable(if p.relatives.is_empty() {
            "the subscriber has no contacts".to_owned()
        } else {
            format!("the subscriber has {} contacts", p.relatives.len())
        }));
    };
    if req
        .name
        .as_deref()
        .is_some_and(|n| n.trim() != contact.name)
    {
        return Err(plan_changed());
    }
    let detail = format!("{} ({})", req.result.as_str(), req.contact);
    let what = TimelineEvent::RelativeCall {
        plan_version: p.version,
        contact: req.contact,
        name: contact.name.clone(),
        relation: contact.relation.clone(),
        result: req.result,
        note,
    };
    owner_line(&state, &s, id, what, "call.relative_call", detail).await
}

/// Writes the owner's plan line `what` on Call `id`, audits it as `action` and answers the
/// Call once it is durable.
async fn owner_line(
    state: &AppState,
    s: &Session,
    id: u64,
    what: TimelineEvent,
    action: &str,
    detail: String,
) -> ApiResult<Json<CallView>> {
    let call = state
        .calls
        .triage
        .owner_line(id, &s.user, what, jiff::Timestamp::now())
        .map_err(|e| call_error(state, id, e))?;
    audit(
        state,
        s,
        action,
        Some(id),
        call.subscriber.as_deref(),
        detail,
    )?;
    durable(state, call).await
}
