//! Retention of a subscriber's personal data after the alarm has ended (issue 18, item 8):
//! which subscribers are due, which are held and why, and what their records become. Pure:
//! `now` and the centre's zone are parameters.
//!
//! # The rule
//!
//! A subscriber's personal data is kept while they have the alarm (ordered, active, ending)
//! and for `days_after_end` days after the day it ended ([`due_from`]: from the start of the
//! day after `ended_on` plus that many days, in the centre's zone). Then it is due
//! ([`verdict`]), unless something about the person is still open, which holds it
//! ([`Hold`]): an order not done, a Call not closed, a dispatch still waiting for its patrol,
//! keys not back from an installer, the cabinet or a provider, a key receipt not signed, a
//! closing waiting for a supervisor's review, a voice conversation not ended, a work order
//! for one of their devices not done, a telecom incident with one of their devices not
//! resolved. Those are
//! reported; the subscriber is due at the first sweep after they are settled.
//!
//! # What the records become
//!
//! The card is deleted. What must stay countable (the life, its orders and key receipts, the
//! Calls, their dispatches and reviews, the work orders of their devices, their place in
//! telecom incidents) stays with the subscriber id replaced by a
//! [`pseudonym`] that is random (nothing in it comes from the person or the id) and the same
//! everywhere for that subscriber, so a billing row and a visit of the same person still
//! agree. Their free text, where people write about the person, is blanked
//! ([`anonymise_call`], [`anonymise_order`], [`anonymise_receipt`], [`anonymise_life`]); the
//! times, kinds, outcomes, levels, patrols, providers and operators stay for the statistics.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};

use super::keys::{Holder, Receipt, ReceiptState};
use super::life::{Life, LifeStatus};
use super::order::Order;
use super::{Call, TimelineEvent};

/// Days a subscriber's personal data is kept after the alarm ended, by default: a year.
/// Long enough for the last months' billing to be invoiced and settled at the year's
/// closing, for the provider's visits to be compensated, and for a complaint or an
/// investigation of how the last alarms were handled (a Lex Sarah report, the supervisory
/// authority) to find the Calls whole; the care system, not vakt, is the person's record
/// after that.
pub const DEFAULT_DAYS_AFTER_END: u32 = 365;

/// The shortest retention allowed: the month of the end must be billed with names first.
pub const MIN_DAYS_AFTER_END: u32 = 31;

/// The longest retention allowed (ten years).
pub const MAX_DAYS_AFTER_END: u32 = 3_650;

/// What the text of an anonymised record says where the person's words were.
pub const REMOVED: &str = "";

/// The prefix of every pseudonym.
pub const PSEUDONYM_PREFIX: &str = "anon-";

/// Something still open about the person that keeps their data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "held_by", rename_all = "snake_case")]
pub enum Hold {
    /// An order not done yet.
    OpenOrder {
        /// The order.
        order: u64,
    },
    /// A Call not closed.
    OpenCall {
        /// The Call.
        call: u64,
    },
    /// A dispatch still waiting for its patrol.
    OpenDispatch {
        /// The dispatch.
        dispatch: u64,
    },
    /// Keys not back with the person.
    KeysOut {
        /// Who holds them, in words (the cabinet, a provider, an installer).
        holder: String,
        /// How many.
        count: u32,
    },
    /// A key receipt not signed or voided.
    PendingReceipt {
        /// The receipt.
        receipt: u64,
    },
    /// A closing waiting for a supervisor's review.
    PendingReview {
        /// The Call.
        call: u64,
    },
    /// A voice conversation of one of the person's Calls not ended.
    OpenConversation {
        /// The conversation.
        conversation: u64,
    },
    /// A work order for one of the person's devices not done or cancelled.
    OpenWorkOrder {
        /// The work order.
        work_order: u64,
    },
    /// A telecom incident that counts one of the person's devices, not resolved.
    OpenIncident {
        /// The incident.
        incident: u64,
    },
    /// A Call's closing not handed to the care system yet (its journal note).
    ClosingOwed {
        /// The Call.
        call: u64,
    },
    /// An event to the care system about a Call, not delivered yet.
    Undelivered {
        /// The delivery.
        delivery: u64,
    },
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::OpenOrder { order } => write!(f, "order {order} is not done"),
            Hold::OpenCall { call } => write!(f, "Call {call} is not closed"),
            Hold::OpenDispatch { dispatch } => {
                write!(f, "dispatch {dispatch} waits for its patrol")
            }
            Hold::KeysOut { holder, count } => write!(f, "{holder} still holds {count} key(s)"),
            Hold::PendingReceipt { receipt } => write!(f, "key receipt {receipt} is not signed"),
            Hold::PendingReview { call } => {
                write!(f, "the closing of Call {call} waits for its review")
            }
            Hold::OpenConversation { conversation } => {
                write!(f, "conversation {conversation} has not ended")
            }
            Hold::OpenWorkOrder { work_order } => {
                write!(f, "work order {work_order} is not done")
            }
            Hold::OpenIncident { incident } => {
                write!(f, "telecom incident {incident} is not resolved")
            }
            Hold::ClosingOwed { call } => {
                write!(
                    f,
                    "the closing of Call {call} is not handed to the care system yet"
                )
            }
            Hold::Undelivered { delivery } => {
                write!(f, "care-system event {delivery} is not delivered")
            }
        }
    }
}

