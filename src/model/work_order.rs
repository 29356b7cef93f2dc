//! Work orders for device faults, as they are stored and shown: what is wrong
//! ([`FaultKind`]), where the order is ([`WorkOrderState`]), its timeline and deadlines. The
//! rules that make and move them are in `crate::work_orders`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most entries in an order's timeline. Repeats, restores and notes stop being written
/// [`TIMELINE_RESERVED`] entries before it (they are still counted in `repeats` and
/// `restores`), so the state changes always fit.
pub const MAX_TIMELINE: usize = 100;

/// Timeline entries kept free for state changes (created, started, done, cancelled).
pub const TIMELINE_RESERVED: usize = 8;

/// Most Signal ids kept on an order: the first, and the latest after it.
pub const MAX_SIGNAL_IDS: usize = 50;

/// Longest note (done, report), in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// Longest reason for a cancellation, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Longest installer name, in characters.
pub const MAX_INSTALLER_CHARS: usize = 100;

/// Most holidays in the configuration.
pub const MAX_HOLIDAYS: usize = 2000;

/// What is wrong with the device.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Low, failed or missing battery (device or radio peripheral).
    LowBattery,
    /// Mains (AC) power lost.
    MainsLoss,
    /// The device or a sensor was opened or tampered with.
    Tamper,
    /// A device, sensor, peripheral or power-supply fault; "service required".
    DeviceFailure,
    /// Reported by an operator from a Call (the person says the device does not work, ...).
    Reported,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::LowBattery,
        FaultKind::MainsLoss,
        FaultKind::Tamper,
        FaultKind::DeviceFailure,
        FaultKind::Reported,
    ];

    /// The stable name (`low_battery`, ...), also the `fault` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::LowBattery => "low_battery",
            FaultKind::MainsLoss => "mains_loss",
            FaultKind::Tamper => "tamper",
            FaultKind::DeviceFailure => "device_failure",
            FaultKind::Reported => "reported",
        }
    }

    /// The kind of a stable name.
    pub fn from_name(s: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where an order is in its life: `new` -> `started` -> `done`; `new` or `started` ->
/// `cancelled` (replaced by a new order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkOrderState {
    /// Made, not yet started by the installer.
    New,
    /// The installer has started (contacted the person, is on the way, ...).
    Started,
    /// Done.
    Done,
    /// Cancelled with a reason; a replacement order was made.
    Cancelled,
}

impl WorkOrderState {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkOrderState::New => "new",
            WorkOrderState::Started => "started",
            WorkOrderState::Done => "done",
            WorkOrderState::Cancelled => "cancelled",
        }
    }

    /// New or started.
    pub fn is_open(self) -> bool {
        matches!(self, WorkOrderState::New | WorkOrderState::Started)
    }
}

/// What a timeline entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderEventKind {
    /// The order was made (from a Signal, a report, or as a replacement).
    Created,
    /// The device reported the fault again.
    FaultRepeated,
    /// The device reported the fault gone (the order stays open: someone still checks it).
    Restored,
    /// A note (another report of the same fault).
    Note,
    /// Started.
    Started,
    /// Done.
    Done,
    /// Cancelled; `text` is the reason.
    Cancelled,
}

