//! One delivery attempt: the signed POST and what came of it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sha2::Sha256;

use super::OutboxError;

/// Header: the event name.
pub const EVENT_HEADER: &str = "x-vakt-event";
/// Header: the delivery id (the same at every attempt: receivers deduplicate on it).
pub const DELIVERY_HEADER: &str = "x-vakt-delivery";
/// Header: `sha256=` and the lowercase hex HMAC-SHA256 of the body with the endpoint's secret.
pub const SIGNATURE_HEADER: &str = "x-vakt-signature";

/// The `User-Agent` of deliveries.
pub const USER_AGENT: &str = concat!("vakt/", env!("CARGO_PKG_VERSION"));

/// How much of a response body is read (and thrown away) so the connection can be reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest error text kept for a failed attempt.
pub const MAX_ERROR_CHARS: usize = 200;

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The value of `X-Vakt-Signature` for `body`: `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the right signature of `body` (compared in constant time): what a
/// receiver checks.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The HTTP client of the outbox: HTTP/1.1, plain or TLS (rustls with the ring provider and
/// the Mozilla roots), a connect timeout, a small idle pool.
pub(crate) fn client(connect_timeout: Duration) -> Result<HttpClient, OutboxError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| OutboxError::Tls(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(https))
}

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx: acknowledged.
    Delivered,
    /// Another status; maybe with how long the receiver asked us to wait (`Retry-After`).
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: the connection failed or broke.
    Network(String),
    /// No answer within the attempt's time.
    Timeout,
}

impl Outcome {
    /// The `result` label of the attempts metric.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Status { .. } => "http_error",
            Outcome::Network(_) => "network_error",
            Outcome::Timeout => "timeout",
        }
    }

    /// A short description for the console (no body, no secret).
    pub(crate) fn describe(&self, timeout: Duration) -> String {
        match self {
            Outcome::Delivered => "delivered".into(),
            Outcome::Status { code, .. } => {
                let reason = hyper::StatusCode::from_u16(*code)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                format!("HTTP {code} {reason}").trim_end().to_string()
            }
            Outcome::Network(e) => e.clone(),
            Outcome::Timeout => format!("no answer within {} ms", timeout.as_millis()),
        }
    }
}

/// The request of one attempt.
pub(crate) struct Attempt<'a> {
    pub uri: &'a Uri,
    pub secret: &'a [u8],
    pub event: &'a str,
    pub delivery: u64,
    pub body: Bytes,
    pub timeout: Duration,
}

/// Sends one attempt and waits for its answer (at most `timeout` in all).
pub(crate) async fn post(client: &HttpClient, a: Attempt<'_>) -> Outcome {
    let sig = signature(a.secret, &a.body);
    let req = Request::builder()
        .method(Method::POST)
        .uri(a.uri.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, USER_AGENT)
        .header(EVENT_HEADER, a.event)
        .header(DELIVERY_HEADER, a.delivery)
        .header(SIGNATURE_HEADER, sig)
        .body(Full::new(a.body));
    let req = match req {
        Ok(r) => r,
        Err(e) => return Outcome::Network(short(&format!("bad request: {e}"))),
    };
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(retry_after);
        // Read what little the receiver says so the connection can be reused; its content
        // does not matter.
        let _ = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        Ok::<_, String>((status, retry_after))
    };
    match tokio::time::timeout(a.timeout, exchange).await {
        Err(_) => Outcome::Timeout,
        Ok(Err(e)) => Outcome::Network(short(&e)),
        Ok(Ok((status, _))) if status.is_success() => Outcome::Delivered,
        Ok(Ok((status, retry_after))) => Outcome::Status {
            code: status.as_u16(),
            retry_after,
        },
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by webhooks in practice).
fn retry_after(v: &HeaderValue) -> Option<Duration> {
    v.to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// An error and its sources, one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// At most [`MAX_ERROR_CHARS`] characters.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_ERROR_CHARS).collect();
    if s.chars().nth(MAX_ERROR_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = signature(b"k", b"body");
        assert!(verify_signature(b"k", b"body", &sig));
        assert!(!verify_signature(b"k", b"bodY", &sig));
        assert!(!verify_signature(b"K", b"body", &sig));
        assert!(!verify_signature(b"k", b"body", "sha1=00"));
        assert!(!verify_signature(b"k", b"body", "sha256=zz"));
    }

    #[test]
    fn outcomes_describe_themselves_briefly() {
        let t = Duration::from_secs(10);
        assert_eq!(
            Outcome::Status {
                code: 500,
                retry_after: None
            }
            .describe(t),
            "HTTP 500 Internal Server Error"
        );
        assert_eq!(Outcome::Timeout.describe(t), "no answer within 10000 ms");
        assert_eq!(short(&"é".repeat(300)).chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(
            retry_after(&HeaderValue::from_static(" 7")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
    }
}
