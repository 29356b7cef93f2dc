use super::*;
use crate::model::{CallState, Priority, TimelineEntry};

fn t(secs: i64) -> Timestamp {
    Timestamp::constant(1_700_000_000 + secs, 0)
}

fn steps(actions: &[StepAction]) -> Vec<PlanStep> {
    actions.iter().map(|a| step(*a, "")).collect()
}

fn actions(k: &KindPlan) -> Vec<StepAction> {
    k.steps.iter().map(|s| s.action).collect()
}

fn kind(kind: PlanKind, actions: &[StepAction]) -> KindPlan {
    KindPlan {
        kind,
        steps: steps(actions),
        instructions: String::new(),
    }
}

fn call(timeline: Vec<TimelineEntry>) -> Call {
    Call {
        id: 7,
        priority: Priority(1),
        state: CallState::Claimed,
        owner: Some("ola".into()),
        opened_at: t(0),
        alarm_count: 1,
        subscriber: Some("S-1".into()),
        account: "1234".into(),
        kind: "Fall".into(),
        restored: false,
        answered_at: Some(t(5)),
        closed_at: None,
        outcome: None,
        timeline,
        last_signal_id: 1,
    }
}

fn line(at: i64, what: TimelineEvent) -> TimelineEntry {
    TimelineEntry {
        at: t(at),
        user: Some("ola".into()),
        what,
    }
}

fn contacts() -> Vec<Contact> {
    ["Björn", "Karin"]
        .iter()
        .map(|n| Contact {
            name: (*n).into(),
            relation: "child".into(),
            phone: "+46 70 000 00 00".into(),
        })
        .collect()
}

use StepAction::*;

#[test]
fn a_kind_takes_its_own_steps_then_the_plans_other_steps_then_the_centres() {
    let plan = ResponsePlan {
        kinds: vec![
            kind(PlanKind::Fall, &[SendPatrol, TalkToPerson]),
            kind(PlanKind::Other, &[CallRelatives]),
        ],
        ..ResponsePlan::default()
    };
    let (k, source, _) = select(Some(&plan), PlanKind::Fall, false, ConsoleLanguage::En);
    assert_eq!(
        (actions(&k), source),
        (vec![SendPatrol, TalkToPerson], PlanSource::Subscriber)
    );
    let (k, source, _) = select(Some(&plan), PlanKind::Wandering, false, ConsoleLanguage::En);
    assert_eq!(
        (actions(&k), source),
        (vec![CallRelatives], PlanSource::SubscriberOther)
    );
    let only_fall = ResponsePlan {
        kinds: vec![kind(PlanKind::Fall, &[SendPatrol])],
        ..ResponsePlan::default()
    };
    let (k, source, _) = select(Some(&only_fall), PlanKind::Fire, false, ConsoleLanguage::En);
    assert_eq!(source, PlanSource::Centre);
    assert_eq!(k, centre_default(PlanKind::Fire, ConsoleLanguage::En));
    assert_eq!(k.steps[0].action, CallFireBrigade, "the fire brigade first");
    let (k, source, _) = select(None, PlanKind::Fall, false, ConsoleLanguage::En);
    assert_eq!(
        (k, source),
        (
            centre_default(PlanKind::Fall, ConsoleLanguage::En),
            PlanSource::Centre
        )
    );
}

#[test]
fn relatives_first_moves_the_relatives_before_the_patrol_but_never_in_a_fire() {
    // The centre's fall plan: talk, patrol, 112, relatives.
    let (k, _, first) = select(None, PlanKind::Fall, true, ConsoleLanguage::En);
    assert!(first);
    assert_eq!(
        actions(&k),
        [TalkToPerson, CallRelatives, SendPatrol, CallEmergency]
    );
    let (k, _, first) = select(None, PlanKind::Fall, false, ConsoleLanguage::En);
    assert!(!first);
    assert_eq!(
        actions(&k),
        [TalkToPerson, SendPatrol, CallEmergency, CallRelatives]
    );
    // The plan's own choice wins over the centre's default, both ways.
    let mut plan = ResponsePlan {
        relatives_first: Some(false),
        kinds: vec![kind(
            PlanKind::Personal,
            &[SendPatrol, TalkToPerson, CallRelatives],
        )],
        ..ResponsePlan::default()
    };
    let (k, _, first) = select(Some(&plan), PlanKind::Personal, true, ConsoleLanguage::En);
    assert_eq!(
        (actions(&k), first),
        (vec![SendPatrol, TalkToPerson, CallRelatives], false)
    );
    plan.relatives_first = Some(true);
    let (k, _, first) = select(Some(&plan), PlanKind::Personal, false, ConsoleLanguage::En);
    assert_eq!(
        (actions(&k), first),
        (vec![CallRelatives, SendPatrol, TalkToPerson], true)
    );
    // A fire keeps its order.
    let (k, _, _) = select(None, PlanKind::Fire, true, ConsoleLanguage::En);
    assert_eq!(k, centre_default(PlanKind::Fire, ConsoleLanguage::En));
}

