//! The review list: Calls closed without a dispatch and without an emergency service
//! (`triage::closing` marks them, the store keeps them with the closing), worked through by
//! supervisors. A review is accepted (the closing stands) or reopened (the Call comes back to
//! the queue at the head of its level with a `Reopened` line naming the supervisor and the
//! reason), once, audited (`call.review_accept`, `call.review_reopen`) and durable before the
//! answer. The list shows what is pending and the share of the window's closings reviewed.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{Session, audit, queue_audit};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::Role;
use crate::model::review::{MAX_NOTE_CHARS, Review, ReviewDecision, ReviewVerdict};
use crate::store::Decided;

/// The window of the share reviewed, in days, unless the query says otherwise.
pub const DEFAULT_WINDOW_DAYS: u32 = 7;

/// The longest window the query may ask for, in days.
pub const MAX_WINDOW_DAYS: u32 = 90;

/// A review as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    /// The review.
    #[serde(flatten)]
    pub review: Review,
    /// The subscriber's name, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_name: Option<String>,
}

/// `GET /api/reviews`: what waits, and how much of the window was reviewed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewList {
    /// Reviews not decided yet, oldest Call first.
    pub pending: Vec<ReviewView>,
    /// The window of the figures, in days.
    pub window_days: u32,
    /// Closings for review in the window.
    pub closed_for_review: usize,
    /// Of them, decided (accepted or reopened).
    pub reviewed: usize,
    /// Of them, accepted.
    pub accepted: usize,
    /// Of them, reopened.
    pub reopened: usize,
    /// The share reviewed, in percent (absent when nothing was closed for review).
    pub reviewed_pct: Option<f64>,
}

/// `GET /api/reviews` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewsQuery {
    /// The window of the share reviewed, in days (1 to 90; 7 by default).
    pub days: Option<u32>,
}

/// `POST /api/reviews/{call}/accept|reopen` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Why: optional to accept, required to reopen (at most 2000 characters).
    #[serde(default)]
    pub note: String,
}

fn view(state: &AppState, review: Review) -> ReviewView {
    let subscriber_name = review
        .subscriber
        .as_deref()
        .and_then(|id| state.store.subscriber(id).ok().flatten())
        .map(|s| s.name);
    ReviewView {
        review,
        subscriber_name,
    }
}

/// The reviews waiting, and the share of the window's closings for review that was reviewed.
#[utoipa::path(get, path = "/api/reviews", tag = "reviews", params(ReviewsQuery),
    responses((status = 200, body = ReviewList), (status = 400, body = ErrorBody),
        (status = 403, description = "Supervisors only", body = ErrorBody)))]
pub async fn list_reviews(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<ReviewsQuery>, QueryRejection>,
) -> ApiResult<Json<ReviewList>> {
    s.require(Role::Supervisor, &state)?;
    let Query(q) = q?;
    let days = q.days.unwrap_or(DEFAULT_WINDOW_DAYS);
    if !(1..=MAX_WINDOW_DAYS).contains(&days) {
        return Err(ApiError::bad_request(format!(
            "days must be 1 to {MAX_WINDOW_DAYS}"
        )));
    }
    let since = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(i64::from(days) * 24))
        .unwrap_or(jiff::Timestamp::MIN);
    let store = state.store.clone();
    let (pending, window) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((
            store.pending_reviews()?,
            store.reviews_closed_since(since)?,
        ))
    })
    .await
    .map_err(|e| ApiError::internal("reading the reviews failed", e))??;
    let verdicts = |v: ReviewVerdict| {
        window
            .iter()
            .filter(|r| r.decision.as_ref().is_some_and(|d| d.verdict == v))
            .count()
    };
    let (accepted, reopened) = (
        verdicts(ReviewVerdict::Accepted),
        verdicts(ReviewVerdict::Reopened),
    );
    let reviewed = accepted + reopened;
    let pending = pending.into_iter().map(|r| view(&state, r)).collect();
    Ok(Json(ReviewList {
        pending,
        window_days: days,
        closed_for_review: window.len(),
        reviewed,
        accepted,
        reopened,
        reviewed_pct: (!window.is_empty()).then(|| 100.0 * reviewed as f64 / window.len() as f64),
    }))
}

