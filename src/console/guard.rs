//! What the console decides about a request around its handler: who the client is behind
//! trusted reverse proxies, whether a request that changes something comes from the
//! console's own pages, and the shape of every API answer.
//!
//! - [`ClientAddresses`]: the client's address. The connection's peer, unless the peer is a
//!   trusted proxy (`[http] trusted_proxies`): then the right-most address of the configured
//!   header (`X-Forwarded-For` or RFC 7239 `Forwarded`) that is not a trusted proxy. Each
//!   proxy appends the address it saw, so that one is the first a trusted party vouches
//!   for; anything to its left was written by the client and can be anything. Failed logins
//!   are counted against it, and the audit log and the logs show it.
//! - [`from_console`] and the [`guard`] middleware: a request that changes something (POST,
//!   PUT, PATCH, DELETE) is refused (403) when its `Sec-Fetch-Site` is not `same-origin` (or
//!   `none`: typed by the user), or its `Origin` is not the console's (the `Host` it was sent
//!   to, or `[http] public_origin`). A request with neither header does not come from a
//!   browser page (a lock system's integration, curl) and passes: the cookie that a forged
//!   request would ride on is only sent by browsers, and browsers send these headers.
//! - Every answer under `/api` gets `Cache-Control: no-store` (answers carry personal data),
//!   and an error the framework made (a path parameter that does not parse, a method the
//!   route lacks, a body too large) becomes JSON `{"error": ...}` like the handlers' own.
//!
//! The header parsing is written here: no maintained crate takes a trusted set of proxy
//! networks and gives the right-most untrusted address of both headers, and the grammar
//! needed (a comma list of addresses; RFC 7239's `for=` node) is small. Both are bounded
//! (at most [`MAX_HOPS`] addresses read) and never fail: an address that cannot be read
//! stops the walk at the last trusted hop.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::AppState;
use super::api::ApiError;

/// The header in which trusted proxies name the client (`[http] client_address_header`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAddressHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx, HAProxy, Caddy, Traefik).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

/// Most addresses of a forwarded-for chain looked at (the right-most ones).
pub const MAX_HOPS: usize = 32;

/// Longest error text the framework's rejections are read up to (they are short).
const MAX_REJECTION_BYTES: usize = 4096;

/// Finds the client's address behind trusted reverse proxies.
#[derive(Clone, Debug, Default)]
pub struct ClientAddresses {
    proxies: Vec<ipnet::IpNet>,
    header: ClientAddressHeader,
}

