//! One INVITE dialog as a state machine, sans-IO: messages, actions and the time go in
//! ([`Dialog::on_request`], [`Dialog::on_response`], [`Dialog::on_action`],
//! [`Dialog::on_timer`], with `now` passed in), and what to send and what to tell the
//! handler comes out ([`Out`]). The driver (`invite`) owns the sockets and the clock.
//!
//! It holds the transactions of the dialog as RFC 3261 has them where it matters:
//! - **INVITE server** (the call in, and each re-INVITE): `100 Trying` at once; a final
//!   refusal retransmitted over UDP from T1 doubling to T2 until its ACK (timer G), given up
//!   at 64·T1 (timer H), ACKs then absorbed for T4 (timer I); a `2xx` retransmitted the same
//!   way until its ACK, which ends it (§13.3.1.4), or at 64·T1 (timer L) the dialog ends with
//!   a BYE; a retransmitted INVITE gets the last response again; a non-100 provisional is
//!   repeated each minute while a call rings (§13.3.1.1); CANCEL gets `200` and the INVITE
//!   `487`.
//! - **INVITE client** (the call out, vakt's re-INVITEs): retransmitted over UDP from T1
//!   doubling (timer A) until a response, `408` at 64·T1 without one (timer B); every final
//!   refusal ACKed (same branch) and that ACK repeated to its retransmissions for 64·T1
//!   (timer D); a `2xx` ACKed in a transaction of its own (new branch, to the Contact, along
//!   the route set) and the ACK repeated to retransmitted `2xx`s; a `401`/`407` answered
//!   with Digest when the call has credentials; a CANCEL only once a provisional came.
//! - **non-INVITE client** (BYE, CANCEL, INFO, UPDATE): retransmitted over UDP from T1
//!   doubling to T2 (timer E, T2 once provisional), given up at 64·T1 (timer F).
//! - **the dialog** (§12): the To tag vakt adds, the remote tag, the route set from
//!   Record-Route (reversed for the caller's side), the remote target from Contact, the
//!   local CSeq counting up and the remote one only accepted going up (`500` otherwise), a
//!   request whose tags do not match `481`; `481` or `408` to one of vakt's requests ends
//!   it. Loose routing (`;lr`), and strict routing for a first route without it.
//! - **session timers** (RFC 4028): `Supported: timer`; a Session-Expires below `Min-SE`
//!   refused `422`; the interval and the refresher agreed in each `2xx`; as refresher, vakt
//!   refreshes at half the interval (UPDATE when the peer allows it, else a re-INVITE with
//!   the last SDP, unchanged); otherwise a session not refreshed by the interval less
//!   min(32 s, a third) ends with a BYE.
//! - **bounds**: a call rings at most `max_ring` and lasts at most `max_call`; at most
//!   [`MAX_REQUESTS`] of vakt's requests in flight; each call hears exactly one
//!   [`CallEvent::Ended`] and nothing after it.
//!
//! Over TCP and TLS nothing is retransmitted (the transport is reliable), but the timers
//! that wait (H, L, B, F) run the same.
//!
//! Written by hand: the Rust SIP stacks at hand either own the sockets and the runtime
//! (rsip's companions, ezk-sip) or cover only parsing (rsip, which `vakt_proto::sip`
//! already does for SCAIP); vakt needs one sans-IO dialog that shares the SCAIP endpoint's
//! flows, limits and Digest.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::call::{Action, CallEvent, End, InviteOptions};
use super::{T1, T2, TRANSACTION};
use crate::model::SipPassword;
use vakt_proto::sip::{self, Message, OutRequest, Refresher};

/// RFC 3261 T4: how long a message lingers in the network.
const T4: Duration = Duration::from_secs(5);
/// A non-100 provisional is repeated this often while a call rings (RFC 3261 §13.3.1.1).
const PROVISIONAL_EVERY: Duration = Duration::from_secs(60);
/// vakt's requests (INFO, UPDATE) in flight at once in one dialog; BYE and CANCEL always go.
pub(super) const MAX_REQUESTS: usize = 8;
/// The SDP media type.
pub(super) const SDP: &str = "application/sdp";
/// The methods the endpoint allows once it takes calls.
pub(super) const ALLOW_CALLS: &str =
    "INVITE, ACK, CANCEL, BYE, INFO, UPDATE, OPTIONS, MESSAGE, REGISTER";
/// The extensions vakt supports.
pub(super) const SUPPORTED: &str = "timer";

/// What the dialog asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Out {
    /// Send these bytes on the dialog's flow.
    Send(Vec<u8>),
    /// Send this response to the non-INVITE request just handed in (over UDP the driver
    /// keeps it for that request's retransmissions).
    Reply(Vec<u8>),
    /// Tell the handler.
    Event(CallEvent),
    /// Ask the handler for its answer to the peer's new offer; the driver hands it back
    /// with [`Dialog::reanswer`] before anything else.
    Reoffer(Vec<u8>),
}

/// How vakt names itself in a dialog.
#[derive(Clone, Debug)]
pub(super) struct Local {
    /// `UDP`, `TCP` or `TLS`.
    pub(super) via_transport: &'static str,
    /// vakt's sent-by (`host:port`).
    pub(super) via_host: String,
    /// vakt's Contact value (`<sip:vakt@host:port;transport=tcp>`).
    pub(super) contact: String,
    /// A stream transport: nothing is retransmitted.
    pub(super) reliable: bool,
}

/// A call out as the dialog starts it.
#[derive(Clone, Debug)]
pub(super) struct Outbound {
    pub(super) uri: String,
    pub(super) from_uri: String,
    pub(super) offer: Vec<u8>,
    pub(super) credentials: Option<(String, SipPassword)>,
    pub(super) headers: Vec<(String, String)>,
}

/// An INVITE refused before a dialog is made, or a request in a dialog refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) code: u16,
    pub(super) headers: Vec<(&'static str, String)>,
}

/// The reason phrase vakt sends with `code`.
pub(super) fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => match code / 100 {
            3 => "Redirected",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// A final refusal status as sent: `code` when it is one (300..=699), else `500`.
pub(super) fn final_code(code: u16) -> u16 {
    if (300..=699).contains(&code) {
        code
    } else {
        500
    }
}

/// Checks what an INVITE, re-INVITE or UPDATE asks of vakt before it is taken: a Contact
/// for an INVITE (`400`), no extension vakt lacks in Require (`420` + Unsupported), a body
/// that is SDP without Content-Encoding (`415`), a session interval not below vakt's
/// `Min-SE` (`422`).
pub(super) fn screen(req: &Message<'_>, opts: &InviteOptions) -> Result<(), Refusal> {
    let refuse = |code, headers| Err(Refusal { code, headers });
    if req.method() == Some("INVITE") && req.contact_uri().is_none() {
        return refuse(400, Vec::new());
    }
    let unsupported: Vec<&str> = req
        .list("Require")
        .into_iter()
        .filter(|t| !t.eq_ignore_ascii_case("timer"))
        .collect();
    if !unsupported.is_empty() {
        return refuse(420, vec![("Unsupported", unsupported.join(", "))]);
    }
    let encoded = req
        .header("Content-Encoding")
        .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    let sdp = req
        .content_type()
        .is_some_and(|c| c.eq_ignore_ascii_case(SDP));
    if !req.body.is_empty() && (!sdp || encoded) {
        return refuse(
            415,
            vec![
                ("Accept", SDP.to_owned()),
                ("Accept-Encoding", "identity".into()),
            ],
        );
    }
    let min_se = secs(opts.min_se);
    if supports_timer(req) && req.session_expires().is_some_and(|se| se.secs < min_se) {
        return refuse(422, vec![("Min-SE", min_se.to_string())]);
    }
    Ok(())
}

fn supports_timer(m: &Message<'_>) -> bool {
    m.lists("Supported", "timer") || m.lists("Require", "timer")
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs())
        .unwrap_or(u32::MAX)
        .min((1 << 31) - 1)
}

