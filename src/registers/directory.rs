//! The directory: care providers (utförare), areas with their arrival limits, patrols with
//! their shifts, and the routing rules that say which patrols go where. Imported from four
//! CSV files at once with [`parse_all`], all or nothing.
//!
//! # Files
//!
//! Each file is UTF-8 CSV with exactly this header (a byte-order mark allowed); cells are
//! trimmed and rows with every cell empty are skipped (the registers' one loader,
//! [`crate::registers::csv`]). Every problem in any of the four files
//! is reported (by file and line number) and a set with any problem imports nothing.
//!
//! - providers ([`PROVIDERS_HEADER`]): `id,name,phone`.
//! - areas ([`AREAS_HEADER`]): `id,name,arrival_limit_mins,municipality`; an empty limit
//!   means [`DEFAULT_ARRIVAL_LIMIT_MINS`], otherwise 1 to 240 minutes. `municipality` is the
//!   one the area lies in (empty, or the column left out as in [`AREAS_HEADER_V1`]: the
//!   centre's own); a subscriber of another municipality placed in it is warned of at import.
//! - patrols ([`PATROLS_HEADER`]): `id,name,provider,areas,shifts,phone`. `areas` is the
//!   `;`-separated ids of the areas the patrol covers (never `*`: a patrol names its areas).
//!   `shifts` is `;`-separated `NAME HH:MM-HH:MM` in local time, e.g.
//!   `day 07:00-15:30;evening 15:00-22:00`; an end before the start crosses midnight
//!   (`night 21:30-07:00`), the end is exclusive, and a start equal to its end is refused
//!   (a 24-hour patrol is two shifts).
//! - routes ([`ROUTES_HEADER`]): `provider,area,patrols`: for subscribers of `provider` in
//!   `area` (`*` = any), offer these `;`-separated patrol ids in this order (see
//!   [`crate::dispatch::routing`]). One rule per (provider, area).
//!
//! Ids are 1 to 64 characters of `A-Z a-z 0-9 _ . -`, unique within their file; names are
//! UTF-8 ("Hemtjänst Söder"). References are checked across the files: a patrol's provider
//! and areas, a rule's provider, area and patrols must exist, and a patrol named in a rule
//! for one area must cover that area.
//!
//! # How a subscriber finds its provider and area
//!
//! A subscriber's `care_provider` and `area` are text, and usually hold names
//! ("Hemtjänst Norr", "Söder") that are not valid ids. So the directory is matched to them
//! **by id, then by name**: [`Directory::provider_for`] and [`Directory::area_for`] take the
//! entry whose id is exactly the text, else the one whose name equals it ignoring case. Names
//! are therefore unique (ignoring case) among providers and among areas. A subscriber may
//! carry either; routing resolves both the same way. The demo directory
//! (`config/demo-directory/`, [`DEMO_PROVIDERS`] ...) uses ids like `hemtjanst-norr` and the
//! names the demo subscribers carry.
//!
//! An edit of a subscriber (`PUT /api/subscribers/{id}`) must name a provider and an area the
//! directory offers ([`subscriber_problems`]: the providers, the areas patrols serve), or leave
//! them empty; the console offers them as selects. While the directory has no providers (no
//! areas), any text is accepted. An import of subscribers is not refused for them: it warns,
//! by subscriber ([`import_warnings`]), since the directory may be loaded after the
//! subscribers.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::ops::RangeInclusive;

use jiff::civil::Time;

use crate::model::{Area, Patrol, Provider, RouteRule, Shift};
use crate::registers::csv::{Header, ImportFile, no_rows, read_rows};
use crate::registers::problem::FieldProblem;
use crate::registers::subscribers::{MAX_SHORT_CHARS, shown, valid_id, valid_phone};

/// Header of the providers file.
pub const PROVIDERS_HEADER: &str = "id,name,phone";

/// Header of the areas file.
pub const AREAS_HEADER: &str = "id,name,arrival_limit_mins,municipality";

/// The areas file's header before areas had a municipality (still read).
pub const AREAS_HEADER_V1: &str = "id,name,arrival_limit_mins";

/// Header of the patrols file.
pub const PATROLS_HEADER: &str = "id,name,provider,areas,shifts,phone";

/// Header of the routes file.
pub const ROUTES_HEADER: &str = "provider,area,patrols";

/// Arrival limits accepted, in minutes.
pub const ARRIVAL_LIMITS_MINS: RangeInclusive<u32> = 1..=240;

/// "Any" in a routing rule's provider or area.
pub const ANY: &str = "*";

/// Longest shift name, in characters.
pub const MAX_SHIFT_NAME_CHARS: usize = 32;

/// The demo municipality's care providers (`config/demo-directory/providers.csv`).
pub const DEMO_PROVIDERS: &str = include_str!("../../config/demo-directory/providers.csv");

/// The demo municipality's areas (`config/demo-directory/areas.csv`).
pub const DEMO_AREAS: &str = include_str!("../../config/demo-directory/areas.csv");

/// The demo municipality's patrols (`config/demo-directory/patrols.csv`).
pub const DEMO_PATROLS: &str = include_str!("../../config/demo-directory/patrols.csv");

/// The demo municipality's routing rules (`config/demo-directory/routes.csv`).
pub const DEMO_ROUTES: &str = include_str!("../../config/demo-directory/routes.csv");

/// One of the four directory files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Care providers.
    Providers,
    /// Areas.
    Areas,
    /// Patrols.
    Patrols,
    /// Routing rules.
    Routes,
}

