//! SIP (RFC 3261) subset for SCAIP: stream framing, message parsing, responses,
//! requests and Digest authentication (RFC 2617, MD5). Stub; bodies follow.

use std::borrow::Cow;

/// Largest SIP message vakt reads (start line + headers + body).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Most header lines.
pub const MAX_HEADERS: usize = 64;

/// Why a SIP message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// The start line is not a request or status line.
    #[error("bad start line")]
    BadStartLine,
    /// The SIP version is not `SIP/2.0`.
    #[error("bad SIP version")]
    BadVersion,
    /// A header line has no name or colon.
    #[error("bad header line")]
    BadHeader,
    /// More than [`MAX_HEADERS`] header lines.
    #[error("too many headers")]
    TooManyHeaders,
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("message too large")]
    TooLarge,
    /// Content-Length is not a number, or repeated with different values.
    #[error("bad Content-Length")]
    BadContentLength,
    /// Content-Length is absent on a stream.
    #[error("no Content-Length on a stream")]
    NoContentLength,
    /// A mandatory header is missing.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// Content-Length is larger than the bytes present.
    #[error("body shorter than Content-Length")]
    BodyLength,
    /// The start line or headers are not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// CSeq is malformed, or its method differs from the request method.
    #[error("bad CSeq")]
    BadCSeq,
}

impl SipError {
    /// Stable label for logs and metrics.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        unimplemented!()
    }
}

/// Stream framing (TCP/TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A whole message is `buf[..len]` (headers + Content-Length body).
    Message {
        /// Bytes of the message.
        len: usize,
    },
    /// `n` leading bytes are keep-alive CRLFs: drop them. `ping` is true when they were a
    /// double-CRLF ping (RFC 5626) that must be answered with a single CRLF.
    KeepAlive {
        /// Bytes to drop.
        n: usize,
        /// Answer with "\r\n".
        ping: bool,
    },
    /// More bytes are needed.
    Incomplete,
    /// The stream is broken: close the connection.
    Invalid(SipError),
}

/// Frames one message (or keep-alive) at the start of a stream buffer.
#[must_use]
pub fn scan(buf: &[u8]) -> Scan {
    let _ = buf;
    unimplemented!()
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `METHOD uri SIP/2.0`.
    Request {
        /// Method token, e.g. `MESSAGE`.
        method: &'a str,
        /// Request-URI.
        uri: &'a str,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: &'a str,
    },
}

/// A parsed SIP message borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Request or status line.
    pub start: StartLine<'a>,
    /// Headers in order; compact names expanded to the long form; folded lines joined.
    pub headers: Vec<(&'a str, Cow<'a, str>)>,
    /// The body (Content-Length bytes).
    pub body: &'a [u8],
}

/// Parses one complete message (a UDP datagram or a [`Scan::Message`] slice).
pub fn parse(buf: &[u8]) -> Result<Message<'_>, SipError> {
    let _ = buf;
    unimplemented!()
}

impl<'a> Message<'a> {
    /// First header `name` (case-insensitive, compact-aware).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        let _ = name;
        unimplemented!()
    }
    /// Every header `name`, in order.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
    /// The method of a request.
    #[must_use]
    pub fn method(&self) -> Option<&str> {
        unimplemented!()
    }
    /// The Call-ID.
    #[must_use]
    pub fn call_id(&self) -> &str {
        unimplemented!()
    }
    /// CSeq number and method.
    #[must_use]
    pub fn cseq(&self) -> (u32, &str) {
        unimplemented!()
    }
    /// The `tag` parameter of From.
    #[must_use]
    pub fn from_tag(&self) -> Option<&str> {
        unimplemented!()
    }
    /// The `tag` parameter of To.
    #[must_use]
    pub fn to_tag(&self) -> Option<&str> {
        unimplemented!()
    }
    /// The `branch` parameter of the first Via.
    #[must_use]
    pub fn top_via_branch(&self) -> Option<&str> {
        unimplemented!()
    }
    /// The From header's URI (inside `<>` if present), e.g. `sip:678@arc.example`.
    #[must_use]
    pub fn from_uri(&self) -> Option<&str> {
        unimplemented!()
    }
    /// The media type of Content-Type (no parameters).
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        unimplemented!()
    }
    /// True for requests.
    #[must_use]
    pub fn is_request(&self) -> bool {
        unimplemented!()
    }
}

/// The user part of a `sip:`/`sips:` URI (`678` of `sip:678@host;x=y`).
#[must_use]
pub fn uri_user(uri: &str) -> Option<&str> {
    let _ = uri;
    unimplemented!()
}

