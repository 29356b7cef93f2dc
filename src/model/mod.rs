//! The vocabulary: the normalised [`Signal`] every protocol is decoded into, and the
//! [`Device`] of the registry.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use vakt_proto::crypto::Key;
use vakt_proto::event::Qualifier;

pub mod access_review;
pub mod calendar;
pub mod directory;
pub mod keys;
pub mod life;
pub mod order;
pub mod plan;
pub mod retention;
pub mod review;
pub mod staff;
pub mod testing;
pub mod work_order;

pub use directory::Directory;

pub use work_order::{FaultKind, WorkOrder, WorkOrderState};

/// How a frame reached vakt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// DC-09 over TCP.
    Tcp,
    /// DC-09 over UDP.
    Udp,
    /// Made by vakt itself (supervision: a device fell silent or reports again).
    Internal,
    /// SIP over TLS (SCAIP).
    Tls,
}

impl Transport {
    /// A stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Internal => "internal",
            Transport::Tls => "tls",
        }
    }
}

/// Why a Signal needs a human even before it is classified. A Signal with any flag set must
/// reach an operator: it is never discarded. Serialised as a list of names, e.g.
/// `["unknown_device"]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// The account (with its line and receiver) is not in the device registry.
    pub unknown_device: bool,
    /// Encrypted, and there is no key for the account or it does not decrypt.
    pub undecryptable: bool,
    /// The frame was valid but its payload (ADM-CID / SIA-DCS data) could not be decoded.
    pub bad_payload: bool,
    /// The length field matched only when read as decimal (a known device quirk).
    pub length_decimal: bool,
    /// It names a registered device but does not carry that device's authentication (a
    /// plain DC-09 frame for a device with a key; a DC-09 frame naming a SCAIP device; a
    /// SCAIP request naming a `cid` registered to another SIP user or protocol). It is not
    /// the subscriber's verified alarm: no subscriber is attached and supervision does not
    /// move.
    pub unauthenticated: bool,
}

impl Serialize for Flags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut f = Flags::default();
        for n in Vec::<String>::deserialize(d)? {
            match n.as_str() {
                "unknown_device" => f.unknown_device = true,
                "undecryptable" => f.undecryptable = true,
                "bad_payload" => f.bad_payload = true,
                "length_decimal" => f.length_decimal = true,
                "unauthenticated" => f.unauthenticated = true,
                // A flag written by a newer version is not known here.
                _ => {}
            }
        }
        Ok(f)
    }
}

impl Flags {
    /// The set flags, as stable names (for logs and exports).
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.unknown_device {
            v.push("unknown_device");
        }
        if self.undecryptable {
            v.push("undecryptable");
        }
        if self.bad_payload {
            v.push("bad_payload");
        }
        if self.length_decimal {
            v.push("length_decimal");
        }
        if self.unauthenticated {
            v.push("unauthenticated");
        }
        v
    }
}

/// One decoded event of a Signal (a DC-09 frame may carry several SIA-DCS events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalEvent {
    /// `"CID 101"` or `"SIA MA"`.
    pub code: String,
    /// What the code means, where vakt knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New event, restore, or status report (`new`, `restore`, `status`).
    pub qualifier: Qualifier,
    /// Zone (device/sensor) number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<u32>,
    /// Group, partition or area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// User number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u32>,
    /// Free text of the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Event time as the device gave it in the payload (SIA `ti`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

impl SignalEvent {
    /// Converts a codec event.
    pub fn from_codec(e: &vakt_proto::event::Event) -> Self {
        SignalEvent {
            code: e.code.to_string(),
            name: vakt_proto::event::name(&e.code).map(str::to_owned),
            qualifier: e.qualifier,
            zone: e.zone,
            group: e.group,
            user: e.user,
            text: e.text.clone(),
            time: e.time.clone(),
        }
    }
}

/// One extended-data block (`[Xvalue]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XDataItem {
    /// The type letter, e.g. `M` (MAC), `H` (time of occurrence), `L` (location).
    pub letter: char,
    /// The value as text (bytes that are not UTF-8 are replaced).
    pub value: String,
}

/// What a SCAIP `<mrq>` said beyond its event code (SS 91100 table 1), kept with the Signal
/// for the operator and for export.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaipInfo {
    /// `mty`: `ME`, `RE` (reset) or `IN` (information update).
    pub mty: String,
    /// The SIP Digest user the device authenticated as.
    pub sip_user: String,
    /// `did`: the physical device that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    /// `dty`: device type (SS 91100 Annex A).
    pub dty: u16,
    /// `dco`: device component (Annex B).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dco: Option<u16>,
    /// `dte`: device text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dte: Option<String>,
    /// `stc`: status code (Annex C); none means alarm state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stc: Option<u16>,
    /// `stt`: status text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stt: Option<String>,
    /// `pri`: the device's priority, 0 (lowest) to 9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pri: Option<u8>,
    /// `lco`: location code (Annex D).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lco: Option<u16>,
    /// `lva`: location value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lva: Option<String>,
    /// `lte`: location text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<String>,
    /// `lge/geo`: "lat,lon" (WGS-84).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<String>,
    /// `lge/gga`: an NMEA GGA sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gga: Option<String>,
    /// `lge/tim`: the position's time as the device gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tim: Option<String>,
    /// `crd`: the device's voice paths (`sip:`, `gsm:+46...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crd: Vec<String>,
    /// `cha`: 1 when the device asks to be called back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cha: Option<u8>,
    /// `ico` / `ite`: info code and text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ico: Option<u16>,
    /// `ite`: info text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ite: Option<String>,
    /// `ver`: the device's SCAIP version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver: Option<String>,
}

