//! The device registry: which accounts vakt knows, their keys and subscribers.
//!
//! Devices are stored in the store; the receiver works on an in-memory [`Registry`] loaded at
//! start, so looking up a device on the hot path takes no lock and no disk read. Devices are
//! imported from CSV with [`parse_csv`] (the registers' one loader, [`crate::registers::csv`]):
//! every row is checked first, and a file with any bad row imports nothing.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, RwLock};

use crate::model::{Device, KeyFormat, SipPassword, norm_hex};
use crate::registers::csv::{Header, ImportFile, read_all_or_nothing};
use crate::store::device_key;
use vakt_proto::crypto::Key;

/// The CSV header `vakt devices import` expects. `sip_user` and `sip_password` are the SIP
/// Digest credentials of a SCAIP device, whose `account` is its SCAIP controller id (`cid`).
/// `phone` is the unit's own number (optional: a row may leave it out); where it is empty vakt
/// may learn it from the unit (`registers::numbers`), and a later import with it empty keeps
/// the number the device has.
pub const CSV_HEADER: &str = "account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area,device_type,sip_user,sip_password,phone";

/// The header before `phone` was added; files with it are still accepted.
pub const CSV_HEADER_V3: &str = "account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area,device_type,sip_user,sip_password";

/// The header before the SIP credentials were added; files with it are still accepted.
pub const CSV_HEADER_V2: &str = "account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area,device_type";

/// The header before `device_type` was added; files with it are still accepted.
pub const CSV_HEADER_V1: &str =
    "account,line,receiver,key,key_format,subscriber,supervision_secs,telecom_operator,area";

/// Device types the classification table knows (`device_type` column); empty means unknown.
pub const DEVICE_TYPES: &[&str] = &[
    "carephone",
    "pendant",
    "fall_detector",
    "smoke_detector",
    "door_sensor",
    "bed_sensor",
    "epilepsy_sensor",
    "panel",
];

/// Shortest and longest supervision interval accepted (20 s to 25 h).
pub const SUPERVISION_SECS: std::ops::RangeInclusive<u32> = 20..=90_000;

/// The devices register's one file (the CSV of `vakt devices import`), as import messages
/// name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevicesCsv;

impl ImportFile for DevicesCsv {
    const ROWS: &'static str = "devices";
    const SEVERAL: bool = false;
    fn name(self) -> &'static str {
        "devices"
    }
}

/// What is wrong with a devices file.
pub type ImportError = crate::registers::csv::ImportError<DevicesCsv>;

/// The headers a devices file may have, the current one first.
const HEADERS: [Header; 4] = [
    Header::new(CSV_HEADER).optional_tail(1),
    Header::new(CSV_HEADER_V3),
    Header::new(CSV_HEADER_V2),
    Header::new(CSV_HEADER_V1),
];

/// The registry in use, replaced as a whole when devices are imported while vakt runs. A
/// frame reads the registry that is current when it arrives.
#[derive(Debug, Clone, Default)]
pub struct Devices(Arc<RwLock<Arc<Registry>>>);

impl Devices {
    /// Starts with `registry`.
    pub fn new(registry: Registry) -> Devices {
        Devices(Arc::new(RwLock::new(Arc::new(registry))))
    }

