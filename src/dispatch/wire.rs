//! The patrol protocol: messages between vakt and a home-care patrol's app, over QUIC.
//!
//! ```text
//! QUIC (ALPN "vakt-patrol/1", TLS 1.3) -> one bidirectional stream opened by the patrol ->
//!   frame = length (u32, big-endian, <= 64 KiB) + that many bytes of UTF-8 JSON {"type": ...}
//! ```
//!
//! Sans-IO: [`encode`] appends one frame to a buffer, [`decode`] reads one frame from the
//! head of a receive buffer and says how many bytes it used, or that it needs more
//! ([`Decoded::Incomplete`]). A length over [`MAX_MESSAGE_BYTES`] is rejected from the
//! 4-byte header alone, before any of the body is waited for. No I/O, no clock, never
//! panics on any input.
//!
//! Messages: [`ToPatrol`] (server to patrol) and [`FromPatrol`] (patrol to server).
//! Unknown fields are ignored (forward compatibility for mobile clients); an unknown
//! `type` is a [`PatrolCodecError::BadJson`] that still carries the message's `seq`, so the
//! receiver can answer it. Secrets (the patrol's token, door codes, receipt codes) are
//! [`Secret`]s: `Debug` never prints them.
//!
//! `proto/patrol.md` is the protocol for client writers; `proto/patrol/` holds one example
//! file per message, checked by the tests here.
//!
//! Times vakt sends are whole seconds (`2026-11-03T17:42:13Z`, truncated, so a deadline shown
//! is never later than the real one): one fixed shape that every platform's RFC 3339 parser
//! reads. Times it reads may have any fraction and offset.

use std::fmt;

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::keys::PatrolAccess;
use crate::model::order::{KeyCount, KeyKind};
use crate::model::{Access, ArrivalMethod, DispatchState, Priority, Subscriber};

/// The ALPN protocol id a patrol client and vakt agree on in the TLS handshake.
pub const ALPN: &[u8] = b"vakt-patrol/1";
/// Largest message body (the JSON, without the 4-byte length). A longer length is
/// [`PatrolCodecError::TooBig`] and closes the connection.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Bytes of the length prefix of every frame.
pub const HEADER_BYTES: usize = 4;
/// The patrol sends an application `ping` this often (seconds); QUIC's own keep-alive is
/// more frequent (`transport::quic::KEEP_ALIVE`).
pub const PING_INTERVAL_SECS: u32 = 15;
/// A connection on which nothing arrived for this long (seconds) is dead: the QUIC idle
/// timeout, and the application's limit on both sides.
pub const IDLE_TIMEOUT_SECS: u32 = 60;
/// The server closes a connection whose `hello` has not arrived this long (seconds) after
/// the handshake.
pub const HELLO_TIMEOUT_SECS: u32 = 10;
/// First reconnect delay (seconds); doubled after each failed attempt.
pub const RECONNECT_MIN_SECS: u32 = 1;
/// Longest reconnect delay (seconds).
pub const RECONNECT_MAX_SECS: u32 = 30;

/// QUIC application close code: normal end (the patrol logs out).
pub const CLOSE_NORMAL: u32 = 0;
/// QUIC application close code: protocol violation (too big, not a `hello` first, no
/// `hello` in time, a second stream). The patrol reconnects with backoff.
pub const CLOSE_PROTOCOL: u32 = 1;
/// QUIC application close code: authentication failed (`bad_token`, `unknown_patrol`).
/// The patrol does not reconnect by itself.
pub const CLOSE_AUTH: u32 = 2;
/// QUIC application close code: another connection logged in as the same patrol. The
/// patrol does not reconnect by itself.
pub const CLOSE_REPLACED: u32 = 3;
/// QUIC application close code: the server is shutting down. The patrol reconnects with
/// backoff.
pub const CLOSE_SHUTDOWN: u32 = 4;
/// QUIC application close code: nothing arrived for [`IDLE_TIMEOUT_SECS`]. The patrol
/// reconnects with backoff.
pub const CLOSE_IDLE: u32 = 5;

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

/// A string that must not reach logs: the patrol's token, a door code, a receipt code, the
/// health notes of an assignment.
/// On the wire it is a plain JSON string; `Debug` prints `<redacted>` (or `<empty>`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// There is no secret (an empty string).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<empty>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

// ---------------------------------------------------------------------------------------
// Times on the wire
// ---------------------------------------------------------------------------------------

/// `t` without its fraction of a second (towards the past).
fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Serde of a time vakt sends: whole seconds out, any RFC 3339 time in.
mod wire_time {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        super::whole_second(*t).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        Timestamp::deserialize(d)
    }
}

/// [`wire_time`] for a time that may be `null`.
mod wire_time_opt {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        t.map(super::whole_second).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<Timestamp>::deserialize(d)
    }
}

// ---------------------------------------------------------------------------------------
// Parts of messages
// ---------------------------------------------------------------------------------------

/// The client program, as it introduces itself in `hello`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Program name, e.g. `vakt-patrol-android`.
    pub name: String,
    /// Program version, e.g. `1.4.2`.
    pub version: String,
}

/// The person to go to, as an assignment carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberInfo {
    /// Full name.
    pub name: String,
    /// Street address.
    pub address: String,
    /// Postal code.
    pub postcode: String,
    /// City or locality.
    pub city: String,
    /// The person's phone number.
    pub phone: String,
}

impl From<&Subscriber> for SubscriberInfo {
    fn from(s: &Subscriber) -> SubscriberInfo {
        SubscriberInfo {
            name: s.name.clone(),
            address: s.address.clone(),
            postcode: s.postcode.clone(),
            city: s.city.clone(),
            phone: s.phone.clone(),
        }
    }
}

/// How to get into the home, as an assignment carries it. Empty strings mean "none".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessInfo {
    /// Number of keys the care provider holds (0: none).
    pub keys: u32,
    /// Where the keys are kept.
    pub key_location: String,
    /// Digital lock id, if the door has one.
    pub digital_lock_id: String,
    /// Door or gate code. Sent only to the assigned patrol; never logged.
    pub door_code: Secret,
    /// How to get in (stairs, dog, which door).
    pub entry_notes: String,
}

impl From<&Access> for AccessInfo {
    fn from(a: &Access) -> AccessInfo {
        AccessInfo {
            keys: a.keys,
            key_location: a.key_location.clone(),
            digital_lock_id: a.digital_lock_id.clone(),
            door_code: Secret::new(a.door_code.clone()),
            entry_notes: a.entry_notes.clone(),
        }
    }
}

