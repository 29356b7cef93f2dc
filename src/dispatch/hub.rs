//! The patrol link's view of vakt ([`PatrolHub`]): tokens checked against the store's
//! hashes, a patrol's live dispatches as `assignment` messages (with the subscriber's card
//! and access), and the patrol's events applied by the [`Dispatcher`] and made durable
//! before they are acknowledged.

use std::sync::Arc;

use crate::dispatch::patrol_link::{EventError, PatrolHub};
use crate::dispatch::service::{DispatchError, Dispatcher};
use crate::dispatch::sla::PatrolEvent;
use crate::dispatch::wire::{
    AccessInfo, AssignmentMsg, ErrorCode, FromPatrol, Secret, SubscriberInfo, health_for_patrol,
};
use crate::model::{Access, Call, Dispatch, Priority};
use crate::store::Store;

/// What a patrol sent to a Call gets besides the person's name and address, as the dispatch
/// dialog shows it before the operator sends it: the same rules as the `assignment`
/// ([`health_for_patrol`]: health notes only with the person's consent).
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct PatrolGets {
    /// The subscriber (id) whose card this is from.
    pub subscriber: String,
    /// The kind of alarm, in words.
    pub reason: String,
    /// The health notes sent (`""`: none, or withheld).
    pub health_notes: String,
    /// The person has not consented to their health notes going to patrols: none are sent.
    pub health_notes_withheld: bool,
    /// How to get in (keys, where kept, digital lock, door code, entry notes).
    pub access: Access,
}

/// The hub over the dispatcher and the store.
pub struct Hub {
    dispatcher: Arc<Dispatcher>,
    store: Store,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub over `dispatcher`, reading Calls, subscribers and tokens from `store`.
    pub fn new(dispatcher: Arc<Dispatcher>, store: Store) -> Hub {
        Hub { dispatcher, store }
    }

    /// The `assignment` message of a dispatch (its `seq` is set by the session).
    pub fn assignment(&self, d: &Dispatch) -> AssignmentMsg {
        let call = self.store.call(d.call).ok().flatten();
        let subscriber = call
            .as_ref()
            .and_then(|c| c.subscriber.as_deref())
            .and_then(|s| self.store.subscriber(s).ok().flatten());
        // No subscriber known (an unknown device): nothing to send, nothing withheld.
        let (health_notes, health_notes_withheld) = subscriber
            .as_ref()
            .map_or((Secret::default(), false), health_for_patrol);
        let provider_keys = call
            .as_ref()
            .and_then(|c| self.home_access(c).ok().flatten())
            .and_then(|home| {
                let provider = self
                    .dispatcher
                    .directory()
                    .patrol(&d.patrol)?
                    .provider
                    .clone();
                Some(crate::dispatch::wire::keys_line(
                    &home.for_provider(&provider),
                ))
            })
            .unwrap_or_default();
        AssignmentMsg {
            seq: 0,
            dispatch: d.id,
            call: d.call,
            state: d.state,
            subscriber: subscriber
                .as_ref()
                .map(SubscriberInfo::from)
                .unwrap_or_else(|| SubscriberInfo {
                    name: call
                        .as_ref()
                        .map_or_else(String::new, |c| format!("Unknown (device {})", c.account)),
                    address: String::new(),
                    postcode: String::new(),
                    city: String::new(),
                    phone: String::new(),
                }),
            access: subscriber
                .as_ref()
                .map(|s| AccessInfo::from(&s.access))
                .unwrap_or_else(|| AccessInfo::from(&crate::model::Access::default())),
            reason: call.as_ref().map_or_else(String::new, |c| c.kind.clone()),
            priority: call.as_ref().map_or(Priority::PERSONAL, |c| c.priority),
            limit_mins: d.limit_mins,
            offered_at: d.offered_at,
            receipt_deadline: (d.state == crate::model::DispatchState::Offered)
                .then(|| {
                    d.offered_at
                        .checked_add(self.dispatcher.sla_options().receipt_timeout)
                        .ok()
                })
                .flatten(),
            received_at: d.received_at,
            deadline: d.deadline(),
            instruction: d.instruction.clone(),
            health_notes,
            health_notes_withheld,
            provider_keys,
        }
    }

    /// The home of `call`'s subscriber and what decides who can get in (`None`: no
    /// subscriber known).
    pub fn home_access(
        &self,
        call: &Call,
    ) -> Result<Option<crate::dispatch::access::HomeAccess>, crate::store::StoreError> {
        let Some(id) = call.subscriber.as_deref() else {
            return Ok(None);
        };
        let Some(subscriber) = self.store.subscriber(id)? else {
            return Ok(None);
        };
        let receipts = self.store.receipts_of(id)?;
        let home_provider = self
            .dispatcher
            .directory()
            .provider_for(&subscriber.care_provider)
            .map(|p| p.id.clone());
        Ok(Some(crate::dispatch::access::HomeAccess {
            subscriber,
            home_provider,
            receipts,
        }))
    }

