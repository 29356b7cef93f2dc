//! The console's errors: every refusal and failure is JSON `{"error": ...}` with its HTTP
//! status ([`ApiError`]); a storage failure is the server's (500), never the client's.
//!
//! The refusals an operator meets in the day's work also carry a `code` (`call.owned_by`,
//! `closing.life_safety`...) and its `params`: the console shows the text of `error.{code}`
//! from its catalogue, in the user's language, and the English `error` where it has none.
//! API clients read `error` and may branch on `code`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::triage::CallError;
use crate::triage::closing::{Refusal, RefusalKind};

/// Every `code` an answer may carry; the catalogue words each as `error.{code}` in every
/// language (a test checks it, and [`ApiError::coded`] that no other is given).
pub const CODES: &[&str] = &[
    "call.closed",
    "call.not_found",
    "call.not_owner",
    "call.owned_by",
    "closing.life_safety",
    "closing.no_dispatch",
    "closing.not_offered",
    "closing.override_not_allowed",
    "closing.override_reason_missing",
    "closing.reason_missing",
    "closing.unreachable",
    "dispatch.already_open",
    "dispatch.home_has_patrol",
    "dispatch.instruction_too_long",
    "dispatch.no_access",
    "dispatch.no_open_call",
    "dispatch.none_on_shift",
    "dispatch.unknown_patrol",
    "handover.disabled",
    "handover.no_user",
    "handover.not_logged_in",
    "handover.not_owned",
    "handover.owned_at_logout",
    "keys.not_pending",
    "keys.short",
    "plan.changed",
    "review.already_accepted",
    "review.already_reopened",
    "review.reason_missing",
    "role_needed",
    "session.login_first",
];

/// An error answer: `{"error": "..."}` (and `owner` for a Call another operator owns).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words (English).
    pub error: String,
    /// What went wrong as a stable name (`closing.life_safety`), for the refusals an operator
    /// meets in the day's work; the console words it in the user's language.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub code: Option<&'static str>,
    /// The values the words of `code` name (`{"owner": "anna"}`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub params: BTreeMap<&'static str, String>,
    /// The operator who owns the Call (409 on claim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The Call's open dispatch (409 on a second dispatch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<u64>,
    /// Every problem of a refused import, by file and line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Each of `problems` as its field, stable code (`subscriber.phone`) and values, in the
    /// same order (422 on a subscriber edit): the console words them in the user's language.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ProblemDetail>,
    /// The request is refused only until the operator confirms it (409 on a second patrol to
    /// a home that has one on its way: send it again with `second: true`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub confirm: bool,
    /// The Calls one owns (409 on a logout that says nothing of them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<crate::calls::CallSummary>,
}

/// One problem of a record, for the console to word (see [`crate::registers::problem`]).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDetail {
    /// The field it concerns (`phone`, `contact2_phone`).
    pub field: String,
    /// Its stable name (`subscriber.phone`).
    #[schema(value_type = String)]
    pub code: &'static str,
    /// The values its words name.
    #[schema(value_type = Object)]
    pub params: BTreeMap<&'static str, String>,
}

/// An error with its status.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    /// Boxed: an `ApiResult` stays small however many fields an answer may carry.
    pub(crate) body: Box<ErrorBody>,
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status and a reason.
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                error: error.into(),
                code: None,
                params: BTreeMap::new(),
                owner: None,
                dispatch: None,
                problems: Vec::new(),
                details: Vec::new(),
                confirm: false,
                calls: Vec::new(),
            }),
            retry_after: None,
        }
    }

    /// With the stable name of what went wrong (see the module doc).
    pub(crate) fn coded(mut self, code: &'static str) -> ApiError {
        debug_assert!(CODES.contains(&code), "{code} is not in CODES");
        self.body.code = Some(code);
        self
    }

    /// With a value the words of the code name.
    pub(crate) fn param(mut self, name: &'static str, value: impl ToString) -> ApiError {
        self.body.params.insert(name, value.to_string());
        self
    }

    /// With the owner of a Call.
    pub(crate) fn with_owner(mut self, owner: String) -> ApiError {
        self.body.owner = Some(owner);
        self
    }

    /// With the open dispatch of a Call.
    pub(crate) fn with_dispatch(mut self, id: u64) -> ApiError {
        self.body.dispatch = Some(id);
        self
    }

    /// Refused until the operator confirms it.
    pub(crate) fn needing_confirmation(mut self) -> ApiError {
        self.body.confirm = true;
        self
    }

    /// With the Calls one owns.
    pub(crate) fn with_calls(mut self, calls: Vec<crate::calls::CallSummary>) -> ApiError {
        self.body.calls = calls;
        self
    }

    /// With the field, code and values of each problem (after [`ApiError::with_problems`]).
    pub(crate) fn with_details(
        mut self,
        problems: &[crate::registers::problem::FieldProblem],
    ) -> ApiError {
        self.body.details = problems
            .iter()
            .map(|p| ProblemDetail {
                field: p.field.clone(),
                code: p.code,
                params: p.params.iter().cloned().collect(),
            })
            .collect();
        self
    }

    /// With the problems of an import.
    pub(crate) fn with_problems(mut self, problems: Vec<String>) -> ApiError {
        self.body.problems = problems;
        self
    }

    pub(crate) fn bad_request(e: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e)
    }

    pub(crate) fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "{what}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, what.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(*self.body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        ApiError::new(e.status(), e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError::new(e.status(), e.body_text())
    }
}

impl From<crate::store::StoreError> for ApiError {
    /// Storage failed: the server's fault (500), never the client's.
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::internal("storage failed", e)
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> ApiError {
        match e {
            CallError::NotFound => ApiError::not_found("call").coded("call.not_found"),
            CallError::OwnedBy(owner) => ApiError::new(
                StatusCode::CONFLICT,
                format!("the call is taken by {owner}"),
            )
            .coded("call.owned_by")
            .param("owner", &owner)
            .with_owner(owner),
            CallError::NotOwner => {
                ApiError::new(StatusCode::CONFLICT, "take the call before acting on it")
                    .coded("call.not_owner")
            }
            CallError::Closed => {
                ApiError::new(StatusCode::GONE, "the call is closed").coded("call.closed")
            }
            CallError::Invalid(why) => ApiError::bad_request(why),
            CallError::Refused(r) => {
                let status = match r.kind() {
                    RefusalKind::Missing => StatusCode::UNPROCESSABLE_ENTITY,
                    RefusalKind::Conflict => StatusCode::CONFLICT,
                    RefusalKind::Forbidden => StatusCode::FORBIDDEN,
                };
                let e = ApiError::new(status, r.to_string()).coded(r.code());
                match r {
                    Refusal::LifeSafety { kind } => e.param("kind", kind),
                    Refusal::NotOffered(outcome) => e.param("outcome", outcome),
                    _ => e,
                }
            }
        }
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
