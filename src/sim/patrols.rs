//! The demo's home-care patrols: each a real patrol client
//! ([`crate::sim::patrol_client::Session`]) of vakt's patrol QUIC port that takes its
//! assignments through received, accepted, arrived and completed.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::loopback;
use super::pace::{draw, pause};
use super::seed::PatrolLogin;
use crate::dispatch::wire::{
    AssignmentMsg, ErrorCode, FromPatrol, PING_INTERVAL_SECS, RECONNECT_MAX_SECS,
    RECONNECT_MIN_SECS, Secret, ToPatrol, VisitOutcome,
};
use crate::model::{ArrivalMethod, DispatchState};
use crate::sim::patrol_client::{ClientError, Session};
use crate::transport::quic::Trust;

/// The demo patrol that never connects: `natt-2` (Nattpatrullen 2, the municipality's second
/// night patrol, whose phone is "switched off"). It is never the suggested patrol (each
/// provider's own patrol, or Nattpatrullen 1, comes first), so the usual dispatches work; to
/// see a receipt timeout pass a dispatch on, dispatch a Call to it: after the receipt timeout
/// (120 s by default) the dispatch passes to the next patrol of the route on shift that has
/// not been tried for the Call, also one earlier in the route (at night: the provider's own
/// night patrol, or Nattpatrullen 1). When nobody is left the operator is told who was tried
/// and why, and a Call already closed comes back to the queue. It has a token like the
/// others, so `vakt patrol` can play it by hand.
pub const OFFLINE_PATROL: &str = "natt-2";

/// How the simulated patrols behave. Every delay is drawn uniformly from its range (the
/// ranges are in order; a reversed one is taken the right way round, and at most a day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatrolSimOptions {
    /// From an assignment reaching the patrol to its `received` (default 3-15 s).
    pub receipt_after: RangeInclusive<Duration>,
    /// From `received` to `accepted` (default 2-10 s).
    pub accept_after: RangeInclusive<Duration>,
    /// From `accepted` to `arrived` (default 60-360 s: well within the 30-minute limit).
    pub arrive_after: RangeInclusive<Duration>,
    /// From `arrived` to `completed` (default 30-90 s).
    pub complete_after: RangeInclusive<Duration>,
    /// Patrols that never connect (default [`OFFLINE_PATROL`]).
    pub offline: Vec<String>,
    /// Seed of the random choices (delays, outcomes).
    pub seed: u64,
}

impl Default for PatrolSimOptions {
    fn default() -> Self {
        PatrolSimOptions {
            receipt_after: Duration::from_secs(3)..=Duration::from_secs(15),
            accept_after: Duration::from_secs(2)..=Duration::from_secs(10),
            arrive_after: Duration::from_secs(60)..=Duration::from_secs(360),
            complete_after: Duration::from_secs(30)..=Duration::from_secs(90),
            offline: vec![OFFLINE_PATROL.to_owned()],
            seed: rand::random(),
        }
    }
}

/// Most patrols simulated (a bound; the demo has 16).
const MAX_SIM_PATROLS: usize = 256;
/// Most assignments one simulated patrol keeps at once; more are left to the clocks.
const MAX_PLANS: usize = 32;
/// The first connections are spread over this long.
const CONNECT_SPREAD: Duration = Duration::from_millis(500);
/// A session that lasted this long resets the reconnect backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Runs the demo patrols against vakt's patrol QUIC endpoint at `server` (an unspecified
/// address such as `0.0.0.0:7200` is reached over loopback), trusting exactly the
/// certificate with the SHA-256 `fingerprint`, until `shutdown` is cancelled; returns
/// promptly then. One task and one connection per patrol of `logins` (each patrol once),
/// except those of [`PatrolSimOptions::offline`].
///
/// Each patrol logs in with its token and gets its open assignments; for each assignment
/// it confirms receipt, accepts, arrives (method `lock` when the home has a digital lock,
/// else `app`) and completes (mostly `helped`, sometimes `no_action`, rarely
/// `ambulance_called`, with a note), each after a delay of [`PatrolSimOptions`], every event
/// acknowledged before the next. A cancelled assignment is dropped; a warning is logged. The
/// plan of an assignment survives a reconnect, and an assignment the server already moved on
/// (e.g. arrived by a lock event) continues from there. A lost connection is retried with
/// backoff (1 s doubling to 30 s, with jitter); a refusal the protocol says not to retry
/// (`bad_token`, `unknown_patrol`, `replaced`, e.g. by someone playing the patrol with
/// `vakt patrol`) ends that patrol's task. Steps are logged at info by patrol id, dispatch
/// and subscriber name; never a token or a door code. Never panics.
pub async fn simulate_patrols(
    server: SocketAddr,
    fingerprint: [u8; 32],
    logins: Vec<PatrolLogin>,
    opts: PatrolSimOptions,
    shutdown: CancellationToken,
) {
    let server = loopback(server);
    let trust = Trust::Pinned(fingerprint);
    let mut root = SmallRng::seed_from_u64(opts.seed);
    let mut tasks = JoinSet::new();
    let mut seen = HashSet::new();
    for login in logins {
        if opts.offline.contains(&login.patrol) {
            tracing::info!(patrol = %login.patrol, "demo: this patrol stays offline");
            continue;
        }
        if !seen.insert(login.patrol.clone()) {
            continue;
        }
        if seen.len() > MAX_SIM_PATROLS {
            tracing::warn!(
                max = MAX_SIM_PATROLS,
                "demo: too many patrols, the rest are not simulated"
            );
            break;
        }
        let sim = PatrolSim {
            id: login.patrol,
            token: login.token,
            opts: opts.clone(),
            rng: SmallRng::seed_from_u64(root.random::<u64>()),
            plans: BTreeMap::new(),
            next_seq: 1,
        };
        tasks.spawn(sim.run(server, trust.clone(), shutdown.clone()));
    }
    tracing::info!(
        patrols = tasks.len(),
        %server,
        "demo: simulating the Vaktby patrols"
    );
    while tasks.join_next().await.is_some() {}
    tracing::debug!("demo: patrol simulator stopped");
}

