//! Response plans: how the centre handles alarms from one subscriber (seed 002, Norway's
//! routine: "a plan for how to handle alarms from each user"). A plan says, per kind of alarm
//! ([`PlanKind`]), the steps in order ([`StepAction`]) with free-text instructions; each
//! save is a new [`PlanVersion`] (who, when), the old ones stay readable. A subscriber
//! without a plan gets the centre's default ([`centre_default`]).
//!
//! On a Call, [`call_plan`] picks the steps for the Call's kind and reads from the Call's
//! timeline what the operator did with them ([`TimelineEvent::PlanStep`],
//! [`TimelineEvent::RelativeCall`]). The first of those lines fixes the version the Call is
//! handled under: an edit made while the Call is open does not change its steps under the
//! operator's hands.
//!
//! **Relatives first.** Where the municipality wants relatives called before a patrol goes,
//! the "call relatives" steps move before the first "send the patrol" step. The plan's own
//! `relatives_first` decides; unset, the centre's default (`[plans] relatives_first`) does. A
//! fire alarm is never reordered: the fire brigade and the patrol do not wait for a relative.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Call, ConsoleLanguage, Contact, TimelineEvent};

/// Most steps for one kind of alarm.
pub const MAX_STEPS: usize = 10;

/// Longest instructions of a step or of a kind, in characters.
pub const MAX_STEP_CHARS: usize = 500;

/// Longest instructions of the whole plan, in characters.
pub const MAX_PLAN_CHARS: usize = 2000;

/// Longest reason for skipping a step, or note on a relative's call, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Most versions of one plan listed at once (the newest).
pub const MAX_VERSIONS_LISTED: usize = 200;

/// The kinds of alarm a plan tells apart, as triage classifies a Call's kind
/// (`triage::priority::plan_kind`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// A fall (fall detector, man down).
    Fall,
    /// A personal emergency: pendant press, medical, epilepsy, a voice call, panic.
    Personal,
    /// Smoke or fire (also heat, gas, carbon monoxide).
    Fire,
    /// A door opened or a person wandering (dementia).
    Wandering,
    /// No activity, fail to report in, bed or mat sensors.
    Inactivity,
    /// A technical fault (power, battery, communication, a silent device).
    Technical,
    /// Every other alarm.
    Other,
}

impl PlanKind {
    /// Every kind, in the order the console lists them.
    pub const ALL: [PlanKind; 7] = [
        PlanKind::Fall,
        PlanKind::Personal,
        PlanKind::Fire,
        PlanKind::Wandering,
        PlanKind::Inactivity,
        PlanKind::Technical,
        PlanKind::Other,
    ];

    /// The stable name (`fall`, `personal` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::Fall => "fall",
            PlanKind::Personal => "personal",
            PlanKind::Fire => "fire",
            PlanKind::Wandering => "wandering",
            PlanKind::Inactivity => "inactivity",
            PlanKind::Technical => "technical",
            PlanKind::Other => "other",
        }
    }
}

/// What a step asks of the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// Talk to the person (the unit's voice call, or phone them).
    TalkToPerson,
    /// Call the relatives, in the order of the subscriber's contacts.
    CallRelatives,
    /// Send the home-care patrol.
    SendPatrol,
    /// Call 112 (ambulance, police).
    CallEmergency,
    /// Call the fire brigade.
    CallFireBrigade,
}

impl StepAction {
    /// The stable name (`talk_to_person` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StepAction::TalkToPerson => "talk_to_person",
            StepAction::CallRelatives => "call_relatives",
            StepAction::SendPatrol => "send_patrol",
            StepAction::CallEmergency => "call_emergency",
            StepAction::CallFireBrigade => "call_fire_brigade",
        }
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    /// What to do.
    pub action: StepAction,
    /// How, in the centre's words (at most [`MAX_STEP_CHARS`] characters).
    #[serde(default)]
    pub instructions: String,
}

