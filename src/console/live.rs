//! The live queue over a WebSocket (`GET /api/live`): a snapshot of the open Calls and the
//! day's figures on connect, then every change as it happens. A console that falls behind
//! the feed (more than [`crate::calls::LIVE_CAPACITY`] changes) gets a fresh snapshot instead
//! of a gap. The server sends; what the client sends is ignored (pings are answered).
//!
//! The console beats over it: every 30 s the page sends `{"type":"presence","idle_secs":N}`,
//! N being the seconds since its last key, mouse or touch input; with the feed's opening and
//! closing that is what the staffing floor counts ([`super::staffing`]). The staffing figures
//! come as `staffing` after the snapshot and at each change.
//!
//! The feed ends at once when its session does: at logout, when the user is disabled,
//! removed or given another role (the console signals each on `sessions_changed`, and the
//! feed checks its session again), and at the session's expiry.
//!
//! A municipality's or a care provider's staff get their own people's part of it ([`Mine`]):
//! the open Calls of the subscribers their scope holds, their closings, and the register's
//! changes. Not the centre's work: no figures, staffing, voice calls, dispatches or telecom
//! incidents, and their consoles do not count towards the staffing floor.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::api::{Session, session_by_hash, session_token};
use super::error::ErrorBody;
use super::state::AppState;
use crate::calls::{CallSummary, LiveEvent, Stats};
use crate::model::{Role, Scope};
use crate::voice::switchboard::{LiveConversation, VoiceEvent};

/// How often the figures are sent even when nothing changed.
const STATS_EVERY: Duration = Duration::from_secs(10);
/// How often the session behind a WebSocket is checked again besides the signals (a
/// backstop).
const SESSION_EVERY: Duration = Duration::from_secs(30);
/// A send that takes longer than this means the console is gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A message to the console.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Out<'a> {
    Snapshot {
        calls: &'a [CallSummary],
        #[serde(skip_serializing_if = "Option::is_none")]
        stats: Option<&'a Stats>,
        voice: &'a [LiveConversation],
    },
    Call {
        call: &'a CallSummary,
    },
    Closed {
        id: u64,
    },
    Stats {
        stats: &'a Stats,
    },
    Dispatch {
        dispatch: &'a crate::dispatch::desk::DispatchView,
        step: crate::model::DispatchStep,
    },
    Incident {
        incident: &'a crate::supervision::incidents::IncidentView,
    },
    Voice {
        conversation: &'a LiveConversation,
    },
    VoiceEnded {
        id: u64,
        call: Option<u64>,
    },
    Subscriber {
        id: Option<&'a str>,
    },
    Staffing {
        staffing: &'a super::staffing::Staffing,
    },
    /// To a tenant's feed, which has no figures to send, every 10 s: the feed is up.
    Alive,
}

/// A message from the console (anything else is ignored).
#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum In {
    /// The heartbeat: seconds since the page's last key, mouse or touch input.
    Presence { idle_secs: u64 },
}

/// The console's presence while its feed is open: opened at the start, closed at the drop.
struct Here {
    presence: std::sync::Arc<super::staffing::Presence>,
    user: String,
}

impl Drop for Here {
    fn drop(&mut self) {
        self.presence.closed(&self.user, jiff::Timestamp::now());
    }
}

/// The live queue (WebSocket). Messages are JSON: `snapshot` (calls, stats, voice calls going
/// on) on connect and after falling behind, `call` (a Call opened or changed), `closed` (id),
/// `stats` (every 10 s and after changes), `voice` (a voice call rings, joins its Call or is
/// answered), `voice_ended` (id, call), `subscriber` (id: a subscriber was edited, or null
/// after an import; cards shown of it load again), `staffing` (the staffing figures, after the
/// snapshot and at each change). The console sends `presence` (idle_secs) every 30 s.
///
/// A municipality's or care provider's staff get `snapshot` (their people's open Calls, no
/// figures), `call`, `closed` and `subscriber` of their own people, and `alive` every 10 s.
#[utoipa::path(get, path = "/api/live", tag = "calls",
    responses((status = 101, description = "WebSocket: the live queue"),
        (status = 400, description = "Not a WebSocket request", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "From another site's page", body = ErrorBody)))]
