//! The demo's SCAIP homes: each alarm unit is a real SIP client ([`Luc`]) of vakt's SCAIP
//! UDP port, with Digest and its own credentials: heartbeats, alarms held (`snu 4`) and
//! polled until answered or reset, low batteries, and the visiting patrol's presence and
//! check-out.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SimOptions;
use super::pace::{
    BACKOFF_MAX, BACKOFF_MIN, MAX_DELAY, MAX_INTERVAL, MIN_INTERVAL, beat_within, draw,
    exp_interval, pause,
};
use super::seed::{demo_devices, demo_people, owner};
use crate::model::SipPassword;
use crate::sim::demo_call::{self, CallEnd, CallReport, Unit, UnitCallOptions};
use crate::sim::luc::{Luc, LucError};
use vakt_proto::scaip::Mrs;

/// How the simulated SCAIP homes behave. Every delay range is drawn from uniformly (a
/// reversed range is taken the right way round; at most a day); percentages over 100 count
/// as 100.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaipSimOptions {
    /// Mean time between two stories (an alarm or a low battery) of all the SCAIP homes
    /// together (exponentially distributed; the first comes within 20 s). Default 4 min.
    pub mean_alarm_interval: Duration,
    /// Time between two heartbeats (`mty=PI`) of one home (shorter when the home's
    /// supervision interval or the `hbi` vakt answers asks for it: at most two thirds of the
    /// one, half of the other). Default 3 min.
    pub heartbeat_interval: Duration,
    /// How often a held alarm (`snu 4`) polls again (default 5-10 s).
    pub poll_every: RangeInclusive<Duration>,
    /// How long a held alarm polls before the unit gives up with a reset (`mty=RE`).
    /// Default 30 min.
    pub give_up_after: Duration,
    /// Share of stories that are a low battery in the pendant (default 15 %).
    pub battery_percent: u32,
    /// Share of alarms from the fall detector rather than the pendant (default 30 %).
    pub fall_percent: u32,
    /// Share of answered alarms after which the visiting patrol presses the presence
    /// button (default 50 %).
    pub presence_percent: u32,
    /// From the answer (`snu 0`) to the presence button (status 0088; default 3-8 min).
    pub presence_after: RangeInclusive<Duration>,
    /// From the presence button to the check-out (status 0111; default 1-4 min).
    pub check_out_after: RangeInclusive<Duration>,
    /// After an answered alarm (`snu 0` with `mre` 1 or more) the home calls vakt and the
    /// person speaks ([`demo_call`], one call per home at a time); `None`: it does not call.
    pub voice_call: Option<UnitCallOptions>,
}

impl Default for ScaipSimOptions {
    fn default() -> Self {
        ScaipSimOptions {
            mean_alarm_interval: Duration::from_secs(240),
            heartbeat_interval: Duration::from_secs(180),
            poll_every: Duration::from_secs(5)..=Duration::from_secs(10),
            give_up_after: Duration::from_secs(30 * 60),
            battery_percent: 15,
            fall_percent: 30,
            presence_percent: 50,
            presence_after: Duration::from_secs(180)..=Duration::from_secs(480),
            check_out_after: Duration::from_secs(60)..=Duration::from_secs(240),
            voice_call: Some(UnitCallOptions::default()),
        }
    }
}

/// Mixed into [`SimOptions::seed`] for the SCAIP homes' random numbers.
pub(super) const SCAIP_SEED_SALT: u64 = 0x5CA1_9110_0D3E_0A11;
/// The first SCAIP story comes at most this long after the start.
const SCAIP_FIRST_WITHIN: Duration = Duration::from_secs(20);
/// Tries of a battery low, presence or check-out before the home gives it up.
const SCAIP_ATTEMPTS: u32 = 6;
/// Most presence and check-out presses one home keeps waiting.
const MAX_VISITS: usize = 8;
/// Most `<mrs>` of other requests skipped while waiting for the one of this request (a
/// retransmission of an earlier answer over UDP).
const MAX_STALE_MRS: usize = 3;
/// SCAIP device type of the alarm unit itself (local unit and controller).
const DTY_UNIT: u16 = 2;
/// SCAIP device type of the pendant (personal trigger).
const DTY_PENDANT: u16 = 3;
/// SCAIP device type of the fall detector.
const DTY_FALL: u16 = 5;
/// SCAIP status "battery low".
const STC_BATTERY_LOW: u16 = 16;

