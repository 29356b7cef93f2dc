//! What the console decides about a request around its handler: who the client is (the
//! [`ClientIp`] extractor over [`super::client::ClientAddresses`]), whether a request that
//! changes something comes from the console's own pages, and the shape of every API answer.
//!
//! - [`from_console`] and the [`guard`] middleware: a request that changes something (POST,
//!   PUT, PATCH, DELETE) is refused (403) when its `Sec-Fetch-Site` is not `same-origin` (or
//!   `none`: typed by the user), or its `Origin` is not the console's (the `Host` it was sent
//!   to, or `[http] public_origin`). A request with neither header does not come from a
//!   browser page (a lock system's integration, curl) and passes: the cookie that a forged
//!   request would ride on is only sent by browsers, and browsers send these headers.
//! - Every answer under `/api` gets `Cache-Control: no-store` (answers carry personal data),
//!   and an error the framework made (a path parameter that does not parse, a method the
//!   route lacks, a body too large) becomes JSON `{"error": ...}` like the handlers' own.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::error::ApiError;
use super::state::AppState;

/// Longest error text the framework's rejections are read up to (they are short).
const MAX_REJECTION_BYTES: usize = 4096;

/// The client's address of a request (see [`super::client::ClientAddresses`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::internal("the client address is unknown", "no ConnectInfo"))?;
        Ok(ClientIp(state.clients.client(peer, &parts.headers)))
    }
}

/// Whether a request comes from the console's own pages, or from no browser page at all.
/// `Err` says why not.
pub fn from_console(headers: &HeaderMap, public_origin: Option<&str>) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("").trim();
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Err("refused: the request comes from another site's page (Sec-Fetch-Site)");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").trim().trim_end_matches('/');
        let public = public_origin.is_some_and(|p| p.eq_ignore_ascii_case(origin));
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let same_host = origin
            .split_once("://")
            .is_some_and(|(_, o)| host.is_some_and(|h| !o.is_empty() && o.eq_ignore_ascii_case(h)));
        if !(public || same_host) {
            return Err("refused: the request's origin is not the console (Origin)");
        }
    }
    Ok(())
}

fn changes_state(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// The middleware around every route: refuses cross-origin state changes, then shapes the
/// API's answers (see the module documentation).
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let api = is_api(req.uri().path());
    let r = if changes_state(req.method()) {
        match from_console(req.headers(), state.public_origin.as_deref()) {
            Ok(()) => next.run(req).await,
            Err(why) => {
                state.metrics.rejected("cross_origin");
                ApiError::new(StatusCode::FORBIDDEN, why).into_response()
            }
        }
    } else {
        next.run(req).await
    };
    if api { api_answer(r).await } else { r }
}

/// `Cache-Control: no-store`, and a rejection that is not JSON made JSON.
async fn api_answer(r: Response) -> Response {
    let status = r.status();
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let mut r = if (status.is_client_error() || status.is_server_error()) && !json {
        let (parts, body) = r.into_parts();
        let text = match http_body_util::Limited::new(body, MAX_REJECTION_BYTES)
            .collect()
            .await
        {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
            Err(_) => String::new(),
        };
        let text = if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_ascii_lowercase()
        } else {
            text
        };
        let mut json = ApiError::new(status, text).into_response();
        // Keep what the rejection said besides its body (Allow, Retry-After).
        for (name, value) in parts.headers.iter() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                json.headers_mut().insert(name.clone(), value.clone());
            }
        }
        json
    } else {
        r
    };
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn requests_from_the_console_and_from_elsewhere() {
        let host = ("host", "127.0.0.1:8080");
        let ok = |pairs: &[(&str, &str)], public: Option<&str>| {
            from_console(&headers(pairs), public).is_ok()
        };
        assert!(ok(&[host], None), "no browser headers: not a browser page");
        assert!(ok(&[host, ("origin", "http://127.0.0.1:8080")], None));
        assert!(ok(&[host, ("origin", "HTTP://127.0.0.1:8080/")], None));
        assert!(ok(&[host, ("sec-fetch-site", "same-origin")], None));
        assert!(ok(&[host, ("sec-fetch-site", "none")], None));
        assert!(!ok(&[host, ("sec-fetch-site", "cross-site")], None));
        assert!(!ok(&[host, ("sec-fetch-site", "same-site")], None));
        assert!(!ok(&[host, ("origin", "http://evil.example")], None));
        assert!(!ok(&[host, ("origin", "http://127.0.0.1:8081")], None));
        assert!(!ok(&[host, ("origin", "null")], None));
        assert!(!ok(&[("origin", "http://127.0.0.1:8080")], None), "no Host");
        assert!(
            !ok(
                &[
                    host,
                    ("origin", "http://127.0.0.1:8080"),
                    ("sec-fetch-site", "cross-site")
                ],
                None
            ),
            "both must agree"
        );
        // Behind a proxy that rewrites Host.
        let public = Some("https://larm.example.se");
        assert!(ok(&[host, ("origin", "https://larm.example.se")], public));
        assert!(!ok(&[host, ("origin", "https://larm.example.se")], None));
        assert!(!ok(
            &[host, ("origin", "https://larm.example.se.evil.example")],
            public
        ));
    }
}
