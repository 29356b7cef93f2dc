//! SCAIP (SS 91100) `<mrq>` / `<mrs>` bodies. Stub; bodies follow.

/// Largest body parsed.
pub const MAX_BODY_BYTES: usize = 8 * 1024;
/// Content-Type of SCAIP bodies.
pub const CONTENT_TYPE: &str = "application/scaip+xml";
/// XML namespace of the SCAIP schema.
pub const NAMESPACE: &str = "http://www.hi.se/2012/XScaipXML";

/// Status numbers (`snu`, SS Table 2).
pub mod snu {
    /// Message received and accepted.
    pub const OK: u8 = 0;
    /// Message too long.
    pub const TOO_LONG: u8 = 1;
    /// Invalid message format.
    pub const INVALID_FORMAT: u8 = 2;
    /// Wrong data in the message.
    pub const WRONG_DATA: u8 = 3;
    /// Hold: the alarm is received, wait.
    pub const HOLD: u8 = 4;
    /// Message not treated.
    pub const NOT_TREATED: u8 = 5;
    /// Busy.
    pub const BUSY: u8 = 6;
    /// Mandatory data missing.
    pub const MANDATORY_MISSING: u8 = 7;
    /// Reference missing.
    pub const REF_MISSING: u8 = 10;
    /// Undefined error.
    pub const UNDEFINED: u8 = 99;
}

/// Message type (`mty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// `ME` or omitted: an alarm or status message.
    Message,
    /// `RE`: reset.
    Reset,
    /// `IN`: information.
    Info,
    /// `PI`: heartbeat (ping).
    Heartbeat,
}

impl MessageType {
    /// The wire code: `ME`, `RE`, `IN`, `PI`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Message => "ME",
            MessageType::Reset => "RE",
            MessageType::Info => "IN",
            MessageType::Heartbeat => "PI",
        }
    }
}

/// Location fields of an mrq.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// `lco`: location code.
    pub code: Option<u16>,
    /// `lva`: location value.
    pub value: Option<String>,
    /// `lge/geo`.
    pub geo: Option<String>,
    /// `lge/tim`.
    pub tim: Option<String>,
    /// `lge/gga`.
    pub gga: Option<String>,
    /// `lte`: location text.
    pub text: Option<String>,
}

/// A Message Request (`<mrq>`, SS Table 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mrq {
    /// `ref`: `[A-Za-z0-9]{1,16}`.
    pub reference: String,
    /// `ver`.
    pub version: Option<String>,
    /// `sco`: sequence code.
    pub sco: Option<u8>,
    /// `cha`: channel.
    pub cha: Option<u8>,
    /// `mty`.
    pub mty: MessageType,
    /// `hbo`: the device accepts `hbi`.
    pub hbo: bool,
    /// `cid`: caller id, digits.
    pub cid: String,
    /// `dty`: device type.
    pub dty: u16,
    /// `did`: device id.
    pub did: Option<String>,
    /// `dco`: device component.
    pub dco: Option<u16>,
    /// `dte`: device text.
    pub dte: Option<String>,
    /// `crd`: capabilities (repeatable).
    pub crd: Vec<String>,
    /// `stc`: status code; `None` is the alarm state.
    pub stc: Option<u16>,
    /// `stt`: status text.
    pub stt: Option<String>,
    /// `pri`: priority 0..=9.
    pub pri: Option<u8>,
    /// `lco`, `lva`, `lge`, `lte`.
    pub location: Location,
    /// `ico`: info code.
    pub ico: Option<u16>,
    /// `ite`: info text.
    pub ite: Option<String>,
    /// `ame`: additional media.
    pub ame: Option<u16>,
}

/// Why an mrq (or mrs) was refused; [`MrqError::snu`] is the status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MrqError {
    /// snu 2: not XML, wrong root, too large, too deep.
    #[error("malformed body: {0}")]
    Malformed(&'static str),
    /// snu 10: no `ref`.
    #[error("ref missing")]
    RefMissing,
    /// snu 7: a mandatory tag is missing.
    #[error("mandatory {0} missing")]
    Missing(&'static str),
    /// snu 3: a value breaks the table.
    #[error("wrong data in {0}")]
    WrongData(&'static str),
}

impl MrqError {
    /// The status number to answer with.
    #[must_use]
    pub fn snu(&self) -> u8 {
        match self {
            MrqError::Malformed(_) => snu::INVALID_FORMAT,
            MrqError::RefMissing => snu::REF_MISSING,
            MrqError::Missing(_) => snu::MANDATORY_MISSING,
            MrqError::WrongData(_) => snu::WRONG_DATA,
        }
    }
    /// Stable label for logs and metrics.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            MrqError::Malformed(_) => "malformed",
            MrqError::RefMissing => "ref_missing",
            MrqError::Missing(_) => "mandatory_missing",
            MrqError::WrongData(_) => "wrong_data",
        }
    }
}

/// Parses an mrq body.
pub fn parse_mrq(body: &[u8]) -> Result<Mrq, MrqError> {
    let _ = body;
    unimplemented!()
}

/// Best effort: the valid `ref` of a body that may not parse.
#[must_use]
pub fn sniff_ref(body: &[u8]) -> Option<String> {
    let _ = body;
    unimplemented!()
}

/// A Message Response (`<mrs>`, SS Table 2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mrs {
    /// `ref` of the request; `None` only when the request had none (snu 10).
    pub reference: Option<String>,
    /// `snu`: status number.
    pub snu: u8,
    /// `ste`: status text.
    pub ste: Option<String>,
    /// `cve`: version.
    pub cve: Option<String>,
    /// `mre`: more expected.
    pub mre: Option<u8>,
    /// `cre`: call reference.
    pub cre: Option<String>,
    /// `tnu`: telephone number to call.
    pub tnu: Option<String>,
    /// `hbi`: heartbeat interval in minutes.
    pub hbi: Option<u16>,
}

/// Encodes an mrs in the spec's plain form and appends it to `out`.
pub fn encode_mrs(m: &Mrs, out: &mut Vec<u8>) {
    let _ = (m, out);
    unimplemented!()
}

/// Parses an mrs body.
pub fn parse_mrs(body: &[u8]) -> Result<Mrs, MrqError> {
    let _ = body;
    unimplemented!()
}
