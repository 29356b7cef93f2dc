//! The HTTP API behind the console, the same one integrations use. Every handler carries a
//! `#[utoipa::path]` description, from which `/api/openapi.json` is generated.
//!
//! Every route but login and the OpenAPI document needs a session (cookie `vakt_session`),
//! and checks the role it needs: 401 without a session, 403 with too low a role. Errors are
//! JSON `{"error": "..."}`. Operator actions on Calls and every opening of a subscriber's
//! card are written to the audit log, and are durable before the answer.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::guard::ClientIp;
use super::state::AppState;
use crate::calls::{CallSummary, Stats};
use crate::model::{AuditEntry, Call, Outcome, PhoneParty, Role, Subscriber, TimelineEvent};
use crate::store::SessionRecord;
use crate::triage::CallError;
use crate::triage::closing::Closing;

/// Name of the session cookie.
pub const COOKIE: &str = "vakt_session";

/// Most rows one list request returns.
pub const MAX_LIST: usize = 1000;

/// The logged-in user of a request (from the session cookie).
#[derive(Clone, Debug)]
pub struct Session {
    /// User name.
    pub user: String,
    /// The user's current role.
    pub role: Role,
    /// The tenant of a `provider` or `municipality` user.
    pub tenant: Option<String>,
    /// When the session ends.
    pub expires_at: jiff::Timestamp,
}

impl Session {
    /// Whose people the user sees; a tenant's role without a tenant sees no one (refused,
    /// 403).
    pub fn scope(&self, state: &AppState) -> ApiResult<crate::model::Scope> {
        crate::model::Scope::of(self.role, self.tenant.as_deref()).ok_or_else(|| {
            state.metrics.rejected("forbidden");
            ApiError::new(
                StatusCode::FORBIDDEN,
                "this user has no municipality or provider to see",
            )
        })
    }

    /// Refuses (403) unless the user has at least `role`, or is a tenant's staff (who then
    /// see only their scope: the handler filters by [`Session::scope`]).
    pub fn require_or_tenant(&self, role: Role, state: &AppState) -> ApiResult<()> {
        if self.role.is_tenant() {
            self.scope(state).map(|_| ())
        } else {
            self.require(role, state)
        }
    }

    /// Refuses (403) unless the user has at least `role`.
    pub fn require(&self, role: Role, state: &AppState) -> ApiResult<()> {
        if self.role >= role {
            Ok(())
        } else {
            state.metrics.rejected("forbidden");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this needs the {} role", role.as_str()),
            )
            .coded("role_needed")
            .param("role", role.as_str()))
        }
    }
}

/// The session cookie's token of a request, if it has one. Every `Cookie` header line is
/// read: a request with two `vakt_session` cookies (another site or a stale path can set a
/// second one) is refused (401) rather than one of them picked.
pub fn session_token(headers: &HeaderMap, state: &AppState) -> ApiResult<Option<String>> {
    let mut found = None;
    for line in headers.get_all(header::COOKIE) {
        let Ok(line) = line.to_str() else { continue };
        for pair in line.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if name.trim() != COOKIE {
                continue;
            }
            if found.is_some() {
                state.metrics.rejected("ambiguous_session");
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "more than one session cookie: log in again",
                ));
            }
            found = Some(value.trim().trim_matches('"').to_owned());
        }
    }
    Ok(found)
}

/// The session stored under a token's hash, if it is valid now: not expired, its user
/// still there and not disabled.
pub fn session_by_hash(hash: &[u8; 32], state: &AppState) -> ApiResult<Session> {
    let no_session = || {
        state.metrics.rejected("no_session");
        ApiError::new(StatusCode::UNAUTHORIZED, "log in first").coded("session.login_first")
    };
    let rec = state
        .store
        .session(hash)
        .map_err(|e| ApiError::internal("reading the session failed", e))?;
    let Some(rec) = rec else {
        return Err(no_session());
    };
    if rec.expires_at <= jiff::Timestamp::now() {
        let _ = state.store.delete_session(hash);
        return Err(no_session());
    }
    // The role is read from the user each time, so a changed role, a disabled or a removed
    // user takes effect at once (those changes also end the user's sessions).
    let user = state
        .store
        .user(&rec.user)
        .map_err(|e| ApiError::internal("reading the user failed", e))?;
    match user {
        Some(u) if !u.disabled => Ok(Session {
            user: u.name,
            role: u.role,
            tenant: u.tenant,
            expires_at: rec.expires_at,
        }),
        _ => Err(no_session()),
    }
}

/// Finds the session of a request's cookie, if it is valid now.
pub fn session_of(headers: &HeaderMap, state: &AppState) -> ApiResult<Session> {
    match session_token(headers, state)? {
        Some(token) => session_by_hash(&crate::store::token_hash(&token), state),
        None => {
            state.metrics.rejected("no_session");
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "log in first")
                .coded("session.login_first"))
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Session> {
        session_of(&parts.headers, state)
    }
}

/// A CSV request body: refused (415) unless it is sent as `Content-Type: text/csv`. A page
/// of another site can post a form or `text/plain` without asking first; it cannot post
/// `text/csv` (a non-simple request, which the browser checks with this server first).
#[derive(Debug)]
pub struct CsvBody(pub String);

