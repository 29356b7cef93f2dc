//! The access log's review and the extract for one person (issue 19, 3).
//!
//! - `GET /api/audit/review` (supervisors): the audit log filtered by person, user, Call,
//!   action (a prefix) and local days, a page at a time, newest first, each entry with the
//!   flags of [`crate::model::access_review`], the person's name and the user's role. A review
//!   of one person's accesses is itself audited (`audit.review`).
//! - `GET /api/subscribers/{id}/accesses` (supervisors): every access to one person's record
//!   (everything audited with that person or a Call of theirs), as a file to hand to that
//!   person: CSV (`;` and a BOM, as the billing export) or a printable HTML page with the
//!   centre's name, the person's name and id, the period and, per access, when, who (name and
//!   role) and what, in the person's language (Swedish unless the card or the request says
//!   Norwegian or English). Audited `audit.extract`. It reads the person's index only, so no
//!   other person's entry can reach it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{Session, audit};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::access_review::{self, CallSpan, Flag, is_card_view, is_system_user};
use crate::model::{AuditEntry, ConsoleLanguage, Role};
use crate::store::{AuditFilter, Store, StoreError};

/// At most this many entries on a review page.
const MAX_PAGE: usize = 500;
/// A review page reads at most this many entries of the log (then says where to go on).
const BUDGET: usize = 20_000;
/// The burst rule's context: at most this many entries of one user around the page.
const CONTEXT_MAX: usize = 5_000;
/// How far before a card view the Calls of the person are looked for in the log.
const CALL_LOOKBACK: SignedDuration = SignedDuration::from_hours(24);
/// At most this many Calls read for one page's card views.
const CALLS_MAX: usize = 500;
/// An extract holds at most this many accesses (beyond: a shorter period, please).
const MAX_EXTRACT: usize = 50_000;

/// Query of `GET /api/audit/review`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// The person (subscriber id).
    pub subscriber: Option<String>,
    /// The user.
    pub user: Option<String>,
    /// The Call.
    pub call: Option<u64>,
    /// The action starts with this (`subscriber.`, `call.view`).
    pub action: Option<String>,
    /// From this local day (`YYYY-MM-DD`, the centre's time zone).
    pub from: Option<String>,
    /// To this local day, inclusive.
    pub to: Option<String>,
    /// Entries with a lower number than this (the page before's `next_before`).
    pub before: Option<u64>,
    /// At most this many (default 100, at most 500).
    pub limit: Option<usize>,
}

/// One entry of the review, with what the page shows beside it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewEntry {
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Why it is worth a second look (empty: nothing unusual).
    pub flags: Vec<Flag>,
    /// The person's name, when the entry names a person in the register.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_name: Option<String>,
    /// The user's role, when the user is in the user register.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// A page of the review.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewPage {
    /// The entries, newest first.
    pub entries: Vec<ReviewEntry>,
    /// `before` of the next page; `null` when the search has seen every entry that matches.
    pub next_before: Option<u64>,
    /// How many entries of the log the search read.
    pub read: usize,
}

