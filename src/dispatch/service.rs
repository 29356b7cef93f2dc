//! The dispatcher: the open dispatches, kept in memory and in the store, moved by operators
//! (dispatch, cancel), by patrols (received, accepted, declined, arrived, completed) and by
//! the clocks ([`Dispatcher::tick`]). A dispatch whose patrol does not confirm receipt in
//! time is offered to the next patrol of the route on shift that has not been tried for the
//! Call ([`routing::fallback`]); the ended dispatch's `note` says where it went, or who was
//! passed over and why when nobody was left. `now` is a parameter everywhere; the times live
//! in the dispatches, so the clocks resume after a restart.
//!
//! Every change is written to the store, durably, before the method returns; the caller
//! makes its timeline line durable (the Call writer's flush) before it answers a person or a
//! patrol.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::dispatch::routing;
use crate::dispatch::sla::{self, ClockEvent, PatrolEvent, SlaError, SlaOptions};
use crate::model::{Dispatch, DispatchState};
use crate::registers::directory::Directory;
use crate::store::{Store, StoreError};

/// Why a dispatch action was refused.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// No such patrol in the directory.
    #[error("no patrol {0} in the directory")]
    UnknownPatrol(String),
    /// No such open dispatch.
    #[error("no open dispatch {0}")]
    NotFound(u64),
    /// The dispatch is another patrol's.
    #[error("dispatch {0} is not this patrol's")]
    NotYours(u64),
    /// The Call already has an open dispatch.
    #[error("call {call} already has dispatch {dispatch} open")]
    AlreadyDispatched {
        /// The Call.
        call: u64,
        /// Its open dispatch.
        dispatch: u64,
    },
    /// The state machine refused the event.
    #[error(transparent)]
    Sla(#[from] SlaError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A patrol's event applied by [`Dispatcher::apply_patrol_event`].
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The dispatch before.
    pub before: Dispatch,
    /// The dispatch after: equal to `before` when the event was a repeat and changed nothing.
    pub after: Dispatch,
    /// When the step counts: the event's time, never before the dispatch's last known
    /// moment (a phone clock behind the server's). The step's time in the dispatch and its
    /// line in the Call's timeline.
    pub at: Timestamp,
}

/// How a dispatch ended, in words for the operator.
fn how_it_ended(state: DispatchState) -> &'static str {
    match state {
        DispatchState::ReceiptTimeout => "no receipt in time",
        DispatchState::Declined => "declined",
        DispatchState::Cancelled => "withdrawn by the operator",
        DispatchState::Completed => "visited",
        DispatchState::Offered
        | DispatchState::Received
        | DispatchState::Accepted
        | DispatchState::Arrived => "dispatched",
    }
}

/// Where a Call is to be dispatched: its subscriber's care provider and area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The Call.
    pub call: u64,
    /// Care provider (id or name, as the subscriber has it).
    pub provider: String,
    /// Area (id or name).
    pub area: String,
}

/// What happened to a dispatch, for the Call's timeline, the console and the patrol link.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The dispatch after the change.
    pub dispatch: Dispatch,
    /// A clock event, if the clock caused it.
    pub clock: Option<ClockEvent>,
    /// For a receipt timeout: the dispatch that took over (to the next patrol), if any.
    pub passed_to: Option<Dispatch>,
}

/// The dispatcher.
pub struct Dispatcher {
    store: Store,
    tz: TimeZone,
    opts: SlaOptions,
    directory: RwLock<Directory>,
    /// Open dispatches (offered, received, accepted, arrived) by id, with the target they
    /// were routed for (used to pass them on).
    open: Mutex<HashMap<u64, (Dispatch, Target)>>,
    next_id: Mutex<u64>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Still the patrol's business: open, or arrived and not yet completed.
fn is_live(d: &Dispatch) -> bool {
    d.is_open() || d.state == DispatchState::Arrived
}

impl Dispatcher {
    /// Loads the directory and the live dispatches from the store.
    pub fn start(store: Store, tz: TimeZone, opts: SlaOptions) -> Result<Dispatcher, StoreError> {
        let directory = store.directory()?;
        let mut open = HashMap::new();
        for d in store.dispatches_where(is_live)? {
            let target = Target {
                call: d.call,
                provider: d.provider.clone(),
                area: d.area.clone(),
            };
            open.insert(d.id, (d, target));
        }
        let next_id = store.max_dispatch_id()? + 1;
        Ok(Dispatcher {
            store,
            tz,
            opts,
            directory: RwLock::new(directory),
            open: Mutex::new(open),
            next_id: Mutex::new(next_id),
        })
    }

