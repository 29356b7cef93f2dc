//! A dispatch (an assignment of a Call to one patrol) and its two clocks, as a pure state
//! machine: every time is a parameter, nothing here reads a clock, does I/O or sends messages.
//! The caller stores the [`Dispatch`] after every change and tells the console and the patrol
//! what [`tick`] reports.
//!
//! The clocks:
//! - **Receipt** runs from `offered_at` until the patrol confirms receipt. When it reaches
//!   [`SlaOptions::receipt_timeout`] (default 120 s) first, [`tick`] moves the dispatch to
//!   `ReceiptTimeout` (closed; the caller offers the next patrol of the route and tells the
//!   operator).
//! - **Arrival** (the SLA) runs from `received_at`. [`tick`] reports a warning at each mark of
//!   [`SlaOptions::warn_at_mins`] (default 20 and 25 min) below the dispatch's `limit_mins`, and
//!   the breach at the deadline (`received_at + limit_mins`). The dispatch stays open after a
//!   breach: the patrol is still on its way.
//!
//! Rules:
//! - The deadline is the first late instant: arriving at or after it is a breach, and [`tick`]
//!   at or after it reports the breach, so the result does not depend on whether a tick came
//!   first. `breached` is never cleared.
//! - An event that is already recorded (applied, or implied by a later step) is a no-op
//!   (`Ok`, nothing changes; the first time counts), in every state, closed ones included:
//!   `Received` once received, `Accepted` once accepted or arrived, `Arrived` once arrived,
//!   `Declined` on a declined dispatch, `Completed` on a completed one, [`cancel`] on a
//!   cancelled one. Patrols resend unacknowledged messages after a reconnect (also after the
//!   dispatch has ended), so repeats are normal. This rule comes before the next one
//!   (`proto/patrol.md` §6, rules 2 and 3).
//! - Closed dispatches (`Declined`, `ReceiptTimeout`, `Completed`, `Cancelled`) take no other
//!   event ([`SlaError::NotOpen`]).
//! - A patrol that forgot to confirm receipt is not refused: `Accepted`, `Declined` or
//!   `Arrived` straight from `Offered` imply receipt at that moment (`received_at = now`), so
//!   its time to arrival is counted from then.
//! - `Completed` needs `Arrived` first: from `Offered`, `Received` or `Accepted` it is
//!   [`SlaError::OutOfOrder`]. The arrival time is what the SLA measures, and the moment of a
//!   completion is not it (the patrol may have been at the door for an hour).
//! - `Declined` closes the dispatch (the operator or the route picks another patrol); it is
//!   accepted from `Offered`, `Received` and `Accepted`, not after arrival
//!   ([`SlaError::OutOfOrder`]).
//! - [`cancel`] closes an open dispatch (`Offered`, `Received`, `Accepted`). An arrived one is
//!   closed with `Completed` instead.
//! - An event that does not fit an open or arrived dispatch is [`SlaError::OutOfOrder`]. A
//!   refused event changes nothing.
//! - Every time the clocks need is in the [`Dispatch`] (serde), so after a restart ticking
//!   resumes from the stored times; marks that passed while vakt was down are reported once
//!   each, in order, then the breach if it is due.

use jiff::{SignedDuration, Timestamp};

use crate::model::{ArrivalMethod, Dispatch, DispatchState};

/// Default time a patrol has to confirm receipt.
pub const DEFAULT_RECEIPT_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

/// Default warning marks, minutes after receipt.
pub const DEFAULT_WARN_AT_MINS: [u32; 2] = [20, 25];

/// Settings of the clocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaOptions {
    /// How long a patrol has to confirm receipt before the dispatch times out (default 120 s).
    pub receipt_timeout: SignedDuration,
    /// Minutes after receipt at which the console and the patrol are warned (default 20 and
    /// 25). Order and duplicates do not matter; marks at or past a dispatch's limit are ignored.
    pub warn_at_mins: Vec<u32>,
}

impl Default for SlaOptions {
    fn default() -> SlaOptions {
        SlaOptions {
            receipt_timeout: DEFAULT_RECEIPT_TIMEOUT,
            warn_at_mins: DEFAULT_WARN_AT_MINS.to_vec(),
        }
    }
}

/// What a patrol (or, for `Arrived`, a digital lock) says about its assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatrolEvent {
    /// The assignment reached the patrol: the arrival clock starts.
    Received,
    /// The patrol takes it.
    Accepted,
    /// The patrol cannot take it.
    Declined {
        /// Why (stored in the dispatch's `note`).
        reason: String,
    },
    /// The patrol is at the door.
    Arrived {
        /// How the arrival is known.
        method: ArrivalMethod,
    },
    /// The visit is done.
    Completed {
        /// How it ended, e.g. "helped up".
        outcome: String,
        /// Free text.
        note: String,
    },
}

