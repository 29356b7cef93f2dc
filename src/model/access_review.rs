//! The review of the access log (issue 19, 3): which accesses to people's records a
//! data-protection officer or a supervisor should look at twice.
//!
//! Three patterns are flagged, each a rule over audit entries with `now` a parameter:
//! - [`Flag::ManyRecords`]: one user touched the records of more than
//!   [`AccessReviewOptions::burst_persons`] distinct people within
//!   [`AccessReviewOptions::burst_window_mins`] (default 30 in 10 minutes). Every entry of
//!   the window is flagged.
//! - [`Flag::OutsideCall`]: a user opened a person's card ([`is_card_view`]: the card, its
//!   keys, its response plan) from no Call, while no Call of that person was open within
//!   [`AccessReviewOptions::call_margin_mins`] of the moment. "Open" is the Call's own
//!   period (`opened_at` to `closed_at`, or to `now` while open), as the store keeps it; the
//!   Calls the caller passes are the person's Calls that the log names. A view made from a
//!   Call (the entry names one) is inside it.
//! - [`Flag::OutsideMunicipality`]: the person belongs to another municipality than the user
//!   (both known, [`Tenancy`]). Users without a municipality (the centre's own staff) see
//!   every municipality's people.
//!
//! Entries written by the server itself, by an integration or by the command line
//! ([`is_system_user`]) are never flagged: they are not a person reading a record.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::AuditEntry;

/// `[access_review]`: the thresholds of the flags and the name on the extracts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessReviewOptions {
    /// More distinct people than this in [`burst_window_mins`](Self::burst_window_mins) by
    /// one user is flagged.
    pub burst_persons: u32,
    /// The window of the burst rule (minutes).
    pub burst_window_mins: u32,
    /// A card view this close (minutes) to a Call of the person (before it opened, after it
    /// closed) is inside that Call.
    pub call_margin_mins: u32,
    /// The centre's name, at the head of an access extract.
    pub centre_name: String,
}

impl Default for AccessReviewOptions {
    fn default() -> AccessReviewOptions {
        AccessReviewOptions {
            burst_persons: 30,
            burst_window_mins: 10,
            call_margin_mins: 30,
            centre_name: "Vaktby larmcentral".into(),
        }
    }
}

impl AccessReviewOptions {
    /// What is wrong (empty if nothing).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(1..=10_000).contains(&self.burst_persons) {
            out.push("access_review.burst_persons must be 1..=10000".into());
        }
        if !(1..=1440).contains(&self.burst_window_mins) {
            out.push("access_review.burst_window_mins must be 1..=1440".into());
        }
        if self.call_margin_mins > 1440 {
            out.push("access_review.call_margin_mins must be 0..=1440".into());
        }
        let n = self.centre_name.trim().chars().count();
        if !(1..=100).contains(&n) {
            out.push("access_review.centre_name must be 1 to 100 characters".into());
        }
        out
    }

    /// The burst rule's window.
    pub fn burst_window(&self) -> SignedDuration {
        SignedDuration::from_mins(i64::from(self.burst_window_mins))
    }

    /// The margin around a Call.
    pub fn call_margin(&self) -> SignedDuration {
        SignedDuration::from_mins(i64::from(self.call_margin_mins))
    }
}

/// Why an access is worth a second look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// One of many people's records the user opened in a short time.
    ManyRecords,
    /// A person's card opened outside any Call of that person.
    OutsideCall,
    /// A person of another municipality than the user's.
    OutsideMunicipality,
}

/// A Call of a person, as the rules need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallSpan {
    /// The Call.
    pub call: u64,
    /// Its subscriber.
    pub subscriber: String,
    /// When it opened.
    pub opened: Timestamp,
    /// When it closed (`None`: still open).
    pub closed: Option<Timestamp>,
}

/// Who belongs where, once the centre serves several municipalities: the person's
/// municipality, and the user's (`None`: the centre's own staff, who see all).
pub struct Tenancy<'a> {
    /// The municipality of a subscriber.
    pub municipality_of: &'a dyn Fn(&str) -> Option<String>,
    /// The municipality of a user.
    pub user_municipality: &'a dyn Fn(&str) -> Option<String>,
}

