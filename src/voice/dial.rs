//! Calls out: an operator calls the unit back, or the person's own phone, or a relative,
//! from the Call they hold (issue 15 item 4; `proto/sip-voice.md` §7). The settings and the
//! state the switchboard keeps for them are in `outbound.rs`, below both.
//!
//! 1. **Where.** [`Target::Unit`] rings the Call's alarm unit at its SIP user over the unit's
//!    own flow (where its last authenticated SCAIP message, REGISTER or INVITE came from, so
//!    a unit behind NAT is reached: `DialVia::Device`). [`Target::Person`] and
//!    [`Target::Contact`] dial the subscriber register's `phone` or a contact's through the
//!    configured trunk ([`OutboundTrunk`]: its address and transport, the centre's From
//!    number, Digest credentials for its `401`/`407`). Without a trunk only the unit is
//!    offered, and a number is refused ([`DialFailure::NoTrunk`]).
//! 2. **The unit's auto-answer window** (protocols.md §3.7). A SCAIP unit that asked for a
//!    call back (`cha=1`) is answered `cre=NN` by ingest: it then answers a call from the
//!    centre by itself for NN minutes. [`Units`] remembers until when, per device, with the
//!    address it last sent from (for vakt's SDP). Outside the window the unit still rings and
//!    someone at home must pick up: the console says which it is
//!    ([`DialTarget::auto_answer_until`]).
//! 3. **The conversation.** It is set up as the operator presses "Call": the browser's WebRTC
//!    offer is answered at once (its leg ready, ringback played to it while the far end
//!    rings), vakt offers G.711 to the far end (`LocalSession::offer`), and the relay is
//!    started with the browser attached but the far side inactive. The far end's answer
//!    (`200 OK`) sets the relay's session, starts the recording and marks the conversation
//!    answered; from then on it is the same as a call in (mute, hold, DTMF, hang up, the
//!    media's end, the line on the Call's timeline with direction out and who was called).
//!    Busy (`486`/`600`), declined (`603`), not answered (`408`/`480`, or vakt's ring time)
//!    end as such on the timeline.
//!
//! The dialog's events may come before [`Switchboard::dial`] has the call's handle (a callee
//! that refuses at once): while a dial is under way, events of calls the switchboard does
//! not know are kept (at most [`EARLY_EVENTS`]) and played once the call is on the board.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::model::{CallDirection, ConversationEnd, OpenConversation, SipPassword, Subscriber};
use crate::store::StoreError;
use crate::transport::sip::{self, CallEvent, CallId, Dial, DialVia};
use crate::voice::media::{EarlyMedia, MediaError, Relay, SipLeg, law_of, ringback};
pub use crate::voice::outbound::{
    DialOptions, Dialer, EARLY_EVENTS, MAX_UNITS, MAX_WINDOW_MINS, Outbound, OutboundTrunk,
    Outgoing, Reach, TrunkTransport, Units, cre_window,
};
use crate::voice::switchboard::{Live, LiveState, Switchboard, VoiceEvent};
use crate::voice::webrtc::{BrowserLeg, G711, LegHandle, SendError, WebRtcError};
use vakt_proto::g711::Law;
use vakt_proto::sdp::{Codec, Direction, LocalSession, Negotiated};

/// One frame of ringback to the browser.
const FRAME: Duration = Duration::from_millis(20);

/// Whom to call from a Call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The Call's alarm unit (call back).
    Unit,
    /// The person's own phone (the subscriber register's `phone`).
    Person,
    /// The subscriber's contact at this index (in the register's order, from 0).
    Contact(usize),
}

/// One way to call out from a Call, as the console offers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DialTarget {
    /// What to send as `target`.
    pub target: Target,
    /// Who, in words (`unit 1234`, `Anna Berg (daughter)`).
    pub label: String,
    /// The number dialled through the trunk; absent for a unit called over SIP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// A unit: until when it answers by itself (its call-back window); absent when it is
    /// closed (the unit rings and someone at home must answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_answer_until: Option<Timestamp>,
}

/// The ways to call out from a Call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DialTargets {
    /// A trunk is configured (numbers can be dialled).
    pub trunk: bool,
    /// Whom to call.
    pub targets: Vec<DialTarget>,
}

/// A call out that rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialled {
    /// The conversation's id (the live feed's `voice` events name it).
    pub conversation: u64,
    /// The SDP answer for the browser.
    pub sdp: String,
    /// Who is called, in words.
    pub party: String,
    /// A unit in its auto-answer window: until when.
    pub auto_answer_until: Option<Timestamp>,
}

