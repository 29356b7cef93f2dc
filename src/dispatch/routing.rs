//! Which patrol to send: the routing rules of the [`Directory`], the patrols' shifts and the
//! areas they cover. Pure: `now` and the time zone are parameters; nothing here reads a clock.
//!
//! # The order of candidates
//!
//! For a subscriber's provider and area, the rules that match are taken most specific first:
//! provider + area, then provider + `*`, then `*` + area, then `*` + `*` (at most one rule
//! each: the import refuses a repeated (provider, area)). Each rule's patrols come in the
//! rule's order, a patrol already listed by an earlier rule is not listed again, and only
//! patrols that cover the area are kept (a patrol's areas name areas; `*` is not allowed
//! there, so a `*` + `*` rule still offers only patrols of the subscriber's area). Then the
//! patrols on shift at `now` come first, in that order, and the ones off shift at the end:
//! the operator may still pick one of them.
//!
//! The provider and area may be ids or names ([`Directory::provider_for`],
//! [`Directory::area_for`]), so a subscriber's `care_provider` and `area` can be passed as
//! they are. A provider not in the directory matches only the `*` rules. For an area not in
//! the directory no patrol is known to cover it, so coverage is not checked: the patrols of
//! the provider + `*` and `*` + `*` rules are offered (better a suggestion the operator can
//! judge than none).
//!
//! # After a failed dispatch
//!
//! When a patrol does not confirm receipt in time, or declines, [`fallback`] picks the next
//! patrol: the first of the route on shift that has not been tried for this Call, after the
//! failed one in rule order, then from the start of the route. A patrol already tried is
//! never offered again by itself (see [`fallback`] for why); when nobody is left the caller
//! tells the operator who was passed over and why ([`Fallback::passed_over`]).
//!
//! # Shifts
//!
//! A shift is wall-clock local time in `tz` (Europe/Stockholm by default): `start` is
//! included, `end` excluded, and an end before the start crosses midnight (a night shift
//! 21:30-07:00 covers 23:00 and 06:59:59 but not 07:00). On the days daylight saving time
//! changes a night shift is an hour shorter or longer in real time, as the roster is; a local
//! time that does not exist that day (02:30 on the last Sunday of March) is simply never
//! reached.

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::model::{Patrol, Shift};
use crate::registers::directory::{ANY, Directory};

/// A patrol offered for a Call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Candidate {
    /// The patrol id.
    pub patrol: String,
    /// Whether one of its shifts covers `now`.
    pub on_shift: bool,
    /// The index (in [`Directory::routes`]) of the rule that offered it.
    pub rule: usize,
}

/// Whether a shift covers the local time `t`.
fn covers(s: &Shift, t: Time) -> bool {
    if s.start < s.end {
        s.start <= t && t < s.end
    } else if s.end < s.start {
        // Crosses midnight.
        t >= s.start || t < s.end
    } else {
        // start == end: refused at import; covers nothing rather than everything.
        false
    }
}

/// The patrol's shift that covers `now` (local time in `tz`), if any; the first in the
/// patrol's order when shifts overlap.
pub fn on_shift<'a>(p: &'a Patrol, now: Timestamp, tz: &TimeZone) -> Option<&'a Shift> {
    let t = tz.to_datetime(now).time();
    p.shifts.iter().find(|s| covers(s, t))
}

