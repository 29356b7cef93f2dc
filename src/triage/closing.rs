//! The closing rule: what a Call may be closed with, decided from the Call as it is (its
//! level, its timeline with every dispatch step, phone call and conversation) at `now`.
//! [`Triage::close`](super::Triage::close) applies it under the Call's lock, so nothing
//! changes the Call between the check and the closing.
//!
//! In order, the first that applies refuses:
//!
//! 1. The outcome must be one an operator may choose ([`Outcome::offered`]: the old
//!    `no_action` only reads).
//! 2. Only a supervisor overrides ([`Refusal::OverrideNotAllowed`]), and with a written reason.
//! 3. An outcome that sends neither a patrol nor an emergency service (help not needed, a
//!    relative goes, accidental press, technical) needs a reason.
//! 4. "Patrol sent" needs a dispatch of the Call.
//! 5. Without a dispatch (any dispatch of the Call, live or done: a `Dispatch` line on its
//!    timeline) and without an emergency-service outcome (ambulance, fire brigade), a Call
//!    cannot be closed when
//!    - it is **life-safety**: its level is 0. That is what triage's classification
//!      (`priority`) calls life-threatening: fire, smoke, heat, gas, carbon monoxide, panic,
//!      duress, an attack pendant, an alarm of any kind from an unknown device whose event is
//!      one of those, and a Call that repeated presses raised to level 0 (a person who
//!      presses again and again is treated as in danger). Falls and medical alarms are level
//!      1: they are caught by the next point when the person does not answer;
//!    - the person **could not be reached**: the last attempt to reach them failed. An
//!      attempt is a phone call to the person logged with `answered: false`, or a voice
//!      conversation with the unit or the person that ended not answered, busy or declined;
//!      a later answered call or conversation with them clears it. A conversation is with the
//!      unit or the person when it came in on the Call (the switchboard joins a call in to
//!      the Call of the unit or of the person whose number called) or went out to the unit
//!      (`unit …`) or to the person's own phone (`… (own phone) …`), as `voice::dial` names
//!      them; a call out to a contact is not.
//!
//!    A supervisor may close it anyway with a written reason (the override): the `Closed`
//!    line says so, and what the rule would have refused.
//!
//! A Call closed without a dispatch and without an emergency service is marked for review
//! (`review` on its `Closed` line): it goes on the supervisors' review list.

use jiff::Timestamp;

use crate::model::{
    Call, CallDirection, ConversationEnd, Outcome, PhoneParty, Priority, TimelineEntry,
    TimelineEvent,
};

/// What the owner asks for when closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closing<'a> {
    /// The outcome.
    pub outcome: Outcome,
    /// The reason (closing note), trimmed.
    pub note: &'a str,
    /// A supervisor's override of the rule, with its reason (trimmed).
    pub override_reason: Option<&'a str>,
    /// The user may override (a supervisor or an admin).
    pub may_override: bool,
}

impl<'a> Closing<'a> {
    /// An ordinary closing with `outcome` and `note`, no override.
    pub fn new(outcome: Outcome, note: &'a str) -> Closing<'a> {
        Closing {
            outcome,
            note,
            override_reason: None,
            may_override: false,
        }
    }
}

/// How a refusal is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// Something required is missing or not allowed as a value (HTTP 422).
    Missing,
    /// The Call is not in a state that allows this closing (HTTP 409).
    Conflict,
    /// The user's role does not allow it (HTTP 403).
    Forbidden,
}

/// Why the rule refused a closing, in words an operator understands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The old `no_action`, not offered any more.
    #[error("\"{0}\" is not an outcome any more: choose what was done")]
    NotOffered(&'static str),
    /// An operator tried to override.
    #[error("only a supervisor can override the closing rule")]
    OverrideNotAllowed,
    /// An override without a reason.
    #[error("write why you override the closing rule")]
    OverrideReasonMissing,
    /// An outcome without a patrol or an emergency service, without a reason.
    #[error("write why neither a patrol nor an emergency service is needed")]
    ReasonMissing,
    /// "Patrol sent" with no dispatch.
    #[error(
        "no patrol has been dispatched for this call: dispatch one before closing it \"patrol sent\""
    )]
    NoDispatch,
    /// A life-safety Call with neither a dispatch nor an emergency service.
    #[error(
        "{kind} is a life-safety alarm: dispatch a patrol or call 112 (ambulance or fire brigade) before closing"
    )]
    LifeSafety {
        /// The Call's kind, in words.
        kind: String,
    },
    /// The person could not be reached, and neither a dispatch nor an emergency service.
    #[error(
        "the person could not be reached: dispatch a patrol or call 112 (ambulance or fire brigade) before closing"
    )]
    Unreachable,
}

