//! The classification table: how urgent a [`Signal`] is, what it is in words, and what
//! triage does with it. This is the one place in code where priorities are decided
//! (design.md, "Priorities").
//!
//! | level | what | Contact ID | SIA DC-03 |
//! |---|---|---|---|
//! | 0 life-safety | fire, smoke, heat, gas, CO, panic, duress | 110-129, 151, 162 | FA, SA, KA, GA, PA, HA |
//! | 1 personal | pendant press, medical, fall, burglary, "help needed" | 100, 101, 103-109, 130-136, 138, 139, 146, 155, 646 | MA, QA, BA |
//! | 2 care | no activity, fail to report in, water, temperature | 102, 153, 154, 158, 159, 641, 642, 654 | NA, WA, ZA |
//! | 3 technical | mains, battery, communication, tamper, sensor faults, supervisory; a device that fell silent (`VAKT communication_lost`, made by supervision) | 137, 141-145, 147, 152, 156, 157, 161, 163, 200-399, 608 | AT, YT, XT, YC, YS, LT, NT, YP, XQ, XL, FT, TA, YX, ET, YA, `?T`, `?S` |
//! | 4 rule | tests, open/close, bypass, listen-in, help arrived, system events (logs, clock, programming) | 400-599, 601-607, 609-632, 645, 647 | RP, RX, TX, `O?`, `C?`, `?B`, `?U` |
//!
//! **Generic codes** (Contact ID 140, 150, SIA UA, YN) and **every code not in the table**
//! take their meaning from the device type: a smoke detector is level 0 "Fire", a fall
//! detector level 1 "Fall", an epilepsy sensor level 1, a pendant or carephone level 1
//! "Personal alarm", a door or bed sensor level 2; any other (or no) device type is level 1
//! ("Alarm" for the generic codes, "Unknown alarm" for unknown codes), so a person always
//! sees it. A personal-emergency or medical code (CID 100, 101, SIA MA, QA) from a smoke
//! detector is level 0 "Fire", from a fall detector "Fall", from an epilepsy sensor
//! "Epilepsy alarm".
//!
//! **Qualifiers.** A *new* event of levels 0-3 opens a Call ([`Action::OpenCall`]); one of
//! level 4 is handled by its rule. A *restore* (Contact ID qualifier 3, or a SIA restore code
//! such as FH, MH, AR) is [`Action::Restore`] with the kind of the condition it ends. A
//! *status* report ("still present") of levels 0-2 opens or merges like a new event but does
//! not count as a press; of levels 3-4 it is the `status` rule.
//!
//! **Flags.** A Signal from an unknown device, one that could not be decrypted, or one whose
//! payload could not be read is never handled by rule: it is level 3 ("Unknown device",
//! "Undecryptable device", "Unreadable alarm"), or more urgent when an event it carries is
//! (e.g. level 0 "Fire (unknown device)").
//!
//! **Several events.** A Signal with several events takes the one that most needs a person:
//! a new event before a restore before a rule, then the lowest level, then the first.

use std::borrow::Cow;

use crate::codec::event::{Qualifier, sia_qualifier};
use crate::model::{Flags, Priority, Signal, SignalEvent};

/// The names of the rules that handle Signals without a Call (the `rule` label of
/// `vakt_signals_by_rule_total`).
pub mod rules {
    /// Periodic and manual test reports (CID 601-605, 607, 609-614; SIA RP, RX, TX).
    pub const PERIODIC_TEST: &str = "periodic_test";
    /// A restore when no Call of that subscriber or account is open.
    pub const RESTORE: &str = "restore";
    /// A "still present" status report of a technical condition.
    pub const STATUS: &str = "status";
    /// Anything else of level 4 (open/close, bypass, listen-in, help arrived).
    pub const OTHER: &str = "other";
    /// A silence or restoration of a device in an open telecom incident (the incident is in
    /// front of the operators, not a Call per device).
    pub const INCIDENT: &str = "incident";
    /// Every rule name.
    pub const ALL: [&str; 5] = [PERIODIC_TEST, RESTORE, STATUS, OTHER, INCIDENT];
}

