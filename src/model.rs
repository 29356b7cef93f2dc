//! The vocabulary: the normalised [`Signal`] every protocol is decoded into, and the
//! [`Device`] of the registry.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::codec::crypto::Key;
use crate::codec::event::Qualifier;

/// How a frame reached vakt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// DC-09 over TCP.
    Tcp,
    /// DC-09 over UDP.
    Udp,
}

impl Transport {
    /// A stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
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
    pub fn from_codec(e: &crate::codec::event::Event) -> Self {
        SignalEvent {
            code: e.code.to_string(),
            name: crate::codec::event::name(&e.code).map(str::to_owned),
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
    /// The frame as received (LF..CR), byte for byte.
    #[serde(with = "raw_bytes")]
    pub raw: Vec<u8>,
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
            .finish()
    }
}

mod key_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::codec::crypto::Key;

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
