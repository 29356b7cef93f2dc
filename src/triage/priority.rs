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
//! **Voice calls.** A call in that vakt journals itself ([`CODE_VOICE_CALL`], protocol
//! [`VOICE_PROTOCOL`]) is a level 1 "Voice call" *status*: it opens a Call like a pendant
//! press when the person has none open (a unit that only calls is a personal alarm), and
//! otherwise joins the open Call without counting as a press (raising it to level 1 when
//! it was less urgent). Its qualifier is always `status`, whatever the Signal says.
//!
//! **Flags.** A Signal from an unknown device, one that could not be decrypted, or one whose
//! payload could not be read is never handled by rule: it is level 3 ("Unknown device",
//! "Undecryptable device", "Unreadable alarm"), or more urgent when an event it carries is
//! (e.g. level 0 "Fire (unknown device)").
//!
//! **Several events.** A Signal with several events takes the one that most needs a person:
//! a new event before a restore before a rule, then the lowest level, then the first.
//!
//! **SCAIP** (SS 91100, protocols.md §3.8). A `<mrq>` is one event, its code made by
//! [`scaip_code`]: `SCAIP dddd` (device type `dty`, no status code: the alarm state),
//! `SCAIP dddd/ssss` (with status code `stc`), or [`SCAIP_RESET`] (`mty=RE`). It is *new*
//! for `mty=ME` and `RE`, a *status* report for `mty=IN` (an update on an ongoing event).
//! In the alarm state (also stc 0009 automatic alarm, 0010 manual alarm, 0110 assistance)
//! the device type decides:
//!
//! | level | SCAIP device type (dty) |
//! |---|---|
//! | 0 life-safety | 0021 gas "Gas"; 0023 smoke, 0047 fire alarm system "Fire"; 0025 "Heat"; 0026 "Carbon monoxide"; 0006 attack pendant, 0007 panic button "Panic" |
//! | 1 personal | 0002 local unit & controller, 0003 personal trigger, 0004 fixed trigger, 0045 controller, 0048 local unit, 0051 tracker "Personal alarm"; 0005 "Fall"; 0017 "Epilepsy alarm"; 0019 heart-rate "Medical"; 0030 "Man down"; 0015 "Wandering" |
//! | 2 care | 0010 activity "No activity"; 0011 "Pill dispenser"; 0012 "Bed sensor"; 0013 "Mat sensor"; 0014 "Door sensor"; 0016 "Enuresis"; 0018 "Occupancy"; 0033 flood "Water leakage"; 0034 "Bath sensor" |
//! | 3 technical | 0031 "System trouble"; 0032 link monitor "Communication fault"; 0038 "Tamper"; 0041 DC supply "Power supply fault" |
//!
//! Device types 0000 unknown, 0001 undefined, 0900-0999 vendor-defined and every type not
//! in the table take their meaning from the registry's device type, like the generic codes
//! above ("Alarm"; "Unknown alarm" for a type not in the standard's selection). The registry
//! never overrides a device type that is in the table: the `dty` names the very device that
//! raised the event, the registry only the controller's account. A status code means the
//! same whatever the device type:
//!
//! | level | SCAIP status code (stc) |
//! |---|---|
//! | 2 care | 0081 "Pill not taken" |
//! | 3 technical | 0125 tamper alarm "Tamper"; 0014 battery failure, 0016 battery low "Low battery"; 0085 "Mains power lost"; 0023 IP, 0024 mobile, 0025 POTS, 0026 primary, 0027 redundant link failure "Communication fault"; 0122 "Radio interference"; 0123 "Radio test missing"; 0900-0999 "Vendor status"; every other code "Unknown status" |
//! | restore | 0015 recharged "Low battery"; 0086 "Mains power lost"; 0112-0116 link re-established "Communication fault"; 0124 "Radio test missing"; 0070 normal state, 0092 automatic reset, 0093 manual reset, 0094 restoral: the device type's alarm |
//! | 4 rule | 0102, 0103 test transmission "Periodic test" (`periodic_test`); 0088 "Help arrived", 0111 "Check-out (help left)" (`presence`); 0117 "Lying in bed", 0119 "Movement" (`other`); `SCAIP RESET` "Device stopped waiting (reset)" (`other`) |
//!
//! A restore status code is a restore whatever the message type. An unknown or vendor status
//! code opens a Call even as an information update (`mty=IN`), so a person sees it. A reset
//! does not end the alarm: the device has stopped waiting for vakt's final answer and tries
//! its alternative (another ARC, GSM); on an open Call it is a timeline line. A code that
//! starts `SCAIP ` in any other form is an unknown code (level 1 "Unknown alarm", or the
//! registry's device type). [`scaip_needs_voice`] says which classes keep the device holding
//! for an operator's voice call; [`scaip_name`] gives the event's words.

use std::borrow::Cow;

use crate::model::plan::PlanKind;
use crate::model::{Flags, Priority, Signal, SignalEvent};
use vakt_proto::event::{Qualifier, sia_qualifier};

