//! Calls out's settings and state, below the switchboard (which keeps them) and
//! [`super::dial`] (which dials with them): what vakt knows of reaching each SCAIP unit
//! ([`Units`]: where it last sent from, until when it auto-answers after ingest's `cre`), the
//! outbound trunk, the SIP endpoint to dial with ([`Dialer`]), and a call out's own state on
//! the switchboard ([`Outgoing`]).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio_util::sync::DropGuard;

use crate::model::SipPassword;
use crate::transport::sip::{self, CallEvent, CallHandle, CallId, Dial};
use vakt_proto::sdp::{LocalSession, Negotiated};

/// Events of calls out kept while their dial has not returned.
pub const EARLY_EVENTS: usize = 64;
/// Devices whose reach [`Units`] remembers at most (the oldest heard go first).
pub const MAX_UNITS: usize = 100_000;
/// The longest auto-answer window SCAIP has (`cre` `01`-`60`).
pub const MAX_WINDOW_MINS: u8 = 60;

/// What vakt knows of reaching one SCAIP unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    /// Where its last authenticated SCAIP message came from.
    pub peer: Option<SocketAddr>,
    /// Until when it answers a call from the centre by itself (vakt answered `cre`).
    pub auto_answer_until: Option<Timestamp>,
    /// When it was last heard or granted a window.
    pub seen: Timestamp,
}

/// Per SCAIP unit (by its registry account): where it last sent from and until when it
/// auto-answers. Written by ingest as the units' messages come, read when an operator calls
/// a unit back. Bounded by [`MAX_UNITS`]; time is a parameter.
#[derive(Debug, Default)]
pub struct Units {
    map: Mutex<HashMap<String, Reach>>,
}

impl Units {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Reach>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry(&self, account: &str, now: Timestamp, f: impl FnOnce(&mut Reach)) {
        let key = account.to_ascii_uppercase();
        let mut m = self.lock();
        if m.len() >= MAX_UNITS
            && !m.contains_key(&key)
            && let Some(oldest) = m.iter().min_by_key(|(_, r)| r.seen).map(|(k, _)| k.clone())
        {
            m.remove(&oldest);
        }
        let r = m.entry(key).or_insert(Reach {
            peer: None,
            auto_answer_until: None,
            seen: now,
        });
        r.seen = now;
        f(r);
    }

    /// Unit `account` sent an authenticated message from `peer` at `now`.
    pub fn heard(&self, account: &str, peer: SocketAddr, now: Timestamp) {
        self.entry(account, now, |r| r.peer = Some(peer));
    }

    /// vakt answered unit `account`'s call-back request `cre=mins` at `now`: it auto-answers
    /// until `now + mins` (a later answer moves the end on; `0` grants nothing).
    pub fn granted(&self, account: &str, mins: u8, now: Timestamp) {
        if mins == 0 {
            return;
        }
        let until = now
            .checked_add(SignedDuration::from_mins(i64::from(
                mins.min(MAX_WINDOW_MINS),
            )))
            .unwrap_or(now);
        self.entry(account, now, |r| {
            r.auto_answer_until = Some(r.auto_answer_until.map_or(until, |u| u.max(until)));
        });
    }

    /// What is known of unit `account`.
    pub fn reach(&self, account: &str) -> Option<Reach> {
        self.lock().get(&account.to_ascii_uppercase()).copied()
    }

    /// Until when unit `account` auto-answers, if its window is open at `now`.
    pub fn auto_answers(&self, account: &str, now: Timestamp) -> Option<Timestamp> {
        self.reach(account)
            .and_then(|r| r.auto_answer_until)
            .filter(|&until| now < until)
    }
}

/// The `cre` that grants a call-back window of `mins` minutes (`01`-`60`), or `None` when
/// call-backs are not offered (`0`).
pub fn cre_window(mins: u8) -> Option<String> {
    (mins > 0).then(|| format!("{:02}", mins.min(MAX_WINDOW_MINS)))
}

/// How vakt reaches a trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    /// SIP over UDP from the SCAIP UDP listener.
    Udp,
    /// SIP over a TCP connection opened for each call.
    Tcp,
}

/// The trunk calls to phone numbers go out through.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundTrunk {
    /// Its name (logs).
    pub name: String,
    /// Where its session border controller takes calls.
    pub address: SocketAddr,
    /// UDP or TCP.
    pub transport: TrunkTransport,
    /// The centre's number: the From and `P-Asserted-Identity` of calls out.
    pub from_number: String,
    /// User and password for the trunk's `401`/`407`, if it asks.
    pub credentials: Option<(String, SipPassword)>,
}

/// Leaves the password out (`SipPassword`'s own `Debug` hides it too).
impl std::fmt::Debug for OutboundTrunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundTrunk")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("transport", &self.transport)
            .field("from_number", &self.from_number)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

/// The settings of calls out.
#[derive(Clone, Debug, Default)]
pub struct DialOptions {
    /// vakt's SIP URI: the From of calls to units (`[scaip] arc_uri`).
    pub arc_uri: String,
    /// The trunk for numbers; `None`: only units are called.
    pub trunk: Option<OutboundTrunk>,
    /// What ingest learns of the units (shared with it).
    pub units: Arc<Units>,
}

