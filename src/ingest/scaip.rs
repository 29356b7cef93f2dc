//! SCAIP alarm sessions: what each authenticated `<mrq>` is answered (protocols.md §3.5,
//! §3.10). The SIP transport ([`crate::transport::sip`]) asks [`Scaip`] (its
//! [`ScaipHandler`]) to authenticate the device ([`super::digest`], against the registry),
//! answers the SIP MESSAGE 200 OK at once, and hands the body here; the `<mrs>` this returns
//! goes back to the device in a MESSAGE of its own.
//!
//! | request | journaled | answer |
//! |---|---|---|
//! | body over `max_body_bytes` | no | `snu 1` |
//! | not XML / wrong root | no | `snu 2` |
//! | a value breaks SS 91100 table 1 | no | `snu 3` |
//! | `cid` or `dty` missing | no | `snu 7` |
//! | `ref` missing | no | `snu 10` (no `ref`) |
//! | heartbeat (`mty=PI`) | no (supervision moves) | `snu 0`, `hbi` when `hbo=001` and the registry sets an interval |
//! | new alarm (level 0-2) | yes, then | `snu 4` until an operator takes its Call, then `snu 0` + `mre` |
//! | anything else (faults, restores, tests, presence, `RE`, `IN`) | yes, then | `snu 0` (an `IN` of a held alarm gets the alarm's state) |
//! | the same `cid` + `ref` again | no (the first is durable) | the current state of the same alarm |
//! | journal queue full or failed, `max_in_flight` requests waiting for it, or at `max_holds` | a new alarm at `max_holds` still is | `snu 6` (busy: the device also tries its next route) |
//!
//! No `snu 0` or `4` is sent for a message that is not durable in the journal
//! ([`super::Ingress::journal`]); a storage failure is vakt's fault, answered `snu 6`, never
//! a format error. The state of an
//! alarm is read from triage through [`Tracker`], which learns the Call each SCAIP Signal went
//! into; `now` is a parameter everywhere.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};

use crate::calls::SignalObserver;
use crate::ingest::digest::{Digest, Unauthenticated};
use crate::ingest::{Ingress, NotDurable};
use crate::journal::{DedupKey, dedup_key};
use crate::model::{CallState, Flags, ScaipInfo, Signal, SignalEvent, Transport};
use crate::transport::sip::ScaipHandler;
use crate::triage::priority;
use crate::triage::{Ingested, Triage};
use vakt_proto::event::Qualifier;
use vakt_proto::scaip::{self, MessageType, Mrq, Mrs, snu};

/// The protocol name of SCAIP Signals.
pub const PROTOCOL: &str = "SCAIP";

/// A device that was answered `snu 4` and has not polled for this long has given up (it
/// polls every 5-20 s): it no longer counts as held.
const HOLD_QUIET: SignedDuration = SignedDuration::from_secs(60);

/// SS 91100 status "presence upon alarm": the patrol pressed presence on the alarm unit.
pub const STC_PRESENCE: u16 = 88;
/// SS 91100 status "check-out (intervention completed)".
pub const STC_CHECK_OUT: u16 = 111;

/// Most Signal outcomes [`Tracker`] remembers.
const TRACKED: usize = 200_000;

/// Settings of the SCAIP sessions (`[scaip]`).
#[derive(Clone, Debug)]
pub struct ScaipOptions {
    /// Bodies over this are answered `snu 1`.
    pub max_body_bytes: usize,
    /// Alarms held at once before new ones are answered `snu 6`.
    pub max_holds: usize,
    /// How long an alarm's `cid` + `ref` is remembered after its last message.
    pub session: SignedDuration,
    /// `mre` of the final answer once an operator has the Call.
    pub voice_mre: u8,
    /// `tnu` (with `cre 62`), if the voice call goes somewhere else than the device's default.
    pub voice_uri: Option<String>,
    /// Digest realm.
    pub realm: String,
    /// Nonce lifetime in seconds.
    pub nonce_secs: i64,
    /// Requests waiting for the journal at once; beyond, `snu 6` (busy).
    pub max_in_flight: usize,
}