/// An assignment: one dispatch of a Call to this patrol, with everything needed to go
/// there and its clock. Sent when dispatched, after every change of its state, and again
/// after every (re)connect while it is open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignmentMsg {
    /// Sequence number of this message (acknowledged by the patrol).
    pub seq: u64,
    /// Dispatch id: names the assignment in every later message.
    pub dispatch: u64,
    /// The Call it belongs to (for talking to the operator).
    pub call: u64,
    /// Where it is: `offered`, `received`, `accepted` or `arrived`.
    pub state: DispatchState,
    /// The person.
    pub subscriber: SubscriberInfo,
    /// How to get in.
    pub access: AccessInfo,
    /// The kind of alarm, in words (e.g. "Fall", "Personal emergency").
    pub reason: String,
    /// 0 (most urgent) to 4.
    pub priority: Priority,
    /// Minutes from receipt to arrival.
    pub limit_mins: u32,
    /// When the operator dispatched it.
    #[serde(with = "wire_time")]
    pub offered_at: Timestamp,
    /// Until when the patrol may confirm receipt (`offered_at` + the server's receipt time)
    /// before the dispatch goes to another patrol; `null` once received. Missing from an
    /// older server: then `null`.
    #[serde(default, with = "wire_time_opt")]
    pub receipt_deadline: Option<Timestamp>,
    /// When the patrol confirmed receipt; `null` until then.
    #[serde(with = "wire_time_opt")]
    pub received_at: Option<Timestamp>,
    /// `received_at + limit_mins`; `null` until received.
    #[serde(with = "wire_time_opt")]
    pub deadline: Option<Timestamp>,
    /// The operator's instruction for this visit (`""`: none). Missing from an older
    /// server: `""`.
    #[serde(default)]
    pub instruction: String,
    /// The subscriber's health notes that matter for the visit, sent only with their
    /// consent (`""`: none, or withheld). Personal data: `Debug` does not print it. Missing
    /// from an older server: `""`.
    #[serde(default)]
    pub health_notes: Secret,
    /// The subscriber has not consented to their health notes going to patrols, so none are
    /// sent (ask the alarm centre). Missing from an older server: `false`.
    #[serde(default)]
    pub health_notes_withheld: bool,
    /// What the patrol's provider has to get in, in words: the keys it holds by the signed
    /// receipts ("2 door keys, access tag"), and the home's digital lock when the provider has
    /// access to it ("no key: the lock"), or "no key and no lock access" ([`keys_line`]).
    /// `""` (and absent on the wire) when no subscriber is known; missing from an older
    /// server: `""`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider_keys: String,
}

/// One kind of key in words, with its count ("2 door keys", "access tag" for one).
fn key_words(k: &KeyCount) -> String {
    let (one, many) = match k.kind {
        KeyKind::Door => ("door key", "door keys"),
        KeyKind::SevenLever => ("seven-lever key", "seven-lever keys"),
        KeyKind::Entrance => ("entrance key", "entrance keys"),
        KeyKind::AccessTag => ("access tag", "access tags"),
        KeyKind::KeyBox => ("key box", "key boxes"),
        KeyKind::DigitalLock => ("digital lock key", "digital lock keys"),
        KeyKind::Other => ("other key", "other keys"),
    };
    if k.count == 1 {
        one.to_owned()
    } else {
        format!("{} {many}", k.count)
    }
}

/// What a patrol's provider has to get into the home, as the assignment's `provider_keys`
/// says it: "2 door keys, access tag", "2 door keys, access tag; the lock", "no key: the
/// lock" or "no key and no lock access".
pub fn keys_line(a: &PatrolAccess) -> String {
    let keys = a.keys.iter().map(key_words).collect::<Vec<_>>().join(", ");
    match (keys.is_empty(), a.digital_lock) {
        (true, true) => "no key: the lock".to_owned(),
        (true, false) => "no key and no lock access".to_owned(),
        (false, true) => format!("{keys}; the lock"),
        (false, false) => keys,
    }
}

/// The health notes an assignment carries for `s`, and whether they were withheld: the
/// notes only when the person consented ([`Subscriber::health_to_patrol`]); without consent
/// none, withheld (whether or not there are any, so the patrol learns nothing of them).
pub fn health_for_patrol(s: &Subscriber) -> (Secret, bool) {
    if s.health_to_patrol {
        (Secret::new(s.health_notes.clone()), false)
    } else {
        (Secret::default(), true)
    }
}

/// Why a dispatch was withdrawn from the patrol (`cancelled`), for the app to act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelCause {
    /// The operator withdrew it (the `reason` says why).
    Withdrawn,
    /// The patrol did not confirm receipt in time: another patrol has it now.
    ReceiptTimeout,
    /// A cause this version does not know (from a newer server), or none given.
    #[default]
    #[serde(other)]
    Unknown,
}

impl CancelCause {
    /// The wire name (`withdrawn`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CancelCause::Withdrawn => "withdrawn",
            CancelCause::ReceiptTimeout => "receipt_timeout",
            CancelCause::Unknown => "unknown",
        }
    }
}

/// Error codes of the `error` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The token does not match the patrol (fatal).
    BadToken,
    /// No patrol with that id (fatal).
    UnknownPatrol,
    /// The message could not be read or is not allowed now (e.g. not `hello` first; fatal
    /// then).
    BadMessage,
    /// A frame's length is over 64 KiB (fatal).
    TooBig,
    /// An event for a dispatch that is not assigned to this patrol.
    NotYours,
    /// An event for a dispatch that is no longer open.
    Closed,
    /// Another connection logged in as this patrol; this one closes (fatal).
    Replaced,
    /// A code this version does not know (from a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire name (`bad_token`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadToken => "bad_token",
            ErrorCode::UnknownPatrol => "unknown_patrol",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::TooBig => "too_big",
            ErrorCode::NotYours => "not_yours",
            ErrorCode::Closed => "closed",
            ErrorCode::Replaced => "replaced",
            ErrorCode::Unknown => "unknown",
        }
    }
}

/// How a visit ended, as the patrol reports it in `completed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitOutcome {
    /// The person was helped (up from a fall, medication, comfort).
    Helped,
    /// Nothing was needed (a false alarm, an accidental press).
    NoAction,
    /// An ambulance was called (or the person was taken to care).
    AmbulanceCalled,
    /// Nobody was home.
    NotHome,
    /// The patrol could not get in.
    NoAccess,
    /// Something else; the note says what.
    Other,
}

impl VisitOutcome {
    /// Every outcome.
    pub const ALL: [VisitOutcome; 6] = [
        VisitOutcome::Helped,
        VisitOutcome::NoAction,
        VisitOutcome::AmbulanceCalled,
        VisitOutcome::NotHome,
        VisitOutcome::NoAccess,
        VisitOutcome::Other,
    ];

    /// The wire name (`helped`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            VisitOutcome::Helped => "helped",
            VisitOutcome::NoAction => "no_action",
            VisitOutcome::AmbulanceCalled => "ambulance_called",
            VisitOutcome::NotHome => "not_home",
            VisitOutcome::NoAccess => "no_access",
            VisitOutcome::Other => "other",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// A message from vakt to a patrol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToPatrol {
    /// The answer to a good `hello`; open assignments follow.
    Welcome {
        /// The `seq` of the `hello` it answers.
        seq: u64,
        /// The server's clock (for the patrol to correct its own).
        #[serde(with = "wire_time")]
        server_time: Timestamp,
        /// Send a `ping` this often (seconds).
        ping_secs: u32,
        /// Reconnect when nothing arrived for this long (seconds).
        idle_timeout_secs: u32,
        /// Ids of every open dispatch of this patrol; an `assignment` follows for each. An
        /// assignment the patrol holds that is not listed has ended.
        open: Vec<u64>,
    },
    /// An assignment, new or updated.
    Assignment(Box<AssignmentMsg>),
    /// The arrival deadline is near.
    SlaWarning {
        /// Sequence number of this message.
        seq: u64,
        /// The dispatch.
        dispatch: u64,
        /// Whole minutes left until the deadline.
        minutes_left: u32,
        /// The deadline.
        #[serde(with = "wire_time")]
        deadline: Timestamp,
    },
    /// The dispatch is withdrawn from this patrol: do not go (or stop).
    Cancelled {
        /// Sequence number of this message.
        seq: u64,
        /// The dispatch.
        dispatch: u64,
        /// Why, for the app: `withdrawn` or `receipt_timeout`.
        #[serde(default)]
        cause: CancelCause,
        /// Why, in words.
        #[serde(default)]
        reason: String,
    },
    /// The message with this `seq` was received and its effect stored.
    Ack {
        /// The `seq` of the acknowledged message.
        seq: u64,
    },
    /// A message was refused (the final answer to it), or the session ends.
    Error {
        /// The `seq` of the refused message; `null` when it could not be read or the error
        /// is not about one message.
        seq: Option<u64>,
        /// What is wrong.
        code: ErrorCode,
        /// Explanation for people (English).
        #[serde(default)]
        message: String,
        /// The server closes the connection after this message.
        #[serde(default)]
        fatal: bool,
    },
    /// The answer to a `ping`.
    Pong {
        /// The `seq` of the `ping`.
        seq: u64,
    },
}