/// Why a call out was not started.
#[derive(Debug, thiserror::Error)]
pub enum DialFailure {
    /// The SIP endpoint takes no calls, or calls out are not wired: vakt's configuration.
    #[error("calls out are not available")]
    Off,
    /// A phone number without a trunk: vakt's configuration.
    #[error("no trunk is configured: vakt cannot dial phone numbers")]
    NoTrunk,
    /// Nothing to call (no number, no such contact, a unit without a SIP account): the
    /// register's.
    #[error("{0}")]
    NotDialable(String),
    /// The unit has not been heard from lately: the peer's side.
    #[error("the unit has not been heard from lately: vakt has no way to reach it")]
    NoFlow,
    /// At the maximum of calls or media ports: vakt's bound.
    #[error("too many calls")]
    Full,
    /// The browser's offer cannot be answered: the browser's.
    #[error("the browser's offer: {0}")]
    Browser(#[source] WebRtcError),
    /// The call's media could not be set up: vakt's.
    #[error("the call's media: {0}")]
    Media(String),
    /// The conversation could not be stored: vakt's storage.
    #[error("the conversation could not be stored: {0}")]
    Store(#[from] StoreError),
    /// The trunk could not be reached: the network or the peer.
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
}

/// Where a call out goes.
struct Route {
    uri: String,
    from: String,
    via: DialVia,
    credentials: Option<(String, SipPassword)>,
    headers: Vec<(String, String)>,
    party: String,
    /// The far end's address, when known (for the address in vakt's SDP).
    peer: Option<IpAddr>,
    auto_answer_until: Option<Timestamp>,
}

/// What an operator asks to call.
#[derive(Debug)]
pub struct DialRequest<'a> {
    /// The Call, held by `user`.
    pub call: &'a crate::model::Call,
    /// Its subscriber, when it has one.
    pub subscriber: Option<&'a Subscriber>,
    /// Whom.
    pub target: Target,
    /// The operator.
    pub user: &'a str,
    /// The browser's WebRTC offer.
    pub offer: &'a str,
    /// Now.
    pub now: Timestamp,
}

/// A number as a trunk takes it: a leading `+` and the digits (`+46 70-123 45 67` is
/// `+46701234567`); `None` with fewer than 3 digits.
pub fn dialable(number: &str) -> Option<String> {
    let t = number.trim();
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 3 || digits.len() > 20 {
        return None;
    }
    Some(if t.starts_with('+') {
        format!("+{digits}")
    } else {
        digits
    })
}

/// The host of a SIP URI (`sip:arc@vakt` is `vakt`).
fn uri_host(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    rest.split([';', '?', '>']).next().unwrap_or(rest)
}

/// The session a relay starts with before the far end answers: no address, inactive (the
/// unit's inactivity clock does not run), G.711 A-law until the answer says.
fn before_answer() -> Negotiated {
    Negotiated {
        codec: Codec::Pcma,
        payload_type: Codec::Pcma.static_pt(),
        dtmf_payload_type: None,
        remote: None,
        direction: Direction::Inactive,
        ptime_ms: vakt_proto::sdp::DEFAULT_PTIME_MS,
        rtcp_mux: false,
        media_index: 0,
    }
}

/// The local address vakt's RTP is reached at from `peer`: the routed source address
/// toward it (no packet is sent), else unknown.
fn local_ip_toward(peer: Option<IpAddr>) -> IpAddr {
    let Some(peer) = peer else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    if peer.is_loopback() {
        return peer;
    }
    let any: SocketAddr = match peer {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| {
            s.connect((peer, 9))?;
            s.local_addr()
        })
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

/// Plays the ringing tone to the browser until `stop` (the far end answered or the call
/// ended) or the leg ends.
async fn ring_to_browser(leg: LegHandle, law: Law, stop: CancellationToken) {
    let mut tone = ringback();
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(SendError::Ended) = leg.send(tone.frame(law)) {
                    return;
                }
            }
        }
    }
}

impl Switchboard {
    /// Sets the calls out up (at start, once; a second call is ignored).
    pub fn set_dialing(&self, opts: DialOptions) {
        let _ = self.inner.out.opts.set(opts);
    }

    /// The SIP endpoint calls out go through (at start, once the endpoint exists).
    pub fn set_dialer(&self, dialer: Arc<dyn Dialer>) {
        let _ = self.inner.out.dialer.set(dialer);
    }

    /// Whether numbers can be dialled (a trunk with an outbound address is configured).
    pub fn has_trunk(&self) -> bool {
        self.inner.out.opts.get().is_some_and(|o| o.trunk.is_some())
    }

