//! The switchboard: every voice call vakt carries, from the first ring to its line on the
//! Call's timeline.
//!
//! A call in reaches it through the SIP endpoint ([`CallHandler`]):
//!
//! 1. **Who calls.** An alarm unit that authenticates with SIP Digest with its registry
//!    credentials (the same check as its SCAIP messages, through an [`Authenticator`]), or a
//!    configured trunk by its source address, the caller then known by number. Anyone else
//!    is challenged or refused (`401`/`403`) and nothing else happens.
//! 2. **Which person.** A unit's device in the registry (by its SIP user, and by the From
//!    user when several units share credentials); a trunk caller by the subscriber whose
//!    phone number it is ([`same_number`]). An unknown number is still a person calling the
//!    centre: it gets a Call of its own, named by the number.
//! 3. **Which Call.** The switchboard journals a voice-call Signal
//!    ([`crate::triage::priority::CODE_VOICE_CALL`]) like any alarm, so the call is durable
//!    before anyone is told and triage puts it where it belongs: into the person's open Call,
//!    or a new level 1 Call (a unit that only calls is a personal alarm). Triage tells the
//!    switchboard the Call ([`SignalObserver::ingested`]); the conversation, kept in the store
//!    from its first ring ([`OpenConversation`]), joins it.
//! 4. **Ringing.** The caller hears `180 Ringing` at once; the console shows the conversation
//!    ringing on its Call ([`Switchboard::live`], [`VoiceEvent`]). The call's media is set
//!    up then (an RTP port, the relay), so a call vakt cannot carry is refused before it
//!    rings (`488` no G.711, `503` no port).
//! 5. **The answer.** An operator answers from the browser ([`Switchboard::answer`]): vakt
//!    answers the browser's WebRTC offer in the unit's G.711 law, joins that leg to the
//!    relay, starts the recording and answers the unit (`200 OK`). Mute, hold and the SCAIP
//!    DTMF commands act on the relay; the call ends by BYE either way, or when the unit's
//!    RTP stops or the browser goes.
//! 6. **The end.** Whoever ends it (the caller hangs up or cancels, vakt, a timer), its line
//!    goes on the Call's timeline ([`TimelineEvent::Conversation`]): a caller who gave up
//!    before anyone answered is an abandoned call there, and the Call stays in the queue for
//!    a call back. The open conversation is then removed from the store; one a stop cut short
//!    is ended at the next start ([`Switchboard::recover`], `restart`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::calls::{Calls, SignalObserver};
use crate::journal::{Commit, Journal};
use crate::model::{
    CallDirection, ConversationEnd, Device, Flags, OpenConversation, Signal, SignalEvent,
    SipPassword, Subscriber, TimelineEvent, Transport,
};
use crate::registers::devices::Devices;
use crate::registers::numbers;
use crate::store::{Store, StoreError};
use crate::telemetry::{RecordingMetrics, VoiceCallMetrics};
use crate::transport::sip::{
    Admission, CallEvent, CallHandle, CallHandler, CallId, Decision, End, IncomingCall, Origin,
};
use crate::triage::Ingested;
use crate::triage::priority::{CODE_VOICE_CALL, VOICE_PROTOCOL};
use crate::voice::media::{EarlyMedia, Media, MediaError, Relay, RelayEnd, SipLeg};
use crate::voice::record::{Recorder, RecordingId, RecordingOptions};
use crate::voice::webrtc::{BrowserLeg, G711, WebRtc, WebRtcError};
use vakt_proto::event::Qualifier;
use vakt_proto::g711::Law;
use vakt_proto::sdp::{Direction, LocalSession};
use vakt_proto::sip::Message;

/// Journal ids whose Call triage named before the switchboard heard the id back from the
/// journal (the two race); the oldest are forgotten beyond this.
const EARLY_KEPT: usize = 1024;
/// How long each SCAIP DTMF command's tone lasts (protocols.md §3.7: 100-500 ms).
const DTMF_TONE_MS: u32 = 200;
/// Conversation events a slow console may fall behind by before it reloads.
const EVENTS: usize = 256;
/// Numbers waiting for the registers; beyond, one is dropped (the unit shows it again).
const LEARN_QUEUE: usize = 64;
/// (unit, number) pairs the learner has looked at; forgotten all at once beyond this.
const LEARN_SEEN: usize = 10_000;

/// The Digest check of the devices' SIP credentials, shared with SCAIP's messages (the
/// server hands in ingest's).
pub trait Authenticator: Send + Sync + 'static {
    /// The SIP user that `msg` (a `method` request to `uri` from `peer`) authenticated as,
    /// or the `WWW-Authenticate` challenge to answer `401` with.
    fn authenticate(
        &self,
        msg: &Message<'_>,
        method: &str,
        uri: &str,
        peer: SocketAddr,
    ) -> Result<String, String>;

    /// Checks a trunk's Digest `credentials` on `msg` (a `method` request to `uri` from
    /// `peer`, one of the trunk's sources), in the same realm and with the same nonces as
    /// the units'.
    fn authenticate_trunk(
        &self,
        msg: &Message<'_>,
        method: &str,
        uri: &str,
        peer: SocketAddr,
        credentials: &TrunkCredentials,
    ) -> TrunkCheck;
}

/// The outcome of a trunk's Digest check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrunkCheck {
    /// The trunk's credentials.
    Passed,
    /// No credentials yet, or a stale nonce: `401` with this `WWW-Authenticate` value.
    Challenge(String),
    /// Wrong credentials (user, realm, response, a replay): `403`.
    Refused,
}

/// The Digest credentials a trunk answers vakt's challenge with. `Debug` never shows the
/// password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkCredentials {
    /// The Digest user name.
    pub user: String,
    /// The password.
    pub password: SipPassword,
}

/// A trunk: the telecom operator's session border controller, carrying calls from GSM and
/// PSTN alarm units and from people's phones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trunk {
    /// Its name (in logs and on the timeline).
    pub name: String,
    /// The addresses its requests come from; nobody else is taken for it.
    pub sources: Vec<IpAddr>,
    /// With these, a call from its sources is challenged (`401`) and must answer with them
    /// (`403` otherwise); without, its sources are enough.
    pub credentials: Option<TrunkCredentials>,
}