impl axum::extract::FromRequest<AppState> for CsvBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> ApiResult<CsvBody> {
        let csv = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv"));
        if !csv {
            state.metrics.rejected("media_type");
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the file as Content-Type: text/csv",
            ));
        }
        String::from_request(req, state)
            .await
            .map(CsvBody)
            .map_err(|e| ApiError::new(e.status(), e.body_text()))
    }
}

/// Writes an audit entry, durable when it returns; a failure to audit fails the request
/// (personal data must not be shown or changed without a trace).
pub(crate) fn audit(
    state: &AppState,
    s: &Session,
    action: &str,
    call: Option<u64>,
    subscriber: Option<&str>,
    detail: String,
) -> ApiResult<()> {
    state
        .store
        .audit(audit_entry(s, action, call, subscriber, detail))
        .map(|_| ())
        .map_err(|e| ApiError::internal("writing the audit log failed", e))
}

/// The audit entry of `s`'s action now.
pub(crate) fn audit_entry(
    s: &Session,
    action: &str,
    call: Option<u64>,
    subscriber: Option<&str>,
    detail: String,
) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: jiff::Timestamp::now(),
        user: s.user.clone(),
        action: action.to_owned(),
        call,
        subscriber: subscriber.map(str::to_owned),
        detail,
    }
}

/// Makes a change with `write` and audits it (`detail` made from what `write` answered) in
/// one durable store operation, one sync, on a blocking thread; the change's answer once
/// both are durable.
pub(crate) async fn with_audit<T: Send + 'static>(
    state: &AppState,
    s: &Session,
    action: &'static str,
    subscriber: Option<String>,
    write: impl FnOnce(&crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    detail: impl FnOnce(&T) -> String + Send + 'static,
) -> ApiResult<T> {
    let store = state.store.clone();
    let mut entry = audit_entry(s, action, None, subscriber.as_deref(), String::new());
    tokio::task::spawn_blocking(move || {
        store.together(|st| {
            let t = write(st)?;
            entry.detail = detail(&t);
            st.audit(entry)?;
            Ok(t)
        })
    })
    .await
    .map_err(|e| ApiError::internal("saving failed", e))?
    .map_err(|e| ApiError::internal("saving failed", e))
}

/// Hands an audit entry to the Call writer, which writes it with the Call changes made
/// before it, in one sync: for an action on Calls whose handler then waits for
/// [`Calls::flush`](crate::calls::Calls::flush) (or [`durable`]) before answering, which
/// fails the request if the entry could not be written.
pub(crate) fn queue_audit(
    state: &AppState,
    s: &Session,
    action: &str,
    call: Option<u64>,
    subscriber: Option<&str>,
    detail: String,
) -> ApiResult<()> {
    let entry = audit_entry(s, action, call, subscriber, detail);
    // Taking a Call is working Calls (a supervisor counts on duty: `staffing`).
    if matches!(action, "call.claim" | "call.take_over") {
        state.presence.took_call(&s.user, entry.at);
    }
    state
        .calls
        .audit(entry)
        .map_err(|e| ApiError::internal("writing the audit log failed", e))
}

// ---- session ----

/// `POST /api/session` body.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither field: a user name field often holds a password typed one field early.
        f.debug_struct("LoginRequest").finish_non_exhaustive()
    }
}

/// Who is logged in.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// User name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// How the console rings for waiting Calls.
    pub alerting: super::Alerting,
    /// When the session ends (RFC 3339, UTC): the console warns before it does.
    #[schema(value_type = String)]
    pub expires_at: jiff::Timestamp,
    /// The language the console is in for this user: the user's own choice, else the
    /// centre's.
    pub language: crate::model::ConsoleLanguage,
    /// The centre's language (`[http] language`): a person who speaks another needs an
    /// interpreter.
    pub centre_language: crate::model::ConsoleLanguage,
    /// The centre's time zone (IANA name, `[http] time_zone`): the console shows every time
    /// in it.
    pub time_zone: String,
}

impl WhoAmI {
    /// Who `name` is, with the language it chose (`None`: the centre's), in a session
    /// that ends at `expires_at`.
    pub fn of(
        state: &AppState,
        name: String,
        role: Role,
        language: Option<crate::model::ConsoleLanguage>,
        expires_at: jiff::Timestamp,
    ) -> WhoAmI {
        WhoAmI {
            username: name,
            role,
            alerting: state.alerting,
            expires_at,
            language: language.unwrap_or(state.language),
            centre_language: state.language,
            time_zone: state.tz.iana_name().unwrap_or("UTC").to_owned(),
        }
    }
}

