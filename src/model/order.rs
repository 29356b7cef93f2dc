//! A subscriber's orders: what the municipality's case officer (through the care system, or a
//! supervisor entering it) asks the centre to do for one person, with the deadlines of the
//! municipal routine (seed 001), the keys and access means a home has, and the months a
//! subscriber is billed for. Pure: every time is a parameter.
//!
//! # Deadlines (seed 001, part 1)
//!
//! - **A new alarm** "installeras inom en vecka" (1.2.1): by the same local time
//!   `install_days` (7) calendar days after the order was received. An **acute** one (a
//!   discharge from hospital) "dagen efter alternativt närmast följande vardag": by the end of
//!   the `acute_working_days`th (1st) working day after the day received, so an order of a
//!   Friday, or of the day before a holiday, is due at the end of the next working day.
//! - "Om installation inte kunnat genomföras inom en månad meddelar larminstallatören detta
//!   till biståndshandläggaren" (1.2.4): a new-alarm order still open `return_after_months`
//!   (1) month after it was received is due to go back to the case officer
//!   ([`Lateness::ReturnDue`]).
//! - **A change** of health or directions (3.1) is registered by the end of the
//!   `change_working_days`th (1st) working day after it was received.
//! - **A provider change** (3.2) takes effect on its date; the keys must have passed between
//!   the groups by the end of that day.
//! - **An end** (part 4): the pick-up within `end_days` (7) days of the later of the day
//!   received and the day the alarm ends.
//! - **A digital lock** installed or removed (seed 000): within `lock_days` (7) days.
//!
//! Of the two readings of "within a week" (the same time on the 7th day, or the end of it)
//! vakt takes the stricter, as the work orders do, so it never reports an order in time that
//! the municipality counts late.
//!
//! # Billing (seed 001 1.2.10, 4.8)
//!
//! "Brukaren debiteras fr o m den månad då larmet installeras" and "t o m den månad då larmet
//! avslutas": every month from the month of installation to the month of ending, both
//! inclusive ([`billed`]); an alarm installed on the 31st is billed for that month, one ended
//! on the 1st for that month too.

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::calendar::WorkingDays;

/// Longest free text on an order (health notes, directions, a note), in characters.
pub const MAX_TEXT_CHARS: usize = 4000;

/// Longest id an order may carry from the care system, in characters.
pub const MAX_EXTERNAL_ID_CHARS: usize = 100;

/// Most kinds of key an order or a home lists.
pub const MAX_KEY_LINES: usize = 10;

/// Most of one kind of key.
pub const MAX_KEY_COUNT: u8 = 20;

/// Longest reason (return, cancel), in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What an order asks for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// A new alarm: install, test, take the keys (seed 001 1.2).
    NewAlarm,
    /// A change of health or directions (3.1).
    Change,
    /// Another home-care provider from a date (3.2).
    ProviderChange,
    /// The alarm ends: pick it up, return the keys (part 4).
    End,
    /// A digital lock to install (seed 000).
    LockInstall,
    /// A digital lock to remove (seed 000).
    LockRemoval,
}

impl OrderKind {
    /// Every kind.
    pub const ALL: [OrderKind; 6] = [
        OrderKind::NewAlarm,
        OrderKind::Change,
        OrderKind::ProviderChange,
        OrderKind::End,
        OrderKind::LockInstall,
        OrderKind::LockRemoval,
    ];

    /// The stable name (`new_alarm`, ...), also a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::NewAlarm => "new_alarm",
            OrderKind::Change => "change",
            OrderKind::ProviderChange => "provider_change",
            OrderKind::End => "end",
            OrderKind::LockInstall => "lock_install",
            OrderKind::LockRemoval => "lock_removal",
        }
    }
}

/// A kind of key or access means (the forms of seed 001: "Dörrnycklar, Sjutillhållarlås,
/// Portnyckel, Övrigt"; "Aptusbricka"; seed 000's digital locks).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A door key.
    Door,
    /// A key to a seven-lever lock.
    SevenLever,
    /// The entrance door's key.
    Entrance,
    /// An access tag (Aptus and the like).
    AccessTag,
    /// A key box at the home.
    KeyBox,
    /// Access through a digital lock.
    DigitalLock,
    /// Anything else.
    Other,
}

/// So many keys of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyCount {
    /// Which kind.
    pub kind: KeyKind,
    /// How many (1 to [`MAX_KEY_COUNT`]).
    pub count: u8,
}

