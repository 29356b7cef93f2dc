//! The calls of the SIP endpoint as the layer above sees them: the [`CallHandler`] it
//! implements (who may call, the new call, what happens to it), the [`CallHandle`] it acts
//! with (ring, answer, reject, hang up, INFO, re-INVITE), a call out ([`Dial`]), and the
//! endpoint's bounds for calls ([`InviteOptions`]).
//!
//! Session descriptions are opaque bytes here: the endpoint carries the handler's SDP in its
//! responses and requests and hands the peer's SDP up; it never sends or reads media.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::model::{SipPassword, Transport};
use vakt_proto::sip::Message;

/// A call's number on this endpoint, unique while vakt runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sip-call-{}", self.0)
    }
}

/// The handler's answer to an INVITE: who calls, or the refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// An alarm unit that authenticated with SIP Digest as this SIP user.
    Device {
        /// The registry's `sip_user`.
        user: String,
    },
    /// A configured trunk (the telecom operator's session border controller).
    Trunk {
        /// The trunk's name in the configuration.
        name: String,
    },
    /// Not (yet) authenticated: `401` with this `WWW-Authenticate` value.
    Challenge(String),
    /// Unknown, or refused: `403`.
    Forbidden,
}

/// Where an admitted call comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An alarm unit, by its SIP user.
    Device {
        /// The registry's `sip_user`.
        user: String,
    },
    /// A trunk, by its configured name.
    Trunk {
        /// The trunk's name.
        name: String,
    },
}

/// Who calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The unit or the trunk.
    pub origin: Origin,
    /// The caller's number: the `P-Asserted-Identity` a trunk vouches for, else the user of
    /// the From URI (a `sip:` user or a `tel:` number); `None` when neither reads as one.
    pub number: Option<String>,
    /// The From URI as it came.
    pub from_uri: String,
}

/// A call in, admitted, handed to [`CallHandler::incoming`].
#[derive(Clone, Debug)]
pub struct IncomingCall {
    /// The call's number.
    pub id: CallId,
    /// Who calls.
    pub caller: Caller,
    /// The Request-URI (the number or address the caller dialled).
    pub dialled: String,
    /// The caller's SDP offer; empty when the INVITE has none (then vakt's answer carries
    /// the offer and the ACK the answer: [`CallEvent::RemoteAnswer`]).
    pub offer: Vec<u8>,
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// The caller's address (the source of the INVITE).
    pub peer: SocketAddr,
    /// Arrival time.
    pub now: jiff::Timestamp,
}

/// What the handler does with a new call at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `180 Ringing`; the answer comes later ([`CallHandle::answer`]).
    Ring,
    /// `183 Session Progress` with this SDP (early media: vakt plays ringing itself).
    EarlyMedia(Vec<u8>),
    /// `200 OK` at once with this SDP.
    Answer(Vec<u8>),
    /// A final refusal: `488` no usable codec, `486` or `503` over the concurrent-call cap,
    /// `403` ... (a code outside 300..=699 is sent as `500`).
    Reject(u16),
}

/// What happened to a call; each call ends with exactly one [`CallEvent::Ended`] and hears
/// nothing after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEvent {
    /// A call out rings (`180`) or has early media (`183`, with its SDP when it has one).
    Progress {
        /// The provisional status.
        code: u16,
        /// Early SDP, or empty.
        sdp: Vec<u8>,
    },
    /// A call out was answered (the ACK is sent): the callee's SDP answer.
    Answered {
        /// The SDP answer.
        sdp: Vec<u8>,
    },
    /// A call in is confirmed: the caller's ACK of vakt's `200` arrived.
    Confirmed,
    /// The peer's SDP answer to an offer of vakt's: in the ACK of a call in that came without
    /// an offer, in the ACK of an offerless re-INVITE, or in the `200` to vakt's re-INVITE.
    RemoteAnswer {
        /// The SDP answer.
        sdp: Vec<u8>,
    },
    /// vakt's re-INVITE (hold, resume) was refused; the session stays as it was.
    ReinviteFailed {
        /// The final status (`408` when nothing came).
        code: u16,
    },
    /// A SIP INFO from the peer (e.g. `application/dtmf-relay`), answered `200`.
    Info {
        /// Its Content-Type (empty without a body).
        content_type: String,
        /// Its body.
        body: Vec<u8>,
    },
    /// The call is over.
    Ended(End),
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The caller gave up before an answer (CANCEL, or a BYE in the early dialog): an
    /// abandoned call.
    Cancelled,
    /// vakt refused the call in with this status.
    Rejected(u16),
    /// The call out failed with this final status (`408` when nothing answered).
    Failed(u16),
    /// vakt hung up (BYE; or CANCEL, or a final refusal, before an answer).
    HungUp,
    /// The peer hung up (BYE).
    RemoteHangUp,
    /// The caller never acknowledged vakt's `200` (RFC 3261 timers H and L: 32 s).
    NoAck,
    /// No session refresh came in time (RFC 4028); vakt sent BYE.
    SessionExpired,
    /// A request in the dialog timed out or was answered `408`/`481`: the peer is gone.
    Unreachable,
    /// The call in rang longer than [`InviteOptions::max_ring`] (`480`), or the call out
    /// was not answered within it (CANCEL).
    RingTimeout,
    /// The call lasted [`InviteOptions::max_call`]; vakt sent BYE.
    MaxDuration,
    /// vakt shut down.
    Shutdown,
}