/// The start of local day `d` (`YYYY-MM-DD`), or of the day after it with `next`.
fn local_day(state: &AppState, field: &str, d: &str, next: bool) -> ApiResult<Timestamp> {
    let date: Date = d
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{field}: a date YYYY-MM-DD")))?;
    let date = if next {
        date.tomorrow()
            .map_err(|_| ApiError::bad_request(format!("{field}: out of range")))?
    } else {
        date
    };
    date.to_zoned(state.tz.clone())
        .map(|z| z.timestamp())
        .map_err(|_| ApiError::bad_request(format!("{field}: out of range")))
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The filter of a query, its days made times in the centre's zone.
fn filter_of(
    state: &AppState,
    subscriber: Option<String>,
    user: Option<String>,
    call: Option<u64>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> ApiResult<AuditFilter> {
    let from = nonempty(from)
        .map(|d| local_day(state, "from", &d, false))
        .transpose()?;
    let to = nonempty(to)
        .map(|d| local_day(state, "to", &d, true))
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        return Err(ApiError::bad_request("to is before from"));
    }
    Ok(AuditFilter {
        subscriber: nonempty(subscriber),
        user: nonempty(user),
        call,
        action_prefix: nonempty(action),
        from,
        to,
    })
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::internal("reading the audit log failed", e)
}

/// The access log, filtered, with the unusual accesses flagged (supervisors). A review of
/// one person's accesses is audited `audit.review`.
#[utoipa::path(get, path = "/api/audit/review", tag = "audit", params(ReviewQuery),
    responses((status = 200, body = ReviewPage), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn review(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<ReviewQuery>, QueryRejection>,
) -> ApiResult<Json<ReviewPage>> {
    let scope = reviewer_scope(&s, &state)?;
    let Query(q) = q?;
    if !scope.is_all() {
        // A municipality's staff review one of their own people at a time (an access
        // request, a complaint): the log has no index by municipality.
        let Some(person) = q
            .subscriber
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        else {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "a municipality's review names the person (subscriber)",
            ));
        };
        if !super::api::sees_subscriber(&state, &scope, Some(person))? {
            return Err(ApiError::not_found("subscriber"));
        }
    }
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_PAGE}"
        )));
    }
    let f = filter_of(&state, q.subscriber, q.user, q.call, q.action, q.from, q.to)?;
    let before = q.before;
    let store = state.store.clone();
    let opts = state.access_review.clone();
    let now = Timestamp::now();
    let filter = f.clone();
    let home = state.care.municipality().to_owned();
    let page = tokio::task::spawn_blocking(move || {
        review_page(&store, &filter, before, limit, &opts, &home, now)
    })
    .await
    .map_err(|e| ApiError::internal("the review task failed", e))?
    .map_err(store_error)?;
    if let Some(person) = &f.subscriber {
        audit(
            &state,
            &s,
            "audit.review",
            f.call,
            Some(person),
            format!("{} entries", page.entries.len()),
        )?;
    }
    Ok(Json(page))
}

/// Who may review the access log: the centre's supervisors (everyone's) and a
/// municipality's staff (their own people's); a care provider's staff may not (the
/// municipality is the data controller).
fn reviewer_scope(s: &Session, state: &AppState) -> ApiResult<crate::model::Scope> {
    s.require_or_tenant(Role::Supervisor, state)?;
    let scope = s.scope(state)?;
    if let crate::model::Scope::Provider(_) = scope {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "the access log is reviewed by the centre's supervisors and the municipality's staff",
        )
        .coded("role_needed")
        .param("role", Role::Supervisor.as_str()));
    }
    Ok(scope)
}

