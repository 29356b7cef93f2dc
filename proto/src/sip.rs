//! SIP (RFC 3261) subset for SCAIP (protocols.md §3.2): stream framing, message parsing,
//! responses as a UAS, requests as a UAC, and Digest authentication (RFC 2617, MD5 only).
//!
//! Receive path: [`scan`] frames one message on a TCP/TLS stream (or a keep-alive), a UDP
//! datagram goes straight to [`parse`]. Replies are built with [`encode_response`]; the
//! `<mrs>` MESSAGE back to the device with [`encode_request`]. Authentication: [`challenge`]
//! with a stateless nonce from [`make_nonce`], then [`parse_authorization`],
//! [`check_nonce`], [`uri_matches`] (the Digest `uri` is the request's), [`verify`] and
//! [`NonceCounts::check`] (a nonce count is good for one request).
//!
//! Strict where it matters: CRLF line ends, `SIP/2.0` only, one From/To/Call-ID/CSeq,
//! no control characters in the header block, Content-Length mandatory on streams.
//! Bounded by [`MAX_MESSAGE_BYTES`] and [`MAX_HEADERS`]; never panics on any input.
//! `proto/scaip.md` documents the subset.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// Largest SIP message vakt reads (start line + headers + body).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Most header lines.
pub const MAX_HEADERS: usize = 64;
/// Most parameters in an `Authorization:` value.
const MAX_AUTH_PARAMS: usize = 32;

/// Why a SIP message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// The start line is not a request or status line.
    #[error("bad start line")]
    BadStartLine,
    /// The SIP version is not `SIP/2.0`.
    #[error("bad SIP version")]
    BadVersion,
    /// A header line has no name or colon, or holds a control character.
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
    /// A mandatory header is missing (or empty).
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header that must appear once appears more than once.
    #[error("duplicate header {0}")]
    DuplicateHeader(&'static str),
    /// Content-Length is larger than the bytes present.
    #[error("body shorter than Content-Length")]
    BodyLength,
    /// The header block is not terminated by an empty line.
    #[error("header block not terminated")]
    Truncated,
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
        match self {
            SipError::BadStartLine => "bad_start_line",
            SipError::BadVersion => "bad_version",
            SipError::BadHeader => "bad_header",
            SipError::TooManyHeaders => "too_many_headers",
            SipError::TooLarge => "too_large",
            SipError::BadContentLength => "bad_content_length",
            SipError::NoContentLength => "no_content_length",
            SipError::MissingHeader(_) => "missing_header",
            SipError::DuplicateHeader(_) => "duplicate_header",
            SipError::BodyLength => "body_length",
            SipError::Truncated => "truncated",
            SipError::NotUtf8 => "not_utf8",
            SipError::BadCSeq => "bad_cseq",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------

/// Stream framing (TCP/TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A whole message is `buf[..len]` (headers + Content-Length body).
    Message {
        /// Bytes of the message.
        len: usize,
    },
    /// `n` leading bytes are keep-alive CRLFs: drop them. `ping` is true when they were a
    /// double-CRLF ping (RFC 5626 §4.4.1) that must be answered with a single CRLF.
    KeepAlive {
        /// Bytes to drop (> 0).
        n: usize,
        /// Answer with "\r\n".
        ping: bool,
    },
    /// More bytes are needed.
    Incomplete,
    /// The stream is broken: close the connection.
    Invalid(SipError),
}

const PING: &[u8] = b"\r\n\r\n";

/// Frames one message (or keep-alive) at the start of a stream buffer.
///
/// * `"\r\n\r\n"` first: `KeepAlive { n: 4, ping: true }`; a lone CRLF (a pong, or an
///   empty line before a start line, RFC 3261 §7.5): `KeepAlive { n: 2, ping: false }`;
///   a bare CR or LF: `n: 1`. A buffer that is only a prefix of `"\r\n\r\n"` is `Incomplete`.
/// * Otherwise the header block up to the empty line is read (at most
///   [`MAX_MESSAGE_BYTES`]) and its Content-Length (mandatory on streams, RFC 3261 §18.3)
///   gives the body: `Message { len }` once all of it is in `buf`.
///
/// O(n) in the bytes examined, at most [`MAX_MESSAGE_BYTES`]; never panics.
#[must_use]
pub fn scan(buf: &[u8]) -> Scan {
    match buf.first() {
        None => return Scan::Incomplete,
        Some(b'\r' | b'\n') => {
            if buf.starts_with(PING) {
                return Scan::KeepAlive { n: 4, ping: true };
            }
            if PING.starts_with(buf) {
                return Scan::Incomplete;
            }
            let n = if buf.starts_with(b"\r\n") { 2 } else { 1 };
            return Scan::KeepAlive { n, ping: false };
        }
        Some(_) => {}
    }
    let window = buf.get(..buf.len().min(MAX_MESSAGE_BYTES)).unwrap_or(buf);
    let Some(end) = find(window, PING) else {
        return if buf.len() >= MAX_MESSAGE_BYTES {
            Scan::Invalid(SipError::TooLarge)
        } else {
            Scan::Incomplete
        };
    };
    let Some(head) = buf.get(..end) else {
        return Scan::Incomplete;
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return Scan::Invalid(SipError::NotUtf8);
    };
    let hdrs = head.split_once("\r\n").map_or("", |(_, h)| h);
    let headers = match parse_headers(hdrs) {
        Ok(h) => h,
        Err(e) => return Scan::Invalid(e),
    };
    let cl = match content_length(&headers) {
        Ok(Some(n)) => n,
        Ok(None) => return Scan::Invalid(SipError::NoContentLength),
        Err(e) => return Scan::Invalid(e),
    };
    let total = end + PING.len() + cl;
    if total > MAX_MESSAGE_BYTES {
        Scan::Invalid(SipError::TooLarge)
    } else if buf.len() >= total {
        Scan::Message { len: total }
    } else {
        Scan::Incomplete
    }
}

/// Index of the first occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `METHOD uri SIP/2.0`.
    Request {
        /// Method token, e.g. `MESSAGE` (case-sensitive, RFC 3261 §7.1).
        method: &'a str,
        /// Request-URI.
        uri: &'a str,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase (may be empty).
        reason: &'a str,
    },
}

/// A parsed SIP message borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Request or status line.
    pub start: StartLine<'a>,
    /// Headers in order. Compact names (`v f t i l c m k e s`) are expanded to the long
    /// form (`Via`, `From`, `To`, `Call-ID`, `Content-Length`, `Content-Type`, `Contact`,
    /// `Supported`, `Content-Encoding`, `Subject`); other names are kept as sent. Values
    /// are trimmed; folded lines (RFC 3261 §7.3.1) are joined with one space.
    pub headers: Vec<(&'a str, Cow<'a, str>)>,
    /// The body (Content-Length bytes, or the rest of a datagram without Content-Length).
    pub body: &'a [u8],
}

const COMPACT: [(&str, &str); 10] = [
    ("v", "Via"),
    ("f", "From"),
    ("t", "To"),
    ("i", "Call-ID"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("m", "Contact"),
    ("k", "Supported"),
    ("e", "Content-Encoding"),
    ("s", "Subject"),
];

/// The long form of a compact header name; other names unchanged.
fn long_name(name: &str) -> &str {
    COMPACT
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(name))
        .map_or(name, |(_, long)| long)
}

/// RFC 3261 `token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

fn trim_lws(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Parses one complete message (a UDP datagram or a [`Scan::Message`] slice).
///
/// Leading CRLFs are skipped (RFC 3261 §7.5). On a datagram Content-Length may be absent
/// (the body is the rest); if present it must be <= the rest, and bytes after it are
/// ignored (RFC 3261 §18.3). Requires Via, From, To, Call-ID and CSeq; From, To, Call-ID
/// and CSeq at most once; for requests the CSeq method equals the request method.
pub fn parse(buf: &[u8]) -> Result<Message<'_>, SipError> {
    if buf.len() > MAX_MESSAGE_BYTES {
        return Err(SipError::TooLarge);
    }
    let skip = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let buf = buf.get(skip..).unwrap_or_default();
    let end = find(buf, PING).ok_or(SipError::Truncated)?;
    let head = buf.get(..end).ok_or(SipError::Truncated)?;
    let rest = buf.get(end + PING.len()..).unwrap_or_default();
    let head = std::str::from_utf8(head).map_err(|_| SipError::NotUtf8)?;
    let (first, hdrs) = head.split_once("\r\n").unwrap_or((head, ""));
    let start = parse_start_line(first)?;
    let headers = parse_headers(hdrs)?;
    let body = match content_length(&headers)? {
        Some(n) => rest.get(..n).ok_or(SipError::BodyLength)?,
        None => rest,
    };
    let msg = Message {
        start,
        headers,
        body,
    };
    if msg.header("Via").is_none() {
        return Err(SipError::MissingHeader("Via"));
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        let mut values = msg.headers_named(name);
        match values.next() {
            Some(v) if !v.is_empty() => {}
            _ => return Err(SipError::MissingHeader(name)),
        }
        if values.next().is_some() {
            return Err(SipError::DuplicateHeader(name));
        }
    }
    let cseq = msg.header("CSeq").unwrap_or_default();
    let (_, cseq_method) = parse_cseq(cseq).ok_or(SipError::BadCSeq)?;
    if let StartLine::Request { method, .. } = msg.start
        && method != cseq_method
    {
        return Err(SipError::BadCSeq);
    }
    Ok(msg)
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, SipError> {
    if line.bytes().any(|b| b.is_ascii_control()) {
        return Err(SipError::BadStartLine);
    }
    let mut parts = line.splitn(3, ' ');
    let a = parts.next().unwrap_or_default();
    let b = parts.next().ok_or(SipError::BadStartLine)?;
    let c = parts.next();
    if a.len() >= 4 && a.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/")) {
        if !a.eq_ignore_ascii_case("SIP/2.0") {
            return Err(SipError::BadVersion);
        }
        if b.len() != 3 || !b.bytes().all(|d| d.is_ascii_digit()) {
            return Err(SipError::BadStartLine);
        }
        let code: u16 = b.parse().map_err(|_| SipError::BadStartLine)?;
        if !(100..=699).contains(&code) {
            return Err(SipError::BadStartLine);
        }
        return Ok(StartLine::Response {
            code,
            reason: c.unwrap_or_default(),
        });
    }
    let version = c.ok_or(SipError::BadStartLine)?;
    if !is_token(a) || b.is_empty() || !b.contains(':') || version.contains(' ') {
        return Err(SipError::BadStartLine);
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(SipError::BadVersion);
    }
    Ok(StartLine::Request { method: a, uri: b })
}

/// Parses the header lines (between the start line and the empty line).
fn parse_headers(block: &str) -> Result<Vec<(&str, Cow<'_, str>)>, SipError> {
    let mut headers: Vec<(&str, Cow<'_, str>)> = Vec::new();
    if block.is_empty() {
        return Ok(headers);
    }
    for line in block.split("\r\n") {
        if line
            .bytes()
            .any(|b| (b.is_ascii_control() && b != b'\t') || b == 0x7f)
        {
            return Err(SipError::BadHeader);
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = headers.last_mut() else {
                return Err(SipError::BadHeader);
            };
            let more = trim_lws(line);
            if !more.is_empty() {
                let v = value.to_mut();
                if !v.is_empty() {
                    v.push(' ');
                }
                v.push_str(more);
            }
            continue;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(SipError::TooManyHeaders);
        }
        let (name, value) = line.split_once(':').ok_or(SipError::BadHeader)?;
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err(SipError::BadHeader);
        }
        headers.push((long_name(name), Cow::Borrowed(trim_lws(value))));
    }
    Ok(headers)
}

