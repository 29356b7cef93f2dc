//! SCAIP's SIP endpoint (protocols.md §3.2): UDP, TCP and TLS listeners and the two SIP
//! transactions of every SCAIP message. Who a device is and what its message gets are the
//! [`ScaipHandler`]'s business (ingest: Digest against the registry, the SCAIP rules, the
//! journal); this module frames, answers at the SIP level and carries the `<mrs>` back.
//!
//! 1. The device's MESSAGE is answered at once: `401` with the handler's Digest challenge
//!    when the handler does not authenticate it (nothing else happens), else `200 OK`.
//!    OPTIONS keep-alives get `200`, REGISTER is authenticated and answered `200` (vakt
//!    answers over the flow a request came on, so the binding is not needed), a MESSAGE
//!    whose body is not `application/scaip+xml` (or is encoded) `415`, other methods `405`.
//! 2. The body goes to [`ScaipHandler::message`], and the `<mrs>` it returns goes back in a
//!    MESSAGE of vakt's own over the same flow (`outgoing`): to the UDP source address,
//!    or on the same TCP/TLS connection.
//!
//! Every response goes to the source address and port (or the connection) of its request,
//! with `received` and `rport` in the top Via (RFC 3261 §18.2.1, RFC 3581) for devices
//! behind NAT.
//!
//! Bounds: a source (UDP address and port, or a connection) over its rate gets `503` with
//! `Retry-After` (`rate`); connections are bounded ([`crate::transport::accept`]) and
//! closed when idle; a UDP request retransmitted within 32 s gets the same response again
//! without being handled twice (`uas`).
//!
//! Calls (`proto/sip-voice.md`): with [`Endpoint::with_calls`] the endpoint also takes
//! INVITE dialogs, in (a unit or a trunk, admitted by the [`CallHandler`]) and out
//! ([`Endpoint::dial`]), on the same listeners, flows, rate and transaction cache; the SDP
//! they carry is the handler's, and no media passes here. Without a call handler INVITE
//! gets `405` as before.
//!
//! Files: `flow` (how a message came and how to send on its flow), `rate`, `uas`,
//! `outgoing` (vakt's MESSAGE transactions), [`serve`] (the listeners' loops); `call` (the
//! calls' API), `dialog` (one dialog's state machine, sans-IO), `invite` (the dialogs'
//! table and tasks).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::accept::Scope;
use crate::model::Transport;
use crate::telemetry::ScaipMetrics;
use flow::Flow;
use invite::{Calls, Routed};
use outgoing::{OutTarget, Outgoing};
use vakt_proto::scaip;
use vakt_proto::sip::{self, Message, StartLine};

mod call;
mod dialog;
mod flow;
mod invite;
mod outgoing;
mod rate;
pub mod serve;
mod uas;

pub use call::{
    ActionError, Admission, CallEvent, CallHandle, CallHandler, CallId, Caller, Decision, Dial,
    DialError, DialVia, End, IncomingCall, InviteOptions, Origin,
};
pub use serve::{serve_stream, serve_udp, tls_acceptor};

/// RFC 3261 T1.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2.
const T2: Duration = Duration::from_secs(4);
/// RFC 3261 timer F / J: how long a non-INVITE transaction lives (64·T1).
const TRANSACTION: Duration = Duration::from_secs(32);
/// What vakt accepts and allows.
const ALLOW: &str = "MESSAGE, OPTIONS, REGISTER";

/// Settings of the endpoint (`[scaip]`).
#[derive(Clone, Debug)]
pub struct SipOptions {
    /// vakt's SIP URI (From of its MESSAGEs).
    pub arc_uri: String,
    /// Requests per second per source.
    pub rate_per_source: u32,
    /// Burst above the rate.
    pub rate_burst: u32,
    /// TCP/TLS connections at once (each listener).
    pub max_connections: usize,
    /// TCP/TLS connections at once from one source (each listener).
    pub max_per_source: usize,
    /// Idle connections are closed after this.
    pub idle_timeout: Duration,
}