/// The steps for one kind of alarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KindPlan {
    /// Which kind.
    pub kind: PlanKind,
    /// The steps, in order (1 to [`MAX_STEPS`]).
    pub steps: Vec<PlanStep>,
    /// Instructions for this kind (at most [`MAX_STEP_CHARS`] characters).
    #[serde(default)]
    pub instructions: String,
}

/// A subscriber's response plan, as a supervisor writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponsePlan {
    /// Call relatives before a patrol goes; unset: the centre's default.
    #[serde(default)]
    pub relatives_first: Option<bool>,
    /// Instructions for every alarm of this person (at most [`MAX_PLAN_CHARS`] characters).
    #[serde(default)]
    pub instructions: String,
    /// The kinds it has steps for, each at most once. A kind not listed takes the plan's
    /// `other` steps, and without those the centre's default for that kind.
    #[serde(default)]
    pub kinds: Vec<KindPlan>,
}

/// One saved version of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanVersion {
    /// 1 for the first save, then one more each save.
    pub version: u32,
    /// Who saved it.
    pub saved_by: String,
    /// When.
    pub saved_at: Timestamp,
    /// The plan.
    pub plan: ResponsePlan,
}

/// `[plans]`: the centre's response plans.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanOptions {
    /// Call relatives before sending a patrol, for plans that do not say (and the centre's
    /// default plan).
    pub relatives_first: bool,
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Trims the texts of a plan (before [`validate`] and saving).
pub fn normalize(plan: &mut ResponsePlan) {
    plan.instructions = plan.instructions.trim().to_owned();
    for k in &mut plan.kinds {
        k.instructions = k.instructions.trim().to_owned();
        for s in &mut k.steps {
            s.instructions = s.instructions.trim().to_owned();
        }
    }
}

/// Whether a plan can be saved; the first thing wrong, in words.
pub fn validate(plan: &ResponsePlan) -> Result<(), String> {
    if chars(&plan.instructions) > MAX_PLAN_CHARS {
        return Err(format!(
            "the plan's instructions are longer than {MAX_PLAN_CHARS} characters"
        ));
    }
    let mut seen = Vec::new();
    for k in &plan.kinds {
        let name = k.kind.as_str();
        if seen.contains(&k.kind) {
            return Err(format!("the kind {name} appears twice"));
        }
        seen.push(k.kind);
        if k.steps.is_empty() {
            return Err(format!("the kind {name} has no steps"));
        }
        if k.steps.len() > MAX_STEPS {
            return Err(format!("the kind {name} has more than {MAX_STEPS} steps"));
        }
        if chars(&k.instructions) > MAX_STEP_CHARS {
            return Err(format!(
                "the instructions for {name} are longer than {MAX_STEP_CHARS} characters"
            ));
        }
        for (i, s) in k.steps.iter().enumerate() {
            if chars(&s.instructions) > MAX_STEP_CHARS {
                return Err(format!(
                    "step {} of {name} has instructions longer than {MAX_STEP_CHARS} characters",
                    i + 1
                ));
            }
        }
    }
    Ok(())
}

fn step(action: StepAction, instructions: &str) -> PlanStep {
    PlanStep {
        action,
        instructions: instructions.to_owned(),
    }
}

/// The centre's built-in plan for `kind`, used for a subscriber without a plan and for the
/// kinds a plan leaves out (README, "Response plans"), its instructions in the centre's
/// `language` (they are the centre's words, like a plan a supervisor writes, and a plan
/// started from the default keeps them).
pub fn centre_default(kind: PlanKind, language: ConsoleLanguage) -> KindPlan {
    use StepAction::*;
    let actions: &[StepAction] = match kind {
        PlanKind::Fire => &[CallFireBrigade, TalkToPerson, SendPatrol, CallRelatives],
        PlanKind::Fall => &[TalkToPerson, SendPatrol, CallEmergency, CallRelatives],
        PlanKind::Personal => &[TalkToPerson, SendPatrol, CallEmergency, CallRelatives],
        PlanKind::Wandering => &[TalkToPerson, CallRelatives, SendPatrol, CallEmergency],
        PlanKind::Inactivity => &[TalkToPerson, SendPatrol, CallRelatives],
        PlanKind::Technical => &[TalkToPerson, CallRelatives, SendPatrol],
        PlanKind::Other => &[TalkToPerson, SendPatrol, CallRelatives],
    };
    let (texts, instructions) = default_texts(kind, language);
    KindPlan {
        kind,
        steps: actions
            .iter()
            .zip(texts)
            .map(|(a, t)| step(*a, t))
            .collect(),
        instructions: instructions.to_owned(),
    }
}