impl ScaipInfo {
    /// The fields of a parsed `<mrq>` sent by SIP user `user`.
    pub fn from_mrq(m: &vakt_proto::scaip::Mrq, user: &str) -> ScaipInfo {
        ScaipInfo {
            mty: m.mty.as_str().to_owned(),
            sip_user: user.to_owned(),
            did: m.did.clone(),
            dty: m.dty,
            dco: m.dco,
            dte: m.dte.clone(),
            stc: m.stc,
            stt: m.stt.clone(),
            pri: m.pri,
            lco: m.location.code,
            lva: m.location.value.clone(),
            lte: m.location.text.clone(),
            geo: m.location.geo.clone(),
            gga: m.location.gga.clone(),
            tim: m.location.tim.clone(),
            crd: m.crd.clone(),
            cha: m.cha,
            ico: m.ico,
            ite: m.ite.clone(),
            ver: m.version.clone(),
        }
    }
}

fn unassigned(id: &u64) -> bool {
    *id == 0
}

/// One normalised record of something a device sent: what the journal stores and triage reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Monotonic journal id, from 1 (assigned at commit; 0 until then). Not written inside
    /// the stored record, whose place in the journal gives it.
    #[serde(default, skip_serializing_if = "unassigned")]
    pub id: u64,
    /// When vakt received the frame (UTC).
    pub received_at: jiff::Timestamp,
    /// TCP or UDP.
    pub transport: Transport,
    /// The device's address as seen by vakt.
    pub peer: SocketAddr,
    /// Protocol ID token, e.g. `ADM-CID`, `SIA-DCS` (without the `*`).
    pub protocol: String,
    /// The frame was encrypted.
    pub encrypted: bool,
    /// Account from the frame header.
    pub account: String,
    /// Account prefix (`L`), if sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// Receiver number (`R`), if sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// Sequence number as sent (4 decimal digits).
    pub seq: String,
    /// Why the Signal needs attention regardless of its content.
    pub flags: Flags,
    /// The subscriber the device belongs to, from the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
    /// The device's type from the registry (`pendant`, `smoke_detector`, ...), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// When the device sent it (the frame's `_timestamp`), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmitted_at: Option<jiff::Timestamp>,
    /// When the event happened (xdata `H`), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<jiff::Timestamp>,
    /// The decoded events.
    #[serde(default)]
    pub events: Vec<SignalEvent>,
    /// Extended data blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xdata: Vec<XDataItem>,
    /// The frame as received (LF..CR), byte for byte; for SCAIP, the `<mrq>` body.
    #[serde(with = "raw_bytes")]
    pub raw: Vec<u8>,
    /// What a SCAIP request said beyond its event (location, device text, voice paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaip: Option<Box<ScaipInfo>>,
}

/// Raw frames are stored as text where they are text (always, for conforming devices) and
/// as `{"hex": ...}` otherwise, so nothing is lost.
mod raw_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Hex { hex: String },
    }

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(v) {
            Ok(t) => Raw::Text(t.to_owned()).serialize(s),
            Err(_) => Raw::Hex {
                hex: hex::encode(v),
            }
            .serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Text(t) => Ok(t.into_bytes()),
            Raw::Hex { hex } => hex::decode(hex).map_err(serde::de::Error::custom),
        }
    }
}

/// How a key was given at provisioning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyFormat {
    /// 32, 48 or 64 hex digits.
    Hex,
    /// 16, 24 or 32 characters used as bytes.
    Ascii,
}

/// A device (an alarm transmitter) in the registry.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// DC-09 account (hex digits, upper case).
    pub account: String,
    /// Account prefix (`L`); `None` matches any.
    pub line: Option<String>,
    /// Receiver number (`R`); `None` matches any.
    pub receiver: Option<String>,
    /// AES key bytes, if the device encrypts.
    #[serde(with = "key_bytes")]
    pub key: Option<Key>,
    /// How the key was given.
    pub key_format: Option<KeyFormat>,
    /// The subscriber (person) the device belongs to.
    pub subscriber: Option<String>,
    /// Supervision interval in seconds, if set.
    pub supervision_secs: Option<u32>,
    /// The device's telecom operator.
    pub telecom_operator: Option<String>,
    /// The device's area.
    pub area: Option<String>,
    /// What kind of device it is (`pendant`, `smoke_detector`, ...; see
    /// `registry::DEVICE_TYPES`), used by triage where an event code is generic.
    #[serde(default)]
    pub device_type: Option<String>,
    /// SCAIP devices: the SIP Digest user name the device authenticates with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_user: Option<String>,
    /// SCAIP devices: the SIP Digest password (kept so that Digest can be verified; never
    /// logged or shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_password: Option<SipPassword>,
    /// The unit's own phone number (its SIM or line), as entered or as vakt learned it from
    /// the unit (`registers::numbers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A device's SIP Digest password. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SipPassword(String);

impl SipPassword {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> SipPassword {
        SipPassword(password.into())
    }

    /// The password, for computing Digest hashes only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SipPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SipPassword(..)")
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is deliberately left out: secrets never reach logs.
        f.debug_struct("Device")
            .field("account", &self.account)
            .field("line", &self.line)
            .field("receiver", &self.receiver)
            .field("key", &self.key.as_ref().map(|k| k.bits()))
            .field("subscriber", &self.subscriber)
            .field("supervision_secs", &self.supervision_secs)
            .field("telecom_operator", &self.telecom_operator)
            .field("area", &self.area)
            .field("device_type", &self.device_type)
            .field("sip_user", &self.sip_user)
            .field("sip_password", &self.sip_password.as_ref().map(|_| "set"))
            .field("phone", &self.phone)
            .finish()
    }
}