impl End {
    /// A stable label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            End::Cancelled => "cancelled",
            End::Rejected(_) => "rejected",
            End::Failed(_) => "failed",
            End::HungUp => "hung_up",
            End::RemoteHangUp => "remote_hang_up",
            End::NoAck => "no_ack",
            End::SessionExpired => "session_expired",
            End::Unreachable => "unreachable",
            End::RingTimeout => "ring_timeout",
            End::MaxDuration => "max_duration",
            End::Shutdown => "shutdown",
        }
    }
}

/// What the layer above (voice) does for the SIP endpoint's calls. The endpoint calls these
/// from its tasks: they must return at once (hand work to a task of their own).
pub trait CallHandler: Send + Sync + 'static {
    /// Who sends this INVITE (to `uri`, from `peer`): a unit authenticated with SIP Digest
    /// (as SCAIP's messages are, method `INVITE`), a configured trunk, or a challenge or
    /// refusal.
    fn admit(&self, invite: &Message<'_>, uri: &str, peer: SocketAddr) -> Admission;

    /// A new call in, admitted; `handle` acts on it later.
    fn incoming(&self, call: IncomingCall, handle: CallHandle) -> Decision;

    /// The peer's new offer in an established call (a re-INVITE or UPDATE: hold, resume):
    /// the SDP answer, or a refusal status (`488`: the session stays as it was).
    fn reoffer(&self, id: CallId, offer: &[u8]) -> Result<Vec<u8>, u16>;

    /// What happened to a call.
    fn event(&self, id: CallId, event: CallEvent);

    /// True for a source the endpoint's per-source request rate does not apply to (a trunk,
    /// which carries many callers' calls).
    fn unlimited_source(&self, _peer: SocketAddr) -> bool {
        false
    }
}

/// An action on a call, queued to its dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Ring,
    EarlyMedia(Vec<u8>),
    Answer(Vec<u8>),
    Reject(u16),
    HangUp,
    Info { content_type: String, body: Vec<u8> },
    Reinvite(Vec<u8>),
}

/// Why an action was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The call is over.
    #[error("the call has ended")]
    Ended,
    /// Too many actions are queued for the call (the handler's fault).
    #[error("too many actions queued for the call")]
    Busy,
}

/// Acts on one call. Cheap to clone; every action is queued to the call's dialog and
/// returns at once.
#[derive(Clone, Debug)]
pub struct CallHandle {
    id: CallId,
    tx: mpsc::Sender<Action>,
}

impl CallHandle {
    pub(super) fn new(id: CallId, tx: mpsc::Sender<Action>) -> CallHandle {
        CallHandle { id, tx }
    }

    /// The call's number.
    pub fn id(&self) -> CallId {
        self.id
    }