/// The Content-Length, if any; every occurrence must be a number and agree.
fn content_length(headers: &[(&str, Cow<'_, str>)]) -> Result<Option<usize>, SipError> {
    let mut found = None;
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SipError::BadContentLength);
        }
        let n: usize = value.parse().map_err(|_| SipError::BadContentLength)?;
        if found.is_some_and(|f| f != n) {
            return Err(SipError::BadContentLength);
        }
        found = Some(n);
    }
    Ok(found)
}

/// `number LWS method`; the number below 2^31 (RFC 3261 §8.1.1.5).
fn parse_cseq(v: &str) -> Option<(u32, &str)> {
    let mut it = v.split_ascii_whitespace();
    let num = it.next()?;
    let method = it.next()?;
    if it.next().is_some() || num.len() > 10 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = num.parse().ok()?;
    (n < 1 << 31 && is_token(method)).then_some((n, method))
}

/// Splits at the first `c` outside double quotes and angle brackets.
fn split_top(v: &str, c: u8) -> (&str, Option<&str>) {
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    for (i, b) in v.bytes().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = false;
            }
            continue;
        }
        match b {
            b'"' => quoted = true,
            b'<' => angle = true,
            b'>' => angle = false,
            _ if b == c && !angle => {
                return (v.get(..i).unwrap_or(v), v.get(i + 1..));
            }
            _ => {}
        }
    }
    (v, None)
}

/// The value of parameter `name` in `;a=b;c=d` (case-insensitive name); `Some("")` for a
/// parameter without value.
fn param<'v>(params: &'v str, name: &str) -> Option<&'v str> {
    params.split(';').find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        trim_lws(n)
            .eq_ignore_ascii_case(name)
            .then(|| trim_lws(v).trim_matches('"'))
    })
}

/// Splits a From/To/Contact value into its URI and its header parameters.
fn name_addr(v: &str) -> Option<(&str, &str)> {
    let v = trim_lws(v);
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in v.bytes().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = false;
            }
            continue;
        }
        match b {
            b'"' => quoted = true,
            b'<' => {
                let inner = v.get(i + 1..)?;
                let close = inner.find('>')?;
                return Some((
                    trim_lws(inner.get(..close)?),
                    inner.get(close + 1..).unwrap_or_default(),
                ));
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    Some(match v.split_once(';') {
        Some((uri, params)) => (trim_lws(uri), params),
        None => (v, ""),
    })
}

fn tag_of(v: Option<&str>) -> Option<&str> {
    let (_, params) = name_addr(v?)?;
    param(params, "tag").filter(|t| !t.is_empty())
}

impl<'a> Message<'a> {
    /// First header `name` (case-insensitive, compact-aware).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = long_name(name);
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// Every header `name`, in order (case-insensitive, compact-aware). A header line with
    /// comma-separated values is one item.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> {
        let name = long_name(name);
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// The method of a request; `None` for a response.
    #[must_use]
    pub fn method(&self) -> Option<&str> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Call-ID (empty when absent, which [`parse`] refuses).
    #[must_use]
    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or_default()
    }

    /// CSeq number and method (`(0, "")` when malformed, which [`parse`] refuses).
    #[must_use]
    pub fn cseq(&self) -> (u32, &str) {
        self.header("CSeq").and_then(parse_cseq).unwrap_or((0, ""))
    }

    /// The `tag` parameter of From.
    #[must_use]
    pub fn from_tag(&self) -> Option<&str> {
        tag_of(self.header("From"))
    }

    /// The `tag` parameter of To.
    #[must_use]
    pub fn to_tag(&self) -> Option<&str> {
        tag_of(self.header("To"))
    }

    /// The `branch` parameter of the first Via value.
    #[must_use]
    pub fn top_via_branch(&self) -> Option<&str> {
        let (top, _) = split_top(self.header("Via")?, b',');
        let (_, params) = top.split_once(';')?;
        param(params, "branch").filter(|b| !b.is_empty())
    }

    /// The first Contact's URI (inside `<>` if present); `None` without Contact, for `*`
    /// or for an empty one.
    #[must_use]
    pub fn contact_uri(&self) -> Option<&str> {
        let (first, _) = split_top(self.header("Contact")?, b',');
        let (uri, _) = name_addr(first)?;
        (!uri.is_empty() && uri != "*").then_some(uri)
    }

    /// The From header's URI (inside `<>` if present), e.g. `sip:678@arc.example`.
    #[must_use]
    pub fn from_uri(&self) -> Option<&str> {
        let (uri, _) = name_addr(self.header("From")?)?;
        (!uri.is_empty()).then_some(uri)
    }

    /// The media type of Content-Type, without parameters (case as sent).
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        let v = self.header("Content-Type")?;
        let t = trim_lws(v.split(';').next().unwrap_or_default());
        (!t.is_empty()).then_some(t)
    }

    /// True for requests.
    #[must_use]
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
}

/// The user part of a `sip:`/`sips:` URI (`678` of `sip:678@host;x=y`); `None` for other
/// schemes or a URI without user.
#[must_use]
pub fn uri_user(uri: &str) -> Option<&str> {
    let uri = trim_lws(uri);
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let (userinfo, _) = rest.split_once('@')?;
    let user = userinfo.split(':').next().unwrap_or_default();
    (!user.is_empty()).then_some(user)
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// Appends `s` without CR and LF (no header injection from caller-supplied values).
fn push_clean(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().filter(|&b| b != b'\r' && b != b'\n'));
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    push_clean(out, name);
    out.extend_from_slice(b": ");
    push_clean(out, value);
    out.extend_from_slice(b"\r\n");
}

/// Builds a response to `req` as a UAS (RFC 3261 §8.2.6) and appends it to `out`: every
/// Via copied in order, From, Call-ID and CSeq copied, To copied with `;tag=to_tag` added
/// when the request's To has no tag (and `to_tag` is not empty), then the `extra` headers,
/// Content-Type when the body is not empty, and Content-Length always. The Via is copied as
/// it came; a server answering a request from the network uses [`encode_response_from`].
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
    encode_response_from(
        None,
        req,
        code,
        reason,
        to_tag,
        extra,
        content_type,
        body,
        out,
    );
}

/// [`encode_response`] for a request that came from `source`: the top Via gets
/// `received=<source IP>` when the device asked for `rport` or its sent-by is not that
/// address (RFC 3261 §18.2.1), and `rport=<source port>` when it asked for `rport` (RFC
/// 3581 §4), so a device behind NAT matches the response, sent to the source address and
/// port, to its request.
#[allow(clippy::too_many_arguments)]
pub fn encode_response_from(
    source: Option<std::net::SocketAddr>,
    req: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, &str)],
    content_type: Option<&str>,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(format!("SIP/2.0 {code:03} ").as_bytes());
    push_clean(out, reason);
    out.extend_from_slice(b"\r\n");
    for (i, via) in req.headers_named("Via").enumerate() {
        match source {
            Some(src) if i == 0 => push_header(out, "Via", &stamp_via(via, src)),
            _ => push_header(out, "Via", via),
        }
    }
    push_header(out, "From", req.header("From").unwrap_or_default());
    let to = req.header("To").unwrap_or_default();
    if req.to_tag().is_none() && !to_tag.is_empty() {
        push_header(out, "To", &format!("{to};tag={to_tag}"));
    } else {
        push_header(out, "To", to);
    }
    push_header(out, "Call-ID", req.call_id());
    push_header(out, "CSeq", req.header("CSeq").unwrap_or_default());
    for (name, value) in extra {
        push_header(out, name, value);
    }
    finish(out, content_type, body);
}

/// The first Via header value `via` (its first via-parm is the top Via) with `received`
/// and `rport` set for a request from `source` (see [`encode_response_from`]). A top Via
/// that does not read as `SIP/2.0/transport sent-by` is kept as it is.
#[must_use]
pub fn stamp_via(via: &str, source: std::net::SocketAddr) -> Cow<'_, str> {
    let (top, rest) = split_top(via, b',');
    let top = trim_lws(top);
    let Some((protocol, after)) = top.split_once([' ', '\t']) else {
        return Cow::Borrowed(via);
    };
    let after = trim_lws(after);
    let mut parts = after.split(';');
    let sent_by = trim_lws(parts.next().unwrap_or_default());
    if sent_by.is_empty() {
        return Cow::Borrowed(via);
    }
    let params: Vec<&str> = parts.map(trim_lws).filter(|p| !p.is_empty()).collect();
    let name = |p: &str| {
        p.split('=')
            .next()
            .map(trim_lws)
            .unwrap_or_default()
            .to_owned()
    };
    let rport = params.iter().any(|p| name(p).eq_ignore_ascii_case("rport"));
    let host = match sent_by.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => sent_by.split(':').next().unwrap_or_default(),
    };
    let same_host = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip == source.ip());
    let received = rport || !same_host;
    let mut out = format!("{protocol} {sent_by}");
    for p in &params {
        let n = name(p);
        if n.eq_ignore_ascii_case("received") {
            continue;
        }
        if n.eq_ignore_ascii_case("rport") {
            out.push_str(&format!(
                ";received={};rport={}",
                source.ip(),
                source.port()
            ));
            continue;
        }
        out.push(';');
        out.push_str(p);
    }
    if received && !rport {
        out.push_str(&format!(";received={}", source.ip()));
    }
    if let Some(rest) = rest {
        out.push(',');
        out.push_str(rest);
    }
    Cow::Owned(out)
}

/// Content-Type (when the body is not empty), Content-Length, the empty line and the body.
fn finish(out: &mut Vec<u8>, content_type: Option<&str>, body: &[u8]) {
    if let Some(ct) = content_type.filter(|_| !body.is_empty()) {
        push_header(out, "Content-Type", ct);
    }
    push_header(out, "Content-Length", &body.len().to_string());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// A request vakt sends as a UAC (the `<mrs>` MESSAGE back to the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutRequest<'a> {
    /// Method, e.g. `MESSAGE`.
    pub method: &'a str,
    /// Request-URI, e.g. `sip:678@192.0.2.1:5060;transport=tcp`.
    pub uri: &'a str,
    /// Via transport: `UDP`, `TCP` or `TLS`.
    pub via_transport: &'a str,
    /// Via sent-by (`host:port`).
    pub via_host: &'a str,
    /// Via branch (starts with `z9hG4bK`).
    pub branch: &'a str,
    /// From value without tag, e.g. `<sip:arc@vakt>`.
    pub from: &'a str,
    /// From tag.
    pub from_tag: &'a str,
    /// To value, e.g. `<sip:678@host>`.
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

/// Builds a request and appends it to `out`: Via with `;rport` (RFC 3581), Max-Forwards 70,
/// From with tag, To, Call-ID, CSeq, `User-Agent: vakt`, Content-Type (when the body is not
/// empty) and Content-Length.
pub fn encode_request(r: &OutRequest<'_>, out: &mut Vec<u8>) {
    encode_request_with(r, &[], out);
}

/// Random alphanumeric token of `n` chars (tags, branches, Call-IDs).
#[must_use]
pub fn random_token(n: usize) -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Digest
// ---------------------------------------------------------------------------------------

/// Digest credentials from an `Authorization:` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// `username`.
    pub username: Cow<'a, str>,
    /// `realm`.
    pub realm: Cow<'a, str>,
    /// `nonce`.
    pub nonce: Cow<'a, str>,
    /// `uri` (digest-uri).
    pub uri: Cow<'a, str>,
    /// `response` (32 hex digits).
    pub response: Cow<'a, str>,
    /// `algorithm` (only `MD5` is accepted).
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
    /// Basic authentication (forbidden by SS 91100 §8).
    #[error("Basic authentication refused")]
    Basic,
    /// Not the Digest scheme.
    #[error("not Digest")]
    NotDigest,
    /// Syntax error, a repeated parameter, or too many parameters.
    #[error("malformed Authorization")]
    Malformed,
    /// A mandatory parameter is missing.
    #[error("missing parameter {0}")]
    MissingParam(&'static str),
    /// The algorithm is not MD5.
    #[error("unsupported algorithm")]
    Algorithm,
}

impl AuthError {
    /// Stable label for logs and metrics.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthError::Basic => "basic",
            AuthError::NotDigest => "not_digest",
            AuthError::Malformed => "malformed",
            AuthError::MissingParam(_) => "missing_param",
            AuthError::Algorithm => "algorithm",
        }
    }
}