    /// The current registry.
    pub fn current(&self) -> Arc<Registry> {
        match self.0.read() {
            Ok(g) => g.clone(),
            // A writer never panics while holding the lock; recover the value anyway.
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the registry (after an import).
    pub fn replace(&self, registry: Registry) {
        let r = Arc::new(registry);
        match self.0.write() {
            Ok(mut g) => *g = r,
            Err(p) => *p.into_inner() = r,
        }
    }
}

/// The devices, indexed for lookup by (account, line, receiver).
#[derive(Debug, Default, Clone)]
pub struct Registry {
    by_key: HashMap<String, Device>,
    /// SIP Digest passwords by user name (devices may share credentials; the import checks
    /// that rows with one user name give one password).
    sip: HashMap<String, SipPassword>,
    /// Every registered account, whatever its line, receiver or protocol.
    accounts: HashSet<String>,
}

/// Whom a DC-09 frame's account, line and receiver name ([`Registry::dc09`]).
#[derive(Debug, Clone, Copy)]
pub enum Dc09Device<'a> {
    /// A DC-09 device (one without SIP credentials).
    Device(&'a Device),
    /// No DC-09 device, but a SCAIP device whose `cid` is this account: the frame is not
    /// that device, which speaks SCAIP with SIP Digest only.
    Scaip,
    /// No device at all.
    Unknown,
}

impl Registry {
    /// Builds the index.
    pub fn new(devices: Vec<Device>) -> Registry {
        let sip = devices
            .iter()
            .filter_map(|d| Some((d.sip_user.clone()?, d.sip_password.clone()?)))
            .collect();
        let accounts = devices.iter().map(|d| d.account.clone()).collect();
        let by_key = devices
            .into_iter()
            .map(|d| {
                (
                    device_key(&d.account, d.line.as_deref(), d.receiver.as_deref()),
                    d,
                )
            })
            .collect();
        Registry {
            by_key,
            sip,
            accounts,
        }
    }

    /// The SIP Digest password of `user`, if a SCAIP device has it.
    pub fn sip_password(&self, user: &str) -> Option<&SipPassword> {
        self.sip.get(user)
    }

    /// The unit whose phone is `number` ([`crate::registers::numbers::same_line`]); `None`
    /// when none is, or when units of different subscribers have it.
    pub fn by_phone(&self, number: &str) -> Option<&Device> {
        let mut found = self.by_key.values().filter(|d| {
            d.phone
                .as_deref()
                .is_some_and(|p| crate::registers::numbers::same_line(p, number))
        });
        let first = found.next()?;
        found
            .all(|d| d.subscriber == first.subscriber)
            .then_some(first)
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Every device, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Device> {
        self.by_key.values()
    }

    /// True when no device is registered.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// True when a device of any line, receiver or protocol has `account` (upper case).
    pub fn has_account(&self, account: &str) -> bool {
        self.accounts.contains(account)
    }

    /// The DC-09 device a frame names (see [`Registry::lookup`] for the order): a SCAIP
    /// device is never one, so a DC-09 frame naming its `cid` is [`Dc09Device::Scaip`].
    pub fn dc09(
        &self,
        account: &str,
        line: Option<&str>,
        receiver: Option<&str>,
    ) -> Dc09Device<'_> {
        let mut scaip = false;
        let found = self.find(account, line, receiver, |d| {
            let dc09 = d.sip_user.is_none();
            scaip |= !dc09;
            dc09
        });
        match found {
            Some(d) => Dc09Device::Device(d),
            None if scaip => Dc09Device::Scaip,
            None => Dc09Device::Unknown,
        }
    }

    /// The SCAIP device with controller id `cid` whose SIP Digest user is `user`: a request
    /// authenticated as another user, or naming a DC-09 device's account, is not that device.
    pub fn scaip(&self, cid: &str, user: &str) -> Option<&Device> {
        self.lookup(cid, None, None)
            .filter(|d| d.sip_user.as_deref() == Some(user))
    }

    /// Finds the device for a frame's account, line and receiver: the most specific entry
    /// first (account+line+receiver, account+line, account+receiver, account alone). The
    /// inputs must already be upper case (see [`norm_hex`]).
    pub fn lookup(
        &self,
        account: &str,
        line: Option<&str>,
        receiver: Option<&str>,
    ) -> Option<&Device> {
        self.find(account, line, receiver, |_| true)
    }

    /// [`Registry::lookup`] among the devices `wanted` accepts (it sees every candidate, most
    /// specific first, until it accepts one).
    fn find(
        &self,
        account: &str,
        line: Option<&str>,
        receiver: Option<&str>,
        mut wanted: impl FnMut(&Device) -> bool,
    ) -> Option<&Device> {
        if self.by_key.is_empty() {
            return None;
        }
        // Most specific first; each distinct combination once.
        let mut candidates = [(line, receiver), (None, None), (None, None), (None, None)];
        let mut n = 1;
        if receiver.is_some() {
            candidates[n] = (line, None);
            n += 1;
        }
        if line.is_some() {
            candidates[n] = (None, receiver);
            n += 1;
        }
        if line.is_some() && receiver.is_some() {
            candidates[n] = (None, None);
            n += 1;
        }
        let mut key = String::with_capacity(account.len() + 16);
        for (l, r) in &candidates[..n] {
            key.clear();
            key.push_str(account);
            key.push('/');
            key.push_str(l.unwrap_or(""));
            key.push('/');
            key.push_str(r.unwrap_or(""));
            if let Some(d) = self.by_key.get(&key).filter(|d| wanted(d)) {
                return Some(d);
            }
        }
        None
    }
}

/// Characters of a SIP URI's user part that need no escaping (RFC 3261 `unreserved` and
/// `user-unreserved`).
fn is_sip_user_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b)
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Parses and checks a devices CSV (header [`CSV_HEADER`], or an older one; see
/// [`crate::registers::csv`]). Either every row is valid and all devices are returned, or
/// nothing is, with one message per bad row (by line number).
pub fn parse_csv(input: impl Read) -> Result<Vec<Device>, ImportError> {
    // SIP user -> (password, first line): shared credentials must agree.
    let mut sip_users: HashMap<String, (SipPassword, u64)> = HashMap::new();
    read_all_or_nothing(
        input,
        DevicesCsv,
        &HEADERS,
        |rec, line| {
            let d = parse_row(rec)?;
            if let (Some(u), Some(p)) = (&d.sip_user, &d.sip_password) {
                match sip_users.get(u) {
                    Some((first, at)) if first != p => {
                        return Err(format!(
                            "sip_user {u} was given another sip_password on line {at}"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        sip_users.insert(u.clone(), (p.clone(), line));
                    }
                }
            }
            Ok(d)
        },
        |d| {
            format!(
                "account {} line {} receiver {}",
                d.account,
                d.line.as_deref().unwrap_or("(any)"),
                d.receiver.as_deref().unwrap_or("(any)")
            )
        },
    )
}

/// One row, its cells counted already (an older header's row has fewer: they read as empty).
fn parse_row(rec: &csv::StringRecord) -> Result<Device, String> {
    let cell = |i: usize| rec.get(i).unwrap_or("");
    let account = norm_hex(cell(0));
    let sip_user = opt(cell(10));
    let sip_password = opt(cell(11));
    match (&sip_user, &sip_password) {
        (None, None) => {}
        (Some(u), Some(p)) => {
            if !(1..=64).contains(&u.len()) || !u.bytes().all(is_sip_user_byte) {
                return Err(format!(
                    "sip_user {u:?} must be 1 to 64 letters, digits or -_.!~*'()&=+$,;?/"
                ));
            }
            // The password itself is never echoed in an error message.
            if !(1..=128).contains(&p.len()) || !p.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(format!(
                    "sip_password must be 1 to 128 printable ASCII characters (found {})",
                    p.chars().count()
                ));
            }
        }
        (Some(_), None) => return Err("sip_user is set: sip_password must be set too".into()),
        (None, Some(_)) => return Err("sip_password is set but sip_user is empty".into()),
    }
    if sip_user.is_some() {
        // A SCAIP device: the account is its controller id, 1 to 32 digits (SS 91100 table 1).
        if !(1..=32).contains(&account.len()) || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "account {:?} of a SCAIP device (sip_user set) must be its cid, 1 to 32 digits",
                cell(0)
            ));
        }
    } else if !(3..=16).contains(&account.len()) || !is_hex(&account) {
        return Err(format!("account {:?} must be 3 to 16 hex digits", cell(0)));
    }
    let hex_field = |i: usize, name: &str| -> Result<Option<String>, String> {
        match opt(cell(i)) {
            None => Ok(None),
            Some(v) if (1..=6).contains(&v.len()) && is_hex(&v) => Ok(Some(v.to_ascii_uppercase())),
            Some(v) => Err(format!("{name} {v:?} must be 1 to 6 hex digits")),
        }
    };
    let line = hex_field(1, "line")?;
    let receiver = hex_field(2, "receiver")?;
    let key_text = opt(cell(3));
    let key_format = match opt(cell(4)).map(|s| s.to_ascii_lowercase()).as_deref() {
        None => None,
        Some("hex") => Some(KeyFormat::Hex),
        Some("ascii") => Some(KeyFormat::Ascii),
        Some(other) => return Err(format!("key_format {other:?} must be hex or ascii")),
    };
    let key = match (&key_text, key_format) {
        (None, None) => None,
        (None, Some(_)) => return Err("key_format is set but key is empty".into()),
        (Some(_), None) => return Err("key is set: key_format must say hex or ascii".into()),
        // The key itself is never echoed in an error message.
        (Some(k), Some(KeyFormat::Hex)) => Some(Key::from_hex(k).map_err(|_| {
            format!(
                "key is not 32, 48 or 64 hex digits (found {} characters)",
                k.len()
            )
        })?),
        (Some(k), Some(KeyFormat::Ascii)) => Some(Key::from_ascii(k).map_err(|_| {
            format!(
                "key is not 16, 24 or 32 ASCII characters (found {})",
                k.chars().count()
            )
        })?),
    };
    let supervision_secs = match opt(cell(6)) {
        None => None,
        Some(s) => {
            let v: u32 = s
                .parse()
                .map_err(|_| format!("supervision_secs {s:?} is not a whole number of seconds"))?;
            if !SUPERVISION_SECS.contains(&v) {
                return Err(format!(
                    "supervision_secs {v} must be {}..={} (20 s to 25 h)",
                    SUPERVISION_SECS.start(),
                    SUPERVISION_SECS.end()
                ));
            }
            Some(v)
        }
    };
    let device_type = match opt(cell(9)).map(|s| s.to_ascii_lowercase()) {
        None => None,
        Some(t) if DEVICE_TYPES.contains(&t.as_str()) => Some(t),
        Some(t) => {
            return Err(format!(
                "device_type {t:?} must be one of {} (or empty)",
                DEVICE_TYPES.join(", ")
            ));
        }
    };
    let phone = match opt(cell(12)) {
        None => None,
        Some(p) => Some(crate::registers::numbers::normalise(&p).ok_or_else(|| {
            format!("phone {p:?} must be a phone number of 8 to 15 digits (an optional + first)")
        })?),
    };
    Ok(Device {
        account,
        line,
        receiver,
        key,
        key_format,
        subscriber: opt(cell(5)),
        supervision_secs,
        telecom_operator: opt(cell(7)),
        area: opt(cell(8)),
        device_type,
        sip_user,
        sip_password: sip_password.map(SipPassword::new),
        phone,
    })
}

