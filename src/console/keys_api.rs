//! Keys in custody at the console: who holds how many of a subscriber's keys now, the
//! receipts that moved them, and the supervisors' receipts (written pending, signed by name
//! as on the paper forms of seed 001, or voided with a reason). See [`crate::model::keys`].
//!
//! Signing is done under one lock of the node (`SIGNING`): custody is read from the
//! signed receipts, the receipt is checked against it and saved, and only then may another
//! signature be checked, so two receipts signed at once that together hand more than the
//! giver holds cannot both move keys (the second is refused 409 `keys.short`). Only the
//! leader serves the API, so one node's lock is enough. Every change and the audit entry
//! are durable together before the answer; then the consoles showing the subscriber's card
//! are told (live `subscriber`) and load it again.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::{Session, audit, audit_entry};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::Role;
use crate::model::keys::{
    Custody, HandoverReason, Holder, Holding, Receipt, ReceiptError, ReceiptState, check_receipt,
};
use crate::model::order::{KeyCount, KeyKind};

/// One signature at a time on this node (see the module doc).
static SIGNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A receipt as the console shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptView {
    /// The receipt.
    #[serde(flatten)]
    pub receipt: Receipt,
    /// Written and neither signed nor voided: custody has not changed.
    pub pending: bool,
}

impl From<Receipt> for ReceiptView {
    fn from(receipt: Receipt) -> ReceiptView {
        ReceiptView {
            pending: receipt.state == ReceiptState::Pending,
            receipt,
        }
    }
}

/// A provider a receipt names, with its name in the directory.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderName {
    /// The directory's id.
    pub id: String,
    /// Its name (the id when the directory no longer has it).
    pub name: String,
}

/// `GET /api/subscribers/{id}/keys`: who holds what, and the receipts.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeysView {
    /// The subscriber.
    pub subscriber: String,
    /// Who holds how many of what now (from the signed receipts; never the subscriber).
    pub holdings: Vec<Holding>,
    /// Every receipt of the subscriber, newest first.
    pub receipts: Vec<ReceiptView>,
    /// The providers the holdings and receipts name, with their names.
    pub providers: Vec<ProviderName>,
}

/// A holder in words for a refusal: a provider by its directory name.
fn holder_words(state: &AppState, h: &Holder) -> String {
    match h {
        Holder::Provider { id } => state
            .desk
            .dispatcher()
            .directory()
            .provider(id)
            .map_or_else(|| id.clone(), |p| p.name.clone()),
        Holder::Installer { name } => name.clone(),
        other => other.to_string(),
    }
}

/// The wire name of a kind of key (`door`, `access_tag`).
fn kind_name(kind: KeyKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The receipt's items in words, for the audit log.
fn items_words(items: &[KeyCount]) -> String {
    items
        .iter()
        .map(|k| format!("{} {}", k.count, kind_name(k.kind)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn receipt_error(state: &AppState, r: &Receipt, e: ReceiptError) -> ApiError {
    match e {
        ReceiptError::NotPending(id) => ApiError::new(
            StatusCode::CONFLICT,
            format!("receipt {id} is signed or voided already"),
        )
        .coded("keys.not_pending")
        .param("id", id),
        ReceiptError::Short {
            kind, held, handed, ..
        } => {
            let holder = holder_words(state, &r.from);
            ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{holder} holds {held} of {}, not {handed}: sign the receipt that gave them first",
                    kind_name(kind)
                ),
            )
            .coded("keys.short")
            .param("holder", holder)
            .param("key_kind", kind_name(kind))
            .param("held", held)
            .param("handed", handed)
        }
        e => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("the key receipt task failed", e))?
}

fn subscriber_known(state: &AppState, id: &str) -> ApiResult<()> {
    state
        .store
        .subscriber(id)
        .map_err(|e| ApiError::internal("reading the subscriber failed", e))?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("subscriber"))
}

/// Who holds how many of the subscriber's keys now, and every receipt (newest first;
/// pending ones marked). Audited `subscriber.keys_view`.
#[utoipa::path(get, path = "/api/subscribers/{id}/keys", tag = "subscribers",
    params(("id" = String, Path, description = "Subscriber id")),
    responses((status = 200, body = KeysView), (status = 404, body = ErrorBody)))]
