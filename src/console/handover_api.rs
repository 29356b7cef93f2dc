//! The end of a shift: what becomes of the Calls an operator owns when they log out, when
//! their session ends, or when a supervisor moves them.
//!
//! - `POST /api/logout` (and `DELETE /api/session`) refuses (409, the owned Calls in `calls`) to end
//!   the last session of an operator who owns Calls, unless it says what to do with them:
//!   release them all to the queue, or hand them to an operator who is logged in, with a
//!   note that goes on each Call's timeline (`call.handover` in the audit).
//! - A supervisor takes over (to themselves) or reassigns (to a logged-in operator) any
//!   owned Call: `POST /api/calls/{id}/reassign` (`call.take_over`, `call.reassign`).
//! - [`sweep`], run by the server every few seconds, and a user's disabling or removal put
//!   the Calls of an owner who can no longer act back in the queue, at the head of their
//!   level (they keep their age), with a `Returned` line and a `call.return` audit entry by
//!   `vakt`.
//!
//! "Logged in" means having a session that has not expired: [`Store::session_users`].

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::{COOKIE, CallView, Session, call_error, durable, queue_audit, session_token};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::calls::{CallSummary, Calls};
use crate::model::{AuditEntry, Call, CallState, ReturnReason, Role};
use crate::store::{Store, StoreError};
use crate::triage::MAX_TEXT_CHARS;

/// What to do with the Calls one owns at logout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OwnedCalls {
    /// Put them all back in the queue (they keep their age).
    Release,
    /// Give them all to the operator named in `to`, with the `note`.
    HandOver,
}

/// `POST /api/logout` body (may be empty: `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// What to do with the Calls one owns; needed when one owns any.
    #[serde(default)]
    pub calls: Option<OwnedCalls>,
    /// With `hand_over`: the operator who takes them (logged in).
    #[serde(default)]
    pub to: Option<String>,
    /// With `hand_over`: what they need to know (1 to 4000 characters), on each Call's
    /// timeline.
    #[serde(default)]
    pub note: Option<String>,
}

/// An operator who is logged in.
#[derive(Debug, Serialize, ToSchema)]
pub struct OnlineOperator {
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Open Calls they own.
    pub owned: usize,
}

/// `POST /api/calls/{id}/reassign` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReassignRequest {
    /// Who takes the Call: oneself (take over) or a logged-in operator.
    pub to: String,
    /// Why, for the timeline (at most 4000 characters).
    #[serde(default)]
    pub note: String,
}

fn conflict(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, why)
}

/// The users logged in at `now`, with their number of sessions.
fn online(
    state: &AppState,
    now: Timestamp,
) -> ApiResult<std::collections::BTreeMap<String, usize>> {
    state
        .store
        .session_users(now)
        .map_err(|e| ApiError::internal("reading the sessions failed", e))
}

/// Checks that `to` may receive Calls now: an enabled user with a session (409 otherwise,
/// with the reason).
fn check_receiver(state: &AppState, to: &str, now: Timestamp) -> ApiResult<()> {
    let user = state
        .store
        .user(to)
        .map_err(|e| ApiError::internal("reading the user failed", e))?;
    match user {
        None => Err(conflict(format!("there is no user {to}"))
            .coded("handover.no_user")
            .param("user", to)),
        Some(u) if u.disabled => Err(conflict(format!("{to} is disabled"))
            .coded("handover.disabled")
            .param("user", to)),
        Some(_) if !online(state, now)?.contains_key(to) => Err(conflict(format!(
            "{to} is not logged in: hand over only to an operator who is"
        ))
        .coded("handover.not_logged_in")
        .param("user", to)),
        Some(_) => Ok(()),
    }
}

/// The summaries of the open Calls `user` owns, most urgent first.
fn owned_summaries(state: &AppState, user: &str) -> Vec<CallSummary> {
    state
        .open_summaries()
        .into_iter()
        .filter(|c| c.state == CallState::Claimed && c.owner.as_deref() == Some(user))
        .collect()
}

/// Log out, saying what becomes of the Calls one owns.
#[utoipa::path(post, path = "/api/logout", tag = "session", request_body = LogoutRequest,
    responses((status = 204, description = "Logged out; owned Calls released or handed over"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "One owns Calls and said nothing of them (the body lists \
            them in `calls`), or the receiver is not logged in or disabled", body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    s: Session,
    headers: HeaderMap,
    jar: CookieJar,
    body: Result<Json<LogoutRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(req) = body?;
    end_session(state, s, headers, jar, req).await
}

/// Log out: ends the session (and its live feed) and clears the cookie. Refused (409, with
/// the list) while this is the user's last session and they own Calls: `POST /api/logout`
/// says what to do with them.
#[utoipa::path(delete, path = "/api/session", tag = "session",
    responses((status = 204, description = "Logged out"), (status = 401, body = ErrorBody),
        (status = 409, description = "One owns Calls (listed in `calls`)", body = ErrorBody)))]
