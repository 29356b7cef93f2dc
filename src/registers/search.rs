//! The registers' search: one query over the subscribers (`GET /api/subscribers?q=`) and the
//! devices (`GET /api/devices?q=`), as an operator types it: a name, an address, a personal
//! number, an account or a phone number, in any case and with or without accents.
//!
//! - **Words.** A query of words matches a subscriber when every word is found in the id,
//!   name, address, postcode (also without its space), city, area or an account of one of
//!   the subscriber's devices. Text is compared folded ([`fold`]): lower case, accents
//!   dropped (`Å`/`å`/`a`, `é`/`e`; `ø`, `æ`, `ß` as `o`, `ae`, `ss`), so "asa oberg"
//!   finds "Åsa Öberg".
//! - **A number.** A query of digits and separators (`+ - . ( )` and spaces) also matches:
//!   - a personal number, when it has at least [`PN_MIN_DIGITS`] digits and the number
//!     starts with them, in any form: with or without the dash, with or without the century
//!     (`19380512-9802`, `380512-9802`, `3805129802`, `193805129802` and the birth date
//!     `19380512` or `380512` all find `19380512-9802`). The personal number is never matched
//!     by fewer digits, nor inside: the last four cannot be found on their own;
//!   - a phone number (the subscriber's, or a unit's own line), the same line as
//!     [`crate::registers::numbers::same_line`] says (`070-111 22 33` finds
//!     `+46 70 111 22 33`), or, with fewer digits than a whole number, the digits found
//!     within it (at least [`PHONE_MIN_DIGITS`]).
//!
//! The search is pure (the registers are handed in) and reads each entry once: a scan, which
//! at the size of a municipality's register (some thousands) costs less than a millisecond
//! per query. [`page`] cuts the matches to a bounded page and counts them all.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::model::{Device, Subscriber};
use crate::registers::numbers::same_line;

/// Lines a page holds when the request does not say.
pub const DEFAULT_LIMIT: usize = 50;

/// Most lines a page holds.
pub const MAX_LIMIT: usize = 200;

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 100;

/// Fewest digits a query needs to match a personal number (a birth date `YYMMDD`).
pub const PN_MIN_DIGITS: usize = 6;

/// Fewest digits of a query that could be part of a personal number (its last four), so that
/// the query is not written down.
pub const PN_SHOWN_DIGITS: usize = 4;

/// Fewest digits a query needs to match part of a phone number.
pub const PHONE_MIN_DIGITS: usize = 4;

/// Text as the search compares it: lower case, accents dropped (canonical decomposition
/// without its combining marks), and the Nordic and German letters that do not decompose
/// written out (`ø` -> `o`, `æ` -> `ae`, `ß` -> `ss`, `đ` -> `d`, `ł` -> `l`, `þ` -> `th`).
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfd().filter(|c| !is_combining_mark(*c)) {
        for l in c.to_lowercase() {
            match l {
                'ø' => out.push('o'),
                'æ' => out.push_str("ae"),
                'œ' => out.push_str("oe"),
                'ß' => out.push_str("ss"),
                'đ' | 'ð' => out.push('d'),
                'ł' => out.push('l'),
                'þ' => out.push_str("th"),
                _ => out.push(l),
            }
        }
    }
    out
}

/// The digits of a text, in order.
fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// A query, read once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// The folded words; every one must be found.
    words: Vec<String>,
    /// The digits, when the query is a number (digits and separators only).
    number: Option<String>,
    /// The query as typed, trimmed (for a phone number's own comparison).
    raw: String,
}