/// Log in: sets the session cookie. The right password of an active user always logs in;
/// after too many failures of a user name or a client address, wrong attempts are
/// throttled: answered 429 after a growing hold (see [`auth::LoginThrottle`]).
#[utoipa::path(post, path = "/api/session", tag = "session",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; the `vakt_session` cookie is set", body = WhoAmI),
        (status = 401, description = "Wrong user name or password (or a disabled user)", body = ErrorBody),
        (status = 403, description = "Sent from another site's page", body = ErrorBody),
        (status = 429, description = "Wrong, and throttled: too many recent failures of this user name or client address; the answer was held, see Retry-After", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    jar: CookieJar,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> ApiResult<(CookieJar, Json<WhoAmI>)> {
    let Json(req) = body?;
    let now = jiff::Timestamp::now();
    let name = req.username.trim().to_lowercase();
    let well_formed = !name.is_empty()
        && name.len() <= auth::MAX_USERNAME_BYTES
        && req.password.len() <= auth::MAX_PASSWORD_BYTES;
    let user = if well_formed {
        state
            .store
            .user(&name)
            .map_err(|e| ApiError::internal("reading the user failed", e))?
    } else {
        None
    };
    // An unknown or disabled user is checked against a dummy hash, so the answer time does
    // not tell which names exist.
    let phc = user
        .as_ref()
        .filter(|u| !u.disabled)
        .map(|u| u.password_hash.clone());
    let ok = well_formed && {
        // Throttled attempts take turns in their own lane, so a flood of wrong passwords
        // cannot take every check; the others queue only for the global bound.
        let throttled = state.throttle.throttled(&name, client, now);
        let _lane = if throttled {
            Some(
                state
                    .throttled_permits
                    .acquire()
                    .await
                    .map_err(|e| ApiError::internal("login unavailable", e))?,
            )
        } else {
            None
        };
        let _permit = state
            .verify_permits
            .acquire()
            .await
            .map_err(|e| ApiError::internal("login unavailable", e))?;
        let password = req.password;
        tokio::task::spawn_blocking(move || auth::verify_login(&password, phc.as_deref()))
            .await
            .unwrap_or(false)
    };
    let user = match user {
        Some(u) if ok => u,
        _ => return Err(login_failed(&state, &name, user.as_ref(), client, now).await),
    };
    state.throttle.succeeded(&name, client, now);
    let (token, hash) = crate::store::new_token();
    let expires_at = now + jiff::SignedDuration::from_hours(i64::from(state.session_hours));
    let session = Session {
        user: user.name.clone(),
        role: user.role,
        tenant: user.tenant.clone(),
        expires_at,
    };
    let record = SessionRecord {
        user: user.name.clone(),
        role: user.role,
        created_at: now,
        expires_at,
    };
    // The session and its audit entry: one sync.
    with_audit(
        &state,
        &session,
        "session.login",
        None,
        move |st| st.put_session(&hash, &record),
        move |()| format!("from {client}"),
    )
    .await?;
    state.metrics.login("ok");
    tracing::info!(user = %user.name, role = user.role.as_str(), client = %client, "console login");
    let cookie = Cookie::build((COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.secure_cookie)
        .path("/")
        .build();
    Ok((
        jar.add(cookie),
        Json(WhoAmI::of(
            &state,
            user.name,
            user.role,
            user.language,
            expires_at,
        )),
    ))
}

/// A failed login: counted, audited and logged without the name (see [`auth::name_ref`]),
/// and, when throttled, answered 429 only after its hold.
async fn login_failed(
    state: &AppState,
    name: &str,
    user: Option<&crate::store::UserRecord>,
    client: std::net::IpAddr,
    now: jiff::Timestamp,
) -> ApiError {
    let hold = state.throttle.failed(name, client, now);
    let name_ref = auth::name_ref(&state.name_key, name, user.is_some());
    let disabled = if user.is_some_and(|u| u.disabled) {
        " (disabled)"
    } else {
        ""
    };
    let _ = state.store.audit(AuditEntry {
        seq: 0,
        at: now,
        user: "-".into(),
        action: "session.login_failed".into(),
        call: None,
        subscriber: None,
        detail: format!("from {client}; {name_ref}{disabled}"),
    });
    tracing::info!(name = %name_ref, client = %client, throttled = hold.is_some(), "console login failed");
    let wrong = "wrong user name or password";
    let Some(hold) = hold else {
        state.metrics.login("bad_credentials");
        return ApiError::new(StatusCode::UNAUTHORIZED, wrong);
    };
    state.metrics.login("throttled");
    tokio::select! {
        () = tokio::time::sleep(hold) => {}
        () = state.shutdown.cancelled() => {}
    }
    let secs = hold.as_secs().max(1);
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "{wrong}; too many failed attempts: each further wrong one is answered more slowly (this one after {secs} s)"
        ),
    );
    e.retry_after = Some(secs);
    e
}

/// Who is logged in.
#[utoipa::path(get, path = "/api/session", tag = "session",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(State(state): State<AppState>, s: Session) -> ApiResult<Json<WhoAmI>> {
    let language = state
        .store
        .user(&s.user)
        .map_err(|e| ApiError::internal("reading the user failed", e))?
        .and_then(|u| u.language);
    Ok(Json(WhoAmI::of(
        &state,
        s.user,
        s.role,
        language,
        s.expires_at,
    )))
}

// ---- calls ----

/// Query of `GET /api/calls`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    /// Only `open` (every Call not yet closed) is supported; it is the default.
    pub state: Option<String>,
}

/// The open Calls, most urgent first.
#[utoipa::path(get, path = "/api/calls", tag = "calls", params(CallsQuery),
    responses((status = 200, body = [CallSummary]), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list_calls(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<CallsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<CallSummary>>> {
    s.require_or_tenant(Role::Operator, &state)?;
    let scope = s.scope(&state)?;
    let Query(q) = q?;
    match q.state.as_deref() {
        None | Some("open") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state={other} is not supported (use state=open)"
            )));
        }
    }
    let mut open = state.open_summaries();
    if !scope.is_all() {
        // A tenant's staff: the open Calls of their own people (a few: one look each).
        let mut theirs = std::collections::HashMap::new();
        let mut keep = Vec::with_capacity(open.len());
        for c in open {
            let seen = match c.subscriber.as_deref() {
                Some(id) => match theirs.get(id) {
                    Some(&b) => b,
                    None => {
                        let b = sees_subscriber(&state, &scope, Some(id))?;
                        theirs.insert(id.to_owned(), b);
                        b
                    }
                },
                None => false,
            };
            if seen {
                keep.push(c);
            }
        }
        open = keep;
    }
    Ok(Json(open))
}

