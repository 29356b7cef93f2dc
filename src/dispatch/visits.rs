//! Visits for compensation (seed 003, "mobil återrapportering"): every alarm visit a patrol
//! made, with its confirmed arrival and departure, how the arrival was confirmed (digital
//! lock, receipt code, presence button, the app) and who made it, per care provider and
//! month: the basis of the provider's time report and of the municipality's compensation
//! (`vakt report visits`, `GET /api/reports/visits`).
//!
//! A visit is a dispatch that the patrol completed after arriving. It belongs to the month,
//! in the centre's time zone, in which the patrol arrived. Its time on site runs from the
//! arrival to the completion, in whole minutes rounded up (a visit of 30 seconds counts one
//! minute, as a time report does). Dispatches the patrol never arrived at (declined, timed
//! out, cancelled) or has not completed yet are not visits.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::report::{ReportError, month_bounds};
use super::wire::VisitOutcome;
use crate::model::directory::Directory;
use crate::model::{Dispatch, DispatchState};
use crate::store::Store;

/// A visit ends at most this long after the dispatch was offered (a bound on the store's
/// scan: a visit arriving in a month was offered at most this long before it began).
const LONGEST_VISIT_DAYS: i64 = 2;

/// One visit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Visit {
    /// The dispatch.
    pub dispatch: u64,
    /// Its Call.
    pub call: u64,
    /// The subscriber visited (empty for an unknown device).
    pub subscriber: String,
    /// The subscriber's name (empty when the register no longer has them).
    pub subscriber_name: String,
    /// The care provider (id).
    pub provider: String,
    /// The provider's name from the directory (the id when the directory no longer has it).
    pub provider_name: String,
    /// The patrol that made it (id).
    pub patrol: String,
    /// The patrol's name from the directory (the id when it no longer has it).
    pub patrol_name: String,
    /// The area.
    pub area: String,
    /// When the patrol arrived.
    #[schema(value_type = String)]
    pub arrived_at: Timestamp,
    /// When it completed the visit.
    #[schema(value_type = String)]
    pub departed_at: Timestamp,
    /// Time on site in whole minutes, rounded up.
    pub minutes: u64,
    /// How the arrival was confirmed (`lock`, `receipt_code`, `presence`, `app`).
    pub arrival_method: String,
    /// How the visit ended, as the patrol reported it (`helped`, `no_action`, ...; empty
    /// when it said only a note).
    pub outcome: String,
    /// The patrol's note.
    pub note: String,
}

/// One provider's visits of the month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProviderVisits {
    /// The provider (id).
    pub provider: String,
    /// Its name.
    pub provider_name: String,
    /// How many visits.
    pub visits: usize,
    /// Their minutes on site together.
    pub minutes: u64,
}

/// The visits of one month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VisitsReport {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The time zone it is counted in.
    pub time_zone: String,
    /// Only this provider's visits (none: every provider's).
    pub provider: Option<String>,
    /// Per provider, by name.
    pub providers: Vec<ProviderVisits>,
    /// Every visit, by arrival.
    pub visits: Vec<Visit>,
}

/// The outcome and the free note of a completed dispatch's `note` (which the SLA clock
/// writes as `outcome: note`, `outcome` or `note`).
pub fn outcome_and_note(note: &str) -> (&'static str, &str) {
    let known = |s: &str| VisitOutcome::ALL.into_iter().find(|o| o.as_str() == s);
    if let Some(o) = known(note.trim()) {
        return (o.as_str(), "");
    }
    if let Some((head, rest)) = note.split_once(": ") {
        if let Some(o) = known(head.trim()) {
            return (o.as_str(), rest.trim());
        }
    }
    ("", note.trim())
}

/// The visit a dispatch was, if it was one.
fn visit_of(
    d: &Dispatch,
    dir: &Directory,
    subscriber: (String, String),
    from: Timestamp,
    to: Timestamp,
) -> Option<Visit> {
    if d.state != DispatchState::Completed {
        return None;
    }
    let (arrived, departed) = (d.arrived_at?, d.ended_at?);
    if arrived < from || arrived >= to {
        return None;
    }
    let millis = u64::try_from(departed.duration_since(arrived).as_millis()).unwrap_or(0);
    let (outcome, note) = outcome_and_note(&d.note);
    Some(Visit {
        dispatch: d.id,
        call: d.call,
        subscriber: subscriber.0,
        subscriber_name: subscriber.1,
        provider: d.provider.clone(),
        provider_name: dir
            .provider(&d.provider)
            .map_or_else(|| d.provider.clone(), |p| p.name.clone()),
        patrol: d.patrol.clone(),
        patrol_name: dir
            .patrol(&d.patrol)
            .map_or_else(|| d.patrol.clone(), |p| p.name.clone()),
        area: d.area.clone(),
        arrived_at: arrived,
        departed_at: departed,
        minutes: millis.div_ceil(60_000),
        arrival_method: d
            .arrival_method
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
        outcome: outcome.to_owned(),
        note: note.to_owned(),
    })
}

/// The visits among `dispatches` that arrived in `[from, to)`, of `provider` if given,
/// by arrival, with the totals per provider (by name). `subscriber_of` gives a Call's
/// subscriber id and name. Pure.
pub fn visits_of(
    dispatches: &[Dispatch],
    dir: &Directory,
    mut subscriber_of: impl FnMut(u64) -> (String, String),
    from: Timestamp,
    to: Timestamp,
    provider: Option<&str>,
) -> (Vec<ProviderVisits>, Vec<Visit>) {
    let mut visits: Vec<Visit> = dispatches
        .iter()
        .filter(|d| provider.is_none_or(|p| d.provider == p))
        .filter_map(|d| {
            // Only a dispatch that is a visit costs the subscriber lookup.
            let is_visit = d.state == DispatchState::Completed
                && d.arrived_at.is_some_and(|a| a >= from && a < to);
            is_visit
                .then(|| visit_of(d, dir, subscriber_of(d.call), from, to))
                .flatten()
        })
        .collect();
    visits.sort_by_key(|v| (v.arrived_at, v.dispatch));
    let providers = per_provider(&visits);
    (providers, visits)
}