pub async fn delete_session(
    State(state): State<AppState>,
    s: Session,
    headers: HeaderMap,
    jar: CookieJar,
) -> ApiResult<Response> {
    end_session(state, s, headers, jar, LogoutRequest::default()).await
}

/// Ends the request's session: first the owned Calls as `req` says (refused with the list
/// when it says nothing and this is the user's last session), then the session.
pub(crate) async fn end_session(
    state: AppState,
    s: Session,
    headers: HeaderMap,
    jar: CookieJar,
    req: LogoutRequest,
) -> ApiResult<Response> {
    let now = Timestamp::now();
    let owned = owned_summaries(&state, &s.user);
    match req.calls {
        None => {
            let sessions = online(&state, now)?.get(&s.user).copied().unwrap_or(0);
            // Logged in elsewhere too: the Calls stay theirs there.
            if !owned.is_empty() && sessions <= 1 {
                let n = owned.len();
                let error = format!(
                    "you own {n} call{}: release {} to the queue or hand {} over to an \
                     operator who is logged in",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "it" } else { "them" },
                    if n == 1 { "it" } else { "them" },
                );
                return Err(conflict(error)
                    .coded("handover.owned_at_logout")
                    .param("n", n)
                    .with_calls(owned));
            }
        }
        Some(OwnedCalls::Release) => {
            for c in &owned {
                match state.calls.triage.release(c.id, &s.user, now) {
                    Ok(call) => queue_audit(
                        &state,
                        &s,
                        "call.release",
                        Some(c.id),
                        call.subscriber.as_deref(),
                        "at logout".into(),
                    )?,
                    // Moved meanwhile (a supervisor took it, it closed): no longer theirs.
                    Err(e) => tracing::debug!(call = c.id, error = %e, "not released at logout"),
                }
            }
        }
        Some(OwnedCalls::HandOver) => {
            let to = req.to.as_deref().map(str::trim).unwrap_or_default();
            if to.is_empty() {
                return Err(ApiError::bad_request(
                    "name the operator who takes the calls",
                ));
            }
            if to == s.user {
                return Err(ApiError::bad_request(
                    "hand the calls over to another operator",
                ));
            }
            let note = req.note.as_deref().map(str::trim).unwrap_or_default();
            let chars = note.chars().count();
            if chars == 0 || chars > MAX_TEXT_CHARS {
                return Err(ApiError::bad_request(format!(
                    "a handover note must be 1 to {MAX_TEXT_CHARS} characters"
                )));
            }
            check_receiver(&state, to, now)?;
            for c in &owned {
                match state.calls.triage.hand_over(c.id, &s.user, to, note, now) {
                    Ok(call) => queue_audit(
                        &state,
                        &s,
                        "call.handover",
                        Some(c.id),
                        call.subscriber.as_deref(),
                        format!("from {} to {to} at logout", s.user),
                    )?,
                    Err(e) => tracing::debug!(call = c.id, error = %e, "not handed over"),
                }
            }
        }
    }
    if let Some(token) = session_token(&headers, &state)? {
        state
            .store
            .delete_session(&crate::store::token_hash(&token))
            .map_err(|e| ApiError::internal("ending the session failed", e))?;
        state.sessions_changed();
    }
    // With the Calls released or handed over: one sync.
    queue_audit(&state, &s, "session.logout", None, None, String::new())?;
    state
        .calls
        .flush()
        .await
        .map_err(|e| ApiError::internal("saving the change failed", e))?;
    let gone = Cookie::build((COOKIE, "")).path("/").build();
    Ok((StatusCode::NO_CONTENT, jar.remove(gone)).into_response())
}

/// The operators logged in now (every role takes Calls), with how many Calls each owns: whom
/// one can hand Calls to.
#[utoipa::path(get, path = "/api/operators/online", tag = "session",
    responses((status = 200, body = [OnlineOperator]), (status = 401, body = ErrorBody)))]