/// Whether `scope` holds the person `subscriber` (a Call of no known person is the centre's
/// alone).
pub(crate) fn sees_subscriber(
    state: &AppState,
    scope: &crate::model::Scope,
    subscriber: Option<&str>,
) -> ApiResult<bool> {
    if scope.is_all() {
        return Ok(true);
    }
    let Some(id) = subscriber else {
        return Ok(false);
    };
    Ok(state
        .store
        .subscriber(id)
        .map_err(|e| ApiError::internal("reading the subscriber failed", e))?
        .is_some_and(|s| scope.sees(&s, state.care.municipality())))
}

/// A Call with its timeline, and the subscriber's name.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallView {
    /// The Call.
    #[serde(flatten)]
    #[schema(inline, value_type = Object)]
    pub call: Call,
    /// The subscriber's name, if known.
    pub subscriber_name: Option<String>,
    /// The Call's dispatches to patrols, oldest first.
    pub dispatches: Vec<crate::dispatch::desk::DispatchView>,
    /// The person's other Calls and the patrols on their way to the home.
    pub context: PersonContext,
}

/// How far back a Call shows the person's other Calls.
const RECENT_DAYS: i64 = 14;
/// At most this many of them.
const RECENT_MAX: usize = 10;

/// What the operator should know of the person beyond this Call: every Call is in its
/// context (the same person's alarms, a patrol already on its way).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct PersonContext {
    /// The person's other Calls opened in the last 14 days, newest first (at most 10).
    pub recent: Vec<RecentCall>,
    /// Patrols on their way to the person's home, or there, for other Calls (oldest first).
    pub live_dispatches: Vec<crate::dispatch::desk::DispatchView>,
}

/// One of the person's other Calls, in brief.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentCall {
    /// The Call's id.
    pub id: u64,
    /// What it was about.
    pub kind: String,
    /// Its priority.
    #[schema(value_type = Object)]
    pub priority: crate::model::Priority,
    /// Open, taken or closed.
    #[schema(value_type = Object)]
    pub state: crate::model::CallState,
    /// When it opened.
    #[schema(value_type = String)]
    pub opened_at: jiff::Timestamp,
    /// When it was closed, if it was.
    #[schema(value_type = Option<String>)]
    pub closed_at: Option<jiff::Timestamp>,
    /// How it was closed.
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<crate::model::Outcome>,
    /// The patrols sent on it (ids), oldest first.
    pub patrols: Vec<String>,
    /// Their names from the directory (the id where it has none), in the same order.
    pub patrol_names: Vec<String>,
}

/// The person's other Calls and the patrols on their way to the home (empty for a Call
/// with no subscriber). Reading failures leave it partial and are logged.
fn context_of(state: &AppState, call: &Call, now: jiff::Timestamp) -> PersonContext {
    let Some(subscriber) = call.subscriber.as_deref() else {
        return PersonContext::default();
    };
    let since = now
        .checked_sub(jiff::SignedDuration::from_hours(24 * RECENT_DAYS))
        .unwrap_or(jiff::Timestamp::MIN);
    let mut others: Vec<Call> = match state.store.calls_opened_since(since) {
        Ok(cs) => cs
            .into_iter()
            .filter(|c| c.id != call.id && c.subscriber.as_deref() == Some(subscriber))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, call = call.id, "reading the person's other calls failed");
            Vec::new()
        }
    };
    // Open Calls as triage has them now (the store's copies may lag a moment, or not be
    // written yet).
    others.retain(|c| c.state == crate::model::CallState::Closed);
    others.extend(state.calls.triage.open_calls().into_iter().filter(|c| {
        c.id != call.id && c.subscriber.as_deref() == Some(subscriber) && c.opened_at >= since
    }));
    others.sort_unstable_by(|a, b| b.opened_at.cmp(&a.opened_at).then(b.id.cmp(&a.id)));
    others.truncate(RECENT_MAX);
    let recent = others
        .into_iter()
        .map(|c| {
            let patrols: Vec<String> = state
                .store
                .dispatches_of_call(c.id)
                .map(|ds| ds.into_iter().map(|d| d.patrol).collect())
                .unwrap_or_default();
            RecentCall {
                patrol_names: patrols.iter().map(|p| state.desk.patrol_name(p)).collect(),
                patrols,
                id: c.id,
                kind: c.kind,
                priority: c.priority,
                state: c.state,
                opened_at: c.opened_at,
                closed_at: c.closed_at,
                outcome: c.outcome,
            }
        })
        .collect();
    let live_dispatches = state
        .desk
        .live_to_home(subscriber, call.id)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, call = call.id, "reading the home's live dispatches failed");
            Vec::new()
        });
    PersonContext {
        recent,
        live_dispatches,
    }
}