/// The switchboard's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwitchboardOptions {
    /// The trunks.
    pub trunks: Vec<Trunk>,
}

/// Where a conversation is, as the console shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LiveState {
    /// Ringing: nobody has answered yet.
    Ringing,
    /// An operator is talking with the person.
    Answered,
}

/// A conversation going on now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LiveConversation {
    /// The conversation's id.
    pub id: u64,
    /// Its Call, once triage has placed it.
    pub call: Option<u64>,
    /// In or out.
    pub direction: CallDirection,
    /// The far end in words.
    pub party: String,
    /// The subscriber, when known.
    pub subscriber: Option<String>,
    /// Ringing or answered.
    pub state: LiveState,
    /// When it began ringing.
    pub rang_at: Timestamp,
    /// When it was answered.
    pub answered_at: Option<Timestamp>,
    /// The operator on it.
    pub operator: Option<String>,
}

/// A change the consoles hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoiceEvent {
    /// A conversation began, joined its Call, or changed state.
    Changed(LiveConversation),
    /// A conversation ended (its line is on the Call's timeline).
    Ended {
        /// The conversation.
        id: u64,
        /// Its Call, if it had one.
        call: Option<u64>,
    },
}

/// Why an operator's action on a voice call was refused.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    /// No such conversation goes on (it ended, or never was): the operator's view is old.
    #[error("no such voice call going on")]
    NotFound,
    /// It is already answered, or it is not a call in: the operator's view is old.
    #[error("the voice call is not ringing")]
    NotRinging,
    /// Triage has not placed it on a Call yet; try again in a moment.
    #[error("the voice call has no call yet")]
    NoCall,
    /// The browser's offer cannot be answered (no G.711, not a WebRTC offer): the browser's.
    #[error("the browser's offer: {0}")]
    Browser(#[source] WebRtcError),
    /// vakt cannot carry the call now (no port for the browser's leg, the call's media
    /// ended): vakt's.
    #[error("the call's media: {0}")]
    Media(String),
}

/// Why the switchboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum SwitchboardError {
    /// Reading or writing the open conversations failed: vakt's storage.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One conversation on the switchboard.
pub(super) struct Live {
    pub(super) open: OpenConversation,
    pub(super) subscriber: Option<String>,
    pub(super) handle: CallHandle,
    pub(super) state: LiveState,
    /// Ended before triage named its Call: its line waits for the Call.
    pub(super) ended: Option<(ConversationEnd, Timestamp)>,
    /// The call's media: the unit's RTP and the relay to the operator.
    pub(super) relay: Relay<BrowserLeg>,
    /// The unit's G.711 law (the browser is asked for the same).
    pub(super) law: Law,
    /// vakt's SDP answer to the unit's offer, sent again in the `200 OK`.
    pub(super) sip_answer: Vec<u8>,
    /// The recording, from the answer.
    pub(super) recorder: Option<Recorder>,
    /// What ended the call when the media saw it first (the unit's RTP stopped, the
    /// browser went).
    pub(super) media_end: Option<ConversationEnd>,
    /// An operator's answer is under way (two operators never answer one call).
    pub(super) answering: bool,
    /// A call out's own state (vakt's offer, the ringback to the browser): `dial`.
    pub(super) out: Option<crate::voice::outbound::Outgoing>,
}

impl Live {
    pub(super) fn view(&self) -> LiveConversation {
        LiveConversation {
            id: self.open.id,
            call: self.open.call,
            direction: self.open.direction,
            party: self.open.party.clone(),
            subscriber: self.subscriber.clone(),
            state: self.state,
            rang_at: self.open.rang_at,
            answered_at: self.open.answered_at,
            operator: self.open.operator.clone(),
        }
    }
}

#[derive(Default)]
pub(super) struct Board {
    pub(super) by_sip: HashMap<CallId, Live>,
    /// Conversation id to its SIP call.
    pub(super) by_conv: HashMap<u64, CallId>,
    /// Journal ids of voice Signals not yet triaged, to their conversation.
    pending: HashMap<u64, u64>,
    /// Journal ids triaged before their commit came back, with their Call.
    early: VecDeque<(u64, u64)>,
}

/// The switchboard's state (shared by its clones).
pub struct Inner {
    opts: SwitchboardOptions,
    pub(super) devices: Devices,
    pub(super) store: Store,
    journal: Arc<Journal>,
    calls: Arc<Calls>,
    auth: Arc<dyn Authenticator>,
    pub(super) media: Arc<Media>,
    pub(super) webrtc: Arc<WebRtc>,
    recordings: RecordingOptions,
    recording_metrics: RecordingMetrics,
    call_metrics: VoiceCallMetrics,
    board: Mutex<Board>,
    events: broadcast::Sender<VoiceEvent>,
    /// Calls out: the SIP endpoint to dial with, the trunk, the units' windows (`dial`).
    pub(super) out: crate::voice::outbound::Outbound,
    /// Numbers for the registers to learn ([`learn_numbers`]).
    learner: mpsc::Sender<Learn>,
}

/// A number a unit showed, for the registers to learn where they lack it.
struct Learn {
    device: Device,
    number: String,
    how: &'static str,
}

/// The media a switchboard carries calls with.
#[derive(Debug)]
pub struct CallMedia {
    /// The units' RTP legs.
    pub media: Arc<Media>,
    /// The operators' browser legs.
    pub webrtc: Arc<WebRtc>,
    /// Where the recordings go.
    pub recordings: RecordingOptions,
}

/// The voice calls vakt carries (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct Switchboard {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Switchboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switchboard").finish_non_exhaustive()
    }
}

pub use crate::registers::numbers::same_line as same_number;

/// A direction's name in the metrics.
fn direction_name(d: CallDirection) -> &'static str {
    match d {
        CallDirection::Inbound => "inbound",
        CallDirection::Outbound => "outbound",
    }
}