/// `[orders]`: the deadlines of orders (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderOptions {
    /// A new alarm is installed within so many days.
    pub install_days: u32,
    /// An acute new alarm, by the end of so many working days after the day received.
    pub acute_working_days: u32,
    /// A new alarm not installed so many months after it was received goes back to the case
    /// officer.
    pub return_after_months: u32,
    /// A change is registered by the end of so many working days after the day received.
    pub change_working_days: u32,
    /// The alarm is picked up and the keys returned within so many days of its end.
    pub end_days: u32,
    /// A digital lock is installed or removed within so many days.
    pub lock_days: u32,
}

impl Default for OrderOptions {
    fn default() -> OrderOptions {
        OrderOptions {
            install_days: 7,
            acute_working_days: 1,
            return_after_months: 1,
            change_working_days: 1,
            end_days: 7,
            lock_days: 7,
        }
    }
}

impl OrderOptions {
    /// Whether the options make sense; the first thing wrong, in words.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v, max) in [
            ("install_days", self.install_days, 90),
            ("acute_working_days", self.acute_working_days, 10),
            ("return_after_months", self.return_after_months, 12),
            ("change_working_days", self.change_working_days, 30),
            ("end_days", self.end_days, 90),
            ("lock_days", self.lock_days, 90),
        ] {
            if v == 0 || v > max {
                return Err(format!("[orders] {name} must be 1 to {max}, not {v}"));
            }
        }
        Ok(())
    }
}

/// An order as it arrives (from the care system or a supervisor), before it is stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// The care system's own id of the order: the same id twice is the same order.
    #[serde(default)]
    pub external_id: Option<String>,
    /// What it asks for.
    pub kind: Option<OrderKind>,
    /// The subscriber.
    pub subscriber: String,
    /// The day the case officer decided.
    pub decided_on: Option<Date>,
    /// Acute (a discharge from hospital): the next working day instead of a week.
    #[serde(default)]
    pub acute: bool,
    /// The day it takes effect: a provider change's first day, an end's last day.
    #[serde(default)]
    pub effective: Option<Date>,
    /// A provider change's new provider (the directory's id).
    #[serde(default)]
    pub new_provider: Option<String>,
    /// The health information the case officer sends (3.1; 1.1.6 "aktuellt
    /// hälsotillstånd").
    #[serde(default)]
    pub health_notes: String,
    /// Directions to the home ("vägbeskrivning").
    #[serde(default)]
    pub directions: String,
    /// The keys and access means the installation needs (1.1.3).
    #[serde(default)]
    pub keys_required: Vec<KeyCount>,
    /// Anything else the case officer says.
    #[serde(default)]
    pub note: String,
    /// A new alarm's person, for the register: the card is made (or updated) from it
    /// when the order arrives. Checked as an edit of the register is.
    #[serde(default)]
    pub person: Option<Person>,
}

/// The person of a new-alarm order: the fields of the subscriber register's card that the
/// care system knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Person {
    /// Full name.
    pub name: String,
    /// Personal identity number (never logged).
    pub personal_number: String,
    /// Street address.
    pub address: String,
    /// Postal code.
    pub postcode: String,
    /// City or locality.
    pub city: String,
    /// Area (district) for routing.
    pub area: String,
    /// The person's phone.
    pub phone: String,
    /// The home-care provider from the start (the directory's id).
    pub care_provider: String,
    /// The language to speak.
    pub language: String,
    /// The municipality that placed the person here, when it is not the centre's own
    /// (seed 000: it is billed on its own rows).
    pub placed_by: Option<String>,
}

/// What is wrong with an order that arrives: the field and the problem, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderProblem {
    /// The field (`subscriber`, `effective`, ...).
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn problem(field: &'static str, problem: impl Into<String>) -> OrderProblem {
    OrderProblem {
        field,
        problem: problem.into(),
    }
}