impl ToPatrol {
    /// The `seq` the message carries: its own number (`assignment`, `sla_warning`,
    /// `cancelled`) or the number of the message it answers (`welcome`, `ack`, `error`,
    /// `pong`). `None` only for an `error` about no particular message.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ToPatrol::Welcome { seq, .. }
            | ToPatrol::SlaWarning { seq, .. }
            | ToPatrol::Cancelled { seq, .. }
            | ToPatrol::Ack { seq }
            | ToPatrol::Pong { seq } => Some(*seq),
            ToPatrol::Assignment(a) => Some(a.seq),
            ToPatrol::Error { seq, .. } => *seq,
        }
    }

    /// The wire `type` (`welcome`, `assignment`, ...), for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ToPatrol::Welcome { .. } => "welcome",
            ToPatrol::Assignment(_) => "assignment",
            ToPatrol::SlaWarning { .. } => "sla_warning",
            ToPatrol::Cancelled { .. } => "cancelled",
            ToPatrol::Ack { .. } => "ack",
            ToPatrol::Error { .. } => "error",
            ToPatrol::Pong { .. } => "pong",
        }
    }

    /// The patrol must answer it with an `ack` (`assignment`, `sla_warning`, `cancelled`).
    pub fn needs_ack(&self) -> bool {
        matches!(
            self,
            ToPatrol::Assignment(_) | ToPatrol::SlaWarning { .. } | ToPatrol::Cancelled { .. }
        )
    }

    /// The dispatch the message is about, if any.
    pub fn dispatch(&self) -> Option<u64> {
        match self {
            ToPatrol::Assignment(a) => Some(a.dispatch),
            ToPatrol::SlaWarning { dispatch, .. } | ToPatrol::Cancelled { dispatch, .. } => {
                Some(*dispatch)
            }
            _ => None,
        }
    }
}

/// A message from a patrol to vakt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromPatrol {
    /// The first message on a connection: who is calling.
    Hello {
        /// Sequence number of this message (the `welcome` or `error` carries it).
        seq: u64,
        /// Patrol id.
        patrol: String,
        /// The patrol's token (from `vakt patrols token ID`). Never logged.
        token: Secret,
        /// The client program.
        client: ClientInfo,
    },
    /// The assignment reached the patrol: the arrival clock starts.
    Received {
        /// Sequence number of this message.
        seq: u64,
        /// The dispatch.
        dispatch: u64,
        /// When it happened on the device (UTC).
        at: Timestamp,
    },
    /// The patrol takes it and is on its way.
    Accepted {
        /// Sequence number of this message.
        seq: u64,
        /// The dispatch.
        dispatch: u64,
        /// When it happened on the device (UTC).
        at: Timestamp,
    },
    /// The patrol cannot take it; the operator picks another patrol.
    Declined {
        /// Sequence number of this message.
        seq: u64,
        /// The dispatch.
        dispatch: u64,
        /// When it happened on the device (UTC).
        at: Timestamp,
        /// Why, in words.
        #[serde(default)]
        reason: String,
    },
    /// The patrol is at the door.
    Arrived {
        /// Sequence number of this message.
        seq: u64,
        /// The dispatch.
        dispatch: u64,
        /// When it happened on the device (UTC).
        at: Timestamp,
        /// How the arrival is known: `app`, `lock` (the app opened the digital lock) or
        /// `receipt_code`.
        method: ArrivalMethod,
        /// The receipt code given at the door (with `receipt_code`), else `null`.
        #[serde(default)]
        code: Option<Secret>,
    },
    /// The visit is over.
    Completed {
        /// Sequence number of this message.
        seq: u64,
        /// The dispatch.
        dispatch: u64,
        /// When it happened on the device (UTC).
        at: Timestamp,
        /// How it ended.
        outcome: VisitOutcome,
        /// What was done, for the Call's timeline.
        #[serde(default)]
        note: String,
    },
    /// The server message with this `seq` was received and stored.
    Ack {
        /// The `seq` of the acknowledged message.
        seq: u64,
    },
    /// Keep-alive; the server answers `pong`.
    Ping {
        /// Sequence number of this message (the `pong` carries it).
        seq: u64,
    },
}

impl FromPatrol {
    /// The `seq` the message carries: its own number, or for `ack` the number of the
    /// acknowledged message.
    pub fn seq(&self) -> u64 {
        match self {
            FromPatrol::Hello { seq, .. }
            | FromPatrol::Received { seq, .. }
            | FromPatrol::Accepted { seq, .. }
            | FromPatrol::Declined { seq, .. }
            | FromPatrol::Arrived { seq, .. }
            | FromPatrol::Completed { seq, .. }
            | FromPatrol::Ack { seq }
            | FromPatrol::Ping { seq } => *seq,
        }
    }

    /// The wire `type` (`hello`, `received`, ...), for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FromPatrol::Hello { .. } => "hello",
            FromPatrol::Received { .. } => "received",
            FromPatrol::Accepted { .. } => "accepted",
            FromPatrol::Declined { .. } => "declined",
            FromPatrol::Arrived { .. } => "arrived",
            FromPatrol::Completed { .. } => "completed",
            FromPatrol::Ack { .. } => "ack",
            FromPatrol::Ping { .. } => "ping",
        }
    }

    /// The server must answer it with an `ack` or an `error` (the dispatch events:
    /// `received`, `accepted`, `declined`, `arrived`, `completed`).
    pub fn needs_ack(&self) -> bool {
        self.dispatch().is_some()
    }

    /// The dispatch the message is about, if any.
    pub fn dispatch(&self) -> Option<u64> {
        match self {
            FromPatrol::Received { dispatch, .. }
            | FromPatrol::Accepted { dispatch, .. }
            | FromPatrol::Declined { dispatch, .. }
            | FromPatrol::Arrived { dispatch, .. }
            | FromPatrol::Completed { dispatch, .. } => Some(*dispatch),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------

/// Why a frame could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatrolCodecError {
    /// The length is over [`MAX_MESSAGE_BYTES`]. On decode the stream cannot be trusted any
    /// more: answer `error` `too_big` and close the connection.
    #[error("message of {len} bytes is over the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooBig {
        /// The length of the body (from the header on decode, serialised on encode).
        len: usize,
    },
    /// The body is not UTF-8. The framing is intact: skip `consumed` bytes and go on.
    #[error("message is not UTF-8")]
    NotUtf8 {
        /// Bytes of the frame (header and body), to skip.
        consumed: usize,
    },
    /// The body is not JSON, or not a message of the expected kind (unknown `type`, a
    /// missing field, a wrong type). The framing is intact: skip `consumed` bytes and go on.
    #[error("not a valid message: {detail}")]
    BadJson {
        /// Bytes of the frame (header and body), to skip.
        consumed: usize,
        /// The message's `seq`, if it has a readable one (to name it in the answer).
        seq: Option<u64>,
        /// What is wrong, with the position; values from the message are left out so no
        /// secret reaches a log.
        detail: String,
    },
    /// The message could not be serialised to JSON (not possible for this module's types).
    #[error("message could not be serialised: {0}")]
    Serialize(String),
}