/// The state of an INVITE server transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// No final response yet; the last provisional is repeated at `repeat`.
    Proceeding { repeat: Option<Instant> },
    /// A final refusal sent: retransmitted at `next` (UDP) until its ACK, given up at `until`.
    Completed {
        next: Option<Instant>,
        interval: Duration,
        until: Instant,
    },
    /// A `2xx` sent: retransmitted at `next` (UDP) until its ACK, given up at `until`.
    Accepted {
        next: Option<Instant>,
        interval: Duration,
        until: Instant,
    },
    /// The ACK of a refusal came: later ACKs are absorbed until `until`.
    Confirmed { until: Instant },
}

/// An INVITE vakt answers.
#[derive(Clone, Debug)]
struct ServerTxn {
    cseq: u32,
    branch: Option<String>,
    /// The INVITE as it came: every response is built from it.
    request: Vec<u8>,
    source: SocketAddr,
    initial: bool,
    last: Option<Vec<u8>>,
    state: Server,
}

/// Why vakt sends an INVITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// The call out.
    Initial,
    /// The handler's re-INVITE (hold, resume).
    Offer,
    /// A session refresh with the last SDP.
    Refresh,
}

/// An INVITE vakt sent.
#[derive(Clone, Debug)]
struct ClientInvite {
    purpose: Purpose,
    cseq: u32,
    branch: String,
    uri: String,
    to: String,
    routes: Vec<String>,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
    request: Vec<u8>,
    /// Retransmission (UDP, before any response): when, and the interval.
    resend: Option<(Instant, Duration)>,
    /// Timer B (and the wait for the 487 after a CANCEL).
    timeout: Option<Instant>,
    provisional: bool,
    cancelled: bool,
    /// After a refusal: its ACK, repeated to retransmitted refusals until then (timer D).
    done: Option<(Vec<u8>, Instant)>,
    /// A 491 came: sent again (new CSeq) at this time.
    retry_at: Option<Instant>,
    auth_tries: u8,
}

/// vakt's non-INVITE requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bye,
    Cancel,
    Info,
    /// A session refresh.
    Update,
}

/// A non-INVITE request vakt sent.
#[derive(Clone, Debug)]
struct ClientTxn {
    kind: Kind,
    branch: String,
    request: Vec<u8>,
    resend: Option<(Instant, Duration)>,
    until: Instant,
    /// What it was built from, to send it again with credentials.
    extra: Vec<(String, String)>,
    content_type: Option<String>,
    body: Vec<u8>,
    auth_tries: u8,
}

/// The session timer (RFC 4028).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SessionTimer {
    secs: u32,
    we_refresh: bool,
    /// When vakt refreshes, or ends the session.
    at: Instant,
}

/// A peer's offer waiting for the handler's answer.
#[derive(Clone, Debug)]
enum Pending {
    /// In a re-INVITE (the server transaction).
    Invite,
    /// In an UPDATE: its bytes and source, to answer it.
    Update {
        request: Vec<u8>,
        source: SocketAddr,
    },
}

/// Where the dialog is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No final answer yet (ringing, or calling).
    Early,
    /// Answered.
    Confirmed,
    /// Over: the handler was told; transactions may still finish.
    Over,
}

/// One INVITE dialog (a call in or a call out).
#[derive(Debug)]
pub(super) struct Dialog {
    uas: bool,
    local: Local,
    opts: InviteOptions,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// vakt's From/To value without tag.
    local_header: String,
    /// The peer's From/To value, with its tag once known.
    remote_header: String,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    remote_cseq: Option<u32>,
    peer_allows_update: bool,
    credentials: Option<(String, SipPassword)>,
    phase: Phase,
    ended: bool,
    local_sdp: Vec<u8>,
    server: Option<ServerTxn>,
    client: Option<ClientInvite>,
    /// The ACK of the last 2xx to vakt's INVITE (its CSeq), repeated to retransmissions
    /// until then.
    ack: Option<(u32, Vec<u8>, Instant)>,
    requests: Vec<ClientTxn>,
    pending: Option<Pending>,
    /// Hang up as soon as the ACK of vakt's 2xx comes.
    bye_after_ack: bool,
    timer: Option<SessionTimer>,
    ring_until: Option<Instant>,
    call_until: Option<Instant>,
    /// The CSeq and Via branch of the call's INVITE (a call in).
    initial: (u32, Option<String>),
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `now + d`, or a year on when `d` is beyond what an `Instant` holds (a bound configured
/// absurdly large must not panic).
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

fn branch() -> String {
    format!("z9hG4bK{}", sip::random_token(16))
}

impl Dialog {
    /// The dialog of a call in: `invite` (screened and admitted) came from `source`; vakt's
    /// tag is `local_tag`. Sends `100 Trying`.
    pub(super) fn uas(
        invite: &Message<'_>,
        raw: &[u8],
        source: SocketAddr,
        local_tag: String,
        local: Local,
        opts: &InviteOptions,
        now: Instant,
    ) -> (Dialog, Vec<Out>) {
        let (cseq, _) = invite.cseq();
        let mut d = Dialog {
            uas: true,
            local,
            opts: opts.clone(),
            call_id: invite.call_id().to_owned(),
            local_tag,
            remote_tag: invite.from_tag().map(str::to_owned),
            local_header: invite.header("To").unwrap_or_default().to_owned(),
            remote_header: invite.header("From").unwrap_or_default().to_owned(),
            remote_target: invite.contact_uri().unwrap_or_default().to_owned(),
            route_set: invite
                .list("Record-Route")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            local_cseq: 0,
            remote_cseq: Some(cseq),
            peer_allows_update: invite.lists("Allow", "UPDATE"),
            credentials: None,
            phase: Phase::Early,
            ended: false,
            local_sdp: Vec::new(),
            server: Some(ServerTxn {
                cseq,
                branch: invite.top_via_branch().map(str::to_owned),
                request: raw.to_vec(),
                source,
                initial: true,
                last: None,
                state: Server::Proceeding { repeat: None },
            }),
            client: None,
            ack: None,
            requests: Vec::new(),
            pending: None,
            bye_after_ack: false,
            timer: None,
            ring_until: Some(after(now, opts.max_ring)),
            call_until: None,
            initial: (cseq, invite.top_via_branch().map(str::to_owned)),
        };
        let mut out = Vec::new();
        d.provisional(100, &[], &mut out);
        (d, out)
    }

    /// The dialog of a call out with `call_id` and vakt's `local_tag`. Sends the INVITE.
    pub(super) fn uac(
        o: Outbound,
        call_id: String,
        local_tag: String,
        local: Local,
        opts: &InviteOptions,
        now: Instant,
    ) -> (Dialog, Vec<Out>) {
        let mut d = Dialog {
            uas: false,
            opts: opts.clone(),
            call_id,
            local_tag,
            remote_tag: None,
            local_header: format!("<{}>", o.from_uri),
            remote_header: format!("<{}>", o.uri),
            remote_target: o.uri.clone(),
            route_set: Vec::new(),
            local_cseq: 0,
            remote_cseq: None,
            peer_allows_update: false,
            credentials: o.credentials,
            phase: Phase::Early,
            ended: false,
            local_sdp: o.offer.clone(),
            server: None,
            client: None,
            ack: None,
            requests: Vec::new(),
            pending: None,
            bye_after_ack: false,
            timer: None,
            ring_until: Some(after(now, opts.max_ring)),
            call_until: None,
            initial: (0, None),
            local,
        };
        let mut extra = o.headers;
        extra.push(("Contact".into(), d.local.contact.clone()));
        extra.push(("Allow".into(), ALLOW_CALLS.into()));
        extra.push(("Supported".into(), SUPPORTED.into()));
        let mut out = Vec::new();
        let uri = o.uri;
        let to = d.remote_header.clone();
        d.send_invite(
            Purpose::Initial,
            uri,
            to,
            Vec::new(),
            extra,
            o.offer,
            now,
            &mut out,
        );
        (d, out)
    }

    /// The dialog's Call-ID.
    pub(super) fn call_id(&self) -> &str {
        &self.call_id
    }

    /// vakt's tag in the dialog.
    pub(super) fn local_tag(&self) -> &str {
        &self.local_tag
    }

    /// Nothing is left to do: the call is over and no transaction runs.
    pub(super) fn is_done(&self) -> bool {
        self.ended
            && self.server.is_none()
            && self.client.is_none()
            && self.requests.is_empty()
            && self.ack.is_none()
    }

    /// When [`Dialog::on_timer`] has something to do.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let mut at = None;
        if let Some(s) = &self.server {
            at = earliest(
                at,
                match s.state {
                    Server::Proceeding { repeat } => repeat,
                    Server::Completed { next, until, .. }
                    | Server::Accepted { next, until, .. } => earliest(next, Some(until)),
                    Server::Confirmed { until } => Some(until),
                },
            );
        }
        if let Some(c) = &self.client {
            at = earliest(at, c.resend.map(|(t, _)| t));
            at = earliest(at, c.timeout);
            // After a 491 the retry is what waits; else the ACK's lingering.
            at = earliest(at, c.retry_at.or(c.done.as_ref().map(|(_, t)| *t)));
        }
        at = earliest(at, self.ack.as_ref().map(|(_, _, t)| *t));
        for r in &self.requests {
            at = earliest(at, r.resend.map(|(t, _)| t));
            at = earliest(at, Some(r.until));
        }
        if !self.ended {
            at = earliest(at, self.ring_until);
            at = earliest(at, self.call_until);
            at = earliest(at, self.timer.map(|t| t.at));
        }
        at
    }

    // -----------------------------------------------------------------------------------
    // Building messages
    // -----------------------------------------------------------------------------------

    /// A response to `request` (bytes that parsed before) from `source`.
    fn response(
        &self,
        request: &[u8],
        source: SocketAddr,
        code: u16,
        extra: &[(String, String)],
        body: &[u8],
    ) -> Vec<u8> {
        let Ok(req) = sip::parse(request) else {
            return Vec::new();
        };
        let tag = if code == 100 { "" } else { &self.local_tag };
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut out = Vec::with_capacity(512 + body.len());
        sip::encode_response_from(
            Some(source),
            &req,
            code,
            reason(code),
            tag,
            &extra,
            Some(SDP),
            body,
            &mut out,
        );
        out
    }

    /// A request of vakt's: From vakt with its tag, the dialog's Call-ID.
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        method: &str,
        uri: &str,
        to: &str,
        branch: &str,
        cseq: u32,
        extra: &[(String, String)],
        content_type: Option<&str>,
        body: &[u8],
    ) -> Vec<u8> {
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut out = Vec::with_capacity(512 + body.len());
        sip::encode_request_with(
            &OutRequest {
                method,
                uri,
                via_transport: self.local.via_transport,
                via_host: &self.local.via_host,
                branch,
                from: &self.local_header,
                from_tag: &self.local_tag,
                to,
                call_id: &self.call_id,
                cseq,
                content_type,
                body,
            },
            &extra,
            &mut out,
        );
        out
    }