mod key_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    use vakt_proto::crypto::Key;

    pub fn serialize<S: Serializer>(k: &Option<Key>, s: S) -> Result<S::Ok, S::Error> {
        match k {
            Some(k) => s.serialize_some(&hex::encode(k.as_bytes())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Key>, D::Error> {
        let Some(h) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let bytes = hex::decode(h).map_err(serde::de::Error::custom)?;
        Key::from_bytes(&bytes)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// Normalises an account, line or receiver given as hex digits: upper case, trimmed.
pub fn norm_hex(s: &str) -> String {
    s.trim().to_ascii_uppercase()
}

// ---- calls, subscribers, users ----

/// Priority level of a Call: 0 is the most urgent (life-safety), 4 is handled by rule.
/// Levels and what falls in them are in `triage::priority` (one table).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Priority(pub u8);

impl Priority {
    /// Fire, smoke, gas, duress, panic, assault.
    pub const LIFE_SAFETY: Priority = Priority(0);
    /// Pendant press, medical, fall.
    pub const PERSONAL: Priority = Priority(1);
    /// No activity, wandering, bed or door sensors.
    pub const CARE: Priority = Priority(2);
    /// Communication lost, mains loss, battery low; also unknown or undecryptable devices.
    pub const TECHNICAL: Priority = Priority(3);
    /// Periodic tests, link tests, restores of technical faults: no Call.
    pub const RULE: Priority = Priority(4);
    /// Number of levels.
    pub const LEVELS: usize = 5;

    /// One level more urgent (0 stays 0).
    pub fn raised(self) -> Priority {
        Priority(self.0.saturating_sub(1))
    }

    /// A stable label for metrics (`"0"`..`"4"`).
    pub fn label(self) -> &'static str {
        ["0", "1", "2", "3", "4"][usize::from(self.0.min(4))]
    }
}

/// Where a Call is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    /// Waiting in the queue for an operator.
    Queued,
    /// Owned by one operator.
    Claimed,
    /// Closed with an outcome.
    Closed,
}

/// How a Call was closed. Each has a stable wire name ([`Outcome::as_str`]); what each
/// allows is the closing rule's (`triage::closing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Spoke with the person: help is not needed (stored Calls' `handled_by_phone` reads as
    /// this).
    #[serde(alias = "handled_by_phone")]
    HelpNotNeeded,
    /// A relative (or another contact) goes to the person.
    RelativeGoes,
    /// A home-care patrol was sent (a dispatch of the Call).
    PatrolNeeded,
    /// The operator called 112 for an ambulance.
    AmbulanceCalled,
    /// The operator called 112 for the fire brigade.
    FireBrigadeCalled,
    /// The alarm was pressed by mistake.
    AccidentalPress,
    /// A technical matter (a fault, a work order for the installer).
    Technical,
    /// "No action needed": no longer offered; kept so that Calls closed with it still read.
    NoAction,
}

impl Outcome {
    /// The outcomes an operator may choose, in the order the console offers them.
    pub const OFFERED: [Outcome; 7] = [
        Outcome::HelpNotNeeded,
        Outcome::RelativeGoes,
        Outcome::PatrolNeeded,
        Outcome::AmbulanceCalled,
        Outcome::FireBrigadeCalled,
        Outcome::AccidentalPress,
        Outcome::Technical,
    ];

    /// The stable name (`help_not_needed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::HelpNotNeeded => "help_not_needed",
            Outcome::RelativeGoes => "relative_goes",
            Outcome::PatrolNeeded => "patrol_needed",
            Outcome::AmbulanceCalled => "ambulance_called",
            Outcome::FireBrigadeCalled => "fire_brigade_called",
            Outcome::AccidentalPress => "accidental_press",
            Outcome::Technical => "technical",
            Outcome::NoAction => "no_action",
        }
    }

    /// An emergency service (112) was called: ambulance or fire brigade.
    pub fn emergency_service(self) -> bool {
        matches!(self, Outcome::AmbulanceCalled | Outcome::FireBrigadeCalled)
    }

    /// Someone trained is sent: a patrol or an emergency service. Every other outcome needs a
    /// written reason.
    pub fn sends_help(self) -> bool {
        self == Outcome::PatrolNeeded || self.emergency_service()
    }

    /// An operator may choose it (every outcome but the old `no_action`).
    pub fn offered(self) -> bool {
        self != Outcome::NoAction
    }
}

/// Whom an operator phoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhoneParty {
    /// The person who alarmed.
    Person,
    /// A relative or other contact.
    Relative,
    /// Emergency services (112).
    Emergency,
}

impl PhoneParty {
    /// The stable name (`person`, `relative`, `emergency`).
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneParty::Person => "person",
            PhoneParty::Relative => "relative",
            PhoneParty::Emergency => "emergency",
        }
    }
}

/// One line of a Call's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    /// When it happened (for a Signal: when vakt received it).
    pub at: jiff::Timestamp,
    /// The operator, for actions; absent for Signals and automatic changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub what: TimelineEvent,
}