pub async fn operators_online(
    State(state): State<AppState>,
    s: Session,
) -> ApiResult<Json<Vec<OnlineOperator>>> {
    s.require(Role::Operator, &state)?;
    let owners = state.calls.triage.owners();
    let mut out = Vec::new();
    for name in online(&state, Timestamp::now())?.into_keys() {
        let user = state
            .store
            .user(&name)
            .map_err(|e| ApiError::internal("reading the user failed", e))?;
        if let Some(u) = user.filter(|u| !u.disabled) {
            out.push(OnlineOperator {
                owned: owners.get(&u.name).copied().unwrap_or(0),
                username: u.name,
                role: u.role,
            });
        }
    }
    Ok(Json(out))
}

/// A supervisor takes over an owned Call (`to` = themselves) or gives it to a logged-in
/// operator.
#[utoipa::path(post, path = "/api/calls/{id}/reassign", tag = "calls",
    params(("id" = u64, Path, description = "Call id")), request_body = ReassignRequest,
    responses((status = 200, body = CallView), (status = 400, body = ErrorBody),
        (status = 403, description = "Only supervisors", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Nobody owns it, or the receiver is not logged in or \
            disabled", body = ErrorBody),
        (status = 410, description = "The Call is closed", body = ErrorBody)))]
pub async fn reassign(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<ReassignRequest>, JsonRejection>,
) -> ApiResult<Json<CallView>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let now = Timestamp::now();
    let to = req.to.trim();
    if to.is_empty() {
        return Err(ApiError::bad_request("name who takes the call"));
    }
    let take_over = to == s.user;
    if !take_over {
        check_receiver(&state, to, now)?;
    }
    let Some(current) = state.calls.triage.get(id) else {
        return Err(call_error(&state, id, crate::triage::CallError::NotFound));
    };
    let Some(before) = current
        .owner
        .filter(|_| current.state == CallState::Claimed)
    else {
        return Err(
            conflict("nobody owns the call: it waits in the queue, take it from there")
                .coded("handover.not_owned"),
        );
    };
    let call = state
        .calls
        .triage
        .reassign(id, &s.user, to, &req.note, now)
        .map_err(|e| call_error(&state, id, e))?;
    let (action, detail) = if take_over {
        ("call.take_over", format!("from {before}"))
    } else {
        ("call.reassign", format!("from {before} to {to}"))
    };
    queue_audit(
        &state,
        &s,
        action,
        Some(id),
        call.subscriber.as_deref(),
        detail,
    )?;
    durable(&state, call).await
}

/// Puts every Call `owner` owns back in the queue (`reason`), each with an audit entry by
/// `vakt` (durable together, one sync). Returns the Calls put back; the caller makes their
/// changes durable ([`Calls::flush`]).
pub fn give_back_all(
    store: &Store,
    calls: &Calls,
    owner: &str,
    reason: ReturnReason,
    now: Timestamp,
) -> Result<Vec<Call>, StoreError> {
    store.together(|store| {
        let mut back = Vec::new();
        for c in calls.triage.owned_by(owner) {
            // Moved meanwhile (handed over, closed): not theirs any more.
            let Ok(call) = calls.triage.give_back(c.id, owner, reason, now) else {
                continue;
            };
            store.audit(AuditEntry {
                seq: 0,
                at: now,
                user: "vakt".into(),
                action: "call.return".into(),
                call: Some(call.id),
                subscriber: call.subscriber.clone(),
                detail: format!("owner {owner}: {}", reason.as_str()),
            })?;
            tracing::info!(
                call = call.id,
                owner,
                reason = reason.as_str(),
                "call back in the queue"
            );
            back.push(call);
        }
        Ok(back)
    })
}

