//! The dispatch desk: where operators, patrols, lock systems and the clocks meet the
//! [`Dispatcher`]. Every change of a dispatch goes through [`Desk::after`], which tells
//! everyone who must know, in this order:
//!
//! 1. the patrol, over its link (`assignment` when offered and after every change of its
//!    state, `sla_warning`, `cancelled`), kept until the next [`Desk::flush`] has made the
//!    change durable;
//! 2. the Call's timeline (a [`TimelineEvent::Dispatch`] line, dated like the step; also
//!    after the Call was closed);
//! 3. the consoles (a live `dispatch` message) and the metrics.
//!
//! The desk is the link's [`PatrolHub`]: a patrol's event is applied, its timeline line and
//! the dispatch are made durable, and only then is the event acknowledged (and the patrol's
//! `assignment` in its new state follows the `ack`).
//!
//! A dispatch that its patrol declines or does not confirm in time is offered to the next
//! patrol of the Call's route on shift that has not been tried for the Call (by the same
//! operator), and the operator sees both steps. When nobody is left the line says who was
//! passed over and why, and a Call already closed comes back to the queue at the head of its
//! level ([`Calls::reopen`]). `now` is a parameter of everything here except the patrol
//! link's entry point, which reads the clock (and never lets a patrol's time be in the
//! future).
//!
//! Each patrol the operator may pick is shown with what its provider has to get into the
//! home ([`crate::dispatch::access`]); one whose provider has no key and no lock access is
//! sent only when the operator confirms it ([`DeskError::NoAccess`]), which the Call's
//! timeline says.

use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use tokio::sync::Notify;

use crate::calls::{Calls, LiveEvent};
use crate::dispatch::hub::{self, Hub};
use crate::dispatch::patrol_link::{EventError, Link, PatrolHub};
use crate::dispatch::routing;
use crate::dispatch::service::{DispatchError, Dispatcher, Target};
use crate::dispatch::sla::{ClockEvent, PatrolEvent, SlaOptions};
use crate::dispatch::wire::{AssignmentMsg, CancelCause, FromPatrol, ToPatrol};
use crate::model::keys::PatrolAccess;
use crate::model::{Call, CallState, Dispatch, DispatchState, DispatchStep, TimelineEvent};
use crate::store::{Store, StoreError};
use crate::telemetry::DispatchMetrics;

/// Why the desk refused an action.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// No such Call (or no such open Call, for a new dispatch).
    #[error("no open call {0}")]
    NoCall(u64),
    /// Only the operator who took the Call dispatches it.
    #[error("call {call} is not yours (owner: {owner})")]
    NotOwner {
        /// The Call.
        call: u64,
        /// Who has it (empty when nobody: take it first).
        owner: String,
    },
    /// No patrol given, and none of the route is on shift.
    #[error("no patrol of this call's route is on shift now: pick one")]
    NoneOnShift,
    /// A patrol is already on its way to (or at) the person's home for another Call: a
    /// second one is sent only when the operator confirms it.
    #[error(
        "patrol {patrol} is already on its way to this home (call {call}): confirm to send another"
    )]
    HomeHasPatrol {
        /// That dispatch.
        dispatch: u64,
        /// Its patrol.
        patrol: String,
        /// Its Call.
        call: u64,
    },
    /// The patrol's provider holds no key and has no lock access to the home: it is sent
    /// only when the operator confirms it.
    #[error(
        "patrol {name} ({patrol}): its provider {provider} has no key and no lock access to this home: confirm to send it"
    )]
    NoAccess {
        /// The patrol.
        patrol: String,
        /// Its name.
        name: String,
        /// Its provider's name.
        provider: String,
    },
    /// Refused by the dispatcher.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Call service has stopped (shutting down).
    #[error(transparent)]
    Calls(#[from] crate::calls::CallsError),
}

pub use crate::calls::DispatchView;

/// A patrol as it is now: who, whether on shift, whether its app is connected.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PatrolNow {
    /// Patrol id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its provider (id).
    pub provider: String,
    /// Its phone.
    pub phone: String,
    /// Whether one of its shifts covers now.
    pub on_shift: bool,
    /// The shift that covers now, e.g. `evening 15:00-23:00`.
    pub shift: Option<String>,
    /// Whether its app is connected.
    pub connected: bool,
}

/// A patrol the operator may pick for a Call.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PatrolChoice {
    /// The patrol now.
    #[serde(flatten)]
    #[schema(inline)]
    pub patrol: PatrolNow,
    /// Dispatches it has not completed.
    pub open_assignments: usize,
    /// Offered by the Call's route (false: another patrol the operator may still pick).
    pub routed: bool,
    /// Its place in the route (0 = first), for routed patrols.
    pub rank: Option<usize>,
    /// What its provider has to get into the home (`null`: no subscriber known).
    pub access: Option<PatrolAccess>,
    /// Its provider holds no key and has no lock access: sending it needs the operator's
    /// confirmation.
    pub no_access: bool,
}

/// The patrols for a Call: the route's first, the suggestion, the others after.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Choices {
    /// The subscriber's care provider (as the register has it).
    pub provider: String,
    /// The subscriber's area.
    pub area: String,
    /// The patrol to send: the route's first on shift.
    pub suggested: Option<String>,
    /// Routed patrols in route order (on shift first), then every other patrol (on shift
    /// first).
    pub patrols: Vec<PatrolChoice>,
    /// What the patrol will get besides the operator's instruction (`null`: no subscriber
    /// known).
    pub sends: Option<hub::PatrolGets>,
}

/// A patrol on the board.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PatrolBoard {
    /// The patrol now.
    #[serde(flatten)]
    #[schema(inline)]
    pub patrol: PatrolNow,
    /// Provider name.
    pub provider_name: String,
    /// Names of the areas covered.
    pub areas: Vec<String>,
    /// Its dispatches not yet completed.
    pub assignments: Vec<DispatchView>,
}

/// What a lock system reported, and what came of it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LockOutcome {
    /// The lock.
    pub lock_id: String,
    /// `arrived` (an open dispatch was marked arrived) or `ignored`.
    pub result: &'static str,
    /// The dispatch marked arrived.
    pub dispatch: Option<u64>,
    /// Why it was ignored.
    pub reason: Option<String>,
}

/// The desk.
pub struct Desk {
    dispatcher: Arc<Dispatcher>,
    hub: Hub,
    link: Link,
    calls: Arc<Calls>,
    store: Store,
    tz: TimeZone,
    opts: SlaOptions,
    metrics: DispatchMetrics,
    /// Woken when a clock may be due sooner than the ticker thought.
    pub wake: Arc<Notify>,
    /// Messages for patrols about changes not yet durable: sent by the next flush, once
    /// what they tell of is stored.
    pushes: std::sync::Mutex<Vec<(String, ToPatrol)>>,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk").finish_non_exhaustive()
    }
}

/// The words of an operator's dispatch line about its instruction (empty without one).
fn instruction_words(d: &Dispatch) -> String {
    if d.instruction.is_empty() {
        String::new()
    } else {
        format!("instruction: {}", d.instruction)
    }
}

/// Whole minutes until the arrival deadline, rounded up (0 once it has passed).
fn minutes_left(d: &Dispatch, now: Timestamp) -> u32 {
    let secs = d
        .deadline()
        .map_or(0, |dl| (dl.as_second() - now.as_second()).max(0));
    u32::try_from((secs + 59) / 60).unwrap_or(u32::MAX)
}

fn shift_text(s: &crate::model::Shift) -> String {
    format!(
        "{} {}-{}",
        s.name,
        s.start.strftime("%H:%M"),
        s.end.strftime("%H:%M")
    )
}

impl Desk {
    /// Loads the directory and the live dispatches.
    pub fn start(
        store: Store,
        calls: Arc<Calls>,
        link: Link,
        tz: TimeZone,
        opts: SlaOptions,
    ) -> Result<Desk, StoreError> {
        let dispatcher = Arc::new(Dispatcher::start(store.clone(), tz.clone(), opts.clone())?);
        let metrics = DispatchMetrics::new();
        let desk = Desk {
            hub: Hub::new(dispatcher.clone(), store.clone()),
            dispatcher,
            link,
            calls,
            store,
            tz,
            opts,
            metrics,
            wake: Arc::new(Notify::new()),
            pushes: std::sync::Mutex::new(Vec::new()),
        };
        desk.gauges();
        Ok(desk)
    }