    /// The clocks' settings (the receipt time is in every `assignment`).
    pub fn sla_options(&self) -> &SlaOptions {
        &self.opts
    }

    /// Replaces the directory (after an import).
    pub fn set_directory(&self, dir: Directory) {
        *self
            .directory
            .write()
            .unwrap_or_else(PoisonError::into_inner) = dir;
    }

    /// The patrols that may take the Call, best first.
    pub fn candidates(&self, t: &Target, now: Timestamp) -> Vec<routing::Candidate> {
        let dir = self
            .directory
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        routing::route(&dir, &t.provider, &t.area, now, &self.tz)
    }

    fn offer(
        &self,
        open: &mut HashMap<u64, (Dispatch, Target)>,
        t: &Target,
        patrol: &str,
        operator: &str,
        instruction: &str,
        now: Timestamp,
    ) -> Result<Dispatch, DispatchError> {
        let dir = self
            .directory
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(p) = dir.patrol(patrol) else {
            return Err(DispatchError::UnknownPatrol(patrol.to_owned()));
        };
        let area = dir
            .area_for(&t.area)
            .map_or_else(|| t.area.clone(), |a| a.id.clone());
        let limit = dir.arrival_limit_mins(&t.area);
        let provider = p.provider.clone();
        drop(dir);
        let id = {
            let mut n = lock(&self.next_id);
            let id = *n;
            *n += 1;
            id
        };
        let d = sla::new_dispatch(
            id,
            t.call,
            patrol,
            &provider,
            &area,
            limit,
            operator,
            instruction,
            now,
        );
        self.store.save_dispatches(std::slice::from_ref(&d))?;
        open.insert(id, (d.clone(), t.clone()));
        Ok(d)
    }

    /// The operator dispatches the Call to `patrol`, with an `instruction` for the patrol
    /// (may be empty).
    pub fn dispatch(
        &self,
        t: &Target,
        patrol: &str,
        operator: &str,
        instruction: &str,
        now: Timestamp,
    ) -> Result<Dispatch, DispatchError> {
        let mut open = lock(&self.open);
        if let Some((d, _)) = open.values().find(|(d, _)| d.call == t.call && d.is_open()) {
            return Err(DispatchError::AlreadyDispatched {
                call: t.call,
                dispatch: d.id,
            });
        }
        self.offer(&mut open, t, patrol, operator, instruction, now)
    }

    /// A patrol's event on one of its dispatches; the dispatch after it.
    pub fn patrol_event(
        &self,
        patrol: &str,
        id: u64,
        ev: PatrolEvent,
        now: Timestamp,
    ) -> Result<Dispatch, DispatchError> {
        self.apply_patrol_event(patrol, id, ev, now)
            .map(|a| a.after)
    }