/// The words of the centre's default plan for `kind`: one per step of [`centre_default`],
/// and the kind's instructions.
fn default_texts(
    kind: PlanKind,
    language: ConsoleLanguage,
) -> (&'static [&'static str], &'static str) {
    use ConsoleLanguage::{En, Nb, Sv};
    match (kind, language) {
        (PlanKind::Fire, En) => (
            &[
                "Call the fire brigade at once; do not wait to reach the person.",
                "Tell the person to leave the home if they can, and to close the door.",
                "The patrol goes whatever the person says.",
                "Tell the first relative who answers.",
            ],
            "A smoke alarm is never closed without the fire brigade or a patrol.",
        ),
        (PlanKind::Fire, Sv) => (
            &[
                "Ring räddningstjänsten direkt; vänta inte på att nå personen.",
                "Be personen lämna bostaden om hen kan, och stänga dörren efter sig.",
                "Patrullen åker oavsett vad personen säger.",
                "Berätta för den första anhöriga som svarar.",
            ],
            "Ett brandlarm avslutas aldrig utan räddningstjänst eller patrull.",
        ),
        (PlanKind::Fire, Nb) => (
            &[
                "Ring brannvesenet (110) med en gang; ikke vent på å nå personen.",
                "Be personen gå ut av boligen om hen kan, og lukke døren etter seg.",
                "Patruljen drar uansett hva personen sier.",
                "Si fra til den første pårørende som svarer.",
            ],
            "En brannalarm avsluttes aldri uten brannvesen eller patrulje.",
        ),
        (PlanKind::Fall, En) => (
            &[
                "Ask if they are hurt and whether they can get up. Do not ask them to get up \
                 alone.",
                "Send the patrol if they cannot get up, are hurt or do not answer.",
                "Call 112 for a head injury, unconsciousness, or pain in the hip or neck.",
                "Tell the relatives what happened.",
            ],
            "",
        ),
        (PlanKind::Fall, Sv) => (
            &[
                "Fråga om hen har skadat sig och om hen kan resa sig. Be hen inte resa sig \
                 ensam.",
                "Skicka patrullen om hen inte kan resa sig, är skadad eller inte svarar.",
                "Ring 112 vid huvudskada, medvetslöshet eller smärta i höft eller nacke.",
                "Berätta för de anhöriga vad som hänt.",
            ],
            "",
        ),
        (PlanKind::Fall, Nb) => (
            &[
                "Spør om hen har skadet seg og om hen kan reise seg. Ikke be hen reise seg \
                 alene.",
                "Send patruljen om hen ikke kan reise seg, er skadet eller ikke svarer.",
                "Ring 113 ved hodeskade, bevisstløshet eller smerter i hofte eller nakke.",
                "Fortell de pårørende hva som har skjedd.",
            ],
            "",
        ),
        (PlanKind::Personal, En) => (
            &[
                "Ask what has happened and what they need.",
                "Send the patrol if help is needed or they do not answer.",
                "Call 112 for chest pain, breathing trouble or signs of a stroke.",
                "If the person wants it.",
            ],
            "",
        ),
        (PlanKind::Personal, Sv) => (
            &[
                "Fråga vad som har hänt och vad hen behöver.",
                "Skicka patrullen om hjälp behövs eller hen inte svarar.",
                "Ring 112 vid bröstsmärta, andningssvårigheter eller tecken på stroke.",
                "Om personen vill det.",
            ],
            "",
        ),
        (PlanKind::Personal, Nb) => (
            &[
                "Spør hva som har skjedd og hva hen trenger.",
                "Send patruljen om det trengs hjelp eller hen ikke svarer.",
                "Ring 113 ved brystsmerter, pustevansker eller tegn på hjerneslag.",
                "Om personen ønsker det.",
            ],
            "",
        ),
        (PlanKind::Wandering, En) => (
            &[
                "Call the person's phone.",
                "Ask whether they know where the person is or are with them.",
                "Send the patrol to the home if nobody knows where the person is.",
                "Call 112 (police) if the person is missing outside.",
            ],
            "",
        ),
        (PlanKind::Wandering, Sv) => (
            &[
                "Ring personens telefon.",
                "Fråga om de vet var personen är eller är hos hen.",
                "Skicka patrullen till bostaden om ingen vet var personen är.",
                "Ring 112 (polis) om personen saknas utomhus.",
            ],
            "",
        ),
        (PlanKind::Wandering, Nb) => (
            &[
                "Ring personens telefon.",
                "Spør om de vet hvor personen er eller er sammen med hen.",
                "Send patruljen til boligen om ingen vet hvor personen er.",
                "Ring 112 (politi) om personen er savnet utendørs.",
            ],
            "",
        ),
        (PlanKind::Inactivity, En) => (
            &[
                "Ask whether all is well.",
                "Send the patrol if they do not answer.",
                "Tell the relatives if a patrol went.",
            ],
            "",
        ),
        (PlanKind::Inactivity, Sv) => (
            &[
                "Fråga om allt är väl.",
                "Skicka patrullen om hen inte svarar.",
                "Berätta för de anhöriga om en patrull åkte.",
            ],
            "",
        ),
        (PlanKind::Inactivity, Nb) => (
            &[
                "Spør om alt er vel.",
                "Send patruljen om hen ikke svarer.",
                "Si fra til de pårørende om en patrulje dro.",
            ],
            "",
        ),
        (PlanKind::Technical, En) => (
            &[
                "Check that the person is well and tell them the alarm may not work.",
                "If the person cannot be reached.",
                "If the person cannot be reached and the alarm stays down.",
            ],
            "A work order is made for the fault; the person needs extra visits while the alarm \
             does not work.",
        ),
        (PlanKind::Technical, Sv) => (
            &[
                "Kontrollera att personen mår bra och berätta att larmet kanske inte fungerar.",
                "Om personen inte går att nå.",
                "Om personen inte går att nå och larmet fortfarande är ur funktion.",
            ],
            "En arbetsorder skapas för felet; personen behöver extra tillsyn så länge larmet \
             inte fungerar.",
        ),
        (PlanKind::Technical, Nb) => (
            &[
                "Sjekk at personen har det bra og si at alarmen kanskje ikke virker.",
                "Om personen ikke kan nås.",
                "Om personen ikke kan nås og alarmen fortsatt er ute av drift.",
            ],
            "En arbeidsordre opprettes for feilen; personen trenger ekstra tilsyn så lenge \
             alarmen ikke virker.",
        ),
        (PlanKind::Other, En) => (
            &[
                "Ask what has happened.",
                "Send the patrol if help is needed or they do not answer.",
                "If the person wants it.",
            ],
            "",
        ),
        (PlanKind::Other, Sv) => (
            &[
                "Fråga vad som har hänt.",
                "Skicka patrullen om hjälp behövs eller hen inte svarar.",
                "Om personen vill det.",
            ],
            "",
        ),
        (PlanKind::Other, Nb) => (
            &[
                "Spør hva som har skjedd.",
                "Send patruljen om det trengs hjelp eller hen ikke svarer.",
                "Om personen ønsker det.",
            ],
            "",
        ),
    }
}