impl Table {
    /// The stable name (`providers`, `areas`, `patrols`, `routes`).
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Providers => "providers",
            Table::Areas => "areas",
            Table::Patrols => "patrols",
            Table::Routes => "routes",
        }
    }

    /// The header the file must have.
    pub fn header(self) -> &'static str {
        match self {
            Table::Providers => PROVIDERS_HEADER,
            Table::Areas => AREAS_HEADER,
            Table::Patrols => PATROLS_HEADER,
            Table::Routes => ROUTES_HEADER,
        }
    }

    /// The headers a file of this table may have (the current one first).
    fn headers(self) -> Vec<Header> {
        match self {
            Table::Areas => vec![
                Header::new(AREAS_HEADER).optional_tail(1),
                Header::new(AREAS_HEADER_V1),
            ],
            t => vec![Header::new(t.header())],
        }
    }

    #[cfg(test)]
    fn columns(self) -> usize {
        self.header().split(',').count()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ImportFile for Table {
    const ROWS: &'static str = "rows";
    const SEVERAL: bool = true;
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// One problem found in an import (by file and line).
pub type Problem = crate::registers::csv::Problem<Table>;

/// Why a directory import failed: a file could not be read ([`ImportError::Io`]), or every
/// problem of the four files ([`ImportError::Invalid`]; a bad header or a file without rows
/// is one of them). Nothing is imported.
pub type ImportError = crate::registers::csv::ImportError<Table>;

pub use crate::model::Directory;
pub use crate::model::directory::DEFAULT_ARRIVAL_LIMIT_MINS;

/// Parses and checks the four directory files together (see the module doc). Either all of
/// them are valid and the whole directory is returned, or nothing is, with every problem.
pub fn parse_all(
    providers: impl Read,
    areas: impl Read,
    patrols: impl Read,
    routes: impl Read,
) -> Result<Directory, ImportError> {
    let mut problems = Vec::new();
    let provider_rows = read_table(providers, Table::Providers, &mut problems)?;
    let area_rows = read_table(areas, Table::Areas, &mut problems)?;
    let patrol_rows = read_table(patrols, Table::Patrols, &mut problems)?;
    let route_rows = read_table(routes, Table::Routes, &mut problems)?;

    let providers = parse_providers(provider_rows.as_deref(), &mut problems);
    let areas = parse_areas(area_rows.as_deref(), &mut problems);
    let patrols = parse_patrols(patrol_rows.as_deref(), &providers, &areas, &mut problems);
    let routes = parse_routes(
        route_rows.as_deref(),
        &providers,
        &areas,
        &patrols,
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(ImportError::Invalid(problems));
    }
    let mut dir = Directory {
        providers: providers.items,
        areas: areas.items,
        patrols: patrols.items,
        routes: routes.items,
    };
    dir.providers.sort_by(|a, b| a.id.cmp(&b.id));
    dir.areas.sort_by(|a, b| a.id.cmp(&b.id));
    dir.patrols.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(dir)
}

/// Rows of one file, each with its line number.
type Rows = Vec<(u64, csv::StringRecord)>;

/// What one file gave: its good items, and the ids of every row whose id was readable (also
/// of rows with other problems, so that one bad cell does not make every reference to the
/// row another problem). `ids` is `None` when the file itself could not be read (bad
/// header), so references to it are not checked.
struct Parsed<T> {
    items: Vec<T>,
    ids: Option<HashSet<String>>,
}

impl<T> Parsed<T> {
    /// Whether a reference to `id` is unknown (false when the file could not be read).
    fn lacks(&self, id: &str) -> bool {
        self.ids.as_ref().is_some_and(|ids| !ids.contains(id))
    }
}

/// Reads one file (see [`crate::registers::csv::read_rows`]). `Ok(None)` when the header is
/// wrong; a problem is recorded, as is a file without rows.
fn read_table(
    input: impl Read,
    table: Table,
    problems: &mut Vec<Problem>,
) -> Result<Option<Rows>, ImportError> {
    let before = problems.len();
    let mut rows = Vec::new();
    let read = read_rows(input, table, &table.headers(), problems, |rec, line| {
        rows.push((line, rec));
        Ok(())
    });
    match read {
        Ok(()) => {}
        Err(ImportError::Header(p)) => {
            problems.push(p);
            return Ok(None);
        }
        Err(e) => return Err(e),
    }
    if rows.is_empty() && problems.len() == before {
        problems.push(no_rows(table));
    }
    Ok(Some(rows))
}

fn check_id(field: &str, v: &str, errs: &mut Vec<String>) {
    if !valid_id(v) {
        errs.push(format!(
            "{field} {} must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' or '-'",
            shown(v)
        ));
    }
}

fn check_name(v: &str, errs: &mut Vec<String>) {
    if v.is_empty() {
        errs.push("name is empty".to_string());
    } else if v.chars().count() > MAX_SHORT_CHARS {
        errs.push(format!("name is longer than {MAX_SHORT_CHARS} characters"));
    }
}

fn check_phone(v: &str, errs: &mut Vec<String>) {
    if !v.is_empty() && !valid_phone(v) {
        errs.push(format!(
            "phone {} must be digits, spaces, '+' and '-' (at most 32)",
            shown(v)
        ));
    }
}

/// A `;`-separated list of ids: not empty, no empty item, no repeats, each a valid id.
fn parse_ids(field: &str, cell: &str, errs: &mut Vec<String>) -> Vec<String> {
    if cell.is_empty() {
        errs.push(format!("{field} is empty"));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for item in cell.split(';').map(str::trim) {
        if item.is_empty() {
            errs.push(format!("{field} has an empty item (two ';' in a row?)"));
        } else if item == ANY {
            errs.push(format!(
                "{field} may not hold `*`: name each one (a `*` belongs in the routes file)"
            ));
        } else if !valid_id(item) {
            check_id(&format!("{field} item"), item, errs);
        } else if out.iter().any(|o| o == item) {
            errs.push(format!("{field} names {item} twice"));
        } else {
            out.push(item.to_string());
        }
    }
    out
}

/// `HH:MM` (or `H:MM`), 00:00 to 23:59.
fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    if !(1..=2).contains(&h.len())
        || m.len() != 2
        || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

/// One shift: `NAME HH:MM-HH:MM`.
pub fn parse_shift(s: &str) -> Result<Shift, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "shift {} must be NAME HH:MM-HH:MM with times 00:00 to 23:59, e.g. `night 21:30-07:00`",
            shown(s)
        )
    };
    let (name, span) = s.rsplit_once(char::is_whitespace).ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad());
    }
    if name.chars().count() > MAX_SHIFT_NAME_CHARS {
        return Err(format!(
            "shift name {} is longer than {MAX_SHIFT_NAME_CHARS} characters",
            shown(name)
        ));
    }
    let (a, b) = span.split_once('-').ok_or_else(bad)?;
    let (start, end) = match (parse_hhmm(a), parse_hhmm(b)) {
        (Some(start), Some(end)) => (start, end),
        _ => return Err(bad()),
    };
    if start == end {
        return Err(format!(
            "shift {} starts and ends at the same time; make a 24-hour patrol two shifts \
             (e.g. `day 07:00-19:00;night 19:00-07:00`)",
            shown(s)
        ));
    }
    Ok(Shift {
        name: name.to_string(),
        start,
        end,
    })
}