/// How a SIP call's end reads on the timeline.
pub fn end_of(end: End) -> ConversationEnd {
    match end {
        End::Cancelled | End::RemoteHangUp => ConversationEnd::Caller,
        End::HungUp => ConversationEnd::Operator,
        End::RingTimeout => ConversationEnd::NoAnswer,
        End::Failed(486 | 600) => ConversationEnd::Busy,
        End::Failed(603) => ConversationEnd::Declined,
        End::Failed(408 | 480 | 487) => ConversationEnd::NoAnswer,
        End::Rejected(_) | End::Failed(_) | End::NoAck => ConversationEnd::Failure,
        End::SessionExpired | End::Unreachable | End::MaxDuration => ConversationEnd::Timeout,
        End::Shutdown => ConversationEnd::Restart,
    }
}

impl Switchboard {
    /// A switchboard over the registry, the store, the journal and the Calls. Run
    /// [`Switchboard::recover`] before the SIP endpoint takes calls, and register the
    /// switchboard as an observer of triage.
    pub fn new(
        opts: SwitchboardOptions,
        devices: Devices,
        store: Store,
        journal: Arc<Journal>,
        calls: Arc<Calls>,
        auth: Arc<dyn Authenticator>,
        media: CallMedia,
    ) -> Switchboard {
        let (events, _) = broadcast::channel(EVENTS);
        let (learner, learning) = mpsc::channel(LEARN_QUEUE);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(learn_numbers(
                learning,
                store.clone(),
                devices.clone(),
                calls.clone(),
            ));
        }
        Switchboard {
            inner: Arc::new(Inner {
                learner,
                opts,
                devices,
                store,
                journal,
                calls,
                auth,
                media: media.media,
                webrtc: media.webrtc,
                recordings: media.recordings,
                recording_metrics: RecordingMetrics::new(),
                call_metrics: VoiceCallMetrics::new(),
                board: Mutex::new(Board::default()),
                events,
                out: crate::voice::outbound::Outbound::default(),
            }),
        }
    }

    pub(super) fn board(&self) -> MutexGuard<'_, Board> {
        self.inner
            .board
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the conversations a stop cut short (found open in the store) on their Calls'
    /// timelines, `restart`: an answered one with what its recording holds (from
    /// `recordings`, those [`crate::voice::record::recover`] repaired), its talk time the
    /// recording's length; otherwise dated `now`. Blocking; run it at start, before calls
    /// come.
    pub fn recover(
        &self,
        now: Timestamp,
        recordings: &[crate::voice::record::Recovered],
    ) -> Result<usize, SwitchboardError> {
        let open = self.inner.store.open_conversations()?;
        let n = open.len();
        for mut c in open {
            let recorded = recordings.iter().find(|r| r.id.conversation() == c.id);
            let end = match (recorded, c.answered_at) {
                (Some(r), Some(answered)) => {
                    c.recording = Some(r.file_name.clone());
                    jiff::SignedDuration::try_from(r.duration)
                        .ok()
                        .and_then(|d| answered.checked_add(d).ok())
                        .unwrap_or(now)
                }
                _ => now,
            };
            let line = c.ended(ConversationEnd::Restart, end);
            // The stop may have put the line on the Call already and not yet forgotten the
            // conversation: never twice.
            let on_call = c
                .call
                .and_then(|id| self.inner.store.call(id).ok().flatten());
            let already = on_call.is_some_and(|call| {
                call.timeline
                    .iter()
                    .any(|e| matches!(&e.what, TimelineEvent::Conversation(v) if v.id == c.id))
            });
            if already {
                self.inner.store.remove_open_conversation(c.id)?;
                continue;
            }
            if let Some(call) = c.call
                && let Err(e) =
                    self.inner
                        .calls
                        .record(call, None, TimelineEvent::Conversation(line), now)
            {
                tracing::warn!(call, conversation = c.id, error = %e, "a conversation cut short by the stop could not be put on its call");
            }
            self.inner.store.remove_open_conversation(c.id)?;
        }
        if n > 0 {
            tracing::info!(
                conversations = n,
                "conversations cut short by the stop ended"
            );
        }
        Ok(n)
    }

    /// The conversations going on now, oldest first.
    pub fn live(&self) -> Vec<LiveConversation> {
        let mut v: Vec<LiveConversation> = self.board().by_sip.values().map(Live::view).collect();
        v.sort_by_key(|c| (c.rang_at, c.id));
        v
    }

    /// Hangs up conversation `conv` for `user`: refuses it while it rings (`480`), ends it
    /// once answered (BYE). Its line goes on the Call when the SIP call has ended. `false`
    /// when no such conversation goes on.
    pub fn hang_up(&self, conv: u64, user: &str) -> bool {
        let handle = {
            let b = self.board();
            b.by_conv
                .get(&conv)
                .and_then(|sip| b.by_sip.get(sip))
                .map(|l| l.handle.clone())
        };
        let Some(handle) = handle else { return false };
        tracing::info!(conversation = conv, user, "operator hangs up");
        // An ended call's handle refuses: it is already on its way to the timeline.
        let _ = handle.hang_up();
        true
    }

    /// An operator (`user`, who has taken the Call) answers ringing conversation `conv` from
    /// the browser: vakt answers the browser's WebRTC offer (asking for the unit's G.711
    /// law), joins its leg to the call's relay, starts the recording and answers the unit
    /// (`200 OK`). Returns the SDP answer for the browser.
    pub async fn answer(&self, conv: u64, user: &str, offer: &str) -> Result<String, VoiceError> {
        let (relay, law, sip_answer, handle, call) = {
            let mut b = self.board();
            let live = b
                .by_conv
                .get(&conv)
                .copied()
                .and_then(|sip| b.by_sip.get_mut(&sip))
                .ok_or(VoiceError::NotFound)?;
            if live.state != LiveState::Ringing
                || live.open.direction != CallDirection::Inbound
                || live.answering
            {
                return Err(VoiceError::NotRinging);
            }
            let call = live.open.call.ok_or(VoiceError::NoCall)?;
            live.answering = true;
            (
                live.relay.clone(),
                live.law,
                live.sip_answer.clone(),
                live.handle.clone(),
                call,
            )
        };
        let prefer = match law {
            Law::Alaw => G711::Pcma,
            Law::Ulaw => G711::Pcmu,
        };
        let joined = self
            .inner
            .webrtc
            .answer(offer, prefer)
            .map_err(|e| match e {
                WebRtcError::NoG711 | WebRtcError::BadOffer(_) => VoiceError::Browser(e),
                other => VoiceError::Media(other.to_string()),
            })
            .and_then(|browser| {
                relay
                    .attach(browser.leg)
                    .map(|()| browser.sdp)
                    .map_err(|e| VoiceError::Media(e.to_string()))
            });
        let browser_sdp = match joined {
            Ok(sdp) => sdp,
            Err(e) => {
                // Another try (or another operator) may answer.
                self.update(conv, |l| l.answering = false);
                return Err(e);
            }
        };
        let now = Timestamp::now();
        let recorder = self.start_recording(call, conv, &relay, now).await;
        if handle.answer(sip_answer).is_err() {
            relay.end();
            return Err(VoiceError::NotFound);
        }
        self.mark_answered(conv, user, now, recorder).await?;
        tracing::info!(conversation = conv, call, user, "voice call answered");
        Ok(browser_sdp)
    }

    /// Starts the recording of conversation `conv` (of Call `call`) on `relay`, from `now`. A
    /// recording that cannot start is logged and counted; the call goes on without it.
    pub(super) async fn start_recording(
        &self,
        call: u64,
        conv: u64,
        relay: &Relay<BrowserLeg>,
        now: Timestamp,
    ) -> Option<Recorder> {
        let started = std::time::Instant::now();
        match Recorder::start(
            &self.inner.recordings,
            RecordingId::new(call, conv, now),
            started,
            &self.inner.recording_metrics,
        )
        .await
        {
            Ok(r) => {
                if relay.record(r.tap()).is_err() {
                    tracing::warn!(
                        conversation = conv,
                        "the relay ended before its recording began"
                    );
                }
                Some(r)
            }
            Err(e) => {
                tracing::error!(conversation = conv, error = %e, "the conversation is not recorded");
                None
            }
        }
    }

    /// Conversation `conv` was answered at `now`, `user` on it, recorded by `recorder`: the
    /// board, the store (so a restart ends it with its recording) and the consoles hear it.
    pub(super) async fn mark_answered(
        &self,
        conv: u64,
        user: &str,
        now: Timestamp,
        recorder: Option<Recorder>,
    ) -> Result<(), VoiceError> {
        let (view, open) = {
            let mut b = self.board();
            let Some(live) = b
                .by_conv
                .get(&conv)
                .copied()
                .and_then(|sip| b.by_sip.get_mut(&sip))
            else {
                return Err(VoiceError::NotFound);
            };
            live.state = LiveState::Answered;
            live.open.answered_at = Some(now);
            let rang = now.duration_since(live.open.rang_at).as_secs_f64().max(0.0);
            self.inner
                .call_metrics
                .answered(direction_name(live.open.direction), rang);
            live.open.operator = Some(user.to_owned());
            live.open.recording = recorder.as_ref().map(|r| r.id().file_name());
            live.recorder = recorder;
            (live.view(), live.open.clone())
        };
        let store = self.inner.store.clone();
        let saved = tokio::task::spawn_blocking(move || store.save_open_conversation(&open)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!(
                conversation = conv,
                "the answered conversation could not be stored"
            );
        }
        self.tell(VoiceEvent::Changed(view));
        Ok(())
    }

    /// Mutes (or unmutes) the operator on conversation `conv`: the person hears silence.
    pub fn set_muted(&self, conv: u64, muted: bool) -> Result<(), VoiceError> {
        self.with_relay(conv, |r| {
            r.set_muted(muted)
                .map_err(|e| VoiceError::Media(e.to_string()))
        })
    }

    /// Puts conversation `conv` on hold (the person hears the hold tone, the operator
    /// nothing of the person) or takes it off.
    pub fn set_held(&self, conv: u64, held: bool) -> Result<(), VoiceError> {
        self.with_relay(conv, |r| {
            r.set_held(held)
                .map_err(|e| VoiceError::Media(e.to_string()))
        })
    }

    /// Sends a SCAIP DTMF command (`0` clear down, `1`/`3` volume, `4` duplex, `7`/`8`
    /// simplex, `9` output) to the unit on conversation `conv`: an RFC 4733 event, or SIP
    /// INFO when the unit takes no events.
    pub fn dtmf(&self, conv: u64, key: char) -> Result<(), VoiceError> {
        let handle = {
            let b = self.board();
            b.by_conv
                .get(&conv)
                .and_then(|sip| b.by_sip.get(sip))
                .map(|l| l.handle.clone())
        };
        self.with_relay(conv, |r| match r.dtmf(key, DTMF_TONE_MS) {
            Ok(()) => Ok(()),
            Err(crate::voice::media::DtmfError::NoTelephoneEvent) => {
                let body = format!("Signal={key}\r\nDuration={DTMF_TONE_MS}\r\n");
                handle
                    .as_ref()
                    .ok_or(VoiceError::NotFound)?
                    .info("application/dtmf-relay", body.into_bytes())
                    .map_err(|e| VoiceError::Media(e.to_string()))
            }
            Err(e) => Err(VoiceError::Media(e.to_string())),
        })
    }

    fn with_relay(
        &self,
        conv: u64,
        f: impl FnOnce(&Relay<BrowserLeg>) -> Result<(), VoiceError>,
    ) -> Result<(), VoiceError> {
        let relay = {
            let b = self.board();
            let live = b
                .by_conv
                .get(&conv)
                .and_then(|sip| b.by_sip.get(sip))
                .ok_or(VoiceError::NotFound)?;
            if live.state != LiveState::Answered {
                return Err(VoiceError::NotRinging);
            }
            live.relay.clone()
        };
        f(&relay)
    }

    /// Watches a call's media: when the unit's RTP stops or the browser goes, the call is
    /// hung up (the SIP end then puts its line on the Call).
    pub(super) async fn watch_media(self, sip: CallId, relay: Relay<BrowserLeg>) {
        let why = relay.ended().await;
        let by = match why {
            RelayEnd::Ended => return,
            RelayEnd::Inactive | RelayEnd::Socket => ConversationEnd::Timeout,
            RelayEnd::OperatorEnded => ConversationEnd::Operator,
        };
        let handle = {
            let mut b = self.board();
            let Some(live) = b.by_sip.get_mut(&sip) else {
                return;
            };
            live.media_end = Some(by);
            live.handle.clone()
        };
        tracing::info!(sip = %sip, reason = why.as_str(), "the call's media ended: hanging up");
        let _ = handle.hang_up();
    }

    /// The recordings' folder.
    pub fn recordings_dir(&self) -> std::path::PathBuf {
        self.inner.recordings.dir.clone()
    }

    /// The changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<VoiceEvent> {
        self.inner.events.subscribe()
    }

    pub(super) fn tell(&self, e: VoiceEvent) {
        let (ringing, answered) = {
            let b = self.board();
            let answered = b
                .by_sip
                .values()
                .filter(|l| l.state == LiveState::Answered)
                .count();
            (b.by_sip.len() - answered, answered)
        };
        self.inner.call_metrics.going_on(ringing, answered);
        // Nobody listening is fine.
        let _ = self.inner.events.send(e);
    }

    /// The trunk `peer` belongs to.
    fn trunk_of(&self, peer: SocketAddr) -> Option<&Trunk> {
        let ip = peer.ip().to_canonical();
        self.inner
            .opts
            .trunks
            .iter()
            .find(|t| t.sources.iter().any(|s| s.to_canonical() == ip))
    }

    /// Asks the registers to learn `number` for unit `device` where they lack it (see
    /// [`crate::registers::numbers`]).
    fn learn(&self, device: &Device, number: String, how: &'static str) {
        let l = Learn {
            device: device.clone(),
            number,
            how,
        };
        if self.inner.learner.try_send(l).is_err() {
            tracing::debug!("the registers' learner is busy: a number is left for next time");
        }
    }

    /// A SCAIP unit's message names its voice paths (`crd`): a `gsm:`/`tel:` one is the
    /// unit's number.
    fn learn_from_signal(&self, signal: &Signal) {
        let Some(info) = &signal.scaip else { return };
        let Some(number) = numbers::of_voice_paths(&info.crd).into_iter().next() else {
            return;
        };
        let registry = self.inner.devices.current();
        if let Some(d) = registry.scaip(&signal.account, &info.sip_user) {
            self.learn(d, number, "its SCAIP voice path (crd)");
        }
    }

    /// The trunk whose Digest user `invite`'s credentials name (a unit's SIP user of the
    /// same name is the unit's).
    fn trunk_named_by(&self, invite: &Message<'_>) -> Option<&Trunk> {
        let creds = vakt_proto::sip::parse_authorization(invite.header("Authorization")?).ok()?;
        let user = creds.username.as_ref();
        if self.inner.devices.current().sip_password(user).is_some() {
            return None;
        }
        self.inner
            .opts
            .trunks
            .iter()
            .find(|t| t.credentials.as_ref().is_some_and(|c| c.user == user))
    }

    /// Who an admitted caller is: the account to journal under, its subscriber and device
    /// type, and the far end in words.
    fn identify(&self, call: &IncomingCall) -> Identity {
        let from_user = vakt_proto::sip::uri_user(&call.caller.from_uri).map(str::to_owned);
        match &call.caller.origin {
            Origin::Device { user } => {
                let registry = self.inner.devices.current();
                let mut units = registry
                    .iter()
                    .filter(|d| d.sip_user.as_deref() == Some(user.as_str()));
                let first = units.next();
                let device = match (first, units.next()) {
                    (Some(d), None) => Some(d.clone()),
                    // Shared credentials: the unit names itself in From (its `cid`).
                    (Some(_), Some(_)) => registry
                        .iter()
                        .find(|d| {
                            d.sip_user.as_deref() == Some(user.as_str())
                                && from_user
                                    .as_deref()
                                    .is_some_and(|f| d.account.eq_ignore_ascii_case(f))
                        })
                        .cloned(),
                    (None, _) => None,
                };
                match device {
                    Some(d) => {
                        if let Some(n) = caller_number(call) {
                            self.learn(&d, n, "its SIP call's number");
                        }
                        Identity::of_device(&d)
                    }
                    None => Identity {
                        account: from_user
                            .unwrap_or_else(|| user.clone())
                            .to_ascii_uppercase(),
                        subscriber: None,
                        device_type: None,
                        party: format!("unit {user}"),
                        lookup_number: None,
                    },
                }
            }
            Origin::Trunk { name } => {
                let number = caller_number(call);
                Identity {
                    account: number.clone().unwrap_or_else(|| format!("trunk {name}")),
                    subscriber: None,
                    device_type: None,
                    party: number
                        .clone()
                        .unwrap_or_else(|| "an unknown number".to_owned()),
                    lookup_number: number,
                }
            }
        }
    }

    /// The subscriber whose phone (or one of whose devices' subscribers) `number` is.
    fn subscriber_by_number(&self, number: &str) -> Option<Subscriber> {
        match self.inner.store.subscribers() {
            Ok(subs) => subs.into_iter().find(|s| same_number(&s.phone, number)),
            Err(e) => {
                tracing::warn!(error = %e, "subscribers could not be read to name a caller");
                None
            }
        }
    }

    /// Journals the call's Signal and, once triage has placed it, joins the conversation to
    /// its Call.
    async fn journal(self, conv: u64, mut id: Identity, at: Timestamp, peer: SocketAddr) {
        if let Some(number) = id.lookup_number.take() {
            let me = self.clone();
            let n = number.clone();
            let found = tokio::task::spawn_blocking(move || me.subscriber_by_number(&n))
                .await
                .ok()
                .flatten();
            if let Some(s) = found {
                id.party = format!("{} ({})", s.name, id.party);
                id.subscriber = Some(s.id.clone());
                // Journal under one of the person's devices, so the Call is theirs.
                let registry = self.inner.devices.current();
                if let Some(d) = registry
                    .iter()
                    .find(|d| d.subscriber.as_deref() == Some(s.id.as_str()))
                {
                    id.account = d.account.clone();
                    id.device_type = d.device_type.clone();
                }
                self.update(conv, |l| {
                    l.subscriber = Some(s.id.clone());
                    l.open.party = id.party.clone();
                });
            } else if let Some(d) = self.inner.devices.current().by_phone(&number) {
                // No person's phone, but a unit's (as it told it, or as entered): the unit
                // calls, and its subscriber's register learns the number if it lacks one.
                let party = format!("unit {} ({})", d.account, id.party);
                id = Identity {
                    party,
                    ..Identity::of_device(d)
                };
                self.learn(d, number, "a trunk call from the unit's number");
                self.update(conv, |l| {
                    l.subscriber = id.subscriber.clone();
                    l.open.party = id.party.clone();
                });
            }
        }
        let signal = voice_signal(&id, at, peer);
        let committed = match self.inner.journal.submit(signal, None).await {
            Ok(rx) => rx.await.ok(),
            Err(e) => {
                tracing::error!(conversation = conv, error = %e, "the voice call's signal could not be journaled");
                None
            }
        };
        let Some(Commit::Stored(jid) | Commit::Duplicate(jid)) = committed else {
            tracing::error!(
                conversation = conv,
                "the voice call's signal was not journaled: it rings without a call"
            );
            return;
        };
        let call = {
            let mut b = self.board();
            match b.early.iter().position(|(j, _)| *j == jid) {
                Some(i) => b.early.remove(i).map(|(_, c)| c),
                None => {
                    b.pending.insert(jid, conv);
                    None
                }
            }
        };
        if let Some(call) = call {
            self.joined(conv, call);
        }
    }

    /// Conversation `conv` belongs to Call `call`.
    fn joined(&self, conv: u64, call: u64) {
        let (view, open, ended) = {
            let mut b = self.board();
            let Some(sip) = b.by_conv.get(&conv).copied() else {
                return;
            };
            let Some(live) = b.by_sip.get_mut(&sip) else {
                return;
            };
            live.open.call = Some(call);
            (live.view(), live.open.clone(), live.ended)
        };
        if let Err(e) = self.inner.store.save_open_conversation(&open) {
            tracing::warn!(conversation = conv, error = %e, "the conversation's call could not be stored");
        }
        self.tell(VoiceEvent::Changed(view));
        if let Some((by, at)) = ended {
            self.finish_conversation(conv, by, at);
        }
    }

    fn update(&self, conv: u64, f: impl FnOnce(&mut Live)) {
        let view = {
            let mut b = self.board();
            let Some(sip) = b.by_conv.get(&conv).copied() else {
                return;
            };
            let Some(live) = b.by_sip.get_mut(&sip) else {
                return;
            };
            f(live);
            live.view()
        };
        self.tell(VoiceEvent::Changed(view));
    }

    /// The SIP call `sip` ended `by`: its line goes on its Call (now, or once triage has
    /// named the Call).
    pub(super) fn ended(&self, sip: CallId, by: ConversationEnd, now: Timestamp) {
        let conv = {
            let mut b = self.board();
            let Some(live) = b.by_sip.get_mut(&sip) else {
                return;
            };
            let by = live.media_end.unwrap_or(by);
            live.relay.end();
            if live.open.call.is_none() {
                live.ended = Some((by, now));
                return;
            }
            (live.open.id, by)
        };
        let (conv, by) = conv;
        self.finish_conversation(conv, by, now);
    }

    fn finish_conversation(&self, conv: u64, by: ConversationEnd, now: Timestamp) {
        let live = {
            let mut b = self.board();
            let Some(sip) = b.by_conv.remove(&conv) else {
                return;
            };
            b.by_sip.remove(&sip)
        };
        let Some(mut live) = live else { return };
        live.relay.end();
        if let Some(recorder) = live.recorder.take() {
            // The recording is finished first, so the line names the file as it is.
            let me = self.clone();
            let hangup = std::time::Instant::now();
            tokio::spawn(async move {
                match recorder.finish(hangup).await {
                    Ok(f) => live.open.recording = Some(f.file_name),
                    Err(e) => {
                        tracing::warn!(conversation = conv, error = %e, "the recording could not be finished")
                    }
                }
                me.put_line(live, by, now);
            });
            return;
        }
        self.put_line(live, by, now);
    }

    /// Puts an ended conversation's line on its Call, then forgets it in the store.
    fn put_line(&self, live: Live, by: ConversationEnd, now: Timestamp) {
        let conv = live.open.id;
        let abandoned = live.open.direction == CallDirection::Inbound
            && live.open.answered_at.is_none()
            && by == ConversationEnd::Caller;
        self.inner
            .call_metrics
            .ended(direction_name(live.open.direction), by.as_str(), abandoned);
        let line = live.open.ended(by, now);
        let call = live.open.call;
        if let Some(call) = call
            && let Err(e) = self.inner.calls.record(
                call,
                live.open.operator.as_deref(),
                TimelineEvent::Conversation(line),
                now,
            )
        {
            tracing::warn!(call, conversation = conv, error = %e, "the conversation's line could not be put on its call");
        }
        let store = self.inner.store.clone();
        let calls = self.inner.calls.clone();
        // The line is durable before the open conversation is forgotten.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = calls.flush_blocking() {
                tracing::warn!(conversation = conv, error = %e, "the conversation's line could not be flushed");
                return;
            }
            if let Err(e) = store.remove_open_conversation(conv) {
                tracing::warn!(conversation = conv, error = %e, "the ended conversation could not be removed from the store");
            }
        });
        tracing::info!(conversation = conv, call = ?call, ended_by = by.as_str(), "conversation ended");
        self.tell(VoiceEvent::Ended { id: conv, call });
    }
}

