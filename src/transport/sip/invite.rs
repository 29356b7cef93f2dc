//! The endpoint's calls: the table of dialogs, one task per dialog driving its state machine
//! (`dialog`) with the flow and the clock, the handler's admission of INVITEs, and calls out.
//!
//! - A new INVITE is admitted by the handler (`401` with its challenge, `403`), screened
//!   (`dialog::screen`: `400`, `415`, `420`, `422`) and counted against `max_dialogs`
//!   (`503` with `Retry-After` beyond); these refusals are stateless (sent at once, and again
//!   from the endpoint's transaction cache to a retransmission). An admitted INVITE gets its
//!   dialog and task, which answers `100 Trying` at once and asks the handler for its
//!   decision.
//! - Requests in a dialog are found by Call-ID and vakt's tag (the To tag of requests, the
//!   From tag of responses); the dialog checks the peer's tag. An INVITE or CANCEL without a
//!   To tag is found by Call-ID and Via branch (a retransmission, or the CANCEL of the call
//!   in). A request for no dialog gets `481`; an ACK for none is dropped.
//! - A dialog follows its peer's flow: a request from the peer's address (any port: NAT
//!   rebinding) moves the dialog's flow there.
//! - Bounded: `max_dialogs` at once, 32 messages and 16 actions queued per dialog (beyond,
//!   a message is dropped, as a lost datagram would be, and an action refused), the units'
//!   flows remembered for calls out at most [`MAX_FLOWS`], each for an hour.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::call::{
    Action, Admission, CallEvent, CallHandle, CallHandler, CallId, Caller, Decision, Dial,
    DialError, DialVia, IncomingCall, InviteOptions, Origin,
};
use super::dialog::{self, Dialog, Local, Out, Outbound};
use super::flow::{Flow, FlowRef};
use super::uas::{self, UasCache};
use crate::telemetry::SipCallMetrics;
use crate::transport::accept::Scope;
use vakt_proto::sip::{self, Message, StartLine};

/// Messages queued for one dialog.
const INPUT_QUEUE: usize = 32;
/// Actions queued for one dialog.
const ACTION_QUEUE: usize = 16;
/// Units whose latest flow is remembered for calls out.
pub(super) const MAX_FLOWS: usize = 100_000;
/// A unit's flow is forgotten after this without a request.
const FLOW_TTL: Duration = Duration::from_secs(3600);

/// A message for a dialog's task.
struct Input {
    raw: Vec<u8>,
    flow: Flow,
}

/// A dialog in the table.
struct Entry {
    tx: mpsc::Sender<Input>,
}

type Key = (String, String);

#[derive(Default)]
struct Table {
    /// By (Call-ID, vakt's tag).
    dialogs: HashMap<Key, Entry>,
    /// The calls in by (Call-ID, the INVITE's Via branch).
    branches: HashMap<Key, Key>,
}

/// A unit's latest flow.
struct Seen {
    flow: FlowRef,
    local: SocketAddr,
    at: Instant,
}