pub(crate) fn view(state: &AppState, call: Call) -> CallView {
    let subscriber_name = state.calls.subscriber_name(&call);
    let dispatches = match state.store.dispatches_of_call(call.id) {
        Ok(ds) => ds.iter().map(|d| state.desk.view(d)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, call = call.id, "reading the call's dispatches failed");
            Vec::new()
        }
    };
    let context = context_of(state, &call, jiff::Timestamp::now());
    CallView {
        call,
        subscriber_name,
        dispatches,
        context,
    }
}

/// One Call (open or closed) with its timeline.
#[utoipa::path(get, path = "/api/calls/{id}", tag = "calls",
    params(("id" = u64, Path, description = "Call id")),
    responses((status = 200, body = CallView), (status = 404, body = ErrorBody)))]
pub async fn get_call(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<CallView>> {
    s.require_or_tenant(Role::Operator, &state)?;
    let scope = s.scope(&state)?;
    let call = match state.calls.triage.get(id) {
        Some(c) => c,
        None => state
            .store
            .call(id)
            .map_err(|e| ApiError::internal("reading the call failed", e))?
            .ok_or_else(|| ApiError::not_found("call"))?,
    };
    if !scope.is_all() {
        // Another tenant's Call is not there for this user; theirs is a view of the
        // person's record, audited.
        if !sees_subscriber(&state, &scope, call.subscriber.as_deref())? {
            return Err(ApiError::not_found("call"));
        }
        audit(
            &state,
            &s,
            "call.view",
            Some(call.id),
            call.subscriber.as_deref(),
            String::new(),
        )?;
    }
    Ok(Json(view(&state, call)))
}

/// Maps a triage error; a Call triage does not know may be closed (410) or never was (404).
pub(crate) fn call_error(state: &AppState, id: u64, e: CallError) -> ApiError {
    if matches!(e, CallError::NotFound) {
        match state.store.call(id) {
            Ok(Some(c)) if c.state == crate::model::CallState::Closed => {
                return CallError::Closed.into();
            }
            Ok(_) => {}
            // Not known to be missing: the store could not say (the server's fault).
            Err(e) => return e.into(),
        }
    }
    e.into()
}

/// An operator's action on a Call: done by triage, audited, and durable before the answer.
pub(crate) fn act(
    state: &AppState,
    s: &Session,
    id: u64,
    action: &str,
    detail: String,
    f: impl FnOnce(&crate::triage::Triage, jiff::Timestamp) -> Result<Call, CallError>,
) -> ApiResult<Call> {
    s.require(Role::Operator, state)?;
    let call =
        f(&state.calls.triage, jiff::Timestamp::now()).map_err(|e| call_error(state, id, e))?;
    queue_audit(
        state,
        s,
        action,
        Some(id),
        call.subscriber.as_deref(),
        detail,
    )?;
    Ok(call)
}

/// Makes an operator's change durable (Call and audit entry, one sync) before answering.
pub(crate) async fn durable(state: &AppState, call: Call) -> ApiResult<Json<CallView>> {
    state
        .calls
        .flush()
        .await
        .map_err(|e| ApiError::internal("saving the change failed", e))?;
    Ok(Json(view(state, call)))
}

/// Take the most urgent waiting Call.
#[utoipa::path(post, path = "/api/calls/next", tag = "calls",
    responses((status = 200, body = CallView), (status = 204, description = "No Call waits"),
        (status = 403, body = ErrorBody)))]
pub async fn take_next(State(state): State<AppState>, s: Session) -> ApiResult<Response> {
    s.require(Role::Operator, &state)?;
    match state.calls.triage.next(&s.user, jiff::Timestamp::now()) {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(call) => {
            queue_audit(
                &state,
                &s,
                "call.claim",
                Some(call.id),
                call.subscriber.as_deref(),
                "next".into(),
            )?;
            Ok(durable(&state, call).await?.into_response())
        }
    }
}

