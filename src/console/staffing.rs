//! The staffing floor and overload: who is on duty, and whether Calls wait too long.
//!
//! EN 50518 and Norway's Helsedirektoratet ask that an alarm centre never has fewer than two
//! operators at work ([`StaffingOptions::min_operators`]). vakt cannot see the room, so it
//! counts what it knows of each logged-in user's console:
//!
//! - **A console is there** while the page beats: it sends a heartbeat over the live feed
//!   every 30 s (`{"type":"presence","idle_secs":N}`), and opening or closing the feed counts
//!   as one. A console whose last beat is older than
//!   [`StaffingOptions::console_timeout_secs`] is gone (closed, the PC asleep or cut off); a
//!   reload or a short network break within that time changes nothing.
//! - **Someone uses it**: the heartbeat says how long ago the page last had a key, mouse or
//!   touch input; a console without input for [`StaffingOptions::idle_away_secs`] is a session
//!   left open on a PC nobody uses, unless its user owns an open Call (a Call waiting for the
//!   patrol's arrival is work without input).
//! - **Operators** with such a console are on duty. **Supervisors and administrators** are on
//!   duty only while they work Calls: they own one, or took one within `idle_away_secs`.
//!
//! Overload: a Call nobody has yet taken that has waited longer than
//! [`StaffingOptions::queue_wait_warn_secs`] (a Call returned to the queue has been answered
//! once and is not counted again).
//!
//! [`assess`] is the rule, pure: `now` is a parameter. [`Presence`] keeps what the consoles
//! said, with the times their handlers give it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::model::Role;

/// `[staffing]`: the floor of operators on duty and the longest wait before a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaffingOptions {
    /// Fewer operators on duty than this is a breach of the floor (EN 50518 and
    /// Helsedirektoratet: two). 0 turns the floor off.
    pub min_operators: u32,
    /// A Call nobody has taken for longer than this (seconds) is an overload: the answer
    /// target is 97.5 % within 60 s, so a Call past 60 s is already one of the 2.5 %.
    pub queue_wait_warn_secs: u64,
    /// A console without a heartbeat for this long (seconds) is gone. The page beats every
    /// 30 s: 90 s is three beats missed.
    pub console_timeout_secs: u64,
    /// A console without key, mouse or touch input for this long (seconds) counts as away
    /// (its user owns no Call): a PC nobody uses.
    pub idle_away_secs: u64,
}

impl Default for StaffingOptions {
    fn default() -> Self {
        StaffingOptions {
            min_operators: 2,
            queue_wait_warn_secs: 60,
            console_timeout_secs: 90,
            idle_away_secs: 1200,
        }
    }
}

impl StaffingOptions {
    /// What is wrong (empty if nothing).
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.min_operators > 1000 {
            errs.push("staffing.min_operators must be 0..=1000".into());
        }
        if !(1..=86_400).contains(&self.queue_wait_warn_secs) {
            errs.push("staffing.queue_wait_warn_secs must be 1..=86400".into());
        }
        if !(1..=3600).contains(&self.console_timeout_secs) {
            errs.push("staffing.console_timeout_secs must be 1..=3600".into());
        }
        if !(1..=86_400).contains(&self.idle_away_secs) {
            errs.push("staffing.idle_away_secs must be 1..=86400".into());
        }
        errs
    }
}

/// What the consoles of one user told.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Live feeds open now.
    pub consoles: u32,
    /// The last heartbeat of any of them (a feed's opening and closing count).
    pub beat_at: Option<Timestamp>,
    /// The last key, mouse or touch input any of them reported.
    pub input_at: Option<Timestamp>,
    /// When they last took a Call.
    pub took_call_at: Option<Timestamp>,
}

/// A logged-in user, as [`assess`] sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// User name.
    pub user: String,
    /// Role.
    pub role: Role,
    /// Their consoles.
    pub seen: Seen,
    /// Open Calls they own.
    pub owns: usize,
}

/// Why a logged-in user is not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Away {
    /// No console has beaten within `console_timeout_secs`.
    NoConsole,
    /// Their console has had no input within `idle_away_secs`.
    Idle,
    /// A supervisor or administrator not working Calls.
    NotTakingCalls,
}

