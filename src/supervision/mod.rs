//! Supervision: when each device was last heard, and which devices have fallen silent.
//!
//! Any frame from a device (a NULL link test, a test, an alarm) proves it can reach vakt. The
//! last-heard time is kept in memory (heartbeats are the bulk of all traffic and are not
//! journaled one by one) and written to the store periodically and at shutdown
//! ([`LastHeard`]).
//!
//! [`Supervisor`] keeps every registered device's deadline: its supervision interval plus a
//! grace after it was last heard. Any frame moves the deadline ([`Supervisor::heard`], O(1):
//! a hashed lookup and the record's last-heard time). The [`wheel::Wheel`] holds, for each
//! device that is not silent, its deadline or an earlier one (lazy rescheduling): when the
//! entry comes due, [`Supervisor::poll`] re-arms it at the real deadline if the device was
//! heard since, and reports it silent otherwise. A device heartbeating every 30 s (deadline
//! 90 s) is thus moved in the wheel about once a minute by the ticker, not at every
//! heartbeat by the connection tasks, which only touch the index and the record.
//! [`Supervisor::poll`] reports the devices whose deadline passed (each silence once) and
//! the silent devices that were heard again. [`detector::Detector`] decides whether silences are lone faults
//! (individual technical Calls) or one telecom incident.
//!
//! Pure: every function takes `now`; nothing here reads a clock.
//!
//! Memory: devices live in 64 shards, each with its own lock, wheel and account index, so
//! connection tasks calling `heard` rarely meet. Per device: a 32-byte record, a 16-byte wheel
//! node, a 16-byte index entry for accounts of up to 15 hex digits (the account packed in a
//! `u64`; longer or non-hex accounts use a string map), and the subscriber id in a per-shard
//! text arena rebuilt at each [`Supervisor::sync`]. Telecom operators and areas are interned
//! to `u16` ids, so the counts per operator and area are arrays.

pub mod detector;
pub mod incidents;
mod last_heard;
pub mod round;
mod supervisor;
pub mod wheel;

pub use last_heard::{LastHeard, UNKNOWN_KEPT, UnknownAccount};
pub use supervisor::{POLL_MAX, Supervisor};

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::registers::devices::{DEVICE_TYPES, SUPERVISION_SECS};

// ---- options ----

/// `[supervision]`: how long a device may stay silent before it counts as lost.
///
/// A device's interval is its registry `supervision_secs`, else the profile of its
/// `device_type`, else `default_interval_secs`, clamped to 20 s..=25 h. Its deadline is the
/// interval plus a grace of `max(grace_secs, interval * grace_pct / 100)` after it was last
/// heard (or after it was registered, if never heard).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionOptions {
    /// Interval for devices with neither `supervision_secs` nor a profile (25 h: the longest
    /// allowed, the usual daily test call of a carephone plus an hour).
    pub default_interval_secs: u32,
    /// Interval by device type (`carephone`, `pendant`, ... as in the registry's
    /// `device_type` column), used when the device has no `supervision_secs`.
    pub profiles: BTreeMap<String, u32>,
    /// Least grace after the interval, in seconds (a heartbeat delayed by a retry).
    pub grace_secs: u32,
    /// Grace as a percentage of the interval, when that is more than `grace_secs`.
    pub grace_pct: u32,
}

impl Default for SupervisionOptions {
    fn default() -> Self {
        SupervisionOptions {
            default_interval_secs: 90_000,
            profiles: BTreeMap::new(),
            grace_secs: 60,
            grace_pct: 10,
        }
    }
}

