//! What the consoles are told: [`LiveEvent`], broadcast by the Call service to every
//! console's live feed, and the views it carries (a Call in the queue, a dispatch, a telecom
//! incident). The views are data only; the dispatch desk and the incidents service fill them.

use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;

use crate::model::{Call, CallState, Dispatch, IncidentDevice, IncidentEntry, IncidentKind};
use crate::outbox::DeliveryView;

/// A Call as the queue shows it (no timeline).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CallSummary {
    /// Call id.
    pub id: u64,
    /// Level, 0 (life-safety) to 4.
    #[schema(value_type = u8)]
    pub priority: crate::model::Priority,
    /// `queued`, `claimed` or `closed`.
    pub state: CallState,
    /// When the first Signal was received (RFC 3339, UTC).
    #[schema(value_type = String)]
    pub opened_at: jiff::Timestamp,
    /// Alarms in the Call (the first and every merged press).
    pub alarm_count: u32,
    /// Subscriber id, if the device is registered to one.
    pub subscriber: Option<String>,
    /// The subscriber's name.
    pub subscriber_name: Option<String>,
    /// The operator who owns it.
    pub owner: Option<String>,
    /// The account of the device that opened it.
    pub account: String,
    /// What kind of alarm, in words.
    pub kind: String,
    /// A restore has arrived.
    pub restored: bool,
    /// When an operator first took it.
    #[schema(value_type = Option<String>)]
    pub answered_at: Option<jiff::Timestamp>,
}

impl CallSummary {
    /// The summary of `call` with a known subscriber name.
    pub fn with_name(call: &Call, subscriber_name: Option<String>) -> CallSummary {
        CallSummary {
            id: call.id,
            priority: call.priority,
            state: call.state,
            opened_at: call.opened_at,
            alarm_count: call.alarm_count,
            subscriber: call.subscriber.clone(),
            subscriber_name,
            owner: call.owner.clone(),
            account: call.account.clone(),
            kind: call.kind.clone(),
            restored: call.restored,
            answered_at: call.answered_at,
        }
    }
}

/// A dispatch as the console shows it: the stored dispatch, its deadlines, and who and
/// where it is for.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DispatchView {
    /// The dispatch.
    #[serde(flatten)]
    #[schema(inline, value_type = Object)]
    pub dispatch: Dispatch,
    /// The arrival deadline (`received_at` + `limit_mins`), once received.
    #[schema(value_type = Option<String>)]
    pub deadline: Option<Timestamp>,
    /// Until when the patrol may confirm receipt, while offered.
    #[schema(value_type = Option<String>)]
    pub receipt_deadline: Option<Timestamp>,
    /// The patrol's name.
    pub patrol_name: String,
    /// The patrol's phone.
    pub patrol_phone: String,
    /// The subscriber's name, if known.
    pub subscriber_name: Option<String>,
    /// Street, postcode and city, if known.
    pub address: Option<String>,
    /// The Call's priority level.
    pub priority: u8,
}

/// An incident's device as the console shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentDeviceView {
    /// The device.
    #[serde(flatten)]
    #[schema(inline)]
    pub device: IncidentDevice,
    /// The subscriber's name.
    pub subscriber_name: Option<String>,
    /// The subscriber's care provider.
    pub care_provider: Option<String>,
    /// The subscriber needs extra visits while the alarm does not work.
    pub needs_extra_visits: bool,
}

/// An incident as the console shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    /// Incident id.
    pub id: u64,
    /// Operator or area.
    pub kind: IncidentKind,
    /// The operator's or the area's name.
    pub key: String,
    /// When it was declared.
    #[schema(value_type = String)]
    pub opened_at: Timestamp,
    /// When it was resolved.
    #[schema(value_type = Option<String>)]
    pub resolved_at: Option<Timestamp>,
    /// Devices of the group that reported when it opened.
    pub population: usize,
    /// Devices not reporting again yet.
    pub silent: usize,
    /// Its devices, those who need extra visits first.
    pub devices: Vec<IncidentDeviceView>,
    /// What happened.
    pub history: Vec<IncidentEntry>,
    /// The notifications sent about it and how their delivery goes.
    #[schema(value_type = Vec<Object>)]
    pub notifications: Vec<DeliveryView>,
}

/// A change pushed to the consoles.
#[derive(Clone, Debug)]
pub enum LiveEvent {
    /// A Call opened or changed.
    Call(Arc<CallSummary>),
    /// A Call was closed.
    Closed(u64),
    /// A dispatch moved (any dispatch, also of a closed Call).
    Dispatch(Arc<DispatchView>, crate::model::DispatchStep),
    /// A telecom incident opened, changed or was resolved.
    Incident(Arc<IncidentView>),
    /// A subscriber's register entry changed (its id), or, with `None`, the register was
    /// imported: the consoles load the cards they show again.
    Subscriber(Option<Arc<str>>),
}
