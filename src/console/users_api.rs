//! Console users, for administrators: the list, disabling and enabling, another role, and
//! removal (`vakt users add` makes users and sets passwords; the password never travels
//! through this API). Each change ends the user's sessions, and with them its live feeds, at
//! once (enabling excepted: a disabled user has none); it is audited and durable before the
//! answer. The centre always keeps an enabled administrator: a change that would leave none
//! is refused (409).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::Session;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::Role;
use crate::store::{UserChange, UserChanged, UserRecord};

/// A console user as the list shows it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// User name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// The provider's id or the municipality's name of a `provider` or `municipality` user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A disabled user cannot log in.
    pub disabled: bool,
    /// When the user was made.
    #[schema(value_type = String)]
    pub created_at: jiff::Timestamp,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> UserView {
        UserView {
            name: u.name.clone(),
            role: u.role,
            tenant: u.tenant.clone(),
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// Every console user, by name.
#[utoipa::path(get, path = "/api/users", tag = "users",
    responses((status = 200, body = Vec<UserView>), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    s: Session,
) -> ApiResult<Json<Vec<UserView>>> {
    s.require(Role::Admin, &state)?;
    let users = state
        .store
        .users()
        .map_err(|e| ApiError::internal("reading the users failed", e))?;
    Ok(Json(users.iter().map(UserView::from).collect()))
}

/// Makes the change, audits it, tells the live feeds; the user after it (`None`: removed).
async fn change(
    state: &AppState,
    s: &Session,
    name: &str,
    what: UserChange,
) -> ApiResult<Option<UserView>> {
    s.require(Role::Admin, state)?;
    let store = state.store.clone();
    let who = name.to_owned();
    let r = tokio::task::spawn_blocking(move || store.change_user(&who, what))
        .await
        .map_err(|e| ApiError::internal("changing the user failed", e))?
        .map_err(|e| ApiError::internal("changing the user failed", e))?;
    let (before, after) = match r {
        UserChanged::Done { before, after } => (before, after),
        UserChanged::NoSuchUser => return Err(ApiError::not_found("user")),
        UserChanged::LastAdmin => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{name} is the last enabled administrator: make another one first"),
            ));
        }
    };
    // Its sessions are gone from the store: its live feeds end now.
    state.sessions_changed();
    // The Calls a disabled or removed user owned go back to the queue now.
    let reason = match what {
        UserChange::Disable => Some(crate::model::ReturnReason::Disabled),
        UserChange::Remove => Some(crate::model::ReturnReason::Removed),
        UserChange::Enable | UserChange::Role(_) => None,
    };
    if let Some(reason) = reason {
        let (store, calls, who) = (state.store.clone(), state.calls.clone(), name.to_owned());
        let now = jiff::Timestamp::now();
        tokio::task::spawn_blocking(move || {
            super::handover_api::give_back_all(&store, &calls, &who, reason, now)
        })
        .await
        .map_err(|e| ApiError::internal("returning the user's calls failed", e))?
        .map_err(|e| ApiError::internal("returning the user's calls failed", e))?;
    }
    let (action, detail) = match what {
        UserChange::Disable => ("user.disable", format!("user {name}")),
        UserChange::Enable => ("user.enable", format!("user {name}")),
        UserChange::Role(r) => (
            "user.role",
            format!(
                "user {name}, role {} -> {}",
                before.role.as_str(),
                r.as_str()
            ),
        ),
        UserChange::Remove => (
            "user.remove",
            format!("user {name}, role {}", before.role.as_str()),
        ),
    };
    // With the Calls given back: one sync of the Call writer.
    super::api::queue_audit(state, s, action, None, None, detail)?;
    state
        .calls
        .flush()
        .await
        .map_err(|e| ApiError::internal("saving the change failed", e))?;
    tracing::info!(user = %s.user, target = %name, action, "console user changed");
    Ok(after.as_ref().map(UserView::from))
}

fn changed(v: Option<UserView>) -> ApiResult<Json<UserView>> {
    v.map(Json)
        .ok_or_else(|| ApiError::internal("changing the user failed", "the user is gone"))
}

/// Disable a user: it cannot log in, and its sessions and live feeds end at once.
#[utoipa::path(post, path = "/api/users/{name}/disable", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last enabled administrator", body = ErrorBody)))]
pub async fn disable_user(
    State(state): State<AppState>,
    s: Session,
    Path(name): Path<String>,
) -> ApiResult<Json<UserView>> {
    changed(change(&state, &s, &name, UserChange::Disable).await?)
}

/// Enable a disabled user: it can log in again.
#[utoipa::path(post, path = "/api/users/{name}/enable", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn enable_user(
    State(state): State<AppState>,
    s: Session,
    Path(name): Path<String>,
) -> ApiResult<Json<UserView>> {
    changed(change(&state, &s, &name, UserChange::Enable).await?)
}

/// `POST /api/users/{name}/role` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// `operator`, `supervisor` or `admin` (a provider's or a municipality's user is made
    /// with its tenant: `vakt users add --role ... --tenant ...`).
    pub role: Role,
}

/// Give a user another role; its sessions (which carry the old role) and live feeds end.
#[utoipa::path(post, path = "/api/users/{name}/role", tag = "users",
    params(("name" = String, Path, description = "User name")), request_body = RoleRequest,
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last enabled administrator", body = ErrorBody)))]
pub async fn set_role(
    State(state): State<AppState>,
    s: Session,
    Path(name): Path<String>,
    body: Result<Json<RoleRequest>, JsonRejection>,
) -> ApiResult<Json<UserView>> {
    s.require(Role::Admin, &state)?;
    let Json(req) = body?;
    if req.role.is_tenant() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a provider's or a municipality's user needs its tenant: make it with `vakt users \
             add --role ... --tenant ...`",
        ));
    }
    changed(change(&state, &s, &name, UserChange::Role(req.role)).await?)
}

/// Remove a user; its sessions and live feeds end. The audit log keeps its name.
#[utoipa::path(delete, path = "/api/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 204, description = "Removed"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last enabled administrator", body = ErrorBody)))]
pub async fn remove_user(
    State(state): State<AppState>,
    s: Session,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    change(&state, &s, &name, UserChange::Remove).await?;
    Ok(StatusCode::NO_CONTENT)
}
