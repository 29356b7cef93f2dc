//! The events the outbox delivers, and the payloads of the incident events.
//!
//! An [`OutboxEvent`] is general (an event name, its recipient, what it is about and a JSON
//! payload), so any part of vakt can escalate through the outbox; the constructors below
//! build the incident events with the data each recipient needs and no more: the telecom
//! provider gets device accounts, never names; a care provider gets only its own
//! subscribers.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::OutboxError;
use super::config::RecipientKind;
use crate::model::{Incident, IncidentKind};

/// Longest event name (bytes).
pub const MAX_EVENT_BYTES: usize = 64;

/// Longest subject (bytes).
pub const MAX_SUBJECT_BYTES: usize = 128;

/// Longest recipient key (bytes).
pub const MAX_KEY_BYTES: usize = 256;

/// Event: an incident was declared (to the telecom provider of its operator).
pub const INCIDENT_OPENED: &str = "incident.opened";
/// Event: the extra-visit list of one care provider.
pub const INCIDENT_EXTRA_VISITS: &str = "incident.extra_visits";
/// Event: an incident was resolved (to everyone told about it).
pub const INCIDENT_RESOLVED: &str = "incident.resolved";

/// Who an event is for: the kind of recipient and which one (a telecom operator's name, a
/// care provider's id, an installer's name). Endpoints of that kind whose `matches` hold the
/// key (or are empty) get it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// Kind of recipient.
    pub kind: RecipientKind,
    /// Which one.
    pub key: String,
}

impl Recipient {
    /// A telecom provider, by the operator name devices carry.
    pub fn telecom(operator: impl Into<String>) -> Recipient {
        Recipient {
            kind: RecipientKind::Telecom,
            key: operator.into(),
        }
    }

    /// A care provider, by its id.
    pub fn care_provider(id: impl Into<String>) -> Recipient {
        Recipient {
            kind: RecipientKind::CareProvider,
            key: id.into(),
        }
    }

    /// The care system of a municipality, by the municipality's name.
    pub fn care_system(municipality: impl Into<String>) -> Recipient {
        Recipient {
            kind: RecipientKind::CareSystem,
            key: municipality.into(),
        }
    }

    /// An installer, by name.
    pub fn installer(name: impl Into<String>) -> Recipient {
        Recipient {
            kind: RecipientKind::Installer,
            key: name.into(),
        }
    }
}

/// One event to deliver to every endpoint its recipient selects.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEvent {
    /// Event name, sent as `X-Vakt-Event` and in the body: lowercase letters, digits, `.`
    /// and `_` (e.g. `incident.opened`, `work_order.created`).
    pub event: String,
    /// Who it is for.
    pub recipient: Recipient,
    /// What it is about, for the console's lists: `incident/12`, `work_order/7` (see
    /// [`incident_subject`]). No NUL; at most 128 bytes.
    pub subject: String,
    /// The payload: the body's `data`.
    pub data: serde_json::Value,
}

/// The subject of an incident's events.
pub fn incident_subject(id: u64) -> String {
    format!("incident/{id}")
}

impl OutboxEvent {
    /// An event with a payload of any serialisable type.
    pub fn new(
        event: impl Into<String>,
        recipient: Recipient,
        subject: impl Into<String>,
        data: &impl Serialize,
    ) -> Result<OutboxEvent, OutboxError> {
        Ok(OutboxEvent {
            event: event.into(),
            recipient,
            subject: subject.into(),
            data: serde_json::to_value(data).map_err(|e| OutboxError::Encode(e.to_string()))?,
        })
    }

    /// `incident.opened` for the telecom provider of `operator`: the incident and the silent
    /// devices' accounts.
    pub fn incident_opened(
        operator: &str,
        incident: &IncidentSummary,
        accounts: &[String],
    ) -> Result<OutboxEvent, OutboxError> {
        OutboxEvent::new(
            INCIDENT_OPENED,
            Recipient::telecom(operator),
            incident_subject(incident.id),
            &Opened { incident, accounts },
        )
    }

    /// `incident.extra_visits` for one care provider: its subscribers in the incident, those
    /// who need extra visits first, then by name.
    pub fn extra_visits(
        provider: &str,
        incident: &IncidentSummary,
        mut subscribers: Vec<VisitSubscriber>,
    ) -> Result<OutboxEvent, OutboxError> {
        sort_most_in_need_first(&mut subscribers);
        OutboxEvent::new(
            INCIDENT_EXTRA_VISITS,
            Recipient::care_provider(provider),
            incident_subject(incident.id),
            &ExtraVisits {
                incident,
                provider,
                subscribers: &subscribers,
            },
        )
    }

    /// `incident.resolved` for `recipient` (the telecom provider, or a care provider told of
    /// the extra visits): the devices still silent (each now gets its own Call) and, for a
    /// care provider, its subscribers among them (empty for the telecom provider).
    pub fn incident_resolved(
        recipient: Recipient,
        incident: &IncidentSummary,
        resolved_at: Timestamp,
        still_silent: &[String],
        mut subscribers: Vec<VisitSubscriber>,
    ) -> Result<OutboxEvent, OutboxError> {
        sort_most_in_need_first(&mut subscribers);
        let subject = incident_subject(incident.id);
        OutboxEvent::new(
            INCIDENT_RESOLVED,
            recipient,
            subject,
            &Resolved {
                incident,
                resolved_at,
                still_silent,
                subscribers: &subscribers,
            },
        )
    }
}

