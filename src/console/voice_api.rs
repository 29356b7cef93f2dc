//! The voice part of the API: the voice calls going on (ringing, answered), an operator's
//! answer, controls and hang-up, calls out from a Call (`/api/voice/dial`), and the
//! recordings. The live feed (`GET /api/live`) carries the same conversations as they
//! change.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::api::{Session, act, audit};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::Role;
use crate::voice::dial::{DialFailure, DialRequest, DialTargets, Target};
use crate::voice::switchboard::{LiveConversation, Switchboard};

fn switchboard(state: &AppState) -> ApiResult<&Switchboard> {
    state.voice.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "voice calls are off ([voice] enabled = false)",
        )
    })
}

/// The voice calls going on now, oldest first: ringing (nobody has answered) or answered.
#[utoipa::path(get, path = "/api/voice", tag = "voice",
    responses((status = 200, body = Vec<LiveConversation>), (status = 401, body = ErrorBody),
        (status = 404, description = "Voice calls are off", body = ErrorBody)))]
pub async fn list_voice(
    State(state): State<AppState>,
    s: Session,
) -> ApiResult<Json<Vec<LiveConversation>>> {
    s.require(Role::Operator, &state)?;
    Ok(Json(switchboard(&state)?.live()))
}

/// Hang up a voice call: refuses it while it rings, ends it once answered. Its line goes on
/// the Call's timeline when the call has ended.
#[utoipa::path(post, path = "/api/voice/{id}/hangup", tag = "voice",
    params(("id" = u64, Path, description = "Conversation id")),
    responses((status = 204, description = "Hanging up"), (status = 401, body = ErrorBody),
        (status = 404, description = "No such voice call going on", body = ErrorBody)))]