impl PatrolCodecError {
    /// Stable label: `too_big`, `not_utf8`, `bad_json`, `serialize`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PatrolCodecError::TooBig { .. } => "too_big",
            PatrolCodecError::NotUtf8 { .. } => "not_utf8",
            PatrolCodecError::BadJson { .. } => "bad_json",
            PatrolCodecError::Serialize(_) => "serialize",
        }
    }

    /// The wire error code to answer a decode error with (`too_big` or `bad_message`).
    pub fn code(&self) -> ErrorCode {
        match self {
            PatrolCodecError::TooBig { .. } => ErrorCode::TooBig,
            _ => ErrorCode::BadMessage,
        }
    }

    /// The `seq` of the message that could not be read, if known.
    pub fn seq(&self) -> Option<u64> {
        match self {
            PatrolCodecError::BadJson { seq, .. } => *seq,
            _ => None,
        }
    }

    /// Bytes to skip to the next frame; `None` when the stream cannot go on (`too_big`).
    pub fn consumed(&self) -> Option<usize> {
        match self {
            PatrolCodecError::NotUtf8 { consumed } | PatrolCodecError::BadJson { consumed, .. } => {
                Some(*consumed)
            }
            _ => None,
        }
    }
}

/// Result of [`decode`].
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded<T> {
    /// One message, and the bytes it used at the head of the buffer (header and body).
    Message(T, usize),
    /// Need more bytes.
    Incomplete,
}

/// Appends one frame (length + JSON) of `msg` to `out`. On error `out` is left as it was.
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), PatrolCodecError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    if let Err(e) = serde_json::to_writer(&mut *out, msg) {
        out.truncate(start);
        return Err(PatrolCodecError::Serialize(e.to_string()));
    }
    let len = out.len() - start - HEADER_BYTES;
    let header = match u32::try_from(len) {
        Ok(n) if len <= MAX_MESSAGE_BYTES => n.to_be_bytes(),
        _ => {
            out.truncate(start);
            return Err(PatrolCodecError::TooBig { len });
        }
    };
    out[start..start + HEADER_BYTES].copy_from_slice(&header);
    Ok(())
}

/// Reads one frame from the head of `buf`.
///
/// * fewer than 4 bytes, or fewer than 4 + length: [`Decoded::Incomplete`];
/// * a length over [`MAX_MESSAGE_BYTES`]: [`PatrolCodecError::TooBig`] at once, from the
///   header alone;
/// * a body that is not UTF-8 or not a `T`: [`PatrolCodecError::NotUtf8`] or
///   [`PatrolCodecError::BadJson`], with the bytes to skip;
/// * otherwise [`Decoded::Message`] with the message and 4 + length.
pub fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<Decoded<T>, PatrolCodecError> {
    let Some(header) = buf.first_chunk::<HEADER_BYTES>() else {
        return Ok(Decoded::Incomplete);
    };
    let len = usize::try_from(u32::from_be_bytes(*header)).unwrap_or(usize::MAX);
    if len > MAX_MESSAGE_BYTES {
        return Err(PatrolCodecError::TooBig { len });
    }
    let consumed = HEADER_BYTES + len;
    let Some(body) = buf.get(HEADER_BYTES..consumed) else {
        return Ok(Decoded::Incomplete);
    };
    let text = std::str::from_utf8(body).map_err(|_| PatrolCodecError::NotUtf8 { consumed })?;
    match serde_json::from_str::<T>(text) {
        Ok(msg) => Ok(Decoded::Message(msg, consumed)),
        Err(e) => Err(PatrolCodecError::BadJson {
            consumed,
            seq: peek_seq(text),
            detail: redacted(&e),
        }),
    }
}

/// The `seq` of a message that did not decode, if it is an object with an integer `seq`.
fn peek_seq(text: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Peek {
        seq: Option<u64>,
    }
    serde_json::from_str::<Peek>(text).ok().and_then(|p| p.seq)
}

/// Longest `detail` of [`PatrolCodecError::BadJson`].
const MAX_DETAIL_CHARS: usize = 200;