/// What triage does with a Signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a Call, or merge into the open Call of the same subscriber (or account).
    OpenCall,
    /// A restore: attach to the open Call, or the `restore` rule when there is none.
    Restore,
    /// Handled by the named rule (one of [`rules::ALL`]) when no Call is open; shown in the
    /// timeline of an open Call.
    Rule(&'static str),
}

/// The classification of a Signal (or of one event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    /// How urgent (0 most urgent; 4 for restores and rules).
    pub level: Priority,
    /// What it is, in words ("Fire", "Fall", "Unknown device").
    pub kind: Cow<'static, str>,
    /// It counts as a press (an alarm) when merged: new events of levels 0-2.
    pub alarm: bool,
    /// What triage does with it.
    pub action: Action,
    /// The index of the event in `Signal::events` that decided, if any.
    pub event: Option<usize>,
}

// ---- kinds (words the operators read) ----
const FIRE: &str = "Fire";
const HEAT: &str = "Heat";
const GAS: &str = "Gas";
const CO: &str = "Carbon monoxide";
const PANIC: &str = "Panic";
const DURESS: &str = "Duress";
const MEDICAL: &str = "Medical";
const PERSONAL: &str = "Personal alarm";
const FALL: &str = "Fall";
const EPILEPSY: &str = "Epilepsy alarm";
const BURGLARY: &str = "Burglary";
const HELP: &str = "Help needed";
const ALARM: &str = "Alarm";
const UNKNOWN_ALARM: &str = "Unknown alarm";
const NO_ACTIVITY: &str = "No activity";
const FAIL_TO_REPORT: &str = "Fail to report in";
const LATCH_KEY: &str = "Latch-key supervision";
const WATER: &str = "Water leakage";
const HIGH_TEMP: &str = "High temperature";
const LOW_TEMP: &str = "Low temperature";
const LOSS_OF_HEAT: &str = "Loss of heat";
const DOOR: &str = "Door sensor";
const BED: &str = "Bed sensor";
const MAINS: &str = "Mains power lost";
const POWER: &str = "Power supply fault";
const BATTERY: &str = "Low battery";
const COMMS: &str = "Communication fault";
const RADIO: &str = "Radio interference";
const TAMPER: &str = "Tamper";
const SENSOR: &str = "Sensor fault";
const FIRE_FAULT: &str = "Fire detector fault";
const MAINTENANCE: &str = "Maintenance";
const SUPERVISORY: &str = "Supervisory";
const TECH: &str = "Technical fault";
const SYSTEM: &str = "System trouble";
const TEST: &str = "Test";
const SYSTEM_EVENT: &str = "System event";
const PERIODIC: &str = "Periodic test";
const OPEN_CLOSE: &str = "Open/close";
const BYPASS: &str = "Bypass";
const LISTEN_IN: &str = "Listen-in";
const HELP_ARRIVED: &str = "Help arrived";
const HELP_CANCELLED: &str = "Help cancelled";
const UNKNOWN_DEVICE: &str = "Unknown device";
const UNDECRYPTABLE: &str = "Undecryptable device";
const UNREADABLE: &str = "Unreadable alarm";

/// What an event code means before its qualifier: a level and words; `rule` is used at
/// level 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cond {
    level: u8,
    kind: &'static str,
    rule: &'static str,
}

const fn c(level: u8, kind: &'static str) -> Option<Cond> {
    Some(Cond {
        level,
        kind,
        rule: rules::OTHER,
    })
}

const fn test(kind: &'static str) -> Option<Cond> {
    Some(Cond {
        level: 4,
        kind,
        rule: rules::PERIODIC_TEST,
    })
}