#[test]
fn the_steps_in_force_are_those_a_call_gets_for_every_kind() {
    // A plan with fall steps only, relatives first by the centre's default: the card lists
    // every kind in the order a Call of that kind is worked.
    let plan = ResponsePlan {
        kinds: vec![kind(
            PlanKind::Fall,
            &[TalkToPerson, SendPatrol, CallRelatives],
        )],
        ..ResponsePlan::default()
    };
    let all = in_force(Some(&plan), true, ConsoleLanguage::Sv);
    assert_eq!(all.len(), PlanKind::ALL.len());
    for k in &all {
        let (chosen, source, _) = select(Some(&plan), k.kind, true, ConsoleLanguage::Sv);
        assert_eq!((k.steps.clone(), k.source), (actions(&chosen), source));
    }
    let fall = &all[0];
    assert_eq!(
        (fall.kind, fall.source, fall.steps.clone()),
        (
            PlanKind::Fall,
            PlanSource::Subscriber,
            vec![TalkToPerson, CallRelatives, SendPatrol]
        )
    );
    let fire = all.iter().find(|k| k.kind == PlanKind::Fire).unwrap();
    assert_eq!(fire.source, PlanSource::Centre);
    assert_eq!(
        fire.steps,
        actions(&centre_default(PlanKind::Fire, ConsoleLanguage::Sv))
    );
    // Without the plan, every kind is the centre's.
    assert!(
        in_force(None, false, ConsoleLanguage::En)
            .iter()
            .all(|k| k.source == PlanSource::Centre)
    );
}

#[test]
fn every_centre_default_is_a_valid_plan_in_every_language() {
    for language in ConsoleLanguage::ALL {
        let plan = ResponsePlan {
            relatives_first: None,
            instructions: String::new(),
            kinds: PlanKind::ALL
                .iter()
                .map(|k| centre_default(*k, language))
                .collect(),
        };
        assert_eq!(validate(&plan), Ok(()), "{language:?}");
        for k in PlanKind::ALL {
            let d = centre_default(k, language);
            let en = centre_default(k, ConsoleLanguage::En);
            assert_eq!(d.kind, k);
            assert!(d.steps.iter().any(|s| s.action == TalkToPerson), "{k:?}");
            // The same steps in every language, each with its words.
            assert_eq!(actions(&d), actions(&en), "{k:?} {language:?}");
            for (s, e) in d.steps.iter().zip(&en.steps) {
                assert!(!s.instructions.trim().is_empty(), "{k:?} {language:?}");
                if language != ConsoleLanguage::En {
                    assert_ne!(
                        s.instructions, e.instructions,
                        "{k:?} {language:?}: not translated"
                    );
                }
            }
            assert_eq!(d.instructions.is_empty(), en.instructions.is_empty());
        }
    }
    // A Swedish centre's fall plan speaks Swedish.
    let fall = centre_default(PlanKind::Fall, ConsoleLanguage::Sv);
    assert!(
        fall.steps[0]
            .instructions
            .starts_with("Fråga om hen har skadat sig")
    );
}

#[test]
fn validation_names_the_one_thing_wrong() {
    let ok = ResponsePlan {
        kinds: vec![kind(PlanKind::Fall, &[TalkToPerson])],
        ..ResponsePlan::default()
    };
    assert_eq!(validate(&ok), Ok(()));
    assert_eq!(validate(&ResponsePlan::default()), Ok(()), "an empty plan");

    let mut twice = ok.clone();
    twice.kinds.push(kind(PlanKind::Fall, &[SendPatrol]));
    assert_eq!(validate(&twice), Err("the kind fall appears twice".into()));

    let mut empty = ok.clone();
    empty.kinds[0].steps.clear();
    assert_eq!(validate(&empty), Err("the kind fall has no steps".into()));

    let mut many = ok.clone();
    many.kinds[0].steps = steps(&[TalkToPerson; MAX_STEPS]);
    assert_eq!(validate(&many), Ok(()));
    many.kinds[0].steps.push(step(SendPatrol, ""));
    assert_eq!(
        validate(&many),
        Err("the kind fall has more than 10 steps".into())
    );

    let mut long = ok.clone();
    long.kinds[0].steps[0].instructions = "å".repeat(MAX_STEP_CHARS);
    assert_eq!(validate(&long), Ok(()), "characters, not bytes");
    long.kinds[0].steps[0].instructions.push('x');
    assert_eq!(
        validate(&long),
        Err("step 1 of fall has instructions longer than 500 characters".into())
    );

    let mut kind_long = ok.clone();
    kind_long.kinds[0].instructions = "x".repeat(MAX_STEP_CHARS + 1);
    assert!(validate(&kind_long).is_err());

    let mut plan_long = ok;
    plan_long.instructions = "x".repeat(MAX_PLAN_CHARS + 1);
    assert_eq!(
        validate(&plan_long),
        Err("the plan's instructions are longer than 2000 characters".into())
    );
}

