//! `GET /api/stats`: the statistics of a period for the centre, a municipality or a care
//! provider (`dispatch::stats`), as JSON with the charts drawn in SVG (`charts`) in the
//! user's language, or as CSV for a spreadsheet. A municipality's or provider's user gets
//! their own scope whatever they ask; the centre's supervisors choose one, and only they see
//! the operators' figures (of the whole centre). Audited `report.stats`.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{Session, audit};
use super::charts::{self, Target};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::dispatch::stats::{
    ANSWER_EDGES_SECS, Ask, Period, SilentDevice, Statistics, StatsError, figures, read, to_csv,
};
use crate::model::{ConsoleLanguage, Role, Scope};

/// Most kinds drawn as bars (the rest summed as one bar).
const MAX_KIND_BARS: usize = 12;

/// `GET /api/stats` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Whose (the centre's staff only; a tenant's user always gets their own): `all` (the
    /// default), `municipality:NAME` or `provider:ID`.
    pub scope: Option<String>,
    /// A day `YYYY-MM-DD`, an ISO week `YYYY-Www` or a month `YYYY-MM` (default: this month);
    /// or leave it out and give `from` and `to`.
    pub period: Option<String>,
    /// A custom period's first day, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// A custom period's last day (included), at most 366 days in all.
    pub to: Option<String>,
    /// `json` (default) or `csv` (`;`-separated, decimal commas, a UTF-8 BOM).
    pub format: Option<String>,
}

/// The charts, each one SVG document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Charts {
    /// Alarms by kind.
    pub kinds: String,
    /// Closed Calls by outcome.
    pub outcomes: String,
    /// The answer-time distribution with the targets' lines.
    pub answer: String,
    /// Alarms by weekday and hour.
    pub heat: String,
}

/// A care provider to choose.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderChoice {
    /// The directory's id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// The scopes the centre's staff may choose.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeChoices {
    /// The municipalities of the register and of the directory's areas (the centre's own
    /// first).
    pub municipalities: Vec<String>,
    /// The directory's care providers, by name.
    pub providers: Vec<ProviderChoice>,
}

/// The statistics, their charts, and for the centre's staff the scopes to choose from.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsView {
    /// The figures.
    #[serde(flatten)]
    pub stats: Statistics,
    /// The charts.
    pub charts: Charts,
    /// The scopes to choose from (the centre's staff only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<ScopeChoices>,
}

/// `all`, `municipality:NAME` or `provider:ID` ([`Scope::parse`]); 400 for anything else.
fn parse_scope(s: Option<&str>) -> ApiResult<Scope> {
    Scope::parse(s).map_err(ApiError::bad_request)
}

/// The scope in words for the audit log.
fn scope_words(s: &Scope) -> String {
    match s {
        Scope::All => "the whole centre".into(),
        Scope::Municipality(m) => format!("municipality {m}"),
        Scope::Provider(p) => format!("provider {p}"),
    }
}

/// The catalogue of a language as a map (parsed once), English beside it for what it lacks.
fn words(language: ConsoleLanguage) -> impl Fn(&str) -> String {
    static PARSED: OnceLock<[HashMap<String, String>; 3]> = OnceLock::new();
    let all = PARSED.get_or_init(|| {
        ConsoleLanguage::ALL.map(|l| {
            serde_json::from_str::<HashMap<String, serde_json::Value>>(super::i18n::catalogue(l))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
                .collect()
        })
    });
    let pick = |l: ConsoleLanguage| {
        ConsoleLanguage::ALL
            .iter()
            .position(|x| *x == l)
            .and_then(|i| all.get(i))
    };
    let (own, english) = (pick(language), pick(ConsoleLanguage::En));
    move |key: &str| {
        own.and_then(|m| m.get(key))
            .or_else(|| english.and_then(|m| m.get(key)))
            .cloned()
            .unwrap_or_else(|| key.to_owned())
    }
}

/// `{name}` placeholders filled.
fn fill(s: String, params: &[(&str, String)]) -> String {
    params
        .iter()
        .fold(s, |s, (k, v)| s.replace(&format!("{{{k}}}"), v))
}

