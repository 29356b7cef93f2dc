//! The statistics a municipality follows its contract up with (`GET /api/stats`): for a
//! scope (the whole centre, one municipality, one care provider) and a period (a day, an ISO
//! week, a month, or from one date to another: local days in the centre's time zone, at most
//! [`MAX_PERIOD_DAYS`]):
//!
//! - the alarms (Calls opened in the period) by kind and by outcome;
//! - the answer times against the telecare targets (the figures of `calls::stats_of`, which
//!   the console's header and the SLA report use), with their distribution;
//! - the arrival times of the dispatches offered in the period, from the dispatch to the
//!   patrol's arrival, against the area's limit (a breach as the SLA report has it), with
//!   the breaches listed;
//! - the Calls by weekday and hour of their opening (local time), 7 × 24;
//! - the frequent callers: subscribers with more Calls in one calendar month than `[stats]
//!   frequent_caller_calls_per_month`, for a care review;
//! - the technical side: the work orders made in the period by fault, how many of them are
//!   done, the open ones late now, the devices silent now;
//! - per operator (only for the centre's supervisors, never in a tenant's figures): Calls
//!   answered, the median answer time, Calls closed.
//!
//! A Call is in a scope when its subscriber is ([`Scope::sees`]); a Call without a
//! subscriber (an unknown device) only in the whole centre's. A dispatch goes with its Call,
//! a work order and a silent device with their subscriber.
//!
//! [`figures`] is pure: the period, the scope and `now` are parameters and no clock is read.
//! [`read`] takes the period's records from the store without reading the history after it.

use std::collections::{BTreeMap, HashMap};

use jiff::civil::{Date, ISOWeekDate, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::report::{is_breach, month_bounds, nearest_rank};
use crate::calls::{Stats, answer_secs, stats_of};
use crate::model::directory::Directory;
use crate::model::{Call, CallState, Dispatch, FaultKind, Scope, Subscriber, WorkOrder};
use crate::store::{Store, StoreError};

/// The longest period, in days.
pub const MAX_PERIOD_DAYS: i32 = 366;

/// Upper edges (inclusive, seconds) of the answer-time distribution's buckets; one more
/// bucket holds the longer ones. 60 and 180 are edges: the targets' lines fall between bars.
pub const ANSWER_EDGES_SECS: [u32; 7] = [10, 20, 30, 60, 120, 180, 300];

/// Most frequent callers listed.
pub const MAX_FREQUENT_CALLERS: usize = 200;

/// Most breaches listed (the count is always whole).
pub const MAX_BREACHES: usize = 500;

/// Why the statistics could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The period is not one this calendar can place, or too long (the caller's).
    #[error("{0}")]
    BadPeriod(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `[stats]`: what the statistics judge by.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatsOptions {
    /// A subscriber with more Calls than this in one calendar month is a frequent caller,
    /// listed for a care review.
    pub frequent_caller_calls_per_month: u32,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            frequent_caller_calls_per_month: 10,
        }
    }
}

impl StatsOptions {
    /// Range checks, as messages prefixed `stats.` (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !(1..=1000).contains(&self.frequent_caller_calls_per_month) {
            errs.push("stats.frequent_caller_calls_per_month must be 1..=1000".into());
        }
        errs
    }
}

/// What kind of period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    /// One day, `2026-11-23`.
    Day,
    /// One ISO week (Monday to Sunday), `2026-W48`.
    Week,
    /// One month, `2026-11`.
    Month,
    /// From one date to another, both included.
    Custom,
}

impl PeriodKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
            PeriodKind::Custom => "custom",
        }
    }
}

/// A period of local days.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Period {
    /// What kind.
    pub kind: PeriodKind,
    /// The period as asked for: `2026-11-23`, `2026-W48`, `2026-11`, or
    /// `2026-11-01..2026-11-15`.
    pub label: String,
    /// Its first day.
    #[schema(value_type = String)]
    pub first: Date,
    /// Its last day (included).
    #[schema(value_type = String)]
    pub last: Date,
    /// The first instant (local midnight of the first day).
    #[schema(value_type = String)]
    pub from: Timestamp,
    /// The end, exclusive (local midnight after the last day).
    #[schema(value_type = String)]
    pub to: Timestamp,
    /// The time zone the days are counted in (IANA name; empty if the zone has none).
    pub time_zone: String,
}