/// Reads a quoted-string starting after the opening quote; returns the value and the
/// index after the closing quote.
fn quoted(s: &str, from: usize) -> Option<(Cow<'_, str>, usize)> {
    let body = s.get(from..)?;
    let mut owned: Option<String> = None;
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let value = match owned {
                    Some(o) => Cow::Owned(o),
                    None => Cow::Borrowed(body.get(..i)?),
                };
                return Some((value, from + i + 1));
            }
            '\\' => {
                let (_, next) = chars.next()?;
                owned
                    .get_or_insert_with(|| body.get(..i).unwrap_or_default().to_string())
                    .push(next);
            }
            _ => {
                if let Some(o) = owned.as_mut() {
                    o.push(c);
                }
            }
        }
    }
    None
}

/// The parameters of a `Digest` credentials or challenge value (`Basic` is
/// [`AuthError::Basic`], another scheme [`AuthError::NotDigest`]): names and values in order,
/// values as tokens or quoted strings (unescaped); a repeated name is [`AuthError::Malformed`].
fn digest_params(value: &str) -> Result<Vec<(&str, Cow<'_, str>)>, AuthError> {
    let v = trim_lws(value);
    let split = v.find([' ', '\t']).unwrap_or(v.len());
    let scheme = v.get(..split).unwrap_or_default();
    if scheme.eq_ignore_ascii_case("Basic") {
        return Err(AuthError::Basic);
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    let b = v.as_bytes();
    let mut i = split;
    let mut params: Vec<(&str, Cow<'_, str>)> = Vec::new();
    let skip_lws = |i: &mut usize| {
        while b.get(*i).is_some_and(|&c| c == b' ' || c == b'\t') {
            *i += 1;
        }
    };
    loop {
        while b
            .get(i)
            .is_some_and(|&c| c == b' ' || c == b'\t' || c == b',')
        {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while b.get(i).copied().is_some_and(is_token_char) {
            i += 1;
        }
        let name = v.get(start..i).ok_or(AuthError::Malformed)?;
        if name.is_empty() {
            return Err(AuthError::Malformed);
        }
        skip_lws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err(AuthError::Malformed);
        }
        i += 1;
        skip_lws(&mut i);
        let value = if b.get(i) == Some(&b'"') {
            let (val, next) = quoted(v, i + 1).ok_or(AuthError::Malformed)?;
            i = next;
            val
        } else {
            let start = i;
            while b.get(i).copied().is_some_and(is_token_char) {
                i += 1;
            }
            let tok = v.get(start..i).ok_or(AuthError::Malformed)?;
            if tok.is_empty() {
                return Err(AuthError::Malformed);
            }
            Cow::Borrowed(tok)
        };
        skip_lws(&mut i);
        if i < b.len() && b.get(i) != Some(&b',') {
            return Err(AuthError::Malformed);
        }
        if params.len() >= MAX_AUTH_PARAMS
            || params.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Err(AuthError::Malformed);
        }
        params.push((name, value));
    }
    Ok(params)
}

/// Parses an `Authorization:` (or `Proxy-Authorization:`) value: the `Digest` scheme,
/// parameters in any order with case-insensitive names, values as tokens or quoted strings
/// (with `\` escapes). Unknown parameters are ignored; a repeated one is
/// [`AuthError::Malformed`]. `Basic ...` is [`AuthError::Basic`].
pub fn parse_authorization(value: &str) -> Result<Credentials<'_>, AuthError> {
    let mut params = digest_params(value)?;
    let mut take = |name: &'static str| {
        params
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|at| params.swap_remove(at).1)
    };
    let username = take("username").ok_or(AuthError::MissingParam("username"))?;
    let realm = take("realm").ok_or(AuthError::MissingParam("realm"))?;
    let nonce = take("nonce").ok_or(AuthError::MissingParam("nonce"))?;
    let uri = take("uri").ok_or(AuthError::MissingParam("uri"))?;
    let response = take("response").ok_or(AuthError::MissingParam("response"))?;
    let algorithm = take("algorithm");
    if algorithm
        .as_deref()
        .is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
    {
        return Err(AuthError::Algorithm);
    }
    Ok(Credentials {
        username,
        realm,
        nonce,
        uri,
        response,
        algorithm,
        qop: take("qop"),
        nc: take("nc"),
        cnonce: take("cnonce"),
        opaque: take("opaque"),
    })
}

/// Appends `s` as the inside of a quoted-string (`"` and `\` escaped, CR/LF dropped).
fn push_quoted(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => {}
            _ => out.push(c),
        }
    }
}

/// The `WWW-Authenticate:` value `Digest realm="..", nonce="..", algorithm=MD5, qop="auth"`
/// (+ `, stale=true`).
#[must_use]
pub fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    let mut s = String::from("Digest realm=\"");
    push_quoted(&mut s, realm);
    s.push_str("\", nonce=\"");
    push_quoted(&mut s, nonce);
    s.push_str("\", algorithm=MD5, qop=\"auth\"");
    if stale {
        s.push_str(", stale=true");
    }
    s
}

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// `hex(MD5(user:realm:password))` (RFC 2617 §3.2.2.2), lower-case.
#[must_use]
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    md5_hex(&[user, realm, password])
}

/// The Digest response a client computes (RFC 2617 §3.2.2.1), lower-case hex: with
/// `qop` `MD5(HA1:nonce:nc:cnonce:qop:HA2)`, without `MD5(HA1:nonce:HA2)`;
/// `HA2 = MD5(method:uri)`.
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
    let ha2 = md5_hex(&[method, uri]);
    match qop {
        Some(q) => md5_hex(&[
            ha1_hex,
            nonce,
            nc.unwrap_or_default(),
            cnonce.unwrap_or_default(),
            q,
            &ha2,
        ]),
        None => md5_hex(&[ha1_hex, nonce, &ha2]),
    }
}

/// Equality in time independent of where the first difference is.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Verifies `creds.response` for `method` against `ha1_hex` (qop `auth` with nc and cnonce,
/// or no qop; `auth-int` and other qops are refused). Constant-time compare, hex case
/// ignored. Does not check nonce freshness or realm.
#[must_use]
pub fn verify(creds: &Credentials<'_>, method: &str, ha1_hex: &str) -> bool {
    if creds
        .algorithm
        .as_deref()
        .is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
    {
        return false;
    }
    let qop = creds.qop.as_deref();
    let qop_ok = match qop {
        None => true,
        Some(q) => q.eq_ignore_ascii_case("auth") && creds.nc.is_some() && creds.cnonce.is_some(),
    };
    if !qop_ok {
        return false;
    }
    let expected = digest_response(
        &ha1_hex.to_ascii_lowercase(),
        &creds.nonce,
        creds.nc.as_deref(),
        creds.cnonce.as_deref(),
        qop,
        method,
        &creds.uri,
    );
    ct_eq(
        expected.as_bytes(),
        creds.response.to_ascii_lowercase().as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------
// Replay: the Digest uri and nonce counts
// ---------------------------------------------------------------------------------------

/// A `sip:`/`sips:` URI split for comparison (RFC 3261 §19.1.4).
#[derive(Debug)]
struct SipUri<'a> {
    user: Option<Cow<'a, str>>,
    password: Option<Cow<'a, str>>,
    host: String,
    port: Option<u16>,
    params: Vec<(String, Cow<'a, str>)>,
}

/// `%XX` escapes decoded (invalid escapes kept as they are).
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

impl<'a> SipUri<'a> {
    fn parse(uri: &'a str) -> Option<SipUri<'a>> {
        let uri = trim_lws(uri);
        let (scheme, rest) = uri.split_once(':')?;
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return None;
        }
        // Headers (`?...`) are not allowed in a Request-URI; they are not compared.
        let rest = rest.split('?').next().unwrap_or_default();
        let (userinfo, hostpart) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(unescape(u)), Some(unescape(p))),
                None => (Some(unescape(u)), None),
            },
        };
        let mut parts = hostpart.split(';');
        let hostport = parts.next().unwrap_or_default();
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return None;
        }
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok()?),
        };
        let host = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => host.trim_end_matches('.').to_ascii_lowercase(),
        };
        let params = parts
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                (unescape(n).to_ascii_lowercase(), unescape(v))
            })
            .collect();
        Some(SipUri {
            user,
            password,
            host,
            port,
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// RFC 3261 §19.1.4, with the tolerances of [`uri_matches`].
    fn matches(&self, other: &SipUri<'_>) -> bool {
        if self.user != other.user || self.password != other.password || self.host != other.host {
            return false;
        }
        if let (Some(a), Some(b)) = (self.port, other.port)
            && a != b
        {
            return false;
        }
        // These must agree when either URI has them; any other parameter (transport
        // included) only when both have it.
        const STRICT: [&str; 4] = ["user", "method", "ttl", "maddr"];
        let names = self.params.iter().chain(&other.params).map(|(n, _)| n);
        for name in names {
            let (a, b) = (self.param(name), other.param(name));
            match (a, b) {
                (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => return false,
                (Some(_), None) | (None, Some(_)) if STRICT.contains(&name.as_str()) => {
                    return false;
                }
                _ => {}
            }
        }
        true
    }
}

/// Whether a Digest `uri` names the same resource as the Request-URI (RFC 2617 §3.2.2.5:
/// the server checks it, so credentials computed for one request cannot be used on another).
/// `sip:`/`sips:` URIs are compared as SIP URIs (RFC 3261 §19.1.4: scheme and host case,
/// `%` escapes and parameter order do not matter; user and password are case-sensitive;
/// `user`, `method`, `ttl` and `maddr` must agree when either has them, other parameters when
/// both have them), tolerating what devices and SIPp send: `sip` for `sips`, a port on one
/// side only, `transport` on one side only. Any other URI must be byte-equal. Never panics.
#[must_use]
pub fn uri_matches(digest_uri: &str, request_uri: &str) -> bool {
    match (SipUri::parse(digest_uri), SipUri::parse(request_uri)) {
        (Some(a), Some(b)) => a.matches(&b),
        (None, None) => trim_lws(digest_uri) == trim_lws(request_uri),
        _ => false,
    }
}

/// Why [`NonceCounts::check`] refused a request's nonce count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Replay {
    /// This nonce count (or, without qop, this nonce) was already used.
    #[error("nonce count already used")]
    Reused,
    /// The nonce was given up for the user's newer ones: it must be renewed.
    #[error("nonce given up for newer ones")]
    Expired,
}

impl Replay {
    /// Stable label for logs and metrics.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Replay::Reused => "replay",
            Replay::Expired => "stale",
        }
    }
}

/// Nonce counts kept per user: (nonce, cnonce) pairs in use at once before the oldest nonce
/// is given up (the user's requests with it are then answered `stale=true`).
pub const NONCE_USES_PER_USER: usize = 32;
/// Nonce counts below the highest seen that still count (for requests that overtook each
/// other), as in IPsec's anti-replay window.
const NC_WINDOW: u32 = 64;