impl Query {
    /// Reads a query. Empty (or only spaces): everything matches.
    pub fn parse(q: &str) -> Query {
        let raw = q.trim().to_owned();
        let words = fold(&raw).split_whitespace().map(str::to_owned).collect();
        let is_number = raw.chars().any(|c| c.is_ascii_digit())
            && raw
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | '(' | ')' | ' '));
        Query {
            words,
            number: is_number.then(|| digits(&raw)),
            raw,
        }
    }

    /// Whether the query is empty (everything matches).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Whether the query could be (part of) a personal number: it has at least
    /// [`PN_SHOWN_DIGITS`] digits (a birth date, or the last four). Such a query is not
    /// written to the audit log.
    pub fn could_be_personal_number(&self) -> bool {
        digits(&self.raw).len() >= PN_SHOWN_DIGITS
    }

    /// Whether every word is found in one of `fields` (folded here).
    fn words_in<'a>(&self, fields: impl IntoIterator<Item = &'a str>) -> bool {
        let hay: Vec<String> = fields.into_iter().map(fold).collect();
        self.words
            .iter()
            .all(|w| hay.iter().any(|h| h.contains(w.as_str())))
    }

    /// Whether the query, as a number, is the personal number `pn` or its start.
    fn personal_number(&self, pn: &str) -> bool {
        self.number
            .as_deref()
            .is_some_and(|q| personal_number_matches(pn, q))
    }

    /// Whether the query, as a number, is the phone number `phone` or part of it.
    fn phone(&self, phone: &str) -> bool {
        let Some(q) = self.number.as_deref() else {
            return false;
        };
        if phone.is_empty() {
            return false;
        }
        same_line(phone, &self.raw) || (q.len() >= PHONE_MIN_DIGITS && digits(phone).contains(q))
    }

    /// Whether a subscriber matches; `devices` are the subscriber's own.
    pub fn matches_subscriber(&self, s: &Subscriber, devices: &[&Device]) -> bool {
        if self.is_empty() {
            return true;
        }
        if self.personal_number(&s.personal_number)
            || self.phone(&s.phone)
            || devices
                .iter()
                .any(|d| d.phone.as_deref().is_some_and(|p| self.phone(p)))
        {
            return true;
        }
        let postcode = s.postcode.replace(' ', "");
        let fields = [
            s.id.as_str(),
            &s.name,
            &s.address,
            &s.postcode,
            &postcode,
            &s.city,
            &s.area,
        ];
        self.words_in(
            fields
                .into_iter()
                .chain(devices.iter().map(|d| d.account.as_str())),
        )
    }

    /// Whether a device matches: its account, its type (`smoke detector` finds
    /// `smoke_detector`), its subscriber's id or `subscriber_name`, or its own phone number.
    pub fn matches_device(&self, d: &Device, subscriber_name: Option<&str>) -> bool {
        if self.is_empty() {
            return true;
        }
        if d.phone.as_deref().is_some_and(|p| self.phone(p)) {
            return true;
        }
        let kind = d
            .device_type
            .as_deref()
            .unwrap_or_default()
            .replace('_', " ");
        self.words_in([
            d.account.as_str(),
            d.device_type.as_deref().unwrap_or_default(),
            &kind,
            d.subscriber.as_deref().unwrap_or_default(),
            subscriber_name.unwrap_or_default(),
        ])
    }
}

/// Whether `query_digits` (at least [`PN_MIN_DIGITS`]) are the start of the personal number
/// `pn`, with or without its century on either side.
pub fn personal_number_matches(pn: &str, query_digits: &str) -> bool {
    if query_digits.len() < PN_MIN_DIGITS {
        return false;
    }
    let full = digits(pn);
    if full.is_empty() {
        return false;
    }
    // Swedish numbers written with the century have 12 digits; without it, 10.
    let short = if full.len() == 12 { &full[2..] } else { &full };
    let q_short = if query_digits.len() == 12 || (query_digits.len() == 8 && full.len() == 10) {
        // A query with the century (the whole number, or the birth date YYYYMMDD) against a
        // number written without it.
        &query_digits[2..]
    } else {
        query_digits
    };
    full.starts_with(query_digits) || short.starts_with(q_short)
}

/// A personal number as a list shows it: its last four digits as `*` (`19380512-****`).
pub fn mask_personal_number(pn: &str) -> String {
    let mut left = 4;
    let mut out: Vec<char> = pn.chars().collect();
    for c in out.iter_mut().rev() {
        if left == 0 {
            break;
        }
        if c.is_ascii_digit() {
            *c = '*';
            left -= 1;
        }
    }
    out.into_iter().collect()
}

