//! The normalised alarm event shared by the ADM-CID and SIA-DCS payloads (protocols.md §2)
//! and the code name tables. The payload decoders ([`super::contact_id`], [`super::sia_dcs`])
//! build these; [`super::payload::decode_payload`] picks the decoder of a frame's token.

use std::fmt;

/// Most SIA-DCS events decoded from one frame; more is an error, not a truncation.
pub const MAX_EVENTS: usize = 64;

/// An event code: Contact ID (3 digits) or SIA DC-03 (2 letters).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventCode {
    /// Contact ID event code, 0..=999 (e.g. 101 personal emergency).
    Cid(u16),
    /// SIA DC-03 event code, two ASCII uppercase letters (e.g. `*b"MA"`).
    Sia([u8; 2]),
}

impl fmt::Display for EventCode {
    /// `CID 101` (three digits, zero-padded) or `SIA MA`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventCode::Cid(c) => write!(f, "CID {c:03}"),
            EventCode::Sia([a, b]) => write!(f, "SIA {}{}", char::from(*a), char::from(*b)),
        }
    }
}

impl serde::Serialize for EventCode {
    /// Serialised as its `Display` string, e.g. `"CID 101"`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether the event is new, a restore, or a status report (protocols.md §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Qualifier {
    /// New event, or opening (disarm). Contact ID qualifier `1`; SIA codes not in the restore table.
    New,
    /// Restore, or closing (arm). Contact ID qualifier `3`; SIA restore codes (MH, QH, ...).
    Restore,
    /// Previously reported condition still present. Contact ID qualifier `6`.
    Status,
}

impl Qualifier {
    /// Stable lowercase label: `new`, `restore`, `status`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Qualifier::New => "new",
            Qualifier::Restore => "restore",
            Qualifier::Status => "status",
        }
    }
}

/// One decoded alarm event.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// The event code.
    pub code: EventCode,
    /// New, restore or status.
    pub qualifier: Qualifier,
    /// Zone (device) number; `None` when the frame says "no zone" (`000`) or has none.
    /// Zone numbers are vendor-mapped (protocols.md §2.1).
    pub zone: Option<u32>,
    /// Group / partition / area (`GG` in Contact ID, `ri` in SIA); `None` for `00` or absent.
    pub group: Option<u32>,
    /// User number (Contact ID user-type codes, SIA `id`); `None` for `000` or absent.
    pub user: Option<u32>,
    /// Free text (SIA `^text^` or an `A` block), lossily converted to UTF-8.
    pub text: Option<String>,
    /// SIA `ti` modifier as sent (`hh:mm` or `hh:mm:ss`), the panel's local event time.
    pub time: Option<String>,
}

/// A decoded data block: the account written inside it and its events.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Payload {
    /// The `#acct` inside the data block, if any. It may differ from the header account
    /// (PIMA sends `#AAAA` in the header and `#00AAAA` here, §1.9): key on the header one.
    pub account: Option<String>,
    /// The events, in frame order. Empty only for NULL.
    pub events: Vec<Event>,
}

/// Why a data block could not be decoded. A payload error is not a reason to drop the
/// frame silently: the raw data must still reach an operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The token does not carry an event payload (ACK, NAK, DUH, RSP, legacy tokens).
    #[error("token carries no decodable payload")]
    UnsupportedToken,
    /// A Contact ID qualifier other than 1, 3 or 6.
    #[error("unknown Contact ID qualifier {0:?}")]
    BadQualifier(char),
    /// More than [`MAX_EVENTS`] events in one frame.
    #[error("more than {MAX_EVENTS} events in one frame")]
    TooManyEvents,
    /// An ADM-CID or SIA-DCS block without any event.
    #[error("no event in data block")]
    NoEvents,
    /// The data does not follow the payload grammar; the text says what is wrong.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
}

impl PayloadError {
    /// Stable label for metrics and logs.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            PayloadError::UnsupportedToken => "unsupported_token",
            PayloadError::BadQualifier(_) => "bad_qualifier",
            PayloadError::TooManyEvents => "too_many_events",
            PayloadError::NoEvents => "no_events",
            PayloadError::Malformed(_) => "malformed",
        }
    }
}

