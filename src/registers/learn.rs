//! The registers learn phone numbers from the units (see [`crate::registers::numbers`]): a
//! unit's number goes on the device and on its subscriber where either lacks one, never over
//! a number someone entered, each change audit-logged as one by `vakt`.

use jiff::Timestamp;

use crate::model::{AuditEntry, Device};
use crate::registers::devices::{Devices, Registry};
use crate::store::{Store, StoreError, device_key};

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
/// The registry in use is reloaded when the device took the number. The changes and their
/// entries are durable when it returns, with one sync. Blocking.
pub fn learn(
    store: &Store,
    devices: &Devices,
    device: &Device,
    number: &str,
    how: &str,
    now: Timestamp,
) -> Result<Learned, StoreError> {
    store.together(|store| learn_in(store, devices, device, number, how, now))
}

/// [`learn`]'s writes, on a store that syncs after them.
fn learn_in(
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
    fn a_learned_number_survives_a_reimport_without_one() {
        let (_dir, store, reg) = setup("");
        let now: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
        learn(
            &store,
            &reg,
            &unit(&reg, "678"),
            "+46701234567",
            "test",
            now,
        )
        .unwrap();
        let phone_of = |store: &Store| {
            store
                .devices()
                .unwrap()
                .into_iter()
                .find(|d| d.account == "678")
                .unwrap()
                .phone
        };
        // The same file again (its phone cells empty): the number stays.
        let csv = format!(
            "{}\n678,,,,,S-1,,,,pendant,luc678,pw\n",
            crate::registers::devices::CSV_HEADER
        );
        let again = crate::registers::devices::parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(store.upsert_devices(&again).unwrap(), 0);
        assert_eq!(phone_of(&store).as_deref(), Some("+46701234567"));
        // A file that names another number replaces it.
        let csv = format!(
            "{}\n678,,,,,S-1,,,,pendant,luc678,pw,+46708888888\n",
            crate::registers::devices::CSV_HEADER
        );
        let other = crate::registers::devices::parse_csv(csv.as_bytes()).unwrap();
        store.upsert_devices(&other).unwrap();
        assert_eq!(phone_of(&store).as_deref(), Some("+46708888888"));
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
}