/// A page of matches, with the number of them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// Matches in all.
    pub total: usize,
    /// The first match on this page (0-based).
    pub offset: usize,
    /// The most a page holds.
    pub limit: usize,
    /// This page's matches.
    pub items: Vec<T>,
}

/// What is wrong with a page request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    /// The limit is 0 or above [`MAX_LIMIT`].
    #[error("limit must be 1 to {MAX_LIMIT}, not {0}")]
    Limit(usize),
    /// The query is longer than [`MAX_QUERY_CHARS`].
    #[error("q is longer than {MAX_QUERY_CHARS} characters")]
    Query,
}

/// Checks a request's query, offset and limit: the query at most [`MAX_QUERY_CHARS`], the limit
/// 1 to [`MAX_LIMIT`] ([`DEFAULT_LIMIT`] when not given). Any offset is allowed (past the end:
/// an empty page).
pub fn paging(q: &str, limit: Option<usize>) -> Result<usize, PagingError> {
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(PagingError::Query);
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(PagingError::Limit(limit));
    }
    Ok(limit)
}

/// The page of `matches` from `offset`, at most `limit`, counting them all.
pub fn page<T>(matches: impl IntoIterator<Item = T>, offset: usize, limit: usize) -> Page<T> {
    let mut total = 0;
    let mut items = Vec::new();
    for m in matches {
        if total >= offset && items.len() < limit {
            items.push(m);
        }
        total += 1;
    }
    Page {
        total,
        offset,
        limit,
        items,
    }
}

/// The subscribers `q` matches, ordered by name (folded) and id, one page of them. `devices`
/// is the device registry (a subscriber's devices are those naming it).
pub fn subscribers<'a>(
    subs: &'a [Subscriber],
    devices: impl IntoIterator<Item = &'a Device>,
    q: &Query,
    offset: usize,
    limit: usize,
) -> Page<(&'a Subscriber, Vec<&'a Device>)> {
    let mut by_sub: std::collections::HashMap<&str, Vec<&Device>> =
        std::collections::HashMap::new();
    for d in devices {
        if let Some(s) = d.subscriber.as_deref() {
            by_sub.entry(s).or_default().push(d);
        }
    }
    let mut hits: Vec<(String, &Subscriber, Vec<&Device>)> = subs
        .iter()
        .filter_map(|s| {
            let mut devs = by_sub.remove(s.id.as_str()).unwrap_or_default();
            devs.sort_by(|a, b| a.account.cmp(&b.account));
            q.matches_subscriber(s, &devs)
                .then(|| (fold(&s.name), s, devs))
        })
        .collect();
    hits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    page(hits.into_iter().map(|(_, s, d)| (s, d)), offset, limit)
}