impl NewOrder {
    /// Trims its texts.
    pub fn normalize(&mut self) {
        self.subscriber = self.subscriber.trim().to_owned();
        self.health_notes = self.health_notes.trim().to_owned();
        self.directions = self.directions.trim().to_owned();
        self.note = self.note.trim().to_owned();
        if let Some(id) = &mut self.external_id {
            *id = id.trim().to_owned();
        }
        if let Some(p) = &mut self.new_provider {
            *p = p.trim().to_owned();
        }
        if let Some(p) = &mut self.person {
            for f in [
                &mut p.name,
                &mut p.personal_number,
                &mut p.address,
                &mut p.postcode,
                &mut p.city,
                &mut p.area,
                &mut p.phone,
                &mut p.care_provider,
                &mut p.language,
            ] {
                *f = f.trim().to_owned();
            }
            if let Some(m) = &mut p.placed_by {
                *m = m.trim().to_owned();
            }
            if p.placed_by.as_deref() == Some("") {
                p.placed_by = None;
            }
        }
    }

    /// Whether it can be stored; the first thing wrong.
    pub fn validate(&self) -> Result<OrderKind, OrderProblem> {
        let kind = self
            .kind
            .ok_or_else(|| problem("kind", "say what the order asks for"))?;
        if self.subscriber.is_empty() || chars(&self.subscriber) > 64 {
            return Err(problem(
                "subscriber",
                "a subscriber id of 1 to 64 characters",
            ));
        }
        if let Some(id) = &self.external_id {
            if id.is_empty() || chars(id) > MAX_EXTERNAL_ID_CHARS {
                return Err(problem(
                    "external_id",
                    format!("an id of 1 to {MAX_EXTERNAL_ID_CHARS} characters"),
                ));
            }
        }
        if self.decided_on.is_none() {
            return Err(problem("decided_on", "the day of the decision is needed"));
        }
        for (field, text) in [
            ("health_notes", &self.health_notes),
            ("directions", &self.directions),
            ("note", &self.note),
        ] {
            if chars(text) > MAX_TEXT_CHARS {
                return Err(problem(
                    field,
                    format!("longer than {MAX_TEXT_CHARS} characters"),
                ));
            }
        }
        if self.keys_required.len() > MAX_KEY_LINES {
            return Err(problem(
                "keys_required",
                format!("more than {MAX_KEY_LINES} kinds of key"),
            ));
        }
        for k in &self.keys_required {
            if k.count == 0 || k.count > MAX_KEY_COUNT {
                return Err(problem(
                    "keys_required",
                    format!("a count of 1 to {MAX_KEY_COUNT}"),
                ));
            }
        }
        match kind {
            OrderKind::ProviderChange => {
                if self.effective.is_none() {
                    return Err(problem("effective", "a provider change needs its date"));
                }
                if self.new_provider.as_deref().is_none_or(str::is_empty) {
                    return Err(problem(
                        "new_provider",
                        "a provider change needs the new provider",
                    ));
                }
            }
            _ if self.new_provider.is_some() => {
                return Err(problem(
                    "new_provider",
                    "only a provider change names a new provider",
                ));
            }
            _ => {}
        }
        if self.acute && kind != OrderKind::NewAlarm {
            return Err(problem("acute", "only a new alarm is acute"));
        }
        if let Some(p) = &self.person {
            if kind != OrderKind::NewAlarm {
                return Err(problem(
                    "person",
                    "only a new alarm brings the person's card",
                ));
            }
            if p.placed_by.as_deref().is_some_and(|m| chars(m) > 100) {
                return Err(problem(
                    "person",
                    "a municipality of at most 100 characters",
                ));
            }
        }
        Ok(kind)
    }
}

/// Where an order stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OrderState {
    /// Not done yet.
    Open,
    /// Done.
    Done {
        /// When.
        at: Timestamp,
        /// Who.
        by: String,
    },
    /// Sent back to the case officer (not installable within the month, or not possible).
    Returned {
        /// When.
        at: Timestamp,
        /// Who.
        by: String,
        /// Why.
        reason: String,
    },
    /// Withdrawn by the care system or a supervisor.
    Cancelled {
        /// When.
        at: Timestamp,
        /// Who.
        by: String,
        /// Why.
        reason: String,
    },
}