    /// The ways to call out from `call` (its unit, the person's phone, each contact's) at
    /// `now`: only those vakt can dial.
    pub fn targets(
        &self,
        call: &crate::model::Call,
        subscriber: Option<&Subscriber>,
        now: Timestamp,
    ) -> DialTargets {
        let trunk = self.has_trunk();
        let mut targets = Vec::new();
        let mut add = |target: Target| {
            if let Ok(r) = self.route(call, subscriber, target, now) {
                targets.push(DialTarget {
                    target,
                    label: r.party,
                    number: matches!(r.via, DialVia::Udp(_) | DialVia::Tcp(_))
                        .then(|| sip_user_of(&r.uri).to_owned()),
                    auto_answer_until: r.auto_answer_until,
                });
            }
        };
        add(Target::Unit);
        add(Target::Person);
        for i in 0..subscriber.map_or(0, |s| s.contacts.len()) {
            add(Target::Contact(i));
        }
        DialTargets { trunk, targets }
    }

    fn route(
        &self,
        call: &crate::model::Call,
        subscriber: Option<&Subscriber>,
        target: Target,
        now: Timestamp,
    ) -> Result<Route, DialFailure> {
        let opts = self.inner.out.opts.get().ok_or(DialFailure::Off)?;
        let (party, number) = match target {
            Target::Unit => {
                let registry = self.inner.devices.current();
                let device = registry
                    .iter()
                    .find(|d| d.account.eq_ignore_ascii_case(&call.account))
                    .ok_or_else(|| {
                        DialFailure::NotDialable("the Call's unit is not in the registry".into())
                    })?;
                match device.sip_user.clone() {
                    Some(user) => {
                        let reach = opts.units.reach(&device.account);
                        return Ok(Route {
                            uri: format!("sip:{user}@{}", uri_host(&opts.arc_uri)),
                            from: opts.arc_uri.clone(),
                            via: DialVia::Device(user),
                            credentials: None,
                            headers: Vec::new(),
                            party: format!("unit {}", device.account),
                            peer: reach.and_then(|r| r.peer).map(|p| p.ip()),
                            auto_answer_until: opts.units.auto_answers(&device.account, now),
                        });
                    }
                    // A GSM or PSTN unit: its number, through the trunk.
                    None => {
                        let phone = device.phone.clone().ok_or_else(|| {
                            DialFailure::NotDialable(
                                "the unit has neither a SIP account nor a phone number in the \
                                 registry: vakt cannot call it"
                                    .into(),
                            )
                        })?;
                        (format!("unit {}", device.account), phone)
                    }
                }
            }
            Target::Person => {
                let s = subscriber
                    .ok_or_else(|| DialFailure::NotDialable("the Call has no subscriber".into()))?;
                (format!("{} (own phone)", s.name), s.phone.clone())
            }
            Target::Contact(i) => {
                let c = subscriber
                    .and_then(|s| s.contacts.get(i))
                    .ok_or_else(|| DialFailure::NotDialable("no such contact".into()))?;
                let who = if c.relation.trim().is_empty() {
                    c.name.clone()
                } else {
                    format!("{} ({})", c.name, c.relation)
                };
                (who, c.phone.clone())
            }
        };
        let number = dialable(&number)
            .ok_or_else(|| DialFailure::NotDialable("no phone number in the register".into()))?;
        let trunk = opts.trunk.as_ref().ok_or(DialFailure::NoTrunk)?;
        let host = trunk.address.to_string();
        let from = format!("sip:{}@{host}", trunk.from_number);
        Ok(Route {
            uri: format!("sip:{number}@{host}"),
            headers: vec![("P-Asserted-Identity".into(), format!("<{from}>"))],
            from,
            via: match trunk.transport {
                TrunkTransport::Udp => DialVia::Udp(trunk.address),
                TrunkTransport::Tcp => DialVia::Tcp(trunk.address),
            },
            credentials: trunk.credentials.clone(),
            party: format!("{party} {number}"),
            peer: Some(trunk.address.ip()),
            auto_answer_until: None,
        })
    }