impl Refusal {
    /// Its stable name (the console's catalogue words it as `error.{code}`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotOffered(_) => "closing.not_offered",
            Refusal::OverrideNotAllowed => "closing.override_not_allowed",
            Refusal::OverrideReasonMissing => "closing.override_reason_missing",
            Refusal::ReasonMissing => "closing.reason_missing",
            Refusal::NoDispatch => "closing.no_dispatch",
            Refusal::LifeSafety { .. } => "closing.life_safety",
            Refusal::Unreachable => "closing.unreachable",
        }
    }

    /// How it is answered.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::NotOffered(_) | Refusal::OverrideReasonMissing | Refusal::ReasonMissing => {
                RefusalKind::Missing
            }
            Refusal::OverrideNotAllowed => RefusalKind::Forbidden,
            Refusal::NoDispatch | Refusal::LifeSafety { .. } | Refusal::Unreachable => {
                RefusalKind::Conflict
            }
        }
    }
}

/// A life-safety Call: level 0 (see the module doc).
pub fn life_safety(call: &Call) -> bool {
    call.priority == Priority::LIFE_SAFETY
}

/// The Call has a dispatch (live or done): a dispatch line on its timeline.
pub fn dispatched(call: &Call) -> bool {
    call.timeline
        .iter()
        .any(|e| matches!(e.what, TimelineEvent::Dispatch { .. }))
}

/// The last attempt to reach the person failed (see the module doc).
pub fn unreachable(call: &Call) -> bool {
    let mut unreached = false;
    for e in &call.timeline {
        match &e.what {
            TimelineEvent::PhoneCall {
                to: PhoneParty::Person,
                answered,
                ..
            } => unreached = *answered == Some(false),
            TimelineEvent::Conversation(c) if with_person(c) => {
                if c.answered() {
                    unreached = false;
                } else if matches!(
                    c.ended_by,
                    ConversationEnd::NoAnswer | ConversationEnd::Busy | ConversationEnd::Declined
                ) {
                    unreached = true;
                }
            }
            _ => {}
        }
    }
    unreached
}

/// A conversation with the unit or the person (not with a relative): as recorded, or for a
/// conversation stored before that was kept, read from its direction and party.
fn with_person(c: &crate::model::Conversation) -> bool {
    match c.to_relative {
        Some(relative) => !relative,
        None => {
            c.direction == CallDirection::Inbound
                || c.party.starts_with("unit ")
                || c.party.contains(" (own phone)")
        }
    }
}