/// A kind of alarm as the page words it (`kind.<slug>`), or as triage wrote it.
fn kind_words(w: &impl Fn(&str) -> String, kind: &str) -> String {
    let slug: String = kind
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let key = format!("kind.{}", slug.trim_matches('_'));
    let v = w(&key);
    if v == key { kind.to_owned() } else { v }
}

/// The charts of `s`, worded in `language`.
fn draw(s: &Statistics, language: ConsoleLanguage) -> Charts {
    let w = words(language);
    let comma = language != ConsoleLanguage::En;
    let pct = |v: f64| {
        let t = format!("{v:.1} %");
        if comma { t.replace('.', ",") } else { t }
    };
    let none = w("stats.chart.none");

    let mut kinds: Vec<(String, usize)> = s
        .calls
        .by_kind
        .iter()
        .take(MAX_KIND_BARS)
        .map(|c| (kind_words(&w, &c.key), c.count))
        .collect();
    let rest: usize = s
        .calls
        .by_kind
        .iter()
        .skip(MAX_KIND_BARS)
        .map(|c| c.count)
        .sum();
    if rest > 0 {
        kinds.push((w("stats.chart.other_kinds"), rest));
    }
    let outcomes: Vec<(String, usize)> = s
        .calls
        .by_outcome
        .iter()
        .map(|c| (w(&format!("close.outcome.{}", c.key)), c.count))
        .collect();

    let bars: Vec<(String, usize)> = s
        .answer_buckets
        .iter()
        .map(|b| {
            let label = match b.upto_secs {
                Some(e) => fill(w("stats.chart.upto"), &[("secs", e.to_string())]),
                None => fill(
                    w("stats.chart.longer"),
                    &[(
                        "secs",
                        ANSWER_EDGES_SECS.last().copied().unwrap_or(0).to_string(),
                    )],
                ),
            };
            (label, b.count)
        })
        .collect();
    let target = |secs: u32, got: Option<f64>, goal: f64| -> Option<Target> {
        let after = ANSWER_EDGES_SECS.iter().position(|&e| e == secs)?;
        Some(Target {
            after,
            label: fill(
                w("stats.chart.target"),
                &[
                    ("secs", secs.to_string()),
                    ("pct", got.map_or_else(|| "–".to_owned(), pct)),
                    ("target", pct(goal)),
                ],
            ),
            met: got.map(|g| g >= goal),
        })
    };
    let a = &s.answer;
    let targets: Vec<Target> = [
        target(60, a.within_60s_pct, a.target_60s_pct),
        target(180, a.within_180s_pct, a.target_180s_pct),
    ]
    .into_iter()
    .flatten()
    .collect();
    let days: Vec<String> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| w(&format!("stats.weekday.{d}")))
        .collect();
    Charts {
        kinds: charts::bars(&w("stats.chart.kinds"), &kinds, &none),
        outcomes: charts::bars(&w("stats.chart.outcomes"), &outcomes, &none),
        answer: charts::distribution(&w("stats.chart.answer"), &bars, &targets, &none),
        heat: charts::heat(&w("stats.chart.heat"), &days, &s.heat),
    }
}