/// A page of the review with its flags, names and roles.
fn review_page(
    store: &Store,
    f: &AuditFilter,
    before: Option<u64>,
    limit: usize,
    opts: &access_review::AccessReviewOptions,
    home: &str,
    now: Timestamp,
) -> Result<ReviewPage, StoreError> {
    let found = store.audit_search(f, before, limit, BUDGET)?;
    let context = burst_context(store, &found.entries, opts)?;
    let calls = calls_of_card_views(store, &found.entries, opts)?;
    let users = store.users()?;
    let roles: HashMap<String, Role> = users.iter().map(|u| (u.name.clone(), u.role)).collect();
    // Who belongs where: a municipality's staff user to theirs (the centre's staff to none:
    // they see all), each person on the page to the card's (or the centre's).
    let user_municipality: HashMap<String, String> = users
        .into_iter()
        .filter(|u| u.role == Role::Municipality)
        .filter_map(|u| Some((u.name, u.tenant?)))
        .collect();
    let mut person_municipality: HashMap<String, String> = HashMap::new();
    for e in &found.entries {
        if let Some(p) = &e.subscriber
            && !person_municipality.contains_key(p)
            && let Some(card) = store.subscriber(p)?
        {
            let m = if card.municipality.is_empty() {
                home.to_owned()
            } else {
                card.municipality
            };
            person_municipality.insert(p.clone(), m);
        }
    }
    let municipality_of = |p: &str| person_municipality.get(p).map(|m| m.to_lowercase());
    let of_user = |u: &str| user_municipality.get(u).map(|m| m.to_lowercase());
    let tenancy = access_review::Tenancy {
        municipality_of: &municipality_of,
        user_municipality: &of_user,
    };
    let flags = access_review::flags(&found.entries, &context, &calls, Some(&tenancy), opts, now);
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    let mut entries = Vec::with_capacity(found.entries.len());
    for e in found.entries {
        let subscriber_name = match &e.subscriber {
            Some(id) => match names.get(id) {
                Some(n) => n.clone(),
                None => {
                    let n = store.subscriber(id)?.map(|s| s.name);
                    names.insert(id.clone(), n.clone());
                    n
                }
            },
            None => None,
        };
        entries.push(ReviewEntry {
            flags: flags
                .get(&e.seq)
                .map(|f| f.iter().copied().collect())
                .unwrap_or_default(),
            subscriber_name,
            role: roles.get(&e.user).copied(),
            entry: e,
        });
    }
    Ok(ReviewPage {
        entries,
        next_before: found.next_before,
        read: found.read,
    })
}

/// The entries of the page's users within the burst window around the page's.
fn burst_context(
    store: &Store,
    page: &[AuditEntry],
    opts: &access_review::AccessReviewOptions,
) -> Result<Vec<AuditEntry>, StoreError> {
    let window = opts.burst_window();
    let mut spans: BTreeMap<&str, (Timestamp, Timestamp)> = BTreeMap::new();
    for e in page {
        if is_system_user(&e.user) || e.subscriber.is_none() {
            continue;
        }
        let span = spans.entry(e.user.as_str()).or_insert((e.at, e.at));
        span.0 = span.0.min(e.at);
        span.1 = span.1.max(e.at);
    }
    let mut out = Vec::new();
    for (user, (lo, hi)) in spans {
        let f = AuditFilter {
            user: Some(user.to_owned()),
            from: lo.checked_sub(window).ok(),
            to: hi.checked_add(window).ok(),
            ..AuditFilter::default()
        };
        out.extend(store.audit_search(&f, None, CONTEXT_MAX, BUDGET)?.entries);
    }
    Ok(out)
}

/// The Calls of the people whose cards the page shows opened outside a Call, as the log
/// names them (any entry of the person naming a Call, from a day before the view to the
/// margin after it).
fn calls_of_card_views(
    store: &Store,
    page: &[AuditEntry],
    opts: &access_review::AccessReviewOptions,
) -> Result<Vec<CallSpan>, StoreError> {
    let mut spans: BTreeMap<&str, (Timestamp, Timestamp)> = BTreeMap::new();
    for e in page {
        if is_system_user(&e.user) || !is_card_view(&e.action) || e.call.is_some() {
            continue;
        }
        let Some(person) = e.subscriber.as_deref() else {
            continue;
        };
        let span = spans.entry(person).or_insert((e.at, e.at));
        span.0 = span.0.min(e.at);
        span.1 = span.1.max(e.at);
    }
    let mut ids: BTreeSet<u64> = BTreeSet::new();
    for (person, (lo, hi)) in spans {
        let f = AuditFilter {
            subscriber: Some(person.to_owned()),
            from: lo.checked_sub(CALL_LOOKBACK).ok(),
            to: hi.checked_add(opts.call_margin()).ok(),
            ..AuditFilter::default()
        };
        let found = store.audit_search(&f, None, CONTEXT_MAX, BUDGET)?;
        ids.extend(found.entries.iter().filter_map(|e| e.call));
    }
    let mut out = Vec::new();
    for id in ids.into_iter().take(CALLS_MAX) {
        if let Some(c) = store.call_head(id)?
            && let Some(subscriber) = c.subscriber
        {
            out.push(CallSpan {
                call: c.id,
                subscriber,
                opened: c.opened_at,
                closed: c.closed_at,
            });
        }
    }
    Ok(out)
}