fn bad(what: impl Into<String>) -> StatsError {
    StatsError::BadPeriod(what.into())
}

/// Local midnight of `d` (where a transition skips midnight, the day's first instant).
fn start_of(d: Date, tz: &TimeZone) -> Result<Timestamp, StatsError> {
    d.to_zoned(tz.clone())
        .and_then(|z| z.start_of_day())
        .map(|z| z.timestamp())
        .map_err(|_| bad(format!("{d} cannot be placed in the time zone")))
}

fn parse_date(s: &str) -> Result<Date, StatsError> {
    let s = s.trim();
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err(bad(format!("{s:?}: a date is YYYY-MM-DD")));
    }
    s.parse()
        .map_err(|_| bad(format!("{s:?} is not a date of the calendar")))
}

impl Period {
    /// The days `first..=last` of `kind`, labelled `label`.
    pub fn of_days(
        kind: PeriodKind,
        label: String,
        first: Date,
        last: Date,
        tz: &TimeZone,
    ) -> Result<Period, StatsError> {
        if last < first {
            return Err(bad(format!("{label}: the last day is before the first")));
        }
        let days = first
            .until(last)
            .map(|s| s.get_days())
            .map_err(|_| bad(format!("{label}: too long")))?;
        if days >= MAX_PERIOD_DAYS {
            return Err(bad(format!(
                "{label}: at most {MAX_PERIOD_DAYS} days at a time"
            )));
        }
        let after = last
            .checked_add(1.day())
            .map_err(|_| bad(format!("{label}: beyond the calendar")))?;
        Ok(Period {
            kind,
            label,
            first,
            last,
            from: start_of(first, tz)?,
            to: start_of(after, tz)?,
            time_zone: tz.iana_name().unwrap_or_default().to_string(),
        })
    }

    /// The period asked for: `period` a day (`YYYY-MM-DD`), an ISO week (`YYYY-Www`) or a
    /// month (`YYYY-MM`); or `from` and `to`, two dates (both included); neither: this month
    /// (of `now` in `tz`).
    pub fn parse(
        period: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        tz: &TimeZone,
        now: Timestamp,
    ) -> Result<Period, StatsError> {
        fn some(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        match (some(period), some(from), some(to)) {
            (None, None, None) => {
                let today = now.to_zoned(tz.clone()).date();
                let month = format!("{:04}-{:02}", today.year(), today.month());
                Period::parse(Some(&month), None, None, tz, now)
            }
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(bad(
                "give either a period (a day, a week or a month) or from and to, not both",
            )),
            (None, Some(f), Some(t)) => {
                let (first, last) = (parse_date(f)?, parse_date(t)?);
                Period::of_days(
                    PeriodKind::Custom,
                    format!("{first}..{last}"),
                    first,
                    last,
                    tz,
                )
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                Err(bad("a custom period needs both from and to (YYYY-MM-DD)"))
            }
            (Some(p), None, None) => Period::named(p, tz),
        }
    }

    /// A day, an ISO week or a month by its name.
    fn named(p: &str, tz: &TimeZone) -> Result<Period, StatsError> {
        let b = p.as_bytes();
        if b.len() == 10 {
            let d = parse_date(p)?;
            return Period::of_days(PeriodKind::Day, d.to_string(), d, d, tz);
        }
        if b.len() == 8 && &b[4..6] == b"-W" {
            let year: Option<i16> = p[..4].parse().ok();
            let week: Option<i8> = p[6..]
                .bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| p[6..].parse().ok())
                .flatten();
            let (Some(year), Some(week)) = (year, week) else {
                return Err(bad(format!("{p:?}: a week is YYYY-Www, e.g. 2026-W48")));
            };
            let monday = ISOWeekDate::new(year, week, Weekday::Monday)
                .map_err(|_| bad(format!("{p:?}: the year has no such week")))?
                .date();
            let sunday = ISOWeekDate::new(year, week, Weekday::Sunday)
                .map_err(|_| bad(format!("{p:?}: the year has no such week")))?
                .date();
            let label = format!("{year:04}-W{week:02}");
            return Period::of_days(PeriodKind::Week, label, monday, sunday, tz);
        }
        if b.len() == 7 {
            let (from, to) = month_bounds(p, tz).map_err(|e| bad(e.to_string()))?;
            let first = from.to_zoned(tz.clone()).date();
            let last = to
                .to_zoned(tz.clone())
                .date()
                .checked_sub(1.day())
                .map_err(|_| bad(format!("{p:?}: beyond the calendar")))?;
            return Period::of_days(PeriodKind::Month, p.to_owned(), first, last, tz);
        }
        Err(bad(format!(
            "period {p:?}: a day (YYYY-MM-DD), a week (YYYY-Www) or a month (YYYY-MM)"
        )))
    }
}

