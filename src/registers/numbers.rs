//! Phone numbers in the registers: one form for every number vakt reads ([`normalise`]), and
//! the numbers the registers learn from the units themselves ([`learn`]).
//!
//! A number is learned where a register lacks one and the unit is known: a SCAIP unit's
//! `crd` voice path (`gsm:+46...`, `tel:...`) in a message it authenticated, an
//! authenticated unit's call whose `P-Asserted-Identity` or From is a number, or a trunk
//! call whose number names no subscriber but a unit that told its number before. The number
//! goes on the device (the unit's own line) and on its subscriber (the line that reaches the
//! person's home) where either is empty. A number someone entered is never overwritten, and
//! every number learned is in the audit log as a change by `vakt`.

use jiff::Timestamp;

use crate::model::{AuditEntry, Device};
use crate::registers::devices::{Devices, Registry};
use crate::store::{Store, StoreError, device_key};

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

/// What [`learn`] recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// The number went on the device.
    pub device: bool,
    /// The number went on the device's subscriber.
    pub subscriber: bool,
}

/// Records `number` (as [`normalise`] gives it) as the phone of `device` and of its
/// subscriber, on each only where it has none (atomically: a number entered at the same
/// moment is kept), each change audit-logged as one by `vakt` with `how` it was learned.
/// The registry in use is reloaded when the device took the number. Blocking.
pub fn learn(
    store: &Store,
    devices: &Devices,
    device: &Device,
    number: &str,
    how: &str,
    now: Timestamp,
) -> Result<Learned, StoreError> {
    let mut learned = Learned::default();
    let entry = |action: &str, detail: String| AuditEntry {
        seq: 0,
        at: now,
        user: "vakt".to_owned(),
        action: action.to_owned(),
        call: None,
        subscriber: device.subscriber.clone(),
        detail,
    };
    let key = device_key(
        &device.account,
        device.line.as_deref(),
        device.receiver.as_deref(),
    );
    if device.phone.is_none() && store.fill_device_phone(&key, number)? {
        learned.device = true;
        store.audit(entry(
            "device.phone_learned",
            format!("unit {}: {number} ({how})", device.account),
        ))?;
        devices.replace(Registry::new(store.devices()?));
    }
    if let Some(id) = &device.subscriber
        && store.fill_subscriber_phone(id, number)?
    {
        learned.subscriber = true;
        store.audit(entry(
            "subscriber.phone_learned",
            format!("{number}, the number of unit {} ({how})", device.account),
        ))?;
    }
    if learned != Learned::default() {
        store.flush()?;
        tracing::info!(
            unit = %device.account,
            device = learned.device,
            subscriber = learned.subscriber,
            how,
            "a phone number learned"
        );
    }
    Ok(learned)
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
    use crate::model::Subscriber;

    /// A store with Anna (`S-1`, phone `phone`) and her unit 678 (SCAIP, no number).
    fn setup(phone: &str) -> (tempfile::TempDir, Store, Devices) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let csv = format!(
            "{}\n678,,,,,S-1,,,,pendant,luc678,pw\n679,,,,,S-2,,,,pendant,luc679,pw\n",
            crate::registers::devices::CSV_HEADER
        );
        let devices = crate::registers::devices::parse_csv(csv.as_bytes()).unwrap();
        store.upsert_devices(&devices).unwrap();
        store
            .upsert_subscribers(&[Subscriber {
                id: "S-1".into(),
                name: "Anna".into(),
                phone: phone.into(),
                ..Subscriber::default()
            }])
            .unwrap();
        let reg = Devices::new(Registry::new(store.devices().unwrap()));
        (dir, store, reg)
    }

    fn unit(reg: &Devices, account: &str) -> Device {
        reg.current()
            .iter()
            .find(|d| d.account == account)
            .unwrap()
            .clone()
    }

    #[test]
    fn a_unit_and_its_subscriber_learn_a_number_they_lack_once_and_it_is_audited() {
        let (_dir, store, reg) = setup("");
        let now: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
        let d = unit(&reg, "678");
        let got = learn(&store, &reg, &d, "+46701234567", "test", now).unwrap();
        assert_eq!(
            got,
            Learned {
                device: true,
                subscriber: true
            }
        );
        assert_eq!(unit(&reg, "678").phone.as_deref(), Some("+46701234567"));
        assert_eq!(
            store
                .devices()
                .unwrap()
                .iter()
                .find(|d| d.account == "678")
                .unwrap()
                .phone
                .as_deref(),
            Some("+46701234567")
        );
        assert_eq!(
            store.subscriber("S-1").unwrap().unwrap().phone,
            "+46701234567"
        );
        let log = store.audit_latest(10).unwrap();
        let actions: Vec<(&str, &str)> = log
            .iter()
            .map(|e| (e.user.as_str(), e.action.as_str()))
            .collect();
        assert!(
            actions.contains(&("vakt", "device.phone_learned")),
            "{log:?}"
        );
        assert!(
            actions.contains(&("vakt", "subscriber.phone_learned")),
            "{log:?}"
        );
        assert!(
            log.iter()
                .all(|e| e.subscriber.as_deref() == Some("S-1") && e.at == now)
        );

        // Another number later never replaces the first (even with a stale device in hand).
        let got = learn(&store, &reg, &d, "+46709999999", "test", now).unwrap();
        assert_eq!(got, Learned::default());
        assert_eq!(unit(&reg, "678").phone.as_deref(), Some("+46701234567"));
        assert_eq!(
            store.subscriber("S-1").unwrap().unwrap().phone,
            "+46701234567"
        );
        assert_eq!(store.audit_latest(10).unwrap().len(), 2);
    }

    #[test]
    fn a_number_someone_entered_is_never_overwritten() {
        let (_dir, store, reg) = setup("08-123 456 78");
        let now: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
        let got = learn(
            &store,
            &reg,
            &unit(&reg, "678"),
            "+46701234567",
            "test",
            now,
        )
        .unwrap();
        assert_eq!(
            got,
            Learned {
                device: true,
                subscriber: false
            }
        );
        assert_eq!(
            store.subscriber("S-1").unwrap().unwrap().phone,
            "08-123 456 78"
        );
        // A unit whose subscriber is not in the register: the unit alone learns.
        let got = learn(
            &store,
            &reg,
            &unit(&reg, "679"),
            "+46707777777",
            "test",
            now,
        )
        .unwrap();
        assert_eq!(
            got,
            Learned {
                device: true,
                subscriber: false
            }
        );
        assert_eq!(
            reg.current()
                .by_phone("0707777777")
                .map(|d| d.account.as_str()),
            Some("679")
        );
        assert!(reg.current().by_phone("+46700000000").is_none());
    }

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