    fn send(&self, a: Action) -> Result<(), ActionError> {
        self.tx.try_send(a).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ActionError::Busy,
            mpsc::error::TrySendError::Closed(_) => ActionError::Ended,
        })
    }

    /// `180 Ringing` (a call in not yet answered).
    pub fn ring(&self) -> Result<(), ActionError> {
        self.send(Action::Ring)
    }

    /// `183 Session Progress` with `sdp` (a call in not yet answered).
    pub fn early_media(&self, sdp: Vec<u8>) -> Result<(), ActionError> {
        self.send(Action::EarlyMedia(sdp))
    }

    /// Answers a call in: `200 OK` with `sdp` (the answer to the caller's offer, or vakt's
    /// offer when the INVITE had none).
    pub fn answer(&self, sdp: Vec<u8>) -> Result<(), ActionError> {
        self.send(Action::Answer(sdp))
    }

    /// Refuses a call in not yet answered with `code`; on an answered call, hangs up.
    pub fn reject(&self, code: u16) -> Result<(), ActionError> {
        self.send(Action::Reject(code))
    }

    /// Hangs up: BYE once answered; before the answer `480` to a call in, CANCEL for a call
    /// out.
    pub fn hang_up(&self) -> Result<(), ActionError> {
        self.send(Action::HangUp)
    }

    /// Sends a SIP INFO in the dialog (e.g. `application/dtmf-relay` to a unit that takes
    /// DTMF that way, SIS-TR 91102 §5.8).
    pub fn info(&self, content_type: &str, body: Vec<u8>) -> Result<(), ActionError> {
        self.send(Action::Info {
            content_type: content_type.to_owned(),
            body,
        })
    }

    /// A re-INVITE with a new offer (hold, resume); the answer comes as
    /// [`CallEvent::RemoteAnswer`], a refusal as [`CallEvent::ReinviteFailed`].
    pub fn reinvite(&self, sdp: Vec<u8>) -> Result<(), ActionError> {
        self.send(Action::Reinvite(sdp))
    }
}

/// The endpoint's bounds and timers for calls (wired from `[voice]`).
#[derive(Clone, Debug)]
pub struct InviteOptions {
    /// Dialogs at once (calls in and out, ringing or answered); an INVITE beyond gets `503`
    /// with `Retry-After`, and a call out is refused.
    pub max_dialogs: usize,
    /// A call in not answered within this gets `480`; a call out is cancelled.
    pub max_ring: Duration,
    /// An answered call is hung up after this (a bound on forgotten dialogs, far above any
    /// conversation).
    pub max_call: Duration,
    /// The session interval vakt asks for and accepts at most (RFC 4028).
    pub session_expires: Duration,
    /// The shortest session interval vakt accepts (`Min-SE`; below: `422`). At least 90 s.
    pub min_se: Duration,
}

impl Default for InviteOptions {
    fn default() -> Self {
        InviteOptions {
            max_dialogs: 1000,
            max_ring: Duration::from_secs(600),
            max_call: Duration::from_secs(4 * 3600),
            session_expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
        }
    }
}

/// How a call out reaches its callee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialVia {
    /// The unit's own flow: where its last authenticated request (a SCAIP MESSAGE, a
    /// REGISTER or an INVITE) came from (the UDP source, or its open TCP/TLS connection), so
    /// a unit behind NAT is reached.
    Device(String),
    /// UDP to this address (from the endpoint's UDP listener).
    Udp(SocketAddr),
    /// A TCP connection to this address (opened for the call, read like an accepted one).
    Tcp(SocketAddr),
}

/// A call out.
#[derive(Clone, Debug)]
pub struct Dial {
    /// The Request-URI and To (`sip:luc678@192.0.2.7:5060`, `sip:+4670111222@sbc`).
    pub uri: String,
    /// The From URI (vakt's own, or the centre's number at the trunk).
    pub from: String,
    /// How the INVITE travels.
    pub via: DialVia,
    /// vakt's SDP offer.
    pub offer: Vec<u8>,
    /// User and password to answer a `401`/`407` challenge with (a trunk's), if any.
    pub credentials: Option<(String, SipPassword)>,
    /// More headers for the INVITE (e.g. `P-Asserted-Identity` at a trunk).
    pub headers: Vec<(String, String)>,
}

/// Why a call out was not started.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The endpoint takes no calls (no handler configured): vakt's configuration.
    #[error("the SIP endpoint has no call handler")]
    NoCalls,
    /// At the endpoint's maximum of dialogs: vakt's bound.
    #[error("too many calls")]
    Full,
    /// The unit has no flow vakt knows (not heard from lately): the peer's side.
    #[error("no flow to the unit")]
    NoFlow,
    /// No UDP listener to send from: vakt's configuration.
    #[error("no UDP listener")]
    NoUdp,
    /// The TCP connection failed: the network or the peer.
    #[error("connecting: {0}")]
    Connect(#[from] std::io::Error),
}
