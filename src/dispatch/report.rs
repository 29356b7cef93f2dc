//! The monthly SLA report (`vakt report sla`, `GET /api/reports/sla`): per care provider and
//! area, how many dispatches, how fast the patrols arrived after receiving the assignment
//! (median and 90th percentile), which dispatches breached the arrival limit, and how many
//! timed out, were declined, cancelled or are still open; beside it the month's answer-time
//! figures of the console against the telecare targets.
//!
//! It is made for the whole centre, one municipality or one care provider ([`Scope`]): a
//! municipality's report holds the dispatches to its people and their Calls; a care
//! provider's the dispatches to its patrols and its people's Calls.
//!
//! A dispatch belongs to the month, in the centre's time zone, in which it was offered. A
//! Call belongs to the month in which it was opened. `now` is a parameter (no clock is read):
//! it decides whether a dispatch still waiting has run out of time, and whether a Call not
//! yet answered has waited too long.

use std::collections::BTreeMap;

use jiff::{Timestamp, ToSpan, civil::Date, tz::TimeZone};
use serde::Serialize;

use crate::calls::{Stats, stats_of};
use crate::model::{Call, Dispatch, DispatchState, Scope};
use crate::store::{Store, StoreError};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The month is not `YYYY-MM`, or not a month this calendar can place.
    #[error("bad month {0:?}: give it as YYYY-MM, e.g. 2026-11")]
    BadMonth(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The report of one month.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SlaReport {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Whose: the whole centre, a municipality or a care provider.
    pub scope: Scope,
    /// The time zone the month is counted in (IANA name; empty if the zone has none).
    pub time_zone: String,
    /// The month's first instant (local midnight of its first day).
    #[schema(value_type = String)]
    pub from: Timestamp,
    /// The next month's first instant (the end, exclusive).
    #[schema(value_type = String)]
    pub to: Timestamp,
    /// When the report was made (open dispatches and unanswered Calls are judged at this time).
    #[schema(value_type = String)]
    pub generated_at: Timestamp,
    /// One row per care provider and area that had dispatches, by provider name then area
    /// name.
    pub rows: Vec<SlaRow>,
    /// Every dispatch of the month (provider and area `*`).
    pub totals: SlaRow,
    /// The answer-time figures of the Calls opened in the month (`date` is the month).
    pub answer: Stats,
}

/// The dispatches of one care provider in one area (or, as the totals row, of all of them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SlaRow {
    /// Provider id (`*` in the totals row).
    pub provider: String,
    /// Provider name from the directory (the id when the directory no longer has it).
    pub provider_name: String,
    /// Area id as the dispatch carries it (`*` in the totals row).
    pub area: String,
    /// Area name from the directory (the id when the directory no longer has it).
    pub area_name: String,
    /// Dispatches offered in the month.
    pub dispatches: usize,
    /// Of them, the patrol arrived.
    pub arrived: usize,
    /// Median time from receipt to arrival, in whole seconds (nearest rank, over the arrived
    /// dispatches whose receipt was confirmed); none without such dispatches.
    pub median_arrival_secs: Option<u64>,
    /// 90th percentile of the same times (nearest rank).
    pub p90_arrival_secs: Option<u64>,
    /// Dispatches that breached the arrival limit: arrived at or after the deadline, or
    /// not arrived when it ran out.
    pub breaches: usize,
    /// The breached dispatches, oldest first.
    pub breached: Vec<Breach>,
    /// Not received in time; passed on to the next patrol.
    pub receipt_timeouts: usize,
    /// Declined by the patrol.
    pub declined: usize,
    /// Withdrawn by the operator.
    pub cancelled: usize,
    /// Still waiting for the patrol (offered, received or accepted) at `generated_at`.
    pub open: usize,
}

/// One breach of the arrival limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Breach {
    /// The dispatch.
    pub dispatch: u64,
    /// Its Call.
    pub call: u64,
    /// The patrol.
    pub patrol: String,
}

/// The id of the totals row's provider and area.
pub const ALL: &str = "*";