/// The rows of one file so far: their problems go to `problems`; ids and names are checked
/// for repeats.
struct Checker<'a> {
    table: Table,
    problems: &'a mut Vec<Problem>,
    /// Every readable id, with the line it was first given on.
    ids: HashMap<String, u64>,
    /// Names (lower case), with the line each was first given on.
    names: HashMap<String, u64>,
}

impl<'a> Checker<'a> {
    fn new(table: Table, problems: &'a mut Vec<Problem>) -> Checker<'a> {
        Checker {
            table,
            problems,
            ids: HashMap::new(),
            names: HashMap::new(),
        }
    }

    /// Checks an id: valid, and not given before in this file.
    fn id(&mut self, line: u64, id: &str, errs: &mut Vec<String>) {
        check_id("id", id, errs);
        if valid_id(id) {
            if let Some(first) = self.ids.get(id) {
                errs.push(format!("id {id} already given on line {first}"));
            } else {
                self.ids.insert(id.to_string(), line);
            }
        }
    }

    /// Checks a name: not empty, not too long, and (`unique`) not given before in this file
    /// ignoring case.
    fn name(&mut self, line: u64, name: &str, unique: bool, errs: &mut Vec<String>) {
        check_name(name, errs);
        if unique && !name.is_empty() {
            let key = name.to_lowercase();
            if let Some(first) = self.names.get(&key) {
                errs.push(format!(
                    "name {} already given on line {first} (ignoring case)",
                    shown(name)
                ));
            } else {
                self.names.insert(key, line);
            }
        }
    }

    /// Records a row's problems, if any; returns whether the row is good.
    fn report(&mut self, line: u64, errs: Vec<String>) -> bool {
        if errs.is_empty() {
            return true;
        }
        self.problems.push(Problem {
            table: self.table,
            line,
            message: errs.join("; "),
        });
        false
    }

    fn done<T>(self, items: Vec<T>) -> Parsed<T> {
        Parsed {
            items,
            ids: Some(self.ids.into_keys().collect()),
        }
    }
}

fn unreadable<T>() -> Parsed<T> {
    Parsed {
        items: Vec::new(),
        ids: None,
    }
}

/// Checks a reference to an entry of another file.
fn check_ref<T>(field: &str, v: &str, to: &Parsed<T>, file: Table, errs: &mut Vec<String>) {
    if v == ANY {
        errs.push(format!("{field} may not be `*` here"));
    } else {
        check_id(field, v, errs);
        if valid_id(v) && to.lacks(v) {
            errs.push(format!("{field} {v} is not in the {file} file"));
        }
    }
}

fn parse_providers(
    rows: Option<&[(u64, csv::StringRecord)]>,
    problems: &mut Vec<Problem>,
) -> Parsed<Provider> {
    let Some(rows) = rows else {
        return unreadable();
    };
    let mut check = Checker::new(Table::Providers, problems);
    let mut items = Vec::new();
    for (line, rec) in rows {
        let cell = |i| rec.get(i).unwrap_or("");
        let (id, name, phone) = (cell(0), cell(1), cell(2));
        let mut errs = Vec::new();
        check.id(*line, id, &mut errs);
        check.name(*line, name, true, &mut errs);
        check_phone(phone, &mut errs);
        if check.report(*line, errs) {
            items.push(Provider {
                id: id.to_string(),
                name: name.to_string(),
                phone: phone.to_string(),
            });
        }
    }
    check.done(items)
}

fn parse_areas(
    rows: Option<&[(u64, csv::StringRecord)]>,
    problems: &mut Vec<Problem>,
) -> Parsed<Area> {
    let Some(rows) = rows else {
        return unreadable();
    };
    let mut check = Checker::new(Table::Areas, problems);
    let mut items = Vec::new();
    for (line, rec) in rows {
        let cell = |i| rec.get(i).unwrap_or("");
        let (id, name, limit, municipality) = (cell(0), cell(1), cell(2), cell(3));
        let mut errs = Vec::new();
        check.id(*line, id, &mut errs);
        check.name(*line, name, true, &mut errs);
        if municipality.chars().count() > MAX_SHORT_CHARS
            || municipality.chars().any(char::is_control)
        {
            errs.push(format!(
                "municipality {}: at most {MAX_SHORT_CHARS} characters, no control characters",
                shown(municipality)
            ));
        }
        let limit = match limit {
            "" => DEFAULT_ARRIVAL_LIMIT_MINS,
            l => match l.parse::<u32>() {
                Ok(m) if ARRIVAL_LIMITS_MINS.contains(&m) => m,
                _ => {
                    errs.push(format!(
                        "arrival_limit_mins {} must be whole minutes from {} to {} (or empty \
                         for {DEFAULT_ARRIVAL_LIMIT_MINS})",
                        shown(l),
                        ARRIVAL_LIMITS_MINS.start(),
                        ARRIVAL_LIMITS_MINS.end()
                    ));
                    0
                }
            },
        };
        if check.report(*line, errs) {
            items.push(Area {
                id: id.to_string(),
                name: name.to_string(),
                arrival_limit_mins: limit,
                municipality: municipality.to_string(),
            });
        }
    }
    check.done(items)
}

/// The `;`-separated shifts of a patrol.
fn parse_shifts(cell: &str, errs: &mut Vec<String>) -> Vec<Shift> {
    if cell.is_empty() {
        errs.push("shifts is empty (e.g. `day 07:00-15:30;evening 15:00-22:00`)".to_string());
        return Vec::new();
    }
    let mut shifts = Vec::new();
    for s in cell.split(';') {
        if s.trim().is_empty() {
            errs.push("shifts has an empty item (two ';' in a row?)".to_string());
            continue;
        }
        match parse_shift(s) {
            Ok(s) => shifts.push(s),
            Err(e) => errs.push(e),
        }
    }
    shifts
}

fn parse_patrols(
    rows: Option<&[(u64, csv::StringRecord)]>,
    providers: &Parsed<Provider>,
    areas: &Parsed<Area>,
    problems: &mut Vec<Problem>,
) -> Parsed<Patrol> {
    let Some(rows) = rows else {
        return unreadable();
    };
    let mut check = Checker::new(Table::Patrols, problems);
    let mut items = Vec::new();
    for (line, rec) in rows {
        let cell = |i| rec.get(i).unwrap_or("");
        let (id, name, provider, phone) = (cell(0), cell(1), cell(2), cell(5));
        let mut errs = Vec::new();
        check.id(*line, id, &mut errs);
        check.name(*line, name, false, &mut errs);
        check_ref("provider", provider, providers, Table::Providers, &mut errs);
        let patrol_areas = parse_ids("areas", cell(3), &mut errs);
        for a in &patrol_areas {
            if areas.lacks(a) {
                errs.push(format!("area {a} is not in the areas file"));
            }
        }
        let shifts = parse_shifts(cell(4), &mut errs);
        check_phone(phone, &mut errs);
        if check.report(*line, errs) {
            items.push(Patrol {
                id: id.to_string(),
                name: name.to_string(),
                provider: provider.to_string(),
                areas: patrol_areas,
                shifts,
                phone: phone.to_string(),
            });
        }
    }
    check.done(items)
}

fn parse_routes(
    rows: Option<&[(u64, csv::StringRecord)]>,
    providers: &Parsed<Provider>,
    areas: &Parsed<Area>,
    patrols: &Parsed<Patrol>,
    problems: &mut Vec<Problem>,
) -> Parsed<RouteRule> {
    let Some(rows) = rows else {
        return unreadable();
    };
    let mut check = Checker::new(Table::Routes, problems);
    let mut items = Vec::new();
    let mut rules: HashMap<(String, String), u64> = HashMap::new();
    for (line, rec) in rows {
        let cell = |i| rec.get(i).unwrap_or("");
        let (provider, area) = (cell(0), cell(1));
        let mut errs = Vec::new();
        if provider != ANY {
            check_ref("provider", provider, providers, Table::Providers, &mut errs);
        }
        if area != ANY {
            check_ref("area", area, areas, Table::Areas, &mut errs);
        }
        let key = (provider.to_string(), area.to_string());
        if let Some(first) = rules.get(&key) {
            errs.push(format!(
                "a rule for provider {provider} and area {area} is already given on line {first}"
            ));
        } else {
            rules.insert(key, *line);
        }
        let ids = parse_ids("patrols", cell(2), &mut errs);
        for p in &ids {
            if patrols.lacks(p) {
                errs.push(format!("patrol {p} is not in the patrols file"));
                continue;
            }
            // Only a patrol that parsed is known to cover (or not) the area.
            let uncovered = area != ANY
                && patrols
                    .items
                    .iter()
                    .find(|x| &x.id == p)
                    .is_some_and(|x| !x.areas.iter().any(|a| a == area));
            if uncovered {
                errs.push(format!(
                    "patrol {p} does not cover area {area} (add it to the patrol's areas)"
                ));
            }
        }
        if check.report(*line, errs) {
            items.push(RouteRule {
                provider: provider.to_string(),
                area: area.to_string(),
                patrols: ids,
            });
        }
    }
    check.done(items)
}

// ---- a subscriber's provider and area, against the directory

/// Most choices a message names; the rest are counted.
const MAX_CHOICES_SHOWN: usize = 30;

/// The care providers a subscriber may be given: every provider of the directory, by name.
pub fn provider_choices(d: &Directory) -> Vec<&Provider> {
    let mut v: Vec<&Provider> = d.providers.iter().collect();
    v.sort_by_key(|a| a.name.to_lowercase());
    v
}

/// The areas a subscriber may be given: those some patrol serves (so a Call from there has
/// a patrol to offer), by name; every area of the directory when no patrol names any.
pub fn area_choices(d: &Directory) -> Vec<&Area> {
    let served: HashSet<&str> = d
        .patrols
        .iter()
        .flat_map(|p| p.areas.iter().map(String::as_str))
        .collect();
    let mut v: Vec<&Area> = d
        .areas
        .iter()
        .filter(|a| served.is_empty() || served.contains(a.id.as_str()))
        .collect();
    v.sort_by_key(|a| a.name.to_lowercase());
    v
}

/// The choices as a message lists them: names, at most [`MAX_CHOICES_SHOWN`].
fn listed<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = names.len();
    let shown: Vec<&str> = names.take(MAX_CHOICES_SHOWN).collect();
    let more = n.saturating_sub(shown.len());
    let mut out = shown.join(", ");
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

/// A subscriber's `care_provider` and `area` against the directory, so that routing finds
/// them: one message for each that names nothing the directory offers ([`provider_choices`],
/// [`area_choices`], matched by id or by name ignoring case, as routing matches them),
/// naming the field, the value and the choices. An empty value is "not set" and passes
/// (routing then uses the rules for any provider or area). While the directory has no
/// providers (no areas), any provider (area) passes as free text.
pub fn subscriber_problems(d: &Directory, care_provider: &str, area: &str) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    let providers = provider_choices(d);
    if !care_provider.trim().is_empty()
        && !providers.is_empty()
        && d.provider_for(care_provider).is_none()
    {
        let choices = listed(providers.iter().map(|p| p.name.as_str()));
        out.push(
            FieldProblem::new(
                "care_provider",
                "directory.unknown_provider",
                format!(
                    "care_provider {} is not a care provider in the directory; choose one of: {choices}",
                    shown(care_provider),
                ),
            )
            .param("value", shown(care_provider))
            .param("choices", choices),
        );
    }
    let areas = area_choices(d);
    if !area.trim().is_empty() && !areas.is_empty() {
        let found = d.area_for(area);
        if !found.is_some_and(|a| areas.iter().any(|c| c.id == a.id)) {
            let choices = listed(areas.iter().map(|a| a.name.as_str()));
            let (code, why) = if found.is_some() {
                (
                    "directory.area_unserved",
                    "is served by no patrol in the directory",
                )
            } else {
                ("directory.unknown_area", "is not an area in the directory")
            };
            out.push(
                FieldProblem::new(
                    "area",
                    code,
                    format!("area {} {why}; choose one of: {choices}", shown(area)),
                )
                .param("value", shown(area))
                .param("choices", choices),
            );
        }
    }
    out
}

