//! The events the municipality's care system must log (seed 001 1.2.8, 3.1, 4.8), through the
//! durable outbox to `[[escalation]] kind = "care_system"` endpoints whose `matches` hold
//! the municipality (the centre's `[care] municipality`, or the placing municipality's):
//!
//! | event | when | subject |
//! | --- | --- | --- |
//! | `care.execution_started` | the alarm is active (test, consent, keys in) | `order/<id>` |
//! | `care.execution_ended` | the end order is completed | `order/<id>` |
//! | `care.health_change_received` | a change order with health notes arrived | `order/<id>` |
//! | `care.key_handover_signed` | a key receipt is signed | `receipt/<id>` |
//! | `care.alarm_handled` | a Call of the subscriber closed | `call/<id>` |
//!
//! Each is queued once, at the change that makes it (the life's or order's state moves once;
//! a Call closes once per closing), and the outbox delivers each delivery until a 2xx, with
//! the same `X-Vakt-Delivery` id at every attempt for the receiver to deduplicate on. A
//! closing is marked in the store with the Call, so a crash before its note was queued sends
//! it at the next start; a crash between the queueing and the mark's removal sends it twice
//! (at least once: the subject `call/<id>` names it).
//!
//! One more goes to the installer (`[[escalation]] kind = "installer"`, matched by the
//! installer's name, the one of the installation): `care.pickup_ordered` (subject
//! `order/<id>`) when an end order arrives (seed 001 4.3, 4.4): pick up the devices by the
//! order's due time, where, whom to call, and the keys to collect on which receipts.
//!
//! # The handled alarm as FHIR R4
//!
//! `care.alarm_handled`'s `data` holds the journal note both flat (`note`: who, when, what
//! happened, outcome, the patrol with its arrival and departure) and as a FHIR R4
//! [`Communication`](https://hl7.org/fhir/R4/communication.html) resource
//! (`communication`), which a hub such as Norway's VKP takes as it is:
//!
//! - `resourceType` `Communication`, `status` `completed`;
//! - `identifier`: the Call, system `urn:vakt:call`;
//! - `subject`: the Patient by logical identifier, system `urn:oid:1.2.752.129.2.1.3.1`
//!   (Sweden's personal identity number) and the personal number as value, `display` the
//!   name;
//! - `sent`: when the Call closed; `sender`: the operator (`display`);
//! - `category`: `text` "alarm handled"; `reasonCode`: the alarm kind;
//! - `payload`: one `contentString` per line of the note (what happened, outcome, patrol
//!   with arrival and departure).
//!
//! Event bodies hold personal data: the outbox never logs them and prunes delivered bodies.

use serde::Serialize;
use serde_json::json;

use crate::model::keys::{Receipt, ReceiptState};
use crate::model::life::Life;
use crate::model::order::{Order, provider_on};
use crate::model::{Call, Dispatch, Subscriber};
use crate::outbox::{Outbox, OutboxError, OutboxEvent, Recipient};

/// Event: the alarm is in service (execution started).
pub const EXECUTION_STARTED: &str = "care.execution_started";
/// Event: the alarm has ended (execution ended).
pub const EXECUTION_ENDED: &str = "care.execution_ended";
/// Event: a health change was received and is on the card.
pub const HEALTH_CHANGE_RECEIVED: &str = "care.health_change_received";
/// Event: a key handover was signed.
pub const KEY_HANDOVER_SIGNED: &str = "care.key_handover_signed";
/// Event: an alarm of the subscriber was handled (a journal note).
pub const ALARM_HANDLED: &str = "care.alarm_handled";
/// Event, to the installer: an end was ordered; the devices and keys are to be picked up.
pub const PICKUP_ORDERED: &str = "care.pickup_ordered";

/// Sweden's OID for the personal identity number (personnummer).
pub const PERSONNUMMER_OID: &str = "urn:oid:1.2.752.129.2.1.3.1";

/// The order's part of an event.
#[derive(Debug, Serialize)]
struct OrderRef<'a> {
    id: u64,
    external_id: Option<&'a str>,
    kind: &'a str,
}

fn order_ref(o: &Order) -> OrderRef<'_> {
    OrderRef {
        id: o.id,
        external_id: o.external_id.as_deref(),
        kind: o.kind.as_str(),
    }
}