impl PatrolEvent {
    /// The event's name, as in [`SlaError::OutOfOrder`].
    pub fn name(&self) -> &'static str {
        match self {
            PatrolEvent::Received => "received",
            PatrolEvent::Accepted => "accepted",
            PatrolEvent::Declined { .. } => "declined",
            PatrolEvent::Arrived { .. } => "arrived",
            PatrolEvent::Completed { .. } => "completed",
        }
    }
}

/// What the clocks say happened, reported by [`tick`] once each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockEvent {
    /// The patrol did not confirm receipt in time; the dispatch is closed (`ReceiptTimeout`).
    ReceiptTimeout,
    /// A warning mark passed without an arrival.
    Warning {
        /// The mark, minutes after receipt.
        mins: u32,
        /// Time left until the deadline (zero, never negative, if it has passed too).
        left: SignedDuration,
    },
    /// The arrival limit ran out without an arrival; the dispatch is now `breached`.
    Breached,
}

/// Why an event was refused. A refused event changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlaError {
    /// The dispatch is closed (or, for a cancel, already arrived).
    #[error("the dispatch is {} and takes no more events", state_name(.0))]
    NotOpen(DispatchState),
    /// The event does not fit the dispatch's state.
    #[error("{event} does not fit a dispatch that is {}", state_name(.state))]
    OutOfOrder {
        /// Where the dispatch is.
        state: DispatchState,
        /// The refused event (see [`PatrolEvent::name`]).
        event: &'static str,
    },
}

/// The state's name, as it is serialized.
fn state_name(state: &DispatchState) -> &'static str {
    match state {
        DispatchState::Offered => "offered",
        DispatchState::Received => "received",
        DispatchState::Accepted => "accepted",
        DispatchState::Declined => "declined",
        DispatchState::ReceiptTimeout => "receipt_timeout",
        DispatchState::Arrived => "arrived",
        DispatchState::Completed => "completed",
        DispatchState::Cancelled => "cancelled",
    }
}

/// A new dispatch, `Offered` at `now` (the receipt clock starts). `limit_mins` is the area's
/// arrival limit; `instruction` the operator's words to the patrol (may be empty).
#[allow(clippy::too_many_arguments)] // the fields of a Dispatch; a builder would add nothing
pub fn new_dispatch(
    id: u64,
    call: u64,
    patrol: &str,
    provider: &str,
    area: &str,
    limit_mins: u32,
    operator: &str,
    instruction: &str,
    now: Timestamp,
) -> Dispatch {
    Dispatch {
        id,
        call,
        patrol: patrol.to_owned(),
        provider: provider.to_owned(),
        area: area.to_owned(),
        state: DispatchState::Offered,
        offered_at: now,
        received_at: None,
        accepted_at: None,
        arrived_at: None,
        arrival_method: None,
        ended_at: None,
        limit_mins,
        warned_at_mins: Vec::new(),
        breached: false,
        note: String::new(),
        operator: operator.to_owned(),
        instruction: instruction.to_owned(),
    }
}

/// Applies what the patrol says at `now` (see the module's rules).
pub fn apply(d: &mut Dispatch, ev: PatrolEvent, now: Timestamp) -> Result<(), SlaError> {
    use DispatchState as S;
    let event = ev.name();
    if already_recorded(d, &ev) {
        // The first time counts.
        return Ok(());
    }
    match (d.state, ev) {
        (S::Offered, PatrolEvent::Received) => {
            receive(d, now);
            d.state = S::Received;
        }
        (S::Offered | S::Received, PatrolEvent::Accepted) => {
            receive(d, now);
            d.accepted_at = Some(now);
            d.state = S::Accepted;
        }
        (S::Offered | S::Received | S::Accepted, PatrolEvent::Declined { reason }) => {
            receive(d, now);
            end(d, S::Declined, reason, now);
        }
        (S::Offered | S::Received | S::Accepted, PatrolEvent::Arrived { method }) => {
            receive(d, now);
            arrive(d, method, now);
        }
        (S::Arrived, PatrolEvent::Completed { outcome, note }) => {
            end(d, S::Completed, completion_note(&outcome, &note), now);
        }

        (state @ (S::Declined | S::ReceiptTimeout | S::Completed | S::Cancelled), _) => {
            return Err(SlaError::NotOpen(state));
        }
        (state, _) => return Err(SlaError::OutOfOrder { state, event }),
    }
    Ok(())
}

/// Whether `ev` is already recorded in `d` (applied, or implied by a later step): then it is
/// acknowledged and changes nothing, whatever the state.
fn already_recorded(d: &Dispatch, ev: &PatrolEvent) -> bool {
    match ev {
        PatrolEvent::Received => d.received_at.is_some(),
        // An arrival implies the patrol took it.
        PatrolEvent::Accepted => d.accepted_at.is_some() || d.arrived_at.is_some(),
        PatrolEvent::Arrived { .. } => d.arrived_at.is_some(),
        PatrolEvent::Declined { .. } => d.state == DispatchState::Declined,
        PatrolEvent::Completed { .. } => d.state == DispatchState::Completed,
    }
}

