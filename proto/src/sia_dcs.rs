//! SIA-DCS payload: SIA DC-03 data carried in DC-09 (protocols.md §2.4).
//!
//! Grammar of the data block as vakt reads it (inside `[` `]`, after decryption):
//!
//! ```text
//! data     = [ "#" ACCT ] [ "|" ] block *( "|" block )
//! block    = ["N"] items          ; first block; "N" = new event (optional, §1.9 tolerance)
//!          / "N" items            ; later blocks ...
//!          / "A" text             ; ... "A" = ASCII text, attached to the last event
//!          / items                ; ... anything else is read as events
//! items    = *( "/" / SP / modifier / event / "^" text "^" )
//! modifier = 2LOWER value         ; ri area, id user, ti hh:mm[:ss], pi, da, ai, ph, lv, va, pt, rg, ss ...
//! value    = *( DIGIT / ":" / "." / "," / "-" / "+" )
//! event    = 2UPPER *9DIGIT       ; code, then address digits (the zone)
//! ```
//!
//! Examples: `#1234|Nri1/MA001`, `#0123|Nti20:50:26RP99`, `#123456|Nri1CL0^VX FRONTE ^`,
//! `#1234|NRR|Atest`, and without an account `|Nri1/CL501` or `Nri1/WA000` (§1.9).
//!
//! * `ri`, `id` and `ti` apply to every following event of the same block until changed.
//!   Other modifiers are skipped.
//! * `/` separates events (and modifiers from events); events may also follow one another.
//! * The address is reported as `zone` for every code (for open/close codes such as `CL`
//!   it is the user number in DC-03; `id` is reported as `user`). Numbers are literal:
//!   `ri0` is group 0, an empty address is `None`.
//! * `^text^` goes to the preceding event (or to the next one if no event came before); an
//!   unterminated `^` takes the rest of the data.
//! * The qualifier comes from the code: restore codes (MH, QH, FH, AR, YR, XR, YK, TR, PH,
//!   HH, ...) are [`Qualifier::Restore`](super::event::Qualifier), all others `New`.
//! * At most [`MAX_EVENTS`] events; an unknown code is not an error.

use super::event::{
    Event, EventCode, MAX_EVENTS, Payload, PayloadError, sia_qualifier, split_account,
};

/// Decodes a SIA-DCS data block (`Content::data`).
///
/// # Errors
/// [`PayloadError::NoEvents`] if no event code occurs, [`PayloadError::TooManyEvents`]
/// above [`MAX_EVENTS`], [`PayloadError::Malformed`] for bytes that fit no rule.
pub fn decode(data: &[u8]) -> Result<Payload, PayloadError> {
    let (account, rest) = split_account(data)?;
    let mut p = Parser {
        s: rest,
        pos: 0,
        events: Vec::new(),
        pending_text: None,
    };
    p.run()?;
    if p.events.is_empty() {
        return Err(PayloadError::NoEvents);
    }
    Ok(Payload {
        account,
        events: p.events,
    })
}

/// Sticky modifiers of the current block.
#[derive(Default, Clone)]
struct Mods {
    group: Option<u32>,
    user: Option<u32>,
    time: Option<String>,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    events: Vec<Event>,
    /// Text seen before any event of the frame; goes to the next event.
    pending_text: Option<String>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn peek2(&self) -> Option<u8> {
        self.s.get(self.pos + 1).copied()
    }

    fn run(&mut self) -> Result<(), PayloadError> {
        let mut first = true;
        loop {
            self.block(first)?;
            first = false;
            match self.peek() {
                Some(b'|') => self.pos += 1,
                None => return Ok(()),
                // `block` only stops at '|' or the end.
                Some(_) => return Err(PayloadError::Malformed("unexpected byte in SIA block")),
            }
        }
    }

    fn block(&mut self, first: bool) -> Result<(), PayloadError> {
        match self.peek() {
            // "N" function code, unless it is the first letter of a code such as "NA".
            Some(b'N') if n_is_function(self.s.get(self.pos + 1..)) => {
                self.pos += 1;
            }
            Some(b'A') if !first => {
                self.pos += 1;
                let text = self.take_until(b'|');
                self.attach_text(text);
                return Ok(());
            }
            _ => {}
        }
        self.items()
    }

    fn items(&mut self) -> Result<(), PayloadError> {
        let mut mods = Mods::default();
        while let Some(b) = self.peek() {
            match b {
                b'|' => return Ok(()),
                b'/' | b' ' => self.pos += 1,
                b'^' => {
                    self.pos += 1;
                    let text = self.take_until(b'^');
                    if self.peek() == Some(b'^') {
                        self.pos += 1;
                    }
                    self.attach_text(text);
                }
                b'a'..=b'z' => self.modifier(&mut mods)?,
                b'A'..=b'Z' => self.event(&mods)?,
                _ => return Err(PayloadError::Malformed("unexpected byte in SIA block")),
            }
        }
        Ok(())
    }