/// A serde_json error without the values it quotes (`invalid type: string "1234",
/// expected u64 at line 1 column 9` becomes `invalid type, expected u64 at line 1 column
/// 9`), so a misplaced token or door code cannot reach a log; at most
/// [`MAX_DETAIL_CHARS`].
fn redacted(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = if msg.starts_with("invalid ") {
        let head = msg.split(':').next().unwrap_or("invalid");
        match msg.find(", expected") {
            Some(i) => format!("{head}{}", &msg[i..]),
            None => format!("{head} at line {} column {}", e.line(), e.column()),
        }
    } else {
        msg
    };
    match msg.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((i, _)) => format!("{}...", &msg[..i]),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::collection::vec;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    const DOC: &str = include_str!("../../proto/patrol.md");

    fn frame(json: &str) -> Vec<u8> {
        let mut v = u32::try_from(json.len())
            .expect("small")
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(json.as_bytes());
        v
    }

    fn encoded<T: Serialize>(m: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode(m, &mut out).expect("encodes");
        out
    }

    /// Decodes `json` (framed) as a `T`, re-encodes it and checks the JSON is value-equal.
    fn round_trip<T: Serialize + DeserializeOwned>(json: &str) -> Result<T, String> {
        let want: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let buf = frame(json);
        let msg = match decode::<T>(&buf) {
            Ok(Decoded::Message(m, n)) if n == buf.len() => m,
            other => return Err(format!("decode: {:?}", other.map(|_| ()))),
        };
        let out = encoded(&msg);
        let got: Value = serde_json::from_slice(&out[HEADER_BYTES..]).map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!("re-encoded differs:\n want {want}\n  got {got}"));
        }
        Ok(msg)
    }

    #[test]
    fn visit_outcome_names_are_the_wire_names() {
        for o in VisitOutcome::ALL {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
    }

    #[test]
    fn every_example_file_decodes_to_its_variant_and_round_trips() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/patrol");
        let mut seen = std::collections::BTreeSet::new();
        for dir in ["to_patrol", "from_patrol"] {
            let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
                .expect("proto/patrol dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            assert!(files.len() >= 7, "{dir}: {files:?}");
            for path in files {
                let json = std::fs::read_to_string(&path).expect("read");
                let stem = path.file_stem().and_then(|s| s.to_str()).expect("name");
                let want_kind = stem.split('-').next().unwrap_or(stem);
                let kind = if dir == "to_patrol" {
                    round_trip::<ToPatrol>(&json).map(|m| m.kind())
                } else {
                    round_trip::<FromPatrol>(&json).map(|m| m.kind())
                }
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(kind, want_kind, "{}", path.display());
                seen.insert(format!("{dir}/{kind}"));
            }
        }
        // Every message type has an example.
        for k in [
            "welcome",
            "assignment",
            "sla_warning",
            "cancelled",
            "ack",
            "error",
            "pong",
        ] {
            assert!(seen.contains(&format!("to_patrol/{k}")), "to_patrol/{k}");
        }
        for k in [
            "hello",
            "received",
            "accepted",
            "declined",
            "arrived",
            "completed",
            "ack",
            "ping",
        ] {
            assert!(
                seen.contains(&format!("from_patrol/{k}")),
                "from_patrol/{k}"
            );
        }
    }

    /// The ```json blocks of proto/patrol.md whose info line names a direction:
    /// ```` ```json to_patrol ```` or ```` ```json from_patrol ````.
    fn doc_json_blocks() -> Vec<(String, String)> {
        let mut blocks = Vec::new();
        let mut cur: Option<(String, String)> = None;
        for line in DOC.lines() {
            match &mut cur {
                None => {
                    if let Some(info) = line.trim().strip_prefix("```json ") {
                        cur = Some((info.trim().to_owned(), String::new()));
                    }
                }
                Some((_, body)) => {
                    if line.trim() == "```" {
                        blocks.extend(cur.take());
                    } else {
                        body.push_str(line);
                        body.push('\n');
                    }
                }
            }
        }
        blocks
    }

    #[test]
    fn every_message_example_of_the_doc_round_trips() {
        let blocks = doc_json_blocks();
        assert!(blocks.len() >= 15, "{} blocks", blocks.len());
        for (dir, json) in blocks {
            let r = match dir.as_str() {
                "to_patrol" => round_trip::<ToPatrol>(&json).map(|_| ()),
                "from_patrol" => round_trip::<FromPatrol>(&json).map(|_| ()),
                other => Err(format!("unknown direction {other}")),
            };
            if let Err(e) = r {
                panic!("{e}\nin block:\n{json}");
            }
        }
    }

    /// The example sessions of the doc: lines `patrol> {json}` and `server> {json}`
    /// inside ```` ```text ```` blocks, grouped per block.
    fn doc_sessions() -> Vec<Vec<(bool, String)>> {
        let mut sessions = Vec::new();
        let mut cur: Vec<(bool, String)> = Vec::new();
        let mut in_block = false;
        for line in DOC.lines() {
            let t = line.trim();
            if t.starts_with("```") {
                if in_block && !cur.is_empty() {
                    sessions.push(std::mem::take(&mut cur));
                }
                in_block = !in_block;
                continue;
            }
            if !in_block {
                continue;
            }
            if let Some(j) = t.strip_prefix("patrol> ") {
                cur.push((true, j.to_owned()));
            } else if let Some(j) = t.strip_prefix("server> ") {
                cur.push((false, j.to_owned()));
            }
        }
        sessions
    }

    #[test]
    fn the_example_sessions_round_trip_and_are_consistent() {
        let sessions: Vec<(Vec<FromPatrol>, Vec<ToPatrol>)> = doc_sessions()
            .iter()
            .map(|lines| {
                let mut from = Vec::new();
                let mut to = Vec::new();
                for (by_patrol, json) in lines {
                    if *by_patrol {
                        from.push(round_trip::<FromPatrol>(json).unwrap_or_else(|e| panic!("{e}")));
                    } else {
                        to.push(round_trip::<ToPatrol>(json).unwrap_or_else(|e| panic!("{e}")));
                    }
                }
                (from, to)
            })
            .collect();
        assert!(sessions.len() >= 3, "{} sessions", sessions.len());
        assert!(
            sessions
                .iter()
                .map(|(f, t)| f.len() + t.len())
                .sum::<usize>()
                >= 30
        );
        for (i, (from, to)) in sessions.iter().enumerate() {
            // As one byte stream per direction, too.
            let (mut up, mut down) = (Vec::new(), Vec::new());
            for m in from {
                encode(m, &mut up).expect("encodes");
            }
            for m in to {
                encode(m, &mut down).expect("encodes");
            }
            assert_eq!(&drain::<FromPatrol>(&up), from);
            assert_eq!(&drain::<ToPatrol>(&down), to);
            // A session begins with hello, answered by welcome or error.
            assert!(matches!(from.first(), Some(FromPatrol::Hello { .. })));
            assert!(matches!(
                to.first(),
                Some(ToPatrol::Welcome { .. } | ToPatrol::Error { .. })
            ));
            // Every event is answered on its connection, or resent (same seq) on a later one.
            for m in from.iter().filter(|m| m.needs_ack()) {
                let answered = to.iter().any(|r| {
                    matches!(r, ToPatrol::Ack { seq } | ToPatrol::Error { seq: Some(seq), .. } if *seq == m.seq())
                });
                let resent = sessions[i + 1..].iter().any(|(f, _)| f.contains(m));
                assert!(answered || resent, "no answer to {m:?}");
            }
            for m in to.iter().filter(|m| m.needs_ack()) {
                assert!(
                    from.iter()
                        .any(|r| matches!(r, FromPatrol::Ack { seq } if Some(*seq) == m.seq())),
                    "no ack of {m:?}"
                );
            }
            for m in from {
                if let FromPatrol::Ping { seq } = m {
                    assert!(to.contains(&ToPatrol::Pong { seq: *seq }), "no pong {seq}");
                }
            }
        }
    }

    fn drain<T: DeserializeOwned>(mut buf: &[u8]) -> Vec<T> {
        let mut v = Vec::new();
        while let Ok(Decoded::Message(m, n)) = decode::<T>(buf) {
            v.push(m);
            buf = &buf[n..];
        }
        assert!(buf.is_empty());
        v
    }

    #[test]
    fn vakt_sends_whole_seconds_and_reads_any_fraction() {
        let t: Timestamp = "2026-11-03T17:42:13.987654321Z".parse().unwrap();
        let json = |m: &ToPatrol| String::from_utf8(encoded(m)[HEADER_BYTES..].to_vec()).unwrap();
        let w = json(&ToPatrol::SlaWarning {
            seq: 1,
            dispatch: 2,
            minutes_left: 10,
            deadline: t,
        });
        assert!(w.contains(r#""deadline":"2026-11-03T17:42:13Z""#), "{w}");
        let w = json(&ToPatrol::Welcome {
            seq: 1,
            server_time: t,
            ping_secs: 15,
            idle_timeout_secs: 60,
            open: vec![],
        });
        assert!(w.contains(r#""server_time":"2026-11-03T17:42:13Z""#), "{w}");
        // Input: fractions and offsets are read as they are.
        let m = r#"{"type":"received","seq":3,"dispatch":41,"at":"2026-11-03T18:42:13.5+01:00"}"#;
        match decode::<FromPatrol>(&frame(m)) {
            Ok(Decoded::Message(FromPatrol::Received { at, .. }, _)) => {
                assert_eq!(at, "2026-11-03T17:42:13.5Z".parse::<Timestamp>().unwrap());
            }
            other => panic!("{other:?}"),
        }
        let m =
            r#"{"type":"received","seq":3,"dispatch":41,"at":"2026-11-03T17:42:13.123456789Z"}"#;
        assert!(matches!(
            decode::<FromPatrol>(&frame(m)),
            Ok(Decoded::Message(FromPatrol::Received { at, .. }, _)) if at.subsec_nanosecond() == 123_456_789
        ));
    }

    #[test]
    fn cancel_causes_and_the_receipt_deadline_are_read_from_older_and_newer_servers() {
        let read = |json: &str| match decode::<ToPatrol>(&frame(json)) {
            Ok(Decoded::Message(m, _)) => m,
            other => panic!("{other:?}"),
        };
        for (cause, want) in [
            (r#","cause":"withdrawn""#, CancelCause::Withdrawn),
            (r#","cause":"receipt_timeout""#, CancelCause::ReceiptTimeout),
            (r#","cause":"moved_to_mars""#, CancelCause::Unknown),
            ("", CancelCause::Unknown),
        ] {
            let m = read(&format!(
                r#"{{"type":"cancelled","seq":1,"dispatch":2{cause},"reason":"x"}}"#
            ));
            assert!(
                matches!(m, ToPatrol::Cancelled { cause, .. } if cause == want),
                "{m:?}"
            );
        }
        assert_eq!(CancelCause::ReceiptTimeout.as_str(), "receipt_timeout");
        // An assignment without `receipt_deadline` (an older server): null.
        let json = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/patrol/to_patrol/assignment.json"),
        )
        .unwrap();
        let mut v: Value = serde_json::from_str(&json).unwrap();
        assert!(v["receipt_deadline"].is_string(), "the example has it");
        v.as_object_mut().unwrap().remove("receipt_deadline");
        match read(&v.to_string()) {
            ToPatrol::Assignment(a) => assert_eq!(a.receipt_deadline, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_byte_example_of_the_doc() {
        let out = encoded(&FromPatrol::Ping { seq: 7 });
        assert_eq!(&out[..HEADER_BYTES], &[0, 0, 0, 23]);
        assert_eq!(&out[HEADER_BYTES..], br#"{"type":"ping","seq":7}"#);
        let hex: Vec<String> = out.iter().map(|b| format!("{b:02x}")).collect();
        assert!(DOC.contains(&hex.join(" ")), "doc shows {}", hex.join(" "));
    }

    #[test]
    fn limits_at_the_boundary() {
        // Exactly the limit waits for the body; one more is refused from the header alone.
        let max = u32::try_from(MAX_MESSAGE_BYTES).expect("fits");
        assert_eq!(
            decode::<FromPatrol>(&max.to_be_bytes()),
            Ok(Decoded::Incomplete)
        );
        assert_eq!(
            decode::<FromPatrol>(&(max + 1).to_be_bytes()),
            Err(PatrolCodecError::TooBig {
                len: MAX_MESSAGE_BYTES + 1
            })
        );
        assert_eq!(
            decode::<FromPatrol>(&[0xff; 4]),
            Err(PatrolCodecError::TooBig {
                len: usize::try_from(u32::MAX).expect("fits")
            })
        );
        // A body of exactly the limit decodes (padding with spaces is valid JSON).
        let mut json = r#"{"type":"ping","seq":1}"#.to_owned();
        json.push_str(&" ".repeat(MAX_MESSAGE_BYTES - json.len()));
        let buf = frame(&json);
        assert_eq!(
            decode::<FromPatrol>(&buf),
            Ok(Decoded::Message(
                FromPatrol::Ping { seq: 1 },
                MAX_MESSAGE_BYTES + 4
            ))
        );
        // Encoding refuses a message over the limit and leaves the buffer as it was.
        let big = ToPatrol::Cancelled {
            seq: 1,
            dispatch: 1,
            cause: CancelCause::Withdrawn,
            reason: "x".repeat(MAX_MESSAGE_BYTES),
        };
        let mut out = b"keep".to_vec();
        let err = encode(&big, &mut out);
        assert!(matches!(err, Err(PatrolCodecError::TooBig { len }) if len > MAX_MESSAGE_BYTES));
        assert_eq!(out, b"keep");
        assert_eq!(err.map_err(|e| e.code()), Err(ErrorCode::TooBig));
    }

    #[test]
    fn bad_bodies_keep_the_framing_and_the_seq() {
        let bad = |json: &[u8]| {
            let mut v = u32::try_from(json.len())
                .expect("small")
                .to_be_bytes()
                .to_vec();
            v.extend_from_slice(json);
            decode::<FromPatrol>(&v)
        };
        // Unknown type: refused, with its seq, so the receiver can answer it.
        let e = bad(br#"{"type":"teleport","seq":12,"to":"moon"}"#).expect_err("unknown type");
        assert_eq!(e.seq(), Some(12));
        assert_eq!(e.consumed(), Some(44));
        assert_eq!(e.code(), ErrorCode::BadMessage);
        assert_eq!(e.as_str(), "bad_json");
        // A missing field.
        let e = bad(br#"{"type":"received","seq":3}"#).expect_err("no dispatch");
        assert_eq!(e.seq(), Some(3));
        assert!(e.to_string().contains("missing field `dispatch`"), "{e}");
        // Not JSON, empty, not an object, not UTF-8.
        for body in [&b"{"[..], b"", b"[]", b"null", b"17"] {
            let e = bad(body).expect_err("bad");
            assert_eq!(e.seq(), None);
            assert_eq!(e.consumed(), Some(4 + body.len()));
        }
        assert_eq!(
            bad(b"{\"type\":\"ping\",\"seq\":1,\"x\":\"\xff\"}"),
            Err(PatrolCodecError::NotUtf8 { consumed: 35 })
        );
        // Deep nesting is refused (serde_json's depth limit), not a stack overflow.
        let deep = format!(
            r#"{{"type":"ping","seq":4,"x":{}{}}}"#,
            "[".repeat(30_000),
            "]".repeat(30_000)
        );
        let e = bad(deep.as_bytes()).expect_err("too deep");
        assert_eq!(e.consumed(), Some(4 + deep.len()));
        // Unknown fields are ignored (forward compatibility).
        assert_eq!(
            bad(br#"{"type":"ping","seq":5,"battery":71,"extra":{"a":[1,2]}}"#),
            Ok(Decoded::Message(FromPatrol::Ping { seq: 5 }, 60))
        );
        // An unknown error code from a newer server is kept as `unknown`.
        let buf = frame(
            r#"{"type":"error","seq":null,"code":"rate_limited","message":"","fatal":false}"#,
        );
        assert!(matches!(
            decode::<ToPatrol>(&buf),
            Ok(Decoded::Message(
                ToPatrol::Error {
                    code: ErrorCode::Unknown,
                    ..
                },
                _
            ))
        ));
    }

    #[test]
    fn instruction_and_health_notes_travel_and_an_older_assignment_without_them_still_reads() {
        let read = |json: &str| match decode::<ToPatrol>(&frame(json)) {
            Ok(Decoded::Message(ToPatrol::Assignment(a), _)) => a,
            other => panic!("{other:?}"),
        };
        let json = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/patrol/to_patrol/assignment.json"),
        )
        .unwrap();
        let full: Value = serde_json::from_str(&json).unwrap();
        // The example carries all three, and they come back as they were sent.
        let a = read(&full.to_string());
        assert!(!a.instruction.is_empty(), "the example has an instruction");
        assert!(!a.health_notes.is_empty() && !a.health_notes_withheld);
        let mut again = Vec::new();
        encode(&ToPatrol::Assignment(a.clone()), &mut again).unwrap();
        assert_eq!(
            read(std::str::from_utf8(&again[HEADER_BYTES..]).unwrap()),
            a
        );
        // An older server's assignment has none of them: no instruction, no notes, nothing
        // said to be withheld.
        let mut old = full.clone();
        for k in ["instruction", "health_notes", "health_notes_withheld"] {
            assert!(old.as_object_mut().unwrap().remove(k).is_some(), "{k}");
        }
        let a_old = read(&old.to_string());
        assert_eq!(a_old.instruction, "");
        assert!(a_old.health_notes.is_empty() && !a_old.health_notes_withheld);
        assert_eq!(a_old.subscriber, a.subscriber);
        // Withheld: the member says so and the notes are empty.
        let mut withheld = full.clone();
        withheld["health_notes"] = Value::from("");
        withheld["health_notes_withheld"] = Value::from(true);
        let w = read(&withheld.to_string());
        assert!(w.health_notes.is_empty() && w.health_notes_withheld);
        // An older client reads a newer assignment: members it does not know are ignored
        // (here: a client that knows only the fields of the first version of the message).
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct FirstVersion {
            dispatch: u64,
            call: u64,
            reason: String,
            access: AccessInfo,
        }
        let first: FirstVersion = serde_json::from_value(full).unwrap();
        assert_eq!((first.dispatch, first.call), (a.dispatch, a.call));
        // The notes are personal data: not in Debug output.
        let notes = a.health_notes.expose().to_owned();
        assert!(!format!("{a:?}").contains(&notes));
    }

    #[test]
    fn health_notes_go_to_the_patrol_only_with_consent() {
        let mut s = Subscriber {
            health_notes: "Diabetes; pacemaker".into(),
            ..Subscriber::default()
        };
        let (notes, withheld) = health_for_patrol(&s);
        assert!(notes.is_empty() && withheld, "no consent: withheld");
        s.health_to_patrol = true;
        let (notes, withheld) = health_for_patrol(&s);
        assert_eq!((notes.expose(), withheld), ("Diabetes; pacemaker", false));
        // No notes and no consent: still withheld (the patrol learns nothing of whether
        // there are notes); no notes with consent: nothing, nothing withheld.
        s.health_notes.clear();
        assert_eq!(health_for_patrol(&s), (Secret::default(), false));
        s.health_to_patrol = false;
        assert_eq!(health_for_patrol(&s), (Secret::default(), true));
    }

    #[test]
    fn secrets_never_reach_debug_or_error_text() {
        let hello = FromPatrol::Hello {
            seq: 1,
            patrol: "norr-kvall-1".into(),
            token: Secret::new("tok-SECRET-4711"),
            client: ClientInfo::default(),
        };
        let d = format!("{hello:?} {hello:#?}");
        assert!(!d.contains("SECRET") && d.contains("<redacted>"), "{d}");
        let access = AccessInfo::from(&Access {
            door_code: "98765".into(),
            ..Access::default()
        });
        assert_eq!(access.door_code.expose(), "98765");
        assert!(!format!("{access:?}").contains("98765"));
        assert_eq!(format!("{:?}", Secret::default()), "Secret(<empty>)");
        let arrived = FromPatrol::Arrived {
            seq: 2,
            dispatch: 3,
            at: Timestamp::UNIX_EPOCH,
            method: ArrivalMethod::ReceiptCode,
            code: Some("55501".into()),
        };
        assert!(!format!("{arrived:?}").contains("55501"));
        // A token sent as a number, or a door code in the wrong place: the error text does
        // not quote it.
        for json in [
            r#"{"type":"hello","seq":1,"patrol":"p","token":4711999,"client":{"name":"a","version":"1"}}"#,
            r#"{"type":"arrived","seq":1,"dispatch":2,"at":"2026-01-01T00:00:00Z","method":"app","code":4711999}"#,
            r#"{"type":"received","seq":1,"dispatch":"4711999","at":"2026-01-01T00:00:00Z"}"#,
            r#"{"type":"received","seq":1,"dispatch":2,"at":"4711999"}"#,
        ] {
            let e = decode::<FromPatrol>(&frame(json)).expect_err("bad");
            assert!(!e.to_string().contains("4711999"), "{e}");
            assert!(!format!("{e:?}").contains("4711999"), "{e:?}");
        }
    }

    #[test]
    fn accessors() {
        let to = ToPatrol::Error {
            seq: None,
            code: ErrorCode::TooBig,
            message: String::new(),
            fatal: true,
        };
        assert_eq!(
            (to.seq(), to.kind(), to.needs_ack()),
            (None, "error", false)
        );
        let c = ToPatrol::Cancelled {
            seq: 9,
            dispatch: 4,
            cause: CancelCause::ReceiptTimeout,
            reason: String::new(),
        };
        assert_eq!(
            (c.seq(), c.dispatch(), c.needs_ack()),
            (Some(9), Some(4), true)
        );
        let p = FromPatrol::Ping { seq: 3 };
        assert_eq!(
            (p.seq(), p.kind(), p.needs_ack(), p.dispatch()),
            (3, "ping", false, None)
        );
        for code in [
            ErrorCode::BadToken,
            ErrorCode::UnknownPatrol,
            ErrorCode::BadMessage,
            ErrorCode::TooBig,
            ErrorCode::NotYours,
            ErrorCode::Closed,
            ErrorCode::Replaced,
        ] {
            assert_eq!(
                serde_json::to_value(code).ok(),
                Some(Value::String(code.as_str().into()))
            );
        }
        assert_eq!(ALPN, b"vakt-patrol/1");
    }

    // ---- property tests ----

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            Just(String::new()),
            Just("Åsa Öberg, Storgatan 1 \"B\" \\ \u{1F6AA}".to_string()),
        ]
    }

    fn ts() -> impl Strategy<Value = Timestamp> + Clone {
        (0i64..4_102_444_800)
            .prop_map(|s| Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    fn state() -> impl Strategy<Value = DispatchState> {
        prop_oneof![
            Just(DispatchState::Offered),
            Just(DispatchState::Received),
            Just(DispatchState::Accepted),
            Just(DispatchState::Arrived),
        ]
    }

    fn assignment() -> impl Strategy<Value = AssignmentMsg> {
        (
            (any::<u64>(), any::<u64>(), any::<u64>(), state()),
            (text(), text(), text(), text(), text()),
            (any::<u32>(), text(), text(), text(), text()),
            (
                text(),
                0u8..=4,
                any::<u32>(),
                ts(),
                proptest::option::of(ts()),
            ),
            (text(), text(), any::<bool>(), text()),
        )
            .prop_map(
                |(
                    (seq, dispatch, call, state),
                    (name, address, postcode, city, phone),
                    (keys, key_location, digital_lock_id, door_code, entry_notes),
                    (reason, priority, limit_mins, offered_at, received_at),
                    (instruction, health_notes, health_notes_withheld, provider_keys),
                )| AssignmentMsg {
                    seq,
                    dispatch,
                    call,
                    state,
                    subscriber: SubscriberInfo {
                        name,
                        address,
                        postcode,
                        city,
                        phone,
                    },
                    access: AccessInfo {
                        keys,
                        key_location,
                        digital_lock_id,
                        door_code: Secret::new(door_code),
                        entry_notes,
                    },
                    reason,
                    priority: Priority(priority),
                    limit_mins,
                    offered_at,
                    receipt_deadline: received_at.is_none().then_some(offered_at),
                    received_at,
                    deadline: received_at,
                    instruction,
                    health_notes: Secret::new(health_notes),
                    health_notes_withheld,
                    provider_keys,
                },
            )
    }

    fn cause() -> impl Strategy<Value = CancelCause> {
        prop_oneof![
            Just(CancelCause::Withdrawn),
            Just(CancelCause::ReceiptTimeout),
        ]
    }

    fn error_code() -> impl Strategy<Value = ErrorCode> {
        prop_oneof![
            Just(ErrorCode::BadToken),
            Just(ErrorCode::UnknownPatrol),
            Just(ErrorCode::BadMessage),
            Just(ErrorCode::TooBig),
            Just(ErrorCode::NotYours),
            Just(ErrorCode::Closed),
            Just(ErrorCode::Replaced),
        ]
    }

    fn to_patrol() -> impl Strategy<Value = ToPatrol> {
        prop_oneof![
            (
                any::<u64>(),
                ts(),
                any::<u32>(),
                any::<u32>(),
                vec(any::<u64>(), 0..20)
            )
                .prop_map(|(seq, server_time, ping_secs, idle_timeout_secs, open)| {
                    ToPatrol::Welcome {
                        seq,
                        server_time,
                        ping_secs,
                        idle_timeout_secs,
                        open,
                    }
                }),
            assignment().prop_map(|a| ToPatrol::Assignment(Box::new(a))),
            (any::<u64>(), any::<u64>(), any::<u32>(), ts()).prop_map(
                |(seq, dispatch, minutes_left, deadline)| ToPatrol::SlaWarning {
                    seq,
                    dispatch,
                    minutes_left,
                    deadline
                }
            ),
            (any::<u64>(), any::<u64>(), cause(), text()).prop_map(
                |(seq, dispatch, cause, reason)| ToPatrol::Cancelled {
                    seq,
                    dispatch,
                    cause,
                    reason,
                }
            ),
            any::<u64>().prop_map(|seq| ToPatrol::Ack { seq }),
            (
                proptest::option::of(any::<u64>()),
                error_code(),
                text(),
                any::<bool>()
            )
                .prop_map(|(seq, code, message, fatal)| ToPatrol::Error {
                    seq,
                    code,
                    message,
                    fatal
                }),
            any::<u64>().prop_map(|seq| ToPatrol::Pong { seq }),
        ]
    }

    fn method() -> impl Strategy<Value = ArrivalMethod> {
        prop_oneof![
            Just(ArrivalMethod::App),
            Just(ArrivalMethod::Lock),
            Just(ArrivalMethod::ReceiptCode),
        ]
    }

    fn outcome() -> impl Strategy<Value = VisitOutcome> {
        prop_oneof![
            Just(VisitOutcome::Helped),
            Just(VisitOutcome::NoAction),
            Just(VisitOutcome::AmbulanceCalled),
            Just(VisitOutcome::NotHome),
            Just(VisitOutcome::NoAccess),
            Just(VisitOutcome::Other),
        ]
    }

    fn from_patrol() -> impl Strategy<Value = FromPatrol> {
        let ev = (any::<u64>(), any::<u64>(), ts());
        prop_oneof![
            (any::<u64>(), text(), text(), text(), text()).prop_map(
                |(seq, patrol, token, name, version)| FromPatrol::Hello {
                    seq,
                    patrol,
                    token: Secret::new(token),
                    client: ClientInfo { name, version },
                }
            ),
            ev.clone()
                .prop_map(|(seq, dispatch, at)| FromPatrol::Received { seq, dispatch, at }),
            ev.clone()
                .prop_map(|(seq, dispatch, at)| FromPatrol::Accepted { seq, dispatch, at }),
            (ev.clone(), text()).prop_map(|((seq, dispatch, at), reason)| {
                FromPatrol::Declined {
                    seq,
                    dispatch,
                    at,
                    reason,
                }
            }),
            (ev.clone(), method(), proptest::option::of(text())).prop_map(
                |((seq, dispatch, at), method, code)| FromPatrol::Arrived {
                    seq,
                    dispatch,
                    at,
                    method,
                    code: code.map(Secret::new),
                }
            ),
            (ev, outcome(), text()).prop_map(|((seq, dispatch, at), outcome, note)| {
                FromPatrol::Completed {
                    seq,
                    dispatch,
                    at,
                    outcome,
                    note,
                }
            }),
            any::<u64>().prop_map(|seq| FromPatrol::Ack { seq }),
            any::<u64>().prop_map(|seq| FromPatrol::Ping { seq }),
        ]
    }

    /// Decodes `buf` as both kinds of message and checks the invariants of the result.
    fn exercise(buf: &[u8]) -> Result<(), TestCaseError> {
        fn check<T: DeserializeOwned>(buf: &[u8]) -> Result<(), TestCaseError> {
            match decode::<T>(buf) {
                Ok(Decoded::Message(_, n)) => {
                    prop_assert!(n >= HEADER_BYTES && n <= buf.len());
                    prop_assert!(n - HEADER_BYTES <= MAX_MESSAGE_BYTES);
                }
                Ok(Decoded::Incomplete) => {
                    let short = match buf.first_chunk::<HEADER_BYTES>() {
                        None => true,
                        Some(h) => usize::try_from(u32::from_be_bytes(*h))
                            .is_ok_and(|l| buf.len() < HEADER_BYTES + l),
                    };
                    prop_assert!(short);
                }
                Err(e) => {
                    if let Some(n) = e.consumed() {
                        prop_assert!(n >= HEADER_BYTES && n <= buf.len());
                    } else {
                        let too_big = matches!(e, PatrolCodecError::TooBig { len } if len > MAX_MESSAGE_BYTES);
                        prop_assert!(too_big);
                    }
                    prop_assert!(e.to_string().len() < 400);
                }
            }
            Ok(())
        }
        check::<ToPatrol>(buf)?;
        check::<FromPatrol>(buf)?;
        check::<Value>(buf)
    }

    /// Feeds `stream` to a receive buffer in pieces cut at `cuts`; returns the messages.
    fn feed<T: DeserializeOwned>(stream: &[u8], cuts: &[usize]) -> Vec<T> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut buf = Vec::new();
        let mut at = 0;
        let mut got = Vec::new();
        for c in cuts {
            buf.extend_from_slice(&stream[at..c]);
            at = c;
            while let Ok(Decoded::Message(m, n)) = decode::<T>(&buf) {
                got.push(m);
                buf.drain(..n);
            }
        }
        got
    }

    proptest! {
        // 512 cases by default; PROPTEST_CASES=n runs more (e.g. in a nightly job).
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
            ..ProptestConfig::default()
        })]

        #[test]
        fn random_bytes_never_panic(input in vec(any::<u8>(), 0..300)) {
            exercise(&input)?;
        }

        #[test]
        fn random_bodies_with_a_good_length_never_panic(
            body in vec(prop_oneof![
                Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b':'),
                Just(b','), Just(b'\\'), Just(b'1'), Just(b'-'), Just(b'e'), Just(b' '),
                any::<u8>(),
            ], 0..200),
            tail in vec(any::<u8>(), 0..8),
        ) {
            let mut buf = u32::try_from(body.len()).unwrap_or(0).to_be_bytes().to_vec();
            buf.extend_from_slice(&body);
            buf.extend_from_slice(&tail);
            exercise(&buf)?;
        }

        #[test]
        fn mutated_messages_never_panic(
            m in from_patrol(),
            t in to_patrol(),
            flips in vec((any::<usize>(), any::<u8>()), 1..6),
        ) {
            for mut buf in [encoded(&m), encoded(&t)] {
                for (i, b) in &flips {
                    // Leave the length alone half of the time so the JSON is reached.
                    let lo = if b & 1 == 0 { HEADER_BYTES.min(buf.len() - 1) } else { 0 };
                    let i = lo + i % (buf.len() - lo);
                    buf[i] ^= b | 1;
                }
                exercise(&buf)?;
            }
        }

        #[test]
        fn any_message_round_trips_and_every_prefix_is_incomplete(
            t in to_patrol(),
            f in from_patrol(),
        ) {
            let down = encoded(&t);
            for cut in 0..down.len() {
                prop_assert_eq!(decode::<ToPatrol>(&down[..cut]), Ok(Decoded::Incomplete));
            }
            prop_assert_eq!(decode::<ToPatrol>(&down), Ok(Decoded::Message(t, down.len())));
            let up = encoded(&f);
            for cut in 0..up.len() {
                prop_assert_eq!(decode::<FromPatrol>(&up[..cut]), Ok(Decoded::Incomplete));
            }
            prop_assert_eq!(decode::<FromPatrol>(&up), Ok(Decoded::Message(f, up.len())));
        }

        #[test]
        fn concatenated_messages_decode_one_after_another(
            msgs in vec(to_patrol(), 1..8),
            cuts in vec(any::<usize>(), 0..6),
        ) {
            let mut stream = Vec::new();
            for m in &msgs {
                encode(m, &mut stream).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            // All at once, message by message.
            let mut buf = &stream[..];
            for m in &msgs {
                match decode::<ToPatrol>(buf) {
                    Ok(Decoded::Message(got, n)) => {
                        prop_assert_eq!(&got, m);
                        buf = &buf[n..];
                    }
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(decode::<ToPatrol>(buf), Ok(Decoded::Incomplete));
            // In arbitrary pieces, as from a stream.
            prop_assert_eq!(feed::<ToPatrol>(&stream, &cuts), msgs);
        }

        #[test]
        fn concatenated_patrol_messages_in_pieces(
            msgs in vec(from_patrol(), 1..8),
            cuts in vec(any::<usize>(), 0..6),
        ) {
            let mut stream = Vec::new();
            for m in &msgs {
                encode(m, &mut stream).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            prop_assert_eq!(feed::<FromPatrol>(&stream, &cuts), msgs);
        }

        #[test]
        fn oversized_length_is_refused_without_the_body(
            len in (MAX_MESSAGE_BYTES as u64 + 1)..=u64::from(u32::MAX),
            body in vec(any::<u8>(), 0..64),
        ) {
            let len32 = u32::try_from(len).unwrap_or(u32::MAX);
            let mut buf = len32.to_be_bytes().to_vec();
            buf.extend_from_slice(&body);
            let want = Some(PatrolCodecError::TooBig { len: usize::try_from(len32).unwrap_or(usize::MAX) });
            prop_assert_eq!(decode::<FromPatrol>(&buf).err(), want.clone());
            prop_assert_eq!(decode::<ToPatrol>(&buf[..HEADER_BYTES]).err(), want);
        }
    }
}