/// One (nonce, cnonce) pair in use by a user.
#[derive(Debug, Clone, Copy)]
struct NonceUse {
    /// When the nonce was issued (its lifetime runs from there).
    issued: i64,
    /// The nonce's serial ([`make_nonce`]).
    serial: u64,
    /// Keyed hash of the nonce and the cnonce (no cnonce: a request without qop).
    key: u64,
    /// The highest nonce count seen.
    max_nc: u32,
    /// Bit `i`: nonce count `max_nc - i` seen.
    seen: u64,
}

#[derive(Debug, Default)]
struct UserUses {
    /// Nonces with this serial or a lower one are no longer accepted from the user, and the
    /// issue time of the nonce that set it (the floor matters until that nonce expires).
    floor: Option<(u64, i64)>,
    uses: Vec<NonceUse>,
}

/// The nonce counts authenticated requests used, so that a captured `Authorization` header
/// is good for one request only (RFC 2617 §3.2.2: the server tracks `nc` per nonce): with
/// `qop=auth`, each nonce count of a (nonce, cnonce) pair is accepted once (counts that
/// overtook each other within a window of 64 too); without qop (RFC 2069), a nonce is good
/// for one request. State is kept only for authenticated requests, per SIP user (whose
/// number the registry bounds), at most [`NONCE_USES_PER_USER`] pairs each, and is forgotten
/// when the nonce expires. When a user's pairs are full, its oldest nonce is given up: every
/// pair of that nonce or an older one (by serial: nonces are issued with increasing serials)
/// is dropped and such nonces are refused from then on ([`Replay::Expired`], answered
/// `stale=true`, so the device takes a newer nonce), so forgetting never reopens a replay.
/// Pure: `now` is a parameter.
#[derive(Debug)]
pub struct NonceCounts {
    users: std::collections::HashMap<String, UserUses>,
    hasher: std::collections::hash_map::RandomState,
    lifetime_secs: i64,
    last_sweep: i64,
}

impl NonceCounts {
    /// Counts for nonces that live `lifetime_secs`.
    #[must_use]
    pub fn new(lifetime_secs: i64) -> NonceCounts {
        NonceCounts {
            users: std::collections::HashMap::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            lifetime_secs,
            last_sweep: i64::MIN,
        }
    }

    /// Users with counts remembered.
    #[must_use]
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Pairs remembered in all.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.values().map(|u| u.uses.len()).sum()
    }

    /// True when nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Records the use of `creds` (already verified, its nonce fresh; `issued` and `serial`
    /// from [`nonce_parts`]) by `user` at `now`; refuses a count, or a nonce without qop,
    /// already used, and a nonce given up.
    pub fn check(
        &mut self,
        user: &str,
        creds: &Credentials<'_>,
        (issued, serial): (i64, u64),
        now: i64,
    ) -> Result<(), Replay> {
        self.sweep(now);
        // nc is 8 hex digits (RFC 2617 §3.2.2); verify() has checked it is there with qop.
        let nc = match creds.qop {
            Some(_) => Some(
                creds
                    .nc
                    .as_deref()
                    .filter(|n| (1..=8).contains(&n.len()))
                    .and_then(|n| u32::from_str_radix(n, 16).ok())
                    .filter(|n| *n > 0)
                    .ok_or(Replay::Reused)?,
            ),
            None => None,
        };
        let key = std::hash::BuildHasher::hash_one(
            &self.hasher,
            (creds.nonce.as_ref(), creds.cnonce.as_deref(), nc.is_some()),
        );
        let lifetime = self.lifetime_secs;
        let u = self.users.entry(user.to_owned()).or_default();
        u.uses.retain(|x| x.issued.saturating_add(lifetime) >= now);
        let given_up = |floor: Option<(u64, i64)>| floor.is_some_and(|(f, _)| serial <= f);
        if given_up(u.floor) {
            return Err(Replay::Expired);
        }
        if let Some(x) = u.uses.iter_mut().find(|x| x.key == key) {
            let Some(nc) = nc else {
                return Err(Replay::Reused);
            };
            if nc > x.max_nc {
                let shift = nc - x.max_nc;
                x.seen = if shift >= NC_WINDOW {
                    0
                } else {
                    x.seen << shift
                } | 1;
                x.max_nc = nc;
                return Ok(());
            }
            let back = x.max_nc - nc;
            if back >= NC_WINDOW || x.seen & (1u64 << back) != 0 {
                return Err(Replay::Reused);
            }
            x.seen |= 1u64 << back;
            return Ok(());
        }
        if u.uses.len() >= NONCE_USES_PER_USER {
            // Give up the oldest nonce (all its pairs, and older nonces for good).
            let oldest = u
                .uses
                .iter()
                .map(|x| (x.serial, x.issued))
                .min()
                .unwrap_or((serial, issued));
            let floor = u.floor.map_or(oldest, |f| f.max(oldest));
            u.floor = Some(floor);
            u.uses.retain(|x| x.serial > floor.0);
            if given_up(u.floor) {
                return Err(Replay::Expired);
            }
        }
        u.uses.push(NonceUse {
            issued,
            serial,
            key,
            max_nc: nc.unwrap_or(0),
            seen: 1,
        });
        Ok(())
    }

    /// Forgets users with no pair left whose floor only concerns expired nonces (at most
    /// once per lifetime; linear in the users).
    fn sweep(&mut self, now: i64) {
        if now.saturating_sub(self.last_sweep) < self.lifetime_secs.max(1) {
            return;
        }
        self.last_sweep = now;
        let lifetime = self.lifetime_secs;
        self.users.retain(|_, u| {
            u.uses.retain(|x| x.issued.saturating_add(lifetime) >= now);
            !u.uses.is_empty()
                || u.floor
                    .is_some_and(|(_, issued)| issued.saturating_add(lifetime) >= now)
        });
    }
}

/// Hex digits of the issue time in a nonce.
const NONCE_TIME_HEX: usize = 16;
/// Hex digits of the nonce's serial.
const NONCE_SERIAL_HEX: usize = 16;
/// Bytes of the truncated HMAC in a nonce.
const NONCE_MAC_BYTES: usize = 16;
/// Characters of a nonce.
pub const NONCE_LEN: usize = NONCE_TIME_HEX + NONCE_SERIAL_HEX + 2 * NONCE_MAC_BYTES;

fn nonce_mac(secret: &[u8], signed: &str) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(signed.as_bytes());
    Some(mac)
}

/// Stateless nonce: `hex(issued_secs)` (16 lower-case hex digits, the i64 as u64), then
/// `hex(serial)` (16 digits: a number the caller takes from a counter, so that no two
/// challenges share a nonce and newer nonces have higher serials, which [`NonceCounts`]
/// relies on), then `hex(HMAC-SHA256(secret, those 32 digits)[..16])`; 64 characters in
/// all.
#[must_use]
pub fn make_nonce(secret: &[u8], now_secs: i64, serial: u64) -> String {
    let signed = format!("{:016x}{serial:016x}", now_secs as u64);
    let tag = nonce_mac(secret, &signed)
        .map(|m| m.finalize().into_bytes().to_vec())
        .unwrap_or_default();
    let tag = tag.get(..NONCE_MAC_BYTES).unwrap_or_default();
    format!("{signed}{}", hex::encode(tag))
}

/// Result of [`check_nonce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours and issued at most `max_age_secs` ago.
    Fresh,
    /// Ours but older, or issued in the future (clock stepped back): challenge again with
    /// `stale=true`.
    Stale,
    /// Not made with this secret.
    Invalid,
}

/// When a nonce made by [`make_nonce`] was issued (unix seconds) and its serial; `None` if
/// it is not of that form. Check it with [`check_nonce`] first: this does not verify the MAC.
#[must_use]
pub fn nonce_parts(nonce: &str) -> Option<(i64, u64)> {
    let time_hex = nonce.get(..NONCE_TIME_HEX)?;
    let serial_hex = nonce.get(NONCE_TIME_HEX..NONCE_TIME_HEX + NONCE_SERIAL_HEX)?;
    let issued = u64::from_str_radix(time_hex, 16).ok()? as i64;
    Some((issued, u64::from_str_radix(serial_hex, 16).ok()?))
}

/// Checks a nonce made by [`make_nonce`] (the MAC compare is constant-time).
#[must_use]
pub fn check_nonce(secret: &[u8], nonce: &str, now_secs: i64, max_age_secs: i64) -> NonceCheck {
    if nonce.len() != NONCE_LEN
        || !nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return NonceCheck::Invalid;
    }
    let signed_len = NONCE_TIME_HEX + NONCE_SERIAL_HEX;
    let (Some(time_hex), Some(signed), Some(tag_hex)) = (
        nonce.get(..NONCE_TIME_HEX),
        nonce.get(..signed_len),
        nonce.get(signed_len..),
    ) else {
        return NonceCheck::Invalid;
    };
    let (Ok(issued), Ok(tag)) = (u64::from_str_radix(time_hex, 16), hex::decode(tag_hex)) else {
        return NonceCheck::Invalid;
    };
    let Some(mac) = nonce_mac(secret, signed) else {
        return NonceCheck::Invalid;
    };
    if mac.verify_truncated_left(&tag).is_err() {
        return NonceCheck::Invalid;
    }
    let age = now_secs.saturating_sub(issued as i64);
    if (0..=max_age_secs).contains(&age) {
        NonceCheck::Fresh
    } else {
        NonceCheck::Stale
    }
}

// ---------------------------------------------------------------------------------------
// INVITE dialogs: the headers a call needs, vakt's requests with more headers, Digest as a
// client
// ---------------------------------------------------------------------------------------

/// Most entries read from one list-valued header kind (Record-Route, Supported, Require,
/// Allow ...) of a message.
pub const MAX_LIST_ITEMS: usize = 32;

/// The URI of a From/To/Contact/Route/P-Asserted-Identity value (`"name" <uri>;params`, or
/// `uri;params`); `None` when it does not read as one, or is empty.
#[must_use]
pub fn header_uri(value: &str) -> Option<&str> {
    let (uri, _) = name_addr(value)?;
    (!uri.is_empty()).then_some(uri)
}

/// The caller's number in a URI: the user of a `sip:`/`sips:` URI (`+4670123` of
/// `sip:+4670123@sbc;user=phone`), or the number of a `tel:` URI (`tel:+4670123;cpc=x`);
/// `None` for other schemes, an empty number, or one with characters a number does not have
/// (digits, `+`, `*`, `#`, `-`, `.`, `(`, `)`, letters of a SIP user and `_` are kept).
#[must_use]
pub fn uri_number(uri: &str) -> Option<&str> {
    let uri = trim_lws(uri);
    let (scheme, rest) = uri.split_once(':')?;
    let number = if scheme.eq_ignore_ascii_case("tel") {
        rest.split([';', '?']).next().unwrap_or_default()
    } else {
        uri_user(uri)?
    };
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"+*#-.()_".contains(&b);
    (!number.is_empty() && number.len() <= 64 && number.bytes().all(ok)).then_some(number)
}

impl<'a> Message<'a> {
    /// The items of every header `name`, split at commas outside quotes and angle brackets,
    /// trimmed, empty ones left out; at most [`MAX_LIST_ITEMS`]. For Supported, Require,
    /// Allow, Record-Route, Route.
    #[must_use]
    pub fn list<'s>(&'s self, name: &'s str) -> Vec<&'s str> {
        let mut out = Vec::new();
        for v in self.headers_named(name) {
            let mut rest = Some(v);
            while let Some(r) = rest {
                let (item, after) = split_top(r, b',');
                let item = trim_lws(item);
                if !item.is_empty() {
                    if out.len() >= MAX_LIST_ITEMS {
                        return out;
                    }
                    out.push(item);
                }
                rest = after;
            }
        }
        out
    }

    /// True when a token list header (Supported, Require, Allow) names `token`
    /// (case-insensitive).
    #[must_use]
    pub fn lists(&self, name: &str, token: &str) -> bool {
        self.list(name)
            .iter()
            .any(|t| t.eq_ignore_ascii_case(token))
    }