/// What retention does with one subscriber's data now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Kept: the alarm has not ended (ordered, active, ending).
    InService,
    /// Kept: ended, and the time after the end runs until `due_from`.
    NotYet {
        /// When it becomes due.
        due_from: Timestamp,
    },
    /// Due, but held by what is still open (each with why).
    Held(Vec<Hold>),
    /// Due: delete the card, anonymise the rest.
    Due,
    /// Done before: the life is already anonymised.
    Done,
}

/// The moment an alarm that ended on `ended_on` (its last day in service) becomes due: the
/// start of the day after it plus `days`, in `tz`.
pub fn due_from(ended_on: Date, days: u32, tz: &TimeZone) -> Timestamp {
    ended_on
        .checked_add(Span::new().days(i64::from(days) + 1))
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .map_or(Timestamp::MAX, |z| z.timestamp())
}

/// The verdict on a subscriber's `life` at `now`, after `days` days, in `tz`, given what is
/// still open about them (`holds`, gathered by the caller from the store).
pub fn verdict(life: &Life, holds: Vec<Hold>, days: u32, tz: &TimeZone, now: Timestamp) -> Verdict {
    if life.anonymised.is_some() {
        return Verdict::Done;
    }
    let ended_on = match (life.status, life.ended_on) {
        (LifeStatus::Ended, Some(d)) => d,
        _ => return Verdict::InService,
    };
    let due_from = due_from(ended_on, days, tz);
    if now < due_from {
        return Verdict::NotYet { due_from };
    }
    if holds.is_empty() {
        Verdict::Due
    } else {
        Verdict::Held(holds)
    }
}

