//! The supervision loop: once a second it asks the [`Supervisor`] which devices missed their
//! deadline and which silent ones report again, lets the incident [`Detector`] decide between
//! single faults and a telecom incident, and makes it so:
//!
//! - every silence and every restoration becomes a journaled Signal (`VAKT
//!   communication_lost` / `communication_restored`, protocol `vakt-supervision`, level 3), so
//!   the journal holds the whole truth and triage makes Calls of the single faults;
//! - an incident is opened, grown and resolved through [`Incidents`] *before* its devices'
//!   Signals are journaled, so triage hands them to the incident instead of the queue; a
//!   single fault released in the same round as the incident that takes it is not journaled as
//!   a single fault at all;
//! - when an incident is resolved the devices still silent are journaled again as single
//!   faults: each gets its own Call.
//!
//! The Signals go through the journal like a device's (group commit, flushed), and the loop
//! waits for each round's commits, so a silence is never reported twice nor lost between a
//! poll and a crash (a device still silent at the next start is reported again after its
//! deadline).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::journal::{Commit, Journal};
use crate::model::{Flags, IncidentKind, Signal, SignalEvent, Transport};
use crate::supervision::detector::{Decision, Detector, IncidentKey};
use crate::supervision::incidents::{Incidents, Joining};
use crate::supervision::{Silence, Supervisor};
use crate::triage::priority::{
    CODE_COMMUNICATION_LOST, CODE_COMMUNICATION_RESTORED, SUPERVISION_PROTOCOL,
};
use vakt_proto::event::Qualifier;

/// A round with more changes than one poll returns runs again after this pause.
const AGAIN_SOON: Duration = Duration::from_millis(50);

/// The Signal supervision journals for a silence (`restored == false`) or a restoration.
pub fn silence_signal(s: &Silence, restored: bool, now: Timestamp) -> Signal {
    let (code, name, qualifier) = if restored {
        (
            CODE_COMMUNICATION_RESTORED,
            "Communication restored",
            Qualifier::Restore,
        )
    } else {
        (
            CODE_COMMUNICATION_LOST,
            "Communication lost: no heartbeat by the deadline",
            Qualifier::New,
        )
    };
    let text = match (restored, s.last_heard) {
        (false, Some(t)) => format!("last heard {t}, deadline {}", s.at),
        (false, None) => format!("never heard since registered, deadline {}", s.at),
        (true, _) => format!("heard again at {}", s.at),
    };
    Signal {
        id: 0,
        received_at: now,
        transport: Transport::Internal,
        peer: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        protocol: SUPERVISION_PROTOCOL.to_owned(),
        encrypted: false,
        account: s.account.clone(),
        line: None,
        receiver: None,
        seq: "0000".to_owned(),
        flags: Flags::default(),
        subscriber: s.subscriber.clone(),
        device_type: None,
        transmitted_at: None,
        event_time: Some(s.at),
        events: vec![SignalEvent {
            code: code.to_owned(),
            name: Some(name.to_owned()),
            qualifier,
            zone: None,
            group: None,
            user: None,
            text: Some(text),
            time: None,
        }],
        xdata: Vec::new(),
        raw: Vec::new(),
        scaip: None,
    }
}

fn joining(s: &Silence) -> Joining {
    Joining {
        account: s.account.clone(),
        subscriber: s.subscriber.clone(),
        telecom_operator: s.telecom_operator.clone(),
        silent_since: s.at,
    }
}

/// The loop's state.
pub struct Supervision {
    supervisor: Arc<Supervisor>,
    detector: Mutex<Detector>,
    incidents: Arc<Incidents>,
    /// Open incidents by the detector's key.
    ids: Mutex<HashMap<IncidentKey, u64>>,
}

impl std::fmt::Debug for Supervision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervision").finish_non_exhaustive()
    }
}