pub async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, super::error::ApiError> {
    // The session first: without one, the answer is 401 whatever the request.
    let Some(token) = session_token(&headers, &state)? else {
        state.metrics.rejected("no_session");
        return Err(super::error::ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "log in first",
        ));
    };
    let hash = crate::store::token_hash(&token);
    let s = session_by_hash(&hash, &state)?;
    s.require_or_tenant(Role::Operator, &state)?;
    let mine = if s.role.is_tenant() {
        Some(Mine::new(s.scope(&state)?))
    } else {
        None
    };
    // A page of another site must not open the feed with the operator's cookie (the
    // browser sends the cookie and Origin with a WebSocket's opening request).
    if let Err(why) = super::guard::from_console(&headers, state.public_origin.as_deref()) {
        state.metrics.rejected("cross_origin");
        return Err(super::error::ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!("the live feed is only for the console's own pages ({why})"),
        ));
    }
    let ws = ws.map_err(|e| super::error::ApiError::new(e.status(), e.body_text()))?;
    Ok(ws
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| serve(socket, state, s, hash, mine)))
}

/// Whether the feed's session is still valid, with the role and tenant it opened with (a
/// tenant's user moved to another tenant or role starts a new feed).
fn still_valid(hash: &[u8; 32], state: &AppState, opened: &Session) -> bool {
    session_by_hash(hash, state).is_ok_and(|s| {
        s.role == opened.role
            && s.tenant == opened.tenant
            && (s.role >= Role::Operator || s.role.is_tenant())
    })
}

/// Most subscribers a tenant's feed remembers the scope of (then it forgets them all).
const MAX_KNOWN: usize = 10_000;

/// A tenant's part of the feed: whose people it holds, what it has sent.
struct Mine {
    scope: Scope,
    /// Whether the scope holds a subscriber, as read from the register (forgotten at every
    /// change of the register).
    known: std::collections::HashMap<String, bool>,
    /// The open Calls sent, so that a closing (or a Call leaving the scope) is sent for those
    /// only.
    sent: std::collections::HashSet<u64>,
}

impl Mine {
    fn new(scope: Scope) -> Mine {
        Mine {
            scope,
            known: std::collections::HashMap::new(),
            sent: std::collections::HashSet::new(),
        }
    }

    /// Whether the scope holds the Call's person (a Call of nobody known is the centre's).
    fn sees(&mut self, c: &CallSummary, state: &AppState) -> bool {
        let Some(id) = c.subscriber.as_deref() else {
            return false;
        };
        if let Some(&v) = self.known.get(id) {
            return v;
        }
        let v = super::api::sees_subscriber(state, &self.scope, Some(id)).unwrap_or(false);
        if self.known.len() >= MAX_KNOWN {
            self.known.clear();
        }
        self.known.insert(id.to_owned(), v);
        v
    }

    /// The snapshot's Calls this feed may see (and remembers them as sent).
    fn filter(&mut self, calls: Vec<CallSummary>, state: &AppState) -> Vec<CallSummary> {
        let calls: Vec<CallSummary> = calls.into_iter().filter(|c| self.sees(c, state)).collect();
        self.sent = calls.iter().map(|c| c.id).collect();
        calls
    }
}

async fn send(socket: &mut WebSocket, msg: &Out<'_>) -> bool {
    let Ok(text) = serde_json::to_string(msg) else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            SEND_TIMEOUT,
            socket.send(Message::Text(Utf8Bytes::from(text)))
        )
        .await,
        Ok(Ok(()))
    )
}

async fn snapshot(socket: &mut WebSocket, state: &AppState, mine: Option<&mut Mine>) -> bool {
    let calls = state.open_summaries();
    if let Some(mine) = mine {
        let calls = mine.filter(calls, state);
        return send(
            socket,
            &Out::Snapshot {
                calls: &calls,
                stats: None,
                voice: &[],
            },
        )
        .await;
    }
    let stats = state.stats.borrow().clone();
    let voice = state.voice.as_ref().map(|v| v.live()).unwrap_or_default();
    send(
        socket,
        &Out::Snapshot {
            calls: &calls,
            stats: Some(&stats),
            voice: &voice,
        },
    )
    .await
}