/// The SIP endpoint as the switchboard dials with it (the transport's `Endpoint`, whatever
/// its SCAIP handler).
pub trait Dialer: Send + Sync + 'static {
    /// Starts a call out (see `transport::sip::Endpoint::dial`).
    fn dial(
        &self,
        dial: Dial,
    ) -> Pin<Box<dyn Future<Output = Result<CallHandle, sip::DialError>> + Send + '_>>;
}

/// The endpoint held weakly: it holds the switchboard (its call handler), so a strong
/// reference back would keep both, and the store, alive after a stop.
impl<H: sip::ScaipHandler> Dialer for std::sync::Weak<sip::Endpoint<H>> {
    fn dial(
        &self,
        dial: Dial,
    ) -> Pin<Box<dyn Future<Output = Result<CallHandle, sip::DialError>> + Send + '_>> {
        let endpoint = self.upgrade();
        Box::pin(async move {
            match endpoint {
                Some(ep) => sip::Endpoint::dial(&ep, dial).await,
                None => Err(sip::DialError::NoCalls),
            }
        })
    }
}

/// The switchboard's calls-out state (`Switchboard::set_dialing`,
/// `Switchboard::set_dialer`).
#[derive(Default)]
pub struct Outbound {
    pub(super) opts: OnceLock<DialOptions>,
    pub(super) dialer: OnceLock<Arc<dyn Dialer>>,
    early: Mutex<Early>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("opts", &self.opts.get())
            .field("dialer", &self.dialer.get().is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
pub(super) struct Early {
    /// Dials under way (their calls not yet on the board).
    pub(super) dialling: usize,
    pub(super) events: VecDeque<(CallId, CallEvent)>,
}

impl Outbound {
    pub(super) fn early(&self) -> MutexGuard<'_, Early> {
        self.early.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A call out's own state on the switchboard.
pub struct Outgoing {
    /// vakt's offer, waiting for the far end's answer.
    pub(super) session: LocalSession,
    /// The far end's answer in a `183`, kept for the `200`.
    pub(super) early: Option<Negotiated>,
    /// The operator who called.
    pub(super) user: String,
    /// Stops the browser's ringback when the far end answers or the call ends.
    pub(super) ringback: Option<DropGuard>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_granted_window_is_open_until_its_minutes_have_passed() {
        let u = Units::default();
        assert_eq!(u.auto_answers("luc1", t(0)), None);
        u.granted("luc1", 5, t(0));
        // Any case of the account is the same unit.
        assert_eq!(u.auto_answers("LUC1", t(0)), Some(t(300)));
        assert_eq!(u.auto_answers("luc1", t(299)), Some(t(300)));
        assert_eq!(u.auto_answers("luc1", t(300)), None);
        assert_eq!(u.auto_answers("luc2", t(10)), None);
    }

    #[test]
    fn a_later_answer_moves_the_window_on_and_never_back() {
        let u = Units::default();
        u.granted("luc1", 5, t(0));
        u.granted("luc1", 5, t(120));
        assert_eq!(u.auto_answers("luc1", t(400)), Some(t(420)));
        // A shorter window granted later does not shorten the one the unit keeps.
        u.granted("luc1", 1, t(130));
        assert_eq!(u.auto_answers("luc1", t(400)), Some(t(420)));
        // 0 grants nothing; more than 60 is SCAIP's 60.
        u.granted("luc2", 0, t(0));
        assert_eq!(u.reach("luc2"), None);
        u.granted("luc3", 200, t(0));
        assert_eq!(u.auto_answers("luc3", t(0)), Some(t(3600)));
    }

    #[test]
    fn where_a_unit_was_heard_is_kept_beside_its_window() {
        let u = Units::default();
        let peer: SocketAddr = "192.0.2.7:5060".parse().unwrap();
        u.heard("luc1", peer, t(0));
        assert_eq!(
            u.reach("luc1"),
            Some(Reach {
                peer: Some(peer),
                auto_answer_until: None,
                seen: t(0)
            })
        );
        u.granted("luc1", 2, t(10));
        let r = u.reach("luc1").unwrap();
        assert_eq!((r.peer, r.auto_answer_until), (Some(peer), Some(t(130))));
    }

    #[test]
    fn cre_is_two_digits_within_scaips_range() {
        assert_eq!(cre_window(0), None);
        assert_eq!(cre_window(5).as_deref(), Some("05"));
        assert_eq!(cre_window(60).as_deref(), Some("60"));
        assert_eq!(cre_window(99).as_deref(), Some("60"));
    }

    #[test]
    fn the_oldest_unit_goes_when_full() {
        let u = Units::default();
        {
            let mut m = u.lock();
            for i in 0..MAX_UNITS {
                m.insert(
                    format!("U{i}"),
                    Reach {
                        peer: None,
                        auto_answer_until: None,
                        seen: t(i64::try_from(i).unwrap() + 10),
                    },
                );
            }
        }
        u.granted("new", 5, t(1_000_000));
        assert_eq!(u.lock().len(), MAX_UNITS);
        assert!(u.reach("U0").is_none());
        assert!(u.reach("U1").is_some());
        assert!(u.auto_answers("new", t(1_000_000)).is_some());
    }
}