/// Splits an optional leading `#ACCT|` (or bare `|`) off a data block.
///
/// `#` must be followed by 1..=16 hex digits and then `|` or the end of the data.
pub(crate) fn split_account(data: &[u8]) -> Result<(Option<String>, &[u8]), PayloadError> {
    if let Some(rest) = data.strip_prefix(b"#") {
        let n = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if n == 0 || n > 16 {
            return Err(PayloadError::Malformed(
                "account in data is not 1-16 hex digits",
            ));
        }
        let (acct, rest) = rest.split_at(n);
        let acct = String::from_utf8_lossy(acct).into_owned();
        match rest.split_first() {
            None => Ok((Some(acct), rest)),
            Some((b'|', tail)) => Ok((Some(acct), tail)),
            Some(_) => Err(PayloadError::Malformed(
                "account in data not followed by '|'",
            )),
        }
    } else if let Some(rest) = data.strip_prefix(b"|") {
        Ok((None, rest))
    } else {
        Ok((None, data))
    }
}

/// Contact ID codes whose `ZZZ` field is a user number rather than a zone
/// (the "user" entries of the DC-05 Appendix C event table).
pub(crate) fn cid_address_is_user(code: u16) -> bool {
    matches!(
        code,
        121 | 313
            | 400..=409
            | 411..=415
            | 421
            | 422
            | 424
            | 425
            | 429..=431
            | 440..=442
            | 450..=459
            | 462..=464
            | 466
            | 574
            | 604
            | 607
            | 625
            | 642
            | 652
            | 653
    )
}

/// SIA DC-03 codes that report a restore/restoral (qualifier [`Qualifier::Restore`]).
/// Codes not listed here are [`Qualifier::New`].
const SIA_RESTORES: &[[u8; 2]] = &[
    *b"AR", // AC restoral
    *b"BH", // burglary alarm restore
    *b"BJ", // burglary trouble restore
    *b"BR", // burglary restoral
    *b"ER", // expansion module restoral
    *b"FH", // fire alarm restore
    *b"FJ", // fire trouble restore
    *b"FR", // fire restoral
    *b"GH", // gas alarm restore
    *b"GJ", // gas trouble restore
    *b"GR", // gas restoral
    *b"HH", // holdup alarm restore
    *b"HJ", // holdup trouble restore
    *b"HR", // holdup restoral
    *b"KH", // heat alarm restore
    *b"KJ", // heat trouble restore
    *b"KR", // heat restoral
    *b"LR", // phone line restoral
    *b"MH", // medical alarm restore
    *b"MJ", // medical trouble restore
    *b"MR", // medical restoral
    *b"NR", // network restoral
    *b"PH", // panic alarm restore
    *b"PJ", // panic trouble restore
    *b"PR", // panic restoral
    *b"QH", // emergency alarm restore
    *b"QJ", // emergency trouble restore
    *b"QR", // emergency restoral
    *b"SH", // sprinkler alarm restore
    *b"SJ", // sprinkler trouble restore
    *b"SR", // sprinkler restoral
    *b"TR", // tamper restoral
    *b"UH", // untyped zone alarm restore
    *b"UJ", // untyped zone trouble restore
    *b"UR", // untyped zone restoral
    *b"WH", // water alarm restore
    *b"WJ", // water trouble restore
    *b"WR", // water restoral
    *b"XH", // RF interference restoral
    *b"XR", // transmitter battery restoral
    *b"YH", // bell restored
    *b"YK", // communications restoral
    *b"YQ", // power supply restored
    *b"YR", // system battery restoral
    *b"ZH", // freeze alarm restore
    *b"ZJ", // freeze trouble restore
    *b"ZR", // freeze restoral
];

/// The qualifier implied by a SIA code: `Restore` for the restore table, else `New`.
#[must_use]
pub fn sia_qualifier(code: [u8; 2]) -> Qualifier {
    if SIA_RESTORES.contains(&code) {
        Qualifier::Restore
    } else {
        Qualifier::New
    }
}

/// Contact ID names (protocols.md §2.3, from S09 `dc05.py` / DC-05-2016 Appendix C).
const CID_NAMES: &[(u16, &str)] = &[
    (100, "Medical"),
    (101, "Personal Emergency"),
    (102, "Fail To Report In"),
    (103, "Fall Detected"),
    (110, "Fire"),
    (111, "Smoke"),
    (114, "Heat"),
    (120, "Panic"),
    (121, "Duress"),
    (122, "Silent"),
    (123, "Audible"),
    (130, "Burglary"),
    (140, "General Alarm"),
    (144, "Sensor Tamper"),
    (150, "24 Hour Non-Burglary"),
    (151, "Gas Detected"),
    (154, "Water Leakage"),
    (158, "High Temp"),
    (159, "Low Temp"),
    (162, "Carbon Monoxide Detected"),
    (300, "System Trouble"),
    (301, "AC Loss"),
    (302, "Low System Battery"),
    (305, "System Reset"),
    (309, "Battery Test Failure"),
    (311, "Battery Missing/Dead"),
    (350, "Communication Trouble"),
    (351, "Telco 1 Fault"),
    (352, "Telco 2 Fault"),
    (353, "Long Range Radio Xmitter Fault"),
    (354, "Failure To Communicate Event"),
    (355, "Loss Of Radio Supervision"),
    (373, "Fire Trouble"),
    (380, "Sensor Trouble"),
    (381, "Loss Of Supervision RF"),
    (383, "Sensor Tamper"),
    (384, "RF Low Battery"),
    (391, "Sensor Watch Trouble"),
    (393, "Maintenance Alert"),
    (394, "CO Detector Needs Replacement"),
    (601, "Manual Trigger Test"),
    (602, "Periodic Test Report"),
    (603, "Periodic RF Transmission"),
    (606, "Listen-In To Follow"),
    (641, "Senior Watch Trouble"),
    (642, "Latch-Key Supervision"),
    (645, "Help Arrived"),
    (646, "Additional Help Needed"),
    (647, "Additional Help Cancel"),
    (654, "System Inactivity"),
];