/// Those who need extra visits first, then by name, then by id.
pub fn sort_most_in_need_first(subscribers: &mut [VisitSubscriber]) {
    subscribers.sort_by(|a, b| {
        b.needs_extra_visits
            .cmp(&a.needs_extra_visits)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// What every incident event says about the incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSummary {
    /// Incident id.
    pub id: u64,
    /// Whether it groups a telecom operator's devices or an area's.
    pub kind: IncidentKind,
    /// The operator's or the area's name.
    pub key: String,
    /// When it was declared.
    pub opened_at: Timestamp,
    /// Silent devices in it.
    pub devices: usize,
    /// Devices of the group that were reporting when it opened.
    pub population: usize,
}

impl IncidentSummary {
    /// The summary of an incident.
    pub fn of(i: &Incident) -> IncidentSummary {
        IncidentSummary {
            id: i.id,
            kind: i.kind,
            key: i.key.clone(),
            opened_at: i.opened_at,
            devices: i.devices.len(),
            population: i.population,
        }
    }
}

/// A subscriber on a care provider's extra-visit list: who, where, how to reach them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitSubscriber {
    /// Subscriber id.
    pub id: String,
    /// Full name.
    pub name: String,
    /// Street address, postcode and city.
    pub address: String,
    /// Phone number.
    pub phone: String,
    /// Needs extra visits while the alarm does not work.
    pub needs_extra_visits: bool,
    /// The silent devices' accounts.
    pub accounts: Vec<String>,
}

#[derive(Serialize)]
struct Opened<'a> {
    incident: &'a IncidentSummary,
    accounts: &'a [String],
}

#[derive(Serialize)]
struct ExtraVisits<'a> {
    incident: &'a IncidentSummary,
    provider: &'a str,
    subscribers: &'a [VisitSubscriber],
}

#[derive(Serialize)]
struct Resolved<'a> {
    incident: &'a IncidentSummary,
    resolved_at: Timestamp,
    still_silent: &'a [String],
    subscribers: &'a [VisitSubscriber],
}

/// Whether an event name may be used (also as a header value).
pub(crate) fn event_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EVENT_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> IncidentSummary {
        IncidentSummary {
            id: 12,
            kind: IncidentKind::TelecomOperator,
            key: "Telia".into(),
            opened_at: Timestamp::from_second(1_800_000_000).unwrap(),
            devices: 25,
            population: 100,
        }
    }

    fn sub(id: &str, name: &str, needs: bool) -> VisitSubscriber {
        VisitSubscriber {
            id: id.into(),
            name: name.into(),
            address: "Storgatan 1, 111 22 Stockholm".into(),
            phone: "+46701234567".into(),
            needs_extra_visits: needs,
            accounts: vec![format!("A-{id}")],
        }
    }

    #[test]
    fn opened_carries_no_personal_data() {
        let e = OutboxEvent::incident_opened("Telia", &incident(), &["1001".into(), "1002".into()])
            .unwrap();
        assert_eq!(e.event, INCIDENT_OPENED);
        assert_eq!(e.recipient, Recipient::telecom("Telia"));
        assert_eq!(e.subject, "incident/12");
        assert_eq!(e.data["incident"]["kind"], "telecom_operator");
        assert_eq!(e.data["incident"]["devices"], 25);
        assert_eq!(e.data["accounts"][1], "1002");
        assert!(e.data.get("subscribers").is_none());
    }

    #[test]
    fn extra_visits_most_in_need_first() {
        let e = OutboxEvent::extra_visits(
            "hemtjanst-norr",
            &incident(),
            vec![
                sub("3", "Bo", false),
                sub("2", "Östen", true),
                sub("1", "Anna", true),
            ],
        )
        .unwrap();
        assert_eq!(e.recipient, Recipient::care_provider("hemtjanst-norr"));
        let ids: Vec<&str> = e.data["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);
        assert_eq!(e.data["subscribers"][0]["needs_extra_visits"], true);
    }

    #[test]
    fn resolved_lists_the_stragglers() {
        let at = Timestamp::from_second(1_800_003_600).unwrap();
        let e = OutboxEvent::incident_resolved(
            Recipient::telecom("Telia"),
            &incident(),
            at,
            &["1001".into()],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(e.event, INCIDENT_RESOLVED);
        assert_eq!(e.data["still_silent"][0], "1001");
        assert_eq!(e.data["resolved_at"], at.to_string());
    }

    #[test]
    fn event_names() {
        for ok in ["incident.opened", "work_order.created", "x1"] {
            assert!(event_name_ok(ok), "{ok}");
        }
        for bad in ["", "Incident", "a b", "a\r\nb", &"x".repeat(65)] {
            assert!(!event_name_ok(bad), "{bad}");
        }
    }
}