/// A device silent now, and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SilentDevice {
    /// The device's account.
    pub account: String,
    /// Its subscriber, if any.
    pub subscriber: Option<String>,
}

/// What the figures are made from.
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// The Calls opened in the period (heads; others are left out).
    pub calls: Vec<Call>,
    /// The Calls of the period's dispatches that were opened before it (their subscriber
    /// puts the dispatch in a scope).
    pub earlier_calls: Vec<Call>,
    /// The dispatches offered in the period.
    pub dispatches: Vec<Dispatch>,
    /// The work orders made in the period.
    pub work_orders: Vec<WorkOrder>,
    /// The work orders open now.
    pub open_work_orders: Vec<WorkOrder>,
    /// The devices silent now.
    pub silent: Vec<SilentDevice>,
    /// The register, by subscriber id.
    pub subscribers: HashMap<String, Subscriber>,
    /// The directory (area names).
    pub directory: Directory,
}

/// The period's Calls, dispatches and work orders, the open work orders and the register,
/// read from the store; the silent devices are the caller's to add (supervision knows them).
pub fn read(store: &Store, period: &Period) -> Result<Records, StatsError> {
    let calls = store.calls_opened_between(period.from, period.to)?;
    let dispatches = store.dispatches_offered_between(period.from, period.to)?;
    let mut earlier_calls = Vec::new();
    let mut known: std::collections::HashSet<u64> = calls.iter().map(|c| c.id).collect();
    for d in &dispatches {
        if known.insert(d.call) {
            if let Some(c) = store.call(d.call)? {
                earlier_calls.push(Call {
                    timeline: Vec::new(),
                    ..c
                });
            }
        }
    }
    Ok(Records {
        calls,
        earlier_calls,
        dispatches,
        work_orders: store.work_orders_created_between(period.from, period.to)?,
        open_work_orders: store.open_work_orders()?,
        silent: Vec::new(),
        subscribers: store
            .subscribers()?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect(),
        directory: store.directory()?,
    })
}

/// A count of one thing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Count {
    /// What: a kind of alarm as triage words it, an outcome's stable name, a fault's.
    pub key: String,
    /// How many.
    pub count: usize,
}

/// The alarms of the period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct CallFigures {
    /// Calls opened in the period.
    pub total: usize,
    /// Of them, closed.
    pub closed: usize,
    /// Of them, still open.
    pub open: usize,
    /// Alarm Signals in them (the first and every merged press).
    pub alarms: u64,
    /// By kind of alarm, most first (then by name).
    pub by_kind: Vec<Count>,
    /// The closed ones by outcome, most first (then by name).
    pub by_outcome: Vec<Count>,
}

/// One bar of the answer-time distribution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Bucket {
    /// Answered in at most this many seconds (and more than the bucket before); none: the
    /// longer ones.
    pub upto_secs: Option<u32>,
    /// How many.
    pub count: usize,
}

/// One breach of the arrival limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ArrivalBreach {
    /// The Call.
    pub call: u64,
    /// The dispatch.
    pub dispatch: u64,
    /// The patrol.
    pub patrol: String,
    /// The area (its id as the dispatch carries it).
    pub area: String,
    /// When it was dispatched.
    #[schema(value_type = String)]
    pub offered_at: Timestamp,
    /// The area's limit, minutes from the patrol's receipt.
    pub limit_mins: u32,
    /// Whether the patrol arrived.
    pub arrived: bool,
    /// Whole minutes from the dispatch to the arrival (not arrived: to its end, or to the
    /// figures' time while it is open).
    pub minutes: u64,
}