/// The names of the rules that handle Signals without a Call (the `rule` label of
/// `vakt_signals_by_rule_total`).
pub mod rules {
    /// Periodic and manual test reports (CID 601-605, 607, 609-614; SIA RP, RX, TX).
    pub const PERIODIC_TEST: &str = "periodic_test";
    /// A restore when no Call of that subscriber or account is open.
    pub const RESTORE: &str = "restore";
    /// A "still present" status report of a technical condition.
    pub const STATUS: &str = "status";
    /// Anything else of level 4 (open/close, bypass, listen-in, help arrived; a SCAIP
    /// reset, lying in bed, movement).
    pub const OTHER: &str = "other";
    /// Help arrived at, or left, the person (SCAIP stc 0088 presence upon alarm, 0111
    /// check-out): a line in the open Call's timeline.
    pub const PRESENCE: &str = "presence";
    /// A silence or restoration of a device in an open telecom incident (the incident is in
    /// front of the operators, not a Call per device).
    pub const INCIDENT: &str = "incident";
    /// Every rule name.
    pub const ALL: [&str; 6] = [PERIODIC_TEST, RESTORE, STATUS, OTHER, INCIDENT, PRESENCE];
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
const MAN_DOWN: &str = "Man down";
const WANDERING: &str = "Wandering";
const BOGUS_CALLER: &str = "Bogus caller";
const PILL_DISPENSER: &str = "Pill dispenser";
const PILL_NOT_TAKEN: &str = "Pill not taken";
const MAT: &str = "Mat sensor";
const ENURESIS: &str = "Enuresis";
const OCCUPANCY: &str = "Occupancy";
const BATH: &str = "Bath sensor";
const RADIO_TEST: &str = "Radio test missing";
const CHECK_OUT: &str = "Check-out (help left)";
const LYING_IN_BED: &str = "Lying in bed";
const MOVEMENT: &str = "Movement";
const DEVICE_RESET: &str = "Device stopped waiting (reset)";
const UNKNOWN_STATUS: &str = "Unknown status";
const VENDOR_STATUS: &str = "Vendor status";
const UNKNOWN_DEVICE: &str = "Unknown device";
const UNDECRYPTABLE: &str = "Undecryptable device";
const UNREADABLE: &str = "Unreadable alarm";
const UNAUTHENTICATED: &str = "Unauthenticated device";

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
/// The code of the Signal vakt journals when a voice call comes in (protocol
/// [`VOICE_PROTOCOL`]); always a status (see "Voice calls" above).
pub const CODE_VOICE_CALL: &str = "VAKT voice_call";
/// The `protocol` of Signals vakt makes itself from calls in.
pub const VOICE_PROTOCOL: &str = "vakt-voice";
/// The kind of a Call a voice call opened.
pub const VOICE_CALL: &str = "Voice call";

/// A parsed `SignalEvent::code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    Cid(u16),
    Sia([u8; 2]),
    /// A device missed its heartbeat deadline, or reports again.
    Silence,
    /// A voice call came in.
    Voice,
    /// A SCAIP `<mrq>`: device type, and status code (`None`: the alarm state).
    Scaip {
        dty: u16,
        stc: Option<u16>,
    },
    /// A SCAIP `<mrq>` with `mty=RE`.
    ScaipReset,
    Other,
}

fn parse_code(s: &str) -> Code {
    if s == CODE_COMMUNICATION_LOST || s == CODE_COMMUNICATION_RESTORED {
        return Code::Silence;
    }
    if s == SCAIP_RESET {
        return Code::ScaipReset;
    }
    if s == CODE_VOICE_CALL {
        return Code::Voice;
    }
    if let Some(n) = s.strip_prefix("CID ") {
        if let Ok(n) = n.parse::<u16>() {
            return Code::Cid(n);
        }
    } else if let Some(&[a, b]) = s.strip_prefix("SIA ").map(str::as_bytes) {
        return Code::Sia([a, b]);
    } else if let Some(rest) = s.strip_prefix("SCAIP ") {
        let (dty, stc) = match rest.split_once('/') {
            Some((dty, stc)) => (dty, Some(stc)),
            None => (rest, None),
        };
        match (scaip_number(dty), stc.map(scaip_number)) {
            (Some(dty), None) => return Code::Scaip { dty, stc: None },
            (Some(dty), Some(Some(stc))) => {
                return Code::Scaip {
                    dty,
                    stc: Some(stc),
                };
            }
            _ => {}
        }
    }
    Code::Other
}

// ---- SCAIP (SS 91100; protocols.md §3.8) ----

/// The event code of a SCAIP `<mrq>` with `mty=RE`: the device gave up waiting for the
/// ARC's final answer and takes its alternative action (another ARC, GSM). It does not mean
/// the alarm is over.
pub const SCAIP_RESET: &str = "SCAIP RESET";

/// The event code of a SCAIP `<mrq>` (`mty` ME or IN) from its device type `dty` and status
/// code `stc`, zero-padded to 4 digits: `"SCAIP 0003"` (no `stc`: the alarm state),
/// `"SCAIP 0027/0016"`. The codes are parsed as integers first, so `<dty>3</dty>` and
/// `<dty>0003</dty>` give the same code. A number over 9999 (not a SCAIP code) is written
/// as it is and classified as an unknown device type or status code.
pub fn scaip_code(dty: u16, stc: Option<u16>) -> String {
    match stc {
        None => format!("SCAIP {dty:04}"),
        Some(stc) => format!("SCAIP {dty:04}/{stc:04}"),
    }
}

/// A number as [`scaip_code`] writes it: 4 ASCII digits, or 5 without a leading zero.
fn scaip_number(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    let canonical = match b {
        [_, _, _, _] => true,
        [first, _, _, _, _] => *first != b'0',
        _ => false,
    };
    if canonical && b.iter().all(u8::is_ascii_digit) {
        s.parse().ok()
    } else {
        None
    }
}

const fn k(level: u8, kind: &'static str) -> Cond {
    Cond {
        level,
        kind,
        rule: rules::OTHER,
    }
}

const fn by_rule(rule: &'static str, kind: &'static str) -> Cond {
    Cond {
        level: 4,
        kind,
        rule,
    }
}