    fn modifier(&mut self, mods: &mut Mods) -> Result<(), PayloadError> {
        let (Some(a), Some(b)) = (self.peek(), self.peek2()) else {
            return Err(PayloadError::Malformed("truncated SIA modifier"));
        };
        if !b.is_ascii_lowercase() {
            return Err(PayloadError::Malformed(
                "SIA modifier is not two lowercase letters",
            ));
        }
        self.pos += 2;
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || matches!(c, b':' | b'.' | b',' | b'-' | b'+') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let value = self.s.get(start..self.pos).unwrap_or_default();
        match [a, b] {
            [b'r', b'i'] => mods.group = number(value)?,
            [b'i', b'd'] => mods.user = number(value)?,
            [b't', b'i'] => {
                if value.is_empty()
                    || value.len() > 8
                    || !value.iter().all(|c| c.is_ascii_digit() || *c == b':')
                {
                    return Err(PayloadError::Malformed("SIA ti is not hh:mm[:ss]"));
                }
                mods.time = Some(String::from_utf8_lossy(value).into_owned());
            }
            _ => {}
        }
        Ok(())
    }

    fn event(&mut self, mods: &Mods) -> Result<(), PayloadError> {
        let (Some(a), Some(b)) = (self.peek(), self.peek2()) else {
            return Err(PayloadError::Malformed("truncated SIA event code"));
        };
        if !b.is_ascii_uppercase() {
            return Err(PayloadError::Malformed(
                "SIA event code is not two uppercase letters",
            ));
        }
        self.pos += 2;
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let zone = number(self.s.get(start..self.pos).unwrap_or_default())?;
        if self.events.len() >= MAX_EVENTS {
            return Err(PayloadError::TooManyEvents);
        }
        let code = [a, b];
        self.events.push(Event {
            code: EventCode::Sia(code),
            qualifier: sia_qualifier(code),
            zone,
            group: mods.group,
            user: mods.user,
            text: self.pending_text.take(),
            time: mods.time.clone(),
        });
        Ok(())
    }

    /// Takes bytes up to (not including) `stop` or the end.
    fn take_until(&mut self, stop: u8) -> &'a [u8] {
        let s: &'a [u8] = self.s;
        let rest = s.get(self.pos..).unwrap_or_default();
        let n = rest.iter().position(|&c| c == stop).unwrap_or(rest.len());
        self.pos += n;
        rest.get(..n).unwrap_or_default()
    }

    fn attach_text(&mut self, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        let slot = match self.events.last_mut() {
            Some(ev) => &mut ev.text,
            None => &mut self.pending_text,
        };
        match slot {
            Some(t) => {
                t.push(' ');
                t.push_str(&text);
            }
            None => *slot = Some(text.into_owned()),
        }
    }
}

/// After a leading `N`, decides whether the `N` is the new-event function code: true when
/// what follows reads as items (a modifier, separator, text, or a two-letter code).
fn n_is_function(after: Option<&[u8]>) -> bool {
    match after.unwrap_or_default() {
        [] => true,
        [c, ..] if c.is_ascii_lowercase() || matches!(c, b'/' | b'^' | b' ' | b'|') => true,
        [a, b, ..] => a.is_ascii_uppercase() && b.is_ascii_uppercase(),
        [_] => false,
    }
}

/// A decimal number of at most 9 digits; empty is `None`.
fn number(digits: &[u8]) -> Result<Option<u32>, PayloadError> {
    if digits.is_empty() {
        return Ok(None);
    }
    if digits.len() > 9 {
        return Err(PayloadError::Malformed("SIA number longer than 9 digits"));
    }
    digits
        .iter()
        .try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
        .map(Some)
        .ok_or(PayloadError::Malformed("SIA number is not decimal"))
}

#[cfg(test)]
mod tests {
    use super::super::event::Qualifier;
    use super::*;

    fn ev(data: &[u8]) -> Vec<Event> {
        decode(data).expect("decodes").events
    }

    fn sia(c: &[u8; 2]) -> EventCode {
        EventCode::Sia(*c)
    }

    #[test]
    fn medical_alarm_area_zone() {
        let p = decode(b"#1234|Nri1/MA001").expect("decodes");
        assert_eq!(p.account.as_deref(), Some("1234"));
        assert_eq!(
            p.events,
            vec![Event {
                code: sia(b"MA"),
                qualifier: Qualifier::New,
                zone: Some(1),
                group: Some(1),
                user: None,
                text: None,
                time: None,
            }]
        );
    }