/// Learns, on the triage thread, which Call each SCAIP Signal opened or joined (or which rule
/// took it). Bounded: the oldest outcomes are forgotten first.
#[derive(Debug, Default)]
pub struct Tracker {
    inner: Mutex<TrackerInner>,
    /// The highest journal id triage has taken in (every protocol).
    triaged: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct TrackerInner {
    outcomes: HashMap<u64, Ingested>,
    order: VecDeque<u64>,
}

impl Tracker {
    /// A tracker whose Signals up to `cursor` (the stored triage cursor) were taken in by
    /// triage before this process started.
    pub fn new(cursor: u64) -> Tracker {
        Tracker {
            inner: Mutex::default(),
            triaged: std::sync::atomic::AtomicU64::new(cursor),
        }
    }

    /// What triage did with Signal `id`: `Some(None)` when triage took it in but the outcome
    /// is not remembered (before this process, or forgotten), `None` when triage has not
    /// reached it yet.
    pub fn outcome(&self, id: u64) -> Option<Option<Ingested>> {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(o) = g.outcomes.get(&id) {
            return Some(Some(*o));
        }
        drop(g);
        (id <= self.triaged.load(std::sync::atomic::Ordering::Acquire)).then_some(None)
    }
}

impl SignalObserver for Tracker {
    fn signal(&self, _signal: &Signal, _now: Timestamp) {}

    fn ingested(&self, signal: &Signal, outcome: Ingested) {
        if signal.protocol == PROTOCOL {
            let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if g.outcomes.insert(signal.id, outcome).is_none() {
                g.order.push_back(signal.id);
            }
            while g.order.len() > TRACKED {
                if let Some(old) = g.order.pop_front() {
                    g.outcomes.remove(&old);
                }
            }
        }
        // After the outcome, so that a reader who sees the id as triaged finds it.
        self.triaged
            .fetch_max(signal.id, std::sync::atomic::Ordering::Release);
    }
}

/// One alarm (a `cid` + `ref` the device sent `mty=ME`, or omitted, with).
#[derive(Clone, Debug)]
struct Session {
    /// The journal id of its Signal.
    signal: u64,
    /// The subscriber of the device, if registered (the key of its open Call).
    subscriber: Option<String>,
    /// It waits for an operator (answered `snu 4`, then `snu 0` + `mre`).
    voice: bool,
    /// Last answered `snu 4` and polled within [`HOLD_QUIET`].
    holding: bool,
    /// Its last message.
    last_seen: Timestamp,
    /// The device gave up (`mty=RE`).
    reset: bool,
    /// The device asked to be called back (`cha=1`) rather than to call.
    callback: bool,
    /// The registry's account of the device (a device the registry knows for its SIP user).
    account: Option<String>,
}

#[derive(Debug, Default)]
struct Sessions {
    map: HashMap<(String, String), Session>,
    holds: usize,
    last_sweep: Option<Timestamp>,
}

/// What an `<mrq>` was answered, for the transport and its metrics.
#[derive(Debug)]
pub struct Answer {
    /// The `<mrs>` to send.
    pub mrs: Mrs,
    /// One of [`crate::telemetry::SCAIP_RESULTS`].
    pub result: &'static str,
}

pub use crate::transport::sip::Request;

/// The SCAIP rules between the SIP endpoint and the journal.
pub struct Scaip {
    ingress: Arc<Ingress>,
    desk: Option<Arc<crate::dispatch::desk::Desk>>,
    triage: Arc<Triage>,
    tracker: Arc<Tracker>,
    opts: ScaipOptions,
    sessions: Mutex<Sessions>,
    metrics: crate::telemetry::ScaipMetrics,
    digest: Digest,
    in_flight: tokio::sync::Semaphore,
    /// Call-backs: where the units are and until when they auto-answer, and the window
    /// granted (`cre`, minutes; 0: none).
    callbacks: Option<(Arc<crate::voice::dial::Units>, u8)>,
}

impl std::fmt::Debug for Scaip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaip")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn answer(reference: Option<String>, snu: u8, result: &'static str) -> Answer {
    Answer {
        mrs: Mrs {
            reference,
            snu,
            ..Mrs::default()
        },
        result,
    }
}