/// What a timeline line records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimelineEvent {
    /// A Signal that opened or merged into the Call.
    Signal {
        /// Journal id of the Signal.
        signal_id: u64,
        /// Device account.
        account: String,
        /// `CID 101`, `SIA FA`, or a flag such as `unknown_device`.
        code: String,
        /// What it means, in words.
        description: String,
        /// `new`, `restore` or `status`.
        qualifier: String,
        /// Zone, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zone: Option<u32>,
    },
    /// The Call moved to a more urgent level.
    Escalated {
        /// Level before.
        from: Priority,
        /// Level after.
        to: Priority,
        /// Why (`repeated_presses`, `more_urgent_signal`).
        reason: String,
    },
    /// A restore arrived: the condition that opened the Call is over (the Call stays open).
    Restored,
    /// An operator took the Call.
    Claimed,
    /// The owner put the Call back in the queue.
    Released,
    /// A note.
    Note {
        /// The text.
        text: String,
    },
    /// A phone call was made.
    PhoneCall {
        /// To whom.
        to: PhoneParty,
        /// Whether they answered: `false` when nobody did (absent: not said, as before the
        /// field existed; counts as answered).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answered: Option<bool>,
        /// What was said or agreed.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    /// A step of a dispatch to a home-care patrol (also after the Call was closed: the
    /// dispatch lives on until the patrol completes).
    Dispatch {
        /// The dispatch.
        dispatch: u64,
        /// The patrol id.
        patrol: String,
        /// The patrol's name.
        #[serde(default)]
        patrol_name: String,
        /// What happened.
        step: DispatchStep,
        /// Reason, method, outcome, minutes left, where it was passed.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// The Call was closed.
    Closed {
        /// With what outcome.
        outcome: Outcome,
        /// Closing note: the reason, for an outcome that sends no patrol and no emergency
        /// service.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
        /// A supervisor closed it against the closing rule: why (the rule's refusal is in
        /// `overrode`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        override_reason: Option<String>,
        /// What the closing rule would have refused, when overridden.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        overrode: String,
        /// Closed without a dispatch and without an emergency service: it goes on the
        /// supervisors' review list.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        review: bool,
    },
    /// A closed Call came back to the queue (at the head of its level): its dispatch ended
    /// without a visit and no patrol of the route was left to take it.
    Reopened {
        /// Why, in words: what happened to the dispatch and who was tried.
        reason: String,
    },
    /// A voice conversation (a call in or out) ended; the line is dated when it ended.
    Conversation(Conversation),
    /// The operator ticked a step of the response plan (done, or skipped with a reason).
    PlanStep {
        /// The plan version the Call is handled under (0: the centre's default plan).
        plan_version: u32,
        /// The kind of alarm the steps are for.
        kind: plan::PlanKind,
        /// The step's index in the plan's steps for that kind.
        step: u32,
        /// What the step asks.
        action: plan::StepAction,
        /// Done or skipped.
        result: plan::StepResult,
        /// Why it was skipped (or a note).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// The operator called a relative (one of the subscriber's contacts).
    RelativeCall {
        /// The plan version the Call is handled under (0: the centre's default plan).
        plan_version: u32,
        /// The contact's position in the subscriber's contacts.
        contact: u32,
        /// The contact's name.
        name: String,
        /// The contact's relation (daughter, neighbour).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        relation: String,
        /// Whether they answered.
        result: plan::RelativeResult,
        /// What was said or agreed.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    /// The Call went from one operator to another: handed over by its owner (at logout),
    /// taken over or reassigned by a supervisor (the line's `user` says who did it).
    HandedOver {
        /// The owner before.
        from: String,
        /// The owner after.
        to: String,
        /// What the next owner needs to know.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    /// vakt put the Call back in the queue (at the head of its level, keeping its age)
    /// because its owner can no longer act on it.
    Returned {
        /// The owner it was taken from.
        owner: String,
        /// Why.
        reason: ReturnReason,
    },
}

/// Why vakt put an owned Call back in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnReason {
    /// The owner's session ended (it expired, or a change of the user ended it) and they
    /// have no other.
    SessionEnded,
    /// An administrator disabled the owner.
    Disabled,
    /// An administrator removed the owner.
    Removed,
}

impl ReturnReason {
    /// The stable name (`session_ended`, `disabled`, `removed`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnReason::SessionEnded => "session_ended",
            ReturnReason::Disabled => "disabled",
            ReturnReason::Removed => "removed",
        }
    }
}

/// Which way a voice call went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    /// The unit, or someone through the trunk, called vakt.
    Inbound,
    /// An operator called out (the unit back, the person's phone, a relative).
    Outbound,
}

/// Who or what ended a voice conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationEnd {
    /// The far end hung up (BYE), or cancelled before an answer.
    Caller,
    /// The operator hung up.
    Operator,
    /// The far end did not answer in time, or was busy or refused (calls out).
    NoAnswer,
    /// A call out: the far end was busy (`486`, `600`).
    Busy,
    /// A call out: the far end declined it (`603`).
    Declined,
    /// Media stopped (no RTP for the inactivity limit) or the session timer ran out.
    Timeout,
    /// The call could not be set up or carried on (network, no codec, vakt's failure).
    Failure,
    /// vakt stopped during the call; the line was written at the next start.
    Restart,
}

impl ConversationEnd {
    /// The stable name (`caller`, `operator`, `no_answer`, `busy`, `declined`, `timeout`,
    /// `failure`, `restart`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationEnd::Caller => "caller",
            ConversationEnd::Operator => "operator",
            ConversationEnd::NoAnswer => "no_answer",
            ConversationEnd::Busy => "busy",
            ConversationEnd::Declined => "declined",
            ConversationEnd::Timeout => "timeout",
            ConversationEnd::Failure => "failure",
            ConversationEnd::Restart => "restart",
        }
    }
}

/// One voice conversation on a Call's timeline: who, how long it rang, how long they talked,
/// who ended it, and where its recording is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Conversation {
    /// The conversation's id, from 1.
    pub id: u64,
    /// In or out.
    pub direction: CallDirection,
    /// The far end in words (`unit 1234`, `+46701234567`, `Anna (daughter)`).
    pub party: String,
    /// Whether the far end is a relative (`Some(false)`: the unit or the person's own phone);
    /// absent on conversations stored before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_relative: Option<bool>,
    /// The operator who answered (inbound) or called (outbound), if anyone did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Seconds from the first ring to the answer, or to the end when nobody answered.
    pub ring_secs: u32,
    /// Seconds from the answer to the end; absent when nobody answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talk_secs: Option<u32>,
    /// Who or what ended it.
    pub ended_by: ConversationEnd,
    /// The recording's file name in the recordings directory, when the conversation was
    /// answered and recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
}