fn within(at: Option<Timestamp>, now: Timestamp, secs: u64) -> bool {
    at.is_some_and(|a| {
        let ago = now.as_second().saturating_sub(a.as_second());
        u64::try_from(ago).unwrap_or(0) <= secs
    })
}

/// Whether `p` is on duty at `now` (`None`), or why not.
pub fn away(p: &Person, now: Timestamp, opts: &StaffingOptions) -> Option<Away> {
    if !within(p.seen.beat_at, now, opts.console_timeout_secs) {
        return Some(Away::NoConsole);
    }
    if p.owns == 0 && !within(p.seen.input_at, now, opts.idle_away_secs) {
        // With every console closed (the last beat was the closing, still within the
        // timeout) the truer reason is that none is open.
        return Some(if p.seen.consoles == 0 {
            Away::NoConsole
        } else {
            Away::Idle
        });
    }
    if p.role > Role::Operator
        && p.owns == 0
        && !within(p.seen.took_call_at, now, opts.idle_away_secs)
    {
        return Some(Away::NotTakingCalls);
    }
    None
}

/// The staffing figures every console shows (and the metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Staffing {
    /// Operators on duty now (supervisors working Calls included).
    pub on_duty: usize,
    /// The floor (`[staffing] min_operators`; 0: no floor).
    pub min_operators: u32,
    /// Fewer on duty than the floor.
    pub below_floor: bool,
    /// Calls waiting that nobody has taken yet.
    pub waiting: usize,
    /// Of them, waiting longer than `queue_wait_warn_secs`.
    pub waiting_over: usize,
    /// How long the oldest of them has waited (seconds).
    #[schema(value_type = Option<u64>)]
    pub oldest_wait_secs: Option<u64>,
    /// The limit (`[staffing] queue_wait_warn_secs`).
    pub queue_wait_warn_secs: u64,
}

impl Staffing {
    /// Calls wait longer than the limit.
    pub fn overloaded(&self) -> bool {
        self.waiting_over > 0
    }
}

/// The figures, and who is on duty and who is logged in but away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assessment {
    /// The figures.
    pub figures: Staffing,
    /// On duty, by name.
    pub on_duty: Vec<String>,
    /// Logged in and not counted, by name, with why.
    pub away: Vec<(String, Away)>,
}

/// The rule: who of `people` (the users logged in) is on duty at `now`, and how the Calls
/// nobody has taken (`waiting`: when each was opened) stand against the limit.
pub fn assess(
    people: &[Person],
    waiting: &[Timestamp],
    now: Timestamp,
    opts: &StaffingOptions,
) -> Assessment {
    let mut on_duty = Vec::new();
    let mut off = Vec::new();
    // A municipality's or provider's staff take no Calls: never counted, never called in.
    for p in people.iter().filter(|p| !p.role.is_tenant()) {
        match away(p, now, opts) {
            None => on_duty.push(p.user.clone()),
            Some(why) => off.push((p.user.clone(), why)),
        }
    }
    on_duty.sort();
    off.sort_by(|a, b| a.0.cmp(&b.0));
    let waits: Vec<u64> = waiting
        .iter()
        .map(|&at| u64::try_from(now.as_second().saturating_sub(at.as_second())).unwrap_or(0))
        .collect();
    let figures = Staffing {
        on_duty: on_duty.len(),
        min_operators: opts.min_operators,
        below_floor: on_duty.len() < opts.min_operators as usize,
        waiting: waits.len(),
        waiting_over: waits
            .iter()
            .filter(|&&w| w > opts.queue_wait_warn_secs)
            .count(),
        oldest_wait_secs: waits.iter().copied().max(),
        queue_wait_warn_secs: opts.queue_wait_warn_secs,
    };
    Assessment {
        figures,
        on_duty,
        away: off,
    }
}

/// What the consoles said, by user (in memory: after a restart the consoles reconnect and
/// beat within seconds). Users no longer logged in are forgotten ([`Presence::keep_only`]).
#[derive(Debug, Default)]
pub struct Presence {
    seen: Mutex<HashMap<String, Seen>>,
}

