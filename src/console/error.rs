//! The console's errors: every refusal and failure is JSON `{"error": ...}` with its HTTP
//! status ([`ApiError`]); a storage failure is the server's (500), never the client's.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::triage::CallError;
use crate::triage::closing::RefusalKind;

/// An error answer: `{"error": "..."}` (and `owner` for a Call another operator owns).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
    /// The operator who owns the Call (409 on claim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The Call's open dispatch (409 on a second dispatch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<u64>,
    /// Every problem of a refused import, by file and line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// The request is refused only until the operator confirms it (409 on a second patrol to
    /// a home that has one on its way: send it again with `second: true`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub confirm: bool,
    /// The Calls one owns (409 on a logout that says nothing of them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<crate::calls::CallSummary>,
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
                owner: None,
                dispatch: None,
                problems: Vec::new(),
                confirm: false,
                calls: Vec::new(),
            }),
            retry_after: None,
        }
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
            CallError::NotFound => ApiError::not_found("call"),
            CallError::OwnedBy(owner) => ApiError {
                status: StatusCode::CONFLICT,
                body: Box::new(ErrorBody {
                    error: format!("the call is taken by {owner}"),
                    owner: Some(owner),
                    dispatch: None,
                    problems: Vec::new(),
                    confirm: false,
                    calls: Vec::new(),
                }),
                retry_after: None,
            },
            CallError::NotOwner => {
                ApiError::new(StatusCode::CONFLICT, "take the call before acting on it")
            }
            CallError::Closed => ApiError::new(StatusCode::GONE, "the call is closed"),
            CallError::Invalid(why) => ApiError::bad_request(why),
            CallError::Refused(r) => {
                let status = match r.kind() {
                    RefusalKind::Missing => StatusCode::UNPROCESSABLE_ENTITY,
                    RefusalKind::Conflict => StatusCode::CONFLICT,
                    RefusalKind::Forbidden => StatusCode::FORBIDDEN,
                };
                ApiError::new(status, r.to_string())
            }
        }
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