/// The visits counted per provider, by the provider's name.
fn per_provider(visits: &[Visit]) -> Vec<ProviderVisits> {
    let mut per: BTreeMap<(&str, &str), (usize, u64)> = BTreeMap::new();
    for v in visits {
        let e = per
            .entry((v.provider_name.as_str(), v.provider.as_str()))
            .or_default();
        e.0 += 1;
        e.1 += v.minutes;
    }
    per.into_iter()
        .map(|((name, id), (visits, minutes))| ProviderVisits {
            provider: id.to_owned(),
            provider_name: name.to_owned(),
            visits,
            minutes,
        })
        .collect()
}

impl VisitsReport {
    /// Keeps only the visits of the subscribers `keep` holds (a municipality's own), the
    /// providers' figures counted again from them.
    pub fn retain_subscribers(&mut self, keep: impl Fn(&str) -> bool) {
        self.visits.retain(|v| keep(&v.subscriber));
        self.providers = per_provider(&self.visits);
    }
}

/// The visits of `month` (`YYYY-MM`, counted in `tz`), of one provider or all, as the store
/// has them.
pub fn visits_report(
    store: &Store,
    month: &str,
    tz: &TimeZone,
    provider: Option<&str>,
) -> Result<VisitsReport, ReportError> {
    let (from, to) = month_bounds(month, tz)?;
    let earliest = from
        .checked_sub(jiff::SignedDuration::from_hours(LONGEST_VISIT_DAYS * 24))
        .unwrap_or(from);
    let dispatches = store.dispatches_offered_between(earliest, to)?;
    let dir = store.directory()?;
    let mut calls: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let mut err = None;
    let (providers, visits) = visits_of(
        &dispatches,
        &dir,
        |call| {
            if let Some(s) = calls.get(&call) {
                return s.clone();
            }
            let who = (|| {
                let Some(id) = store.call(call)?.and_then(|c| c.subscriber) else {
                    return Ok((String::new(), String::new()));
                };
                let name = store.subscriber(&id)?.map(|s| s.name).unwrap_or_default();
                Ok((id, name))
            })();
            let who = who.unwrap_or_else(|e: crate::store::StoreError| {
                err.get_or_insert(e);
                (String::new(), String::new())
            });
            calls.insert(call, who.clone());
            who
        },
        from,
        to,
        provider,
    );
    if let Some(e) = err {
        return Err(e.into());
    }
    Ok(VisitsReport {
        month: month.to_owned(),
        time_zone: tz.iana_name().unwrap_or_default().to_owned(),
        provider: provider.map(str::to_owned),
        providers,
        visits,
    })
}

/// The CSV header of [`to_csv`].
pub const CSV_HEADER: &str = "month,provider,provider_name,patrol,patrol_name,dispatch,call,\
subscriber,subscriber_name,area,arrived_at,departed_at,minutes,arrival_method,outcome,note";

/// The visits as CSV: [`CSV_HEADER`], then one line per visit, times in the report's zone
/// (`YYYY-MM-DD HH:MM:SS`).
pub fn to_csv(r: &VisitsReport, tz: &TimeZone) -> String {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let local = |t: Timestamp| {
        t.to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    for v in &r.visits {
        let record = [
            r.month.clone(),
            v.provider.clone(),
            v.provider_name.clone(),
            v.patrol.clone(),
            v.patrol_name.clone(),
            v.dispatch.to_string(),
            v.call.to_string(),
            v.subscriber.clone(),
            v.subscriber_name.clone(),
            v.area.clone(),
            local(v.arrived_at),
            local(v.departed_at),
            v.minutes.to_string(),
            v.arrival_method.clone(),
            v.outcome.clone(),
            v.note.clone(),
        ];
        // Writing to a Vec cannot fail, and every record has the same number of fields.
        let _ = w.write_record(&record);
    }
    let _ = w.flush();
    let body = w.into_inner().unwrap_or_default();
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    out.push_str(&String::from_utf8_lossy(&body));
    out
}

/// The visits as a table for a terminal: per provider the visits and minutes, then each
/// visit (local times).
pub fn to_text(r: &VisitsReport, tz: &TimeZone) -> String {
    use std::fmt::Write;
    let local = |t: Timestamp| {
        t.to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string()
    };
    let mut out = format!(
        "Alarm visits {} ({}){}\n\n",
        r.month,
        r.time_zone,
        r.provider
            .as_deref()
            .map(|p| format!(", provider {p}"))
            .unwrap_or_default()
    );
    if r.visits.is_empty() {
        out.push_str("No visits.\n");
        return out;
    }
    let _ = writeln!(out, "{:<30} {:>7} {:>8}", "Provider", "Visits", "Minutes");
    for p in &r.providers {
        let _ = writeln!(
            out,
            "{:<30} {:>7} {:>8}",
            p.provider_name, p.visits, p.minutes
        );
    }
    out.push('\n');
    for v in &r.visits {
        let _ = writeln!(
            out,
            "{}  {:>3} min  {:<20} {:<24} #{} {} {}",
            local(v.arrived_at),
            v.minutes,
            v.patrol_name,
            v.subscriber_name,
            v.call,
            v.arrival_method,
            v.outcome
        );
    }
    out
}

#[cfg(test)]
mod tests;