impl Presence {
    fn with(&self, user: &str, f: impl FnOnce(&mut Seen)) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        f(seen.entry(user.to_owned()).or_default());
    }

    /// A console of `user` opened its live feed at `at` (a login or a reload: someone is
    /// there).
    pub fn opened(&self, user: &str, at: Timestamp) {
        self.with(user, |s| {
            s.consoles = s.consoles.saturating_add(1);
            s.beat_at = s.beat_at.max(Some(at));
            s.input_at = s.input_at.max(Some(at));
        });
    }

    /// A console of `user` closed its live feed at `at`.
    pub fn closed(&self, user: &str, at: Timestamp) {
        self.with(user, |s| {
            s.consoles = s.consoles.saturating_sub(1);
            s.beat_at = s.beat_at.max(Some(at));
        });
    }

    /// A heartbeat at `at` from a console whose last input was `idle_secs` ago.
    pub fn beat(&self, user: &str, at: Timestamp, idle_secs: u64) {
        let input = i64::try_from(idle_secs)
            .ok()
            .and_then(|i| at.checked_sub(jiff::SignedDuration::from_secs(i)).ok());
        self.with(user, |s| {
            s.beat_at = s.beat_at.max(Some(at));
            s.input_at = s.input_at.max(input);
        });
    }

    /// `user` took a Call at `at` (an action: input too).
    pub fn took_call(&self, user: &str, at: Timestamp) {
        self.with(user, |s| {
            s.took_call_at = s.took_call_at.max(Some(at));
            s.input_at = s.input_at.max(Some(at));
        });
    }

    /// What is known of `user`.
    pub fn of(&self, user: &str) -> Seen {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(user).copied().unwrap_or_default()
    }

    /// Forgets every user `keep` refuses, but one with a console open.
    pub fn keep_only(&self, keep: impl Fn(&str) -> bool) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|u, s| s.consoles > 0 || keep(u));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn person(user: &str, role: Role, presence: &Presence, owns: usize) -> Person {
        Person {
            user: user.into(),
            role,
            seen: presence.of(user),
            owns,
        }
    }

    #[test]
    fn an_operator_is_on_duty_while_the_console_beats_and_is_used() {
        let o = StaffingOptions::default();
        let p = Presence::default();
        p.opened("ola", at(0));
        let ola = |owns| person("ola", Role::Operator, &p, owns);
        assert_eq!(away(&ola(0), at(0), &o), None);
        // No beat after the opening: gone 90 s later, not before.
        assert_eq!(away(&ola(0), at(90), &o), None);
        assert_eq!(away(&ola(0), at(91), &o), Some(Away::NoConsole));
        // Beating, but nobody touches it: away after 20 minutes of no input.
        for t in (30..=1200).step_by(30) {
            p.beat("ola", at(t), u64::try_from(t).unwrap());
        }
        assert_eq!(away(&ola(0), at(1200), &o), None);
        p.beat("ola", at(1230), 1230);
        assert_eq!(away(&ola(0), at(1230), &o), Some(Away::Idle));
        // ... unless a Call of theirs is open (waiting for the patrol is work).
        assert_eq!(away(&ola(1), at(1230), &o), None);
        // Input again: back on duty.
        p.beat("ola", at(1260), 5);
        assert_eq!(away(&ola(0), at(1260), &o), None);
        // A late beat never moves the times back.
        p.beat("ola", at(1000), 900);
        assert_eq!(p.of("ola").beat_at, Some(at(1260)));
        assert_eq!(p.of("ola").input_at, Some(at(1255)));
    }

    #[test]
    fn a_closed_console_is_why_even_when_the_idle_time_runs_out_first() {
        let o = StaffingOptions {
            console_timeout_secs: 3,
            idle_away_secs: 3,
            ..StaffingOptions::default()
        };
        let p = Presence::default();
        p.opened("asa", at(0));
        p.beat("asa", at(2), 2);
        p.closed("asa", at(2));
        let asa = || person("asa", Role::Operator, &p, 0);
        // Her last input (at 0) is more than 3 s old before the closing's beat (at 2) is.
        assert_eq!(away(&asa(), at(4), &o), Some(Away::NoConsole));
        // With the console still open, the same is idleness.
        p.opened("bo", at(0));
        p.beat("bo", at(2), 2);
        let bo = person("bo", Role::Operator, &p, 0);
        assert_eq!(away(&bo, at(4), &o), Some(Away::Idle));
    }

    #[test]
    fn a_reload_within_the_timeout_changes_nothing_and_closing_starts_it() {
        let o = StaffingOptions::default();
        let p = Presence::default();
        p.opened("asa", at(0));
        p.closed("asa", at(100));
        assert_eq!(p.of("asa").consoles, 0);
        let asa = || person("asa", Role::Operator, &p, 0);
        assert_eq!(away(&asa(), at(150), &o), None, "a reload's gap");
        assert_eq!(away(&asa(), at(191), &o), Some(Away::NoConsole));
        p.opened("asa", at(200));
        assert_eq!(away(&asa(), at(200), &o), None);
    }

    #[test]
    fn supervisors_count_only_while_working_calls() {
        let o = StaffingOptions::default();
        let p = Presence::default();
        p.opened("sara", at(0));
        let sara = |owns| person("sara", Role::Supervisor, &p, owns);
        assert_eq!(away(&sara(0), at(10), &o), Some(Away::NotTakingCalls));
        assert_eq!(away(&sara(1), at(10), &o), None, "owns one");
        p.took_call("sara", at(20));
        p.beat("sara", at(60), 0);
        assert_eq!(away(&sara(0), at(60), &o), None, "took one lately");
        p.beat("sara", at(1221), 0);
        assert_eq!(away(&sara(0), at(1221), &o), Some(Away::NotTakingCalls));
        let admin = Person {
            role: Role::Admin,
            ..sara(0)
        };
        assert_eq!(away(&admin, at(1221), &o), Some(Away::NotTakingCalls));
    }

    #[test]
    fn the_floor_and_the_oldest_wait() {
        let o = StaffingOptions::default();
        let p = Presence::default();
        p.opened("ola", at(0));
        p.opened("asa", at(0));
        p.opened("sara", at(0));
        // A municipality's staff with the console open is neither on duty nor away.
        p.opened("nordby", at(0));
        let people = [
            person("ola", Role::Operator, &p, 0),
            person("asa", Role::Operator, &p, 0),
            person("sara", Role::Supervisor, &p, 0),
            person("nordby", Role::Municipality, &p, 0),
        ];
        let a = assess(&people, &[], at(30), &o);
        assert_eq!(a.on_duty, ["asa", "ola"]);
        assert_eq!(a.away, [("sara".to_string(), Away::NotTakingCalls)]);
        assert_eq!(
            a.figures,
            Staffing {
                on_duty: 2,
                min_operators: 2,
                below_floor: false,
                waiting: 0,
                waiting_over: 0,
                oldest_wait_secs: None,
                queue_wait_warn_secs: 60,
            }
        );
        assert!(!a.figures.overloaded());

        // åsa's PC is shut: one on duty, below the floor; three Calls, two past 60 s.
        p.beat("ola", at(100), 0);
        let people = [
            person("ola", Role::Operator, &p, 0),
            person("asa", Role::Operator, &p, 0),
        ];
        let a = assess(&people, &[at(0), at(39), at(40), at(99)], at(100), &o);
        assert_eq!(a.on_duty, ["ola"]);
        assert_eq!(a.away, [("asa".to_string(), Away::NoConsole)]);
        let f = &a.figures;
        assert!(f.below_floor);
        assert_eq!((f.waiting, f.waiting_over), (4, 2), "60 s is not over");
        assert_eq!(f.oldest_wait_secs, Some(100));
        assert!(f.overloaded());

        // No floor: never below it.
        let none = StaffingOptions {
            min_operators: 0,
            ..o
        };
        assert!(!assess(&[], &[], at(0), &none).figures.below_floor);
        assert!(assess(&[], &[], at(0), &o).figures.below_floor);
    }

    #[test]
    fn users_no_longer_logged_in_are_forgotten_unless_a_console_is_open() {
        let p = Presence::default();
        p.opened("ola", at(0));
        p.opened("asa", at(0));
        p.closed("asa", at(1));
        p.keep_only(|_| false);
        assert_eq!(p.of("ola").consoles, 1);
        assert_eq!(p.of("asa"), Seen::default());
    }

    #[test]
    fn options_are_checked() {
        assert!(StaffingOptions::default().problems().is_empty());
        let bad = StaffingOptions {
            min_operators: 1001,
            queue_wait_warn_secs: 0,
            console_timeout_secs: 0,
            idle_away_secs: 0,
        };
        assert_eq!(bad.problems().len(), 4);
    }
}