impl Conversation {
    /// Answered: an operator took it (inbound), or the far end picked up (outbound).
    pub fn answered(&self) -> bool {
        self.talk_secs.is_some()
    }

    /// An inbound call the caller gave up on before anyone answered.
    pub fn abandoned(&self) -> bool {
        self.direction == CallDirection::Inbound
            && self.ended_by == ConversationEnd::Caller
            && !self.answered()
    }
}

/// A voice conversation that has not ended yet, as the store keeps it so that one a restart
/// cut short is still ended on its Call's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenConversation {
    /// The conversation's id, from 1.
    pub id: u64,
    /// The Call it belongs to, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<u64>,
    /// In or out.
    pub direction: CallDirection,
    /// The far end in words.
    pub party: String,
    /// Whether the far end is a relative (see [`Conversation::to_relative`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_relative: Option<bool>,
    /// When it began ringing.
    pub rang_at: jiff::Timestamp,
    /// When it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<jiff::Timestamp>,
    /// The operator who answered or called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The recording's file name, once recording began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
}

impl OpenConversation {
    /// The timeline's account of it, ended by `by` at `now` (times before the ring or the
    /// answer count as 0).
    pub fn ended(&self, by: ConversationEnd, now: jiff::Timestamp) -> Conversation {
        let secs = |from: jiff::Timestamp, to: jiff::Timestamp| {
            u32::try_from(to.duration_since(from).as_secs().max(0)).unwrap_or(u32::MAX)
        };
        let ring_end = self.answered_at.unwrap_or(now);
        Conversation {
            id: self.id,
            direction: self.direction,
            party: self.party.clone(),
            to_relative: self.to_relative,
            operator: self.operator.clone(),
            ring_secs: secs(self.rang_at, ring_end.max(self.rang_at)),
            talk_secs: self.answered_at.map(|a| secs(a, now.max(a))),
            ended_by: by,
            recording: self.recording.clone(),
        }
    }
}

/// A Call: one subscriber's (or one unknown device's) alarm situation, in front of operators
/// until it is closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Call {
    /// Call id, from 1.
    pub id: u64,
    /// Current level (0 most urgent).
    pub priority: Priority,
    /// Where the Call is in its life.
    pub state: CallState,
    /// The operator who owns it (while claimed; the last owner once closed).
    pub owner: Option<String>,
    /// When the first Signal was received (the Call's age counts from here).
    pub opened_at: jiff::Timestamp,
    /// Number of alarm Signals in the Call (the first and every merged press).
    pub alarm_count: u32,
    /// The subscriber, if the device is registered to one.
    pub subscriber: Option<String>,
    /// The account of the device that opened the Call.
    pub account: String,
    /// What kind of alarm opened it, in words (e.g. "Fall", "Fire", "Unknown device").
    pub kind: String,
    /// A restore has arrived for the condition.
    pub restored: bool,
    /// When an operator first took the Call (answer time = this - `opened_at`).
    pub answered_at: Option<jiff::Timestamp>,
    /// When it was closed.
    pub closed_at: Option<jiff::Timestamp>,
    /// The closing outcome.
    pub outcome: Option<Outcome>,
    /// Every Signal and action, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// The highest journal id of a Signal taken into the Call (also past the timeline's cap
    /// on Signal lines): a Signal at or below it is already counted, so a replay of the
    /// journal after a crash does not count it twice.
    #[serde(default)]
    pub last_signal_id: u64,
}

/// Access to a subscriber's home, for a patrol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Access {
    /// Number of keys the care provider holds.
    pub keys: u32,
    /// Where the keys are kept (e.g. "Key cabinet, Hemtjänst Norr, hook 14").
    pub key_location: String,
    /// Digital lock id, if the door has one.
    pub digital_lock_id: String,
    /// Door or gate code.
    pub door_code: String,
    /// How to get in (stairs, dog, which door).
    pub entry_notes: String,
}

/// A relative or other contact to call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Contact {
    /// Name.
    pub name: String,
    /// Relation (e.g. "daughter", "neighbour").
    pub relation: String,
    /// Phone number.
    pub phone: String,
}

/// A person with a social alarm.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subscriber {
    /// Subscriber id (as devices refer to it, e.g. `S-1001`).
    pub id: String,
    /// Full name (UTF-8, e.g. "Åsa Öberg").
    pub name: String,
    /// Personal identity number (personnummer / fødselsnummer).
    pub personal_number: String,
    /// Street address.
    pub address: String,
    /// Postal code.
    pub postcode: String,
    /// City or locality.
    pub city: String,
    /// Area (district) for routing.
    pub area: String,
    /// Phone number of the person.
    pub phone: String,
    /// Care provider (the home-care organisation).
    pub care_provider: String,
    /// Access to the home.
    pub access: Access,
    /// Health information that matters in an alarm.
    pub health_notes: String,
    /// The person consented to their health notes going to the patrol in an assignment
    /// (without it the assignment says they were withheld). Missing: no consent.
    #[serde(default)]
    pub health_to_patrol: bool,
    /// Care plan notes.
    pub care_plan_notes: String,
    /// Contacts, in the order to call them.
    pub contacts: Vec<Contact>,
    /// Language to speak (e.g. "sv", "fi", "ar").
    pub language: String,
    /// Needs extra visits when the alarm cannot be trusted (a telecom outage): the care
    /// provider's list of an incident puts these people first.
    #[serde(default)]
    pub needs_extra_visits: bool,
    /// The municipality the person belongs to (the data controller, who pays): empty for the
    /// centre's own (`[care] municipality`). A municipality's staff see only theirs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub municipality: String,
}