    /// A patrol's event, made at `at` (at the latest now: the caller never passes a time
    /// from the future), on one of its dispatches: the dispatch before and after, and the
    /// moment the step is recorded at (see [`Applied`]).
    pub fn apply_patrol_event(
        &self,
        patrol: &str,
        id: u64,
        ev: PatrolEvent,
        at: Timestamp,
    ) -> Result<Applied, DispatchError> {
        let mut open = lock(&self.open);
        let Some((d, _)) = open.get_mut(&id) else {
            return match self.store.dispatch(id)? {
                Some(d) if d.patrol != patrol => Err(DispatchError::NotYours(id)),
                // A patrol resends what it is not sure arrived: the state machine decides
                // whether it is a repeat of a step already recorded (acknowledged again,
                // nothing changes) or refused.
                Some(d) => {
                    sla::apply(&mut d.clone(), ev, at)?;
                    Ok(Applied {
                        before: d.clone(),
                        after: d,
                        at,
                    })
                }
                None => Err(DispatchError::NotFound(id)),
            };
        };
        if d.patrol != patrol {
            return Err(DispatchError::NotYours(id));
        }
        // A patrol's clock may be behind: its step never counts from before the dispatch's
        // last known moment (an early receipt would shorten the arrival limit).
        let floor = [
            Some(d.offered_at),
            d.received_at,
            d.accepted_at,
            d.arrived_at,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(d.offered_at);
        let at = at.max(floor);
        let before = d.clone();
        let mut next = d.clone();
        sla::apply(&mut next, ev, at)?;
        if next == before {
            return Ok(Applied {
                before,
                after: next,
                at,
            });
        }
        self.store.save_dispatches(std::slice::from_ref(&next))?;
        if is_live(&next) {
            *d = next.clone();
        } else {
            open.remove(&id);
        }
        Ok(Applied {
            before,
            after: next,
            at,
        })
    }

    /// The directory in use (read-locked while the guard lives: keep it short).
    pub fn directory(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.directory
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A patrol's name from the directory.
    pub fn patrol_name(&self, patrol: &str) -> Option<String> {
        self.directory().patrol(patrol).map(|p| p.name.clone())
    }

    /// Where the Call of `failed` (a dispatch that ended without a visit: no receipt in
    /// time, or declined) goes next: the patrol to offer it to, if any is left
    /// ([`routing::fallback`]; patrols with an earlier dispatch of the Call that ended count
    /// as tried), and the words for the operator: `passed to NAME`, or `not passed on: `
    /// with every patrol of the route passed over and why.
    pub fn fallback(
        &self,
        t: &Target,
        failed: &Dispatch,
        now: Timestamp,
    ) -> Result<(Option<String>, String), StoreError> {
        let ended: Vec<Dispatch> = self
            .store
            .dispatches_of_call(t.call)?
            .into_iter()
            .filter(|d| d.id != failed.id && !is_live(d))
            .collect();
        let tried: Vec<String> = ended.iter().map(|d| d.patrol.clone()).collect();
        let dir = self.directory();
        let fb = routing::fallback(
            &dir,
            &t.provider,
            &t.area,
            &failed.patrol,
            &tried,
            now,
            &self.tz,
        );
        let name = |p: &str| {
            dir.patrol(p)
                .map_or_else(|| p.to_owned(), |x| x.name.clone())
        };
        if let Some(c) = fb.next {
            let words = format!("passed to {}", name(&c.patrol));
            return Ok((Some(c.patrol), words));
        }
        let mut parts: Vec<String> = fb
            .passed_over
            .iter()
            .map(|(p, why)| match why {
                routing::PassedOver::AlreadyTried => {
                    // The latest of its dispatches of this Call says how.
                    let how = ended
                        .iter()
                        .rev()
                        .find(|d| &d.patrol == p)
                        .map_or("dispatched", |d| how_it_ended(d.state));
                    format!("{} already tried ({how})", name(p))
                }
                routing::PassedOver::OffShift => format!("{} off shift", name(p)),
            })
            .collect();
        if parts.is_empty() {
            parts.push(if fb.routed == 0 {
                "no patrol is routed to this care provider and area".to_owned()
            } else {
                "the route has no other patrol".to_owned()
            });
        }
        Ok((None, format!("not passed on: {}", parts.join("; "))))
    }

    /// How many dispatches are live (not completed).
    pub fn live_count(&self) -> usize {
        lock(&self.open).len()
    }

    /// The operator withdraws a dispatch.
    pub fn cancel(&self, id: u64, note: &str, now: Timestamp) -> Result<Dispatch, DispatchError> {
        let mut open = lock(&self.open);
        let Some((d, _)) = open.get(&id) else {
            return Err(DispatchError::NotFound(id));
        };
        let mut next = d.clone();
        sla::cancel(&mut next, note, now)?;
        self.store.save_dispatches(std::slice::from_ref(&next))?;
        open.remove(&id);
        Ok(next)
    }

    /// Runs every dispatch's clocks to `now`: warnings, breaches, and receipt timeouts (the
    /// dispatch passes to the next patrol of the route on shift, offered by the same
    /// operator).
    pub fn tick(&self, now: Timestamp) -> Result<Vec<Change>, DispatchError> {
        let mut open = lock(&self.open);
        let mut changes = Vec::new();
        let ids: Vec<u64> = open.keys().copied().collect();
        for id in ids {
            let Some((d, t)) = open.get(&id).cloned() else {
                continue;
            };
            let mut next = d;
            let events = sla::tick(&mut next, &self.opts, now);
            if events.is_empty() {
                continue;
            }
            // Where it goes after a receipt timeout, in the dispatch's note for the operator.
            let mut fallback = None;
            if events.contains(&ClockEvent::ReceiptTimeout) {
                let (to, words) = self.fallback(&t, &next, now)?;
                next.note = words;
                fallback = to;
            }
            self.store.save_dispatches(std::slice::from_ref(&next))?;
            if is_live(&next) {
                if let Some(slot) = open.get_mut(&id) {
                    slot.0 = next.clone();
                }
            } else {
                open.remove(&id);
            }
            for ev in events {
                let passed_to = match (&fallback, ev) {
                    (Some(p), ClockEvent::ReceiptTimeout) => {
                        // The operator's instruction goes with it.
                        Some(self.offer(
                            &mut open,
                            &t,
                            p,
                            &next.operator,
                            &next.instruction,
                            now,
                        )?)
                    }
                    _ => None,
                };
                changes.push(Change {
                    dispatch: next.clone(),
                    clock: Some(ev),
                    passed_to,
                });
            }
        }
        Ok(changes)
    }

    /// The next moment [`Dispatcher::tick`] may have something to do.
    pub fn next_due(&self) -> Option<Timestamp> {
        lock(&self.open)
            .values()
            .filter_map(|(d, _)| sla::next_due(d, &self.opts))
            .min()
    }

    /// The live dispatches of a patrol (sent to it on every connect).
    pub fn live_for(&self, patrol: &str) -> Vec<Dispatch> {
        let mut v: Vec<Dispatch> = lock(&self.open)
            .values()
            .filter(|(d, _)| d.patrol == patrol)
            .map(|(d, _)| d.clone())
            .collect();
        v.sort_by_key(|d| d.id);
        v
    }

    /// Every live dispatch, by id.
    pub fn live_all(&self) -> Vec<Dispatch> {
        let mut v: Vec<Dispatch> = lock(&self.open).values().map(|(d, _)| d.clone()).collect();
        v.sort_by_key(|d| d.id);
        v
    }

    /// The live dispatches of a Call.
    pub fn live_for_call(&self, call: u64) -> Vec<Dispatch> {
        let mut v: Vec<Dispatch> = lock(&self.open)
            .values()
            .filter(|(d, _)| d.call == call)
            .map(|(d, _)| d.clone())
            .collect();
        v.sort_by_key(|d| d.id);
        v
    }
}

/// Helpers shared by the dispatch tests.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::ArrivalMethod;

    /// Noon on a winter weekday, Stockholm time, plus minutes and seconds.
    pub(crate) fn at(min: i64, sec: i64) -> Timestamp {
        Timestamp::from_second(1_797_418_800 + min * 60 + sec).unwrap()
    }

    /// A store in a temporary directory with a small directory: provider `hn`, area `norr`
    /// (30 min), patrols `n1` then `n2` on shift all day.
    pub(crate) fn norr_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = crate::registers::directory::parse_all(
            "id,name,phone\nhn,Hemtjänst Norr,08-1\n".as_bytes(),
            "id,name,arrival_limit_mins\nnorr,Norr,30\n".as_bytes(),
            "id,name,provider,areas,shifts,phone\n\
             n1,Norr 1,hn,norr,day 00:00-23:59,070-1\n\
             n2,Norr 2,hn,norr,day 00:00-23:59,070-2\n"
                .as_bytes(),
            "provider,area,patrols\nhn,norr,n1;n2\n".as_bytes(),
        )
        .unwrap();
        store.save_directory(&d).unwrap();
        (dir, store)
    }