pub async fn get_keys(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<KeysView>> {
    s.require(Role::Operator, &state)?;
    subscriber_known(&state, &id)?;
    let store = state.store.clone();
    let sub = id.clone();
    let receipts = blocking(move || {
        store
            .receipts_of(&sub)
            .map_err(|e| ApiError::internal("reading the receipts failed", e))
    })
    .await?;
    let holdings = Custody::from_receipts(&receipts).holdings();
    let mut ids: Vec<String> = holdings
        .iter()
        .map(|h| &h.holder)
        .chain(receipts.iter().flat_map(|r| [&r.from, &r.to]))
        .filter_map(|h| match h {
            Holder::Provider { id } => Some(id.clone()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    let providers = {
        let dir = state.desk.dispatcher().directory();
        ids.into_iter()
            .map(|id| ProviderName {
                name: dir
                    .provider(&id)
                    .map_or_else(|| id.clone(), |p| p.name.clone()),
                id,
            })
            .collect()
    };
    audit(
        &state,
        &s,
        "subscriber.keys_view",
        None,
        Some(&id),
        format!("{} receipts", receipts.len()),
    )?;
    let mut receipts: Vec<ReceiptView> = receipts.into_iter().map(ReceiptView::from).collect();
    receipts.sort_by_key(|r| std::cmp::Reverse(r.receipt.id));
    Ok(Json(KeysView {
        subscriber: id,
        holdings,
        receipts,
        providers,
    }))
}

/// `POST /api/subscribers/{id}/receipts` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReceipt {
    /// Who hands the keys.
    pub from: Holder,
    /// Who receives them.
    pub to: Holder,
    /// How many of what (1 to 10 kinds, each once, 1 to 20 of each).
    pub items: Vec<KeyCount>,
    /// Why.
    pub reason: HandoverReason,
    /// The subscriber's order it belongs to, if any.
    #[serde(default)]
    pub order: Option<u64>,
}

/// A holder as written: an installer's name trimmed, a provider by its directory id (given
/// as id or name); a provider the directory does not have is refused.
fn holder_of(state: &AppState, h: Holder) -> ApiResult<Holder> {
    match h {
        Holder::Installer { name } => Ok(Holder::Installer {
            name: name.trim().to_owned(),
        }),
        Holder::Provider { id } => state
            .desk
            .dispatcher()
            .directory()
            .provider_for(&id)
            .map(|p| Holder::Provider { id: p.id.clone() })
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "provider {:?} is not a care provider of the directory",
                        id.chars().take(100).collect::<String>()
                    ),
                )
            }),
        h => Ok(h),
    }
}

/// Write a receipt (supervisors): pending until signed; custody does not change yet.
/// Audited `keys.receipt_written`.
#[utoipa::path(post, path = "/api/subscribers/{id}/receipts", tag = "subscribers",
    params(("id" = String, Path, description = "Subscriber id")), request_body = NewReceipt,
    responses((status = 201, body = ReceiptView), (status = 403, body = ErrorBody),
        (status = 404, description = "No such subscriber", body = ErrorBody),
        (status = 422, description = "The items or holders are wrong, a provider is not in the directory, or the order is not the subscriber's", body = ErrorBody)))]
pub async fn write_receipt(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    body: Result<Json<NewReceipt>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ReceiptView>)> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    subscriber_known(&state, &id)?;
    let from = holder_of(&state, req.from)?;
    let to = holder_of(&state, req.to)?;
    check_receipt(&from, &to, &req.items)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    if let Some(order) = req.order {
        let theirs = state
            .store
            .order(order)
            .map_err(|e| ApiError::internal("reading the order failed", e))?
            .is_some_and(|o| o.subscriber == id);
        if !theirs {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("order {order} is not an order of subscriber {id}"),
            ));
        }
    }
    let now = jiff::Timestamp::now();
    let user = s.user.clone();
    let (items, reason) = (req.items, req.reason);
    let subscriber = id.clone();
    let r = super::api::with_audit(
        &state,
        &s,
        "keys.receipt_written",
        Some(id),
        move |st| {
            st.add_receipt(|rid| Receipt {
                id: rid,
                subscriber,
                from,
                to,
                items,
                reason,
                order: req.order,
                written_at: now,
                written_by: user,
                state: ReceiptState::Pending,
            })
        },
        |r| {
            format!(
                "receipt {}: {} from {} to {}",
                r.id,
                items_words(&r.items),
                r.from,
                r.to
            )
        },
    )
    .await?;
    // The consoles showing the card load it again (the Keys panel with it).
    state.calls.subscriber_changed(Some(&r.subscriber));
    Ok((StatusCode::CREATED, Json(r.into())))
}

/// `POST /api/receipts/{id}/sign` body: the names as signed on the paper form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// Who handed the keys over (1 to 100 characters).
    pub handed_by: String,
    /// Who received them (1 to 100 characters).
    pub received_by: String,
}

