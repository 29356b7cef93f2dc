use jiff::civil::date;
use jiff::tz::TimeZone;

use super::*;

/// The instant of a local time in `tz`.
fn ts_local(tz: &TimeZone, y: i16, m: i8, d: i8, h: i8, min: i8) -> Timestamp {
    date(y, m, d)
        .at(h, min, 0, 0)
        .to_zoned(tz.clone())
        .unwrap()
        .timestamp()
}

fn tz() -> TimeZone {
    TimeZone::get("Europe/Stockholm").unwrap()
}

/// A life that ended on 2026-03-10 (its last day in service).
fn ended() -> Life {
    let mut l = Life::ordered("S-1001", None, Timestamp::UNIX_EPOCH, "t");
    l.installed_on = Some(date(2025, 1, 7));
    l.status = LifeStatus::Ended;
    l.ended_on = Some(date(2026, 3, 10));
    l
}

#[test]
fn an_ended_alarm_is_kept_for_its_days_and_due_from_the_start_of_the_day_after() {
    let l = ended();
    // Ended yesterday: kept.
    let now = ts_local(&tz(), 2026, 3, 11, 9, 0);
    assert!(matches!(
        verdict(&l, vec![], 365, &tz(), now),
        Verdict::NotYet { .. }
    ));
    // 365 days after the day after the end, local midnight (2027-03-11 00:00 CET).
    let due = due_from(date(2026, 3, 10), 365, &tz());
    assert_eq!(due, ts_local(&tz(), 2027, 3, 11, 0, 0));
    let just_before = due.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap();
    assert_eq!(
        verdict(&l, vec![], 365, &tz(), just_before),
        Verdict::NotYet { due_from: due }
    );
    // Just over the time ago: due.
    let just_after = due.checked_add(jiff::SignedDuration::from_secs(1)).unwrap();
    assert_eq!(verdict(&l, vec![], 365, &tz(), just_after), Verdict::Due);
    // A shorter retention is due sooner, across the change to summer time (29 March).
    assert_eq!(
        due_from(date(2026, 3, 10), 31, &tz()),
        ts_local(&tz(), 2026, 4, 11, 0, 0)
    );
}

#[test]
fn an_alarm_ordered_active_or_ending_is_never_due() {
    let long_after = ts_local(&tz(), 2040, 1, 1, 0, 0);
    for status in [LifeStatus::Ordered, LifeStatus::Active, LifeStatus::Ending] {
        let mut l = ended();
        l.status = status;
        // Even with an end day written (an end ordered with its day).
        assert_eq!(
            verdict(&l, vec![], 31, &tz(), long_after),
            Verdict::InService,
            "{status:?}"
        );
    }
    // Ended without a day (cannot happen by the rules): kept, never guessed.
    let mut l = ended();
    l.ended_on = None;
    assert_eq!(
        verdict(&l, vec![], 31, &tz(), long_after),
        Verdict::InService
    );
}

#[test]
fn what_is_still_open_holds_a_due_subscriber_and_says_why() {
    let l = ended();
    let later = ts_local(&tz(), 2028, 1, 1, 12, 0);
    let holds = vec![
        Hold::OpenCall { call: 42 },
        Hold::KeysOut {
            holder: "the key cabinet".into(),
            count: 2,
        },
    ];
    let v = verdict(&l, holds.clone(), 365, &tz(), later);
    assert_eq!(v, Verdict::Held(holds.clone()));
    let words: Vec<String> = holds.iter().map(ToString::to_string).collect();
    assert_eq!(
        words,
        [
            "Call 42 is not closed",
            "the key cabinet still holds 2 key(s)"
        ]
    );
    // Held only once due: before that it is simply kept.
    let early = ts_local(&tz(), 2026, 6, 1, 12, 0);
    assert!(matches!(
        verdict(&l, holds, 365, &tz(), early),
        Verdict::NotYet { .. }
    ));
}