// ---- the extract for one person

/// Query of `GET /api/subscribers/{id}/accesses`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExtractQuery {
    /// From this local day (`YYYY-MM-DD`; default: the log's start).
    pub from: Option<String>,
    /// To this local day, inclusive (default: today).
    pub to: Option<String>,
    /// `csv` (default; `;`-separated with a UTF-8 BOM) or `html` (a page to print).
    pub format: Option<String>,
    /// `sv`, `nb` or `en` (default: the person's language when it is one of them, else `sv`).
    pub language: Option<ConsoleLanguage>,
}

/// The catalogue of `l` as a map.
fn words(l: ConsoleLanguage) -> &'static BTreeMap<String, String> {
    static PARSED: OnceLock<[BTreeMap<String, String>; 3]> = OnceLock::new();
    let all = PARSED.get_or_init(|| {
        ConsoleLanguage::ALL
            .map(|l| serde_json::from_str(super::i18n::catalogue(l)).unwrap_or_default())
    });
    let i = ConsoleLanguage::ALL
        .iter()
        .position(|x| *x == l)
        .unwrap_or(0);
    &all[i]
}

/// The words of `key` in `l` (English, then the key, where missing).
fn word(l: ConsoleLanguage, key: &str) -> String {
    words(l)
        .get(key)
        .or_else(|| words(ConsoleLanguage::En).get(key))
        .cloned()
        .unwrap_or_else(|| key.to_owned())
}

/// One access, in words.
struct Line {
    when: String,
    who: String,
    role: String,
    what: String,
    call: String,
}

/// Every access to `id`'s record in `f`'s period, oldest first.
fn accesses_of(store: &Store, f: &AuditFilter) -> Result<Option<Vec<AuditEntry>>, StoreError> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = store.audit_search(f, before, 1000, 100_000)?;
        out.extend(page.entries);
        if out.len() > MAX_EXTRACT {
            return Ok(None);
        }
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    out.reverse();
    Ok(Some(out))
}