/// Take this Call.
#[utoipa::path(post, path = "/api/calls/{id}/claim", tag = "calls",
    params(("id" = u64, Path, description = "Call id")),
    responses((status = 200, body = CallView),
        (status = 409, description = "Another operator owns it", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn claim(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<CallView>> {
    let call = act(&state, &s, id, "call.claim", String::new(), |t, now| {
        t.claim(id, &s.user, now)
    })?;
    durable(&state, call).await
}

/// Put the Call back in the queue (it keeps its age).
#[utoipa::path(post, path = "/api/calls/{id}/release", tag = "calls",
    params(("id" = u64, Path, description = "Call id")),
    responses((status = 200, body = CallView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not the operator's Call", body = ErrorBody),
        (status = 410, description = "The Call is closed", body = ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<CallView>> {
    let call = act(&state, &s, id, "call.release", String::new(), |t, now| {
        t.release(id, &s.user, now)
    })?;
    durable(&state, call).await
}

/// `POST /api/calls/{id}/notes` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// The note (1 to 4000 characters).
    pub text: String,
}

/// Write a note on the Call.
#[utoipa::path(post, path = "/api/calls/{id}/notes", tag = "calls",
    params(("id" = u64, Path, description = "Call id")), request_body = NoteRequest,
    responses((status = 200, body = CallView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not the operator's Call", body = ErrorBody),
        (status = 410, description = "The Call is closed", body = ErrorBody)))]
pub async fn note(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<NoteRequest>, JsonRejection>,
) -> ApiResult<Json<CallView>> {
    let Json(req) = body?;
    let call = act(&state, &s, id, "call.note", String::new(), |t, now| {
        t.note(id, &s.user, &req.text, now)
    })?;
    durable(&state, call).await
}

/// `POST /api/calls/{id}/phone` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneRequest {
    /// Whom: `person`, `relative` or `emergency` (112).
    pub to: PhoneParty,
    /// Whether they answered: `false` when nobody did (for the person, it counts in the
    /// closing rule: the person could not be reached). Absent: answered.
    #[serde(default)]
    pub answered: Option<bool>,
    /// What was said or agreed.
    #[serde(default)]
    pub note: String,
}

/// Log a phone call made for the Call.
#[utoipa::path(post, path = "/api/calls/{id}/phone", tag = "calls",
    params(("id" = u64, Path, description = "Call id")), request_body = PhoneRequest,
    responses((status = 200, body = CallView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not the operator's Call", body = ErrorBody),
        (status = 410, description = "The Call is closed", body = ErrorBody)))]
pub async fn phone(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<PhoneRequest>, JsonRejection>,
) -> ApiResult<Json<CallView>> {
    let Json(req) = body?;
    let mut to = req.to.as_str().to_owned();
    if req.answered == Some(false) {
        to.push_str(" no_answer");
    }
    let call = act(&state, &s, id, "call.phone", to, |t, now| {
        t.phone(id, &s.user, req.to, req.answered, &req.note, now)
    })?;
    durable(&state, call).await
}

/// `POST /api/calls/{id}/close` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    /// `help_not_needed`, `relative_goes`, `patrol_needed` (a patrol was sent),
    /// `ambulance_called`, `fire_brigade_called`, `accidental_press` or `technical`
    /// (`handled_by_phone` reads as `help_not_needed`; `no_action` is refused).
    pub outcome: Outcome,
    /// Closing note: the reason, required for an outcome without a patrol or an emergency
    /// service (at most 4000 characters).
    #[serde(default)]
    pub note: String,
    /// A supervisor closes against the closing rule: why (operators are refused, 403).
    #[serde(default)]
    pub override_reason: Option<String>,
}

/// Close the Call with an outcome, as the closing rule allows (`triage::closing`). A Call
/// closed without a dispatch and without an emergency service goes on the review list.
#[utoipa::path(post, path = "/api/calls/{id}/close", tag = "calls",
    params(("id" = u64, Path, description = "Call id")), request_body = CloseRequest,
    responses((status = 200, body = CallView), (status = 400, body = ErrorBody),
        (status = 403, description = "An override by an operator", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not the operator's Call, or the closing rule refuses \
            it (life-safety or the person not reached, without a dispatch or 112)",
            body = ErrorBody),
        (status = 410, description = "The Call is closed", body = ErrorBody),
        (status = 422, description = "A reason is missing, or the outcome is not offered",
            body = ErrorBody)))]
pub async fn close(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<CloseRequest>, JsonRejection>,
) -> ApiResult<Json<CallView>> {
    let Json(req) = body?;
    let closing = Closing {
        outcome: req.outcome,
        note: &req.note,
        override_reason: req.override_reason.as_deref(),
        may_override: s.role >= Role::Supervisor,
    };
    let detail = req.outcome.as_str().to_owned();
    let call = act(&state, &s, id, "call.close", detail, |t, now| {
        t.close(id, &s.user, &closing, now)
    })
    .inspect_err(|e| {
        if e.status == StatusCode::FORBIDDEN && req.override_reason.is_some() {
            state.metrics.rejected("forbidden");
        }
    })?;
    if let Some(TimelineEvent::Closed {
        override_reason: Some(why),
        overrode,
        ..
    }) = call.timeline.last().map(|e| &e.what)
    {
        queue_audit(
            &state,
            &s,
            "call.close_override",
            Some(id),
            call.subscriber.as_deref(),
            format!("{}: {why} (the rule: {overrode})", req.outcome.as_str()),
        )?;
    }
    durable(&state, call).await
}

// ---- subscribers and devices ----

/// A device as the subscriber's card shows it (no key).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceInfo {
    /// DC-09 account.
    pub account: String,
    /// Account prefix (`L`), if set.
    pub line: Option<String>,
    /// Receiver number, if set.
    pub receiver: Option<String>,
    /// Area.
    pub area: Option<String>,
    /// Telecom operator.
    pub telecom_operator: Option<String>,
    /// Supervision interval in seconds.
    pub supervision_secs: Option<u32>,
    /// Device type.
    pub device_type: Option<String>,
    /// Whether the device encrypts (the key itself is never shown).
    pub encrypted: bool,
}

/// The subscriber's card: everything about the person, and their devices.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberCard {
    /// The register entry.
    #[serde(flatten)]
    pub subscriber: Subscriber,
    /// Devices linked to the subscriber.
    pub devices: Vec<DeviceInfo>,
}