/// A new pseudonym for one subscriber: [`PSEUDONYM_PREFIX`] and 16 hex digits from
/// `random`, which must be random bytes (nothing of the person).
pub fn pseudonym(random: [u8; 8]) -> String {
    let mut s = String::with_capacity(PSEUDONYM_PREFIX.len() + 16);
    s.push_str(PSEUDONYM_PREFIX);
    for b in random {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Whether `id` is a pseudonym.
pub fn is_pseudonym(id: &str) -> bool {
    id.strip_prefix(PSEUDONYM_PREFIX)
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `text` with every one of `words` (the person's name, numbers, address, the contacts'
/// names and numbers, the names of who signed for them: at least 3 characters each) replaced
/// by `…`, case-insensitively.
pub fn scrub(text: &str, words: &[String]) -> String {
    let mut out = text.to_owned();
    for w in words {
        let w = w.trim();
        if w.chars().count() < 3 {
            continue;
        }
        let lower = out.to_lowercase();
        let wl = w.to_lowercase();
        // Lower-casing can change byte lengths; replace only where it does not.
        if lower.len() != out.len() || wl.len() != w.len() {
            out = out.replace(w, "…");
            continue;
        }
        let mut next = String::with_capacity(out.len());
        let mut from = 0;
        while let Some(i) = lower[from..].find(&wl) {
            let at = from + i;
            next.push_str(&out[from..at]);
            next.push('…');
            from = at + wl.len();
        }
        next.push_str(&out[from..]);
        out = next;
    }
    out
}

/// A Call of the person, anonymised: its subscriber is `pseudonym`, and its timeline keeps
/// times, kinds, levels, outcomes, patrols, operators and the Signals' codes, with the text
/// that can quote the person blanked (notes, what was said on the phone, a relative's name
/// and relation, a closing's reason, a handover's note, a conversation's far end, whom a
/// reopening tried, a plan step's reason, a dispatch step's detail) and no recording.
pub fn anonymise_call(call: &mut Call, pseudonym: &str) {
    if call.subscriber.is_some() {
        call.subscriber = Some(pseudonym.to_owned());
    }
    for line in &mut call.timeline {
        anonymise_line(&mut line.what);
    }
}

/// One timeline line, anonymised (see [`anonymise_call`]).
pub fn anonymise_line(what: &mut TimelineEvent) {
    match what {
        TimelineEvent::Note { text } => *text = REMOVED.into(),
        TimelineEvent::PhoneCall { note, .. } => *note = REMOVED.into(),
        TimelineEvent::Dispatch { detail, .. } => *detail = REMOVED.into(),
        TimelineEvent::Closed {
            note,
            override_reason,
            ..
        } => {
            *note = REMOVED.into();
            if let Some(r) = override_reason {
                *r = REMOVED.into();
            }
        }
        TimelineEvent::Reopened { reason } => *reason = REMOVED.into(),
        TimelineEvent::Conversation(c) => {
            c.party = REMOVED.into();
            c.recording = None;
        }
        TimelineEvent::PlanStep { reason, .. } => *reason = REMOVED.into(),
        TimelineEvent::RelativeCall {
            name,
            relation,
            note,
            ..
        } => {
            *name = REMOVED.into();
            *relation = REMOVED.into();
            *note = REMOVED.into();
        }
        TimelineEvent::HandedOver { note, .. } => *note = REMOVED.into(),
        TimelineEvent::Signal { .. }
        | TimelineEvent::Escalated { .. }
        | TimelineEvent::Restored
        | TimelineEvent::Claimed
        | TimelineEvent::Released
        | TimelineEvent::Returned { .. } => {}
    }
}

/// The review of a Call of the person, anonymised: `pseudonym` for the subscriber, the
/// operator's reason, an override's reason and the supervisor's note blanked; the outcome,
/// the times, who closed and who decided stay.
pub fn anonymise_review(r: &mut super::review::Review, pseudonym: &str) {
    if r.subscriber.is_some() {
        r.subscriber = Some(pseudonym.to_owned());
    }
    r.reason = REMOVED.into();
    if let Some(o) = &mut r.override_reason {
        *o = REMOVED.into();
    }
    if let Some(d) = &mut r.decision {
        d.note = REMOVED.into();
    }
}

/// A work order for one of the person's devices, anonymised: `pseudonym` for the
/// subscriber, and what people wrote on it (a cancellation's reason, the notes and texts of
/// the lines a user added) blanked; the device's own lines, the fault, the times and the
/// installer stay.
pub fn anonymise_work_order(o: &mut super::WorkOrder, pseudonym: &str) {
    if o.subscriber.is_some() {
        o.subscriber = Some(pseudonym.to_owned());
    }
    if let Some(r) = &mut o.cancel_reason {
        *r = REMOVED.into();
    }
    for e in &mut o.timeline {
        if e.user.is_some() {
            e.text = None;
        }
    }
}

/// A telecom incident, with `subscriber`'s devices in it under `pseudonym`. Whether any was.
pub fn anonymise_incident(i: &mut super::Incident, subscriber: &str, pseudonym: &str) -> bool {
    let mut any = false;
    for d in &mut i.devices {
        if d.subscriber.as_deref() == Some(subscriber) {
            d.subscriber = Some(pseudonym.to_owned());
            any = true;
        }
    }
    any
}

/// An order of the person, anonymised: `pseudonym` for the subscriber, no care-system id
/// (it names the person's case there), no health notes, directions or note. The kind, the
/// days, the deadlines, the keys counted, the new provider and the placing municipality stay
/// (billing reads them).
pub fn anonymise_order(o: &mut Order, pseudonym: &str) {
    o.subscriber = pseudonym.to_owned();
    o.external_id = None;
    o.health_notes = REMOVED.into();
    o.directions = REMOVED.into();
    o.note = REMOVED.into();
}

/// A key receipt of the person, anonymised: `pseudonym` for the subscriber, and the names
/// signed on the person's side (the person or a relative) and a voiding's reason blanked;
/// the staff's signatures, the holders and the counts stay.
pub fn anonymise_receipt(r: &mut Receipt, pseudonym: &str) {
    r.subscriber = pseudonym.to_owned();
    let (from_person, to_person) = (r.from == Holder::Subscriber, r.to == Holder::Subscriber);
    match &mut r.state {
        ReceiptState::Signed {
            handed_by,
            received_by,
            ..
        } => {
            if from_person {
                *handed_by = REMOVED.into();
            }
            if to_person {
                *received_by = REMOVED.into();
            }
        }
        ReceiptState::Voided { reason, .. } => *reason = REMOVED.into(),
        ReceiptState::Pending => {}
    }
}

/// The person's life, anonymised at `at`: `pseudonym` for the subscriber, the consent's
/// signer blanked, and the history's text with `words` (see [`scrub`]) taken out; the
/// status, the days, the providers and the installation stay (billing reads them).
pub fn anonymise_life(l: &mut Life, pseudonym: &str, words: &[String], at: Timestamp) {
    l.subscriber = pseudonym.to_owned();
    if let Some(c) = &mut l.consent {
        c.signed_by = REMOVED.into();
    }
    for h in &mut l.history {
        if h.what.starts_with("consent signed on ") {
            h.what = h
                .what
                .split(" by ")
                .next()
                .unwrap_or("consent signed")
                .to_owned();
        }
        h.what = scrub(&h.what, words);
    }
    l.anonymised = Some(at);
}

#[cfg(test)]
mod tests;
