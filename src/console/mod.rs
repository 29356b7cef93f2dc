//! The HTTP listener: the operator console (a web page embedded in the binary), its API
//! (`/api/...`, described by `/api/openapi.json`), the live queue over a WebSocket, health
//! (`/live`, `/ready`) and Prometheus `/metrics`.
//!
//! - [`api`]: the handlers, sessions and roles, errors as JSON.
//! - [`dispatch_api`]: dispatch to patrols, the patrols board, the directory.
//! - [`live`]: the WebSocket feed.
//! - [`auth`]: password hashing (argon2id), session tokens, the login throttle.
//! - [`guard`]: the client address behind trusted proxies, the refusal of cross-origin
//!   state changes, `Cache-Control` and JSON for every API answer.
//! - [`users_api`]: console users for administrators.
//! - [`review_api`]: the supervisors' review of Calls closed without a dispatch.
//! - [`registers_api`]: the subscriber and device lists and their search, the choices of an
//!   edit.
//! - [`ready`]: `/ready`, what the node is (single, leader with its durability, standby).
//! - [`keys_api`]: a subscriber's keys in custody and the receipts that move them.
//! - [`i18n`]: the message catalogue (Swedish, Norwegian, English) and each user's language.
//! - [`stats_api`]: the statistics of a period for the centre, a municipality or a provider,
//!   with [`charts`] drawn in SVG.

pub mod api;
pub mod audit_api;
pub mod auth;
pub mod care_api;
pub mod charts;
pub mod client;
pub mod dispatch_api;
pub mod error;
pub mod guard;
pub mod handover_api;
pub mod i18n;
pub mod incidents_api;
pub mod keys_api;
pub mod live;
pub mod plans_api;
pub mod ready;
pub mod registers_api;
pub mod review_api;
pub mod staffing;
pub mod staffing_api;
pub mod state;
pub mod stats_api;
pub mod users_api;
pub mod voice_api;
pub mod work_orders_api;

pub use state::{Alerting, AppState, ConsoleOptions, Services};

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest import body (CSV) accepted.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

/// Largest body of any other request.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The OpenAPI document's frame; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "vakt",
        description = "The HTTP API of vakt, an alarm receiving centre for social alarms. \
            The operator console uses exactly this API. Log in with POST /api/session; the \
            session cookie `vakt_session` authenticates every other call. Errors are JSON \
            `{\"error\": \"...\"}`."
    ),
    tags(
        (name = "session", description = "Log in and out"),
        (name = "calls", description = "The queue and the Calls"),
        (name = "subscribers", description = "The subscriber register"),
        (name = "devices", description = "The device registry"),
        (name = "audit", description = "Who did what, when"),
        (name = "signals", description = "The journal of received Signals"),
        (name = "dispatch", description = "Home-care patrols: dispatch, the board, the directory"),
        (name = "supervision", description = "Silent devices, telecom incidents, the escalation outbox"),
        (name = "work_orders", description = "Work orders for device faults"),
        (name = "care", description = "Subscribers' lives: orders, installation, billing, the care system"),
        (name = "voice", description = "Voice calls: ringing and answered conversations"),
        (name = "users", description = "Console users (administrators)"),
        (name = "reviews", description = "Calls closed without a dispatch, for supervisors to review"),
        (name = "plans", description = "Response plans per subscriber, and on a Call"),
        (name = "reports", description = "Statistics of the centre, a municipality or a care provider"),
    ),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// The two ways to authenticate: the console's session cookie, and an integration's bearer