    /// The To header's URI.
    #[must_use]
    pub fn to_uri(&self) -> Option<&str> {
        header_uri(self.header("To")?)
    }

    /// The URI of the first `P-Asserted-Identity` (RFC 3325), the caller as a trunk vouches
    /// for it.
    #[must_use]
    pub fn asserted_identity(&self) -> Option<&str> {
        let first = *self.list("P-Asserted-Identity").first()?;
        header_uri(first)
    }

    /// The header `name` as a number of seconds (`Expires`, `Min-SE`: digits, then
    /// parameters that are ignored); `None` when absent or not a number below 2^31.
    #[must_use]
    pub fn seconds(&self, name: &str) -> Option<u32> {
        delta_seconds(self.header(name)?)
    }
}

/// `1*DIGIT` before any `;params`, below 2^31.
fn delta_seconds(v: &str) -> Option<u32> {
    let n = trim_lws(v.split(';').next().unwrap_or_default());
    if n.is_empty() || n.len() > 10 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse::<u32>().ok().filter(|n| *n < 1 << 31)
}

/// Who refreshes a session (RFC 4028 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The UAC of the request that set the interval.
    Uac,
    /// Its UAS.
    Uas,
}

impl Refresher {
    /// The parameter value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A `Session-Expires` value (RFC 4028 §4): the interval and who refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// Seconds, 1 ..= 2^31 - 1.
    pub secs: u32,
    /// The `refresher` parameter, when present and `uac` or `uas`.
    pub refresher: Option<Refresher>,
}

/// Parses a `Session-Expires` (compact `x`) value: `delta-seconds *(;param)`. A zero
/// interval, or one that is not a number, is `None`; an unknown `refresher` is ignored.
#[must_use]
pub fn parse_session_expires(v: &str) -> Option<SessionExpires> {
    let secs = delta_seconds(v).filter(|s| *s > 0)?;
    let params = v.split_once(';').map_or("", |(_, p)| p);
    let refresher = match param(params, "refresher") {
        Some(r) if r.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
        Some(r) if r.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
        _ => None,
    };
    Some(SessionExpires { secs, refresher })
}

impl Message<'_> {
    /// The request's `Session-Expires` (or compact `x`).
    #[must_use]
    pub fn session_expires(&self) -> Option<SessionExpires> {
        self.header("Session-Expires")
            .or_else(|| self.header("x"))
            .and_then(parse_session_expires)
    }
}

/// Builds a request like [`encode_request`], with `extra` headers (Route, Contact,
/// Authorization, Supported ...) after `User-Agent`.
pub fn encode_request_with(r: &OutRequest<'_>, extra: &[(&str, &str)], out: &mut Vec<u8>) {
    push_clean(out, r.method);
    out.push(b' ');
    push_clean(out, r.uri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    push_header(
        out,
        "Via",
        &format!(
            "SIP/2.0/{} {};branch={};rport",
            r.via_transport, r.via_host, r.branch
        ),
    );
    push_header(out, "Max-Forwards", "70");
    push_header(out, "From", &format!("{};tag={}", r.from, r.from_tag));
    push_header(out, "To", r.to);
    push_header(out, "Call-ID", r.call_id);
    push_header(out, "CSeq", &format!("{} {}", r.cseq, r.method));
    push_header(out, "User-Agent", "vakt");
    for (name, value) in extra {
        push_header(out, name, value);
    }
    finish(out, r.content_type, r.body);
}

/// A Digest challenge from a `WWW-Authenticate` or `Proxy-Authenticate` value, as vakt
/// answers it as a client (calls out through a trunk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// `realm`.
    pub realm: Cow<'a, str>,
    /// `nonce`.
    pub nonce: Cow<'a, str>,
    /// `opaque`, returned as it came.
    pub opaque: Option<Cow<'a, str>>,
    /// The server offers `qop=auth` (vakt then answers with it; without it, RFC 2069).
    pub qop_auth: bool,
    /// `stale=true`: the credentials were right, the nonce old.
    pub stale: bool,
}

/// Parses a `WWW-Authenticate`/`Proxy-Authenticate` value: scheme `Digest`, `realm` and
/// `nonce` mandatory, `algorithm` absent or `MD5`, a `qop` list that offers `auth` (one that
/// offers only `auth-int` is [`AuthError::Algorithm`]: vakt cannot answer it).
pub fn parse_challenge(value: &str) -> Result<Challenge<'_>, AuthError> {
    let mut params = digest_params(value)?;
    let mut take = |name: &'static str| {
        params
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|at| params.swap_remove(at).1)
    };
    let realm = take("realm").ok_or(AuthError::MissingParam("realm"))?;
    let nonce = take("nonce").ok_or(AuthError::MissingParam("nonce"))?;
    if take("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5")) {
        return Err(AuthError::Algorithm);
    }
    let qop_auth = match take("qop") {
        None => false,
        Some(q) => {
            if !q
                .split(',')
                .any(|o| trim_lws(o).eq_ignore_ascii_case("auth"))
            {
                return Err(AuthError::Algorithm);
            }
            true
        }
    };
    let stale = take("stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
    Ok(Challenge {
        realm,
        nonce,
        opaque: take("opaque"),
        qop_auth,
        stale,
    })
}

