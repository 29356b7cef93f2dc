//! The voice part of the API: the voice calls going on (ringing, answered) and an
//! operator's hang-up. The live feed (`GET /api/live`) carries the same conversations as
//! they change.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::api::{Session, audit};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::Role;
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