/// token (lock systems).
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(api::COOKIE))),
        );
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and the OpenAPI document generated from them.
pub fn router(state: AppState) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            api::login,
            api::whoami,
            handover_api::delete_session
        ))
        .routes(routes!(i18n::set_language))
        .routes(routes!(api::list_calls))
        .routes(routes!(api::take_next))
        .routes(routes!(api::get_call))
        .routes(routes!(api::claim))
        .routes(routes!(api::release))
        .routes(routes!(api::note))
        .routes(routes!(api::phone))
        .routes(routes!(api::close))
        .routes(routes!(registers_api::list_subscribers))
        .routes(routes!(registers_api::list_devices))
        .routes(routes!(registers_api::choices))
        .routes(routes!(api::get_subscriber, api::put_subscriber))
        .routes(routes!(api::stats_today))
        .routes(routes!(api::audit_log))
        .routes(routes!(audit_api::review))
        .routes(routes!(audit_api::extract))
        .routes(routes!(api::signals))
        .routes(routes!(dispatch_api::call_patrols))
        .routes(routes!(dispatch_api::dispatch))
        .routes(routes!(dispatch_api::cancel))
        .routes(routes!(dispatch_api::list_dispatches))
        .routes(routes!(dispatch_api::patrols))
        .routes(routes!(dispatch_api::directory))
        .routes(routes!(dispatch_api::lock_events))
        .routes(routes!(dispatch_api::sla_report))
        .routes(routes!(dispatch_api::visits_report))
        .routes(routes!(incidents_api::list_incidents))
        .routes(routes!(incidents_api::get_incident))
        .routes(routes!(incidents_api::get_device))
        .routes(routes!(incidents_api::outbox))
        .routes(routes!(incidents_api::figures))
        .routes(routes!(incidents_api::unknown_accounts))
        .routes(routes!(work_orders_api::list_work_orders))
        .routes(routes!(work_orders_api::get_work_order))
        .routes(routes!(work_orders_api::start_work_order))
        .routes(routes!(work_orders_api::done_work_order))
        .routes(routes!(work_orders_api::cancel_work_order))
        .routes(routes!(work_orders_api::report_fault))
        .routes(routes!(care_api::list_orders, care_api::enter_order))
        .routes(routes!(care_api::get_order))
        .routes(routes!(care_api::complete_order))
        .routes(routes!(care_api::send_back_order))
        .routes(routes!(care_api::cancel_order))
        .routes(routes!(care_api::get_life))
        .routes(routes!(care_api::open_installation))
        .routes(routes!(care_api::record_consent))
        .routes(routes!(care_api::care_system_order))
        .routes(routes!(care_api::billing_report))
        .routes(routes!(care_api::retention_survey))
        .routes(routes!(stats_api::statistics))
        .routes(routes!(live::live))
        .routes(routes!(plans_api::get_plan, plans_api::put_plan))
        .routes(routes!(plans_api::get_plan_version))
        .routes(routes!(plans_api::call_plan))
        .routes(routes!(plans_api::tick_step))
        .routes(routes!(plans_api::relative_call))
        .routes(routes!(voice_api::list_voice))
        .routes(routes!(voice_api::hang_up))
        .routes(routes!(voice_api::answer))
        .routes(routes!(voice_api::mute))
        .routes(routes!(voice_api::hold))
        .routes(routes!(voice_api::dtmf))
        .routes(routes!(voice_api::recording))
        .routes(routes!(voice_api::dial))
        .routes(routes!(voice_api::dial_targets))
        .routes(routes!(users_api::list_users))
        .routes(routes!(users_api::disable_user))
        .routes(routes!(users_api::enable_user))
        .routes(routes!(users_api::set_role))
        .routes(routes!(users_api::remove_user))
        .routes(routes!(review_api::list_reviews))
        .routes(routes!(review_api::accept))
        .routes(routes!(review_api::reopen))
        .routes(routes!(handover_api::logout))
        .routes(routes!(handover_api::operators_online))
        .routes(routes!(handover_api::reassign))
        .routes(routes!(keys_api::get_keys))
        .routes(routes!(keys_api::write_receipt))
        .routes(routes!(keys_api::sign_receipt))
        .routes(routes!(keys_api::void_receipt))
        .routes(routes!(staffing_api::staffing))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(
            // Only the imports take big bodies.
            OpenApiRouter::new()
                .routes(routes!(api::import_subscribers))
                .routes(routes!(api::import_devices))
                .routes(routes!(dispatch_api::import_directory))
                .layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .split_for_parts();
    let doc_json = Arc::new(
        serde_json::to_value(&doc)
            .map(|mut d| {
                framework_answers(&mut d);
                d
            })
            .and_then(|d| serde_json::to_string_pretty(&d))
            .unwrap_or_else(|_| "{}".into()),
    );
    api.route(
        "/api/openapi.json",
        get(move || {
            let d = doc_json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], (*d).clone()) }
        }),
    )
    .route("/", get(index))
    .route("/assets/app.js", get(app_js))
    .route("/assets/app.css", get(app_css))
    .route("/assets/i18n/{file}", get(i18n::serve_catalogue))
    .route("/live", get(|| async { "live\n" }))
    .route("/ready", get(ready::ready))
    .route("/metrics", get(metrics))
    .fallback(|| async {
        error::ApiError::new(StatusCode::NOT_FOUND, "no such route").into_response()
    })
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        guard::guard,
    ))
    .with_state(state)
}

