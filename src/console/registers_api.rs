//! The registers in the console: the subscriber and device lists with their search
//! (`GET /api/subscribers?q=`, `GET /api/devices?q=`; the search itself is
//! [`crate::registers::search`]), the choices an edit of a subscriber has
//! (`GET /api/registers/choices`). The edit itself, checked against the directory, is
//! `PUT /api/subscribers/{id}` in [`super::api`].
//!
//! - **Who.** Operators search both lists (they find the person a relative phones about) and
//!   open cards; supervisors edit (`PUT /api/subscribers/{id}`, in [`super::api`]).
//! - **Personal numbers.** A list shows every personal number with its last four digits as
//!   `*`, to every role: a list is read over shoulders and on wall screens. The card, whose
//!   every opening is audited, shows it whole.
//! - **Audit.** Every list search is audited (`subscriber.search`, `device.search`) with the
//!   number found, and with the query only when it cannot be part of a personal number
//!   (fewer than four digits: not a birth date, not the last four).
//! - **Provider and area.** An edit's `care_provider` and `area` must be in the directory
//!   ([`crate::registers::directory::subscriber_problems`]): refused 422 with one message per
//!   field naming the choices. While the directory is empty, free text is accepted.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{Session, audit};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::Role;
use crate::registers::directory::{area_choices, provider_choices};
use crate::registers::search::{self, Query as SearchQuery};

/// Query of `GET /api/subscribers` and `GET /api/devices`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// What to look for (at most 100 characters; see the module doc of the search); all when
    /// absent or empty.
    pub q: Option<String>,
    /// The first line to return, 0-based (default 0).
    pub offset: Option<usize>,
    /// Lines per page, 1 to 200 (default 50).
    pub limit: Option<usize>,
}

/// A line of the subscriber list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberLine {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Personal number, its last four digits as `*` (the card shows it whole).
    pub personal_number: String,
    /// Street address.
    pub address: String,
    /// Postcode.
    pub postcode: String,
    /// City.
    pub city: String,
    /// Area.
    pub area: String,
    /// Phone.
    pub phone: String,
    /// Care provider.
    pub care_provider: String,
    /// The accounts of the subscriber's devices.
    pub accounts: Vec<String>,
}

/// A page of the subscriber list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberPage {
    /// Subscribers matching in all.
    pub total: usize,
    /// The first line's place among them (0-based).
    pub offset: usize,
    /// Most lines a page holds.
    pub limit: usize,
    /// This page, by name.
    pub subscribers: Vec<SubscriberLine>,
}

/// A line of the device list (never a key or a SIP password).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceLine {
    /// DC-09 account.
    pub account: String,
    /// Account prefix (`L`), if set.
    pub line: Option<String>,
    /// Receiver number, if set.
    pub receiver: Option<String>,
    /// Device type.
    pub device_type: Option<String>,
    /// The subscriber's id.
    pub subscriber: Option<String>,
    /// The subscriber's name.
    pub subscriber_name: Option<String>,
    /// The unit's own phone number.
    pub phone: Option<String>,
    /// Area.
    pub area: Option<String>,
    /// Telecom operator.
    pub telecom_operator: Option<String>,
    /// Whether the device encrypts.
    pub encrypted: bool,
}

/// A page of the device list.
#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePage {
    /// Devices matching in all.
    pub total: usize,
    /// The first line's place among them (0-based).
    pub offset: usize,
    /// Most lines a page holds.
    pub limit: usize,
    /// This page, by account.
    pub devices: Vec<DeviceLine>,
}

/// One choice of an edit.
#[derive(Debug, Serialize, ToSchema)]
pub struct Choice {
    /// Id in the directory.
    pub id: String,
    /// Name (what a subscriber's field is set to).
    pub name: String,
}

/// What a subscriber's `care_provider` and `area` may be.
#[derive(Debug, Serialize, ToSchema)]
pub struct Choices {
    /// The directory's care providers, by name.
    pub care_providers: Vec<Choice>,
    /// The areas patrols serve, by name.
    pub areas: Vec<Choice>,
}

/// The request's query and page, checked.
fn read_query(q: ListQuery) -> ApiResult<(String, SearchQuery, usize, usize)> {
    let text = q.q.unwrap_or_default();
    let limit = search::paging(&text, q.limit).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let query = SearchQuery::parse(&text);
    Ok((text, query, q.offset.unwrap_or(0), limit))
}

/// The audit entry's words for a search: the query only when it cannot be a personal number.
fn search_detail(text: &str, q: &SearchQuery, total: usize) -> String {
    if q.is_empty() {
        format!("all: {total} found")
    } else if q.could_be_personal_number() {
        format!("{total} found (the query is not recorded: it could be a personal number)")
    } else {
        format!("{:?}: {total} found", text.trim())
    }
}

