//! Work orders for device faults: a low battery, lost mains power, tamper, a failed device,
//! or an operator's "report fault" on a Call becomes an order for the device's installer,
//! with the municipal deadlines of seed 004 ("Support av digitala hjälpmedel").
//!
//! - [`faults`]: which event codes are device faults ([`fault_of`]), consistent with
//!   `triage::priority` (every fault code is a level-3 technical code there). Communication
//!   faults (Contact ID 350-359, SIA YC/YS/LT/NT, vakt's own `communication_lost`) are not
//!   work orders: supervision and the telecom incidents handle them.
//! - [`calendar`]: working days (Monday to Friday minus the configured holidays) in the
//!   centre's time zone, and the two deadlines. Pure: times are parameters.
//! - [`service`]: [`WorkOrders`], the orders in the store: one open order per device and
//!   fault kind; a repeat or a restore of the fault is attached to it (a restore never
//!   closes it); start, done, cancel (with a reason, and a replacement order).
//! - [`observer`]: [`FaultObserver`], the Calls service's `SignalObserver` that feeds
//!   [`WorkOrders::on_signal`] from triage (registry lookup) and hands each change to a sink.
//!
//! # The routine (seed 004)
//!
//! "Support påbörjas snarast men ska ha påbörjats senast inom 3 arbetsdagar efter beställning
//! [...] och ska vara genomfört senast efter 10 dagar." vakt reads it as:
//!
//! - **start by** the end of the 3rd working day after the day the order was made (that day
//!   itself does not count, whatever the hour). Working days are Monday to Friday that are not
//!   in `holidays`. An order made on Friday evening, Saturday or Sunday counts Monday,
//!   Tuesday, Wednesday and must be started before Thursday 00:00. See
//!   [`Calendar::start_by`].
//! - **done by** 10 calendar days after the order was made, at the same local time of day
//!   ("senast efter 10 dagar" says days, not working days, where the same sentence says
//!   "arbetsdagar" for the start). Of the two readings of "after 10 days" (the same time on
//!   the 10th day, or the end of it) this is the stricter one, so vakt never reports an order
//!   in time that the municipality counts late. See [`Calendar::done_by`].
//! - "Kan arbetsordern inte genomföras [...] ska meddelande göras [...] att arbetsordern
//!   makulerats, och anledning till det. En ny arbetsorder måste göras.": cancelling needs a
//!   reason and makes a new order for the same device and fault at once, with new deadlines
//!   counted from the cancellation ([`WorkOrders::cancel`]).
//!
//! An order is late (overdue) while it is not started at or after `start_by`, or not done
//! at or after `done_by` ([`WorkOrder::lateness`]); done and cancelled orders are never late.

pub mod calendar;
pub mod faults;
pub mod observer;
pub mod service;

use jiff::civil::Date;
use serde::Deserialize;

pub use calendar::Calendar;
pub use faults::{fault_of, fault_of_event, faults_of};
pub use observer::{ChangeSink, FaultObserver};
pub use service::{Counts, Filter, Report, StateFilter, WorkOrders};

use crate::store::StoreError;

pub use crate::model::work_order::{
    FaultKind, Lateness, MAX_HOLIDAYS, MAX_INSTALLER_CHARS, MAX_NOTE_CHARS, MAX_REASON_CHARS,
    MAX_SIGNAL_IDS, MAX_TIMELINE, OrderEvent, OrderEventKind, TIMELINE_RESERVED, WorkOrder,
    WorkOrderState, WorkOrderView,
};

/// What a change did to an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// A new order (from a fault Signal, a report, or replacing a cancelled order: then
    /// `order.replaces` is set).
    Created,
    /// The fault repeated, or another report of it: attached to the open order.
    Attached,
    /// The device reported the fault gone; the order stays open.
    Restored,
    /// Started.
    Started,
    /// Done.
    Done,
    /// Cancelled; `replacement` is the new order (its own [`What::Created`] change follows).
    Cancelled {
        /// The replacement order's id.
        replacement: u64,
    },
}