/// The `Authorization`/`Proxy-Authorization` value answering `challenge` for a `method`
/// request to `uri` as `user` with `password` (RFC 2617 §3.2.2, MD5; with `qop=auth`,
/// `cnonce` and the nonce count `nc` are used, as [`verify`] checks them).
#[must_use]
pub fn authorization(
    user: &str,
    password: &str,
    challenge: &Challenge<'_>,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let ha1_hex = ha1(user, &challenge.realm, password);
    let nc_hex = format!("{nc:08x}");
    let (nc_s, cnonce_s, qop) = if challenge.qop_auth {
        (Some(nc_hex.as_str()), Some(cnonce), Some("auth"))
    } else {
        (None, None, None)
    };
    let response = digest_response(&ha1_hex, &challenge.nonce, nc_s, cnonce_s, qop, method, uri);
    let mut s = String::from("Digest username=\"");
    push_quoted(&mut s, user);
    s.push_str("\", realm=\"");
    push_quoted(&mut s, &challenge.realm);
    s.push_str("\", nonce=\"");
    push_quoted(&mut s, &challenge.nonce);
    s.push_str("\", uri=\"");
    push_quoted(&mut s, uri);
    s.push_str("\", response=\"");
    s.push_str(&response);
    s.push_str("\", algorithm=MD5");
    if let (Some(nc), Some(cnonce)) = (nc_s, cnonce_s) {
        s.push_str(", cnonce=\"");
        push_quoted(&mut s, cnonce);
        s.push_str("\", qop=auth, nc=");
        s.push_str(nc);
    }
    if let Some(opaque) = &challenge.opaque {
        s.push_str(", opaque=\"");
        push_quoted(&mut s, opaque);
        s.push('"');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaip::tests::{records, unescape};

    const VECTORS: &str = include_str!("../scaip/vectors.txt");

    /// SS §9.1 MESSAGE (protocols.md §3.9).
    const SS_MESSAGE: &[u8] = b"MESSAGE sip:user2@domain.com SIP/2.0\r\n\
Via: SIP/2.0/UDP user1pc.domain.com;branch=z9hG4bK776sgdkse\r\n\
Max-Forwards: 70\r\n\
From: sip:user1@domain.com;tag=49583\r\n\
To: sip:user2@domain.com\r\n\
Call-ID: asd88asd77a@1.2.3.4\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: application/scaip+xml\r\n\
Content-Length: 72\r\n\
\r\n\
<mrq><ref>1234</ref><cid>123456</cid><dty>0001</dty><stc>001</stc></mrq>";

    fn opt(s: Option<&str>) -> &str {
        s.filter(|s| !s.is_empty()).unwrap_or("-")
    }

    #[test]
    fn vectors_file() {
        let mut n = 0;
        for rec in records(VECTORS) {
            let get = |k: &str| rec.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            let Some(raw) = get("sip") else { continue };
            n += 1;
            let name = get("name").expect("name");
            let raw = unescape(raw);
            let expect = get("parse").expect("parse");
            let m = match parse(&raw) {
                Ok(m) => {
                    assert_eq!(expect, "ok", "{name}");
                    m
                }
                Err(e) => {
                    assert_eq!(e.as_str(), expect, "{name}: {e:?}");
                    continue;
                }
            };
            let start = match m.start {
                StartLine::Request { method, uri } => format!("request {method} {uri}"),
                StartLine::Response { code, reason } => format!("response {code} {reason}"),
            };
            assert_eq!(Some(start.as_str()), get("start"), "{name}");
            assert_eq!(Some(m.call_id()), get("call_id"), "{name}");
            let (num, method) = m.cseq();
            assert_eq!(
                Some(format!("{num} {method}").as_str()),
                get("cseq"),
                "{name}"
            );
            assert_eq!(Some(opt(m.from_uri())), get("from_uri"), "{name}");
            assert_eq!(
                Some(opt(m.from_uri().and_then(uri_user))),
                get("from_user"),
                "{name}"
            );
            assert_eq!(Some(opt(m.from_tag())), get("from_tag"), "{name}");
            assert_eq!(Some(opt(m.to_tag())), get("to_tag"), "{name}");
            assert_eq!(Some(opt(m.top_via_branch())), get("branch"), "{name}");
            assert_eq!(Some(opt(m.content_type())), get("content_type"), "{name}");
            let body = std::str::from_utf8(m.body).expect("utf8");
            assert_eq!(Some(opt(Some(body))), get("body"), "{name}");
            // The same bytes on a stream.
            assert_eq!(scan(&raw), Scan::Message { len: raw.len() }, "{name}");
        }
        assert!(n >= 5);
    }

    #[test]
    fn ss_message_as_datagram() {
        let m = parse(SS_MESSAGE).expect("parse");
        assert_eq!(
            m.start,
            StartLine::Request {
                method: "MESSAGE",
                uri: "sip:user2@domain.com"
            }
        );
        assert!(m.is_request());
        assert_eq!(m.method(), Some("MESSAGE"));
        assert_eq!(m.cseq(), (1, "MESSAGE"));
        assert_eq!(m.header("max-forwards"), Some("70"));
        assert_eq!(m.header("i"), Some("asd88asd77a@1.2.3.4"));
        assert_eq!(m.content_type(), Some(crate::scaip::CONTENT_TYPE));
        let mrq = crate::scaip::parse_mrq(m.body).expect("mrq");
        assert_eq!(
            (mrq.reference.as_str(), mrq.dty, mrq.stc),
            ("1234", 1, Some(1))
        );
        // Without Content-Length the rest of the datagram is the body.
        let text = std::str::from_utf8(SS_MESSAGE).expect("utf8");
        let no_cl = text.replace("Content-Length: 72\r\n", "");
        assert_eq!(parse(no_cl.as_bytes()).expect("parse").body, m.body);
        // Bytes after Content-Length are ignored on a datagram.
        let mut extra = SS_MESSAGE.to_vec();
        extra.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&extra).expect("parse").body, m.body);
        // Leading CRLFs are skipped.
        let mut lead = b"\r\n\r\n".to_vec();
        lead.extend_from_slice(SS_MESSAGE);
        assert!(parse(&lead).is_ok());
    }

    #[test]
    fn scan_split_at_every_byte() {
        let mut stream = SS_MESSAGE.to_vec();
        stream.extend_from_slice(SS_MESSAGE);
        for cut in 0..SS_MESSAGE.len() {
            assert_eq!(scan(&SS_MESSAGE[..cut]), Scan::Incomplete, "cut at {cut}");
        }
        assert_eq!(
            scan(SS_MESSAGE),
            Scan::Message {
                len: SS_MESSAGE.len()
            }
        );
        for cut in SS_MESSAGE.len()..=stream.len() {
            assert_eq!(
                scan(&stream[..cut]),
                Scan::Message {
                    len: SS_MESSAGE.len()
                }
            );
        }
    }

    #[test]
    fn scan_keepalives_and_errors() {
        assert_eq!(scan(b""), Scan::Incomplete);
        assert_eq!(scan(b"\r"), Scan::Incomplete);
        assert_eq!(scan(b"\r\n"), Scan::Incomplete);
        assert_eq!(scan(b"\r\n\r"), Scan::Incomplete);
        assert_eq!(
            scan(b"\r\n\r\nMESSAGE"),
            Scan::KeepAlive { n: 4, ping: true }
        );
        assert_eq!(scan(b"\r\nMES"), Scan::KeepAlive { n: 2, ping: false });
        assert_eq!(scan(b"\nMES"), Scan::KeepAlive { n: 1, ping: false });
        assert_eq!(scan(b"\r\r"), Scan::KeepAlive { n: 1, ping: false });
        let text = std::str::from_utf8(SS_MESSAGE).expect("utf8");
        let no_cl = text.replace("Content-Length: 72\r\n", "");
        assert_eq!(
            scan(no_cl.as_bytes()),
            Scan::Invalid(SipError::NoContentLength)
        );
        let bad_cl = text.replace("Content-Length: 72", "Content-Length: 7x");
        assert_eq!(
            scan(bad_cl.as_bytes()),
            Scan::Invalid(SipError::BadContentLength)
        );
        let huge_cl = text.replace("Content-Length: 72", "Content-Length: 20000");
        assert_eq!(scan(huge_cl.as_bytes()), Scan::Invalid(SipError::TooLarge));
        let endless = vec![b'a'; MAX_MESSAGE_BYTES];
        assert_eq!(scan(&endless), Scan::Invalid(SipError::TooLarge));
        assert_eq!(scan(&endless[1..]), Scan::Incomplete);
    }

    #[test]
    fn compact_and_folded_headers() {
        let raw = b"MESSAGE sip:arc@vakt SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa\r\n\
f: <sip:678@arc>;tag=1\r\n\
t: <sip:arc@vakt>\r\n\
i: abc\r\n\
CSeq: 5\r\n\tMESSAGE\r\n\
Subject: one\r\n  two\r\n\
c: application/scaip+xml\r\n\
l: 0\r\n\r\n";
        let m = parse(raw).expect("parse");
        assert_eq!(
            m.header("Via"),
            Some("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa")
        );
        assert_eq!(m.header("v"), m.header("VIA"));
        assert_eq!(m.header("Call-ID"), Some("abc"));
        assert_eq!(m.cseq(), (5, "MESSAGE"));
        assert_eq!(m.header("s"), Some("one two"));
        assert_eq!(m.header("Content-Length"), Some("0"));
        assert_eq!(m.from_uri(), Some("sip:678@arc"));
        assert_eq!(m.from_tag(), Some("1"));
        assert_eq!(m.to_tag(), None);
        assert!(m.body.is_empty());
        assert_eq!(m.headers[0].0, "Via");
    }

    #[test]
    fn multiple_via_copied_in_order() {
        let raw = b"MESSAGE sip:arc@vakt SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bKtop;rport=5061;received=192.0.2.1, SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKmid\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKlast\r\n\
From: \"Anna, 3rd floor\" <sip:678@arc.example>;tag=abc\r\n\
To: sip:arc@vakt\r\n\
Call-ID: c1\r\n\
CSeq: 9 MESSAGE\r\n\
Content-Length: 0\r\n\r\n";
        let m = parse(raw).expect("parse");
        assert_eq!(m.top_via_branch(), Some("z9hG4bKtop"));
        assert_eq!(m.headers_named("Via").count(), 2);
        assert_eq!(m.from_uri(), Some("sip:678@arc.example"));
        assert_eq!(m.from_tag(), Some("abc"));
        let mut out = Vec::new();
        encode_response(
            &m,
            200,
            "OK",
            "t0",
            &[("Server", "vakt")],
            None,
            b"",
            &mut out,
        );
        let text = String::from_utf8(out.clone()).expect("utf8");
        assert_eq!(
            text,
            "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bKtop;rport=5061;received=192.0.2.1, SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKmid\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKlast\r\n\
From: \"Anna, 3rd floor\" <sip:678@arc.example>;tag=abc\r\n\
To: sip:arc@vakt;tag=t0\r\n\
Call-ID: c1\r\n\
CSeq: 9 MESSAGE\r\n\
Server: vakt\r\n\
Content-Length: 0\r\n\r\n"
        );
        let r = parse(&out).expect("response parses");
        assert_eq!(
            r.start,
            StartLine::Response {
                code: 200,
                reason: "OK"
            }
        );
        assert!(!r.is_request());
        assert_eq!(r.method(), None);
        assert_eq!(r.to_tag(), Some("t0"));
        assert_eq!(r.call_id(), "c1");
        assert_eq!(r.cseq(), (9, "MESSAGE"));
        assert_eq!(scan(&out), Scan::Message { len: out.len() });
    }

    #[test]
    fn response_keeps_existing_to_tag_and_adds_body() {
        let raw = b"MESSAGE sip:arc@vakt SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:arc@vakt>;tag=old\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
        let m = parse(raw).expect("parse");
        let mut out = Vec::new();
        let challenge = challenge("vakt", "n1", false);
        encode_response(
            &m,
            401,
            "Unauthorized",
            "new",
            &[("WWW-Authenticate", &challenge)],
            Some("text/plain"),
            b"hi",
            &mut out,
        );
        let r = parse(&out).expect("parse");
        assert_eq!(
            r.start,
            StartLine::Response {
                code: 401,
                reason: "Unauthorized"
            }
        );
        assert_eq!(r.to_tag(), Some("old"));
        assert_eq!(r.header("WWW-Authenticate"), Some(challenge.as_str()));
        assert_eq!(r.content_type(), Some("text/plain"));
        assert_eq!(r.body, b"hi");
    }

    #[test]
    fn encode_request_round_trips() {
        let body = b"<mrs><ref>1243</ref><snu>0</snu><mre>1</mre></mrs>";
        let r = OutRequest {
            method: "MESSAGE",
            uri: "sip:678@192.0.2.1:5060;transport=tcp",
            via_transport: "TCP",
            via_host: "127.0.0.1:5060",
            branch: "z9hG4bKabc",
            from: "<sip:arc@vakt>",
            from_tag: "ft",
            to: "<sip:678@192.0.2.1>",
            call_id: "cid-1",
            cseq: 7,
            content_type: Some(crate::scaip::CONTENT_TYPE),
            body,
        };
        let mut out = Vec::new();
        encode_request(&r, &mut out);
        let m = parse(&out).expect("parse");
        assert_eq!(
            m.start,
            StartLine::Request {
                method: "MESSAGE",
                uri: "sip:678@192.0.2.1:5060;transport=tcp"
            }
        );
        assert_eq!(
            m.header("Via"),
            Some("SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKabc;rport")
        );
        assert_eq!(m.top_via_branch(), Some("z9hG4bKabc"));
        assert_eq!(m.header("Max-Forwards"), Some("70"));
        assert_eq!(m.header("User-Agent"), Some("vakt"));
        assert_eq!(m.from_tag(), Some("ft"));
        assert_eq!(m.from_uri(), Some("sip:arc@vakt"));
        assert_eq!(m.call_id(), "cid-1");
        assert_eq!(m.cseq(), (7, "MESSAGE"));
        assert_eq!(m.body, body);
        assert_eq!(scan(&out), Scan::Message { len: out.len() });
    }

    #[test]
    fn header_injection_is_dropped() {
        let r = OutRequest {
            method: "MESSAGE",
            uri: "sip:a@b",
            via_transport: "UDP",
            via_host: "h",
            branch: "z9hG4bK1",
            from: "<sip:arc@vakt>",
            from_tag: "t",
            to: "<sip:a@b>\r\nX-Evil: 1",
            call_id: "c",
            cseq: 1,
            content_type: None,
            body: b"",
        };
        let mut out = Vec::new();
        encode_request(&r, &mut out);
        let m = parse(&out).expect("parse");
        assert_eq!(m.header("X-Evil"), None);
    }

    #[test]
    fn parse_errors() {
        let text = std::str::from_utf8(SS_MESSAGE).expect("utf8");
        let e = |s: &str| parse(s.as_bytes()).map(|_| ()).map_err(|e| e.as_str());
        assert_eq!(e(&text.replace("Via:", "Xia:")), Err("missing_header"));
        assert_eq!(
            parse(text.replace("To: ", "Xo: ").as_bytes()).map(|_| ()),
            Err(SipError::MissingHeader("To"))
        );
        assert_eq!(
            e(&text.replace("CSeq: 1 MESSAGE", "CSeq: 1 MESSAGE\r\nCSeq: 2 MESSAGE")),
            Err("duplicate_header")
        );
        assert_eq!(
            e(&text.replace("CSeq: 1 MESSAGE", "CSeq: x MESSAGE")),
            Err("bad_cseq")
        );
        assert_eq!(
            e(&text.replace("CSeq: 1 MESSAGE", "CSeq: 2147483648 MESSAGE")),
            Err("bad_cseq")
        );
        assert_eq!(
            e(&text.replace("Max-Forwards", "Max Forwards")),
            Err("bad_header")
        );
        assert_eq!(e(&text.replace("Max-Forwards: 70", " 70")), Ok(()));
        // A continuation line with no header before it.
        assert_eq!(e(&text.replace("Via:", " Via:")), Err("bad_header"));
        assert_eq!(
            e(&text.replace("MESSAGE sip", "MESSAGE  sip")),
            Err("bad_start_line")
        );
        assert_eq!(e(&text.replace("70\r\n", "70\n")), Err("bad_header"));
        assert_eq!(e("MESSAGE sip:a@b SIP/2.0\r\nVia: x\r\n"), Err("truncated"));
        assert_eq!(e("SIP/2.0 99 Low\r\n\r\n"), Err("bad_start_line"));
        assert_eq!(e("SIP/3.0 200 OK\r\n\r\n"), Err("bad_version"));
        assert_eq!(
            e(&text.replace("Content-Length: 72", "Content-Length: 72\r\nl: 71")),
            Err("bad_content_length")
        );
        assert_eq!(
            parse(b"MESSAGE sip:\xff SIP/2.0\r\n\r\n"),
            Err(SipError::NotUtf8)
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            e(&text.replace("Max-Forwards: 70\r\n", &many)),
            Err("too_many_headers")
        );
        let big = vec![b'a'; MAX_MESSAGE_BYTES + 1];
        assert_eq!(parse(&big), Err(SipError::TooLarge));
    }

    #[test]
    fn uri_user_cases() {
        assert_eq!(uri_user("sip:678@host;x=y"), Some("678"));
        assert_eq!(uri_user("SIPS:alice:secret@host"), Some("alice"));
        assert_eq!(uri_user("sip:host"), None);
        assert_eq!(uri_user("tel:+4670"), None);
        assert_eq!(uri_user("sip:@host"), None);
    }

    #[test]
    fn rfc2617_example() {
        let h = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        let resp = digest_response(
            &h,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some("00000001"),
            Some("0a4f113b"),
            Some("auth"),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(resp, "6629fae49393a05397450978507c4ef1");
        let header = "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        // The header as folded by parse: CRLF + LWS becomes one space.
        let header = header.replace("\r\n ", " ");
        let c = parse_authorization(&header).expect("parse");
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert!(verify(&c, "GET", &h));
        assert!(verify(&c, "GET", &h.to_uppercase()));
        assert!(!verify(&c, "POST", &h));
        assert!(!verify(
            &c,
            "GET",
            &ha1("Mufasa", "testrealm@host.com", "wrong")
        ));
        let mut no_nc = c.clone();
        no_nc.nc = None;
        assert!(!verify(&no_nc, "GET", &h));
        let mut int = c.clone();
        int.qop = Some("auth-int".into());
        assert!(!verify(&int, "GET", &h));
    }

    #[test]
    fn sipp_style_authorization() {
        // SIPp's [authentication] keyword: no qop when the challenge has none, algorithm=MD5.
        let h = ha1("678", "vakt", "secret");
        let resp = digest_response(
            &h,
            "abc",
            None,
            None,
            None,
            "MESSAGE",
            "sip:arc@127.0.0.1:5060",
        );
        let header = format!(
            "Digest username=\"678\",realm=\"vakt\",uri=\"sip:arc@127.0.0.1:5060\",nonce=\"abc\",response=\"{resp}\",algorithm=MD5"
        );
        let c = parse_authorization(&header).expect("parse");
        assert_eq!(c.uri, "sip:arc@127.0.0.1:5060");
        assert_eq!(c.algorithm.as_deref(), Some("MD5"));
        assert!(verify(&c, "MESSAGE", &h));
        // With qop=auth, as SIPp answers a qop="auth" challenge.
        let resp = digest_response(
            &h,
            "abc",
            Some("00000001"),
            Some("6b8b4567"),
            Some("auth"),
            "MESSAGE",
            "sip:arc@127.0.0.1:5060",
        );
        let header = format!(
            "Digest username=\"678\",realm=\"vakt\",cnonce=\"6b8b4567\",nc=00000001,qop=auth,uri=\"sip:arc@127.0.0.1:5060\",nonce=\"abc\",response=\"{resp}\",algorithm=MD5"
        );
        let c = parse_authorization(&header).expect("parse");
        assert!(verify(&c, "MESSAGE", &h));
    }

    #[test]
    fn authorization_syntax() {
        let base = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:a@b\", response=\"00\"";
        assert_eq!(
            parse_authorization("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Err(AuthError::Basic)
        );
        assert_eq!(parse_authorization("basic x"), Err(AuthError::Basic));
        assert_eq!(parse_authorization("Bearer x"), Err(AuthError::NotDigest));
        assert_eq!(parse_authorization(""), Err(AuthError::NotDigest));
        assert_eq!(
            parse_authorization("Digest realm=\"r\""),
            Err(AuthError::MissingParam("username"))
        );
        assert_eq!(
            parse_authorization(&format!("Digest {base}, algorithm=MD5-sess")),
            Err(AuthError::Algorithm)
        );
        assert_eq!(
            parse_authorization(&format!("Digest {base}, realm=\"x\"")),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            parse_authorization("Digest username=\"u"),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            parse_authorization("Digest username=\"u\" realm=\"r\""),
            Err(AuthError::Malformed)
        );
        let header = format!("DIGEST  USERNAME = \"a\\\"b\\\\c\" , {}", &base[13..]);
        let c = parse_authorization(&header).expect("parse");
        assert_eq!(c.username, "a\"b\\c");
        assert!(matches!(c.realm, Cow::Borrowed("r")));
        assert_eq!(AuthError::Basic.as_str(), "basic");
    }

    #[test]
    fn challenge_format() {
        assert_eq!(
            challenge("vakt", "n1", false),
            "Digest realm=\"vakt\", nonce=\"n1\", algorithm=MD5, qop=\"auth\""
        );
        assert_eq!(
            challenge("va\"kt", "n1", true),
            "Digest realm=\"va\\\"kt\", nonce=\"n1\", algorithm=MD5, qop=\"auth\", stale=true"
        );
    }

    #[test]
    fn nonces() {
        let secret = b"0123456789abcdef";
        let n = make_nonce(secret, 1_700_000_000, 0x0102_0304_0506_0708);
        assert_eq!(n.len(), NONCE_LEN);
        assert!(n.starts_with("000000006553f1000102030405060708"));
        assert_eq!(
            nonce_parts(&n),
            Some((1_700_000_000, 0x0102_0304_0506_0708))
        );
        assert_ne!(
            n,
            make_nonce(secret, 1_700_000_000, 9),
            "one nonce per serial"
        );
        assert_eq!(
            check_nonce(secret, &n, 1_700_000_000, 300),
            NonceCheck::Fresh
        );
        assert_eq!(
            check_nonce(secret, &n, 1_700_000_300, 300),
            NonceCheck::Fresh
        );
        assert_eq!(
            check_nonce(secret, &n, 1_700_000_301, 300),
            NonceCheck::Stale
        );
        assert_eq!(
            check_nonce(secret, &n, 1_699_999_999, 300),
            NonceCheck::Stale
        );
        assert_eq!(
            check_nonce(b"other", &n, 1_700_000_000, 300),
            NonceCheck::Invalid
        );
        // The time and the serial are both signed.
        for at in [15, 20] {
            let mut forged = n.clone().into_bytes();
            forged[at] = if forged[at] == b'1' { b'2' } else { b'1' };
            let forged = String::from_utf8(forged).expect("utf8");
            assert_eq!(
                check_nonce(secret, &forged, 1_700_000_000, 300),
                NonceCheck::Invalid,
                "{at}"
            );
        }
        assert_eq!(
            check_nonce(secret, &n.to_uppercase(), 1_700_000_000, 300),
            NonceCheck::Invalid
        );
        assert_eq!(check_nonce(secret, "", 0, 300), NonceCheck::Invalid);
        assert_eq!(
            check_nonce(secret, &n[..NONCE_LEN - 1], 0, 300),
            NonceCheck::Invalid
        );
        let neg = make_nonce(secret, -5, 1);
        assert_eq!(check_nonce(secret, &neg, 0, 300), NonceCheck::Fresh);
    }

    #[test]
    fn via_gets_received_and_rport_for_the_source() {
        let src: std::net::SocketAddr = "192.0.2.7:41000".parse().unwrap();
        let cases = [
            // RFC 3581 §4's example: rport asked, sent-by a private address.
            (
                "SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff",
                "SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.7;rport=41000;branch=z9hG4bKkjshdyff",
            ),
            // No rport, sent-by another address: received only (RFC 3261 §18.2.1).
            (
                "SIP/2.0/TCP 10.1.1.1;branch=z9hG4bK1",
                "SIP/2.0/TCP 10.1.1.1;branch=z9hG4bK1;received=192.0.2.7",
            ),
            // No rport, sent-by the source itself: unchanged.
            (
                "SIP/2.0/UDP 192.0.2.7:41000;branch=z9hG4bK1",
                "SIP/2.0/UDP 192.0.2.7:41000;branch=z9hG4bK1",
            ),
            // A domain name: received; an old received is replaced; the next Via values stay.
            (
                "SIP/2.0/UDP luc.example;branch=z9hG4bK1;received=1.2.3.4;RPORT=5, SIP/2.0/UDP p;branch=z9hG4bK2",
                "SIP/2.0/UDP luc.example;branch=z9hG4bK1;received=192.0.2.7;rport=41000, SIP/2.0/UDP p;branch=z9hG4bK2",
            ),
            ("garbage", "garbage"),
        ];
        for (via, want) in cases {
            assert_eq!(stamp_via(via, src), want, "{via}");
        }
        let v6: std::net::SocketAddr = "[2001:db8::9]:5070".parse().unwrap();
        assert_eq!(
            stamp_via("SIP/2.0/UDP [2001:db8::1]:5060;rport;branch=z9hG4bK1", v6),
            "SIP/2.0/UDP [2001:db8::1]:5060;received=2001:db8::9;rport=5070;branch=z9hG4bK1"
        );
        // The whole response: only the top Via is stamped.
        let raw = b"MESSAGE sip:arc@vakt SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKb;rport\r\nFrom: <sip:678@vakt>;tag=1\r\nTo: <sip:arc@vakt>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\nContact: <sip:678@10.0.0.5:5060>;expires=60, <sip:other@x>\r\nContent-Length: 0\r\n\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.contact_uri(), Some("sip:678@10.0.0.5:5060"));
        let mut out = Vec::new();
        encode_response_from(Some(src), &m, 200, "OK", "t", &[], None, b"", &mut out);
        let r = parse(&out).unwrap();
        let vias: Vec<&str> = r.headers_named("Via").collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;received=192.0.2.7;rport=41000",
                "SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKb;rport"
            ]
        );
        assert_eq!(r.top_via_branch(), Some("z9hG4bKa"));
    }

    #[test]
    fn digest_uri_is_compared_as_a_sip_uri() {
        let same = [
            ("sip:arc@vakt", "sip:arc@vakt"),
            ("SIP:arc@VAKT", "sip:arc@vakt"),
            ("sip:%61rc@vakt", "sip:arc@vakt"),
            ("sip:127.0.0.1:5060", "sip:127.0.0.1"),
            (
                "sip:arc@vakt;transport=tcp;lr",
                "sip:arc@vakt;lr;transport=TCP",
            ),
            ("sip:arc@vakt;transport=tcp", "sip:arc@vakt"),
            ("sip:arc@[::1]:5060", "sip:arc@[0:0::1]:5060"),
            ("sips:arc@vakt", "sip:arc@vakt"),
            ("sip:arc@vakt.", "sip:arc@vakt"),
            (" sip:arc@vakt ", "sip:arc@vakt"),
            ("sip:arc@vakt?subject=x", "sip:arc@vakt"),
            ("/dir/index.html", "/dir/index.html"),
        ];
        for (a, b) in same {
            assert!(uri_matches(a, b), "{a} = {b}");
            assert!(uri_matches(b, a), "{b} = {a}");
        }
        let different = [
            ("sip:ARC@vakt", "sip:arc@vakt"),
            ("sip:arc@elsewhere.example", "sip:arc@vakt"),
            ("sip:127.0.0.1:5061", "sip:127.0.0.1:5060"),
            ("sip:vakt", "sip:arc@vakt"),
            ("sip:arc:pw@vakt", "sip:arc@vakt"),
            ("sip:arc@vakt;user=phone", "sip:arc@vakt"),
            ("sip:arc@vakt;maddr=10.0.0.1", "sip:arc@vakt;maddr=10.0.0.2"),
            ("sip:arc@vakt;transport=udp", "sip:arc@vakt;transport=tcp"),
            ("tel:+4670", "sip:+4670@vakt"),
            ("/dir/index.html", "/dir/other.html"),
            ("sip:arc@vakt:99999", "sip:arc@vakt"),
            ("sip:", "sip:arc@vakt"),
        ];
        for (a, b) in different {
            assert!(!uri_matches(a, b), "{a} != {b}");
            assert!(!uri_matches(b, a), "{b} != {a}");
        }
    }

    fn creds<'a>(nonce: &'a str, cnonce: Option<&'a str>, nc: Option<&'a str>) -> Credentials<'a> {
        Credentials {
            username: "u".into(),
            realm: "vakt".into(),
            nonce: nonce.into(),
            uri: "sip:arc@vakt".into(),
            response: "00".into(),
            algorithm: None,
            qop: nc.map(|_| Cow::Borrowed("auth")),
            nc: nc.map(Cow::Borrowed),
            cnonce: cnonce.map(Cow::Borrowed),
            opaque: None,
        }
    }

    #[test]
    fn nonce_counts_accept_each_count_once() {
        let mut c = NonceCounts::new(300);
        let t = 1_000;
        let ok = |c: &mut NonceCounts, nc: &str| {
            c.check("u", &creds("n1", Some("a"), Some(nc)), (t, 1), t)
        };
        assert_eq!(ok(&mut c, "00000001"), Ok(()));
        assert_eq!(ok(&mut c, "00000001"), Err(Replay::Reused));
        assert_eq!(ok(&mut c, "00000003"), Ok(()));
        // A request that was overtaken still counts, once.
        assert_eq!(ok(&mut c, "00000002"), Ok(()));
        assert_eq!(ok(&mut c, "00000002"), Err(Replay::Reused));
        // Counts are hex: 0x50 = 80; 0x30 = 48 is within the window of 64 behind it.
        assert_eq!(ok(&mut c, "00000050"), Ok(()));
        assert_eq!(ok(&mut c, "00000030"), Ok(()));
        assert_eq!(ok(&mut c, "0000000a"), Err(Replay::Reused));
        // Beyond the window behind the highest count: refused.
        assert_eq!(ok(&mut c, "00000100"), Ok(()));
        assert_eq!(ok(&mut c, "00000031"), Err(Replay::Reused));
        assert_eq!(ok(&mut c, "00000000"), Err(Replay::Reused));
        assert_eq!(ok(&mut c, "000000001"), Err(Replay::Reused));
        // Another cnonce, another user: counts of their own.
        assert_eq!(
            c.check("u", &creds("n1", Some("b"), Some("00000001")), (t, 1), t),
            Ok(())
        );
        assert_eq!(
            c.check("v", &creds("n1", Some("a"), Some("00000001")), (t, 1), t),
            Ok(())
        );
        // Without qop a nonce is good once.
        assert_eq!(c.check("u", &creds("n2", None, None), (t, 2), t), Ok(()));
        assert_eq!(
            c.check("u", &creds("n2", None, None), (t, 2), t),
            Err(Replay::Reused)
        );
        assert_eq!((c.users(), c.len()), (2, 4));
    }

    #[test]
    fn nonce_counts_are_bounded_and_never_reopen_a_replay() {
        let mut c = NonceCounts::new(300);
        let t = 1_000;
        // A device that sends a fresh cnonce with every request, on one nonce.
        let cnonces: Vec<String> = (0..NONCE_USES_PER_USER).map(|i| format!("c{i}")).collect();
        for cn in &cnonces {
            let r = c.check("u", &creds("n1", Some(cn), Some("00000001")), (t, 1), t);
            assert_eq!(r, Ok(()));
        }
        assert_eq!(c.len(), NONCE_USES_PER_USER);
        // One more: the nonce is given up, this request and the old ones are refused as
        // stale (the device takes a new nonce); a captured old request stays refused.
        let more = creds("n1", Some("more"), Some("00000001"));
        assert_eq!(c.check("u", &more, (t, 1), t), Err(Replay::Expired));
        let old = creds("n1", Some("c0"), Some("00000001"));
        assert_eq!(c.check("u", &old, (t, 1), t + 1), Err(Replay::Expired));
        assert!(c.len() <= NONCE_USES_PER_USER);
        // The next nonce works, even one issued in the same second.
        let next = creds("n2", Some("x"), Some("00000001"));
        assert_eq!(c.check("u", &next, (t, 2), t), Ok(()));
        // Thousands of requests, each on a nonce of its own, keep the memory bounded.
        for i in 0..5_000u64 {
            let nonce = format!("m{i}");
            let at = t + 10 + i as i64 / 10;
            let _ = c.check(
                "u",
                &creds(&nonce, Some("x"), Some("00000001")),
                (at, 3 + i),
                at,
            );
            assert!(c.len() <= NONCE_USES_PER_USER);
        }
        // Everything is forgotten once the nonces expire.
        let late = t + 10_000;
        let w = creds("z", Some("x"), Some("00000001"));
        assert_eq!(c.check("w", &w, (late, 9_000), late), Ok(()));
        assert_eq!((c.users(), c.len()), (1, 1));
    }

    #[test]
    fn tokens() {
        let t = random_token(16);
        assert_eq!(t.len(), 16);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(t, random_token(16));
        assert_eq!(random_token(0), "");
    }

    #[test]
    fn labels() {
        assert_eq!(SipError::MissingHeader("Via").as_str(), "missing_header");
        assert_eq!(SipError::TooLarge.as_str(), "too_large");
        assert_eq!(AuthError::MissingParam("nonce").as_str(), "missing_param");
    }
}

