//! Demo mode (`vakt serve --demo`): a small fictional municipality and the simulators that
//! play its devices and patrols against vakt's own ports, over real protocols.
//!
//! - `seed`: [`seed()`], the demo users and the patrols' logins ([`PATROL_LOGINS_FILE`]); the
//!   demo people's names, as the simulators tell what happens.
//! - `dc09_fleet`: the DC-09 devices ([`simulate`]).
//! - `scaip_homes`: the SCAIP alarm units ([`simulate`], [`ScaipSimOptions`],
//!   [`alarm_and_call`]); [`demo_call`]: a unit's voice call back to vakt.
//! - `patrols`: the home-care patrols ([`simulate_patrols`]).
//! - `pace`: what the simulators share: random intervals within bounds, pauses that shutdown
//!   cuts short, the reconnect backoff.
//! - [`serve_demo`]: the start-up of `vakt serve --demo`: seed, then run the simulators.
//! - [`luc`]: a SCAIP alarm unit's SIP client; [`patrol_client`]: the patrol app's client
//!   (also `vakt patrol`).
//!
//! [`seed()`] fills an empty data directory with the people of Vaktby
//! (`config/demo-subscribers.csv`, [`SUBSCRIBERS_CSV`]), their devices
//! (`config/demo-devices.csv`, [`crate::registers::devices::DEMO_CSV`]) and two console users, `operator` and
//! `supervisor`, with random passwords shown once. It also saves the demo directory of care
//! providers, areas, patrols and routing rules (`config/demo-directory/`,
//! [`crate::registers::directory::DEMO_PATROLS`] ...) and issues a login token for every demo patrol
//! ([`DemoUsers::patrols`]); [`save_patrol_logins`] keeps those in the data directory
//! ([`PATROL_LOGINS_FILE`], `demo-patrols.txt`, readable only by its owner) so that every
//! later `--demo` start can run the patrols again ([`load_patrol_logins`]). A directory that
//! holds any device, subscriber or user is never touched. An admin is not seeded:
//! `vakt users add` makes one.
//!
//! [`simulate`] then plays the demo fleet against vakt's own DC-09 TCP port, with real frames
//! and real ACKs: every device sends NULL heartbeats and now and then periodic tests (CID 602),
//! and at random (exponential) intervals one of them raises an alarm: mostly pendant presses
//! (CID 101), sometimes pressed again, medical alarms (CID 100), falls (CID 101 from a fall
//! detector), door sensor alarms (CID 150 from a door sensor), low batteries (CID 302 / 384)
//! and, rarely, a fire (CID 111 from a smoke detector). Many are restored (qualifier 3) a
//! few minutes later. Encrypted devices send encrypted frames with their demo keys. Everything
//! here is fictional: the names, addresses, phone numbers (from the Swedish regulator's ranges
//! for fiction) and personal numbers (birth numbers 980-999, a test series).
//!
//! Five homes also have a SCAIP alarm unit (SS 91100) next to their carephone: the devices of
//! the demo CSV with a `sip_user` (cid `7001xx`, SIP user `luc-7001xx`). Their SIP passwords
//! are fictional demo credentials, public with the rest of the demo data: never use them for
//! a real device. [`simulate`] plays each unit against vakt's own SCAIP UDP port as a real
//! SIP client ([`luc::Luc`], Digest and all; see [`ScaipSimOptions`]): heartbeats (`mty=PI` with
//! `hbo=001`, following the `hbi` vakt answers) every few minutes and, at random
//! (exponential) intervals, a story: now and then a low battery in the pendant (status
//! 0016), else an alarm from the pendant (device type 0003) or the fall detector (0005). An
//! alarm sends the same `<mrq>` again every 5-10 s while vakt holds it (`snu 4`) and stops
//! when vakt answers `snu 0` (an operator took the Call); with `mre` 1 or more the unit then
//! calls vakt ([`demo_call`]: SIP INVITE with Digest, G.711) and, answered, the person says a
//! Swedish phrase (`src/sim/demo_call/phrase-sv.wav`) until someone hangs up; unanswered for 30 minutes it gives up with a reset
//! (`mty=RE`). After an answered alarm the visiting patrol sometimes presses presence on the
//! unit (status 0088) a few minutes later and checks out (0111) after that; vakt marks the
//! patrol's dispatch, if one is open, arrived and completed from them.
//!
//! [`simulate_patrols`] plays the home-care patrols against vakt's own patrol QUIC port, each
//! a real patrol client ([`crate::sim::patrol_client::Session`]) logged in with its demo token:
//! an assignment is confirmed a few seconds after it arrives, accepted, arrived at a few
//! minutes later and completed. One patrol, [`OFFLINE_PATROL`] (`natt-2`, Nattpatrullen 2),
//! never connects, so the receipt timeout and the passing on of its dispatches can be seen.