    /// `user`, who holds the Call, calls `target` from it (the console checked the hold):
    /// the browser's leg is answered at once and hears ringing; the far end rings. The
    /// conversation is on the switchboard (and in the store) from now; its line goes on the
    /// Call when it ends.
    pub async fn dial(&self, req: DialRequest<'_>) -> Result<Dialled, DialFailure> {
        let dialer = self.inner.out.dialer.get().ok_or(DialFailure::Off)?.clone();
        let route = self.route(req.call, req.subscriber, req.target, req.now)?;
        // The browser first: a bad offer costs nothing else.
        let browser = self
            .inner
            .webrtc
            .answer(req.offer, G711::Pcma)
            .map_err(|e| match e {
                WebRtcError::NoG711 | WebRtcError::BadOffer(_) => DialFailure::Browser(e),
                WebRtcError::PortsExhausted { .. } => DialFailure::Full,
                other => DialFailure::Media(other.to_string()),
            })?;
        let port = self.inner.media.bind().map_err(|e| match e {
            MediaError::PortsExhausted { .. } => DialFailure::Full,
            other => DialFailure::Media(other.to_string()),
        })?;
        let local = port.local_media(if self.inner.media.options().bind_addr.is_unspecified() {
            local_ip_toward(route.peer)
        } else {
            self.inner.media.options().bind_addr
        });
        let mut session = LocalSession::new(local, rand::random::<u32>().into(), 1);
        let offer = session.offer(Direction::SendRecv);
        let law = law_of(browser.leg.codec());
        let leg_handle = browser.leg.handle();
        let relay = SipLeg::new(port, before_answer())
            .and_then(|leg| Relay::<BrowserLeg>::start(leg, EarlyMedia::Silence))
            .map_err(|e| DialFailure::Media(e.to_string()))?;
        relay
            .attach(browser.leg)
            .map_err(|e| DialFailure::Media(e.to_string()))?;
        let conv = match self.inner.store.next_conversation_id() {
            Ok(c) => c,
            Err(e) => {
                relay.end();
                return Err(e.into());
            }
        };
        let open = OpenConversation {
            id: conv,
            call: Some(req.call.id),
            direction: CallDirection::Outbound,
            party: route.party.clone(),
            to_relative: Some(matches!(req.target, Target::Contact(_))),
            rang_at: req.now,
            answered_at: None,
            operator: Some(req.user.to_owned()),
            recording: None,
        };
        if let Err(e) = self.inner.store.save_open_conversation(&open) {
            relay.end();
            return Err(e.into());
        }
        let stop = CancellationToken::new();
        tokio::spawn(ring_to_browser(leg_handle, law, stop.clone()));
        self.inner.out.early().dialling += 1;
        let dialled = dialer
            .dial(Dial {
                uri: route.uri.clone(),
                from: route.from.clone(),
                via: route.via.clone(),
                offer,
                credentials: route.credentials.clone(),
                headers: route.headers.clone(),
            })
            .await;
        let handle = match dialled {
            Ok(h) => h,
            Err(e) => {
                {
                    let mut early = self.inner.out.early();
                    early.dialling = early.dialling.saturating_sub(1);
                }
                stop.cancel();
                relay.end();
                if let Err(se) = self.inner.store.remove_open_conversation(conv) {
                    tracing::warn!(conversation = conv, error = %se, "a call out that never started could not be removed from the store");
                }
                return Err(match e {
                    sip::DialError::NoCalls | sip::DialError::NoUdp => DialFailure::Off,
                    sip::DialError::Full => DialFailure::Full,
                    sip::DialError::NoFlow => DialFailure::NoFlow,
                    sip::DialError::Connect(io) => DialFailure::Connect(io),
                });
            }
        };
        let sip = handle.id();
        let live = Live {
            open,
            subscriber: req.call.subscriber.clone(),
            handle,
            state: LiveState::Ringing,
            ended: None,
            relay: relay.clone(),
            law,
            sip_answer: Vec::new(),
            recorder: None,
            media_end: None,
            answering: false,
            out: Some(Outgoing {
                session,
                early: None,
                user: req.user.to_owned(),
                ringback: Some(stop.drop_guard()),
            }),
        };
        let view = live.view();
        // On the board and the early events taken in one step (the early lock first, as
        // `dial_event` takes them), so none slips between.
        let early: Vec<CallEvent> = {
            let mut early = self.inner.out.early();
            let mut b = self.board();
            b.by_conv.insert(conv, sip);
            b.by_sip.insert(sip, live);
            early.dialling = early.dialling.saturating_sub(1);
            let (mine, others): (VecDeque<_>, VecDeque<_>) =
                early.events.drain(..).partition(|(id, _)| *id == sip);
            early.events = others;
            mine.into_iter().map(|(_, e)| e).collect()
        };
        tracing::info!(conversation = conv, call = req.call.id, %sip, user = req.user, party = %route.party, "calling out");
        self.tell(VoiceEvent::Changed(view));
        tokio::spawn(self.clone().watch_media(sip, relay));
        for e in early {
            crate::transport::sip::CallHandler::event(self, sip, e);
        }
        Ok(Dialled {
            conversation: conv,
            sdp: browser.sdp,
            party: route.party,
            auto_answer_until: route.auto_answer_until,
        })
    }

