//! [`TestAlarmObserver`]: installations on the triage path. It sees every triaged Signal (the
//! Calls service's [`SignalObserver`]) and hands the Signals of devices with an open
//! installation window to [`Care::on_signal`]: the test alarm. Any other Signal costs one
//! lookup in a small map; a Signal that is not its device's (unknown, or unauthenticated)
//! never counts as the test.

use std::sync::Arc;

use jiff::Timestamp;

use super::Care;
use crate::calls::SignalObserver;
use crate::model::Signal;

/// Feeds installations their test alarms from triage.
#[derive(Debug)]
pub struct TestAlarmObserver {
    care: Arc<Care>,
}

impl TestAlarmObserver {
    /// The observer of `care`'s installations.
    pub fn new(care: Arc<Care>) -> TestAlarmObserver {
        TestAlarmObserver { care }
    }
}

impl SignalObserver for TestAlarmObserver {
    fn signal(&self, signal: &Signal, now: Timestamp) {
        if signal.flags.unknown_device || signal.flags.unauthenticated {
            return;
        }
        match self
            .care
            .on_signal(&signal.account, signal.id, signal.received_at, now)
        {
            Ok(true) => tracing::info!(signal = signal.id, "installation test alarm received"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(signal = signal.id, error = %e, "installation test alarm not saved");
            }
        }
    }
}