/// The statistics of a period (day, ISO week, month, or from-to: local days, at most 366):
/// alarms by kind and outcome, answer times against 97.5 %/60 s and 99 %/180 s with their
/// distribution, arrival times against the area's limit with the breaches, weekday by hour,
/// frequent callers, faults, work orders and silent devices; per operator for the centre's
/// supervisors. A municipality's or care provider's user gets their own scope whatever they
/// ask. JSON with the charts as SVG, or CSV. Audited `report.stats`.
#[utoipa::path(get, path = "/api/stats", tag = "reports", params(StatsQuery),
    responses((status = 200, body = StatsView),
        (status = 200, description = "With format=csv", content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn statistics(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    s.require_or_tenant(Role::Supervisor, &state)?;
    let own = s.scope(&state)?;
    let Query(q) = q?;
    let staff = own.is_all();
    // A tenant's user: their own people, whatever they ask for.
    let scope = if staff {
        parse_scope(q.scope.as_deref())?
    } else {
        own
    };
    let now = jiff::Timestamp::now();
    let period = Period::parse(
        q.period.as_deref(),
        q.from.as_deref(),
        q.to.as_deref(),
        &state.tz,
        now,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let csv = super::dispatch_api::wants_csv(q.format.as_deref())?;
    let language = state
        .store
        .user(&s.user)
        .map_err(|e| ApiError::internal("reading the user failed", e))?
        .and_then(|u| u.language)
        .unwrap_or(state.language);

    // The devices silent now (supervision's), with whose they are.
    let sup = state.supervision.supervisor().clone();
    let silent: Vec<SilentDevice> = state
        .devices
        .current()
        .iter()
        .filter(|d| {
            sup.device(&d.account)
                .is_some_and(|st| st.silent_since.is_some())
        })
        .map(|d| SilentDevice {
            account: d.account.clone(),
            subscriber: d.subscriber.clone(),
        })
        .collect();
    let store = state.store.clone();
    let (tz, opts, home) = (
        state.tz.clone(),
        state.stats_options.clone(),
        state.care.municipality().to_owned(),
    );
    let operators = s.role >= Role::Supervisor;
    let (p, sc) = (period.clone(), scope.clone());
    let (stats, records) = tokio::task::spawn_blocking(move || {
        let mut records = read(&store, &p)?;
        records.silent = silent;
        let ask = Ask {
            period: &p,
            scope: &sc,
            home: &home,
            tz: &tz,
            opts: &opts,
            operators,
        };
        Ok::<_, StatsError>((figures(&records, &ask, now), records))
    })
    .await
    .map_err(|e| ApiError::internal("making the statistics failed", e))?
    .map_err(|e| match e {
        StatsError::BadPeriod(_) => ApiError::bad_request(e.to_string()),
        StatsError::Store(e) => ApiError::internal("making the statistics failed", e),
    })?;
    audit(
        &state,
        &s,
        "report.stats",
        None,
        None,
        format!(
            "{} of {}: {} Calls",
            period.label,
            scope_words(&scope),
            stats.calls.total
        ),
    )?;
    if csv {
        let name = format!("vakt-stats-{}.csv", period.label.replace("..", "_"));
        return Ok(super::dispatch_api::csv_attachment(
            to_csv(&stats, &state.tz),
            &name,
        ));
    }
    let choices = staff.then(|| {
        let home = state.care.municipality().trim().to_owned();
        let others: BTreeSet<String> = records
            .subscribers
            .values()
            .map(|s| s.municipality.trim())
            .chain(
                records
                    .directory
                    .areas
                    .iter()
                    .map(|a| a.municipality.trim()),
            )
            .filter(|m| !m.is_empty() && !m.eq_ignore_ascii_case(&home))
            .map(str::to_owned)
            .collect();
        let mut providers: Vec<ProviderChoice> = records
            .directory
            .providers
            .iter()
            .map(|p| ProviderChoice {
                id: p.id.clone(),
                name: p.name.clone(),
            })
            .collect();
        providers.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        ScopeChoices {
            municipalities: std::iter::once(home)
                .filter(|h| !h.is_empty())
                .chain(others)
                .collect(),
            providers,
        }
    });
    let charts = draw(&stats, language);
    Ok(Json(StatsView {
        stats,
        charts,
        choices,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse() {
        assert_eq!(parse_scope(None).unwrap(), Scope::All);
        assert_eq!(parse_scope(Some(" all ")).unwrap(), Scope::All);
        assert_eq!(
            parse_scope(Some("municipality: Nordby kommun")).unwrap(),
            Scope::Municipality("Nordby kommun".into())
        );
        assert_eq!(
            parse_scope(Some("provider:hc")).unwrap(),
            Scope::Provider("hc".into())
        );
        for wrong in ["everyone", "municipality:", "provider: ", "region:x"] {
            assert!(parse_scope(Some(wrong)).is_err(), "{wrong}");
        }
        assert!(parse_scope(Some(&format!("provider:{}", "x".repeat(101)))).is_err());
    }

    #[test]
    fn words_come_from_the_catalogue_with_english_beside() {
        let sv = words(ConsoleLanguage::Sv);
        assert_eq!(sv("nav.billing"), "Fakturering");
        assert_eq!(sv("no.such.key"), "no.such.key");
        assert_eq!(kind_words(&sv, "Fall"), sv("kind.fall"));
        assert_eq!(kind_words(&sv, "Something new"), "Something new");
        assert_eq!(
            fill("≤ {secs} s".into(), &[("secs", "60".into())]),
            "≤ 60 s"
        );
    }
}