/// The first instant of `month` (`YYYY-MM`) in `tz` and the first instant of the month after.
pub fn month_bounds(month: &str, tz: &TimeZone) -> Result<(Timestamp, Timestamp), ReportError> {
    let bad = || ReportError::BadMonth(month.to_string());
    let b = month.as_bytes();
    let well_formed =
        b.len() == 7 && b[4] == b'-' && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit);
    if !well_formed {
        return Err(bad());
    }
    let year: i16 = month[..4].parse().map_err(|_| bad())?;
    let mon: i8 = month[5..].parse().map_err(|_| bad())?;
    let first = Date::new(year, mon, 1).map_err(|_| bad())?;
    let next = first.checked_add(1.month()).map_err(|_| bad())?;
    // Local midnight; where a transition skips midnight, the first instant of the day.
    let start = |d: Date| -> Result<Timestamp, ReportError> {
        d.to_zoned(tz.clone())
            .and_then(|z| z.start_of_day())
            .map(|z| z.timestamp())
            .map_err(|_| bad())
    };
    Ok((start(first)?, start(next)?))
}

/// The SLA report of `month` (`YYYY-MM`, counted in `tz`) for the whole centre, as the store
/// has it at `now`.
pub fn sla_report(
    store: &Store,
    month: &str,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<SlaReport, ReportError> {
    sla_report_of(store, month, tz, now, &Scope::All, "")
}

/// The SLA report of `month` for `scope` (`home`: the centre's own municipality, which a card
/// without one belongs to).
pub fn sla_report_of(
    store: &Store,
    month: &str,
    tz: &TimeZone,
    now: Timestamp,
    scope: &Scope,
    home: &str,
) -> Result<SlaReport, ReportError> {
    let (from, to) = month_bounds(month, tz)?;
    let mut dispatches = store.dispatches_offered_between(from, to)?;
    let mut calls = store.calls_opened_between(from, to)?;
    if !scope.is_all() {
        // Whose each person is, read once per person.
        let mut theirs: BTreeMap<String, bool> = BTreeMap::new();
        let mut sees = |subscriber: Option<&String>| -> Result<bool, StoreError> {
            let Some(id) = subscriber else {
                return Ok(false);
            };
            if let Some(&v) = theirs.get(id) {
                return Ok(v);
            }
            let v = store.subscriber(id)?.is_some_and(|s| scope.sees(&s, home));
            theirs.insert(id.clone(), v);
            Ok(v)
        };
        // Each Call's person, for the dispatches (a dispatch's Call may be of an earlier
        // month: read when met).
        let mut person_of: BTreeMap<u64, Option<String>> =
            calls.iter().map(|c| (c.id, c.subscriber.clone())).collect();
        let mut kept = Vec::with_capacity(calls.len());
        for c in calls {
            if sees(c.subscriber.as_ref())? {
                kept.push(c);
            }
        }
        calls = kept;
        let mut kept = Vec::with_capacity(dispatches.len());
        for d in dispatches {
            let keep = match scope {
                Scope::Provider(p) => d.provider == *p,
                _ => {
                    let person = match person_of.entry(d.call) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            e.insert(store.call(d.call)?.and_then(|c: Call| c.subscriber))
                        }
                    };
                    sees(person.as_ref())?
                }
            };
            if keep {
                kept.push(d);
            }
        }
        dispatches = kept;
    }
    let dir = store.directory()?;

    let mut groups: BTreeMap<(&str, &str), Vec<&Dispatch>> = BTreeMap::new();
    for d in &dispatches {
        groups
            .entry((d.provider.as_str(), d.area.as_str()))
            .or_default()
            .push(d);
    }
    let mut rows: Vec<SlaRow> = groups
        .into_iter()
        .map(|((provider, area), ds)| {
            let provider_name = dir.provider(provider).map_or(provider, |p| p.name.as_str());
            let area_name = dir.area_for(area).map_or(area, |a| a.name.as_str());
            row_of(provider, provider_name, area, area_name, &ds, now)
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.provider_name, &a.area_name, &a.provider, &a.area).cmp(&(
            &b.provider_name,
            &b.area_name,
            &b.provider,
            &b.area,
        ))
    });
    let all: Vec<&Dispatch> = dispatches.iter().collect();
    let totals = row_of(ALL, ALL, ALL, ALL, &all, now);

    let answer = stats_of(&calls, month.to_string(), now);

    Ok(SlaReport {
        month: month.to_string(),
        scope: scope.clone(),
        time_zone: tz.iana_name().unwrap_or_default().to_string(),
        from,
        to,
        generated_at: now,
        rows,
        totals,
        answer,
    })
}