/// Builds a response to `req` as a UAS (RFC 3261 §8.2.6) and appends it to `out`.
#[allow(clippy::too_many_arguments)]
pub fn encode_response(
    req: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, &str)],
    content_type: Option<&str>,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    let _ = (req, code, reason, to_tag, extra, content_type, body, out);
    unimplemented!()
}

/// A request vakt sends as a UAC (the `<mrs>` MESSAGE back to the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutRequest<'a> {
    /// Method, e.g. `MESSAGE`.
    pub method: &'a str,
    /// Request-URI.
    pub uri: &'a str,
    /// Via transport: `UDP`, `TCP` or `TLS`.
    pub via_transport: &'a str,
    /// Via sent-by (`host:port`).
    pub via_host: &'a str,
    /// Via branch (starts with `z9hG4bK`).
    pub branch: &'a str,
    /// From value without tag.
    pub from: &'a str,
    /// From tag.
    pub from_tag: &'a str,
    /// To value.
    pub to: &'a str,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq number.
    pub cseq: u32,
    /// Content-Type of the body.
    pub content_type: Option<&'a str>,
    /// Body.
    pub body: &'a [u8],
}

/// Builds a request and appends it to `out`.
pub fn encode_request(r: &OutRequest<'_>, out: &mut Vec<u8>) {
    let _ = (r, out);
    unimplemented!()
}

/// Random alphanumeric token of `n` chars (tags, branches, Call-IDs).
#[must_use]
pub fn random_token(n: usize) -> String {
    let _ = n;
    unimplemented!()
}

/// Digest credentials from an `Authorization:` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// `username`.
    pub username: Cow<'a, str>,
    /// `realm`.
    pub realm: Cow<'a, str>,
    /// `nonce`.
    pub nonce: Cow<'a, str>,
    /// `uri`.
    pub uri: Cow<'a, str>,
    /// `response` (32 hex digits).
    pub response: Cow<'a, str>,
    /// `algorithm`.
    pub algorithm: Option<Cow<'a, str>>,
    /// `qop`.
    pub qop: Option<Cow<'a, str>>,
    /// `nc`.
    pub nc: Option<Cow<'a, str>>,
    /// `cnonce`.
    pub cnonce: Option<Cow<'a, str>>,
    /// `opaque`.
    pub opaque: Option<Cow<'a, str>>,
}

/// Why an `Authorization:` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Basic authentication (refused).
    #[error("Basic authentication refused")]
    Basic,
    /// Not a Digest scheme.
    #[error("not Digest")]
    NotDigest,
    /// Syntax error in the parameters.
    #[error("malformed Authorization")]
    Malformed,
    /// A mandatory parameter is missing.
    #[error("missing parameter {0}")]
    MissingParam(&'static str),
    /// Algorithm is not MD5.
    #[error("unsupported algorithm")]
    Algorithm,
}

impl AuthError {
    /// Stable label for logs and metrics.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        unimplemented!()
    }
}

/// Parses an `Authorization:` value.
pub fn parse_authorization(value: &str) -> Result<Credentials<'_>, AuthError> {
    let _ = value;
    unimplemented!()
}

/// `Digest realm="..", nonce="..", algorithm=MD5, qop="auth"` (+ `, stale=true`).
#[must_use]
pub fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    let _ = (realm, nonce, stale);
    unimplemented!()
}

/// `hex(MD5(user:realm:password))`.
#[must_use]
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    let _ = (user, realm, password);
    unimplemented!()
}

/// Verifies `creds.response` for `method`; does not check nonce freshness or realm.
#[must_use]
pub fn verify(creds: &Credentials<'_>, method: &str, ha1_hex: &str) -> bool {
    let _ = (creds, method, ha1_hex);
    unimplemented!()
}

/// The Digest response a client computes.
#[must_use]
pub fn digest_response(
    ha1_hex: &str,
    nonce: &str,
    nc: Option<&str>,
    cnonce: Option<&str>,
    qop: Option<&str>,
    method: &str,
    uri: &str,
) -> String {
    let _ = (ha1_hex, nonce, nc, cnonce, qop, method, uri);
    unimplemented!()
}

/// Stateless nonce: `hex(issued_secs) + hex(HMAC-SHA256(secret, issued_secs)[..16])`.
#[must_use]
pub fn make_nonce(secret: &[u8], now_secs: i64) -> String {
    let _ = (secret, now_secs);
    unimplemented!()
}

/// Result of [`check_nonce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours and within the age bound.
    Fresh,
    /// Ours but too old (challenge again with `stale=true`).
    Stale,
    /// Not ours.
    Invalid,
}

/// Checks a nonce made by [`make_nonce`].
#[must_use]
pub fn check_nonce(secret: &[u8], nonce: &str, now_secs: i64, max_age_secs: i64) -> NonceCheck {
    let _ = (secret, nonce, now_secs, max_age_secs);
    unimplemented!()
}