/// A SCAIP device type in the alarm state; `None` for 0000 unknown, 0001 undefined,
/// 0900-0999 vendor-defined and every type not in the table.
fn scaip_alarm(dty: u16) -> Option<Cond> {
    match dty {
        21 => c(0, GAS),
        23 | 47 => c(0, FIRE),
        25 => c(0, HEAT),
        26 => c(0, CO),
        6 | 7 => c(0, PANIC),
        2 | 3 | 4 | 45 | 48 | 51 => c(1, PERSONAL),
        5 => c(1, FALL),
        17 => c(1, EPILEPSY),
        19 => c(1, MEDICAL),
        30 => c(1, MAN_DOWN),
        15 => c(1, WANDERING),
        // A stranger at the door (the switch is pressed by the subscriber).
        27 => c(1, BOGUS_CALLER),
        10 => c(2, NO_ACTIVITY),
        11 => c(2, PILL_DISPENSER),
        12 => c(2, BED),
        13 => c(2, MAT),
        14 => c(2, DOOR),
        16 => c(2, ENURESIS),
        18 => c(2, OCCUPANCY),
        33 => c(2, WATER),
        34 => c(2, BATH),
        31 => c(3, SYSTEM),
        32 => c(3, COMMS),
        38 => c(3, TAMPER),
        41 => c(3, POWER),
        _ => None,
    }
}

/// What a SCAIP status code says, whatever the device type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stc {
    /// The alarm state of the device type (0009, 0010, 0110).
    Alarm,
    /// A condition (new, or still present for `mty=IN`).
    Cond(Cond),
    /// The end of a condition of this kind; `None`: of the device type's alarm.
    Restore(Option<&'static str>),
    /// Not in the table: level 3 with this kind, a Call even for `mty=IN`.
    Unknown(&'static str),
}

fn scaip_status(stc: u16) -> Stc {
    match stc {
        9 | 10 | 110 => Stc::Alarm,
        125 => Stc::Cond(k(3, TAMPER)),
        14 | 16 => Stc::Cond(k(3, BATTERY)),
        85 => Stc::Cond(k(3, MAINS)),
        23..=27 => Stc::Cond(k(3, COMMS)),
        122 => Stc::Cond(k(3, RADIO)),
        123 => Stc::Cond(k(3, RADIO_TEST)),
        81 => Stc::Cond(k(2, PILL_NOT_TAKEN)),
        15 => Stc::Restore(Some(BATTERY)),
        86 => Stc::Restore(Some(MAINS)),
        112..=116 => Stc::Restore(Some(COMMS)),
        124 => Stc::Restore(Some(RADIO_TEST)),
        70 | 92 | 93 | 94 => Stc::Restore(None),
        102 | 103 => Stc::Cond(by_rule(rules::PERIODIC_TEST, PERIODIC)),
        88 => Stc::Cond(by_rule(rules::PRESENCE, HELP_ARRIVED)),
        111 => Stc::Cond(by_rule(rules::PRESENCE, CHECK_OUT)),
        117 => Stc::Cond(by_rule(rules::OTHER, LYING_IN_BED)),
        119 => Stc::Cond(by_rule(rules::OTHER, MOVEMENT)),
        900..=999 => Stc::Unknown(VENDOR_STATUS),
        _ => Stc::Unknown(UNKNOWN_STATUS),
    }
}

/// The condition of a SCAIP event, and the qualifier its status code imposes (a restore;
/// or new for an unknown status code, so a person sees it).
fn scaip(dty: u16, stc: Option<u16>, device_type: Option<&str>) -> (Cond, Option<Qualifier>) {
    let alarm = || {
        scaip_alarm(dty).unwrap_or_else(|| generic(device_type, matches!(dty, 0 | 1 | 900..=999)))
    };
    match stc.map_or(Stc::Alarm, scaip_status) {
        Stc::Alarm => (alarm(), None),
        Stc::Cond(cond) => (cond, None),
        Stc::Restore(kind) => {
            let kind = kind.unwrap_or_else(|| alarm().kind);
            (k(4, kind), Some(Qualifier::Restore))
        }
        // A status code not in the table from a life-safety detector (smoke, heat, gas,
        // CO, fire system, panic) is taken as its alarm: a person hears it at once.
        Stc::Unknown(kind) => match scaip_alarm(dty) {
            Some(cond) if cond.level == 0 => (cond, Some(Qualifier::New)),
            _ => (k(3, kind), Some(Qualifier::New)),
        },
    }
}

/// Builds the SCAIP name tables: device types, status codes, and every "device: status".
macro_rules! scaip_names {
    (devices: [$(($d:literal, $dn:literal)),* $(,)?], statuses: $st:tt $(,)?) => {
        /// SCAIP device types and their names; the first row (0000) is the fallback.
        const SCAIP_DEVICES: &[(u16, &str)] = &[$(($d, $dn)),*];
        /// SCAIP status codes and their words (after a device name).
        const SCAIP_STATUSES: &[(u16, &str)] = scaip_names!(@statuses $st);
        /// `[i][j]`: device `i` of `SCAIP_DEVICES`, status `j` of `SCAIP_STATUSES`.
        const SCAIP_DEVICE_STATUS: &[&[&str]] = &[$(scaip_names!(@row $dn $st)),*];
    };
    (@statuses [$(($s:literal, $sn:literal)),* $(,)?]) => { &[$(($s, $sn)),*] };
    (@row $dn:literal [$(($s:literal, $sn:literal)),* $(,)?]) => {
        &[$(concat!($dn, ": ", $sn)),*]
    };
}

scaip_names! {
    devices: [
        (0, "Device"),
        (1, "Device"),
        (2, "Local unit"),
        (3, "Personal trigger"),
        (4, "Fixed trigger"),
        (5, "Fall detector"),
        (6, "Attack pendant"),
        (7, "Panic button"),
        (10, "Activity detector"),
        (11, "Pill dispenser"),
        (12, "Bed monitor"),
        (13, "Mat sensor"),
        (14, "Door sensor"),
        (15, "Wandering sensor"),
        (16, "Enuresis detector"),
        (17, "Epilepsy detector"),
        (18, "Occupancy detector"),
        (19, "Heart-rate monitor"),
        (21, "Gas detector"),
        (23, "Smoke detector"),
        (25, "Heat detector"),
        (26, "CO detector"),
        (27, "Bogus-caller switch"),
        (30, "Man-down detector"),
        (31, "System monitor"),
        (32, "Link monitor"),
        (33, "Flood detector"),
        (34, "Bath sensor"),
        (38, "Tamper switch"),
        (41, "Power supply"),
        (45, "Controller"),
        (47, "Fire alarm system"),
        (48, "Local unit"),
        (51, "Tracking device"),
        (900, "Vendor device"),
    ],
    statuses: [
        (9, "automatic alarm"),
        (10, "manual alarm"),
        (110, "assistance"),
        (125, "tamper alarm"),
        (14, "battery failure"),
        (15, "battery recharged"),
        (16, "battery low"),
        (85, "mains power lost"),
        (86, "mains power restored"),
        (23, "IP link failure"),
        (24, "mobile link failure"),
        (25, "phone line failure"),
        (26, "primary link failure"),
        (27, "backup link failure"),
        (112, "IP link restored"),
        (113, "mobile link restored"),
        (114, "phone line restored"),
        (115, "primary link restored"),
        (116, "backup link restored"),
        (122, "radio interference"),
        (123, "radio test missing"),
        (124, "radio test restored"),
        (81, "pill not taken"),
        (102, "test (primary link)"),
        (103, "test (backup link)"),
        (88, "help arrived"),
        (111, "check-out"),
        (117, "lying in bed"),
        (119, "movement"),
        (92, "reset (automatic)"),
        (93, "reset (manual)"),
        (94, "restoral"),
        (70, "normal state"),
    ],
}

/// The words for a SCAIP event's `name`: the device ("Personal trigger"), or the device and
/// its status ("Fall detector: battery low"). An unknown or undefined device type is
/// "Device", a vendor-defined one (0900-0999) "Vendor device"; an unknown status code gives
/// the device alone. `None` when neither says anything (an unknown device type in the alarm
/// state or with an unknown status code).
pub fn scaip_name(dty: u16, stc: Option<u16>) -> Option<&'static str> {
    let key = if (900..=999).contains(&dty) { 900 } else { dty };
    let row = SCAIP_DEVICES
        .iter()
        .position(|&(d, _)| d == key)
        .unwrap_or(0);
    let status = stc.and_then(|stc| SCAIP_STATUSES.iter().position(|&(s, _)| s == stc));
    match status {
        Some(j) => SCAIP_DEVICE_STATUS.get(row)?.get(j).copied(),
        None if row <= 1 => None,
        None => SCAIP_DEVICES.get(row).map(|&(_, name)| name),
    }
}