/// The candidates in rule order (on shift or not), without the on-shift-first step.
fn in_rule_order(
    dir: &Directory,
    provider: &str,
    area: &str,
    now: Timestamp,
    tz: &TimeZone,
) -> Vec<Candidate> {
    let provider = dir.provider_for(provider).map(|p| p.id.as_str());
    let area = dir.area_for(area).map(|a| a.id.as_str());
    // Most specific first; a key of `None` cannot match (unknown provider or area).
    let keys = [
        (provider, area),
        (provider, Some(ANY)),
        (Some(ANY), area),
        (Some(ANY), Some(ANY)),
    ];
    let mut out: Vec<Candidate> = Vec::new();
    for (p, a) in keys {
        let (Some(p), Some(a)) = (p, a) else { continue };
        let Some((rule, r)) = dir
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.provider == p && r.area == a)
        else {
            continue;
        };
        for id in &r.patrols {
            if out.iter().any(|c| &c.patrol == id) {
                continue;
            }
            let Some(patrol) = dir.patrol(id) else {
                continue;
            };
            if area.is_some_and(|a| !patrol.areas.iter().any(|x| x == a)) {
                continue;
            }
            out.push(Candidate {
                patrol: id.clone(),
                on_shift: on_shift(patrol, now, tz).is_some(),
                rule,
            });
        }
    }
    out
}

/// Every patrol that may be sent to a subscriber of `provider` in `area` at `now`: those on
/// shift first, then those off shift (see the module doc for the order). Empty when no rule
/// offers a patrol.
pub fn route(
    dir: &Directory,
    provider: &str,
    area: &str,
    now: Timestamp,
    tz: &TimeZone,
) -> Vec<Candidate> {
    let (mut on, off): (Vec<_>, Vec<_>) = in_rule_order(dir, provider, area, now, tz)
        .into_iter()
        .partition(|c| c.on_shift);
    on.extend(off);
    on
}

/// The patrol to suggest: the first candidate on shift, if any.
pub fn suggest(
    dir: &Directory,
    provider: &str,
    area: &str,
    now: Timestamp,
    tz: &TimeZone,
) -> Option<Candidate> {
    in_rule_order(dir, provider, area, now, tz)
        .into_iter()
        .find(|c| c.on_shift)
}

/// Why a patrol of the route was passed over by [`fallback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassedOver {
    /// It was tried for this Call already (its dispatch ended without a visit).
    AlreadyTried,
    /// None of its shifts covers now.
    OffShift,
}

/// Where a Call goes when its dispatch ended without a visit (the patrol did not confirm
/// receipt in time, or declined).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The patrol to offer it to, if any is left.
    pub next: Option<Candidate>,
    /// The patrols of the route passed over before `next` (all of them, but the one that
    /// failed, when none is left), in the order they were considered, and why.
    pub passed_over: Vec<(String, PassedOver)>,
    /// How many patrols the route has (0: no rule routes this provider and area).
    pub routed: usize,
}