/// The languages of the console: Swedish, Norwegian (bokmål), English. Each user reads the
/// console in one; `[http] language` is the default.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleLanguage {
    /// Swedish (`sv`).
    #[default]
    Sv,
    /// Norwegian bokmål (`nb`).
    Nb,
    /// English (`en`).
    En,
}

impl ConsoleLanguage {
    /// Every language the console has, in the order the console offers them.
    pub const ALL: [ConsoleLanguage; 3] = [
        ConsoleLanguage::Sv,
        ConsoleLanguage::Nb,
        ConsoleLanguage::En,
    ];

    /// The BCP 47 tag (`sv`, `nb`, `en`): `<html lang>` and the catalogue's file name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleLanguage::Sv => "sv",
            ConsoleLanguage::Nb => "nb",
            ConsoleLanguage::En => "en",
        }
    }
}

/// What a user may do. From `operator` on, each role may do everything the one before may;
/// the two roles before it are a tenant's staff, who read (never handle) only their own
/// people: `provider` (a care provider's staff: the subscribers of their provider) and
/// `municipality` (a municipality's staff: the subscribers of their municipality). Both
/// come with the user's tenant ([`Scope`]); every check of `operator` or more refuses them.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A care provider's staff: read their provider's subscribers, Calls and reports.
    Provider,
    /// A municipality's staff: read their municipality's subscribers, Calls and reports.
    Municipality,
    /// Takes and handles Calls; reads subscriber cards.
    Operator,
    /// Also edits subscribers and reads the audit log.
    Supervisor,
    /// Also imports devices and subscribers.
    Admin,
}

impl Role {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::Municipality => "municipality",
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "provider" => Ok(Role::Provider),
            "municipality" => Ok(Role::Municipality),
            "operator" => Ok(Role::Operator),
            "supervisor" => Ok(Role::Supervisor),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "unknown role `{s}` (provider, municipality, operator, supervisor or admin)"
            )),
        }
    }
}

impl Role {
    /// A tenant's staff (`provider`, `municipality`): they need a tenant and see only its
    /// people.
    pub fn is_tenant(self) -> bool {
        self < Role::Operator
    }
}

/// Whose people a user sees: the centre's staff all; a municipality's staff the subscribers
/// whose municipality is theirs (an empty one on the card is the centre's `home`); a care
/// provider's staff the subscribers whose care provider is theirs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "scope", content = "of", rename_all = "lowercase")]
pub enum Scope {
    /// Everyone (the ARC's operators, supervisors and administrators).
    All,
    /// One municipality's people, by its name.
    Municipality(String),
    /// One care provider's people, by the directory's provider id.
    Provider(String),
}

impl Scope {
    /// The scope of a user with `role` and `tenant`; `None` for a tenant's role without a
    /// tenant (such a user sees nothing).
    pub fn of(role: Role, tenant: Option<&str>) -> Option<Scope> {
        let tenant = tenant.map(str::trim).filter(|t| !t.is_empty());
        match (role, tenant) {
            (Role::Provider, Some(t)) => Some(Scope::Provider(t.to_owned())),
            (Role::Municipality, Some(t)) => Some(Scope::Municipality(t.to_owned())),
            (Role::Provider | Role::Municipality, None) => None,
            _ => Some(Scope::All),
        }
    }

    /// Whether the scope holds `s`; `home` is the centre's municipality (`[care]
    /// municipality`), which a card without one belongs to. Names compare without case.
    pub fn sees(&self, s: &Subscriber, home: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Municipality(m) => {
                let theirs = if s.municipality.trim().is_empty() {
                    home
                } else {
                    s.municipality.trim()
                };
                theirs.to_lowercase() == m.trim().to_lowercase()
            }
            Scope::Provider(p) => s.care_provider.trim() == p.trim(),
        }
    }

    /// Whether it is the whole centre.
    pub fn is_all(&self) -> bool {
        matches!(self, Scope::All)
    }

    /// A scope as a query gives it: `all` (or nothing), `municipality:NAME` or `provider:ID`,
    /// the name or id of 1 to [`MAX_SCOPE_CHARS`] characters; the reason, in English, if not.
    pub fn parse(s: Option<&str>) -> Result<Scope, String> {
        let s = s.map(str::trim).unwrap_or("");
        let named = |v: &str, f: fn(String) -> Scope| -> Result<Scope, String> {
            let v = v.trim();
            if v.is_empty()
                || v.chars().count() > MAX_SCOPE_CHARS
                || v.chars().any(char::is_control)
            {
                return Err(format!(
                    "scope: a name or id of 1 to {MAX_SCOPE_CHARS} characters"
                ));
            }
            Ok(f(v.to_owned()))
        };
        if s.is_empty() || s == "all" {
            Ok(Scope::All)
        } else if let Some(m) = s.strip_prefix("municipality:") {
            named(m, Scope::Municipality)
        } else if let Some(p) = s.strip_prefix("provider:") {
            named(p, Scope::Provider)
        } else {
            Err(format!(
                "scope {s:?}: all, municipality:NAME or provider:ID"
            ))
        }
    }
}

/// Longest municipality name or provider id in a [`Scope`] given in a query.
pub const MAX_SCOPE_CHARS: usize = 100;