/// SIA DC-03 names (protocols.md §2.4, S09 names), plus the restore/trouble counterparts
/// used by the §2.4 CID→SIA mapping.
const SIA_NAMES: &[([u8; 2], &str)] = &[
    (*b"MA", "Medical Alarm"),
    (*b"MH", "Medical Alarm Restore"),
    (*b"QA", "Emergency Alarm"),
    (*b"QH", "Emergency Alarm Restore"),
    (*b"PA", "Panic Alarm"),
    (*b"PH", "Panic Alarm Restore"),
    (*b"HA", "Holdup Alarm"),
    (*b"HH", "Holdup Alarm Restore"),
    (*b"FA", "Fire Alarm"),
    (*b"FH", "Fire Alarm Restore"),
    (*b"FT", "Fire Trouble"),
    (*b"FJ", "Fire Trouble Restore"),
    (*b"GA", "Gas Alarm"),
    (*b"GH", "Gas Alarm Restore"),
    (*b"KA", "Heat Alarm"),
    (*b"KH", "Heat Alarm Restore"),
    (*b"WA", "Water Alarm"),
    (*b"WH", "Water Alarm Restore"),
    (*b"ZA", "Freeze Alarm"),
    (*b"NA", "No Activity"),
    (*b"TA", "Tamper Alarm"),
    (*b"TR", "Tamper Restoral"),
    (*b"AT", "AC Trouble"),
    (*b"AR", "AC Restoral"),
    (*b"YT", "System Battery Trouble"),
    (*b"YR", "System Battery Restoral"),
    (*b"XT", "Transmitter Battery Trouble"),
    (*b"XR", "Transmitter Battery Restoral"),
    (*b"YC", "Communications Fail"),
    (*b"YK", "Communications Restoral"),
    (*b"YS", "Communications Trouble"),
    (*b"LT", "Phone Line Trouble"),
    (*b"LR", "Phone Line Restoral"),
    (*b"RP", "Automatic Test"),
    (*b"RX", "Manual Test"),
    (*b"TX", "Unspecified Test"),
    (*b"YX", "Service Required"),
    (*b"UA", "Untyped Zone Alarm"),
    (*b"YN", "Invalid Report"),
    (*b"XL", "Low Received Signal Strength"),
];

/// The name of a known code (tables of protocols.md §2.3 and §2.4), or `None` if vakt does
/// not know it. An unknown code is still a valid event and must reach an operator.
#[must_use]
pub fn name(code: &EventCode) -> Option<&'static str> {
    match code {
        EventCode::Cid(c) => CID_NAMES.iter().find(|(k, _)| k == c).map(|(_, n)| *n),
        EventCode::Sia(c) => SIA_NAMES.iter().find(|(k, _)| k == c).map(|(_, n)| *n),
    }
}

/// The Contact ID class of a code from its first digit (protocols.md §2.3, S09
/// CLASSIFICATION): `alarm`, `supervisory`, `trouble`, `open_close`, `bypass`, `test`,
/// or `None` for other first digits.
#[must_use]
pub fn cid_class(code: u16) -> Option<&'static str> {
    match code / 100 {
        1 => Some("alarm"),
        2 => Some("supervisory"),
        3 => Some("trouble"),
        4 => Some("open_close"),
        5 => Some("bypass"),
        6 => Some("test"),
        _ => None,
    }
}