fn send(
    outbox: &Outbox,
    municipality: &str,
    event: &str,
    subject: String,
    data: &impl Serialize,
) -> Result<Vec<u64>, OutboxError> {
    outbox.enqueue(OutboxEvent::new(
        event,
        Recipient::care_system(municipality),
        subject,
        data,
    )?)
}

/// `care.execution_started`: the subscriber's alarm is active from `installed_on`.
pub fn execution_started(
    outbox: &Outbox,
    municipality: &str,
    life: &Life,
    order: &Order,
) -> Result<Vec<u64>, OutboxError> {
    let provider = life
        .installed_on
        .and_then(|d| provider_on(&life.providers, d));
    send(
        outbox,
        municipality,
        EXECUTION_STARTED,
        format!("order/{}", order.id),
        &json!({
            "subscriber": life.subscriber,
            "order": order_ref(order),
            "installed_on": life.installed_on,
            "provider": provider,
            "test_alarm_at": life.installation.as_ref().and_then(|i| i.test).map(|t| t.at),
            "consent_signed_on": life.consent.as_ref().map(|c| c.signed_on),
        }),
    )
}

/// `care.execution_ended`: the subscriber's alarm ended on `ended_on`.
pub fn execution_ended(
    outbox: &Outbox,
    municipality: &str,
    life: &Life,
    order: &Order,
) -> Result<Vec<u64>, OutboxError> {
    send(
        outbox,
        municipality,
        EXECUTION_ENDED,
        format!("order/{}", order.id),
        &json!({
            "subscriber": life.subscriber,
            "order": order_ref(order),
            "installed_on": life.installed_on,
            "ended_on": life.ended_on,
        }),
    )
}

/// `care.health_change_received`: the change order's health notes are on the card.
pub fn health_change_received(
    outbox: &Outbox,
    municipality: &str,
    order: &Order,
) -> Result<Vec<u64>, OutboxError> {
    send(
        outbox,
        municipality,
        HEALTH_CHANGE_RECEIVED,
        format!("order/{}", order.id),
        &json!({
            "subscriber": order.subscriber,
            "order": order_ref(order),
            "received_at": order.received_at,
            "entered_by": order.entered_by,
        }),
    )
}

/// `care.key_handover_signed`: a key receipt is signed (called after the signature is
/// stored; [`super::Care::receipt_signed`] finds the municipality and calls it). A receipt
/// not signed is refused, and sends nothing.
pub fn key_handover_signed(
    outbox: &Outbox,
    municipality: &str,
    receipt: &Receipt,
) -> Result<Vec<u64>, OutboxError> {
    let ReceiptState::Signed {
        at,
        handed_by,
        received_by,
        ..
    } = &receipt.state
    else {
        return Err(OutboxError::Encode(format!(
            "receipt {} is not signed",
            receipt.id
        )));
    };
    send(
        outbox,
        municipality,
        KEY_HANDOVER_SIGNED,
        format!("receipt/{}", receipt.id),
        &json!({
            "subscriber": receipt.subscriber,
            "receipt": receipt.id,
            "order": receipt.order,
            "reason": receipt.reason,
            "from": receipt.from,
            "to": receipt.to,
            "items": receipt.items,
            "signed_at": at,
            "handed_by": handed_by,
            "received_by": received_by,
        }),
    )
}

/// The journal note of a handled alarm (flat): who, when, what, outcome, patrols.
#[derive(Debug, Serialize)]
pub struct AlarmNote {
    /// The Call.
    pub call: u64,
    /// The subscriber.
    pub subscriber: String,
    /// The operator who handled it.
    pub operator: Option<String>,
    /// When the alarm came.
    pub opened_at: jiff::Timestamp,
    /// When it was answered.
    pub answered_at: Option<jiff::Timestamp>,
    /// When the Call closed.
    pub closed_at: Option<jiff::Timestamp>,
    /// What happened: the alarm kind.
    pub what: String,
    /// The outcome (`help_not_needed`, `patrol_needed`, ...).
    pub outcome: Option<crate::model::Outcome>,
    /// The patrols sent, with arrival and departure.
    pub patrols: Vec<PatrolVisit>,
}