/// The devices `q` matches, ordered by account, one page of them; `name_of` gives a
/// subscriber's name by id.
pub fn devices<'a, 'n>(
    devices: impl IntoIterator<Item = &'a Device>,
    name_of: impl Fn(&str) -> Option<&'n str>,
    q: &Query,
    offset: usize,
    limit: usize,
) -> Page<&'a Device> {
    let mut hits: Vec<&Device> = devices
        .into_iter()
        .filter(|d| q.matches_device(d, d.subscriber.as_deref().and_then(&name_of)))
        .collect();
    hits.sort_by(|a, b| a.account.cmp(&b.account).then(a.line.cmp(&b.line)));
    page(hits, offset, limit)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sub(id: &str, name: &str, pn: &str, phone: &str) -> Subscriber {
        Subscriber {
            id: id.into(),
            name: name.into(),
            personal_number: pn.into(),
            address: "Storgatan 4".into(),
            postcode: "903 26".into(),
            city: "Umeå".into(),
            area: "Centrum".into(),
            phone: phone.into(),
            ..Subscriber::default()
        }
    }

    fn dev(account: &str, sub: &str, kind: &str, phone: Option<&str>) -> Device {
        Device {
            account: account.into(),
            line: None,
            receiver: None,
            key: None,
            key_format: None,
            subscriber: Some(sub.into()),
            supervision_secs: None,
            telecom_operator: None,
            area: None,
            device_type: Some(kind.into()),
            sip_user: None,
            sip_password: None,
            phone: phone.map(str::to_owned),
        }
    }

    fn ids(p: &Page<(&Subscriber, Vec<&Device>)>) -> Vec<String> {
        p.items.iter().map(|(s, _)| s.id.clone()).collect()
    }

    fn find(subs: &[Subscriber], devs: &[Device], q: &str) -> Vec<String> {
        ids(&subscribers(subs, devs, &Query::parse(q), 0, MAX_LIMIT))
    }

    fn register() -> (Vec<Subscriber>, Vec<Device>) {
        let mut anna = sub("anna", "Åsa Öberg", "19380512-9802", "+46 70 111 22 33");
        anna.address = "Storgatan 4".into();
        let mut rene = sub("rene", "René Løvås", "380101-1239", "");
        rene.address = "Kyrkbacken 2".into();
        rene.city = "Tromsø".into();
        let ola = sub("ola", "Ola Nordmann", "12034512345", "(08) 123 456 78");
        let devs = vec![
            dev("7021", "anna", "pendant", None),
            dev("A1B2", "rene", "smoke_detector", Some("+4791234567")),
        ];
        (vec![anna, rene, ola], devs)
    }

    #[test]
    fn folding_drops_case_and_accents() {
        assert_eq!(fold("Åsa ÖBERG"), "asa oberg");
        assert_eq!(fold("René Løvås"), "rene lovas");
        assert_eq!(fold("Ærø Straße"), "aero strasse");
        assert_eq!(fold("e\u{301}"), "e", "a combining accent");
    }

    #[test]
    fn names_and_addresses_are_found_in_any_case_and_with_or_without_accents() {
        let (subs, devs) = register();
        for q in ["Åsa", "åsa", "ASA", "asa oberg", "öberg åsa", "Oberg"] {
            assert_eq!(find(&subs, &devs, q), ["anna"], "{q}");
        }
        for q in [
            "rene",
            "René",
            "RENÉ",
            "lovas",
            "Løvås",
            "tromso",
            "kyrkbacken",
        ] {
            assert_eq!(find(&subs, &devs, q), ["rene"], "{q}");
        }
        // Every word must be found, in some field.
        assert_eq!(find(&subs, &devs, "asa tromso"), Vec::<String>::new());
        assert_eq!(find(&subs, &devs, "storgatan umea"), ["anna", "ola"]);
        // A postcode with or without its space.
        assert_eq!(find(&subs, &devs, "90326").len(), 3);
        assert_eq!(find(&subs, &devs, "903 26").len(), 3);
    }

    #[test]
    fn an_empty_query_lists_everyone_by_name() {
        let (subs, devs) = register();
        assert_eq!(find(&subs, &devs, ""), ["anna", "ola", "rene"]);
        assert_eq!(find(&subs, &devs, "   "), ["anna", "ola", "rene"]);
    }

    #[test]
    fn a_personal_number_is_found_in_every_form_but_never_by_its_last_four() {
        let (subs, devs) = register();
        for q in [
            "19380512-9802",
            "193805129802",
            "380512-9802",
            "3805129802",
            "19380512",
            "380512",
            "380512 9802",
        ] {
            assert_eq!(find(&subs, &devs, q), ["anna"], "{q}");
        }
        // Written without the century in the register, searched with it.
        for q in ["19380101-1239", "193801011239", "19380101", "3801011239"] {
            assert_eq!(find(&subs, &devs, q), ["rene"], "{q}");
        }
        // Norwegian: 11 digits.
        assert_eq!(find(&subs, &devs, "120345 12345"), ["ola"]);
        // Not by the last four, not by too few digits, not inside.
        assert!(find(&subs, &devs, "9802").is_empty());
        assert!(find(&subs, &devs, "38051").is_empty());
        assert!(find(&subs, &devs, "0512-9802").is_empty());
        assert!(!personal_number_matches("19380512-9802", "19380513"));
    }

    #[test]
    fn a_phone_number_is_found_in_every_form() {
        let (subs, devs) = register();
        for q in [
            "070-111 22 33",
            "0701112233",
            "+46701112233",
            "0046 70 111 22 33",
            "111 22 33",
            "2233",
        ] {
            assert_eq!(find(&subs, &devs, q), ["anna"], "{q}");
        }
        assert_eq!(find(&subs, &devs, "08-123 456 78"), ["ola"]);
        // A unit's own number finds its subscriber.
        assert_eq!(find(&subs, &devs, "912 34 567"), ["rene"]);
        assert!(find(&subs, &devs, "223").is_empty(), "too few digits");
    }

    #[test]
    fn an_account_finds_the_subscriber_of_the_device() {
        let (subs, devs) = register();
        assert_eq!(find(&subs, &devs, "7021"), ["anna"]);
        assert_eq!(find(&subs, &devs, "a1b2"), ["rene"]);
    }

    #[test]
    fn devices_are_found_by_account_subscriber_type_and_phone() {
        let (subs, devs) = register();
        let name_of = |id: &str| subs.iter().find(|s| s.id == id).map(|s| s.name.as_str());
        let find = |q: &str| -> Vec<String> {
            devices(&devs, name_of, &Query::parse(q), 0, MAX_LIMIT)
                .items
                .iter()
                .map(|d| d.account.clone())
                .collect()
        };
        assert_eq!(find(""), ["7021", "A1B2"]);
        assert_eq!(find("a1b2"), ["A1B2"]);
        assert_eq!(find("anna"), ["7021"]);
        assert_eq!(find("asa oberg"), ["7021"]);
        assert_eq!(find("smoke detector"), ["A1B2"]);
        assert_eq!(find("smoke_detector"), ["A1B2"]);
        assert_eq!(find("Pendant"), ["7021"]);
        assert_eq!(find("+47 912 34 567"), ["A1B2"]);
        assert!(find("fire").is_empty());
    }

    #[test]
    fn pages_are_bounded_and_count_every_match() {
        let subs: Vec<Subscriber> = (0..7)
            .map(|i| sub(&format!("s{i}"), &format!("Name {i}"), "", ""))
            .collect();
        let q = Query::parse("name");
        let p = subscribers(&subs, [], &q, 0, 3);
        assert_eq!((p.total, p.items.len()), (7, 3));
        assert_eq!(ids(&p), ["s0", "s1", "s2"]);
        let p = subscribers(&subs, [], &q, 6, 3);
        assert_eq!(ids(&p), ["s6"]);
        let p = subscribers(&subs, [], &q, 10, 3);
        assert_eq!((p.total, p.items.len()), (7, 0));
        assert_eq!(paging("", None), Ok(DEFAULT_LIMIT));
        assert_eq!(paging("", Some(MAX_LIMIT)), Ok(MAX_LIMIT));
        assert_eq!(paging("", Some(0)), Err(PagingError::Limit(0)));
        assert_eq!(
            paging("", Some(MAX_LIMIT + 1)),
            Err(PagingError::Limit(MAX_LIMIT + 1))
        );
        assert_eq!(
            paging(&"å".repeat(MAX_QUERY_CHARS + 1), None),
            Err(PagingError::Query)
        );
    }

    #[test]
    fn lists_mask_the_last_four_digits() {
        assert_eq!(mask_personal_number("19380512-9802"), "19380512-****");
        assert_eq!(mask_personal_number("12034512345"), "1203451****");
        assert_eq!(mask_personal_number("450312+1234"), "450312+****");
        assert_eq!(mask_personal_number(""), "");
    }

    #[test]
    fn a_query_that_could_be_a_personal_number_is_known() {
        assert!(Query::parse("380512").could_be_personal_number());
        assert!(Query::parse("070-111 22 33").could_be_personal_number());
        assert!(
            Query::parse("9802").could_be_personal_number(),
            "the last four"
        );
        assert!(!Query::parse("Åsa 12").could_be_personal_number());
        assert!(!Query::parse("Storgatan 114").could_be_personal_number());
    }
}
