//! Which events are device faults for an installer, and which end one.
//!
//! Every code here is a level-3 technical code in `triage::priority` (a test checks it), but
//! not every technical code is a fault for an installer: communication faults belong to
//! supervision and the telecom incidents, and resets, programming changes, radio jamming and
//! clock events need no visit.
//!
//! | fault | Contact ID | SIA DC-03 (restore) |
//! |---|---|---|
//! | low battery | 302, 309, 311, 338, 384 | YT (YR), XT (XR) |
//! | mains loss | 301, 342 | AT (AR) |
//! | tamper | 137, 144, 145, 316, 341, 383 | TA (TR) |
//! | device failure | 141-143, 147, 300, 303, 304, 307, 310, 312, 314, 320-327, 330-334, 337, 343, 370-373, 375, 376, 380-382, 385-389, 391-394 | YP (YQ), FT (FJ), YX, ET (ER), YA (YH), zone troubles BT GT HT KT MT PT QT ST UT WT ZT (their `J` restores) |
//!
//! SCAIP (SS 91100 status codes `stc`, device types `dty`): low battery 0014, 0016 (0015
//! recharged); mains loss 0085 (0086); tamper 0125, and the alarm of a tamper device (dty
//! 0038); device failure: radio test transmission missing 0123 (0124), the alarm of a system
//! monitor (0031) or a DC power supply (0041). A reset or restoral (0070, 0092-0094) of a
//! fault device type ends its fault. Link failures 0023-0027 are supervision's.
//!
//! Not faults: 305/313/339 resets, 306 programming changed, 308 shutdown, 335/336 printer,
//! 344 radio jamming, 345 encryption changed, 350-359 communication, 374 exit error, 377/378
//! zone logic, 608 "test with trouble" (the trouble is reported by its own code); SIA YC, YS,
//! LT, NT, XQ, XL and their restores; vakt's `communication_lost`.
//!
//! **Qualifiers.** Contact ID qualifier 3 and the SIA restore codes (the codec's restore
//! table) are restores: back to normal. A *new* event and a *status* report ("still
//! present") are the fault: a status report with no open order makes one (the order of
//! the earlier report may have been closed while the fault stayed).

use crate::model::{Signal, SignalEvent};
use vakt_proto::event::{MAX_EVENTS, Qualifier, sia_qualifier};

use super::FaultKind;

/// The fault of a Contact ID code (its new or status form).
fn cid(code: u16) -> Option<FaultKind> {
    use FaultKind::*;
    Some(match code {
        302 | 309 | 311 | 338 | 384 => LowBattery,
        301 | 342 => MainsLoss,
        137 | 144 | 145 | 316 | 341 | 383 => Tamper,
        141..=143
        | 147
        | 300
        | 303
        | 304
        | 307
        | 310
        | 312
        | 314
        | 320..=327
        | 330..=334
        | 337
        | 343
        | 370..=373
        | 375
        | 376
        | 380..=382
        | 385..=389
        | 391..=394 => DeviceFailure,
        _ => return None,
    })
}

/// The fault of a SIA code that is not a restore.
fn sia(code: [u8; 2]) -> Option<FaultKind> {
    use FaultKind::*;
    Some(match &code {
        b"YT" | b"XT" => LowBattery,
        b"AT" => MainsLoss,
        b"TA" => Tamper,
        b"YP" | b"FT" | b"YX" | b"ET" | b"YA" => DeviceFailure,
        [
            b'B' | b'G' | b'H' | b'K' | b'M' | b'P' | b'Q' | b'S' | b'U' | b'W' | b'Z',
            b'T',
        ] => DeviceFailure,
        _ => return None,
    })
}

/// The fault a SIA restore code ends.
fn sia_restore(code: [u8; 2]) -> Option<FaultKind> {
    match &code {
        b"YR" | b"XR" => Some(FaultKind::LowBattery),
        b"AR" => Some(FaultKind::MainsLoss),
        b"TR" => Some(FaultKind::Tamper),
        b"YQ" | b"ER" | b"YH" => Some(FaultKind::DeviceFailure),
        // FJ ends FT, MJ ends MT, ...
        [a, b'J'] => sia([*a, b'T']),
        _ => None,
    }
}

/// The fault of a SCAIP event code (`SCAIP dddd` or `SCAIP dddd/ssss`), and whether it ends
/// one.
fn scaip(code: &str, restore: bool) -> Option<(FaultKind, bool)> {
    use FaultKind::*;
    let (dty, stc) = match code.split_once('/') {
        Some((d, s)) => (d.parse::<u16>().ok()?, Some(s.parse::<u16>().ok()?)),
        None => (code.parse::<u16>().ok()?, None),
    };
    let of_device = match dty {
        38 => Some(Tamper),
        31 | 41 => Some(DeviceFailure),
        _ => None,
    };
    match stc {
        Some(14 | 16) => Some((LowBattery, restore)),
        Some(15) => Some((LowBattery, true)),
        Some(85) => Some((MainsLoss, restore)),
        Some(86) => Some((MainsLoss, true)),
        Some(125) => Some((Tamper, restore)),
        Some(123) => Some((DeviceFailure, restore)),
        Some(124) => Some((DeviceFailure, true)),
        Some(70 | 92..=94) => of_device.map(|k| (k, true)),
        None | Some(9 | 10 | 110) => of_device.map(|k| (k, restore)),
        _ => None,
    }
}