/// The arrivals in one area.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct AreaArrivals {
    /// The area's id as the dispatches carry it.
    pub area: String,
    /// Its name from the directory (the id when the directory no longer has it).
    pub area_name: String,
    /// Its limit in minutes (the highest its dispatches carried).
    pub limit_mins: u32,
    /// Dispatches offered.
    pub dispatches: usize,
    /// Of them, arrived.
    pub arrived: usize,
    /// Arrived within the limit.
    pub within_limit: usize,
    /// Breached the limit.
    pub breaches: usize,
}

/// How fast the patrols came.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ArrivalFigures {
    /// Dispatches offered in the period.
    pub dispatches: usize,
    /// Of them, the patrol arrived.
    pub arrived: usize,
    /// Arrived within the area's limit.
    pub within_limit: usize,
    /// Share within the limit, in percent, of the dispatches arrived or breached (one still
    /// on its way in time has not failed yet); none without such dispatches.
    pub within_limit_pct: Option<f64>,
    /// Median time from the dispatch to the arrival, whole seconds (nearest rank).
    pub median_secs: Option<u64>,
    /// 90th percentile of the same (nearest rank).
    pub p90_secs: Option<u64>,
    /// Dispatches that breached the limit (arrived at or after it, or not arrived when it
    /// ran out).
    pub breaches: usize,
    /// The breaches, oldest first (at most [`MAX_BREACHES`]).
    pub breached: Vec<ArrivalBreach>,
    /// Per area, by name.
    pub areas: Vec<AreaArrivals>,
}

/// A subscriber who alarmed often in one month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FrequentCaller {
    /// The subscriber.
    pub subscriber: String,
    /// Their name (empty when the register no longer has them).
    pub name: String,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Their Calls opened in that month (within the period).
    pub calls: usize,
}

/// The frequent callers, for a care review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FrequentCallers {
    /// More Calls than this in one month (`[stats] frequent_caller_calls_per_month`).
    pub threshold: u32,
    /// Most Calls first (at most [`MAX_FREQUENT_CALLERS`]).
    pub callers: Vec<FrequentCaller>,
}

/// Faults, work orders and silent devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct TechnicalFigures {
    /// Work orders made in the period by fault, every fault listed.
    pub by_fault: Vec<Count>,
    /// Work orders made in the period.
    pub opened: usize,
    /// Of them, done (by the figures' time).
    pub done: usize,
    /// Of them, cancelled (replaced by another order).
    pub cancelled: usize,
    /// Of them, still open.
    pub open: usize,
    /// Open work orders (made in the period or before) late now.
    pub overdue_now: usize,
    /// Devices silent now.
    pub silent_devices_now: usize,
}

/// One operator's handling (the centre's supervisors only).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct OperatorFigures {
    /// The operator (a Call's last owner).
    pub operator: String,
    /// Calls of the period they hold that were answered.
    pub answered: usize,
    /// The median answer time of those, seconds.
    pub median_answer_secs: Option<f64>,
    /// Calls of the period they closed.
    pub closed: usize,
}

/// The statistics of one scope and period.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Statistics {
    /// Whose.
    pub scope: Scope,
    /// When.
    pub period: Period,
    /// When they were made (open Calls and dispatches are judged at this time).
    #[schema(value_type = String)]
    pub generated_at: Timestamp,
    /// The alarms.
    pub calls: CallFigures,
    /// The answer times against the targets (`date` is the period's label).
    pub answer: Stats,
    /// The answer times' distribution ([`ANSWER_EDGES_SECS`]); the Calls not answered are
    /// `answer.calls - answer.answered`.
    pub answer_buckets: Vec<Bucket>,
    /// The arrivals.
    pub arrival: ArrivalFigures,
    /// Calls by weekday (Monday first) and hour (0-23) of their opening, local time.
    pub heat: Vec<Vec<usize>>,
    /// The frequent callers.
    pub frequent_callers: FrequentCallers,
    /// Faults, work orders, silent devices.
    pub technical: TechnicalFigures,
    /// Per operator, by name (the centre's supervisors only; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operators: Option<Vec<OperatorFigures>>,
}