/// One simulated SCAIP home: its alarm unit's cid and SIP credentials.
#[derive(Clone)]
pub(super) struct ScaipHome {
    cid: String,
    user: String,
    password: SipPassword,
    /// The subscriber's name (or the cid when unknown).
    name: String,
    /// `her`, `his` or `their`.
    pronoun: &'static str,
    heartbeat: Duration,
}

/// The demo's SCAIP homes: the devices with a `sip_user` (and a password).
pub(super) fn scaip_homes(opts: &ScaipSimOptions) -> Vec<ScaipHome> {
    let people = demo_people();
    demo_devices()
        .into_iter()
        .filter_map(|d| {
            let (user, password) = (d.sip_user.clone()?, d.sip_password.clone()?);
            let (name, pronoun) = owner(&d, &people);
            Some(ScaipHome {
                heartbeat: beat_within(opts.heartbeat_interval, d.supervision_secs),
                cid: d.account,
                user,
                password,
                name,
                pronoun,
            })
        })
        .collect()
}

/// What the SCAIP scheduler asks a home to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HomeStory {
    /// The pendant, or the fall detector, raises an alarm.
    Alarm { fall: bool },
    /// The pendant's battery runs low.
    BatteryLow,
}

/// A button the visiting patrol presses on the alarm unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Visit {
    /// Status 0088, presence: the patrol has arrived.
    Presence,
    /// Status 0111, check-out: the patrol leaves.
    CheckOut,
}

impl Visit {
    fn stc(self) -> u16 {
        match self {
            Visit::Presence => crate::ingest::scaip::STC_PRESENCE,
            Visit::CheckOut => crate::ingest::scaip::STC_CHECK_OUT,
        }
    }
}

/// Whether a home goes on after a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Go,
    /// Shutdown, or vakt refused the home's credentials.
    Stop,
}