/// Whether vakt keeps a SCAIP device holding (snu 4) until an operator takes the Call, then
/// answers `snu 0, mre 1` so the device places its voice call: a new alarm of levels 0-2
/// that opens a Call. Technical faults, restores, rules and information updates (`mty=IN`)
/// are answered snu 0, without voice, once the Signal is durable.
pub fn scaip_needs_voice(class: &Class) -> bool {
    class.action == Action::OpenCall && class.level <= Priority::CARE && class.alarm
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
    // The condition (`Err(known)`: a generic or unknown code), and the qualifier the code
    // itself imposes (a SIA or SCAIP restore code; an unknown SCAIP status code).
    let (cond, forced) = match parse_code(&ev.code) {
        Code::Cid(n) => (cid(n).ok_or(matches!(n, 140 | 150)), None),
        Code::Sia(c) => {
            let restore = sia_qualifier(c) == Qualifier::Restore;
            let c = if restore { sia_restored(c) } else { c };
            (
                sia(c).ok_or(&c == b"UA"),
                restore.then_some(Qualifier::Restore),
            )
        }
        Code::Scaip { dty, stc } => {
            let (cond, forced) = scaip(dty, stc, device_type);
            // The device type is already in the condition: the registry does not refine it.
            return qualify(cond, forced.unwrap_or(ev.qualifier));
        }
        Code::ScaipReset => (Ok(by_rule(rules::OTHER, DEVICE_RESET)), None),
        // A person on the line: whatever the device, never refined into another kind.
        Code::Voice => return qualify(k(1, VOICE_CALL), Qualifier::Status),
        Code::Silence => (Ok(k(3, COMMUNICATION_LOST)), None),
        Code::Other => (Err(false), None),
    };
    let cond = match cond {
        Ok(cond) => refine(cond, device_type),
        Err(known) => generic(device_type, known),
    };
    qualify(cond, forced.unwrap_or(ev.qualifier))
}