    fn setup() -> (tempfile::TempDir, Store, Dispatcher) {
        let (dir, store) = norr_store();
        let tz = TimeZone::get("Europe/Stockholm").unwrap();
        let disp = Dispatcher::start(store.clone(), tz, SlaOptions::default()).unwrap();
        (dir, store, disp)
    }

    fn target() -> Target {
        Target {
            call: 7,
            provider: "Hemtjänst Norr".into(),
            area: "Norr".into(),
        }
    }

    #[test]
    fn dispatch_receive_warn_arrive() {
        let (_dir, _store, disp) = setup();
        let c = disp.candidates(&target(), at(0, 0));
        assert_eq!(c[0].patrol, "n1");
        let d = disp
            .dispatch(&target(), "n1", "olle", "", at(0, 0))
            .unwrap();
        assert_eq!(d.area, "norr");
        assert_eq!(d.limit_mins, 30);
        assert!(matches!(
            disp.dispatch(&target(), "n2", "olle", "", at(0, 1)),
            Err(DispatchError::AlreadyDispatched { .. })
        ));
        assert!(matches!(
            disp.patrol_event("n2", d.id, PatrolEvent::Received, at(0, 30)),
            Err(DispatchError::NotYours(_))
        ));

        disp.patrol_event("n1", d.id, PatrolEvent::Received, at(1, 0))
            .unwrap();
        assert_eq!(disp.next_due(), Some(at(21, 0)), "the 20-minute warning");
        let ch = disp.tick(at(21, 0)).unwrap();
        assert_eq!(ch.len(), 1);
        assert!(matches!(
            ch[0].clock,
            Some(ClockEvent::Warning { mins: 20, .. })
        ));
        let arrived = disp
            .patrol_event(
                "n1",
                d.id,
                PatrolEvent::Arrived {
                    method: ArrivalMethod::App,
                },
                at(23, 0),
            )
            .unwrap();
        assert!(!arrived.breached);
        assert_eq!(disp.live_for("n1").len(), 1, "arrived, not yet completed");
        disp.patrol_event(
            "n1",
            d.id,
            PatrolEvent::Completed {
                outcome: "helped".into(),
                note: String::new(),
            },
            at(40, 0),
        )
        .unwrap();
        assert!(disp.live_for("n1").is_empty());
        assert_eq!(disp.next_due(), None);
    }