/// Whether `user` is the server itself (`vakt`, also the command line's name), an
/// integration (`integration:…`) or nobody known (`-`, a failed login): not a person.
pub fn is_system_user(user: &str) -> bool {
    user == "vakt" || user == "-" || user.contains(':')
}

/// Whether `action` opens a person's card: the card, its keys or its response plan.
pub fn is_card_view(action: &str) -> bool {
    matches!(
        action,
        "subscriber.view" | "subscriber.keys_view" | "plan.view"
    )
}

/// `t - d`, or the earliest time.
fn minus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

/// `t + d`, or the latest time.
fn plus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// An access by a person to a named person's record.
fn record_access(e: &AuditEntry) -> Option<&str> {
    if is_system_user(&e.user) {
        return None;
    }
    e.subscriber.as_deref()
}

/// The flags of each entry of `page` (by `seq`; entries without a flag are left out).
/// `context` holds the entries around the page that the burst rule needs (the same users'
/// entries within a window of the page's; the page's own may be among them); `calls` the
/// Calls of the people the page's card views concern.
pub fn flags(
    page: &[AuditEntry],
    context: &[AuditEntry],
    calls: &[CallSpan],
    tenancy: Option<&Tenancy<'_>>,
    opts: &AccessReviewOptions,
    now: Timestamp,
) -> BTreeMap<u64, BTreeSet<Flag>> {
    let mut out: BTreeMap<u64, BTreeSet<Flag>> = BTreeMap::new();
    let on_page: BTreeSet<u64> = page.iter().map(|e| e.seq).collect();

    for seq in burst(page, context, opts) {
        if on_page.contains(&seq) {
            out.entry(seq).or_default().insert(Flag::ManyRecords);
        }
    }

    let margin = opts.call_margin();
    for e in page {
        let Some(person) = record_access(e) else {
            continue;
        };
        if is_card_view(&e.action) && e.call.is_none() {
            let inside = calls.iter().any(|c| {
                c.subscriber == person
                    && minus(c.opened, margin) <= e.at
                    && e.at <= plus(c.closed.unwrap_or(now), margin)
            });
            if !inside {
                out.entry(e.seq).or_default().insert(Flag::OutsideCall);
            }
        }
        if let Some(t) = tenancy {
            let theirs = (t.municipality_of)(person);
            let users = (t.user_municipality)(&e.user);
            if let (Some(theirs), Some(users)) = (theirs, users)
                && theirs != users
            {
                out.entry(e.seq)
                    .or_default()
                    .insert(Flag::OutsideMunicipality);
            }
        }
    }
    out
}