/// The demo fleet (`vakt serve --demo`): the devices of the demo municipality's subscribers,
/// plain and AES-128/256 (keys in `config/demo-devices.csv`).
pub const DEMO_CSV: &str = include_str!("../../config/demo-devices.csv");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_file_imports() {
        let csv = format!(
            "{CSV_HEADER_V1}\n1234,,,,,S-1,90,Telia,Norr\n5678,1,,000102030405060708090A0B0C0D0E0F,hex,S-2,,,\nAAAB,0,,AAAAAAAAAAAAAAAA,ascii,,,,\n"
        );
        let ds = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds[0].supervision_secs, Some(90));
        assert_eq!(ds[1].key.as_ref().map(|k| k.bits()), Some(128));
        assert_eq!(ds[1].line.as_deref(), Some("1"));
        let reg = Registry::new(ds);
        assert_eq!(
            reg.lookup("1234", Some("0"), None)
                .unwrap()
                .subscriber
                .as_deref(),
            Some("S-1")
        );
        assert!(reg.lookup("5678", Some("0"), None).is_none(), "line 1 only");
        assert!(reg.lookup("5678", Some("1"), Some("3")).is_some());
        assert!(reg.lookup("9999", None, None).is_none());
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_nothing_imports() {
        let csv = format!(
            "{CSV_HEADER_V1}\n1234,,,,,,,,\nXYZ,,,,,,,,\n5678,,,0011,hex,,,,\n9999,,,,,,5,,\n1234,,,,,,,,\n"
        );
        let err = parse_csv(csv.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("line 3: account"), "{err}");
        assert!(err.contains("line 4: key is not"), "{err}");
        assert!(!err.contains("0011"), "key must not be echoed: {err}");
        assert!(err.contains("line 5: supervision_secs 5"), "{err}");
        assert!(
            err.contains("line 6: account 1234") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn wrong_header_is_refused() {
        let err = parse_csv("account,key\n1,2\n".as_bytes()).unwrap_err();
        assert!(matches!(err, ImportError::Header(_)));
    }

    #[test]
    fn a_key_given_again_names_the_line_it_was_first_given_on() {
        let csv = format!("{CSV_HEADER_V1}\n1234,,,,,,,,\n1234,,,,,,,,\n1234,,,,,,,,\n");
        let err = parse_csv(csv.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("line 3: account 1234 line (any) receiver (any) already given on line 2"),
            "{err}"
        );
        assert!(
            err.contains("line 4: account 1234 line (any) receiver (any) already given on line 2"),
            "{err}"
        );
    }

    #[test]
    fn a_units_phone_is_read_in_one_form_and_may_be_left_out() {
        let csv = format!(
            "{CSV_HEADER}\n678,,,,,S-1,,,,pendant,luc678,pw,+46 70-123 45 67\n679,,,,,S-2,,,,pendant,luc679,pw\n680,,,,,S-3,,,,pendant,luc680,pw,\n"
        );
        let d = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(d[0].phone.as_deref(), Some("+46701234567"));
        assert_eq!(d[1].phone, None);
        assert_eq!(d[2].phone, None);
        let old = format!("{CSV_HEADER_V3}\n678,,,,,S-1,,,,pendant,luc678,pw\n");
        assert_eq!(parse_csv(old.as_bytes()).unwrap()[0].phone, None);
        let bad = format!("{CSV_HEADER}\n678,,,,,S-1,,,,pendant,luc678,pw,reception\n");
        let err = parse_csv(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("line 2: phone \"reception\""), "{err}");
    }

    #[test]
    fn a_missing_header_is_refused_without_echoing_the_key() {
        // The header forgotten: the first row (with its key) must not be shown.
        let csv = "5678,1,,000102030405060708090A0B0C0D0E0F,hex,S-2,,,\n";
        let err = parse_csv(csv.as_bytes()).unwrap_err();
        assert!(matches!(err, ImportError::Header(_)));
        let err = err.to_string();
        assert!(err.contains("is the header missing"), "{err}");
        assert!(!err.contains("0A0B0C"), "key echoed: {err}");
        let err = parse_csv("".as_bytes()).unwrap_err().to_string();
        assert!(err.contains("the file is empty"), "{err}");
    }

    #[test]
    fn invalid_utf8_is_reported_by_line_and_cell() {
        let mut bytes = format!("{CSV_HEADER_V1}\n1234,,,,,,,,\n").into_bytes();
        bytes.extend_from_slice(b"5678,,,,,S-\xC52,,,\n");
        let err = parse_csv(&bytes[..]).unwrap_err().to_string();
        assert!(err.contains("line 3: cell 6 is not valid UTF-8"), "{err}");
    }

    #[test]
    fn a_file_that_cannot_be_read_is_an_io_error() {
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let err = parse_csv(Broken).unwrap_err().to_string();
        assert_eq!(err, "cannot read the file: disk gone");
    }

    #[test]
    fn sip_credentials_import_and_are_checked() {
        let csv = format!(
            "{CSV_HEADER}\n678,,,,,S-1,3600,Telia,Norr,pendant,luc678,s3cret\n679,,,,,S-2,,,,,group-a,shared\n680,,,,,S-3,,,,,group-a,shared\n1234,,,,,S-4,90,,,carephone,,\n"
        );
        let ds = parse_csv(csv.as_bytes()).unwrap();
        let reg = Registry::new(ds);
        assert_eq!(
            reg.sip_password("luc678").map(|p| p.expose()),
            Some("s3cret")
        );
        assert_eq!(
            reg.sip_password("group-a").map(|p| p.expose()),
            Some("shared")
        );
        assert!(reg.sip_password("nobody").is_none());
        let d = reg.lookup("678", None, None).unwrap();
        assert_eq!(d.sip_user.as_deref(), Some("luc678"));
        assert!(!format!("{d:?}").contains("s3cret"), "password in Debug");

        let bad = format!(
            "{CSV_HEADER}\n678,,,,,,,,,,luc,\n679,,,,,,,,,,,pw\nABC,,,,,,,,,,luc2,pw\n700,,,,,,,,,,g,one\n701,,,,,,,,,,g,two-secret\n702,,,,,,,,,,bad user,pw\n"
        );
        let err = parse_csv(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("line 2: sip_user is set"), "{err}");
        assert!(err.contains("line 3: sip_password is set"), "{err}");
        assert!(
            err.contains("line 4: account \"ABC\" of a SCAIP device"),
            "{err}"
        );
        assert!(
            err.contains("line 6: sip_user g was given another sip_password on line 5"),
            "{err}"
        );
        assert!(err.contains("line 7: sip_user \"bad user\""), "{err}");
        assert!(!err.contains("two-secret"), "password echoed: {err}");
    }

    #[test]
    fn each_protocol_finds_only_its_own_devices() {
        let csv = format!(
            "{CSV_HEADER}\n678,,,,,S-1,,,,pendant,luc678,pw\n678,1,,,,S-2,,,,carephone,,\n1234,,,,,S-3,,,,,,\n"
        );
        let reg = Registry::new(parse_csv(csv.as_bytes()).unwrap());
        // cid 678 is valid DC-09 hex, but the account-only entry is a SCAIP device.
        assert!(matches!(
            reg.dc09("678", Some("0"), None),
            Dc09Device::Scaip
        ));
        assert!(matches!(reg.dc09("678", None, None), Dc09Device::Scaip));
        // A DC-09 device of the same account on line 1 is found on line 1.
        match reg.dc09("678", Some("1"), None) {
            Dc09Device::Device(d) => assert_eq!(d.subscriber.as_deref(), Some("S-2")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            reg.dc09("1234", Some("0"), None),
            Dc09Device::Device(_)
        ));
        assert!(matches!(reg.dc09("9999", None, None), Dc09Device::Unknown));
        assert!(reg.has_account("678") && reg.has_account("1234") && !reg.has_account("9999"));
        // SCAIP: only with the device's own SIP user, never a DC-09 device's account.
        assert_eq!(
            reg.scaip("678", "luc678")
                .and_then(|d| d.subscriber.as_deref()),
            Some("S-1")
        );
        assert!(reg.scaip("678", "other").is_none());
        assert!(reg.scaip("1234", "luc678").is_none());
    }

    #[test]
    fn ten_column_files_still_import() {
        let csv = format!("{CSV_HEADER_V2}\n1234,,,,,S-1,90,Telia,Norr,carephone\n");
        let ds = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(ds[0].device_type.as_deref(), Some("carephone"));
        assert!(ds[0].sip_user.is_none());
    }

    #[test]
    fn demo_fleet_is_valid() {
        assert!(parse_csv(DEMO_CSV.as_bytes()).unwrap().len() >= 3);
    }
}