    #[test]
    fn a_patrol_clock_behind_never_counts_before_the_offer() {
        let (_dir, _store, disp) = setup();
        let d = disp
            .dispatch(&target(), "n1", "olle", "", at(0, 0))
            .unwrap();
        let early = disp
            .patrol_event("n1", d.id, PatrolEvent::Accepted, at(-3, 0))
            .unwrap();
        assert_eq!(early.received_at, Some(at(0, 0)));
        assert_eq!(early.accepted_at, Some(at(0, 0)));
        assert_eq!(early.deadline(), Some(at(30, 0)));
        let arrived = disp
            .patrol_event(
                "n1",
                d.id,
                PatrolEvent::Arrived {
                    method: ArrivalMethod::App,
                },
                at(-1, 0),
            )
            .unwrap();
        assert_eq!(arrived.arrived_at, Some(at(0, 0)));
    }

    #[test]
    fn no_receipt_passes_to_the_next_patrol() {
        let (_dir, _store, disp) = setup();
        let d = disp
            .dispatch(&target(), "n1", "olle", "", at(0, 0))
            .unwrap();
        assert!(disp.tick(at(1, 59)).unwrap().is_empty());
        let ch = disp.tick(at(2, 0)).unwrap();
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].dispatch.state, DispatchState::ReceiptTimeout);
        let next = ch[0].passed_to.clone().expect("passed on");
        assert_eq!(next.patrol, "n2");
        assert_eq!(next.operator, "olle");
        assert!(disp.live_for("n1").is_empty());
        assert_eq!(disp.live_for("n2")[0].id, next.id);
        assert!(matches!(
            disp.patrol_event("n1", d.id, PatrolEvent::Received, at(2, 5)),
            Err(DispatchError::Sla(SlaError::NotOpen(
                DispatchState::ReceiptTimeout
            )))
        ));
    }

    #[test]
    fn clocks_resume_after_a_restart_and_breach() {
        let (dir, store, disp) = setup();
        let d = disp
            .dispatch(&target(), "n1", "olle", "", at(0, 0))
            .unwrap();
        disp.patrol_event("n1", d.id, PatrolEvent::Received, at(0, 10))
            .unwrap();
        disp.tick(at(20, 10)).unwrap();
        drop(disp);
        let tz = TimeZone::get("Europe/Stockholm").unwrap();
        let disp = Dispatcher::start(store, tz, SlaOptions::default()).unwrap();
        let ch = disp.tick(at(40, 0)).unwrap();
        let clocks: Vec<_> = ch.iter().filter_map(|c| c.clock).collect();
        assert!(
            matches!(clocks[0], ClockEvent::Warning { mins: 25, .. }),
            "{clocks:?}"
        );
        assert_eq!(clocks[1], ClockEvent::Breached);
        assert_eq!(clocks.len(), 2, "the 20-minute warning is not repeated");
        assert!(disp.live_for("n1")[0].breached);
        drop(dir);
    }
}