impl What {
    /// The outbox event name (the `X-Vakt-Event` header): `work_order.created`,
    /// `work_order.attached`, `work_order.restored`, `work_order.started`, `work_order.done`,
    /// `work_order.cancelled`.
    pub fn event(&self) -> &'static str {
        match self {
            What::Created => "work_order.created",
            What::Attached => "work_order.attached",
            What::Restored => "work_order.restored",
            What::Started => "work_order.started",
            What::Done => "work_order.done",
            What::Cancelled { .. } => "work_order.cancelled",
        }
    }
}

/// One change of one order, for the installer's outbox: the order after the change and what
/// happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The order as it is now.
    pub order: WorkOrder,
    /// What happened.
    pub what: What,
}

impl Change {
    /// The notification of this change for the order's installer (subject `work_order/ID`;
    /// the order as it is now is the payload).
    pub fn outbox_event(&self) -> Result<crate::outbox::OutboxEvent, crate::outbox::OutboxError> {
        crate::outbox::OutboxEvent::new(
            self.what.event(),
            crate::outbox::Recipient::installer(self.order.installer.clone()),
            format!("work_order/{}", self.order.id),
            &self.order,
        )
    }
}

/// What can go wrong with work orders.
#[derive(Debug, thiserror::Error)]
pub enum WorkOrderError {
    /// No such order.
    #[error("no work order {0}")]
    NotFound(u64),
    /// The action does not apply in the order's state (starting a started order, ...).
    #[error("work order {id} is {}: it cannot be {action}", state.as_str())]
    State {
        /// The order.
        id: u64,
        /// Its state.
        state: WorkOrderState,
        /// What was tried (`started`, `done`, `cancelled`).
        action: &'static str,
    },
    /// A note or reason is empty or too long.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `[work_orders]`: deadlines, working days and the installer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkOrderOptions {
    /// Days on which no work is done besides Saturdays and Sundays (ISO dates,
    /// `"2026-12-24"`), in the centre's time zone. The default is the Swedish public holidays
    /// of 2026 and 2027 with midsummer eve, Christmas eve and New Year's eve; extend the list
    /// every year (vakt warns at start when it does not cover this year and the next).
    pub holidays: Vec<Date>,
    /// An order must be started by the end of this many working days after the day it was
    /// made (seed 004: 3).
    pub start_working_days: u32,
    /// An order must be done this many calendar days after it was made (seed 004: 10).
    pub finish_days: u32,
    /// The installer orders go to when the device's registry entry names none.
    pub default_installer: String,
}

impl Default for WorkOrderOptions {
    fn default() -> Self {
        WorkOrderOptions {
            holidays: calendar::swedish_holidays_2026_2027(),
            start_working_days: 3,
            finish_days: 10,
            default_installer: "hjalpmedelscentralen".into(),
        }
    }
}

impl WorkOrderOptions {
    /// Range checks, as messages prefixed `work_orders.` (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.holidays.len() > MAX_HOLIDAYS {
            errs.push(format!(
                "work_orders.holidays: at most {MAX_HOLIDAYS} dates"
            ));
        }
        if !(1..=30).contains(&self.start_working_days) {
            errs.push("work_orders.start_working_days must be 1..=30".into());
        }
        if !(1..=365).contains(&self.finish_days) {
            errs.push("work_orders.finish_days must be 1..=365".into());
        }
        let name = self.default_installer.trim();
        if name.is_empty() || name.chars().count() > MAX_INSTALLER_CHARS {
            errs.push(format!(
                "work_orders.default_installer must be 1 to {MAX_INSTALLER_CHARS} characters"
            ));
        }
        errs
    }
}