    /// The dispatcher (for its read-only views).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The Call service the desk writes timelines to.
    pub fn calls(&self) -> &Arc<Calls> {
        &self.calls
    }

    /// The patrols' link.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The clocks' settings.
    pub fn sla_options(&self) -> &SlaOptions {
        &self.opts
    }

    /// Reloads the directory from the store (after an import).
    pub fn reload_directory(&self) -> Result<(), StoreError> {
        self.dispatcher.set_directory(self.store.directory()?);
        Ok(())
    }

    fn gauges(&self) {
        self.metrics.live.set(self.dispatcher.live_count() as f64);
    }

    /// An open Call from triage, or any Call from the store.
    fn call(&self, id: u64) -> Result<Option<Call>, StoreError> {
        match self.calls.triage.get(id) {
            Some(c) => Ok(Some(c)),
            None => self.store.call(id),
        }
    }

    /// The dispatches of Calls other than `except` whose patrol is on its way to
    /// `subscriber`'s home or there (offered, received, accepted, arrived), oldest first.
    pub fn live_to_home(
        &self,
        subscriber: &str,
        except: u64,
    ) -> Result<Vec<DispatchView>, DeskError> {
        // The dispatcher's live dispatches (in memory, bounded by what is under way).
        let live = self
            .dispatcher
            .live_all()
            .into_iter()
            .filter(|d| d.call != except && (d.is_open() || d.state == DispatchState::Arrived));
        let mut out = Vec::new();
        for d in live {
            let same = self
                .call(d.call)?
                .is_some_and(|c| c.subscriber.as_deref() == Some(subscriber));
            if same {
                out.push(self.view(&d));
            }
        }
        out.sort_by_key(|v| v.dispatch.offered_at);
        Ok(out)
    }

    /// Where a Call is routed: its subscriber's care provider and area.
    fn target_for(&self, call: &Call) -> Result<Target, StoreError> {
        let sub = match &call.subscriber {
            Some(s) => self.store.subscriber(s)?,
            None => None,
        };
        Ok(Target {
            call: call.id,
            provider: sub
                .as_ref()
                .map_or_else(String::new, |s| s.care_provider.clone()),
            area: sub.map_or_else(String::new, |s| s.area),
        })
    }

