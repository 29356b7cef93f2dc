//! The console's languages: Swedish, Norwegian (bokmål) and English.
//!
//! - **The message catalogue**: one flat JSON file per language in `assets/i18n/`
//!   (`sv.json`, `nb.json`, `en.json`), embedded in the binary and served at
//!   `/assets/i18n/{language}.json`. Keys name the meaning (`queue.take`, `kind.fall`,
//!   `cid.101`, `audit.call.claim`), texts may hold `{name}` placeholders, and a key ending
//!   `.one` / `.other` is a plural form (the page picks it with `Intl.PluralRules`). English
//!   is the fallback for a key a language lacks; the tests below keep every key in all three
//!   and every key the page uses in the catalogue.
//! - **Codes in words**: the catalogue carries the texts of the event codes (Contact ID,
//!   SIA, SCAIP device types and statuses), of triage's kinds of alarm, of device types,
//!   roles and audit actions; the page shows them in the user's language and falls back to
//!   the server's English name, then to the code.
//! - **Each user's language**: `UserRecord::language`, `None` meaning the centre's
//!   (`[http] language`); `GET /api/session` gives it with the centre's language and time
//!   zone; `PUT /api/me/language` changes one's own (audited `user.language`).
//!
//! Written by hand rather than with a localisation crate (fluent): the texts are read by the
//! page, which is plain JavaScript without a build step, so the catalogue is the JSON the page
//! loads; the server only serves and checks it.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::api::{Session, WhoAmI, audit};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use crate::model::ConsoleLanguage;

const SV: &str = include_str!("assets/i18n/sv.json");
const NB: &str = include_str!("assets/i18n/nb.json");
const EN: &str = include_str!("assets/i18n/en.json");

/// The catalogue of `language`, as JSON.
pub fn catalogue(language: ConsoleLanguage) -> &'static str {
    match language {
        ConsoleLanguage::Sv => SV,
        ConsoleLanguage::Nb => NB,
        ConsoleLanguage::En => EN,
    }
}

/// `GET /assets/i18n/{file}`: `sv.json`, `nb.json` or `en.json`.
pub async fn serve_catalogue(Path(file): Path<String>) -> Response {
    let language = ConsoleLanguage::ALL
        .into_iter()
        .find(|l| file.strip_suffix(".json") == Some(l.as_str()));
    match language {
        Some(l) => super::asset("application/json; charset=utf-8", catalogue(l)),
        None => ApiError::new(StatusCode::NOT_FOUND, "no such language").into_response(),
    }
}

/// The page, with `<html lang>` the centre's language (the login form is in it; after the
/// login the page sets the user's).
pub fn index_html(centre: ConsoleLanguage) -> &'static str {
    static PAGES: OnceLock<[String; 3]> = OnceLock::new();
    let pages = PAGES.get_or_init(|| {
        ConsoleLanguage::ALL.map(|l| {
            super::INDEX_HTML.replacen(
                "<html lang=\"sv\">",
                &format!("<html lang=\"{}\">", l.as_str()),
                1,
            )
        })
    });
    let i = ConsoleLanguage::ALL
        .iter()
        .position(|l| *l == centre)
        .unwrap_or(0);
    pages.get(i).map_or(super::INDEX_HTML, String::as_str)
}

/// `PUT /api/me/language` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LanguageRequest {
    /// `sv`, `nb` or `en`; `null`: the centre's language.
    pub language: Option<ConsoleLanguage>,
}