/// One stored order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    /// vakt's number of the order.
    pub id: u64,
    /// The care system's id, if it came from there.
    pub external_id: Option<String>,
    /// Who entered it: a user's name, or `care-system:{integration}`.
    pub entered_by: String,
    /// What it asks for.
    pub kind: OrderKind,
    /// The subscriber.
    pub subscriber: String,
    /// The day the case officer decided.
    pub decided_on: Date,
    /// When vakt received it.
    pub received_at: Timestamp,
    /// Acute (new alarms only).
    pub acute: bool,
    /// The day it takes effect (a provider change's first day, an end's last day).
    pub effective: Option<Date>,
    /// A provider change's new provider.
    pub new_provider: Option<String>,
    /// Health information from the case officer.
    pub health_notes: String,
    /// Directions to the home.
    pub directions: String,
    /// The keys and access means needed.
    pub keys_required: Vec<KeyCount>,
    /// Anything else.
    pub note: String,
    /// When it must be done.
    pub due: Timestamp,
    /// When an order still open goes back to the case officer (new alarms).
    pub return_by: Option<Timestamp>,
    /// Where it stands.
    pub state: OrderState,
    /// The municipality that placed the person, when not the centre's own (from the new
    /// alarm's person card; billed on its own rows).
    #[serde(default)]
    pub placed_by: Option<String>,
}

/// When an order must be done, and when it goes back if it is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Done by.
    pub due: Timestamp,
    /// Back to the case officer by (new alarms).
    pub return_by: Option<Timestamp>,
}

/// `t` plus `n` calendar days (or months) at the same local time; the end of time if that
/// is past the calendar.
fn local_plus(days: &WorkingDays, t: Timestamp, span: jiff::Span) -> Timestamp {
    t.to_zoned(days.tz().clone())
        .checked_add(span)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX)
}

/// The first instant of local day `d`.
fn start_of_day(days: &WorkingDays, d: Date) -> Timestamp {
    d.to_zoned(days.tz().clone())
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX)
}

/// The deadlines of an order of `kind` received at `received` (see the module doc).
pub fn deadlines(
    kind: OrderKind,
    acute: bool,
    effective: Option<Date>,
    received: Timestamp,
    days: &WorkingDays,
    opts: &OrderOptions,
) -> Deadlines {
    let day = days.day_of(received);
    let after_working_days = |n: u32| days.end_of_day(days.working_day_after(day, n));
    let after_days = |n: u32| local_plus(days, received, i64::from(n).days());
    match kind {
        OrderKind::NewAlarm => Deadlines {
            due: if acute {
                after_working_days(opts.acute_working_days)
            } else {
                after_days(opts.install_days)
            },
            return_by: Some(local_plus(
                days,
                received,
                i64::from(opts.return_after_months).months(),
            )),
        },
        OrderKind::Change => Deadlines {
            due: after_working_days(opts.change_working_days),
            return_by: None,
        },
        OrderKind::ProviderChange => Deadlines {
            due: effective.map_or_else(
                || after_working_days(opts.change_working_days),
                |d| days.end_of_day(d),
            ),
            return_by: None,
        },
        OrderKind::End => {
            let from = effective
                .map(|d| start_of_day(days, d))
                .map_or(received, |s| s.max(received));
            Deadlines {
                due: local_plus(days, from, i64::from(opts.end_days).days()),
                return_by: None,
            }
        }
        OrderKind::LockInstall | OrderKind::LockRemoval => Deadlines {
            due: after_days(opts.lock_days),
            return_by: None,
        },
    }
}

/// Whether an order is late.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Lateness {
    /// Not late (or no longer open).
    InTime,
    /// Open at or after its due time.
    Overdue,
    /// A new alarm open at or after its return time: it goes back to the case officer.
    ReturnDue,
}

/// Why an order cannot change as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderChangeError {
    /// It is done, returned or cancelled already.
    #[error("order {0} is no longer open")]
    NotOpen(u64),
    /// A return or a cancellation without a reason, or with a reason too long.
    #[error("a reason of 1 to {MAX_REASON_CHARS} characters is needed")]
    Reason,
}

impl Order {
    /// A new order from what arrived, already validated ([`NewOrder::validate`]).
    pub fn new(
        id: u64,
        kind: OrderKind,
        new: NewOrder,
        entered_by: &str,
        received_at: Timestamp,
        days: &WorkingDays,
        opts: &OrderOptions,
    ) -> Order {
        let d = deadlines(kind, new.acute, new.effective, received_at, days, opts);
        Order {
            id,
            external_id: new.external_id,
            entered_by: entered_by.to_owned(),
            kind,
            subscriber: new.subscriber,
            // validate() refused an order without it; the day received stands in otherwise.
            decided_on: new.decided_on.unwrap_or_else(|| days.day_of(received_at)),
            received_at,
            acute: new.acute,
            effective: new.effective,
            new_provider: new.new_provider,
            health_notes: new.health_notes,
            directions: new.directions,
            keys_required: new.keys_required,
            note: new.note,
            due: d.due,
            return_by: d.return_by,
            state: OrderState::Open,
            placed_by: new.person.and_then(|p| p.placed_by),
        }
    }