/// Why a SCAIP request got no usable answer.
#[derive(Debug, thiserror::Error)]
enum HomeError {
    #[error("{0}")]
    Luc(#[from] LucError),
    /// vakt refused the credentials (401, or 403).
    #[error("credentials refused (SIP {0})")]
    Refused(u16),
    /// Another final answer than 200 (e.g. 503 over the rate).
    #[error("answered SIP {0}")]
    Status(u16),
    #[error("no <mrs> for this request")]
    NoMrs,
}

/// The SCAIP part of [`super::simulate`]: one task per home, and a scheduler that hands them
/// their stories.
pub(super) async fn simulate_scaip(
    server: SocketAddr,
    opts: &SimOptions,
    mut rng: SmallRng,
    shutdown: &CancellationToken,
) {
    let homes = scaip_homes(&opts.scaip);
    if homes.is_empty() {
        tracing::debug!("demo: no SCAIP homes in the demo data");
        return;
    }
    tracing::info!(
        homes = homes.len(),
        %server,
        "demo: simulating the Vaktby SCAIP homes"
    );
    // References unique across restarts of the demo: the start time, then a counter.
    let prefix = u32::try_from(jiff::Timestamp::now().as_second().rem_euclid(1 << 32)).unwrap_or(0);
    let mut tasks = JoinSet::new();
    let mut senders = Vec::with_capacity(homes.len());
    for home in homes {
        // One story waiting at most: a home busy with a held alarm lets the others pass.
        let (tx, rx) = mpsc::channel(1);
        senders.push(tx);
        let sim = HomeSim {
            server,
            opts: opts.scaip.clone(),
            rng: SmallRng::seed_from_u64(rng.random::<u64>()),
            luc: None,
            ref_prefix: prefix,
            next_ref: 0,
            hbi: None,
            backoff: BACKOFF_MIN,
            not_before: None,
            visits: Vec::new(),
            call: None,
            home,
        };
        tasks.spawn(sim.run(rx, shutdown.clone()));
    }
    scaip_schedule(&senders, &opts.scaip, rng, shutdown).await;
    drop(senders);
    while tasks.join_next().await.is_some() {}
}

/// One alarm of one SCAIP alarm unit, played as the demo's homes play it: the alarm polled
/// while vakt holds it (`snu 4`), and on `snu 0` with `mre` the unit's voice call, to its
/// end. Returns the call's report (`None`: no call was placed, or it failed). For tests and
/// tools that drive a unit of their own registry; `opts.voice_call` as the demo's homes.
pub async fn alarm_and_call(
    unit: Unit,
    opts: ScaipSimOptions,
    shutdown: &CancellationToken,
) -> Option<CallReport> {
    let mut sim = HomeSim {
        home: ScaipHome {
            heartbeat: opts.heartbeat_interval,
            cid: unit.cid.clone(),
            name: format!("unit {}", unit.cid),
            pronoun: "their",
            password: SipPassword::new(unit.password),
            user: unit.user,
        },
        server: unit.server,
        opts,
        rng: SmallRng::seed_from_u64(rand::random()),
        luc: None,
        ref_prefix: rand::random::<u32>() >> 8,
        next_ref: 0,
        hbi: None,
        backoff: BACKOFF_MIN,
        not_before: None,
        visits: Vec::new(),
        call: None,
    };
    sim.alarm(false, shutdown).await;
    sim.call.take()?.await.ok().flatten()
}

/// Hands a story to a random home at exponential intervals, until `shutdown`.
async fn scaip_schedule(
    senders: &[mpsc::Sender<HomeStory>],
    opts: &ScaipSimOptions,
    mut rng: SmallRng,
    shutdown: &CancellationToken,
) {
    if senders.is_empty() {
        return;
    }
    let mean = opts.mean_alarm_interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    let mut wait = exp_interval(&mut rng, mean).min(SCAIP_FIRST_WITHIN);
    loop {
        if pause(wait, shutdown).await {
            return;
        }
        let story = if percent(&mut rng, opts.battery_percent) {
            HomeStory::BatteryLow
        } else {
            HomeStory::Alarm {
                fall: percent(&mut rng, opts.fall_percent),
            }
        };
        let i = rng.random_range(0..senders.len());
        if let Some(tx) = senders.get(i) {
            if let Err(e) = tx.try_send(story) {
                tracing::debug!(error = %e, "demo: SCAIP home busy, story dropped");
            }
        }
        wait = exp_interval(&mut rng, mean);
    }
}

/// True `p` times out of 100.
fn percent(rng: &mut SmallRng, p: u32) -> bool {
    rng.random_range(0..100u32) < p
}

/// The `<mrq>` of a home: `mty` (omitted for an alarm or status message), `hbo=001` for a
/// heartbeat, `cid`, `dty` and `stc` (omitted: the alarm state), in SS 91100's order.
fn mrq_body(reference: &str, mty: Option<&str>, cid: &str, dty: u16, stc: Option<u16>) -> String {
    let mut b = format!("<mrq><ref>{reference}</ref>");
    if let Some(m) = mty {
        b.push_str(&format!("<mty>{m}</mty>"));
        if m == "PI" {
            b.push_str("<hbo>001</hbo>");
        }
    }
    b.push_str(&format!("<cid>{cid}</cid><dty>{dty:04}</dty>"));
    if let Some(s) = stc {
        b.push_str(&format!("<stc>{s:04}</stc>"));
    }
    b.push_str("</mrq>");
    b
}

/// One simulated SCAIP home: heartbeats on its own clock, the scheduler's stories, and the
/// patrol's presses after an answered alarm; one [`Luc`] on its own UDP socket, one request
/// at a time (each waits for its `<mrs>`).
struct HomeSim {
    home: ScaipHome,
    server: SocketAddr,
    opts: ScaipSimOptions,
    rng: SmallRng,
    /// The unit's SIP client, made on demand and dropped on any error (a fresh socket).
    luc: Option<Luc>,
    ref_prefix: u32,
    next_ref: u32,
    /// The heartbeat interval vakt last answered (`hbi`).
    hbi: Option<Duration>,
    backoff: Duration,
    not_before: Option<Instant>,
    /// Presses waiting: when, which.
    visits: Vec<(Instant, Visit)>,
    /// The unit's voice call, while it goes on (one at a time); it ends with the demo.
    call: Option<JoinHandle<Option<CallReport>>>,
}

/// What a home does next.
enum HomeJob {
    Beat,
    Story(HomeStory),
    Visit(Visit),
}

impl HomeSim {
    /// The home's life until `shutdown` (or vakt refuses it); its call, if one goes on, is
    /// awaited (it hangs up at the shutdown).
    async fn run(mut self, rx: mpsc::Receiver<HomeStory>, shutdown: CancellationToken) {
        self.live(rx, &shutdown).await;
        if let Some(call) = self.call.take() {
            let _ = call.await;
        }
    }