/// What one round decided, for the journal.
#[derive(Debug, Default)]
pub struct Round {
    /// Signals to journal, in order.
    pub signals: Vec<Signal>,
    /// The poll had more than it returned: run again soon.
    pub more: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Supervision {
    /// The loop over a supervisor, a detector and the incidents; the open incidents (after a
    /// restart) are put back into the detector.
    pub fn new(
        supervisor: Arc<Supervisor>,
        mut detector: Detector,
        incidents: Arc<Incidents>,
    ) -> Supervision {
        let mut ids = HashMap::new();
        for i in incidents.open_incidents() {
            let key = IncidentKey {
                kind: i.kind,
                name: i.key.clone(),
            };
            let devices = i
                .devices
                .iter()
                .map(|d| {
                    (
                        Silence {
                            account: d.account.clone(),
                            subscriber: d.subscriber.clone(),
                            telecom_operator: d.telecom_operator.clone(),
                            area: (i.kind == IncidentKind::Area).then(|| i.key.clone()),
                            last_heard: None,
                            at: d.silent_since,
                        },
                        d.restored_at.is_some(),
                    )
                })
                .collect();
            detector.restore_incident(key.clone(), i.opened_at, devices);
            ids.insert(key, i.id);
        }
        Supervision {
            supervisor,
            detector: Mutex::new(detector),
            incidents,
            ids: Mutex::new(ids),
        }
    }

    /// The supervisor.
    pub fn supervisor(&self) -> &Arc<Supervisor> {
        &self.supervisor
    }

    /// One round at `now` (blocking: incidents are written durably). Returns the Signals
    /// to journal, in order.
    pub fn round(&self, now: Timestamp) -> Round {
        let poll = self.supervisor.poll(now);
        let population = self.supervisor.population();
        let decisions = lock(&self.detector).step(now, &poll, &population);
        let mut signals = Vec::new();
        let back: HashSet<String> = poll.restored.iter().map(|r| r.account.clone()).collect();
        if let Err(e) = self.incidents.restored(&back, now) {
            tracing::error!(error = %e, "recording restored incident devices failed");
        }
        for r in &poll.restored {
            signals.push(silence_signal(r, true, now));
        }
        // A single fault released in this round but taken by an incident opened in the same
        // round is not journaled as a single fault; one released in an earlier round was
        // journaled then (its waiting Call is withdrawn into the incident).
        let mut individual_now = HashSet::new();
        let mut was_individual = HashSet::new();
        let mut in_opened = HashSet::new();
        for d in &decisions {
            match d {
                Decision::Individual(s) => {
                    individual_now.insert(s.account.clone());
                }
                Decision::Attached {
                    silence,
                    was_individual: true,
                    ..
                } => {
                    was_individual.insert(silence.account.clone());
                }
                Decision::Opened(draft) => {
                    in_opened.extend(draft.devices.iter().map(|s| s.account.clone()));
                }
                _ => {}
            }
        }
        let mut attach: BTreeMap<IncidentKey, Vec<Joining>> = BTreeMap::new();
        let mut individual = Vec::new();
        for d in decisions {
            match d {
                Decision::Individual(s) => individual.push(s),
                Decision::Opened(draft) => {
                    let devices: Vec<Joining> = draft.devices.iter().map(joining).collect();
                    match self.incidents.open(
                        draft.key.kind,
                        &draft.key.name,
                        draft.population as usize,
                        devices,
                        now,
                    ) {
                        Ok(i) => {
                            lock(&self.ids).insert(draft.key.clone(), i.id);
                        }
                        Err(e) => {
                            // The silences are journaled all the same (the journal keeps the
                            // truth; triage makes Calls of devices it does not see in an
                            // incident).
                            tracing::error!(error = %e, "opening a telecom incident failed");
                        }
                    }
                    // The incident's silences are journaled too (handled by its rule), except
                    // those journaled as single faults in an earlier round.
                    signals.extend(
                        draft
                            .devices
                            .iter()
                            .filter(|s| {
                                !was_individual.contains(&s.account)
                                    || individual_now.contains(&s.account)
                            })
                            .map(|s| silence_signal(s, false, now)),
                    );
                }
                Decision::Attached {
                    key,
                    silence,
                    was_individual,
                } => {
                    if !was_individual && !in_opened.contains(&silence.account) {
                        signals.push(silence_signal(&silence, false, now));
                    }
                    attach.entry(key).or_default().push(joining(&silence));
                }
                Decision::Resolved { key, still_silent } => {
                    let Some(id) = lock(&self.ids).remove(&key) else {
                        continue;
                    };
                    match self.incidents.resolve(id, now) {
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, incident = id, "resolving a telecom incident failed")
                        }
                    }
                    // Each device still silent gets its own Call now.
                    individual.extend(still_silent);
                }
            }
        }
        for (key, devices) in attach {
            let Some(id) = lock(&self.ids).get(&key).copied() else {
                continue;
            };
            if let Err(e) = self.incidents.attach(id, devices, now) {
                tracing::error!(error = %e, incident = id, "attaching devices to an incident failed");
            }
        }
        if let Err(e) = self.incidents.send_updates(now) {
            tracing::error!(error = %e, "sending updated extra-visit lists failed");
        }
        // Single faults last: a device taken into an incident in this round is not one.
        for s in individual {
            if was_individual.contains(&s.account) || self.in_incident(&s.account) {
                continue;
            }
            signals.push(silence_signal(&s, false, now));
        }
        Round {
            signals,
            more: poll.more,
        }
    }

    fn in_incident(&self, account: &str) -> bool {
        lock(&self.detector).incident_of(account).is_some()
    }
}