/// The operator withdraws the dispatch at `now`: an open one (offered, received, accepted)
/// becomes `Cancelled` with `note`. Cancelling a cancelled dispatch is a no-op; any other
/// state is [`SlaError::NotOpen`].
pub fn cancel(d: &mut Dispatch, note: &str, now: Timestamp) -> Result<(), SlaError> {
    if d.state == DispatchState::Cancelled {
        return Ok(());
    }
    if !d.is_open() {
        return Err(SlaError::NotOpen(d.state));
    }
    end(d, DispatchState::Cancelled, note.trim().to_owned(), now);
    Ok(())
}

/// Runs the clocks at `now` and returns what they say, each thing once (recorded in the
/// dispatch: the `ReceiptTimeout` state, `warned_at_mins`, `breached`), in order: warnings by
/// mark, then the breach. Calling it again at the same or an earlier `now` reports nothing.
/// After arrival, and in closed states, it reports nothing.
pub fn tick(d: &mut Dispatch, opts: &SlaOptions, now: Timestamp) -> Vec<ClockEvent> {
    let mut out = Vec::new();
    match d.state {
        DispatchState::Offered => {
            if now >= later(d.offered_at, opts.receipt_timeout) {
                d.state = DispatchState::ReceiptTimeout;
                d.ended_at = Some(now);
                out.push(ClockEvent::ReceiptTimeout);
            }
        }
        DispatchState::Received | DispatchState::Accepted => {
            let (Some(received), Some(deadline)) = (d.received_at, deadline(d)) else {
                return out;
            };
            for m in pending_marks(d, opts) {
                if now < later(received, mins(m)) {
                    break;
                }
                let left = deadline.duration_since(now).max(SignedDuration::ZERO);
                out.push(ClockEvent::Warning { mins: m, left });
                d.warned_at_mins.push(m);
            }
            if !d.breached && now >= deadline {
                d.breached = true;
                out.push(ClockEvent::Breached);
            }
        }
        DispatchState::Declined
        | DispatchState::ReceiptTimeout
        | DispatchState::Arrived
        | DispatchState::Completed
        | DispatchState::Cancelled => {}
    }
    out
}

/// The next moment at which [`tick`] may have something to report (for a timer): the receipt
/// timeout while offered, then the next warning mark not yet reported, then the deadline until
/// the breach is reported. It may be in the past (ticking is due now). `None` when nothing is
/// pending: arrived, closed, or received and already breached.
pub fn next_due(d: &Dispatch, opts: &SlaOptions) -> Option<Timestamp> {
    match d.state {
        DispatchState::Offered => Some(later(d.offered_at, opts.receipt_timeout)),
        DispatchState::Received | DispatchState::Accepted => {
            let received = d.received_at?;
            match pending_marks(d, opts).first() {
                Some(&m) => Some(later(received, mins(m))),
                None if !d.breached => deadline(d),
                None => None,
            }
        }
        DispatchState::Declined
        | DispatchState::ReceiptTimeout
        | DispatchState::Arrived
        | DispatchState::Completed
        | DispatchState::Cancelled => None,
    }
}

/// Time from receipt to arrival, once the patrol has arrived.
pub fn time_to_arrival(d: &Dispatch) -> Option<SignedDuration> {
    Some(d.arrived_at?.duration_since(d.received_at?))
}

/// Starts the arrival clock if it has not started (receipt implied by a later event).
fn receive(d: &mut Dispatch, now: Timestamp) {
    if d.received_at.is_none() {
        d.received_at = Some(now);
    }
}

/// Records the arrival (the first one counts) and whether it was late.
fn arrive(d: &mut Dispatch, method: ArrivalMethod, now: Timestamp) {
    if d.arrived_at.is_none() {
        d.arrived_at = Some(now);
        d.arrival_method = Some(method);
        if deadline(d).is_some_and(|dl| now >= dl) {
            d.breached = true;
        }
    }
    d.state = DispatchState::Arrived;
}

/// Closes the dispatch.
fn end(d: &mut Dispatch, state: DispatchState, note: String, now: Timestamp) {
    d.state = state;
    d.ended_at = Some(now);
    d.note = note;
}

/// The dispatch's one note for a completion: "outcome: note", or whichever is not empty.
fn completion_note(outcome: &str, note: &str) -> String {
    match (outcome.trim(), note.trim()) {
        ("", n) => n.to_owned(),
        (o, "") => o.to_owned(),
        (o, n) => format!("{o}: {n}"),
    }
}

/// Warning marks below the limit not yet reported, ascending, without duplicates.
fn pending_marks(d: &Dispatch, opts: &SlaOptions) -> Vec<u32> {
    let mut marks: Vec<u32> = opts
        .warn_at_mins
        .iter()
        .copied()
        .filter(|m| *m < d.limit_mins && !d.warned_at_mins.contains(m))
        .collect();
    marks.sort_unstable();
    marks.dedup();
    marks
}