    async fn live(&mut self, mut rx: mpsc::Receiver<HomeStory>, shutdown: &CancellationToken) {
        let first = self.home.heartbeat.min(Duration::from_secs(5));
        let first_ms = u64::try_from(first.as_millis()).unwrap_or(5000).max(1);
        let mut next_beat =
            Instant::now() + Duration::from_millis(self.rng.random_range(0..first_ms));
        let mut open = true;
        loop {
            let visit = self.visits.iter().map(|v| v.0).min();
            let wake = visit.map_or(next_beat, |v| v.min(next_beat));
            let job = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                s = rx.recv(), if open => match s {
                    Some(s) => HomeJob::Story(s),
                    None => { open = false; continue; }
                },
                () = tokio::time::sleep_until(wake) => match self.due_visit(Instant::now()) {
                    Some(v) => HomeJob::Visit(v),
                    None => HomeJob::Beat,
                },
            };
            let work = async {
                match job {
                    HomeJob::Beat => {
                        let f = self.beat().await;
                        let jitter = self.rng.random_range(0.9..1.1);
                        next_beat = Instant::now() + self.beat_interval().mul_f64(jitter);
                        f
                    }
                    HomeJob::Story(HomeStory::Alarm { fall }) => self.alarm(fall, shutdown).await,
                    HomeJob::Story(HomeStory::BatteryLow) => self.battery_low().await,
                    HomeJob::Visit(v) => self.visit(v).await,
                }
            };
            let flow = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                f = work => f,
            };
            if flow == Flow::Stop {
                return;
            }
        }
    }

    /// Removes and returns the earliest press due at `now`.
    fn due_visit(&mut self, now: Instant) -> Option<Visit> {
        let (i, _) = self
            .visits
            .iter()
            .enumerate()
            .filter(|(_, v)| v.0 <= now)
            .min_by_key(|(_, v)| v.0)?;
        Some(self.visits.swap_remove(i).1)
    }

    fn plan_visit(&mut self, after: &RangeInclusive<Duration>, v: Visit) {
        if self.visits.len() < MAX_VISITS {
            let d = draw(&mut self.rng, after);
            self.visits.push((Instant::now() + d, v));
        }
    }

    /// The heartbeat interval: the home's, at most half the `hbi` vakt answered.
    fn beat_interval(&self) -> Duration {
        let hb = self.home.heartbeat;
        self.hbi.map_or(hb, |h| hb.min(h / 2)).max(MIN_INTERVAL)
    }

    /// A new message reference (`[0-9A-F]{1,16}`).
    fn new_ref(&mut self) -> String {
        self.next_ref = self.next_ref.wrapping_add(1);
        format!("{:X}{:06X}", self.ref_prefix, self.next_ref & 0xFF_FFFF)
    }

    fn body(&self, reference: &str, mty: Option<&str>, dty: u16, stc: Option<u16>) -> String {
        mrq_body(reference, mty, &self.home.cid, dty, stc)
    }

    /// Sends `body` and returns vakt's `<mrs>` for `reference`. A transport error drops the
    /// client (the next request makes a new one, after a backoff of 1 s doubling to 30 s).
    async fn exchange(&mut self, body: &str, reference: &str) -> Result<Mrs, HomeError> {
        if self.luc.is_none() {
            if let Some(t) = self.not_before.take() {
                tokio::time::sleep_until(t).await;
            }
            let pw = self.home.password.expose();
            self.luc = Some(Luc::udp(self.server, &self.home.user, pw).await?);
        }
        let r = match self.luc.as_mut() {
            Some(luc) => talk(luc, body, reference).await,
            None => Err(HomeError::NoMrs),
        };
        match &r {
            Ok(_) => self.backoff = BACKOFF_MIN,
            Err(HomeError::Refused(_)) => {}
            Err(_) => {
                self.luc = None;
                self.not_before = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
        r
    }

    /// [`HomeSim::exchange`], tried up to [`SCAIP_ATTEMPTS`] times (the same reference).
    async fn send(&mut self, body: &str, reference: &str) -> Result<Mrs, HomeError> {
        let mut last = HomeError::NoMrs;
        for attempt in 0..SCAIP_ATTEMPTS {
            match self.exchange(body, reference).await {
                Ok(m) => return Ok(m),
                Err(e @ HomeError::Refused(_)) => return Err(e),
                Err(e) => {
                    tracing::debug!(cid = %self.home.cid, attempt, error = %e, "demo: SCAIP message not answered");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// vakt refused this home's credentials: said once, and the home stops.
    fn refused(&self, e: &HomeError) -> Flow {
        tracing::warn!(
            cid = %self.home.cid,
            user = %self.home.user,
            error = %e,
            "demo: vakt refused the SCAIP home of {} (is this data directory seeded by an \
             older demo, without the SCAIP homes?); it stays silent",
            self.home.name
        );
        Flow::Stop
    }

    /// A heartbeat (`mty=PI`, `hbo=001`): keeps the unit supervised, learns `hbi`.
    async fn beat(&mut self) -> Flow {
        let r = self.new_ref();
        let body = self.body(&r, Some("PI"), DTY_UNIT, None);
        match self.exchange(&body, &r).await {
            Ok(mrs) => {
                if let Some(m) = mrs.hbi {
                    self.hbi = Some(Duration::from_secs(u64::from(m) * 60));
                }
                tracing::debug!(cid = %self.home.cid, snu = mrs.snu, hbi = ?mrs.hbi, "demo: SCAIP heartbeat answered");
                Flow::Go
            }
            Err(e @ HomeError::Refused(_)) => self.refused(&e),
            Err(e) => {
                tracing::debug!(cid = %self.home.cid, error = %e, "demo: SCAIP heartbeat not answered");
                Flow::Go
            }
        }
    }

    /// An alarm: the same `<mrq>` every 5-10 s while vakt holds it (`snu 4`), done on
    /// `snu 0` (an operator took the Call; with `mre` 1 or more the unit then places its
    /// voice call, [`HomeSim::place_call`]), a reset (`mty=RE`) after
    /// [`ScaipSimOptions::give_up_after`].
    async fn alarm(&mut self, fall: bool, shutdown: &CancellationToken) -> Flow {
        let reference = self.new_ref();
        let dty = if fall { DTY_FALL } else { DTY_PENDANT };
        let body = self.body(&reference, None, dty, None);
        let (name, her) = (self.home.name.clone(), self.home.pronoun);
        let cid = self.home.cid.clone();
        let say = if fall {
            format!("demo: {name}'s fall detector went off (SCAIP, held until an operator answers)")
        } else {
            format!("demo: {name} pressed {her} alarm (SCAIP, held until an operator answers)")
        };
        let started = Instant::now();
        let give_up = started + self.opts.give_up_after.min(MAX_DELAY);
        let mut said = false;
        let mut polls: u32 = 0;
        loop {
            polls += 1;
            match self.exchange(&body, &reference).await {
                Ok(mrs) if mrs.snu == vakt_proto::scaip::snu::OK => {
                    if !said {
                        tracing::info!(cid = %cid, reference = %reference, "{say}");
                    }
                    let secs = started.elapsed().as_secs();
                    match mrs.mre.filter(|m| *m > 0) {
                        Some(mre) => {
                            tracing::info!(
                                cid = %cid,
                                reference = %reference,
                                mre,
                                "demo: an operator took {name}'s alarm after {secs} s"
                            );
                            self.place_call(shutdown);
                        }
                        None => tracing::info!(
                            cid = %cid,
                            reference = %reference,
                            "demo: vakt finished {name}'s alarm after {secs} s (no voice call)"
                        ),
                    }
                    if percent(&mut self.rng, self.opts.presence_percent) {
                        let after = self.opts.presence_after.clone();
                        self.plan_visit(&after, Visit::Presence);
                    }
                    return Flow::Go;
                }
                Ok(mrs) if mrs.snu == vakt_proto::scaip::snu::HOLD => {
                    if !said {
                        tracing::info!(cid = %cid, reference = %reference, "{say}");
                        said = true;
                    }
                    tracing::debug!(cid = %cid, reference = %reference, polls, "demo: SCAIP alarm held");
                }
                // Busy (snu 6): a real unit would also try its next route; this one polls on.
                Ok(mrs) if mrs.snu == vakt_proto::scaip::snu::BUSY => {
                    tracing::debug!(cid = %cid, reference = %reference, "demo: SCAIP alarm answered busy");
                }
                Ok(mrs) => {
                    tracing::debug!(cid = %cid, reference = %reference, snu = mrs.snu, "demo: SCAIP alarm refused");
                    return Flow::Go;
                }
                Err(e @ HomeError::Refused(_)) => return self.refused(&e),
                Err(e) => {
                    tracing::debug!(cid = %cid, reference = %reference, error = %e, "demo: SCAIP alarm not answered");
                }
            }
            let wait = draw(&mut self.rng, &self.opts.poll_every).max(MIN_INTERVAL);
            if Instant::now() + wait >= give_up {
                break;
            }
            if pause(wait, shutdown).await {
                return Flow::Stop;
            }
        }
        // Nobody answered in time: the unit stops waiting (and would try its other route).
        let reset = self.body(&reference, Some("RE"), dty, None);
        match self.send(&reset, &reference).await {
            Ok(_) => {
                let mins = started.elapsed().as_secs() / 60;
                tracing::info!(
                    cid = %cid,
                    reference = %reference,
                    "demo: {name}'s alarm unit gave up waiting for an operator after {mins} min (reset)"
                );
                Flow::Go
            }
            Err(e @ HomeError::Refused(_)) => self.refused(&e),
            Err(e) => {
                tracing::debug!(cid = %cid, error = %e, "demo: SCAIP reset not answered");
                Flow::Go
            }
        }
    }

    /// The unit calls vakt back after an answered alarm (protocols.md §3.7: within 60 s of
    /// the `snu 0`, here at once) and the person speaks once an operator answers
    /// ([`demo_call::call`]); on its own task, so heartbeats go on during the call. One call
    /// at a time: a home already on the phone does not call again.
    fn place_call(&mut self, shutdown: &CancellationToken) {
        let (name, cid) = (self.home.name.clone(), self.home.cid.clone());
        let Some(opts) = self.opts.voice_call.clone() else {
            tracing::info!(cid = %cid, "demo: {name}'s alarm unit does not call (the demo's calls are off)");
            return;
        };
        if self.call.as_ref().is_some_and(|c| !c.is_finished()) {
            tracing::info!(cid = %cid, "demo: {name}'s alarm unit is already on the phone with vakt");
            return;
        }
        let unit = Unit {
            server: self.server,
            cid: cid.clone(),
            user: self.home.user.clone(),
            password: self.home.password.expose().to_owned(),
        };
        let her = match self.home.pronoun {
            "her" => "her",
            "his" => "him",
            _ => "them",
        };
        let shutdown = shutdown.clone();
        self.call = Some(tokio::spawn(async move {
            tracing::info!(
                cid = %cid,
                "demo: {name}'s alarm unit calls vakt: answer the voice call on the Call to hear {her}"
            );
            let r = demo_call::call(&unit, &opts, &shutdown).await;
            let report = match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(cid = %cid, error = %e, "demo: {name}'s call failed");
                    return None;
                }
            };
            let secs = report.talk.as_secs();
            match report.end {
                CallEnd::ArcHungUp if report.law.is_some() => tracing::info!(
                    cid = %cid, heard = report.frames_heard,
                    "demo: vakt hung up on {name} after {secs} s"
                ),
                CallEnd::ArcHungUp => {}
                CallEnd::ClearDown => tracing::info!(
                    cid = %cid,
                    "demo: {name}'s alarm unit cleared down (DTMF 0) after {secs} s"
                ),
                CallEnd::MaxDuration => tracing::info!(
                    cid = %cid,
                    "demo: {name}'s alarm unit hung up after {secs} s, its longest call"
                ),
                CallEnd::NotAnswered => tracing::info!(
                    cid = %cid,
                    "demo: nobody answered {name}'s call within {} s; the alarm unit gave up",
                    opts.ring_for.as_secs()
                ),
                CallEnd::Refused(code) => tracing::info!(
                    cid = %cid,
                    code,
                    "demo: vakt refused {name}'s call (SIP {code})"
                ),
                CallEnd::Shutdown => {
                    tracing::debug!(cid = %cid, "demo: {name}'s call ended with the demo")
                }
            }
            Some(report)
        }));
    }

    /// The pendant's battery runs low (status 0016): answered `snu 0` once durable.
    async fn battery_low(&mut self) -> Flow {
        let r = self.new_ref();
        let body = self.body(&r, None, DTY_PENDANT, Some(STC_BATTERY_LOW));
        match self.send(&body, &r).await {
            Ok(_) => {
                tracing::info!(
                    cid = %self.home.cid,
                    "demo: low battery in {}'s alarm pendant (SCAIP)",
                    self.home.name
                );
                Flow::Go
            }
            Err(e @ HomeError::Refused(_)) => self.refused(&e),
            Err(e) => {
                tracing::debug!(cid = %self.home.cid, error = %e, "demo: SCAIP battery low given up");
                Flow::Go
            }
        }
    }

    /// The patrol presses presence (status 0088, then a check-out is planned) or checks
    /// out (0111) on the alarm unit; vakt marks the patrol's dispatch from them.
    async fn visit(&mut self, v: Visit) -> Flow {
        let r = self.new_ref();
        let body = self.body(&r, None, DTY_UNIT, Some(v.stc()));
        match self.send(&body, &r).await {
            Ok(_) => {
                let name = &self.home.name;
                match v {
                    Visit::Presence => tracing::info!(
                        cid = %self.home.cid,
                        "demo: the patrol pressed presence on {name}'s alarm unit (SCAIP)"
                    ),
                    Visit::CheckOut => tracing::info!(
                        cid = %self.home.cid,
                        "demo: the patrol checked out on {name}'s alarm unit (SCAIP)"
                    ),
                }
                if v == Visit::Presence {
                    let after = self.opts.check_out_after.clone();
                    self.plan_visit(&after, Visit::CheckOut);
                }
                Flow::Go
            }
            Err(e @ HomeError::Refused(_)) => self.refused(&e),
            Err(e) => {
                tracing::debug!(cid = %self.home.cid, error = %e, "demo: SCAIP presence given up");
                Flow::Go
            }
        }
    }
}

/// One request through `luc`: the final SIP answer, and the `<mrs>` for `reference`
/// (skipping at most [`MAX_STALE_MRS`] answers to earlier requests).
async fn talk(luc: &mut Luc, body: &str, reference: &str) -> Result<Mrs, HomeError> {
    let x = luc.mrq(body).await?;
    match x.code {
        200 => {}
        401 | 403 => return Err(HomeError::Refused(x.code)),
        c => return Err(HomeError::Status(c)),
    }
    let mut mrs = x.mrs.ok_or(HomeError::NoMrs)?;
    for _ in 0..MAX_STALE_MRS {
        if mrs.reference.as_deref() == Some(reference) {
            return Ok(mrs);
        }
        mrs = luc.await_mrs().await?;
    }
    if mrs.reference.as_deref() == Some(reference) {
        Ok(mrs)
    } else {
        Err(HomeError::NoMrs)
    }
}

#[cfg(test)]
mod tests;