/// Every access to one person's record, as a file to hand to that person (supervisors):
/// CSV or a printable HTML page, in the person's language. Audited `audit.extract`.
#[utoipa::path(get, path = "/api/subscribers/{id}/accesses", tag = "audit",
    params(("id" = String, Path, description = "Subscriber id"), ExtractQuery),
    responses((status = 200, description = "The extract (text/csv or text/html, a file)"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn extract(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    q: Result<Query<ExtractQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let scope = reviewer_scope(&s, &state)?;
    if !super::api::sees_subscriber(&state, &scope, Some(&id))? {
        return Err(ApiError::not_found("subscriber"));
    }
    let Query(q) = q?;
    let html = match q.format.as_deref() {
        None | Some("csv") => false,
        Some("html") => true,
        Some(f) => return Err(ApiError::bad_request(format!("format {f:?}: csv or html"))),
    };
    let now = Timestamp::now();
    let today = now.to_zoned(state.tz.clone()).date();
    let to_day = nonempty(q.to.clone()).unwrap_or_else(|| today.to_string());
    let mut f = filter_of(
        &state,
        Some(id.clone()),
        None,
        None,
        None,
        q.from.clone(),
        Some(to_day.clone()),
    )?;
    f.subscriber = Some(id.clone());
    let store = state.store.clone();
    let filter = f.clone();
    let person = id.clone();
    let (subscriber, entries, users) = tokio::task::spawn_blocking(move || {
        let sub = store.subscriber(&person)?;
        let entries = accesses_of(&store, &filter)?;
        let users: HashMap<String, Role> = store
            .users()?
            .into_iter()
            .map(|u| (u.name, u.role))
            .collect();
        Ok::<_, StoreError>((sub, entries, users))
    })
    .await
    .map_err(|e| ApiError::internal("the extract task failed", e))?
    .map_err(store_error)?;
    let Some(entries) = entries else {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            format!("more than {MAX_EXTRACT} accesses: choose a shorter period"),
        ));
    };
    if subscriber.is_none() && entries.is_empty() {
        return Err(ApiError::not_found("subscriber"));
    }
    let language = q.language.unwrap_or_else(|| {
        let own = subscriber
            .as_ref()
            .map(|s| s.language.trim().to_lowercase());
        ConsoleLanguage::ALL
            .into_iter()
            .find(|l| own.as_deref() == Some(l.as_str()))
            .unwrap_or(ConsoleLanguage::Sv)
    });
    let l = language;
    let lines: Vec<Line> = entries
        .iter()
        .map(|e| {
            let (who, role) = if e.user == "vakt" {
                (word(l, "audit_extract.system"), String::new())
            } else if let Some(name) = e.user.strip_prefix("integration:") {
                (
                    format!("{} ({name})", word(l, "audit_extract.integration")),
                    String::new(),
                )
            } else {
                let role = users
                    .get(&e.user)
                    .map(|r| word(l, &format!("role.{}", r.as_str())))
                    .unwrap_or_default();
                (e.user.clone(), role)
            };
            let action_key = format!("audit.{}", e.action);
            let what = if words(l).contains_key(&action_key) {
                word(l, &action_key)
            } else {
                e.action.clone()
            };
            Line {
                when: e
                    .at
                    .to_zoned(state.tz.clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string(),
                who,
                role,
                what,
                call: e.call.map(|c| c.to_string()).unwrap_or_default(),
            }
        })
        .collect();
    let from_day = match f.from {
        Some(t) => t.to_zoned(state.tz.clone()).date().to_string(),
        None => entries
            .first()
            .map(|e| e.at.to_zoned(state.tz.clone()).date().to_string())
            .unwrap_or_else(|| to_day.clone()),
    };
    let name = subscriber
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    audit(
        &state,
        &s,
        "audit.extract",
        None,
        Some(&id),
        format!(
            "{} {from_day}..{to_day}, {} accesses, {}",
            if html { "html" } else { "csv" },
            lines.len(),
            l.as_str()
        ),
    )?;
    let safe_id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file = format!("vakt-accesses-{safe_id}-{from_day}-{to_day}");
    let head = Head {
        centre: &state.access_review.centre_name,
        name: &name,
        id: &id,
        from: &from_day,
        to: &to_day,
        made: &now
            .to_zoned(state.tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
    };
    if html {
        Ok(attachment(
            to_html(l, &head, &lines),
            "text/html; charset=utf-8",
            &format!("{file}.html"),
        ))
    } else {
        Ok(attachment(
            to_csv(l, &lines),
            "text/csv; charset=utf-8",
            &format!("{file}.csv"),
        ))
    }
}

/// What heads the extract.
struct Head<'a> {
    centre: &'a str,
    name: &'a str,
    id: &'a str,
    from: &'a str,
    to: &'a str,
    made: &'a str,
}

fn attachment(body: String, content_type: &'static str, name: &str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// One CSV cell, as the billing export writes them: quoted when it holds the separator, a
/// quote or a line break; a cell that starts like a formula prefixed with `'`.
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([';', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The accesses as CSV: a UTF-8 BOM, a header in the person's language, `;`, CRLF.
fn to_csv(l: ConsoleLanguage, lines: &[Line]) -> String {
    let mut out = String::from("\u{feff}");
    let header: Vec<String> = ["time", "user", "role", "action", "call"]
        .iter()
        .map(|c| cell(&word(l, &format!("audit_extract.col.{c}"))))
        .collect();
    out.push_str(&header.join(";"));
    out.push_str("\r\n");
    for x in lines {
        let cells = [&x.when, &x.who, &x.role, &x.what, &x.call].map(|c| cell(c));
        out.push_str(&cells.join(";"));
        out.push_str("\r\n");
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The accesses as a page to print.
fn to_html(l: ConsoleLanguage, h: &Head<'_>, lines: &[Line]) -> String {
    let w = |k: &str| esc(&word(l, k));
    let mut out = format!(
        "<!doctype html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title} {id}</title>\n<style>\n\
         body {{ font: 11pt sans-serif; margin: 2em; }}\n\
         table {{ border-collapse: collapse; width: 100%; }}\n\
         th, td {{ text-align: left; border-bottom: 1px solid #999; padding: 0.3em 0.5em; }}\n\
         dt {{ font-weight: bold; }}\n</style>\n</head>\n<body>\n\
         <h1>{title}</h1>\n<p>{centre}</p>\n<dl>\n\
         <dt>{l_person}</dt><dd>{name} ({id})</dd>\n\
         <dt>{l_period}</dt><dd>{from} – {to}</dd>\n\
         <dt>{l_made}</dt><dd>{made}</dd>\n</dl>\n<p>{intro}</p>\n",
        lang = l.as_str(),
        title = w("audit_extract.title"),
        centre = esc(h.centre),
        l_person = w("audit_extract.person"),
        name = esc(h.name),
        id = esc(h.id),
        l_period = w("audit_extract.period"),
        from = esc(h.from),
        to = esc(h.to),
        l_made = w("audit_extract.made"),
        made = esc(h.made),
        intro = w("audit_extract.intro"),
    );
    if lines.is_empty() {
        out.push_str(&format!("<p>{}</p>\n", w("audit_extract.none")));
    } else {
        out.push_str("<table>\n<thead><tr>");
        for c in ["time", "user", "role", "action", "call"] {
            out.push_str(&format!(
                "<th>{}</th>",
                w(&format!("audit_extract.col.{c}"))
            ));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for x in lines {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&x.when),
                esc(&x.who),
                esc(&x.role),
                esc(&x.what),
                esc(&x.call)
            ));
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str(&format!(
        "<p>{}</p>\n</body>\n</html>\n",
        esc(&word(l, "audit_extract.count").replace("{n}", &lines.len().to_string()))
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_extract_is_in_the_persons_words_and_escaped() {
        let lines = vec![Line {
            when: "2025-03-01 10:00".into(),
            who: "anna".into(),
            role: word(ConsoleLanguage::Sv, "role.operator"),
            what: word(ConsoleLanguage::Sv, "audit.subscriber.view"),
            call: "7".into(),
        }];
        let h = Head {
            centre: "Larm & co",
            name: "Märta <Berg>",
            id: "S-1",
            from: "2025-03-01",
            to: "2025-03-31",
            made: "2025-04-01 08:00",
        };
        let html = to_html(ConsoleLanguage::Sv, &h, &lines);
        assert!(html.contains("Larm &amp; co"), "{html}");
        assert!(html.contains("Märta &lt;Berg&gt; (S-1)"), "{html}");
        assert!(html.contains("<td>Visade larmtagaren</td>"), "{html}");
        assert!(html.contains("<html lang=\"sv\">"));
        let csv = to_csv(ConsoleLanguage::Sv, &lines);
        assert!(csv.starts_with('\u{feff}'));
        let mut rows = csv.trim_start_matches('\u{feff}').split("\r\n");
        assert_eq!(rows.next().unwrap().split(';').count(), 5);
        assert_eq!(
            rows.next().unwrap(),
            format!(
                "2025-03-01 10:00;anna;{};Visade larmtagaren;7",
                word(ConsoleLanguage::Sv, "role.operator")
            )
        );
        assert_eq!(cell("=1+1"), "'=1+1");
        assert_eq!(cell("a;b"), "\"a;b\"");
    }
}