/// The deadline, saturating (unlike [`Dispatch::deadline`], it cannot overflow).
fn deadline(d: &Dispatch) -> Option<Timestamp> {
    d.received_at.map(|r| later(r, mins(d.limit_mins)))
}

fn mins(m: u32) -> SignedDuration {
    SignedDuration::from_mins(i64::from(m))
}

/// `t + dur`, saturating at the ends of time.
fn later(t: Timestamp, dur: SignedDuration) -> Timestamp {
    t.saturating_add(dur).unwrap_or(if dur.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    /// `s` seconds after the test's epoch.
    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(T0 + s).unwrap()
    }

    /// `m` minutes after the test's epoch.
    fn tm(m: i64) -> Timestamp {
        t(m * 60)
    }

    fn offered(limit: u32) -> Dispatch {
        new_dispatch(1, 7, "p1", "hemtj", "norr", limit, "ola", "", t(0))
    }

    /// Offered at 0, received at 0.
    fn received(limit: u32) -> Dispatch {
        let mut d = offered(limit);
        apply(&mut d, PatrolEvent::Received, t(0)).unwrap();
        d
    }

    fn warning(mins: u32, left_mins: i64) -> ClockEvent {
        ClockEvent::Warning {
            mins,
            left: SignedDuration::from_mins(left_mins),
        }
    }

    fn arrived(method: ArrivalMethod) -> PatrolEvent {
        PatrolEvent::Arrived { method }
    }

    fn completed(outcome: &str, note: &str) -> PatrolEvent {
        PatrolEvent::Completed {
            outcome: outcome.into(),
            note: note.into(),
        }
    }

    #[test]
    fn new_dispatch_is_offered_with_the_receipt_clock_running() {
        let d = offered(30);
        assert_eq!(d.state, DispatchState::Offered);
        assert_eq!(
            (d.id, d.call, d.patrol.as_str(), d.provider.as_str()),
            (1, 7, "p1", "hemtj")
        );
        assert_eq!((d.area.as_str(), d.limit_mins), ("norr", 30));
        assert_eq!(d.operator, "ola");
        assert_eq!(d.offered_at, t(0));
        assert_eq!(d.received_at, None);
        assert!(d.is_open() && !d.breached && d.warned_at_mins.is_empty());
        assert_eq!(next_due(&d, &SlaOptions::default()), Some(t(120)));
    }

    #[test]
    fn receipt_timeout_at_exactly_120_s_not_at_119() {
        let opts = SlaOptions::default();
        let mut d = offered(30);
        assert_eq!(tick(&mut d, &opts, t(119)), vec![]);
        assert_eq!(d.state, DispatchState::Offered);
        assert_eq!(next_due(&d, &opts), Some(t(120)));

        assert_eq!(
            tick(&mut d, &opts, t(120)),
            vec![ClockEvent::ReceiptTimeout]
        );
        assert_eq!(d.state, DispatchState::ReceiptTimeout);
        assert_eq!(d.ended_at, Some(t(120)));
        assert!(!d.is_open());
        assert_eq!(next_due(&d, &opts), None);

        // Once.
        assert_eq!(tick(&mut d, &opts, t(121)), vec![]);
        assert_eq!(tick(&mut d, &opts, tm(60)), vec![]);
        // A late receipt is refused: the next patrol has it.
        let before = d.clone();
        assert_eq!(
            apply(&mut d, PatrolEvent::Received, t(130)),
            Err(SlaError::NotOpen(DispatchState::ReceiptTimeout))
        );
        assert_eq!(d, before);
    }

    #[test]
    fn receipt_timeout_is_configurable() {
        let opts = SlaOptions {
            receipt_timeout: SignedDuration::from_secs(30),
            ..SlaOptions::default()
        };
        let mut d = offered(30);
        assert_eq!(next_due(&d, &opts), Some(t(30)));
        assert_eq!(tick(&mut d, &opts, t(29)), vec![]);
        assert_eq!(tick(&mut d, &opts, t(30)), vec![ClockEvent::ReceiptTimeout]);
    }

    #[test]
    fn receipt_stops_the_receipt_clock_and_starts_the_arrival_clock() {
        let opts = SlaOptions::default();
        let mut d = offered(30);
        apply(&mut d, PatrolEvent::Received, t(60)).unwrap();
        assert_eq!(d.state, DispatchState::Received);
        assert_eq!(d.received_at, Some(t(60)));
        assert_eq!(d.deadline(), Some(t(60 + 30 * 60)));
        assert_eq!(next_due(&d, &opts), Some(t(60 + 20 * 60)));
        // Past the receipt timeout: nothing.
        assert_eq!(tick(&mut d, &opts, t(200)), vec![]);
        assert_eq!(d.state, DispatchState::Received);
    }

    #[test]
    fn warnings_at_20_and_25_once_each_then_breach_at_30() {
        let opts = SlaOptions::default();
        let mut d = received(30);
        assert_eq!(next_due(&d, &opts), Some(tm(20)));
        assert_eq!(tick(&mut d, &opts, t(20 * 60 - 1)), vec![]);

        assert_eq!(tick(&mut d, &opts, tm(20)), vec![warning(20, 10)]);
        assert_eq!(d.warned_at_mins, vec![20]);
        assert_eq!(tick(&mut d, &opts, tm(20)), vec![]);
        assert_eq!(tick(&mut d, &opts, tm(24)), vec![]);
        assert_eq!(next_due(&d, &opts), Some(tm(25)));

        // Accepting does not touch the clocks.
        apply(&mut d, PatrolEvent::Accepted, tm(21)).unwrap();
        assert_eq!(d.state, DispatchState::Accepted);
        assert_eq!(next_due(&d, &opts), Some(tm(25)));

        assert_eq!(tick(&mut d, &opts, tm(25)), vec![warning(25, 5)]);
        assert_eq!(d.warned_at_mins, vec![20, 25]);
        assert_eq!(tick(&mut d, &opts, t(30 * 60 - 1)), vec![]);
        assert_eq!(next_due(&d, &opts), Some(tm(30)));
        assert!(!d.breached);

        assert_eq!(tick(&mut d, &opts, tm(30)), vec![ClockEvent::Breached]);
        assert!(d.breached);
        // Still open: the patrol is on its way.
        assert_eq!(d.state, DispatchState::Accepted);
        assert_eq!(next_due(&d, &opts), None);
        assert_eq!(tick(&mut d, &opts, tm(31)), vec![]);
        assert_eq!(tick(&mut d, &opts, tm(90)), vec![]);

        // A late arrival keeps the breach.
        apply(&mut d, arrived(ArrivalMethod::Lock), tm(40)).unwrap();
        assert!(d.breached);
        assert_eq!(time_to_arrival(&d), Some(SignedDuration::from_mins(40)));
    }

    #[test]
    fn a_45_minute_area_breaches_at_45() {
        let opts = SlaOptions::default();
        let mut d = received(45);
        assert_eq!(tick(&mut d, &opts, tm(20)), vec![warning(20, 25)]);
        assert_eq!(tick(&mut d, &opts, tm(25)), vec![warning(25, 20)]);
        assert_eq!(next_due(&d, &opts), Some(tm(45)));
        assert_eq!(tick(&mut d, &opts, tm(30)), vec![]);
        assert_eq!(tick(&mut d, &opts, t(45 * 60 - 1)), vec![]);
        assert!(!d.breached);
        assert_eq!(tick(&mut d, &opts, tm(45)), vec![ClockEvent::Breached]);
        assert!(d.breached);
    }

    #[test]
    fn marks_are_sorted_deduplicated_and_limited_to_below_the_limit() {
        let opts = SlaOptions {
            receipt_timeout: DEFAULT_RECEIPT_TIMEOUT,
            warn_at_mins: vec![25, 20, 20, 15, 30, 40],
        };
        let mut d = received(30);
        assert_eq!(next_due(&d, &opts), Some(tm(15)));
        assert_eq!(tick(&mut d, &opts, tm(15)), vec![warning(15, 15)]);
        assert_eq!(tick(&mut d, &opts, tm(20)), vec![warning(20, 10)]);
        assert_eq!(tick(&mut d, &opts, tm(25)), vec![warning(25, 5)]);
        assert_eq!(next_due(&d, &opts), Some(tm(30)));
        // 30 and 40 are not warnings for a 30-minute area.
        assert_eq!(tick(&mut d, &opts, tm(40)), vec![ClockEvent::Breached]);
        assert_eq!(d.warned_at_mins, vec![15, 20, 25]);

        // Without marks only the breach.
        let opts = SlaOptions {
            warn_at_mins: vec![],
            ..SlaOptions::default()
        };
        let mut d = received(30);
        assert_eq!(next_due(&d, &opts), Some(tm(30)));
        assert_eq!(tick(&mut d, &opts, tm(29)), vec![]);
        assert_eq!(tick(&mut d, &opts, tm(30)), vec![ClockEvent::Breached]);
    }

    #[test]
    fn several_marks_passed_at_once_are_reported_in_order_then_the_breach() {
        let opts = SlaOptions::default();
        let mut d = received(30);
        assert_eq!(
            tick(&mut d, &opts, tm(27)),
            vec![warning(20, 3), warning(25, 3)]
        );

        let mut d = received(30);
        assert_eq!(
            tick(&mut d, &opts, tm(35)),
            vec![warning(20, 0), warning(25, 0), ClockEvent::Breached]
        );
        assert_eq!(d.warned_at_mins, vec![20, 25]);
        assert!(d.breached);
        assert_eq!(tick(&mut d, &opts, tm(36)), vec![]);
    }

    #[test]
    fn arrival_before_the_deadline_is_not_a_breach_at_or_after_it_is() {
        let opts = SlaOptions::default();
        let mut d = received(30);
        apply(&mut d, arrived(ArrivalMethod::App), t(30 * 60 - 1)).unwrap();
        assert_eq!(d.state, DispatchState::Arrived);
        assert_eq!(d.arrived_at, Some(t(30 * 60 - 1)));
        assert_eq!(d.arrival_method, Some(ArrivalMethod::App));
        assert!(!d.breached);
        assert_eq!(
            time_to_arrival(&d),
            Some(SignedDuration::from_secs(30 * 60 - 1))
        );
        // The clocks stop at arrival.
        assert_eq!(next_due(&d, &opts), None);
        assert_eq!(tick(&mut d, &opts, tm(60)), vec![]);
        assert!(!d.breached);

        // Exactly at the deadline, without a tick before: late (the same as with a tick).
        let mut d = received(30);
        apply(&mut d, arrived(ArrivalMethod::Lock), tm(30)).unwrap();
        assert!(d.breached);

        let mut d = received(30);
        apply(&mut d, arrived(ArrivalMethod::ReceiptCode), tm(31)).unwrap();
        assert!(d.breached);
        assert_eq!(d.arrival_method, Some(ArrivalMethod::ReceiptCode));
        assert_eq!(time_to_arrival(&d), Some(SignedDuration::from_mins(31)));

        // A 45-minute area: 31 minutes is on time.
        let mut d = received(45);
        apply(&mut d, arrived(ArrivalMethod::App), tm(31)).unwrap();
        assert!(!d.breached);
    }

    #[test]
    fn restart_in_the_middle_gives_only_the_rest() {
        let opts = SlaOptions::default();
        let mut d = offered(30);
        apply(&mut d, PatrolEvent::Received, t(30)).unwrap();
        assert_eq!(tick(&mut d, &opts, t(30 + 20 * 60)), vec![warning(20, 10)]);

        // vakt stops; the dispatch is in the store.
        let stored = serde_json::to_string(&d).unwrap();
        let mut d: Dispatch = serde_json::from_str(&stored).unwrap();

        assert_eq!(next_due(&d, &opts), Some(t(30 + 25 * 60)));
        assert_eq!(tick(&mut d, &opts, t(30 + 22 * 60)), vec![]);
        assert_eq!(tick(&mut d, &opts, t(30 + 25 * 60)), vec![warning(25, 5)]);
        assert_eq!(next_due(&d, &opts), Some(t(30 + 30 * 60)));
        assert_eq!(
            tick(&mut d, &opts, t(30 + 30 * 60)),
            vec![ClockEvent::Breached]
        );
        assert_eq!(next_due(&d, &opts), None);
    }

    #[test]
    fn restart_after_a_long_stop_reports_what_passed_once() {
        let opts = SlaOptions::default();
        let mut d = received(30);
        assert_eq!(tick(&mut d, &opts, tm(20)), vec![warning(20, 10)]);
        let stored = serde_json::to_vec(&d).unwrap();
        let mut d: Dispatch = serde_json::from_slice(&stored).unwrap();
        // Due in the past: tick at once.
        assert_eq!(next_due(&d, &opts), Some(tm(25)));
        assert_eq!(
            tick(&mut d, &opts, tm(50)),
            vec![warning(25, 0), ClockEvent::Breached]
        );

        // An offered dispatch restored after its receipt timeout.
        let d = offered(30);
        let mut d: Dispatch = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(
            tick(&mut d, &opts, tm(10)),
            vec![ClockEvent::ReceiptTimeout]
        );
        assert_eq!(d.ended_at, Some(tm(10)));
    }

    #[test]
    fn repeated_events_are_idempotent() {
        let mut d = offered(30);
        apply(&mut d, PatrolEvent::Received, t(10)).unwrap();
        apply(&mut d, PatrolEvent::Received, t(50)).unwrap();
        assert_eq!(d.received_at, Some(t(10)));
        assert_eq!(d.state, DispatchState::Received);

        apply(&mut d, PatrolEvent::Accepted, t(20)).unwrap();
        let once = d.clone();
        apply(&mut d, PatrolEvent::Accepted, t(30)).unwrap();
        apply(&mut d, PatrolEvent::Received, t(30)).unwrap();
        assert_eq!(d, once);

        apply(&mut d, arrived(ArrivalMethod::Lock), tm(10)).unwrap();
        let once = d.clone();
        apply(&mut d, arrived(ArrivalMethod::App), tm(40)).unwrap();
        apply(&mut d, PatrolEvent::Received, tm(40)).unwrap();
        apply(&mut d, PatrolEvent::Accepted, tm(40)).unwrap();
        assert_eq!(d, once);
        assert_eq!(d.arrived_at, Some(tm(10)));
        assert_eq!(d.arrival_method, Some(ArrivalMethod::Lock));
        assert!(!d.breached);

        apply(&mut d, completed("helped up", "no injury"), tm(25)).unwrap();
        assert_eq!(d.state, DispatchState::Completed);
        assert_eq!(d.ended_at, Some(tm(25)));
        assert_eq!(d.note, "helped up: no injury");
        let once = d.clone();
        apply(&mut d, completed("other", ""), tm(26)).unwrap();
        assert_eq!(d, once);

        let mut d = received(30);
        apply(
            &mut d,
            PatrolEvent::Declined {
                reason: "flat tyre".into(),
            },
            t(40),
        )
        .unwrap();
        let once = d.clone();
        apply(
            &mut d,
            PatrolEvent::Declined {
                reason: "again".into(),
            },
            t(50),
        )
        .unwrap();
        assert_eq!(d, once);

        let mut d = offered(30);
        cancel(&mut d, "wrong patrol", t(5)).unwrap();
        let once = d.clone();
        cancel(&mut d, "twice", t(6)).unwrap();
        assert_eq!(d, once);
        assert_eq!(d.note, "wrong patrol");
    }

    #[test]
    fn out_of_order_events_are_refused_and_change_nothing() {
        fn refused(d: &mut Dispatch, ev: PatrolEvent, err: SlaError) {
            let before = d.clone();
            assert_eq!(apply(d, ev, tm(50)), Err(err));
            assert_eq!(*d, before);
        }

        let mut d = received(30);
        cancel(&mut d, "resolved by phone", tm(3)).unwrap();
        assert_eq!(d.state, DispatchState::Cancelled);
        assert_eq!(d.ended_at, Some(tm(3)));
        assert_eq!(d.note, "resolved by phone");
        let closed = SlaError::NotOpen(DispatchState::Cancelled);
        refused(&mut d, completed("done", ""), closed);
        refused(&mut d, arrived(ArrivalMethod::Lock), closed);
        refused(&mut d, PatrolEvent::Accepted, closed);

        let mut d = received(30);
        apply(&mut d, arrived(ArrivalMethod::App), tm(9)).unwrap();
        apply(&mut d, completed("done", ""), tm(10)).unwrap();
        let closed = SlaError::NotOpen(DispatchState::Completed);
        refused(&mut d, PatrolEvent::Declined { reason: "x".into() }, closed);
        assert_eq!(cancel(&mut d, "x", tm(11)), Err(closed));

        let mut d = received(30);
        apply(
            &mut d,
            PatrolEvent::Declined {
                reason: "busy".into(),
            },
            tm(1),
        )
        .unwrap();
        refused(
            &mut d,
            PatrolEvent::Accepted,
            SlaError::NotOpen(DispatchState::Declined),
        );

        // Declined after the arrival.
        let mut d = received(30);
        apply(&mut d, arrived(ArrivalMethod::App), tm(10)).unwrap();
        refused(
            &mut d,
            PatrolEvent::Declined { reason: "x".into() },
            SlaError::OutOfOrder {
                state: DispatchState::Arrived,
                event: "declined",
            },
        );
        let before = d.clone();
        assert_eq!(
            cancel(&mut d, "x", tm(11)),
            Err(SlaError::NotOpen(DispatchState::Arrived))
        );
        assert_eq!(d, before);
    }

    #[test]
    fn receipt_is_implied_by_a_later_event() {
        let opts = SlaOptions::default();
        let mut d = offered(30);
        apply(&mut d, arrived(ArrivalMethod::Lock), t(100)).unwrap();
        assert_eq!(d.state, DispatchState::Arrived);
        assert_eq!(d.received_at, Some(t(100)));
        assert_eq!(d.arrived_at, Some(t(100)));
        assert_eq!(time_to_arrival(&d), Some(SignedDuration::ZERO));
        assert!(!d.breached);
        assert_eq!(next_due(&d, &opts), None);
        assert_eq!(tick(&mut d, &opts, tm(60)), vec![]);

        let mut d = offered(30);
        apply(&mut d, PatrolEvent::Accepted, t(30)).unwrap();
        assert_eq!(d.state, DispatchState::Accepted);
        assert_eq!((d.received_at, d.accepted_at), (Some(t(30)), Some(t(30))));
        assert_eq!(next_due(&d, &opts), Some(t(30 + 20 * 60)));

        let mut d = offered(30);
        apply(
            &mut d,
            PatrolEvent::Declined {
                reason: "far".into(),
            },
            t(30),
        )
        .unwrap();
        assert_eq!(d.state, DispatchState::Declined);
        assert_eq!((d.received_at, d.ended_at), (Some(t(30)), Some(t(30))));
        assert_eq!(d.note, "far");
        assert_eq!(next_due(&d, &opts), None);
        assert_eq!(tick(&mut d, &opts, tm(60)), vec![]);
    }

    #[test]
    fn completed_without_arrived_is_refused_and_records_no_arrival() {
        for mut d in [offered(30), received(30)] {
            let before = d.clone();
            let state = d.state;
            assert_eq!(
                apply(&mut d, completed("helped up", ""), tm(32)),
                Err(SlaError::OutOfOrder {
                    state,
                    event: "completed"
                })
            );
            assert_eq!(d, before, "no arrival recorded, nothing changed");
        }
        let mut d = received(30);
        apply(&mut d, PatrolEvent::Accepted, tm(1)).unwrap();
        let before = d.clone();
        assert!(apply(&mut d, completed("helped up", ""), tm(32)).is_err());
        assert_eq!(d, before);
        assert_eq!(time_to_arrival(&d), None);
        // Arrived first (its time is the SLA's), then completed.
        apply(&mut d, arrived(ArrivalMethod::App), tm(12)).unwrap();
        apply(&mut d, completed("helped up", ""), tm(32)).unwrap();
        assert_eq!(d.state, DispatchState::Completed);
        assert_eq!(d.arrived_at, Some(tm(12)));
        assert_eq!(d.ended_at, Some(tm(32)));
        assert!(!d.breached);
    }

    #[test]
    fn a_step_already_applied_is_acknowledged_after_the_dispatch_ended() {
        // Received, arrived by the lock (accepted implied), completed: every resend of those
        // steps changes nothing, also now that the dispatch is closed.
        let mut d = received(30);
        apply(&mut d, arrived(ArrivalMethod::Lock), tm(10)).unwrap();
        apply(&mut d, completed("helped", ""), tm(20)).unwrap();
        let done = d.clone();
        for ev in [
            PatrolEvent::Received,
            PatrolEvent::Accepted,
            arrived(ArrivalMethod::App),
            completed("other", "again"),
        ] {
            assert_eq!(apply(&mut d, ev, tm(30)), Ok(()));
            assert_eq!(d, done);
        }
        // A declined dispatch was received (implied): a resent receipt is a repeat, an
        // arrival is not.
        let mut d = offered(30);
        apply(
            &mut d,
            PatrolEvent::Declined {
                reason: "far".into(),
            },
            t(30),
        )
        .unwrap();
        let before = d.clone();
        assert_eq!(apply(&mut d, PatrolEvent::Received, t(40)), Ok(()));
        assert_eq!(
            apply(&mut d, arrived(ArrivalMethod::App), t(40)),
            Err(SlaError::NotOpen(DispatchState::Declined))
        );
        assert_eq!(d, before);
        // Timed out without receipt: the receipt crossing the timeout is refused.
        let mut d = offered(30);
        tick(&mut d, &SlaOptions::default(), tm(2));
        assert_eq!(
            apply(&mut d, PatrolEvent::Received, tm(2)),
            Err(SlaError::NotOpen(DispatchState::ReceiptTimeout))
        );
        // Accepted after the arrival is a repeat too (proto/patrol.md §6).
        let mut d = received(30);
        apply(&mut d, arrived(ArrivalMethod::App), tm(10)).unwrap();
        let before = d.clone();
        assert_eq!(apply(&mut d, PatrolEvent::Accepted, tm(11)), Ok(()));
        assert_eq!(d, before);
        assert_eq!(d.accepted_at, None);
    }

    #[test]
    fn time_to_arrival_needs_both_times() {
        let mut d = offered(30);
        assert_eq!(time_to_arrival(&d), None);
        apply(&mut d, PatrolEvent::Received, t(5)).unwrap();
        assert_eq!(time_to_arrival(&d), None);
        apply(&mut d, arrived(ArrivalMethod::App), t(65)).unwrap();
        assert_eq!(time_to_arrival(&d), Some(SignedDuration::from_mins(1)));
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            SlaError::NotOpen(DispatchState::ReceiptTimeout).to_string(),
            "the dispatch is receipt_timeout and takes no more events"
        );
        assert_eq!(
            SlaError::OutOfOrder {
                state: DispatchState::Arrived,
                event: "declined"
            }
            .to_string(),
            "declined does not fit a dispatch that is arrived"
        );
    }

    #[test]
    fn state_names_match_serde() {
        use DispatchState as S;
        for s in [
            S::Offered,
            S::Received,
            S::Accepted,
            S::Declined,
            S::ReceiptTimeout,
            S::Arrived,
            S::Completed,
            S::Cancelled,
        ] {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::from(state_name(&s))
            );
        }
    }

    #[test]
    fn absurd_limits_saturate_instead_of_panicking() {
        let opts = SlaOptions::default();
        let mut d = received(u32::MAX);
        assert_eq!(next_due(&d, &opts), Some(tm(20)));
        assert_eq!(
            tick(&mut d, &opts, tm(25)),
            vec![
                ClockEvent::Warning {
                    mins: 20,
                    left: Timestamp::MAX.duration_since(tm(25)),
                },
                ClockEvent::Warning {
                    mins: 25,
                    left: Timestamp::MAX.duration_since(tm(25)),
                },
            ]
        );
        assert_eq!(next_due(&d, &opts), Some(Timestamp::MAX));
        apply(&mut d, arrived(ArrivalMethod::App), tm(60)).unwrap();
        assert!(!d.breached);
    }
}
