//! [`FaultObserver`]: work orders on the triage path. It sees every triaged Signal (the
//! Calls service's [`SignalObserver`]), finds the device in the registry and hands the
//! Signals with a fault to [`WorkOrders::on_signal`]; each change goes to a sink (the
//! installer's outbox).

use std::sync::Arc;

use jiff::Timestamp;

use super::{Change, WorkOrders, fault_of};
use crate::calls::SignalObserver;
use crate::model::{Signal, norm_hex};
use crate::registers::devices::Devices;
use crate::store::Store;

/// Where the changes go (called on the triage thread, in journal order).
pub type ChangeSink = Arc<dyn Fn(&[Change]) + Send + Sync>;

/// Feeds the work orders from triage.
pub struct FaultObserver {
    orders: Arc<WorkOrders>,
    devices: Devices,
    sink: Option<ChangeSink>,
}

impl std::fmt::Debug for FaultObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultObserver").finish_non_exhaustive()
    }
}

impl FaultObserver {
    /// Orders from the Signals of the devices in `devices`; changes to `sink`, if any.
    pub fn new(orders: Arc<WorkOrders>, devices: Devices, sink: Option<ChangeSink>) -> Self {
        FaultObserver {
            orders,
            devices,
            sink,
        }
    }
}

impl SignalObserver for FaultObserver {
    fn signal(&self, signal: &Signal, now: Timestamp) {
        self.observe(signal, now, None);
    }

    fn signal_in(&self, signal: &Signal, now: Timestamp, batch: &Store) {
        self.observe(signal, now, Some(batch));
    }
}

impl FaultObserver {
    /// The work orders of one Signal, written through `batch` (the triage batch's store
    /// handle) when given. The changes may then reach the sink before the batch's sync;
    /// what leaves vakt because of them (the installer's webhook) is first written to the
    /// outbox, and that write is durable only with everything written before it (on sled
    /// one log, synced in write order; on PostgreSQL every write committed when it returns),
    /// the work order included.
    fn observe(&self, signal: &Signal, now: Timestamp, batch: Option<&Store>) {
        // Almost every Signal has no fault: no registry lookup, no storage. A Signal that is
        // not its device's (unknown, or unauthenticated: it names a registered device it did
        // not prove to be) must not open or touch that device's work orders.
        if fault_of(signal).is_none() || signal.flags.unknown_device || signal.flags.unauthenticated
        {
            return;
        }
        let registry = self.devices.current();
        let account = norm_hex(&signal.account);
        let line = signal.line.as_deref().map(norm_hex);
        let receiver = signal.receiver.as_deref().map(norm_hex);
        let Some(device) = registry.lookup(&account, line.as_deref(), receiver.as_deref()) else {
            // An unknown device has no installer; its Call reaches an operator, who can
            // report the fault from it.
            tracing::debug!(signal = signal.id, %account, "fault from an unregistered device: no work order");
            return;
        };
        let changed = match batch {
            Some(store) => self.orders.on_signal_in(store, signal, device, None, now),
            None => self.orders.on_signal(signal, device, None, now),
        };
        match changed {
            Ok(changes) if changes.is_empty() => {}
            Ok(changes) => {
                if let Some(sink) = &self.sink {
                    sink(&changes);
                }
            }
            Err(e) => {
                tracing::error!(signal = signal.id, %account, error = %e, "work order for a device fault not saved");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use jiff::tz::TimeZone;

    use super::*;
    use crate::model::testing::{self, event};
    use crate::model::{Device, Flags, Transport};
    use crate::registers::devices::Registry;
    use crate::store::Store;
    use crate::work_orders::{What, WorkOrderOptions};
    use vakt_proto::event::Qualifier;

    fn signal(id: u64, account: &str, code: &str) -> Signal {
        Signal {
            id,
            received_at: Timestamp::from_second(1_780_000_000).unwrap(),
            transport: Transport::Udp,
            account: account.into(),
            line: Some("0".into()),
            events: vec![event(code, Qualifier::New)],
            ..testing::signal()
        }
    }

    #[test]
    fn registered_devices_faults_reach_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::from_second(1_780_000_000).unwrap();
        let orders_store = Store::open(dir.path()).unwrap();
        let orders = Arc::new(
            WorkOrders::open(
                orders_store.clone(),
                &WorkOrderOptions::default(),
                TimeZone::UTC,
                now,
            )
            .unwrap(),
        );
        let devices = Devices::new(Registry::new(vec![Device {
            account: "12AB".into(),
            line: None,
            receiver: None,
            key: None,
            key_format: None,
            subscriber: Some("anna".into()),
            supervision_secs: None,
            telecom_operator: None,
            area: None,
            device_type: None,
            sip_user: None,
            sip_password: None,
            phone: None,
        }]));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let sink: ChangeSink = Arc::new(move |c: &[Change]| {
            s2.lock().unwrap().extend(c.iter().map(|c| c.what.clone()));
        });
        let obs = FaultObserver::new(orders.clone(), devices, Some(sink));
        obs.signal(&signal(1, "12ab", "CID 101"), now);
        obs.signal(&signal(2, "12ab", "CID 302"), now);
        obs.signal(&signal(3, "12AB", "CID 302"), now);
        obs.signal(&signal(4, "FFFF", "CID 302"), now);
        // A frame naming the device without proving it (a plain frame for a keyed device, a
        // request for another user's cid) touches none of its work orders.
        for (id, flags) in [
            (
                5,
                Flags {
                    unauthenticated: true,
                    ..Flags::default()
                },
            ),
            (
                6,
                Flags {
                    unknown_device: true,
                    unauthenticated: true,
                    ..Flags::default()
                },
            ),
        ] {
            let mut s = signal(id, "12AB", "CID 300");
            s.flags = flags;
            obs.signal(&s, now);
        }
        assert_eq!(*seen.lock().unwrap(), [What::Created, What::Attached]);
        let open = orders.open_of("12AB");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].subscriber.as_deref(), Some("anna"));

        // On the triage path, a batch's fault Signals are written through the batch's handle:
        // twenty repeats, one sync (each would cost one alone).
        let store = orders_store.clone();
        let (before, _) = store.syncs();
        store
            .together(|batch| {
                for id in 10..30 {
                    obs.signal_in(&signal(id, "12AB", "CID 302"), now, batch);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(store.syncs().1 - before, 1);
        assert_eq!(seen.lock().unwrap().len(), 22, "every repeat attached");
    }
}