    /// The Request-URI and Route headers of a request in the dialog (RFC 3261 §12.2.1.1):
    /// loose routing when the first route has `lr`, else strict.
    fn target(&self) -> (String, Vec<String>) {
        let Some(first) = self.route_set.first() else {
            return (self.remote_target.clone(), Vec::new());
        };
        let first_uri = sip::header_uri(first).unwrap_or(first);
        let loose = first_uri
            .split(';')
            .skip(1)
            .any(|p| p.trim().eq_ignore_ascii_case("lr") || p.trim().starts_with("lr="));
        if loose {
            (self.remote_target.clone(), self.route_set.clone())
        } else {
            let mut routes: Vec<String> = self.route_set.iter().skip(1).cloned().collect();
            routes.push(format!("<{}>", self.remote_target));
            (first_uri.to_owned(), routes)
        }
    }

    fn routes_extra(routes: &[String]) -> Vec<(String, String)> {
        routes
            .iter()
            .map(|r| ("Route".to_owned(), r.clone()))
            .collect()
    }

    /// The headers of a refresh or offer vakt sends while a session timer runs.
    fn timer_headers(&self) -> Vec<(String, String)> {
        let mut h = vec![("Supported".to_owned(), SUPPORTED.to_owned())];
        if let Some(t) = self.timer {
            let who = if t.we_refresh { "uac" } else { "uas" };
            h.push((
                "Session-Expires".into(),
                format!("{};refresher={who}", t.secs),
            ));
        }
        h
    }

    // -----------------------------------------------------------------------------------
    // Ending
    // -----------------------------------------------------------------------------------

    fn event(&self, e: CallEvent, out: &mut Vec<Out>) {
        if !self.ended {
            out.push(Out::Event(e));
        }
    }

    /// Tells the handler the call is over (once) and stops the call's own timers.
    fn end(&mut self, why: End, out: &mut Vec<Out>) {
        if !self.ended {
            out.push(Out::Event(CallEvent::Ended(why)));
        }
        self.ended = true;
        self.phase = Phase::Over;
        self.ring_until = None;
        self.call_until = None;
        self.timer = None;
        self.pending = None;
        // A refresh or an offer still in flight is of no use now.
        self.requests
            .retain(|r| matches!(r.kind, Kind::Bye | Kind::Cancel));
        if let Some(c) = &mut self.client
            && c.purpose != Purpose::Initial
        {
            c.retry_at = None;
        }
    }