/// One patrol's visit of a handled alarm.
#[derive(Debug, Serialize)]
pub struct PatrolVisit {
    /// The patrol.
    pub patrol: String,
    /// Its provider.
    pub provider: String,
    /// When it arrived.
    pub arrived_at: Option<jiff::Timestamp>,
    /// When it left (the dispatch ended).
    pub departed_at: Option<jiff::Timestamp>,
}

/// The note of a closed Call.
pub fn alarm_note(call: &Call, dispatches: &[Dispatch]) -> AlarmNote {
    AlarmNote {
        call: call.id,
        subscriber: call.subscriber.clone().unwrap_or_default(),
        operator: call.owner.clone(),
        opened_at: call.opened_at,
        answered_at: call.answered_at,
        closed_at: call.closed_at,
        what: call.kind.clone(),
        outcome: call.outcome,
        patrols: dispatches
            .iter()
            .map(|d| PatrolVisit {
                patrol: d.patrol.clone(),
                provider: d.provider.clone(),
                arrived_at: d.arrived_at,
                departed_at: d.ended_at,
            })
            .collect(),
    }
}

/// The note as a FHIR R4 `Communication` about the Patient (see the module doc).
pub fn communication(note: &AlarmNote, card: &Subscriber) -> serde_json::Value {
    let outcome = note
        .outcome
        .and_then(|o| serde_json::to_value(o).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "none".into());
    let mut lines = vec![
        format!("Alarm {} at {}", note.what, note.opened_at),
        format!("Outcome: {outcome}"),
    ];
    for p in &note.patrols {
        lines.push(format!(
            "Patrol {} ({}): arrived {}, left {}",
            p.patrol,
            p.provider,
            p.arrived_at.map_or("-".into(), |t| t.to_string()),
            p.departed_at.map_or("-".into(), |t| t.to_string()),
        ));
    }
    json!({
        "resourceType": "Communication",
        "status": "completed",
        "identifier": [{"system": "urn:vakt:call", "value": note.call.to_string()}],
        "subject": {
            "identifier": {"system": PERSONNUMMER_OID, "value": card.personal_number},
            "display": card.name,
        },
        "category": [{"text": "alarm handled"}],
        "reasonCode": [{"text": note.what}],
        "sent": note.closed_at,
        "sender": note.operator.as_ref().map(|o| json!({"display": o})),
        "payload": lines.into_iter().map(|l| json!({"contentString": l})).collect::<Vec<_>>(),
    })
}

/// `care.alarm_handled`: a closed Call of the subscriber, as a journal note.
pub fn alarm_handled(
    outbox: &Outbox,
    municipality: &str,
    call: &Call,
    card: &Subscriber,
    dispatches: &[Dispatch],
) -> Result<Vec<u64>, OutboxError> {
    let note = alarm_note(call, dispatches);
    let fhir = communication(&note, card);
    send(
        outbox,
        municipality,
        ALARM_HANDLED,
        format!("call/{}", call.id),
        &json!({"note": note, "communication": fhir}),
    )
}

/// `care.pickup_ordered`, to `installer` (empty when none is known: an endpoint without
/// `matches` still takes it): the end order, the pick-up's deadline, the person's address and
/// phone, the devices, and the keys to collect on the pending receipts.
pub fn pickup_ordered(
    outbox: &Outbox,
    installer: &str,
    order: &Order,
    card: &Subscriber,
    accounts: &[String],
    returns: &[Receipt],
) -> Result<Vec<u64>, OutboxError> {
    outbox.enqueue(OutboxEvent::new(
        PICKUP_ORDERED,
        Recipient::installer(installer),
        format!("order/{}", order.id),
        &json!({
            "order": order_ref(order),
            "pick_up_by": order.due,
            "effective": order.effective,
            "subscriber": card.id,
            "name": card.name,
            "address": card.address,
            "postcode": card.postcode,
            "city": card.city,
            "phone": card.phone,
            "devices": accounts,
            "keys": returns.iter().map(|r| json!({
                "receipt": r.id, "from": r.from, "to": r.to, "items": r.items,
            })).collect::<Vec<_>>(),
        }),
    )?)
}
