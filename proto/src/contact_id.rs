//! ADM-CID payload: Ademco Contact ID (SIA DC-05) carried in DC-09 (protocols.md §2.1-§2.3).
//!
//! Grammar of the data block (inside `[` `]`, after decryption):
//!
//! ```text
//! data  = [ "#" ACCT ] [ "|" ] event
//! event = Q EEE SP GG SP ZZZ        ; e.g. "3407 01 001"; the two spaces may be absent
//! ACCT  = 1*16HEXDIG
//! Q     = "1" / "3" / "6"           ; new (opening), restore (closing), status
//! EEE   = 3DIGIT                    ; event code
//! GG    = 2DIGIT                    ; group/partition, "00" = none
//! ZZZ   = 3DIGIT                    ; zone or user (by code), "000" = none
//! ```
//!
//! All digits are decimal (PSA's regex). S09 reads GG and ZZZ as hex; that only differs
//! from decimal for values above 9 and real panels use decimal zone numbers, so vakt does
//! not follow it. One event per frame.

use super::event::{
    Event, EventCode, Payload, PayloadError, Qualifier, cid_address_is_user, split_account,
};

/// Decodes an ADM-CID data block (`Content::data`).
///
/// # Errors
/// [`PayloadError::NoEvents`] for an empty event part, [`PayloadError::BadQualifier`] for a
/// qualifier other than 1/3/6, [`PayloadError::Malformed`] for anything else that does not
/// match the grammar. An unknown event code is not an error.
pub fn decode(data: &[u8]) -> Result<Payload, PayloadError> {
    let (account, rest) = split_account(data)?;
    if rest.is_empty() {
        return Err(PayloadError::NoEvents);
    }
    let event = decode_event(rest)?;
    Ok(Payload {
        account,
        events: vec![event],
    })
}

/// Decodes `QEEE GG ZZZ` (or `QEEEGGZZZ`).
fn decode_event(s: &[u8]) -> Result<Event, PayloadError> {
    let (q, eee, gg, zzz) = match s {
        [q, e1, e2, e3, b' ', g1, g2, b' ', z1, z2, z3] => {
            (*q, [*e1, *e2, *e3], [*g1, *g2], [*z1, *z2, *z3])
        }
        [q, e1, e2, e3, g1, g2, z1, z2, z3] => (*q, [*e1, *e2, *e3], [*g1, *g2], [*z1, *z2, *z3]),
        _ => {
            return Err(PayloadError::Malformed(
                "ADM-CID event is not 'QEEE GG ZZZ'",
            ));
        }
    };
    let qualifier = match q {
        b'1' => Qualifier::New,
        b'3' => Qualifier::Restore,
        b'6' => Qualifier::Status,
        other => return Err(PayloadError::BadQualifier(char::from(other))),
    };
    let code = decimal(&eee).ok_or(PayloadError::Malformed(
        "ADM-CID event code is not 3 decimal digits",
    ))?;
    let group = decimal(&gg).ok_or(PayloadError::Malformed(
        "ADM-CID group is not 2 decimal digits",
    ))?;
    let address = decimal(&zzz).ok_or(PayloadError::Malformed(
        "ADM-CID zone/user is not 3 decimal digits",
    ))?;
    let code = u16::try_from(code).unwrap_or(u16::MAX); // at most 999
    let address = (address != 0).then_some(address);
    let (zone, user) = if cid_address_is_user(code) {
        (None, address)
    } else {
        (address, None)
    };
    Ok(Event {
        code: EventCode::Cid(code),
        qualifier,
        zone,
        group: (group != 0).then_some(group),
        user,
        text: None,
        time: None,
    })
}

/// Value of a short run of ASCII decimal digits (at most 9, so no overflow).
fn decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(data: &[u8]) -> Event {
        let p = decode(data).expect("decodes");
        assert_eq!(p.events.len(), 1);
        p.events.into_iter().next().expect("one event")
    }

    #[test]
    fn personal_emergency_new_and_restore() {
        let e = one(b"#1234|1101 01 001");
        assert_eq!(e.code, EventCode::Cid(101));
        assert_eq!(e.qualifier, Qualifier::New);
        assert_eq!((e.group, e.zone, e.user), (Some(1), Some(1), None));
        let e = one(b"#1234|3101 01 001");
        assert_eq!(e.qualifier, Qualifier::Restore);
    }

    #[test]
    fn user_type_codes_put_address_in_user() {
        // §1.10 #1: CID 407 restore (remote arm), user 1.
        let p = decode(b"#00AAAA|3407 01 001").expect("decodes");
        assert_eq!(p.account.as_deref(), Some("00AAAA"));
        let e = &p.events[0];
        assert_eq!(e.code, EventCode::Cid(407));
        assert_eq!(e.qualifier, Qualifier::Restore);
        assert_eq!((e.group, e.zone, e.user), (Some(1), None, Some(1)));
        // 121 duress carries a user.
        let e = one(b"1121 00 012");
        assert_eq!((e.group, e.zone, e.user), (None, None, Some(12)));
    }

    #[test]
    fn zeros_mean_none_and_status_qualifier() {
        let e = one(b"#5678|6602 00 000");
        assert_eq!(e.code, EventCode::Cid(602));
        assert_eq!(e.qualifier, Qualifier::Status);
        assert_eq!((e.group, e.zone, e.user), (None, None, None));
    }

    #[test]
    fn tolerated_forms() {
        // No account, bare '|', no spaces; decimal zone 057 (Eldes, §1.9).
        assert_eq!(one(b"1101 01 001").code, EventCode::Cid(101));
        assert_eq!(one(b"|1101 01 001").code, EventCode::Cid(101));
        let e = one(b"#4F39|3401 01 057");
        assert_eq!(e.user, Some(57));
        let e = one(b"1130 02 010");
        assert_eq!((e.group, e.zone), (Some(2), Some(10)));
        let e = one(b"113002010");
        assert_eq!((e.group, e.zone), (Some(2), Some(10)));
        // Unknown codes decode.
        assert_eq!(one(b"1999 01 001").code, EventCode::Cid(999));
    }

    #[test]
    fn errors() {
        assert_eq!(decode(b"#1234|"), Err(PayloadError::NoEvents));
        assert_eq!(decode(b""), Err(PayloadError::NoEvents));
        assert_eq!(decode(b"2101 01 001"), Err(PayloadError::BadQualifier('2')));
        assert_eq!(
            decode(b"#1234|1101 01 001 ")
                .map(|_| ())
                .unwrap_err()
                .as_str(),
            "malformed"
        );
        assert!(matches!(
            decode(b"1A01 01 001"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"1101 0B 001"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"1101 01 00F"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"1101-01-001"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"#12|1101 01 001]"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"#|1101 01 001"),
            Err(PayloadError::Malformed(_))
        ));
    }
}