/// What the endpoint does with a request for the calls.
pub(super) enum Routed {
    /// A dialog has it (and answers it).
    Dialog,
    /// Answer it at once with this status and headers; nothing else happens.
    Refuse(u16, Vec<(&'static str, String)>),
}

/// The calls of one endpoint.
pub(super) struct Calls {
    handler: Arc<dyn CallHandler>,
    opts: InviteOptions,
    /// The user part of vakt's Contact.
    contact_user: String,
    table: Mutex<Table>,
    flows: Mutex<HashMap<String, Seen>>,
    udp: Mutex<Option<(Arc<UdpSocket>, SocketAddr)>>,
    next_id: AtomicU64,
    /// The endpoint's responses kept for retransmitted UDP requests.
    cache: Arc<Mutex<UasCache>>,
    metrics: SipCallMetrics,
    scope: Scope,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// vakt's sent-by for a message that reached `local`: that address, or the host the request
/// was sent to (the Request-URI's) when the socket listens on every address.
pub(super) fn sent_by(local: SocketAddr, uri: &str) -> String {
    if local.ip().is_unspecified() {
        super::outgoing::uri_host(uri).map_or_else(|| local.to_string(), str::to_owned)
    } else {
        local.to_string()
    }
}

/// The address this machine sends to `peer` from, with `listen`'s port (no packet is sent:
/// the routing table is asked through an unconnected-then-connected UDP socket).
fn routed_local(listen: SocketAddr, peer: SocketAddr) -> SocketAddr {
    if !listen.ip().is_unspecified() {
        return listen;
    }
    let any: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(peer).and_then(|()| s.local_addr()))
        .map_or(listen, |a| SocketAddr::new(a.ip(), listen.port()))
}

impl Calls {
    pub(super) fn new(
        handler: Arc<dyn CallHandler>,
        opts: InviteOptions,
        arc_uri: &str,
        cache: Arc<Mutex<UasCache>>,
        scope: Scope,
    ) -> Calls {
        Calls {
            handler,
            opts,
            contact_user: sip::uri_user(arc_uri).unwrap_or("vakt").to_owned(),
            table: Mutex::new(Table::default()),
            flows: Mutex::new(HashMap::new()),
            udp: Mutex::new(None),
            next_id: AtomicU64::new(1),
            cache,
            metrics: SipCallMetrics::new(),
            scope,
        }
    }

    /// True for a source the per-source rate does not apply to.
    pub(super) fn unlimited(&self, peer: SocketAddr) -> bool {
        self.handler.unlimited_source(peer)
    }

    /// The UDP listener, for calls out over UDP.
    pub(super) fn set_udp(&self, socket: Arc<UdpSocket>, local: SocketAddr) {
        *lock(&self.udp) = Some((socket, local));
    }

    /// A unit authenticated as `user` sent a request over `flow`: calls out to it go there.
    pub(super) fn saw(&self, user: &str, flow: &Flow, local: SocketAddr) {
        let now = Instant::now();
        let mut flows = lock(&self.flows);
        if flows.len() >= MAX_FLOWS && !flows.contains_key(user) {
            flows.retain(|_, s| now.saturating_duration_since(s.at) < FLOW_TTL);
            if flows.len() >= MAX_FLOWS {
                // The oldest goes.
                if let Some(oldest) = flows
                    .iter()
                    .min_by_key(|(_, s)| s.at)
                    .map(|(k, _)| k.clone())
                {
                    flows.remove(&oldest);
                }
            }
        }
        flows.insert(
            user.to_owned(),
            Seen {
                flow: flow.downgrade(),
                local,
                at: now,
            },
        );
    }

    /// The flow of a call out (not over a new TCP connection) and vakt's address on it.
    pub(super) fn flow_for(&self, via: &DialVia) -> Result<(Flow, SocketAddr), DialError> {
        match via {
            DialVia::Device(user) => {
                let flows = lock(&self.flows);
                let seen = flows.get(user).ok_or(DialError::NoFlow)?;
                if seen.at.elapsed() >= FLOW_TTL {
                    return Err(DialError::NoFlow);
                }
                let flow = seen.flow.upgrade().ok_or(DialError::NoFlow)?;
                let local = routed_local(seen.local, flow.peer());
                Ok((flow, local))
            }
            DialVia::Udp(peer) => {
                let udp = lock(&self.udp);
                let (socket, local) = udp.as_ref().ok_or(DialError::NoUdp)?;
                let local = routed_local(*local, *peer);
                Ok((
                    Flow::Udp {
                        socket: socket.clone(),
                        peer: *peer,
                    },
                    local,
                ))
            }
            DialVia::Tcp(_) => Err(DialError::NoFlow),
        }
    }

    fn local(&self, flow: &Flow, local: SocketAddr, uri: &str) -> Local {
        let host = sent_by(local, uri);
        let transport = flow.via_transport();
        Local {
            via_transport: transport,
            contact: format!(
                "<sip:{}@{host};transport={}>",
                self.contact_user,
                transport.to_ascii_lowercase()
            ),
            via_host: host,
            reliable: !flow.is_udp(),
        }
    }

    /// A response to a request of vakt's in a dialog (by Call-ID and From tag).
    pub(super) fn response(&self, raw: &[u8], msg: &Message<'_>, flow: &Flow) {
        let Some(tag) = msg.from_tag() else { return };
        let key = (msg.call_id().to_owned(), tag.to_owned());
        self.forward(&key, raw, flow);
    }

    /// An ACK: to its dialog, or dropped.
    pub(super) fn ack(&self, raw: &[u8], msg: &Message<'_>, flow: &Flow) {
        let Some(tag) = msg.to_tag() else { return };
        let key = (msg.call_id().to_owned(), tag.to_owned());
        self.forward(&key, raw, flow);
    }

    /// Hands a message to its dialog; false when there is none.
    fn forward(&self, key: &Key, raw: &[u8], flow: &Flow) -> bool {
        let table = lock(&self.table);
        let Some(e) = table.dialogs.get(key) else {
            return false;
        };
        // A full queue drops the message, as the network may: the peer retransmits.
        let _ = e.tx.try_send(Input {
            raw: raw.to_vec(),
            flow: flow.clone(),
        });
        true
    }

    /// An INVITE, CANCEL, BYE, INFO, UPDATE (or another method in a dialog) from `flow`,
    /// to `uri`, arrived at `local`.
    pub(super) fn request(
        self: &Arc<Self>,
        raw: &[u8],
        msg: &Message<'_>,
        method: &str,
        uri: &str,
        flow: &Flow,
        local: SocketAddr,
    ) -> Routed {
        let call_id = msg.call_id().to_owned();
        if let Some(tag) = msg.to_tag() {
            if self.forward(&(call_id, tag.to_owned()), raw, flow) {
                return Routed::Dialog;
            }
            self.metrics.refused("no_dialog");
            return Routed::Refuse(481, Vec::new());
        }
        if method == "INVITE" || method == "CANCEL" {
            let by_branch = msg.top_via_branch().and_then(|b| {
                let t = lock(&self.table);
                t.branches.get(&(call_id.clone(), b.to_owned())).cloned()
            });
            if let Some(key) = by_branch
                && self.forward(&key, raw, flow)
            {
                return Routed::Dialog;
            }
        }
        if method != "INVITE" {
            // Outside any dialog: a BYE, INFO or UPDATE for no call, a CANCEL for no INVITE.
            self.metrics.refused("no_dialog");
            return Routed::Refuse(481, Vec::new());
        }
        self.new_call(raw, msg, uri, flow, local)
    }

    fn new_call(
        self: &Arc<Self>,
        raw: &[u8],
        msg: &Message<'_>,
        uri: &str,
        flow: &Flow,
        local: SocketAddr,
    ) -> Routed {
        let origin = match self.handler.admit(msg, uri, flow.peer()) {
            Admission::Device { user } => {
                self.saw(&user, flow, local);
                Origin::Device { user }
            }
            Admission::Trunk { name } => Origin::Trunk { name },
            Admission::Challenge(c) => {
                self.metrics.refused("unauthenticated");
                return Routed::Refuse(401, vec![("WWW-Authenticate", c)]);
            }
            Admission::Forbidden => {
                self.metrics.refused("forbidden");
                return Routed::Refuse(403, Vec::new());
            }
        };
        if let Err(r) = dialog::screen(msg, &self.opts) {
            self.metrics.refused(match r.code {
                400 => "bad_request",
                415 => "media_type",
                420 => "extension",
                _ => "interval",
            });
            return Routed::Refuse(r.code, r.headers);
        }
        let now = Instant::now();
        let local_tag = sip::random_token(10);
        let d_local = self.local(flow, local, uri);
        let call_id = msg.call_id().to_owned();
        let key = (call_id.clone(), local_tag.clone());
        let branch_key = msg
            .top_via_branch()
            .map(|b| (call_id.clone(), b.to_owned()));
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let (atx, arx) = mpsc::channel(ACTION_QUEUE);
        {
            let mut t = lock(&self.table);
            if t.dialogs.len() >= self.opts.max_dialogs {
                drop(t);
                self.metrics.refused("full");
                return Routed::Refuse(503, vec![("Retry-After", "10".into())]);
            }
            t.dialogs.insert(key.clone(), Entry { tx });
            if let Some(b) = &branch_key {
                t.branches.insert(b.clone(), key.clone());
            }
        }
        let (d, first) = Dialog::uas(msg, raw, flow.peer(), local_tag, d_local, &self.opts, now);
        let id = CallId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let from_uri = msg.from_uri().unwrap_or_default().to_owned();
        let number = msg
            .asserted_identity()
            .and_then(sip::uri_number)
            .or_else(|| msg.from_uri().and_then(sip::uri_number))
            .map(str::to_owned);
        let call = IncomingCall {
            id,
            caller: Caller {
                origin,
                number,
                from_uri,
            },
            dialled: uri.to_owned(),
            offer: msg.body.to_vec(),
            transport: flow.transport(),
            peer: flow.peer(),
            now: jiff::Timestamp::now(),
        };
        let handle = CallHandle::new(id, atx);
        let task = Task {
            calls: self.clone(),
            id,
            key,
            branch_key,
            direction: "in",
        };
        let span = tracing::debug_span!("sip_call", %id, peer = %flow.peer());
        let flow = flow.clone();
        self.scope.spawn(
            task.run(d, flow, rx, arx, first, Some((call, handle)))
                .instrument(span),
        );
        Routed::Dialog
    }

    /// Starts a call out over `flow` (vakt's address on it `local`).
    pub(super) fn dial(
        self: &Arc<Self>,
        d: Dial,
        flow: Flow,
        local: SocketAddr,
    ) -> Result<CallHandle, DialError> {
        let now = Instant::now();
        let call_id = sip::random_token(24);
        let local_tag = sip::random_token(10);
        let key = (call_id.clone(), local_tag.clone());
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let (atx, arx) = mpsc::channel(ACTION_QUEUE);
        {
            let mut t = lock(&self.table);
            if t.dialogs.len() >= self.opts.max_dialogs {
                return Err(DialError::Full);
            }
            t.dialogs.insert(key.clone(), Entry { tx });
        }
        let d_local = self.local(&flow, local, &d.uri);
        let (dialog, first) = Dialog::uac(
            Outbound {
                uri: d.uri,
                from_uri: d.from,
                offer: d.offer,
                credentials: d.credentials,
                headers: d.headers,
            },
            call_id,
            local_tag,
            d_local,
            &self.opts,
            now,
        );
        let id = CallId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let task = Task {
            calls: self.clone(),
            id,
            key,
            branch_key: None,
            direction: "out",
        };
        let span = tracing::debug_span!("sip_call", %id, peer = %flow.peer());
        self.scope.spawn(
            task.run(dialog, flow, rx, arx, first, None)
                .instrument(span),
        );
        Ok(CallHandle::new(id, atx))
    }
}

/// One dialog's task.
struct Task {
    calls: Arc<Calls>,
    id: CallId,
    key: Key,
    branch_key: Option<Key>,
    direction: &'static str,
}

impl From<Decision> for Action {
    fn from(d: Decision) -> Action {
        match d {
            Decision::Ring => Action::Ring,
            Decision::EarlyMedia(sdp) => Action::EarlyMedia(sdp),
            Decision::Answer(sdp) => Action::Answer(sdp),
            Decision::Reject(code) => Action::Reject(code),
        }
    }
}

impl Task {
    async fn run(
        self,
        mut d: Dialog,
        mut flow: Flow,
        mut rx: mpsc::Receiver<Input>,
        mut actions: mpsc::Receiver<Action>,
        first: Vec<Out>,
        incoming: Option<(IncomingCall, CallHandle)>,
    ) {
        let calls = self.calls.clone();
        calls.metrics.open(self.direction, 1.0);
        let shutdown = calls.scope.shutdown.clone();
        self.deliver(&mut d, &flow, first, None).await;
        if let Some((call, handle)) = incoming {
            let decision = calls.handler.incoming(call, handle);
            let outs = d.on_action(decision.into(), Instant::now());
            self.deliver(&mut d, &flow, outs, None).await;
        }
        while !d.is_done() {
            let deadline = d.deadline();
            let sleep = async move {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(input) = rx.recv() => {
                    let Ok(msg) = sip::parse(&input.raw) else { continue };
                    let now = Instant::now();
                    match msg.start {
                        StartLine::Response { .. } => {
                            let outs = d.on_response(&msg, now);
                            self.deliver(&mut d, &flow, outs, None).await;
                        }
                        StartLine::Request { method, .. } => {
                            // The peer's flow moves with it (NAT rebinding, a new connection).
                            if input.flow.peer().ip() == flow.peer().ip() {
                                flow = input.flow.clone();
                            }
                            let outs = d.on_request(&msg, &input.raw, input.flow.peer(), now);
                            let key = (method != "INVITE" && method != "ACK")
                                .then(|| uas::key(&msg, method, &input.flow))
                                .flatten();
                            self.deliver(&mut d, &input.flow, outs, key).await;
                        }
                    }
                }
                Some(action) = actions.recv() => {
                    let outs = d.on_action(action, Instant::now());
                    self.deliver(&mut d, &flow, outs, None).await;
                }
                () = sleep => {
                    let now = Instant::now();
                    let outs = d.on_timer(now);
                    if outs.is_empty() && d.deadline().is_some_and(|t| t <= now) {
                        // A deadline nothing took would spin: never expected, never busy.
                        tracing::warn!("sip dialog deadline not consumed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    self.deliver(&mut d, &flow, outs, None).await;
                }
                () = shutdown.cancelled() => {
                    let outs = d.shutdown(Instant::now());
                    self.deliver(&mut d, &flow, outs, None).await;
                    break;
                }
            }
        }
        {
            let mut t = lock(&calls.table);
            t.dialogs.remove(&self.key);
            if let Some(b) = &self.branch_key {
                t.branches.remove(b);
            }
        }
        calls.metrics.open(self.direction, -1.0);
        tracing::debug!(call_id = %d.call_id(), tag = %d.local_tag(), "sip dialog done");
    }

    /// Carries out what the dialog asked for; `reply_key` is the cache key of the UDP
    /// request just handled, for its reply.
    async fn deliver(
        &self,
        d: &mut Dialog,
        flow: &Flow,
        outs: Vec<Out>,
        reply_key: Option<String>,
    ) {
        let mut queue: VecDeque<Out> = outs.into();
        while let Some(o) = queue.pop_front() {
            match o {
                Out::Send(b) => {
                    flow.send(b).await;
                }
                Out::Reply(b) => {
                    if let Some(k) = &reply_key {
                        lock(&self.calls.cache).put(k.clone(), b.clone(), Instant::now());
                    }
                    flow.send(b).await;
                }
                Out::Event(e) => {
                    if let CallEvent::Ended(why) = &e {
                        self.calls.metrics.ended(self.direction, why.as_str());
                        tracing::debug!(reason = why.as_str(), "sip call ended");
                    }
                    self.calls.handler.event(self.id, e);
                }
                Out::Reoffer(offer) => {
                    let answer = self.calls.handler.reoffer(self.id, &offer);
                    queue.extend(d.reanswer(answer, Instant::now()));
                }
            }
        }
    }
}