/// Search the subscriber register: by name, personal number (any form, never by its last four
/// alone), address, account of a device, phone; case and accents do not matter. A page, by
/// name; personal numbers masked. Audited (`subscriber.search`).
#[utoipa::path(get, path = "/api/subscribers", tag = "subscribers", params(ListQuery),
    responses((status = 200, body = SubscriberPage),
        (status = 400, description = "A limit outside 1..=200, or a query over 100 characters", body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_subscribers(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<SubscriberPage>> {
    s.require_or_tenant(Role::Operator, &state)?;
    let scope = s.scope(&state)?;
    let home = state.care.municipality().to_owned();
    let Query(q) = q?;
    let (text, query, offset, limit) = read_query(q)?;
    let store = state.store.clone();
    let registry = state.devices.current();
    let page = tokio::task::spawn_blocking(move || {
        let mut subs = store.subscribers()?;
        // A tenant's staff search their own people only.
        subs.retain(|x| scope.sees(x, &home));
        let p = search::subscribers(&subs, registry.iter(), &query, offset, limit);
        let lines = p
            .items
            .iter()
            .map(|(x, devs)| SubscriberLine {
                id: x.id.clone(),
                name: x.name.clone(),
                personal_number: search::mask_personal_number(&x.personal_number),
                address: x.address.clone(),
                postcode: x.postcode.clone(),
                city: x.city.clone(),
                area: x.area.clone(),
                phone: x.phone.clone(),
                care_provider: x.care_provider.clone(),
                accounts: devs.iter().map(|d| d.account.clone()).collect(),
            })
            .collect();
        Ok::<_, crate::store::StoreError>((
            SubscriberPage {
                total: p.total,
                offset: p.offset,
                limit: p.limit,
                subscribers: lines,
            },
            query,
        ))
    })
    .await
    .map_err(|e| ApiError::internal("searching subscribers failed", e))?;
    let (page, query) = page?;
    audit(
        &state,
        &s,
        "subscriber.search",
        None,
        None,
        search_detail(&text, &query, page.total),
    )?;
    Ok(Json(page))
}

/// Search the device registry: by account, subscriber (id or name), type, the unit's phone;
/// case and accents do not matter. A page, by account. Audited (`device.search`).
#[utoipa::path(get, path = "/api/devices", tag = "devices", params(ListQuery),
    responses((status = 200, body = DevicePage),
        (status = 400, description = "A limit outside 1..=200, or a query over 100 characters", body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_devices(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<DevicePage>> {
    s.require_or_tenant(Role::Operator, &state)?;
    let scope = s.scope(&state)?;
    let home = state.care.municipality().to_owned();
    let Query(q) = q?;
    let (text, query, offset, limit) = read_query(q)?;
    let store = state.store.clone();
    let registry = state.devices.current();
    let page = tokio::task::spawn_blocking(move || {
        let mut subs = store.subscribers()?;
        // A tenant's staff search their own people only.
        subs.retain(|x| scope.sees(x, &home));
        let names: std::collections::HashMap<&str, &str> = subs
            .iter()
            .map(|x| (x.id.as_str(), x.name.as_str()))
            .collect();
        let name_of = |id: &str| names.get(id).copied();
        // A tenant's staff: their own people's devices only (`names` holds just those).
        let theirs: Vec<&crate::model::Device> = registry
            .iter()
            .filter(|d| {
                scope.is_all()
                    || d.subscriber
                        .as_deref()
                        .is_some_and(|s| names.contains_key(s))
            })
            .collect();
        let p = search::devices(theirs, name_of, &query, offset, limit);
        let lines = p
            .items
            .iter()
            .map(|d| DeviceLine {
                account: d.account.clone(),
                line: d.line.clone(),
                receiver: d.receiver.clone(),
                device_type: d.device_type.clone(),
                subscriber: d.subscriber.clone(),
                subscriber_name: d.subscriber.as_deref().and_then(name_of).map(str::to_owned),
                phone: d.phone.clone(),
                area: d.area.clone(),
                telecom_operator: d.telecom_operator.clone(),
                encrypted: d.key.is_some(),
            })
            .collect();
        Ok::<_, crate::store::StoreError>((
            DevicePage {
                total: p.total,
                offset: p.offset,
                limit: p.limit,
                devices: lines,
            },
            query,
        ))
    })
    .await
    .map_err(|e| ApiError::internal("searching devices failed", e))?;
    let (page, query) = page?;
    audit(
        &state,
        &s,
        "device.search",
        None,
        None,
        search_detail(&text, &query, page.total),
    )?;
    Ok(Json(page))
}

/// What a subscriber's `care_provider` and `area` may be set to: the directory's care
/// providers, and the areas its patrols serve. Both empty while the directory is: then any
/// text is accepted.
#[utoipa::path(get, path = "/api/registers/choices", tag = "subscribers",
    responses((status = 200, body = Choices), (status = 403, body = ErrorBody)))]
pub async fn choices(State(state): State<AppState>, s: Session) -> ApiResult<Json<Choices>> {
    s.require(Role::Operator, &state)?;
    let d = state.desk.dispatcher().directory().clone();
    let choice = |id: &str, name: &str| Choice {
        id: id.to_owned(),
        name: name.to_owned(),
    };
    Ok(Json(Choices {
        care_providers: provider_choices(&d)
            .into_iter()
            .map(|p| choice(&p.id, &p.name))
            .collect(),
        areas: area_choices(&d)
            .into_iter()
            .map(|a| choice(&a.id, &a.name))
            .collect(),
    }))
}