/// What a simulated patrol does next for one assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Receive,
    Accept,
    Arrive,
    Complete,
}

impl Step {
    /// The step that follows an assignment in `state`, or `None` when it is over.
    fn after(state: DispatchState) -> Option<Step> {
        match state {
            DispatchState::Offered => Some(Step::Receive),
            DispatchState::Received => Some(Step::Accept),
            DispatchState::Accepted => Some(Step::Arrive),
            DispatchState::Arrived => Some(Step::Complete),
            DispatchState::Declined
            | DispatchState::ReceiptTimeout
            | DispatchState::Completed
            | DispatchState::Cancelled => None,
        }
    }

    fn next(self) -> Option<Step> {
        match self {
            Step::Receive => Some(Step::Accept),
            Step::Accept => Some(Step::Arrive),
            Step::Arrive => Some(Step::Complete),
            Step::Complete => None,
        }
    }
}

/// One assignment the patrol is working on.
#[derive(Clone, Debug)]
struct Plan {
    step: Step,
    due: Instant,
    call: u64,
    /// The subscriber's name (for the log).
    name: String,
    /// The home has a digital lock: arrival is by `lock`.
    lock: bool,
}

/// How a session ended.
enum Ended {
    Shutdown,
    Lost(ClientError),
}

/// One simulated patrol.
struct PatrolSim {
    id: String,
    token: Secret,
    opts: PatrolSimOptions,
    rng: SmallRng,
    /// By dispatch id; kept across reconnects.
    plans: BTreeMap<u64, Plan>,
    /// The next `seq` of this patrol's messages, continued across reconnects.
    next_seq: u64,
}

/// Outcomes of the demo visits with their notes (Swedish, as the patrols write them).
const VISITS: &[(u32, VisitOutcome, &str)] = &[
    (
        25,
        VisitOutcome::Helped,
        "Hjälpte upp efter fall, inga synliga skador.",
    ),
    (
        20,
        VisitOutcome::Helped,
        "Hjälp till toaletten, lugn när vi gick.",
    ),
    (
        15,
        VisitOutcome::Helped,
        "Orolig och ensam, samtal och kaffe, mår bra nu.",
    ),
    (10, VisitOutcome::Helped, "Bytte skydd och bäddade om."),
    (20, VisitOutcome::NoAction, "Larmade av misstag, allt väl."),
    (
        6,
        VisitOutcome::Other,
        "Larmet hade lossnat från armen, satte på det igen.",
    ),
    (
        4,
        VisitOutcome::AmbulanceCalled,
        "Bröstsmärta, ambulans larmad, anhörig underrättad.",
    ),
];