/// Where the steps of a Call's plan come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanSource {
    /// The subscriber's plan, its steps for this kind.
    Subscriber,
    /// The subscriber's plan, its steps for other alarms (it has none for this kind).
    SubscriberOther,
    /// The centre's default (no plan, or the plan has nothing for this kind).
    Centre,
}

/// The steps a plan gives for `kind`, with where they come from, reordered for relatives
/// first when that applies (see the module doc).
pub fn select(
    plan: Option<&ResponsePlan>,
    kind: PlanKind,
    relatives_first_default: bool,
    language: ConsoleLanguage,
) -> (KindPlan, PlanSource, bool) {
    let own = plan.and_then(|p| p.kinds.iter().find(|k| k.kind == kind));
    let other = plan.and_then(|p| p.kinds.iter().find(|k| k.kind == PlanKind::Other));
    let (mut chosen, source) = match (own, other) {
        (Some(k), _) => (k.clone(), PlanSource::Subscriber),
        (None, Some(k)) => (k.clone(), PlanSource::SubscriberOther),
        (None, None) => (centre_default(kind, language), PlanSource::Centre),
    };
    let relatives_first = plan
        .and_then(|p| p.relatives_first)
        .unwrap_or(relatives_first_default);
    if relatives_first && kind != PlanKind::Fire {
        relatives_before_patrol(&mut chosen.steps);
    }
    (chosen, source, relatives_first)
}