/// The metric label of a refused request.
fn error_result(e: &scaip::MrqError) -> &'static str {
    match e.snu() {
        snu::INVALID_FORMAT => "invalid_format",
        snu::WRONG_DATA => "wrong_data",
        snu::MANDATORY_MISSING => "mandatory_missing",
        snu::REF_MISSING => "ref_missing",
        _ => "invalid_format",
    }
}

/// The short line of text an operator reads with the event: status text, device text,
/// where, and the info text.
fn event_text(m: &Mrq) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for t in [&m.stt, &m.dte].into_iter().flatten() {
        parts.push(t.clone());
    }
    let loc = &m.location;
    match (&loc.text, loc.code.and_then(location_name)) {
        (Some(t), _) => parts.push(format!("at {t}")),
        (None, Some(n)) => parts.push(format!("at {n}")),
        (None, None) => {}
    }
    if let Some(geo) = &loc.geo {
        parts.push(format!("geo {geo}"));
    }
    if let Some(t) = &m.ite {
        parts.push(t.clone());
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// SS 91100 Annex D location codes, in words.
pub fn location_name(code: u16) -> Option<&'static str> {
    Some(match code {
        2 => "home",
        3 => "away",
        11 => "bathroom",
        12 => "bedroom",
        21 => "kitchen",
        30 => "temporary address",
        34 => "geo position",
        35 => "GPS position",
        39 => "front door",
        43 => "living room",
        _ => return None,
    })
}

/// `hbi` in minutes for a supervision interval in seconds (1..=1440, rounded up).
pub fn hbi_minutes(supervision_secs: u32) -> u16 {
    let m = supervision_secs.div_ceil(60).clamp(1, 1440);
    u16::try_from(m).unwrap_or(1440)
}

impl Scaip {
    /// The rules over the journal (`ingress`), triage and the tracker registered with the
    /// Calls service.
    pub fn new(
        ingress: Arc<Ingress>,
        triage: Arc<Triage>,
        tracker: Arc<Tracker>,
        opts: ScaipOptions,
        metrics: crate::telemetry::ScaipMetrics,
    ) -> Scaip {
        Scaip {
            ingress,
            desk: None,
            triage,
            tracker,
            digest: Digest::new(opts.realm.clone(), opts.nonce_secs),
            in_flight: tokio::sync::Semaphore::new(opts.max_in_flight),
            opts,
            sessions: Mutex::new(Sessions::default()),
            metrics,
            callbacks: None,
        }
    }

    /// Also tells `units` where each registered unit sends from, and answers a unit that
    /// asks to be called back (`cha=1`) `cre` with a window of `window_mins` minutes
    /// (protocols.md §3.7; `0`: call-backs are not offered and the unit calls as usual),
    /// remembered in `units` for the operator's call back.
    pub fn with_callbacks(
        mut self,
        units: Arc<crate::voice::dial::Units>,
        window_mins: u8,
    ) -> Scaip {
        self.callbacks = Some((units, window_mins));
        self
    }

    /// Also marks dispatches arrived and completed from the presence button (status 0088)
    /// and the check-out (0111) of a subscriber's alarm unit.
    pub fn with_desk(mut self, desk: Arc<crate::dispatch::desk::Desk>) -> Scaip {
        self.desk = Some(desk);
        self
    }

    /// The device registry (SIP users and their passwords, and the devices).
    pub fn registry(&self) -> &crate::registers::devices::Devices {
        self.ingress.receiver().registry()
    }

    /// The metric handles.
    pub fn metrics(&self) -> &crate::telemetry::ScaipMetrics {
        &self.metrics
    }