impl SupervisionOptions {
    /// Checks the values; the error lists every problem, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        let range = format!("{}..={}", SUPERVISION_SECS.start(), SUPERVISION_SECS.end());
        if !SUPERVISION_SECS.contains(&self.default_interval_secs) {
            errs.push(format!(
                "supervision.default_interval_secs must be {range} (20 s to 25 h)"
            ));
        }
        for (t, v) in &self.profiles {
            if !DEVICE_TYPES.contains(&t.as_str()) {
                errs.push(format!(
                    "supervision.profiles: unknown device type {t:?} (known: {})",
                    DEVICE_TYPES.join(", ")
                ));
            }
            if !SUPERVISION_SECS.contains(v) {
                errs.push(format!(
                    "supervision.profiles.{t} must be {range} (20 s to 25 h)"
                ));
            }
        }
        if self.grace_secs > 86_400 {
            errs.push("supervision.grace_secs must be at most 86400".into());
        }
        if self.grace_pct > 100 {
            errs.push("supervision.grace_pct must be 0..=100".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }

    /// The interval for a device with these registry fields, clamped to 20 s..=25 h.
    pub fn interval_for(&self, supervision_secs: Option<u32>, device_type: Option<&str>) -> u32 {
        let v = supervision_secs
            .or_else(|| device_type.and_then(|t| self.profiles.get(t).copied()))
            .unwrap_or(self.default_interval_secs);
        v.clamp(*SUPERVISION_SECS.start(), *SUPERVISION_SECS.end())
    }

    /// The grace after `interval_secs`: `max(grace_secs, interval * grace_pct / 100)`.
    pub fn grace_for(&self, interval_secs: u32) -> u32 {
        let pct = u64::from(interval_secs) * u64::from(self.grace_pct) / 100;
        self.grace_secs.max(u32::try_from(pct).unwrap_or(u32::MAX))
    }
}

// ---- what the supervisor reports ----

/// A device that fell silent (or, in [`Poll::restored`], that was heard again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Silence {
    /// Device account.
    pub account: String,
    /// The subscriber the device belongs to.
    pub subscriber: Option<String>,
    /// The device's telecom operator.
    pub telecom_operator: Option<String>,
    /// The device's area.
    pub area: Option<String>,
    /// When the device was last heard (`None`: never since it was registered). For a
    /// restoration: the frame that restored it.
    #[schema(value_type = Option<String>)]
    pub last_heard: Option<Timestamp>,
    /// A silence: the deadline the device missed. A restoration: when it was heard again.
    #[schema(value_type = String)]
    pub at: Timestamp,
}

/// What one [`Supervisor::poll`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// Devices whose deadline passed, each reported once until it is heard again.
    pub silent: Vec<Silence>,
    /// Silent devices heard again since the last poll, each once. A device can be in both
    /// lists (heard, then silent again before this poll): apply `restored` first.
    pub restored: Vec<Silence>,
    /// True when a bound was reached (more than [`POLL_MAX`] changes): poll again soon.
    pub more: bool,
}

/// Devices supervised and silent in one group (a telecom operator or an area).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupCount {
    /// Devices supervised.
    pub supervised: u32,
    /// Of those, silent now (reported by a poll and not heard since).
    pub silent: u32,
}

impl GroupCount {
    /// Devices supervised and reporting (not silent).
    pub fn reporting(&self) -> u32 {
        self.supervised.saturating_sub(self.silent)
    }
}

/// Counts per telecom operator and per area (groups with no device left are omitted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Population {
    /// By telecom operator.
    pub operators: BTreeMap<String, GroupCount>,
    /// By area.
    pub areas: BTreeMap<String, GroupCount>,
}

/// One device's supervision state, for the device page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeviceStatus {
    /// Device account.
    pub account: String,
    /// The subscriber the device belongs to.
    pub subscriber: Option<String>,
    /// The device's telecom operator.
    pub telecom_operator: Option<String>,
    /// The device's area.
    pub area: Option<String>,
    /// Supervision interval in effect.
    pub interval_secs: u32,
    /// Grace after the interval.
    pub grace_secs: u32,
    /// When last heard (`None`: not since it was registered).
    #[schema(value_type = Option<String>)]
    pub last_heard: Option<Timestamp>,
    /// When it must be heard by; `None` while it is silent.
    #[schema(value_type = Option<String>)]
    pub next_deadline: Option<Timestamp>,
    /// The deadline it missed, while it is silent.
    #[schema(value_type = Option<String>)]
    pub silent_since: Option<Timestamp>,
}

/// What a [`Supervisor::sync`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Devices newly supervised.
    pub added: usize,
    /// Devices already supervised (their interval, operator, area, subscriber refreshed).
    pub kept: usize,
    /// Devices no longer in the registry.
    pub removed: usize,
}