    /// The console's view of a dispatch.
    pub fn view(&self, d: &Dispatch) -> DispatchView {
        let call = self.call(d.call).ok().flatten();
        let sub = call
            .as_ref()
            .and_then(|c| c.subscriber.as_deref())
            .and_then(|s| self.store.subscriber(s).ok().flatten());
        let (patrol_name, patrol_phone) = {
            let dir = self.dispatcher.directory();
            dir.patrol(&d.patrol).map_or_else(
                || (d.patrol.clone(), String::new()),
                |p| (p.name.clone(), p.phone.clone()),
            )
        };
        DispatchView {
            deadline: d.deadline(),
            receipt_deadline: (d.state == DispatchState::Offered)
                .then(|| d.offered_at.checked_add(self.opts.receipt_timeout).ok())
                .flatten(),
            patrol_name,
            patrol_phone,
            subscriber_name: sub.as_ref().map(|s| s.name.clone()),
            address: sub.as_ref().map(|s| {
                [s.address.as_str(), &format!("{} {}", s.postcode, s.city)]
                    .iter()
                    .map(|p| p.trim())
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
            priority: call.as_ref().map_or(0, |c| c.priority.0),
            dispatch: d.clone(),
        }
    }

    fn patrol_now(&self, p: &crate::model::Patrol, now: Timestamp) -> PatrolNow {
        let shift = routing::on_shift(p, now, &self.tz);
        PatrolNow {
            id: p.id.clone(),
            name: p.name.clone(),
            provider: p.provider.clone(),
            phone: p.phone.clone(),
            on_shift: shift.is_some(),
            shift: shift.map(shift_text),
            connected: self.link.connected(&p.id),
        }
    }

    /// The patrols an operator may send to the Call at `now`.
    pub fn choices(&self, call_id: u64, now: Timestamp) -> Result<Choices, DeskError> {
        let call = self.call(call_id)?.ok_or(DeskError::NoCall(call_id))?;
        let t = self.target_for(&call)?;
        let routed = self.dispatcher.candidates(&t, now);
        let suggested = routed.iter().find(|c| c.on_shift).map(|c| c.patrol.clone());
        let dir = self.dispatcher.directory();
        let mut order: Vec<(String, bool, Option<usize>)> = routed
            .iter()
            .enumerate()
            .map(|(i, c)| (c.patrol.clone(), true, Some(i)))
            .collect();
        let mut others: Vec<(bool, String)> = dir
            .patrols
            .iter()
            .filter(|p| !routed.iter().any(|c| c.patrol == p.id))
            .map(|p| (routing::on_shift(p, now, &self.tz).is_none(), p.id.clone()))
            .collect();
        others.sort();
        order.extend(others.into_iter().map(|(_, id)| (id, false, None)));
        let home = self.hub.home_access(&call)?;
        let patrols = order
            .into_iter()
            .filter_map(|(id, routed, rank)| {
                let p = dir.patrol(&id)?;
                let access = home.as_ref().map(|h| h.for_provider(&p.provider));
                Some(PatrolChoice {
                    patrol: self.patrol_now(p, now),
                    open_assignments: self.dispatcher.live_for(&p.id).len(),
                    routed,
                    rank,
                    no_access: access.as_ref().is_some_and(PatrolAccess::none),
                    access,
                })
            })
            .collect();
        Ok(Choices {
            provider: t.provider,
            area: t.area,
            suggested,
            patrols,
            sends: self.hub.patrol_gets(&call),
        })
    }

    /// What `patrol`'s provider has to get into the home of Call `call_id`'s subscriber
    /// (`None`: no subscriber known, or no such patrol).
    pub fn access_of(&self, call_id: u64, patrol: &str) -> Result<Option<PatrolAccess>, DeskError> {
        let call = self.call(call_id)?.ok_or(DeskError::NoCall(call_id))?;
        self.access_for_call(&call, patrol)
    }

    fn access_for_call(
        &self,
        call: &Call,
        patrol: &str,
    ) -> Result<Option<PatrolAccess>, DeskError> {
        let Some(provider) = self
            .dispatcher
            .directory()
            .patrol(patrol)
            .map(|p| p.provider.clone())
        else {
            return Ok(None);
        };
        Ok(self
            .hub
            .home_access(call)?
            .map(|h| h.for_provider(&provider)))
    }

    /// Every patrol of the directory with its live dispatches.
    pub fn board(&self, now: Timestamp) -> Vec<PatrolBoard> {
        let dir = self.dispatcher.directory();
        dir.patrols
            .iter()
            .map(|p| PatrolBoard {
                patrol: self.patrol_now(p, now),
                provider_name: dir
                    .provider(&p.provider)
                    .map_or_else(|| p.provider.clone(), |x| x.name.clone()),
                areas: p
                    .areas
                    .iter()
                    .map(|a| dir.area(a).map_or_else(|| a.clone(), |x| x.name.clone()))
                    .collect(),
                assignments: self
                    .dispatcher
                    .live_for(&p.id)
                    .iter()
                    .map(|d| self.view(d))
                    .collect(),
            })
            .collect()
    }

    /// The operator who owns the open Call dispatches it to `patrol`, or to the suggested
    /// patrol when `None`.
    pub fn dispatch(
        &self,
        call_id: u64,
        patrol: Option<&str>,
        operator: &str,
        now: Timestamp,
    ) -> Result<DispatchView, DeskError> {
        self.dispatch_to(call_id, patrol, operator, false, false, "", now)
    }

    /// [`Desk::dispatch`], sending a second patrol to a home that has one on its way for
    /// another Call only when `second` (the operator confirmed it); otherwise that is refused
    /// ([`DeskError::HomeHasPatrol`]); and a patrol whose provider has no key and no lock
    /// access to the home only when `no_access` (the operator confirmed that too; otherwise
    /// [`DeskError::NoAccess`]), which the timeline's line says. `instruction` (may be empty)
    /// is the operator's word to the patrol: kept on the dispatch, on the timeline's line and
    /// in the assignment.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_to(
        &self,
        call_id: u64,
        patrol: Option<&str>,
        operator: &str,
        second: bool,
        no_access: bool,
        instruction: &str,
        now: Timestamp,
    ) -> Result<DispatchView, DeskError> {
        let call = self
            .calls
            .triage
            .get(call_id)
            .filter(|c| c.state != CallState::Closed)
            .ok_or(DeskError::NoCall(call_id))?;
        if call.owner.as_deref() != Some(operator) {
            return Err(DeskError::NotOwner {
                call: call_id,
                owner: call.owner.unwrap_or_default(),
            });
        }
        if !second
            && let Some(subscriber) = &call.subscriber
            && let Some(live) = self.live_to_home(subscriber, call_id)?.into_iter().next()
        {
            return Err(DeskError::HomeHasPatrol {
                dispatch: live.dispatch.id,
                patrol: live.dispatch.patrol,
                call: live.dispatch.call,
            });
        }
        let t = self.target_for(&call)?;
        let patrol = match patrol {
            Some(p) => p.to_owned(),
            None => self
                .dispatcher
                .candidates(&t, now)
                .into_iter()
                .find(|c| c.on_shift)
                .map(|c| c.patrol)
                .ok_or(DeskError::NoneOnShift)?,
        };
        let without_access = self
            .access_for_call(&call, &patrol)?
            .is_some_and(|a| a.none());
        if without_access && !no_access {
            let provider = {
                let dir = self.dispatcher.directory();
                dir.patrol(&patrol)
                    .map(|p| {
                        dir.provider(&p.provider)
                            .map_or_else(|| p.provider.clone(), |x| x.name.clone())
                    })
                    .unwrap_or_default()
            };
            let name = self.patrol_name(&patrol);
            return Err(DeskError::NoAccess {
                patrol,
                name,
                provider,
            });
        }
        let d = self
            .dispatcher
            .dispatch(&t, &patrol, operator, instruction, now)?;
        self.metrics.offered("operator");
        let mut words = instruction_words(&d);
        if without_access {
            let confirmed = "no key and no lock access: sent as the operator confirmed";
            words = if words.is_empty() {
                confirmed.to_owned()
            } else {
                format!("{words}; {confirmed}")
            };
        }
        self.after(&d, DispatchStep::Offered, Some(operator), words, now)?;
        Ok(self.view(&d))
    }

    /// An operator withdraws an open dispatch.
    pub fn cancel(
        &self,
        id: u64,
        reason: &str,
        operator: &str,
        now: Timestamp,
    ) -> Result<DispatchView, DeskError> {
        let d = self.dispatcher.cancel(id, reason, now)?;
        self.after(
            &d,
            DispatchStep::Cancelled,
            Some(operator),
            reason.to_owned(),
            now,
        )?;
        Ok(self.view(&d))
    }

    /// A patrol's event at `now`, applied and told to everyone (not yet durable: see
    /// [`PatrolHub::event`] and the API, which flush).
    pub fn patrol_event(
        &self,
        patrol: &str,
        id: u64,
        ev: PatrolEvent,
        now: Timestamp,
    ) -> Result<Dispatch, DeskError> {
        self.patrol_event_at(patrol, id, ev, now, now)
    }

    /// A patrol's event made at `at` (an event sent late, from a lift, counts from when it
    /// was made; at the latest `now`), handled at `now`. Its step and its timeline line are
    /// dated alike: `at`, but never before the dispatch's last known moment. A patrol the
    /// Call is passed to after a decline is offered it at `now`.
    pub fn patrol_event_at(
        &self,
        patrol: &str,
        id: u64,
        ev: PatrolEvent,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<Dispatch, DeskError> {
        let applied = self
            .dispatcher
            .apply_patrol_event(patrol, id, ev.clone(), at.min(now))?;
        let (before, d, at) = (applied.before, applied.after, applied.at);
        if before == d {
            // A repeat (a patrol resending what it was not sure arrived): nothing new.
            return Ok(d);
        }
        let (step, mut detail) = match &ev {
            PatrolEvent::Received => (DispatchStep::Received, String::new()),
            PatrolEvent::Accepted => (DispatchStep::Accepted, String::new()),
            PatrolEvent::Declined { reason } => (DispatchStep::Declined, reason.clone()),
            PatrolEvent::Arrived { method } => (DispatchStep::Arrived, method.as_str().to_owned()),
            PatrolEvent::Completed { outcome, note } => (
                DispatchStep::Completed,
                if note.is_empty() {
                    outcome.clone()
                } else {
                    format!("{outcome}: {note}")
                },
            ),
        };
        if before.arrived_at.is_none() && d.arrived_at.is_some() {
            self.metrics.arrived(
                d.arrival_method.unwrap_or(crate::model::ArrivalMethod::App),
                crate::dispatch::sla::time_to_arrival(&d),
            );
        }
        if step != DispatchStep::Declined {
            self.after(&d, step, None, detail, at)?;
            return Ok(d);
        }
        // Declined: the next untried patrol of the route on shift gets it, and the operator
        // sees both; with nobody left the Call comes back to the queue.
        let (next, words) = match self.call(d.call)? {
            Some(call) => {
                let t = self.target_for(&call)?;
                let (next, words) = self.dispatcher.fallback(&t, &d, now)?;
                (next.map(|p| (t, p)), words)
            }
            None => (None, "not passed on: the call is not known".to_owned()),
        };
        let reason = detail.clone();
        detail = if detail.is_empty() {
            words.clone()
        } else {
            format!("{detail}; {words}")
        };
        self.after(&d, step, None, detail, at)?;
        match next {
            Some((t, patrol)) => {
                self.pass_on(&d, &t, &patrol, now)?;
            }
            None => {
                let what = if reason.is_empty() {
                    "declined".to_owned()
                } else {
                    format!("declined ({reason})")
                };
                self.back_to_queue(&d, &what, &words, now)?;
            }
        }
        Ok(d)
    }

    /// A dispatch ended without a visit and nobody is left to take it: if its Call was
    /// closed, it comes back to the queue at the head of its level (every console sees it),
    /// with a line saying what happened (`what` the patrol did, `words` who was passed over).
    /// An open Call stays with its operator, whose timeline already says so.
    fn back_to_queue(
        &self,
        d: &Dispatch,
        what: &str,
        words: &str,
        now: Timestamp,
    ) -> Result<(), DeskError> {
        let reason = format!(
            "dispatch {} to {} {what}; {words}. A patrol is still needed",
            d.id,
            self.patrol_name(&d.patrol)
        );
        if self.calls.reopen(d.call, &reason, now)?.is_some() {
            self.metrics.reopened.increment(1);
        }
        Ok(())
    }

    /// Offers a Call whose dispatch ended without a visit (declined) to `patrol`, by the same
    /// operator.
    fn pass_on(
        &self,
        ended: &Dispatch,
        t: &Target,
        patrol: &str,
        now: Timestamp,
    ) -> Result<Option<Dispatch>, DeskError> {
        // The operator's instruction goes with it.
        match self
            .dispatcher
            .dispatch(t, patrol, &ended.operator, &ended.instruction, now)
        {
            Ok(d) => {
                self.metrics.offered("fallback");
                let detail = self.warned(
                    &d,
                    format!("after dispatch {} to {}", ended.id, ended.patrol),
                )?;
                self.after(&d, DispatchStep::Offered, None, detail, now)?;
                Ok(Some(d))
            }
            // An operator dispatched it again meanwhile: theirs stands.
            Err(DispatchError::AlreadyDispatched { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A lock system reports that `lock_id` was opened at `at` with `credential` (a patrol
    /// id). An opening of the subscriber's lock by the patrol of a live dispatch of theirs
    /// marks it arrived (method `lock`).
    pub fn lock_opened(
        &self,
        lock_id: &str,
        at: Timestamp,
        credential: &str,
        now: Timestamp,
    ) -> Result<LockOutcome, DeskError> {
        let ignored = |reason: &str| {
            self.metrics.lock_event("ignored");
            Ok(LockOutcome {
                lock_id: lock_id.to_owned(),
                result: "ignored",
                dispatch: None,
                reason: Some(reason.to_owned()),
            })
        };
        let lock_id = lock_id.trim();
        if lock_id.is_empty() {
            return ignored("no lock id");
        }
        let at = at.min(now);
        let mut found = None;
        for d in self.dispatcher.live_for(credential) {
            let Some(call) = self.call(d.call)? else {
                continue;
            };
            let Some(sub) = call.subscriber.as_deref() else {
                continue;
            };
            let Some(sub) = self.store.subscriber(sub)? else {
                continue;
            };
            if sub.access.digital_lock_id.trim() == lock_id {
                found = Some(d);
                break;
            }
        }
        let Some(d) = found else {
            return ignored("no live dispatch of this credential to this lock");
        };
        if d.arrived_at.is_some() {
            return ignored("already arrived");
        }
        if at < d.offered_at {
            return ignored("opened before the dispatch");
        }
        let d = self.patrol_event_at(
            credential,
            d.id,
            PatrolEvent::Arrived {
                method: crate::model::ArrivalMethod::Lock,
            },
            at,
            now,
        )?;
        self.metrics.lock_event("arrived");
        Ok(LockOutcome {
            lock_id: lock_id.to_owned(),
            result: "arrived",
            dispatch: Some(d.id),
            reason: None,
        })
    }

    /// A subscriber's alarm unit reports a visitor at the home (SCAIP): the presence button
    /// (`check_out` false, status 0088) marks the subscriber's live dispatch that has not
    /// arrived yet arrived (method `presence`) at `at`; the check-out (status 0111,
    /// intervention completed) marks the arrived one completed. A check-out with no presence
    /// before it marks the dispatch arrived at the check-out time, then completed. Returns
    /// the dispatch changed, if any (a home with no live dispatch, e.g. a planned visit,
    /// changes nothing: the press is on the Call's timeline all the same).
    pub fn presence(
        &self,
        subscriber: &str,
        check_out: bool,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<Option<Dispatch>, DeskError> {
        let at = at.min(now);
        let mut mine = Vec::new();
        for d in self.dispatcher.live_all() {
            if d.offered_at > at {
                continue;
            }
            let Some(call) = self.call(d.call)? else {
                continue;
            };
            if call.subscriber.as_deref() == Some(subscriber) {
                mine.push(d);
            }
        }
        // The oldest dispatch first: the patrol sent first is the one at the door.
        let target = if check_out {
            mine.iter()
                .find(|d| d.arrived_at.is_some())
                .or_else(|| mine.first())
        } else {
            mine.iter().find(|d| d.arrived_at.is_none())
        };
        let Some(d) = target.cloned() else {
            return Ok(None);
        };
        let mut d = d;
        // An arrival also counts as receipt (a patrol at the door before confirming it).
        if d.arrived_at.is_none() {
            d = self.patrol_event_at(
                &d.patrol,
                d.id,
                PatrolEvent::Arrived {
                    method: crate::model::ArrivalMethod::Presence,
                },
                at,
                now,
            )?;
        }
        if check_out {
            d = self.patrol_event_at(
                &d.patrol,
                d.id,
                PatrolEvent::Completed {
                    outcome: "checked out".into(),
                    note: "check-out at the alarm unit".into(),
                },
                at,
                now,
            )?;
        }
        Ok(Some(d))
    }

    /// Runs the clocks to `now`: warnings (to the patrol and the console), breaches, and
    /// receipt timeouts (passed to the next patrol).
    pub fn tick(&self, now: Timestamp) -> Result<usize, DeskError> {
        let changes = self.dispatcher.tick(now)?;
        let n = changes.len();
        for ch in changes {
            let d = &ch.dispatch;
            match ch.clock {
                Some(ClockEvent::Warning { .. }) => {
                    let left = minutes_left(d, now);
                    self.after(
                        d,
                        DispatchStep::Warning,
                        None,
                        format!("{left} min left"),
                        now,
                    )?;
                }
                Some(ClockEvent::Breached) => {
                    self.after(d, DispatchStep::Breached, None, String::new(), now)?;
                }
                Some(ClockEvent::ReceiptTimeout) => {
                    // The dispatch's note says where it went, or who was passed over.
                    self.after(d, DispatchStep::ReceiptTimeout, None, d.note.clone(), now)?;
                    match &ch.passed_to {
                        Some(p) => {
                            self.metrics.offered("fallback");
                            let detail = self.warned(
                                p,
                                format!("after dispatch {} to {} was not received", d.id, d.patrol),
                            )?;
                            self.after(p, DispatchStep::Offered, None, detail, now)?;
                        }
                        None => {
                            self.back_to_queue(d, "was not received in time", &d.note, now)?;
                        }
                    }
                }
                None => {}
            }
        }
        Ok(n)
    }

    /// The line of an offer that passed on by itself (a decline, a receipt not confirmed in
    /// time): nobody confirmed it, so when the new patrol's provider holds no key and has no
    /// lock access to the home, the line says so for the operator, who must see how the
    /// patrol gets in (the route's patrols are normally all of one provider, so preferring
    /// another patrol would seldom help).
    fn warned(&self, d: &Dispatch, detail: String) -> Result<String, DeskError> {
        let Some(call) = self.call(d.call)? else {
            return Ok(detail);
        };
        match self.access_for_call(&call, &d.patrol)? {
            Some(a) if a.none() => Ok(format!(
                "{detail}; no key and no lock access: check how {} gets in",
                self.patrol_name(&d.patrol)
            )),
            _ => Ok(detail),
        }
    }

    /// The next moment [`Desk::tick`] may have something to do.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.dispatcher.next_due()
    }

    /// Tells the patrol, the Call's timeline, the consoles and the metrics about a step.
    pub fn after(
        &self,
        d: &Dispatch,
        step: DispatchStep,
        user: Option<&str>,
        detail: String,
        now: Timestamp,
    ) -> Result<(), DeskError> {
        match step {
            DispatchStep::Offered => {
                self.push(
                    &d.patrol,
                    ToPatrol::Assignment(Box::new(self.assignment(d))),
                );
                self.wake.notify_one();
            }
            DispatchStep::Warning => {
                if let Some(deadline) = d.deadline() {
                    self.push(
                        &d.patrol,
                        ToPatrol::SlaWarning {
                            seq: 0,
                            dispatch: d.id,
                            minutes_left: minutes_left(d, now),
                            deadline,
                        },
                    );
                }
            }
            DispatchStep::Cancelled => self.push(
                &d.patrol,
                ToPatrol::Cancelled {
                    seq: 0,
                    dispatch: d.id,
                    cause: CancelCause::Withdrawn,
                    reason: if detail.is_empty() {
                        "withdrawn by the alarm centre".into()
                    } else {
                        detail.clone()
                    },
                },
            ),
            DispatchStep::ReceiptTimeout => self.push(
                &d.patrol,
                ToPatrol::Cancelled {
                    seq: 0,
                    dispatch: d.id,
                    cause: CancelCause::ReceiptTimeout,
                    // The dispatch's note says whether another patrol has it.
                    reason: if d.note.starts_with("passed to") {
                        "receipt not confirmed in time: given to another patrol".into()
                    } else {
                        "receipt not confirmed in time: the alarm centre takes it back".into()
                    },
                },
            ),
            // Received / accepted / arrived: the patrol gets the assignment in its new state
            // (after the ack of its own event, or when the lock or the alarm unit told of the
            // arrival). They open the arrival clock or end it: the next moment due may be
            // sooner or later.
            DispatchStep::Received | DispatchStep::Accepted | DispatchStep::Arrived => {
                self.push(
                    &d.patrol,
                    ToPatrol::Assignment(Box::new(self.assignment(d))),
                );
                self.wake.notify_one();
            }
            _ => {}
        }
        self.record(d, step, user, detail, now)?;
        self.metrics.step(step);
        self.gauges();
        Ok(())
    }

    /// A patrol's name from the directory, or its id.
    pub fn patrol_name(&self, patrol: &str) -> String {
        self.dispatcher
            .patrol_name(patrol)
            .unwrap_or_else(|| patrol.to_owned())
    }

    /// The timeline line and the live message of a step.
    fn record(
        &self,
        d: &Dispatch,
        step: DispatchStep,
        user: Option<&str>,
        detail: String,
        now: Timestamp,
    ) -> Result<(), DeskError> {
        let patrol_name = self.patrol_name(&d.patrol);
        self.calls.record(
            d.call,
            user,
            TimelineEvent::Dispatch {
                dispatch: d.id,
                patrol: d.patrol.clone(),
                patrol_name,
                step,
                detail,
            },
            now,
        )?;
        if self.calls.live.receiver_count() > 0 {
            let _ = self
                .calls
                .live
                .send(LiveEvent::Dispatch(Arc::new(self.view(d)), step));
        }
        Ok(())
    }

    /// Keeps a message for the patrol until the change it tells of is durable (the next
    /// flush sends it).
    fn push(&self, patrol: &str, msg: ToPatrol) {
        self.pushes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((patrol.to_owned(), msg));
    }

    /// The messages kept so far (sent after the flush that follows).
    fn take_pushes(&self) -> Vec<(String, ToPatrol)> {
        std::mem::take(
            &mut *self
                .pushes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Sends `pushes` after a successful flush, or keeps them for the next one.
    fn after_flush(
        &self,
        pushes: Vec<(String, ToPatrol)>,
        flushed: Result<(), crate::calls::CallsError>,
    ) -> Result<(), DeskError> {
        match flushed {
            Ok(()) => {
                for (patrol, msg) in pushes {
                    if !self.link.push(&patrol, msg) {
                        tracing::debug!(
                            patrol,
                            "patrol not connected: it gets its open assignments when it connects"
                        );
                    }
                }
                Ok(())
            }
            Err(e) => {
                let mut kept = self
                    .pushes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let newer = std::mem::replace(&mut *kept, pushes);
                kept.extend(newer);
                Err(e.into())
            }
        }
    }

    fn assignment(&self, d: &Dispatch) -> AssignmentMsg {
        self.hub.assignment(d)
    }

    /// Waits (blocking) until every change so far is durable (dispatches and timeline
    /// lines), then tells the patrols about them.
    pub fn flush_blocking(&self) -> Result<(), DeskError> {
        let pushes = self.take_pushes();
        let flushed = self.calls.flush_blocking();
        self.after_flush(pushes, flushed)
    }

    /// Waits until every change so far is durable (dispatches and timeline lines), then
    /// tells the patrols about them.
    pub async fn flush(&self) -> Result<(), DeskError> {
        let pushes = self.take_pushes();
        let flushed = self.calls.flush().await;
        self.after_flush(pushes, flushed)
    }
}

impl PatrolHub for Desk {
    fn authenticate(&self, patrol: &str, token: &str) -> Result<(), EventError> {
        self.hub.authenticate(patrol, token)
    }

    fn open_assignments(&self, patrol: &str) -> Vec<AssignmentMsg> {
        self.hub.open_assignments(patrol)
    }

    fn event(&self, patrol: &str, ev: &FromPatrol) -> Result<(), EventError> {
        let now = Timestamp::now();
        let Some((id, at, event)) = hub::patrol_event_of(ev) else {
            return Ok(());
        };
        // An event made offline counts from when it was made, never from the future.
        self.patrol_event_at(patrol, id, event, at, now)
            .map_err(|e| match e {
                DeskError::Dispatch(e) => hub::refusal_of(id, &e),
                e => {
                    tracing::error!(error = %e, "applying a patrol's event failed");
                    EventError::Unavailable
                }
            })?;
        self.flush_blocking().map_err(|e| {
            tracing::error!(error = %e, "making a patrol's event durable failed");
            EventError::Unavailable
        })
    }

    fn reserve_seqs(&self, patrol: &str, count: u64) -> Option<u64> {
        self.hub.reserve_seqs(patrol, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::access::patrol_access;
    use crate::dispatch::service::tests::{at, norr_store};
    use crate::model::keys::{Holder, Receipt, ReceiptState};
    use crate::model::order::{KeyCount, KeyKind};
    use crate::model::{ArrivalMethod, CallState};

    fn setup() -> (tempfile::TempDir, Store, Arc<Calls>, Desk) {
        setup_calls(&[7])
    }

    /// The desk with Calls `ids` of subscriber S-1, each taken by olle.
    fn setup_calls(ids: &[u64]) -> (tempfile::TempDir, Store, Arc<Calls>, Desk) {
        let (dir, store) = norr_store();
        let subs = crate::registers::subscribers::parse_csv(
            format!(
                "{}\nS-1,Åsa Öberg,19380512-9802,Storgatan 4,123 45,Vaktby,Norr,070-111 22 33,Hemtjänst Norr,2,Nyckelskåp,PL-3301,4711#,,,,,,,,,,,,,sv\n",
                crate::registers::subscribers::CSV_HEADER
            )
            .as_bytes(),
        )
        .unwrap();
        store.upsert_subscribers(&subs).unwrap();
        let call = |id: u64| -> Call {
            serde_json::from_value(serde_json::json!({
            "id": id, "priority": 1, "state": "claimed", "owner": "olle",
            "opened_at": "2026-12-15T10:59:00Z", "alarm_count": 1, "subscriber": "S-1",
            "account": "1234", "kind": "Fall", "restored": false,
            "answered_at": "2026-12-15T10:59:30Z", "closed_at": null, "outcome": null,
            "timeline": []
            }))
            .unwrap()
        };
        let all: Vec<Call> = ids.iter().map(|&id| call(id)).collect();
        store.save_calls(&all, None).unwrap();
        let calls = Arc::new(
            Calls::start(
                store.clone(),
                crate::triage::TriageOptions { escalate_after: 3 },
                crate::telemetry::CallMetrics::new(),
                at(0, 0),
            )
            .unwrap(),
        );
        let tz = TimeZone::get("Europe/Stockholm").unwrap();
        let desk = Desk::start(
            store.clone(),
            calls.clone(),
            Link::new(),
            tz,
            SlaOptions::default(),
        )
        .unwrap();
        (dir, store, calls, desk)
    }

    fn steps(calls: &Calls) -> Vec<(DispatchStep, String)> {
        calls
            .triage
            .get(7)
            .unwrap()
            .timeline
            .iter()
            .filter_map(|l| match &l.what {
                TimelineEvent::Dispatch { step, detail, .. } => Some((*step, detail.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_the_owner_dispatches_and_the_route_is_suggested() {
        let (_dir, _store, _calls, desk) = setup();
        assert!(matches!(
            desk.dispatch(7, None, "petra", at(0, 0)),
            Err(DeskError::NotOwner { .. })
        ));
        assert!(matches!(
            desk.dispatch(8, None, "olle", at(0, 0)),
            Err(DeskError::NoCall(8))
        ));
        let c = desk.choices(7, at(0, 0)).unwrap();
        assert_eq!(c.suggested.as_deref(), Some("n1"));
        assert_eq!(c.area, "Norr");
        assert!(c.patrols.iter().all(|p| p.routed && p.patrol.on_shift));
        let v = desk.dispatch(7, None, "olle", at(0, 0)).unwrap();
        assert_eq!(v.dispatch.patrol, "n1");
        assert_eq!(v.patrol_name, "Norr 1");
        assert_eq!(v.address.as_deref(), Some("Storgatan 4, 123 45 Vaktby"));
        assert_eq!(v.receipt_deadline, Some(at(2, 0)));
    }

    #[test]
    fn a_second_patrol_to_a_home_with_one_on_its_way_needs_a_confirmation() {
        // Two Calls of the same person, both taken by olle.
        let (_dir, _store, _calls, desk) = setup_calls(&[7, 9]);
        let first = desk.dispatch(7, Some("n1"), "olle", at(0, 0)).unwrap();
        let live = desk.live_to_home("S-1", 9).unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].dispatch.id, first.dispatch.id);
        assert!(desk.live_to_home("S-1", 7).unwrap().is_empty());
        match desk.dispatch(9, Some("n2"), "olle", at(1, 0)) {
            Err(DeskError::HomeHasPatrol {
                dispatch,
                patrol,
                call,
            }) => {
                assert_eq!(
                    (dispatch, patrol.as_str(), call),
                    (first.dispatch.id, "n1", 7)
                );
            }
            other => panic!("{other:?}"),
        }
        let v = desk
            .dispatch_to(9, Some("n2"), "olle", true, false, "", at(1, 0))
            .unwrap();
        assert_eq!(v.dispatch.patrol, "n2");
    }

    fn receipt(id: u64, from: Holder, to: Holder, door: u8, signed: bool) -> Receipt {
        Receipt {
            id,
            subscriber: "S-1".into(),
            from,
            to,
            items: vec![KeyCount {
                kind: KeyKind::Door,
                count: door,
            }],
            reason: crate::model::keys::HandoverReason::Installation,
            order: None,
            written_at: at(0, 0),
            written_by: "siv".into(),
            state: if signed {
                ReceiptState::Signed {
                    at: at(0, i64::try_from(id).unwrap()),
                    handed_by: "Erik".into(),
                    received_by: "Maria".into(),
                    recorded_by: "siv".into(),
                }
            } else {
                ReceiptState::Pending
            },
        }
    }

    fn hn() -> Holder {
        Holder::Provider { id: "hn".into() }
    }

    fn erik() -> Holder {
        Holder::Installer {
            name: "Erik".into(),
        }
    }

    #[test]
    fn who_can_get_in_keys_by_receipts_else_the_register_and_the_lock_for_the_own_provider() {
        let mut sub = crate::model::Subscriber {
            id: "S-1".into(),
            ..Default::default()
        };
        sub.access.keys = 2;
        sub.access.digital_lock_id = "PL-3301".into();
        let door = |n: u8| {
            vec![KeyCount {
                kind: KeyKind::Door,
                count: n,
            }]
        };
        // No receipt yet: the register's keys are the own provider's door keys, and the lock
        // is theirs; another provider has neither.
        let a = patrol_access(&sub, Some("hn"), &[], "hn");
        assert_eq!((a.keys.clone(), a.digital_lock), (door(2), true));
        let other = patrol_access(&sub, Some("hn"), &[], "hs");
        assert!(other.none(), "{other:?}");
        // A pending receipt changes nothing.
        let pending = [receipt(1, Holder::Subscriber, erik(), 3, false)];
        assert_eq!(
            patrol_access(&sub, Some("hn"), &pending, "hn").keys,
            door(2)
        );
        // Once a receipt is signed the receipts are the whole truth: the installer has the
        // keys, the provider only its lock access.
        let taken = [receipt(1, Holder::Subscriber, erik(), 3, true)];
        let a = patrol_access(&sub, Some("hn"), &taken, "hn");
        assert!(a.keys.is_empty() && a.digital_lock && !a.none(), "{a:?}");
        // Without a lock: nothing.
        sub.access.digital_lock_id = " ".into();
        assert!(patrol_access(&sub, Some("hn"), &taken, "hn").none());
        // Handed on to the provider: its keys, whichever provider the register names.
        let handed = [
            receipt(1, Holder::Subscriber, erik(), 3, true),
            receipt(2, erik(), Holder::Provider { id: "hs".into() }, 2, true),
        ];
        let a = patrol_access(&sub, Some("hn"), &handed, "hs");
        assert_eq!((a.keys.clone(), a.digital_lock), (door(2), false));
        assert!(patrol_access(&sub, Some("hn"), &handed, "hn").none());
        // A subscriber whose provider the directory does not have: nobody's lock.
        sub.access.digital_lock_id = "PL-3301".into();
        assert!(patrol_access(&sub, None, &taken, "hn").none());
    }

    #[test]
    fn a_patrol_whose_provider_has_no_key_and_no_lock_access_needs_a_confirmation() {
        let (_dir, store, calls, desk) = setup();
        // The choices say what each patrol's provider has: the register's keys, the lock.
        let c = desk.choices(7, at(0, 0)).unwrap();
        let n1 = c.patrols.iter().find(|p| p.patrol.id == "n1").unwrap();
        let a = n1.access.clone().unwrap();
        assert!(
            !n1.no_access && a.digital_lock && a.keys[0].count == 2,
            "{n1:?}"
        );
        // The person has no lock and the installer took the keys in (signed): Hemtjänst
        // Norr has nothing.
        let mut sub = store.subscriber("S-1").unwrap().unwrap();
        sub.access.digital_lock_id.clear();
        store.upsert_subscribers(&[sub]).unwrap();
        store
            .add_receipt(|id| receipt(id, Holder::Subscriber, erik(), 2, true))
            .unwrap();
        let c = desk.choices(7, at(0, 0)).unwrap();
        assert!(c.patrols.iter().all(|p| p.no_access), "{c:?}");
        assert_eq!(
            desk.access_of(7, "n1").unwrap().map(|a| a.none()),
            Some(true)
        );
        match desk.dispatch(7, Some("n1"), "olle", at(0, 0)) {
            Err(DeskError::NoAccess {
                patrol,
                name,
                provider,
            }) => {
                assert_eq!(
                    (patrol.as_str(), name.as_str(), provider.as_str()),
                    ("n1", "Norr 1", "Hemtjänst Norr")
                );
            }
            other => panic!("{other:?}"),
        }
        // The suggested patrol (none named) is checked too.
        assert!(matches!(
            desk.dispatch(7, None, "olle", at(0, 0)),
            Err(DeskError::NoAccess { .. })
        ));
        assert!(desk.dispatcher().live_for_call(7).is_empty());
        // Confirmed: sent, and the timeline's line says so.
        let v = desk
            .dispatch_to(7, Some("n1"), "olle", false, true, "", at(0, 0))
            .unwrap();
        assert_eq!(v.dispatch.patrol, "n1");
        desk.flush_blocking().unwrap();
        let l = lines(&calls, &store);
        assert!(
            l.iter().any(|l| l.contains("offered")
                && l.contains("no key and no lock access: sent as the operator confirmed")),
            "{l:?}"
        );
        // The assignment carries it in words.
        let d = desk.dispatcher().live_for_call(7)[0].clone();
        assert_eq!(
            desk.assignment(&d).provider_keys,
            "no key and no lock access"
        );
    }

    #[test]
    fn a_dispatch_passed_on_by_itself_to_a_patrol_without_access_says_so_on_its_line() {
        let (_dir, store, calls, desk) = setup_calls(&[7, 8, 9]);
        let offered = |call: u64| -> String {
            calls
                .triage
                .get(call)
                .unwrap()
                .timeline
                .iter()
                .rev()
                .find_map(|l| match &l.what {
                    TimelineEvent::Dispatch {
                        step: DispatchStep::Offered,
                        detail,
                        ..
                    } => Some(detail.clone()),
                    _ => None,
                })
                .unwrap()
        };
        let decline = |patrol: &str, id: u64, at: Timestamp| {
            desk.patrol_event(
                patrol,
                id,
                PatrolEvent::Declined {
                    reason: String::new(),
                },
                at,
            )
            .unwrap();
        };
        // No lock, the keys with the installer: Hemtjänst Norr (both patrols) has nothing.
        let mut sub = store.subscriber("S-1").unwrap().unwrap();
        sub.access.digital_lock_id.clear();
        store.upsert_subscribers(&[sub]).unwrap();
        store
            .add_receipt(|id| receipt(id, Holder::Subscriber, erik(), 2, true))
            .unwrap();
        // Declined: passed to n2 by itself, and its line warns.
        let first = desk
            .dispatch_to(7, Some("n1"), "olle", false, true, "", at(0, 0))
            .unwrap();
        decline("n1", first.dispatch.id, at(0, 30));
        assert_eq!(desk.dispatcher().live_for_call(7)[0].patrol, "n2");
        assert_eq!(
            offered(7),
            format!(
                "after dispatch {} to n1; no key and no lock access: check how Norr 2 gets in",
                first.dispatch.id
            )
        );
        // Not received in time: the same.
        let late = desk
            .dispatch_to(8, Some("n1"), "olle", true, true, "", at(0, 0))
            .unwrap();
        assert!(desk.tick(at(2, 0)).unwrap() >= 1);
        assert_eq!(desk.dispatcher().live_for_call(8)[0].patrol, "n2");
        assert_eq!(
            offered(8),
            format!(
                "after dispatch {} to n1 was not received; no key and no lock access: check how Norr 2 gets in",
                late.dispatch.id
            )
        );
        // A key handed to Hemtjänst Norr: a pass-on says nothing more.
        store
            .add_receipt(|id| receipt(id, erik(), hn(), 1, true))
            .unwrap();
        let keyed = desk
            .dispatch_to(9, Some("n1"), "olle", true, false, "", at(3, 0))
            .unwrap();
        decline("n1", keyed.dispatch.id, at(3, 30));
        assert_eq!(
            offered(9),
            format!("after dispatch {} to n1", keyed.dispatch.id)
        );
    }

    #[test]
    fn the_assignment_says_what_the_patrols_provider_holds() {
        let (_dir, store, _calls, desk) = setup();
        let v = desk.dispatch(7, Some("n1"), "olle", at(0, 0)).unwrap();
        let d = store.dispatch(v.dispatch.id).unwrap().unwrap();
        // The register's 2 keys and the lock.
        assert_eq!(desk.assignment(&d).provider_keys, "2 door keys; the lock");
        let tag = KeyCount {
            kind: KeyKind::AccessTag,
            count: 1,
        };
        store
            .add_receipt(|id| {
                let mut r = receipt(id, Holder::Subscriber, erik(), 2, true);
                r.items.push(tag);
                r
            })
            .unwrap();
        store
            .add_receipt(|id| {
                let mut r = receipt(id, erik(), hn(), 1, true);
                r.items.push(tag);
                r
            })
            .unwrap();
        assert_eq!(
            desk.assignment(&d).provider_keys,
            "door key, access tag; the lock"
        );
    }

    #[test]
    fn presence_and_check_out_at_the_alarm_unit_mark_arrival_and_completion() {
        let (_dir, _store, calls, desk) = setup();
        // No dispatch yet: a presence press changes nothing.
        assert!(
            desk.presence("S-1", false, at(0, 0), at(0, 0))
                .unwrap()
                .is_none()
        );
        let v = desk.dispatch(7, Some("n1"), "olle", at(0, 0)).unwrap();
        let id = v.dispatch.id;
        desk.patrol_event("n1", id, PatrolEvent::Received, at(1, 0))
            .unwrap();
        // Another subscriber's home: nothing.
        assert!(
            desk.presence("S-2", false, at(12, 0), at(12, 0))
                .unwrap()
                .is_none()
        );
        let d = desk
            .presence("S-1", false, at(12, 0), at(12, 0))
            .unwrap()
            .unwrap();
        assert_eq!(d.id, id);
        assert_eq!(d.arrived_at, Some(at(12, 0)));
        assert_eq!(d.arrival_method, Some(ArrivalMethod::Presence));
        // A second press while arrived changes nothing.
        assert!(
            desk.presence("S-1", false, at(13, 0), at(13, 0))
                .unwrap()
                .is_none()
        );
        let d = desk
            .presence("S-1", true, at(25, 0), at(25, 0))
            .unwrap()
            .unwrap();
        assert_eq!(d.state, crate::model::DispatchState::Completed);
        assert_eq!(d.arrived_at, Some(at(12, 0)), "the arrival stands");
        let s = steps(&calls);
        assert!(
            s.iter()
                .any(|(st, det)| *st == DispatchStep::Arrived && det == "presence"),
            "{s:?}"
        );
        assert!(
            s.iter().any(|(st, _)| *st == DispatchStep::Completed),
            "{s:?}"
        );
    }

    #[test]
    fn check_out_without_presence_arrives_at_the_check_out() {
        let (_dir, _store, _calls, desk) = setup();
        let id = desk
            .dispatch(7, Some("n1"), "olle", at(0, 0))
            .unwrap()
            .dispatch
            .id;
        let d = desk
            .presence("S-1", true, at(20, 0), at(20, 0))
            .unwrap()
            .unwrap();
        assert_eq!(d.id, id);
        assert_eq!(d.arrived_at, Some(at(20, 0)));
        assert_eq!(d.state, crate::model::DispatchState::Completed);
    }

    #[test]
    fn warning_then_arrival_by_the_subscribers_lock() {
        let (_dir, _store, calls, desk) = setup();
        let v = desk.dispatch(7, Some("n1"), "olle", at(0, 0)).unwrap();
        let id = v.dispatch.id;
        desk.patrol_event("n1", id, PatrolEvent::Received, at(1, 0))
            .unwrap();
        assert_eq!(desk.next_due(), Some(at(21, 0)));
        assert_eq!(desk.tick(at(21, 0)).unwrap(), 1);
        // Another lock, another credential, an opening before the dispatch: ignored.
        let r = desk
            .lock_opened("PL-9999", at(22, 0), "n1", at(22, 0))
            .unwrap();
        assert_eq!(r.result, "ignored");
        let r = desk
            .lock_opened("PL-3301", at(22, 0), "n2", at(22, 0))
            .unwrap();
        assert_eq!(r.result, "ignored");
        let r = desk
            .lock_opened("PL-3301", at(-5, 0), "n1", at(22, 0))
            .unwrap();
        assert_eq!(r.result, "ignored");
        // The patrol's own opening of the subscriber's lock: arrived, by lock, at its time
        // (a time from the future counts as now).
        let r = desk
            .lock_opened(" PL-3301 ", at(30, 0), "n1", at(22, 30))
            .unwrap();
        assert_eq!((r.result, r.dispatch), ("arrived", Some(id)));
        let d = desk.dispatcher().live_for("n1")[0].clone();
        assert_eq!(d.arrival_method, Some(ArrivalMethod::Lock));
        assert_eq!(d.arrived_at, Some(at(22, 30)));
        assert!(!d.breached);
        let r = desk
            .lock_opened("PL-3301", at(23, 0), "n1", at(23, 0))
            .unwrap();
        assert_eq!(r.reason.as_deref(), Some("already arrived"));
        assert_eq!(
            steps(&calls),
            [
                (DispatchStep::Offered, String::new()),
                (DispatchStep::Received, String::new()),
                (DispatchStep::Warning, "10 min left".into()),
                (DispatchStep::Arrived, "lock".into()),
            ]
        );
    }

    /// Every timeline line of Call 7 after the first `from`, in words.
    fn lines(calls: &Calls, store: &Store) -> Vec<String> {
        let call = calls
            .triage
            .get(7)
            .or_else(|| store.call(7).unwrap())
            .unwrap();
        call.timeline
            .iter()
            .map(|l| match &l.what {
                TimelineEvent::Dispatch {
                    patrol,
                    step,
                    detail,
                    ..
                } => format!("{patrol} {}: {detail}", step.as_str()),
                TimelineEvent::Closed { outcome, .. } => format!("closed {}", outcome.as_str()),
                TimelineEvent::Reopened { reason } => format!("reopened: {reason}"),
                TimelineEvent::Claimed => "claimed".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_step_from_a_phone_clock_behind_is_dated_like_the_dispatch() {
        let (_dir, _store, calls, desk) = setup();
        let id = desk
            .dispatch(7, Some("n1"), "olle", at(10, 0))
            .unwrap()
            .dispatch
            .id;
        // Made "at 09:00" by the phone, handled at 10:30: counts from the offer.
        let d = desk
            .patrol_event_at("n1", id, PatrolEvent::Received, at(9, 0), at(10, 30))
            .unwrap();
        assert_eq!(d.received_at, Some(at(10, 0)));
        let line = calls.triage.get(7).unwrap().timeline.pop().unwrap();
        assert!(matches!(
            line.what,
            TimelineEvent::Dispatch {
                step: DispatchStep::Received,
                ..
            }
        ));
        assert_eq!(line.at, at(10, 0), "the line says what the dispatch says");
        // An arrival made in a lift at 10:20 and handled at 10:30 counts at 10:20.
        let d = desk
            .patrol_event_at(
                "n1",
                id,
                PatrolEvent::Arrived {
                    method: ArrivalMethod::App,
                },
                at(10, 20),
                at(10, 30),
            )
            .unwrap();
        assert_eq!(d.arrived_at, Some(at(10, 20)));
        assert_eq!(
            calls.triage.get(7).unwrap().timeline.pop().unwrap().at,
            at(10, 20)
        );
    }

    #[test]
    fn the_instruction_and_consented_health_notes_reach_every_patrol_the_dispatch_goes_to() {
        let (_dir, store, calls, desk) = setup();
        let mut s = store.subscriber("S-1").unwrap().unwrap();
        s.health_notes = "Diabetes, insulin".into();
        store.upsert_subscribers(std::slice::from_ref(&s)).unwrap();
        // Without consent: withheld, and the dialog says so too.
        let gets = desk.choices(7, at(0, 0)).unwrap().sends.unwrap();
        assert_eq!(gets.reason, "Fall");
        assert_eq!(gets.access.door_code, "4711#");
        assert_eq!(gets.access.key_location, "Nyckelskåp");
        assert!(gets.health_notes.is_empty() && gets.health_notes_withheld);
        let first = desk
            .dispatch_to(
                7,
                Some("n2"),
                "olle",
                false,
                false,
                "Daughter opens",
                at(0, 0),
            )
            .unwrap();
        assert_eq!(first.dispatch.instruction, "Daughter opens");
        assert_eq!(
            steps(&calls)[0],
            (DispatchStep::Offered, "instruction: Daughter opens".into())
        );
        let a = desk.assignment(&first.dispatch);
        assert_eq!(a.instruction, "Daughter opens");
        assert_eq!(a.access.door_code.expose(), "4711#");
        assert!(a.health_notes.is_empty() && a.health_notes_withheld);
        // The person consents: the next assignment carries the notes.
        s.health_to_patrol = true;
        store.upsert_subscribers(std::slice::from_ref(&s)).unwrap();
        let gets = desk.choices(7, at(0, 1)).unwrap().sends.unwrap();
        assert_eq!(gets.health_notes, "Diabetes, insulin");
        assert!(!gets.health_notes_withheld);
        // n2 does not confirm receipt: n1 gets it, with the instruction.
        assert_eq!(desk.tick(at(2, 0)).unwrap(), 1);
        let live = desk.dispatcher().live_for_call(7);
        assert_eq!(live[0].patrol, "n1");
        assert_eq!(live[0].instruction, "Daughter opens");
        let a = desk.assignment(&live[0]);
        assert_eq!(a.instruction, "Daughter opens");
        assert_eq!(
            (a.health_notes.expose(), a.health_notes_withheld),
            ("Diabetes, insulin", false)
        );
        // It is stored with the dispatch.
        let stored = store.dispatch(live[0].id).unwrap().unwrap();
        assert_eq!(stored.instruction, "Daughter opens");
    }

    #[test]
    fn a_declined_dispatch_passes_to_the_next_patrol_with_its_instruction() {
        let (_dir, _store, _calls, desk) = setup();
        let first = desk
            .dispatch_to(
                7,
                Some("n1"),
                "olle",
                false,
                false,
                "Bring the lift key",
                at(0, 0),
            )
            .unwrap();
        desk.patrol_event(
            "n1",
            first.dispatch.id,
            PatrolEvent::Declined {
                reason: "flat tyre".into(),
            },
            at(0, 30),
        )
        .unwrap();
        let live = desk.dispatcher().live_for_call(7);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].patrol, "n2");
        assert_eq!(live[0].instruction, "Bring the lift key");
        assert_eq!(desk.assignment(&live[0]).instruction, "Bring the lift key");
    }

    #[test]
    fn a_patrol_picked_by_hand_that_misses_receipt_passes_to_the_routes_untried_first() {
        let (_dir, store, calls, desk) = setup();
        // The operator picks n2, the route's second; n1, the first, is on shift.
        let first = desk.dispatch(7, Some("n2"), "olle", at(0, 0)).unwrap();
        assert_eq!(desk.tick(at(1, 59)).unwrap(), 0);
        assert_eq!(desk.tick(at(2, 0)).unwrap(), 1);
        let live = desk.dispatcher().live_for_call(7);
        assert_eq!(live.len(), 1);
        assert_eq!(
            live[0].patrol, "n1",
            "the untried first patrol of the route"
        );
        assert_eq!(live[0].offered_at, at(2, 0));
        let ended = store.dispatch(first.dispatch.id).unwrap().unwrap();
        assert_eq!(ended.state, DispatchState::ReceiptTimeout);
        assert_eq!(ended.note, "passed to Norr 1");
        assert_eq!(
            steps(&calls)[1],
            (DispatchStep::ReceiptTimeout, "passed to Norr 1".into())
        );
        // n1 does not confirm either: n2 was tried, nobody is left, and the operator (who
        // still has the Call) reads exactly that; the Call stays theirs.
        assert_eq!(desk.tick(at(4, 0)).unwrap(), 1);
        assert!(desk.dispatcher().live_for_call(7).is_empty());
        let (step, detail) = steps(&calls).pop().unwrap();
        assert_eq!(step, DispatchStep::ReceiptTimeout);
        assert_eq!(
            detail,
            "not passed on: Norr 2 already tried (no receipt in time)"
        );
        let c = calls.triage.get(7).unwrap();
        assert_eq!(c.state, CallState::Claimed);
        assert!(
            !c.timeline
                .iter()
                .any(|l| matches!(l.what, TimelineEvent::Reopened { .. }))
        );
    }

    #[test]
    fn a_closed_call_whose_dispatch_fails_with_nobody_left_comes_back_to_the_queue() {
        let (dir, store, calls, desk) = setup();
        let first = desk.dispatch(7, Some("n1"), "olle", at(0, 0)).unwrap();
        calls
            .triage
            .close(
                7,
                "olle",
                &crate::triage::closing::Closing::new(crate::model::Outcome::PatrolNeeded, ""),
                at(0, 30),
            )
            .unwrap();
        calls.flush_blocking().unwrap();
        assert!(calls.triage.get(7).is_none());
        // n1 misses the receipt time: n2 gets it (the Call stays closed meanwhile).
        assert_eq!(desk.tick(at(2, 0)).unwrap(), 1);
        assert!(calls.triage.get(7).is_none());
        let second = desk.dispatcher().live_for_call(7)[0].clone();
        assert_eq!(second.patrol, "n2");
        // n2 declines: n1 was tried; nobody of the route is left.
        desk.patrol_event(
            "n2",
            second.id,
            PatrolEvent::Declined {
                reason: "at another alarm".into(),
            },
            at(3, 0),
        )
        .unwrap();
        desk.flush_blocking().unwrap();
        let c = calls.triage.get(7).expect("back in the queue");
        assert_eq!((c.state, c.owner.as_deref()), (CallState::Queued, None));
        assert_eq!((c.closed_at, c.outcome), (None, None));
        let words = lines(&calls, &store);
        let n = words.len();
        assert_eq!(
            words[n - 4..],
            [
                "n1 receipt_timeout: passed to Norr 2".to_string(),
                format!("n2 offered: after dispatch {} to n1 was not received", first.dispatch.id),
                "n2 declined: at another alarm; not passed on: Norr 1 already tried (no receipt in time)"
                    .to_string(),
                format!(
                    "reopened: dispatch {} to Norr 2 declined (at another alarm); not passed on: \
                     Norr 1 already tried (no receipt in time). A patrol is still needed",
                    second.id
                ),
            ],
            "{words:?}"
        );
        assert!(words.contains(&"closed patrol_needed".to_string()));
        // Durable: the store has it open, with every line.
        let stored = store.call(7).unwrap().unwrap();
        assert_eq!(stored.state, CallState::Queued);
        assert_eq!(stored.timeline, c.timeline);
        // It can be taken and dispatched again.
        assert_eq!(calls.triage.next("petra", at(4, 0)).unwrap().id, 7);
        let again = desk.dispatch(7, Some("n1"), "petra", at(4, 10)).unwrap();
        assert_eq!(again.dispatch.state, DispatchState::Offered);
        drop(dir);
    }

    #[test]
    fn breach_restart_and_completion_after_the_call_closed() {
        let (dir, store, calls, desk) = setup();
        let id = desk
            .dispatch(7, Some("n1"), "olle", at(0, 0))
            .unwrap()
            .dispatch
            .id;
        desk.patrol_event("n1", id, PatrolEvent::Received, at(0, 30))
            .unwrap();
        // The operator closes the Call; the dispatch lives on.
        calls
            .triage
            .close(
                7,
                "olle",
                &crate::triage::closing::Closing::new(crate::model::Outcome::PatrolNeeded, ""),
                at(1, 0),
            )
            .unwrap();
        calls.flush_blocking().unwrap();
        // vakt restarts (the desk is made anew from the store) after both warnings passed.
        drop(desk);
        let desk = Desk::start(
            store.clone(),
            calls.clone(),
            Link::new(),
            TimeZone::get("Europe/Stockholm").unwrap(),
            SlaOptions::default(),
        )
        .unwrap();
        assert_eq!(
            desk.tick(at(31, 0)).unwrap(),
            3,
            "two warnings and the breach"
        );
        assert!(desk.dispatcher().live_for("n1")[0].breached);
        // A repeat changes nothing and adds no line.
        desk.patrol_event("n1", id, PatrolEvent::Received, at(31, 10))
            .unwrap();
        desk.patrol_event(
            "n1",
            id,
            PatrolEvent::Arrived {
                method: ArrivalMethod::App,
            },
            at(35, 0),
        )
        .unwrap();
        desk.patrol_event(
            "n1",
            id,
            PatrolEvent::Completed {
                outcome: "helped".into(),
                note: String::new(),
            },
            at(40, 0),
        )
        .unwrap();
        calls.flush_blocking().unwrap();
        let call = store.call(7).unwrap().unwrap();
        let lines: Vec<String> = call
            .timeline
            .iter()
            .map(|l| match &l.what {
                TimelineEvent::Dispatch { step, .. } => step.as_str().to_owned(),
                TimelineEvent::Closed { .. } => "closed".into(),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(
            lines,
            [
                "offered",
                "received",
                "closed",
                "warning",
                "warning",
                "breached",
                "arrived",
                "completed"
            ]
        );
        let d = store.dispatch(id).unwrap().unwrap();
        assert!(d.breached);
        assert_eq!(d.state, DispatchState::Completed);
        drop(dir);
    }
}