/// The steps in force for one kind of alarm: what a Call of that kind gets now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct KindInForce {
    /// Which kind.
    pub kind: PlanKind,
    /// Where the steps come from.
    pub source: PlanSource,
    /// The steps' actions, in the order a Call gets them (relatives first applied).
    pub steps: Vec<StepAction>,
}

/// For every kind of alarm, the steps a Call of that kind would get under `plan` (the
/// subscriber's, or none): what the subscriber's card shows, so that it reads in the order
/// the operator will work.
pub fn in_force(
    plan: Option<&ResponsePlan>,
    relatives_first_default: bool,
    language: ConsoleLanguage,
) -> Vec<KindInForce> {
    PlanKind::ALL
        .iter()
        .map(|&kind| {
            let (chosen, source, _) = select(plan, kind, relatives_first_default, language);
            KindInForce {
                kind,
                source,
                steps: chosen.steps.iter().map(|s| s.action).collect(),
            }
        })
        .collect()
}

/// Moves every "call relatives" step that comes after the first "send the patrol" step to
/// just before it, keeping the order of the rest.
fn relatives_before_patrol(steps: &mut Vec<PlanStep>) {
    let Some(patrol) = steps
        .iter()
        .position(|s| s.action == StepAction::SendPatrol)
    else {
        return;
    };
    let (before, after) = steps.split_at(patrol);
    let (relatives, rest): (Vec<PlanStep>, Vec<PlanStep>) = after
        .iter()
        .cloned()
        .partition(|s| s.action == StepAction::CallRelatives);
    let mut out = before.to_vec();
    out.extend(relatives);
    out.extend(rest);
    *steps = out;
}

/// What an operator did with a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// Done.
    Done,
    /// Not done, with a reason.
    Skipped,
}

/// How a call to a relative went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelativeResult {
    /// They answered.
    Answered,
    /// Nobody answered.
    NoAnswer,
    /// The line was busy.
    Busy,
}

impl RelativeResult {
    /// The stable name (`answered`, `no_answer`, `busy`).
    pub fn as_str(self) -> &'static str {
        match self {
            RelativeResult::Answered => "answered",
            RelativeResult::NoAnswer => "no_answer",
            RelativeResult::Busy => "busy",
        }
    }
}

/// The latest tick of a step on a Call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct StepMark {
    /// Done or skipped.
    pub result: StepResult,
    /// Why it was skipped (or a note).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Who ticked it.
    pub user: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A step of a Call's plan, with what was done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct CallPlanStep {
    /// Its index (for `POST /api/calls/{id}/plan/steps/{i}`).
    pub index: u32,
    /// What to do.
    pub action: StepAction,
    /// How.
    pub instructions: String,
    /// The latest tick, if any.
    pub mark: Option<StepMark>,
}

/// One call to a relative on a Call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct RelativeAttempt {
    /// How it went.
    pub result: RelativeResult,
    /// What was said.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Who called.
    pub user: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A relative to call, in order, with the calls made on this Call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct CallPlanRelative {
    /// Position in the subscriber's contacts (for `POST /api/calls/{id}/relative-call`).
    pub index: u32,
    /// Name.
    pub name: String,
    /// Relation.
    pub relation: String,
    /// Phone number.
    pub phone: String,
    /// The calls made, oldest first.
    pub attempts: Vec<RelativeAttempt>,
}