/// Contact ID codes; `None` for generic and unknown codes.
fn cid(code: u16) -> Option<Cond> {
    match code {
        100 | 104..=109 => c(1, MEDICAL),
        101 => c(1, PERSONAL),
        102 => c(2, FAIL_TO_REPORT),
        103 => c(1, FALL),
        110..=113 | 115..=119 => c(0, FIRE),
        114 => c(0, HEAT),
        120 | 122 | 123 | 126..=129 => c(0, PANIC),
        121 | 124 | 125 => c(0, DURESS),
        130..=136 | 138 | 139 | 146 | 155 => c(1, BURGLARY),
        137 | 144 | 145 => c(3, TAMPER),
        141..=143 | 147 => c(3, SENSOR),
        151 => c(0, GAS),
        153 => c(2, LOSS_OF_HEAT),
        154 => c(2, WATER),
        158 => c(2, HIGH_TEMP),
        159 => c(2, LOW_TEMP),
        162 => c(0, CO),
        152 | 156 | 157 | 161 | 163 => c(3, TECH),
        200..=299 => c(3, SUPERVISORY),
        301 => c(3, MAINS),
        302 | 309 | 311 | 338 | 384 => c(3, BATTERY),
        350..=359 => c(3, COMMS),
        373..=378 => c(3, FIRE_FAULT),
        380..=383 | 385..=391 => c(3, SENSOR),
        393 | 394 => c(3, MAINTENANCE),
        300..=399 => c(3, SYSTEM),
        400..=499 => c(4, OPEN_CLOSE),
        500..=599 => c(4, BYPASS),
        602 | 603 => test(PERIODIC),
        601 | 604 | 605 | 607 | 609..=614 => test(TEST),
        606 => c(4, LISTEN_IN),
        608 => c(3, SYSTEM),
        615..=632 => c(4, SYSTEM_EVENT),
        641 | 654 => c(2, NO_ACTIVITY),
        642 => c(2, LATCH_KEY),
        645 => c(4, HELP_ARRIVED),
        646 => c(1, HELP),
        647 => c(4, HELP_CANCELLED),
        // 140 General Alarm, 150 24-hour non-burglary, and every other code: generic.
        _ => None,
    }
}

/// SIA DC-03 codes that are not restores; `None` for generic and unknown codes.
fn sia(code: [u8; 2]) -> Option<Cond> {
    match &code {
        b"FA" | b"SA" => c(0, FIRE),
        b"KA" => c(0, HEAT),
        b"GA" => c(0, GAS),
        b"PA" => c(0, PANIC),
        b"HA" => c(0, DURESS),
        b"MA" => c(1, MEDICAL),
        b"QA" => c(1, PERSONAL),
        b"BA" => c(1, BURGLARY),
        b"NA" => c(2, NO_ACTIVITY),
        b"WA" => c(2, WATER),
        b"ZA" => c(2, LOW_TEMP),
        b"TA" => c(3, TAMPER),
        b"AT" => c(3, MAINS),
        b"YP" => c(3, POWER),
        b"YT" | b"XT" => c(3, BATTERY),
        b"YC" | b"YS" | b"LT" | b"NT" => c(3, COMMS),
        b"XQ" | b"XL" => c(3, RADIO),
        b"FT" => c(3, FIRE_FAULT),
        b"YX" => c(3, MAINTENANCE),
        b"ET" | b"YA" => c(3, TECH),
        b"RP" => test(PERIODIC),
        b"RX" | b"TX" => test(TEST),
        // Untyped zone alarm, invalid report (PSA's code for an unmapped Contact ID code).
        b"UA" | b"YN" => None,
        [b'O' | b'C', _] => c(4, OPEN_CLOSE),
        [_, b'B' | b'U'] => c(4, BYPASS),
        [_, b'T'] => c(3, TECH),
        [_, b'S'] => c(3, SUPERVISORY),
        _ => None,
    }
}

/// The code of the condition a SIA restore code ends (FH ends FA, FJ ends FT, AR ends AT).
fn sia_restored(code: [u8; 2]) -> [u8; 2] {
    let [a, b] = code;
    match &code {
        b"AR" => *b"AT",
        b"YR" => *b"YT",
        b"XR" => *b"XT",
        b"LR" => *b"LT",
        b"NR" => *b"NT",
        b"TR" => *b"TA",
        b"ER" => *b"ET",
        b"YK" => *b"YC",
        b"YQ" => *b"YP",
        b"XH" => *b"XQ",
        b"YH" => *b"YA",
        _ if b == b'J' => [a, b'T'],
        _ => [a, b'A'],
    }
}

/// The code of the Signal supervision journals when a device misses its deadline (qualifier
/// `new`; protocol [`SUPERVISION_PROTOCOL`]).
pub const CODE_COMMUNICATION_LOST: &str = "VAKT communication_lost";
/// The code of the Signal supervision journals when a silent device reports again (qualifier
/// `restore`).
pub const CODE_COMMUNICATION_RESTORED: &str = "VAKT communication_restored";
/// The `protocol` of Signals vakt makes itself from supervision.
pub const SUPERVISION_PROTOCOL: &str = "vakt-supervision";
/// The kind of a silent device's Call.
pub const COMMUNICATION_LOST: &str = "Communication lost";