    /// Checks a trunk's Digest credentials on a `method` request to `uri` from `peer`: in
    /// the devices' realm, with their nonces, against the trunk's one `user` and `password`.
    /// Without credentials (or with a stale nonce) the trunk is challenged; any other
    /// failure is counted and refused.
    pub fn authenticate_trunk(
        &self,
        msg: &vakt_proto::sip::Message<'_>,
        method: &str,
        uri: &str,
        peer: SocketAddr,
        user: &str,
        password: &crate::model::SipPassword,
    ) -> crate::voice::switchboard::TrunkCheck {
        use crate::voice::switchboard::TrunkCheck;
        let found = |u: &str| (u == user).then_some(password);
        match self.digest.authenticate_with(msg, method, uri, found) {
            Ok(_) => TrunkCheck::Passed,
            Err(Unauthenticated::Challenge) => TrunkCheck::Challenge(self.digest.challenge(false)),
            Err(Unauthenticated::Refused { reason, stale }) => {
                self.metrics.auth_failure(reason);
                tracing::info!(%peer, reason, "a trunk's sip authentication refused");
                if stale {
                    TrunkCheck::Challenge(self.digest.challenge(true))
                } else {
                    TrunkCheck::Refused
                }
            }
        }
    }

    /// Alarms held now.
    pub fn holds(&self) -> usize {
        self.lock().holds
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request: parse, check, journal (waiting for the flush), and the alarm's
    /// state. Never answers `snu 0` or `4` for a message that is not durable.
    pub async fn answer(&self, req: Request<'_>) -> Answer {
        if req.body.len() > self.opts.max_body_bytes {
            return answer(scaip::sniff_ref(req.body), snu::TOO_LONG, "too_long");
        }
        let mrq = match scaip::parse_mrq(req.body) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "scaip request refused");
                let reference = match e {
                    scaip::MrqError::RefMissing => None,
                    _ => scaip::sniff_ref(req.body),
                };
                return answer(reference, e.snu(), error_result(&e));
            }
        };
        // Only the device registered to this SIP user proves it can reach vakt: another
        // user's request naming its cid must not hide its silence.
        let (supervision_secs, account) = {
            let registry = self.ingress.receiver().registry().current();
            let d = registry.scaip(&mrq.cid, req.user);
            (d.map(|d| d.supervision_secs), d.map(|d| d.account.clone()))
        };
        if supervision_secs.is_some() {
            self.ingress.receiver().heard(&mrq.cid, req.now);
        }
        if let (Some((units, _)), Some(account)) = (&self.callbacks, &account) {
            units.heard(account, req.peer, req.now);
        }
        if mrq.mty == MessageType::Heartbeat {
            return Self::heartbeat(&mrq, supervision_secs.flatten());
        }
        let key = (mrq.cid.clone(), mrq.reference.clone());
        if mrq.mty == MessageType::Message {
            // A repeated alarm: its first copy is durable (a session exists only after the
            // flush), so it gets the alarm's state without a second journal entry.
            let known = self.touch(&key, req.now);
            if let Some(s) = known {
                let mut a = self.state(&key, &s, req.now);
                if a.result == "ok" {
                    a.result = "duplicate";
                }
                return a;
            }
        }
        let (signal, voice) = self.signal(&mrq, &req);
        let subscriber = signal.subscriber.clone();
        let unknown = signal.flags.unknown_device;
        if voice && self.holds() >= self.opts.max_holds {
            // Still journaled, so an operator sees it; the device also tries its next route.
            return match self.journal(signal, &mrq, req.body).await {
                Ok(_) => {
                    self.metrics.busy("holds_full");
                    answer(Some(mrq.reference), snu::BUSY, "busy")
                }
                Err(a) => a,
            };
        }
        let (id, fresh) = match self.journal(signal, &mrq, req.body).await {
            Ok(x) => x,
            Err(a) => return a,
        };
        if fresh && !unknown && mrq.mty != MessageType::Reset {
            if let (Some(sub), Some(stc @ (STC_PRESENCE | STC_CHECK_OUT))) = (&subscriber, mrq.stc)
            {
                self.presence(sub, stc == STC_CHECK_OUT, req.now).await;
            }
        }
        match mrq.mty {
            MessageType::Message => {
                let callback = mrq.cha == Some(1);
                let s = self.open(
                    key.clone(),
                    id,
                    subscriber,
                    voice,
                    (callback, account),
                    req.now,
                );
                self.state(&key, &s, req.now)
            }
            MessageType::Reset => {
                self.reset(&key, req.now);
                answer(Some(mrq.reference), snu::OK, "ok")
            }
            // An update of a held alarm gets the alarm's state; any other, OK once durable.
            _ => match self.touch(&key, req.now) {
                Some(s) => self.state(&key, &s, req.now),
                None => answer(Some(mrq.reference), snu::OK, "ok"),
            },
        }
    }

    /// A heartbeat's answer: `hbi` when the device takes one and the registry sets an
    /// interval.
    fn heartbeat(mrq: &Mrq, supervision_secs: Option<u32>) -> Answer {
        let hbi = supervision_secs.filter(|_| mrq.hbo).map(hbi_minutes);
        Answer {
            mrs: Mrs {
                reference: Some(mrq.reference.clone()),
                snu: snu::OK,
                hbi,
                ..Mrs::default()
            },
            result: "heartbeat",
        }
    }

    /// Builds the Signal and says whether it waits for an operator's voice call.
    fn signal(&self, m: &Mrq, req: &Request<'_>) -> (Signal, bool) {
        let registry = self.ingress.receiver().registry().current();
        // The device is the registry's only if it authenticated with that device's user.
        let device = registry.scaip(&m.cid, req.user);
        // A cid that is another device's (another SIP user's, or a DC-09 account): this
        // request does not prove it comes from that device.
        let unauthenticated = device.is_none() && registry.has_account(&m.cid);
        if device.is_none() {
            tracing::warn!(cid = %m.cid, user = %req.user, unauthenticated, "scaip cid not registered to this SIP user; journaled as unknown device");
        }
        let (code, qualifier) = match m.mty {
            MessageType::Reset => (priority::SCAIP_RESET.to_owned(), Qualifier::New),
            MessageType::Info => (priority::scaip_code(m.dty, m.stc), Qualifier::Status),
            _ => (priority::scaip_code(m.dty, m.stc), Qualifier::New),
        };
        let name = match m.mty {
            MessageType::Reset => Some("Device stopped waiting (reset)"),
            _ => priority::scaip_name(m.dty, m.stc),
        };
        let event = SignalEvent {
            code,
            name: name.map(str::to_owned),
            qualifier,
            zone: m.dco.map(u32::from),
            group: None,
            user: None,
            text: event_text(m),
            time: None,
        };
        let signal = Signal {
            id: 0,
            received_at: req.now,
            transport: req.transport,
            peer: req.peer,
            protocol: PROTOCOL.to_owned(),
            encrypted: req.transport == Transport::Tls,
            account: m.cid.clone(),
            line: None,
            receiver: None,
            seq: m.reference.clone(),
            flags: Flags {
                unknown_device: device.is_none(),
                unauthenticated,
                ..Flags::default()
            },
            subscriber: device.and_then(|d| d.subscriber.clone()),
            device_type: device.and_then(|d| d.device_type.clone()),
            transmitted_at: None,
            event_time: None,
            events: vec![event],
            xdata: Vec::new(),
            raw: req.body.to_vec(),
            scaip: Some(Box::new(ScaipInfo::from_mrq(m, req.user))),
        };
        let voice = m.mty == MessageType::Message
            && priority::scaip_needs_voice(&priority::classify(&signal, None));
        (signal, voice)
    }

    /// Tells the dispatch desk of a visitor at the subscriber's home.
    async fn presence(&self, subscriber: &str, check_out: bool, at: Timestamp) {
        let Some(desk) = self.desk.clone() else {
            return;
        };
        let sub = subscriber.to_owned();
        let r = tokio::task::spawn_blocking(move || {
            let d = desk.presence(&sub, check_out, at, Timestamp::now())?;
            desk.flush_blocking()?;
            Ok::<_, crate::dispatch::desk::DeskError>(d)
        })
        .await;
        match r {
            Ok(Ok(Some(d))) => {
                tracing::info!(
                    dispatch = d.id,
                    check_out,
                    "dispatch marked from the alarm unit"
                )
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "presence at the home not recorded on the dispatch")
            }
            Err(e) => tracing::warn!(error = %e, "presence task failed"),
        }
    }

    /// Journals the Signal and waits for the flush: its id, and whether it is new (not a
    /// retransmission). The error is the answer to send.
    async fn journal(&self, signal: Signal, m: &Mrq, body: &[u8]) -> Result<(u64, bool), Answer> {
        let dedup: DedupKey = match m.mty {
            // A repeated alarm is the same alarm whatever else changed in its copy.
            MessageType::Message => dedup_key(&[
                PROTOCOL.as_bytes(),
                m.cid.as_bytes(),
                m.reference.as_bytes(),
                b"ME",
            ]),
            _ => dedup_key(&[
                PROTOCOL.as_bytes(),
                m.cid.as_bytes(),
                m.reference.as_bytes(),
                m.mty.as_str().as_bytes(),
                body,
            ]),
        };
        let reference = Some(m.reference.clone());
        match self.ingress.journal(signal, Some(dedup)).await {
            Ok(d) => Ok((d.id, d.fresh)),
            Err(e) => {
                let reason = match e {
                    NotDurable::Full => "journal_full",
                    NotDurable::Unavailable(_) | NotDurable::Failed => "journal_failed",
                };
                if !matches!(e, NotDurable::Failed) {
                    tracing::warn!(error = %e, "scaip request not journaled; answered busy");
                }
                self.metrics.busy(reason);
                Err(answer(reference, snu::BUSY, "busy"))
            }
        }
    }

    /// Marks a known session seen; returns it.
    fn touch(&self, key: &(String, String), now: Timestamp) -> Option<Session> {
        let mut g = self.lock();
        let s = g.map.get_mut(key)?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// Remembers a durable alarm (or finds the one a journal duplicate points at).
    fn open(
        &self,
        key: (String, String),
        signal: u64,
        subscriber: Option<String>,
        voice: bool,
        (callback, account): (bool, Option<String>),
        now: Timestamp,
    ) -> Session {
        let mut g = self.lock();
        self.sweep(&mut g, now);
        let s = g.map.entry(key).or_insert(Session {
            signal,
            subscriber,
            voice,
            holding: false,
            last_seen: now,
            reset: false,
            callback,
            account,
        });
        s.last_seen = now;
        s.clone()
    }

    fn reset(&self, key: &(String, String), now: Timestamp) {
        let mut g = self.lock();
        let mut released = false;
        if let Some(s) = g.map.get_mut(key) {
            s.reset = true;
            s.last_seen = now;
            released = std::mem::take(&mut s.holding);
        }
        if released {
            g.holds -= 1;
            self.metrics.holds.set(g.holds as f64);
        }
    }

    /// The answer for an alarm in its current state: hold while no operator has its Call,
    /// then `snu 0` with the voice reply; `snu 0` once the Call is closed or when no voice
    /// call is needed.
    fn state(&self, key: &(String, String), s: &Session, now: Timestamp) -> Answer {
        let reference = Some(key.1.clone());
        let call_state = match self.tracker.outcome(s.signal) {
            // Not triaged yet (it is durable): hold.
            None => Some(CallState::Queued),
            Some(Some(
                Ingested::Opened(c) | Ingested::Merged { call: c, .. } | Ingested::Restored(c),
            )) => self.triage.call_state(c),
            Some(Some(Ingested::Rule(_))) => None,
            // Triaged before a restart: the open Call that holds the Signal, if any.
            Some(None) => self
                .triage
                .open_call_with_signal(s.subscriber.as_deref(), &key.0, s.signal)
                .map(|(_, st)| st),
        };
        let hold = s.voice
            && !s.reset
            && match call_state {
                Some(CallState::Queued) => true,
                Some(CallState::Claimed) => {
                    self.set_holding(key, false, now);
                    return self.voice(reference, s, now);
                }
                Some(CallState::Closed) | None => false,
            };
        self.set_holding(key, hold, now);
        if hold {
            answer(reference, snu::HOLD, "hold")
        } else {
            answer(reference, snu::OK, "ok")
        }
    }

    /// `snu 0` with `mre`: call the centre (its receiver, or `tnu` with `cre 62`), or, to a
    /// registered unit that asked to be called back, `cre` with the call-back window, which
    /// `units` then remembers (each answer of it moves the window on).
    fn voice(&self, reference: Option<String>, s: &Session, now: Timestamp) -> Answer {
        let callback = match (&self.callbacks, &s.account) {
            (Some((units, mins)), Some(account)) if s.callback => {
                crate::voice::dial::cre_window(*mins).inspect(|_| {
                    units.granted(account, *mins, now);
                })
            }
            _ => None,
        };
        let (cre, tnu) = match (callback, &self.opts.voice_uri) {
            (Some(cre), _) => (Some(cre), None),
            (None, Some(u)) => (Some("62".to_owned()), Some(u.clone())),
            (None, None) => (None, None),
        };
        Answer {
            mrs: Mrs {
                reference,
                snu: snu::OK,
                mre: Some(self.opts.voice_mre),
                cre,
                tnu,
                ..Mrs::default()
            },
            result: "voice",
        }
    }

    fn set_holding(&self, key: &(String, String), holding: bool, now: Timestamp) {
        let mut g = self.lock();
        let Some(s) = g.map.get_mut(key) else {
            return;
        };
        s.last_seen = now;
        let was = std::mem::replace(&mut s.holding, holding);
        match (was, holding) {
            (false, true) => g.holds += 1,
            (true, false) => g.holds -= 1,
            _ => return,
        }
        self.metrics.holds.set(g.holds as f64);
    }

    /// Forgets sessions older than the session time, and stops counting holds whose device
    /// went quiet. At most once a second; linear in the sessions.
    fn sweep(&self, g: &mut Sessions, now: Timestamp) {
        if g.last_sweep
            .is_some_and(|t| now.duration_since(t) < SignedDuration::from_secs(1))
        {
            return;
        }
        g.last_sweep = Some(now);
        let session = self.opts.session;
        let mut holds = 0;
        g.map.retain(|_, s| {
            let age = now.duration_since(s.last_seen);
            if s.holding && age > HOLD_QUIET {
                s.holding = false;
            }
            holds += usize::from(s.holding);
            age <= session
        });
        g.holds = holds;
        self.metrics.holds.set(holds as f64);
    }

    /// Runs the sweep (the server calls this every few seconds so quiet holds stop
    /// counting even when no request arrives).
    pub fn tick(&self, now: Timestamp) {
        let mut g = self.lock();
        self.sweep(&mut g, now);
    }
}