/// A change of a Call to a tenant's feed: the Call if it is theirs, its closing if it was
/// and no longer is, else nothing.
async fn call_to(
    socket: &mut WebSocket,
    state: &AppState,
    mine: &mut Mine,
    c: &CallSummary,
) -> bool {
    if mine.sees(c, state) {
        mine.sent.insert(c.id);
        send(socket, &Out::Call { call: c }).await
    } else if mine.sent.remove(&c.id) {
        send(socket, &Out::Closed { id: c.id }).await
    } else {
        true
    }
}

struct Open(crate::telemetry::ConsoleMetrics);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.ws_sessions.decrement(1.0);
    }
}

async fn serve(
    mut socket: WebSocket,
    state: AppState,
    s: Session,
    hash: [u8; 32],
    mine: Option<Mine>,
) {
    state.metrics.ws_sessions.increment(1.0);
    let _open = Open(state.metrics.clone());
    if let Some(mine) = mine {
        serve_tenant(socket, state, s, hash, mine).await;
        return;
    }
    state.presence.opened(&s.user, jiff::Timestamp::now());
    let _here = Here {
        presence: state.presence.clone(),
        user: s.user.clone(),
    };
    let mut staffing = state.staffing.subscribe();
    tracing::debug!(user = %s.user, "live feed opened");
    // Subscribe before the snapshot, so nothing between the two is missed (a change seen
    // twice is harmless: the console keeps the newest).
    let mut feed = state.calls.live.subscribe();
    let mut voice = state.voice.as_ref().map(|v| v.subscribe());
    let mut stats = state.stats.clone();
    stats.mark_unchanged();
    let mut sessions = state.sessions_changed.subscribe();
    // Past expiry (a negative duration): at once.
    let until_expiry = Duration::try_from(s.expires_at.duration_since(jiff::Timestamp::now()))
        .unwrap_or(Duration::ZERO);
    let expiry = tokio::time::sleep(until_expiry);
    tokio::pin!(expiry);
    // A change between the upgrade's check and now is not missed.
    if !still_valid(&hash, &state, &s) {
        return;
    }
    if !snapshot(&mut socket, &state, None).await {
        return;
    }
    let st = staffing.borrow_and_update().clone();
    if !send(&mut socket, &Out::Staffing { staffing: &st }).await {
        return;
    }
    let mut stats_tick = tokio::time::interval(STATS_EVERY);
    stats_tick.tick().await;
    let mut session_tick = tokio::time::interval(SESSION_EVERY);
    session_tick.tick().await;
    loop {
        let ok = tokio::select! {
            ev = feed.recv() => match ev {
                Ok(LiveEvent::Call(c)) => send(&mut socket, &Out::Call { call: &c }).await,
                Ok(LiveEvent::Closed(id)) => send(&mut socket, &Out::Closed { id }).await,
                Ok(LiveEvent::Dispatch(d, step)) => {
                    send(&mut socket, &Out::Dispatch { dispatch: &d, step }).await
                }
                Ok(LiveEvent::Incident(i)) => {
                    send(&mut socket, &Out::Incident { incident: &i }).await
                }
                Ok(LiveEvent::Subscriber(id)) => {
                    send(&mut socket, &Out::Subscriber { id: id.as_deref() }).await
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(user = %s.user, missed = n, "live feed behind; sending a snapshot");
                    snapshot(&mut socket, &state, None).await
                }
                Err(RecvError::Closed) => false,
            },
            ev = async {
                match voice.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match ev {
                Ok(VoiceEvent::Changed(c)) => {
                    send(&mut socket, &Out::Voice { conversation: &c }).await
                }
                Ok(VoiceEvent::Ended { id, call }) => {
                    send(&mut socket, &Out::VoiceEnded { id, call }).await
                }
                Err(RecvError::Lagged(_)) => snapshot(&mut socket, &state, None).await,
                Err(RecvError::Closed) => {
                    voice = None;
                    true
                }
            },
            r = stats.changed() => {
                if r.is_err() {
                    false
                } else {
                    let st = stats.borrow_and_update().clone();
                    send(&mut socket, &Out::Stats { stats: &st }).await
                }
            }
            _ = stats_tick.tick() => {
                let st = state.stats.borrow().clone();
                send(&mut socket, &Out::Stats { stats: &st }).await
            }
            r = staffing.changed() => {
                if r.is_err() {
                    false
                } else {
                    let st = staffing.borrow_and_update().clone();
                    send(&mut socket, &Out::Staffing { staffing: &st }).await
                }
            }
            r = sessions.changed() => r.is_ok() && still_valid(&hash, &state, &s),
            () = &mut expiry => false,
            _ = session_tick.tick() => still_valid(&hash, &state, &s),
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => false,
                Some(Ok(Message::Text(t))) => {
                    if let Ok(In::Presence { idle_secs }) = serde_json::from_str::<In>(&t) {
                        state.presence.beat(&s.user, jiff::Timestamp::now(), idle_secs);
                    }
                    true
                }
                Some(Ok(_)) => true,
            },
            () = state.shutdown.cancelled() => false,
        };
        if !ok {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(None))).await;
    tracing::debug!(user = %s.user, "live feed closed");
}