/// Counts by key, most first, then by key.
fn counted<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<Count> {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_default() += 1;
    }
    let mut v: Vec<Count> = m
        .into_iter()
        .map(|(key, count)| Count {
            key: key.to_owned(),
            count,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v
}

fn whole_secs(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from(to.duration_since(from).as_secs()).unwrap_or(0)
}

/// What is asked for, and what it is judged by.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    /// The period.
    pub period: &'a Period,
    /// Whose.
    pub scope: &'a Scope,
    /// The centre's own municipality (`[care] municipality`): a card without one is its.
    pub home: &'a str,
    /// The centre's time zone (weekdays, hours, months).
    pub tz: &'a TimeZone,
    /// `[stats]`.
    pub opts: &'a StatsOptions,
    /// Add the per-operator figures (the caller has checked that the user is one of the
    /// centre's supervisors; never in a scope short of the whole centre).
    pub operators: bool,
}

/// The statistics asked for, from `records`, as of `now`.
pub fn figures(records: &Records, ask: &Ask<'_>, now: Timestamp) -> Statistics {
    let Ask {
        period,
        scope,
        home,
        tz,
        opts,
        operators,
    } = *ask;
    let sees = |subscriber: Option<&String>| -> bool {
        match (scope, subscriber) {
            (Scope::All, _) => true,
            (_, None) => false,
            (_, Some(id)) => records
                .subscribers
                .get(id)
                .is_some_and(|s| scope.sees(s, home)),
        }
    };
    let calls: Vec<&Call> = records
        .calls
        .iter()
        .filter(|c| c.opened_at >= period.from && c.opened_at < period.to)
        .filter(|c| sees(c.subscriber.as_ref()))
        .collect();
    let owned: Vec<Call> = calls.iter().map(|c| (*c).clone()).collect();

    // The alarms.
    let call_figures = CallFigures {
        total: calls.len(),
        closed: calls
            .iter()
            .filter(|c| c.state == CallState::Closed)
            .count(),
        open: calls
            .iter()
            .filter(|c| c.state != CallState::Closed)
            .count(),
        alarms: calls.iter().map(|c| u64::from(c.alarm_count)).sum(),
        by_kind: counted(calls.iter().map(|c| c.kind.as_str())),
        by_outcome: counted(
            calls
                .iter()
                .filter(|c| c.state == CallState::Closed)
                .filter_map(|c| c.outcome.map(|o| o.as_str())),
        ),
    };

    // The answer times.
    let answer = stats_of(&owned, period.label.clone(), now);
    let mut answer_buckets: Vec<Bucket> = ANSWER_EDGES_SECS
        .iter()
        .map(|&e| Bucket {
            upto_secs: Some(e),
            count: 0,
        })
        .chain(std::iter::once(Bucket {
            upto_secs: None,
            count: 0,
        }))
        .collect();
    for secs in owned.iter().filter_map(answer_secs) {
        let at = ANSWER_EDGES_SECS
            .iter()
            .position(|&e| secs <= f64::from(e))
            .unwrap_or(ANSWER_EDGES_SECS.len());
        if let Some(b) = answer_buckets.get_mut(at) {
            b.count += 1;
        }
    }

    // The arrivals.
    let subscriber_of: HashMap<u64, Option<&String>> = records
        .calls
        .iter()
        .chain(&records.earlier_calls)
        .map(|c| (c.id, c.subscriber.as_ref()))
        .collect();
    let dispatches: Vec<&Dispatch> = records
        .dispatches
        .iter()
        .filter(|d| d.offered_at >= period.from && d.offered_at < period.to)
        .filter(|d| match scope {
            Scope::All => true,
            _ => sees(subscriber_of.get(&d.call).copied().flatten()),
        })
        .collect();
    let arrival = arrivals(&dispatches, &records.directory, now);

    // Weekday by hour.
    let mut heat = vec![vec![0usize; 24]; 7];
    for c in &calls {
        let z = c.opened_at.to_zoned(tz.clone());
        let day = usize::try_from(z.weekday().to_monday_zero_offset()).unwrap_or(0);
        let hour = usize::try_from(z.hour()).unwrap_or(0);
        if let Some(cell) = heat.get_mut(day).and_then(|r| r.get_mut(hour)) {
            *cell += 1;
        }
    }

    // Frequent callers.
    let mut per: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for c in &calls {
        if let Some(s) = &c.subscriber {
            let d = c.opened_at.to_zoned(tz.clone()).date();
            let month = format!("{:04}-{:02}", d.year(), d.month());
            *per.entry((s.as_str(), month)).or_default() += 1;
        }
    }
    let threshold = opts.frequent_caller_calls_per_month;
    let mut callers: Vec<FrequentCaller> = per
        .into_iter()
        .filter(|(_, n)| *n > threshold as usize)
        .map(|((s, month), calls)| FrequentCaller {
            subscriber: s.to_owned(),
            name: records
                .subscribers
                .get(s)
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            month,
            calls,
        })
        .collect();
    callers.sort_by(|a, b| {
        b.calls
            .cmp(&a.calls)
            .then_with(|| a.subscriber.cmp(&b.subscriber))
            .then_with(|| a.month.cmp(&b.month))
    });
    callers.truncate(MAX_FREQUENT_CALLERS);

    // Faults, work orders, silent devices.
    let orders: Vec<&WorkOrder> = records
        .work_orders
        .iter()
        .filter(|o| o.created_at >= period.from && o.created_at < period.to)
        .filter(|o| sees(o.subscriber.as_ref()))
        .collect();
    let technical = TechnicalFigures {
        by_fault: FaultKind::ALL
            .iter()
            .map(|f| Count {
                key: f.as_str().to_owned(),
                count: orders.iter().filter(|o| o.fault == *f).count(),
            })
            .collect(),
        opened: orders.len(),
        done: orders
            .iter()
            .filter(|o| o.state == crate::model::WorkOrderState::Done)
            .count(),
        cancelled: orders
            .iter()
            .filter(|o| o.state == crate::model::WorkOrderState::Cancelled)
            .count(),
        open: orders.iter().filter(|o| o.state.is_open()).count(),
        overdue_now: records
            .open_work_orders
            .iter()
            .filter(|o| o.lateness(now).is_some())
            .filter(|o| sees(o.subscriber.as_ref()))
            .count(),
        silent_devices_now: records
            .silent
            .iter()
            .filter(|d| sees(d.subscriber.as_ref()))
            .count(),
    };

    let operators = (operators && scope.is_all()).then(|| per_operator(&calls));

    Statistics {
        scope: scope.clone(),
        period: period.clone(),
        generated_at: now,
        calls: call_figures,
        answer,
        answer_buckets,
        arrival,
        heat,
        frequent_callers: FrequentCallers { threshold, callers },
        technical,
        operators,
    }
}