/// PSA's CID→SIA mapping (protocols.md §2.4, `data/adm_mapping.py`): the SIA code for a
/// Contact ID code and qualifier, or `None` when PSA has no mapping (PSA then uses `YN`).
/// Qualifier `Status` maps like `New`.
#[must_use]
pub fn cid_to_sia(code: u16, qualifier: Qualifier) -> Option<[u8; 2]> {
    let restore = qualifier == Qualifier::Restore;
    let pick = |new: &[u8; 2], rest: &[u8; 2]| Some(if restore { *rest } else { *new });
    match code {
        100 => pick(b"MA", b"MH"),
        101 => pick(b"QA", b"QH"),
        110 | 111 => pick(b"FA", b"FH"),
        113 => pick(b"WA", b"WH"),
        114 => pick(b"KA", b"KH"),
        120 => pick(b"PA", b"PH"),
        121 => pick(b"HA", b"HH"),
        151 | 162 => pick(b"GA", b"GH"),
        301 => pick(b"AT", b"AR"),
        302 | 309 => pick(b"YT", b"YR"),
        350 | 353 | 354 => pick(b"YC", b"YK"),
        351 | 352 => pick(b"LT", b"LR"),
        373 => pick(b"FT", b"FJ"),
        602 => Some(*b"RP"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_serialize() {
        assert_eq!(EventCode::Cid(101).to_string(), "CID 101");
        assert_eq!(EventCode::Cid(7).to_string(), "CID 007");
        assert_eq!(EventCode::Sia(*b"MA").to_string(), "SIA MA");
        assert_eq!(EventCode::Sia([0xFF, 0]).to_string(), "SIA \u{ff}\u{0}");
        let ev = Event {
            code: EventCode::Sia(*b"MA"),
            qualifier: Qualifier::Restore,
            zone: Some(1),
            group: None,
            user: None,
            text: None,
            time: None,
        };
        assert_eq!(Ser(&ev.code).to_string(), "SIA MA");
        assert_eq!(Qualifier::Restore.as_str(), "restore");
    }

    /// Shows what a value serialises to, using serde's own `Serializer` for
    /// `fmt::Formatter` (strings and unit variants), so the codec needs no JSON crate.
    struct Ser<'a, T>(&'a T);
    impl<T: serde::Serialize> std::fmt::Display for Ser<'_, T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.serialize(f)
        }
    }

    #[test]
    fn qualifier_serializes_snake_case() {
        assert_eq!(Ser(&Qualifier::Restore).to_string(), "restore");
        assert_eq!(Ser(&Qualifier::Status).to_string(), "status");
    }

    #[test]
    fn names_and_tables() {
        assert_eq!(name(&EventCode::Cid(101)), Some("Personal Emergency"));
        assert_eq!(name(&EventCode::Sia(*b"MA")), Some("Medical Alarm"));
        assert_eq!(name(&EventCode::Cid(999)), None);
        assert_eq!(name(&EventCode::Sia(*b"ZZ")), None);
        assert_eq!(sia_qualifier(*b"MH"), Qualifier::Restore);
        assert_eq!(sia_qualifier(*b"MA"), Qualifier::New);
        assert_eq!(sia_qualifier(*b"CR"), Qualifier::New); // recent closing, not a restore
        for c in [
            b"MH", b"QH", b"FH", b"AR", b"YR", b"XR", b"YK", b"TR", b"PH", b"HH",
        ] {
            assert_eq!(sia_qualifier(*c), Qualifier::Restore, "{c:?}");
        }
        assert!(cid_address_is_user(121));
        assert!(cid_address_is_user(407));
        assert!(!cid_address_is_user(101));
        assert_eq!(cid_class(101), Some("alarm"));
        assert_eq!(cid_class(999), None);
        assert_eq!(cid_to_sia(101, Qualifier::Restore), Some(*b"QH"));
        assert_eq!(cid_to_sia(101, Qualifier::New), Some(*b"QA"));
        assert_eq!(cid_to_sia(999, Qualifier::New), None);
        // Every table entry is unique.
        for (i, (c, _)) in CID_NAMES.iter().enumerate() {
            assert!(CID_NAMES[i + 1..].iter().all(|(d, _)| d != c), "{c}");
        }
        for (i, (c, _)) in SIA_NAMES.iter().enumerate() {
            assert!(SIA_NAMES[i + 1..].iter().all(|(d, _)| d != c), "{c:?}");
        }
    }

    #[test]
    fn split_account_forms() {
        assert_eq!(
            split_account(b"#00AAAA|3407 01 001"),
            Ok((Some("00AAAA".to_string()), &b"3407 01 001"[..]))
        );
        assert_eq!(split_account(b"|Nri1"), Ok((None, &b"Nri1"[..])));
        assert_eq!(split_account(b"Nri1"), Ok((None, &b"Nri1"[..])));
        assert_eq!(split_account(b"#1234"), Ok((Some("1234".into()), &b""[..])));
        assert!(split_account(b"#|x").is_err());
        assert!(split_account(b"#12345678901234567|x").is_err());
        assert!(split_account(b"#12G|x").is_err());
    }
}