    /// Ends the call from vakt's side: a refusal or CANCEL before the answer, else BYE.
    fn hang_up(&mut self, why: End, code: u16, now: Instant, out: &mut Vec<Out>) {
        match self.phase {
            Phase::Over => {}
            Phase::Early if self.uas => {
                self.refuse(code, Vec::new(), now, out);
                self.end(why, out);
            }
            Phase::Early => {
                self.cancel(now, out);
                self.end(why, out);
            }
            Phase::Confirmed => {
                let unacked = self
                    .server
                    .as_ref()
                    .is_some_and(|s| s.initial && matches!(s.state, Server::Accepted { .. }));
                if unacked {
                    // RFC 3261 §15: not before the ACK (or timer L).
                    self.bye_after_ack = true;
                } else {
                    self.send_request(Kind::Bye, Vec::new(), None, Vec::new(), now, out);
                }
                self.end(why, out);
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // The INVITE server transaction
    // -----------------------------------------------------------------------------------

    /// Sends a provisional response to the INVITE being answered.
    fn provisional(&mut self, code: u16, body: &[u8], out: &mut Vec<Out>) {
        let Some(s) = &self.server else { return };
        if !matches!(s.state, Server::Proceeding { .. }) {
            return;
        }
        let mut extra = Vec::new();
        if code > 100 {
            extra.push(("Contact".to_owned(), self.local.contact.clone()));
            if s.initial {
                extra.extend(self.record_routes(&s.request));
            }
        }
        let bytes = self.response(&s.request, s.source, code, &extra, body);
        if let Some(s) = &mut self.server {
            s.last = Some(bytes.clone());
        }
        out.push(Out::Send(bytes));
    }

    fn record_routes(&self, request: &[u8]) -> Vec<(String, String)> {
        sip::parse(request)
            .map(|m| {
                m.headers_named("Record-Route")
                    .map(|v| ("Record-Route".to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends the final refusal `code` to the INVITE being answered.
    fn refuse(
        &mut self,
        code: u16,
        headers: Vec<(String, String)>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(s) = &self.server else { return };
        if !matches!(s.state, Server::Proceeding { .. }) {
            return;
        }
        let code = final_code(code);
        let bytes = self.response(&s.request, s.source, code, &headers, b"");
        let reliable = self.local.reliable;
        if let Some(s) = &mut self.server {
            s.last = Some(bytes.clone());
            s.state = Server::Completed {
                next: (!reliable).then_some(now + T1),
                interval: T1,
                until: now + TRANSACTION,
            };
        }
        out.push(Out::Send(bytes));
    }

    /// Sends `2xx` with `body` to the INVITE being answered (the initial one, or a
    /// re-INVITE): Contact, Allow, Supported, the session timer agreed, Record-Route.
    fn accept(&mut self, body: Vec<u8>, now: Instant, out: &mut Vec<Out>) {
        let Some(s) = &self.server else { return };
        if !matches!(s.state, Server::Proceeding { .. }) {
            return;
        }
        let (request, source, initial) = (s.request.clone(), s.source, s.initial);
        let mut extra = vec![
            ("Contact".to_owned(), self.local.contact.clone()),
            ("Allow".to_owned(), ALLOW_CALLS.to_owned()),
        ];
        if initial {
            extra.extend(self.record_routes(&request));
        }
        if let Ok(req) = sip::parse(&request) {
            extra.extend(self.agree_timer(&req, now));
        }
        let bytes = self.response(&request, source, 200, &extra, &body);
        self.local_sdp = body;
        let reliable = self.local.reliable;
        if let Some(s) = &mut self.server {
            s.last = Some(bytes.clone());
            s.state = Server::Accepted {
                next: (!reliable).then_some(now + T1),
                interval: T1,
                until: now + TRANSACTION,
            };
        }
        if initial {
            self.phase = Phase::Confirmed;
            self.ring_until = None;
            self.call_until = Some(after(now, self.opts.max_call));
        }
        out.push(Out::Send(bytes));
    }

    /// Agrees the session timer with a request vakt answers `2xx` (RFC 4028 §9): the
    /// headers for the response.
    fn agree_timer(&mut self, req: &Message<'_>, now: Instant) -> Vec<(String, String)> {
        let supports = supports_timer(req);
        let se = req.session_expires();
        if !supports && se.is_none() {
            self.timer = None;
            return Vec::new();
        }
        let floor = secs(self.opts.min_se).max(req.seconds("Min-SE").unwrap_or(0));
        let ours = secs(self.opts.session_expires).max(floor);
        let interval = se.map_or(ours, |s| s.secs.min(ours)).max(floor);
        // A UAC without timer support cannot refresh: vakt does (RFC 4028 §9).
        let refresher = if supports {
            se.and_then(|s| s.refresher).unwrap_or(Refresher::Uac)
        } else {
            Refresher::Uas
        };
        self.set_timer(interval, refresher == Refresher::Uas, now);
        let mut h = vec![(
            "Session-Expires".to_owned(),
            format!("{interval};refresher={}", refresher.as_str()),
        )];
        if supports {
            h.push(("Require".into(), "timer".into()));
        }
        h
    }

    fn set_timer(&mut self, secs: u32, we_refresh: bool, now: Instant) {
        let interval = Duration::from_secs(u64::from(secs.max(1)));
        let at = if we_refresh {
            now + interval / 2
        } else {
            now + interval - Duration::from_secs(32).min(interval / 3)
        };
        self.timer = Some(SessionTimer {
            secs,
            we_refresh,
            at,
        });
    }

    /// Takes the session timer from a `2xx` to vakt's INVITE or UPDATE (RFC 4028 §7.2):
    /// none when the response has no Session-Expires.
    fn timer_from_response(&mut self, resp: &Message<'_>, now: Instant) {
        match resp.session_expires() {
            // Without a refresher (which a 2xx must name) vakt refreshes: the session is
            // kept rather than lost.
            Some(se) => self.set_timer(se.secs, se.refresher != Some(Refresher::Uas), now),
            None => self.timer = None,
        }
    }

    // -----------------------------------------------------------------------------------
    // Requests from the peer
    // -----------------------------------------------------------------------------------

    /// A request routed to this dialog (an in-dialog request, or a retransmitted INVITE or
    /// CANCEL of the call in) from `source`.
    pub(super) fn on_request(
        &mut self,
        msg: &Message<'_>,
        raw: &[u8],
        source: SocketAddr,
        now: Instant,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        let method = msg.method().unwrap_or_default();
        match method {
            "ACK" => self.on_ack(msg, now, &mut out),
            "CANCEL" => self.on_cancel(msg, raw, source, now, &mut out),
            "INVITE" => self.on_invite(msg, raw, source, now, &mut out),
            _ => self.on_other(method, msg, raw, source, now, &mut out),
        }
        out
    }

    fn reply(
        &self,
        raw: &[u8],
        source: SocketAddr,
        code: u16,
        extra: &[(String, String)],
        out: &mut Vec<Out>,
    ) {
        out.push(Out::Reply(self.response(raw, source, code, extra, b"")));
    }

    fn tags_match(&self, msg: &Message<'_>) -> bool {
        msg.from_tag() == self.remote_tag.as_deref()
            && msg.to_tag() == Some(self.local_tag.as_str())
    }

    /// The request's CSeq goes up (RFC 3261 §12.2.2); remembered.
    fn in_order(&mut self, msg: &Message<'_>) -> bool {
        let (cseq, _) = msg.cseq();
        if self.remote_cseq.is_some_and(|r| cseq < r) {
            return false;
        }
        self.remote_cseq = Some(cseq);
        true
    }

    fn on_ack(&mut self, msg: &Message<'_>, now: Instant, out: &mut Vec<Out>) {
        let (cseq, _) = msg.cseq();
        let Some(s) = &mut self.server else { return };
        if s.cseq != cseq {
            return;
        }
        match s.state {
            Server::Accepted { .. } => {
                let initial = s.initial;
                self.server = None;
                if initial {
                    self.event(CallEvent::Confirmed, out);
                }
                if !msg.body.is_empty() {
                    self.event(
                        CallEvent::RemoteAnswer {
                            sdp: msg.body.to_vec(),
                        },
                        out,
                    );
                }
                if self.bye_after_ack {
                    self.bye_after_ack = false;
                    self.send_request(Kind::Bye, Vec::new(), None, Vec::new(), now, out);
                }
            }
            Server::Completed { .. } => {
                let linger = if self.local.reliable {
                    Duration::ZERO
                } else {
                    T4
                };
                s.state = Server::Confirmed {
                    until: now + linger,
                };
            }
            Server::Proceeding { .. } | Server::Confirmed { .. } => {}
        }
    }

    fn on_cancel(
        &mut self,
        msg: &Message<'_>,
        raw: &[u8],
        source: SocketAddr,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let same = self.server.as_ref().is_some_and(|s| {
            s.initial && s.branch.is_some() && s.branch.as_deref() == msg.top_via_branch()
        });
        if !same {
            self.reply(raw, source, 481, &[], out);
            return;
        }
        self.reply(raw, source, 200, &[], out);
        let ringing = self
            .server
            .as_ref()
            .is_some_and(|s| matches!(s.state, Server::Proceeding { .. }));
        if ringing {
            self.refuse(487, Vec::new(), now, out);
            self.end(End::Cancelled, out);
        }
    }

    fn on_invite(
        &mut self,
        msg: &Message<'_>,
        raw: &[u8],
        source: SocketAddr,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let (cseq, _) = msg.cseq();
        if let Some(s) = &self.server
            && s.cseq == cseq
            && s.branch.as_deref() == msg.top_via_branch()
        {
            // A retransmission: the last response again.
            if let Some(last) = &s.last {
                out.push(Out::Send(last.clone()));
            }
            return;
        }
        let refuse_now = |d: &Dialog, code: u16, extra: &[(String, String)], out: &mut Vec<Out>| {
            out.push(Out::Send(d.response(raw, source, code, extra, b"")));
        };
        if msg.to_tag().is_none() {
            if self.initial == (cseq, msg.top_via_branch().map(str::to_owned)) {
                // The call's INVITE again, late (its 2xx was ACKed): nothing to answer.
                return;
            }
            // Another INVITE of the same call, not a retransmission (a fork's copy, a loop).
            refuse_now(self, 482, &[], out);
            return;
        }
        if !self.tags_match(msg) || self.phase == Phase::Over {
            refuse_now(self, 481, &[], out);
            return;
        }
        if !self.in_order(msg) {
            refuse_now(self, 500, &[], out);
            return;
        }
        if self.phase != Phase::Confirmed
            || self
                .server
                .as_ref()
                .is_some_and(|s| !matches!(s.state, Server::Confirmed { .. }))
        {
            // The previous INVITE is not done (RFC 3261 §14.2).
            let wait = rand::random::<u32>() % 10;
            refuse_now(self, 500, &[("Retry-After".into(), wait.to_string())], out);
            return;
        }
        if self.client.as_ref().is_some_and(|c| c.done.is_none()) || self.pending.is_some() {
            refuse_now(self, 491, &[], out);
            return;
        }
        if let Err(r) = screen(msg, &self.opts) {
            let extra: Vec<(String, String)> = r
                .headers
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v))
                .collect();
            refuse_now(self, r.code, &extra, out);
            return;
        }
        if let Some(c) = msg.contact_uri() {
            self.remote_target = c.to_owned();
        }
        self.server = Some(ServerTxn {
            cseq,
            branch: msg.top_via_branch().map(str::to_owned),
            request: raw.to_vec(),
            source,
            initial: false,
            last: None,
            state: Server::Proceeding { repeat: None },
        });
        if msg.body.is_empty() {
            // No offer: vakt offers its last SDP unchanged; the ACK carries the answer.
            let sdp = self.local_sdp.clone();
            self.accept(sdp, now, out);
        } else {
            self.pending = Some(Pending::Invite);
            out.push(Out::Reoffer(msg.body.to_vec()));
        }
    }

    /// The handler's answer to the offer it was asked for ([`Out::Reoffer`]).
    pub(super) fn reanswer(&mut self, answer: Result<Vec<u8>, u16>, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        match self.pending.take() {
            Some(Pending::Invite) => match answer {
                Ok(sdp) => self.accept(sdp, now, &mut out),
                Err(code) => self.refuse(code, Vec::new(), now, &mut out),
            },
            Some(Pending::Update { request, source }) => match answer {
                Ok(sdp) => {
                    let mut extra = vec![("Contact".to_owned(), self.local.contact.clone())];
                    if let Ok(req) = sip::parse(&request) {
                        extra.extend(self.agree_timer(&req, now));
                    }
                    out.push(Out::Reply(
                        self.response(&request, source, 200, &extra, &sdp),
                    ));
                    self.local_sdp = sdp;
                }
                Err(code) => {
                    let code = final_code(code);
                    out.push(Out::Reply(self.response(&request, source, code, &[], b"")));
                }
            },
            None => {}
        }
        out
    }

    fn on_other(
        &mut self,
        method: &str,
        msg: &Message<'_>,
        raw: &[u8],
        source: SocketAddr,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if !self.tags_match(msg) || (self.phase == Phase::Over && method != "BYE") {
            self.reply(raw, source, 481, &[], out);
            return;
        }
        if !self.in_order(msg) {
            self.reply(raw, source, 500, &[], out);
            return;
        }
        match method {
            "BYE" => {
                self.reply(raw, source, 200, &[], out);
                if self.phase == Phase::Over {
                    return;
                }
                let early = self
                    .server
                    .as_ref()
                    .is_some_and(|s| s.initial && matches!(s.state, Server::Proceeding { .. }));
                if early {
                    self.refuse(487, Vec::new(), now, out);
                    self.end(End::Cancelled, out);
                } else {
                    // A 2xx still waiting for its ACK needs no more sending.
                    if self
                        .server
                        .as_ref()
                        .is_some_and(|s| matches!(s.state, Server::Accepted { .. }))
                    {
                        self.server = None;
                    }
                    self.bye_after_ack = false;
                    self.end(End::RemoteHangUp, out);
                }
            }
            "INFO" => {
                self.reply(raw, source, 200, &[], out);
                self.event(
                    CallEvent::Info {
                        content_type: msg.content_type().unwrap_or_default().to_owned(),
                        body: msg.body.to_vec(),
                    },
                    out,
                );
            }
            "UPDATE" => {
                if let Err(r) = screen(msg, &self.opts) {
                    let extra: Vec<(String, String)> = r
                        .headers
                        .into_iter()
                        .map(|(n, v)| (n.to_owned(), v))
                        .collect();
                    self.reply(raw, source, r.code, &extra, out);
                    return;
                }
                if msg.body.is_empty() {
                    // A session refresh.
                    let mut extra = vec![("Contact".to_owned(), self.local.contact.clone())];
                    if self.phase == Phase::Confirmed {
                        extra.extend(self.agree_timer(msg, now));
                    }
                    self.reply(raw, source, 200, &extra, out);
                } else if self.phase != Phase::Confirmed
                    || self.pending.is_some()
                    || self.client.as_ref().is_some_and(|c| c.done.is_none())
                    || self
                        .server
                        .as_ref()
                        .is_some_and(|s| matches!(s.state, Server::Proceeding { .. }))
                {
                    // An offer of vakt's is open, or the first offer/answer is not done.
                    self.reply(raw, source, 491, &[], out);
                } else {
                    self.pending = Some(Pending::Update {
                        request: raw.to_vec(),
                        source,
                    });
                    out.push(Out::Reoffer(msg.body.to_vec()));
                }
            }
            "OPTIONS" => {
                let extra = [
                    ("Allow".to_owned(), ALLOW_CALLS.to_owned()),
                    ("Supported".to_owned(), SUPPORTED.to_owned()),
                    ("Accept".to_owned(), SDP.to_owned()),
                ];
                self.reply(raw, source, 200, &extra, out);
            }
            _ => self.reply(
                raw,
                source,
                405,
                &[("Allow".into(), ALLOW_CALLS.into())],
                out,
            ),
        }
    }

    // -----------------------------------------------------------------------------------
    // Responses to vakt's requests
    // -----------------------------------------------------------------------------------

    /// A response to one of vakt's requests in this dialog.
    pub(super) fn on_response(&mut self, msg: &Message<'_>, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        let sip::StartLine::Response { code, .. } = msg.start else {
            return out;
        };
        let (cseq, method) = msg.cseq();
        let branch = msg.top_via_branch().unwrap_or_default();
        if method == "INVITE" {
            let ours = self.client.as_ref().is_some_and(|c| c.branch == branch);
            if ours {
                self.invite_response(msg, code, now, &mut out);
            } else if (200..300).contains(&code)
                && let Some((c, ack, _)) = &self.ack
                && *c == cseq
            {
                out.push(Out::Send(ack.clone()));
            }
        } else if let Some(i) = self.requests.iter().position(|r| r.branch == branch) {
            self.request_response(i, msg, code, now, &mut out);
        }
        out
    }

    /// Sends an INVITE of vakt's (the call out, a re-INVITE or a refresh).
    #[allow(clippy::too_many_arguments)]
    fn send_invite(
        &mut self,
        purpose: Purpose,
        uri: String,
        to: String,
        routes: Vec<String>,
        extra: Vec<(String, String)>,
        body: Vec<u8>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        self.local_cseq = self.local_cseq.saturating_add(1);
        let cseq = self.local_cseq;
        let branch = branch();
        let mut all = Self::routes_extra(&routes);
        all.extend(extra.iter().cloned());
        let ct = (!body.is_empty()).then_some(SDP);
        let request = self.build("INVITE", &uri, &to, &branch, cseq, &all, ct, &body);
        out.push(Out::Send(request.clone()));
        self.client = Some(ClientInvite {
            purpose,
            cseq,
            branch,
            uri,
            to,
            routes,
            extra,
            body,
            request,
            resend: (!self.local.reliable).then_some((now + T1, T1)),
            timeout: Some(now + TRANSACTION),
            provisional: false,
            cancelled: false,
            done: None,
            retry_at: None,
            auth_tries: 0,
        });
    }

    /// A re-INVITE in the dialog.
    fn reinvite(&mut self, purpose: Purpose, body: Vec<u8>, now: Instant, out: &mut Vec<Out>) {
        let (uri, routes) = self.target();
        let to = self.remote_header.clone();
        let mut extra = vec![
            ("Contact".to_owned(), self.local.contact.clone()),
            ("Allow".to_owned(), ALLOW_CALLS.to_owned()),
        ];
        extra.extend(self.timer_headers());
        self.send_invite(purpose, uri, to, routes, extra, body, now, out);
    }

    /// The ACK of a refusal of vakt's INVITE: the INVITE's branch, Request-URI and route,
    /// the response's To (RFC 3261 §17.1.1.3).
    fn ack_refusal(&self, c: &ClientInvite, resp: &Message<'_>) -> Vec<u8> {
        let to = resp.header("To").unwrap_or(&c.to);
        let extra = Self::routes_extra(&c.routes);
        self.build("ACK", &c.uri, to, &c.branch, c.cseq, &extra, None, b"")
    }

    fn invite_response(&mut self, msg: &Message<'_>, code: u16, now: Instant, out: &mut Vec<Out>) {
        let Some(mut c) = self.client.take() else {
            return;
        };
        if let Some((ack, _)) = &c.done {
            // A retransmitted refusal: its ACK again.
            if code >= 300 {
                out.push(Out::Send(ack.clone()));
            }
            self.client = Some(c);
            return;
        }
        c.resend = None;
        if code < 200 {
            if c.purpose != Purpose::Initial {
                // A re-INVITE is answered by a machine: each provisional gives it another
                // 64·T1, no more.
                c.timeout = Some(now + TRANSACTION);
            } else if !c.cancelled {
                // A call out may ring (max_ring bounds it).
                c.timeout = None;
            }
            let first = !c.provisional;
            c.provisional = true;
            let initial = c.purpose == Purpose::Initial;
            self.client = Some(c);
            if !initial {
                return;
            }
            if self.remote_tag.is_none()
                && let Some(tag) = msg.to_tag()
            {
                self.remote_tag = Some(tag.to_owned());
                self.remote_header = msg.header("To").unwrap_or_default().to_owned();
            }
            if code > 100 {
                let sdp = msg.body.to_vec();
                self.event(CallEvent::Progress { code, sdp }, out);
            }
            if first && self.ended {
                // vakt hung up before anything came: now the CANCEL may go.
                self.cancel(now, out);
            }
            return;
        }
        if code < 300 {
            self.invite_accepted(c, msg, now, out);
            return;
        }
        // A refusal: ACKed in the INVITE's transaction.
        let ack = self.ack_refusal(&c, msg);
        out.push(Out::Send(ack.clone()));
        let auth = if matches!(code, 401 | 407) && self.retry_with_credentials(&c, msg, code) {
            self.credentials_for(msg, code, "INVITE", &c.uri)
        } else {
            None
        };
        if let Some(auth) = auth {
            let mut extra = c.extra.clone();
            extra.retain(|(n, _)| {
                !n.eq_ignore_ascii_case("Authorization")
                    && !n.eq_ignore_ascii_case("Proxy-Authorization")
            });
            extra.push(auth);
            let (uri, to, routes, body) = (
                c.uri.clone(),
                c.to.clone(),
                c.routes.clone(),
                c.body.clone(),
            );
            self.send_invite(c.purpose, uri, to, routes, extra, body, now, out);
            if let Some(n) = &mut self.client {
                n.auth_tries = c.auth_tries + 1;
            }
            return;
        }
        let linger = if self.local.reliable {
            now
        } else {
            now + TRANSACTION
        };
        c.done = Some((ack, linger));
        c.timeout = None;
        let (purpose, cancelled) = (c.purpose, c.cancelled);
        if purpose == Purpose::Offer && code == 491 && !self.ended {
            // Glare (RFC 3261 §14.1): again after a while; 2.1-4 s when vakt chose the
            // Call-ID, else 0-2 s.
            let ms = if self.uas {
                rand::random::<u64>() % 2000
            } else {
                2100 + rand::random::<u64>() % 1900
            };
            c.retry_at = Some(now + Duration::from_millis(ms));
        }
        self.client = Some(c);
        match purpose {
            Purpose::Initial => {
                let why = if cancelled {
                    End::HungUp
                } else {
                    End::Failed(code)
                };
                self.end(why, out);
            }
            _ if code == 481 || code == 408 => {
                self.send_request(Kind::Bye, Vec::new(), None, Vec::new(), now, out);
                self.end(End::Unreachable, out);
            }
            Purpose::Offer if code == 491 => {}
            Purpose::Offer => self.event(CallEvent::ReinviteFailed { code }, out),
            Purpose::Refresh => {}
        }
    }

    fn invite_accepted(
        &mut self,
        c: ClientInvite,
        msg: &Message<'_>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let (cseq, _) = msg.cseq();
        if c.purpose == Purpose::Initial {
            if let Some(tag) = msg.to_tag() {
                self.remote_tag = Some(tag.to_owned());
            }
            self.remote_header = msg.header("To").unwrap_or_default().to_owned();
            if let Some(contact) = msg.contact_uri() {
                self.remote_target = contact.to_owned();
            }
            let mut rr: Vec<String> = msg
                .list("Record-Route")
                .into_iter()
                .map(str::to_owned)
                .collect();
            rr.reverse();
            self.route_set = rr;
            self.peer_allows_update = msg.lists("Allow", "UPDATE");
        } else if let Some(contact) = msg.contact_uri() {
            self.remote_target = contact.to_owned();
        }
        // The ACK of a 2xx is a transaction of its own: new branch, to the target.
        let (uri, routes) = self.target();
        let extra = Self::routes_extra(&routes);
        let ack = self.build(
            "ACK",
            &uri,
            &self.remote_header,
            &branch(),
            cseq,
            &extra,
            None,
            b"",
        );
        out.push(Out::Send(ack.clone()));
        self.ack = Some((cseq, ack, now + TRANSACTION));
        match c.purpose {
            Purpose::Initial if self.ended => {
                // Answered after vakt hung up (the CANCEL crossed the 200): end it.
                self.phase = Phase::Confirmed;
                self.send_request(Kind::Bye, Vec::new(), None, Vec::new(), now, out);
                self.phase = Phase::Over;
            }
            Purpose::Initial => {
                self.phase = Phase::Confirmed;
                self.ring_until = None;
                self.call_until = Some(after(now, self.opts.max_call));
                self.timer_from_response(msg, now);
                self.event(
                    CallEvent::Answered {
                        sdp: msg.body.to_vec(),
                    },
                    out,
                );
            }
            Purpose::Offer => {
                self.timer_from_response(msg, now);
                self.local_sdp = c.body;
                self.event(
                    CallEvent::RemoteAnswer {
                        sdp: msg.body.to_vec(),
                    },
                    out,
                );
            }
            Purpose::Refresh => self.timer_from_response(msg, now),
        }
    }

    /// Whether a `401`/`407` to a request is answered with credentials: the call has them,
    /// and this is the first challenge (or the second, when it says the nonce was stale).
    fn retry_with_credentials(&self, c: &ClientInvite, msg: &Message<'_>, code: u16) -> bool {
        self.may_retry(c.auth_tries, msg, code) && !c.cancelled && !self.ended
    }

    fn may_retry(&self, tries: u8, msg: &Message<'_>, code: u16) -> bool {
        if self.credentials.is_none() {
            return false;
        }
        let header = if code == 407 {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let stale = msg
            .header(header)
            .and_then(|v| sip::parse_challenge(v).ok())
            .is_some_and(|c| c.stale);
        tries == 0 || (tries == 1 && stale)
    }

    /// The `Authorization` (or `Proxy-Authorization`) header answering the challenge of
    /// `msg` for `method` to `uri`.
    fn credentials_for(
        &self,
        msg: &Message<'_>,
        code: u16,
        method: &str,
        uri: &str,
    ) -> Option<(String, String)> {
        let (user, password) = self.credentials.as_ref()?;
        let (challenge_h, answer_h) = if code == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let ch = sip::parse_challenge(msg.header(challenge_h)?).ok()?;
        let value = sip::authorization(
            user,
            password.expose(),
            &ch,
            method,
            uri,
            &sip::random_token(12),
            1,
        );
        Some((answer_h.to_owned(), value))
    }

    /// Sends a non-INVITE request of vakt's in the dialog (CANCEL excepted).
    fn send_request(
        &mut self,
        kind: Kind,
        extra: Vec<(String, String)>,
        content_type: Option<String>,
        body: Vec<u8>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let method = match kind {
            Kind::Bye => "BYE",
            Kind::Info => "INFO",
            Kind::Update => "UPDATE",
            Kind::Cancel => return,
        };
        if matches!(kind, Kind::Info | Kind::Update) && self.requests.len() >= MAX_REQUESTS {
            return;
        }
        self.local_cseq = self.local_cseq.saturating_add(1);
        let cseq = self.local_cseq;
        let branch = branch();
        let (uri, routes) = self.target();
        let mut all = Self::routes_extra(&routes);
        if kind == Kind::Update {
            all.push(("Contact".into(), self.local.contact.clone()));
        }
        all.extend(extra.iter().cloned());
        let to = self.remote_header.clone();
        let request = self.build(
            method,
            &uri,
            &to,
            &branch,
            cseq,
            &all,
            content_type.as_deref(),
            &body,
        );
        out.push(Out::Send(request.clone()));
        self.requests.push(ClientTxn {
            kind,
            branch,
            request,
            resend: (!self.local.reliable).then_some((now + T1, T1)),
            until: now + TRANSACTION,
            extra,
            content_type,
            body,
            auth_tries: 0,
        });
    }

    /// CANCELs vakt's call out (once a provisional came; else when one comes).
    fn cancel(&mut self, now: Instant, out: &mut Vec<Out>) {
        let Some(c) = &mut self.client else { return };
        if c.purpose != Purpose::Initial || c.done.is_some() {
            return;
        }
        c.cancelled = true;
        // No final within 64·T1 of the CANCEL: the INVITE is given up (RFC 3261 §9.1).
        c.timeout = Some(now + TRANSACTION);
        if !c.provisional {
            return;
        }
        let extra = Self::routes_extra(&c.routes);
        let (uri, to, branch, cseq) = (c.uri.clone(), c.to.clone(), c.branch.clone(), c.cseq);
        let request = self.build("CANCEL", &uri, &to, &branch, cseq, &extra, None, b"");
        out.push(Out::Send(request.clone()));
        self.requests.push(ClientTxn {
            kind: Kind::Cancel,
            branch,
            request,
            resend: (!self.local.reliable).then_some((now + T1, T1)),
            until: now + TRANSACTION,
            extra: Vec::new(),
            content_type: None,
            body: Vec::new(),
            auth_tries: 0,
        });
    }

    fn request_response(
        &mut self,
        i: usize,
        msg: &Message<'_>,
        code: u16,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if code < 200 {
            if let Some(r) = self.requests.get_mut(i)
                && !self.local.reliable
            {
                r.resend = Some((now + T2, T2));
            }
            return;
        }
        let r = self.requests.remove(i);
        if matches!(code, 401 | 407)
            && r.kind != Kind::Cancel
            && self.may_retry(r.auth_tries, msg, code)
        {
            let method = match r.kind {
                Kind::Bye => "BYE",
                Kind::Info => "INFO",
                _ => "UPDATE",
            };
            let (uri, _) = self.target();
            if let Some(auth) = self.credentials_for(msg, code, method, &uri) {
                let mut extra = r.extra.clone();
                extra.retain(|(n, _)| {
                    !n.eq_ignore_ascii_case("Authorization")
                        && !n.eq_ignore_ascii_case("Proxy-Authorization")
                });
                extra.push(auth);
                let before = self.requests.len();
                self.send_request(
                    r.kind,
                    extra,
                    r.content_type.clone(),
                    r.body.clone(),
                    now,
                    out,
                );
                if let Some(n) = self.requests.get_mut(before) {
                    n.auth_tries = r.auth_tries + 1;
                }
                return;
            }
        }
        match r.kind {
            Kind::Bye | Kind::Cancel => {}
            Kind::Info | Kind::Update if code == 481 || code == 408 => {
                self.end(End::Unreachable, out);
            }
            Kind::Update if (200..300).contains(&code) => self.timer_from_response(msg, now),
            Kind::Info | Kind::Update => {}
        }
    }

    // -----------------------------------------------------------------------------------
    // The handler's actions
    // -----------------------------------------------------------------------------------

    /// An action of the handler's.
    pub(super) fn on_action(&mut self, a: Action, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        let ringing = self.uas
            && self
                .server
                .as_ref()
                .is_some_and(|s| s.initial && matches!(s.state, Server::Proceeding { .. }));
        match a {
            Action::Ring if ringing => {
                self.provisional(180, b"", &mut out);
                self.repeat_provisional(now);
            }
            Action::EarlyMedia(sdp) if ringing => {
                self.provisional(183, &sdp, &mut out);
                self.repeat_provisional(now);
            }
            Action::Answer(sdp) if ringing => self.accept(sdp, now, &mut out),
            Action::Reject(code) if ringing => {
                let code = final_code(code);
                self.refuse(code, Vec::new(), now, &mut out);
                self.end(End::Rejected(code), &mut out);
            }
            Action::Reject(_) | Action::HangUp => self.hang_up(End::HungUp, 480, now, &mut out),
            Action::Info { content_type, body } if self.phase == Phase::Confirmed => {
                let ct = (!body.is_empty()).then_some(content_type);
                self.send_request(Kind::Info, Vec::new(), ct, body, now, &mut out);
            }
            Action::Reinvite(sdp) if self.phase == Phase::Confirmed => {
                let busy = self.client.as_ref().is_some_and(|c| c.done.is_none())
                    || self.server.as_ref().is_some_and(|s| {
                        !matches!(s.state, Server::Confirmed { .. } | Server::Completed { .. })
                    })
                    || self.pending.is_some();
                if busy {
                    self.event(CallEvent::ReinviteFailed { code: 491 }, &mut out);
                } else {
                    self.reinvite(Purpose::Offer, sdp, now, &mut out);
                }
            }
            Action::Reinvite(_) => self.event(CallEvent::ReinviteFailed { code: 491 }, &mut out),
            Action::Ring | Action::EarlyMedia(_) | Action::Answer(_) | Action::Info { .. } => {}
        }
        out
    }

    fn repeat_provisional(&mut self, now: Instant) {
        if let Some(s) = &mut self.server
            && let Server::Proceeding { repeat } = &mut s.state
        {
            *repeat = Some(now + PROVISIONAL_EVERY);
        }
    }

    /// vakt stops: the call ends now (a refusal, CANCEL or BYE sent once).
    pub(super) fn shutdown(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        self.bye_after_ack = false;
        if self.phase == Phase::Confirmed
            && self
                .server
                .as_ref()
                .is_some_and(|s| s.initial && matches!(s.state, Server::Accepted { .. }))
        {
            self.server = None;
        }
        self.hang_up(End::Shutdown, 503, now, &mut out);
        out
    }

    // -----------------------------------------------------------------------------------
    // Time
    // -----------------------------------------------------------------------------------

    /// Whatever is due at `now`: retransmissions, timeouts, the session timer, the bounds.
    pub(super) fn on_timer(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        if !self.ended {
            if self.ring_until.is_some_and(|t| now >= t) {
                self.hang_up(End::RingTimeout, 480, now, &mut out);
            } else if self.call_until.is_some_and(|t| now >= t) {
                self.hang_up(End::MaxDuration, 480, now, &mut out);
            } else if let Some(t) = self.timer
                && now >= t.at
            {
                self.session_timer(t, now, &mut out);
            }
        }
        self.server_timers(now, &mut out);
        self.client_timers(now, &mut out);
        if let Some((_, _, until)) = &self.ack
            && now >= *until
        {
            self.ack = None;
        }
        self.request_timers(now, &mut out);
        out
    }

    fn server_timers(&mut self, now: Instant, out: &mut Vec<Out>) {
        let Some(s) = &mut self.server else { return };
        let (mut resend, mut gone, mut no_ack) = (false, false, false);
        let accepted = matches!(s.state, Server::Accepted { .. });
        match &mut s.state {
            Server::Proceeding { repeat } => {
                if repeat.is_some_and(|t| now >= t) {
                    *repeat = Some(now + PROVISIONAL_EVERY);
                    resend = true;
                }
            }
            Server::Completed {
                next,
                interval,
                until,
            }
            | Server::Accepted {
                next,
                interval,
                until,
            } => {
                if now >= *until {
                    gone = true;
                    no_ack = accepted;
                } else if next.is_some_and(|t| now >= t) {
                    *interval = (*interval * 2).min(T2);
                    *next = Some(now + *interval);
                    resend = true;
                }
            }
            Server::Confirmed { until } => gone = now >= *until,
        }
        if resend && let Some(last) = &s.last {
            out.push(Out::Send(last.clone()));
        }
        if gone {
            self.server = None;
        }
        if no_ack {
            // Timer L: the 2xx was never acknowledged; the session ends with a BYE
            // (RFC 3261 §13.3.1.4), whoever wanted it to end first.
            self.bye_after_ack = false;
            self.send_request(Kind::Bye, Vec::new(), None, Vec::new(), now, out);
            self.end(End::NoAck, out);
        }
    }

    fn client_timers(&mut self, now: Instant, out: &mut Vec<Out>) {
        let Some(c) = &mut self.client else { return };
        if let Some((_, until)) = &c.done {
            let retry = c.retry_at.is_some_and(|t| now >= t);
            let over = c.retry_at.is_none() && now >= *until;
            if retry {
                // After a 491: the offer again, in a new transaction.
                let body = std::mem::take(&mut c.body);
                self.client = None;
                if !self.ended && self.phase == Phase::Confirmed {
                    self.reinvite(Purpose::Offer, body, now, out);
                }
            } else if over {
                self.client = None;
            }
            return;
        }
        if c.timeout.is_some_and(|t| now >= t) {
            // Timer B, or no final after the CANCEL.
            let (purpose, cancelled) = (c.purpose, c.cancelled);
            self.client = None;
            if purpose == Purpose::Initial {
                let why = if cancelled {
                    End::HungUp
                } else {
                    End::Failed(408)
                };
                self.end(why, out);
            } else {
                self.send_request(Kind::Bye, Vec::new(), None, Vec::new(), now, out);
                self.end(End::Unreachable, out);
            }
            return;
        }
        if let Some((at, interval)) = c.resend
            && now >= at
        {
            // Timer A doubles without a cap.
            let next = interval * 2;
            c.resend = Some((now + next, next));
            out.push(Out::Send(c.request.clone()));
        }
    }

    fn request_timers(&mut self, now: Instant, out: &mut Vec<Out>) {
        let mut lost = false;
        let mut i = 0;
        while let Some(r) = self.requests.get_mut(i) {
            if now >= r.until {
                let r = self.requests.remove(i);
                lost |= matches!(r.kind, Kind::Info | Kind::Update);
                continue;
            }
            if let Some((at, interval)) = r.resend
                && now >= at
            {
                let next = (interval * 2).min(T2);
                r.resend = Some((now + next, next));
                out.push(Out::Send(r.request.clone()));
            }
            i += 1;
        }
        if lost && !self.ended {
            // Timer F: as a 408 (RFC 3261 §12.2.1.2).
            self.send_request(Kind::Bye, Vec::new(), None, Vec::new(), now, out);
            self.end(End::Unreachable, out);
        }
    }

    fn session_timer(&mut self, t: SessionTimer, now: Instant, out: &mut Vec<Out>) {
        if !t.we_refresh {
            // Not refreshed in time (RFC 4028 §10).
            self.hang_up(End::SessionExpired, 480, now, out);
            return;
        }
        // Refresh now; if this refresh fails too, the next one is half an interval on.
        let interval = Duration::from_secs(u64::from(t.secs));
        self.timer = Some(SessionTimer {
            at: now + interval / 2,
            ..t
        });
        let busy = self.client.as_ref().is_some_and(|c| c.done.is_none())
            || self.server.as_ref().is_some_and(|s| {
                matches!(s.state, Server::Proceeding { .. } | Server::Accepted { .. })
            });
        if busy {
            // An INVITE in flight will carry the session on.
            return;
        }
        let headers = vec![
            (
                "Session-Expires".to_owned(),
                format!("{};refresher=uac", t.secs),
            ),
            ("Supported".to_owned(), SUPPORTED.to_owned()),
        ];
        if self.peer_allows_update {
            self.send_request(Kind::Update, headers, None, Vec::new(), now, out);
        } else {
            let sdp = self.local_sdp.clone();
            self.reinvite(Purpose::Refresh, sdp, now, out);
        }
    }
}

#[cfg(test)]
mod tests;