/// Adds to every operation of the OpenAPI document the answers the framework and the
/// [`guard`] give besides the handler's own (which its `#[utoipa::path]` lists): 401 without
/// a session, 403 for a cross-origin change, 400 for a path or query parameter that does not
/// parse, 400/413/415/422 for a body that is not JSON, too large, of another type or of the
/// wrong shape; and the session requirement. Every error answer is an `ErrorBody`.
fn framework_answers(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let error_body =
        || json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let login = path == "/api/session" && method == "post";
            let changes = matches!(method.as_str(), "post" | "put" | "patch" | "delete");
            let params = op
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let in_path = params.iter().any(|p| p["in"] == "path");
            let in_query = params.iter().any(|p| p["in"] == "query");
            let body = op
                .get("requestBody")
                .and_then(|b| b.get("content"))
                .cloned()
                .unwrap_or(Value::Null);
            let json_body = body.get("application/json").is_some();
            let csv_body = body.get("text/csv").is_some();
            if !login && !op.contains_key("security") {
                op.insert("security".into(), json!([{"session": []}]));
            }
            let mut add: Vec<(&str, &str)> = Vec::new();
            if !login {
                add.push((
                    "401",
                    "No valid session (log in first), or more than one session cookie",
                ));
            }
            if changes {
                add.push((
                    "403",
                    "Refused: sent from another site's page (Origin or Sec-Fetch-Site), or the role is too low",
                ));
            }
            if in_path {
                add.push(("400", "A path parameter that does not parse"));
            }
            if in_query {
                add.push(("400", "A query parameter that does not parse"));
            }
            if json_body {
                add.push(("400", "The body is not JSON"));
                add.push(("413", "The body is too large"));
                add.push(("415", "The body is not application/json"));
                add.push(("422", "The JSON does not have the fields this needs"));
            }
            if csv_body {
                add.push(("413", "The body is too large"));
                add.push(("415", "The body is not text/csv"));
            }
            let responses = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            let Some(responses) = responses else {
                continue;
            };
            for (status, description) in add {
                responses
                    .entry(status)
                    .or_insert_with(|| json!({"description": description}));
            }
            for (status, r) in responses.iter_mut() {
                let error = status.starts_with('4') || status.starts_with('5');
                if let Some(r) = r.as_object_mut().filter(|_| error) {
                    r.entry("content").or_insert_with(error_body);
                    if r.get("description").and_then(Value::as_str) == Some("") {
                        r.insert("description".into(), json!("Refused"));
                    }
                }
            }
        }
    }
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The page may load only its own scripts, styles and WebSocket; no framing.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
    style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn index(State(s): State<AppState>) -> Response {
    let mut r = asset("text/html; charset=utf-8", i18n::index_html(s.language));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
        .into_response()
}