/// One authenticated SCAIP request, as it arrived.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The SIP Digest user the device authenticated as.
    pub user: &'a str,
    /// The SIP body.
    pub body: &'a [u8],
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// The device's address.
    pub peer: SocketAddr,
    /// Arrival time.
    pub now: jiff::Timestamp,
}

/// What the layer above does for the SIP endpoint: the devices' credentials and the
/// answers to their messages.
pub trait ScaipHandler: Send + Sync + 'static {
    /// Checks the Digest credentials of a `method` request to `uri` from `peer`: the SIP
    /// user, or the `WWW-Authenticate` challenge to answer `401` with.
    fn authenticate(
        &self,
        msg: &Message<'_>,
        method: &str,
        uri: &str,
        peer: SocketAddr,
    ) -> Result<String, String>;

    /// The `<mrs>` body answering an authenticated request (made durable first when it must
    /// be).
    fn message(&self, req: Request<'_>) -> impl Future<Output = Vec<u8>> + Send;
}

/// The SIP side of SCAIP: shared by every listener.
pub struct Endpoint<H> {
    handler: Arc<H>,
    opts: SipOptions,
    metrics: ScaipMetrics,
    outgoing: Outgoing,
    uas: Arc<Mutex<uas::UasCache>>,
    rates: rate::UdpRates,
    /// The calls (INVITE dialogs), once a handler takes them.
    calls: Option<Arc<Calls>>,
    /// Where the answer tasks run.
    scope: Scope,
}

impl<H> std::fmt::Debug for Endpoint<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("arc_uri", &self.opts.arc_uri)
            .finish_non_exhaustive()
    }
}

fn method_label(m: &str) -> &'static str {
    match m {
        "MESSAGE" => "message",
        "OPTIONS" => "options",
        "REGISTER" => "register",
        "INVITE" => "invite",
        "CANCEL" => "cancel",
        "BYE" => "bye",
        "INFO" => "info",
        "UPDATE" => "update",
        _ => "other",
    }
}