/// The rule: the `Closed` line `user` may write at `now` for `req`, or why not.
pub fn decide(
    call: &Call,
    user: &str,
    req: &Closing<'_>,
    now: Timestamp,
) -> Result<TimelineEntry, Refusal> {
    let outcome = req.outcome;
    if !outcome.offered() {
        return Err(Refusal::NotOffered(outcome.as_str()));
    }
    if let Some(reason) = req.override_reason {
        if !req.may_override {
            return Err(Refusal::OverrideNotAllowed);
        }
        if reason.trim().is_empty() {
            return Err(Refusal::OverrideReasonMissing);
        }
    }
    if !outcome.sends_help() && req.note.trim().is_empty() {
        return Err(Refusal::ReasonMissing);
    }
    let dispatched = dispatched(call);
    if outcome == Outcome::PatrolNeeded && !dispatched {
        return Err(Refusal::NoDispatch);
    }
    let helped = dispatched || outcome.emergency_service();
    let refusal = if helped {
        None
    } else if life_safety(call) {
        Some(Refusal::LifeSafety {
            kind: call.kind.clone(),
        })
    } else if unreachable(call) {
        Some(Refusal::Unreachable)
    } else {
        None
    };
    let (override_reason, overrode) = match (refusal, req.override_reason) {
        (None, _) => (None, String::new()),
        (Some(r), Some(reason)) => (Some(reason.trim().to_owned()), r.to_string()),
        (Some(r), None) => return Err(r),
    };
    Ok(TimelineEntry {
        at: now,
        user: Some(user.to_owned()),
        what: TimelineEvent::Closed {
            outcome,
            note: req.note.trim().to_owned(),
            override_reason,
            overrode,
            review: !helped,
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::model::{CallState, Conversation, DispatchStep};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn call(priority: Priority, kind: &str) -> Call {
        Call {
            id: 7,
            priority,
            state: CallState::Claimed,
            owner: Some("ola".into()),
            opened_at: t(0),
            alarm_count: 1,
            subscriber: Some("S-1".into()),
            account: "1234".into(),
            kind: kind.into(),
            restored: false,
            answered_at: Some(t(5)),
            closed_at: None,
            outcome: None,
            timeline: Vec::new(),
            last_signal_id: 1,
        }
    }

    fn push(c: &mut Call, s: i64, what: TimelineEvent) {
        c.timeline.push(TimelineEntry {
            at: t(s),
            user: Some("ola".into()),
            what,
        });
    }

    fn phone(answered: Option<bool>) -> TimelineEvent {
        TimelineEvent::PhoneCall {
            to: PhoneParty::Person,
            answered,
            note: String::new(),
        }
    }

    fn conversation(direction: CallDirection, party: &str, end: ConversationEnd) -> TimelineEvent {
        TimelineEvent::Conversation(Conversation {
            id: 1,
            direction,
            party: party.into(),
            to_relative: None,
            operator: Some("ola".into()),
            ring_secs: 30,
            talk_secs: (end == ConversationEnd::Operator).then_some(40),
            ended_by: end,
            recording: None,
        })
    }

    fn dispatch(step: DispatchStep) -> TimelineEvent {
        TimelineEvent::Dispatch {
            dispatch: 1,
            patrol: "p1".into(),
            patrol_name: "Centrum 1".into(),
            step,
            detail: String::new(),
        }
    }

    fn closed(e: &TimelineEntry) -> (Outcome, String, Option<String>, String, bool) {
        match &e.what {
            TimelineEvent::Closed {
                outcome,
                note,
                override_reason,
                overrode,
                review,
            } => (
                *outcome,
                note.clone(),
                override_reason.clone(),
                overrode.clone(),
                *review,
            ),
            other => panic!("not a closing: {other:?}"),
        }
    }

    #[test]
    fn a_smoke_call_cannot_close_help_not_needed_or_accidental_press() {
        let c = call(Priority::LIFE_SAFETY, "Fire");
        for outcome in [
            Outcome::HelpNotNeeded,
            Outcome::AccidentalPress,
            Outcome::RelativeGoes,
            Outcome::Technical,
        ] {
            let r = decide(
                &c,
                "ola",
                &Closing::new(outcome, "smoke from the toaster"),
                t(9),
            );
            assert_eq!(
                r,
                Err(Refusal::LifeSafety {
                    kind: "Fire".into()
                }),
                "{outcome:?}"
            );
        }
        let words = decide(
            &c,
            "ola",
            &Closing::new(Outcome::AccidentalPress, "x"),
            t(9),
        )
        .unwrap_err()
        .to_string();
        assert!(words.starts_with("Fire is a life-safety alarm"), "{words}");
        assert_eq!(
            decide(&c, "ola", &Closing::new(Outcome::AccidentalPress, ""), t(9)),
            Err(Refusal::ReasonMissing),
            "the missing reason is said first"
        );
    }

    #[test]
    fn an_emergency_outcome_closes_a_life_safety_call_without_review() {
        let c = call(Priority::LIFE_SAFETY, "Fire");
        let line = decide(
            &c,
            "ola",
            &Closing::new(Outcome::FireBrigadeCalled, ""),
            t(9),
        )
        .unwrap();
        assert_eq!(line.at, t(9));
        assert_eq!(line.user.as_deref(), Some("ola"));
        assert_eq!(
            closed(&line),
            (
                Outcome::FireBrigadeCalled,
                String::new(),
                None,
                String::new(),
                false
            )
        );
        let line = decide(&c, "ola", &Closing::new(Outcome::AmbulanceCalled, ""), t(9)).unwrap();
        assert!(!closed(&line).4);
    }

    #[test]
    fn a_dispatch_allows_closing_and_patrol_sent_needs_one() {
        let mut c = call(Priority::LIFE_SAFETY, "Fire");
        assert_eq!(
            decide(&c, "ola", &Closing::new(Outcome::PatrolNeeded, ""), t(9)),
            Err(Refusal::NoDispatch)
        );
        let mut personal = call(Priority::PERSONAL, "Fall");
        assert_eq!(
            decide(
                &personal,
                "ola",
                &Closing::new(Outcome::PatrolNeeded, ""),
                t(9)
            ),
            Err(Refusal::NoDispatch)
        );
        // A dispatch, even one that ended, lets the Call close with any outcome.
        push(&mut c, 5, dispatch(DispatchStep::Offered));
        push(&mut c, 6, dispatch(DispatchStep::Cancelled));
        let line = decide(&c, "ola", &Closing::new(Outcome::PatrolNeeded, ""), t(9)).unwrap();
        assert_eq!(closed(&line).0, Outcome::PatrolNeeded);
        assert!(!closed(&line).4, "dispatched: no review");
        let line = decide(
            &c,
            "ola",
            &Closing::new(Outcome::HelpNotNeeded, "the patrol found all well"),
            t(9),
        )
        .unwrap();
        assert!(!closed(&line).4);
        push(&mut personal, 5, dispatch(DispatchStep::Offered));
        assert!(
            decide(
                &personal,
                "ola",
                &Closing::new(Outcome::PatrolNeeded, ""),
                t(9)
            )
            .is_ok()
        );
    }

    #[test]
    fn an_unreachable_person_needs_a_dispatch_or_112_until_reached() {
        let mut c = call(Priority::PERSONAL, "Fall");
        let help_not_needed = Closing::new(Outcome::HelpNotNeeded, "she is fine");
        // Nobody tried: not unreachable; closes, on the review list.
        let line = decide(&c, "ola", &help_not_needed, t(9)).unwrap();
        assert_eq!(
            closed(&line),
            (
                Outcome::HelpNotNeeded,
                "she is fine".into(),
                None,
                String::new(),
                true
            )
        );
        // The person's phone is not answered.
        push(&mut c, 10, phone(Some(false)));
        assert!(unreachable(&c));
        assert_eq!(
            decide(&c, "ola", &help_not_needed, t(11)),
            Err(Refusal::Unreachable)
        );
        // A later answered call clears it (an older line without `answered` counts as one).
        push(&mut c, 12, phone(None));
        assert!(!unreachable(&c));
        assert!(decide(&c, "ola", &help_not_needed, t(13)).is_ok());
        // The unit called back: no answer.
        push(
            &mut c,
            14,
            conversation(
                CallDirection::Outbound,
                "unit 1234",
                ConversationEnd::NoAnswer,
            ),
        );
        assert_eq!(
            decide(&c, "ola", &help_not_needed, t(15)),
            Err(Refusal::Unreachable)
        );
        // A relative who declines does not change it; nor does one who answers.
        push(
            &mut c,
            16,
            conversation(
                CallDirection::Outbound,
                "Anna Berg (daughter) +46701234567",
                ConversationEnd::Operator,
            ),
        );
        assert!(unreachable(&c));
        // An ambulance closes it, without review.
        let line = decide(
            &c,
            "ola",
            &Closing::new(Outcome::AmbulanceCalled, ""),
            t(17),
        )
        .unwrap();
        assert!(!closed(&line).4);
        // The person's own phone, busy, then answered.
        let mut c = call(Priority::CARE, "No activity");
        push(
            &mut c,
            1,
            conversation(
                CallDirection::Outbound,
                "Åsa Öberg (own phone) +46707654321",
                ConversationEnd::Busy,
            ),
        );
        assert!(unreachable(&c));
        push(
            &mut c,
            2,
            conversation(
                CallDirection::Outbound,
                "Åsa Öberg (own phone) +46707654321",
                ConversationEnd::Operator,
            ),
        );
        assert!(!unreachable(&c));
        // A declined call to the person, then the unit called in and was answered.
        push(
            &mut c,
            3,
            conversation(
                CallDirection::Outbound,
                "Åsa Öberg (own phone) +46707654321",
                ConversationEnd::Declined,
            ),
        );
        assert!(unreachable(&c));
        push(
            &mut c,
            4,
            conversation(
                CallDirection::Inbound,
                "unit 1234",
                ConversationEnd::Operator,
            ),
        );
        assert!(!unreachable(&c));
        // What vakt recorded of the far end decides, not the words: a relative whose name
        // reads like the person's own phone does not count, the unit does.
        let recorded = |to_relative, end| {
            let TimelineEvent::Conversation(mut conv) =
                conversation(CallDirection::Outbound, "Karin (own phone)", end)
            else {
                unreachable!()
            };
            conv.to_relative = Some(to_relative);
            TimelineEvent::Conversation(conv)
        };
        push(&mut c, 5, recorded(true, ConversationEnd::NoAnswer));
        assert!(!unreachable(&c), "a relative who did not answer");
        push(&mut c, 6, recorded(false, ConversationEnd::NoAnswer));
        assert!(unreachable(&c), "the person who did not answer");
    }

    #[test]
    fn a_supervisor_overrides_with_a_reason_and_an_operator_cannot() {
        let c = call(Priority::LIFE_SAFETY, "Fire");
        let mut req = Closing {
            outcome: Outcome::HelpNotNeeded,
            note: "burnt toast, she aired the kitchen",
            override_reason: Some("  spoke with her and her son on the spot  "),
            may_override: false,
        };
        assert_eq!(
            decide(&c, "ola", &req, t(9)),
            Err(Refusal::OverrideNotAllowed)
        );
        assert_eq!(Refusal::OverrideNotAllowed.kind(), RefusalKind::Forbidden);
        req.may_override = true;
        let line = decide(&c, "sara", &req, t(9)).unwrap();
        let (outcome, note, why, overrode, review) = closed(&line);
        assert_eq!(outcome, Outcome::HelpNotNeeded);
        assert_eq!(note, "burnt toast, she aired the kitchen");
        assert_eq!(
            why.as_deref(),
            Some("spoke with her and her son on the spot")
        );
        assert!(
            overrode.starts_with("Fire is a life-safety alarm"),
            "{overrode}"
        );
        assert!(review, "an override without a dispatch is reviewed too");
        assert_eq!(line.user.as_deref(), Some("sara"));
        // Without its reason it is refused; the closing's own reason is still required.
        req.override_reason = Some("  ");
        assert_eq!(
            decide(&c, "sara", &req, t(9)),
            Err(Refusal::OverrideReasonMissing)
        );
        req.override_reason = Some("checked");
        req.note = "";
        assert_eq!(decide(&c, "sara", &req, t(9)), Err(Refusal::ReasonMissing));
        // Not needed: nothing is recorded as overridden.
        let ok = call(Priority::PERSONAL, "Fall");
        req.note = "fine";
        let (_, _, why, overrode, _) = closed(&decide(&ok, "sara", &req, t(9)).unwrap());
        assert_eq!((why, overrode), (None, String::new()));
    }

    #[test]
    fn the_old_no_action_is_not_offered_and_reads() {
        let c = call(Priority::PERSONAL, "Fall");
        let r = decide(&c, "ola", &Closing::new(Outcome::NoAction, "x"), t(9));
        assert_eq!(r, Err(Refusal::NotOffered("no_action")));
        assert_eq!(r.unwrap_err().kind(), RefusalKind::Missing);
        let old: Outcome = serde_json::from_str("\"no_action\"").unwrap();
        assert_eq!(old, Outcome::NoAction);
        let old: Outcome = serde_json::from_str("\"handled_by_phone\"").unwrap();
        assert_eq!(old, Outcome::HelpNotNeeded);
        assert_eq!(
            serde_json::to_string(&Outcome::HelpNotNeeded).unwrap(),
            "\"help_not_needed\""
        );
        for o in Outcome::OFFERED {
            assert!(o.offered());
            let back: Outcome = serde_json::from_str(&format!("\"{}\"", o.as_str())).unwrap();
            assert_eq!(back, o, "the wire name is as_str");
        }
        // A stored Closed line from before the new fields still loads.
        let line: TimelineEntry = serde_json::from_str(
            r#"{"at":"2026-11-23T10:00:00Z","user":"ola","type":"closed","outcome":"handled_by_phone","note":"ok"}"#,
        )
        .unwrap();
        assert_eq!(
            closed(&line),
            (
                Outcome::HelpNotNeeded,
                "ok".into(),
                None,
                String::new(),
                false
            )
        );
    }

    #[test]
    fn repeated_presses_raised_to_level_0_are_life_safety() {
        let mut c = call(Priority::PERSONAL, "Personal alarm");
        assert!(!life_safety(&c));
        c.priority = Priority::PERSONAL.raised();
        assert!(life_safety(&c));
        assert!(matches!(
            decide(
                &c,
                "ola",
                &Closing::new(Outcome::AccidentalPress, "oops"),
                t(9)
            ),
            Err(Refusal::LifeSafety { .. })
        ));
    }
}
