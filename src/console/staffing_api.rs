//! The staffing floor and overload at work: [`watch`] assesses every second who is on duty and
//! how long Calls wait ([`super::staffing`]), keeps the metrics, logs each warning once when it
//! starts and once when it ends, and hands the figures to the live feeds (every console shows
//! the warning, and it clears by itself). `GET /api/staffing` gives the figures, and to a
//! supervisor who is on duty, who is logged in but away, and the staff list to call in.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use super::api::Session;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::staffing::{Assessment, Away, Person, Staffing, assess};
use super::state::AppState;
use crate::model::staff::StaffMember;
use crate::model::{CallState, Role};
use crate::store::StoreError;

/// How often the figures are assessed.
const EVERY: Duration = Duration::from_secs(1);

/// Assesses the staffing at `now`: the users logged in (enabled, with a session valid then),
/// what their consoles said, the Calls they own, and the Calls nobody has taken yet.
pub async fn assess_now(state: &AppState, now: Timestamp) -> Result<Assessment, StoreError> {
    let store = state.store.clone();
    let logged_in = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for name in store.session_users(now)?.into_keys() {
            if let Some(u) = store.user(&name)?.filter(|u| !u.disabled) {
                out.push((u.name, u.role));
            }
        }
        Ok::<_, StoreError>(out)
    })
    .await
    .map_err(|e| StoreError::Corrupt {
        tree: "sessions",
        detail: format!("staffing task failed: {e}"),
    })??;
    state
        .presence
        .keep_only(|u| logged_in.iter().any(|(n, _)| n == u));
    let owners = state.calls.triage.owners();
    let people: Vec<Person> = logged_in
        .into_iter()
        .map(|(user, role)| Person {
            seen: state.presence.of(&user),
            owns: owners.get(&user).copied().unwrap_or(0),
            user,
            role,
        })
        .collect();
    let waiting: Vec<Timestamp> = state
        .open_summaries()
        .into_iter()
        .filter(|c| c.state == CallState::Queued && c.answered_at.is_none())
        .map(|c| c.opened_at)
        .collect();
    Ok(assess(&people, &waiting, now, &state.staffing_opts))
}

/// When each warning began, to log its end once with how long it lasted.
#[derive(Debug, Default)]
struct Warnings {
    below_floor: Option<Timestamp>,
    overloaded: Option<Timestamp>,
}

fn lasted(since: Timestamp, now: Timestamp) -> i64 {
    now.as_second().saturating_sub(since.as_second())
}

impl Warnings {
    /// Logs the warnings that start or end with `a` at `now`.
    fn log(&mut self, a: &Assessment, now: Timestamp) {
        let f = &a.figures;
        match (self.below_floor, f.below_floor) {
            (None, true) => {
                self.below_floor = Some(now);
                tracing::warn!(
                    on_duty = f.on_duty,
                    min_operators = f.min_operators,
                    operators = ?a.on_duty,
                    "staffing below the floor: fewer operators on duty than the minimum"
                );
            }
            (Some(since), false) => {
                self.below_floor = None;
                tracing::info!(
                    on_duty = f.on_duty,
                    min_operators = f.min_operators,
                    lasted_secs = lasted(since, now),
                    "staffing back at the floor"
                );
            }
            _ => {}
        }
        match (self.overloaded, f.overloaded()) {
            (None, true) => {
                self.overloaded = Some(now);
                tracing::warn!(
                    waiting_over = f.waiting_over,
                    oldest_wait_secs = f.oldest_wait_secs,
                    limit_secs = f.queue_wait_warn_secs,
                    on_duty = f.on_duty,
                    "calls waiting longer than the limit: call in more operators"
                );
            }
            (Some(since), false) => {
                self.overloaded = None;
                tracing::info!(
                    lasted_secs = lasted(since, now),
                    "no call waits longer than the limit any more"
                );
            }
            _ => {}
        }
    }
}