/// One line of the audit log: who did what, when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Sequence number, from 1 (assigned by the store).
    #[serde(default)]
    pub seq: u64,
    /// When.
    pub at: jiff::Timestamp,
    /// Who (user name; `vakt` for the server itself).
    pub user: String,
    /// What: `subscriber.view`, `subscriber.edit`, `subscriber.import`, `device.import`,
    /// `call.claim`, `call.release`, `call.note`, `call.phone`, `call.close`, `call.view`,
    /// `session.login`, `session.logout`, `session.login_failed`, `user.add`, `user.update`,
    /// `directory.import`, `patrol.token`, `call.voice_hangup`, `recording.delete`,
    /// `device.phone_learned`, `subscriber.phone_learned`, `retention.call`,
    /// `retention.delivery`, `retention.subscriber`, `retention.view`, `journal.delete`,
    /// `call.delete`.
    pub action: String,
    /// The Call concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<u64>,
    /// The subscriber concerned, if any (for an entry about a Call that names no one, the
    /// store fills in the Call's subscriber).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
    /// More (an outcome, a count); never a secret or health text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

// ---- directory and dispatch ----

/// A care provider (utförare): the home-care organisation whose patrols go out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Provider {
    /// Provider id (as subscribers' `care_provider` and patrols refer to it).
    pub id: String,
    /// Name, e.g. "Hemtjänst Norr".
    pub name: String,
    /// Phone of the provider's duty desk.
    pub phone: String,
}

/// An area (district) with its arrival limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Area {
    /// Area id (as subscribers' and devices' `area` refer to it).
    pub id: String,
    /// Name.
    pub name: String,
    /// Minutes from the patrol's receipt of an assignment to its arrival (default 30; outer
    /// areas may have more).
    pub arrival_limit_mins: u32,
    /// The municipality the area lies in (empty: the centre's own, `[care] municipality`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub municipality: String,
}

/// A working period of a patrol in local time. `end` before `start` crosses midnight
/// (e.g. 21:30-07:00).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Shift {
    /// `day`, `evening` or `night` (free text, shown to operators).
    pub name: String,
    /// Start, local time.
    #[schema(value_type = String)]
    pub start: jiff::civil::Time,
    /// End, local time (exclusive).
    #[schema(value_type = String)]
    pub end: jiff::civil::Time,
}

/// A home-care patrol: a team (or person) that goes to the subscriber.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Patrol {
    /// Patrol id (used by the patrol client to log in).
    pub id: String,
    /// Name, e.g. "Norr kväll 1".
    pub name: String,
    /// The provider it belongs to.
    pub provider: String,
    /// Areas it covers.
    pub areas: Vec<String>,
    /// When it works.
    pub shifts: Vec<Shift>,
    /// Phone of the patrol.
    pub phone: String,
}

/// A routing rule: for Calls of subscribers of `provider` in `area` (`*` = any), offer the
/// patrols in this order; the first one on shift now is suggested, the next ones are the
/// fallback when a patrol does not confirm receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteRule {
    /// Provider id, or `*`.
    pub provider: String,
    /// Area id, or `*`.
    pub area: String,
    /// Patrol ids, in order.
    pub patrols: Vec<String>,
}

/// Where a dispatch (an assignment to one patrol) is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DispatchState {
    /// Sent (or waiting to be sent) to the patrol; receipt not confirmed yet.
    Offered,
    /// The patrol confirmed receipt: the arrival clock runs.
    Received,
    /// The patrol accepted it.
    Accepted,
    /// The patrol declined (with a reason); the operator or the route picks another.
    Declined,
    /// Not received in time; passed on to the next patrol of the route.
    ReceiptTimeout,
    /// The patrol is at the door.
    Arrived,
    /// Done.
    Completed,
    /// Withdrawn by the operator.
    Cancelled,
}

/// A step in a dispatch's life, as the Call's timeline and the live feed name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DispatchStep {
    /// An operator (or the route, after a receipt timeout) offered it to a patrol.
    Offered,
    /// The patrol confirmed receipt: the arrival clock runs.
    Received,
    /// The patrol accepted.
    Accepted,
    /// The patrol declined.
    Declined,
    /// The patrol is at the door.
    Arrived,
    /// The visit is done.
    Completed,
    /// An operator withdrew it.
    Cancelled,
    /// No receipt in time.
    ReceiptTimeout,
    /// The arrival deadline is near.
    Warning,
    /// The arrival limit passed without an arrival.
    Breached,
}

impl DispatchStep {
    /// The stable name (`offered`, ..., `receipt_timeout`).
    pub fn as_str(self) -> &'static str {
        match self {
            DispatchStep::Offered => "offered",
            DispatchStep::Received => "received",
            DispatchStep::Accepted => "accepted",
            DispatchStep::Declined => "declined",
            DispatchStep::Arrived => "arrived",
            DispatchStep::Completed => "completed",
            DispatchStep::Cancelled => "cancelled",
            DispatchStep::ReceiptTimeout => "receipt_timeout",
            DispatchStep::Warning => "warning",
            DispatchStep::Breached => "breached",
        }
    }
}

/// How a patrol's arrival was known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalMethod {
    /// The patrol pressed "arrived" in its app.
    App,
    /// The subscriber's digital lock was opened by the patrol.
    Lock,
    /// A receipt code given at the door.
    ReceiptCode,
    /// The presence button of the subscriber's alarm unit (SCAIP status 0088, "presence
    /// upon alarm"), reported by the device.
    Presence,
}

impl ArrivalMethod {
    /// The stable name (`app`, `lock`, `receipt_code`).
    pub fn as_str(self) -> &'static str {
        match self {
            ArrivalMethod::App => "app",
            ArrivalMethod::Lock => "lock",
            ArrivalMethod::ReceiptCode => "receipt_code",
            ArrivalMethod::Presence => "presence",
        }
    }
}