#[cfg(test)]
mod invite_tests {
    use super::*;

    /// An INVITE as a trunk's session border controller sends it (RFC 3261 §24.2 shape).
    const INVITE: &[u8] = b"INVITE sip:+46101234567@vakt.example SIP/2.0\r\n\
Via: SIP/2.0/UDP sbc.example:5060;branch=z9hG4bKsbc1;rport\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:sbc.example;lr>, <sip:core.example;lr;ftag=x>\r\n\
Record-Route: \"edge, outer\" <sip:edge.example;lr>\r\n\
From: \"Anna\" <sip:+4670111222@sbc.example;user=phone>;tag=a1\r\n\
To: <sip:+46101234567@vakt.example>\r\n\
Call-ID: c1@sbc\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sbc.example:5060>\r\n\
P-Asserted-Identity: <tel:+4670333444;cpc=ordinary>, <sip:+4670333444@sbc.example>\r\n\
Supported: 100rel, timer\r\n\
k: replaces\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
Allow: INVITE, ACK, BYE, CANCEL, UPDATE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn invite_headers() {
        let m = parse(INVITE).unwrap();
        assert_eq!(
            m.list("Record-Route"),
            [
                "<sip:sbc.example;lr>",
                "<sip:core.example;lr;ftag=x>",
                "\"edge, outer\" <sip:edge.example;lr>"
            ]
        );
        assert!(m.lists("Supported", "timer") && m.lists("Supported", "REPLACES"));
        assert!(!m.lists("Require", "timer"));
        assert!(m.lists("Allow", "update"));
        assert_eq!(m.to_uri(), Some("sip:+46101234567@vakt.example"));
        assert_eq!(m.asserted_identity(), Some("tel:+4670333444;cpc=ordinary"));
        assert_eq!(
            m.asserted_identity().and_then(uri_number),
            Some("+4670333444")
        );
        assert_eq!(m.from_uri().and_then(uri_number), Some("+4670111222"));
        assert_eq!(
            m.session_expires(),
            Some(SessionExpires {
                secs: 1800,
                refresher: Some(Refresher::Uac)
            })
        );
        assert_eq!(m.seconds("Min-SE"), Some(90));
        assert_eq!(m.seconds("Expires"), None);
        assert_eq!(m.body, b"v=0\n");
    }