/// Whether a dispatch breached its arrival limit as of `now`: marked so by the clocks, or
/// (should the mark be missing, e.g. a report made while the server was stopped) arrived at
/// or after the deadline, or still open at or after it.
pub(crate) fn is_breach(d: &Dispatch, now: Timestamp) -> bool {
    if d.breached {
        return true;
    }
    let Some(deadline) = d.deadline() else {
        return false;
    };
    match d.arrived_at {
        Some(a) => a >= deadline,
        None => d.is_open() && now >= deadline,
    }
}

fn row_of(
    provider: &str,
    provider_name: &str,
    area: &str,
    area_name: &str,
    ds: &[&Dispatch],
    now: Timestamp,
) -> SlaRow {
    let mut secs: Vec<u64> = ds
        .iter()
        .filter_map(|d| {
            let (r, a) = (d.received_at?, d.arrived_at?);
            Some(u64::try_from(a.duration_since(r).as_secs()).unwrap_or(0))
        })
        .collect();
    secs.sort_unstable();
    let count = |s: DispatchState| ds.iter().filter(|d| d.state == s).count();
    let mut breached: Vec<Breach> = ds
        .iter()
        .filter(|d| is_breach(d, now))
        .map(|d| Breach {
            dispatch: d.id,
            call: d.call,
            patrol: d.patrol.clone(),
        })
        .collect();
    breached.sort_by_key(|b| b.dispatch);
    SlaRow {
        provider: provider.to_string(),
        provider_name: provider_name.to_string(),
        area: area.to_string(),
        area_name: area_name.to_string(),
        dispatches: ds.len(),
        arrived: ds.iter().filter(|d| d.arrived_at.is_some()).count(),
        median_arrival_secs: nearest_rank(&secs, 50),
        p90_arrival_secs: nearest_rank(&secs, 90),
        breaches: breached.len(),
        breached,
        receipt_timeouts: count(DispatchState::ReceiptTimeout),
        declined: count(DispatchState::Declined),
        cancelled: count(DispatchState::Cancelled),
        open: ds.iter().filter(|d| d.is_open()).count(),
    }
}