/// The sweep: every owner of open Calls who is not logged in at `now` (no session valid then:
/// it expired, was ended, or the user was disabled or removed) has their Calls put back in
/// the queue. Returns the Calls put back. The caller makes them durable.
pub fn sweep(store: &Store, calls: &Calls, now: Timestamp) -> Result<Vec<Call>, StoreError> {
    let owners = calls.triage.owners();
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    let online = store.session_users(now)?;
    let mut back = Vec::new();
    for owner in owners.keys().filter(|o| !online.contains_key(*o)) {
        let reason = match store.user(owner)? {
            None => ReturnReason::Removed,
            Some(u) if u.disabled => ReturnReason::Disabled,
            Some(_) => ReturnReason::SessionEnded,
        };
        back.extend(give_back_all(store, calls, owner, reason, now)?);
    }
    Ok(back)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::TimelineEvent;
    use crate::store::{SessionRecord, UserChange, UserRecord};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn claimed(id: u64, owner: &str, opened: i64) -> Call {
        serde_json::from_value(serde_json::json!({
            "id": id, "priority": 1, "state": "claimed", "owner": owner,
            "opened_at": at(opened), "alarm_count": 1, "subscriber": format!("S-{id}"),
            "account": format!("{id}"), "kind": "Fall", "restored": false,
            "answered_at": at(opened + 5), "closed_at": null, "outcome": null,
            "timeline": []
        }))
        .unwrap()
    }

    fn waiting(id: u64, opened: i64) -> Call {
        let mut c = claimed(id, "", opened);
        (c.state, c.owner, c.answered_at) = (CallState::Queued, None, None);
        c
    }

    fn user(store: &Store, name: &str) {
        store
            .put_user(&UserRecord {
                name: name.into(),
                role: Role::Operator,
                password_hash: String::new(),
                created_at: at(0),
                disabled: false,
                language: None,
                tenant: None,
            })
            .unwrap();
    }

    fn session(store: &Store, key: u8, name: &str, expires: i64) {
        store
            .put_session(
                &[key; 32],
                &SessionRecord {
                    user: name.into(),
                    role: Role::Operator,
                    created_at: at(0),
                    expires_at: at(expires),
                },
            )
            .unwrap();
    }

    #[test]
    fn the_sweep_returns_the_calls_of_owners_no_longer_logged_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for u in ["ola", "asa", "bo", "eva"] {
            user(&store, u);
        }
        // ola's session ends at 1000; åsa has one to 5000; bo is disabled; eva removed.
        session(&store, 1, "ola", 1_000);
        session(&store, 2, "asa", 5_000);
        session(&store, 3, "bo", 5_000);
        store
            .save_calls(
                &[
                    claimed(1, "ola", 0),
                    claimed(2, "ola", 10),
                    claimed(3, "asa", 20),
                    claimed(4, "bo", 30),
                    claimed(5, "eva", 40),
                    waiting(6, -100),
                ],
                None,
            )
            .unwrap();
        store.change_user("bo", UserChange::Disable).unwrap();
        store.change_user("eva", UserChange::Remove).unwrap();
        let calls = Arc::new(
            Calls::start(
                store.clone(),
                crate::triage::TriageOptions::default(),
                crate::telemetry::CallMetrics::new(),
                at(100),
            )
            .unwrap(),
        );

        // Before ola's session ends: only the disabled and the removed owners' Calls.
        let back = sweep(&store, &calls, at(999)).unwrap();
        let mut ids: Vec<u64> = back.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [4, 5]);
        let reason = |id: u64| match calls.triage.get(id).unwrap().timeline.last().unwrap().what {
            TimelineEvent::Returned { reason, .. } => reason,
            ref other => panic!("{other:?}"),
        };
        assert_eq!(reason(4), ReturnReason::Disabled);
        assert_eq!(reason(5), ReturnReason::Removed);
        assert_eq!(calls.triage.owned_by("ola").len(), 2);

        // At its end: ola's two, dated `now`, by nobody; åsa keeps hers.
        let back = sweep(&store, &calls, at(1_000)).unwrap();
        let mut ids: Vec<u64> = back.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2]);
        let c = calls.triage.get(1).unwrap();
        assert_eq!((c.state, c.owner.as_deref()), (CallState::Queued, None));
        let last = c.timeline.last().unwrap();
        assert_eq!((last.at, last.user.as_deref()), (at(1_000), None));
        assert_eq!(
            last.what,
            TimelineEvent::Returned {
                owner: "ola".into(),
                reason: ReturnReason::SessionEnded
            }
        );
        assert_eq!(calls.triage.owned_by("asa").len(), 1);
        assert!(sweep(&store, &calls, at(1_001)).unwrap().is_empty(), "once");

        // Each one audited by vakt.
        let audit: Vec<(String, Option<u64>, String)> = store
            .audit_latest(10)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "call.return")
            .map(|e| (e.user, e.call, e.detail))
            .collect();
        assert_eq!(audit.len(), 4, "{audit:?}");
        assert!(audit.iter().all(|(u, _, _)| u == "vakt"));
        assert!(
            audit.contains(&("vakt".into(), Some(1), "owner ola: session_ended".into())),
            "{audit:?}"
        );

        // Waiting at the head of their level in the order they came back, before an older
        // Call never taken.
        let next: Vec<u64> =
            std::iter::from_fn(|| calls.triage.next("asa", at(1_100)).map(|c| c.id)).collect();
        assert_eq!(next, [4, 5, 1, 2, 6]);
    }
}