/// A parsed `SignalEvent::code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    Cid(u16),
    Sia([u8; 2]),
    /// A device missed its heartbeat deadline, or reports again.
    Silence,
    Other,
}

fn parse_code(s: &str) -> Code {
    if s == CODE_COMMUNICATION_LOST || s == CODE_COMMUNICATION_RESTORED {
        return Code::Silence;
    }
    if let Some(n) = s.strip_prefix("CID ") {
        if let Ok(n) = n.parse::<u16>() {
            return Code::Cid(n);
        }
    } else if let Some(&[a, b]) = s.strip_prefix("SIA ").map(str::as_bytes) {
        return Code::Sia([a, b]);
    }
    Code::Other
}

/// The meaning of a generic or unknown code, from the device type.
fn generic(device_type: Option<&str>, known: bool) -> Cond {
    let (level, kind) = match device_type {
        Some("smoke_detector") => (0, FIRE),
        Some("fall_detector") => (1, FALL),
        Some("epilepsy_sensor") => (1, EPILEPSY),
        Some("pendant" | "carephone") => (1, PERSONAL),
        Some("door_sensor") => (2, DOOR),
        Some("bed_sensor") => (2, BED),
        _ if known => (1, ALARM),
        _ => (1, UNKNOWN_ALARM),
    };
    Cond {
        level,
        kind,
        rule: rules::OTHER,
    }
}

/// A button code (personal emergency, medical) said more precisely by the device type.
fn refine(cond: Cond, device_type: Option<&str>) -> Cond {
    if cond.kind != PERSONAL && cond.kind != MEDICAL {
        return cond;
    }
    match device_type {
        Some("smoke_detector") => Cond {
            level: 0,
            kind: FIRE,
            ..cond
        },
        Some("fall_detector") => Cond { kind: FALL, ..cond },
        Some("epilepsy_sensor") => Cond {
            kind: EPILEPSY,
            ..cond
        },
        _ => cond,
    }
}

/// Classifies one event. `event` of the result is `None`.
pub fn classify_event(ev: &SignalEvent, device_type: Option<&str>) -> Class {
    let code = parse_code(&ev.code);
    let sia_restore = matches!(code, Code::Sia(c) if sia_qualifier(c) == Qualifier::Restore);
    let cond = match code {
        Code::Cid(n) => cid(n).ok_or(matches!(n, 140 | 150)),
        Code::Sia(c) => {
            let c = if sia_restore { sia_restored(c) } else { c };
            sia(c).ok_or(&c == b"UA")
        }
        Code::Silence => Ok(Cond {
            level: 3,
            kind: COMMUNICATION_LOST,
            rule: rules::OTHER,
        }),
        Code::Other => Err(false),
    };
    let cond = match cond {
        Ok(cond) => refine(cond, device_type),
        Err(known) => generic(device_type, known),
    };
    let qualifier = if sia_restore {
        Qualifier::Restore
    } else {
        ev.qualifier
    };
    let kind = Cow::Borrowed(cond.kind);
    let (level, alarm, action) = match qualifier {
        Qualifier::New if cond.level <= 3 => (cond.level, cond.level <= 2, Action::OpenCall),
        Qualifier::New => (4, false, Action::Rule(cond.rule)),
        Qualifier::Restore => (4, false, Action::Restore),
        Qualifier::Status if cond.level <= 2 => (cond.level, false, Action::OpenCall),
        Qualifier::Status => (4, false, Action::Rule(rules::STATUS)),
    };
    Class {
        level: Priority(level),
        kind,
        alarm,
        action,
        event: None,
    }
}

/// The flag that makes a Signal need a person regardless of its content, as
/// `(name, kind)`: `unknown_device` before `undecryptable` before `bad_payload`.
pub fn flag(flags: &Flags) -> Option<(&'static str, &'static str)> {
    if flags.unknown_device {
        Some(("unknown_device", UNKNOWN_DEVICE))
    } else if flags.undecryptable {
        Some(("undecryptable", UNDECRYPTABLE))
    } else if flags.bad_payload {
        Some(("bad_payload", UNREADABLE))
    } else {
        None
    }
}