/// A tenant's feed: their people's open Calls and the register's changes; no presence.
async fn serve_tenant(
    mut socket: WebSocket,
    state: AppState,
    s: Session,
    hash: [u8; 32],
    mut mine: Mine,
) {
    tracing::debug!(user = %s.user, "a tenant's live feed opened");
    let mut feed = state.calls.live.subscribe();
    let mut sessions = state.sessions_changed.subscribe();
    let until_expiry = Duration::try_from(s.expires_at.duration_since(jiff::Timestamp::now()))
        .unwrap_or(Duration::ZERO);
    let expiry = tokio::time::sleep(until_expiry);
    tokio::pin!(expiry);
    if !still_valid(&hash, &state, &s) || !snapshot(&mut socket, &state, Some(&mut mine)).await {
        return;
    }
    let mut session_tick = tokio::time::interval(SESSION_EVERY);
    session_tick.tick().await;
    let mut alive_tick = tokio::time::interval(STATS_EVERY);
    alive_tick.tick().await;
    loop {
        let ok = tokio::select! {
            _ = alive_tick.tick() => send(&mut socket, &Out::Alive).await,
            ev = feed.recv() => match ev {
                Ok(LiveEvent::Call(c)) => call_to(&mut socket, &state, &mut mine, &c).await,
                Ok(LiveEvent::Closed(id)) => {
                    !mine.sent.remove(&id) || send(&mut socket, &Out::Closed { id }).await
                }
                Ok(LiveEvent::Subscriber(id)) => {
                    // A card changed, perhaps its municipality or provider: the scope is read
                    // again, and the Calls sent anew. Its card is reloaded where it was theirs
                    // before or is now (a card no longer theirs then answers 404).
                    let was = id.as_deref().is_some_and(|i| mine.known.get(i) == Some(&true));
                    mine.known.clear();
                    let theirs = match id.as_deref() {
                        None => true,
                        Some(i) => was
                            || super::api::sees_subscriber(&state, &mine.scope, Some(i))
                                .unwrap_or(false),
                    };
                    snapshot(&mut socket, &state, Some(&mut mine)).await
                        && (!theirs || send(&mut socket, &Out::Subscriber { id: id.as_deref() }).await)
                }
                Ok(LiveEvent::Dispatch(..) | LiveEvent::Incident(_)) => true,
                Err(RecvError::Lagged(_)) => snapshot(&mut socket, &state, Some(&mut mine)).await,
                Err(RecvError::Closed) => false,
            },
            r = sessions.changed() => r.is_ok() && still_valid(&hash, &state, &s),
            () = &mut expiry => false,
            _ = session_tick.tick() => still_valid(&hash, &state, &s),
            msg = socket.recv() => !matches!(msg, Some(Ok(Message::Close(_)) | Err(_)) | None),
            () = state.shutdown.cancelled() => false,
        };
        if !ok {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(None))).await;
    tracing::debug!(user = %s.user, "a tenant's live feed closed");
}