/// The address the call's INVITE reached, for vakt's SDP when the RTP socket listens on every
/// address: the Request-URI's host when it is an address, else the caller's own when it is
/// this host (loopback); otherwise unknown (`0.0.0.0`; set `[voice.rtp] public_addr`).
fn reached_ip(call: &IncomingCall) -> IpAddr {
    let host = call
        .dialled
        .split_once('@')
        .map_or(call.dialled.as_str(), |(_, h)| h)
        .trim_start_matches("sip:")
        .split([';', '>'])
        .next()
        .unwrap_or("");
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.split_once(']'))
        .map_or_else(
            || host.rsplit_once(':').map_or(host, |(h, _)| h),
            |(h, _)| h,
        );
    match host.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ if call.peer.ip().is_loopback() => call.peer.ip(),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// The caller's number as vakt keeps it ([`numbers::normalise`]): the one the SIP layer read
/// (`P-Asserted-Identity`, else From), else From's when that one is no number (a trunk's
/// `anonymous` assertion).
fn caller_number(call: &IncomingCall) -> Option<String> {
    call.caller
        .number
        .as_deref()
        .and_then(numbers::normalise)
        .or_else(|| numbers::normalise(&call.caller.from_uri))
}

/// Learns the numbers the switchboard hands it, one at a time, off the calls' path.
async fn learn_numbers(
    mut rx: mpsc::Receiver<Learn>,
    store: Store,
    devices: Devices,
    calls: Arc<Calls>,
) {
    let mut seen = std::collections::HashSet::new();
    while let Some(l) = rx.recv().await {
        let key = (l.device.account.clone(), l.number.clone());
        if seen.len() >= LEARN_SEEN {
            seen.clear();
        }
        if !seen.insert(key.clone()) {
            continue;
        }
        let (s, d) = (store.clone(), devices.clone());
        let subscriber = l.device.subscriber.clone();
        let done = tokio::task::spawn_blocking(move || {
            crate::registers::learn::learn(&s, &d, &l.device, &l.number, l.how, Timestamp::now())
        })
        .await;
        match done {
            Ok(Ok(learned)) => {
                if learned.subscriber {
                    // The consoles showing the card load it again, with the number.
                    calls.subscriber_changed(subscriber.as_deref());
                }
            }
            Ok(Err(e)) => {
                seen.remove(&key);
                tracing::warn!(error = %e, "a learned phone number could not be stored");
            }
            Err(e) => {
                seen.remove(&key);
                tracing::warn!(error = %e, "learning a phone number failed");
            }
        }
    }
}