/// One line of an order's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderEvent {
    /// When: the Signal's reception for device events, else the moment of the action.
    pub at: Timestamp,
    /// What happened.
    pub kind: OrderEventKind,
    /// Who did it (absent for the device's own Signals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The journaled Signal, for device events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<u64>,
    /// A note, the reason of a cancellation, or the event code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A work order for a device's installer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkOrder {
    /// Order id, from 1.
    pub id: u64,
    /// The device's DC-09 account.
    pub account: String,
    /// The subscriber the device belongs to, if any.
    #[serde(default)]
    pub subscriber: Option<String>,
    /// Who does it (the installer's name, matched by `[[escalation]] kind = "installer"`).
    pub installer: String,
    /// What is wrong.
    pub fault: FaultKind,
    /// Where the order is.
    pub state: WorkOrderState,
    /// When it was made.
    pub created_at: Timestamp,
    /// It must be started before this (the end of the 3rd working day after the order day).
    pub start_by: Timestamp,
    /// It must be done before this (10 days after it was made).
    pub done_by: Timestamp,
    /// When it was started.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// When it was done.
    #[serde(default)]
    pub done_at: Option<Timestamp>,
    /// When it was cancelled.
    #[serde(default)]
    pub cancelled_at: Option<Timestamp>,
    /// Why it was cancelled.
    #[serde(default)]
    pub cancel_reason: Option<String>,
    /// The cancelled order this one replaces.
    #[serde(default)]
    pub replaces: Option<u64>,
    /// The order that replaced this one (when cancelled).
    #[serde(default)]
    pub replaced_by: Option<u64>,
    /// The Call the fault was reported from, if any.
    #[serde(default)]
    pub call: Option<u64>,
    /// Journaled Signals of the fault: the first and the latest (at most
    /// [`MAX_SIGNAL_IDS`]).
    #[serde(default)]
    pub signal_ids: Vec<u64>,
    /// Times the device reported the fault again after the order was made.
    #[serde(default)]
    pub repeats: u32,
    /// Times the device reported the fault gone.
    #[serde(default)]
    pub restores: u32,
    /// When the device last reported the fault gone, unless it reported the fault again
    /// since: the condition is back to normal now (the order still needs its visit).
    #[serde(default)]
    pub restored_at: Option<Timestamp>,
    /// What happened, oldest first (at most [`MAX_TIMELINE`] entries).
    #[serde(default)]
    pub timeline: Vec<OrderEvent>,
}

/// Why an open order is late.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Lateness {
    /// Not started at `start_by`.
    NotStarted,
    /// Not done at `done_by`.
    NotDone,
}

impl WorkOrder {
    /// Whether the order is late at `now`: not done at or after `done_by` (first), or not
    /// started at or after `start_by`. Done and cancelled orders are never late.
    pub fn lateness(&self, now: Timestamp) -> Option<Lateness> {
        if !self.state.is_open() {
            None
        } else if now >= self.done_by {
            Some(Lateness::NotDone)
        } else if self.state == WorkOrderState::New && now >= self.start_by {
            Some(Lateness::NotStarted)
        } else {
            None
        }
    }

    /// The order as the API shows it at `now`.
    pub fn view(self, now: Timestamp) -> WorkOrderView {
        WorkOrderView {
            overdue: self.lateness(now),
            order: self,
            subscriber_name: None,
        }
    }

    /// Appends a line, keeping the bound: lines other than state changes stop
    /// [`TIMELINE_RESERVED`] entries short of [`MAX_TIMELINE`].
    pub(crate) fn push_event(&mut self, e: OrderEvent) {
        let state_change = matches!(
            e.kind,
            OrderEventKind::Created
                | OrderEventKind::Started
                | OrderEventKind::Done
                | OrderEventKind::Cancelled
        );
        let room = if state_change {
            MAX_TIMELINE
        } else {
            MAX_TIMELINE - TIMELINE_RESERVED
        };
        if self.timeline.len() < room {
            self.timeline.push(e);
        }
    }

    /// Remembers a Signal id: the first is always kept, then the latest.
    pub(crate) fn push_signal(&mut self, id: u64) {
        if id == 0 || self.signal_ids.contains(&id) {
            return;
        }
        if self.signal_ids.len() >= MAX_SIGNAL_IDS {
            self.signal_ids.remove(1);
        }
        self.signal_ids.push(id);
    }
}

/// An order and whether it is late now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct WorkOrderView {
    /// The order.
    #[serde(flatten)]
    pub order: WorkOrder,
    /// Why it is late now (absent when it is not).
    pub overdue: Option<Lateness>,
    /// The subscriber's name (filled in by the API, so an operator need not open the
    /// audited card to see whose device it is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_name: Option<String>,
}