pub async fn hang_up(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    s.require(Role::Operator, &state)?;
    let sb = switchboard(&state)?;
    let call = sb
        .live()
        .into_iter()
        .find(|c| c.id == id)
        .and_then(|c| c.call);
    if !sb.hang_up(id, &s.user) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such voice call going on",
        ));
    }
    audit(
        &state,
        &s,
        "call.voice_hangup",
        call,
        None,
        format!("conversation {id}"),
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/voice/{id}/answer` body: the browser's WebRTC offer.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The offer's SDP (`pc.createOffer()`, audio with PCMU or PCMA).
    pub sdp: String,
}

/// The SDP answer for the browser.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AnswerResponse {
    /// `pc.setRemoteDescription({type: "answer", sdp})`.
    pub sdp: String,
}

fn voice_error(e: crate::voice::switchboard::VoiceError) -> ApiError {
    use crate::voice::switchboard::VoiceError as V;
    let status = match &e {
        V::NotFound => StatusCode::NOT_FOUND,
        V::NotRinging | V::NoCall => StatusCode::CONFLICT,
        V::Browser(_) => StatusCode::BAD_REQUEST,
        V::Media(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

/// Answer a ringing voice call from the browser: the operator takes its Call (if nobody
/// has), vakt answers the browser's offer and the unit, and the conversation is recorded.
#[utoipa::path(post, path = "/api/voice/{id}/answer", tag = "voice",
    params(("id" = u64, Path, description = "Conversation id")), request_body = AnswerRequest,
    responses((status = 200, body = AnswerResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not ringing, or the Call is another operator's", body = ErrorBody),
        (status = 503, description = "No media for the call now", body = ErrorBody)))]
pub async fn answer(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<AnswerRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<AnswerResponse>> {
    s.require(Role::Operator, &state)?;
    let Json(req) = body?;
    let sb = switchboard(&state)?.clone();
    let conv = sb
        .live()
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such voice call going on"))?;
    let call = conv
        .call
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the voice call has no call yet"))?;
    // Answering the call is taking its Call.
    let taken = state.calls.triage.get(call);
    if let Some(c) = &taken {
        match (&c.owner, c.state) {
            (Some(owner), crate::model::CallState::Claimed) if owner != &s.user => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("the call is taken by {owner}"),
                ));
            }
            (_, crate::model::CallState::Queued) => {
                // The console's own take: the same refusals, audit entry and flush.
                act(&state, &s, call, "call.claim", "voice".into(), |t, now| {
                    t.claim(call, &s.user, now)
                })?;
                state
                    .calls
                    .flush()
                    .await
                    .map_err(|e| ApiError::internal("saving the change failed", e))?;
            }
            _ => {}
        }
    }
    let sdp = sb
        .answer(id, &s.user, &req.sdp)
        .await
        .map_err(voice_error)?;
    audit(
        &state,
        &s,
        "call.voice_answer",
        Some(call),
        None,
        format!("conversation {id}"),
    )?;
    Ok(Json(AnswerResponse { sdp }))
}

/// The Call `id` as `s` holds it: only the operator who has taken a Call calls out from it
/// (`409` otherwise, with who has it).
fn held_call(state: &AppState, s: &Session, id: u64) -> ApiResult<crate::model::Call> {
    let call = state
        .calls
        .triage
        .get(id)
        .ok_or_else(|| ApiError::not_found("call"))?;
    match (&call.owner, call.state) {
        (Some(owner), crate::model::CallState::Claimed) if owner == &s.user => Ok(call),
        (Some(owner), crate::model::CallState::Claimed) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("the call is taken by {owner}: only they may call out from it"),
        )),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "take the call first: only the operator who holds it may call out from it",
        )),
    }
}

/// The Call's subscriber from the register (its phone and contacts are dialled).
async fn subscriber_of(
    state: &AppState,
    call: &crate::model::Call,
) -> ApiResult<Option<crate::model::Subscriber>> {
    let Some(id) = call.subscriber.clone() else {
        return Ok(None);
    };
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.subscriber(&id))
        .await
        .map_err(|e| ApiError::internal("reading the subscriber failed", e))?
        .map_err(|e| ApiError::internal("reading the subscriber failed", e))
}

/// Whom the operator may call from a Call they hold: its unit (with its call-back window),
/// the person's phone and each contact's (only with a trunk). Audited, as it shows the
/// numbers.
#[utoipa::path(get, path = "/api/calls/{id}/dial", tag = "voice",
    params(("id" = u64, Path, description = "Call id")),
    responses((status = 200, body = DialTargets), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The Call is not held by this operator", body = ErrorBody)))]
pub async fn dial_targets(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<DialTargets>> {
    s.require(Role::Operator, &state)?;
    let sb = switchboard(&state)?.clone();
    let call = held_call(&state, &s, id)?;
    let subscriber = subscriber_of(&state, &call).await?;
    let targets = sb.targets(&call, subscriber.as_ref(), jiff::Timestamp::now());
    audit(
        &state,
        &s,
        "call.dial_targets",
        Some(id),
        call.subscriber.as_deref(),
        String::new(),
    )?;
    Ok(Json(targets))
}

/// `POST /api/voice/dial` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DialBody {
    /// The Call to call from (the operator holds it).
    pub call: u64,
    /// `"unit"` (call back the alarm unit), `"person"` (the person's own phone) or
    /// `{"contact": i}` (the subscriber's contact `i`, from 0).
    pub target: Target,
    /// The browser's WebRTC offer (`pc.createOffer()`, audio with PCMU or PCMA).
    pub offer: String,
}

/// A call out that rings.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DialResponse {
    /// The conversation (the live feed's `voice` events follow it: ringing, answered, ended).
    pub conversation: u64,
    /// The SDP answer for the browser: `pc.setRemoteDescription({type: "answer", sdp})`.
    pub sdp: String,
    /// Who is called, in words.
    pub party: String,
    /// A unit in its call-back window answers by itself until then; absent: it rings and
    /// someone at home must answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_answer_until: Option<jiff::Timestamp>,
}

fn dial_error(e: DialFailure) -> ApiError {
    let status = match &e {
        DialFailure::NoTrunk | DialFailure::NotDialable(_) | DialFailure::NoFlow => {
            StatusCode::CONFLICT
        }
        DialFailure::Browser(_) => StatusCode::BAD_REQUEST,
        DialFailure::Off | DialFailure::Full | DialFailure::Media(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        DialFailure::Connect(_) => StatusCode::BAD_GATEWAY,
        DialFailure::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// Call out from a Call the operator holds: the unit back (over its own SIP flow; it
/// answers by itself within its call-back window), or the person's or a relative's phone
/// through the trunk. The browser's offer is answered at once and hears ringing; the
/// conversation then goes like an answered call in (recorded, mute, hold, DTMF, hang up) and
/// ends as a line on the Call's timeline (busy, declined and not answered as such).
#[utoipa::path(post, path = "/api/voice/dial", tag = "voice", request_body = DialBody,
    responses((status = 200, body = DialResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not this operator's Call, no trunk for a number, nothing to dial, or the unit not reachable", body = ErrorBody),
        (status = 502, description = "The trunk could not be reached", body = ErrorBody),
        (status = 503, description = "No calls out now (too many calls, no media)", body = ErrorBody)))]
pub async fn dial(
    State(state): State<AppState>,
    s: Session,
    body: Result<Json<DialBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<DialResponse>> {
    s.require(Role::Operator, &state)?;
    let Json(req) = body?;
    let sb = switchboard(&state)?.clone();
    let call = held_call(&state, &s, req.call)?;
    let subscriber = subscriber_of(&state, &call).await?;
    let target = match req.target {
        Target::Unit => "unit".to_owned(),
        Target::Person => "person".to_owned(),
        Target::Contact(i) => format!("contact {i}"),
    };
    let dialled = sb
        .dial(DialRequest {
            call: &call,
            subscriber: subscriber.as_ref(),
            target: req.target,
            user: &s.user,
            offer: &req.offer,
            now: jiff::Timestamp::now(),
        })
        .await;
    // Tried or not, who called whom from which Call is in the audit log.
    let detail = match &dialled {
        Ok(d) => format!("{target}: conversation {}", d.conversation),
        Err(e) => format!("{target}: not started ({e})"),
    };
    audit(
        &state,
        &s,
        "call.voice_dial",
        Some(call.id),
        call.subscriber.as_deref(),
        detail,
    )?;
    let d = dialled.map_err(dial_error)?;
    Ok(Json(DialResponse {
        conversation: d.conversation,
        sdp: d.sdp,
        party: d.party,
        auto_answer_until: d.auto_answer_until,
    }))
}

/// `POST /api/voice/{id}/mute`, `/hold` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    /// On or off.
    pub on: bool,
}

/// Mute the operator (the person hears silence) or unmute.
#[utoipa::path(post, path = "/api/voice/{id}/mute", tag = "voice",
    params(("id" = u64, Path, description = "Conversation id")), request_body = Toggle,
    responses((status = 204, description = "Done"), (status = 404, body = ErrorBody),
        (status = 409, description = "Not answered", body = ErrorBody)))]
pub async fn mute(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<Toggle>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    toggle(&state, &s, body, |sb, on| sb.set_muted(id, on))
}

/// Hold (the person hears the hold tone, the operator nothing of the person) or resume.
#[utoipa::path(post, path = "/api/voice/{id}/hold", tag = "voice",
    params(("id" = u64, Path, description = "Conversation id")), request_body = Toggle,
    responses((status = 204, description = "Done"), (status = 404, body = ErrorBody),
        (status = 409, description = "Not answered", body = ErrorBody)))]
pub async fn hold(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<Toggle>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    toggle(&state, &s, body, |sb, on| sb.set_held(id, on))
}

/// Mute and hold: an operator's on/off on a conversation's relay.
fn toggle(
    state: &AppState,
    s: &Session,
    body: Result<Json<Toggle>, axum::extract::rejection::JsonRejection>,
    f: impl FnOnce(&Switchboard, bool) -> Result<(), crate::voice::switchboard::VoiceError>,
) -> ApiResult<StatusCode> {
    s.require(Role::Operator, state)?;
    let Json(t) = body?;
    f(switchboard(state)?, t.on).map_err(voice_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/voice/{id}/dtmf` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DtmfRequest {
    /// The SCAIP command's key: `0` clear down, `1` volume down, `3` volume up, `4` duplex,
    /// `7` simplex microphone, `8` simplex speaker, `9` output control.
    pub key: String,
}

/// Send a SCAIP DTMF command to the unit.
#[utoipa::path(post, path = "/api/voice/{id}/dtmf", tag = "voice",
    params(("id" = u64, Path, description = "Conversation id")), request_body = DtmfRequest,
    responses((status = 204, description = "Sent"), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Not answered", body = ErrorBody)))]
pub async fn dtmf(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<DtmfRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    s.require(Role::Operator, &state)?;
    let Json(req) = body?;
    let key = match req.key.as_str() {
        k @ ("0" | "1" | "3" | "4" | "7" | "8" | "9") => k.chars().next().unwrap_or('0'),
        other => {
            return Err(ApiError::bad_request(format!(
                "key {other:?}: one of 0, 1, 3, 4, 7, 8, 9"
            )));
        }
    };
    switchboard(&state)?.dtmf(id, key).map_err(voice_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/calls/{id}/recordings/{conversation}` query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordingQuery {
    /// `1`: as a download (an attachment) rather than to play in the page.
    pub download: Option<u8>,
}

/// A conversation's recording (WAV, 8 kHz, two channels: the person, the operator), for
/// supervisors only; every playback and download is in the audit log.
#[utoipa::path(get, path = "/api/calls/{id}/recordings/{conversation}", tag = "voice",
    params(("id" = u64, Path, description = "Call id"),
        ("conversation" = u64, Path, description = "Conversation id"), RecordingQuery),
    responses((status = 200, description = "audio/wav", content_type = "audio/wav"),
        (status = 403, description = "Not a supervisor", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn recording(
    State(state): State<AppState>,
    s: Session,
    Path((id, conversation)): Path<(u64, u64)>,
    q: Result<axum::extract::Query<RecordingQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    s.require(Role::Supervisor, &state)?;
    let axum::extract::Query(q) = q?;
    let download = q.download == Some(1);
    let dir = state
        .voice
        .as_ref()
        .map(crate::voice::switchboard::Switchboard::recordings_dir)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "voice calls are off"))?;
    let playback =
        tokio::task::spawn_blocking(move || crate::voice::record::open(&dir, id, conversation))
            .await
            .map_err(|e| ApiError::internal("opening the recording failed", e))?
            .map_err(|e| match e {
                crate::voice::record::RecordError::NotFound { .. }
                | crate::voice::record::RecordError::NotARecording => {
                    ApiError::new(StatusCode::NOT_FOUND, "no such recording")
                }
                other => ApiError::internal("opening the recording failed", other),
            })?;
    audit(
        &state,
        &s,
        if download {
            "recording.download"
        } else {
            "recording.play"
        },
        Some(id),
        None,
        format!("conversation {conversation}"),
    )?;
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::from_std(playback.file).take(playback.len);
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let disposition = if download {
        format!("attachment; filename=\"{}\"", playback.file_name)
    } else {
        "inline".to_owned()
    };
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "audio/wav".to_owned()),
            (axum::http::header::CONTENT_LENGTH, playback.len.to_string()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