#[test]
fn normalize_trims_every_text() {
    let mut plan = ResponsePlan {
        instructions: "  key under the mat \n".into(),
        kinds: vec![KindPlan {
            kind: PlanKind::Fall,
            steps: vec![step(TalkToPerson, "  loud  ")],
            instructions: " x ".into(),
        }],
        ..ResponsePlan::default()
    };
    normalize(&mut plan);
    assert_eq!(plan.instructions, "key under the mat");
    assert_eq!(plan.kinds[0].instructions, "x");
    assert_eq!(plan.kinds[0].steps[0].instructions, "loud");
}

#[test]
fn a_calls_plan_shows_the_latest_tick_of_each_step_and_every_relative_called() {
    let v = PlanVersion {
        version: 3,
        saved_by: "sara".into(),
        saved_at: t(-100),
        plan: ResponsePlan {
            instructions: "Hard of hearing".into(),
            kinds: vec![kind(
                PlanKind::Fall,
                &[TalkToPerson, CallRelatives, SendPatrol],
            )],
            ..ResponsePlan::default()
        },
    };
    let tick = |step: u32, action, result, reason: &str| TimelineEvent::PlanStep {
        plan_version: 3,
        kind: PlanKind::Fall,
        step,
        action,
        result,
        reason: reason.into(),
    };
    let rel = |contact: u32, name: &str, result| TimelineEvent::RelativeCall {
        plan_version: 3,
        contact,
        name: name.into(),
        relation: "child".into(),
        result,
        note: String::new(),
    };
    let c = call(vec![
        line(10, tick(0, TalkToPerson, StepResult::Skipped, "no answer")),
        line(20, rel(0, "Björn", RelativeResult::NoAnswer)),
        line(30, rel(1, "Karin", RelativeResult::Answered)),
        line(40, tick(1, CallRelatives, StepResult::Done, "")),
        line(50, tick(0, TalkToPerson, StepResult::Done, "")),
        // Another version's, another kind's, or a step whose action does not match: not
        // this plan's ticks.
        line(
            60,
            TimelineEvent::PlanStep {
                plan_version: 2,
                kind: PlanKind::Fall,
                step: 2,
                action: SendPatrol,
                result: StepResult::Done,
                reason: String::new(),
            },
        ),
        line(61, tick(2, TalkToPerson, StepResult::Done, "")),
        // A contact whose name no longer matches its position is not shown as called.
        line(62, rel(1, "Someone else", RelativeResult::Busy)),
    ]);
    assert_eq!(recorded_version(&c), Some(3));
    let p = call_plan(
        &c,
        PlanKind::Fall,
        Some(&v),
        4,
        &contacts(),
        false,
        ConsoleLanguage::En,
    );
    assert_eq!(
        (p.call, p.version, p.current_version, p.source),
        (7, 3, 4, PlanSource::Subscriber)
    );
    assert_eq!(p.instructions, "Hard of hearing");
    let marks: Vec<_> = p
        .steps
        .iter()
        .map(|s| s.mark.as_ref().map(|m| (m.result, m.at)))
        .collect();
    assert_eq!(
        marks,
        [
            Some((StepResult::Done, t(50))),
            Some((StepResult::Done, t(40))),
            None
        ]
    );
    let attempts: Vec<Vec<RelativeResult>> = p
        .relatives
        .iter()
        .map(|r| r.attempts.iter().map(|a| a.result).collect())
        .collect();
    assert_eq!(
        attempts,
        [
            vec![RelativeResult::NoAnswer],
            vec![RelativeResult::Answered]
        ]
    );
    assert_eq!(p.relatives[1].attempts[0].user.as_deref(), Some("ola"));
}

#[test]
fn a_call_without_plan_lines_has_no_recorded_version_and_the_centres_plan_is_version_0() {
    let c = call(vec![line(
        1,
        TimelineEvent::Note {
            text: "hello".into(),
        },
    )]);
    assert_eq!(recorded_version(&c), None);
    let p = call_plan(&c, PlanKind::Fire, None, 0, &[], false, ConsoleLanguage::En);
    assert_eq!((p.version, p.source), (0, PlanSource::Centre));
    assert_eq!(p.steps[0].action, CallFireBrigade);
    assert!(p.relatives.is_empty());
    assert!(!p.kind_instructions.is_empty());
}

#[test]
fn plan_lines_read_back_from_their_json() {
    let e = line(
        5,
        TimelineEvent::RelativeCall {
            plan_version: 2,
            contact: 0,
            name: "Björn".into(),
            relation: String::new(),
            result: RelativeResult::NoAnswer,
            note: String::new(),
        },
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["type"], "relative_call");
    assert_eq!(json["result"], "no_answer");
    assert!(json.get("relation").is_none());
    let back: TimelineEntry = serde_json::from_value(json).unwrap();
    assert_eq!(back, e);
}