impl PatrolSim {
    async fn run(mut self, server: SocketAddr, trust: Trust, shutdown: CancellationToken) {
        let spread = draw(&mut self.rng, &(Duration::ZERO..=CONNECT_SPREAD));
        if pause(spread, &shutdown).await {
            return;
        }
        let min = Duration::from_secs(u64::from(RECONNECT_MIN_SECS));
        let max = Duration::from_secs(u64::from(RECONNECT_MAX_SECS));
        let mut backoff = min;
        let host = server.ip().to_string();
        loop {
            let attempt = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                r = Session::open(server, &host, &trust, &self.id, self.token.expose(), self.next_seq) => r,
            };
            let error = match attempt {
                Ok((s, welcome, assignments)) => {
                    tracing::debug!(patrol = %self.id, open = welcome.open.len(), "demo: patrol connected");
                    let started = Instant::now();
                    self.plans.retain(|id, _| welcome.open.contains(id));
                    for a in &assignments {
                        self.assigned(a);
                    }
                    match self.session(s, &shutdown).await {
                        Ended::Shutdown => return,
                        Ended::Lost(e) => {
                            if started.elapsed() >= STABLE_SESSION {
                                backoff = min;
                            }
                            e
                        }
                    }
                }
                Err(e) => e,
            };
            if let ClientError::Refused {
                code: ErrorCode::Replaced,
                ..
            } = error
            {
                tracing::info!(
                    patrol = %self.id,
                    "demo: patrol {} is now played by another client; its simulator stops",
                    self.id
                );
                return;
            }
            if error.is_final() {
                tracing::warn!(
                    patrol = %self.id,
                    error = %error,
                    "demo: the server refused this patrol; its simulator stops"
                );
                return;
            }
            let jitter = draw(&mut self.rng, &(Duration::ZERO..=backoff / 5));
            tracing::debug!(
                patrol = %self.id,
                error = %error,
                retry_in_ms = u64::try_from((backoff + jitter).as_millis()).unwrap_or(u64::MAX),
                "demo: patrol not connected"
            );
            if pause(backoff + jitter, &shutdown).await {
                return;
            }
            backoff = (backoff * 2).min(max);
        }
    }

    /// Serves one logged-in session until it is lost or `shutdown`.
    async fn session(&mut self, mut s: Session, shutdown: &CancellationToken) -> Ended {
        let ended = self.serve(&mut s, shutdown).await;
        self.next_seq = s.next_seq();
        match ended {
            Ended::Shutdown => s.close().await,
            Ended::Lost(_) => drop(s),
        }
        ended
    }

    async fn serve(&mut self, s: &mut Session, shutdown: &CancellationToken) -> Ended {
        let ping_every = Duration::from_secs(u64::from(PING_INTERVAL_SECS));
        let mut next_ping = Instant::now() + ping_every;
        loop {
            // What is due, one event at a time, each answered before the next.
            while let Some((id, step)) = self.due(Instant::now()) {
                let ev = self.event(s, id, step);
                let answer = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return Ended::Shutdown,
                    a = s.send_event(&ev) => a,
                };
                match answer {
                    Ok(a) => self.answered(id, step, &a),
                    Err(e) => return Ended::Lost(e),
                }
            }
            if next_ping <= Instant::now() {
                let r = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return Ended::Shutdown,
                    r = s.ping() => r,
                };
                if let Err(e) = r {
                    return Ended::Lost(e);
                }
                next_ping = Instant::now() + ping_every;
            }
            let wake = self
                .plans
                .values()
                .map(|p| p.due)
                .min()
                .map_or(next_ping, |d| d.min(next_ping));
            let wait = wake.saturating_duration_since(Instant::now());
            // A session given up halfway through a read is dropped, never used again.
            let m = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ended::Shutdown,
                m = s.next_push(wait) => m,
            };
            match m {
                Ok(Some(m)) => {
                    if let Some(e) = self.pushed(m) {
                        return Ended::Lost(e);
                    }
                }
                Ok(None) => {}
                Err(e) => return Ended::Lost(e),
            }
        }
    }

    /// The earliest plan due at `now`.
    fn due(&self, now: Instant) -> Option<(u64, Step)> {
        self.plans
            .iter()
            .filter(|(_, p)| p.due <= now)
            .min_by_key(|(_, p)| p.due)
            .map(|(id, p)| (*id, p.step))
    }

    fn delay(&mut self, step: Step) -> Duration {
        let r = match step {
            Step::Receive => self.opts.receipt_after.clone(),
            Step::Accept => self.opts.accept_after.clone(),
            Step::Arrive => self.opts.arrive_after.clone(),
            Step::Complete => self.opts.complete_after.clone(),
        };
        draw(&mut self.rng, &r)
    }

    /// An assignment arrived (new, or again after a reconnect or a change).
    fn assigned(&mut self, a: &AssignmentMsg) {
        let Some(step) = Step::after(a.state) else {
            self.plans.remove(&a.dispatch);
            return;
        };
        if let Some(p) = self.plans.get(&a.dispatch) {
            if p.step >= step {
                // Already planned (or further along): keep its time.
                return;
            }
        } else if self.plans.len() >= MAX_PLANS {
            tracing::warn!(patrol = %self.id, dispatch = a.dispatch, "demo: patrol too busy, assignment left alone");
            return;
        } else {
            tracing::info!(
                patrol = %self.id,
                dispatch = a.dispatch,
                call = a.call,
                "demo: patrol {} got an assignment: {} at {}",
                self.id,
                a.reason,
                a.subscriber.name
            );
        }
        let due = Instant::now() + self.delay(step);
        self.plans.insert(
            a.dispatch,
            Plan {
                step,
                due,
                call: a.call,
                name: a.subscriber.name.clone(),
                lock: !a.access.digital_lock_id.is_empty(),
            },
        );
    }

    /// A pushed message; `Some` when the session must end.
    fn pushed(&mut self, m: ToPatrol) -> Option<ClientError> {
        match m {
            ToPatrol::Assignment(a) => self.assigned(&a),
            ToPatrol::SlaWarning {
                dispatch,
                minutes_left,
                ..
            } => tracing::info!(
                patrol = %self.id,
                dispatch,
                "demo: patrol {} warned: {minutes_left} min left",
                self.id
            ),
            ToPatrol::Cancelled {
                dispatch, reason, ..
            } => {
                self.plans.remove(&dispatch);
                tracing::info!(
                    patrol = %self.id,
                    dispatch,
                    "demo: patrol {} told to stand down ({reason})",
                    self.id
                );
            }
            ToPatrol::Error {
                code,
                message,
                fatal: true,
                ..
            } => return Some(ClientError::Refused { code, message }),
            ToPatrol::Error { code, .. } => {
                tracing::debug!(patrol = %self.id, code = code.as_str(), "demo: error from the server");
            }
            ToPatrol::Welcome { .. } | ToPatrol::Ack { .. } | ToPatrol::Pong { .. } => {}
        }
        None
    }

    /// The event of `step` for dispatch `id`, with the session's next `seq`.
    fn event(&mut self, s: &mut Session, id: u64, step: Step) -> FromPatrol {
        let seq = s.next_seq();
        let at = jiff::Timestamp::now();
        let lock = self.plans.get(&id).is_some_and(|p| p.lock);
        match step {
            Step::Receive => FromPatrol::Received {
                seq,
                dispatch: id,
                at,
            },
            Step::Accept => FromPatrol::Accepted {
                seq,
                dispatch: id,
                at,
            },
            Step::Arrive => FromPatrol::Arrived {
                seq,
                dispatch: id,
                at,
                method: if lock {
                    ArrivalMethod::Lock
                } else {
                    ArrivalMethod::App
                },
                code: None,
            },
            Step::Complete => {
                let total: u32 = VISITS.iter().map(|v| v.0).sum();
                let mut roll = self.rng.random_range(0..total.max(1));
                let mut pick = (VisitOutcome::Helped, "");
                for (w, outcome, note) in VISITS {
                    if roll < *w {
                        pick = (*outcome, note);
                        break;
                    }
                    roll -= w;
                }
                FromPatrol::Completed {
                    seq,
                    dispatch: id,
                    at,
                    outcome: pick.0,
                    note: pick.1.to_owned(),
                }
            }
        }
    }

    /// The server answered the event of `step` for dispatch `id`.
    fn answered(&mut self, id: u64, step: Step, answer: &ToPatrol) {
        let Some(plan) = self.plans.get(&id).cloned() else {
            return;
        };
        let ToPatrol::Ack { .. } = answer else {
            // Refused (closed, not ours): the dispatch has moved on without this patrol.
            if let ToPatrol::Error { code, .. } = answer {
                tracing::info!(
                    patrol = %self.id,
                    dispatch = id,
                    code = code.as_str(),
                    "demo: patrol {} dropped dispatch {id}: the server refused {step:?}",
                    self.id
                );
            }
            self.plans.remove(&id);
            return;
        };
        let (id_, name) = (&self.id, &plan.name);
        match step {
            Step::Receive => {
                tracing::info!(patrol = %id_, dispatch = id, call = plan.call, "demo: patrol {id_} confirmed receipt (going to {name})")
            }
            Step::Accept => {
                tracing::info!(patrol = %id_, dispatch = id, call = plan.call, "demo: patrol {id_} accepted and is on its way to {name}")
            }
            Step::Arrive => {
                tracing::info!(patrol = %id_, dispatch = id, call = plan.call, "demo: patrol {id_} arrived at {name}'s home")
            }
            Step::Complete => {
                tracing::info!(patrol = %id_, dispatch = id, call = plan.call, "demo: patrol {id_} completed the visit to {name}")
            }
        }
        match step.next() {
            Some(next) => {
                let due = Instant::now() + self.delay(next);
                if let Some(p) = self.plans.get_mut(&id) {
                    p.step = next;
                    p.due = due;
                }
            }
            None => {
                self.plans.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