/// Who a caller is, as the switchboard journals them.
struct Identity {
    account: String,
    subscriber: Option<String>,
    device_type: Option<String>,
    party: String,
    /// A trunk caller's number, to look the subscriber up by.
    lookup_number: Option<String>,
}

impl Identity {
    fn of_device(d: &Device) -> Identity {
        Identity {
            account: d.account.clone(),
            subscriber: d.subscriber.clone(),
            device_type: d.device_type.clone(),
            party: format!("unit {}", d.account),
            lookup_number: None,
        }
    }
}

/// The Signal a call in is journaled as (see [`CODE_VOICE_CALL`]).
fn voice_signal(id: &Identity, at: Timestamp, peer: SocketAddr) -> Signal {
    Signal {
        id: 0,
        received_at: at,
        transport: Transport::Internal,
        peer: if peer.ip().is_unspecified() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            peer
        },
        protocol: VOICE_PROTOCOL.to_owned(),
        encrypted: false,
        account: id.account.clone(),
        line: None,
        receiver: None,
        seq: "0000".to_owned(),
        flags: Flags::default(),
        subscriber: id.subscriber.clone(),
        device_type: id.device_type.clone(),
        transmitted_at: None,
        event_time: Some(at),
        events: vec![SignalEvent {
            code: CODE_VOICE_CALL.to_owned(),
            name: Some("Voice call".to_owned()),
            qualifier: Qualifier::Status,
            zone: None,
            group: None,
            user: None,
            text: Some(format!("voice call from {}", id.party)),
            time: None,
        }],
        xdata: Vec::new(),
        raw: Vec::new(),
        scaip: None,
    }
}