fn rank(a: Action) -> u8 {
    match a {
        Action::OpenCall => 0,
        Action::Restore => 1,
        Action::Rule(_) => 2,
    }
}

/// Classifies a Signal: its flags, then its most urgent event (see the module doc).
/// `device_type` is the registry's type of the device; when `None`, the Signal's own
/// `device_type` is used.
pub fn classify(signal: &Signal, device_type: Option<&str>) -> Class {
    let device_type = device_type.or(signal.device_type.as_deref());
    let best = signal
        .events
        .iter()
        .enumerate()
        .map(|(i, ev)| Class {
            event: Some(i),
            ..classify_event(ev, device_type)
        })
        .min_by_key(|c| (rank(c.action), c.level, c.event));
    let technical = |kind: &'static str, event: Option<usize>| Class {
        level: Priority::TECHNICAL,
        kind: Cow::Borrowed(kind),
        alarm: false,
        action: Action::OpenCall,
        event,
    };
    match (flag(&signal.flags), best) {
        (None, Some(class)) => class,
        // Nothing readable at all (not sent by the receiver today): a person looks at it.
        (None, None) => technical(UNREADABLE, None),
        (Some((_, kind)), None) => technical(kind, None),
        (Some((_, kind)), Some(class)) => {
            if class.action == Action::OpenCall && class.level < Priority::TECHNICAL {
                Class {
                    kind: Cow::Owned(format!("{} ({})", class.kind, kind.to_lowercase())),
                    ..class
                }
            } else {
                technical(kind, class.event)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Signal, Transport};

    fn ev(code: &str, q: Qualifier) -> SignalEvent {
        SignalEvent {
            code: code.to_string(),
            name: None,
            qualifier: q,
            zone: None,
            group: None,
            user: None,
            text: None,
            time: None,
        }
    }

    fn signal(events: Vec<SignalEvent>, flags: Flags) -> Signal {
        Signal {
            id: 1,
            received_at: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            transport: Transport::Tcp,
            peer: "127.0.0.1:1".parse().unwrap(),
            protocol: "ADM-CID".into(),
            encrypted: false,
            account: "1234".into(),
            line: None,
            receiver: None,
            seq: "0001".into(),
            flags,
            subscriber: None,
            device_type: None,
            transmitted_at: None,
            event_time: None,
            events,
            xdata: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// (level, kind, action) of one new event.
    fn new(code: &str, dt: Option<&str>) -> (u8, String, Action, bool) {
        let c = classify_event(&ev(code, Qualifier::New), dt);
        (c.level.0, c.kind.into_owned(), c.action, c.alarm)
    }

    const OPEN: Action = Action::OpenCall;

    #[test]
    fn life_safety_level_0() {
        for code in [
            "CID 110", "CID 111", "CID 112", "CID 113", "CID 114", "CID 120", "CID 121", "CID 122",
            "CID 123", "CID 151", "CID 162", "SIA FA", "SIA KA", "SIA GA", "SIA PA", "SIA HA",
            "SIA SA",
        ] {
            let (l, _, a, alarm) = new(code, None);
            assert_eq!((l, a, alarm), (0, OPEN, true), "{code}");
        }
        assert_eq!(new("CID 111", None).1, "Fire");
        assert_eq!(new("CID 114", None).1, "Heat");
        assert_eq!(new("CID 151", None).1, "Gas");
        assert_eq!(new("CID 162", None).1, "Carbon monoxide");
        assert_eq!(new("CID 121", None).1, "Duress");
        assert_eq!(new("SIA HA", None).1, "Duress");
        assert_eq!(new("SIA PA", None).1, "Panic");
    }

    #[test]
    fn personal_level_1() {
        for (code, kind) in [
            ("CID 100", "Medical"),
            ("CID 101", "Personal alarm"),
            ("CID 103", "Fall"),
            ("SIA MA", "Medical"),
            ("SIA QA", "Personal alarm"),
            ("CID 646", "Help needed"),
            ("CID 130", "Burglary"),
            ("SIA BA", "Burglary"),
        ] {
            assert_eq!(new(code, None), (1, kind.to_string(), OPEN, true), "{code}");
        }
    }

    #[test]
    fn care_level_2() {
        for (code, kind) in [
            ("CID 102", "Fail to report in"),
            ("CID 641", "No activity"),
            ("CID 654", "No activity"),
            ("CID 642", "Latch-key supervision"),
            ("CID 154", "Water leakage"),
            ("CID 159", "Low temperature"),
            ("SIA NA", "No activity"),
            ("SIA WA", "Water leakage"),
            ("SIA ZA", "Low temperature"),
        ] {
            assert_eq!(new(code, None), (2, kind.to_string(), OPEN, true), "{code}");
        }
    }

    #[test]
    fn technical_level_3_is_not_a_press() {
        for (code, kind) in [
            ("CID 301", "Mains power lost"),
            ("CID 302", "Low battery"),
            ("CID 384", "Low battery"),
            ("CID 350", "Communication fault"),
            ("CID 351", "Communication fault"),
            ("CID 352", "Communication fault"),
            ("CID 353", "Communication fault"),
            ("CID 354", "Communication fault"),
            ("CID 355", "Communication fault"),
            ("CID 373", "Fire detector fault"),
            ("CID 381", "Sensor fault"),
            ("CID 144", "Tamper"),
            ("CID 305", "System trouble"),
            ("CID 608", "System trouble"),
            ("CID 250", "Supervisory"),
            ("SIA AT", "Mains power lost"),
            ("SIA YT", "Low battery"),
            ("SIA XT", "Low battery"),
            ("SIA YC", "Communication fault"),
            ("SIA LT", "Communication fault"),
            ("SIA TA", "Tamper"),
            ("SIA FT", "Fire detector fault"),
            ("SIA MT", "Technical fault"),
            ("SIA FS", "Supervisory"),
            ("SIA XL", "Radio interference"),
        ] {
            assert_eq!(
                new(code, None),
                (3, kind.to_string(), OPEN, false),
                "{code}"
            );
        }
    }

    #[test]
    fn rules_level_4() {
        for (code, rule) in [
            ("CID 602", rules::PERIODIC_TEST),
            ("CID 603", rules::PERIODIC_TEST),
            ("CID 601", rules::PERIODIC_TEST),
            ("SIA RP", rules::PERIODIC_TEST),
            ("SIA RX", rules::PERIODIC_TEST),
            ("SIA TX", rules::PERIODIC_TEST),
            ("CID 401", rules::OTHER),
            ("CID 570", rules::OTHER),
            ("CID 606", rules::OTHER),
            ("CID 645", rules::OTHER),
            ("SIA OP", rules::OTHER),
            ("SIA CL", rules::OTHER),
            ("SIA BB", rules::OTHER),
        ] {
            let (l, _, a, alarm) = new(code, None);
            assert_eq!((l, a, alarm), (4, Action::Rule(rule), false), "{code}");
        }
        assert_eq!(new("CID 602", None).1, "Periodic test");
    }

    #[test]
    fn generic_codes_take_the_device_type() {
        for code in ["CID 140", "CID 150", "SIA UA"] {
            assert_eq!(new(code, Some("smoke_detector")).0, 0, "{code}");
            assert_eq!(new(code, Some("smoke_detector")).1, "Fire");
            assert_eq!(new(code, Some("fall_detector")).1, "Fall");
            assert_eq!(new(code, Some("pendant")).1, "Personal alarm");
            assert_eq!(new(code, Some("carephone")).0, 1);
            assert_eq!(new(code, Some("door_sensor")).0, 2);
            assert_eq!(
                new(code, Some("bed_sensor")),
                (2, "Bed sensor".into(), OPEN, true)
            );
            assert_eq!(new(code, Some("panel")), (1, "Alarm".into(), OPEN, true));
            assert_eq!(new(code, None), (1, "Alarm".into(), OPEN, true));
        }
    }

    #[test]
    fn unknown_codes_reach_a_person() {
        for code in [
            "CID 999", "CID 777", "CID 160", "SIA ZZ", "SIA DA", "SIA YN", "XYZ", "",
        ] {
            assert_eq!(
                new(code, None),
                (1, "Unknown alarm".into(), OPEN, true),
                "{code}"
            );
            assert_eq!(new(code, Some("smoke_detector")).0, 0, "{code}");
            assert_eq!(new(code, Some("door_sensor")).0, 2, "{code}");
        }
    }

    #[test]
    fn button_codes_refined_by_device_type() {
        assert_eq!(new("CID 101", Some("smoke_detector")).0, 0);
        assert_eq!(new("CID 101", Some("smoke_detector")).1, "Fire");
        assert_eq!(
            new("SIA QA", Some("fall_detector")),
            (1, "Fall".into(), OPEN, true)
        );
        assert_eq!(new("CID 100", Some("epilepsy_sensor")).1, "Epilepsy alarm");
        assert_eq!(new("CID 101", Some("pendant")).1, "Personal alarm");
        // A specific code is not changed by the device type.
        assert_eq!(new("CID 302", Some("smoke_detector")).0, 3);
        assert_eq!(new("CID 602", Some("smoke_detector")).0, 4);
    }

    #[test]
    fn restores_keep_the_kind_of_their_condition() {
        let r = |code: &str, q| classify_event(&ev(code, q), None);
        for (code, q, kind) in [
            ("CID 101", Qualifier::Restore, "Personal alarm"),
            ("CID 111", Qualifier::Restore, "Fire"),
            ("CID 301", Qualifier::Restore, "Mains power lost"),
            ("SIA QH", Qualifier::Restore, "Personal alarm"),
            ("SIA MH", Qualifier::Restore, "Medical"),
            ("SIA FH", Qualifier::Restore, "Fire"),
            ("SIA FJ", Qualifier::Restore, "Fire detector fault"),
            ("SIA AR", Qualifier::Restore, "Mains power lost"),
            ("SIA YR", Qualifier::Restore, "Low battery"),
            ("SIA XR", Qualifier::Restore, "Low battery"),
            ("SIA YK", Qualifier::Restore, "Communication fault"),
            ("SIA TR", Qualifier::Restore, "Tamper"),
            ("SIA LR", Qualifier::Restore, "Communication fault"),
            // A SIA restore code is a restore whatever qualifier the event carries.
            ("SIA FH", Qualifier::New, "Fire"),
            ("SIA UH", Qualifier::Restore, "Alarm"),
            ("SIA BR", Qualifier::Restore, "Burglary"),
        ] {
            let c = r(code, q);
            assert_eq!(
                (c.level, c.kind.as_ref(), c.action, c.alarm),
                (Priority::RULE, kind, Action::Restore, false),
                "{code}"
            );
        }
        // SIA codes ending in R that are not restores stay what they are.
        assert_eq!(new("SIA OR", None).2, Action::Rule(rules::OTHER));
    }

    #[test]
    fn status_reports() {
        let s = |code: &str| classify_event(&ev(code, Qualifier::Status), None);
        let fire = s("CID 111");
        assert_eq!(
            (fire.level, fire.action, fire.alarm),
            (Priority(0), OPEN, false)
        );
        let nact = s("CID 654");
        assert_eq!((nact.level, nact.action), (Priority(2), OPEN));
        let batt = s("CID 302");
        assert_eq!(
            (batt.level, batt.action),
            (Priority::RULE, Action::Rule(rules::STATUS))
        );
        let test = s("CID 602");
        assert_eq!(test.action, Action::Rule(rules::STATUS));
    }

    #[test]
    fn flags_are_level_3_and_never_a_rule() {
        let cases = [
            (
                Flags {
                    unknown_device: true,
                    ..Flags::default()
                },
                "Unknown device",
            ),
            (
                Flags {
                    undecryptable: true,
                    ..Flags::default()
                },
                "Undecryptable device",
            ),
            (
                Flags {
                    bad_payload: true,
                    ..Flags::default()
                },
                "Unreadable alarm",
            ),
            (
                Flags {
                    unknown_device: true,
                    undecryptable: true,
                    ..Flags::default()
                },
                "Unknown device",
            ),
        ];
        for (flags, kind) in cases {
            let c = classify(&signal(Vec::new(), flags), None);
            assert_eq!(
                (c.level, c.kind.as_ref(), c.action, c.alarm, c.event),
                (Priority::TECHNICAL, kind, OPEN, false, None)
            );
        }
        let unknown = Flags {
            unknown_device: true,
            ..Flags::default()
        };
        // A periodic test or restore from an unknown device still reaches a person.
        for (code, q) in [
            ("CID 602", Qualifier::New),
            ("CID 101", Qualifier::Restore),
            ("CID 302", Qualifier::New),
        ] {
            let c = classify(&signal(vec![ev(code, q)], unknown), None);
            assert_eq!(
                (c.level, c.kind.as_ref(), c.action, c.alarm, c.event),
                (Priority::TECHNICAL, "Unknown device", OPEN, false, Some(0)),
                "{code}"
            );
        }
        // An urgent event from an unknown device keeps its urgency and says both.
        let c = classify(&signal(vec![ev("CID 111", Qualifier::New)], unknown), None);
        assert_eq!(
            (c.level, c.kind.as_ref(), c.action, c.alarm),
            (Priority(0), "Fire (unknown device)", OPEN, true)
        );
        // The length-decimal quirk is not a reason for a person.
        let quirk = Flags {
            length_decimal: true,
            ..Flags::default()
        };
        let c = classify(&signal(vec![ev("CID 602", Qualifier::New)], quirk), None);
        assert_eq!(c.action, Action::Rule(rules::PERIODIC_TEST));
    }

    #[test]
    fn no_events_and_no_flags_reach_a_person() {
        let c = classify(&signal(Vec::new(), Flags::default()), None);
        assert_eq!((c.level, c.action), (Priority::TECHNICAL, OPEN));
    }

    #[test]
    fn most_urgent_new_event_wins() {
        let s = signal(
            vec![
                ev("CID 602", Qualifier::New),
                ev("CID 111", Qualifier::Restore),
                ev("CID 302", Qualifier::New),
                ev("CID 101", Qualifier::New),
                ev("CID 103", Qualifier::New),
            ],
            Flags::default(),
        );
        let c = classify(&s, None);
        assert_eq!(
            (c.level, c.kind.as_ref(), c.event),
            (Priority(1), "Personal alarm", Some(3))
        );
        // A restore goes before a rule.
        let s = signal(
            vec![
                ev("CID 602", Qualifier::New),
                ev("SIA FH", Qualifier::Restore),
            ],
            Flags::default(),
        );
        let c = classify(&s, None);
        assert_eq!((c.action, c.event), (Action::Restore, Some(1)));
        // Only rules: the first lowest.
        let s = signal(
            vec![ev("CID 401", Qualifier::New), ev("CID 602", Qualifier::New)],
            Flags::default(),
        );
        assert_eq!(classify(&s, None).action, Action::Rule(rules::OTHER));
    }

    #[test]
    fn device_type_argument_then_signal() {
        let mut s = signal(vec![ev("CID 140", Qualifier::New)], Flags::default());
        s.device_type = Some("smoke_detector".into());
        assert_eq!(classify(&s, None).level, Priority(0));
        assert_eq!(classify(&s, Some("bed_sensor")).level, Priority(2));
    }

    #[test]
    fn every_code_is_classified_without_panic() {
        for n in 0..=999u16 {
            for q in [Qualifier::New, Qualifier::Restore, Qualifier::Status] {
                let c = classify_event(&ev(&format!("CID {n:03}"), q), None);
                assert!(c.level.0 <= 4);
                // Open Calls are levels 0-3; level 4 never opens one.
                assert_eq!(c.action == OPEN, c.level.0 <= 3, "CID {n} {q:?}");
                if let Action::Rule(r) = c.action {
                    assert!(rules::ALL.contains(&r));
                }
            }
        }
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                let code = format!("SIA {}{}", char::from(a), char::from(b));
                let c = classify_event(&ev(&code, Qualifier::New), None);
                assert_eq!(c.action == OPEN, c.level.0 <= 3, "{code}");
                // A code in the restore table is always a restore.
                if sia_qualifier([a, b]) == Qualifier::Restore {
                    assert_eq!(c.action, Action::Restore, "{code}");
                }
            }
        }
        assert_eq!(new("CID 01", None).0, 1);
        assert_eq!(new("SIA \u{e9}", None).0, 1);
    }
}