    #[test]
    fn session_expires_values() {
        let se = |v| parse_session_expires(v);
        assert_eq!(
            se("90"),
            Some(SessionExpires {
                secs: 90,
                refresher: None
            })
        );
        assert_eq!(
            se(" 600 ; refresher = UAS ").and_then(|s| s.refresher),
            Some(Refresher::Uas)
        );
        assert_eq!(se("600;refresher=proxy").and_then(|s| s.refresher), None);
        for bad in [
            "",
            "0",
            "-5",
            "x",
            "99999999999",
            "2147483648",
            ";refresher=uac",
        ] {
            assert_eq!(se(bad), None, "{bad}");
        }
        // The compact form.
        let m = parse(b"UPDATE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 2 UPDATE\r\nx: 120\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(m.session_expires().map(|s| s.secs), Some(120));
    }

    #[test]
    fn numbers_of_uris() {
        assert_eq!(uri_number("sip:luc678@vakt"), Some("luc678"));
        assert_eq!(uri_number("tel:+46-70-111"), Some("+46-70-111"));
        assert_eq!(uri_number("TEL:112;phone-context=x"), Some("112"));
        assert_eq!(uri_number("sip:vakt.example"), None);
        assert_eq!(uri_number("tel:"), None);
        assert_eq!(uri_number("mailto:a@b"), None);
        assert_eq!(uri_number("sip:a%0d@b"), None);
        assert_eq!(header_uri("\"A <b>\" <sip:x@y>;tag=1"), Some("sip:x@y"));
        assert_eq!(header_uri("<>"), None);
    }

    #[test]
    fn lists_are_bounded() {
        let many = vec!["a"; 100].join(", ");
        let raw = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 2 OPTIONS\r\nSupported: {many}\r\nSupported: timer\r\nContent-Length: 0\r\n\r\n"
        );
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.list("Supported").len(), MAX_LIST_ITEMS);
        assert!(m.list("Require").is_empty());
    }

    #[test]
    fn client_digest_answers_a_challenge_as_the_server_verifies_it() {
        // RFC 2617 §3.5's challenge, as vakt's own challenge() writes it (qop=auth).
        let c = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(c.qop_auth && !c.stale);
        let v = authorization(
            "Mufasa",
            "Circle Of Life",
            &c,
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        );
        // The RFC's own response for these values.
        assert!(
            v.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{v}"
        );
        let creds = parse_authorization(&v).unwrap();
        assert_eq!(creds.nc.as_deref(), Some("00000001"));
        assert_eq!(
            creds.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert!(verify(
            &creds,
            "GET",
            &ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
        ));
        assert!(!verify(
            &creds,
            "GET",
            &ha1("Mufasa", "testrealm@host.com", "wrong")
        ));

        // Without qop (RFC 2069), and stale.
        let c = parse_challenge("digest nonce=\"n\\\"1\", realm=vakt, stale=TRUE, algorithm=md5")
            .unwrap();
        assert!(!c.qop_auth && c.stale && c.opaque.is_none());
        assert_eq!(c.nonce, "n\"1");
        let v = authorization("luc\"1", "pw", &c, "INVITE", "sip:arc@vakt", "cn", 7);
        let creds = parse_authorization(&v).unwrap();
        assert_eq!(creds.username, "luc\"1");
        assert!(creds.qop.is_none() && creds.nc.is_none() && creds.cnonce.is_none());
        assert!(verify(&creds, "INVITE", &ha1("luc\"1", "vakt", "pw")));
        // vakt's own challenge reads back.
        let ours = challenge("vakt", "abc", true);
        let c = parse_challenge(&ours).unwrap();
        assert!(c.qop_auth && c.stale && c.realm == "vakt" && c.nonce == "abc");
    }

    #[test]
    fn challenges_vakt_cannot_answer() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Err(AuthError::Basic));
        assert_eq!(parse_challenge("Bearer x=1"), Err(AuthError::NotDigest));
        assert_eq!(
            parse_challenge("Digest realm=\"r\""),
            Err(AuthError::MissingParam("nonce"))
        );
        assert_eq!(
            parse_challenge("Digest realm=r, nonce=n, algorithm=SHA-256"),
            Err(AuthError::Algorithm)
        );
        assert_eq!(
            parse_challenge("Digest realm=r, nonce=n, qop=\"auth-int\""),
            Err(AuthError::Algorithm)
        );
        assert_eq!(
            parse_challenge("Digest realm=r, realm=s, nonce=n"),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn requests_with_more_headers() {
        let mut out = Vec::new();
        encode_request_with(
            &OutRequest {
                method: "BYE",
                uri: "sip:luc@192.0.2.1:5060",
                via_transport: "UDP",
                via_host: "127.0.0.1:5060",
                branch: "z9hG4bKb1",
                from: "<sip:arc@vakt>",
                from_tag: "v1",
                to: "<sip:luc@vakt>;tag=d1",
                call_id: "c1",
                cseq: 3,
                content_type: None,
                body: b"",
            },
            &[
                ("Route", "<sip:p1;lr>"),
                ("Route", "<sip:p2;lr>"),
                ("Reason", "SIP;cause=200\r\nX: injected"),
            ],
            &mut out,
        );
        let m = parse(&out).unwrap();
        assert_eq!(m.list("Route"), ["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(m.to_tag(), Some("d1"));
        assert_eq!(m.cseq(), (3, "BYE"));
        assert!(m.header("X").is_none(), "no header injection");
    }
}