/// `text` trimmed, checked to be `min..=max` characters; `what` names it in the error.
pub(crate) fn checked_text(
    text: &str,
    min: usize,
    max: usize,
    what: &str,
) -> Result<String, WorkOrderError> {
    let t = text.trim();
    let n = t.chars().count();
    if n < min || n > max {
        return Err(WorkOrderError::Invalid(if min == 0 {
            format!("{what} must be at most {max} characters")
        } else {
            format!("give {what} of {min} to {max} characters")
        }));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn order(state: WorkOrderState) -> WorkOrder {
        WorkOrder {
            id: 1,
            account: "1234".into(),
            subscriber: None,
            installer: "i".into(),
            fault: FaultKind::LowBattery,
            state,
            created_at: ts("2026-03-02T08:00:00Z"),
            start_by: ts("2026-03-05T23:00:00Z"),
            done_by: ts("2026-03-12T08:00:00Z"),
            started_at: None,
            done_at: None,
            cancelled_at: None,
            cancel_reason: None,
            replaces: None,
            replaced_by: None,
            call: None,
            signal_ids: Vec::new(),
            repeats: 0,
            restores: 0,
            restored_at: None,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn lateness_at_the_deadlines() {
        let o = order(WorkOrderState::New);
        assert_eq!(o.lateness(ts("2026-03-05T22:59:59Z")), None);
        assert_eq!(
            o.lateness(ts("2026-03-05T23:00:00Z")),
            Some(Lateness::NotStarted)
        );
        assert_eq!(
            o.lateness(ts("2026-03-12T08:00:00Z")),
            Some(Lateness::NotDone)
        );
        let s = order(WorkOrderState::Started);
        assert_eq!(s.lateness(ts("2026-03-06T00:00:00Z")), None);
        assert_eq!(
            s.lateness(ts("2026-03-12T08:00:00Z")),
            Some(Lateness::NotDone)
        );
        for st in [WorkOrderState::Done, WorkOrderState::Cancelled] {
            assert_eq!(order(st).lateness(ts("2027-01-01T00:00:00Z")), None);
        }
    }

    #[test]
    fn timeline_and_signals_are_bounded() {
        let mut o = order(WorkOrderState::New);
        let at = ts("2026-03-02T08:00:00Z");
        let ev = |kind| OrderEvent {
            at,
            kind,
            user: None,
            signal: None,
            text: None,
        };
        for _ in 0..1000 {
            o.push_event(ev(OrderEventKind::FaultRepeated));
        }
        assert_eq!(o.timeline.len(), MAX_TIMELINE - TIMELINE_RESERVED);
        o.push_event(ev(OrderEventKind::Started));
        o.push_event(ev(OrderEventKind::Done));
        assert_eq!(o.timeline.last().unwrap().kind, OrderEventKind::Done);
        for id in 1..=1000 {
            o.push_signal(id);
        }
        o.push_signal(1000);
        assert_eq!(o.signal_ids.len(), MAX_SIGNAL_IDS);
        assert_eq!(o.signal_ids[0], 1, "the first Signal is kept");
        assert_eq!(*o.signal_ids.last().unwrap(), 1000);
        assert_eq!(o.signal_ids[1], 1000 - MAX_SIGNAL_IDS as u64 + 2);
    }

    #[test]
    fn options_default_is_valid_and_parses() {
        let d = WorkOrderOptions::default();
        assert!(d.problems().is_empty(), "{:?}", d.problems());
        let t: WorkOrderOptions =
            toml::from_str("holidays = [\"2026-12-24\", \"2026-12-25\"]\nstart_working_days = 2\n")
                .unwrap();
        assert_eq!(t.holidays.len(), 2);
        assert_eq!(t.start_working_days, 2);
        assert_eq!(t.finish_days, 10);
        assert!(toml::from_str::<WorkOrderOptions>("holiday = []").is_err());
        assert!(toml::from_str::<WorkOrderOptions>("holidays = [\"2026-13-01\"]").is_err());
        let bad = WorkOrderOptions {
            start_working_days: 0,
            finish_days: 0,
            default_installer: " ".into(),
            ..WorkOrderOptions::default()
        };
        assert_eq!(bad.problems().len(), 3);
    }

    #[test]
    fn names_round_trip() {
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::from_name(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(
            What::Cancelled { replacement: 2 }.event(),
            "work_order.cancelled"
        );
    }
}