    /// Still to be done.
    pub fn is_open(&self) -> bool {
        self.state == OrderState::Open
    }

    /// Whether it is late at `now`.
    pub fn lateness(&self, now: Timestamp) -> Lateness {
        if !self.is_open() {
            return Lateness::InTime;
        }
        if self.return_by.is_some_and(|r| now >= r) {
            return Lateness::ReturnDue;
        }
        if now >= self.due {
            return Lateness::Overdue;
        }
        Lateness::InTime
    }

    fn close(&mut self, state: OrderState) -> Result<(), OrderChangeError> {
        if !self.is_open() {
            return Err(OrderChangeError::NotOpen(self.id));
        }
        self.state = state;
        Ok(())
    }

    /// Done by `by` at `at`.
    pub fn complete(&mut self, at: Timestamp, by: &str) -> Result<(), OrderChangeError> {
        self.close(OrderState::Done {
            at,
            by: by.to_owned(),
        })
    }

    /// Back to the case officer, with a reason.
    pub fn send_back(
        &mut self,
        at: Timestamp,
        by: &str,
        reason: &str,
    ) -> Result<(), OrderChangeError> {
        let reason = checked_reason(reason)?;
        self.close(OrderState::Returned {
            at,
            by: by.to_owned(),
            reason,
        })
    }

    /// Withdrawn, with a reason.
    pub fn cancel(
        &mut self,
        at: Timestamp,
        by: &str,
        reason: &str,
    ) -> Result<(), OrderChangeError> {
        let reason = checked_reason(reason)?;
        self.close(OrderState::Cancelled {
            at,
            by: by.to_owned(),
            reason,
        })
    }
}

fn checked_reason(reason: &str) -> Result<String, OrderChangeError> {
    let reason = reason.trim();
    if reason.is_empty() || chars(reason) > MAX_REASON_CHARS {
        return Err(OrderChangeError::Reason);
    }
    Ok(reason.to_owned())
}

/// A calendar month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    /// The year.
    pub year: i16,
    /// 1 to 12.
    pub month: i8,
}

impl Month {
    /// The month of a day.
    pub fn of(d: Date) -> Month {
        Month {
            year: d.year(),
            month: d.month(),
        }
    }

    /// The month after.
    pub fn next(self) -> Month {
        if self.month >= 12 {
            Month {
                year: self.year.saturating_add(1),
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = String;

    fn from_str(s: &str) -> Result<Month, String> {
        let bad = || format!("a month as YYYY-MM, not {s:?}");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        let year: i16 = y.parse().map_err(|_| bad())?;
        let month: i8 = m.parse().map_err(|_| bad())?;
        if y.len() != 4 || m.len() != 2 || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

/// Whether a subscriber whose alarm was installed on `installed` and ended on `ended` (if it
/// has) is billed for `month`: from the month of installation to the month of ending, both
/// inclusive.
pub fn billed(installed: Date, ended: Option<Date>, month: Month) -> bool {
    Month::of(installed) <= month && ended.is_none_or(|e| month <= Month::of(e))
}

/// The months billed between `from` and `to` (both inclusive), in order.
pub fn billed_months(installed: Date, ended: Option<Date>, from: Month, to: Month) -> Vec<Month> {
    let mut out = Vec::new();
    let mut m = from.max(Month::of(installed));
    let last = ended.map_or(to, |e| to.min(Month::of(e)));
    // At most one entry a month of the range: bounded by its length.
    while m <= last {
        out.push(m);
        let next = m.next();
        if next == m {
            break;
        }
        m = next;
    }
    out
}

/// From which day a provider serves a subscriber.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderPeriod {
    /// The first day.
    pub from: Date,
    /// The provider (the directory's id).
    pub provider: String,
}

/// The provider that serves on `day`, of the periods (any order): the one that started
/// last on or before it; `None` before the first.
pub fn provider_on(periods: &[ProviderPeriod], day: Date) -> Option<&str> {
    periods
        .iter()
        .filter(|p| p.from <= day)
        .max_by_key(|p| p.from)
        .map(|p| p.provider.as_str())
}

#[cfg(test)]
mod tests;