/// Records the decision once; 404 without a review, 409 when already decided.
async fn decide(
    state: &AppState,
    s: &Session,
    call: u64,
    verdict: ReviewVerdict,
    note: String,
) -> ApiResult<Review> {
    let decision = ReviewDecision {
        verdict,
        by: s.user.clone(),
        at: jiff::Timestamp::now(),
        note,
    };
    let store = state.store.clone();
    let decided = tokio::task::spawn_blocking(move || store.decide_review(call, decision))
        .await
        .map_err(|e| ApiError::internal("deciding the review failed", e))??;
    match decided {
        Decided::Made(r) => Ok(r),
        Decided::NoReview => Err(ApiError::not_found("review")),
        Decided::Already(r) => {
            let (verdict, by) = r
                .decision
                .map(|d| (Some(d.verdict), d.by))
                .unwrap_or((None, String::new()));
            let (words, code) = match verdict {
                Some(ReviewVerdict::Reopened) => ("reopened", "review.already_reopened"),
                Some(ReviewVerdict::Accepted) => ("accepted", "review.already_accepted"),
                None => ("decided", "review.already_accepted"),
            };
            Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("this closing was already reviewed: {words} by {by}"),
            )
            .coded(code)
            .param("by", by))
        }
    }
}

/// The note, trimmed and bounded (422 when required and empty, or too long).
fn note_of(req: DecisionRequest, required: bool) -> ApiResult<String> {
    let note = req.note.trim().to_owned();
    if required && note.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "write why the call is reopened",
        )
        .coded("review.reason_missing"));
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the note must be at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    Ok(note)
}

/// The closing stands.
#[utoipa::path(post, path = "/api/reviews/{call}/accept", tag = "reviews",
    params(("call" = u64, Path, description = "Call id")), request_body = DecisionRequest,
    responses((status = 200, body = ReviewView), (status = 400, body = ErrorBody),
        (status = 403, description = "Supervisors only", body = ErrorBody),
        (status = 404, description = "The Call has no review", body = ErrorBody),
        (status = 409, description = "Already reviewed", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn accept(
    State(state): State<AppState>,
    s: Session,
    Path(call): Path<u64>,
    body: Result<Json<DecisionRequest>, JsonRejection>,
) -> ApiResult<Json<ReviewView>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let note = note_of(req, false)?;
    let review = decide(&state, &s, call, ReviewVerdict::Accepted, note.clone()).await?;
    audit(
        &state,
        &s,
        "call.review_accept",
        Some(call),
        review.subscriber.as_deref(),
        note,
    )?;
    Ok(Json(view(&state, review)))
}

/// The Call comes back to the queue (at the head of its level), with a `Reopened` line
/// naming the supervisor and the reason.
#[utoipa::path(post, path = "/api/reviews/{call}/reopen", tag = "reviews",
    params(("call" = u64, Path, description = "Call id")), request_body = DecisionRequest,
    responses((status = 200, body = ReviewView), (status = 400, body = ErrorBody),
        (status = 403, description = "Supervisors only", body = ErrorBody),
        (status = 404, description = "The Call has no review", body = ErrorBody),
        (status = 409, description = "Already reviewed", body = ErrorBody),
        (status = 422, description = "No reason", body = ErrorBody)))]
pub async fn reopen(
    State(state): State<AppState>,
    s: Session,
    Path(call): Path<u64>,
    body: Result<Json<DecisionRequest>, JsonRejection>,
) -> ApiResult<Json<ReviewView>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let note = note_of(req, true)?;
    // Decided first, once: two supervisors pressing "reopen" bring the Call back once.
    let review = decide(&state, &s, call, ReviewVerdict::Reopened, note.clone()).await?;
    let calls = state.calls.clone();
    let (user, reason) = (s.user.clone(), format!("on review: {note}"));
    let reopened = tokio::task::spawn_blocking(move || {
        calls.reopen_by(call, Some(&user), &reason, jiff::Timestamp::now())
    })
    .await
    .map_err(|e| ApiError::internal("reopening the call failed", e))?
    .map_err(|e| ApiError::internal("reopening the call failed", e))?;
    if reopened.is_none() {
        // Open again already (its subscriber's new alarm cannot reopen it, so only a
        // dispatch's end could have): it is in front of the operators either way.
        tracing::info!(call, "reviewed call was open already");
    }
    queue_audit(
        &state,
        &s,
        "call.review_reopen",
        Some(call),
        review.subscriber.as_deref(),
        note,
    )?;
    state
        .calls
        .flush()
        .await
        .map_err(|e| ApiError::internal("saving the change failed", e))?;
    Ok(Json(view(&state, review)))
}