#[test]
fn an_anonymised_life_is_done_and_never_due_again() {
    let mut l = ended();
    anonymise_life(
        &mut l,
        &pseudonym([1; 8]),
        &[],
        ts_local(&tz(), 2027, 4, 1, 3, 0),
    );
    let later = ts_local(&tz(), 2030, 1, 1, 0, 0);
    assert_eq!(verdict(&l, vec![], 365, &tz(), later), Verdict::Done);
    assert_eq!(
        verdict(&l, vec![Hold::OpenCall { call: 1 }], 365, &tz(), later),
        Verdict::Done
    );
}

#[test]
fn a_pseudonym_is_random_hex_and_recognised() {
    let p = pseudonym([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff]);
    assert_eq!(p, "anon-deadbeef000102ff");
    assert!(is_pseudonym(&p));
    assert!(!is_pseudonym("S-1001"));
    assert!(!is_pseudonym("anon-xyz"));
}

#[test]
fn scrub_takes_the_persons_words_out_whatever_their_case() {
    let words = vec![
        "Åsa Öberg".to_owned(),
        "070-123 45 67".to_owned(),
        "Bo".to_owned(),
    ];
    assert_eq!(
        scrub("consent by åsa öberg, call 070-123 45 67 (Bo)", &words),
        "consent by …, call … (Bo)"
    );
}

#[test]
fn a_call_keeps_its_figures_and_loses_the_persons_words() {
    use crate::model::{
        CallDirection, CallState, Conversation, ConversationEnd, Outcome, PhoneParty, Priority,
        TimelineEntry,
    };
    let at = ts_local(&tz(), 2026, 2, 1, 10, 0);
    let line = |what| TimelineEntry {
        at,
        user: Some("op1".into()),
        what,
    };
    let mut c = Call {
        id: 7,
        priority: Priority(1),
        state: CallState::Closed,
        owner: Some("op1".into()),
        opened_at: at,
        alarm_count: 1,
        subscriber: Some("S-1001".into()),
        account: "1234".into(),
        kind: "Fall".into(),
        restored: false,
        answered_at: Some(at),
        closed_at: Some(at),
        outcome: Some(Outcome::HelpNotNeeded),
        timeline: vec![
            line(TimelineEvent::Note {
                text: "Åsa fell in the bathroom".into(),
            }),
            line(TimelineEvent::PhoneCall {
                to: PhoneParty::Person,
                answered: Some(true),
                note: "she is fine".into(),
            }),
            line(TimelineEvent::Conversation(Conversation {
                id: 3,
                direction: CallDirection::Outbound,
                party: "+46701234567".into(),
                to_relative: Some(false),
                operator: Some("op1".into()),
                ring_secs: 4,
                talk_secs: Some(60),
                ended_by: ConversationEnd::Operator,
                recording: Some("call-7_conv-3_20260201T090000Z.wav".into()),
            })),
            line(TimelineEvent::Closed {
                outcome: Outcome::HelpNotNeeded,
                note: "Åsa is fine".into(),
                override_reason: None,
                overrode: String::new(),
                review: false,
            }),
        ],
        last_signal_id: 9,
    };
    anonymise_call(&mut c, "anon-0000000000000001");
    let text = serde_json::to_string(&c).unwrap();
    for gone in ["S-1001", "Åsa", "she is fine", "+4670", ".wav"] {
        assert!(!text.contains(gone), "{gone} in {text}");
    }
    assert_eq!(c.subscriber.as_deref(), Some("anon-0000000000000001"));
    assert_eq!(c.outcome, Some(Outcome::HelpNotNeeded));
    assert_eq!(c.timeline.len(), 4);
    let TimelineEvent::Conversation(conv) = &c.timeline[2].what else {
        panic!("the conversation line");
    };
    assert_eq!((conv.talk_secs, conv.ring_secs), (Some(60), 4));
    // Anonymising twice changes nothing more.
    let once = c.clone();
    anonymise_call(&mut c, "anon-0000000000000001");
    assert_eq!(c, once);
}