fn answer_class(code: u16) -> &'static str {
    match code {
        200..=299 => "2xx",
        401 => "401",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The media type of a Content-Type value, without parameters, lower case.
fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl<H: ScaipHandler> Endpoint<H> {
    /// An endpoint over `handler`; answer tasks run on `scope` and stop waiting for devices
    /// at its shutdown.
    pub fn new(
        handler: Arc<H>,
        opts: SipOptions,
        metrics: ScaipMetrics,
        scope: Scope,
    ) -> Endpoint<H> {
        Endpoint {
            handler,
            outgoing: Outgoing::new(
                opts.arc_uri.clone(),
                metrics.clone(),
                scope.shutdown.clone(),
            ),
            uas: Arc::new(Mutex::new(uas::UasCache::default())),
            rates: rate::UdpRates::new(opts.rate_per_source, opts.rate_burst),
            calls: None,
            opts,
            metrics,
            scope,
        }
    }

    /// Takes calls too (INVITE dialogs, `call`): `handler` admits and answers them, within
    /// `opts`. Without it, INVITE is answered `405` as any method the endpoint does not
    /// allow.
    pub fn with_calls(mut self, handler: Arc<dyn CallHandler>, opts: InviteOptions) -> Self {
        self.calls = Some(Arc::new(Calls::new(
            handler,
            opts,
            &self.opts.arc_uri,
            self.uas.clone(),
            self.scope.clone(),
        )));
        self
    }

    /// Starts a call out; its events go to the call handler under the returned handle's id
    /// (the first as soon as a response comes: register the handle at once). Over
    /// [`DialVia::Tcp`] a connection is opened for it (and read like an accepted one).
    pub async fn dial(self: &Arc<Self>, dial: Dial) -> Result<CallHandle, DialError> {
        let calls = self.calls.clone().ok_or(DialError::NoCalls)?;
        let (flow, local) = match &dial.via {
            DialVia::Tcp(addr) => serve::connect(self, *addr).await?,
            via => calls.flow_for(via)?,
        };
        calls.dial(dial, flow, local)
    }

    /// The methods the endpoint allows.
    fn allow(&self) -> &'static str {
        if self.calls.is_some() {
            dialog::ALLOW_CALLS
        } else {
            ALLOW
        }
    }

    /// True for a source whose requests the per-source rate does not count (a trunk).
    fn unlimited(&self, peer: SocketAddr) -> bool {
        self.calls.as_ref().is_some_and(|c| c.unlimited(peer))
    }

    /// Counts a request from `peer` over its source's rate; the `503` (with `Retry-After`)
    /// to send, if it parses.
    fn over_rate(&self, raw: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
        self.metrics.rate_limited.increment(1);
        let msg = sip::parse(raw).ok()?;
        let mut out = Vec::with_capacity(256);
        sip::encode_response_from(
            Some(peer),
            &msg,
            503,
            "Service Unavailable",
            &sip::random_token(10),
            &[("Retry-After", "5")],
            None,
            b"",
            &mut out,
        );
        Some(out)
    }

    /// Handles one whole SIP message from `flow`. `local` is the address it arrived at.
    async fn handle(self: &Arc<Self>, raw: &[u8], flow: &Flow, local: SocketAddr) {
        let msg = match sip::parse(raw) {
            Ok(m) => m,
            Err(e) => {
                // Without a parsed Via there is nowhere to send a response.
                tracing::debug!(error = e.as_str(), peer = %flow.peer(), "sip message not parsed");
                self.metrics.sip_request("other", "4xx");
                return;
            }
        };
        let (method, uri) = match msg.start {
            StartLine::Response { code, .. } => {
                match &self.calls {
                    Some(calls) if msg.cseq().1 != "MESSAGE" => calls.response(raw, &msg, flow),
                    _ => self.outgoing.response(&msg, code),
                }
                return;
            }
            StartLine::Request { method, uri } => (method, uri),
        };
        if method == "ACK" {
            if let Some(calls) = &self.calls {
                calls.ack(raw, &msg, flow);
            }
            return;
        }
        let now = Instant::now();
        let cache_key = uas::key(&msg, method, flow);
        if let Some(k) = &cache_key {
            let cached = self.uas().get(k, now);
            if let Some(resp) = cached {
                flow.send(resp).await;
                return;
            }
        }
        let to_tag = sip::random_token(10);
        let mut out = Vec::with_capacity(512);
        let mut respond = |code: u16, reason: &str, extra: &[(&str, &str)]| {
            sip::encode_response_from(
                Some(flow.peer()),
                &msg,
                code,
                reason,
                &to_tag,
                extra,
                None,
                b"",
                &mut out,
            );
            code
        };
        let calls = self.calls.clone();
        let code = match method {
            "OPTIONS" => {
                let accept = if calls.is_some() {
                    "application/scaip+xml, application/sdp"
                } else {
                    scaip::CONTENT_TYPE
                };
                let mut extra = vec![("Allow", self.allow()), ("Accept", accept)];
                if calls.is_some() {
                    extra.push(("Supported", dialog::SUPPORTED));
                }
                respond(200, "OK", &extra)
            }
            "MESSAGE" | "REGISTER" => {
                match self.handler.authenticate(&msg, method, uri, flow.peer()) {
                    Err(challenge) => respond(
                        401,
                        "Unauthorized",
                        &[("WWW-Authenticate", challenge.as_str())],
                    ),
                    Ok(user) if method == "REGISTER" => {
                        let expires = msg
                            .header("Expires")
                            .and_then(|e| e.trim().parse::<u32>().ok())
                            .unwrap_or(3600)
                            .min(3600)
                            .to_string();
                        let mut extra = vec![("Expires", expires.as_str())];
                        if let Some(c) = msg.header("Contact") {
                            extra.push(("Contact", c));
                        }
                        tracing::debug!(user = %user, "sip register accepted");
                        if let Some(c) = &calls {
                            c.saw(&user, flow, local);
                        }
                        respond(200, "OK", &extra)
                    }
                    Ok(user) => {
                        let ct = msg.content_type().map(media_type).unwrap_or_default();
                        let encoded = msg
                            .header("Content-Encoding")
                            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
                        if ct != scaip::CONTENT_TYPE || encoded {
                            respond(
                                415,
                                "Unsupported Media Type",
                                &[
                                    ("Accept", scaip::CONTENT_TYPE),
                                    ("Accept-Encoding", "identity"),
                                ],
                            )
                        } else {
                            if let Some(c) = &calls {
                                c.saw(&user, flow, local);
                            }
                            let code = respond(200, "OK", &[]);
                            self.spawn_answer(&msg, uri, user, flow, local);
                            code
                        }
                    }
                }
            }
            "INVITE" | "CANCEL" | "BYE" | "INFO" | "UPDATE" | "PRACK" if calls.is_some() => {
                match calls
                    .as_ref()
                    .map(|c| c.request(raw, &msg, method, uri, flow, local))
                {
                    Some(Routed::Refuse(code, headers)) => {
                        let mut extra: Vec<(&str, &str)> =
                            headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                        if code == 405 {
                            extra.push(("Allow", dialog::ALLOW_CALLS));
                        }
                        respond(code, dialog::reason(code), &extra)
                    }
                    _ => {
                        self.metrics.sip_request(method_label(method), "dialog");
                        return;
                    }
                }
            }
            _ if calls.is_some() && msg.to_tag().is_some() => {
                // Another method in a call's dialog: the dialog answers (405), or 481.
                match calls
                    .as_ref()
                    .map(|c| c.request(raw, &msg, method, uri, flow, local))
                {
                    Some(Routed::Refuse(code, _)) => respond(code, dialog::reason(code), &[]),
                    _ => return,
                }
            }
            _ => respond(405, "Method Not Allowed", &[("Allow", self.allow())]),
        };
        self.metrics
            .sip_request(method_label(method), answer_class(code));
        if let Some(k) = cache_key {
            self.uas().put(k, out.clone(), now);
        }
        flow.send(out).await;
    }

    fn uas(&self) -> std::sync::MutexGuard<'_, uas::UasCache> {
        self.uas.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers the SCAIP body in a task: the `<mrs>` goes out once the handler has it.
    fn spawn_answer(
        self: &Arc<Self>,
        msg: &Message<'_>,
        uri: &str,
        user: String,
        flow: &Flow,
        local: SocketAddr,
    ) {
        let started = Instant::now();
        let body = msg.body.to_vec();
        // vakt's sent-by: the address the request reached, or the host it was sent to when
        // the socket listens on every address.
        let via_host = if local.ip().is_unspecified() {
            outgoing::uri_host(uri).map_or_else(|| local.to_string(), str::to_owned)
        } else {
            local.to_string()
        };
        let target = OutTarget::for_request(msg, &user, flow);
        let flow = flow.clone();
        let ep = self.clone();
        let span = tracing::debug_span!("scaip", peer = %flow.peer(), user = %user);
        self.scope.spawn(
            async move {
                let xml = ep
                    .handler
                    .message(Request {
                        user: &user,
                        body: &body,
                        transport: flow.transport(),
                        peer: flow.peer(),
                        now: jiff::Timestamp::now(),
                    })
                    .await;
                ep.metrics
                    .answer_seconds
                    .record(started.elapsed().as_secs_f64());
                let outcome = ep.outgoing.send_mrs(&flow, &target, &via_host, &xml).await;
                ep.metrics.answer(outcome);
                tracing::debug!(outcome, "scaip answer sent");
            }
            .instrument(span),
        );
    }
}