    /// A SIP call's event, seen first by calls out: a call out's progress and answer are
    /// taken here, an event of a call not yet on the board while a dial is under way is kept
    /// for it; anything else is returned for the switchboard.
    pub(super) fn dial_event(&self, id: CallId, event: CallEvent) -> Option<CallEvent> {
        let outgoing = {
            let mut early = self.inner.out.early();
            let b = self.board();
            match b.by_sip.get(&id).map(|l| l.out.is_some()) {
                None if early.dialling > 0 => {
                    if early.events.len() >= EARLY_EVENTS {
                        early.events.pop_front();
                    }
                    early.events.push_back((id, event));
                    return None;
                }
                None | Some(false) => return Some(event),
                Some(true) => {}
            }
            drop(b);
            drop(early);
            event
        };
        match outgoing {
            CallEvent::Progress { sdp, .. } if !sdp.is_empty() => {
                // Early media: its answer is kept for the 200; the browser hears vakt's
                // ringing until then.
                let mut b = self.board();
                if let Some(out) = b.by_sip.get_mut(&id).and_then(|l| l.out.as_mut())
                    && out.early.is_none()
                {
                    out.early = take_answer(&mut out.session, &sdp).ok();
                }
                None
            }
            CallEvent::Progress { .. } => None,
            CallEvent::Answered { sdp } => {
                self.far_end_answered(id, &sdp, Timestamp::now());
                None
            }
            other => Some(other),
        }
    }

    /// The far end of call out `id` answered with `sdp` at `now`: the relay takes the agreed
    /// session, the recording starts, the conversation is answered.
    fn far_end_answered(&self, id: CallId, sdp: &[u8], now: Timestamp) {
        let taken = {
            let mut b = self.board();
            let Some(live) = b.by_sip.get_mut(&id) else {
                return;
            };
            let Some(out) = live.out.as_mut() else {
                return;
            };
            out.ringback = None;
            let negotiated = match out.early.take() {
                Some(n) if sdp.is_empty() => Ok(n),
                early => take_answer(&mut out.session, sdp).or(early.ok_or(())),
            };
            if negotiated.is_err() {
                live.media_end = Some(ConversationEnd::Failure);
            }
            (
                negotiated,
                live.relay.clone(),
                live.handle.clone(),
                live.open.id,
                live.open.call,
                out.user.clone(),
            )
        };
        let (negotiated, relay, handle, conv, call, user) = taken;
        let updated = negotiated.and_then(|n| relay.update(n).map_err(|_| ()));
        if updated.is_err() {
            tracing::warn!(conversation = conv, sip = %id, "the far end's answer has no G.711 vakt can use: hanging up");
            let _ = handle.hang_up();
            return;
        }
        tracing::info!(conversation = conv, sip = %id, "the far end answered");
        let me = self.clone();
        tokio::spawn(async move {
            let recorder = match call {
                Some(call) => me.start_recording(call, conv, &relay, now).await,
                None => None,
            };
            // Gone meanwhile (hung up at once): its line is on its way.
            let _ = me.mark_answered(conv, &user, now, recorder).await;
        });
    }
}

/// vakt's offer's answer from `sdp`.
fn take_answer(session: &mut LocalSession, sdp: &[u8]) -> Result<Negotiated, ()> {
    let parsed = vakt_proto::sdp::parse(sdp).map_err(|_| ())?;
    session.take_answer(&parsed).map_err(|_| ())
}

/// The user part of a SIP URI (the number dialled).
fn sip_user_of(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    rest.split_once('@').map_or(rest, |(u, _)| u)
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_dialled_as_a_plus_and_digits() {
        assert_eq!(
            dialable("+46 70-123 45 67").as_deref(),
            Some("+46701234567")
        );
        assert_eq!(dialable("070-123 45 67").as_deref(), Some("0701234567"));
        assert_eq!(dialable(" 112 ").as_deref(), Some("112"));
        assert_eq!(dialable(""), None);
        assert_eq!(dialable("12"), None);
        assert_eq!(dialable("n/a"), None);
    }

    #[test]
    fn uri_parts() {
        assert_eq!(uri_host("sip:arc@vakt"), "vakt");
        assert_eq!(
            uri_host("sip:arc@192.0.2.1:5060;transport=tcp"),
            "192.0.2.1:5060"
        );
        assert_eq!(
            sip_user_of("sip:+46701234567@192.0.2.1:5060"),
            "+46701234567"
        );
    }
}