impl CallHandler for Switchboard {
    fn admit(&self, invite: &Message<'_>, uri: &str, peer: SocketAddr) -> Admission {
        if let Some(t) = self.trunk_of(peer) {
            let Some(credentials) = &t.credentials else {
                return Admission::Trunk {
                    name: t.name.clone(),
                };
            };
            return match self.inner.auth.authenticate_trunk(
                invite,
                "INVITE",
                uri,
                peer,
                credentials,
            ) {
                TrunkCheck::Passed => Admission::Trunk {
                    name: t.name.clone(),
                },
                TrunkCheck::Challenge(c) => Admission::Challenge(c),
                TrunkCheck::Refused => Admission::Forbidden,
            };
        }
        if let Some(t) = self.trunk_named_by(invite) {
            // A trunk's credentials from an address that is not the trunk's: never taken
            // for a unit, never challenged again.
            tracing::warn!(%peer, trunk = %t.name, "a trunk's credentials from another address: refused");
            return Admission::Forbidden;
        }
        match self.inner.auth.authenticate(invite, "INVITE", uri, peer) {
            Ok(user) => Admission::Device { user },
            Err(challenge) => Admission::Challenge(challenge),
        }
    }

    fn incoming(&self, call: IncomingCall, handle: CallHandle) -> Decision {
        // The media first: a call vakt cannot carry is refused before anything is kept.
        let Ok(offer) = vakt_proto::sdp::parse(&call.offer) else {
            tracing::info!(sip = %call.id, "a call without a usable SDP offer is refused");
            return Decision::Reject(488);
        };
        let port = match self.inner.media.bind() {
            Ok(p) => p,
            Err(MediaError::PortsExhausted { .. }) => return Decision::Reject(503),
            Err(e) => {
                tracing::error!(error = %e, "no RTP port for a call");
                return Decision::Reject(500);
            }
        };
        let mut session = LocalSession::new(port.local_media(reached_ip(&call)), call.id.0, 1);
        let answer = match session.answer(&offer, Direction::SendRecv) {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(sip = %call.id, reason = e.as_str(), "a call vakt cannot answer is refused");
                return Decision::Reject(488);
            }
        };
        let relay = match SipLeg::new(port, answer.negotiated)
            .and_then(|leg| Relay::<BrowserLeg>::start(leg, EarlyMedia::Ringback))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "the call's media could not start");
                return Decision::Reject(500);
            }
        };
        let law = match answer.negotiated.codec {
            vakt_proto::sdp::Codec::Pcma => Law::Alaw,
            vakt_proto::sdp::Codec::Pcmu => Law::Ulaw,
        };
        let id = self.identify(&call);
        let conv = match self.inner.store.next_conversation_id() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no conversation id: the call is refused");
                relay.end();
                return Decision::Reject(503);
            }
        };
        let open = OpenConversation {
            id: conv,
            call: None,
            direction: CallDirection::Inbound,
            party: id.party.clone(),
            to_relative: Some(false),
            rang_at: call.now,
            answered_at: None,
            operator: None,
            recording: None,
        };
        if let Err(e) = self.inner.store.save_open_conversation(&open) {
            tracing::error!(error = %e, "the conversation could not be stored: the call is refused");
            relay.end();
            return Decision::Reject(503);
        }
        let live = Live {
            open,
            subscriber: id.subscriber.clone(),
            handle,
            state: LiveState::Ringing,
            ended: None,
            relay: relay.clone(),
            law,
            sip_answer: answer.sdp.clone(),
            recorder: None,
            media_end: None,
            answering: false,
            out: None,
        };
        let view = live.view();
        {
            let mut b = self.board();
            b.by_conv.insert(conv, call.id);
            b.by_sip.insert(call.id, live);
        }
        tracing::info!(conversation = conv, sip = %call.id, party = %id.party, "voice call ringing");
        self.tell(VoiceEvent::Changed(view));
        tokio::spawn(self.clone().journal(conv, id, call.now, call.peer));
        tokio::spawn(self.clone().watch_media(call.id, relay));
        // `180 Ringing`: the unit plays its ringing tone until an operator answers (the relay
        // sends ringback too, for a unit that listens before the answer).
        Decision::Ring
    }

    fn reoffer(&self, id: CallId, offer: &[u8]) -> Result<Vec<u8>, u16> {
        // The unit's hold or resume (or a session refresh): answered from the same local
        // media, and the relay follows the new direction.
        let offer = vakt_proto::sdp::parse(offer).map_err(|_| 488u16)?;
        let relay = {
            let b = self.board();
            b.by_sip.get(&id).map(|l| l.relay.clone()).ok_or(481u16)?
        };
        let local = vakt_proto::sdp::LocalMedia {
            address: relay.local_addr().ip(),
            port: relay.local_addr().port(),
            rtcp_mux: true,
        };
        let mut session = LocalSession::new(local, id.0, 2);
        let answer = session
            .answer(&offer, Direction::SendRecv)
            .map_err(|_| 488u16)?;
        relay.update(answer.negotiated).map_err(|_| 488u16)?;
        Ok(answer.sdp)
    }

    fn event(&self, id: CallId, event: CallEvent) {
        // A call out's progress and answer (and events that came before its dial returned).
        let Some(event) = self.dial_event(id, event) else {
            return;
        };
        if let CallEvent::Ended(end) = event {
            self.ended(id, end_of(end), Timestamp::now());
        }
    }

    fn unlimited_source(&self, peer: SocketAddr) -> bool {
        self.trunk_of(peer).is_some()
    }
}