impl ClientAddresses {
    /// Believes `header` when the peer (and each hop after it) is in `proxies`.
    pub fn new(proxies: Vec<ipnet::IpNet>, header: ClientAddressHeader) -> ClientAddresses {
        ClientAddresses { proxies, header }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusted(client) {
            return client;
        }
        let name = match self.header {
            ClientAddressHeader::XForwardedFor => "x-forwarded-for",
            ClientAddressHeader::Forwarded => "forwarded",
        };
        // Every header line in order, each a comma list: together one list (RFC 9110 §5.3).
        let hops: Vec<&str> = headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .collect();
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let addr = match self.header {
                ClientAddressHeader::XForwardedFor => parse_node(hop),
                ClientAddressHeader::Forwarded => forwarded_for(hop).and_then(parse_node),
            };
            // An unreadable hop ("unknown", an obfuscated node, garbage): nothing left of it
            // can be believed; the last trusted hop is the best there is.
            let Some(ip) = addr else { return client };
            client = ip.to_canonical();
            if !self.trusted(client) {
                return client;
            }
        }
        client
    }
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.60;proto=https;by=...`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })
}

/// An address as a proxy writes it: `192.0.2.60`, `192.0.2.60:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`, perhaps in quotes.
fn parse_node(node: &str) -> Option<IpAddr> {
    let n = node.trim().trim_matches('"');
    if let Ok(ip) = n.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = n.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    n.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|v6| v6.parse::<IpAddr>().ok())
}

/// The client's address of a request (see [`ClientAddresses`]).
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(nets: &[&str], header: ClientAddressHeader) -> ClientAddresses {
        ClientAddresses::new(nets.iter().map(|n| n.parse().unwrap()).collect(), header)
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let c = ClientAddresses::default();
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(c.client(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        // Nor from a peer that is not a trusted proxy.
        let c = proxies(&["10.0.0.0/8"], ClientAddressHeader::XForwardedFor);
        assert_eq!(c.client(ip("192.0.2.1"), &h), ip("192.0.2.1"));
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let c = proxies(
            &["10.0.0.0/8", "127.0.0.1/32"],
            ClientAddressHeader::XForwardedFor,
        );
        let peer = ip("127.0.0.1");
        for (xff, want) in [
            ("203.0.113.9", "203.0.113.9"),
            // The client wrote the left part; the proxy appended what it saw.
            ("192.0.2.44, 203.0.113.9", "203.0.113.9"),
            // Two proxies of ours.
            ("203.0.113.9, 10.1.1.1", "203.0.113.9"),
            ("203.0.113.9,10.1.1.1 , 10.2.2.2", "203.0.113.9"),
            ("[2001:db8::7]:4711, 10.1.1.1", "2001:db8::7"),
            ("203.0.113.9:5000", "203.0.113.9"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            // Every hop is ours: the left-most.
            ("10.3.3.3, 10.1.1.1", "10.3.3.3"),
            // An unreadable hop stops the walk at the last trusted one.
            ("203.0.113.9, unknown, 10.1.1.1", "10.1.1.1"),
            ("garbage", "127.0.0.1"),
            ("", "127.0.0.1"),
        ] {
            let h = headers(&[("x-forwarded-for", xff)]);
            assert_eq!(c.client(peer, &h), ip(want), "{xff:?}");
        }
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "192.0.2.44"),
            ("x-forwarded-for", "203.0.113.9, 10.1.1.1"),
        ]);
        assert_eq!(c.client(peer, &h), ip("203.0.113.9"));
        // A peer written as IPv4 mapped into IPv6 is the same proxy.
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(c.client(ip("::ffff:127.0.0.1"), &h), ip("203.0.113.9"));
        // The other header is not read.
        let h = headers(&[("forwarded", "for=203.0.113.9")]);
        assert_eq!(c.client(peer, &h), peer);
    }

    #[test]
    fn forwarded_headers_of_rfc_7239() {
        let c = proxies(&["10.0.0.0/8"], ClientAddressHeader::Forwarded);
        let peer = ip("10.0.0.1");
        for (fwd, want) in [
            ("for=203.0.113.9", "203.0.113.9"),
            (
                "for=192.0.2.44, for=203.0.113.9;proto=https;by=10.0.0.1",
                "203.0.113.9",
            ),
            ("For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("proto=https;for=203.0.113.9", "203.0.113.9"),
            ("for=203.0.113.9, for=10.2.2.2", "203.0.113.9"),
            ("for=_hidden, for=10.2.2.2", "10.2.2.2"),
            ("for=unknown", "10.0.0.1"),
            ("by=10.0.0.1", "10.0.0.1"),
        ] {
            let h = headers(&[("forwarded", fwd)]);
            assert_eq!(c.client(peer, &h), ip(want), "{fwd:?}");
        }
    }

    #[test]
    fn a_long_chain_is_read_only_so_far() {
        let c = proxies(&["10.0.0.0/8"], ClientAddressHeader::XForwardedFor);
        let chain = std::iter::once("203.0.113.9".to_string())
            .chain((0..100).map(|i| format!("10.0.0.{}", i % 250)))
            .collect::<Vec<_>>()
            .join(", ");
        let h = headers(&[("x-forwarded-for", &chain)]);
        assert!(c.client(ip("10.0.0.1"), &h).to_string().starts_with("10."));
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