fn arrivals(ds: &[&Dispatch], dir: &Directory, now: Timestamp) -> ArrivalFigures {
    let mut secs: Vec<u64> = ds
        .iter()
        .filter_map(|d| d.arrived_at.map(|a| whole_secs(d.offered_at, a)))
        .collect();
    secs.sort_unstable();
    let breach: Vec<bool> = ds.iter().map(|d| is_breach(d, now)).collect();
    let within = |d: &Dispatch, b: bool| d.arrived_at.is_some() && !b;
    let within_limit = ds
        .iter()
        .zip(&breach)
        .filter(|(d, b)| within(d, **b))
        .count();
    let judged = ds
        .iter()
        .zip(&breach)
        .filter(|(d, b)| d.arrived_at.is_some() || **b)
        .count();
    let mut breached: Vec<ArrivalBreach> = ds
        .iter()
        .zip(&breach)
        .filter(|(_, b)| **b)
        .map(|(d, _)| ArrivalBreach {
            call: d.call,
            dispatch: d.id,
            patrol: d.patrol.clone(),
            area: d.area.clone(),
            offered_at: d.offered_at,
            limit_mins: d.limit_mins,
            arrived: d.arrived_at.is_some(),
            minutes: whole_secs(
                d.offered_at,
                d.arrived_at.or(d.ended_at).unwrap_or(now).max(d.offered_at),
            ) / 60,
        })
        .collect();
    breached.sort_by_key(|b| (b.offered_at, b.dispatch));
    let breaches = breached.len();
    breached.truncate(MAX_BREACHES);

    let mut per: BTreeMap<&str, AreaArrivals> = BTreeMap::new();
    for (d, b) in ds.iter().zip(&breach) {
        let a = per.entry(d.area.as_str()).or_insert_with(|| AreaArrivals {
            area: d.area.clone(),
            area_name: dir
                .area_for(&d.area)
                .map_or_else(|| d.area.clone(), |a| a.name.clone()),
            limit_mins: 0,
            dispatches: 0,
            arrived: 0,
            within_limit: 0,
            breaches: 0,
        });
        a.limit_mins = a.limit_mins.max(d.limit_mins);
        a.dispatches += 1;
        a.arrived += usize::from(d.arrived_at.is_some());
        a.within_limit += usize::from(within(d, *b));
        a.breaches += usize::from(*b);
    }
    let mut areas: Vec<AreaArrivals> = per.into_values().collect();
    areas.sort_by(|a, b| (&a.area_name, &a.area).cmp(&(&b.area_name, &b.area)));

    ArrivalFigures {
        dispatches: ds.len(),
        arrived: secs.len(),
        within_limit,
        within_limit_pct: (judged > 0).then(|| 100.0 * within_limit as f64 / judged as f64),
        median_secs: nearest_rank(&secs, 50),
        p90_secs: nearest_rank(&secs, 90),
        breaches,
        breached,
        areas,
    }
}