/// Sets the language the logged-in user reads the console in (its own; every role). Audited
/// `user.language`; the session stays.
#[utoipa::path(put, path = "/api/me/language", tag = "session",
    request_body = LanguageRequest,
    responses((status = 200, description = "Changed; who is logged in, in the new language", body = WhoAmI),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_language(
    State(state): State<AppState>,
    s: Session,
    body: Result<Json<LanguageRequest>, JsonRejection>,
) -> ApiResult<Json<WhoAmI>> {
    let Json(req) = body?;
    let before = state
        .store
        .set_user_language(&s.user, req.language)
        .map_err(|e| ApiError::internal("storing the language failed", e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such user"))?;
    if before != req.language {
        let word = |l: Option<ConsoleLanguage>| l.map_or("centre's", ConsoleLanguage::as_str);
        audit(
            &state,
            &s,
            "user.language",
            None,
            None,
            format!("{} -> {}", word(before), word(req.language)),
        )?;
    }
    Ok(Json(WhoAmI::of(
        &state,
        s.user,
        s.role,
        req.language,
        s.expires_at,
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn parsed(l: ConsoleLanguage) -> BTreeMap<String, String> {
        serde_json::from_str(catalogue(l)).unwrap_or_else(|e| {
            panic!(
                "{}.json is not a flat JSON object of texts: {e}",
                l.as_str()
            )
        })
    }

    fn placeholders(text: &str) -> BTreeSet<String> {
        text.split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(name, _)| name.to_owned()))
            .collect()
    }

    fn source(path: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The string literals (quoted with `'`) that follow each `marker` in `text`.
    fn literals_after(text: &str, marker: &str) -> Vec<String> {
        text.match_indices(marker)
            .filter_map(|(i, _)| {
                let rest = text.get(i + marker.len()..)?;
                let q = rest.chars().next()?;
                if q != '\'' && q != '"' {
                    return None; // a computed key: checked where its parts are
                }
                let end = rest.get(1..)?.find(q)?;
                rest.get(1..=end).map(str::to_owned)
            })
            .collect()
    }

    /// Every key the page uses: `t('…')`, `tn('…')` (plural: `….one` and `….other`) in
    /// app.js, `data-i18n…="…"` in index.html.
    fn used_keys() -> BTreeSet<String> {
        let js = source("src/console/assets/app.js");
        let html = source("src/console/assets/index.html");
        let mut keys = BTreeSet::new();
        for k in literals_after(&js, "t(") {
            keys.insert(k);
        }
        for k in literals_after(&js, "tn(") {
            keys.insert(format!("{k}.one"));
            keys.insert(format!("{k}.other"));
        }
        for marker in [
            "data-i18n=",
            "data-i18n-title=",
            "data-i18n-placeholder=",
            "data-i18n-aria-label=",
        ] {
            for k in literals_after(&html, marker) {
                keys.insert(k);
            }
        }
        // `t(` also ends other names (`alert(`, `split('.')`): only dotted names are keys.
        keys.retain(|k| {
            k.contains('.')
                && !k.starts_with('.')
                && !k.ends_with('.')
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        });
        keys
    }

    #[test]
    fn every_key_is_in_every_language_with_the_same_placeholders() {
        let en = parsed(ConsoleLanguage::En);
        assert!(en.len() > 300, "the catalogue has {} keys", en.len());
        for l in [ConsoleLanguage::Sv, ConsoleLanguage::Nb] {
            let other = parsed(l);
            let missing: Vec<_> = en.keys().filter(|k| !other.contains_key(*k)).collect();
            let extra: Vec<_> = other.keys().filter(|k| !en.contains_key(*k)).collect();
            assert!(missing.is_empty(), "{} lacks {missing:?}", l.as_str());
            assert!(
                extra.is_empty(),
                "{} has keys English lacks: {extra:?}",
                l.as_str()
            );
            for (k, text) in &other {
                assert!(!text.trim().is_empty(), "{}: {k} is empty", l.as_str());
                assert_eq!(
                    placeholders(text),
                    placeholders(&en[k]),
                    "{}: {k} has other placeholders than English",
                    l.as_str()
                );
            }
        }
    }

    #[test]
    fn every_key_the_page_uses_is_in_the_catalogue() {
        let en = parsed(ConsoleLanguage::En);
        let used = used_keys();
        assert!(
            used.len() > 100,
            "only {} keys found in the page",
            used.len()
        );
        let missing: Vec<_> = used.iter().filter(|k| !en.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "used but not in the catalogue: {missing:?}"
        );
    }

    /// Every code the server gives a refusal has its words in every language, and the ones
    /// written in the sources are all listed in `CODES`.
    #[test]
    fn every_refusal_code_has_words_in_every_language() {
        use crate::console::error::CODES;
        use crate::triage::closing::Refusal;
        let mut given: BTreeSet<String> = BTreeSet::new();
        for file in [
            "api.rs",
            "dispatch_api.rs",
            "error.rs",
            "handover_api.rs",
            "keys_api.rs",
            "plans_api.rs",
            "review_api.rs",
        ] {
            let text = source(&format!("src/console/{file}"));
            given.extend(literals_after(&text, ".coded("));
        }
        let refusals = [
            Refusal::NotOffered("no_action"),
            Refusal::OverrideNotAllowed,
            Refusal::OverrideReasonMissing,
            Refusal::ReasonMissing,
            Refusal::NoDispatch,
            Refusal::LifeSafety {
                kind: "Fire".into(),
            },
            Refusal::Unreachable,
        ];
        given.extend(refusals.iter().map(|r| r.code().to_owned()));
        assert!(given.len() > 20, "only {} codes found", given.len());
        for code in &given {
            assert!(CODES.contains(&code.as_str()), "{code} is not in CODES");
        }
        for l in ConsoleLanguage::ALL {
            let words = parsed(l);
            for code in CODES {
                let key = format!("error.{code}");
                assert!(words.contains_key(&key), "{} lacks {key}", l.as_str());
            }
            // The problems of a subscriber edit, and the fields they name.
            for code in crate::registers::problem::CODES {
                let key = format!("problem.{code}");
                assert!(words.contains_key(&key), "{} lacks {key}", l.as_str());
            }
        }
    }

    /// Every problem a subscriber can have is coded, its field named in words where its text
    /// names it.
    #[test]
    fn every_subscriber_problem_is_coded_with_its_field_in_words() {
        use crate::model::{Contact, Subscriber};
        let long = "x".repeat(5000);
        let mut s = Subscriber {
            id: "bad id".into(),
            personal_number: "12".into(),
            phone: "abc".into(),
            language: "??".into(),
            address: long.clone(),
            health_notes: long.clone(),
            ..Subscriber::default()
        };
        s.contacts = vec![
            Contact {
                name: String::new(),
                relation: String::new(),
                phone: "abc".into(),
            },
            Contact {
                name: long,
                relation: String::new(),
                phone: String::new(),
            },
        ];
        let problems = crate::registers::subscribers::problems(&s);
        let codes: BTreeSet<&str> = problems.iter().map(|p| p.code).collect();
        for code in [
            "subscriber.id",
            "subscriber.name_empty",
            "subscriber.personal_number",
            "subscriber.phone",
            "subscriber.too_long",
            "subscriber.contact_no_name",
            "subscriber.contact_phone",
            "subscriber.contact_no_phone",
            "subscriber.contact_too_long",
            "subscriber.language",
        ] {
            assert!(codes.contains(code), "{code} not given: {codes:?}");
        }
        let sv = parsed(ConsoleLanguage::Sv);
        for p in &problems {
            let words = &sv[&format!("problem.{}", p.code)];
            let named: BTreeSet<String> = p.params.iter().map(|(k, _)| (*k).to_owned()).collect();
            assert_eq!(placeholders(words), named, "{}", p.code);
            if let Some((_, field)) = p.params.iter().find(|(k, _)| *k == "field") {
                assert!(sv.contains_key(&format!("field.{field}")), "field.{field}");
            }
        }
    }

    /// No words in index.html outside the catalogue: every line that shows text (an element's
    /// text, a title, a placeholder, an aria-label) carries a `data-i18n…` attribute, except
    /// the name of the product, the languages' own names and the texts the script replaces
    /// before they are shown.
    #[test]
    fn the_pages_static_text_is_all_in_the_catalogue() {
        let html = source("src/console/assets/index.html");
        // The product's name and the languages' own names, as whole texts.
        let names = ["vakt", "Svenska", "Norsk (bokmål)", "English"];
        // Elements whose text the script writes before they are shown.
        let replaced = [
            "id=\"queue-count-text\"",
            "id=\"badge-silent-text\"",
            "id=\"patrol-hint\"",
        ];
        let mut bare = Vec::new();
        for (n, line) in html.lines().enumerate() {
            if line.contains("data-i18n") || replaced.iter().any(|a| line.contains(a)) {
                continue;
            }
            let line = names
                .iter()
                .fold(line.to_owned(), |l, a| l.replace(&format!(">{a}<"), "><"));
            let words = |t: &str| t.chars().filter(char::is_ascii_alphabetic).count() >= 3;
            let text = line
                .split('>')
                .skip(1)
                .filter_map(|s| s.split('<').next())
                .any(|t| !t.contains('{') && words(t));
            let attribute = ["title=\"", "placeholder=\"", "aria-label=\""]
                .iter()
                .any(|a| {
                    line.split(a)
                        .skip(1)
                        .filter_map(|s| s.split('"').next())
                        .any(words)
                });
            if text || attribute {
                bare.push(format!("{}: {}", n + 1, line.trim()));
            }
        }
        assert!(
            bare.is_empty(),
            "words outside the catalogue:\n{}",
            bare.join("\n")
        );
    }

    #[test]
    fn the_page_is_in_the_centres_language() {
        for l in ConsoleLanguage::ALL {
            let page = index_html(l);
            assert!(
                page.contains(&format!("<html lang=\"{}\">", l.as_str())),
                "{}",
                l.as_str()
            );
            assert_eq!(page.matches("<html lang=").count(), 1);
        }
    }

    #[test]
    fn the_words_an_operator_expects() {
        let sv = parsed(ConsoleLanguage::Sv);
        let nb = parsed(ConsoleLanguage::Nb);
        assert_eq!(sv["kind.personal_alarm"], "Trygghetslarm");
        assert_eq!(nb["kind.personal_alarm"], "Trygghetsalarm");
        assert_eq!(sv["device.fall_detector"], "Fallarmband");
        assert_eq!(nb["device.fall_detector"], "Falldetektor");
        assert_eq!(sv["audit.call.claim"], "Tog larmet");
        assert_eq!(sv["queue.take"], "Ta emot");
        assert_eq!(sv["nav.patrols"], "Patruller");
        assert_eq!(sv["cid.101"], "Trygghetslarm");
    }

    /// Triage's kinds of alarm (`const X: &str = "…"` in triage/priority.rs, the codes and
    /// protocols left out) as catalogue keys.
    fn triage_kinds() -> Vec<(String, String)> {
        let src = source("src/triage/priority.rs");
        src.lines()
            .filter_map(|l| {
                // Top-level constants only (the rule names are in a module).
                let l = l.strip_prefix("pub ").unwrap_or(l);
                let rest = l.strip_prefix("const ")?;
                let (name, value) = rest.split_once(": &str = \"")?;
                let value = value.strip_suffix("\";")?;
                let code = name.starts_with("CODE_")
                    || name.ends_with("_PROTOCOL")
                    || name == "SCAIP_RESET";
                (!code).then(|| (name.to_owned(), value.to_owned()))
            })
            .collect()
    }

    /// The page's key of a kind of alarm (as `kindWords` in app.js makes it).
    fn kind_key(kind: &str) -> String {
        let slug: String = kind
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("kind.{}", slug.trim_matches('_'))
    }

    #[test]
    fn every_kind_of_alarm_triage_gives_has_swedish_and_norwegian_words() {
        let kinds = triage_kinds();
        assert!(kinds.len() > 50, "found {} kinds", kinds.len());
        assert!(kinds.iter().any(|(_, v)| v == "Fall"));
        for l in ConsoleLanguage::ALL {
            let c = parsed(l);
            for (name, value) in &kinds {
                let key = kind_key(value);
                assert!(
                    c.contains_key(&key),
                    "{}: {name} {value:?} ({key})",
                    l.as_str()
                );
            }
        }
        let en = parsed(ConsoleLanguage::En);
        for (_, value) in &kinds {
            assert_eq!(&en[&kind_key(value)], value, "English is triage's word");
        }
    }

    #[test]
    fn every_named_event_code_has_swedish_and_norwegian_words() {
        use vakt_proto::event::{EventCode, name};
        let cids: Vec<u16> = (0..1000)
            .filter(|c| name(&EventCode::Cid(*c)).is_some())
            .collect();
        // Every code the demo sends (sim/dc09_fleet.rs) is among them.
        for demo in [100, 101, 111, 150, 302, 384, 602] {
            assert!(cids.contains(&demo), "CID {demo}");
        }
        let sias: Vec<[u8; 2]> = (b'A'..=b'Z')
            .flat_map(|a| (b'A'..=b'Z').map(move |b| [a, b]))
            .filter(|c| name(&EventCode::Sia(*c)).is_some())
            .collect();
        assert!(cids.len() > 40 && sias.len() > 30);
        for l in ConsoleLanguage::ALL {
            let c = parsed(l);
            for code in &cids {
                assert!(
                    c.contains_key(&format!("cid.{code}")),
                    "{}: CID {code}",
                    l.as_str()
                );
            }
            for code in &sias {
                let code = String::from_utf8_lossy(code);
                assert!(
                    c.contains_key(&format!("sia.{code}")),
                    "{}: SIA {code}",
                    l.as_str()
                );
            }
        }
    }

    /// `(number, name)` rows of the SCAIP table `section` (`devices:` or `statuses:`) in
    /// triage/priority.rs.
    fn scaip_rows(section: &str) -> Vec<u16> {
        let src = source("src/triage/priority.rs");
        let start = src
            .find(&format!("    {section} ["))
            .unwrap_or_else(|| panic!("{section} table"));
        let body = src.get(start..).unwrap_or_default();
        let end = body.find("],").unwrap_or(body.len());
        body.get(..end)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix('(')?.split_once(',')?.0.parse().ok())
            .collect()
    }

    #[test]
    fn every_scaip_device_type_and_status_has_swedish_and_norwegian_words() {
        let devices = scaip_rows("devices:");
        let statuses = scaip_rows("statuses:");
        assert!(devices.contains(&5) && devices.len() > 30, "{devices:?}");
        assert!(
            statuses.contains(&16) && statuses.len() > 30,
            "{statuses:?}"
        );
        for l in ConsoleLanguage::ALL {
            let c = parsed(l);
            for d in &devices {
                assert!(
                    c.contains_key(&format!("scaip.device.{d}")),
                    "{}: dty {d}",
                    l.as_str()
                );
            }
            for s in &statuses {
                assert!(
                    c.contains_key(&format!("scaip.status.{s}")),
                    "{}: stc {s}",
                    l.as_str()
                );
            }
        }
    }

    #[test]
    fn device_types_roles_and_audit_actions_are_in_words() {
        let actions = audited_actions();
        assert!(
            actions.contains("call.claim") && actions.len() > 20,
            "{actions:?}"
        );
        for l in ConsoleLanguage::ALL {
            let c = parsed(l);
            for t in crate::registers::devices::DEVICE_TYPES {
                assert!(
                    c.contains_key(&format!("device.{t}")),
                    "{}: {t}",
                    l.as_str()
                );
            }
            for r in [
                crate::model::Role::Operator,
                crate::model::Role::Supervisor,
                crate::model::Role::Admin,
            ] {
                assert!(
                    c.contains_key(&format!("role.{}", r.as_str())),
                    "{}: {r:?}",
                    l.as_str()
                );
            }
            for lang in ConsoleLanguage::ALL {
                assert!(c.contains_key(&format!("language.{}", lang.as_str())));
            }
            for a in &actions {
                assert!(c.contains_key(&format!("audit.{a}")), "{}: {a}", l.as_str());
            }
        }
    }

    /// The actions the code writes to the audit log: the literal after `audit(&state, &s, `
    /// and after `action: ` in src/.
    fn audited_actions() -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                // Unit tests write made-up actions.
                let text = text.split("#[cfg(test)]").next().unwrap_or_default();
                for marker in ["audit(&state, &s, ", "audit(\n", "action: "] {
                    for (i, _) in text.match_indices(marker) {
                        let rest = text.get(i + marker.len()..).unwrap_or_default();
                        let rest = rest.trim_start();
                        let rest = rest
                            .strip_prefix("&state,")
                            .map(|r| r.trim_start().strip_prefix("&s,").unwrap_or(r).trim_start())
                            .unwrap_or(rest);
                        let Some(lit) = rest.strip_prefix('"') else {
                            continue;
                        };
                        let Some((a, _)) = lit.split_once('"') else {
                            continue;
                        };
                        if a.contains('.')
                            && a.chars()
                                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                        {
                            out.insert(a.to_owned());
                        }
                    }
                }
            }
        }
        out
    }
}