/// The fallback after `after` failed a Call: the first patrol of the route on shift that has
/// not been tried for the Call yet (`tried`), looking first at those after `after` in rule
/// order, then from the start of the route up to it (when `after` is not in the route at
/// all, the operator picked it by hand: from the start). `after` itself is never offered
/// again.
///
/// A patrol that was tried already is not offered again by itself: it did not confirm in
/// time or it declined, so offering it once more would spend another receipt time in
/// silence. The operator is told instead (and can still pick it, after phoning it). A patrol
/// earlier in the route that was never tried (the operator had picked a later one) is
/// offered: it is the route's own choice and nobody has asked it yet.
pub fn fallback(
    dir: &Directory,
    provider: &str,
    area: &str,
    after: &str,
    tried: &[String],
    now: Timestamp,
    tz: &TimeZone,
) -> Fallback {
    let all = in_rule_order(dir, provider, area, now, tz);
    let routed = all.len();
    let from = all
        .iter()
        .position(|c| c.patrol == after)
        .map_or(0, |i| i + 1);
    let mut passed_over = Vec::new();
    let order = all[from..].iter().chain(&all[..from]);
    for c in order.filter(|c| c.patrol != after) {
        if tried.contains(&c.patrol) {
            passed_over.push((c.patrol.clone(), PassedOver::AlreadyTried));
        } else if !c.on_shift {
            passed_over.push((c.patrol.clone(), PassedOver::OffShift));
        } else {
            return Fallback {
                next: Some(c.clone()),
                passed_over,
                routed,
            };
        }
    }
    Fallback {
        next: None,
        passed_over,
        routed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::directory::parse_all;

    fn stockholm() -> TimeZone {
        TimeZone::get("Europe/Stockholm")
            .or_else(|_| TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3"))
            .unwrap()
    }

    /// The instant of a local date and time in Stockholm (the earlier one if it repeats).
    fn at(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> Timestamp {
        jiff::civil::date(y, mo, d)
            .at(h, mi, s, 0)
            .to_zoned(stockholm())
            .unwrap()
            .timestamp()
    }

    fn patrol(id: &str, shifts: &str) -> Patrol {
        Patrol {
            id: id.into(),
            name: id.into(),
            provider: "p".into(),
            areas: vec!["a".into()],
            shifts: shifts
                .split(';')
                .map(|s| crate::registers::directory::parse_shift(s).unwrap())
                .collect(),
            phone: String::new(),
        }
    }

    fn name_at(p: &Patrol, now: Timestamp) -> Option<&str> {
        on_shift(p, now, &stockholm()).map(|s| s.name.as_str())
    }

    #[test]
    fn night_shift_crosses_midnight_with_exact_boundaries() {
        let p = patrol("n", "night 21:30-07:00");
        assert_eq!(name_at(&p, at(2026, 1, 15, 23, 0, 0)), Some("night"));
        assert_eq!(name_at(&p, at(2026, 1, 15, 0, 0, 0)), Some("night"));
        assert_eq!(name_at(&p, at(2026, 1, 15, 6, 59, 0)), Some("night"));
        assert_eq!(name_at(&p, at(2026, 1, 15, 6, 59, 59)), Some("night"));
        assert_eq!(name_at(&p, at(2026, 1, 15, 7, 0, 0)), None, "end excluded");
        assert_eq!(name_at(&p, at(2026, 1, 15, 12, 0, 0)), None);
        assert_eq!(name_at(&p, at(2026, 1, 15, 21, 29, 59)), None);
        assert_eq!(
            name_at(&p, at(2026, 1, 15, 21, 30, 0)),
            Some("night"),
            "start included"
        );
        // Local time, not UTC: 07:30 local in summer is 05:30 UTC.
        assert_eq!(name_at(&p, at(2026, 7, 15, 7, 30, 0)), None);
        assert_eq!(name_at(&p, at(2026, 7, 15, 6, 30, 0)), Some("night"));
    }

    #[test]
    fn day_and_evening_boundaries_and_overlap() {
        let p = patrol("d", "day 07:00-15:30;evening 15:00-22:00;late 22:00-00:00");
        assert_eq!(name_at(&p, at(2026, 1, 15, 6, 59, 59)), None);
        assert_eq!(name_at(&p, at(2026, 1, 15, 7, 0, 0)), Some("day"));
        assert_eq!(
            name_at(&p, at(2026, 1, 15, 15, 10, 0)),
            Some("day"),
            "first listed"
        );
        assert_eq!(name_at(&p, at(2026, 1, 15, 15, 30, 0)), Some("evening"));
        assert_eq!(name_at(&p, at(2026, 1, 15, 22, 0, 0)), Some("late"));
        assert_eq!(name_at(&p, at(2026, 1, 15, 23, 59, 59)), Some("late"));
        assert_eq!(
            name_at(&p, at(2026, 1, 16, 0, 0, 0)),
            None,
            "ends at midnight"
        );
        // A shift with start == end (refused at import) covers nothing.
        let mut odd = patrol("o", "x 07:00-08:00");
        odd.shifts[0].end = odd.shifts[0].start;
        assert_eq!(name_at(&odd, at(2026, 1, 15, 7, 0, 0)), None);
        assert_eq!(
            name_at(&patrol_without_shifts(), at(2026, 1, 15, 7, 0, 0)),
            None
        );
    }

    fn patrol_without_shifts() -> Patrol {
        Patrol {
            shifts: Vec::new(),
            ..patrol("none", "x 07:00-08:00")
        }
    }

    #[test]
    fn dst_change_days_in_stockholm() {
        let tz = stockholm();
        let night = patrol("n", "night 21:30-07:00");
        let gap = patrol("g", "gap 02:00-02:30");
        // 2026-03-29: 02:00 CET becomes 03:00 CEST. 2026-10-25: 03:00 CEST becomes 02:00 CET.
        for (day, hours) in [((2026, 3, 29), 23), ((2026, 10, 25), 25)] {
            let start = jiff::civil::date(day.0, day.1, day.2)
                .to_zoned(tz.clone())
                .unwrap()
                .timestamp();
            let mut on_night = 0;
            let mut on_gap = 0;
            // Every minute of the local day, in real time.
            for m in 0..hours * 60 {
                let now = start + jiff::SignedDuration::from_mins(m);
                on_night += i64::from(on_shift(&night, now, &tz).is_some());
                on_gap += i64::from(on_shift(&gap, now, &tz).is_some());
            }
            // From 00:00 to 07:00 local, then 21:30 to 24:00.
            let expected_night = (7 * 60 + 150) + (hours - 24) * 60;
            assert_eq!(on_night, expected_night, "{day:?}");
            // 02:00-02:30 does not exist in March and happens twice in October.
            assert_eq!(on_gap, if hours == 23 { 0 } else { 60 }, "{day:?}");
        }
        // Exactly at the change: the last second of CET and the first of CEST.
        let change = at(2026, 3, 29, 3, 0, 0);
        assert_eq!(name_at(&night, change), Some("night"));
        assert_eq!(
            name_at(&night, change - jiff::SignedDuration::from_secs(1)),
            Some("night")
        );
        assert_eq!(name_at(&night, at(2026, 3, 29, 7, 0, 0)), None);
        assert_eq!(name_at(&night, at(2026, 10, 25, 6, 59, 59)), Some("night"));
        assert_eq!(name_at(&night, at(2026, 10, 25, 7, 0, 0)), None);
    }

    const PROVIDERS: &str =
        "id,name,phone\nhn,Hemtjänst Norr,\nhs,Hemtjänst Söder,\nks,Kommunen,\n";
    const AREAS: &str = "id,name,arrival_limit_mins\nnorr,Norr,\nsoder,Söder,\nfjall,Fjällbyn,45\n";
    const PATROLS: &str = "id,name,provider,areas,shifts,phone\n\
        n-dag,Norr dag,hn,norr,day 07:00-15:30,\n\
        n-kvall,Norr kväll,hn,norr,evening 15:00-22:00,\n\
        n-extra,Norr extra,hn,norr;soder,day 07:00-15:30,\n\
        s-dag,Söder dag,hs,soder,day 07:00-15:30,\n\
        natt-1,Natt 1,ks,norr;soder,night 21:30-07:00,\n\
        natt-2,Natt 2,ks,norr;soder;fjall,night 21:30-07:00,\n\
        fjall,Fjällpatrullen,ks,fjall,day 07:00-22:00,\n";
    const ROUTES: &str = "provider,area,patrols\n\
        *,*,natt-2;natt-1\n\
        hn,norr,n-dag;n-kvall\n\
        *,norr,natt-1;natt-2\n\
        hn,*,n-extra;n-dag\n\
        *,fjall,fjall\n";

    fn dir() -> Directory {
        parse_all(
            PROVIDERS.as_bytes(),
            AREAS.as_bytes(),
            PATROLS.as_bytes(),
            ROUTES.as_bytes(),
        )
        .unwrap()
    }

    fn ids(c: &[Candidate]) -> Vec<(&str, bool)> {
        c.iter().map(|c| (c.patrol.as_str(), c.on_shift)).collect()
    }

    #[test]
    fn specific_rules_first_without_duplicates_on_shift_first() {
        let d = dir();
        let tz = stockholm();
        let noon = at(2026, 1, 15, 12, 0, 0);
        let got = route(&d, "hn", "norr", noon, &tz);
        // hn+norr: n-dag, n-kvall; hn+*: n-extra (n-dag already); *+norr: natt-1, natt-2;
        // *+*: nothing new. On shift first.
        assert_eq!(
            ids(&got),
            [
                ("n-dag", true),
                ("n-extra", true),
                ("n-kvall", false),
                ("natt-1", false),
                ("natt-2", false)
            ]
        );
        let rule_of = |p: &str| got.iter().find(|c| c.patrol == p).unwrap().rule;
        assert_eq!(rule_of("n-dag"), 1);
        assert_eq!(rule_of("n-extra"), 3);
        assert_eq!(rule_of("natt-2"), 2, "the first rule that offered it");
        assert_eq!(
            suggest(&d, "hn", "norr", noon, &tz).unwrap().patrol,
            "n-dag"
        );

        // By name, as subscribers carry them.
        assert_eq!(route(&d, "Hemtjänst Norr", "Norr", noon, &tz), got);

        let evening = at(2026, 1, 15, 19, 0, 0);
        assert_eq!(
            suggest(&d, "hn", "norr", evening, &tz).unwrap().patrol,
            "n-kvall"
        );
        let night = at(2026, 1, 15, 3, 0, 0);
        let got = route(&d, "hn", "norr", night, &tz);
        assert_eq!(
            ids(&got)[..2],
            [("natt-1", true), ("natt-2", true)],
            "*+norr before *+*"
        );
        assert!(got[2..].iter().all(|c| !c.on_shift));
    }

    #[test]
    fn patrols_that_do_not_cover_the_area_are_left_out() {
        let d = dir();
        let tz = stockholm();
        let noon = at(2026, 1, 15, 12, 0, 0);
        // hn in soder: hn+* gives n-extra (covers soder) and n-dag (does not); *+* gives
        // natt-2, natt-1 (both cover soder).
        let got = route(&d, "hn", "soder", noon, &tz);
        assert_eq!(
            ids(&got),
            [("n-extra", true), ("natt-2", false), ("natt-1", false)]
        );
        // Fjällbyn: *+fjall gives fjall; *+* gives natt-2 only (natt-1 does not cover it).
        let got = route(&d, "hs", "fjall", at(2026, 1, 15, 23, 0, 0), &tz);
        assert_eq!(ids(&got), [("natt-2", true), ("fjall", false)]);
    }

    #[test]
    fn unknown_provider_or_area_falls_back_to_star_rules() {
        let d = dir();
        let tz = stockholm();
        let night = at(2026, 1, 15, 3, 0, 0);
        // Unknown provider, known area: *+norr, then *+*.
        let got = route(&d, "Okänd utförare", "Norr", night, &tz);
        assert_eq!(ids(&got), [("natt-1", true), ("natt-2", true)]);
        assert_eq!(got[0].rule, 2);
        // Known provider, unknown area: hn+*, then *+*, coverage not checked.
        let got = route(&d, "hn", "Månen", night, &tz);
        assert_eq!(
            ids(&got),
            [
                ("natt-2", true),
                ("natt-1", true),
                ("n-extra", false),
                ("n-dag", false)
            ]
        );
        // Both unknown: *+* only.
        let got = route(&d, "", "", night, &tz);
        assert_eq!(ids(&got), [("natt-2", true), ("natt-1", true)]);
    }

    #[test]
    fn no_candidates() {
        let tz = stockholm();
        let noon = at(2026, 1, 15, 12, 0, 0);
        assert!(route(&Directory::default(), "hn", "norr", noon, &tz).is_empty());
        assert_eq!(
            suggest(&Directory::default(), "hn", "norr", noon, &tz),
            None
        );
        assert_eq!(
            fallback(&Directory::default(), "hn", "norr", "x", &[], noon, &tz),
            Fallback {
                next: None,
                passed_over: vec![],
                routed: 0
            }
        );
        // Rules exist but no patrol covers the area, or none is on shift.
        let mut d = dir();
        d.routes.retain(|r| r.area != "*");
        assert!(route(&d, "hs", "soder", noon, &tz).is_empty());
        let got = route(&d, "hs", "fjall", at(2026, 1, 15, 3, 0, 0), &tz);
        assert_eq!(ids(&got), [("fjall", false)], "off shift, still listed");
        assert_eq!(
            suggest(&d, "hs", "fjall", at(2026, 1, 15, 3, 0, 0), &tz),
            None
        );
    }

    #[test]
    fn fallback_goes_down_the_route_on_shift_then_back_to_the_untried() {
        let d = dir();
        let tz = stockholm();
        let noon = at(2026, 1, 15, 12, 0, 0);
        // Rule order: n-dag(on), n-kvall(off), n-extra(on), natt-1(off), natt-2(off).
        let next = |after: &str, tried: &[&str]| {
            let tried: Vec<String> = tried.iter().map(|s| s.to_string()).collect();
            fallback(&d, "hn", "norr", after, &tried, noon, &tz)
        };
        let patrol = |f: Fallback| f.next.map(|c| c.patrol);
        assert_eq!(
            patrol(next("n-dag", &["n-dag"])).as_deref(),
            Some("n-extra")
        );
        assert_eq!(
            next("n-dag", &["n-dag"]).passed_over,
            [("n-kvall".to_string(), PassedOver::OffShift)]
        );
        assert_eq!(
            patrol(next("n-kvall", &["n-kvall"])).as_deref(),
            Some("n-extra"),
            "after an off-shift pick"
        );
        assert_eq!(
            patrol(next("fjall", &["fjall"])).as_deref(),
            Some("n-dag"),
            "picked outside the route: from the start"
        );
        // The operator picked n-extra by hand: the route's first, on shift and never asked,
        // comes next (back to the start of the route).
        assert_eq!(
            patrol(next("n-extra", &["n-extra"])).as_deref(),
            Some("n-dag")
        );
        // n-dag was tried already (no receipt): nobody is left, and the operator is told
        // exactly who was passed over and why.
        let f = next("n-extra", &["n-dag", "n-extra"]);
        assert_eq!(f.next, None);
        assert_eq!(f.routed, 5);
        assert_eq!(
            f.passed_over,
            [
                ("natt-1".to_string(), PassedOver::OffShift),
                ("natt-2".to_string(), PassedOver::OffShift),
                ("n-dag".to_string(), PassedOver::AlreadyTried),
                ("n-kvall".to_string(), PassedOver::OffShift),
            ]
        );
        let night = at(2026, 1, 15, 3, 0, 0);
        let next = |after: &str, tried: &[&str]| {
            let tried: Vec<String> = tried.iter().map(|s| s.to_string()).collect();
            fallback(&d, "hn", "norr", after, &tried, night, &tz)
                .next
                .map(|c| c.patrol)
        };
        assert_eq!(next("natt-1", &["natt-1"]).as_deref(), Some("natt-2"));
        // natt-2 picked first by hand: natt-1, earlier in the route and untried, gets it.
        assert_eq!(next("natt-2", &["natt-2"]).as_deref(), Some("natt-1"));
        assert_eq!(next("natt-2", &["natt-1", "natt-2"]), None);
        // The chain ends: every patrol on shift is tried once, none twice.
        let mut seen = vec![suggest(&d, "hn", "norr", night, &tz).unwrap().patrol];
        while let Some(p) = next(
            seen.last().unwrap(),
            &seen.iter().map(String::as_str).collect::<Vec<_>>(),
        ) {
            assert!(!seen.contains(&p));
            seen.push(p);
        }
        assert_eq!(seen, ["natt-1", "natt-2"]);
    }
}