/// The plan for one Call: the steps for its kind of alarm, what was done, the relatives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct CallPlan {
    /// The Call.
    pub call: u64,
    /// The Call's kind of alarm for the plan.
    pub kind: PlanKind,
    /// Where the steps come from.
    pub source: PlanSource,
    /// The plan version the Call is handled under (0: no plan, the centre's default).
    pub version: u32,
    /// The subscriber's current plan version (0: none); differs from `version` when the
    /// plan was edited after the Call started on it.
    pub current_version: u32,
    /// Relatives are called before a patrol goes.
    pub relatives_first: bool,
    /// The plan's instructions for every alarm of this person.
    pub instructions: String,
    /// The instructions for this kind.
    pub kind_instructions: String,
    /// The steps, in order.
    pub steps: Vec<CallPlanStep>,
    /// The subscriber's contacts, in order.
    pub relatives: Vec<CallPlanRelative>,
}

/// The plan version a Call is handled under: that of its first plan line (a ticked step or
/// a relative called), if any.
pub fn recorded_version(call: &Call) -> Option<u32> {
    call.timeline.iter().find_map(|e| match &e.what {
        TimelineEvent::PlanStep { plan_version, .. }
        | TimelineEvent::RelativeCall { plan_version, .. } => Some(*plan_version),
        _ => None,
    })
}

/// The plan of `call` for its `kind`: `plan` is the version it is handled under (`None`:
/// the centre's default), `current_version` the subscriber's newest (0: none), `contacts`
/// the subscriber's.
pub fn call_plan(
    call: &Call,
    kind: PlanKind,
    plan: Option<&PlanVersion>,
    current_version: u32,
    contacts: &[Contact],
    relatives_first_default: bool,
    language: ConsoleLanguage,
) -> CallPlan {
    let (chosen, source, relatives_first) = select(
        plan.map(|p| &p.plan),
        kind,
        relatives_first_default,
        language,
    );
    let version = plan.map_or(0, |p| p.version);
    let mut steps: Vec<CallPlanStep> = chosen
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| CallPlanStep {
            index: i as u32,
            action: s.action,
            instructions: s.instructions.clone(),
            mark: None,
        })
        .collect();
    let mut relatives: Vec<CallPlanRelative> = contacts
        .iter()
        .enumerate()
        .map(|(i, c)| CallPlanRelative {
            index: i as u32,
            name: c.name.clone(),
            relation: c.relation.clone(),
            phone: c.phone.clone(),
            attempts: Vec::new(),
        })
        .collect();
    for e in &call.timeline {
        match &e.what {
            TimelineEvent::PlanStep {
                plan_version,
                kind: k,
                step,
                action,
                result,
                reason,
            } if *plan_version == version && *k == kind => {
                if let Some(s) = steps
                    .get_mut(*step as usize)
                    .filter(|s| s.action == *action)
                {
                    s.mark = Some(StepMark {
                        result: *result,
                        reason: reason.clone(),
                        user: e.user.clone(),
                        at: e.at,
                    });
                }
            }
            TimelineEvent::RelativeCall {
                contact,
                name,
                result,
                note,
                ..
            } => {
                // By position and name: a contact list edited since does not move a result
                // onto someone else.
                if let Some(r) = relatives
                    .get_mut(*contact as usize)
                    .filter(|r| &r.name == name)
                {
                    r.attempts.push(RelativeAttempt {
                        result: *result,
                        note: note.clone(),
                        user: e.user.clone(),
                        at: e.at,
                    });
                }
            }
            _ => {}
        }
    }
    CallPlan {
        call: call.id,
        kind,
        source,
        version,
        current_version,
        relatives_first,
        instructions: plan
            .map(|p| p.plan.instructions.clone())
            .unwrap_or_default(),
        kind_instructions: chosen.instructions,
        steps,
        relatives,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