impl ScaipHandler for Scaip {
    fn authenticate(
        &self,
        msg: &vakt_proto::sip::Message<'_>,
        method: &str,
        uri: &str,
        peer: SocketAddr,
    ) -> Result<String, String> {
        let registry = self.registry().current();
        match self.digest.authenticate(msg, method, uri, &registry) {
            Ok(user) => Ok(user),
            Err(why) => {
                let stale = match why {
                    Unauthenticated::Challenge => false,
                    Unauthenticated::Refused { reason, stale } => {
                        self.metrics.auth_failure(reason);
                        tracing::info!(%peer, reason, "sip authentication refused");
                        stale
                    }
                };
                Err(self.digest.challenge(stale))
            }
        }
    }

    async fn message(&self, req: Request<'_>) -> Vec<u8> {
        // Bounded: beyond `max_in_flight` requests waiting for the journal, busy.
        let a = match self.in_flight.try_acquire() {
            Ok(_permit) => self.answer(req).await,
            Err(_) => {
                self.metrics.busy("in_flight");
                answer(scaip::sniff_ref(req.body), snu::BUSY, "busy")
            }
        };
        self.metrics.message(req.transport, a.result);
        tracing::debug!(snu = a.mrs.snu, result = a.result, "scaip answered");
        let mut xml = Vec::with_capacity(128);
        scaip::encode_mrs(&a.mrs, &mut xml);
        xml
    }
}