impl SignalObserver for Switchboard {
    fn signal(&self, _signal: &Signal, _now: Timestamp) {}

    fn ingested(&self, signal: &Signal, outcome: Ingested) {
        if signal.protocol != VOICE_PROTOCOL {
            self.learn_from_signal(signal);
            return;
        }
        let call = match outcome {
            Ingested::Opened(c) | Ingested::Restored(c) | Ingested::Merged { call: c, .. } => c,
            Ingested::Rule(_) => return,
        };
        let conv = {
            let mut b = self.board();
            match b.pending.remove(&signal.id) {
                Some(conv) => Some(conv),
                None => {
                    b.early.push_back((signal.id, call));
                    while b.early.len() > EARLY_KEPT {
                        b.early.pop_front();
                    }
                    None
                }
            }
        };
        if let Some(conv) = conv {
            self.joined(conv, call);
        }
    }
}

/// The switchboard as an observer of triage, set once the switchboard exists (triage's
/// observers are made before the journal the switchboard journals into). It holds the
/// switchboard weakly: the switchboard holds the Calls, whose observer this is.
#[derive(Debug, Default)]
pub struct LateObserver(std::sync::OnceLock<std::sync::Weak<Inner>>);

impl LateObserver {
    /// From now on, triage's outcomes go to `switchboard`.
    pub fn set(&self, switchboard: &Switchboard) {
        // Set once at start; a second set would be a wiring mistake and is ignored.
        let _ = self.0.set(Arc::downgrade(&switchboard.inner));
    }
}