    #[test]
    fn examples_of_section_2_4() {
        let e = ev(b"#0123|Nti20:50:26RP99");
        assert_eq!(e[0].code, sia(b"RP"));
        assert_eq!(e[0].time.as_deref(), Some("20:50:26"));
        assert_eq!(e[0].zone, Some(99));
        let e = ev(b"#123456|Nri1CL0^VX FRONTE ^");
        assert_eq!(e[0].code, sia(b"CL"));
        assert_eq!((e[0].group, e[0].zone), (Some(1), Some(0)));
        assert_eq!(e[0].text.as_deref(), Some("VX FRONTE "));
        // §1.10 #3 and #4.
        let e = ev(b"#123456A|NFA129");
        assert_eq!((e[0].code.clone(), e[0].zone), (sia(b"FA"), Some(129)));
        let e = ev(b"#1234|NRR|Atest");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].code, sia(b"RR"));
        assert_eq!(e[0].zone, None);
        assert_eq!(e[0].text.as_deref(), Some("test"));
    }

    #[test]
    fn without_account_and_without_n() {
        let e = ev(b"|Nri1/CL501");
        assert_eq!((e[0].code.clone(), e[0].zone), (sia(b"CL"), Some(501)));
        let e = ev(b"Nri1/WA000");
        assert_eq!((e[0].code.clone(), e[0].zone), (sia(b"WA"), Some(0)));
        let e = ev(b"ri1/MA001");
        assert_eq!(e[0].code, sia(b"MA"));
        // "NA" is No Activity when N cannot be the function code.
        let e = ev(b"#1234|NA001");
        assert_eq!((e[0].code.clone(), e[0].zone), (sia(b"NA"), Some(1)));
        let e = ev(b"#1234|NNA001");
        assert_eq!(e[0].code, sia(b"NA"));
        let e = ev(b"#1234|NAR");
        assert_eq!(e[0].code, sia(b"AR"));
    }

    #[test]
    fn several_events_and_sticky_modifiers() {
        let e = ev(b"#1234|Nri2id7ti10:15/MA001/MH001/ri3QA2|Nri9YR");
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].qualifier, Qualifier::New);
        assert_eq!(e[1].qualifier, Qualifier::Restore);
        assert_eq!((e[1].group, e[1].user), (Some(2), Some(7)));
        assert_eq!(e[1].time.as_deref(), Some("10:15"));
        assert_eq!(
            (e[2].code.clone(), e[2].group, e[2].zone),
            (sia(b"QA"), Some(3), Some(2))
        );
        // New block resets the modifiers.
        assert_eq!(
            (e[3].group, e[3].user, e[3].time.clone()),
            (Some(9), None, None)
        );
        assert_eq!(e[3].qualifier, Qualifier::Restore);
        // Events back to back, other modifiers skipped.
        let e = ev(b"Npi12lv3BA01BA02");
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn text_handling() {
        let e = ev(b"N^before^MA1^after^|Amore");
        assert_eq!(e[0].text.as_deref(), Some("before after more"));
        let e = ev(b"NMA1^unterminated");
        assert_eq!(e[0].text.as_deref(), Some("unterminated"));
        let e = ev(b"NMA1^a|b^");
        assert_eq!(e[0].text.as_deref(), Some("a|b"));
        let e = ev(b"NMA1^\xe9t\xe9^"); // CP1252 survives lossily
        assert!(e[0].text.is_some());
    }

    #[test]
    fn unknown_codes_decode() {
        let e = ev(b"#1234|NZQ5");
        assert_eq!(e[0].code, sia(b"ZQ"));
        assert_eq!(e[0].qualifier, Qualifier::New);
    }

    #[test]
    fn errors() {
        assert_eq!(decode(b"#1234|"), Err(PayloadError::NoEvents));
        assert_eq!(decode(b"#1234|Nri1"), Err(PayloadError::NoEvents));
        assert_eq!(decode(b""), Err(PayloadError::NoEvents));
        assert!(matches!(decode(b"NMa1"), Err(PayloadError::Malformed(_))));
        assert!(matches!(decode(b"Nr1MA"), Err(PayloadError::Malformed(_))));
        assert!(matches!(decode(b"N1"), Err(PayloadError::Malformed(_))));
        assert_eq!(ev(b"NM")[0].code, sia(b"NM"));
        assert!(matches!(decode(b"NMA1*"), Err(PayloadError::Malformed(_))));
        assert!(matches!(
            decode(b"NMA1234567890"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"Nti/MA1"),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"Nri1.5MA1"),
            Err(PayloadError::Malformed(_))
        ));
        let many: Vec<u8> = std::iter::once(b'N')
            .chain(std::iter::repeat_n(*b"MA1/", MAX_EVENTS + 1).flatten())
            .collect();
        assert_eq!(decode(&many), Err(PayloadError::TooManyEvents));
        let max: Vec<u8> = std::iter::once(b'N')
            .chain(std::iter::repeat_n(*b"MA1/", MAX_EVENTS).flatten())
            .collect();
        assert_eq!(decode(&max).map(|p| p.events.len()), Ok(MAX_EVENTS));
    }
}