fn card(state: &AppState, subscriber: Subscriber) -> SubscriberCard {
    let registry = state.devices.current();
    let mut devices: Vec<DeviceInfo> = registry
        .iter()
        .filter(|d| d.subscriber.as_deref() == Some(subscriber.id.as_str()))
        .map(|d| DeviceInfo {
            account: d.account.clone(),
            line: d.line.clone(),
            receiver: d.receiver.clone(),
            area: d.area.clone(),
            telecom_operator: d.telecom_operator.clone(),
            supervision_secs: d.supervision_secs,
            device_type: d.device_type.clone(),
            encrypted: d.key.is_some(),
        })
        .collect();
    devices.sort_by(|a, b| a.account.cmp(&b.account));
    SubscriberCard {
        subscriber,
        devices,
    }
}

/// The subscriber's card (audited: who opened whose card, when).
#[utoipa::path(get, path = "/api/subscribers/{id}", tag = "subscribers",
    params(("id" = String, Path, description = "Subscriber id")),
    responses((status = 200, body = SubscriberCard), (status = 404, body = ErrorBody)))]
pub async fn get_subscriber(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<SubscriberCard>> {
    s.require_or_tenant(Role::Operator, &state)?;
    let scope = s.scope(&state)?;
    let mut sub = state
        .store
        .subscriber(&id)
        .map_err(|e| ApiError::internal("reading the subscriber failed", e))?
        // Another tenant's person is not there for this user (not even that it exists).
        .filter(|sub| scope.sees(sub, state.care.municipality()))
        .ok_or_else(|| ApiError::not_found("subscriber"))?;
    if !scope.is_all() {
        // The door code is for the patrol's assignment, not for reading at a desk.
        sub.access.door_code.clear();
    }
    audit(
        &state,
        &s,
        "subscriber.view",
        None,
        Some(&id),
        String::new(),
    )?;
    Ok(Json(card(&state, sub)))
}

/// Edit a subscriber (supervisor). Every field is checked, and the care provider and area
/// against the directory (see [`super::registers_api`]); the consoles showing the card load
/// it again.
#[utoipa::path(put, path = "/api/subscribers/{id}", tag = "subscribers",
    params(("id" = String, Path, description = "Subscriber id")), request_body = Subscriber,
    responses((status = 200, body = SubscriberCard),
        (status = 400, description = "The id in the body differs from the path's", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 422, description = "A field is wrong, or the care provider or area is not in the directory: one message per problem in `problems`, each naming its field (and the choices)", body = ErrorBody)))]
pub async fn put_subscriber(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    body: Result<Json<Subscriber>, JsonRejection>,
) -> ApiResult<Json<SubscriberCard>> {
    s.require(Role::Supervisor, &state)?;
    let Json(mut sub) = body?;
    crate::registers::subscribers::normalize(&mut sub);
    if sub.id != id {
        return Err(ApiError::bad_request(
            "the id in the body differs from the one in the path",
        ));
    }
    check_edit(&state, &sub)?;
    let saved = sub.clone();
    with_audit(
        &state,
        &s,
        "subscriber.edit",
        Some(id.clone()),
        move |st| st.upsert_subscribers(std::slice::from_ref(&saved)),
        |new| if *new == 0 { "updated" } else { "created" }.into(),
    )
    .await?;
    provider_edited(&state, &s, &[(&sub.id, &sub.care_provider)])?;
    state.calls.subscriber_changed(Some(&id));
    Ok(Json(card(&state, sub)))
}

/// A card's provider as edited or imported is the subscriber's from today on: their life (if
/// an order made one) gets the period, so the care tick does not put the old one back.
fn provider_edited(state: &AppState, s: &Session, cards: &[(&str, &str)]) -> ApiResult<()> {
    state
        .care
        .providers_edited(cards, &s.user, jiff::Timestamp::now())
        .map(|_| ())
        .map_err(|e| {
            ApiError::internal("recording the provider on the subscriber's life failed", e)
        })
}

/// Most warnings an import's answer lists (the rest are counted).
const MAX_WARNINGS: usize = 100;

/// Checks an edited subscriber: its fields ([`crate::registers::subscribers::problems`]) and
/// its provider and area against the directory
/// ([`crate::registers::directory::subscriber_problems`]). Refused 422 with every problem in
/// `problems`, one message each naming its field; `error` is the one problem, or says how
/// many there are and lists them; `details` has each problem's field, code and values, in
/// the same order, for the console to word and mark.
fn check_edit(state: &AppState, sub: &Subscriber) -> ApiResult<()> {
    let mut problems = crate::registers::subscribers::problems(sub);
    {
        let d = state.desk.dispatcher().directory();
        problems.extend(crate::registers::directory::subscriber_problems(
            &d,
            &sub.care_provider,
            &sub.area,
        ));
    }
    let texts: Vec<String> = problems.iter().map(|p| p.text.clone()).collect();
    let error = match texts.as_slice() {
        [] => return Ok(()),
        [one] => one.clone(),
        all => format!("{} fields to correct: {}", all.len(), all.join("; ")),
    };
    Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error)
        .with_problems(texts)
        .with_details(&problems))
}

/// The answer to an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    /// Rows imported (all of the file).
    pub imported: usize,
    /// Rows imported with something to correct (subscribers whose care provider or area is
    /// not in the directory, by id).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Import the subscriber register from CSV (admin). All rows or none. A care provider or
/// area not in the directory does not refuse a row: the answer's `warnings` name each.
#[utoipa::path(post, path = "/api/subscribers/import", tag = "subscribers",
    request_body(content = String, content_type = "text/csv",
        description = "CSV with the header in README (subscribers)"),
    responses((status = 200, body = Imported),
        (status = 400, description = "Bad rows, each by line number; nothing imported", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 415, description = "Not sent as text/csv", body = ErrorBody)))]