/// Keeps the staffing figures until shutdown: every second an assessment, the metrics, the
/// warnings' start and end logged once, and the figures for the live feeds when they change.
pub async fn watch(state: AppState) {
    let metrics = crate::telemetry::StaffingMetrics::new();
    let mut warnings = Warnings::default();
    let mut failing = false;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.shutdown.cancelled() => break,
        }
        let now = Timestamp::now();
        let a = match assess_now(&state, now).await {
            Ok(a) => {
                if failing {
                    tracing::info!("staffing figures assessed again");
                    failing = false;
                }
                a
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "the staffing figures could not be assessed");
                    failing = true;
                }
                continue;
            }
        };
        let f = &a.figures;
        metrics.set(
            f.on_duty,
            f.below_floor,
            f.oldest_wait_secs.unwrap_or(0),
            f.waiting_over,
        );
        warnings.log(&a, now);
        state.staffing.send_if_modified(|cur| {
            if *cur == a.figures {
                false
            } else {
                *cur = a.figures.clone();
                true
            }
        });
    }
}

/// A logged-in user not counted on duty.
#[derive(Debug, Serialize, ToSchema)]
pub struct AwayUser {
    /// User name.
    pub username: String,
    /// Why: `no_console`, `idle` or `not_taking_calls`.
    pub why: Away,
}

/// `GET /api/staffing`: the figures; for a supervisor also the names and the staff to call in.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffingView {
    /// The figures every console shows.
    #[serde(flatten)]
    pub figures: Staffing,
    /// On duty now, by user name (supervisors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_duty_users: Option<Vec<String>>,
    /// Logged in but not counted, with why (supervisors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub away_users: Option<Vec<AwayUser>>,
    /// The directory's staff list, whom to call in (supervisors only; empty when none was
    /// imported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_in: Option<Vec<StaffMember>>,
}

/// The staffing floor and the queue's wait now; for a supervisor also who is on duty, who is
/// logged in but away, and the staff list with phone numbers to call more operators in.
#[utoipa::path(get, path = "/api/staffing", tag = "session",
    responses((status = 200, body = StaffingView), (status = 401, body = ErrorBody)))]
pub async fn staffing(State(state): State<AppState>, s: Session) -> ApiResult<Json<StaffingView>> {
    s.require(Role::Operator, &state)?;
    let a = assess_now(&state, Timestamp::now())
        .await
        .map_err(|e| ApiError::internal("assessing the staffing failed", e))?;
    if s.role < Role::Supervisor {
        return Ok(Json(StaffingView {
            figures: a.figures,
            on_duty_users: None,
            away_users: None,
            call_in: None,
        }));
    }
    let store = state.store.clone();
    let staff = tokio::task::spawn_blocking(move || store.staff())
        .await
        .map_err(|e| ApiError::internal("reading the staff list failed", e))?
        .map_err(|e| ApiError::internal("reading the staff list failed", e))?;
    Ok(Json(StaffingView {
        figures: a.figures,
        on_duty_users: Some(a.on_duty),
        away_users: Some(
            a.away
                .into_iter()
                .map(|(username, why)| AwayUser { username, why })
                .collect(),
        ),
        call_in: Some(staff),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn figures(below_floor: bool, waiting_over: usize) -> Assessment {
        Assessment {
            figures: Staffing {
                below_floor,
                waiting_over,
                ..Staffing::default()
            },
            ..Assessment::default()
        }
    }

    #[test]
    fn each_warning_starts_once_and_ends_once() {
        let mut w = Warnings::default();
        w.log(&figures(false, 0), at(0));
        assert_eq!((w.below_floor, w.overloaded), (None, None));
        w.log(&figures(true, 0), at(1));
        w.log(&figures(true, 2), at(2));
        // Still going: the start stays the first one.
        w.log(&figures(true, 3), at(3));
        assert_eq!((w.below_floor, w.overloaded), (Some(at(1)), Some(at(2))));
        w.log(&figures(false, 3), at(4));
        assert_eq!((w.below_floor, w.overloaded), (None, Some(at(2))));
        w.log(&figures(false, 0), at(5));
        assert_eq!((w.below_floor, w.overloaded), (None, None));
        assert_eq!(lasted(at(2), at(5)), 3);
    }
}