/// Runs rounds every `every` until `shutdown`; journals each round's Signals and waits for
/// their commits before the next round.
pub async fn run(
    sup: Arc<Supervision>,
    journal: Arc<Journal>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut soon = false;
    loop {
        if soon {
            tokio::select! {
                () = tokio::time::sleep(AGAIN_SOON) => {}
                () = shutdown.cancelled() => return,
            }
        } else {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
        }
        let s = sup.clone();
        let round = match tokio::task::spawn_blocking(move || s.round(Timestamp::now())).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "a supervision round failed");
                continue;
            }
        };
        soon = round.more;
        for signal in round.signals {
            journal_one(&journal, signal).await;
        }
    }
}

async fn journal_one(journal: &Journal, signal: Signal) {
    let account = signal.account.clone();
    match journal.submit(signal, None).await {
        Ok(rx) => match rx.await {
            Ok(Commit::Stored(_) | Commit::Duplicate(_)) => {}
            Ok(Commit::Failed) | Err(_) => {
                tracing::error!(%account, "journaling a supervision Signal failed");
            }
        },
        Err(e) => tracing::error!(error = %e, %account, "journaling a supervision Signal failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::Calls;
    use crate::model::{CallState, Priority};
    use crate::supervision::SupervisionOptions;
    use crate::supervision::detector::DetectorOptions;
    use crate::triage::priority::COMMUNICATION_LOST;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    /// 100 devices of Telia (subscribers S-0..S-99) and 10 of Tele2, 60 s interval, no
    /// grace; the Calls service, the incidents (no outbox) and the loop on a temp store.
    fn setup() -> (tempfile::TempDir, Arc<Calls>, Arc<Incidents>, Supervision) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let mut csv = format!("{}\n", crate::registers::devices::CSV_HEADER_V2);
        for i in 0..100 {
            csv.push_str(&format!("A{i:03},,,,,S-{i},60,Telia,Norr,carephone\n"));
        }
        for i in 0..10 {
            csv.push_str(&format!("B{i:03},,,,,,60,Tele2,Norr,carephone\n"));
        }
        let devices = crate::registers::devices::parse_csv(csv.as_bytes()).unwrap();
        let calls = Arc::new(
            Calls::start(
                store.clone(),
                crate::triage::TriageOptions { escalate_after: 3 },
                crate::telemetry::CallMetrics::new(),
                t(0),
            )
            .unwrap(),
        );
        let incidents = Arc::new(Incidents::start(store, calls.clone(), None).unwrap());
        let sup = Arc::new(Supervisor::new(SupervisionOptions {
            grace_secs: 0,
            grace_pct: 0,
            ..SupervisionOptions::default()
        }));
        sup.sync(&devices, |_| None, t(0));
        let det = Detector::new(DetectorOptions {
            hold_secs: 30,
            ..DetectorOptions::default()
        });
        let s = Supervision::new(sup, det, incidents.clone());
        (dir, calls, incidents, s)
    }

    /// Runs a round and hands its Signals to triage (ids as the journal would give them).
    fn round(s: &Supervision, calls: &Calls, now: i64, next_id: &mut u64) -> Vec<Signal> {
        let r = s.round(t(now));
        for sig in &r.signals {
            let mut sig = sig.clone();
            sig.id = *next_id;
            *next_id += 1;
            calls.triage.ingest(&sig, None, t(now));
        }
        r.signals
    }

    fn heard(s: &Supervision, accounts: impl IntoIterator<Item = String>, at: i64) {
        for a in accounts {
            s.supervisor().heard(&a, t(at));
        }
    }

    fn lost_calls(calls: &Calls) -> usize {
        calls
            .triage
            .open_calls()
            .iter()
            .filter(|c| c.kind == COMMUNICATION_LOST && c.state == CallState::Queued)
            .count()
    }

    fn telia(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
        range.map(|i| format!("A{i:03}"))
    }

    #[test]
    fn a_single_silent_device_becomes_a_call_after_the_hold_and_is_restored() {
        let (_dir, calls, incidents, s) = setup();
        let mut id = 1;
        let everyone = telia(0..100).chain((0..10).map(|i| format!("B{i:03}")));
        heard(&s, everyone, 10);
        // All but A007 keep reporting.
        heard(&s, telia(0..7).chain(telia(8..100)), 60);
        heard(&s, (0..10).map(|i| format!("B{i:03}")), 60);
        assert!(
            round(&s, &calls, 70, &mut id).is_empty(),
            "A007 is due at 70"
        );
        let sigs = round(&s, &calls, 71, &mut id);
        assert!(sigs.is_empty(), "held for 30 s: {sigs:?}");
        heard(&s, telia(0..7).chain(telia(8..100)), 100);
        heard(&s, (0..10).map(|i| format!("B{i:03}")), 100);
        let sigs = round(&s, &calls, 102, &mut id);
        assert_eq!(sigs.len(), 1, "after the hold: {sigs:?}");
        assert_eq!(sigs[0].events[0].code, CODE_COMMUNICATION_LOST);
        assert_eq!(lost_calls(&calls), 1);
        let c = calls.triage.open_calls()[0].clone();
        assert_eq!(
            (c.priority, c.subscriber.as_deref()),
            (Priority(3), Some("S-7"))
        );
        assert!(incidents.open_incidents().is_empty());
        // It reports again: restored, on its Call.
        s.supervisor().heard("A007", t(110));
        let sigs = round(&s, &calls, 111, &mut id);
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].events[0].code, CODE_COMMUNICATION_RESTORED);
        assert!(calls.triage.get(c.id).unwrap().restored);
    }

    #[test]
    fn twenty_five_of_a_hundred_silent_is_one_incident_not_25_calls_and_recovery_resolves_it() {
        let (_dir, calls, incidents, s) = setup();
        let mut id = 1;
        heard(&s, telia(0..100), 10);
        heard(&s, (0..10).map(|i| format!("B{i:03}")), 10);
        // 25 Telia devices stop at 10 (due 70..); the rest keep reporting every 50 s.
        let mut at = 60;
        let mut rounds = Vec::new();
        while at <= 160 {
            heard(&s, telia(25..100), at);
            heard(&s, (0..10).map(|i| format!("B{i:03}")), at);
            for now in (at - 49)..=at {
                rounds.extend(round(&s, &calls, now, &mut id));
            }
            at += 50;
        }
        let open = incidents.open_incidents();
        assert_eq!(open.len(), 1, "one incident");
        let inc = &open[0];
        assert_eq!(
            (inc.kind, inc.key.as_str()),
            (IncidentKind::TelecomOperator, "Telia")
        );
        assert_eq!(inc.devices.len(), 25);
        assert_eq!(
            lost_calls(&calls),
            0,
            "no queued Calls for the incident's devices"
        );
        let lost = rounds
            .iter()
            .filter(|s| s.events[0].code == CODE_COMMUNICATION_LOST)
            .count();
        assert_eq!(lost, 25, "every silence journaled once");
        // 22 of the 25 report again: resolved; the 3 still silent get Calls.
        heard(&s, telia(0..22), 170);
        heard(&s, telia(25..100), 170);
        heard(&s, (0..10).map(|i| format!("B{i:03}")), 170);
        round(&s, &calls, 171, &mut id);
        assert!(incidents.open_incidents().is_empty(), "resolved");
        assert_eq!(lost_calls(&calls), 3, "stragglers get their own Calls");
    }
}