mod dc09_fleet;
pub mod demo_call;
pub mod luc;
mod pace;
pub mod patrol_client;
mod patrols;
mod scaip_homes;
mod seed;
pub mod serve_demo;

use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio_util::sync::CancellationToken;

use dc09_fleet::simulate_dc09;
use scaip_homes::{SCAIP_SEED_SALT, simulate_scaip};

pub use patrols::{OFFLINE_PATROL, PatrolSimOptions, simulate_patrols};
pub use scaip_homes::{ScaipSimOptions, alarm_and_call};
pub use seed::{
    DemoError, DemoUsers, OPERATOR_USER, PATROL_LOGINS_FILE, PatrolLogin, SUBSCRIBERS_CSV,
    SUPERVISOR_USER, load_patrol_logins, save_patrol_logins, seed,
};

/// How busy the simulated fleet is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// Mean time between two alarms of the whole fleet (exponentially distributed).
    /// Follow-ups (a repeated press 20-40 s later, restores minutes later) are scaled down
    /// with it when it is shorter than the default 45 s.
    pub mean_alarm_interval: Duration,
    /// Time between two NULL heartbeats of one device (shorter when a device's supervision
    /// interval asks for it: at most two thirds of it). Every 20th is a periodic test
    /// (CID 602) instead.
    pub heartbeat_interval: Duration,
    /// Seed of the random choices (which device, what alarm, when); the same seed gives the
    /// same story, network timing aside.
    pub seed: u64,
    /// How the SCAIP homes behave.
    pub scaip: ScaipSimOptions,
}

impl Default for SimOptions {
    /// An alarm every 45 s on average, heartbeats every 60 s, the default SCAIP homes, a
    /// random seed.
    fn default() -> Self {
        SimOptions {
            mean_alarm_interval: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(60),
            seed: rand::random(),
            scaip: ScaipSimOptions::default(),
        }
    }
}

/// Runs the demo fleet until `shutdown` is cancelled; returns promptly then. The DC-09
/// devices send to vakt's DC-09 TCP listener at `dc09`, the SCAIP homes (the devices with a
/// `sip_user`) to its SCAIP UDP listener at `scaip` (SIP MESSAGE with Digest, through
/// [`luc::Luc`]); either part is left out when its address is `None`, and an unspecified address
/// such as `0.0.0.0:5060` is reached over loopback. Never panics; network errors are
/// retried with backoff and logged at debug. Each alarm is logged once at info
/// (`demo: Åsa Öberg pressed her alarm`); a SCAIP home that vakt refuses (SIP 401: the data
/// directory was seeded without it) is logged at warn and stops.
///
/// The fleet is the embedded demo data ([`crate::registers::devices::DEMO_CSV`], names from
/// [`SUBSCRIBERS_CSV`]), whatever the store holds: run it only where the demo is seeded.
pub async fn simulate(
    dc09: Option<SocketAddr>,
    scaip: Option<SocketAddr>,
    opts: SimOptions,
    shutdown: CancellationToken,
) {
    // Its own stream of random numbers, so the DC-09 story of a seed stays the same.
    let scaip_rng = SmallRng::seed_from_u64(opts.seed ^ SCAIP_SEED_SALT);
    let dc09_part = async {
        if let Some(target) = dc09 {
            simulate_dc09(loopback(target), &opts, &shutdown).await;
        }
    };
    let scaip_part = async {
        if let Some(server) = scaip {
            simulate_scaip(loopback(server), &opts, scaip_rng, &shutdown).await;
        }
    };
    tokio::join!(dc09_part, scaip_part);
    tracing::debug!("demo: simulator stopped");
}

/// `addr`, with an unspecified IP replaced by the loopback address of its family (where
/// the demo's simulators reach vakt's own listeners).
pub fn loopback(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}