fn per_operator(calls: &[&Call]) -> Vec<OperatorFigures> {
    let mut per: BTreeMap<&str, (Vec<f64>, usize)> = BTreeMap::new();
    for c in calls {
        let Some(op) = c.owner.as_deref() else {
            continue;
        };
        let e = per.entry(op).or_default();
        if let Some(s) = answer_secs(c) {
            e.0.push(s);
        }
        if c.state == CallState::Closed {
            e.1 += 1;
        }
    }
    per.into_iter()
        .map(|(op, (mut times, closed))| {
            times.sort_by(f64::total_cmp);
            let n = times.len();
            let median = match n {
                0 => None,
                n if n % 2 == 1 => times.get(n / 2).copied(),
                n => Some((times[n / 2 - 1] + times[n / 2]) / 2.0),
            };
            OperatorFigures {
                operator: op.to_owned(),
                answered: n,
                median_answer_secs: median,
                closed,
            }
        })
        .collect()
}

/// A number with a decimal comma, as a Swedish spreadsheet reads it (one decimal).
fn decimal(v: f64) -> String {
    format!("{v:.1}").replace('.', ",")
}

fn opt_decimal(v: Option<f64>) -> String {
    v.map(decimal).unwrap_or_default()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// One CSV cell: quoted when it holds the separator, a quote or a line break; a cell that
/// starts like a formula is prefixed with `'` so a spreadsheet shows it as text.
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([';', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The statistics as CSV for a spreadsheet: a UTF-8 BOM, `;` between cells, CRLF line
/// ends, decimals with a comma. Tables one after another, each with its header line and an
/// empty line after it: the figures (`section;key;value`), the heat map (a weekday a line,
/// hours 0-23), the breaches, the frequent callers, the areas, and the operators when the
/// statistics have them. Times in the centre's zone.
pub fn to_csv(s: &Statistics, tz: &TimeZone) -> String {
    let mut out = String::from("\u{feff}");
    let mut line = |cells: &[String]| {
        let row: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        out.push_str(&row.join(";"));
        out.push_str("\r\n");
    };
    let row = |a: &str, b: &str, c: String| [a.to_owned(), b.to_owned(), c];
    line(&["section".into(), "key".into(), "value".into()]);
    let scope = match &s.scope {
        Scope::All => "all".to_owned(),
        Scope::Municipality(m) => format!("municipality:{m}"),
        Scope::Provider(p) => format!("provider:{p}"),
    };
    line(&row("scope", "scope", scope));
    line(&row("period", "kind", s.period.kind.as_str().to_owned()));
    line(&row("period", "label", s.period.label.clone()));
    line(&row("period", "first", s.period.first.to_string()));
    line(&row("period", "last", s.period.last.to_string()));
    line(&row("period", "time_zone", s.period.time_zone.clone()));
    let c = &s.calls;
    line(&row("calls", "total", c.total.to_string()));
    line(&row("calls", "closed", c.closed.to_string()));
    line(&row("calls", "open", c.open.to_string()));
    line(&row("calls", "alarms", c.alarms.to_string()));
    for k in &c.by_kind {
        line(&row("calls.kind", &k.key, k.count.to_string()));
    }
    for k in &c.by_outcome {
        line(&row("calls.outcome", &k.key, k.count.to_string()));
    }
    let a = &s.answer;
    line(&row("answer", "calls", a.calls.to_string()));
    line(&row("answer", "answered", a.answered.to_string()));
    line(&row(
        "answer",
        "median_secs",
        opt_decimal(a.median_answer_secs),
    ));
    line(&row(
        "answer",
        "within_60s_pct",
        opt_decimal(a.within_60s_pct),
    ));
    line(&row(
        "answer",
        "within_180s_pct",
        opt_decimal(a.within_180s_pct),
    ));
    line(&row("answer", "target_60s_pct", decimal(a.target_60s_pct)));
    line(&row(
        "answer",
        "target_180s_pct",
        decimal(a.target_180s_pct),
    ));
    for b in &s.answer_buckets {
        let key = match b.upto_secs {
            Some(e) => format!("upto_{e}s"),
            None => "longer".to_owned(),
        };
        line(&row("answer.buckets", &key, b.count.to_string()));
    }
    let r = &s.arrival;
    line(&row("arrival", "dispatches", r.dispatches.to_string()));
    line(&row("arrival", "arrived", r.arrived.to_string()));
    line(&row("arrival", "within_limit", r.within_limit.to_string()));
    line(&row(
        "arrival",
        "within_limit_pct",
        opt_decimal(r.within_limit_pct),
    ));
    line(&row("arrival", "median_secs", opt(r.median_secs)));
    line(&row("arrival", "p90_secs", opt(r.p90_secs)));
    line(&row("arrival", "breaches", r.breaches.to_string()));
    let t = &s.technical;
    for f in &t.by_fault {
        line(&row("work_orders.fault", &f.key, f.count.to_string()));
    }
    line(&row("work_orders", "opened", t.opened.to_string()));
    line(&row("work_orders", "done", t.done.to_string()));
    line(&row("work_orders", "cancelled", t.cancelled.to_string()));
    line(&row("work_orders", "open", t.open.to_string()));
    line(&row(
        "work_orders",
        "overdue_now",
        t.overdue_now.to_string(),
    ));
    line(&row(
        "devices",
        "silent_now",
        t.silent_devices_now.to_string(),
    ));
    line(&row(
        "frequent_callers",
        "threshold",
        s.frequent_callers.threshold.to_string(),
    ));
    line(&[]);

    let mut head = vec!["weekday".to_owned()];
    head.extend((0..24).map(|h| format!("{h:02}")));
    line(&head);
    for (day, hours) in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .zip(&s.heat)
    {
        let mut cells = vec![(*day).to_owned()];
        cells.extend(hours.iter().map(usize::to_string));
        line(&cells);
    }
    line(&[]);

    let local = |t: Timestamp| {
        t.to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string()
    };
    line(
        &[
            "breach",
            "call",
            "dispatch",
            "patrol",
            "area",
            "dispatched",
            "limit_mins",
            "arrived",
            "minutes",
        ]
        .map(str::to_owned),
    );
    for b in &r.breached {
        line(&[
            "breach".into(),
            b.call.to_string(),
            b.dispatch.to_string(),
            b.patrol.clone(),
            b.area.clone(),
            local(b.offered_at),
            b.limit_mins.to_string(),
            if b.arrived { "yes" } else { "no" }.into(),
            b.minutes.to_string(),
        ]);
    }
    line(&[]);

    line(&["frequent_caller", "subscriber", "name", "month", "calls"].map(str::to_owned));
    for f in &s.frequent_callers.callers {
        line(&[
            "frequent_caller".into(),
            f.subscriber.clone(),
            f.name.clone(),
            f.month.clone(),
            f.calls.to_string(),
        ]);
    }
    line(&[]);

    line(
        &[
            "area",
            "area_id",
            "area_name",
            "limit_mins",
            "dispatches",
            "arrived",
            "within_limit",
            "breaches",
        ]
        .map(str::to_owned),
    );
    for a in &r.areas {
        line(&[
            "area".into(),
            a.area.clone(),
            a.area_name.clone(),
            a.limit_mins.to_string(),
            a.dispatches.to_string(),
            a.arrived.to_string(),
            a.within_limit.to_string(),
            a.breaches.to_string(),
        ]);
    }
    if let Some(ops) = &s.operators {
        line(&[]);
        line(
            &[
                "operator",
                "name",
                "answered",
                "median_answer_secs",
                "closed",
            ]
            .map(str::to_owned),
        );
        for o in ops {
            line(&[
                "operator".into(),
                o.operator.clone(),
                o.answered.to_string(),
                opt_decimal(o.median_answer_secs),
                o.closed.to_string(),
            ]);
        }
    }
    out
}

#[cfg(test)]
mod tests;