/// The fault of one event, and whether it is a restore (the fault is gone).
pub fn fault_of_event(ev: &SignalEvent) -> Option<(FaultKind, bool)> {
    let restore = ev.qualifier == Qualifier::Restore;
    if let Some(code) = ev.code.strip_prefix("SCAIP ") {
        return scaip(code, restore);
    }
    if let Some(n) = ev.code.strip_prefix("CID ") {
        let n = n.parse::<u16>().ok()?;
        return cid(n).map(|k| (k, restore));
    }
    let &[a, b] = ev.code.strip_prefix("SIA ")?.as_bytes() else {
        return None;
    };
    if sia_qualifier([a, b]) == Qualifier::Restore {
        sia_restore([a, b]).map(|k| (k, true))
    } else {
        sia([a, b]).map(|k| (k, restore))
    }
}

/// Every distinct fault of a Signal's events with whether it is a restore, in the order of
/// the events (a fault and its restore in one Signal: both, fault first as sent). At most
/// one entry per kind and restore, so bounded by `2 x` the kinds.
pub fn faults_of(signal: &Signal) -> Vec<(FaultKind, bool)> {
    let mut out: Vec<(FaultKind, bool)> = Vec::new();
    for ev in signal.events.iter().take(MAX_EVENTS) {
        if let Some(f) = fault_of_event(ev) {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

/// The fault of a Signal: its first fault event, else its first restore of a fault.
pub fn fault_of(signal: &Signal) -> Option<(FaultKind, bool)> {
    let all = faults_of(signal);
    all.iter()
        .find(|(_, restore)| !restore)
        .or_else(|| all.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Priority;
    use crate::model::testing::{self, event as ev};
    use crate::triage::priority::{Action, classify_event};

    fn signal(events: Vec<SignalEvent>) -> Signal {
        Signal {
            events,
            ..testing::signal()
        }
    }

    fn new(code: &str) -> Option<(FaultKind, bool)> {
        fault_of_event(&ev(code, Qualifier::New))
    }

    #[test]
    fn the_issue_codes() {
        use FaultKind::*;
        for (code, kind) in [
            ("CID 302", LowBattery),
            ("CID 309", LowBattery),
            ("CID 311", LowBattery),
            ("CID 338", LowBattery),
            ("CID 384", LowBattery),
            ("CID 301", MainsLoss),
            ("CID 342", MainsLoss),
            ("CID 137", Tamper),
            ("CID 144", Tamper),
            ("CID 145", Tamper),
            ("CID 383", Tamper),
            ("CID 300", DeviceFailure),
            ("CID 330", DeviceFailure),
            ("CID 333", DeviceFailure),
            ("CID 380", DeviceFailure),
            ("CID 373", DeviceFailure),
            ("CID 393", DeviceFailure),
            ("SIA YT", LowBattery),
            ("SIA XT", LowBattery),
            ("SIA AT", MainsLoss),
            ("SIA TA", Tamper),
            ("SIA YX", DeviceFailure),
            ("SIA ET", DeviceFailure),
            ("SIA YP", DeviceFailure),
            ("SIA FT", DeviceFailure),
            ("SIA MT", DeviceFailure),
        ] {
            assert_eq!(new(code), Some((kind, false)), "{code}");
            assert_eq!(
                fault_of_event(&ev(code, Qualifier::Status)),
                Some((kind, false)),
                "{code} status is still the fault"
            );
        }
    }

    #[test]
    fn restores() {
        use FaultKind::*;
        assert_eq!(
            fault_of_event(&ev("CID 302", Qualifier::Restore)),
            Some((LowBattery, true))
        );
        assert_eq!(
            fault_of_event(&ev("CID 301", Qualifier::Restore)),
            Some((MainsLoss, true))
        );
        // SIA restore codes are restores whatever the qualifier field says.
        for (code, kind) in [
            ("SIA YR", LowBattery),
            ("SIA XR", LowBattery),
            ("SIA AR", MainsLoss),
            ("SIA TR", Tamper),
            ("SIA ER", DeviceFailure),
            ("SIA YH", DeviceFailure),
            ("SIA YQ", DeviceFailure),
            ("SIA FJ", DeviceFailure),
            ("SIA MJ", DeviceFailure),
        ] {
            assert_eq!(new(code), Some((kind, true)), "{code}");
        }
    }

    #[test]
    fn not_faults() {
        for code in [
            "CID 101",
            "CID 111",
            "CID 350",
            "CID 351",
            "CID 354",
            "CID 355",
            "CID 359",
            "CID 305",
            "CID 306",
            "CID 313",
            "CID 339",
            "CID 344",
            "CID 602",
            "CID 608",
            "CID 999",
            "CID x",
            "SIA YC",
            "SIA YS",
            "SIA LT",
            "SIA NT",
            "SIA YK",
            "SIA LR",
            "SIA NR",
            "SIA XQ",
            "SIA XL",
            "SIA JT",
            "SIA MA",
            "SIA RP",
            "SIA BJ!",
            "SIA",
            "VAKT communication_lost",
            "VAKT communication_restored",
            "",
        ] {
            assert_eq!(new(code), None, "{code}");
            assert_eq!(
                fault_of_event(&ev(code, Qualifier::Restore)),
                None,
                "{code}"
            );
        }
    }

    /// Every fault is a technical code that opens a Call, and every restore of one is a
    /// restore, in triage's table.
    #[test]
    fn consistent_with_the_priority_table() {
        let mut codes: Vec<String> = (0..=999u16).map(|n| format!("CID {n:03}")).collect();
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                codes.push(format!("SIA {}{}", char::from(a), char::from(b)));
            }
        }
        for dty in [2, 3, 5, 23, 27, 31, 38, 41, 950] {
            codes.push(crate::triage::priority::scaip_code(dty, None));
            for stc in 0..=130 {
                codes.push(crate::triage::priority::scaip_code(dty, Some(stc)));
            }
        }
        let mut faults = 0;
        for code in &codes {
            for q in [Qualifier::New, Qualifier::Status, Qualifier::Restore] {
                let Some((_, restore)) = fault_of_event(&ev(code, q)) else {
                    continue;
                };
                faults += 1;
                let c = classify_event(&ev(code, q), None);
                if restore {
                    assert_eq!(c.action, Action::Restore, "{code} {q:?}");
                } else if q == Qualifier::New {
                    assert_eq!(
                        (c.level, c.action, c.alarm),
                        (Priority::TECHNICAL, Action::OpenCall, false),
                        "{code}"
                    );
                } else {
                    // A technical status report is triage's `status` rule (no Call).
                    assert_eq!(c.level, Priority::RULE, "{code}");
                }
                assert!(!c.kind.contains("Communication"), "{code}");
            }
        }
        assert!(faults > 200, "{faults}");
    }

    #[test]
    fn scaip_faults() {
        use FaultKind::*;
        let code = |d, s| crate::triage::priority::scaip_code(d, s);
        for (c, want) in [
            (code(27, Some(16)), Some((LowBattery, false))),
            (code(3, Some(14)), Some((LowBattery, false))),
            (code(3, Some(15)), Some((LowBattery, true))),
            (code(48, Some(85)), Some((MainsLoss, false))),
            (code(48, Some(86)), Some((MainsLoss, true))),
            (code(2, Some(125)), Some((Tamper, false))),
            (code(38, None), Some((Tamper, false))),
            (code(38, Some(93)), Some((Tamper, true))),
            (code(41, Some(10)), Some((DeviceFailure, false))),
            (code(5, Some(123)), Some((DeviceFailure, false))),
            (code(5, Some(124)), Some((DeviceFailure, true))),
            // Alarms, link failures, presence: not an installer's.
            (code(3, None), None),
            (code(3, Some(93)), None),
            (code(32, Some(23)), None),
            (code(3, Some(88)), None),
            ("SCAIP RESET".to_owned(), None),
            ("SCAIP x/16".to_owned(), None),
        ] {
            assert_eq!(fault_of_event(&ev(&c, Qualifier::New)), want, "{c}");
        }
    }

    #[test]
    fn signals_with_several_events() {
        use FaultKind::*;
        let s = signal(vec![
            ev("CID 602", Qualifier::New),
            ev("SIA AR", Qualifier::Restore),
            ev("CID 302", Qualifier::New),
            ev("CID 384", Qualifier::New),
            ev("CID 144", Qualifier::New),
        ]);
        assert_eq!(
            faults_of(&s),
            [(MainsLoss, true), (LowBattery, false), (Tamper, false)]
        );
        assert_eq!(fault_of(&s), Some((LowBattery, false)), "a fault first");
        let r = signal(vec![ev("SIA YR", Qualifier::Restore)]);
        assert_eq!(fault_of(&r), Some((LowBattery, true)));
        assert_eq!(fault_of(&signal(vec![ev("CID 101", Qualifier::New)])), None);
        assert_eq!(fault_of(&signal(Vec::new())), None);
    }
}