pub async fn import_subscribers(
    State(state): State<AppState>,
    s: Session,
    CsvBody(body): CsvBody,
) -> ApiResult<Json<Imported>> {
    s.require(Role::Admin, &state)?;
    let subs = crate::registers::subscribers::parse_csv(body.as_bytes())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let warnings = {
        let d = state.desk.dispatcher().directory();
        crate::registers::directory::import_warnings(
            &d,
            &subs,
            MAX_WARNINGS,
            state.care.municipality(),
        )
    };
    let providers: Vec<(String, String)> = subs
        .iter()
        .map(|sub| (sub.id.clone(), sub.care_provider.clone()))
        .collect();
    // The rows and their audit entry: one sync.
    let n = with_audit(
        &state,
        &s,
        "subscriber.import",
        None,
        move |st| st.upsert_subscribers(&subs),
        |n| format!("{n} subscribers"),
    )
    .await?;
    let st = state.clone();
    let user = s.clone();
    tokio::task::spawn_blocking(move || {
        let cards: Vec<(&str, &str)> = providers
            .iter()
            .map(|(id, p)| (id.as_str(), p.as_str()))
            .collect();
        provider_edited(&st, &user, &cards)
    })
    .await
    .map_err(|e| ApiError::internal("recording the providers failed", e))??;
    state.calls.subscriber_changed(None);
    Ok(Json(Imported {
        imported: n,
        warnings,
    }))
}

/// Import devices from CSV (admin). All rows or none; takes effect for the next frame.
#[utoipa::path(post, path = "/api/devices/import", tag = "devices",
    request_body(content = String, content_type = "text/csv",
        description = "CSV with the header in README (devices)"),
    responses((status = 200, body = Imported),
        (status = 400, description = "Bad rows, each by line number; nothing imported", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 415, description = "Not sent as text/csv", body = ErrorBody)))]
pub async fn import_devices(
    State(state): State<AppState>,
    s: Session,
    CsvBody(body): CsvBody,
) -> ApiResult<Json<Imported>> {
    s.require(Role::Admin, &state)?;
    let devices = crate::registers::devices::parse_csv(body.as_bytes())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let n = body.lines().count().saturating_sub(1);
    // The rows and their audit entry: one sync.
    let all = with_audit(
        &state,
        &s,
        "device.import",
        None,
        move |st| {
            st.upsert_devices(&devices)?;
            st.devices()
        },
        move |_| format!("{n} rows"),
    )
    .await?;
    state
        .devices
        .replace(crate::registers::devices::Registry::new(all.clone()));
    // New devices' heartbeat deadlines count from now; known ones keep theirs.
    let sup = state.supervision.supervisor().clone();
    tokio::task::spawn_blocking(move || sup.sync(&all, |_| None, jiff::Timestamp::now()))
        .await
        .map_err(|e| ApiError::internal("updating supervision failed", e))?;
    Ok(Json(Imported {
        imported: n,
        warnings: Vec::new(),
    }))
}

// ---- figures and audit ----

/// Today's answer figures against the telecare targets.
#[utoipa::path(get, path = "/api/stats/today", tag = "calls",
    responses((status = 200, body = Stats)))]
pub async fn stats_today(State(state): State<AppState>, s: Session) -> ApiResult<Json<Stats>> {
    s.require(Role::Operator, &state)?;
    state
        .compute_stats()
        .await
        .map(Json)
        .map_err(|e| ApiError::internal("computing the figures failed", e))
}

/// Query of `GET /api/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only entries with a greater sequence number, oldest first; without it, the newest
    /// `limit` entries.
    pub after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The audit log (supervisor).
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [AuditEntry]), (status = 403, body = ErrorBody)))]
pub async fn audit_log(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    s.require(Role::Supervisor, &state)?;
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_LIST}"
        )));
    }
    match q.after {
        Some(after) => state.store.audit_after(after, limit),
        None => state.store.audit_latest(limit),
    }
    .map(Json)
    .map_err(|e| ApiError::internal("reading the audit log failed", e))
}

/// Query of `GET /api/signals`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SignalsQuery {
    /// Only Signals with a greater id (default 0: from the start).
    #[serde(default)]
    pub after: u64,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The journal: Signals as received, oldest first.
#[utoipa::path(get, path = "/api/signals", tag = "signals", params(SignalsQuery),
    responses((status = 200, description = "Signals (JSON array)"), (status = 400, body = ErrorBody)))]
pub async fn signals(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<SignalsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    s.require(Role::Operator, &state)?;
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_LIST}"
        )));
    }
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.journal_after(q.after, limit)).await {
        Ok(Ok(records)) => {
            Ok(Json(records.into_iter().map(|r| r.signal).collect::<Vec<_>>()).into_response())
        }
        Ok(Err(e)) => Err(ApiError::internal("reading the journal failed", e)),
        Err(e) => Err(ApiError::internal("reading the journal failed", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_failure_is_the_servers_fault() {
        let e = ApiError::from(crate::store::StoreError::Corrupt {
            tree: "calls",
            detail: "test".into(),
        });
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            e.body.error, "storage failed",
            "no storage detail in the answer"
        );
    }
}