impl SignalObserver for LateObserver {
    fn signal(&self, _signal: &Signal, _now: Timestamp) {}

    fn ingested(&self, signal: &Signal, outcome: Ingested) {
        if let Some(inner) = self.0.get().and_then(std::sync::Weak::upgrade) {
            Switchboard { inner }.ingested(signal, outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sip_end_reads_as_who_ended_the_conversation() {
        assert_eq!(end_of(End::Cancelled), ConversationEnd::Caller);
        assert_eq!(end_of(End::RemoteHangUp), ConversationEnd::Caller);
        assert_eq!(end_of(End::HungUp), ConversationEnd::Operator);
        assert_eq!(end_of(End::RingTimeout), ConversationEnd::NoAnswer);
        assert_eq!(end_of(End::Failed(486)), ConversationEnd::Busy);
        assert_eq!(end_of(End::Failed(600)), ConversationEnd::Busy);
        assert_eq!(end_of(End::Failed(603)), ConversationEnd::Declined);
        assert_eq!(end_of(End::Failed(480)), ConversationEnd::NoAnswer);
        assert_eq!(end_of(End::Failed(408)), ConversationEnd::NoAnswer);
        assert_eq!(end_of(End::Failed(503)), ConversationEnd::Failure);
        assert_eq!(end_of(End::SessionExpired), ConversationEnd::Timeout);
        assert_eq!(end_of(End::Shutdown), ConversationEnd::Restart);
    }
}