    /// What a patrol sent to `call` would get (see [`PatrolGets`]); `None` when the Call has
    /// no known subscriber or the register cannot be read.
    pub fn patrol_gets(&self, call: &Call) -> Option<PatrolGets> {
        let s = self
            .store
            .subscriber(call.subscriber.as_deref()?)
            .ok()
            .flatten()?;
        let (notes, withheld) = health_for_patrol(&s);
        Some(PatrolGets {
            subscriber: s.id.clone(),
            reason: call.kind.clone(),
            health_notes: notes.expose().to_owned(),
            health_notes_withheld: withheld,
            access: s.access,
        })
    }
}

/// What a patrol gets for an event on dispatch `id` that the dispatcher refused
/// (`proto/patrol.md` §6 and §10): `not_yours`, `closed` for an ended dispatch, `bad_message`
/// for a step that does not fit (`completed` before `arrived`, `declined` after it); a
/// storage failure is no answer at all (the patrol resends after a reconnect).
pub fn refusal_of(id: u64, e: &DispatchError) -> EventError {
    use crate::dispatch::sla::SlaError;
    use crate::model::DispatchState;
    let refused = |code, message: String| EventError::Refused(code, message);
    match e {
        DispatchError::NotYours(_) | DispatchError::NotFound(_) => refused(
            ErrorCode::NotYours,
            format!("dispatch {id} is not assigned to this patrol"),
        ),
        DispatchError::Sla(SlaError::NotOpen(_)) => refused(
            ErrorCode::Closed,
            format!("dispatch {id} is no longer open"),
        ),
        DispatchError::Sla(SlaError::OutOfOrder {
            event: "completed", ..
        }) => refused(
            ErrorCode::BadMessage,
            format!("dispatch {id} has not arrived: send arrived before completed"),
        ),
        DispatchError::Sla(SlaError::OutOfOrder {
            state: DispatchState::Arrived,
            event: "declined",
        }) => refused(
            ErrorCode::BadMessage,
            format!("dispatch {id} has arrived: complete it instead of declining"),
        ),
        DispatchError::Sla(e @ SlaError::OutOfOrder { .. }) => {
            refused(ErrorCode::BadMessage, format!("dispatch {id}: {e}"))
        }
        DispatchError::UnknownPatrol(_) | DispatchError::AlreadyDispatched { .. } => {
            refused(ErrorCode::BadMessage, format!("dispatch {id}: {e}"))
        }
        DispatchError::Store(e) => {
            tracing::error!(error = %e, dispatch = id, "storing a patrol's event failed");
            EventError::Unavailable
        }
    }
}

impl PatrolHub for Hub {
    fn authenticate(&self, patrol: &str, token: &str) -> Result<(), EventError> {
        if self.dispatcher.patrol_name(patrol).is_none() {
            return Err(ErrorCode::UnknownPatrol.into());
        }
        let hash = crate::store::token_hash(token);
        match self.store.patrol_token_matches(patrol, &hash) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ErrorCode::BadToken.into()),
            // vakt's failure, not the patrol's token.
            Err(e) => {
                tracing::error!(error = %e, "reading patrol tokens failed");
                Err(EventError::Unavailable)
            }
        }
    }

    fn reserve_seqs(&self, patrol: &str, count: u64) -> Option<u64> {
        let first = self.store.reserve_patrol_seqs(patrol, count);
        match first {
            Ok(first) => Some(first),
            Err(e) => {
                tracing::error!(error = %e, "reserving the patrol's seq numbers failed");
                None
            }
        }
    }

    fn open_assignments(&self, patrol: &str) -> Vec<AssignmentMsg> {
        self.dispatcher
            .live_for(patrol)
            .iter()
            .map(|d| self.assignment(d))
            .collect()
    }

    fn event(&self, patrol: &str, ev: &FromPatrol) -> Result<(), EventError> {
        let now = jiff::Timestamp::now();
        let Some((id, at, event)) = patrol_event_of(ev) else {
            // Session messages are the link's business.
            return Ok(());
        };
        // An event made offline counts from when it was made, never from the future.
        self.dispatcher
            .patrol_event(patrol, id, event, at.min(now))
            .map_err(|e| refusal_of(id, &e))?;
        // The dispatch's change was durable when the dispatcher wrote it.
        Ok(())
    }
}

/// The dispatch, the time and the event of a patrol's message; `None` for session messages
/// (`hello`, `ack`, `ping`).
pub fn patrol_event_of(ev: &FromPatrol) -> Option<(u64, jiff::Timestamp, PatrolEvent)> {
    Some(match ev {
        FromPatrol::Received { dispatch, at, .. } => (*dispatch, *at, PatrolEvent::Received),
        FromPatrol::Accepted { dispatch, at, .. } => (*dispatch, *at, PatrolEvent::Accepted),
        FromPatrol::Declined {
            dispatch,
            at,
            reason,
            ..
        } => (
            *dispatch,
            *at,
            PatrolEvent::Declined {
                reason: reason.clone(),
            },
        ),
        FromPatrol::Arrived {
            dispatch,
            at,
            method,
            ..
        } => (*dispatch, *at, PatrolEvent::Arrived { method: *method }),
        FromPatrol::Completed {
            dispatch,
            at,
            outcome,
            note,
            ..
        } => (
            *dispatch,
            *at,
            PatrolEvent::Completed {
                outcome: outcome.as_str().to_owned(),
                note: note.clone(),
            },
        ),
        FromPatrol::Hello { .. } | FromPatrol::Ack { .. } | FromPatrol::Ping { .. } => {
            return None;
        }
    })
}