fn not_found_receipt() -> ApiError {
    ApiError::not_found("receipt")
}

/// Record the signatures of a pending receipt (supervisors): the keys move. Audited
/// `keys.receipt_signed`.
#[utoipa::path(post, path = "/api/receipts/{id}/sign", tag = "subscribers",
    params(("id" = u64, Path, description = "Receipt id")), request_body = SignRequest,
    responses((status = 200, body = ReceiptView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Signed or voided already (`keys.not_pending`), or the giver holds fewer than the receipt hands (`keys.short`, with the holder, kind and counts)", body = ErrorBody),
        (status = 422, description = "A name missing or too long", body = ErrorBody)))]
pub async fn sign_receipt(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<SignRequest>, JsonRejection>,
) -> ApiResult<Json<ReceiptView>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let st = state.clone();
    let entry = audit_entry(&s, "keys.receipt_signed", None, None, String::new());
    let user = s.user.clone();
    let r = blocking(move || {
        let _one = SIGNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let store = &st.store;
        let mut r = store
            .receipt(id)
            .map_err(|e| ApiError::internal("reading the receipt failed", e))?
            .ok_or_else(not_found_receipt)?;
        let all = store
            .receipts_of(&r.subscriber)
            .map_err(|e| ApiError::internal("reading the receipts failed", e))?;
        let mut custody = Custody::from_receipts(&all);
        let before = r.clone();
        let now = jiff::Timestamp::now();
        r.sign(
            &mut custody,
            now,
            &req.handed_by,
            &req.received_by,
            &user,
        )
        .map_err(|e| receipt_error(&st, &before, e))?;
        let mut entry = entry;
        entry.subscriber = Some(r.subscriber.clone());
        entry.detail = format!(
            "receipt {}: {} from {} to {}",
            r.id,
            items_words(&r.items),
            r.from,
            r.to
        );
        store
            .together(|t| {
                t.save_receipt(&r)?;
                t.audit(entry)?;
                Ok(())
            })
            .map_err(|e| ApiError::internal("saving the receipt failed", e))?;
        // The care system is told of the signed handover here
        // (care::events::key_handover_signed), and an ordered alarm that waited only for
        // these keys becomes active. A failure is logged: the signature stands.
        if let Err(e) = st.care.receipt_signed(&r, &user, now) {
            tracing::error!(receipt = r.id, error = %e, "telling the care system of the signed receipt failed");
        }
        Ok(r)
    })
    .await?;
    state.calls.subscriber_changed(Some(&r.subscriber));
    Ok(Json(r.into()))
}

/// `POST /api/receipts/{id}/void` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidRequest {
    /// Why (1 to 500 characters).
    pub reason: String,
}

/// Void a pending receipt with a reason (supervisors); custody does not change. Audited
/// `keys.receipt_voided`.
#[utoipa::path(post, path = "/api/receipts/{id}/void", tag = "subscribers",
    params(("id" = u64, Path, description = "Receipt id")), request_body = VoidRequest,
    responses((status = 200, body = ReceiptView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Signed or voided already", body = ErrorBody),
        (status = 422, description = "No reason, or one too long", body = ErrorBody)))]
pub async fn void_receipt(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<u64>,
    body: Result<Json<VoidRequest>, JsonRejection>,
) -> ApiResult<Json<ReceiptView>> {
    s.require(Role::Supervisor, &state)?;
    let Json(req) = body?;
    let st = state.clone();
    let entry = audit_entry(&s, "keys.receipt_voided", None, None, String::new());
    let user = s.user.clone();
    let r = blocking(move || {
        // Under the signing lock: a void and a signature of one receipt cannot both stand.
        let _one = SIGNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let store = &st.store;
        let mut r = store
            .receipt(id)
            .map_err(|e| ApiError::internal("reading the receipt failed", e))?
            .ok_or_else(not_found_receipt)?;
        let before = r.clone();
        r.void(jiff::Timestamp::now(), &user, &req.reason)
            .map_err(|e| receipt_error(&st, &before, e))?;
        let mut entry = entry;
        entry.subscriber = Some(r.subscriber.clone());
        entry.detail = format!("receipt {}: {}", r.id, req.reason.trim());
        store
            .together(|t| {
                t.save_receipt(&r)?;
                t.audit(entry)?;
                Ok(())
            })
            .map_err(|e| ApiError::internal("saving the receipt failed", e))?;
        Ok(r)
    })
    .await?;
    state.calls.subscriber_changed(Some(&r.subscriber));
    Ok(Json(r.into()))
}
