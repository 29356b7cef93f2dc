//! Phone numbers in the registers: one form for every number vakt reads ([`normalise`]), when
//! two are one line ([`same_line`]), a SCAIP unit's numbers ([`of_voice_paths`]).
//!
//! The registers learn numbers from the units themselves (`registers::learn`): a number is
//! learned where a register lacks one and the unit is known: a SCAIP unit's
//! `crd` voice path (`gsm:+46...`, `tel:...`) in a message it authenticated, an
//! authenticated unit's call whose `P-Asserted-Identity` or From is a number, or a trunk
//! call whose number names no subscriber but a unit that told its number before. The number
//! goes on the device (the unit's own line) and on its subscriber (the line that reaches the
//! person's home) where either is empty. A number someone entered is never overwritten, and
//! every number learned is in the audit log as a change by `vakt`.

/// Fewest and most digits of a number vakt keeps (E.164 allows 15; fewer than 8 cannot be
/// told apart by [`same_line`]).
pub const DIGITS: std::ops::RangeInclusive<usize> = 8..=15;

/// A phone number as vakt keeps it, from a number or a URI: `tel:` and `gsm:` URIs read as
/// their number, `sip:`/`sips:` ones as their user part (`sip:+46701234567@sbc;user=phone`);
/// parameters dropped, the visual separators (space, `-`, `.`, `(`, `)`) dropped, a leading
/// `00` read as `+`. `None` when the rest is not an optional `+` and 8 to 15 digits (a name,
/// `anonymous`, a short code).
pub fn normalise(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s
        .strip_prefix('<')
        .and_then(|r| r.split_once('>'))
        .map_or(s, |(inner, _)| inner);
    let lower = |n: usize| s.get(..n).map(str::to_ascii_lowercase);
    let number = if matches!(lower(4).as_deref(), Some("tel:" | "gsm:")) {
        s.get(4..).unwrap_or_default()
    } else if lower(4).as_deref() == Some("sip:") || lower(5).as_deref() == Some("sips:") {
        let rest = s.split_once(':').map_or("", |(_, r)| r);
        rest.split_once('@')?.0
    } else {
        s
    };
    let number = number.split([';', '?']).next().unwrap_or_default();
    let mut out = String::with_capacity(number.len());
    for (i, c) in number.chars().enumerate() {
        match c {
            '+' if i == 0 => out.push('+'),
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    if let Some(rest) = out.strip_prefix("00") {
        out = format!("+{rest}");
    }
    let digits = out.bytes().filter(u8::is_ascii_digit).count();
    DIGITS.contains(&digits).then_some(out)
}

/// Whether two phone numbers are the same line: their last 8 digits agree (so `+46 70-123
/// 45 67`, `0046701234567` and `070-1234567` are one number; Swedish and Norwegian
/// subscriber numbers have at least 8 digits). Fewer than 8 digits on either side never
/// match.
pub fn same_line(a: &str, b: &str) -> bool {
    fn tail(s: &str) -> Option<Vec<u8>> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
        let n = digits.len();
        (n >= 8).then(|| digits[n - 8..].to_vec())
    }
    matches!((tail(a), tail(b)), (Some(x), Some(y)) if x == y)
}

/// The numbers in a SCAIP unit's `crd` voice paths (`gsm:`, `tel:`), in order.
pub fn of_voice_paths(crd: &[String]) -> Vec<String> {
    crd.iter()
        .filter(|c| {
            let c = c.trim_start().to_ascii_lowercase();
            c.starts_with("gsm:") || c.starts_with("tel:")
        })
        .filter_map(|c| normalise(c))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_scaip_units_voice_paths_give_its_numbers() {
        let crd = [
            "sip:".to_owned(),
            "gsm:+46 70 123 45 67".into(),
            "tel:112".into(),
            "no-voice:".into(),
        ];
        assert_eq!(of_voice_paths(&crd), ["+46701234567"]);
        assert!(of_voice_paths(&["gsm:".to_owned()]).is_empty());
    }

    #[test]
    fn numbers_and_uris_read_as_one_form() {
        assert_eq!(
            normalise("tel:+46-70-123 45 67").as_deref(),
            Some("+46701234567")
        );
        assert_eq!(
            normalise("TEL:+46701234567;phone-context=x").as_deref(),
            Some("+46701234567")
        );
        assert_eq!(
            normalise("gsm:+46701234567").as_deref(),
            Some("+46701234567")
        );
        assert_eq!(
            normalise("sip:+46701234567@sbc.example;user=phone").as_deref(),
            Some("+46701234567")
        );
        assert_eq!(
            normalise("<sips:0046701234567@sbc.example>").as_deref(),
            Some("+46701234567")
        );
        assert_eq!(normalise("070-123 45 67").as_deref(), Some("0701234567"));
        assert_eq!(normalise("(08) 123 456 78").as_deref(), Some("0812345678"));
        // Not numbers: a name, an anonymous caller, a short code, a + inside, too long.
        assert_eq!(normalise("sip:anonymous@anonymous.invalid"), None);
        assert_eq!(normalise("sip:luc678@10.0.0.1"), None);
        assert_eq!(normalise("gsm:"), None);
        assert_eq!(normalise("112"), None);
        assert_eq!(normalise("46+701234567"), None);
        assert_eq!(normalise("+4670123456789012"), None);
        assert_eq!(
            normalise("sip:+46701234567"),
            None,
            "a sip: URI without a host"
        );
    }

    #[test]
    fn numbers_are_the_same_line_by_their_last_8_digits() {
        assert!(same_line("+46 70-123 45 67", "070-1234567"));
        assert!(same_line("0046701234567", "+46701234567"));
        assert!(same_line("tel:+4791234567", "91234567"));
        assert!(!same_line("+46701234567", "+46701234568"));
        // Too short to tell: never a match (an extension, a short code).
        assert!(!same_line("1234567", "1234567"));
        assert!(!same_line("", ""));
    }
}