/// A subscriber placed in an area that lies in another municipality than theirs (`home`:
/// the centre's own, of a card that names none; empty when not known); nothing while the
/// area names no municipality, is not in the directory, or the subscriber's is not known.
pub fn area_elsewhere(
    d: &Directory,
    s: &crate::model::Subscriber,
    home: &str,
) -> Option<FieldProblem> {
    let area = d.area_for(&s.area)?;
    if area.municipality.trim().is_empty() {
        return None;
    }
    let theirs = if s.municipality.trim().is_empty() {
        home.trim()
    } else {
        s.municipality.trim()
    };
    let lies_in = area.municipality.trim();
    (!theirs.is_empty() && lies_in.to_lowercase() != theirs.to_lowercase()).then(|| {
        FieldProblem::new(
            "area",
            "directory.area_elsewhere",
            format!(
                "area {} lies in {lies_in}, but the subscriber is {theirs}'s",
                shown(&area.name)
            ),
        )
        .param("value", shown(&area.name))
        .param("lies_in", lies_in)
        .param("municipality", theirs)
    })
}

/// The warnings of an import of subscribers: one per subscriber's provider or area not in
/// the directory ([`subscriber_problems`]), or area in another municipality
/// ([`area_elsewhere`]), by id, at most `max`, then a count. An import
/// warns rather than refuses: the directory may be loaded after the subscribers, and routing
/// falls back to the rules for any provider or area meanwhile.
pub fn import_warnings(
    d: &Directory,
    subs: &[crate::model::Subscriber],
    max: usize,
    home: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut more = 0usize;
    for s in subs {
        let elsewhere = area_elsewhere(d, s, home);
        for p in subscriber_problems(d, &s.care_provider, &s.area)
            .into_iter()
            .chain(elsewhere)
        {
            if out.len() < max {
                out.push(format!("subscriber {}: {p}", s.id));
            } else {
                more += 1;
            }
        }
    }
    if more > 0 {
        out.push(format!("and {more} more"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::routing;

    const PROVIDERS: &str =
        "id,name,phone\nhn,Hemtjänst Norr,0980-319 250\nks,Kommunens nattpatrull,\n";
    const AREAS: &str = "id,name,arrival_limit_mins\nnorr,Norr,\nfjall,Fjällbyn,45\n";
    const PATROLS: &str = "id,name,provider,areas,shifts,phone\n\
        n1,Norr kväll 1,hn,norr,day 07:00-15:30;evening 15:00-22:00,070-174 06 50\n\
        natt,Nattpatrullen,ks,norr;fjall,night 21:30-07:00,\n";
    const ROUTES: &str = "provider,area,patrols\nhn,norr,n1;natt\n*,fjall,natt\n";

    fn parse(p: &str, a: &str, t: &str, r: &str) -> Result<Directory, ImportError> {
        parse_all(p.as_bytes(), a.as_bytes(), t.as_bytes(), r.as_bytes())
    }

    fn problems(p: &str, a: &str, t: &str, r: &str) -> Vec<String> {
        match parse(p, a, t, r) {
            Err(ImportError::Invalid(v)) => v.iter().map(Problem::to_string).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    fn hm(h: i8, m: i8) -> Time {
        Time::new(h, m, 0, 0).unwrap()
    }

    #[test]
    fn headers_match_the_columns() {
        for t in [
            Table::Providers,
            Table::Areas,
            Table::Patrols,
            Table::Routes,
        ] {
            assert!(t.columns() >= 3, "{t}");
        }
        assert_eq!(PATROLS_HEADER.split(',').count(), 6);
    }

    #[test]
    fn good_files_parse_with_utf8_defaults_and_midnight_shifts() {
        let d = parse(PROVIDERS, AREAS, PATROLS, ROUTES).unwrap();
        assert_eq!(d.providers.len(), 2);
        assert_eq!(d.provider("hn").unwrap().name, "Hemtjänst Norr");
        assert_eq!(d.provider("ks").unwrap().phone, "");
        assert_eq!(d.area("norr").unwrap().arrival_limit_mins, 30, "default");
        assert_eq!(d.area("fjall").unwrap().arrival_limit_mins, 45);
        assert_eq!(d.area("fjall").unwrap().name, "Fjällbyn");
        let n1 = d.patrol("n1").unwrap();
        assert_eq!(n1.name, "Norr kväll 1");
        assert_eq!(n1.areas, ["norr"]);
        assert_eq!(
            n1.shifts,
            [
                Shift {
                    name: "day".into(),
                    start: hm(7, 0),
                    end: hm(15, 30)
                },
                Shift {
                    name: "evening".into(),
                    start: hm(15, 0),
                    end: hm(22, 0)
                }
            ]
        );
        let natt = d.patrol("natt").unwrap();
        assert_eq!(natt.shifts[0].start, hm(21, 30));
        assert_eq!(natt.shifts[0].end, hm(7, 0));
        assert_eq!(
            natt.areas,
            ["norr", "fjall"],
            "patrol areas keep their order"
        );
        assert_eq!(d.routes.len(), 2);
        assert_eq!(d.routes[0].patrols, ["n1", "natt"], "fallback order kept");
        assert_eq!(d.routes[1].provider, "*");
        // Sorted by id.
        assert_eq!(
            d.areas.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["fjall", "norr"]
        );
        assert_eq!(
            d.patrols_of("hn")
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>(),
            ["n1"]
        );
        assert!(!d.is_empty());
        assert!(Directory::default().is_empty());
    }

    #[test]
    fn bom_blank_rows_and_spaces_are_tolerated() {
        let p = format!("\u{feff}{PROVIDERS}\n,,\n");
        let t = "id,name,provider,areas,shifts,phone\n n1 , Norr 1 , hn , norr ; fjall , day 7:00-15:30 ; night  21:30-07:00 ,\n";
        let r = "provider,area,patrols\nhn,*,n1\n";
        let d = parse(&p, AREAS, t, r).unwrap();
        let n1 = d.patrol("n1").unwrap();
        assert_eq!(n1.name, "Norr 1");
        assert_eq!(n1.areas, ["norr", "fjall"]);
        assert_eq!(n1.shifts[0].start, hm(7, 0));
        assert_eq!(n1.shifts[1].name, "night");
    }

    #[test]
    fn provider_and_area_by_id_then_name_ignoring_case() {
        let d = parse(PROVIDERS, AREAS, PATROLS, ROUTES).unwrap();
        assert_eq!(d.provider_for("hn").unwrap().id, "hn");
        assert_eq!(d.provider_for("Hemtjänst Norr").unwrap().id, "hn");
        assert_eq!(d.provider_for(" HEMTJÄNST NORR ").unwrap().id, "hn");
        assert_eq!(d.provider_for("hemtjänst norr").unwrap().id, "hn");
        assert!(d.provider_for("Hemtjänst Söder").is_none());
        assert!(d.provider_for("").is_none());
        assert!(d.provider_for("HN").is_none(), "ids are exact");
        assert_eq!(d.area_for("FJÄLLBYN").unwrap().id, "fjall");
        assert_eq!(d.area_for("norr").unwrap().id, "norr");
        assert!(d.area_for("Söder").is_none());
        assert_eq!(d.arrival_limit_mins("Fjällbyn"), 45);
        assert_eq!(d.arrival_limit_mins("Söder"), DEFAULT_ARRIVAL_LIMIT_MINS);
    }

    #[test]
    fn shifts_are_parsed_strictly() {
        let s = parse_shift("night 21:30-07:00").unwrap();
        assert_eq!((s.start, s.end), (hm(21, 30), hm(7, 0)));
        let s = parse_shift("kväll pass 2 15:00-00:00").unwrap();
        assert_eq!(s.name, "kväll pass 2");
        assert_eq!(s.end, hm(0, 0));
        for bad in [
            "night",
            "21:30-07:00",
            "night 21:30",
            "night 21:30-7",
            "night 24:00-07:00",
            "night 21:60-07:00",
            "night 21.30-07.00",
            "night -1:30-07:00",
            "night 21:30-07:00:00",
            "night 021:30-07:00",
        ] {
            assert!(parse_shift(bad).is_err(), "{bad}");
        }
        let e = parse_shift("all 07:00-07:00").unwrap_err();
        assert!(e.contains("same time"), "{e}");
        let long = format!("{} 07:00-08:00", "x".repeat(40));
        assert!(parse_shift(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn row_problems_are_reported_by_file_and_line_and_nothing_is_returned() {
        let p = "id,name,phone\nhn,Hemtjänst Norr,\nbad id,X,\nhn,Again,\nhx,HEMTJÄNST NORR,abc\n";
        let a = "id,name,arrival_limit_mins\nnorr,Norr,0\nsyd,Syd,241\nost,Öst,x\nvast,Väst,240\n";
        let t = "id,name,provider,areas,shifts,phone\n\
            n1,Norr 1,hn,norr;*,day 07:00-07:00,\n\
            n2,,nobody,mars,,\n\
            n3,Norr 3,hn,norr;norr,day 07:00-15:00;;x,\n\
            n4,Norr 4,*,norr,day 07:00-15:00\n";
        let r = "provider,area,patrols\nhn,norr,n1;ghost\nhn,norr,n1\nnobody,mars,\n*,vast,n1\n";
        let got = problems(p, a, t, r);
        let text = got.join("\n");
        let has = |s: &str| assert!(text.contains(s), "missing {s:?} in:\n{text}");
        has("providers line 3: id \"bad id\"");
        has("providers line 4: id hn already given on line 2");
        has("providers line 5: name \"HEMTJÄNST NORR\" already given on line 2 (ignoring case)");
        has("phone \"abc\"");
        has("areas line 2: arrival_limit_mins \"0\"");
        has("areas line 3: arrival_limit_mins \"241\"");
        has("areas line 4: arrival_limit_mins \"x\"");
        has("patrols line 2: areas may not hold `*`");
        has("same time");
        has("patrols line 3: name is empty");
        has("provider nobody is not in the providers file");
        has("area mars is not in the areas file");
        has("shifts is empty");
        has("patrols line 4: areas names norr twice");
        has("shifts has an empty item");
        has("shift \"x\" must be NAME HH:MM-HH:MM");
        has("patrols line 5: expected 6 cells, found 5");
        has("routes line 2: patrol ghost is not in the patrols file");
        has("routes line 3: a rule for provider hn and area norr is already given on line 2");
        has("routes line 4: provider nobody is not in the providers file");
        has("area mars is not in the areas file; patrols is empty");
        // n1 is invalid (shift), so its references are not doubted, but coverage is unknown.
        assert!(!text.contains("patrol n1 is not in"), "{text}");
        // Every problem names its file; the areas row `vast` was fine.
        assert!(!text.contains("areas line 5"), "{text}");
        assert!(got.iter().all(|l| l.starts_with("providers line ")
            || l.starts_with("areas line ")
            || l.starts_with("patrols line ")
            || l.starts_with("routes line ")));
    }

    #[test]
    fn a_rule_whose_patrol_does_not_cover_its_area_is_refused() {
        let r = "provider,area,patrols\nhn,fjall,n1\n";
        let got = problems(PROVIDERS, AREAS, PATROLS, r);
        assert_eq!(
            got,
            ["routes line 2: patrol n1 does not cover area fjall (add it to the patrol's areas)"]
        );
        // With `*` as the area there is nothing to check.
        parse(
            PROVIDERS,
            AREAS,
            PATROLS,
            "provider,area,patrols\nhn,*,n1\n",
        )
        .unwrap();
    }

    #[test]
    fn bad_headers_and_empty_files() {
        let got = problems("id,name\nhn,X\n", AREAS, PATROLS, ROUTES);
        assert_eq!(
            got[0],
            "providers line 1: the header must be exactly `id,name,phone`; found `id,name`"
        );
        // References to an unreadable file are not doubted one by one.
        assert_eq!(got.len(), 1, "{got:?}");
        let got = problems(PROVIDERS, "", PATROLS, ROUTES);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("the file is empty"), "{got:?}");
        let got = problems(PROVIDERS, AREAS, PATROLS, "provider,area,patrols\n\n,,\n");
        assert_eq!(got, ["routes: the file has no rows"]);
        let got = problems(PROVIDERS, AREAS, "Natt,070-174 06 50,4711\n", ROUTES);
        assert!(got[0].contains("not column names"), "{got:?}");
        assert!(!got[0].contains("4711"), "{got:?}");
    }

    #[test]
    fn invalid_utf8_is_a_problem_not_a_panic() {
        let r: &[u8] = b"provider,area,patrols\nhn,norr,n1\xff\n";
        let e = parse_all(
            PROVIDERS.as_bytes(),
            AREAS.as_bytes(),
            PATROLS.as_bytes(),
            r,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("routes line 2: cell 3 is not valid UTF-8"),
            "{text}"
        );
        assert!(text.starts_with("1 problem(s), nothing imported"), "{text}");
    }

    #[test]
    fn demo_directory_parses_and_every_demo_subscriber_has_a_patrol_day_and_night() {
        let d = parse(DEMO_PROVIDERS, DEMO_AREAS, DEMO_PATROLS, DEMO_ROUTES).unwrap();
        assert!(d.areas.iter().all(|a| a.arrival_limit_mins == 30));
        let subs = crate::registers::subscribers::parse_csv(crate::sim::SUBSCRIBERS_CSV.as_bytes())
            .unwrap();
        let tz = jiff::tz::TimeZone::get("Europe/Stockholm").unwrap();
        // A winter and a summer day.
        for date in [
            jiff::civil::date(2026, 1, 15),
            jiff::civil::date(2026, 7, 15),
        ] {
            for hour in [3, 12, 19] {
                let now = date
                    .at(hour, 0, 0, 0)
                    .to_zoned(tz.clone())
                    .unwrap()
                    .timestamp();
                for s in &subs {
                    let p = d.provider_for(&s.care_provider);
                    assert!(p.is_some(), "{}: provider {}", s.id, s.care_provider);
                    assert!(d.area_for(&s.area).is_some(), "{}: area {}", s.id, s.area);
                    let c = routing::suggest(&d, &s.care_provider, &s.area, now, &tz);
                    let c = c.unwrap_or_else(|| {
                        panic!("{} ({}, {}) at {hour}:00", s.id, s.care_provider, s.area)
                    });
                    assert!(c.on_shift);
                    let patrol = d.patrol(&c.patrol).unwrap();
                    assert!(
                        patrol
                            .areas
                            .iter()
                            .any(|a| a == &d.area_for(&s.area).unwrap().id),
                        "{} covers {}",
                        patrol.id,
                        s.area
                    );
                }
            }
        }
    }

    #[test]
    fn a_subscribers_provider_and_area_must_be_in_the_directory() {
        let d = parse(PROVIDERS, AREAS, PATROLS, ROUTES).unwrap();
        // By id or by name in any case; empty is "not set".
        for (p, a) in [("hn", "norr"), ("hemtjänst norr", "FJÄLLBYN"), ("", "")] {
            assert!(subscriber_problems(&d, p, a).is_empty(), "{p} {a}");
        }
        let e = subscriber_problems(&d, "Hemtjanst Nora", "norr");
        assert_eq!(
            (e[0].field.as_str(), e[0].code),
            ("care_provider", "directory.unknown_provider")
        );
        assert_eq!(
            e[0].params,
            [
                ("value", "\"Hemtjanst Nora\"".to_owned()),
                (
                    "choices",
                    "Hemtjänst Norr, Kommunens nattpatrull".to_owned()
                )
            ]
        );
        let e: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            [
                "care_provider \"Hemtjanst Nora\" is not a care provider in the directory; \
              choose one of: Hemtjänst Norr, Kommunens nattpatrull"
            ]
        );
        let e: Vec<String> = subscriber_problems(&d, "hn", "Söder")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            e,
            ["area \"Söder\" is not an area in the directory; choose one of: Fjällbyn, Norr"]
        );
        assert_eq!(
            subscriber_problems(&d, "x", "y").len(),
            2,
            "one message per field"
        );

        // An area no patrol serves is not offered while others are.
        let mut d2 = d.clone();
        d2.areas.push(Area {
            id: "ode".into(),
            name: "Ödemark".into(),
            arrival_limit_mins: 60,
            municipality: String::new(),
        });
        let names: Vec<&str> = area_choices(&d2).iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["Fjällbyn", "Norr"]);
        let e = subscriber_problems(&d2, "", "ode");
        assert!(
            e[0].text.starts_with("area \"ode\" is served by no patrol"),
            "{e:?}"
        );
        assert_eq!(e[0].code, "directory.area_unserved");

        // An empty directory: free text.
        assert!(subscriber_problems(&Directory::default(), "Anything", "Anywhere").is_empty());
    }

    #[test]
    fn an_area_lies_in_a_municipality_and_a_subscriber_of_another_is_warned_of() {
        let areas = "id,name,arrival_limit_mins,municipality\n\
            norr,Norr,,\n\
            fjall,Fjällbyn,45,Nordby kommun\n";
        let d = parse(PROVIDERS, areas, PATROLS, ROUTES).unwrap();
        assert_eq!(d.area("norr").unwrap().municipality, "");
        assert_eq!(d.area("fjall").unwrap().municipality, "Nordby kommun");
        // The older header still reads, every area the centre's own.
        let d1 = parse(PROVIDERS, AREAS, PATROLS, ROUTES).unwrap();
        assert!(d1.areas.iter().all(|a| a.municipality.is_empty()));
        // A municipality's name is checked like any short text.
        let bad = format!(
            "id,name,arrival_limit_mins,municipality\nnorr,Norr,,{}\nfjall,Fjällbyn,45,\n",
            "x".repeat(MAX_SHORT_CHARS + 1)
        );
        let e = problems(PROVIDERS, &bad, PATROLS, ROUTES);
        assert!(
            e.iter()
                .any(|p| p.starts_with("areas line 2: municipality")),
            "{e:?}"
        );

        let sub = |id: &str, area: &str, municipality: &str| crate::model::Subscriber {
            id: id.into(),
            area: area.into(),
            municipality: municipality.into(),
            ..crate::model::Subscriber::default()
        };
        let subs = [
            // Nordby's, in Nordby's area: fine.
            sub("a", "Fjällbyn", "nordby kommun"),
            // The centre's own (Vaktby), in Nordby's area: warned.
            sub("b", "fjall", ""),
            // Vaktby's, in an area of the centre's own: fine.
            sub("c", "Norr", "Vaktby kommun"),
            // Another's, in an area of no municipality named: not judged.
            sub("d", "Norr", "Söderby kommun"),
        ];
        assert_eq!(
            import_warnings(&d, &subs, 10, "Vaktby kommun"),
            [
                "subscriber b: area \"Fjällbyn\" lies in Nordby kommun, but the subscriber is Vaktby kommun's"
            ]
        );
        // Without the centre's own known, a card naming none is not judged.
        assert!(import_warnings(&d, &subs, 10, "").is_empty());
        let p = area_elsewhere(&d, &subs[1], "Vaktby kommun").unwrap();
        assert_eq!(p.code, "directory.area_elsewhere");
    }
}