/// A condition with its qualifier: what triage does (see "Qualifiers" in the module doc).
fn qualify(cond: Cond, qualifier: Qualifier) -> Class {
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
/// `(name, kind)`: `unauthenticated` (it claims a registered device without proving it)
/// before `unknown_device` before `undecryptable` before `bad_payload`.
pub fn flag(flags: &Flags) -> Option<(&'static str, &'static str)> {
    if flags.unauthenticated {
        Some(("unauthenticated", UNAUTHENTICATED))
    } else if flags.unknown_device {
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

/// The kind of alarm a response plan has steps for ([`PlanKind`]), from a Call's kind in
/// words (as [`classify`] names it; a flag's words in brackets, as in "Fire (unknown
/// device)", are ignored) and its level: fire, heat, gas and carbon monoxide are `fire`; a
/// fall or man down `fall`; a pendant, medical, epilepsy, panic, duress, help needed, a
/// voice call or a generic alarm `personal`; a door sensor or wandering `wandering`; no
/// activity, fail to report in, latch-key supervision, bed, mat and bath sensors and an
/// occupancy report `inactivity`; every other kind of level 3 (a fault, a silent device, an
/// unknown device) `technical`; the rest `other`.
pub fn plan_kind(kind: &str, level: Priority) -> PlanKind {
    let base = kind.split(" (").next().unwrap_or(kind);
    match base {
        FIRE | HEAT | GAS | CO => PlanKind::Fire,
        FALL | MAN_DOWN => PlanKind::Fall,
        PERSONAL | MEDICAL | EPILEPSY | PANIC | DURESS | HELP | ALARM | VOICE_CALL => {
            PlanKind::Personal
        }
        DOOR | WANDERING => PlanKind::Wandering,
        NO_ACTIVITY | FAIL_TO_REPORT | LATCH_KEY | BED | MAT | BATH | OCCUPANCY => {
            PlanKind::Inactivity
        }
        _ if level == Priority::TECHNICAL => PlanKind::Technical,
        _ => PlanKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Signal;
    use crate::model::testing::{self, event as ev};

    fn signal(events: Vec<SignalEvent>, flags: Flags) -> Signal {
        Signal {
            flags,
            events,
            ..testing::signal()
        }
    }

    /// (level, kind, action) of one new event.
    fn new(code: &str, dt: Option<&str>) -> (u8, String, Action, bool) {
        let c = classify_event(&ev(code, Qualifier::New), dt);
        (c.level.0, c.kind.into_owned(), c.action, c.alarm)
    }

    const OPEN: Action = Action::OpenCall;

    #[test]
    fn a_calls_kind_picks_the_steps_of_its_kind_of_alarm_in_a_plan() {
        // Codes as devices send them, through the classification, to the plan's kind.
        let kind_of = |code: &str, dt: Option<&str>| {
            let c = classify_event(&ev(code, Qualifier::New), dt);
            plan_kind(&c.kind, c.level)
        };
        for (code, dt, want) in [
            ("CID 111", None, PlanKind::Fire),
            ("CID 151", None, PlanKind::Fire),
            ("CID 101", Some("smoke_detector"), PlanKind::Fire),
            ("CID 101", Some("fall_detector"), PlanKind::Fall),
            ("CID 103", None, PlanKind::Fall),
            ("CID 101", None, PlanKind::Personal),
            ("CID 100", None, PlanKind::Personal),
            ("SIA PA", None, PlanKind::Personal),
            ("CID 140", Some("door_sensor"), PlanKind::Wandering),
            ("CID 641", None, PlanKind::Inactivity),
            ("CID 102", None, PlanKind::Inactivity),
            ("CID 301", None, PlanKind::Technical),
            ("CID 154", None, PlanKind::Other),
            ("CID 130", None, PlanKind::Other),
        ] {
            assert_eq!(kind_of(code, dt), want, "{code} {dt:?}");
        }
        // The flag's words in brackets do not hide the kind; a silent device is technical.
        assert_eq!(
            plan_kind("Fire (unknown device)", Priority::LIFE_SAFETY),
            PlanKind::Fire
        );
        assert_eq!(
            plan_kind(COMMUNICATION_LOST, Priority::TECHNICAL),
            PlanKind::Technical
        );
        assert_eq!(
            plan_kind(UNKNOWN_DEVICE, Priority::TECHNICAL),
            PlanKind::Technical
        );
        assert_eq!(plan_kind(VOICE_CALL, Priority(1)), PlanKind::Personal);
        assert_eq!(plan_kind(UNKNOWN_ALARM, Priority(1)), PlanKind::Other);
    }

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
            (
                Flags {
                    unauthenticated: true,
                    ..Flags::default()
                },
                "Unauthenticated device",
            ),
            (
                Flags {
                    unknown_device: true,
                    unauthenticated: true,
                    ..Flags::default()
                },
                "Unauthenticated device",
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
        // A restore that does not prove its device restores nothing: a person looks at it.
        let unauthenticated = Flags {
            unauthenticated: true,
            ..Flags::default()
        };
        let c = classify(
            &signal(vec![ev("CID 101", Qualifier::Restore)], unauthenticated),
            None,
        );
        assert_eq!((c.level, c.action), (Priority::TECHNICAL, OPEN));
        let c = classify(
            &signal(vec![ev("CID 101", Qualifier::New)], unauthenticated),
            None,
        );
        assert_eq!(
            (c.level, c.kind.as_ref(), c.alarm),
            (Priority(1), "Personal alarm (unauthenticated device)", true)
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

    // ---- SCAIP ----

    /// (level, kind, action, alarm) of a SCAIP event with qualifier `q`.
    fn scaip_q(dty: u16, stc: Option<u16>, q: Qualifier) -> (u8, String, Action, bool) {
        let c = classify_event(&ev(&scaip_code(dty, stc), q), None);
        (c.level.0, c.kind.into_owned(), c.action, c.alarm)
    }

    /// The same for a new event (`mty=ME`).
    fn me(dty: u16, stc: Option<u16>) -> (u8, String, Action, bool) {
        scaip_q(dty, stc, Qualifier::New)
    }

    /// The alarm state: no status code, automatic alarm, manual alarm, assistance.
    const ALARM_STATES: [Option<u16>; 4] = [None, Some(9), Some(10), Some(110)];

    #[test]
    fn scaip_codes_are_zero_padded_and_parsed_strictly() {
        assert_eq!(scaip_code(3, None), "SCAIP 0003");
        assert_eq!(scaip_code(27, Some(16)), "SCAIP 0027/0016");
        assert_eq!(scaip_code(950, Some(125)), "SCAIP 0950/0125");
        assert_eq!(parse_code("SCAIP 0003"), Code::Scaip { dty: 3, stc: None });
        assert_eq!(
            parse_code("SCAIP 0027/0016"),
            Code::Scaip {
                dty: 27,
                stc: Some(16)
            }
        );
        assert_eq!(parse_code("SCAIP RESET"), Code::ScaipReset);
        assert_eq!(parse_code(SCAIP_RESET), Code::ScaipReset);
        // Every code scaip_code writes reads back, also the numbers over 9999.
        for dty in [0, 1, 3, 27, 900, 950, 999, 1000, 9999, 10000, 65535] {
            for stc in [
                None,
                Some(0),
                Some(16),
                Some(125),
                Some(999),
                Some(9999),
                Some(65535),
            ] {
                let code = scaip_code(dty, stc);
                assert_eq!(parse_code(&code), Code::Scaip { dty, stc }, "{code}");
            }
        }
        // Anything else that starts "SCAIP" is an unknown code: a person sees it.
        for bad in [
            "SCAIP 3", // bare numbers are not what the receiver writes
            "SCAIP 03",
            "SCAIP 003",
            "SCAIP 00003",
            "SCAIP 65536",
            "SCAIP +003",
            "SCAIP -003",
            "SCAIP 0x03",
            "SCAIP \u{663}\u{663}\u{663}\u{663}",
            "SCAIP 0003/",
            "SCAIP 0003/16",
            "SCAIP /0016",
            "SCAIP 0003/0016/0001",
            "SCAIP 0003 ",
            " SCAIP 0003",
            "SCAIP  0003",
            "scaip 0003",
            "SCAIP reset",
            "SCAIP RESET ",
            "SCAIP",
            "SCAIP ",
        ] {
            assert_eq!(parse_code(bad), Code::Other, "{bad:?}");
            assert_eq!(
                new(bad, None),
                (1, "Unknown alarm".into(), OPEN, true),
                "{bad:?}"
            );
            assert_eq!(new(bad, Some("smoke_detector")).0, 0, "{bad:?}");
        }
    }

    #[test]
    fn scaip_life_safety_level_0() {
        for (dty, kind) in [
            (21, "Gas"),
            (23, "Fire"),
            (25, "Heat"),
            (26, "Carbon monoxide"),
            (47, "Fire"),
            (6, "Panic"),
            (7, "Panic"),
        ] {
            for stc in ALARM_STATES {
                assert_eq!(me(dty, stc), (0, kind.into(), OPEN, true), "{dty} {stc:?}");
            }
        }
    }

    #[test]
    fn scaip_personal_level_1() {
        for (dty, kind) in [
            (2, "Personal alarm"),
            (3, "Personal alarm"),
            (4, "Personal alarm"),
            (45, "Personal alarm"),
            (48, "Personal alarm"),
            (51, "Personal alarm"),
            (5, "Fall"),
            (17, "Epilepsy alarm"),
            (19, "Medical"),
            (30, "Man down"),
            (15, "Wandering"),
        ] {
            for stc in ALARM_STATES {
                assert_eq!(me(dty, stc), (1, kind.into(), OPEN, true), "{dty} {stc:?}");
            }
        }
    }

    #[test]
    fn scaip_care_level_2() {
        for (dty, kind) in [
            (10, "No activity"),
            (11, "Pill dispenser"),
            (12, "Bed sensor"),
            (13, "Mat sensor"),
            (14, "Door sensor"),
            (16, "Enuresis"),
            (18, "Occupancy"),
            (33, "Water leakage"),
            (34, "Bath sensor"),
        ] {
            for stc in ALARM_STATES {
                assert_eq!(me(dty, stc), (2, kind.into(), OPEN, true), "{dty} {stc:?}");
            }
        }
        // Pill not taken, whatever the device.
        for dty in [11, 2, 0] {
            assert_eq!(me(dty, Some(81)), (2, "Pill not taken".into(), OPEN, true));
        }
    }

    #[test]
    fn scaip_technical_level_3_is_not_a_press() {
        let tech = |kind: &str| (3, kind.to_string(), OPEN, false);
        for (dty, kind) in [
            (31, "System trouble"),
            (32, "Communication fault"),
            (38, "Tamper"),
            (41, "Power supply fault"),
        ] {
            for stc in ALARM_STATES {
                assert_eq!(me(dty, stc), tech(kind), "{dty} {stc:?}");
            }
        }
        // Status codes say the same whatever the device type: a pendant's low battery is
        // technical, not a press.
        for dty in [3, 5, 23, 2, 0, 950] {
            for (stc, kind) in [
                (125, "Tamper"),
                (14, "Low battery"),
                (16, "Low battery"),
                (85, "Mains power lost"),
                (23, "Communication fault"),
                (24, "Communication fault"),
                (25, "Communication fault"),
                (26, "Communication fault"),
                (27, "Communication fault"),
                (122, "Radio interference"),
                (123, "Radio test missing"),
            ] {
                assert_eq!(me(dty, Some(stc)), tech(kind), "{dty} {stc}");
            }
        }
        // The spec's own example: a bogus-caller switch with a low battery.
        assert_eq!(me(27, Some(16)), tech("Low battery"));
    }

    #[test]
    fn scaip_unknown_device_types_take_the_registry_type() {
        // 0000 unknown, 0001 undefined, vendor-defined: "Alarm"; a type vakt does not know:
        // "Unknown alarm". Level 1 either way: a person sees it.
        for dty in [0, 1, 900, 950, 999] {
            for stc in ALARM_STATES {
                assert_eq!(me(dty, stc), (1, "Alarm".into(), OPEN, true), "{dty}");
            }
        }
        assert_eq!(me(27, None), (1, "Bogus caller".into(), OPEN, true));
        for dty in [8, 20, 37, 52, 899, 1000, 9999, 65535] {
            assert_eq!(
                me(dty, None),
                (1, "Unknown alarm".into(), OPEN, true),
                "{dty}"
            );
        }
        let with = |dty, dt| {
            let mut s = signal(
                vec![ev(&scaip_code(dty, None), Qualifier::New)],
                Flags::default(),
            );
            s.protocol = "SCAIP".into();
            let c = classify(&s, dt);
            (c.level.0, c.kind.into_owned(), c.action, c.alarm)
        };
        assert_eq!(
            with(950, Some("smoke_detector")),
            (0, "Fire".into(), OPEN, true)
        );
        assert_eq!(
            with(0, Some("fall_detector")),
            (1, "Fall".into(), OPEN, true)
        );
        assert_eq!(with(1, Some("door_sensor")).0, 2);
        assert_eq!(with(20, Some("pendant")).1, "Personal alarm");
        // A device type in the table is not overridden by the registry's (the account's).
        assert_eq!(
            with(3, Some("smoke_detector")),
            (1, "Personal alarm".into(), OPEN, true)
        );
        assert_eq!(with(23, Some("pendant")), (0, "Fire".into(), OPEN, true));
    }

    #[test]
    fn scaip_unknown_status_codes_reach_a_person() {
        // From a life-safety detector, a status vakt does not know is its alarm.
        for (dty, kind) in [
            (23, "Fire"),
            (21, "Gas"),
            (26, "Carbon monoxide"),
            (7, "Panic"),
        ] {
            for stc in [0, 6, 11, 899, 950] {
                for q in [Qualifier::New, Qualifier::Status] {
                    assert_eq!(
                        scaip_q(dty, Some(stc), q),
                        (0, kind.into(), OPEN, true),
                        "{dty} {stc} {q:?}"
                    );
                }
            }
        }
        for dty in [3, 2, 0, 950] {
            for (stc, kind) in [
                (0, "Unknown status"),
                (1, "Unknown status"),
                (6, "Unknown status"),
                (11, "Unknown status"),
                (83, "Unknown status"),
                (899, "Unknown status"),
                (1000, "Unknown status"),
                (9999, "Unknown status"),
                (65535, "Unknown status"),
                (900, "Vendor status"),
                (950, "Vendor status"),
                (999, "Vendor status"),
            ] {
                // Even as an information update, it opens a Call.
                for q in [Qualifier::New, Qualifier::Status] {
                    assert_eq!(
                        scaip_q(dty, Some(stc), q),
                        (3, kind.into(), OPEN, false),
                        "{dty} {stc} {q:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn scaip_restores_end_their_condition() {
        let restore = |kind: &str| (4, kind.to_string(), Action::Restore, false);
        for (dty, stc, kind) in [
            (3, 15, "Low battery"),
            (2, 86, "Mains power lost"),
            (2, 112, "Communication fault"),
            (2, 113, "Communication fault"),
            (2, 114, "Communication fault"),
            (2, 115, "Communication fault"),
            (2, 116, "Communication fault"),
            (14, 124, "Radio test missing"),
            // Resets, restoral and normal state end the device type's alarm.
            (5, 92, "Fall"),
            (23, 93, "Fire"),
            (3, 94, "Personal alarm"),
            (38, 70, "Tamper"),
            (10, 94, "No activity"),
            (0, 94, "Alarm"),
            (950, 92, "Alarm"),
            (20, 70, "Unknown alarm"),
        ] {
            // A restore code is a restore whatever the message type.
            for q in [Qualifier::New, Qualifier::Status] {
                assert_eq!(
                    scaip_q(dty, Some(stc), q),
                    restore(kind),
                    "{dty} {stc} {q:?}"
                );
            }
        }
        // The restore of a vendor device's alarm takes the registry's type, like its alarm.
        let c = classify_event(
            &ev(&scaip_code(950, Some(92)), Qualifier::New),
            Some("smoke_detector"),
        );
        assert_eq!((c.kind.as_ref(), c.action), ("Fire", Action::Restore));
        // The kind matches the kind of the Call the condition opened.
        assert_eq!(me(2, Some(85)).1, me(2, Some(86)).1);
        assert_eq!(me(2, Some(16)).1, me(2, Some(15)).1);
        assert_eq!(me(2, Some(14)).1, me(2, Some(15)).1);
        assert_eq!(me(2, Some(27)).1, me(2, Some(116)).1);
        assert_eq!(me(2, Some(123)).1, me(2, Some(124)).1);
        assert_eq!(me(5, None).1, me(5, Some(93)).1);
    }

    #[test]
    fn scaip_rules_level_4() {
        let rule = |r: &'static str, kind: &str| (4, kind.to_string(), Action::Rule(r), false);
        for (dty, stc, expected) in [
            (2, 102, rule(rules::PERIODIC_TEST, "Periodic test")),
            (2, 103, rule(rules::PERIODIC_TEST, "Periodic test")),
            (2, 88, rule(rules::PRESENCE, "Help arrived")),
            (3, 88, rule(rules::PRESENCE, "Help arrived")),
            (2, 111, rule(rules::PRESENCE, "Check-out (help left)")),
            (12, 117, rule(rules::OTHER, "Lying in bed")),
            (10, 119, rule(rules::OTHER, "Movement")),
        ] {
            assert_eq!(me(dty, Some(stc)), expected, "{dty} {stc}");
        }
        assert_eq!(
            new(SCAIP_RESET, None),
            rule(rules::OTHER, "Device stopped waiting (reset)")
        );
        // A reset from an unknown device still reaches a person.
        let unknown = Flags {
            unknown_device: true,
            ..Flags::default()
        };
        let c = classify(
            &signal(vec![ev(SCAIP_RESET, Qualifier::New)], unknown),
            None,
        );
        assert_eq!((c.level, c.action), (Priority::TECHNICAL, OPEN));
        assert!(rules::ALL.contains(&rules::PRESENCE));
    }

    #[test]
    fn scaip_information_updates_are_not_presses() {
        // mty=IN of a fall: opens or merges like the fall, but is not a press.
        assert_eq!(
            scaip_q(5, None, Qualifier::Status),
            (1, "Fall".into(), OPEN, false)
        );
        assert_eq!(scaip_q(23, Some(9), Qualifier::Status).0, 0);
        // Of a technical condition or a rule: the status rule.
        assert_eq!(
            scaip_q(3, Some(16), Qualifier::Status).2,
            Action::Rule(rules::STATUS)
        );
        assert_eq!(
            scaip_q(2, Some(88), Qualifier::Status).2,
            Action::Rule(rules::STATUS)
        );
    }

    #[test]
    fn scaip_voice_for_new_alarms_only() {
        let voice =
            |dty, stc, q| scaip_needs_voice(&classify_event(&ev(&scaip_code(dty, stc), q), None));
        let n = Qualifier::New;
        assert!(voice(5, None, n), "fall");
        assert!(voice(23, None, n), "smoke");
        assert!(voice(3, Some(10), n), "manual alarm");
        assert!(voice(10, None, n), "no activity");
        assert!(voice(0, None, n), "an unknown device's alarm");
        assert!(!voice(5, None, Qualifier::Status), "information update");
        assert!(!voice(3, Some(16), n), "battery low");
        assert!(!voice(31, None, n), "system monitor");
        assert!(!voice(3, Some(125), n), "tamper");
        assert!(!voice(3, Some(6), n), "unknown status");
        assert!(!voice(2, Some(86), n), "restore");
        assert!(!voice(5, Some(92), n), "reset");
        assert!(!voice(2, Some(88), n), "presence");
        assert!(!voice(2, Some(102), n), "test");
        let reset = classify_event(&ev(SCAIP_RESET, n), None);
        assert!(!scaip_needs_voice(&reset));
        // Flags: an urgent alarm from an unknown device keeps its voice call; a flagged
        // technical Signal does not get one.
        let unknown = Flags {
            unknown_device: true,
            ..Flags::default()
        };
        let fall = classify(&signal(vec![ev(&scaip_code(5, None), n)], unknown), None);
        assert_eq!(fall.kind, "Fall (unknown device)");
        assert!(scaip_needs_voice(&fall));
        let test = classify(
            &signal(vec![ev(&scaip_code(2, Some(102)), n)], unknown),
            None,
        );
        assert!(!scaip_needs_voice(&test));
    }

    #[test]
    fn scaip_names() {
        assert_eq!(scaip_name(3, None), Some("Personal trigger"));
        assert_eq!(scaip_name(5, Some(16)), Some("Fall detector: battery low"));
        assert_eq!(
            scaip_name(27, Some(16)),
            Some("Bogus-caller switch: battery low")
        );
        assert_eq!(
            scaip_name(23, Some(9)),
            Some("Smoke detector: automatic alarm")
        );
        assert_eq!(scaip_name(2, Some(88)), Some("Local unit: help arrived"));
        // An unknown status: the device alone.
        assert_eq!(scaip_name(23, Some(6)), Some("Smoke detector"));
        assert_eq!(scaip_name(23, Some(950)), Some("Smoke detector"));
        // An unknown, undefined or vendor device.
        assert_eq!(scaip_name(0, None), None);
        assert_eq!(scaip_name(1, Some(6)), None);
        assert_eq!(scaip_name(20, None), None);
        assert_eq!(scaip_name(0, Some(16)), Some("Device: battery low"));
        assert_eq!(scaip_name(20, Some(85)), Some("Device: mains power lost"));
        assert_eq!(scaip_name(950, None), Some("Vendor device"));
        assert_eq!(
            scaip_name(999, Some(16)),
            Some("Vendor device: battery low")
        );
        assert_eq!(scaip_name(65535, Some(65535)), None);
    }

    #[test]
    fn scaip_name_tables_match_the_classification() {
        assert_eq!(SCAIP_DEVICES[0].0, 0, "row 0 is the fallback");
        assert_eq!(SCAIP_DEVICE_STATUS.len(), SCAIP_DEVICES.len());
        for (i, row) in SCAIP_DEVICE_STATUS.iter().enumerate() {
            assert_eq!(row.len(), SCAIP_STATUSES.len());
            for name in *row {
                // Short enough for one line of the operator's screen.
                assert!(name.len() <= 48, "{name}");
            }
            let d = SCAIP_DEVICES[i].0;
            assert_eq!(
                SCAIP_DEVICES.iter().filter(|(x, _)| *x == d).count(),
                1,
                "dty {d} twice"
            );
        }
        // Every status with a name is classified, and every classified status has a name.
        for stc in 0..=1000 {
            let named = SCAIP_STATUSES.iter().filter(|(s, _)| *s == stc).count();
            let known = !matches!(scaip_status(stc), Stc::Unknown(_));
            assert_eq!(named, usize::from(known), "stc {stc}");
        }
        // Every device type in the alarm table has a name.
        for dty in 0..=1000 {
            if scaip_alarm(dty).is_some() {
                assert!(scaip_name(dty, None).is_some(), "dty {dty}");
            }
        }
    }

    #[test]
    fn every_scaip_code_is_classified_without_panic() {
        let rules_stc = [102, 103, 88, 111, 117, 119];
        let restore_stc = [15, 86, 112, 113, 114, 115, 116, 124, 70, 92, 93, 94];
        let dtys = (0..=60).chain([899, 900, 950, 999, 1000, 9999, 65535]);
        let stcs = || std::iter::once(None).chain((0..=1000).chain([9999, 65535]).map(Some));
        for dty in dtys {
            for stc in stcs() {
                for q in [Qualifier::New, Qualifier::Status] {
                    let code = scaip_code(dty, stc);
                    let c = classify_event(&ev(&code, q), None);
                    assert_eq!(c.action == OPEN, c.level.0 <= 3, "{code} {q:?}");
                    if let Action::Rule(r) = c.action {
                        assert!(rules::ALL.contains(&r), "{code}");
                    }
                    let s = stc.unwrap_or(u16::MAX);
                    if restore_stc.contains(&s) {
                        assert_eq!(c.action, Action::Restore, "{code} {q:?}");
                    } else if q == Qualifier::New && !rules_stc.contains(&s) {
                        // Everything else that is new reaches a person.
                        assert_eq!(c.action, OPEN, "{code}");
                    }
                    assert!(!c.kind.is_empty(), "{code}");
                    if scaip_needs_voice(&c) {
                        assert!(c.level <= Priority::CARE && c.alarm, "{code}");
                    }
                }
            }
        }
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