/// An assignment of a Call to one patrol, and its clocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dispatch {
    /// Dispatch id, from 1.
    pub id: u64,
    /// The Call.
    pub call: u64,
    /// The patrol it is offered to.
    pub patrol: String,
    /// The patrol's provider (for the reports).
    pub provider: String,
    /// The subscriber's area (its arrival limit applies).
    pub area: String,
    /// Where it is.
    pub state: DispatchState,
    /// When the operator dispatched it (the receipt clock starts here).
    #[schema(value_type = String)]
    pub offered_at: jiff::Timestamp,
    /// When the patrol confirmed receipt (the arrival clock starts here).
    #[schema(value_type = Option<String>)]
    pub received_at: Option<jiff::Timestamp>,
    /// When it accepted.
    #[schema(value_type = Option<String>)]
    pub accepted_at: Option<jiff::Timestamp>,
    /// When it arrived.
    #[schema(value_type = Option<String>)]
    pub arrived_at: Option<jiff::Timestamp>,
    /// How the arrival was known.
    pub arrival_method: Option<ArrivalMethod>,
    /// When it completed (or was declined, cancelled, timed out).
    #[schema(value_type = Option<String>)]
    pub ended_at: Option<jiff::Timestamp>,
    /// The arrival limit in minutes (the area's, when dispatched).
    pub limit_mins: u32,
    /// Minute marks already warned about (e.g. 20, 25).
    pub warned_at_mins: Vec<u32>,
    /// The patrol arrived after the limit, or has not arrived and the limit has passed.
    pub breached: bool,
    /// Why it was declined, how it was completed, or why it was cancelled.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The operator who dispatched it.
    pub operator: String,
    /// The operator's instruction to the patrol (e.g. "the daughter opens the door"); goes
    /// with the dispatch when it is passed to another patrol. Missing: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instruction: String,
}

impl Dispatch {
    /// The moment the arrival limit runs out, once the patrol has confirmed receipt.
    pub fn deadline(&self) -> Option<jiff::Timestamp> {
        self.received_at.and_then(|r| {
            r.checked_add(jiff::SignedDuration::from_mins(i64::from(self.limit_mins)))
                .ok()
        })
    }

    /// Still waiting for the patrol (offered, received, accepted).
    pub fn is_open(&self) -> bool {
        matches!(
            self.state,
            DispatchState::Offered | DispatchState::Received | DispatchState::Accepted
        )
    }
}

/// What a telecom incident groups: the devices of one telecom operator, or of one area
/// (operators are considered first: the order of the variants).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// The devices of one telecom operator.
    TelecomOperator,
    /// The devices of one area.
    Area,
}

impl IncidentKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::TelecomOperator => "telecom_operator",
            IncidentKind::Area => "area",
        }
    }
}

/// One device of an incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncidentDevice {
    /// Device account.
    pub account: String,
    /// Its subscriber, if known.
    #[serde(default)]
    pub subscriber: Option<String>,
    /// Its telecom operator, if known.
    #[serde(default)]
    pub telecom_operator: Option<String>,
    /// When its deadline passed.
    #[schema(value_type = String)]
    pub silent_since: jiff::Timestamp,
    /// When it reported again, if it has.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub restored_at: Option<jiff::Timestamp>,
}

/// One line of an incident's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncidentEntry {
    /// When.
    #[schema(value_type = String)]
    pub at: jiff::Timestamp,
    /// What happened, in words (opened, devices attached, notifications, resolved).
    pub what: String,
}

/// A telecom incident: many devices of one operator (or area) fell silent together. One
/// incident in front of operators instead of a Call per device; the telecom provider and the
/// affected care providers are notified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    /// Incident id, from 1.
    pub id: u64,
    /// Operator or area.
    pub kind: IncidentKind,
    /// The telecom operator's or the area's name.
    pub key: String,
    /// When it was declared.
    #[schema(value_type = String)]
    pub opened_at: jiff::Timestamp,
    /// When it was resolved (most devices report again).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub resolved_at: Option<jiff::Timestamp>,
    /// Devices of the group that reported (were supervised and not silent) when it opened.
    pub population: usize,
    /// The silent devices, in the order they were attached.
    pub devices: Vec<IncidentDevice>,
    /// What happened (bounded).
    pub history: Vec<IncidentEntry>,
}

impl Incident {
    /// Still open.
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn an_open_conversation_ends_with_its_ring_and_talk_time() {
        let mut c = OpenConversation {
            id: 3,
            call: Some(9),
            direction: CallDirection::Inbound,
            party: "unit 1234".into(),
            to_relative: None,
            rang_at: at(0),
            answered_at: None,
            operator: None,
            recording: None,
        };
        // The caller gave up after 25 s of ringing: abandoned.
        let gone = c.ended(ConversationEnd::Caller, at(25));
        assert_eq!((gone.ring_secs, gone.talk_secs), (25, None));
        assert!(gone.abandoned() && !gone.answered());
        // Answered after 12 s, talked 3 minutes; the operator hung up.
        c.answered_at = Some(at(12));
        c.operator = Some("op".into());
        c.recording = Some("r.wav".into());
        let done = c.ended(ConversationEnd::Operator, at(192));
        assert_eq!((done.ring_secs, done.talk_secs), (12, Some(180)));
        assert!(done.answered() && !done.abandoned());
        assert_eq!(done.recording.as_deref(), Some("r.wav"));
        // A clock that went back never gives negative or wrapped times.
        let odd = c.ended(ConversationEnd::Restart, at(5));
        assert_eq!((odd.ring_secs, odd.talk_secs), (12, Some(0)));
        // On the timeline it is one line, tagged `conversation`, its fields beside `at`.
        let line = TimelineEntry {
            at: at(192),
            user: None,
            what: TimelineEvent::Conversation(done),
        };
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["type"], "conversation");
        assert_eq!(json["ended_by"], "operator");
        assert_eq!(json["talk_secs"], 180);
        let back: TimelineEntry = serde_json::from_value(json).unwrap();
        assert_eq!(back, line);
    }
}