/// The entries (by `seq`) in a window of at most the burst window in which one user touched
/// more than the allowed number of distinct people.
fn burst(page: &[AuditEntry], context: &[AuditEntry], opts: &AccessReviewOptions) -> BTreeSet<u64> {
    let window = opts.burst_window();
    let limit = opts.burst_persons as usize;
    // Each user's accesses, once each, by time.
    let mut by_user: BTreeMap<&str, BTreeMap<u64, (&AuditEntry, &str)>> = BTreeMap::new();
    for e in page.iter().chain(context) {
        if let Some(person) = record_access(e) {
            by_user
                .entry(e.user.as_str())
                .or_default()
                .insert(e.seq, (e, person));
        }
    }
    let mut flagged = BTreeSet::new();
    for accesses in by_user.values() {
        let mut list: Vec<(Timestamp, u64, &str)> = accesses
            .values()
            .map(|(e, person)| (e.at, e.seq, *person))
            .collect();
        list.sort_unstable();
        // A sliding window [start, i] of accesses no more than `window` apart, with the count
        // of each person in it; every window over the limit marks [start, i].
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut start = 0;
        // The windows over the limit, as ranges of `list` (merged into `marked` below).
        let mut marked_to: Option<usize> = None;
        for i in 0..list.len() {
            let (at, _, person) = list[i];
            *counts.entry(person).or_default() += 1;
            while list[start].0 < minus(at, window) {
                let gone = list[start].2;
                if let Some(n) = counts.get_mut(gone) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(gone);
                    }
                }
                start += 1;
            }
            if counts.len() > limit {
                // Mark [start, i], skipping what an earlier window marked already.
                let from = marked_to.map_or(start, |m| m.max(start));
                for item in list.iter().take(i + 1).skip(from) {
                    flagged.insert(item.1);
                }
                marked_to = Some(i + 1);
            }
        }
    }
    flagged
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T0: i64 = 1_760_000_000;

    fn at(mins: i64) -> Timestamp {
        Timestamp::from_second(T0 + mins * 60).unwrap()
    }

    fn entry(seq: u64, mins: i64, user: &str, action: &str, person: Option<&str>) -> AuditEntry {
        AuditEntry {
            seq,
            at: at(mins),
            user: user.into(),
            action: action.into(),
            call: None,
            subscriber: person.map(str::to_owned),
            detail: String::new(),
        }
    }

    fn opts() -> AccessReviewOptions {
        AccessReviewOptions {
            burst_persons: 3,
            burst_window_mins: 10,
            ..AccessReviewOptions::default()
        }
    }

    fn flagged(map: &BTreeMap<u64, BTreeSet<Flag>>, flag: Flag) -> Vec<u64> {
        map.iter()
            .filter(|(_, f)| f.contains(&flag))
            .map(|(s, _)| *s)
            .collect()
    }

    #[test]
    fn many_people_in_a_short_time_are_flagged_and_a_slow_pace_is_not() {
        // anna: four people within 9 minutes (over 3), then one more an hour later.
        // bo: four people, 5 minutes apart each: never four within 10 minutes.
        // A fifth view of a person already in the window does not count twice.
        let page = vec![
            entry(1, 0, "anna", "subscriber.view", Some("S-1")),
            entry(2, 3, "anna", "subscriber.view", Some("S-2")),
            entry(3, 4, "anna", "subscriber.view", Some("S-2")),
            entry(4, 6, "anna", "subscriber.view", Some("S-3")),
            entry(5, 9, "anna", "life.view", Some("S-4")),
            entry(6, 70, "anna", "subscriber.view", Some("S-5")),
            entry(7, 0, "bo", "subscriber.view", Some("S-1")),
            entry(8, 5, "bo", "subscriber.view", Some("S-2")),
            entry(9, 10, "bo", "subscriber.view", Some("S-3")),
            entry(10, 15, "bo", "subscriber.view", Some("S-4")),
            // The server's own entries never count.
            entry(11, 1, "vakt", "call.return", Some("S-7")),
            entry(12, 1, "integration:care", "care.order", Some("S-8")),
        ];
        let f = flags(&page, &[], &[], None, &opts(), at(100));
        assert_eq!(flagged(&f, Flag::ManyRecords), [1, 2, 3, 4, 5]);

        // With three allowed... and four in the window only through the context (an earlier
        // page's entry), the page's entries are flagged all the same.
        let page2 = vec![
            entry(21, 30, "cia", "subscriber.view", Some("S-2")),
            entry(22, 31, "cia", "subscriber.view", Some("S-3")),
            entry(23, 32, "cia", "subscriber.view", Some("S-4")),
        ];
        let context = vec![entry(20, 25, "cia", "subscriber.view", Some("S-1"))];
        let f = flags(&page2, &context, &[], None, &opts(), at(100));
        assert_eq!(flagged(&f, Flag::ManyRecords), [21, 22, 23]);
        let f = flags(&page2, &[], &[], None, &opts(), at(100));
        assert!(flagged(&f, Flag::ManyRecords).is_empty());

        // The default: more than 30 in 10 minutes.
        let d = AccessReviewOptions::default();
        let thirty: Vec<AuditEntry> = (0..30)
            .map(|i| entry(i + 1, 0, "anna", "life.view", Some(&format!("S-{i}"))))
            .collect();
        assert!(flags(&thirty, &[], &[], None, &d, at(1)).is_empty());
        let mut thirty_one = thirty.clone();
        thirty_one.push(entry(31, 9, "anna", "life.view", Some("S-99")));
        assert_eq!(flags(&thirty_one, &[], &[], None, &d, at(10)).len(), 31);
    }

    #[test]
    fn a_card_opened_outside_any_call_of_the_person_is_flagged() {
        let calls = vec![
            // S-1's Call from minute 100 to 120; S-2's still open since minute 300.
            CallSpan {
                call: 7,
                subscriber: "S-1".into(),
                opened: at(100),
                closed: Some(at(120)),
            },
            CallSpan {
                call: 8,
                subscriber: "S-2".into(),
                opened: at(300),
                closed: None,
            },
        ];
        let mut from_call = entry(6, 500, "anna", "subscriber.view", Some("S-1"));
        from_call.call = Some(9);
        let page = vec![
            entry(1, 110, "anna", "subscriber.view", Some("S-1")), // in the Call
            entry(2, 145, "anna", "plan.view", Some("S-1")),       // 25 min after: margin
            entry(3, 151, "anna", "subscriber.view", Some("S-1")), // 31 min after
            entry(4, 69, "anna", "subscriber.keys_view", Some("S-1")), // 31 min before
            entry(5, 400, "anna", "subscriber.view", Some("S-2")), // S-2's open Call
            from_call,                                             // made from a Call
            entry(7, 110, "anna", "subscriber.view", Some("S-3")), // S-1's Call is not S-3's
            entry(8, 110, "anna", "order.view", Some("S-3")),      // not the card
            entry(9, 110, "vakt", "subscriber.view", Some("S-3")), // the server
        ];
        let f = flags(
            &page,
            &[],
            &calls,
            None,
            &AccessReviewOptions::default(),
            at(600),
        );
        assert_eq!(flagged(&f, Flag::OutsideCall), [3, 4, 7]);
        // Without S-2's Call, the view of minute 400 is outside any.
        let f = flags(
            &page,
            &[],
            &calls[..1],
            None,
            &AccessReviewOptions::default(),
            at(600),
        );
        assert_eq!(flagged(&f, Flag::OutsideCall), [3, 4, 5, 7]);
    }

    #[test]
    fn a_person_of_another_municipality_is_flagged_once_both_are_known() {
        let page = vec![
            entry(1, 0, "anna", "subscriber.view", Some("S-1")), // Vaktby: anna's own
            entry(2, 1, "anna", "life.view", Some("S-2")),       // Grannby: not anna's
            entry(3, 2, "anna", "session.login", None),
            entry(4, 3, "chef", "subscriber.view", Some("S-2")), // centre staff: all
            entry(5, 4, "anna", "subscriber.view", Some("S-9")), // unknown person
            entry(6, 5, "vakt", "call.return", Some("S-2")),     // the server
        ];
        let municipality_of = |s: &str| match s {
            "S-1" => Some("Vaktby".to_owned()),
            "S-2" => Some("Grannby".to_owned()),
            _ => None,
        };
        let user_municipality = |u: &str| (u == "anna").then(|| "Vaktby".to_owned());
        let t = Tenancy {
            municipality_of: &municipality_of,
            user_municipality: &user_municipality,
        };
        let calls: Vec<CallSpan> = ["S-1", "S-2", "S-9"]
            .iter()
            .map(|s| CallSpan {
                call: 1,
                subscriber: (*s).into(),
                opened: at(0),
                closed: None,
            })
            .collect();
        let opts = AccessReviewOptions::default();
        let f = flags(&page, &[], &calls, Some(&t), &opts, at(10));
        assert_eq!(flagged(&f, Flag::OutsideMunicipality), [2]);
        assert_eq!(f.len(), 1, "{f:?}");
        // Without tenancy, nothing of the kind.
        assert!(flags(&page, &[], &calls, None, &opts, at(10)).is_empty());
    }

    #[test]
    fn the_options_are_checked() {
        assert!(AccessReviewOptions::default().problems().is_empty());
        let bad = AccessReviewOptions {
            burst_persons: 0,
            burst_window_mins: 0,
            call_margin_mins: 2000,
            centre_name: " ".into(),
        };
        assert_eq!(bad.problems().len(), 4, "{:?}", bad.problems());
    }
}