/// The `pct`th percentile (1..=100) of sorted values by the nearest-rank method: the
/// smallest value with at least `pct` % of the values at or below it.
pub(crate) fn nearest_rank(sorted: &[u64], pct: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The CSV header of [`to_csv`].
pub const CSV_HEADER: &str = "month,provider,provider_name,area,area_name,dispatches,arrived,\
median_arrival_secs,p90_arrival_secs,breaches,breach_calls,breach_dispatches,\
receipt_timeouts,declined,cancelled,open";

/// The per-provider-and-area table as CSV: [`CSV_HEADER`], one line per row, then the
/// totals line (provider and area `*`). Breached Call and dispatch ids are joined by `;`;
/// a time without arrivals is empty. (The answer-time figures are in the JSON.)
pub fn to_csv(r: &SlaReport) -> String {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let ids = |f: &dyn Fn(&Breach) -> u64, row: &SlaRow| {
        row.breached
            .iter()
            .map(|b| f(b).to_string())
            .collect::<Vec<_>>()
            .join(";")
    };
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for row in r.rows.iter().chain(std::iter::once(&r.totals)) {
        let record = [
            r.month.clone(),
            row.provider.clone(),
            row.provider_name.clone(),
            row.area.clone(),
            row.area_name.clone(),
            row.dispatches.to_string(),
            row.arrived.to_string(),
            opt(row.median_arrival_secs),
            opt(row.p90_arrival_secs),
            row.breaches.to_string(),
            ids(&|b| b.call, row),
            ids(&|b| b.dispatch, row),
            row.receipt_timeouts.to_string(),
            row.declined.to_string(),
            row.cancelled.to_string(),
            row.open.to_string(),
        ];
        // Writing to a Vec cannot fail, and every record has the same number of fields.
        let _ = w.write_record(&record);
    }
    let _ = w.flush();
    let body = w.into_inner().unwrap_or_default();
    out.push_str(&String::from_utf8_lossy(&body));
    out
}

/// Seconds as `12m 34s` (or `-` for none).
fn mins_secs(v: Option<u64>) -> String {
    match v {
        Some(s) => format!("{}m {:02}s", s / 60, s % 60),
        None => "-".to_string(),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |p| format!("{p:.1} %"))
}

/// The report as a table for a terminal: the rows, the totals, the breaches, the answer
/// figures.
pub fn to_text(r: &SlaReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Arrival SLA {} ({}){}",
        r.month,
        if r.time_zone.is_empty() {
            "local time"
        } else {
            &r.time_zone
        },
        match &r.scope {
            Scope::All => String::new(),
            Scope::Municipality(m) => format!(", municipality {m}"),
            Scope::Provider(p) => format!(", care provider {p}"),
        }
    );
    let _ = writeln!(s);
    let header = [
        "provider", "area", "disp", "arrived", "median", "p90", "breach", "rcpt-to", "declined",
        "cancel", "open",
    ];
    let cells = |row: &SlaRow, provider: &str, area: &str| -> Vec<String> {
        vec![
            provider.to_string(),
            area.to_string(),
            row.dispatches.to_string(),
            row.arrived.to_string(),
            mins_secs(row.median_arrival_secs),
            mins_secs(row.p90_arrival_secs),
            row.breaches.to_string(),
            row.receipt_timeouts.to_string(),
            row.declined.to_string(),
            row.cancelled.to_string(),
            row.open.to_string(),
        ]
    };
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in &r.rows {
        table.push(cells(row, &row.provider_name, &row.area_name));
    }
    table.push(cells(&r.totals, "total", ""));
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (n, line) in table.iter().enumerate() {
        if n + 1 == table.len() {
            let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            let _ = writeln!(s, "{}", "-".repeat(rule));
        }
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                text.push_str("  ");
            }
            if i < 2 {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        let _ = writeln!(s, "{}", text.trim_end());
    }
    if r.totals.breaches > 0 {
        let _ = writeln!(s);
        let _ = writeln!(s, "Breaches (dispatch, Call, patrol):");
        for row in &r.rows {
            for b in &row.breached {
                let _ = writeln!(
                    s,
                    "  dispatch {} Call {} {} ({}, {})",
                    b.dispatch, b.call, b.patrol, row.provider_name, row.area_name
                );
            }
        }
    }
    let a = &r.answer;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Calls {}: {} opened, {} answered, median answer {}",
        r.month,
        a.calls,
        a.answered,
        a.median_answer_secs
            .map_or("-".to_string(), |m| format!("{m:.0} s"))
    );
    let _ = writeln!(
        s,
        "answered within 60 s: {} (target {} %); within 180 s: {} (target {} %)",
        pct(a.within_60s_pct),
        a.target_60s_pct,
        pct(a.within_180s_pct),
        a.target_180s_pct
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::directory::{
        DEMO_AREAS, DEMO_PATROLS, DEMO_PROVIDERS, DEMO_ROUTES, parse_all,
    };

    fn stockholm() -> TimeZone {
        TimeZone::get("Europe/Stockholm").unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// A dispatch offered at `offered`, received a minute later and, when `arrived_after`
    /// is given, arrived that many seconds after receipt (then completed).
    fn dispatch(
        id: u64,
        provider: &str,
        area: &str,
        offered: &str,
        arrived_after: Option<i64>,
    ) -> Dispatch {
        let offered_at = at(offered);
        let received_at = offered_at + 60.seconds();
        let arrived_at = arrived_after.map(|s| received_at + s.seconds());
        Dispatch {
            id,
            call: 100 + id,
            patrol: "norr-kvall".into(),
            provider: provider.into(),
            area: area.into(),
            state: if arrived_at.is_some() {
                DispatchState::Completed
            } else {
                DispatchState::Received
            },
            offered_at,
            received_at: Some(received_at),
            accepted_at: Some(received_at),
            arrived_at,
            arrival_method: None,
            ended_at: arrived_at,
            limit_mins: 30,
            warned_at_mins: Vec::new(),
            breached: arrived_after.is_some_and(|s| s >= 30 * 60),
            note: String::new(),
            operator: "olle".into(),
            instruction: String::new(),
        }
    }

    /// A closed personal alarm of `subscriber` opened at `opened`, answered `answer_secs` later.
    fn closed_call(id: u64, opened: &str, answer_secs: i64, subscriber: Option<&str>) -> Call {
        let opened_at = at(opened);
        Call {
            id,
            priority: crate::model::Priority::PERSONAL,
            state: crate::model::CallState::Closed,
            owner: None,
            opened_at,
            alarm_count: 1,
            subscriber: subscriber.map(str::to_owned),
            account: "1234".into(),
            kind: "Personal alarm".into(),
            restored: false,
            answered_at: Some(opened_at + answer_secs.seconds()),
            closed_at: Some(opened_at + 600.seconds()),
            outcome: None,
            timeline: Vec::new(),
            last_signal_id: 0,
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn months_are_local_and_strict() {
        let tz = stockholm();
        // November: CET (+01:00) throughout.
        assert_eq!(
            month_bounds("2026-11", &tz).unwrap(),
            (at("2026-10-31T23:00:00Z"), at("2026-11-30T23:00:00Z"))
        );
        // October starts in summer time (+02:00) and ends in winter time.
        assert_eq!(
            month_bounds("2026-10", &tz).unwrap(),
            (at("2026-09-30T22:00:00Z"), at("2026-10-31T23:00:00Z"))
        );
        // December runs into the next year.
        assert_eq!(
            month_bounds("2026-12", &tz).unwrap().1,
            at("2026-12-31T23:00:00Z")
        );
        assert_eq!(
            month_bounds("2026-11", &TimeZone::UTC).unwrap().0,
            at("2026-11-01T00:00:00Z")
        );
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-11",
            "2026/11",
            "2026-11-01",
            "",
            "abcd-ef",
            "+026-11",
            "2026-+1",
        ] {
            assert!(
                matches!(month_bounds(bad, &tz), Err(ReportError::BadMonth(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        // 4 values: median is the 2nd, p90 the 4th (ceil(3.6)).
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 90), Some(4));
        // 10 values: p90 is the 9th, median the 5th.
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 90), Some(9));
        assert_eq!(nearest_rank(&ten, 50), Some(5));
        // 11 values: p90 is the 10th (ceil(9.9)), median the 6th (ceil(5.5)).
        let eleven: Vec<u64> = (1..=11).collect();
        assert_eq!(nearest_rank(&eleven, 90), Some(10));
        assert_eq!(nearest_rank(&eleven, 50), Some(6));
    }

    #[test]
    fn rows_per_provider_and_area_with_times_and_breaches() {
        let (_dir, store) = store();
        let dir = parse_all(
            DEMO_PROVIDERS.as_bytes(),
            DEMO_AREAS.as_bytes(),
            DEMO_PATROLS.as_bytes(),
            DEMO_ROUTES.as_bytes(),
        )
        .unwrap();
        store.save_directory(&dir).unwrap();
        let prov = &dir.providers[0];
        let area = &dir.areas[0];
        let (p, a) = (prov.id.as_str(), area.id.as_str());

        let mut ds = vec![
            // Arrival times after receipt: 600, 900, 1200, 1500 and 2000 s (a breach).
            dispatch(1, p, a, "2026-11-03T08:00:00Z", Some(900)),
            dispatch(2, p, a, "2026-11-04T08:00:00Z", Some(600)),
            dispatch(3, p, a, "2026-11-05T08:00:00Z", Some(2000)),
            dispatch(4, p, a, "2026-11-06T08:00:00Z", Some(1200)),
            dispatch(5, p, a, "2026-11-07T08:00:00Z", Some(1500)),
            // Still on its way, received 30 min ago at `now`: breached, though the clocks
            // have not marked it (the server was stopped).
            dispatch(6, p, a, "2026-11-29T10:00:00Z", None),
            // Still on its way and in time.
            dispatch(7, p, a, "2026-11-29T10:20:00Z", None),
            // Another provider, an unknown area (its id is shown).
            dispatch(8, "gone", "ute", "2026-11-10T12:00:00Z", Some(300)),
            // Last month: not counted.
            dispatch(9, p, a, "2026-10-20T08:00:00Z", Some(3000)),
        ];
        let mut timed_out = dispatch(10, p, a, "2026-11-08T08:00:00Z", None);
        timed_out.state = DispatchState::ReceiptTimeout;
        timed_out.received_at = None;
        timed_out.accepted_at = None;
        let mut declined = dispatch(11, p, a, "2026-11-08T09:00:00Z", None);
        declined.state = DispatchState::Declined;
        let mut cancelled = dispatch(12, p, a, "2026-11-08T10:00:00Z", None);
        cancelled.state = DispatchState::Cancelled;
        ds.extend([timed_out, declined, cancelled]);
        store.save_dispatches(&ds).unwrap();

        let now = at("2026-11-29T10:31:00Z");
        let r = sla_report(&store, "2026-11", &stockholm(), now).unwrap();
        assert_eq!(r.month, "2026-11");
        assert_eq!(r.time_zone, "Europe/Stockholm");
        assert_eq!(r.rows.len(), 2);
        let row = r.rows.iter().find(|x| x.provider == p).unwrap();
        assert_eq!(row.provider_name, prov.name);
        assert_eq!(row.area, a);
        assert_eq!(row.area_name, area.name);
        assert_eq!(row.dispatches, 10);
        assert_eq!(row.arrived, 5);
        // Sorted 600, 900, 1200, 1500, 2000: median rank ceil(2.5) = 3, p90 rank ceil(4.5) = 5.
        assert_eq!(row.median_arrival_secs, Some(1200));
        assert_eq!(row.p90_arrival_secs, Some(2000));
        assert_eq!(row.breaches, 2);
        assert_eq!(
            row.breached,
            vec![
                Breach {
                    dispatch: 3,
                    call: 103,
                    patrol: "norr-kvall".into()
                },
                Breach {
                    dispatch: 6,
                    call: 106,
                    patrol: "norr-kvall".into()
                },
            ]
        );
        assert_eq!(
            (row.receipt_timeouts, row.declined, row.cancelled, row.open),
            (1, 1, 1, 2)
        );

        let other = r.rows.iter().find(|x| x.provider == "gone").unwrap();
        assert_eq!(
            (other.provider_name.as_str(), other.area_name.as_str()),
            ("gone", "ute")
        );
        assert_eq!(
            (other.median_arrival_secs, other.p90_arrival_secs),
            (Some(300), Some(300))
        );

        let t = &r.totals;
        assert_eq!((t.provider.as_str(), t.area.as_str()), (ALL, ALL));
        assert_eq!((t.dispatches, t.arrived, t.breaches), (11, 6, 2));
        // 300, 600, 900, 1200, 1500, 2000: median rank 3, p90 rank ceil(5.4) = 6.
        assert_eq!(t.median_arrival_secs, Some(900));
        assert_eq!(t.p90_arrival_secs, Some(2000));

        let csv = to_csv(&r);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines.len(), 4, "{csv}");
        let line = lines
            .iter()
            .find(|l| l.contains(&format!(",{p},")))
            .unwrap();
        assert!(line.contains(",2,103;106,3;6,1,1,1,2"), "{line}");
        assert!(line.contains(",1200,2000,"), "{line}");
        assert!(lines[3].starts_with("2026-11,*,*,*,*,11,6,900,2000,2,103;106,"));
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        for rec in reader.records() {
            assert_eq!(rec.unwrap().len(), CSV_HEADER.split(',').count());
        }

        let text = to_text(&r);
        assert!(text.contains(&prov.name), "{text}");
        assert!(text.contains("dispatch 3 Call 103"), "{text}");
        assert!(text.contains("20m 00s"), "{text}");

        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["rows"][0]["breached"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(json["answer"]["date"], "2026-11");
    }

    #[test]
    fn a_dispatch_counts_in_the_local_month_it_was_offered() {
        let (_dir, store) = store();
        // Numbered in the order they were offered, as the dispatcher numbers them (the
        // store finds a period's first dispatch by its id).
        store
            .save_dispatches(&[
                // 23:59:59 on 31 October in Stockholm: October.
                dispatch(1, "p", "a", "2026-10-31T22:59:59Z", Some(400)),
                // Exactly local midnight of 1 November: November.
                dispatch(2, "p", "a", "2026-10-31T23:00:00Z", Some(500)),
                // 00:30 on 1 November in Stockholm, 31 October in UTC: November.
                dispatch(3, "p", "a", "2026-10-31T23:30:00Z", Some(300)),
                // 23:30 on 30 November in Stockholm (22:30 UTC): November.
                dispatch(4, "p", "a", "2026-11-30T22:30:00Z", Some(100)),
                // 00:30 on 1 December in Stockholm, still 30 November in UTC: December.
                dispatch(5, "p", "a", "2026-11-30T23:30:00Z", Some(200)),
            ])
            .unwrap();
        let now = at("2027-01-10T00:00:00Z");
        let count = |month: &str, tz: &TimeZone| {
            sla_report(&store, month, tz, now)
                .unwrap()
                .totals
                .dispatches
        };
        let tz = stockholm();
        let nov = sla_report(&store, "2026-11", &tz, now).unwrap();
        assert_eq!(nov.totals.dispatches, 3);
        assert_eq!(nov.totals.median_arrival_secs, Some(300)); // 100, 300, 500
        assert_eq!(
            sla_report(&store, "2026-12", &tz, now)
                .unwrap()
                .totals
                .arrived,
            1
        );
        assert_eq!(
            sla_report(&store, "2026-10", &tz, now)
                .unwrap()
                .totals
                .median_arrival_secs,
            Some(400)
        );
        // In UTC the same dispatches fall differently: 4 and 5 in November, 1, 2, 3 in October.
        assert_eq!(count("2026-11", &TimeZone::UTC), 2);
        assert_eq!(count("2026-10", &TimeZone::UTC), 3);
        assert_eq!(count("2026-12", &tz), 1);
    }

    #[test]
    fn a_month_with_nothing_has_zeros_and_no_times() {
        let (_dir, store) = store();
        let r = sla_report(&store, "2026-11", &stockholm(), at("2026-12-01T00:00:00Z")).unwrap();
        assert!(r.rows.is_empty());
        assert_eq!(r.totals.dispatches, 0);
        assert_eq!(r.totals.median_arrival_secs, None);
        assert_eq!(r.totals.p90_arrival_secs, None);
        assert_eq!(r.answer.calls, 0);
        assert_eq!(r.answer.within_60s_pct, None);
        let csv = to_csv(&r);
        assert_eq!(
            csv,
            format!("{CSV_HEADER}\n2026-11,*,*,*,*,0,0,,,0,,,0,0,0,0\n")
        );
        assert!(to_text(&r).contains("0 opened"));
        assert!(matches!(
            sla_report(&store, "november", &stockholm(), at("2026-12-01T00:00:00Z")),
            Err(ReportError::BadMonth(_))
        ));
    }

    #[test]
    fn answer_figures_cover_the_calls_opened_in_the_month() {
        let (_dir, store) = store();
        let call =
            |id: u64, opened: &str, answer_secs: i64| closed_call(id, opened, answer_secs, None);
        let calls = [
            call(1, "2026-10-31T22:59:00Z", 5), // October in Stockholm
            call(2, "2026-10-31T23:10:00Z", 20),
            call(3, "2026-11-15T12:00:00Z", 40),
            call(4, "2026-11-20T12:00:00Z", 90),
            call(5, "2026-11-30T23:10:00Z", 7), // December in Stockholm
        ];
        store.save_calls(&calls, None).unwrap();
        let r = sla_report(&store, "2026-11", &stockholm(), at("2027-01-01T00:00:00Z")).unwrap();
        assert_eq!(r.answer.calls, 3);
        assert_eq!(r.answer.median_answer_secs, Some(40.0));
        let within = r.answer.within_60s_pct.unwrap();
        assert!((within - 200.0 / 3.0).abs() < 1e-9, "{within}");
        assert_eq!(r.answer.within_180s_pct, Some(100.0));
        assert_eq!(r.answer.target_60s_pct, 97.5);
    }

    #[test]
    fn a_municipality_or_provider_gets_its_own_people_and_patrols() {
        use crate::model::Subscriber;
        let (_dir, store) = store();
        let person = |id: &str, provider: &str, municipality: &str| Subscriber {
            id: id.into(),
            name: id.into(),
            care_provider: provider.into(),
            municipality: municipality.into(),
            ..Subscriber::default()
        };
        store
            .upsert_subscribers(&[
                person("anna", "hc", ""),
                person("bo", "hs", "Vaktby kommun"),
                person("cia", "hc", "Nordby kommun"),
            ])
            .unwrap();
        let call = |id: u64, opened: &str, who: &str| closed_call(id, opened, 30, Some(who));
        // Cia's Call 103 of October has its dispatch in November.
        store
            .save_calls(
                &[
                    call(101, "2026-11-03T07:59:00Z", "anna"),
                    call(102, "2026-11-04T07:59:00Z", "bo"),
                    call(103, "2026-10-31T22:00:00Z", "cia"),
                    call(104, "2026-11-06T07:59:00Z", "cia"),
                ],
                None,
            )
            .unwrap();
        // Dispatch n is of Call 100 + n; Bo's went to Centrum's patrol ("hc").
        store
            .save_dispatches(&[
                dispatch(1, "hc", "norr", "2026-11-03T08:00:00Z", Some(600)),
                dispatch(2, "hc", "norr", "2026-11-04T08:00:00Z", Some(2000)),
                dispatch(3, "hc", "norr", "2026-11-05T08:00:00Z", Some(900)),
                dispatch(4, "hs", "norr", "2026-11-06T08:00:00Z", Some(1200)),
            ])
            .unwrap();
        let now = at("2026-12-01T00:00:00Z");
        let of = |scope: Scope| {
            let r = sla_report_of(
                &store,
                "2026-11",
                &stockholm(),
                now,
                &scope,
                "Vaktby kommun",
            )
            .unwrap();
            let mut dispatches: Vec<u64> = r
                .rows
                .iter()
                .flat_map(|row| row.breached.iter().map(|b| b.dispatch))
                .collect();
            dispatches.sort_unstable();
            (r, dispatches)
        };
        // The centre: everything.
        let (r, breached) = of(Scope::All);
        assert_eq!((r.totals.dispatches, r.answer.calls), (4, 3));
        assert_eq!(breached, [2]);
        // Vaktby: Anna (no municipality on her card: the centre's) and Bo.
        let (r, breached) = of(Scope::Municipality("vaktby kommun".into()));
        assert_eq!(r.scope, Scope::Municipality("vaktby kommun".into()));
        assert_eq!((r.totals.dispatches, r.answer.calls), (2, 2));
        assert_eq!(r.totals.median_arrival_secs, Some(600));
        assert_eq!(breached, [2]);
        // Nordby: Cia's two dispatches (one of an October Call), one November Call.
        let (r, breached) = of(Scope::Municipality("Nordby kommun".into()));
        assert_eq!((r.totals.dispatches, r.answer.calls), (2, 1));
        assert!(breached.is_empty());
        let providers: Vec<&str> = r.rows.iter().map(|x| x.provider.as_str()).collect();
        assert_eq!(providers, ["hc", "hs"]);
        // Centrum: its patrols' dispatches (Bo's too); its people's Calls (Anna's, Cia's).
        let (r, breached) = of(Scope::Provider("hc".into()));
        assert_eq!((r.totals.dispatches, r.answer.calls), (3, 2));
        assert_eq!(breached, [2]);
        assert!(to_text(&r).contains("care provider hc"), "{}", to_text(&r));
        // A municipality with nobody: nothing.
        let (r, _) = of(Scope::Municipality("Söderby kommun".into()));
        assert_eq!((r.totals.dispatches, r.answer.calls), (0, 0));
    }
}
